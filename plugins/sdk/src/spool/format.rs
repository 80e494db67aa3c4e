//! The spool's bytes on disk: segment headers, records, the trailer that
//! seals a segment, and the reader-position file. Pure functions over
//! byte slices, so recovery can be tested at every truncation point.
//!
//! ```text
//! segment  = header record* [trailer]
//! header   = "HFSPOOL\x01" id:u64le                               (16 bytes)
//! record   = len:u32le crc:u32le seq:u64le ts_ms:u64le payload    (24 + len)
//! trailer  = 0xffffffff crc:u32le records:u64le next_seq:u64le   (24 bytes)
//! position = "HFSPPOS\x01" n:u32le (id:u64le offset:u64le acked:u64le)*n crc:u32le
//! ```
//!
//! `crc` is CRC32C over everything of the record but the crc field itself
//! (length, sequence, timestamp, payload), so a corrupt length is caught
//! as surely as a corrupt payload.

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"HFSPOOL\x01";
/// Bytes of the segment header.
pub const SEGMENT_HEADER_LEN: u64 = 16;
/// Bytes of a record header (and of the trailer).
pub const RECORD_HEADER_LEN: usize = 24;
/// The length field value that marks a trailer.
const TRAILER_LEN_MARK: u32 = u32::MAX;
/// Largest record payload the spool takes (a HEP message is at most
/// 64 KiB; the rest is receive metadata).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// First bytes of the position file.
const POSITION_MAGIC: &[u8; 8] = b"HFSPPOS\x01";

/// The header of segment `id`.
pub fn segment_header(id: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..].copy_from_slice(&id.to_le_bytes());
    h
}

/// The segment id a header names, or `None` when `bytes` is not a segment
/// header.
pub fn parse_segment_header(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < SEGMENT_HEADER_LEN as usize || &bytes[..8] != SEGMENT_MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(bytes[8..16].try_into().ok()?))
}

fn crc_of(len: u32, rest: &[u8], payload: &[u8]) -> u32 {
    let c = crc32c::crc32c(&len.to_le_bytes());
    let c = crc32c::crc32c_append(c, rest);
    crc32c::crc32c_append(c, payload)
}

/// Append one record to `out`.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, ts_ms: u64, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    out.extend_from_slice(payload);
    seal_record(out, start, seq, ts_ms);
}

/// Fill in the header of the record that starts at `buf[start]`: its
/// `RECORD_HEADER_LEN` header bytes were reserved and its payload is the
/// rest of `buf` (written in place, so it is not copied). The payload must
/// be at most [`MAX_PAYLOAD`] bytes.
pub fn seal_record(buf: &mut [u8], start: usize, seq: u64, ts_ms: u64) {
    let (head, payload) = buf[start..].split_at_mut(RECORD_HEADER_LEN);
    let len = u32::try_from(payload.len()).expect("payload length checked by the caller");
    let mut rest = [0u8; 16];
    rest[..8].copy_from_slice(&seq.to_le_bytes());
    rest[8..].copy_from_slice(&ts_ms.to_le_bytes());
    let crc = crc_of(len, &rest, payload);
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..8].copy_from_slice(&crc.to_le_bytes());
    head[8..].copy_from_slice(&rest);
}

/// Append the trailer that seals a segment of `records` records, after
/// which the log's next sequence number is `next_seq`.
pub fn encode_trailer(out: &mut Vec<u8>, records: u64, next_seq: u64) {
    let mut rest = [0u8; 16];
    rest[..8].copy_from_slice(&records.to_le_bytes());
    rest[8..].copy_from_slice(&next_seq.to_le_bytes());
    let crc = crc_of(TRAILER_LEN_MARK, &rest, &[]);
    out.extend_from_slice(&TRAILER_LEN_MARK.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&rest);
}

/// What the bytes at one offset of a segment hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole, intact record of `size` bytes (header included).
    Record {
        /// Sequence number.
        seq: u64,
        /// Milliseconds since the Unix epoch when it was spooled.
        ts_ms: u64,
        /// The payload.
        payload: &'a [u8],
        /// Header plus payload.
        size: usize,
    },
    /// The trailer: the segment ends here, sealed with this many records.
    Trailer {
        /// Records the writer put in the segment.
        records: u64,
        /// The log's next sequence number when it was sealed.
        next_seq: u64,
    },
    /// Not enough bytes for the whole record (a tail still being written,
    /// or torn by a crash); `need` is how many bytes the record takes, when
    /// its header is there to say.
    Incomplete {
        /// Header plus payload, once the header can be read.
        need: Option<usize>,
    },
    /// A checksum or length that cannot be right: the rest of the segment
    /// is not to be trusted.
    Corrupt,
}

/// Parse what starts at `bytes[0]`.
pub fn parse(bytes: &[u8]) -> Parsed<'_> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Parsed::Incomplete { need: None };
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let rest = &bytes[8..24];
    if len == TRAILER_LEN_MARK {
        if crc_of(len, rest, &[]) != crc {
            return Parsed::Corrupt;
        }
        return Parsed::Trailer {
            records: u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")),
            next_seq: u64::from_le_bytes(rest[8..].try_into().expect("8 bytes")),
        };
    }
    let len = len as usize;
    if len > MAX_PAYLOAD {
        return Parsed::Corrupt;
    }
    let size = RECORD_HEADER_LEN + len;
    if bytes.len() < size {
        return Parsed::Incomplete { need: Some(size) };
    }
    let payload = &bytes[RECORD_HEADER_LEN..size];
    if crc_of(len as u32, rest, payload) != crc {
        return Parsed::Corrupt;
    }
    Parsed::Record {
        seq: u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")),
        ts_ms: u64::from_le_bytes(rest[8..].try_into().expect("8 bytes")),
        payload,
        size,
    }
}

/// How far the reader got in one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentPosition {
    /// Segment id.
    pub id: u64,
    /// Offset of the first record not yet acknowledged.
    pub offset: u64,
    /// Records before that offset.
    pub acked: u64,
}

/// The position file's bytes.
pub fn encode_positions(positions: &[SegmentPosition]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + positions.len() * 24);
    out.extend_from_slice(POSITION_MAGIC);
    out.extend_from_slice(&(positions.len() as u32).to_le_bytes());
    for p in positions {
        out.extend_from_slice(&p.id.to_le_bytes());
        out.extend_from_slice(&p.offset.to_le_bytes());
        out.extend_from_slice(&p.acked.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The positions a position file holds; `None` when it is damaged.
pub fn decode_positions(bytes: &[u8]) -> Option<Vec<SegmentPosition>> {
    if bytes.len() < 16 || &bytes[..8] != POSITION_MAGIC {
        return None;
    }
    let n = u32::from_le_bytes(bytes[8..12].try_into().ok()?) as usize;
    let body_len = 12usize.checked_add(n.checked_mul(24)?)?;
    if bytes.len() != body_len + 4 {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[body_len..].try_into().ok()?);
    if crc32c::crc32c(&bytes[..body_len]) != crc {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for chunk in bytes[12..body_len].chunks_exact(24) {
        let word = |i: usize| u64::from_le_bytes(chunk[i..i + 8].try_into().expect("8 bytes"));
        out.push(SegmentPosition {
            id: word(0),
            offset: word(8),
            acked: word(16),
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_record_round_trips_and_every_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, 1234, b"hello");
        assert_eq!(
            parse(&buf),
            Parsed::Record {
                seq: 7,
                ts_ms: 1234,
                payload: b"hello",
                size: 29
            }
        );
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(parse(&bad), Parsed::Record { .. } | Parsed::Trailer { .. }),
                "bit {bit} flipped went unnoticed"
            );
        }
    }

    #[test]
    fn the_trailer_round_trips() {
        let mut buf = Vec::new();
        encode_trailer(&mut buf, 42, 99);
        assert_eq!(
            parse(&buf),
            Parsed::Trailer {
                records: 42,
                next_seq: 99
            }
        );
        buf[10] ^= 1;
        assert_eq!(parse(&buf), Parsed::Corrupt);
    }

    #[test]
    fn a_huge_length_is_corrupt_not_an_allocation() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, 1, b"x");
        buf[..4].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert_eq!(parse(&buf), Parsed::Corrupt);
    }

    #[test]
    fn positions_round_trip_and_damage_is_refused() {
        let p = vec![
            SegmentPosition {
                id: 1 << 32,
                offset: 16,
                acked: 0,
            },
            SegmentPosition {
                id: (1 << 32) + 1,
                offset: 9000,
                acked: 31,
            },
        ];
        let bytes = encode_positions(&p);
        assert_eq!(decode_positions(&bytes), Some(p));
        for cut in 0..bytes.len() {
            assert_eq!(decode_positions(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad[20] ^= 4;
        assert_eq!(decode_positions(&bad), None);
    }

    proptest! {
        /// A run of records cut at any byte parses as the records wholly
        /// before the cut, then `Incomplete`: never a wrong record, never
        /// a panic.
        #[test]
        fn a_cut_anywhere_yields_the_whole_records_before_it(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
            cut_frac in 0.0f64..1.0,
        ) {
            let mut buf = Vec::new();
            let mut ends = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                encode_record(&mut buf, i as u64, 99, p);
                ends.push(buf.len());
            }
            let cut = ((buf.len() as f64) * cut_frac) as usize;
            let bytes = &buf[..cut];
            let mut at = 0;
            let mut got = 0;
            loop {
                match parse(&bytes[at..]) {
                    Parsed::Record { seq, payload, size, .. } => {
                        prop_assert_eq!(seq, got as u64);
                        prop_assert_eq!(payload, &payloads[got][..]);
                        at += size;
                        got += 1;
                    }
                    Parsed::Incomplete { .. } => break,
                    other => prop_assert!(false, "unexpected {:?} at {}", other, at),
                }
            }
            prop_assert_eq!(got, ends.iter().filter(|&&e| e <= cut).count());
        }

        /// Random bytes never panic the parser and never claim more bytes
        /// than there are.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Parsed::Record { size, .. } = parse(&bytes) {
                prop_assert!(size <= bytes.len());
            }
            let _ = decode_positions(&bytes);
        }
    }
}
