#!/usr/bin/env bash
# Runs every test of webswitch, as root on a fresh machine: installs what is missing,
# checks formatting and lints, builds, then runs the unit, DPDK and end-to-end tests
# (the latter bring up their own netns testbeds and take them down by name).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
    echo "test-all.sh: run as root (network namespaces and the DPDK EAL need it)" >&2
    exit 1
fi
bash dpdk-env/scripts/deps.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

export WS_REQUIRE_ROOT=1
export CARGO_TERM_COLOR=never

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== build"
cargo build --workspace --all-targets
# The end-to-end tests run the release binary: the build the README's demo runs and
# operators deploy, and fast enough that a burst of 1000 connections does not overflow
# net_af_packet's receive ring behind a debug build's slow loop.
cargo build --release -p webswitch
export WEBSWITCH_BIN="$PWD/target/release/webswitch"
# The harness's e2e test drives the switch over memif with the release load generator.
cargo build --release -p webswitch-bench --bin webswitch-bench
export WEBSWITCH_BENCH_BIN="$PWD/target/release/webswitch-bench"

echo "== tests"
# The whole output is kept, and on a failure its panics are printed again at the end:
# CI shows only the head and the tail of what a run printed, and a failing test's own
# message is otherwise lost in the middle of the switch's counter dumps.
log="$(mktemp /tmp/webswitch-test-all.XXXXXX.log)"
if ! cargo test --workspace -- --nocapture 2>&1 | tee "$log"; then
    echo "== tests failed; their panics (the mgmt mock's deliberate one left out):"
    awk '
        function show() { if (blk != "" && blk !~ /mock panics on purpose/) print blk "\n--"; blk = "" }
        /panicked at/ { show(); blk = $0; n = 12; next }
        n > 0 { blk = blk "\n" $0; if (--n == 0) show() }
        END { show() }
    ' "$log" | head -n 300 || true
    echo "== failing tests:"
    grep -E "^    [a-z_0-9:]+$|^error: test failed" "$log" | head -n 40 || true
    echo "(whole output: $log)"
    exit 1
fi
rm -f "$log"
echo "== all tests passed"
