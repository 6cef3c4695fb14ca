#!/usr/bin/env bash
# The main job on the embedded default, as root on a fresh machine: install what is
# missing, build webswitch, bring up the netns testbed, start webswitch with
# examples/testbed.json in the switch namespace, show it answering from the client
# namespace (ARP, ping, then HTTP: curl requests routed by rule to different nginx
# backends, the client's address in a backend's access log through X-Forwarded-For and
# PROXY protocol pools, a 100 MB download checked with sha256, a short wrk run), stop it
# (its final counters print), and take everything down. Then TCP handoff: the testbed again
# with a router past the switch, an agent in front of each backend's kernel, the VIP in
# `mode: "handoff"`, and a 100 MB download whose response never crosses the switch.
#
# The switch runs on a copy of $CONFIG with two pools added in front (selected by an
# X-Demo-Pool request header): client-xff (be1's nginx on :8080, which trusts
# X-Forwarded-For) and client-proxy (be2's nginx on :8081, which reads a PROXY v2 header).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: run as root (network namespaces and the DPDK EAL need it)" >&2
    exit 1
fi
bash dpdk-env/scripts/deps.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

export WS_TESTBED=${WS_TESTBED:-wsd}
CONFIG=${CONFIG:-examples/testbed.json}
TB=dpdk-env/scripts/testbed.sh
OUT=$(mktemp -d /tmp/webswitch-demo.XXXXXX)
PID=
AGENTS=()

cleanup() {
    local a
    for a in "${AGENTS[@]}"; do kill -TERM "$a" 2>/dev/null || true; done
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
    fi
    bash "$ROOT/$TB" down >/dev/null 2>&1 || true
    rm -rf "$OUT"
}
trap cleanup EXIT

echo "== building webswitch (release)"
cargo build --release -q -p webswitch -p mgmt

echo "== bringing up the testbed ($WS_TESTBED)"
bash $TB up
eval "$(bash $TB env)"

# $CONFIG plus the client-address pools (the testbed's nginx listens on :8080 with
# real_ip_header X-Forwarded-For and on :8081 with proxy_protocol, see docs/testbed.md)
RUNCONFIG=$OUT/config.json
python3 - "$CONFIG" "$RUNCONFIG" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
addr = {b["name"]: b["address"] for b in c.get("backends", [])}
if "be1" in addr and "be2" in addr:
    c["backends"] += [
        {"name": "be1-xff", "address": addr["be1"], "port": 8080},
        {"name": "be2-proxy", "address": addr["be2"], "port": 8081},
    ]
    c["pools"] += [
        {"name": "client-xff", "backends": ["be1-xff"], "client_address": "x-forwarded-for"},
        {"name": "client-proxy", "backends": ["be2-proxy"], "client_address": "proxy-v2"},
    ]
    c["rules"] = [
        {"name": "demo-xff", "match": {"header": {"name": "X-Demo-Pool", "value_regex": "^xff$"}},
         "pool": "client-xff"},
        {"name": "demo-proxy", "match": {"header": {"name": "X-Demo-Pool", "value_regex": "^proxy$"}},
         "pool": "client-proxy"},
    ] + c.get("rules", [])
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY

echo "== starting webswitch in $WS_NS_SW with $CONFIG (+ the client-address pools: $RUNCONFIG)"
ip netns exec "$WS_NS_SW" target/release/webswitch run --config "$RUNCONFIG" >"$OUT/events" 2>"$OUT/log" &
PID=$!
for _ in $(seq 300); do
    grep -q '"event":"ready"' "$OUT/events" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { cat "$OUT/log"; echo "webswitch exited early" >&2; exit 1; }
    sleep 0.1
done
grep -q '"event":"ready"' "$OUT/events" || { cat "$OUT/log"; echo "webswitch did not become ready" >&2; exit 1; }
echo "webswitch is ready:"
head -n1 "$OUT/events"

echo
echo "== from $WS_NS_CLI: ping the VIP $WS_VIP (ARP resolved by webswitch, echo answered by it)"
ip netns exec "$WS_NS_CLI" ping -n -c 3 -i 0.2 -W 2 "$WS_VIP"
echo
echo "== the client's neighbour table: the VIP is at webswitch's MAC"
ip netns exec "$WS_NS_CLI" ip neigh show "$WS_VIP"
echo
echo "== ping the switch's own address $WS_SWITCH_CLIENT_IP"
ip netns exec "$WS_NS_CLI" ping -n -c 2 -i 0.2 -W 2 "$WS_SWITCH_CLIENT_IP"
echo
OTHER=${WS_VIP%.*}.77
echo "== ping $OTHER, which webswitch does not own: no answer expected"
if ip netns exec "$WS_NS_CLI" ping -n -c 1 -W 1 "$OTHER" >/dev/null; then
    echo "unexpected answer from $OTHER" >&2
    exit 1
fi
echo "no answer, as it should be"

echo
echo "== HTTP through webswitch: each request is routed by its content and spliced onto a backend"
for path in /img/logo.png /img/photo.jpg /app/run.cgi /static/app.js /whoami /whoami /whoami; do
    backend=$(ip netns exec "$WS_NS_CLI" curl -sS --max-time 10 -o /dev/null -D - "http://$WS_VIP$path" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "x-backend" {print $2}')
    printf '  GET %-16s -> %s\n' "$path" "$backend"
done
echo "  (rules in $CONFIG: images -> be1, /app/ -> be2, the rest -> least-connections over be1..be3)"
echo
if grep -q '"client-xff"' "$RUNCONFIG"; then
    echo "== the client's address in the backends' logs (client $WS_CLIENT_IP; the backends' TCP peer is webswitch, $WS_SWITCH_BACKEND_IP)"
    for pool in xff proxy; do
        ip netns exec "$WS_NS_CLI" curl -sS --max-time 10 -o /dev/null -H "X-Demo-Pool: $pool" \
            "http://$WS_VIP/whoami?demo=$pool"
    done
    sleep 0.3
    echo "  pool client-xff: X-Forwarded-For inserted; be1's nginx on :8080 has real_ip_header X-Forwarded-For"
    grep -h 'demo=xff' "$WS_TESTBED_DIR/be1/access.log" | tail -n1 | sed 's/^/    be1: /'
    echo "  pool client-proxy: a PROXY v2 header first; be2's nginx on :8081 has listen ... proxy_protocol"
    grep -h 'demo=proxy' "$WS_TESTBED_DIR/be2/access.log" | tail -n1 | sed 's/^/    be2: /'
    for b in be1:xff be2:proxy; do
        grep -h "demo=${b#*:}" "$WS_TESTBED_DIR/${b%%:*}/access.log" | tail -n1 | grep -q "^$WS_CLIENT_IP:" ||
            { echo "${b%%:*}'s access log does not show the client's address $WS_CLIENT_IP" >&2; exit 1; }
    done
    echo "  (each line starts with nginx's \$remote_addr, the client's address; peer= is the TCP peer, webswitch)"
    echo
fi
echo "== 100 MB download through the splice, checked with sha256"
ip netns exec "$WS_NS_CLI" curl -sS --max-time 60 -D "$OUT/h" -o "$OUT/100M.bin" \
    -w '  %{size_download} bytes at %{speed_download} bytes/s\n' "http://$WS_VIP/big/100M.bin"
b=$(tr -d '\r' <"$OUT/h" | awk -F': ' 'tolower($1) == "x-backend" {print $2}')
got=$(sha256sum "$OUT/100M.bin" | cut -d' ' -f1)
want=$(cut -d' ' -f1 "$WS_TESTBED_DIR/$b/www/big/100M.bin.sha256")
[ "$got" = "$want" ] && echo "  sha256 matches $b's file" || { echo "sha256 mismatch" >&2; exit 1; }
rm -f "$OUT/100M.bin"
echo
echo "== wrk: 3 s, 100 keep-alive connections, through webswitch"
ip netns exec "$WS_NS_CLI" wrk -t2 -c100 -d3s --latency "http://$WS_VIP/whoami" | sed 's/^/  /'

echo
echo "== the management socket with webswitchctl"
CTL="target/release/webswitchctl --socket /run/webswitch/webswitch.sock"
show() { echo "\$ webswitchctl $*"; $CTL "$@" | sed 's/^/  /'; }
show status
show backends
show backends drain be3
for _ in 1 2 3 4; do
    b=$(ip netns exec "$WS_NS_CLI" curl -sS --max-time 10 -o /dev/null -D - "http://$WS_VIP/whoami" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "x-backend" {print $2}')
    echo "  GET /whoami -> $b"
done
show backends ready be3
show rules

echo
echo "== metrics and the live stats page (examples/testbed.json: web.listen 127.0.0.1:9180 in $WS_NS_SW)"
ip netns exec "$WS_NS_SW" curl -sS --max-time 5 http://127.0.0.1:9180/metrics |
    grep -E '^webswitch_(requests_routed_total|connections_accepted_total|connections\{)' | head -8 | sed 's/^/  /'
echo "  stats page: ip netns exec $WS_NS_SW curl http://127.0.0.1:9180/  (or open it in a browser in that namespace;"
echo "  docs/operations.md shows a screenshot)"

echo
echo "== stopping webswitch (SIGTERM); its final counters:"
kill -TERM "$PID"
wait "$PID"
PID=
grep '"event":"final_stats"' "$OUT/events" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
t = s["total"]
keys = ["rx_packets", "tx_packets", "arp_requests_answered", "icmp_echo_answered", "gratuitous_arp_sent",
        "syn_cookies_sent", "conns_accepted", "requests_routed", "backend_connects", "conns_closed",
        "spliced_packets_c2b", "spliced_bytes_c2b", "spliced_packets_b2c", "spliced_bytes_b2c",
        "xff_inserted", "proxy_headers_sent", "http_4xx_sent", "http_5xx_sent"]
for k in keys:
    print(f"  {k:24} {t[k]}")
for k, v in t["drops"].items():
    if v:
        print(f"  drops.{k:18} {v}")
busy, idle = t["busy_cycles"], t["idle_cycles"]
print(f"  busy/idle cycles         {busy}/{idle}")
'
echo
echo "== taking the testbed down"
bash $TB down

# ---- TCP handoff: the response never crosses the switch ---------------------------------
echo
echo "== TCP handoff: the testbed again with a way back past the switch (up --handoff)"
bash $TB up --handoff >"$OUT/handoff-testbed.log"
eval "$(bash $TB env)"
NHEX=$(printf '%02x' "$WS_NET")
for i in 1 2 3; do
    # examples/agent.json for backend i: its TAP keeps eth0's MAC, its own EAL prefix.
    jq --arg p "wsa-$WS_TESTBED-be$i" --arg vip "$WS_VIP" \
        --arg tap "net_tap0,iface=wsa0,mac=02:00:0a:$NHEX:01:$(printf '%02x' $((10 + i)))" \
        --arg sw "$WS_SWITCH_BACKEND_IP" --arg name "be$i" \
        '.eal.file_prefix = $p | .kernel.device = $tap | .vips[0].address = $vip
         | if .switch then .switch.address = $sw | .switch.name = $name else . end' \
        examples/agent.json >"$OUT/agent$i.json"
    ip netns exec "$WS_TESTBED-be$i" target/release/webswitch run --config "$OUT/agent$i.json" \
        >"$OUT/agent$i.events" 2>"$OUT/agent$i.log" &
    AGENTS+=($!)
done
for i in 1 2 3; do
    for _ in $(seq 100); do grep -q '"ready"' "$OUT/agent$i.events" && break; sleep 0.1; done
    grep -q '"ready"' "$OUT/agent$i.events" || { cat "$OUT/agent$i.log"; echo "agent $i did not start" >&2; exit 1; }
done
echo "  an agent runs in each backend namespace, in front of the kernel (NIC: eth0 over af_packet, kernel: TAP wsa0)"
jq '.vips[0].mode = "handoff"' "$CONFIG" >"$OUT/handoff.json"
ip netns exec "$WS_NS_SW" target/release/webswitch run --config "$OUT/handoff.json" >"$OUT/hevents" 2>"$OUT/hlog" &
PID=$!
for _ in $(seq 300); do grep -q '"event":"ready"' "$OUT/hevents" 2>/dev/null && break; sleep 0.1; done
code=
for _ in $(seq 60); do
    code=$(ip netns exec "$WS_NS_CLI" curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$WS_VIP/whoami" || true)
    [ "$code" = 200 ] && break
    sleep 0.3
done
[ "$code" = 200 ] || { cat "$OUT/hlog"; echo "no handed-off answer" >&2; exit 1; }
echo "== 100 MB download, handed off: the backend's kernel answers the client directly"
ip netns exec "$WS_NS_CLI" curl -sS --max-time 60 -D "$OUT/h" -o "$OUT/100M.bin" \
    -w '  %{size_download} bytes at %{speed_download} bytes/s\n' "http://$WS_VIP/big/100M.bin"
b=$(tr -d '\r' <"$OUT/h" | awk -F': ' 'tolower($1) == "x-backend" {print $2}')
got=$(sha256sum "$OUT/100M.bin" | cut -d' ' -f1)
want=$(cut -d' ' -f1 "$WS_TESTBED_DIR/$b/www/big/100M.bin.sha256")
[ "$got" = "$want" ] && echo "  sha256 matches $b's file" || { echo "sha256 mismatch" >&2; exit 1; }
rm -f "$OUT/100M.bin"
kill -TERM "$PID"
wait "$PID"
PID=
for a in "${AGENTS[@]}"; do kill -TERM "$a"; done
for a in "${AGENTS[@]}"; do wait "$a" || true; done
AGENTS=()
grep '"event":"final_stats"' "$OUT/hevents" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
t, client = s["total"], s["ports"]["client"]
started, spliced = t["handoffs_started"], t["spliced_bytes_b2c"]
rx, tx = client["rx_bytes"], client["tx_bytes"]
print(f"  switch: handoffs_started {started}, spliced_bytes_b2c {spliced}")
print(f"  switch client port: rx {rx} bytes (the client requests and ACKs), tx {tx} bytes (handshakes and ACKs only)")
print("  the 104857600 response bytes went from the backend to the client past the switch")
'
echo
echo "== taking the handoff testbed down"
bash $TB down
echo "demo done"
