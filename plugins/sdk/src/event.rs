//! [`Event`]: one received HEP message with its receive metadata. Decoded
//! once at ingest and shared (reference-counted) by every sink the routes
//! send it to; the SIP summary is parsed on first use, at most once.
//!
//! Events made together by [`Event::batch`] share one allocation (the
//! batch), so the receive path allocates per batch, not per message; an
//! event keeps its whole batch alive until the last event of it is dropped
//! (at most one receive batch — `batch_size` messages — per retained event).

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
pub struct Event {
    batch: Arc<[EventInner]>,
    index: usize,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("version", &self.inner().hep.version)
            .field("proto_type", &self.inner().hep.proto_type)
            .field("listener", &self.inner().meta.listener)
            .field("raw_len", &self.inner().raw.len())
            .finish()
    }
}

impl Event {
    /// Wrap a decoded message, the exact bytes it was decoded from, and
    /// its receive metadata.
    pub fn new(hep: HepMessage, raw: Bytes, meta: ReceiveMeta) -> Self {
        Event {
            batch: Arc::from([EventInner {
                hep,
                raw,
                meta,
                sip: OnceLock::new(),
            }]),
            index: 0,
        }
    }

    /// Wrap many messages at once in one shared allocation; `out` receives
    /// one event per message, in order. `items` is drained (its capacity is
    /// kept for reuse).
    pub fn batch(items: &mut Vec<(HepMessage, Bytes, ReceiveMeta)>, out: &mut Vec<Event>) {
        if items.is_empty() {
            return;
        }
        let batch: Arc<[EventInner]> = items
            .drain(..)
            .map(|(hep, raw, meta)| EventInner {
                hep,
                raw,
                meta,
                sip: OnceLock::new(),
            })
            .collect();
        out.extend((0..batch.len()).map(|index| Event {
            batch: batch.clone(),
            index,
        }));
    }

    fn inner(&self) -> &EventInner {
        &self.batch[self.index]
    }

    /// The decoded message.
    pub fn hep(&self) -> &HepMessage {
        &self.inner().hep
    }

    /// The message exactly as received (the whole datagram or frame).
    pub fn raw(&self) -> &Bytes {
        &self.inner().raw
    }

    /// Receive metadata.
    pub fn meta(&self) -> &ReceiveMeta {
        &self.inner().meta
    }

    /// The SIP summary, parsed on first call; `None` when the message is
    /// not SIP (protocol type other than 1) or the payload is not SIP.
    pub fn sip(&self) -> Option<&SipSummary> {
        let inner = self.inner();
        inner
            .sip
            .get_or_init(|| {
                if inner.hep.proto_type == proto_type::SIP {
                    SipSummary::parse(&inner.hep.payload)
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
        self.inner().hep.correlation_id.as_deref()
    }
}
