//! The HTTP API (axum): `GET /health` (the process is alive), `GET /ready`
//! (every listener bound and every sink healthy), `GET /metrics`
//! (Prometheus text) and `GET /api/v1/stats` (the same counters as JSON,
//! plus listener addresses and sink health). Memory gauges (resident set,
//! heap in use and free) are read when either is asked for.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use hepflow_sdk::metrics::{Gauge, Registry};
use hepflow_sdk::sink::Health;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the API reads.
pub struct ApiState {
    /// The metric registry.
    pub registry: Registry,
    /// True once every listener is bound.
    pub listeners_bound: AtomicBool,
    /// Listener names and the addresses they are bound to.
    pub listeners: std::sync::Mutex<Vec<(String, String, SocketAddr)>>,
    /// Sink names and health.
    pub sinks: Vec<(String, Health)>,
    /// Process memory, refreshed on every scrape.
    pub memory: MemoryGauges,
}

/// The process's memory, as gauges read at scrape time: what the queues'
/// byte bounds do not show (what sinks hold in flight, what the allocator
/// keeps after a burst).
pub struct MemoryGauges {
    resident: Gauge,
    heap_in_use: Gauge,
    heap_free: Gauge,
}

impl MemoryGauges {
    /// Register the gauges.
    pub fn new(registry: &Registry) -> Self {
        MemoryGauges {
            resident: registry.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                &[],
            ),
            heap_in_use: registry.gauge(
                "hepflow_heap_in_use_bytes",
                "Heap bytes allocated and not yet freed (glibc mallinfo2)",
                &[],
            ),
            heap_free: registry.gauge(
                "hepflow_heap_free_bytes",
                "Heap bytes free inside the allocator (glibc mallinfo2; pages of it may have been returned to the kernel, see hepflow_heap_trims_total)",
                &[],
            ),
        }
    }

    fn refresh(&self) {
        let set = |g: &Gauge, v: usize| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        if let Some(rss) = crate::malloc_tuning::resident_bytes() {
            set(&self.resident, rss);
        }
        if let Some(h) = crate::malloc_tuning::heap_stats() {
            set(&self.heap_in_use, h.in_use);
            set(&self.heap_free, h.free);
        }
    }
}

/// The API's routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/stats", get(stats))
        .with_state(state)
}

fn sink_health(state: &ApiState) -> serde_json::Value {
    state
        .sinks
        .iter()
        .map(|(name, h)| {
            (
                name.clone(),
                serde_json::json!({ "ready": h.is_ready(), "detail": h.detail() }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

async fn ready(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    let bound = state.listeners_bound.load(Ordering::Relaxed);
    let sinks_ok = state.sinks.iter().all(|(_, h)| h.is_ready());
    let body = serde_json::json!({
        "ready": bound && sinks_ok,
        "listeners_bound": bound,
        "sinks": sink_health(&state),
    });
    let code = if bound && sinks_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    state.memory.refresh();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.registry.render_prometheus(),
    )
}

async fn stats(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    state.memory.refresh();
    let listeners: serde_json::Map<String, serde_json::Value> = state
        .listeners
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(name, kind, addr)| {
            (
                name.clone(),
                serde_json::json!({ "kind": kind, "bound": addr.to_string() }),
            )
        })
        .collect();
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "listeners": listeners,
        "sinks": sink_health(&state),
        "metrics": state.registry.snapshot_json(),
    }))
}
