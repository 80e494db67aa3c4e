//! Checks across sections once each section parsed: routes name defined
//! sinks, binds and spool directories are not shared, listener values are
//! in range. Files (TLS certificates) are not read here: see
//! `ingest::check_files`.

use super::{Config, ListenerConfig, SpoolMode, TlsListenerConfig, MAX_SINKS};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// `declared_sinks`: every `[sinks.NAME]` present, valid or not (an invalid
/// one is already reported; routes naming it are not reported again).
pub(super) fn check_semantics(cfg: &Config, declared_sinks: &[String], errors: &mut Vec<String>) {
    let sink_exists = |s: &str| declared_sinks.iter().any(|d| d == s);
    for (i, r) in cfg.routes.iter().enumerate() {
        for s in &r.sinks {
            if !sink_exists(s) {
                errors.push(format!(
                    "routes[{i}] ({}): sink `{s}` is not defined (define [sinks.{s}] or remove it from the route)",
                    r.name
                ));
            }
        }
        for p in &r.matches.proto {
            if hepflow_sdk::hep::proto_type_from_name(p).is_none() {
                errors.push(format!(
                    "routes[{i}] ({}).match.proto: `{p}` is neither a protocol name (sip, rtcp, log, ...) nor a number 0-255",
                    r.name
                ));
            }
        }
    }
    for s in &cfg.default_route.sinks {
        if !sink_exists(s) {
            errors.push(format!(
                "default_route.sinks: sink `{s}` is not defined (define [sinks.{s}] or remove it)"
            ));
        }
    }
    if cfg.sinks.len() > MAX_SINKS {
        errors.push(format!(
            "sinks: {} sinks configured, at most {} are supported",
            cfg.sinks.len(),
            MAX_SINKS
        ));
    }
    let mut spool_dirs: BTreeMap<std::path::PathBuf, &str> = BTreeMap::new();
    for (name, s) in &cfg.sinks {
        if s.common.spool.mode == SpoolMode::Off {
            continue;
        }
        let dir = s.common.spool.dir_for(&cfg.node.data_dir, name);
        if let Some(other) = spool_dirs.insert(dir.clone(), name) {
            errors.push(format!(
                "sinks.{name}.spool.dir: {} is also the spool of sinks.{other}; give each sink its own directory",
                dir.display()
            ));
        }
    }
    let mut binds: BTreeMap<(bool, SocketAddr), &str> = BTreeMap::new();
    for (name, l) in &cfg.listeners {
        #[cfg(feature = "kafka")]
        if let ListenerConfig::Kafka(k) = l {
            errors.extend(k.validate(&format!("listeners.{name}")));
            continue;
        }
        let is_udp = matches!(l, ListenerConfig::Udp(_));
        if let Some(other) = binds.insert((is_udp, l.bind()), name) {
            errors.push(format!(
                "listeners.{name}.bind: {} is also bound by listeners.{other}",
                l.bind()
            ));
        }
        match l {
            ListenerConfig::Udp(u) => {
                if u.batch_size == 0 || u.batch_size > 1024 {
                    errors.push(format!(
                        "listeners.{name}.batch_size: must be between 1 and 1024"
                    ));
                }
                if u.max_datagram_bytes < 64 || u.max_datagram_bytes > 65535 {
                    errors.push(format!(
                        "listeners.{name}.max_datagram_bytes: must be between 64 and 65535"
                    ));
                }
            }
            ListenerConfig::Tls(TlsListenerConfig {
                max_connections,
                max_message_bytes,
                ..
            }) => {
                if *max_connections == 0 {
                    errors.push(format!(
                        "listeners.{name}.max_connections: must be at least 1"
                    ));
                }
                if *max_message_bytes < 6 || *max_message_bytes > 65535 {
                    errors.push(format!(
                        "listeners.{name}.max_message_bytes: must be between 6 and 65535 (HEP3's own limit)"
                    ));
                }
            }
            ListenerConfig::Tcp(t) => {
                if t.max_connections == 0 {
                    errors.push(format!(
                        "listeners.{name}.max_connections: must be at least 1"
                    ));
                }
                if t.max_message_bytes < 6 || t.max_message_bytes > 65535 {
                    errors.push(format!(
                        "listeners.{name}.max_message_bytes: must be between 6 and 65535 (HEP3's own limit)"
                    ));
                }
            }
            #[cfg(feature = "kafka")]
            ListenerConfig::Kafka(_) => {}
        }
        if let Some(k) = &l.auth().auth_key {
            if k.is_empty() {
                errors.push(format!(
                    "listeners.{name}.auth_key: empty; remove it or set the key agents send"
                ));
            }
        }
    }
}
