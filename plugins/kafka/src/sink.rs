//! The `kafka` sink: produces each engine batch with librdkafka and returns
//! when every message of it has a delivery report.
//!
//! - Delivery reports drive the counters: delivered messages are returned
//!   as [`Delivered`] (`hepflow_sink_sent_total`); a message the broker
//!   refuses for good (too large, unknown topic, not authorized) is counted
//!   as `hepflow_sink_failed_total{reason}`; every failed report is also
//!   counted by error in `hepflow_kafka_delivery_errors_total{sink, error}`.
//! - A message that could not be delivered in `delivery_timeout` (broker
//!   down) makes the write fail as retryable with a partial delivery
//!   ([`SinkError::with_partial`]): the engine counts what was delivered
//!   and retries, with backoff, only the messages not delivered yet (no
//!   duplicates from a whole-batch retry).
//! - A full librdkafka queue (`QueueFull`) makes the write wait for
//!   deliveries and try again: backpressure into the sink's queue and its
//!   `when_full` policy, never a drop (`hepflow_kafka_queue_full_total`).
//! - A fatal producer error, or two writes in a row that delivered
//!   nothing (an idempotent producer stuck after its broker lost its
//!   state), replaces the producer (`hepflow_kafka_producer_replaced_total`).
//! - Health: at start and every `health_interval`, a metadata request for
//!   the topic (all topics when the template has placeholders).

use crate::config::{KafkaSinkConfig, ValueMode};
use crate::headers;
use crate::topic::TopicTemplate;
use crate::value;
use async_trait::async_trait;
use hepflow_sdk::metrics::Counter;
use hepflow_sdk::ratelimit::LogLimiter;
use hepflow_sdk::sink::{Delivered, Health, Sink, SinkContext, SinkError, TypedSinkFactory};
use hepflow_sdk::Event;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// librdkafka's log lines and client errors, routed to `tracing` with the
/// sink's name, rate-limited; broker-wide errors mark the sink unhealthy.
pub struct SinkClientContext {
    name: Arc<str>,
    health: Health,
    log: Mutex<LogLimiter>,
}

impl ClientContext for SinkClientContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(&self.name, "sink", &self.log, level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.health
                .set_unready(format!("all Kafka brokers are down: {reason}"));
        }
        let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = l.allow() {
            tracing::warn!(sink = %self.name, error = %error, suppressed = n, "kafka: {reason}");
        }
    }
}

/// Route one librdkafka log line to `tracing` (warnings and errors are
/// rate-limited together with the client's errors).
pub(crate) fn log_librdkafka(
    name: &str,
    what: &str,
    limiter: &Mutex<LogLimiter>,
    level: RDKafkaLogLevel,
    fac: &str,
    msg: &str,
) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error
        | RDKafkaLogLevel::Warning => {
            let mut l = limiter.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = l.allow() {
                tracing::warn!(%name, kind = what, facility = fac, suppressed = n, "librdkafka: {msg}");
            }
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::debug!(%name, kind = what, facility = fac, "librdkafka: {msg}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::trace!(%name, kind = what, facility = fac, "librdkafka: {msg}")
        }
    }
}

type Producer_ = FutureProducer<SinkClientContext>;

/// Writes in a row that deliver nothing before the producer is replaced.
const STALLED_WRITES_BEFORE_REPLACING: u32 = 2;

/// The failure label of a delivery error code: its librdkafka name in
/// snake_case (`message_timed_out`, `msg_size_too_large`, ...).
pub fn error_label(code: RDKafkaErrorCode) -> String {
    let name = format!("{code:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        }
    }
    out
}

/// Whether a delivery error will not go away by producing the message
/// again (the message is then counted as failed, not retried).
pub fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::InvalidRecord
            | C::InvalidTopic
            | C::UnknownTopic
            | C::UnknownPartition
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::InvalidArgument
    )
}

/// Which messages of one write are settled (delivered, or given up and
/// counted), and what was delivered.
struct Settled {
    settled: Vec<bool>,
    delivered: u64,
    bytes: u64,
}

/// The kafka sink.
pub struct KafkaSink {
    cfg: KafkaSinkConfig,
    template: TopicTemplate,
    ctx: SinkContext,
    producer: Option<Producer_>,
    health_task: Option<tokio::task::JoinHandle<()>>,
    queue_full: Counter,
    replaced: Counter,
    /// Writes in a row that ended with undelivered messages and delivered none.
    stalled_writes: u32,
    log: LogLimiter,
    topic_buf: String,
    scratch: Vec<u8>,
}

impl KafkaSink {
    /// A sink for `cfg` (validated); nothing connects until [`Sink::start`].
    pub fn new(cfg: KafkaSinkConfig, ctx: SinkContext) -> Result<Self, String> {
        let template = TopicTemplate::parse(&cfg.topic)?;
        let queue_full = ctx.registry.counter(
            "hepflow_kafka_queue_full_total",
            "Times a kafka sink found librdkafka's queue full and waited (backpressure)",
            &[("sink", &ctx.name)],
        );
        let replaced = ctx.registry.counter(
            "hepflow_kafka_producer_replaced_total",
            "Times a kafka sink replaced its producer (fatal error, or writes that delivered nothing)",
            &[("sink", &ctx.name)],
        );
        Ok(KafkaSink {
            replaced,
            stalled_writes: 0,
            cfg,
            template,
            ctx,
            producer: None,
            health_task: None,
            queue_full,
            log: LogLimiter::default(),
            topic_buf: String::new(),
            scratch: Vec::new(),
        })
    }

    fn create_producer(&self) -> Result<Producer_, SinkError> {
        let context = SinkClientContext {
            name: self.ctx.name.clone(),
            health: self.ctx.health.clone(),
            log: Mutex::new(LogLimiter::default()),
        };
        self.cfg
            .client_config(&self.ctx.node_name)
            .create_with_context(context)
            .map_err(|e| {
                SinkError::fatal(
                    "producer_config",
                    format!(
                        "cannot create the Kafka producer: {e}; check sinks.{}",
                        self.ctx.name
                    ),
                )
            })
    }

    fn delivery_error(&self, code: RDKafkaErrorCode) -> Counter {
        self.ctx.registry.counter(
            "hepflow_kafka_delivery_errors_total",
            "Failed delivery reports of a kafka sink, by librdkafka error",
            &[("sink", &self.ctx.name), ("error", &error_label(code))],
        )
    }

    /// Replace a producer that hit a fatal error, or whose last writes
    /// delivered nothing (dropping it blocks, so it is dropped on a
    /// blocking thread).
    async fn replace_if_broken(&mut self) {
        let fatal = self
            .producer
            .as_ref()
            .and_then(|p| p.client().fatal_error());
        let why = match fatal {
            Some((code, why)) => Some(format!("it hit a fatal error ({code}: {why})")),
            // An idempotent producer whose broker lost its state (a
            // restarted broker without persistent storage, an expired
            // producer id) can stay stuck: every message times out. A new
            // producer gets a new producer id.
            None if self.stalled_writes >= STALLED_WRITES_BEFORE_REPLACING => Some(format!(
                "{} writes in a row delivered nothing",
                self.stalled_writes
            )),
            None => None,
        };
        if let Some(why) = why {
            tracing::warn!(sink = %self.ctx.name, "replacing the Kafka producer: {why}");
            self.stalled_writes = 0;
            self.replaced.inc();
            if let Some(old) = self.producer.take() {
                let _ = tokio::task::spawn_blocking(move || drop(old)).await;
            }
            match self.create_producer() {
                Ok(p) => self.producer = Some(p),
                Err(e) => {
                    tracing::error!(sink = %self.ctx.name, error = %e, "cannot replace the Kafka producer")
                }
            }
        }
    }

    /// The record timestamp: when hepflow received the message. Not the
    /// packet time (that is the `hep_timestamp_us` header): brokers apply
    /// time-based retention to record timestamps, and replayed or
    /// late-delivered captures with old packet times would be deleted at
    /// once (or refused under `message.timestamp.difference.max.ms`).
    fn timestamp_ms(ev: &Event) -> i64 {
        ev.meta()
            .received_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Metadata request: `Ok` when the brokers answer and the topic (if named)
/// has no error.
async fn probe(producer: &Producer_, topic: Option<&str>, timeout: Duration) -> Result<(), String> {
    let p = producer.clone();
    let topic = topic.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let md = p
            .client()
            .fetch_metadata(topic.as_deref(), timeout)
            .map_err(|e| format!("metadata request failed: {e}"))?;
        if let Some(t) = &topic {
            match md.topics().iter().find(|x| x.name() == t) {
                Some(x) => {
                    if let Some(e) = x.error() {
                        let code = RDKafkaErrorCode::from(e);
                        return Err(format!("topic {t}: {code}"));
                    }
                }
                None => return Err(format!("topic {t}: not in the metadata reply")),
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| format!("metadata task failed: {e}"))?
}

struct Pending {
    index: usize,
    bytes: usize,
    future: DeliveryFuture,
}

/// What a batch write found.
#[derive(Default)]
struct Tally {
    retry_error: Option<(RDKafkaErrorCode, String)>,
}

#[async_trait]
impl Sink for KafkaSink {
    async fn start(&mut self) -> Result<(), SinkError> {
        if self.producer.is_none() {
            self.producer = Some(self.create_producer()?);
        }
        let producer = self.producer.clone().expect("just set");
        let topic = self.template.fixed().map(str::to_owned);
        probe(&producer, topic.as_deref(), Duration::from_secs(5))
            .await
            .map_err(|e| {
                SinkError::retryable(
                    "unreachable",
                    format!(
                        "Kafka brokers {} not usable ({e}); is the broker up and `brokers` right?",
                        self.cfg.brokers.join(",")
                    ),
                )
            })?;
        tracing::info!(sink = %self.ctx.name, brokers = %self.cfg.brokers.join(","), topic = %self.cfg.topic, "kafka sink connected");
        if self.health_task.is_none() {
            let health = self.ctx.health.clone();
            let interval = self.cfg.health_interval;
            let name = self.ctx.name.clone();
            self.health_task = Some(tokio::spawn(async move {
                let mut was_ok = true;
                loop {
                    tokio::time::sleep(interval).await;
                    match probe(
                        &producer,
                        topic.as_deref(),
                        interval.max(Duration::from_secs(1)),
                    )
                    .await
                    {
                        Ok(()) => {
                            if !was_ok {
                                tracing::info!(sink = %name, "kafka brokers answer metadata requests again");
                            }
                            was_ok = true;
                            health.set_ready();
                        }
                        Err(e) => {
                            if was_ok {
                                tracing::warn!(sink = %name, error = %e, "kafka health check failed");
                            }
                            was_ok = false;
                            health.set_unready(format!("kafka: {e}"));
                        }
                    }
                }
            }));
        }
        Ok(())
    }

    async fn write(&mut self, batch: &[Event]) -> Result<Delivered, SinkError> {
        self.replace_if_broken().await;
        let Some(producer) = self.producer.clone() else {
            return Err(SinkError::retryable(
                "producer_unavailable",
                "the Kafka producer could not be created; retrying",
            ));
        };
        let mut state = Settled {
            settled: vec![false; batch.len()],
            delivered: 0,
            bytes: 0,
        };
        let mut tally = Tally::default();
        let mut pending: VecDeque<Pending> = VecDeque::with_capacity(batch.len());
        let node = self.ctx.node_name.clone();

        for (i, ev) in batch.iter().enumerate() {
            let payload = match value::value(
                ev,
                self.cfg.value,
                self.cfg.keep_auth_key,
                &mut self.scratch,
            ) {
                Ok(v) => v,
                Err(e) => {
                    self.ctx.failed("encode_failed", 1);
                    state.settled[i] = true;
                    if let Some(n) = self.log.allow() {
                        tracing::warn!(sink = %self.ctx.name, suppressed = n, "message dropped: {}", e.0);
                    }
                    continue;
                }
            };
            self.template.render(ev, &node, &mut self.topic_buf);
            let key = value::key(ev, self.cfg.key);
            let hdrs = self.cfg.headers.then(|| headers::build(ev, &node));
            let ts = Self::timestamp_ms(ev);
            loop {
                let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic_buf)
                    .payload(&payload[..])
                    .timestamp(ts);
                if let Some(k) = key {
                    record = record.key(k);
                }
                if let Some(h) = &hdrs {
                    record = record.headers(h.clone());
                }
                match producer.send_result(record) {
                    Ok(future) => {
                        pending.push_back(Pending {
                            index: i,
                            bytes: payload.len(),
                            future,
                        });
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // Backpressure: wait for the oldest delivery, then
                        // try again. Never drop.
                        self.queue_full.inc();
                        match pending.pop_front() {
                            Some(p) => self.settle(p, &mut state, &mut tally).await,
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    Err((e, _)) => {
                        let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                        self.delivery_error(code).inc();
                        if is_permanent(code) {
                            state.settled[i] = true;
                            self.ctx.failed(&error_label(code), 1);
                            if let Some(n) = self.log.allow() {
                                tracing::warn!(sink = %self.ctx.name, topic = %self.topic_buf, error = %e, suppressed = n, "Kafka refused a message; it is dropped and counted");
                            }
                        } else {
                            tally.retry_error = Some((code, e.to_string()));
                        }
                        break;
                    }
                }
            }
        }
        while let Some(p) = pending.pop_front() {
            self.settle(p, &mut state, &mut tally).await;
        }
        if tally.retry_error.is_some() && state.delivered == 0 {
            self.stalled_writes += 1;
        } else {
            self.stalled_writes = 0;
        }
        match tally.retry_error {
            None => Ok(Delivered {
                events: state.delivered,
                bytes: state.bytes,
            }),
            Some((code, msg)) => {
                let left: Vec<usize> = (0..batch.len()).filter(|&i| !state.settled[i]).collect();
                let delivered = Delivered {
                    events: state.delivered,
                    bytes: state.bytes,
                };
                Err(SinkError::retryable(
                    if code == RDKafkaErrorCode::MessageTimedOut {
                        "message_timed_out"
                    } else {
                        "delivery_failed"
                    },
                    format!(
                        "{} of {} messages not delivered to Kafka ({msg}); they will be produced again",
                        left.len(),
                        batch.len()
                    ),
                )
                .with_partial(delivered, left))
            }
        }
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        if let Some(t) = self.health_task.take() {
            t.abort();
        }
        if let Some(p) = self.producer.take() {
            let _ = tokio::task::spawn_blocking(move || {
                let _ = p.flush(Duration::from_secs(5));
                drop(p);
            })
            .await;
        }
        Ok(())
    }
}

impl KafkaSink {
    async fn settle(&self, p: Pending, state: &mut Settled, tally: &mut Tally) {
        match p.future.await {
            Ok(Ok(_delivery)) => {
                state.settled[p.index] = true;
                state.delivered += 1;
                state.bytes += p.bytes as u64;
            }
            Ok(Err((e, _msg))) => {
                let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                self.delivery_error(code).inc();
                if is_permanent(code) {
                    state.settled[p.index] = true;
                    self.ctx.failed(&error_label(code), 1);
                } else {
                    tally.retry_error = Some((code, e.to_string()));
                }
            }
            Err(_canceled) => {
                tally.retry_error = Some((
                    RDKafkaErrorCode::Fail,
                    "the producer was replaced before reporting".into(),
                ));
            }
        }
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        if let Some(t) = self.health_task.take() {
            t.abort();
        }
    }
}

/// Factory of [`KafkaSink`] (`type = "kafka"`).
pub struct KafkaSinkFactory;

impl TypedSinkFactory for KafkaSinkFactory {
    const KIND: &'static str = "kafka";
    type Config = KafkaSinkConfig;

    fn check(config: &KafkaSinkConfig, path: &str) -> Vec<String> {
        config.validate(path)
    }

    fn build_sink(
        c: KafkaSinkConfig,
        _path: &str,
        ctx: SinkContext,
    ) -> Result<Box<dyn Sink>, String> {
        if c.keep_auth_key && c.value != ValueMode::Json {
            tracing::warn!(sink = %ctx.name, "kafka sink keeps the agents' HEP auth keys in record values (keep_auth_key = true): restrict who can read the topic");
        }
        if c.value == ValueMode::Json {
            tracing::info!(sink = %ctx.name, "kafka sink writes JSON documents: a kafka listener cannot read them back");
        }
        Ok(Box::new(KafkaSink::new(c, ctx)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_labels_are_snake_case_and_classified() {
        assert_eq!(
            error_label(RDKafkaErrorCode::MessageTimedOut),
            "message_timed_out"
        );
        assert_eq!(
            error_label(RDKafkaErrorCode::MessageSizeTooLarge),
            "message_size_too_large"
        );
        assert!(is_permanent(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(!is_permanent(RDKafkaErrorCode::MessageTimedOut));
        assert!(!is_permanent(RDKafkaErrorCode::BrokerTransportFailure));
        assert!(!is_permanent(RDKafkaErrorCode::QueueFull));
    }
}
