#!/usr/bin/env bash
# The switch's own cost per response, handoff against splice (issue 16, "Benchmark"): on ONE
# handoff testbed (`testbed.sh up --handoff`, an agent on every backend host), in one run,
# the same wrk load through the switch with its VIP in `mode: "splice"` and then in
# `mode: "handoff"`, and from each run the switch's busy cycles (TSC in poll-loop iterations
# that did work, summed over its workers), packets and bytes per response; then, per mode, the
# time from the request to the first response byte on new connections (curl, one at a time).
# A third run is handoff with `vips[].preallocate` (the agent prepared at SYN time), a fourth
# handoff through the control-connection transport (`handoff.transport: "control"`).
#
# In splice mode every response byte crosses the switch twice (in from the backend, out to the
# client); in handoff mode only the client's packets cross it (its requests and ACKs), so the
# ratio handoff/splice is what handoff saves the switch. The agents bridge the backends in both
# runs (splice connections reach the kernels through them), so the backends' side is the same.
#
# Usage (root): bash bench/scripts/handoff-cost.sh [OUT_DIR]
#   WS_TESTBED (hcb), WS_NET (217), DURATION (8 s of wrk per mode), FILE (/big/100K.bin),
#   CONNS (8 keep-alive connections), LAT_N (200 new connections for the time to first byte),
#   WS_BIN (measure this binary, no build), KEEP_TESTBED=1.
# Prints a table and writes $OUT/report.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-/tmp/handoff-cost}
export WS_TESTBED=${WS_TESTBED:-hcb}
export WS_NET=${WS_NET:-217}
DURATION=${DURATION:-8}
FILE=${FILE:-/big/100K.bin}
CONNS=${CONNS:-8}
TB="$ROOT/dpdk-env/scripts/testbed.sh"
mkdir -p "$OUT"
# shellcheck source=bench/scripts/lib.sh
. "$ROOT/bench/scripts/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "handoff-cost: must run as root" >&2; exit 1; }

AGENT_PIDS=()
SW_PID=
cleanup() {
    local p
    [ -z "$SW_PID" ] || kill -TERM "$SW_PID" 2>/dev/null || true
    for p in "${AGENT_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    [ -z "$SW_PID" ] || kill -KILL "$SW_PID" 2>/dev/null || true
    for p in "${AGENT_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "/run/dpdk/ws-$WS_TESTBED" /run/dpdk/wsa-"$WS_TESTBED"-be1 /run/dpdk/wsa-"$WS_TESTBED"-be2 \
        /run/dpdk/wsa-"$WS_TESTBED"-be3
    [ -n "${KEEP_TESTBED:-}" ] || bash "$TB" down >/dev/null 2>&1 || true
}
trap cleanup EXIT

ensure_binary
bash "$TB" up --handoff >"$OUT/testbed.log"
eval "$(bash "$TB" env)"
VIP=10.$WS_NET.0.10
NHEX=$(printf '%02x' "$WS_NET")

for i in 1 2 3; do
    cat >"$OUT/agent$i.json" <<EOF
{
  "role": "agent",
  "eal": { "args": ["--no-huge", "-m", "256", "--no-pci", "--no-telemetry", "--log-level", "lib.eal:warning"],
           "file_prefix": "wsa-$WS_TESTBED-be$i" },
  "lcores": { "main": 0, "workers": [1] },
  "mempool": { "mbufs": 8191, "cache": 256 },
  "nic": { "device": "net_af_packet0,iface=eth0,qpairs=1,framecnt=4096" },
  "kernel": { "device": "net_tap0,iface=wsa0,mac=02:00:0a:$NHEX:01:$(printf '%02x' $((10 + i)))" },
  "vips": [ { "address": "$VIP", "tcp_ports": [80] } ],
  "switch": { "address": "$WS_SWITCH_BACKEND_IP", "name": "be$i" }
}
EOF
    ip netns exec "$WS_TESTBED-be$i" "$BIN" run --config "$OUT/agent$i.json" \
        >"$OUT/agent$i.events" 2>"$OUT/agent$i.log" &
    AGENT_PIDS+=($!)
done
for i in 1 2 3; do
    for _ in $(seq 1 100); do grep -q '"ready"' "$OUT/agent$i.events" && break; sleep 0.1; done
    grep -q '"ready"' "$OUT/agent$i.events" || { echo "agent $i did not start" >&2; cat "$OUT/agent$i.log" >&2; exit 1; }
done

# One run: the switch up, a warm-up request, wrk, the switch stopped; its final counters kept.
# NAME names the run's files; MODE is the VIP's mode; PREALLOC "true" turns on
# `vips[].preallocate` (handoff only); TRANSPORT is `handoff.transport`.
run_mode() { # name mode prealloc transport
    local name=$1 mode=$2 prealloc=${3:-false} transport=${4:-inline} cfg=$OUT/switch-$1.json
    write_ws_config "$cfg.in"
    jq --arg m "$mode" --argjson p "$prealloc" --arg t "$transport" \
        '.vips[0].mode = $m | (if $p then .vips[0].preallocate = true else . end)
         | .handoff.transport = $t
         | .health.interval_ms = 300 | .health.timeout_ms = 250' \
        "$cfg.in" >"$cfg"
    ip netns exec "$WS_NS_SW" "$BIN" run --config "$cfg" \
        >"$OUT/switch-$name.events" 2>"$OUT/switch-$name.log" &
    SW_PID=$!
    for _ in $(seq 1 100); do grep -q '"ready"' "$OUT/switch-$name.events" && break; sleep 0.1; done
    local code=''
    for _ in $(seq 1 60); do
        code=$(ip netns exec "$WS_NS_CLI" curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$VIP$FILE" || true)
        [ "$code" = 200 ] && break
        sleep 0.3
    done
    [ "$code" = 200 ] || { echo "$name: no answer through the switch" >&2; exit 1; }
    wait_for_builds
    ip netns exec "$WS_NS_CLI" taskset -c 0 wrk -t2 -c"$CONNS" -d"${DURATION}s" "http://$VIP$FILE" \
        >"$OUT/wrk-$name.txt"
    # Time to first byte on new connections: from the request written (curl's connect
    # done) to the first response byte, one connection after another (LAT_N of them).
    ip netns exec "$WS_NS_CLI" bash -c "for i in \$(seq ${LAT_N:-200}); do
        curl -s -o /dev/null --max-time 5 -w '%{time_connect} %{time_starttransfer}\n' http://$VIP/whoami
    done" >"$OUT/ttfb-$name.txt"
    kill -TERM "$SW_PID"
    wait "$SW_PID" || true
    SW_PID=
}

run_mode splice splice
run_mode handoff handoff
run_mode handoff-prealloc handoff true
run_mode handoff-control handoff false control

python3 - "$OUT" "$FILE" "$BIN_DATE" "${BIN_NOTE:-}" <<'PY'
import json, re, sys
out, file, bin_date, note = sys.argv[1:5]
rows = {}
for mode in ("splice", "handoff", "handoff-prealloc", "handoff-control"):
    final = None
    for line in open(f"{out}/switch-{mode}.events"):
        v = json.loads(line)
        if v.get("event") == "final_stats":
            final = v
    log = open(f"{out}/switch-{mode}.log").read()
    hz = int(re.search(r"TSC (\d+) Hz", log).group(1))
    wrk = open(f"{out}/wrk-{mode}.txt").read()
    reqs = int(re.search(r"(\d+) requests in", wrk).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
    t = final["total"]
    n = max(t["requests_routed"], 1)
    ports = final["ports"]
    pkts = sum(p["rx_packets"] + p["tx_packets"] for p in ports.values() if p)
    rows[mode] = dict(
        requests=t["requests_routed"], wrk=reqs, rps=rps,
        cycles=t["busy_cycles"] / n, us=t["busy_cycles"] / n / hz * 1e6,
        pkts=pkts / n, tx_client=(ports["client"]["tx_bytes"] if ports.get("client") else 0) / n,
        spliced=t["spliced_bytes_b2c"], handed=t["handoffs_started"])
def ttfb(mode):
    v = []
    for line in open(f"{out}/ttfb-{mode}.txt"):
        c, t = line.split()
        v.append((float(t) - float(c)) * 1e6)
    v.sort()
    return v[len(v) // 2], v[int(len(v) * 0.99) - 1], len(v)
for m in rows:
    rows[m]["ttfb"] = ttfb(m)
s, h = rows["splice"], rows["handoff"]
lines = [
    f"# Switch cost per response: handoff vs splice ({file}, one run)",
    "",
    f"binary built {bin_date}{' (' + note + ')' if note else ''}",
    "",
    "| mode | responses (switch) | wrk req/s | switch busy cycles / response | busy µs / response | switch packets / response | client-port tx bytes / response |",
    "|---|---|---|---|---|---|---|",
]
for m, r in rows.items():
    lines.append(f"| {m} | {r['requests']} | {r['rps']:.0f} | {r['cycles']:.0f} | {r['us']:.2f} | {r['pkts']:.1f} | {r['tx_client']:.0f} |")
lines += ["", "| mode | new connections | request to first response byte p50 (µs) | p99 (µs) |", "|---|---|---|---|"]
for m, r in rows.items():
    p50, p99, n = r["ttfb"]
    lines.append(f"| {m} | {n} | {p50:.0f} | {p99:.0f} |")
p, c = rows["handoff-prealloc"], rows["handoff-control"]
lines += ["", f"handoff / splice, busy cycles per response: **{h['cycles'] / s['cycles']:.3f}** (goal <= 0.2)",
          f"control transport / splice, busy cycles per response: **{c['cycles'] / s['cycles']:.3f}**",
          f"control transport / inline, busy cycles per response: {c['cycles'] / h['cycles']:.3f}; request to first byte p50: {c['ttfb'][0] / h['ttfb'][0]:.3f}",
          f"handoff with pre-allocation / without, request to first byte p50: {p['ttfb'][0] / h['ttfb'][0]:.3f}",
          f"handoff / splice, switch packets per response: {h['pkts'] / s['pkts']:.3f}"]
text = "\n".join(lines) + "\n"
open(f"{out}/report.md", "w").write(text)
print(text)
PY
