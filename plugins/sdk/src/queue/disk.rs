//! The disk tier of a queue: its [`Spool`], the items encoded into it and
//! decoded back ([`RecordCodec`]: events for the sink queues, [`EventCodec`];
//! a plugin may spool its own items, such as InfluxDB points), the
//! when-full policy at the spool's cap or a full disk, and the spool's
//! metrics.
//!
//! The memory queue decides *when* items go to disk (see the parent
//! module); this tier does the writing, reading and acknowledging, and
//! the periodic fsync and position checkpoint ([`DiskTier::checkpoint`]).

use crate::delivery::WhenFull;
use crate::hep::DecodeOptions;
use crate::metrics::{Counter, Gauge, Registry};
use crate::ratelimit::LogLimiter;
use crate::spool::config::{SpoolConfig, SpoolMode};
use crate::spool::event_record::{encode_event, now_ms, EventDecoder};
use crate::spool::{AckToken, AppendError, OpenError, Spool, SpoolOptions, SpooledRecord};
use crate::{Event, EventBatch};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Reasons a spool drops messages (`hepflow_spool_dropped_total{reason}`).
pub const DROP_REASONS: [&str; 7] = [
    "spool_full",
    "disk_full",
    "io_error",
    "too_large",
    "drop_oldest",
    "spool_corrupt",
    "spool_undecodable",
];

/// The spool's series of one sink.
pub struct SpoolMetrics {
    bytes: Gauge,
    records: Gauge,
    oldest_seconds: Gauge,
    written: Counter,
    replayed: Counter,
    dropped: Vec<Counter>,
}

impl SpoolMetrics {
    /// The series, labelled `labels` (`sink`, and `target` for a part).
    fn new(r: &Registry, labels: &[(&str, &str)]) -> Self {
        let l = labels;
        SpoolMetrics {
            bytes: r.gauge(
                "hepflow_spool_bytes",
                "Bytes of a sink's spool files on disk",
                l,
            ),
            records: r.gauge(
                "hepflow_spool_records",
                "Messages in a sink's spool not yet delivered",
                l,
            ),
            oldest_seconds: r.gauge(
                "hepflow_spool_oldest_seconds",
                "Age of the oldest spooled message the sink last read back (0 when the spool is empty)",
                l,
            ),
            written: r.counter(
                "hepflow_spool_written_total",
                "Messages written to a sink's spool",
                l,
            ),
            replayed: r.counter(
                "hepflow_spool_replayed_total",
                "Messages read back from a sink's spool and handed to the sink",
                l,
            ),
            dropped: DROP_REASONS
                .iter()
                .map(|reason| {
                    let mut l = labels.to_vec();
                    l.push(("reason", reason));
                    r.counter(
                        "hepflow_spool_dropped_total",
                        "Messages a sink's spool dropped, by reason",
                        &l,
                    )
                })
                .collect(),
        }
    }

    fn dropped(&self, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        let i = DROP_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(DROP_REASONS.len() - 1);
        self.dropped[i].add(n);
    }
}

/// How the items of one kind become spool records and back.
pub trait RecordCodec: Send + 'static {
    /// What is spooled.
    type Item;
    /// Append the record payload of `item` to `buf`.
    fn encode(item: &Self::Item, buf: &mut Vec<u8>);
    /// Decode `records` into `out`, in order; returns the errors of those
    /// that could not be (they are dropped and counted).
    fn decode(&mut self, records: Vec<SpooledRecord>, out: &mut Vec<Self::Item>) -> Vec<String>;
}

/// Events as spool records ([`encode_event`] and [`EventDecoder`]); the
/// events decoded from one read share one receive batch.
pub struct EventCodec(EventDecoder);

impl EventCodec {
    /// A codec that decodes with `opts`.
    pub fn new(opts: DecodeOptions) -> Self {
        EventCodec(EventDecoder::new(opts))
    }
}

impl RecordCodec for EventCodec {
    type Item = Event;

    fn encode(item: &Event, buf: &mut Vec<u8>) {
        encode_event(item, buf)
    }

    fn decode(&mut self, records: Vec<SpooledRecord>, out: &mut Vec<Event>) -> Vec<String> {
        let mut events = EventBatch::with_reserve(records.len());
        let mut errors = Vec::new();
        for r in records {
            if let Err(e) = self.0.decode_into(r.payload, &mut events) {
                errors.push(e);
            }
        }
        events.finish(out);
        errors
    }
}

/// One sink's (or one part's) spool and what goes with it.
pub struct DiskTier<C: RecordCodec = EventCodec> {
    spool: Mutex<Spool>,
    /// `overflow` or `always`.
    pub mode: SpoolMode,
    failing: AtomicBool,
    codec: Mutex<C>,
    metrics: SpoolMetrics,
    log: Mutex<LogLimiter>,
    sink: String,
}

/// Bytes one read from the spool takes at most (besides the record count).
const READ_MAX_BYTES: usize = 4 << 20;

impl DiskTier<EventCodec> {
    /// Open sink `sink`'s spool in `dir` (locked for this process) and
    /// log what a previous run left in it.
    pub fn open(
        sink: &str,
        cfg: &SpoolConfig,
        dir: PathBuf,
        registry: &Registry,
        decode: DecodeOptions,
    ) -> Result<Self, OpenError> {
        Self::open_labelled(
            sink,
            &[("sink", sink)],
            cfg,
            dir,
            registry,
            EventCodec::new(decode),
        )
    }
}

impl<C: RecordCodec> DiskTier<C> {
    /// Open the spool of one queue in `dir` (locked for this process) and
    /// log what a previous run left in it: `who` names it in log lines
    /// (`sink`, `sink/part`), `labels` on its series.
    pub fn open_labelled(
        who: &str,
        labels: &[(&str, &str)],
        cfg: &SpoolConfig,
        dir: PathBuf,
        registry: &Registry,
        codec: C,
    ) -> Result<Self, OpenError> {
        let sink = who;
        let (spool, report) = Spool::open(SpoolOptions {
            dir: dir.clone(),
            max_bytes: cfg.max_bytes,
            segment_bytes: cfg.segment_bytes,
        })?;
        let metrics = SpoolMetrics::new(registry, labels);
        metrics.dropped("spool_corrupt", report.torn_tails);
        metrics.records.set(report.records as i64);
        metrics.bytes.set(spool.bytes() as i64);
        if report.records > 0 || report.torn_tails > 0 || report.bad_segments > 0 {
            tracing::info!(
                sink,
                dir = %dir.display(),
                records = report.records,
                segments = report.segments,
                torn_tails = report.torn_tails,
                bad_segments = report.bad_segments,
                position_lost = report.position_lost,
                "spool holds messages from an earlier run; they are delivered before new ones"
            );
        }
        if report.bad_segments > 0 || report.position_lost {
            tracing::warn!(sink, dir = %dir.display(), "spool files were damaged: bad segments were renamed to *.corrupt and left out; a lost reader position means some messages are delivered twice");
        }
        Ok(DiskTier {
            spool: Mutex::new(spool),
            mode: cfg.mode,
            failing: AtomicBool::new(false),
            codec: Mutex::new(codec),
            metrics,
            log: Mutex::new(LogLimiter::default()),
            sink: sink.to_string(),
        })
    }

    /// The spool, locked.
    pub fn lock(&self) -> MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the sink's last write failed (new messages then go to disk).
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Set by the engine after each write.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    fn set_gauges(&self, spool: &Spool) {
        self.metrics.records.set(spool.records() as i64);
        self.metrics.bytes.set(spool.bytes() as i64);
        if spool.is_empty() {
            self.metrics.oldest_seconds.set(0);
        }
    }

    fn warn(&self, what: &str, e: &dyn std::fmt::Display) {
        let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = l.allow() {
            tracing::warn!(sink = %self.sink, error = %e, suppressed = n, "{what}");
        }
    }

    /// Append `batch` (from its front) under `spool`'s lock, applying
    /// `when_full` when the spool is at its cap or the disk fails: what
    /// was appended leaves `batch`; returns how many, and true when the
    /// caller must wait for room and try again with what is left.
    pub fn append(
        &self,
        mut spool: MutexGuard<'_, Spool>,
        batch: &mut Vec<C::Item>,
        when_full: WhenFull,
    ) -> (usize, bool) {
        let mut appended = 0;
        loop {
            let (n, err) = spool.append(batch.len(), now_ms(), |i, buf| C::encode(&batch[i], buf));
            batch.drain(..n);
            appended += n;
            self.metrics.written.add(n as u64);
            let Some(err) = err else { break };
            let reason = err.reason();
            match (&err, when_full) {
                (AppendError::TooLarge(_), _) => {
                    // Cannot happen for a HEP message (64 KiB at most);
                    // dropped alone, the rest goes on.
                    batch.remove(0);
                    self.metrics.dropped(reason, 1);
                    continue;
                }
                (_, WhenFull::Block) => {
                    self.warn("spool cannot take more (full, or the disk failed); ingest for this sink waits (when_full = \"block\")", &err);
                    self.set_gauges(&spool);
                    return (appended, true);
                }
                (AppendError::Full, WhenFull::DropOldest)
                | (AppendError::Io(_), WhenFull::DropOldest)
                    if reason != "io_error" =>
                {
                    let before = spool.bytes();
                    match spool.drop_oldest() {
                        // Continue only if a segment really went (else a
                        // disk full of other files would loop here).
                        Ok(lost) if spool.bytes() < before => {
                            self.metrics.dropped("drop_oldest", lost);
                            self.warn("spool full: dropped its oldest segment to make room (when_full = \"drop_oldest\")", &err);
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => self.warn("dropping the spool's oldest segment failed", &e),
                    }
                }
                _ => {}
            }
            self.warn("spool cannot take more (full, or the disk failed); new messages for this sink are dropped and counted", &err);
            self.metrics.dropped(reason, batch.len() as u64);
            batch.clear();
            break;
        }
        self.set_gauges(&spool);
        (appended, false)
    }

    /// Read up to `max` spooled events, oldest first; `None` when nothing
    /// is there to read. Acknowledge them with [`Self::ack`] once the sink
    /// is done with them.
    pub fn read(&self, max: usize, out: &mut Vec<C::Item>) -> Option<AckToken> {
        loop {
            let batch = {
                let mut spool = self.lock();
                if spool.is_empty() {
                    return None;
                }
                match spool.read(max, READ_MAX_BYTES) {
                    Ok(b) => {
                        if b.corrupt > 0 {
                            self.set_gauges(&spool);
                        }
                        b
                    }
                    Err(e) => {
                        self.warn("reading the spool failed; retrying", &e);
                        return None;
                    }
                }
            };
            if batch.corrupt > 0 {
                self.metrics.dropped("spool_corrupt", batch.corrupt);
                self.warn(
                    "corrupt spool records skipped (the rest of their segment is lost and counted)",
                    &batch.corrupt,
                );
            }
            if batch.token.is_empty() {
                if batch.corrupt > 0 {
                    continue;
                }
                return None;
            }
            if let Some(first) = batch.records.first() {
                let age_ms = now_ms().saturating_sub(first.ts_ms);
                self.metrics.oldest_seconds.set((age_ms / 1000) as i64);
            }
            let before = out.len();
            let errors = self
                .codec
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .decode(batch.records, out);
            for e in &errors {
                self.warn(
                    "a spooled record could not be decoded again; dropped and counted",
                    e,
                );
            }
            self.metrics
                .dropped("spool_undecodable", errors.len() as u64);
            self.metrics.replayed.add((out.len() - before) as u64);
            if out.len() == before {
                // Nothing usable: acknowledge and read on.
                self.ack(&batch.token);
                continue;
            }
            return Some(batch.token);
        }
    }

    /// The sink is done with what `token` covers: it is not read again,
    /// and delivered segments are deleted. Returns true when the spool
    /// is now empty.
    pub fn ack(&self, token: &AckToken) -> bool {
        let mut spool = self.lock();
        if let Err(e) = spool.ack(token) {
            self.warn(
                "acknowledging spool records failed (they may be delivered again after a restart)",
                &e,
            );
        }
        self.set_gauges(&spool);
        spool.is_empty()
    }

    /// Write `events` (what memory held at shutdown, older than anything
    /// spooled) in front of the spool, and checkpoint it. Returns how many
    /// were spooled; the rest are counted as dropped.
    pub fn spill_front(&self, events: &[C::Item]) -> usize {
        let mut spool = self.lock();
        let (n, err) =
            spool.spill_front(events.len(), now_ms(), |i, buf| C::encode(&events[i], buf));
        self.metrics.written.add(n as u64);
        if let Some(e) = err {
            self.metrics.dropped(e.reason(), (events.len() - n) as u64);
            tracing::error!(sink = %self.sink, error = %e, lost = events.len() - n, "spooling what was in memory at shutdown failed; those messages are lost and counted");
        }
        self.set_gauges(&spool);
        n
    }

    /// Fsync what was appended and store the reader position: every
    /// `fsync_interval`, and at shutdown.
    pub fn checkpoint(&self) {
        // The fsync runs without the lock: producers keep appending.
        let handle = self.lock().take_sync_handle();
        let synced = handle.and_then(|f| f.map_or(Ok(()), |f| f.sync_data()));
        let mut spool = self.lock();
        let result = synced.and_then(|()| spool.persist_positions());
        self.set_gauges(&spool);
        drop(spool);
        if let Err(e) = result {
            self.warn("spool fsync or position checkpoint failed", &e);
        }
    }

    /// Messages in the spool not yet delivered.
    pub fn records(&self) -> u64 {
        self.lock().records()
    }
}
