//! The consumer behind the hub's `kind = "kafka"` listener.
//!
//! [`KafkaSource`] reads batches of records from its topics in a consumer
//! group. The hub decodes and dispatches a batch, and only then calls
//! [`KafkaSource::store`]: offsets are *stored* for commit after the
//! messages are in the sinks' queues (`enable.auto.offset.store=false`),
//! and librdkafka commits stored offsets every `commit_interval`, when
//! partitions are revoked in a rebalance, and when the consumer closes. A
//! message whose batch was not dispatched is never committed, so it is
//! read again after a restart or by the partition's next owner
//! (at-least-once: duplicates, never losses).
//!
//! Metrics (label `listener`): `hepflow_kafka_consumer_lag{topic,
//! partition}` (from librdkafka's statistics: high watermark minus the
//! consumer's position), `hepflow_kafka_assigned_partitions`,
//! `hepflow_kafka_rebalances_total{kind}`, `hepflow_kafka_commits_total`,
//! `hepflow_kafka_commit_errors_total`, `hepflow_kafka_consumer_errors_total`,
//! `hepflow_kafka_offsets_not_stored_total` (a batch's partition was
//! revoked before its offsets could be stored: its new owner reads it
//! again), `hepflow_kafka_oversize_total` (values larger than any HEP
//! message, skipped).

use crate::config::KafkaListenerConfig;
use crate::headers::{self, Origin};
use crate::sink::log_librdkafka;
use bytes::Bytes;
use hepflow_sdk::metrics::{Counter, Gauge, Registry, Sample};
use hepflow_sdk::ratelimit::LogLimiter;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest record value read as a HEP message (a HEP3 message's length
/// field is 16 bits, and so is a UDP datagram's): bigger values are
/// skipped without being copied, so a batch holds at most
/// `batch_size` × this many bytes.
pub const MAX_VALUE_BYTES: usize = 65535;

/// How long [`KafkaSource::close`] waits for the final commit and the
/// group leave.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

type LagMap = Arc<Mutex<BTreeMap<(String, i32), i64>>>;

/// Callbacks of the listener's consumer: rebalances, commits, lag, logs.
pub struct SourceContext {
    name: Arc<str>,
    lag: LagMap,
    assigned: Gauge,
    assign: Counter,
    revoke: Counter,
    rebalance_errors: Counter,
    commits: Counter,
    commit_errors: Counter,
    log: Mutex<LogLimiter>,
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(&self.name, "listener", &self.log, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = l.allow() {
            tracing::warn!(listener = %self.name, error = %error, suppressed = n, "kafka: {reason}");
        }
    }

    fn stats(&self, stats: Statistics) {
        let mut lag = BTreeMap::new();
        for (topic, t) in &stats.topics {
            for (p, part) in &t.partitions {
                if *p >= 0 && part.consumer_lag >= 0 {
                    lag.insert((topic.clone(), *p), part.consumer_lag);
                }
            }
        }
        *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                self.revoke.inc();
                tracing::info!(listener = %self.name, partitions = %describe(tpl), "kafka partitions revoked; stored offsets are committed");
                let mut lag = self.lag.lock().unwrap_or_else(|e| e.into_inner());
                for e in tpl.elements() {
                    lag.remove(&(e.topic().to_string(), e.partition()));
                }
            }
            Rebalance::Assign(tpl) => {
                self.assign.inc();
                tracing::info!(listener = %self.name, partitions = %describe(tpl), "kafka partitions assigned");
            }
            Rebalance::Error(e) => {
                self.rebalance_errors.inc();
                tracing::warn!(listener = %self.name, error = %e, "kafka rebalance failed");
            }
        }
    }

    fn post_rebalance(&self, c: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        if let Ok(a) = c.assignment() {
            self.assigned.set(a.count() as i64);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.commits.inc(),
            // Nothing to commit since the last time: not an error.
            Err(KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                self.commit_errors.inc();
                let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(n) = l.allow() {
                    tracing::warn!(listener = %self.name, error = %e, suppressed = n, "kafka offset commit failed; uncommitted messages will be read again after a restart or rebalance");
                }
            }
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    let mut parts: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect();
    parts.sort();
    parts.join(",")
}

/// One consumed record, owned.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// The record value (a HEP message when written by a `kafka` sink
    /// with `value = "raw"` or `"hepv3"`); empty for a null value.
    pub value: Bytes,
    /// Receive metadata of the hepflow that produced it (from headers).
    pub origin: Origin,
    /// Topic.
    pub topic: Arc<str>,
    /// The value was larger than any HEP message can be
    /// ([`MAX_VALUE_BYTES`]): not copied (`value` is empty), counted in
    /// `hepflow_kafka_oversize_total`, not decoded.
    pub oversize: bool,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// The listener's consumer.
pub struct KafkaSource {
    consumer: Option<StreamConsumer<SourceContext>>,
    name: Arc<str>,
    errors: Counter,
    not_stored: Counter,
    oversize: Counter,
    log: LogLimiter,
    topics: BTreeMap<String, Arc<str>>,
}

impl KafkaSource {
    /// Create the consumer of listener `listener` and subscribe to its
    /// topics (joining the group happens in the background).
    pub fn new(
        cfg: &KafkaListenerConfig,
        node_name: &str,
        listener: &str,
        registry: &Registry,
    ) -> Result<Self, String> {
        let l = [("listener", listener)];
        let with = |k: &'static str, v: &'static str| [("listener", listener), (k, v)];
        let lag: LagMap = Arc::default();
        let context = SourceContext {
            name: listener.into(),
            lag: lag.clone(),
            assigned: registry.gauge(
                "hepflow_kafka_assigned_partitions",
                "Partitions assigned to a kafka listener now",
                &l,
            ),
            assign: registry.counter(
                "hepflow_kafka_rebalances_total",
                "Consumer group rebalances seen by a kafka listener, by kind",
                &with("kind", "assign"),
            ),
            revoke: registry.counter(
                "hepflow_kafka_rebalances_total",
                "Consumer group rebalances seen by a kafka listener, by kind",
                &with("kind", "revoke"),
            ),
            rebalance_errors: registry.counter(
                "hepflow_kafka_rebalances_total",
                "Consumer group rebalances seen by a kafka listener, by kind",
                &with("kind", "error"),
            ),
            commits: registry.counter(
                "hepflow_kafka_commits_total",
                "Offset commits a kafka listener made",
                &l,
            ),
            commit_errors: registry.counter(
                "hepflow_kafka_commit_errors_total",
                "Offset commits that failed (the messages are read again later)",
                &l,
            ),
            log: Mutex::new(LogLimiter::default()),
        };
        let name: Arc<str> = listener.into();
        {
            let name = name.clone();
            registry.register_collector(move |out: &mut Vec<Sample>| {
                let lag = lag.lock().unwrap_or_else(|e| e.into_inner());
                for ((topic, partition), v) in lag.iter() {
                    out.push(Sample {
                        name: "hepflow_kafka_consumer_lag".into(),
                        help: "Messages a kafka listener has yet to read, per partition (high watermark minus position)",
                        kind: "gauge",
                        labels: vec![
                            ("listener".into(), name.to_string()),
                            ("topic".into(), topic.clone()),
                            ("partition".into(), partition.to_string()),
                        ],
                        value: *v as f64,
                    });
                }
            });
        }
        let consumer: StreamConsumer<SourceContext> = cfg
            .client_config(node_name, listener)
            .create_with_context(context)
            .map_err(|e| format!("listeners.{listener}: cannot create the Kafka consumer: {e}"))?;
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| format!("listeners.{listener}: cannot subscribe to {topics:?}: {e}"))?;
        Ok(KafkaSource {
            consumer: Some(consumer),
            name,
            errors: registry.counter(
                "hepflow_kafka_consumer_errors_total",
                "Errors a kafka listener's consumer reported while reading",
                &l,
            ),
            not_stored: registry.counter(
                "hepflow_kafka_offsets_not_stored_total",
                "Batches whose offsets could not be stored (partition revoked meanwhile; read again by its new owner)",
                &l,
            ),
            oversize: registry.counter(
                "hepflow_kafka_oversize_total",
                "Records larger than any HEP message, skipped by a kafka listener",
                &l,
            ),
            log: LogLimiter::default(),
            topics: BTreeMap::new(),
        })
    }

    /// Read up to `max` records into `out`: waits for the first one, then
    /// up to `wait` for more. Consumer errors are counted, logged
    /// (rate-limited) and skipped.
    pub async fn next_batch(&mut self, max: usize, wait: Duration, out: &mut Vec<Consumed>) {
        let Some(consumer) = self.consumer.as_ref() else {
            std::future::pending::<()>().await;
            return;
        };
        let mut deadline = None;
        while out.len() < max {
            let recv = consumer.recv();
            let got = match deadline {
                None => recv.await,
                Some(d) => match tokio::time::timeout_at(d, recv).await {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            match got {
                Ok(m) => {
                    let topic = match self.topics.get(m.topic()) {
                        Some(t) => t.clone(),
                        None => {
                            let t: Arc<str> = m.topic().into();
                            if self.topics.len() < 10_000 {
                                self.topics.insert(m.topic().to_string(), t.clone());
                            }
                            t
                        }
                    };
                    let payload = m.payload().unwrap_or_default();
                    let oversize = payload.len() > MAX_VALUE_BYTES;
                    if oversize {
                        self.oversize.inc();
                        if let Some(n) = self.log.allow() {
                            tracing::warn!(listener = %self.name, topic = m.topic(), partition = m.partition(), offset = m.offset(), bytes = payload.len(), suppressed = n, "kafka record larger than any HEP message skipped");
                        }
                    }
                    out.push(Consumed {
                        value: if oversize {
                            Bytes::new()
                        } else {
                            Bytes::copy_from_slice(payload)
                        },
                        oversize,
                        origin: headers::origin(m.headers()),
                        topic,
                        partition: m.partition(),
                        offset: m.offset(),
                    });
                    if deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + wait);
                    }
                }
                Err(e) => {
                    self.errors.inc();
                    if let Some(n) = self.log.allow() {
                        tracing::warn!(listener = %self.name, error = %e, suppressed = n, "kafka consumer error");
                    }
                    if out.is_empty() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    } else {
                        break;
                    }
                }
            }
        }
    }

    /// Store the offsets of `batch` for commit: call only after the batch
    /// was handed to every routed sink's queue.
    pub fn store(&mut self, batch: &[Consumed]) {
        let Some(consumer) = self.consumer.as_ref() else {
            return;
        };
        let mut last: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for m in batch {
            let e = last.entry((&m.topic, m.partition)).or_insert(m.offset);
            *e = (*e).max(m.offset);
        }
        for ((topic, partition), offset) in last {
            // Stores offset + 1, the next offset to read.
            if let Err(e) = consumer.store_offset(topic, partition, offset) {
                self.not_stored.inc();
                if let Some(n) = self.log.allow() {
                    tracing::info!(listener = %self.name, topic, partition, error = %e, suppressed = n, "offsets not stored (partition revoked meanwhile); its new owner reads them again");
                }
            }
        }
    }

    /// Leave the group: commits the stored offsets and closes the consumer
    /// (blocking work, done on a blocking thread).
    pub async fn close(&mut self) {
        if let Some(c) = self.consumer.take() {
            if let Some(tpl) = c.assignment().ok().filter(|t| t.count() > 0) {
                tracing::info!(listener = %self.name, partitions = %describe(&tpl), "kafka listener leaving its group");
            }
            let name = self.name.clone();
            let closing = tokio::task::spawn_blocking(move || {
                // Commit what is stored now, synchronously, then close.
                if let Err(e) = c.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
                    if !matches!(
                        e,
                        KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::NoOffset)
                    ) {
                        tracing::warn!(listener = %name, error = %e, "final kafka offset commit failed; uncommitted messages will be read again");
                    }
                }
                drop(c);
            });
            // With the brokers gone, leaving the group can block for long:
            // stop waiting (the process is shutting down anyway).
            if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
                tracing::warn!(listener = %self.name, "kafka consumer did not close within {CLOSE_TIMEOUT:?}; uncommitted messages will be read again");
            }
        }
    }
}
