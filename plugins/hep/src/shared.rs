//! The state the sink and its target tasks share: the targets (queue, up
//! flag, metrics), the choice of target per message by mode, handing a
//! down target's messages on, the sink's health, and the shutdown phase.

use crate::config::{HealthPolicy, Mode, TargetWhenFull};
use crate::metrics::TargetMetrics;
use crate::select::{key_hash, rendezvous};
use crate::target::TargetUrl;
use crate::tls::TlsClient;
use hepflow_sdk::queue::SinkQueue;
use hepflow_sdk::sink::Health;
use hepflow_sdk::Event;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Where the sink is in its life; target tasks watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Forwarding.
    Run,
    /// Shutting down: each task writes what its queue holds and ends.
    Drain,
    /// `drain_timeout` passed: each task stops where it is and hands back
    /// what it holds, for the spool (or the shutdown count).
    Abandon,
}

/// Timing and batching of the target tasks.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Connect (and TLS handshake) timeout.
    pub connect_timeout: Duration,
    /// Timeout of one batch write.
    pub write_timeout: Duration,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Reconnect delay cap.
    pub backoff_max: Duration,
    /// Messages per write.
    pub max_write_messages: usize,
    /// Bytes per stream write.
    pub max_write_bytes: usize,
}

/// One target.
pub struct Target {
    /// Its URL.
    pub url: TargetUrl,
    /// The canonical URL (metric label, log field).
    pub label: String,
    /// Rendezvous seed.
    pub seed: u64,
    /// Its queue: the engine's queue type, with a spool of its own when
    /// the sink has one.
    pub queue: Arc<SinkQueue>,
    /// Connected (UDP: socket usable).
    pub up: AtomicBool,
    /// Messages the task holds outside the queue (a batch being written
    /// or waiting to be written again).
    pub inflight: AtomicUsize,
    /// Why it is down (for `/ready`); no secrets.
    pub last_error: Mutex<String>,
    /// Its series.
    pub m: TargetMetrics,
    /// TLS client settings (`tls://`).
    pub tls: Option<TlsClient>,
}

/// Everything shared.
pub struct Shared {
    /// Sink name.
    pub name: String,
    /// The targets, in config order.
    pub targets: Vec<Target>,
    /// Their seeds, by index.
    pub seeds: Vec<u64>,
    /// Distribution mode.
    pub mode: Mode,
    /// Timing.
    pub timing: Timing,
    /// The sink's health flag.
    pub health: Health,
    /// When the sink is ready.
    pub health_policy: HealthPolicy,
    /// The shutdown phase.
    pub phase: watch::Sender<Phase>,
    /// Round-robin position.
    rr: AtomicUsize,
    /// Targets that have not finished their first connect attempt.
    first_pending: AtomicUsize,
    first_done: Notify,
}

impl Shared {
    /// Shared state over `targets`.
    pub fn new(
        name: String,
        targets: Vec<Target>,
        mode: Mode,
        timing: Timing,
        health: Health,
        health_policy: HealthPolicy,
    ) -> Self {
        let seeds = targets.iter().map(|t| t.seed).collect();
        let n = targets.len();
        Shared {
            name,
            targets,
            seeds,
            mode,
            timing,
            health,
            health_policy,
            phase: watch::Sender::new(Phase::Run),
            rr: AtomicUsize::new(0),
            first_pending: AtomicUsize::new(n),
            first_done: Notify::new(),
        }
    }

    /// Whether target `i` is up.
    pub fn is_up(&self, i: usize) -> bool {
        self.targets[i].up.load(Ordering::Acquire)
    }

    /// Whether a target other than `i` is up.
    pub fn other_up(&self, i: usize) -> bool {
        (0..self.targets.len()).any(|j| j != i && self.is_up(j))
    }

    /// Whether a target other than `i` still holds messages (queued or
    /// being written).
    pub fn others_hold_messages(&self, i: usize) -> bool {
        self.targets.iter().enumerate().any(|(j, t)| {
            j != i && (!t.queue.is_drained() || t.inflight.load(Ordering::Acquire) > 0)
        })
    }

    /// Target `i`'s first connect attempt finished (either way).
    pub fn first_attempt_done(&self) {
        if self.first_pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.first_done.notify_waiters();
        }
    }

    /// Wait until every target finished its first connect attempt.
    pub async fn wait_first_attempts(&self) {
        loop {
            let n = self.first_done.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.first_pending.load(Ordering::Acquire) == 0 {
                return;
            }
            n.await;
        }
    }

    /// Record target `i` going up or down (with why), log the change,
    /// update the health flag.
    pub fn set_up(&self, i: usize, up: bool, why: Option<&str>) {
        let t = &self.targets[i];
        let was = t.up.swap(up, Ordering::AcqRel);
        t.m.connected.set(up as i64);
        // While it is down, new messages go to its spool (if any) rather
        // than fill memory.
        t.queue.set_failing(!up);
        {
            let mut e = t.last_error.lock().unwrap_or_else(|e| e.into_inner());
            e.clear();
            if let Some(w) = why {
                e.push_str(w);
            }
        }
        if was != up {
            if up {
                tracing::info!(sink = %self.name, target = %t.label, "connected to HEP target");
            } else {
                let then = match self.mode {
                    Mode::Broadcast => "its messages wait in its queue (and spool)",
                    Mode::Hash => "its calls go to their next choice meanwhile",
                    Mode::RoundRobin => "messages go to the other targets meanwhile",
                };
                tracing::warn!(sink = %self.name, target = %t.label, error = why.unwrap_or(""), "HEP target down; reconnecting with backoff ({then})");
            }
        }
        self.update_health();
    }

    /// Target `i`'s connection was closed at shutdown (not a failure).
    pub fn mark_closed(&self, i: usize) {
        let t = &self.targets[i];
        t.up.store(false, Ordering::Release);
        t.m.connected.set(0);
        tracing::debug!(sink = %self.name, target = %t.label, "HEP target connection closed at shutdown");
    }

    /// Set the health flag from the targets' state and the policy.
    pub fn update_health(&self) {
        let down: Vec<String> = self
            .targets
            .iter()
            .filter(|t| !t.up.load(Ordering::Acquire))
            .map(|t| {
                let e = t.last_error.lock().unwrap_or_else(|e| e.into_inner());
                if e.is_empty() {
                    format!("{} (not connected yet)", t.label)
                } else {
                    format!("{} ({})", t.label, e)
                }
            })
            .collect();
        let ready = match self.health_policy {
            HealthPolicy::Any => down.len() < self.targets.len(),
            HealthPolicy::All => down.is_empty(),
        };
        if ready {
            self.health.set_ready();
        } else {
            self.health
                .set_unready(format!("HEP targets down: {}", down.join(", ")));
        }
    }

    /// The target for a message with hash `key`, skipping `exclude`:
    /// by mode, among the targets that are up. `None` when none is up
    /// (broadcast never asks).
    pub fn choose(&self, key: u64, exclude: Option<usize>) -> Option<usize> {
        let usable = |i: usize| Some(i) != exclude && self.is_up(i);
        match self.mode {
            Mode::Hash => rendezvous(key, &self.seeds, usable),
            Mode::RoundRobin | Mode::Broadcast => {
                // The next usable target after the last one chosen (a
                // target that is down does not give its turn to its
                // neighbour twice). Concurrent callers (write and a down
                // target handing on) may skew the turn slightly.
                let n = self.targets.len();
                let start = self.rr.load(Ordering::Relaxed);
                let i = (0..n).map(|k| (start + k) % n).find(|&i| usable(i))?;
                self.rr.store(i + 1, Ordering::Relaxed);
                Some(i)
            }
        }
    }

    /// The target for a new message in `hash` / `round_robin` mode: the
    /// first choice that is up; when none is up, the first choice overall
    /// (the message waits in its queue). Counts a failover on the first
    /// choice when it was down.
    fn route(&self, key: u64) -> usize {
        match self.mode {
            Mode::Hash => {
                let top = rendezvous(key, &self.seeds, |_| true).unwrap_or(0);
                if self.is_up(top) {
                    return top;
                }
                match rendezvous(key, &self.seeds, |i| self.is_up(i)) {
                    Some(j) => {
                        self.targets[top].m.failover.inc();
                        j
                    }
                    None => top,
                }
            }
            _ => self
                .choose(key, None)
                .unwrap_or_else(|| self.rr.fetch_add(1, Ordering::Relaxed) % self.targets.len()),
        }
    }

    /// The hash key of `ev` in `hash` mode (0 otherwise).
    pub fn key_of(&self, ev: &Event) -> u64 {
        if self.mode == Mode::Hash {
            key_hash(ev)
        } else {
            0
        }
    }

    /// Queue `events` (from the sink's `write`) by mode. Returns how many
    /// went into at least one queue (memory or spool), and their bytes.
    /// A queue that is full drops (counted) or waits, by its policy.
    pub async fn dispatch(&self, events: Vec<Event>) -> (u64, u64) {
        if events.is_empty() {
            return (0, 0);
        }
        let n = self.targets.len();
        if self.mode == Mode::Broadcast {
            // A message is accepted when some target queued it; a queue
            // that drops keeps a prefix, so the longest prefix counts.
            let mut accepted = 0usize;
            for i in self.order_non_blocking_first() {
                let p = self.targets[i].queue.push(events.clone()).await;
                accepted = accepted.max(p.queued);
            }
            let bytes = events[..accepted]
                .iter()
                .map(|e| e.raw().len() as u64)
                .sum();
            return (accepted as u64, bytes);
        }
        let mut per: Vec<Vec<Event>> = (0..n).map(|_| Vec::new()).collect();
        for ev in events {
            per[self.route(self.key_of(&ev))].push(ev);
        }
        let mut accepted = 0u64;
        let mut bytes = 0u64;
        for i in self.order_non_blocking_first() {
            let group = std::mem::take(&mut per[i]);
            if group.is_empty() {
                continue;
            }
            let sizes: Vec<u64> = group.iter().map(|e| e.raw().len() as u64).collect();
            let p = self.targets[i].queue.push(group).await;
            accepted += p.queued as u64;
            bytes += sizes[..p.queued.min(sizes.len())].iter().sum::<u64>();
        }
        (accepted, bytes)
    }

    /// Hand the messages of down target `from` to the other targets that
    /// are up (`hash`: each key's next choice; `round_robin`: in turn).
    /// Returns what no target could take (none is up).
    pub async fn hand_on(&self, from: usize, events: Vec<Event>) -> Vec<Event> {
        let n = self.targets.len();
        let mut per: Vec<Vec<Event>> = (0..n).map(|_| Vec::new()).collect();
        let mut left = Vec::new();
        for ev in events {
            match self.choose(self.key_of(&ev), Some(from)) {
                Some(j) => per[j].push(ev),
                None => left.push(ev),
            }
        }
        for (j, group) in per.into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            self.targets[from].m.failover.add(group.len() as u64);
            self.targets[j].queue.push(group).await;
        }
        left
    }

    /// Target indexes, those that drop when full first (pushing to them
    /// never waits), then those that block.
    fn order_non_blocking_first(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.targets.len()).collect();
        v.sort_by_key(|&i| self.targets[i].queue.when_full() == TargetWhenFull::Block);
        v
    }
}
