//! The blocking half of the file sink: owns the open file, turns a batch of
//! events into NDJSON lines, rotates by hour and size, and applies the
//! `max_files` retention. Plain `std::fs`; the async [`crate::FileSink`]
//! runs it on tokio's blocking pool.
//!
//! Every batch ends with a flush of the write buffer to the OS, so a batch
//! reported delivered is in the page cache (and survives a crash of the
//! process). When a batch fails, what it wrote to the current file is cut
//! off again (the file is truncated to its length before the batch) and
//! the file is closed, so that the engine's retry does not duplicate lines
//! or leave half a line behind; the retry starts a new file. Only lines of
//! a failed batch that went to a file finished by size rotation earlier in
//! the same batch can appear twice.

use crate::config::FileSinkConfig;
use crate::naming::{file_name, parse_file_name, HourKey};
use hepflow_sdk::document::write_document;
use hepflow_sdk::metrics::Counter;
use hepflow_sdk::sink::Delivered;
use hepflow_sdk::{Event, SinkError};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// The time source: when a batch is written (its UTC hour names the file).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// How many successive names are tried when a file name is taken.
const OPEN_ATTEMPTS: u32 = 1000;

/// Counters of the sink's own file handling.
#[derive(Clone, Default)]
pub(crate) struct FileCounters {
    pub opened: Counter,
    pub deleted: Counter,
}

struct OpenFile {
    writer: BufWriter<File>,
    path: PathBuf,
    hour: HourKey,
    seq: u32,
    /// Bytes written to the file so far (flushed or buffered).
    size: u64,
    /// `size` when the current batch started writing to this file.
    batch_start: u64,
}

/// Blocking NDJSON file writer with rotation and retention.
pub(crate) struct FileWriter {
    cfg: FileSinkConfig,
    clock: Clock,
    counters: FileCounters,
    current: Option<OpenFile>,
    line: Vec<u8>,
}

fn io_error(op: &str, path: &Path, e: &std::io::Error) -> SinkError {
    let hint = match e.kind() {
        ErrorKind::StorageFull => {
            "the disk is full: free space, or lower max_files or rotate_bytes; the batch will be retried"
        }
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            "check that hepflow may write to this directory; the batch will be retried"
        }
        _ => "check that the directory exists, is writable and has space; the batch will be retried",
    };
    SinkError::retryable(
        "io",
        format!("file sink: {op} {} failed: {e}; {hint}", path.display()),
    )
}

impl FileWriter {
    pub(crate) fn new(cfg: FileSinkConfig, clock: Clock, counters: FileCounters) -> Self {
        FileWriter {
            cfg,
            clock,
            counters,
            current: None,
            line: Vec::with_capacity(4096),
        }
    }

    /// Create the directory if it is missing.
    pub(crate) fn ensure_dir(&self) -> Result<(), SinkError> {
        std::fs::create_dir_all(&self.cfg.path)
            .map_err(|e| io_error("creating directory", &self.cfg.path, &e))
    }

    /// The file being written, if any.
    #[cfg(test)]
    pub(crate) fn current_path(&self) -> Option<&Path> {
        self.current.as_ref().map(|c| c.path.as_path())
    }

    /// Write one batch as NDJSON lines and flush it to the OS.
    pub(crate) fn write_batch(&mut self, batch: &[Event]) -> Result<Delivered, SinkError> {
        if batch.is_empty() {
            return Ok(Delivered::default());
        }
        if let Some(cur) = self.current.as_mut() {
            cur.batch_start = cur.size;
        }
        let hour = HourKey::from_time((self.clock)());
        let mut line = std::mem::take(&mut self.line);
        let result = self.write_lines(batch, hour, &mut line);
        self.line = line;
        if result.is_err() {
            self.abort_batch();
        }
        result
    }

    fn write_lines(
        &mut self,
        batch: &[Event],
        hour: HourKey,
        line: &mut Vec<u8>,
    ) -> Result<Delivered, SinkError> {
        if self.current.as_ref().is_some_and(|c| c.hour != hour) {
            self.finish_current()?;
        }
        if self.current.is_none() {
            self.open_for_hour(hour)?;
        }
        let mut bytes = 0u64;
        for ev in batch {
            line.clear();
            write_document(ev, line);
            line.push(b'\n');
            let len = line.len() as u64;
            let (size, cur_hour, seq) = match &self.current {
                Some(c) => (c.size, c.hour, c.seq),
                None => self.open_for_hour(hour)?,
            };
            if size > 0 && size.saturating_add(len) > self.cfg.rotate_bytes {
                self.finish_current()?;
                self.open_file(cur_hour, seq.saturating_add(1))?;
            }
            let Some(cur) = self.current.as_mut() else {
                continue; // not reached: a file was opened above
            };
            cur.writer
                .write_all(line)
                .map_err(|e| io_error("writing", &cur.path, &e))?;
            cur.size += len;
            bytes += len;
        }
        if let Some(cur) = self.current.as_mut() {
            cur.writer
                .flush()
                .map_err(|e| io_error("writing", &cur.path, &e))?;
        }
        Ok(Delivered {
            events: batch.len() as u64,
            bytes,
        })
    }

    /// Flush the buffer (and fsync, if configured).
    pub(crate) fn flush(&mut self) -> Result<(), SinkError> {
        let fsync = self.cfg.fsync_on_flush;
        if let Some(cur) = self.current.as_mut() {
            cur.writer
                .flush()
                .map_err(|e| io_error("flushing", &cur.path, &e))?;
            if fsync {
                cur.writer
                    .get_ref()
                    .sync_data()
                    .map_err(|e| io_error("syncing", &cur.path, &e))?;
            }
        }
        Ok(())
    }

    /// Flush and close the current file.
    pub(crate) fn close(&mut self) -> Result<(), SinkError> {
        self.finish_current()
    }

    /// Flush, fsync if configured, and close the current file. On error
    /// the file stays current (for [`Self::abort_batch`]).
    fn finish_current(&mut self) -> Result<(), SinkError> {
        self.flush()?;
        self.current = None;
        Ok(())
    }

    /// Undo what the failed batch wrote to the current file, and close it.
    fn abort_batch(&mut self) {
        let Some(cur) = self.current.take() else {
            return;
        };
        // Drop what is still buffered without writing it.
        let (file, _unwritten) = cur.writer.into_parts();
        if cur.batch_start == 0 {
            drop(file);
            if let Err(e) = std::fs::remove_file(&cur.path) {
                tracing::warn!(path = %cur.path.display(), error = %e, "file sink: cannot remove the file of a failed batch");
            }
        } else if let Err(e) = file.set_len(cur.batch_start) {
            tracing::warn!(path = %cur.path.display(), error = %e, "file sink: cannot cut a failed batch off the file; a partial line may remain");
        }
    }

    /// Open the next free file of `hour`: after the highest sequence number
    /// already on disk for that hour.
    fn open_for_hour(&mut self, hour: HourKey) -> Result<(u64, HourKey, u32), SinkError> {
        let next = self
            .own_files()
            .into_iter()
            .filter(|(h, _, _)| *h == hour)
            .map(|(_, seq, _)| seq.saturating_add(1))
            .max()
            .unwrap_or(0);
        self.open_file(hour, next)?;
        Ok((0, hour, next))
    }

    /// Open file `seq` of `hour`, or the next free one after it; never an
    /// existing file.
    fn open_file(&mut self, hour: HourKey, seq: u32) -> Result<(), SinkError> {
        let mut created_dir = false;
        let mut seq = seq;
        let mut attempts = 0;
        loop {
            let path = self.cfg.path.join(file_name(&self.cfg.prefix, hour, seq));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    self.counters.opened.inc();
                    self.current = Some(OpenFile {
                        writer: BufWriter::with_capacity(self.cfg.buffer_bytes, file),
                        path,
                        hour,
                        seq,
                        size: 0,
                        batch_start: 0,
                    });
                    self.apply_retention();
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    attempts += 1;
                    if attempts >= OPEN_ATTEMPTS || seq == u32::MAX {
                        return Err(SinkError::retryable(
                            "io",
                            format!(
                                "file sink: no free file name for hour {hour} in {} after {OPEN_ATTEMPTS} tries; raise rotate_bytes or move old files away",
                                self.cfg.path.display()
                            ),
                        ));
                    }
                    seq += 1;
                }
                Err(e) if e.kind() == ErrorKind::NotFound && !created_dir => {
                    // The directory went away: make it again, once.
                    created_dir = true;
                    self.ensure_dir()?;
                }
                Err(e) => return Err(io_error("creating", &path, &e)),
            }
        }
    }

    /// This sink's files in its directory (by prefix and name pattern),
    /// oldest first.
    fn own_files(&self) -> Vec<(HourKey, u32, PathBuf)> {
        let mut files = Vec::new();
        let entries = match std::fs::read_dir(&self.cfg.path) {
            Ok(entries) => entries,
            Err(_) => return files,
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((hour, seq)) = parse_file_name(&self.cfg.prefix, name) {
                files.push((hour, seq, entry.path()));
            }
        }
        files.sort();
        files
    }

    /// Delete the oldest of this sink's files beyond `max_files` (never the
    /// file being written). Failures are logged, not fatal: the events are
    /// safely written either way.
    fn apply_retention(&mut self) {
        let Some(max) = self.cfg.max_files else {
            return;
        };
        let current = self.current.as_ref().map(|c| c.path.clone());
        let files = self.own_files();
        let mut excess = files.len().saturating_sub(max);
        for (_, _, path) in files {
            if excess == 0 {
                break;
            }
            if Some(&path) == current.as_ref() {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    self.counters.deleted.inc();
                    tracing::debug!(path = %path.display(), "file sink: deleted by max_files");
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "file sink: cannot delete an old file for max_files");
                }
            }
            excess -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hepflow_sdk::hep::HepMessage;
    use hepflow_sdk::{ReceiveMeta, Transport};

    fn event(text: &'static str) -> Event {
        Event::new(
            HepMessage::new_v3(Bytes::from_static(text.as_bytes())),
            Bytes::new(),
            ReceiveMeta {
                listener: "l".into(),
                transport: Transport::Udp,
                peer: "127.0.0.1:1".parse().unwrap(),
                received_at: SystemTime::UNIX_EPOCH,
            },
        )
    }

    fn writer(dir: &Path) -> FileWriter {
        let cfg = FileSinkConfig {
            path: dir.to_path_buf(),
            ..FileSinkConfig::default()
        };
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_694_400);
        FileWriter::new(cfg, Arc::new(move || t), FileCounters::default())
    }

    #[test]
    fn a_failed_batch_is_cut_off_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path());
        w.write_batch(&[event("one")]).unwrap();
        let path = w.current_path().unwrap().to_path_buf();
        let good = std::fs::read(&path).unwrap();
        // Simulate a failure after part of a second batch was written.
        if let Some(cur) = w.current.as_mut() {
            cur.batch_start = cur.size;
            cur.writer.write_all(b"{\"partial").unwrap();
            cur.writer.flush().unwrap();
        }
        w.abort_batch();
        assert_eq!(std::fs::read(&path).unwrap(), good);
        assert!(w.current_path().is_none());
        // The retry goes to a new file, the old one stays untouched.
        w.write_batch(&[event("two")]).unwrap();
        assert_ne!(w.current_path().unwrap(), path);
        assert!(w
            .current_path()
            .unwrap()
            .ends_with("hep-2026-11-26T12.1.ndjson"));
        assert_eq!(std::fs::read(&path).unwrap(), good);
    }

    #[test]
    fn a_failed_first_batch_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path());
        w.open_for_hour(HourKey::from_time((w.clock)())).unwrap();
        if let Some(cur) = w.current.as_mut() {
            cur.writer.write_all(b"{\"partial").unwrap();
        }
        w.abort_batch();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
