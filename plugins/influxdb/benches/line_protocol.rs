//! Criterion benchmark of line protocol encoding: aggregate-style points
//! (plain tags), points whose tag values need escaping, and raw-mode points
//! with string fields. Throughput is reported in points per second.
//!
//! Run: `cargo bench -p hepflow-influxdb --bench line_protocol`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hepflow_influxdb::line::{encode_point, FieldValue, Point};

const POINTS: u64 = 1000;

fn plain(c: &mut Criterion) {
    let mut g = c.benchmark_group("line_protocol");
    g.throughput(Throughput::Elements(POINTS));
    let mut out = String::with_capacity(1 << 20);

    g.bench_function("aggregate_point_plain_tags", |b| {
        b.iter(|| {
            out.clear();
            for i in 0..POINTS {
                let tags = [
                    ("class", "2xx"),
                    ("code", "200"),
                    ("method", "INVITE"),
                    ("node", "kamailio-1"),
                    ("region", "eu1"),
                ];
                let fields = [("count", FieldValue::Int(i as i64))];
                let _ = encode_point(
                    &mut out,
                    black_box(&Point {
                        measurement: "sip_responses",
                        tags: &tags,
                        fields: &fields,
                        timestamp_ns: Some(1_700_000_000_000_000_000 + i as i64),
                    }),
                );
                out.push('\n');
            }
            black_box(out.len())
        })
    });

    g.bench_function("aggregate_point_escaped_tags", |b| {
        b.iter(|| {
            out.clear();
            for i in 0..POINTS {
                let tags = [
                    ("node", "edge node, rack=3 \"b\""),
                    ("proto", "sip"),
                    ("transport", "udp"),
                ];
                let fields = [
                    ("count", FieldValue::Int(i as i64)),
                    ("bytes", FieldValue::Int(i as i64 * 700)),
                ];
                let _ = encode_point(
                    &mut out,
                    black_box(&Point {
                        measurement: "hep_messages",
                        tags: &tags,
                        fields: &fields,
                        timestamp_ns: Some(1_700_000_000_000_000_000 + i as i64),
                    }),
                );
                out.push('\n');
            }
            black_box(out.len())
        })
    });

    g.bench_function("rtcp_point_float_fields", |b| {
        b.iter(|| {
            out.clear();
            for i in 0..POINTS {
                let tags = [("node", "2001")];
                let fields = [
                    ("reports", FieldValue::Int(12)),
                    ("report_blocks", FieldValue::Int(12)),
                    ("jitter_mean", FieldValue::Float(3.25 + i as f64)),
                    ("jitter_max", FieldValue::Float(17.0)),
                    ("fraction_lost_mean", FieldValue::Float(0.0125)),
                    ("fraction_lost_max", FieldValue::Float(0.05)),
                ];
                let _ = encode_point(
                    &mut out,
                    black_box(&Point {
                        measurement: "rtcp",
                        tags: &tags,
                        fields: &fields,
                        timestamp_ns: Some(1_700_000_000_000_000_000),
                    }),
                );
                out.push('\n');
            }
            black_box(out.len())
        })
    });

    g.bench_function("raw_point_string_fields", |b| {
        b.iter(|| {
            out.clear();
            for i in 0..POINTS {
                let tags = [
                    ("method", "INVITE"),
                    ("node", "2001"),
                    ("proto", "sip"),
                    ("transport", "udp"),
                ];
                let fields = [
                    ("bytes", FieldValue::Int(812)),
                    ("payload_bytes", FieldValue::Int(700)),
                    ("capture_id", FieldValue::Int(2001)),
                    ("src_ip", FieldValue::Str("10.0.0.1")),
                    ("dst_ip", FieldValue::Str("10.0.0.2")),
                    ("src_port", FieldValue::Int(5060)),
                    ("dst_port", FieldValue::Int(5060)),
                    (
                        "call_id",
                        FieldValue::Str("a84b4c76e66710@pc33.atlanta.com"),
                    ),
                    ("cseq", FieldValue::Int(i as i64)),
                ];
                let _ = encode_point(
                    &mut out,
                    black_box(&Point {
                        measurement: "hep_packets",
                        tags: &tags,
                        fields: &fields,
                        timestamp_ns: Some(1_700_000_000_000_000_000 + i as i64),
                    }),
                );
                out.push('\n');
            }
            black_box(out.len())
        })
    });
    g.finish();
}

/// The per-message cost of the aggregation in front of the encoder:
/// `Aggregator::ingest` of SIP requests and responses (SIP summary parse,
/// series key, counter update, Prometheus update), for comparison with
/// the encoding figures above.
fn ingest(c: &mut Criterion) {
    use hepflow_influxdb::aggregate::{AggCounters, AggSettings, Aggregator};
    use hepflow_influxdb::config::Mode;
    use hepflow_influxdb::prom::PromState;
    use hepflow_sdk::hep::HepMessage;
    use hepflow_sdk::metrics::{Counter, Registry};
    use hepflow_sdk::{Event, ReceiveMeta, Transport};
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    let payloads = [
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: abc@x\r\nCSeq: 1 INVITE\r\n\r\n",
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\nCall-ID: abc@x\r\nCSeq: 1 INVITE\r\n\r\n",
    ];
    let now = SystemTime::now();
    let make = |i: usize| {
        let mut m = HepMessage::new_v3(bytes::Bytes::from(payloads[i % 2]));
        m.capture_id = 2000 + (i % 8) as u32;
        Event::new(
            m,
            bytes::Bytes::from_static(&[0u8; 600]),
            ReceiveMeta {
                listener: "udp".into(),
                transport: Transport::Udp,
                peer: "127.0.0.1:5060".parse().unwrap(),
                received_at: now,
            },
        )
    };
    let mut g = c.benchmark_group("aggregate");
    g.throughput(Throughput::Elements(POINTS));
    let r = Registry::new();
    let settings = AggSettings {
        interval_ns: 10_000_000_000,
        lateness_ns: 1_000_000_000,
        mode: Mode::Aggregate,
        optional: Vec::new(),
        prefix_v4: 24,
        prefix_v6: 64,
        extra_tags: vec![("region".into(), "eu1".into())],
        max_series: 10_000,
        hepflow_node: "hub".into(),
    };
    let counters = AggCounters {
        rtcp_unparsed: Counter::default(),
        unencodable: Counter::default(),
    };
    let prom = Arc::new(Mutex::new(PromState::new(&[], 10_000, &r, "b")));
    let mut agg = Aggregator::new(settings, &r, "b", counters, Some(prom));
    let mut out = Vec::new();
    let now_ns = hepflow_influxdb::aggregate::unix_ns(now);
    g.bench_function("ingest_sip_with_prometheus", |b| {
        b.iter_batched(
            // fresh events: the SIP summary is parsed once per event
            || (0..POINTS as usize).map(make).collect::<Vec<_>>(),
            |evs| {
                agg.ingest(&evs, now_ns, &mut out);
                black_box(agg.open_buckets())
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, plain, ingest);
criterion_main!(benches);
