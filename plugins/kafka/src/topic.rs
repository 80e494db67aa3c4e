//! The sink's topic template: `hep`, `hep-{proto}`, `{node}.hep.{capture_id}`.
//! Parsed once at build time (unknown placeholders are config errors);
//! rendered per message into a reusable buffer. Characters Kafka does not
//! allow in topic names are replaced by `_`, and a rendered name is cut to
//! Kafka's 249-character limit.

use hepflow_sdk::Event;
use std::fmt::Write;

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_LEN: usize = 249;

/// Whether `name` is a legal Kafka topic name as it stands.
pub fn is_legal_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_LEN
        && name != "."
        && name != ".."
        && name.bytes().all(legal_byte)
}

fn legal_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Proto,
    ProtoType,
    CaptureId,
    Node,
    Listener,
}

/// A parsed topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<Part>,
}

/// Placeholders a template may use.
pub const PLACEHOLDERS: [&str; 5] = ["proto", "proto_type", "capture_id", "node", "listener"];

impl TopicTemplate {
    /// Parse `template`; the error says what is wrong and what is allowed.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Text(rest.to_string()));
                    rest = "";
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].to_string()));
                    }
                    if rest[i..].starts_with('}') {
                        return Err(format!(
                            "`{template}`: `}}` without `{{`; placeholders are {{{}}}",
                            PLACEHOLDERS.join("}, {")
                        ));
                    }
                    let Some(end) = rest[i..].find('}') else {
                        return Err(format!("`{template}`: `{{` is not closed"));
                    };
                    let name = &rest[i + 1..i + end];
                    parts.push(match name {
                        "proto" => Part::Proto,
                        "proto_type" => Part::ProtoType,
                        "capture_id" => Part::CaptureId,
                        "node" => Part::Node,
                        "listener" => Part::Listener,
                        other => {
                            return Err(format!(
                                "`{template}`: unknown placeholder {{{other}}}; use {{{}}}",
                                PLACEHOLDERS.join("}, {")
                            ))
                        }
                    });
                    rest = &rest[i + end + 1..];
                }
            }
        }
        if parts.is_empty() {
            return Err("empty; name a topic such as \"hep\" or \"hep-{proto}\"".into());
        }
        for p in &parts {
            if let Part::Text(t) = p {
                if let Some(c) = t.chars().find(|c| !c.is_ascii() || !legal_byte(*c as u8)) {
                    return Err(format!(
                        "`{template}`: `{c}` is not allowed in a Kafka topic name (use A-Z a-z 0-9 . _ -)"
                    ));
                }
            }
        }
        if let [Part::Text(t)] = parts.as_slice() {
            if !is_legal_topic(t) {
                return Err(format!(
                    "`{template}` is not a legal Kafka topic name (1-{MAX_TOPIC_LEN} of A-Z a-z 0-9 . _ -, not `.` or `..`)"
                ));
            }
        }
        Ok(TopicTemplate { parts })
    }

    /// The topic when the template has no placeholder.
    pub fn fixed(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Render the topic of `ev` into `out` (cleared first).
    pub fn render(&self, ev: &Event, node: &str, out: &mut String) {
        out.clear();
        let hep = ev.hep();
        for p in &self.parts {
            let start = out.len();
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Proto => match hep.proto_name() {
                    Some(n) => out.push_str(n),
                    None => {
                        let _ = write!(out, "{}", hep.proto_type);
                    }
                },
                Part::ProtoType => {
                    let _ = write!(out, "{}", hep.proto_type);
                }
                Part::CaptureId => {
                    let _ = write!(out, "{}", hep.capture_id);
                }
                Part::Node => out.push_str(node),
                Part::Listener => out.push_str(&ev.meta().listener),
            }
            sanitize_from(out, start);
        }
        if out.len() > MAX_TOPIC_LEN {
            out.truncate(MAX_TOPIC_LEN);
        }
        if out == "." || out == ".." {
            out.clear();
            out.push('_');
        }
    }
}

/// Replace every byte after `start` that is not legal in a topic name by `_`.
fn sanitize_from(out: &mut String, start: usize) {
    if out.as_bytes()[start..].iter().all(|&b| legal_byte(b)) {
        return;
    }
    let cleaned: String = out[start..]
        .chars()
        .map(|c| {
            if c.is_ascii() && legal_byte(c as u8) {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(start);
    out.push_str(&cleaned);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hepflow_sdk::hep::HepMessage;
    use hepflow_sdk::{ReceiveMeta, Transport};
    use std::time::SystemTime;

    fn ev(proto: u8, capture_id: u32, listener: &str) -> Event {
        let mut m = HepMessage::new_v3(Bytes::from_static(b"x"));
        m.proto_type = proto;
        m.capture_id = capture_id;
        Event::new(
            m,
            Bytes::new(),
            ReceiveMeta {
                listener: listener.into(),
                transport: Transport::Udp,
                peer: "127.0.0.1:1".parse().unwrap(),
                received_at: SystemTime::now(),
            },
        )
    }

    #[test]
    fn renders_every_placeholder() {
        let t = TopicTemplate::parse("hep-{proto}.{proto_type}.{capture_id}.{node}.{listener}")
            .unwrap();
        let mut out = String::new();
        t.render(&ev(1, 2001, "udp"), "edge1", &mut out);
        assert_eq!(out, "hep-sip.1.2001.edge1.udp");
        t.render(&ev(200, 7, "in"), "edge1", &mut out);
        assert_eq!(out, "hep-200.200.7.edge1.in");
        assert_eq!(t.fixed(), None);
        assert_eq!(TopicTemplate::parse("hep").unwrap().fixed(), Some("hep"));
    }

    #[test]
    fn illegal_characters_from_values_are_replaced_and_length_capped() {
        let t = TopicTemplate::parse("hep-{node}-{listener}").unwrap();
        let mut out = String::new();
        t.render(&ev(1, 0, "my listener/ü"), "a:b", &mut out);
        assert_eq!(out, "hep-a_b-my_listener__");
        let long = "n".repeat(400);
        t.render(&ev(1, 0, "l"), &long, &mut out);
        assert_eq!(out.len(), MAX_TOPIC_LEN);
        assert!(is_legal_topic(&out));
    }

    #[test]
    fn bad_templates_are_refused_with_a_reason() {
        for (t, want) in [
            ("", "empty"),
            ("hep-{nope}", "unknown placeholder {nope}"),
            ("hep-{proto", "not closed"),
            ("hep}", "without"),
            ("hep topic", "not allowed"),
            ("..", "not a legal"),
        ] {
            let e = TopicTemplate::parse(t).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
    }
}
