//! The `hep` sink: forwards copies of the messages routed to it as HEP to
//! other HEP nodes (HOMER, heplify-server, another hepflow, a
//! lawful-intercept collector) over UDP, TCP or TLS.
//!
//! - Targets: `udp://`, `tcp://`, `tls://` `HOST:PORT` ([`target`]); each
//!   has its own bounded queue ([`queue`]), connection task ([`worker`])
//!   and metrics ([`metrics`]), so one dead target never slows the others.
//! - Modes ([`config::Mode`]): `broadcast`, `hash` (rendezvous hashing of
//!   the call key, [`select`]; failover to the next choice while a target
//!   is down, back when it recovers), `round_robin`.
//! - Payload ([`prepare`]): the received bytes unchanged, or re-encoded as
//!   HEPv3 with node name, capture id and auth key set or stripped; loop
//!   protection by node name.
//! - Connections ([`conn`]): batched writes (`sendmmsg` for UDP, several
//!   HEP3 messages per stream write), reconnect with capped jittered
//!   backoff, rustls for TLS ([`tls`]) with a CA file and an optional
//!   client certificate.
//!
//! [`HepSinkFactory`] builds the sink for `type = "hep"`.

pub mod config;
pub mod conn;
pub mod metrics;
pub mod prepare;
pub mod queue;
pub mod select;
pub mod shared;
pub mod sink;
pub mod target;
pub mod tls;
pub mod worker;

pub use config::HepSinkConfig;
pub use sink::HepSink;

use hepflow_sdk::sink::{parse_section, Sink, SinkContext, SinkFactory};
use tls::TlsClient;

/// Builds `type = "hep"` sinks.
pub struct HepSinkFactory;

impl HepSinkFactory {
    /// Parse and check a section, and load the TLS files of its `tls://`
    /// targets; every problem found.
    pub fn parse(
        path: &str,
        config: &serde_json::Value,
    ) -> Result<(HepSinkConfig, Vec<Option<TlsClient>>), Vec<String>> {
        let empty = serde_json::Value::Object(serde_json::Map::new());
        let config = if config.is_null() { &empty } else { config };
        let cfg: HepSinkConfig = parse_section(path, config).map_err(|e| vec![e])?;
        let problems = cfg.check(path);
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut problems = Vec::new();
        let mut clients = Vec::new();
        for (i, rt) in cfg.resolved_targets().iter().enumerate() {
            let Some(tls) = &rt.tls else {
                clients.push(None);
                continue;
            };
            let key = if cfg.targets[i].tls.is_some() {
                format!("{path}.targets[{i}].tls")
            } else {
                format!("{path}.tls")
            };
            match tls::client_config(tls, &key, &rt.url.host) {
                Ok(c) => clients.push(Some(c)),
                Err(e) => {
                    problems.push(format!("{e} (target {})", rt.url));
                    clients.push(None);
                }
            }
        }
        if problems.is_empty() {
            Ok((cfg, clients))
        } else {
            problems.dedup();
            Err(problems)
        }
    }
}

impl SinkFactory for HepSinkFactory {
    fn kind(&self) -> &'static str {
        "hep"
    }

    fn validate(&self, path: &str, config: &serde_json::Value) -> Vec<String> {
        match Self::parse(path, config) {
            Ok(_) => Vec::new(),
            Err(p) => p,
        }
    }

    fn build(
        &self,
        path: &str,
        config: &serde_json::Value,
        ctx: SinkContext,
    ) -> Result<Box<dyn Sink>, String> {
        let (cfg, tls) = Self::parse(path, config).map_err(|p| p.join("; "))?;
        Ok(Box::new(HepSink::new(&cfg, tls, ctx)))
    }
}
