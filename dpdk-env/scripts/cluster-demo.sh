#!/usr/bin/env bash
# Two webswitch instances behind an ECMP router, as root on a fresh machine (issue 17):
# the cluster testbed (testbed.sh up --cluster: a router and a client namespace, BIRD on
# the router and on each instance's exception TAP), both instances on examples/cluster.json,
# the router's route to the VIP with one next hop per instance, requests spread over both,
# then a keep-alive load while instance 2 is withdrawn and announced again (no request
# fails: the segments the router now sends elsewhere are handed to their owner), and a
# SIGKILL of instance 2 in the middle of 10 MiB downloads and uploads: the router drops it
# within BFD's 300 ms, instance 1 adopts the connections instance 2 had spliced (their
# records were pushed to it) and takes over its backend-facing address; every transfer
# completes byte-exact. Everything is taken down at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

if [ "$(id -u)" -ne 0 ]; then
    echo "cluster-demo.sh: run as root (network namespaces and the DPDK EAL need it)" >&2
    exit 1
fi
bash dpdk-env/scripts/deps.sh >/dev/null
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

export WS_TESTBED=${WS_TESTBED:-wsc}
export WS_NET=${WS_NET:-98}
TB=dpdk-env/scripts/testbed.sh
OUT=$(mktemp -d /tmp/webswitch-cluster-demo.XXXXXX)
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "/run/dpdk/demo-$WS_TESTBED-1" "/run/dpdk/demo-$WS_TESTBED-2"
    rm -f "/run/webswitch/demo-$WS_TESTBED-1.sock" "/run/webswitch/demo-$WS_TESTBED-2.sock"
    bash "$ROOT/$TB" down >/dev/null 2>&1 || true
    rm -rf "$OUT"
}
trap cleanup EXIT

echo "== building webswitch (release)"
cargo build --release -q -p webswitch -p mgmt

echo "== bringing up the cluster testbed ($WS_TESTBED, 10.$WS_NET.x.x)"
bash $TB up --cluster | tail -n 12
eval "$(bash $TB env)"
VIP=$WS_CLUSTER_VIP
CTL=target/release/webswitchctl

# Instance i's config: examples/cluster.json on this testbed (dpdk-env/scripts/cluster-config.py).
config() {
    python3 dpdk-env/scripts/cluster-config.py "$1" "$WS_NET" "$WS_TESTBED" "demo-$WS_TESTBED" "$OUT/instance$1.json"
}

start() { # instance
    local ns=$WS_NS_SW
    [ "$1" = 2 ] && ns=$WS_CLUSTER_SW2_NS
    config "$1"
    ip netns exec "$ns" target/release/webswitch run --config "$OUT/instance$1.json" \
        >"$OUT/events$1" 2>"$OUT/log$1" &
    PIDS[$1]=$!
    for _ in $(seq 300); do
        grep -q '"event":"ready"' "$OUT/events$1" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$OUT/log$1"
    echo "instance $1 did not become ready" >&2
    exit 1
}

hops() { ip netns exec "$WS_CLUSTER_ROUTER_NS" ip -4 route show "$VIP" | grep -c 'via' || true; }
await_hops() { # count, within seconds
    for _ in $(seq $(($2 * 20))); do [ "$(hops)" = "$1" ] && return 0; sleep 0.05; done
    echo "the router has $(hops) next hops for $VIP, not $1" >&2
    exit 1
}
accepted() { $CTL -s "/run/webswitch/demo-$WS_TESTBED-$1.sock" --json stats | jq '.total.conns_accepted'; }
load() { # seconds -> JSON totals in $OUT/load
    ip netns exec "$WS_CLUSTER_CLIENT_NS" python3 tests/tools/keepalive_load.py "$VIP" 80 /whoami 16 "$1" >"$OUT/load"
}

echo
echo "== starting instance 1 in $WS_NS_SW and instance 2 in $WS_CLUSTER_SW2_NS"
start 1
start 2
await_hops 2 20
echo "the router's route to the VIP, learned from both instances' BIRD over BGP:"
ip netns exec "$WS_CLUSTER_ROUTER_NS" ip route show "$VIP" | sed 's/^/  /'
echo "instance 1's view of the cluster:"
$CTL -s "/run/webswitch/demo-$WS_TESTBED-1.sock" --json cluster |
    jq -c '.membership.members[] | {name, live, share, heard_ms_ago}' | sed 's/^/  /'

echo
echo "== 40 new connections from $WS_CLUSTER_CLIENT_IP through the router"
for i in $(seq 40); do
    ip netns exec "$WS_CLUSTER_CLIENT_NS" curl -s --max-time 5 -o /dev/null "http://$VIP/whoami" || echo "request $i failed"
done
echo "  accepted by instance 1: $(accepted 1), by instance 2: $(accepted 2)"

echo
echo "== keep-alive load (16 connections, 8 s) while instance 2 is withdrawn and announced again"
load 8 &
LOAD=$!
sleep 2
$CTL -s "/run/webswitch/demo-$WS_TESTBED-2.sock" cluster withdraw | sed 's/^/  /'
await_hops 1 10
echo "  the router now sends everything to instance 1 ($(hops) next hop)"
sleep 2
$CTL -s "/run/webswitch/demo-$WS_TESTBED-2.sock" cluster announce >/dev/null
await_hops 2 10
echo "  instance 2 announced again ($(hops) next hops)"
wait "$LOAD"
echo "  load: $(cat "$OUT/load")"

echo
echo "== 6 GETs and 6 PUTs of 10 MiB (paced to 2 MB/s each), and instance 2 killed (SIGKILL) at half time"
ip netns exec "$WS_CLUSTER_CLIENT_NS" python3 tests/tools/transfers.py "$VIP" 6 6 /big/10M.bin \
    10485760 2097152 demo >"$OUT/transfers" &
XFER=$!
sleep 2.5
echo "  instance 2 holds $($CTL -s "/run/webswitch/demo-$WS_TESTBED-2.sock" --json stats | jq '.total.cluster_sync_sent') shared splices; killing it"
T0=$(date +%s%N)
kill -KILL "${PIDS[2]}"
await_hops 1 10
echo "  the router dropped instance 2 after $((($(date +%s%N) - T0) / 1000000)) ms (BFD through the exception path)"
wait "$XFER"
# Each transfer against the file the backend that served it holds (GETs) or wrote (PUTs).
jq -r '.transfers[] | [.kind, .path, (.ok | tostring), .backend, .sha256, (.error // "")] | @tsv' "$OUT/transfers" |
    while IFS=$'\t' read -r kind path ok be sha err; do
        if [ "$ok" != true ]; then echo "  $kind $path FAILED: $err"; continue; fi
        if [ "$kind" = get ]; then f=/tmp/$WS_TESTBED-testbed/$be/www/big/10M.bin; else f=/tmp/$WS_TESTBED-testbed/$be/www$path; fi
        if [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sha" ]; then r=byte-exact; else r="SHA256 DIFFERS"; fi
        echo "  $kind $path via $be: $r"
    done
S1=/run/webswitch/demo-$WS_TESTBED-1.sock
echo "  instance 1 adopted $($CTL -s "$S1" --json stats | jq '.total.cluster_adopted') of instance 2's connections and took over its backend-facing address ($($CTL -s "$S1" --json stats | jq '.total.cluster_addresses_taken'))"
for i in $(seq 20); do
    ip netns exec "$WS_CLUSTER_CLIENT_NS" curl -s --max-time 5 -o /dev/null "http://$VIP/whoami" || echo "request $i failed"
done
echo "  20 new connections after the kill: served (instance 1 accepted $(accepted 1) in all)"

echo
echo "== stopping instance 1"
kill -TERM "${PIDS[1]}"
wait "${PIDS[1]}" || true
tail -n 3 "$OUT/log1" | sed 's/^/  /'
echo "== done"
