//! The sink's own series (all labelled `sink`), beside the engine's
//! `hepflow_sink_*` ones:
//!
//! | series | labels | meaning |
//! |---|---|---|
//! | `hepflow_es_documents_indexed_total` | sink | documents the cluster confirmed (200/201) |
//! | `hepflow_es_duplicates_total` | sink | `create` items answered 409: already indexed (a retry or a copy), not a failure |
//! | `hepflow_es_bulk_requests_total` | sink, status | bulk requests by HTTP status, or `connect_error` / `timeout` |
//! | `hepflow_es_bulk_bytes_total` | sink | bulk body bytes sent (before gzip), retries included |
//! | `hepflow_es_bulk_wire_bytes_total` | sink | bytes on the wire (after gzip) |
//! | `hepflow_es_retried_documents_total` | sink | documents sent again after a 429/5xx item, a failed request or a split |
//! | `hepflow_es_item_failures_total` | sink, status, error_type | items the cluster did not index, by status and error type (retried ones included) |
//! | `hepflow_es_dead_lettered_total` | sink | documents written to the dead-letter file |
//! | `hepflow_es_request_seconds` | sink | latency of one bulk request (histogram) |
//! | `hepflow_es_cluster_status` | sink | last `_cluster/health`: 0 green, 1 yellow, 2 red, 3 unreachable, -1 not polled yet |
//! | `hepflow_es_urls_paused` | sink | URLs in their failure pause |
//!
//! Error types come from the server: they are reduced to `[a-z0-9_]`, at
//! most 64 characters, and at most 64 (status, type) pairs per sink (then
//! `other`), so a misbehaving server cannot blow up the series count.

use hepflow_sdk::metrics::{Counter, Gauge, Histogram, Registry};
use std::collections::HashMap;
use std::sync::Mutex;

const MAX_FAILURE_SERIES: usize = 64;

/// Handles of the sink's series.
pub struct EsMetrics {
    registry: Registry,
    sink: String,
    /// Documents indexed.
    pub indexed: Counter,
    /// 409 on create.
    pub duplicates: Counter,
    /// Body bytes.
    pub bytes: Counter,
    /// Wire bytes.
    pub wire_bytes: Counter,
    /// Documents sent again.
    pub retried: Counter,
    /// Dead-lettered documents.
    pub dead_lettered: Counter,
    /// Request latency.
    pub latency: Histogram,
    /// Cluster status.
    pub cluster_status: Gauge,
    /// URLs paused.
    pub urls_paused: Gauge,
    requests: Mutex<HashMap<String, Counter>>,
    failures: Mutex<HashMap<(u16, String), Counter>>,
}

impl EsMetrics {
    /// Register the series of sink `sink`.
    pub fn new(registry: &Registry, sink: &str) -> Self {
        let l = [("sink", sink)];
        let m = EsMetrics {
            registry: registry.clone(),
            sink: sink.to_string(),
            indexed: registry.counter(
                "hepflow_es_documents_indexed_total",
                "Documents the cluster confirmed as indexed",
                &l,
            ),
            duplicates: registry.counter(
                "hepflow_es_duplicates_total",
                "Create items answered 409 (already indexed: a retry or a copy)",
                &l,
            ),
            bytes: registry.counter(
                "hepflow_es_bulk_bytes_total",
                "Bulk body bytes sent, before compression",
                &l,
            ),
            wire_bytes: registry.counter(
                "hepflow_es_bulk_wire_bytes_total",
                "Bulk body bytes sent on the wire, after compression",
                &l,
            ),
            retried: registry.counter(
                "hepflow_es_retried_documents_total",
                "Documents sent again after a retryable item or request failure",
                &l,
            ),
            dead_lettered: registry.counter(
                "hepflow_es_dead_lettered_total",
                "Documents written to the dead-letter file",
                &l,
            ),
            latency: registry.histogram(
                "hepflow_es_request_seconds",
                "Latency of one bulk request",
                &l,
            ),
            cluster_status: registry.gauge(
                "hepflow_es_cluster_status",
                "Last cluster health: 0 green, 1 yellow, 2 red, 3 unreachable, -1 not polled yet",
                &l,
            ),
            urls_paused: registry.gauge(
                "hepflow_es_urls_paused",
                "Configured URLs in their failure pause",
                &l,
            ),
            requests: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        };
        m.cluster_status.set(-1);
        m
    }

    /// Count one bulk request by `status` (`"200"`, `"429"`,
    /// `"connect_error"`, `"timeout"`).
    pub fn request(&self, status: &str) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(status) {
            c.inc();
            return;
        }
        let c = self.registry.counter(
            "hepflow_es_bulk_requests_total",
            "Bulk requests by HTTP status (or connect_error, timeout)",
            &[("sink", &self.sink), ("status", status)],
        );
        c.inc();
        map.insert(status.to_string(), c);
    }

    /// Count `n` failed items of one status and error type.
    pub fn item_failure(&self, status: u16, error_type: &str, n: u64) {
        let t = sanitize(error_type);
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let key = if map.contains_key(&(status, t.clone())) || map.len() < MAX_FAILURE_SERIES {
            (status, t)
        } else {
            (0, "other".to_string())
        };
        let c = map.entry(key.clone()).or_insert_with(|| {
            self.registry.counter(
                "hepflow_es_item_failures_total",
                "Bulk items the cluster did not index, by status and error type",
                &[
                    ("sink", &self.sink),
                    ("status", &key.0.to_string()),
                    ("error_type", &key.1),
                ],
            )
        });
        c.add(n);
    }
}

/// An error type as a label value: `[a-z0-9_]`, at most 64 characters.
pub fn sanitize(t: &str) -> String {
    let s: String = t
        .chars()
        .take(64)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "unknown".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_series_are_bounded_and_sanitized() {
        let r = Registry::new();
        let m = EsMetrics::new(&r, "s");
        m.item_failure(400, "Mapper-Parsing exception\"}", 2);
        assert_eq!(
            r.value(
                "hepflow_es_item_failures_total",
                &[
                    ("sink", "s"),
                    ("status", "400"),
                    ("error_type", "mapper_parsing_exception__")
                ]
            ),
            Some(2.0)
        );
        for i in 0..200 {
            m.item_failure(400, &format!("t{i}"), 1);
        }
        let text = r.render_prometheus();
        let n = text
            .lines()
            .filter(|l| l.starts_with("hepflow_es_item_failures_total{"))
            .count();
        assert!(n <= MAX_FAILURE_SERIES + 1, "{n}");
        assert!(r
            .value(
                "hepflow_es_item_failures_total",
                &[("sink", "s"), ("status", "0"), ("error_type", "other")]
            )
            .is_some());
        m.request("200");
        m.request("200");
        assert_eq!(
            r.value(
                "hepflow_es_bulk_requests_total",
                &[("sink", "s"), ("status", "200")]
            ),
            Some(2.0)
        );
    }
}
