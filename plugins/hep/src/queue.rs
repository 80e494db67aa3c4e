//! The bounded queue in front of each target, and [`Msg`], one prepared
//! message in it.
//!
//! Producers are the sink's `write` (one call at a time) and, in `hash` /
//! `round_robin` mode, the tasks of targets that are down handing their
//! messages on. The consumer is the target's own connection task. The
//! bound is counted in messages; when the queue is full the target's
//! policy applies: `drop_newest` drops what does not fit and returns the
//! count, `block` waits for room. Messages put back after a failed write
//! ([`TargetQueue::requeue_front`]) may exceed the bound by at most one
//! write's worth.

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

/// One target's bounded queue.
pub struct TargetQueue {
    items: Mutex<VecDeque<Msg>>,
    capacity: usize,
    /// No more messages will arrive: the consumer stops when it is empty.
    closed: AtomicBool,
    /// The consumer is gone: pushes drop everything.
    abandoned: AtomicBool,
    not_empty: Notify,
    not_full: Notify,
    depth: Gauge,
}

impl TargetQueue {
    /// A queue for at most `capacity` messages; `depth` mirrors its length.
    pub fn new(capacity: usize, depth: Gauge) -> Self {
        TargetQueue {
            items: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity,
            closed: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            not_empty: Notify::new(),
            not_full: Notify::new(),
            depth,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Msg>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Move as many of `msgs` as fit into `q`; returns how many.
    fn fill(&self, q: &mut VecDeque<Msg>, msgs: &mut std::vec::IntoIter<Msg>) -> usize {
        let room = self.capacity.saturating_sub(q.len());
        let mut n = 0;
        for m in msgs.by_ref().take(room) {
            q.push_back(m);
            n += 1;
        }
        self.depth.set(q.len() as i64);
        n
    }

    /// Queue `msgs` under `policy`.
    pub async fn push(&self, msgs: Vec<Msg>, policy: TargetWhenFull) -> Pushed {
        let total = msgs.len();
        let mut out = Pushed::default();
        if total == 0 {
            return out;
        }
        let mut rest = msgs.into_iter();
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
            q.push_front(m);
        }
        self.depth.set(q.len() as i64);
        drop(q);
        self.not_empty.notify_one();
    }

    /// Take everything waiting.
    pub fn take_all(&self) -> Vec<Msg> {
        let mut q = self.lock();
        let v: Vec<Msg> = q.drain(..).collect();
        self.depth.set(0);
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
                if !q.is_empty() {
                    let mut bytes = 0usize;
                    while out.len() < max_msgs {
                        let Some(m) = q.front() else { break };
                        let len = m.bytes(stream).len();
                        if !out.is_empty() && bytes + len > max_bytes {
                            break;
                        }
                        bytes += len;
                        out.extend(q.pop_front());
                    }
                    self.depth.set(q.len() as i64);
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

    #[tokio::test]
    async fn drop_newest_counts_what_does_not_fit() {
        let q = TargetQueue::new(3, Gauge::default());
        let p = q
            .push((0..5).map(msg).collect(), TargetWhenFull::DropNewest)
            .await;
        assert_eq!(
            p,
            Pushed {
                queued: 3,
                dropped: 2
            }
        );
        let mut out = Vec::new();
        assert!(q.pop_batch(10, 1 << 20, false, &mut out).await);
        assert_eq!(
            out.iter().map(|m| m.dgram[0]).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[tokio::test]
    async fn block_waits_for_room_and_loses_nothing() {
        let q = Arc::new(TargetQueue::new(2, Gauge::default()));
        let q2 = q.clone();
        let producer = tokio::spawn(async move {
            q2.push((0..10).map(msg).collect(), TargetWhenFull::Block)
                .await
        });
        let mut got = Vec::new();
        while got.len() < 10 {
            let mut out = Vec::new();
            assert!(q.pop_batch(1, 1 << 20, false, &mut out).await);
            assert!(q.len() <= 2);
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
    async fn batches_respect_the_byte_bound_but_always_take_one() {
        let q = TargetQueue::new(10, Gauge::default());
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
        let q = Arc::new(TargetQueue::new(1, Gauge::default()));
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
}
