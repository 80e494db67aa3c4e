//! `[sinks.NAME.spool]`: the disk spool behind a sink's memory queue, its
//! checks, and the byte sizes it is given in (`"8GiB"` or a number).

use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// When a sink's messages go to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpoolMode {
    /// Memory only: what the queue cannot hold is handled by `when_full`.
    #[default]
    Off,
    /// Memory first; to disk when the memory queue is full or the sink is
    /// failing, and until the disk backlog is delivered. A healthy sink
    /// never touches the disk.
    Overflow,
    /// Every message is written to disk before it counts as queued
    /// (write-ahead): nothing read from the socket is lost to a crash of
    /// hepflow.
    Always,
}

/// `[sinks.NAME.spool]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// `off` (default), `overflow` or `always`.
    pub mode: SpoolMode,
    /// Its directory (default `<node.data_dir>/spool/<sink name>`); one
    /// sink and one hepflow process per directory (it is locked).
    pub dir: Option<PathBuf>,
    /// Disk the spool may use at most (`"8GiB"` or bytes); past it the
    /// queue's `when_full` applies and drops are counted.
    #[serde(deserialize_with = "byte_size")]
    pub max_bytes: u64,
    /// Size of one segment file (records never span two; a segment is
    /// deleted once delivered whole).
    #[serde(deserialize_with = "byte_size")]
    pub segment_bytes: u64,
    /// How often what was written is fsynced (and the reader position
    /// stored). An operating-system crash or power loss can lose up to
    /// this much; a crash of hepflow alone loses nothing written.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            mode: SpoolMode::Off,
            dir: None,
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            fsync_interval: Duration::from_millis(100),
        }
    }
}

/// Smallest `segment_bytes` (a record is at most one HEP message of
/// 64 KiB plus its receive metadata).
pub const MIN_SEGMENT_BYTES: u64 = 1 << 20;

impl SpoolConfig {
    /// The directory this sink's spool uses.
    pub fn dir_for(&self, data_dir: &Path, sink: &str) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| data_dir.join("spool").join(sink))
    }

    /// Every problem with the values, each naming `path.KEY`.
    pub fn check(&self, path: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.mode == SpoolMode::Off {
            return problems;
        }
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            problems.push(format!(
                "{path}.segment_bytes: {} is too small; give at least 1MiB (default 64MiB)",
                self.segment_bytes
            ));
        }
        if self.max_bytes < 2 * self.segment_bytes {
            problems.push(format!(
                "{path}.max_bytes: {} is less than two segments ({} each); raise max_bytes or lower segment_bytes",
                self.max_bytes, self.segment_bytes
            ));
        }
        if self.fsync_interval.is_zero() || self.fsync_interval > Duration::from_secs(60) {
            problems.push(format!(
                "{path}.fsync_interval: must be between 1ms and 60s (default 100ms)"
            ));
        }
        problems
    }
}

/// A byte size: a number of bytes, or a string such as `"512MiB"`,
/// `"8GiB"`, `"10GB"`, `"65536"`.
pub fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(s) => parse_byte_size(&s).map_err(serde::de::Error::custom),
    }
}

/// Parse `"8GiB"`-style sizes (binary KiB/MiB/GiB/TiB, decimal KB/MB/GB/TB,
/// or plain bytes).
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}` (use bytes, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
            ))
        }
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as \"8GiB\" or 1048576"))?;
    let bytes = value * mult as f64;
    if !(0.0..1.8e19).contains(&bytes) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_byte_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_byte_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_byte_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_byte_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_byte_size("65536"), Ok(65536));
        assert!(parse_byte_size("8 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_byte_size("GiB").is_err());
    }

    #[test]
    fn checks_name_the_key_and_what_to_do() {
        let c = SpoolConfig {
            mode: SpoolMode::Overflow,
            max_bytes: 3 << 20,
            segment_bytes: 2 << 20,
            ..SpoolConfig::default()
        };
        assert_eq!(
            c.check("sinks.lake.spool"),
            ["sinks.lake.spool.max_bytes: 3145728 is less than two segments (2097152 each); raise max_bytes or lower segment_bytes"]
        );
        let off = SpoolConfig {
            max_bytes: 0,
            ..SpoolConfig::default()
        };
        assert!(off.check("x").is_empty(), "nothing is checked when off");
    }
}
