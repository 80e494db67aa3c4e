//! Fuzz target `spool_read`: any bytes as what the spool reads back from
//! disk: a run of records (`format::parse`, walked as the reader walks a
//! segment), every record's payload as an event (`EventDecoder`), and the
//! same bytes as a position file. Beyond "never panics", it checks that a
//! parsed record never claims bytes past the input and that the walk
//! always moves forward.
#![no_main]

use bytes::Bytes;
use hepflow_sdk::hep::DecodeOptions;
use hepflow_sdk::spool::event_record::EventDecoder;
use hepflow_sdk::spool::format::{decode_positions, parse, Parsed};
use hepflow_sdk::EventBatch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = EventDecoder::new(DecodeOptions {
        max_inflated_bytes: 64 * 1024,
    });
    let mut batch = EventBatch::new();
    let mut at = 0;
    while at < data.len() {
        match parse(&data[at..]) {
            Parsed::Record { payload, size, .. } => {
                assert!(size >= 24 && at + size <= data.len());
                let _ = decoder.decode_into(Bytes::copy_from_slice(payload), &mut batch);
                at += size;
            }
            Parsed::Trailer { .. } => at += 24,
            Parsed::Incomplete { .. } | Parsed::Corrupt => break,
        }
    }
    let mut events = Vec::new();
    batch.finish(&mut events);
    for e in &events {
        let _ = e.sip();
    }
    // The payload decoder on the raw input too (most inputs fail the CRC).
    let _ = decoder.decode_into(Bytes::copy_from_slice(data), &mut EventBatch::new());
    if let Some(p) = decode_positions(data) {
        assert_eq!(p.len() * 24 + 16, data.len());
    }
});
