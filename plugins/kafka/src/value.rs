//! Record keys and values of the sink: the key chosen by [`KeyMode`], the
//! value encoded by [`ValueMode`], and the removal of the HEP3 auth key
//! chunk (a secret) from a raw message while every other byte stays as
//! received.

use crate::config::{KeyMode, ValueMode};
use bytes::{Bytes, BytesMut};
use hepflow_sdk::hep::{encode_v3, HepVersion};
use hepflow_sdk::Event;

/// HEP3 chunk type of the auth key.
const AUTH_KEY_CHUNK: u16 = 0x0e;

/// The record key of `ev`.
pub fn key(ev: &Event, mode: KeyMode) -> Option<&[u8]> {
    match mode {
        KeyMode::Call => ev.call_key(),
        KeyMode::CallId => ev
            .sip()
            .and_then(|s| s.call_id.as_ref())
            .map(|c| c.as_bytes()),
        KeyMode::CorrelationId => ev.hep().correlation_id.as_deref(),
        KeyMode::None => None,
    }
}

/// Why a value could not be encoded (counted as a failure of the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeFailed(pub String);

/// The record value of `ev`. `scratch` is reused between calls.
/// With `keep_auth_key`, `raw` is the received buffer itself and `hepv3`
/// keeps the auth key chunk.
pub fn value(
    ev: &Event,
    mode: ValueMode,
    keep_auth_key: bool,
    scratch: &mut Vec<u8>,
) -> Result<Bytes, EncodeFailed> {
    match mode {
        ValueMode::Raw if keep_auth_key => Ok(ev.raw().clone()),
        ValueMode::Raw => Ok(without_auth_key(ev)),
        ValueMode::Hepv3 => {
            let mut buf = BytesMut::new();
            let r = if ev.hep().auth_key.is_some() && !keep_auth_key {
                let mut m = ev.hep().clone();
                m.auth_key = None;
                encode_v3(&m, &mut buf)
            } else {
                encode_v3(ev.hep(), &mut buf)
            };
            r.map_err(|e| EncodeFailed(format!("cannot re-encode as HEPv3: {e}")))?;
            Ok(buf.freeze())
        }
        ValueMode::Json => {
            scratch.clear();
            hepflow_sdk::document::write_document(ev, scratch);
            Ok(Bytes::copy_from_slice(scratch))
        }
    }
}

/// The message as received, minus any HEP3 auth key chunk (vendor 0,
/// type 0x0e) with the total length fixed up. Without such a chunk (and
/// always for v1/v2) the received bytes themselves, not a copy.
pub fn without_auth_key(ev: &Event) -> Bytes {
    let raw = ev.raw();
    if ev.hep().version != HepVersion::V3 || ev.hep().auth_key.is_none() {
        return raw.clone();
    }
    strip_chunk(raw, AUTH_KEY_CHUNK).unwrap_or_else(|| raw.clone())
}

/// Remove every generic (vendor 0) chunk of `chunk_type` from a HEP3
/// message. `None` when the buffer is not a well-formed HEP3 message.
fn strip_chunk(raw: &[u8], chunk_type: u16) -> Option<Bytes> {
    if raw.len() < 6 || &raw[..4] != b"HEP3" {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([raw[4], raw[5]]));
    if total != raw.len() {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..6]);
    let mut at = 6;
    while at < raw.len() {
        let hdr = raw.get(at..at + 6)?;
        let vendor = u16::from_be_bytes([hdr[0], hdr[1]]);
        let ty = u16::from_be_bytes([hdr[2], hdr[3]]);
        let len = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
        if len < 6 || at + len > raw.len() {
            return None;
        }
        if !(vendor == 0 && ty == chunk_type) {
            out.extend_from_slice(&raw[at..at + len]);
        }
        at += len;
    }
    let n = u16::try_from(out.len()).ok()?;
    out[4..6].copy_from_slice(&n.to_be_bytes());
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hepflow_sdk::hep::{decode, DecodeOptions, HepMessage};
    use std::time::SystemTime;

    fn event_of(m: &HepMessage) -> Event {
        Event::received_over_udp(m, "127.0.0.1:1".parse().unwrap(), SystemTime::now()).unwrap()
    }

    const SIP: &[u8] =
        b"INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: abc-123@host\r\nCSeq: 1 INVITE\r\n\r\n";

    #[test]
    fn auth_key_chunk_is_cut_and_everything_else_kept() {
        let mut m = HepMessage::new_v3(Bytes::from_static(SIP));
        m.capture_id = 7;
        m.correlation_id = Some(Bytes::from_static(b"corr"));
        let plain = event_of(&m);
        m.auth_key = Some(Bytes::from_static(b"s3cr3t-key"));
        let keyed = event_of(&m);
        assert!(keyed.raw().windows(10).any(|w| w == b"s3cr3t-key"));

        let v = value(&keyed, ValueMode::Raw, false, &mut Vec::new()).unwrap();
        assert!(!v.windows(10).any(|w| w == b"s3cr3t-key"));
        // Same bytes as the message encoded without the key.
        assert_eq!(v, *plain.raw());
        let back = decode(v, &DecodeOptions::default()).unwrap();
        assert_eq!(back.auth_key, None);
        assert_eq!(back.payload, Bytes::from_static(SIP));

        // Without a key: the received buffer itself.
        let v = value(&plain, ValueMode::Raw, false, &mut Vec::new()).unwrap();
        assert_eq!(v.as_ptr(), plain.raw().as_ptr());

        let v3 = value(&keyed, ValueMode::Hepv3, false, &mut Vec::new()).unwrap();
        assert!(!v3.windows(10).any(|w| w == b"s3cr3t-key"));
        let j = value(&keyed, ValueMode::Json, false, &mut Vec::new()).unwrap();
        assert!(!j.windows(10).any(|w| w == b"s3cr3t-key"));
        let j = value(&keyed, ValueMode::Json, true, &mut Vec::new()).unwrap();
        assert!(!j.windows(10).any(|w| w == b"s3cr3t-key"));
        // Opt-in: kept, byte-identical.
        let kept = value(&keyed, ValueMode::Raw, true, &mut Vec::new()).unwrap();
        assert_eq!(kept, *keyed.raw());
        let kept = value(&keyed, ValueMode::Hepv3, true, &mut Vec::new()).unwrap();
        assert!(kept.windows(10).any(|w| w == b"s3cr3t-key"));
        let doc: serde_json::Value = serde_json::from_slice(&j).unwrap();
        assert_eq!(doc["call_id"], "abc-123@host");
    }

    #[test]
    fn keys_follow_the_mode() {
        let mut m = HepMessage::new_v3(Bytes::from_static(SIP));
        m.correlation_id = Some(Bytes::from_static(b"corr"));
        let sip = event_of(&m);
        assert_eq!(key(&sip, KeyMode::Call), Some(&b"abc-123@host"[..]));
        assert_eq!(key(&sip, KeyMode::CallId), Some(&b"abc-123@host"[..]));
        assert_eq!(key(&sip, KeyMode::CorrelationId), Some(&b"corr"[..]));
        assert_eq!(key(&sip, KeyMode::None), None);

        let mut r = HepMessage::new_v3(Bytes::from_static(b"{\"rtcp\":1}"));
        r.proto_type = 5;
        r.correlation_id = Some(Bytes::from_static(b"abc-123@host"));
        let rtcp = event_of(&r);
        assert_eq!(key(&rtcp, KeyMode::Call), Some(&b"abc-123@host"[..]));
        assert_eq!(key(&rtcp, KeyMode::CallId), None);
        r.correlation_id = None;
        assert_eq!(key(&event_of(&r), KeyMode::Call), None);
    }

    #[test]
    fn malformed_input_to_strip_is_refused_not_panicking() {
        assert_eq!(strip_chunk(b"HEP3", 0x0e), None);
        assert_eq!(
            strip_chunk(b"HEP3\x00\x0c\x00\x00\x00\x0e\x00\x09", 0x0e),
            None
        );
        assert_eq!(strip_chunk(b"HEP3\x00\x0b\x00\x00\x00\x0e\x00", 0x0e), None);
        let ok = strip_chunk(b"HEP3\x00\x0d\x00\x00\x00\x0e\x00\x07k", 0x0e).unwrap();
        assert_eq!(&ok[..], b"HEP3\x00\x06");
    }
}
