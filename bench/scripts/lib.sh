# shellcheck shell=bash disable=SC2034
# Shared helpers for the benchmark scripts (sourced, not run). Expects ROOT (the repository),
# OUT (a scratch directory) and the testbed variables from `testbed.sh env`.

# On 2 shared cores a build or another test next to a measurement takes most of a core.
# True while a build, a valgrind run, a package installation, or another testbed's test (a
# process in some other P-sw or P-cli namespace) is going on: any of them takes a good part
# of a core here.
heavy_jobs() {
    local ns
    # shellcheck disable=SC2009 # one ps for all names (pgrep takes one short pattern)
    ps -e -o comm= | grep -qE '^(cargo|rustc|rust-lld|cc1|clang|callgrind|memcheck|apt-get|apt|dpkg|pip3?)$' && return 0
    for ns in $(ip netns list | awk '$1 ~ /-(sw|cli)$/ {print $1}'); do
        case $ns in "${WS_TESTBED:-}"-*) continue ;; esac
        [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] || return 0
    done
    return 1
}
cpu_busy_pct() { # both CPUs' non-idle share over 2 s, in percent (everything, ours included)
    local a b
    a=$(awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat)
    sleep 2
    b=$(awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat)
    echo "$a $b" | awk '{busy = $3 - $1; idle = $4 - $2; printf "%.0f\n", (busy + idle > 0) ? 100 * busy / (busy + idle) : 0}'
}
# Waits until no heavy job is seen and the machine is quiet (QUIET_PCT, 15 % of both CPUs over
# 2 s, with our own testbed idle), for at most QUIET_WAIT_S (900) s.
wait_for_builds() {
    local said='' start=$SECONDS
    while heavy_jobs || [ "$(cpu_busy_pct)" -gt "${QUIET_PCT:-15}" ]; do
        if [ $((SECONDS - start)) -ge "${QUIET_WAIT_S:-900}" ]; then
            echo "the machine did not get quiet in ${QUIET_WAIT_S:-900} s; going on" >&2
            return 0
        fi
        [ -n "$said" ] || echo "waiting for other builds, valgrind runs or tests to finish..." >&2
        said=1
        sleep 3
    done
}

# Waits for other builds (2 cores: no parallel heavy builds), builds the release binary only if
# it is missing or older than its sources, and copies it to $OUT so that a build started by
# someone else during the benchmark cannot swap the binary under it. Sets BIN, BIN_DATE and
# BIN_NOTE (set when the tree did not build and the older binary is measured).
# WS_BIN=PATH measures that binary instead, with no build (e.g. a copy of the last commit's
# build while the shared working tree holds someone's uncommitted edits).
ensure_binary() {
    local bin=$ROOT/target/release/webswitch stale=''
    wait_for_builds
    if [ -n "${WS_BIN:-}" ]; then
        cp "$WS_BIN" "$OUT/webswitch"
        BIN=$OUT/webswitch
        BIN_DATE=$(date -u -r "$WS_BIN" +%Y-%m-%dT%H:%M:%SZ)
        BIN_NOTE="WS_BIN=$WS_BIN, sha256 $(sha256sum "$WS_BIN" | cut -c1-12)"
        return 0
    fi
    if [ -x "$bin" ]; then
        stale=$(cd "$ROOT" && find dataplane tcpstate rules mgmt dpdk-env Cargo.toml Cargo.lock \
            \( -name '*.rs' -o -name '*.c' -o -name '*.h' -o -name Cargo.toml -o -name Cargo.lock \) \
            -newer "$bin" -print -quit 2>/dev/null)
    fi
    BIN_NOTE=
    if [ ! -x "$bin" ] || [ -n "$stale" ]; then
        echo "building the release binary${stale:+ ($stale is newer)}" >&2
        if ! (cd "$ROOT" && cargo build --release -q -p webswitch); then
            # A shared working tree may be mid-edit: measure the last good binary, and say so.
            [ -x "$bin" ] || exit 1
            BIN_NOTE="the working tree did not build; measured the existing binary, older than $stale"
            echo "warning: $BIN_NOTE" >&2
        fi
    fi
    cp "$bin" "$OUT/webswitch"
    BIN=$OUT/webswitch
    BIN_DATE=$(date -u -r "$bin" +%Y-%m-%dT%H:%M:%SZ)
}

# The example config (1 worker: lcores main 0, worker 1) on this testbed's subnet, with its own
# EAL file prefix.
write_ws_config() { # $1: output path
    sed -e "s/10\.99\./10.$WS_NET./g" \
        -e "s/\"file_prefix\": \"webswitch\"/\"file_prefix\": \"ws-$WS_TESTBED\"/" \
        "$ROOT/examples/testbed.json" >"$1"
}

set_rps() { # namespace interface cpumask
    ip netns exec "$1" sh -c "for q in /sys/class/net/$2/queues/rx-*; do echo $3 >\"\$q/rps_cpus\"; done"
}

# Pinning from DPDK-NOTES: clients, backends and the receive softirqs of their namespaces on
# CPU0; the middle box (and RPS of its two veths) on CPU1. Clients are started with
# `taskset -c 0`; the middle with `taskset -c 1` (HAProxy) or its EAL lcores (webswitch).
pin_testbed() {
    local ns pid ifc
    set_rps "$WS_NS_CLI" "$WS_CLIENT_IF" 1
    for ifc in to-sw be1 be2 be3; do set_rps "$WS_NS_BR" "$ifc" 1; done
    for ns in $WS_NS_BACKENDS; do
        set_rps "$ns" eth0 1
        for pid in $(ip netns pids "$ns"); do taskset -a -pc 0 "$pid" >/dev/null; done
    done
    set_rps "$WS_NS_SW" "$WS_SW_CLIENT_IF" 2
    set_rps "$WS_NS_SW" "$WS_SW_BACKEND_IF" 2
}

# webswitch under callgrind, collecting only the worker's packet work (handle_burst, flush,
# the sweep and the connection timers; not the loop's empty iterations). $1: config, $2: callgrind output file, then an optional command prefix
# (e.g. ip netns exec NS). Sets PID; stdout events go to $OUT/events, stderr to $OUT/log.
cg_start() {
    local config=$1 out=$2
    shift 2
    : >"$OUT/events"
    "$@" valgrind --tool=callgrind --fair-sched=yes ${CG_EXTRA:-} \
        --toggle-collect='*Worker::handle_burst' --toggle-collect='*Worker::flush' \
        --toggle-collect='*Worker*sweep' --toggle-collect='*Worker*fire_timer' \
        --toggle-collect='*ConnTable::expire' --callgrind-out-file="$out" \
        "$BIN" run --config "$config" >"$OUT/events" 2>"$OUT/log" &
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

# Stops the switch cg_start started (its final_stats event lands in $OUT/events).
cg_stop() {
    kill -TERM "$PID"
    wait "$PID" || true
    PID=
}

# The named counters of the final_stats event in $OUT/events, summed.
final_counted() {
    python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == "final_stats": print(sum(e["total"].get(k, 0) for k in sys.argv[2:]))' "$OUT/events" "$@"
}

# The $2 largest self costs by function in callgrind output file $1 (inlined code counted
# where it landed), as "percent  function" lines.
cg_top_self() {
    callgrind_annotate --auto=no --threshold=100 "$1" 2>/dev/null | awk '
        /file:function/ {p = 1; next}
        p && /^ *[0-9,]+ +\( *[0-9.]+%\)  / {
            ir = $1; gsub(",", "", ir); f = $0
            sub(/^ *[0-9,]+ +\( *[0-9.]+%\)  /, "", f)
            if (f ~ /^\?\?\?:/) { o = f; sub(/.*\//, "", o); sub(/\]$/, "", o); sub(/\.so.*/, "", o); f = o " (no symbols)" }
            sub(/ \[[^]]*\]$/, "", f); sub(/^[^ ]*\.(rs|c|h|S):/, "", f)
            s[f] += ir; t += ir }
        END {for (k in s) printf "%6.1f%%  %s\n", 100 * s[k] / t, k}' | sort -rn | awk -v n="$2" 'NR <= n'
}

# Total instructions callgrind collected (the toggled functions only).
cg_instr() { # callgrind out file
    callgrind_annotate "$1" 2>/dev/null |
        awk '/PROGRAM TOTALS/ {gsub(",", "", $1); if (!done) print ($1 == "." ? 0 : $1); done = 1}'
}

# The cluster testbed (`testbed.sh up --cluster`, its env evaluated): the router's next hops
# for the VIP now, and a bounded wait (20 s) until there are $1 of them.
cluster_hops() { ip netns exec "$WS_CLUSTER_ROUTER_NS" ip -4 route show "$WS_CLUSTER_VIP" | grep -c 'via' || true; }
cluster_await_hops() { # count
    for _ in $(seq 400); do [ "$(cluster_hops)" = "$1" ] && return 0; sleep 0.05; done
    echo "the router has $(cluster_hops) next hops for $WS_CLUSTER_VIP, not $1" >&2
    exit 1
}

# The cluster benchmarks' testbed (`testbed.sh up --cluster`) with two instances started by
# the caller into PIDS[1], PIDS[2] (DPDK prefix and socket bench-$WS_TESTBED-N): brought up
# here, with VIP, CTL and `sock N` set; `cluster_bench_stop` stops the instances and removes
# what they left (PIDS emptied, for a next start); `cluster_bench_cleanup` (for `trap ... EXIT`)
# does that and takes the testbed down unless KEEP_TESTBED is set.
cluster_bench_up() {
    ensure_binary
    bash "$TB" up --cluster >"$OUT/testbed.log"
    eval "$(bash "$TB" env)"
    VIP=$WS_CLUSTER_VIP
    CTL=$ROOT/target/release/webswitchctl
    [ -x "$CTL" ] || cargo build --release -q -p mgmt
}
sock() { echo "/run/webswitch/bench-$WS_TESTBED-$1.sock"; }
cluster_bench_stop() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
    rm -rf "/run/dpdk/bench-$WS_TESTBED-1" "/run/dpdk/bench-$WS_TESTBED-2"
    rm -f "$(sock 1)" "$(sock 2)"
}
cluster_bench_cleanup() {
    cluster_bench_stop
    [ -n "${KEEP_TESTBED:-}" ] || bash "$TB" down >/dev/null 2>&1 || true
}
