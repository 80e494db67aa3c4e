//! Property tests of the HEP codec (proptest):
//!
//! - generated HEP3 messages (every optional field, IPv4/IPv6/mixed
//!   addresses, any address family byte, vendor and unknown chunks,
//!   compressed payloads) round-trip `encode_v3` -> `decode` exactly, and
//!   `encoded_v3_len` / `hep3_frame_len` agree with the encoding;
//! - generated v1/v2 datagrams decode to their fields and convert to v3;
//! - arbitrary bytes, arbitrary chunk soups behind a valid header, and
//!   mutated valid messages never panic the decoder; whatever decodes
//!   re-encodes to the same message;
//! - `hep3_frame_len` is consistent with `decode` on streams;
//! - a compressed payload decodes iff it fits `max_inflated_bytes`.

use bytes::{Bytes, BytesMut};
use hepflow_sdk::hep::{
    decode, encode_v3, encoded_v3_len, hep3_frame_len, DecodeError, DecodeOptions, HepMessage,
    HepVersion, RawChunk, AF_INET, AF_INET6,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// Payloads: random bytes, or SIP-like text (compressible).
fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        bytes(1500),
        ("[A-Z]{3,9}", "[a-z0-9]{1,20}", 0usize..40).prop_map(|(m, u, n)| {
            let mut s = format!("{m} sip:{u}@example.com SIP/2.0\r\n");
            for i in 0..n {
                s.push_str(&format!("X-Header-{i}: value {u} {i}\r\n"));
            }
            s.push_str("\r\n");
            Bytes::from(s)
        }),
    ]
}

/// Chunks the decoder keeps raw: any vendor other than 0, or a vendor-0
/// type with no typed field.
fn extra_chunk() -> impl Strategy<Value = RawChunk> {
    let unknown_generic = prop_oneof![Just(0u16), 0x19u16..=0x1f, 0x2au16..=0xffff,];
    prop_oneof![
        (1u16.., any::<u16>(), bytes(64)).prop_map(|(vendor, chunk_type, value)| RawChunk {
            vendor,
            chunk_type,
            value
        }),
        (unknown_generic, bytes(64)).prop_map(|(chunk_type, value)| RawChunk {
            vendor: 0,
            chunk_type,
            value
        }),
    ]
}

prop_compose! {
    fn hep_message()(
        core in (
            prop_oneof![Just(AF_INET), Just(AF_INET6), any::<u8>()],
            any::<u8>(), ip(), ip(), any::<u16>(), any::<u16>(),
            any::<u32>(), any::<u32>(), any::<u8>(), any::<u32>(),
        ),
        payload in payload(),
        payload_compressed in any::<bool>(),
        ints in (
            option::of(any::<u16>()), option::of(any::<u16>()), option::of(any::<u64>()),
            option::of(any::<u64>()), option::of(any::<u16>()), option::of(any::<u8>()),
            option::of(any::<u8>()), option::of(any::<u16>()), option::of(any::<u16>()),
            option::of(any::<u32>()), option::of(any::<u16>()), option::of(any::<u16>()),
        ),
        strings in (
            option::of(bytes(40)), option::of(bytes(40)), option::of(bytes(40)),
            option::of(bytes(40)), option::of(bytes(40)), option::of(bytes(40)),
            option::of(bytes(40)), option::of(bytes(40)),
        ),
        extra_chunks in vec(extra_chunk(), 0..4),
    ) -> HepMessage {
        let (ip_family, ip_proto, src_ip, dst_ip, src_port, dst_port, ts_sec, ts_usec, proto_type, capture_id) = core;
        let (keep_alive, vlan_id, src_mac, dst_mac, ethertype, tcp_flags, ip_tos, mos, r_factor, jitter, tag_type, event_type) = ints;
        let (auth_key, correlation_id, node_name, geo_location, transaction_type, payload_json_keys, tag_values, group_id) = strings;
        HepMessage {
            version: HepVersion::V3,
            ip_family, ip_proto, src_ip, dst_ip, src_port, dst_port, ts_sec, ts_usec,
            proto_type, capture_id, keep_alive, auth_key, payload, payload_compressed,
            correlation_id, vlan_id, node_name, src_mac, dst_mac, ethertype, tcp_flags,
            ip_tos, mos, r_factor, geo_location, jitter, transaction_type,
            payload_json_keys, tag_values, tag_type, event_type, group_id, extra_chunks,
        }
    }
}

fn encode(m: &HepMessage) -> BytesMut {
    let mut out = BytesMut::new();
    encode_v3(m, &mut out).expect("generated messages fit");
    out
}

/// Decode, and if that worked re-encode and decode again: the same message.
fn decode_reencode(bytes: &[u8]) -> Result<HepMessage, DecodeError> {
    let m = decode(Bytes::copy_from_slice(bytes), &DecodeOptions::default())?;
    let mut expected = m.clone();
    expected.version = HepVersion::V3;
    let mut out = BytesMut::new();
    if encode_v3(&m, &mut out).is_ok() {
        assert_eq!(out.len(), encoded_v3_len(&m));
        let again = decode(out.freeze(), &DecodeOptions::default()).expect("re-encoded decodes");
        assert_eq!(again, expected);
    }
    Ok(m)
}

/// The chunk boundaries of a valid HEP3 message (offsets of chunk starts).
fn chunk_offsets(m: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut off = 6;
    while off + 6 <= m.len() {
        v.push(off);
        let len = usize::from(u16::from_be_bytes([m[off + 4], m[off + 5]]));
        if len < 6 {
            break;
        }
        off += len;
    }
    v
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// Set a chunk's length field.
    ChunkLen(usize, u16),
    /// Fix the total length afterwards (so the chunk walk is exercised).
    FixTotal,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), vec(any::<u8>(), 1..12)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..12).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (any::<usize>(), any::<u16>()).prop_map(|(i, l)| Mutation::ChunkLen(i, l)),
        Just(Mutation::FixTotal),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    let n = buf.len().max(1);
    match m {
        Mutation::Flip(i, x) if !buf.is_empty() => buf[i % n] ^= x,
        Mutation::Truncate(i) => buf.truncate(i % n),
        Mutation::Insert(i, b) => {
            let at = i % (buf.len() + 1);
            buf.splice(at..at, b.iter().copied());
        }
        Mutation::Remove(i, k) if !buf.is_empty() => {
            let at = i % n;
            let end = (at + k).min(buf.len());
            buf.drain(at..end);
        }
        Mutation::ChunkLen(i, l) => {
            let offs = chunk_offsets(buf);
            if !offs.is_empty() {
                let off = offs[i % offs.len()];
                buf[off + 4..off + 6].copy_from_slice(&l.to_be_bytes());
            }
        }
        Mutation::FixTotal if buf.len() >= 6 && buf.len() <= 65535 => {
            let len = buf.len() as u16;
            buf[4..6].copy_from_slice(&len.to_be_bytes());
        }
        _ => {}
    }
}

/// A v1 or v2 datagram with the given fields.
#[allow(clippy::too_many_arguments)]
fn legacy_datagram(
    version: u8,
    hdr_len_byte: u8,
    src: IpAddr,
    dst: IpAddr,
    ip_proto: u8,
    ports: (u16, u16),
    ts: (u32, u32),
    capture_id: u16,
    pad: [u8; 2],
    payload: &[u8],
) -> Vec<u8> {
    let family = if src.is_ipv4() { AF_INET } else { AF_INET6 };
    let mut m = vec![version, hdr_len_byte, family, ip_proto];
    m.extend_from_slice(&ports.0.to_be_bytes());
    m.extend_from_slice(&ports.1.to_be_bytes());
    for a in [src, dst] {
        match a {
            IpAddr::V4(a) => m.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => m.extend_from_slice(&a.octets()),
        }
    }
    if version == 2 {
        m.extend_from_slice(&ts.0.to_le_bytes());
        m.extend_from_slice(&ts.1.to_le_bytes());
        m.extend_from_slice(&capture_id.to_le_bytes());
        m.extend_from_slice(&pad);
    }
    m.extend_from_slice(payload);
    m
}

fn same_family_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(a, b)| (IpAddr::from(a), IpAddr::from(b))),
        (any::<[u8; 16]>(), any::<[u8; 16]>())
            .prop_map(|(a, b)| (IpAddr::from(a), IpAddr::from(b))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // (integration tests have no lib.rs to put a regressions file beside)
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn v3_round_trip_is_exact(m in hep_message(), prefix in vec(any::<u8>(), 0..8)) {
        let mut out = BytesMut::from(&prefix[..]);
        encode_v3(&m, &mut out).expect("fits");
        prop_assert_eq!(&out[..prefix.len()], &prefix[..], "prefix kept");
        let wire = out.split_off(prefix.len()).freeze();
        prop_assert_eq!(wire.len(), encoded_v3_len(&m));
        prop_assert_eq!(hep3_frame_len(&wire), Ok(Some(wire.len())));
        let back = decode(wire.clone(), &DecodeOptions::default()).expect("decodes");
        prop_assert_eq!(&back, &m);
        if !m.payload_compressed {
            // Zero-copy: the payload is a slice of the wire buffer.
            let (p, w) = (back.payload.as_ptr() as usize, wire.as_ptr() as usize);
            prop_assert!(back.payload.is_empty() || (p >= w && p + back.payload.len() <= w + wire.len()));
        }
    }

    #[test]
    fn legacy_v1_v2_decode_and_convert(
        version in 1u8..=2,
        hdr_len_byte in any::<u8>(),
        (src, dst) in same_family_pair(),
        ip_proto in any::<u8>(),
        ports in any::<(u16, u16)>(),
        ts in any::<(u32, u32)>(),
        capture_id in any::<u16>(),
        pad in any::<[u8; 2]>(),
        payload in vec(any::<u8>(), 1..600),
    ) {
        let wire = legacy_datagram(version, hdr_len_byte, src, dst, ip_proto, ports, ts, capture_id, pad, &payload);
        let m = decode(Bytes::from(wire), &DecodeOptions::default()).expect("decodes");
        prop_assert_eq!(m.version.number(), version);
        prop_assert_eq!(m.ip_family, if src.is_ipv4() { AF_INET } else { AF_INET6 });
        prop_assert_eq!((m.src_ip, m.dst_ip), (src, dst));
        prop_assert_eq!(m.ip_proto, ip_proto);
        prop_assert_eq!((m.src_port, m.dst_port), ports);
        prop_assert_eq!(m.proto_type, 1);
        if version == 2 {
            prop_assert_eq!((m.ts_sec, m.ts_usec), ts);
            prop_assert_eq!(m.capture_id, u32::from(capture_id));
        } else {
            prop_assert_eq!((m.ts_sec, m.ts_usec, m.capture_id), (0, 0, 0));
        }
        prop_assert_eq!(&m.payload[..], &payload[..]);
        let back = decode(encode(&m).freeze(), &DecodeOptions::default()).expect("v3 decodes");
        let mut expected = m.clone();
        expected.version = HepVersion::V3;
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..300)) {
        let _ = decode_reencode(&data);
        let _ = hep3_frame_len(&data);
    }

    #[test]
    fn arbitrary_chunks_behind_a_valid_header_never_panic(
        chunks in vec((prop_oneof![Just(0u16), any::<u16>()], 0u16..0x30, vec(any::<u8>(), 0..24), any::<bool>()), 0..12),
        trailing in vec(any::<u8>(), 0..6),
    ) {
        let mut m = b"HEP3\0\0".to_vec();
        for (vendor, t, value, lie) in &chunks {
            m.extend_from_slice(&vendor.to_be_bytes());
            m.extend_from_slice(&t.to_be_bytes());
            let len = if *lie { value.len() as u16 } else { value.len() as u16 + 6 };
            m.extend_from_slice(&len.to_be_bytes());
            m.extend_from_slice(value);
        }
        m.extend_from_slice(&trailing);
        let total = m.len() as u16;
        m[4..6].copy_from_slice(&total.to_be_bytes());
        let _ = decode_reencode(&m);
    }

    #[test]
    fn mutated_messages_never_panic(m in hep_message(), muts in vec(mutation(), 1..5)) {
        let mut wire = encode(&m).to_vec();
        for mu in &muts {
            apply(&mut wire, mu);
        }
        let _ = decode_reencode(&wire);
        let _ = hep3_frame_len(&wire);
    }

    #[test]
    fn frame_len_is_consistent_with_decode(data in vec(any::<u8>(), 0..64), m in hep_message(), junk in vec(any::<u8>(), 0..40)) {
        // On arbitrary bytes.
        match hep3_frame_len(&data) {
            Ok(None) => prop_assert!(data.len() < 6),
            Ok(Some(n)) => {
                prop_assert!(n >= 6 && data.starts_with(b"HEP3"));
                if n != data.len() {
                    prop_assert_eq!(
                        decode(Bytes::from(data.clone()), &DecodeOptions::default()),
                        Err(DecodeError::LengthMismatch { declared: n, actual: data.len() })
                    );
                }
            }
            Err(_) => prop_assert!(decode(Bytes::from(data.clone()), &DecodeOptions::default())
                .map_or(true, |m| m.version != HepVersion::V3), "not HEP3 framing, yet decoded as HEP3"),
        }
        if let Ok(msg) = decode(Bytes::from(data.clone()), &DecodeOptions::default()) {
            if msg.version == HepVersion::V3 {
                prop_assert_eq!(hep3_frame_len(&data), Ok(Some(data.len())));
            }
        }
        // On a stream: a message followed by anything; every prefix.
        let wire = encode(&m);
        let mut stream = wire.to_vec();
        stream.extend_from_slice(&junk);
        for cut in 0..stream.len().min(8) {
            let r = hep3_frame_len(&stream[..cut]);
            if cut < 6 { prop_assert_eq!(r, Ok(None)); } else { prop_assert_eq!(r, Ok(Some(wire.len()))); }
        }
        prop_assert_eq!(hep3_frame_len(&stream), Ok(Some(wire.len())));
        let first = decode(Bytes::copy_from_slice(&stream[..wire.len()]), &DecodeOptions::default());
        prop_assert_eq!(first, Ok(m));
    }

    #[test]
    fn compressed_payload_respects_the_bound(payload in payload(), limit in 0usize..3000) {
        let mut m = HepMessage::new_v3(payload.clone());
        m.payload_compressed = true;
        let wire = encode(&m).freeze();
        let r = decode(wire, &DecodeOptions { max_inflated_bytes: limit });
        if payload.len() <= limit {
            let d = r.expect("fits");
            prop_assert_eq!(&d.payload, &payload);
            prop_assert!(d.payload_compressed);
        } else {
            prop_assert_eq!(r, Err(DecodeError::InflatedTooLarge { limit }));
        }
    }
}
