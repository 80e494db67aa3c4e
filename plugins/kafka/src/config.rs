//! Configuration of the `kafka` sink (`[sinks.NAME]` with `type = "kafka"`)
//! and of the `kafka` listener (`[listeners.NAME]` with `kind = "kafka"`),
//! their validation (every problem, with its full key path), and the
//! librdkafka properties derived from them.

use crate::options::{self, Passthrough, CONSUMER_OWNED, PRODUCER_OWNED};
use crate::topic::TopicTemplate;
use rdkafka::ClientConfig;
use serde::Deserialize;
use std::time::Duration;

/// What the record key is.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyMode {
    /// The call: the SIP Call-ID, else the HEP correlation id (chunk 0x11),
    /// else no key. Every message of one call lands in one partition, in order.
    #[default]
    Call,
    /// The SIP Call-ID only (no key for non-SIP messages).
    CallId,
    /// The HEP correlation id (chunk 0x11) only.
    CorrelationId,
    /// No key (messages spread over partitions by librdkafka).
    None,
}

/// What the record value is.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ValueMode {
    /// The HEP message exactly as received (v1, v2 or v3), except that a
    /// HEP3 auth key chunk (0x0e), a secret, is cut out unless
    /// `keep_auth_key = true`. A `kafka` listener of another hepflow reads
    /// it back.
    #[default]
    Raw,
    /// The message re-encoded as HEPv3 (v1/v2 input becomes uniform;
    /// without the auth key unless `keep_auth_key = true`). A `kafka`
    /// listener reads it back.
    Hepv3,
    /// The JSON event document (the file sink's format, never with the
    /// auth key), for consumers that are not HEP-aware. A `kafka` listener
    /// cannot read it back.
    Json,
}

/// Compression of record batches (librdkafka `compression.type`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 (default: cheap, and SIP compresses well).
    #[default]
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Acknowledgements the producer waits for (librdkafka `acks`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Acks {
    /// Every in-sync replica (default; required by `idempotence`).
    #[default]
    All,
    /// The partition leader only (a leader failure can lose messages).
    Leader,
    /// None (fire and forget: losses go unnoticed).
    None,
}

impl Acks {
    fn as_str(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

/// `[sinks.NAME]` with `type = "kafka"`: produce every routed message to
/// Kafka. The engine keys `queue`, `batch` and `retry` apply as for every
/// sink: each engine batch is produced at once and the write returns when
/// every message of it has a delivery report.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port` each (librdkafka `bootstrap.servers`).
    pub brokers: Vec<String>,
    /// Topic template. Placeholders: `{proto}` (protocol name such as
    /// `sip`, `rtcp`, `log`, or the number when it has no name),
    /// `{proto_type}` (the number), `{capture_id}`, `{node}` (this
    /// hepflow's `node.name`), `{listener}` (the listener that received
    /// the message). Characters Kafka does not allow in a topic name
    /// (anything but `A-Z a-z 0-9 . _ -`) are replaced by `_`.
    /// Default `hep`: one topic.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// The record key: `call` (default: SIP Call-ID, else the HEP
    /// correlation id, else none), `call_id`, `correlation_id`, `none`.
    #[serde(default)]
    pub key: KeyMode,
    /// The record value: `raw` (default: the HEP message as received,
    /// minus any auth key chunk), `hepv3` (re-encoded as HEPv3), `json`
    /// (the event document).
    #[serde(default)]
    pub value: ValueMode,
    /// Keep the HEP3 auth key chunk (0x0e) in `raw` and `hepv3` values,
    /// making `raw` values byte-identical to what the agents sent. Default
    /// false: the key is a credential, and it is cut out (every other byte
    /// stays as received). Set it only when the consumers of the topic
    /// must check agents' keys themselves.
    #[serde(default)]
    pub keep_auth_key: bool,
    /// Add the record headers `hep_version`, `hep_proto_type`,
    /// `hep_capture_id`, `hep_node_name` (chunk 0x13, when present),
    /// `hep_timestamp_us` (packet time, microseconds since the epoch),
    /// `hepflow_node`, `hepflow_listener`, `hepflow_transport`,
    /// `hepflow_peer` and `hepflow_received_us`. All values are text.
    #[serde(default = "yes")]
    pub headers: bool,
    /// `none`, `gzip`, `snappy`, `lz4` (default), `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// `all` (default), `leader`, `none`.
    #[serde(default)]
    pub acks: Acks,
    /// Idempotent producer (default true): librdkafka's own retries never
    /// duplicate or reorder a message. Needs `acks = "all"`.
    #[serde(default = "yes")]
    pub idempotence: bool,
    /// How long librdkafka waits to fill a record batch (`linger.ms`).
    /// Default: the sink's `batch.max_wait` (the engine's wait for a batch
    /// to fill) when it is set, else 5 ms (librdkafka's default; 0 makes
    /// its broker thread wake up for every message).
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// Messages per record batch at most (`batch.num.messages`). Default:
    /// the sink's `batch.max_events`, so each engine batch fits one record
    /// batch per partition.
    #[serde(default = "default_batch_messages")]
    pub batch_messages: usize,
    /// How long librdkafka tries to deliver a message, its own retries
    /// included (`message.timeout.ms`). Messages not delivered by then are
    /// produced again by the engine's retry with backoff (`[sinks.NAME.retry]`),
    /// so a broker outage loses nothing while the sink's queue holds.
    #[serde(default = "default_delivery_timeout", with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Messages librdkafka may hold waiting for delivery
    /// (`queue.buffering.max.messages`); when reached, the write waits
    /// (backpressure into the sink's queue), it never drops.
    #[serde(default = "default_max_buffered_messages")]
    pub max_buffered_messages: usize,
    /// Bytes librdkafka may hold waiting for delivery
    /// (`queue.buffering.max.kbytes`, rounded up to KiB).
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// Client id (default `hepflow-<node.name>`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// How often the sink asks the broker for the topic's metadata to
    /// update its health (`/ready`).
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub health_interval: Duration,
    /// Other librdkafka producer properties, passed through as they are
    /// (for example `"socket.keepalive.enable" = true`). A property that
    /// one of the keys above sets is a config error. librdkafka is built
    /// without OpenSSL, Cyrus SASL and curl: no TLS to brokers, SASL PLAIN only.
    #[serde(default)]
    pub librdkafka: Passthrough,
}

fn default_topic() -> String {
    "hep".into()
}
fn yes() -> bool {
    true
}
fn default_linger() -> Duration {
    Duration::from_millis(5)
}
fn default_batch_messages() -> usize {
    1000
}
fn default_delivery_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_buffered_messages() -> usize {
    100_000
}
fn default_max_buffered_bytes() -> usize {
    64 << 20
}
fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}

fn check_brokers(path: &str, brokers: &[String], errors: &mut Vec<String>) {
    if brokers.is_empty() {
        errors.push(format!(
            "{path}.brokers: empty; list at least one broker as \"host:port\""
        ));
    }
    for (i, b) in brokers.iter().enumerate() {
        let ok = b
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok || b.contains(',') || b.contains(char::is_whitespace) {
            errors.push(format!(
                "{path}.brokers[{i}]: `{b}` is not \"host:port\" (one broker per list item)"
            ));
        }
    }
}

impl KafkaSinkConfig {
    /// Every problem, each with its full key path (`path` = `sinks.NAME`).
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        check_brokers(path, &self.brokers, &mut errors);
        if let Err(e) = TopicTemplate::parse(&self.topic) {
            errors.push(format!("{path}.topic: {e}"));
        }
        if self.idempotence && self.acks != Acks::All {
            errors.push(format!(
                "{path}.idempotence: needs acks = \"all\"; set acks = \"all\" or idempotence = false"
            ));
        }
        if self.delivery_timeout < Duration::from_secs(1) {
            errors.push(format!("{path}.delivery_timeout: must be at least 1s"));
        }
        if self.linger > Duration::from_secs(60) {
            errors.push(format!(
                "{path}.linger: must be at most 60s (it defaults to {path}.batch.max_wait)"
            ));
        }
        if !(1..=1_000_000).contains(&self.batch_messages) {
            errors.push(format!(
                "{path}.batch_messages: must be between 1 and 1000000 (it defaults to {path}.batch.max_events)"
            ));
        }
        if !(1..=10_000_000).contains(&self.max_buffered_messages) {
            errors.push(format!(
                "{path}.max_buffered_messages: must be between 1 and 10000000"
            ));
        }
        if !(1024..=(2048 << 20)).contains(&self.max_buffered_bytes) {
            errors.push(format!(
                "{path}.max_buffered_bytes: must be between 1024 and 2147483648"
            ));
        }
        if self.health_interval < Duration::from_millis(100) {
            errors.push(format!("{path}.health_interval: must be at least 100ms"));
        }
        options::check_passthrough(path, &self.librdkafka.0, PRODUCER_OWNED, &mut errors);
        if errors.is_empty() {
            let cfg = self.client_config("validate");
            errors.extend(options::check_whole::<rdkafka::producer::BaseProducer>(
                path,
                &cfg,
                &self.librdkafka.0,
            ));
        }
        errors
    }

    /// The producer's librdkafka properties.
    pub fn client_config(&self, node_name: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.librdkafka.0 {
            c.set(k.trim(), v.as_text());
        }
        c.set("bootstrap.servers", self.brokers.join(","));
        c.set("acks", self.acks.as_str());
        c.set("enable.idempotence", self.idempotence.to_string());
        c.set("compression.type", self.compression.as_str());
        c.set("linger.ms", options::millis(self.linger, 0));
        c.set("batch.num.messages", self.batch_messages.to_string());
        c.set(
            "message.timeout.ms",
            options::millis(self.delivery_timeout, 1),
        );
        c.set(
            "queue.buffering.max.messages",
            self.max_buffered_messages.to_string(),
        );
        c.set(
            "queue.buffering.max.kbytes",
            self.max_buffered_bytes.div_ceil(1024).to_string(),
        );
        c.set(
            "client.id",
            self.client_id
                .clone()
                .unwrap_or_else(|| format!("hepflow-{node_name}")),
        );
        c
    }
}

/// The engine's `[sinks.NAME.batch]` settings as the defaults of a kafka
/// sink's `linger` (`max_wait`, when not 0) and `batch_messages`
/// (`max_events`): the
/// hub calls this on every sink section before validating and building
/// it; sections of other types, and keys the user set, are left alone.
pub fn engine_batch_defaults(
    kind: &str,
    plugin: &mut serde_json::Map<String, serde_json::Value>,
    max_events: usize,
    max_wait: Duration,
) {
    if kind != "kafka" {
        return;
    }
    // max_wait = 0 (the engine's default: write at once) keeps librdkafka's
    // own 5 ms, which spares its broker thread a wake-up per message
    // (measured: faster than 0 ms).
    if !max_wait.is_zero() {
        plugin
            .entry("linger")
            .or_insert_with(|| format!("{}ms", max_wait.as_millis()).into());
    }
    plugin
        .entry("batch_messages")
        .or_insert_with(|| max_events.into());
}

/// Where a new consumer group starts reading (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The oldest retained message (default: a new group misses nothing).
    #[default]
    Earliest,
    /// Only messages produced after the group first joins.
    Latest,
}

/// `[listeners.NAME]` with `kind = "kafka"`: consume HEP messages (values
/// written by a `kafka` sink with `value = "raw"` or `"hepv3"`) from
/// topics in a consumer group, and feed them through the same decode →
/// route → sinks path as UDP and TCP.
///
/// At-least-once: a message's offset is stored for commit only after
/// the message was handed to every routed sink's queue; offsets are
/// committed every `commit_interval`, at every rebalance, and at shutdown.
/// A crash or restart re-reads what was not committed (duplicates, never
/// losses). Route it to sinks with `queue.when_full = "block"`: a full
/// queue then pauses consumption instead of dropping (with `drop_newest`
/// the drops are counted and their offsets committed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaListenerConfig {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    /// Topics to consume (a name starting with `^` is a regex, as in
    /// librdkafka).
    pub topics: Vec<String>,
    /// Consumer group; every hepflow of a tier uses the same group to
    /// share the partitions.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Where a group without committed offsets starts: `earliest`
    /// (default) or `latest`.
    #[serde(default)]
    pub start_from: StartFrom,
    /// Messages decoded and dispatched together at most.
    #[serde(default = "default_source_batch")]
    pub batch_size: usize,
    /// How long to wait for a batch to fill after its first message.
    #[serde(default = "default_batch_wait", with = "humantime_serde")]
    pub batch_wait: Duration,
    /// How often stored offsets are committed (`auto.commit.interval.ms`);
    /// they are also committed at every rebalance and at shutdown.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Consumer group session timeout (`session.timeout.ms`): how long a
    /// silent member keeps its partitions.
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Bytes librdkafka prefetches at most (`queued.max.messages.kbytes`,
    /// rounded up to KiB).
    #[serde(default = "default_consumer_buffer")]
    pub max_buffered_bytes: usize,
    /// How often consumer lag is measured (`statistics.interval.ms`) for
    /// `hepflow_kafka_consumer_lag`.
    #[serde(default = "default_lag_interval", with = "humantime_serde")]
    pub lag_interval: Duration,
    /// Client id (default `hepflow-<node.name>-<listener>`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Other librdkafka consumer properties, passed through. A property
    /// that one of the keys above sets is a config error.
    #[serde(default)]
    pub librdkafka: Passthrough,
}

fn default_group() -> String {
    "hepflow".into()
}
fn default_source_batch() -> usize {
    500
}
fn default_batch_wait() -> Duration {
    Duration::from_millis(20)
}
fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(45)
}
fn default_consumer_buffer() -> usize {
    32 << 20
}
fn default_lag_interval() -> Duration {
    Duration::from_secs(5)
}

impl KafkaListenerConfig {
    /// Every problem, each with its full key path (`path` = `listeners.NAME`).
    pub fn validate(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        check_brokers(path, &self.brokers, &mut errors);
        if self.topics.is_empty() {
            errors.push(format!("{path}.topics: empty; list the topics to consume"));
        }
        for (i, t) in self.topics.iter().enumerate() {
            if t.is_empty() || (!t.starts_with('^') && !crate::topic::is_legal_topic(t)) {
                errors.push(format!(
                    "{path}.topics[{i}]: `{t}` is not a topic name (1-249 of A-Z a-z 0-9 . _ -) nor a regex starting with ^"
                ));
            }
        }
        if self.group_id.trim().is_empty() {
            errors.push(format!("{path}.group_id: empty; name the consumer group"));
        }
        if !(1..=10_000).contains(&self.batch_size) {
            errors.push(format!("{path}.batch_size: must be between 1 and 10000"));
        }
        if self.batch_wait > Duration::from_secs(10) {
            errors.push(format!("{path}.batch_wait: must be at most 10s"));
        }
        if self.commit_interval < Duration::from_millis(10) {
            errors.push(format!("{path}.commit_interval: must be at least 10ms"));
        }
        if self.session_timeout < Duration::from_secs(1) {
            errors.push(format!("{path}.session_timeout: must be at least 1s"));
        }
        if !((1 << 10)..=(2048 << 20)).contains(&self.max_buffered_bytes) {
            errors.push(format!(
                "{path}.max_buffered_bytes: must be between 1024 and 2147483648"
            ));
        }
        if self.lag_interval < Duration::from_millis(100) {
            errors.push(format!("{path}.lag_interval: must be at least 100ms"));
        }
        options::check_passthrough(path, &self.librdkafka.0, CONSUMER_OWNED, &mut errors);
        if errors.is_empty() {
            let cfg = self.client_config("validate", "validate");
            errors.extend(options::check_whole::<rdkafka::consumer::BaseConsumer>(
                path,
                &cfg,
                &self.librdkafka.0,
            ));
        }
        errors
    }

    /// The consumer's librdkafka properties.
    pub fn client_config(&self, node_name: &str, listener: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.librdkafka.0 {
            c.set(k.trim(), v.as_text());
        }
        c.set("bootstrap.servers", self.brokers.join(","));
        c.set("group.id", &self.group_id);
        c.set(
            "auto.offset.reset",
            match self.start_from {
                StartFrom::Earliest => "earliest",
                StartFrom::Latest => "latest",
            },
        );
        c.set("enable.auto.commit", "true");
        c.set("enable.auto.offset.store", "false");
        c.set(
            "auto.commit.interval.ms",
            options::millis(self.commit_interval, 1),
        );
        c.set(
            "session.timeout.ms",
            options::millis(self.session_timeout, 1),
        );
        c.set(
            "queued.max.messages.kbytes",
            self.max_buffered_bytes.div_ceil(1024).to_string(),
        );
        c.set(
            "statistics.interval.ms",
            options::millis(self.lag_interval, 1),
        );
        c.set(
            "client.id",
            self.client_id
                .clone()
                .unwrap_or_else(|| format!("hepflow-{node_name}-{listener}")),
        );
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(v: serde_json::Value) -> Result<KafkaSinkConfig, String> {
        hepflow_sdk::sink::parse_section("sinks.k", &v)
    }

    #[test]
    fn defaults_are_the_no_loss_ones() {
        let c = sink(serde_json::json!({"brokers": ["127.0.0.1:9092"]})).unwrap();
        assert!(c.validate("sinks.k").is_empty());
        let cc = c.client_config("n1");
        assert_eq!(cc.get("acks"), Some("all"));
        assert_eq!(cc.get("enable.idempotence"), Some("true"));
        assert_eq!(cc.get("compression.type"), Some("lz4"));
        assert_eq!(cc.get("client.id"), Some("hepflow-n1"));
        assert_eq!(c.topic, "hep");
        assert_eq!(c.key, KeyMode::Call);
        assert_eq!(c.value, ValueMode::Raw);
        assert!(c.headers);
    }

    #[test]
    fn engine_batch_settings_are_the_defaults_of_linger_and_batch_messages() {
        let mut m = serde_json::json!({"brokers": ["a:1"]})
            .as_object()
            .unwrap()
            .clone();
        engine_batch_defaults("kafka", &mut m, 250, Duration::from_millis(40));
        let c = sink(serde_json::Value::Object(m)).unwrap();
        assert_eq!(c.linger, Duration::from_millis(40));
        assert_eq!(c.batch_messages, 250);
        let cc = c.client_config("n");
        assert_eq!(cc.get("linger.ms"), Some("40"));
        assert_eq!(cc.get("batch.num.messages"), Some("250"));
        // Keys the user set win; other sink types are untouched.
        let mut m = serde_json::json!({"brokers": ["a:1"], "linger": "1ms"})
            .as_object()
            .unwrap()
            .clone();
        engine_batch_defaults("kafka", &mut m, 250, Duration::from_millis(40));
        assert_eq!(m["linger"], "1ms");
        let mut other = serde_json::Map::new();
        engine_batch_defaults("file", &mut other, 250, Duration::ZERO);
        assert!(other.is_empty());
        // max_wait = 0: librdkafka's 5 ms linger stays.
        let mut m = serde_json::json!({"brokers": ["a:1"]})
            .as_object()
            .unwrap()
            .clone();
        engine_batch_defaults("kafka", &mut m, 1000, Duration::ZERO);
        let c = sink(serde_json::Value::Object(m)).unwrap();
        assert_eq!(c.linger, Duration::from_millis(5));
        assert_eq!(c.batch_messages, 1000);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let c = sink(serde_json::json!({
            "brokers": ["nohost", "a:1,b:2"],
            "topic": "hep-{nope}",
            "acks": "leader",
            "delivery_timeout": "10ms",
            "max_buffered_messages": 0,
            "librdkafka": {"linger.ms": 5, "compression.codec": "gzip"}
        }))
        .unwrap();
        let e = c.validate("sinks.k");
        for want in [
            "sinks.k.brokers[0]",
            "sinks.k.brokers[1]",
            "sinks.k.topic",
            "sinks.k.idempotence",
            "sinks.k.delivery_timeout",
            "sinks.k.max_buffered_messages",
            "sinks.k.librdkafka.\"linger.ms\"",
            "sinks.k.librdkafka.\"compression.codec\"",
        ] {
            assert!(e.iter().any(|l| l.starts_with(want)), "{want} in {e:#?}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_enums_are_refused_with_their_path() {
        let e = sink(serde_json::json!({"brokers": ["a:1"], "partitions": 3})).unwrap_err();
        assert!(e.contains("partitions"), "{e}");
        let e = sink(serde_json::json!({"brokers": ["a:1"], "compression": "brotli"})).unwrap_err();
        assert!(e.starts_with("sinks.k.compression"), "{e}");
    }

    #[test]
    fn passthrough_reaches_librdkafka_and_is_checked_by_it() {
        let c = sink(serde_json::json!({
            "brokers": ["a:1"],
            "librdkafka": {"socket.keepalive.enable": true, "batch.size": 200000}
        }))
        .unwrap();
        assert!(
            c.validate("sinks.k").is_empty(),
            "{:?}",
            c.validate("sinks.k")
        );
        let cc = c.client_config("n");
        assert_eq!(cc.get("socket.keepalive.enable"), Some("true"));
        assert_eq!(cc.get("batch.size"), Some("200000"));
        let c = sink(serde_json::json!({
            "brokers": ["a:1"],
            "librdkafka": {"socket.keepalive.enable": "maybe"}
        }))
        .unwrap();
        let e = c.validate("sinks.k");
        assert!(
            e.len() == 1 && e[0].starts_with("sinks.k.librdkafka.\"socket.keepalive.enable\""),
            "{e:?}"
        );
    }

    #[test]
    fn listener_config_validates_and_sets_at_least_once_properties() {
        let l: KafkaListenerConfig = hepflow_sdk::sink::parse_section(
            "listeners.k",
            &serde_json::json!({"brokers": ["a:1"], "topics": ["hep"]}),
        )
        .unwrap();
        assert!(l.validate("listeners.k").is_empty());
        let cc = l.client_config("n", "k");
        assert_eq!(cc.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(cc.get("enable.auto.commit"), Some("true"));
        assert_eq!(cc.get("group.id"), Some("hepflow"));
        assert_eq!(cc.get("auto.offset.reset"), Some("earliest"));

        let l: KafkaListenerConfig = hepflow_sdk::sink::parse_section(
            "listeners.k",
            &serde_json::json!({
                "brokers": [], "topics": ["bad topic"], "batch_size": 0,
                "librdkafka": {"enable.auto.commit": false, "group.id": "x"}
            }),
        )
        .unwrap();
        let e = l.validate("listeners.k");
        for want in [
            "listeners.k.brokers",
            "listeners.k.topics[0]",
            "listeners.k.batch_size",
            "listeners.k.librdkafka.\"enable.auto.commit\"",
            "listeners.k.librdkafka.\"group.id\"",
        ] {
            assert!(e.iter().any(|l| l.starts_with(want)), "{want} in {e:#?}");
        }
    }
}
