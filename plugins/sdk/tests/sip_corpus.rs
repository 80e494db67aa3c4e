//! SIP summary parsing over the real captures in `tests/fixtures/sip/`.
//!
//! The expectations were obtained independently of this parser, with
//! Wireshark's SIP dissector (tshark 4.0.17):
//!
//! ```text
//! tshark -r FILE -Y sip -T fields -E separator='|' -e sip.Method \
//!   -e sip.Status-Code -e sip.CSeq.seq -e sip.CSeq.method -e sip.Call-ID
//! tshark -r FILE -Y sip -T fields -e sip.r-uri.user -e sip.r-uri.host
//! tshark -r FILE -Y sip -T fields -e sip.from.user -e sip.to.user
//! tshark -r FILE -Y sip -T fields -e sip.from.tag / -e sip.to.tag / -e sip.User-Agent
//! ```
//!
//! and are hard-coded here.

use bytes::Bytes;
use etherparse::{SlicedPacket, TransportSlice};
use hepflow_sdk::sip::SipSummary;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/sip")
        .join(name)
}

/// Every UDP payload to or from port 5060, in capture order, each in its
/// own buffer (as a HEP decoder would hand it over).
fn udp_5060_payloads(name: &str) -> Vec<Bytes> {
    let file = std::fs::File::open(fixture(name)).expect("open fixture");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("pcap header");
    assert_eq!(
        reader.header().datalink,
        pcap_file::DataLink::ETHERNET,
        "{name}: expected an Ethernet capture"
    );
    let mut out = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.expect("pcap record");
        let Ok(sliced) = SlicedPacket::from_ethernet(&pkt.data) else {
            continue;
        };
        if let Some(TransportSlice::Udp(udp)) = sliced.transport {
            if udp.source_port() == 5060 || udp.destination_port() == 5060 {
                out.push(Bytes::copy_from_slice(udp.payload()));
            }
        }
    }
    out
}

/// The SIP messages of a capture: payloads on port 5060 that parse. Also
/// checks that every payload that did not parse is a NAT keep-alive (only
/// whitespace), never a SIP message we failed on.
fn parse_all(name: &str) -> Vec<SipSummary> {
    let mut out = Vec::new();
    for p in udp_5060_payloads(name) {
        match SipSummary::parse(&p) {
            Some(s) => out.push(s),
            None => assert!(
                p.iter().all(|c| c.is_ascii_whitespace()),
                "{name}: a non-keep-alive payload did not parse: {:?}",
                String::from_utf8_lossy(&p)
            ),
        }
    }
    out
}

fn start_of(s: &SipSummary) -> String {
    match (s.method(), s.status()) {
        (Some(m), None) => m.to_string(),
        (None, Some(c)) => c.to_string(),
        _ => unreachable!(),
    }
}

fn counts<I: IntoIterator<Item = String>>(it: I) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for k in it {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

fn map(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

const CALL_IDS: [&str; 6] = [
    "578222729-4665d775@578222732-4665d772",
    "105090259-446faf7a@192.168.1.2",
    "85216695-42dcdb1d@192.168.1.2",
    "29858147-465b0752@29858051-465b07b2",
    "24487391-449bf2a0@192.168.1.2",
    "11894297-4432a9f8@192.168.1.2",
];

/// Per message, in capture order (tshark): method or status, CSeq number,
/// CSeq method, index into `CALL_IDS`.
const SNGREP_6CALLS: [(&str, u32, &str, usize); 81] = [
    ("REGISTER", 68, "REGISTER", 0),
    ("401", 68, "REGISTER", 0),
    ("REGISTER", 69, "REGISTER", 0),
    ("100", 69, "REGISTER", 0),
    ("403", 69, "REGISTER", 0),
    ("REGISTER", 70, "REGISTER", 0),
    ("401", 70, "REGISTER", 0),
    ("REGISTER", 71, "REGISTER", 0),
    ("401", 71, "REGISTER", 0),
    ("REGISTER", 72, "REGISTER", 0),
    ("401", 72, "REGISTER", 0),
    ("REGISTER", 73, "REGISTER", 0),
    ("401", 73, "REGISTER", 0),
    ("REGISTER", 74, "REGISTER", 0),
    ("401", 74, "REGISTER", 0),
    ("REGISTER", 75, "REGISTER", 0),
    ("100", 75, "REGISTER", 0),
    ("200", 75, "REGISTER", 0),
    ("INVITE", 1, "INVITE", 1),
    ("INVITE", 1, "INVITE", 1),
    ("INVITE", 1, "INVITE", 1),
    ("100", 1, "INVITE", 1),
    ("CANCEL", 1, "CANCEL", 1),
    ("CANCEL", 1, "CANCEL", 1),
    ("CANCEL", 1, "CANCEL", 1),
    ("408", 1, "INVITE", 1),
    ("ACK", 1, "ACK", 1),
    ("CANCEL", 1, "CANCEL", 1),
    ("CANCEL", 1, "CANCEL", 1),
    ("CANCEL", 1, "CANCEL", 1),
    ("CANCEL", 1, "CANCEL", 1),
    ("CANCEL", 1, "CANCEL", 1),
    ("CANCEL", 1, "CANCEL", 1),
    ("CANCEL", 1, "CANCEL", 1),
    ("CANCEL", 1, "CANCEL", 1),
    ("408", 1, "CANCEL", 1),
    ("INVITE", 1, "INVITE", 2),
    ("INVITE", 1, "INVITE", 2),
    ("INVITE", 1, "INVITE", 2),
    ("407", 1, "INVITE", 2),
    ("ACK", 1, "ACK", 2),
    ("INVITE", 2, "INVITE", 2),
    ("403", 2, "INVITE", 2),
    ("ACK", 2, "ACK", 2),
    ("REGISTER", 76, "REGISTER", 0),
    ("401", 76, "REGISTER", 0),
    ("REGISTER", 77, "REGISTER", 0),
    ("401", 77, "REGISTER", 0),
    ("REGISTER", 78, "REGISTER", 0),
    ("401", 78, "REGISTER", 0),
    ("REGISTER", 79, "REGISTER", 0),
    ("401", 79, "REGISTER", 0),
    ("REGISTER", 1, "REGISTER", 3),
    ("401", 1, "REGISTER", 3),
    ("REGISTER", 2, "REGISTER", 3),
    ("100", 2, "REGISTER", 3),
    ("200", 2, "REGISTER", 3),
    ("REGISTER", 3, "REGISTER", 3),
    ("401", 3, "REGISTER", 3),
    ("INVITE", 1, "INVITE", 4),
    ("407", 1, "INVITE", 4),
    ("ACK", 1, "ACK", 4),
    ("REGISTER", 4, "REGISTER", 3),
    ("401", 4, "REGISTER", 3),
    ("INVITE", 2, "INVITE", 4),
    ("100", 2, "INVITE", 4),
    ("403", 2, "INVITE", 4),
    ("ACK", 2, "ACK", 4),
    ("INVITE", 1, "INVITE", 5),
    ("407", 1, "INVITE", 5),
    ("ACK", 1, "ACK", 5),
    ("INVITE", 2, "INVITE", 5),
    ("100", 2, "INVITE", 5),
    ("183", 2, "INVITE", 5),
    ("480", 2, "INVITE", 5),
    ("ACK", 2, "ACK", 5),
    ("REGISTER", 5, "REGISTER", 3),
    ("401", 5, "REGISTER", 3),
    ("REGISTER", 6, "REGISTER", 3),
    ("100", 6, "REGISTER", 3),
    ("200", 6, "REGISTER", 3),
];

#[test]
fn sngrep_6calls_every_message_parses_in_order() {
    let payloads = udp_5060_payloads("sngrep-aaa-6calls.pcap");
    // 81 SIP messages plus 21 five-space NAT keep-alives on port 5060.
    assert_eq!(payloads.len(), 102);
    let msgs = parse_all("sngrep-aaa-6calls.pcap");
    assert_eq!(msgs.len(), 81, "every SIP message must parse");
    for (i, (s, want)) in msgs.iter().zip(SNGREP_6CALLS.iter()).enumerate() {
        let got = (
            start_of(s),
            s.cseq_num,
            s.cseq_method.as_deref(),
            s.call_id.as_deref(),
        );
        let want = (
            want.0.to_string(),
            Some(want.1),
            Some(want.2),
            Some(CALL_IDS[want.3]),
        );
        assert_eq!(got, want, "message #{i}");
    }
}

#[test]
fn sngrep_6calls_counts_match_tshark() {
    let msgs = parse_all("sngrep-aaa-6calls.pcap");

    let ids = counts(
        msgs.iter()
            .map(|s| s.call_id.as_deref().unwrap().to_string()),
    );
    assert_eq!(
        ids,
        map(&[
            ("105090259-446faf7a@192.168.1.2", 18),
            ("11894297-4432a9f8@192.168.1.2", 8),
            ("24487391-449bf2a0@192.168.1.2", 7),
            ("29858147-465b0752@29858051-465b07b2", 14),
            ("578222729-4665d775@578222732-4665d772", 26),
            ("85216695-42dcdb1d@192.168.1.2", 8),
        ])
    );
    assert_eq!(ids.len(), 6);

    let methods = counts(msgs.iter().filter_map(|s| s.method().map(str::to_string)));
    assert_eq!(
        methods,
        map(&[("ACK", 7), ("CANCEL", 11), ("INVITE", 11), ("REGISTER", 18)])
    );
    let statuses = counts(
        msgs.iter()
            .filter_map(|s| s.status().map(|c| c.to_string())),
    );
    assert_eq!(
        statuses,
        map(&[
            ("100", 7),
            ("183", 1),
            ("200", 3),
            ("401", 14),
            ("403", 3),
            ("407", 3),
            ("408", 2),
            ("480", 1),
        ])
    );
    let cseq_methods = counts(
        msgs.iter()
            .map(|s| s.cseq_method.as_deref().unwrap().to_string()),
    );
    assert_eq!(
        cseq_methods,
        map(&[("ACK", 7), ("CANCEL", 12), ("INVITE", 22), ("REGISTER", 40)])
    );

    // R-URI user and host of the 47 requests.
    let ruri = counts(msgs.iter().filter(|s| s.method().is_some()).map(|s| {
        format!(
            "{}@{}",
            s.ruri_user().unwrap_or(""),
            s.ruri_domain().unwrap_or("")
        )
    }));
    assert_eq!(
        ruri,
        map(&[
            ("@sip.cybercity.dk", 18),
            ("0097239287044@sip.cybercity.dk", 10),
            ("35104724@sip.cybercity.dk", 4),
            ("97239287044@voip.brujula.net", 15),
        ])
    );

    let from_to = counts(msgs.iter().map(|s| {
        format!(
            "{}>{}",
            s.from_user.as_deref().unwrap_or(""),
            s.to_user.as_deref().unwrap_or("")
        )
    }));
    assert_eq!(
        from_to,
        map(&[
            ("35104723>0097239287044", 7),
            ("35104723>35104723", 18),
            ("35104723>35104724", 8),
            ("816666>97239287044", 18),
            ("voi18062>0097239287044", 8),
            ("voi18062>voi18062", 13),
            ("voi18063>voi18063", 9),
        ])
    );

    assert_eq!(msgs.iter().filter(|s| s.from_tag.is_some()).count(), 81);
    assert_eq!(msgs.iter().filter(|s| s.to_tag.is_some()).count(), 34);
    let from_tags = counts(
        msgs.iter()
            .map(|s| s.from_tag.as_deref().unwrap().to_string()),
    );
    assert_eq!(from_tags.len(), 22);
    assert_eq!(from_tags["6433ef9"], 18);
    assert_eq!(from_tags["51449dc"], 8);
    let to_tags = counts(
        msgs.iter()
            .filter_map(|s| s.to_tag.as_deref().map(str::to_string)),
    );
    assert_eq!(to_tags.len(), 26);
    assert_eq!(to_tags["00-04075-1701baa2-2dfdf7c21"], 3);
    assert_eq!(to_tags["a6a1c5f60faecf035a1ae5b6e96e979a-6167"], 2);

    let ua = counts(
        msgs.iter()
            .filter_map(|s| s.user_agent.as_deref().map(str::to_string)),
    );
    assert_eq!(ua, map(&[("Nero SIPPS IP Phone Version 2.0.51.16", 40)]));
}

/// The SIP of the Kamailio call (sipp UAC -> Kamailio -> sipp UAS): 13
/// messages, checked field by field against tshark.
#[test]
fn kamailio_call_fields_match_tshark() {
    let msgs = parse_all("kamailio-call-sip.pcap");
    let want: [(&str, &str); 13] = [
        ("INVITE", "1 INVITE"),
        ("100", "1 INVITE"),
        ("INVITE", "1 INVITE"),
        ("180", "1 INVITE"),
        ("180", "1 INVITE"),
        ("200", "1 INVITE"),
        ("200", "1 INVITE"),
        ("ACK", "1 ACK"),
        ("ACK", "1 ACK"),
        ("BYE", "2 BYE"),
        ("BYE", "2 BYE"),
        ("200", "2 BYE"),
        ("200", "2 BYE"),
    ];
    assert_eq!(msgs.len(), 13);
    for (i, (s, (start, cseq))) in msgs.iter().zip(want).enumerate() {
        assert_eq!(start_of(s), start, "message #{i}");
        let got_cseq = format!(
            "{} {}",
            s.cseq_num.unwrap(),
            s.cseq_method.as_deref().unwrap()
        );
        assert_eq!(got_cseq, cseq, "message #{i}");
        assert_eq!(s.call_id.as_deref(), Some("1-15641@127.0.0.1"));
        assert_eq!(s.from_user.as_deref(), Some("sipp"));
        assert_eq!(s.from_tag.as_deref(), Some("15641SIPpTag001"));
        assert_eq!(s.to_user.as_deref(), Some("service"));
        // The To tag appears with the 180 (message #3) and stays.
        let to_tag = if i >= 3 {
            Some("15620SIPpTag011")
        } else {
            None
        };
        assert_eq!(s.to_tag.as_deref(), to_tag, "message #{i}");
        if s.method().is_some() {
            assert_eq!(s.ruri_user(), Some("service"));
            assert_eq!(s.ruri_domain(), Some("127.0.0.1"));
        } else {
            assert_eq!(s.ruri_user(), None);
        }
        // tshark: no User-Agent header in this call (Kamailio sends Server).
        assert_eq!(s.user_agent, None);
    }
    assert_eq!(
        msgs[1].reason(),
        Some("trying -- your call is important to us")
    );
}

/// Values are slices of the payload buffer, not copies.
#[test]
fn values_are_slices_of_the_payload() {
    let payloads = udp_5060_payloads("kamailio-call-sip.pcap");
    let p = &payloads[0];
    let s = SipSummary::parse(p).unwrap();
    let range = p.as_ptr() as usize..p.as_ptr() as usize + p.len();
    for v in [
        s.call_id.as_ref(),
        s.cseq_method.as_ref(),
        s.from_user.as_ref(),
        s.from_tag.as_ref(),
        s.to_user.as_ref(),
    ] {
        let v = v.unwrap();
        assert!(
            range.contains(&(v.as_bytes().as_ptr() as usize)),
            "{v:?} is a copy"
        );
    }
}
