//! Event documents of every message of the real HEP captures in
//! `tests/fixtures/hep/` (decoded with the SDK's codec): each is one line
//! of JSON using only the documented keys, SIP messages carry their SIP
//! fields, HEPv1 messages take their time from the receive time, and no
//! document holds the HEP auth key the senders put in (hep-js and the
//! Wireshark sample, whose key is `myHep`). Every document is also
//! compared byte for byte with what serde_json writes for the same
//! [`EventDocument`].

mod codec_common;

use bytes::Bytes;
use hepflow_sdk::document::{write_document, EventDocument, DOCUMENT_FIELDS};
use hepflow_sdk::hep::{decode, DecodeOptions};
use hepflow_sdk::{Event, ReceiveMeta, Transport};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

struct Doc {
    json: Value,
    auth_key: Option<Bytes>,
    line: Vec<u8>,
}

fn documents(name: &str) -> Vec<Doc> {
    let path = codec_common::fixture(name);
    let received_at = UNIX_EPOCH + Duration::from_micros(1_764_158_400_654_321);
    codec_common::udp_payloads_to(&path, codec_common::HEP_PORT)
        .into_iter()
        .map(|datagram| {
            let raw = Bytes::from(datagram);
            let msg = decode(raw.clone(), &DecodeOptions::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let auth_key = msg.auth_key.clone();
            let meta = ReceiveMeta {
                listener: "hep".into(),
                transport: Transport::Udp,
                peer: "127.0.0.1:40000".parse().unwrap(),
                received_at,
            };
            let ev = Event::new(msg, raw, meta);
            let mut line = Vec::new();
            write_document(&ev, &mut line);
            // The hand-written writer and the serde derive agree byte for byte.
            let via_serde = serde_json::to_vec(&EventDocument::new(&ev)).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&line),
                String::from_utf8_lossy(&via_serde),
                "{name}: write_document differs from serde_json"
            );
            let json = serde_json::from_slice(&line)
                .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line:?}"));
            Doc {
                json,
                auth_key,
                line,
            }
        })
        .collect()
}

fn check_common(name: &str, docs: &[Doc]) {
    let allowed: BTreeSet<&str> = DOCUMENT_FIELDS.iter().map(|(k, _)| *k).collect();
    for d in docs {
        assert!(!d.line.contains(&b'\n'), "{name}: multi-line document");
        for key in d.json.as_object().unwrap().keys() {
            assert!(
                allowed.contains(key.as_str()),
                "{name}: undocumented key {key}"
            );
        }
        if let Some(key) = d.auth_key.as_deref().filter(|k| !k.is_empty()) {
            assert!(
                !d.line.windows(key.len()).any(|w| w == key),
                "{name}: auth key in document"
            );
        }
        if d.json["proto"] == "sip" {
            assert!(d.json["call_id"].is_string(), "{name}: SIP without call_id");
            assert!(
                d.json["sip_method"].is_string() ^ d.json["sip_status"].is_u64(),
                "{name}: {}",
                d.json
            );
        } else {
            assert!(d.json.get("call_id").is_none());
        }
    }
}

#[test]
fn auth_keys_of_real_senders_are_not_in_documents() {
    let hepjs = documents("hepjs-hep3-udp.pcapng");
    check_common("hepjs", &hepjs);
    assert_eq!(hepjs.len(), 1);
    assert!(hepjs[0].auth_key.as_ref().is_some_and(|k| !k.is_empty()));
    assert!(hepjs[0].json["node_name"].is_string());
    assert!(hepjs[0].json["correlation_id"].is_string());

    let ws = documents("wireshark-sample-hep3.pcap");
    check_common("wireshark", &ws);
    assert_eq!(ws.len(), 8);
    for d in &ws {
        assert_eq!(d.auth_key.as_deref(), Some(&b"myHep"[..]));
        assert!(!d.line.windows(5).any(|w| w == b"myHep"));
        assert!(d.json["correlation_id"].is_string());
    }
    let protos: Vec<&str> = ws
        .iter()
        .map(|d| d.json["proto"].as_str().unwrap())
        .collect();
    assert_eq!(protos.iter().filter(|p| **p == "sip").count(), 6);
    assert_eq!(protos.iter().filter(|p| **p == "log").count(), 1);
    assert_eq!(protos.iter().filter(|p| **p == "rtcp").count(), 1);
}

#[test]
fn kamailio_call_documents_in_every_hep_version() {
    for (file, version) in [
        ("kamailio-hep3-udp.pcapng", 3),
        ("kamailio-hep2-udp.pcapng", 2),
        ("kamailio-hep1-udp.pcapng", 1),
    ] {
        let docs = documents(file);
        check_common(file, &docs);
        assert_eq!(docs.len(), 14, "{file}");
        let sip: Vec<&Value> = docs
            .iter()
            .map(|d| &d.json)
            .filter(|j| j["proto"] == "sip")
            .collect();
        assert_eq!(sip.len(), 13, "{file}");
        // One call: a single Call-ID, INVITE/ACK/BYE requests, 1xx/2xx.
        let ids: BTreeSet<&str> = sip.iter().map(|j| j["call_id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 1, "{file}: {ids:?}");
        let methods: BTreeSet<&str> = sip
            .iter()
            .filter_map(|j| j["sip_method"].as_str())
            .collect();
        assert_eq!(methods, BTreeSet::from(["ACK", "BYE", "INVITE"]), "{file}");
        for j in &sip {
            assert_eq!(j["hep_version"], version, "{file}");
            assert_eq!(j["from_user"], "sipp", "{file}");
            assert_eq!(j["to_user"], "service", "{file}");
            if version == 1 {
                // HEPv1 has no timestamp: the receive time stands in.
                assert_eq!(j["@timestamp"], "2025-11-26T12:00:00.654321Z");
            } else {
                assert_ne!(j["@timestamp"], j["received_at"]);
                assert!(j["@timestamp"].as_str().unwrap().ends_with('Z'));
            }
        }
        // hlog() always sends HEP3 with a correlation id.
        let log: Vec<&Value> = docs
            .iter()
            .map(|d| &d.json)
            .filter(|j| j["proto"] == "log")
            .collect();
        assert_eq!(log.len(), 1, "{file}");
        assert_eq!(log[0]["hep_version"], 3);
        assert!(log[0]["correlation_id"].is_string());
        assert!(log[0].get("sip_method").is_none());
    }
}
