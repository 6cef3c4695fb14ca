#!/usr/bin/env bash
# Paper 001's failover run at the issue's scale (issue 17, "Tests"): GETS concurrent 10 MiB
# downloads and PUTS concurrent 10 MiB uploads through two instances behind the cluster
# testbed's ECMP router, each transfer paced to last DURATION seconds, instance 2 killed
# (SIGKILL) at half time. Every transfer is checked against the file on the backend that served it (GETs)
# or that nginx wrote (PUTs). The suite runs the same at 10 + 10 (tests/tests/
# cluster_failover.rs); this is the 100 + 100 the issue asks for, too heavy for CI on a 2-vCPU
# VM, run by hand.
#
# Reports: transfers byte-exact / failed, connections adopted, the aggregate throughput in the
# 2 s before and after the kill (the dip, beside paper 001's 5.3%), the lowest half second
# after it, and the time back to 95% of before.
#
# Usage (root): bash bench/scripts/cluster-scale.sh [OUT_DIR]
#   GETS (100), PUTS (100), DURATION (60: seconds each transfer lasts), STORE ("" = push,
#   or memcached), WORKERS (1), WS_TESTBED (csc), WS_NET (97), KEEP_TESTBED=1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-/tmp/cluster-scale}
export WS_TESTBED=${WS_TESTBED:-csc}
export WS_NET=${WS_NET:-97}
GETS=${GETS:-100}
PUTS=${PUTS:-100}
SECONDS_EACH=${DURATION:-60}
STORE=${STORE:-}
WORKERS=${WORKERS:-1}
SIZE=10485760
TB="$ROOT/dpdk-env/scripts/testbed.sh"
mkdir -p "$OUT"
# shellcheck source=bench/scripts/lib.sh
. "$ROOT/bench/scripts/lib.sh"
cd "$ROOT"
PIDS=()
trap cluster_bench_cleanup EXIT
cluster_bench_up
stat_of() { "$CTL" -s "$(sock "$1")" --json stats | jq ".total.$2"; }

for i in 1 2; do
    ns=$WS_NS_SW
    [ "$i" = 2 ] && ns=$WS_CLUSTER_SW2_NS
    python3 dpdk-env/scripts/cluster-config.py "$i" "$WS_NET" "$WS_TESTBED" "bench-$WS_TESTBED" \
        "$OUT/instance$i.json" "$WORKERS" "$STORE"
    ip netns exec "$ns" "$BIN" run --config "$OUT/instance$i.json" >"$OUT/events$i" 2>"$OUT/log$i" &
    PIDS[i]=$!
done
cluster_await_hops 2
sleep 1
wait_for_builds

echo "== $GETS GETs and $PUTS PUTs of 10 MiB, each paced to ${SECONDS_EACH} s; instance 2 killed at half time"
ip netns exec "$WS_CLUSTER_CLIENT_NS" python3 tests/tools/transfers.py "$VIP" "$GETS" "$PUTS" \
    /big/10M.bin "$SIZE" $((SIZE / SECONDS_EACH)) scale >"$OUT/transfers" &
XFER=$!
T_START=$(date +%s%N)
sleep $((SECONDS_EACH / 2))
echo "instance 2 holds $(stat_of 2 conns_spliced) spliced connections and sent $(stat_of 2 cluster_sync_sent) records; killing it"
T_KILL=$(date +%s%N)
kill -KILL "${PIDS[2]}"
wait "${PIDS[2]}" 2>/dev/null || true
unset 'PIDS[2]'
rm -rf "/run/dpdk/bench-$WS_TESTBED-2"
rm -f "$(sock 2)"
cluster_await_hops 1
echo "the router dropped instance 2 after $((($(date +%s%N) - T_KILL) / 1000000)) ms"
wait "$XFER"

KILL_S=$(python3 -c "print(($T_KILL - $T_START) / 1e9)")
python3 - "$OUT/transfers" "$KILL_S" "/tmp/$WS_TESTBED-testbed" <<'EOF' | tee "$OUT/report.md"
import hashlib, json, sys
run = json.load(open(sys.argv[1]))
kill_s, tb = float(sys.argv[2]), sys.argv[3]
def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
exact, failed = 0, []
for t in run["transfers"]:
    if not t["ok"]:
        failed.append(f"{t['kind']} {t['path']}: {t['error']}")
        continue
    f = f"{tb}/{t['backend']}/www/big/10M.bin" if t["kind"] == "get" else f"{tb}/{t['backend']}/www{t['path']}"
    if sha(f) == t["sha256"]:
        exact += 1
    else:
        failed.append(f"{t['kind']} {t['path']} via {t['backend']}: sha256 differs")
bins, w = run["timeline"], run["bin_s"]
k = int(kill_s / w)
mean = lambda a, b: sum(bins[a:b]) / max(1, len(bins[a:b]))
before, after = mean(k - 20, k), mean(k, k + 20)
lowest = min(mean(i, i + 5) for i in range(k, min(k + 30, len(bins) - 5)))
back = next((round((i - k) * w, 1) for i in range(k + 1, len(bins) - 5) if mean(i, i + 5) >= 0.95 * before), None)
mb = lambda b: b / w / 1e6
print(f"| transfers | byte-exact | failed | throughput before | after (2 s) | dip | lowest ½ s | back to 95% |")
print(f"|---|---|---|---|---|---|---|---|")
print(f"| {len(run['transfers'])} | {exact} | {len(failed)} | {mb(before):.1f} MB/s | {mb(after):.1f} MB/s | "
      f"{100 * (1 - after / max(before, 1)):.1f}% | {100 * lowest / max(before, 1):.0f}% | {back} s |")
for f in failed:
    print(f"- {f}")
EOF
echo "instance 1 adopted $(stat_of 1 cluster_adopted) connections, took over $(stat_of 1 cluster_addresses_taken) address(es)"
