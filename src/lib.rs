//! hepflow: a HEP (Homer Encapsulation Protocol) switch/router for VoIP
//! monitoring. Receives HEP v1/v2/v3 over UDP and TCP, decodes it once, and
//! routes each message into per-sink bounded queues drained by pluggable
//! sinks (file, null, and the plugins under `plugins/`).
//!
//! The binary's entry point is `main.rs`; this library exposes the hub's
//! modules for the integration tests and benchmarks.

pub mod api;
pub mod app;
pub mod capture;
pub mod config;
pub mod ingest;
pub mod malloc_tuning;
pub mod pipeline;
pub mod replay;
pub mod route;
pub mod sinks;
pub mod supervise;
