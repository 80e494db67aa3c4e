//! The `hep` sink's own series, per target (labels `sink`, `target` = the
//! canonical URL, never anything secret) and per sink.
//!
//! | series | labels | meaning |
//! |---|---|---|
//! | `hepflow_hep_target_sent_total` | sink, target | messages written to the target |
//! | `hepflow_hep_target_sent_bytes_total` | sink, target | bytes written |
//! | `hepflow_hep_target_writes_total` | sink, target | write calls (`sendmmsg` / stream writes); sent / writes is the batching |
//! | `hepflow_hep_target_reconnects_total` | sink, target | connections made again after one was lost or failed |
//! | `hepflow_hep_target_connect_failures_total` | sink, target | connect attempts that failed |
//! | `hepflow_hep_target_dropped_total` | sink, target, reason | `queue_full`, `send_error`, `shutdown` |
//! | `hepflow_hep_target_failover_total` | sink, target | messages that went to another target because this one was down |
//! | `hepflow_hep_target_connected` | sink, target | 1 while connected (UDP: while the socket is usable) |
//! | `hepflow_hep_target_queued_total` | sink, target | messages accepted into the target's queue (memory or spool) |
//! | `hepflow_hep_target_queue_depth` | sink, target | messages waiting in memory |
//! | `hepflow_hep_target_queue_bytes` | sink, target | memory they keep alive (bounded by `queue_max_bytes`) |
//! | `hepflow_spool_*` | sink, target | the target's spool, when the sink has one (README "Delivery guarantees") |
//! | `hepflow_hep_dropped_total` | sink, reason | `loop` (already carries our node name) |
//!
//! Messages that cannot be encoded are counted by the engine's
//! `hepflow_sink_failed_total{reason="encode_error"}`.

use hepflow_sdk::metrics::{Counter, Gauge, Registry};
use hepflow_sdk::queue::QueueMetrics;

/// The series of one target.
#[derive(Clone)]
pub struct TargetMetrics {
    /// Messages written.
    pub sent: Counter,
    /// Bytes written.
    pub bytes: Counter,
    /// Write calls.
    pub writes: Counter,
    /// Connections re-established.
    pub reconnects: Counter,
    /// Failed connect attempts.
    pub connect_failures: Counter,
    /// Dropped, the send failed for good.
    pub dropped_send_error: Counter,
    /// Dropped at shutdown.
    pub dropped_shutdown: Counter,
    /// Moved elsewhere while down.
    pub failover: Counter,
    /// 1 while connected.
    pub connected: Gauge,
    /// The target queue's series (queued, dropped when full or at
    /// shutdown, depth, bytes).
    pub queue: QueueMetrics,
}

impl TargetMetrics {
    /// Register the series of target `target` of sink `sink`.
    pub fn new(r: &Registry, sink: &str, target: &str) -> Self {
        let l = [("sink", sink), ("target", target)];
        let dropped = |reason: &str| {
            r.counter(
                "hepflow_hep_target_dropped_total",
                "Messages a HEP forwarding target dropped, by reason",
                &[("sink", sink), ("target", target), ("reason", reason)],
            )
        };
        TargetMetrics {
            sent: r.counter(
                "hepflow_hep_target_sent_total",
                "Messages written to a HEP forwarding target",
                &l,
            ),
            bytes: r.counter(
                "hepflow_hep_target_sent_bytes_total",
                "Bytes written to a HEP forwarding target",
                &l,
            ),
            writes: r.counter(
                "hepflow_hep_target_writes_total",
                "Write calls to a HEP forwarding target (several messages each)",
                &l,
            ),
            reconnects: r.counter(
                "hepflow_hep_target_reconnects_total",
                "Connections to a HEP forwarding target made again after one was lost or failed",
                &l,
            ),
            connect_failures: r.counter(
                "hepflow_hep_target_connect_failures_total",
                "Failed connect attempts to a HEP forwarding target",
                &l,
            ),
            dropped_send_error: dropped("send_error"),
            dropped_shutdown: dropped("shutdown"),
            failover: r.counter(
                "hepflow_hep_target_failover_total",
                "Messages sent to another target because this HEP forwarding target was down",
                &l,
            ),
            connected: r.gauge(
                "hepflow_hep_target_connected",
                "1 while a HEP forwarding target is connected",
                &l,
            ),
            queue: QueueMetrics {
                queued: r.counter(
                    "hepflow_hep_target_queued_total",
                    "Messages accepted into a HEP forwarding target's queue (memory or spool)",
                    &l,
                ),
                dropped_full: dropped("queue_full"),
                dropped_shutdown: dropped("shutdown"),
                depth: r.gauge(
                    "hepflow_hep_target_queue_depth",
                    "Messages waiting in memory for a HEP forwarding target",
                    &l,
                ),
                bytes: r.gauge(
                    "hepflow_hep_target_queue_bytes",
                    "Memory kept alive by the messages waiting for a HEP forwarding target",
                    &l,
                ),
            },
        }
    }
}

/// Sink-level series.
#[derive(Clone)]
pub struct SinkMetrics {
    /// Dropped by loop protection.
    pub dropped_loop: Counter,
}

impl SinkMetrics {
    /// Register the series of sink `sink`.
    pub fn new(r: &Registry, sink: &str) -> Self {
        SinkMetrics {
            dropped_loop: r.counter(
                "hepflow_hep_dropped_total",
                "Messages a HEP forwarding sink did not forward, by reason",
                &[("sink", sink), ("reason", "loop")],
            ),
        }
    }
}
