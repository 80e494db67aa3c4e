//! The `hep` sink's configuration section and its checks. The doc comments
//! of [`HepSinkConfig`] and the types it holds are the user documentation
//! of the keys.

use crate::target::{Scheme, TargetUrl};
use hepflow_sdk::delivery::{RetryConfig, WhenFull};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// Largest `max_write_messages` (the kernel's `UIO_MAXIOV` bounds one
/// `sendmmsg` call).
pub const MAX_WRITE_MESSAGES: usize = 1024;

/// Largest `max_write_bytes` (16 MiB).
pub const MAX_WRITE_BYTES: usize = 16 << 20;

/// Largest `queue_capacity` of one target (16 Mi messages).
pub const MAX_QUEUE_CAPACITY: usize = 16 << 20;

/// Smallest `queue_max_bytes` of one target (64 KiB: one largest message).
pub const MIN_QUEUE_BYTES: usize = 64 << 10;

/// Largest `queue_max_bytes` of one target (16 GiB).
pub const MAX_QUEUE_BYTES: usize = 16 << 30;

/// Configuration of a `type = "hep"` sink: copies of every routed message
/// forwarded as HEP to one or more other HEP nodes (HOMER, heplify-server,
/// another hepflow, a lawful-intercept box).
///
/// ```toml
/// [sinks.relay]
/// type = "hep"
/// targets = ["udp://10.0.0.5:9060", "tcp://homer-b:9061"]
/// mode = "broadcast"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HepSinkConfig {
    /// Where to forward. Each entry is a URL string `udp://HOST:PORT`,
    /// `tcp://HOST:PORT` or `tls://HOST:PORT` (IPv6 in brackets:
    /// `tcp://[2001:db8::5]:9061`; host names are resolved at every
    /// connect), or a table `{ url = "...", when_full = "...",
    /// queue_capacity = N, queue_max_bytes = N, tls = { ... } }` whose keys
    /// override the sink's own settings of the same name for that target.
    /// Each target has its own bounded queue, connection and metrics
    /// (labelled with the URL). At least one; no URL twice.
    pub targets: Vec<TargetSpec>,

    /// How messages are spread over the targets:
    /// - `broadcast` (default): every target gets every message.
    /// - `hash`: the call key (SIP Call-ID, else the HEP correlation id,
    ///   else the source/destination address pair) picks one target by
    ///   rendezvous hashing, so every message of a call reaches the same
    ///   node. While that target is down, its calls go to their next
    ///   choice (and what was queued for it moves there too); they come
    ///   back when it is up again. The choice depends only on the key and
    ///   the target URLs, not on their order, so several hepflow nodes
    ///   with the same targets send a call to the same node.
    /// - `round_robin`: each message to the next target that is up.
    pub mode: Mode,

    /// What is sent:
    /// - `passthrough` (default): the bytes exactly as received. HEPv1/v2
    ///   cannot be framed on a stream, so for `tcp`/`tls` targets a v1/v2
    ///   message is converted to HEPv3 with the same fields.
    /// - `hepv3`: every message re-encoded as HEPv3 (v1/v2 converted),
    ///   with `set_node_name`, `set_capture_id`, `set_auth_key` or
    ///   `strip_auth_key` applied.
    pub encoding: Encoding,

    /// `hepv3` only: set the capture node name (chunk 0x13) of every
    /// forwarded message, usually to this node's `node.name`.
    pub set_node_name: Option<String>,

    /// `hepv3` only: set the capture agent id (chunk 0x0c) of every
    /// forwarded message.
    pub set_capture_id: Option<u32>,

    /// `hepv3` only: set the authentication key (chunk 0x0e) the receiver
    /// expects. A secret: never logged, never in a metric or document.
    pub set_auth_key: Option<Secret>,

    /// `hepv3` only: remove the authentication key the sender put in
    /// (do not hand one site's key to another). Default `false`.
    pub strip_auth_key: bool,

    /// Drop (and count, `hepflow_hep_dropped_total{reason="loop"}`)
    /// messages whose capture node name (chunk 0x13) is this node's
    /// `node.name` or `set_node_name`: they have already been through
    /// this node. Default `true`.
    pub loop_protection: bool,

    /// When the sink reports itself ready (`/ready`): `any` (default) while
    /// at least one target is connected, `all` only while every target is.
    pub health: HealthPolicy,

    /// Messages each target's queue holds at most (default 10000).
    pub queue_capacity: usize,

    /// Memory each target's queue keeps alive at most (default 33554432 =
    /// 32 MiB; 65536 to 17179869184): the receive batches of the queued
    /// messages, each charged once per run of messages from it (as the
    /// engine's queues count). A message that fits neither bound goes to
    /// the target's spool when the sink has one, else `when_full`
    /// applies; the first message into an empty queue always fits.
    pub queue_max_bytes: usize,

    /// What happens to a message for a target whose queue is full:
    /// - `drop_newest` (default): the message is dropped for that target
    ///   and counted (`hepflow_hep_target_dropped_total{reason="queue_full"}`);
    ///   the other targets are not slowed.
    /// - `block`: the sink waits for room. Lossless for that target, but
    ///   while it waits no target of this sink gets new messages, and the
    ///   sink's own queue (`[sinks.NAME.queue]`) fills and applies its
    ///   policy. In `hash` and `round_robin` mode a target that is down
    ///   gets no new messages (they go to the next choice), so `block`
    ///   only waits while every target is down or slow.
    pub when_full: TargetWhenFull,

    /// TLS settings for `tls://` targets (a target's own `tls` table
    /// replaces this one for that target).
    pub tls: TlsConfig,

    /// Give up a connect (TCP handshake plus TLS handshake) after this
    /// long. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,

    /// A write that does not complete in this long counts as a dead
    /// connection: it is closed and reconnected, and the batch is sent
    /// again. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,

    /// Deprecated: write `[sinks.NAME.retry] initial_backoff` instead.
    /// The first delay before reconnecting a target that failed or was
    /// lost comes from `[sinks.NAME.retry]` when set, else from this key,
    /// else `100ms`; it doubles per failed attempt up to the cap, each
    /// delay jittered to 50-100 %.
    #[serde(with = "humantime_serde")]
    pub reconnect_initial_backoff: Option<Duration>,

    /// Deprecated: write `[sinks.NAME.retry] max_backoff` instead. Cap of
    /// the reconnect delay (default `10s`).
    #[serde(with = "humantime_serde")]
    pub reconnect_max_backoff: Option<Duration>,

    /// At most this many messages per write: datagrams per `sendmmsg`
    /// call (UDP), messages per stream write (TCP/TLS). 1 to 1024,
    /// default 64.
    pub max_write_messages: usize,

    /// At most this many bytes per stream write (a single larger message
    /// is still written, alone). Default 65536.
    pub max_write_bytes: usize,

    /// At shutdown, how long the targets' queues may drain after the last
    /// batch; what is left is counted
    /// (`hepflow_hep_target_dropped_total{reason="shutdown"}`). Keep it
    /// below `shutdown.grace_period`. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for HepSinkConfig {
    fn default() -> Self {
        HepSinkConfig {
            targets: Vec::new(),
            mode: Mode::Broadcast,
            encoding: Encoding::Passthrough,
            set_node_name: None,
            set_capture_id: None,
            set_auth_key: None,
            strip_auth_key: false,
            loop_protection: true,
            health: HealthPolicy::Any,
            queue_capacity: 10_000,
            queue_max_bytes: 32 << 20,
            when_full: TargetWhenFull::DropNewest,
            tls: TlsConfig::default(),
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            reconnect_initial_backoff: None,
            reconnect_max_backoff: None,
            max_write_messages: 64,
            max_write_bytes: 65536,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// How messages are spread over the targets (see [`HepSinkConfig::mode`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every target gets every message.
    #[default]
    Broadcast,
    /// One target per call, by rendezvous hashing of the call key.
    Hash,
    /// Each message to the next target that is up.
    RoundRobin,
}

/// What is sent (see [`HepSinkConfig::encoding`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The received bytes unchanged.
    #[default]
    Passthrough,
    /// Re-encoded as HEPv3.
    Hepv3,
}

/// When the sink is ready (see [`HepSinkConfig::health`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthPolicy {
    /// At least one target connected.
    #[default]
    Any,
    /// Every target connected.
    All,
}

/// A target queue's policy when full (see [`HepSinkConfig::when_full`]):
/// the SDK's [`WhenFull`], `block` or `drop_newest` (a target queue does
/// not drop its oldest messages).
pub type TargetWhenFull = WhenFull;

/// The policies a target queue supports.
pub const TARGET_WHEN_FULL: [WhenFull; 2] = [WhenFull::DropNewest, WhenFull::Block];

/// TLS client settings of `tls://` targets (rustls).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file of the CA certificate(s) the target's server certificate
    /// must chain to. Required for `tls://` targets (for the system trust
    /// store give `/etc/ssl/certs/ca-certificates.crt`).
    pub ca_file: Option<PathBuf>,
    /// PEM file of this node's client certificate chain, for targets that
    /// require client authentication (together with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or
    /// SEC1).
    pub key_file: Option<PathBuf>,
    /// Name the server certificate must carry; default the URL's host.
    pub server_name: Option<String>,
}

/// One entry of `targets`: a URL string, or a table with a URL and
/// per-target overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// `udp://`, `tcp://` or `tls://` `HOST:PORT`.
    pub url: String,
    /// Overrides the sink's `when_full`.
    pub when_full: Option<TargetWhenFull>,
    /// Overrides the sink's `queue_capacity`.
    pub queue_capacity: Option<usize>,
    /// Overrides the sink's `queue_max_bytes`.
    pub queue_max_bytes: Option<usize>,
    /// Replaces the sink's `tls` table.
    pub tls: Option<TlsConfig>,
}

/// The table form of a target.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetTable {
    url: String,
    #[serde(default)]
    when_full: Option<TargetWhenFull>,
    #[serde(default)]
    queue_capacity: Option<usize>,
    #[serde(default)]
    queue_max_bytes: Option<usize>,
    #[serde(default)]
    tls: Option<TlsConfig>,
}

impl<'de> Deserialize<'de> for TargetSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TargetSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a target URL such as \"udp://10.0.0.5:9060\", or a table with `url`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TargetSpec, E> {
                Ok(TargetSpec {
                    url: v.to_string(),
                    when_full: None,
                    queue_capacity: None,
                    queue_max_bytes: None,
                    tls: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TargetSpec, A::Error> {
                let t = TargetTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TargetSpec {
                    url: t.url,
                    when_full: t.when_full,
                    queue_capacity: t.queue_capacity,
                    queue_max_bytes: t.queue_max_bytes,
                    tls: t.tls,
                })
            }
        }
        d.deserialize_any(V)
    }
}

pub use hepflow_sdk::secret::Secret;

/// One target with every setting resolved (the sink's defaults applied).
#[derive(Debug, Clone)]
pub struct ResolvedTarget {
    /// Parsed URL.
    pub url: TargetUrl,
    /// Queue bound in messages.
    pub queue_capacity: usize,
    /// Queue bound in bytes.
    pub queue_max_bytes: usize,
    /// Queue policy.
    pub when_full: TargetWhenFull,
    /// TLS settings (`tls://` only).
    pub tls: Option<TlsConfig>,
}

/// Reconnect timing without `[sinks.NAME.retry]` or the older keys.
pub fn default_reconnect() -> RetryConfig {
    RetryConfig {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(10),
    }
}

impl HepSinkConfig {
    /// The reconnect timing: `retry` (the sink's `[sinks.NAME.retry]`
    /// when set), else the older `reconnect_*` keys, else
    /// [`default_reconnect`].
    pub fn reconnect(&self, retry: Option<&RetryConfig>, path: &str) -> RetryConfig {
        RetryConfig::for_plugin(
            retry,
            path,
            [
                ("reconnect_initial_backoff", self.reconnect_initial_backoff),
                ("reconnect_max_backoff", self.reconnect_max_backoff),
            ],
            default_reconnect(),
        )
    }

    /// Every problem of the section, each naming its full key path under
    /// `path` (`sinks.NAME`) and what to do. Checks values only (files
    /// are read by [`crate::tls::client_config`]).
    pub fn check(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.targets.is_empty() {
            p.push(format!(
                "{path}.targets: is empty: give at least one target such as \"udp://10.0.0.5:9060\", \"tcp://homer:9061\" or \"tls://homer:9062\""
            ));
        }
        p.extend(
            self.when_full
                .check_supported(&format!("{path}.when_full"), &TARGET_WHEN_FULL),
        );
        let mut seen = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let key = format!("{path}.targets[{i}]");
            if let Some(w) = t.when_full {
                p.extend(w.check_supported(&format!("{key}.when_full"), &TARGET_WHEN_FULL));
            }
            let url = match t.url.parse::<TargetUrl>() {
                Ok(u) => u,
                Err(e) => {
                    p.push(format!("{key}: {e}"));
                    continue;
                }
            };
            if !seen.insert(url.to_string()) {
                p.push(format!(
                    "{key}: {url} is listed twice: give each target once"
                ));
            }
            if t.queue_capacity == Some(0)
                || t.queue_capacity.is_some_and(|c| c > MAX_QUEUE_CAPACITY)
            {
                p.push(format!(
                    "{key}.queue_capacity: must be 1 to {MAX_QUEUE_CAPACITY}"
                ));
            }
            if let Some(b) = t.queue_max_bytes {
                check_queue_bytes(b, &format!("{key}.queue_max_bytes"), &mut p);
            }
            match (url.scheme, &t.tls) {
                (Scheme::Tls, _) => {
                    let tls = t.tls.as_ref().unwrap_or(&self.tls);
                    let tkey = if t.tls.is_some() {
                        format!("{key}.tls")
                    } else {
                        format!("{path}.tls")
                    };
                    check_tls(tls, &tkey, &url, &mut p);
                }
                (_, Some(_)) => p.push(format!(
                    "{key}.tls: only tls:// targets use TLS settings; remove it or use tls://{}",
                    url.authority()
                )),
                _ => {}
            }
        }
        if self.queue_capacity == 0 || self.queue_capacity > MAX_QUEUE_CAPACITY {
            p.push(format!(
                "{path}.queue_capacity: must be 1 to {MAX_QUEUE_CAPACITY}"
            ));
        }
        check_queue_bytes(
            self.queue_max_bytes,
            &format!("{path}.queue_max_bytes"),
            &mut p,
        );
        if self.max_write_messages == 0 || self.max_write_messages > MAX_WRITE_MESSAGES {
            p.push(format!(
                "{path}.max_write_messages: must be 1 to {MAX_WRITE_MESSAGES}"
            ));
        }
        if self.max_write_bytes == 0 || self.max_write_bytes > MAX_WRITE_BYTES {
            p.push(format!(
                "{path}.max_write_bytes: must be 1 to {MAX_WRITE_BYTES}"
            ));
        }
        for (k, d) in [
            ("connect_timeout", self.connect_timeout),
            ("write_timeout", self.write_timeout),
            ("drain_timeout", self.drain_timeout),
        ]
        .into_iter()
        .chain(
            [
                ("reconnect_initial_backoff", self.reconnect_initial_backoff),
                ("reconnect_max_backoff", self.reconnect_max_backoff),
            ]
            .into_iter()
            .filter_map(|(k, d)| Some((k, d?))),
        ) {
            if d.is_zero() {
                p.push(format!("{path}.{k}: must be longer than 0s"));
            }
        }
        let d = default_reconnect();
        let initial = self.reconnect_initial_backoff.unwrap_or(d.initial_backoff);
        if initial > self.reconnect_max_backoff.unwrap_or(d.max_backoff) {
            p.push(format!(
                "{path}.reconnect_initial_backoff: is longer than reconnect_max_backoff; make it shorter or raise the cap"
            ));
        }
        if self.encoding == Encoding::Passthrough {
            let rewrites = [
                ("set_node_name", self.set_node_name.is_some()),
                ("set_capture_id", self.set_capture_id.is_some()),
                ("set_auth_key", self.set_auth_key.is_some()),
                ("strip_auth_key", self.strip_auth_key),
            ];
            for (k, set) in rewrites {
                if set {
                    p.push(format!(
                        "{path}.{k}: needs encoding = \"hepv3\" (encoding = \"passthrough\" forwards the received bytes unchanged)"
                    ));
                }
            }
        }
        if self.set_auth_key.is_some() && self.strip_auth_key {
            p.push(format!(
                "{path}.strip_auth_key: cannot be combined with set_auth_key (which replaces the key anyway); keep one"
            ));
        }
        if let Some(n) = &self.set_node_name {
            if n.is_empty() || n.len() > 1024 {
                p.push(format!(
                    "{path}.set_node_name: must be 1 to 1024 bytes long"
                ));
            }
        }
        if let Some(k) = &self.set_auth_key {
            if k.expose().is_empty() || k.expose().len() > 1024 {
                // The value itself is never echoed.
                p.push(format!("{path}.set_auth_key: must be 1 to 1024 bytes long"));
            }
        }
        p
    }

    /// The targets with the sink's defaults applied. Call after
    /// [`Self::check`] found nothing (unparsable URLs are skipped).
    pub fn resolved_targets(&self) -> Vec<ResolvedTarget> {
        self.targets
            .iter()
            .filter_map(|t| {
                let url: TargetUrl = t.url.parse().ok()?;
                let tls = (url.scheme == Scheme::Tls)
                    .then(|| t.tls.clone().unwrap_or_else(|| self.tls.clone()));
                Some(ResolvedTarget {
                    url,
                    queue_capacity: t.queue_capacity.unwrap_or(self.queue_capacity),
                    queue_max_bytes: t.queue_max_bytes.unwrap_or(self.queue_max_bytes),
                    when_full: t.when_full.unwrap_or(self.when_full),
                    tls,
                })
            })
            .collect()
    }
}

fn check_queue_bytes(bytes: usize, key: &str, p: &mut Vec<String>) {
    if !(MIN_QUEUE_BYTES..=MAX_QUEUE_BYTES).contains(&bytes) {
        p.push(format!(
            "{key}: {bytes} is out of range: give {MIN_QUEUE_BYTES} (64 KiB) to {MAX_QUEUE_BYTES} (16 GiB); default 33554432 (32 MiB)"
        ));
    }
}

fn check_tls(tls: &TlsConfig, key: &str, url: &TargetUrl, p: &mut Vec<String>) {
    if tls.ca_file.is_none() {
        p.push(format!(
            "{key}.ca_file: {url} needs the CA certificate(s) to verify the server: give a PEM file (the system trust store is /etc/ssl/certs/ca-certificates.crt on Debian)"
        ));
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => p.push(format!(
            "{key}.key_file: cert_file is set without key_file: give the client certificate's private key"
        )),
        (None, Some(_)) => p.push(format!(
            "{key}.cert_file: key_file is set without cert_file: give the client certificate"
        )),
        _ => {}
    }
    if let Some(name) = &tls.server_name {
        if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
            p.push(format!(
                "{key}.server_name: {name:?} is not a valid DNS name or IP address"
            ));
        }
    }
}
