//! The `file` sink's configuration section and its value checks. The doc
//! comments of [`FileSinkConfig`] are the user documentation of the keys.

use serde::Deserialize;
use std::path::PathBuf;

/// Largest accepted `buffer_bytes` (64 MiB).
pub const MAX_BUFFER_BYTES: usize = 64 << 20;

/// Configuration of a `type = "file"` sink: NDJSON event documents, one
/// per line, in hourly files that also rotate by size.
///
/// ```toml
/// [sinks.files]
/// type = "file"
/// path = "/var/lib/hepflow"
/// prefix = "hep"
/// rotate_bytes = 268435456
/// max_files = 168
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Directory the files are written to; created at start if missing.
    /// Default `./data`.
    #[serde(default = "default_path")]
    pub path: PathBuf,

    /// File name prefix: files are named `PREFIX-YYYY-MM-DDTHH.ndjson`
    /// (the UTC date and hour the events were written), then
    /// `PREFIX-YYYY-MM-DDTHH.1.ndjson`, `.2`, ... when a file reaches
    /// `rotate_bytes` within the hour. Give each file sink writing to the
    /// same directory its own prefix. Default `hep`.
    #[serde(default = "default_prefix")]
    pub prefix: String,

    /// Start a new file before one would grow past this many bytes (a
    /// single event larger than this still gets a file of its own).
    /// Default 268435456 (256 MiB).
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: u64,

    /// Time-based rotation. Only `"hourly"` (the default) exists: a new
    /// file starts with each UTC hour.
    #[serde(default)]
    pub rotate_interval: RotateInterval,

    /// Keep at most this many of this sink's files (those named with its
    /// prefix in `path`), deleting the oldest when a new file is started.
    /// Unset (the default) keeps every file.
    #[serde(default)]
    pub max_files: Option<usize>,

    /// Call `fsync` on the file at every flush, rotation and close, so that
    /// flushed events survive a power loss, at the cost of disk latency.
    /// Default `false` (events reach the OS page cache at every write).
    #[serde(default)]
    pub fsync_on_flush: bool,

    /// Size of the in-memory write buffer, in bytes. Default 65536.
    #[serde(default = "default_buffer_bytes")]
    pub buffer_bytes: usize,
}

/// How often a new file is started regardless of size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RotateInterval {
    /// With each UTC hour.
    #[default]
    Hourly,
}

fn default_path() -> PathBuf {
    PathBuf::from("./data")
}
fn default_prefix() -> String {
    "hep".to_string()
}
fn default_rotate_bytes() -> u64 {
    256 << 20
}
fn default_buffer_bytes() -> usize {
    64 << 10
}

impl Default for FileSinkConfig {
    fn default() -> Self {
        FileSinkConfig {
            path: default_path(),
            prefix: default_prefix(),
            rotate_bytes: default_rotate_bytes(),
            rotate_interval: RotateInterval::Hourly,
            max_files: None,
            fsync_on_flush: false,
            buffer_bytes: default_buffer_bytes(),
        }
    }
}

impl FileSinkConfig {
    /// Check values serde cannot: every problem, each naming the key's full
    /// path under `path` (`sinks.NAME`) and what to do.
    pub fn check(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if self.path.as_os_str().is_empty() {
            errors.push(format!(
                "{path}.path is empty: give the directory to write files to (default \"./data\")"
            ));
        }
        if self.prefix.is_empty() {
            errors.push(format!(
                "{path}.prefix is empty: give a file name prefix such as \"hep\""
            ));
        } else if self.prefix.contains(['/', '\\', '\0'])
            || self.prefix == "."
            || self.prefix == ".."
        {
            errors.push(format!(
                "{path}.prefix {:?} is not a plain file name: remove path separators; put the directory in {path}.path",
                self.prefix
            ));
        }
        if self.rotate_bytes == 0 {
            errors.push(format!(
                "{path}.rotate_bytes is 0: give the largest file size in bytes (default 268435456 = 256 MiB)"
            ));
        }
        if self.max_files == Some(0) {
            errors.push(format!(
                "{path}.max_files is 0: give at least 1, or remove the key to keep every file"
            ));
        }
        if self.buffer_bytes == 0 || self.buffer_bytes > MAX_BUFFER_BYTES {
            errors.push(format!(
                "{path}.buffer_bytes is {}: give a size between 1 and {MAX_BUFFER_BYTES} bytes (default 65536)",
                self.buffer_bytes
            ));
        }
        errors
    }
}
