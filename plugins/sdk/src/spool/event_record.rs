//! An [`Event`] as a spool record payload, and back.
//!
//! The record keeps what decoding cannot give again: the receive metadata
//! and the capture id after the listener's compatibility rewrite. The HEP
//! message itself is kept as received (its raw bytes) and decoded again
//! when read back, so a spooled event is the event that was queued.
//!
//! ```text
//! payload = 1:u8 transport:u8 listener_len:u16le listener
//!           family:u8 (4: ip[4] | 6: ip[16]) port:u16le
//!           received_at_ns:u64le capture_id:u32le raw
//! ```

use crate::hep::{decode, DecodeOptions, HepVersion};
use crate::{Event, EventBatch, ReceiveMeta, Transport};
use bytes::Bytes;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FORMAT_VERSION: u8 = 1;

fn transport_code(t: Transport) -> u8 {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
        Transport::Kafka => 3,
    }
}

fn transport_of(code: u8) -> Option<Transport> {
    Some(match code {
        0 => Transport::Udp,
        1 => Transport::Tcp,
        2 => Transport::Tls,
        3 => Transport::Kafka,
        _ => return None,
    })
}

/// Append `ev` as a record payload to `out`.
pub fn encode_event(ev: &Event, out: &mut Vec<u8>) {
    let meta = ev.meta();
    out.push(FORMAT_VERSION);
    out.push(transport_code(meta.transport));
    let name = meta.listener.as_bytes();
    let name = &name[..name.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
    match meta.peer.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&meta.peer.port().to_le_bytes());
    let ns = meta
        .received_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    out.extend_from_slice(&ns.to_le_bytes());
    out.extend_from_slice(&ev.hep().capture_id.to_le_bytes());
    out.extend_from_slice(ev.raw());
}

/// Bytes [`encode_event`] adds to the raw message, at most (for bounds).
pub const MAX_OVERHEAD: usize = 2 + 2 + u16::MAX as usize + 1 + 16 + 2 + 8 + 4;

/// Turns record payloads back into events; keeps the last listener name
/// so that events of one listener share it.
#[derive(Default)]
pub struct EventDecoder {
    opts: DecodeOptions,
    listener: Option<Arc<str>>,
}

impl EventDecoder {
    /// A decoder with the hub's decode options.
    pub fn new(opts: DecodeOptions) -> Self {
        EventDecoder {
            opts,
            listener: None,
        }
    }

    /// Decode `payload` into `batch`, or say why it cannot be.
    pub fn decode_into(&mut self, payload: Bytes, batch: &mut EventBatch) -> Result<(), String> {
        let mut r = Reader {
            bytes: &payload,
            at: 0,
        };
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(format!("unknown spool record version {version}"));
        }
        let transport = transport_of(r.u8()?).ok_or("unknown transport code")?;
        let name_len = r.u16()? as usize;
        let name = std::str::from_utf8(r.take(name_len)?).map_err(|_| "listener name not UTF-8")?;
        let listener = match &self.listener {
            Some(l) if &**l == name => l.clone(),
            _ => {
                let l: Arc<str> = name.into();
                self.listener = Some(l.clone());
                l
            }
        };
        let ip = match r.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(r.take(4)?).expect("4"))),
            6 => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(r.take(16)?).expect("16"),
            )),
            f => return Err(format!("unknown address family {f}")),
        };
        let port = r.u16()?;
        let ns = u64::from_le_bytes(r.take(8)?.try_into().expect("8"));
        let capture_id = u32::from_le_bytes(r.take(4)?.try_into().expect("4"));
        let raw = payload.slice(r.at..);
        let mut hep = decode(raw.clone(), &self.opts).map_err(|e| format!("HEP decode: {e}"))?;
        if hep.version == HepVersion::V3 {
            hep.capture_id = capture_id;
        }
        batch.push(
            hep,
            raw,
            ReceiveMeta {
                listener,
                transport,
                peer: SocketAddr::new(ip, port),
                received_at: UNIX_EPOCH + Duration::from_nanos(ns),
            },
        );
        Ok(())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or("spool record shorter than its fields")?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
}

/// Milliseconds since the Unix epoch, for record timestamps.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hep::encode_v3;
    use crate::HepMessage;

    fn event(capture_id: u32, peer: &str) -> Event {
        let mut msg = HepMessage::new_v3(Bytes::from_static(
            b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x1\r\n\r\n",
        ));
        msg.capture_id = 7;
        msg.proto_type = 1;
        let mut buf = bytes::BytesMut::new();
        encode_v3(&msg, &mut buf).unwrap();
        let raw = buf.freeze();
        let mut hep = decode(raw.clone(), &DecodeOptions::default()).unwrap();
        hep.capture_id = capture_id; // as a listener's rewrite leaves it
        Event::new(
            hep,
            raw,
            ReceiveMeta {
                listener: "edge-tls".into(),
                transport: Transport::Tls,
                peer: peer.parse().unwrap(),
                received_at: UNIX_EPOCH + Duration::from_nanos(1_733_000_000_123_456_789),
            },
        )
    }

    #[test]
    fn an_event_comes_back_as_it_was_queued() {
        for peer in ["192.0.2.9:5060", "[2001:db8::7]:9060"] {
            let ev = event(2002, peer);
            let mut payload = Vec::new();
            encode_event(&ev, &mut payload);
            let mut d = EventDecoder::new(DecodeOptions::default());
            let mut batch = EventBatch::new();
            d.decode_into(Bytes::from(payload), &mut batch).unwrap();
            let mut out = Vec::new();
            batch.finish(&mut out);
            let back = &out[0];
            assert_eq!(back.raw(), ev.raw());
            assert_eq!(back.hep(), ev.hep(), "capture id rewrite kept");
            assert_eq!(back.meta().peer, ev.meta().peer);
            assert_eq!(back.meta().transport, Transport::Tls);
            assert_eq!(&*back.meta().listener, "edge-tls");
            assert_eq!(back.meta().received_at, ev.meta().received_at);
            assert_eq!(back.call_key(), Some(&b"x1"[..]));
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut payload = Vec::new();
        encode_event(&event(1, "10.0.0.1:1"), &mut payload);
        let mut d = EventDecoder::new(DecodeOptions::default());
        for cut in 0..payload.len() {
            let mut batch = EventBatch::new();
            assert!(
                d.decode_into(Bytes::copy_from_slice(&payload[..cut]), &mut batch)
                    .is_err(),
                "cut {cut}"
            );
        }
    }
}
