//! `[sinks.NAME]`: the engine's keys of every sink (queue, batch, retry,
//! spool) and the plugin's own section, checked by its factory.

use super::{RetryConfig, SpoolConfig, WhenFull};
use hepflow_sdk::sink::SinkFactory;
use serde::Deserialize;
use std::time::Duration;

/// Sinks one hepflow runs at most (a route's sink set is a 64-bit mask).
pub const MAX_SINKS: usize = 64;

/// `[sinks.NAME.queue]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Messages the queue holds at most.
    pub capacity: usize,
    /// Bytes of memory the queue keeps alive at most: each run of queued
    /// messages from one receive batch counts that whole batch (its raw
    /// bytes plus ~600 bytes of bookkeeping per message;
    /// `hepflow_sink_queue_bytes`). The default keeps six sinks' full
    /// queues within ~200 MiB.
    pub max_bytes: usize,
    /// Policy when full (either bound reached).
    pub when_full: WhenFull,
}

/// Smallest accepted `queue.max_bytes`.
pub const MIN_QUEUE_BYTES: usize = 64 * 1024;

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 65536,
            max_bytes: 32 * 1024 * 1024,
            when_full: WhenFull::DropNewest,
        }
    }
}

/// `[sinks.NAME.batch]`: how the engine hands messages to the sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Messages per write at most.
    pub max_events: usize,
    /// How long to wait for a batch to fill before writing what there is
    /// (0 = write at once; under load batches fill by themselves).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// The sink's buffers are flushed at least this often.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 1000,
            max_wait: Duration::ZERO,
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// The engine's part of a sink section; the rest belongs to the plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkCommon {
    /// Plugin type (`file`, `null`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Queue bound and policy.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retry backoff.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The disk spool behind the queue.
    #[serde(default)]
    pub spool: SpoolConfig,
}

/// Keys of a sink section the engine owns.
pub const SINK_COMMON_KEYS: [&str; 5] = ["type", "queue", "batch", "retry", "spool"];

/// A sink: the engine's part and the plugin's own section.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Engine settings.
    pub common: SinkCommon,
    /// The plugin's keys (everything but [`SINK_COMMON_KEYS`]).
    pub plugin: serde_json::Value,
    /// Whether the section sets `[sinks.NAME.retry]` (then plugins' own
    /// retry loops use it too).
    pub retry_set: bool,
}

/// Split `[sinks.NAME]` at `key` into the engine's keys and the plugin's
/// section, and check both; problems go to `errors`.
pub(super) fn sink_config(
    key: &str,
    value: serde_json::Value,
    factories: &[&dyn SinkFactory],
    errors: &mut Vec<String>,
) -> Option<SinkConfig> {
    let serde_json::Value::Object(map) = value else {
        errors.push(format!("{key}: must be a table with at least `type`"));
        return None;
    };
    let (common, plugin): (serde_json::Map<_, _>, serde_json::Map<_, _>) = map
        .into_iter()
        .partition(|(k, _)| SINK_COMMON_KEYS.contains(&k.as_str()));
    let retry_set = common.contains_key("retry");
    let common: SinkCommon =
        match hepflow_sdk::sink::parse_section(key, &serde_json::Value::Object(common)) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                return None;
            }
        };
    #[cfg(feature = "kafka")]
    let mut plugin = plugin;
    // A kafka sink's librdkafka batching defaults to the engine's batching.
    #[cfg(feature = "kafka")]
    hepflow_kafka::config::engine_batch_defaults(
        &common.kind,
        &mut plugin,
        common.batch.max_events,
        common.batch.max_wait,
    );
    let plugin = serde_json::Value::Object(plugin);
    let Some(factory) = factories.iter().find(|f| f.kind() == common.kind) else {
        let known: Vec<&str> = factories.iter().map(|f| f.kind()).collect();
        errors.push(format!(
            "{key}.type: unknown sink type `{}` (known types: {})",
            common.kind,
            known.join(", ")
        ));
        return None;
    };
    let before = errors.len();
    errors.extend(factory.validate(key, &plugin));
    if common.queue.capacity == 0 {
        errors.push(format!("{key}.queue.capacity: must be at least 1"));
    }
    if common.queue.max_bytes < MIN_QUEUE_BYTES {
        errors.push(format!(
            "{key}.queue.max_bytes: {} is too small; give at least {MIN_QUEUE_BYTES} (64 KiB; default 33554432 = 32 MiB)",
            common.queue.max_bytes
        ));
    }
    if common.batch.max_events == 0 {
        errors.push(format!("{key}.batch.max_events: must be at least 1"));
    }
    errors.extend(common.spool.check(&format!("{key}.spool")));
    errors.extend(common.retry.check(&format!("{key}.retry")));
    (errors.len() == before).then_some(SinkConfig {
        common,
        plugin,
        retry_set,
    })
}
