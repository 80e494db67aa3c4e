//! The sink plugin registry (one line per plugin) and the built-in `null`
//! sink.

use async_trait::async_trait;
use hepflow_sdk::sink::{Delivered, Sink, SinkContext, SinkError, SinkFactory, TypedSinkFactory};
use hepflow_sdk::Event;
use serde::Deserialize;

/// Every sink type this build knows.
pub fn factories() -> Vec<&'static dyn SinkFactory> {
    let mut f: Vec<&'static dyn SinkFactory> = vec![
        &hepflow_file::FileSinkFactory,
        &hepflow_hep::HepSinkFactory,
        &NullSinkFactory,
    ];
    #[cfg(feature = "kafka")]
    f.push(&hepflow_kafka::KafkaSinkFactory);
    #[cfg(not(feature = "kafka"))]
    f.push(&KafkaUnavailableFactory);
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

impl TypedSinkFactory for NullSinkFactory {
    const KIND: &'static str = "null";
    type Config = NullSinkConfig;

    fn build_sink(
        c: NullSinkConfig,
        _path: &str,
        _ctx: SinkContext,
    ) -> Result<Box<dyn Sink>, String> {
        Ok(Box::new(NullSink { stall: c.stall }))
    }
}

/// Stands for the `kafka` sink type in a build without the `kafka` cargo
/// feature, so that a config using it is refused with how to get Kafka
/// support rather than as an unknown sink type.
#[cfg(not(feature = "kafka"))]
pub struct KafkaUnavailableFactory;

#[cfg(not(feature = "kafka"))]
impl KafkaUnavailableFactory {
    fn error(path: &str) -> String {
        format!(
            "{path}.type: `kafka`: this hepflow was built without Kafka support \
             (the `kafka` cargo feature); rebuild it with `--features kafka` \
             (a default feature: a build without `--no-default-features` has it)"
        )
    }
}

#[cfg(not(feature = "kafka"))]
impl SinkFactory for KafkaUnavailableFactory {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn validate(&self, path: &str, _config: &serde_json::Value) -> Vec<String> {
        vec![Self::error(path)]
    }

    fn build(
        &self,
        path: &str,
        _config: &serde_json::Value,
        _ctx: SinkContext,
    ) -> Result<Box<dyn Sink>, String> {
        Err(Self::error(path))
    }
}

#[cfg(all(test, not(feature = "kafka")))]
mod no_kafka_tests {
    use crate::config::{load, Overrides};

    #[test]
    fn a_kafka_sink_says_the_build_lacks_kafka_and_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("hepflow.toml");
        std::fs::write(
            &cfg,
            r#"
[listeners.udp]
kind = "udp"
bind = "127.0.0.1:0"
[sinks.bus]
type = "kafka"
brokers = ["127.0.0.1:9092"]
topic = "hep"
[default_route]
sinks = ["bus"]
"#,
        )
        .unwrap();
        let errors = load(Some(&cfg), &Overrides::default(), &super::factories())
            .expect_err("a kafka sink in a build without kafka")
            .0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert!(e.starts_with("sinks.bus.type: "), "{e}");
        assert!(e.contains("built without Kafka support"), "{e}");
        assert!(e.contains("--features kafka"), "{e}");
        assert!(e.contains("--no-default-features"), "{e}");
        assert!(!e.contains("unknown sink type"), "{e}");
    }
}
