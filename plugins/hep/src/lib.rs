//! The `hep` sink: forwards copies of the messages routed to it as HEP to
//! other HEP nodes (HOMER, heplify-server, another hepflow, a
//! lawful-intercept collector) over UDP, TCP or TLS.
//!
//! - Targets: `udp://`, `tcp://`, `tls://` `HOST:PORT` ([`target`]); each
//!   has its own bounded queue (the SDK's queue type, with a spool of its
//!   own when the sink has one), connection task ([`worker`]) and metrics
//!   ([`metrics`]), so one dead target never slows the others.
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
pub mod select;
pub mod shared;
pub mod sink;
pub mod target;
pub mod tls;
pub mod worker;

pub use config::HepSinkConfig;
pub use sink::HepSink;

use hepflow_sdk::sink::{Sink, SinkContext, TypedSinkFactory};
use tls::TlsClient;

/// Builds `type = "hep"` sinks.
pub struct HepSinkFactory;

impl HepSinkFactory {
    /// Load the TLS client configs of a checked section's `tls://` targets
    /// (`None` for the others); every problem found.
    fn load_tls(cfg: &HepSinkConfig, path: &str) -> Result<Vec<Option<TlsClient>>, Vec<String>> {
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
            Ok(clients)
        } else {
            problems.dedup();
            Err(problems)
        }
    }
}

impl TypedSinkFactory for HepSinkFactory {
    const KIND: &'static str = "hep";
    type Config = HepSinkConfig;

    /// The section's own checks; when they pass, the TLS files of its
    /// `tls://` targets are loaded too, so that `validate` reports a
    /// missing or unusable certificate or key.
    fn check(config: &HepSinkConfig, path: &str) -> Vec<String> {
        let problems = config.check(path);
        if !problems.is_empty() {
            return problems;
        }
        Self::load_tls(config, path).err().unwrap_or_default()
    }

    fn build_sink(
        config: HepSinkConfig,
        path: &str,
        ctx: SinkContext,
    ) -> Result<Box<dyn Sink>, String> {
        // Loaded again here: `check` only reports problems (the files are
        // small and read once per build).
        let tls = Self::load_tls(&config, path).map_err(|p| p.join("; "))?;
        Ok(Box::new(HepSink::new(&config, tls, ctx)))
    }
}
