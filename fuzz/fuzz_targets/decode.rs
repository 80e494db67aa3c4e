//! Fuzz target `decode`: any bytes into the HEP decoder (v1, v2, v3,
//! compressed payloads with a small inflate bound). Beyond "never panics",
//! it checks two properties on every input:
//!
//! - whatever decodes re-encodes (`encode_v3`) to exactly
//!   `encoded_v3_len` bytes and decodes back to the same message (version
//!   V3);
//! - `hep3_frame_len` agrees with `decode` (a HEP3 message that decodes
//!   frames to its own length; a framing error means no HEP3 decode).
#![no_main]

use bytes::{Bytes, BytesMut};
use hepflow_sdk::hep::{
    decode, encode_v3, encoded_v3_len, hep3_frame_len, DecodeOptions, HepVersion,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = DecodeOptions {
        max_inflated_bytes: 64 * 1024,
    };
    let framed = hep3_frame_len(data);
    let decoded = decode(Bytes::copy_from_slice(data), &opts);
    match &decoded {
        Ok(m) if m.version == HepVersion::V3 => {
            assert_eq!(framed, Ok(Some(data.len())), "HEP3 frame length");
        }
        _ => {}
    }
    if framed.is_err() {
        assert!(
            decoded
                .as_ref()
                .map_or(true, |m| m.version != HepVersion::V3),
            "framing error but decoded as HEP3"
        );
    }
    if let Ok(m) = decoded {
        let mut out = BytesMut::new();
        if encode_v3(&m, &mut out).is_ok() {
            assert_eq!(out.len(), encoded_v3_len(&m), "encoded_v3_len");
            let back = decode(out.freeze(), &opts).expect("re-encoded message decodes");
            let mut expected = m;
            expected.version = HepVersion::V3;
            assert_eq!(back, expected, "round trip");
        }
    }
});
