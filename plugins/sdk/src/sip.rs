//! The SIP summary of a payload: the few fields routes, documents and
//! metrics need, parsed lazily and at most once per message (see
//! [`crate::Event::sip`]). (Parsing implemented by the SIP work item.)

use bytes::Bytes;

/// A UTF-8 string that is a slice of a received buffer (no copy).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ByteStr(Bytes);

impl ByteStr {
    /// Wrap `b` if it is valid UTF-8.
    pub fn from_utf8(b: Bytes) -> Option<Self> {
        std::str::from_utf8(&b).ok()?;
        Some(ByteStr(b))
    }
    /// The string.
    pub fn as_str(&self) -> &str {
        // Checked at construction.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// The underlying shared buffer slice.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

impl std::ops::Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for ByteStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ByteStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Request line or status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipStart {
    /// A request: method and Request-URI user and host.
    Request {
        /// The method (`INVITE`, ...).
        method: ByteStr,
        /// The R-URI user part, if any.
        ruri_user: Option<ByteStr>,
        /// The R-URI host part.
        ruri_domain: Option<ByteStr>,
    },
    /// A response: status code and reason phrase.
    Response {
        /// Status code (100..=699).
        status: u16,
        /// Reason phrase.
        reason: Option<ByteStr>,
    },
}

/// The summary of one SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipSummary {
    /// Request or response line.
    pub start: SipStart,
    /// Call-ID (`Call-ID` or `i`).
    pub call_id: Option<ByteStr>,
    /// CSeq sequence number.
    pub cseq_num: Option<u32>,
    /// CSeq method.
    pub cseq_method: Option<ByteStr>,
    /// From URI user part.
    pub from_user: Option<ByteStr>,
    /// From tag.
    pub from_tag: Option<ByteStr>,
    /// To URI user part.
    pub to_user: Option<ByteStr>,
    /// To tag.
    pub to_tag: Option<ByteStr>,
    /// User-Agent header.
    pub user_agent: Option<ByteStr>,
}

impl SipSummary {
    /// Parse the summary of a SIP payload; `None` when it is not SIP.
    pub fn parse(payload: &Bytes) -> Option<SipSummary> {
        let _ = payload;
        None
    }

    /// The request method, if a request.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            SipStart::Request { method, .. } => Some(method.as_str()),
            SipStart::Response { .. } => None,
        }
    }

    /// The status code, if a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            SipStart::Response { status, .. } => Some(*status),
            SipStart::Request { .. } => None,
        }
    }
}
