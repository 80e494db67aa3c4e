//! HEP v1/v2/v3 decoding. (Implemented by the codec work item.)
use super::{DecodeError, DecodeOptions, HepMessage};
use bytes::Bytes;

/// Decode one HEP message (v1, v2 or v3) from a whole datagram or frame.
pub fn decode(buf: Bytes, opts: &DecodeOptions) -> Result<HepMessage, DecodeError> {
    let _ = (buf, opts);
    Err(DecodeError::MissingPayload)
}

/// For a stream: `Ok(Some(n))` when `buf` starts with a HEP3 header whose
/// total length is `n` (the frame may not be complete yet), `Ok(None)` when
/// fewer than 6 bytes are buffered, an error when the bytes are not a HEP3
/// header or the length is below 6.
pub fn hep3_frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let _ = buf;
    Ok(None)
}
