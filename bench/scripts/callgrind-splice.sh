#!/usr/bin/env bash
# Instructions of the splice path, counted by callgrind inside the worker loop's packet
# functions only (Worker::handle_burst, which parses, looks up the flow, runs the connection
# state machine and translates in place; Worker::flush, which hands frames to the driver,
# including net_af_packet's tx code up to its sendto; and the timers: Worker::sweep every
# 10 ms, Worker::fire_timer per due connection timer, ConnTable::expire reading the wheel),
# the same way as callgrind-l2l3.sh:
#
#   idle        start, 2 s, stop: the baseline, subtracted from every other run in proportion
#               to its length (health probes and ARP refreshes come with time)
#   download    one 100 MB download through the VIP (curl, new connection):
#               per spliced data packet = (run - idle) / (spliced_packets_b2c + spliced_packets_c2b)
#   short       N sequential curl processes, each a new connection with one GET /whoami:
#               per connection = (run - idle) / N
#   keepalive   one curl with M GETs of /whoami on one connection (URL globbing):
#               per request = (run - idle) / M (includes 1/M of the connection's set-up)
#
# Valgrind counts user space only: the kernel's share of net_af_packet (the tpacket receive
# in softirq, sendto) is not in these figures, nor is the PMD's rx copy from its ring into
# mbufs (rx_burst is called from Worker::run, outside the collected functions). Packet counts under valgrind differ a little
# from native runs (the slower switch sees other burst sizes and some retransmissions), so
# the figures are per packet / per connection / per request of that run.
#
# Prints, per run, the functions with the largest self cost.
#
# Usage (root): bash bench/scripts/callgrind-splice.sh [N] [M]     (defaults 200, 2000)
#   WS_TESTBED=wbg WS_NET=141 KEEP=1 TOP=12 RUNS="idle download short keepalive"
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${1:-200}
M=${2:-2000}
export WS_TESTBED=${WS_TESTBED:-wbg}
export WS_NET=${WS_NET:-141}
RUNS=${RUNS:-idle download short keepalive}
TB=$ROOT/dpdk-env/scripts/testbed.sh
OUT=$(mktemp -d /tmp/webswitch-cgsplice.XXXXXX)
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
write_ws_config "$OUT/config.json"
URL=http://$WS_VIP

start() { cg_start "$OUT/config.json" "$1" ip netns exec "$WS_NS_SW"; } # $1: callgrind output file
stop() { cg_stop; }
counted() { final_counted "$@"; } # counter names from final_stats, summed
cli() { ip netns exec "$WS_NS_CLI" "$@"; }

declare -A IR DEN SECS
for run in $RUNS; do
    wait_for_builds
    start "$OUT/cg.$run"
    t0=$(date +%s%3N)
    sleep 2
    case $run in
        idle) ;;
        download)
            res=$(cli curl -s -o /dev/null --max-time 900 -w '%{size_download} %{http_code} %{speed_download}' "$URL/big/100M.bin")
            echo "download: $res (bytes, status, bytes/s under valgrind)"
            [ "${res% *}" = "104857600 200" ] || { echo "incomplete download" >&2; exit 1; }
            ;;
        short)
            for _ in $(seq "$N"); do
                cli curl -s -o /dev/null --max-time 30 "$URL/whoami"
            done
            ;;
        keepalive)
            got=$(cli curl -s --max-time 600 "$URL/whoami?[1-$M]" | grep -c '^be' || true)
            [ "$got" -eq "$M" ] || { echo "keepalive: $got answers, expected $M" >&2; exit 1; }
            ;;
    esac
    sleep 1
    stop
    SECS[$run]=$(($(date +%s%3N) - t0))
    IR[$run]=$(cg_instr "$OUT/cg.$run")
    case $run in
        download) DEN[$run]=$(counted spliced_packets_b2c spliced_packets_c2b) ;;
        short) DEN[$run]=$N ;;
        keepalive) DEN[$run]=$M ;;
        *) DEN[$run]=1 ;;
    esac
    accepted=$(counted conns_accepted)
    echo "run $run: ${IR[$run]} instructions collected in ${SECS[$run]} ms; conns_accepted $accepted," \
        "rx_packets $(counted rx_packets), spliced packets c2b+b2c $(counted spliced_packets_b2c spliced_packets_c2b)," \
        "drops $(counted drops_total)"
    case $run in
        short) [ "$accepted" -eq "$N" ] || { echo "expected $N connections, got $accepted" >&2; exit 1; } ;;
        keepalive | download) [ "$accepted" -eq 1 ] || { echo "expected 1 connection, got $accepted" >&2; exit 1; } ;;
    esac
done
nm -C "$BIN" | grep 'Worker>::fire_timer' >/dev/null ||
    echo "note: fire_timer is inlined in this build: connection timers are not counted"
echo
for run in $RUNS; do
    case $run in
        download) what="per spliced data packet (100 MB download, ${DEN[$run]} packets c2b+b2c)" ;;
        short) what="per short connection (new connection, one GET /whoami, N=$N)" ;;
        keepalive) what="per keep-alive request (GET /whoami, M=$M on one connection)" ;;
        *) continue ;;
    esac
    # The idle run's work (start-up announcements, ARP refreshes, health probes) grows with
    # time: subtract it in proportion to the run's length.
    base=$((${IR[idle]:-0} * SECS[$run] / (${SECS[idle]:-1} > 0 ? ${SECS[idle]:-1} : 1)))
    printf '%-10s %8d instructions %s\n' "$run:" $(((IR[$run] - base) / DEN[$run])) "$what"
done
top_self() { cg_top_self "$@"; }
for run in download keepalive short; do
    [ -e "$OUT/cg.$run" ] || continue
    echo
    echo "largest self costs, $run run:"
    top_self "$OUT/cg.$run" "${TOP:-12}"
done
