//! Kafka record headers: written by the sink, read back by the kafka
//! listener to restore the original receive metadata (peer address and
//! receive time of the front-tier hepflow). Every value is UTF-8 text, so
//! any Kafka tool shows them as they are.

use hepflow_sdk::Event;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// HEP version (`1`, `2`, `3`).
pub const HEP_VERSION: &str = "hep_version";
/// HEP protocol type number (chunk 0x0b), e.g. `1` for SIP.
pub const HEP_PROTO_TYPE: &str = "hep_proto_type";
/// Capture agent id (chunk 0x0c).
pub const HEP_CAPTURE_ID: &str = "hep_capture_id";
/// Capture node name (chunk 0x13), when the message has one.
pub const HEP_NODE_NAME: &str = "hep_node_name";
/// Packet time (chunks 0x09/0x0a), microseconds since the Unix epoch;
/// absent when the message carries no time (HEP v1).
pub const HEP_TIMESTAMP_US: &str = "hep_timestamp_us";
/// `node.name` of the hepflow that produced the record.
pub const HEPFLOW_NODE: &str = "hepflow_node";
/// The listener that received the message.
pub const HEPFLOW_LISTENER: &str = "hepflow_listener";
/// The transport it arrived on (`udp`, `tcp`, `tls`, `kafka`).
pub const HEPFLOW_TRANSPORT: &str = "hepflow_transport";
/// The sender's address (`ip:port`).
pub const HEPFLOW_PEER: &str = "hepflow_peer";
/// When hepflow received it, microseconds since the Unix epoch.
pub const HEPFLOW_RECEIVED_US: &str = "hepflow_received_us";

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The packet time of `ev` in microseconds since the epoch, if it has one.
pub fn packet_time_us(ev: &Event) -> Option<u64> {
    let h = ev.hep();
    (h.ts_sec != 0).then(|| u64::from(h.ts_sec) * 1_000_000 + u64::from(h.ts_usec))
}

/// The headers of `ev` produced by hepflow node `node`.
pub fn build(ev: &Event, node: &str) -> OwnedHeaders {
    let h = ev.hep();
    let meta = ev.meta();
    let mut buf = String::with_capacity(96);
    let mut out = OwnedHeaders::new_with_capacity(10);
    let add = |out: OwnedHeaders, key: &str, buf: &str| {
        out.insert(Header {
            key,
            value: Some(buf),
        })
    };
    let _ = write!(buf, "{}", h.version.number());
    out = add(out, HEP_VERSION, &buf);
    buf.clear();
    let _ = write!(buf, "{}", h.proto_type);
    out = add(out, HEP_PROTO_TYPE, &buf);
    buf.clear();
    let _ = write!(buf, "{}", h.capture_id);
    out = add(out, HEP_CAPTURE_ID, &buf);
    if let Some(n) = &h.node_name {
        out = out.insert(Header {
            key: HEP_NODE_NAME,
            value: Some(n.as_ref()),
        });
    }
    if let Some(t) = packet_time_us(ev) {
        buf.clear();
        let _ = write!(buf, "{t}");
        out = add(out, HEP_TIMESTAMP_US, &buf);
    }
    out = add(out, HEPFLOW_NODE, node);
    out = add(out, HEPFLOW_LISTENER, &meta.listener);
    out = add(out, HEPFLOW_TRANSPORT, meta.transport.as_str());
    buf.clear();
    let _ = write!(buf, "{}", meta.peer);
    out = add(out, HEPFLOW_PEER, &buf);
    buf.clear();
    let _ = write!(buf, "{}", micros(meta.received_at));
    add(out, HEPFLOW_RECEIVED_US, &buf)
}

/// The original receive metadata carried by a record's headers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The original sender (`hepflow_peer`).
    pub peer: Option<SocketAddr>,
    /// When the front tier received it (`hepflow_received_us`).
    pub received_at: Option<SystemTime>,
}

/// Read [`Origin`] from record headers; malformed values are ignored.
pub fn origin<H: Headers + ?Sized>(headers: Option<&H>) -> Origin {
    let mut o = Origin::default();
    let Some(hs) = headers else {
        return o;
    };
    for i in 0..hs.count() {
        let h = hs.get(i);
        let Some(v) = h.value.and_then(|v| std::str::from_utf8(v).ok()) else {
            continue;
        };
        match h.key {
            HEPFLOW_PEER => o.peer = v.parse().ok(),
            HEPFLOW_RECEIVED_US => {
                o.received_at = v
                    .parse::<u64>()
                    .ok()
                    .map(|us| UNIX_EPOCH + Duration::from_micros(us))
            }
            _ => {}
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hepflow_sdk::hep::HepMessage;
    use hepflow_sdk::{ReceiveMeta, Transport};

    #[test]
    fn headers_round_trip_the_origin() {
        let mut m = HepMessage::new_v3(Bytes::from_static(b"x"));
        m.ts_sec = 1_700_000_000;
        m.ts_usec = 42;
        m.capture_id = 2001;
        m.node_name = Some(Bytes::from_static(b"kam1"));
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_001_000_007);
        let ev = Event::new(
            m,
            Bytes::new(),
            ReceiveMeta {
                listener: "udp".into(),
                transport: Transport::Udp,
                peer: "[2001:db8::1]:5060".parse().unwrap(),
                received_at: at,
            },
        );
        let h = build(&ev, "edge1");
        let get = |k: &str| {
            h.iter()
                .find(|x| x.key == k)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8(v.to_vec()).unwrap())
        };
        assert_eq!(get(HEP_VERSION).as_deref(), Some("3"));
        assert_eq!(get(HEP_PROTO_TYPE).as_deref(), Some("1"));
        assert_eq!(get(HEP_CAPTURE_ID).as_deref(), Some("2001"));
        assert_eq!(get(HEP_NODE_NAME).as_deref(), Some("kam1"));
        assert_eq!(get(HEP_TIMESTAMP_US).as_deref(), Some("1700000000000042"));
        assert_eq!(get(HEPFLOW_NODE).as_deref(), Some("edge1"));
        assert_eq!(get(HEPFLOW_TRANSPORT).as_deref(), Some("udp"));
        let o = origin(Some(&h));
        assert_eq!(o.peer, Some("[2001:db8::1]:5060".parse().unwrap()));
        assert_eq!(o.received_at, Some(at));
        assert_eq!(origin::<OwnedHeaders>(None), Origin::default());
    }
}
