//! Interop with hep-js (npm `hep-js` 1.0.22, an independent HEP3
//! implementation) as a live sender: `tests/interop/hepjs/send.js` encodes
//! messages with hep-js `encapsulate()`, using every field it supports, and
//! sends them to a real hepflow over UDP and over TCP. Each document must
//! carry the values hep-js was given: addresses (IPv4; IPv6 through hep-js's
//! vendor-extension API), ports, IP protocol, timestamp, protocol type,
//! capture id, node name, correlation id, MOS, transaction type, auth key
//! (checked, never stored); a vendor chunk rides along. Two hep-js quirks
//! are pinned as documented in docs/interop.md: the node name chunk
//! defaults to the capture id as text, and a payload with non-ASCII text is
//! cut short. Messages with a wrong or missing key are refused and counted.
//!
//! Needs `HEPFLOW_TEST_HEPJS_DIR` (tests/services/services.sh installs
//! hep-js with `npm ci`; `bash tests/run.sh` sets it) and Node.js.
#![cfg(live_services)]

mod common;
#[path = "interop/support.rs"]
mod support;

use common::{metric, Hepflow};
use serde_json::{json, Value};
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use support::{doc_key, report, require_env};

const KEY: &str = "hepjs-interop-key";

fn hepjs_version(dir: &str) -> String {
    let p = std::path::Path::new(dir).join("node_modules/hep-js/package.json");
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap();
    format!("hep-js {}", v["version"].as_str().unwrap_or("?"))
}

/// Send `messages` with hep-js to `to` over `transport`; hep-js's own
/// account of what it sent.
fn send(dir: &str, transport: &str, to: SocketAddr, messages: &[Value]) -> Value {
    let input = json!({
        "transport": transport,
        "host": to.ip().to_string(),
        "port": to.port(),
        "messages": messages,
    });
    let mut child = Command::new("node")
        .arg("send.js")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `node` ({e}): install Node.js, or run `bash tests/run.sh`")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "send.js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("send.js prints JSON")
}

const NON_ASCII_SIP: &str = "MESSAGE sip:zoe@example.org SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK-u\r\nFrom: \"Zoë\" <sip:zoe@example.org>;tag=u1\r\nTo: <sip:zoe@example.org>\r\nCall-ID: hepjs-utf8@10.1.2.3\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";

fn invite(call_id: &str) -> String {
    format!(
        "INVITE sip:bob@10.3.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK-1\r\n\
         From: <sip:alice@10.1.2.3>;tag=a1\r\nTo: <sip:bob@10.3.2.1>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nUser-Agent: hep-js interop\r\nContent-Length: 0\r\n\r\n"
    )
}

fn messages(t: &str) -> Vec<Value> {
    vec![
        // SIP with every core chunk, node name, auth key, correlation id and
        // a vendor chunk.
        json!({
            "payload": invite(&format!("hepjs-{t}-call@10.1.2.3")),
            "rcinfo": {
                "protocolFamily": 2, "protocol": 17,
                "srcIp": "10.1.2.3", "dstIp": "10.3.2.1",
                "srcPort": 5060, "dstPort": 5080,
                "timeSeconds": 1700000000, "timeUseconds": 123456,
                "payloadType": 1, "captureId": 2001,
                "hepNodeName": "hepjs-node", "capturePass": KEY,
                "correlation_id": format!("hepjs-{t}-sip")
            },
            "vendorU32": 7
        }),
        // A MOS report (hep-js adds chunk 0x20 for rcinfo.proto_type 32/35);
        // no node name: hep-js sends the capture id as text instead.
        json!({
            "payload": "{\"mos\":4.1}",
            "rcinfo": {
                "protocolFamily": 2, "protocol": 17,
                "srcIp": "10.1.2.3", "dstIp": "10.3.2.1",
                "srcPort": 7078, "dstPort": 7079,
                "timeSeconds": 1700000001, "timeUseconds": 1,
                "payloadType": 35, "proto_type": 35, "mos": 410, "captureId": 2002,
                "capturePass": KEY, "correlation_id": format!("hepjs-{t}-mos")
            }
        }),
        // A LOG with a transaction type (chunk 0x24).
        json!({
            "payload": "hep-js interop log line",
            "rcinfo": {
                "protocolFamily": 2, "protocol": 17,
                "srcIp": "10.1.2.3", "dstIp": "10.3.2.1",
                "srcPort": 5060, "dstPort": 9060,
                "timeSeconds": 1700000002, "timeUseconds": 999999,
                "payloadType": 100, "captureId": 2003, "hepNodeName": "hepjs-node",
                "capturePass": KEY, "correlation_id": format!("hepjs-{t}-log"),
                "transaction_type": "call"
            }
        }),
        // IPv6 addresses (through hep-js's vendor-extension API), TCP.
        json!({
            "payload": invite(&format!("hepjs-{t}-v6@[1:2:3:4:5:6:7:8]")),
            "rcinfo": {
                "protocolFamily": 10, "protocol": 6,
                "srcPort": 5061, "dstPort": 5062,
                "timeSeconds": 1700000003, "timeUseconds": 0,
                "payloadType": 1, "captureId": 2004, "hepNodeName": "hepjs-node",
                "capturePass": KEY, "correlation_id": format!("hepjs-{t}-v6")
            },
            "ipv6": {"src": "1:2:3:4:5:6:7:8", "dst": "10:20:30:40:50:60:70:7f"}
        }),
        // Non-ASCII payload: hep-js sizes the chunk by UTF-16 length.
        json!({
            "payload": NON_ASCII_SIP,
            "rcinfo": {
                "protocolFamily": 2, "protocol": 17,
                "srcIp": "10.1.2.3", "dstIp": "10.3.2.1",
                "srcPort": 5060, "dstPort": 5060,
                "timeSeconds": 1700000004, "timeUseconds": 4,
                "payloadType": 1, "captureId": 2005, "hepNodeName": "hepjs-node",
                "capturePass": KEY, "correlation_id": format!("hepjs-{t}-utf8")
            }
        }),
        // Wrong key, then no key: refused and counted.
        json!({
            "payload": invite("hepjs-refused-1"),
            "rcinfo": {
                "protocolFamily": 2, "protocol": 17, "srcIp": "10.1.2.3", "dstIp": "10.3.2.1",
                "srcPort": 5060, "dstPort": 5080, "timeSeconds": 1700000005, "timeUseconds": 0,
                "payloadType": 1, "captureId": 2001, "capturePass": "hepjs-wrong-key"
            }
        }),
        json!({
            "payload": invite("hepjs-refused-2"),
            "rcinfo": {
                "protocolFamily": 2, "protocol": 17, "srcIp": "10.1.2.3", "dstIp": "10.3.2.1",
                "srcPort": 5060, "dstPort": 5080, "timeSeconds": 1700000006, "timeUseconds": 0,
                "payloadType": 1, "captureId": 2001
            }
        }),
    ]
}

/// The document whose correlation id is `id`.
fn by_corr<'a>(docs: &'a [Value], id: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["correlation_id"] == id).collect();
    assert_eq!(
        found.len(),
        1,
        "documents with correlation id {id}: {docs:?}"
    );
    found[0]
}

#[test]
fn hepjs_messages_with_every_field_arrive_with_those_values_over_udp_and_tcp() {
    let dir = require_env("HEPFLOW_TEST_HEPJS_DIR");
    let version = hepjs_version(&dir);
    let mut h = Hepflow::start(&format!("auth_key = \"{KEY}\""), "");
    let mut sent = Vec::new();
    for (t, to) in [("udp", h.udp), ("tcp", h.tcp)] {
        let r = send(&dir, t, to, &messages(t));
        assert_eq!(r["sent"], 7, "{r}");
        sent.push(r);
    }
    for t in ["udp", "tcp"] {
        h.wait_metric(
            &format!(r#"hepflow_decoded_total{{listener="{t}",transport="{t}"}}"#),
            5.0,
        );
        h.wait_metric(
            &format!(
                r#"hepflow_auth_rejected_total{{listener="{t}",transport="{t}",reason="missing_key"}}"#
            ),
            1.0,
        );
    }
    h.wait_metric(r#"hepflow_sink_sent_total{sink="files"}"#, 10.0);
    let m = h.metrics();
    assert!(h.stop().success());
    for t in ["udp", "tcp"] {
        let l = format!(r#"listener="{t}",transport="{t}""#);
        assert_eq!(metric(&m, &format!("hepflow_decoded_total{{{l}}}")), 5.0);
        for (reason, n) in [
            ("bad_key", 1.0),
            ("missing_key", 1.0),
            ("legacy_version", 0.0),
        ] {
            assert_eq!(
                metric(
                    &m,
                    &format!(r#"hepflow_auth_rejected_total{{{l},reason="{reason}"}}"#)
                ),
                n,
                "{t} {reason}"
            );
        }
    }
    let docs = h.documents();
    assert_eq!(docs.len(), 10, "{docs:?}");
    for t in ["udp", "tcp"] {
        let d = by_corr(&docs, &format!("hepjs-{t}-sip"));
        assert_eq!(d["transport"], t);
        assert_eq!(d["hep_version"], 3);
        assert_eq!(d["ip_family"], "ipv4");
        assert_eq!(d["ip_proto"], 17);
        assert_eq!(d["src_ip"], "10.1.2.3");
        assert_eq!(d["dst_ip"], "10.3.2.1");
        assert_eq!(d["src_port"], 5060);
        assert_eq!(d["dst_port"], 5080);
        assert_eq!(d["@timestamp"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(d["proto_type"], 1);
        assert_eq!(d["proto"], "sip");
        assert_eq!(d["capture_id"], 2001);
        assert_eq!(d["node_name"], "hepjs-node");
        assert_eq!(d["payload"], invite(&format!("hepjs-{t}-call@10.1.2.3")));
        assert_eq!(d["user_agent"], "hep-js interop");
        let k = doc_key(d);
        assert_eq!(
            (k.start.as_str(), k.cseq_method.as_str()),
            ("INVITE", "INVITE")
        );

        let d = by_corr(&docs, &format!("hepjs-{t}-mos"));
        assert_eq!(d["proto_type"], 35);
        assert_eq!(d["mos"], 410);
        assert_eq!(d["capture_id"], 2002);
        assert_eq!(
            d["node_name"], "2002",
            "hep-js falls back to the capture id"
        );
        assert_eq!(d["payload"], "{\"mos\":4.1}");
        assert_eq!(d["src_port"], 7078);
        assert_eq!(d["@timestamp"], "2023-11-14T22:13:21.000001Z");

        let d = by_corr(&docs, &format!("hepjs-{t}-log"));
        assert_eq!(d["proto_type"], 100);
        assert_eq!(d["proto"], "log");
        assert_eq!(d["transaction_type"], "call");
        assert_eq!(d["payload"], "hep-js interop log line");
        assert_eq!(d["@timestamp"], "2023-11-14T22:13:22.999999Z");

        let d = by_corr(&docs, &format!("hepjs-{t}-v6"));
        assert_eq!(d["ip_family"], "ipv6");
        assert_eq!(d["ip_proto"], 6);
        assert_eq!(d["src_ip"], "1:2:3:4:5:6:7:8");
        assert_eq!(d["dst_ip"], "10:20:30:40:50:60:70:7f");
        assert_eq!(d["src_port"], 5061);
        assert_eq!(d["dst_port"], 5062);
        assert_eq!(d["capture_id"], 2004);
        assert_eq!(d["call_id"], format!("hepjs-{t}-v6@[1:2:3:4:5:6:7:8]"));

        // hep-js allocates the payload chunk by the string's UTF-16 length
        // (one unit for "ë", two UTF-8 bytes): the last byte is cut off.
        let d = by_corr(&docs, &format!("hepjs-{t}-utf8"));
        let full = NON_ASCII_SIP.as_bytes();
        let utf16_len = NON_ASCII_SIP.encode_utf16().count();
        assert_eq!(utf16_len, full.len() - 1);
        assert_eq!(
            d["payload"].as_str().unwrap().as_bytes(),
            &full[..utf16_len]
        );
        assert_eq!(d["call_id"], "hepjs-utf8@10.1.2.3");
    }
    let all: String = docs.iter().map(|d| d.to_string()).collect();
    assert!(!all.contains(KEY) && !all.contains("hepjs-wrong-key"));
    let log = h.log_text();
    assert!(!log.contains(KEY) && !log.contains("hepjs-wrong-key"));
    assert!(!m.contains(KEY) && !m.contains("hepjs-wrong-key"));
    for (t, r) in ["udp", "tcp"].iter().zip(&sent) {
        report(&format!(
            "sender={version} (node {}) version=HEPv3 transport={t}: 7 messages sent ({} bytes), \
             5 documents with every field hep-js was given (IPv4/IPv6, ports, time, types 1/35/100, \
             capture id, node name, correlation id, MOS, transaction type), 1 bad_key + 1 missing_key refused",
            node_version(),
            r["bytes"]
                .as_array()
                .map(|a| a.iter().map(|b| b.as_u64().unwrap()).sum::<u64>())
                .unwrap_or(0)
        ));
    }
}

fn node_version() -> String {
    Command::new("node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}
