#!/usr/bin/env bash
# testbed.sh: the webswitch network-namespace testbed (see docs/testbed.md).
#
# Usage: dpdk-env/scripts/testbed.sh {up [--handoff]|down [--purge]|status|env|impair|help}
#   up       (re)build the testbed: runs `down` for the same prefix first, then creates
#            the namespaces, veths, bridge, addresses, and starts one nginx per backend
#   up --handoff
#            the same, laid out for TCP handoff: a router namespace $P-rt (10.N.1.254 on the
#            backend bridge, 10.N.0.254 to the client's second veth cli1) carries the
#            backends' answers to the client past the switch; in each backend eth0 has no
#            address and an nft netdev ingress drop (only an agent's af_packet socket sees
#            its frames), the kernel sits behind the persistent TAP wsa0 (backend IP, eth0's
#            MAC, default via the router) and holds the VIP on lo. Backends are unreachable
#            from outside until an agent bridges eth0 and wsa0 (see docs/testbed.md). A
#            fourth backend be4 (10.N.2.14, prepared the same way) sits in another subnet
#            behind the router (10.N.2.254 on rt-b4): the switch reaches it by IP-in-IP or
#            GRE (outer 10.N.1.1 -> 10.N.2.14 via 10.N.1.254), its agent decapsulates; the
#            links those packets cross have MTU 1524
#   up --cluster
#            the same, plus up to three webswitch instances behind an ECMP router (see
#            testbed-cluster.sh): $P-fr (BIRD, multipath), its client $P-fc, the other
#            instances' namespaces $P-sw2 and $P-sw3, a persistent TAP wsx0 (host address)
#            and BIRD in each instance's namespace; the VIP 10.N.5.10 is reachable once
#            webswitch runs
#   down     kill every process in our namespaces, delete the namespaces; with --purge
#            also delete /tmp/$P-testbed (the generated content, incl. 3 (4) x 100 MiB files)
#   status   show namespaces, links, addresses, nginx state; exit 0 only if fully up
#   env      print shell-eval-able variables (eval "$(testbed.sh env)")
#   impair [--loss PCT] [--dup PCT] [--reorder PCT] [--delay MS] [--seed N]
#          [--links client,backend,router,client_return,front] [--reorder-gap K] [--reorder-ms MS]
#            (re)apply TCP-only loss/duplication/reordering/delay, both directions, on the
#            client link and/or every backend link, and on a handoff testbed the direct
#            return path too: router (bridge port rt) and client_return (cli1); default:
#            every link the testbed has (replaces any earlier impairment; PCT:
#            0-100, up to 2 decimals; reorder holds PCT % of packets until K (default 3)
#            later packets of their flow passed or MS (default 10) ms elapsed; --delay holds
#            every packet MS ms (0-10000, up to 2 decimals) in each direction of each link)
#            (on a handoff testbed be4 stays unimpaired but for its answers on client_return:
#            its link rt-b4 has no rules and the switch's IP-in-IP to it is not TCP)
#            (front, on a cluster testbed only and never by default: the link of the client
#            behind the ECMP router, $P-fc's cli0, the way to every instance's front port)
#   impair off     remove every impairment (rules, helper veths, NFQUEUE consumers)
#   impair stats   print JSON counters of what was injected, per link and direction
#
# Environment:
#   WS_TESTBED  name prefix P, 1-5 chars [A-Za-z0-9_] (default: wst). Every namespace,
#               file and directory this script touches derives from it.
#   WS_NET      second octet N of the addresses, 0-255 (default: 99), so two testbeds
#               can coexist: client net 10.N.0.0/24, backend net 10.N.1.0/24 (and with
#               --handoff be4's net 10.N.2.0/24).
#
# Nothing is created in the root namespace: veths are created inside their namespaces
# and the backend bridge lives in its own namespace ($P-br).
set -euo pipefail

P=${WS_TESTBED:-wst}
N=${WS_NET:-99}

die() { echo "testbed: $*" >&2; exit 1; }
say() { echo "testbed[$P]: $*"; }

if ! [[ $P =~ ^[A-Za-z0-9_]{1,5}$ ]]; then
    die "WS_TESTBED='$P' is invalid: use 1-5 characters from [A-Za-z0-9_] (every namespace and file name derives from it)"
fi
if ! [[ $N =~ ^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$ ]]; then
    die "WS_NET='$N' is invalid: use a number 0-255 (the second octet of 10.N.x.x)"
fi

# ---- names and addresses (everything derives from P and N) --------------------------
NS_CLI=$P-cli
NS_SW=$P-sw
NS_BR=$P-br
BACKENDS=(be1 be2 be3)   # on the backend bridge; also the backends `impair` knows
NS_RT=$P-rt          # handoff only: the backends' direct way back to the client
ROUTED=be4           # handoff only: a backend in another subnet, behind the router
NS_ROUTED=$P-$ROUTED
NS_BASE=("$NS_CLI" "$NS_SW" "$NS_BR")
for b in "${BACKENDS[@]}"; do NS_BASE+=("$P-$b"); done
# what `down` removes: the router and be4 too, whether or not this is a handoff testbed
NS_ALL=("${NS_BASE[@]}" "$NS_RT" "$NS_ROUTED")

DIR=/tmp/$P-testbed
HANDOFF_FLAG=$DIR/handoff   # present while a testbed built by `up --handoff` stands

CLIENT_NET=10.$N.0
BACKEND_NET=10.$N.1
CLIENT_IP=$CLIENT_NET.2
SWITCH_CLIENT_IP=$CLIENT_NET.1
VIP=$CLIENT_NET.10
VIP_PORT=80
SWITCH_BACKEND_IP=$BACKEND_NET.1
ROUTED_NET=10.$N.2   # handoff only: be4's subnet, reached from the switch through the router
ROUTED_IP=$ROUTED_NET.14
backend_ip() { # be1 -> 10.N.1.11, be4 -> 10.N.2.14
    if [[ $1 == "$ROUTED" ]]; then echo "$ROUTED_IP"; return; fi
    echo "$BACKEND_NET.$((10 + ${1#be}))"
}

# Interface names live inside the namespaces, so they need no prefix.
IF_CLI=cli0          # in $P-cli
IF_SW_CLI=sw-cli     # in $P-sw, veth peer of cli0            (DPDK port 0)
IF_SW_BE=sw-be       # in $P-sw, veth peer of to-sw in $P-br  (DPDK port 1)
IF_BR=br0            # in $P-br, bridge
IF_BR_SW=to-sw       # in $P-br, bridge port, peer of sw-be
IF_BE=eth0           # in $P-beN, peer of beN in $P-br
# handoff only
IF_CLI_RT=cli1       # in $P-cli, peer of rt-cli; no address: the backends' answers arrive here
IF_RT_CLI=rt-cli     # in $P-rt, 10.N.0.254
IF_RT_BE=rt-be       # in $P-rt, 10.N.1.254, peer of rt in $P-br
IF_BR_RT=rt          # in $P-br, bridge port
IF_RT_ROUTED=rt-b4   # in $P-rt, 10.N.2.254, peer of eth0 in $P-be4
IF_AGENT=wsa0        # in $P-beN, persistent TAP: the agent's way into the backend's kernel
HO_TABLE=ws_handoff  # nft table (netdev family) in $P-beN: drops everything arriving on eth0

# Deterministic, locally administered MACs that embed the IP: 02:00:0a:NN:SS:HH.
NHEX=$(printf '%02x' "$N")
mac() { printf '02:00:0a:%s:%02x:%02x' "$NHEX" "$1" "$2"; }
MAC_CLI=$(mac 0 2)
MAC_SW_CLI=$(mac 0 1)
MAC_SW_BE=$(mac 1 1)
ROUTER_CLI_IP=$CLIENT_NET.254
ROUTER_BE_IP=$BACKEND_NET.254
MAC_CLI_RT=$(mac 0 3)
MAC_RT_CLI=$(mac 0 254)
MAC_RT_BE=$(mac 1 254)
ROUTER_ROUTED_IP=$ROUTED_NET.254
MAC_RT_ROUTED=$(mac 2 254)
backend_mac() { # eth0's MAC (and the agent tap's): be1 -> 02:00:0a:NN:01:0b, be4 -> ..:02:0e
    if [[ $1 == "$ROUTED" ]]; then mac 2 14; return; fi
    mac 1 $((10 + ${1#be}))
}
backend_gw() { # the router's address on the backend's subnet (handoff: its default route)
    if [[ $1 == "$ROUTED" ]]; then echo "$ROUTER_ROUTED_IP"; return; fi
    echo "$ROUTER_BE_IP"
}
# IP-in-IP from the switch to be4 (outer 10.N.1.1 -> 10.N.2.14, protocol 4) adds a 20-byte
# header, GRE (protocol 47) 24 bytes: every link such a packet crosses gets this MTU, so a full
# 1500-byte inner packet fits either way (a 1538-byte frame at most). Every other link, and
# wsa0 (the agent hands the kernel the inner packet), stays at 1500.
MTU_ENCAP=1524

# the cluster layout (`up --cluster`): its names, addresses and functions
# shellcheck source=dpdk-env/scripts/testbed-cluster.sh
. "$(dirname "${BASH_SOURCE[0]}")/testbed-cluster.sh"
NS_ALL+=("${NS_CLUSTER[@]}")

# ---- helpers ---------------------------------------------------------------------------
need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root"; }

need_tools() {
    local t missing=()
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (run dpdk-env/scripts/deps.sh)"
}

ns_exists() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -Fxq -- "$1"
}

nsx() { # run a command inside a namespace
    local ns=$1; shift
    ip netns exec "$ns" "$@"
}

offloads_off() { # ns if: checksum/segmentation/GRO offloads off, one at a time (some are fixed)
    local ns=$1 ifc=$2 f
    for f in rx tx sg tso gso gro lro ufo; do
        nsx "$ns" ethtool -K "$ifc" "$f" off >/dev/null 2>&1 || true
    done
}

ns_sysctls() { # ns: no IPv6, no reverse-path filtering
    local ns=$1
    nsx "$ns" sysctl -qw \
        net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1 \
        net.ipv4.conf.all.rp_filter=0 \
        net.ipv4.conf.default.rp_filter=0 >/dev/null
    ip -n "$ns" link set lo up
}

pid_in_ns() { # pid ns: is this pid a process in that namespace?
    local pid=$1 ns=$2
    ns_exists "$ns" || return 1
    ip netns pids "$ns" 2>/dev/null | grep -Fxq -- "$pid"
}

nginx_pid() { # backend -> pid of its nginx master, if running in its own namespace
    local b=$1 pid
    [[ -s $DIR/$b/nginx.pid ]] || return 1
    pid=$(tr -dc '0-9' <"$DIR/$b/nginx.pid")
    [[ -n $pid ]] || return 1
    pid_in_ns "$pid" "$P-$b" || return 1
    echo "$pid"
}

# ---- down ------------------------------------------------------------------------------
kill_ns_procs() { # TERM, then KILL, every process in our namespaces (and only there)
    local ns pid b i pids=() killed=()
    for b in "${BACKENDS[@]}" "$ROUTED"; do
        # the pid file first (a graceful nginx stop), but only if that pid is really ours
        if pid=$(nginx_pid "$b"); then
            kill -TERM "$pid" 2>/dev/null || true
            killed+=("$pid")
        fi
    done
    for i in $(seq 1 30); do
        pids=()
        for ns in "${NS_ALL[@]}"; do
            ns_exists "$ns" || continue
            while read -r pid; do
                if [[ -n $pid ]]; then pids+=("$pid"); fi
            done < <(ip netns pids "$ns" 2>/dev/null || true)
        done
        ((${#pids[@]} == 0)) && break
        killed+=("${pids[@]}")
        if ((i == 1)); then
            kill -TERM "${pids[@]}" 2>/dev/null || true
        elif ((i >= 15)); then
            kill -KILL "${pids[@]}" 2>/dev/null || true
        fi
        sleep 0.1
    done
    if ((${#pids[@]})); then
        echo "testbed[$P]: warning: processes still in our namespaces: ${pids[*]}" >&2
    fi
    # A killed daemon (nginx's master) is reaped by init, not by us. Give that up to
    # 3 s so callers that look for leftover processes right after `down` see none
    # (some sandbox inits reap only every second or two; zombies hold no resources).
    for i in $(seq 1 60); do
        for pid in "${killed[@]}"; do
            if [[ -e /proc/$pid ]]; then sleep 0.05; continue 2; fi
        done
        break
    done
}

cmd_down() {
    local purge=$1 ns
    need_root
    # impairment first (its consumers run in our namespaces; it restores cli0's GSO limit)
    if [[ -d $DIR/impair ]]; then impair_off; fi
    kill_ns_procs
    for ns in "${NS_ALL[@]}"; do
        if ns_exists "$ns"; then
            ip netns del "$ns" 2>/dev/null || echo "testbed[$P]: warning: could not delete netns $ns" >&2
        fi
    done
    rm -f "$DIR"/*/nginx.pid 2>/dev/null || true
    rm -f -- "$HANDOFF_FLAG" "$CLUSTER_FLAG"
    if ((purge)); then
        rm -rf -- "/tmp/$P-testbed"
    fi
}

# ---- content -----------------------------------------------------------------------------

make_content() { # backend index
    local b=$1 i=$2 www=$DIR/$1/www
    mkdir -p "$www/img" "$www/static" "$www/big" "$www/upload" \
        "$DIR/$b/tmp/body" "$DIR/$b/tmp/proxy" "$DIR/$b/tmp/fastcgi" "$DIR/$b/tmp/uwsgi" "$DIR/$b/tmp/scgi"
    # uploads from a previous run are not content
    find "$www/upload" -mindepth 1 -delete

    python3 - "$www" "$b" "$i" <<'PY'
import json, os, struct, sys, zlib

www, name, idx = sys.argv[1], sys.argv[2], int(sys.argv[3])

def write(rel, data):
    path = os.path.join(www, rel)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode) as f:
        f.write(data)

# ---- PNG: 32x32 RGB, colour per backend, tEXt comment naming the backend
def png_chunk(kind, data):
    c = kind + data
    return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)

W = H = 32
# a fourth colour for be4 (the routed backend of up --handoff); be1-be3 keep theirs
base = [(200, 40, 40), (40, 160, 40), (40, 60, 200), (200, 150, 30)][(idx - 1) % 4]
raw = bytearray()
for y in range(H):
    raw.append(0)  # filter: none
    for x in range(W):
        raw += bytes(((base[0] + 3 * x) % 256, (base[1] + 3 * y) % 256, base[2]))
png = (b"\x89PNG\r\n\x1a\n"
       + png_chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
       + png_chunk(b"tEXt", b"Comment\x00webswitch testbed backend " + name.encode())
       + png_chunk(b"IDAT", zlib.compress(bytes(raw), 9))
       + png_chunk(b"IEND", b""))
write("img/logo.png", png)

# ---- JPEG: baseline, 16x16 grayscale, four flat 8x8 blocks, COM naming the backend.
# Quantisation 16 everywhere: a flat block of level v has quantised DC (v-128)//2.
def huff_codes(counts, values):
    codes, code, k = {}, 0, 0
    for length, n in enumerate(counts, start=1):
        for _ in range(n):
            codes[values[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes

def segment(marker, payload):
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload

dc_counts = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]  # ITU T.81 Annex K.3 luminance DC
dc_values = list(range(12))
ac_counts = [1] + [0] * 15                                   # one symbol: EOB (0x00), code "0"
ac_values = [0x00]
dc_codes, ac_codes = huff_codes(dc_counts, dc_values), huff_codes(ac_counts, ac_values)

levels = [(40 + 50 * idx + 37 * k) % 256 for k in range(4)]  # 4 blocks, raster order
bits = []
def put(code, length):
    bits.extend((code >> (length - 1 - j)) & 1 for j in range(length))
prev = 0
for v in levels:
    dc = (v - 128) // 2
    diff, prev = dc - prev, dc
    cat = abs(diff).bit_length()
    put(*dc_codes[cat])
    if cat:
        put(diff if diff > 0 else diff + (1 << cat) - 1, cat)
    put(*ac_codes[0x00])  # EOB: all AC coefficients zero
while len(bits) % 8:
    bits.append(1)
scan = bytearray()
for j in range(0, len(bits), 8):
    byte = int("".join(map(str, bits[j:j + 8])), 2)
    scan.append(byte)
    if byte == 0xFF:
        scan.append(0x00)  # byte stuffing

jpeg = (b"\xFF\xD8"
        + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + segment(0xFE, b"webswitch testbed backend " + name.encode())
        + segment(0xDB, b"\x00" + bytes([16] * 64))
        + segment(0xC0, struct.pack(">BHHB", 8, 16, 16, 1) + b"\x01\x11\x00")
        + segment(0xC4, b"\x00" + bytes(dc_counts) + bytes(dc_values))
        + segment(0xC4, b"\x10" + bytes(ac_counts) + bytes(ac_values))
        + segment(0xDA, b"\x01\x01\x00\x00\x3F\x00")
        + bytes(scan)
        + b"\xFF\xD9")
write("img/photo.jpg", jpeg)

write("index.html", f"""<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>webswitch testbed: backend {name}</title>
<link rel="stylesheet" href="/static/style.css">
<script src="/static/app.js"></script>
</head>
<body>
<h1>backend {name}</h1>
<p>This page is served by nginx in namespace backend {name} of the webswitch testbed.</p>
<img src="/img/logo.png" alt="logo"> <img src="/img/photo.jpg" alt="photo">
<p><a href="/app/run.cgi?x=1">app</a> <a href="/whoami">whoami</a></p>
</body>
</html>
""")
write("static/style.css", f"/* webswitch testbed: backend {name} */\nbody {{ font-family: sans-serif; }}\nh1 {{ color: rgb{base}; }}\n")
write("static/app.js", f"// webswitch testbed: backend {name}\nvar WEBSWITCH_BACKEND = \"{name}\";\n")
write("static/data.json", json.dumps({"backend": name, "index": idx}) + "\n")
PY

    # 1, 5, 10 and 100 MiB random files (10 MiB: the failover test's transfers, paper
    # 001's size), distinct per backend; they survive
    # `down` (only `down --purge` removes them) and are reused when size and .sha256 fit.
    local f size
    # 100K: the benchmarks' mid-size response (bench/scripts/handoff-cost.sh).
    for f in 100K 1M 5M 10M 100M; do
        case $f in
            *K) size=$((${f%K} * 1024)) ;;
            *) size=$((${f%M} * 1024 * 1024)) ;;
        esac
        if [[ -s $www/big/$f.bin.sha256 && -f $www/big/$f.bin ]] &&
            [[ $(stat -c %s "$www/big/$f.bin") -eq $size ]] &&
            [[ $(awk '{print $1; exit}' "$www/big/$f.bin.sha256") =~ ^[0-9a-f]{64}$ ]]; then
            continue
        fi
        dd if=/dev/urandom of="$www/big/$f.bin" bs=1024 count=$((size / 1024)) status=none
        sha256sum "$www/big/$f.bin" | awk '{print $1}' >"$www/big/$f.bin.sha256"
    done
}

write_nginx_conf() { # backend
    local b=$1 d=$DIR/$1 echo_module=/usr/lib/nginx/modules/ngx_http_echo_module.so
    local load_echo="" echo_loc=""
    if [[ -f $echo_module ]]; then
        load_echo="load_module $echo_module;"
        echo_loc="# echoes a request body (up to 16 MiB) back
location = /echo {
    client_max_body_size 16m;
    client_body_buffer_size 16m;
    default_type application/octet-stream;
    echo_read_request_body;
    echo_request_body;
}
# a slow answer (any method): /slow/N[.M]/... after N.M seconds, any other /slow/... after 1 s
location ~ \"^/slow/(?<slow_s>[0-9]{1,3}(\.[0-9]{1,3})?)(/|\$)\" {
    default_type text/plain;
    echo_sleep \$slow_s;
    echo \"slow on $b: \$request_uri\";
}
location /slow/ {
    default_type text/plain;
    echo_sleep 1;
    echo \"slow on $b: \$request_uri\";
}
# a response written in two pieces (the head and a first chunk, 0.3 s of silence, the
# rest), under /img/ so the rules send it to the images pool: between the pieces the
# kernel has sent everything and the client acknowledged it, yet the response goes on
location /img/pause/ {
    default_type text/plain;
    echo \"first piece on $b\";
    echo_flush;
    echo_sleep 0.3;
    echo \"second piece on $b: \$request_uri\";
}"
    fi
    # what every server (port 80, 8080, 8081) serves; \$ below: nginx variables, not shell ones
    cat >"$d/site.conf" <<EOF
# generated by dpdk-env/scripts/testbed.sh for testbed $P, backend $b; do not edit
# included by every server of nginx.conf
root $d/www;
add_header X-Backend $b always;

location = /whoami {
    default_type text/plain;
    return 200 "$b\n";
}
# no content (204), and an answer after which nginx closes the connection
location = /nocontent {
    return 204;
}
location /close/ {
    keepalive_timeout 0;
    default_type text/plain;
    return 200 "closing on $b\n";
}
# the "application" (any path under /app/, e.g. /app/run.cgi?x=1)
location /app/ {
    default_type text/plain;
    return 200 "app on $b: \$request_uri\n";
}
# a session for cookie persistence: /session/login sets PHPSESSID (its value names this backend);
# any other /session/... says which PHPSESSID it was sent (add_header here replaces the
# server's, so X-Backend is repeated)
location = /session/login {
    add_header X-Backend $b always;
    add_header Set-Cookie "PHPSESSID=$b-\$connection-\$connection_requests; Path=/" always;
    default_type text/plain;
    return 200 "login on $b\n";
}
location /session/ {
    default_type text/plain;
    return 200 "session on $b: PHPSESSID=\$cookie_PHPSESSID\n";
}
# WebDAV PUT/DELETE for byte-exact upload checks: PUT /upload/NAME, then GET it
location /upload/ {
    client_max_body_size 0;
    dav_methods PUT DELETE;
    create_full_put_path on;
    dav_access user:rw group:r all:r;
}
location = /nginx_status {
    stub_status;
}
$echo_loc
EOF
    cat >"$d/nginx.conf" <<EOF
# generated by dpdk-env/scripts/testbed.sh for testbed $P, backend $b; do not edit
$load_echo
user root;
daemon on;
worker_processes 1;
worker_rlimit_nofile 16384;
pid $d/nginx.pid;
error_log $d/error.log warn;

events {
    worker_connections 8192;
}

http {
    types {
        text/html                 html htm;
        text/css                  css;
        application/javascript    js;
        application/json          json;
        text/plain                txt;
        image/png                 png;
        image/jpeg                jpg jpeg;
    }
    default_type application/octet-stream;

    # remote_addr is the client after realip (ports 8080, 8081), peer= the TCP peer (the
    # switch), pp= what a PROXY header said, t= the time the answer was done (s.ms),
    # rt= the request's duration (s.ms): it started at t - rt
    log_format ws '\$remote_addr:\$remote_port "\$request" \$status \$body_bytes_sent '
                  'xff="\$http_x_forwarded_for" conn=\$connection req=\$connection_requests '
                  'len=\$request_length port=\$server_port peer=\$realip_remote_addr '
                  'pp=\$proxy_protocol_addr:\$proxy_protocol_port xfp="\$http_x_forwarded_proto" '
                  't=\$msec rt=\$request_time';
    access_log $d/access.log ws;

    client_body_temp_path $d/tmp/body;
    proxy_temp_path       $d/tmp/proxy;
    fastcgi_temp_path     $d/tmp/fastcgi;
    uwsgi_temp_path       $d/tmp/uwsgi;
    scgi_temp_path        $d/tmp/scgi;

    sendfile on;
    keepalive_requests 100000;
    keepalive_timeout 65s;

    # the plain server: remote_addr is whoever connected (the switch)
    server {
        listen 80 backlog=4096;
        server_name _;
        include $d/site.conf;
    }
    # behind a switch that inserts X-Forwarded-For: the client is its last address
    server {
        listen 8080 backlog=4096;
        server_name _;
        set_real_ip_from $BACKEND_NET.0/24;
        real_ip_header X-Forwarded-For;
        include $d/site.conf;
    }
    # behind a switch that sends a PROXY protocol header (v1 or v2) first
    server {
        listen 8081 proxy_protocol backlog=4096;
        server_name _;
        set_real_ip_from $BACKEND_NET.0/24;
        real_ip_header proxy_protocol;
        include $d/site.conf;
    }
}
EOF
}

# ---- up --handoff: the router and the backends' agent side ------------------------------
is_handoff() { [[ -e $HANDOFF_FLAG ]]; }

handoff_router_up() { # $P-rt between the backend bridge and the client's second veth
    nsx "$NS_RT" sysctl -qw net.ipv4.ip_forward=1 >/dev/null
    ip -n "$NS_RT" link add "$IF_RT_BE" address "$MAC_RT_BE" type veth \
        peer name "$IF_BR_RT" address "$(mac 255 254)" netns "$NS_BR"
    ip -n "$NS_BR" link set "$IF_BR_RT" master "$IF_BR"
    ip -n "$NS_RT" link add "$IF_RT_CLI" address "$MAC_RT_CLI" type veth \
        peer name "$IF_CLI_RT" address "$MAC_CLI_RT" netns "$NS_CLI"
    # be4's only link: the router is its gateway and the switch's way to it
    ip -n "$NS_RT" link add "$IF_RT_ROUTED" address "$MAC_RT_ROUTED" type veth \
        peer name "$IF_BE" address "$(backend_mac "$ROUTED")" netns "$NS_ROUTED"
    offloads_off "$NS_RT" "$IF_RT_BE"
    offloads_off "$NS_BR" "$IF_BR_RT"
    offloads_off "$NS_RT" "$IF_RT_CLI"
    offloads_off "$NS_CLI" "$IF_CLI_RT"
    offloads_off "$NS_RT" "$IF_RT_ROUTED"
    offloads_off "$NS_ROUTED" "$IF_BE"
    ip -n "$NS_BR" link set "$IF_BR_RT" up
    ip -n "$NS_RT" link set "$IF_RT_BE" up
    ip -n "$NS_RT" link set "$IF_RT_CLI" up
    ip -n "$NS_CLI" link set "$IF_CLI_RT" up
    ip -n "$NS_RT" link set "$IF_RT_ROUTED" up
    ip -n "$NS_ROUTED" link set "$IF_BE" up
    # connected routes are all the router needs: 10.N.0.0/24, 10.N.1.0/24, 10.N.2.0/24
    ip -n "$NS_RT" addr add "$ROUTER_BE_IP/24" dev "$IF_RT_BE"
    ip -n "$NS_RT" addr add "$ROUTER_CLI_IP/24" dev "$IF_RT_CLI"
    ip -n "$NS_RT" addr add "$ROUTER_ROUTED_IP/24" dev "$IF_RT_ROUTED"
    # cli1 gets no address: the client keeps 10.N.0.0/24 and its default route on cli0 (all
    # it sends goes to the switch) and accepts the backends' answers arriving on cli1 (its
    # address is host-wide, rp_filter is 0; it answers the router's ARP there too). Only the
    # router's own address is routed to cli1, so that the router gets answers (ping).
    ip -n "$NS_CLI" route add "$ROUTER_CLI_IP/32" dev "$IF_CLI_RT"
}

handoff_encap_mtu() { # MTU_ENCAP on every link an IP-in-IP packet crosses from the switch to be4
    # sw-be (the switch's af_packet refuses to send a frame over the MTU), the bridge ports it
    # enters and leaves by (a veth drops what is over its receiver's MTU, the bridge what is over
    # its egress port's), rt-be (received), rt-b4 (forwarded: over the MTU the router would answer
    # "fragmentation needed", the outer header has DF), be4's eth0 (received, read by the agent).
    # br0 itself forwards nothing by its own MTU; it gets the MTU so the bridge does not sit at
    # the minimum of its ports (1500) beside them. be1-be3's ports stay at 1500.
    ip -n "$NS_SW" link set "$IF_SW_BE" mtu "$MTU_ENCAP"
    ip -n "$NS_BR" link set "$IF_BR_SW" mtu "$MTU_ENCAP"
    ip -n "$NS_BR" link set "$IF_BR_RT" mtu "$MTU_ENCAP"
    ip -n "$NS_BR" link set "$IF_BR" mtu "$MTU_ENCAP"
    ip -n "$NS_RT" link set "$IF_RT_BE" mtu "$MTU_ENCAP"
    ip -n "$NS_RT" link set "$IF_RT_ROUTED" mtu "$MTU_ENCAP"
    ip -n "$NS_ROUTED" link set "$IF_BE" mtu "$MTU_ENCAP"
    # ... but what the router itself sends or forwards into the backend LAN must fit be1-be3's
    # 1500 (the bridge would drop a larger frame at their ports without a word): the connected
    # route gets MTU 1500, so the router answers "fragmentation needed" instead. The route to
    # 10.N.2.0/24 keeps the interface's 1520: the encapsulated packets are forwarded along it.
    ip -n "$NS_RT" route replace "$BACKEND_NET.0/24" dev "$IF_RT_BE" proto kernel scope link \
        src "$ROUTER_BE_IP" mtu 1500
}

handoff_backend_up() { # backend: eth0 to the agent, the kernel behind wsa0, the VIP on lo
    local b=$1 ns=$P-$1 ip mac_be gw
    ip=$(backend_ip "$b")
    mac_be=$(backend_mac "$b")
    gw=$(backend_gw "$b")
    # eth0 stays up (the agent's af_packet socket needs it) but has no address, and the
    # kernel drops whatever arrives on it in the netdev ingress hook: AF_PACKET taps run
    # before that hook, so the agent still receives every frame, while the kernel neither
    # answers ARP on eth0 nor sees a packet twice (once there, once from the agent on wsa0).
    nsx "$ns" nft -f - <<EOF
table netdev $HO_TABLE {
    chain ${IF_BE}_ingress {
        type filter hook ingress device "$IF_BE" priority 0; policy drop;
        counter comment "frames on $IF_BE are for the agent (af_packet) only"
    }
}
EOF
    # multi_queue: DPDK's net_tap attaches with IFF_MULTI_QUEUE, which a tap made without it
    # refuses. Persistent, so the address, MAC and routes are in place before any agent runs;
    # it has no carrier (and the backend is unreachable) until an agent opens it.
    ip -n "$ns" tuntap add dev "$IF_AGENT" mode tap multi_queue
    ip -n "$ns" link set "$IF_AGENT" address "$mac_be"
    offloads_off "$ns" "$IF_AGENT"
    # the VIP on lo, never announced: ARP only for addresses of the interface asked on, and
    # ARP requests from the interface's own address (so the kernel never claims the VIP)
    nsx "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
        "net.ipv4.conf.$IF_AGENT.arp_ignore=1" "net.ipv4.conf.$IF_AGENT.arp_announce=2" >/dev/null
    ip -n "$ns" addr add "$VIP/32" dev lo
    ip -n "$ns" link set "$IF_AGENT" up
    ip -n "$ns" addr add "$ip/24" dev "$IF_AGENT"
    # answers to the client (from the VIP) go to the router, not back through the switch
    # (be4: the router is its only gateway anyway)
    ip -n "$ns" route add default via "$gw" dev "$IF_AGENT"
}

handoff_summary() {
    local b mac_be
    cat <<EOF

testbed '$P' is up for TCP handoff (WS_NET=$N)
  client    ns $NS_CLI   $IF_CLI $CLIENT_IP/24 ($MAC_CLI), default via $SWITCH_CLIENT_IP (requests go to the switch)
                         $IF_CLI_RT ($MAC_CLI_RT) no address, route $ROUTER_CLI_IP/32 only: the backends' answers arrive here
  switch    ns $NS_SW    $IF_SW_CLI ($MAC_SW_CLI) <-> $IF_CLI;  $IF_SW_BE ($MAC_SW_BE) <-> bridge $NS_BR/$IF_BR
            webswitch owns: $SWITCH_CLIENT_IP (client side), VIP $VIP:$VIP_PORT, $SWITCH_BACKEND_IP (backend side)
  router    ns $NS_RT    $IF_RT_BE $ROUTER_BE_IP/24 ($MAC_RT_BE) <-> bridge $NS_BR/$IF_BR_RT
                         $IF_RT_CLI $ROUTER_CLI_IP/24 ($MAC_RT_CLI) <-> $NS_CLI/$IF_CLI_RT; ip_forward=1
                         $IF_RT_ROUTED $ROUTER_ROUTED_IP/24 ($MAC_RT_ROUTED) <-> $NS_ROUTED/$IF_BE
EOF
    for b in "${BACKENDS[@]}" "$ROUTED"; do
        mac_be=$(backend_mac "$b")
        printf '  backend   ns %-8s %s (%s) no address; nft netdev %s drops all it receives (the agent reads it)\n' \
            "$P-$b" "$IF_BE" "$mac_be" "$HO_TABLE"
        printf '                         %s (tap) %s/24, same MAC, default via %s; VIP %s/32 on lo\n' \
            "$IF_AGENT" "$(backend_ip "$b")" "$(backend_gw "$b")" "$VIP"
        printf '                         nginx :80, content %s/%s/www\n' "$DIR" "$b"
        if [[ $b == "$ROUTED" ]]; then
            printf '                         routed: eth0 <-> %s/%s; the switch sends it IP-in-IP, %s -> %s via %s\n' \
                "$NS_RT" "$IF_RT_ROUTED" "$SWITCH_BACKEND_IP" "$ROUTED_IP" "$ROUTER_BE_IP"
        fi
    done
    cat <<EOF
  MTU:      $MTU_ENCAP on $IF_SW_BE, $IF_BR, $IF_BR_SW, $IF_BR_RT, $IF_RT_BE, $IF_RT_ROUTED and $ROUTED's $IF_BE (an IP-in-IP packet with a 1500-byte inner one),
            1500 everywhere else; the router's route to $BACKEND_NET.0/24 has MTU 1500 (be1-be3's ports)
  agents:   one per backend, in its namespace: DPDK vdevs net_af_packet0,iface=$IF_BE and net_tap0,iface=$IF_AGENT,mac=<eth0's MAC>
            (without mac= net_tap gives $IF_AGENT a random MAC); until then $IF_AGENT has NO-CARRIER and the backend is unreachable;
            $ROUTED's agent decapsulates IP-in-IP (outer $SWITCH_BACKEND_IP -> $ROUTED_IP) before the kernel sees the packet
  switch:   backend $ROUTED at $ROUTED_IP needs the backend port's "gateway": "$ROUTER_BE_IP" (ports[]) and "tunnel": "ipip" (backends[])
  attach:   ip netns exec $NS_SW webswitch run --config CONFIG   (ports net_af_packet0,iface=$IF_SW_CLI and net_af_packet1,iface=$IF_SW_BE)
  client:   ip netns exec $NS_CLI curl http://$VIP/whoami   (requests via the switch, answers via $NS_RT)
  teardown: WS_TESTBED=$P $0 down [--purge]
EOF
}

# ---- up --------------------------------------------------------------------------------
cmd_up() {
    local handoff=${1:-0} cluster=${2:-0}
    need_root
    need_tools ip ethtool nginx curl python3 sha256sum dd awk sysctl ping
    if ((handoff)); then need_tools nft; fi
    say "tearing down any previous state"
    cmd_down 0
    trap 'rc=$?; if ((rc)); then echo "testbed[$P]: up failed; clean up with: WS_TESTBED=$P $0 down" >&2; fi' EXIT

    local ns b i ip nss=("${NS_BASE[@]}") served=("${BACKENDS[@]}")
    # served: every backend with content and an nginx (be4 only on a handoff testbed)
    if ((handoff)); then
        nss+=("$NS_RT" "$NS_ROUTED")
        served+=("$ROUTED")
    fi
    say "creating namespaces ${nss[*]}"
    for ns in "${nss[@]}"; do
        ip netns add "$ns"
        ns_sysctls "$ns"
    done
    # bridged frames must not go through iptables in the bridge namespace
    nsx "$NS_BR" sysctl -qw net.bridge.bridge-nf-call-iptables=0 \
        net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0 >/dev/null 2>&1 || true

    # client <-> switch
    ip -n "$NS_CLI" link add "$IF_CLI" address "$MAC_CLI" type veth \
        peer name "$IF_SW_CLI" address "$MAC_SW_CLI" netns "$NS_SW"
    # switch <-> backend bridge
    ip -n "$NS_BR" link add "$IF_BR" address "$(mac 255 0)" type bridge stp_state 0 forward_delay 0
    ip -n "$NS_SW" link add "$IF_SW_BE" address "$MAC_SW_BE" type veth \
        peer name "$IF_BR_SW" address "$(mac 255 1)" netns "$NS_BR"
    ip -n "$NS_BR" link set "$IF_BR_SW" master "$IF_BR"
    # backends <-> bridge
    for b in "${BACKENDS[@]}"; do
        i=${b#be}
        ip -n "$P-$b" link add "$IF_BE" address "$(mac 1 $((10 + i)))" type veth \
            peer name "$b" address "$(mac 255 $((10 + i)))" netns "$NS_BR"
        ip -n "$NS_BR" link set "$b" master "$IF_BR"
    done

    # offloads off on every veth end (and the bridge), then everything up
    offloads_off "$NS_CLI" "$IF_CLI"
    offloads_off "$NS_SW" "$IF_SW_CLI"
    offloads_off "$NS_SW" "$IF_SW_BE"
    offloads_off "$NS_BR" "$IF_BR_SW"
    offloads_off "$NS_BR" "$IF_BR"
    for b in "${BACKENDS[@]}"; do
        offloads_off "$P-$b" "$IF_BE"
        offloads_off "$NS_BR" "$b"
        ip -n "$NS_BR" link set "$b" up
    done
    ip -n "$NS_BR" link set "$IF_BR_SW" up
    ip -n "$NS_BR" link set "$IF_BR" up
    ip -n "$NS_SW" link set "$IF_SW_CLI" up
    ip -n "$NS_SW" link set "$IF_SW_BE" up
    ip -n "$NS_CLI" link set "$IF_CLI" up

    # addresses and routes (none in $P-sw: webswitch owns those links through DPDK)
    ip -n "$NS_CLI" addr add "$CLIENT_IP/24" dev "$IF_CLI"
    ip -n "$NS_CLI" route add default via "$SWITCH_CLIENT_IP" dev "$IF_CLI"
    for b in "${BACKENDS[@]}"; do
        ip=$(backend_ip "$b")
        ip -n "$P-$b" link set "$IF_BE" up
        if ((handoff)); then continue; fi   # the address goes to wsa0, below
        ip -n "$P-$b" addr add "$ip/24" dev "$IF_BE"
        ip -n "$P-$b" route add default via "$SWITCH_BACKEND_IP" dev "$IF_BE"
    done
    if ((handoff)); then
        say "handoff: router $NS_RT ($ROUTER_BE_IP, $ROUTER_CLI_IP, $ROUTER_ROUTED_IP), $IF_AGENT taps, VIP $VIP on the backends' lo"
        say "handoff: routed backend $ROUTED ($ROUTED_IP) behind the router; MTU $MTU_ENCAP on the way the switch's IP-in-IP takes to it"
        mkdir -p "$DIR"
        echo "handoff testbed $P (WS_NET=$N): router $NS_RT, agent tap $IF_AGENT, routed backend $ROUTED" >"$HANDOFF_FLAG"
        handoff_router_up
        handoff_encap_mtu
        for b in "${served[@]}"; do handoff_backend_up "$b"; done
    fi

    say "generating backend content in $DIR (100 MiB files are reused between runs)"
    mkdir -p "$DIR"
    i=0
    for b in "${served[@]}"; do
        i=$((i + 1))
        make_content "$b" "$i"
        write_nginx_conf "$b"
        : >"$DIR/$b/error.log"
        : >"$DIR/$b/access.log"   # each run starts with an empty log
        nsx "$P-$b" nginx -q -t -p "$DIR/$b" -c "$DIR/$b/nginx.conf" -e "$DIR/$b/error.log" ||
            die "nginx config for $b rejected (see $DIR/$b/nginx.conf)"
        nsx "$P-$b" nginx -p "$DIR/$b" -c "$DIR/$b/nginx.conf" -e "$DIR/$b/error.log"
    done

    # each backend answers inside its own namespace
    local ok=1 got tries
    for b in "${served[@]}"; do
        ip=$(backend_ip "$b")
        got=""
        for tries in 1 2 3 4 5 6 7 8 9 10; do
            got=$(nsx "$P-$b" curl -s --max-time 2 "http://$ip/whoami" || true)
            [[ $got == "$b" ]] && break
            sleep 0.2
        done
        if [[ $got == "$b" ]]; then
            say "$b: nginx answers on $ip:80 (tries: $tries)"
            # the X-Forwarded-For (8080) and PROXY protocol (8081) servers
            if [[ $(nsx "$P-$b" curl -s --max-time 2 "http://$ip:8080/whoami" || true) != "$b" ]] ||
                [[ $(nsx "$P-$b" curl -s --max-time 2 --haproxy-protocol "http://$ip:8081/whoami" || true) != "$b" ]]; then
                echo "testbed[$P]: $b: nginx does not answer on $ip:8080 or $ip:8081; see $DIR/$b/error.log" >&2
                ok=0
            fi
        else
            echo "testbed[$P]: $b: nginx does not answer on $ip:80 (got '$got'); see $DIR/$b/error.log" >&2
            ok=0
        fi
    done
    ((ok)) || die "backends not healthy"

    if ((handoff)); then
        # local traffic needs no carrier: nginx answers on the backend IP (above) and on the
        # VIP inside each namespace, although wsa0 has none until an agent attaches
        for b in "${served[@]}"; do
            got=$(nsx "$P-$b" curl -s --max-time 2 "http://$VIP/whoami" || true)
            [[ $got == "$b" ]] || die "$b: nginx does not answer on the VIP $VIP:80 inside $P-$b (got '$got')"
        done
        say "handoff: every nginx answers on the VIP $VIP:80 inside its namespace"
        # the way back: the router reaches the client through cli1 (ARP resolved there)
        nsx "$NS_RT" ping -c1 -W2 -q "$CLIENT_IP" >/dev/null 2>&1 ||
            die "handoff: router $NS_RT cannot reach the client $CLIENT_IP via $IF_RT_CLI/$IF_CLI_RT"
        nsx "$NS_RT" ip neigh show "$CLIENT_IP" dev "$IF_RT_CLI" | grep -qi -- "$MAC_CLI_RT" ||
            die "handoff: router $NS_RT did not resolve $CLIENT_IP to $IF_CLI_RT's MAC $MAC_CLI_RT"
        say "handoff: router $NS_RT reaches the client $CLIENT_IP via $IF_RT_CLI -> $IF_CLI_RT"
        say "handoff: backends are unreachable from outside until an agent attaches to eth0 and $IF_AGENT (expected)"
        ip -n "$NS_RT" neigh flush all 2>/dev/null || true
    fi

    if ((cluster)); then cluster_up; fi

    # with no switch running the client reaches nothing; forget the failed ARP entry after
    if nsx "$NS_CLI" ping -c1 -W1 -q "$SWITCH_CLIENT_IP" >/dev/null 2>&1; then
        say "note: $SWITCH_CLIENT_IP already answers from $NS_CLI (is a switch running?)"
    else
        say "client: switch $SWITCH_CLIENT_IP not reachable yet (expected until webswitch runs in $NS_SW)"
    fi
    ip -n "$NS_CLI" neigh flush all 2>/dev/null || true
    trap - EXIT

    if ((handoff)); then
        handoff_summary
        return 0
    fi
    if ((cluster)); then cluster_summary; fi
    cat <<EOF

testbed '$P' is up (WS_NET=$N)
  client    ns $NS_CLI   $IF_CLI $CLIENT_IP/24 ($MAC_CLI), default via $SWITCH_CLIENT_IP
  switch    ns $NS_SW    $IF_SW_CLI ($MAC_SW_CLI) <-> $IF_CLI;  $IF_SW_BE ($MAC_SW_BE) <-> bridge $NS_BR/$IF_BR
            webswitch owns: $SWITCH_CLIENT_IP (client side), VIP $VIP:$VIP_PORT, $SWITCH_BACKEND_IP (backend side)
EOF
    for b in "${BACKENDS[@]}"; do
        printf '  backend   ns %-8s %s %s/24, default via %s, nginx :80, content %s/%s/www\n' \
            "$P-$b" "$IF_BE" "$(backend_ip "$b")" "$SWITCH_BACKEND_IP" "$DIR" "$b"
    done
    cat <<EOF
  attach:   ip netns exec $NS_SW webswitch run --config CONFIG   (ports net_af_packet0,iface=$IF_SW_CLI and net_af_packet1,iface=$IF_SW_BE)
  client:   ip netns exec $NS_CLI curl http://$VIP/whoami
  teardown: WS_TESTBED=$P $0 down [--purge]
EOF
}

# ---- status ----------------------------------------------------------------------------
handoff_status() { # the backends' handoff pieces; no agent (no carrier) is not a fault
    local b ns x flags="" ok=1 bad up_re='[<,]UP[,>]' mac_be gw ifc mtu
    echo "== handoff (router $NS_RT: $ROUTER_BE_IP, $ROUTER_CLI_IP, $ROUTER_ROUTED_IP; agent tap $IF_AGENT;" \
        "routed backend $ROUTED $ROUTED_IP)"
    if ns_exists "$NS_RT" && [[ $(nsx "$NS_RT" sysctl -n net.ipv4.ip_forward 2>/dev/null) != 1 ]]; then
        echo "   $NS_RT: ip_forward is off"
        ok=0
    fi
    # the way IP-in-IP takes to be4: a smaller MTU anywhere drops full-size packets (mostly
    # without a word: only sw-be refuses them to the sender, only rt-b4 gets an ICMP answer)
    for ifc in "$NS_SW/$IF_SW_BE" "$NS_BR/$IF_BR_SW" "$NS_BR/$IF_BR" "$NS_BR/$IF_BR_RT" \
        "$NS_RT/$IF_RT_BE" "$NS_RT/$IF_RT_ROUTED" "$NS_ROUTED/$IF_BE"; do
        ns_exists "${ifc%%/*}" || continue   # a missing namespace is reported elsewhere
        mtu=$(ip -n "${ifc%%/*}" -o link show "${ifc#*/}" 2>/dev/null | grep -o 'mtu [0-9]*' | awk '{print $2}')
        if [[ $mtu != "$MTU_ENCAP" ]]; then
            echo "   $ifc: MTU ${mtu:-?}, not $MTU_ENCAP (IP-in-IP packets to $ROUTED with a full-size inner packet would be dropped)"
            ok=0
        fi
    done
    for b in "${BACKENDS[@]}" "$ROUTED"; do
        ns=$P-$b
        mac_be=$(backend_mac "$b")
        gw=$(backend_gw "$b")
        bad=()
        if ! ns_exists "$ns"; then
            echo "   $b: namespace missing"
            ok=0
            continue
        fi
        nsx "$ns" nft list chain netdev "$HO_TABLE" "${IF_BE}_ingress" >/dev/null 2>&1 ||
            bad+=("no nft chain netdev $HO_TABLE ${IF_BE}_ingress (the kernel would see eth0's frames)")
        ip -n "$ns" -4 addr show dev lo 2>/dev/null | grep -q " $VIP/32 " || bad+=("VIP $VIP not on lo")
        if flags=$(ip -n "$ns" -o link show "$IF_AGENT" 2>/dev/null); then
            # an agent that stopped cleanly (DPDK net_tap's stop/close) leaves the tap
            # administratively down, and the kernel then deleted its routes
            [[ $flags =~ $up_re ]] || bad+=("$IF_AGENT is administratively down (an agent stopped? its routes are gone)")
            ip -n "$ns" route show default 2>/dev/null | grep -q "via $gw dev $IF_AGENT" ||
                bad+=("no default route via $gw on $IF_AGENT")
            # net_tap sets the tap's MAC to its port's: a random one unless given mac=
            [[ $flags == *"link/ether $mac_be "* ]] ||
                bad+=("$IF_AGENT's MAC is not eth0's $mac_be (an agent without net_tap's mac=$mac_be?)")
        else
            bad+=("no $IF_AGENT")
        fi
        if ((${#bad[@]})); then
            for x in "${bad[@]}"; do echo "   $b: BROKEN: $x"; done
            ok=0
        elif [[ $flags == *LOWER_UP* ]]; then
            echo "   $b: $IF_AGENT has carrier: an agent is attached"
        else
            echo "   $b: $IF_AGENT has no carrier: no agent attached (the backend is unreachable from outside; expected)"
        fi
    done
    if ! ((ok)); then
        echo "   to restore a backend's tap: ip -n $P-beN link set $IF_AGENT address <eth0's MAC> up &&"
        echo "      ip -n $P-beN route replace default via $ROUTER_BE_IP dev $IF_AGENT   ($ROUTED: via $ROUTER_ROUTED_IP;" \
            "or run up --handoff again)"
    fi
    ((ok))
}

cmd_status() {
    need_root
    local ns b ip pid got up=1 handoff=0 served=("${BACKENDS[@]}")
    if is_handoff; then
        handoff=1
        served+=("$ROUTED")
    fi
    for ns in "${NS_ALL[@]}"; do
        # the router and be4 belong to a handoff testbed only
        if [[ $ns == "$NS_RT" || $ns == "$NS_ROUTED" ]] && ! ((handoff)) && ! ns_exists "$ns"; then continue; fi
        # and these to a cluster testbed only
        if [[ " ${NS_CLUSTER[*]} " == *" $ns "* ]] && ! is_cluster && ! ns_exists "$ns"; then continue; fi
        if ns_exists "$ns"; then
            echo "== netns $ns"
            ip -n "$ns" -br link show | sed 's/^/   /'
            ip -n "$ns" -br -4 addr show | awk '$3 != "" {print "   " $0}'
            if [[ $ns == "$NS_CLI" || $ns == "$NS_RT" ]]; then ip -n "$ns" route show | sed 's/^/   route: /'; fi
        else
            echo "== netns $ns: MISSING"
            up=0
        fi
    done
    check_up() { # ns if
        if ! { ns_exists "$1" && ip -n "$1" link show "$2" 2>/dev/null | grep -q 'state UP'; }; then
            echo "link $1/$2: not up"
            up=0
        fi
    }
    check_up "$NS_CLI" "$IF_CLI"
    check_up "$NS_SW" "$IF_SW_CLI"
    check_up "$NS_SW" "$IF_SW_BE"
    check_up "$NS_BR" "$IF_BR"
    if ((handoff)); then
        check_up "$NS_RT" "$IF_RT_BE"
        check_up "$NS_RT" "$IF_RT_CLI"
        check_up "$NS_BR" "$IF_BR_RT"
        check_up "$NS_CLI" "$IF_CLI_RT"
        check_up "$NS_RT" "$IF_RT_ROUTED"
        handoff_status || up=0
    fi
    echo "== nginx"
    for b in "${served[@]}"; do
        ip=$(backend_ip "$b")
        if pid=$(nginx_pid "$b"); then
            got=$(nsx "$P-$b" curl -s --max-time 1 "http://$ip/whoami" 2>/dev/null || true)
            if [[ $got == "$b" ]]; then
                echo "   $b: running (pid $pid), answers on $ip:80"
            else
                echo "   $b: running (pid $pid) but does not answer on $ip:80"
                up=0
            fi
        else
            echo "   $b: NOT running"
            up=0
        fi
    done
    if ((up)); then
        echo "testbed '$P': up"
        return 0
    fi
    echo "testbed '$P': not (fully) up"
    return 1
}

# ---- impair: loss, duplication, reordering (no netem; see docs/testbed.md) -------------
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMP_DIR=$DIR/impair
IMP_TABLE=ws_impair          # nft table (netdev family) in $P-cli and $P-br
IMP_BH=wsbh0                 # in $P-cli: blackhole veth (peer wsbh1 stays down), silent c2s loss
IMP_BH_PEER=wsbh1
IMP_DUP=wsdup0               # in $P-cli: s2c duplicates leave here ...
IMP_DUP_PEER=wsdup1          # ... and arrive here (same MAC as cli0) into the client's stack
IMP_DUP_RET=wsdup2           # handoff: the same for what arrives on cli1 ...
IMP_DUP_RET_PEER=wsdup3      # ... (same MAC as cli1: a copy with cli0's MAC would not be for us)
IMP_Q_CLI=1                  # NFQUEUE numbers (queues are per network namespace)
IMP_Q_BR=2
IMP_Q_CLI_OUT=3              # the client's own packets: stolen and re-sent by the consumer
IMP_Q_RT=4                   # handoff, in $P-br: frames to and from the bridge port rt
IMP_Q_RET=5                  # handoff, in $P-cli: what arrives on cli1 ...
IMP_Q_RET_OUT=6              # ... and what the client sends there (stolen like queue 3)
# One NFQUEUE consumer per tag: cli and br as before; rt and cli1 on a handoff testbed. The
# consumer names links by its role (cli: always "client"; br: by the bridge ports), so the
# router's and cli1's packets get consumers of their own, and `impair stats` renames their links.
IMP_TAGS=(cli br rt cli1 fc)
IMP_MARK=0x5753              # SO_MARK of those copies (the OUTPUT queue rule skips them)
IMP_TCP="meta protocol ip meta l4proto tcp"   # only IPv4 TCP: never ARP, ICMP, ...

ipt() { # ns args...: iptables-legacy inside a namespace
    local ns=$1; shift
    nsx "$ns" iptables-legacy -w "$@"
}

pct_bp() { # "2" / "0.5" / "12.25" -> basis points (0-10000)
    local v=$1 name=$2 i f bp
    [[ $v =~ ^([0-9]{1,3})(\.([0-9]{1,2}))?$ ]] || die "impair: --$name '$v' is not a percentage (0-100, up to 2 decimals)"
    i=${BASH_REMATCH[1]}
    f=${BASH_REMATCH[3]}00
    bp=$((10#$i * 100 + 10#${f:0:2}))
    ((bp <= 10000)) || die "impair: --$name '$v' is over 100"
    echo "$bp"
}

impair_pid() { # tag -> pid of its NFQUEUE consumer, if it is running in its namespace
    local role=$1 ns pid
    case $role in cli|cli1) ns=$NS_CLI ;; br|rt) ns=$NS_BR ;; fc) ns=$NS_FC ;; *) return 1 ;; esac
    [[ -s $IMP_DIR/reorder-$role.pid ]] || return 1
    pid=$(tr -dc '0-9' <"$IMP_DIR/reorder-$role.pid")
    [[ -n $pid ]] || return 1
    pid_in_ns "$pid" "$ns" || return 1
    echo "$pid"
}

alive() { # pid: running (a zombie waiting for init to reap it is not)
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st%% *}
    [[ -n $st && $st != Z && $st != X ]]
}

ipt_unhook() { # ns parent chain: remove our chain and every jump to it
    local ns=$1 parent=$2 chain=$3
    while ipt "$ns" -D "$parent" -j "$chain" 2>/dev/null; do :; done
    ipt "$ns" -F "$chain" 2>/dev/null || true
    ipt "$ns" -X "$chain" 2>/dev/null || true
}

impair_off() { # remove every impairment of this testbed; fine if nothing (or no testbed) is there
    local role pid i segs
    # 1. stop queueing (with --queue-bypass nothing waits for a consumer anyway)
    local cns
    for cns in "$NS_CLI" "$NS_FC"; do
        if ns_exists "$cns"; then
            ipt_unhook "$cns" OUTPUT ws_impair_out
            ipt_unhook "$cns" INPUT ws_impair_in
        fi
    done
    if ns_exists "$NS_BR"; then
        ipt_unhook "$NS_BR" FORWARD ws_impair_fwd
    fi
    # 2. stop the consumers (on SIGTERM they let everything they hold through)
    for role in "${IMP_TAGS[@]}"; do
        if pid=$(impair_pid "$role"); then
            kill -TERM "$pid" 2>/dev/null || true
            for i in $(seq 1 60); do
                alive "$pid" || break
                if ((i == 50)); then kill -KILL "$pid" 2>/dev/null || true; fi
                sleep 0.05
            done
        fi
    done
    # 3. nft tables, helper veths, GSO limit, bridge netfilter
    if ns_exists "$NS_CLI"; then
        nsx "$NS_CLI" nft delete table netdev "$IMP_TABLE" 2>/dev/null || true
        ip -n "$NS_CLI" link del "$IMP_BH" 2>/dev/null || true
        ip -n "$NS_CLI" link del "$IMP_DUP" 2>/dev/null || true
        segs=65535
        if [[ -s $IMP_DIR/cli0.gso_max_segs ]]; then segs=$(tr -dc '0-9' <"$IMP_DIR/cli0.gso_max_segs"); fi
        ip -n "$NS_CLI" link set "$IF_CLI" gso_max_segs "${segs:-65535}" 2>/dev/null || true
        # handoff: cli1's helper and GSO limit (a plain testbed has neither)
        if ip -n "$NS_CLI" link show "$IF_CLI_RT" >/dev/null 2>&1; then
            ip -n "$NS_CLI" link del "$IMP_DUP_RET" 2>/dev/null || true
            segs=65535
            if [[ -s $IMP_DIR/cli1.gso_max_segs ]]; then segs=$(tr -dc '0-9' <"$IMP_DIR/cli1.gso_max_segs"); fi
            ip -n "$NS_CLI" link set "$IF_CLI_RT" gso_max_segs "${segs:-65535}" 2>/dev/null || true
        fi
    fi
    # a cluster testbed's client behind the router (link front)
    if ns_exists "$NS_FC"; then
        nsx "$NS_FC" nft delete table netdev "$IMP_TABLE" 2>/dev/null || true
        ip -n "$NS_FC" link del "$IMP_BH" 2>/dev/null || true
        ip -n "$NS_FC" link del "$IMP_DUP" 2>/dev/null || true
        segs=65535
        if [[ -s $IMP_DIR/fc-cli0.gso_max_segs ]]; then segs=$(tr -dc '0-9' <"$IMP_DIR/fc-cli0.gso_max_segs"); fi
        ip -n "$NS_FC" link set "$IF_CLI" gso_max_segs "${segs:-65535}" 2>/dev/null || true
    fi
    if ns_exists "$NS_BR"; then
        nsx "$NS_BR" nft delete table netdev "$IMP_TABLE" 2>/dev/null || true
        nsx "$NS_BR" sysctl -qw net.bridge.bridge-nf-call-iptables=0 >/dev/null 2>&1 || true
    fi
    rm -rf -- "$IMP_DIR"
}

start_reorderer() { # tag ns queue pct seed gap ms delay_ms [consumer args...]
    local role=$1 ns=$2 q=$3 pct=$4 seed=$5 gap=$6 ms=$7 delay=$8 i pid crole
    shift 8
    # the consumer's own role: how it names links (rt and cli1 are renamed by impair_stats)
    case $role in cli|cli1|fc) crole=cli ;; *) crole=br ;; esac
    rm -f "$IMP_DIR/reorder-$role.pid"
    # its own session, stdio on a log file: callers that capture our output never wait on it
    setsid ip netns exec "$ns" python3 "$SCRIPT_DIR/nfq_reorder.py" --role "$crole" --queue "$q" \
        --pct "$pct" --seed "$seed" --gap "$gap" --max-ms "$ms" --delay-ms "$delay" "$@" \
        --stats "$IMP_DIR/reorder-$role.json" --pidfile "$IMP_DIR/reorder-$role.pid" \
        </dev/null >>"$IMP_DIR/reorder-$role.log" 2>&1 &
    for i in $(seq 1 100); do
        if pid=$(impair_pid "$role"); then
            say "impair: reorderer $role (pid $pid) serves NFQUEUE $q in $ns"
            return 0
        fi
        sleep 0.05
    done
    cat "$IMP_DIR/reorder-$role.log" >&2 || true
    die "impair: the NFQUEUE consumer for $ns did not start (log: $IMP_DIR/reorder-$role.log)"
}

# The client side of impair_apply: the client's veth(s) in namespace $cns, link $clink,
# reorderer $crole (its GSO limit saved as $gso_tag<veth>.gso_max_segs). Called from
# impair_apply, whose locals (on_ret, loss_bp, dup_bp, queued, ...) it reads: once for the
# testbed's client ($P-cli: links client and client_return), once on a cluster testbed for
# the client behind the ECMP router ($P-fc: link front)
impair_client_side() { # cns cmac clink crole gso_tag want_cli on_ret
    local cns=$1 cmac=$2 clink=$3 crole=$4 gso_tag=$5 want_cli=$6 on_ret=$7 l
    if ((want_cli || on_ret)); then
        # blackhole for silent client->switch loss (and client->router on cli1); a second veth
        # pair per client veth to inject duplicates of what arrives into the client's stack
        # (ingress `dup to` a device would send them back); its far end has that veth's MAC,
        # so the copy is addressed to it
        ip -n "$cns" link add "$IMP_BH" type veth peer name "$IMP_BH_PEER"
        local dups=()
        if ((want_cli)); then
            ip -n "$cns" link add "$IMP_DUP" type veth peer name "$IMP_DUP_PEER" address "$cmac"
            dups+=("$IMP_DUP" "$IMP_DUP_PEER")
        fi
        if ((on_ret)); then
            ip -n "$cns" link add "$IMP_DUP_RET" type veth peer name "$IMP_DUP_RET_PEER" address "$MAC_CLI_RT"
            dups+=("$IMP_DUP_RET" "$IMP_DUP_RET_PEER")
        fi
        for l in "$IMP_BH" "${dups[@]}"; do offloads_off "$cns" "$l"; done
        ip -n "$cns" link set "$IMP_BH" up        # its peer stays down: no carrier, frames vanish
        if ((want_cli)); then
            ip -n "$cns" link set "$IMP_DUP_PEER" arp off
            ip -n "$cns" link set "$IMP_DUP_PEER" up
            ip -n "$cns" link set "$IMP_DUP" up
        fi
        if ((on_ret)); then
            ip -n "$cns" link set "$IMP_DUP_RET_PEER" arp off
            ip -n "$cns" link set "$IMP_DUP_RET_PEER" up
            ip -n "$cns" link set "$IMP_DUP_RET" up
        fi
        if ((loss_bp || dup_bp)); then
            # the egress hook sees whole GSO skbs (up to 64 KB); one segment per skb makes
            # client->switch (client->router) loss and duplication per frame (for connections
            # opened from now on)
            local cif gso_links=()
            if ((want_cli)); then gso_links+=("$IF_CLI"); fi
            if ((on_ret)); then gso_links+=("$IF_CLI_RT"); fi
            for cif in "${gso_links[@]}"; do
                ip -d -n "$cns" link show "$cif" | grep -o 'gso_max_segs [0-9]*' | awk '{print $2}' \
                    >"$IMP_DIR/$gso_tag$cif.gso_max_segs" || true
                ip -n "$cns" link set "$cif" gso_max_segs 1
            done
        fi
        {
            echo "table netdev $IMP_TABLE {"
            if ((want_cli)); then counters "$clink"; fi
            if ((on_ret)); then counters client_return; fi
            if ((want_cli)); then
                echo "    chain cli0_egress {"
                echo "        type filter hook egress device \"$IF_CLI\" priority 0; policy accept;"
                rules "$clink" to_switch "" "fwd to \"$IMP_BH\"" "dup to \"$IF_CLI\""
                echo "    }"
                echo "    chain cli0_ingress {"
                echo "        type filter hook ingress device \"$IF_CLI\" priority 0; policy accept;"
                rules "$clink" from_switch "" "drop" "dup to \"$IMP_DUP\""
                echo "    }"
            fi
            if ((on_ret)); then
                # handoff: cli1 is the client's end of the router link; to_switch is what the
                # client sends there, from_switch what it receives (the backends' answers)
                echo "    chain cli1_egress {"
                echo "        type filter hook egress device \"$IF_CLI_RT\" priority 0; policy accept;"
                rules client_return to_switch "" "fwd to \"$IMP_BH\"" "dup to \"$IF_CLI_RT\""
                echo "    }"
                echo "    chain cli1_ingress {"
                echo "        type filter hook ingress device \"$IF_CLI_RT\" priority 0; policy accept;"
                rules client_return from_switch "" "drop" "dup to \"$IMP_DUP_RET\""
                echo "    }"
            fi
            echo "}"
        } | nsx "$cns" nft -f -
        if ((queued)); then
            # cli1 gets a consumer of its own: the consumer names every packet it sees by hook
            # (out: to_switch, in: from_switch) as link "client", so one consumer per veth
            if ((want_cli)); then
                start_reorderer "$crole" "$cns" "$IMP_Q_CLI" "$reorder_pct" "$seed" "$gap" "$ms" "$delay_ms" \
                    --steal-queue "$IMP_Q_CLI_OUT" --mark "$IMP_MARK"
            fi
            if ((on_ret)); then
                start_reorderer cli1 "$cns" "$IMP_Q_RET" "$reorder_pct" "$seed" "$gap" "$ms" "$delay_ms" \
                    --steal-queue "$IMP_Q_RET_OUT" --mark "$IMP_MARK"
            fi
            ipt "$cns" -N ws_impair_out
            if ((want_cli)); then
                ipt "$cns" -A ws_impair_out -o "$IF_CLI" -p tcp -m mark ! --mark "$IMP_MARK" \
                    -j NFQUEUE --queue-num "$IMP_Q_CLI_OUT" --queue-bypass
            fi
            if ((on_ret)); then
                ipt "$cns" -A ws_impair_out -o "$IF_CLI_RT" -p tcp -m mark ! --mark "$IMP_MARK" \
                    -j NFQUEUE --queue-num "$IMP_Q_RET_OUT" --queue-bypass
            fi
            ipt "$cns" -I OUTPUT -j ws_impair_out
            ipt "$cns" -N ws_impair_in
            if ((want_cli)); then
                ipt "$cns" -A ws_impair_in -i "$IF_CLI" -p tcp -j NFQUEUE --queue-num "$IMP_Q_CLI" --queue-bypass
                ipt "$cns" -A ws_impair_in -i "$IMP_DUP_PEER" -p tcp -j NFQUEUE --queue-num "$IMP_Q_CLI" --queue-bypass
            fi
            if ((on_ret)); then
                ipt "$cns" -A ws_impair_in -i "$IF_CLI_RT" -p tcp -j NFQUEUE --queue-num "$IMP_Q_RET" --queue-bypass
                ipt "$cns" -A ws_impair_in -i "$IMP_DUP_RET_PEER" -p tcp -j NFQUEUE --queue-num "$IMP_Q_RET" --queue-bypass
            fi
            ipt "$cns" -I INPUT -j ws_impair_in
        fi
    fi
}

impair_apply() {
    local loss=0 dup=0 reorder=0 delay=0 seed="" links="" gap=3 ms=10
    while (($#)); do
        case $1 in
            --loss|--dup|--reorder|--delay|--seed|--links|--reorder-gap|--reorder-ms)
                (($# >= 2)) || die "impair: $1 needs a value"
                case $1 in
                    --loss) loss=$2 ;;
                    --dup) dup=$2 ;;
                    --reorder) reorder=$2 ;;
                    --delay) delay=$2 ;;
                    --seed) seed=$2 ;;
                    --links) links=$2 ;;
                    --reorder-gap) gap=$2 ;;
                    --reorder-ms) ms=$2 ;;
                esac
                shift 2 ;;
            *) die "impair: unknown argument '$1' (see: $0 help)" ;;
        esac
    done
    local loss_bp dup_bp reorder_bp
    loss_bp=$(pct_bp "$loss" loss)
    dup_bp=$(pct_bp "$dup" dup)
    reorder_bp=$(pct_bp "$reorder" reorder)
    [[ -z $seed ]] && seed=$(( (RANDOM << 15) | RANDOM ))
    [[ $seed =~ ^[0-9]{1,18}$ ]] || die "impair: --seed '$seed' is not a number"
    if ! [[ $gap =~ ^[1-9][0-9]{0,3}$ ]]; then die "impair: --reorder-gap '$gap' must be 1-9999"; fi
    if ! [[ $ms =~ ^[1-9][0-9]{0,4}$ ]]; then die "impair: --reorder-ms '$ms' must be 1-99999"; fi
    # delay in hundredths of a ms (the consumers get it back as a decimal string)
    local delay_c delay_f
    [[ $delay =~ ^([0-9]{1,5})(\.([0-9]{1,2}))?$ ]] || die "impair: --delay '$delay' is not a number of ms (0-10000, up to 2 decimals)"
    delay_f=${BASH_REMATCH[3]}00
    delay_c=$((10#${BASH_REMATCH[1]} * 100 + 10#${delay_f:0:2}))
    ((delay_c <= 1000000)) || die "impair: --delay '$delay' is over 10000 ms"
    local delay_ms
    delay_ms=$((delay_c / 100)).$(printf '%02d' $((delay_c % 100)))
    # the NFQUEUE consumers run for reordering, delay, or both
    local queued=0
    if ((reorder_bp || delay_c)); then queued=1; fi
    # on a handoff testbed the backends' answers return past the switch (bridge port rt ->
    # router -> cli1): by default those links are impaired too, so that every link a
    # handed-off connection crosses is impaired
    local l on_cli=0 on_be=0 on_rt=0 on_ret=0 on_front=0 handoff=0
    if is_handoff; then handoff=1; fi
    if [[ -z $links ]]; then
        links=client,backend
        if ((handoff)); then links+=,router,client_return; fi
    fi
    for l in ${links//,/ }; do
        case $l in
            client) on_cli=1 ;;
            backend|backends) on_be=1 ;;
            router) on_rt=1 ;;
            client_return) on_ret=1 ;;
            front) on_front=1 ;;
            both) on_cli=1; on_be=1 ;;
            all) on_cli=1; on_be=1; on_rt=$handoff; on_ret=$handoff ;;
            *) die "impair: --links takes client, backend, router, client_return, front, both or all ('$l')" ;;
        esac
    done
    ((on_cli + on_be + on_rt + on_ret + on_front)) || die "impair: --links names no link"
    if ((on_front)) && ! is_cluster; then
        die "impair: --links front exists on a cluster testbed only (up --cluster); '$P' is not one"
    fi
    if ((on_rt || on_ret)) && ! ((handoff)); then
        die "impair: --links router and client_return exist on a handoff testbed only (up --handoff); '$P' is not one"
    fi
    local ns
    for ns in "$NS_CLI" "$NS_BR"; do ns_exists "$ns" || die "impair: netns $ns missing: is testbed '$P' up?"; done
    if ((on_rt)); then
        ip -n "$NS_BR" link show "$IF_BR_RT" >/dev/null 2>&1 || die "impair: bridge port $NS_BR/$IF_BR_RT missing: is testbed '$P' up (--handoff)?"
    fi
    if ((on_ret)); then
        ip -n "$NS_CLI" link show "$IF_CLI_RT" >/dev/null 2>&1 || die "impair: $NS_CLI/$IF_CLI_RT missing: is testbed '$P' up (--handoff)?"
    fi

    impair_off
    mkdir -p "$IMP_DIR"
    local links_json=()
    ((on_cli)) && links_json+=('"client"')
    ((on_be)) && links_json+=('"backend"')
    ((on_rt)) && links_json+=('"router"')
    ((on_ret)) && links_json+=('"client_return"')
    ((on_front)) && links_json+=('"front"')
    cat >"$IMP_DIR/params.json" <<EOF
{"loss_pct": $((loss_bp / 100)).$(printf '%02d' $((loss_bp % 100))), "dup_pct": $((dup_bp / 100)).$(printf '%02d' $((dup_bp % 100))), "reorder_pct": $((reorder_bp / 100)).$(printf '%02d' $((reorder_bp % 100))), "delay_ms": $delay_ms, "seed": $seed, "reorder_gap": $gap, "reorder_ms": $ms, "links": [$(IFS=,; echo "${links_json[*]}")]}
EOF
    # pct for the reorderer as a decimal string
    local reorder_pct
    reorder_pct=$((reorder_bp / 100)).$(printf '%02d' $((reorder_bp % 100)))

    # nft rules: per link and direction a packet counter, then loss, then duplication
    # (a duplicate passes the same chain again where it is made on egress)
    rules() { # link dir match lossaction dupaction
        local link=$1 dir=$2 m=$3 lossact=$4 dupact=$5 c=$1__$2
        echo "        $m $IMP_TCP counter name \"${c}__packets\""
        if ((loss_bp)); then echo "        $m $IMP_TCP numgen random mod 10000 < $loss_bp counter name \"${c}__drops\" $lossact"; fi
        if ((dup_bp)); then echo "        $m $IMP_TCP numgen random mod 10000 < $dup_bp counter name \"${c}__dups\" $dupact"; fi
    }
    counters() { # link...: the named counters for both directions
        local link dir k
        for link in "$@"; do for dir in to_switch from_switch; do for k in packets drops dups; do
            echo "    counter ${link}__${dir}__$k { }"
        done; done; done
    }

    impair_client_side "$NS_CLI" "$MAC_CLI" client cli "" "$on_cli" "$on_ret"
    if ((on_front)); then
        impair_client_side "$NS_FC" "$(mac 3 2)" front fc fc- 1 0
    fi

    if ((on_be || on_rt)); then
        local b i not_rt=""
        # handoff: the router's frames belong to the router link alone (the backends' rules
        # skip them, whether or not the router is impaired), so every bridged frame is impaired
        # once in $P-br, as before: the router link's to_switch (router -> bridge) sits on the
        # egress of the ports it leaves by, as the backends' to_switch does on to-sw, and its
        # from_switch (bridge -> router: the backends' answers) on rt's egress
        if ((handoff)); then not_rt="ether saddr != $MAC_RT_BE"; fi
        local sw_ports=("$IF_BR_SW") k
        if is_cluster; then
            for k in 2 3; do
                if ip -n "$NS_BR" link show "to-sw$k" >/dev/null 2>&1; then sw_ports+=("to-sw$k"); fi
            done
        fi
        {
            echo "table netdev $IMP_TABLE {"
            if ((on_be)); then counters "${BACKENDS[@]}"; fi
            if ((on_rt)); then counters router; fi
            for b in "${BACKENDS[@]}"; do
                echo "    chain ${b}_egress {"
                echo "        type filter hook egress device \"$b\" priority 0; policy accept;"
                if ((on_be)); then rules "$b" from_switch "$not_rt" "drop" "dup to \"$b\""; fi
                if ((on_rt)); then rules router to_switch "ether saddr $MAC_RT_BE" "drop" "dup to \"$b\""; fi
                echo "    }"
            done
            # toward the switch: its bridge port, and on a cluster testbed the other
            # instances' ports too (to-sw2, to-sw3), counted as the same links
            local sw_port n=0
            for sw_port in "${sw_ports[@]}"; do
                n=$((n + 1))
                echo "    chain to_sw${n}_egress {"
                echo "        type filter hook egress device \"$sw_port\" priority 0; policy accept;"
                if ((on_be)); then
                    for b in "${BACKENDS[@]}"; do
                        i=${b#be}
                        rules "$b" to_switch "ether saddr $(mac 1 $((10 + i)))" "drop" "dup to \"$sw_port\""
                    done
                fi
                if ((on_rt)); then rules router to_switch "ether saddr $MAC_RT_BE" "drop" "dup to \"$sw_port\""; fi
                echo "    }"
            done
            if ((on_rt)); then
                echo "    chain rt_egress {"
                echo "        type filter hook egress device \"$IF_BR_RT\" priority 0; policy accept;"
                rules router from_switch "" "drop" "dup to \"$IF_BR_RT\""
                echo "    }"
            fi
            echo "}"
        } | nsx "$NS_BR" nft -f -
        if ((queued)); then
            nsx "$NS_BR" sysctl -qw net.bridge.bridge-nf-call-iptables=1 >/dev/null
            # the router's frames get a consumer of their own: this one names a frame by the
            # port it leaves by (or <in-port>/to_switch when that is to-sw), so the router's
            # frames to a backend would count as that backend's from_switch
            if ((on_be)); then
                start_reorderer br "$NS_BR" "$IMP_Q_BR" "$reorder_pct" "$seed" "$gap" "$ms" "$delay_ms"
            fi
            if ((on_rt)); then
                start_reorderer rt "$NS_BR" "$IMP_Q_RT" "$reorder_pct" "$seed" "$gap" "$ms" "$delay_ms"
            fi
            ipt "$NS_BR" -N ws_impair_fwd
            if ((handoff)); then
                # first (NFQUEUE and RETURN end the chain): the router's frames, both ways, to
                # its consumer, or past the backends' queue when the router is not impaired
                local rt_to=(-j RETURN)
                if ((on_rt)); then rt_to=(-j NFQUEUE --queue-num "$IMP_Q_RT" --queue-bypass); fi
                ipt "$NS_BR" -A ws_impair_fwd -p tcp -m physdev --physdev-in "$IF_BR_RT" --physdev-is-bridged "${rt_to[@]}"
                ipt "$NS_BR" -A ws_impair_fwd -p tcp -m physdev --physdev-out "$IF_BR_RT" --physdev-is-bridged "${rt_to[@]}"
            fi
            if ((on_be)); then
                ipt "$NS_BR" -A ws_impair_fwd -p tcp -m physdev --physdev-is-bridged -j NFQUEUE --queue-num "$IMP_Q_BR" --queue-bypass
            fi
            ipt "$NS_BR" -I FORWARD -j ws_impair_fwd
        fi
    fi
    say "impair: loss $loss% dup $dup% reorder $reorder_pct% (gap $gap, max $ms ms) delay $delay_ms ms seed $seed on $links (TCP/IPv4 only)"
    # be4 is not a bridge port: "backend" means be1-be3. Its link rt-b4 has no rules, and the
    # switch's IP-in-IP packets to it are protocol 4, not TCP, on every link they cross; only
    # its answers are impaired, on client_return (they never cross the bridge, so not on router)
    if ((handoff)); then
        say "impair: not impaired: $ROUTED's link $IF_RT_ROUTED, and IP-in-IP (protocol 4) to $ROUTED anywhere"
    fi
}

impair_stats() {
    local role pid seq0 i tmp
    tmp=$(mktemp -d)
    # fresh counters from the consumers: SIGUSR1 makes them rewrite their file (seq + 1)
    for role in "${IMP_TAGS[@]}"; do
        if pid=$(impair_pid "$role"); then
            seq0=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seq"])' \
                "$IMP_DIR/reorder-$role.json" 2>/dev/null || echo -1)
            kill -USR1 "$pid" 2>/dev/null || true
            for i in $(seq 1 40); do
                [[ $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seq"])' \
                    "$IMP_DIR/reorder-$role.json" 2>/dev/null || echo -1) != "$seq0" ]] && break
                sleep 0.025
            done
            echo 1 >"$tmp/running-$role"
        fi
    done
    if ns_exists "$NS_CLI"; then nsx "$NS_CLI" nft -j list counters table netdev "$IMP_TABLE" >"$tmp/nft-cli.json" 2>/dev/null || true; fi
    if ns_exists "$NS_BR"; then nsx "$NS_BR" nft -j list counters table netdev "$IMP_TABLE" >"$tmp/nft-br.json" 2>/dev/null || true; fi
    if ns_exists "$NS_FC"; then nsx "$NS_FC" nft -j list counters table netdev "$IMP_TABLE" >"$tmp/nft-fc.json" 2>/dev/null || true; fi
    python3 - "$P" "$IMP_DIR" "$tmp" "${BACKENDS[@]}" <<'PY'
import json, os, sys

P, imp, tmp, backends = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

params = load(os.path.join(imp, "params.json"))
out = {"testbed": P, "active": params is not None, "params": params, "links": {}, "totals": {},
       "reorderers": {}}
NFT = ("packets", "drops", "dups")
REO = ("queued", "held", "reordered", "overtakes", "released_by_gap", "released_by_timeout", "delayed", "stolen")
if params is not None:
    names = (["client"] if "client" in params["links"] else []) + \
            (backends if "backend" in params["links"] else []) + \
            (["router"] if "router" in params["links"] else []) + \
            (["client_return"] if "client_return" in params["links"] else []) + \
            (["front"] if "front" in params["links"] else [])
    for link in names:
        out["links"][link] = {d: dict.fromkeys(NFT + REO, 0) for d in ("to_switch", "from_switch")}
    for ns in ("cli", "br", "fc"):
        doc = load(os.path.join(tmp, f"nft-{ns}.json")) or {}
        for item in doc.get("nftables", []):
            c = item.get("counter")
            if not c:
                continue
            try:
                link, d, kind = c["name"].split("__")
            except ValueError:
                continue
            out["links"].setdefault(link, {}).setdefault(d, dict.fromkeys(NFT + REO, 0))[kind] = c["packets"]
    def link_of(role, link, d):
        # the consumers name links by their role (see nfq_reorder.py); the handoff return
        # path's own consumers: cli1's sees link "client", rt's names a frame to rt "rt"/
        # from_switch and one from rt by where it goes (to-sw: "rt"/to_switch, else "beN")
        if role == "cli1":
            return "client_return", d
        if role == "fc":
            return "front", d
        if role == "rt":
            return "router", ("from_switch" if (link, d) == ("rt", "from_switch") else "to_switch")
        return link, d
    delay_sum = {}
    for role in ("cli", "br", "rt", "cli1", "fc"):
        doc = load(os.path.join(imp, f"reorder-{role}.json"))
        if doc is None:
            continue
        out["reorderers"][role] = {"pid": doc["pid"], "running": os.path.exists(os.path.join(tmp, f"running-{role}")),
                                   "held_now": doc["held_now"], "in_delay_line": doc.get("in_delay_line", 0),
                                   "errors": doc["errors"], "kernel": doc["kernel"]}
        for link, dirs in doc["links"].items():
            for d, st in dirs.items():
                link, d = link_of(role, link, d)
                dst = out["links"].setdefault(link, {}).setdefault(d, dict.fromkeys(NFT + REO, 0))
                # summed: several of a consumer's names may be one link and direction
                dst["queued"] += st["packets"]
                for k in REO[1:]:
                    dst[k] += st.get(k, 0)
                if st.get("delayed"):
                    delay_sum[link, d] = delay_sum.get((link, d), 0.0) + st["delay_ms_sum"]
    # mean time a delayed packet spent in the consumer (delay plus any reorder hold)
    for (link, d), ms_sum in delay_sum.items():
        dst = out["links"][link][d]
        dst["delay_ms_avg"] = round(ms_sum / dst["delayed"], 3)
    for d in ("to_switch", "from_switch"):
        out["totals"][d] = {k: sum(v.get(d, {}).get(k, 0) for v in out["links"].values()) for k in NFT + REO}
print(json.dumps(out, indent=2, sort_keys=False))
PY
    rm -rf -- "$tmp"
}

cmd_impair() {
    need_root
    need_tools nft iptables-legacy python3 ip sysctl setsid
    case ${1:-} in
        off)
            (($# == 1)) || die "impair off takes no arguments"
            impair_off
            say "impair: off" ;;
        stats)
            (($# == 1)) || die "impair stats takes no arguments"
            impair_stats ;;
        *) impair_apply "$@" ;;
    esac
}

# ---- env -------------------------------------------------------------------------------
cmd_env() {
    local b ips=() nss=()
    # be1-be3 only (what existing scripts iterate over); be4 has WS_ROUTED_*, which like the
    # router's names are printed either way and mean something only with WS_HANDOFF=1
    for b in "${BACKENDS[@]}"; do
        ips+=("$(backend_ip "$b")")
        nss+=("$P-$b")
    done
    cat <<EOF
WS_TESTBED=$P
WS_NET=$N
WS_NS_CLI=$NS_CLI
WS_NS_SW=$NS_SW
WS_NS_BR=$NS_BR
WS_NS_BACKENDS="${nss[*]}"
WS_CLIENT_IF=$IF_CLI
WS_SW_CLIENT_IF=$IF_SW_CLI
WS_SW_BACKEND_IF=$IF_SW_BE
WS_CLIENT_IP=$CLIENT_IP
WS_CLIENT_MAC=$MAC_CLI
WS_SWITCH_CLIENT_IP=$SWITCH_CLIENT_IP
WS_SWITCH_CLIENT_MAC=$MAC_SW_CLI
WS_VIP=$VIP
WS_VIP_PORT=$VIP_PORT
WS_SWITCH_BACKEND_IP=$SWITCH_BACKEND_IP
WS_SWITCH_BACKEND_MAC=$MAC_SW_BE
WS_BACKENDS="${ips[*]}"
WS_BACKEND_NAMES="${BACKENDS[*]}"
WS_BACKEND_PORT=80
WS_TESTBED_DIR=$DIR
WS_HANDOFF=$(if is_handoff; then echo 1; else echo 0; fi)
WS_ROUTER_NS=$NS_RT
WS_ROUTER_BE_IP=$ROUTER_BE_IP
WS_ROUTER_CLI_IP=$ROUTER_CLI_IP
WS_AGENT_TAP=$IF_AGENT
WS_ROUTED_BACKEND=$ROUTED
WS_ROUTED_NS=$NS_ROUTED
WS_ROUTED_BACKEND_IP=$ROUTED_IP
WS_ROUTED_NET=$ROUTED_NET
WS_ROUTER_ROUTED_IP=$ROUTER_ROUTED_IP
EOF
    cluster_env
}

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" | sed 's/^# \{0,1\}//'; }

cmd=${1:-}
shift || true
if [[ $cmd == impair ]]; then
    cmd_impair "$@"
    exit 0
fi
purge=0
handoff=0
cluster=0
for arg in "$@"; do
    case $arg in
        --purge) purge=1 ;;
        --handoff) handoff=1 ;;
        --cluster) cluster=1 ;;
        *) usage >&2; die "unknown argument '$arg'" ;;
    esac
done
if ((purge)) && [[ $cmd != down ]]; then die "--purge only goes with 'down'"; fi
if ((handoff)) && [[ $cmd != up ]]; then die "--handoff only goes with 'up'"; fi
if ((cluster)) && [[ $cmd != up ]]; then die "--cluster only goes with 'up'"; fi
if ((cluster && handoff)); then die "--cluster and --handoff are separate layouts: pick one"; fi

case $cmd in
    up) cmd_up "$handoff" "$cluster" ;;
    down) cmd_down "$purge"; say "down" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    help|-h|--help) usage ;;
    *) usage >&2; exit 2 ;;
esac
