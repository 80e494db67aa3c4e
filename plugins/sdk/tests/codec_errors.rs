//! One test per `DecodeError` variant (and per `EncodeError` variant), each
//! with hand-crafted bytes, asserting the exact variant and its `reason()`
//! label. Also the edges around them that must *not* fail (empty HEP3
//! payload chunk, inflating to exactly the bound, sngrep's bad v2 header
//! byte).

use bytes::{Bytes, BytesMut};
use flate2::write::ZlibEncoder;
use flate2::Compression;
use hepflow_sdk::hep::{
    decode, encode_v3, hep3_frame_len, DecodeError, DecodeOptions, EncodeError, HepMessage,
    HepVersion, RawChunk,
};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};

/// A HEP3 message from raw chunks `(vendor, type, value)`.
fn hep3(chunks: &[(u16, u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (vendor, t, v) in chunks {
        body.extend_from_slice(&vendor.to_be_bytes());
        body.extend_from_slice(&t.to_be_bytes());
        body.extend_from_slice(&((v.len() + 6) as u16).to_be_bytes());
        body.extend_from_slice(v);
    }
    let mut m = b"HEP3".to_vec();
    m.extend_from_slice(&((body.len() + 6) as u16).to_be_bytes());
    m.extend_from_slice(&body);
    m
}

/// Fix the HEP3 total length to the buffer's length.
fn fix_len(mut m: Vec<u8>) -> Vec<u8> {
    let n = m.len() as u16;
    m[4..6].copy_from_slice(&n.to_be_bytes());
    m
}

fn dec(bytes: &[u8]) -> Result<HepMessage, DecodeError> {
    decode(Bytes::copy_from_slice(bytes), &DecodeOptions::default())
}

fn err(bytes: &[u8]) -> DecodeError {
    match dec(bytes) {
        Ok(m) => panic!("expected an error, decoded {m:?}"),
        Err(e) => e,
    }
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).expect("vec write");
    e.finish().expect("vec finish")
}

/// A minimal valid v1 IPv4 header (16 bytes) before the payload.
fn v1_header_v4() -> Vec<u8> {
    vec![
        1, 16, 2, 17, 0x13, 0xc4, 0x13, 0xc4, 10, 0, 0, 1, 10, 0, 0, 2,
    ]
}

#[test]
fn too_short() {
    assert_eq!(err(b""), DecodeError::TooShort { len: 0, need: 6 });
    assert_eq!(err(b"HEP"), DecodeError::TooShort { len: 3, need: 6 });
    assert_eq!(err(b"HEP3\x00"), DecodeError::TooShort { len: 5, need: 6 });
    // v1 IPv4 needs 16 bytes, v2 IPv4 28, v2 IPv6 52.
    assert_eq!(
        err(&v1_header_v4()[..10]),
        DecodeError::TooShort { len: 10, need: 16 }
    );
    let mut v2 = v1_header_v4();
    v2[0] = 2;
    assert_eq!(err(&v2), DecodeError::TooShort { len: 16, need: 28 });
    let v2_v6 = [2u8, 40, 10, 17, 0, 1, 0, 2];
    assert_eq!(err(&v2_v6), DecodeError::TooShort { len: 8, need: 52 });
    assert_eq!(err(&[1, 16]), DecodeError::TooShort { len: 2, need: 16 });
    assert_eq!(err(b"HEP").reason(), "too_short");
}

#[test]
fn bad_magic() {
    // The draft's EEP3 magic is not accepted, nor anything else.
    let mut eep = hep3(&[(0, 0x0f, b"x")]);
    eep[0] = b'E';
    assert_eq!(err(&eep), DecodeError::BadMagic { first: b'E' });
    assert_eq!(
        err(b"GET / HTTP/1.1\r\n\r\n"),
        DecodeError::BadMagic { first: b'G' }
    );
    assert_eq!(err(b"HEP2\x00\x06"), DecodeError::BadMagic { first: b'H' });
    assert_eq!(err(b"HX"), DecodeError::BadMagic { first: b'H' });
    assert_eq!(err(&[0, 0, 0, 0, 0, 0]), DecodeError::BadMagic { first: 0 });
    assert_eq!(err(&[3; 40]), DecodeError::BadMagic { first: 3 });
    assert_eq!(
        hep3_frame_len(b"EEP3\x00\x10"),
        Err(DecodeError::BadMagic { first: b'E' })
    );
    assert_eq!(err(&eep).reason(), "bad_magic");
}

#[test]
fn length_mismatch() {
    let good = hep3(&[(0, 0x0f, b"INVITE")]);
    assert!(dec(&good).is_ok());
    // Datagram longer than declared (two messages in one datagram).
    let mut two = good.clone();
    two.extend_from_slice(&good);
    assert_eq!(
        err(&two),
        DecodeError::LengthMismatch {
            declared: good.len(),
            actual: two.len()
        }
    );
    // Datagram shorter than declared (truncated).
    assert_eq!(
        err(&good[..good.len() - 1]),
        DecodeError::LengthMismatch {
            declared: good.len(),
            actual: good.len() - 1
        }
    );
    // Declared below the 6-byte header.
    assert_eq!(
        err(b"HEP3\x00\x05"),
        DecodeError::LengthMismatch {
            declared: 5,
            actual: 6
        }
    );
    assert_eq!(
        hep3_frame_len(b"HEP3\x00\x00"),
        Err(DecodeError::LengthMismatch {
            declared: 0,
            actual: 6
        })
    );
    assert_eq!(err(&two).reason(), "length_mismatch");
}

#[test]
fn chunk_too_short() {
    // A chunk length of 0 (Kamailio drops these too).
    let mut m = hep3(&[(0, 0x0f, b"INVITE"), (0, 0x11, b"")]);
    let off = m.len() - 6;
    m[off + 4..off + 6].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(
        err(&m),
        DecodeError::ChunkTooShort {
            offset: off,
            len: 0
        }
    );
    // A chunk length of 5.
    m[off + 4..off + 6].copy_from_slice(&5u16.to_be_bytes());
    assert_eq!(
        err(&m),
        DecodeError::ChunkTooShort {
            offset: off,
            len: 5
        }
    );
    // 3 trailing bytes where a chunk header should be.
    let mut t = hep3(&[(0, 0x0f, b"INVITE")]);
    let off = t.len();
    t.extend_from_slice(&[0, 0, 0]);
    let t = fix_len(t);
    assert_eq!(
        err(&t),
        DecodeError::ChunkTooShort {
            offset: off,
            len: 3
        }
    );
    assert_eq!(err(&t).reason(), "chunk_too_short");
}

#[test]
fn chunk_overrun() {
    let mut m = hep3(&[(0, 0x0f, b"INVITE")]);
    // payload chunk at offset 6 claims 40 bytes; the message has 18.
    m[10..12].copy_from_slice(&40u16.to_be_bytes());
    assert_eq!(
        err(&m),
        DecodeError::ChunkOverrun {
            offset: 6,
            len: 40,
            total: 18
        }
    );
    assert_eq!(err(&m).reason(), "chunk_overrun");
}

#[test]
fn bad_chunk_length() {
    let cases: [(u16, &[u8], usize); 8] = [
        (0x01, b"\x02\x00", 1),       // family: u8
        (0x03, b"\x7f\0\0\x01\0", 4), // IPv4 address: 4 bytes
        (0x04, b"\x7f\0\0", 4),
        (0x05, b"\x7f\0\0\x01", 16), // IPv6 address: 16 bytes
        (0x06, &[0u8; 15], 16),
        (0x07, b"\x13\xc4\0\0", 2), // port: u16
        (0x0c, b"\x07\xd2", 4),     // capture id: u32
        (0x14, &[0u8; 6], 8),       // MAC: u64 on the wire
    ];
    for (t, value, expected) in cases {
        let m = hep3(&[(0, t, value), (0, 0x0f, b"INVITE")]);
        assert_eq!(
            err(&m),
            DecodeError::BadChunkLength {
                chunk_type: t,
                len: value.len(),
                expected
            },
            "chunk type {t:#x}"
        );
    }
    // The same sizes from a vendor other than 0 are not checked: kept raw.
    let m = dec(&hep3(&[(2, 0x03, b"xyz"), (0, 0x0f, b"INVITE")])).expect("vendor chunk");
    assert_eq!(
        m.extra_chunks,
        vec![RawChunk {
            vendor: 2,
            chunk_type: 3,
            value: Bytes::from_static(b"xyz")
        }]
    );
    let m = hep3(&[(0, 0x09, b"\0\0"), (0, 0x0f, b"x")]);
    assert_eq!(err(&m).reason(), "bad_chunk_length");
}

#[test]
fn bad_address() {
    for family in [0u8, 1, 7, 23, 255] {
        let mut m = v1_header_v4();
        m[2] = family;
        m.extend_from_slice(b"INVITE");
        assert!(
            matches!(err(&m), DecodeError::BadAddress { .. }),
            "family {family}"
        );
        m[0] = 2;
        m.extend_from_slice(&[0; 12]);
        assert!(matches!(err(&m), DecodeError::BadAddress { .. }));
        assert_eq!(err(&m).reason(), "bad_address");
    }
}

#[test]
fn missing_payload() {
    let m = hep3(&[(0, 0x01, b"\x02"), (0, 0x0b, b"\x01"), (0, 0x13, b"node")]);
    assert_eq!(err(&m), DecodeError::MissingPayload);
    // The header alone.
    assert_eq!(err(b"HEP3\x00\x06"), DecodeError::MissingPayload);
    // A vendor chunk of type 0x0f is not the payload.
    assert_eq!(
        err(&hep3(&[(7, 0x0f, b"INVITE")])),
        DecodeError::MissingPayload
    );
    // v1 / v2 with nothing after the header.
    assert_eq!(err(&v1_header_v4()), DecodeError::MissingPayload);
    let mut v2 = v1_header_v4();
    v2[0] = 2;
    v2.extend_from_slice(&[0; 12]);
    assert_eq!(err(&v2), DecodeError::MissingPayload);
    assert_eq!(err(&v2).reason(), "missing_payload");
    // ...but an empty HEP3 payload chunk is an (empty) payload.
    let m = dec(&hep3(&[(0, 0x0f, b"")])).expect("empty payload chunk");
    assert!(m.payload.is_empty());
}

#[test]
fn inflate_failed() {
    // Not zlib at all.
    let m = hep3(&[(0, 0x10, b"INVITE sip:x SIP/2.0")]);
    assert!(matches!(err(&m), DecodeError::Inflate(_)), "{:?}", err(&m));
    // A truncated zlib stream.
    let z = zlib(b"INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: 1\r\n\r\n");
    let m = hep3(&[(0, 0x10, &z[..z.len() / 2])]);
    assert!(matches!(err(&m), DecodeError::Inflate(_)), "{:?}", err(&m));
    // gzip (1f 8b) is not what the wild sends, and is refused.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(b"INVITE").expect("vec write");
    let gz = gz.finish().expect("vec finish");
    let m = hep3(&[(0, 0x10, &gz)]);
    assert!(matches!(err(&m), DecodeError::Inflate(_)));
    // An empty compressed chunk.
    let m = hep3(&[(0, 0x10, b"")]);
    assert!(matches!(err(&m), DecodeError::Inflate(_)));
    assert_eq!(err(&m).reason(), "inflate_failed");
    // Corrupt checksum.
    let mut bad = z.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let m = hep3(&[(0, 0x10, &bad)]);
    assert!(matches!(err(&m), DecodeError::Inflate(_)));
}

#[test]
fn inflated_too_large() {
    // A zlib bomb: 16 MiB of zeros in a few KiB.
    let bomb = zlib(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 65_000, "bomb is {} bytes", bomb.len());
    let m = hep3(&[(0, 0x10, &bomb)]);
    assert_eq!(
        err(&m),
        DecodeError::InflatedTooLarge { limit: 1 << 20 },
        "default bound is 1 MiB"
    );
    assert_eq!(err(&m).reason(), "inflated_too_large");

    // Exactly at the bound is fine, one byte over is not.
    let payload = vec![b'a'; 1000];
    let m = hep3(&[(0, 0x10, &zlib(&payload))]);
    for (limit, ok) in [(999, false), (1000, true), (1001, true), (0, false)] {
        let r = decode(
            Bytes::from(m.clone()),
            &DecodeOptions {
                max_inflated_bytes: limit,
            },
        );
        match (r, ok) {
            (Ok(msg), true) => {
                assert_eq!(&msg.payload[..], &payload[..]);
                assert!(msg.payload_compressed);
            }
            (Err(DecodeError::InflatedTooLarge { limit: l }), false) => assert_eq!(l, limit),
            (r, _) => panic!("limit {limit}: {r:?}"),
        }
    }
    // An empty inflated payload fits a zero bound.
    let m = hep3(&[(0, 0x10, &zlib(b""))]);
    let r = decode(
        Bytes::from(m),
        &DecodeOptions {
            max_inflated_bytes: 0,
        },
    )
    .expect("empty inflates within 0");
    assert!(r.payload.is_empty());
}

#[test]
fn every_reason_label_is_covered() {
    let mut overrun = hep3(&[(0, 0x0f, b"x")]);
    overrun[10..12].copy_from_slice(&200u16.to_be_bytes());
    let samples = [
        err(b""),
        err(b"X"),
        err(b"HEP3\x00\x07"),
        err(&fix_len(b"HEP3\0\0\0\0\0\x0f\0\x02".to_vec())),
        err(&overrun),
        err(&hep3(&[(0, 0x07, b"\0"), (0, 0x0f, b"x")])),
        err(&[1, 16, 9, 17, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        err(&hep3(&[(0, 0x13, b"n")])),
        err(&hep3(&[(0, 0x10, b"zz")])),
        err(&hep3(&[(0, 0x10, &zlib(&vec![0u8; (1 << 20) + 1]))])),
    ];
    let labels: Vec<&str> = samples.iter().map(|e| e.reason()).collect();
    assert_eq!(labels, DecodeError::REASONS.to_vec());
    for (i, e) in samples.iter().enumerate() {
        assert_eq!(e.reason_index(), i);
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn sngrep_v2_wrong_header_length_byte_is_ignored() {
    // sngrep's HEPv2 writes a wrong header-length byte and garbage pad
    // bytes: the layout comes from the address family alone.
    let mut m = v1_header_v4();
    m[0] = 2;
    m[1] = 28; // wrong: the v2 IPv4 header length byte should be 16
    m.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    m.extend_from_slice(&42u32.to_le_bytes());
    m.extend_from_slice(&2002u16.to_le_bytes());
    m.extend_from_slice(&[0xde, 0xad]); // garbage pad
    m.extend_from_slice(b"OPTIONS sip:x SIP/2.0\r\n\r\n");
    let d = dec(&m).expect("v2 with a wrong header-length byte");
    assert_eq!(d.version, HepVersion::V2);
    assert_eq!(
        (d.ts_sec, d.ts_usec, d.capture_id),
        (1_700_000_000, 42, 2002)
    );
    assert_eq!(d.src_ip, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!((d.src_port, d.dst_port), (5060, 5060));
    assert_eq!(&d.payload[..], b"OPTIONS sip:x SIP/2.0\r\n\r\n");
    // The same with a header-length byte of 0 and of 255.
    for b in [0u8, 255] {
        m[1] = b;
        assert_eq!(dec(&m).expect("any header-length byte"), d);
    }
}

#[test]
fn encode_too_large() {
    let mut msg = HepMessage::new_v3(Bytes::from(vec![b'x'; 65_000]));
    msg.node_name = Some(Bytes::from(vec![b'n'; 1_000]));
    let mut out = BytesMut::from(&b"prefix"[..]);
    let e = encode_v3(&msg, &mut out).expect_err("too large");
    assert!(
        matches!(e, EncodeError::TooLarge { len } if len > 65_535),
        "{e:?}"
    );
    assert_eq!(&out[..], b"prefix", "out untouched on error");
    // Exactly 65535 is fine.
    let base = {
        let mut o = BytesMut::new();
        encode_v3(&HepMessage::new_v3(Bytes::new()), &mut o).expect("empty");
        o.len()
    };
    let msg = HepMessage::new_v3(Bytes::from(vec![b'x'; 65_535 - base]));
    let mut o = BytesMut::new();
    encode_v3(&msg, &mut o).expect("exactly 65535");
    assert_eq!(o.len(), 65_535);
    assert_eq!(dec(&o).expect("decodes"), msg);
}

#[test]
fn encode_chunk_too_large() {
    let mut msg = HepMessage::new_v3(Bytes::from_static(b"x"));
    msg.extra_chunks.push(RawChunk {
        vendor: 3,
        chunk_type: 0x99,
        value: Bytes::from(vec![0; 70_000]),
    });
    let mut out = BytesMut::new();
    assert_eq!(
        encode_v3(&msg, &mut out),
        Err(EncodeError::ChunkTooLarge {
            chunk_type: 0x99,
            len: 70_000
        })
    );
    assert!(out.is_empty());
    let mut msg = HepMessage::new_v3(Bytes::from(vec![b'x'; 65_530]));
    assert!(matches!(
        encode_v3(&msg, &mut out),
        Err(EncodeError::ChunkTooLarge {
            chunk_type: 0x0f,
            ..
        })
    ));
    // A big compressible payload fits once compressed.
    msg.payload_compressed = true;
    encode_v3(&msg, &mut out).expect("compressed fits");
    assert_eq!(dec(&out).expect("decodes"), msg);
}
