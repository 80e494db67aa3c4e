//! RTCP reports as HEP carries them (protocol type 5: one RTCP packet as a
//! JSON object, as written by captagent, heplify and rtpengine) and their
//! per-interval statistics.
//!
//! The fields read (others are ignored):
//!
//! ```json
//! {"type":200,"ssrc":451916597,"report_count":0,
//!  "sender_information":{"packets":106,"octets":16960,...},
//!  "report_blocks":[{"source_ssrc":898343773,"fraction_lost":0,
//!                    "packets_lost":0,"ia_jitter":1,"highest_seq_no":20881,
//!                    "lsr":-1097006646,"dlsr":7733}],
//!  "mos": 4.2}
//! ```
//!
//! - `ia_jitter`: interarrival jitter in RTP timestamp units, as reported.
//! - `packets_lost`: the cumulative number of packets lost (RFC 3550: since
//!   the start of reception), so the interval keeps its largest value.
//! - `fraction_lost`: RFC 3550's 8-bit fixed-point fraction; converted to a
//!   ratio 0-1 (value / 256).
//! - MOS: a top-level `mos` number when the agent sends one, else the HEP
//!   MOS chunk (0x20); a chunk value above 5 is read as MOS x 100 (a MOS is
//!   between 1 and 5).
//! - Jitter without report blocks: the HEP jitter chunk (0x23), if any.

use serde::Deserialize;

#[derive(Deserialize)]
struct Report {
    #[serde(default)]
    report_blocks: Vec<Block>,
    #[serde(default)]
    mos: Option<f64>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(default)]
    ia_jitter: Option<f64>,
    #[serde(default)]
    packets_lost: Option<f64>,
    #[serde(default)]
    fraction_lost: Option<f64>,
}

/// The statistics of one RTCP report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RtcpSample {
    /// Report blocks in it.
    pub blocks: u64,
    /// Jitter values (one per block, or the HEP chunk).
    pub jitters: Vec<f64>,
    /// Cumulative packets lost, per block.
    pub lost: Vec<f64>,
    /// Fraction lost (0-1), per block.
    pub fractions: Vec<f64>,
    /// MOS, if carried.
    pub mos: Option<f64>,
}

/// Parse one type-5 payload; the flag is false when it is not a JSON
/// object of the expected shape (the HEP chunks still give jitter and MOS
/// then).
pub fn parse(payload: &[u8], hep_mos: Option<u16>, hep_jitter: Option<u32>) -> (RtcpSample, bool) {
    let parsed: Option<Report> = serde_json::from_slice(payload).ok();
    let ok = parsed.is_some();
    let mut s = RtcpSample::default();
    if let Some(r) = parsed {
        s.blocks = r.report_blocks.len() as u64;
        for b in &r.report_blocks {
            if let Some(j) = b.ia_jitter.filter(|v| v.is_finite() && *v >= 0.0) {
                s.jitters.push(j);
            }
            if let Some(l) = b.packets_lost.filter(|v| v.is_finite()) {
                s.lost.push(l);
            }
            if let Some(f) = b.fraction_lost.filter(|v| v.is_finite() && *v >= 0.0) {
                s.fractions.push((f / 256.0).min(1.0));
            }
        }
        s.mos = r.mos.filter(|m| m.is_finite() && *m > 0.0);
    }
    if s.jitters.is_empty() {
        if let Some(j) = hep_jitter {
            s.jitters.push(j as f64);
        }
    }
    if s.mos.is_none() {
        s.mos = hep_mos
            .filter(|m| *m > 0)
            .map(|m| if m > 5 { m as f64 / 100.0 } else { m as f64 });
    }
    (s, ok)
}

/// RTCP statistics of one interval and tag set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RtcpAgg {
    /// Reports (type-5 messages).
    pub reports: u64,
    /// Report blocks.
    pub blocks: u64,
    jitter_sum: f64,
    jitter_n: u64,
    jitter_max: f64,
    lost_max: Option<f64>,
    frac_sum: f64,
    frac_n: u64,
    frac_max: f64,
    mos_sum: f64,
    mos_n: u64,
    mos_min: f64,
}

impl RtcpAgg {
    /// Count one report.
    pub fn add(&mut self, s: &RtcpSample) {
        self.reports += 1;
        self.blocks += s.blocks;
        for &j in &s.jitters {
            self.jitter_sum += j;
            self.jitter_n += 1;
            self.jitter_max = self.jitter_max.max(j);
        }
        for &l in &s.lost {
            self.lost_max = Some(self.lost_max.map_or(l, |m| m.max(l)));
        }
        for &f in &s.fractions {
            self.frac_sum += f;
            self.frac_n += 1;
            self.frac_max = self.frac_max.max(f);
        }
        if let Some(m) = s.mos {
            self.mos_min = if self.mos_n == 0 {
                m
            } else {
                self.mos_min.min(m)
            };
            self.mos_sum += m;
            self.mos_n += 1;
        }
    }

    /// The gauge values: (field name, value) for every statistic the
    /// interval saw, in [`crate::schema::RTCP`] field order, counts
    /// excluded.
    pub fn stats(&self) -> Vec<(&'static str, f64)> {
        let mut v = Vec::with_capacity(7);
        if self.jitter_n > 0 {
            v.push(("jitter_mean", self.jitter_sum / self.jitter_n as f64));
            v.push(("jitter_max", self.jitter_max));
        }
        if let Some(l) = self.lost_max {
            v.push(("packets_lost_max", l));
        }
        if self.frac_n > 0 {
            v.push(("fraction_lost_mean", self.frac_sum / self.frac_n as f64));
            v.push(("fraction_lost_max", self.frac_max));
        }
        if self.mos_n > 0 {
            v.push(("mos_mean", self.mos_sum / self.mos_n as f64));
            v.push(("mos_min", self.mos_min));
        }
        v
    }

    /// Reports that carried a MOS.
    pub fn mos_reports(&self) -> u64 {
        self.mos_n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"sender_information":{"ntp_timestamp_sec":3650797214,"packets":106,"ntp_timestamp_usec":13217348104192,"octets":16960,"rtp_timestamp":16960},"ssrc":451916597,"type":200,"report_blocks":[{"source_ssrc":898343773,"highest_seq_no":20881,"fraction_lost":0,"ia_jitter":1,"packets_lost":0,"lsr":-1097006646,"dlsr":7733}],"report_count":0}"#;

    #[test]
    fn the_wireshark_sample_report() {
        let (s, ok) = parse(SAMPLE.as_bytes(), None, None);
        assert!(ok);
        assert_eq!(s.blocks, 1);
        assert_eq!(s.jitters, vec![1.0]);
        assert_eq!(s.lost, vec![0.0]);
        assert_eq!(s.fractions, vec![0.0]);
        assert_eq!(s.mos, None);
    }

    #[test]
    fn aggregates_means_maxima_and_mos() {
        let mut a = RtcpAgg::default();
        let r1 = r#"{"report_blocks":[{"ia_jitter":10,"packets_lost":5,"fraction_lost":128}],"mos":4.0}"#;
        let r2 = r#"{"report_blocks":[{"ia_jitter":30,"packets_lost":2,"fraction_lost":0},{"ia_jitter":20}]}"#;
        a.add(&parse(r1.as_bytes(), None, None).0);
        a.add(&parse(r2.as_bytes(), Some(350), None).0);
        assert_eq!(a.reports, 2);
        assert_eq!(a.blocks, 3);
        let stats: std::collections::HashMap<_, _> = a.stats().into_iter().collect();
        assert_eq!(stats["jitter_mean"], 20.0);
        assert_eq!(stats["jitter_max"], 30.0);
        assert_eq!(stats["packets_lost_max"], 5.0);
        assert_eq!(stats["fraction_lost_mean"], 0.25);
        assert_eq!(stats["fraction_lost_max"], 0.5);
        assert_eq!(stats["mos_mean"], 3.75);
        assert_eq!(stats["mos_min"], 3.5);
        assert_eq!(a.mos_reports(), 2);
    }

    #[test]
    fn garbage_is_counted_as_a_report_without_statistics() {
        let (s, ok) = parse(b"\x00not json", None, Some(7));
        assert!(!ok);
        assert_eq!(s.blocks, 0);
        assert_eq!(s.jitters, vec![7.0]);
    }
}
