//! Choosing targets: rendezvous (highest random weight) hashing of a call
//! key for `mode = "hash"`, and the key of a message.
//!
//! Every target gets a seed from its canonical URL; a key's score on a
//! target mixes the key's hash with that seed, and the key goes to the
//! target with the highest score that is up. Removing (or losing) a target
//! moves only the keys it had, each to its own next choice, spread over
//! the rest; when it comes back exactly those keys return. The hash
//! functions are fixed (FNV-1a 64 and the splitmix64 finaliser), so the
//! choice is the same in every process and version, whatever the order
//! of the targets in the config.

use hepflow_sdk::Event;
use std::net::IpAddr;

/// FNV-1a, 64 bit.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The splitmix64 finaliser: a bijective avalanche mix.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A target's seed, from its canonical URL.
pub fn target_seed(canonical_url: &str) -> u64 {
    mix64(fnv1a64(canonical_url.as_bytes()))
}

/// The score of `key_hash` on the target with `seed`.
pub fn score(key_hash: u64, seed: u64) -> u64 {
    mix64(key_hash ^ seed)
}

/// The target for `key_hash`: the highest-scoring one for which `usable`
/// holds, or `None` when none does. Ties (vanishingly rare) go to the
/// lower index.
pub fn rendezvous(key_hash: u64, seeds: &[u64], usable: impl Fn(usize) -> bool) -> Option<usize> {
    let mut best: Option<(u64, usize)> = None;
    for (i, seed) in seeds.iter().enumerate() {
        if !usable(i) {
            continue;
        }
        let s = score(key_hash, *seed);
        if best.is_none_or(|(b, _)| s > b) {
            best = Some((s, i));
        }
    }
    best.map(|(_, i)| i)
}

/// The hashing key of a message: its call key (SIP Call-ID, else the
/// correlation id) when it has one; else the unordered pair of its source
/// and destination address and port, so both directions of a flow go to
/// the same target.
pub fn key_hash(ev: &Event) -> u64 {
    if let Some(k) = ev.call_key() {
        return fnv1a64(k);
    }
    let h = ev.hep();
    let a = endpoint_hash(h.src_ip, h.src_port);
    let b = endpoint_hash(h.dst_ip, h.dst_port);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    mix64(lo ^ hi.rotate_left(17)) ^ 0x5bd1_e995
}

fn endpoint_hash(ip: IpAddr, port: u16) -> u64 {
    let mut buf = [0u8; 18];
    let n = match ip {
        IpAddr::V4(a) => {
            buf[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            buf[..16].copy_from_slice(&a.octets());
            16
        }
    };
    buf[n..n + 2].copy_from_slice(&port.to_be_bytes());
    fnv1a64(&buf[..n + 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(urls: &[&str]) -> Vec<u64> {
        urls.iter().map(|u| target_seed(u)).collect()
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn spreads_keys_evenly_and_moves_only_the_lost_targets_keys() {
        let urls = ["tcp://a:1", "tcp://b:1", "tcp://c:1"];
        let s = seeds(&urls);
        let n = 30_000u64;
        let mut count = [0u64; 3];
        let mut moved_wrongly = 0;
        for k in 0..n {
            let kh = fnv1a64(format!("call-{k}@host").as_bytes());
            let first = rendezvous(kh, &s, |_| true).unwrap();
            count[first] += 1;
            // Target 1 down: only its keys move.
            let second = rendezvous(kh, &s, |i| i != 1).unwrap();
            if first != 1 && second != first {
                moved_wrongly += 1;
            }
        }
        assert_eq!(moved_wrongly, 0);
        for c in count {
            // 10000 expected each; 5 % is > 8 standard deviations.
            assert!((9_500..=10_500).contains(&c), "{count:?}");
        }
    }

    #[test]
    fn choice_does_not_depend_on_target_order() {
        let a = seeds(&["tcp://a:1", "tcp://b:1", "tcp://c:1"]);
        let b = seeds(&["tcp://c:1", "tcp://a:1", "tcp://b:1"]);
        for k in 0..1000u64 {
            let kh = mix64(k);
            let ia = rendezvous(kh, &a, |_| true).unwrap();
            let ib = rendezvous(kh, &b, |_| true).unwrap();
            assert_eq!(a[ia], b[ib]);
        }
    }

    #[test]
    fn none_when_nothing_is_usable() {
        assert_eq!(rendezvous(1, &seeds(&["udp://a:1"]), |_| false), None);
    }
}
