//! End to end: the `hep` forwarding sink in the real `hepflow` binary.
//!
//! - Two hepflow instances chained (A forwards to B over UDP, over TCP):
//!   B's file sink holds exactly the messages sent to A, with
//!   byte-identical payloads and the same fields.
//! - TLS with a test receiver (rustls server with certificates made here
//!   by rcgen, which frames HEP3 and keeps every frame): mutual TLS,
//!   byte-identical pass-through, v1 converted to v3 for the stream,
//!   re-encoding with node name / capture id / auth key (the key never in
//!   A's log, metrics or `/ready`), a wrong CA refused and reported.
//! - Independent receivers: sngrep (`-L udp:...`, SIP written to a pcap)
//!   and Kamailio's `sipcapture` module, fed pass-through HEPv3 and HEPv3
//!   re-encoded from v1/v2 input.
//! - Hash mode with three hepflow receivers over TCP: every Call-ID at
//!   exactly one receiver; one receiver stopped mid-call → its calls move
//!   to their next choice, nothing lost (`when_full = "block"`); after its
//!   restart it gets its calls back.
//! - `forwarding_throughput` (ignored; run by hand in release mode) prints
//!   msgs/s over UDP and TCP as ratios against direct ingest.
#![cfg(live_services)]

mod common;

use bytes::{Bytes, BytesMut};
use common::pki::TestPki;
use common::*;
use hepflow_hep::select::{fnv1a64, rendezvous, target_seed};
use hepflow_sdk::hep::{decode, encode_v3, hep3_frame_len};
use hepflow_sdk::{DecodeOptions, HepMessage, HepVersion};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ------------------------------------------------------------- helpers

/// A relay sink section named `relay` with `targets`, plus `extra` keys,
/// and a default route to both `files` and `relay`.
fn relay(targets: &[String], extra: &str) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
    format!(
        "[sinks.relay]\ntype = \"hep\"\ntargets = [{}]\n{extra}\n[default_route]\nsinks = [\"files\", \"relay\"]\n",
        list.join(", ")
    )
}

fn series(name: &str, target: &str) -> String {
    format!("{name}{{sink=\"relay\",target=\"{target}\"}}")
}

fn target_metric(h: &Hepflow, name: &str, target: &str) -> f64 {
    metric(&h.metrics(), &series(name, target))
}

fn udp_corpus() -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for (file, n) in UDP_CORPUS {
        let msgs = corpus_messages(file);
        assert_eq!(msgs.len(), n, "{file}: HEP messages in the capture");
        all.extend(msgs);
    }
    all
}

fn tcp_stream() -> Vec<u8> {
    let streams = corpus_messages("kamailio-hep3-tcp.pcapng");
    assert_eq!(streams.len(), 1, "one TCP stream in the capture");
    streams.into_iter().next().unwrap()
}

fn send_tcp(to: SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(to).expect("connect");
    s.write_all(bytes).expect("write");
}

fn decode_msg(b: &[u8]) -> HepMessage {
    decode(Bytes::copy_from_slice(b), &DecodeOptions::default()).expect("decodes")
}

/// The payload of every message in `msgs` (decoded), as text.
fn payloads_of_sent(msgs: &[Vec<u8>]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for b in msgs {
        let p = decode_msg(b).payload;
        let text = String::from_utf8(p.to_vec()).expect("corpus payloads are text");
        *m.entry(text).or_insert(0) += 1;
    }
    m
}

fn payloads_of_docs(docs: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in docs {
        assert_ne!(d["payload_base64"], true, "unexpected binary payload: {d}");
        let p = d["payload"].as_str().expect("payload").to_string();
        *m.entry(p).or_insert(0) += 1;
    }
    m
}

/// Documents without the fields that describe the last hop (listener,
/// transport, receive time; and the HEP version when the hop converted
/// v1/v2 to v3), as a multiset of canonical JSON. A HEPv1 message has no
/// capture time, so its `@timestamp` is the receive time: left out too.
fn without_hop(
    docs: &[Value],
    drop_version: bool,
    v1_payloads: &BTreeSet<String>,
) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in docs {
        let mut d = d.clone();
        let o = d.as_object_mut().expect("object");
        for k in ["listener", "transport", "received_at"] {
            o.remove(k);
        }
        if drop_version {
            o.remove("hep_version");
        }
        if o["payload"]
            .as_str()
            .is_some_and(|p| v1_payloads.contains(p))
        {
            o.remove("@timestamp");
        }
        *m.entry(serde_json::to_string(&d).unwrap()).or_insert(0) += 1;
    }
    m
}

/// The payloads of the HEPv1 messages among `msgs`.
fn v1_payloads(msgs: &[Vec<u8>]) -> BTreeSet<String> {
    msgs.iter()
        .filter(|b| b.first() == Some(&1))
        .map(|b| String::from_utf8(decode_msg(b).payload.to_vec()).unwrap())
        .collect()
}

/// Assert two multisets are equal, showing only what differs.
fn assert_same<K: Ord + std::fmt::Debug>(
    got: &BTreeMap<K, usize>,
    want: &BTreeMap<K, usize>,
    what: &str,
) {
    let only_got: Vec<_> = got.iter().filter(|(k, v)| want.get(k) != Some(v)).collect();
    let only_want: Vec<_> = want.iter().filter(|(k, v)| got.get(k) != Some(v)).collect();
    assert!(
        only_got.is_empty() && only_want.is_empty(),
        "{what} differ:\n only in got: {only_got:#?}\n only in want: {only_want:#?}"
    );
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool, log: impl Fn() -> String) {
    assert!(
        wait_until(timeout, &mut f),
        "timed out waiting for {what}\n{}",
        log()
    );
}

fn require_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run `bash tests/run.sh`, or `bash tests/services/services.sh install kamailio sngrep` and source its env file (set -a; . /tmp/hepflow-services/env; set +a)"
        )
    })
}

// ------------------------------------------------------------- chains

#[test]
fn chain_over_udp_b_holds_exactly_what_a_got() {
    let mut b = Hepflow::start("", "");
    let target = format!("udp://{}", b.udp);
    let mut a = Hepflow::start("", &relay(std::slice::from_ref(&target), ""));
    let msgs = udp_corpus();
    let n = msgs.len() as f64; // 64: v1, v2 and v3 from five senders
    send_udp(a.udp, &msgs);
    assert_eq!(
        a.wait_metric(&series("hepflow_hep_target_sent_total", &target), n),
        n,
        "A log:\n{}",
        a.log_text()
    );
    assert_eq!(
        b.wait_metric(r#"hepflow_sink_sent_total{sink="files"}"#, n),
        n,
        "B log:\n{}",
        b.log_text()
    );
    let m = a.metrics();
    assert_eq!(
        metric(&m, &series("hepflow_hep_target_connected", &target)),
        1.0
    );
    assert!(
        metric(&m, &series("hepflow_hep_target_writes_total", &target)) >= 1.0,
        "{m}"
    );
    assert!(a.stop().success());
    assert!(b.stop().success());

    let (a_docs, b_docs) = (a.documents(), b.documents());
    assert_eq!(b_docs.len(), msgs.len(), "B got every message once");
    // Pass-through over UDP: same bytes, so the same document, v1/v2 too.
    let v1 = v1_payloads(&msgs);
    assert_same(
        &without_hop(&b_docs, false, &v1),
        &without_hop(&a_docs, false, &v1),
        "documents of B and A",
    );
    assert_same(
        &payloads_of_docs(&b_docs),
        &payloads_of_sent(&msgs),
        "payloads",
    );
    let v1_count = b_docs.iter().filter(|d| d["hep_version"] == 1).count();
    assert_eq!(v1_count, 13, "HEPv1 forwarded as HEPv1 over UDP");
}

#[test]
fn chain_over_tcp_b_holds_exactly_what_a_got_v1_v2_converted() {
    let mut b = Hepflow::start("", "");
    let target = format!("tcp://{}", b.tcp);
    let mut a = Hepflow::start("", &relay(std::slice::from_ref(&target), ""));
    let msgs = udp_corpus();
    send_udp(a.udp, &msgs);
    let stream = tcp_stream();
    send_tcp(a.tcp, &stream);
    let n = (msgs.len() + 14) as f64; // 78
                                      // A stops as soon as it has decoded everything: its shutdown drains
                                      // the relay's target queue.
    for l in ["udp", "tcp"] {
        let want = if l == "udp" { msgs.len() } else { 14 } as f64;
        let s = format!(r#"hepflow_decoded_total{{listener="{l}",transport="{l}"}}"#);
        assert_eq!(a.wait_metric(&s, want), want, "A log:\n{}", a.log_text());
    }
    assert!(a.stop().success());
    assert_eq!(
        b.wait_metric(r#"hepflow_sink_sent_total{sink="files"}"#, n),
        n,
        "B log:\n{}",
        b.log_text()
    );
    let m = b.metrics();
    assert_eq!(
        metric(
            &m,
            r#"hepflow_framing_errors_total{listener="tcp",transport="tcp"}"#
        ),
        0.0
    );
    // One connection carried everything, several messages per write.
    assert_eq!(
        metric(
            &m,
            r#"hepflow_connections_total{listener="tcp",transport="tcp"}"#
        ),
        1.0
    );
    assert!(b.stop().success());

    let (a_docs, b_docs) = (a.documents(), b.documents());
    assert_eq!(b_docs.len(), n as usize);
    assert!(b_docs
        .iter()
        .all(|d| d["hep_version"] == 3 && d["transport"] == "tcp"));
    assert_eq!(
        a_docs.iter().filter(|d| d["hep_version"] != 3).count(),
        26,
        "A got 26 v1/v2 messages"
    );
    let v1 = v1_payloads(&msgs);
    assert_same(
        &without_hop(&b_docs, true, &v1),
        &without_hop(&a_docs, true, &v1),
        "documents of B and A",
    );
    let mut sent = msgs.clone();
    let frames = split_frames(&stream);
    assert_eq!(frames.len(), 14);
    sent.extend(frames);
    assert_same(
        &payloads_of_docs(&b_docs),
        &payloads_of_sent(&sent),
        "payloads",
    );
}

fn split_frames(mut s: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Ok(Some(n)) = hep3_frame_len(s) {
        if s.len() < n {
            break;
        }
        out.push(s[..n].to_vec());
        s = &s[n..];
    }
    out
}

// ------------------------------------------------------------- TLS

/// Test receiver (not a real HEP server): a rustls TLS listener that
/// frames HEP3 by its length field and keeps every frame; with `mutual`
/// it requires a client certificate from the test CA.
struct TlsTestReceiver {
    addr: SocketAddr,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    handshakes_ok: Arc<std::sync::atomic::AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl TlsTestReceiver {
    fn start(pki: &TestPki, mutual: bool) -> Self {
        use tokio::io::AsyncReadExt;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let handshakes_ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config(mutual));
        let (f, h) = (frames.clone(), handshakes_ok.clone());
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, f, h) = (acceptor.clone(), f.clone(), h.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut buf = BytesMut::new();
                    loop {
                        loop {
                            match hep3_frame_len(&buf) {
                                Ok(Some(n)) if buf.len() >= n => {
                                    f.lock().unwrap().push(buf.split_to(n).to_vec())
                                }
                                Ok(_) => break,
                                Err(_) => return, // not HEP3: drop the connection
                            }
                        }
                        match tls.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                });
            }
        });
        TlsTestReceiver {
            addr,
            frames,
            handshakes_ok,
            _rt: rt,
        }
    }

    fn frames(&self) -> Vec<Vec<u8>> {
        self.frames.lock().unwrap().clone()
    }
}

fn tls_section(pki: &TestPki, ca: &str, client_cert: bool) -> String {
    let mut s = format!(
        "[sinks.relay.tls]\nca_file = {:?}\nserver_name = \"localhost\"\n",
        pki.path(ca).display().to_string()
    );
    if client_cert {
        s.push_str(&format!(
            "cert_file = {:?}\nkey_file = {:?}\n",
            pki.path("client.pem").display().to_string(),
            pki.path("client.key").display().to_string()
        ));
    }
    s
}

#[test]
fn tls_mutual_pass_through_is_byte_identical_and_v1_is_converted() {
    let pki = TestPki::generate();
    let rx = TlsTestReceiver::start(&pki, true);
    let target = format!("tls://{}", rx.addr);
    let mut a = Hepflow::start(
        "",
        &format!(
            "{}{}",
            relay(std::slice::from_ref(&target), "max_write_messages = 8"),
            tls_section(&pki, "ca.pem", true)
        ),
    );
    let v3: Vec<Vec<u8>> = [
        "kamailio-hep3-udp.pcapng",
        "sngrep-hep3-udp.pcapng",
        "wireshark-sample-hep3.pcap",
    ]
    .iter()
    .flat_map(|f| corpus_messages(f))
    .collect();
    let v1 = corpus_messages("kamailio-hep1-udp.pcapng");
    send_udp(a.udp, &v3);
    send_udp(a.udp, &v1);
    let n = v3.len() + v1.len(); // 35 + 14
    wait_for(
        "every frame at the TLS test receiver",
        Duration::from_secs(20),
        || rx.frames().len() >= n,
        || a.log_text(),
    );
    // A counts a batch as sent once its write returned, which may be
    // after the receiver already holds it: wait for the count, then read
    // the writes from that same snapshot.
    let mut m = String::new();
    let counted = wait_until(Duration::from_secs(20), || {
        m = a.metrics();
        metric(&m, &series("hepflow_hep_target_sent_total", &target)) >= n as f64
    });
    assert!(
        counted,
        "A never counted {n} sent:\n{m}\nA log:\n{}",
        a.log_text()
    );
    assert_eq!(
        metric(&m, &series("hepflow_hep_target_sent_total", &target)),
        n as f64,
        "{m}"
    );
    assert_eq!(
        metric(&m, &series("hepflow_hep_target_connected", &target)),
        1.0,
        "{m}"
    );
    // Batched: fewer writes than messages (8 at most per write).
    let writes = metric(&m, &series("hepflow_hep_target_writes_total", &target));
    assert!(
        writes >= (n as f64 / 8.0).ceil() && writes <= n as f64,
        "{writes}\n{m}"
    );
    assert!(a.stop().success());
    assert_eq!(
        rx.handshakes_ok.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    let frames = rx.frames();
    assert_eq!(frames.len(), n);
    let mut want: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for m in v3.iter().chain(&v1).filter(|m| m.starts_with(b"HEP3")) {
        *want.entry(m.clone()).or_insert(0) += 1;
    }
    let mut got_v3: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut converted = Vec::new();
    for f in &frames {
        if want.contains_key(f) {
            *got_v3.entry(f.clone()).or_insert(0) += 1;
        } else {
            converted.push(decode_msg(f));
        }
    }
    assert_eq!(got_v3, want, "HEPv3 passes through byte for byte");
    // The 13 HEPv1 SIP messages arrive as HEPv3 with the same fields; the
    // LOG message of that capture was HEPv3 already (byte-identical).
    let originals: Vec<HepMessage> = v1.iter().map(|b| decode_msg(b)).collect();
    assert_eq!(converted.len(), 13);
    for c in &converted {
        assert_eq!(c.version, HepVersion::V3);
        let orig = originals
            .iter()
            .find(|o| o.payload == c.payload)
            .expect("converted payload is one of the v1 payloads");
        let mut o = orig.clone();
        o.version = HepVersion::V3;
        assert_eq!(&o, c);
    }
}

#[test]
fn tls_reencode_sets_node_capture_id_and_auth_key_which_never_leaks() {
    const SECRET: &str = "s3cr3t-relay-key-7f2a";
    let pki = TestPki::generate();
    let rx = TlsTestReceiver::start(&pki, false);
    let target = format!("tls://{}", rx.addr);
    let mut a = Hepflow::start(
        "",
        &format!(
            "{}{}",
            relay(
                std::slice::from_ref(&target),
                &format!(
                    "encoding = \"hepv3\"\nset_node_name = \"relay-eu1\"\nset_capture_id = 4242\nset_auth_key = \"{SECRET}\""
                )
            ),
            tls_section(&pki, "ca.pem", false)
        ),
    );
    let v2 = corpus_messages("kamailio-hep2-udp.pcapng");
    let ws = corpus_messages("wireshark-sample-hep3.pcap"); // auth key "myHep"
    send_udp(a.udp, &v2);
    send_udp(a.udp, &ws);
    let n = v2.len() + ws.len();
    wait_for(
        "every frame at the TLS test receiver",
        Duration::from_secs(20),
        || rx.frames().len() >= n,
        || a.log_text(),
    );
    let metrics_text = a.metrics();
    let ready = http_get(a.api, "/ready").unwrap().1;
    let stats = http_get(a.api, "/api/v1/stats").unwrap().1;
    assert!(a.stop().success());

    let mut sent: Vec<HepMessage> = v2.iter().chain(&ws).map(|b| decode_msg(b)).collect();
    for f in rx.frames() {
        let m = decode_msg(&f);
        assert_eq!(m.version, HepVersion::V3);
        assert_eq!(m.node_name.as_deref(), Some(&b"relay-eu1"[..]));
        assert_eq!(m.capture_id, 4242);
        assert_eq!(m.auth_key.as_deref(), Some(SECRET.as_bytes()));
        // Everything else as received.
        let i = sent
            .iter()
            .position(|s| {
                let mut s = s.clone();
                s.version = HepVersion::V3;
                s.node_name = m.node_name.clone();
                s.capture_id = 4242;
                s.auth_key = m.auth_key.clone();
                s == m
            })
            .expect("frame matches a sent message but for the rewritten chunks");
        sent.remove(i);
    }
    assert!(
        sent.is_empty(),
        "{} sent messages never arrived",
        sent.len()
    );
    for (what, text) in [
        ("log", a.log_text()),
        ("metrics", metrics_text),
        ("/ready", ready),
        ("/api/v1/stats", stats),
        ("documents", serde_json::to_string(&a.documents()).unwrap()),
    ] {
        assert!(
            !text.contains(SECRET),
            "the auth key leaked into the {what}"
        );
    }
}

#[test]
fn tls_wrong_ca_is_refused_counted_and_reported_unready() {
    let pki = TestPki::generate();
    let rx = TlsTestReceiver::start(&pki, false);
    let target = format!("tls://{}", rx.addr);
    let mut a = Hepflow::start(
        "",
        &format!(
            "{}{}",
            relay(
                std::slice::from_ref(&target),
                "reconnect_initial_backoff = \"50ms\"\nreconnect_max_backoff = \"200ms\""
            ),
            tls_section(&pki, "other-ca.pem", false)
        ),
    );
    send_udp(a.udp, &corpus_messages("kamailio-hep3-udp.pcapng"));
    let failures = a.wait_metric(
        &series("hepflow_hep_target_connect_failures_total", &target),
        3.0,
    );
    assert!(failures >= 3.0, "log:\n{}", a.log_text());
    // The engine marks the sink ready once its start() returns; the
    // targets' state sets it unready again at the next flush tick. And
    // the 14 messages reach the target's queue once the engine has
    // handed its batch to the sink. Wait for both.
    let (mut status, mut body, mut m) = (0, String::new(), String::new());
    let settled = wait_until(Duration::from_secs(30), || {
        (status, body) = http_get(a.api, "/ready").unwrap();
        m = a.metrics();
        status == 503 && metric(&m, &series("hepflow_hep_target_queue_depth", &target)) == 14.0
    });
    assert!(
        settled,
        "/ready {status} {body}\nmetrics:\n{m}\nlog:\n{}",
        a.log_text()
    );
    assert!(body.contains(&target), "{body}");
    assert_eq!(
        metric(&m, &series("hepflow_hep_target_connected", &target)),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, &series("hepflow_hep_target_sent_total", &target)),
        0.0,
        "{m}"
    );
    assert!(a.log_text().contains("cannot connect to HEP target"));
    // Shutdown gives up on the queue after drain_timeout and counts it.
    a.stop();
    assert!(rx.frames().is_empty());
    assert_eq!(
        rx.handshakes_ok.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

// ------------------------------------------------- independent receivers

/// sngrep in receive mode (`-L udp:...`), writing the SIP it gets to a pcap.
struct Sngrep {
    child: Option<Child>,
    port: u16,
    pcap: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sngrep {
    fn start() -> Self {
        let bin = require_env("HEPFLOW_TEST_SNGREP_BIN");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let pcap = dir.path().join("out.pcap");
        let child = Command::new(bin)
            .args(["-N", "-L", &format!("udp:127.0.0.1:{port}"), "-O"])
            .arg(&pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sngrep");
        // Ready once its UDP port is taken.
        let up = wait_until(Duration::from_secs(10), || {
            std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
        });
        assert!(up, "sngrep did not bind udp:127.0.0.1:{port}");
        Sngrep {
            child: Some(child),
            port,
            pcap,
            _dir: dir,
        }
    }

    /// Stop sngrep; the SIP payloads of its pcap.
    fn stop(&mut self) -> Vec<Vec<u8>> {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
        hepflow::capture::read_payloads(&self.pcap)
            .expect("sngrep's pcap")
            .into_iter()
            .map(|p| p.data)
            .collect()
    }
}

impl Drop for Sngrep {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every payload of `msgs` (sngrep records each payload it gets, the LOG
/// messages too).
fn all_payloads(msgs: &[Vec<u8>]) -> BTreeMap<Vec<u8>, usize> {
    let mut m = BTreeMap::new();
    for b in msgs {
        *m.entry(decode_msg(b).payload.to_vec()).or_insert(0) += 1;
    }
    m
}

fn count(v: &[Vec<u8>]) -> BTreeMap<Vec<u8>, usize> {
    let mut m = BTreeMap::new();
    for b in v {
        *m.entry(b.clone()).or_insert(0) += 1;
    }
    m
}

fn forward_to_sngrep(encoding: &str, inputs: &[&str]) {
    let mut sn = Sngrep::start();
    let target = format!("udp://127.0.0.1:{}", sn.port);
    let mut a = Hepflow::start(
        "",
        &relay(
            std::slice::from_ref(&target),
            &format!("encoding = {encoding:?}"),
        ),
    );
    let msgs: Vec<Vec<u8>> = inputs.iter().flat_map(|f| corpus_messages(f)).collect();
    send_udp(a.udp, &msgs);
    let n = msgs.len() as f64;
    assert_eq!(
        a.wait_metric(&series("hepflow_hep_target_sent_total", &target), n),
        n,
        "{}",
        a.log_text()
    );
    assert!(a.stop().success());
    let want = all_payloads(&msgs);
    let mut got = BTreeMap::new();
    wait_until(Duration::from_secs(5), || {
        // sngrep writes as it receives; read what is there so far.
        got = count(
            &hepflow::capture::read_payloads(&sn.pcap)
                .map(|v| v.into_iter().map(|p| p.data).collect::<Vec<_>>())
                .unwrap_or_default(),
        );
        got == want
    });
    let got = count(&sn.stop());
    assert_eq!(
        got.values().sum::<usize>(),
        want.values().sum::<usize>(),
        "messages sngrep received"
    );
    assert_same(&got, &want, "payloads sngrep received");
}

#[test]
fn sngrep_receives_pass_through_hep3() {
    forward_to_sngrep(
        "passthrough",
        &["kamailio-hep3-udp.pcapng", "sngrep-hep3-udp.pcapng"],
    );
}

#[test]
fn sngrep_receives_hep3_reencoded_from_v1_and_v2() {
    forward_to_sngrep(
        "hepv3",
        &["kamailio-hep1-udp.pcapng", "kamailio-hep2-udp.pcapng"],
    );
}

/// Kamailio with `sipcapture` (HEP capture on) on a UDP port; its request
/// and reply routes log one line per SIP message it decoded from HEP.
struct Kamailio {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    fn start() -> Self {
        let bin = require_env("HEPFLOW_TEST_KAMAILIO_BIN");
        let modules = require_env("HEPFLOW_TEST_KAMAILIO_MODULES");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        let cfg = format!(
            r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="{modules}"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "db_text.so"
loadmodule "sipcapture.so"
modparam("sipcapture", "db_url", "text://{db}")
modparam("sipcapture", "hep_capture_on", 1)
request_route {{
    xlog("L_ERR", "HEPSIP request $rm $ci $cs\n");
    drop;
}}
onreply_route {{
    xlog("L_ERR", "HEPSIP reply $rs $ci $cs\n");
    drop;
}}
"#,
            db = db.display()
        );
        let cfg_path = dir.path().join("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = dir.path().join("kamailio.log");
        let child = Command::new(bin)
            .arg("-f")
            .arg(&cfg_path)
            .args(["-DD", "-E", "-w"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn kamailio");
        let k = Kamailio {
            child: Some(child),
            port,
            log,
            _dir: dir,
        };
        let up = wait_until(Duration::from_secs(15), || {
            std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
        });
        assert!(up, "kamailio did not bind; log:\n{}", k.log_text());
        k
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The `HEPSIP ...` lines, as (kind, method or status, Call-ID, CSeq number).
    fn lines(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|l| l.split_once("HEPSIP ").map(|(_, r)| r.trim().to_string()))
            .collect()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What Kamailio should log for a SIP payload: `request METHOD CALLID CSEQ`
/// or `reply STATUS CALLID CSEQ`.
fn kamailio_line(payload: &[u8]) -> String {
    let text = std::str::from_utf8(payload).unwrap();
    let first = text.lines().next().unwrap();
    let header = |name: &str| {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap()
    };
    let cseq = header("CSeq");
    let cseq_num = cseq.split_whitespace().next().unwrap().to_string();
    let call_id = header("Call-ID");
    if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
        format!("reply {} {call_id} {cseq_num}", &rest[..3])
    } else {
        format!(
            "request {} {call_id} {cseq_num}",
            first.split_whitespace().next().unwrap()
        )
    }
}

#[test]
fn kamailio_sipcapture_decodes_what_we_forward_v3_and_reencoded_v1_v2() {
    let k = Kamailio::start();
    let target = format!("udp://127.0.0.1:{}", k.port);
    for (encoding, inputs) in [
        ("passthrough", vec!["kamailio-hep3-udp.pcapng"]),
        (
            "hepv3",
            vec!["kamailio-hep1-udp.pcapng", "kamailio-hep2-udp.pcapng"],
        ),
    ] {
        let before = k.lines().len();
        let mut a = Hepflow::start(
            "",
            &relay(
                std::slice::from_ref(&target),
                &format!("encoding = {encoding:?}"),
            ),
        );
        let msgs: Vec<Vec<u8>> = inputs.iter().flat_map(|f| corpus_messages(f)).collect();
        send_udp(a.udp, &msgs);
        let n = msgs.len() as f64;
        assert_eq!(
            a.wait_metric(&series("hepflow_hep_target_sent_total", &target), n),
            n
        );
        assert!(a.stop().success());
        let mut want: Vec<String> = msgs
            .iter()
            .map(|b| decode_msg(b))
            .filter(|h| h.proto_type == 1)
            .map(|h| kamailio_line(&h.payload))
            .collect();
        want.sort();
        let mut got = Vec::new();
        wait_until(Duration::from_secs(10), || {
            got = k.lines()[before..].to_vec();
            got.len() >= want.len()
        });
        got.sort();
        assert_eq!(got, want, "{encoding}: kamailio log:\n{}", k.log_text());
    }
}

// ------------------------------------------------------------- hash mode

/// One SIP call: INVITE, 200 OK, BYE, each as a HEP3 message.
fn call(n: usize) -> [Vec<u8>; 3] {
    let cid = format!("call-{n}@hash.test");
    let via = |b: &str| format!("Via: SIP/2.0/UDP 10.1.0.1:5060;branch=z9hG4bK-{n}-{b}\r\n");
    let common = format!(
        "From: <sip:a{n}@example.com>;tag=f{n}\r\nTo: <sip:b{n}@example.com>\r\nCall-ID: {cid}\r\n"
    );
    let texts = [
        format!("INVITE sip:b{n}@example.com SIP/2.0\r\n{}{common}CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", via("1")),
        format!("SIP/2.0 200 OK\r\n{}{common}CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", via("1")),
        format!("BYE sip:b{n}@example.com SIP/2.0\r\n{}{common}CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", via("2")),
    ];
    texts.map(|t| {
        let mut m = HepMessage::new_v3(Bytes::from(t));
        m.src_ip = [10, 1, 0, 1].into();
        m.dst_ip = [10, 1, 0, 2].into();
        m.src_port = 5060;
        m.dst_port = 5060;
        m.ts_sec = 1_700_000_000 + n as u32;
        m.capture_id = 7;
        let mut b = BytesMut::new();
        encode_v3(&m, &mut b).unwrap();
        b.to_vec()
    })
}

/// (Call-ID, message kind) of a document: "INVITE", "200", "BYE".
fn doc_key(d: &Value) -> (String, String) {
    let kind = match d["sip_method"].as_str() {
        Some(m) => m.to_string(),
        None => d["sip_status"].to_string(),
    };
    (d["call_id"].as_str().unwrap().to_string(), kind)
}

fn call_n(call_id: &str) -> usize {
    call_id
        .strip_prefix("call-")
        .and_then(|r| r.split('@').next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn hash_mode_one_receiver_per_call_failover_and_back() {
    // Receiver 1 is stopped and started again on its port: a port that
    // bind(0) never hands out, so nothing takes it during the outage.
    let rx: Vec<Hepflow> = (0..3)
        .map(|i| {
            if i == 1 {
                Hepflow::start_on_port(restart_port(), "", "")
            } else {
                Hepflow::start("", "")
            }
        })
        .collect();
    let targets: Vec<String> = rx.iter().map(|r| format!("tcp://{}", r.tcp)).collect();
    let mut rx: Vec<Option<Hepflow>> = rx.into_iter().map(Some).collect();
    let mut a = Hepflow::start(
        "",
        &format!(
            "{}[sinks.relay.queue]\nwhen_full = \"block\"\n",
            relay(
                &targets,
                "mode = \"hash\"\nwhen_full = \"block\"\nqueue_capacity = 64\n[sinks.relay.retry]\ninitial_backoff = \"50ms\"\nmax_backoff = \"300ms\""
            )
        ),
    );
    let seeds: Vec<u64> = targets.iter().map(|t| target_seed(t)).collect();
    let first_choice = |n: usize| {
        rendezvous(
            fnv1a64(format!("call-{n}@hash.test").as_bytes()),
            &seeds,
            |_| true,
        )
        .unwrap()
    };
    let without_1 = |n: usize| {
        rendezvous(
            fnv1a64(format!("call-{n}@hash.test").as_bytes()),
            &seeds,
            |i| i != 1,
        )
        .unwrap()
    };
    let mut conn = TcpStream::connect(a.tcp).expect("connect to A");
    let mut sent = 0usize;
    let mut send = |msgs: &[Vec<u8>], sent: &mut usize| {
        for m in msgs {
            conn.write_all(m).unwrap();
        }
        *sent += msgs.len();
    };
    let delivered = |a: &Hepflow| -> f64 {
        let m = a.metrics();
        targets
            .iter()
            .map(|t| metric(&m, &series("hepflow_hep_target_sent_total", t)))
            .sum()
    };
    let wait_delivered = |a: &Hepflow, want: usize| {
        wait_for(
            &format!("{want} messages forwarded"),
            Duration::from_secs(30),
            || delivered(a) >= want as f64,
            || a.log_text(),
        );
    };
    // A counts a message as sent once it is written into the socket, not
    // once the receiver read it: before a receiver is stopped, wait until
    // it decoded everything A wrote to its target (minus `before`, what
    // an earlier life of the receiver on that target got). Returns A's
    // count for the target.
    let wait_read = |a: &Hepflow, r: &Hepflow, target: &str, before: f64, who: &str| -> f64 {
        let (mut wrote, mut read) = (0.0, 0.0);
        let done = wait_until(Duration::from_secs(30), || {
            wrote = target_metric(a, "hepflow_hep_target_sent_total", target);
            read = metric(
                &r.metrics(),
                r#"hepflow_decoded_total{listener="tcp",transport="tcp"}"#,
            );
            read == wrote - before
        });
        assert!(
            done,
            "receiver {who} decoded {read} of the {} messages A wrote to {target}\nreceiver log:\n{}\nA log:\n{}",
            wrote - before,
            r.log_text(),
            a.log_text()
        );
        wrote
    };

    // Phase 1: calls 0..100, whole.
    let phase1: Vec<Vec<u8>> = (0..100).flat_map(call).collect();
    send(&phase1, &mut sent);
    // Phase 2a: the INVITEs of calls 100..200.
    let invites: Vec<Vec<u8>> = (100..200).map(|n| call(n)[0].clone()).collect();
    send(&invites, &mut sent);
    wait_delivered(&a, sent);

    // Receiver 1 stops mid-call, once it read all A wrote to it.
    let mut r1 = rx[1].take().unwrap();
    let r1_port = r1.tcp.port();
    let sent_to_r1 = wait_read(&a, &r1, &targets[1], 0.0, "1");
    assert!(r1.stop().success());
    wait_for(
        "A to see receiver 1 down",
        Duration::from_secs(20),
        || target_metric(&a, "hepflow_hep_target_connected", &targets[1]) == 0.0,
        || a.log_text(),
    );
    // Phase 2b: the rest of calls 100..200, and calls 200..300 whole.
    let rest: Vec<Vec<u8>> = (100..200).flat_map(|n| call(n)[1..].to_vec()).collect();
    send(&rest, &mut sent);
    let phase2c: Vec<Vec<u8>> = (200..300).flat_map(call).collect();
    send(&phase2c, &mut sent);
    wait_delivered(&a, sent);

    // Receiver 1 back on its port: it gets its calls back.
    let r1b = Hepflow::start_on_port(r1_port, "", "");
    wait_for(
        "A to reconnect to receiver 1",
        Duration::from_secs(20),
        || target_metric(&a, "hepflow_hep_target_connected", &targets[1]) == 1.0,
        || a.log_text(),
    );
    let phase3: Vec<Vec<u8>> = (300..400).flat_map(call).collect();
    send(&phase3, &mut sent);
    wait_delivered(&a, sent);
    assert_eq!(sent, 1200);

    let m = a.metrics();
    assert!(
        metric(
            &m,
            &series("hepflow_hep_target_failover_total", &targets[1])
        ) > 0.0
    );
    assert!(
        metric(
            &m,
            &series("hepflow_hep_target_reconnects_total", &targets[1])
        ) >= 1.0
    );
    // (Drops at shutdown are only counted in A's close: checked below,
    // after A stopped.)
    for t in &targets {
        for reason in ["queue_full", "send_error"] {
            let s = format!(
                "hepflow_hep_target_dropped_total{{sink=\"relay\",target=\"{t}\",reason=\"{reason}\"}}"
            );
            assert_eq!(metric(&m, &s), 0.0, "{s}");
        }
    }
    let mut r0 = rx[0].take().unwrap();
    let mut r2 = rx[2].take().unwrap();
    let mut r1b = r1b;
    // Every receiver read all A wrote to it before it is stopped.
    wait_read(&a, &r0, &targets[0], 0.0, "0");
    wait_read(&a, &r2, &targets[2], 0.0, "2");
    wait_read(&a, &r1b, &targets[1], sent_to_r1, "1b");
    assert!(a.stop().success());
    // A's close gave nothing up: no target left undrained, nothing left
    // in a queue (each is logged with the count, as `undelivered`).
    let a_log = a.log_text();
    for text in [
        "undelivered",
        "did not drain",
        "left in HEP target queues",
        "sink close failed",
    ] {
        assert!(!a_log.contains(text), "{text:?} in A's log:\n{a_log}");
    }
    for r in [&mut r0, &mut r2, &mut r1b] {
        assert!(r.stop().success());
    }

    // Where every message landed: receiver index per (Call-ID, kind);
    // receiver 1 before and after its restart are told apart.
    let mut at: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    let all = [
        ("0", r0.documents()),
        ("1", r1.documents()),
        ("1b", r1b.documents()),
        ("2", r2.documents()),
    ];
    for (name, docs) in &all {
        for d in docs {
            at.entry(doc_key(d)).or_default().push(name);
        }
    }
    assert_eq!(at.len(), 1200, "distinct messages received");
    assert!(
        at.values().all(|v| v.len() == 1),
        "a message arrived twice: {:?}",
        at.iter().find(|(_, v)| v.len() > 1)
    );
    let name = |i: usize| ["0", "1", "2"][i];
    let mut per_call: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for ((cid, kind), v) in &at {
        let n = call_n(cid);
        per_call.entry(n).or_default().insert(v[0]);
        let want = match n {
            0..=99 => name(first_choice(n)),
            100..=199 if kind == "INVITE" => name(first_choice(n)),
            100..=299 => name(without_1(n)),
            _ if first_choice(n) == 1 => "1b",
            _ => name(first_choice(n)),
        };
        assert_eq!(v[0], want, "call {n} {kind}");
    }
    // Whole calls at one receiver (except those cut by the stop).
    for (n, set) in &per_call {
        if !(100..200).contains(n) || first_choice(*n) != 1 {
            assert_eq!(set.len(), 1, "call {n} at {set:?}");
        }
    }
    // Every receiver had calls, and receiver 1 some in each of its lives.
    let calls_at = |r: &str| per_call.values().filter(|s| s.contains(r)).count();
    for r in ["0", "1", "1b", "2"] {
        assert!(calls_at(r) > 10, "receiver {r} got {} calls", calls_at(r));
    }
}

// ------------------------------------------------------------- throughput

/// Send `n` copies of `msg` to `to` over UDP as fast as one thread can.
fn blast_udp(to: SocketAddr, msg: &[u8], n: usize) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = socket2::SockRef::from(&s).set_send_buffer_size(4 << 20);
    for _ in 0..n {
        let _ = s.send_to(msg, to);
    }
}

fn blast_tcp(to: SocketAddr, msg: &[u8], n: usize) {
    let mut s = TcpStream::connect(to).unwrap();
    let chunk: Vec<u8> = msg.repeat(64);
    for _ in 0..n / 64 {
        s.write_all(&chunk).unwrap();
    }
    for _ in 0..n % 64 {
        s.write_all(msg).unwrap();
    }
}

/// Run `send`, then poll `series` on `at` until it stops growing (or
/// reaches `n`): (messages counted, msgs/s from the start of sending to
/// the last increase).
fn measure(at: &Hepflow, series: &str, n: usize, send: impl FnOnce()) -> (f64, f64) {
    let base = metric(&at.metrics(), series);
    let start = Instant::now();
    send();
    let mut last = base;
    let mut last_change = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let v = metric(&at.metrics(), series);
        if v != last {
            last = v;
            last_change = Instant::now();
        }
        if v - base >= n as f64 || last_change.elapsed() > Duration::from_millis(1500) {
            break;
        }
    }
    let got = last - base;
    (got, got / (last_change - start).as_secs_f64())
}

/// Throughput of forwarding, as ratios against direct ingest into the
/// receiver. Run by hand, in release mode:
/// `cargo test --release --test e2e_hep_forward -- --ignored --nocapture forwarding_throughput`
#[test]
#[ignore]
fn forwarding_throughput() {
    let n: usize = std::env::var("HEPFLOW_FWD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let msg = corpus_messages("kamailio-hep3-udp.pcapng")[0].clone();
    let null = "[sinks.nul]\ntype = \"null\"\n[default_route]\nsinks = [\"nul\"]\n";
    let b = Hepflow::start("", null);
    let udp_in = r#"hepflow_decoded_total{listener="udp",transport="udp"}"#;
    let tcp_in = r#"hepflow_decoded_total{listener="tcp",transport="tcp"}"#;
    // (path, decoded by A, decoded by B, msgs/s at B, baseline msgs/s)
    let mut rows: Vec<(String, Option<f64>, f64, f64, f64)> = Vec::new();
    // Direct: sender -> B.
    let (d_udp, r_udp) = measure(&b, udp_in, n, || blast_udp(b.udp, &msg, n));
    rows.push(("direct udp -> B".into(), None, d_udp, r_udp, r_udp));
    let (d_tcp, r_tcp) = measure(&b, tcp_in, n, || blast_tcp(b.tcp, &msg, n));
    rows.push(("direct tcp -> B".into(), None, d_tcp, r_tcp, r_tcp));
    for out in ["udp", "tcp"] {
        let (target, b_series, base) = if out == "udp" {
            (format!("udp://{}", b.udp), udp_in, r_udp)
        } else {
            (format!("tcp://{}", b.tcp), tcp_in, r_tcp)
        };
        let a = Hepflow::start(
            "",
            &format!(
                "[sinks.relay]\ntype = \"hep\"\ntargets = [\"{target}\"]\nmax_write_messages = 256\nqueue_capacity = 65536\n[sinks.relay.queue]\nwhen_full = \"block\"\n[default_route]\nsinks = [\"relay\"]\n"
            ),
        );
        for input in ["udp", "tcp"] {
            let a_series = if input == "udp" { udp_in } else { tcp_in };
            let a_before = metric(&a.metrics(), a_series);
            let (g, r) = measure(&b, b_series, n, || {
                if input == "udp" {
                    blast_udp(a.udp, &msg, n)
                } else {
                    blast_tcp(a.tcp, &msg, n)
                }
            });
            let a_got = metric(&a.metrics(), a_series) - a_before;
            if input == "tcp" && out == "tcp" {
                // TCP in, TCP out, `block` queues: lossless.
                assert_eq!(g, n as f64, "tcp -> A -> tcp -> B lost messages");
            }
            rows.push((
                format!("{input} -> A -> {out} -> B"),
                Some(a_got),
                g,
                r,
                base,
            ));
        }
        drop(a);
    }
    println!(
        "\nforwarding throughput, {n} messages of {} bytes each",
        msg.len()
    );
    println!(
        "{:<22} {:>9} {:>9} {:>7} {:>10} {:>6}",
        "path", "A decoded", "B decoded", "loss %", "msgs/s", "ratio"
    );
    for (path, a_got, got, rate, base) in rows {
        let a_col = a_got.map_or("-".to_string(), |v| format!("{v}"));
        println!(
            "{path:<22} {a_col:>9} {got:>9} {:>7.2} {rate:>10.0} {:>6.2}",
            100.0 * (1.0 - got / n as f64),
            rate / base
        );
        assert!(got > 0.0, "{path}: nothing arrived");
    }
}
