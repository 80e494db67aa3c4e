// Shared by the root crate's and the elasticsearch plugin's build.rs
// (`include!`d): decides whether the live-server tests are compiled.
//
// The tests that need the real servers `tests/services/services.sh`
// starts (their `HEPFLOW_TEST_*` variables) carry `#![cfg(live_services)]`.
// They are compiled when those variables are in the environment (the
// services' env file was sourced) or under CI (`CI` set: `.ci/run`, where
// a missing variable must fail the test, not skip it). Otherwise a bare
// `cargo test` leaves them out and says so in a build warning.

fn live_services() {
    println!("cargo::rustc-check-cfg=cfg(live_services)");
    println!("cargo::rerun-if-env-changed=HEPFLOW_TEST_OSMEM_URL");
    println!("cargo::rerun-if-env-changed=CI");
    let configured = std::env::var_os("HEPFLOW_TEST_OSMEM_URL").is_some();
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    if configured || ci {
        println!("cargo::rustc-cfg=live_services");
    } else {
        println!(
            "cargo::warning=live-server tests left out (no HEPFLOW_TEST_* variables): \
             run `bash tests/services/services.sh install && bash tests/services/services.sh start`, \
             then `set -a; . /tmp/hepflow-services/env; set +a` (or `bash tests/run.sh`) to run them"
        );
    }
}
