#!/usr/bin/env bash
# Per-request routing on keep-alive connections (issue 4, "Benchmark"): webswitch in presplice
# mode against HAProxy routing every request, and against wrk talking to one nginx directly,
# on ONE netns testbed in one run. A thin wrapper over compare.sh (same pinning, CPU
# accounting, repeat-when-disturbed logic and report), with these setups:
#   direct               the kernel routes, wrk talks to be1 itself
#   webswitch            splice mode: only a connection's first request is routed (reference:
#                        the same traffic at the cost of a plain splice)
#   webswitch_presplice  "mode": "presplice": every request routed, with warm pools on every
#                        pool ("warm": {"min_idle": 4, "max_idle": 64}): a routed request is
#                        spliced onto an established backend connection, given back after the
#                        exchange (the report's warm_attached, warm_returned, backend_connects)
#   haproxy              mode http, path_beg /img/ and /app/ ACLs -> use_backend, http-reuse safe
#                        (idle server connections reused across requests)
#   haproxy_close        the same with option http-server-close and http-reuse never: a server
#                        connection per request, like webswitch's presplice without warm pools
# and these tests: ka_mix (bench/scripts/mix.lua: each wrk thread's requests rotate over
# /img/logo.png -> images (be1), /app/x -> apps (be2), /static/app.js -> default), preceded by
# a routing check with curl (both rounds of the three URLs on one connection: path>X-Backend);
# and ka_small (keep-alive /whoami, one pool: the cost of a presplice round without a change
# of backend).
#
# Usage (root): bash bench/scripts/compare-presplice.sh
#   every variable of compare.sh; defaults here: WS_TESTBED=psb WS_NET=181 DURATION=8
#   SETUPS="direct webswitch webswitch_presplice haproxy haproxy_close" TESTS="ka_mix ka_small"
# The webswitch setups come before HAProxy's: HAProxy's server connections leave TIME_WAIT
# in the backends toward the switch's address, which compare.sh waits out before a webswitch
# setup (up to ~60 s).
set -euo pipefail
export WS_TESTBED=${WS_TESTBED:-psb}
export WS_NET=${WS_NET:-181}
export DURATION=${DURATION:-8}
export SETUPS=${SETUPS:-direct webswitch webswitch_presplice haproxy haproxy_close}
export TESTS=${TESTS:-ka_mix ka_small}
exec bash "$(dirname "$0")/compare.sh" "$@"
