//! The delivery vocabulary every queue and retry loop of hepflow shares:
//! one capped, jittered exponential backoff ([`backoff_delay`],
//! [`Backoff`]), one when-full policy ([`WhenFull`]) and one retry
//! section (`retry.initial_backoff`, `retry.max_backoff`:
//! [`RetryConfig`]). The engine's sink queues, the HEP forward sink's
//! target queues and reconnects, the InfluxDB sink's pending points and
//! the Elasticsearch sink's node and item retries all use these, so the
//! same words mean the same thing in every section of the config.

use rand::Rng;
use serde::Deserialize;
use std::time::Duration;

/// The delay before retry number `attempt` (0 for the first retry):
/// `initial` doubled per attempt, capped at `max`, then jittered to a
/// random 50-100 % of that (so that many clients retrying after one
/// outage do not retry in step).
pub fn backoff_delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempt.min(20));
    exp.min(max).mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// A retry loop's backoff state: [`Backoff::next_delay`] after each
/// failure, [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays from `initial`, doubling, capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// From a `[... .retry]` section.
    pub fn from_config(c: &RetryConfig) -> Self {
        Self::new(c.initial_backoff, c.max_backoff)
    }

    /// The delay before the next try (and count the failure).
    pub fn next_delay(&mut self) -> Duration {
        let d = backoff_delay(self.attempt, self.initial, self.max);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.attempt
    }

    /// A success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// What a bounded queue does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: backpressure into whoever pushes (a UDP receive loop
    /// that waits leaves datagrams to the kernel buffer, a TCP connection
    /// stops being read). Lossless for this queue, but it slows every
    /// queue fed by the same producer while it waits.
    Block,
    /// Drop the new messages and count them.
    DropNewest,
    /// Drop the oldest queued messages to make room for the new ones, and
    /// count them.
    DropOldest,
}

impl WhenFull {
    /// The config spelling (`block`, `drop_newest`, `drop_oldest`).
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::Block => "block",
            WhenFull::DropNewest => "drop_newest",
            WhenFull::DropOldest => "drop_oldest",
        }
    }

    /// For queues that support only some policies: an error naming the
    /// key `path` when `self` is not one of `supported`.
    pub fn check_supported(self, path: &str, supported: &[WhenFull]) -> Option<String> {
        (!supported.contains(&self)).then(|| {
            let names: Vec<String> = supported
                .iter()
                .map(|w| format!("\"{}\"", w.as_str()))
                .collect();
            format!(
                "{path}: \"{}\" is not supported here; use {}",
                self.as_str(),
                names.join(" or ")
            )
        })
    }
}

/// `[... .retry]`: backoff for retryable failures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First delay.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Cap of the exponential delay (each delay is jittered to 50-100 %).
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryConfig {
    /// The timing of a plugin's own retry loop (reconnects, background
    /// writes): the sink's `[sinks.NAME.retry]` when the config sets it
    /// ([`crate::sink::SinkContext::retry`]), else the plugin's older
    /// keys where set (`legacy`: initial, max; deprecated), else
    /// `default`. Logs a warning naming the keys when older keys are
    /// used or shadowed.
    pub fn for_plugin(
        section: Option<&RetryConfig>,
        path: &str,
        legacy: [(&str, Option<Duration>); 2],
        default: RetryConfig,
    ) -> RetryConfig {
        let set: Vec<&str> = legacy
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
        if let Some(s) = section {
            if !set.is_empty() {
                tracing::warn!(
                    "{path}: {} ignored: [{path}.retry] is set and governs every retry of the sink; remove them",
                    set.join(", ")
                );
            }
            return s.clone();
        }
        if !set.is_empty() {
            tracing::warn!(
                "{path}: {} are deprecated: write [{path}.retry] initial_backoff and max_backoff instead",
                set.join(", ")
            );
        }
        RetryConfig {
            initial_backoff: legacy[0].1.unwrap_or(default.initial_backoff),
            max_backoff: legacy[1].1.unwrap_or(default.max_backoff),
        }
    }

    /// The problem with the values, if any, naming `path`.
    pub fn check(&self, path: &str) -> Option<String> {
        (self.initial_backoff.is_zero() || self.max_backoff < self.initial_backoff).then(|| {
            format!(
                "{path}: initial_backoff must be above 0 and max_backoff at least initial_backoff"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_takes_the_retry_section_then_its_older_keys_then_its_default() {
        let ms = Duration::from_millis;
        let default = RetryConfig {
            initial_backoff: ms(100),
            max_backoff: ms(10_000),
        };
        let section = RetryConfig {
            initial_backoff: ms(50),
            max_backoff: ms(300),
        };
        let legacy = [("a", Some(ms(7))), ("b", None)];
        let r = RetryConfig::for_plugin(Some(&section), "sinks.x", legacy, default.clone());
        assert_eq!((r.initial_backoff, r.max_backoff), (ms(50), ms(300)));
        let r = RetryConfig::for_plugin(None, "sinks.x", legacy, default.clone());
        assert_eq!((r.initial_backoff, r.max_backoff), (ms(7), ms(10_000)));
        let r = RetryConfig::for_plugin(None, "sinks.x", [("a", None), ("b", None)], default);
        assert_eq!((r.initial_backoff, r.max_backoff), (ms(100), ms(10_000)));
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let i = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in 0..40 {
            let d = backoff_delay(attempt, i, max);
            let exp = i.saturating_mul(1 << attempt.min(20)).min(max);
            assert!(d <= exp, "attempt {attempt}: {d:?} > {exp:?}");
            assert!(d >= exp / 2, "attempt {attempt}: {d:?} < half of {exp:?}");
        }
        let mut b = Backoff::new(i, max);
        let first = b.next_delay();
        assert!(first <= i && first >= i / 2);
        for _ in 0..10 {
            b.next_delay();
        }
        assert_eq!(b.failures(), 11);
        b.reset();
        assert!(b.next_delay() <= i);
    }

    #[test]
    fn unsupported_policies_are_named_with_what_to_use() {
        assert_eq!(
            WhenFull::Block.check_supported(
                "sinks.m.when_pending_full",
                &[WhenFull::DropOldest, WhenFull::DropNewest]
            ),
            Some("sinks.m.when_pending_full: \"block\" is not supported here; use \"drop_oldest\" or \"drop_newest\"".into())
        );
        assert_eq!(
            WhenFull::DropNewest.check_supported("x", &[WhenFull::DropNewest]),
            None
        );
    }
}
