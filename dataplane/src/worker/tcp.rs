//! The TCP side of a worker: the per-core flow table and what the core keeps beside each
//! connection, and the path of a received segment through it: look up its flow, let
//! `tcpstate::conn` decide, carry out the verdict. `tcpstate` decides; the rooms below
//! move packets, clocks and counters, one concern each:
//!
//! - `accept`: SYN cookies, a client's first segments, RSTs for strays, head buffers
//! - `route`: a whole head → rules → pool, the rewrites the pool asks for (X-Forwarded-For,
//!   PROXY, the request target), and the switch's own answers
//! - `backend`: connects, backend choice, connection slots, pool queues, local ports,
//!   retries and passive health
//! - `emit`: frames built or translated from what `tcpstate` decided, and received frames parsed
//! - `timers`: the periodic work, and connection timers as they fall due
//! - `control`: the management thread's questions, runtime snapshots, health-probe glue
//! - `presplice`: per-request routing on keep-alive connections
//! - `warm`: warm backend connections, per backend and core
use std::net::Ipv4Addr;

use dpdk_env::Mbuf;
use std::collections::VecDeque;

use tcpstate::conn::{Challenge, ConnDrop, ConnParams, Emit, Outputs, SegmentInfo, State, Verdict};
use tcpstate::conn_table::ConnTable;
use tcpstate::flow::{ConnId, FlowKey, Side};
use tcpstate::presplice::PerRequest;
use tcpstate::reasm::HeadBuffer;
use tcpstate::syncookie::SynCookies;
use tcpstate::wire::{EthernetFrame, MacAddr, TcpPacket};

use super::Worker;
use crate::addrs::Local;
use crate::runtime::Runtime;
use crate::stats::{Counter, DropReason};

mod accept;
mod backend;
mod carry;
mod channel;
mod control;
mod emit;
mod handoff;
mod handover;
mod prealloc;
mod presplice;
mod route;
mod sync;
mod timers;
mod warm;
pub use control::{ConnInfo, CoreReply, CoreRequest};
use emit::{parse_tcp, tcp_checksum_ok, trim_payload};

const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
const IP: usize = 20;

/// Where each side of a connection is reached.
#[derive(Debug, Clone, Copy)]
struct Meta {
    client_mac: MacAddr,
    client_port: usize,
    backend_mac: MacAddr,
    backend_port: usize,
    /// TSC microseconds: handshake completed, request routed (0: not yet).
    accept_us: u64,
    routed_us: u64,
    /// Connection setup time, `u64::MAX` until known (an `Option` would take 16 bytes).
    setup_us: u64,
    ttfb_done: bool,
    /// For the access log: where the request went (what was asked is in the core's
    /// `request_lines`, read only when a line is logged).
    rule: Option<u16>,
    pool: Option<u16>,
    /// The status of the switch's own answer, if it gave one.
    status: Option<u16>,
    /// Backends this request was sent to (one bit per backend id), so that a retry
    /// goes elsewhere.
    tried: [u64; 4],
    /// While queued: the ticket (arrival order over all cores; 0: not queued) and the
    /// pool slot it waits for.
    queue_ticket: u64,
    queue_slot: u16,
    /// The backend connection counts toward its backend's `max_connections` slot and
    /// this core's scheduler load; cleared when it closes (not when the entry is
    /// forgotten after the linger).
    backend_held: bool,
    /// A presplice round started with a whole head already held: route it once the
    /// segment that started the round has been processed.
    route_pending: bool,
    /// Splice mode: every request is checked against the rules, but all go to the
    /// backend the first one was sent to (`sticky_backend`).
    sticky: bool,
    sticky_backend: Option<u16>,
    /// Handoff with `vips[].session_cookie`: the backend of the pool chosen for this
    /// request that the request's tagged session cookie names (`handoff::cookie`).
    session_backend: BackendSlot,
    /// Handoff: the backend a move took the connection from, whose agent keeps the
    /// kernel connection parked (`AgentFlow::resume`): a later request for its pool goes
    /// back there, without a new handshake.
    parked_backend: BackendSlot,
    /// Handoff with `vips[].preallocate`: the first request was handed off, and a wrong
    /// guess at SYN time cancelled (later rounds do not look at the guess).
    prealloc_settled: bool,
    /// A handed-off connection the switch reset itself (its agent went, or a request was
    /// refused): a client that missed the RST (it had received more than it had
    /// acknowledged) gets another, at exactly its ack, on its next segment.
    reset_handoff: bool,
}

/// A backend id or none in two bytes (an `Option<u16>` takes four, and `Meta` is kept
/// within 128 B: `tests::bytes_per_flow_entry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BackendSlot(u16);

impl BackendSlot {
    const NONE: BackendSlot = BackendSlot(u16::MAX);

    fn of(b: Option<u16>) -> BackendSlot {
        BackendSlot(b.filter(|&b| b != u16::MAX).unwrap_or(u16::MAX))
    }

    fn get(self) -> Option<usize> {
        (self != Self::NONE).then_some(usize::from(self.0))
    }
}

/// What a connection's request asked (method and path, cut to fit), for its access log
/// line: kept apart from `Meta`, which the packet path reads, since only routing writes
/// it and only the log reads it.
#[derive(Clone, Copy)]
struct RequestLine {
    method: [u8; 8],
    method_len: u8,
    path: [u8; 120],
    path_len: u8,
}

impl RequestLine {
    const EMPTY: RequestLine = RequestLine {
        method: [0; 8],
        method_len: 0,
        path: [0; 120],
        path_len: 0,
    };

    fn set(&mut self, method: &[u8], path: &[u8]) {
        let n = method.len().min(self.method.len());
        self.method[..n].copy_from_slice(&method[..n]);
        self.method_len = n as u8;
        let n = path.len().min(self.path.len());
        self.path[..n].copy_from_slice(&path[..n]);
        self.path_len = n as u8;
    }

    fn method(&self) -> &[u8] {
        &self.method[..self.method_len as usize]
    }

    fn path(&self) -> &[u8] {
        &self.path[..self.path_len as usize]
    }
}

impl Meta {
    fn tried(&self, b: usize) -> bool {
        b < 256 && self.tried[b / 64] & (1 << (b % 64)) != 0
    }
    fn mark_tried(&mut self, b: usize) {
        if b < 256 {
            self.tried[b / 64] |= 1 << (b % 64);
        }
    }
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            client_mac: MacAddr([0; 6]),
            client_port: 0,
            backend_mac: MacAddr([0; 6]),
            backend_port: 0,
            accept_us: 0,
            routed_us: 0,
            setup_us: u64::MAX,
            ttfb_done: false,
            rule: None,
            pool: None,
            status: None,
            tried: [0; 4],
            queue_ticket: 0,
            queue_slot: 0,
            backend_held: false,
            route_pending: false,
            sticky: false,
            sticky_backend: None,
            session_backend: BackendSlot::NONE,
            parked_backend: BackendSlot::NONE,
            prealloc_settled: false,
            reset_handoff: false,
        }
    }
}

/// One line of the access log, sent by the owning core to the main thread when a
/// connection ends (the switch sees one request per spliced connection: later ones on a
/// keep-alive connection go straight through).
#[derive(Debug, Clone)]
pub struct AccessRecord {
    pub client: (std::net::Ipv4Addr, u16),
    pub vip: (std::net::Ipv4Addr, u16),
    pub method: String,
    pub path: String,
    pub rule: Option<String>,
    pub pool: Option<String>,
    pub backend: Option<String>,
    pub status: Option<u16>,
    pub bytes_c2b: u64,
    pub bytes_b2c: u64,
    pub setup_us: Option<u64>,
    pub duration_us: u64,
    pub core: usize,
}

/// Per-worker TCP state.
pub struct TcpCore {
    /// Connections, with their timers and per-state counts (`tcpstate::conn_table`).
    flows: ConnTable,
    meta: Vec<Meta>,
    /// Per connection: what its request asked, for the access log.
    request_lines: Vec<RequestLine>,
    cookies: SynCookies,
    heads: Vec<HeadBuffer>,
    heads_allocated: usize,
    max_heads: usize,
    head_capacity: usize,
    pools: rules::pool::Pools,
    /// The runtime snapshot this core works with, and its version.
    rt: std::sync::Arc<Runtime>,
    /// Health probes in flight (worker 0): tuple → backend id.
    probes: hashbrown::HashMap<FlowKey, usize>,
    /// The pool each connection was routed to (for retries).
    pool_of: Vec<usize>,
    params: ConnParams,
    next_local_port: u16,
    next_sweep_ms: u64,
    rng: u64,
    /// Prepares sent this second (`vips[].preallocate`).
    prealloc_budget: prealloc::PreallocBudget,
    scratch_ids: Vec<ConnId>,
    /// Connections the wheel handed out as due, fired from `due_next` on, a bounded
    /// number per loop iteration (`timers`).
    due: Vec<ConnId>,
    due_next: usize,
    /// The millisecond the wheel was last read.
    due_read_ms: u64,
    /// Buffers for rewritten heads (X-Forwarded-For, PROXY), reused.
    rewrite_bufs: Vec<Vec<u8>>,
    /// Per pool slot: the requests this core has queued, oldest first (ticket, id).
    queues: Vec<VecDeque<(u64, ConnId)>>,
    /// Requests in `queues`.
    queued_local: usize,
    /// Framing state of presplice connections, by connection id, and spares.
    per_request: Vec<Option<Box<PerRequest>>>,
    /// Per handed-off connection: the watch over its later requests (see `handoff`).
    watches: Vec<Option<Box<tcpstate::handoff::watch::RequestWatch>>>,
    /// Watches given back, for reuse (one allocation per core, not per connection);
    /// boxed, as `pr_pool`.
    /// Handed-off connections waiting for their agent to let them go (a move).
    moving: Vec<ConnId>,
    /// Per backend id: the agent incarnation this core last acted on.
    agent_incarnations: Vec<u64>,
    /// Control transport: client segments that came before their handoff's ack
    /// (`channel`), in arrival order, at most `channel::MAX_HELD_FOR_ACK`; and a spare
    /// list to take one connection's out without allocating.
    ack_held: Vec<channel::HeldForAck>,
    ack_scratch: Vec<channel::HeldForAck>,
    #[allow(clippy::vec_box)]
    watch_pool: Vec<Box<tcpstate::handoff::watch::RequestWatch>>,
    // Boxed: states move between connections and the spares by pointer.
    #[allow(clippy::vec_box)]
    pr_pool: Vec<Box<PerRequest>>,
    /// Warm backend connections in the pool (not attached to a client), and how many
    /// each backend has on this core (opening or idle).
    warm: hashbrown::HashMap<FlowKey, tcpstate::warm::WarmConn>,
    warm_count: Vec<u32>,
    /// Per backend: no new warm connection before this time (after a refused one).
    warm_backoff_until: Vec<u64>,
    /// Scratch for segments the switch builds from its buffers.
    seg_scratch: Vec<u8>,
    /// Per backend: the agent load (ten-thousandths) last given to `pools.set_load`
    /// (`u32::MAX`: none yet, as after a runtime change replaced `pools`).
    agent_load: Vec<u32>,
    /// In a cluster: records of connections other members spliced, for adoption if
    /// their member goes (`sync`); bounded by `max_flows`.
    standby: tcpstate::cluster::sync::StandbyTable,
    /// How often a connection with traffic sends its record again: a quarter of the
    /// shortest lease on it (the others' standby copies live `tcp.idle_timeout_ms`, the
    /// store's `cluster.state_store.ttl_s`).
    sync_refresh_ms: u64,
    /// In a cluster, per connection: what was shared of it, and what adoption allows
    /// (`sync::ClusterFlow`); empty otherwise.
    cluster_flows: Vec<sync::ClusterFlow>,
    /// The store design: lookups this core asked, by tuple.
    store_pending: hashbrown::HashMap<FlowKey, sync::StoreLookup>,
    /// The reachable members at the last sweep (`sync::sync_joined`).
    sync_seen_reachable: u32,
}

impl TcpCore {
    /// Memory this core holds for connections: its tables, sized for `max_flows_per_core`
    /// at start and never grown, and the head buffers allocated so far (at most
    /// `max_heads` of `max_head_bytes`: what a slowloris flood can make a core hold).
    pub fn memory_bytes(&self) -> (usize, usize) {
        use std::mem::size_of;
        let b = self.flows.bytes();
        let per_flow = size_of::<Meta>()
            + size_of::<RequestLine>()
            + size_of::<usize>()
            + size_of::<Option<Box<PerRequest>>>()
            + size_of::<Option<Box<tcpstate::handoff::watch::RequestWatch>>>();
        let tables = b.flows.slots
            + b.flows.keys
            + b.flows.bookkeeping
            + b.timers
            + b.tracking
            + self.meta.len() * per_flow
            + self.cluster_flows.len() * size_of::<sync::ClusterFlow>();
        (tables, self.heads_allocated * self.head_capacity)
    }

    pub fn new(shared: &super::Shared, index: usize) -> TcpCore {
        let t = &shared.tcp;
        let mut rng = t.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(8) {
            chunk.copy_from_slice(&splitmix(&mut rng).to_le_bytes());
        }
        TcpCore {
            // The worker's clock starts at 0 (`Worker::now_ms`).
            flows: ConnTable::new(t.max_flows, 0),
            meta: vec![Meta::default(); t.max_flows],
            request_lines: vec![RequestLine::EMPTY; t.max_flows],
            cookies: SynCookies::new(seed, t.cookie_rotate_ms),
            heads: Vec::new(),
            heads_allocated: 0,
            max_heads: t.max_heads,
            head_capacity: t.head_capacity,
            pools: shared.runtime.load().pools.clone(),
            rt: shared.runtime.load_full(),
            probes: hashbrown::HashMap::new(),
            pool_of: vec![0; t.max_flows],
            params: t.params,
            // A random start, as Linux's ephemeral ports: an instance that restarts does not
            // walk again through the tuples its previous run used, which a cluster member may
            // still hold for the connections it adopted from that run.
            next_local_port: {
                let (lo, hi) = (*backend::LOCAL_PORTS.start(), *backend::LOCAL_PORTS.end());
                lo + (splitmix(&mut rng) % u64::from(hi - lo + 1)) as u16
            },
            next_sweep_ms: 0,
            rng,
            prealloc_budget: prealloc::PreallocBudget::default(),
            scratch_ids: Vec::with_capacity(t.max_flows),
            due: Vec::with_capacity(t.max_flows),
            due_next: 0,
            due_read_ms: u64::MAX,
            rewrite_bufs: Vec::new(),
            queues: (0..crate::runtime::MAX_POOLS)
                .map(|_| VecDeque::new())
                .collect(),
            queued_local: 0,
            per_request: (0..t.max_flows).map(|_| None).collect(),
            watches: (0..t.max_flows).map(|_| None).collect(),
            watch_pool: Vec::new(),
            moving: Vec::new(),
            ack_held: Vec::with_capacity(channel::MAX_HELD_FOR_ACK),
            ack_scratch: Vec::with_capacity(channel::MAX_HELD_FOR_ACK),
            agent_incarnations: (0..crate::runtime::MAX_BACKENDS)
                .map(|b| shared.agents.incarnation(b))
                .collect(),
            pr_pool: Vec::new(),
            warm: hashbrown::HashMap::new(),
            warm_count: vec![0; crate::runtime::MAX_BACKENDS],
            warm_backoff_until: vec![0; crate::runtime::MAX_BACKENDS],
            seg_scratch: vec![0; emit::MAX_SEGMENT],
            agent_load: vec![u32::MAX; crate::runtime::MAX_BACKENDS],
            standby: tcpstate::cluster::sync::StandbyTable::new(
                if shared.cluster.is_some() {
                    t.max_flows
                } else {
                    1
                },
                t.params.idle_timeout_ms,
            ),
            sync_refresh_ms: shared
                .cluster
                .as_ref()
                .and_then(|c| c.store.as_ref())
                .map_or(t.params.idle_timeout_ms, |s| {
                    t.params.idle_timeout_ms.min(u64::from(s.ttl_s) * 1000)
                })
                / 4,
            cluster_flows: match shared.cluster {
                Some(_) => vec![sync::ClusterFlow::default(); t.max_flows],
                None => Vec::new(),
            },
            store_pending: hashbrown::HashMap::new(),
            sync_seen_reachable: 0,
        }
    }

    pub fn live(&self) -> usize {
        self.flows.len()
    }

    /// Logs the connections still open when the worker stops (at most `limit`).
    pub fn log_open(&self, worker: usize, limit: usize) {
        let mut ids = Vec::new();
        self.flows.live_ids(&mut ids);
        for id in ids.iter().take(limit) {
            if let Some(c) = self.flows.get(*id) {
                tracing::debug!(worker, "open at stop: {}", c.summary());
            }
        }
    }
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The parsed addressing of a received TCP segment.
#[derive(Clone, Copy)]
struct Rx {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_mac: MacAddr,
    ip_total: usize,
    tcp_hdr: usize,
    seg: SegmentInfo,
    sport: u16,
    dport: u16,
}

impl Rx {
    /// The segment's flow key, seen from here (the sender is the remote end).
    fn key(&self) -> FlowKey {
        FlowKey {
            remote_ip: self.src,
            remote_port: self.sport,
            local_ip: self.dst,
            local_port: self.dport,
        }
    }
}

impl Worker {
    /// A TCP segment of a flow this core owns, received on port `p`.
    pub(in crate::worker) fn handle_owned_tcp(&mut self, p: usize, mut m: Mbuf, now_ms: u64) {
        self.stats().add(Counter::TcpSegmentsOwned, 1);
        let Some(mut rx) = parse_tcp(&m) else {
            self.stats().drop(DropReason::BadTcp, 1);
            return;
        };
        let local = self.shared.addrs[p].local(rx.dst);
        if local.is_none() && self.shared.addrs[p].agent_vips.contains(&rx.src) {
            // An agent's answer to a move's release (see `handoff`).
            if tcp_checksum_ok(&m, &rx) {
                let control = tcpstate::handoff::control::Control::find(
                    TcpPacket::new_unchecked(&m[ETH + IP..ETH + rx.ip_total]).options(),
                );
                self.agent_reply(&rx, control, now_ms);
            } else {
                self.stats().drop(DropReason::BadTcpChecksum, 1);
            }
            return;
        }
        // In a cluster, a segment a member handed over is answered toward the client.
        let cluster_vip = self.shared.cluster.is_some() && matches!(local, Some(Local::Vip(_)));
        let from_peer = match cluster_vip {
            true => match self.taken_from_peer(p, &mut rx, now_ms) {
                Ok(from) => from,
                Err(()) => return,
            },
            false => None,
        };
        let key = rx.key();
        let mut found = self.tcp.flows.lookup(&key);
        if found.is_none() && cluster_vip {
            // Not ours to hold: to the member that owns the connection, as it is.
            match self.hand_over(p, m, &rx, from_peer, now_ms) {
                Some(back) => m = back,
                None => return,
            }
        }
        // Read only on a miss: segments of known flows pay nothing here.
        let store = || {
            self.shared
                .cluster
                .as_ref()
                .is_some_and(|c| c.store.is_some())
        };
        if found.is_none() && (!self.tcp.standby.is_empty() || store()) {
            let store = store();
            // Spliced by another member: passed to it, or adopted if it is gone.
            // Not worth asking the store about: a SYN (it opens a connection), a RST (it ends
            // one), the ACK that completes a handshake this core answered (its cookie holds:
            // a new connection of ours, not one of another member's).
            let no_lookup = rx.seg.syn()
                || rx.seg.rst()
                || (store
                    && matches!(local, Some(Local::Vip(_)))
                    && self.completes_our_handshake(&rx, now_ms));
            match self.standby_segment(p, m, &rx, no_lookup, from_peer, now_ms) {
                sync::FromStandby::Unknown(back) => m = back,
                sync::FromStandby::Handled => return,
                sync::FromStandby::Adopted(back, id, side) => {
                    m = back;
                    found = Some((id, side));
                }
            }
        }
        if !self.check_segment(&m, &mut rx, found) {
            return;
        }
        let lingering =
            |t: &TcpCore, id: ConnId| t.flows.get(id).is_some_and(|c| c.state == State::Closed);
        match (found, local) {
            // A new SYN on the tuple of a connection that is closed and only lingering: the
            // client reused its port (as TIME_WAIT would allow, RFC 6191). Start afresh
            // instead of making it retransmit until the linger ends.
            (Some((id, Side::Client)), Some(Local::Vip(v)))
                if rx.seg.syn() && rx.seg.ack.is_none() && lingering(&self.tcp, id) =>
            {
                self.remove_conn(id);
                self.stats().add(Counter::TupleReused, 1);
                self.on_new_client_segment(p, v, key, m, &rx, now_ms);
            }
            (Some((id, side)), _) => self.on_flow_segment(id, side, p, m, &rx, now_ms),
            // Not a client's flow: a health probe's or a warm connection's (their tuples
            // are never in the flow table, so established flows pay no extra lookup).
            (None, _) if self.tcp.probes.contains_key(&key) => {
                let b = self.tcp.probes[&key];
                let payload = &m[ETH + IP + rx.tcp_hdr..ETH + rx.ip_total];
                self.health_segment(b, key, &rx.seg, payload, now_ms);
            }
            (None, _) if self.tcp.warm.contains_key(&key) => {
                self.warm_segment(key, &rx.seg, now_ms);
            }
            (None, _) => match local {
                Some(Local::Vip(v)) => self.on_new_client_segment(p, v, key, m, &rx, now_ms),
                Some(Local::Own) if self.cluster_joining(now_ms) && !rx.seg.rst() => {
                    // Perhaps a connection adopted from our previous run, whose record is
                    // on its way: no reset yet.
                    self.stats().drop(DropReason::ClusterJoining, 1);
                }
                _ => {
                    self.stats().drop(DropReason::TcpNoFlow, 1);
                    self.send_rst_for(p, &rx, m);
                }
            },
        }
    }

    /// A segment of connection `id` from `side`: presplice framing first, then
    /// `tcpstate::conn` decides, then what it emitted goes out and its verdict is applied.
    fn on_flow_segment(
        &mut self,
        id: ConnId,
        side: Side,
        _p: usize,
        m: Mbuf,
        rx: &Rx,
        now_ms: u64,
    ) {
        if side == Side::Client && self.is_handed_off(id) {
            self.forward_handed_off(id, m, rx, now_ms);
            return;
        }
        if side == Side::Client && self.tcp.meta[id as usize].reset_handoff {
            self.reset_again(id, rx, now_ms);
            return;
        }
        if side == Side::Client && !self.tcp.cluster_flows.is_empty() {
            // Adopted without its framing state: a next request the adopter cannot check
            // ends the connection here (the client retries it on a new one).
            let payload = &m[ETH + IP + rx.tcp_hdr..ETH + rx.ip_total];
            // Verified only for a next request the adopter must read (never per packet).
            let verified = || rx.seg.checked || tcp_checksum_ok(&m, rx);
            if !self.adopted_may_pass(id, &rx.seg, payload, verified) {
                self.stats().add(Counter::ClusterAdoptedEnded, 1);
                if let Some(c) = self.tcp.flows.get_mut(id) {
                    // The adopter may not have seen the client yet: its reset must land.
                    c.note_client_segment(&rx.seg);
                }
                self.kill_conn(id, now_ms);
                return;
            }
        }
        let mut m = m;
        let mut rx = *rx;
        // An unverified segment is one presplice framing passes whatever it holds.
        if rx.seg.checked && self.tcp.per_request[id as usize].is_some() {
            let payload = &m[ETH + IP + rx.tcp_hdr..ETH + rx.ip_total];
            match self.presplice_segment(id, side == Side::Backend, &rx.seg, payload, now_ms) {
                presplice::Go::Pass => {}
                presplice::Go::Drop => return,
                presplice::Go::Trim(keep) => rx = trim_payload(&mut m, &rx, keep),
            }
        }
        // A fresh list on the stack: writing its few empty slots costs less than moving a
        // kept one (four segment-sized slots) out of `self` and back per packet.
        let mut out = Outputs::default();
        let verdict = {
            let Some(conn) = self.tcp.flows.get_mut(id) else {
                return;
            };
            let payload = &m[ETH + IP + rx.tcp_hdr..ETH + rx.ip_total];
            match side {
                Side::Client => conn.on_client(&rx.seg, payload, now_ms, &mut out),
                Side::Backend => conn.on_backend(&rx.seg, now_ms, &mut out),
            }
        };
        if side == Side::Client
            && self.tcp.per_request[id as usize].is_some()
            && out.iter().any(|e| e == Emit::Forward)
        {
            let payload = &m[ETH + IP + rx.tcp_hdr..ETH + rx.ip_total];
            self.presplice_commit(id, &rx.seg, payload, now_ms);
        }
        let mut m = Some(m);
        for e in out.iter() {
            match e {
                Emit::Forward => {
                    if let Some(m) = m.take() {
                        self.forward(id, side, m, &rx);
                    }
                }
                Emit::ToClient(s) => self.send_to_client(id, &s, now_ms),
                Emit::ToBackend(s) => self.send_to_backend(id, &s),
            }
        }
        drop(m);
        if side == Side::Backend {
            self.record_latency(id, rx.seg.payload_len);
        }
        self.sync_if_due(id, now_ms);
        self.apply_verdict(id, verdict, now_ms);
        if self.tcp.per_request[id as usize].is_some() {
            self.presplice_late_round(id, now_ms);
        }
        if self.tcp.meta[id as usize].route_pending {
            // A presplice round began with its whole head already held (pipelined).
            self.tcp.meta[id as usize].route_pending = false;
            if self.tcp.flows.get(id).is_some_and(|c| c.has_whole_head()) {
                self.apply_verdict(id, Verdict::HeadComplete, now_ms);
            }
        }
    }

    /// Connection setup and time to first byte, on the backend's segments.
    fn record_latency(&mut self, id: ConnId, payload_len: usize) {
        // Cheap on the common path: two flags read, no clock read once both are recorded.
        let m = &self.tcp.meta[id as usize];
        let (accept_us, routed_us) = (m.accept_us, m.routed_us);
        let want_setup = m.setup_us == u64::MAX;
        let want_ttfb = payload_len > 0 && !m.ttfb_done && routed_us != 0;
        if !want_setup && !want_ttfb {
            return;
        }
        let spliced = self
            .tcp
            .flows
            .get(id)
            .is_some_and(|c| c.state == State::Spliced);
        let now = self.now_us();
        if want_setup && spliced {
            let d = now.saturating_sub(accept_us);
            self.tcp.meta[id as usize].setup_us = d;
            self.stats().setup_us.record(d);
        }
        if want_ttfb {
            let d = now.saturating_sub(routed_us);
            self.tcp.meta[id as usize].ttfb_done = true;
            self.stats().ttfb_us.record(d);
        }
    }

    /// Carries out what `tcpstate::conn` decided about connection `id`.
    #[inline]
    fn apply_verdict(&mut self, id: ConnId, verdict: Verdict, now_ms: u64) {
        // Nearly every segment: nothing to do, decided without a call.
        if matches!(verdict, Verdict::Continue) && self.splice_settled(id) {
            return;
        }
        self.apply_verdict_fully(id, verdict, now_ms);
    }

    /// Whether connection `id` is an established splice with nothing to take back: no
    /// head or rewrite buffer, not closed, nothing buffered to frame.
    #[inline]
    fn splice_settled(&self, id: ConnId) -> bool {
        self.tcp.flows.get(id).is_some_and(|c| {
            matches!(c.state, State::Spliced | State::HandedOff)
                && c.head.is_none()
                && !c.has_rewrite()
        })
    }

    fn apply_verdict_fully(&mut self, id: ConnId, verdict: Verdict, now_ms: u64) {
        match verdict {
            Verdict::Continue => {}
            Verdict::Drop(ConnDrop::OutOfWindow) => self.stats().drop(DropReason::OutOfWindow, 1),
            Verdict::Drop(ConnDrop::HeadOverflow) => self.stats().drop(DropReason::HeadOverflow, 1),
            Verdict::Drop(ConnDrop::Unexpected) => self.stats().drop(DropReason::TcpUnexpected, 1),
            Verdict::Drop(ConnDrop::HeadRetransmit) => {
                self.stats().drop(DropReason::HeadRetransmit, 1)
            }
            Verdict::Challenged { why, sent } => {
                // RFC 5961: refused, and answered by a (rate-limited) challenge ACK.
                self.stats().drop(
                    match why {
                        Challenge::RstNotExact => DropReason::RstNotExact,
                        Challenge::SynOnEstablished => DropReason::SynOnEstablished,
                        Challenge::AckOfUnsent => DropReason::AckOfUnsent,
                    },
                    1,
                );
                let counter = if sent {
                    Counter::ChallengeAcksSent
                } else {
                    Counter::ChallengeAcksLimited
                };
                self.stats().add(counter, 1);
            }
            Verdict::HeadComplete => self.route_head(id, now_ms),
            Verdict::HeadTimeout => {
                self.stats().add(Counter::HeadTimeouts, 1);
                self.respond(id, 408, now_ms);
            }
            Verdict::HeadTooLarge => self.respond(id, 431, now_ms),
            Verdict::NeedBackend { attempts } => {
                self.stats().add(Counter::BackendConnectFailures, 1);
                self.count_passive_failure(id);
                self.release_backend(id);
                if attempts > self.retries_of(id) {
                    self.respond(id, 503, now_ms);
                } else {
                    self.stats().add(Counter::Retries, 1);
                    self.connect_backend(id, None, now_ms);
                }
            }
            Verdict::BackendFailed { retry } => {
                // Reset or closed before any response byte: abandon that backend
                // connection (a RST, in case it only closed) and count it against it.
                self.count_passive_failure(id);
                let mut out = Outputs::default();
                let attempts = match self.tcp.flows.get_mut(id) {
                    Some(c) => {
                        c.abort_backend(&mut out);
                        c.attempts
                    }
                    None => return,
                };
                for e in out.iter() {
                    if let Emit::ToBackend(s) = e {
                        self.send_to_backend(id, &s);
                    }
                }
                self.release_backend(id);
                if retry && attempts <= self.retries_of(id) {
                    self.stats().add(Counter::Retries, 1);
                    if let Some(c) = self.tcp.flows.get_mut(id) {
                        c.prepare_retry();
                    }
                    self.connect_backend(id, None, now_ms);
                } else {
                    // A request that cannot be replayed safely: the client learns it failed.
                    self.respond(id, 502, now_ms);
                }
            }
            Verdict::QueueTimeout => {
                let slot = self.tcp.meta[id as usize].queue_slot as usize;
                self.dequeue(id);
                self.stats().add(Counter::QueueTimeouts, 1);
                crate::stats::bump(&self.stats().pool_queue_timeouts[slot], 1);
                self.respond(id, 503, now_ms);
            }
            Verdict::Remove => self.remove_conn(id),
            Verdict::HandoffResend => self.resend_handoff_head(id, now_ms),
        }
        // The common case, every segment of an established splice: nothing below applies.
        if self.splice_settled(id) {
            return;
        }
        if self.tcp.per_request[id as usize].is_some() {
            self.presplice_sync(id, now_ms);
        }
        let mut closed_backend = None;
        let mut closed = false;
        if let Some(conn) = self.tcp.flows.get_mut(id) {
            if let Some(h) = conn.take_head_if_done() {
                self.tcp.heads.push(h);
            }
            if let Some(b) = conn.take_rewrite_if_done() {
                self.tcp.rewrite_bufs.push(b);
            }
            if conn.state == State::Closed {
                closed = true;
                closed_backend = conn.backend.map(|t| t.id);
            }
        }
        if let Some(b) = closed_backend {
            // Closed: the backend slot is free now, not after the linger.
            self.release_held(id, b);
        }
        if closed {
            // Only lingering now: its slot and tuples may be recycled when needed; and
            // out of any queue (a killed queued connection must not connect later).
            self.mark_closed(id);
            self.dequeue(id);
        }
    }

    /// Marks connection `id` lingering, and no longer open for its client's cap.
    fn mark_closed(&mut self, id: ConnId) {
        if self.tcp.flows.is_lingering(id) {
            return;
        }
        if let Some(c) = self.tcp.flows.get(id) {
            self.shared.client_conns.close(c.client.remote_ip);
        }
        self.sync_closed(id);
        self.tcp.flows.mark_lingering(id);
    }

    /// Forgets connection `id`: out of queues and the flow table, its slot, buffers and
    /// framing state given back, its access log line queued.
    fn remove_conn(&mut self, id: ConnId) {
        self.sync_forget(id);
        self.dequeue(id);
        self.release_per_request(id);
        self.release_watch(id);
        let Some(conn) = self.tcp.flows.get(id) else {
            return;
        };
        let mut keys = [conn.client, conn.client];
        let mut n = 1;
        if let Some(t) = conn.backend {
            if t.key.local_port != 0 {
                keys[1] = t.key;
                n = 2;
            }
            self.release_held(id, t.id);
        }
        if self
            .shared
            .access_log
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.log_access(id);
        }
        let lingering = self.tcp.flows.is_lingering(id);
        if let Some(mut conn) = self.tcp.flows.remove(id, &keys[..n]) {
            if !lingering {
                self.shared.client_conns.close(conn.client.remote_ip);
            }
            if let Some(h) = conn.head.take() {
                self.tcp.heads.push(h);
            }
            if let Some(b) = conn.take_rewrite() {
                self.tcp.rewrite_bufs.push(b);
            }
            self.stats().add(Counter::ConnsClosed, 1);
        }
    }

    /// Ends connection `id` at once: RSTs to both sides (`Conn::kill`), then its verdict.
    fn kill_conn(&mut self, id: ConnId, now_ms: u64) {
        if self.is_handed_off(id) {
            self.kill_handed_off(id, now_ms);
            return;
        }
        let mut out = Outputs::default();
        let verdict = self.tcp.flows.get_mut(id).map(|c| c.kill(now_ms, &mut out));
        for e in out.iter() {
            match e {
                Emit::ToClient(s) => self.send_to_client(id, &s, now_ms),
                Emit::ToBackend(s) => self.send_to_backend(id, &s),
                Emit::Forward => {}
            }
        }
        if let Some(v) = verdict {
            self.apply_verdict(id, v, now_ms);
        }
    }

    /// Queues the connection's access log line for the main thread (never blocks: a
    /// full queue drops the line and counts it).
    fn log_access(&mut self, id: ConnId) {
        let Some(c) = self.tcp.flows.get(id) else {
            return;
        };
        let meta = &self.tcp.meta[id as usize];
        let line = &self.tcp.request_lines[id as usize];
        let rt = &self.tcp.rt;
        let rec = AccessRecord {
            client: (c.client.remote_ip, c.client.remote_port),
            vip: (c.client.local_ip, c.client.local_port),
            method: String::from_utf8_lossy(line.method()).into_owned(),
            path: String::from_utf8_lossy(line.path()).into_owned(),
            rule: meta
                .rule
                .and_then(|r| rt.config.rules.get(r as usize))
                .map(|r| r.name.clone().unwrap_or_default()),
            pool: meta
                .pool
                .and_then(|p| rt.config.pools.get(p as usize))
                .map(|p| p.name.clone()),
            backend: c
                .backend
                .filter(|t| t.key.local_port != 0)
                .and_then(|t| rt.config.backends.get(t.id))
                .map(|b| b.name.clone()),
            status: meta.status,
            bytes_c2b: c.bytes_c2b,
            bytes_b2c: c.bytes_b2c,
            setup_us: (meta.setup_us != u64::MAX).then_some(meta.setup_us),
            duration_us: self.now_us().saturating_sub(meta.accept_us),
            core: self.index,
        };
        if self.shared.access[self.index].push(rec).is_err() {
            self.stats().add(Counter::AccessLogDropped, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use tcpstate::presplice::PerRequest;
    use tcpstate::reasm::HeadBuffer;
    use tcpstate::segment::Sender;
    use tcpstate::splice::Translation;

    use super::*;

    /// What each flow entry costs at the default `max_flows_per_core` (65,536), as
    /// docs/architecture.md ("Bytes per flow entry") reports it: printed, and held under
    /// the reported figures so that the page stays true.
    #[test]
    fn bytes_per_flow_entry() {
        const FLOWS: usize = 65_536;
        let b = ConnTable::new(FLOWS, 0).bytes();
        let per = |bytes: usize| bytes.div_ceil(FLOWS);
        let rows = [
            // (part, bytes per entry rounded up, the figure the page reports)
            ("Conn (flow table slot)", per(b.flows.slots), 640),
            ("key map (2 keys)", per(b.flows.keys), 85),
            ("timer wheel entry", per(b.timers), 17),
            ("timer/count tracking", per(b.tracking), 11),
            ("flow table bookkeeping", per(b.flows.bookkeeping), 25),
            ("Meta (TcpCore.meta)", size_of::<Meta>(), 128),
            (
                "request line (request_lines)",
                size_of::<RequestLine>(),
                130,
            ),
            ("TcpCore.pool_of", size_of::<usize>(), 8),
            (
                "TcpCore.per_request",
                size_of::<Option<Box<PerRequest>>>(),
                8,
            ),
            (
                "TcpCore.watches",
                size_of::<Option<Box<tcpstate::handoff::watch::RequestWatch>>>(),
                8,
            ),
        ];
        let mut total = 0;
        for (part, bytes, bound) in rows {
            println!("{part:<26} {bytes:>4} B");
            assert!(bytes <= bound, "{part}: {bytes} B, the page says {bound}");
            total += bytes;
        }
        println!("{:<26} {total:>4} B", "total");
        // The parts of Conn that a split into hot and cold would move.
        for (part, bytes) in [
            ("  Conn: Translation (x2)", size_of::<Translation>()),
            ("  Conn: Sender (x2)", size_of::<Sender>()),
            ("  Conn: ConnParams", size_of::<ConnParams>()),
            (
                "  Conn: Option<HeadBuffer>",
                size_of::<Option<HeadBuffer>>(),
            ),
            ("  Conn: Response", size_of::<tcpstate::conn::Response>()),
        ] {
            println!("{part:<26} {bytes:>4} B");
        }
        assert!(total <= 1_060, "{total} B per flow entry");
    }
}
