#!/usr/bin/env bash
# The project's whole test run, on a fresh Debian machine with only the Rust
# toolchain: installs what the tests need (Debian packages, a Python venv,
# npm packages), starts the real backend servers on loopback, checks
# formatting and lints, runs every test, and stops the servers.
set -euo pipefail
cd "$(dirname "$0")/.."

export HEPFLOW_SERVICES_DIR="${HEPFLOW_SERVICES_DIR:-/tmp/hepflow-services}"
services=tests/services/services.sh

echo "== installing test dependencies"
bash "$services" install
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== starting backend servers"
bash "$services" start
trap 'bash "$services" stop >/dev/null 2>&1 || true' EXIT
set -a
# shellcheck disable=SC1091
. "$HEPFLOW_SERVICES_DIR/env"
set +a

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
log=$(mktemp)
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary,
# the last of which is often a crate's empty doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"

# A short run of every fuzz target (cargo-fuzz with the stable compiler's
# RUSTC_BOOTSTRAP, AddressSanitizer): a crash fails the run. Long runs are
# recorded in fuzz/README.md.
echo "== fuzz smoke"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
for target in decode spool_read tcp_frame sip_parse; do
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time=20 -print_final_stats=1 2>&1 |
        grep -E "^(Done|stat::number_of_executed_units)|ERROR|panicked") || status=1
done
exit "$status"
