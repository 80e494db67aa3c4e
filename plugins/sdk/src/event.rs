//! [`Event`]: one received HEP message with its receive metadata. Decoded
//! once at ingest and shared (reference-counted) by every sink the routes
//! send it to; the SIP summary is parsed on first use, at most once.
//!
//! Events made together by an [`EventBatch`] share one allocation (the
//! batch), so the receive path allocates per batch, not per message; an
//! event keeps its whole batch alive until the last event of it is dropped
//! (at most one receive batch — `batch_size` messages — per retained event).
//! What that is in bytes is [`Event::batch_footprint`]: what sink queues
//! count against their byte bound, once per run of events of one batch.
//! Messages are decoded straight into the batch's storage, which is then
//! shared as it is: a message is not moved again after it is pushed.

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
    // Boxed: an event is allocated (and moved) for every message received,
    // while the summary is only parsed by sinks that ask for it; unboxed
    // it made every event 320 bytes larger (880 instead of 560), which
    // measured as memory traffic on the TCP receive path.
    sip: OnceLock<Option<Box<SipSummary>>>,
}

/// The storage events made together share.
struct Shared {
    items: Vec<EventInner>,
    /// See [`Event::batch_footprint`].
    footprint: usize,
}

impl Shared {
    fn new(items: Vec<EventInner>) -> Self {
        // What the batch keeps alive: the messages' bytes (each batch's
        // receive buffer holds exactly them on UDP; on TCP they are the
        // batch's share of a connection's read buffer), the storage, one
        // handle per event in whatever list holds it, and a parsed SIP
        // summary for every SIP message (a sink may parse it while another
        // sink's queue still holds the event).
        let (raw, sip) = items.iter().fold((0, 0), |(raw, sip), e| {
            (
                raw + e.raw.len(),
                sip + usize::from(e.hep.proto_type == proto_type::SIP),
            )
        });
        let footprint = raw
            + items.capacity() * std::mem::size_of::<EventInner>()
            + items.len() * std::mem::size_of::<Event>()
            + sip * std::mem::size_of::<SipSummary>()
            + std::mem::size_of::<Shared>();
        Shared { items, footprint }
    }
}

/// One received HEP message, cheap to clone (shared).
#[derive(Clone)]
pub struct Event {
    batch: Arc<Shared>,
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

/// Collects the messages of one receive call; [`EventBatch::finish`] turns
/// them into events sharing one allocation.
#[derive(Default)]
pub struct EventBatch {
    items: Vec<EventInner>,
    /// Room reserved on the first push of a batch: the larger of this and
    /// the size of the last batch (at most [`MAX_RESERVE`]).
    reserve: usize,
    last_len: usize,
}

/// Never reserve room for more messages than this ahead of time (a batch
/// may still grow past it).
const MAX_RESERVE: usize = 1024;

impl EventBatch {
    /// An empty batch; storage is reserved on the first push, sized after
    /// the previous batch (so an idle connection holds none).
    pub fn new() -> Self {
        Self::default()
    }

    /// As [`Self::new`], reserving room for at least `n` messages on the
    /// first push of every batch (the receive call's batch size: a batch
    /// then never grows, so its messages are never moved).
    pub fn with_reserve(n: usize) -> Self {
        EventBatch {
            reserve: n,
            ..Self::default()
        }
    }

    /// Add one decoded message, the exact bytes it was decoded from, and
    /// its receive metadata.
    pub fn push(&mut self, hep: HepMessage, raw: Bytes, meta: ReceiveMeta) {
        if self.items.capacity() == 0 {
            let n = self.reserve.max(self.last_len).clamp(16, MAX_RESERVE);
            self.items.reserve_exact(n);
        }
        self.items.push(EventInner {
            hep,
            raw,
            meta,
            sip: OnceLock::new(),
        });
    }

    /// Messages pushed since the last [`Self::finish`].
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing was pushed since the last [`Self::finish`].
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Append one event per message pushed, in order, to `out`; the batch
    /// starts over empty. The storage is shared as it is (not copied).
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        if self.items.is_empty() {
            return;
        }
        self.last_len = self.items.len();
        let mut items = std::mem::take(&mut self.items);
        // A receive call that returned fewer messages than reserved would
        // otherwise keep the unused room alive as long as any of its
        // events waits in a queue (seen: 4x the queued bytes). Shrinking
        // gives the tail back (glibc's realloc shrinks in place, without
        // moving the messages).
        items.shrink_to_fit();
        let n = items.len();
        let batch = Arc::new(Shared::new(items));
        out.extend((0..n).map(|index| Event {
            batch: batch.clone(),
            index,
        }));
    }
}

impl Event {
    /// Wrap a decoded message, the exact bytes it was decoded from, and
    /// its receive metadata.
    pub fn new(hep: HepMessage, raw: Bytes, meta: ReceiveMeta) -> Self {
        Event {
            batch: Arc::new(Shared::new(vec![EventInner {
                hep,
                raw,
                meta,
                sip: OnceLock::new(),
            }])),
            index: 0,
        }
    }

    /// `msg` as a UDP listener named `udp` would have handed it on,
    /// received from `peer` at `received_at`: encoded as HEPv3 and decoded
    /// back (default options), so the raw bytes and every field are what
    /// decoding gives. Where sinks' tests and benches start from. Fails,
    /// saying why, where `msg` cannot be encoded (a field too long).
    pub fn received_over_udp(
        msg: &HepMessage,
        peer: SocketAddr,
        received_at: SystemTime,
    ) -> Result<Event, String> {
        let mut buf = bytes::BytesMut::new();
        crate::hep::encode_v3(msg, &mut buf).map_err(|e| format!("encode as HEPv3: {e}"))?;
        let raw = buf.freeze();
        let hep = crate::hep::decode(raw.clone(), &crate::hep::DecodeOptions::default())
            .map_err(|e| format!("decode what encode_v3 wrote: {e}"))?;
        Ok(Event::new(
            hep,
            raw,
            ReceiveMeta {
                listener: "udp".into(),
                transport: Transport::Udp,
                peer,
                received_at,
            },
        ))
    }

    fn inner(&self) -> &EventInner {
        &self.batch.items[self.index]
    }

    /// The memory this event keeps alive while anything holds it, in
    /// bytes: its whole batch (the events received together with it share
    /// one allocation and one receive buffer, and live until the last of
    /// them is dropped): the messages' raw bytes, the decoded fields, the
    /// handles, and room for a SIP summary per SIP message. A queue that
    /// holds one event of a batch or all of them keeps the same memory
    /// alive, so byte bounds count this once per run of events of one
    /// batch ([`Event::same_batch`]). An estimate on TCP, where the
    /// messages are slices of a connection's read buffer: a batch is
    /// charged its own messages' bytes, not the rest of that buffer.
    pub fn batch_footprint(&self) -> usize {
        self.batch.footprint
    }

    /// Whether `self` and `other` were made together (share a batch, so
    /// hold each other's memory alive).
    pub fn same_batch(&self, other: &Event) -> bool {
        Arc::ptr_eq(&self.batch, &other.batch)
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
                    SipSummary::parse(&inner.hep.payload).map(Box::new)
                } else {
                    None
                }
            })
            .as_deref()
    }

    /// The call key: the SIP Call-ID, else the correlation id chunk.
    pub fn call_key(&self) -> Option<&[u8]> {
        if let Some(id) = self.sip().and_then(|s| s.call_id.as_ref()) {
            return Some(id.as_bytes());
        }
        self.inner().hep.correlation_id.as_deref()
    }
}
