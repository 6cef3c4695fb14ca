#!/usr/bin/env bash
# What connection ownership costs in a cluster (issue 17, "Benchmark"): on the cluster testbed
# (`testbed.sh up --cluster`), two instances behind the ECMP router, in one run:
#   owned:   instance 2 withdrawn (`cluster withdraw`: the router sends every flow to instance
#            1, which owns every new connection): no segment is handed over;
#   spread:  both announced: the router's hash and the ownership table disagree on about half
#            the connections, whose client segments cross the front segment twice (the
#            instance the router picked hands them to the owner).
# For each, LAT_N new connections one at a time from the router's client (curl: connect time
# and time to first byte, p50 and p90), then a keep-alive load (tests/tools/keepalive_load.py,
# CONNS connections, DURATION s) for requests per second, and from both instances' counters:
# segments handed over per connection and per request, and the busy cycles per request of both
# instances together (TSC in poll-loop iterations that did work).
#
# Usage (root): bash bench/scripts/cluster-handover.sh [OUT_DIR]
#   WS_TESTBED (chb), WS_NET (235), LAT_N (300), CONNS (16), DURATION (8), KEEP_TESTBED=1.
# Prints a table and writes $OUT/report.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-/tmp/cluster-handover}
export WS_TESTBED=${WS_TESTBED:-chb}
export WS_NET=${WS_NET:-235}
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

for i in 1 2; do
    ns=$WS_NS_SW
    [ "$i" = 2 ] && ns=$WS_CLUSTER_SW2_NS
    python3 dpdk-env/scripts/cluster-config.py "$i" "$WS_NET" "$WS_TESTBED" "bench-$WS_TESTBED" "$OUT/instance$i.json"
    ip netns exec "$ns" "$BIN" run --config "$OUT/instance$i.json" >"$OUT/events$i" 2>"$OUT/log$i" &
    PIDS[i]=$!
done
cluster_await_hops 2
sleep 1

counters() { # -> "handed busy requests conns" summed over both instances
    local i s h=0 b=0 r=0 c=0
    for i in 1 2; do
        s=$("$CTL" -s "$(sock "$i")" --json stats)
        h=$((h + $(echo "$s" | jq '.total.cluster_handed_over')))
        b=$((b + $(echo "$s" | jq '.total.busy_cycles')))
        r=$((r + $(echo "$s" | jq '.total.requests_routed')))
        c=$((c + $(echo "$s" | jq '.total.conns_accepted')))
    done
    echo "$h $b $r $c"
}

measure() { # name
    local name=$1 before after
    wait_for_builds
    before=$(counters)
    for _ in $(seq "$LAT_N"); do
        ip netns exec "$WS_CLUSTER_CLIENT_NS" curl -s --max-time 5 -o /dev/null \
            -w '%{time_connect} %{time_starttransfer}\n' "http://$VIP/whoami"
    done >"$OUT/lat-$name"
    after=$(counters)
    echo "$before $after" >"$OUT/counters-lat-$name"
    before=$after
    ip netns exec "$WS_CLUSTER_CLIENT_NS" python3 tests/tools/keepalive_load.py "$VIP" 80 /whoami \
        "$CONNS" "$DURATION" >"$OUT/load-$name"
    after=$(counters)
    echo "$before $after" >"$OUT/counters-load-$name"
}

"$CTL" -s "$(sock 2)" cluster withdraw >/dev/null
cluster_await_hops 1
sleep 1
measure owned
"$CTL" -s "$(sock 2)" cluster announce >/dev/null
cluster_await_hops 2
sleep 1
measure spread

python3 - "$OUT" "$LAT_N" "$DURATION" "$BIN_NOTE" <<'PY' | tee "$OUT/report.md"
import json, sys
out, n, dur, note = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(p / 100 * len(v)))]
rows = []
for name in ("owned", "spread"):
    lat = [tuple(map(float, l.split())) for l in open(f"{out}/lat-{name}") if l.strip()]
    conn = [c * 1e6 for c, _ in lat]; ttfb = [t * 1e6 for _, t in lat]
    a = list(map(int, open(f"{out}/counters-lat-{name}").read().split()))
    handed_per_conn = (a[4] - a[0]) / max(1, a[7] - a[3])
    b = list(map(int, open(f"{out}/counters-load-{name}").read().split()))
    load = json.load(open(f"{out}/load-{name}"))
    req = max(1, load["requests"])  # splice mode routes a connection's first request only
    rows.append((name, pct(conn, 50), pct(conn, 90), pct(ttfb, 50), pct(ttfb, 90), handed_per_conn,
                 load["requests"] / dur, load["failures"], (b[4] - b[0]) / req, (b[5] - b[1]) / req))
print(f"# Cluster hand-over cost ({n} new connections one at a time, then keep-alive load; {note or 'built binary'})\n")
print("| setup | connect p50 µs | p90 | ttfb p50 µs | p90 | handed over / new conn | keep-alive req/s | failures | handed over / req | busy cycles / req (both) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]:.0f} | {r[2]:.0f} | {r[3]:.0f} | {r[4]:.0f} | {r[5]:.2f} | {r[6]:.0f} | {r[7]} | {r[8]:.2f} | {r[9]:.0f} |")
o, s = rows
print(f"\nspread / owned: ttfb p50 {s[3] / o[3]:.2f}, keep-alive rate {s[6] / o[6]:.2f}, busy cycles per request {s[9] / o[9]:.2f}")
PY
