//! The capture id rule a listener applies to every HEP3 message it
//! decodes (`capture_id_compat`, see docs/interop.md): reading a little-
//! endian sender's `htons(id)` as the id it meant.

use crate::config::CaptureIdCompat;

/// The capture id to use for a HEP3 chunk value `raw` under `rule`, or
/// `None` when the rule leaves it as it is.
pub fn rewrite(rule: CaptureIdCompat, raw: u32) -> Option<u32> {
    match rule {
        CaptureIdCompat::None => None,
        CaptureIdCompat::Sngrep => looks_htons(raw).then_some(raw >> 16),
    }
}

/// True when a capture id chunk value looks like a little-endian sender's
/// `htons(id)` written into the u32 (low 16 bits zero, high 16 bits not).
pub fn looks_htons(raw: u32) -> bool {
    raw & 0xffff == 0 && raw != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sngrep_rule_reads_the_upper_half_only_when_the_lower_is_zero() {
        let r = CaptureIdCompat::Sngrep;
        assert_eq!(
            rewrite(r, u32::from_be_bytes([0x07, 0xd2, 0, 0])),
            Some(2002)
        );
        assert_eq!(
            rewrite(r, u32::from_be_bytes([0x00, 0x65, 0, 0])),
            Some(101)
        );
        assert_eq!(rewrite(r, 0xffff_0000), Some(0xffff));
        // Ids sent as the spec says are left alone, and so is 0.
        for id in [0, 1, 2001, 0xffff, 0x0001_0001, u32::MAX] {
            assert_eq!(rewrite(r, id), None, "{id}");
        }
        // The documented hazard: a genuine multiple of 65536.
        assert_eq!(rewrite(r, 131_072), Some(2));
        assert_eq!(rewrite(CaptureIdCompat::None, 0x07d2_0000), None);
    }
}
