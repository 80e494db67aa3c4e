//! Helpers shared by the interop tests (`tests/interop_*.rs`, included with
//! `#[path = "interop/support.rs"] mod support;`): required environment
//! variables, a guard that kills the processes a test started (even when
//! the test fails), a small SIP parser independent of hepflow's own, the
//! reader of sipp's message log, and the report line each test prints.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv6Addr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The value of a `HEPFLOW_TEST_*` variable; panics (the test FAILS, it is
/// not skipped) when it is missing.
pub fn require_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: run `bash tests/run.sh`, or install the senders and load their \
             environment: `bash tests/services/services.sh install kamailio sipp sngrep sipgrep hepjs; \
             set -a; . <(bash tests/services/services.sh env); set +a`"
        ),
    }
}

/// Print one line to the real stderr, past libtest's output capture, so the
/// CI log shows what every interop test compared even when it passes.
pub fn report(line: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "interop: {line}");
}

/// First line of `BIN ARG` (stdout, else stderr), for the report.
pub fn version_of(bin: &str, arg: &str) -> String {
    let out = Command::new(bin)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{bin} {arg}`: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown version")
        .to_string()
}

/// A loopback port free for both UDP and TCP on `::1` right now.
pub fn free_port_v6() -> u16 {
    for _ in 0..100 {
        let t = TcpListener::bind((Ipv6Addr::LOCALHOST, 0))
            .expect("bind [::1]:0 (is IPv6 loopback up?)");
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind((Ipv6Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free IPv6 loopback port found");
}

/// True once a UDP socket is bound to local port `port` (IPv4 or IPv6),
/// read from /proc/net/udp{,6}: probing by binding the port ourselves could
/// take it from the process that is about to bind it.
pub fn udp_bound(port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|local| local.ends_with(&want))
            })
        })
    })
}

/// A process the test started, in its own process group, with its output
/// in a log file. Dropping it sends SIGTERM to the whole group, then
/// SIGKILL after 5 s, and reaps it: nothing outlives the test, whether it
/// passes or panics.
pub struct Proc {
    child: Option<Child>,
    /// Name for messages.
    pub name: String,
    /// stdout + stderr of the process.
    pub log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawn `cmd` (stdin from /dev/null, output to `log`).
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            child: Some(child),
            name: name.to_string(),
            log: log.to_path_buf(),
            status: None,
        }
    }

    /// The process's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(c) = self.child.as_mut() {
                self.status = c.try_wait().expect("try_wait");
            }
        }
        self.status
    }

    /// Wait up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal_group(&self, sig: i32) {
        if let Some(c) = &self.child {
            // The group id is the child's pid (process_group(0)).
            unsafe {
                libc::kill(-(c.id() as i32), sig);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        // The leader may have exited while workers of its group live on:
        // signal the group in any case.
        self.signal_group(libc::SIGTERM);
        let end = Instant::now() + Duration::from_secs(5);
        while self.try_status().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal_group(libc::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What identifies a SIP message for the comparisons: Call-ID, the request
/// method or the response status code, and the CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SipKey {
    /// Call-ID header (or compact `i`).
    pub call_id: String,
    /// `INVITE`, `ACK`, ... or the status code (`100`, `200`, ...).
    pub start: String,
    /// CSeq method.
    pub cseq_method: String,
}

impl std::fmt::Display for SipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.start, self.cseq_method, self.call_id)
    }
}

/// Parse the key of a SIP message's text; `None` if it is not SIP.
pub fn sip_key(text: &str) -> Option<SipKey> {
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let first = lines.next()?.trim();
    let start = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
        rest.split_whitespace().next()?.to_string()
    } else if first.ends_with("SIP/2.0") {
        first.split_whitespace().next()?.to_string()
    } else {
        return None;
    };
    let (mut call_id, mut cseq_method) = (None, None);
    for line in lines {
        if line.trim().is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if call_id.is_none() && (name.eq_ignore_ascii_case("call-id") || name == "i") {
            call_id = Some(value.trim().to_string());
        } else if cseq_method.is_none() && name.eq_ignore_ascii_case("cseq") {
            cseq_method = value.split_whitespace().nth(1).map(str::to_string);
        }
    }
    Some(SipKey {
        call_id: call_id?,
        start,
        cseq_method: cseq_method?,
    })
}

/// One message of a sipp `-trace_msg` log.
#[derive(Debug, Clone)]
pub struct SippMessage {
    /// Sent by sipp (else received).
    pub sent: bool,
    /// `UDP`, `TCP`, ...
    pub transport: String,
    /// Its key.
    pub key: SipKey,
}

/// Read sipp's `-message_file` (written with `-trace_msg`): blocks start
/// with a line of dashes and a timestamp, then `UDP message sent (N
/// bytes):` or `UDP message received [N] bytes :`, an empty line, and the
/// message.
pub fn read_sipp_messages(path: &Path) -> Vec<SippMessage> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading sipp message log {}: {e}", path.display()));
    parse_sipp_log(&text, path, false)
}

/// [`read_sipp_messages`] for a log sipp may still be writing: the last
/// block, possibly cut in the middle of a message, is left out when it
/// does not read as one.
pub fn read_sipp_messages_so_far(path: &Path) -> Vec<SippMessage> {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("reading sipp message log {}: {e}", path.display()));
    parse_sipp_log(&String::from_utf8_lossy(&bytes), path, true)
}

fn parse_sipp_log(text: &str, path: &Path, still_written: bool) -> Vec<SippMessage> {
    let mut out = Vec::new();
    let blocks: Vec<&str> = text
        .split("-----------------------------------------------")
        .skip(1)
        .collect();
    let last = blocks.len().saturating_sub(1);
    for (i, block) in blocks.into_iter().enumerate() {
        let mut lines = block.splitn(3, '\n');
        let _timestamp = lines.next();
        let Some(what) = lines.next() else { continue };
        let Some(body) = lines.next() else { continue };
        let sent = what.contains("message sent");
        if !sent && !what.contains("message received") {
            continue;
        }
        let transport = what.split_whitespace().next().unwrap_or("?").to_string();
        let body = body.trim_start_matches(['\r', '\n']);
        let key = match sip_key(body) {
            Some(k) => k,
            None if still_written && i == last => break,
            None => panic!("sipp log {}: not a SIP message: {body}", path.display()),
        };
        out.push(SippMessage {
            sent,
            transport,
            key,
        });
    }
    out
}

/// Count of each key.
pub fn multiset<I: IntoIterator<Item = SipKey>>(keys: I) -> BTreeMap<SipKey, usize> {
    let mut m = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_default() += 1;
    }
    m
}

/// Panic with the differences when two multisets differ.
pub fn assert_same_messages(
    what: &str,
    expected: &BTreeMap<SipKey, usize>,
    got: &BTreeMap<SipKey, usize>,
) {
    if expected == got {
        return;
    }
    let mut diff = Vec::new();
    for (k, n) in expected {
        let g = got.get(k).copied().unwrap_or(0);
        if g != *n {
            diff.push(format!("  {k}: expected {n}, got {g}"));
        }
    }
    for (k, n) in got {
        if !expected.contains_key(k) {
            diff.push(format!("  {k}: not expected, got {n}"));
        }
    }
    panic!("{what}: the SIP messages differ:\n{}", diff.join("\n"));
}

/// The key of a document hepflow wrote, from its SIP fields (call_id,
/// sip_method or sip_status, cseq_method); also checks that they agree with
/// the key parsed from the document's payload by [`sip_key`].
pub fn doc_key(doc: &serde_json::Value) -> SipKey {
    let payload = doc["payload"].as_str().unwrap_or_default();
    let from_payload =
        sip_key(payload).unwrap_or_else(|| panic!("document payload is not SIP: {doc}"));
    let start = match (doc.get("sip_method"), doc.get("sip_status")) {
        (Some(m), _) => m.as_str().unwrap_or_default().to_string(),
        (None, Some(s)) => s.to_string(),
        _ => panic!("document has neither sip_method nor sip_status: {doc}"),
    };
    let from_fields = SipKey {
        call_id: doc["call_id"].as_str().unwrap_or_default().to_string(),
        start,
        cseq_method: doc["cseq_method"].as_str().unwrap_or_default().to_string(),
    };
    assert_eq!(
        from_fields, from_payload,
        "document fields disagree with its payload: {doc}"
    );
    from_fields
}

/// Where the test binaries of this crate put their temporary files.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir")
}

/// One SIP packet of a capture, as the test reads it (independently of
/// `hepflow replay`'s own classification).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Packet {
    /// Source address and port.
    pub src: String,
    /// Destination address and port.
    pub dst: String,
    /// Capture time, microseconds since the epoch.
    pub micros: i64,
    /// The SIP message.
    pub payload: String,
}

/// The UDP SIP packets of a capture under tests/fixtures.
pub fn sip_packets(rel: &str) -> Vec<Packet> {
    hepflow::capture::read_payloads(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel),
    )
    .expect("read capture")
    .into_iter()
    .filter(|p| !p.tcp)
    .filter_map(|p| {
        let payload = String::from_utf8(p.data).ok()?;
        sip_key(&payload)?;
        Some(Packet {
            src: p.src.to_string(),
            dst: p.dst.to_string(),
            micros: p.time.as_micros() as i64,
            payload,
        })
    })
    .collect()
}

/// The same view of a document hepflow wrote.
pub fn doc_packet(d: &serde_json::Value) -> Packet {
    let ip = |k: &str, port: &str| {
        let ip: std::net::IpAddr = d[k].as_str().unwrap().parse().unwrap();
        std::net::SocketAddr::new(ip, d[port].as_u64().unwrap() as u16).to_string()
    };
    let ts = chrono::DateTime::parse_from_rfc3339(d["@timestamp"].as_str().unwrap())
        .expect("@timestamp is RFC 3339");
    Packet {
        src: ip("src_ip", "src_port"),
        dst: ip("dst_ip", "dst_port"),
        micros: ts.timestamp_micros(),
        payload: d["payload"].as_str().unwrap().to_string(),
    }
}

/// Panic with the first difference when the packets differ (as multisets).
pub fn assert_same_packets(what: &str, mut expected: Vec<Packet>, mut got: Vec<Packet>) {
    expected.sort();
    got.sort();
    if expected == got {
        return;
    }
    let missing: Vec<&Packet> = expected.iter().filter(|p| !got.contains(p)).collect();
    let extra: Vec<&Packet> = got.iter().filter(|p| !expected.contains(p)).collect();
    panic!(
        "{what}: {} expected, {} got; {} expected ones missing, {} unexpected.\nfirst missing: {:?}\nfirst unexpected: {:?}",
        expected.len(),
        got.len(),
        missing.len(),
        extra.len(),
        missing.first(),
        extra.first()
    );
}

/// The SIP captures under tests/fixtures/sip (copies of the shared
/// corpus), by file name.
pub fn sip_captures() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sip");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".pcap") || n.ends_with(".pcapng"))
        .collect();
    v.sort();
    v
}

/// Start a process on ports picked free just before: `spawn(attempt)`
/// picks its ports and starts it; it is ready once `ready(&ports)` holds.
/// If it exits first because a port was taken in between ("... in use" in
/// its log), it is retried on new ports, 3 attempts in all; any other
/// early exit, or no readiness within 20 s, fails the test with its log.
pub fn start_with_retries<T>(
    name: &str,
    mut spawn: impl FnMut(u32) -> (Proc, T),
    ready: impl Fn(&T) -> bool,
) -> (Proc, T) {
    for attempt in 1..=3 {
        let (mut p, t) = spawn(attempt);
        let end = Instant::now() + Duration::from_secs(20);
        while p.try_status().is_none() && !ready(&t) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        if p.try_status().is_none() && ready(&t) {
            return (p, t);
        }
        let status = p.try_status();
        let log = p.log_text();
        drop(p);
        if attempt == 3 || !log.contains("in use") {
            panic!("{name} did not start (attempt {attempt}, exit {status:?}); its log:\n{log}");
        }
    }
    unreachable!("the loop returns or panics")
}
