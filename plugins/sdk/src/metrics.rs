//! The metric registry behind hepflow's `/metrics` (Prometheus text) and
//! `/api/v1/stats` (JSON). Counters and gauges are atomics handed out once
//! and updated lock-free on the hot path; the registry's lock is taken only
//! when a series is created or the registry is rendered.
//!
//! Label values must be low-cardinality and must never carry secrets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing counter.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Add one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Add `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Set the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Add `n` (may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram with the fixed [`LATENCY_BUCKETS`].
#[derive(Clone, Debug, Default)]
pub struct Histogram(Arc<HistogramInner>);

#[derive(Debug, Default)]
struct HistogramInner {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.0.count.fetch_add(1, Ordering::Relaxed);
        self.0
            .sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

/// One rendered sample of a dynamic series, produced by a collector.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Metric name (with the `hepflow_` prefix).
    pub name: String,
    /// Help text.
    pub help: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// Labels, in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

type Collector = Box<dyn Fn(&mut Vec<Sample>) + Send + Sync>;
type Labels = Vec<(String, String)>;

enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

struct Family {
    help: &'static str,
    kind: &'static str,
    series: BTreeMap<Labels, Series>,
}

#[derive(Default)]
struct Inner {
    families: BTreeMap<String, Family>,
    collectors: Vec<Collector>,
}

/// The registry of every metric of one hepflow process.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
}

fn owned(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Registry {
    /// A new, empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn series<T>(
        &self,
        name: &str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Series,
        pick: impl Fn(&Series) -> Option<T>,
    ) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let family = inner
            .families
            .entry(name.to_string())
            .or_insert_with(|| Family {
                help,
                kind,
                series: BTreeMap::new(),
            });
        let series = family.series.entry(owned(labels)).or_insert_with(make);
        match pick(series) {
            Some(t) => t,
            None => panic!("metric {name} registered twice with different kinds"),
        }
    }

    /// The counter `name{labels}`, created at zero on first use.
    pub fn counter(&self, name: &str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
        self.series(
            name,
            help,
            "counter",
            labels,
            || Series::Counter(Counter::default()),
            |s| match s {
                Series::Counter(c) => Some(c.clone()),
                _ => None,
            },
        )
    }

    /// The gauge `name{labels}`, created at zero on first use.
    pub fn gauge(&self, name: &str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
        self.series(
            name,
            help,
            "gauge",
            labels,
            || Series::Gauge(Gauge::default()),
            |s| match s {
                Series::Gauge(g) => Some(g.clone()),
                _ => None,
            },
        )
    }

    /// The histogram `name{labels}` (seconds), created empty on first use.
    pub fn histogram(&self, name: &str, help: &'static str, labels: &[(&str, &str)]) -> Histogram {
        self.series(
            name,
            help,
            "histogram",
            labels,
            || Series::Histogram(Histogram::default()),
            |s| match s {
                Series::Histogram(h) => Some(h.clone()),
                _ => None,
            },
        )
    }

    /// Register a collector that adds dynamic series at render time (for
    /// example aggregates whose label values are only known at run time).
    pub fn register_collector(&self, f: impl Fn(&mut Vec<Sample>) + Send + Sync + 'static) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.collectors.push(Box::new(f));
    }

    /// Current value of a counter or gauge series, if it exists (for tests
    /// and for readiness logic).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let family = inner.families.get(name)?;
        match family.series.get(&owned(labels))? {
            Series::Counter(c) => Some(c.get() as f64),
            Series::Gauge(g) => Some(g.get() as f64),
            Series::Histogram(h) => Some(h.count() as f64),
        }
    }

    fn collected(inner: &Inner) -> Vec<Sample> {
        let mut samples = Vec::new();
        for c in &inner.collectors {
            c(&mut samples);
        }
        samples
    }

    /// Render every series in the Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(8192);
        for (name, family) in &inner.families {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            for (labels, series) in &family.series {
                match series {
                    Series::Counter(c) => {
                        write_sample(&mut out, name, labels, None, c.get() as f64)
                    }
                    Series::Gauge(g) => write_sample(&mut out, name, labels, None, g.get() as f64),
                    Series::Histogram(h) => write_histogram(&mut out, name, labels, h),
                }
            }
        }
        let mut samples = Self::collected(&inner);
        samples.sort_by(|a, b| a.name.cmp(&b.name).then(a.labels.cmp(&b.labels)));
        let mut last = String::new();
        for s in &samples {
            if s.name != last {
                let _ = writeln!(out, "# HELP {} {}", s.name, s.help);
                let _ = writeln!(out, "# TYPE {} {}", s.name, s.kind);
                last = s.name.clone();
            }
            write_sample(&mut out, &s.name, &s.labels, None, s.value);
        }
        out
    }

    /// Every series as JSON: `{"name": [{"labels": {..}, "value": v}, ..]}`.
    pub fn snapshot_json(&self) -> serde_json::Value {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut map = serde_json::Map::new();
        let series_json = |labels: &Labels, value: serde_json::Value| {
            let l: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            serde_json::json!({ "labels": l, "value": value })
        };
        for (name, family) in &inner.families {
            let list: Vec<serde_json::Value> = family
                .series
                .iter()
                .map(|(labels, s)| match s {
                    Series::Counter(c) => series_json(labels, c.get().into()),
                    Series::Gauge(g) => series_json(labels, g.get().into()),
                    Series::Histogram(h) => series_json(
                        labels,
                        serde_json::json!({
                            "count": h.count(),
                            "sum_seconds": h.0.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
                        }),
                    ),
                })
                .collect();
            map.insert(name.clone(), list.into());
        }
        for s in Self::collected(&inner) {
            let entry = map
                .entry(s.name.clone())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(list) = entry {
                list.push(series_json(&s.labels, serde_json::json!(s.value)));
            }
        }
        serde_json::Value::Object(map)
    }
}

fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_sample(
    out: &mut String,
    name: &str,
    labels: &Labels,
    extra: Option<(&str, &str)>,
    v: f64,
) {
    out.push_str(name);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        let mut first = true;
        for (k, val) in labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra)
        {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(k);
            out.push_str("=\"");
            escape_label(val, out);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {v}");
}

fn write_histogram(out: &mut String, name: &str, labels: &Labels, h: &Histogram) {
    let bucket = format!("{name}_bucket");
    for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
        let le = b.to_string();
        let v = h.0.buckets[i].load(Ordering::Relaxed) as f64;
        write_sample(out, &bucket, labels, Some(("le", &le)), v);
    }
    write_sample(out, &bucket, labels, Some(("le", "+Inf")), h.count() as f64);
    let sum = h.0.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
    write_sample(out, &format!("{name}_sum"), labels, None, sum);
    write_sample(
        out,
        &format!("{name}_count"),
        labels,
        None,
        h.count() as f64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_labels_and_escaping() {
        let r = Registry::new();
        let c = r.counter("hepflow_x_total", "x", &[("sink", "a\"b")]);
        c.add(3);
        r.counter("hepflow_x_total", "x", &[("sink", "a\"b")]).inc();
        let text = r.render_prometheus();
        assert!(
            text.contains("hepflow_x_total{sink=\"a\\\"b\"} 4"),
            "{text}"
        );
        assert_eq!(r.value("hepflow_x_total", &[("sink", "a\"b")]), Some(4.0));
    }

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let r = Registry::new();
        let h = r.histogram("hepflow_lat_seconds", "lat", &[]);
        h.observe(std::time::Duration::from_millis(3));
        let text = r.render_prometheus();
        assert!(
            text.contains("hepflow_lat_seconds_bucket{le=\"0.001\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("hepflow_lat_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("hepflow_lat_seconds_count 1"), "{text}");
    }

    #[test]
    fn collectors_add_dynamic_series() {
        let r = Registry::new();
        r.register_collector(|out| {
            out.push(Sample {
                name: "hepflow_dyn_total".into(),
                help: "d",
                kind: "counter",
                labels: vec![("code".into(), "200".into())],
                value: 7.0,
            })
        });
        assert!(r
            .render_prometheus()
            .contains("hepflow_dyn_total{code=\"200\"} 7"));
        let json = r.snapshot_json();
        assert_eq!(json["hepflow_dyn_total"][0]["value"], 7.0);
    }
}
