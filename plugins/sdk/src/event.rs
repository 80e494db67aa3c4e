//! [`Event`]: one received HEP message with its receive metadata. Decoded
//! once at ingest and shared (reference-counted) by every sink the routes
//! send it to; the SIP summary is parsed on first use, at most once.

use crate::hep::{proto_type, HepMessage};
use crate::sip::SipSummary;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// The transport a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A UDP datagram.
    Udp,
    /// A TCP stream.
    Tcp,
    /// A TLS stream.
    Tls,
    /// Consumed from Kafka.
    Kafka,
}

impl Transport {
    /// Lower-case name, for labels and documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Kafka => "kafka",
        }
    }
}

/// Where and when hepflow received a message.
#[derive(Debug, Clone)]
pub struct ReceiveMeta {
    /// The listener's configured name.
    pub listener: Arc<str>,
    /// The transport.
    pub transport: Transport,
    /// The sending peer's address.
    pub peer: SocketAddr,
    /// When hepflow received it.
    pub received_at: SystemTime,
}

struct EventInner {
    hep: HepMessage,
    raw: Bytes,
    meta: ReceiveMeta,
    sip: OnceLock<Option<SipSummary>>,
}

/// One received HEP message, cheap to clone (shared).
#[derive(Clone)]
pub struct Event(Arc<EventInner>);

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("version", &self.0.hep.version)
            .field("proto_type", &self.0.hep.proto_type)
            .field("listener", &self.0.meta.listener)
            .field("raw_len", &self.0.raw.len())
            .finish()
    }
}

impl Event {
    /// Wrap a decoded message, the exact bytes it was decoded from, and
    /// its receive metadata.
    pub fn new(hep: HepMessage, raw: Bytes, meta: ReceiveMeta) -> Self {
        Event(Arc::new(EventInner {
            hep,
            raw,
            meta,
            sip: OnceLock::new(),
        }))
    }

    /// The decoded message.
    pub fn hep(&self) -> &HepMessage {
        &self.0.hep
    }

    /// The message exactly as received (the whole datagram or frame).
    pub fn raw(&self) -> &Bytes {
        &self.0.raw
    }

    /// Receive metadata.
    pub fn meta(&self) -> &ReceiveMeta {
        &self.0.meta
    }

    /// The SIP summary, parsed on first call; `None` when the message is
    /// not SIP (protocol type other than 1) or the payload is not SIP.
    pub fn sip(&self) -> Option<&SipSummary> {
        self.0
            .sip
            .get_or_init(|| {
                if self.0.hep.proto_type == proto_type::SIP {
                    SipSummary::parse(&self.0.hep.payload)
                } else {
                    None
                }
            })
            .as_ref()
    }

    /// The call key: the SIP Call-ID, else the correlation id chunk.
    pub fn call_key(&self) -> Option<&[u8]> {
        if let Some(id) = self.sip().and_then(|s| s.call_id.as_ref()) {
            return Some(id.as_bytes());
        }
        self.0.hep.correlation_id.as_deref()
    }
}
