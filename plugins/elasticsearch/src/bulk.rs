//! Bulk body encoding: for each event one action line
//! (`{"create":{"_index":"hep-sip-2024.05.01","_id":"..."}}`) and one line
//! with the SDK's event document, each ended by `\n` (the body always ends
//! with a newline, which strict servers require). The batch is encoded once
//! into one buffer; each item's byte span is kept so that a retry of some
//! items, or a split request, reuses the bytes instead of encoding again.
//!
//! The document id ([`message_id`]) is a 128-bit xxh3 hash of the message
//! exactly as received minus its HEP auth key chunk (the key never goes
//! into anything indexed, not even hashed), written as 22 characters of
//! unpadded base64url.

use crate::config::{BulkAction, DocumentId};
use crate::index_name::IndexPattern;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use hepflow_sdk::document::write_document;
use hepflow_sdk::Event;
use xxhash_rust::xxh3::Xxh3;

/// Where one item sits in an encoded body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemSpan {
    /// First byte of the action line.
    pub start: usize,
    /// First byte of the document line.
    pub doc_start: usize,
    /// One past the document's closing newline.
    pub end: usize,
}

impl ItemSpan {
    /// Bytes of the item (both lines).
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the span is empty (never, for an encoded item).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// A whole batch encoded as one bulk body.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    /// Every item's lines, in batch order.
    pub body: Bytes,
    /// Item `i`'s span in `body`.
    pub items: Vec<ItemSpan>,
}

impl EncodedBatch {
    /// The body of the items `idx` (ascending indices): a slice of the
    /// buffer when they are contiguous, else a copy of their spans.
    pub fn body_for(&self, idx: &[usize]) -> Bytes {
        let (Some(&first), Some(&last)) = (idx.first(), idx.last()) else {
            return Bytes::new();
        };
        if last - first + 1 == idx.len() {
            return self
                .body
                .slice(self.items[first].start..self.items[last].end);
        }
        let len: usize = idx.iter().map(|&i| self.items[i].len()).sum();
        let mut b = BytesMut::with_capacity(len);
        for &i in idx {
            let s = self.items[i];
            b.extend_from_slice(&self.body[s.start..s.end]);
        }
        b.freeze()
    }

    /// Item `i`'s document (without the newline).
    pub fn document(&self, i: usize) -> &[u8] {
        let s = self.items[i];
        &self.body[s.doc_start..s.end - 1]
    }

    /// Item `i`'s size in bytes (both lines).
    pub fn item_len(&self, i: usize) -> usize {
        self.items[i].len()
    }
}

/// Encodes events into bulk bodies.
#[derive(Debug, Clone)]
pub struct BulkEncoder {
    pattern: IndexPattern,
    action: BulkAction,
    ids: DocumentId,
    index_buf: String,
    doc_buf: Vec<u8>,
}

impl BulkEncoder {
    /// An encoder for one sink's settings.
    pub fn new(pattern: IndexPattern, action: BulkAction, ids: DocumentId) -> Self {
        BulkEncoder {
            pattern,
            action,
            ids,
            index_buf: String::with_capacity(64),
            doc_buf: Vec::with_capacity(2048),
        }
    }

    /// Append the two lines of `ev` to `out`; returns its span.
    pub fn encode_one(&mut self, ev: &Event, out: &mut Vec<u8>) -> ItemSpan {
        let start = out.len();
        self.pattern.render_event(ev, &mut self.index_buf);
        // Events built without their wire bytes are identified by their
        // document (which includes the receive time): it has to be
        // written first. Otherwise the document goes straight into `out`.
        let doc_first = self.ids == DocumentId::Hash && ev.raw().is_empty();
        if doc_first {
            self.doc_buf.clear();
            write_document(ev, &mut self.doc_buf);
        }
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(self.action.as_str().as_bytes());
        out.extend_from_slice(b"\":{\"_index\":\"");
        // Index names are checked at config time: no '"', '\\' or control
        // characters, so they need no JSON escaping.
        out.extend_from_slice(self.index_buf.as_bytes());
        out.push(b'"');
        if self.ids == DocumentId::Hash {
            let id = if doc_first {
                hash_bytes(&self.doc_buf)
            } else {
                message_id(ev.raw())
            };
            let mut buf = [0u8; 24];
            let n = URL_SAFE_NO_PAD
                .encode_slice(id.to_be_bytes(), &mut buf)
                .unwrap_or(0);
            out.extend_from_slice(b",\"_id\":\"");
            out.extend_from_slice(&buf[..n]);
            out.push(b'"');
        }
        out.extend_from_slice(b"}}\n");
        let doc_start = out.len();
        if doc_first {
            out.extend_from_slice(&self.doc_buf);
        } else {
            write_document(ev, out);
        }
        if out.len() == doc_start {
            // write_document leaves nothing only if serialization failed,
            // which the SDK rules out; keep the body well-formed anyway.
            out.extend_from_slice(b"{\"encoding_error\":true}");
        }
        out.push(b'\n');
        ItemSpan {
            start,
            doc_start,
            end: out.len(),
        }
    }

    /// Encode a whole batch.
    pub fn encode_batch(&mut self, batch: &[Event]) -> EncodedBatch {
        // Documents are about the payload plus 700 bytes of fields.
        let estimate: usize = batch.iter().map(|e| e.hep().payload.len() + 800).sum();
        let mut body = Vec::with_capacity(estimate);
        let items = batch
            .iter()
            .map(|ev| self.encode_one(ev, &mut body))
            .collect();
        EncodedBatch {
            body: Bytes::from(body),
            items,
        }
    }
}

fn hash_bytes(b: &[u8]) -> u128 {
    let mut h = Xxh3::new();
    h.update(b);
    h.digest128()
}

/// The 128-bit id of a message: xxh3 over its bytes as received, leaving
/// out the HEP3 length field and the auth key chunk (vendor 0, type 0x0e),
/// so the id depends on the message, not on the key. HEP v1/v2 (which
/// carry no key) are hashed whole.
pub fn message_id(raw: &[u8]) -> u128 {
    let mut h = Xxh3::new();
    if raw.len() >= 6 && raw.starts_with(b"HEP3") {
        h.update(b"HEP3");
        // Hash the runs of bytes between auth key chunks (one or two
        // updates for almost every message).
        let mut run_start = 6;
        let mut off = 6;
        while off + 6 <= raw.len() {
            let vendor = u16::from_be_bytes([raw[off], raw[off + 1]]);
            let kind = u16::from_be_bytes([raw[off + 2], raw[off + 3]]);
            let len = usize::from(u16::from_be_bytes([raw[off + 4], raw[off + 5]]));
            if len < 6 || off + len > raw.len() {
                break;
            }
            if vendor == 0 && kind == 0x0e {
                h.update(&raw[run_start..off]);
                run_start = off + len;
            }
            off += len;
        }
        h.update(&raw[run_start..]);
    } else {
        h.update(raw);
    }
    h.digest128()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hepflow_sdk::hep::HepMessage;
    use std::time::{Duration, UNIX_EPOCH};

    fn event(key: Option<&'static [u8]>, payload: &'static [u8]) -> Event {
        let mut m = HepMessage::new_v3(Bytes::from_static(payload));
        m.ts_sec = 1_714_564_800;
        m.ts_usec = 5;
        m.proto_type = 1;
        m.auth_key = key.map(Bytes::from_static);
        Event::received_over_udp(
            &m,
            "127.0.0.1:5060".parse().unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )
        .unwrap()
    }

    fn encoder() -> BulkEncoder {
        BulkEncoder::new(
            IndexPattern::parse("hep-{proto}-%Y.%m.%d").unwrap(),
            BulkAction::Create,
            DocumentId::Hash,
        )
    }

    #[test]
    fn two_lines_per_event_ending_in_newline() {
        let evs = [
            event(None, b"OPTIONS sip:a SIP/2.0\r\n\r\n"),
            event(None, b"x"),
        ];
        let enc = encoder().encode_batch(&evs);
        let text = std::str::from_utf8(&enc.body).unwrap();
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        let action: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(action["create"]["_index"], "hep-sip-2024.05.01");
        assert_eq!(action["create"]["_id"].as_str().unwrap().len(), 22);
        let doc: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(doc["@timestamp"], "2024-05-01T12:00:00.000005Z");
        assert_eq!(enc.document(1), lines[3].as_bytes());
        assert_eq!(&enc.body_for(&[0, 1])[..], text.as_bytes());
        let second = enc.body_for(&[1]);
        assert_eq!(
            &second[..],
            format!("{}\n{}\n", lines[2], lines[3]).as_bytes()
        );
    }

    #[test]
    fn id_ignores_the_auth_key_but_not_the_message() {
        let a = event(Some(b"secret-one"), b"same");
        let b = event(Some(b"other-key"), b"same");
        let c = event(None, b"same");
        let d = event(Some(b"secret-one"), b"different");
        assert_eq!(message_id(a.raw()), message_id(b.raw()));
        assert_eq!(message_id(a.raw()), message_id(c.raw()));
        assert_ne!(message_id(a.raw()), message_id(d.raw()));
        let enc = encoder().encode_batch(&[a]);
        assert!(!enc.body.windows(10).any(|w| w == b"secret-one"));
    }

    #[test]
    fn auto_ids_and_index_action() {
        let mut e = BulkEncoder::new(
            IndexPattern::parse("hep").unwrap(),
            BulkAction::Index,
            DocumentId::Auto,
        );
        let enc = e.encode_batch(&[event(None, b"x")]);
        let first = std::str::from_utf8(&enc.body)
            .unwrap()
            .lines()
            .next()
            .unwrap();
        assert_eq!(first, r#"{"index":{"_index":"hep"}}"#);
    }

    #[test]
    fn malformed_chunks_are_hashed_not_panicked_on() {
        for raw in [
            &b"HEP3"[..],
            b"HEP3\x00\x10\x00\x00\x00\x01\x00\x02",
            b"HEP3\x00\x10\x00\x00\x00\x01\xff\xff",
            b"",
        ] {
            let _ = message_id(raw);
        }
    }
}
