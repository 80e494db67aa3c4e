//! Allocation behaviour of the decoder, measured with a counting global
//! allocator (this test binary only; counting is per thread, so the test
//! harness's own threads do not interfere):
//!
//! - decoding a HEP3 (and v1/v2) message without unknown chunks performs no
//!   heap allocation at all (the hot path); one with a vendor chunk performs
//!   exactly one (the `extra_chunks` vector);
//! - inflating a zlib bomb never makes an allocation larger than the
//!   configured `max_inflated_bytes` (plus the inflater's fixed state).

use bytes::{Bytes, BytesMut};
use flate2::write::ZlibEncoder;
use flate2::Compression;
use hepflow_sdk::hep::{decode, encode_v3, DecodeError, DecodeOptions, HepMessage, RawChunk};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

struct Counting;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: thread-locals may be gone while a thread shuts down.
    let _ = TRACK.try_with(|t| {
        if t.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Run `f` and return (allocations, largest allocation) made on this thread.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    COUNT.with(|c| c.set(0));
    LARGEST.with(|l| l.set(0));
    TRACK.with(|t| t.set(true));
    let r = f();
    TRACK.with(|t| t.set(false));
    (r, COUNT.with(|c| c.get()), LARGEST.with(|l| l.get()))
}

/// A received buffer as a receiver holds it: an already shared `Bytes`.
/// (A `Bytes` made straight from a `Vec` allocates its shared header on its
/// first clone or slice; that is the `bytes` crate, once per buffer.)
fn shared(v: Vec<u8>) -> Bytes {
    let b = Bytes::from(v);
    drop(b.clone());
    b
}

fn sample() -> HepMessage {
    let mut m = HepMessage::new_v3(Bytes::from(
        "INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: a@b\r\nContent-Length: 0\r\n\r\n",
    ));
    m.src_port = 5060;
    m.dst_port = 5060;
    m.ts_sec = 1_700_000_000;
    m.capture_id = 2001;
    m.node_name = Some(Bytes::from_static(b"node"));
    m.auth_key = Some(Bytes::from_static(b"key"));
    m.correlation_id = Some(Bytes::from_static(b"a@b"));
    m
}

fn encode(m: &HepMessage) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_v3(m, &mut out).expect("encode");
    out.to_vec()
}

#[test]
fn decoding_allocates_only_for_extra_chunks_and_stays_within_the_inflate_bound() {
    let opts = DecodeOptions::default();

    // HEP3, every string chunk a slice: no allocation.
    let wire = shared(encode(&sample()));
    let (msg, n, _) = measure(|| decode(wire.clone(), &opts).expect("decodes"));
    assert_eq!(n, 0, "HEP3 decode allocated {n} times");
    let (_, n, _) = measure(|| drop(msg));
    assert_eq!(n, 0);

    // v1 and v2: no allocation.
    let mut v2 = vec![
        2u8, 16, 2, 17, 0x13, 0xc4, 0x13, 0xc4, 1, 2, 3, 4, 5, 6, 7, 8,
    ];
    v2.extend_from_slice(&[0; 12]);
    v2.extend_from_slice(b"OPTIONS sip:x SIP/2.0\r\n\r\n");
    let mut v1 = v2.clone();
    v1[0] = 1;
    v1.drain(16..28);
    for wire in [shared(v1), shared(v2)] {
        let (r, n, _) = measure(|| decode(wire.clone(), &opts).map(drop));
        assert!(r.is_ok());
        assert_eq!(n, 0, "v1/v2 decode allocated {n} times");
    }

    // One vendor chunk: exactly one allocation (the extra_chunks Vec).
    let mut m = sample();
    m.extra_chunks.push(RawChunk {
        vendor: 2,
        chunk_type: 0x99,
        value: Bytes::from_static(b"\0\0\0\x01"),
    });
    let wire = shared(encode(&m));
    let (r, n, _) = measure(|| decode(wire.clone(), &opts).map(drop));
    assert!(r.is_ok());
    assert_eq!(n, 1, "decode with one vendor chunk allocated {n} times");

    // A zlib bomb (32 MiB of zeros) against a 200 kB bound: refused, and no
    // single allocation on the way exceeds the bound.
    let limit = 200_000; // not a power of two: doubling alone would overshoot it
    let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
    z.write_all(&vec![0u8; 32 << 20]).expect("vec");
    let bomb = z.finish().expect("vec");
    let mut m = HepMessage::new_v3(Bytes::new());
    m.extra_chunks.clear();
    let mut wire = encode(&m);
    // Swap the empty 0x0f payload chunk for a 0x10 chunk holding the bomb.
    let payload_at = wire.len() - 6;
    wire.truncate(payload_at);
    wire.extend_from_slice(&[0, 0, 0, 0x10]);
    wire.extend_from_slice(&((bomb.len() + 6) as u16).to_be_bytes());
    wire.extend_from_slice(&bomb);
    let total = wire.len() as u16;
    wire[4..6].copy_from_slice(&total.to_be_bytes());
    let wire = shared(wire);
    let opts = DecodeOptions {
        max_inflated_bytes: limit,
    };
    let (r, _, largest) = measure(|| decode(wire.clone(), &opts).map(drop));
    assert_eq!(r, Err(DecodeError::InflatedTooLarge { limit }));
    assert!(
        largest <= limit,
        "inflating allocated {largest} bytes at once, bound {limit}"
    );
}
