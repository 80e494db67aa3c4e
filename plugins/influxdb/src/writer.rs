//! The HTTP side: one write request of line protocol, the health check,
//! and `CREATE DATABASE`, for the v1 and v2 APIs, each answer classified
//! as written, rejected (not retried), too large, or worth retrying.
//!
//! # v1 (InfluxDB 1.x)
//!
//! `POST {url}/write?db=DB[&rp=RP]&precision=ns` with the body gzip'd
//! (`Content-Encoding: gzip`) unless `gzip = false`. The user and password
//! travel in the `Authorization` header (`Basic base64(user:password)` or
//! `Token user:password`), never in the URL (where they would end up in
//! access logs). Health: `GET {url}/ping` (204). `CREATE DATABASE "DB"`
//! goes as a form-encoded `POST {url}/query`.
//!
//! # v2 (`/api/v2/write`) and the `influxdb2` crate
//!
//! With `gzip = false`, writes go through the `influxdb2` client
//! (`Client::write_line_protocol`, org, bucket, `Authorization: Token`),
//! with this crate's own line protocol as the body. The crate (0.5) cannot
//! do the rest, so reqwest (rustls) does it:
//!
//! - gzip: `influxdb2` compresses only the bodies it serializes itself
//!   from its `DataPoint` type (its own escaping, no control over tag
//!   order or timestamps); its raw line protocol call takes no extra
//!   headers, so a gzip'd body cannot be labelled `Content-Encoding: gzip`.
//!   With `gzip = true` (the default) the v2 write is a plain reqwest
//!   `POST {url}/api/v2/write?org=&bucket=&precision=ns` with
//!   `Authorization: Token TOKEN`.
//! - health: its `health()` insists on a JSON body, and VictoriaMetrics
//!   (a v2 write target) answers `/health` with a plain `OK`; `GET
//!   {url}/health` is done with reqwest: 200 is healthy unless a JSON
//!   body says `"status": "fail"`.
//! - `Retry-After`: its error type keeps only status and body, so a
//!   429/503's `Retry-After` is only honoured on the reqwest path.
//! - Its `Url::set_path` drops a path prefix of the base URL; the reqwest
//!   paths keep it.
//!
//! Both clients use rustls (no OpenSSL). Each request is bounded by
//! `timeout`.
//!
//! # Classification
//!
//! - 2xx: written.
//! - 400 and 422 (bad points, type conflicts): rejected with the server's
//!   reason; not retried (InfluxDB 1.x keeps the good lines of a partial
//!   write).
//! - 413: too large; the sender halves its request size.
//! - connection errors, timeouts, 408, 429, 5xx: retried with backoff.
//! - 401, 403 and 404 (credentials, permissions, missing database or
//!   bucket): retried with backoff too, since an operator can fix them
//!   while points wait; the log says what to fix.

use crate::config::{Api, AuthScheme, InfluxSinkConfig};
use base64::Engine as _;
use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use std::io::Write as _;
use std::time::Duration;

/// Longest server reason kept for a log line (bytes).
const MAX_REASON_BYTES: usize = 512;

/// What one write request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written.
    Written,
    /// The server refused the points (400/422): do not retry.
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's reason (cut to 512 bytes).
        reason: String,
    },
    /// 413: the request is too large.
    TooLarge,
    /// Worth retrying later.
    Retry {
        /// What happened, for the log (no secrets).
        why: String,
        /// Low-cardinality label (`connect`, `timeout`, `http_503`, ...).
        label: &'static str,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
}

enum Backend {
    V1 {
        write: reqwest::Url,
        query: reqwest::Url,
        ping: reqwest::Url,
        db: String,
        rp: Option<String>,
        auth: Option<HeaderValue>,
        create_database: bool,
    },
    V2 {
        write: reqwest::Url,
        health: reqwest::Url,
        org: String,
        bucket: String,
        auth: Option<HeaderValue>,
        influx: Option<influxdb2::Client>,
    },
}

/// The HTTP client of one sink.
pub struct Writer {
    backend: Backend,
    http: reqwest::Client,
    gzip: bool,
    timeout: Duration,
}

/// `base` + `/path`, keeping a path prefix of `base`.
fn join(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut u = base.clone();
    let prefix = base.path().trim_end_matches('/');
    u.set_path(&format!("{prefix}/{path}"));
    u
}

fn sensitive(v: String) -> Result<HeaderValue, String> {
    let mut h = HeaderValue::from_str(&v)
        .map_err(|_| "credentials contain characters not allowed in an HTTP header".to_string())?;
    h.set_sensitive(true);
    Ok(h)
}

/// Error text of a reqwest error with its sources (no secrets: the URL
/// never holds credentials).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    hepflow_sdk::secret::with_causes(e.to_string(), e.source())
}

fn cut_reason(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_REASON_BYTES {
        return s.to_string();
    }
    let mut i = MAX_REASON_BYTES;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    format!("{}...", &s[..i])
}

/// The `error` string of an InfluxDB JSON error body, else the body.
fn server_reason(body: &str) -> String {
    let r = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .or_else(|| v.get("message"))
                .and_then(|e| e.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.to_string());
    cut_reason(&r)
}

/// Classify an HTTP status and body.
pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Written,
        400 | 422 => Outcome::Rejected {
            status,
            reason: server_reason(body),
        },
        413 => Outcome::TooLarge,
        401 | 403 => Outcome::Retry {
            why: format!(
                "HTTP {status} ({}): check the credentials (username/password or token) and their write permission",
                server_reason(body)
            ),
            label: if status == 401 { "http_401" } else { "http_403" },
            retry_after: None,
        },
        404 => Outcome::Retry {
            why: format!(
                "HTTP 404 ({}): the database or bucket does not exist (create it, or set create_database = true for v1), or the URL/api is wrong",
                server_reason(body)
            ),
            label: "http_404",
            retry_after: None,
        },
        408 => Outcome::Retry {
            why: "HTTP 408 request timeout".into(),
            label: "http_408",
            retry_after,
        },
        429 => Outcome::Retry {
            why: format!("HTTP 429 too many requests ({})", server_reason(body)),
            label: "http_429",
            retry_after,
        },
        500..=599 => Outcome::Retry {
            why: format!("HTTP {status} ({})", server_reason(body)),
            label: "http_5xx",
            retry_after,
        },
        _ => Outcome::Rejected {
            status,
            reason: server_reason(body),
        },
    }
}

fn parse_retry_after(h: Option<&HeaderValue>) -> Option<Duration> {
    let s = h?.to_str().ok()?.trim();
    s.parse::<u64>().ok().map(Duration::from_secs)
}

fn connect_retry(e: &reqwest::Error) -> Outcome {
    Outcome::Retry {
        why: error_chain(e),
        label: if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else {
            "transport"
        },
        retry_after: None,
    }
}

impl Writer {
    /// Build the client (no I/O). Errors name the key at fault.
    pub fn new(c: &InfluxSinkConfig, path: &str) -> Result<Option<Self>, String> {
        if c.api == Api::None {
            return Ok(None);
        }
        let base = crate::config::check_url(c.url.as_deref().unwrap_or_default())
            .map_err(|e| format!("{path}.url: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(c.timeout)
            .connect_timeout(c.timeout)
            .user_agent(concat!("hepflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("{path}: cannot build the HTTP client: {e}"))?;
        let backend = match c.api {
            Api::V1 => {
                let auth = match (&c.username, &c.password) {
                    (Some(u), p) => {
                        let p = p.as_ref().map(|p| p.expose()).unwrap_or_default();
                        let v = match c.auth_scheme {
                            AuthScheme::Basic => format!(
                                "Basic {}",
                                base64::engine::general_purpose::STANDARD
                                    .encode(format!("{u}:{p}"))
                            ),
                            AuthScheme::Token => format!("Token {u}:{p}"),
                        };
                        Some(sensitive(v).map_err(|e| format!("{path}.password: {e}"))?)
                    }
                    (None, _) => None,
                };
                Backend::V1 {
                    write: join(&base, "write"),
                    query: join(&base, "query"),
                    ping: join(&base, "ping"),
                    db: c.database.clone().unwrap_or_default(),
                    rp: c.retention_policy.clone(),
                    auth,
                    create_database: c.create_database,
                }
            }
            Api::V2 => {
                let token = c.token.as_ref().map(|t| t.expose()).unwrap_or_default();
                let auth = if token.is_empty() {
                    None
                } else {
                    Some(
                        sensitive(format!("Token {token}"))
                            .map_err(|e| format!("{path}.token: {e}"))?,
                    )
                };
                let influx = if c.gzip {
                    None
                } else {
                    Some(
                        influxdb2::ClientBuilder::new(
                            base.as_str(),
                            c.org.clone().unwrap_or_default(),
                            token,
                        )
                        .build()
                        .map_err(|e| format!("{path}: cannot build the influxdb2 client: {e}"))?,
                    )
                };
                Backend::V2 {
                    write: join(&base, "api/v2/write"),
                    health: join(&base, "health"),
                    org: c.org.clone().unwrap_or_default(),
                    bucket: c.bucket.clone().unwrap_or_default(),
                    auth,
                    influx,
                }
            }
            Api::None => return Ok(None),
        };
        Ok(Some(Writer {
            backend,
            http,
            gzip: c.gzip,
            timeout: c.timeout,
        }))
    }

    /// Whether `CREATE DATABASE` should run before writing.
    pub fn wants_create_database(&self) -> bool {
        matches!(
            self.backend,
            Backend::V1 {
                create_database: true,
                ..
            }
        )
    }

    fn body(&self, lines: &str) -> Result<Vec<u8>, String> {
        if !self.gzip {
            return Ok(lines.as_bytes().to_vec());
        }
        let mut enc = GzEncoder::new(Vec::with_capacity(lines.len() / 4), Compression::fast());
        enc.write_all(lines.as_bytes())
            .and_then(|_| enc.finish())
            .map_err(|e| format!("gzip failed: {e}"))
    }

    /// Write one request of newline-separated lines.
    pub async fn write(&self, lines: &str) -> Outcome {
        let (url, query, auth): (&reqwest::Url, Vec<(&str, &str)>, &Option<HeaderValue>) =
            match &self.backend {
                Backend::V1 {
                    write,
                    db,
                    rp,
                    auth,
                    ..
                } => {
                    let mut q = vec![("db", db.as_str())];
                    if let Some(rp) = rp {
                        q.push(("rp", rp.as_str()));
                    }
                    q.push(("precision", "ns"));
                    (write, q, auth)
                }
                Backend::V2 {
                    write,
                    org,
                    bucket,
                    auth,
                    influx,
                    ..
                } => {
                    if let Some(client) = influx {
                        return self.write_influxdb2(client, org, bucket, lines).await;
                    }
                    (
                        write,
                        vec![
                            ("org", org.as_str()),
                            ("bucket", bucket.as_str()),
                            ("precision", "ns"),
                        ],
                        auth,
                    )
                }
            };
        let body = match self.body(lines) {
            Ok(b) => b,
            Err(e) => {
                return Outcome::Retry {
                    why: e,
                    label: "gzip",
                    retry_after: None,
                }
            }
        };
        let mut req = self
            .http
            .post(url.clone())
            .query(&query)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        if self.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = parse_retry_after(resp.headers().get(RETRY_AFTER));
                let text = if (200..300).contains(&status) {
                    String::new()
                } else {
                    resp.text().await.unwrap_or_default()
                };
                classify(status, &text, retry_after)
            }
            Err(e) => connect_retry(&e),
        }
    }

    async fn write_influxdb2(
        &self,
        client: &influxdb2::Client,
        org: &str,
        bucket: &str,
        lines: &str,
    ) -> Outcome {
        let fut = client.write_line_protocol(org, bucket, lines.to_string());
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Outcome::Retry {
                why: format!("no answer within {:?}", self.timeout),
                label: "timeout",
                retry_after: None,
            },
            Ok(Ok(())) => Outcome::Written,
            Ok(Err(influxdb2::RequestError::Http { status, text })) => {
                classify(status.as_u16(), &text, None)
            }
            Ok(Err(e)) => Outcome::Retry {
                why: error_chain(&e),
                label: "transport",
                retry_after: None,
            },
        }
    }

    /// Check the server: `/ping` (v1) or `/health` (v2).
    pub async fn health(&self) -> Result<(), String> {
        match &self.backend {
            Backend::V1 { ping, .. } => {
                let r = self
                    .http
                    .get(ping.clone())
                    .send()
                    .await
                    .map_err(|e| format!("GET /ping failed: {}", error_chain(&e)))?;
                let s = r.status().as_u16();
                if (200..300).contains(&s) {
                    Ok(())
                } else {
                    Err(format!("GET /ping answered HTTP {s}"))
                }
            }
            Backend::V2 { health, .. } => {
                let r = self
                    .http
                    .get(health.clone())
                    .send()
                    .await
                    .map_err(|e| format!("GET /health failed: {}", error_chain(&e)))?;
                let s = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                if s != 200 {
                    return Err(format!(
                        "GET /health answered HTTP {s}: {}",
                        cut_reason(&body)
                    ));
                }
                let failed = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("status").and_then(|x| x.as_str()).map(str::to_string))
                    .is_some_and(|st| st == "fail");
                if failed {
                    Err(format!(
                        "GET /health says the server fails: {}",
                        cut_reason(&body)
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// v1: `CREATE DATABASE` (idempotent on the server).
    pub async fn create_database(&self) -> Result<(), String> {
        let Backend::V1 {
            query, db, auth, ..
        } = &self.backend
        else {
            return Ok(());
        };
        let q = format!("CREATE DATABASE {}", quote_ident(db));
        let mut req = self.http.post(query.clone()).form(&[("q", q.as_str())]);
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let r = req
            .send()
            .await
            .map_err(|e| format!("CREATE DATABASE failed: {}", error_chain(&e)))?;
        let s = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        if s != 200 {
            return Err(format!(
                "CREATE DATABASE {db:?} answered HTTP {s} ({}): with authentication on, the user must be an admin; or create the database yourself and set create_database = false",
                server_reason(&body)
            ));
        }
        // 1.x answers 200 with {"results":[{"error":...}]} on a failed statement.
        let err = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("results")?
                    .as_array()?
                    .iter()
                    .find_map(|r| r.get("error")?.as_str().map(str::to_string))
            });
        match err {
            Some(e) => Err(format!("CREATE DATABASE {db:?} failed: {}", cut_reason(&e))),
            None => Ok(()),
        }
    }
}

/// An InfluxQL identifier in double quotes.
pub fn quote_ident(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(204, "", None), Outcome::Written);
        assert_eq!(
            classify(
                400,
                r#"{"error":"partial write: field type conflict: input field \"count\" on measurement \"sip_requests\" is type integer, already exists as type float dropped=1"}"#,
                None
            ),
            Outcome::Rejected {
                status: 400,
                reason: "partial write: field type conflict: input field \"count\" on measurement \"sip_requests\" is type integer, already exists as type float dropped=1".into()
            }
        );
        assert_eq!(classify(413, "", None), Outcome::TooLarge);
        for s in [408, 429, 500, 502, 503, 401, 403, 404] {
            assert!(
                matches!(classify(s, "x", None), Outcome::Retry { .. }),
                "{s}"
            );
        }
        let Outcome::Retry { retry_after, .. } = classify(429, "", Some(Duration::from_secs(3)))
        else {
            panic!()
        };
        assert_eq!(retry_after, Some(Duration::from_secs(3)));
    }

    #[test]
    fn long_reasons_are_cut() {
        let body = "x".repeat(5000);
        let Outcome::Rejected { reason, .. } = classify(400, &body, None) else {
            panic!()
        };
        assert!(reason.len() <= MAX_REASON_BYTES + 3);
    }

    #[test]
    fn urls_keep_a_path_prefix() {
        let b = reqwest::Url::parse("http://h:1/influx/").unwrap();
        assert_eq!(join(&b, "write").as_str(), "http://h:1/influx/write");
        let b = reqwest::Url::parse("http://h:1").unwrap();
        assert_eq!(join(&b, "api/v2/write").as_str(), "http://h:1/api/v2/write");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
