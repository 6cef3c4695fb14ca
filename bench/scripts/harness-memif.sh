#!/usr/bin/env bash
# webswitch-bench over net_memif on one machine, with both ceilings measured in the same run:
#
#   1. back-to-back   the harness alone: its client side wired to its server side by a memif
#                     pair inside the process (no switch): the connection/request ceiling
#   2. testpmd        DPDK's testpmd doing io forwarding between the same two memif links the
#                     switch uses (client.sock, server.sock), the harness in `direct` mode
#                     (clients address the backends; ARP and TCP pass testpmd untouched):
#                     the packet ceiling of a middle box that does nothing
#   3. webswitch      the release webswitch on examples/memif.json (splice mode), the harness
#                     in `switch` mode through the VIP, reported as ratios of 1 and 2
#   Not in the default RUNS (warm pools, docs/benchmarks.md "Warm pools: time to first byte"):
#   presplice_warm    the VIP in "mode": "presplice", every pool "warm": {"min_idle": 4,
#                     "max_idle": 64}
#   presplice_cold    the same without warm pools (a backend handshake per new connection)
#   presplice_ab      presplice, warm pool on `images` only: with LOAD's --mix img:1,app:1,
#                     img requests (be1, warm) and app requests (be2, cold) interleave in one
#                     run; the report's per-class ttfb lines compare them under the same noise
#   slowloris         splice as `switch`, with SLOW (10000) slowloris and IDLE (10000) idle
#                     keep-alive connections held through the run from 80 addresses of their
#                     own (tcp.max_conns_per_client 512, head_timeout_ms 60000, so all are
#                     admitted and held): run after `switch` to print the real clients' p99
#                     time to first byte and request rate over the quiet run's
#
# Each run writes <out>/<name>.json and the SVG plots beside it. The same load (LOAD, below)
# is used for all three. At the end `webswitch-bench compare` draws the runs side by side in
# <out>/compare.svg (requests/s, new connections/s, time to first byte p50/p99); with
# COMPARE_COPY=FILE it is also copied there (docs/bench-compare.svg is made that way).
# Lcores: the middle box (testpmd's forwarding lcore, webswitch's worker) on CPU1, the
# harness on CPU0 (HARNESS_CPU).
#
# Usage (root): bash bench/scripts/harness-memif.sh [OUT_DIR]
#   DURATION=10 LOAD="--concurrency 64 --requests-per-conn 1" RUNS="b2b testpmd switch"
#   BENCH=path/to/webswitch-bench WEBSWITCH=path/to/webswitch (default: release builds)
#   COMPARE_TITLE="..." COMPARE_COPY=docs/bench-compare.svg
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${1:-/tmp/webswitch-harness}
DURATION=${DURATION:-10}
LOAD=${LOAD:---concurrency 64 --requests-per-conn 1 --sizes 1024}
RUNS=${RUNS:-b2b testpmd switch}
HARNESS_CPU=${HARNESS_CPU:-0}
BENCH=${BENCH:-$ROOT/target/release/webswitch-bench}
WEBSWITCH=${WEBSWITCH:-$ROOT/target/release/webswitch}
SOCK=/run/webswitch-bench
PREFIX=wsb-harness
MID_PID=
mkdir -p "$OUT" "$SOCK"

cleanup() {
    if [ -n "$MID_PID" ]; then
        kill -INT "$MID_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$MID_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$MID_PID" 2>/dev/null || true
        MID_PID=
    fi
    rm -f "$SOCK/client.sock" "$SOCK/server.sock"
    rm -rf "/run/dpdk/$PREFIX" "/run/dpdk/$PREFIX-mid" /run/dpdk/webswitch-memif
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -x "$BENCH" ] || [ ! -x "$WEBSWITCH" ]; then
    (cd "$ROOT" && cargo build --release -q -p webswitch-bench -p webswitch)
fi

dev() { # $1: vdev name, $2: socket
    echo "$1,role=client,id=0,socket=$SOCK/$2,socket-abstract=no"
}

bench() { # $1: run name, then extra arguments
    local name=$1
    shift
    # shellcheck disable=SC2086 # LOAD is a list of words
    "$BENCH" --file-prefix "$PREFIX" --cpu "$HARNESS_CPU" --duration "$DURATION" $LOAD \
        --json "$OUT/$name.json" "$@" 2> >(grep -v '^EAL: Error: Invalid memory' >&2) |
        tee "$OUT/$name.txt"
}

start_testpmd() {
    dpdk-testpmd -l 0,1 --main-lcore 0 --no-huge -m 512 --no-pci --no-telemetry \
        --file-prefix "$PREFIX-mid" \
        --vdev "net_memif0,role=server,id=0,socket=$SOCK/client.sock,socket-abstract=no" \
        --vdev "net_memif1,role=server,id=0,socket=$SOCK/server.sock,socket-abstract=no" \
        -- --forward-mode=io --auto-start --stats-period 60 --total-num-mbufs=16384 \
        --nb-cores=1 --burst=32 </dev/null >"$OUT/testpmd.log" 2>&1 &
    MID_PID=$!
    # a memif client does not retry a refused connect: wait until testpmd forwards
    for _ in $(seq 100); do
        if [ -S "$SOCK/client.sock" ] && [ -S "$SOCK/server.sock" ] &&
            grep -q 'forwards packets' "$OUT/testpmd.log"; then
            sleep 0.5
            return 0
        fi
        sleep 0.1
    done
    cat "$OUT/testpmd.log" >&2
    echo "testpmd did not start" >&2
    exit 1
}

start_webswitch() { # $1 (optional): presplice variant: warm, cold, ab
    sed -e "s|\"file_prefix\": \"webswitch-memif\"|\"file_prefix\": \"$PREFIX-mid\"|" \
        examples/memif.json >"$OUT/memif.json"
    if [ -n "${1:-}" ]; then
        python3 - "$OUT/memif.json" "$1" <<'PY'
import json, sys
path, variant = sys.argv[1], sys.argv[2]
c = json.load(open(path))
if variant == "slowloris":
    c.setdefault("tcp", {}).update({"max_conns_per_client": 512, "head_timeout_ms": 60000})
else:
    c["vips"][0]["mode"] = "presplice"
for p in c["pools"]:
    if variant == "warm" or (variant == "ab" and p["name"] == "images"):
        p["warm"] = {"min_idle": 4, "max_idle": 64}
json.dump(c, open(path, "w"), indent=1)
PY
    fi
    "$WEBSWITCH" run --config "$OUT/memif.json" >"$OUT/webswitch.events" 2>"$OUT/webswitch.log" &
    MID_PID=$!
    for _ in $(seq 300); do
        grep -q '"event":"ready"' "$OUT/webswitch.events" && return 0
        kill -0 "$MID_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$OUT/webswitch.log" >&2
    echo "webswitch did not start" >&2
    exit 1
}

ceilings=()
compared=() # LABEL=REPORT.json for `webswitch-bench compare`
for run in $RUNS; do
    case $run in
    b2b)
        echo "== back-to-back (no switch): the connection ceiling" >&2
        bench b2b --mode back-to-back --run-dir "$SOCK"
        ceilings+=(--ceiling "$OUT/b2b.json")
        compared+=("back-to-back=$OUT/b2b.json")
        ;;
    testpmd)
        echo "== testpmd io forwarding between the two memif links: the packet ceiling" >&2
        start_testpmd
        bench testpmd --mode direct --client-dev "$(dev net_memif0 client.sock)" \
            --server-dev "$(dev net_memif1 server.sock)"
        cleanup
        ceilings+=(--ceiling "$OUT/testpmd.json")
        compared+=("testpmd io=$OUT/testpmd.json")
        ;;
    switch)
        echo "== webswitch (splice), examples/memif.json" >&2
        start_webswitch
        bench switch --client-dev "$(dev net_memif0 client.sock)" \
            --server-dev "$(dev net_memif1 server.sock)" --check-routing "${ceilings[@]}"
        kill -TERM "$MID_PID"
        wait "$MID_PID" || true
        MID_PID=
        grep '"event":"final_stats"' "$OUT/webswitch.events" >"$OUT/webswitch-final.json" || true
        cleanup
        compared+=("webswitch splice=$OUT/switch.json")
        ;;
    slowloris)
        echo "== webswitch (splice) beside ${SLOW:-10000} slowloris and ${IDLE:-10000} idle connections" >&2
        start_webswitch slowloris
        bench slowloris --client-dev "$(dev net_memif0 client.sock)" \
            --server-dev "$(dev net_memif1 server.sock)" --check-routing "${ceilings[@]}" \
            --slowloris "${SLOW:-10000}" --idle-conns "${IDLE:-10000}" --trickle-ms 1000
        kill -TERM "$MID_PID"
        wait "$MID_PID" || true
        MID_PID=
        grep '"event":"final_stats"' "$OUT/webswitch.events" >"$OUT/webswitch-slowloris-final.json" || true
        python3 - "$OUT/switch.json" "$OUT/slowloris.json" "$OUT/webswitch-slowloris-final.json" \
            "$OUT/webswitch-final.json" <<'PY' >&2 || true
import json, sys
quiet, attack = (json.load(open(p)) for p in sys.argv[1:3])
final = json.loads(open(sys.argv[3]).readline())
t = attack["totals"]
def p99(r): return r["latency"]["ttfb"]["p99_us"]
def rps(r): return r["rates"]["requests_per_s"]
print(f"   background: {t['bg_established']} of {t['bg_attempts']} held, {t['bg_reset']} reset, "
      f"{t['idle_answered']} idle answered; switch memory {final.get('memory')}")
print(f"   real clients beside them: ttfb p99 {p99(attack):.0f} us vs quiet {p99(quiet):.0f} us "
      f"({p99(attack) / p99(quiet):.2f}x), requests/s {rps(attack) / rps(quiet):.2f} of quiet")
def cycles(path):
    try:
        t = json.loads(open(path).readline())["total"]
        return t["busy_cycles"] / max(1, t["requests_routed"])
    except (OSError, KeyError, ValueError):
        return None
q, a = cycles(sys.argv[4]), cycles(sys.argv[3])
if q and a:
    print(f"   switch busy cycles per request: {a:.0f} vs quiet {q:.0f} ({a / q:.2f}x)")
PY
        cleanup
        compared+=("beside slowloris+idle=$OUT/slowloris.json")
        ;;
    presplice_warm | presplice_cold | presplice_ab)
        variant=${run#presplice_}
        echo "== webswitch presplice ($variant warm pools), examples/memif.json" >&2
        start_webswitch "$variant"
        bench "$run" --client-dev "$(dev net_memif0 client.sock)" \
            --server-dev "$(dev net_memif1 server.sock)" --check-routing "${ceilings[@]}"
        kill -TERM "$MID_PID"
        wait "$MID_PID" || true
        MID_PID=
        grep '"event":"final_stats"' "$OUT/webswitch.events" >"$OUT/webswitch-$run-final.json" || true
        python3 - "$OUT/webswitch-$run-final.json" <<'PY' >&2 || true
import json, sys
t = json.loads(open(sys.argv[1]).readline())
c = t.get("total", t)
def find(o, k):
    if isinstance(o, dict):
        if k in o and not isinstance(o[k], dict):
            return o[k]
        for v in o.values():
            r = find(v, k)
            if r is not None:
                return r
    return None
keys = ["requests_routed", "warm_attached", "backend_connects", "warm_opened", "warm_closed", "warm_returned"]
print("   switch counters: " + ", ".join(f"{k} {find(c, k)}" for k in keys))
PY
        cleanup
        compared+=("presplice $variant=$OUT/$run.json")
        ;;
    *) echo "unknown run $run" >&2; exit 2 ;;
    esac
done
if [ ${#compared[@]} -gt 0 ]; then
    "$BENCH" compare --out "$OUT/compare.svg" \
        --title "${COMPARE_TITLE:-webswitch-bench over memif: ceilings and webswitch}" \
        "${compared[@]}" | tee "$OUT/compare.txt"
    if [ -n "${COMPARE_COPY:-}" ]; then
        cp "$OUT/compare.svg" "$COMPARE_COPY"
        echo "copied $OUT/compare.svg to $COMPARE_COPY" >&2
    fi
fi
echo "reports in $OUT" >&2
