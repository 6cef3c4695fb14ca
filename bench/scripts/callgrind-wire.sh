#!/usr/bin/env bash
# Issue 15, point 8: instructions per operation of smoltcp's wire views against tcpstate's
# own, on the work the splice path does per segment (bench/benches/wire.rs says what each
# operation is). Builds the `wire` bench and runs it under callgrind once per operation,
# collecting inside that operation only, divided by its number of calls.
#
# Usage: bash bench/scripts/callgrind-wire.sh      (about a minute; no root, no DPDK)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$(mktemp -d /tmp/webswitch-cgwire.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo bench -p webswitch-bench --bench wire --no-run 2>&1 | tail -1 >&2
bin=$(cargo bench -p webswitch-bench --bench wire --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "wire" and m.get("executable"):
        print(m["executable"])' | tail -1)
[ -x "$bin" ] || { echo "no wire bench binary" >&2; exit 1; }
calls=$("$bin" --calls)
printf '%-26s %12s\n' operation instructions
for op in ours_classify smoltcp_classify ours_parse smoltcp_parse ours_translate \
    ours_translate_same smoltcp_translate smoltcp_translate_refill ours_verify smoltcp_verify; do
    # One run per operation, collecting inside it only (inlined helpers included).
    valgrind --tool=callgrind --toggle-collect="wire::$op" --callgrind-out-file="$OUT/cg.$op" \
        "$bin" >"$OUT/stdout" 2>"$OUT/log" || {
        cat "$OUT/log" >&2
        exit 1
    }
    total=$(callgrind_annotate "$OUT/cg.$op" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    printf '%-26s %12d\n' "$op" $((total / calls))
done
