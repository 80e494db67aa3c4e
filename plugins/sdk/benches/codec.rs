//! Criterion benchmarks of the HEP codec hot path: decoding one ~600-byte
//! SIP INVITE as HEPv1, HEPv2 and HEPv3 (Kamailio's chunk layout, plus a
//! variant with node name / auth key / correlation id), and encoding it as
//! HEPv3 into a reused buffer. Throughput is reported in messages.
//!
//! Run: `cargo bench -p hepflow-sdk --bench codec`. The received buffer is a
//! shared `Bytes` cloned per iteration, as a receiver splitting datagrams off
//! one receive buffer would hand them over.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hepflow_sdk::hep::{decode, encode_v3, DecodeOptions, HepMessage, AF_INET};
use std::net::{IpAddr, Ipv4Addr};

/// A realistic ~600-byte INVITE with SDP.
fn invite() -> Bytes {
    let sdp = "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let head = format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
         Max-Forwards: 70\r\n\
         To: Bob <sip:bob@example.com>\r\n\
         From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
         Call-ID: a84b4c76e66710@pc33.example.com\r\n\
         CSeq: 314159 INVITE\r\n\
         Contact: <sip:alice@192.0.2.10:5060>\r\n\
         User-Agent: hepflow-bench\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n",
        sdp.len()
    );
    Bytes::from(format!("{head}{sdp}"))
}

fn message(payload: Bytes) -> HepMessage {
    let mut m = HepMessage::new_v3(payload);
    m.ip_family = AF_INET;
    m.ip_proto = 17;
    m.src_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    m.dst_ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20));
    m.src_port = 5060;
    m.dst_port = 5060;
    m.ts_sec = 1_795_691_342;
    m.ts_usec = 791_533;
    m.capture_id = 2001;
    m
}

fn v1_v2(version: u8, payload: &[u8]) -> Bytes {
    let mut w = vec![version, 16, AF_INET, 17, 0x13, 0xc4, 0x13, 0xc4];
    w.extend_from_slice(&[192, 0, 2, 10, 198, 51, 100, 20]);
    if version == 2 {
        w.extend_from_slice(&1_795_691_342u32.to_le_bytes());
        w.extend_from_slice(&791_533u32.to_le_bytes());
        w.extend_from_slice(&2001u16.to_le_bytes());
        w.extend_from_slice(&[0, 0]);
    }
    w.extend_from_slice(payload);
    shared(w)
}

/// A `Bytes` that is already shared (its first clone allocates the shared
/// header; do that outside the measurement).
fn shared(v: Vec<u8>) -> Bytes {
    let b = Bytes::from(v);
    drop(b.clone());
    b
}

fn encode(m: &HepMessage) -> Bytes {
    let mut out = BytesMut::new();
    encode_v3(m, &mut out).expect("fits");
    shared(out.to_vec())
}

fn bench_codec(c: &mut Criterion) {
    let payload = invite();
    let opts = DecodeOptions::default();
    let base = message(payload.clone());
    let mut rich = base.clone();
    rich.node_name = Some(Bytes::from_static(b"edge-ams-1"));
    rich.auth_key = Some(Bytes::from_static(b"myHep"));
    rich.correlation_id = Some(Bytes::from_static(b"a84b4c76e66710@pc33.example.com"));

    let v1 = v1_v2(1, &payload);
    let v2 = v1_v2(2, &payload);
    let v3 = encode(&base);
    let v3_rich = encode(&rich);
    let mut compressed = base.clone();
    compressed.payload_compressed = true;
    let v3_zlib = encode(&compressed);

    let mut g = c.benchmark_group("hep");
    g.throughput(Throughput::Elements(1));
    for (name, wire) in [
        ("decode_v1", &v1),
        ("decode_v2", &v2),
        ("decode_v3", &v3),
        ("decode_v3_node_auth_corr", &v3_rich),
        ("decode_v3_zlib", &v3_zlib),
    ] {
        assert!(decode(wire.clone(), &opts).is_ok(), "{name}");
        g.bench_function(name, |b| {
            b.iter(|| decode(black_box(wire.clone()), black_box(&opts)))
        });
    }
    let mut out = BytesMut::with_capacity(2048);
    g.bench_function("encode_v3", |b| {
        b.iter(|| {
            out.clear();
            encode_v3(black_box(&base), &mut out).expect("fits");
            black_box(out.len())
        })
    });
    g.bench_function("encode_v3_node_auth_corr", |b| {
        b.iter(|| {
            out.clear();
            encode_v3(black_box(&rich), &mut out).expect("fits");
            black_box(out.len())
        })
    });
    g.finish();
    println!(
        "payload {} bytes; HEPv1 {} / HEPv2 {} / HEPv3 {} ({} with node/auth/corr, {} zlib) bytes",
        payload.len(),
        v1.len(),
        v2.len(),
        v3.len(),
        v3_rich.len(),
        v3_zlib.len()
    );
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
