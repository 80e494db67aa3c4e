//! Turning an [`Event`] into the bytes that are forwarded: the received
//! bytes as they are (`passthrough`), or the message re-encoded as HEPv3
//! with the SDK's `encode_v3` after setting the node name, capture id or
//! auth key (`hepv3`); plus loop protection.
//!
//! A HEPv1/v2 message has no length field and cannot be framed on a TCP
//! or TLS stream, so in `passthrough` mode it gets a HEPv3 form as well,
//! used for stream targets only.

use crate::config::{Encoding, HepSinkConfig};
use crate::queue::Msg;
use bytes::{Bytes, BytesMut};
use hepflow_sdk::hep::{encode_v3, EncodeError};
use hepflow_sdk::{Event, HepMessage, HepVersion};

/// What to do with the auth key chunk when re-encoding.
#[derive(Clone)]
enum AuthAction {
    Keep,
    Set(Bytes),
    Strip,
}

/// Why a message is not forwarded.
#[derive(Debug)]
pub enum Skip {
    /// It already carries this node's name.
    Loop,
    /// It cannot be encoded as HEPv3 (a value too large for a chunk).
    Encode(EncodeError),
}

/// Prepares messages for one sink (keeps an output buffer between calls).
pub struct Preparer {
    encoding: Encoding,
    set_node_name: Option<Bytes>,
    set_capture_id: Option<u32>,
    auth: AuthAction,
    /// Node names that mean "been here" (empty: no loop protection).
    own_names: Vec<Bytes>,
    /// Whether any target is a stream (v1/v2 then needs a v3 form).
    need_stream_form: bool,
    buf: BytesMut,
}

impl Preparer {
    /// A preparer for `cfg` on the node called `node_name`.
    pub fn new(cfg: &HepSinkConfig, node_name: &str, need_stream_form: bool) -> Self {
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
            need_stream_form,
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

    fn copy(&mut self, raw: &[u8]) -> Bytes {
        self.make_room(raw.len());
        self.buf.extend_from_slice(raw);
        self.buf.split().freeze()
    }

    /// The forwarded form of `ev` (`key` is filled in by the caller).
    pub fn prepare(&mut self, ev: &Event) -> Result<Msg, Skip> {
        let hep = ev.hep();
        if let Some(name) = &hep.node_name {
            if self.own_names.iter().any(|n| n == name) {
                return Err(Skip::Loop);
            }
        }
        match self.encoding {
            Encoding::Passthrough => {
                // Copied (into this preparer's running buffer): a slice of
                // the received bytes would keep the message's whole
                // receive batch alive while it waits in a target's queue,
                // which the target queue's bound (in messages) cannot see.
                let raw = self.copy(ev.raw());
                let stream = if hep.version != HepVersion::V3 && self.need_stream_form {
                    self.encode(hep).map_err(Skip::Encode)?
                } else {
                    raw.clone()
                };
                Ok(Msg {
                    dgram: raw,
                    stream,
                    key: 0,
                })
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
                let b = self.encode(&m).map_err(Skip::Encode)?;
                Ok(Msg {
                    dgram: b.clone(),
                    stream: b,
                    key: 0,
                })
            }
        }
    }
}
