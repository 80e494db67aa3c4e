//! Fault injection the real servers cannot produce on demand, against a
//! HAND-WRITTEN MOCK HTTP server (named as such; the real InfluxDB and
//! VictoriaMetrics are in the workspace's `tests/e2e_influxdb.rs`): a 429
//! storm with `Retry-After`, 413 answers that make the sink halve its
//! requests, and a server that never recovers before shutdown. The sink is
//! driven through its `Sink` trait as the engine does (start, write,
//! flush, close) with real corpus events.

mod support;

use flate2::read::GzDecoder;
use hepflow_influxdb::InfluxSinkFactory;
use hepflow_sdk::sink::{SinkContext, SinkFactory};
use hepflow_sdk::Transport;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the mock saw.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

type Script = Arc<dyn Fn(usize, &Seen) -> (u16, Vec<(String, String)>) + Send + Sync>;

/// The mock: answers each request per `script(index, request)`.
async fn mock(script: Script) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let seen = seen2.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // read the head
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let mut lines = head.lines();
                    let target = lines
                        .next()
                        .unwrap_or("")
                        .split(' ')
                        .nth(1)
                        .unwrap_or("")
                        .to_string();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(": "))
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                        .collect();
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let raw: Vec<u8> = buf[head_end..head_end + len].to_vec();
                    buf.drain(..head_end + len);
                    let gz = headers
                        .iter()
                        .any(|(k, v)| k == "content-encoding" && v == "gzip");
                    let body = if gz {
                        let mut s = String::new();
                        GzDecoder::new(&raw[..]).read_to_string(&mut s).unwrap();
                        s
                    } else {
                        String::from_utf8(raw).unwrap()
                    };
                    let req = Seen {
                        target,
                        headers,
                        body,
                    };
                    // index among the non-/ping requests
                    let idx = {
                        let mut v = seen.lock().unwrap();
                        v.push(req.clone());
                        v.iter().filter(|r| !r.target.starts_with("/ping")).count()
                    }
                    .saturating_sub(1);
                    let (status, extra) = if req.target.starts_with("/ping") {
                        (204, Vec::new())
                    } else {
                        script(idx, &req)
                    };
                    let mut resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n");
                    for (k, v) in extra {
                        resp.push_str(&format!("{k}: {v}\r\n"));
                    }
                    resp.push_str("\r\n");
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn writes(seen: &Mutex<Vec<Seen>>) -> Vec<Seen> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|s| s.target.starts_with("/write"))
        .cloned()
        .collect()
}

fn config(url: &str, extra: &str) -> serde_json::Value {
    let toml_text = format!(
        "api = \"v1\"\nurl = \"{url}\"\ndatabase = \"hep\"\nusername = \"u\"\npassword = \"pw-SECRET\"\n\
         interval = \"1s\"\nlateness = \"0s\"\nbackoff_initial = \"10ms\"\nbackoff_max = \"50ms\"\n\
         health_interval = \"100ms\"\nprometheus = false\n{extra}"
    );
    let v: toml::Value = toml::from_str(&toml_text).unwrap();
    serde_json::to_value(v).unwrap()
}

fn value(ctx: &SinkContext, name: &str, labels: &[(&str, &str)]) -> f64 {
    ctx.registry.value(name, labels).unwrap_or(0.0)
}

async fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Ten seconds ago: the interval is due at once.
fn past() -> SystemTime {
    SystemTime::now() - Duration::from_secs(10)
}

#[tokio::test]
async fn a_429_storm_is_retried_with_backoff_until_written() {
    let script: Script = Arc::new(|i, _| {
        if i < 4 {
            (429, vec![("retry-after".into(), "0".into())])
        } else {
            (204, Vec::new())
        }
    });
    let (url, seen) = mock(script).await;
    let ctx = SinkContext::for_tests("m");
    let mut sink = InfluxSinkFactory
        .build("sinks.m", &config(&url, ""), ctx.clone())
        .unwrap();
    sink.start().await.unwrap();
    let evs = corpus_events("kamailio-hep3-udp.pcapng", Transport::Udp, past());
    let d = sink.write(&evs).await.unwrap();
    assert_eq!(d.events, 14);
    let points = value(&ctx, "hepflow_influxdb_points_total", &[("sink", "m")]);
    assert_eq!(
        points, 9.0,
        "2 hep_messages + 3 sip_requests + 4 sip_responses"
    );
    let done = wait_for(|| {
        value(
            &ctx,
            "hepflow_influxdb_points_written_total",
            &[("sink", "m")],
        ) == points
    })
    .await;
    assert!(done, "{}", ctx.registry.render_prometheus());
    let retries = value(
        &ctx,
        "hepflow_influxdb_requests_total",
        &[("sink", "m"), ("outcome", "retry")],
    );
    assert_eq!(retries, 4.0);
    let w = writes(&seen);
    assert_eq!(w.len(), 5);
    // The same points every time, none lost or duplicated.
    for r in &w {
        assert_eq!(r.body, w[4].body);
        assert!(
            r.target.contains("db=hep") && r.target.contains("precision=ns"),
            "{}",
            r.target
        );
        assert!(
            !r.target.contains("SECRET") && !r.target.contains("u=") && !r.target.contains("p=")
        );
        let auth = r
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap();
        assert!(auth.1.starts_with("Basic "), "{auth:?}");
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "content-encoding" && v == "gzip"));
    }
    let lines: Vec<Line> = w[4].body.lines().map(parse_line).collect();
    assert_eq!(lines.len(), 9);
    assert!(ctx.health.is_ready());
    sink.close().await.unwrap();
}

#[tokio::test]
async fn a_413_halves_the_request_until_it_fits() {
    // Accept at most 2 points per request.
    let script: Script = Arc::new(|_, r| {
        if r.body.lines().count() > 2 {
            (413, Vec::new())
        } else {
            (204, Vec::new())
        }
    });
    let (url, seen) = mock(script).await;
    let ctx = SinkContext::for_tests("m");
    let mut sink = InfluxSinkFactory
        .build("sinks.m", &config(&url, ""), ctx.clone())
        .unwrap();
    sink.start().await.unwrap();
    let evs = udp_corpus(past());
    sink.write(&evs).await.unwrap();
    let points = value(&ctx, "hepflow_influxdb_points_total", &[("sink", "m")]);
    assert!(points > 20.0);
    let done = wait_for(|| {
        value(
            &ctx,
            "hepflow_influxdb_points_written_total",
            &[("sink", "m")],
        ) == points
    })
    .await;
    assert!(done, "{}", ctx.registry.render_prometheus());
    assert!(
        value(
            &ctx,
            "hepflow_influxdb_requests_total",
            &[("sink", "m"), ("outcome", "too_large")]
        ) >= 2.0
    );
    let total_lines: usize = writes(&seen)
        .iter()
        .filter(|r| r.body.lines().count() <= 2)
        .map(|r| r.body.lines().count())
        .sum();
    assert_eq!(
        total_lines as f64, points,
        "every point written exactly once"
    );
    sink.close().await.unwrap();
}

#[tokio::test]
async fn a_single_point_too_large_is_dropped_and_counted() {
    let script: Script = Arc::new(|_, _| (413, Vec::new()));
    let (url, _seen) = mock(script).await;
    let ctx = SinkContext::for_tests("m");
    let mut sink = InfluxSinkFactory
        .build("sinks.m", &config(&url, ""), ctx.clone())
        .unwrap();
    sink.start().await.unwrap();
    sink.write(&corpus_events(
        "hepjs-hep3-udp.pcapng",
        Transport::Udp,
        past(),
    ))
    .await
    .unwrap();
    let points = value(&ctx, "hepflow_influxdb_points_total", &[("sink", "m")]);
    assert_eq!(points, 2.0);
    let done = wait_for(|| {
        value(
            &ctx,
            "hepflow_influxdb_points_dropped_total",
            &[("sink", "m"), ("reason", "too_large")],
        ) == points
    })
    .await;
    assert!(done, "{}", ctx.registry.render_prometheus());
    sink.close().await.unwrap();
}

#[tokio::test]
async fn a_server_down_at_shutdown_leaves_counted_drops_and_an_unready_sink() {
    let script: Script = Arc::new(|_, _| (503, Vec::new()));
    let (url, _seen) = mock(script).await;
    let ctx = SinkContext::for_tests("m");
    let mut sink = InfluxSinkFactory
        .build(
            "sinks.m",
            &config(&url, "close_timeout = \"300ms\"\n"),
            ctx.clone(),
        )
        .unwrap();
    sink.start().await.unwrap();
    sink.write(&corpus_events(
        "kamailio-hep3-udp.pcapng",
        Transport::Udp,
        past(),
    ))
    .await
    .unwrap();
    let unready = wait_for(|| !ctx.health.is_ready()).await;
    assert!(unready);
    assert!(
        ctx.health.detail().contains("HTTP 503"),
        "{}",
        ctx.health.detail()
    );
    assert!(!ctx.health.detail().contains("SECRET"));
    let e = sink.close().await.unwrap_err();
    assert_eq!(e.reason, "shutdown");
    assert_eq!(
        value(
            &ctx,
            "hepflow_influxdb_points_dropped_total",
            &[("sink", "m"), ("reason", "shutdown")]
        ),
        9.0
    );
    assert_eq!(
        value(&ctx, "hepflow_influxdb_pending_points", &[("sink", "m")]),
        0.0
    );
}

#[tokio::test]
async fn api_none_only_feeds_prometheus() {
    let v: toml::Value =
        toml::from_str("api = \"none\"\ninterval = \"1s\"\nlateness = \"0s\"\n").unwrap();
    let ctx = SinkContext::for_tests("p");
    let mut sink = InfluxSinkFactory
        .build("sinks.p", &serde_json::to_value(v).unwrap(), ctx.clone())
        .unwrap();
    sink.start().await.unwrap();
    sink.write(&udp_corpus(past())).await.unwrap();
    sink.flush().await.unwrap();
    let text = ctx.registry.render_prometheus();
    assert!(
        text.contains("hepflow_sip_requests_total{method=\"INVITE\",node=\"2001\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("hepflow_rtcp_jitter_mean{node=\"2001\"} 1"),
        "{text}"
    );
    assert_eq!(
        value(&ctx, "hepflow_influxdb_points_total", &[("sink", "p")]),
        0.0
    );
    // a second sink in the same process does not duplicate the series
    let v: toml::Value = toml::from_str("api = \"none\"\n").unwrap();
    let mut second = InfluxSinkFactory
        .build("sinks.q", &serde_json::to_value(v).unwrap(), {
            let mut c = ctx.clone();
            c.name = "q".into();
            c
        })
        .unwrap();
    second.write(&udp_corpus(past())).await.unwrap();
    let text = ctx.registry.render_prometheus();
    assert!(
        text.contains("hepflow_sip_requests_total{method=\"INVITE\",node=\"2001\"} 5\n"),
        "{text}"
    );
    assert_eq!(text.matches("# TYPE hepflow_sip_requests_total").count(), 1);
    sink.close().await.unwrap();
}
