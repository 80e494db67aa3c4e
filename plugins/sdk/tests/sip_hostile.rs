//! SIP summary parsing of hostile input: bounded work, no panic, `None` for
//! what is not SIP.

use bytes::Bytes;
use hepflow_sdk::sip::{SipSummary, MAX_HEADER_BYTES, MAX_HEADER_LINES};
use proptest::prelude::*;

const START: &str = "INVITE sip:a@b SIP/2.0\r\n";

#[test]
fn headers_past_the_line_limit_are_ignored() {
    let mut text = String::from(START);
    for i in 0..MAX_HEADER_LINES - 1 {
        text.push_str(&format!("X-Filler-{i}: y\r\n"));
    }
    // Header line number MAX_HEADER_LINES is still read, the next is not.
    text.push_str("Call-ID: last-counted\r\nUser-Agent: too-far\r\n\r\n");
    assert!(text.len() < MAX_HEADER_BYTES);
    let s = SipSummary::parse(&Bytes::from(text)).unwrap();
    assert_eq!(s.call_id.as_deref(), Some("last-counted"));
    assert_eq!(s.user_agent, None);
}

#[test]
fn headers_past_the_byte_limit_are_ignored() {
    let mut text = String::from(START);
    text.push_str("X-Big: ");
    text.push_str(&"a".repeat(MAX_HEADER_BYTES));
    text.push_str("\r\nCall-ID: beyond\r\n\r\n");
    let s = SipSummary::parse(&Bytes::from(text)).unwrap();
    assert_eq!(s.method(), Some("INVITE"));
    assert_eq!(s.call_id, None);

    // A header cut by the byte limit is not reported truncated.
    let mut text = String::from(START);
    text.push_str("Call-ID: ");
    let room = MAX_HEADER_BYTES - text.len();
    text.push_str(&"c".repeat(room + 10));
    text.push_str("\r\n\r\n");
    let s = SipSummary::parse(&Bytes::from(text)).unwrap();
    assert_eq!(s.call_id, None);
}

#[test]
fn huge_payloads_parse_within_the_bound() {
    // 8 MiB without a line end, 8 MiB of header lines without a colon, 8
    // MiB of hostile From headers: the parser looks at no more than its
    // bound (the line and byte limits are asserted exactly by the tests
    // above; no timing is asserted here).
    const BIG: usize = 8 << 20;
    let no_crlf = Bytes::from(vec![b'A'; BIG]);
    let lines = [START.as_bytes(), &b"X\n".repeat(BIG / 2)].concat();
    let colons = [
        START.as_bytes(),
        &b"From:\"\\\"\\\"<<<;;;tag=\r\n".repeat(BIG / 20),
    ]
    .concat();
    let (colons, lines) = (Bytes::from(colons), Bytes::from(lines));
    assert_eq!(SipSummary::parse(&no_crlf), None);
    assert!(SipSummary::parse(&lines).is_some());
    let s = SipSummary::parse(&colons).expect("start line parses");
    // The hostile From values carry no user and an empty tag.
    assert_eq!(s.from_user, None);
}

#[test]
fn binary_garbage_is_not_sip() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for len in [1usize, 7, 100, 1500, 70_000] {
        let buf: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect();
        assert_eq!(SipSummary::parse(&Bytes::from(buf)), None);
    }
    // A HEP3 header is not SIP either.
    assert_eq!(
        SipSummary::parse(&Bytes::from_static(
            b"HEP3\x00\x20\x00\x00\x00\x01\x00\x07\x02"
        )),
        None
    );
}

#[test]
fn odd_but_valid_start_line_with_hostile_headers() {
    let text = "REGISTER sip:x SIP/2.0\r\n\
        From: \"\\\r\n\
        To: <\r\n\
        To: \"\r\n\
        Call-ID:\r\n\
        CSeq:  \r\n\
        i: \r\n\
        :\r\n\
        \r\n";
    let s = SipSummary::parse(&Bytes::from_static(text.as_bytes())).unwrap();
    assert_eq!(s.method(), Some("REGISTER"));
    assert_eq!(s.ruri_domain(), Some("x"));
    assert_eq!(s.from_user, None);
    assert_eq!(s.to_user, None);
    assert_eq!(s.call_id, None);
    assert_eq!(s.cseq_num, None);
    assert_eq!(s.cseq_method, None);
}

fn check_summary(buf: &Bytes, s: &SipSummary) {
    // Every value is a slice of the payload, within the bounded window.
    let base = buf.as_ptr() as usize;
    let values = [
        s.call_id.as_ref(),
        s.cseq_method.as_ref(),
        s.from_user.as_ref(),
        s.from_tag.as_ref(),
        s.to_user.as_ref(),
        s.to_tag.as_ref(),
        s.user_agent.as_ref(),
    ];
    for v in values.into_iter().flatten() {
        let p = v.as_bytes().as_ptr() as usize;
        assert!(p >= base && p + v.len() <= base + buf.len().min(MAX_HEADER_BYTES));
        assert!(!v.is_empty());
    }
}

/// SIP-looking fragments, so that generated input often gets past the
/// start line and exercises the header code.
fn sipish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"INVITE sip:u@h SIP/2.0\r\n".to_vec()),
        Just(b"SIP/2.0 200 OK\r\n".to_vec()),
        Just(b"Call-ID: ".to_vec()),
        Just(b"From: ".to_vec()),
        Just(b"t:".to_vec()),
        Just(b"CSeq: 12".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"<sip:".to_vec()),
        Just(b"tel:".to_vec()),
        Just(b"@".to_vec()),
        Just(b"[".to_vec()),
        Just(b">".to_vec()),
        Just(b";tag=".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b" ".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let buf = Bytes::from(buf);
        if let Some(s) = SipSummary::parse(&buf) {
            check_summary(&buf, &s);
        }
    }

    #[test]
    fn sip_like_bytes_never_panic(buf in sipish()) {
        let buf = Bytes::from(buf);
        if let Some(s) = SipSummary::parse(&buf) {
            check_summary(&buf, &s);
            if let Some(st) = s.status() {
                prop_assert!((100..=699).contains(&st));
            }
        }
    }
}
