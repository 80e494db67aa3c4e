//! The JSON event document: one per message, written by the file sink as
//! NDJSON and indexed by the Elasticsearch sink. Defined once, here.
//! (Implemented by the SIP/document work item.)

use crate::Event;

/// Append the event document of `ev` as one line of compact JSON (no
/// trailing newline) to `out`.
pub fn write_document(ev: &Event, out: &mut Vec<u8>) {
    let _ = (ev, out);
}
