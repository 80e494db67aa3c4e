//! The `influxdb` sink's configuration section and its value checks. The
//! doc comments of [`InfluxSinkConfig`] are the user documentation of the
//! keys.

use crate::schema::{MEASUREMENTS, OPTIONAL_TAGS};
use hepflow_sdk::delivery::{RetryConfig, WhenFull};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub use hepflow_sdk::secret::Secret;

/// Which write API the sink talks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// InfluxDB 1.x: `POST /write?db=&rp=&precision=ns`, health `/ping`.
    V1,
    /// InfluxDB 2.x / 3.x and compatible (VictoriaMetrics):
    /// `POST /api/v2/write?org=&bucket=&precision=ns`, health `/health`.
    V2,
    /// No InfluxDB: the aggregates only appear on hepflow's `/metrics`
    /// (for Prometheus-only setups; `prometheus` must stay on).
    None,
}

/// How the v1 user and password are sent (always as a header, never in
/// the URL).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// `Authorization: Basic base64(user:password)` (every 1.x version).
    #[default]
    Basic,
    /// `Authorization: Token user:password` (InfluxDB 1.8+, and 2.x's v1
    /// compatibility API).
    Token,
}

/// What the sink writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Counters per interval (low cardinality, the default).
    #[default]
    Aggregate,
    /// One `hep_packets` point per message and no aggregates: only for
    /// low-volume setups.
    Raw,
    /// Both.
    Both,
}

impl Mode {
    /// Whether aggregates are written.
    pub fn aggregates(self) -> bool {
        matches!(self, Mode::Aggregate | Mode::Both)
    }
    /// Whether raw points are written.
    pub fn raw(self) -> bool {
        matches!(self, Mode::Raw | Mode::Both)
    }
}

/// An optional tag (see `tags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptionalTag {
    /// The hepflow listener the message arrived on.
    Listener,
    /// The HEP capture agent id (chunk 0x0c), even when a node name is
    /// present.
    CaptureId,
    /// The HEP version (1, 2 or 3).
    HepVersion,
    /// The source address's network (`net_prefix_v4` / `net_prefix_v6`).
    SrcNet,
    /// The destination address's network.
    DstNet,
    /// This hepflow's `node.name` (for several hubs writing to one
    /// database).
    HepflowNode,
}

impl OptionalTag {
    /// The tag key.
    pub fn key(self) -> &'static str {
        match self {
            OptionalTag::Listener => "listener",
            OptionalTag::CaptureId => "capture_id",
            OptionalTag::HepVersion => "hep_version",
            OptionalTag::SrcNet => "src_net",
            OptionalTag::DstNet => "dst_net",
            OptionalTag::HepflowNode => "hepflow_node",
        }
    }
}

/// What to do when the pending-points buffer is full: the SDK's
/// [`WhenFull`], `drop_oldest` (dashboards keep showing the present; the
/// default) or `drop_newest` (keep the start of an outage). `block` is
/// refused: aggregation must not stall the sink.
pub type WhenPendingFull = WhenFull;

fn default_when_pending_full() -> WhenFull {
    WhenFull::DropOldest
}

/// Configuration of a `type = "influxdb"` sink: HEP, SIP and RTCP
/// aggregates (and optionally one point per message) written to InfluxDB
/// as line protocol, and the same aggregates on hepflow's `/metrics`.
///
/// ```toml
/// [sinks.metrics]
/// type = "influxdb"
/// api = "v1"
/// url = "http://127.0.0.1:8086"
/// database = "hep"
/// username = "hepflow"
/// password = "secret"
/// interval = "10s"
/// [sinks.metrics.extra_tags]
/// region = "eu1"
/// ```
///
/// Measurements (tags; fields): `hep_messages` (node, proto, transport;
/// count, bytes), `sip_requests` (method, node; count), `sip_responses`
/// (code, class, method = CSeq method, node; count), `rtcp` (node;
/// reports, report_blocks, jitter_mean, jitter_max, packets_lost_max,
/// fraction_lost_mean, fraction_lost_max, mos_reports, mos_mean, mos_min),
/// `hep_decode_errors` (reason, listener; count), and in raw mode
/// `hep_packets`. `node` is the HEP capture node name (chunk 0x13) when the
/// message carries one, else the capture agent id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxSinkConfig {
    /// `"v1"` (InfluxDB 1.x `/write`), `"v2"` (`/api/v2/write`: InfluxDB
    /// 2.x/3.x, VictoriaMetrics) or `"none"` (aggregates on `/metrics`
    /// only). Required.
    pub api: Api,

    /// Base URL of the server, `http://` or `https://` (rustls, the
    /// system's web PKI roots), e.g. `"http://127.0.0.1:8086"`. Required
    /// unless `api = "none"`. A path is kept as a prefix (for a reverse
    /// proxy). Credentials go in `username`/`password`/`token`, never in
    /// the URL.
    #[serde(default)]
    pub url: Option<String>,

    /// v1: the database. Required with `api = "v1"`.
    #[serde(default)]
    pub database: Option<String>,
    /// v1: the retention policy (`rp=`); unset uses the database's
    /// default.
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// v1: the user (with `password`), sent in the `Authorization` header.
    #[serde(default)]
    pub username: Option<String>,
    /// v1: the password. Never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// v1: `"basic"` (default) or `"token"`: how user and password are
    /// sent.
    #[serde(default)]
    pub auth_scheme: AuthScheme,
    /// v1: run `CREATE DATABASE` (idempotent) before the first write and
    /// whenever the server answers "database not found". Needs an admin
    /// user when authentication is on. Default `false`: the operator
    /// creates the database (usually with its retention policies); until
    /// then points wait in the pending buffer and the sink is unready.
    #[serde(default)]
    pub create_database: bool,

    /// v2: the organization (name or id). Required with `api = "v2"`.
    #[serde(default)]
    pub org: Option<String>,
    /// v2: the bucket. Required with `api = "v2"`.
    #[serde(default)]
    pub bucket: Option<String>,
    /// v2: the API token (`Authorization: Token ...`). Never logged.
    #[serde(default)]
    pub token: Option<Secret>,

    /// Aggregation interval. Counters cover one interval; each point is
    /// stamped (nanoseconds) with the START of its interval, intervals
    /// being aligned to multiples of `interval` since the Unix epoch
    /// (with 10s: :00, :10, :20, ...). Messages are bucketed by the time
    /// hepflow received them. Between 1s and 1h; default `"10s"`.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,

    /// How long after an interval ends its points are written, so that
    /// messages received just before the end but still queued are
    /// counted in it. A message processed after its interval was
    /// written counts in the oldest interval still open. Default `"1s"`,
    /// at most `interval`.
    #[serde(default = "default_lateness", with = "humantime_serde")]
    pub lateness: Duration,

    /// `"aggregate"` (default), `"raw"` (one `hep_packets` point per
    /// message, no aggregates: low-volume setups only; Call-ID and
    /// addresses are fields there, never tags) or `"both"`. The
    /// Prometheus counters are kept in every mode; the RTCP gauges need
    /// the aggregates.
    #[serde(default)]
    pub mode: Mode,

    /// Optional tags added to `hep_messages`, `sip_requests`,
    /// `sip_responses`, `rtcp` and `hep_packets` (and as labels to their
    /// Prometheus series): any of `"listener"`, `"capture_id"`,
    /// `"hep_version"`, `"src_net"`, `"dst_net"`, `"hepflow_node"`.
    /// Default none: every tag multiplies the number of series.
    #[serde(default)]
    pub tags: Vec<OptionalTag>,
    /// Prefix length of `src_net`/`dst_net` for IPv4 addresses (0-32).
    /// Default 24.
    #[serde(default = "default_prefix_v4")]
    pub net_prefix_v4: u8,
    /// Prefix length of `src_net`/`dst_net` for IPv6 addresses (0-128).
    /// Default 64.
    #[serde(default = "default_prefix_v6")]
    pub net_prefix_v6: u8,

    /// Static tags added to every point, e.g. `{ region = "eu1" }`. Not
    /// added to the Prometheus series (use Prometheus' external labels).
    #[serde(default)]
    pub extra_tags: BTreeMap<String, String>,

    /// Most distinct tag sets per measurement per interval, and per
    /// Prometheus family since start. Beyond it, further tag sets are
    /// counted under tag values `"_other"` and in
    /// `hepflow_influxdb_series_overflow_total`. Default 10000.
    #[serde(default = "default_max_series")]
    pub max_series: usize,

    /// Expose the aggregates on `/metrics` (`hepflow_sip_requests_total`,
    /// ...). Default `true`. When several influxdb sinks have it on, only
    /// the first one's series are exposed (the others log a warning).
    #[serde(default = "default_true")]
    pub prometheus: bool,

    /// Compress request bodies with gzip. Default `true`.
    #[serde(default = "default_true")]
    pub gzip: bool,

    /// Timeout of one HTTP request (connect included). Default `"10s"`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,

    /// Most points per write request. Default 5000.
    #[serde(default = "default_max_points_per_request")]
    pub max_points_per_request: usize,

    /// Bound of the pending-points buffer in memory: points waiting to be
    /// written, including while the server is down. Beyond it points go
    /// to the sink's spool when it has one (`[sinks.NAME.spool]`);
    /// without one they are dropped (see `when_pending_full`) and counted
    /// in `hepflow_influxdb_points_dropped_total{reason="buffer_full"}`.
    /// Default 100000.
    #[serde(default = "default_max_pending_points")]
    pub max_pending_points: usize,

    /// `"drop_oldest"` (default) or `"drop_newest"`.
    #[serde(default = "default_when_pending_full")]
    pub when_pending_full: WhenPendingFull,

    /// Deprecated: write `[sinks.NAME.retry] initial_backoff` instead.
    /// The first delay after a failed write (connection error, 408, 429,
    /// 5xx, 401/403/404) comes from `[sinks.NAME.retry]` when set, else
    /// from this key, else `"500ms"`; doubled per failure up to the cap,
    /// each delay jittered to 50-100 %. A 429/503 `Retry-After` is
    /// honoured up to the cap.
    #[serde(default, with = "humantime_serde")]
    pub backoff_initial: Option<Duration>,
    /// Deprecated: write `[sinks.NAME.retry] max_backoff` instead. Cap of
    /// the backoff (default `"30s"`).
    #[serde(default, with = "humantime_serde")]
    pub backoff_max: Option<Duration>,

    /// How often the server's health is checked (`/ping` for v1,
    /// `/health` for v2); the result is the sink's readiness on `/ready`.
    /// Default `"10s"`.
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub health_interval: Duration,

    /// At shutdown, how long to keep trying to write the remaining points
    /// (keep it below `shutdown.grace_period`); what is left is counted
    /// as dropped with reason `shutdown`. Default `"5s"`.
    #[serde(default = "default_close_timeout", with = "humantime_serde")]
    pub close_timeout: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_lateness() -> Duration {
    Duration::from_secs(1)
}
fn default_prefix_v4() -> u8 {
    24
}
fn default_prefix_v6() -> u8 {
    64
}
fn default_max_series() -> usize {
    10_000
}
fn default_true() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_points_per_request() -> usize {
    5000
}
fn default_max_pending_points() -> usize {
    100_000
}
/// The write retry timing without `[sinks.NAME.retry]` or the older keys.
pub fn default_retry() -> RetryConfig {
    RetryConfig {
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(30),
    }
}
fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_close_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Largest `max_points_per_request`.
pub const MAX_POINTS_PER_REQUEST: usize = 1_000_000;
/// Largest `max_pending_points` (at a few hundred bytes a point, ~1 GB).
pub const MAX_PENDING_POINTS: usize = 10_000_000;
/// Largest `max_series`.
pub const MAX_SERIES: usize = 1_000_000;

fn nonempty(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.trim().is_empty())
}

impl InfluxSinkConfig {
    /// Check values serde cannot: every problem, each naming the key's
    /// full path under `path` (`sinks.NAME`) and what to do.
    pub fn check(&self, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        errors.extend(self.when_pending_full.check_supported(
            &format!("{path}.when_pending_full"),
            &[WhenFull::DropOldest, WhenFull::DropNewest],
        ));
        let mut err = |key: &str, msg: String| errors.push(format!("{path}.{key}: {msg}"));

        match self.api {
            Api::None => {
                for (key, set) in [
                    ("url", self.url.is_some()),
                    ("database", self.database.is_some()),
                    ("org", self.org.is_some()),
                    ("bucket", self.bucket.is_some()),
                    ("token", self.token.is_some()),
                    ("username", self.username.is_some()),
                    ("password", self.password.is_some()),
                ] {
                    if set {
                        err(
                            key,
                            "is set but api = \"none\" writes nowhere: set api = \"v1\" or \"v2\", or remove the key".into(),
                        );
                    }
                }
                if !self.prometheus {
                    err(
                        "prometheus",
                        "is false and api = \"none\": the sink would produce nothing; set prometheus = true or choose an api".into(),
                    );
                }
                if self.mode.raw() {
                    err(
                        "mode",
                        "raw points need an InfluxDB: with api = \"none\" only mode = \"aggregate\" makes sense".into(),
                    );
                }
            }
            Api::V1 | Api::V2 => match self.url.as_deref() {
                None | Some("") => err(
                    "url",
                    "is missing: give the server's base URL, e.g. \"http://127.0.0.1:8086\"".into(),
                ),
                Some(u) => {
                    if let Err(e) = check_url(u) {
                        err("url", e);
                    }
                }
            },
        }
        if self.api == Api::V1 {
            if !nonempty(&self.database) {
                err(
                    "database",
                    "is missing: give the InfluxDB database to write to (api = \"v1\")".into(),
                );
            }
            for (key, set) in [
                ("org", self.org.is_some()),
                ("bucket", self.bucket.is_some()),
                ("token", self.token.is_some()),
            ] {
                if set {
                    err(
                        key,
                        "belongs to api = \"v2\": remove it, or set api = \"v2\"".into(),
                    );
                }
            }
            if self.password.is_some() && !nonempty(&self.username) {
                err(
                    "password",
                    "is set without username: give the user too".into(),
                );
            }
            if self.retention_policy.as_deref() == Some("") {
                err(
                    "retention_policy",
                    "is empty: remove the key to use the database's default".into(),
                );
            }
        }
        if self.api == Api::V2 {
            if !nonempty(&self.org) {
                err(
                    "org",
                    "is missing: give the organization (name or id) (api = \"v2\")".into(),
                );
            }
            if !nonempty(&self.bucket) {
                err(
                    "bucket",
                    "is missing: give the bucket to write to (api = \"v2\")".into(),
                );
            }
            for (key, set) in [
                ("database", self.database.is_some()),
                ("retention_policy", self.retention_policy.is_some()),
                ("username", self.username.is_some()),
                ("password", self.password.is_some()),
                ("create_database", self.create_database),
            ] {
                if set {
                    err(
                        key,
                        "belongs to api = \"v1\": remove it, or set api = \"v1\" (v2 uses org, bucket and token)".into(),
                    );
                }
            }
        }

        if self.interval < Duration::from_secs(1) || self.interval > Duration::from_secs(3600) {
            err(
                "interval",
                format!(
                    "{:?} is out of range: give between \"1s\" and \"1h\" (default \"10s\")",
                    self.interval
                ),
            );
        }
        if self.lateness > self.interval {
            err(
                "lateness",
                format!(
                    "{:?} is longer than interval {:?}: give at most the interval (default \"1s\")",
                    self.lateness, self.interval
                ),
            );
        }
        let mut seen = Vec::new();
        for (i, t) in self.tags.iter().enumerate() {
            if seen.contains(t) {
                err(
                    &format!("tags[{i}]"),
                    format!("{:?} is listed twice: list each tag once", t.key()),
                );
            }
            seen.push(*t);
        }
        if self.net_prefix_v4 > 32 {
            err(
                "net_prefix_v4",
                format!("{} is above 32: give 0-32", self.net_prefix_v4),
            );
        }
        if self.net_prefix_v6 > 128 {
            err(
                "net_prefix_v6",
                format!("{} is above 128: give 0-128", self.net_prefix_v6),
            );
        }
        for (k, v) in &self.extra_tags {
            let key = format!("extra_tags.{k}");
            if let Some(problem) = check_tag_key(k) {
                err(&key, problem);
            }
            if v.is_empty() || v.chars().any(|c| c.is_control()) {
                err(
                    &key,
                    "value is empty or has control characters: give a plain, non-empty value"
                        .into(),
                );
            }
        }
        if self.max_series == 0 || self.max_series > MAX_SERIES {
            err(
                "max_series",
                format!(
                    "{} is out of range: give 1-{MAX_SERIES} (default 10000)",
                    self.max_series
                ),
            );
        }
        if self.timeout.is_zero() {
            err(
                "timeout",
                "is 0: give a request timeout such as \"10s\"".into(),
            );
        }
        if self.max_points_per_request == 0 || self.max_points_per_request > MAX_POINTS_PER_REQUEST
        {
            err(
                "max_points_per_request",
                format!(
                    "{} is out of range: give 1-{MAX_POINTS_PER_REQUEST} (default 5000)",
                    self.max_points_per_request
                ),
            );
        }
        if self.max_pending_points == 0 || self.max_pending_points > MAX_PENDING_POINTS {
            err(
                "max_pending_points",
                format!(
                    "{} is out of range: give 1-{MAX_PENDING_POINTS} (default 100000)",
                    self.max_pending_points
                ),
            );
        }
        let d = default_retry();
        let (initial, max) = (
            self.backoff_initial.unwrap_or(d.initial_backoff),
            self.backoff_max.unwrap_or(d.max_backoff),
        );
        if initial.is_zero() || max < initial {
            err(
                "backoff_initial",
                "must be above 0 and backoff_max at least backoff_initial (defaults \"500ms\" and \"30s\"; better: [sinks.NAME.retry] initial_backoff and max_backoff)".into(),
            );
        }
        if self.health_interval < Duration::from_millis(100) {
            err(
                "health_interval",
                "is below 100ms: give e.g. \"10s\"".into(),
            );
        }
        errors
    }

    /// The database / bucket name for messages (no secrets).
    pub fn target(&self) -> String {
        match self.api {
            Api::V1 => format!(
                "database {:?}",
                self.database.as_deref().unwrap_or_default()
            ),
            Api::V2 => format!("bucket {:?}", self.bucket.as_deref().unwrap_or_default()),
            Api::None => "nothing (api = \"none\")".into(),
        }
    }
}

/// Why a tag key cannot be used as an extra tag, if it cannot.
fn check_tag_key(k: &str) -> Option<String> {
    if k.is_empty() || k.chars().any(|c| c.is_control()) {
        return Some("key is empty or has control characters: give a plain name".into());
    }
    if k.starts_with('_') || k == "time" {
        return Some(format!(
            "{k:?} is reserved by InfluxDB (`time` and names starting with `_`): choose another name"
        ));
    }
    let builtin = MEASUREMENTS
        .iter()
        .flat_map(|m| m.tags.iter().chain(m.fields.iter()))
        .chain(OPTIONAL_TAGS.iter())
        .any(|t| *t == k);
    if builtin {
        return Some(format!(
            "{k:?} is a tag or field the sink writes itself: choose another name"
        ));
    }
    None
}

/// Check a base URL; the error says what to do.
pub fn check_url(u: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(u)
        .map_err(|e| format!("{u:?} is not a URL ({e}): give e.g. \"http://127.0.0.1:8086\""))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme {:?} is not supported: use http:// or https://",
            url.scheme()
        ));
    }
    if url.host_str().is_none() {
        return Err("has no host: give e.g. \"http://127.0.0.1:8086\"".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Do not echo the URL: it holds a secret.
        return Err(
            "holds credentials: remove them from the URL and set username/password (v1) or token (v2)"
                .into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(
            "has a query or fragment: give only scheme, host, port and an optional path prefix"
                .into(),
        );
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<InfluxSinkConfig, Vec<String>> {
        let c: InfluxSinkConfig =
            hepflow_sdk::sink::parse_section("sinks.m", &v).map_err(|e| vec![e])?;
        let p = c.check("sinks.m");
        if p.is_empty() {
            Ok(c)
        } else {
            Err(p)
        }
    }

    #[test]
    fn v1_minimal_has_defaults() {
        let c = parse(serde_json::json!({
            "api": "v1", "url": "http://127.0.0.1:8086", "database": "hep"
        }))
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.mode, Mode::Aggregate);
        assert!(c.gzip && c.prometheus && !c.create_database);
        assert_eq!(c.max_pending_points, 100_000);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let e = parse(serde_json::json!({
            "api": "v2", "url": "ftp://x", "database": "hep",
            "interval": "100ms", "max_series": 0,
            "extra_tags": {"node": "x", "_m": "y", "ok": ""},
            "tags": ["listener", "listener"],
            "net_prefix_v4": 40
        }))
        .unwrap_err();
        let all = e.join("\n");
        for want in [
            "sinks.m.url: scheme",
            "sinks.m.org: is missing",
            "sinks.m.bucket: is missing",
            "sinks.m.database: belongs to api = \"v1\"",
            "sinks.m.interval:",
            "sinks.m.max_series:",
            "sinks.m.extra_tags.node:",
            "sinks.m.extra_tags._m:",
            "sinks.m.extra_tags.ok:",
            "sinks.m.tags[1]:",
            "sinks.m.net_prefix_v4:",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_path() {
        let e = parse(serde_json::json!({"api": "none", "bogus": 1})).unwrap_err();
        assert!(e[0].starts_with("sinks.m"), "{e:?}");
        assert!(e[0].contains("bogus"), "{e:?}");
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_echoing_them() {
        let e = parse(serde_json::json!({
            "api": "v1", "url": "http://bob:hunter2@127.0.0.1:8086", "database": "hep"
        }))
        .unwrap_err();
        let all = e.join("\n");
        assert!(all.contains("sinks.m.url: holds credentials"), "{all}");
        assert!(!all.contains("hunter2"), "{all}");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let c = parse(serde_json::json!({
            "api": "v1", "url": "http://127.0.0.1:8086", "database": "hep",
            "username": "u", "password": "hunter2"
        }))
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
