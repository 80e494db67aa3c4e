//! The `file` sink end to end in a temporary directory: NDJSON lines,
//! hourly names from an injected clock, size rotation without overwriting,
//! `max_files` retention, write errors, and config validation messages.

use bytes::Bytes;
use hepflow_file::{FileSink, FileSinkConfig, FileSinkFactory};
use hepflow_sdk::hep::HepMessage;
use hepflow_sdk::sink::{Sink, SinkContext, SinkFactory};
use hepflow_sdk::{Event, ReceiveMeta, Transport};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// 2026-11-26T12:00:00Z.
const NOON: u64 = 1_795_694_400;

fn sip_event(i: usize) -> Event {
    let text = format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: call-{i}\r\nCSeq: {i} INVITE\r\n\r\n"
    );
    let mut m = HepMessage::new_v3(Bytes::from(text));
    m.ts_sec = NOON as u32;
    m.auth_key = Some(Bytes::from_static(b"never-written"));
    Event::new(
        m,
        Bytes::new(),
        ReceiveMeta {
            listener: "udp".into(),
            transport: Transport::Udp,
            peer: "192.0.2.1:5060".parse().unwrap(),
            received_at: UNIX_EPOCH + Duration::from_secs(NOON),
        },
    )
}

fn events(range: std::ops::Range<usize>) -> Vec<Event> {
    range.map(sip_event).collect()
}

/// A settable clock, in seconds since the epoch.
#[derive(Clone)]
struct TestClock(Arc<AtomicU64>);

impl TestClock {
    fn new(secs: u64) -> Self {
        TestClock(Arc::new(AtomicU64::new(secs)))
    }
    fn set(&self, secs: u64) {
        self.0.store(secs, Ordering::SeqCst);
    }
    fn clock(&self) -> hepflow_file::Clock {
        let t = self.0.clone();
        Arc::new(move || UNIX_EPOCH + Duration::from_secs(t.load(Ordering::SeqCst)))
    }
}

fn config(dir: &Path) -> FileSinkConfig {
    FileSinkConfig {
        path: dir.to_path_buf(),
        ..FileSinkConfig::default()
    }
}

fn sink(cfg: FileSinkConfig, clock: &TestClock) -> FileSink {
    FileSink::with_clock(cfg, SinkContext::for_tests("files"), clock.clock())
}

/// File names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// The documents of one file; every line must be a JSON object.
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{path:?} ends mid-line"
    );
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .inspect(|v| assert!(v.is_object()))
        .collect()
}

fn call_ids(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| d["call_id"].as_str().unwrap().to_string())
        .collect()
}

fn expected_ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("call-{i}")).collect()
}

#[tokio::test]
async fn writes_exactly_n_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(NOON + 10);
    let mut s = sink(config(dir.path()), &clock);
    s.start().await.unwrap();
    let mut total_bytes = 0;
    for (a, b) in [(0, 100), (100, 101), (101, 250)] {
        let d = s.write(&events(a..b)).await.unwrap();
        assert_eq!(d.events, (b - a) as u64);
        total_bytes += d.bytes;
    }
    // An empty batch delivers nothing and creates nothing.
    assert_eq!(s.write(&[]).await.unwrap().events, 0);
    s.flush().await.unwrap();
    s.close().await.unwrap();

    assert_eq!(names(dir.path()), ["hep-2026-11-26T12.ndjson"]);
    let path = dir.path().join("hep-2026-11-26T12.ndjson");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), total_bytes);
    let docs = lines(&path);
    assert_eq!(docs.len(), 250);
    assert_eq!(call_ids(&docs), expected_ids(0..250));
    assert_eq!(docs[7]["sip_method"], "INVITE");
    assert_eq!(docs[7]["cseq_num"], 7);
    assert_eq!(docs[7]["@timestamp"], "2026-11-26T12:00:00.000000Z");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("never-written"),
        "the auth key reached a file"
    );
}

#[tokio::test]
async fn files_are_named_by_the_utc_hour_written() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(NOON + 3599); // 12:59:59
    let mut s = sink(config(dir.path()), &clock);
    s.write(&events(0..3)).await.unwrap();
    clock.set(NOON + 3600); // 13:00:00
    s.write(&events(3..5)).await.unwrap();
    clock.set(NOON + 12 * 3600 - 1); // 23:59:59
    s.write(&events(5..6)).await.unwrap();
    clock.set(NOON + 12 * 3600); // next day 00:00:00
    s.write(&events(6..8)).await.unwrap();
    s.close().await.unwrap();

    assert_eq!(
        names(dir.path()),
        [
            "hep-2026-11-26T12.ndjson",
            "hep-2026-11-26T13.ndjson",
            "hep-2026-11-26T23.ndjson",
            "hep-2026-11-27T00.ndjson",
        ]
    );
    let ids = |n: &str| call_ids(&lines(&dir.path().join(n)));
    assert_eq!(ids("hep-2026-11-26T12.ndjson"), expected_ids(0..3));
    assert_eq!(ids("hep-2026-11-26T13.ndjson"), expected_ids(3..5));
    assert_eq!(ids("hep-2026-11-26T23.ndjson"), expected_ids(5..6));
    assert_eq!(ids("hep-2026-11-27T00.ndjson"), expected_ids(6..8));
}

/// The length of one document line of `sip_event(i)` for one-digit `i`.
fn line_len() -> u64 {
    let mut v = Vec::new();
    hepflow_sdk::document::write_document(&sip_event(1), &mut v);
    v.len() as u64 + 1
}

#[tokio::test]
async fn size_rotation_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    // A file of an earlier run holds the first name of the hour.
    let earlier = dir.path().join("hep-2026-11-26T12.ndjson");
    std::fs::write(&earlier, "earlier\n").unwrap();

    let clock = TestClock::new(NOON);
    let mut cfg = config(dir.path());
    // Room for three lines per file (all lines here have the same length).
    cfg.rotate_bytes = 3 * line_len() + 1;
    let mut s = sink(cfg.clone(), &clock);
    s.write(&events(0..5)).await.unwrap();
    // Someone takes the next name while the sink runs.
    let taken = dir.path().join("hep-2026-11-26T12.3.ndjson");
    std::fs::write(&taken, "taken\n").unwrap();
    s.write(&events(5..10)).await.unwrap();
    s.close().await.unwrap();

    assert_eq!(std::fs::read_to_string(&earlier).unwrap(), "earlier\n");
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "taken\n");
    assert_eq!(
        names(dir.path()),
        [
            "hep-2026-11-26T12.1.ndjson",
            "hep-2026-11-26T12.2.ndjson",
            "hep-2026-11-26T12.3.ndjson",
            "hep-2026-11-26T12.4.ndjson",
            "hep-2026-11-26T12.5.ndjson",
            "hep-2026-11-26T12.ndjson",
        ]
    );
    let ids = |n: &str| call_ids(&lines(&dir.path().join(n)));
    assert_eq!(ids("hep-2026-11-26T12.1.ndjson"), expected_ids(0..3));
    assert_eq!(ids("hep-2026-11-26T12.2.ndjson"), expected_ids(3..6));
    assert_eq!(ids("hep-2026-11-26T12.4.ndjson"), expected_ids(6..9));
    assert_eq!(ids("hep-2026-11-26T12.5.ndjson"), expected_ids(9..10));
    for n in names(dir.path()) {
        assert!(std::fs::metadata(dir.path().join(n)).unwrap().len() <= cfg.rotate_bytes);
    }

    // A restart within the hour continues after the highest file.
    let mut s = sink(cfg, &clock);
    s.write(&events(0..1)).await.unwrap();
    s.close().await.unwrap();
    assert_eq!(ids("hep-2026-11-26T12.6.ndjson"), expected_ids(0..1));
    assert_eq!(ids("hep-2026-11-26T12.5.ndjson"), expected_ids(9..10));
}

#[tokio::test]
async fn an_event_larger_than_rotate_bytes_gets_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(NOON);
    let mut cfg = config(dir.path());
    cfg.rotate_bytes = 10;
    let mut s = sink(cfg, &clock);
    let d = s.write(&events(0..3)).await.unwrap();
    assert_eq!(d.events, 3);
    s.close().await.unwrap();
    let files = names(dir.path());
    assert_eq!(files.len(), 3);
    for n in files {
        assert_eq!(lines(&dir.path().join(n)).len(), 1);
    }
}

#[tokio::test]
async fn max_files_keeps_the_newest_of_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    // Files that are not this sink's: never deleted.
    for foreign in [
        "notes.txt",
        "other-2026-11-26T10.ndjson",
        "hep-2026-11-26T10.ndjson.gz",
    ] {
        std::fs::write(dir.path().join(foreign), "keep").unwrap();
    }
    // An old file of this sink from an earlier run.
    std::fs::write(dir.path().join("hep-2026-11-25T09.ndjson"), "{}\n").unwrap();

    let clock = TestClock::new(NOON);
    let mut cfg = config(dir.path());
    cfg.rotate_bytes = line_len(); // one line per file
    cfg.max_files = Some(3);
    let ctx = SinkContext::for_tests("files");
    let registry = ctx.registry.clone();
    let mut s = FileSink::with_clock(cfg, ctx, clock.clock());
    s.write(&events(0..4)).await.unwrap();
    clock.set(NOON + 3600);
    s.write(&events(4..6)).await.unwrap();
    s.close().await.unwrap();

    assert_eq!(
        names(dir.path()),
        [
            "hep-2026-11-26T10.ndjson.gz",
            "hep-2026-11-26T12.3.ndjson",
            "hep-2026-11-26T13.1.ndjson",
            "hep-2026-11-26T13.ndjson",
            "notes.txt",
            "other-2026-11-26T10.ndjson",
        ]
    );
    assert_eq!(
        call_ids(&lines(&dir.path().join("hep-2026-11-26T12.3.ndjson"))),
        ["call-3"]
    );
    assert_eq!(
        call_ids(&lines(&dir.path().join("hep-2026-11-26T13.1.ndjson"))),
        ["call-5"]
    );
    let labels = [("sink", "files")];
    assert_eq!(
        registry.value("hepflow_file_sink_files_opened_total", &labels),
        Some(6.0)
    );
    // 6 opened + 1 from before - 3 kept.
    assert_eq!(
        registry.value("hepflow_file_sink_files_deleted_total", &labels),
        Some(4.0)
    );
}

#[tokio::test]
async fn fsync_flush_and_reopen_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new(NOON);
    let mut cfg = config(dir.path());
    cfg.fsync_on_flush = true;
    let mut s = sink(cfg, &clock);
    s.write(&events(0..2)).await.unwrap();
    s.flush().await.unwrap();
    s.close().await.unwrap();
    // A write after close starts a new file; the closed one is untouched.
    s.write(&events(2..3)).await.unwrap();
    s.close().await.unwrap();
    assert_eq!(
        call_ids(&lines(&dir.path().join("hep-2026-11-26T12.ndjson"))),
        expected_ids(0..2)
    );
    assert_eq!(
        call_ids(&lines(&dir.path().join("hep-2026-11-26T12.1.ndjson"))),
        expected_ids(2..3)
    );
}

#[tokio::test]
async fn io_errors_are_retryable_and_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // The configured directory is a regular file: nothing can be created.
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, "x").unwrap();
    let clock = TestClock::new(NOON);
    let ctx = SinkContext::for_tests("files");
    let health = ctx.health.clone();
    let mut s = FileSink::with_clock(config(&blocked), ctx, clock.clock());

    let e = s.start().await.unwrap_err();
    assert!(e.retryable);
    assert_eq!(e.reason, "io");
    assert!(e.message.contains("not-a-dir"), "{}", e.message);
    assert!(
        e.message.contains("the batch will be retried"),
        "{}",
        e.message
    );

    let e = s.write(&events(0..2)).await.unwrap_err();
    assert!(e.retryable && e.reason == "io", "{e:?}");
    assert!(!health.is_ready());

    // The problem goes away: the retry succeeds and health recovers.
    std::fs::remove_file(&blocked).unwrap();
    let d = s.write(&events(0..2)).await.unwrap();
    assert_eq!(d.events, 2);
    assert!(health.is_ready());
    s.close().await.unwrap();
    assert_eq!(
        call_ids(&lines(&blocked.join("hep-2026-11-26T12.ndjson"))),
        expected_ids(0..2)
    );
}

#[test]
fn factory_kind_and_defaults() {
    let f = FileSinkFactory;
    assert_eq!(f.kind(), "file");
    assert!(f.validate("sinks.files", &json!({})).is_empty());
    assert!(f.validate("sinks.files", &Value::Null).is_empty());
    let d = FileSinkConfig::default();
    assert_eq!(d.path, Path::new("./data"));
    assert_eq!(d.prefix, "hep");
    assert_eq!(d.rotate_bytes, 256 * 1024 * 1024);
    assert_eq!(d.max_files, None);
    assert!(!d.fsync_on_flush);
    let full = json!({
        "path": "/var/lib/hepflow",
        "prefix": "sip",
        "rotate_bytes": 1048576,
        "rotate_interval": "hourly",
        "max_files": 24,
        "fsync_on_flush": true,
        "buffer_bytes": 8192,
    });
    assert!(f.validate("sinks.files", &full).is_empty());
    assert!(f
        .build("sinks.files", &full, SinkContext::for_tests("files"))
        .is_ok());
}

#[test]
fn validate_names_the_full_key_path() {
    let f = FileSinkFactory;
    let unknown = f.validate("sinks.files", &json!({"rotat_bytes": 5}));
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(
        unknown[0].starts_with("sinks.files.rotat_bytes: unknown field `rotat_bytes`"),
        "{}",
        unknown[0]
    );
    assert!(
        unknown[0].contains("rotate_bytes"),
        "lists the valid keys: {}",
        unknown[0]
    );

    let wrong_type = f.validate("sinks.files", &json!({"rotate_bytes": "big"}));
    assert!(
        wrong_type[0].starts_with("sinks.files.rotate_bytes: invalid type"),
        "{wrong_type:?}"
    );

    let interval = f.validate("sinks.files", &json!({"rotate_interval": "daily"}));
    assert!(
        interval[0].starts_with("sinks.files.rotate_interval: unknown variant `daily`"),
        "{interval:?}"
    );

    let values = f.validate(
        "sinks.files",
        &json!({"rotate_bytes": 0, "max_files": 0, "prefix": "a/b", "buffer_bytes": 0, "path": ""}),
    );
    assert_eq!(values.len(), 5, "{values:?}");
    for key in [
        "path",
        "prefix",
        "rotate_bytes",
        "max_files",
        "buffer_bytes",
    ] {
        let prefix = format!("sinks.files.{key} ");
        assert!(
            values
                .iter()
                .any(|m| m.starts_with(&prefix) && m.contains(": ")),
            "no message for {key}: {values:?}"
        );
    }
    assert!(values
        .iter()
        .any(|m| m.contains("remove the key to keep every file")));

    // build refuses what validate reports.
    let err = f
        .build(
            "sinks.files",
            &json!({"max_files": 0}),
            SinkContext::for_tests("files"),
        )
        .err()
        .unwrap();
    assert!(err.starts_with("sinks.files.max_files is 0"), "{err}");
}
