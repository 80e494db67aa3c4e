//! librdkafka properties: the ones hepflow derives from its own keys, the
//! pass-through map (`librdkafka = { ... }`) and its conflict check, and
//! the check of every property against librdkafka itself (no client is
//! created, nothing connects).

use rdkafka::ClientConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One value of the pass-through map: TOML strings, integers, floats and
/// booleans are all accepted and handed to librdkafka as text.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OptionValue {
    /// A string.
    Text(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl OptionValue {
    /// The text librdkafka gets.
    pub fn as_text(&self) -> String {
        match self {
            OptionValue::Text(s) => s.clone(),
            OptionValue::Int(i) => i.to_string(),
            OptionValue::Float(f) => f.to_string(),
            OptionValue::Bool(b) => b.to_string(),
        }
    }
}

/// The pass-through map (`librdkafka = { ... }`). Its `Debug` redacts the
/// values of properties whose names look secret (passwords, keys, tokens).
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Passthrough(pub BTreeMap<String, OptionValue>);

impl std::fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.0 {
            if is_secret_property(k) {
                m.entry(k, &"<redacted>");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

/// A librdkafka property hepflow sets itself, with its aliases and the
/// hepflow key that controls it (or why it cannot be changed).
pub struct Owned {
    /// Property names (the first is the canonical one; the rest are
    /// librdkafka aliases of it).
    pub names: &'static [&'static str],
    /// What to set instead.
    pub instead: &'static str,
}

/// Properties the sink sets from its own keys.
pub const PRODUCER_OWNED: &[Owned] = &[
    Owned {
        names: &["bootstrap.servers", "metadata.broker.list"],
        instead: "brokers",
    },
    Owned {
        names: &["acks", "request.required.acks"],
        instead: "acks",
    },
    Owned {
        names: &["enable.idempotence"],
        instead: "idempotence",
    },
    Owned {
        names: &["compression.type", "compression.codec"],
        instead: "compression",
    },
    Owned {
        names: &["linger.ms", "queue.buffering.max.ms"],
        instead: "linger",
    },
    Owned {
        names: &["batch.num.messages"],
        instead: "batch_messages",
    },
    Owned {
        names: &["message.timeout.ms", "delivery.timeout.ms"],
        instead: "delivery_timeout",
    },
    Owned {
        names: &["queue.buffering.max.messages"],
        instead: "max_buffered_messages",
    },
    Owned {
        names: &["queue.buffering.max.kbytes"],
        instead: "max_buffered_bytes",
    },
    Owned {
        names: &["client.id"],
        instead: "client_id",
    },
    Owned {
        names: &["delivery.report.only.error", "dr_cb", "dr_msg_cb"],
        instead: "nothing: every delivery report drives hepflow's counters",
    },
];

/// Properties the kafka listener sets from its own keys.
pub const CONSUMER_OWNED: &[Owned] = &[
    Owned {
        names: &["bootstrap.servers", "metadata.broker.list"],
        instead: "brokers",
    },
    Owned {
        names: &["group.id"],
        instead: "group_id",
    },
    Owned {
        names: &["auto.offset.reset"],
        instead: "start_from",
    },
    Owned {
        names: &["enable.auto.commit"],
        instead: "nothing: offsets are committed by hepflow after the messages are queued",
    },
    Owned {
        names: &["enable.auto.offset.store"],
        instead: "nothing: offsets are stored by hepflow after the messages are queued",
    },
    Owned {
        names: &["auto.commit.interval.ms"],
        instead: "commit_interval",
    },
    Owned {
        names: &["session.timeout.ms"],
        instead: "session_timeout",
    },
    Owned {
        names: &["queued.max.messages.kbytes"],
        instead: "max_buffered_bytes",
    },
    Owned {
        names: &["statistics.interval.ms"],
        instead: "lag_interval",
    },
    Owned {
        names: &["client.id"],
        instead: "client_id",
    },
];

/// Report every pass-through key that hepflow sets itself
/// (`path` is the map's own path, e.g. `sinks.lake.librdkafka`).
pub fn conflicts(
    path: &str,
    parent: &str,
    map: &BTreeMap<String, OptionValue>,
    owned: &[Owned],
) -> Vec<String> {
    let mut errors = Vec::new();
    for key in map.keys() {
        let k = key.trim().to_ascii_lowercase();
        if let Some(o) = owned.iter().find(|o| o.names.contains(&k.as_str())) {
            let instead = if o.instead.starts_with("nothing") {
                format!("remove it ({})", o.instead)
            } else {
                format!("set {parent}.{} instead", o.instead)
            };
            errors.push(format!(
                "{path}.\"{key}\": conflicts with a setting hepflow makes itself ({}); {instead}",
                o.names[0]
            ));
        }
    }
    errors
}

/// Property names whose values may be secrets: librdkafka's error text
/// (which may quote the value) is not repeated for them.
fn is_secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "key", "token", "jaas", "credentials"]
        .iter()
        .any(|s| n.contains(s))
}

/// Check the pass-through map at `{parent}.librdkafka`: conflicts with
/// hepflow's own settings, then each remaining property against librdkafka
/// (name, value, and features this build lacks such as SSL/SASL), without
/// creating a client.
pub fn check_passthrough(
    parent: &str,
    map: &BTreeMap<String, OptionValue>,
    owned: &[Owned],
    errors: &mut Vec<String>,
) {
    let path = format!("{parent}.librdkafka");
    let conflicting = conflicts(&path, parent, map, owned);
    for (key, value) in map {
        if conflicting
            .iter()
            .any(|e| e.starts_with(&format!("{path}.\"{key}\"")))
        {
            continue;
        }
        let mut one = ClientConfig::new();
        one.set(key.trim(), value.as_text());
        if let Err(e) = one.create_native_config() {
            let why = if is_secret_property(key) {
                "librdkafka refused the value (not shown: it may be a secret)".to_string()
            } else {
                format!("librdkafka refused it: {e}")
            };
            errors.push(format!(
                "{path}.\"{key}\": {why} (this build of librdkafka has no OpenSSL, Cyrus SASL or curl: no TLS, SASL PLAIN only)"
            ));
        }
    }
    errors.extend(conflicting);
}

/// Check the whole property set the way librdkafka checks it when a client
/// is created (combinations such as idempotence with `max.in.flight` > 5):
/// a client of type `T` is created without any broker, so nothing
/// connects, and dropped at once.
pub fn check_whole<T: rdkafka::config::FromClientConfig>(
    parent: &str,
    config: &ClientConfig,
    map: &BTreeMap<String, OptionValue>,
) -> Vec<String> {
    let mut c = config.clone();
    c.remove("bootstrap.servers");
    match c.create::<T>() {
        Ok(client) => {
            drop(client);
            Vec::new()
        }
        Err(e) => {
            let why = if map.keys().any(|k| is_secret_property(k)) {
                "librdkafka refused the combination of settings (details not shown: the settings include secrets)".to_string()
            } else {
                format!("librdkafka refused the combination of settings: {e}")
            };
            vec![format!(
                "{parent}: {why}; check {parent}.librdkafka against the other keys"
            )]
        }
    }
}

/// Render a duration as whole milliseconds for librdkafka (at least `min`).
pub fn millis(d: std::time::Duration, min: u64) -> String {
    (d.as_millis() as u64).max(min).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_name_the_key_and_what_to_set_instead_including_aliases() {
        let mut m = BTreeMap::new();
        m.insert("acks".to_string(), OptionValue::Int(1));
        m.insert(
            "queue.buffering.max.ms".to_string(),
            OptionValue::Text("5".into()),
        );
        m.insert(
            "socket.keepalive.enable".to_string(),
            OptionValue::Bool(true),
        );
        let e = conflicts("sinks.k.librdkafka", "sinks.k", &m, PRODUCER_OWNED);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e.iter()
                .any(|l| l.contains("sinks.k.librdkafka.\"acks\"") && l.contains("sinks.k.acks")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|l| l.contains("\"queue.buffering.max.ms\"")
                && l.contains("linger.ms")
                && l.contains("sinks.k.linger")),
            "{e:?}"
        );
    }

    #[test]
    fn librdkafka_refuses_unknown_properties_and_missing_features() {
        let mut m = BTreeMap::new();
        m.insert("no.such.property".to_string(), OptionValue::Int(1));
        m.insert(
            "security.protocol".to_string(),
            OptionValue::Text("ssl".into()),
        );
        m.insert(
            "socket.keepalive.enable".to_string(),
            OptionValue::Bool(true),
        );
        m.insert("acks".to_string(), OptionValue::Int(1));
        let mut e = Vec::new();
        check_passthrough("x", &m, PRODUCER_OWNED, &mut e);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e.iter()
                .any(|l| l.starts_with("x.librdkafka.\"no.such.property\"")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("x.librdkafka.\"security.protocol\"")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("x.librdkafka.\"acks\"") && l.contains("x.acks")),
            "{e:?}"
        );
    }

    #[test]
    fn a_refused_secret_value_is_not_repeated() {
        let mut m = BTreeMap::new();
        // SASL/PLAIN is built into librdkafka: accepted. SSL is not built:
        // refused, and the value is not repeated.
        m.insert(
            "sasl.password".to_string(),
            OptionValue::Text("hunter2-secret".into()),
        );
        m.insert(
            "ssl.key.password".to_string(),
            OptionValue::Text("hunter3-secret".into()),
        );
        let mut e = Vec::new();
        check_passthrough("x", &m, PRODUCER_OWNED, &mut e);
        let all = e.join("\n");
        assert_eq!(e.len(), 1, "{all}");
        assert!(
            e[0].starts_with("x.librdkafka.\"ssl.key.password\""),
            "{all}"
        );
        assert!(!all.contains("hunter"), "{all}");

        let mut c = ClientConfig::new();
        c.set("sasl.password", "hunter2-secret");
        c.set("enable.idempotence", "true");
        c.set("max.in.flight.requests.per.connection", "50");
        let e = check_whole::<rdkafka::producer::BaseProducer>("x", &c, &m);
        assert_eq!(e.len(), 1);
        assert!(!e[0].contains("hunter"), "{e:?}");
        let dbg = format!("{:?}", Passthrough(m));
        assert!(
            !dbg.contains("hunter") && dbg.contains("<redacted>"),
            "{dbg}"
        );
    }

    #[test]
    fn combinations_are_checked_without_connecting() {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", "127.0.0.1:1");
        c.set("enable.idempotence", "true");
        c.set("max.in.flight.requests.per.connection", "50");
        let e = check_whole::<rdkafka::producer::BaseProducer>("sinks.k", &c, &BTreeMap::new());
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("sinks.k: librdkafka refused"), "{e:?}");
        c.set("max.in.flight.requests.per.connection", "5");
        let e = check_whole::<rdkafka::producer::BaseProducer>("sinks.k", &c, &BTreeMap::new());
        assert!(e.is_empty(), "{e:?}");
    }
}
