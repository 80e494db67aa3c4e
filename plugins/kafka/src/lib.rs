//! hepflow's Kafka plugin, on rdkafka with its bundled librdkafka (built
//! with librdkafka's own configure/make: no cmake, OpenSSL, SASL or curl).
//!
//! - The `kafka` sink ([`KafkaSinkFactory`]): every message routed to it is
//!   produced to a topic chosen by a template (`hep-{proto}` style), keyed
//!   by its call (SIP Call-ID, else the HEP correlation id), with the HEP
//!   message as received (or re-encoded as HEPv3, or its JSON document) as
//!   the value and the packet's metadata as headers. The producer defaults
//!   to no loss (`acks=all`, idempotence); delivery reports drive the
//!   counters; a full librdkafka queue is backpressure, never a drop.
//! - The consumer behind the hub's `kind = "kafka"` listener
//!   ([`source::KafkaSource`]): a consumer group whose offsets are stored
//!   only after the hub has queued the messages (at-least-once), with
//!   rebalances logged and counted and consumer lag exposed as a metric.
//! - [`headers`]: the Kafka header names both sides agree on.
//!
//! `rdkafka` is re-exported for tests and tools that read topics back.

pub mod config;
pub mod headers;
pub mod options;
pub mod sink;
pub mod source;
pub mod topic;
pub mod value;

pub use config::{KafkaListenerConfig, KafkaSinkConfig};
pub use rdkafka;
pub use sink::{KafkaSink, KafkaSinkFactory};
