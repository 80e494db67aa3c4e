//! File names of the `file` sink: `PREFIX-YYYY-MM-DDTHH.ndjson` for the
//! first file of a UTC hour, `PREFIX-YYYY-MM-DDTHH.N.ndjson` (N = 1, 2, ...)
//! for the files that size rotation starts within the same hour; and the
//! reverse, recognising this sink's own files for retention.

use chrono::{DateTime, Datelike, Timelike, Utc};
use std::time::SystemTime;

/// File name extension.
pub const EXTENSION: &str = ".ndjson";

/// One UTC hour, `YYYY-MM-DDTHH`; orders by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HourKey {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
}

impl HourKey {
    /// The UTC hour `t` falls in (times before 1970 count as 1970-01-01T00).
    pub fn from_time(t: SystemTime) -> Self {
        let dt: DateTime<Utc> = if t < SystemTime::UNIX_EPOCH {
            DateTime::UNIX_EPOCH
        } else {
            t.into()
        };
        HourKey {
            year: dt.year(),
            month: dt.month(),
            day: dt.day(),
            hour: dt.hour(),
        }
    }

    /// Parse `YYYY-MM-DDTHH` exactly.
    fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 13 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let part = &s[r];
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        let key = HourKey {
            year: i32::try_from(num(0..4)?).ok()?,
            month: num(5..7)?,
            day: num(8..10)?,
            hour: num(11..13)?,
        };
        let valid = (1..=12).contains(&key.month) && (1..=31).contains(&key.day) && key.hour < 24;
        valid.then_some(key)
    }
}

impl std::fmt::Display for HourKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}",
            self.year, self.month, self.day, self.hour
        )
    }
}

/// The name of file number `seq` (0 = first) of `hour`.
pub fn file_name(prefix: &str, hour: HourKey, seq: u32) -> String {
    if seq == 0 {
        format!("{prefix}-{hour}{EXTENSION}")
    } else {
        format!("{prefix}-{hour}.{seq}{EXTENSION}")
    }
}

/// The hour and sequence number of `name` if it is one of the files
/// [`file_name`] makes for `prefix`; `None` for any other file.
pub fn parse_file_name(prefix: &str, name: &str) -> Option<(HourKey, u32)> {
    let rest = name
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .strip_suffix(EXTENSION)?;
    let (hour, seq) = match rest.split_once('.') {
        None => (rest, 0),
        Some((hour, seq)) => {
            // Written without leading zeros and never as ".0".
            if seq.is_empty() || seq.starts_with('0') || !seq.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            (hour, seq.parse().ok()?)
        }
    };
    Some((HourKey::parse(hour)?, seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn names_round_trip() {
        let h = HourKey::from_time(UNIX_EPOCH + Duration::from_secs(1_795_694_400 + 59 * 60));
        assert_eq!(h.to_string(), "2026-11-26T12");
        assert_eq!(file_name("hep", h, 0), "hep-2026-11-26T12.ndjson");
        assert_eq!(file_name("hep", h, 12), "hep-2026-11-26T12.12.ndjson");
        assert_eq!(
            parse_file_name("hep", "hep-2026-11-26T12.ndjson"),
            Some((h, 0))
        );
        assert_eq!(
            parse_file_name("hep", "hep-2026-11-26T12.12.ndjson"),
            Some((h, 12))
        );
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in [
            "hep-2026-11-26T12.ndjson.gz",
            "hep-2026-11-26T12.0.ndjson",
            "hep-2026-11-26T12.01.ndjson",
            "hep-2026-11-26T12..ndjson",
            "hep-2026-11-26T12.x.ndjson",
            "hep-2026-11-26T24.ndjson",
            "hep-2026-13-26T12.ndjson",
            "hep-2026-11-26 12.ndjson",
            "hepx-2026-11-26T12.ndjson",
            "other-2026-11-26T12.ndjson",
            "hep-2026-11-26T12-extra.ndjson",
            "hep-+026-11-26T12.ndjson",
        ] {
            assert_eq!(parse_file_name("hep", name), None, "{name}");
        }
        // A longer prefix sharing the start is someone else's.
        assert_eq!(parse_file_name("hep", "hep-a-2026-11-26T12.ndjson"), None);
        assert!(parse_file_name("hep-a", "hep-a-2026-11-26T12.ndjson").is_some());
    }

    #[test]
    fn hour_keys_order_by_time() {
        let a = HourKey::from_time(UNIX_EPOCH + Duration::from_secs(1_795_694_400));
        let b = HourKey::from_time(UNIX_EPOCH + Duration::from_secs(1_795_694_400 + 3600));
        assert!(a < b);
        assert_eq!(b.to_string(), "2026-11-26T13");
    }
}
