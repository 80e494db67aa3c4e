//! Benchmarks of the kafka sink's encoder: the record key (the call) and
//! the record value in each `value` mode, for a HEP3 INVITE that carries
//! an auth key (so `raw` has to cut the key chunk out).
//!
//! Run: `cargo bench -p hepflow-kafka --bench record`.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hepflow_kafka::config::{KeyMode, ValueMode};
use hepflow_kafka::value::{key, value};
use hepflow_sdk::hep::HepMessage;
use hepflow_sdk::Event;
use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

const INVITE: &str = "INVITE sip:+4930123456@sip.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK-524287-1---7a1e3c2b9d8f6e5a;rport\r\n\
Max-Forwards: 69\r\n\
Contact: <sip:alice@192.168.1.20:5062;transport=udp>\r\n\
To: <sip:+4930123456@sip.example.com;user=phone>\r\n\
From: \"Alice Example\" <sip:alice@sip.example.com>;tag=as5f3a2b1c\r\n\
Call-ID: 3c26700857bb-8xq9vbz3rf0n@192.168.1.20\r\n\
CSeq: 102 INVITE\r\n\
User-Agent: Zoiper rv2.10.19.4\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\
\r\n\
v=0\r\n\
o=Z 0 123456789 IN IP4 192.168.1.20\r\n\
s=Z\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
m=audio 52000 RTP/AVP 106 9 0 8\r\n\
a=sendrecv\r\n";

/// A received event: encoded as HEP3 with node name and auth key, then
/// decoded as the listener would.
fn event() -> Event {
    let mut m = HepMessage::new_v3(Bytes::from_static(INVITE.as_bytes()));
    m.src_ip = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    m.dst_ip = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 4));
    m.src_port = 5060;
    m.dst_port = 5060;
    m.ts_sec = 1_714_564_800;
    m.capture_id = 2001;
    m.node_name = Some(Bytes::from_static(b"kamailio-edge-1"));
    m.auth_key = Some(Bytes::from_static(b"agent-secret"));
    Event::received_over_udp(&m, "10.1.2.3:5060".parse().unwrap(), SystemTime::now())
        .expect("encode")
}

fn bench(c: &mut Criterion) {
    let ev = event();
    let _ = ev.sip(); // the SIP summary is parsed once per event, by whoever asks first
    let mut scratch = Vec::with_capacity(4096);
    let mut g = c.benchmark_group("kafka_record");
    g.throughput(Throughput::Elements(1));
    g.bench_function("key_call", |b| {
        b.iter(|| key(black_box(&ev), KeyMode::Call).map(<[u8]>::len))
    });
    for (name, mode, keep) in [
        ("value_raw_auth_key_cut", ValueMode::Raw, false),
        ("value_raw_as_received", ValueMode::Raw, true),
        ("value_hepv3_reencoded", ValueMode::Hepv3, false),
        ("value_json_document", ValueMode::Json, false),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                value(black_box(&ev), mode, keep, &mut scratch)
                    .expect("encodes")
                    .len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
