//! The HEP (Homer Encapsulation Protocol) codec: decoding of v1, v2 and v3
//! (IPv4 and IPv6), encoding to v3, and the length framing HEP3 uses on
//! TCP/TLS streams. See `shared/docs/hep-protocol.md` for the wire facts.
//!
//! Decoded byte fields (payload, strings) are [`Bytes`] slices of the
//! received buffer, not copies; only a compressed payload (chunk 0x10) is
//! inflated into a new buffer, bounded by [`DecodeOptions::max_inflated_bytes`].

mod decode;
mod encode;
mod error;
mod proto;

use bytes::Bytes;
use std::net::{IpAddr, Ipv4Addr};

pub use decode::{decode, hep3_frame_len};
pub use encode::{encode_v3, encoded_v3_len};
pub use error::{DecodeError, EncodeError};
pub use proto::{proto_type_from_name, proto_type_name};

/// Address family values as carried on the wire (Linux `AF_*`).
pub const AF_INET: u8 = 2;
/// IPv6 address family value (Linux `AF_INET6`).
pub const AF_INET6: u8 = 10;

/// Well-known protocol type numbers (chunk 0x0b).
pub mod proto_type {
    /// SIP.
    pub const SIP: u8 = 1;
    /// RTCP reports as JSON.
    pub const RTCP_JSON: u8 = 5;
    /// Log messages (Kamailio `hlog()`); not in the revision 37 table.
    pub const LOG: u8 = 100;
}

/// Which HEP version a message arrived as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum HepVersion {
    /// HEPv1: addresses and ports, then the SIP payload.
    V1,
    /// HEPv2: as v1 plus timestamp and capture id.
    V2,
    /// HEPv3: chunked (`HEP3` magic).
    V3,
}

impl HepVersion {
    /// The version number: 1, 2 or 3.
    pub fn number(self) -> u8 {
        match self {
            HepVersion::V1 => 1,
            HepVersion::V2 => 2,
            HepVersion::V3 => 3,
        }
    }
}

/// A chunk the codec has no typed field for (an unknown generic chunk type,
/// or any chunk of a vendor other than 0). Kept so it survives re-encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawChunk {
    /// Vendor id (0 = generic).
    pub vendor: u16,
    /// Chunk type.
    pub chunk_type: u16,
    /// The chunk value (without the 6-byte chunk header).
    pub value: Bytes,
}

/// Bounds and compatibility switches for decoding.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// Largest size a compressed payload (chunk 0x10) may inflate to.
    pub max_inflated_bytes: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_inflated_bytes: 1 << 20,
        }
    }
}

/// One decoded HEP message. Every generic chunk of hep-protocol.md has a
/// typed field; fields a message did not carry are `None` (or, for the core
/// fields every HEP version has, zero / the unspecified address).
///
/// v1/v2 messages fill the core fields from their fixed header; v1 has no
/// timestamp (0) and no capture id (0); both carry SIP (`proto_type` = 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepMessage {
    /// The version the message was decoded from.
    pub version: HepVersion,
    /// Address family (2 = IPv4, 10 = IPv6), chunk 0x01.
    pub ip_family: u8,
    /// IP protocol (17 UDP, 6 TCP, ...), chunk 0x02.
    pub ip_proto: u8,
    /// Source address, chunk 0x03 or 0x05.
    pub src_ip: IpAddr,
    /// Destination address, chunk 0x04 or 0x06.
    pub dst_ip: IpAddr,
    /// Source port, chunk 0x07.
    pub src_port: u16,
    /// Destination port, chunk 0x08.
    pub dst_port: u16,
    /// Capture timestamp, seconds, chunk 0x09.
    pub ts_sec: u32,
    /// Capture timestamp, microseconds, chunk 0x0a.
    pub ts_usec: u32,
    /// Protocol type, chunk 0x0b (1 = SIP).
    pub proto_type: u8,
    /// Capture agent id, chunk 0x0c.
    pub capture_id: u32,
    /// Keep-alive seconds, chunk 0x0d.
    pub keep_alive: Option<u16>,
    /// Authentication key, chunk 0x0e. A secret: never log or index it.
    pub auth_key: Option<Bytes>,
    /// The payload (chunk 0x0f, or chunk 0x10 inflated).
    pub payload: Bytes,
    /// True when the payload arrived compressed (chunk 0x10); the encoder
    /// then compresses it again.
    pub payload_compressed: bool,
    /// Correlation id, chunk 0x11.
    pub correlation_id: Option<Bytes>,
    /// VLAN id, chunk 0x12.
    pub vlan_id: Option<u16>,
    /// Capture node name, chunk 0x13.
    pub node_name: Option<Bytes>,
    /// Source MAC, chunk 0x14.
    pub src_mac: Option<u64>,
    /// Destination MAC, chunk 0x15.
    pub dst_mac: Option<u64>,
    /// Ethertype, chunk 0x16.
    pub ethertype: Option<u16>,
    /// TCP flags, chunk 0x17.
    pub tcp_flags: Option<u8>,
    /// IP TOS, chunk 0x18.
    pub ip_tos: Option<u8>,
    /// MOS, chunk 0x20.
    pub mos: Option<u16>,
    /// R-factor, chunk 0x21.
    pub r_factor: Option<u16>,
    /// Geo location, chunk 0x22.
    pub geo_location: Option<Bytes>,
    /// Jitter, chunk 0x23.
    pub jitter: Option<u32>,
    /// Transaction type, chunk 0x24.
    pub transaction_type: Option<Bytes>,
    /// Payload JSON keys, chunk 0x25.
    pub payload_json_keys: Option<Bytes>,
    /// Tag values, chunk 0x26.
    pub tag_values: Option<Bytes>,
    /// Tag type, chunk 0x27.
    pub tag_type: Option<u16>,
    /// Event type, chunk 0x28 (1 recording, 2 lawful-intercept recording).
    pub event_type: Option<u16>,
    /// Group id, chunk 0x29.
    pub group_id: Option<Bytes>,
    /// Unknown and vendor chunks, in arrival order.
    pub extra_chunks: Vec<RawChunk>,
}

impl HepMessage {
    /// A message with every core field zero/unspecified, no optional chunk,
    /// and the given payload: a starting point for builders and tests.
    pub fn new_v3(payload: Bytes) -> Self {
        HepMessage {
            version: HepVersion::V3,
            ip_family: AF_INET,
            ip_proto: 17,
            src_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            src_port: 0,
            dst_port: 0,
            ts_sec: 0,
            ts_usec: 0,
            proto_type: proto_type::SIP,
            capture_id: 0,
            keep_alive: None,
            auth_key: None,
            payload,
            payload_compressed: false,
            correlation_id: None,
            vlan_id: None,
            node_name: None,
            src_mac: None,
            dst_mac: None,
            ethertype: None,
            tcp_flags: None,
            ip_tos: None,
            mos: None,
            r_factor: None,
            geo_location: None,
            jitter: None,
            transaction_type: None,
            payload_json_keys: None,
            tag_values: None,
            tag_type: None,
            event_type: None,
            group_id: None,
            extra_chunks: Vec::new(),
        }
    }

    /// The protocol type's name ("sip", "rtcp", "log", ...), or `None` when
    /// the number is not in the table.
    pub fn proto_name(&self) -> Option<&'static str> {
        proto_type_name(self.proto_type)
    }
}
