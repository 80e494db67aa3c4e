//! The pipeline between ingest and sinks: routing a batch of decoded
//! events into the per-sink queues ([`Pipeline`]), and the engine task that
//! drains one queue into its sink ([`run_sink`]): batching, flushing,
//! retries with capped jittered backoff, health, and the drain at shutdown.

use crate::config::SinkCommon;
use crate::route::Router;
use crate::supervise::{panic_message, restarts_counter};
use futures::FutureExt;
use hepflow_sdk::delivery::backoff_delay;
use hepflow_sdk::metrics::{Counter, Histogram, Registry};
use hepflow_sdk::queue::{Popped, SinkQueue};
use hepflow_sdk::ratelimit::LogLimiter;
use hepflow_sdk::sink::{Delivered, Health, Sink, SinkError};
use hepflow_sdk::Event;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// One configured sink as the pipeline sees it.
pub struct SinkSlot {
    /// Configured name.
    pub name: String,
    /// Its queue.
    pub queue: Arc<SinkQueue>,
    /// Its health flag.
    pub health: Health,
}

/// Routes batches of events into the sink queues.
pub struct Pipeline {
    router: Router,
    sinks: Vec<SinkSlot>,
}

impl Pipeline {
    /// A pipeline over `sinks` (index = position) with `router`.
    pub fn new(router: Router, sinks: Vec<SinkSlot>) -> Self {
        Pipeline { router, sinks }
    }

    /// The sinks, in index order.
    pub fn sinks(&self) -> &[SinkSlot] {
        &self.sinks
    }

    fn split(&self, events: Vec<Event>) -> Vec<(usize, Vec<Event>)> {
        let n = self.sinks.len();
        let mut per_sink: Vec<Vec<Event>> = (0..n).map(|_| Vec::new()).collect();
        let mut sets = Vec::with_capacity(events.len());
        for ev in &events {
            sets.push(self.router.route(ev));
        }
        // Reserve once per sink, then fill; the last holder of an event
        // takes it by move.
        for (i, v) in per_sink.iter_mut().enumerate() {
            let c = sets.iter().filter(|s| s.contains(i)).count();
            v.reserve_exact(c);
        }
        for (ev, set) in events.into_iter().zip(sets) {
            let mut last = None;
            for i in 0..n {
                if set.contains(i) {
                    if let Some(prev) = last.replace(i) {
                        per_sink[prev].push(ev.clone());
                    }
                }
            }
            if let Some(i) = last {
                per_sink[i].push(ev);
            }
        }
        per_sink
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }

    /// Route and queue from a plain thread (UDP receive loops); `block`
    /// queues make the thread wait.
    pub fn dispatch_blocking(&self, events: Vec<Event>) {
        for (i, batch) in self.split(events) {
            self.sinks[i].queue.push_blocking(batch);
        }
    }

    /// Route and queue from async code (TCP connections, Kafka source).
    /// Returns true when every routed sink queued every message.
    pub async fn dispatch(&self, events: Vec<Event>) -> bool {
        let mut all = true;
        for (i, batch) in self.split(events) {
            let out = self.sinks[i].queue.push(batch).await;
            all &= out.dropped == 0;
        }
        all
    }

    /// Close every queue (no more pushes).
    pub fn close(&self) {
        for s in &self.sinks {
            s.queue.close();
        }
    }
}

/// Per-sink engine counters.
struct EngineMetrics {
    sent: Counter,
    bytes: Counter,
    retries: Counter,
    dropped_undelivered: Counter,
    latency: Histogram,
}

impl EngineMetrics {
    fn new(r: &Registry, name: &str) -> Self {
        EngineMetrics {
            sent: r.counter(
                "hepflow_sink_sent_total",
                "Messages a sink delivered to its backend",
                &[("sink", name)],
            ),
            bytes: r.counter(
                "hepflow_sink_sent_bytes_total",
                "Bytes a sink wrote to its backend",
                &[("sink", name)],
            ),
            retries: r.counter(
                "hepflow_sink_retries_total",
                "Batch writes retried after a retryable failure",
                &[("sink", name)],
            ),
            dropped_undelivered: undelivered_counter(r, name),
            latency: r.histogram(
                "hepflow_sink_write_seconds",
                "Time of one batch write, including plugin-internal retries",
                &[("sink", name)],
            ),
        }
    }
}

/// `hepflow_sink_dropped_total{reason="shutdown_undelivered"}`: messages
/// still queued (or in a failing write) when the shutdown deadline passed.
pub fn undelivered_counter(r: &Registry, sink: &str) -> Counter {
    r.counter(
        "hepflow_sink_dropped_total",
        "Messages a sink's queue dropped, by reason",
        &[("sink", sink), ("reason", "shutdown_undelivered")],
    )
}

/// Builds a fresh instance of a sink's plugin (after one panicked).
pub type SinkBuilder = Box<dyn Fn() -> Result<Box<dyn Sink>, String> + Send + Sync>;

/// Everything one sink task needs.
pub struct SinkTask {
    /// Sink name.
    pub name: String,
    /// The plugin instance, behind its panic guard.
    pub sink: SinkHost,
    /// Its queue.
    pub queue: Arc<SinkQueue>,
    /// Engine settings.
    pub common: SinkCommon,
    /// Health flag.
    pub health: Health,
    /// Metric registry.
    pub registry: Registry,
    /// Becomes `Some(deadline)` when shutdown starts: after it, retries
    /// stop and what is left is counted as undelivered.
    pub deadline: watch::Receiver<Option<Instant>>,
}

fn past(deadline: &watch::Receiver<Option<Instant>>) -> bool {
    matches!(*deadline.borrow(), Some(d) if Instant::now() >= d)
}

/// Resolves once the shutdown deadline is set and has passed.
async fn until_deadline(deadline: &mut watch::Receiver<Option<Instant>>) {
    loop {
        let current = *deadline.borrow_and_update();
        match current {
            Some(d) => {
                tokio::time::sleep_until(d).await;
                return;
            }
            None => {
                if deadline.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Sleep `d`, cut short when the shutdown deadline passes.
async fn sleep_or_deadline(d: Duration, deadline: &mut watch::Receiver<Option<Instant>>) {
    let until = Instant::now() + d;
    loop {
        let current = *deadline.borrow_and_update();
        let wake = match current {
            Some(dl) if dl < until => dl,
            _ => until,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => return,
            changed = deadline.changed() => if changed.is_err() {
                tokio::time::sleep_until(until).await;
                return;
            }
        }
    }
}

/// The shutdown deadline passed with messages not delivered: with a
/// spool, what is left of the batch in flight and what memory holds are
/// written in front of it (delivered by the next start; see
/// [`SinkQueue::spill_in_flight`]) and nothing is lost; without one, they
/// are dropped and counted as `shutdown_undelivered`. Returns how many
/// were lost.
fn give_up_remaining(
    t: &SinkTask,
    popped: Popped,
    in_flight: Vec<Event>,
    partly_delivered: bool,
    m: &EngineMetrics,
) -> u64 {
    let in_flight_len = in_flight.len() as u64;
    match t.queue.spill_in_flight(popped, in_flight, partly_delivered) {
        Some(spilled) => {
            let records = t.queue.disk().map_or(0, |d| d.records());
            tracing::info!(sink = %t.name, spilled, spool_records = records, "shutdown: messages not delivered in the grace period are in the spool; the next start delivers them");
            0
        }
        None => {
            let n = in_flight_len + t.queue.discard_remaining() as u64;
            m.dropped_undelivered.add(n);
            n
        }
    }
}

/// Drain one sink's queue into the sink until the queue is closed and
/// empty (or the shutdown deadline passes). Returns how many messages it
/// had to give up at shutdown.
pub async fn run_sink(mut t: SinkTask) -> u64 {
    let m = EngineMetrics::new(&t.registry, &t.name);
    let mut log = LogLimiter::default();
    let (initial, max) = (t.common.retry.initial_backoff, t.common.retry.max_backoff);

    // Start: retried until it works; messages queue up meanwhile.
    let mut attempt = 0;
    loop {
        match t.sink.start().await {
            Ok(()) => {
                t.health.set_ready();
                break;
            }
            Err(e) => {
                t.health.set_unready(format!("start failed: {e}"));
                if let Some(n) = log.allow() {
                    tracing::warn!(sink = %t.name, error = %e, suppressed = n, "sink start failed; retrying");
                }
                if past(&t.deadline) {
                    return give_up_remaining(&t, Popped::default(), Vec::new(), false, &m);
                }
                sleep_or_deadline(backoff_delay(attempt, initial, max), &mut t.deadline).await;
                attempt += 1;
            }
        }
    }

    let mut batch = Vec::with_capacity(t.common.batch.max_events);
    let mut flush_tick = tokio::time::interval(t.common.batch.flush_interval);
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut undelivered = 0u64;
    loop {
        batch.clear();
        let popped = tokio::select! {
            got = t.queue.pop_batch(t.common.batch.max_events, t.common.batch.max_wait, &mut batch) => got,
            _ = flush_tick.tick() => {
                // Every tick, written or not: sinks that aggregate over
                // time (InfluxDB) or buffer internally emit from here.
                if let Err(e) = t.sink.flush().await {
                    if let Some(n) = log.allow() {
                        tracing::warn!(sink = %t.name, error = %e, suppressed = n, "sink flush failed");
                    }
                }
                continue;
            }
        };
        let Some(popped) = popped else {
            break;
        };
        let mut attempt = 0;
        let mut in_flight_lost = false;
        // Set once a partial delivery shrank `batch` to what is left.
        let mut reduced = false;
        loop {
            let started = std::time::Instant::now();
            // A write that hangs (a frozen backend) must not hold the
            // shutdown past its deadline: the batch is then given up
            // (spooled, with a spool) before the task is aborted.
            let result = tokio::select! {
                r = t.sink.write(&batch) => r,
                _ = until_deadline(&mut t.deadline) => {
                    in_flight_lost = true;
                    break;
                }
            };
            m.latency.observe(started.elapsed());
            match result {
                Ok(d) => {
                    m.sent.add(d.events);
                    m.bytes.add(d.bytes);
                    t.queue.set_failing(false);
                    if attempt > 0 {
                        t.health.set_ready();
                        tracing::info!(sink = %t.name, attempts = attempt + 1, "sink write succeeded after retries");
                    }
                    break;
                }
                Err(e) if e.retryable => {
                    if let Some(p) = e.partial.as_deref() {
                        m.sent.add(p.delivered.events);
                        m.bytes.add(p.delivered.bytes);
                        keep_positions(&mut batch, &p.retry);
                        reduced = true;
                        if batch.is_empty() {
                            t.queue.set_failing(false);
                            break;
                        }
                    }
                    m.retries.inc();
                    t.queue.set_failing(true);
                    t.health.set_unready(format!("write failing: {e}"));
                    if let Some(n) = log.allow() {
                        tracing::warn!(sink = %t.name, error = %e, suppressed = n, batch = batch.len(), "sink write failed; retrying with backoff");
                    }
                    if past(&t.deadline) {
                        in_flight_lost = true;
                        break;
                    }
                    sleep_or_deadline(backoff_delay(attempt, initial, max), &mut t.deadline).await;
                    attempt += 1;
                }
                Err(e) => {
                    if let Some(p) = e.partial.as_deref() {
                        m.sent.add(p.delivered.events);
                        m.bytes.add(p.delivered.bytes);
                        keep_positions(&mut batch, &p.retry);
                    }
                    hepflow_sdk::sink::failed_counter(&t.registry, &t.name, e.reason)
                        .add(batch.len() as u64);
                    if let Some(n) = log.allow() {
                        tracing::error!(sink = %t.name, error = %e, suppressed = n, dropped = batch.len(), "sink rejected a batch; it is dropped and counted");
                    }
                    break;
                }
            }
        }
        if in_flight_lost {
            // Shutdown with the batch (or what is left of it) undelivered.
            let rest = std::mem::take(&mut batch);
            undelivered += give_up_remaining(&t, popped, rest, reduced, &m);
            break;
        }
        t.queue.done(popped);
        if past(&t.deadline) {
            undelivered += give_up_remaining(&t, Popped::default(), Vec::new(), false, &m);
            break;
        }
    }
    if let Some(disk) = t.queue.disk() {
        disk.checkpoint();
    }
    if let Err(e) = t.sink.close().await {
        tracing::warn!(sink = %t.name, error = %e, "sink close failed");
    }
    undelivered
}

/// Keep only the events at `positions` (ascending, as
/// [`SinkError::with_partial`] leaves them) of `batch`, in order; positions
/// past its end are ignored.
fn keep_positions(batch: &mut Vec<Event>, positions: &[usize]) {
    let mut wanted = positions.iter().copied().peekable();
    let mut i = 0;
    batch.retain(|_| {
        while wanted.next_if(|&p| p < i).is_some() {}
        let keep = wanted.next_if_eq(&i).is_some();
        i += 1;
        keep
    });
}

/// A sink plugin behind a panic guard: a panic in any of its calls is
/// caught, logged with the sink's name, counted
/// (`hepflow_task_restarts_total{task="sink:NAME"}`), shown on `/ready`,
/// and the plugin is built afresh and started again before its next
/// write; the call returns a retryable error, so the engine retries the
/// batch (nothing is lost: it is still in the engine's hands).
pub struct SinkHost {
    sink: Box<dyn Sink>,
    rebuild: SinkBuilder,
    name: String,
    health: Health,
    restarts: Counter,
    started: bool,
}

impl SinkHost {
    /// Guard `sink` of sink `name`; `rebuild` makes a fresh instance.
    pub fn new(
        name: &str,
        sink: Box<dyn Sink>,
        rebuild: SinkBuilder,
        health: Health,
        registry: &Registry,
    ) -> Self {
        SinkHost {
            sink,
            rebuild,
            name: name.to_string(),
            health,
            restarts: restarts_counter(registry, &format!("sink:{name}")),
            started: false,
        }
    }

    fn panicked(&mut self, call: &str, payload: Box<dyn std::any::Any + Send>) -> SinkError {
        let what = panic_message(payload.as_ref());
        self.restarts.inc();
        tracing::error!(sink = %self.name, call, panic = %what, "sink plugin panicked; building it again (the batch is retried)");
        self.health
            .set_unready(format!("the sink panicked in {call}; restarting it"));
        match (self.rebuild)() {
            Ok(fresh) => self.sink = fresh,
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "rebuilding the sink after a panic failed; retrying with the old instance")
            }
        }
        self.started = false;
        SinkError::retryable("panic", format!("the sink panicked in {call}: {what}"))
    }

    async fn start(&mut self) -> Result<(), SinkError> {
        match AssertUnwindSafe(self.sink.start()).catch_unwind().await {
            Ok(r) => {
                self.started = r.is_ok();
                r
            }
            Err(p) => Err(self.panicked("start", p)),
        }
    }

    async fn write(&mut self, batch: &[Event]) -> Result<Delivered, SinkError> {
        if !self.started {
            self.start().await?;
            self.health.set_ready();
        }
        match AssertUnwindSafe(self.sink.write(batch))
            .catch_unwind()
            .await
        {
            Ok(r) => r,
            Err(p) => Err(self.panicked("write", p)),
        }
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if !self.started {
            return Ok(());
        }
        match AssertUnwindSafe(self.sink.flush()).catch_unwind().await {
            Ok(r) => r,
            Err(p) => Err(self.panicked("flush", p)),
        }
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        match AssertUnwindSafe(self.sink.close()).catch_unwind().await {
            Ok(r) => r,
            Err(p) => Err(self.panicked("close", p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WhenFull;
    use hepflow_sdk::queue::QueueMetrics;
    use hepflow_sdk::test_events::{number, numbered};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    /// Fault injection (test-only): panics in its first write ever (over
    /// all its instances), then delivers.
    struct PanicsOnce {
        panicked: Arc<AtomicU64>,
        delivered: Arc<AtomicU64>,
    }

    #[async_trait::async_trait]
    impl Sink for PanicsOnce {
        async fn write(&mut self, batch: &[Event]) -> Result<Delivered, SinkError> {
            if self.panicked.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("injected fault");
            }
            self.delivered
                .fetch_add(batch.len() as u64, Ordering::SeqCst);
            Ok(Delivered {
                events: batch.len() as u64,
                bytes: 0,
            })
        }
    }

    #[tokio::test]
    async fn a_panicking_sink_is_rebuilt_and_its_batch_retried() {
        let registry = Registry::new();
        let queue = Arc::new(SinkQueue::new(
            100,
            WhenFull::Block,
            QueueMetrics::new(&registry, "p"),
        ));
        let msg = hepflow_sdk::HepMessage::new_v3(bytes::Bytes::from_static(b"x"));
        let events: Vec<Event> = (0..10)
            .map(|_| {
                Event::received_over_udp(
                    &msg,
                    "127.0.0.1:1".parse().unwrap(),
                    std::time::SystemTime::now(),
                )
                .unwrap()
            })
            .collect();
        queue.push(events).await;
        let (panicked, delivered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let make = {
            let (p, d) = (panicked.clone(), delivered.clone());
            move || -> Box<dyn Sink> {
                Box::new(PanicsOnce {
                    panicked: p.clone(),
                    delivered: d.clone(),
                })
            }
        };
        let first = make();
        let (_tx, deadline) = watch::channel(None);
        let task = tokio::spawn(run_sink(task_for(
            first,
            Box::new(move || Ok(make())),
            queue.clone(),
            &registry,
            deadline,
        )));
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while delivered.load(Ordering::SeqCst) < 10 && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        queue.close();
        assert_eq!(task.await.unwrap(), 0);
        assert_eq!(
            delivered.load(Ordering::SeqCst),
            10,
            "the batch that panicked was retried"
        );
        assert_eq!(
            registry.value("hepflow_task_restarts_total", &[("task", "sink:p")]),
            Some(1.0)
        );
        assert_eq!(
            registry.value("hepflow_sink_sent_total", &[("sink", "p")]),
            Some(10.0)
        );
    }
    /// Fault injection (test-only): a backend that takes only the
    /// even-numbered messages of the first write it sees and reports the
    /// rest as a partial delivery; with `then_hang`, every later write
    /// hangs (a backend frozen mid-batch), otherwise it takes them all.
    struct HalfThenRest {
        delivered: Arc<Mutex<Vec<usize>>>,
        writes: usize,
        then_hang: bool,
    }

    #[async_trait::async_trait]
    impl Sink for HalfThenRest {
        async fn write(&mut self, batch: &[Event]) -> Result<Delivered, SinkError> {
            self.writes += 1;
            if self.writes == 1 {
                let (even, odd): (Vec<usize>, Vec<usize>) =
                    (0..batch.len()).partition(|&i| number(&batch[i]).is_multiple_of(2));
                self.delivered
                    .lock()
                    .unwrap()
                    .extend(even.iter().map(|&i| number(&batch[i])));
                let d = Delivered {
                    events: even.len() as u64,
                    bytes: 7 * even.len() as u64,
                };
                return Err(SinkError::retryable("overloaded", "half taken").with_partial(d, odd));
            }
            if self.then_hang {
                std::future::pending::<()>().await;
            }
            self.delivered
                .lock()
                .unwrap()
                .extend(batch.iter().map(number));
            Ok(Delivered {
                events: batch.len() as u64,
                bytes: 7 * batch.len() as u64,
            })
        }
    }

    fn task_for(
        sink: Box<dyn Sink>,
        rebuild: SinkBuilder,
        queue: Arc<SinkQueue>,
        registry: &Registry,
        deadline: watch::Receiver<Option<Instant>>,
    ) -> SinkTask {
        let mut common: SinkCommon =
            serde_json::from_value(serde_json::json!({"type": "x"})).unwrap();
        common.retry.initial_backoff = Duration::from_millis(1);
        common.batch.max_events = 100;
        SinkTask {
            name: "p".into(),
            sink: SinkHost::new("p", sink, rebuild, Health::default(), registry),
            queue,
            common,
            health: Health::default(),
            registry: registry.clone(),
            deadline,
        }
    }

    /// Run the engine over `queue` into a [`HalfThenRest`] sink until it
    /// has taken `want` messages (10 s at most): the task, what it took,
    /// and the shutdown deadline's sender.
    async fn run_half_then_rest(
        queue: &Arc<SinkQueue>,
        registry: &Registry,
        then_hang: bool,
        want: usize,
    ) -> (
        tokio::task::JoinHandle<u64>,
        Arc<Mutex<Vec<usize>>>,
        watch::Sender<Option<Instant>>,
    ) {
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let sink = Box::new(HalfThenRest {
            delivered: delivered.clone(),
            writes: 0,
            then_hang,
        });
        let (tx, deadline) = watch::channel(None);
        let task = tokio::spawn(run_sink(task_for(
            sink,
            Box::new(|| Err("no rebuild in this test".into())),
            queue.clone(),
            registry,
            deadline,
        )));
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while delivered.lock().unwrap().len() < want && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (task, delivered, tx)
    }

    #[test]
    fn keep_positions_keeps_what_is_named_in_order() {
        let mut b: Vec<Event> = (0..6).map(numbered).collect();
        keep_positions(&mut b, &[1, 4, 5, 9]);
        assert_eq!(b.iter().map(number).collect::<Vec<_>>(), vec![1, 4, 5]);
        keep_positions(&mut b, &[]);
        assert!(b.is_empty());
    }

    #[tokio::test]
    async fn a_partial_delivery_is_retried_for_the_rest_only() {
        let registry = Registry::new();
        let queue = Arc::new(SinkQueue::new(
            1000,
            WhenFull::Block,
            QueueMetrics::new(&registry, "p"),
        ));
        queue.push((0..40).map(numbered).collect()).await;
        let (task, delivered, _tx) = run_half_then_rest(&queue, &registry, false, 40).await;
        queue.close();
        assert_eq!(task.await.unwrap(), 0);
        let mut got = delivered.lock().unwrap().clone();
        got.sort_unstable();
        assert_eq!(
            got,
            (0..40).collect::<Vec<_>>(),
            "each message exactly once"
        );
        let v = |name: &str| registry.value(name, &[("sink", "p")]);
        assert_eq!(v("hepflow_sink_sent_total"), Some(40.0));
        assert_eq!(v("hepflow_sink_sent_bytes_total"), Some(280.0));
        assert_eq!(v("hepflow_sink_retries_total"), Some(1.0));
    }

    #[tokio::test]
    async fn at_shutdown_only_the_undelivered_rest_of_a_spooled_batch_stays_spooled() {
        use crate::config::{SpoolConfig, SpoolMode};
        use hepflow_sdk::hep::DecodeOptions;
        use hepflow_sdk::queue::disk::DiskTier;
        let dir = tempfile::tempdir().unwrap();
        let open = |r: &Registry| {
            let cfg = SpoolConfig {
                mode: SpoolMode::Always,
                ..SpoolConfig::default()
            };
            let disk = DiskTier::open(
                "p",
                &cfg,
                dir.path().to_path_buf(),
                r,
                DecodeOptions::default(),
            )
            .unwrap();
            Arc::new(
                SinkQueue::new(1000, WhenFull::Block, QueueMetrics::new(r, "p")).with_disk(disk),
            )
        };
        let registry = Registry::new();
        let queue = open(&registry);
        queue.push((0..20).map(numbered).collect()).await;
        let (task, _delivered, tx) = run_half_then_rest(&queue, &registry, true, 10).await;
        // The rest hangs in its retry; shutdown gives it up.
        tokio::time::sleep(Duration::from_millis(50)).await;
        queue.close();
        tx.send(Some(Instant::now())).unwrap();
        assert_eq!(task.await.unwrap(), 0, "nothing lost: the rest is spooled");
        drop(queue);
        let registry = Registry::new();
        let queue = open(&registry);
        let mut left = Vec::new();
        let popped = queue
            .pop_batch(100, Duration::ZERO, &mut left)
            .await
            .unwrap();
        queue.done(popped);
        assert_eq!(
            left.iter().map(number).collect::<Vec<_>>(),
            (0..20).filter(|i| i % 2 == 1).collect::<Vec<_>>(),
            "what was delivered is not delivered again"
        );
        assert_eq!(queue.disk().unwrap().records(), 0);
    }
}
