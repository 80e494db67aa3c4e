//! The bounded queue in front of each sink.
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
//! When the queue is full, the policy decides: `block` waits
//! for room (a thread waits on a condition variable, a task on a `Notify`),
//! `drop_newest` drops what does not fit and counts it. After [`SinkQueue::close`]
//! nothing more is accepted (counted as `shutdown`), and the consumer drains
//! what is left.
//!
//! Policies are a closed enum matched in one place ([`SinkQueue::admit`]),
//! so a disk-spool policy can be added there later without touching
//! producers or consumers.

use crate::config::WhenFull;
use hepflow_sdk::metrics::{Counter, Gauge, Registry};
use hepflow_sdk::Event;
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
            }),
            capacity,
            max_bytes: usize::MAX,
            when_full,
            closed: AtomicBool::new(false),
            not_empty: Notify::new(),
            not_full: Notify::new(),
            not_full_cv: Condvar::new(),
            metrics,
        }
    }

    /// Also bound the queue to `max_bytes` of memory kept alive (see the
    /// module doc); a batch larger than that still passes when the queue
    /// is empty, so nothing is refused for its size alone.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
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
    /// the queue. Returns true when the caller must wait for room and call
    /// again with what is left in `batch`.
    fn admit(&self, batch: &mut Vec<Event>, out: &mut PushOutcome) -> bool {
        if self.closed.load(Ordering::Acquire) {
            let n = batch.len();
            batch.clear();
            self.metrics.dropped_shutdown.add(n as u64);
            out.dropped += n;
            return false;
        }
        let mut q = self.lock();
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
            self.set_gauges(&q);
        }
        drop(q);
        if take > 0 {
            out.queued += take;
            self.not_empty.notify_one();
        }
        if batch.is_empty() {
            return false;
        }
        match self.when_full {
            WhenFull::Block => true,
            WhenFull::DropNewest => {
                let n = batch.len();
                batch.clear();
                self.metrics.dropped_full.add(n as u64);
                out.dropped += n;
                false
            }
        }
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
            if self.is_full(&q) && !self.closed.load(Ordering::Acquire) {
                let _ = self.not_full_cv.wait_timeout(q, Duration::from_millis(100));
            }
        }
        out
    }

    /// Take up to `max` messages into `out`, waiting until at least one is
    /// there. If `max_wait` is above zero and fewer than `max` are queued,
    /// waits up to `max_wait` for the batch to fill. Returns false once the
    /// queue is closed and empty.
    pub async fn pop_batch(&self, max: usize, max_wait: Duration, out: &mut Vec<Event>) -> bool {
        loop {
            let notified = self.not_empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let len = self.len();
            if len == 0 {
                if self.closed.load(Ordering::Acquire) {
                    return false;
                }
                notified.await;
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
            // A run split by this pop: what is left of it still holds its
            // batch alive, so its charge moves to the new first item.
            if let (Some(last), Some(front)) = (out.last(), q.items.front_mut()) {
                if front.charge == 0 && front.event.same_batch(last) {
                    front.charge = run_charge;
                    released -= run_charge;
                }
            }
            q.bytes = q.bytes.saturating_sub(released);
            self.set_gauges(&q);
            drop(q);
            self.not_full.notify_waiters();
            self.not_full_cv.notify_all();
            return true;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hepflow_sdk::{HepMessage, ReceiveMeta, Transport};
    use std::sync::Arc;

    fn ev() -> Event {
        ev_of(0)
    }

    fn queue(cap: usize, wf: WhenFull) -> (Arc<SinkQueue>, Registry) {
        let r = Registry::new();
        let q = Arc::new(SinkQueue::new(cap, wf, QueueMetrics::new(&r, "s")));
        (q, r)
    }

    fn dropped_full(r: &Registry) -> Option<f64> {
        r.value(
            "hepflow_sink_dropped_total",
            &[("sink", "s"), ("reason", "queue_full")],
        )
    }

    fn meta() -> ReceiveMeta {
        ReceiveMeta {
            listener: "t".into(),
            transport: Transport::Udp,
            peer: "127.0.0.1:1".parse().unwrap(),
            received_at: std::time::SystemTime::now(),
        }
    }

    fn ev_of(raw_len: usize) -> Event {
        Event::new(
            HepMessage::new_v3(Bytes::from_static(b"x")),
            Bytes::from(vec![0u8; raw_len]),
            meta(),
        )
    }

    #[tokio::test]
    async fn the_byte_bound_drops_what_does_not_fit_and_frees_on_pop() {
        let one = ev_of(1000).batch_footprint();
        assert!(one > 1000, "footprint counts bookkeeping too: {one}");
        let r = Registry::new();
        let q = SinkQueue::new(1000, WhenFull::DropNewest, QueueMetrics::new(&r, "s"))
            .with_max_bytes(3 * one + one / 2);
        let out = q.push((0..5).map(|_| ev_of(1000)).collect()).await;
        assert_eq!(
            out,
            PushOutcome {
                queued: 3,
                dropped: 2
            }
        );
        assert_eq!(q.bytes(), 3 * one);
        assert_eq!(
            r.value("hepflow_sink_queue_bytes", &[("sink", "s")]),
            Some((3 * one) as f64)
        );
        assert_eq!(dropped_full(&r), Some(2.0));
        let mut got = Vec::new();
        assert!(q.pop_batch(2, Duration::ZERO, &mut got).await);
        assert_eq!(got.len(), 2);
        assert_eq!(q.bytes(), one);
        assert_eq!(
            r.value("hepflow_sink_queue_bytes", &[("sink", "s")]),
            Some(one as f64)
        );
        // Room again for two.
        let out = q.push((0..3).map(|_| ev_of(1000)).collect()).await;
        assert_eq!(out.queued, 2);
        assert_eq!(q.discard_remaining(), 3);
        assert_eq!(q.bytes(), 0);
    }

    /// `n` events made together (one receive batch), each `raw_len` bytes.
    fn batch_of(n: usize, raw_len: usize) -> Vec<Event> {
        let mut b = hepflow_sdk::EventBatch::new();
        for _ in 0..n {
            b.push(
                HepMessage::new_v3(Bytes::from_static(b"x")),
                Bytes::from(vec![0u8; raw_len]),
                meta(),
            );
        }
        let mut out = Vec::new();
        b.finish(&mut out);
        out
    }

    #[tokio::test]
    async fn a_run_of_one_batch_is_charged_the_whole_batch_once() {
        let r = Registry::new();
        let q = SinkQueue::new(1000, WhenFull::DropNewest, QueueMetrics::new(&r, "s"));
        let a = batch_of(100, 500);
        let whole = a[0].batch_footprint();
        assert!(whole > 100 * 500, "the batch's bytes and storage: {whole}");
        // A narrow route: 2 of 100 messages keep all 100 alive.
        q.push(vec![a[3].clone(), a[70].clone()]).await;
        assert_eq!(q.bytes(), whole);
        // Another batch, whole: charged once more.
        let b = batch_of(10, 500);
        let b_whole = b[0].batch_footprint();
        q.push(b.clone()).await;
        assert_eq!(q.bytes(), whole + b_whole);
        assert_eq!(
            r.value("hepflow_sink_queue_bytes", &[("sink", "s")]),
            Some((whole + b_whole) as f64)
        );
        // Popping a's run frees a's charge; popping part of b's run keeps
        // b's charge (its other events still hold the batch alive).
        let mut got = Vec::new();
        assert!(q.pop_batch(2, Duration::ZERO, &mut got).await);
        assert_eq!(q.bytes(), b_whole);
        assert!(q.pop_batch(4, Duration::ZERO, &mut got).await);
        assert_eq!(q.len(), 6);
        assert_eq!(q.bytes(), b_whole);
        assert!(q.pop_batch(100, Duration::ZERO, &mut got).await);
        assert_eq!(q.bytes(), 0);
        assert_eq!(got.len(), 12);
    }

    #[tokio::test]
    async fn the_byte_bound_counts_batches_not_messages() {
        // Room for a little over one batch of 100: a narrow route taking
        // one message from each batch fills it after two batches, not 200.
        let one_batch = batch_of(100, 500)[0].batch_footprint();
        let r = Registry::new();
        let q = SinkQueue::new(1000, WhenFull::DropNewest, QueueMetrics::new(&r, "s"))
            .with_max_bytes(one_batch + one_batch / 2);
        let mut queued = 0;
        for _ in 0..5 {
            queued += q.push(vec![batch_of(100, 500)[0].clone()]).await.queued;
        }
        // The first always fits an empty queue; the second would pass the
        // bound.
        assert_eq!(queued, 1);
        assert_eq!(dropped_full(&r), Some(4.0));
    }

    #[tokio::test]
    async fn a_message_larger_than_the_byte_bound_passes_an_empty_queue() {
        let r = Registry::new();
        let q = SinkQueue::new(10, WhenFull::DropNewest, QueueMetrics::new(&r, "s"))
            .with_max_bytes(100);
        let out = q.push(vec![ev_of(5000), ev_of(10)]).await;
        assert_eq!(
            out,
            PushOutcome {
                queued: 1,
                dropped: 1
            }
        );
    }

    #[test]
    fn block_waits_on_the_byte_bound_until_the_consumer_pops() {
        let one = ev_of(100).batch_footprint();
        let r = Registry::new();
        let q = Arc::new(
            SinkQueue::new(1000, WhenFull::Block, QueueMetrics::new(&r, "s"))
                .with_max_bytes(2 * one),
        );
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || q.push_blocking((0..4).map(|_| ev_of(100)).collect()))
        };
        // The producer fills the queue to the byte bound and waits.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while q.len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(q.len(), 2);
        assert!(!producer.is_finished(), "block must wait, not drop");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            assert!(rt.block_on(q.pop_batch(10, Duration::ZERO, &mut got)));
        }
        let out = producer.join().unwrap();
        assert_eq!(
            out,
            PushOutcome {
                queued: 4,
                dropped: 0
            }
        );
    }

    #[tokio::test]
    async fn drop_newest_counts_what_does_not_fit() {
        let (q, r) = queue(3, WhenFull::DropNewest);
        let out = q.push(vec![ev(), ev(), ev(), ev(), ev()]).await;
        assert_eq!(
            out,
            PushOutcome {
                queued: 3,
                dropped: 2
            }
        );
        assert_eq!(dropped_full(&r), Some(2.0));
        let mut got = Vec::new();
        assert!(q.pop_batch(10, Duration::ZERO, &mut got).await);
        assert_eq!(got.len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn block_waits_for_room_and_loses_nothing() {
        let (q, _r) = queue(4, WhenFull::Block);
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut total = PushOutcome::default();
                for _ in 0..50 {
                    let o = q.push_blocking(vec![ev(), ev(), ev()]);
                    total.queued += o.queued;
                    total.dropped += o.dropped;
                }
                total
            })
        };
        let mut seen = 0;
        let mut buf = Vec::new();
        while seen < 150 {
            buf.clear();
            assert!(q.pop_batch(2, Duration::ZERO, &mut buf).await);
            seen += buf.len();
        }
        let total = producer.join().unwrap();
        assert_eq!(
            total,
            PushOutcome {
                queued: 150,
                dropped: 0
            }
        );
    }

    #[tokio::test]
    async fn close_refuses_pushes_and_drains() {
        let (q, _r) = queue(10, WhenFull::Block);
        q.push(vec![ev(), ev()]).await;
        q.close();
        assert_eq!(q.push(vec![ev()]).await.dropped, 1);
        let mut got = Vec::new();
        assert!(q.pop_batch(10, Duration::from_secs(5), &mut got).await);
        assert_eq!(got.len(), 2);
        assert!(!q.pop_batch(10, Duration::ZERO, &mut got).await);
    }

    #[tokio::test]
    async fn max_wait_fills_batches() {
        let (q, _r) = queue(100, WhenFull::Block);
        q.push(vec![ev()]).await;
        let q2 = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            q2.push(vec![ev(), ev()]).await;
        });
        let mut got = Vec::new();
        assert!(q.pop_batch(3, Duration::from_secs(5), &mut got).await);
        assert_eq!(got.len(), 3);
    }
}
