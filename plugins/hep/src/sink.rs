//! [`HepSink`]: the engine-facing side of the forwarding sink.
//!
//! `write` prepares each message of the batch once (pass-through or
//! HEPv3, loop protection, the hash key) and puts it into the queue of
//! every target (`broadcast`) or of the chosen one; it returns as soon as
//! the messages are queued, so a slow or dead target never holds up the
//! others (unless its `when_full = "block"`). What the engine counts as
//! sent (`hepflow_sink_sent_total`) is what went into at least one target
//! queue; what each target really wrote is
//! `hepflow_hep_target_sent_total`. `close` lets the target queues drain
//! for up to `drain_timeout`.

use crate::config::{HepSinkConfig, Mode};
use crate::metrics::{SinkMetrics, TargetMetrics};
use crate::prepare::{Preparer, Skip};
use crate::queue::TargetQueue;
use crate::select::{key_hash, target_seed};
use crate::shared::{Shared, Target, Timing};
use crate::tls::TlsClient;
use crate::worker::run_target;
use async_trait::async_trait;
use hepflow_sdk::metrics::Counter;
use hepflow_sdk::ratelimit::LogLimiter;
use hepflow_sdk::sink::{Delivered, Sink, SinkContext, SinkError};
use hepflow_sdk::Event;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The `hep` forwarding sink.
pub struct HepSink {
    shared: Arc<Shared>,
    preparer: Preparer,
    metrics: SinkMetrics,
    encode_failed: Counter,
    tasks: Vec<JoinHandle<()>>,
    drain_timeout: Duration,
    log: LogLimiter,
}

impl HepSink {
    /// Build the sink from a checked config; `tls[i]` is the client
    /// config of target `i` (`None` for UDP/TCP). No I/O.
    pub fn new(cfg: &HepSinkConfig, tls: Vec<Option<TlsClient>>, ctx: SinkContext) -> Self {
        let resolved = cfg.resolved_targets();
        let need_stream = resolved.iter().any(|t| t.url.scheme.is_stream());
        let targets: Vec<Target> = resolved
            .into_iter()
            .zip(tls.into_iter().chain(std::iter::repeat(None)))
            .map(|(rt, tls)| {
                let label = rt.url.to_string();
                let m = TargetMetrics::new(&ctx.registry, &ctx.name, &label);
                Target {
                    seed: target_seed(&label),
                    queue: TargetQueue::new(rt.queue_capacity, rt.queue_max_bytes, m.queue.clone()),
                    when_full: rt.when_full,
                    up: AtomicBool::new(false),
                    inflight: AtomicUsize::new(0),
                    last_error: Mutex::new(String::new()),
                    m,
                    tls,
                    label,
                    url: rt.url,
                }
            })
            .collect();
        let timing = Timing {
            connect_timeout: cfg.connect_timeout,
            write_timeout: cfg.write_timeout,
            backoff_initial: cfg.reconnect_initial_backoff,
            backoff_max: cfg.reconnect_max_backoff,
            max_write_messages: cfg.max_write_messages,
            max_write_bytes: cfg.max_write_bytes,
        };
        let shared = Arc::new(Shared::new(
            ctx.name.to_string(),
            targets,
            cfg.mode,
            timing,
            ctx.health.clone(),
            cfg.health,
        ));
        HepSink {
            preparer: Preparer::new(cfg, &ctx.node_name, need_stream),
            metrics: SinkMetrics::new(&ctx.registry, &ctx.name),
            encode_failed: ctx.failed_counter("encode_error"),
            shared,
            tasks: Vec::new(),
            drain_timeout: cfg.drain_timeout,
            log: LogLimiter::default(),
        }
    }

    /// Whether target `i` is connected (for tests and tools).
    pub fn is_up(&self, i: usize) -> bool {
        self.shared.is_up(i)
    }
}

#[async_trait]
impl Sink for HepSink {
    async fn start(&mut self) -> Result<(), SinkError> {
        if self.tasks.is_empty() {
            for i in 0..self.shared.targets.len() {
                self.tasks
                    .push(tokio::spawn(run_target(self.shared.clone(), i)));
            }
            // Give every target one connect attempt before the first
            // batch, so `hash` mode knows which are up. Never fails:
            // targets that are down are retried in the background.
            let wait = self.shared.timing.connect_timeout + Duration::from_millis(200);
            let _ = tokio::time::timeout(wait, self.shared.wait_first_attempts()).await;
        }
        Ok(())
    }

    async fn write(&mut self, batch: &[Event]) -> Result<Delivered, SinkError> {
        let hash = self.shared.mode == Mode::Hash;
        let mut msgs = Vec::with_capacity(batch.len());
        let (mut looped, mut failed) = (0u64, 0u64);
        for ev in batch {
            match self.preparer.prepare(ev) {
                Ok(mut m) => {
                    if hash {
                        m.key = key_hash(ev);
                    }
                    msgs.push(m);
                }
                Err(Skip::Loop) => looped += 1,
                Err(Skip::Encode(e)) => {
                    failed += 1;
                    if let Some(n) = self.log.allow() {
                        tracing::warn!(sink = %self.shared.name, error = %e, suppressed = n, "a message cannot be encoded as HEPv3; it is dropped and counted (hepflow_sink_failed_total{{reason=\"encode_error\"}})");
                    }
                }
            }
        }
        self.metrics.dropped_loop.add(looped);
        self.encode_failed.add(failed);
        let (events, bytes) = self.shared.dispatch(msgs).await;
        Ok(Delivered { events, bytes })
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        // The engine marks the sink ready after `start`; the targets'
        // state decides.
        self.shared.update_health();
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        for t in &self.shared.targets {
            t.queue.close();
        }
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        let mut left = 0u64;
        for (i, task) in self.tasks.iter_mut().enumerate() {
            if tokio::time::timeout_at(deadline, &mut *task).await.is_err() {
                task.abort();
                let t = &self.shared.targets[i];
                let n = (t.queue.abandon() + t.inflight.swap(0, Ordering::AcqRel)) as u64;
                t.m.dropped_shutdown.add(n);
                t.m.connected.set(0);
                left += n;
                if n > 0 {
                    tracing::warn!(sink = %self.shared.name, target = %t.label, undelivered = n, "HEP target did not drain within drain_timeout; the rest is dropped and counted");
                }
            }
        }
        self.tasks.clear();
        // Whatever is still queued now (handed on to a target whose task
        // had already finished) will not be sent either.
        for t in &self.shared.targets {
            let n = t.queue.abandon() as u64;
            if n > 0 {
                t.m.dropped_shutdown.add(n);
                left += n;
                tracing::warn!(sink = %self.shared.name, target = %t.label, undelivered = n, "messages handed to a HEP target after it had drained; dropped and counted");
            }
        }
        if left > 0 {
            return Err(SinkError::fatal(
                "shutdown",
                format!("{left} messages were left in HEP target queues at shutdown (raise drain_timeout and shutdown.grace_period, or check the targets)"),
            ));
        }
        Ok(())
    }
}

impl Drop for HepSink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
