//! Aggregation of events into per-interval counters, and their encoding
//! as line protocol points; optionally one raw point per message.
//!
//! Every event is bucketed by the time hepflow received it into the
//! interval `[start, start + interval)`, `start` aligned to a multiple of
//! the interval since the Unix epoch. A bucket holds, per measurement, a
//! map from tag set to counters; a tag set is kept as one string (the tag
//! values joined by U+001F, which sanitized values never contain), so a
//! lookup of an existing series does not allocate.
//!
//! A bucket is emitted (encoded as points stamped with its START, in
//! nanoseconds) once `start + interval + lateness` has passed; an event
//! that arrives for an interval already emitted is counted in the oldest
//! interval still open, so a series never gets two points with the same
//! timestamp (which InfluxDB would merge, overwriting the first).
//!
//! Bounded: at most `max_series` tag sets per measurement per bucket
//! (further ones are folded into the tag set whose values are all
//! `"_other"`, and counted), tag values are cut to
//! [`MAX_TAG_VALUE_BYTES`], SIP methods outside the standard set become
//! `"other"`, and the number of open buckets is bounded by
//! `lateness / interval + 2` (events stamped in the future count in the
//! current interval).

use crate::config::{Mode, OptionalTag};
use crate::line::{encode_point, FieldValue, Point};
use crate::prom::PromState;
use crate::rtcp::{self, RtcpAgg};
use crate::schema::{self, Measurement};
use crate::series::{CountBytes, SeriesMap, SEP};
use hepflow_sdk::hep::proto_type;
use hepflow_sdk::metrics::{Counter, Registry};
use hepflow_sdk::sip::SipStart;
use hepflow_sdk::Event;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest tag value (bytes, cut at a character boundary).
pub const MAX_TAG_VALUE_BYTES: usize = 128;

/// Longest string field of a raw point (bytes).
pub const MAX_STRING_FIELD_BYTES: usize = 1024;

/// SIP methods kept as tag values; any other becomes `"other"`.
pub const SIP_METHODS: [&str; 14] = [
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// A SIP method as a tag value.
pub fn method_tag(m: Option<&str>) -> &'static str {
    match m {
        Some(m) => SIP_METHODS
            .iter()
            .find(|k| k.eq_ignore_ascii_case(m))
            .copied()
            .unwrap_or("other"),
        None => "other",
    }
}

/// The class of a status code (`"2xx"`).
pub fn status_class(code: u16) -> &'static str {
    match code / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        6 => "6xx",
        _ => "other",
    }
}

/// Append `v` to `out` as a tag value: control characters become spaces,
/// cut at [`MAX_TAG_VALUE_BYTES`].
pub(crate) fn push_tag_value(out: &mut String, v: &str) {
    let mut n = 0;
    for c in v.chars() {
        n += c.len_utf8();
        if n > MAX_TAG_VALUE_BYTES {
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
}

/// Nanoseconds since the Unix epoch.
pub fn unix_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Settings of the aggregator (from the config).
#[derive(Debug, Clone)]
pub struct AggSettings {
    /// Interval, ns.
    pub interval_ns: i64,
    /// Lateness, ns.
    pub lateness_ns: i64,
    /// What to write.
    pub mode: Mode,
    /// Optional tags, in config order.
    pub optional: Vec<OptionalTag>,
    /// IPv4 prefix of the network tags.
    pub prefix_v4: u8,
    /// IPv6 prefix of the network tags.
    pub prefix_v6: u8,
    /// Static tags of every point.
    pub extra_tags: Vec<(String, String)>,
    /// Series bound per measurement and bucket.
    pub max_series: usize,
    /// This hepflow's node name.
    pub hepflow_node: String,
}

/// Where a tag's value comes from.
#[derive(Debug, Clone)]
enum Source {
    Part(usize),
    Static(String),
}

/// The tags of one measurement in sorted key order.
#[derive(Debug, Clone)]
struct Layout {
    tags: Vec<(String, Source)>,
}

impl Layout {
    fn new(m: &Measurement, optional: &[OptionalTag], extra: &[(String, String)]) -> Self {
        let mut tags: Vec<(String, Source)> = m
            .tags
            .iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), Source::Part(i)))
            .collect();
        if m.optional_tags {
            for (j, t) in optional.iter().enumerate() {
                tags.push((t.key().to_string(), Source::Part(m.tags.len() + j)));
            }
        }
        for (k, v) in extra {
            tags.push((k.clone(), Source::Static(v.clone())));
        }
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        Layout { tags }
    }

    fn resolve<'a>(&'a self, parts: &[&'a str]) -> Vec<(&'a str, &'a str)> {
        self.tags
            .iter()
            .map(|(k, s)| {
                let v = match s {
                    Source::Part(i) => parts.get(*i).copied().unwrap_or(""),
                    Source::Static(v) => v.as_str(),
                };
                (k.as_str(), v)
            })
            .collect()
    }
}

#[derive(Debug)]
struct Bucket {
    hep: SeriesMap<CountBytes>,
    req: SeriesMap<u64>,
    resp: SeriesMap<u64>,
    rtcp: SeriesMap<RtcpAgg>,
}

/// Overflow counters per measurement.
struct Overflow {
    hep: Counter,
    req: Counter,
    resp: Counter,
    rtcp: Counter,
}

/// Plugin counters the aggregator updates.
#[derive(Clone)]
pub struct AggCounters {
    /// RTCP payloads that were not the expected JSON.
    pub rtcp_unparsed: Counter,
    /// Points that could not be encoded (every field NaN, ...).
    pub unencodable: Counter,
}

/// The per-message values every measurement's tags come from.
#[derive(Default)]
struct Dims {
    node: String,
    proto: String,
    optional: Vec<String>,
}

/// The aggregator of one sink.
pub struct Aggregator {
    s: AggSettings,
    buckets: BTreeMap<i64, Bucket>,
    /// End of the last emitted bucket: events before it go to the oldest
    /// open bucket.
    emitted_until: i64,
    layouts: [Layout; 6],
    overflow: Overflow,
    counters: AggCounters,
    prom: Option<Arc<Mutex<PromState>>>,
    dims: Dims,
    key: String,
    raw_seq: u64,
    decode_last: HashMap<(String, String), u64>,
    decode_next: Option<i64>,
}

fn overflow_counter(r: &Registry, sink: &str, m: &str) -> Counter {
    r.counter(
        "hepflow_influxdb_series_overflow_total",
        "Messages counted under the \"_other\" tag set because max_series was reached",
        &[("sink", sink), ("measurement", m)],
    )
}

impl Aggregator {
    /// A new aggregator. `prom`: the Prometheus state to update too.
    pub fn new(
        s: AggSettings,
        registry: &Registry,
        sink: &str,
        counters: AggCounters,
        prom: Option<Arc<Mutex<PromState>>>,
    ) -> Self {
        let layouts = schema::MEASUREMENTS.map(|m| Layout::new(&m, &s.optional, &s.extra_tags));
        let overflow = Overflow {
            hep: overflow_counter(registry, sink, schema::HEP_MESSAGES.name),
            req: overflow_counter(registry, sink, schema::SIP_REQUESTS.name),
            resp: overflow_counter(registry, sink, schema::SIP_RESPONSES.name),
            rtcp: overflow_counter(registry, sink, schema::RTCP.name),
        };
        let n_opt = s.optional.len();
        Aggregator {
            dims: Dims {
                optional: vec![String::new(); n_opt],
                ..Dims::default()
            },
            s,
            buckets: BTreeMap::new(),
            emitted_until: i64::MIN,
            layouts,
            overflow,
            counters,
            prom,
            key: String::with_capacity(128),
            raw_seq: 0,
            decode_last: HashMap::new(),
            decode_next: None,
        }
    }

    fn align(&self, t: i64) -> i64 {
        t - t.rem_euclid(self.s.interval_ns)
    }

    fn new_bucket(&self) -> Bucket {
        let n = self.s.optional.len();
        let cap = self.s.max_series;
        Bucket {
            hep: SeriesMap::new(cap, schema::HEP_MESSAGES.tags.len() + n),
            req: SeriesMap::new(cap, schema::SIP_REQUESTS.tags.len() + n),
            resp: SeriesMap::new(cap, schema::SIP_RESPONSES.tags.len() + n),
            rtcp: SeriesMap::new(cap, schema::RTCP.tags.len() + n),
        }
    }

    /// Number of open (not yet emitted) intervals.
    pub fn open_buckets(&self) -> usize {
        self.buckets.len()
    }

    fn fill_dims(&mut self, ev: &Event) {
        let hep = ev.hep();
        let d = &mut self.dims;
        d.node.clear();
        if let Some(n) = hep.node_name.as_deref() {
            push_tag_value(&mut d.node, &String::from_utf8_lossy(n));
        }
        if d.node.trim().is_empty() {
            d.node.clear();
            let _ = write!(d.node, "{}", hep.capture_id);
        }
        d.proto.clear();
        match hep.proto_name() {
            Some(p) => d.proto.push_str(p),
            None => {
                let _ = write!(d.proto, "{}", hep.proto_type);
            }
        }
        for (i, t) in self.s.optional.iter().enumerate() {
            let v = &mut d.optional[i];
            v.clear();
            match t {
                OptionalTag::Listener => push_tag_value(v, &ev.meta().listener),
                OptionalTag::CaptureId => {
                    let _ = write!(v, "{}", hep.capture_id);
                }
                OptionalTag::HepVersion => {
                    let _ = write!(v, "{}", hep.version.number());
                }
                OptionalTag::SrcNet => write_net(v, hep.src_ip, self.s.prefix_v4, self.s.prefix_v6),
                OptionalTag::DstNet => write_net(v, hep.dst_ip, self.s.prefix_v4, self.s.prefix_v6),
                OptionalTag::HepflowNode => push_tag_value(v, &self.s.hepflow_node),
            }
        }
    }

    /// Build the series key from `parts` followed by the optional values.
    fn make_key(key: &mut String, parts: &[&str], optional: &[String]) {
        key.clear();
        let mut first = true;
        for p in parts
            .iter()
            .copied()
            .chain(optional.iter().map(|s| s.as_str()))
        {
            if !first {
                key.push(SEP);
            }
            first = false;
            key.push_str(p);
        }
    }

    /// Count a batch; raw points (mode raw/both) are appended to `out`.
    pub fn ingest(&mut self, batch: &[Event], now_ns: i64, out: &mut Vec<String>) {
        let prom = self.prom.clone();
        let mut prom_guard = prom
            .as_ref()
            .map(|p| p.lock().unwrap_or_else(|e| e.into_inner()));
        let now_start = self.align(now_ns);
        for ev in batch {
            self.fill_dims(ev);
            if self.s.mode.raw() {
                self.raw_point(ev, out);
            }
            let aggregate = self.s.mode.aggregates();
            if !aggregate && prom_guard.is_none() {
                continue;
            }
            let mut start = self.align(unix_ns(ev.meta().received_at)).min(now_start);
            if start < self.emitted_until {
                start = self
                    .buckets
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(self.emitted_until);
            }
            if aggregate && !self.buckets.contains_key(&start) {
                let b = self.new_bucket();
                self.buckets.insert(start, b);
            }
            let hep = ev.hep();
            let bytes = ev.raw().len() as u64;
            let Aggregator {
                buckets,
                dims,
                key,
                overflow,
                counters,
                ..
            } = self;
            let mut bucket = if aggregate {
                buckets.get_mut(&start)
            } else {
                None
            };
            let mut prom = prom_guard.as_deref_mut();

            // hep_messages
            let transport = ev.meta().transport.as_str();
            Self::make_key(key, &[&dims.node, &dims.proto, transport], &dims.optional);
            if let Some(b) = bucket.as_deref_mut() {
                let e = b.hep.entry(key, &overflow.hep);
                e.count += 1;
                e.bytes += bytes;
            }
            if let Some(p) = prom.as_deref_mut() {
                p.add_hep(key, bytes);
            }

            match hep.proto_type {
                proto_type::SIP => {
                    let Some(sip) = ev.sip() else { continue };
                    match &sip.start {
                        SipStart::Request { method, .. } => {
                            let m = method_tag(Some(method.as_str()));
                            Self::make_key(key, &[m, &dims.node], &dims.optional);
                            if let Some(b) = bucket.as_deref_mut() {
                                *b.req.entry(key, &overflow.req) += 1;
                            }
                            if let Some(p) = prom.as_deref_mut() {
                                p.add_request(key);
                            }
                        }
                        SipStart::Response { status, .. } => {
                            let m = method_tag(sip.cseq_method.as_deref());
                            let mut code = [0u8; 8];
                            let code = fmt_u16(*status, &mut code);
                            let class = status_class(*status);
                            Self::make_key(key, &[class, code, m, &dims.node], &dims.optional);
                            if let Some(b) = bucket.as_deref_mut() {
                                *b.resp.entry(key, &overflow.resp) += 1;
                            }
                            if let Some(p) = prom.as_deref_mut() {
                                p.add_response(key);
                            }
                        }
                    }
                }
                proto_type::RTCP_JSON => {
                    let (sample, ok) = rtcp::parse(&hep.payload, hep.mos, hep.jitter);
                    if !ok {
                        counters.rtcp_unparsed.inc();
                    }
                    Self::make_key(key, &[&dims.node], &dims.optional);
                    if let Some(b) = bucket {
                        b.rtcp.entry(key, &overflow.rtcp).add(&sample);
                    }
                    if let Some(p) = prom {
                        p.add_rtcp(key, sample.blocks);
                    }
                }
                _ => {}
            }
        }
    }

    /// One `hep_packets` point.
    fn raw_point(&mut self, ev: &Event, out: &mut Vec<String>) {
        let hep = ev.hep();
        // Capture time when the agent sent one, else receive time; the
        // nanosecond digits (below the microsecond HEP carries) hold a
        // sequence number so that two messages of one microsecond do not
        // overwrite each other.
        let base = if hep.ts_sec != 0 {
            hep.ts_sec as i64 * 1_000_000_000 + (hep.ts_usec.min(999_999) as i64) * 1000
        } else {
            let t = unix_ns(ev.meta().received_at);
            t - t.rem_euclid(1000)
        };
        self.raw_seq = self.raw_seq.wrapping_add(1);
        let ts = base + (self.raw_seq % 1000) as i64;

        let (mut method, mut code_s, mut class) = ("", String::new(), "");
        let mut call_id = None;
        let mut cseq = None;
        if let Some(sip) = ev.sip() {
            match &sip.start {
                SipStart::Request { method: m, .. } => method = method_tag(Some(m.as_str())),
                SipStart::Response { status, .. } => {
                    method = method_tag(sip.cseq_method.as_deref());
                    code_s = status.to_string();
                    class = status_class(*status);
                }
            }
            call_id = sip
                .call_id
                .as_deref()
                .map(|c| cut(c, MAX_STRING_FIELD_BYTES));
            cseq = sip.cseq_num;
        }
        let transport = ev.meta().transport.as_str();
        let d = &self.dims;
        let mut parts: Vec<&str> = vec![class, &code_s, method, &d.node, &d.proto, transport];
        parts.extend(d.optional.iter().map(|s| s.as_str()));
        let tags = self.layouts[5].resolve(&parts);
        let src = hep.src_ip.to_string();
        let dst = hep.dst_ip.to_string();
        let mut fields: Vec<(&str, FieldValue<'_>)> = vec![
            ("bytes", FieldValue::Int(ev.raw().len() as i64)),
            ("payload_bytes", FieldValue::Int(hep.payload.len() as i64)),
            ("capture_id", FieldValue::Int(hep.capture_id as i64)),
            ("src_ip", FieldValue::Str(&src)),
            ("dst_ip", FieldValue::Str(&dst)),
            ("src_port", FieldValue::Int(hep.src_port as i64)),
            ("dst_port", FieldValue::Int(hep.dst_port as i64)),
        ];
        if let Some(c) = call_id {
            fields.push(("call_id", FieldValue::Str(c)));
        }
        if let Some(n) = cseq {
            fields.push(("cseq", FieldValue::Int(n as i64)));
        }
        let mut line = String::with_capacity(256);
        match encode_point(
            &mut line,
            &Point {
                measurement: schema::HEP_PACKETS.name,
                tags: &tags,
                fields: &fields,
                timestamp_ns: Some(ts),
            },
        ) {
            Ok(()) => out.push(line),
            Err(_) => self.counters.unencodable.inc(),
        }
    }

    /// Emit every bucket that is due at `now_ns` (all of them when
    /// `all`), appending its points to `out`. Returns how many buckets
    /// were emitted.
    pub fn emit_due(&mut self, now_ns: i64, all: bool, out: &mut Vec<String>) -> usize {
        let mut n = 0;
        while let Some((&start, _)) = self.buckets.first_key_value() {
            let end = start.saturating_add(self.s.interval_ns);
            if !all && end.saturating_add(self.s.lateness_ns) > now_ns {
                break;
            }
            let Some((_, b)) = self.buckets.pop_first() else {
                break;
            };
            self.emit_bucket(start, &b, out);
            self.emitted_until = self.emitted_until.max(end);
            n += 1;
            if let Some(p) = &self.prom {
                let mut gauges = HashMap::with_capacity(b.rtcp.len());
                for (k, agg) in b.rtcp.iter() {
                    gauges.insert(Box::<str>::from(k), agg.stats());
                }
                p.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .set_rtcp_gauges(gauges);
            }
        }
        n
    }

    fn push_point(
        &self,
        out: &mut Vec<String>,
        m: usize,
        key: &str,
        fields: &[(&str, FieldValue<'_>)],
        ts: i64,
    ) {
        let parts: Vec<&str> = key.split(SEP).collect();
        let tags = self.layouts[m].resolve(&parts);
        let mut line = String::with_capacity(160);
        match encode_point(
            &mut line,
            &Point {
                measurement: schema::MEASUREMENTS[m].name,
                tags: &tags,
                fields,
                timestamp_ns: Some(ts),
            },
        ) {
            Ok(()) => out.push(line),
            Err(_) => self.counters.unencodable.inc(),
        }
    }

    fn emit_bucket(&self, ts: i64, b: &Bucket, out: &mut Vec<String>) {
        for (k, v) in b.hep.iter() {
            let f = [
                ("count", FieldValue::Int(v.count as i64)),
                ("bytes", FieldValue::Int(v.bytes as i64)),
            ];
            self.push_point(out, 0, k, &f, ts);
        }
        for (k, v) in b.req.iter() {
            self.push_point(out, 1, k, &[("count", FieldValue::Int(*v as i64))], ts);
        }
        for (k, v) in b.resp.iter() {
            self.push_point(out, 2, k, &[("count", FieldValue::Int(*v as i64))], ts);
        }
        for (k, a) in b.rtcp.iter() {
            let mut f = vec![
                ("reports", FieldValue::Int(a.reports as i64)),
                ("report_blocks", FieldValue::Int(a.blocks as i64)),
            ];
            if a.mos_reports() > 0 {
                f.push(("mos_reports", FieldValue::Int(a.mos_reports() as i64)));
            }
            for (name, v) in a.stats() {
                f.push((name, FieldValue::Float(v)));
            }
            self.push_point(out, 3, k, &f, ts);
        }
    }

    /// When the decode-error totals should be read next: `Some(stamp)`
    /// (the start of the interval that just completed) once per interval.
    pub fn decode_errors_due(&mut self, now_ns: i64) -> Option<i64> {
        let cur = self.align(now_ns - self.s.lateness_ns);
        match self.decode_next {
            None => {
                self.decode_next = Some(cur + self.s.interval_ns);
                None
            }
            Some(next) if cur >= next => {
                self.decode_next = Some(cur + self.s.interval_ns);
                Some(cur - self.s.interval_ns)
            }
            Some(_) => None,
        }
    }

    /// `hep_decode_errors` points from the hub's cumulative
    /// `hepflow_decode_errors_total` values (listener, reason, total):
    /// the increase since the last call, summed over transports.
    pub fn decode_errors(
        &mut self,
        totals: &[(String, String, u64)],
        ts: i64,
        out: &mut Vec<String>,
    ) {
        let mut sums: BTreeMap<(String, String), u64> = BTreeMap::new();
        for (l, r, v) in totals {
            *sums.entry((l.clone(), r.clone())).or_default() += v;
        }
        for ((l, r), total) in sums {
            let last = self
                .decode_last
                .get(&(l.clone(), r.clone()))
                .copied()
                .unwrap_or(0);
            let delta = total.saturating_sub(last);
            if delta > 0 {
                let mut lv = String::new();
                push_tag_value(&mut lv, &l);
                let key = format!("{lv}{SEP}{r}");
                self.push_point(
                    out,
                    4,
                    &key,
                    &[("count", FieldValue::Int(delta as i64))],
                    ts,
                );
            }
            self.decode_last.insert((l, r), total);
        }
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

fn fmt_u16(v: u16, buf: &mut [u8; 8]) -> &str {
    let mut n = v;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

fn write_net(out: &mut String, ip: IpAddr, p4: u8, p6: u8) {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = if p4 == 0 {
                0
            } else {
                u32::MAX << (32 - p4 as u32)
            };
            let _ = write!(out, "{}/{p4}", std::net::Ipv4Addr::from(bits & mask));
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = if p6 == 0 {
                0
            } else {
                u128::MAX << (128 - p6 as u32)
            };
            let _ = write!(out, "{}/{p6}", std::net::Ipv6Addr::from(bits & mask));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_masked() {
        let mut s = String::new();
        write_net(&mut s, "10.1.2.3".parse().unwrap(), 24, 64);
        assert_eq!(s, "10.1.2.0/24");
        s.clear();
        write_net(&mut s, "2001:db8:1:2:3::1".parse().unwrap(), 24, 48);
        assert_eq!(s, "2001:db8:1::/48");
        s.clear();
        write_net(&mut s, "10.1.2.3".parse().unwrap(), 0, 0);
        assert_eq!(s, "0.0.0.0/0");
    }

    #[test]
    fn methods_and_classes() {
        assert_eq!(method_tag(Some("invite")), "INVITE");
        assert_eq!(method_tag(Some("FOO")), "other");
        assert_eq!(status_class(183), "1xx");
        assert_eq!(status_class(603), "6xx");
        let mut b = [0u8; 8];
        assert_eq!(fmt_u16(407, &mut b), "407");
        assert_eq!(fmt_u16(0, &mut b), "0");
    }

    #[test]
    fn tag_values_are_cut_and_cleaned() {
        let mut s = String::new();
        push_tag_value(&mut s, &format!("a\u{1f}b\n{}", "é".repeat(100)));
        assert!(s.len() <= MAX_TAG_VALUE_BYTES);
        assert!(s.starts_with("a b "));
        assert!(!s.contains(SEP));
    }
}
