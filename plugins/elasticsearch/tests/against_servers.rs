//! The sink's parts against the real test servers (osmem-server and
//! noida-db, started by `tests/services/services.sh`), without the hub:
//! version detection and template install on both, failover of bulk
//! requests to the next URL, the health poller, a missing ingest pipeline
//! refused at start with what to do, duplicates within one batch, and no
//! password in any error. A missing `HEPFLOW_TEST_*` variable fails the
//! test with what to run.
#![cfg(live_services)]

use bytes::Bytes;
use hepflow_elasticsearch::client::{BulkClient, Control, HttpSettings, Nodes, TlsMaterial};
use hepflow_elasticsearch::config::parse_url;
use hepflow_elasticsearch::health::{poll_once, SharedState};
use hepflow_elasticsearch::metrics::EsMetrics;
use hepflow_elasticsearch::{ElasticsearchConfig, ElasticsearchSink};
use hepflow_sdk::hep::HepMessage;
use hepflow_sdk::ratelimit::LogLimiter;
use hepflow_sdk::sink::{Sink, SinkContext, TypedSinkFactory};
use hepflow_sdk::Event;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn require_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run `bash tests/run.sh`, or start the test services \
             (`bash tests/services/services.sh start`) and source their env file \
             (`set -a; . /tmp/hepflow-services/env; set +a`)"
        )
    })
}

#[path = "../../../tests/common/ports.rs"]
mod ports;

/// A URL nobody listens on, nor is given by `bind(0)` meanwhile.
fn dead_url() -> String {
    format!("http://127.0.0.1:{}", ports::restart_port())
}

fn config(v: serde_json::Value) -> ElasticsearchConfig {
    hepflow_elasticsearch::ElasticsearchSinkFactory::parse("sinks.search", &v)
        .unwrap_or_else(|e| panic!("{e:?}"))
}

fn unique(name: &str) -> String {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros()
        % 10_000_000_000;
    format!("p{}-{t}-{name}", std::process::id())
}

fn event(payload: &str) -> Event {
    let mut m = HepMessage::new_v3(Bytes::from(payload.to_string()));
    m.proto_type = 1;
    m.ts_sec = 1_764_158_400;
    m.capture_id = 7;
    Event::received_over_udp(&m, "127.0.0.1:5060".parse().unwrap(), SystemTime::now()).unwrap()
}

fn settings(cfg: &ElasticsearchConfig) -> HttpSettings {
    HttpSettings::new(cfg, TlsMaterial::load(&cfg.tls, "sinks.search").unwrap()).unwrap()
}

async fn get_json(url: &str, path: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("{url}{path}")).await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn start_reads_the_version_and_installs_the_template_on_both_servers() {
    for (var, want) in [
        ("HEPFLOW_TEST_OSMEM_URL", "OpenSearch 3.8.0"),
        ("HEPFLOW_TEST_NOIDA_ES_URL", "Elasticsearch 8.15.3"),
    ] {
        let url = require_env(var);
        let p = unique("tmpl");
        let cfg = config(json!({
            "urls": [url],
            "index": format!("{p}-{{proto}}-%Y.%m.%d"),
            "template_name": p,
            "number_of_shards": 1,
        }));
        let ctx = SinkContext::for_tests("search");
        let mut sink = ElasticsearchSink::new(cfg, "sinks.search", ctx).unwrap();
        sink.start().await.unwrap_or_else(|e| panic!("{var}: {e}"));
        assert_eq!(sink.server_version().unwrap().describe(), want);
        let (status, t) = get_json(&url, &format!("/_index_template/{p}")).await;
        assert_eq!(status, 200, "{t}");
        let tmpl = &t["index_templates"][0]["index_template"];
        assert_eq!(tmpl["index_patterns"][0], format!("{p}-*-*.*.*"), "{t}");
        assert_eq!(
            tmpl["template"]["mappings"]["properties"]["src_ip"]["type"], "ip",
            "{t}"
        );
        sink.close().await.unwrap();
    }
}

#[tokio::test]
async fn bulk_requests_fail_over_to_the_next_url() {
    let url = require_env("HEPFLOW_TEST_OSMEM_URL");
    let dead = dead_url();
    let cfg = config(json!({"urls": [dead, url], "connect_timeout": "1s"}));
    let nodes = Arc::new(Nodes::new(vec![
        parse_url(&dead).unwrap(),
        parse_url(&url).unwrap(),
    ]));
    let client = BulkClient::new(&settings(&cfg), nodes.clone(), None, false, 1 << 20).unwrap();
    let index = unique("failover");
    // The first request starts at the dead URL, fails over to the live one.
    for i in 0..3 {
        let body =
            format!("{{\"create\":{{\"_index\":\"{index}\",\"_id\":\"{i}\"}}}}\n{{\"n\":{i}}}\n");
        let reply = client.send(Bytes::from(body)).await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.node, 1, "answered by the live URL");
    }
    assert_eq!(nodes.paused(), 1, "the dead URL is paused");
    let (_, c) = get_json(&url, &format!("/{index}/_count")).await;
    assert_eq!(c["count"], 3);
}

#[tokio::test]
async fn the_health_poller_follows_the_cluster() {
    let url = require_env("HEPFLOW_TEST_OSMEM_URL");
    let ctx = SinkContext::for_tests("search");
    let metrics = EsMetrics::new(&ctx.registry, "search");
    let state = SharedState::default();
    let mut log = LogLimiter::default();
    // Unreachable: not ready, status 3.
    let dead = dead_url();
    let cfg = config(json!({"urls": [dead]}));
    let nodes = Arc::new(Nodes::new(vec![parse_url(&dead).unwrap()]));
    let control = Control::new(&settings(&cfg), nodes).unwrap();
    poll_once("search", &control, &ctx.health, &state, &metrics, &mut log).await;
    assert!(!ctx.health.is_ready());
    assert!(
        ctx.health.detail().contains("cluster unreachable"),
        "{}",
        ctx.health.detail()
    );
    assert_eq!(metrics.cluster_status.get(), 3);
    // Reachable but the sink not started yet: stays unready.
    let cfg = config(json!({"urls": [url]}));
    let nodes = Arc::new(Nodes::new(vec![parse_url(&url).unwrap()]));
    let control = Control::new(&settings(&cfg), nodes).unwrap();
    poll_once("search", &control, &ctx.health, &state, &metrics, &mut log).await;
    assert!(!ctx.health.is_ready());
    assert!(matches!(metrics.cluster_status.get(), 0 | 1));
    // Started, writes fine: ready.
    state.started.store(true, Ordering::Release);
    poll_once("search", &control, &ctx.health, &state, &metrics, &mut log).await;
    assert!(ctx.health.is_ready());
    // Writes failing: the poller does not claim ready.
    ctx.health.set_unready("write failing");
    state.writes_failing.store(true, Ordering::Release);
    poll_once("search", &control, &ctx.health, &state, &metrics, &mut log).await;
    assert!(!ctx.health.is_ready());
}

#[tokio::test]
async fn a_missing_ingest_pipeline_is_refused_at_start_with_what_to_do() {
    let url = require_env("HEPFLOW_TEST_NOIDA_ES_URL");
    let p = unique("nopipe");
    let cfg = config(json!({
        "urls": [url],
        "index": format!("{p}-%Y"),
        "template_name": p,
        "pipeline": "no-such-pipeline",
    }));
    let mut sink =
        ElasticsearchSink::new(cfg, "sinks.search", SinkContext::for_tests("search")).unwrap();
    let e = sink.start().await.unwrap_err();
    assert!(e.retryable);
    assert!(
        e.message.contains("\"no-such-pipeline\" does not exist")
            && e.message.contains("PUT _ingest/pipeline/no-such-pipeline")
            && e.message.contains("sinks.search.pipeline"),
        "{e}"
    );
}

#[tokio::test]
async fn no_password_in_start_errors() {
    let password = "Sup3r-Secret-Passw0rd";
    let cfg = config(json!({
        "urls": [dead_url()],
        "connect_timeout": "1s",
        "auth": {"username": "hepflow", "password": password},
    }));
    let ctx = SinkContext::for_tests("search");
    let registry = ctx.registry.clone();
    let mut sink = ElasticsearchSink::new(cfg.clone(), "sinks.search", ctx).unwrap();
    let e = sink.start().await.unwrap_err();
    assert!(e.message.contains("cannot reach the cluster"), "{e}");
    assert!(!e.message.contains(password));
    assert!(!format!("{e:?}").contains(password));
    assert!(!format!("{cfg:?}").contains(password));
    assert!(!registry.render_prometheus().contains(password));
}

#[tokio::test]
async fn the_same_message_twice_in_a_batch_is_indexed_once_and_counted() {
    let url = require_env("HEPFLOW_TEST_OSMEM_URL");
    let p = unique("dup");
    let cfg = config(json!({"urls": [url], "index": format!("{p}-%Y"), "template_name": p}));
    let ctx = SinkContext::for_tests("search");
    let registry = ctx.registry.clone();
    let mut sink = ElasticsearchSink::new(cfg, "sinks.search", ctx).unwrap();
    sink.start().await.unwrap();
    let a = event("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: dup-1\r\n\r\n");
    let b = event("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: dup-2\r\n\r\n");
    let d = sink.write(&[a.clone(), b, a]).await.unwrap();
    assert_eq!(d.events, 3, "the copy is delivered: it is in the index");
    assert_eq!(
        registry.value("hepflow_es_duplicates_total", &[("sink", "search")]),
        Some(1.0)
    );
    assert_eq!(
        registry.value("hepflow_es_documents_indexed_total", &[("sink", "search")]),
        Some(2.0)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, c) = get_json(&url, &format!("/{p}-2025/_count")).await;
    assert_eq!(c["count"], 2, "{c}");
    sink.close().await.unwrap();
}

#[tokio::test]
async fn max_bytes_splits_requests_and_manage_template_false_installs_nothing() {
    let url = require_env("HEPFLOW_TEST_OSMEM_URL");
    let p = unique("split");
    let cfg = config(json!({
        "urls": [url],
        "index": format!("{p}-%Y"),
        "template_name": p,
        "manage_template": false,
        "max_bytes": 1024,
        "concurrency": 2,
    }));
    let ctx = SinkContext::for_tests("search");
    let registry = ctx.registry.clone();
    let mut sink = ElasticsearchSink::new(cfg, "sinks.search", ctx).unwrap();
    sink.start().await.unwrap();
    let (status, _) = get_json(&url, &format!("/_index_template/{p}")).await;
    assert_eq!(status, 404, "no template installed");
    // Each item is over 600 bytes: at most one per 1024-byte request.
    let pad = "x".repeat(600);
    let batch: Vec<Event> = (0..5)
        .map(|i| {
            event(&format!(
                "MESSAGE sip:a@b SIP/2.0\r\nCall-ID: split-{i}\r\n\r\n{pad}"
            ))
        })
        .collect();
    let d = sink.write(&batch).await.unwrap();
    assert_eq!(d.events, 5);
    assert_eq!(
        registry.value(
            "hepflow_es_bulk_requests_total",
            &[("sink", "search"), ("status", "200")]
        ),
        Some(5.0)
    );
    let (_, c) = get_json(&url, &format!("/{p}-2025/_count")).await;
    assert_eq!(c["count"], 5, "{c}");
    sink.close().await.unwrap();
}
