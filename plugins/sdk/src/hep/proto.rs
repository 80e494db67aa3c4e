//! Protocol type numbers (chunk 0x0b) and their names.

/// The name of a protocol type number, lower case ("sip", "rtcp", "log").
pub fn proto_type_name(n: u8) -> Option<&'static str> {
    Some(match n {
        1 => "sip",
        2 => "xmpp",
        3 => "sdp",
        4 => "rtp",
        5 => "rtcp",
        6 => "mgcp",
        7 => "megaco",
        8 => "m2ua",
        9 => "m3ua",
        10 => "iax",
        11 => "h322",
        12 => "h321",
        13 => "m2pa",
        34 => "mos_full",
        35 => "mos_short",
        50 => "sip_json",
        53 => "dns",
        54 => "m3ua_json",
        55 => "rtsp",
        56 => "diameter",
        57 => "gsm_map",
        58 => "rtcp_pion",
        60 => "cdr",
        61 => "verto",
        100 => "log",
        _ => return None,
    })
}

/// The protocol type number for a name (case-insensitive) or a decimal number.
pub fn proto_type_from_name(s: &str) -> Option<u8> {
    if let Ok(n) = s.parse::<u8>() {
        return Some(n);
    }
    let lower = s.to_ascii_lowercase();
    (0..=255u8).find(|&n| proto_type_name(n) == Some(lower.as_str()))
}
