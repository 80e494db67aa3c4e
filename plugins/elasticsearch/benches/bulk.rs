//! Benchmark of bulk-body encoding, in documents per second: 1000 HEPv3
//! SIP events (an INVITE with SDP, ~1 KB, each with its own Call-ID and
//! timestamp, encoded to HEP3 wire bytes so ids hash real messages) turned
//! into one `_bulk` body, with the default settings (`create`, hash ids,
//! `hep-{proto}-%Y.%m.%d`) and with `index` + cluster-generated ids. As a
//! baseline in the same run, the SDK's document serialization alone
//! (`write_document`, what the file sink does per event); and gzip (fast)
//! of the resulting body, for `gzip = true`.
//!
//! Run: `cargo bench -p hepflow-elasticsearch --bench bulk`.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hepflow_elasticsearch::bulk::BulkEncoder;
use hepflow_elasticsearch::config::{BulkAction, DocumentId};
use hepflow_elasticsearch::index_name::IndexPattern;
use hepflow_sdk::document::write_document;
use hepflow_sdk::hep::HepMessage;
use hepflow_sdk::Event;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

const N: usize = 1000;

fn invite(i: usize) -> String {
    let sdp =
        "v=0\r\no=- 4711 4711 IN IP4 192.0.2.10\r\ns=call\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";
    format!(
        "INVITE sip:+4930555{i:04}@pbx.example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.{i:08x};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Desk {i}\" <sip:desk{i}@pbx.example.net>;tag=a{i:06}\r\n\
To: <sip:+4930555{i:04}@pbx.example.net>\r\n\
Call-ID: bench-{i:08}@192.0.2.10\r\n\
CSeq: 20 INVITE\r\n\
Contact: <sip:desk{i}@192.0.2.10:5060>\r\n\
User-Agent: DeskPhone/5.1\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn events() -> Vec<Event> {
    (0..N)
        .map(|i| {
            let mut m = HepMessage::new_v3(Bytes::from(invite(i)));
            m.proto_type = 1;
            m.src_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
            m.dst_ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 5));
            m.src_port = 5060;
            m.dst_port = 5060;
            m.ts_sec = 1_764_158_400 + i as u32;
            m.ts_usec = (i * 137 % 1_000_000) as u32;
            m.capture_id = 2001;
            m.node_name = Some(Bytes::from_static(b"edge-1"));
            let ev =
                Event::received_over_udp(&m, "192.0.2.10:5060".parse().unwrap(), SystemTime::now())
                    .expect("encode");
            ev.sip(); // parsed once, as a route would have done
            ev
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let evs = events();
    let mut g = c.benchmark_group("bulk_encode");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("baseline_document_only", |b| {
        let mut out = Vec::with_capacity(N * 1500);
        b.iter(|| {
            out.clear();
            for ev in &evs {
                write_document(ev, &mut out);
                out.push(b'\n');
            }
            black_box(out.len())
        })
    });
    let mut default = BulkEncoder::new(
        IndexPattern::parse("hep-{proto}-%Y.%m.%d").unwrap(),
        BulkAction::Create,
        DocumentId::Hash,
    );
    g.bench_function("create_hash_ids", |b| {
        b.iter(|| black_box(default.encode_batch(black_box(&evs)).body.len()))
    });
    let mut auto = BulkEncoder::new(
        IndexPattern::parse("hep-{proto}-%Y.%m.%d").unwrap(),
        BulkAction::Index,
        DocumentId::Auto,
    );
    g.bench_function("index_auto_ids", |b| {
        b.iter(|| black_box(auto.encode_batch(black_box(&evs)).body.len()))
    });
    let body = default.encode_batch(&evs).body;
    g.bench_function("gzip_fast_of_body", |b| {
        b.iter(|| {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            e.write_all(&body).unwrap();
            black_box(e.finish().unwrap().len())
        })
    });
    g.finish();
    eprintln!(
        "bulk body of {N} documents: {} bytes ({} per document)",
        body.len(),
        body.len() / N
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
