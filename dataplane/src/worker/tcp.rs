//! The TCP side of a worker: stateless SYN-ACKs with cookies, the per-core flow table,
//! and the glue between `tcpstate::conn` (which decides) and the packet buffers (which
//! this module builds, or translates in place and sends on).
use std::net::Ipv4Addr;

use dpdk_env::Mbuf;
use rules::http;
use tcpstate::conn::{
    BackendTarget, Conn, ConnDrop, ConnParams, Data, Emit, Outputs, SegmentInfo, SegmentOut, State,
    Verdict,
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
use crate::addrs::Local;
use crate::runtime::{Admin, BackendRoute, Runtime};
use crate::stats::{Counter, DropReason};

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
        if let Some(&b) = self.tcp.probes.get(&key) {
            let payload = &m[ETH + IP + rx.tcp_hdr..ETH + rx.ip_total];
            self.health_segment(b, key, &rx.seg, payload, now_ms);
            return;
        }
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
        let Some(head) = self.take_head_buffer() else {
            self.stats().drop(DropReason::HeadBuffersExhausted, 1);
            self.send_rst_for(p, rx, m);
            return;
        };
        let conn = Conn::accept(key, opts, seg.seq, ack, &seg, head, self.tcp.params, now_ms);
        let id = match self.tcp.flows.insert(key, conn) {
            Ok(id) => id,
            Err(_) => {
                self.stats().drop(DropReason::FlowTableFull, 1);
                self.send_rst_for(p, rx, m);
                return;
            }
        };
        self.tcp.meta[id as usize] = Meta {
            client_mac: rx.src_mac,
            client_port: p,
            accept_us: self.now_us(),
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
        let mut m = Some(m);
        for e in out.iter() {
            match e {
                Emit::Forward => {
                    if let Some(m) = m.take() {
                        self.forward(id, side, m, rx);
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
            Verdict::HeadComplete => self.route_head(id, now_ms),
            Verdict::HeadTimeout => {
                self.stats().add(Counter::HeadTimeouts, 1);
                self.respond(id, 408, now_ms);
            }
            Verdict::HeadTooLarge => self.respond(id, 431, now_ms),
            Verdict::NeedBackend { attempts } => {
                self.stats().add(Counter::BackendConnectFailures, 1);
                // Passive health: a refused or unanswered connect counts against the
                // backend; worker 0 folds these into its checks.
                let failed = self
                    .tcp
                    .flows
                    .get(id)
                    .and_then(|c| c.backend)
                    .filter(|t| t.key.local_port != 0);
                if let Some(t) = failed {
                    if let Some(cell) = self.shared.passive_fails.get(t.id) {
                        cell.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                self.release_backend(id);
                if attempts >= self.tcp.params.connect_attempts {
                    self.respond(id, 503, now_ms);
                } else {
                    self.connect_backend(id, None, now_ms);
                }
            }
            Verdict::Remove => self.remove_conn(id),
        }
        if let Some(conn) = self.tcp.flows.get_mut(id) {
            if let Some(h) = conn.take_head_if_done() {
                self.tcp.heads.push(h);
            }
        }
    }

    fn route_head(&mut self, id: ConnId, now_ms: u64) {
        let (status, pool) = {
            let Some(conn) = self.tcp.flows.get(id) else {
                return;
            };
            let bytes = conn.head_bytes();
            let end = http::head_end(bytes).unwrap_or(bytes.len());
            match http::parse_request(&bytes[..end]) {
                Err(e) => (Some(e.status()), 0),
                Ok(req) => {
                    let pool = self.tcp.rt.router.route(&req);
                    let meta = &mut self.tcp.meta[id as usize];
                    let m = req.method.as_bytes();
                    let n = m.len().min(meta.method.len());
                    meta.method[..n].copy_from_slice(&m[..n]);
                    meta.method_len = n as u8;
                    let pth = req.path.as_bytes();
                    let n = pth.len().min(meta.path.len());
                    meta.path[..n].copy_from_slice(&pth[..n]);
                    meta.path_len = n as u8;
                    meta.rule = self.tcp.rt.router.matching_rule(&req).map(|r| r as u16);
                    meta.pool = Some(pool as u16);
                    meta.routed_us = 0;
                    (None, pool)
                }
            }
        };
        if let Some(status) = status {
            self.respond(id, status, now_ms);
            return;
        }
        self.stats().add(Counter::RequestsRouted, 1);
        self.tcp.meta[id as usize].routed_us = self.now_us();
        self.connect_backend(id, Some(pool), now_ms);
    }

    /// Picks a backend (again) and sends the SYN; 503 when none can be reached.
    fn connect_backend(&mut self, id: ConnId, pool: Option<usize>, now_ms: u64) {
        let pool = match pool {
            Some(p) => {
                self.tcp.pool_of[id as usize] = p;
                p
            }
            None => self.tcp.pool_of[id as usize],
        };
        let r = splitmix(&mut self.tcp.rng);
        let picked = {
            let TcpCore { flows, pools, .. } = &mut self.tcp;
            let head = flows.get(id).map(|c| c.head_bytes()).unwrap_or(&[]);
            pools.pick(pool, request_path(head), r)
        };
        let Some(b) = picked else {
            self.respond(id, 503, now_ms);
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
        let Some(local_port) = self.pick_local_port(route) else {
            self.stats().drop(DropReason::NoLocalPort, 1);
            self.respond(id, 503, now_ms);
            return;
        };
        let key = FlowKey {
            remote_ip: route.address,
            remote_port: route.port,
            local_ip: route.local_ip,
            local_port,
        };
        self.tcp.flows.bind_backend(id, key);
        self.tcp.pools.connection_opened(b);
        let meta = &mut self.tcp.meta[id as usize];
        meta.backend_mac = mac;
        meta.backend_port = route.via_port;
        let mut out = Outputs::default();
        if let Some(conn) = self.tcp.flows.get_mut(id) {
            conn.connect(BackendTarget { id: b, key }, now_ms, &mut out);
        }
        self.stats().add(Counter::BackendConnects, 1);
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
            if !self.tcp.flows.contains_key(&key) {
                return Some(port);
            }
        }
        None
    }

    fn release_backend(&mut self, id: ConnId) {
        if let Some(conn) = self.tcp.flows.get_mut(id) {
            if let Some(t) = conn.backend.take() {
                if t.key.local_port != 0 {
                    self.tcp.flows.unbind(&t.key);
                    self.tcp.pools.connection_closed(t.id);
                }
            }
        }
    }

    fn respond(&mut self, id: ConnId, status: u16, now_ms: u64) {
        let counter = if status >= 500 {
            Counter::Http5xxSent
        } else {
            Counter::Http4xxSent
        };
        self.stats().add(counter, 1);
        self.tcp.meta[id as usize].status = Some(status);
        let by_status = match status {
            400 => Some(Counter::Http400Sent),
            408 => Some(Counter::Http408Sent),
            431 => Some(Counter::Http431Sent),
            501 => Some(Counter::Http501Sent),
            503 => Some(Counter::Http503Sent),
            505 => Some(Counter::Http505Sent),
            _ => None,
        };
        if let Some(c) = by_status {
            self.stats().add(c, 1);
        }
        let mut out = Outputs::default();
        if let Some(conn) = self.tcp.flows.get_mut(id) {
            conn.respond(http::error_response(status), now_ms, &mut out);
        }
        for e in out.iter() {
            if let Emit::ToClient(s) = e {
                self.send_to_client(id, &s, now_ms);
            }
        }
    }

    fn remove_conn(&mut self, id: ConnId) {
        let Some(conn) = self.tcp.flows.get(id) else {
            return;
        };
        let mut keys = [conn.client, conn.client];
        let mut n = 1;
        if let Some(t) = conn.backend {
            if t.key.local_port != 0 {
                keys[1] = t.key;
                n = 2;
                self.tcp.pools.connection_closed(t.id);
            }
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
        let data: &[u8] = match s.data {
            Data::None => &[],
            Data::Static(b) => b,
            Data::Head { offset, len } => &conn.head_bytes()[offset..offset + len],
        };
        let frame = FrameSpec {
            src_mac: self.shared.addrs[meta.client_port].mac,
            dst_mac: meta.client_mac,
            src: (key.local_ip, key.local_port),
            dst: (key.remote_ip, key.remote_port),
        };
        // Copy out: `data` borrows the flow table, building borrows self mutably.
        let mut buf = [0u8; 1600];
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        self.emit_segment(meta.client_port, &frame, s, &buf[..n]);
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
        let mss = usize::from(conn.syn.mss.min(conn.backend_mss).clamp(536, 9000));
        match s.data {
            Data::Head { offset, len } => {
                // Borrow the head buffer out of the connection while building from it.
                let Some(head) = self.tcp.flows.get_mut(id).and_then(|c| c.head.take()) else {
                    return;
                };
                let bytes = &head.contiguous()[offset..offset + len];
                let mut off = 0;
                while off < bytes.len() {
                    let n = (bytes.len() - off).min(mss);
                    let mut seg = *s;
                    seg.seq = s.seq + off;
                    if off + n < bytes.len() {
                        seg.flags &= !tcp_flags::PSH;
                    }
                    self.emit_segment(meta.backend_port, &frame, &seg, &bytes[off..off + n]);
                    off += n;
                }
                if let Some(c) = self.tcp.flows.get_mut(id) {
                    c.head = Some(head);
                }
            }
            Data::Static(b) => self.emit_segment(meta.backend_port, &frame, s, b),
            Data::None => self.emit_segment(meta.backend_port, &frame, s, &[]),
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
            Some(ack) => SegmentOut {
                seq: ack,
                ack: None,
                flags: tcp_flags::RST,
                window: 0,
                timestamps: None,
                syn_options: None,
                data: Data::None,
            },
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
        if now_ms < self.tcp.next_sweep_ms {
            return;
        }
        self.tcp.next_sweep_ms = now_ms + SWEEP_MS;
        self.adopt_runtime();
        self.sync_backend_state();
        self.serve_ctl(now_ms);
        self.health_tick(now_ms);
        let mut fresh = [0u8; 16];
        fresh[..8].copy_from_slice(&splitmix(&mut self.tcp.rng).to_le_bytes());
        fresh[8..].copy_from_slice(&splitmix(&mut self.tcp.rng).to_le_bytes());
        self.tcp.cookies.maybe_rotate(now_ms, fresh);
        let mut ids = std::mem::take(&mut self.tcp.scratch_ids);
        self.tcp.flows.live_ids(&mut ids);
        let mut by_state = [0u64; 5];
        for &id in &ids {
            if let Some(c) = self.tcp.flows.get(id) {
                by_state[State::ALL.iter().position(|s| *s == c.state).unwrap_or(0)] += 1;
            }
        }
        let gauges = [
            Counter::ConnsReadingHead,
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
