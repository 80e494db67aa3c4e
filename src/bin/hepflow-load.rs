//! `hepflow-load`: the project's load generator and do-nothing receiver.
//!
//! `send` produces realistic HEP: SIP call flows (INVITE, 100, 180, 200
//! with SDP, ACK, BYE, 200), RTCP JSON reports (type 5) and LOG messages
//! (type 100), as HEP v1, v2 or v3 (v1/v2 carry SIP only: RTCP and LOG are
//! always HEP3, as Kamailio sends them), over UDP (batched `sendmmsg`) or
//! TCP, at a fixed rate or as fast as possible, from N threads (one socket
//! or connection each), for a duration or a count. Every message carries a
//! unique id — the marker `hfseq` followed by 16 hex digits, in the Via
//! branch of SIP, in the JSON of RTCP, in the text of LOG — so loss and
//! duplication can be counted exactly at the far end; the SIP messages of a
//! call share one Call-ID, and RTCP/LOG carry it as correlation id.
//!
//! `recv` is the do-nothing receiver: batched `recvmmsg`, counting
//! datagrams, bytes, and the unique ids seen (lost = expected − unique,
//! duplicates = received − unique). Its loss-free rate is the physical
//! baseline of the machine it runs on.
//!
//! Both print one JSON object of results on stdout.

use bytes::{Bytes, BytesMut};
use clap::{Parser, Subcommand, ValueEnum};
use hepflow_sdk::hep::{encode_v3, HepMessage};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Marker before each message's 16-hex-digit unique id.
const SEQ_MARK: &[u8] = b"hfseq";
const SEQ_PLACEHOLDER: &[u8] = b"hfseqSSSSSSSSSSSSSSSS";
const CALL_PLACEHOLDER: &[u8] = b"CCCCCCCCCCCC";

#[derive(Parser, Debug)]
#[command(
    name = "hepflow-load",
    version,
    about = "hepflow's load generator and do-nothing receiver"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Send HEP.
    Send(SendArgs),
    /// Receive and count (the do-nothing baseline).
    Recv(RecvArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Proto {
    Udp,
    Tcp,
}

#[derive(Parser, Debug, Clone)]
struct SendArgs {
    /// Target address.
    #[arg(long)]
    to: SocketAddr,
    /// Transport.
    #[arg(long, value_enum, default_value = "udp")]
    proto: Proto,
    /// HEP version of the SIP messages (1, 2 or 3).
    #[arg(long, default_value_t = 3)]
    hep_version: u8,
    /// Messages per second in total (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Stop after this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many messages in total.
    #[arg(long)]
    count: Option<u64>,
    /// Sender threads (one socket or connection each).
    #[arg(long, default_value_t = 1)]
    threads: u64,
    /// Messages per sendmmsg call / per TCP write.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Per 100 messages: RTCP reports (type 5).
    #[arg(long, default_value_t = 4)]
    rtcp_percent: u64,
    /// Per 100 messages: LOG messages (type 100).
    #[arg(long, default_value_t = 2)]
    log_percent: u64,
    /// HEP capture id.
    #[arg(long, default_value_t = 2001)]
    capture_id: u32,
    /// Auth key chunk (HEP3).
    #[arg(long)]
    auth_key: Option<String>,
}

#[derive(Parser, Debug)]
struct RecvArgs {
    /// Address to bind.
    #[arg(long)]
    bind: SocketAddr,
    /// Stop after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Stop early after this many seconds without a datagram, once some arrived.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    idle: Duration,
    /// SO_RCVBUF bytes.
    #[arg(long, default_value_t = 8 << 20)]
    recv_buffer: usize,
    /// Count unique ids (the `hfseq` marker) for exact loss/duplicates.
    #[arg(long, default_value_t = true)]
    count_ids: bool,
}

/// One message template with the offsets of its placeholders.
#[derive(Clone)]
struct Template {
    bytes: Vec<u8>,
    call_at: Vec<usize>,
    seq_at: Vec<usize>,
    /// Which call of its cycle this message belongs to.
    call_in_cycle: u64,
}

impl Template {
    fn new(bytes: Vec<u8>) -> Self {
        let find =
            |needle: &[u8]| -> Vec<usize> { memchr::memmem::find_iter(&bytes, needle).collect() };
        let seq_at: Vec<usize> = find(SEQ_PLACEHOLDER)
            .into_iter()
            .map(|i| i + SEQ_MARK.len())
            .collect();
        let call_at = find(CALL_PLACEHOLDER);
        assert_eq!(seq_at.len(), 1, "a template carries exactly one id");
        Template {
            call_at,
            seq_at,
            bytes,
            call_in_cycle: 0,
        }
    }

    /// Write the message for `call` and `seq` into `out`.
    fn render(&self, call: u64, seq: u64, out: &mut [u8]) -> usize {
        let n = self.bytes.len();
        out[..n].copy_from_slice(&self.bytes);
        let call_digits = format_fixed(call % 1_000_000_000_000, 12, 10);
        for &at in &self.call_at {
            out[at..at + 12].copy_from_slice(&call_digits[..12]);
        }
        let seq_digits = format_fixed(seq, 16, 16);
        for &at in &self.seq_at {
            out[at..at + 16].copy_from_slice(&seq_digits[..16]);
        }
        n
    }
}

fn format_fixed(mut v: u64, width: usize, radix: u64) -> [u8; 16] {
    let mut out = [b'0'; 16];
    for i in (0..width).rev() {
        let d = (v % radix) as u8;
        out[i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        v /= radix;
    }
    out
}

fn sip_messages() -> Vec<String> {
    let call = std::str::from_utf8(CALL_PLACEHOLDER).unwrap();
    let seq = std::str::from_utf8(SEQ_PLACEHOLDER).unwrap();
    let common = |first: &str, cseq: &str, to_tag: bool, extra: &str, body: &str| {
        format!(
            "{first}\r\nVia: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK-{seq}\r\n\
             From: \"Alice\" <sip:alice@example.com>;tag=a73kszlfl\r\n\
             To: <sip:bob@example.net>{}\r\n\
             Call-ID: load-{call}@10.1.2.3\r\nCSeq: {cseq}\r\n\
             User-Agent: hepflow-load\r\nMax-Forwards: 70\r\n{extra}\
             Content-Length: {}\r\n\r\n{body}",
            if to_tag { ";tag=b91kq2" } else { "" },
            body.len()
        )
    };
    let sdp = "v=0\r\no=alice 2890844526 2890844526 IN IP4 10.1.2.3\r\ns=call\r\n\
               c=IN IP4 10.1.2.3\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\n\
               a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let contact = "Contact: <sip:alice@10.1.2.3:5060>\r\nContent-Type: application/sdp\r\n";
    vec![
        common(
            "INVITE sip:bob@example.net SIP/2.0",
            "1 INVITE",
            false,
            contact,
            sdp,
        ),
        common("SIP/2.0 100 Trying", "1 INVITE", false, "", ""),
        common("SIP/2.0 180 Ringing", "1 INVITE", true, "", ""),
        common("SIP/2.0 200 OK", "1 INVITE", true, contact, sdp),
        common("ACK sip:bob@10.4.5.6:5060 SIP/2.0", "1 ACK", true, "", ""),
        common("BYE sip:bob@10.4.5.6:5060 SIP/2.0", "2 BYE", true, "", ""),
        common("SIP/2.0 200 OK", "2 BYE", true, "", ""),
    ]
}

fn now_ts() -> (u32, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as u32, d.subsec_micros())
}

fn v3(payload: String, proto_type: u8, args: &SendArgs, correlate: bool) -> Vec<u8> {
    let mut m = HepMessage::new_v3(Bytes::from(payload));
    m.proto_type = proto_type;
    m.src_ip = IpAddr::from([10, 1, 2, 3]);
    m.dst_ip = IpAddr::from([10, 4, 5, 6]);
    m.src_port = 5060;
    m.dst_port = 5060;
    (m.ts_sec, m.ts_usec) = now_ts();
    m.capture_id = args.capture_id;
    m.auth_key = args.auth_key.clone().map(Bytes::from);
    if correlate {
        m.correlation_id = Some(Bytes::from(format!(
            "load-{}@10.1.2.3",
            std::str::from_utf8(CALL_PLACEHOLDER).unwrap()
        )));
    }
    let mut out = BytesMut::new();
    encode_v3(&m, &mut out).expect("template encodes");
    out.to_vec()
}

fn v1v2(payload: &str, version: u8, capture_id: u32) -> Vec<u8> {
    let mut out = vec![version, 16, 2, 17];
    out.extend_from_slice(&5060u16.to_be_bytes());
    out.extend_from_slice(&5060u16.to_be_bytes());
    out.extend_from_slice(&[10, 1, 2, 3, 10, 4, 5, 6]);
    if version == 2 {
        let (s, us) = now_ts();
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&us.to_le_bytes());
        out.extend_from_slice(&(capture_id as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(payload.as_bytes());
    out
}

/// The templates in the order a sender cycles through them.
fn templates(args: &SendArgs) -> Vec<Template> {
    let sip: Vec<Vec<u8>> = sip_messages()
        .into_iter()
        .map(|p| match args.hep_version {
            1 | 2 => v1v2(&p, args.hep_version, args.capture_id),
            _ => v3(p, 1, args, false),
        })
        .collect();
    let seq = std::str::from_utf8(SEQ_PLACEHOLDER).unwrap();
    let rtcp = v3(
        format!(
            "{{\"type\":200,\"ssrc\":1234567,\"report_count\":1,\"report_blocks\":[{{\"source_ssrc\":7654321,\
             \"fraction_lost\":0,\"packets_lost\":0,\"highest_seq_no\":4242,\"ia_jitter\":12,\"lsr\":0,\"dlsr\":0}}],\
             \"id\":\"{seq}\"}}"
        ),
        5,
        args,
        true,
    );
    let log = v3(
        format!("ERROR: load test log line {seq}: no route to destination"),
        100,
        args,
        true,
    );
    // One cycle: 14 whole calls (98 SIP messages), with RTCP and LOG
    // (rtcp_percent / log_percent of the cycle) spread evenly among them,
    // each carrying the Call-ID of the call in progress.
    const CALLS: usize = 14;
    let sip_count = CALLS * sip.len();
    let (r, l) = (args.rtcp_percent.min(50), args.log_percent.min(50));
    let total = (sip_count as u64 * 100) / (100 - r - l).max(1);
    let mut cycle = Vec::new();
    let (mut rc, mut lc, mut s) = (0u64, 0u64, 0usize);
    for i in 0..total {
        let call = (s.min(sip_count - 1) / sip.len()) as u64;
        let mut tpl = if rc * total < r * (i + 1) {
            rc += 1;
            Template::new(rtcp.clone())
        } else if lc * total < l * (i + 1) {
            lc += 1;
            Template::new(log.clone())
        } else if s < sip_count {
            s += 1;
            Template::new(sip[(s - 1) % sip.len()].clone())
        } else {
            continue;
        };
        tpl.call_in_cycle = call;
        cycle.push(tpl);
    }
    while s < sip_count {
        let mut tpl = Template::new(sip[s % sip.len()].clone());
        tpl.call_in_cycle = (s / sip.len()) as u64;
        cycle.push(tpl);
        s += 1;
    }
    cycle
}

#[derive(Default)]
struct SendTotals {
    messages: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

fn send(args: SendArgs) -> anyhow::Result<()> {
    let templates = Arc::new(templates(&args));
    let totals = Arc::new(SendTotals::default());
    let started = Instant::now();
    let per_thread_rate = args.rate as f64 / args.threads as f64;
    let per_thread_count = args.count.map(|c| c.div_ceil(args.threads));
    let mut handles = Vec::new();
    for t in 0..args.threads {
        let (templates, totals, args) = (templates.clone(), totals.clone(), args.clone());
        let limit = per_thread_count
            .map(|c| c.min(args.count.unwrap_or(u64::MAX) - (t * c).min(args.count.unwrap_or(0))));
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            sender_thread(t, &args, &templates, per_thread_rate, limit, &totals)
        }));
    }
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    }
    let secs = started.elapsed().as_secs_f64();
    let sent = totals.messages.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "mode": "send",
            "proto": format!("{:?}", args.proto).to_lowercase(),
            "hep_version": args.hep_version,
            "threads": args.threads,
            "target_rate": args.rate,
            "sent": sent,
            "bytes": totals.bytes.load(Ordering::Relaxed),
            "send_errors": totals.errors.load(Ordering::Relaxed),
            "seconds": secs,
            "rate": sent as f64 / secs,
        })
    );
    Ok(())
}

/// The unique id of message `k` of thread `t`.
fn seq_of(t: u64, k: u64) -> u64 {
    (t << 40) | k
}

fn sender_thread(
    t: u64,
    args: &SendArgs,
    templates: &[Template],
    rate: f64,
    limit: Option<u64>,
    totals: &SendTotals,
) -> anyhow::Result<()> {
    let deadline = args.duration.map(|d| Instant::now() + d);
    let max_len = templates.iter().map(|t| t.bytes.len()).max().unwrap_or(0);
    let batch = args.batch.max(1);
    let mut buf = vec![0u8; batch * max_len];
    let mut lens = vec![0usize; batch];
    let started = Instant::now();
    let mut k = 0u64;
    let mut sink = Sink::open(args)?;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) || limit.is_some_and(|l| k >= l) {
            break;
        }
        let mut n = batch as u64;
        if let Some(l) = limit {
            n = n.min(l - k);
        }
        if rate > 0.0 {
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            if due <= k {
                let ahead = (k + 1) as f64 / rate - started.elapsed().as_secs_f64();
                if ahead > 50e-6 {
                    std::thread::sleep(Duration::from_secs_f64(ahead.min(0.005)));
                }
                continue;
            }
            n = n.min(due - k);
        }
        let len = templates.len() as u64;
        let calls_per_cycle = templates.last().map_or(1, |t| t.call_in_cycle + 1);
        for i in 0..n as usize {
            let idx = k + i as u64;
            let tpl = &templates[(idx % len) as usize];
            let call = (t << 32) | ((idx / len) * calls_per_cycle + tpl.call_in_cycle);
            lens[i] = tpl.render(call, seq_of(t, idx), &mut buf[i * max_len..]);
        }
        let (sent, bytes) = sink.send(&buf, max_len, &lens[..n as usize], totals)?;
        k += n;
        totals.messages.fetch_add(sent, Ordering::Relaxed);
        totals.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    sink.finish()
}

enum Sink {
    Udp(UdpSocket),
    Tcp(std::net::TcpStream, Vec<u8>),
}

impl Sink {
    fn open(args: &SendArgs) -> anyhow::Result<Sink> {
        Ok(match args.proto {
            Proto::Udp => {
                let bind: SocketAddr = if args.to.is_ipv6() {
                    "[::]:0".parse()?
                } else {
                    "0.0.0.0:0".parse()?
                };
                let s = UdpSocket::bind(bind)?;
                s.connect(args.to)?;
                Sink::Udp(s)
            }
            Proto::Tcp => {
                if args.hep_version != 3 {
                    anyhow::bail!("HEP v1/v2 cannot be framed on TCP: use --hep-version 3");
                }
                let s = std::net::TcpStream::connect(args.to)?;
                s.set_nodelay(true)?;
                Sink::Tcp(s, Vec::with_capacity(1 << 16))
            }
        })
    }

    fn send(
        &mut self,
        buf: &[u8],
        stride: usize,
        lens: &[usize],
        totals: &SendTotals,
    ) -> anyhow::Result<(u64, u64)> {
        match self {
            Sink::Udp(s) => {
                let (mut sent, mut bytes) = (0u64, 0u64);
                let mut start = 0;
                while start < lens.len() {
                    let n = send_batch(s, &buf[start * stride..], stride, &lens[start..]);
                    match n {
                        Ok(0) => {}
                        Ok(n) => {
                            for l in &lens[start..start + n] {
                                bytes += *l as u64;
                            }
                            sent += n as u64;
                            start += n;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                            // ICMP port unreachable from an earlier datagram: count, go on.
                            totals.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok((sent, bytes))
            }
            Sink::Tcp(s, out) => {
                out.clear();
                let mut bytes = 0u64;
                for (i, l) in lens.iter().enumerate() {
                    out.extend_from_slice(&buf[i * stride..i * stride + l]);
                    bytes += *l as u64;
                }
                s.write_all(out)?;
                Ok((lens.len() as u64, bytes))
            }
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        if let Sink::Tcp(mut s, _) = self {
            s.flush()?;
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn send_batch(s: &UdpSocket, buf: &[u8], stride: usize, lens: &[usize]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut iov: Vec<libc::iovec> = lens
        .iter()
        .enumerate()
        .map(|(i, l)| libc::iovec {
            iov_base: buf[i * stride..].as_ptr() as *mut libc::c_void,
            iov_len: *l,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: all-zero is a valid mmsghdr; fields set below.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: msgs/iov point into live buffers for the duration of the call.
    let n = unsafe { libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as u32, 0) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn send_batch(s: &UdpSocket, buf: &[u8], stride: usize, lens: &[usize]) -> std::io::Result<usize> {
    for (i, l) in lens.iter().enumerate() {
        s.send(&buf[i * stride..i * stride + l])?;
    }
    Ok(lens.len())
}

/// Seen-id bitmap per sender thread (ids are `thread << 40 | counter`).
#[derive(Default)]
struct Seen {
    threads: Vec<Vec<u64>>,
    unique: u64,
}

impl Seen {
    fn mark(&mut self, id: u64) {
        let (t, k) = ((id >> 40) as usize, (id & ((1 << 40) - 1)) as usize);
        if t > 1024 || k > (1 << 32) {
            return;
        }
        if self.threads.len() <= t {
            self.threads.resize_with(t + 1, Vec::new);
        }
        let words = &mut self.threads[t];
        if words.len() <= k / 64 {
            words.resize(k / 64 + 1, 0);
        }
        let bit = 1u64 << (k % 64);
        if words[k / 64] & bit == 0 {
            words[k / 64] |= bit;
            self.unique += 1;
        }
    }

    /// Highest counter seen + 1 per thread, summed: the ids the sender must
    /// have sent at least.
    fn expected_at_least(&self) -> u64 {
        self.threads
            .iter()
            .map(|w| {
                w.iter()
                    .enumerate()
                    .rev()
                    .find(|(_, x)| **x != 0)
                    .map(|(i, x)| (i as u64) * 64 + 64 - x.leading_zeros() as u64)
                    .unwrap_or(0)
            })
            .sum()
    }
}

fn parse_id(msg: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(msg, SEQ_MARK)? + SEQ_MARK.len();
    let hex = msg.get(at..at + 16)?;
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

fn recv(args: RecvArgs) -> anyhow::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(args.bind),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_recv_buffer_size(args.recv_buffer)?;
    socket.bind(&args.bind.into())?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let socket: UdpSocket = socket.into();
    let stop = AtomicBool::new(false);
    let (mut datagrams, mut bytes) = (0u64, 0u64);
    let mut seen = Seen::default();
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    const BATCH: usize = 64;
    const SLOT: usize = 65536;
    let mut scratch = vec![0u8; BATCH * SLOT];
    while !stop.load(Ordering::Relaxed) {
        if started.elapsed() >= args.duration {
            break;
        }
        if first.is_some() && last.elapsed() >= args.idle {
            break;
        }
        let lens = recv_batch(&socket, &mut scratch, SLOT, BATCH)?;
        if lens.is_empty() {
            continue;
        }
        last = Instant::now();
        first.get_or_insert(last);
        for (i, l) in lens.iter().enumerate() {
            datagrams += 1;
            bytes += *l as u64;
            if args.count_ids {
                if let Some(id) = parse_id(&scratch[i * SLOT..i * SLOT + l]) {
                    seen.mark(id);
                }
            }
        }
    }
    let active = first
        .map(|f| last.duration_since(f).as_secs_f64())
        .unwrap_or(0.0);
    let expected = seen.expected_at_least();
    println!(
        "{}",
        serde_json::json!({
            "mode": "recv",
            "datagrams": datagrams,
            "bytes": bytes,
            "unique_ids": seen.unique,
            "duplicates": datagrams.saturating_sub(seen.unique),
            "lost_at_least": expected.saturating_sub(seen.unique),
            "active_seconds": active,
            "rate": if active > 0.0 { datagrams as f64 / active } else { 0.0 },
        })
    );
    Ok(())
}

#[cfg(target_os = "linux")]
fn recv_batch(
    s: &UdpSocket,
    buf: &mut [u8],
    slot: usize,
    batch: usize,
) -> anyhow::Result<Vec<usize>> {
    use std::os::fd::AsRawFd;
    let base = buf.as_mut_ptr();
    let mut iov: Vec<libc::iovec> = (0..batch)
        .map(|i| libc::iovec {
            // SAFETY: i * slot < buf.len() (buf is batch * slot bytes).
            iov_base: unsafe { base.add(i * slot) }.cast(),
            iov_len: slot,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: all-zero is a valid mmsghdr; fields set below.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: msgs/iov point into `buf`, live for the call.
    let n = unsafe {
        libc::recvmmsg(
            s.as_raw_fd(),
            msgs.as_mut_ptr(),
            batch as u32,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted => Ok(Vec::new()),
            _ => Err(e.into()),
        };
    }
    Ok(msgs[..n as usize]
        .iter()
        .map(|m| m.msg_len as usize)
        .collect())
}

#[cfg(not(target_os = "linux"))]
fn recv_batch(
    s: &UdpSocket,
    buf: &mut [u8],
    _slot: usize,
    _batch: usize,
) -> anyhow::Result<Vec<usize>> {
    match s.recv(buf) {
        Ok(n) => Ok(vec![n]),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Send(a) => {
            if !(1..=3).contains(&a.hep_version) {
                eprintln!("--hep-version must be 1, 2 or 3");
                return std::process::ExitCode::from(2);
            }
            if a.duration.is_none() && a.count.is_none() {
                eprintln!("give --duration or --count (a load run must stop by itself)");
                return std::process::ExitCode::from(2);
            }
            send(a)
        }
        Cmd::Recv(a) => recv(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hepflow-load: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hepflow_sdk::hep::{decode, DecodeOptions};
    use hepflow_sdk::sip::SipSummary;

    fn args(v: u8) -> SendArgs {
        SendArgs::parse_from([
            "x",
            "--to",
            "127.0.0.1:9",
            "--hep-version",
            &v.to_string(),
            "--count",
            "1",
        ])
    }

    #[test]
    fn templates_render_to_valid_hep_with_unique_ids_and_call_ids() {
        for v in [1u8, 2, 3] {
            let a = args(v);
            let t = templates(&a);
            assert_eq!(t.len(), 104);
            let mut buf = vec![0u8; 65536];
            let mut ids = std::collections::BTreeSet::new();
            let mut kinds = std::collections::BTreeMap::new();
            let mut calls = std::collections::BTreeMap::new();
            for (k, tpl) in t.iter().enumerate() {
                let n = tpl.render(42 + tpl.call_in_cycle, seq_of(1, k as u64), &mut buf);
                let m = decode(Bytes::copy_from_slice(&buf[..n]), &DecodeOptions::default())
                    .unwrap_or_else(|e| panic!("v{v} template {k}: {e}"));
                *kinds.entry(m.proto_type).or_insert(0) += 1;
                assert!(ids.insert(parse_id(&buf[..n]).expect("id")));
                let want = format!("load-{:012}@10.1.2.3", 42 + tpl.call_in_cycle);
                if m.proto_type == 1 {
                    let sip = SipSummary::parse(&m.payload).expect("SIP");
                    assert_eq!(sip.call_id.unwrap().as_str(), want);
                    *calls.entry(want).or_insert(0) += 1;
                } else {
                    assert_eq!(m.correlation_id.as_deref(), Some(want.as_bytes()));
                }
            }
            assert_eq!(kinds.get(&5), Some(&4), "v{v}: {kinds:?}");
            assert_eq!(kinds.get(&100), Some(&2), "v{v}: {kinds:?}");
            assert_eq!(kinds.get(&1), Some(&98), "v{v}: {kinds:?}");
            // 14 whole calls of 7 SIP messages each.
            assert_eq!(calls.len(), 14);
            assert!(calls.values().all(|n| *n == 7), "{calls:?}");
        }
    }

    #[test]
    fn seen_counts_unique_and_expected() {
        let mut s = Seen::default();
        for k in [0u64, 1, 2, 2, 5] {
            s.mark(seq_of(3, k));
        }
        s.mark(seq_of(0, 0));
        assert_eq!(s.unique, 5);
        assert_eq!(s.expected_at_least(), 6 + 1);
    }
}
