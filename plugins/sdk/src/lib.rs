//! hepflow plugin SDK: everything a sink or source plugin builds on.
//!
//! - [`hep`]: the HEP v1/v2/v3 codec (decode, encode to v3, TCP framing).
//! - [`sip`]: the lazily parsed SIP summary of a payload.
//! - [`event`]: [`Event`], one received HEP message with its receive metadata,
//!   shared by every sink that gets it.
//! - [`document`]: the JSON event document written by the file sink and
//!   indexed by the Elasticsearch sink.
//! - [`sink`]: the [`Sink`] trait every sink plugin implements.
//! - [`delivery`]: the one backoff, when-full policy and retry section
//!   every queue and retry loop uses.
//! - [`metrics`]: the counter registry behind `/metrics` and `/api/v1/stats`.
//! - [`ratelimit`]: rate-limited logging of repeated failures.
//! - [`secret`]: the one secret type, and errors chained with their causes.
//! - [`supervise`]: restarting a long-lived task after a panic, counted.
//! - [`queue`]: the bounded queue in front of every sink (and of every
//!   fan-out inside a plugin), with its disk tier.
//! - [`spool`]: the disk log behind a queue (overflow and write-ahead),
//!   with its checksummed record format and its config section.

pub mod delivery;
pub mod document;
pub mod event;
pub mod hep;
pub mod json;
pub mod metrics;
pub mod queue;
pub mod ratelimit;
pub mod secret;
pub mod sink;
pub mod sip;
pub mod spool;
pub mod supervise;
#[cfg(any(test, feature = "test-support"))]
pub mod test_events;

pub use event::{Event, EventBatch, ReceiveMeta, Transport};
pub use hep::{DecodeError, DecodeOptions, HepMessage, HepVersion};
pub use sink::{Sink, SinkContext, SinkError};
