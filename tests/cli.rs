//! The command line: `validate` reports every error with its key path,
//! `--version` and `--help` work, environment variables and flags override
//! the file, and `run` refuses a bad config without starting.

mod common;

use std::process::Command;

fn hepflow() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hepflow"));
    // Keep the test environment's HEPFLOW_TEST_* variables from mattering
    // (they are not config sections and must be ignored anyway).
    c.env_remove("RUST_LOG");
    c
}

fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let p = dir.path().join("c.toml");
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = r#"
[listeners.udp]
kind = "udp"
bind = "127.0.0.1:0"
[sinks.files]
type = "file"
path = "/tmp/hepflow-test-data"
[default_route]
sinks = ["files"]
"#;

#[test]
fn validate_reports_a_misspelt_key_and_an_unknown_sink_together() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        r#"
[listeners.udp]
kind = "udp"
bind = "127.0.0.1:0"
recv_bufer_bytes = 1000
[sinks.files]
type = "file"
path = "/tmp/x"
[[routes]]
name = "sip"
match = { proto = ["sip"] }
sinks = ["search"]
[default_route]
sinks = ["files"]
"#,
    );
    let out = hepflow()
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("2 error(s)"), "{err}");
    assert!(
        err.contains("listeners.udp.recv_bufer_bytes: unknown field `recv_bufer_bytes`"),
        "{err}"
    );
    assert!(err.contains("sink `search` is not defined"), "{err}");
}

#[test]
fn validate_reports_queue_bounds_that_cannot_work() {
    let (code, err) = common::validate_config(
        r#"
[listeners.udp]
kind = "udp"
bind = "127.0.0.1:0"
[sinks.files]
type = "file"
path = "/tmp/x"
[sinks.files.queue]
capacity = 0
max_bytes = 1000
[default_route]
sinks = ["files"]
"#,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("2 error(s)"), "{err}");
    assert!(
        err.contains("sinks.files.queue.capacity: must be at least 1"),
        "{err}"
    );
    assert!(
        err.contains("sinks.files.queue.max_bytes: 1000 is too small; give at least 65536"),
        "{err}"
    );
}

#[test]
fn validate_accepts_good_configs_and_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(&dir, GOOD);
    let out = hepflow()
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = hepflow().arg("validate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/hepflow.example.toml"
    );
    let out = hepflow()
        .args(["validate", "-c", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn environment_and_flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(&dir, GOOD);
    let out = hepflow()
        .args(["validate", "-c"])
        .arg(&cfg)
        .env("HEPFLOW_API__BIND", "not-an-address")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("api.bind"), "{err}");
    assert!(err.contains("HEPFLOW_"), "names the source: {err}");
    let out = hepflow()
        .args(["validate", "--api-bind", "nope", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Unrelated HEPFLOW_* variables are not config keys.
    let out = hepflow()
        .args(["validate", "-c"])
        .arg(&cfg)
        .env("HEPFLOW_SOMETHING_ELSE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_refuses_a_bad_config_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "[listeners.x]\nkind = \"sctp\"\nbind = \"127.0.0.1:0\"\n",
    );
    let out = hepflow().args(["run", "-c"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("listeners.x.kind: unknown listener kind `sctp`"),
        "{err}"
    );
    assert!(err.contains("hepflow not started"), "{err}");
}

#[test]
fn version_and_help() {
    let out = hepflow().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("hepflow {}", env!("CARGO_PKG_VERSION"))
    );
    let out = hepflow().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("validate") && text.contains("run") && text.contains("--config"));
}
