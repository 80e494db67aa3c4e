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
//! - [`series`]: the bounded series map the aggregates and the
//!   Prometheus export share.
//! - [`aggregate`]: per-interval buckets, raw points.
//! - [`rtcp`]: RTCP JSON reports and their statistics.
//! - [`prom`]: the Prometheus collector.
//! - [`writer`]: v1/v2 HTTP requests, gzip, auth, health, classification.
//! - [`sender`]: the bounded pending-points buffer (with its disk tier
//!   when the sink has a spool) and the retrying background writer.
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
pub mod series;
pub mod sink;
pub mod writer;

pub use config::InfluxSinkConfig;
pub use sink::InfluxSink;

use hepflow_sdk::sink::{Sink, SinkContext, TypedSinkFactory};

/// Builds `type = "influxdb"` sinks.
pub struct InfluxSinkFactory;

impl TypedSinkFactory for InfluxSinkFactory {
    const KIND: &'static str = "influxdb";
    type Config = InfluxSinkConfig;

    fn check(config: &InfluxSinkConfig, path: &str) -> Vec<String> {
        config.check(path)
    }

    fn build_sink(
        config: InfluxSinkConfig,
        path: &str,
        ctx: SinkContext,
    ) -> Result<Box<dyn Sink>, String> {
        Ok(Box::new(InfluxSink::new(config, ctx, path)?))
    }
}
