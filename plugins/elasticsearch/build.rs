//! Build script: compile the live-server tests only where their servers
//! are configured (see `build/live_services.rs` at the repository root).

include!("../../build/live_services.rs");

fn main() {
    live_services();
}
