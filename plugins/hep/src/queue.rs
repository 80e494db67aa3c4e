//! The bounded queue in front of each target, and [`Msg`], one prepared
//! message in it.
//!
//! Producers are the sink's `write` (one call at a time) and, in `hash` /
//! `round_robin` mode, the tasks of targets that are down handing their
//! messages on. The consumer is the target's own connection task. The
//! bound is counted in messages and in bytes ([`Msg::footprint`]); when
//! the queue is full the target's policy applies: `drop_newest` drops
//! what does not fit and returns the count, `block` waits for room. The
//! first message into an empty queue always fits. Messages put back after
//! a failed write ([`TargetQueue::requeue_front`]) may exceed the bounds
//! by at most one write's worth.

use crate::config::TargetWhenFull;
use bytes::Bytes;
use hepflow_sdk::metrics::Gauge;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// One message ready to send, in both wire forms.
#[derive(Debug, Clone)]
pub struct Msg {
    /// The bytes for a datagram target.
    pub dgram: Bytes,
    /// The bytes for a stream target (always HEPv3; the same buffer as
    /// `dgram` unless a v1/v2 message had to be converted).
    pub stream: Bytes,
    /// The hashing key (`mode = "hash"`; 0 otherwise).
    pub key: u64,
}

impl Msg {
    /// Bytes this message keeps alive in a queue: both wire forms, the
    /// stream form only when it is a buffer of its own (a converted v1/v2
    /// message).
    pub fn footprint(&self) -> usize {
        let shared =
            self.stream.as_ptr() == self.dgram.as_ptr() && self.stream.len() == self.dgram.len();
        if shared {
            self.dgram.len()
        } else {
            self.dgram.len() + self.stream.len()
        }
    }

    /// The form for a stream (`true`) or datagram target.
    pub fn bytes(&self, stream: bool) -> &Bytes {
        if stream {
            &self.stream
        } else {
            &self.dgram
        }
    }
}

/// How a push fared.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Messages queued.
    pub queued: usize,
    /// Messages dropped because the queue was full (`drop_newest`) or
    /// abandoned (shutdown).
    pub dropped: usize,
}

/// The messages waiting and their bytes.
struct Waiting {
    items: VecDeque<Msg>,
    bytes: usize,
}

impl Waiting {
    fn pop_front(&mut self) -> Option<Msg> {
        let m = self.items.pop_front()?;
        self.bytes -= m.footprint();
        Some(m)
    }
}

/// The gauges mirroring a [`TargetQueue`].
#[derive(Clone, Default)]
pub struct QueueGauges {
    /// Messages waiting.
    pub depth: Gauge,
    /// Their bytes.
    pub bytes: Gauge,
}

/// One target's bounded queue.
pub struct TargetQueue {
    items: Mutex<Waiting>,
    capacity: usize,
    max_bytes: usize,
    /// No more messages will arrive: the consumer stops when it is empty.
    closed: AtomicBool,
    /// The consumer is gone: pushes drop everything.
    abandoned: AtomicBool,
    not_empty: Notify,
    not_full: Notify,
    gauges: QueueGauges,
}

impl TargetQueue {
    /// A queue for at most `capacity` messages and `max_bytes` bytes.
    pub fn new(capacity: usize, max_bytes: usize, gauges: QueueGauges) -> Self {
        TargetQueue {
            items: Mutex::new(Waiting {
                items: VecDeque::with_capacity(capacity.min(4096)),
                bytes: 0,
            }),
            capacity,
            max_bytes,
            closed: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            not_empty: Notify::new(),
            not_full: Notify::new(),
            gauges,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Set the gauges from `q` (with its lock held).
    fn gauge(&self, q: &Waiting) {
        self.gauges.depth.set(q.items.len() as i64);
        self.gauges
            .bytes
            .set(i64::try_from(q.bytes).unwrap_or(i64::MAX));
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Bytes waiting ([`Msg::footprint`] summed).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Move as many of `msgs` (from the front, in order) as fit into `q`;
    /// returns how many.
    fn fill(
        &self,
        q: &mut Waiting,
        msgs: &mut std::iter::Peekable<std::vec::IntoIter<Msg>>,
    ) -> usize {
        let mut n = 0;
        while q.items.len() < self.capacity {
            let Some(m) = msgs.peek() else { break };
            let size = m.footprint();
            if !q.items.is_empty() && q.bytes.saturating_add(size) > self.max_bytes {
                break;
            }
            q.bytes += size;
            q.items.extend(msgs.next());
            n += 1;
        }
        self.gauge(q);
        n
    }

    /// Queue `msgs` under `policy`.
    pub async fn push(&self, msgs: Vec<Msg>, policy: TargetWhenFull) -> Pushed {
        let total = msgs.len();
        let mut out = Pushed::default();
        if total == 0 {
            return out;
        }
        let mut rest = msgs.into_iter().peekable();
        loop {
            let notified = self.not_full.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.abandoned.load(Ordering::Acquire) {
                out.dropped = total - out.queued;
                return out;
            }
            let n = {
                let mut q = self.lock();
                self.fill(&mut q, &mut rest)
            };
            if n > 0 {
                self.not_empty.notify_one();
            }
            out.queued += n;
            if out.queued == total {
                return out;
            }
            if policy == TargetWhenFull::DropNewest {
                out.dropped = total - out.queued;
                return out;
            }
            notified.await;
        }
    }

    /// Put messages back at the front (after a failed write), in order.
    pub fn requeue_front(&self, msgs: Vec<Msg>) {
        if msgs.is_empty() {
            return;
        }
        let mut q = self.lock();
        for m in msgs.into_iter().rev() {
            q.bytes += m.footprint();
            q.items.push_front(m);
        }
        self.gauge(&q);
        drop(q);
        self.not_empty.notify_one();
    }

    /// Take everything waiting.
    pub fn take_all(&self) -> Vec<Msg> {
        let mut q = self.lock();
        let v: Vec<Msg> = q.items.drain(..).collect();
        q.bytes = 0;
        self.gauge(&q);
        drop(q);
        self.not_full.notify_waiters();
        v
    }

    /// Pop up to `max_msgs` messages and, past the first, up to
    /// `max_bytes` bytes (of the `stream` or datagram form) into `out`,
    /// waiting while the queue is empty. Returns false when the queue is
    /// closed and empty.
    pub async fn pop_batch(
        &self,
        max_msgs: usize,
        max_bytes: usize,
        stream: bool,
        out: &mut Vec<Msg>,
    ) -> bool {
        loop {
            let notified = self.not_empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut q = self.lock();
                if !q.items.is_empty() {
                    let mut bytes = 0usize;
                    while out.len() < max_msgs {
                        let Some(m) = q.items.front() else { break };
                        let len = m.bytes(stream).len();
                        if !out.is_empty() && bytes + len > max_bytes {
                            break;
                        }
                        bytes += len;
                        out.extend(q.pop_front());
                    }
                    self.gauge(&q);
                    drop(q);
                    self.not_full.notify_waiters();
                    return true;
                }
                if self.closed.load(Ordering::Acquire) {
                    return false;
                }
            }
            notified.await;
        }
    }

    /// Wait until something is queued or the queue is closed.
    pub async fn wait_nonempty(&self) {
        loop {
            let notified = self.not_empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_empty() || self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// No more messages will come: the consumer drains and stops.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.not_empty.notify_one();
    }

    /// Whether [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The consumer is gone: empty the queue (returning how many were in
    /// it) and make every waiting and later push drop its messages.
    pub fn abandon(&self) -> usize {
        self.abandoned.store(true, Ordering::Release);
        let n = self.take_all().len();
        self.not_full.notify_waiters();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn msg(i: u8) -> Msg {
        let b = Bytes::from(vec![i; 10]);
        Msg {
            dgram: b.clone(),
            stream: b,
            key: 0,
        }
    }

    /// Five 10-byte messages offered with `drop_newest`: (queued, dropped).
    async fn offer_five(q: &TargetQueue) -> (usize, usize) {
        let p = q
            .push((0..5).map(msg).collect(), TargetWhenFull::DropNewest)
            .await;
        (p.queued, p.dropped)
    }

    #[tokio::test]
    async fn drop_newest_counts_what_does_not_fit() {
        let q = TargetQueue::new(3, usize::MAX, QueueGauges::default());
        assert_eq!(offer_five(&q).await, (3, 2));
        let mut out = Vec::new();
        assert!(q.pop_batch(10, 1 << 20, false, &mut out).await);
        assert_eq!(
            out.iter().map(|m| m.dgram[0]).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    /// Ten messages pushed with `block` into `q` while one consumer pops
    /// them one by one, checking `within` after each pop: all arrive, in
    /// order, none dropped.
    async fn block_loses_nothing(q: TargetQueue, within: impl Fn(&TargetQueue) -> bool) {
        let q = Arc::new(q);
        let q2 = q.clone();
        let producer = tokio::spawn(async move {
            q2.push((0..10).map(msg).collect(), TargetWhenFull::Block)
                .await
        });
        let mut got = Vec::new();
        while got.len() < 10 {
            let mut out = Vec::new();
            assert!(q.pop_batch(1, 1 << 20, false, &mut out).await);
            assert!(within(&q));
            got.extend(out.into_iter().map(|m| m.dgram[0]));
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(
            producer.await.unwrap(),
            Pushed {
                queued: 10,
                dropped: 0
            }
        );
    }

    #[tokio::test]
    async fn block_waits_for_room_and_loses_nothing() {
        let q = TargetQueue::new(2, usize::MAX, QueueGauges::default());
        block_loses_nothing(q, |q| q.len() <= 2).await;
    }

    #[tokio::test]
    async fn block_waits_for_byte_room_and_loses_nothing() {
        let q = TargetQueue::new(100, 20, QueueGauges::default());
        block_loses_nothing(q, |q| q.bytes() <= 20).await;
    }

    #[tokio::test]
    async fn batches_respect_the_byte_bound_but_always_take_one() {
        let q = TargetQueue::new(10, usize::MAX, QueueGauges::default());
        q.push((0..5).map(msg).collect(), TargetWhenFull::Block)
            .await;
        let mut out = Vec::new();
        q.pop_batch(10, 25, true, &mut out).await;
        assert_eq!(out.len(), 2);
        out.clear();
        q.pop_batch(10, 1, true, &mut out).await;
        assert_eq!(out.len(), 1);
    }

    #[tokio::test]
    async fn closed_and_empty_ends_the_consumer_and_abandon_frees_producers() {
        let q = Arc::new(TargetQueue::new(1, usize::MAX, QueueGauges::default()));
        q.push(vec![msg(1)], TargetWhenFull::Block).await;
        let q2 = q.clone();
        let blocked =
            tokio::spawn(async move { q2.push(vec![msg(2), msg(3)], TargetWhenFull::Block).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(q.abandon(), 1);
        let p = blocked.await.unwrap();
        assert_eq!(p.queued + p.dropped, 2);
        q.close();
        let mut out = Vec::new();
        q.take_all();
        assert!(!q.pop_batch(1, 1, false, &mut out).await);
    }

    #[tokio::test]
    async fn the_byte_bound_drops_what_does_not_fit_and_gauges_follow() {
        let gauges = QueueGauges::default();
        // Room for 3 messages of 10 bytes, not 4.
        let q = TargetQueue::new(100, 35, gauges.clone());
        assert_eq!(offer_five(&q).await, (3, 2));
        assert_eq!((gauges.depth.get(), gauges.bytes.get()), (3, 30));
        let mut out = Vec::new();
        assert!(q.pop_batch(2, 1 << 20, false, &mut out).await);
        assert_eq!((gauges.depth.get(), gauges.bytes.get()), (1, 10));
        q.requeue_front(out);
        assert_eq!((q.len(), q.bytes()), (3, 30));
        q.take_all();
        assert_eq!((gauges.depth.get(), gauges.bytes.get()), (0, 0));
    }

    #[tokio::test]
    async fn one_message_larger_than_the_byte_bound_still_goes_into_an_empty_queue() {
        let q = TargetQueue::new(100, 5, QueueGauges::default());
        let p = q
            .push(vec![msg(1), msg(2)], TargetWhenFull::DropNewest)
            .await;
        assert_eq!(
            p,
            Pushed {
                queued: 1,
                dropped: 1
            }
        );
    }

    #[test]
    fn a_converted_message_counts_both_forms() {
        let shared = msg(1);
        assert_eq!(shared.footprint(), 10);
        let converted = Msg {
            dgram: Bytes::from(vec![1; 10]),
            stream: Bytes::from(vec![1; 30]),
            key: 0,
        };
        assert_eq!(converted.footprint(), 40);
    }
}
