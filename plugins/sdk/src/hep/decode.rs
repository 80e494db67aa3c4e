//! HEP v1/v2/v3 decoding and the HEP3 stream framing helper.
//!
//! This is the receive hot path, so it is written to do no heap allocation
//! per message: byte fields (payload, strings, unknown chunks' values) are
//! [`Bytes`] slices of the received buffer (a reference-count increment, no
//! copy). The only allocations are the `extra_chunks` vector when a message
//! carries unknown or vendor chunks, and the inflated buffer of a compressed
//! payload (chunk 0x10), which is bounded by
//! [`DecodeOptions::max_inflated_bytes`].
//!
//! Decisions where the wire format leaves room (see `hep-protocol.md` and the
//! corpus README for the sender quirks behind them):
//!
//! - **v1/v2 header-length byte is ignored.** The layout is derived from the
//!   address family byte alone (IPv4: addresses at 8..16, IPv6: 8..40; the
//!   v2 time block follows, 12 bytes). sngrep's HEPv2 sender writes a wrong
//!   header-length byte and garbage in the two pad bytes of the time block,
//!   so trusting that byte would drop or misparse its messages. The pad bytes
//!   are ignored too. An address family other than 2 or 10 is `BadAddress`.
//! - **v2 time block is little-endian** (seconds, microseconds, u16 capture
//!   id), as Kamailio writes it; the corpus confirms (`d1 07` = 2001).
//! - **HEP3 chunks in any order; a repeated chunk overwrites the earlier
//!   one** ("last wins"), for the payload too.
//! - **HEP3 addresses follow the address family.** IPv4 (0x03/0x04) and IPv6
//!   (0x05/0x06) chunks are collected separately; `src_ip`/`dst_ip` take the
//!   kind the family chunk (0x01) names, falling back to the other kind, and
//!   to the unspecified address of the family when neither was sent. Without
//!   a family chunk the family is inferred from the addresses (IPv4 if any,
//!   else IPv6, else 2). A family value other than 2/10 is kept as received:
//!   HEP3 receivers treat the chunk as informative.
//! - **Missing core chunks are not an error** (they decode as zero / the
//!   unspecified address); only a missing payload is (`MissingPayload`). An
//!   empty payload chunk (length 6) is accepted as an empty payload.
//! - **Fixed-size chunks must have exactly their size** (`BadChunkLength`),
//!   IPv4 addresses 4 bytes and IPv6 addresses 16. sngrep's capture id
//!   quirk (`htons(id)` in the u32) is not undone here: the raw u32 is kept.
//! - **Compressed payload (0x10) is zlib** (RFC 1950, `78 9c` in the wild),
//!   not gzip or raw deflate. Bytes after the end of the zlib stream are
//!   ignored.
//! - Only the `HEP3` magic is accepted (no receiver accepts the draft's
//!   `EEP3`); a HEP3 message must fill the whole buffer (`LengthMismatch`
//!   otherwise), as heplify-server requires.

use super::{DecodeError, DecodeOptions, HepMessage, HepVersion, RawChunk, AF_INET, AF_INET6};
use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The HEP3 magic.
pub(crate) const HEP3_MAGIC: [u8; 4] = *b"HEP3";
/// Length of the HEP3 message header (magic + total length).
pub(crate) const HEP3_HEADER_LEN: usize = 6;
/// Length of a HEP3 chunk header (vendor, type, length).
pub(crate) const CHUNK_HEADER_LEN: usize = 6;

/// Length of the v1/v2 fixed header before the addresses.
const LEGACY_FIXED_LEN: usize = 8;
/// Length of the v2 time block (sec, usec, capture id, pad).
const V2_TIME_LEN: usize = 12;

/// Decode one HEP message (v1, v2 or v3) from a whole datagram or frame.
///
/// The returned message's byte fields are slices of `buf`. Never panics.
pub fn decode(buf: Bytes, opts: &DecodeOptions) -> Result<HepMessage, DecodeError> {
    match buf.first() {
        None => Err(DecodeError::TooShort {
            len: 0,
            need: HEP3_HEADER_LEN,
        }),
        Some(&1) => decode_legacy(buf, HepVersion::V1),
        Some(&2) => decode_legacy(buf, HepVersion::V2),
        Some(&first) => {
            if buf.len() < HEP3_MAGIC.len() {
                // A truncated "HEP3" header is short, anything else is not HEP.
                if HEP3_MAGIC.starts_with(&buf) {
                    return Err(DecodeError::TooShort {
                        len: buf.len(),
                        need: HEP3_HEADER_LEN,
                    });
                }
                return Err(DecodeError::BadMagic { first });
            }
            if !buf.starts_with(&HEP3_MAGIC) {
                return Err(DecodeError::BadMagic { first });
            }
            decode_v3(buf, opts)
        }
    }
}

/// For a stream: `Ok(Some(n))` when `buf` starts with a HEP3 header whose
/// total length is `n` (the frame may not be complete yet), `Ok(None)` when
/// fewer than 6 bytes are buffered, an error when the bytes are not a HEP3
/// header or the length is below 6.
///
/// Errors: `BadMagic` when the first four bytes are not `HEP3`;
/// `LengthMismatch { declared, actual: buf.len() }` when the declared total
/// length is below the 6-byte header (such a stream cannot be resynchronised:
/// close it).
pub fn hep3_frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let [m0, m1, m2, m3, l0, l1, ..] = *buf else {
        return Ok(None);
    };
    if [m0, m1, m2, m3] != HEP3_MAGIC {
        return Err(DecodeError::BadMagic { first: m0 });
    }
    let declared = usize::from(u16::from_be_bytes([l0, l1]));
    if declared < HEP3_HEADER_LEN {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: buf.len(),
        });
    }
    Ok(Some(declared))
}

/// HEPv1 / HEPv2: fixed header, addresses, (v2) time block, payload.
fn decode_legacy(buf: Bytes, version: HepVersion) -> Result<HepMessage, DecodeError> {
    let time_len = if version == HepVersion::V2 {
        V2_TIME_LEN
    } else {
        0
    };
    let data: &[u8] = &buf;
    // byte 1 (header length) is deliberately ignored: see the module doc.
    let [_, _hdr_len, family, ip_proto, sp0, sp1, dp0, dp1, ref rest @ ..] = *data else {
        return Err(DecodeError::TooShort {
            len: data.len(),
            need: LEGACY_FIXED_LEN + 8 + time_len,
        });
    };
    let addr_len = match family {
        AF_INET => 8,
        AF_INET6 => 32,
        _ => {
            return Err(DecodeError::BadAddress {
                detail: "HEP v1/v2 address family is neither 2 (IPv4) nor 10 (IPv6)",
            })
        }
    };
    let need = LEGACY_FIXED_LEN + addr_len + time_len;
    if data.len() < need {
        return Err(DecodeError::TooShort {
            len: data.len(),
            need,
        });
    }
    let too_short = DecodeError::TooShort {
        len: data.len(),
        need,
    };
    let (src_ip, dst_ip, rest) = if family == AF_INET {
        let [a0, a1, a2, a3, b0, b1, b2, b3, ref rest @ ..] = *rest else {
            return Err(too_short);
        };
        (
            IpAddr::V4(Ipv4Addr::new(a0, a1, a2, a3)),
            IpAddr::V4(Ipv4Addr::new(b0, b1, b2, b3)),
            rest,
        )
    } else {
        let (Some(src), Some(dst), Some(rest)) = (
            rest.get(..16).and_then(|s| <[u8; 16]>::try_from(s).ok()),
            rest.get(16..32).and_then(|s| <[u8; 16]>::try_from(s).ok()),
            rest.get(32..),
        ) else {
            return Err(too_short);
        };
        (
            IpAddr::V6(Ipv6Addr::from(src)),
            IpAddr::V6(Ipv6Addr::from(dst)),
            rest,
        )
    };
    let mut msg = HepMessage::new_v3(Bytes::new());
    msg.version = version;
    msg.ip_family = family;
    msg.ip_proto = ip_proto;
    msg.src_ip = src_ip;
    msg.dst_ip = dst_ip;
    msg.src_port = u16::from_be_bytes([sp0, sp1]);
    msg.dst_port = u16::from_be_bytes([dp0, dp1]);
    msg.proto_type = super::proto_type::SIP;
    let payload = if version == HepVersion::V2 {
        let [s0, s1, s2, s3, u0, u1, u2, u3, c0, c1, _pad0, _pad1, ref payload @ ..] = *rest else {
            return Err(too_short);
        };
        msg.ts_sec = u32::from_le_bytes([s0, s1, s2, s3]);
        msg.ts_usec = u32::from_le_bytes([u0, u1, u2, u3]);
        msg.capture_id = u32::from(u16::from_le_bytes([c0, c1]));
        payload
    } else {
        rest
    };
    if payload.is_empty() {
        return Err(DecodeError::MissingPayload);
    }
    let start = data.len() - payload.len();
    msg.payload = buf.slice(start..);
    Ok(msg)
}

/// Value of a fixed-size chunk, or `BadChunkLength`.
#[inline(always)]
fn fixed<const N: usize>(chunk_type: u16, value: &[u8]) -> Result<[u8; N], DecodeError> {
    <[u8; N]>::try_from(value).map_err(|_| DecodeError::BadChunkLength {
        chunk_type,
        len: value.len(),
        expected: N,
    })
}

/// HEPv3: `HEP3`, total length, chunks.
fn decode_v3(buf: Bytes, opts: &DecodeOptions) -> Result<HepMessage, DecodeError> {
    let data: &[u8] = &buf;
    let [_, _, _, _, l0, l1, ..] = *data else {
        return Err(DecodeError::TooShort {
            len: data.len(),
            need: HEP3_HEADER_LEN,
        });
    };
    let declared = usize::from(u16::from_be_bytes([l0, l1]));
    if declared < HEP3_HEADER_LEN || declared != data.len() {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: data.len(),
        });
    }
    let total = data.len();

    let mut msg = HepMessage::new_v3(Bytes::new());
    let mut family: Option<u8> = None;
    let (mut src4, mut dst4) = (None::<Ipv4Addr>, None::<Ipv4Addr>);
    let (mut src6, mut dst6) = (None::<Ipv6Addr>, None::<Ipv6Addr>);
    // (value start, value end, compressed)
    let mut payload: Option<(usize, usize, bool)> = None;

    let mut offset = HEP3_HEADER_LEN;
    while offset < total {
        let rest = data.get(offset..).unwrap_or_default();
        let [v0, v1, t0, t1, c0, c1, ..] = *rest else {
            return Err(DecodeError::ChunkTooShort {
                offset,
                len: rest.len(),
            });
        };
        let len = usize::from(u16::from_be_bytes([c0, c1]));
        if len < CHUNK_HEADER_LEN {
            return Err(DecodeError::ChunkTooShort { offset, len });
        }
        let Some(value) = rest.get(CHUNK_HEADER_LEN..len) else {
            return Err(DecodeError::ChunkOverrun { offset, len, total });
        };
        let vendor = u16::from_be_bytes([v0, v1]);
        let chunk_type = u16::from_be_bytes([t0, t1]);
        let start = offset + CHUNK_HEADER_LEN;
        let end = offset + len;
        // `start..end` lies within `buf` (checked by the `get` above).
        let slice = || buf.slice(start..end);
        if vendor != 0 {
            msg.extra_chunks.push(RawChunk {
                vendor,
                chunk_type,
                value: slice(),
            });
        } else {
            let t = chunk_type;
            match t {
                0x01 => family = Some(fixed::<1>(t, value)?[0]),
                0x02 => msg.ip_proto = fixed::<1>(t, value)?[0],
                0x03 => src4 = Some(Ipv4Addr::from(fixed::<4>(t, value)?)),
                0x04 => dst4 = Some(Ipv4Addr::from(fixed::<4>(t, value)?)),
                0x05 => src6 = Some(Ipv6Addr::from(fixed::<16>(t, value)?)),
                0x06 => dst6 = Some(Ipv6Addr::from(fixed::<16>(t, value)?)),
                0x07 => msg.src_port = u16::from_be_bytes(fixed(t, value)?),
                0x08 => msg.dst_port = u16::from_be_bytes(fixed(t, value)?),
                0x09 => msg.ts_sec = u32::from_be_bytes(fixed(t, value)?),
                0x0a => msg.ts_usec = u32::from_be_bytes(fixed(t, value)?),
                0x0b => msg.proto_type = fixed::<1>(t, value)?[0],
                0x0c => msg.capture_id = u32::from_be_bytes(fixed(t, value)?),
                0x0d => msg.keep_alive = Some(u16::from_be_bytes(fixed(t, value)?)),
                0x0e => msg.auth_key = Some(slice()),
                0x0f => payload = Some((start, end, false)),
                0x10 => payload = Some((start, end, true)),
                0x11 => msg.correlation_id = Some(slice()),
                0x12 => msg.vlan_id = Some(u16::from_be_bytes(fixed(t, value)?)),
                0x13 => msg.node_name = Some(slice()),
                0x14 => msg.src_mac = Some(u64::from_be_bytes(fixed(t, value)?)),
                0x15 => msg.dst_mac = Some(u64::from_be_bytes(fixed(t, value)?)),
                0x16 => msg.ethertype = Some(u16::from_be_bytes(fixed(t, value)?)),
                0x17 => msg.tcp_flags = Some(fixed::<1>(t, value)?[0]),
                0x18 => msg.ip_tos = Some(fixed::<1>(t, value)?[0]),
                0x20 => msg.mos = Some(u16::from_be_bytes(fixed(t, value)?)),
                0x21 => msg.r_factor = Some(u16::from_be_bytes(fixed(t, value)?)),
                0x22 => msg.geo_location = Some(slice()),
                0x23 => msg.jitter = Some(u32::from_be_bytes(fixed(t, value)?)),
                0x24 => msg.transaction_type = Some(slice()),
                0x25 => msg.payload_json_keys = Some(slice()),
                0x26 => msg.tag_values = Some(slice()),
                0x27 => msg.tag_type = Some(u16::from_be_bytes(fixed(t, value)?)),
                0x28 => msg.event_type = Some(u16::from_be_bytes(fixed(t, value)?)),
                0x29 => msg.group_id = Some(slice()),
                _ => msg.extra_chunks.push(RawChunk {
                    vendor,
                    chunk_type,
                    value: slice(),
                }),
            }
        }
        offset = end;
    }

    let family = family.unwrap_or(
        if src4.is_some() || dst4.is_some() || (src6, dst6) == (None, None) {
            AF_INET
        } else {
            AF_INET6
        },
    );
    msg.ip_family = family;
    msg.src_ip = pick_addr(family, src4, src6);
    msg.dst_ip = pick_addr(family, dst4, dst6);

    match payload {
        None => return Err(DecodeError::MissingPayload),
        Some((start, end, false)) => msg.payload = buf.slice(start..end),
        Some((start, end, true)) => {
            let compressed = data.get(start..end).unwrap_or_default();
            msg.payload = Bytes::from(inflate_bounded(compressed, opts.max_inflated_bytes)?);
            msg.payload_compressed = true;
        }
    }
    Ok(msg)
}

/// The address of the kind the family names, else the other kind, else the
/// family's unspecified address.
#[inline]
fn pick_addr(family: u8, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) -> IpAddr {
    let v4 = v4.map(IpAddr::V4);
    let v6 = v6.map(IpAddr::V6);
    if family == AF_INET6 {
        v6.or(v4).unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    } else {
        v4.or(v6).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

/// Inflate a zlib stream into at most `limit` bytes.
///
/// The output vector never grows past `limit` bytes of capacity, whatever the
/// stream claims: it starts small and doubles up to the bound; when the bound
/// is reached, a one-byte probe tells whether the stream has more output
/// (`InflatedTooLarge`) or ends exactly there. Truncated or corrupt streams
/// are `Inflate` errors. The loop ends because each pass either consumes
/// input, produces output (bounded), or returns.
pub(crate) fn inflate_bounded(input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut z = Decompress::new(true);
    let initial = input
        .len()
        .saturating_mul(4)
        .clamp(256, 64 * 1024)
        .min(limit);
    let mut out: Vec<u8> = Vec::with_capacity(initial);
    let inflate_err = |e: flate2::DecompressError| DecodeError::Inflate(e.to_string());
    loop {
        let in_before = z.total_in();
        let out_before = z.total_out();
        let remaining = usize::try_from(in_before)
            .ok()
            .and_then(|n| input.get(n..))
            .unwrap_or_default();
        if out.len() >= out.capacity() {
            if out.len() < limit {
                let target = out.capacity().saturating_mul(2).clamp(256, limit);
                out.reserve_exact(target - out.len());
                continue;
            }
            // At the bound: does the stream have anything more to give?
            let mut probe = [0u8; 1];
            let status = z
                .decompress(remaining, &mut probe, FlushDecompress::None)
                .map_err(inflate_err)?;
            if z.total_out() > out_before {
                return Err(DecodeError::InflatedTooLarge { limit });
            }
            if status == Status::StreamEnd {
                return Ok(out);
            }
            if z.total_in() == in_before {
                return Err(DecodeError::Inflate("truncated zlib stream".to_string()));
            }
            continue;
        }
        let status = z
            .decompress_vec(remaining, &mut out, FlushDecompress::None)
            .map_err(inflate_err)?;
        if out.len() > limit {
            // Only if the allocator handed out more capacity than asked for.
            return Err(DecodeError::InflatedTooLarge { limit });
        }
        if status == Status::StreamEnd {
            return Ok(out);
        }
        let progressed = z.total_in() != in_before || z.total_out() != out_before;
        if !progressed && out.len() < out.capacity() {
            return Err(DecodeError::Inflate("truncated zlib stream".to_string()));
        }
    }
}
