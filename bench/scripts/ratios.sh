#!/usr/bin/env bash
# Issue 15, point 5: webswitch's rates as ratios of the harness's own ceiling, four loads in one
# invocation, each load's webswitch run right after its back-to-back run (same machine state):
#
#   conns      new connections, one 1 KB GET each (64 concurrent)
#   keepalive  keep-alive GETs of 1 KB (64 connections), splice, then presplice rotating
#              over the three pools of examples/memif.json (warm pools), same load
#   large      keep-alive GETs of 64 KB (16 connections)
#
# Runs bench/scripts/harness-memif.sh once per load (RUNS "b2b switch", plus presplice_warm for
# keepalive) and prints a markdown table of the ratios and p99 time-to-first-byte differences
# against issue 15's targets; writes it to OUT/ratios.md and draws every run side by side in
# OUT/ratios.svg (`webswitch-bench compare`).
#
# Usage (root): bash bench/scripts/ratios.sh [OUT_DIR]       (about 3 minutes)
#   DURATION=10 (seconds per run)  COPY_SVG=docs/bench-ratios.svg
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${1:-/tmp/webswitch-ratios}
DURATION=${DURATION:-10}
BENCH=${BENCH:-$ROOT/target/release/webswitch-bench}
export DURATION BENCH
mkdir -p "$OUT"

if [ ! -x "$BENCH" ] || [ ! -x "$ROOT/target/release/webswitch" ]; then
    (cd "$ROOT" && cargo build --release -q -p webswitch-bench -p webswitch)
fi

run_load() { # $1: name, $2: RUNS, $3: LOAD
    echo "=== $1: $3" >&2
    RUNS=$2 LOAD=$3 bash "$ROOT/bench/scripts/harness-memif.sh" "$OUT/$1" >"$OUT/$1.log" 2>&1 || {
        tail -30 "$OUT/$1.log" >&2
        echo "harness run $1 failed" >&2
        exit 1
    }
}

run_load conns "b2b switch" "--concurrency 64 --requests-per-conn 1 --sizes 1024"
run_load keepalive "b2b switch presplice_warm" "--concurrency 64 --requests-per-conn 1000000 --sizes 1024"
run_load large "b2b switch" "--concurrency 16 --requests-per-conn 1000000 --sizes 65536"

python3 - "$OUT" <<'PY' | tee "$OUT/ratios.md"
import json, sys, os
out = sys.argv[1]
def load(name, run):
    r = json.load(open(os.path.join(out, name, run + ".json")))
    if not r.get("ok", False):
        sys.exit(f"{name}/{run}: the harness reported problems: {r.get('problems')}")
    return r
def rate(r, k): return r["rates"][k]
def p99(r): return r["latency"]["ttfb"]["p99_us"]
rows = []
def row(what, num, den, key, target, fmt="{:,.0f}"):
    a, b = rate(num, key), rate(den, key)
    ok = "yes" if a / b >= target else "no"
    rows.append(f"| {what} | {fmt.format(a)} | {fmt.format(b)} | **{a / b:.2f}** | ≥ {target} | {ok} |")
c_b2b, c_sw = load("conns", "b2b"), load("conns", "switch")
k_b2b, k_sw, k_pre = load("keepalive", "b2b"), load("keepalive", "switch"), load("keepalive", "presplice_warm")
l_b2b, l_sw = load("large", "b2b"), load("large", "switch")
print("| load | webswitch | ceiling | ratio | target | met |")
print("|---|---:|---:|---:|---:|---|")
row("new connections/s (1 KB GET each), of back-to-back", c_sw, c_b2b, "connections_per_s", 0.8)
row("keep-alive requests/s (1 KB), of back-to-back", k_sw, k_b2b, "requests_per_s", 0.95)
row("64 KB responses/s (keep-alive), of back-to-back", l_sw, l_b2b, "requests_per_s", 0.95)
row("presplice requests/s, 3 pools, of splice keep-alive", k_pre, k_sw, "requests_per_s", 0.8)
print("\n".join(rows))
print()
print("| time to first byte, p99 | webswitch | back-to-back | added | target | met |")
print("|---|---:|---:|---:|---:|---|")
for what, sw, b2b, target in [
    ("keep-alive (1 KB)", k_sw, k_b2b, 10),
    ("new connections (1 KB)", c_sw, c_b2b, 100),
]:
    added = p99(sw) - p99(b2b)
    print(f"| {what} | {p99(sw):,.0f} µs | {p99(b2b):,.0f} µs | **{added:+,.0f} µs** | ≤ {target} µs | {'yes' if added <= target else 'no'} |")
PY

labels=()
for spec in "conns/b2b:new conns, back-to-back" "conns/switch:new conns, webswitch" \
    "keepalive/b2b:keep-alive, back-to-back" "keepalive/switch:keep-alive, webswitch splice" \
    "keepalive/presplice_warm:keep-alive, webswitch presplice 3 pools" \
    "large/b2b:64 KB, back-to-back" "large/switch:64 KB, webswitch"; do
    labels+=("${spec#*:}=$OUT/${spec%%:*}.json")
done
"$BENCH" compare --out "$OUT/ratios.svg" --title "webswitch over memif, as ratios of the harness back-to-back" \
    "${labels[@]}" >"$OUT/compare.txt"
if [ -n "${COPY_SVG:-}" ]; then
    cp "$OUT/ratios.svg" "$COPY_SVG"
    echo "copied $OUT/ratios.svg to $COPY_SVG" >&2
fi
echo "table in $OUT/ratios.md, plot in $OUT/ratios.svg" >&2
