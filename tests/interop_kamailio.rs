//! Interop with Kamailio (Debian `kamailio`, module `siptrace`,
//! `trace_mode=1`) relaying real calls between two sipp instances (Debian
//! `sip-tester`: `sipp -sn uac` -> Kamailio -> `sipp -sn uas`), mirroring
//! every SIP message it receives and sends to a real hepflow as HEP, plus
//! one `hlog()` LOG message per INVITE.
//!
//! Runs: HEP v1, v2 and v3; over UDP and TCP; SIP over IPv4 and IPv6; with
//! and without an auth key; and a Kamailio with the wrong auth key, which
//! hepflow must refuse and count. Each run compares the SIP messages both
//! sipp instances logged (`-trace_msg`: Call-ID, method or status, CSeq
//! method; each one is a message Kamailio received or sent) with the
//! documents hepflow's file sink wrote, as multisets, and the LOG documents
//! with the INVITEs; then the version, capture id, addresses, listener and
//! transport of every document.
//!
//! Needs `HEPFLOW_TEST_KAMAILIO_BIN`, `HEPFLOW_TEST_KAMAILIO_MODULES` and
//! `HEPFLOW_TEST_SIPP_BIN` (tests/services/services.sh; `bash tests/run.sh`
//! sets them). Every process a run starts is in its own process group and
//! is killed when the run ends, pass or fail.
#![cfg(live_services)]

mod common;
#[path = "interop/support.rs"]
mod support;

use common::{free_port, metric, wait_until, Hepflow};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use support::{
    assert_same_messages, doc_key, free_port_v6, multiset, read_sipp_messages,
    read_sipp_messages_so_far, report, require_env, start_with_retries, udp_bound, version_of,
    Proc, SipKey,
};

/// One Kamailio run.
struct Case {
    /// `hep_version` of siptrace.
    hep_version: u8,
    /// HEP over TCP (`duplicate_uri=...;transport=tcp`), else UDP.
    hep_tcp: bool,
    /// SIP between sipp and Kamailio over IPv6 (`::1`), else IPv4.
    sip_v6: bool,
    /// `auth_key` of siptrace.
    kamailio_key: Option<&'static str>,
    /// `auth_key` of hepflow's listeners.
    listener_key: Option<&'static str>,
    /// `allow_legacy_without_key` of hepflow's listeners.
    allow_legacy: bool,
    /// `hep_capture_id` of siptrace.
    capture_id: u32,
}

const CALLS: usize = 2;

fn versions() -> &'static (String, String) {
    static V: OnceLock<(String, String)> = OnceLock::new();
    V.get_or_init(|| {
        let kam = version_of(&require_env("HEPFLOW_TEST_KAMAILIO_BIN"), "-v");
        let kam = kam.trim_start_matches("version:").trim();
        let kam = kam.strip_prefix("kamailio ").unwrap_or(kam);
        let sipp = version_of(&require_env("HEPFLOW_TEST_SIPP_BIN"), "-v");
        (kam.to_string(), sipp.trim_end_matches('.').to_string())
    })
}

fn template() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/kamailio/kamailio.cfg.in");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Where the SIP of a run goes: the host as written in URIs and the IP.
fn sip_host(v6: bool) -> (&'static str, &'static str) {
    if v6 {
        ("[::1]", "::1")
    } else {
        ("127.0.0.1", "127.0.0.1")
    }
}

/// A base for sipp's media ports: sipp binds the base (audio RTP) and
/// base + 2 (video RTP), with RTCP on each + 1, so all four must be free
/// (a free base alone once met a video port in use: errno 98).
fn free_media_ports() -> u16 {
    for _ in 0..100 {
        let base = free_port();
        if base > u16::MAX - 3 {
            continue;
        }
        let held: Vec<_> = (0..4)
            .map_while(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == 4 {
            return base;
        }
    }
    panic!("no four consecutive free UDP ports found for sipp's media");
}

fn free_sip_port(v6: bool) -> u16 {
    if v6 {
        free_port_v6()
    } else {
        free_port()
    }
}

/// What a run saw.
struct Outcome {
    h: Hepflow,
    expected_sip: std::collections::BTreeMap<SipKey, usize>,
    invites: usize,
    uac: usize,
    uas: usize,
    call_ids: Vec<String>,
    /// Kept running until the caller has checked hepflow (its TCP
    /// connection to hepflow stays open meanwhile); killed on drop.
    kamailio: Proc,
}

fn run(case: &Case) -> Outcome {
    let kamailio_bin = require_env("HEPFLOW_TEST_KAMAILIO_BIN");
    let modules = require_env("HEPFLOW_TEST_KAMAILIO_MODULES");
    let sipp_bin = require_env("HEPFLOW_TEST_SIPP_BIN");
    let mut listener_extra = String::new();
    if let Some(k) = case.listener_key {
        listener_extra.push_str(&format!("auth_key = \"{k}\"\n"));
    }
    if case.allow_legacy {
        listener_extra.push_str("allow_legacy_without_key = true\n");
    }
    let h = Hepflow::start(&listener_extra, "");
    let dir = support::tempdir("hepflow-kamailio-");
    let (host, ip) = sip_host(case.sip_v6);
    let sipp = |role: &str, port: u16| {
        let mut c = Command::new(&sipp_bin);
        c.current_dir(dir.path())
            .args(["-sn", role, "-i", ip, "-p", &port.to_string()])
            .args(["-m", &CALLS.to_string(), "-nostdin", "-trace_msg"])
            .arg("-message_file")
            .arg(dir.path().join(format!("{role}.msg")))
            .args(["-mp", &free_media_ports().to_string()]);
        c
    };
    // Ports are picked free, then bound by sipp / Kamailio; a clash with
    // another process in between is retried on new ports.
    let (uas, uas_port) = start_with_retries(
        "sipp uas",
        |_| {
            let port = free_sip_port(case.sip_v6);
            let p = Proc::spawn(
                "sipp uas",
                &mut sipp("uas", port),
                &dir.path().join("uas.log"),
            );
            (p, port)
        },
        |port| udp_bound(*port),
    );
    let hep_uri = if case.hep_tcp {
        format!("sip:{};transport=tcp", h.tcp)
    } else {
        format!("sip:{}", h.udp)
    };
    let uas_uri = format!("sip:{host}:{uas_port}");
    let rundir = dir.path().join("run");
    std::fs::create_dir(&rundir).unwrap();
    let (kamailio, kam_port) = start_with_retries(
        "kamailio",
        |_| {
            let kam_port = free_sip_port(case.sip_v6);
            let mut listen = format!("listen=udp:{host}:{kam_port}");
            if case.hep_tcp || case.sip_v6 {
                // siptrace sends HEP from a listening socket of the
                // collector's family and protocol.
                let proto = if case.hep_tcp { "tcp" } else { "udp" };
                listen.push_str(&format!("\nlisten={proto}:127.0.0.1:{}", free_port()));
            }
            let cfg = template()
                .replace("@LISTEN@", &listen)
                .replace("@MPATH@", &modules)
                .replace("@HEP_URI@", &hep_uri)
                .replace("@HEP_VERSION@", &case.hep_version.to_string())
                .replace("@CAPTURE_ID@", &case.capture_id.to_string())
                .replace(
                    "@AUTH_KEY_LINE@",
                    &case
                        .kamailio_key
                        .map(|k| format!("modparam(\"siptrace\", \"auth_key\", \"{k}\")"))
                        .unwrap_or_default(),
                )
                .replace("@UAS@", &uas_uri);
            let cfg_path = dir.path().join("kamailio.cfg");
            std::fs::write(&cfg_path, cfg).unwrap();
            let p = Proc::spawn(
                "kamailio",
                Command::new(&kamailio_bin)
                    .arg("-f")
                    .arg(&cfg_path)
                    .args(["-DD", "-E", "-m", "32", "-M", "8", "-L", &modules])
                    .arg("-Y")
                    .arg(&rundir)
                    .arg("-w")
                    .arg(dir.path()),
                &dir.path().join("kamailio.log"),
            );
            (p, kam_port)
        },
        |port| udp_bound(*port),
    );
    let uac_port = free_sip_port(case.sip_v6);
    let mut uac_cmd = sipp("uac", uac_port);
    uac_cmd
        .arg(format!("{host}:{kam_port}"))
        .args(["-timeout", "30s", "-timeout_error"]);
    let mut uac = Proc::spawn("sipp uac", &mut uac_cmd, &dir.path().join("uac.log"));
    let status = uac.wait_timeout(Duration::from_secs(45));
    assert!(
        status.is_some_and(|s| s.success()),
        "sipp uac failed ({status:?}): not every call went through Kamailio.\n\
         uac:\n{}\nuas:\n{}\nkamailio:\n{}",
        uac.log_text(),
        uas.log_text(),
        kamailio.log_text()
    );
    let uac_msgs = read_sipp_messages(&dir.path().join("uac.msg"));
    let byes = uac_msgs
        .iter()
        .filter(|m| m.sent && m.key.start == "BYE")
        .count();
    assert_eq!(byes, CALLS, "uac sent {byes} BYEs for {CALLS} calls");
    // The UAS keeps each call for 4 s (timewait) before exiting: do not
    // wait for it, wait until its log holds its 200 to every BYE.
    let uas_path = dir.path().join("uas.msg");
    let uas_done = wait_until(Duration::from_secs(20), || {
        uas_path.exists()
            && read_sipp_messages_so_far(&uas_path)
                .iter()
                .filter(|m| m.sent && m.key.start == "200" && m.key.cseq_method == "BYE")
                .count()
                >= CALLS
    });
    assert!(
        uas_done,
        "sipp uas did not answer every BYE: {}",
        uas.log_text()
    );
    // The UAS still runs (timewait): its log may end in a block being written.
    let uas_msgs = read_sipp_messages_so_far(&uas_path);
    let invites = uac_msgs
        .iter()
        .filter(|m| m.sent && m.key.start == "INVITE")
        .count();
    let mut call_ids: Vec<String> = uac_msgs.iter().map(|m| m.key.call_id.clone()).collect();
    call_ids.sort();
    call_ids.dedup();
    let expected_sip = multiset(uac_msgs.iter().chain(&uas_msgs).map(|m| m.key.clone()));
    drop(uac);
    drop(uas);
    Outcome {
        h,
        expected_sip,
        invites,
        uac: uac_msgs.len(),
        uas: uas_msgs.len(),
        call_ids,
        kamailio,
    }
}

/// A run hepflow accepts: every message sipp exchanged arrives once, as a
/// document with the case's version, capture id, addresses and transport,
/// and one LOG per INVITE.
fn accepted(case: &Case) {
    let o = run(case);
    let mut h = o.h;
    let transport = if case.hep_tcp { "tcp" } else { "udp" };
    let sip_count: usize = o.expected_sip.values().sum();
    let total = sip_count + o.invites;
    let series =
        format!(r#"hepflow_decoded_total{{listener="{transport}",transport="{transport}"}}"#);
    let decoded = h.wait_metric(&series, total as f64);
    h.wait_metric(r#"hepflow_sink_sent_total{sink="files"}"#, total as f64);
    let m = h.metrics();
    assert!(h.stop().success(), "hepflow exit; log:\n{}", h.log_text());
    assert_eq!(
        decoded,
        total as f64,
        "hepflow decoded {decoded} HEP messages, sipp exchanged {sip_count} SIP messages and sent {} INVITEs.\nKamailio log:\n{}",
        o.invites,
        o.kamailio.log_text()
    );
    for l in ["udp", "tcp"] {
        for r in hepflow::ingest::AUTH_REASONS {
            let s = format!(
                r#"hepflow_auth_rejected_total{{listener="{l}",transport="{l}",reason="{r}"}}"#
            );
            assert_eq!(metric(&m, &s), 0.0, "{s}");
        }
        for r in hepflow_sdk::hep::DecodeError::REASONS {
            let s = format!(
                r#"hepflow_decode_errors_total{{listener="{l}",transport="{l}",reason="{r}"}}"#
            );
            assert_eq!(metric(&m, &s), 0.0, "{s}");
        }
    }
    let docs = h.documents();
    let (sip_docs, log_docs): (Vec<_>, Vec<_>) = docs.iter().partition(|d| d["proto"] == "sip");
    let got = multiset(sip_docs.iter().map(|d| doc_key(d)));
    assert_same_messages(
        "sipp's message logs vs hepflow's documents",
        &o.expected_sip,
        &got,
    );
    let ip = sip_host(case.sip_v6).1;
    let family = if case.sip_v6 { "ipv6" } else { "ipv4" };
    let want_capture_id = if case.hep_version == 1 {
        0
    } else {
        case.capture_id
    };
    for d in &sip_docs {
        assert_eq!(d["hep_version"], case.hep_version, "{d}");
        assert_eq!(d["capture_id"], want_capture_id, "{d}");
        assert_eq!(d["ip_family"], family, "{d}");
        assert_eq!(d["src_ip"], ip, "{d}");
        assert_eq!(d["dst_ip"], ip, "{d}");
        assert_eq!(d["ip_proto"], 17, "{d}");
        assert_eq!(d["listener"], transport, "{d}");
        assert_eq!(d["transport"], transport, "{d}");
    }
    // hlog(): HEP3 type 100 with the Call-ID as correlation id, whatever
    // hep_version the SIP is mirrored with.
    assert_eq!(log_docs.len(), o.invites, "LOG documents: {log_docs:?}");
    let mut log_calls: Vec<String> = Vec::new();
    for d in &log_docs {
        assert_eq!(d["proto"], "log", "{d}");
        assert_eq!(d["proto_type"], 100, "{d}");
        assert_eq!(d["hep_version"], 3, "{d}");
        assert_eq!(d["capture_id"], case.capture_id, "{d}");
        let payload = d["payload"].as_str().unwrap_or_default();
        assert!(
            payload.starts_with("hepflow-interop: relaying INVITE"),
            "{d}"
        );
        log_calls.push(d["correlation_id"].as_str().unwrap_or_default().to_string());
    }
    log_calls.sort();
    log_calls.dedup();
    assert_eq!(
        log_calls, o.call_ids,
        "LOG correlation ids vs sipp's Call-IDs"
    );
    if let Some(k) = case.listener_key {
        let all: String = docs.iter().map(|d| d.to_string()).collect();
        assert!(!all.contains(k), "the auth key is in a document");
        assert!(
            !h.log_text().contains(k),
            "the auth key is in hepflow's log"
        );
        assert!(!m.contains(k), "the auth key is in the metrics");
    }
    let (kam, sipp) = versions();
    report(&format!(
        "sender=Kamailio {kam} siptrace trace_mode=1 (SIP from {sipp} uac/uas) version=HEPv{} \
         transport={transport} sip={family} auth_key={} capture_id={}: sipp exchanged {sip_count} SIP \
         messages in {CALLS} calls (uac {}, uas {}), hepflow wrote {} SIP documents with the same \
         Call-IDs/methods/CSeq + {} LOG (hlog) for {} INVITEs",
        case.hep_version,
        if case.listener_key.is_some() { "required" } else { "none" },
        want_capture_id,
        o.uac,
        o.uas,
        sip_docs.len(),
        log_docs.len(),
        o.invites
    ));
}

/// A Kamailio with the wrong auth key: every message refused and counted.
fn refused(case: &Case) {
    let o = run(case);
    let mut h = o.h;
    let transport = if case.hep_tcp { "tcp" } else { "udp" };
    let sip_count: usize = o.expected_sip.values().sum();
    let total = sip_count + o.invites;
    let series = format!(
        r#"hepflow_auth_rejected_total{{listener="{transport}",transport="{transport}",reason="bad_key"}}"#
    );
    let rejected = h.wait_metric(&series, total as f64);
    let m = h.metrics();
    assert!(h.stop().success());
    assert_eq!(rejected, total as f64, "{series}");
    assert_eq!(
        metric(
            &m,
            &format!(r#"hepflow_decoded_total{{listener="{transport}",transport="{transport}"}}"#)
        ),
        0.0
    );
    assert!(h.documents().is_empty(), "a refused message was written");
    let log = h.log_text();
    assert!(
        log.contains("refused by the auth key check (bad_key)"),
        "hepflow log: {log}"
    );
    for k in [case.kamailio_key.unwrap(), case.listener_key.unwrap()] {
        assert!(!log.contains(k), "an auth key is in hepflow's log");
        assert!(!m.contains(k), "an auth key is in the metrics");
    }
    let (kam, _) = versions();
    report(&format!(
        "sender=Kamailio {kam} siptrace version=HEPv3 transport={transport} WRONG auth_key: \
         {total} messages sent ({sip_count} SIP + {} LOG), {rejected} refused and counted \
         (hepflow_auth_rejected_total reason=bad_key), 0 documents",
        o.invites
    ));
}

/// HEPv1/v2 on a listener with a key, without allow_legacy_without_key:
/// the SIP mirror is refused and counted as `legacy_version`, Kamailio's
/// HEP3 hlog LOG messages (which carry the key) are accepted.
fn legacy_refused(case: &Case) {
    let o = run(case);
    let mut h = o.h;
    let sip_count: usize = o.expected_sip.values().sum();
    let series =
        r#"hepflow_auth_rejected_total{listener="udp",transport="udp",reason="legacy_version"}"#;
    let refused = h.wait_metric(series, sip_count as f64);
    let decoded = h.wait_metric(
        r#"hepflow_decoded_total{listener="udp",transport="udp"}"#,
        o.invites as f64,
    );
    h.wait_metric(r#"hepflow_sink_sent_total{sink="files"}"#, o.invites as f64);
    assert!(h.stop().success());
    assert_eq!(refused, sip_count as f64, "{series}");
    assert_eq!(decoded, o.invites as f64);
    let docs = h.documents();
    assert_eq!(docs.len(), o.invites, "{docs:?}");
    assert!(docs
        .iter()
        .all(|d| d["proto"] == "log" && d["hep_version"] == 3));
    let (kam, _) = versions();
    report(&format!(
        "sender=Kamailio {kam} siptrace version=HEPv{} transport=udp on a keyed listener without \
         allow_legacy_without_key: {sip_count} SIP messages refused (legacy_version), {} hlog LOG \
         (HEP3, keyed) accepted",
        case.hep_version, o.invites
    ));
}

const KEY: &str = "kamailio-interop-key";

#[test]
fn kamailio_hep3_udp_sip_ipv4() {
    accepted(&Case {
        hep_version: 3,
        hep_tcp: false,
        sip_v6: false,
        kamailio_key: None,
        listener_key: None,
        allow_legacy: false,
        capture_id: 2001,
    });
}

#[test]
fn kamailio_hep3_tcp_sip_ipv4_with_auth_key() {
    accepted(&Case {
        hep_version: 3,
        hep_tcp: true,
        sip_v6: false,
        kamailio_key: Some(KEY),
        listener_key: Some(KEY),
        allow_legacy: false,
        capture_id: 2002,
    });
}

#[test]
fn kamailio_hep3_udp_sip_ipv6_with_auth_key() {
    accepted(&Case {
        hep_version: 3,
        hep_tcp: false,
        sip_v6: true,
        kamailio_key: Some(KEY),
        listener_key: Some(KEY),
        allow_legacy: false,
        capture_id: 2003,
    });
}

#[test]
fn kamailio_hep3_tcp_sip_ipv6() {
    accepted(&Case {
        hep_version: 3,
        hep_tcp: true,
        sip_v6: true,
        kamailio_key: None,
        listener_key: None,
        allow_legacy: false,
        capture_id: 2004,
    });
}

#[test]
fn kamailio_hep2_udp_sip_ipv4_legacy_allowed_on_a_keyed_listener() {
    // v2 cannot carry the key: accepted only with allow_legacy_without_key;
    // the hlog LOG (HEP3) carries Kamailio's key and is checked.
    accepted(&Case {
        hep_version: 2,
        hep_tcp: false,
        sip_v6: false,
        kamailio_key: Some(KEY),
        listener_key: Some(KEY),
        allow_legacy: true,
        capture_id: 2005,
    });
}

#[test]
fn kamailio_hep2_udp_sip_ipv6() {
    accepted(&Case {
        hep_version: 2,
        hep_tcp: false,
        sip_v6: true,
        kamailio_key: None,
        listener_key: None,
        allow_legacy: false,
        capture_id: 2006,
    });
}

#[test]
fn kamailio_hep1_udp_sip_ipv4() {
    accepted(&Case {
        hep_version: 1,
        hep_tcp: false,
        sip_v6: false,
        kamailio_key: None,
        listener_key: None,
        allow_legacy: false,
        capture_id: 2007,
    });
}

#[test]
fn kamailio_hep1_udp_sip_ipv6() {
    accepted(&Case {
        hep_version: 1,
        hep_tcp: false,
        sip_v6: true,
        kamailio_key: None,
        listener_key: None,
        allow_legacy: false,
        capture_id: 2008,
    });
}

#[test]
fn kamailio_with_a_wrong_auth_key_is_refused_and_counted_udp() {
    refused(&Case {
        hep_version: 3,
        hep_tcp: false,
        sip_v6: false,
        kamailio_key: Some("kamailio-wrong-key"),
        listener_key: Some(KEY),
        allow_legacy: false,
        capture_id: 2009,
    });
}

#[test]
fn kamailio_with_a_wrong_auth_key_is_refused_and_counted_tcp() {
    refused(&Case {
        hep_version: 3,
        hep_tcp: true,
        sip_v6: true,
        kamailio_key: Some("kamailio-wrong-key"),
        listener_key: Some(KEY),
        allow_legacy: false,
        capture_id: 2010,
    });
}

#[test]
fn kamailio_hep1_on_a_keyed_listener_is_refused_as_legacy_but_its_hlog_accepted() {
    legacy_refused(&Case {
        hep_version: 1,
        hep_tcp: false,
        sip_v6: false,
        kamailio_key: Some(KEY),
        listener_key: Some(KEY),
        allow_legacy: false,
        capture_id: 2011,
    });
}
