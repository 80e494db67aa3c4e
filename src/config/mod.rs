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
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use hepflow_sdk::delivery::{RetryConfig, WhenFull};
pub use hepflow_sdk::spool::config::{SpoolConfig, SpoolMode};

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

/// A secret string (auth keys, passwords). Its `Debug` never shows it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

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

/// Authentication settings of a listener, and the sender compatibility
/// rule its decoder applies.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// When set, HEP3 messages whose auth key chunk (0x0e) is missing or
    /// different are dropped and counted.
    pub auth_key: Option<Secret>,
    /// On a listener with `auth_key`, accept HEP v1/v2 messages (which
    /// cannot carry a key). Default false: they are refused and counted.
    pub allow_legacy_without_key: bool,
    /// How the HEP3 capture id chunk (0x0c) is read.
    pub capture_id_compat: CaptureIdCompat,
}

/// `capture_id_compat` of a UDP or TCP listener: how the HEP3 capture id
/// chunk (0x0c, a big-endian u32) is read. See docs/interop.md.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CaptureIdCompat {
    /// As the spec says: the u32, big-endian (default).
    #[default]
    None,
    /// sngrep 1.6 and sipgrep 2.1 write `htons(id)` into the u32, so id
    /// 2002 arrives as bytes `07 d2 00 00`. With this rule a value whose
    /// low 16 bits are zero and high 16 bits are not is read as its high 16
    /// bits (`07 d2 00 00` = 2002), and counted in
    /// `hepflow_capture_id_rewritten_total`. Only for listeners that receive
    /// from such senders: a real capture id that is a multiple of 65536
    /// would be misread.
    Sngrep,
}

impl CaptureIdCompat {
    /// The capture id to use for a HEP3 chunk value `raw`, or `None` when
    /// the rule leaves it as it is.
    pub fn rewrite(self, raw: u32) -> Option<u32> {
        match self {
            CaptureIdCompat::None => None,
            CaptureIdCompat::Sngrep => looks_htons(raw).then_some(raw >> 16),
        }
    }
}

/// True when a capture id chunk value looks like a little-endian sender's
/// `htons(id)` written into the u32 (low 16 bits zero, high 16 bits not).
pub fn looks_htons(raw: u32) -> bool {
    raw & 0xffff == 0 && raw != 0
}

/// `[listeners.NAME]` with `kind = "udp"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpListenerConfig {
    /// Address to bind (IPv4 or IPv6, e.g. `0.0.0.0:9060` or `[::]:9060`).
    pub bind: SocketAddr,
    /// Receive loops, each on its own socket bound with SO_REUSEPORT.
    /// 0 = one per core.
    #[serde(default)]
    pub workers: usize,
    /// SO_RCVBUF in bytes (the kernel may cap it at `net.core.rmem_max`).
    #[serde(default = "default_rcvbuf")]
    pub recv_buffer_bytes: usize,
    /// Datagrams received per `recvmmsg` call.
    #[serde(default = "default_udp_batch")]
    pub batch_size: usize,
    /// Largest datagram accepted; longer ones are truncated by the kernel
    /// and counted as `truncated`.
    #[serde(default = "default_max_datagram")]
    pub max_datagram_bytes: usize,
    /// When set, HEP3 messages whose auth key chunk (0x0e) is missing or
    /// different are dropped and counted.
    #[serde(default)]
    pub auth_key: Option<Secret>,
    /// With `auth_key`, also accept HEP v1/v2 (which cannot carry a key).
    #[serde(default)]
    pub allow_legacy_without_key: bool,
    /// How the HEP3 capture id chunk is read: `none` (default, as the spec
    /// says) or `sngrep` (undo the `htons(id)` byte order of sngrep 1.6 and
    /// sipgrep 2.1; see docs/interop.md).
    #[serde(default)]
    pub capture_id_compat: CaptureIdCompat,
}

fn default_rcvbuf() -> usize {
    8 << 20
}
fn default_udp_batch() -> usize {
    64
}
fn default_max_datagram() -> usize {
    65535
}

/// `[listeners.NAME]` with `kind = "tcp"`: HEP3 framed by its own length.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpListenerConfig {
    /// Address to bind.
    pub bind: SocketAddr,
    /// Connections served at once; more are accepted and closed at once,
    /// and counted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest HEP3 message accepted (the protocol's own limit is 65535);
    /// a larger length field closes the connection as a framing error.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// A connection that sends nothing for this long is closed.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// When set, HEP3 messages whose auth key chunk (0x0e) is missing or
    /// different are dropped and counted.
    #[serde(default)]
    pub auth_key: Option<Secret>,
    /// With `auth_key`, also accept HEP v1/v2 (which cannot carry a key).
    #[serde(default)]
    pub allow_legacy_without_key: bool,
    /// How the HEP3 capture id chunk is read: `none` (default, as the spec
    /// says) or `sngrep` (undo the `htons(id)` byte order of sngrep 1.6 and
    /// sipgrep 2.1; see docs/interop.md).
    #[serde(default)]
    pub capture_id_compat: CaptureIdCompat,
}

/// `[listeners.NAME]` with `kind = "tls"`: HEP3 over TLS, framed like TCP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// Address to bind.
    pub bind: SocketAddr,
    /// The server certificate chain (PEM), leaf first.
    pub cert_file: std::path::PathBuf,
    /// The private key of the leaf certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: std::path::PathBuf,
    /// When set, clients must present a certificate signed by a CA in this
    /// PEM file (mutual TLS); without it any client may connect.
    #[serde(default)]
    pub client_ca_file: Option<std::path::PathBuf>,
    /// A TLS handshake that takes longer is abandoned and counted.
    #[serde(default = "default_handshake", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Connections served at once (handshakes included).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest HEP3 message accepted; a larger length field closes the
    /// connection as a framing error.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// A connection that sends nothing for this long is closed.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// When set, HEP3 messages whose auth key chunk (0x0e) is missing or
    /// different are dropped and counted.
    #[serde(default)]
    pub auth_key: Option<Secret>,
}

fn default_handshake() -> Duration {
    Duration::from_secs(10)
}

fn default_max_connections() -> usize {
    1024
}
fn default_max_message() -> usize {
    65535
}
fn default_idle() -> Duration {
    Duration::from_secs(300)
}

/// One listener.
#[derive(Debug, Clone)]
pub enum ListenerConfig {
    /// HEP over UDP.
    Udp(UdpListenerConfig),
    /// HEP3 over TCP.
    Tcp(TcpListenerConfig),
    /// HEP3 over TLS.
    Tls(TlsListenerConfig),
    /// HEP messages consumed from Kafka topics in a consumer group.
    #[cfg(feature = "kafka")]
    Kafka(hepflow_kafka::KafkaListenerConfig),
}

impl ListenerConfig {
    /// The bind address (unspecified for a kafka listener, which binds nothing).
    pub fn bind(&self) -> SocketAddr {
        match self {
            ListenerConfig::Udp(u) => u.bind,
            ListenerConfig::Tcp(t) => t.bind,
            ListenerConfig::Tls(t) => t.bind,
            #[cfg(feature = "kafka")]
            ListenerConfig::Kafka(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }
    /// The auth settings.
    pub fn auth(&self) -> AuthConfig {
        let (key, legacy) = match self {
            ListenerConfig::Udp(u) => (&u.auth_key, u.allow_legacy_without_key),
            ListenerConfig::Tcp(t) => (&t.auth_key, t.allow_legacy_without_key),
            ListenerConfig::Tls(t) => (&t.auth_key, false),
            // Kafka carries what a front tier already accepted (its sink cuts
            // the auth key out): no key check.
            #[cfg(feature = "kafka")]
            ListenerConfig::Kafka(_) => return AuthConfig::default(),
        };
        AuthConfig {
            auth_key: key.clone(),
            allow_legacy_without_key: legacy,
            capture_id_compat: self.capture_id_compat(),
        }
    }
    /// The listener's capture id compatibility rule (`none` for listener
    /// kinds without the option).
    pub fn capture_id_compat(&self) -> CaptureIdCompat {
        match self {
            ListenerConfig::Udp(u) => u.capture_id_compat,
            ListenerConfig::Tcp(t) => t.capture_id_compat,
            #[allow(unreachable_patterns)]
            _ => CaptureIdCompat::None,
        }
    }
}

/// `[sinks.NAME.queue]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Messages the queue holds at most.
    pub capacity: usize,
    /// Bytes of memory the queue keeps alive at most: each run of queued
    /// messages from one receive batch counts that whole batch (its raw
    /// bytes plus ~600 bytes of bookkeeping per message;
    /// `hepflow_sink_queue_bytes`). The default keeps six sinks' full
    /// queues within ~200 MiB.
    pub max_bytes: usize,
    /// Policy when full (either bound reached).
    pub when_full: WhenFull,
}

/// Smallest accepted `queue.max_bytes`.
pub const MIN_QUEUE_BYTES: usize = 64 * 1024;

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 65536,
            max_bytes: 32 * 1024 * 1024,
            when_full: WhenFull::DropNewest,
        }
    }
}

/// `[sinks.NAME.batch]`: how the engine hands messages to the sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Messages per write at most.
    pub max_events: usize,
    /// How long to wait for a batch to fill before writing what there is
    /// (0 = write at once; under load batches fill by themselves).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// The sink's buffers are flushed at least this often.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 1000,
            max_wait: Duration::ZERO,
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// The engine's part of a sink section; the rest belongs to the plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkCommon {
    /// Plugin type (`file`, `null`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Queue bound and policy.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retry backoff.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The disk spool behind the queue.
    #[serde(default)]
    pub spool: SpoolConfig,
}

/// Keys of a sink section the engine owns.
pub const SINK_COMMON_KEYS: [&str; 5] = ["type", "queue", "batch", "retry", "spool"];

/// A sink: the engine's part and the plugin's own section.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Engine settings.
    pub common: SinkCommon,
    /// The plugin's keys (everything but [`SINK_COMMON_KEYS`]).
    pub plugin: serde_json::Value,
}

/// What a route matches on; every listed condition must hold (an empty
/// list matches anything), and within one list any value may match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteMatch {
    /// Protocol types by name (`sip`, `rtcp`, `log`) or number.
    pub proto: Vec<String>,
    /// Capture agent ids.
    pub capture_id: Vec<u32>,
    /// Capture node names (chunk 0x13).
    pub node: Vec<String>,
    /// Source networks (CIDR).
    pub src_net: Vec<IpNet>,
    /// Destination networks (CIDR).
    pub dst_net: Vec<IpNet>,
    /// SIP request methods (case-insensitive); responses match on their
    /// CSeq method.
    pub sip_method: Vec<String>,
}

/// `[[routes]]`: evaluated in order; the first route that matches decides
/// which sinks get the message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name, for metrics and logs.
    pub name: String,
    /// Conditions.
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,
    /// Sinks that get matching messages (may be empty: drop, counted).
    pub sinks: Vec<String>,
}

/// `[default_route]`: where messages no route matched go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultRoute {
    /// Sinks.
    pub sinks: Vec<String>,
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
fn extract_at<T: serde::de::DeserializeOwned>(fig: &Figment, key: &str) -> Result<T, Vec<String>> {
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
            if let Some(l) = listener_config(&fig, &key, &mut errors) {
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
            if let Some(sink) = sink_config(&key, value, factories, &mut errors) {
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
    check_semantics(&cfg, &declared_sinks, &mut errors);
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn listener_config(fig: &Figment, key: &str, errors: &mut Vec<String>) -> Option<ListenerConfig> {
    let value: serde_json::Value = match extract_at(fig, key) {
        Ok(v) => v,
        Err(e) => {
            errors.extend(e);
            return None;
        }
    };
    let serde_json::Value::Object(mut map) = value else {
        errors.push(format!("{key}: must be a table with `kind` and `bind`"));
        return None;
    };
    let kind = map.remove("kind");
    let rest = serde_json::Value::Object(map);
    let parsed = match kind.as_ref().and_then(|k| k.as_str()) {
        Some("udp") => hepflow_sdk::sink::parse_section(key, &rest).map(ListenerConfig::Udp),
        Some("tcp") => hepflow_sdk::sink::parse_section(key, &rest).map(ListenerConfig::Tcp),
        Some("tls") => hepflow_sdk::sink::parse_section(key, &rest).and_then(|t| {
            crate::ingest::tls::server_config(&t).map_err(|e| format!("{key}: {e}"))?;
            Ok(ListenerConfig::Tls(t))
        }),
        #[cfg(feature = "kafka")]
        Some("kafka") => hepflow_sdk::sink::parse_section(key, &rest).map(ListenerConfig::Kafka),
        #[cfg(not(feature = "kafka"))]
        Some("kafka") => Err(format!(
            "{key}.kind: this hepflow was built without the `kafka` feature; rebuild with default features (or `--features kafka`)"
        )),
        Some(other) => Err(format!(
            "{key}.kind: unknown listener kind `{other}` (known kinds: udp, tcp, tls)"
        )),
        None => Err(format!(
            "{key}.kind: missing; set kind = \"udp\", \"tcp\" or \"tls\""
        )),
    };
    parsed.map_err(|e| errors.push(e)).ok()
}

fn sink_config(
    key: &str,
    value: serde_json::Value,
    factories: &[&dyn SinkFactory],
    errors: &mut Vec<String>,
) -> Option<SinkConfig> {
    let serde_json::Value::Object(map) = value else {
        errors.push(format!("{key}: must be a table with at least `type`"));
        return None;
    };
    let (common, plugin): (serde_json::Map<_, _>, serde_json::Map<_, _>) = map
        .into_iter()
        .partition(|(k, _)| SINK_COMMON_KEYS.contains(&k.as_str()));
    let common: SinkCommon =
        match hepflow_sdk::sink::parse_section(key, &serde_json::Value::Object(common)) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                return None;
            }
        };
    #[cfg(feature = "kafka")]
    let mut plugin = plugin;
    // A kafka sink's librdkafka batching defaults to the engine's batching.
    #[cfg(feature = "kafka")]
    hepflow_kafka::config::engine_batch_defaults(
        &common.kind,
        &mut plugin,
        common.batch.max_events,
        common.batch.max_wait,
    );
    let plugin = serde_json::Value::Object(plugin);
    let Some(factory) = factories.iter().find(|f| f.kind() == common.kind) else {
        let known: Vec<&str> = factories.iter().map(|f| f.kind()).collect();
        errors.push(format!(
            "{key}.type: unknown sink type `{}` (known types: {})",
            common.kind,
            known.join(", ")
        ));
        return None;
    };
    let before = errors.len();
    errors.extend(factory.validate(key, &plugin));
    if common.queue.capacity == 0 {
        errors.push(format!("{key}.queue.capacity: must be at least 1"));
    }
    if common.queue.max_bytes < MIN_QUEUE_BYTES {
        errors.push(format!(
            "{key}.queue.max_bytes: {} is too small; give at least {MIN_QUEUE_BYTES} (64 KiB; default 33554432 = 32 MiB)",
            common.queue.max_bytes
        ));
    }
    if common.batch.max_events == 0 {
        errors.push(format!("{key}.batch.max_events: must be at least 1"));
    }
    errors.extend(common.spool.check(&format!("{key}.spool")));
    errors.extend(common.retry.check(&format!("{key}.retry")));
    (errors.len() == before).then_some(SinkConfig { common, plugin })
}

/// `declared_sinks`: every `[sinks.NAME]` present, valid or not (an invalid
/// one is already reported; routes naming it are not reported again).
fn check_semantics(cfg: &Config, declared_sinks: &[String], errors: &mut Vec<String>) {
    let sink_exists = |s: &str| declared_sinks.iter().any(|d| d == s);
    for (i, r) in cfg.routes.iter().enumerate() {
        for s in &r.sinks {
            if !sink_exists(s) {
                errors.push(format!(
                    "routes[{i}] ({}): sink `{s}` is not defined (define [sinks.{s}] or remove it from the route)",
                    r.name
                ));
            }
        }
        for p in &r.matches.proto {
            if hepflow_sdk::hep::proto_type_from_name(p).is_none() {
                errors.push(format!(
                    "routes[{i}] ({}).match.proto: `{p}` is neither a protocol name (sip, rtcp, log, ...) nor a number 0-255",
                    r.name
                ));
            }
        }
    }
    for s in &cfg.default_route.sinks {
        if !sink_exists(s) {
            errors.push(format!(
                "default_route.sinks: sink `{s}` is not defined (define [sinks.{s}] or remove it)"
            ));
        }
    }
    if cfg.sinks.len() > crate::route::MAX_SINKS {
        errors.push(format!(
            "sinks: {} sinks configured, at most {} are supported",
            cfg.sinks.len(),
            crate::route::MAX_SINKS
        ));
    }
    let mut spool_dirs: BTreeMap<std::path::PathBuf, &str> = BTreeMap::new();
    for (name, s) in &cfg.sinks {
        if s.common.spool.mode == SpoolMode::Off {
            continue;
        }
        let dir = s.common.spool.dir_for(&cfg.node.data_dir, name);
        if let Some(other) = spool_dirs.insert(dir.clone(), name) {
            errors.push(format!(
                "sinks.{name}.spool.dir: {} is also the spool of sinks.{other}; give each sink its own directory",
                dir.display()
            ));
        }
    }
    let mut binds: BTreeMap<(bool, SocketAddr), &str> = BTreeMap::new();
    for (name, l) in &cfg.listeners {
        #[cfg(feature = "kafka")]
        if let ListenerConfig::Kafka(k) = l {
            errors.extend(k.validate(&format!("listeners.{name}")));
            continue;
        }
        let is_udp = matches!(l, ListenerConfig::Udp(_));
        if let Some(other) = binds.insert((is_udp, l.bind()), name) {
            errors.push(format!(
                "listeners.{name}.bind: {} is also bound by listeners.{other}",
                l.bind()
            ));
        }
        match l {
            ListenerConfig::Udp(u) => {
                if u.batch_size == 0 || u.batch_size > 1024 {
                    errors.push(format!(
                        "listeners.{name}.batch_size: must be between 1 and 1024"
                    ));
                }
                if u.max_datagram_bytes < 64 || u.max_datagram_bytes > 65535 {
                    errors.push(format!(
                        "listeners.{name}.max_datagram_bytes: must be between 64 and 65535"
                    ));
                }
            }
            ListenerConfig::Tls(TlsListenerConfig {
                max_connections,
                max_message_bytes,
                ..
            }) => {
                if *max_connections == 0 {
                    errors.push(format!(
                        "listeners.{name}.max_connections: must be at least 1"
                    ));
                }
                if *max_message_bytes < 6 || *max_message_bytes > 65535 {
                    errors.push(format!(
                        "listeners.{name}.max_message_bytes: must be between 6 and 65535 (HEP3's own limit)"
                    ));
                }
            }
            ListenerConfig::Tcp(t) => {
                if t.max_connections == 0 {
                    errors.push(format!(
                        "listeners.{name}.max_connections: must be at least 1"
                    ));
                }
                if t.max_message_bytes < 6 || t.max_message_bytes > 65535 {
                    errors.push(format!(
                        "listeners.{name}.max_message_bytes: must be between 6 and 65535 (HEP3's own limit)"
                    ));
                }
            }
            #[cfg(feature = "kafka")]
            ListenerConfig::Kafka(_) => {}
        }
        if let Some(k) = &l.auth().auth_key {
            if k.0.is_empty() {
                errors.push(format!(
                    "listeners.{name}.auth_key: empty; remove it or set the key agents send"
                ));
            }
        }
    }
}

#[cfg(test)]
mod capture_id_compat_tests {
    use super::CaptureIdCompat;

    #[test]
    fn the_sngrep_rule_reads_the_upper_half_only_when_the_lower_is_zero() {
        let r = CaptureIdCompat::Sngrep;
        assert_eq!(
            r.rewrite(u32::from_be_bytes([0x07, 0xd2, 0, 0])),
            Some(2002)
        );
        assert_eq!(r.rewrite(u32::from_be_bytes([0x00, 0x65, 0, 0])), Some(101));
        assert_eq!(r.rewrite(0xffff_0000), Some(0xffff));
        // Ids sent as the spec says are left alone, and so is 0.
        for id in [0, 1, 2001, 0xffff, 0x0001_0001, u32::MAX] {
            assert_eq!(r.rewrite(id), None, "{id}");
        }
        // The documented hazard: a genuine multiple of 65536.
        assert_eq!(r.rewrite(131_072), Some(2));
        assert_eq!(CaptureIdCompat::None.rewrite(0x07d2_0000), None);
    }
}
