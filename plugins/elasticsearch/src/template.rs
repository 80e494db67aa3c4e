//! What the sink learns and installs at start: the server's version and
//! flavour (from `GET /`), and the index template whose explicit mappings
//! come from the event document's fields ([`DOCUMENT_FIELDS`] and
//! [`FieldKind::es_type`]). Composable templates (`_index_template`) on
//! Elasticsearch 7.8+ and OpenSearch; legacy ones (`_template`) on
//! Elasticsearch 7.0-7.7. Never a mapping type.

use hepflow_sdk::document::{FieldKind, DOCUMENT_FIELDS};
use serde_json::{json, Map, Value};

/// Which product answered `GET /`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Elasticsearch.
    Elasticsearch,
    /// OpenSearch.
    OpenSearch,
}

/// The server's product and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// Product.
    pub flavor: Flavor,
    /// Major, minor.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// The version string as reported.
    pub number: String,
}

impl ServerVersion {
    /// From the body of `GET /`; the error says what was missing.
    pub fn from_info(info: &Value) -> Result<Self, String> {
        let v = info
            .get("version")
            .ok_or("the reply of GET / has no \"version\": is this an Elasticsearch or OpenSearch endpoint?")?;
        let number = v
            .get("number")
            .and_then(Value::as_str)
            .ok_or("the reply of GET / has no version.number: is this an Elasticsearch or OpenSearch endpoint?")?;
        let flavor = if v.get("distribution").and_then(Value::as_str) == Some("opensearch") {
            Flavor::OpenSearch
        } else {
            Flavor::Elasticsearch
        };
        let mut parts = number.split(['.', '-']).map(|p| p.parse::<u32>());
        let major = parts
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| format!("cannot read the version number {number:?}"))?;
        let minor = parts.next().and_then(Result::ok).unwrap_or(0);
        Ok(ServerVersion {
            flavor,
            major,
            minor,
            number: number.to_string(),
        })
    }

    /// Whether this version is supported; the error says what to do.
    pub fn check_supported(&self) -> Result<(), String> {
        match self.flavor {
            Flavor::Elasticsearch if self.major < 7 => Err(format!(
                "Elasticsearch {} is not supported (mapping types): upgrade to 7.x or later",
                self.number
            )),
            _ => Ok(()),
        }
    }

    /// True when composable templates (`_index_template`) exist.
    pub fn composable_templates(&self) -> bool {
        match self.flavor {
            Flavor::OpenSearch => true,
            Flavor::Elasticsearch => (self.major, self.minor) >= (7, 8),
        }
    }

    /// `Elasticsearch 8.15.3` / `OpenSearch 2.11.0`.
    pub fn describe(&self) -> String {
        let p = match self.flavor {
            Flavor::Elasticsearch => "Elasticsearch",
            Flavor::OpenSearch => "OpenSearch",
        };
        format!("{p} {}", self.number)
    }
}

/// Settings of the installed template.
#[derive(Debug, Clone)]
pub struct TemplateSpec {
    /// `index_patterns` (one wildcard).
    pub pattern: String,
    /// Priority (composable) or order (legacy).
    pub priority: u32,
    /// `index.number_of_shards`.
    pub shards: Option<u32>,
    /// `index.number_of_replicas`.
    pub replicas: Option<u32>,
    /// `ignore_above` of keyword fields.
    pub keyword_ignore_above: u32,
    /// `ignore_above` of `payload.keyword`.
    pub payload_keyword_ignore_above: u32,
}

impl TemplateSpec {
    /// The explicit mappings: one property per document field.
    pub fn mappings(&self) -> Value {
        let mut props = Map::new();
        for (name, kind) in DOCUMENT_FIELDS {
            let mut m = Map::new();
            m.insert("type".into(), kind.es_type().into());
            match kind {
                FieldKind::Keyword => {
                    m.insert("ignore_above".into(), self.keyword_ignore_above.into());
                }
                FieldKind::Text => {
                    m.insert(
                        "fields".into(),
                        json!({"keyword": {"type": "keyword", "ignore_above": self.payload_keyword_ignore_above}}),
                    );
                }
                _ => {}
            }
            props.insert((*name).to_string(), Value::Object(m));
        }
        json!({ "properties": props })
    }

    fn settings(&self) -> Value {
        let mut s = Map::new();
        if let Some(n) = self.shards {
            s.insert("number_of_shards".into(), n.into());
        }
        if let Some(n) = self.replicas {
            s.insert("number_of_replicas".into(), n.into());
        }
        json!({ "index": s })
    }

    /// Body of `PUT _index_template/NAME`.
    pub fn composable_body(&self) -> Value {
        json!({
            "index_patterns": [self.pattern],
            "priority": self.priority,
            "template": {
                "settings": self.settings(),
                "mappings": self.mappings(),
            },
            "_meta": { "managed_by": "hepflow" },
        })
    }

    /// Body of `PUT _template/NAME` (Elasticsearch 7.0-7.7).
    pub fn legacy_body(&self) -> Value {
        json!({
            "index_patterns": [self.pattern],
            "order": self.priority,
            "settings": self.settings(),
            "mappings": self.mappings(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let os = ServerVersion::from_info(
            &json!({"version": {"number": "3.8.0", "distribution": "opensearch"}}),
        )
        .unwrap();
        assert_eq!(os.flavor, Flavor::OpenSearch);
        assert!(os.composable_templates());
        let es7 = ServerVersion::from_info(&json!({"version": {"number": "7.7.1"}})).unwrap();
        assert!(!es7.composable_templates());
        assert!(es7.check_supported().is_ok());
        let es8 = ServerVersion::from_info(&json!({"version": {"number": "8.15.3"}})).unwrap();
        assert!(es8.composable_templates());
        let es6 = ServerVersion::from_info(&json!({"version": {"number": "6.8.0"}})).unwrap();
        assert!(es6
            .check_supported()
            .unwrap_err()
            .contains("upgrade to 7.x"));
        assert!(ServerVersion::from_info(&json!({"ok": true})).is_err());
    }

    #[test]
    fn mappings_cover_every_document_field_without_types() {
        let spec = TemplateSpec {
            pattern: "hep-*".into(),
            priority: 200,
            shards: Some(1),
            replicas: None,
            keyword_ignore_above: 1024,
            payload_keyword_ignore_above: 512,
        };
        let body = spec.composable_body();
        let props = &body["template"]["mappings"]["properties"];
        assert_eq!(props.as_object().unwrap().len(), DOCUMENT_FIELDS.len());
        assert_eq!(props["@timestamp"]["type"], "date");
        assert_eq!(props["src_ip"]["type"], "ip");
        assert_eq!(props["call_id"]["type"], "keyword");
        assert_eq!(props["payload"]["type"], "text");
        assert_eq!(props["payload"]["fields"]["keyword"]["ignore_above"], 512);
        assert_eq!(body["template"]["settings"]["index"]["number_of_shards"], 1);
        assert!(body["template"]["settings"]["index"]
            .get("number_of_replicas")
            .is_none());
        // No mapping type anywhere (ES 8 rejects them).
        let legacy = spec.legacy_body();
        assert!(legacy["mappings"].get("_doc").is_none());
        assert!(legacy["mappings"]["properties"].is_object());
    }
}
