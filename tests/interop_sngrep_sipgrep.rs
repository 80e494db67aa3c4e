//! Interop with sngrep 1.6 (`sngrep -N -q -I FILE.pcap -H udp:...`) and
//! sipgrep 2.1 (`sipgrep -I FILE.pcap -H udp:...`), both Debian packages,
//! replaying the project's SIP captures (tests/fixtures/sip, copies of the
//! shared corpus) as HEP into a real hepflow: every SIP message of each
//! capture must arrive, with its payload, addresses, ports and capture
//! time, as a document.
//!
//! Both senders write the capture id as `htons(id)` into the u32 chunk
//! (sngrep's 2002 arrives as `07 d2 00 00`, sipgrep's 101 as `00 65 00 00`;
//! docs/interop.md). With the listener option `capture_id_compat =
//! "sngrep"` hepflow reads the id they meant, and counts each rewrite; with
//! the default (`none`) it keeps the value as sent and logs a hint. Both
//! are tested. sngrep's HEPv2 sender (wrong header-length byte, garbage pad
//! bytes), its auth key, and a wrong key are tested too.
//!
//! Needs `HEPFLOW_TEST_SNGREP_BIN` and `HEPFLOW_TEST_SIPGREP_BIN`
//! (tests/services/services.sh; `bash tests/run.sh` sets them).
#![cfg(live_services)]

mod common;
#[path = "interop/support.rs"]
mod support;

use common::{fixture, metric, Hepflow};
use std::process::Command;
use std::time::Duration;
use support::{
    assert_same_packets, doc_key, doc_packet, report, require_env, sip_captures, sip_packets,
    version_of, Proc,
};

const RULE_ON: &str = r#"capture_id_compat = "sngrep""#;
const DECODED: &str = r#"hepflow_decoded_total{listener="udp",transport="udp"}"#;
const REWRITTEN: &str = r#"hepflow_capture_id_rewritten_total{listener="udp",transport="udp"}"#;
const HINT: &str = "looks like sngrep/sipgrep's htons(id) byte order";

/// Run a sender to completion (killed after 60 s), panicking on failure.
fn run_sender(name: &str, cmd: &mut Command, dir: &std::path::Path) {
    let mut p = Proc::spawn(name, cmd, &dir.join(format!("{name}.log")));
    let status = p.wait_timeout(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "{name} failed ({status:?}): {}",
        p.log_text()
    );
}

/// sngrep replaying `pcap` to `h` with the given sngreprc lines.
fn sngrep(h: &Hepflow, pcap: &str, rc: &[&str]) {
    let bin = require_env("HEPFLOW_TEST_SNGREP_BIN");
    let dir = support::tempdir("hepflow-sngrep-");
    let rc_path = dir.path().join("sngreprc");
    std::fs::write(&rc_path, rc.join("\n") + "\n").unwrap();
    run_sender(
        "sngrep",
        Command::new(bin)
            // -F: not the machine's /etc/sngreprc or ~/.sngreprc; -f: ours.
            .arg("-F")
            .arg("-f")
            .arg(&rc_path)
            .args(["-N", "-q", "-I"])
            .arg(fixture(&format!("sip/{pcap}")))
            .arg("-H")
            .arg(format!("udp:{}", h.udp))
            .env("HOME", dir.path()),
        dir.path(),
    );
}

fn sipgrep(h: &Hepflow, pcap: &str) {
    let bin = require_env("HEPFLOW_TEST_SIPGREP_BIN");
    let dir = support::tempdir("hepflow-sipgrep-");
    run_sender(
        "sipgrep",
        Command::new(bin)
            .arg("-I")
            .arg(fixture(&format!("sip/{pcap}")))
            .arg("-H")
            .arg(format!("udp:{}", h.udp))
            .env("HOME", dir.path()),
        dir.path(),
    );
}

/// Wait for `count` documents, stop hepflow, check every SIP message of
/// the capture arrived; returns the documents and the last metrics.
fn collect(h: &mut Hepflow, pcap: &str) -> (Vec<serde_json::Value>, String) {
    let expected = sip_packets(&format!("sip/{pcap}"));
    let count = expected.len();
    let decoded = h.wait_metric(DECODED, count as f64);
    h.wait_metric(r#"hepflow_sink_sent_total{sink="files"}"#, count as f64);
    let m = h.metrics();
    assert!(h.stop().success(), "hepflow log:\n{}", h.log_text());
    assert_eq!(
        decoded, count as f64,
        "{pcap}: {count} SIP messages in the capture, {decoded} decoded"
    );
    let docs = h.documents();
    for d in &docs {
        assert_eq!(d["proto"], "sip", "{d}");
        doc_key(d);
    }
    assert_same_packets(
        &format!("{pcap}: the capture's SIP vs hepflow's documents"),
        expected,
        docs.iter().map(doc_packet).collect(),
    );
    (docs, m)
}

fn capture_ids(docs: &[serde_json::Value]) -> Vec<u64> {
    let mut v: Vec<u64> = docs
        .iter()
        .map(|d| d["capture_id"].as_u64().unwrap())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn sngrep_sends_every_sip_message_of_each_capture_capture_id_rule_on() {
    let version = version_of(&require_env("HEPFLOW_TEST_SNGREP_BIN"), "-V");
    let captures = sip_captures();
    assert!(captures.len() >= 2, "{captures:?}");
    for pcap in &captures {
        let mut h = Hepflow::start(RULE_ON, "");
        // sngrep's default capture id (eep.send.id) is 2002.
        sngrep(&h, pcap, &[]);
        let (docs, m) = collect(&mut h, pcap);
        assert_eq!(capture_ids(&docs), [2002], "{pcap}");
        assert!(docs.iter().all(|d| d["hep_version"] == 3));
        assert_eq!(metric(&m, REWRITTEN), docs.len() as f64);
        assert!(!h.log_text().contains(HINT));
        report(&format!(
            "sender={version} version=HEPv3 transport=udp file={pcap} capture_id_compat=sngrep: \
             {} SIP messages in the capture, {} documents (same payloads/addresses/times), \
             capture id 2002 (sent as 07 d2 00 00), {} rewritten",
            docs.len(),
            docs.len(),
            metric(&m, REWRITTEN)
        ));
    }
}

#[test]
fn sngrep_capture_id_without_the_rule_is_kept_as_sent_and_hinted() {
    let pcap = "kamailio-call-sip.pcap";
    let mut h = Hepflow::start("", "");
    sngrep(&h, pcap, &["set eep.send.id 4660"]);
    let (docs, m) = collect(&mut h, pcap);
    // 4660 = 0x1234, written by sngrep as bytes 12 34 00 00.
    assert_eq!(capture_ids(&docs), [0x1234_0000]);
    assert_eq!(metric(&m, REWRITTEN), 0.0);
    let log = h.log_text();
    assert!(log.contains(HINT), "no hint in hepflow's log:\n{log}");
    assert!(log.contains("capture_id_compat"), "{log}");
    report(&format!(
        "sender=sngrep version=HEPv3 transport=udp file={pcap} capture_id_compat=none: {} documents, \
         capture id kept as sent ({} = bytes 12 34 00 00), hint logged",
        docs.len(),
        0x1234_0000u32
    ));
}

#[test]
fn sngrep_hep2_with_its_bad_header_length_byte_and_a_custom_capture_id() {
    let pcap = "kamailio-call-sip.pcap";
    // The rule is on but does not touch v2: its capture id is a
    // little-endian u16 that sngrep writes correctly.
    let mut h = Hepflow::start(RULE_ON, "");
    sngrep(
        &h,
        pcap,
        &["set eep.send.version 2", "set eep.send.id 4660"],
    );
    let (docs, m) = collect(&mut h, pcap);
    assert!(docs.iter().all(|d| d["hep_version"] == 2), "{docs:?}");
    assert_eq!(capture_ids(&docs), [4660]);
    assert_eq!(metric(&m, REWRITTEN), 0.0);
    report(&format!(
        "sender=sngrep version=HEPv2 transport=udp file={pcap}: {} SIP messages, {} documents, \
         capture id 4660",
        docs.len(),
        docs.len()
    ));
}

#[test]
fn sngrep_with_an_auth_key_is_accepted_and_with_a_wrong_one_refused() {
    let pcap = "kamailio-call-sip.pcap";
    let key = "sngrep-interop-key";
    let mut h = Hepflow::start(&format!("auth_key = \"{key}\"\n{RULE_ON}"), "");
    sngrep(
        &h,
        pcap,
        &["set eep.send.id 4660", &format!("set eep.send.pass {key}")],
    );
    let (docs, m) = collect(&mut h, pcap);
    assert_eq!(capture_ids(&docs), [4660]);
    let all: String = docs.iter().map(|d| d.to_string()).collect();
    assert!(!all.contains(key) && !h.log_text().contains(key) && !m.contains(key));

    let mut h = Hepflow::start(&format!("auth_key = \"{key}\""), "");
    sngrep(&h, pcap, &["set eep.send.pass not-the-key"]);
    let series = r#"hepflow_auth_rejected_total{listener="udp",transport="udp",reason="bad_key"}"#;
    let rejected = h.wait_metric(series, 13.0);
    let m = h.metrics();
    assert!(h.stop().success());
    assert_eq!(rejected, 13.0);
    assert_eq!(metric(&m, DECODED), 0.0);
    assert!(h.documents().is_empty());
    assert!(!h.log_text().contains("not-the-key") && !m.contains("not-the-key"));
    report(&format!(
        "sender=sngrep version=HEPv3 transport=udp file={pcap} auth key: right key {} documents; \
         wrong key 13 sent, {rejected} refused (bad_key), 0 documents",
        docs.len()
    ));
}

#[test]
fn sipgrep_sends_every_sip_message_of_each_capture_with_and_without_the_rule() {
    let version = version_of(&require_env("HEPFLOW_TEST_SIPGREP_BIN"), "-V");
    for pcap in &sip_captures() {
        let mut h = Hepflow::start(RULE_ON, "");
        sipgrep(&h, pcap);
        let (docs, m) = collect(&mut h, pcap);
        // sipgrep's capture id is 101, sent as 00 65 00 00.
        assert_eq!(capture_ids(&docs), [101], "{pcap}");
        assert_eq!(metric(&m, REWRITTEN), docs.len() as f64);
        report(&format!(
            "sender={version} version=HEPv3 transport=udp file={pcap} capture_id_compat=sngrep: \
             {} SIP messages in the capture, {} documents (same payloads/addresses/times), \
             capture id 101 (sent as 00 65 00 00)",
            docs.len(),
            docs.len()
        ));
    }
    let pcap = "kamailio-call-sip.pcap";
    let mut h = Hepflow::start("", "");
    sipgrep(&h, pcap);
    let (docs, m) = collect(&mut h, pcap);
    assert_eq!(capture_ids(&docs), [0x0065_0000]);
    assert_eq!(metric(&m, REWRITTEN), 0.0);
    assert!(h.log_text().contains(HINT), "{}", h.log_text());
    report(&format!(
        "sender={version} version=HEPv3 transport=udp file={pcap} capture_id_compat=none: {} documents, \
         capture id kept as sent ({}), hint logged",
        docs.len(),
        0x0065_0000u32
    ));
}

#[test]
fn capture_id_compat_is_validated_with_its_key_path() {
    let dir = support::tempdir("hepflow-compat-");
    let cfg = dir.path().join("hepflow.toml");
    std::fs::write(
        &cfg,
        format!(
            "[listeners.udp]\nkind = \"udp\"\nbind = \"127.0.0.1:9060\"\ncapture_id_compat = \"htons\"\n\
             [listeners.tcp]\nkind = \"tcp\"\nbind = \"127.0.0.1:9060\"\ncapture_id_compat = \"sngrep\"\n\
             [sinks.files]\ntype = \"file\"\npath = \"{}\"\n[default_route]\nsinks = [\"files\"]\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_hepflow"))
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "listeners.udp.capture_id_compat: unknown variant `htons`, expected `none` or `sngrep`"
        ),
        "{err}"
    );
    assert!(
        err.contains("1 error(s)"),
        "only the bad value is reported: {err}"
    );
}
