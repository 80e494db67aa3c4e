//! The task of one target: connect, take batches from the target's queue
//! (memory, then its spool), prepare and write them, notice a lost
//! connection, reconnect with capped jittered backoff. While the target
//! is down in `hash` or `round_robin` mode, the task hands what it holds
//! and what arrives in its queue on to the targets that are up.
//!
//! A batch taken from the queue is acknowledged to it (and so leaves the
//! spool) only once every message of it is written or given up. At
//! shutdown ([`Phase::Drain`]) the task writes what its queue holds and
//! ends; told to stop where it is ([`Phase::Abandon`]), it returns what it
//! still holds ([`Leftover`]) for the sink to spool or count.

use crate::config::Mode;
use crate::conn::{connect, Conn};
use crate::prepare::{Msg, Preparer};
use crate::shared::{Phase, Shared};
use bytes::BytesMut;
use hepflow_sdk::delivery::backoff_delay;
use hepflow_sdk::metrics::Counter;
use hepflow_sdk::queue::Popped;
use hepflow_sdk::ratelimit::LogLimiter;
use hepflow_sdk::Event;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// A connection that stayed up this long resets the reconnect backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(5);

/// How often a task whose queue is drained at shutdown checks whether
/// another target may still hand it messages.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// What a task still held when it was told to stop where it was.
#[derive(Default)]
pub struct Leftover {
    /// The messages of its current batch not written yet.
    pub events: Vec<Event>,
    /// That batch's receipt from the queue.
    pub popped: Option<Popped>,
    /// Part of that batch was written (or given up) already.
    pub partly_done: bool,
}

/// Per-task state.
struct Task {
    shared: Arc<Shared>,
    i: usize,
    preparer: Preparer,
    /// The messages of the batch taken from the queue not written yet.
    pending: Vec<Event>,
    /// Their prepared forms, position for position (empty until the
    /// batch is about to be written).
    prepared: Vec<Msg>,
    /// The queue's receipt for the batch `pending` is what is left of.
    popped: Option<Popped>,
    /// Part of that batch was written (or given up) already.
    partly_done: bool,
    encode_failed: Counter,
    buf: BytesMut,
    attempt: u32,
    log: LogLimiter,
    log_encode: LogLimiter,
}

impl Task {
    fn phase(&self) -> Phase {
        *self.shared.phase.borrow()
    }

    fn finished(&self) -> bool {
        self.phase() >= Phase::Drain
            && self.pending.is_empty()
            && self.shared.targets[self.i].queue.is_drained()
    }

    fn set_inflight(&self) {
        self.shared.targets[self.i]
            .inflight
            .store(self.pending.len(), Ordering::Release);
    }

    /// The batch is done with: acknowledge it to the queue.
    fn settle_if_done(&mut self) {
        if self.pending.is_empty() {
            if let Some(p) = self.popped.take() {
                self.shared.targets[self.i].queue.done(p);
            }
            self.partly_done = false;
        }
    }

    /// Take a batch from the queue into `pending`, waiting for one; false
    /// when the queue is closed and empty.
    async fn take_batch(&mut self) -> bool {
        // A batch whose messages are all settled is acknowledged first.
        self.settle_if_done();
        let t = &self.shared.targets[self.i];
        let mut events = Vec::new();
        let got = t
            .queue
            .pop_batch(
                self.shared.timing.max_write_messages,
                Duration::ZERO,
                &mut events,
            )
            .await;
        let Some(popped) = got else {
            return false;
        };
        self.pending = events;
        self.popped = Some(popped);
        self.partly_done = false;
        self.set_inflight();
        true
    }

    /// Prepare `pending` for writing; messages that cannot be encoded are
    /// given up and counted.
    fn prepare_pending(&mut self) {
        if !self.prepared.is_empty() || self.pending.is_empty() {
            return;
        }
        let before = self.pending.len();
        let mut prepared = Vec::with_capacity(before);
        let preparer = &mut self.preparer;
        let (log, name, failed) = (&mut self.log_encode, &self.shared.name, &self.encode_failed);
        self.pending.retain(|ev| match preparer.prepare(ev) {
            Ok(m) => {
                prepared.push(m);
                true
            }
            Err(e) => {
                failed.inc();
                if let Some(n) = log.allow() {
                    tracing::warn!(sink = %name, error = %e, suppressed = n, "a message cannot be encoded as HEPv3; it is dropped and counted (hepflow_sink_failed_total{{reason=\"encode_error\"}})");
                }
                false
            }
        });
        self.partly_done |= self.pending.len() < before;
        self.prepared = prepared;
        self.set_inflight();
    }

    /// How many of `prepared` (from the front) go in one write: at most
    /// `max_write_bytes`, at least one.
    fn next_write_len(&self) -> usize {
        let max = self.shared.timing.max_write_bytes;
        let mut bytes = 0usize;
        let mut n = 0;
        for m in &self.prepared {
            if n > 0 && bytes + m.bytes.len() > max {
                break;
            }
            bytes += m.bytes.len();
            n += 1;
        }
        n
    }

    fn written(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.pending.drain(..n);
        self.prepared.drain(..n);
        self.partly_done = true;
        self.set_inflight();
        self.settle_if_done();
    }

    /// Write batches until the connection is lost (`Some(why)`) or the
    /// queue is drained at shutdown (`None`).
    async fn serve(&mut self, mut conn: Conn) -> Option<String> {
        let shared = self.shared.clone();
        let t = &shared.targets[self.i];
        let mut phase = shared.phase.subscribe();
        loop {
            if self.pending.is_empty() {
                self.settle_if_done();
                if self.phase() >= Phase::Drain && t.queue.is_drained() {
                    // In hash / round-robin mode a target that is down may
                    // still hand messages on to this one: stay until no
                    // other target holds any.
                    if shared.mode == Mode::Broadcast || !shared.others_hold_messages(self.i) {
                        return None;
                    }
                    tokio::select! {
                        e = conn.closed() => return Some(e.to_string()),
                        _ = tokio::time::sleep(DRAIN_POLL) => {}
                    }
                    continue;
                }
                let draining = self.phase() >= Phase::Drain;
                tokio::select! {
                    biased;
                    e = conn.closed() => return Some(e.to_string()),
                    got = self.take_batch() => if !got { return None },
                    _ = phase.changed(), if !draining => continue,
                }
            }
            self.prepare_pending();
            if self.prepared.is_empty() {
                continue;
            }
            // The runtime may not have seen a FIN or RST that the kernel
            // already has: ask the socket, so that nothing is written into
            // a connection known to be dead.
            if let Some(e) = conn.peer_gone() {
                return Some(e.to_string());
            }
            let n = self.next_write_len();
            let r = tokio::time::timeout(
                shared.timing.write_timeout,
                conn.write_batch(&self.prepared[..n], &mut self.buf),
            )
            .await;
            let (written, done, lost) = match r {
                Ok(Ok(w)) => (w, n, None),
                Ok(Err(f)) => (f.written, f.done, Some(f.error.to_string())),
                Err(_) => (
                    Default::default(),
                    0,
                    Some(format!(
                        "write timed out after {:?} (the target does not read)",
                        shared.timing.write_timeout
                    )),
                ),
            };
            self.written(done);
            t.m.sent.add(written.sent);
            t.m.bytes.add(written.bytes);
            t.m.writes.add(written.writes);
            t.m.dropped_send_error.add(written.failed);
            if lost.is_some() {
                return lost;
            }
        }
    }

    /// In `hash` / `round_robin` mode with another target up: hand what
    /// this task holds on to the targets that are up.
    async fn hand_on_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.pending);
        self.prepared.clear();
        let left = self.shared.hand_on(self.i, events).await;
        if !left.is_empty() {
            self.partly_done = true;
        }
        self.pending = left;
        self.set_inflight();
        self.settle_if_done();
    }

    /// The target is down: wait `delay` before the next connect, handing
    /// messages on meanwhile where the mode allows.
    async fn wait_down(&mut self, delay: Duration) {
        let shared = self.shared.clone();
        let t = &shared.targets[self.i];
        let until = Instant::now() + delay;
        let movable = shared.mode != Mode::Broadcast;
        let mut phase = shared.phase.subscribe();
        loop {
            let can_move = movable && shared.other_up(self.i);
            if can_move {
                self.hand_on_pending().await;
            }
            if self.finished() {
                return;
            }
            let take = can_move && self.pending.is_empty() && !t.queue.is_drained();
            let draining = self.phase() >= Phase::Drain;
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                got = self.take_batch(), if take => if !got { return },
                _ = phase.changed(), if !draining => {}
                // A target coming up elsewhere makes messages movable.
                _ = tokio::time::sleep(DRAIN_POLL * 5), if movable && !can_move => {}
            }
        }
    }

    async fn run(&mut self) {
        let shared = self.shared.clone();
        let t = &shared.targets[self.i];
        let mut first = true;
        let mut ever_connected = false;
        loop {
            if self.finished() {
                break;
            }
            match connect(&t.url, t.tls.as_ref(), shared.timing.connect_timeout).await {
                Ok(conn) => {
                    if ever_connected {
                        t.m.reconnects.inc();
                    }
                    ever_connected = true;
                    shared.set_up(self.i, true, None);
                    if std::mem::take(&mut first) {
                        shared.first_attempt_done();
                    }
                    let since = Instant::now();
                    let lost = self.serve(conn).await;
                    // A connection that lasted resets the backoff; one that
                    // fails at once (a peer that accepts and then refuses,
                    // a UDP port that answers "unreachable") backs off more.
                    if since.elapsed() >= STABLE_CONNECTION {
                        self.attempt = 0;
                    }
                    match lost {
                        None => {
                            shared.mark_closed(self.i);
                            break;
                        }
                        Some(why) => shared.set_up(self.i, false, Some(&why)),
                    }
                }
                Err(e) => {
                    t.m.connect_failures.inc();
                    let why = e.to_string();
                    shared.set_up(self.i, false, Some(&why));
                    if std::mem::take(&mut first) {
                        shared.first_attempt_done();
                    }
                    if let Some(n) = self.log.allow() {
                        tracing::warn!(sink = %shared.name, target = %t.label, error = %why, suppressed = n, "cannot connect to HEP target; retrying with backoff");
                    }
                }
            }
            let delay = backoff_delay(
                self.attempt,
                shared.timing.backoff_initial,
                shared.timing.backoff_max,
            );
            self.attempt = self.attempt.saturating_add(1);
            self.wait_down(delay).await;
        }
        if first {
            shared.first_attempt_done();
        }
    }
}

/// Resolves once the sink's phase is [`Phase::Abandon`].
async fn abandoned(mut phase: watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p == Phase::Abandon).await;
}

/// Run target `i`'s task until its queue is drained at shutdown, or until
/// it is told to stop where it is; returns what it still held.
pub async fn run_target(
    shared: Arc<Shared>,
    i: usize,
    preparer: Preparer,
    encode_failed: Counter,
) -> Leftover {
    let stop = abandoned(shared.phase.subscribe());
    let mut task = Task {
        shared,
        i,
        preparer,
        pending: Vec::new(),
        prepared: Vec::new(),
        popped: None,
        partly_done: false,
        encode_failed,
        buf: BytesMut::new(),
        attempt: 0,
        log: LogLimiter::default(),
        log_encode: LogLimiter::default(),
    };
    tokio::select! {
        _ = task.run() => {}
        _ = stop => {}
    }
    task.set_inflight();
    Leftover {
        events: std::mem::take(&mut task.pending),
        popped: task.popped.take(),
        partly_done: task.partly_done,
    }
}
