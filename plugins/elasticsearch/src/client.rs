//! Talking to the cluster: the list of URLs with per-URL failure backoff
//! ([`Nodes`]), the TLS and auth material shared by both HTTP clients, the
//! bulk client (plain `reqwest`: exact headers, bounded reply reading,
//! failover to the next URL within one request), and the control-plane
//! client (the `elasticsearch` crate, one client per URL: version,
//! template, pipeline, cluster health).

use crate::config::{Auth, ElasticsearchConfig, TlsConfig};
use crate::response::reply_error_text;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use elasticsearch::auth::{ClientCertificate, Credentials};
use elasticsearch::cert::{Certificate as EsCertificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::Elasticsearch;
use hepflow_sdk::delivery::backoff_delay;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The configured URLs and how each has been doing.
#[derive(Debug)]
pub struct Nodes {
    urls: Vec<url::Url>,
    state: Mutex<Vec<NodeState>>,
    next: AtomicUsize,
}

#[derive(Debug, Clone, Copy, Default)]
struct NodeState {
    failures: u32,
    dead_until: Option<Instant>,
}

/// First pause of a failed URL; doubled per failure, capped.
const NODE_BACKOFF: Duration = Duration::from_secs(1);
const NODE_BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Nodes {
    /// The URLs (normalized, ending in `/`).
    pub fn new(urls: Vec<url::Url>) -> Self {
        let n = urls.len();
        Nodes {
            urls,
            state: Mutex::new(vec![NodeState::default(); n]),
            next: AtomicUsize::new(0),
        }
    }

    /// How many URLs.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// URL `i`.
    pub fn url(&self, i: usize) -> &url::Url {
        &self.urls[i]
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<NodeState>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every URL once, in the order to try them: round-robin start, URLs
    /// in their failure pause last (the one whose pause ends first ahead).
    pub fn order(&self) -> Vec<usize> {
        let n = self.urls.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let now = Instant::now();
        let st = self.lock();
        let mut alive = Vec::with_capacity(n);
        let mut dead = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            match st[i].dead_until {
                Some(t) if t > now => dead.push((t, i)),
                _ => alive.push(i),
            }
        }
        dead.sort();
        alive.extend(dead.into_iter().map(|(_, i)| i));
        alive
    }

    /// URL `i` failed (connection, timeout, 502/503/504): pause it.
    pub fn mark_failed(&self, i: usize) {
        let mut st = self.lock();
        let s = &mut st[i];
        s.failures = s.failures.saturating_add(1);
        let pause = backoff_delay(s.failures - 1, NODE_BACKOFF, NODE_BACKOFF_MAX);
        s.dead_until = Some(Instant::now() + pause);
    }

    /// URL `i` answered: no pause.
    pub fn mark_ok(&self, i: usize) {
        let mut st = self.lock();
        st[i] = NodeState::default();
    }

    /// How many URLs are in their failure pause now.
    pub fn paused(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|s| matches!(s.dead_until, Some(t) if t > now))
            .count()
    }
}

/// The `Authorization` header value (marked sensitive: never printed).
pub fn auth_header(auth: &Auth) -> Result<Option<HeaderValue>, String> {
    let raw = match auth {
        Auth::None => return Ok(None),
        Auth::Basic(u, p) => format!("Basic {}", STANDARD.encode(format!("{u}:{}", p.expose()))),
        Auth::ApiKey(k) => format!("ApiKey {}", k.expose()),
        Auth::Bearer(t) => format!("Bearer {}", t.expose()),
    };
    let mut v = HeaderValue::from_str(&raw).map_err(|_| {
        "the auth secret holds characters an HTTP header cannot carry: check the api_key / bearer_token value".to_string()
    })?;
    v.set_sensitive(true);
    Ok(Some(v))
}

/// TLS files, read at start.
#[derive(Clone, Default)]
pub struct TlsMaterial {
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<Vec<u8>>,
    insecure: bool,
}

impl TlsMaterial {
    /// Read the configured files; the error names the key and the file.
    pub fn load(cfg: &TlsConfig, path: &str) -> Result<Self, String> {
        let read = |key: &str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| {
                format!(
                    "{path}.tls.{key}: cannot read {} ({e}): give a readable PEM file",
                    p.display()
                )
            })
        };
        let ca_pem = match &cfg.ca_file {
            Some(p) => {
                let pem = read("ca_file", p)?;
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    format!(
                        "{path}.tls.ca_file: {} is not a PEM certificate bundle ({e})",
                        p.display()
                    )
                })?;
                Some(pem)
            }
            None => None,
        };
        let identity_pem = match (&cfg.client_cert_file, &cfg.client_key_file) {
            (Some(c), Some(k)) => {
                let mut pem = read("client_cert_file", c)?;
                pem.push(b'\n');
                pem.extend_from_slice(&read("client_key_file", k)?);
                reqwest::Identity::from_pem(&pem).map_err(|e| {
                    format!(
                        "{path}.tls: the client certificate {} and key {} do not make a usable identity ({e}): give PEM files (key in PKCS#8, PKCS#1 or SEC1)",
                        c.display(),
                        k.display()
                    )
                })?;
                Some(pem)
            }
            _ => None,
        };
        Ok(TlsMaterial {
            ca_pem,
            identity_pem,
            insecure: cfg.insecure_skip_verify,
        })
    }
}

/// Settings both HTTP clients share.
#[derive(Clone)]
pub struct HttpSettings {
    /// TLS material.
    pub tls: TlsMaterial,
    /// `Authorization` value.
    pub auth: Option<HeaderValue>,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_per_host: usize,
}

impl HttpSettings {
    /// From the sink's config (TLS files already loaded).
    pub fn new(cfg: &ElasticsearchConfig, tls: TlsMaterial) -> Result<Self, String> {
        Ok(HttpSettings {
            tls,
            auth: auth_header(&cfg.auth_method())?,
            request_timeout: cfg.request_timeout,
            connect_timeout: cfg.connect_timeout,
            pool_per_host: cfg.concurrency.max(2),
        })
    }
}

/// A finished HTTP exchange.
#[derive(Debug)]
pub struct HttpReply {
    /// Which URL answered.
    pub node: usize,
    /// Status code.
    pub status: u16,
    /// Body (at most `max_response_bytes`).
    pub body: Bytes,
}

/// A request no URL answered.
#[derive(Debug, Clone)]
pub struct TransportFailure {
    /// What went wrong at the last URL tried (no secrets: URLs hold none).
    pub message: String,
    /// `connect_error`, `timeout`, `reply_too_large` or `io_error` (the
    /// `status` label of `hepflow_es_bulk_requests_total`).
    pub kind: &'static str,
}

/// The bulk client.
pub struct BulkClient {
    http: reqwest::Client,
    nodes: std::sync::Arc<Nodes>,
    auth: Option<HeaderValue>,
    path_and_query: String,
    gzip: bool,
    max_response_bytes: usize,
}

impl BulkClient {
    /// Build (no I/O).
    pub fn new(
        s: &HttpSettings,
        nodes: std::sync::Arc<Nodes>,
        pipeline: Option<&str>,
        gzip: bool,
        max_response_bytes: usize,
    ) -> Result<Self, String> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(s.request_timeout)
            .connect_timeout(s.connect_timeout)
            .pool_max_idle_per_host(s.pool_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .no_proxy();
        if let Some(pem) = &s.tls.ca_pem {
            for c in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())? {
                b = b.add_root_certificate(c);
            }
        }
        if let Some(pem) = &s.tls.identity_pem {
            b = b.identity(reqwest::Identity::from_pem(pem).map_err(|e| e.to_string())?);
        }
        if s.tls.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut path_and_query = "_bulk".to_string();
        if let Some(p) = pipeline {
            path_and_query.push_str("?pipeline=");
            path_and_query.push_str(p);
        }
        Ok(BulkClient {
            http,
            nodes,
            auth: s.auth.clone(),
            path_and_query,
            gzip,
            max_response_bytes,
        })
    }

    /// URL `i`, for messages.
    pub fn node_url(&self, i: usize) -> String {
        self.nodes.url(i).to_string()
    }

    /// POST one bulk body (already gzipped when `gzip` is on, `wire`),
    /// trying the next URL when one cannot be reached or answers 502, 503
    /// or 504 (each URL at most once).
    pub async fn send(&self, wire: Bytes) -> Result<HttpReply, TransportFailure> {
        let mut last = TransportFailure {
            message: "no URL configured".into(),
            kind: "connect_error",
        };
        let order = self.nodes.order();
        let n = order.len();
        for (k, i) in order.into_iter().enumerate() {
            let url = match self.nodes.url(i).join(&self.path_and_query) {
                Ok(u) => u,
                Err(e) => {
                    last.message = format!("bad URL: {e}");
                    continue;
                }
            };
            let mut req = self
                .http
                .post(url.clone())
                .header(CONTENT_TYPE, "application/x-ndjson")
                .header("accept", "application/json")
                .body(wire.clone());
            if self.gzip {
                req = req.header("content-encoding", "gzip");
            }
            if let Some(a) = &self.auth {
                req = req.header(AUTHORIZATION, a.clone());
            }
            match self.exchange(req).await {
                Ok((status, body)) => {
                    if matches!(status, 502..=504) && k + 1 < n {
                        self.nodes.mark_failed(i);
                        last = TransportFailure {
                            message: format!(
                                "{url} answered {status}: {}",
                                reply_error_text(&body)
                            ),
                            kind: "io_error",
                        };
                        continue;
                    }
                    if matches!(status, 502..=504) {
                        self.nodes.mark_failed(i);
                    } else {
                        self.nodes.mark_ok(i);
                    }
                    return Ok(HttpReply {
                        node: i,
                        status,
                        body,
                    });
                }
                Err(f) => {
                    self.nodes.mark_failed(i);
                    last = TransportFailure {
                        message: format!("{url}: {}", f.message),
                        kind: f.kind,
                    };
                }
            }
        }
        Err(last)
    }

    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, Bytes), TransportFailure> {
        let fail = |e: reqwest::Error| TransportFailure {
            message: describe_reqwest_error(&e),
            kind: if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect_error"
            } else {
                "io_error"
            },
        };
        let mut resp = req.send().await.map_err(fail)?;
        let status = resp.status().as_u16();
        let cap = self.max_response_bytes;
        if resp.content_length().is_some_and(|l| l as usize > cap) {
            return Err(TransportFailure {
                message: format!(
                    "the reply ({} bytes) is larger than max_response_bytes ({cap})",
                    resp.content_length().unwrap_or(0)
                ),
                kind: "reply_too_large",
            });
        }
        let mut body =
            Vec::with_capacity(resp.content_length().unwrap_or(4096).min(cap as u64) as usize);
        while let Some(chunk) = resp.chunk().await.map_err(fail)? {
            if body.len() + chunk.len() > cap {
                return Err(TransportFailure {
                    message: format!("the reply is larger than max_response_bytes ({cap})"),
                    kind: "reply_too_large",
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, Bytes::from(body)))
    }
}

/// A reqwest error with its causes (connection refused, certificate
/// problems), without anything secret (URLs carry no credentials).
pub fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    hepflow_sdk::secret::with_causes(s, std::error::Error::source(e))
}

/// Largest control-plane reply accepted by its Content-Length (the
/// client crate reads bodies whole; these replies are a few KB).
const MAX_CONTROL_REPLY_BYTES: u64 = 4 << 20;

type EsFuture<'a> = futures::future::BoxFuture<
    'a,
    Result<elasticsearch::http::response::Response, elasticsearch::Error>,
>;

/// The control-plane client: one `elasticsearch::Elasticsearch` per URL.
pub struct Control {
    clients: Vec<Elasticsearch>,
    nodes: std::sync::Arc<Nodes>,
}

/// A control-plane call's failure.
#[derive(Debug, Clone)]
pub struct ControlError {
    /// No secrets.
    pub message: String,
    /// HTTP status when the server answered.
    pub status: Option<u16>,
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Control {
    /// Build one client per URL (no I/O).
    pub fn new(s: &HttpSettings, nodes: std::sync::Arc<Nodes>) -> Result<Self, String> {
        let mut clients = Vec::with_capacity(nodes.len());
        for i in 0..nodes.len() {
            let pool = SingleNodeConnectionPool::new(nodes.url(i).clone());
            let mut b = TransportBuilder::new(pool)
                .timeout(s.request_timeout)
                .disable_proxy()
                .enable_meta_header(false);
            if let Some(a) = &s.auth {
                b = b.header(AUTHORIZATION, a.clone());
            }
            if let Some(pem) = &s.tls.identity_pem {
                b = b.auth(Credentials::Certificate(ClientCertificate::Pem(
                    pem.clone(),
                )));
            }
            if s.tls.insecure {
                b = b.cert_validation(CertificateValidation::None);
            } else if let Some(pem) = &s.tls.ca_pem {
                let c = EsCertificate::from_pem(pem).map_err(|e| format!("CA file: {e}"))?;
                b = b.cert_validation(CertificateValidation::Full(c));
            }
            let t = b
                .build()
                .map_err(|e| format!("cannot build the Elasticsearch client: {e}"))?;
            clients.push(Elasticsearch::new(t));
        }
        Ok(Control { clients, nodes })
    }

    /// Send one request to each URL in turn until one answers; returns the
    /// URL index, status and JSON body (null when not JSON).
    async fn call<'a>(
        &'a self,
        what: &str,
        f: impl Fn(&'a Elasticsearch) -> EsFuture<'a>,
    ) -> Result<(usize, u16, Value), ControlError> {
        let mut last = ControlError {
            message: format!("{what}: no URL configured"),
            status: None,
        };
        for i in self.nodes.order() {
            match f(&self.clients[i]).await {
                Ok(resp) => {
                    let status = resp.status_code().as_u16();
                    if resp
                        .content_length()
                        .is_some_and(|l| l > MAX_CONTROL_REPLY_BYTES)
                    {
                        self.nodes.mark_failed(i);
                        last = ControlError {
                            message: format!(
                                "{what} at {}: the reply is larger than {MAX_CONTROL_REPLY_BYTES} bytes",
                                self.nodes.url(i)
                            ),
                            status: Some(status),
                        };
                        continue;
                    }
                    let bytes = resp.bytes().await.unwrap_or_default();
                    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    if matches!(status, 502..=504) {
                        self.nodes.mark_failed(i);
                        last = ControlError {
                            message: format!(
                                "{what} at {}: {status} {}",
                                self.nodes.url(i),
                                reply_error_text(&bytes)
                            ),
                            status: Some(status),
                        };
                        continue;
                    }
                    self.nodes.mark_ok(i);
                    if !(200..300).contains(&status) && status != 404 {
                        let hint = match status {
                            401 => ": authentication failed, check the sink's auth settings",
                            403 => ": permission denied, grant the user the privileges listed in the sink's documentation",
                            _ => "",
                        };
                        return Err(ControlError {
                            message: format!(
                                "{what} at {} answered {status}{hint}: {}",
                                self.nodes.url(i),
                                reply_error_text(&bytes)
                            ),
                            status: Some(status),
                        });
                    }
                    return Ok((i, status, body));
                }
                Err(e) => {
                    self.nodes.mark_failed(i);
                    last = ControlError {
                        message: format!(
                            "{what} at {}: {}",
                            self.nodes.url(i),
                            describe_es_error(&e)
                        ),
                        status: None,
                    };
                }
            }
        }
        Err(last)
    }

    /// `GET /`: the server's info (version).
    pub async fn info(&self) -> Result<(usize, Value), ControlError> {
        let (i, status, body) = self.call("GET /", |c| Box::pin(c.info().send())).await?;
        if status == 404 {
            return Err(ControlError {
                message: format!("GET / at {} answered 404: is this the Elasticsearch/OpenSearch HTTP endpoint (check the path prefix)?", self.nodes.url(i)),
                status: Some(404),
            });
        }
        Ok((i, body))
    }

    /// Install (replace) an index template.
    pub async fn put_template<'a>(
        &'a self,
        name: &'a str,
        body: &Value,
        composable: bool,
    ) -> Result<(), ControlError> {
        let what = if composable {
            format!("PUT _index_template/{name}")
        } else {
            format!("PUT _template/{name}")
        };
        let (i, status, reply) = self
            .call(&what, |c| {
                let body = body.clone();
                Box::pin(async move {
                    if composable {
                        c.indices()
                            .put_index_template(
                                elasticsearch::indices::IndicesPutIndexTemplateParts::Name(name),
                            )
                            .body(body)
                            .send()
                            .await
                    } else {
                        c.indices()
                            .put_template(elasticsearch::indices::IndicesPutTemplateParts::Name(
                                name,
                            ))
                            .body(body)
                            .send()
                            .await
                    }
                })
            })
            .await?;
        if status == 404 {
            return Err(ControlError {
                message: format!(
                    "{what} at {} answered 404: {}",
                    self.nodes.url(i),
                    reply_error_text(reply.to_string().as_bytes())
                ),
                status: Some(404),
            });
        }
        Ok(())
    }

    /// Whether ingest pipeline `id` exists.
    pub async fn pipeline_exists<'a>(&'a self, id: &'a str) -> Result<bool, ControlError> {
        let (_, status, _) = self
            .call(&format!("GET _ingest/pipeline/{id}"), |c| {
                Box::pin(async move {
                    c.ingest()
                        .get_pipeline(elasticsearch::ingest::IngestGetPipelineParts::Id(id))
                        .send()
                        .await
                })
            })
            .await?;
        Ok(status != 404)
    }

    /// `GET /_cluster/health`: the status (`green`, `yellow`, `red`).
    pub async fn cluster_health(&self) -> Result<String, ControlError> {
        let (_, _, body) = self
            .call("GET /_cluster/health", |c| {
                Box::pin(async move {
                    c.cluster()
                        .health(elasticsearch::cluster::ClusterHealthParts::None)
                        .send()
                        .await
                })
            })
            .await?;
        Ok(body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string())
    }
}

/// An `elasticsearch::Error` with its causes.
fn describe_es_error(e: &elasticsearch::Error) -> String {
    hepflow_sdk::secret::with_causes(e.to_string(), std::error::Error::source(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn nodes(n: usize) -> Nodes {
        Nodes::new(
            (0..n)
                .map(|i| url::Url::parse(&format!("http://127.0.0.1:{}/", 9200 + i)).unwrap())
                .collect(),
        )
    }

    #[test]
    fn round_robin_and_failed_urls_last() {
        let n = nodes(3);
        let firsts: Vec<usize> = (0..3).map(|_| n.order()[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2]);
        n.mark_failed(1);
        for _ in 0..6 {
            let o = n.order();
            assert_eq!(o.len(), 3);
            assert_eq!(*o.last().unwrap(), 1, "{o:?}");
        }
        assert_eq!(n.paused(), 1);
        n.mark_ok(1);
        assert_eq!(n.paused(), 0);
    }

    #[test]
    fn auth_headers_are_sensitive() {
        let h = auth_header(&Auth::Basic(
            "u".into(),
            serde_json::from_value::<Secret>("p".into()).unwrap(),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(h.to_str().unwrap(), "Basic dTpw");
        assert!(h.is_sensitive());
        assert!(!format!("{h:?}").contains("dTpw"));
        let secret = |s: &str| serde_json::from_value::<Secret>(s.into()).unwrap();
        assert_eq!(
            auth_header(&Auth::ApiKey(secret("a2V5")))
                .unwrap()
                .unwrap()
                .to_str()
                .unwrap(),
            "ApiKey a2V5"
        );
        assert_eq!(
            auth_header(&Auth::Bearer(secret("tok")))
                .unwrap()
                .unwrap()
                .to_str()
                .unwrap(),
            "Bearer tok"
        );
        let bad = auth_header(&Auth::Bearer(
            serde_json::from_value::<Secret>("a\nb".into()).unwrap(),
        ));
        assert!(bad.is_err());
        assert!(auth_header(&Auth::None).unwrap().is_none());
    }
}
