//! Fuzz target `tcp_frame`: any bytes as a HEP3 TCP stream, cut into
//! frames the way a TCP/TLS listener does (`hep3_frame_len` over a
//! growing buffer, a frame length bound of 64 KiB), once whole and once
//! fed in reads of sizes the input's first byte picks. Beyond "never
//! panics": both ways cut the same frames and stop at the same place.
#![no_main]

use hepflow_sdk::hep::hep3_frame_len;
use libfuzzer_sys::fuzz_target;

/// Frames cut from `reads` fed in order, and whether framing failed.
fn frames(reads: &[&[u8]]) -> (Vec<Vec<u8>>, bool) {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for r in reads {
        buf.extend_from_slice(r);
        loop {
            match hep3_frame_len(&buf) {
                Ok(Some(len)) if len > 65535 => return (out, true),
                Ok(Some(len)) if buf.len() >= len => {
                    assert!(len >= 6, "a frame shorter than its header: {len}");
                    out.push(buf.drain(..len).collect());
                }
                Ok(_) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let whole = frames(&[stream]);
    let step = usize::from(step % 17) + 1;
    let pieces: Vec<&[u8]> = stream.chunks(step).collect();
    let split = frames(&pieces);
    assert_eq!(whole.0, split.0, "frames differ when the stream is split");
    assert_eq!(whole.1, split.1, "framing errors differ when split");
});
