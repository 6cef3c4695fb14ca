#!/usr/bin/env bash
# Presplice against splice under the impaired network of issue 14 (a benchmark figure, not an
# assertion): 2% loss, 25% reordering, 5 ms delay and 1% duplication on the client's and the
# backends' links, both directions (testbed.sh impair; no netem in this kernel). On ONE netns
# testbed, in one run, the release binary in splice mode (examples/testbed.json) and then in
# presplice mode (the same with "mode": "presplice" and warm pools for images and apps): per
# mode and run, a 100 MiB download (GET /big/100M.bin) and a 20 MiB upload (curl -T, with
# curl's default Expect: 100-continue, WebDAV PUT), each sha256-checked against the backend's
# file. Prints MB/s (10^6 bytes/s) per transfer, the median per mode, the ratio
# presplice/splice (issue 14's target: >= 0.9), and what the impairment injected.
#
# Usage (root): bash bench/scripts/presplice-impaired.sh
#   RUNS=3 SEED=14 WS_TESTBED=psib WS_NET=193 KEEP=1 (keep the raw outputs in /tmp/webswitch-psi.*)
#   WS_BIN=PATH (measure that binary, no build)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export WS_TESTBED=${WS_TESTBED:-psib}
export WS_NET=${WS_NET:-193}
RUNS=${RUNS:-3}
SEED=${SEED:-14}
TB=$ROOT/dpdk-env/scripts/testbed.sh
OUT=$(mktemp -d /tmp/webswitch-psi.XXXXXX)
PID=
# shellcheck source=bench/scripts/lib.sh
. "$ROOT/bench/scripts/lib.sh"

cleanup() {
    if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    bash "$TB" down >/dev/null 2>&1 || true
    rm -rf "/run/dpdk/ws-$WS_TESTBED"
    if [ -z "${KEEP:-}" ]; then rm -rf "$OUT"; else echo "raw outputs kept in $OUT" >&2; fi
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
ensure_binary
bash "$TB" up >"$OUT/testbed.log"
set -a
eval "$(bash "$TB" env)"
set +a

write_ws_config "$OUT/splice.json"
python3 - "$OUT/splice.json" "$OUT/presplice.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["vips"][0]["mode"] = "presplice"
for p in c["pools"]:
    if p["name"] in ("images", "apps"):
        p["warm"] = {"min_idle": 2, "max_idle": 8}
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
head -c 20971520 /dev/urandom >"$OUT/up.bin"
UP_SHA=$(sha256sum "$OUT/up.bin" | cut -d' ' -f1)

start_switch() { # config
    : >"$OUT/events"
    ip netns exec "$WS_NS_SW" "$BIN" run --config "$1" >"$OUT/events" 2>>"$OUT/log" &
    PID=$!
    for _ in $(seq 150); do
        grep -q '"event":"ready"' "$OUT/events" && { sleep 1; return 0; }
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.2
    done
    cat "$OUT/log" >&2
    echo "webswitch did not start" >&2
    exit 1
}

stop_switch() {
    kill -TERM "$PID"
    wait "$PID" || true
    PID=
}

# transfer MODE KIND RUN: one curl, bounded; appends "MODE KIND RUN MB/s backend ok|BAD" to results
transfer() {
    local mode=$1 kind=$2 run=$3 args w be rate ok=BAD want got
    if [ "$kind" = download ]; then
        args=(-o "$OUT/dl.bin" "http://$WS_VIP/big/100M.bin")
    else
        args=(-T "$OUT/up.bin" "http://$WS_VIP/upload/psi-$mode-$run.bin")
    fi
    w=$(ip netns exec "$WS_NS_CLI" curl -sS --max-time 300 -D "$OUT/h" \
        -w '%{size_download} %{size_upload} %{time_total}' "${args[@]}") || w="0 0 1"
    be=$(sed -n 's/^X-Backend: *//p' "$OUT/h" | tr -d '\r' | tail -1)
    rate=$(echo "$w" | awk '{b = $1 > $2 ? $1 : $2; printf "%.2f", b / $3 / 1e6}')
    if [ "$kind" = download ]; then
        want=$(cat "$WS_TESTBED_DIR/$be/www/big/100M.bin.sha256" 2>/dev/null || true)
        got=$(sha256sum "$OUT/dl.bin" | cut -d' ' -f1)
    else
        want=$UP_SHA
        got=$(sha256sum "$WS_TESTBED_DIR/$be/www/upload/psi-$mode-$run.bin" 2>/dev/null | cut -d' ' -f1)
    fi
    [ -n "$be" ] && [ "$got" = "$want" ] && ok=ok
    echo "$mode $kind $run $rate ${be:-?} $ok" | tee -a "$OUT/results" >&2
    rm -f "$OUT/dl.bin"
}

: >"$OUT/results"
for mode in splice presplice; do
    wait_for_builds
    start_switch "$OUT/$mode.json"
    bash "$TB" impair --loss 2 --reorder 25 --delay 5 --dup 1 --seed "$SEED" >/dev/null
    for run in $(seq "$RUNS"); do
        transfer "$mode" download "$run"
        transfer "$mode" upload "$run"
    done
    bash "$TB" impair stats >"$OUT/injected-$mode.json"
    bash "$TB" impair off >/dev/null
    stop_switch
    python3 - "$OUT/events" "$mode" <<'PY' >&2
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == "final_stats":
        t = e["total"]
        print(f"{sys.argv[2]}: presplice_out_of_order {t['drops'].get('presplice_out_of_order', 0)}, "
              f"presplice_aborts {t.get('presplice_aborts', 0)}, presplice_fallbacks {t.get('presplice_fallbacks', 0)}, "
              f"mbufs_in_use {e.get('mbufs_in_use', 0)}")
PY
done

python3 - "$OUT" "$RUNS" "$SEED" "$BIN_DATE" "${BIN_NOTE:-}" <<'PY'
import json, statistics, sys
out, runs, seed, bin_date, note = sys.argv[1:6]
rows = [l.split() for l in open(f"{out}/results")]
def rates(mode, kind):
    return [float(r[3]) for r in rows if r[0] == mode and r[1] == kind]
bad = [r for r in rows if r[5] != "ok"]
print(f"Presplice under impairment: loss 2%, reorder 25%, delay 5 ms, dup 1% (seed {seed}), "
      f"client and backend links; {runs} run(s) per mode; binary built {bin_date}{' (' + note + ')' if note else ''}")
print()
print("| transfer | splice MB/s (median; runs) | presplice MB/s (median; runs) | presplice/splice |")
print("|---|---|---|---|")
for kind, label in (("download", "100 MiB download"), ("upload", "20 MiB upload (curl -T)")):
    s, p = rates("splice", kind), rates("presplice", kind)
    ms, mp = statistics.median(s), statistics.median(p)
    fmt = lambda v: ", ".join(f"{x:.2f}" for x in v)
    print(f"| {label} | {ms:.2f} ({fmt(s)}) | {mp:.2f} ({fmt(p)}) | {mp / ms if ms else 0:.2f} |")
print()
for mode in ("splice", "presplice"):
    d = json.load(open(f"{out}/injected-{mode}.json"))["totals"]
    print(f"injected ({mode}): " + "; ".join(
        f"{k}: drops {v['drops']}, dups {v['dups']}, reordered {v['reordered']}, delayed {v['delayed']}"
        for k, v in d.items()))
print("byte-exact: " + ("all" if not bad else f"NOT {len(bad)}: {bad}"))
sys.exit(1 if bad else 0)
PY
