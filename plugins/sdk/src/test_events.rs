//! Events that carry their number, for tests of queues and sinks that
//! check order and exactly-once delivery (feature `test-support`).

use crate::{Event, HepMessage};

/// Event `i`: a HEPv3 message whose payload names it.
pub fn numbered(i: usize) -> Event {
    let msg = HepMessage::new_v3(bytes::Bytes::from(format!("m{i}")));
    Event::received_over_udp(
        &msg,
        "192.0.2.1:5060".parse().unwrap(),
        std::time::SystemTime::now(),
    )
    .unwrap()
}

/// The number [`numbered`] gave `ev`.
pub fn number(ev: &Event) -> usize {
    std::str::from_utf8(&ev.hep().payload[1..])
        .unwrap()
        .parse()
        .unwrap()
}
