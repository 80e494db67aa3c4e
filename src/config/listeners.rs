//! `[listeners.NAME]`: the listener kinds (udp, tcp, tls, kafka), their
//! auth settings and value checks, and how a section is read by its
//! `kind`.

use super::{extract_at, Secret};
use figment::Figment;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

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
    /// The `kind` value: `udp`, `tcp`, `tls` or `kafka`.
    pub fn kind(&self) -> &'static str {
        match self {
            ListenerConfig::Udp(_) => "udp",
            ListenerConfig::Tcp(_) => "tcp",
            ListenerConfig::Tls(_) => "tls",
            #[cfg(feature = "kafka")]
            ListenerConfig::Kafka(_) => "kafka",
        }
    }

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

/// Read `[listeners.NAME]` at `key` by its `kind`; problems go to `errors`.
pub(super) fn listener_config(
    fig: &Figment,
    key: &str,
    errors: &mut Vec<String>,
) -> Option<ListenerConfig> {
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
        Some("tls") => hepflow_sdk::sink::parse_section(key, &rest).map(ListenerConfig::Tls),
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
