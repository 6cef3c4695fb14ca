#!/usr/bin/env bash
# What sharing splice state costs (issue 17, "Benchmark"), for each design, on the cluster
# testbed (`testbed.sh up --cluster`), in one run. Instance 2 is withdrawn (`cluster
# withdraw`), so the router sends every flow to instance 1, which splices every connection;
# what differs between the rows is only where instance 1's splice records go:
#   alone:  instance 2 stopped: nothing to share with (no record leaves);
#   push:   a record per splice (and a forget per close) to instance 2, on the members' port;
#   store:  both restarted with `cluster.state_store`: records written to the testbed's
#           memcached by instance 1's store thread.
# For each, LAT_N new connections one at a time from the router's client (curl: time to first
# byte, p50 and p90), then a load of CONNS clients opening a new connection per request
# (tests/tools/keepalive_load.py ... close) for DURATION s: requests per second, records per
# connection, instance 1's busy cycles per request (TSC in poll-loop iterations that did work),
# instance 2's (receiving the records), and the store thread's CPU time per request (from
# /proc: utime + stime of the thread named ws-store).
#
# Usage (root): bash bench/scripts/cluster-sync.sh [OUT_DIR]
#   WS_TESTBED (csb), WS_NET (244), LAT_N (300), CONNS (16), DURATION (8), KEEP_TESTBED=1.
# Prints a table and writes $OUT/report.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-/tmp/cluster-sync}
export WS_TESTBED=${WS_TESTBED:-csb}
export WS_NET=${WS_NET:-244}
LAT_N=${LAT_N:-300}
CONNS=${CONNS:-16}
DURATION=${DURATION:-8}
TB="$ROOT/dpdk-env/scripts/testbed.sh"
mkdir -p "$OUT"
# shellcheck source=bench/scripts/lib.sh
. "$ROOT/bench/scripts/lib.sh"
cd "$ROOT"
PIDS=()
trap cluster_bench_cleanup EXIT
cluster_bench_up

start_both() { # store ("" or memcached)
    local i ns
    for i in 1 2; do
        ns=$WS_NS_SW
        [ "$i" = 2 ] && ns=$WS_CLUSTER_SW2_NS
        python3 dpdk-env/scripts/cluster-config.py "$i" "$WS_NET" "$WS_TESTBED" "bench-$WS_TESTBED" \
            "$OUT/instance$i.json" 1 "$1"
        ip netns exec "$ns" "$BIN" run --config "$OUT/instance$i.json" >"$OUT/events$i" 2>>"$OUT/log$i" &
        PIDS[i]=$!
    done
    cluster_await_hops 2
    "$CTL" -s "$(sock 2)" cluster withdraw >/dev/null
    cluster_await_hops 1
    sleep 1
}

stat_of() { # instance field
    if [ -S "$(sock "$1")" ]; then "$CTL" -s "$(sock "$1")" --json stats | jq ".total.$2"; else echo 0; fi
}
store_ticks() { # utime + stime of instance 1's ws-store thread (clock ticks), 0 without one
    local t
    for t in /proc/"${PIDS[1]}"/task/*; do
        if [ "$(cat "$t/comm" 2>/dev/null)" = ws-store ]; then
            awk '{print $14 + $15}' "$t/stat"
            return
        fi
    done
    echo 0
}
counters() { # -> "busy1 busy2 sync_sent1 accepted1 store_ticks"
    echo "$(stat_of 1 busy_cycles) $(stat_of 2 busy_cycles) $(stat_of 1 cluster_sync_sent) $(stat_of 1 conns_accepted) $(store_ticks)"
}

measure() { # name
    local name=$1 before after
    wait_for_builds
    for _ in $(seq "$LAT_N"); do
        ip netns exec "$WS_CLUSTER_CLIENT_NS" curl -s --max-time 5 -o /dev/null \
            -w '%{time_starttransfer}\n' "http://$VIP/whoami"
    done >"$OUT/lat-$name"
    before=$(counters)
    ip netns exec "$WS_CLUSTER_CLIENT_NS" python3 tests/tools/keepalive_load.py "$VIP" 80 /whoami \
        "$CONNS" "$DURATION" close >"$OUT/load-$name"
    after=$(counters)
    echo "$before $after" >"$OUT/counters-$name"
}

start_both ""
measure push
kill -TERM "${PIDS[2]}"
wait "${PIDS[2]}" 2>/dev/null || true
unset 'PIDS[2]'
sleep 1
measure alone
cluster_bench_stop
start_both memcached
measure store

python3 - "$OUT" "$LAT_N" "$DURATION" "$BIN_NOTE" "$(getconf CLK_TCK)" <<'PY' | tee "$OUT/report.md"
import json, sys
out, n, dur, note, tck = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5])
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(p / 100 * len(v)))]
rows = {}
for name in ("alone", "push", "store"):
    ttfb = [float(l) * 1e6 for l in open(f"{out}/lat-{name}") if l.strip()]
    c = list(map(int, open(f"{out}/counters-{name}").read().split()))
    d = [c[5 + i] - c[i] for i in range(5)]
    load = json.load(open(f"{out}/load-{name}"))
    req = max(1, load["requests"])
    rows[name] = dict(p50=pct(ttfb, 50), p90=pct(ttfb, 90), rate=load["requests"] / dur,
                      failures=load["failures"], busy1=d[0] / req, busy2=d[1] / req,
                      records=d[2] / max(1, d[3]), store_us=d[4] / tck * 1e6 / req)
print(f"# Sharing splice state: cost per splice ({n} new connections one at a time, then a new connection per request; {note or 'built binary'})\n")
print("| design | ttfb p50 µs | p90 | req/s (new conn each) | failures | records / conn | busy cycles / req, instance 1 | instance 2 | store thread µs / req |")
print("|---|---|---|---|---|---|---|---|---|")
for name, r in rows.items():
    print(f"| {name} | {r['p50']:.0f} | {r['p90']:.0f} | {r['rate']:.0f} | {r['failures']} | {r['records']:.2f} | {r['busy1']:.0f} | {r['busy2']:.0f} | {r['store_us']:.1f} |")
a = rows["alone"]
for name in ("push", "store"):
    r = rows[name]
    print(f"\n{name} / alone: ttfb p50 {r['p50'] / a['p50']:.2f} ({r['p50'] - a['p50']:+.0f} µs), busy cycles per request on instance 1 {r['busy1'] / a['busy1']:.2f} ({r['busy1'] - a['busy1']:+.0f})")
PY
