//! The [`Sink`] contract every sink plugin implements, and the
//! [`SinkContext`] the engine hands it.
//!
//! The engine owns the bounded queue (and its disk spool), batching (max
//! events, max age) and the retry, with capped jittered backoff, of what a
//! write could not deliver; a plugin is start / write / flush / close.
//!
//! What one write reports:
//! - `Ok(Delivered)`: the whole batch is settled: delivered, or (some
//!   items) given up for good and counted by the plugin through
//!   [`SinkContext::failed`] with a reason (dead-lettered, refused by the
//!   backend, could not be encoded);
//! - `Err(SinkError)` retryable: nothing of the batch is known delivered;
//!   the engine hands the same batch again;
//! - `Err(SinkError)` retryable with [`SinkError::with_partial`]: part of
//!   the batch was delivered (a bulk reply sorted per item, delivery
//!   reports); the engine counts that part as sent and hands again only
//!   the items named in [`Partial::retry`], as a new, smaller batch. No
//!   plugin keeps a batch of its own across writes;
//! - `Err(SinkError)` fatal: the batch (or, with a partial, the items not
//!   delivered) is dropped and counted under the error's reason.

use crate::delivery::WhenFull;
use crate::metrics::{Counter, Registry};
use crate::queue::disk::{DiskTier, EventCodec, RecordCodec};
use crate::queue::{QueueMetrics, SinkQueue};
use crate::spool::config::{SpoolConfig, SpoolMode};
use crate::{DecodeOptions, Event};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What a successful write delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Events the backend accepted.
    pub events: u64,
    /// Bytes written to the backend (after encoding, before compression).
    pub bytes: u64,
}

/// The part of a batch a failed write did deliver, and which of its items
/// are still to deliver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    /// What this write delivered.
    pub delivered: Delivered,
    /// Positions in the batch still to deliver, ascending. The engine's
    /// next write gets exactly these events, in this order.
    pub retry: Vec<usize>,
}

/// A failed write or start.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// True when the same batch may succeed later (connection error, 408,
    /// 429, 5xx): the engine retries it with capped, jittered backoff.
    pub retryable: bool,
    /// Low-cardinality reason label for the failure counter.
    pub reason: &'static str,
    /// Human-readable message, with what to do. Never contains secrets.
    pub message: String,
    /// Set when part of the batch was delivered: what, and which items
    /// are left ([`Self::with_partial`]).
    pub partial: Option<Box<Partial>>,
}

impl SinkError {
    /// A failure worth retrying.
    pub fn retryable(reason: &'static str, message: impl Into<String>) -> Self {
        SinkError {
            retryable: true,
            reason,
            message: message.into(),
            partial: None,
        }
    }
    /// A failure that will not succeed by retrying (the batch is dropped
    /// and counted under `reason`).
    pub fn fatal(reason: &'static str, message: impl Into<String>) -> Self {
        SinkError {
            retryable: false,
            reason,
            message: message.into(),
            partial: None,
        }
    }

    /// This write delivered `delivered` of the batch; only the items at
    /// positions `retry` (ascending) are left. The engine counts
    /// `delivered` as sent and, for a retryable error, hands those items
    /// again as a new batch; for a fatal one, drops and counts them.
    pub fn with_partial(mut self, delivered: Delivered, mut retry: Vec<usize>) -> Self {
        retry.sort_unstable();
        retry.dedup();
        self.partial = Some(Box::new(Partial { delivered, retry }));
        self
    }
}

/// A sink plugin instance. Called from one task, one call at a time.
#[async_trait]
pub trait Sink: Send {
    /// Connect, check the backend, install templates. Retried by the engine
    /// with backoff while it returns a retryable error; events queue up
    /// meanwhile.
    async fn start(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Deliver one batch (see the module doc for what each result means).
    async fn write(&mut self, batch: &[Event]) -> Result<Delivered, SinkError>;

    /// Push out anything buffered inside the plugin.
    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called once at shutdown after the last write.
    async fn close(&mut self) -> Result<(), SinkError> {
        self.flush().await
    }
}

/// Health of one sink, set by the plugin (or by the engine on failures) and
/// read by `/ready`.
#[derive(Clone, Debug)]
pub struct Health {
    ready: Arc<AtomicBool>,
    detail: Arc<Mutex<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            ready: Arc::new(AtomicBool::new(true)),
            detail: Arc::new(Mutex::new(String::new())),
        }
    }
}

impl Health {
    /// Mark healthy.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
        self.detail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
    /// Mark unhealthy, with why (no secrets).
    pub fn set_unready(&self, why: impl Into<String>) {
        self.ready.store(false, Ordering::Relaxed);
        *self.detail.lock().unwrap_or_else(|e| e.into_inner()) = why.into();
    }
    /// Whether the sink is healthy.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    /// Why not, when unhealthy.
    pub fn detail(&self) -> String {
        self.detail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What the engine gives a sink at build time.
#[derive(Clone)]
pub struct SinkContext {
    /// The sink's configured name (the key under `[sinks]`).
    pub name: Arc<str>,
    /// This hepflow node's name (`node.name`).
    pub node_name: Arc<str>,
    /// The process-wide metric registry, for plugin-specific series
    /// (label them with `sink = name`).
    pub registry: Registry,
    /// The sink's health flag.
    pub health: Health,
    /// The sink's `[sinks.NAME.retry]` when the config sets it: a plugin's
    /// own retry loops (reconnects, background writes) use it
    /// ([`crate::delivery::RetryConfig::for_plugin`]).
    pub retry: Option<crate::delivery::RetryConfig>,
    /// The sink's spool settings (`[sinks.NAME.spool]`), for the queues a
    /// plugin keeps for parts of the sink ([`Self::part_queue`]); `None`
    /// when the spool is off.
    pub spool: Option<PartSpool>,
}

/// What a plugin needs to give the queues of its parts the sink's spool.
#[derive(Clone, Debug)]
pub struct PartSpool {
    /// The sink's `[sinks.NAME.spool]` (mode `overflow` or `always`).
    pub config: SpoolConfig,
    /// The sink's spool directory; parts get `parts/<part>` under it.
    pub dir: PathBuf,
    /// How records read back are decoded.
    pub decode: DecodeOptions,
}

/// A part name as a directory name: ASCII letters, digits, `.` and `-`
/// kept, anything else `_` (`tcp://10.0.0.1:9060` is `tcp___10.0.0.1_9060`).
pub fn part_dir_name(part: &str) -> String {
    part.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl SinkContext {
    /// A context for tests and tools: fresh registry, healthy, no spool.
    pub fn for_tests(name: &str) -> Self {
        SinkContext {
            name: name.into(),
            node_name: "test".into(),
            registry: Registry::new(),
            health: Health::default(),
            retry: None,
            spool: None,
        }
    }

    /// The bounded queue of one part of this sink (a forwarding target):
    /// the engine's queue type, with the sink's spool (its own directory,
    /// `parts/<part>` under the sink's, and its series labelled `labels`)
    /// when the sink has one ([`Self::part_disk`]). Run
    /// [`crate::queue::spawn_checkpoints`] on it.
    pub fn part_queue(
        &self,
        part: &str,
        capacity: usize,
        max_bytes: usize,
        when_full: WhenFull,
        metrics: QueueMetrics,
        labels: &[(&str, &str)],
    ) -> Result<SinkQueue, SinkError> {
        let queue = SinkQueue::new(capacity, when_full, metrics).with_max_bytes(max_bytes);
        let decode = self
            .spool
            .as_ref()
            .map(|s| s.decode.clone())
            .unwrap_or_default();
        Ok(
            match self.part_disk(part, labels, EventCodec::new(decode))? {
                Some(disk) => queue.with_disk(disk),
                None => queue,
            },
        )
    }

    /// The spool of part `part` of this sink, for items of `codec`'s kind
    /// (events, or a plugin's own such as InfluxDB points): the sink's
    /// spool settings in `parts/<part>` under the sink's directory, its
    /// series labelled `labels`; `None` when the sink has no spool.
    /// Opening takes the directory's lock: call this from [`Sink::start`],
    /// which is retried, not from the factory's `build`.
    pub fn part_disk<C: RecordCodec>(
        &self,
        part: &str,
        labels: &[(&str, &str)],
        codec: C,
    ) -> Result<Option<DiskTier<C>>, SinkError> {
        let Some(spool) = self
            .spool
            .as_ref()
            .filter(|s| s.config.mode != SpoolMode::Off)
        else {
            return Ok(None);
        };
        let dir = spool.dir.join("parts").join(part_dir_name(part));
        let who = format!("{}/{part}", self.name);
        DiskTier::open_labelled(&who, labels, &spool.config, dir.clone(), &self.registry, codec)
            .map(Some)
            .map_err(|e| {
                SinkError::retryable(
                    "spool",
                    format!(
                        "cannot open the spool of {who} in {}: {e}; check the directory's permissions and free space",
                        dir.display()
                    ),
                )
            })
    }

    /// Count `n` events this sink gave up on, by reason (for example
    /// `mapping_conflict`, `dead_lettered`).
    pub fn failed(&self, reason: &str, n: u64) {
        self.failed_counter(reason).add(n);
    }

    /// The counter behind [`Self::failed`] for one reason.
    pub fn failed_counter(&self, reason: &str) -> Counter {
        failed_counter(&self.registry, &self.name, reason)
    }
}

/// `hepflow_sink_failed_total{sink, reason}`: events a sink gave up on,
/// counted by the plugin ([`SinkContext::failed`]) or by the engine (a batch
/// rejected with a fatal [`SinkError`]).
pub fn failed_counter(registry: &Registry, sink: &str, reason: &str) -> Counter {
    registry.counter(
        "hepflow_sink_failed_total",
        "Events a sink could not deliver, by reason",
        &[("sink", sink), ("reason", reason)],
    )
}

/// How the engine finds and builds a sink of one `type`. Each plugin crate
/// exports one; the hub registers it in one line.
pub trait SinkFactory: Send + Sync {
    /// The `type = "..."` value this factory builds.
    fn kind(&self) -> &'static str;

    /// Check the plugin's own config section (the engine's common keys
    /// such as `type` and `queue` removed). `path` is the section's full
    /// path (`sinks.NAME`); every problem found is returned, each naming
    /// the full path of the key and what to do.
    fn validate(&self, path: &str, config: &serde_json::Value) -> Vec<String>;

    /// Build the sink (no I/O here: connect in [`Sink::start`]).
    fn build(
        &self,
        path: &str,
        config: &serde_json::Value,
        ctx: SinkContext,
    ) -> Result<Box<dyn Sink>, String>;
}

/// Deserialize a plugin's config section (`T` should have
/// `#[serde(deny_unknown_fields)]`); the error names the key's full path,
/// for example `sinks.search.batch.max_events: invalid type ...`.
pub fn parse_section<T: serde::de::DeserializeOwned>(
    path: &str,
    config: &serde_json::Value,
) -> Result<T, String> {
    serde_path_to_error::deserialize(config).map_err(|e| {
        let inner = e.path().to_string();
        if inner.is_empty() || inner == "." {
            format!("{path}: {}", e.inner())
        } else {
            format!("{path}.{inner}: {}", e.inner())
        }
    })
}

/// Parse a plugin's config section with [`parse_section`] (a section with
/// nothing but the engine's keys may arrive as `null`: read as empty), then
/// run the plugin's own value checks; every problem found, each naming its
/// full key path.
pub fn parse_checked<T: serde::de::DeserializeOwned>(
    path: &str,
    config: &serde_json::Value,
    check: impl FnOnce(&T) -> Vec<String>,
) -> Result<T, Vec<String>> {
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let config = if config.is_null() { &empty } else { config };
    let cfg: T = parse_section(path, config).map_err(|e| vec![e])?;
    let problems = check(&cfg);
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(problems)
    }
}

/// The usual way to write a sink factory: a config type, its value checks
/// and how to build the sink from a checked config. Every type
/// implementing it is a [`SinkFactory`] (a blanket impl): `validate`
/// parses the section with [`parse_checked`] and returns every problem;
/// `build` parses and checks again, joins any problems with `"; "`, and
/// hands the config to [`Self::build_sink`].
///
/// ```
/// use hepflow_sdk::sink::{Delivered, Sink, SinkContext, SinkError, SinkFactory, TypedSinkFactory};
/// use hepflow_sdk::Event;
///
/// /// `[sinks.NAME]` of `type = "count"`.
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// pub struct CountConfig {
///     /// Events per write, at most.
///     pub limit: u64,
/// }
///
/// pub struct CountSink(u64);
///
/// #[async_trait::async_trait]
/// impl Sink for CountSink {
///     async fn write(&mut self, batch: &[Event]) -> Result<Delivered, SinkError> {
///         Ok(Delivered { events: (batch.len() as u64).min(self.0), bytes: 0 })
///     }
/// }
///
/// pub struct CountSinkFactory;
///
/// impl TypedSinkFactory for CountSinkFactory {
///     const KIND: &'static str = "count";
///     type Config = CountConfig;
///
///     fn check(config: &CountConfig, path: &str) -> Vec<String> {
///         let mut problems = Vec::new();
///         if config.limit == 0 {
///             problems.push(format!("{path}.limit: must be at least 1"));
///         }
///         problems
///     }
///
///     fn build_sink(
///         config: CountConfig,
///         _path: &str,
///         _ctx: SinkContext,
///     ) -> Result<Box<dyn Sink>, String> {
///         Ok(Box::new(CountSink(config.limit)))
///     }
/// }
///
/// let f: &dyn SinkFactory = &CountSinkFactory;
/// assert_eq!(f.kind(), "count");
/// let bad = serde_json::json!({ "limit": 0 });
/// assert_eq!(f.validate("sinks.c", &bad), ["sinks.c.limit: must be at least 1"]);
/// let err = f.build("sinks.c", &bad, SinkContext::for_tests("c")).err().unwrap();
/// assert_eq!(err, "sinks.c.limit: must be at least 1");
/// assert!(f.validate("sinks.c", &serde_json::json!({ "limit": 5 })).is_empty());
/// ```
///
/// Implement [`SinkFactory`] by hand instead only when a factory does not
/// fit this shape (for example one that refuses every config).
pub trait TypedSinkFactory: Send + Sync {
    /// The `type = "..."` value this factory builds.
    const KIND: &'static str;

    /// The plugin's config section (should have
    /// `#[serde(deny_unknown_fields)]`).
    type Config: serde::de::DeserializeOwned;

    /// Value checks beyond what serde enforces (ranges, combinations of
    /// keys, files that must load): every problem found, each naming its
    /// full key path under `path` (`sinks.NAME`) and what to do. Pure
    /// apart from reading files the config names.
    fn check(config: &Self::Config, path: &str) -> Vec<String> {
        let _ = (config, path);
        Vec::new()
    }

    /// Build the sink from a checked config (no I/O here: connect in
    /// [`Sink::start`]).
    fn build_sink(
        config: Self::Config,
        path: &str,
        ctx: SinkContext,
    ) -> Result<Box<dyn Sink>, String>;

    /// Parse the section with [`parse_checked`] and [`Self::check`]; every
    /// problem found. What both `validate` and `build` run.
    fn parse(path: &str, config: &serde_json::Value) -> Result<Self::Config, Vec<String>> {
        parse_checked(path, config, |c: &Self::Config| Self::check(c, path))
    }
}

impl<T: TypedSinkFactory> SinkFactory for T {
    fn kind(&self) -> &'static str {
        T::KIND
    }

    fn validate(&self, path: &str, config: &serde_json::Value) -> Vec<String> {
        match T::parse(path, config) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    fn build(
        &self,
        path: &str,
        config: &serde_json::Value,
        ctx: SinkContext,
    ) -> Result<Box<dyn Sink>, String> {
        let config = T::parse(path, config).map_err(|p| p.join("; "))?;
        T::build_sink(config, path, ctx)
    }
}
