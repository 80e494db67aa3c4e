//! The bounded queue in front of each sink: memory first, and with a
//! spool (`[sinks.NAME.spool]`) a disk tier behind it.
//!
//! Producers (UDP receive threads, TCP connection tasks, the Kafka source)
//! push whole batches; the sink's task pops batches. Two bounds: messages
//! (`capacity`) and bytes (`max_bytes`). Bytes count what the queue keeps
//! alive, not only what its messages weigh: events received together share
//! one allocation that lives while any of them does, so each run of queued
//! events from one receive batch is charged that batch's whole
//! [`Event::batch_footprint`], once. A queue fed by a narrow route (one
//! message in fifty) or one that drops when full (runs with gaps) then
//! still holds no more memory than its bound.
//!
//! When the memory queue is full and there is no spool, the policy
//! decides: `block` waits for room (a thread waits on a condition
//! variable, a task on a `Notify`), `drop_newest` drops what does not fit,
//! `drop_oldest` drops the oldest queued messages to make room; drops are
//! counted. After [`SinkQueue::close`] nothing more is accepted (counted
//! as `shutdown`), and the consumer drains what is left.
//!
//! With a spool ([`disk::DiskTier`]): in `overflow` mode, what does not
//! fit in memory, and everything while the sink is failing, goes to disk
//! instead, and from then on every new message goes to disk behind it
//! until the disk backlog is delivered, so the sink sees messages in the
//! order they arrived (memory holds only messages older than any on
//! disk, and is drained first). In `always` mode every message goes to
//! disk. The when-full policy then applies at the spool's cap. Records
//! read back from disk are acknowledged ([`SinkQueue::done`]) only after
//! the sink is done with them; at shutdown what memory still holds is
//! written in front of the spool ([`SinkQueue::spill_remaining`]).
//!
//! Policies are a closed enum matched in one place ([`SinkQueue::admit`]).

pub mod disk;

use crate::delivery::WhenFull;
use crate::metrics::{Counter, Gauge, Registry};
use crate::spool::config::SpoolMode;
use crate::spool::AckToken;
use crate::Event;
use disk::DiskTier;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Counters of one queue.
#[derive(Clone)]
pub struct QueueMetrics {
    /// Messages accepted into the queue.
    pub queued: Counter,
    /// Messages dropped because the queue was full.
    pub dropped_full: Counter,
    /// Messages refused because hepflow was shutting down.
    pub dropped_shutdown: Counter,
    /// Current depth.
    pub depth: Gauge,
    /// Bytes held alive (see the module doc).
    pub bytes: Gauge,
}

impl QueueMetrics {
    /// Register the queue's series for sink `name`.
    pub fn new(registry: &Registry, name: &str) -> Self {
        QueueMetrics {
            queued: registry.counter(
                "hepflow_sink_queued_total",
                "Messages accepted into a sink's queue",
                &[("sink", name)],
            ),
            dropped_full: registry.counter(
                "hepflow_sink_dropped_total",
                "Messages a sink's queue dropped, by reason",
                &[("sink", name), ("reason", "queue_full")],
            ),
            dropped_shutdown: registry.counter(
                "hepflow_sink_dropped_total",
                "Messages a sink's queue dropped, by reason",
                &[("sink", name), ("reason", "shutdown")],
            ),
            bytes: registry.gauge(
                "hepflow_sink_queue_bytes",
                "Bytes a sink's queue keeps alive: the receive batches of the messages waiting in it",
                &[("sink", name)],
            ),
            depth: registry.gauge(
                "hepflow_sink_queue_depth",
                "Messages waiting in a sink's queue",
                &[("sink", name)],
            ),
        }
    }
}

/// One queued event and what it is charged.
struct Item {
    event: Event,
    /// Its batch's footprint for the first event of a run of one batch,
    /// 0 for the others (the run's memory is charged once).
    charge: usize,
}

/// What the queue holds.
struct Queued {
    items: VecDeque<Item>,
    /// Sum of the items' charges.
    bytes: usize,
    /// New messages go to the disk tier (set when memory overflowed, the
    /// sink failed, or always; cleared once the disk backlog is delivered).
    to_disk: bool,
}

impl Queued {
    /// What `ev` adds if queued at the back now.
    fn charge_for(&self, ev: &Event) -> usize {
        match self.items.back() {
            Some(last) if last.event.same_batch(ev) => 0,
            _ => ev.batch_footprint(),
        }
    }
}

/// One sink's bounded queue.
pub struct SinkQueue {
    items: Mutex<Queued>,
    capacity: usize,
    max_bytes: usize,
    when_full: WhenFull,
    closed: AtomicBool,
    /// Wakes the consumer when items arrive or the queue closes.
    not_empty: Notify,
    /// Wakes async producers waiting for room.
    not_full: Notify,
    /// Wakes thread producers waiting for room.
    not_full_cv: Condvar,
    metrics: QueueMetrics,
    disk: Option<DiskTier>,
}

/// What [`SinkQueue::pop_batch`] handed out, to give back to
/// [`SinkQueue::done`] once the sink is done with the batch.
#[derive(Debug, Default)]
pub struct Popped {
    token: Option<AckToken>,
}

impl Popped {
    /// True when the batch was read back from the disk tier (it stays
    /// there until [`SinkQueue::done`]).
    pub fn from_disk(&self) -> bool {
        self.token.is_some()
    }
}

/// How a pushed batch fared.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// Messages queued.
    pub queued: usize,
    /// Messages dropped (full or shutting down).
    pub dropped: usize,
}

impl SinkQueue {
    /// A queue for at most `capacity` messages (and no byte bound: see
    /// [`Self::with_max_bytes`]).
    pub fn new(capacity: usize, when_full: WhenFull, metrics: QueueMetrics) -> Self {
        SinkQueue {
            items: Mutex::new(Queued {
                items: VecDeque::with_capacity(capacity.min(65536)),
                bytes: 0,
                to_disk: false,
            }),
            capacity,
            max_bytes: usize::MAX,
            when_full,
            closed: AtomicBool::new(false),
            not_empty: Notify::new(),
            not_full: Notify::new(),
            not_full_cv: Condvar::new(),
            metrics,
            disk: None,
        }
    }

    /// Put `disk` behind the memory queue. A spool that holds messages
    /// from an earlier run is delivered first: new messages queue on disk
    /// behind them.
    pub fn with_disk(mut self, disk: DiskTier) -> Self {
        let q = self.items.get_mut().unwrap_or_else(|e| e.into_inner());
        q.to_disk = disk.mode == SpoolMode::Always || disk.records() > 0;
        self.disk = Some(disk);
        self
    }

    /// The disk tier, if the sink has a spool.
    pub fn disk(&self) -> Option<&DiskTier> {
        self.disk.as_ref()
    }

    /// Also bound the queue to `max_bytes` of memory kept alive (see the
    /// module doc); a batch larger than that still passes when the queue
    /// is empty, so nothing is refused for its size alone.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// What happens when the queue (and its spool) is full.
    pub fn when_full(&self) -> WhenFull {
        self.when_full
    }

    /// The configured bound in messages.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Bytes kept alive by what waits (see the module doc).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn is_full(&self, q: &Queued) -> bool {
        q.items.len() >= self.capacity || q.bytes >= self.max_bytes
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Depth and bytes gauges from the queue's state; called with the lock
    /// held, so concurrent pushes and pops set them in the order they ran.
    fn set_gauges(&self, q: &Queued) {
        self.metrics.depth.set(q.items.len() as i64);
        self.metrics
            .bytes
            .set(i64::try_from(q.bytes).unwrap_or(i64::MAX));
    }

    /// Move as many of `batch` (from the front) as the policy admits into
    /// the queue (memory, or the disk tier). Returns true when the caller
    /// must wait for room and call again with what is left in `batch`.
    fn admit(&self, batch: &mut Vec<Event>, out: &mut PushOutcome) -> bool {
        if self.closed.load(Ordering::Acquire) {
            let n = batch.len();
            batch.clear();
            self.metrics.dropped_shutdown.add(n as u64);
            out.dropped += n;
            return false;
        }
        let mut q = self.lock();
        if let Some(disk) = &self.disk {
            if disk.failing() {
                q.to_disk = true;
            }
        }
        if !q.to_disk {
            let take = self.push_memory(&mut q, batch);
            if take > 0 {
                out.queued += take;
            }
            if batch.is_empty() {
                drop(q);
                if take > 0 {
                    self.not_empty.notify_one();
                }
                return false;
            }
        }
        if let Some(disk) = &self.disk {
            // Hand over hand: the spool's lock is taken before memory's is
            // released, so disk appends keep the order producers decided
            // in, and the consumer (which takes both) sees no append in
            // flight when it finds the disk empty.
            q.to_disk = true;
            let spool = disk.lock();
            drop(q);
            let before = batch.len();
            let (appended, wait) = disk.append(spool, batch, self.when_full);
            self.metrics.queued.add(appended as u64);
            out.queued += appended;
            out.dropped += before - appended - batch.len();
            self.not_empty.notify_one();
            return wait;
        }
        drop(q);
        self.not_empty.notify_one();
        match self.when_full {
            WhenFull::Block => true,
            WhenFull::DropNewest => {
                let n = batch.len();
                batch.clear();
                self.metrics.dropped_full.add(n as u64);
                out.dropped += n;
                false
            }
            WhenFull::DropOldest => {
                let mut q = self.lock();
                let evicted = self.evict_for(&mut q, batch);
                let take = self.push_memory(&mut q, batch);
                drop(q);
                out.queued += take;
                // Whatever still does not fit (a batch larger than the
                // whole queue) is dropped as the newest.
                let rest = batch.len();
                batch.clear();
                self.metrics.dropped_full.add((evicted + rest) as u64);
                out.dropped += rest;
                false
            }
        }
    }

    /// Queue as much of `batch` (from its front) in memory as the bounds
    /// allow; returns how many.
    fn push_memory(&self, q: &mut Queued, batch: &mut Vec<Event>) -> usize {
        let room = self.capacity.saturating_sub(q.items.len());
        let mut take = 0;
        let mut rest = std::mem::take(batch).into_iter();
        while take < room {
            let Some(event) = rest.next() else { break };
            let charge = q.charge_for(&event);
            // The first message into an empty queue always fits.
            if q.bytes > 0 && q.bytes.saturating_add(charge) > self.max_bytes {
                batch.push(event);
                break;
            }
            q.bytes = q.bytes.saturating_add(charge);
            q.items.push_back(Item { event, charge });
            take += 1;
        }
        batch.extend(rest);
        if take > 0 {
            // Counted and gauged under the lock: a consumer popping these
            // right after sets the gauges after us, never before.
            self.metrics.queued.add(take as u64);
            self.set_gauges(q);
        }
        take
    }

    /// Drop queued messages from the front until `batch` fits (or the
    /// queue is empty); returns how many were dropped.
    fn evict_for(&self, q: &mut Queued, batch: &[Event]) -> usize {
        let need = batch.len().min(self.capacity);
        let need_bytes: usize = batch
            .iter()
            .take(need)
            .map(Event::batch_footprint)
            .max()
            .unwrap_or(0);
        let mut gone = Vec::new();
        while !q.items.is_empty()
            && (q.items.len() + need > self.capacity || q.bytes + need_bytes > self.max_bytes)
        {
            take_front(q, 1, &mut gone);
        }
        let dropped = gone.len();
        self.set_gauges(q);
        dropped
    }

    /// Push from async code; with `block`, waits (asynchronously) for room.
    pub async fn push(&self, mut batch: Vec<Event>) -> PushOutcome {
        let mut out = PushOutcome::default();
        loop {
            let notified = self.not_full.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.admit(&mut batch, &mut out) {
                return out;
            }
            // Re-check periodically so a close() is noticed even if no
            // consumer wakes us.
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    /// Push from a plain thread; with `block`, the thread waits for room.
    pub fn push_blocking(&self, mut batch: Vec<Event>) -> PushOutcome {
        let mut out = PushOutcome::default();
        while self.admit(&mut batch, &mut out) {
            let q = self.lock();
            // Memory full, or waiting for room on disk (woken by the
            // consumer, or re-checked every 100 ms).
            if (self.is_full(&q) || q.to_disk) && !self.closed.load(Ordering::Acquire) {
                let _ = self.not_full_cv.wait_timeout(q, Duration::from_millis(100));
            }
        }
        out
    }

    /// Take up to `max` messages into `out`, waiting until at least one is
    /// there: from memory first, then from the disk tier. If `max_wait` is
    /// above zero and fewer than `max` are in memory, waits up to
    /// `max_wait` for the batch to fill. Returns `None` once the queue is
    /// closed and empty; hand what it returns to [`Self::done`] when the
    /// sink is done with the batch.
    pub async fn pop_batch(
        &self,
        max: usize,
        max_wait: Duration,
        out: &mut Vec<Event>,
    ) -> Option<Popped> {
        loop {
            let notified = self.not_empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let len = self.len();
            if len == 0 {
                if let Some(token) = self.disk.as_ref().and_then(|d| d.read(max, out)) {
                    self.wake_producers();
                    return Some(Popped { token: Some(token) });
                }
                if self.closed.load(Ordering::Acquire) {
                    return None;
                }
                // A producer notifies on every push; the timeout is a
                // safety net for the disk tier's own state changes.
                let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
                continue;
            }
            if len < max && !max_wait.is_zero() && !self.closed.load(Ordering::Acquire) {
                let deadline = tokio::time::Instant::now() + max_wait;
                loop {
                    let n = self.not_empty.notified();
                    tokio::pin!(n);
                    n.as_mut().enable();
                    if self.len() >= max || self.closed.load(Ordering::Acquire) {
                        break;
                    }
                    if tokio::time::timeout_at(deadline, n).await.is_err() {
                        break;
                    }
                }
            }
            let mut q = self.lock();
            take_front(&mut q, max, out);
            self.set_gauges(&q);
            drop(q);
            self.wake_producers();
            return Some(Popped::default());
        }
    }

    fn wake_producers(&self) {
        self.not_full.notify_waiters();
        self.not_full_cv.notify_all();
    }

    /// The sink is done with a popped batch (delivered, or given up and
    /// counted): spooled records are acknowledged and deleted, and once
    /// the disk backlog is delivered new messages go to memory again
    /// (`overflow` mode, sink not failing).
    pub fn done(&self, popped: Popped) {
        let (Some(disk), Some(token)) = (&self.disk, popped.token) else {
            return;
        };
        let empty = disk.ack(&token);
        self.wake_producers();
        if empty && disk.mode == SpoolMode::Overflow && !disk.failing() {
            let mut q = self.lock();
            let spool = disk.lock();
            if spool.is_empty() {
                q.to_disk = false;
            }
        }
    }

    /// Tell the disk tier whether the sink's last write failed: while it
    /// fails, new messages go to disk (`overflow` mode).
    pub fn set_failing(&self, failing: bool) {
        if let Some(disk) = &self.disk {
            disk.set_failing(failing);
        }
    }

    /// At shutdown, with a spool: write `in_flight` (a batch popped from
    /// memory and not delivered) and everything memory still holds in
    /// front of the spool, oldest first, so the next start delivers them
    /// before anything else. Returns how many were spooled, or `None`
    /// without a spool (use [`Self::discard_remaining`]).
    pub fn spill_remaining(&self, in_flight: Vec<Event>) -> Option<usize> {
        let disk = self.disk.as_ref()?;
        let mut events = in_flight;
        {
            let mut q = self.lock();
            let n = q.items.len();
            take_front(&mut q, n, &mut events);
            self.set_gauges(&q);
        }
        let spilled = if events.is_empty() {
            0
        } else {
            disk.spill_front(&events)
        };
        disk.checkpoint();
        Some(spilled)
    }

    /// Shutdown with a popped batch not delivered, or only partly:
    /// `rest` is what is left of it. With a disk tier, a batch from
    /// memory (what is left of it) goes in front of the spool with the
    /// rest of memory; a batch read from disk stays there, not
    /// acknowledged, unless `partly_delivered`: then `rest` is written in
    /// front first and the batch acknowledged after, so a crash in
    /// between repeats messages, never loses them. Returns how many were
    /// spilled, or `None` without a disk tier (the caller then counts
    /// `rest` and [`Self::discard_remaining`] as lost).
    pub fn spill_in_flight(
        &self,
        popped: Popped,
        rest: Vec<Event>,
        partly_delivered: bool,
    ) -> Option<usize> {
        self.disk.as_ref()?;
        if popped.from_disk() && !partly_delivered {
            return self.spill_remaining(Vec::new());
        }
        let spilled = self.spill_remaining(rest);
        self.done(popped);
        spilled
    }

    /// True when nothing waits, in memory or on disk (a batch popped
    /// from disk and not yet acknowledged counts as waiting).
    pub fn is_drained(&self) -> bool {
        self.is_empty() && self.disk.as_ref().is_none_or(|d| d.records() == 0)
    }

    /// Refuse further pushes and wake everyone; the consumer drains the rest.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.not_empty.notify_waiters();
        self.not_empty.notify_one();
        self.not_full.notify_waiters();
        self.not_full_cv.notify_all();
    }

    /// Drop everything still queued (after the grace period), returning how
    /// many messages that was.
    pub fn discard_remaining(&self) -> usize {
        let mut q = self.lock();
        let n = q.items.len();
        q.items.clear();
        q.bytes = 0;
        self.set_gauges(&q);
        n
    }
}

/// Checkpoint `queue`'s disk tier (fsync, reader position) every
/// `interval` until the task is aborted; `None` when it has no spool.
pub fn spawn_checkpoints(
    queue: std::sync::Arc<SinkQueue>,
    interval: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    queue.disk()?;
    Some(spawn_every(interval, move || {
        if let Some(d) = queue.disk() {
            d.checkpoint();
        }
    }))
}

/// Run `work` (blocking: an fsync) on the blocking pool every `interval`,
/// one run at a time, until the task is aborted. What a plugin with a
/// disk tier of its own runs its checkpoints with.
pub fn spawn_every(
    interval: Duration,
    work: impl Fn() + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    let work = std::sync::Arc::new(work);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let w = work.clone();
            let _ = tokio::task::spawn_blocking(move || w()).await;
        }
    })
}

/// Move up to `max` items from the front of `q` to `out`, releasing their
/// charges. A run of one receive batch split by this keeps its charge on
/// what is left of it (it still holds the batch alive).
fn take_front(q: &mut Queued, max: usize, out: &mut Vec<Event>) {
    let take = max.min(q.items.len());
    let mut released = 0;
    let mut run_charge = 0;
    for item in q.items.drain(..take) {
        if item.charge > 0 {
            run_charge = item.charge;
        }
        released += item.charge;
        out.push(item.event);
    }
    if let (Some(last), Some(front)) = (out.last(), q.items.front_mut()) {
        if front.charge == 0 && front.event.same_batch(last) {
            front.charge = run_charge;
            released -= run_charge;
        }
    }
    q.bytes = q.bytes.saturating_sub(released);
}

#[cfg(test)]
mod tests;
