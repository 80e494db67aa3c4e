//! The SIP summary of a payload: the few fields routes, documents and
//! metrics need, parsed lazily and at most once per message (see
//! [`crate::Event::sip`]).
//!
//! What is extracted: the request method with the Request-URI user and host,
//! or the response status and reason; Call-ID; CSeq number and method; the
//! From and To URI user and `tag` parameter; User-Agent. Every value is a
//! [`ByteStr`] slice of the payload buffer (no copy); a value that is not
//! valid UTF-8 is left out.
//!
//! How: one forward pass over the header section, finding line ends with
//! `memchr`. Header names are matched case-insensitively and the compact
//! forms `i` (Call-ID), `f` (From) and `t` (To) are understood; the first
//! occurrence of a header wins. From/To values may carry a quoted or token
//! display name, an angle-bracketed or bare `sip:`/`sips:`/`tel:` URI, and
//! parameters after `;`. Folded continuation lines (starting with a space or
//! tab) are skipped. Parsing stops at the empty line that ends the headers.
//!
//! Bounded work on hostile input: at most [`MAX_HEADER_BYTES`] of the payload
//! and [`MAX_HEADER_LINES`] header lines are looked at, every byte is visited
//! a bounded number of times (linear time), and no input panics. A payload
//! whose first line is neither a SIP request line (`METHOD URI SIP/2.0`) nor a
//! status line (`SIP/2.0 CODE reason`) is not SIP: [`SipSummary::parse`]
//! returns `None`.

use bytes::Bytes;
use memchr::{memchr, memchr2, memrchr};
use std::ops::Range;

/// Most header lines (including folded continuation lines) looked at after
/// the start line; later headers are ignored.
pub const MAX_HEADER_LINES: usize = 256;

/// Most bytes of a payload looked at (start line and headers); headers past
/// this point are ignored.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

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
        parse_summary(payload)
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

    /// The Request-URI user part, if a request whose R-URI has one.
    pub fn ruri_user(&self) -> Option<&str> {
        match &self.start {
            SipStart::Request { ruri_user, .. } => ruri_user.as_deref(),
            SipStart::Response { .. } => None,
        }
    }

    /// The Request-URI host (without port or parameters), if a request.
    pub fn ruri_domain(&self) -> Option<&str> {
        match &self.start {
            SipStart::Request { ruri_domain, .. } => ruri_domain.as_deref(),
            SipStart::Response { .. } => None,
        }
    }

    /// The reason phrase, if a response that has one.
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            SipStart::Response { reason, .. } => reason.as_deref(),
            SipStart::Request { .. } => None,
        }
    }
}

/// The headers the summary cares about.
#[derive(Clone, Copy)]
enum Header {
    CallId,
    CSeq,
    From,
    To,
    UserAgent,
}

/// Which header a (trimmed) header name is, case-insensitively, compact
/// forms included.
fn header_kind(name: &[u8]) -> Option<Header> {
    let is = |want: &[u8]| name.eq_ignore_ascii_case(want);
    match name.len() {
        1 => match name[0].to_ascii_lowercase() {
            b'i' => Some(Header::CallId),
            b'f' => Some(Header::From),
            b't' => Some(Header::To),
            _ => None,
        },
        2 if is(b"to") => Some(Header::To),
        4 if is(b"from") => Some(Header::From),
        4 if is(b"cseq") => Some(Header::CSeq),
        7 if is(b"call-id") => Some(Header::CallId),
        10 if is(b"user-agent") => Some(Header::UserAgent),
        _ => None,
    }
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// `r` with leading and trailing spaces and tabs of `buf[r]` removed.
fn trim(buf: &[u8], r: Range<usize>) -> Range<usize> {
    let (mut s, mut e) = (r.start, r.end);
    while s < e && is_ws(buf[s]) {
        s += 1;
    }
    while e > s && is_ws(buf[e - 1]) {
        e -= 1;
    }
    s..e
}

/// RFC 3261 `token` characters (methods are tokens).
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// A `ByteStr` for `payload[r]`, or `None` if empty or not UTF-8.
fn slice_str(payload: &Bytes, r: Range<usize>) -> Option<ByteStr> {
    if r.is_empty() {
        return None;
    }
    let b = payload.slice(r);
    if b.is_ascii() {
        Some(ByteStr(b)) // ASCII is UTF-8; skips the slower general check
    } else {
        ByteStr::from_utf8(b)
    }
}

/// Position of `c` in `h`. The searches inside one line usually stop after
/// a few bytes, where a plain loop beats `memchr`'s setup; long slices
/// still get `memchr`.
#[inline]
fn find(c: u8, h: &[u8]) -> Option<usize> {
    if h.len() < 64 {
        h.iter().position(|&b| b == c)
    } else {
        memchr(c, h)
    }
}

/// Shift a range relative to a sub-slice starting at `base` back to the
/// whole buffer.
fn shift(r: Range<usize>, base: usize) -> Range<usize> {
    r.start + base..r.end + base
}

fn starts_with_sip_version(b: &[u8]) -> bool {
    b.len() >= 4 && b[..4].eq_ignore_ascii_case(b"SIP/")
}

fn parse_summary(payload: &Bytes) -> Option<SipSummary> {
    let limit = payload.len().min(MAX_HEADER_BYTES);
    let cut_short = payload.len() > limit;
    let buf = &payload[..limit];

    // RFC 3261 7.5: ignore empty lines before the start line.
    let mut pos = 0;
    while pos < buf.len() && (buf[pos] == b'\r' || buf[pos] == b'\n') {
        pos += 1;
    }
    // The start line must be terminated: a payload without any line end is
    // not a SIP message.
    let nl = pos + memchr(b'\n', &buf[pos..])?;
    let line_end = if nl > pos && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let start = parse_start_line(payload, buf, pos..line_end)?;

    let mut summary = SipSummary {
        start,
        call_id: None,
        cseq_num: None,
        cseq_method: None,
        from_user: None,
        from_tag: None,
        to_user: None,
        to_tag: None,
        user_agent: None,
    };
    let mut seen = Seen::default();

    let mut cur = nl + 1;
    let mut lines = 0;
    while cur < buf.len() && lines < MAX_HEADER_LINES {
        lines += 1;
        let (end, next) = match memchr(b'\n', &buf[cur..]) {
            Some(i) => (cur + i, cur + i + 1),
            // A last line cut off by our own byte limit may be truncated:
            // leave it out. A payload that simply ends without the empty
            // line still has its last header read.
            None if cut_short => break,
            None => (buf.len(), buf.len()),
        };
        let line_end = if end > cur && buf[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        if line_end == cur {
            break; // the empty line ending the header section
        }
        // Every header of interest starts with one of these letters: skip
        // the others (Via, Contact, Max-Forwards, ...) without looking for
        // their colon. Folded continuation lines start with a space or tab.
        if matches!(
            buf[cur].to_ascii_lowercase(),
            b'c' | b'i' | b'f' | b't' | b'u'
        ) {
            header_line(payload, buf, cur..line_end, &mut summary, &mut seen);
            if seen.all() {
                break; // nothing left to look for
            }
        }
        cur = next;
    }
    Some(summary)
}

/// Headers already met (the first occurrence wins, even when its value
/// turned out unusable).
#[derive(Default)]
struct Seen {
    call_id: bool,
    cseq: bool,
    from: bool,
    to: bool,
    user_agent: bool,
}

impl Seen {
    fn all(&self) -> bool {
        self.call_id && self.cseq && self.from && self.to && self.user_agent
    }
}

fn parse_start_line(payload: &Bytes, buf: &[u8], line: Range<usize>) -> Option<SipStart> {
    let l = &buf[line.clone()];
    if starts_with_sip_version(l) {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = memchr(b' ', l)?;
        let code = l.get(sp + 1..sp + 4)?;
        if !code.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let status = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&status) {
            return None;
        }
        let after = sp + 4;
        if after < l.len() && l[after] != b' ' {
            return None; // a 4-digit "code"
        }
        let reason = trim(buf, line.start + after..line.end);
        return Some(SipStart::Response {
            status,
            reason: slice_str(payload, reason),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let sp1 = memchr(b' ', l)?;
    let sp2 = memrchr(b' ', l)?;
    if sp1 == 0 || sp2 <= sp1 || !l[..sp1].iter().all(|&c| is_token_char(c)) {
        return None;
    }
    if !starts_with_sip_version(&l[sp2 + 1..]) {
        return None;
    }
    let uri = trim(buf, line.start + sp1 + 1..line.start + sp2);
    if uri.is_empty() {
        return None;
    }
    let parts = uri_parts(&buf[uri.clone()]);
    Some(SipStart::Request {
        method: slice_str(payload, line.start..line.start + sp1)?,
        ruri_user: parts
            .user
            .and_then(|r| slice_str(payload, shift(r, uri.start))),
        ruri_domain: parts
            .host
            .and_then(|r| slice_str(payload, shift(r, uri.start))),
    })
}

fn header_line(
    payload: &Bytes,
    buf: &[u8],
    line: Range<usize>,
    s: &mut SipSummary,
    seen: &mut Seen,
) {
    let Some(colon) = find(b':', &buf[line.clone()]) else {
        return;
    };
    let name = trim(buf, line.start..line.start + colon);
    let Some(kind) = header_kind(&buf[name]) else {
        return;
    };
    let value = trim(buf, line.start + colon + 1..line.end);
    let v = &buf[value.clone()];
    match kind {
        Header::CallId if !seen.call_id => {
            seen.call_id = true;
            s.call_id = slice_str(payload, value);
        }
        Header::UserAgent if !seen.user_agent => {
            seen.user_agent = true;
            s.user_agent = slice_str(payload, value);
        }
        Header::CSeq if !seen.cseq => {
            seen.cseq = true;
            let digits = v.iter().take_while(|c| c.is_ascii_digit()).count();
            s.cseq_num = parse_u32(&v[..digits]);
            let method = trim(buf, value.start + digits..value.end);
            let mlen = buf[method.clone()]
                .iter()
                .take_while(|&&c| is_token_char(c))
                .count();
            s.cseq_method = slice_str(payload, method.start..method.start + mlen);
        }
        Header::From if !seen.from => {
            seen.from = true;
            let (user, tag) = name_addr(v);
            s.from_user = user.and_then(|r| slice_str(payload, shift(r, value.start)));
            s.from_tag = tag.and_then(|r| slice_str(payload, shift(r, value.start)));
        }
        Header::To if !seen.to => {
            seen.to = true;
            let (user, tag) = name_addr(v);
            s.to_user = user.and_then(|r| slice_str(payload, shift(r, value.start)));
            s.to_tag = tag.and_then(|r| slice_str(payload, shift(r, value.start)));
        }
        _ => {}
    }
}

/// Decimal digits as a `u32`; `None` if empty or it overflows.
fn parse_u32(d: &[u8]) -> Option<u32> {
    if d.is_empty() {
        return None;
    }
    d.iter().try_fold(0u32, |n, &c| {
        n.checked_mul(10)?.checked_add(u32::from(c - b'0'))
    })
}

/// The user and host of a URI, as ranges within it.
#[derive(Default)]
struct UriParts {
    user: Option<Range<usize>>,
    host: Option<Range<usize>>,
}

/// Split a `sip:`, `sips:` or `tel:` URI (no angle brackets). The user is
/// the part before `@` without password (`:`) or user parameters (`;`); the
/// host has no port, parameters or headers, and an IPv6 reference loses its
/// brackets. A `tel:` URI has a user (the number) and no host. Other schemes
/// give neither.
fn uri_parts(u: &[u8]) -> UriParts {
    let Some(colon) = find(b':', u) else {
        return UriParts::default();
    };
    let scheme = &u[..colon];
    let rest = colon + 1;
    if scheme.eq_ignore_ascii_case(b"tel") {
        let end = memchr2(b';', b'?', &u[rest..]).map_or(u.len(), |i| rest + i);
        return UriParts {
            user: non_empty(rest..end),
            host: None,
        };
    }
    if !(scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips")) {
        return UriParts::default();
    }
    let (user, host_start) = match find(b'@', &u[rest..]) {
        Some(at) => {
            let info = &u[rest..rest + at];
            let end = memchr2(b':', b';', info).unwrap_or(info.len());
            (non_empty(rest..rest + end), rest + at + 1)
        }
        None => (None, rest),
    };
    let host = if u.get(host_start) == Some(&b'[') {
        let inner = host_start + 1;
        find(b']', &u[inner..]).map(|i| inner..inner + i)
    } else {
        let end = u[host_start..]
            .iter()
            .position(|&c| matches!(c, b':' | b';' | b'?' | b'>' | b' ' | b'\t'))
            .map_or(u.len(), |i| host_start + i);
        Some(host_start..end)
    };
    UriParts {
        user,
        host: host.and_then(non_empty),
    }
}

fn non_empty(r: Range<usize>) -> Option<Range<usize>> {
    (!r.is_empty()).then_some(r)
}

/// Parse a From/To value (`"Name" <uri>;params`, `Name <uri>;params` or
/// `uri;params`) into the URI user and the `tag` parameter, as ranges
/// within `v`.
fn name_addr(v: &[u8]) -> (Option<Range<usize>>, Option<Range<usize>>) {
    let mut i = 0;
    if v.first() == Some(&b'"') {
        // Quoted display name, may hold `<`, `;` and escaped quotes.
        i = 1;
        while i < v.len() {
            match v[i] {
                b'\\' => i += 2,
                b'"' => {
                    i += 1;
                    break;
                }
                _ => i += 1,
            }
        }
        i = i.min(v.len());
    }
    // A token display name cannot hold `;`, so a `<` only counts before
    // the first `;` (otherwise this is a bare URI followed by parameters).
    let first_semi = find(b';', &v[i..]).map_or(v.len(), |p| i + p);
    let (uri, params) = match find(b'<', &v[i..first_semi.max(i)]) {
        Some(lt) => {
            let us = i + lt + 1;
            match find(b'>', &v[us..]) {
                Some(gt) => (us..us + gt, us + gt + 1),
                None => (us..v.len(), v.len()),
            }
        }
        None if i > 0 => {
            // A quoted name with no `<uri>` after it.
            return (None, None);
        }
        None => (0..first_semi, first_semi),
    };
    let user = uri_parts(&v[uri.clone()]).user.map(|r| shift(r, uri.start));
    let tag = find_param(&v[params..], b"tag").map(|r| shift(r, params));
    (user, tag)
}

/// The value of parameter `name` (case-insensitive) in `;a=b;c=d` text, as
/// a range within `p`; `None` if absent or empty.
fn find_param(p: &[u8], name: &[u8]) -> Option<Range<usize>> {
    let mut i = 0;
    while i < p.len() {
        let end = find(b';', &p[i..]).map_or(p.len(), |x| i + x);
        let seg = i..end;
        if let Some(eq) = find(b'=', &p[seg.clone()]) {
            let key = trim(p, seg.start..seg.start + eq);
            if p[key].eq_ignore_ascii_case(name) {
                let val = trim(p, seg.start + eq + 1..seg.end);
                return non_empty(val);
            }
        }
        i = end + 1;
    }
    None
}
