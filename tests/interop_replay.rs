//! `hepflow replay` end to end: the real binary replays the project's
//! captures (tests/fixtures) into a real hepflow instance, and what hepflow
//! wrote is compared with what the capture holds, message by message.
//!
//! - plain SIP wrapped into HEPv3 (81 messages of sngrep's 6-call capture
//!   over UDP, the 13 of the Kamailio call over TCP): payload, addresses,
//!   ports, capture time, capture id, node name and auth key arrive; a wrong
//!   key is refused and counted; the key is printed nowhere;
//! - the HEP corpus sent as captured (v1, v2, v3; UDP; the TCP stream);
//! - HEPv1/v2 to a tcp:// target are skipped, with the reason;
//! - the pace: message i leaves (t_i - t_0) / speed after the first;
//! - bad targets, missing files, nothing to send: clear errors.

mod common;
#[path = "interop/support.rs"]
mod support;

use common::{fixture, metric, Hepflow, UDP_CORPUS};
use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::{doc_key, doc_packet, report, sip_packets, Packet};

fn replay(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hepflow"));
    cmd.arg("replay")
        .args(args)
        .env_remove("HEPFLOW_REPLAY_AUTH_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hepflow replay")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(
        o.status.success(),
        "hepflow replay failed ({}):\n{out}\n{err}",
        o.status
    );
    out
}

#[test]
fn replay_wraps_plain_sip_into_hepv3_message_for_message() {
    const KEY: &str = "replay-key-8c1f";
    let cases = [
        ("sip/sngrep-aaa-6calls.pcap", 81, "udp"),
        ("sip/kamailio-call-sip.pcap", 13, "tcp"),
    ];
    for (rel, count, transport) in cases {
        let mut expected = sip_packets(rel);
        assert_eq!(expected.len(), count, "{rel}: SIP packets the test finds");
        let mut h = Hepflow::start(&format!("auth_key = \"{KEY}\""), "");
        let to = format!("{transport}://{}", h.udp);
        let path = fixture(rel);
        let o = replay(
            &[
                path.to_str().unwrap(),
                "--to",
                &to,
                "--speed",
                "max",
                "--mode",
                "sip",
                "--capture-id",
                "2042",
                "--node-name",
                "replay-node",
            ],
            &[("HEPFLOW_REPLAY_AUTH_KEY", KEY)],
        );
        let out = ok(&o);
        assert!(
            out.contains(&format!("sent {count} HEP messages")),
            "summary: {out}"
        );
        // One line per message, numbered.
        assert!(out.contains(&format!("{count} +")), "{out}");
        let decoded = h.wait_metric(
            &format!(r#"hepflow_decoded_total{{listener="{transport}",transport="{transport}"}}"#),
            count as f64,
        );
        assert_eq!(decoded, count as f64, "{rel}: decoded");
        let sent = h.wait_metric(r#"hepflow_sink_sent_total{sink="files"}"#, count as f64);
        assert_eq!(sent, count as f64);
        let metrics = h.metrics();
        assert!(h.stop().success());
        let docs = h.documents();
        assert_eq!(docs.len(), count, "{rel}: documents");
        for d in &docs {
            assert_eq!(d["hep_version"], 3, "{d}");
            assert_eq!(d["proto"], "sip", "{d}");
            assert_eq!(d["capture_id"], 2042, "{d}");
            assert_eq!(d["node_name"], "replay-node", "{d}");
            assert_eq!(d["ip_proto"], 17, "{d}");
            assert_eq!(d["transport"], transport, "{d}");
            doc_key(d);
        }
        let mut got: Vec<Packet> = docs.iter().map(doc_packet).collect();
        expected.sort();
        got.sort();
        support::assert_same_packets(
            &format!("{rel}: payloads, addresses and capture times"),
            expected,
            got,
        );
        // The key reached hepflow (accepted) but nothing printed or stored it.
        let (out, err) = text(&o);
        for (what, t) in [
            ("replay stdout", out),
            ("replay stderr", err),
            ("hepflow log", h.log_text()),
            ("metrics", metrics),
            (
                "documents",
                docs.iter().map(|d| d.to_string()).collect::<String>(),
            ),
        ] {
            assert!(!t.contains(KEY), "the auth key appears in the {what}");
        }
        report(&format!(
            "sender=hepflow replay (SIP wrapped into HEPv3) transport={transport} file={rel}: \
             {count} SIP packets in the capture, {count} documents, equal payload/addresses/times"
        ));
    }
}

#[test]
fn replay_with_a_wrong_auth_key_is_refused_and_counted() {
    let mut h = Hepflow::start(r#"auth_key = "the-right-key""#, "");
    let path = fixture("sip/kamailio-call-sip.pcap");
    let out = ok(&replay(
        &[
            path.to_str().unwrap(),
            "--to",
            &format!("udp://{}", h.udp),
            "--speed",
            "max",
            "-q",
        ],
        &[("HEPFLOW_REPLAY_AUTH_KEY", "a-wrong-key")],
    ));
    assert!(out.contains("sent 13 HEP messages"), "{out}");
    let rejected = h.wait_metric(
        r#"hepflow_auth_rejected_total{listener="udp",transport="udp",reason="bad_key"}"#,
        13.0,
    );
    assert_eq!(rejected, 13.0);
    let m = h.metrics();
    assert_eq!(
        metric(
            &m,
            r#"hepflow_decoded_total{listener="udp",transport="udp"}"#
        ),
        0.0
    );
    assert!(h.stop().success());
    assert!(h.documents().is_empty(), "a refused message was written");
    let log = h.log_text();
    assert!(log.contains("bad_key"), "hepflow log: {log}");
    assert!(!log.contains("a-wrong-key") && !log.contains("the-right-key"));
    assert!(!m.contains("a-wrong-key") && !m.contains("the-right-key"));
    report("sender=hepflow replay version=HEPv3 transport=udp wrong auth key: 13 sent, 13 refused (bad_key), 0 documents");
}

#[test]
fn replay_sends_the_hep_corpus_as_captured() {
    let mut h = Hepflow::start("", "");
    let mut total = 0usize;
    for (name, count) in UDP_CORPUS {
        let path = fixture(&format!("hep/{name}"));
        let out = ok(&replay(
            &[
                path.to_str().unwrap(),
                "--to",
                &format!("udp://{}", h.udp),
                "--speed",
                "max",
            ],
            &[],
        ));
        assert!(
            out.contains(&format!("sent {count} HEP messages")),
            "{name}: {out}"
        );
        assert!(!out.contains("skipped"), "{name}: {out}");
        total += count;
        let decoded = h.wait_metric(
            r#"hepflow_decoded_total{listener="udp",transport="udp"}"#,
            total as f64,
        );
        assert_eq!(decoded, total as f64, "after {name}");
        report(&format!(
            "sender=hepflow replay (HEP as captured) transport=udp file={name}: {count} sent, {count} decoded"
        ));
    }
    let path = fixture("hep/kamailio-hep3-tcp.pcapng");
    let out = ok(&replay(
        &[
            path.to_str().unwrap(),
            "--to",
            &format!("tcp://{}", h.tcp),
            "--speed",
            "max",
        ],
        &[],
    ));
    assert!(out.contains("sent 14 HEP messages"), "{out}");
    let decoded = h.wait_metric(
        r#"hepflow_decoded_total{listener="tcp",transport="tcp"}"#,
        14.0,
    );
    assert_eq!(decoded, 14.0);
    h.wait_metric(
        r#"hepflow_sink_sent_total{sink="files"}"#,
        (total + 14) as f64,
    );
    let m = h.metrics();
    assert!(h.stop().success());
    for reason in hepflow_sdk::hep::DecodeError::REASONS {
        for l in ["udp", "tcp"] {
            let s = format!(
                r#"hepflow_decode_errors_total{{listener="{l}",transport="{l}",reason="{reason}"}}"#
            );
            assert_eq!(metric(&m, &s), 0.0, "{s}");
        }
    }
    let docs = h.documents();
    assert_eq!(docs.len(), total + 14);
    // The TCP stream's 13 SIP messages are Kamailio's mirror of the plain
    // SIP the same capture holds on ports 5060/5070/5080: same payloads.
    let tcp_docs: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| d["transport"] == "tcp" && d["proto"] == "sip")
        .collect();
    let mut got: Vec<String> = tcp_docs
        .iter()
        .map(|d| {
            doc_key(d);
            d["payload"].as_str().unwrap().to_string()
        })
        .collect();
    let mut want: Vec<String> = sip_packets("hep/kamailio-hep3-tcp.pcapng")
        .into_iter()
        .map(|p| p.payload)
        .collect();
    got.sort();
    want.sort();
    assert_eq!(want.len(), 13);
    assert_eq!(got, want, "SIP mirrored over TCP vs the SIP on the wire");
    let mut versions: BTreeMap<String, usize> = BTreeMap::new();
    for d in &docs {
        *versions
            .entry(format!("v{}", d["hep_version"]))
            .or_default() += 1;
    }
    report(&format!(
        "sender=hepflow replay (HEP as captured) transport=tcp file=kamailio-hep3-tcp.pcapng: 14 sent, 14 decoded; all documents by version: {versions:?}"
    ));
}

#[test]
fn replay_skips_hep_v1_v2_on_tcp_and_says_why() {
    let mut h = Hepflow::start("", "");
    for name in ["kamailio-hep1-udp.pcapng", "kamailio-hep2-udp.pcapng"] {
        let path = fixture(&format!("hep/{name}"));
        let out = ok(&replay(
            &[
                path.to_str().unwrap(),
                "--to",
                &format!("tcp://{}", h.tcp),
                "--speed",
                "max",
            ],
            &[],
        ));
        // The 13 SIP messages are v1/v2; Kamailio's hlog LOG is always HEP3.
        assert!(
            out.contains("skipped 13: HEPv1/v2 cannot be framed on TCP"),
            "{name}: {out}"
        );
        assert!(out.contains("sent 1 HEP messages"), "{name}: {out}");
    }
    let decoded = h.wait_metric(
        r#"hepflow_decoded_total{listener="tcp",transport="tcp"}"#,
        2.0,
    );
    assert_eq!(decoded, 2.0);
    let m = h.metrics();
    assert_eq!(
        metric(
            &m,
            r#"hepflow_framing_errors_total{listener="tcp",transport="tcp"}"#
        ),
        0.0
    );
    assert!(h.stop().success());
    let docs = h.documents();
    assert_eq!(docs.len(), 2);
    assert!(docs.iter().all(|d| d["proto"] == "log"), "{docs:?}");
}

/// The offsets `replay` prints (`N +S.SSSSSSs ...`), in seconds.
fn printed_offsets(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.next()?.parse::<usize>().ok()?;
            w.next()?.strip_prefix('+')?.strip_suffix('s')?.parse().ok()
        })
        .collect()
}

#[test]
fn replay_keeps_the_capture_pace_or_a_multiple_of_it() {
    // The sipcapture sample spans 6.8 s over 8 messages.
    let rel = "hep/wireshark-sample-hep3.pcap";
    let mut times: Vec<f64> = hepflow::capture::read_port(&fixture(rel), 9060)
        .unwrap()
        .iter()
        .map(|p| p.time.as_secs_f64())
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let span = times[times.len() - 1] - times[0];
    assert!(span > 6.0, "the sample capture spans {span} s");
    let mut h = Hepflow::start("", "");
    let path = fixture(rel);
    let target = format!("udp://{}", h.udp);
    for (speed, factor) in [("4", 4.0), ("max", f64::INFINITY)] {
        let started = Instant::now();
        let out = ok(&replay(
            &[path.to_str().unwrap(), "--to", &target, "--speed", speed],
            &[],
        ));
        let wall = started.elapsed();
        let offsets = printed_offsets(&out);
        assert_eq!(offsets.len(), 8, "{out}");
        for (i, (got, t)) in offsets.iter().zip(&times).enumerate() {
            let want = (t - times[0]) / factor;
            assert!(
                (got - want).abs() < 2e-6,
                "speed {speed}, message {}: scheduled at +{got} s, the capture says +{want} s",
                i + 1
            );
        }
        // Sleeping until each offset means the replay cannot end sooner.
        let last = offsets[offsets.len() - 1];
        assert!(
            wall >= Duration::from_secs_f64(last),
            "speed {speed}: finished in {wall:?}, before the last offset {last} s"
        );
    }
    let decoded = h.wait_metric(
        r#"hepflow_decoded_total{listener="udp",transport="udp"}"#,
        16.0,
    );
    assert_eq!(decoded, 16.0);
    assert!(h.stop().success());
    report(&format!(
        "sender=hepflow replay pace: {rel} ({span:.3} s) at speed 4 scheduled over {:.3} s and at max over 0 s; 16 decoded",
        span / 4.0
    ));
}

#[test]
fn replay_reports_bad_targets_missing_files_and_nothing_to_send() {
    let sip = fixture("sip/kamailio-call-sip.pcap");
    let sip = sip.to_str().unwrap();
    // No scheme: a usage error (clap exits 2) that shows the expected form.
    let o = replay(&[sip, "--to", "127.0.0.1:9060"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("udp://HOST:PORT"), "{}", text(&o).1);
    let o = replay(&[sip, "--to", "udp://127.0.0.1:9060", "--speed", "0"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("max"), "{}", text(&o).1);
    // Nobody listening on TCP (a port bind(0) never hands out).
    let port = common::restart_port();
    let o = replay(&[sip, "--to", &format!("tcp://127.0.0.1:{port}")], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("is the collector listening"),
        "{}",
        text(&o).1
    );
    // A file that does not exist.
    let o = replay(&["/nonexistent/x.pcap", "--to", "udp://127.0.0.1:9"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("/nonexistent/x.pcap"), "{}", text(&o).1);
    // A file that is not a capture.
    let o = replay(&[file!(), "--to", "udp://127.0.0.1:9"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("not a readable pcap"), "{}", text(&o).1);
    // HEP mode on a capture without HEP.
    let o = replay(&[sip, "--to", "udp://127.0.0.1:9", "--mode", "hep"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("nothing to send"), "{}", text(&o).1);
}
