#!/usr/bin/env bash
# webswitch against a kernel router ("direct") and HAProxy on ONE netns testbed, in one run.
# Time on the 2-core development machines is noisy and the clients and backends saturate
# CPU0 in every setup, so read the results as ratios inside one run, and compare the middle
# boxes by CPU per request (see docs/benchmarks.md, "webswitch, HAProxy and the kernel").
#
# Setups, one after the other on the same testbed (prefix wbc, 10.140.x.x by default):
#   direct    kernel router in P-sw (sw-cli 10.N.0.1/24, sw-be 10.N.1.1/24, ip_forward=1);
#             the client talks to be1 (10.N.1.11) itself. Its cost is softirq work on an
#             otherwise idle CPU1, which tick-based accounting mostly misses: "n/a".
#   haproxy   Debian's HAProxy in P-sw, same kernel addresses plus the VIP 10.N.0.10 on
#             sw-cli; mode http, the rules of examples/testbed.json, nbthread 1, taskset CPU1.
#   webswitch the release binary, examples/testbed.json (1 worker: lcores main 0, worker 1),
#             no kernel addresses in P-sw, --stats-interval 1.
#   webswitch_linger  diagnostic: webswitch with tcp.closed_linger_ms=LINGER_MS (200; default
#             2000), the new-connection run only, for LINGER_DURATION (5) s (see
#             docs/benchmarks.md for why).
#   webswitch_presplice  webswitch with the VIP in "mode": "presplice" and warm pools of 4 per
#             backend and core (every request of a
#             keep-alive connection routed; issue 4).
#   webswitch_xdp  webswitch as above with its two ports as net_af_xdp instead of net_af_packet
#             (issue 15 point 9; no doorbell there: its workers sleep blind).
#   haproxy_close  HAProxy as above with `option http-server-close` and `http-reuse never`: a
#             new server connection for every request, as webswitch's presplice without a
#             warm pool.
# Pinning (DPDK-NOTES): wrk, curl, nginx and the receive softirqs (RPS) of the client's, the
# bridge's and the backends' veths on CPU0; the middle box and RPS of sw-cli/sw-be on CPU1.
#
# Per setup, the tests in TESTS (default "ka_small ka_js close dl"): wrk -t2 -c100 -d10s
# --latency keep-alive on /whoami (ka_small) and on /static/app.js (ka_js), and on /whoami with
# "Connection: close" (close, a new connection per request); 3 downloads of /big/100M.bin with
# curl (dl, median rate); and, not in the default, ka_mix: keep-alive with a wrk Lua script
# that rotates each wrk thread's requests over /img/logo.png (pool images, be1), /app/x (apps,
# be2) and /static/app.js (default), so consecutive requests of a connection mostly go to
# different pools (wrk's Lua does not see connections: see bench/scripts/mix.lua); and, not in
# the default either, sparse: SPARSE_N (500) new-connection GETs of /whoami one every 10 ms from a
# Python client (time to first byte p50/p90/p99: the cost of a middle box that sleeps when idle).
# bench/scripts/compare-presplice.sh runs the presplice comparison. CPU per request of the
# middle box:
#   haproxy   utime+stime of its process (/proc/PID/stat) during the run / requests;
#   webswitch busy_cycles / TSC Hz between the stats events around the run / requests, and
#             its process CPU time the same way as HAProxy's, for comparison;
#   both      CPU1's non-idle time (/proc/stat user+nice+system+irq+softirq) / requests: the
#             whole middle core including kernel work (forwarding, TCP, af_packet), but also
#             anything else that ran on CPU1 and, for webswitch, its idle polling;
#   both      "CPU1 work": the same minus the share of CPU1 samples that were webswitch's idle
#             polling (ws_pause, ws_rdtsc) or other processes, from `perf record -F 999
#             -e cpu-clock -C 1` during the run (PERF=1, default; no hardware counters here).
# Also counted: backend connections per request (nginx stub_status accepts), the client's
# TCP (SYN) retransmissions (nstat in P-cli) and webswitch's drops. A run during which a
# cargo build, a valgrind run, a package installation or another testbed's test was seen
# (lib.sh heavy_jobs), or in which other processes took more than FOREIGN_MAX (5) % of CPU1
# (perf samples against wall time), is repeated, up to RETRIES (5) times, then flagged. Each
# run first waits until the machine is quiet (lib.sh wait_for_builds).
#
# Usage (root): bash bench/scripts/compare.sh
#   DURATION=10 THREADS=2 CONNS=100 DL_RUNS=3 SETUPS="direct haproxy webswitch webswitch_linger"
#   LINGER_MS=200 LINGER_DURATION=5 PERF=1 RETRIES=5 FOREIGN_MAX=5 QUIET_PCT=15 QUIET_WAIT_S=900
#   TESTS="ka_small ka_js close dl" (and ka_mix)
#   WS_TESTBED=wbc WS_NET=140 KEEP=1 (keep the raw outputs in /tmp/webswitch-compare.*)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export WS_TESTBED=${WS_TESTBED:-wbc}
export WS_NET=${WS_NET:-140}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNS=${CONNS:-100}
DL_RUNS=${DL_RUNS:-3}
SETUPS=${SETUPS:-direct haproxy webswitch webswitch_linger}
TESTS=${TESTS:-ka_small ka_js close dl}
LINGER_MS=${LINGER_MS:-200}
LINGER_DURATION=${LINGER_DURATION:-5}
PERF=${PERF:-1}
RETRIES=${RETRIES:-5}
FOREIGN_MAX=${FOREIGN_MAX:-5}
TB=$ROOT/dpdk-env/scripts/testbed.sh
OUT=$(mktemp -d /tmp/webswitch-compare.XXXXXX)
MID_PID=
MODE=
PERF_PID=
WATCH_PID=
# shellcheck source=bench/scripts/lib.sh
. "$ROOT/bench/scripts/lib.sh"

stop_middle() {
    [ -n "$MID_PID" ] || return 0
    kill -TERM "$MID_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$MID_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$MID_PID" 2>/dev/null || true
    wait "$MID_PID" 2>/dev/null || true
    MID_PID=
}
cleanup() {
    perf_stop
    [ -z "$WATCH_PID" ] || watch_stop || true
    stop_middle
    bash "$TB" down >/dev/null 2>&1 || true
    rm -rf "/run/dpdk/ws-$WS_TESTBED"
    if [ -n "${KEEP:-}" ]; then echo "raw outputs kept in $OUT"; else rm -rf "$OUT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kernel_addrs() { # on|off [vip]
    local sw=$WS_NS_SW
    ip -n "$sw" addr flush dev "$WS_SW_CLIENT_IF"
    ip -n "$sw" addr flush dev "$WS_SW_BACKEND_IF"
    if [ "$1" = on ]; then
        ip -n "$sw" addr add "$WS_SWITCH_CLIENT_IP/24" dev "$WS_SW_CLIENT_IF"
        ip -n "$sw" addr add "$WS_SWITCH_BACKEND_IP/24" dev "$WS_SW_BACKEND_IF"
        [ -z "${2:-}" ] || ip -n "$sw" addr add "$2/32" dev "$WS_SW_CLIENT_IF"
        ip netns exec "$sw" sysctl -qw net.ipv4.ip_forward=1
    else
        ip netns exec "$sw" sysctl -qw net.ipv4.ip_forward=0
        ip -n "$sw" neigh flush all
    fi
}

cli() { ip netns exec "$WS_NS_CLI" taskset -c 0 "$@"; }

backend_accepts() { # nginx stub_status "accepts", summed over the backends
    local total=0 ns ip n
    # shellcheck disable=SC2086 # a list
    set -- $WS_BACKENDS
    for ns in $WS_NS_BACKENDS; do
        ip=$1
        shift
        n=$(ip netns exec "$ns" taskset -c 0 curl -s --max-time 3 "http://$ip/nginx_status" | awk 'NR == 3 {print $1}')
        total=$((total + ${n:-0}))
    done
    echo "$total"
}

ws_sync() { # waits for the next periodic stats event of webswitch and prints it
    local n m
    local ev=$OUT/$MODE.events
    n=$(grep -c '"event":"stats"' "$ev" || true)
    for _ in $(seq 60); do
        m=$(grep -c '"event":"stats"' "$ev" || true)
        [ "$m" -gt "$n" ] && break
        sleep 0.05
    done
    grep '"event":"stats"' "$ev" | tail -1
}

snap() { # file: counters of the middle box, CPU1 and the backends at this moment
    local f=$1
    case $MODE in webswitch*) ws_sync >"$f.ws" ;; esac
    {
        echo "time=$(date +%s.%N)"
        if [ -n "$MID_PID" ]; then
            echo "proc=$(sed 's/.*) //' "/proc/$MID_PID/stat" | awk '{print $12 + $13}')"
        fi
        awk '$1 == "cpu1" {print "cpu1=" $2 + $3 + $4 + $7 + $8; print "cpu1_softirq=" $8}' /proc/stat
        echo "accepts=$(backend_accepts)"
        ip netns exec "$WS_NS_CLI" nstat -asz TcpExtTCPSynRetrans TcpRetransSegs | awk '/^Tcp/ {print "cli_" $1 "=" $2}'
        echo "loadavg=$(cut -d' ' -f1 /proc/loadavg)"
    } >"$f"
}

perf_start() { # name: samples CPU1 into $OUT/perf.$MODE.NAME.data until perf_stop
    PERF_PID=
    [ "$PERF" = 1 ] && command -v perf >/dev/null || return 0
    taskset -c 0 perf record -q -F 999 -e cpu-clock -C 1 -o "$OUT/perf.$MODE.$1.data" >/dev/null 2>&1 &
    PERF_PID=$!
    sleep 1 # perf takes a moment to start sampling
}
perf_stop() {
    [ -n "$PERF_PID" ] || return 0
    kill -TERM "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" || true
    PERF_PID=
}

# A build started by someone else during a run takes most of a core: watch for one, and
# repeat the run (up to RETRIES times) when one was seen.
watch_start() {
    rm -f "$OUT/heavy.flag"
    (while :; do heavy_jobs && touch "$OUT/heavy.flag"; sleep 1; done) &
    WATCH_PID=$!
    taskset -pc 0 "$WATCH_PID" >/dev/null # with the clients, off the middle's core
}
watch_stop() { # false when a build ran
    kill "$WATCH_PID" 2>/dev/null || true
    wait "$WATCH_PID" 2>/dev/null || true
    WATCH_PID=
    [ ! -e "$OUT/heavy.flag" ]
}

# CPU1 time that went to processes other than the middle box and the kernel's own threads,
# in percent of the run's wall time: what heavy_jobs missed (someone's shell, python, ...).
# From the perf samples (-F 999); 0 without perf.
foreign_share() { # perf data file, wall seconds
    [ -s "$1" ] || { echo 0; return; }
    perf report -i "$1" --stdio --no-children -n --sort comm -t '|' 2>/dev/null | awk -F'|' -v wall="$2" '
        /^#/ || NF < 3 {next}
        {c = $3; gsub(/^ +| +$/, "", c)}
        c ~ /^(haproxy|webswitch|eal-intr-thread|rte[-_].*|ksoftirqd\/.*|kworker\/.*|swapper\/.*|kdamond.*|rcu.*|migration\/.*|cpuhp\/.*|perf.*)$/ {next}
        {n += $2}
        END {printf "%.0f\n", (wall > 0) ? 100 * n / 999 / wall : 0}'
}

measured() { # name command...: one measurement with snapshots, perf, and the heavy-job watch
    local name=$1 try foreign
    shift
    for try in $(seq "$RETRIES"); do
        wait_for_builds
        watch_start
        perf_start "$name"
        snap "$OUT/$MODE.$name.before"
        "$@"
        snap "$OUT/$MODE.$name.after"
        perf_stop
        foreign=$(foreign_share "$OUT/perf.$MODE.$name.data" \
            "$(($(date +%s) - $(sed -n 's/^time=\([0-9]*\).*/\1/p' "$OUT/$MODE.$name.before")))")
        if watch_stop && [ "$foreign" -le "$FOREIGN_MAX" ]; then return 0; fi
        echo "heavy=1" >>"$OUT/$MODE.$name.after"
        echo "  ($MODE $name: other jobs ran during the run (${foreign}% of CPU1); attempt $try of $RETRIES)" >&2
    done
}

wrk_once() { # name url [wrk options]
    local name=$1 url=$2
    shift 2
    cli wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$@" "$url" >"$OUT/$MODE.$name.wrk" 2>&1 || true
}
run_wrk() { # name url [wrk options]
    measured "$1" wrk_once "$@"
    printf '  %-11s %-8s %s\n' "$MODE" "$1" \
        "$(awk '/Requests\/sec/ {r=$2} /Socket errors|Non-2xx/ {e=e " [" $0 "]"} END {print r " req/s" e}' "$OUT/$MODE.$1.wrk")"
}

downloads_once() { # base url
    local i
    : >"$OUT/$MODE.dl.curl"
    for i in $(seq "$DL_RUNS"); do
        cli curl -s -o /dev/null --max-time 300 -w '%{speed_download} %{size_download} %{http_code}\n' \
            "$1/big/100M.bin" >>"$OUT/$MODE.dl.curl" || echo "0 0 000" >>"$OUT/$MODE.dl.curl"
    done
}
run_downloads() { # base url
    measured dl downloads_once "$1"
    printf '  %-11s %-8s %s\n' "$MODE" download "$(awk '{printf "%.1f MB/s ", $1 / 1e6}' "$OUT/$MODE.dl.curl")"
}

# After all measurements (perf report is CPU-heavy): per-sample splits for the report, and the
# top of the keep-alive /whoami profiles.
perf_reports() {
    local f base
    for f in "$OUT"/perf.*.data; do
        [ -e "$f" ] || continue
        base=${f%.data}
        perf report -i "$f" --stdio --no-children --sort comm,dso,sym -t '|' >"$base.full" 2>/dev/null || true
    done
    for f in "$OUT"/perf.*.ka_small.data; do
        [ -e "$f" ] || continue
        base=${f%.data}
        {
            echo "## perf cpu-clock samples on CPU1, ${base##*/perf.}"
            perf report -i "$f" --stdio --no-children --sort comm,dso 2>/dev/null |
                grep -v -e '^#' -e '^$' | awk 'NR <= 8'
            echo "## top symbols"
            perf report -i "$f" --stdio --no-children --sort dso,sym 2>/dev/null |
                grep -v -e '^#' -e '^$' | awk 'NR <= 25'
        } >"$base.txt"
    done
}

wait_http() { # url: until it answers 200 (10 s at most)
    for _ in $(seq 100); do
        [ "$(cli curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" || true)" = 200 ] && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}

# TIME_WAIT sockets a backend keeps toward 10.N.1.1 from the previous middle box would meet the
# next one's SYNs from the same addresses and ports: let them expire first (at most ~60 s).
drain_time_wait() {
    local ns n left
    for _ in $(seq 75); do
        left=0
        for ns in $WS_NS_BACKENDS; do
            n=$(ip netns exec "$ns" ss -Htan state time-wait dst "$WS_SWITCH_BACKEND_IP" | wc -l)
            left=$((left + n))
        done
        [ "$left" -eq 0 ] && return 0
        sleep 1
    done
}

# Routing check before a ka_mix run: the mix's URLs twice on one curl connection; prints
# each answer's path, X-Backend and whether it reused the connection (connects 0).
sparse_once() { # base url: one new-connection GET every 10 ms, time to first byte
    cli python3 - "$1" "${SPARSE_N:-500}" >"$OUT/$MODE.sparse.txt" <<'PY'
import socket, sys, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
host, port, n = u.hostname, u.port or 80, int(sys.argv[2])
ttfb, failed = [], 0
for _ in range(n):
    t0 = time.perf_counter()
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"GET /whoami HTTP/1.1\r\nHost: sparse\r\nConnection: close\r\n\r\n")
        first = s.recv(1)
        t1 = time.perf_counter()
        while s.recv(65536):
            pass
        s.close()
        if first == b"H":
            ttfb.append((t1 - t0) * 1e6)
        else:
            failed += 1
    except OSError:
        failed += 1
    time.sleep(max(0.0, 0.010 - (time.perf_counter() - t0)))
ttfb.sort()
q = lambda p: ttfb[min(len(ttfb) - 1, int(p * len(ttfb)))] if ttfb else 0
print(f"n {len(ttfb)} failed {failed} ttfb_us p50 {q(0.5):.0f} p90 {q(0.9):.0f} p99 {q(0.99):.0f}")
PY
}
run_sparse() { # base url
    measured sparse sparse_once "$1"
    printf '  %-11s %-8s %s\n' "$MODE" sparse "$(cat "$OUT/$MODE.sparse.txt")"
}

route_check() { # base url
    local u=$1 f=$OUT/$MODE.route_check p args=()
    for p in /img/logo.png /app/x /static/app.js /img/logo.png /app/x /static/app.js; do
        args+=(-o /dev/null "$u$p")
    done
    cli curl -s --max-time 10 -w '%{url_effective} %header{x-backend} %{http_code} connects=%{num_connects}\n' \
        "${args[@]}" >"$f" 2>&1 || true
    printf '  %-11s %-8s %s\n' "$MODE" routing "$(awk '{sub(/^http:\/\/[^\/]*/, "", $1); printf "%s>%s(%s,%s) ", $1, $2, $3, $4}' "$f")"
}

suite() { # base url
    local t
    for t in $TESTS; do
        case $t in
            ka_small) run_wrk ka_small "$1/whoami" ;;
            ka_js) run_wrk ka_js "$1/static/app.js" ;;
            ka_mix) route_check "$1"; run_wrk ka_mix "$1/" -s "$ROOT/bench/scripts/mix.lua" ;;
            close) run_wrk close "$1/whoami" -H "Connection: close" ;;
            dl) run_downloads "$1" ;;
            sparse) run_sparse "$1" ;;
            *) echo "unknown test $t" >&2; exit 2 ;;
        esac
    done
}

haproxy_cfg() { # [close]: a new server connection per request
    local i=0 ip reuse=safe close=''
    if [ "${1:-}" = close ]; then
        reuse=never
        close='    option http-server-close'
    fi
    cat <<EOF
global
    nbthread 1
    maxconn 8000
    pidfile $OUT/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse $reuse
$close
frontend vip
    bind $WS_VIP:$WS_VIP_PORT
    acl images path_beg /img/
    acl images path_end .png .jpg .jpeg .gif
    acl apps path_beg /app/
    use_backend images if images
    use_backend apps if apps
    default_backend default
backend images
    server be1 ${BE1}:$WS_BACKEND_PORT
backend apps
    server be2 $(echo "$WS_BACKENDS" | awk '{print $2}'):$WS_BACKEND_PORT
backend default
    balance leastconn
EOF
    for ip in $WS_BACKENDS; do
        i=$((i + 1))
        echo "    server be$i $ip:$WS_BACKEND_PORT"
    done
}

ensure_binary
bash "$TB" up >/dev/null
eval "$(bash "$TB" env)"
pin_testbed
read -r BE1 _ <<<"$WS_BACKENDS"
write_ws_config "$OUT/config.json"
{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit=$(git -C "$ROOT" log -1 --format='%h %s' 2>/dev/null || echo unknown)"
    echo "dirty=$(git -C "$ROOT" status --porcelain -- dataplane tcpstate rules dpdk-env mgmt 2>/dev/null | wc -l)"
    echo "binary=built $BIN_DATE${BIN_NOTE:+ ($BIN_NOTE)}"
    echo "kernel=$(uname -r)"
    echo "cpus=$(nproc)"
    echo "haproxy=$(haproxy -v 2>/dev/null | head -1)"
    echo "nginx=$(nginx -v 2>&1)"
    echo "wrk=$(wrk -v 2>&1 | head -1)"
    echo "params=-t$THREADS -c$CONNS -d${DURATION}s dl_runs=$DL_RUNS tests=$TESTS"
} >"$OUT/meta"

echo "results:"
for MODE in $SETUPS; do
    case $MODE in
        direct)
            kernel_addrs on
            wait_http "http://$BE1/whoami"
            suite "http://$BE1"
            kernel_addrs off
            ;;
        haproxy | haproxy_close)
            kernel_addrs on "$WS_VIP"
            haproxy_cfg "${MODE#haproxy_}" >"$OUT/$MODE.cfg"
            haproxy -c -q -f "$OUT/$MODE.cfg"
            ip netns exec "$WS_NS_SW" taskset -c 1 haproxy -db -f "$OUT/$MODE.cfg" \
                >"$OUT/$MODE.haproxy.log" 2>&1 &
            MID_PID=$!
            wait_http "http://$WS_VIP/whoami"
            suite "http://$WS_VIP"
            stop_middle
            kernel_addrs off
            ;;
        webswitch | webswitch_linger | webswitch_presplice | webswitch_xdp)
            kernel_addrs off
            drain_time_wait
            cfg=$OUT/config.json
            if [ "$MODE" = webswitch_linger ]; then
                cfg=$OUT/config-linger.json
                python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["tcp"]["closed_linger_ms"]=int(sys.argv[3]); json.dump(c, open(sys.argv[2], "w"))' \
                    "$OUT/config.json" "$cfg" "$LINGER_MS"
            elif [ "$MODE" = webswitch_xdp ]; then
                # The same veths through net_af_xdp instead of net_af_packet (one queue each).
                cfg=$OUT/config-xdp.json
                python3 -c 'import json,re,sys; c=json.load(open(sys.argv[1])); [p.__setitem__("device", re.sub(r"^net_af_packet(\d+),iface=([^,]+).*", r"net_af_xdp\1,iface=\2", p["device"])) for p in c["ports"]]; json.dump(c, open(sys.argv[2], "w"))' \
                    "$OUT/config.json" "$cfg"
            elif [ "$MODE" = webswitch_presplice ]; then
                cfg=$OUT/config-presplice.json
                python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["vips"][0]["mode"]="presplice"; [p.__setitem__("warm", {"min_idle": 4, "max_idle": 64}) for p in c["pools"]]; json.dump(c, open(sys.argv[2], "w"))' \
                    "$OUT/config.json" "$cfg"
            fi
            ip netns exec "$WS_NS_SW" "$BIN" run --config "$cfg" --stats-interval 1 \
                >"$OUT/$MODE.events" 2>"$OUT/$MODE.log" &
            MID_PID=$!
            for _ in $(seq 300); do
                grep -q '"event":"ready"' "$OUT/$MODE.events" && break
                kill -0 "$MID_PID" 2>/dev/null || break
                sleep 0.1
            done
            grep -q '"event":"ready"' "$OUT/$MODE.events" || { cat "$OUT/$MODE.log" >&2; exit 1; }
            wait_http "http://$WS_VIP/whoami"
            if [ "$MODE" != webswitch_linger ]; then
                suite "http://$WS_VIP"
            else
                # Short enough that the switch's 55,536 local ports toward the backends do not
                # wrap around within the run (see docs/benchmarks.md).
                DURATION=$LINGER_DURATION run_wrk close "http://$WS_VIP/whoami" -H "Connection: close"
            fi
            stop_middle
            ;;
        *) echo "unknown setup $MODE" >&2; exit 2 ;;
    esac
done
perf_reports
echo
# shellcheck disable=SC2086 # a list
python3 "$ROOT/bench/scripts/compare_report.py" "$OUT" $SETUPS
for f in "$OUT"/perf.*.ka_small.txt; do
    [ -e "$f" ] || continue
    echo
    cat "$f"
done
