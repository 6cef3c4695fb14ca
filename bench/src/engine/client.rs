//! The client side: many emulated HTTP/1.1 clients over the harness's TCP, toward a
//! VIP (through the switch) or straight at the backends (back-to-back / direct).
use std::net::{Ipv4Addr, SocketAddrV4};

use dpdk_env::MbufBatch;
use hashbrown::HashMap;
use tcpstate::wire::{arp_op, tcp_flags, MacAddr, SeqNumber, TcpRepr};

use super::net::{count_drop, Net, Rx, TcpIn};
use super::tcp::{answer_stray, BufSource, St, Tcb, MSS};
use crate::content::{self, BodySpec, Rng, UrlClass};
use crate::hist::Hist;
use crate::report::Counters;

/// What the client side does, from the command line.
#[derive(Debug, Clone)]
pub struct ClientCfg {
    /// Connections go to these addresses in turn.
    pub targets: Vec<SocketAddrV4>,
    /// The next hop whose MAC every frame is sent to (the VIP, or a backend).
    pub gateway: Ipv4Addr,
    pub ips: Vec<Ipv4Addr>,
    pub port_lo: u16,
    pub port_hi: u16,
    pub max_conns: usize,
    pub requests_per_conn: u32,
    /// (class, weight)
    pub mix: Vec<(UrlClass, u32)>,
    pub sizes: Vec<u64>,
    pub request_body: u64,
    pub think_ns: u64,
    pub timeout_ns: u64,
    pub rto_ns: u64,
    /// Expected backend per class (`X-Backend`), checked when set.
    pub routes: Vec<(UrlClass, Ipv4Addr)>,
    /// Check the route of every request, not only the first of each connection (a
    /// splicing switch routes a connection once, by its first request).
    pub route_every_request: bool,
    pub host: String,
    /// Spoofed SYN sources (inclusive range) for the SYN flood.
    pub flood_ips: (u32, u32),
    /// Background connections, held through the run beside the load from their own
    /// addresses (`background_ips`), outside its figures: slowloris ones, that send a
    /// request head a header line every `trickle_ns` and never finish it, and idle ones,
    /// that make one request and then sit idle on the kept-alive connection.
    pub slowloris: usize,
    pub idle: usize,
    pub background_ips: Vec<Ipv4Addr>,
    pub trickle_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    /// Between requests, until `think_until`.
    Thinking,
    /// A request was written; reading its response.
    Waiting,
    /// Our FIN is queued; waiting for both FINs to be acknowledged.
    Closing,
    /// A background slowloris connection: trickling a head it never finishes, until
    /// the peer answers (408) or resets it.
    Slow,
}

struct Conn {
    tcb: Tcb,
    phase: Phase,
    sendbuf: Vec<u8>,
    send_base: u64,
    class: UrlClass,
    expect: BodySpec,
    started: u64,
    req_at: u64,
    think_until: u64,
    got_first: bool,
    head: Vec<u8>,
    head_done: bool,
    clen: u64,
    body_got: u64,
    bad: bool,
    misrouted: bool,
    resp_close: bool,
    reqs_done: u32,
    closing_since: u64,
    active_pos: usize,
    pending: bool,
    /// In `Client::background`, not `active`: outside the load and its figures.
    background: bool,
    /// A background slowloris connection (else an idle one).
    slow: bool,
    next_trickle: u64,
}

type Key = (u32, u16, u32, u16);

pub struct Client {
    pub net: Net,
    cfg: ClientCfg,
    conns: Vec<Conn>,
    free: Vec<u32>,
    active: Vec<u32>,
    map: HashMap<Key, u32>,
    pending: Vec<u32>,
    next_ip: usize,
    next_port: Vec<u16>,
    next_target: usize,
    pub gw_mac: Option<MacAddr>,
    last_arp: u64,
    rng: Rng,
    mix_total: u32,
    scratch: Vec<u8>,
    batch: MbufBatch,
    /// Whether new requests may start (false while draining).
    pub running: bool,
    pub h_connect: Hist,
    pub h_ttfb: Hist,
    /// Time to first byte per URL class (index: `UrlClass::index`), e.g. a pool with
    /// warm backend connections against one without, under the same load.
    pub h_ttfb_class: [Hist; 3],
    pub h_resp: Hist,
    pub s_connect: Hist,
    pub s_ttfb: Hist,
    /// Background connections (see `ClientCfg::slowloris`), and how many were opened.
    background: Vec<u32>,
    background_opened: usize,
    next_background_ip: usize,
    next_background_port: Vec<u16>,
}

fn key(rip: Ipv4Addr, rport: u16, lip: Ipv4Addr, lport: u16) -> Key {
    (u32::from(rip), rport, u32::from(lip), lport)
}

/// Finds the end of an HTTP head (`\r\n\r\n`) in `buf`, looking from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf[start..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| start + p + 4)
}

impl Client {
    pub fn new(net: Net, cfg: ClientCfg, seed: u64) -> Client {
        let mix_total = cfg.mix.iter().map(|m| m.1).sum::<u32>().max(1);
        let nips = cfg.ips.len();
        let port_lo = cfg.port_lo;
        Client {
            net,
            map: HashMap::with_capacity(cfg.max_conns),
            conns: Vec::with_capacity(cfg.max_conns.min(1 << 16)),
            free: Vec::new(),
            active: Vec::with_capacity(cfg.max_conns.min(1 << 16)),
            pending: Vec::with_capacity(1024),
            next_ip: 0,
            next_port: vec![port_lo; nips],
            next_target: 0,
            gw_mac: None,
            last_arp: 0,
            rng: Rng(seed ^ 0x00C1_1EA7),
            mix_total,
            scratch: vec![0u8; MSS],
            batch: MbufBatch::new(),
            running: true,
            h_connect: Hist::new(),
            h_ttfb: Hist::new(),
            h_ttfb_class: [Hist::new(), Hist::new(), Hist::new()],
            h_resp: Hist::new(),
            s_connect: Hist::new(),
            s_ttfb: Hist::new(),
            background: Vec::new(),
            background_opened: 0,
            next_background_ip: 0,
            next_background_port: vec![port_lo; cfg.background_ips.len()],
            cfg,
        }
    }

    pub fn active(&self) -> usize {
        self.active.len()
    }

    pub fn capacity_left(&self) -> usize {
        self.cfg.max_conns - self.active.len()
    }

    /// Asks for the gateway's MAC every 200 ms until it is known.
    pub fn resolve(&mut self, now: u64, c: &mut Counters) {
        if self.gw_mac.is_none() && now >= self.last_arp + 200_000_000 {
            self.last_arp = now;
            let src = self.cfg.ips[0];
            self.net
                .send_arp(arp_op::REQUEST, src, MacAddr([0; 6]), self.cfg.gateway, c);
            self.net.flush();
        }
    }

    fn owns(&self, ip: Ipv4Addr) -> bool {
        self.cfg.ips.contains(&ip) || self.is_flood_ip(ip) || self.cfg.background_ips.contains(&ip)
    }

    fn is_flood_ip(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v >= self.cfg.flood_ips.0 && v <= self.cfg.flood_ips.1
    }

    /// Opens one connection of the load; false when no slot or address is free.
    pub fn open(&mut self, now: u64, c: &mut Counters) -> bool {
        if self.active.len() >= self.cfg.max_conns {
            return false;
        }
        self.open_one(now, false, c)
    }

    /// Opens up to `n` more background connections (slowloris first, then idle) until
    /// all are open; how many it opened.
    pub fn open_background(&mut self, n: usize, now: u64, c: &mut Counters) -> usize {
        let mut opened = 0;
        while opened < n && self.background_opened < self.cfg.slowloris + self.cfg.idle {
            if !self.open_one(now, true, c) {
                break;
            }
            let id = *self.background.last().expect("just opened");
            self.conns[id as usize].slow = self.background_opened < self.cfg.slowloris;
            self.background_opened += 1;
            opened += 1;
        }
        opened
    }

    fn open_one(&mut self, now: u64, background: bool, c: &mut Counters) -> bool {
        let Some(gw) = self.gw_mac else {
            return false;
        };
        let target = self.cfg.targets[self.next_target % self.cfg.targets.len()];
        self.next_target = self.next_target.wrapping_add(1);
        let (ips, next_ip, next_port) = if background {
            (
                &self.cfg.background_ips,
                &mut self.next_background_ip,
                &mut self.next_background_port,
            )
        } else {
            (&self.cfg.ips, &mut self.next_ip, &mut self.next_port)
        };
        if ips.is_empty() {
            return false;
        }
        // a free (ip, port): round-robin over the IPs, sequential ports per IP
        let mut found = None;
        for _ in 0..64 {
            let i = *next_ip % ips.len();
            *next_ip = next_ip.wrapping_add(1);
            let port = next_port[i];
            next_port[i] = if port >= self.cfg.port_hi {
                self.cfg.port_lo
            } else {
                port + 1
            };
            let ip = ips[i];
            if !self
                .map
                .contains_key(&key(*target.ip(), target.port(), ip, port))
            {
                found = Some((ip, port));
                break;
            }
        }
        let Some((lip, lport)) = found else {
            c.drop_no_slot += 1;
            return false;
        };
        let iss = self.rng.next_u64() as u32;
        let tcb = Tcb::new(
            St::SynSent,
            lip,
            lport,
            *target.ip(),
            target.port(),
            gw,
            iss,
            self.cfg.rto_ns,
        );
        let id = match self.free.pop() {
            Some(id) => {
                let conn = &mut self.conns[id as usize];
                conn.tcb = tcb;
                conn.sendbuf.clear();
                id
            }
            None => {
                self.conns.push(Conn {
                    tcb,
                    phase: Phase::Connecting,
                    sendbuf: Vec::new(),
                    send_base: 0,
                    class: UrlClass::Other,
                    expect: BodySpec { size: 0, seed: 0 },
                    started: 0,
                    req_at: 0,
                    think_until: 0,
                    got_first: false,
                    head: Vec::new(),
                    head_done: false,
                    clen: 0,
                    body_got: 0,
                    bad: false,
                    misrouted: false,
                    resp_close: false,
                    reqs_done: 0,
                    closing_since: 0,
                    active_pos: 0,
                    pending: false,
                    background: false,
                    slow: false,
                    next_trickle: 0,
                });
                (self.conns.len() - 1) as u32
            }
        };
        let list = if background {
            &mut self.background
        } else {
            &mut self.active
        };
        let pos = list.len();
        list.push(id);
        let conn = &mut self.conns[id as usize];
        conn.background = background;
        conn.phase = Phase::Connecting;
        conn.send_base = 0;
        conn.started = now;
        conn.reqs_done = 0;
        conn.active_pos = pos;
        conn.pending = false;
        conn.tcb.rto_at = now + self.cfg.rto_ns;
        self.map
            .insert(key(*target.ip(), target.port(), lip, lport), id);
        if background {
            c.bg_attempts += 1;
        } else {
            c.conn_attempts += 1;
        }
        conn.tcb.send_syn(&mut self.net, c);
        true
    }

    /// Frees a connection's slot.
    fn release(&mut self, id: u32) {
        let conn = &self.conns[id as usize];
        let t = &conn.tcb;
        self.map.remove(&key(t.rip, t.rport, t.lip, t.lport));
        let pos = conn.active_pos;
        let list = if conn.background {
            &mut self.background
        } else {
            &mut self.active
        };
        let last = *list.last().expect("listed");
        list.swap_remove(pos);
        if last != id {
            self.conns[last as usize].active_pos = pos;
        }
        self.free.push(id);
    }

    /// Ends a connection at once with a RST, counting the request in flight (or the
    /// connect) under `kind`.
    fn abort(&mut self, id: u32, timeout: bool, c: &mut Counters) {
        let conn = &mut self.conns[id as usize];
        if conn.background {
            // Refused (a per-client cap), or given up on: outside the load's figures.
            c.bg_reset += 1;
            if timeout && conn.tcb.st == St::Est {
                conn.tcb.send_rst(&mut self.net, c);
            }
            self.release(id);
            return;
        }
        match conn.phase {
            Phase::Connecting => {
                if timeout {
                    c.conn_timeout += 1
                } else {
                    c.conn_reset += 1
                }
            }
            Phase::Waiting => {
                if timeout {
                    c.req_timeout += 1
                } else {
                    c.req_reset += 1
                }
            }
            Phase::Thinking | Phase::Closing | Phase::Slow => {}
        }
        if timeout && conn.tcb.st == St::Est {
            conn.tcb.send_rst(&mut self.net, c);
        }
        self.release(id);
    }

    fn mark_pending(&mut self, id: u32) {
        let conn = &mut self.conns[id as usize];
        if !conn.pending {
            conn.pending = true;
            self.pending.push(id);
        }
    }

    fn pick_class(&mut self) -> UrlClass {
        let mut r = self.rng.below(u64::from(self.mix_total)) as u32;
        for &(class, w) in &self.cfg.mix {
            if r < w {
                return class;
            }
            r -= w;
        }
        UrlClass::Other
    }

    /// Writes the next request on connection `id`.
    fn start_request(&mut self, id: u32, now: u64, c: &mut Counters) {
        let class = self.pick_class();
        let size = self.cfg.sizes[self.rng.below(self.cfg.sizes.len() as u64) as usize];
        let spec = BodySpec {
            size,
            seed: self.rng.next_u64() >> 4,
        };
        let body = self.cfg.request_body;
        let conn = &mut self.conns[id as usize];
        // forget what the peer has acknowledged
        let acked = ((conn.tcb.snd_una - conn.send_base) as usize).min(conn.sendbuf.len());
        conn.sendbuf.drain(..acked);
        conn.send_base += acked as u64;
        let buf = &mut conn.sendbuf;
        buf.extend_from_slice(if body > 0 { b"POST " } else { b"GET " });
        class.write_target(spec, buf);
        buf.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        buf.extend_from_slice(self.cfg.host.as_bytes());
        buf.extend_from_slice(b"\r\nUser-Agent: webswitch-bench\r\n");
        if body > 0 {
            use std::io::Write;
            let _ = write!(buf, "Content-Length: {body}\r\n");
        }
        buf.extend_from_slice(b"\r\n");
        if body > 0 {
            let at = buf.len();
            buf.resize(at + body as usize, 0);
            content::fill_body(spec.seed ^ content::REQUEST_SALT, 0, &mut buf[at..]);
        }
        conn.class = class;
        conn.expect = spec;
        conn.req_at = now;
        conn.got_first = false;
        conn.head.clear();
        conn.head_done = false;
        conn.clen = 0;
        conn.body_got = 0;
        conn.bad = false;
        conn.misrouted = false;
        conn.resp_close = false;
        conn.phase = Phase::Waiting;
        if !conn.background {
            c.req_sent += 1;
        }
        self.mark_pending(id);
    }

    fn close(&mut self, id: u32, now: u64) {
        let conn = &mut self.conns[id as usize];
        if conn.phase != Phase::Closing {
            conn.phase = Phase::Closing;
            conn.tcb.fin_queued = true;
            conn.closing_since = now;
        }
        self.mark_pending(id);
    }

    /// A response finished (`ok` false: integrity, HTTP or routing failure counted).
    fn response_done(&mut self, id: u32, now: u64, c: &mut Counters) {
        let conn = &mut self.conns[id as usize];
        if conn.background {
            // An idle one: answered once, now it sits on the connection until the drain.
            c.idle_answered += 1;
            conn.phase = Phase::Thinking;
            conn.think_until = u64::MAX;
            return;
        }
        self.h_resp.record(now - conn.req_at);
        let failed = if conn.bad {
            c.req_integrity += 1;
            true
        } else if conn.misrouted {
            c.req_misrouted += 1;
            true
        } else {
            c.req_ok += 1;
            c.body_bytes_checked += conn.body_got;
            false
        };
        conn.reqs_done += 1;
        if failed
            || conn.resp_close
            || conn.tcb.fin_rcvd
            || !self.running
            || conn.reqs_done >= self.cfg.requests_per_conn
        {
            self.close(id, now);
        } else if self.cfg.think_ns > 0 {
            conn.phase = Phase::Thinking;
            conn.think_until = now + self.cfg.think_ns;
        } else {
            self.start_request(id, now, c);
        }
    }

    /// Feeds response bytes; returns true when the response is complete.
    fn feed(&mut self, id: u32, mut data: &[u8], now: u64) -> Result<bool, ()> {
        let routes_len = self.cfg.routes.len();
        let conn = &mut self.conns[id as usize];
        if conn.phase != Phase::Waiting {
            return Err(());
        }
        if !conn.got_first && !conn.background {
            conn.got_first = true;
            let d = now - conn.req_at;
            self.h_ttfb.record(d);
            self.h_ttfb_class[conn.class.index()].record(d);
            self.s_ttfb.record(d);
        }
        if !conn.head_done {
            let old = conn.head.len();
            let room = 8192usize.saturating_sub(old);
            let take = data.len().min(room);
            conn.head.extend_from_slice(&data[..take]);
            match head_end(&conn.head, old) {
                None => {
                    if conn.head.len() >= 8192 {
                        return Err(());
                    }
                    return Ok(false);
                }
                Some(end) => {
                    // bytes of this segment after the head are body
                    let used = end - old;
                    data = &data[used..];
                    conn.head.truncate(end);
                    conn.head_done = true;
                    let mut headers = [httparse::EMPTY_HEADER; 16];
                    let mut resp = httparse::Response::new(&mut headers);
                    match resp.parse(&conn.head) {
                        Ok(httparse::Status::Complete(_)) => {}
                        _ => return Err(()),
                    }
                    if resp.code != Some(200) {
                        return Err(());
                    }
                    let mut clen = None;
                    let mut backend = None;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            clen = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|s| s.trim().parse::<u64>().ok());
                        } else if h.name.eq_ignore_ascii_case("x-backend") {
                            backend = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|s| s.trim().parse::<Ipv4Addr>().ok());
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            conn.resp_close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    let Some(clen) = clen else {
                        return Err(());
                    };
                    if clen != conn.expect.size {
                        conn.bad = true;
                    }
                    conn.clen = clen;
                    if routes_len > 0 && (conn.reqs_done == 0 || self.cfg.route_every_request) {
                        let want = self
                            .cfg
                            .routes
                            .iter()
                            .find(|r| r.0 == conn.class)
                            .map(|r| r.1);
                        if let Some(want) = want {
                            if backend != Some(want) {
                                conn.misrouted = true;
                            }
                        }
                    }
                }
            }
        }
        if !data.is_empty() {
            if conn.body_got + data.len() as u64 > conn.clen {
                return Err(());
            }
            if !conn.bad && !content::check_body(conn.expect.seed, conn.body_got, data) {
                conn.bad = true;
            }
            conn.body_got += data.len() as u64;
        }
        Ok(conn.body_got == conn.clen)
    }

    /// Polls the port once: handles every frame, then sends what is owed.
    pub fn poll(&mut self, now: u64, c: &mut Counters) -> usize {
        let mut batch = std::mem::take(&mut self.batch);
        let n = self.net.rx(&mut batch, c);
        for m in batch.drain() {
            self.net.count_rx_bytes(m.len(), c);
            match self.net.parse(&m) {
                Ok(Rx::Arp(arp)) => self.on_arp(&arp, c),
                Ok(Rx::Tcp(seg)) => self.on_tcp(&seg, now, c),
                Err(d) => count_drop(d, c),
            }
        }
        self.batch = batch;
        self.output(now, c);
        n
    }

    fn on_arp(&mut self, arp: &tcpstate::wire::ArpRepr, c: &mut Counters) {
        if arp.sender_ip == self.cfg.gateway && arp.sender_mac.is_unicast() {
            self.gw_mac = Some(arp.sender_mac);
        }
        if arp.operation == arp_op::REQUEST && self.owns(arp.target_ip) {
            self.net.send_arp(
                arp_op::REPLY,
                arp.target_ip,
                arp.sender_mac,
                arp.sender_ip,
                c,
            );
            c.arp_answered += 1;
        }
    }

    fn on_tcp(&mut self, seg: &TcpIn<'_>, now: u64, c: &mut Counters) {
        let r = &seg.repr;
        let k = key(seg.src_ip, r.src_port, seg.dst_ip, r.dst_port);
        let Some(&id) = self.map.get(&k) else {
            if self.is_flood_ip(seg.dst_ip) {
                if r.flags & tcp_flags::SYN != 0 {
                    c.flood_synacks += 1;
                } else {
                    c.flood_other += 1;
                }
            } else if self.cfg.ips.contains(&seg.dst_ip) {
                c.drop_stray += 1;
                answer_stray(&mut self.net, seg.src_mac, seg.dst_ip, seg.src_ip, r, c);
            } else {
                c.drop_not_for_us += 1;
            }
            return;
        };
        let rst = r.flags & tcp_flags::RST != 0;
        let syn = r.flags & tcp_flags::SYN != 0;
        let conn = &mut self.conns[id as usize];
        if conn.tcb.st == St::SynSent {
            let acks_syn = r.ack_number == Some(conn.tcb.iss + 1);
            if rst {
                if acks_syn {
                    c.conn_refused += 1;
                    self.release(id);
                }
                return;
            }
            if !(syn && acks_syn) {
                return;
            }
            conn.tcb.rcv_nxt = r.seq_number + 1;
            conn.tcb.st = St::Est;
            conn.tcb.peer_wnd = u32::from(r.window_len);
            conn.tcb.peer_mss = r.max_seg_size.unwrap_or(536);
            conn.tcb.rto_at = 0;
            conn.tcb.retries = 0;
            conn.tcb.rto = self.cfg.rto_ns;
            conn.tcb.ack_now = true;
            if conn.background {
                c.bg_established += 1;
                if !self.running {
                    self.close(id, now);
                } else if conn.slow {
                    conn.sendbuf.clear();
                    conn.sendbuf
                        .extend_from_slice(b"GET /slow HTTP/1.1\r\nHost: ");
                    conn.sendbuf.extend_from_slice(self.cfg.host.as_bytes());
                    conn.sendbuf.extend_from_slice(b"\r\n");
                    conn.head.clear();
                    conn.phase = Phase::Slow;
                    conn.next_trickle = now + self.cfg.trickle_ns;
                } else {
                    self.start_request(id, now, c);
                }
                self.mark_pending(id);
                return;
            }
            let d = now - conn.started;
            self.h_connect.record(d);
            self.s_connect.record(d);
            c.conn_established += 1;
            if self.running {
                self.start_request(id, now, c);
            } else {
                self.close(id, now);
            }
            self.mark_pending(id);
            return;
        }
        if rst {
            // acceptable if it starts inside what we expect next
            let d = r.seq_number.wrapping_diff(conn.tcb.rcv_nxt);
            if (0..65536).contains(&d) {
                if conn.phase != Phase::Waiting
                    && conn.phase != Phase::Connecting
                    && !conn.background
                {
                    c.conn_reset_idle += 1;
                }
                self.abort(id, false, c);
            }
            return;
        }
        if syn {
            // a retransmitted SYN-ACK: our ACK was lost
            conn.tcb.ack_now = true;
            self.mark_pending(id);
            return;
        }
        if let Some(ack) = r.ack_number {
            let end = conn.send_base + conn.sendbuf.len() as u64;
            let _ = end;
            conn.tcb.on_ack(ack, r.window_len, now, self.cfg.rto_ns);
        }
        let fin = r.flags & tcp_flags::FIN != 0;
        let d = conn.tcb.on_data(r.seq_number, seg.payload.len(), fin, c);
        if conn.phase == Phase::Slow && (d.take > 0 || d.fin) {
            // The switch's answer to a head that never ended: 408 expected.
            let data = &seg.payload[d.skip..d.skip + d.take];
            if data.starts_with(b"HTTP/1.1 408") {
                c.slow_408 += 1;
            } else if !data.is_empty() {
                c.slow_other += 1;
            } else {
                c.slow_closed += 1;
            }
            self.close(id, now);
            self.mark_pending(id);
            self.maybe_done(id, c);
            return;
        }
        if d.take > 0 {
            let data = &seg.payload[d.skip..d.skip + d.take];
            match self.feed(id, data, now) {
                Ok(true) => self.response_done(id, now, c),
                Ok(false) => {}
                Err(()) => {
                    let conn = &mut self.conns[id as usize];
                    if conn.phase == Phase::Waiting {
                        c.req_http += 1;
                    } else {
                        c.drop_stray += 1;
                    }
                    conn.tcb.send_rst(&mut self.net, c);
                    self.release(id);
                    return;
                }
            }
        }
        let conn = &mut self.conns[id as usize];
        if d.fin {
            match conn.phase {
                Phase::Waiting => {
                    c.req_closed += 1;
                    self.close(id, now);
                }
                Phase::Thinking | Phase::Connecting | Phase::Slow => self.close(id, now),
                Phase::Closing => {}
            }
        }
        self.mark_pending(id);
        self.maybe_done(id, c);
    }

    /// Frees a closing connection once both FINs are through.
    fn maybe_done(&mut self, id: u32, c: &mut Counters) -> bool {
        let conn = &self.conns[id as usize];
        let end = conn.send_base + conn.sendbuf.len() as u64;
        if conn.phase == Phase::Closing
            && conn.tcb.fin_rcvd
            && conn.tcb.fin_acked(end)
            && !conn.tcb.ack_now
        {
            if !conn.background {
                c.conn_closed_clean += 1;
            }
            self.release(id);
            return true;
        }
        false
    }

    /// Sends what the pending connections owe.
    pub fn output(&mut self, now: u64, c: &mut Counters) {
        let mut i = 0;
        while i < self.pending.len() {
            let id = self.pending[i];
            let conn = &mut self.conns[id as usize];
            if self.map.get(&key(
                conn.tcb.rip,
                conn.tcb.rport,
                conn.tcb.lip,
                conn.tcb.lport,
            )) != Some(&id)
            {
                // released meanwhile
                conn.pending = false;
                i += 1;
                continue;
            }
            let src = BufSource {
                buf: &conn.sendbuf,
                base: conn.send_base,
            };
            let done = conn
                .tcb
                .output(&src, &mut self.net, &mut self.scratch, now, c, false);
            if !done {
                break;
            }
            conn.pending = false;
            i += 1;
            self.maybe_done(id, c);
        }
        self.pending.drain(..i);
        self.net.flush();
    }

    /// Timers: retransmissions, think time, timeouts. Call every millisecond or so.
    pub fn timers(&mut self, now: u64, c: &mut Counters) {
        let mut k = 0;
        while k < self.active.len() {
            let id = self.active[k];
            let conn = &mut self.conns[id as usize];
            let t = &mut conn.tcb;
            if t.rto_at != 0 && now >= t.rto_at {
                if t.st == St::SynSent {
                    if t.on_rto(now) {
                        c.client_retransmits += 1;
                        t.send_syn(&mut self.net, c);
                    } else {
                        self.abort(id, true, c);
                        continue;
                    }
                } else if t.on_rto(now) {
                    self.mark_pending(id);
                } else {
                    self.abort(id, true, c);
                    continue;
                }
            }
            let conn = &mut self.conns[id as usize];
            match conn.phase {
                Phase::Connecting if now >= conn.started + self.cfg.timeout_ns => {
                    self.abort(id, true, c);
                    continue;
                }
                Phase::Waiting if now >= conn.req_at + self.cfg.timeout_ns => {
                    self.abort(id, true, c);
                    continue;
                }
                Phase::Closing if now >= conn.closing_since + self.cfg.timeout_ns => {
                    // the peer never finished closing: give up quietly
                    conn.tcb.send_rst(&mut self.net, c);
                    self.release(id);
                    continue;
                }
                Phase::Thinking if now >= conn.think_until => {
                    if self.running {
                        self.start_request(id, now, c);
                    } else {
                        self.close(id, now);
                    }
                }
                _ => {}
            }
            k += 1;
        }
    }

    /// Stops starting requests; idle connections close, and the background ones.
    pub fn drain(&mut self, now: u64) {
        self.running = false;
        for k in 0..self.active.len() {
            let id = self.active[k];
            if self.conns[id as usize].phase == Phase::Thinking {
                self.close(id, now);
            }
        }
        for k in 0..self.background.len() {
            let id = self.background[k];
            if matches!(self.conns[id as usize].phase, Phase::Thinking | Phase::Slow) {
                self.close(id, now);
            }
        }
    }

    /// The background connections' timers: retransmissions, the slow ones' next header
    /// line, and the give-ups. Every 10 ms is enough: none of it is measured.
    pub fn background_timers(&mut self, now: u64, c: &mut Counters) {
        let mut k = 0;
        while k < self.background.len() {
            let id = self.background[k];
            let conn = &mut self.conns[id as usize];
            let t = &mut conn.tcb;
            if t.rto_at != 0 && now >= t.rto_at {
                if !t.on_rto(now) {
                    self.abort(id, true, c);
                    continue;
                }
                if t.st == St::SynSent {
                    t.send_syn(&mut self.net, c);
                } else {
                    self.mark_pending(id);
                }
            }
            let conn = &mut self.conns[id as usize];
            let gave_up = match conn.phase {
                Phase::Connecting => now >= conn.started + self.cfg.timeout_ns,
                Phase::Waiting => now >= conn.req_at + self.cfg.timeout_ns,
                Phase::Closing => now >= conn.closing_since + self.cfg.timeout_ns,
                Phase::Slow => {
                    if now >= conn.next_trickle {
                        conn.next_trickle = now + self.cfg.trickle_ns;
                        let n = conn.sendbuf.len();
                        use std::io::Write;
                        let _ = write!(conn.sendbuf, "X-Slow-{n}: 1\r\n");
                        self.mark_pending(id);
                    }
                    false
                }
                Phase::Thinking => false,
            };
            if gave_up {
                self.abort(id, true, c);
                continue;
            }
            k += 1;
        }
    }

    /// Background connections open now.
    pub fn background_open(&self) -> usize {
        self.background.len()
    }

    /// Connections still connecting and requests still waiting for their response.
    pub fn in_flight(&self) -> (u64, u64) {
        let mut r = (0, 0);
        for &id in &self.active {
            match self.conns[id as usize].phase {
                Phase::Connecting => r.0 += 1,
                Phase::Waiting => r.1 += 1,
                _ => {}
            }
        }
        r
    }

    /// Gratuitous ARP for every client (and flood) address, so a switch that cached an
    /// earlier run's MAC for them learns this one's.
    pub fn announce(&mut self, flood: bool, c: &mut Counters) {
        let mut ips = self.cfg.ips.clone();
        ips.extend_from_slice(&self.cfg.background_ips);
        if flood {
            ips.extend((self.cfg.flood_ips.0..=self.cfg.flood_ips.1).map(Ipv4Addr::from));
        }
        for ip in ips {
            self.net
                .send_arp(arp_op::REQUEST, ip, MacAddr([0; 6]), ip, c);
        }
        self.net.flush();
    }

    /// At the end: counts what is still open as unfinished.
    pub fn finish(&mut self, c: &mut Counters) {
        for &id in &self.active {
            match self.conns[id as usize].phase {
                Phase::Connecting => c.conn_unfinished += 1,
                Phase::Waiting => c.req_unfinished += 1,
                _ => {}
            }
        }
    }

    /// Sends `n` spoofed SYNs from random sources in the flood range.
    pub fn flood(&mut self, n: u32, c: &mut Counters) {
        let Some(gw) = self.gw_mac else {
            return;
        };
        let (lo, hi) = self.cfg.flood_ips;
        for _ in 0..n {
            let ip = Ipv4Addr::from(lo + self.rng.below(u64::from(hi - lo + 1)) as u32);
            let port = 1024 + self.rng.below(64000) as u16;
            let target = self.cfg.targets[self.next_target % self.cfg.targets.len()];
            let r = TcpRepr {
                src_port: port,
                dst_port: target.port(),
                seq_number: SeqNumber(self.rng.next_u64() as u32),
                ack_number: None,
                flags: tcp_flags::SYN,
                window_len: 64240,
                max_seg_size: Some(1460),
                window_scale: None,
                sack_permitted: false,
                timestamps: None,
                payload_len: 0,
            };
            self.net.send_tcp(gw, ip, *target.ip(), &r, &[], c);
            c.flood_syns += 1;
        }
    }
}
