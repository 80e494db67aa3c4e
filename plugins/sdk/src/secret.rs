//! [`Secret`]: a password, token or HEP auth key from the configuration.
//! Its `Debug` never shows it, so it never reaches a log line, a metric or
//! an error message by accident; the value is read with
//! [`Secret::expose`] only where a request header or a wire chunk is
//! built. One type for the hub and every plugin.

use serde::{Deserialize, Deserializer};

/// A secret string. Given as a string in the configuration; a number
/// (an environment variable of digits) is taken as its digits.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself: only for building a header or a chunk; never
    /// log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for an empty secret (a config mistake worth reporting).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            U(u64),
        }
        Ok(Secret(
            match Raw::deserialize(d).map_err(|_| {
                serde::de::Error::custom("expected a string (the secret itself is not shown)")
            })? {
                Raw::S(s) => s,
                Raw::I(i) => i.to_string(),
                Raw::U(u) => u.to_string(),
            },
        ))
    }
}

/// `head`, then the text of each cause from `first` on (at most five),
/// each after `": "`, leaving out a cause whose text is already there:
/// the one way errors from clients (reqwest, rdkafka, the Elasticsearch
/// client) are turned into a log or error line.
pub fn with_causes(mut head: String, first: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut cause = first;
    for _ in 0..5 {
        let Some(c) = cause else { break };
        let t = c.to_string();
        if !head.contains(&t) {
            head.push_str(": ");
            head.push_str(&t);
        }
        cause = c.source();
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_it_and_numbers_are_taken_as_digits() {
        let s: Secret = serde_json::from_value(serde_json::json!("hunter2")).unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let n: Secret = serde_json::from_value(serde_json::json!(12345)).unwrap();
        assert_eq!(n.expose(), "12345");
        let e = serde_json::from_value::<Secret>(serde_json::json!([1])).unwrap_err();
        assert!(e.to_string().contains("not shown"), "{e}");
    }

    #[test]
    fn causes_are_chained_once_each() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let inner = E("connection refused", None);
        let mid = E("connect failed", Some(Box::new(inner)));
        let top = E("request failed", Some(Box::new(mid)));
        assert_eq!(
            with_causes("request failed".into(), std::error::Error::source(&top)),
            "request failed: connect failed: connection refused"
        );
        assert_eq!(
            with_causes("x: connect failed".into(), std::error::Error::source(&top)),
            "x: connect failed: connection refused"
        );
    }
}
