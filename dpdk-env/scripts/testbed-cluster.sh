# testbed-cluster.sh: the cluster layout of the netns testbed (`testbed.sh up --cluster`),
# sourced by testbed.sh (it uses its names, helpers and addresses). See docs/testbed.md.
#
# On top of the base testbed (client, switch, backend bridge, be1-be3 with nginx):
#
#   $P-fc  client2 ---- $P-fr  router (BIRD, AS 65000, ECMP into its kernel) ---- bridge `front`
#   10.N.3.2            10.N.3.254            10.N.4.254                            |        |
#                                                                                   |        |
#            $P-sw  instance 1: sw-fr (DPDK port, own 10.N.4.31) --------------------+        |
#                   TAP wsx0 10.N.4.21 (the host: BIRD AS 65001, announces the VIP)          |
#                   sw-be (DPDK port, own 10.N.1.1) to the backend bridge                    |
#            $P-sw2 instance 2: sw-fr (own 10.N.4.32) -----------------------------------------+
#                   TAP wsx0 10.N.4.22 (BIRD AS 65001); sw-be (own 10.N.1.2) to the bridge
#            $P-sw3 instance 3, the same (10.N.4.33, TAP 10.N.4.23, 10.N.1.3): for tests of
#                   three members (a front and two owners); its BIRD peers with the router too
#
# The cluster VIP 10.N.5.10 is on no link: the router reaches it only by the routes the
# instances' BIRDs announce (next hop: their host address), one ECMP next hop per live
# instance. BGP hold time 3 s and BFD (3 x 100 ms) over the exception path withdraw an
# instance that stops or dies. The TAPs are persistent (the kernel's addresses are set
# before webswitch attaches; no carrier until it does).

NS_FR=$P-fr          # cluster: the ECMP router
NS_FC=$P-fc          # cluster: the client behind it
NS_SW2=$P-sw2        # cluster: the second instance
NS_SW3=$P-sw3        # cluster: the third instance
NS_CLUSTER=("$NS_FR" "$NS_FC" "$NS_SW2" "$NS_SW3")
INSTANCES=(1 2 3)
CLUSTER_FLAG=$DIR/cluster  # present while a testbed built by `up --cluster` stands
CLUSTER_DIR=$DIR/cluster.d # BIRD configs, control sockets, pid files and logs

FC_NET=10.$N.3
FRONT_NET=10.$N.4
CLUSTER_VIP=10.$N.5.10
FC_IP=$FC_NET.2
FR_CLI_IP=$FC_NET.254
FR_FRONT_IP=$FRONT_NET.254
CLUSTER_STORE_PORT=11211 # memcached on the router (cluster.state_store)
IF_FRONT=front       # in $P-fr: the bridge of the front segment (the router's 10.N.4.254)
IF_FR_CLI=fr-cli     # in $P-fr, peer of cli0 in $P-fc
IF_SW_FR=sw-fr       # in $P-sw, $P-sw2 and $P-sw3: the instance's front port (DPDK)
IF_EXC=wsx0          # in $P-sw, $P-sw2 and $P-sw3: the exception TAP (the appliance's kernel)
ROUTER_AS=65000
INSTANCE_AS=65001

instance_ns() { if (($1 == 1)); then echo "$NS_SW"; else echo "$P-sw$1"; fi; }
instance_host_ip() { echo "$FRONT_NET.$((20 + $1))"; }   # the kernel's, on the TAP
instance_own_ip() { echo "$FRONT_NET.$((30 + $1))"; }    # webswitch's, on the front port
instance_backend_ip() { echo "$BACKEND_NET.$1"; }        # webswitch's, on the backend port
instance_front_mac() { mac 4 $((30 + $1)); }

is_cluster() { [[ -e $CLUSTER_FLAG ]]; }

# BIRD in namespace $1, config $2, named $3 (control socket, pid file, log in CLUSTER_DIR).
bird_start() {
    local ns=$1 conf=$2 name=$3
    nsx "$ns" bird -c "$conf" -s "$CLUSTER_DIR/$name.ctl" -P "$CLUSTER_DIR/$name.pid" ||
        die "cluster: bird $name did not start (config $conf)"
}

write_bird_instance() { # instance index -> its BIRD config
    local i=$1 host
    host=$(instance_host_ip "$i")
    cat >"$CLUSTER_DIR/sw$i.conf" <<EOF
# BIRD on the appliance of instance $i: announces the cluster VIP over BGP, next hop its
# own host address on the exception TAP, so the router sends VIP traffic to this port.
# The VIP's protocol starts disabled: webswitch enables it once it can serve and disables
# it when it cannot or stops (its cluster.announce / cluster.withdraw commands run birdc).
log "$CLUSTER_DIR/sw$i.log" all;
router id $host;
protocol device { scan time 1; }
protocol static vip {
    disabled;
    ipv4;
    route $CLUSTER_VIP/32 blackhole;
}
# The host's own default route (ssh, ping answers to other subnets): through the router,
# out of the TAP; BIRD puts it back whenever the TAP comes up again (a restarted switch).
protocol static hostgw {
    ipv4;
    route 0.0.0.0/0 via $FR_FRONT_IP;
}
protocol kernel {
    ipv4 { import none; export where proto = "hostgw"; };
}
protocol bfd {
    interface "$IF_EXC" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}
protocol bgp front {
    local $host as $INSTANCE_AS;
    neighbor $FR_FRONT_IP as $ROUTER_AS;
    direct;
    hold time 3; keepalive time 1; connect retry time 1; connect delay time 1;
    error wait time 1, 4;
    bfd on;
    ipv4 { import none; export where proto = "vip"; next hop self; };
}
EOF
}

write_bird_router() {
    cat >"$CLUSTER_DIR/fr.conf" <<EOF
# BIRD on the router: one BGP session per instance, their VIP routes merged into one ECMP
# route in the kernel (one next hop per live instance).
log "$CLUSTER_DIR/fr.log" all;
router id $FR_FRONT_IP;
protocol device { scan time 1; }
protocol kernel {
    ipv4 { import none; export all; };
    merge paths on;
}
protocol bfd {
    interface "$IF_FRONT" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}
template bgp webswitch {
    local $FR_FRONT_IP as $ROUTER_AS;
    direct;
    hold time 3; keepalive time 1; connect retry time 1; connect delay time 1;
    error wait time 1, 4;
    bfd on;
    ipv4 { import all; export none; };
}
protocol bgp sw1 from webswitch { neighbor $(instance_host_ip 1) as $INSTANCE_AS; }
protocol bgp sw2 from webswitch { neighbor $(instance_host_ip 2) as $INSTANCE_AS; }
protocol bgp sw3 from webswitch { neighbor $(instance_host_ip 3) as $INSTANCE_AS; }
EOF
}

cluster_up() {
    need_tools bird birdc nft memcached
    local i ns peer
    say "cluster: router $NS_FR, client $NS_FC, instances 2 and 3 $NS_SW2 $NS_SW3, VIP $CLUSTER_VIP"
    for ns in "${NS_CLUSTER[@]}"; do
        ip netns add "$ns"
        ns_sysctls "$ns"
    done
    # the router: forwards, and spreads the VIP's flows over the next hops by L4 hash
    nsx "$NS_FR" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 >/dev/null
    nsx "$NS_FR" sysctl -qw net.bridge.bridge-nf-call-iptables=0 >/dev/null 2>&1 || true
    ip -n "$NS_FR" link add "$IF_FRONT" address "$(mac 4 254)" type bridge stp_state 0 forward_delay 0
    ip -n "$NS_FR" link add "$IF_FR_CLI" address "$(mac 3 254)" type veth \
        peer name "$IF_CLI" address "$(mac 3 2)" netns "$NS_FC"
    # the other instances' backend ports on the backend bridge
    for i in 2 3; do
        ns=$(instance_ns "$i")
        ip -n "$ns" link add "$IF_SW_BE" address "$(mac 1 "$i")" type veth \
            peer name "to-sw$i" address "$(mac 255 "$i")" netns "$NS_BR"
        ip -n "$NS_BR" link set "to-sw$i" master "$IF_BR"
        offloads_off "$ns" "$IF_SW_BE"
        offloads_off "$NS_BR" "to-sw$i"
        ip -n "$NS_BR" link set "to-sw$i" up
        ip -n "$ns" link set "$IF_SW_BE" up
    done
    for i in "${INSTANCES[@]}"; do
        ns=$(instance_ns "$i")
        peer=fr-sw$i
        ip -n "$ns" link add "$IF_SW_FR" address "$(instance_front_mac "$i")" type veth \
            peer name "$peer" address "$(mac 255 $((40 + i)))" netns "$NS_FR"
        ip -n "$NS_FR" link set "$peer" master "$IF_FRONT"
        offloads_off "$ns" "$IF_SW_FR"
        offloads_off "$NS_FR" "$peer"
        ip -n "$NS_FR" link set "$peer" up
        ip -n "$ns" link set "$IF_SW_FR" up
        # the appliance's kernel: a persistent multi-queue TAP (net_tap attaches with
        # IFF_MULTI_QUEUE), its host address set now; no carrier until webswitch runs
        ip -n "$ns" tuntap add "$IF_EXC" mode tap multi_queue
        ip -n "$ns" addr add "$(instance_host_ip "$i")/24" dev "$IF_EXC"
        ip -n "$ns" link set "$IF_EXC" up
    done
    # The switch's ports are veths whose kernel side is live in the instance's namespace,
    # and that kernel now has an address (the host's, on wsx0): it would answer what
    # arrives on them too (weak host model), so every packet for the host would be
    # handled twice. On an appliance the kernel never sees a DPDK-bound NIC; here an nft
    # netdev ingress drop hides them (AF_PACKET, DPDK's and the doorbell's, runs before it).
    for i in "${INSTANCES[@]}"; do
        ns=$(instance_ns "$i")
        nsx "$ns" nft -f - <<EOF
table netdev ws_cluster {
    chain front_ingress {
        type filter hook ingress device "$IF_SW_FR" priority 0; policy drop;
        counter comment "frames on $IF_SW_FR are webswitch's (af_packet) only"
    }
    chain backend_ingress {
        type filter hook ingress device "$IF_SW_BE" priority 0; policy drop;
        counter comment "frames on $IF_SW_BE are webswitch's (af_packet) only"
    }
}
EOF
    done
    offloads_off "$NS_FR" "$IF_FR_CLI"
    offloads_off "$NS_FC" "$IF_CLI"
    ip -n "$NS_FR" link set "$IF_FRONT" up
    ip -n "$NS_FR" link set "$IF_FR_CLI" up
    ip -n "$NS_FC" link set "$IF_CLI" up
    ip -n "$NS_FR" addr add "$FR_FRONT_IP/24" dev "$IF_FRONT"
    ip -n "$NS_FR" addr add "$FR_CLI_IP/24" dev "$IF_FR_CLI"
    ip -n "$NS_FC" addr add "$FC_IP/24" dev "$IF_CLI"
    ip -n "$NS_FC" route add default via "$FR_CLI_IP" dev "$IF_CLI"

    mkdir -p "$CLUSTER_DIR"
    rm -f "$CLUSTER_DIR"/*.log
    write_bird_router
    for i in "${INSTANCES[@]}"; do write_bird_instance "$i"; done
    for name in fr sw1 sw2 sw3; do
        bird -p -c "$CLUSTER_DIR/$name.conf" || die "cluster: BIRD rejects $CLUSTER_DIR/$name.conf"
    done
    bird_start "$NS_FR" "$CLUSTER_DIR/fr.conf" fr
    for i in "${INSTANCES[@]}"; do bird_start "$(instance_ns "$i")" "$CLUSTER_DIR/sw$i.conf" "sw$i"; done
    # the state store of `cluster.state_store` (memcached), on the router's front bridge:
    # the instances reach it through their kernels (the exception path). A system
    # package's service may have started one elsewhere; this one belongs to the testbed
    # (killed with the namespace's processes at `down`).
    nsx "$NS_FR" memcached -d -u nobody -l "$FR_FRONT_IP" -p "$CLUSTER_STORE_PORT" -m 64 \
        -P "$CLUSTER_DIR/memcached.pid" || die "cluster: memcached did not start"
    echo "cluster testbed $P (WS_NET=$N): router $NS_FR, instances $NS_SW $NS_SW2 $NS_SW3, VIP $CLUSTER_VIP" >"$CLUSTER_FLAG"
    say "cluster: BIRD runs in $NS_FR, $NS_SW, $NS_SW2 and $NS_SW3 (sessions come up once webswitch attaches to $IF_EXC)"
}

cluster_summary() {
    cat <<EOF

cluster testbed '$P' is up (WS_NET=$N)
  client    ns $NS_FC   $IF_CLI $FC_IP/24, default via $FR_CLI_IP
  router    ns $NS_FR   $IF_FR_CLI $FR_CLI_IP/24; bridge $IF_FRONT $FR_FRONT_IP/24; BIRD AS $ROUTER_AS (birdc -s $CLUSTER_DIR/fr.ctl)
  instance1 ns $NS_SW   port $IF_SW_FR ($(instance_front_mac 1)) own $(instance_own_ip 1), TAP $IF_EXC $(instance_host_ip 1)/24, port $IF_SW_BE own $(instance_backend_ip 1)
  instance2 ns $NS_SW2  port $IF_SW_FR ($(instance_front_mac 2)) own $(instance_own_ip 2), TAP $IF_EXC $(instance_host_ip 2)/24, port $IF_SW_BE own $(instance_backend_ip 2)
  instance3 ns $NS_SW3  port $IF_SW_FR ($(instance_front_mac 3)) own $(instance_own_ip 3), TAP $IF_EXC $(instance_host_ip 3)/24, port $IF_SW_BE own $(instance_backend_ip 3)
  store     memcached on $FR_FRONT_IP:$CLUSTER_STORE_PORT (in $NS_FR), for cluster.state_store
  VIP       $CLUSTER_VIP:80, announced by each instance's BIRD (AS $INSTANCE_AS) once its webswitch runs
  config:   examples/cluster.json (instance 1; instance 2 with .32, .2 and file prefix changed)
  check:    ip netns exec $NS_FR ip route show $CLUSTER_VIP
  teardown: WS_TESTBED=$P $0 down [--purge]
EOF
}

cluster_env() {
    cat <<EOF
WS_CLUSTER=$(if is_cluster; then echo 1; else echo 0; fi)
WS_CLUSTER_VIP=$CLUSTER_VIP
WS_CLUSTER_ROUTER_NS=$NS_FR
WS_CLUSTER_CLIENT_NS=$NS_FC
WS_CLUSTER_CLIENT_IP=$FC_IP
WS_CLUSTER_SW2_NS=$NS_SW2
WS_CLUSTER_SW3_NS=$NS_SW3
WS_CLUSTER_BIRD_DIR=$CLUSTER_DIR
WS_CLUSTER_STORE=$FR_FRONT_IP:$CLUSTER_STORE_PORT
EOF
}
