//! Micro-benchmarks of the forwarding sink's per-message work: preparing a
//! message (pass-through, HEPv3 re-encode with a node name) and choosing
//! its target by rendezvous hashing of the Call-ID.
//!
//! `cargo bench -p hepflow-hep --bench forward`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hepflow_hep::config::{Encoding, HepSinkConfig};
use hepflow_hep::prepare::Preparer;
use hepflow_hep::select::{key_hash, rendezvous, target_seed};
use hepflow_sdk::{Event, HepMessage};
use std::time::SystemTime;

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\nTo: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\nCSeq: 314159 INVITE\r\n\
Contact: <sip:alice@10.0.0.1>\r\nContent-Length: 0\r\n\r\n";

fn event() -> Event {
    let mut m = HepMessage::new_v3(Bytes::from_static(INVITE.as_bytes()));
    m.capture_id = 2001;
    m.node_name = Some(Bytes::from_static(b"kamailio-1"));
    Event::received_over_udp(&m, "127.0.0.1:5060".parse().unwrap(), SystemTime::now()).unwrap()
}

fn bench(c: &mut Criterion) {
    let ev = event();
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(1));
    let mut pass = Preparer::new(&HepSinkConfig::default(), "hub", true);
    g.bench_function("prepare_passthrough", |b| {
        b.iter(|| pass.prepare(&ev).unwrap())
    });
    let cfg = HepSinkConfig {
        encoding: Encoding::Hepv3,
        set_node_name: Some("hepflow-eu1-a".into()),
        ..HepSinkConfig::default()
    };
    let mut v3 = Preparer::new(&cfg, "hub", true);
    g.bench_function("prepare_hepv3_set_node_name", |b| {
        b.iter(|| v3.prepare(&ev).unwrap())
    });
    let seeds: Vec<u64> = ["tcp://a:9060", "tcp://b:9060", "tcp://c:9060"]
        .iter()
        .map(|u| target_seed(u))
        .collect();
    g.bench_function("hash_call_id_choose_of_3", |b| {
        b.iter(|| rendezvous(key_hash(&ev), &seeds, |_| true))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
