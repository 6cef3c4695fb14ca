#!/usr/bin/env bash
# Instructions per packet of the ARP and ICMP echo paths, counted by callgrind inside the
# worker loop only (Worker::handle_burst, which classifies and answers, and Worker::flush,
# which hands frames to the driver), plus the CPU an idle switch uses.
#
# Three callgrind runs of the release binary on the netns testbed: one idle (the start-up
# announcements), one receiving N ARP requests for the VIP, one receiving N ICMP echo
# requests to the VIP. Frames are sent one at a time (--gap-us), so each burst holds one
# packet: the figures are per packet at burst size 1, the worst case for per-burst costs.
# Per packet = (run - idle run) / N. Instruction counts repeat exactly run after run.
#
# Usage (root): bash bench/scripts/callgrind-l2l3.sh [N]
#   IDLE_MAX_SLEEP_US=2000 ... sets worker.idle_max_sleep_us for all runs; IDLE_ONLY=1 skips
#   the callgrind runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${1:-2000}
export WS_TESTBED=${WS_TESTBED:-wsb}
export WS_NET=${WS_NET:-120}
TB=dpdk-env/scripts/testbed.sh
OUT=$(mktemp -d /tmp/webswitch-bench.XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && sleep 2
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
    bash "$ROOT/$TB" down >/dev/null 2>&1 || true
    rm -rf "/run/dpdk/ws-$WS_TESTBED"
    [ -n "${KEEP:-}" ] || rm -rf "$OUT"
}
trap cleanup EXIT

cargo build --release -q -p webswitch
BIN=$ROOT/target/release/webswitch
bash $TB up >/dev/null
eval "$(bash $TB env)"
sed -e "s/10\.99\./10.$WS_NET./g" -e "s/\"file_prefix\": \"webswitch\"/\"file_prefix\": \"ws-$WS_TESTBED\"/" \
    examples/testbed.json >"$OUT/config.json"
if [ -n "${IDLE_MAX_SLEEP_US:-}" ]; then
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["worker"]["idle_max_sleep_us"]=int(sys.argv[2]); json.dump(c, open(sys.argv[1], "w"))' \
        "$OUT/config.json" "$IDLE_MAX_SLEEP_US"
fi

start() { # $1: wrapper command (may be empty)
    : >"$OUT/events"
    # shellcheck disable=SC2086
    ip netns exec "$WS_NS_SW" $1 "$BIN" run --config "$OUT/config.json" >"$OUT/events" 2>"$OUT/log" &
    PID=$!
    for _ in $(seq 1200); do
        grep -q '"event":"ready"' "$OUT/events" && return 0
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$OUT/log" >&2
    echo "webswitch did not start" >&2
    exit 1
}
stop() {
    kill -TERM "$PID"
    wait "$PID" || true
    PID=
}
mac() { python3 -c 'import json,sys; e=json.loads(open(sys.argv[1]).readline()); print([p["mac"] for p in e["ports"] if p["name"]=="client"][0])' "$OUT/events"; }
send() { # kind count
    ip netns exec "$WS_NS_CLI" python3 tests/tools/rawframes.py --gap-us 500 cli0 "$(mac)" \
        "$WS_CLIENT_IP" "$WS_VIP" "${WS_VIP%.*}.77" "$1=$2" >/dev/null
    sleep 1
}
instr() { # callgrind out file → total Ir collected
    callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); if (!done) print ($1 == "." ? 0 : $1); done = 1}'
}
counted() { # counter name from final_stats
    python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == "final_stats": print(e["total"][sys.argv[2]])' "$OUT/events" "$1"
}

CG="valgrind --tool=callgrind --fair-sched=yes --toggle-collect=*Worker::handle_burst --toggle-collect=*Worker::flush"
declare -A IR
for kind in idle arp_req echo; do
    [ -n "${IDLE_ONLY:-}" ] && break
    start "$CG --callgrind-out-file=$OUT/cg.$kind"
    sleep 2
    [ "$kind" != idle ] && send "$kind" "$N"
    stop
    IR[$kind]=$(instr "$OUT/cg.$kind")
    case $kind in
        arp_req) got=$(counted arp_requests_answered) ;;
        echo) got=$(counted icmp_echo_answered) ;;
        *) got=0 ;;
    esac
    echo "run $kind: ${IR[$kind]} instructions collected, answered $got"
    if [ "$kind" != idle ] && [ "$got" -ne "$N" ]; then
        echo "expected $N answers, got $got: the run is not comparable" >&2
        exit 1
    fi
done
if [ -z "${IDLE_ONLY:-}" ]; then
echo
printf 'ARP request -> reply:  %d instructions per packet (handle_burst + flush, N=%d)\n' \
    $(( (IR[arp_req] - IR[idle]) / N )) "$N"
printf 'ICMP echo -> reply:    %d instructions per packet (handle_burst + flush, N=%d)\n' \
    $(( (IR[echo] - IR[idle]) / N )) "$N"
fi

# Idle CPU: the release binary, no traffic, CPU time over 10 s from /proc, per thread.
start ""
sleep 2
python3 - "$PID" <<'PY'
import os, sys, time
pid = sys.argv[1]
hz = os.sysconf("SC_CLK_TCK")
def sample():
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            raw = f.read()
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        out[f"{comm}[{tid}]"] = int(fields[11]) + int(fields[12])
    return out, time.monotonic()
a, t0 = sample()
time.sleep(10)
b, t1 = sample()
wall = t1 - t0
total = 0
for k in sorted(b):
    used = (b[k] - a.get(k, 0)) / hz
    total += used
    print(f"  thread {k:28} {100 * used / wall:5.2f}% of a core")
print(f"idle CPU: {100 * total / wall:.2f}% of one core in all ({total:.2f} s CPU in {wall:.1f} s)")
PY
stop
