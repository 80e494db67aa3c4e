//! The `influxdb` sink: HEP traffic as low-cardinality time series for
//! Grafana, written to InfluxDB (v1 `/write` or v2 `/api/v2/write`) as line
//! protocol, and the same aggregates on hepflow's `/metrics` for
//! Prometheus.
//!
//! Unlike a per-packet writer, the sink aggregates in the hub: per
//! interval (default 10 s) it counts HEP messages by protocol type,
//! capture node and transport, SIP requests by method, SIP responses by
//! code, class and CSeq method, RTCP report statistics, and decode
//! errors, and writes one point per tag set, stamped with the interval's
//! start. Tags stay low-cardinality by default (no addresses, no
//! Call-IDs); more can be added (`tags`), static ones too (`extra_tags`).
//! An opt-in raw mode writes one point per message.
//!
//! Modules:
//! - [`config`]: the section's keys and checks.
//! - [`schema`]: every measurement, tag, field and Prometheus series.
//! - [`line`]: the line protocol encoder (escaping, sorting, types).
//! - [`aggregate`]: per-interval buckets, series bounds, raw points.
//! - [`rtcp`]: RTCP JSON reports and their statistics.
//! - [`prom`]: the Prometheus collector.
//! - [`writer`]: v1/v2 HTTP requests, gzip, auth, health, classification.
//! - [`sender`]: the bounded pending-points buffer and the retrying
//!   background writer.
//! - [`sink`]: the `Sink` tying them together.
//!
//! [`InfluxSinkFactory`] builds the sink for `type = "influxdb"`.

pub mod aggregate;
pub mod config;
pub mod line;
pub mod prom;
pub mod rtcp;
pub mod schema;
pub mod sender;
pub mod sink;
pub mod writer;

pub use config::InfluxSinkConfig;
pub use sink::InfluxSink;

use hepflow_sdk::sink::{Sink, SinkContext, SinkFactory};

/// Builds `type = "influxdb"` sinks.
pub struct InfluxSinkFactory;

impl InfluxSinkFactory {
    /// Parse and check a config section; every problem found.
    pub fn parse(path: &str, config: &serde_json::Value) -> Result<InfluxSinkConfig, Vec<String>> {
        hepflow_sdk::sink::parse_checked(path, config, |c: &InfluxSinkConfig| c.check(path))
    }
}

impl SinkFactory for InfluxSinkFactory {
    fn kind(&self) -> &'static str {
        "influxdb"
    }

    fn validate(&self, path: &str, config: &serde_json::Value) -> Vec<String> {
        match Self::parse(path, config) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    fn build(
        &self,
        path: &str,
        config: &serde_json::Value,
        ctx: SinkContext,
    ) -> Result<Box<dyn Sink>, String> {
        let cfg = Self::parse(path, config).map_err(|p| p.join("; "))?;
        Ok(Box::new(InfluxSink::new(cfg, ctx, path)?))
    }
}
