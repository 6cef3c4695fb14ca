//! The TCP side of a worker: stateless SYN-ACKs with cookies, the per-core flow table,
//! and the glue between `tcpstate::conn` (which decides) and the packet buffers (which
//! this module builds, or translates in place and sends on).
use std::net::Ipv4Addr;

use dpdk_env::Mbuf;
use rules::http;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rules::config::ClientAddress;
use rules::Action;
use tcpstate::conn::{
    BackendTarget, Challenge, Conn, ConnDrop, ConnParams, Data, Emit, Outputs, Response,
    SegmentInfo, SegmentOut, State, Verdict,
};
use tcpstate::flow::{ConnId, FlowKey, FlowTable, Side};
use tcpstate::reasm::HeadBuffer;
use tcpstate::steer;
use tcpstate::syncookie::{SynCookies, SynOptions};
use tcpstate::wire::{
    ethertype, ip_proto, tcp_flags, EthernetFrame, Ipv4Packet, Ipv4Repr, MacAddr, SeqNumber,
    TcpPacket, TcpRepr,
};

use super::Worker;

mod presplice;
mod warm;
use crate::addrs::Local;
use crate::runtime::{Admin, BackendRoute, Runtime};
use crate::stats::{Counter, DropReason};
use tcpstate::presplice::{Buffered, PerRequest};

const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
const IP: usize = 20;
/// Ephemeral ports the switch uses toward backends.
const LOCAL_PORTS: std::ops::RangeInclusive<u16> = 10000..=65535;
/// Timer sweep period.
const SWEEP_MS: u64 = 10;

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
    setup_us: Option<u64>,
    ttfb_done: bool,
    /// For the access log: what was asked and where it went.
    method: [u8; 8],
    method_len: u8,
    path: [u8; 120],
    path_len: u8,
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
    /// Accepted on a presplice VIP: every request is routed.
    per_request_vip: bool,
    /// A presplice round started with a whole head already held: route it once the
    /// segment that started the round has been processed.
    route_pending: bool,
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
            setup_us: None,
            ttfb_done: false,
            method: [0; 8],
            method_len: 0,
            path: [0; 120],
            path_len: 0,
            rule: None,
            pool: None,
            status: None,
            tried: [0; 4],
            queue_ticket: 0,
            queue_slot: 0,
            backend_held: false,
            per_request_vip: false,
            route_pending: false,
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
    flows: FlowTable<Conn>,
    meta: Vec<Meta>,
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
    scratch_ids: Vec<ConnId>,
    out: Outputs,
    /// Buffers for rewritten heads (X-Forwarded-For, PROXY), reused.
    rewrite_bufs: Vec<Vec<u8>>,
    /// Per pool slot: the requests this core has queued, oldest first (ticket, id).
    queues: Vec<VecDeque<(u64, ConnId)>>,
    /// Requests in `queues`.
    queued_local: usize,
    /// Framing state of presplice connections, by connection id, and spares.
    per_request: Vec<Option<Box<PerRequest>>>,
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
}

impl TcpCore {
    pub fn new(shared: &super::Shared, index: usize) -> TcpCore {
        let t = &shared.tcp;
        let mut rng = t.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(8) {
            chunk.copy_from_slice(&splitmix(&mut rng).to_le_bytes());
        }
        TcpCore {
            flows: FlowTable::new(t.max_flows),
            meta: vec![Meta::default(); t.max_flows],
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
            next_local_port: *LOCAL_PORTS.start(),
            next_sweep_ms: 0,
            rng,
            scratch_ids: Vec::with_capacity(t.max_flows),
            out: Outputs::default(),
            rewrite_bufs: Vec::new(),
            queues: (0..crate::runtime::MAX_POOLS)
                .map(|_| VecDeque::new())
                .collect(),
            queued_local: 0,
            per_request: (0..t.max_flows).map(|_| None).collect(),
            pr_pool: Vec::new(),
            warm: hashbrown::HashMap::new(),
            warm_count: vec![0; crate::runtime::MAX_BACKENDS],
            warm_backoff_until: vec![0; crate::runtime::MAX_BACKENDS],
            seg_scratch: vec![0; MAX_SEGMENT],
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

impl Worker {
    /// A TCP segment of a flow this core owns, received on port `p`.
    pub(super) fn handle_owned_tcp(&mut self, p: usize, m: Mbuf, now_ms: u64) {
        self.stats().add(Counter::TcpSegmentsOwned, 1);
        let Some(rx) = parse_tcp(&m) else {
            self.stats().drop(DropReason::BadTcp, 1);
            return;
        };
        let local = self.shared.addrs[p].local(rx.dst);
        let key = FlowKey {
            remote_ip: rx.src,
            remote_port: rx.sport,
            local_ip: rx.dst,
            local_port: rx.dport,
        };
        let lingering =
            |t: &TcpCore, id: ConnId| t.flows.get(id).is_some_and(|c| c.state == State::Closed);
        match (self.tcp.flows.lookup(&key), local) {
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
                _ => {
                    self.stats().drop(DropReason::TcpNoFlow, 1);
                    self.send_rst_for(p, &rx, m);
                }
            },
        }
    }

    fn on_new_client_segment(
        &mut self,
        p: usize,
        vip: usize,
        key: FlowKey,
        m: Mbuf,
        rx: &Rx,
        now_ms: u64,
    ) {
        let seg = rx.seg;
        if seg.rst() {
            self.stats().drop(DropReason::TcpNoFlow, 1);
            return;
        }
        let served = self.shared.addrs[p].vips[vip].1.contains(&rx.dport);
        if !served {
            self.stats().drop(DropReason::TcpClosedPort, 1);
            self.send_rst_for(p, rx, m);
            return;
        }
        if seg.syn() && seg.ack.is_none() {
            self.send_syn_ack(p, key, rx, m, now_ms);
            return;
        }
        let Some(ack) = seg.ack else {
            self.stats().drop(DropReason::TcpNoFlow, 1);
            return;
        };
        if seg.syn() {
            self.stats().drop(DropReason::TcpNoFlow, 1);
            self.send_rst_for(p, rx, m);
            return;
        }
        let opts = match self.tcp.cookies.check(
            rx.src,
            rx.sport,
            rx.dst,
            rx.dport,
            seg.seq,
            ack,
            seg.timestamps.map(|t| t.1),
            now_ms,
        ) {
            Ok(o) => o,
            Err(_) => {
                self.stats().drop(DropReason::BadCookie, 1);
                self.send_rst_for(p, rx, m);
                return;
            }
        };
        // A full table recycles the entry that has lingered longest (closed, kept only
        // for late segments), as TIME_WAIT is recycled; only a table full of open
        // connections refuses. Checked before a head buffer is taken.
        if self.tcp.flows.is_full() && !self.recycle_lingering() {
            self.stats().drop(DropReason::FlowTableFull, 1);
            self.send_rst_for(p, rx, m);
            return;
        }
        let Some(head) = self.take_head_buffer() else {
            self.stats().drop(DropReason::HeadBuffersExhausted, 1);
            self.send_rst_for(p, rx, m);
            return;
        };
        let conn = Conn::accept(key, opts, seg.seq, ack, &seg, head, self.tcp.params, now_ms);
        let id = match self.tcp.flows.try_insert(key, conn) {
            Ok(id) => id,
            Err((_, mut conn)) => {
                // The head buffer goes back to the pool: dropped, it would be lost to the
                // pool for good (`heads_allocated` never goes down).
                if let Some(h) = conn.head.take() {
                    self.tcp.heads.push(h);
                }
                self.stats().drop(DropReason::FlowTableFull, 1);
                self.send_rst_for(p, rx, m);
                return;
            }
        };
        self.tcp.meta[id as usize] = Meta {
            client_mac: rx.src_mac,
            client_port: p,
            accept_us: self.now_us(),
            per_request_vip: self.shared.addrs[p]
                .per_request
                .get(vip)
                .copied()
                .unwrap_or(false),
            ..Meta::default()
        };
        self.stats().add(Counter::ConnsAccepted, 1);
        tracing::trace!(worker = self.index, client = %rx.src, port = rx.sport, seq = seg.seq.0, len = seg.payload_len, flags = seg.flags, "accepted by cookie");
        self.on_flow_segment(id, Side::Client, p, m, rx, now_ms);
    }

    fn on_flow_segment(
        &mut self,
        id: ConnId,
        side: Side,
        _p: usize,
        m: Mbuf,
        rx: &Rx,
        now_ms: u64,
    ) {
        let mut m = m;
        let mut rx = *rx;
        if self.tcp.per_request[id as usize].is_some() {
            let payload = &m[ETH + IP + rx.tcp_hdr..ETH + rx.ip_total];
            match self.presplice_segment(id, side == Side::Backend, &rx.seg, payload, now_ms) {
                presplice::Go::Pass => {}
                presplice::Go::Drop => return,
                presplice::Go::Trim(keep) => rx = trim_payload(&mut m, &rx, keep),
            }
        }
        let mut out = std::mem::take(&mut self.tcp.out);
        out.clear();
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
        self.tcp.out = out;
        drop(m);
        if side == Side::Backend {
            self.record_latency(id, rx.seg.payload_len);
        }
        self.apply_verdict(id, verdict, now_ms);
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
        let want_setup = m.setup_us.is_none();
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
            self.tcp.meta[id as usize].setup_us = Some(d);
            self.stats().setup_us.record(d);
        }
        if want_ttfb {
            let d = now.saturating_sub(routed_us);
            self.tcp.meta[id as usize].ttfb_done = true;
            self.stats().ttfb_us.record(d);
        }
    }

    fn apply_verdict(&mut self, id: ConnId, verdict: Verdict, now_ms: u64) {
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
            self.tcp.flows.mark_lingering(id);
            self.dequeue(id);
        }
    }

    /// Removes the connection that has lingered longest, for a new one; false if none.
    fn recycle_lingering(&mut self) -> bool {
        let Some(old) = self.tcp.flows.oldest_lingering() else {
            return false;
        };
        self.remove_conn(old);
        self.stats().add(Counter::LingerRecycled, 1);
        true
    }

    /// Passive health: a failed connect or a reset before any response counts against
    /// the backend; worker 0 folds these into its checks.
    fn count_passive_failure(&mut self, id: ConnId) {
        let failed = self
            .tcp
            .flows
            .get(id)
            .and_then(|c| c.backend)
            .filter(|t| t.key.local_port != 0);
        if let Some(t) = failed {
            if let Some(cell) = self.shared.passive_fails.get(t.id) {
                cell.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// How many other backends a failed request may try (its pool's `retries`).
    fn retries_of(&self, id: ConnId) -> u32 {
        let pool = self.tcp.pool_of[id as usize];
        let default = self.tcp.params.connect_attempts.saturating_sub(1);
        self.tcp
            .rt
            .config
            .pools
            .get(pool)
            .and_then(|p| p.retries)
            .unwrap_or(default)
    }

    fn route_head(&mut self, id: ConnId, now_ms: u64) {
        /// What the head asks for.
        enum Decision {
            Error(u16),
            Answer(Response),
            Pool(usize),
        }
        /// What the pool wants done to the head (see `rules::forward`).
        enum Rewrite {
            None,
            Xff(rules::forward::XffRewrite),
            Proxy,
            /// Only the request target (the VIP's `forward_normalized_path`).
            Target,
        }
        let rt = Arc::clone(&self.tcp.rt);
        let mut buf = self.tcp.rewrite_bufs.pop().unwrap_or_default();
        self.tcp.meta[id as usize].route_pending = false;
        let mut pr = self.tcp.meta[id as usize].per_request_vip.then(|| {
            self.tcp.per_request[id as usize]
                .take()
                .or_else(|| self.tcp.pr_pool.pop())
                .unwrap_or_else(PerRequest::new)
        });
        // Presplice: how the buffered bytes divide between this request and the next.
        let mut framed: Option<Result<Buffered, _>> = None;
        let mut rewrite = Rewrite::None;
        let mut replaces = 0;
        let mut retry_ok = false;
        let stats = &self.shared.stats[self.index];
        let decision = {
            let TcpCore { flows, meta, .. } = &mut self.tcp;
            let Some(conn) = flows.get(id) else {
                return;
            };
            let bytes = conn.head_bytes();
            let end = http::head_end(bytes).unwrap_or(bytes.len());
            match http::parse_request(&bytes[..end]) {
                Err(e) => Decision::Error(e.status()),
                Ok(req) => {
                    let meta = &mut meta[id as usize];
                    let m = req.method.as_bytes();
                    let n = m.len().min(meta.method.len());
                    meta.method[..n].copy_from_slice(&m[..n]);
                    meta.method_len = n as u8;
                    let pth = req.path.as_bytes();
                    let n = pth.len().min(meta.path.len());
                    meta.path[..n].copy_from_slice(&pth[..n]);
                    meta.path_len = n as u8;
                    meta.routed_us = 0;
                    let (rule, action) = rt.router.decide(&req);
                    meta.rule = rule.map(|r| r as u16);
                    if let Some(r) = rule {
                        crate::stats::bump(&stats.rule_hits[rt.rule_slot[r]], 1);
                    }
                    match action {
                        Action::Pool(p) => {
                            let p = *p;
                            meta.pool = Some(p as u16);
                            // RFC 9110 9.2.2: these may be sent again without harm.
                            retry_ok = matches!(
                                req.method,
                                "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
                            );
                            if let (Some(pr), Some(h)) = (pr.as_mut(), conn.head.as_ref()) {
                                framed =
                                    Some(pr.start(&req, bytes, h.base(), conn.response_base()));
                            }
                            let client = (conn.client.remote_ip, conn.client.remote_port);
                            let vip = (conn.client.local_ip, conn.client.local_port);
                            let pool = &rt.config.pools[p];
                            match pool.client_address {
                                ClientAddress::None => {}
                                ClientAddress::XForwardedFor => {
                                    let r = rules::forward::rewrite_xff(
                                        &bytes[..end],
                                        client.0,
                                        pool.client_xff,
                                        &mut buf,
                                    );
                                    rewrite = Rewrite::Xff(r);
                                    replaces = end;
                                }
                                ClientAddress::ProxyV1 => {
                                    rules::forward::proxy_v1(client, vip, &mut buf);
                                    rewrite = Rewrite::Proxy;
                                }
                                ClientAddress::ProxyV2 => {
                                    rules::forward::proxy_v2(client, vip, &mut buf);
                                    rewrite = Rewrite::Proxy;
                                }
                            }
                            if rt.config.forwards_normalized_path(vip.0)
                                && rules::forward::forward_normalized_path(
                                    &bytes[..end],
                                    &mut buf,
                                    &mut replaces,
                                )
                                && matches!(rewrite, Rewrite::None)
                            {
                                rewrite = Rewrite::Target;
                            }
                            Decision::Pool(p)
                        }
                        Action::Respond(b) => Decision::Answer(Response::Shared(Arc::clone(b))),
                        Action::Redirect(r) => {
                            Decision::Answer(Response::Shared(r.response(&req).into()))
                        }
                        Action::Error(status) => Decision::Error(*status),
                    }
                }
            }
        };
        let mut decision = decision;
        if let Some(pr) = pr {
            // Kept while the connection lives (its buffers too); answered requests end
            // the connection, so nothing of it is needed there.
            self.tcp.per_request[id as usize] = Some(pr);
            match framed {
                Some(Ok(Buffered::One)) | None => {}
                Some(Ok(Buffered::More { len })) => {
                    // Pipelined: only this request goes to its backend; the rest waits.
                    if !self.split_head(id, len) {
                        self.stats()
                            .drop(crate::stats::DropReason::HeadBuffersExhausted, 1);
                        decision = Decision::Error(503);
                    }
                }
                // A body the switch cannot frame (e.g. a malformed chunk already
                // buffered): refused before any backend sees it.
                Some(Err(_)) => decision = Decision::Error(400),
            }
        }
        match decision {
            Decision::Error(status) => {
                self.tcp.rewrite_bufs.push(buf);
                self.respond(id, status, now_ms);
            }
            Decision::Answer(response) => {
                self.tcp.rewrite_bufs.push(buf);
                self.stats().add(Counter::RuleAnswers, 1);
                let status = response_status(response.bytes());
                self.respond_with(id, status, response, now_ms);
            }
            Decision::Pool(pool) => {
                match rewrite {
                    Rewrite::None => self.tcp.rewrite_bufs.push(buf),
                    Rewrite::Xff(r) => {
                        self.stats().add(Counter::XffInserted, 1);
                        self.stats().add(Counter::XffRemoved, u64::from(r.removed));
                        if let Some(c) = self.tcp.flows.get_mut(id) {
                            c.set_head_rewrite(buf, replaces);
                        }
                    }
                    Rewrite::Proxy => {
                        self.stats().add(Counter::ProxyHeadersSent, 1);
                        if let Some(c) = self.tcp.flows.get_mut(id) {
                            c.set_head_rewrite(buf, replaces);
                        }
                    }
                    Rewrite::Target => {
                        if let Some(c) = self.tcp.flows.get_mut(id) {
                            c.set_head_rewrite(buf, replaces);
                        }
                    }
                }
                if let Some(c) = self.tcp.flows.get_mut(id) {
                    c.set_retryable(retry_ok);
                }
                self.stats().add(Counter::RequestsRouted, 1);
                crate::stats::bump(&self.stats().pool_requests[rt.pool_slot[pool]], 1);
                self.tcp.meta[id as usize].routed_us = self.now_us();
                self.connect_backend(id, Some(pool), now_ms);
            }
        }
    }

    /// Whether backend `b` has all the connections its `max_connections` allows.
    fn at_limit(&self, b: usize) -> bool {
        self.tcp.rt.config.backends[b]
            .max_connections
            .is_some_and(|m| self.shared.backend_conns[b].load(Ordering::Relaxed) >= m)
    }

    /// Takes one of `b`'s connection slots (over all cores); false when it is full.
    fn take_slot(&self, b: usize) -> bool {
        let limit = self.tcp.rt.config.backends[b].max_connections;
        let cell = &self.shared.backend_conns[b];
        cell.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
            (limit.is_none_or(|m| n < m)).then_some(n + 1)
        })
        .is_ok()
    }

    /// The connection's backend side is over: give back its slot and scheduler count.
    fn release_held(&mut self, id: ConnId, b: usize) {
        if std::mem::take(&mut self.tcp.meta[id as usize].backend_held) {
            self.tcp.pools.connection_closed(b);
            self.release_slot(b);
        }
    }

    fn release_slot(&self, b: usize) {
        let _ =
            self.shared.backend_conns[b].fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// Picks an available backend of `pool` for `id`: not at its limit, and not tried
    /// before by this request unless every other one is out.
    fn pick_backend(&mut self, id: ConnId, pool: usize) -> Option<usize> {
        let n = self.tcp.pools.members(pool).len();
        let meta = self.tcp.meta[id as usize];
        let mut any_tried = false;
        for k in 0..n {
            let b = self.tcp.pools.members(pool)[k];
            let tried = meta.tried(b);
            any_tried |= tried;
            let blocked = tried || self.at_limit(b);
            self.tcp.pools.set_blocked(b, blocked);
        }
        let r = splitmix(&mut self.tcp.rng);
        let TcpCore { flows, pools, .. } = &mut self.tcp;
        let head = flows.get(id).map(|c| c.head_bytes()).unwrap_or(&[]);
        let mut picked = pools.pick(pool, request_path(head), r);
        if picked.is_none() && any_tried {
            // Every untried one is out: a tried one (still up) is better than nothing.
            for k in 0..n {
                let b = pools.members(pool)[k];
                if meta.tried(b) {
                    pools.set_blocked(b, false);
                }
            }
            picked = pools.pick(pool, request_path(head), r);
        }
        for k in 0..n {
            let b = pools.members(pool)[k];
            pools.set_blocked(b, false);
        }
        picked
    }

    /// Whether some member of `pool` is usable but at its connection limit (so waiting
    /// in the queue can help).
    fn pool_is_full(&self, pool: usize) -> bool {
        self.tcp
            .pools
            .members(pool)
            .iter()
            .any(|&b| self.tcp.pools.is_usable(b) && self.at_limit(b))
    }

    /// Puts `id` in `pool`'s queue (503 when the queue is full).
    fn enqueue(&mut self, id: ConnId, pool: usize, now_ms: u64) {
        let rt = Arc::clone(&self.tcp.rt);
        let slot = rt.pool_slot[pool];
        let cfg = &rt.config.pools[pool];
        let len = self.shared.queue_len[slot].fetch_add(1, Ordering::AcqRel);
        if len >= cfg.queue_length {
            self.shared.queue_len[slot].fetch_sub(1, Ordering::AcqRel);
            self.stats().add(Counter::QueueFull, 1);
            self.respond(id, 503, now_ms);
            return;
        }
        let ticket = self.shared.queue_ticket.fetch_add(1, Ordering::AcqRel) + 1;
        let meta = &mut self.tcp.meta[id as usize];
        meta.queue_ticket = ticket;
        meta.queue_slot = slot as u16;
        let q = &mut self.tcp.queues[slot];
        q.push_back((ticket, id));
        if q.len() == 1 {
            self.shared.queue_head[self.index][slot].store(ticket, Ordering::Release);
        }
        self.tcp.queued_local += 1;
        self.stats().add(Counter::RequestsQueued, 1);
        if let Some(c) = self.tcp.flows.get_mut(id) {
            c.enqueue(cfg.queue_timeout_ms, now_ms);
        }
    }

    /// Takes `id` out of its queue, if it is in one.
    fn dequeue(&mut self, id: ConnId) {
        let meta = &mut self.tcp.meta[id as usize];
        let ticket = std::mem::take(&mut meta.queue_ticket);
        if ticket == 0 {
            return;
        }
        let slot = meta.queue_slot as usize;
        let q = &mut self.tcp.queues[slot];
        if let Some(pos) = q.iter().position(|&(t, _)| t == ticket) {
            q.remove(pos);
            self.tcp.queued_local -= 1;
            let _ = self.shared.queue_len[slot].fetch_update(
                Ordering::AcqRel,
                Ordering::Relaxed,
                |n| Some(n.saturating_sub(1)),
            );
        }
        let head = q.front().map_or(u64::MAX, |&(t, _)| t);
        self.shared.queue_head[self.index][slot].store(head, Ordering::Release);
    }

    /// Serves queued requests whose turn it is (the oldest over all cores) while their
    /// pool has a free slot.
    fn serve_queues(&mut self, now_ms: u64) {
        if self.tcp.queued_local == 0 {
            return;
        }
        let cores = self.shared.stats.len();
        for slot in 0..self.tcp.queues.len() {
            while let Some(&(ticket, id)) = self.tcp.queues[slot].front() {
                let oldest = (0..cores).all(|c| {
                    c == self.index
                        || self.shared.queue_head[c][slot].load(Ordering::Acquire) >= ticket
                });
                if !oldest {
                    break;
                }
                let Some(pool) = self.tcp.rt.pool_by_slot.get(slot).copied().flatten() else {
                    // The pool was removed while the request waited.
                    self.dequeue(id);
                    self.respond(id, 503, now_ms);
                    continue;
                };
                let room = self
                    .tcp
                    .pools
                    .members(pool)
                    .iter()
                    .any(|&b| self.tcp.pools.is_usable(b) && !self.at_limit(b));
                if !room {
                    break;
                }
                self.dequeue(id);
                self.connect_backend(id, Some(pool), now_ms);
            }
            if self.tcp.queued_local == 0 {
                return;
            }
        }
    }

    /// Picks a backend (again) and sends the SYN; 503 when none can be reached.
    fn connect_backend(&mut self, id: ConnId, pool: Option<usize>, now_ms: u64) {
        let waiting = self.tcp.flows.get(id).is_some_and(|c| {
            matches!(
                c.state,
                State::ReadingHead | State::Queued | State::Connecting
            )
        });
        if !waiting {
            return; // closed, answered or spliced meanwhile
        }
        let pool = match pool {
            Some(p) => {
                self.tcp.pool_of[id as usize] = p;
                p
            }
            None => self.tcp.pool_of[id as usize],
        };
        let Some(b) = self.pick_backend(id, pool) else {
            if self.pool_is_full(pool) {
                self.enqueue(id, pool, now_ms);
            } else {
                self.respond(id, 503, now_ms);
            }
            return;
        };
        let route = self.tcp.rt.routes[b];
        let Some(mac) = self.neigh[route.via_port].lookup(route.next_hop, now_ms) else {
            // Unknown MAC: ask for it and let the connect timer try again.
            if self.send_arp_request(route.via_port, route.local_ip, route.next_hop) {
                self.stats().add(Counter::ArpRequestsSent, 1);
            }
            if let Some(conn) = self.tcp.flows.get_mut(id) {
                let mut out = Outputs::default();
                let key = FlowKey {
                    remote_ip: route.address,
                    remote_port: route.port,
                    local_ip: route.local_ip,
                    local_port: 0,
                };
                conn.connect(BackendTarget { id: b, key }, now_ms, &mut out);
            }
            return;
        };
        if !self.take_slot(b) {
            // Another core took the last slot since `pick_backend` looked.
            self.enqueue(id, pool, now_ms);
            return;
        }
        if let Some((key, side)) = self.take_warm(b, id) {
            // A warm connection: no backend handshake on this request's path.
            self.tcp.meta[id as usize].mark_tried(b);
            self.tcp.flows.bind_backend(id, key);
            self.tcp.pools.connection_opened(b);
            let meta = &mut self.tcp.meta[id as usize];
            meta.backend_held = true;
            meta.backend_mac = mac;
            meta.backend_port = route.via_port;
            let mut out = Outputs::default();
            if let Some(conn) = self.tcp.flows.get_mut(id) {
                conn.attach(BackendTarget { id: b, key }, side, now_ms, &mut out);
            }
            self.stats().add(Counter::WarmAttached, 1);
            crate::stats::bump(&self.stats().backend_requests[b], 1);
            for e in out.iter() {
                if let Emit::ToBackend(s) = e {
                    self.send_to_backend(id, &s);
                }
            }
            self.warm_refill(b, now_ms);
            return;
        }
        let Some(local_port) = self.pick_local_port(route) else {
            self.release_slot(b);
            self.stats().drop(DropReason::NoLocalPort, 1);
            self.respond(id, 503, now_ms);
            return;
        };
        self.tcp.meta[id as usize].mark_tried(b);
        let key = FlowKey {
            remote_ip: route.address,
            remote_port: route.port,
            local_ip: route.local_ip,
            local_port,
        };
        self.tcp.flows.bind_backend(id, key);
        self.tcp.pools.connection_opened(b);
        self.tcp.meta[id as usize].backend_held = true;
        let meta = &mut self.tcp.meta[id as usize];
        meta.backend_mac = mac;
        meta.backend_port = route.via_port;
        let mut out = Outputs::default();
        if let Some(conn) = self.tcp.flows.get_mut(id) {
            conn.connect(BackendTarget { id: b, key }, now_ms, &mut out);
        }
        self.stats().add(Counter::BackendConnects, 1);
        crate::stats::bump(&self.stats().backend_requests[b], 1);
        for e in out.iter() {
            if let Emit::ToBackend(s) = e {
                self.send_to_backend(id, &s);
            }
        }
    }

    fn pick_local_port(&mut self, route: BackendRoute) -> Option<u16> {
        let cores = self.shared.stats.len();
        for _ in 0..64 {
            let port = steer::next_local_port_for_core(
                self.tcp.next_local_port,
                self.index,
                cores,
                LOCAL_PORTS,
            );
            self.tcp.next_local_port = if port >= *LOCAL_PORTS.end() {
                *LOCAL_PORTS.start()
            } else {
                port + 1
            };
            let key = FlowKey {
                remote_ip: route.address,
                remote_port: route.port,
                local_ip: route.local_ip,
                local_port: port,
            };
            if self.tcp.warm.contains_key(&key) || self.tcp.probes.contains_key(&key) {
                continue;
            }
            match self.tcp.flows.lookup(&key) {
                None => return Some(port),
                // Held only by a lingering connection: recycle it (as a TIME_WAIT tuple is
                // reused), or a table of closed flows would leave no port to pick.
                Some((holder, Side::Backend)) if self.tcp.flows.is_lingering(holder) => {
                    self.remove_conn(holder);
                    self.stats().add(Counter::LingerRecycled, 1);
                    return Some(port);
                }
                Some(_) => {}
            }
        }
        None
    }

    fn release_backend(&mut self, id: ConnId) {
        if let Some(conn) = self.tcp.flows.get_mut(id) {
            if let Some(t) = conn.backend.take() {
                if t.key.local_port != 0 {
                    self.tcp.flows.unbind(&t.key);
                }
                self.release_held(id, t.id);
            }
        }
    }

    fn respond(&mut self, id: ConnId, status: u16, now_ms: u64) {
        self.respond_with(
            id,
            status,
            Response::Static(http::error_response(status)),
            now_ms,
        );
    }

    /// Answers with the switch's own response (`status` is what it carries).
    fn respond_with(&mut self, id: ConnId, status: u16, response: Response, now_ms: u64) {
        match status {
            400..=499 => self.stats().add(Counter::Http4xxSent, 1),
            500..=599 => self.stats().add(Counter::Http5xxSent, 1),
            // Redirects and `respond` pages are answers, not errors.
            _ => {}
        }
        self.tcp.meta[id as usize].status = Some(status);
        let by_status = match status {
            400 => Some(Counter::Http400Sent),
            408 => Some(Counter::Http408Sent),
            431 => Some(Counter::Http431Sent),
            501 => Some(Counter::Http501Sent),
            502 => Some(Counter::Http502Sent),
            503 => Some(Counter::Http503Sent),
            505 => Some(Counter::Http505Sent),
            _ => None,
        };
        if let Some(c) = by_status {
            self.stats().add(c, 1);
        }
        let mut out = Outputs::default();
        if let Some(conn) = self.tcp.flows.get_mut(id) {
            conn.respond(response, now_ms, &mut out);
        }
        for e in out.iter() {
            if let Emit::ToClient(s) = e {
                self.send_to_client(id, &s, now_ms);
            }
        }
    }

    fn remove_conn(&mut self, id: ConnId) {
        self.dequeue(id);
        self.release_per_request(id);
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
        if let Some(mut conn) = self.tcp.flows.remove(id, &keys[..n]) {
            if let Some(h) = conn.head.take() {
                self.tcp.heads.push(h);
            }
            if let Some(b) = conn.take_rewrite() {
                self.tcp.rewrite_bufs.push(b);
            }
            self.stats().add(Counter::ConnsClosed, 1);
        }
    }

    /// Queues the connection's access log line for the main thread (never blocks: a
    /// full queue drops the line and counts it).
    fn log_access(&mut self, id: ConnId) {
        let Some(c) = self.tcp.flows.get(id) else {
            return;
        };
        let meta = self.tcp.meta[id as usize];
        let rt = &self.tcp.rt;
        let rec = AccessRecord {
            client: (c.client.remote_ip, c.client.remote_port),
            vip: (c.client.local_ip, c.client.local_port),
            method: String::from_utf8_lossy(&meta.method[..meta.method_len as usize]).into_owned(),
            path: String::from_utf8_lossy(&meta.path[..meta.path_len as usize]).into_owned(),
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
            setup_us: meta.setup_us,
            duration_us: self.now_us().saturating_sub(meta.accept_us),
            core: self.index,
        };
        if self.shared.access[self.index].push(rec).is_err() {
            self.stats().add(Counter::AccessLogDropped, 1);
        }
    }

    fn take_head_buffer(&mut self) -> Option<HeadBuffer> {
        if let Some(h) = self.tcp.heads.pop() {
            return Some(h);
        }
        if self.tcp.heads_allocated < self.tcp.max_heads {
            self.tcp.heads_allocated += 1;
            return Some(HeadBuffer::new(self.tcp.head_capacity));
        }
        None
    }

    /// Translates the received segment in place and stages it toward the other side.
    fn forward(&mut self, id: ConnId, from: Side, mut m: Mbuf, rx: &Rx) {
        let Some(conn) = self.tcp.flows.get(id) else {
            return;
        };
        let meta = self.tcp.meta[id as usize];
        let (t, out_port, dst_mac) = match from {
            Side::Client => (conn.c2b, meta.backend_port, meta.backend_mac),
            Side::Backend => (conn.b2c, meta.client_port, meta.client_mac),
        };
        let end = ETH + rx.ip_total;
        if m.len() > end {
            m.set_len(end);
        }
        if tcpstate::splice::translate(&mut m[ETH..end], &t).is_err() {
            self.stats().drop(DropReason::BadTcp, 1);
            return;
        }
        let mut eth = EthernetFrame::new_unchecked(&mut m[..]);
        eth.set_src_addr(self.shared.addrs[out_port].mac);
        eth.set_dst_addr(dst_mac);
        let payload = rx.seg.payload_len as u64;
        match from {
            Side::Client => {
                self.stats().add(Counter::SplicedPacketsC2b, 1);
                self.stats().add(Counter::SplicedBytesC2b, payload);
            }
            Side::Backend => {
                self.stats().add(Counter::SplicedPacketsB2c, 1);
                self.stats().add(Counter::SplicedBytesB2c, payload);
            }
        }
        self.stage(out_port, m);
    }

    fn send_to_client(&mut self, id: ConnId, s: &SegmentOut, _now_ms: u64) {
        let Some(conn) = self.tcp.flows.get(id) else {
            return;
        };
        let meta = self.tcp.meta[id as usize];
        let key = conn.client;
        let frame = FrameSpec {
            src_mac: self.shared.addrs[meta.client_port].mac,
            dst_mac: meta.client_mac,
            src: (key.local_ip, key.local_port),
            dst: (key.remote_ip, key.remote_port),
        };
        let (offset, len) = match s.data {
            Data::None => (0, 0),
            Data::Response { offset, len } => (offset, len),
            // Heads go to backends only.
            Data::Head { .. } => return,
        };
        if len == 0 {
            self.emit_segment(meta.client_port, &frame, s, &[]);
            return;
        }
        // The switch's own response, cut to the client's MSS; PSH and FIN on the last.
        let mss = usize::from(conn.syn.mss.min(self.tcp.params.mss)).clamp(536, MAX_SEGMENT)
            - options_len(s);
        // A scratch buffer kept by the core (not a 9 KB array zeroed per call).
        let mut buf = std::mem::take(&mut self.tcp.seg_scratch);
        buf.resize(MAX_SEGMENT, 0);
        let mut off = 0;
        while off < len {
            let n = (len - off).min(mss);
            {
                let src = self
                    .tcp
                    .flows
                    .get(id)
                    .and_then(|c| c.response_bytes().get(offset + off..offset + off + n));
                let Some(src) = src else {
                    break;
                };
                buf[..n].copy_from_slice(src);
            }
            let mut seg = *s;
            seg.seq = s.seq + off;
            if off + n < len {
                seg.flags &= !(tcp_flags::PSH | tcp_flags::FIN);
            }
            self.emit_segment(meta.client_port, &frame, &seg, &buf[..n]);
            off += n;
        }
        self.tcp.seg_scratch = buf;
    }

    fn send_to_backend(&mut self, id: ConnId, s: &SegmentOut) {
        let Some(conn) = self.tcp.flows.get(id) else {
            return;
        };
        let Some(target) = conn.backend else { return };
        if target.key.local_port == 0 {
            return; // still resolving the backend's MAC
        }
        let meta = self.tcp.meta[id as usize];
        let frame = FrameSpec {
            src_mac: self.shared.addrs[meta.backend_port].mac,
            dst_mac: meta.backend_mac,
            src: (target.key.local_ip, target.key.local_port),
            dst: (target.key.remote_ip, target.key.remote_port),
        };
        let mss = usize::from(conn.syn.mss.min(conn.backend_mss)).clamp(536, MAX_SEGMENT)
            - options_len(s);
        match s.data {
            // A FIN alone after the head (the backend's window had no room for it before).
            Data::Head { len: 0, .. } => self.emit_segment(meta.backend_port, &frame, s, &[]),
            Data::Head { offset, len } => {
                // What the backend gets from the buffer (a rewritten head, then the
                // client's bytes), cut to the MSS; PSH (and a FIN) on the last segment.
                let mut buf = std::mem::take(&mut self.tcp.seg_scratch);
                buf.resize(MAX_SEGMENT, 0);
                let mut off = 0;
                while off < len {
                    let n = (len - off).min(mss);
                    let copied = self.tcp.flows.get(id).is_some_and(|conn| {
                        let (a, b) = conn.backend_stream();
                        copy_from_two(a, b, offset + off, &mut buf[..n])
                    });
                    if !copied {
                        break;
                    }
                    let mut seg = *s;
                    seg.seq = s.seq + off;
                    if off + n < len {
                        seg.flags &= !(tcp_flags::PSH | tcp_flags::FIN);
                    }
                    self.emit_segment(meta.backend_port, &frame, &seg, &buf[..n]);
                    off += n;
                }
                self.tcp.seg_scratch = buf;
            }
            Data::Response { .. } | Data::None => {
                self.emit_segment(meta.backend_port, &frame, s, &[])
            }
        }
    }

    /// Answers a SYN with a cookie SYN-ACK: no state is kept.
    fn send_syn_ack(&mut self, p: usize, key: FlowKey, rx: &Rx, m: Mbuf, now_ms: u64) {
        self.stats().add(Counter::SynReceived, 1);
        let seg = rx.seg;
        let client_opts = SynOptions {
            mss: seg.mss.unwrap_or(536),
            window_scale: seg.window_scale,
            sack_permitted: seg.sack_permitted,
            timestamps: seg.timestamps.is_some(),
        };
        let cookie = self.tcp.cookies.make(
            rx.src,
            rx.sport,
            rx.dst,
            rx.dport,
            seg.seq,
            &client_opts,
            now_ms,
        );
        // Without timestamps the cookie has nowhere to keep window scale and SACK-permitted,
        // so (as Linux does) they are not offered: both ends then agree there are none.
        let ts = seg.timestamps.is_some();
        let ours = SynOptions {
            mss: self.tcp.params.mss,
            window_scale: seg
                .window_scale
                .filter(|_| ts)
                .map(|_| self.tcp.params.window_scale),
            sack_permitted: seg.sack_permitted && ts,
            timestamps: ts,
        };
        let out = SegmentOut {
            seq: cookie.isn,
            ack: Some(seg.seq + 1),
            flags: tcp_flags::SYN,
            window: 65535,
            timestamps: match (cookie.tsval, seg.timestamps) {
                (Some(tsval), Some((their, _))) => Some((tsval, their)),
                _ => None,
            },
            syn_options: Some(ours),
            data: Data::None,
        };
        let frame = FrameSpec {
            src_mac: self.shared.addrs[p].mac,
            dst_mac: rx.src_mac,
            src: (key.local_ip, key.local_port),
            dst: (key.remote_ip, key.remote_port),
        };
        drop(m);
        self.emit_segment(p, &frame, &out, &[]);
        self.stats().add(Counter::SynCookiesSent, 1);
    }

    /// RST in answer to a segment no connection accepts (RFC 9293 3.10.7.1).
    fn send_rst_for(&mut self, p: usize, rx: &Rx, m: Mbuf) {
        let seg = rx.seg;
        if seg.rst() {
            return;
        }
        let out = match seg.ack {
            Some(ack) => SegmentOut::rst(ack),
            None => {
                let len = seg.payload_len + usize::from(seg.syn()) + usize::from(seg.fin());
                SegmentOut {
                    seq: SeqNumber(0),
                    ack: Some(seg.seq + len),
                    flags: tcp_flags::RST,
                    window: 0,
                    timestamps: None,
                    syn_options: None,
                    data: Data::None,
                }
            }
        };
        let frame = FrameSpec {
            src_mac: self.shared.addrs[p].mac,
            dst_mac: rx.src_mac,
            src: (rx.dst, rx.dport),
            dst: (rx.src, rx.sport),
        };
        drop(m);
        self.emit_segment(p, &frame, &out, &[]);
        self.stats().add(Counter::RstSent, 1);
    }

    /// Builds Ethernet + IPv4 + TCP (+ data) in a fresh mbuf and stages it on port `p`.
    fn emit_segment(&mut self, p: usize, f: &FrameSpec, s: &SegmentOut, data: &[u8]) {
        let syn = s.syn_options;
        let repr = TcpRepr {
            src_port: f.src.1,
            dst_port: f.dst.1,
            seq_number: s.seq,
            ack_number: s.ack,
            flags: s.flags,
            window_len: s.window,
            max_seg_size: syn.map(|o| o.mss),
            window_scale: syn.and_then(|o| o.window_scale),
            sack_permitted: syn.is_some_and(|o| o.sack_permitted),
            timestamps: s.timestamps,
            payload_len: data.len(),
        };
        let tcp_len = repr.buffer_len();
        let total = ETH + IP + tcp_len;
        let Some(mut m) = Mbuf::alloc(&self.shared.pool) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return;
        };
        let Some(buf) = m.append(total.max(60)) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return;
        };
        buf.fill(0);
        {
            let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
            eth.set_dst_addr(f.dst_mac);
            eth.set_src_addr(f.src_mac);
            eth.set_ethertype(ethertype::IPV4);
        }
        let ip = Ipv4Repr {
            src: f.src.0,
            dst: f.dst.0,
            protocol: ip_proto::TCP,
            payload_len: tcp_len,
            ttl: crate::l2l3::TTL,
        };
        ip.emit(&mut Ipv4Packet::new_unchecked(
            &mut buf[ETH..ETH + IP + tcp_len],
        ));
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut buf[ETH + IP..ETH + IP + tcp_len]),
            f.src.0,
            f.dst.0,
            data,
        );
        if total < 60 {
            m.set_len(total.max(60));
        }
        self.stats().add(Counter::TcpSegmentsSent, 1);
        self.stage(p, m);
    }

    /// Runs due connection timers; called every loop iteration, acts every `SWEEP_MS`.
    pub(super) fn tcp_timers(&mut self, now_ms: u64) {
        self.serve_queues(now_ms);
        if now_ms < self.tcp.next_sweep_ms {
            return;
        }
        self.tcp.next_sweep_ms = now_ms + SWEEP_MS;
        self.adopt_runtime();
        self.sync_backend_state();
        self.serve_ctl(now_ms);
        self.health_tick(now_ms);
        self.warm_tick(now_ms);
        let mut fresh = [0u8; 16];
        fresh[..8].copy_from_slice(&splitmix(&mut self.tcp.rng).to_le_bytes());
        fresh[8..].copy_from_slice(&splitmix(&mut self.tcp.rng).to_le_bytes());
        self.tcp.cookies.maybe_rotate(now_ms, fresh);
        let mut ids = std::mem::take(&mut self.tcp.scratch_ids);
        self.tcp.flows.live_ids(&mut ids);
        let mut by_state = [0u64; State::ALL.len()];
        for &id in &ids {
            if let Some(c) = self.tcp.flows.get(id) {
                by_state[State::ALL.iter().position(|s| *s == c.state).unwrap_or(0)] += 1;
            }
        }
        let gauges = [
            Counter::ConnsReadingHead,
            Counter::ConnsQueued,
            Counter::ConnsConnecting,
            Counter::ConnsSpliced,
            Counter::ConnsResponding,
            Counter::ConnsClosedLinger,
        ];
        for (g, n) in gauges.iter().zip(by_state) {
            self.stats().set(*g, n);
        }
        self.stats().set(Counter::FlowsLive, self.tcp.live() as u64);
        for &id in &ids {
            // Waiting for a backend's MAC (the first connect after start, or after the
            // entry expired): go as soon as it is known, not at the connect timeout.
            let waiting_arp = self.tcp.flows.get(id).and_then(|c| {
                let t = c.backend?;
                (c.state == State::Connecting && t.key.local_port == 0).then_some(t.id)
            });
            if let Some(b) = waiting_arp {
                let route = self.tcp.rt.routes.get(b).copied();
                if route
                    .is_some_and(|r| self.neigh[r.via_port].lookup(r.next_hop, now_ms).is_some())
                {
                    if let Some(c) = self.tcp.flows.get_mut(id) {
                        c.backend = None;
                    }
                    self.connect_backend(id, None, now_ms);
                    continue;
                }
            }
            let due = self
                .tcp
                .flows
                .get(id)
                .is_some_and(|c| now_ms >= c.deadline_ms());
            if !due {
                continue;
            }
            let mut out = Outputs::default();
            let verdict = match self.tcp.flows.get_mut(id) {
                Some(c) => c.on_timer(now_ms, &mut out),
                None => continue,
            };
            for e in out.iter() {
                match e {
                    Emit::ToClient(s) => self.send_to_client(id, &s, now_ms),
                    Emit::ToBackend(s) => self.send_to_backend(id, &s),
                    Emit::Forward => {}
                }
            }
            self.apply_verdict(id, verdict, now_ms);
        }
        self.tcp.scratch_ids = ids;
    }
}

/// Largest segment the switch builds itself (jumbo frames included).
const MAX_SEGMENT: usize = 9000;

/// Bytes of TCP options on a data segment the switch builds: the MSS counts payload
/// only, so the options come out of it (RFC 6691), or the packet outgrows the MTU.
fn options_len(s: &SegmentOut) -> usize {
    if s.timestamps.is_some() {
        12 // NOP, NOP, TSval, TSecr
    } else {
        0
    }
}

/// Copies `out.len()` bytes starting `at` bytes into `a` followed by `b`; false if
/// they do not hold that many.
fn copy_from_two(a: &[u8], b: &[u8], at: usize, out: &mut [u8]) -> bool {
    let n = out.len();
    if at + n > a.len() + b.len() {
        return false;
    }
    let mut done = 0;
    if at < a.len() {
        let k = (a.len() - at).min(n);
        out[..k].copy_from_slice(&a[at..at + k]);
        done = k;
    }
    if done < n {
        let from = at + done - a.len();
        out[done..].copy_from_slice(&b[from..from + (n - done)]);
    }
    true
}

/// The status code of a response the switch built ("HTTP/1.1 302 ..." → 302).
fn response_status(r: &[u8]) -> u16 {
    r.get(9..12)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

/// The request target of a head ("GET /a/b HTTP/1.1" → "/a/b"), for LARD's URL map.
fn request_path(head: &[u8]) -> &[u8] {
    let line_end = head.iter().position(|b| *b == b'\r').unwrap_or(head.len());
    let line = &head[..line_end];
    let mut parts = line.split(|b| *b == b' ');
    parts.next();
    parts.next().unwrap_or(&[])
}

/// A connection as reported to the management socket.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnInfo {
    pub client: String,
    pub vip: String,
    pub backend: Option<String>,
    pub local_port: Option<u16>,
    pub state: &'static str,
    pub core: usize,
    pub bytes_c2b: u64,
    pub bytes_b2c: u64,
    pub age_ms: u64,
}

/// A question from the management thread to one core, answered on `reply`.
pub enum CoreRequest {
    List {
        client: Option<(std::net::Ipv4Addr, Option<u16>)>,
        backend: Option<usize>,
        state: Option<String>,
        limit: usize,
        reply: std::sync::mpsc::SyncSender<CoreReply>,
    },
    Kill {
        client: (std::net::Ipv4Addr, u16),
        reply: std::sync::mpsc::SyncSender<CoreReply>,
    },
}

pub enum CoreReply {
    Connections {
        list: Vec<ConnInfo>,
        truncated: bool,
    },
    Killed(usize),
}

impl Worker {
    /// Picks up a new runtime snapshot: new router and pools; this core's open
    /// connections per backend carry over (backend ids are stable).
    fn adopt_runtime(&mut self) {
        let v = self
            .shared
            .runtime_version
            .load(std::sync::atomic::Ordering::Acquire);
        if v == self.tcp.rt.version {
            return;
        }
        let rt = self.shared.runtime.load_full();
        let mut pools = rt.pools.clone();
        let carried = self.tcp.pools.backend_count().min(pools.backend_count());
        for b in 0..carried {
            for _ in 0..self.tcp.pools.active(b) {
                pools.connection_opened(b);
            }
        }
        self.tcp.pools = pools;
        self.tcp.rt = rt;
    }

    /// Applies health and admin state to this core's schedulers, and publishes this
    /// core's open connections per backend.
    fn sync_backend_state(&mut self) {
        let rt = std::sync::Arc::clone(&self.tcp.rt);
        for b in 0..self.tcp.pools.backend_count() {
            let health = self.shared.health[b].load(std::sync::atomic::Ordering::Relaxed);
            let up = health != super::health::HEALTH_DOWN
                && rt.admin[b] != Admin::Maint
                && !rt.removed[b];
            self.tcp.pools.set_up(b, up);
            let weight = if rt.admin[b] == Admin::Ready {
                rt.config.backends[b].weight
            } else {
                0
            };
            self.tcp.pools.set_weight(b, weight);
            self.shared.backend_active[self.index][b].store(
                self.tcp.pools.active(b),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// Answers the management thread's questions about this core's connections.
    fn serve_ctl(&mut self, now_ms: u64) {
        let now_us = self.now_us();
        while let Some(req) = self.shared.ctl[self.index].pop() {
            match req {
                CoreRequest::List {
                    client,
                    backend,
                    state,
                    limit,
                    reply,
                } => {
                    let mut ids = Vec::new();
                    self.tcp.flows.live_ids(&mut ids);
                    let mut list = Vec::new();
                    let mut truncated = false;
                    for id in ids {
                        let Some(c) = self.tcp.flows.get(id) else {
                            continue;
                        };
                        if let Some((ip, port)) = client {
                            if c.client.remote_ip != ip
                                || port.is_some_and(|p| p != c.client.remote_port)
                            {
                                continue;
                            }
                        }
                        if backend.is_some() && c.backend.map(|t| t.id) != backend {
                            continue;
                        }
                        if state.as_deref().is_some_and(|s| s != c.state.name()) {
                            continue;
                        }
                        if list.len() >= limit {
                            truncated = true;
                            break;
                        }
                        list.push(ConnInfo {
                            client: format!("{}:{}", c.client.remote_ip, c.client.remote_port),
                            vip: format!("{}:{}", c.client.local_ip, c.client.local_port),
                            backend: c
                                .backend
                                .and_then(|t| self.tcp.rt.config.backends.get(t.id))
                                .map(|b| b.name.clone()),
                            local_port: c.backend.map(|t| t.key.local_port).filter(|p| *p != 0),
                            state: c.state.name(),
                            core: self.index,
                            bytes_c2b: c.bytes_c2b,
                            bytes_b2c: c.bytes_b2c,
                            age_ms: now_us.saturating_sub(self.tcp.meta[id as usize].accept_us)
                                / 1000,
                        });
                    }
                    let _ = reply.try_send(CoreReply::Connections { list, truncated });
                }
                CoreRequest::Kill { client, reply } => {
                    let mut ids = Vec::new();
                    self.tcp.flows.live_ids(&mut ids);
                    let key = ids.into_iter().find(|id| {
                        self.tcp.flows.get(*id).is_some_and(|c| {
                            c.client.remote_ip == client.0 && c.client.remote_port == client.1
                        })
                    });
                    let mut killed = 0;
                    if let Some(id) = key {
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
                        killed = 1;
                    }
                    let _ = reply.try_send(CoreReply::Killed(killed));
                }
            }
        }
    }

    pub(super) fn tcp_bind_probe(&mut self, key: FlowKey, b: usize) {
        self.tcp.probes.insert(key, b);
    }

    pub(super) fn tcp_unbind_probe(&mut self, key: &FlowKey) {
        self.tcp.probes.remove(key);
    }

    /// A local port for a health probe: this core's, not used by a connection or probe.
    pub(super) fn probe_port(&mut self, route: BackendRoute) -> Option<u16> {
        let port = self.pick_local_port(route)?;
        let key = FlowKey {
            remote_ip: route.address,
            remote_port: route.port,
            local_ip: route.local_ip,
            local_port: port,
        };
        (!self.tcp.probes.contains_key(&key)).then_some(port)
    }

    /// Sends a segment on a tuple that has no connection (health probes).
    pub(super) fn send_raw_segment(
        &mut self,
        p: usize,
        dst_mac: MacAddr,
        key: FlowKey,
        s: &SegmentOut,
    ) {
        self.send_raw_segment_with(p, dst_mac, key, s, &[]);
    }

    /// As `send_raw_segment`, with data.
    pub(super) fn send_raw_segment_with(
        &mut self,
        p: usize,
        dst_mac: MacAddr,
        key: FlowKey,
        s: &SegmentOut,
        data: &[u8],
    ) {
        let frame = FrameSpec {
            src_mac: self.shared.addrs[p].mac,
            dst_mac,
            src: (key.local_ip, key.local_port),
            dst: (key.remote_ip, key.remote_port),
        };
        self.emit_segment(p, &frame, s, data);
    }
}

struct FrameSpec {
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
}

/// Parses the TCP segment of a frame l2l3 already validated (Ethernet, IPv4 with a good
/// header checksum, no options, not a fragment, TCP), checking the TCP checksum.
/// Cuts a received segment's payload to its first `keep` bytes and clears its FIN (the
/// rest belongs to a later request, see `presplice`): lengths and checksums are set
/// anew. Returns the segment as it now is.
fn trim_payload(m: &mut Mbuf, rx: &Rx, keep: usize) -> Rx {
    let keep = keep.min(rx.seg.payload_len);
    let ip_total = IP + rx.tcp_hdr + keep;
    {
        let frame = &mut m[ETH..ETH + rx.ip_total];
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[..]);
        ip.set_total_len(ip_total as u16);
        ip.fill_checksum();
        let mut tcp = TcpPacket::new_unchecked(&mut frame[IP..ip_total]);
        tcp.set_fin(false);
        tcp.fill_checksum(rx.src, rx.dst);
    }
    m.set_len(ETH + ip_total);
    let mut out = *rx;
    out.ip_total = ip_total;
    out.seg.payload_len = keep;
    out.seg.flags &= !tcp_flags::FIN;
    out
}

fn parse_tcp(m: &[u8]) -> Option<Rx> {
    // Only frames `l2l3::process_frame` classified as TCP get here (directly or through a
    // steering ring), so the Ethernet and IPv4 headers were already checked: read them
    // without checking again.
    let eth = EthernetFrame::new_unchecked(m);
    let src_mac = eth.src_addr();
    let ip = Ipv4Packet::new_unchecked(&m[ETH..]);
    let (src, dst, ip_total) = (ip.src_addr(), ip.dst_addr(), usize::from(ip.total_len()));
    let tcp = TcpPacket::new_checked(&m[ETH + IP..ETH + ip_total]).ok()?;
    let repr = TcpRepr::parse(&tcp, src, dst, true).ok()?;
    Some(Rx {
        src,
        dst,
        src_mac,
        ip_total,
        tcp_hdr: usize::from(tcp.header_len()),
        sport: repr.src_port,
        dport: repr.dst_port,
        seg: SegmentInfo {
            seq: repr.seq_number,
            ack: repr.ack_number,
            flags: repr.flags,
            window: repr.window_len,
            timestamps: repr.timestamps,
            payload_len: repr.payload_len,
            mss: repr.max_seg_size,
            window_scale: repr.window_scale,
            sack_permitted: repr.sack_permitted,
        },
    })
}
