//! HEPv3 encoding.
//!
//! Every field of a [`HepMessage`] is written, so that
//! `decode(encode_v3(m)) == m` field for field (with `version` becoming
//! [`HepVersion::V3`](super::HepVersion::V3) for v1/v2 input):
//!
//! - the core chunks always, in Kamailio's order: 0x01 family, 0x02 IP
//!   protocol, source and destination address (0x03/0x04 for an IPv4
//!   [`IpAddr`], 0x05/0x06 for an IPv6 one, each address by its own kind),
//!   0x07/0x08 ports, 0x09/0x0a timestamp, 0x0b protocol type, 0x0c capture id;
//! - then every optional chunk that is `Some`, in type order;
//! - then the payload: chunk 0x0f, or chunk 0x10 (zlib) when
//!   `payload_compressed` is set;
//! - then `extra_chunks`, re-emitted verbatim in their order. (They are not
//!   interpreted: an extra chunk with vendor 0 and a known type would be read
//!   back as that typed field.)
//!
//! A string or bytes value longer than 65529 bytes is
//! [`EncodeError::ChunkTooLarge`]; a message longer than 65535 bytes is
//! [`EncodeError::TooLarge`]. On error `out` is left as it was.

use super::decode::{CHUNK_HEADER_LEN, HEP3_HEADER_LEN, HEP3_MAGIC};
use super::error::EncodeError;
use super::HepMessage;
use bytes::{BufMut, Bytes, BytesMut};
use flate2::write::ZlibEncoder;
use flate2::Compression;
use std::io::Write;
use std::net::IpAddr;

/// Largest HEP3 message (the total length is a u16).
const MAX_MESSAGE: usize = u16::MAX as usize;
/// Largest value a chunk can hold (the chunk length is a u16 including the header).
const MAX_VALUE: usize = u16::MAX as usize - CHUNK_HEADER_LEN;

/// Chunk type of the plain payload.
const PAYLOAD: u16 = 0x0f;
/// Chunk type of the zlib-compressed payload.
const PAYLOAD_ZLIB: u16 = 0x10;

/// Append `msg` encoded as HEPv3 to `out` (v1/v2 messages are converted).
pub fn encode_v3(msg: &HepMessage, out: &mut BytesMut) -> Result<(), EncodeError> {
    let start = out.len();
    let result = write_v3(msg, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// The length `encode_v3` would produce, for buffer sizing.
///
/// Exact, also past 65535 (where `encode_v3` fails with `TooLarge`). For a
/// message with `payload_compressed` this compresses the payload to learn its
/// size, so it costs as much as the compression.
pub fn encoded_v3_len(msg: &HepMessage) -> usize {
    let payload_len = if msg.payload_compressed {
        zlib(&msg.payload).map_or(msg.payload.len(), |z| z.len())
    } else {
        msg.payload.len()
    };
    len_without_payload(msg).saturating_add(CHUNK_HEADER_LEN + payload_len)
}

/// Typed variable-length (string / bytes) chunks, with their chunk types.
fn bytes_fields(msg: &HepMessage) -> [(u16, Option<&Bytes>); 8] {
    [
        (0x0e, msg.auth_key.as_ref()),
        (0x11, msg.correlation_id.as_ref()),
        (0x13, msg.node_name.as_ref()),
        (0x22, msg.geo_location.as_ref()),
        (0x24, msg.transaction_type.as_ref()),
        (0x25, msg.payload_json_keys.as_ref()),
        (0x26, msg.tag_values.as_ref()),
        (0x29, msg.group_id.as_ref()),
    ]
}

/// Encoded length of an address chunk.
fn addr_chunk_len(ip: &IpAddr) -> usize {
    CHUNK_HEADER_LEN
        + match ip {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 16,
        }
}

/// Everything but the payload chunk.
fn len_without_payload(msg: &HepMessage) -> usize {
    let h = CHUNK_HEADER_LEN;
    // header, family, ip proto, ports, ts sec/usec, proto type, capture id
    let mut n = HEP3_HEADER_LEN + (h + 1) * 2 + (h + 2) * 2 + (h + 4) * 2 + (h + 1) + (h + 4);
    n += addr_chunk_len(&msg.src_ip) + addr_chunk_len(&msg.dst_ip);
    let sizes = [
        msg.keep_alive.map(|_| 2),
        msg.vlan_id.map(|_| 2),
        msg.src_mac.map(|_| 8),
        msg.dst_mac.map(|_| 8),
        msg.ethertype.map(|_| 2),
        msg.tcp_flags.map(|_| 1),
        msg.ip_tos.map(|_| 1),
        msg.mos.map(|_| 2),
        msg.r_factor.map(|_| 2),
        msg.jitter.map(|_| 4),
        msg.tag_type.map(|_| 2),
        msg.event_type.map(|_| 2),
    ];
    n += sizes.iter().flatten().map(|v| h + v).sum::<usize>();
    for (_, value) in bytes_fields(msg) {
        if let Some(v) = value {
            n = n.saturating_add(h + v.len());
        }
    }
    for c in &msg.extra_chunks {
        n = n.saturating_add(h + c.value.len());
    }
    n
}

/// Check every variable-length value fits a chunk.
fn check_values(msg: &HepMessage) -> Result<(), EncodeError> {
    let typed = bytes_fields(msg)
        .into_iter()
        .filter_map(|(t, v)| v.map(|v| (t, v.len())));
    let extra = msg
        .extra_chunks
        .iter()
        .map(|c| (c.chunk_type, c.value.len()));
    let payload = (!msg.payload_compressed).then_some((PAYLOAD, msg.payload.len()));
    for (chunk_type, len) in typed.chain(extra).chain(payload) {
        if len > MAX_VALUE {
            return Err(EncodeError::ChunkTooLarge { chunk_type, len });
        }
    }
    Ok(())
}

/// zlib-compress (RFC 1950) `data`; `None` only if the in-memory compressor
/// reports an error, which it does not for a `Vec` sink.
fn zlib(data: &[u8]) -> Option<Vec<u8>> {
    let mut enc = ZlibEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        Compression::default(),
    );
    enc.write_all(data).ok()?;
    enc.finish().ok()
}

fn put_header(out: &mut BytesMut, chunk_type: u16, value_len: usize) {
    out.put_u16(0);
    out.put_u16(chunk_type);
    // value_len <= MAX_VALUE is checked before anything is written.
    out.put_u16((CHUNK_HEADER_LEN + value_len) as u16);
}

fn put_u8(out: &mut BytesMut, t: u16, v: u8) {
    put_header(out, t, 1);
    out.put_u8(v);
}

fn put_u16(out: &mut BytesMut, t: u16, v: u16) {
    put_header(out, t, 2);
    out.put_u16(v);
}

fn put_u32(out: &mut BytesMut, t: u16, v: u32) {
    put_header(out, t, 4);
    out.put_u32(v);
}

fn put_u64(out: &mut BytesMut, t: u16, v: u64) {
    put_header(out, t, 8);
    out.put_u64(v);
}

fn put_bytes(out: &mut BytesMut, t: u16, v: &[u8]) {
    put_header(out, t, v.len());
    out.put_slice(v);
}

fn put_addr(out: &mut BytesMut, v4_type: u16, ip: &IpAddr) {
    match ip {
        IpAddr::V4(a) => put_bytes(out, v4_type, &a.octets()),
        IpAddr::V6(a) => put_bytes(out, v4_type + 2, &a.octets()),
    }
}

fn write_v3(msg: &HepMessage, out: &mut BytesMut, start: usize) -> Result<(), EncodeError> {
    check_values(msg)?;
    let compressed = if msg.payload_compressed {
        let z = zlib(&msg.payload);
        if let Some(z) = &z {
            if z.len() > MAX_VALUE {
                return Err(EncodeError::ChunkTooLarge {
                    chunk_type: PAYLOAD_ZLIB,
                    len: z.len(),
                });
            }
        }
        z
    } else {
        None
    };
    let payload: (u16, &[u8]) = match &compressed {
        Some(z) => (PAYLOAD_ZLIB, z),
        // (`zlib` cannot fail; if it ever did, the payload goes out plain.)
        None => (PAYLOAD, &msg.payload),
    };
    if payload.1.len() > MAX_VALUE {
        return Err(EncodeError::ChunkTooLarge {
            chunk_type: payload.0,
            len: payload.1.len(),
        });
    }
    let len = len_without_payload(msg).saturating_add(CHUNK_HEADER_LEN + payload.1.len());
    if len > MAX_MESSAGE {
        return Err(EncodeError::TooLarge { len });
    }
    out.reserve(len);

    out.put_slice(&HEP3_MAGIC);
    out.put_u16(len as u16);
    put_u8(out, 0x01, msg.ip_family);
    put_u8(out, 0x02, msg.ip_proto);
    put_addr(out, 0x03, &msg.src_ip);
    put_addr(out, 0x04, &msg.dst_ip);
    put_u16(out, 0x07, msg.src_port);
    put_u16(out, 0x08, msg.dst_port);
    put_u32(out, 0x09, msg.ts_sec);
    put_u32(out, 0x0a, msg.ts_usec);
    put_u8(out, 0x0b, msg.proto_type);
    put_u32(out, 0x0c, msg.capture_id);

    if let Some(v) = msg.keep_alive {
        put_u16(out, 0x0d, v);
    }
    if let Some(v) = &msg.auth_key {
        put_bytes(out, 0x0e, v);
    }
    if let Some(v) = &msg.correlation_id {
        put_bytes(out, 0x11, v);
    }
    if let Some(v) = msg.vlan_id {
        put_u16(out, 0x12, v);
    }
    if let Some(v) = &msg.node_name {
        put_bytes(out, 0x13, v);
    }
    if let Some(v) = msg.src_mac {
        put_u64(out, 0x14, v);
    }
    if let Some(v) = msg.dst_mac {
        put_u64(out, 0x15, v);
    }
    if let Some(v) = msg.ethertype {
        put_u16(out, 0x16, v);
    }
    if let Some(v) = msg.tcp_flags {
        put_u8(out, 0x17, v);
    }
    if let Some(v) = msg.ip_tos {
        put_u8(out, 0x18, v);
    }
    if let Some(v) = msg.mos {
        put_u16(out, 0x20, v);
    }
    if let Some(v) = msg.r_factor {
        put_u16(out, 0x21, v);
    }
    if let Some(v) = &msg.geo_location {
        put_bytes(out, 0x22, v);
    }
    if let Some(v) = msg.jitter {
        put_u32(out, 0x23, v);
    }
    if let Some(v) = &msg.transaction_type {
        put_bytes(out, 0x24, v);
    }
    if let Some(v) = &msg.payload_json_keys {
        put_bytes(out, 0x25, v);
    }
    if let Some(v) = &msg.tag_values {
        put_bytes(out, 0x26, v);
    }
    if let Some(v) = msg.tag_type {
        put_u16(out, 0x27, v);
    }
    if let Some(v) = msg.event_type {
        put_u16(out, 0x28, v);
    }
    if let Some(v) = &msg.group_id {
        put_bytes(out, 0x29, v);
    }
    put_bytes(out, payload.0, payload.1);
    for c in &msg.extra_chunks {
        out.put_u16(c.vendor);
        out.put_u16(c.chunk_type);
        out.put_u16((CHUNK_HEADER_LEN + c.value.len()) as u16);
        out.put_slice(&c.value);
    }
    debug_assert_eq!(out.len() - start, len, "encoded_v3 length accounting");
    Ok(())
}
