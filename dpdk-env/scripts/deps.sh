#!/usr/bin/env bash
# deps.sh: install what webswitch needs on a fresh Debian 12 machine (run as root).
#
# Idempotent: only packages that are not installed are passed to apt-get, and
# `apt-get update` runs only when something is missing. Afterwards it makes sure
# `cargo` is reachable and prints the versions of the tools the project uses.
#
# Usage: dpdk-env/scripts/deps.sh [--check]
#   --check   only report what is missing; install nothing (exit 1 if anything is)
set -euo pipefail

PACKAGES=(
    # DPDK 22.11 LTS and what bindgen needs to read its headers
    dpdk dpdk-dev libdpdk-dev pkg-config libclang-dev clang
    # the netns testbed: namespaces, veths, offloads, impairment (nftables/iptables NFQUEUE)
    iproute2 ethtool nftables iptables tcpdump procps psmisc
    # real clients and backends, and the peers the benchmarks compare against
    nginx-light haproxy wrk curl iputils-ping arping python3 jq
    # instruction counts per packet
    valgrind
    # the web listener's end-to-end tests: a real Prometheus (and promtool), headless Chromium
    prometheus chromium
    # the cluster testbed: a real BGP daemon on each instance and on the ECMP router, and
    # memcached (the state store of cluster.state_store) on the router
    bird2 memcached
)

check_only=0
case "${1:-}" in
    --check) check_only=1 ;;
    "") ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "deps.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

if [[ $(id -u) -ne 0 && $check_only -eq 0 ]]; then
    echo "deps.sh: must run as root (apt-get install)" >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [[ $status != installed ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "deps.sh: all ${#PACKAGES[@]} packages already installed"
elif ((check_only)); then
    echo "deps.sh: missing: ${missing[*]}"
    exit 1
else
    echo "deps.sh: installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
fi

# The nginx-light and haproxy packages may start their default services in the
# root namespace (nginx on port 80). The testbed runs its own nginx instances
# inside namespaces and never needs these, so stop them if they are running.
stop_default_service() {
    local name=$1 pidfile=$2
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        systemctl stop "$name" 2>/dev/null || true
        systemctl disable "$name" 2>/dev/null || true
    fi
    if [[ -s $pidfile ]]; then
        pkill -F "$pidfile" 2>/dev/null || true
    fi
}
if ((check_only == 0)); then
    stop_default_service nginx /run/nginx.pid
    stop_default_service haproxy /run/haproxy.pid
    # prometheus: the tests start their own, inside the switch namespace
    stop_default_service prometheus /run/prometheus/prometheus.pid
    # bird: the cluster testbed starts its own, one per namespace
    stop_default_service bird /run/bird/bird.pid
fi

# cargo: rustup installs into ~/.cargo; make it reachable for this shell.
if ! command -v cargo >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

ver() { # name, command...
    local name=$1; shift
    local out
    if out=$("$@" 2>&1 | head -n1); then
        printf '  %-12s %s\n' "$name" "$out"
    else
        printf '  %-12s (not available)\n' "$name"
    fi
}

echo "versions:"
ver libdpdk pkg-config --modversion libdpdk
ver clang clang --version
ver nginx nginx -v
ver haproxy haproxy -v
ver wrk sh -c 'wrk -v 2>&1 | head -n1; true'
ver curl curl --version
ver ethtool ethtool --version
ver nft nft --version
ver iptables iptables --version
ver valgrind valgrind --version
ver jq jq --version
ver bird bird --version
ver python3 python3 --version
ver ip ip -V
if command -v cargo >/dev/null 2>&1; then
    ver cargo cargo --version
    ver rustc rustc --version
else
    echo "  cargo        NOT FOUND: install Rust with rustup (https://rustup.rs) and re-run" >&2
    exit 1
fi
