//! The series container the aggregator and the Prometheus export share: a
//! map from series key (tag values joined by [`SEP`]) to a value, bounded
//! in series, folding what passes the bound into one overflow series.

use crate::schema::OVERFLOW_VALUE;
use hepflow_sdk::metrics::Counter;
use std::collections::HashMap;

/// Separator of tag values inside a series key.
pub(crate) const SEP: char = '\u{1f}';

/// A map from series key to value with a bound on the number of series.
#[derive(Debug, Clone)]
pub(crate) struct SeriesMap<V> {
    map: HashMap<Box<str>, V>,
    cap: usize,
    overflow_key: Box<str>,
}

impl<V: Default> SeriesMap<V> {
    pub(crate) fn new(cap: usize, parts: usize) -> Self {
        let overflow_key = vec![OVERFLOW_VALUE; parts.max(1)].join(&SEP.to_string());
        SeriesMap {
            map: HashMap::new(),
            cap,
            overflow_key: overflow_key.into(),
        }
    }

    /// The value of `key`, created at default; beyond the bound, the
    /// overflow series' (and `overflow` counts it).
    pub(crate) fn entry(&mut self, key: &str, overflow: &Counter) -> &mut V {
        if self.map.contains_key(key) {
            return self
                .map
                .get_mut(key)
                .unwrap_or_else(|| unreachable!("checked above"));
        }
        if self.map.len() < self.cap {
            return self.map.entry(key.into()).or_default();
        }
        overflow.inc();
        if self.map.contains_key(&self.overflow_key) {
            return self
                .map
                .get_mut(&self.overflow_key)
                .unwrap_or_else(|| unreachable!("checked above"));
        }
        self.map.entry(self.overflow_key.clone()).or_default()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.map.iter().map(|(k, v)| (&**k, v))
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// A message count and its bytes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CountBytes {
    pub(crate) count: u64,
    pub(crate) bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_map_folds_overflow() {
        let c = Counter::default();
        let mut m: SeriesMap<u64> = SeriesMap::new(2, 2);
        *m.entry("a\u{1f}x", &c) += 1;
        *m.entry("b\u{1f}x", &c) += 1;
        *m.entry("c\u{1f}x", &c) += 1;
        *m.entry("d\u{1f}x", &c) += 1;
        *m.entry("a\u{1f}x", &c) += 1;
        assert_eq!(c.get(), 2);
        let v: HashMap<&str, u64> = m.iter().map(|(k, v)| (k, *v)).collect();
        assert_eq!(v["a\u{1f}x"], 2);
        assert_eq!(v["_other\u{1f}_other"], 2);
    }
}
