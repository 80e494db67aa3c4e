//! The sink plugin registry (one line per plugin) and the built-in `null`
//! sink.

use async_trait::async_trait;
use hepflow_sdk::sink::{parse_section, Delivered, Sink, SinkContext, SinkError, SinkFactory};
use hepflow_sdk::Event;
use serde::Deserialize;

/// Every sink type this build knows.
pub fn factories() -> Vec<&'static dyn SinkFactory> {
    #[allow(unused_mut)]
    let mut f: Vec<&'static dyn SinkFactory> = vec![
        &hepflow_file::FileSinkFactory,
        &hepflow_hep::HepSinkFactory,
        &NullSinkFactory,
    ];
    #[cfg(feature = "kafka")]
    f.push(&hepflow_kafka::KafkaSinkFactory);
    f.push(&hepflow_elasticsearch::ElasticsearchSinkFactory);
    f.push(&hepflow_influxdb::InfluxSinkFactory);
    f
}

/// `type = "null"`: counts and discards (for benchmarks and tests).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NullSinkConfig {
    /// Fault injection for tests of backpressure: the sink never consumes
    /// (its first write never returns). Never set this in production.
    pub stall: bool,
}

/// The null sink.
pub struct NullSink {
    stall: bool,
}

#[async_trait]
impl Sink for NullSink {
    async fn write(&mut self, batch: &[Event]) -> Result<Delivered, SinkError> {
        if self.stall {
            std::future::pending::<()>().await;
        }
        Ok(Delivered {
            events: batch.len() as u64,
            bytes: batch.iter().map(|e| e.raw().len() as u64).sum(),
        })
    }
}

/// Factory of [`NullSink`].
pub struct NullSinkFactory;

impl SinkFactory for NullSinkFactory {
    fn kind(&self) -> &'static str {
        "null"
    }

    fn validate(&self, path: &str, config: &serde_json::Value) -> Vec<String> {
        parse_section::<NullSinkConfig>(path, config)
            .err()
            .into_iter()
            .collect()
    }

    fn build(
        &self,
        path: &str,
        config: &serde_json::Value,
        _ctx: SinkContext,
    ) -> Result<Box<dyn Sink>, String> {
        let c: NullSinkConfig = parse_section(path, config)?;
        Ok(Box::new(NullSink { stall: c.stall }))
    }
}
