//! Turning an [`Event`] into the bytes that are forwarded ([`Msg`]): the
//! received bytes as they are (`passthrough`), or the message re-encoded
//! as HEPv3 with the SDK's `encode_v3` after setting the node name,
//! capture id or auth key (`hepv3`); plus loop protection.
//!
//! Target queues hold events, and each target's task prepares what it
//! takes from its queue just before writing it, so a message is prepared
//! once per target it goes to (once in `hash` and `round_robin` modes).
//! A HEPv1/v2 message has no length field and cannot be framed on a TCP
//! or TLS stream, so in `passthrough` mode a stream target sends its
//! HEPv3 form.

use crate::config::{Encoding, HepSinkConfig};
use bytes::{Bytes, BytesMut};
use hepflow_sdk::hep::{encode_v3, EncodeError};
use hepflow_sdk::{Event, HepMessage, HepVersion};

/// One message ready to send.
#[derive(Debug, Clone)]
pub struct Msg {
    /// The bytes written: a datagram, or one HEPv3 frame of a stream.
    pub bytes: Bytes,
}

/// What to do with the auth key chunk when re-encoding.
#[derive(Clone)]
enum AuthAction {
    Keep,
    Set(Bytes),
    Strip,
}

/// Prepares messages for one target (keeps an output buffer between calls).
#[derive(Clone)]
pub struct Preparer {
    encoding: Encoding,
    set_node_name: Option<Bytes>,
    set_capture_id: Option<u32>,
    auth: AuthAction,
    /// Node names that mean "been here" (empty: no loop protection).
    own_names: Vec<Bytes>,
    /// Whether the target is a stream (v1/v2 then needs a v3 form).
    stream: bool,
    buf: BytesMut,
}

impl Preparer {
    /// A preparer for `cfg` on the node called `node_name`, for a stream
    /// (`tcp://`, `tls://`) or datagram target.
    pub fn new(cfg: &HepSinkConfig, node_name: &str, stream: bool) -> Self {
        let auth = match (&cfg.set_auth_key, cfg.strip_auth_key) {
            (Some(k), _) => AuthAction::Set(Bytes::copy_from_slice(k.expose().as_bytes())),
            (None, true) => AuthAction::Strip,
            (None, false) => AuthAction::Keep,
        };
        let set_node_name = cfg
            .set_node_name
            .as_ref()
            .map(|n| Bytes::copy_from_slice(n.as_bytes()));
        let mut own_names = Vec::new();
        if cfg.loop_protection {
            if !node_name.is_empty() {
                own_names.push(Bytes::copy_from_slice(node_name.as_bytes()));
            }
            if let Some(n) = &set_node_name {
                if !own_names.contains(n) {
                    own_names.push(n.clone());
                }
            }
        }
        Preparer {
            encoding: cfg.encoding,
            set_node_name,
            set_capture_id: cfg.set_capture_id,
            auth,
            own_names,
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Room for at least `need` more bytes in the running buffer, taken
    /// 64 KiB at a time.
    fn make_room(&mut self, need: usize) {
        if self.buf.capacity() < need {
            self.buf.reserve(need.max(64 * 1024));
        }
    }

    fn encode(&mut self, msg: &HepMessage) -> Result<Bytes, EncodeError> {
        // A typical message fits; encode_v3 grows the buffer if not.
        self.make_room(4096);
        encode_v3(msg, &mut self.buf)?;
        Ok(self.buf.split().freeze())
    }

    /// Whether `ev` already carries this node's name (loop protection):
    /// it is not forwarded.
    pub fn is_loop(&self, ev: &Event) -> bool {
        ev.hep()
            .node_name
            .as_ref()
            .is_some_and(|name| self.own_names.iter().any(|n| n == name))
    }

    /// The forwarded form of `ev` (loops are checked by the caller, with
    /// [`Self::is_loop`], before the event is queued).
    pub fn prepare(&mut self, ev: &Event) -> Result<Msg, EncodeError> {
        let hep = ev.hep();
        match self.encoding {
            Encoding::Passthrough => {
                // The received bytes themselves: the event (which the
                // target's queue charged for its receive batch) is held
                // until the write is done anyway.
                let bytes = if hep.version != HepVersion::V3 && self.stream {
                    self.encode(hep)?
                } else {
                    ev.raw().clone()
                };
                Ok(Msg { bytes })
            }
            Encoding::Hepv3 => {
                let mut m = hep.clone();
                if let Some(n) = &self.set_node_name {
                    m.node_name = Some(n.clone());
                }
                if let Some(id) = self.set_capture_id {
                    m.capture_id = id;
                }
                match &self.auth {
                    AuthAction::Keep => {}
                    AuthAction::Set(k) => m.auth_key = Some(k.clone()),
                    AuthAction::Strip => m.auth_key = None,
                }
                Ok(Msg {
                    bytes: self.encode(&m)?,
                })
            }
        }
    }
}
