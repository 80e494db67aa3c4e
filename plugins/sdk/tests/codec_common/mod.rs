//! Test-only helpers for the codec tests: read the corpus captures in
//! `tests/fixtures/hep/` (pcap or pcapng, told apart by their magic) with
//! `pcap-file`, take the IP/UDP/TCP layers apart with `etherparse`, and hand
//! back HEP datagrams (UDP to a port) or one reassembled TCP stream (to a
//! port, in sequence order) split into HEP3 frames with `hep3_frame_len`.
//!
//! Kept out of the SDK on purpose: the SDK has no pcap dependency (the hub
//! has its own reader).

#![allow(dead_code)]

use etherparse::{SlicedPacket, TransportSlice};
use hepflow_sdk::hep::hep3_frame_len;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The HEP port every corpus capture sends to.
pub const HEP_PORT: u16 = 9060;

/// `tests/fixtures/hep` of the workspace (copies of `shared/corpus/hep`).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hep")
}

/// The path of one fixture, asserting it exists.
pub fn fixture(name: &str) -> PathBuf {
    let p = fixtures_dir().join(name);
    assert!(p.is_file(), "missing fixture {}", p.display());
    p
}

/// Every frame of a capture with its link type, in file order.
pub fn read_frames(path: &Path) -> Vec<(DataLink, Vec<u8>)> {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut frames = Vec::new();
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = PcapNgReader::new(&bytes[..])
            .unwrap_or_else(|e| panic!("{}: bad pcapng: {e}", path.display()));
        let mut links: Vec<DataLink> = Vec::new();
        while let Some(block) = r.next_block() {
            match block.unwrap_or_else(|e| panic!("{}: bad block: {e}", path.display())) {
                Block::SectionHeader(_) => links.clear(),
                Block::InterfaceDescription(idb) => links.push(idb.linktype),
                Block::EnhancedPacket(epb) => {
                    let link = *links.get(epb.interface_id as usize).unwrap_or_else(|| {
                        panic!("{}: packet of unknown interface", path.display())
                    });
                    frames.push((link, epb.data.into_owned()));
                }
                Block::SimplePacket(spb) => {
                    let link = *links.first().unwrap_or(&DataLink::ETHERNET);
                    frames.push((link, spb.data.into_owned()));
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(&bytes[..])
            .unwrap_or_else(|e| panic!("{}: bad pcap: {e}", path.display()));
        let link = r.header().datalink;
        while let Some(pkt) = r.next_packet() {
            let pkt = pkt.unwrap_or_else(|e| panic!("{}: bad packet: {e}", path.display()));
            frames.push((link, pkt.data.into_owned()));
        }
    }
    frames
}

/// Slice one frame down to its transport layer, or `None` when it is not IP.
fn slice(link: DataLink, frame: &[u8]) -> Option<SlicedPacket<'_>> {
    match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(frame).ok(),
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(frame).ok(),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(frame).ok(),
        // BSD loopback: a 4-byte address family in host order, then IP.
        DataLink::NULL | DataLink::LOOP => SlicedPacket::from_ip(frame.get(4..)?).ok(),
        other => panic!("unsupported link type {other:?}"),
    }
}

/// The payloads of the UDP datagrams sent to `port`, in capture order.
pub fn udp_payloads_to(path: &Path, port: u16) -> Vec<Vec<u8>> {
    read_frames(path)
        .iter()
        .filter_map(|(link, frame)| match slice(*link, frame)?.transport? {
            TransportSlice::Udp(u) if u.destination_port() == port => Some(u.payload().to_vec()),
            _ => None,
        })
        .collect()
}

/// The byte stream sent to TCP `port`, reassembled in sequence order
/// (retransmitted and overlapping bytes taken once). Asserts the capture
/// holds one connection to that port.
pub fn tcp_stream_to(path: &Path, port: u16) -> Vec<u8> {
    let mut connections = BTreeSet::new();
    let mut isn: Option<u32> = None;
    let mut segments: Vec<(u32, Vec<u8>)> = Vec::new();
    for (link, frame) in read_frames(path) {
        let Some(sliced) = slice(link, &frame) else {
            continue;
        };
        let Some(TransportSlice::Tcp(t)) = sliced.transport else {
            continue;
        };
        if t.destination_port() != port {
            continue;
        }
        connections.insert(t.source_port());
        if t.syn() {
            isn = Some(t.sequence_number().wrapping_add(1));
        }
        if !t.payload().is_empty() {
            segments.push((t.sequence_number(), t.payload().to_vec()));
        }
    }
    assert_eq!(
        connections.len(),
        1,
        "{}: expected one TCP connection to port {port}, saw source ports {connections:?}",
        path.display()
    );
    let base = isn
        .or_else(|| segments.iter().map(|s| s.0).min())
        .unwrap_or(0);
    let mut rel: Vec<(u64, Vec<u8>)> = segments
        .into_iter()
        .map(|(seq, data)| (u64::from(seq.wrapping_sub(base)), data))
        .collect();
    rel.sort_by_key(|s| s.0);
    let mut stream = Vec::new();
    for (off, data) in rel {
        let have = stream.len() as u64;
        assert!(
            off <= have,
            "{}: gap in the TCP stream at relative seq {have} (next segment at {off})",
            path.display()
        );
        let skip = (have - off) as usize;
        if skip < data.len() {
            stream.extend_from_slice(&data[skip..]);
        }
    }
    stream
}

/// Split a HEP3 byte stream into frames with `hep3_frame_len`, asserting it
/// ends on a frame boundary.
pub fn split_hep3_stream(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = hep3_frame_len(rest)
            .unwrap_or_else(|e| {
                panic!(
                    "bad HEP3 framing at stream offset {}: {e}",
                    stream.len() - rest.len()
                )
            })
            .unwrap_or_else(|| panic!("stream ends inside a HEP3 header"));
        assert!(
            n <= rest.len(),
            "stream ends inside a {n}-byte frame ({} bytes left)",
            rest.len()
        );
        frames.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    frames
}

/// The value of the first `Call-ID` (or compact `i`) header of a SIP message.
pub fn sip_call_id(payload: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
            .then(|| value.trim().to_string())
    })
}

/// The first line of a payload, as text.
pub fn first_line(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    text.lines().next().unwrap_or("").trim_end().to_string()
}
