//! `hepflow replay`: send the HEP messages of a packet capture (pcap or
//! pcapng), or the plain SIP packets of one wrapped into HEPv3, to a HEP
//! collector over UDP or TCP, at the capture's own pace, a multiple of it,
//! or as fast as possible, printing one line per message sent and a summary.
//!
//! What is sent:
//!
//! - **HEP mode**: every UDP datagram sent to `--hep-port` (default 9060)
//!   that decodes as HEP v1, v2 or v3, and every HEP3 message framed in the
//!   TCP streams sent to that port, byte for byte as captured. HEPv1/v2
//!   cannot be framed on TCP, so to a `tcp://` target they are skipped (and
//!   counted).
//! - **SIP mode**: every UDP datagram and every message of a TCP stream
//!   (split by `Content-Length`) whose first line is a SIP request or status
//!   line, wrapped into HEPv3 (`encode_v3`) with the packet's addresses,
//!   ports, IP protocol and capture time, protocol type 1 (SIP), and the
//!   `--capture-id`, `--node-name` and `--auth-key` given.
//! - **auto** (the default): HEP mode when the capture holds HEP messages on
//!   `--hep-port`, else SIP mode.
//!
//! Messages are sent in capture-time order; message `i` leaves at
//! `(t_i - t_0) / speed` after the first. The capture is read into memory
//! to sort it, so files above 1 GiB are refused (split them first). The
//! auth key is never printed.

use crate::capture::{self, CapturedPayload, TcpStreamBytes};
use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use hepflow_sdk::hep::{self, DecodeOptions, HepMessage, HepVersion, AF_INET, AF_INET6};
use hepflow_sdk::sip::{SipStart, SipSummary};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Largest UDP payload over IPv4/IPv6 without jumbograms.
const MAX_UDP_PAYLOAD: usize = 65507;
/// Largest SIP message looked for in a TCP stream (headers + body).
const MAX_SIP_MESSAGE: usize = 65535;
/// Largest capture file replayed: the file and its messages are held in
/// memory (to send them in time order).
const MAX_CAPTURE_BYTES: u64 = 1 << 30;

/// Arguments of `hepflow replay`.
#[derive(Args, Debug, Clone)]
pub struct ReplayArgs {
    /// The capture to replay (pcap or pcapng).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where to send: udp://HOST:PORT or tcp://HOST:PORT (IPv6: udp://[::1]:9060).
    #[arg(long, value_name = "URL", value_parser = Target::parse)]
    pub to: Target,
    /// What to send: the capture's HEP messages (`hep`), its plain SIP
    /// packets wrapped into HEPv3 (`sip`), or `auto`: HEP when the capture
    /// holds HEP messages on --hep-port, else SIP.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// The port HEP was sent to in the capture (HEP mode).
    #[arg(long, value_name = "PORT", default_value_t = 9060)]
    pub hep_port: u16,
    /// Only SIP packets from or to this port (SIP mode; default: any port).
    #[arg(long, value_name = "PORT")]
    pub sip_port: Option<u16>,
    /// Pace: a multiple of the capture's own pace (1 = original, 2 = twice
    /// as fast, 0.5 = half), or `max` for as fast as possible.
    #[arg(long, value_name = "X|max", default_value = "1", value_parser = Speed::parse)]
    pub speed: Speed,
    /// Capture id (chunk 0x0c) of wrapped SIP (SIP mode).
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub capture_id: u32,
    /// Capture node name (chunk 0x13) of wrapped SIP (SIP mode).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Auth key (chunk 0x0e) of wrapped SIP (SIP mode). Prefer the
    /// environment variable: a flag is visible to other users in `ps`.
    #[arg(
        long,
        value_name = "KEY",
        env = "HEPFLOW_REPLAY_AUTH_KEY",
        hide_env_values = true
    )]
    pub auth_key: Option<String>,
    /// Print only the summary, not one line per message.
    #[arg(short, long)]
    pub quiet: bool,
}

/// What `replay` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// HEP when the capture has HEP messages on --hep-port, else SIP.
    Auto,
    /// The capture's HEP messages, as captured.
    Hep,
    /// The capture's SIP packets, wrapped into HEPv3.
    Sip,
}

/// A `udp://` or `tcp://` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// TCP (HEP3 messages back to back on one connection) or UDP (one
    /// datagram per message).
    pub tcp: bool,
    /// The address as written (host and port).
    pub authority: String,
    /// The resolved address.
    pub addr: SocketAddr,
}

impl Target {
    /// Parse `udp://HOST:PORT` or `tcp://HOST:PORT` (HOST may be a name, an
    /// IPv4 address or a bracketed IPv6 address) and resolve it.
    pub fn parse(s: &str) -> Result<Target, String> {
        let usage = "expected udp://HOST:PORT or tcp://HOST:PORT, e.g. udp://127.0.0.1:9060";
        let Some((scheme, authority)) = s.split_once("://") else {
            return Err(format!("`{s}` has no scheme: {usage}"));
        };
        let tcp = match scheme.to_ascii_lowercase().as_str() {
            "udp" => false,
            "tcp" => true,
            other => return Err(format!("unsupported scheme `{other}`: {usage}")),
        };
        let authority = authority.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("`{s}`: {usage}"));
        }
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{authority}` ({e}): {usage}"))?
            .next()
            .ok_or_else(|| format!("`{authority}` resolves to no address"))?;
        Ok(Target {
            tcp,
            authority: authority.to_string(),
            addr,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tcp { "tcp" } else { "udp" };
        write!(f, "{scheme}://{}", self.authority)
    }
}

/// The pace of a replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// A multiple of the capture's pace (above 0).
    Times(f64),
    /// As fast as possible.
    Max,
}

impl Speed {
    /// Parse a positive number or `max`.
    pub fn parse(s: &str) -> Result<Speed, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 => Ok(Speed::Times(x)),
            _ => Err(format!(
                "`{s}`: expected a number above 0 (1 = the capture's pace) or `max`"
            )),
        }
    }

    /// When a message captured `since_first` after the first one is due.
    pub fn offset(self, since_first: Duration) -> Duration {
        match self {
            Speed::Max => Duration::ZERO,
            Speed::Times(x) => {
                Duration::try_from_secs_f64(since_first.as_secs_f64() / x).unwrap_or(Duration::MAX)
            }
        }
    }
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Speed::Max => f.write_str("max"),
            Speed::Times(x) => write!(f, "{x}x"),
        }
    }
}

/// One message ready to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Capture time.
    pub time: Duration,
    /// The HEP bytes to send.
    pub bytes: Bytes,
    /// HEP version of `bytes`.
    pub version: HepVersion,
    /// One-line description (addresses carried, protocol, SIP start line).
    pub what: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    /// The mode used (`hep` or `sip`).
    pub mode: &'static str,
    /// Messages sent.
    pub sent: usize,
    /// Bytes sent (HEP messages, without transport headers).
    pub bytes: usize,
    /// Messages sent per HEP version (index 0 = v1).
    pub by_version: [usize; 3],
    /// Messages not sent, by reason.
    pub skipped: BTreeMap<String, usize>,
}

/// Run `hepflow replay`, writing progress and the summary to `out`.
pub fn run(args: &ReplayArgs, out: &mut dyn Write) -> anyhow::Result<ReplaySummary> {
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("reading capture {}", args.file.display()))?
        .len();
    if size > MAX_CAPTURE_BYTES {
        bail!(
            "{} is {size} bytes; replay reads at most {MAX_CAPTURE_BYTES} bytes into memory: split it first (e.g. `editcap -c 1000000 BIG.pcap part.pcap`)",
            args.file.display()
        );
    }
    let payloads = capture::read_payloads(&args.file)?;
    let mut summary = ReplaySummary::default();
    let hep_items = collect_hep(&payloads, args.hep_port, &mut summary.skipped);
    let mode = match args.mode {
        Mode::Hep => Mode::Hep,
        Mode::Sip => Mode::Sip,
        Mode::Auto if !hep_items.is_empty() => Mode::Hep,
        Mode::Auto => Mode::Sip,
    };
    let mut items = if mode == Mode::Hep {
        summary.mode = "hep";
        hep_items
    } else {
        summary.mode = "sip";
        summary.skipped.clear();
        collect_sip(&payloads, args, &mut summary.skipped)?
    };
    if mode == Mode::Hep
        && (args.auth_key.is_some() || args.node_name.is_some() || args.capture_id != 0)
    {
        eprintln!(
            "hepflow replay: --auth-key, --node-name and --capture-id apply to wrapped SIP only; HEP messages are sent as captured"
        );
    }
    if args.to.tcp {
        let before = items.len();
        items.retain(|i| i.version == HepVersion::V3);
        let legacy = before - items.len();
        if legacy > 0 {
            *summary
                .skipped
                .entry("HEPv1/v2 cannot be framed on TCP (replay them to a udp:// target)".into())
                .or_default() += legacy;
        }
    } else {
        let before = items.len();
        items.retain(|i| i.bytes.len() <= MAX_UDP_PAYLOAD);
        let big = before - items.len();
        if big > 0 {
            *summary
                .skipped
                .entry(format!(
                    "larger than a UDP datagram ({MAX_UDP_PAYLOAD} bytes; replay to a tcp:// target)"
                ))
                .or_default() += big;
        }
    }
    items.sort_by_key(|i| i.time);
    if items.is_empty() {
        let skipped = describe_skipped(&summary.skipped);
        match mode {
            Mode::Hep => bail!(
                "{}: nothing to send: no HEP message on port {} can go to {}{skipped}",
                args.file.display(),
                args.hep_port,
                args.to
            ),
            _ => bail!(
                "{}: nothing to send: no HEP messages on port {} (see --hep-port) and no SIP packets{}{skipped}",
                args.file.display(),
                args.hep_port,
                args.sip_port
                    .map(|p| format!(" from or to port {p}"))
                    .unwrap_or_default()
            ),
        }
    }
    writeln!(
        out,
        "replaying {}: {} {} to {} at speed {}",
        args.file.display(),
        items.len(),
        if mode == Mode::Hep {
            format!(
                "HEP message(s) sent to port {} in the capture",
                args.hep_port
            )
        } else {
            "SIP message(s) wrapped into HEPv3".to_string()
        },
        args.to,
        args.speed
    )?;
    for (reason, n) in &summary.skipped {
        writeln!(out, "skipped {n}: {reason}")?;
    }
    send(&items, args, out, &mut summary)?;
    Ok(summary)
}

fn describe_skipped(skipped: &BTreeMap<String, usize>) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = skipped.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!(" (skipped: {})", parts.join("; "))
}

/// One-line description of a SIP payload.
fn describe_sip(payload: &Bytes) -> String {
    let Some(s) = SipSummary::parse(payload) else {
        return "(not SIP)".into();
    };
    let start = match &s.start {
        SipStart::Request { .. } => {
            let line = payload
                .split(|b| *b == b'\r' || *b == b'\n')
                .next()
                .unwrap_or_default();
            String::from_utf8_lossy(line)
                .trim_end_matches(" SIP/2.0")
                .to_string()
        }
        SipStart::Response { status, reason } => format!(
            "{status} {} ({})",
            reason.as_deref().unwrap_or(""),
            s.cseq_method.as_deref().unwrap_or("?")
        ),
    };
    match &s.call_id {
        Some(c) => format!("SIP {start} call-id {c}"),
        None => format!("SIP {start}"),
    }
}

/// Description of a decoded HEP message.
fn describe_hep(m: &HepMessage) -> String {
    let carried = format!(
        "{} -> {}",
        SocketAddr::new(m.src_ip, m.src_port),
        SocketAddr::new(m.dst_ip, m.dst_port)
    );
    let body = if m.proto_type == hep::proto_type::SIP {
        describe_sip(&m.payload)
    } else {
        let name = m
            .proto_name()
            .map_or_else(|| format!("type {}", m.proto_type), str::to_string);
        format!("{name} ({} bytes of payload)", m.payload.len())
    };
    format!("HEPv{} {carried} {body}", m.version.number())
}

/// The HEP messages sent to `port` in the capture.
fn collect_hep(
    payloads: &[CapturedPayload],
    port: u16,
    skipped: &mut BTreeMap<String, usize>,
) -> Vec<Outgoing> {
    let mut items = Vec::new();
    let mut push =
        |time: Duration, bytes: Bytes, skipped: &mut BTreeMap<String, usize>| match hep::decode(
            bytes.clone(),
            &DecodeOptions::default(),
        ) {
            Ok(m) => items.push(Outgoing {
                time,
                what: describe_hep(&m),
                version: m.version,
                bytes,
            }),
            Err(e) => {
                *skipped
                    .entry(format!(
                        "not decodable as HEP on port {port} ({})",
                        e.reason()
                    ))
                    .or_default() += 1;
            }
        };
    for p in payloads.iter().filter(|p| !p.tcp && p.dst.port() == port) {
        push(p.time, Bytes::copy_from_slice(&p.data), skipped);
    }
    for s in capture::reassemble_tcp(payloads.iter().filter(|p| p.dst.port() == port)) {
        let mut off = 0;
        while off < s.data.len() {
            match hep::hep3_frame_len(&s.data[off..]) {
                Ok(Some(n)) if off + n <= s.data.len() => {
                    push(
                        s.time_at(off),
                        Bytes::copy_from_slice(&s.data[off..off + n]),
                        skipped,
                    );
                    off += n;
                }
                Ok(_) => {
                    *skipped
                        .entry(format!(
                            "incomplete HEP3 message at the end of a TCP stream to port {port}"
                        ))
                        .or_default() += 1;
                    break;
                }
                Err(_) => {
                    *skipped
                        .entry(format!(
                            "TCP stream to port {port} that is not HEP3-framed (rest of the stream)"
                        ))
                        .or_default() += 1;
                    break;
                }
            }
        }
        note_gap(&s, skipped);
    }
    items
}

fn note_gap(s: &TcpStreamBytes, skipped: &mut BTreeMap<String, usize>) {
    if s.gap_at.is_some() {
        *skipped
            .entry("TCP stream with segments missing from the capture (rest of the stream)".into())
            .or_default() += 1;
    }
}

/// The SIP messages of the capture, wrapped into HEPv3.
fn collect_sip(
    payloads: &[CapturedPayload],
    args: &ReplayArgs,
    skipped: &mut BTreeMap<String, usize>,
) -> anyhow::Result<Vec<Outgoing>> {
    let port_ok = |p: &CapturedPayload| {
        args.sip_port
            .is_none_or(|port| p.src.port() == port || p.dst.port() == port)
    };
    let mut found: Vec<(Duration, SocketAddr, SocketAddr, bool, Bytes)> = Vec::new();
    for p in payloads.iter().filter(|p| !p.tcp && port_ok(p)) {
        let b = Bytes::copy_from_slice(&p.data);
        if SipSummary::parse(&b).is_some() {
            found.push((p.time, p.src, p.dst, false, b));
        }
    }
    for s in capture::reassemble_tcp(payloads.iter().filter(|p| p.tcp && port_ok(p))) {
        let (msgs, incomplete) = split_sip_stream(&s.data);
        let mut any = false;
        for r in msgs {
            let b = Bytes::copy_from_slice(&s.data[r.clone()]);
            if SipSummary::parse(&b).is_none() {
                break;
            }
            any = true;
            found.push((s.time_at(r.start), s.src, s.dst, true, b));
        }
        if any && incomplete {
            *skipped
                .entry("incomplete SIP message at the end of a TCP stream".into())
                .or_default() += 1;
        }
        if any {
            note_gap(&s, skipped);
        }
    }
    let mut items = Vec::with_capacity(found.len());
    for (time, src, dst, tcp, payload) in found {
        let mut m = HepMessage::new_v3(payload.clone());
        m.ip_family = if src.is_ipv4() { AF_INET } else { AF_INET6 };
        m.ip_proto = if tcp { 6 } else { 17 };
        m.src_ip = src.ip();
        m.dst_ip = dst.ip();
        m.src_port = src.port();
        m.dst_port = dst.port();
        m.ts_sec = u32::try_from(time.as_secs()).unwrap_or(u32::MAX);
        m.ts_usec = time.subsec_micros();
        m.capture_id = args.capture_id;
        m.auth_key = args.auth_key.as_ref().map(|k| Bytes::from(k.clone()));
        m.node_name = args.node_name.as_ref().map(|n| Bytes::from(n.clone()));
        let mut buf = BytesMut::new();
        match hep::encode_v3(&m, &mut buf) {
            Ok(()) => items.push(Outgoing {
                time,
                bytes: buf.freeze(),
                version: HepVersion::V3,
                what: format!(
                    "{} {src} -> {dst} {}",
                    if tcp { "tcp" } else { "udp" },
                    describe_sip(&payload)
                ),
            }),
            Err(e) => {
                *skipped
                    .entry(format!("SIP message too large for HEPv3 ({e})"))
                    .or_default() += 1;
            }
        }
    }
    Ok(items)
}

/// Split a SIP-over-TCP stream into messages: CRLF keep-alives are
/// skipped, each message is its header section plus `Content-Length` bytes
/// of body (0 when the header is absent). Returns the message ranges and
/// whether bytes were left over (an incomplete or unframeable message).
pub fn split_sip_stream(data: &[u8]) -> (Vec<std::ops::Range<usize>>, bool) {
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        while off < data.len() && (data[off] == b'\r' || data[off] == b'\n') {
            off += 1;
        }
        if off >= data.len() {
            return (out, false);
        }
        let window = &data[off..data.len().min(off + MAX_SIP_MESSAGE)];
        let Some(hend) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
            return (out, true);
        };
        let headers = &window[..hend];
        let mut content_length = 0usize;
        for line in headers.split(|b| *b == b'\n').skip(1) {
            let line = String::from_utf8_lossy(line);
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
                match value.trim().parse::<usize>() {
                    Ok(n) => content_length = n,
                    Err(_) => return (out, true),
                }
                break;
            }
        }
        let end = off + hend + 4 + content_length;
        if end > data.len() || end - off > MAX_SIP_MESSAGE {
            return (out, true);
        }
        out.push(off..end);
        off = end;
    }
}

enum Sender {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

fn open(target: &Target) -> anyhow::Result<Sender> {
    if target.tcp {
        let s = TcpStream::connect_timeout(&target.addr, Duration::from_secs(5)).with_context(
            || {
                format!(
                    "connecting to {target} ({}): is the collector listening there on TCP?",
                    target.addr
                )
            },
        )?;
        let _ = s.set_nodelay(true);
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(Sender::Tcp(s))
    } else {
        let bind: SocketAddr = if target.addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let s = UdpSocket::bind(bind).context("binding a UDP socket to send from")?;
        Ok(Sender::Udp(s))
    }
}

fn send(
    items: &[Outgoing],
    args: &ReplayArgs,
    out: &mut dyn Write,
    summary: &mut ReplaySummary,
) -> anyhow::Result<()> {
    let mut sender = open(&args.to)?;
    let t0 = items.first().map_or(Duration::ZERO, |i| i.time);
    let start = Instant::now();
    let width = items.len().to_string().len();
    for (n, item) in items.iter().enumerate() {
        let due = args.speed.offset(item.time.saturating_sub(t0));
        let now = start.elapsed();
        if due > now {
            std::thread::sleep(due - now);
        }
        let result = match &mut sender {
            Sender::Udp(s) => s.send_to(&item.bytes, args.to.addr).map(|_| ()),
            Sender::Tcp(s) => s.write_all(&item.bytes),
        };
        result.with_context(|| {
            format!(
                "sending message {} of {} to {} after {} sent: has the collector closed the connection or stopped listening?",
                n + 1,
                items.len(),
                args.to,
                summary.sent
            )
        })?;
        summary.sent += 1;
        summary.bytes += item.bytes.len();
        summary.by_version[usize::from(item.version.number() - 1)] += 1;
        if !args.quiet {
            writeln!(
                out,
                "{:>width$} +{:.6}s {} ({} bytes)",
                n + 1,
                due.as_secs_f64(),
                item.what,
                item.bytes.len()
            )?;
        }
    }
    if let Sender::Tcp(s) = &mut sender {
        s.flush()?;
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let elapsed = start.elapsed();
    let versions: Vec<String> = summary
        .by_version
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(v, n)| format!("{n} HEPv{}", v + 1))
        .collect();
    writeln!(
        out,
        "sent {} HEP messages ({} bytes; {}) to {} in {:.3} s",
        summary.sent,
        summary.bytes,
        versions.join(", "),
        args.to,
        elapsed.as_secs_f64()
    )?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_bad_ones_say_what_is_expected() {
        let t = Target::parse("udp://127.0.0.1:9060").unwrap();
        assert!(!t.tcp);
        assert_eq!(t.addr, "127.0.0.1:9060".parse().unwrap());
        assert_eq!(t.to_string(), "udp://127.0.0.1:9060");
        let t = Target::parse("TCP://[::1]:9061/").unwrap();
        assert!(t.tcp);
        assert_eq!(t.addr, "[::1]:9061".parse().unwrap());
        for bad in [
            "127.0.0.1:9060",
            "http://127.0.0.1:9060",
            "udp://127.0.0.1",
            "udp://",
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert!(e.contains("udp://HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn speed_scales_the_capture_pace() {
        assert_eq!(Speed::parse("max").unwrap(), Speed::Max);
        assert_eq!(Speed::parse("2").unwrap(), Speed::Times(2.0));
        for bad in ["0", "-1", "fast", "inf", "NaN"] {
            assert!(Speed::parse(bad).is_err(), "{bad}");
        }
        let d = Duration::from_millis(900);
        assert_eq!(Speed::Times(1.0).offset(d), d);
        assert_eq!(Speed::Times(3.0).offset(d), Duration::from_millis(300));
        assert_eq!(Speed::Times(0.5).offset(d), Duration::from_millis(1800));
        assert_eq!(Speed::Max.offset(d), Duration::ZERO);
    }

    #[test]
    fn sip_streams_split_on_content_length_and_skip_keepalives() {
        let a = "INVITE sip:a@b SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 4\r\n\r\nv=0\n";
        let b = "SIP/2.0 200 OK\r\nl: 0\r\n\r\n";
        let stream = format!("\r\n\r\n{a}{b}\r\n{a}");
        let (msgs, left) = split_sip_stream(stream.as_bytes());
        assert!(!left);
        let got: Vec<&str> = msgs.iter().map(|r| &stream[r.clone()]).collect();
        assert_eq!(got, [a, b, a]);
        // The last message cut short: the first two are returned, the rest flagged.
        let cut = format!("{a}{}", &a[..a.len() - 2]);
        let (msgs, left) = split_sip_stream(cut.as_bytes());
        assert_eq!(msgs.len(), 1);
        assert!(left);
    }

    #[test]
    fn tcp_reassembly_orders_segments_and_drops_retransmissions() {
        let seg = |seq: u32, data: &str, ms: u64| CapturedPayload {
            time: Duration::from_millis(ms),
            src: "10.0.0.1:4000".parse().unwrap(),
            dst: "10.0.0.2:9060".parse().unwrap(),
            tcp: true,
            seq,
            data: data.as_bytes().to_vec(),
        };
        // Sequence numbers wrap around; segment 3 arrives before 2; 2 is
        // retransmitted with an overlap.
        let base = u32::MAX - 2;
        let segs = [
            seg(base, "abc", 1),
            seg(base.wrapping_add(6), "ghi", 2),
            seg(base.wrapping_add(3), "def", 3),
            seg(base.wrapping_add(4), "efg", 4),
        ];
        let s = &capture::reassemble_tcp(segs.iter())[0];
        assert_eq!(s.data, b"abcdefghi");
        assert_eq!(s.gap_at, None);
        assert_eq!(s.time_at(0), Duration::from_millis(1));
        assert_eq!(s.time_at(4), Duration::from_millis(3));
        // Byte 6 first came in the retransmission (4 ms), bytes 7.. in the
        // segment captured at 2 ms.
        assert_eq!(s.time_at(6), Duration::from_millis(4));
        assert_eq!(s.time_at(8), Duration::from_millis(2));
        // A missing segment stops the stream there.
        let s = &capture::reassemble_tcp([segs[0].clone(), segs[1].clone()].iter())[0];
        assert_eq!(s.data, b"abc");
        assert_eq!(s.gap_at, Some(3));
    }
}
