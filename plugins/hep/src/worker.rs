//! The task of one target: connect, write batches from the target's queue,
//! notice a lost connection, reconnect with capped jittered backoff. While
//! the target is down in `hash` or `round_robin` mode, the task hands
//! what it holds and what arrives in its queue on to the targets that are
//! up. It ends when the queue is closed and everything is written (the
//! sink's `close` aborts it after `drain_timeout`).

use crate::config::Mode;
use crate::conn::{connect, Conn};
use crate::queue::Msg;
use crate::shared::Shared;
use bytes::BytesMut;
use hepflow_sdk::delivery::backoff_delay;
use hepflow_sdk::ratelimit::LogLimiter;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A connection that stayed up this long resets the reconnect backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(5);

/// How often a task whose queue is drained at shutdown checks whether
/// another target may still hand it messages.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Per-task state.
struct Task {
    shared: Arc<Shared>,
    i: usize,
    /// A batch taken from the queue and not yet written.
    pending: Vec<Msg>,
    buf: BytesMut,
    attempt: u32,
    log: LogLimiter,
}

impl Task {
    fn finished(&self) -> bool {
        let q = &self.shared.targets[self.i].queue;
        q.is_closed() && q.is_empty() && self.pending.is_empty()
    }

    fn set_inflight(&self) {
        self.shared.targets[self.i]
            .inflight
            .store(self.pending.len(), Ordering::Release);
    }

    /// Write batches until the connection is lost (`Some(why)`) or the
    /// queue is closed and drained (`None`).
    async fn serve(&mut self, mut conn: Conn) -> Option<String> {
        let shared = self.shared.clone();
        let t = &shared.targets[self.i];
        let stream = conn.is_stream();
        let timing = &shared.timing;
        loop {
            if self.pending.is_empty() {
                let got = tokio::select! {
                    biased;
                    e = conn.closed() => return Some(e.to_string()),
                    got = t.queue.pop_batch(
                        timing.max_write_messages,
                        timing.max_write_bytes,
                        stream,
                        &mut self.pending,
                    ) => got,
                };
                self.set_inflight();
                if !got {
                    // Closed and drained. In hash / round-robin mode a
                    // target that is down may still hand messages on to
                    // this one: stay until no other target holds any.
                    if shared.mode == Mode::Broadcast || !shared.others_hold_messages(self.i) {
                        return None;
                    }
                    tokio::select! {
                        e = conn.closed() => return Some(e.to_string()),
                        _ = tokio::time::sleep(DRAIN_POLL) => {}
                    }
                    continue;
                }
            }
            let r = tokio::time::timeout(
                timing.write_timeout,
                conn.write_batch(&self.pending, &mut self.buf),
            )
            .await;
            let (written, lost) = match r {
                Ok(Ok(w)) => {
                    self.pending.clear();
                    (w, None)
                }
                Ok(Err(f)) => {
                    self.pending.drain(..f.done);
                    (f.written, Some(f.error.to_string()))
                }
                Err(_) => (
                    Default::default(),
                    Some(format!(
                        "write timed out after {:?} (the target does not read)",
                        timing.write_timeout
                    )),
                ),
            };
            self.set_inflight();
            t.m.sent.add(written.sent);
            t.m.bytes.add(written.bytes);
            t.m.writes.add(written.writes);
            t.m.dropped_send_error.add(written.failed);
            if lost.is_some() {
                return lost;
            }
        }
    }

    /// The target is down: wait `delay` before the next connect, handing
    /// messages on meanwhile where the mode allows.
    async fn wait_down(&mut self, delay: Duration) {
        let shared = self.shared.clone();
        let t = &shared.targets[self.i];
        let until = Instant::now() + delay;
        let movable = shared.mode != Mode::Broadcast;
        loop {
            if movable && shared.other_up(self.i) {
                let mut msgs = std::mem::take(&mut self.pending);
                msgs.extend(t.queue.take_all());
                self.set_inflight();
                if !msgs.is_empty() {
                    let left = shared.hand_on(self.i, msgs).await;
                    t.queue.requeue_front(left);
                }
            }
            if self.finished() {
                return;
            }
            let watch_queue = movable && shared.other_up(self.i) && t.queue.is_empty();
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                _ = t.queue.wait_nonempty(), if watch_queue => {}
            }
        }
    }

    async fn run(mut self) {
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

/// Run target `i`'s task until its queue is closed and drained.
pub async fn run_target(shared: Arc<Shared>, i: usize) {
    Task {
        shared,
        i,
        pending: Vec::new(),
        buf: BytesMut::new(),
        attempt: 0,
        log: LogLimiter::default(),
    }
    .run()
    .await
}
