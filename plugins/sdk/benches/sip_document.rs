//! Benchmarks of the per-message CPU work of the SIP summary and the event
//! document: parsing the summary of a typical INVITE, and writing the JSON
//! document of an event (with the summary already parsed, and from a fresh
//! event that still has to parse it); and the JSON string escaper against
//! serde_json's on the same INVITE.
//!
//! Run: `cargo bench -p hepflow-sdk --bench sip_document`.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hepflow_sdk::document::write_document;
use hepflow_sdk::hep::HepMessage;
use hepflow_sdk::sip::SipSummary;
use hepflow_sdk::{Event, ReceiveMeta, Transport};
use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

/// A typical INVITE with SDP, as sent by a SIP phone through a proxy.
const INVITE: &str = "INVITE sip:+4930123456@sip.example.com:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK-524287-1---7a1e3c2b9d8f6e5a;rport\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5062;received=198.51.100.7;branch=z9hG4bK-d8754z-1f2e;rport=5062\r\n\
Max-Forwards: 69\r\n\
Record-Route: <sip:10.1.2.3;lr;ftag=as5f3a2b1c>\r\n\
Contact: <sip:alice@192.168.1.20:5062;transport=udp>\r\n\
To: <sip:+4930123456@sip.example.com;user=phone>\r\n\
From: \"Alice Example\" <sip:alice@sip.example.com>;tag=as5f3a2b1c\r\n\
Call-ID: 3c26700857bb-8xq9vbz3rf0n@192.168.1.20\r\n\
CSeq: 102 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r\n\
Content-Type: application/sdp\r\n\
Supported: replaces, timer, path\r\n\
User-Agent: Zoiper rv2.10.19.4\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Content-Length: 312\r\n\
\r\n\
v=0\r\n\
o=Z 0 123456789 IN IP4 192.168.1.20\r\n\
s=Z\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
m=audio 52000 RTP/AVP 106 9 98 101 0 8 3\r\n\
a=rtpmap:106 opus/48000/2\r\n\
a=fmtp:106 sprop-maxcapturerate=16000; minptime=20; useinbandfec=1\r\n\
a=rtpmap:98 telephone-event/48000\r\n\
a=fmtp:98 0-16\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n";

fn event() -> Event {
    let mut m = HepMessage::new_v3(Bytes::from_static(INVITE.as_bytes()));
    m.src_ip = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    m.dst_ip = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 4));
    m.src_port = 5060;
    m.dst_port = 5060;
    m.ts_sec = 1_714_564_800;
    m.ts_usec = 123_456;
    m.capture_id = 2001;
    m.node_name = Some(Bytes::from_static(b"kamailio-edge-1"));
    m.auth_key = Some(Bytes::from_static(b"secret"));
    Event::new(
        m,
        Bytes::new(),
        ReceiveMeta {
            listener: "udp".into(),
            transport: Transport::Udp,
            peer: "10.1.2.3:5060".parse().unwrap(),
            received_at: SystemTime::now(),
        },
    )
}

fn bench(c: &mut Criterion) {
    let payload = Bytes::from_static(INVITE.as_bytes());
    let mut g = c.benchmark_group("sip_summary");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_invite", |b| {
        b.iter(|| SipSummary::parse(black_box(&payload)))
    });
    g.finish();

    // The string escaper of the document writer against serde_json's, on
    // the INVITE above (the ratio is what to read).
    let mut g = c.benchmark_group("json_string");
    g.throughput(Throughput::Bytes(INVITE.len() as u64));
    let mut out = Vec::with_capacity(4096);
    g.bench_function("hepflow_write_str", |b| {
        b.iter(|| {
            out.clear();
            hepflow_sdk::json::write_str(&mut out, black_box(INVITE));
            out.len()
        })
    });
    g.bench_function("serde_json_to_writer", |b| {
        b.iter(|| {
            out.clear();
            let _ = serde_json::to_writer(&mut out, black_box(INVITE));
            out.len()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("event_document");
    g.throughput(Throughput::Elements(1));
    let ev = event();
    let _ = ev.sip();
    let mut out = Vec::with_capacity(4096);
    g.bench_function("json_sip_cached", |b| {
        b.iter(|| {
            out.clear();
            write_document(black_box(&ev), &mut out);
            out.len()
        })
    });
    g.bench_function("json_fresh_event", |b| {
        b.iter_batched(
            event,
            |ev| {
                out.clear();
                write_document(&ev, &mut out);
                out.len()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
