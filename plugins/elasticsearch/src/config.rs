//! The `elasticsearch` sink's configuration section and its value checks.
//! The doc comments of [`ElasticsearchConfig`] and the types under it are
//! the user documentation of the keys.

use crate::index_name::IndexPattern;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Largest accepted `max_bytes` of one bulk request (100 MiB, the
/// default `http.max_content_length` of Elasticsearch).
pub const MAX_BULK_BYTES: usize = 100 << 20;
/// Largest accepted `max_documents` of one bulk request.
pub const MAX_BULK_DOCUMENTS: usize = 100_000;
/// Largest accepted `concurrency`.
pub const MAX_CONCURRENCY: usize = 64;
/// Largest accepted `max_response_bytes` (1 GiB).
pub const MAX_RESPONSE_BYTES: usize = 1 << 30;

pub use hepflow_sdk::secret::Secret;

/// Configuration of a `type = "elasticsearch"` sink: every event as one
/// JSON document (hepflow's event document, see `hepflow_sdk::document`)
/// indexed through the `_bulk` API of Elasticsearch 7, 8 or OpenSearch.
///
/// ```toml
/// [sinks.search]
/// type = "elasticsearch"
/// urls = ["https://es1:9200", "https://es2:9200"]
/// index = "hep-{proto}-%Y.%m.%d"
/// dead_letter_path = "/var/lib/hepflow/search-dead-letter.ndjson"
/// [sinks.search.auth]
/// username = "hepflow"
/// password = "..."
/// [sinks.search.tls]
/// ca_file = "/etc/hepflow/es-ca.pem"
/// ```
///
/// How many documents one `write` gets and how long the engine waits for a
/// batch to fill (the batch's **max age**) are the engine's
/// `[sinks.NAME.batch] max_events` and `max_wait`; the sink splits what it
/// gets into bulk requests of at most `max_documents` documents and
/// `max_bytes` bytes, and sends up to `concurrency` of them at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URLs of the cluster's HTTP endpoints (`http://` or `https://`,
    /// optionally with a path prefix when behind a reverse proxy). Requests
    /// are spread over them round-robin; a URL that fails (connection
    /// error, timeout, 502/503/504) is skipped for a backoff period
    /// (capped, jittered exponential) and the request goes to the next one.
    /// Credentials do not belong in the URL: use `auth`.
    #[serde(default)]
    pub urls: Vec<String>,

    /// Authentication: at most one of basic (`username` + `password`),
    /// `api_key` or `bearer_token`.
    #[serde(default)]
    pub auth: AuthConfig,

    /// TLS for `https://` URLs.
    #[serde(default)]
    pub tls: TlsConfig,

    /// Name of the index each document goes to, rendered from the
    /// **packet's own** timestamp (the HEP capture time; the receive time
    /// when the packet has none), in UTC. `strftime` fields: `%Y` (year),
    /// `%y` (2-digit year), `%m` (month), `%d` (day), `%H` (hour), `%j`
    /// (day of year), `%G` / `%V` (ISO week-based year / week), `%%`. The
    /// placeholder `{proto}` is the HEP protocol name (`sip`, `rtcp`,
    /// `log`, ...; the number when unknown). Must give a valid index name:
    /// lower case, none of `\ / * ? " < > | , # :` or spaces, not starting
    /// with `-`, `_`, `+` or `.`. Default `hep-{proto}-%Y.%m.%d`.
    #[serde(default = "default_index")]
    pub index: String,

    /// Bulk action: `create` (default: a document whose `_id` exists is
    /// reported as a duplicate, never overwritten) or `index` (overwrite).
    #[serde(default)]
    pub action: BulkAction,

    /// Document ids: `hash` (default) sets `_id` to a 128-bit hash
    /// (xxh3) of the message as received, minus its HEP auth key chunk, so
    /// a batch sent again after a lost reply, or the same message received
    /// twice, is indexed once (with `action = "create"` the second copy is
    /// counted in `hepflow_es_duplicates_total`); `auto` lets the cluster
    /// generate ids (faster indexing, but a retried request can duplicate).
    #[serde(default)]
    pub document_id: DocumentId,

    /// Most documents in one bulk request. Default 1000.
    #[serde(default = "default_max_documents")]
    pub max_documents: usize,

    /// Most bytes (uncompressed body) in one bulk request; a single larger
    /// document still goes alone. Default 5242880 (5 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,

    /// Bulk requests in flight at once for one write. Default 2.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,

    /// Timeout of one HTTP request, from sending to the whole reply.
    /// Default `30s`.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,

    /// Timeout of opening a connection to one URL. Default `5s`.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,

    /// Compress bulk request bodies with gzip (`Content-Encoding: gzip`).
    /// Default `false`.
    #[serde(default)]
    pub gzip: bool,

    /// Ingest pipeline every document goes through (`?pipeline=`). It must
    /// exist when the sink starts (checked). Unset by default.
    #[serde(default)]
    pub pipeline: Option<String>,

    /// Install an index template for `index` at start (explicit mappings
    /// from the event document's fields: `@timestamp` and `received_at` as
    /// `date`, addresses as `ip`, ids and names as `keyword`, numbers as
    /// `long`, the payload as `text` with a capped `payload.keyword`
    /// sub-field). Set `false` when you manage templates yourself.
    /// Default `true`.
    #[serde(default = "default_true")]
    pub manage_template: bool,

    /// Name of the installed template. Default `hepflow-<sink name>`.
    #[serde(default)]
    pub template_name: Option<String>,

    /// Priority of the composable template (`order` of a legacy one, on
    /// Elasticsearch before 7.8). Default 200.
    #[serde(default = "default_template_priority")]
    pub template_priority: u32,

    /// `index.number_of_shards` of new indices. Unset: the cluster default.
    #[serde(default)]
    pub number_of_shards: Option<u32>,

    /// `index.number_of_replicas` of new indices. Unset: the cluster default.
    #[serde(default)]
    pub number_of_replicas: Option<u32>,

    /// `ignore_above` of `keyword` fields: longer values stay in `_source`
    /// but are not indexed (instead of the whole document being refused).
    /// Default 1024.
    #[serde(default = "default_keyword_ignore_above")]
    pub keyword_ignore_above: u32,

    /// `ignore_above` of the `payload.keyword` sub-field. Default 1024.
    #[serde(default = "default_keyword_ignore_above")]
    pub payload_keyword_ignore_above: u32,

    /// Attempts inside one write for items the cluster answered with 429
    /// or 5xx (and for requests that failed as a whole), with capped,
    /// jittered backoff between them. What is still failing after that is
    /// handed back to the engine, which retries it (only the items not yet
    /// indexed are sent again) with `[sinks.NAME.retry]` backoff; nothing
    /// is dropped for being retried too often. Default 3.
    #[serde(default = "default_item_attempts")]
    pub item_attempts: u32,

    /// First delay between those attempts (doubled each time, capped at
    /// 10 times this value, jittered to 50-100 %). Default `200ms`.
    #[serde(default = "default_item_backoff", with = "humantime_serde")]
    pub item_backoff: Duration,

    /// NDJSON file the documents the cluster refused for good (400
    /// mapping or parse errors, other 4xx) are appended to, one line each
    /// with the index, id, HTTP status, the server's error (type and
    /// reason) and the document. Unset: they are counted
    /// (`hepflow_sink_failed_total{reason="rejected"}`) and logged only.
    #[serde(default)]
    pub dead_letter_path: Option<PathBuf>,

    /// When the dead-letter file would grow past this size it is renamed
    /// to `<path>.1` (replacing an older one) and a new file is started,
    /// so it never takes more than twice this. Default 1073741824 (1 GiB).
    #[serde(default = "default_dead_letter_max_bytes")]
    pub dead_letter_max_bytes: u64,

    /// How often `GET /_cluster/health` is polled for `/ready`. Default `10s`.
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub health_interval: Duration,

    /// Largest reply body read from the cluster; a larger one fails the
    /// request (retried). Default 33554432 (32 MiB).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

/// The bulk action of every document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Add the document; an existing `_id` is a (counted) duplicate.
    #[default]
    Create,
    /// Add or replace the document.
    Index,
}

impl BulkAction {
    /// The action's name in the bulk body and replies.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Create => "create",
            BulkAction::Index => "index",
        }
    }
}

/// Where document ids come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentId {
    /// A hash of the message (retries and copies do not duplicate).
    #[default]
    Hash,
    /// Ids generated by the cluster.
    Auto,
}

/// `[sinks.NAME.auth]`: at most one method.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Basic authentication user (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic authentication password (with `username`). Prefer setting it
    /// from the environment: `HEPFLOW_SINKS__NAME__AUTH__PASSWORD`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// API key in its encoded form (base64 of `id:api_key`, the `encoded`
    /// value Elasticsearch returns when the key is created); sent as
    /// `Authorization: ApiKey ...`.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Bearer token (`Authorization: Bearer ...`), e.g. a service token.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
}

/// `[sinks.NAME.tls]`: TLS settings for `https://` URLs. The system's
/// built-in web PKI roots are always trusted; `ca_file` adds your own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) that signed the cluster's
    /// certificates (e.g. Elasticsearch's `http_ca.crt`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain), for clusters that require client
    /// certificates; with `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Accept any server certificate, unchecked. Only for tests: anyone on
    /// the path can read and change the data. Default `false`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn default_index() -> String {
    "hep-{proto}-%Y.%m.%d".to_string()
}
fn default_max_documents() -> usize {
    1000
}
fn default_max_bytes() -> usize {
    5 << 20
}
fn default_concurrency() -> usize {
    2
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_true() -> bool {
    true
}
fn default_template_priority() -> u32 {
    200
}
fn default_keyword_ignore_above() -> u32 {
    1024
}
fn default_item_attempts() -> u32 {
    3
}
fn default_item_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_dead_letter_max_bytes() -> u64 {
    1 << 30
}
fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_max_response_bytes() -> usize {
    32 << 20
}

/// The method the `Authorization` header uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No header.
    None,
    /// `Basic base64(user:password)`.
    Basic(String, Secret),
    /// `ApiKey <encoded>`.
    ApiKey(Secret),
    /// `Bearer <token>`.
    Bearer(Secret),
}

impl ElasticsearchConfig {
    /// The configured auth method (call after [`Self::check`] passed).
    pub fn auth_method(&self) -> Auth {
        let a = &self.auth;
        if let (Some(u), Some(p)) = (&a.username, &a.password) {
            Auth::Basic(u.clone(), p.clone())
        } else if let Some(k) = &a.api_key {
            Auth::ApiKey(k.clone())
        } else if let Some(t) = &a.bearer_token {
            Auth::Bearer(t.clone())
        } else {
            Auth::None
        }
    }

    /// The template name for sink `sink_name`.
    pub fn template_name(&self, sink_name: &str) -> String {
        self.template_name.clone().unwrap_or_else(|| {
            let name: String = sink_name
                .chars()
                .map(|c| {
                    let c = c.to_ascii_lowercase();
                    if c.is_uppercase() || crate::index_name::is_illegal_char(c) {
                        '-'
                    } else {
                        c
                    }
                })
                .collect();
            format!("hepflow-{name}")
        })
    }

    /// The URLs parsed and normalized (a trailing `/` added, so a path
    /// prefix is kept when joining API paths). Call after [`Self::check`].
    pub fn parsed_urls(&self) -> Vec<url::Url> {
        self.urls.iter().filter_map(|u| parse_url(u).ok()).collect()
    }

    /// Check values serde cannot: every problem, each naming the key's full
    /// path under `path` (`sinks.NAME`) and what to do.
    pub fn check(&self, path: &str) -> Vec<String> {
        let mut e = Vec::new();
        if self.urls.is_empty() {
            e.push(format!(
                "{path}.urls is empty: give at least one Elasticsearch/OpenSearch URL, e.g. urls = [\"http://127.0.0.1:9200\"]"
            ));
        }
        for (i, u) in self.urls.iter().enumerate() {
            if let Err(why) = parse_url(u) {
                e.push(format!("{path}.urls[{i}]: {why}"));
            }
        }
        if let Err(why) = IndexPattern::parse(&self.index) {
            e.push(format!("{path}.index {:?}: {why}", self.index));
        }
        let a = &self.auth;
        match (&a.username, &a.password) {
            (Some(_), None) => e.push(format!(
                "{path}.auth.username is set without {path}.auth.password: give both for basic authentication"
            )),
            (None, Some(_)) => e.push(format!(
                "{path}.auth.password is set without {path}.auth.username: give both for basic authentication"
            )),
            _ => {}
        }
        let methods = [
            a.username.is_some() || a.password.is_some(),
            a.api_key.is_some(),
            a.bearer_token.is_some(),
        ]
        .iter()
        .filter(|m| **m)
        .count();
        if methods > 1 {
            e.push(format!(
                "{path}.auth: more than one method is set: keep one of username/password, api_key, bearer_token"
            ));
        }
        if let Some(k) = a.api_key.as_ref().map(Secret::expose) {
            if k.is_empty() {
                e.push(format!(
                    "{path}.auth.api_key is empty: give the encoded API key, or remove the key"
                ));
            }
        }
        if let Some(t) = a.bearer_token.as_ref().map(Secret::expose) {
            if t.is_empty() {
                e.push(format!(
                    "{path}.auth.bearer_token is empty: give the token, or remove the key"
                ));
            }
        }
        if matches!(&a.username, Some(u) if u.is_empty() || u.contains(':')) {
            e.push(format!(
                "{path}.auth.username is empty or contains ':': give the user name for basic authentication"
            ));
        }
        let t = &self.tls;
        match (&t.client_cert_file, &t.client_key_file) {
            (Some(_), None) => e.push(format!(
                "{path}.tls.client_cert_file is set without {path}.tls.client_key_file: give the certificate's private key file too"
            )),
            (None, Some(_)) => e.push(format!(
                "{path}.tls.client_key_file is set without {path}.tls.client_cert_file: give the client certificate file too"
            )),
            _ => {}
        }
        for (key, p) in [
            ("ca_file", &t.ca_file),
            ("client_cert_file", &t.client_cert_file),
            ("client_key_file", &t.client_key_file),
        ] {
            if matches!(p, Some(p) if p.as_os_str().is_empty()) {
                e.push(format!(
                    "{path}.tls.{key} is empty: give a PEM file path, or remove the key"
                ));
            }
        }
        if self.max_documents == 0 || self.max_documents > MAX_BULK_DOCUMENTS {
            e.push(format!(
                "{path}.max_documents is {}: give a number between 1 and {MAX_BULK_DOCUMENTS} (default 1000)",
                self.max_documents
            ));
        }
        if self.max_bytes < 1024 || self.max_bytes > MAX_BULK_BYTES {
            e.push(format!(
                "{path}.max_bytes is {}: give a size between 1024 and {MAX_BULK_BYTES} bytes (default 5242880)",
                self.max_bytes
            ));
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            e.push(format!(
                "{path}.concurrency is {}: give a number between 1 and {MAX_CONCURRENCY} (default 2)",
                self.concurrency
            ));
        }
        for (key, d) in [
            ("request_timeout", self.request_timeout),
            ("connect_timeout", self.connect_timeout),
            ("health_interval", self.health_interval),
        ] {
            if d.is_zero() {
                e.push(format!(
                    "{path}.{key} is 0: give a duration such as \"10s\""
                ));
            }
        }
        if self.item_attempts == 0 || self.item_attempts > 100 {
            e.push(format!(
                "{path}.item_attempts is {}: give a number between 1 and 100 (default 3)",
                self.item_attempts
            ));
        }
        if self.item_backoff.is_zero() || self.item_backoff > Duration::from_secs(60) {
            e.push(format!(
                "{path}.item_backoff is {:?}: give a duration between 1ms and 60s (default \"200ms\")",
                self.item_backoff
            ));
        }
        if let Some(p) = &self.pipeline {
            if p.is_empty() || p.contains(['/', '?', '#', '&', ' ', '%']) {
                e.push(format!(
                    "{path}.pipeline {p:?} is not a pipeline name: give the id of an existing ingest pipeline, or remove the key"
                ));
            }
        }
        if let Some(n) = &self.template_name {
            if n.is_empty()
                || n.starts_with(['-', '_', '+', '.'])
                || n.chars()
                    .any(|c| c.is_ascii_uppercase() || crate::index_name::is_illegal_char(c))
            {
                e.push(format!(
                    "{path}.template_name {n:?} is not a valid template name: use lower case letters, digits, '-' and '_'"
                ));
            }
        }
        if matches!(&self.dead_letter_path, Some(p) if p.as_os_str().is_empty()) {
            e.push(format!(
                "{path}.dead_letter_path is empty: give a file path, or remove the key"
            ));
        }
        if self.dead_letter_max_bytes < 4096 {
            e.push(format!(
                "{path}.dead_letter_max_bytes is {}: give at least 4096 bytes (default 1073741824)",
                self.dead_letter_max_bytes
            ));
        }
        if self.max_response_bytes < 4096 || self.max_response_bytes > MAX_RESPONSE_BYTES {
            e.push(format!(
                "{path}.max_response_bytes is {}: give a size between 4096 and {MAX_RESPONSE_BYTES} (default 33554432)",
                self.max_response_bytes
            ));
        }
        e
    }
}

/// Parse one configured URL, saying what is wrong with it.
pub fn parse_url(s: &str) -> Result<url::Url, String> {
    let mut u = url::Url::parse(s).map_err(|err| {
        format!("{s:?} is not a URL ({err}): give one like \"http://127.0.0.1:9200\"")
    })?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!(
            "scheme {:?} is not supported: use http:// or https://",
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "{s:?} has no host: give one like \"http://127.0.0.1:9200\""
        ));
    }
    if !u.username().is_empty() || u.password().is_some() {
        // Never echo the URL: it holds a secret.
        return Err(
            "the URL holds credentials: remove them from the URL and set the auth section (username/password, api_key or bearer_token)"
                .to_string(),
        );
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!(
            "{s:?} has a query or fragment: give only scheme, host, port and an optional path prefix"
        ));
    }
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> Result<ElasticsearchConfig, String> {
        hepflow_sdk::sink::parse_section("sinks.search", &v)
    }

    #[test]
    fn defaults_and_required_urls() {
        let c = cfg(serde_json::json!({})).unwrap();
        assert_eq!(c.index, "hep-{proto}-%Y.%m.%d");
        assert_eq!(c.action, BulkAction::Create);
        assert_eq!(c.document_id, DocumentId::Hash);
        assert!(c.manage_template);
        let errs = c.check("sinks.search");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("sinks.search.urls is empty: give at least one"));
    }

    #[test]
    fn every_problem_reported_with_its_path() {
        let c = cfg(serde_json::json!({
            "urls": ["ftp://x", "http://user:hunter2@es:9200", "not a url"],
            "index": "HEP-%Y",
            "auth": {"username": "u", "api_key": "k"},
            "tls": {"client_cert_file": "/c.pem"},
            "max_documents": 0,
            "concurrency": 0,
        }))
        .unwrap();
        let errs = c.check("sinks.search");
        let text = errs.join("\n");
        assert!(
            text.contains("sinks.search.urls[0]: scheme \"ftp\""),
            "{text}"
        );
        assert!(
            text.contains("sinks.search.urls[1]: the URL holds credentials"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "secret leaked: {text}");
        assert!(text.contains("sinks.search.urls[2]:"), "{text}");
        assert!(text.contains("sinks.search.index \"HEP-%Y\": "), "{text}");
        assert!(
            text.contains("sinks.search.auth.username is set without"),
            "{text}"
        );
        assert!(
            text.contains("sinks.search.auth: more than one method"),
            "{text}"
        );
        assert!(
            text.contains("sinks.search.tls.client_cert_file is set without"),
            "{text}"
        );
        assert!(text.contains("sinks.search.max_documents is 0"), "{text}");
        assert!(text.contains("sinks.search.concurrency is 0"), "{text}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_path() {
        let e =
            cfg(serde_json::json!({"urls": ["http://a:9200"], "tls": {"ca": "x"}})).unwrap_err();
        assert!(e.starts_with("sinks.search.tls.ca: unknown field"), "{e}");
    }

    #[test]
    fn secrets_are_redacted_and_numbers_accepted() {
        let c = cfg(serde_json::json!({"urls": ["http://a:9200"], "auth": {"username": "u", "password": 12345}}))
            .unwrap();
        assert_eq!(
            c.auth_method(),
            Auth::Basic("u".into(), Secret::new("12345"))
        );
        assert!(!format!("{c:?}").contains("12345"));
        assert!(c.check("s").is_empty());
    }

    #[test]
    fn urls_are_normalized() {
        assert_eq!(
            parse_url("http://a:9200").unwrap().as_str(),
            "http://a:9200/"
        );
        assert_eq!(parse_url("https://a/es").unwrap().as_str(), "https://a/es/");
        assert_eq!(
            parse_url("https://a/es/").unwrap().as_str(),
            "https://a/es/"
        );
    }
}
