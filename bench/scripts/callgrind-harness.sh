#!/usr/bin/env bash
# Instructions webswitch spends per spliced packet and per connection under a fixed
# webswitch-bench load over net_memif, counted by callgrind inside the worker loop's packet
# functions only (Worker::handle_burst, Worker::flush, and the timers: Worker::sweep,
# Worker::fire_timer, ConnTable::expire; not the empty iterations of the loop),
# as callgrind-splice.sh does on the netns testbed. Valgrind counts instructions, which do not
# drift with machine noise; no kernel is involved with memif, so nothing is missing from the
# count but the PMD's rx copy (rte_eth_rx_burst is called from Worker::run, outside the
# collected functions).
#
#   idle       start, IDLE_S s with no harness, stop: the baseline, subtracted from every
#              other run in proportion to its length
#   conns      open loop, RATE new connections/s for LOAD_S s, one GET of a 1 KB object each:
#              per connection = (run - idle) / conns_accepted
#   data       closed loop, 2 connections, keep-alive GETs of 64 KB objects for LOAD_S s:
#              per spliced packet = (run - idle) / (spliced_packets_c2b + spliced_packets_b2c)
#
# Usage (root): bash bench/scripts/callgrind-harness.sh     (about 2 minutes)
#   RATE=200 LOAD_S=5 IDLE_S=5 RUNS="idle conns data" KEEP=1 TOP=12
#   CLUSTER=1: the switch as a cluster member whose one peer never answers (issue 17's
#   per-packet and per-connection cost of membership, without a receiver)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RATE=${RATE:-200}
LOAD_S=${LOAD_S:-5}
IDLE_S=${IDLE_S:-5}
RUNS=${RUNS:-idle conns data}
BIN=${WEBSWITCH:-$ROOT/target/release/webswitch}
BENCH=${BENCH:-$ROOT/target/release/webswitch-bench}
SOCK=/run/webswitch-bench
PREFIX=wsb-cg
OUT=$(mktemp -d /tmp/webswitch-cgharness.XXXXXX)
PID=
# shellcheck source=bench/scripts/lib.sh
. "$ROOT/bench/scripts/lib.sh"
cleanup() {
    if [ -n "$PID" ]; then
        kill -TERM "$PID" 2>/dev/null && sleep 3
        kill -KILL "$PID" 2>/dev/null || true
    fi
    rm -f "$SOCK/client.sock" "$SOCK/server.sock"
    rm -rf "/run/dpdk/$PREFIX" "/run/dpdk/$PREFIX-h"
    if [ -n "${KEEP:-}" ]; then echo "raw outputs kept in $OUT"; else rm -rf "$OUT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -x "$BIN" ] || [ ! -x "$BENCH" ]; then
    (cd "$ROOT" && cargo build --release -q -p webswitch -p webswitch-bench)
fi
mkdir -p "$SOCK"
sed -e "s|\"file_prefix\": \"webswitch-memif\"|\"file_prefix\": \"$PREFIX\"|" \
    examples/memif.json >"$OUT/config.json"
if [ -n "${CLUSTER:-}" ]; then
    # Issue 17: the same loads on a cluster member (cluster.members: this instance and a
    # second one at an address nobody holds, so it is never heard): every segment pays the
    # cluster's checks (ownership of new flows, the standby table on a miss, the sync
    # check after each segment), and each splice builds its record, which no live member
    # is there to receive.
    python3 - "$OUT/config.json" <<'PY'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
own = c["ports"][0]["addresses"][0].split("/")[0]
peer = own.rsplit(".", 1)[0] + ".250"
c["cluster"] = {"members": [{"name": "sw1", "address": own}, {"name": "sw2", "address": peer}]}
json.dump(c, open(path, "w"), indent=1)
PY
fi

start() { cg_start "$OUT/config.json" "$1"; } # $1: callgrind output file
stop() { cg_stop; }
counted() { final_counted "$@"; } # counter names from final_stats, summed
harness() { # run name, then load arguments
    local name=$1
    shift
    "$BENCH" --file-prefix "$PREFIX-h" --cpu 0 --quiet --no-plots --rto-ms 1000 --timeout-ms 20000 \
        --client-dev "net_memif0,role=client,id=0,socket=$SOCK/client.sock,socket-abstract=no" \
        --server-dev "net_memif1,role=client,id=0,socket=$SOCK/server.sock,socket-abstract=no" \
        --link-timeout 60 --strict --json "$OUT/$name.json" "$@" >"$OUT/$name.txt" 2>&1 || {
        cat "$OUT/$name.txt" >&2
        echo "harness run $name failed" >&2
        exit 1
    }
}

declare -A IR DEN SECS
for run in $RUNS; do
    wait_for_builds
    start "$OUT/cg.$run"
    t0=$(date +%s%3N)
    case $run in
    idle) sleep "$IDLE_S" ;;
    conns) harness conns --rate "$RATE" --duration "$LOAD_S" --requests-per-conn 1 --sizes 1024 ;;
    data) harness data --concurrency 2 --requests-per-conn 1000000 --sizes 65536 --duration "$LOAD_S" ;;
    *) echo "unknown run $run" >&2; exit 2 ;;
    esac
    stop
    SECS[$run]=$(($(date +%s%3N) - t0))
    IR[$run]=$(cg_instr "$OUT/cg.$run")
    case $run in
    conns) DEN[$run]=$(counted conns_accepted) ;;
    data) DEN[$run]=$(counted spliced_packets_b2c spliced_packets_c2b) ;;
    *) DEN[$run]=1 ;;
    esac
    echo "run $run: ${IR[$run]} instructions in ${SECS[$run]} ms; conns_accepted $(counted conns_accepted)," \
        "spliced packets c2b+b2c $(counted spliced_packets_b2c spliced_packets_c2b), rx_packets $(counted rx_packets)," \
        "drops $(counted drops_total)"
    [ -e "$OUT/$run.txt" ] && grep -E 'requests  |errors  ' "$OUT/$run.txt"
done
echo
for run in $RUNS; do
    case $run in
    conns) what="per connection (new connection, one GET of 1 KB; ${DEN[$run]} connections)" ;;
    data) what="per spliced packet (keep-alive GETs of 64 KB; ${DEN[$run]} packets c2b+b2c)" ;;
    *) continue ;;
    esac
    base=$((${IR[idle]:-0} * SECS[$run] / (${SECS[idle]:-1} > 0 ? ${SECS[idle]:-1} : 1)))
    [ "${DEN[$run]}" -gt 0 ] || { echo "$run: nothing counted" >&2; continue; }
    printf '%-7s %8d instructions %s\n' "$run:" $(((IR[$run] - base) / DEN[$run])) "$what"
done
