//! SIP summary parsing of hand-written messages: compact header forms,
//! case-insensitive names, display names, URI schemes and parameters,
//! start lines.

use bytes::Bytes;
use hepflow_sdk::sip::{SipStart, SipSummary};

fn parse(text: &str) -> Option<SipSummary> {
    SipSummary::parse(&Bytes::copy_from_slice(text.as_bytes()))
}

fn s(v: &Option<hepflow_sdk::sip::ByteStr>) -> Option<&str> {
    v.as_deref()
}

const INVITE: &str = "INVITE sip:+4930123@sip.example.com:5061;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: \"Bob; the <builder>\" <sip:bob@biloxi.example.com;user=phone>;tag=a6c85cf\r\n\
From: Alice <sips:alice:secret@atlanta.example.com>;tag=1928301774;other=x\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
User-Agent: Linphone/5.2 (belle-sip/5.2)\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\r\n";

#[test]
fn full_request_fields() {
    let m = parse(INVITE).unwrap();
    assert_eq!(
        m.start,
        SipStart::Request {
            method: hepflow_sdk::sip::ByteStr::from_utf8(Bytes::from_static(b"INVITE")).unwrap(),
            ruri_user: hepflow_sdk::sip::ByteStr::from_utf8(Bytes::from_static(b"+4930123")),
            ruri_domain: hepflow_sdk::sip::ByteStr::from_utf8(Bytes::from_static(
                b"sip.example.com"
            )),
        }
    );
    assert_eq!(m.method(), Some("INVITE"));
    assert_eq!(m.status(), None);
    assert_eq!(
        s(&m.call_id),
        Some("a84b4c76e66710@pc33.atlanta.example.com")
    );
    assert_eq!(m.cseq_num, Some(314159));
    assert_eq!(s(&m.cseq_method), Some("INVITE"));
    // The password is not part of the user.
    assert_eq!(s(&m.from_user), Some("alice"));
    assert_eq!(s(&m.from_tag), Some("1928301774"));
    // `;` and `<` inside the quoted display name do not confuse the parser.
    assert_eq!(s(&m.to_user), Some("bob"));
    assert_eq!(s(&m.to_tag), Some("a6c85cf"));
    assert_eq!(s(&m.user_agent), Some("Linphone/5.2 (belle-sip/5.2)"));
}

#[test]
fn response_status_and_reason() {
    let m = parse(
        "SIP/2.0 486 Busy Here\r\nCall-ID: x1\r\nCSeq: 2 INVITE\r\nTo: <sip:b@h>;tag=t\r\n\r\n",
    )
    .unwrap();
    assert_eq!(m.status(), Some(486));
    assert_eq!(m.reason(), Some("Busy Here"));
    assert_eq!(m.method(), None);
    assert_eq!(m.ruri_user(), None);
    assert_eq!(s(&m.call_id), Some("x1"));
    assert_eq!(s(&m.to_tag), Some("t"));

    let bare = parse("SIP/2.0 200\r\n\r\n").unwrap();
    assert_eq!(bare.status(), Some(200));
    assert_eq!(bare.reason(), None);
}

#[test]
fn compact_forms() {
    let m = parse(
        "BYE sip:bob@192.0.2.4 SIP/2.0\r\n\
         v: SIP/2.0/UDP 192.0.2.1\r\n\
         i: compact-call-id@host\r\n\
         f: <sip:alice@atlanta.com>;tag=ftag\r\n\
         t: sip:bob@biloxi.com;tag=ttag\r\n\
         CSeq: 231 BYE\r\n\
         l: 0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(s(&m.call_id), Some("compact-call-id@host"));
    assert_eq!(s(&m.from_user), Some("alice"));
    assert_eq!(s(&m.from_tag), Some("ftag"));
    // A bare addr-spec: parameters after `;` are header parameters.
    assert_eq!(s(&m.to_user), Some("bob"));
    assert_eq!(s(&m.to_tag), Some("ttag"));
    assert_eq!(m.ruri_domain(), Some("192.0.2.4"));
}

#[test]
fn header_names_are_case_insensitive_and_may_have_spaces() {
    let m = parse(
        "OPTIONS sip:srv.example.org SIP/2.0\r\n\
         CALL-ID:   upper@x  \r\n\
         cseq:7    options\r\n\
         FROM : \"A\" <sip:a@x>;TAG=up\r\n\
         tO:<sip:b@y>\r\n\
         user-AGENT:\tUA 1.0\r\n\
         I: second-call-id-ignored\r\n\r\n",
    )
    .unwrap();
    assert_eq!(s(&m.call_id), Some("upper@x"));
    assert_eq!(m.cseq_num, Some(7));
    assert_eq!(s(&m.cseq_method), Some("options"));
    assert_eq!(s(&m.from_user), Some("a"));
    assert_eq!(s(&m.from_tag), Some("up"));
    assert_eq!(s(&m.to_user), Some("b"));
    assert_eq!(s(&m.to_tag), None);
    assert_eq!(s(&m.user_agent), Some("UA 1.0"));
    // No user part in the R-URI.
    assert_eq!(m.ruri_user(), None);
    assert_eq!(m.ruri_domain(), Some("srv.example.org"));
}

#[test]
fn uri_forms() {
    let cases = [
        ("sip:alice@example.com", Some("alice"), Some("example.com")),
        (
            "sips:alice@example.com:5061",
            Some("alice"),
            Some("example.com"),
        ),
        (
            "SIP:Alice@Example.COM;lr",
            Some("Alice"),
            Some("Example.COM"),
        ),
        (
            "sip:[2001:db8::1]:5060;transport=udp",
            None,
            Some("2001:db8::1"),
        ),
        ("sip:u@[2001:db8::2]", Some("u"), Some("2001:db8::2")),
        (
            "sip:+1234;npdi@gw.example.net;user=phone",
            Some("+1234"),
            Some("gw.example.net"),
        ),
        ("sip:host.only?Subject=x", None, Some("host.only")),
        (
            "tel:+1-201-555-0123;phone-context=example.com",
            Some("+1-201-555-0123"),
            None,
        ),
        ("urn:service:sos", None, None),
    ];
    for (uri, user, host) in cases {
        let m = parse(&format!("MESSAGE {uri} SIP/2.0\r\nTo: <{uri}>\r\n\r\n"))
            .unwrap_or_else(|| panic!("{uri} did not parse"));
        assert_eq!(m.ruri_user(), user, "R-URI user of {uri}");
        assert_eq!(m.ruri_domain(), host, "R-URI host of {uri}");
        assert_eq!(s(&m.to_user), user, "To user of {uri}");
    }
}

#[test]
fn display_name_forms() {
    let cases = [
        ("\"Quoted \\\" name\" <sip:q@h>;tag=1", Some("q"), Some("1")),
        ("Token Name <sip:t@h>;tag=2", Some("t"), Some("2")),
        ("<tel:+491701234>;tag=3", Some("+491701234"), Some("3")),
        ("sip:bare@h;tag=4", Some("bare"), Some("4")),
        ("sip:bare@h ; tag = 5 ", Some("bare"), Some("5")),
        ("\"only a name\"", None, None),
        ("<sip:unterminated@h;tag=6", Some("unterminated"), None),
        ("<sip:notag@h>;tagx=7;xtag=8", Some("notag"), None),
    ];
    for (value, user, tag) in cases {
        let m = parse(&format!("SIP/2.0 200 OK\r\nFrom: {value}\r\n\r\n")).unwrap();
        assert_eq!(s(&m.from_user), user, "user of {value}");
        assert_eq!(s(&m.from_tag), tag, "tag of {value}");
    }
}

#[test]
fn stops_at_the_end_of_headers() {
    // A Call-ID-looking line in the body is not a header.
    let m = parse("SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\nCall-ID: in-the-body\r\n").unwrap();
    assert_eq!(m.call_id, None);
    assert_eq!(m.cseq_num, Some(1));
}

#[test]
fn bare_lf_line_ends_and_leading_crlf() {
    let m = parse("\r\n\r\nINFO sip:x@y SIP/2.0\nCall-ID: lf-only\nCSeq: 9 INFO\n\nbody").unwrap();
    assert_eq!(m.method(), Some("INFO"));
    assert_eq!(s(&m.call_id), Some("lf-only"));
    assert_eq!(m.cseq_num, Some(9));
}

#[test]
fn folded_lines_are_skipped() {
    let m =
        parse("SIP/2.0 180 Ringing\r\nSubject: a\r\n  Call-ID: folded\r\ni: real\r\n\r\n").unwrap();
    assert_eq!(s(&m.call_id), Some("real"));
}

#[test]
fn last_header_without_line_end_is_read() {
    let m = parse("SIP/2.0 200 OK\r\nCall-ID: no-crlf-at-end").unwrap();
    assert_eq!(s(&m.call_id), Some("no-crlf-at-end"));
}

#[test]
fn non_utf8_values_are_skipped_not_fatal() {
    let mut raw = b"SIP/2.0 200 OK\r\nUser-Agent: bad \xff\xfe\r\nCall-ID: good\r\n\r\n".to_vec();
    let m = SipSummary::parse(&Bytes::from(raw.clone())).unwrap();
    assert_eq!(m.user_agent, None);
    assert_eq!(s(&m.call_id), Some("good"));
    // A non-UTF-8 reason phrase too.
    raw[12] = 0xC3;
    let m = SipSummary::parse(&Bytes::from(raw)).unwrap();
    assert_eq!(m.status(), Some(200));
    assert_eq!(m.reason(), None);
}

#[test]
fn cseq_edge_cases() {
    let m = parse("SIP/2.0 200 OK\r\nCSeq: 99999999999 INVITE\r\n\r\n").unwrap();
    assert_eq!(m.cseq_num, None, "overflowing CSeq number");
    assert_eq!(s(&m.cseq_method), Some("INVITE"));
    let m = parse("SIP/2.0 200 OK\r\nCSeq: INVITE\r\n\r\n").unwrap();
    assert_eq!(m.cseq_num, None);
    assert_eq!(s(&m.cseq_method), Some("INVITE"));
    let m = parse("SIP/2.0 200 OK\r\nCSeq: 4294967295 BYE\r\n\r\n").unwrap();
    assert_eq!(m.cseq_num, Some(u32::MAX));
}

#[test]
fn not_sip_start_lines() {
    for text in [
        "",
        "\r\n\r\n",
        "     ",
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\n",
        "SIP/2.0 099 Too Low\r\n\r\n",
        "SIP/2.0 700 Too High\r\n\r\n",
        "SIP/2.0 2000 Four Digits\r\n\r\n",
        "SIP/2.0 20 Short\r\n\r\n",
        "SIP/2.0\r\n\r\n",
        "INVITE sip:a@b SIP/2.0",
        "INVITE SIP/2.0\r\n\r\n",
        " INVITE sip:a@b SIP/2.0\r\n\r\n",
        "INV(ITE sip:a@b SIP/2.0\r\n\r\n",
        "INVITE sip:a@b HTTP/1.1\r\n\r\n",
        "{\"json\": true}\n",
    ] {
        assert_eq!(parse(text), None, "{text:?} is not SIP");
    }
}
