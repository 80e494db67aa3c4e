//! Configuration: loading (figment), typed sections, and validation that
//! reports every problem it finds, each with the full path of the key and
//! what to do.
//!
//! Sources, later ones winning:
//! 1. built-in defaults (the `Default` impls below);
//! 2. the TOML file given with `-c/--config`, or, without one, the embedded
//!    default `config/hepflow.toml`;
//! 3. environment variables `HEPFLOW_<SECTION>__<KEY>...`: the prefix
//!    `HEPFLOW_`, then the key path with `__` between levels, for example
//!    `HEPFLOW_API__BIND=0.0.0.0:9096` or `HEPFLOW_SINKS__FILES__PATH=/var/lib/hepflow`.
//!    Only variables whose first level is a known section are read, so
//!    other `HEPFLOW_*` variables do not collide;
//! 4. command-line flags (`--api-bind`, `--node-name`, `--log-level`).

use figment::providers::{Env, Format, Toml};
use figment::value::Value as FigValue;
use figment::Figment;
use hepflow_sdk::sink::SinkFactory;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

mod check;
mod listeners;
mod routes;
mod sinks;

pub use hepflow_sdk::delivery::{RetryConfig, WhenFull};
pub use hepflow_sdk::spool::config::{SpoolConfig, SpoolMode};
pub use listeners::{
    AuthConfig, CaptureIdCompat, ListenerConfig, TcpListenerConfig, TlsListenerConfig,
    UdpListenerConfig,
};
pub use routes::{DefaultRoute, RouteConfig, RouteMatch};
pub use sinks::{
    BatchConfig, QueueConfig, SinkCommon, SinkConfig, MAX_SINKS, MIN_QUEUE_BYTES, SINK_COMMON_KEYS,
};

/// The embedded default configuration (HEP on UDP and TCP 9060, file sink
/// under `./data`, API on 127.0.0.1:9096).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/hepflow.toml");

/// Top-level sections of the configuration.
pub const SECTIONS: [&str; 9] = [
    "node",
    "log",
    "api",
    "decode",
    "listeners",
    "sinks",
    "routes",
    "default_route",
    "shutdown",
];

pub use hepflow_sdk::secret::Secret;

/// `[node]`: this hepflow instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node's name, used in logs and by sinks that stamp messages.
    pub name: String,
    /// Where hepflow keeps state on disk: the sinks' spools under
    /// `<data_dir>/spool/<sink>`. Only used when a sink has a spool.
    pub data_dir: std::path::PathBuf,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "hepflow".into(),
            data_dir: "/var/lib/hepflow".into(),
        }
    }
}

/// `[log]`: logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Level filter (`error`, `warn`, `info`, `debug`, `trace`, or a
    /// tracing filter directive). `RUST_LOG` overrides it.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[api]`: the HTTP API (health, readiness, metrics, stats).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the API at all.
    pub enabled: bool,
    /// Address to bind.
    pub bind: SocketAddr,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            bind: "127.0.0.1:9096".parse().expect("literal address"),
        }
    }
}

/// `[decode]`: HEP decoding bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// Largest size a compressed payload (chunk 0x10) may inflate to.
    pub max_inflated_bytes: usize,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            max_inflated_bytes: 1 << 20,
        }
    }
}

/// `[shutdown]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long queues may drain into their sinks after SIGINT/SIGTERM.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            grace_period: Duration::from_secs(10),
        }
    }
}

/// The whole, validated configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `[node]`.
    pub node: NodeConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[api]`.
    pub api: ApiConfig,
    /// `[decode]`.
    pub decode: DecodeConfig,
    /// `[listeners.NAME]`.
    pub listeners: BTreeMap<String, ListenerConfig>,
    /// `[sinks.NAME]`.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// `[[routes]]`.
    pub routes: Vec<RouteConfig>,
    /// `[default_route]`.
    pub default_route: DefaultRoute,
    /// `[shutdown]`.
    pub shutdown: ShutdownConfig,
}

/// Values from command-line flags, merged last.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--api-bind`.
    pub api_bind: Option<String>,
    /// `--node-name`.
    pub node_name: Option<String>,
    /// `--log-level`.
    pub log_level: Option<String>,
}

/// Every problem found in a configuration, one line each.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Build the figment for a config file (or the embedded default).
pub fn figment(path: Option<&Path>, overrides: &Overrides) -> Figment {
    let mut fig = match path {
        Some(p) => Figment::new().merge(Toml::file_exact(p)),
        None => Figment::new().merge(Toml::string(EMBEDDED_DEFAULT)),
    };
    fig = fig.merge(
        Env::prefixed("HEPFLOW_")
            .split("__")
            .filter(|k| {
                let first = k.as_str().split('.').next().unwrap_or("");
                SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(first))
            })
            .lowercase(true),
    );
    if let Some(v) = &overrides.api_bind {
        fig = fig.merge(("api.bind", v.clone()));
    }
    if let Some(v) = &overrides.node_name {
        fig = fig.merge(("node.name", v.clone()));
    }
    if let Some(v) = &overrides.log_level {
        fig = fig.merge(("log.level", v.clone()));
    }
    fig
}

fn fig_err(e: figment::Error, prefix: &str) -> Vec<String> {
    e.into_iter()
        .map(|e| {
            let mut path: Vec<&str> = prefix.split('.').filter(|p| !p.is_empty()).collect();
            path.extend(e.path.iter().map(String::as_str));
            let path = path.join(".");
            let kind = e.kind.to_string();
            let hint = match &e.kind {
                figment::error::Kind::UnknownField(..) => {
                    " (misspelt or misplaced key: remove it or fix its name)"
                }
                figment::error::Kind::MissingField(..) => " (add it)",
                _ => "",
            };
            let from = e
                .metadata
                .as_ref()
                .map(|m| format!(" [from {}]", m.name))
                .unwrap_or_default();
            if path.is_empty() {
                format!("{kind}{hint}{from}")
            } else {
                format!("{path}: {kind}{hint}{from}")
            }
        })
        .collect()
}

/// Extract the section at `key`, reporting errors with full key paths.
pub(super) fn extract_at<T: serde::de::DeserializeOwned>(
    fig: &Figment,
    key: &str,
) -> Result<T, Vec<String>> {
    fig.focus(key).extract::<T>().map_err(|e| fig_err(e, key))
}

fn section<T: serde::de::DeserializeOwned + Default>(
    fig: &Figment,
    key: &str,
    present: bool,
    errors: &mut Vec<String>,
) -> T {
    if !present {
        return T::default();
    }
    match extract_at::<T>(fig, key) {
        Ok(v) => v,
        Err(e) => {
            errors.extend(e);
            T::default()
        }
    }
}

/// Load and validate a configuration. Every problem is reported, not only
/// the first; `factories` are the registered sink plugins.
pub fn load(
    path: Option<&Path>,
    overrides: &Overrides,
    factories: &[&dyn SinkFactory],
) -> Result<Config, ConfigErrors> {
    let fig = figment(path, overrides);
    let mut errors = Vec::new();
    let top: BTreeMap<String, FigValue> = match fig.extract() {
        Ok(v) => v,
        Err(e) => return Err(ConfigErrors(fig_err(e, ""))),
    };
    for key in top.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            errors.push(format!(
                "{key}: unknown section (misspelt? known sections: {})",
                SECTIONS.join(", ")
            ));
        }
    }
    let has = |k: &str| top.contains_key(k);
    let mut cfg = Config {
        node: section(&fig, "node", has("node"), &mut errors),
        log: section(&fig, "log", has("log"), &mut errors),
        api: section(&fig, "api", has("api"), &mut errors),
        decode: section(&fig, "decode", has("decode"), &mut errors),
        default_route: section(&fig, "default_route", has("default_route"), &mut errors),
        shutdown: section(&fig, "shutdown", has("shutdown"), &mut errors),
        ..Config::default()
    };
    if has("routes") {
        match fig.extract_inner::<Vec<RouteConfig>>("routes") {
            Ok(r) => cfg.routes = r,
            Err(e) => errors.extend(fig_err(e, "routes")),
        }
    }
    if let Some(FigValue::Dict(_, listeners)) = top.get("listeners") {
        for name in listeners.keys() {
            let key = format!("listeners.{name}");
            if let Some(l) = listeners::listener_config(&fig, &key, &mut errors) {
                cfg.listeners.insert(name.clone(), l);
            }
        }
    } else if has("listeners") {
        errors.push("listeners: must be a table of named listeners".into());
    }
    if let Some(FigValue::Dict(_, sinks)) = top.get("sinks") {
        for name in sinks.keys() {
            let key = format!("sinks.{name}");
            let value: serde_json::Value = match extract_at(&fig, &key) {
                Ok(v) => v,
                Err(e) => {
                    errors.extend(e);
                    continue;
                }
            };
            if let Some(sink) = sinks::sink_config(&key, value, factories, &mut errors) {
                cfg.sinks.insert(name.clone(), sink);
            }
        }
    } else if has("sinks") {
        errors.push("sinks: must be a table of named sinks".into());
    }
    let declared_sinks: Vec<String> = match top.get("sinks") {
        Some(FigValue::Dict(_, d)) => d.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let any_listener = matches!(top.get("listeners"), Some(FigValue::Dict(_, d)) if !d.is_empty());
    if !any_listener {
        errors.push("listeners: none configured; add at least one [listeners.NAME]".into());
    }
    check::check_semantics(&cfg, &declared_sinks, &mut errors);
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors(errors))
    }
}
