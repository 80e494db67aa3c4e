//! End to end through the real `hepflow` binary: the `elasticsearch` sink
//! against the real test servers started by `tests/services/services.sh`
//! (osmem-server, an OpenSearch-API server, strict; noida-db, claiming
//! Elasticsearch 8.15, lenient with a one-second refresh), fed the real
//! corpus captures over UDP.
//!
//! - The corpus lands as exactly the documents the file sink writes for
//!   the same messages (compared as JSON), in indices named from the
//!   packets' own dates, with the template's mappings (`_mapping`), found
//!   by Call-ID (`_count` / `_search`), on both servers; on osmem behind a
//!   dead first URL (failover), in small requests, with basic auth whose
//!   password must not appear anywhere; on noida gzipped and through an
//!   ingest pipeline.
//! - A pre-created index with a conflicting mapping: its documents land in
//!   the dead-letter file with the server's reason, the others are indexed.
//! - The backend is down when hepflow starts and comes up 10 s later (an
//!   osmem-server instance of the test's own): with `when_full = "block"`
//!   every message arrives exactly once.
//! - A 413, a 429 storm and half-failed bulk replies, made by **`FaultProxy`, a
//!   hand-written MOCK** (no real server can be told to produce them):
//!   a small HTTP proxy in front of the real osmem-server that passes
//!   everything through except the bulk requests it is told to break. The
//!   retried documents arrive once and the counters say what happened;
//!   the API key goes with every request and nowhere else.
//! - TLS: a TLS terminator made in the test (tokio-rustls, certificates
//!   from rcgen; it forwards the decrypted bytes to the real osmem-server,
//!   it is not a mock of the API) requiring a client certificate: with
//!   `ca_file` and the client certificate everything arrives; without the
//!   CA nothing is sent and the start error names the certificate
//!   problem; `insecure_skip_verify` accepts the unknown CA.
//! - `hepflow validate` refuses a sink without URLs and with a bad index
//!   pattern, saying what to do.
//!
//! A missing `HEPFLOW_TEST_*` variable fails the test with what to run;
//! without any (a bare `cargo test`), the file is not compiled
//! (`tests/services/live_services.rs`).
#![cfg(live_services)]

mod common;

use common::pki::TestPki;
use common::*;
use hepflow_sdk::hep::{decode, proto_type_name, DecodeOptions};
use hepflow_sdk::sip::SipSummary;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ------------------------------------------------------------ helpers

fn require_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run `bash tests/run.sh`, or start the test services \
             (`bash tests/services/services.sh start`) and source their env file \
             (`set -a; . /tmp/hepflow-services/env; set +a`)"
        )
    })
}

/// A JSON request to a search server; returns status and JSON body.
fn es(url: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let b = body.map(|v| v.to_string()).unwrap_or_default();
    let (status, resp) = http(addr_of(url), method, path, "application/json", b.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {url}{path}: {e}"));
    (status, serde_json::from_slice(&resp).unwrap_or(Value::Null))
}

fn refresh(url: &str, pattern: &str) {
    let _ = es(url, "POST", &format!("/{pattern}/_refresh"), None);
}

fn count(url: &str, pattern: &str, query: Option<Value>) -> u64 {
    refresh(url, pattern);
    let body = query.map(|q| json!({ "query": q }));
    let (status, v) = es(url, "POST", &format!("/{pattern}/_count"), body);
    if status == 404 {
        return 0;
    }
    assert_eq!(status, 200, "_count on {pattern}: {v}");
    v["count"].as_u64().unwrap_or_else(|| panic!("_count: {v}"))
}

/// Every `_source` (with `_index`, `_id`) under `pattern`.
fn search_all(url: &str, pattern: &str) -> Vec<(String, String, Value)> {
    refresh(url, pattern);
    let (status, v) = es(
        url,
        "POST",
        &format!("/{pattern}/_search"),
        Some(json!({"size": 1000, "query": {"match_all": {}}})),
    );
    assert_eq!(status, 200, "_search {pattern}: {v}");
    v["hits"]["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("_search: {v}"))
        .iter()
        .map(|h| {
            (
                h["_index"].as_str().unwrap().to_string(),
                h["_id"].as_str().unwrap_or("").to_string(),
                h["_source"].clone(),
            )
        })
        .collect()
}

/// Wait until `_count` of `pattern` reaches `want` (or time out); return it.
fn wait_count(url: &str, pattern: &str, want: u64, timeout: Duration) -> u64 {
    let mut n = 0;
    wait_until(timeout, || {
        n = count(url, pattern, None);
        n >= want
    });
    n
}

/// A per-run unique index prefix (lower case).
fn prefix(name: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 1_000_000_000;
    format!("t{}-{t}-{name}", std::process::id())
}

/// The corpus messages of the UDP captures.
fn udp_corpus() -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for (file, n) in UDP_CORPUS {
        let msgs = corpus_messages(file);
        assert_eq!(msgs.len(), n, "{file}");
        all.extend(msgs);
    }
    all
}

/// What the test expects of each message, worked out here from the
/// decoded packet (not by the plugin's code): its index name under
/// `prefix-{proto}-%Y.%m.%d` and its Call-ID.
struct Expected {
    index: BTreeMap<String, u64>,
    call_ids: BTreeMap<String, u64>,
}

fn expected(prefix: &str, msgs: &[Vec<u8>]) -> Expected {
    let today = chrono::Utc::now().format("%Y.%m.%d").to_string();
    let mut index = BTreeMap::new();
    let mut call_ids = BTreeMap::new();
    for m in msgs {
        let hep = decode(bytes::Bytes::from(m.clone()), &DecodeOptions::default())
            .expect("corpus decodes");
        let date = if hep.ts_sec == 0 {
            today.clone()
        } else {
            chrono::DateTime::from_timestamp(i64::from(hep.ts_sec), 0)
                .unwrap()
                .format("%Y.%m.%d")
                .to_string()
        };
        let proto = proto_type_name(hep.proto_type)
            .map(str::to_string)
            .unwrap_or_else(|| hep.proto_type.to_string());
        *index.entry(format!("{prefix}-{proto}-{date}")).or_insert(0) += 1;
        if hep.proto_type == 1 {
            if let Some(cid) =
                SipSummary::parse(&hep.payload).and_then(|s| s.call_id.map(|c| c.to_string()))
            {
                *call_ids.entry(cid).or_insert(0) += 1;
            }
        }
    }
    Expected { index, call_ids }
}

/// Each Call-ID of `exp` is counted under `pattern` as often as it was sent.
fn assert_call_ids(url: &str, pattern: &str, exp: &Expected) {
    for (cid, k) in &exp.call_ids {
        assert_eq!(
            count(url, pattern, Some(json!({"term": {"call_id": cid}}))),
            *k,
            "{cid}"
        );
    }
}

/// Every message arrived once: `n` documents under `pattern` with `n`
/// distinct ids, each Call-ID as often as it was sent. Returns the
/// documents (`_index`, `_id`, `_source`).
fn assert_each_once(
    url: &str,
    pattern: &str,
    n: usize,
    exp: &Expected,
) -> Vec<(String, String, Value)> {
    assert_eq!(count(url, pattern, None), n as u64, "each message once");
    let hits = search_all(url, pattern);
    let ids: BTreeSet<&str> = hits.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), n, "distinct ids");
    assert_call_ids(url, pattern, exp);
    hits
}

fn canonical(v: &Value) -> String {
    // serde_json maps are sorted by key: to_string is canonical.
    v.to_string()
}

/// The indexed documents under `prefix-*` are exactly the file sink's
/// documents, each index holds the expected count, every Call-ID is found
/// as often as it was sent, and the mappings are the template's.
fn check_corpus_indexed(url: &str, h: &Hepflow, prefix: &str, exp: &Expected) {
    let pattern = format!("{prefix}-*");
    let total: u64 = exp.index.values().sum();
    let got = wait_count(url, &pattern, total, Duration::from_secs(30));
    assert_eq!(
        got,
        total,
        "documents under {pattern}; log:\n{}",
        h.log_text()
    );
    // Same documents as the file sink wrote for the same messages (once
    // it has written them all: the two sinks run independently).
    h.expect_metric(FILES_SENT, total as f64);
    let files: Vec<String> = h.documents().iter().map(canonical).collect();
    let hits = search_all(url, &pattern);
    let mut indexed: Vec<String> = hits.iter().map(|(_, _, s)| canonical(s)).collect();
    let mut files_sorted = files.clone();
    files_sorted.sort();
    indexed.sort();
    assert_eq!(indexed.len(), files_sorted.len());
    assert!(
        indexed == files_sorted,
        "indexed documents differ from the file sink's"
    );
    // Index names from the packets' own dates.
    let mut per_index: BTreeMap<String, u64> = BTreeMap::new();
    for (idx, _, _) in &hits {
        *per_index.entry(idx.clone()).or_insert(0) += 1;
    }
    assert_eq!(per_index, exp.index, "documents per index");
    for (idx, n) in &exp.index {
        assert_eq!(count(url, idx, None), *n, "_count of {idx}");
    }
    // Ids: one per document, none repeated.
    let ids: BTreeSet<&str> = hits.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len() as u64, total, "distinct _id");
    // Call-ID search.
    assert!(!exp.call_ids.is_empty());
    for (cid, n) in &exp.call_ids {
        let c = count(url, &pattern, Some(json!({"term": {"call_id": cid}})));
        assert_eq!(c, *n, "_count of call_id {cid}");
        refresh(url, &pattern);
        let (_, v) = es(
            url,
            "POST",
            &format!("/{pattern}/_search"),
            Some(json!({"size": 100, "query": {"term": {"call_id": cid}}})),
        );
        let found = v["hits"]["hits"].as_array().map(Vec::len).unwrap_or(0) as u64;
        assert_eq!(found, *n, "_search of call_id {cid}: {v}");
    }
    // The template's mappings are in place.
    for idx in exp.index.keys() {
        let (status, m) = es(url, "GET", &format!("/{idx}/_mapping"), None);
        assert_eq!(status, 200, "{idx}/_mapping: {m}");
        let p = &m[idx.as_str()]["mappings"]["properties"];
        assert_eq!(p["@timestamp"]["type"], "date", "{idx}: {m}");
        assert_eq!(p["received_at"]["type"], "date", "{idx}");
        assert_eq!(p["src_ip"]["type"], "ip", "{idx}");
        assert_eq!(p["dst_ip"]["type"], "ip", "{idx}");
        assert_eq!(p["call_id"]["type"], "keyword", "{idx}");
        assert_eq!(p["node_name"]["type"], "keyword", "{idx}");
        assert_eq!(p["src_port"]["type"], "long", "{idx}");
        assert_eq!(p["payload"]["type"], "text", "{idx}");
        assert_eq!(
            p["payload"]["fields"]["keyword"]["type"], "keyword",
            "{idx}"
        );
        assert!(
            p["payload"]["fields"]["keyword"]["ignore_above"].is_number(),
            "{idx}"
        );
        assert!(
            m[idx.as_str()]["mappings"].get("_doc").is_none(),
            "mapping type in {idx}"
        );
    }
}

/// The sent counter of the sink `search` every test configures.
const SENT: &str = "hepflow_sink_sent_total{sink=\"search\"}";

/// The sent counter of the harness's file sink `files`.
const FILES_SENT: &str = "hepflow_sink_sent_total{sink=\"files\"}";

fn metric_of(h: &Hepflow, series: &str) -> f64 {
    metric(&h.metrics(), series)
}

/// Value of one series, `None` while it is not exported (where [`metric`]
/// reads 0).
fn series(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, v) = l.rsplit_once(' ')?;
        (name == series).then(|| v.parse().ok())?
    })
}

fn search_sink_toml(name: &str, urls: &[String], prefix: &str, extra: &str) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        r#"
[sinks.{name}]
type = "elasticsearch"
urls = [{}]
index = "{prefix}-{{proto}}-%Y.%m.%d"
template_name = "{prefix}"
health_interval = "1s"
{extra}
"#,
        urls.join(", ")
    )
}

// -------------------------------------------------------------- tests

#[test]
fn corpus_lands_in_osmem_with_template_mappings_failover_and_no_secret() {
    let url = require_env("HEPFLOW_TEST_OSMEM_URL");
    let p = prefix("os");
    // A URL that stays dead: a port bind(0) never hands out.
    let dead = format!("http://127.0.0.1:{}", restart_port());
    let password = "pa55-Wh1sper-7731";
    let extra = format!(
        r#"{}
[sinks.search.auth]
username = "hepflow"
password = "{password}"
[sinks.search.batch]
max_events = 64
max_wait = "300ms"
[default_route]
sinks = ["files", "search"]
"#,
        search_sink_toml(
            "search",
            &[dead.clone(), url.clone()],
            &p,
            "max_documents = 10\nconcurrency = 3\nconnect_timeout = \"1s\""
        )
    );
    let mut h = Hepflow::start("", &extra);
    let msgs = udp_corpus();
    let exp = expected(&p, &msgs);
    send_udp(h.udp, &msgs);
    let n = msgs.len() as f64;
    h.expect_metric(SENT, n);
    check_corpus_indexed(&url, &h, &p, &exp);
    let m = h.metrics();
    assert_eq!(
        metric(&m, "hepflow_es_documents_indexed_total{sink=\"search\"}"),
        n
    );
    assert_eq!(
        metric(&m, "hepflow_es_duplicates_total{sink=\"search\"}"),
        0.0
    );
    assert_eq!(
        metric(
            &m,
            "hepflow_sink_failed_total{sink=\"search\",reason=\"rejected\"}"
        ),
        0.0
    );
    // Requests of at most 10 documents: at least 7 bulk requests answered 200.
    assert!(
        metric(
            &m,
            "hepflow_es_bulk_requests_total{sink=\"search\",status=\"200\"}"
        ) >= 7.0,
        "{m}"
    );
    assert!(metric(&m, "hepflow_es_bulk_bytes_total{sink=\"search\"}") > 0.0);
    assert!(
        m.contains("hepflow_es_request_seconds_count{sink=\"search\"}"),
        "{m}"
    );
    // Everything arrived although the first URL is dead (failover).
    assert!(
        h.log_text().contains("connected to the search cluster"),
        "{}",
        h.log_text()
    );
    // Health polled (the series present and no longer -1, "not polled
    // yet"): green or yellow.
    let mut cs = None;
    let polled = wait_until(Duration::from_secs(30), || {
        cs = series(&h.metrics(), "hepflow_es_cluster_status{sink=\"search\"}");
        cs.is_some_and(|v| v != -1.0)
    });
    assert!(polled, "cluster health never polled: {cs:?}");
    assert!(
        cs == Some(0.0) || cs == Some(1.0),
        "cluster status {cs:?}; log:\n{}",
        h.log_text()
    );
    // The corpus's HEP auth key (`myHep`, in the Wireshark sample and the
    // hep-js message) and the password reach no document, log or metric.
    let hits = search_all(&url, &format!("{p}-*"));
    for (_, _, s) in &hits {
        assert!(!s.to_string().contains("myHep"), "auth key indexed: {s}");
    }
    assert!(!m.contains(password));
    let st = h.stop();
    assert!(st.success());
    let log = h.log_text();
    assert!(!log.contains(password), "password in the log");
    assert!(!log.contains("myHep"), "HEP auth key in the log");
}

#[test]
fn corpus_lands_in_noida_gzipped_through_an_ingest_pipeline() {
    let url = require_env("HEPFLOW_TEST_NOIDA_ES_URL");
    let p = prefix("noida");
    let pipeline = format!("{p}-tag");
    let (st, v) = es(
        &url,
        "PUT",
        &format!("/_ingest/pipeline/{pipeline}"),
        Some(json!({"processors": [{"set": {"field": "pipelined_by", "value": "hepflow-test"}}]})),
    );
    assert_eq!(st, 200, "{v}");
    let extra = format!(
        r#"{}
[sinks.search.batch]
max_events = 100
max_wait = "300ms"
[default_route]
sinks = ["files", "search"]
"#,
        search_sink_toml(
            "search",
            std::slice::from_ref(&url),
            &p,
            &format!("gzip = true\npipeline = \"{pipeline}\"")
        )
    );
    let mut h = Hepflow::start("", &extra);
    let msgs = udp_corpus();
    let exp = expected(&p, &msgs);
    send_udp(h.udp, &msgs);
    let n = msgs.len() as f64;
    h.expect_metric(SENT, n);
    let m = h.metrics();
    // gzip: fewer bytes on the wire than in the body.
    let body = metric(&m, "hepflow_es_bulk_bytes_total{sink=\"search\"}");
    let wire = metric(&m, "hepflow_es_bulk_wire_bytes_total{sink=\"search\"}");
    assert!(wire > 0.0 && wire < body / 2.0, "body {body} wire {wire}");
    // Every document went through the pipeline; without its field, the
    // documents equal the file sink's.
    let pattern = format!("{p}-*");
    wait_count(&url, &pattern, n as u64, Duration::from_secs(30));
    for (_, _, s) in search_all(&url, &pattern) {
        assert_eq!(s["pipelined_by"], "hepflow-test", "{s}");
    }
    let stripped: Vec<Value> = search_all(&url, &pattern)
        .into_iter()
        .map(|(_, _, mut s)| {
            s.as_object_mut().unwrap().remove("pipelined_by");
            s
        })
        .collect();
    let mut a: Vec<String> = stripped.iter().map(canonical).collect();
    // The file sink has written every message (it runs independently).
    h.expect_metric(FILES_SENT, n);
    let mut b: Vec<String> = h.documents().iter().map(canonical).collect();
    a.sort();
    b.sort();
    assert!(a == b, "indexed documents differ from the file sink's");
    // Counts, Call-IDs and mappings (the pipeline field aside).
    let total: u64 = exp.index.values().sum();
    assert_eq!(count(&url, &pattern, None), total);
    assert_call_ids(&url, &pattern, &exp);
    for (idx, n) in &exp.index {
        assert_eq!(count(&url, idx, None), *n, "{idx}");
        let (_, mp) = es(&url, "GET", &format!("/{idx}/_mapping"), None);
        let props = &mp[idx.as_str()]["mappings"]["properties"];
        assert_eq!(props["src_ip"]["type"], "ip", "{mp}");
        assert_eq!(props["@timestamp"]["type"], "date", "{mp}");
        assert_eq!(props["call_id"]["type"], "keyword", "{mp}");
        assert_eq!(props["payload"]["type"], "text", "{mp}");
    }
    assert!(h.stop().success());
}

fn conflict_case(url: &str, name: &str, want_type: &str) {
    let p = prefix(name);
    let msgs = corpus_messages("kamailio-hep3-udp.pcapng");
    let exp = expected(&p, &msgs);
    let sip_index = exp
        .index
        .keys()
        .find(|k| k.contains("-sip-"))
        .expect("a sip index")
        .clone();
    let log_index = exp
        .index
        .keys()
        .find(|k| k.contains("-log-"))
        .expect("a log index")
        .clone();
    let sip_n = exp.index[&sip_index];
    // capture_id is a number in every document; this index wants an IP.
    let (st, v) = es(
        url,
        "PUT",
        &format!("/{sip_index}"),
        Some(json!({"mappings": {"properties": {"capture_id": {"type": "ip"}}}})),
    );
    assert_eq!(st, 200, "{v}");
    let dir = tempfile::tempdir().unwrap();
    let dlq = dir.path().join("dead/search.ndjson");
    let extra = format!(
        r#"{}
[default_route]
sinks = ["search"]
"#,
        search_sink_toml(
            "search",
            &[url.to_string()],
            &p,
            &format!("dead_letter_path = \"{}\"", dlq.display())
        )
    );
    let mut h = Hepflow::start("", &extra);
    send_udp(h.udp, &msgs);
    h.expect_metric(
        "hepflow_sink_failed_total{sink=\"search\",reason=\"dead_lettered\"}",
        sip_n as f64,
    );
    h.expect_metric(SENT, 1.0);
    let m = h.metrics();
    assert_eq!(
        metric(&m, "hepflow_es_dead_lettered_total{sink=\"search\"}"),
        sip_n as f64
    );
    assert_eq!(
        metric(
            &m,
            &format!("hepflow_es_item_failures_total{{sink=\"search\",status=\"400\",error_type=\"{want_type}\"}}")
        ),
        sip_n as f64,
        "{m}"
    );
    // The rest is indexed.
    assert_eq!(wait_count(url, &log_index, 1, Duration::from_secs(10)), 1);
    assert_eq!(count(url, &sip_index, None), 0);
    // The dead-letter file: one line per refused document, with the
    // server's reason and the document as sent.
    let text = std::fs::read_to_string(&dlq).expect("dead-letter file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len() as u64, sip_n);
    let mut cids = BTreeMap::new();
    for l in &lines {
        assert_eq!(l["status"], 400, "{l}");
        assert_eq!(l["index"], sip_index.as_str(), "{l}");
        assert_eq!(l["error_type"], want_type, "{l}");
        assert_eq!(l["error"]["type"], want_type, "{l}");
        let reason = l["reason"].as_str().unwrap();
        assert!(
            reason.contains("capture_id"),
            "server reason kept: {reason}"
        );
        assert_eq!(l["document"]["capture_id"], 2001, "{l}");
        assert_eq!(l["_id"].as_str().map(str::len), Some(22), "{l}");
        *cids
            .entry(l["document"]["call_id"].as_str().unwrap().to_string())
            .or_insert(0u64) += 1;
    }
    assert_eq!(cids, exp.call_ids, "the refused documents are the SIP ones");
    assert!(
        h.log_text().contains("refused documents for good"),
        "{}",
        h.log_text()
    );
    assert!(h.stop().success());
}

#[test]
fn conflicting_mapping_goes_to_the_dead_letter_file_on_osmem() {
    let url = require_env("HEPFLOW_TEST_OSMEM_URL");
    conflict_case(&url, "conflict-os", "mapper_parsing_exception");
}

#[test]
fn conflicting_mapping_goes_to_the_dead_letter_file_on_noida() {
    let url = require_env("HEPFLOW_TEST_NOIDA_ES_URL");
    conflict_case(&url, "conflict-noida", "document_parsing_exception");
}

/// An osmem-server of the test's own, killed on drop.
struct OwnOsmem(Child);

impl Drop for OwnOsmem {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn backend_down_at_start_comes_up_10s_later_and_gets_everything_once() {
    let bin = require_env("HEPFLOW_TEST_OSMEM_BIN");
    // Nothing listens on the port for the first 10 s, then the test's own
    // server does: a port bind(0) never hands out, so nothing takes it
    // meanwhile.
    let port = restart_port();
    let url = format!("http://127.0.0.1:{port}");
    let p = prefix("late");
    let extra = format!(
        r#"{}
[sinks.search.queue]
capacity = 8
when_full = "block"
[sinks.search.batch]
max_events = 5
[sinks.search.retry]
initial_backoff = "100ms"
max_backoff = "1s"
[default_route]
sinks = ["search"]
"#,
        search_sink_toml(
            "search",
            std::slice::from_ref(&url),
            &p,
            "connect_timeout = \"1s\""
        )
    );
    let mut h = Hepflow::start("", &extra);
    let msgs = udp_corpus();
    let exp = expected(&p, &msgs);
    let sender = {
        let (to, msgs) = (h.udp, msgs.clone());
        std::thread::spawn(move || send_udp(to, &msgs))
    };
    // Down: hepflow runs, the sink is not ready and nothing is sent.
    let mut ready = (0, String::new());
    assert!(
        wait_until(Duration::from_secs(15), || {
            ready = http_get(h.api, "/ready").unwrap();
            ready.0 == 503 && ready.1.contains("search")
        }),
        "/ready while the backend is down: {ready:?}"
    );
    let started_down = Instant::now();
    while started_down.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(metric_of(&h, SENT), 0.0);
    assert!(metric_of(&h, "hepflow_sink_queued_total{sink=\"search\"}") >= 1.0);
    // Up, 10 s later, on the configured port.
    let child = Command::new(&bin)
        .args(["-addr", &format!("127.0.0.1:{port}"), "-no-stdin-watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    let _osmem = OwnOsmem(child);
    sender.join().unwrap();
    let n = msgs.len() as f64;
    let mut sent = 0.0;
    wait_until(Duration::from_secs(60), || {
        sent = metric_of(&h, SENT);
        sent >= n
    });
    assert_eq!(sent, n, "log:\n{}", h.log_text());
    let pattern = format!("{p}-*");
    let hits = assert_each_once(&url, &pattern, msgs.len(), &exp);
    let mut per_index = BTreeMap::new();
    for (idx, _, _) in &hits {
        *per_index.entry(idx.clone()).or_insert(0u64) += 1;
    }
    assert_eq!(per_index, exp.index);
    let m = h.metrics();
    assert_eq!(
        metric(
            &m,
            "hepflow_sink_dropped_total{sink=\"search\",reason=\"queue_full\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(&m, "hepflow_es_duplicates_total{sink=\"search\"}"),
        0.0
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            matches!(http_get(h.api, "/ready"), Ok((200, _)))
        }),
        "/ready after the backend came up"
    );
    assert!(
        h.log_text().contains("sink start failed; retrying"),
        "{}",
        h.log_text()
    );
    assert!(h.stop().success());
}

// ------------------------------------------------ the fault-injecting MOCK

/// What the mock does to the next bulk request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Answer nothing for longer than the sink's request timeout.
    Hang,
    /// Answer 413 (request entity too large) without forwarding.
    TooLarge,
    /// Answer 429 without forwarding (a 429 storm, one request of it).
    Storm,
    /// Forward only the even items; answer 429
    /// `es_rejected_execution_exception` for the odd ones (not indexed).
    HalfRejected,
    /// Forward everything, but report the odd items as 503
    /// `unavailable_shards_exception` (indexed, the acknowledgement lost).
    HalfAckLost,
}

#[derive(Default)]
struct ProxyStats {
    hangs: usize,
    too_large: usize,
    /// Every `Authorization` header seen (all requests).
    authorization: Vec<String>,
    storms: usize,
    rejected_items: usize,
    ack_lost_items: usize,
    bulk_requests: usize,
}

/// MOCK (fault injection): a tiny HTTP proxy in front of a real
/// osmem-server. Non-bulk requests and bulk requests with no fault
/// queued pass through unchanged; each queued [`Fault`] breaks one bulk
/// request.
struct FaultProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<ProxyStats>>,
}

impl FaultProxy {
    fn start(upstream: SocketAddr, faults: Vec<Fault>) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(ProxyStats::default()));
        let faults = Arc::new(Mutex::new(VecDeque::from(faults)));
        let (s2, st2) = (stop.clone(), stats.clone());
        std::thread::spawn(move || {
            let active = Arc::new(AtomicUsize::new(0));
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (f, st, a) = (faults.clone(), st2.clone(), active.clone());
                        a.fetch_add(1, Ordering::Relaxed);
                        std::thread::spawn(move || {
                            let _ = serve(c, upstream, &f, &st);
                            a.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy { addr, stop, stats }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    c: TcpStream,
    upstream: SocketAddr,
    faults: &Mutex<VecDeque<Fault>>,
    stats: &Mutex<ProxyStats>,
) -> std::io::Result<()> {
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("GET").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let mut len = 0usize;
    let mut ctype = "application/json".to_string();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "content-type" => ctype = v.trim().to_string(),
                "authorization" => stats
                    .lock()
                    .unwrap()
                    .authorization
                    .push(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let is_bulk = method == "POST" && path.split('?').next().unwrap_or("").ends_with("_bulk");
    let fault = if is_bulk {
        stats.lock().unwrap().bulk_requests += 1;
        faults.lock().unwrap().pop_front()
    } else {
        None
    };
    let (status, reply) = match fault {
        None => http(upstream, &method, &path, &ctype, &body)?,
        Some(Fault::Hang) => {
            stats.lock().unwrap().hangs += 1;
            // Well past the sink's request_timeout (5 s).
            std::thread::sleep(Duration::from_secs(12));
            return Ok(());
        }
        Some(Fault::TooLarge) => {
            stats.lock().unwrap().too_large += 1;
            (
                413,
                br#"{"error":{"type":"content_too_long_exception","reason":"mock: request body too large"},"status":413}"#.to_vec(),
            )
        }
        Some(Fault::Storm) => {
            stats.lock().unwrap().storms += 1;
            (
                429,
                br#"{"error":{"type":"es_rejected_execution_exception","reason":"mock 429 storm: rejected execution"},"status":429}"#.to_vec(),
            )
        }
        Some(f) => {
            let text = String::from_utf8_lossy(&body).to_string();
            let lines: Vec<&str> = text.lines().collect();
            let pairs: Vec<(&str, &str)> = lines.chunks(2).map(|c| (c[0], c[1])).collect();
            let forward: Vec<usize> = match f {
                Fault::HalfRejected => (0..pairs.len()).filter(|i| i % 2 == 0).collect(),
                _ => (0..pairs.len()).collect(),
            };
            let mut fwd = String::new();
            for &i in &forward {
                fwd.push_str(pairs[i].0);
                fwd.push('\n');
                fwd.push_str(pairs[i].1);
                fwd.push('\n');
            }
            let (st, up) = http(upstream, &method, &path, &ctype, fwd.as_bytes())?;
            assert_eq!(st, 200, "upstream bulk: {}", String::from_utf8_lossy(&up));
            let upv: Value = serde_json::from_slice(&up).unwrap();
            let mut up_items = upv["items"].as_array().unwrap().clone().into_iter();
            let mut items = Vec::new();
            for (i, (action, _)) in pairs.iter().enumerate() {
                let a: Value = serde_json::from_str(action).unwrap();
                let (name, meta) = a.as_object().unwrap().iter().next().unwrap();
                let odd = i % 2 == 1;
                let fabricated = |status: u16, t: &str, reason: &str| {
                    json!({ name.clone(): {
                        "_index": meta["_index"], "_id": meta["_id"], "status": status,
                        "error": {"type": t, "reason": reason}
                    }})
                };
                match f {
                    Fault::HalfRejected if odd => {
                        stats.lock().unwrap().rejected_items += 1;
                        items.push(fabricated(
                            429,
                            "es_rejected_execution_exception",
                            "mock: rejected execution of bulk item",
                        ));
                    }
                    Fault::HalfAckLost if odd => {
                        up_items.next();
                        stats.lock().unwrap().ack_lost_items += 1;
                        items.push(fabricated(
                            503,
                            "unavailable_shards_exception",
                            "mock: acknowledgement lost",
                        ));
                    }
                    _ => items.push(up_items.next().unwrap()),
                }
            }
            (
                200,
                json!({"took": 1, "errors": true, "items": items})
                    .to_string()
                    .into_bytes(),
            )
        }
    };
    let mut c = c;
    write!(
        c,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.len()
    )?;
    c.write_all(&reply)?;
    c.flush()
}

#[test]
fn storm_of_429_and_half_failed_replies_are_retried_and_arrive_once() {
    let url = require_env("HEPFLOW_TEST_OSMEM_URL");
    let faults = vec![
        Fault::Hang,
        Fault::TooLarge,
        Fault::Storm,
        Fault::Storm,
        Fault::Storm,
        Fault::Storm,
        Fault::HalfRejected,
        Fault::HalfAckLost,
        Fault::HalfRejected,
    ];
    let proxy = FaultProxy::start(addr_of(&url), faults);
    let purl = format!("http://{}", proxy.addr);
    let p = prefix("storm");
    let extra = format!(
        r#"{}
[sinks.search.batch]
max_events = 20
max_wait = "200ms"
[sinks.search.retry]
initial_backoff = "50ms"
max_backoff = "500ms"
[default_route]
sinks = ["search"]
"#,
        search_sink_toml(
            "search",
            &[purl],
            &p,
            &format!(
                "item_attempts = 3\nitem_backoff = \"20ms\"\nrequest_timeout = \"5s\"\n[sinks.search.auth]\napi_key = \"{API_KEY}\""
            )
        )
    );
    let mut h = Hepflow::start("", &extra);
    let msgs = udp_corpus();
    let exp = expected(&p, &msgs);
    send_udp(h.udp, &msgs);
    let n = msgs.len() as f64;
    // The hang alone takes request_timeout (5 s), the storm its backoffs:
    // more than expect_metric's own wait.
    wait_until(Duration::from_secs(90), || metric_of(&h, SENT) >= n);
    h.expect_metric(SENT, n);
    // Every message once in the real server.
    let pattern = format!("{p}-*");
    assert_each_once(&url, &pattern, msgs.len(), &exp);
    // The counters tell what happened.
    let s = proxy.stats.lock().unwrap();
    assert_eq!(s.storms, 4);
    assert_eq!(s.too_large, 1);
    assert_eq!(s.hangs, 1);
    // The API key went with every request (control plane and bulk), as
    // `ApiKey <encoded>`, and nowhere else.
    assert!(
        s.authorization.len() >= s.bulk_requests + 2,
        "{:?}",
        s.authorization.len()
    );
    assert!(s
        .authorization
        .iter()
        .all(|a| a == &format!("ApiKey {API_KEY}")));
    assert!(
        s.rejected_items > 0 && s.ack_lost_items > 0,
        "faults injected"
    );
    let m = h.metrics();
    assert_eq!(
        metric(
            &m,
            "hepflow_es_bulk_requests_total{sink=\"search\",status=\"429\"}"
        ),
        4.0,
        "{m}"
    );
    // The 413 request was split in two and its halves sent; the hung one
    // timed out (request_timeout) and was sent again.
    assert_eq!(
        metric(
            &m,
            "hepflow_es_bulk_requests_total{sink=\"search\",status=\"413\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "hepflow_es_bulk_requests_total{sink=\"search\",status=\"timeout\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(!m.contains(API_KEY));
    assert_eq!(
        metric(&m, "hepflow_es_item_failures_total{sink=\"search\",status=\"429\",error_type=\"es_rejected_execution_exception\"}"),
        s.rejected_items as f64,
        "{m}"
    );
    assert_eq!(
        metric(&m, "hepflow_es_item_failures_total{sink=\"search\",status=\"503\",error_type=\"unavailable_shards_exception\"}"),
        s.ack_lost_items as f64
    );
    // The items whose acknowledgement was lost were indexed the first
    // time: sent again, the server says they exist (409), counted as
    // duplicates, not indexed twice.
    assert_eq!(
        metric(&m, "hepflow_es_duplicates_total{sink=\"search\"}"),
        s.ack_lost_items as f64
    );
    assert_eq!(
        metric(&m, "hepflow_es_documents_indexed_total{sink=\"search\"}"),
        n - s.ack_lost_items as f64
    );
    assert!(
        metric(&m, "hepflow_es_retried_documents_total{sink=\"search\"}")
            >= (s.rejected_items + s.ack_lost_items) as f64
    );
    assert!(
        metric(&m, "hepflow_sink_retries_total{sink=\"search\"}") >= 1.0,
        "engine retried the storm"
    );
    assert_eq!(
        metric(
            &m,
            "hepflow_sink_failed_total{sink=\"search\",reason=\"rejected\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(
            &m,
            "hepflow_sink_failed_total{sink=\"search\",reason=\"dead_lettered\"}"
        ),
        0.0
    );
    drop(s);
    assert!(h.stop().success());
    assert!(!h.log_text().contains(API_KEY), "API key in the log");
}

const API_KEY: &str = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";

#[test]
fn validate_rejects_missing_urls_and_a_bad_index_pattern() {
    let (code, err) = validate_config(
        r#"
[listeners.udp]
kind = "udp"
bind = "127.0.0.1:0"
[sinks.search]
type = "elasticsearch"
index = "HEP-{proto}-%Y.%m.%d"
[sinks.search2]
type = "elasticsearch"
urls = ["http://elastic:changeme@127.0.0.1:9200"]
index = "hep-%M"
[default_route]
sinks = ["search", "search2"]
"#,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("sinks.search.urls is empty: give at least one Elasticsearch/OpenSearch URL"),
        "{err}"
    );
    assert!(
        err.contains("sinks.search.index \"HEP-{proto}-%Y.%m.%d\": contains the upper-case letter 'H': index names must be lower case"),
        "{err}"
    );
    assert!(
        err.contains("sinks.search2.urls[0]: the URL holds credentials: remove them"),
        "{err}"
    );
    assert!(!err.contains("changeme"), "secret echoed: {err}");
    assert!(
        err.contains("sinks.search2.index \"hep-%M\": %M would start a new index every minute"),
        "{err}"
    );
}

// ------------------------------------------------------------------ TLS

/// A TLS terminator that requires a client certificate signed by the test
/// CA and passes the decrypted bytes to the real osmem-server (not a mock:
/// the HTTP exchange is osmem's own). Stops when dropped.
struct TlsTerminator {
    addr: SocketAddr,
    handshakes_failed: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl TlsTerminator {
    fn start(upstream: SocketAddr, pki: &TestPki) -> Self {
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config(true));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let std_l = TcpListener::bind("127.0.0.1:0").unwrap();
        std_l.set_nonblocking(true).unwrap();
        let addr = std_l.local_addr().unwrap();
        let failed = Arc::new(AtomicUsize::new(0));
        let f2 = failed.clone();
        rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(std_l).unwrap();
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    continue;
                };
                let (acceptor, failed) = (acceptor.clone(), f2.clone());
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(t) => t,
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    };
                    if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                    }
                });
            }
        });
        TlsTerminator {
            addr,
            handshakes_failed: failed,
            _rt: rt,
        }
    }
}

#[test]
fn tls_with_ca_file_and_client_certificate_and_the_insecure_flag() {
    let url = require_env("HEPFLOW_TEST_OSMEM_URL");
    let pki = TestPki::generate();
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    let term = TlsTerminator::start(addr_of(&url), &pki);
    let https = format!("https://127.0.0.1:{}", term.addr.port());
    let msgs = corpus_messages("kamailio-hep3-udp.pcapng");
    let n = msgs.len() as f64;
    let run = |name: &str, tls: String| -> (Hepflow, String) {
        let p = prefix(name);
        let extra = format!(
            "{}\n[sinks.search.tls]\n{tls}\n[sinks.search.retry]\ninitial_backoff = \"100ms\"\nmax_backoff = \"500ms\"\n[default_route]\nsinks = [\"search\"]\n",
            search_sink_toml("search", std::slice::from_ref(&https), &p, "")
        );
        (Hepflow::start("", &extra), p)
    };
    let client = format!(
        "client_cert_file = \"{}\"\nclient_key_file = \"{}\"",
        cert.display(),
        key.display()
    );

    // CA file and client certificate: everything arrives.
    let (mut h, p) = run(
        "tls-ok",
        format!("ca_file = \"{}\"\n{client}", ca.display()),
    );
    send_udp(h.udp, &msgs);
    h.expect_metric(SENT, n);
    assert_eq!(count(&url, &format!("{p}-*"), None), n as u64);
    assert!(h.stop().success());

    // Without the CA the server's certificate is not trusted: nothing is
    // sent, /ready says why, hepflow keeps running.
    let before = term.handshakes_failed.load(Ordering::Relaxed);
    let (mut h, p) = run("tls-noca", client.clone());
    send_udp(h.udp, &msgs);
    let mut ready = (0, String::new());
    assert!(
        wait_until(Duration::from_secs(10), || {
            ready = http_get(h.api, "/ready").unwrap();
            ready.0 == 503 && ready.1.to_lowercase().contains("certificate")
        }),
        "/ready: {ready:?}; log:\n{}",
        h.log_text()
    );
    // The terminator counts the failed handshake when it reads the
    // client's alert, maybe after hepflow reported it.
    assert!(
        wait_until(Duration::from_secs(10), || term
            .handshakes_failed
            .load(Ordering::Relaxed)
            > before),
        "the terminator saw the failed handshake"
    );
    assert_eq!(metric_of(&h, SENT), 0.0);
    assert_eq!(count(&url, &format!("{p}-*"), None), 0);
    assert!(h.stop().success());

    // The explicit insecure flag accepts the unknown CA.
    let (mut h, p) = run(
        "tls-insecure",
        format!("insecure_skip_verify = true\n{client}"),
    );
    send_udp(h.udp, &msgs);
    h.expect_metric(SENT, n);
    assert_eq!(count(&url, &format!("{p}-*"), None), n as u64);
    assert!(h.stop().success());
}
