//! The cluster health poller: a background task that asks
//! `GET /_cluster/health` every `health_interval` and sets the sink's
//! readiness (`/ready`): not ready while no URL answers or the cluster is
//! `red`; ready again when it is `green` or `yellow`, the sink has started
//! (version known, template installed) and its writes are not failing. A
//! user without the `monitor` privilege gets 401/403 here: that is logged
//! (rate-limited) and readiness then follows the writes alone.

use crate::client::Control;
use crate::metrics::EsMetrics;
use hepflow_sdk::ratelimit::LogLimiter;
use hepflow_sdk::sink::Health;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// State the sink and the poller share.
#[derive(Debug, Default)]
pub struct SharedState {
    /// `start` succeeded.
    pub started: AtomicBool,
    /// The last write failed (the engine is retrying).
    pub writes_failing: AtomicBool,
}

/// Start the poller; it runs until the handle is aborted.
pub fn spawn(
    sink: Arc<str>,
    control: Arc<Control>,
    health: Health,
    state: Arc<SharedState>,
    metrics: Arc<EsMetrics>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut log = LogLimiter::new(Duration::from_secs(60));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            poll_once(&sink, &control, &health, &state, &metrics, &mut log).await;
        }
    })
}

/// One poll.
pub async fn poll_once(
    sink: &str,
    control: &Control,
    health: &Health,
    state: &SharedState,
    metrics: &EsMetrics,
    log: &mut LogLimiter,
) {
    match control.cluster_health().await {
        Ok(status) => {
            let code = match status.as_str() {
                "green" => 0,
                "yellow" => 1,
                "red" => 2,
                _ => 1,
            };
            metrics.cluster_status.set(code);
            if code == 2 {
                health.set_unready("cluster health is red: some primary shards are unassigned");
            } else if state.started.load(Ordering::Acquire)
                && !state.writes_failing.load(Ordering::Acquire)
            {
                health.set_ready();
            }
        }
        Err(e) if matches!(e.status, Some(401) | Some(403)) => {
            if let Some(n) = log.allow() {
                tracing::warn!(sink, error = %e, suppressed = n, "cannot read cluster health; readiness follows the writes only (grant the `monitor` cluster privilege to fix)");
            }
        }
        Err(e) => {
            metrics.cluster_status.set(3);
            health.set_unready(format!("cluster unreachable: {e}"));
            if let Some(n) = log.allow() {
                tracing::warn!(sink, error = %e, suppressed = n, "Elasticsearch cluster health check failed");
            }
        }
    }
}
