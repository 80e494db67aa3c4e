//! Reading packet captures (pcap and pcapng): the UDP datagrams and TCP
//! stream bytes of one port, with their capture timestamps. Used by
//! `hepflow replay` and by the tests that feed the corpus to hepflow.

use anyhow::Context;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcapng::blocks::Block;
use pcap_file::DataLink;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// One transport-layer payload from a capture.
#[derive(Debug, Clone)]
pub struct CapturedPayload {
    /// Capture time since the Unix epoch.
    pub time: Duration,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// True for TCP, false for UDP.
    pub tcp: bool,
    /// TCP sequence number (0 for UDP).
    pub seq: u32,
    /// The payload bytes.
    pub data: Vec<u8>,
}

fn parse_frame(link: DataLink, data: &[u8]) -> Option<SlicedPacket<'_>> {
    match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(data).ok(),
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(data).ok(),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(data).ok(),
        DataLink::NULL | DataLink::LOOP => {
            data.get(4..).and_then(|d| SlicedPacket::from_ip(d).ok())
        }
        _ => SlicedPacket::from_ethernet(data).ok(),
    }
}

fn payload_of(time: Duration, link: DataLink, data: &[u8]) -> Option<CapturedPayload> {
    let p = parse_frame(link, data)?;
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => (
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(v6)) => (
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
        ),
        _ => return None,
    };
    match &p.transport {
        Some(TransportSlice::Udp(u)) => Some(CapturedPayload {
            time,
            src: SocketAddr::new(src_ip, u.source_port()),
            dst: SocketAddr::new(dst_ip, u.destination_port()),
            tcp: false,
            seq: 0,
            data: u.payload().to_vec(),
        }),
        Some(TransportSlice::Tcp(t)) => Some(CapturedPayload {
            time,
            src: SocketAddr::new(src_ip, t.source_port()),
            dst: SocketAddr::new(dst_ip, t.destination_port()),
            tcp: true,
            seq: t.sequence_number(),
            data: t.payload().to_vec(),
        }),
        _ => None,
    }
}

/// Every UDP and TCP payload (non-empty) in a pcap or pcapng file, in
/// capture order.
pub fn read_payloads(path: &Path) -> anyhow::Result<Vec<CapturedPayload>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading capture {}", path.display()))?;
    let mut out = Vec::new();
    let is_pcapng = bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]);
    if is_pcapng {
        let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..])
            .with_context(|| format!("{} is not a readable pcapng file", path.display()))?;
        let mut links = Vec::new();
        while let Some(block) = reader.next_block() {
            let block = block.with_context(|| format!("reading a block of {}", path.display()))?;
            match block {
                Block::InterfaceDescription(idb) => links.push(idb.linktype),
                Block::EnhancedPacket(epb) => {
                    let link = links
                        .get(epb.interface_id as usize)
                        .copied()
                        .unwrap_or(DataLink::ETHERNET);
                    if let Some(p) = payload_of(epb.timestamp, link, &epb.data) {
                        out.push(p);
                    }
                }
                Block::SimplePacket(spb) => {
                    let link = links.first().copied().unwrap_or(DataLink::ETHERNET);
                    if let Some(p) = payload_of(Duration::ZERO, link, &spb.data) {
                        out.push(p);
                    }
                }
                _ => {}
            }
        }
    } else {
        let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..])
            .with_context(|| format!("{} is not a readable pcap file", path.display()))?;
        let link = reader.header().datalink;
        while let Some(pkt) = reader.next_packet() {
            let pkt = pkt.with_context(|| format!("reading a packet of {}", path.display()))?;
            if let Some(p) = payload_of(pkt.timestamp, link, &pkt.data) {
                out.push(p);
            }
        }
    }
    out.retain(|p| !p.data.is_empty());
    Ok(out)
}

/// The messages sent to `port` in a capture: each UDP datagram as one
/// item, and each TCP stream (per sender) reassembled in sequence order and
/// returned as one item holding the whole stream.
pub fn read_port(path: &Path, port: u16) -> anyhow::Result<Vec<CapturedPayload>> {
    let mut udp = Vec::new();
    let mut streams: BTreeMap<(SocketAddr, SocketAddr), Vec<CapturedPayload>> = BTreeMap::new();
    for p in read_payloads(path)? {
        if p.dst.port() != port {
            continue;
        }
        if p.tcp {
            streams.entry((p.src, p.dst)).or_default().push(p);
        } else {
            udp.push(p);
        }
    }
    for (_, mut segs) in streams {
        segs.sort_by_key(|s| s.seq);
        segs.dedup_by_key(|s| s.seq);
        let mut first = segs[0].clone();
        for s in &segs[1..] {
            first.data.extend_from_slice(&s.data);
        }
        udp.push(first);
    }
    Ok(udp)
}

/// One direction of a TCP connection, reassembled from its segments in
/// sequence order (retransmitted and overlapping bytes kept once).
#[derive(Debug, Clone)]
pub struct TcpStreamBytes {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// The stream's bytes, up to the first gap.
    pub data: Vec<u8>,
    /// `(offset in data, capture time)` of every segment that added bytes,
    /// offsets ascending.
    pub marks: Vec<(usize, Duration)>,
    /// When segments are missing from the capture: the offset in `data`
    /// where the stream stops (bytes after a gap cannot be framed).
    pub gap_at: Option<usize>,
}

impl TcpStreamBytes {
    /// Capture time of the segment that holds byte `offset`.
    pub fn time_at(&self, offset: usize) -> Duration {
        let i = self.marks.partition_point(|(o, _)| *o <= offset);
        self.marks
            .get(i.saturating_sub(1))
            .map_or(Duration::ZERO, |(_, t)| *t)
    }
}

/// Reassemble the TCP payloads among `payloads` into one stream per
/// direction (src, dst), in order of first appearance. Sequence numbers are
/// taken relative to the first segment seen, so wraparound is handled;
/// segments that were captured out of order are put back in order.
pub fn reassemble_tcp<'a>(
    payloads: impl IntoIterator<Item = &'a CapturedPayload>,
) -> Vec<TcpStreamBytes> {
    let mut order: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    let mut groups: BTreeMap<(SocketAddr, SocketAddr), Vec<&CapturedPayload>> = BTreeMap::new();
    for p in payloads.into_iter().filter(|p| p.tcp && !p.data.is_empty()) {
        let key = (p.src, p.dst);
        let segs = groups.entry(key).or_default();
        if segs.is_empty() {
            order.push(key);
        }
        segs.push(p);
    }
    order
        .into_iter()
        .map(|key| {
            let segs = groups.remove(&key).unwrap_or_default();
            let base = segs[0].seq;
            let mut rel: Vec<(i64, &CapturedPayload)> = segs
                .into_iter()
                .map(|s| (i64::from(s.seq.wrapping_sub(base) as i32), s))
                .collect();
            rel.sort_by_key(|(r, _)| *r);
            let mut stream = TcpStreamBytes {
                src: key.0,
                dst: key.1,
                data: Vec::new(),
                marks: Vec::new(),
                gap_at: None,
            };
            let mut end = rel[0].0;
            for (r, s) in rel {
                if r > end {
                    stream.gap_at = Some(stream.data.len());
                    break;
                }
                let skip = usize::try_from(end - r).unwrap_or(usize::MAX);
                if skip >= s.data.len() {
                    continue;
                }
                stream.marks.push((stream.data.len(), s.time));
                stream.data.extend_from_slice(&s.data[skip..]);
                end = r + s.data.len() as i64;
            }
            stream
        })
        .collect()
}
