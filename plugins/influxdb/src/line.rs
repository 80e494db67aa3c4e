//! The InfluxDB line protocol encoder: one [`Point`] to one line of
//! `measurement,tag=value field=value timestamp`, written into a `String`.
//!
//! What it guarantees, whatever the input strings hold:
//!
//! - Measurement: commas and spaces are escaped with a backslash (an `=`
//!   needs no escape there).
//! - Tag keys, tag values and field keys: commas, equals signs and spaces
//!   are escaped with a backslash.
//! - String field values are double-quoted, with `"` and `\` escaped.
//! - Integers carry the `i` suffix; floats are written in plain decimal;
//!   NaN and infinite floats (which line protocol cannot carry) are left
//!   out, and a point left without any field is not written at all.
//! - Tags are written sorted by key (byte order, as InfluxDB recommends);
//!   a tag whose key or value ends up empty is left out (line protocol has
//!   no empty tag values).
//! - The timestamp is an integer in nanoseconds (the writers send
//!   `precision=ns`).
//!
//! What line protocol cannot express, and what is done instead:
//!
//! - Newlines, carriage returns and other ASCII control characters are not
//!   allowed in names, tag values or field values: each becomes a space
//!   (escaped where a space needs it).
//! - A backslash is taken literally by InfluxDB unless it precedes a
//!   character that is escaped, and there is no way to write a literal
//!   backslash right before such a character or at the very end of a
//!   name or tag value (the parser would read it as an escape). A run of
//!   backslashes in those positions is dropped; backslashes elsewhere are
//!   kept as they are.

use std::fmt::Write as _;

/// A field value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// A signed integer (`123i`).
    Int(i64),
    /// A float (`1.5`). NaN and infinities are left out of the line.
    Float(f64),
    /// A string (`"text"`).
    Str(&'a str),
    /// A boolean (`true` / `false`).
    Bool(bool),
}

/// One point to encode.
#[derive(Debug, Clone, Copy)]
pub struct Point<'a> {
    /// Measurement name.
    pub measurement: &'a str,
    /// Tags, in any order (written sorted by key).
    pub tags: &'a [(&'a str, &'a str)],
    /// Fields, written in the order given.
    pub fields: &'a [(&'a str, FieldValue<'a>)],
    /// Timestamp in nanoseconds since the Unix epoch; `None` lets the
    /// server stamp the point.
    pub timestamp_ns: Option<i64>,
}

/// Why a point produced no line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The measurement name is empty (after sanitizing).
    EmptyMeasurement,
    /// No field could be written (none given, or all NaN/infinite, or
    /// every field key empty).
    NoFields,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::EmptyMeasurement => f.write_str("point has an empty measurement name"),
            EncodeError::NoFields => f.write_str("point has no writable field"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Which characters an element escapes.
#[derive(Clone, Copy)]
enum Element {
    /// Measurement: comma and space.
    Measurement,
    /// Tag key, tag value, field key: comma, equals sign and space.
    Key,
}

impl Element {
    fn needs_escape(self, c: char) -> bool {
        match self {
            Element::Measurement => c == ',' || c == ' ',
            Element::Key => c == ',' || c == '=' || c == ' ',
        }
    }
}

/// Control characters become spaces.
fn sanitize(c: char) -> char {
    if c.is_ascii_control() {
        ' '
    } else {
        c
    }
}

/// Write `s` escaped for `el`; returns how many bytes were written.
fn write_escaped(out: &mut String, s: &str, el: Element) -> usize {
    let start = out.len();
    // Fast path: nothing to escape or drop.
    if !s
        .bytes()
        .any(|b| b == b'\\' || b.is_ascii_control() || el.needs_escape(b as char))
    {
        out.push_str(s);
        return s.len();
    }
    let mut chars = s.chars().map(sanitize).peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            // A run of backslashes: kept unless it ends the string or
            // precedes an escaped character.
            let mut run = 1;
            while chars.peek() == Some(&'\\') {
                chars.next();
                run += 1;
            }
            match chars.peek() {
                Some(&n) if !el.needs_escape(n) => {
                    for _ in 0..run {
                        out.push('\\');
                    }
                }
                _ => {}
            }
            continue;
        }
        if el.needs_escape(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.len() - start
}

fn write_string_field(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn field_writable(v: &FieldValue<'_>) -> bool {
    !matches!(v, FieldValue::Float(f) if !f.is_finite())
}

fn write_tag(out: &mut String, k: &str, v: &str) {
    let mark = out.len();
    out.push(',');
    if write_escaped(out, k, Element::Key) == 0 {
        out.truncate(mark);
        return;
    }
    out.push('=');
    if write_escaped(out, v, Element::Key) == 0 {
        out.truncate(mark);
    }
}

/// Append the line of `p` (without a trailing newline) to `out`. On error
/// `out` is left as it was.
pub fn encode_point(out: &mut String, p: &Point<'_>) -> Result<(), EncodeError> {
    let mark = out.len();
    if write_escaped(out, p.measurement, Element::Measurement) == 0 {
        out.truncate(mark);
        return Err(EncodeError::EmptyMeasurement);
    }
    let sorted = p.tags.windows(2).all(|w| w[0].0 <= w[1].0);
    if sorted {
        for (k, v) in p.tags {
            write_tag(out, k, v);
        }
    } else {
        let mut tags: Vec<&(&str, &str)> = p.tags.iter().collect();
        tags.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in tags {
            write_tag(out, k, v);
        }
    }
    let mut first = true;
    for (k, v) in p.fields {
        if !field_writable(v) {
            continue;
        }
        let field_mark = out.len();
        out.push(if first { ' ' } else { ',' });
        if write_escaped(out, k, Element::Key) == 0 {
            out.truncate(field_mark);
            continue;
        }
        out.push('=');
        match v {
            FieldValue::Int(i) => {
                let _ = write!(out, "{i}i");
            }
            FieldValue::Float(f) => {
                let _ = write!(out, "{f}");
            }
            FieldValue::Str(s) => write_string_field(out, s),
            FieldValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
        first = false;
    }
    if first {
        out.truncate(mark);
        return Err(EncodeError::NoFields);
    }
    if let Some(ts) = p.timestamp_ns {
        let _ = write!(out, " {ts}");
    }
    Ok(())
}

/// [`encode_point`] into a new `String`.
pub fn encode_to_string(p: &Point<'_>) -> Result<String, EncodeError> {
    let mut s = String::with_capacity(128);
    encode_point(&mut s, p)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(
        m: &str,
        tags: &[(&str, &str)],
        fields: &[(&str, FieldValue<'_>)],
        ts: Option<i64>,
    ) -> String {
        encode_to_string(&Point {
            measurement: m,
            tags,
            fields,
            timestamp_ns: ts,
        })
        .unwrap()
    }

    #[test]
    fn plain_point_with_sorted_tags_and_typed_fields() {
        let l = line(
            "sip_requests",
            &[("node", "kam1"), ("method", "INVITE")],
            &[
                ("count", FieldValue::Int(3)),
                ("mean", FieldValue::Float(1.5)),
                ("ok", FieldValue::Bool(true)),
                ("who", FieldValue::Str("a")),
            ],
            Some(1_700_000_000_000_000_000),
        );
        assert_eq!(
            l,
            "sip_requests,method=INVITE,node=kam1 count=3i,mean=1.5,ok=true,who=\"a\" 1700000000000000000"
        );
    }

    #[test]
    fn escapes_measurement_tags_field_keys_and_strings() {
        let l = line(
            "my meas,x=y",
            &[("tag key", "a b,c=d\"e")],
            &[("f=k ey", FieldValue::Str("say \"hi\" \\ there"))],
            None,
        );
        assert_eq!(
            l,
            r#"my\ meas\,x=y,tag\ key=a\ b\,c\=d"e f\=k\ ey="say \"hi\" \\ there""#
        );
    }

    #[test]
    fn integer_suffix_and_float_forms() {
        let l = line(
            "m",
            &[],
            &[
                ("a", FieldValue::Int(-5)),
                ("b", FieldValue::Float(2.0)),
                ("c", FieldValue::Float(0.000001)),
            ],
            Some(0),
        );
        assert_eq!(l, "m a=-5i,b=2,c=0.000001 0");
    }

    #[test]
    fn non_finite_floats_are_left_out_and_all_bad_fields_refuse_the_point() {
        let l = line(
            "m",
            &[],
            &[
                ("a", FieldValue::Float(f64::NAN)),
                ("b", FieldValue::Int(1)),
            ],
            None,
        );
        assert_eq!(l, "m b=1i");
        let e = encode_to_string(&Point {
            measurement: "m",
            tags: &[("t", "v")],
            fields: &[("a", FieldValue::Float(f64::INFINITY))],
            timestamp_ns: None,
        });
        assert_eq!(e, Err(EncodeError::NoFields));
        let e = encode_to_string(&Point {
            measurement: "\\",
            tags: &[],
            fields: &[("a", FieldValue::Int(1))],
            timestamp_ns: None,
        });
        assert_eq!(e, Err(EncodeError::EmptyMeasurement));
    }

    #[test]
    fn empty_tag_values_are_left_out() {
        let l = line(
            "m",
            &[("a", ""), ("b", "x"), ("", "y")],
            &[("f", FieldValue::Int(1))],
            None,
        );
        assert_eq!(l, "m,b=x f=1i");
    }

    #[test]
    fn control_characters_become_spaces() {
        let l = line(
            "m",
            &[("t", "a\nb\rc\td")],
            &[("f", FieldValue::Str("x\ny"))],
            None,
        );
        assert_eq!(l, "m,t=a\\ b\\ c\\ d f=\"x y\"");
    }

    #[test]
    fn backslashes_before_escapes_and_at_the_end_are_dropped() {
        // kept in the middle, dropped before an escaped char and at the end
        let l = line(
            "m",
            &[("t", "a\\b\\\\,c\\")],
            &[("f", FieldValue::Int(1))],
            None,
        );
        assert_eq!(l, "m,t=a\\b\\,c f=1i");
        // a value of only backslashes is empty: the tag is left out
        let l = line("m", &[("t", "\\\\")], &[("f", FieldValue::Int(1))], None);
        assert_eq!(l, "m f=1i");
    }
}
