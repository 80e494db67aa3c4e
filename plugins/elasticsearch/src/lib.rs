//! The `elasticsearch` sink: every event as one JSON document (the SDK's
//! event document, [`hepflow_sdk::document`]) indexed through the `_bulk`
//! API of Elasticsearch 7, 8 or OpenSearch, into indices named from the
//! **packet's own** timestamp (`hep-{proto}-%Y.%m.%d` by default), with
//! nothing dropped silently.
//!
//! # What it does
//!
//! - **Start** (retried by the engine until it succeeds; hepflow runs and
//!   queues meanwhile): reads the server's version (`GET /`), installs an
//!   index template with explicit mappings built from
//!   [`DOCUMENT_FIELDS`](hepflow_sdk::document::DOCUMENT_FIELDS) (composable
//!   `_index_template`, or legacy `_template` on Elasticsearch 7.0-7.7; no
//!   mapping types anywhere), checks the ingest pipeline exists, and starts
//!   the cluster health poller that drives `/ready`.
//! - **Write**: encodes the batch once ([`bulk`]), splits it into bulk
//!   requests (`max_documents`, `max_bytes`), sends up to `concurrency` at
//!   once, spread round-robin over `urls` with failover ([`client`]).
//!   Each reply is sorted item by item ([`response`]): indexed, duplicate
//!   (409 on `create`: already there, e.g. a retried batch with hash ids),
//!   retry (429, 5xx: up to `item_attempts` times in the write, then the
//!   engine's backoff takes over and only those items are sent again), or
//!   rejected (other 4xx: to the dead-letter file with the server's
//!   reason, [`dead_letter`]). Every outcome is counted ([`metrics`]);
//!   refusals are logged, rate-limited.
//! - **Secrets**: credentials live only in a sensitive `Authorization`
//!   header; URLs with credentials are refused at config time; the HEP
//!   auth key is neither in the document nor in the id hash.
//!
//! # Why part of it does not go through the `elasticsearch` crate
//!
//! The control-plane calls (`GET /`, the template, the pipeline check,
//! `GET /_cluster/health`) use the official `elasticsearch` crate (rustls),
//! one client per URL. The `_bulk` requests use `reqwest` (the same HTTP
//! stack the crate is built on) directly, because the crate cannot:
//!
//! - read a reply with a byte bound: its `Response` only offers the whole
//!   body (`bytes()`, `json()`), and every buffer here must be bounded
//!   (`max_response_bytes`);
//! - fail over within one request: its multi-node pool hands out the next
//!   URL round-robin but neither retries a request on the next URL when one
//!   is unreachable nor pauses a failed URL; the sink needs per-URL backoff
//!   of its own ([`client::Nodes`], shared by both clients);
//! - send the bulk body the way strict servers want it without per-call
//!   overrides: the crate (9.1.0-alpha.1) puts `Content-Type:
//!   application/json` on every request and serializes bodies itself;
//!   here the body goes as pre-encoded bytes ending in `\n` (osmem-server,
//!   like OpenSearch, answers 400 to a body without the final newline, and
//!   406 to any media type but `application/json` / `application/x-ndjson`,
//!   including the Elasticsearch 8 compatibility type) with `Content-Type:
//!   application/x-ndjson`, optionally gzipped by us (`Content-Encoding:
//!   gzip`). This one alone could be worked around with per-request
//!   headers; the two above cannot.
//!
//! # Batching
//!
//! How many events one write gets and how long the engine waits for a
//! batch to fill (its max age) are the engine's `[sinks.NAME.batch]
//! max_events` / `max_wait`; the plugin bounds each request by
//! `max_documents` and `max_bytes`.

pub mod bulk;
pub mod client;
pub mod config;
pub mod dead_letter;
pub mod health;
pub mod index_name;
pub mod metrics;
pub mod response;
pub mod sink;
pub mod template;

pub use config::ElasticsearchConfig;
pub use sink::ElasticsearchSink;

use hepflow_sdk::sink::{Sink, SinkContext, TypedSinkFactory};

/// Builds `type = "elasticsearch"` sinks.
pub struct ElasticsearchSinkFactory;

impl TypedSinkFactory for ElasticsearchSinkFactory {
    const KIND: &'static str = "elasticsearch";
    type Config = ElasticsearchConfig;

    fn check(config: &ElasticsearchConfig, path: &str) -> Vec<String> {
        config.check(path)
    }

    fn build_sink(
        config: ElasticsearchConfig,
        path: &str,
        ctx: SinkContext,
    ) -> Result<Box<dyn Sink>, String> {
        Ok(Box::new(ElasticsearchSink::new(config, path, ctx)?))
    }
}
