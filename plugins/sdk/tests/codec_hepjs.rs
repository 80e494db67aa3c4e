//! Interop with hep-js, an independent HEP3 implementation (npm `hep-js`,
//! pinned in `tests/interop/hepjs/package-lock.json`), driven through
//! `tests/interop/hepjs/hepjs.js`:
//!
//! - hep-js `encapsulate()` -> our `decode`: every field equal (IPv4 and
//!   IPv6, node name, auth key, correlation id, capture id, timestamps,
//!   MOS, transaction type, a vendor chunk);
//! - our `encode_v3` -> hep-js `decapsulate()`: hep-js reads the same values.
//!
//! Needs Node.js. `node_modules` is installed with `npm ci` on first use; a
//! machine without `node`/`npm` FAILS these tests (it does not skip them):
//! install Node.js and run `npm ci --prefix tests/interop/hepjs`.

use bytes::{Bytes, BytesMut};
use hepflow_sdk::hep::{
    decode, encode_v3, DecodeOptions, HepMessage, HepVersion, RawChunk, AF_INET, AF_INET6,
};
use serde_json::{json, Value};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const INSTALL_HINT: &str =
    "install Node.js (with npm) and run `npm ci --prefix tests/interop/hepjs` from the repository root";

fn hepjs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/hepjs")
}

/// Make sure `node` runs and hep-js is installed (`npm ci` once per run).
fn ensure_installed() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        let node = Command::new("node").arg("--version").output();
        match node {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(format!(
                    "`node --version` failed ({}): {INSTALL_HINT}",
                    o.status
                ))
            }
            Err(e) => return Err(format!("`node` not found ({e}): {INSTALL_HINT}")),
        }
        let dir = hepjs_dir();
        if dir.join("node_modules/hep-js/package.json").is_file() {
            return Ok(());
        }
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("`npm` not found ({e}): {INSTALL_HINT}"))?;
        if !out.status.success() {
            return Err(format!(
                "`npm ci` in {} failed ({}): {}\n{INSTALL_HINT}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("hep-js interop cannot run: {e}");
    }
}

/// Run the node script; its stdout, trimmed.
fn hepjs(args: &[&str], stdin: &str) -> String {
    ensure_installed();
    let mut child = Command::new("node")
        .arg("hepjs.js")
        .args(args)
        .current_dir(hepjs_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node: {e}; {INSTALL_HINT}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("node output");
    assert!(
        out.status.success(),
        "hepjs.js {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// hep-js encapsulate() of `input` (see hepjs.js), decoded by us.
fn hepjs_encode(input: &Value) -> (Bytes, HepMessage) {
    let hex = hepjs(&["encode"], &input.to_string());
    let wire = Bytes::from(unhex(&hex));
    let msg = decode(wire.clone(), &DecodeOptions::default())
        .unwrap_or_else(|e| panic!("we cannot decode hep-js's {hex}: {e}"));
    (wire, msg)
}

/// Our encode_v3 of `msg`, decapsulated by hep-js.
fn hepjs_decode(msg: &HepMessage) -> Value {
    let mut out = BytesMut::new();
    encode_v3(msg, &mut out).expect("encode");
    let json = hepjs(&["decode", &hex(&out)], "");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("hep-js output {json}: {e}"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex from hep-js: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex from hep-js"))
        .collect()
}

const SIP: &str = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\nCall-ID: a84b4c76e66710@pc33.example.com\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n";

fn s(b: &Option<Bytes>) -> Option<&str> {
    b.as_deref()
        .map(|v| std::str::from_utf8(v).expect("utf8 field"))
}

#[test]
fn hepjs_encodes_ipv4_we_decode_every_field() {
    let (wire, m) = hepjs_encode(&json!({
        "payload": SIP,
        "rcinfo": {
            "protocolFamily": 2, "protocol": 17,
            "srcIp": "192.168.10.1", "dstIp": "10.20.30.40",
            "srcPort": 5060, "dstPort": 5080,
            "timeSeconds": 1_700_000_001u32, "timeUseconds": 999_999,
            "payloadType": 1, "captureId": 4_000_000_001u32,
            "hepNodeName": "edge-ams-1", "capturePass": "s3cret",
            "correlation_id": "a84b4c76e66710@pc33.example.com"
        },
        "vendorU32": 3_735_928_559u32
    }));
    assert_eq!(
        wire.len(),
        usize::from(u16::from_be_bytes([wire[4], wire[5]]))
    );
    assert_eq!(m.version, HepVersion::V3);
    assert_eq!((m.ip_family, m.ip_proto), (AF_INET, 17));
    assert_eq!(m.src_ip, IpAddr::V4(Ipv4Addr::new(192, 168, 10, 1)));
    assert_eq!(m.dst_ip, IpAddr::V4(Ipv4Addr::new(10, 20, 30, 40)));
    assert_eq!((m.src_port, m.dst_port), (5060, 5080));
    assert_eq!((m.ts_sec, m.ts_usec), (1_700_000_001, 999_999));
    assert_eq!(m.proto_type, 1);
    assert_eq!(m.capture_id, 4_000_000_001);
    assert_eq!(s(&m.node_name), Some("edge-ams-1"));
    assert_eq!(s(&m.auth_key), Some("s3cret"));
    assert_eq!(
        s(&m.correlation_id),
        Some("a84b4c76e66710@pc33.example.com")
    );
    assert_eq!(&m.payload[..], SIP.as_bytes());
    assert!(!m.payload_compressed);
    assert_eq!(
        m.extra_chunks,
        vec![RawChunk {
            vendor: 2,
            chunk_type: 0x99,
            value: Bytes::copy_from_slice(&3_735_928_559u32.to_be_bytes()),
        }]
    );
    assert_eq!(m.mos, None);
    assert_eq!(m.transaction_type, None);
}

#[test]
fn hepjs_encodes_ipv6_we_decode_every_field() {
    // hep-js carries IPv6 only through its vendor-extension API (see
    // hepjs.js); it still writes its IPv4 chunks (127.0.0.1 by default), so
    // this also checks that the family chunk (10) picks the IPv6 addresses.
    let (_, m) = hepjs_encode(&json!({
        "payload": SIP,
        "rcinfo": {
            "protocolFamily": 10, "protocol": 6,
            "srcPort": 5061, "dstPort": 35_000,
            "timeSeconds": 1_234_567_890u32, "timeUseconds": 1,
            "payloadType": 1, "captureId": 7,
            "hepNodeName": "v6-node", "capturePass": "k",
            "correlation_id": "cid-v6"
        },
        "ipv6": { "src": "2001:1234:5678::1", "dst": "2a00:7f:1::2" }
    }));
    assert_eq!((m.ip_family, m.ip_proto), (AF_INET6, 6));
    assert_eq!(m.src_ip, "2001:1234:5678::1".parse::<IpAddr>().expect("ip"));
    assert_eq!(m.dst_ip, "2a00:7f:1::2".parse::<IpAddr>().expect("ip"));
    assert_eq!((m.src_port, m.dst_port), (5061, 35_000));
    assert_eq!((m.ts_sec, m.ts_usec), (1_234_567_890, 1));
    assert_eq!(m.capture_id, 7);
    assert_eq!(s(&m.node_name), Some("v6-node"));
    assert_eq!(s(&m.auth_key), Some("k"));
    assert_eq!(s(&m.correlation_id), Some("cid-v6"));
    assert_eq!(&m.payload[..], SIP.as_bytes());
    assert!(m.extra_chunks.is_empty());
}

#[test]
fn hepjs_encodes_mos_and_transaction_type_we_decode() {
    // hep-js adds the MOS chunk (0x20) for rcinfo.proto_type 32/35, and the
    // transaction type chunk (0x24) when rcinfo.transaction_type is set.
    let (_, m) = hepjs_encode(&json!({
        "payload": "{\"mos\":4.1}",
        "rcinfo": {
            "protocolFamily": 2, "protocol": 17, "srcIp": "1.2.3.4", "dstIp": "5.6.7.8",
            "srcPort": 1, "dstPort": 2, "timeSeconds": 10, "timeUseconds": 20,
            "payloadType": 35, "proto_type": 35, "captureId": 99,
            "correlation_id": "call-1", "mos": 410
        }
    }));
    assert_eq!(m.proto_type, 35);
    assert_eq!(m.mos, Some(410));
    assert_eq!(s(&m.correlation_id), Some("call-1"));
    // Without hepNodeName hep-js falls back to the capture id as text.
    assert_eq!(s(&m.node_name), Some("99"));
    assert_eq!(m.auth_key, None);

    let (_, m) = hepjs_encode(&json!({
        "payload": "{}",
        "rcinfo": {
            "protocolFamily": 2, "protocol": 17, "srcIp": "1.2.3.4", "dstIp": "5.6.7.8",
            "payloadType": 100, "captureId": 1,
            "correlation_id": "call-2", "transaction_type": "call"
        }
    }));
    assert_eq!(s(&m.transaction_type), Some("call"));
    assert_eq!(s(&m.correlation_id), Some("call-2"));
}

fn full_message_v4() -> HepMessage {
    let mut m = HepMessage::new_v3(Bytes::from_static(SIP.as_bytes()));
    m.ip_family = AF_INET;
    m.ip_proto = 17;
    m.src_ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5));
    m.dst_ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 77));
    m.src_port = 5060;
    m.dst_port = 65_000;
    m.ts_sec = 1_795_691_342;
    m.ts_usec = 791_533;
    m.proto_type = 1;
    m.capture_id = 2001;
    m.node_name = Some(Bytes::from_static(b"hepflow-node"));
    m.auth_key = Some(Bytes::from_static(b"myHep"));
    m.correlation_id = Some(Bytes::from_static(b"a84b4c76e66710@pc33.example.com"));
    m.mos = Some(437);
    m.extra_chunks.push(RawChunk {
        vendor: 2,
        chunk_type: 0x99,
        value: Bytes::copy_from_slice(&123_456_789u32.to_be_bytes()),
    });
    m
}

#[test]
fn we_encode_ipv4_hepjs_decodes_every_field() {
    let v = hepjs_decode(&full_message_v4());
    let rc = &v["rcinfo"];
    assert_eq!(rc["protocolFamily"], 2, "{v}");
    assert_eq!(rc["protocol"], 17);
    assert_eq!(rc["srcIp"], "203.0.113.5");
    assert_eq!(rc["dstIp"], "198.51.100.77");
    assert_eq!(rc["srcPort"], 5060);
    assert_eq!(rc["dstPort"], 65_000);
    assert_eq!(rc["timeSeconds"], 1_795_691_342u32);
    assert_eq!(rc["timeUseconds"], 791_533);
    assert_eq!(rc["payloadType"], 1);
    assert_eq!(rc["captureId"], 2001);
    assert_eq!(rc["hepNodeName"], "hepflow-node");
    assert_eq!(rc["capturePass"], "myHep");
    assert_eq!(rc["correlation_id"], "a84b4c76e66710@pc33.example.com");
    assert_eq!(rc["mos"], 437);
    assert_eq!(rc["vendorU32"], 123_456_789);
    assert_eq!(v["payload"], SIP);
}

#[test]
fn we_encode_ipv6_hepjs_decodes_every_field() {
    let mut m = full_message_v4();
    m.ip_family = AF_INET6;
    m.ip_proto = 6;
    m.src_ip = IpAddr::V6("2001:1234:5678::1".parse::<Ipv6Addr>().expect("ip"));
    m.dst_ip = IpAddr::V6("2a00:7f:1::2".parse::<Ipv6Addr>().expect("ip"));
    m.capture_id = u32::MAX;
    m.extra_chunks.clear();
    let v = hepjs_decode(&m);
    let rc = &v["rcinfo"];
    assert_eq!(rc["protocolFamily"], 10, "{v}");
    assert_eq!(rc["protocol"], 6);
    let ip = |k: &str| -> IpAddr {
        rc[k]
            .as_str()
            .unwrap_or_else(|| panic!("hep-js gave no {k}: {v}"))
            .parse()
            .expect("ipv6 text")
    };
    assert_eq!(ip("srcIp6"), m.src_ip);
    assert_eq!(ip("dstIp6"), m.dst_ip);
    // We send no IPv4 chunks for an IPv6 message.
    assert!(
        rc.get("srcIp").is_none() && rc.get("dstIp").is_none(),
        "{v}"
    );
    assert_eq!(rc["captureId"], u64::from(u32::MAX));
    assert_eq!(rc["hepNodeName"], "hepflow-node");
    assert_eq!(rc["capturePass"], "myHep");
    assert_eq!(rc["correlation_id"], "a84b4c76e66710@pc33.example.com");
    assert_eq!(rc["timeSeconds"], 1_795_691_342u32);
    assert_eq!(rc["timeUseconds"], 791_533);
    assert_eq!(v["payload"], SIP);
}

#[test]
fn converted_v1_message_reads_in_hepjs() {
    // A HEPv1 datagram (Kamailio layout) re-encoded as v3 for hep-js.
    let mut v1 = vec![
        1u8, 16, 2, 17, 0x13, 0xd8, 0x13, 0xc4, 127, 0, 0, 1, 127, 0, 0, 2,
    ];
    v1.extend_from_slice(SIP.as_bytes());
    let m = decode(Bytes::from(v1), &DecodeOptions::default()).expect("v1");
    let v = hepjs_decode(&m);
    let rc = &v["rcinfo"];
    assert_eq!(rc["srcIp"], "127.0.0.1");
    assert_eq!(rc["dstIp"], "127.0.0.2");
    assert_eq!(
        (rc["srcPort"].clone(), rc["dstPort"].clone()),
        (json!(5080), json!(5060))
    );
    assert_eq!(rc["payloadType"], 1);
    assert_eq!(rc["timeSeconds"], 0);
    assert_eq!(v["payload"], SIP);
}
