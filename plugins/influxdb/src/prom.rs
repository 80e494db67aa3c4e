//! The same aggregates as the InfluxDB measurements, as Prometheus series
//! on hepflow's `/metrics` (and `/api/v1/stats`), so that a
//! Prometheus-only setup gets the same dashboards.
//!
//! Counters are cumulative since hepflow started (`hepflow_hep_messages_total`,
//! `hepflow_hep_bytes_total`, `hepflow_sip_requests_total`,
//! `hepflow_sip_responses_total`, `hepflow_rtcp_reports_total`,
//! `hepflow_rtcp_report_blocks_total`); the RTCP gauges
//! (`hepflow_rtcp_jitter_mean`, ...) hold the statistics of the last
//! completed interval. Labels are the measurement's tags plus the
//! optional tags; the static `extra_tags` are left to Prometheus'
//! external labels. Decode errors are the hub's own
//! `hepflow_decode_errors_total`.
//!
//! The state is updated by the sink task (one lock per batch) and read
//! by a collector registered with [`Registry::register_collector`] at
//! render time. Each family holds at most `max_series` label sets; more
//! are folded into the set whose values are all `"_other"` and counted in
//! `hepflow_influxdb_series_overflow_total{measurement=FAMILY}`.

use crate::config::OptionalTag;
use crate::schema::{self, PROM_FAMILIES};
use crate::series::{CountBytes, SeriesMap, SEP};
use hepflow_sdk::metrics::{Counter, Registry, Sample};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Cumulative aggregates for the collector.
pub struct PromState {
    hep: SeriesMap<CountBytes>,
    req: SeriesMap<u64>,
    resp: SeriesMap<u64>,
    rtcp: SeriesMap<(u64, u64)>,
    rtcp_gauges: HashMap<Box<str>, Vec<(&'static str, f64)>>,
    labels_hep: Vec<String>,
    labels_req: Vec<String>,
    labels_resp: Vec<String>,
    labels_rtcp: Vec<String>,
    over_hep: Counter,
    over_req: Counter,
    over_resp: Counter,
    over_rtcp: Counter,
}

fn labels(base: &[&str], optional: &[OptionalTag]) -> Vec<String> {
    base.iter()
        .map(|s| s.to_string())
        .chain(optional.iter().map(|t| t.key().to_string()))
        .collect()
}

impl PromState {
    /// Empty state for a sink with these optional tags.
    pub fn new(
        optional: &[OptionalTag],
        max_series: usize,
        registry: &Registry,
        sink: &str,
    ) -> Self {
        let n = optional.len();
        let over = |fam: &str| {
            registry.counter(
                "hepflow_influxdb_series_overflow_total",
                "Messages counted under the \"_other\" tag set because max_series was reached",
                &[("sink", sink), ("measurement", fam)],
            )
        };
        PromState {
            hep: SeriesMap::new(max_series, schema::HEP_MESSAGES.tags.len() + n),
            req: SeriesMap::new(max_series, schema::SIP_REQUESTS.tags.len() + n),
            resp: SeriesMap::new(max_series, schema::SIP_RESPONSES.tags.len() + n),
            rtcp: SeriesMap::new(max_series, schema::RTCP.tags.len() + n),
            rtcp_gauges: HashMap::new(),
            labels_hep: labels(schema::HEP_MESSAGES.tags, optional),
            labels_req: labels(schema::SIP_REQUESTS.tags, optional),
            labels_resp: labels(schema::SIP_RESPONSES.tags, optional),
            labels_rtcp: labels(schema::RTCP.tags, optional),
            over_hep: over("hepflow_hep_messages_total"),
            over_req: over("hepflow_sip_requests_total"),
            over_resp: over("hepflow_sip_responses_total"),
            over_rtcp: over("hepflow_rtcp_reports_total"),
        }
    }

    /// One HEP message (key: node, proto, transport, optional...).
    pub(crate) fn add_hep(&mut self, key: &str, bytes: u64) {
        let e = self.hep.entry(key, &self.over_hep);
        e.count += 1;
        e.bytes += bytes;
    }

    /// One SIP request (key: method, node, optional...).
    pub(crate) fn add_request(&mut self, key: &str) {
        *self.req.entry(key, &self.over_req) += 1;
    }

    /// One SIP response (key: class, code, method, node, optional...).
    pub(crate) fn add_response(&mut self, key: &str) {
        *self.resp.entry(key, &self.over_resp) += 1;
    }

    /// One RTCP report (key: node, optional...).
    pub(crate) fn add_rtcp(&mut self, key: &str, blocks: u64) {
        let e = self.rtcp.entry(key, &self.over_rtcp);
        e.0 += 1;
        e.1 += blocks;
    }

    /// Replace the RTCP gauges with the last completed interval's.
    pub(crate) fn set_rtcp_gauges(&mut self, g: HashMap<Box<str>, Vec<(&'static str, f64)>>) {
        self.rtcp_gauges = g;
    }

    /// Append every sample.
    pub fn collect(&self, out: &mut Vec<Sample>) {
        let fam = |name: &str| {
            PROM_FAMILIES
                .iter()
                .find(|f| f.name == name)
                .copied()
                .unwrap_or(PROM_FAMILIES[0])
        };
        let push = |out: &mut Vec<Sample>, name: &str, names: &[String], key: &str, v: f64| {
            let f = fam(name);
            let labels = names
                .iter()
                .cloned()
                .zip(key.split(SEP).map(|s| s.to_string()))
                .collect();
            out.push(Sample {
                name: name.to_string(),
                help: f.help,
                kind: f.kind,
                labels,
                value: v,
            });
        };
        for (k, v) in self.hep.iter() {
            push(
                out,
                "hepflow_hep_messages_total",
                &self.labels_hep,
                k,
                v.count as f64,
            );
            push(
                out,
                "hepflow_hep_bytes_total",
                &self.labels_hep,
                k,
                v.bytes as f64,
            );
        }
        for (k, v) in self.req.iter() {
            push(
                out,
                "hepflow_sip_requests_total",
                &self.labels_req,
                k,
                *v as f64,
            );
        }
        for (k, v) in self.resp.iter() {
            push(
                out,
                "hepflow_sip_responses_total",
                &self.labels_resp,
                k,
                *v as f64,
            );
        }
        for (k, (reports, blocks)) in self.rtcp.iter() {
            push(
                out,
                "hepflow_rtcp_reports_total",
                &self.labels_rtcp,
                k,
                *reports as f64,
            );
            push(
                out,
                "hepflow_rtcp_report_blocks_total",
                &self.labels_rtcp,
                k,
                *blocks as f64,
            );
        }
        for (k, stats) in &self.rtcp_gauges {
            for (field, v) in stats {
                let name = format!("hepflow_rtcp_{field}");
                push(out, &name, &self.labels_rtcp, k, *v);
            }
        }
    }
}

/// Register the collector of `state` with `registry`.
pub fn register(registry: &Registry, state: Arc<Mutex<PromState>>) {
    registry.register_collector(move |out| {
        state.lock().unwrap_or_else(|e| e.into_inner()).collect(out);
    });
}
