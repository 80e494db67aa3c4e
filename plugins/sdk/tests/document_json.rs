//! The event document: exact JSON of hand-built events, the base64 payload
//! path, timestamp formatting, the field list, and that the HEP auth key
//! never appears.

use bytes::Bytes;
use hepflow_sdk::document::{
    rfc3339_micros, write_document, EventDocument, FieldKind, DOCUMENT_FIELDS,
};
use hepflow_sdk::hep::{HepMessage, HepVersion, AF_INET6};
use hepflow_sdk::{Event, ReceiveMeta, Transport};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const INVITE: &str = "INVITE sip:bob@biloxi.example.com:5060;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
To: <sip:bob@biloxi.example.com>\r\n\
Call-ID: a84b4c76e66710@pc33\r\n\
CSeq: 314159 INVITE\r\n\
User-Agent: \"quoted\" UA\\1.0\r\n\
Content-Length: 0\r\n\r\n";

const AUTH_KEY: &[u8] = b"s3cr3t-HEP-p4ssw0rd";

fn meta(received_at: SystemTime) -> ReceiveMeta {
    ReceiveMeta {
        listener: "hep-udp".into(),
        transport: Transport::Udp,
        peer: "192.0.2.10:40000".parse().unwrap(),
        received_at,
    }
}

fn at(secs: u64, micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros)
}

/// A v3 SIP message carrying every chunk the document knows, an auth key,
/// and a raw buffer that holds the auth key too.
fn full_event() -> Event {
    let mut m = HepMessage::new_v3(Bytes::from_static(INVITE.as_bytes()));
    m.src_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    m.dst_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    m.src_port = 5060;
    m.dst_port = 5080;
    m.ts_sec = 1_714_564_800; // 2024-05-01T12:00:00Z
    m.ts_usec = 123_456;
    m.capture_id = 2001;
    m.keep_alive = Some(30);
    m.auth_key = Some(Bytes::from_static(AUTH_KEY));
    m.correlation_id = Some(Bytes::from_static(b"corr-1"));
    m.vlan_id = Some(42);
    m.node_name = Some(Bytes::from_static(b"edge-\xffnode"));
    m.mos = Some(436);
    m.r_factor = Some(93);
    m.geo_location = Some(Bytes::from_static(b"52.52,13.40"));
    m.jitter = Some(17);
    m.transaction_type = Some(Bytes::from_static(b"call"));
    m.tag_values = Some(Bytes::from_static(b"a=1;b=2"));
    m.event_type = Some(1);
    m.group_id = Some(Bytes::from_static(b"g1"));
    // Chunks the document leaves out.
    m.src_mac = Some(0x0011_2233_4455);
    m.tcp_flags = Some(0x18);
    let mut raw = b"HEP3...".to_vec();
    raw.extend_from_slice(AUTH_KEY);
    raw.extend_from_slice(INVITE.as_bytes());
    Event::new(m, Bytes::from(raw), meta(at(1_714_564_801, 5)))
}

fn doc(ev: &Event) -> (Vec<u8>, Value) {
    let mut out = Vec::new();
    write_document(ev, &mut out);
    let v: Value = serde_json::from_slice(&out).expect("document is JSON");
    // The hand-written writer writes exactly what the serde derive does.
    let via_serde = serde_json::to_vec(&EventDocument::new(ev)).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&via_serde)
    );
    (out, v)
}

#[test]
fn full_sip_request_document_is_exact() {
    let (out, v) = doc(&full_event());
    let want = json!({
        "@timestamp": "2024-05-01T12:00:00.123456Z",
        "hep_version": 3,
        "proto_type": 1,
        "proto": "sip",
        "ip_family": "ipv4",
        "ip_proto": 17,
        "src_ip": "10.0.0.1",
        "src_port": 5060,
        "dst_ip": "10.0.0.2",
        "dst_port": 5080,
        "capture_id": 2001,
        "node_name": "edge-\u{FFFD}node",
        "correlation_id": "corr-1",
        "vlan_id": 42,
        "mos": 436,
        "r_factor": 93,
        "jitter": 17,
        "geo_location": "52.52,13.40",
        "transaction_type": "call",
        "tag_values": "a=1;b=2",
        "group_id": "g1",
        "event_type": 1,
        "keep_alive": 30,
        "listener": "hep-udp",
        "transport": "udp",
        "received_at": "2024-05-01T12:00:01.000005Z",
        "sip_method": "INVITE",
        "ruri_user": "bob",
        "ruri_domain": "biloxi.example.com",
        "call_id": "a84b4c76e66710@pc33",
        "cseq_num": 314159,
        "cseq_method": "INVITE",
        "from_user": "alice",
        "from_tag": "1928301774",
        "to_user": "bob",
        "user_agent": "\"quoted\" UA\\1.0",
        "payload": INVITE,
    });
    assert_eq!(v, want);
    // Compact: one line, no newline, no spaces between tokens.
    assert!(!out.contains(&b'\n'));
    assert!(out.starts_with(b"{\"@timestamp\":\"2024-05-01T12:00:00.123456Z\",\"hep_version\":3,"));
}

#[test]
fn minimal_response_document_omits_absent_values() {
    let payload =
        "SIP/2.0 404 Not Found\r\nCall-ID: c2\r\nCSeq: 7 BYE\r\nTo: <sip:x@y>;tag=tt\r\n\r\n";
    let mut m = HepMessage::new_v3(Bytes::from_static(payload.as_bytes()));
    m.version = HepVersion::V2;
    m.ip_family = AF_INET6;
    m.ip_proto = 6;
    m.src_ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    m.dst_ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
    m.ts_sec = 1_700_000_000;
    m.ts_usec = 0;
    let mut md = meta(at(1_700_000_000, 1));
    md.transport = Transport::Tcp;
    let (_, v) = doc(&Event::new(m, Bytes::new(), md));
    assert_eq!(
        v,
        json!({
            "@timestamp": "2023-11-14T22:13:20.000000Z",
            "hep_version": 2,
            "proto_type": 1,
            "proto": "sip",
            "ip_family": "ipv6",
            "ip_proto": 6,
            "src_ip": "2001:db8::1",
            "src_port": 0,
            "dst_ip": "::1",
            "dst_port": 0,
            "capture_id": 0,
            "listener": "hep-udp",
            "transport": "tcp",
            "received_at": "2023-11-14T22:13:20.000001Z",
            "sip_status": 404,
            "sip_reason": "Not Found",
            "call_id": "c2",
            "cseq_num": 7,
            "cseq_method": "BYE",
            "to_user": "x",
            "to_tag": "tt",
            "payload": payload,
        })
    );
}

#[test]
fn binary_payload_is_base64_and_unknown_proto_is_a_number_string() {
    let bytes: &[u8] = b"\x80\x00\xff\xfe RTP-ish \x01";
    let mut m = HepMessage::new_v3(Bytes::from_static(bytes));
    m.proto_type = 77; // not in the table
    m.ts_sec = 1;
    let (_, v) = doc(&Event::new(m, Bytes::new(), meta(at(2, 0))));
    assert_eq!(v["proto_type"], 77);
    assert_eq!(v["proto"], "77");
    assert_eq!(v["payload_base64"], true);
    use base64::Engine as _;
    let want = base64::engine::general_purpose::STANDARD.encode(bytes);
    assert_eq!(v["payload"], want.as_str());
    assert_eq!(v["payload"], "gAD//iBSVFAtaXNoIAE=");
    // Not SIP: no SIP keys at all.
    assert!(v.get("sip_method").is_none() && v.get("call_id").is_none());
}

#[test]
fn sip_payload_of_a_non_sip_proto_type_has_no_sip_fields() {
    let mut m = HepMessage::new_v3(Bytes::from_static(INVITE.as_bytes()));
    m.proto_type = 100; // LOG
    m.ts_sec = 1;
    let (_, v) = doc(&Event::new(m, Bytes::new(), meta(at(2, 0))));
    assert_eq!(v["proto"], "log");
    assert!(v.get("sip_method").is_none());
    assert!(v.get("payload_base64").is_none());
}

#[test]
fn timestamp_format() {
    let stamp = |secs: u32, usecs: u32, recv: SystemTime| {
        let mut m = HepMessage::new_v3(Bytes::from_static(b"x"));
        m.ts_sec = secs;
        m.ts_usec = usecs;
        let (_, v) = doc(&Event::new(m, Bytes::new(), meta(recv)));
        v["@timestamp"].as_str().unwrap().to_string()
    };
    let recv = at(1_714_564_800, 999_999);
    assert_eq!(stamp(1_714_564_800, 7, recv), "2024-05-01T12:00:00.000007Z");
    // HEPv1 carries no time: the receive time is used.
    assert_eq!(stamp(0, 0, recv), "2024-05-01T12:00:00.999999Z");
    // A microsecond value past one second carries into the seconds.
    assert_eq!(
        stamp(1_714_564_800, 2_000_001, recv),
        "2024-05-01T12:00:02.000001Z"
    );
    // Leap day and end of the u32 range.
    assert_eq!(
        stamp(1_709_164_799, 500_000, recv),
        "2024-02-28T23:59:59.500000Z"
    );
    assert_eq!(stamp(1_709_164_800, 0, recv), "2024-02-29T00:00:00.000000Z");
    assert_eq!(
        stamp(u32::MAX, 999_999, recv),
        "2106-02-07T06:28:15.999999Z"
    );
    assert_eq!(stamp(1, 0, recv), "1970-01-01T00:00:01.000000Z");

    assert_eq!(
        rfc3339_micros(at(86_400 * 365, 10)),
        "1971-01-01T00:00:00.000010Z"
    );
    assert_eq!(
        rfc3339_micros(UNIX_EPOCH - Duration::from_secs(5)),
        "1970-01-01T00:00:00.000000Z"
    );
    // Nanoseconds are truncated to microseconds.
    assert_eq!(
        rfc3339_micros(UNIX_EPOCH + Duration::from_nanos(1_999)),
        "1970-01-01T00:00:00.000001Z"
    );
}

#[test]
fn auth_key_never_appears() {
    let ev = full_event();
    let (out, v) = doc(&ev);
    assert!(
        !out.windows(AUTH_KEY.len()).any(|w| w == AUTH_KEY),
        "auth key leaked: {}",
        String::from_utf8_lossy(&out)
    );
    for key in ["auth_key", "auth", "capture_pass", "password"] {
        assert!(v.get(key).is_none());
    }
    // Also when the payload is binary (base64 path) and the key is
    // everything else the message has.
    let mut m = HepMessage::new_v3(Bytes::from_static(b"\xff\xfe"));
    m.auth_key = Some(Bytes::from_static(b"myHep"));
    let (out, _) = doc(&Event::new(m, Bytes::from_static(b"myHep"), meta(at(5, 0))));
    assert!(!out.windows(5).any(|w| w == b"myHep"));
}

#[test]
fn document_fields_list_every_key_written() {
    // The full request and a binary response together produce every key.
    let mut keys = BTreeSet::new();
    let (_, v) = doc(&full_event());
    keys.extend(v.as_object().unwrap().keys().cloned());
    let mut m = HepMessage::new_v3(Bytes::from_static(
        b"SIP/2.0 200 OK\r\nTo: <sip:a@b>;tag=x\r\n\r\n\xff",
    ));
    m.ts_sec = 1;
    let (_, v) = doc(&Event::new(m, Bytes::new(), meta(at(2, 0))));
    keys.extend(v.as_object().unwrap().keys().cloned());

    let listed: BTreeSet<String> = DOCUMENT_FIELDS.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(listed.len(), DOCUMENT_FIELDS.len(), "duplicate field");
    assert_eq!(keys, listed);

    // Each listed kind matches the JSON type written.
    let (_, full) = doc(&full_event());
    for (name, kind) in DOCUMENT_FIELDS {
        let Some(val) = full.get(*name).or_else(|| v.get(*name)) else {
            continue;
        };
        let ok = match kind {
            FieldKind::Long => val.is_u64(),
            FieldKind::Boolean => val.is_boolean(),
            FieldKind::Date => val
                .as_str()
                .is_some_and(|s| s.len() == 27 && s.ends_with('Z')),
            FieldKind::Ip => val.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
            FieldKind::Keyword | FieldKind::Text => val.is_string(),
        };
        assert!(ok, "{name}: {val} is not a {kind:?}");
    }
    assert_eq!(FieldKind::Ip.es_type(), "ip");
}

#[test]
fn appends_without_clearing_and_without_newline() {
    let ev = full_event();
    let mut out = b"prefix\n".to_vec();
    write_document(&ev, &mut out);
    assert!(out.starts_with(b"prefix\n{"));
    assert!(out.ends_with(b"}"));
    serde_json::from_slice::<Value>(&out[7..]).unwrap();
}
