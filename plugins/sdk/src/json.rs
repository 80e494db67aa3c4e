//! Compact JSON writing for the hot path: a string escaper that skips
//! eight bytes at a time where nothing needs escaping, and a small object
//! writer used by [`crate::document::write_document`].
//!
//! The output is byte for byte what `serde_json`'s compact serializer
//! writes for the same values (the same escapes: `\"`, `\\`, `\b`, `\f`,
//! `\n`, `\r`, `\t`, and `\u00XX` with lower-case hex for the other
//! control characters; nothing else escaped), so documents written here
//! and documents serialized with serde are interchangeable. The tests pin
//! that equality.
//!
//! Why not serde_json's own escaper: it looks every byte up in a table,
//! which profiled as the largest single cost of the file sink (16 % of
//! hepflow's CPU at 150 k msg/s); SIP payloads are long runs of plain
//! text with a CRLF every few dozen bytes.

use std::fmt::Display;
use std::io::Write as _;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The bytes of `w` (little-endian) that are below 0x20, `"` or `\`, as
/// a mask with the high bit of each such byte set. The lowest set bit is
/// exact (the classic "has zero byte" / "has byte less than" word tricks:
/// a borrow can only flag bytes above a real hit), so
/// `mask.trailing_zeros() / 8` is the index of the first byte to escape.
#[inline]
fn escape_mask(w: u64) -> u64 {
    let below_space = w.wrapping_sub(ONES * 0x20) & !w;
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let has_quote = quote.wrapping_sub(ONES) & !quote;
    let has_backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_space | has_quote | has_backslash) & HIGHS
}

/// Append the escape of `b`, a byte for which [`needs_escape`] holds.
fn push_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => 0,
    };
    if short != 0 {
        out.extend_from_slice(&[b'\\', short]);
    } else {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ]);
    }
}

/// True for the bytes JSON strings must escape.
#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Append `s` as a JSON string (quotes included) to `out`: skips eight
/// bytes at a time to the next byte to escape, then copies the run before
/// it in one go.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run_start = 0;
    let mut i = 0;
    loop {
        let next = match bytes[i..].split_first_chunk::<8>() {
            Some((word, _)) => {
                let mask = escape_mask(u64::from_le_bytes(*word));
                if mask == 0 {
                    i += 8;
                    continue;
                }
                i + (mask.trailing_zeros() / 8) as usize
            }
            None => match bytes[i..].iter().position(|&b| needs_escape(b)) {
                Some(at) => i + at,
                None => break,
            },
        };
        out.extend_from_slice(&bytes[run_start..next]);
        push_escape(out, bytes[next]);
        run_start = next + 1;
        i = next + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

/// Writes one JSON object's members in order: `{"a":1,"b":"x"}`.
pub struct ObjectWriter<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> ObjectWriter<'o> {
    /// Start an object (writes `{`).
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    /// Write the key of the next member; `key` must need no escaping
    /// (the document's keys are fixed ASCII names).
    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A string member.
    pub fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        write_str(self.out, value);
    }

    /// A string member whose value is known to need no escaping (ASCII
    /// digits and separators, base64, IP addresses).
    pub fn plain_display(&mut self, key: &str, value: impl Display) {
        self.key(key);
        self.out.push(b'"');
        // Writing to a Vec cannot fail.
        let _ = write!(self.out, "{value}");
        self.out.push(b'"');
    }

    /// An IP address member (IPv4 written digit by digit: `Display` for
    /// addresses goes through the formatter machinery, a measurable share
    /// of a document).
    pub fn ip(&mut self, key: &str, value: std::net::IpAddr) {
        match value {
            std::net::IpAddr::V4(v4) => {
                self.key(key);
                self.out.push(b'"');
                let mut buf = itoa::Buffer::new();
                for (n, octet) in v4.octets().into_iter().enumerate() {
                    if n > 0 {
                        self.out.push(b'.');
                    }
                    self.out.extend_from_slice(buf.format(octet).as_bytes());
                }
                self.out.push(b'"');
            }
            std::net::IpAddr::V6(_) => self.plain_display(key, value),
        }
    }

    /// An unsigned integer member.
    pub fn uint(&mut self, key: &str, value: impl itoa::Integer) {
        self.key(key);
        let mut buf = itoa::Buffer::new();
        self.out.extend_from_slice(buf.format(value).as_bytes());
    }

    /// A boolean member.
    pub fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// The string member `key` if `value` is present.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    /// The integer member `key` if `value` is present.
    pub fn opt_uint(&mut self, key: &str, value: Option<impl itoa::Integer>) {
        if let Some(v) = value {
            self.uint(key, v);
        }
    }

    /// End the object (writes `}`).
    pub fn finish(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ours(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ip_addresses_like_serde_json() {
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "192.168.254.255",
            "::1",
            "2001:db8::5",
            "::ffff:10.1.2.3",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            let mut o = ObjectWriter::new(&mut out);
            o.ip("ip", ip);
            o.finish();
            let want = serde_json::to_string(&serde_json::json!({ "ip": ip })).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn escapes_like_serde_json() {
        let cases = [
            "",
            "plain",
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1\r\n\r\n",
            "quote \" and backslash \\ and slash /",
            "\u{0}\u{1}\u{7}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f} \u{7f}",
            "\"\"\"\"\"\"\"\"\"",
            "12345678\n12345678\\12345678\"",
            "non-ASCII: Grüße, 東京, 😀 and \u{2028}",
        ];
        for s in cases {
            assert_eq!(ours(s), serde_json::to_string(s).unwrap(), "input {s:?}");
        }
    }

    #[test]
    fn every_single_byte_character_escapes_like_serde_json() {
        for c in (0u8..0x80).map(char::from) {
            for len in [1, 7, 8, 9, 17] {
                let mut s = "a".repeat(len);
                s.push(c);
                s.push_str("tail");
                assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "char {c:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn any_string_escapes_like_serde_json(s in ".*") {
            prop_assert_eq!(ours(&s), serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn control_heavy_strings_escape_like_serde_json(
            v in proptest::collection::vec(prop_oneof![
                Just('\r'), Just('\n'), Just('"'), Just('\\'), Just('\u{1}'),
                Just('a'), Just('é'), Just(' ')
            ], 0..64)
        ) {
            let s: String = v.into_iter().collect();
            prop_assert_eq!(ours(&s), serde_json::to_string(&s).unwrap());
        }
    }
}
