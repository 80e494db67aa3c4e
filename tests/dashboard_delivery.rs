//! The delivery dashboard (deploy/grafana/hepflow-delivery.json) against
//! a running hepflow: every series and label its queries name is one that
//! hepflow's `/metrics` exposes, once a sink with a spool has run.

mod common;

use common::*;
use std::collections::BTreeSet;

/// Metric names (`hepflow_*`) and label names a PromQL expression uses.
fn names_and_labels(expr: &str) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("hepflow_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    let mut labels = Vec::new();
    for part in expr.split("by (").skip(1) {
        let inner = part.split(')').next().unwrap();
        labels.extend(inner.split(',').map(|s| s.trim().to_string()));
    }
    for part in expr.split('{').skip(1) {
        let inner = part.split('}').next().unwrap();
        for m in inner.split(',') {
            let k = m.split(['=', '!']).next().unwrap().trim();
            if !k.is_empty() {
                labels.push(k.to_string());
            }
        }
    }
    (names, labels)
}

/// Label names of every exposed series of `name`.
fn exposed_labels(metrics: &str, name: &str) -> Option<BTreeSet<String>> {
    let mut found = None;
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let set: &mut BTreeSet<String> = found.get_or_insert_with(BTreeSet::new);
        if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.split('}').next()) {
            for kv in inner.split(',') {
                if let Some((k, _)) = kv.split_once('=') {
                    set.insert(k.to_string());
                }
            }
        }
    }
    found
}

#[test]
fn every_query_names_series_and_labels_hepflow_exposes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/grafana/hepflow-delivery.json");
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let h = Hepflow::start(
        "",
        &format!(
            "[sinks.bench]\ntype = \"null\"\n[sinks.bench.spool]\nmode = \"always\"\n\
             [sinks.relay]\ntype = \"hep\"\ntargets = [\"udp://127.0.0.1:{}\"]\n\
             [default_route]\nsinks = [\"files\", \"bench\", \"relay\"]\n",
            free_port()
        ),
    );
    send_udp(h.udp, &corpus_messages("kamailio-hep3-udp.pcapng"));
    h.expect_metric(r#"hepflow_spool_replayed_total{sink="bench"}"#, 14.0);
    let metrics = h.metrics();
    let mut used = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        let Some(targets) = p["targets"].as_array() else {
            continue;
        };
        for t in targets {
            let expr = t["expr"].as_str().expect("PromQL expr");
            let (names, labels) = names_and_labels(expr);
            assert!(!names.is_empty(), "{expr}");
            for n in &names {
                let have = exposed_labels(&metrics, n)
                    .unwrap_or_else(|| panic!("{expr}: {n} is not exposed"));
                for l in &labels {
                    assert!(
                        have.contains(l),
                        "{expr}: {n} has no label {l:?} ({have:?})"
                    );
                }
                used.insert(n.clone());
            }
        }
    }
    for family in [
        "hepflow_spool_bytes",
        "hepflow_spool_records",
        "hepflow_spool_oldest_seconds",
        "hepflow_spool_written_total",
        "hepflow_spool_replayed_total",
        "hepflow_spool_dropped_total",
        "hepflow_sink_dropped_total",
        "hepflow_task_restarts_total",
    ] {
        assert!(used.contains(family), "no panel shows {family}");
    }
}
