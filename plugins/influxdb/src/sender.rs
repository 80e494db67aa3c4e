//! The bounded pending-points buffer and the background task that writes
//! it to the server: requests of at most `max_points_per_request` points,
//! capped jittered exponential backoff while the server fails, `CREATE
//! DATABASE` when configured, and the periodic health check that sets the
//! sink's readiness.
//!
//! The sink task (aggregation) only appends to the buffer, so it never
//! waits for the server: while InfluxDB is down, hepflow keeps counting
//! and the points of the outage wait here. The buffer holds at most
//! `max_pending_points` points; beyond that the oldest (or, with
//! `when_pending_full = "drop_newest"`, the newest) are dropped and
//! counted in `hepflow_influxdb_points_dropped_total{reason="buffer_full"}`.
//! A point leaves the buffer when a request carrying it is answered 2xx
//! (`points_written`), 400/422 (`rejected`: the server's reason is logged,
//! rate-limited, and the request is not retried), or 413 for a single
//! point (`too_large`; larger requests are halved first). At shutdown,
//! what could not be written within `close_timeout` is counted as
//! `shutdown`.

use crate::config::WhenPendingFull;
use crate::writer::{Outcome, Writer};
use hepflow_sdk::delivery::backoff_delay;
use hepflow_sdk::metrics::{Counter, Gauge, Registry};
use hepflow_sdk::ratelimit::LogLimiter;
use hepflow_sdk::sink::Health;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Counters of the pending buffer and the sender.
#[derive(Clone)]
pub struct SenderMetrics {
    /// Points put into the buffer.
    pub points: Counter,
    /// Points the server accepted.
    pub written: Counter,
    /// Dropped: buffer full.
    pub dropped_full: Counter,
    /// Dropped: the server answered 400/422.
    pub dropped_rejected: Counter,
    /// Dropped: a single point answered 413.
    pub dropped_too_large: Counter,
    /// Dropped: not written by the end of `close_timeout`.
    pub dropped_shutdown: Counter,
    /// Requests answered 2xx.
    pub req_ok: Counter,
    /// Requests answered 400/422 (or another non-retryable status).
    pub req_rejected: Counter,
    /// Requests that failed and were retried.
    pub req_retry: Counter,
    /// Requests answered 413.
    pub req_too_large: Counter,
    /// Line protocol bytes sent (before gzip).
    pub bytes: Counter,
    /// Points in the buffer now (including a request in flight).
    pub pending: Gauge,
}

impl SenderMetrics {
    /// The sink's series, labelled `sink`.
    pub fn new(r: &Registry, sink: &str) -> Self {
        let dropped = |reason: &str| {
            r.counter(
                "hepflow_influxdb_points_dropped_total",
                "Points the InfluxDB sink gave up on, by reason",
                &[("sink", sink), ("reason", reason)],
            )
        };
        let req = |outcome: &str| {
            r.counter(
                "hepflow_influxdb_requests_total",
                "InfluxDB write requests, by outcome",
                &[("sink", sink), ("outcome", outcome)],
            )
        };
        SenderMetrics {
            points: r.counter(
                "hepflow_influxdb_points_total",
                "Points the InfluxDB sink produced (into its pending buffer)",
                &[("sink", sink)],
            ),
            written: r.counter(
                "hepflow_influxdb_points_written_total",
                "Points the InfluxDB server accepted",
                &[("sink", sink)],
            ),
            dropped_full: dropped("buffer_full"),
            dropped_rejected: dropped("rejected"),
            dropped_too_large: dropped("too_large"),
            dropped_shutdown: dropped("shutdown"),
            req_ok: req("ok"),
            req_rejected: req("rejected"),
            req_retry: req("retry"),
            req_too_large: req("too_large"),
            bytes: r.counter(
                "hepflow_influxdb_sent_bytes_total",
                "Line protocol bytes the InfluxDB sink sent (before gzip)",
                &[("sink", sink)],
            ),
            pending: r.gauge(
                "hepflow_influxdb_pending_points",
                "Points waiting to be written (bounded by max_pending_points)",
                &[("sink", sink)],
            ),
        }
    }
}

struct Buffer {
    lines: VecDeque<String>,
}

/// The pending-points buffer, shared by the sink and the sender task.
pub struct Pending {
    buf: Mutex<Buffer>,
    max: usize,
    policy: WhenPendingFull,
    in_flight: AtomicUsize,
    notify: Notify,
    m: SenderMetrics,
}

impl Pending {
    /// An empty buffer of at most `max` points.
    pub fn new(max: usize, policy: WhenPendingFull, m: SenderMetrics) -> Self {
        Pending {
            buf: Mutex::new(Buffer {
                lines: VecDeque::new(),
            }),
            max: max.max(1),
            policy,
            in_flight: AtomicUsize::new(0),
            notify: Notify::new(),
            m,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_gauge(&self, len: usize) {
        self.m
            .pending
            .set((len + self.in_flight.load(Ordering::Relaxed)) as i64);
    }

    /// Append new points (dropping per policy beyond the bound).
    pub fn push(&self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        self.m.points.add(lines.len() as u64);
        let mut b = self.lock();
        let mut dropped = 0u64;
        for l in lines {
            if b.lines.len() >= self.max {
                match self.policy {
                    WhenPendingFull::DropOldest => {
                        b.lines.pop_front();
                        b.lines.push_back(l);
                    }
                    // `block` is refused by the config check; it drops like drop_newest.
                    WhenPendingFull::DropNewest | WhenPendingFull::Block => {}
                }
                dropped += 1;
            } else {
                b.lines.push_back(l);
            }
        }
        self.m.dropped_full.add(dropped);
        self.update_gauge(b.lines.len());
        drop(b);
        self.notify.notify_one();
    }

    /// Take up to `n` of the oldest points for a request.
    fn take(&self, n: usize) -> Vec<String> {
        let mut b = self.lock();
        let k = n.min(b.lines.len());
        let chunk: Vec<String> = b.lines.drain(..k).collect();
        self.in_flight.store(chunk.len(), Ordering::Relaxed);
        self.update_gauge(b.lines.len());
        chunk
    }

    /// A request is settled (written or dropped).
    fn settle(&self) {
        self.in_flight.store(0, Ordering::Relaxed);
        let len = self.lock().lines.len();
        self.update_gauge(len);
    }

    /// Put a failed request's points back in front (they are the oldest),
    /// dropping per policy if new points filled the buffer meanwhile.
    fn put_back(&self, chunk: Vec<String>) {
        let mut b = self.lock();
        let room = self.max.saturating_sub(b.lines.len());
        let mut chunk = chunk;
        if chunk.len() > room {
            let excess = chunk.len() - room;
            match self.policy {
                WhenPendingFull::DropOldest => {
                    chunk.drain(..excess);
                }
                // `block` is refused by the config check; it drops like drop_newest.
                WhenPendingFull::DropNewest | WhenPendingFull::Block => {
                    let keep = b.lines.len().saturating_sub(excess);
                    let cut = b.lines.len() - keep;
                    b.lines.truncate(keep);
                    let still = excess - cut;
                    chunk.truncate(chunk.len() - still);
                }
            }
            self.m.dropped_full.add(excess as u64);
        }
        for l in chunk.into_iter().rev() {
            b.lines.push_front(l);
        }
        self.in_flight.store(0, Ordering::Relaxed);
        self.update_gauge(b.lines.len());
    }

    /// Points waiting or in flight.
    pub fn outstanding(&self) -> usize {
        self.lock().lines.len() + self.in_flight.load(Ordering::Relaxed)
    }

    /// Wake the sender (new points, or shutdown).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Count everything left as dropped at shutdown; returns how many.
    pub fn discard_all(&self) -> u64 {
        let mut b = self.lock();
        let n = (b.lines.len() + self.in_flight.swap(0, Ordering::Relaxed)) as u64;
        b.lines.clear();
        self.m.dropped_shutdown.add(n);
        self.m.pending.set(0);
        n
    }
}

/// Sender settings.
#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// Sink name (logs).
    pub sink: String,
    /// Database/bucket, for logs.
    pub target: String,
    /// Points per request.
    pub max_points_per_request: usize,
    /// First backoff delay.
    pub backoff_initial: Duration,
    /// Backoff cap.
    pub backoff_max: Duration,
    /// Health check period.
    pub health_interval: Duration,
}

/// Backoff state of the sender.
struct Retry {
    attempt: u32,
    next_attempt: Instant,
    write_err: Option<String>,
    log: LogLimiter,
}

impl Retry {
    /// A failed attempt: count, schedule the next one, log (rate-limited).
    fn fail(
        &mut self,
        s: &SenderSettings,
        m: &SenderMetrics,
        outstanding: usize,
        why: String,
        label: &'static str,
        retry_after: Option<Duration>,
    ) {
        m.req_retry.inc();
        let mut d = backoff_delay(self.attempt, s.backoff_initial, s.backoff_max);
        if let Some(ra) = retry_after {
            d = d.max(ra.min(s.backoff_max));
        }
        self.attempt = self.attempt.saturating_add(1);
        self.next_attempt = Instant::now() + d;
        if let Some(n) = self.log.allow() {
            tracing::warn!(
                sink = %s.sink, target = %s.target, error = %why, kind = label,
                retry_in = ?d, pending = outstanding, suppressed = n,
                "InfluxDB write failed; points stay in the pending buffer and are retried with backoff"
            );
        }
        self.write_err = Some(why);
    }
}

/// The sender task: runs until aborted.
pub async fn run(writer: Writer, pending: Arc<Pending>, s: SenderSettings, health: Health) {
    let m = pending.m.clone();
    let mut reject_log = LogLimiter::default();
    let mut r = Retry {
        attempt: 0,
        next_attempt: Instant::now(),
        write_err: None,
        log: LogLimiter::default(),
    };
    let mut next_health = Instant::now();
    let mut ping_err: Option<String> = None;
    let mut db_ready = !writer.wants_create_database();
    let mut chunk_size = s.max_points_per_request;

    let set_health = |ping: &Option<String>, write: &Option<String>| match (write, ping) {
        (Some(w), _) => health.set_unready(format!("writes to {} failing: {w}", s.target)),
        (None, Some(p)) => health.set_unready(p.clone()),
        (None, None) => health.set_ready(),
    };

    loop {
        let now = Instant::now();
        if now >= next_health {
            ping_err = writer.health().await.err();
            next_health = Instant::now() + s.health_interval;
            set_health(&ping_err, &r.write_err);
        }
        let nothing = pending.lock().lines.is_empty();
        if nothing || now < r.next_attempt {
            let wake = if nothing {
                next_health
            } else {
                r.next_attempt.min(next_health)
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = pending.notify.notified(), if nothing => {}
            }
            continue;
        }

        if !db_ready {
            match writer.create_database().await {
                Ok(()) => {
                    db_ready = true;
                    tracing::info!(sink = %s.sink, target = %s.target, "database created (or already present)");
                }
                Err(e) => {
                    r.fail(&s, &m, pending.outstanding(), e, "create_database", None);
                    set_health(&ping_err, &r.write_err);
                    continue;
                }
            }
        }

        let chunk = pending.take(chunk_size);
        if chunk.is_empty() {
            pending.settle();
            continue;
        }
        let mut body = String::with_capacity(chunk.iter().map(|l| l.len() + 1).sum());
        for l in &chunk {
            body.push_str(l);
            body.push('\n');
        }
        match writer.write(&body).await {
            Outcome::Written => {
                m.req_ok.inc();
                m.written.add(chunk.len() as u64);
                m.bytes.add(body.len() as u64);
                pending.settle();
                if r.attempt > 0 {
                    tracing::info!(sink = %s.sink, target = %s.target, attempts = r.attempt + 1, "InfluxDB writes succeed again");
                }
                r.attempt = 0;
                r.write_err = None;
                chunk_size = chunk_size.saturating_mul(2).min(s.max_points_per_request);
            }
            Outcome::Rejected { status, reason } => {
                m.req_rejected.inc();
                m.dropped_rejected.add(chunk.len() as u64);
                m.bytes.add(body.len() as u64);
                pending.settle();
                r.attempt = 0;
                r.write_err = None;
                if let Some(n) = reject_log.allow() {
                    tracing::error!(
                        sink = %s.sink, target = %s.target, status, reason = %reason,
                        points = chunk.len(), suppressed = n,
                        "InfluxDB rejected a write request; its points are dropped (not retried) and counted"
                    );
                }
            }
            Outcome::TooLarge => {
                m.req_too_large.inc();
                if chunk.len() > 1 {
                    chunk_size = (chunk.len() / 2).max(1);
                    pending.put_back(chunk);
                } else {
                    m.dropped_too_large.add(1);
                    pending.settle();
                    if let Some(n) = reject_log.allow() {
                        tracing::error!(sink = %s.sink, target = %s.target, suppressed = n,
                            "InfluxDB answered 413 to a single point; it is dropped and counted (raise the server's max body size)");
                    }
                }
            }
            Outcome::Retry {
                why,
                label,
                retry_after,
            } => {
                if label == "http_404" && writer.wants_create_database() {
                    db_ready = false;
                }
                pending.put_back(chunk);
                r.fail(&s, &m, pending.outstanding(), why, label, retry_after);
            }
        }
        set_health(&ping_err, &r.write_err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(max: usize, p: WhenPendingFull) -> (Pending, Registry) {
        let r = Registry::new();
        (Pending::new(max, p, SenderMetrics::new(&r, "t")), r)
    }

    fn lines(r: std::ops::Range<usize>) -> Vec<String> {
        r.map(|i| i.to_string()).collect()
    }

    fn dropped_full(r: &Registry) -> f64 {
        r.value(
            "hepflow_influxdb_points_dropped_total",
            &[("sink", "t"), ("reason", "buffer_full")],
        )
        .unwrap()
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_counts() {
        let (p, r) = pending(3, WhenPendingFull::DropOldest);
        p.push(lines(0..5));
        assert_eq!(p.take(10), lines(2..5));
        assert_eq!(dropped_full(&r), 2.0);
    }

    #[test]
    fn drop_newest_keeps_the_oldest_and_counts() {
        let (p, r) = pending(3, WhenPendingFull::DropNewest);
        p.push(lines(0..5));
        assert_eq!(p.take(10), lines(0..3));
        assert_eq!(dropped_full(&r), 2.0);
    }

    #[test]
    fn put_back_goes_in_front_within_the_bound() {
        let (p, r) = pending(4, WhenPendingFull::DropOldest);
        p.push(lines(0..3));
        let c = p.take(2);
        assert_eq!(p.outstanding(), 3);
        p.push(lines(3..6)); // buffer: 2,3,4,5 (full)
        p.put_back(c); // 0 and 1 do not fit: dropped (oldest)
        assert_eq!(p.take(10), lines(2..6));
        assert_eq!(dropped_full(&r), 2.0);

        let (p, _r) = pending(4, WhenPendingFull::DropNewest);
        p.push(lines(0..3));
        let c = p.take(2);
        p.push(lines(3..5)); // buffer: 2,3,4
        p.put_back(c); // 5 points for 4 places: newest (4) dropped
        assert_eq!(p.take(10), lines(0..4));
    }

    #[test]
    fn discard_counts_what_is_left() {
        let (p, r) = pending(10, WhenPendingFull::DropOldest);
        p.push(lines(0..4));
        let _c = p.take(1);
        assert_eq!(p.discard_all(), 4);
        assert_eq!(
            r.value(
                "hepflow_influxdb_points_dropped_total",
                &[("sink", "t"), ("reason", "shutdown")]
            ),
            Some(4.0)
        );
    }
}
