//! Fuzz target `sip_parse`: any bytes as a SIP payload into the summary
//! parser (`SipSummary::parse`, what routes and sinks read: method,
//! status, Call-ID, CSeq, From/To, R-URI, User-Agent). Beyond "never
//! panics": what it finds is valid UTF-8 text and comes from the input.
#![no_main]

use bytes::Bytes;
use hepflow_sdk::sip::SipSummary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    if let Some(s) = SipSummary::parse(&payload) {
        if let Some(id) = s.call_id.as_ref() {
            let id: &[u8] = id.as_bytes();
            assert!(
                data.windows(id.len().max(1)).any(|w| w == id) || id.is_empty(),
                "a Call-ID the payload does not hold"
            );
        }
        let _ = format!("{s:?}");
    }
});
