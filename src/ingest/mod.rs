//! Ingest: the listeners that receive HEP (UDP, TCP, TLS) and the steps every
//! listener shares — counting, decoding, the auth-key check — before a
//! batch of events is handed to the [`crate::pipeline::Pipeline`].

pub mod capture_id;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod tcp;
pub mod tls;
pub mod udp;

use crate::config::{AuthConfig, CaptureIdCompat, Config, ListenerConfig};
use bytes::Bytes;
use capture_id::looks_htons;
use hepflow_sdk::hep::{decode, DecodeError, DecodeOptions, HepMessage, HepVersion};
use hepflow_sdk::metrics::{Counter, Gauge, Registry};
use hepflow_sdk::ratelimit::LogLimiter;
use hepflow_sdk::{Event, EventBatch, ReceiveMeta, Transport};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use subtle::ConstantTimeEq;

/// The files the listeners of `cfg` need (TLS certificates and keys) load:
/// every problem, each naming the listener and the file and what to do.
/// `hepflow validate` and the start run it after the config checks,
/// which read no files.
pub fn check_files(cfg: &Config) -> Vec<String> {
    cfg.listeners
        .iter()
        .filter_map(|(name, l)| match l {
            ListenerConfig::Tls(t) => tls::server_config(t)
                .err()
                .map(|e| format!("listeners.{name}: {e}")),
            _ => None,
        })
        .collect()
}

/// At shutdown a listener stops taking new data but hands over what the
/// kernel had already received for it: it reads on until nothing more is
/// waiting (a read would block), at most this long (a peer that keeps
/// sending cannot hold the shutdown).
pub const STOP_DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Reasons an authenticated listener refuses a message.
pub const AUTH_REASONS: [&str; 3] = ["missing_key", "bad_key", "legacy_version"];

/// Counters of one listener.
pub struct ListenerMetrics {
    /// Datagrams or frames received.
    pub received: Counter,
    /// Bytes received.
    pub bytes: Counter,
    /// Messages decoded (and accepted by the auth check).
    pub decoded: Counter,
    /// Decode errors, indexed like [`DecodeError::REASONS`].
    pub decode_errors: Vec<Counter>,
    /// Auth refusals, indexed like [`AUTH_REASONS`].
    pub auth_rejected: Vec<Counter>,
    /// Datagrams longer than the receive buffer (truncated by the kernel).
    pub truncated: Counter,
    /// TCP framing errors (connection closed).
    pub framing_errors: Counter,
    /// TCP connections accepted.
    pub connections: Counter,
    /// TCP connections refused over `max_connections`.
    pub connections_rejected: Counter,
    /// TCP connections closed for idleness.
    pub idle_closed: Counter,
    /// TCP connections open now.
    pub open_connections: Gauge,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: Counter,
    /// Capture ids rewritten by the listener's `capture_id_compat` rule.
    pub capture_id_rewritten: Counter,
    /// Connection tasks that panicked (the connection is closed; the
    /// agent reconnects): `hepflow_task_restarts_total{task="listener:NAME:connection"}`.
    pub connection_panics: Counter,
    log: Mutex<LogLimiter>,
    name: String,
}

impl ListenerMetrics {
    /// Register the series of listener `name`.
    pub fn new(r: &Registry, name: &str, transport: &str) -> Self {
        let l = [("listener", name), ("transport", transport)];
        fn with<'a>(l: &[(&'a str, &'a str)], k: &'a str, v: &'a str) -> Vec<(&'a str, &'a str)> {
            let mut v2 = l.to_vec();
            v2.push((k, v));
            v2
        }
        ListenerMetrics {
            received: r.counter("hepflow_received_total", "Datagrams or frames received", &l),
            bytes: r.counter("hepflow_received_bytes_total", "Bytes received", &l),
            decoded: r.counter(
                "hepflow_decoded_total",
                "HEP messages decoded and accepted",
                &l,
            ),
            decode_errors: DecodeError::REASONS
                .iter()
                .map(|reason| {
                    r.counter(
                        "hepflow_decode_errors_total",
                        "Messages that failed to decode, by reason",
                        &with(&l, "reason", reason),
                    )
                })
                .collect(),
            auth_rejected: AUTH_REASONS
                .iter()
                .map(|reason| {
                    r.counter(
                        "hepflow_auth_rejected_total",
                        "Messages refused by a listener's auth key check, by reason",
                        &with(&l, "reason", reason),
                    )
                })
                .collect(),
            truncated: r.counter(
                "hepflow_truncated_total",
                "Datagrams larger than max_datagram_bytes (dropped)",
                &l,
            ),
            framing_errors: r.counter(
                "hepflow_framing_errors_total",
                "Stream framing errors (connection closed)",
                &l,
            ),
            connections: r.counter(
                "hepflow_connections_total",
                "Stream connections accepted",
                &l,
            ),
            connections_rejected: r.counter(
                "hepflow_connections_rejected_total",
                "Stream connections refused over max_connections",
                &l,
            ),
            idle_closed: r.counter(
                "hepflow_connections_idle_closed_total",
                "Stream connections closed after idle_timeout",
                &l,
            ),
            open_connections: r.gauge(
                "hepflow_connections_open",
                "Stream connections open now",
                &l,
            ),
            tls_handshake_failures: r.counter(
                "hepflow_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out",
                &l,
            ),
            capture_id_rewritten: r.counter(
                "hepflow_capture_id_rewritten_total",
                "HEP3 capture ids rewritten by the listener's capture_id_compat rule",
                &l,
            ),
            connection_panics: crate::supervise::restarts_counter(
                r,
                &format!("listener:{name}:connection"),
            ),
            log: Mutex::new(LogLimiter::default()),
            name: name.to_string(),
        }
    }

    /// Log a bad message, rate-limited (never the payload or any key).
    pub fn log_bad(&self, peer: SocketAddr, what: &str) {
        let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = l.allow() {
            tracing::warn!(listener = %self.name, %peer, suppressed = n, "{what}");
        }
    }
}

/// Decodes, authenticates and wraps received messages of one listener.
pub struct Decoder {
    opts: DecodeOptions,
    auth_key: Option<Vec<u8>>,
    allow_legacy: bool,
    capture_id_compat: CaptureIdCompat,
    /// Rate limit of the hint logged when a capture id looks byte-swapped
    /// and the listener has no compatibility rule.
    compat_hint: Mutex<LogLimiter>,
    listener: Arc<str>,
    transport: Transport,
    /// The listener's counters.
    pub metrics: Arc<ListenerMetrics>,
}

impl Decoder {
    /// A decoder for one listener.
    pub fn new(
        listener: &str,
        transport: Transport,
        auth: &AuthConfig,
        opts: DecodeOptions,
        metrics: Arc<ListenerMetrics>,
    ) -> Self {
        Decoder {
            opts,
            auth_key: auth
                .auth_key
                .as_ref()
                .map(|k| k.expose().as_bytes().to_vec()),
            allow_legacy: auth.allow_legacy_without_key,
            capture_id_compat: auth.capture_id_compat,
            compat_hint: Mutex::new(LogLimiter::new(std::time::Duration::from_secs(300))),
            listener: listener.into(),
            transport,
            metrics,
        }
    }

    /// Decode one whole message into an [`Event`]; `None` (counted and
    /// logged) when it is malformed or refused.
    pub fn decode(&self, raw: Bytes, peer: SocketAddr, now: SystemTime) -> Option<Event> {
        self.decode_parts(raw, peer, now)
            .map(|(hep, raw, meta)| Event::new(hep, raw, meta))
    }

    /// As [`Self::decode`], but add the message to `batch` (the receive
    /// path: events of one receive call share one allocation).
    pub fn decode_into(
        &self,
        raw: Bytes,
        peer: SocketAddr,
        now: SystemTime,
        batch: &mut EventBatch,
    ) {
        if let Some((hep, raw, meta)) = self.decode_parts(raw, peer, now) {
            batch.push(hep, raw, meta);
        }
    }

    /// Decode, check the auth key and apply capture-id compatibility;
    /// `None` (counted and logged) when malformed or refused.
    #[inline]
    fn decode_parts(
        &self,
        raw: Bytes,
        peer: SocketAddr,
        now: SystemTime,
    ) -> Option<(HepMessage, Bytes, ReceiveMeta)> {
        let mut msg = match decode(raw.clone(), &self.opts) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.decode_errors[e.reason_index()].inc();
                self.metrics
                    .log_bad(peer, &format!("dropped undecodable HEP message: {e}"));
                return None;
            }
        };
        if let Some(key) = &self.auth_key {
            let refused = match (msg.version, &msg.auth_key) {
                (HepVersion::V3, None) => Some(0),
                (HepVersion::V3, Some(k)) => {
                    (!bool::from(k.as_ref().ct_eq(key.as_slice()))).then_some(1)
                }
                (_, _) => (!self.allow_legacy).then_some(2),
            };
            if let Some(i) = refused {
                self.metrics.auth_rejected[i].inc();
                self.metrics.log_bad(
                    peer,
                    &format!(
                        "dropped HEP message refused by the auth key check ({}); check the agent's auth key",
                        AUTH_REASONS[i]
                    ),
                );
                return None;
            }
        }
        if msg.version == HepVersion::V3 {
            self.apply_capture_id_compat(&mut msg.capture_id, peer);
        }
        self.metrics.decoded.inc();
        Some((
            msg,
            raw,
            ReceiveMeta {
                listener: self.listener.clone(),
                transport: self.transport,
                peer,
                received_at: now,
            },
        ))
    }

    /// The listener's `capture_id_compat` rule on a HEP3 capture id (see
    /// [`CaptureIdCompat`]); without a rule, a value that looks like
    /// sngrep/sipgrep's `htons(id)` is kept as sent and a hint is logged
    /// (at most once per 5 minutes per listener).
    fn apply_capture_id_compat(&self, capture_id: &mut u32, peer: SocketAddr) {
        if let Some(fixed) = capture_id::rewrite(self.capture_id_compat, *capture_id) {
            *capture_id = fixed;
            self.metrics.capture_id_rewritten.inc();
        } else if self.capture_id_compat == CaptureIdCompat::None && looks_htons(*capture_id) {
            let mut l = self.compat_hint.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = l.allow() {
                tracing::info!(
                    listener = %self.listener,
                    %peer,
                    suppressed = n,
                    "capture id {} (bytes {:02x?}) looks like sngrep/sipgrep's htons(id) byte order ({}); kept as sent. If this agent is sngrep or sipgrep, set capture_id_compat = \"sngrep\" on this listener (docs/interop.md)",
                    *capture_id,
                    capture_id.to_be_bytes(),
                    *capture_id >> 16
                );
            }
        }
    }
}

/// Shared by the listeners' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Decoder, ListenerMetrics};
    use crate::config::{Config, WhenFull};
    use crate::pipeline::{Pipeline, SinkSlot};
    use crate::route::Router;
    use hepflow_sdk::hep::DecodeOptions;
    use hepflow_sdk::metrics::Registry;
    use hepflow_sdk::queue::{QueueMetrics, SinkQueue};
    use hepflow_sdk::sink::Health;
    use hepflow_sdk::Transport;
    use std::sync::Arc;

    /// The first HEP3 message of the Kamailio corpus capture.
    pub fn hep3_message() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/hep/kamailio-hep3-udp.pcapng"
        );
        crate::capture::read_port(std::path::Path::new(path), 9060)
            .unwrap()
            .remove(0)
            .data
    }

    /// A decoder and a pipeline routing everything into one queue of
    /// `capacity` messages (`drop_newest`).
    pub fn one_queue(
        transport: Transport,
        capacity: usize,
    ) -> (Arc<Decoder>, Pipeline, Arc<SinkQueue>, Registry) {
        let registry = Registry::new();
        let decoder = Arc::new(Decoder::new(
            "test",
            transport,
            &Default::default(),
            DecodeOptions::default(),
            Arc::new(ListenerMetrics::new(&registry, "test", "test")),
        ));
        let names = vec!["q".to_string()];
        let queue = Arc::new(SinkQueue::new(
            capacity,
            WhenFull::DropNewest,
            QueueMetrics::new(&registry, "q"),
        ));
        let mut cfg = Config::default();
        cfg.default_route.sinks = names.clone();
        let pipeline = Pipeline::new(
            Router::new(&cfg, &names, &registry),
            vec![SinkSlot {
                name: "q".into(),
                queue: queue.clone(),
                health: Health::default(),
            }],
        );
        (decoder, pipeline, queue, registry)
    }
}
