#!/usr/bin/env bash
# Instructions per routed request in presplice mode (a VIP with "mode": "presplice": every
# request of a keep-alive connection is routed; issue 4), counted by callgrind the same way as
# callgrind-splice.sh: inside the worker loop's packet functions only (Worker::handle_burst,
# Worker::flush, and the timers: Worker::sweep, Worker::fire_timer, ConnTable::expire), an
# idle run of the same config
# subtracted in proportion to each run's length.
#
#   idle            start, 2 s, stop (one per mode: splice and presplice configs)
#   splice_ka       splice mode, one curl with M GETs of /whoami on one connection: the
#                   figure callgrind-splice.sh prints "per keep-alive request"
#   splice_mix      splice mode, one curl with M requests on one connection rotating over
#                   /img/logo.png, /app/x, /static/app.js (only the first is routed: all M go
#                   to its backend)
#   presplice_mix   presplice mode, the same M requests: each one routed, /img/ to be1 (pool
#                   images), /app/ to be2 (apps), app.js to the default pool, each spliced
#                   onto a warm backend connection and given back after its exchange (every
#                   pool has "warm": {"min_idle": 4, "max_idle": 64}, as compare.sh's
#                   webswitch_presplice setup)
#   presplice_ka    presplice mode, M GETs of /whoami (every request routed to the default
#                   pool: a round without the change of pool)
# per request = (run - idle) / M. Each run checks curl's answers (count, status 200, one
# connection, the X-Backend of every answer against the pool its rule names) and the switch's
# counters (conns_accepted 1; presplice: requests_routed M, presplice_rounds M-1, no fallback)
# and prints the warm pool counters (warm_attached, warm_returned, warm_opened, warm_closed) and
# backend_connects (connections opened for a request by its own SYN) of each run.
#
# Valgrind counts user space only: the kernel's share of net_af_packet (the tpacket receive,
# sendto) and the PMD's rx copy (rx_burst is called from Worker::run) are not in the figures.
#
# Usage (root): bash bench/scripts/callgrind-presplice.sh [M]     (default 999, a multiple of 3)
#   WS_TESTBED=psg WS_NET=182 KEEP=1 TOP=12 WS_BIN=PATH (measure that binary, no build)
#   RUNS="splice_ka splice_mix presplice_mix presplice_ka"
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
M=${1:-999}
export WS_TESTBED=${WS_TESTBED:-psg}
export WS_NET=${WS_NET:-182}
RUNS=${RUNS:-splice_ka splice_mix presplice_mix presplice_ka}
TB=$ROOT/dpdk-env/scripts/testbed.sh
OUT=$(mktemp -d /tmp/webswitch-cgpresplice.XXXXXX)
PID=
# shellcheck source=bench/scripts/lib.sh
. "$ROOT/bench/scripts/lib.sh"
cleanup() {
    if [ -n "$PID" ]; then
        kill -TERM "$PID" 2>/dev/null && sleep 3
        kill -KILL "$PID" 2>/dev/null || true
    fi
    bash "$TB" down >/dev/null 2>&1 || true
    rm -rf "/run/dpdk/ws-$WS_TESTBED"
    if [ -n "${KEEP:-}" ]; then echo "raw outputs kept in $OUT"; else rm -rf "$OUT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_binary
bash "$TB" up >/dev/null
eval "$(bash "$TB" env)"
write_ws_config "$OUT/splice.json"
# Presplice with warm pools on every pool, as compare.sh's webswitch_presplice setup.
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["vips"][0]["mode"]="presplice"; [p.__setitem__("warm", {"min_idle": 4, "max_idle": 64}) for p in c["pools"]]; json.dump(c, open(sys.argv[2], "w"))' \
    "$OUT/splice.json" "$OUT/presplice.json"
URL=http://$WS_VIP

start() { cg_start "$1" "$2" ip netns exec "$WS_NS_SW"; } # config, callgrind output file
stop() { cg_stop; }
counted() { final_counted "$@"; } # counter names from final_stats, summed
drops_by() { # the nonzero drop reasons of final_stats: reason count, ...
    python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == "final_stats": print(", ".join(f"{k} {v}" for k, v in e["total"]["drops"].items() if v) or "none")' "$OUT/events"
}
cli() { ip netns exec "$WS_NS_CLI" "$@"; }

# One curl, M requests on one connection: a config file (-K) with one url/output pair each.
# Prints one line per answer: path, X-Backend, status, connects.
requests() { # what: ka (GET /whoami) or mix (the rotation)
    local i p paths=(/img/logo.png /app/x /static/app.js) cfg=$OUT/curl.$1
    : >"$cfg"
    for i in $(seq 0 $((M - 1))); do
        if [ "$1" = ka ]; then p=/whoami; else p=${paths[$((i % 3))]}; fi
        printf 'url = "%s%s"\noutput = "/dev/null"\n' "$URL" "$p" >>"$cfg"
    done
    cli curl -s --max-time 900 -K "$cfg" \
        -w '%{url_effective} %header{x-backend} %{http_code} %{num_connects}\n'
}
# Checks the answers of a run; in presplice mode every answer must come from its rule's pool.
check() { # answers file, mode (splice|presplice)
    awk -v m="$M" -v mode="$2" '
        {n++; c += $4; sub(/^http:\/\/[^\/]*/, "", $1)}
        $3 != 200 {bad++; if (bad < 5) print "status " $3 " for " $1 > "/dev/stderr"}
        mode == "presplice" && (($1 ~ /^\/img\// && $2 != "be1") || ($1 ~ /^\/app\// && $2 != "be2")) {
            wrong++; if (wrong < 5) print "wrong pool: " $1 " answered by " $2 > "/dev/stderr"}
        {by[$2]++}
        END {
            printf "  answers %d, connects %d, by backend:", n, c; for (b in by) printf " %s %d", b, by[b]; print ""
            exit !(n == m && c == 1 && !bad && !wrong)}' "$1"
}

declare -A IR DEN SECS
run_one() { # run name
    local run=$1 mode=${1%%_*} what=${1#*_} t0
    wait_for_builds
    start "$OUT/$mode.json" "$OUT/cg.$run"
    t0=$(date +%s%3N)
    sleep 2
    if [ "$what" != idle ]; then
        requests "$what" >"$OUT/answers.$run"
    fi
    sleep 1
    stop
    SECS[$run]=$(($(date +%s%3N) - t0))
    IR[$run]=$(cg_instr "$OUT/cg.$run")
    DEN[$run]=$M
    echo "run $run: ${IR[$run]} instructions collected in ${SECS[$run]} ms; conns_accepted $(counted conns_accepted)," \
        "requests_routed $(counted requests_routed), presplice_rounds $(counted presplice_rounds)," \
        "presplice_fallbacks $(counted presplice_fallbacks), backend_connects $(counted backend_connects)," \
        "warm_attached $(counted warm_attached), warm_returned $(counted warm_returned)," \
        "warm_opened $(counted warm_opened), warm_closed $(counted warm_closed)," \
        "rx_packets $(counted rx_packets), spliced packets c2b+b2c $(counted spliced_packets_b2c spliced_packets_c2b)," \
        "drops $(counted drops_total) ($(drops_by))"
    [ "$what" = idle ] && return 0
    check "$OUT/answers.$run" "$mode" || { echo "$run: unexpected answers (see above)" >&2; exit 1; }
    [ "$(counted conns_accepted)" -eq 1 ] || { echo "$run: expected 1 client connection" >&2; exit 1; }
    if [ "$mode" = presplice ] && ! { [ "$(counted requests_routed)" -eq "$M" ] &&
        [ "$(counted presplice_rounds)" -eq $((M - 1)) ] && [ "$(counted presplice_fallbacks)" -eq 0 ]; }; then
        echo "$run: expected $M routed requests, $((M - 1)) rounds, no fallback" >&2
        exit 1
    fi
}
modes=$(for r in $RUNS; do echo "${r%%_*}"; done | sort -u)
for mode in $modes; do run_one "${mode}_idle"; done
for run in $RUNS; do run_one "$run"; done
nm -C "$BIN" | grep 'Worker>::fire_timer' >/dev/null ||
    echo "note: fire_timer is inlined in this build: connection timers are not counted"
echo
declare -A PER
for run in $RUNS; do
    idle=${run%%_*}_idle
    # The idle run's work (start-up announcements, ARP refreshes, health probes) grows with
    # time: subtract it in proportion to the run's length.
    base=$((${IR[$idle]:-0} * SECS[$run] / (${SECS[$idle]:-1} > 0 ? ${SECS[$idle]:-1} : 1)))
    PER[$run]=$(((IR[$run] - base) / DEN[$run]))
done
for run in $RUNS; do
    case $run in
        splice_ka) what="per keep-alive request, splice mode (GET /whoami, M=$M on one connection; only the first routed)" ;;
        splice_mix) what="per keep-alive request, splice mode, rotating paths (only the first routed: all on one backend)" ;;
        presplice_mix) what="per routed request, presplice mode, rotating over 3 pools (warm pools)" ;;
        presplice_ka) what="per routed request, presplice mode, GET /whoami (default pool, warm pools)" ;;
        *) what="per request" ;;
    esac
    printf '%-14s %8d instructions %s\n' "$run:" "${PER[$run]}" "$what"
done
if [ -n "${PER[presplice_mix]:-}" ] && [ -n "${PER[splice_mix]:-}" ]; then
    echo "presplice_mix / splice_mix: $(awk -v a="${PER[presplice_mix]}" -v b="${PER[splice_mix]}" 'BEGIN {printf "%.2f", a / b}')" \
        "(the same requests, each routed onto a warm backend connection against all spliced to one)"
fi
top_self() { cg_top_self "$@"; }
for run in $RUNS; do
    echo
    echo "largest self costs, $run run:"
    top_self "$OUT/cg.$run" "${TOP:-12}"
done
