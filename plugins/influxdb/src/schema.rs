//! What the sink writes: every measurement with its tags and fields, and
//! every Prometheus series the collector exposes. One place, read by the
//! aggregator, the docs, and the test that checks the Grafana dashboards
//! (`deploy/grafana/`) only query series that exist.

/// A measurement the sink writes.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    /// Measurement name.
    pub name: &'static str,
    /// Tags every point carries (besides the optional tags of the `tags`
    /// key, where they apply, and the static `extra_tags`).
    pub tags: &'static [&'static str],
    /// Fields. RTCP fields are written only when the interval saw a value.
    pub fields: &'static [&'static str],
    /// Whether the optional tags (`tags = [...]`) are added.
    pub optional_tags: bool,
}

/// `hep_messages`: every HEP message, per interval.
pub const HEP_MESSAGES: Measurement = Measurement {
    name: "hep_messages",
    tags: &["node", "proto", "transport"],
    fields: &["count", "bytes"],
    optional_tags: true,
};

/// `sip_requests`: SIP requests by method, per interval.
pub const SIP_REQUESTS: Measurement = Measurement {
    name: "sip_requests",
    tags: &["method", "node"],
    fields: &["count"],
    optional_tags: true,
};

/// `sip_responses`: SIP responses by status code, class and CSeq method.
pub const SIP_RESPONSES: Measurement = Measurement {
    name: "sip_responses",
    tags: &["class", "code", "method", "node"],
    fields: &["count"],
    optional_tags: true,
};

/// `rtcp`: RTCP reports (HEP type 5, JSON) per interval.
pub const RTCP: Measurement = Measurement {
    name: "rtcp",
    tags: &["node"],
    fields: &[
        "reports",
        "report_blocks",
        "jitter_mean",
        "jitter_max",
        "packets_lost_max",
        "fraction_lost_mean",
        "fraction_lost_max",
        "mos_reports",
        "mos_mean",
        "mos_min",
    ],
    optional_tags: true,
};

/// `hep_decode_errors`: messages hepflow could not decode, by reason and
/// listener (read from the hub's `hepflow_decode_errors_total`).
pub const HEP_DECODE_ERRORS: Measurement = Measurement {
    name: "hep_decode_errors",
    tags: &["listener", "reason"],
    fields: &["count"],
    optional_tags: false,
};

/// `hep_packets`: one point per message, in `mode = "raw"` or `"both"`.
/// `method` is set for SIP requests, `code`, `class` and `method` (CSeq)
/// for SIP responses.
pub const HEP_PACKETS: Measurement = Measurement {
    name: "hep_packets",
    tags: &["class", "code", "method", "node", "proto", "transport"],
    fields: &[
        "bytes",
        "payload_bytes",
        "capture_id",
        "src_ip",
        "dst_ip",
        "src_port",
        "dst_port",
        "call_id",
        "cseq",
    ],
    optional_tags: true,
};

/// Every measurement.
pub const MEASUREMENTS: [Measurement; 6] = [
    HEP_MESSAGES,
    SIP_REQUESTS,
    SIP_RESPONSES,
    RTCP,
    HEP_DECODE_ERRORS,
    HEP_PACKETS,
];

/// The optional tags (`tags = [...]`).
pub const OPTIONAL_TAGS: [&str; 6] = [
    "listener",
    "capture_id",
    "hep_version",
    "src_net",
    "dst_net",
    "hepflow_node",
];

/// The tag value series beyond `max_series` are folded into.
pub const OVERFLOW_VALUE: &str = "_other";

/// A Prometheus series family the collector exposes.
#[derive(Debug, Clone, Copy)]
pub struct PromFamily {
    /// Metric name.
    pub name: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// Labels (besides the optional tags, which are added as labels too).
    pub labels: &'static [&'static str],
    /// Help text.
    pub help: &'static str,
}

const fn fam(
    name: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> PromFamily {
    PromFamily {
        name,
        kind,
        labels,
        help,
    }
}

/// Every Prometheus family of the aggregates. Counters are cumulative
/// since start; the RTCP gauges hold the values of the last completed
/// interval (a node without reports in that interval has none).
pub const PROM_FAMILIES: [PromFamily; 13] = [
    fam(
        "hepflow_hep_messages_total",
        "counter",
        &["node", "proto", "transport"],
        "HEP messages by protocol type, capture node and transport",
    ),
    fam(
        "hepflow_hep_bytes_total",
        "counter",
        &["node", "proto", "transport"],
        "Bytes of HEP messages by protocol type, capture node and transport",
    ),
    fam(
        "hepflow_sip_requests_total",
        "counter",
        &["method", "node"],
        "SIP requests by method and capture node",
    ),
    fam(
        "hepflow_sip_responses_total",
        "counter",
        &["class", "code", "method", "node"],
        "SIP responses by status code, class, CSeq method and capture node",
    ),
    fam(
        "hepflow_rtcp_reports_total",
        "counter",
        &["node"],
        "RTCP reports (HEP type 5) by capture node",
    ),
    fam(
        "hepflow_rtcp_report_blocks_total",
        "counter",
        &["node"],
        "RTCP report blocks by capture node",
    ),
    fam(
        "hepflow_rtcp_jitter_mean",
        "gauge",
        &["node"],
        "Mean interarrival jitter (RTP timestamp units) of the last interval",
    ),
    fam(
        "hepflow_rtcp_jitter_max",
        "gauge",
        &["node"],
        "Largest interarrival jitter (RTP timestamp units) of the last interval",
    ),
    fam(
        "hepflow_rtcp_packets_lost_max",
        "gauge",
        &["node"],
        "Largest cumulative packets-lost value reported in the last interval",
    ),
    fam(
        "hepflow_rtcp_fraction_lost_mean",
        "gauge",
        &["node"],
        "Mean fraction lost (0-1) of the last interval",
    ),
    fam(
        "hepflow_rtcp_fraction_lost_max",
        "gauge",
        &["node"],
        "Largest fraction lost (0-1) of the last interval",
    ),
    fam(
        "hepflow_rtcp_mos_mean",
        "gauge",
        &["node"],
        "Mean MOS of the last interval (reports that carry one)",
    ),
    fam(
        "hepflow_rtcp_mos_min",
        "gauge",
        &["node"],
        "Lowest MOS of the last interval (reports that carry one)",
    ),
];

/// The hub's own decode-error counter, the Prometheus twin of
/// `hep_decode_errors`.
pub const PROM_DECODE_ERRORS: &str = "hepflow_decode_errors_total";

/// Find a measurement by name.
pub fn measurement(name: &str) -> Option<&'static Measurement> {
    MEASUREMENTS.iter().find(|m| m.name == name)
}
