//! Reading what the cluster answered: the HTTP status of a bulk request
//! ([`classify_status`]) and, for a 2xx reply with `"errors": true`, each
//! item's status ([`classify_item`]), sorted into ok / duplicate / retry /
//! reject. Also the error text of non-bulk replies, for messages.

use crate::config::BulkAction;
use serde::Deserialize;
use serde_json::Value;

/// What to do with a whole bulk request, by its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    /// 2xx: read the items.
    Items,
    /// 408, 429, 5xx: send the same items again later.
    Retry,
    /// 401 or 403: credentials or privileges are wrong; retried (nothing
    /// is dropped while an operator fixes them), with a message saying so.
    AuthRetry,
    /// 404, 405, 406, 415: the endpoint refuses the request as such (a
    /// wrong URL path or a proxy in between), not its documents: retried
    /// with a message saying what to check.
    EndpointRetry,
    /// 413: the body is too large for the server: split it.
    TooLarge,
    /// Any other status: the request is refused as such; its items are
    /// dead-lettered with the server's reason.
    Reject,
}

/// Sort a bulk request's HTTP status.
pub fn classify_status(status: u16) -> RequestClass {
    match status {
        200..=299 => RequestClass::Items,
        408 | 429 | 500..=599 => RequestClass::Retry,
        401 | 403 => RequestClass::AuthRetry,
        404 | 405 | 406 | 415 => RequestClass::EndpointRetry,
        413 => RequestClass::TooLarge,
        _ => RequestClass::Reject,
    }
}

/// What to do with one item of a bulk reply.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemClass {
    /// Indexed (200/201).
    Ok,
    /// `create` of an `_id` that exists (409): already indexed.
    Duplicate,
    /// 408, 429, 5xx, 401/403 (e.g. an index blocked while a disk is
    /// full): may succeed when sent again.
    Retry,
    /// Any other 4xx (mapping conflict, parse error, missing index or
    /// pipeline): will not succeed as it is.
    Reject,
}

/// Sort one item by status and the bulk action used.
pub fn classify_item(action: BulkAction, status: u16) -> ItemClass {
    match status {
        200..=299 => ItemClass::Ok,
        409 if action == BulkAction::Create => ItemClass::Duplicate,
        408 | 429 | 401 | 403 | 500..=599 => ItemClass::Retry,
        _ => ItemClass::Reject,
    }
}

/// One item's result.
#[derive(Debug, Clone, Deserialize)]
pub struct ItemResult {
    /// HTTP status of the item.
    pub status: u16,
    /// The server's error object (`type`, `reason`, `caused_by`), or a
    /// string on old servers.
    #[serde(default)]
    pub error: Option<Value>,
}

impl ItemResult {
    /// The error's `type` (or `"unknown"`).
    pub fn error_type(&self) -> &str {
        match &self.error {
            Some(Value::Object(m)) => m.get("type").and_then(Value::as_str).unwrap_or("unknown"),
            _ => "unknown",
        }
    }

    /// The error's `reason` (with `caused_by.reason` when there is one),
    /// or the whole error when it is a string.
    pub fn reason(&self) -> String {
        match &self.error {
            Some(Value::Object(m)) => {
                let mut r = m
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if let Some(c) = m
                    .get("caused_by")
                    .and_then(|c| c.get("reason"))
                    .and_then(Value::as_str)
                {
                    r.push_str(" (caused by: ");
                    r.push_str(c);
                    r.push(')');
                }
                r
            }
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => format!("status {}", self.status),
        }
    }
}

/// One entry of `items`: an object with one key, the action.
#[derive(Debug, Deserialize)]
struct ItemWrap {
    #[serde(rename = "create", alias = "index", alias = "update", alias = "delete")]
    result: ItemResult,
}

#[derive(Debug, Deserialize)]
struct Reply {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<ItemWrap>,
    #[serde(default)]
    error: Option<Value>,
}

/// A parsed 2xx bulk reply.
#[derive(Debug)]
pub enum BulkReply {
    /// `"errors": false`: every item was indexed.
    AllOk,
    /// Per-item results, in request order.
    Items(Vec<ItemResult>),
}

/// Parse a 2xx bulk reply for `expected` items. An unreadable reply, or
/// one with a different number of items, is an error (the request is
/// retried: what was indexed of it is unknown).
pub fn parse_bulk_reply(body: &[u8], expected: usize) -> Result<BulkReply, String> {
    let r: Reply = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the bulk reply is not the JSON expected ({e}); it starts with: {}",
            preview(body)
        )
    })?;
    if let Some(err) = r.error {
        return Err(format!("the bulk reply is an error: {}", error_text(&err)));
    }
    if !r.errors {
        // Servers filtering the reply may leave out items; when they are
        // there, their number must match.
        if !r.items.is_empty() && r.items.len() != expected {
            return Err(format!(
                "the bulk reply has {} items for {expected} documents sent",
                r.items.len()
            ));
        }
        return Ok(BulkReply::AllOk);
    }
    if r.items.len() != expected {
        return Err(format!(
            "the bulk reply has {} items for {expected} documents sent",
            r.items.len()
        ));
    }
    Ok(BulkReply::Items(
        r.items.into_iter().map(|w| w.result).collect(),
    ))
}

/// A short, printable start of a reply body (at most 300 characters).
pub fn preview(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(300)]);
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The readable error of an error reply body (`{"error": {...}}` or
/// `{"error": "..."}`), else a preview of the body.
pub fn reply_error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v.get("error") {
            Some(e) => error_text(e),
            None => preview(body),
        },
        Err(_) => preview(body),
    }
}

fn error_text(e: &Value) -> String {
    match e {
        Value::Object(m) => {
            let t = m.get("type").and_then(Value::as_str).unwrap_or("error");
            let r = m.get("reason").and_then(Value::as_str).unwrap_or("");
            let mut s = format!("{t}: {r}");
            s.truncate(500);
            s
        }
        Value::String(s) => s.chars().take(500).collect(),
        other => other.to_string().chars().take(500).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify_status(200), RequestClass::Items);
        assert_eq!(classify_status(429), RequestClass::Retry);
        assert_eq!(classify_status(503), RequestClass::Retry);
        assert_eq!(classify_status(408), RequestClass::Retry);
        assert_eq!(classify_status(401), RequestClass::AuthRetry);
        assert_eq!(classify_status(413), RequestClass::TooLarge);
        assert_eq!(classify_status(400), RequestClass::Reject);
        assert_eq!(classify_status(406), RequestClass::EndpointRetry);
        assert_eq!(classify_status(404), RequestClass::EndpointRetry);
        assert_eq!(classify_status(422), RequestClass::Reject);
        assert_eq!(classify_item(BulkAction::Create, 201), ItemClass::Ok);
        assert_eq!(classify_item(BulkAction::Create, 409), ItemClass::Duplicate);
        assert_eq!(classify_item(BulkAction::Index, 409), ItemClass::Reject);
        assert_eq!(classify_item(BulkAction::Create, 429), ItemClass::Retry);
        assert_eq!(classify_item(BulkAction::Create, 503), ItemClass::Retry);
        assert_eq!(classify_item(BulkAction::Create, 400), ItemClass::Reject);
        assert_eq!(classify_item(BulkAction::Create, 404), ItemClass::Reject);
    }

    #[test]
    fn osmem_mixed_reply() {
        // As osmem-server 0.1.6 answered a probe by hand.
        let body = br#"{"errors":true,"items":[{"create":{"_id":"1","_index":"probe-a","result":"created","status":201}},{"create":{"_id":"1","_index":"probe-a","error":{"index":"probe-a","reason":"[1]: version conflict, document already exists (current version [1])","shard":"0","type":"version_conflict_engine_exception"},"status":409}},{"create":{"_id":"2","_index":"probe-a","error":{"caused_by":{"reason":"'notanip' is not an IP string literal.","type":"illegal_argument_exception"},"reason":"failed to parse field [src_ip] of type [ip]","type":"mapper_parsing_exception"},"status":400}}],"took":1}"#;
        let BulkReply::Items(items) = parse_bulk_reply(body, 3).unwrap() else {
            panic!("expected items")
        };
        assert_eq!(items[0].status, 201);
        assert_eq!(items[1].error_type(), "version_conflict_engine_exception");
        assert_eq!(items[2].error_type(), "mapper_parsing_exception");
        assert_eq!(
            items[2].reason(),
            "failed to parse field [src_ip] of type [ip] (caused by: 'notanip' is not an IP string literal.)"
        );
        assert!(parse_bulk_reply(body, 2)
            .unwrap_err()
            .contains("3 items for 2"));
    }

    #[test]
    fn all_ok_and_garbage() {
        assert!(matches!(
            parse_bulk_reply(
                br#"{"errors":false,"took":3,"items":[{"index":{"status":201}}]}"#,
                1
            ),
            Ok(BulkReply::AllOk)
        ));
        assert!(parse_bulk_reply(b"<html>bad gateway</html>", 1).is_err());
        assert!(
            parse_bulk_reply(br#"{"error":{"type":"x","reason":"y"},"status":400}"#, 1)
                .unwrap_err()
                .contains("x: y")
        );
        assert_eq!(
            reply_error_text(
                br#"{"error":"Content-Type header [x] is not supported","status":406}"#
            ),
            "Content-Type header [x] is not supported"
        );
    }
}
