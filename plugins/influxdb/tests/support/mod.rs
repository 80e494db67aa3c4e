//! Test helpers of the influxdb crate: a line protocol reader written from
//! InfluxDB 1.x's parsing rules (a backslash and the character after it
//! are one unit while scanning; only `\,` `\=` `\ ` are unescaped in tag
//! keys, tag values and field keys, only `\,` `\ ` in measurements, only
//! `\"` `\\` in string fields), and corpus loading into `Event`s.
#![allow(dead_code)]

#[path = "../../../sdk/tests/codec_common/mod.rs"]
mod codec_common;

use bytes::Bytes;
use hepflow_sdk::{Event, ReceiveMeta, Transport};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A parsed field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
}

impl Value {
    pub fn as_f64(&self) -> f64 {
        match self {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            _ => panic!("not a number: {self:?}"),
        }
    }
}

/// A parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: BTreeMap<String, Value>,
    pub ts: Option<i64>,
}

impl Line {
    pub fn tag(&self, k: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Split `s` at unescaped `sep`s (a backslash and the character after it
/// are one unit, as in InfluxDB's scanner).
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
            continue;
        }
        if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

fn unescape(s: &str, specials: &[char]) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&n) = chars.peek() {
                if specials.contains(&n) {
                    out.push(n);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// Split the field section into `key=value` items and the rest after the
/// first space outside a string value (InfluxDB's scanFields: quotes only
/// count inside a value, after the field's `=`).
fn scan_fields(s: &str) -> (Vec<(String, String)>, Option<String>) {
    let mut items = Vec::new();
    let (mut key, mut val) = (String::new(), String::new());
    let (mut in_value, mut quoted) = (false, false);
    let mut chars = s.chars();
    let mut rest = None;
    while let Some(c) = chars.next() {
        let cur = if in_value { &mut val } else { &mut key };
        if c == '\\' {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
            continue;
        }
        match c {
            '=' if !in_value => in_value = true,
            '"' if in_value => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => {
                items.push((std::mem::take(&mut key), std::mem::take(&mut val)));
                in_value = false;
            }
            ' ' if !quoted => {
                rest = Some(chars.collect());
                break;
            }
            c => cur.push(c),
        }
    }
    items.push((key, val));
    (items, rest)
}

/// Parse one line; panics with the line on a syntax error.
pub fn parse_line(line: &str) -> Line {
    let sections = split_unescaped(line, ' ');
    assert!(sections.len() >= 2, "no field section in {line:?}");
    let key_section = &sections[0];
    let after_key = &line[key_section.len() + 1..];
    let key = split_unescaped(key_section, ',');
    let measurement = unescape(&key[0], &[',', ' ']);
    let mut tags = Vec::new();
    for t in &key[1..] {
        let kv = split_unescaped(t, '=');
        assert_eq!(kv.len(), 2, "bad tag {t:?} in {line:?}");
        assert!(
            !kv[0].is_empty() && !kv[1].is_empty(),
            "empty tag in {line:?}"
        );
        tags.push((
            unescape(&kv[0], &[',', '=', ' ']),
            unescape(&kv[1], &[',', '=', ' ']),
        ));
    }
    let keys: Vec<&String> = tags.iter().map(|(k, _)| k).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "tags not sorted in {line:?}");
    let (items, rest) = scan_fields(after_key);
    let mut fields = BTreeMap::new();
    for (k, v) in items {
        assert!(
            !k.is_empty() && !v.is_empty(),
            "bad field {k:?}={v:?} in {line:?}"
        );
        let v = if let Some(q) = v.strip_prefix('"') {
            let q = q
                .strip_suffix('"')
                .unwrap_or_else(|| panic!("unterminated string in {line:?}"));
            Value::Str(unescape(q, &['"', '\\']))
        } else if let Some(i) = v.strip_suffix('i') {
            Value::Int(
                i.parse()
                    .unwrap_or_else(|_| panic!("bad int {v:?} in {line:?}")),
            )
        } else if v == "true" || v == "false" {
            Value::Bool(v == "true")
        } else {
            Value::Float(
                v.parse()
                    .unwrap_or_else(|_| panic!("bad float {v:?} in {line:?}")),
            )
        };
        fields.insert(unescape(&k, &[',', '=', ' ']), v);
    }
    let ts = rest.map(|t| {
        t.parse()
            .unwrap_or_else(|_| panic!("bad timestamp {t:?} in {line:?}"))
    });
    Line {
        measurement,
        tags,
        fields,
        ts,
    }
}

/// The UDP corpus files and how many HEP messages each holds.
pub const UDP_CORPUS: [(&str, usize); 6] = [
    ("kamailio-hep3-udp.pcapng", 14),
    ("kamailio-hep2-udp.pcapng", 14),
    ("kamailio-hep1-udp.pcapng", 14),
    ("sngrep-hep3-udp.pcapng", 13),
    ("hepjs-hep3-udp.pcapng", 1),
    ("wireshark-sample-hep3.pcap", 8),
];

/// One corpus file's HEP messages as events received at `at`.
pub fn corpus_events(file: &str, transport: Transport, at: SystemTime) -> Vec<Event> {
    let path = codec_common::fixture(file);
    let datagrams = match transport {
        Transport::Tcp => codec_common::split_hep3_stream(&codec_common::tcp_stream_to(
            &path,
            codec_common::HEP_PORT,
        )),
        _ => codec_common::udp_payloads_to(&path, codec_common::HEP_PORT),
    };
    datagrams
        .into_iter()
        .map(|d| event(d, transport, at))
        .collect()
}

/// Decode one HEP message into an event.
pub fn event(d: Vec<u8>, transport: Transport, at: SystemTime) -> Event {
    let raw = Bytes::from(d);
    let hep = hepflow_sdk::hep::decode(raw.clone(), &Default::default()).expect("corpus decodes");
    Event::new(
        hep,
        raw,
        ReceiveMeta {
            listener: "udp".into(),
            transport,
            peer: "127.0.0.1:5555".parse().unwrap(),
            received_at: at,
        },
    )
}

/// The whole UDP corpus (64 messages) received at `at`.
pub fn udp_corpus(at: SystemTime) -> Vec<Event> {
    let mut all = Vec::new();
    for (f, n) in UDP_CORPUS {
        let evs = corpus_events(f, Transport::Udp, at);
        assert_eq!(evs.len(), n, "{f}");
        all.extend(evs);
    }
    all
}

/// A time `secs` seconds after the epoch.
pub fn at_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}
