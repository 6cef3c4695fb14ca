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

echo "== tests"
cargo test --workspace -- --nocapture
echo "== all tests passed"
