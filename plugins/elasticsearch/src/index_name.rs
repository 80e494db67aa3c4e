//! The index name pattern (`hep-{proto}-%Y.%m.%d`): parsed and checked
//! once at config time, rendered per document from the packet's own
//! timestamp (UTC), and turned into the wildcard the index template
//! matches (`hep-*-*.*.*`).

use chrono::{Datelike, Timelike};
use hepflow_sdk::hep::proto_type_name;
use hepflow_sdk::Event;
use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

/// Longest index name Elasticsearch accepts, in bytes.
pub const MAX_INDEX_NAME_BYTES: usize = 255;

/// One piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    /// `%Y`
    Year,
    /// `%y`
    Year2,
    /// `%m`
    Month,
    /// `%d`
    Day,
    /// `%H`
    Hour,
    /// `%j`
    DayOfYear,
    /// `%G`
    IsoYear,
    /// `%V`
    IsoWeek,
    /// `{proto}`
    Proto,
}

/// A parsed, valid index name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    segs: Vec<Seg>,
}

/// Characters an index name may not contain.
pub fn is_illegal_char(c: char) -> bool {
    matches!(
        c,
        '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':' | ' '
    ) || c.is_control()
        || c.is_whitespace()
}

impl IndexPattern {
    /// Parse and check a pattern; the error says what is wrong and what to do.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err(
                "is empty: give an index name pattern such as \"hep-{proto}-%Y.%m.%d\"".into(),
            );
        }
        let mut segs = Vec::new();
        let mut lit = String::new();
        let mut chars = s.chars().peekable();
        let flush = |lit: &mut String, segs: &mut Vec<Seg>| {
            if !lit.is_empty() {
                segs.push(Seg::Lit(std::mem::take(lit)));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let Some(f) = chars.next() else {
                        return Err("ends with a lone '%': write %% for a literal '%', or remove it".into());
                    };
                    let seg = match f {
                        'Y' => Seg::Year,
                        'y' => Seg::Year2,
                        'm' => Seg::Month,
                        'd' => Seg::Day,
                        'H' => Seg::Hour,
                        'j' => Seg::DayOfYear,
                        'G' => Seg::IsoYear,
                        'V' => Seg::IsoWeek,
                        '%' => {
                            lit.push('%');
                            continue;
                        }
                        'M' | 'S' => {
                            return Err(format!(
                                "%{f} would start a new index every minute or second: use at most %H (hourly indices)"
                            ))
                        }
                        other => {
                            return Err(format!(
                                "%{other} is not supported: use %Y %y %m %d %H %j %G %V (UTC, from the packet's timestamp) or %% for '%'"
                            ))
                        }
                    };
                    flush(&mut lit, &mut segs);
                    segs.push(seg);
                }
                '{' => {
                    let rest: String = chars.clone().take(6).collect();
                    if rest == "proto}" {
                        for _ in 0..6 {
                            chars.next();
                        }
                        flush(&mut lit, &mut segs);
                        segs.push(Seg::Proto);
                    } else {
                        return Err("has an unknown '{...}' placeholder: the only one is {proto}".into());
                    }
                }
                c if c.is_uppercase() => {
                    return Err(format!(
                        "contains the upper-case letter {c:?}: index names must be lower case"
                    ))
                }
                c if is_illegal_char(c) => {
                    return Err(format!(
                        "contains {c:?}, which an index name may not contain (none of \\ / * ? \" < > | , # : or spaces)"
                    ))
                }
                c => lit.push(c),
            }
        }
        flush(&mut lit, &mut segs);
        if let Some(Seg::Lit(first)) = segs.first() {
            if first.starts_with(['-', '_', '+']) {
                return Err("starts with '-', '_' or '+', which an index name may not".into());
            }
            if first.starts_with('.') {
                return Err(
                    "starts with '.': such names are hidden or system indices; start with a letter"
                        .into(),
                );
            }
        }
        let p = IndexPattern { segs };
        let longest = p.longest_len();
        if longest > MAX_INDEX_NAME_BYTES {
            return Err(format!(
                "renders names of up to {longest} bytes: an index name may have at most {MAX_INDEX_NAME_BYTES}"
            ));
        }
        Ok(p)
    }

    /// The longest name this pattern can render.
    fn longest_len(&self) -> usize {
        let proto_max = (0..=255u8)
            .map(|n| proto_type_name(n).map_or(n.to_string().len(), str::len))
            .max()
            .unwrap_or(3);
        self.segs
            .iter()
            .map(|s| match s {
                Seg::Lit(l) => l.len(),
                Seg::Year | Seg::IsoYear => 4,
                Seg::DayOfYear => 3,
                Seg::Proto => proto_max,
                _ => 2,
            })
            .sum()
    }

    /// True when the pattern has no date field or placeholder (one index).
    pub fn is_static(&self) -> bool {
        self.segs.iter().all(|s| matches!(s, Seg::Lit(_)))
    }

    /// The index name for a document at `secs` (UTC seconds since the
    /// epoch) of protocol `proto`, written into `out` (cleared first).
    pub fn render(&self, secs: i64, proto: &str, out: &mut String) {
        out.clear();
        let dt = chrono::DateTime::from_timestamp(secs, 0)
            .filter(|d| (0..=9999).contains(&d.year()))
            .unwrap_or(chrono::DateTime::UNIX_EPOCH);
        for s in &self.segs {
            let _ = match s {
                Seg::Lit(l) => {
                    out.push_str(l);
                    Ok(())
                }
                Seg::Year => write!(out, "{:04}", dt.year()),
                Seg::Year2 => write!(out, "{:02}", dt.year() % 100),
                Seg::Month => write!(out, "{:02}", dt.month()),
                Seg::Day => write!(out, "{:02}", dt.day()),
                Seg::Hour => write!(out, "{:02}", dt.hour()),
                Seg::DayOfYear => write!(out, "{:03}", dt.ordinal()),
                Seg::IsoYear => write!(out, "{:04}", dt.iso_week().year()),
                Seg::IsoWeek => write!(out, "{:02}", dt.iso_week().week()),
                Seg::Proto => {
                    out.push_str(proto);
                    Ok(())
                }
            };
        }
    }

    /// The index of `ev`: from the packet's timestamp (seconds plus carried
    /// microseconds, as in the document's `@timestamp`), or the receive
    /// time when the packet has none; the protocol name or number.
    pub fn render_event(&self, ev: &Event, out: &mut String) {
        let hep = ev.hep();
        let secs = if hep.ts_sec == 0 {
            ev.meta()
                .received_at
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
                .unwrap_or(0)
        } else {
            i64::from(hep.ts_sec) + i64::from(hep.ts_usec / 1_000_000)
        };
        match hep.proto_name() {
            Some(name) => self.render(secs, name, out),
            None => {
                let mut buf = [0u8; 3];
                let n = fmt_u8(hep.proto_type, &mut buf);
                self.render(secs, n, out)
            }
        }
    }

    /// The wildcard pattern of every name this pattern renders, for the
    /// template's `index_patterns` (`hep-{proto}-%Y.%m.%d` -> `hep-*-*.*.*`).
    pub fn wildcard(&self) -> String {
        let mut w = String::new();
        for s in &self.segs {
            match s {
                Seg::Lit(l) => w.push_str(l),
                _ => {
                    if !w.ends_with('*') {
                        w.push('*');
                    }
                }
            }
        }
        w
    }
}

fn fmt_u8(n: u8, buf: &mut [u8; 3]) -> &str {
    let mut i = 3;
    let mut v = n;
    loop {
        i -= 1;
        buf[i] = b'0' + v % 10;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(p: &str, secs: i64, proto: &str) -> String {
        let mut s = String::new();
        IndexPattern::parse(p).unwrap().render(secs, proto, &mut s);
        s
    }

    #[test]
    fn renders_strftime_fields_and_proto() {
        // 2024-12-30T23:10:00Z: ISO week 1 of 2025, day 365 of 2024.
        let t = 1_735_600_200;
        assert_eq!(
            render("hep-{proto}-%Y.%m.%d", t, "sip"),
            "hep-sip-2024.12.30"
        );
        assert_eq!(render("hep-%G.%V", t, "sip"), "hep-2025.01");
        assert_eq!(render("x-%y%j-%H", t, "log"), "x-24365-23");
        assert_eq!(render("a%%b", t, "log"), "a%b");
        assert_eq!(render("hep", t, "log"), "hep");
        assert_eq!(render("{proto}", 0, "rtcp"), "rtcp");
    }

    #[test]
    fn bad_patterns_say_what_to_do() {
        for (p, want) in [
            ("", "is empty"),
            ("Hep-%Y", "upper-case"),
            ("hep-%M", "every minute"),
            ("hep-%Q", "%Q is not supported"),
            ("hep-{node}", "unknown '{...}'"),
            ("hep %Y", "' '"),
            ("hep*", "'*'"),
            ("-hep", "starts with '-'"),
            (".hep", "starts with '.'"),
            ("hep%", "lone '%'"),
            ("hep,x", "','"),
        ] {
            let e = IndexPattern::parse(p).unwrap_err();
            assert!(e.contains(want), "{p:?}: {e}");
        }
        let long = "a".repeat(250) + "{proto}";
        assert!(IndexPattern::parse(&long)
            .unwrap_err()
            .contains("at most 255"));
    }

    #[test]
    fn wildcard_covers_rendered_names() {
        let p = IndexPattern::parse("hep-{proto}-%Y.%m.%d").unwrap();
        assert_eq!(p.wildcard(), "hep-*-*.*.*");
        assert_eq!(
            IndexPattern::parse("hep-%Y%m%d").unwrap().wildcard(),
            "hep-*"
        );
        assert_eq!(IndexPattern::parse("hep").unwrap().wildcard(), "hep");
        assert!(IndexPattern::parse("hep").unwrap().is_static());
    }

    #[test]
    fn numbers_format() {
        let mut b = [0u8; 3];
        assert_eq!(fmt_u8(0, &mut b), "0");
        assert_eq!(fmt_u8(42, &mut b), "42");
        assert_eq!(fmt_u8(255, &mut b), "255");
    }
}
