//! The dead-letter file: documents the cluster refused for good, appended
//! as NDJSON, one line each:
//!
//! ```json
//! {"@timestamp":"...","sink":"search","index":"hep-sip-2024.05.01","_id":"...",
//!  "action":"create","status":400,"error_type":"mapper_parsing_exception",
//!  "reason":"failed to parse field [src_ip] ...","error":{...},"document":{...}}
//! ```
//!
//! `error` is the server's own error object (capped in size), `document`
//! the event document exactly as sent, so the lines can be fixed up and
//! indexed again. The file is opened for appending (a restart continues
//! it); when it would grow past its bound it is renamed to `<path>.1`
//! (replacing an older one) and a new file starts, so it never holds more
//! than twice the bound. Writing is blocking file I/O: the sink calls
//! [`DeadLetterWriter::write`] on tokio's blocking pool.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Largest server error object kept as is; a larger one is cut down to
/// its type and (truncated) reason.
const MAX_ERROR_JSON: usize = 8192;

/// One refused document.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Index it was sent to.
    pub index: String,
    /// Its `_id`, when it had one.
    pub id: Option<String>,
    /// HTTP status of the item (or of the whole request).
    pub status: u16,
    /// The error's type (`mapper_parsing_exception`, ...).
    pub error_type: String,
    /// The error's reason.
    pub reason: String,
    /// The server's error object (`null` when there was none).
    pub error: serde_json::Value,
    /// The document as sent (one line of JSON).
    pub document: bytes::Bytes,
}

/// Appends dead letters to one file, rotating at a size bound.
#[derive(Debug)]
pub struct DeadLetterWriter {
    path: PathBuf,
    max_bytes: u64,
    sink: String,
    action: &'static str,
    file: Option<BufWriter<File>>,
    size: u64,
}

impl DeadLetterWriter {
    /// A writer for `path` (opened on first use).
    pub fn new(path: PathBuf, max_bytes: u64, sink: &str, action: &'static str) -> Self {
        DeadLetterWriter {
            path,
            max_bytes,
            sink: sink.to_string(),
            action,
            file: None,
            size: 0,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&mut self) -> std::io::Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        self.file = Some(BufWriter::with_capacity(64 << 10, f));
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, PathBuf::from(old))?;
        self.size = 0;
        self.open()
    }

    /// Append `letters` and flush. On error, the lines not written are
    /// the caller's to count.
    pub fn write(&mut self, letters: &[DeadLetter]) -> std::io::Result<()> {
        self.open()?;
        let now = hepflow_sdk::document::rfc3339_micros(std::time::SystemTime::now());
        let mut line = Vec::with_capacity(4096);
        for l in letters {
            line.clear();
            self.encode(l, &now, &mut line);
            if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
                self.rotate()?;
            }
            let Some(f) = self.file.as_mut() else {
                return Err(std::io::Error::other("dead-letter file not open"));
            };
            f.write_all(&line)?;
            self.size += line.len() as u64;
        }
        if let Some(f) = self.file.as_mut() {
            f.flush()?;
        }
        Ok(())
    }

    fn encode(&self, l: &DeadLetter, now: &str, out: &mut Vec<u8>) {
        let error = {
            let s = l.error.to_string();
            if s.len() <= MAX_ERROR_JSON {
                l.error.clone()
            } else {
                serde_json::json!({
                    "type": l.error_type,
                    "reason": l.reason.chars().take(2000).collect::<String>(),
                    "truncated": true,
                })
            }
        };
        let head = serde_json::json!({
            "@timestamp": now,
            "sink": self.sink,
            "index": l.index,
            "_id": l.id,
            "action": self.action,
            "status": l.status,
            "error_type": l.error_type,
            "reason": l.reason.chars().take(4000).collect::<String>(),
            "error": error,
        });
        // `head` is an object: write it without its closing brace, then
        // the document as a raw JSON value (it is the exact bytes sent).
        let mut h = serde_json::to_vec(&head).unwrap_or_else(|_| b"{}".to_vec());
        h.pop();
        out.extend_from_slice(&h);
        let doc_is_json = serde_json::from_slice::<serde::de::IgnoredAny>(&l.document).is_ok();
        if doc_is_json {
            out.extend_from_slice(b",\"document\":");
            out.extend_from_slice(&l.document);
        } else {
            // Never reached with documents from the encoder; keep the line
            // valid JSON whatever happens.
            out.extend_from_slice(b",\"document_text\":");
            let s =
                serde_json::to_string(&String::from_utf8_lossy(&l.document)).unwrap_or_default();
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(b"}\n");
    }

    /// Flush buffered lines (they are flushed after every write anyway).
    pub fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(n: usize) -> DeadLetter {
        DeadLetter {
            index: "hep-sip-2024.05.01".into(),
            id: Some(format!("id{n}")),
            status: 400,
            error_type: "mapper_parsing_exception".into(),
            reason: "failed to parse field [src_ip]".into(),
            error: serde_json::json!({"type": "mapper_parsing_exception", "reason": "failed to parse field [src_ip]"}),
            document: bytes::Bytes::from(format!("{{\"n\":{n},\"payload\":\"x\\ny\"}}")),
        }
    }

    #[test]
    fn lines_are_json_with_reason_and_document() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/dlq.ndjson");
        let mut w = DeadLetterWriter::new(p.clone(), 1 << 20, "search", "create");
        w.write(&[letter(1), letter(2)]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["status"], 400);
        assert_eq!(lines[0]["reason"], "failed to parse field [src_ip]");
        assert_eq!(lines[0]["error"]["type"], "mapper_parsing_exception");
        assert_eq!(lines[1]["document"]["n"], 2);
        assert_eq!(lines[1]["_id"], "id2");
        // A new writer appends.
        let mut w2 = DeadLetterWriter::new(p.clone(), 1 << 20, "search", "create");
        w2.write(&[letter(3)]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 3);
    }

    #[test]
    fn rotates_at_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dlq.ndjson");
        let mut w = DeadLetterWriter::new(p.clone(), 4096, "search", "create");
        for i in 0..40 {
            w.write(&[letter(i)]).unwrap();
        }
        let cur = std::fs::metadata(&p).unwrap().len();
        let old = std::fs::metadata(dir.path().join("dlq.ndjson.1"))
            .unwrap()
            .len();
        assert!(cur <= 4096 && old <= 4096, "{cur} {old}");
    }
}
