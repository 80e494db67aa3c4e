//! The Grafana dashboards in `deploy/grafana/` parse, and every query in
//! them names only measurements, fields and tags the sink writes (InfluxQL
//! dashboard) or series and labels it exposes (Prometheus dashboard), as
//! listed in `hepflow_influxdb::schema`; every measurement and Prometheus
//! family has a panel.

use hepflow_influxdb::schema::{self, MEASUREMENTS, PROM_DECODE_ERRORS, PROM_FAMILIES};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn load(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/grafana")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()))
}

/// Every non-row panel (rows flattened).
fn panels(d: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten().cloned());
        } else {
            out.push(p.clone());
        }
    }
    out
}

fn structure(d: &serde_json::Value, ds_type: &str) {
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["uid"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["schemaVersion"].as_u64().is_some());
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id"
        );
        for k in ["h", "w", "x", "y"] {
            assert!(
                p["gridPos"][k].as_u64().is_some(),
                "gridPos.{k} of {}",
                p["title"]
            );
        }
    }
    for p in panels(d) {
        assert_eq!(p["datasource"]["type"], ds_type, "{}", p["title"]);
        assert!(
            !p["targets"].as_array().unwrap().is_empty(),
            "{} has no query",
            p["title"]
        );
    }
}

/// Double-quoted identifiers in `s`.
fn quoted(s: &str) -> Vec<String> {
    s.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// (measurement, fields, tags) of an InfluxQL SELECT.
fn parse_select(q: &str) -> (String, Vec<String>, Vec<String>) {
    assert!(q.starts_with("SELECT "), "{q}");
    let (select, rest) = q
        .split_once(" FROM ")
        .unwrap_or_else(|| panic!("no FROM: {q}"));
    let rest = rest.trim_start();
    assert!(rest.starts_with('"'), "measurement not quoted: {q}");
    let m = quoted(rest)[0].clone();
    let after = &rest[m.len() + 2..];
    (m, quoted(select), quoted(after))
}

#[test]
fn influxdb_dashboard_queries_name_what_the_sink_writes() {
    let d = load("hepflow-influxdb.json");
    structure(&d, "influxdb");
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    let mut n_queries = 0;
    for p in panels(&d) {
        for t in p["targets"].as_array().unwrap() {
            let q = t["query"].as_str().expect("raw InfluxQL query");
            assert_eq!(t["rawQuery"], true);
            n_queries += 1;
            let (m, fields, tags) = parse_select(q);
            let meas = schema::measurement(&m)
                .unwrap_or_else(|| panic!("{}: unknown measurement {m:?}", p["title"]));
            assert!(!fields.is_empty(), "{q}");
            for f in &fields {
                assert!(
                    meas.fields.contains(&f.as_str()),
                    "{q}: {m} has no field {f:?}"
                );
                used.insert((m.clone(), f.clone()));
            }
            for t in &tags {
                assert!(meas.tags.contains(&t.as_str()), "{q}: {m} has no tag {t:?}");
            }
            assert!(q.contains("$timeFilter"), "{q}");
            assert!(q.contains("GROUP BY time($__interval)"), "{q}");
        }
    }
    assert!(n_queries >= 10);
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]
            .as_str()
            .filter(|q| q.starts_with("SHOW TAG VALUES"))
        {
            let ids = quoted(q);
            let meas = schema::measurement(&ids[0]).expect("measurement");
            assert!(meas.tags.contains(&ids[1].as_str()), "{q}");
        }
    }
    // Every aggregate measurement and every field has a panel.
    for m in MEASUREMENTS
        .iter()
        .filter(|m| m.name != schema::HEP_PACKETS.name)
    {
        for f in m.fields.iter().filter(|f| **f != "mos_reports") {
            assert!(
                used.contains(&(m.name.to_string(), f.to_string())),
                "no panel shows {}.{f}",
                m.name
            );
        }
    }
}

/// Metric names (`hepflow_...`) and label names of a PromQL expression.
fn promql(expr: &str) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut labels = Vec::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if expr[i..].starts_with("hepflow_") {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |e| i + e);
            names.push(expr[i..end].to_string());
            i = end;
            continue;
        }
        i += 1;
    }
    // by (...) groupings
    for part in expr.split("by (").skip(1) {
        let inner = part.split(')').next().unwrap();
        labels.extend(inner.split(',').map(|s| s.trim().to_string()));
    }
    // {k="v", k2=~"..."} selectors
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

#[test]
fn prometheus_dashboard_queries_name_what_the_collector_exposes() {
    let d = load("hepflow-prometheus.json");
    structure(&d, "prometheus");
    let mut used = BTreeSet::new();
    for p in panels(&d) {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().expect("PromQL expr");
            let (names, labels) = promql(expr);
            assert!(!names.is_empty(), "{expr}");
            for n in &names {
                let allowed: Vec<&str> = if n == PROM_DECODE_ERRORS {
                    vec!["listener", "transport", "reason"]
                } else {
                    PROM_FAMILIES
                        .iter()
                        .find(|f| f.name == n)
                        .unwrap_or_else(|| panic!("{expr}: {n} is not exposed"))
                        .labels
                        .to_vec()
                };
                for l in &labels {
                    assert!(
                        allowed.contains(&l.as_str()),
                        "{expr}: {n} has no label {l:?}"
                    );
                }
                used.insert(n.clone());
            }
        }
    }
    for f in PROM_FAMILIES {
        assert!(used.contains(f.name), "no panel shows {}", f.name);
    }
    assert!(used.contains(PROM_DECODE_ERRORS));
}
