//! [`HepSink`]: the engine-facing side of the forwarding sink.
//!
//! `start` opens a queue per target (the SDK's queue type, with a spool of
//! its own under the sink's when the sink has one: `[sinks.NAME.spool]`)
//! and starts the targets' tasks. `write` drops loops and puts each
//! message into the queue of every target (`broadcast`) or of the chosen
//! one; it returns as soon as the messages are queued, so a slow or dead
//! target never holds up the others (unless its `when_full = "block"` and
//! it has no spool). What the engine counts as sent
//! (`hepflow_sink_sent_total`) is what went into at least one target
//! queue; what each target really wrote is
//! `hepflow_hep_target_sent_total`. `close` lets the target queues drain
//! for up to `drain_timeout`; what is left then goes to the targets'
//! spools (delivered after the next start) or, without a spool, is
//! dropped and counted (`hepflow_hep_target_dropped_total{reason="shutdown"}`).

use crate::config::{HepSinkConfig, ResolvedTarget};
use crate::metrics::{SinkMetrics, TargetMetrics};
use crate::prepare::Preparer;
use crate::select::target_seed;
use crate::shared::{Phase, Shared, Target, Timing};
use crate::tls::TlsClient;
use crate::worker::{run_target, Leftover};
use async_trait::async_trait;
use hepflow_sdk::metrics::Counter;
use hepflow_sdk::queue::spawn_checkpoints;
use hepflow_sdk::sink::{Delivered, Sink, SinkContext, SinkError};
use hepflow_sdk::supervise::{restarts_counter, supervise};
use hepflow_sdk::Event;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The `hep` forwarding sink.
pub struct HepSink {
    cfg: HepSinkConfig,
    tls: Vec<Option<TlsClient>>,
    ctx: SinkContext,
    /// Built by `start` (it opens the targets' spools).
    shared: Option<Arc<Shared>>,
    /// Loop protection at `write` (the targets' tasks prepare the rest).
    loop_check: Preparer,
    metrics: SinkMetrics,
    encode_failed: Counter,
    tasks: Vec<JoinHandle<Leftover>>,
    checkpoints: Vec<JoinHandle<()>>,
}

impl HepSink {
    /// Build the sink from a checked config; `tls[i]` is the client
    /// config of target `i` (`None` for UDP/TCP). No I/O.
    pub fn new(cfg: &HepSinkConfig, tls: Vec<Option<TlsClient>>, ctx: SinkContext) -> Self {
        HepSink {
            loop_check: Preparer::new(cfg, &ctx.node_name, false),
            metrics: SinkMetrics::new(&ctx.registry, &ctx.name),
            encode_failed: ctx.failed_counter("encode_error"),
            cfg: cfg.clone(),
            tls,
            ctx,
            shared: None,
            tasks: Vec::new(),
            checkpoints: Vec::new(),
        }
    }

    /// Whether target `i` is connected (for tests and tools).
    pub fn is_up(&self, i: usize) -> bool {
        self.shared.as_ref().is_some_and(|s| s.is_up(i))
    }

    /// The target of `rt`, with its queue (and spool).
    fn target(&self, rt: ResolvedTarget, tls: Option<TlsClient>) -> Result<Target, SinkError> {
        let label = rt.url.to_string();
        let m = TargetMetrics::new(&self.ctx.registry, &self.ctx.name, &label);
        let queue = self.ctx.part_queue(
            &label,
            rt.queue_capacity,
            rt.queue_max_bytes,
            rt.when_full,
            m.queue.clone(),
            &[("sink", &self.ctx.name), ("target", &label)],
        )?;
        Ok(Target {
            seed: target_seed(&label),
            queue: Arc::new(queue),
            up: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            last_error: Mutex::new(String::new()),
            m,
            tls,
            label,
            url: rt.url,
        })
    }

    /// Open the targets' queues and start their tasks.
    fn build_targets(&mut self) -> Result<Arc<Shared>, SinkError> {
        let cfg = &self.cfg;
        let mut targets = Vec::new();
        let tls = self.tls.iter().cloned().chain(std::iter::repeat(None));
        for (rt, tls) in cfg.resolved_targets().into_iter().zip(tls) {
            targets.push(self.target(rt, tls)?);
        }
        let reconnect = cfg.reconnect(self.ctx.retry.as_ref(), &format!("sinks.{}", self.ctx.name));
        let timing = Timing {
            connect_timeout: cfg.connect_timeout,
            write_timeout: cfg.write_timeout,
            backoff_initial: reconnect.initial_backoff,
            backoff_max: reconnect.max_backoff,
            max_write_messages: cfg.max_write_messages,
            max_write_bytes: cfg.max_write_bytes,
        };
        let shared = Arc::new(Shared::new(
            self.ctx.name.to_string(),
            targets,
            cfg.mode,
            timing,
            self.ctx.health.clone(),
            cfg.health,
        ));
        let fsync = self.ctx.spool.as_ref().map(|s| s.config.fsync_interval);
        for (i, t) in shared.targets.iter().enumerate() {
            let preparer = Preparer::new(cfg, &self.ctx.node_name, t.url.scheme.is_stream());
            // Supervised: a target task that panics is counted and started
            // again on its queue (a batch it held from memory is lost with
            // it; one read from the spool stays there, not acknowledged, and
            // is delivered after the next start).
            let task = format!("sink:{}:target:{}", self.ctx.name, t.label);
            let restarts = restarts_counter(&self.ctx.registry, &task);
            let (shared, failed) = (shared.clone(), self.encode_failed.clone());
            self.tasks.push(tokio::spawn(async move {
                supervise(&task, &restarts, || {
                    run_target(shared.clone(), i, preparer.clone(), failed.clone())
                })
                .await
            }));
            if let Some(interval) = fsync {
                self.checkpoints
                    .extend(spawn_checkpoints(t.queue.clone(), interval));
            }
        }
        Ok(shared)
    }

    /// After `drain_timeout`: what target `i`'s task still held and what
    /// its queue holds go to its spool, or are dropped and counted.
    /// Returns how many were lost.
    fn give_up(&self, shared: &Shared, i: usize, left: Leftover) -> u64 {
        let t = &shared.targets[i];
        t.queue.close();
        let held = left.events.len();
        let popped = left.popped.unwrap_or_default();
        let lost = match t
            .queue
            .spill_in_flight(popped, left.events, left.partly_done)
        {
            Some(spilled) => {
                if spilled > 0 {
                    tracing::info!(sink = %shared.name, target = %t.label, spilled, "HEP target did not drain within drain_timeout; the rest is in its spool and goes out after the next start");
                }
                0
            }
            None => (held + t.queue.discard_remaining()) as u64,
        };
        t.inflight.store(0, Ordering::Release);
        t.m.connected.set(0);
        if lost > 0 {
            t.m.dropped_shutdown.add(lost);
            tracing::warn!(sink = %shared.name, target = %t.label, undelivered = lost, "HEP target did not drain within drain_timeout; the rest is dropped and counted (give the sink a spool to keep it)");
        }
        lost
    }
}

#[async_trait]
impl Sink for HepSink {
    async fn start(&mut self) -> Result<(), SinkError> {
        if self.shared.is_none() {
            let shared = self.build_targets()?;
            self.shared = Some(shared.clone());
            // Give every target one connect attempt before the first
            // batch, so `hash` mode knows which are up. Never fails:
            // targets that are down are retried in the background.
            let wait = shared.timing.connect_timeout + Duration::from_millis(200);
            let _ = tokio::time::timeout(wait, shared.wait_first_attempts()).await;
        }
        Ok(())
    }

    async fn write(&mut self, batch: &[Event]) -> Result<Delivered, SinkError> {
        let Some(shared) = self.shared.clone() else {
            return Err(SinkError::retryable(
                "not_started",
                "the hep sink is not started",
            ));
        };
        let mut events = Vec::with_capacity(batch.len());
        let mut looped = 0u64;
        for ev in batch {
            if self.loop_check.is_loop(ev) {
                looped += 1;
            } else {
                events.push(ev.clone());
            }
        }
        self.metrics.dropped_loop.add(looped);
        let (events, bytes) = shared.dispatch(events).await;
        Ok(Delivered { events, bytes })
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        // The engine marks the sink ready after `start`; the targets'
        // state decides.
        if let Some(shared) = &self.shared {
            shared.update_health();
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        let Some(shared) = self.shared.clone() else {
            return Ok(());
        };
        shared.phase.send_replace(Phase::Drain);
        let deadline = tokio::time::Instant::now() + self.cfg.drain_timeout;
        let mut tasks: Vec<_> = self.tasks.drain(..).collect();
        let mut left: Vec<Option<Leftover>> = Vec::with_capacity(tasks.len());
        for task in &mut tasks {
            left.push(
                tokio::time::timeout_at(deadline, task)
                    .await
                    .ok()
                    .map(Result::unwrap_or_default),
            );
        }
        if left.iter().any(Option::is_none) {
            // Past drain_timeout: every task stops where it is and hands
            // back what it holds.
            shared.phase.send_replace(Phase::Abandon);
        }
        let mut lost = 0u64;
        for (i, (task, done)) in tasks.into_iter().zip(left).enumerate() {
            let held = match done {
                Some(l) => l,
                None => task.await.unwrap_or_default(),
            };
            lost += self.give_up(&shared, i, held);
        }
        for c in self.checkpoints.drain(..) {
            c.abort();
        }
        for t in &shared.targets {
            if let Some(d) = t.queue.disk() {
                d.checkpoint();
            }
        }
        if lost > 0 {
            return Err(SinkError::fatal(
                "shutdown",
                format!("{lost} messages were left in HEP target queues at shutdown (raise drain_timeout and shutdown.grace_period, give the sink a spool, or check the targets)"),
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
        for c in &self.checkpoints {
            c.abort();
        }
    }
}
