//! The `kind = "kafka"` listener: consumes HEP messages (written by a
//! front tier's `kafka` sink) from topics in a consumer group and feeds
//! them into the same decode → route → sinks path as UDP and TCP, with the
//! original receive metadata (sender address and receive time) taken from
//! the record headers when present.
//!
//! At-least-once: a batch's offsets are stored for commit only after
//! [`Pipeline::dispatch`] returned for it, that is after every message is
//! in every routed sink's queue (or was dropped and counted by a
//! `drop_newest` queue). A batch cut short by shutdown is not stored, so
//! it is read again after the restart. Rebalances, commits and consumer
//! lag are handled and measured by [`hepflow_kafka::source::KafkaSource`].

use crate::ingest::Decoder;
use crate::pipeline::Pipeline;
use hepflow_kafka::source::{Consumed, KafkaSource};
use hepflow_kafka::KafkaListenerConfig;
use hepflow_sdk::metrics::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;

/// Sender address used when a record carries no `hepflow_peer` header.
const UNKNOWN_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Create the consumer of listener `name` (no I/O yet: the group is
/// joined in the background).
pub fn open(
    name: &str,
    cfg: &KafkaListenerConfig,
    node_name: &str,
    registry: &Registry,
) -> Result<KafkaSource, String> {
    KafkaSource::new(cfg, node_name, name, registry)
}

/// Consume until `stop` turns true, then commit what was dispatched and
/// leave the group.
pub async fn serve(
    source: Arc<tokio::sync::Mutex<KafkaSource>>,
    cfg: KafkaListenerConfig,
    decoder: Arc<Decoder>,
    pipeline: Arc<Pipeline>,
    mut stop: watch::Receiver<bool>,
) {
    // Held for the run: a run that panics lets go of it, and the next
    // one (supervised) goes on with the same consumer.
    let mut source = source.lock().await;
    let m = decoder.metrics.clone();
    let mut batch: Vec<Consumed> = Vec::with_capacity(cfg.batch_size);
    'outer: loop {
        if *stop.borrow() {
            break;
        }
        batch.clear();
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = source.next_batch(cfg.batch_size, cfg.batch_wait, &mut batch) => {}
        }
        if batch.is_empty() {
            continue;
        }
        let now = SystemTime::now();
        let mut events = Vec::with_capacity(batch.len());
        for c in &batch {
            m.received.inc();
            if c.oversize {
                // Counted and logged by the source; committed with the batch.
                continue;
            }
            m.bytes.add(c.value.len() as u64);
            let peer = c.origin.peer.unwrap_or(UNKNOWN_PEER);
            let at = c.origin.received_at.unwrap_or(now);
            if let Some(ev) = decoder.decode(c.value.clone(), peer, at) {
                events.push(ev);
            }
        }
        if !events.is_empty() {
            // A `block` queue makes this wait: consumption pauses, Kafka
            // keeps the messages. Shutdown cuts the wait short and leaves
            // the batch uncommitted (read again later).
            tokio::select! {
                biased;
                _ = pipeline.dispatch(events) => {}
                _ = stop.changed() => break 'outer,
            }
        }
        // Undecodable records are counted by the decoder and committed
        // too: reading them again would not make them decodable.
        source.store(&batch);
    }
    source.close().await;
}
