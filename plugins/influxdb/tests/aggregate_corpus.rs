//! The aggregator on the real corpus captures (no server): exact counts per
//! measurement and tag set, interval stamping, late events, the series
//! bound, raw mode, decode-error deltas, and the Prometheus collector,
//! every emitted line read back with an independent line protocol reader.

mod support;

use hepflow_influxdb::aggregate::{AggCounters, AggSettings, Aggregator};
use hepflow_influxdb::config::{Mode, OptionalTag};
use hepflow_influxdb::prom::{self, PromState};
use hepflow_sdk::metrics::{Counter, Registry};
use hepflow_sdk::Transport;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use support::*;

const S: i64 = 1_000_000_000;
const T0: u64 = 1_700_000_003; // 3 s into the interval starting at ...000

fn settings(mode: Mode) -> AggSettings {
    AggSettings {
        interval_ns: 10 * S,
        lateness_ns: S,
        mode,
        optional: Vec::new(),
        prefix_v4: 24,
        prefix_v6: 64,
        extra_tags: vec![("region".into(), "eu1".into())],
        max_series: 10_000,
        hepflow_node: "hub-a".into(),
    }
}

fn counters() -> AggCounters {
    AggCounters {
        rtcp_unparsed: Counter::default(),
        unencodable: Counter::default(),
    }
}

fn new_agg(s: AggSettings, prom: bool) -> (Aggregator, Registry, Option<Arc<Mutex<PromState>>>) {
    let r = Registry::new();
    let p = prom.then(|| {
        let st = Arc::new(Mutex::new(PromState::new(
            &s.optional,
            s.max_series,
            &r,
            "m",
        )));
        prom::register(&r, st.clone());
        st
    });
    (Aggregator::new(s, &r, "m", counters(), p.clone()), r, p)
}

fn sums(lines: &[Line], measurement: &str, tags: &[&str], field: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for l in lines.iter().filter(|l| l.measurement == measurement) {
        let key: Vec<&str> = tags.iter().map(|t| l.tag(t).unwrap_or("-")).collect();
        if let Some(v) = l.fields.get(field) {
            *m.entry(key.join("/")).or_insert(0.0) += v.as_f64();
        }
    }
    m
}

fn map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn expected_requests() -> BTreeMap<String, f64> {
    map(&[
        ("ACK/0", 2.0),
        ("ACK/131203072", 2.0),
        ("ACK/2001", 4.0),
        ("BYE/0", 2.0),
        ("BYE/131203072", 2.0),
        ("BYE/2001", 4.0),
        ("INVITE/0", 2.0),
        ("INVITE/131203072", 2.0),
        ("INVITE/2001", 5.0),
        ("OPTIONS/2001", 1.0),
        ("OPTIONS/node1", 1.0),
        ("PUBLISH/2001", 1.0),
    ])
}

fn expected_responses() -> BTreeMap<String, f64> {
    map(&[
        ("100/1xx/INVITE/0", 1.0),
        ("100/1xx/INVITE/131203072", 1.0),
        ("100/1xx/INVITE/2001", 3.0),
        ("180/1xx/INVITE/0", 2.0),
        ("180/1xx/INVITE/131203072", 2.0),
        ("180/1xx/INVITE/2001", 4.0),
        ("200/2xx/BYE/0", 2.0),
        ("200/2xx/BYE/131203072", 2.0),
        ("200/2xx/BYE/2001", 4.0),
        ("200/2xx/INVITE/0", 2.0),
        ("200/2xx/INVITE/131203072", 2.0),
        ("200/2xx/INVITE/2001", 4.0),
        ("200/2xx/OPTIONS/2001", 1.0),
        ("407/4xx/INVITE/2001", 1.0),
    ])
}

fn expected_messages() -> BTreeMap<String, f64> {
    map(&[
        ("log/2001/udp", 4.0),
        ("rtcp/2001/udp", 1.0),
        ("sip/0/udp", 13.0),
        ("sip/131203072/udp", 13.0),
        ("sip/2001/udp", 32.0),
        ("sip/node1/udp", 1.0),
    ])
}

#[test]
fn corpus_counts_per_measurement_and_tag_set() {
    let (mut agg, _r, _) = new_agg(settings(Mode::Aggregate), false);
    let evs = udp_corpus(at_secs(T0));
    let mut out = Vec::new();
    let now = T0 as i64 * S;
    agg.ingest(&evs, now, &mut out);
    assert!(out.is_empty(), "aggregate mode writes no raw points");
    // Not due before the interval end + lateness.
    assert_eq!(agg.emit_due(now, false, &mut out), 0);
    assert_eq!(agg.emit_due(1_700_000_010 * S + S - 1, false, &mut out), 0);
    assert_eq!(agg.emit_due(1_700_000_011 * S, false, &mut out), 1);
    let lines: Vec<Line> = out.iter().map(|l| parse_line(l)).collect();

    for l in &lines {
        assert_eq!(
            l.ts,
            Some(1_700_000_000 * S),
            "stamped at interval start: {l:?}"
        );
        assert_eq!(l.tag("region"), Some("eu1"), "extra tag: {l:?}");
    }
    // One point per series and timestamp.
    let mut seen = HashSet::new();
    for l in &lines {
        assert!(
            seen.insert((l.measurement.clone(), l.tags.clone())),
            "duplicate {l:?}"
        );
    }

    assert_eq!(
        sums(&lines, "sip_requests", &["method", "node"], "count"),
        expected_requests()
    );
    assert_eq!(
        sums(
            &lines,
            "sip_responses",
            &["code", "class", "method", "node"],
            "count"
        ),
        expected_responses()
    );
    assert_eq!(
        sums(
            &lines,
            "hep_messages",
            &["proto", "node", "transport"],
            "count"
        ),
        expected_messages()
    );
    // bytes: the raw HEP sizes, summed independently here
    let mut bytes = BTreeMap::new();
    for e in &evs {
        let node = match e.hep().node_name.as_deref() {
            Some(n) => String::from_utf8_lossy(n).into_owned(),
            None => e.hep().capture_id.to_string(),
        };
        let k = format!("{}/{node}/udp", e.hep().proto_name().unwrap());
        *bytes.entry(k).or_insert(0.0) += e.raw().len() as f64;
    }
    assert_eq!(
        sums(
            &lines,
            "hep_messages",
            &["proto", "node", "transport"],
            "bytes"
        ),
        bytes
    );

    // The one RTCP report of the Wireshark sample.
    let rtcp: Vec<&Line> = lines.iter().filter(|l| l.measurement == "rtcp").collect();
    assert_eq!(rtcp.len(), 1);
    let f = &rtcp[0].fields;
    assert_eq!(rtcp[0].tag("node"), Some("2001"));
    assert_eq!(f["reports"], Value::Int(1));
    assert_eq!(f["report_blocks"], Value::Int(1));
    assert_eq!(f["jitter_mean"], Value::Float(1.0));
    assert_eq!(f["jitter_max"], Value::Float(1.0));
    assert_eq!(f["packets_lost_max"], Value::Float(0.0));
    assert_eq!(f["fraction_lost_max"], Value::Float(0.0));
    assert!(!f.contains_key("mos_mean"), "no MOS in the sample: {f:?}");
    assert_eq!(agg.open_buckets(), 0);
}

#[test]
fn tcp_stream_is_tagged_tcp() {
    let (mut agg, _r, _) = new_agg(settings(Mode::Aggregate), false);
    let evs = corpus_events("kamailio-hep3-tcp.pcapng", Transport::Tcp, at_secs(T0));
    assert_eq!(evs.len(), 14);
    let mut out = Vec::new();
    agg.ingest(&evs, T0 as i64 * S, &mut out);
    agg.emit_due(0, true, &mut out);
    let lines: Vec<Line> = out.iter().map(|l| parse_line(l)).collect();
    assert_eq!(
        sums(
            &lines,
            "hep_messages",
            &["proto", "node", "transport"],
            "count"
        ),
        map(&[("log/2001/tcp", 1.0), ("sip/2001/tcp", 13.0)])
    );
}

#[test]
fn intervals_are_separate_and_late_events_never_duplicate_a_point() {
    let (mut agg, _r, _) = new_agg(settings(Mode::Aggregate), false);
    let mut out = Vec::new();
    let a = corpus_events("hepjs-hep3-udp.pcapng", Transport::Udp, at_secs(T0));
    agg.ingest(&a, T0 as i64 * S, &mut out);
    // same message in the next interval
    let b = corpus_events("hepjs-hep3-udp.pcapng", Transport::Udp, at_secs(T0 + 10));
    agg.ingest(&b, (T0 + 10) as i64 * S, &mut out);
    assert_eq!(agg.open_buckets(), 2);
    assert_eq!(agg.emit_due(1_700_000_011 * S, false, &mut out), 1);
    // a late event of the already written first interval
    let late = corpus_events("hepjs-hep3-udp.pcapng", Transport::Udp, at_secs(T0));
    agg.ingest(&late, (T0 + 12) as i64 * S, &mut out);
    agg.emit_due(0, true, &mut out);
    let lines: Vec<Line> = out.iter().map(|l| parse_line(l)).collect();
    let req: Vec<&Line> = lines
        .iter()
        .filter(|l| l.measurement == "sip_requests")
        .collect();
    assert_eq!(req.len(), 2, "{req:?}");
    assert_eq!(req[0].ts, Some(1_700_000_000 * S));
    assert_eq!(req[0].fields["count"], Value::Int(1));
    assert_eq!(req[1].ts, Some(1_700_000_010 * S));
    assert_eq!(
        req[1].fields["count"],
        Value::Int(2),
        "late event counted in the open interval"
    );
}

#[test]
fn series_beyond_the_bound_fold_into_other_and_are_counted() {
    let mut s = settings(Mode::Aggregate);
    s.max_series = 3;
    let (mut agg, r, p) = new_agg(s, true);
    let evs = udp_corpus(at_secs(T0));
    let mut out = Vec::new();
    agg.ingest(&evs, T0 as i64 * S, &mut out);
    agg.emit_due(0, true, &mut out);
    let lines: Vec<Line> = out.iter().map(|l| parse_line(l)).collect();
    let req = sums(&lines, "sip_requests", &["method", "node"], "count");
    assert!(req.len() <= 4, "{req:?}");
    assert_eq!(req.values().sum::<f64>(), 28.0, "nothing lost: {req:?}");
    assert!(req.contains_key("_other/_other"), "{req:?}");
    let over = r
        .value(
            "hepflow_influxdb_series_overflow_total",
            &[("sink", "m"), ("measurement", "sip_requests")],
        )
        .unwrap();
    assert!(over > 0.0);
    // Prometheus too
    drop(p);
    let text = r.render_prometheus();
    let prom_over = r
        .value(
            "hepflow_influxdb_series_overflow_total",
            &[("sink", "m"), ("measurement", "hepflow_sip_requests_total")],
        )
        .unwrap();
    assert!(prom_over > 0.0, "{text}");
    assert!(
        text.contains("hepflow_sip_requests_total{method=\"_other\",node=\"_other\"}"),
        "{text}"
    );
}

#[test]
fn prometheus_series_match_the_corpus() {
    let (mut agg, r, _p) = new_agg(settings(Mode::Aggregate), true);
    let evs = udp_corpus(at_secs(T0));
    let mut out = Vec::new();
    agg.ingest(&evs, T0 as i64 * S, &mut out);
    // counters are live before the interval is emitted
    let text = r.render_prometheus();
    for (k, v) in expected_requests() {
        let (m, n) = k.split_once('/').unwrap();
        let series = format!("hepflow_sip_requests_total{{method=\"{m}\",node=\"{n}\"}} {v}");
        assert!(text.contains(&series), "missing {series}\n{text}");
    }
    for (k, v) in expected_responses() {
        let p: Vec<&str> = k.split('/').collect();
        let series = format!(
            "hepflow_sip_responses_total{{class=\"{}\",code=\"{}\",method=\"{}\",node=\"{}\"}} {v}",
            p[1], p[0], p[2], p[3]
        );
        assert!(text.contains(&series), "missing {series}\n{text}");
    }
    for (k, v) in expected_messages() {
        let p: Vec<&str> = k.split('/').collect();
        let series = format!(
            "hepflow_hep_messages_total{{node=\"{}\",proto=\"{}\",transport=\"{}\"}} {v}",
            p[1], p[0], p[2]
        );
        assert!(text.contains(&series), "missing {series}\n{text}");
    }
    assert!(
        text.contains("hepflow_rtcp_reports_total{node=\"2001\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("hepflow_rtcp_jitter_mean"),
        "gauges wait for the interval\n{text}"
    );
    agg.emit_due(0, true, &mut out);
    let text = r.render_prometheus();
    assert!(
        text.contains("hepflow_rtcp_jitter_mean{node=\"2001\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE hepflow_rtcp_jitter_max gauge"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE hepflow_sip_requests_total counter"),
        "{text}"
    );
}

#[test]
fn optional_tags_are_added_and_sorted() {
    let mut s = settings(Mode::Aggregate);
    s.optional = vec![
        OptionalTag::SrcNet,
        OptionalTag::Listener,
        OptionalTag::HepVersion,
        OptionalTag::HepflowNode,
        OptionalTag::CaptureId,
        OptionalTag::DstNet,
    ];
    let (mut agg, _r, _) = new_agg(s, false);
    let evs = corpus_events("kamailio-hep1-udp.pcapng", Transport::Udp, at_secs(T0));
    let mut out = Vec::new();
    agg.ingest(&evs, T0 as i64 * S, &mut out);
    agg.emit_due(0, true, &mut out);
    let lines: Vec<Line> = out.iter().map(|l| parse_line(l)).collect();
    let inv = lines
        .iter()
        .find(|l| l.measurement == "sip_requests" && l.tag("method") == Some("INVITE"))
        .unwrap();
    assert_eq!(inv.tag("src_net"), Some("127.0.0.0/24"));
    assert_eq!(inv.tag("dst_net"), Some("127.0.0.0/24"));
    assert_eq!(inv.tag("listener"), Some("udp"));
    assert_eq!(inv.tag("hep_version"), Some("1"));
    assert_eq!(inv.tag("hepflow_node"), Some("hub-a"));
    assert_eq!(inv.tag("capture_id"), Some("0"));
    assert_eq!(inv.fields["count"], Value::Int(2));
    // decode errors do not get optional tags
    let mut out = Vec::new();
    agg.decode_errors(&[("udp".into(), "bad_magic".into(), 3)], 5, &mut out);
    let l = parse_line(&out[0]);
    assert_eq!(l.tags.len(), 3, "{l:?}");
}

#[test]
fn raw_mode_writes_one_point_per_message_with_unique_timestamps() {
    let (mut agg, _r, _) = new_agg(settings(Mode::Raw), false);
    let evs = udp_corpus(at_secs(T0));
    let mut out = Vec::new();
    agg.ingest(&evs, T0 as i64 * S, &mut out);
    assert_eq!(out.len(), 64);
    assert_eq!(agg.open_buckets(), 0, "raw mode keeps no aggregates");
    let lines: Vec<Line> = out.iter().map(|l| parse_line(l)).collect();
    let mut keys = HashSet::new();
    for l in &lines {
        assert_eq!(l.measurement, "hep_packets");
        assert!(
            keys.insert((l.tags.clone(), l.ts)),
            "two points would overwrite: {l:?}"
        );
        assert!(l.tag("call_id").is_none(), "Call-ID is never a tag");
    }
    let invite = lines
        .iter()
        .find(|l| l.tag("method") == Some("INVITE") && l.tag("code").is_none())
        .unwrap();
    assert!(matches!(invite.fields["call_id"], Value::Str(_)));
    assert!(matches!(invite.fields["src_ip"], Value::Str(_)));
    let resp = lines.iter().find(|l| l.tag("code") == Some("407")).unwrap();
    assert_eq!(resp.tag("class"), Some("4xx"));
    assert_eq!(resp.tag("method"), Some("INVITE"));
    // capture timestamps are used when present
    let hep3 = corpus_events("kamailio-hep3-udp.pcapng", Transport::Udp, at_secs(T0));
    let ts_us = hep3[0].hep().ts_sec as i64 * 1_000_000 + hep3[0].hep().ts_usec as i64;
    let mut out = Vec::new();
    agg.ingest(&hep3[..1], 0, &mut out);
    let l = parse_line(&out[0]);
    assert_eq!(l.ts.unwrap() / 1000, ts_us);
}

#[test]
fn decode_error_deltas() {
    let (mut agg, _r, _) = new_agg(settings(Mode::Aggregate), false);
    let mut out = Vec::new();
    let t = |l: &str, r: &str, v: u64| (l.to_string(), r.to_string(), v);
    // two transports of one listener are summed
    agg.decode_errors(
        &[t("udp", "bad_magic", 2), t("udp", "bad_magic", 1)],
        10,
        &mut out,
    );
    agg.decode_errors(
        &[t("udp", "bad_magic", 2), t("udp", "bad_magic", 1)],
        20,
        &mut out,
    );
    agg.decode_errors(
        &[
            t("udp", "bad_magic", 5),
            t("udp", "bad_magic", 1),
            t("tcp, x", "too_short", 1),
        ],
        30,
        &mut out,
    );
    let lines: Vec<Line> = out.iter().map(|l| parse_line(l)).collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert_eq!(lines[0].ts, Some(10));
    assert_eq!(lines[0].fields["count"], Value::Int(3));
    let at30: Vec<&Line> = lines.iter().filter(|l| l.ts == Some(30)).collect();
    assert_eq!(at30.len(), 2);
    let tcp = at30
        .iter()
        .find(|l| l.tag("reason") == Some("too_short"))
        .unwrap();
    assert_eq!(tcp.tag("listener"), Some("tcp, x"));
    let udp = at30
        .iter()
        .find(|l| l.tag("reason") == Some("bad_magic"))
        .unwrap();
    assert_eq!(udp.fields["count"], Value::Int(3));
}

#[test]
fn decode_errors_are_due_once_per_interval() {
    let (mut agg, _r, _) = new_agg(settings(Mode::Aggregate), false);
    let base = 1_700_000_000 * S;
    assert_eq!(agg.decode_errors_due(base + 3 * S), None);
    assert_eq!(agg.decode_errors_due(base + 9 * S), None);
    assert_eq!(
        agg.decode_errors_due(base + 10 * S + S / 2),
        None,
        "lateness"
    );
    assert_eq!(agg.decode_errors_due(base + 11 * S), Some(base));
    assert_eq!(agg.decode_errors_due(base + 12 * S), None);
    assert_eq!(agg.decode_errors_due(base + 45 * S), Some(base + 30 * S));
}
