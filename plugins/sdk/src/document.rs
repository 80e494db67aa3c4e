//! The JSON event document: one per message, written by the file sink as
//! NDJSON and indexed by the Elasticsearch sink. Defined once, here.
//!
//! [`EventDocument`] borrows everything from the [`Event`] (strings are
//! slices of the received buffer) and is written straight into the output
//! buffer by [`write_document`] (a hand-written writer, see
//! [`crate::json`]; it writes the same bytes as the serde derive, which
//! stays for plugins that want serde): no intermediate `serde_json::Value`,
//! no copies of the payload (a non-UTF-8 payload is base64-encoded while it
//! is written).
//!
//! The keys are flat, snake_case and stable; [`DOCUMENT_FIELDS`] lists every
//! key a document can have with its [`FieldKind`], so a sink can build an
//! index mapping from it. Absent values are left out, never written as
//! `null`. The HEP authentication key (chunk 0x0e) is a secret and is never
//! part of a document.

use crate::hep::{HepMessage, AF_INET, AF_INET6};
use crate::json::ObjectWriter;
use crate::sip::SipSummary;
use crate::Event;
use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{Datelike, Timelike};
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// The kind of value a document field holds, for building index mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// An RFC 3339 UTC timestamp with microseconds.
    Date,
    /// An IPv4 or IPv6 address in text form.
    Ip,
    /// A string matched exactly (not analysed).
    Keyword,
    /// An integer.
    Long,
    /// Free text (analysed).
    Text,
    /// `true` / `false`.
    Boolean,
}

impl FieldKind {
    /// The Elasticsearch mapping type name (`date`, `ip`, `keyword`, `long`,
    /// `text`, `boolean`).
    pub fn es_type(self) -> &'static str {
        match self {
            FieldKind::Date => "date",
            FieldKind::Ip => "ip",
            FieldKind::Keyword => "keyword",
            FieldKind::Long => "long",
            FieldKind::Text => "text",
            FieldKind::Boolean => "boolean",
        }
    }
}

/// Every key an event document can have, in the order written, with its kind.
pub const DOCUMENT_FIELDS: &[(&str, FieldKind)] = &[
    ("@timestamp", FieldKind::Date),
    ("hep_version", FieldKind::Long),
    ("proto_type", FieldKind::Long),
    ("proto", FieldKind::Keyword),
    ("ip_family", FieldKind::Keyword),
    ("ip_proto", FieldKind::Long),
    ("src_ip", FieldKind::Ip),
    ("src_port", FieldKind::Long),
    ("dst_ip", FieldKind::Ip),
    ("dst_port", FieldKind::Long),
    ("capture_id", FieldKind::Long),
    ("node_name", FieldKind::Keyword),
    ("correlation_id", FieldKind::Keyword),
    ("vlan_id", FieldKind::Long),
    ("mos", FieldKind::Long),
    ("r_factor", FieldKind::Long),
    ("jitter", FieldKind::Long),
    ("geo_location", FieldKind::Keyword),
    ("transaction_type", FieldKind::Keyword),
    ("tag_values", FieldKind::Keyword),
    ("group_id", FieldKind::Keyword),
    ("event_type", FieldKind::Long),
    ("keep_alive", FieldKind::Long),
    ("listener", FieldKind::Keyword),
    ("transport", FieldKind::Keyword),
    ("received_at", FieldKind::Date),
    ("sip_method", FieldKind::Keyword),
    ("ruri_user", FieldKind::Keyword),
    ("ruri_domain", FieldKind::Keyword),
    ("sip_status", FieldKind::Long),
    ("sip_reason", FieldKind::Keyword),
    ("call_id", FieldKind::Keyword),
    ("cseq_num", FieldKind::Long),
    ("cseq_method", FieldKind::Keyword),
    ("from_user", FieldKind::Keyword),
    ("from_tag", FieldKind::Keyword),
    ("to_user", FieldKind::Keyword),
    ("to_tag", FieldKind::Keyword),
    ("user_agent", FieldKind::Keyword),
    ("payload", FieldKind::Text),
    ("payload_base64", FieldKind::Boolean),
];

/// The document of one event, borrowed from it. Serialize it with serde
/// (`serde_json::to_writer`), or call [`write_document`].
#[derive(Serialize)]
pub struct EventDocument<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Rfc3339Micros,
    hep_version: u8,
    proto_type: u8,
    proto: ProtoName,
    ip_family: &'static str,
    ip_proto: u8,
    src_ip: IpAddr,
    src_port: u16,
    dst_ip: IpAddr,
    dst_port: u16,
    capture_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mos: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    r_factor: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jitter: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    geo_location: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_type: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag_values: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_type: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<u16>,
    listener: &'a str,
    transport: &'static str,
    received_at: Rfc3339Micros,
    #[serde(skip_serializing_if = "Option::is_none")]
    sip_method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ruri_user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ruri_domain: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sip_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sip_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cseq_num: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cseq_method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to_user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to_tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    payload: Payload<'a>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    payload_base64: bool,
}

impl<'a> EventDocument<'a> {
    /// The document of `ev` (parses the SIP summary if not done yet).
    pub fn new(ev: &'a Event) -> Self {
        let hep = ev.hep();
        let meta = ev.meta();
        let received_at = Rfc3339Micros::from_system_time(meta.received_at);
        let timestamp = if hep.ts_sec == 0 {
            received_at
        } else {
            Rfc3339Micros::from_parts(i64::from(hep.ts_sec), hep.ts_usec)
        };
        let sip: Option<&'a SipSummary> = ev.sip();
        let (payload, payload_base64) = match std::str::from_utf8(&hep.payload) {
            Ok(s) => (Payload::Text(s), false),
            Err(_) => (Payload::Base64(&hep.payload), true),
        };
        EventDocument {
            timestamp,
            hep_version: hep.version.number(),
            proto_type: hep.proto_type,
            proto: match hep.proto_name() {
                Some(name) => ProtoName::Known(name),
                None => ProtoName::Number(hep.proto_type),
            },
            ip_family: ip_family(hep),
            ip_proto: hep.ip_proto,
            src_ip: hep.src_ip,
            src_port: hep.src_port,
            dst_ip: hep.dst_ip,
            dst_port: hep.dst_port,
            capture_id: hep.capture_id,
            node_name: lossy(&hep.node_name),
            correlation_id: lossy(&hep.correlation_id),
            vlan_id: hep.vlan_id,
            mos: hep.mos,
            r_factor: hep.r_factor,
            jitter: hep.jitter,
            geo_location: lossy(&hep.geo_location),
            transaction_type: lossy(&hep.transaction_type),
            tag_values: lossy(&hep.tag_values),
            group_id: lossy(&hep.group_id),
            event_type: hep.event_type,
            keep_alive: hep.keep_alive,
            listener: &meta.listener,
            transport: meta.transport.as_str(),
            received_at,
            sip_method: sip.and_then(SipSummary::method),
            ruri_user: sip.and_then(SipSummary::ruri_user),
            ruri_domain: sip.and_then(SipSummary::ruri_domain),
            sip_status: sip.and_then(SipSummary::status),
            sip_reason: sip.and_then(SipSummary::reason),
            call_id: sip.and_then(|s| s.call_id.as_deref()),
            cseq_num: sip.and_then(|s| s.cseq_num),
            cseq_method: sip.and_then(|s| s.cseq_method.as_deref()),
            from_user: sip.and_then(|s| s.from_user.as_deref()),
            from_tag: sip.and_then(|s| s.from_tag.as_deref()),
            to_user: sip.and_then(|s| s.to_user.as_deref()),
            to_tag: sip.and_then(|s| s.to_tag.as_deref()),
            user_agent: sip.and_then(|s| s.user_agent.as_deref()),
            payload,
            payload_base64,
        }
    }
}

/// Append the event document of `ev` as one line of compact JSON (no
/// trailing newline) to `out`: the same bytes as `serde_json::to_writer`
/// of [`EventDocument`] writes, by a hand-written writer with a faster
/// string escaper ([`crate::json`]); a test pins the equality.
pub fn write_document(ev: &Event, out: &mut Vec<u8>) {
    EventDocument::new(ev).write_json(out);
}

impl EventDocument<'_> {
    /// Append this document as compact JSON to `out` (see
    /// [`write_document`]). Members in [`DOCUMENT_FIELDS`] order, absent
    /// optional members left out, as the serde derive does.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        o.str("@timestamp", self.timestamp.as_str());
        o.uint("hep_version", self.hep_version);
        o.uint("proto_type", self.proto_type);
        match self.proto {
            ProtoName::Known(name) => o.str("proto", name),
            ProtoName::Number(n) => o.plain_display("proto", n),
        }
        o.str("ip_family", self.ip_family);
        o.uint("ip_proto", self.ip_proto);
        o.ip("src_ip", self.src_ip);
        o.uint("src_port", self.src_port);
        o.ip("dst_ip", self.dst_ip);
        o.uint("dst_port", self.dst_port);
        o.uint("capture_id", self.capture_id);
        o.opt_str("node_name", self.node_name.as_deref());
        o.opt_str("correlation_id", self.correlation_id.as_deref());
        o.opt_uint("vlan_id", self.vlan_id);
        o.opt_uint("mos", self.mos);
        o.opt_uint("r_factor", self.r_factor);
        o.opt_uint("jitter", self.jitter);
        o.opt_str("geo_location", self.geo_location.as_deref());
        o.opt_str("transaction_type", self.transaction_type.as_deref());
        o.opt_str("tag_values", self.tag_values.as_deref());
        o.opt_str("group_id", self.group_id.as_deref());
        o.opt_uint("event_type", self.event_type);
        o.opt_uint("keep_alive", self.keep_alive);
        o.str("listener", self.listener);
        o.str("transport", self.transport);
        o.str("received_at", self.received_at.as_str());
        o.opt_str("sip_method", self.sip_method);
        o.opt_str("ruri_user", self.ruri_user);
        o.opt_str("ruri_domain", self.ruri_domain);
        o.opt_uint("sip_status", self.sip_status);
        o.opt_str("sip_reason", self.sip_reason);
        o.opt_str("call_id", self.call_id);
        o.opt_uint("cseq_num", self.cseq_num);
        o.opt_str("cseq_method", self.cseq_method);
        o.opt_str("from_user", self.from_user);
        o.opt_str("from_tag", self.from_tag);
        o.opt_str("to_user", self.to_user);
        o.opt_str("to_tag", self.to_tag);
        o.opt_str("user_agent", self.user_agent);
        match self.payload {
            Payload::Text(t) => o.str("payload", t),
            Payload::Base64(b) => o.plain_display("payload", Base64Display::new(b, &STANDARD)),
        }
        if self.payload_base64 {
            o.bool("payload_base64", true);
        }
        o.finish();
    }
}

/// `time` as RFC 3339 UTC with exactly six fractional digits, for example
/// `2024-05-01T12:00:00.123456Z` (times before 1970 give the epoch).
pub fn rfc3339_micros(time: SystemTime) -> String {
    Rfc3339Micros::from_system_time(time).as_str().to_owned()
}

fn ip_family(hep: &HepMessage) -> &'static str {
    match hep.ip_family {
        AF_INET => "ipv4",
        AF_INET6 => "ipv6",
        _ if hep.src_ip.is_ipv6() => "ipv6",
        _ => "ipv4",
    }
}

fn lossy(b: &Option<Bytes>) -> Option<Cow<'_, str>> {
    b.as_deref().map(String::from_utf8_lossy)
}

/// The protocol name, or the number as a string when not in the table.
enum ProtoName {
    Known(&'static str),
    Number(u8),
}

impl Serialize for ProtoName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ProtoName::Known(name) => s.serialize_str(name),
            ProtoName::Number(n) => s.collect_str(n),
        }
    }
}

/// The payload: text when valid UTF-8, else base64 encoded while written.
enum Payload<'a> {
    Text(&'a str),
    Base64(&'a [u8]),
}

impl Serialize for Payload<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Payload::Text(t) => s.serialize_str(t),
            Payload::Base64(b) => s.collect_str(&Base64Display::new(b, &STANDARD)),
        }
    }
}

/// A formatted `YYYY-MM-DDTHH:MM:SS.ffffffZ` timestamp, kept on the stack.
#[derive(Clone, Copy)]
struct Rfc3339Micros([u8; 27]);

impl Rfc3339Micros {
    fn from_system_time(t: SystemTime) -> Self {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Self::from_parts(secs, d.subsec_micros())
    }

    /// Seconds since the epoch plus microseconds (a microsecond value of a
    /// second or more carries into the seconds, as senders sometimes send).
    fn from_parts(secs: i64, micros: u32) -> Self {
        let secs = secs.saturating_add(i64::from(micros / 1_000_000));
        let micros = micros % 1_000_000;
        let dt = chrono::DateTime::from_timestamp(secs, 0)
            .filter(|dt| (0..=9999).contains(&dt.year()))
            .unwrap_or(chrono::DateTime::UNIX_EPOCH);
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        put_digits(&mut b[0..4], dt.year().unsigned_abs());
        put_digits(&mut b[5..7], dt.month());
        put_digits(&mut b[8..10], dt.day());
        put_digits(&mut b[11..13], dt.hour());
        put_digits(&mut b[14..16], dt.minute());
        put_digits(&mut b[17..19], dt.second());
        put_digits(&mut b[20..26], micros);
        Rfc3339Micros(b)
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Write `n` as zero-padded decimal filling `out`.
fn put_digits(out: &mut [u8], mut n: u32) {
    for c in out.iter_mut().rev() {
        *c = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

impl Serialize for Rfc3339Micros {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
