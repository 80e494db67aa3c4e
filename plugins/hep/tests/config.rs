//! The `hep` sink's config checks through its factory (what `hepflow
//! validate` prints): every problem named with its full key path and what
//! to do, TLS files read and their errors named, and the auth key never
//! echoed in an error or a `Debug` dump.

use hepflow_hep::HepSinkFactory;
use hepflow_sdk::sink::SinkFactory;
use serde_json::json;

fn problems(v: serde_json::Value) -> Vec<String> {
    HepSinkFactory.validate("sinks.relay", &v)
}

fn has(p: &[String], needle: &str) -> bool {
    p.iter().any(|e| e.contains(needle))
}

#[test]
fn a_good_section_has_no_problem() {
    let p = problems(json!({
        "targets": ["udp://10.0.0.5:9060", {"url": "tcp://homer:9061", "when_full": "block", "queue_capacity": 100, "queue_max_bytes": 1048576}],
        "queue_max_bytes": 268435456,
        "mode": "hash",
        "encoding": "hepv3",
        "set_node_name": "hepflow-eu1-a",
        "set_capture_id": 2100,
        "strip_auth_key": true,
        "health": "all",
        "connect_timeout": "2s",
        "drain_timeout": "3s",
    }));
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn every_problem_is_reported_with_its_key_path() {
    let p = problems(json!({
        "targets": ["udp://a:9060", "http://b:1", "udp://a:9060", {"url": "tcp://c:1", "queue_capacity": 0, "queue_max_bytes": 1000, "tls": {"ca_file": "/x"}}],
        "queue_capacity": 0,
        "queue_max_bytes": 17179869185u64,
        "max_write_messages": 5000,
        "max_write_bytes": 0,
        "write_timeout": "0s",
        "reconnect_initial_backoff": "1m",
        "reconnect_max_backoff": "1s",
        "set_node_name": "me",
        "strip_auth_key": true,
    }));
    for want in [
        "sinks.relay.targets[1]: \"http://b:1\": unknown scheme",
        "sinks.relay.targets[2]: udp://a:9060 is listed twice",
        "sinks.relay.targets[3].queue_capacity: must be 1 to",
        "sinks.relay.targets[3].tls: only tls:// targets use TLS settings",
        "sinks.relay.queue_capacity: must be 1 to",
        "sinks.relay.targets[3].queue_max_bytes: 1000 is out of range: give 65536",
        "sinks.relay.queue_max_bytes: 17179869185 is out of range",
        "sinks.relay.max_write_messages: must be 1 to 1024",
        "sinks.relay.max_write_bytes: must be 1 to",
        "sinks.relay.write_timeout: must be longer than 0s",
        "sinks.relay.reconnect_initial_backoff: is longer than reconnect_max_backoff",
        "sinks.relay.set_node_name: needs encoding = \"hepv3\"",
        "sinks.relay.strip_auth_key: needs encoding = \"hepv3\"",
    ] {
        assert!(has(&p, want), "missing {want:?} in {p:#?}");
    }
    assert_eq!(p.len(), 13, "{p:#?}");
}

#[test]
fn empty_or_missing_targets_say_what_to_give() {
    for v in [json!({}), json!({"targets": []}), serde_json::Value::Null] {
        let p = problems(v);
        assert!(
            has(
                &p,
                "sinks.relay.targets: is empty: give at least one target such as"
            ),
            "{p:?}"
        );
    }
}

#[test]
fn unknown_keys_are_refused_with_their_path_also_inside_a_target_table() {
    let p = problems(json!({"targets": ["udp://a:1"], "mdoe": "hash"}));
    assert!(has(&p, "sinks.relay.mdoe: unknown field `mdoe`"), "{p:?}");
    let p = problems(json!({"targets": [{"url": "udp://a:1", "when_ful": "block"}]}));
    assert!(has(&p, "sinks.relay.targets[0]"), "{p:?}");
    assert!(has(&p, "unknown field `when_ful`"), "{p:?}");
    let p = problems(json!({"targets": ["udp://a:1"], "when_full": "spool"}));
    assert!(
        has(&p, "sinks.relay.when_full: unknown variant `spool`"),
        "{p:?}"
    );
}

#[test]
fn tls_targets_need_a_ca_file_and_both_halves_of_a_client_cert() {
    let p = problems(json!({"targets": ["tls://homer:9062"]}));
    assert!(
        has(
            &p,
            "sinks.relay.tls.ca_file: tls://homer:9062 needs the CA certificate(s)"
        ),
        "{p:?}"
    );
    let p = problems(json!({
        "targets": [{"url": "tls://homer:9062", "tls": {"ca_file": "/x", "cert_file": "/c"}}]
    }));
    assert!(
        has(
            &p,
            "sinks.relay.targets[0].tls.key_file: cert_file is set without key_file"
        ),
        "{p:?}"
    );
}

#[test]
fn tls_files_are_read_and_their_problems_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let p = problems(json!({
        "targets": ["tls://127.0.0.1:9062"],
        "tls": {"ca_file": missing},
    }));
    assert!(has(&p, "sinks.relay.tls.ca_file: cannot read"), "{p:?}");
    assert!(has(&p, "missing.pem"), "{p:?}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "this is no certificate\n").unwrap();
    let p = problems(json!({
        "targets": ["tls://127.0.0.1:9062"],
        "tls": {"ca_file": junk},
    }));
    assert!(has(&p, "sinks.relay.tls.ca_file:"), "{p:?}");
    assert!(has(&p, "holds no PEM certificate"), "{p:?}");

    // A good CA, a client cert whose key file holds no key.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["relay".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let p = problems(json!({
        "targets": ["tls://127.0.0.1:9062"],
        "tls": {"ca_file": ca_file, "cert_file": ca_file, "key_file": junk},
    }));
    assert!(has(&p, "sinks.relay.tls.key_file:"), "{p:?}");
    assert!(has(&p, "holds no usable PEM private key"), "{p:?}");
    let p = problems(json!({
        "targets": ["tls://127.0.0.1:9062"],
        "tls": {"ca_file": ca_file, "server_name": "not a name!"},
    }));
    assert!(has(&p, "sinks.relay.tls.server_name"), "{p:?}");
    let p = problems(json!({
        "targets": ["tls://127.0.0.1:9062"],
        "tls": {"ca_file": ca_file},
    }));
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn the_auth_key_is_never_echoed() {
    const SECRET: &str = "hunter2-relay-secret";
    // Wrong type, wrong combination, wrong encoding: none shows the key.
    for v in [
        json!({"targets": ["udp://a:1"], "set_auth_key": SECRET}),
        json!({"targets": ["udp://a:1"], "encoding": "hepv3", "set_auth_key": SECRET, "strip_auth_key": true}),
        json!({"targets": [format!("tcp://u:{SECRET}@a:1")]}),
    ] {
        let p = problems(v);
        assert!(!p.is_empty());
        for e in &p {
            assert!(!e.contains(SECRET), "secret in {e}");
        }
    }
    let cfg: hepflow_hep::HepSinkConfig = serde_json::from_value(json!({
        "targets": ["udp://a:1"], "encoding": "hepv3", "set_auth_key": SECRET
    }))
    .unwrap();
    let dump = format!("{cfg:?}");
    assert!(!dump.contains(SECRET), "{dump}");
    assert!(dump.contains("redacted"), "{dump}");
}
