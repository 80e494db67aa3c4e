//! Build script: compile the live-server tests only where their servers
//! are configured (see `tests/services/live_services.rs` at the repository root).

include!("../../tests/services/live_services.rs");

fn main() {
    live_services();
}
