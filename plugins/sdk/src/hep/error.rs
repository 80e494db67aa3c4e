//! Typed decode and encode errors. Every malformed input maps to one
//! variant; [`DecodeError::reason`] is the stable label used in metrics.

/// Why a buffer is not a valid HEP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the smallest header of the version.
    #[error("message too short: {len} bytes, need at least {need}")]
    TooShort {
        /// Bytes available.
        len: usize,
        /// Bytes the header needs.
        need: usize,
    },
    /// Neither `HEP3` nor a v1/v2 version byte.
    #[error("bad magic: not a HEP v1, v2 or v3 message (first byte {first:#04x})")]
    BadMagic {
        /// The first byte seen.
        first: u8,
    },
    /// HEP3 total length does not match the datagram (or is below 6).
    #[error("HEP3 total length {declared} does not match the {actual} bytes received")]
    LengthMismatch {
        /// Length in the header.
        declared: usize,
        /// Bytes received.
        actual: usize,
    },
    /// Fewer than 6 bytes left where a chunk header should be, or a chunk
    /// length below 6.
    #[error("chunk at offset {offset} is shorter than its 6-byte header (length {len})")]
    ChunkTooShort {
        /// Offset of the chunk within the message.
        offset: usize,
        /// The declared (or available) length.
        len: usize,
    },
    /// A chunk's length runs past the end of the message.
    #[error(
        "chunk at offset {offset} (length {len}) runs past the end of the {total}-byte message"
    )]
    ChunkOverrun {
        /// Offset of the chunk within the message.
        offset: usize,
        /// Declared chunk length.
        len: usize,
        /// Message length.
        total: usize,
    },
    /// A fixed-size generic chunk with the wrong value length.
    #[error("chunk type {chunk_type:#04x} has a {len}-byte value, expected {expected}")]
    BadChunkLength {
        /// The chunk type.
        chunk_type: u16,
        /// Value length seen.
        len: usize,
        /// Value length the type needs.
        expected: usize,
    },
    /// Address family or address length that matches neither IPv4 nor IPv6.
    #[error("bad address: {detail}")]
    BadAddress {
        /// What was wrong.
        detail: &'static str,
    },
    /// No payload chunk (0x0f or 0x10), or an empty v1/v2 payload.
    #[error("message has no payload")]
    MissingPayload,
    /// The compressed payload is not valid zlib.
    #[error("compressed payload does not inflate: {0}")]
    Inflate(String),
    /// The compressed payload inflates past the configured bound.
    #[error("compressed payload inflates past the {limit}-byte limit")]
    InflatedTooLarge {
        /// The configured bound.
        limit: usize,
    },
}

impl DecodeError {
    /// Every reason label, in a fixed order (for metrics pre-registration).
    pub const REASONS: [&'static str; 10] = [
        "too_short",
        "bad_magic",
        "length_mismatch",
        "chunk_too_short",
        "chunk_overrun",
        "bad_chunk_length",
        "bad_address",
        "missing_payload",
        "inflate_failed",
        "inflated_too_large",
    ];

    /// The stable, low-cardinality label of this error, one of [`Self::REASONS`].
    pub fn reason(&self) -> &'static str {
        Self::REASONS[self.reason_index()]
    }

    /// Index of [`Self::reason`] in [`Self::REASONS`].
    pub fn reason_index(&self) -> usize {
        match self {
            DecodeError::TooShort { .. } => 0,
            DecodeError::BadMagic { .. } => 1,
            DecodeError::LengthMismatch { .. } => 2,
            DecodeError::ChunkTooShort { .. } => 3,
            DecodeError::ChunkOverrun { .. } => 4,
            DecodeError::BadChunkLength { .. } => 5,
            DecodeError::BadAddress { .. } => 6,
            DecodeError::MissingPayload => 7,
            DecodeError::Inflate(_) => 8,
            DecodeError::InflatedTooLarge { .. } => 9,
        }
    }
}

/// Why a message cannot be encoded as HEPv3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded message would exceed HEP3's 65535-byte total length.
    #[error("encoded HEP3 message would be {len} bytes; HEP3 allows at most 65535")]
    TooLarge {
        /// The length it would have.
        len: usize,
    },
    /// A string or bytes chunk value longer than a chunk can hold.
    #[error("chunk type {chunk_type:#04x} value of {len} bytes does not fit a HEP3 chunk")]
    ChunkTooLarge {
        /// The chunk type.
        chunk_type: u16,
        /// Its value length.
        len: usize,
    },
}
