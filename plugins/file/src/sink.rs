//! [`FileSink`]: the async [`Sink`] face of the blocking
//! [`FileWriter`](crate::writer::FileWriter). Each call moves the writer
//! onto tokio's blocking pool with `spawn_blocking`, runs the file I/O
//! there, and takes the writer back (see the crate documentation for why).

use crate::config::FileSinkConfig;
use crate::writer::{Clock, FileCounters, FileWriter};
use async_trait::async_trait;
use hepflow_sdk::sink::{Delivered, Sink, SinkContext, SinkError};
use hepflow_sdk::Event;
use std::sync::Arc;
use std::time::SystemTime;

/// The `file` sink: NDJSON event documents in hourly, size-rotated files.
pub struct FileSink {
    cfg: FileSinkConfig,
    clock: Clock,
    counters: FileCounters,
    ctx: SinkContext,
    /// `None` while a blocking call holds it, or after a call was
    /// cancelled or panicked: the next call starts a fresh writer (which
    /// opens a new file, never reusing one).
    writer: Option<FileWriter>,
}

impl FileSink {
    /// A sink writing with the system clock.
    pub fn new(cfg: FileSinkConfig, ctx: SinkContext) -> Self {
        Self::with_clock(cfg, ctx, Arc::new(SystemTime::now))
    }

    /// A sink whose file names follow `clock` (for tests and tools).
    pub fn with_clock(cfg: FileSinkConfig, ctx: SinkContext, clock: Clock) -> Self {
        let labels = [("sink", &*ctx.name)];
        let counters = FileCounters {
            opened: ctx.registry.counter(
                "hepflow_file_sink_files_opened_total",
                "Files the file sink started writing",
                &labels,
            ),
            deleted: ctx.registry.counter(
                "hepflow_file_sink_files_deleted_total",
                "Files the file sink deleted to keep max_files",
                &labels,
            ),
        };
        FileSink {
            cfg,
            clock,
            counters,
            ctx,
            writer: None,
        }
    }

    /// Run `f` with the writer on the blocking pool.
    async fn blocking<T, F>(&mut self, f: F) -> Result<T, SinkError>
    where
        T: Send + 'static,
        F: FnOnce(&mut FileWriter) -> Result<T, SinkError> + Send + 'static,
    {
        let mut writer = self.writer.take().unwrap_or_else(|| {
            FileWriter::new(self.cfg.clone(), self.clock.clone(), self.counters.clone())
        });
        let joined = tokio::task::spawn_blocking(move || {
            let result = f(&mut writer);
            (writer, result)
        })
        .await;
        let result = match joined {
            Ok((writer, result)) => {
                self.writer = Some(writer);
                result
            }
            Err(e) => Err(SinkError::retryable(
                "io",
                format!("file sink: the file I/O task failed ({e}); the batch will be retried in a new file"),
            )),
        };
        match &result {
            Ok(_) if !self.ctx.health.is_ready() => self.ctx.health.set_ready(),
            Ok(_) => {}
            Err(e) => self.ctx.health.set_unready(e.message.clone()),
        }
        result
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn start(&mut self) -> Result<(), SinkError> {
        self.blocking(|w| w.ensure_dir()).await
    }

    async fn write(&mut self, batch: &[Event]) -> Result<Delivered, SinkError> {
        if batch.is_empty() {
            return Ok(Delivered::default());
        }
        // Events are reference-counted: this clones pointers, not messages.
        let batch = batch.to_vec();
        self.blocking(move |w| w.write_batch(&batch)).await
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if self.writer.is_none() {
            return Ok(());
        }
        self.blocking(|w| w.flush()).await
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        if self.writer.is_none() {
            return Ok(());
        }
        self.blocking(|w| w.close()).await
    }
}
