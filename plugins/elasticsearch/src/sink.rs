//! [`ElasticsearchSink`]: start (version, template, pipeline check, health
//! poller), and write: encode the batch once, send it as bulk requests
//! (split by `max_documents` / `max_bytes`, `concurrency` at a time), sort
//! every item of every reply, retry what may succeed a bounded number of
//! times, dead-letter what never will, and hand what is still failing back
//! to the engine as a partial delivery ([`SinkError::with_partial`]): the
//! engine's retry sends only those documents.

use crate::bulk::{BulkEncoder, EncodedBatch};
use crate::client::{BulkClient, Control, HttpSettings, Nodes, TlsMaterial};
use crate::config::{BulkAction, ElasticsearchConfig};
use crate::dead_letter::{DeadLetter, DeadLetterWriter};
use crate::health::{self, SharedState};
use crate::index_name::IndexPattern;
use crate::metrics::EsMetrics;
use crate::response::{
    classify_item, classify_status, parse_bulk_reply, reply_error_text, BulkReply, ItemClass,
    RequestClass,
};
use crate::template::{ServerVersion, TemplateSpec};
use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use hepflow_sdk::delivery::backoff_delay;
use hepflow_sdk::ratelimit::LogLimiter;
use hepflow_sdk::sink::{Delivered, Sink, SinkContext, SinkError};
use hepflow_sdk::Event;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why items are still failing, worst first (the error handed to the
/// engine names the worst one seen).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Problem {
    /// 429/5xx items or requests.
    Overloaded(String),
    /// A 2xx reply that could not be read.
    BadReply(String),
    /// 401/403.
    Auth(String),
    /// 404/405/406/415 to the bulk request: the URL or its path prefix
    /// is wrong, or something in between refuses the request.
    Endpoint(String),
    /// No URL answered.
    Unreachable(String),
}

impl Problem {
    fn reason(&self) -> &'static str {
        match self {
            Problem::Overloaded(_) => "overloaded",
            Problem::BadReply(_) => "bad_reply",
            Problem::Auth(_) => "auth",
            Problem::Endpoint(_) => "endpoint",
            Problem::Unreachable(_) => "unreachable",
        }
    }
    fn text(&self) -> &str {
        match self {
            Problem::Overloaded(s)
            | Problem::BadReply(s)
            | Problem::Auth(s)
            | Problem::Endpoint(s)
            | Problem::Unreachable(s) => s,
        }
    }
}

/// What one bulk request (or its split halves) came to.
#[derive(Default)]
struct ChunkResult {
    indexed: Vec<usize>,
    duplicates: Vec<usize>,
    retry: Vec<usize>,
    rejected: Vec<(usize, u16, String, String, serde_json::Value)>,
    problem: Option<Problem>,
    transport_only: bool,
}

impl ChunkResult {
    fn merge(&mut self, o: ChunkResult) {
        self.indexed.extend(o.indexed);
        self.duplicates.extend(o.duplicates);
        self.retry.extend(o.retry);
        self.rejected.extend(o.rejected);
        self.transport_only &= o.transport_only;
        self.problem = match (self.problem.take(), o.problem) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Sends chunks; shared by the concurrent requests of one write.
struct Sender {
    bulk: Arc<BulkClient>,
    metrics: Arc<EsMetrics>,
    action: BulkAction,
    gzip: bool,
}

impl Sender {
    fn send<'a>(&'a self, enc: &'a EncodedBatch, idx: Vec<usize>) -> BoxFuture<'a, ChunkResult> {
        async move {
            let body = enc.body_for(&idx);
            self.metrics.bytes.add(body.len() as u64);
            let wire = if self.gzip {
                match gzip(body).await {
                    Ok(w) => w,
                    Err(e) => {
                        return ChunkResult {
                            retry: idx,
                            problem: Some(Problem::BadReply(format!("gzip failed: {e}"))),
                            ..Default::default()
                        }
                    }
                }
            } else {
                body
            };
            self.metrics.wire_bytes.add(wire.len() as u64);
            let t0 = Instant::now();
            let reply = self.bulk.send(wire).await;
            self.metrics.latency.observe(t0.elapsed());
            let reply = match reply {
                Ok(r) => r,
                Err(f) => {
                    self.metrics.request(f.kind);
                    return ChunkResult {
                        retry: idx,
                        problem: Some(Problem::Unreachable(f.message)),
                        transport_only: true,
                        ..Default::default()
                    };
                }
            };
            self.metrics.request(&reply.status.to_string());
            let status = reply.status;
            match classify_status(status) {
                RequestClass::Items => match parse_bulk_reply(&reply.body, idx.len()) {
                    Ok(BulkReply::AllOk) => ChunkResult {
                        indexed: idx,
                        ..Default::default()
                    },
                    Ok(BulkReply::Items(items)) => {
                        let mut r = ChunkResult::default();
                        for (i, item) in idx.into_iter().zip(items) {
                            match classify_item(self.action, item.status) {
                                ItemClass::Ok => r.indexed.push(i),
                                ItemClass::Duplicate => r.duplicates.push(i),
                                ItemClass::Retry => {
                                    self.metrics.item_failure(item.status, item.error_type(), 1);
                                    let p = Problem::Overloaded(format!(
                                        "item status {} {}: {}",
                                        item.status,
                                        item.error_type(),
                                        item.reason()
                                    ));
                                    let p = if matches!(item.status, 401 | 403) {
                                        Problem::Auth(p.text().to_string())
                                    } else {
                                        p
                                    };
                                    r.problem = Some(match r.problem.take() {
                                        Some(q) => q.max(p),
                                        None => p,
                                    });
                                    r.retry.push(i);
                                }
                                ItemClass::Reject => {
                                    self.metrics.item_failure(item.status, item.error_type(), 1);
                                    r.rejected.push((
                                        i,
                                        item.status,
                                        item.error_type().to_string(),
                                        item.reason(),
                                        item.error.clone().unwrap_or(serde_json::Value::Null),
                                    ));
                                }
                            }
                        }
                        r
                    }
                    Err(msg) => ChunkResult {
                        retry: idx,
                        problem: Some(Problem::BadReply(format!(
                            "{status} from {}: {msg}",
                            self.bulk_url(reply.node)
                        ))),
                        ..Default::default()
                    },
                },
                RequestClass::Retry => ChunkResult {
                    retry: idx,
                    problem: Some(Problem::Overloaded(format!(
                        "bulk request answered {status}: {}",
                        reply_error_text(&reply.body)
                    ))),
                    ..Default::default()
                },
                RequestClass::AuthRetry => ChunkResult {
                    retry: idx,
                    problem: Some(Problem::Auth(format!(
                        "bulk request answered {status} (check the sink's auth settings and the user's index privileges: create_doc/index, create_index on the index pattern): {}",
                        reply_error_text(&reply.body)
                    ))),
                    ..Default::default()
                },
                RequestClass::EndpointRetry => ChunkResult {
                    retry: idx,
                    problem: Some(Problem::Endpoint(format!(
                        "bulk request to {} answered {status} (check the URL and its path prefix in the sink's urls): {}",
                        self.bulk_url(reply.node),
                        reply_error_text(&reply.body)
                    ))),
                    ..Default::default()
                },
                RequestClass::TooLarge if idx.len() > 1 => {
                    // Split and send both halves; their items count as sent again.
                    let half = idx.len() / 2;
                    let (a, b) = (idx[..half].to_vec(), idx[half..].to_vec());
                    self.metrics.retried.add(idx.len() as u64);
                    let mut r = self.send(enc, a).await;
                    r.merge(self.send(enc, b).await);
                    r
                }
                RequestClass::TooLarge | RequestClass::Reject => {
                    let text = reply_error_text(&reply.body);
                    let error: serde_json::Value = serde_json::from_slice::<serde_json::Value>(&reply.body)
                        .ok()
                        .and_then(|v| v.get("error").cloned())
                        .unwrap_or(serde_json::Value::String(text.clone()));
                    let etype = match &error {
                        serde_json::Value::Object(m) => m
                            .get("type")
                            .and_then(|t| t.as_str())
                            .unwrap_or("request_rejected")
                            .to_string(),
                        _ => "request_rejected".to_string(),
                    };
                    self.metrics.item_failure(status, &etype, idx.len() as u64);
                    ChunkResult {
                        rejected: idx
                            .into_iter()
                            .map(|i| (i, status, etype.clone(), format!("bulk request answered {status}: {text}"), error.clone()))
                            .collect(),
                        ..Default::default()
                    }
                }
            }
        }
        .boxed()
    }

    fn bulk_url(&self, node: usize) -> String {
        self.bulk.node_url(node)
    }
}

async fn gzip(body: Bytes) -> std::io::Result<Bytes> {
    let work = move || {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4 + 64),
            flate2::Compression::fast(),
        );
        e.write_all(&body)?;
        e.finish().map(Bytes::from)
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}

/// The Elasticsearch / OpenSearch sink.
pub struct ElasticsearchSink {
    cfg: ElasticsearchConfig,
    path: String,
    ctx: SinkContext,
    encoder: Option<BulkEncoder>,
    pattern: IndexPattern,
    metrics: Arc<EsMetrics>,
    state: Arc<SharedState>,
    nodes: Arc<Nodes>,
    sender: Option<Arc<Sender>>,
    control: Option<Arc<Control>>,
    poller: Option<tokio::task::JoinHandle<()>>,
    dead_letter: Option<Arc<Mutex<DeadLetterWriter>>>,
    version: Option<ServerVersion>,
    log_rejected: LogLimiter,
    log_retry: LogLimiter,
}

impl ElasticsearchSink {
    /// Build from a checked config (no I/O). `path` is `sinks.NAME`.
    pub fn new(cfg: ElasticsearchConfig, path: &str, ctx: SinkContext) -> Result<Self, String> {
        let pattern = IndexPattern::parse(&cfg.index).map_err(|e| format!("{path}.index: {e}"))?;
        let encoder = BulkEncoder::new(pattern.clone(), cfg.action, cfg.document_id);
        let metrics = Arc::new(EsMetrics::new(&ctx.registry, &ctx.name));
        let nodes = Arc::new(Nodes::new(cfg.parsed_urls()));
        if nodes.is_empty() {
            return Err(format!(
                "{path}.urls is empty: give at least one Elasticsearch URL"
            ));
        }
        let dead_letter = cfg.dead_letter_path.clone().map(|p| {
            Arc::new(Mutex::new(DeadLetterWriter::new(
                p,
                cfg.dead_letter_max_bytes,
                &ctx.name,
                cfg.action.as_str(),
            )))
        });
        // Counted from the start, so the series exist at zero.
        ctx.failed_counter("dead_lettered");
        ctx.failed_counter("rejected");
        Ok(ElasticsearchSink {
            path: path.to_string(),
            encoder: Some(encoder),
            pattern,
            metrics,
            state: Arc::new(SharedState::default()),
            nodes,
            sender: None,
            control: None,
            poller: None,
            dead_letter,
            version: None,
            log_rejected: LogLimiter::default(),
            log_retry: LogLimiter::default(),
            cfg,
            ctx,
        })
    }

    /// The server version found at start.
    pub fn server_version(&self) -> Option<&ServerVersion> {
        self.version.as_ref()
    }

    fn build_clients(&mut self) -> Result<(), SinkError> {
        if self.sender.is_some() {
            return Ok(());
        }
        let cfg = &self.cfg;
        let tls = TlsMaterial::load(&cfg.tls, &self.path)
            .map_err(|e| SinkError::retryable("config", e))?;
        let settings = HttpSettings::new(cfg, tls)
            .map_err(|e| SinkError::retryable("config", format!("{}.auth: {e}", self.path)))?;
        let control = Control::new(&settings, self.nodes.clone())
            .map_err(|e| SinkError::retryable("config", format!("{}: {e}", self.path)))?;
        let bulk = BulkClient::new(
            &settings,
            self.nodes.clone(),
            cfg.pipeline.as_deref(),
            cfg.gzip,
            cfg.max_response_bytes,
        )
        .map_err(|e| SinkError::retryable("config", format!("{}: {e}", self.path)))?;
        self.control = Some(Arc::new(control));
        self.sender = Some(Arc::new(Sender {
            bulk: Arc::new(bulk),
            metrics: self.metrics.clone(),
            action: cfg.action,
            gzip: cfg.gzip,
        }));
        Ok(())
    }

    async fn encode(&mut self, batch: &[Event]) -> Result<EncodedBatch, SinkError> {
        let mut enc = match self.encoder.take() {
            Some(e) => e,
            None => BulkEncoder::new(self.pattern.clone(), self.cfg.action, self.cfg.document_id),
        };
        let events = batch.to_vec();
        match tokio::task::spawn_blocking(move || {
            let out = enc.encode_batch(&events);
            (enc, out)
        })
        .await
        {
            Ok((enc, out)) => {
                self.encoder = Some(enc);
                Ok(out)
            }
            Err(e) => Err(SinkError::retryable(
                "encode",
                format!("encoding the bulk body failed: {e}"),
            )),
        }
    }

    /// Split the outstanding items into requests within the limits.
    fn chunks(&self, enc: &EncodedBatch, idx: &[usize]) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        let mut cur = Vec::new();
        let mut bytes = 0usize;
        for &i in idx {
            let len = enc.item_len(i);
            if !cur.is_empty()
                && (cur.len() >= self.cfg.max_documents || bytes + len > self.cfg.max_bytes)
            {
                out.push(std::mem::take(&mut cur));
                bytes = 0;
            }
            cur.push(i);
            bytes += len;
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    fn action_meta(enc: &EncodedBatch, i: usize) -> (String, Option<String>) {
        let s = enc.items[i];
        let line = &enc.body[s.start..s.doc_start];
        let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
        let meta = v
            .as_object()
            .and_then(|m| m.values().next())
            .cloned()
            .unwrap_or_default();
        (
            meta.get("_index")
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string(),
            meta.get("_id").and_then(|x| x.as_str()).map(str::to_string),
        )
    }

    async fn reject(
        &mut self,
        enc: &EncodedBatch,
        rejected: Vec<(usize, u16, String, String, serde_json::Value)>,
    ) {
        if rejected.is_empty() {
            return;
        }
        let n = rejected.len() as u64;
        let first = rejected[0].clone();
        let letters: Vec<DeadLetter> = rejected
            .into_iter()
            .map(|(i, status, error_type, reason, error)| {
                let (index, id) = Self::action_meta(enc, i);
                let s = enc.items[i];
                DeadLetter {
                    index,
                    id,
                    status,
                    error_type,
                    reason,
                    error,
                    document: enc.body.slice(s.doc_start..s.end - 1),
                }
            })
            .collect();
        let index = letters[0].index.clone();
        let (written, where_) = match &self.dead_letter {
            Some(w) => {
                let w = w.clone();
                let res = tokio::task::spawn_blocking(move || {
                    let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
                    let r = g.write(&letters);
                    (r, g.path().display().to_string())
                })
                .await;
                match res {
                    Ok((Ok(()), p)) => (true, format!("written to the dead-letter file {p}")),
                    Ok((Err(e), p)) => (
                        false,
                        format!("LOST: the dead-letter file {p} cannot be written ({e}); check its directory and free space"),
                    ),
                    Err(e) => (false, format!("LOST: the dead-letter writer failed ({e})")),
                }
            }
            None => (
                false,
                format!(
                    "counted as rejected and not kept (set {}.dead_letter_path to keep them)",
                    self.path
                ),
            ),
        };
        if written {
            self.metrics.dead_lettered.add(n);
            self.ctx.failed("dead_lettered", n);
        } else {
            self.ctx.failed("rejected", n);
        }
        if let Some(suppressed) = self.log_rejected.allow() {
            tracing::warn!(
                sink = %self.ctx.name,
                documents = n,
                status = first.1,
                error_type = %first.2,
                index = %index,
                reason = %first.3,
                suppressed,
                "the cluster refused documents for good; {where_}"
            );
        }
    }

    fn item_backoff(&self, attempt: u32) -> Duration {
        let base = self.cfg.item_backoff;
        backoff_delay(attempt.saturating_sub(1), base, base.saturating_mul(10))
    }
}

#[async_trait]
impl Sink for ElasticsearchSink {
    async fn start(&mut self) -> Result<(), SinkError> {
        self.build_clients()?;
        let control = match &self.control {
            Some(c) => c.clone(),
            None => return Err(SinkError::retryable("config", "clients not built")),
        };
        if self.poller.is_none() {
            self.poller = Some(health::spawn(
                self.ctx.name.clone(),
                control.clone(),
                self.ctx.health.clone(),
                self.state.clone(),
                self.metrics.clone(),
                self.cfg.health_interval,
            ));
        }
        let (node, info) = control.info().await.map_err(|e| {
            SinkError::retryable(
                "unreachable",
                format!("cannot reach the cluster to read its version: {e}"),
            )
        })?;
        let version = ServerVersion::from_info(&info)
            .and_then(|v| v.check_supported().map(|_| v))
            .map_err(|e| {
                SinkError::retryable("unsupported", format!("{}: {e}", self.nodes.url(node)))
            })?;
        if self.cfg.manage_template {
            let spec = TemplateSpec {
                pattern: self.pattern.wildcard(),
                priority: self.cfg.template_priority,
                shards: self.cfg.number_of_shards,
                replicas: self.cfg.number_of_replicas,
                keyword_ignore_above: self.cfg.keyword_ignore_above,
                payload_keyword_ignore_above: self.cfg.payload_keyword_ignore_above,
            };
            let composable = version.composable_templates();
            let body = if composable {
                spec.composable_body()
            } else {
                spec.legacy_body()
            };
            let name = self.cfg.template_name(&self.ctx.name);
            control
                .put_template(&name, &body, composable)
                .await
                .map_err(|e| {
                    SinkError::retryable(
                        "template",
                        format!("cannot install the index template (set {}.manage_template = false to manage it yourself): {e}", self.path),
                    )
                })?;
            tracing::info!(sink = %self.ctx.name, template = %name, pattern = %spec.pattern, composable, "index template installed");
        }
        if let Some(p) = &self.cfg.pipeline {
            let exists = control.pipeline_exists(p).await.map_err(|e| {
                SinkError::retryable(
                    "unreachable",
                    format!("cannot check the ingest pipeline: {e}"),
                )
            })?;
            if !exists {
                return Err(SinkError::retryable(
                    "pipeline",
                    format!(
                        "the ingest pipeline {p:?} does not exist on the cluster: create it (PUT _ingest/pipeline/{p}) or remove {}.pipeline",
                        self.path
                    ),
                ));
            }
        }
        tracing::info!(
            sink = %self.ctx.name,
            server = %version.describe(),
            url = %self.nodes.url(node),
            index = %self.cfg.index,
            "connected to the search cluster"
        );
        self.version = Some(version);
        self.state.started.store(true, Ordering::Release);
        Ok(())
    }

    async fn write(&mut self, batch: &[Event]) -> Result<Delivered, SinkError> {
        if batch.is_empty() {
            return Ok(Delivered::default());
        }
        let sender = match &self.sender {
            Some(s) => s.clone(),
            None => {
                self.start().await?;
                self.sender
                    .clone()
                    .ok_or_else(|| SinkError::retryable("config", "not started"))?
            }
        };
        let enc = self.encode(batch).await?;
        let mut outstanding: Vec<usize> = (0..batch.len()).collect();
        let mut delivered = Delivered::default();
        let mut attempt = 0u32;
        loop {
            let chunks = self.chunks(&enc, &outstanding);
            let conc = self.cfg.concurrency;
            let results: Vec<ChunkResult> = futures::stream::iter(chunks)
                .map(|c| sender.send(&enc, c))
                .buffer_unordered(conc)
                .collect()
                .await;
            let mut all = ChunkResult {
                transport_only: true,
                ..Default::default()
            };
            for r in results {
                all.merge(r);
            }
            let ok = all.indexed.len() + all.duplicates.len();
            self.metrics.indexed.add(all.indexed.len() as u64);
            self.metrics.duplicates.add(all.duplicates.len() as u64);
            delivered.events += ok as u64;
            delivered.bytes += all
                .indexed
                .iter()
                .chain(&all.duplicates)
                .map(|&i| enc.item_len(i) as u64)
                .sum::<u64>();
            let rejected = std::mem::take(&mut all.rejected);
            self.reject(&enc, rejected).await;
            self.metrics.urls_paused.set(self.nodes.paused() as i64);
            if all.retry.is_empty() {
                self.state.writes_failing.store(false, Ordering::Release);
                return Ok(delivered);
            }
            all.retry.sort_unstable();
            outstanding = all.retry;
            attempt += 1;
            let problem = all
                .problem
                .unwrap_or_else(|| Problem::Overloaded("items to retry".into()));
            if attempt >= self.cfg.item_attempts || all.transport_only {
                let msg = format!(
                    "{} of {} documents not indexed yet after {attempt} attempt(s) ({} indexed or already there); the engine retries them: {}",
                    outstanding.len(),
                    batch.len(),
                    delivered.events,
                    problem.text()
                );
                // The engine sends these again as a batch of their own.
                self.metrics.retried.add(outstanding.len() as u64);
                self.state.writes_failing.store(true, Ordering::Release);
                return Err(SinkError::retryable(problem.reason(), msg)
                    .with_partial(delivered, outstanding));
            }
            if let Some(suppressed) = self.log_retry.allow() {
                tracing::warn!(sink = %self.ctx.name, documents = outstanding.len(), attempt, problem = %problem.text(), suppressed, "retrying documents the cluster could not take");
            }
            self.metrics.retried.add(outstanding.len() as u64);
            tokio::time::sleep(self.item_backoff(attempt)).await;
        }
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
        if let Some(w) = &self.dead_letter {
            let w = w.clone();
            let _ = tokio::task::spawn_blocking(move || {
                w.lock().unwrap_or_else(|e| e.into_inner()).flush()
            })
            .await;
        }
        Ok(())
    }
}

impl Drop for ElasticsearchSink {
    fn drop(&mut self) {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
    }
}
