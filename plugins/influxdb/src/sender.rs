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
//! point (`too_large`; larger requests are halved first).
//!
//! With a spool (`[sinks.NAME.spool]`) the buffer has a disk tier of its
//! own (the SDK's [`DiskTier`], one record per point, in
//! `parts/points` under the sink's spool directory), used like the sink
//! queues use theirs: in `overflow` mode points go to disk when memory
//! holds `max_pending_points` or while writes fail, and new points follow
//! them there until the disk backlog is written; in `always` mode every
//! point is written ahead. A request read from disk is acknowledged once
//! written (or given up). At shutdown, what memory still holds after
//! `close_timeout` is written in front of the spool, and the next start
//! sends it. Without a spool, what is left is counted as `shutdown`.

use crate::config::WhenPendingFull;
use crate::writer::{Outcome, Writer};
use hepflow_sdk::delivery::{backoff_delay, WhenFull};
use hepflow_sdk::metrics::{Counter, Gauge, Registry};
use hepflow_sdk::queue::disk::{DiskTier, RecordCodec};
use hepflow_sdk::ratelimit::LogLimiter;
use hepflow_sdk::sink::Health;
use hepflow_sdk::spool::config::SpoolMode;
use hepflow_sdk::spool::{AckToken, SpooledRecord};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
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

/// Points as spool records: one line of line protocol each.
pub struct LineCodec;

impl RecordCodec for LineCodec {
    type Item = String;

    fn encode(line: &String, buf: &mut Vec<u8>) {
        buf.extend_from_slice(line.as_bytes());
    }

    fn decode(&mut self, records: Vec<SpooledRecord>, out: &mut Vec<String>) -> Vec<String> {
        let mut errors = Vec::new();
        for r in records {
            match String::from_utf8(r.payload.to_vec()) {
                Ok(line) => out.push(line),
                Err(e) => errors.push(format!("a spooled point is not UTF-8: {e}")),
            }
        }
        errors
    }
}

struct Buffer {
    /// Points in memory, oldest first (older than any on disk).
    lines: VecDeque<String>,
    /// Points read back from the disk tier not yet sent, and the token
    /// that acknowledges their read once all of them are settled.
    from_disk: VecDeque<String>,
    disk_token: Option<AckToken>,
    /// The points of the request being sent.
    in_flight: Vec<String>,
    /// Whether they came from `from_disk`.
    in_flight_from_disk: bool,
    /// New points go to disk (memory overflowed, writes failing, or
    /// `always`), until the disk backlog is written.
    to_disk: bool,
}

impl Buffer {
    fn in_memory(&self) -> usize {
        self.lines.len() + self.from_disk.len() + self.in_flight.len()
    }
}

/// The pending-points buffer, shared by the sink and the sender task.
pub struct Pending {
    buf: Mutex<Buffer>,
    max: usize,
    policy: WhenPendingFull,
    notify: Notify,
    m: SenderMetrics,
    disk: OnceLock<DiskTier<LineCodec>>,
}

impl Pending {
    /// An empty buffer of at most `max` points (in memory).
    pub fn new(max: usize, policy: WhenPendingFull, m: SenderMetrics) -> Self {
        Pending {
            buf: Mutex::new(Buffer {
                lines: VecDeque::new(),
                from_disk: VecDeque::new(),
                disk_token: None,
                in_flight: Vec::new(),
                in_flight_from_disk: false,
                to_disk: false,
            }),
            max: max.max(1),
            policy,
            notify: Notify::new(),
            m,
            disk: OnceLock::new(),
        }
    }

    /// Put `disk` behind the buffer (once, before points arrive); a
    /// backlog from an earlier run is sent first, new points queue on
    /// disk behind it.
    pub fn set_disk(&self, disk: DiskTier<LineCodec>) {
        let behind = disk.mode == SpoolMode::Always || disk.records() > 0;
        if self.disk.set(disk).is_ok() {
            self.lock().to_disk = behind;
            self.notify.notify_one();
        }
    }

    /// The disk tier, if the sink has a spool.
    pub fn disk(&self) -> Option<&DiskTier<LineCodec>> {
        self.disk.get()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_gauge(&self, b: &Buffer) {
        self.m.pending.set(b.in_memory() as i64);
    }

    /// Append new points: to memory while it has room, else (or while
    /// points are queued on disk, or writes fail) to the disk tier;
    /// without one, drop per policy beyond the bound. Drops are counted.
    pub fn push(&self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        self.m.points.add(lines.len() as u64);
        let mut b = self.lock();
        let disk = self.disk.get();
        if disk.is_some_and(|d| d.failing()) {
            b.to_disk = true;
        }
        let mut lines = lines;
        if !b.to_disk {
            let room = self.max.saturating_sub(b.in_memory());
            let fit = lines.len().min(room);
            b.lines.extend(lines.drain(..fit));
        }
        if !lines.is_empty() {
            match disk {
                Some(d) => {
                    b.to_disk = true;
                    // The sink never waits on its own buffer: `block`
                    // (refused by the config check) drops like drop_newest.
                    let policy = match self.policy {
                        WhenFull::Block => WhenFull::DropNewest,
                        p => p,
                    };
                    let spool = d.lock();
                    d.append(spool, &mut lines, policy);
                }
                None => self.drop_for(&mut b, lines),
            }
        }
        self.update_gauge(&b);
        drop(b);
        self.notify.notify_one();
    }

    /// No disk tier and no room: the policy decides which points go.
    fn drop_for(&self, b: &mut Buffer, lines: Vec<String>) {
        let dropped = lines.len() as u64;
        if self.policy == WhenPendingFull::DropOldest {
            for l in lines {
                if b.lines.pop_front().is_some() {
                    b.lines.push_back(l);
                }
            }
        }
        self.m.dropped_full.add(dropped);
    }

    /// Take up to `n` of the oldest points for a request (memory first,
    /// then what was read back from disk, reading more when needed): the
    /// request body and how many points it holds (0: nothing to send).
    fn take(&self, n: usize) -> (String, usize) {
        let mut b = self.lock();
        let b = &mut *b;
        if b.lines.is_empty() && b.from_disk.is_empty() {
            if let Some(d) = self.disk.get() {
                let mut read = Vec::new();
                if let Some(token) = d.read(n, &mut read) {
                    b.from_disk.extend(read);
                    b.disk_token = Some(token);
                }
            }
        }
        let (src, from_disk) = if b.lines.is_empty() {
            (&mut b.from_disk, true)
        } else {
            (&mut b.lines, false)
        };
        let k = n.min(src.len());
        b.in_flight.extend(src.drain(..k));
        b.in_flight_from_disk = from_disk;
        let mut body = String::with_capacity(b.in_flight.iter().map(|l| l.len() + 1).sum());
        for l in &b.in_flight {
            body.push_str(l);
            body.push('\n');
        }
        self.update_gauge(b);
        (body, k)
    }

    /// A request is settled (written or dropped): a read from disk whose
    /// points are all settled is acknowledged, and once the disk backlog
    /// is written new points go to memory again (`overflow`).
    fn settle(&self) {
        let mut b = self.lock();
        b.in_flight.clear();
        if b.in_flight_from_disk && b.from_disk.is_empty() {
            if let (Some(d), Some(token)) = (self.disk.get(), b.disk_token.take()) {
                let empty = d.ack(&token);
                if empty && d.mode == SpoolMode::Overflow && !d.failing() {
                    b.to_disk = false;
                }
            }
        }
        b.in_flight_from_disk = false;
        self.update_gauge(&b);
    }

    /// Put a failed request's points back in front (they are the
    /// oldest). Without a disk tier, points beyond the bound (new points
    /// filled the buffer meanwhile) are dropped per policy.
    fn put_back(&self) {
        let mut b = self.lock();
        let b = &mut *b;
        let mut chunk = std::mem::take(&mut b.in_flight);
        if b.in_flight_from_disk {
            for l in chunk.into_iter().rev() {
                b.from_disk.push_front(l);
            }
            self.update_gauge(b);
            return;
        }
        let room = self.max.saturating_sub(b.in_memory());
        if chunk.len() > room && self.disk.get().is_none() {
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
        self.update_gauge(b);
    }

    /// Whether writes fail: while they do, new points go to disk.
    fn set_failing(&self, failing: bool) {
        if let Some(d) = self.disk.get() {
            d.set_failing(failing);
        }
    }

    /// Points waiting or in flight, in memory and on disk.
    pub fn outstanding(&self) -> usize {
        let disk = self.disk.get().map_or(0, |d| d.records() as usize);
        self.lock().in_memory() + disk
    }

    /// Wake the sender (new points, or shutdown).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Fsync the disk tier and store its reader position.
    pub fn checkpoint(&self) {
        if let Some(d) = self.disk.get() {
            d.checkpoint();
        }
    }

    /// Shutdown, the sender stopped: with a disk tier, what memory holds
    /// (a request in flight from memory first) is written in front of
    /// the spool, and points read back from it stay there, not
    /// acknowledged; returns `(spilled, lost)`. Without one, everything
    /// left is counted as dropped (`shutdown`).
    pub fn give_up(&self) -> (u64, u64) {
        let mut b = self.lock();
        let b = &mut *b;
        let mut memory: Vec<String> = Vec::new();
        if !b.in_flight_from_disk {
            memory.append(&mut b.in_flight);
        }
        memory.extend(b.lines.drain(..));
        let from_disk = b.from_disk.len() + b.in_flight.len();
        b.from_disk.clear();
        b.in_flight.clear();
        self.m.pending.set(0);
        match self.disk.get() {
            Some(d) => {
                let spilled = d.spill_front(&memory) as u64;
                d.checkpoint();
                (spilled + from_disk as u64, memory.len() as u64 - spilled)
            }
            None => {
                let n = (memory.len() + from_disk) as u64;
                self.m.dropped_shutdown.add(n);
                (0, n)
            }
        }
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
pub async fn run(writer: Arc<Writer>, pending: Arc<Pending>, s: SenderSettings, health: Health) {
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
        let nothing = pending.outstanding() == 0;
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

        let (body, points) = pending.take(chunk_size);
        if points == 0 {
            pending.settle();
            // Nothing in memory and nothing readable on disk yet.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        match writer.write(&body).await {
            Outcome::Written => {
                m.req_ok.inc();
                m.written.add(points as u64);
                m.bytes.add(body.len() as u64);
                pending.settle();
                pending.set_failing(false);
                if r.attempt > 0 {
                    tracing::info!(sink = %s.sink, target = %s.target, attempts = r.attempt + 1, "InfluxDB writes succeed again");
                }
                r.attempt = 0;
                r.write_err = None;
                chunk_size = chunk_size.saturating_mul(2).min(s.max_points_per_request);
            }
            Outcome::Rejected { status, reason } => {
                m.req_rejected.inc();
                m.dropped_rejected.add(points as u64);
                m.bytes.add(body.len() as u64);
                pending.settle();
                r.attempt = 0;
                r.write_err = None;
                if let Some(n) = reject_log.allow() {
                    tracing::error!(
                        sink = %s.sink, target = %s.target, status, reason = %reason,
                        points, suppressed = n,
                        "InfluxDB rejected a write request; its points are dropped (not retried) and counted"
                    );
                }
            }
            Outcome::TooLarge => {
                m.req_too_large.inc();
                if points > 1 {
                    chunk_size = (points / 2).max(1);
                    pending.put_back();
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
                pending.put_back();
                pending.set_failing(true);
                r.fail(&s, &m, pending.outstanding(), why, label, retry_after);
            }
        }
        set_health(&ping_err, &r.write_err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hepflow_sdk::spool::config::SpoolConfig;

    fn pending(max: usize, p: WhenPendingFull) -> (Pending, Registry) {
        let r = Registry::new();
        (Pending::new(max, p, SenderMetrics::new(&r, "t")), r)
    }

    fn lines(r: std::ops::Range<usize>) -> Vec<String> {
        r.map(|i| i.to_string()).collect()
    }

    /// The points of the next request, and the request left in flight.
    fn take(p: &Pending, n: usize) -> Vec<String> {
        let (body, k) = p.take(n);
        let got: Vec<String> = body.lines().map(str::to_string).collect();
        assert_eq!(got.len(), k);
        got
    }

    /// Every point left, in requests of at most `n`, each written.
    fn send_all(p: &Pending, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while p.outstanding() > 0 {
            got.extend(take(p, n));
            p.settle();
        }
        got
    }

    fn dropped(r: &Registry, reason: &str) -> f64 {
        r.value(
            "hepflow_influxdb_points_dropped_total",
            &[("sink", "t"), ("reason", reason)],
        )
        .unwrap()
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_counts() {
        let (p, r) = pending(3, WhenPendingFull::DropOldest);
        p.push(lines(0..5));
        assert_eq!(take(&p, 10), lines(2..5));
        assert_eq!(dropped(&r, "buffer_full"), 2.0);
    }

    #[test]
    fn drop_newest_keeps_the_oldest_and_counts() {
        let (p, r) = pending(3, WhenPendingFull::DropNewest);
        p.push(lines(0..5));
        assert_eq!(take(&p, 10), lines(0..3));
        assert_eq!(dropped(&r, "buffer_full"), 2.0);
    }

    #[test]
    fn put_back_goes_in_front_within_the_bound() {
        let (p, r) = pending(4, WhenPendingFull::DropOldest);
        p.push(lines(0..3));
        let _ = take(&p, 2);
        assert_eq!(p.outstanding(), 3);
        // 2 queued + 2 in flight: room for one; 4 replaces the oldest (2)
        p.push(lines(3..5));
        p.push(lines(5..6)); // 5 replaces 3
        p.put_back(); // in front, within the bound
        let want: Vec<String> = [0, 1, 4, 5].iter().map(|i| i.to_string()).collect();
        assert_eq!(take(&p, 10), want);
        assert_eq!(dropped(&r, "buffer_full"), 2.0);

        let (p, _r) = pending(4, WhenPendingFull::DropNewest);
        p.push(lines(0..3));
        let _ = take(&p, 2);
        p.push(lines(3..4)); // buffer: 2,3 + 0,1 in flight
        p.put_back();
        assert_eq!(take(&p, 10), lines(0..4));
    }

    #[test]
    fn without_a_spool_what_is_left_at_shutdown_is_counted() {
        let (p, r) = pending(10, WhenPendingFull::DropOldest);
        p.push(lines(0..4));
        let _c = take(&p, 1);
        assert_eq!(p.give_up(), (0, 4));
        assert_eq!(dropped(&r, "shutdown"), 4.0);
    }

    fn disk(dir: &std::path::Path, mode: SpoolMode, r: &Registry) -> DiskTier<LineCodec> {
        let cfg = SpoolConfig {
            mode,
            ..SpoolConfig::default()
        };
        DiskTier::open_labelled(
            "t/points",
            &[("sink", "t")],
            &cfg,
            dir.to_path_buf(),
            r,
            LineCodec,
        )
        .unwrap()
    }

    #[test]
    fn overflow_goes_to_disk_keeps_the_order_and_comes_back_to_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (p, r) = pending(3, WhenPendingFull::DropNewest);
        p.set_disk(disk(dir.path(), SpoolMode::Overflow, &r));
        p.push(lines(0..8));
        assert_eq!(p.disk().unwrap().records(), 5);
        p.push(lines(8..10)); // behind the disk backlog
        assert_eq!(p.disk().unwrap().records(), 7);
        let got = send_all(&p, 4);
        assert_eq!(got, lines(0..10));
        assert_eq!(dropped(&r, "buffer_full"), 0.0);
        p.push(lines(10..11));
        assert_eq!(p.disk().unwrap().records(), 0, "memory again");
    }

    #[test]
    fn a_failed_request_from_disk_is_sent_again_then_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let (p, r) = pending(2, WhenPendingFull::DropNewest);
        p.set_disk(disk(dir.path(), SpoolMode::Always, &r));
        p.push(lines(0..5));
        let first = take(&p, 3);
        assert_eq!(first, lines(0..3));
        p.put_back();
        p.set_failing(true);
        p.push(lines(5..6)); // to disk while failing
        assert_eq!(take(&p, 3), lines(0..3), "the same points again");
        p.settle();
        p.set_failing(false);
        let rest = send_all(&p, 10);
        assert_eq!(rest, lines(3..6));
        assert_eq!(p.disk().unwrap().records(), 0);
    }

    #[test]
    fn at_shutdown_memory_goes_in_front_of_the_spool_and_comes_back_first() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (p, r) = pending(4, WhenPendingFull::DropNewest);
            p.set_disk(disk(dir.path(), SpoolMode::Overflow, &r));
            p.push(lines(0..6)); // 0..4 memory, 4,5 disk
            let _ = take(&p, 2); // 0,1 in flight when the sender stops
            assert_eq!(p.give_up(), (4, 0));
        }
        let r = Registry::new();
        let (p, _) = pending(4, WhenPendingFull::DropNewest);
        p.set_disk(disk(dir.path(), SpoolMode::Overflow, &r));
        p.push(lines(6..7)); // behind the backlog
        let got = send_all(&p, 3);
        assert_eq!(got, lines(0..7));
    }
}
