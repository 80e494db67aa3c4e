//! The `file` sink, hepflow's embedded default: every event as one line of
//! NDJSON (the event document of [`hepflow_sdk::document`]) in files under
//! a directory, rotated every UTC hour and by size, with optional
//! retention by file count.
//!
//! Files are named `PREFIX-YYYY-MM-DDTHH.ndjson` after the UTC date and
//! hour the events were written, then `PREFIX-YYYY-MM-DDTHH.1.ndjson`,
//! `.2`, ... when size rotation starts more files within the hour. An
//! existing file is never overwritten or appended to: after a restart
//! writing continues in the next free name of the hour. With `max_files`,
//! the oldest of the sink's own files (matching its prefix and the name
//! pattern; nothing else in the directory) are deleted when a new file
//! starts.
//!
//! # Why `spawn_blocking`
//!
//! File I/O in tokio is blocking I/O (`tokio::fs` itself runs each call on
//! the blocking pool). The sink is called one batch at a time, so the
//! whole batch is handed to the blocking pool in one go: the
//! [`FileWriter`](writer::FileWriter) (a `std::io::BufWriter<File>` plus
//! rotation state) is moved into `tokio::task::spawn_blocking` together
//! with the batch (cheap `Arc` clones of the events), the documents are
//! serialized and written there, and the writer comes back with the
//! result. That costs one hand-off per batch, not per event or per write
//! call as `tokio::fs` would. `block_in_place` would avoid the hand-off but
//! panics on a current-thread runtime (the one `#[tokio::test]` uses) and
//! still stalls the worker it runs on; `spawn_blocking` works on any
//! runtime and never blocks a runtime worker.
//!
//! # Delivery
//!
//! `write` flushes the buffer at the end of every batch, so delivered
//! events are in the OS page cache; `flush` flushes again and, with
//! `fsync_on_flush`, syncs the file to disk (rotation and close sync too).
//! A write error (disk full, permissions) is a retryable `io` error: the
//! part of the batch already in the file is cut off again and the retry
//! starts a new file.
//!
//! [`FileSinkFactory`] builds the sink for `type = "file"`.

mod config;
mod naming;
mod sink;
mod writer;

pub use config::{FileSinkConfig, RotateInterval, MAX_BUFFER_BYTES};
pub use naming::{file_name, parse_file_name, HourKey};
pub use sink::FileSink;
pub use writer::Clock;

use hepflow_sdk::sink::{Sink, SinkContext, TypedSinkFactory};

/// Builds `type = "file"` sinks.
pub struct FileSinkFactory;

impl TypedSinkFactory for FileSinkFactory {
    const KIND: &'static str = "file";
    type Config = FileSinkConfig;

    fn check(config: &FileSinkConfig, path: &str) -> Vec<String> {
        config.check(path)
    }

    fn build_sink(
        config: FileSinkConfig,
        _path: &str,
        ctx: SinkContext,
    ) -> Result<Box<dyn Sink>, String> {
        Ok(Box::new(FileSink::new(config, ctx)))
    }
}
