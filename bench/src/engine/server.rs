//! The server side: emulated backends. Answers ARP for the backend addresses, accepts
//! TCP on the service port, reads each request (checking a request body against its
//! URL), and answers with the body the URL implies, generated on the fly, with an
//! `X-Backend` header naming the address that served it. Optionally slow (a delay
//! before each response) or closing after N responses.
use std::net::Ipv4Addr;

use dpdk_env::MbufBatch;
use hashbrown::HashMap;
use tcpstate::wire::{arp_op, tcp_flags};

use super::net::{count_drop, Net, Rx, TcpIn};
use super::tcp::{answer_stray, Source, St, Tcb, MSS};
use crate::content::{self, BodySpec, Rng};
use crate::report::Counters;

#[derive(Debug, Clone)]
pub struct ServerCfg {
    pub ips: Vec<Ipv4Addr>,
    pub port: u16,
    pub max_conns: usize,
    pub delay_ns: u64,
    /// Close after this many responses (0: never).
    pub close_after: u32,
    pub rto_ns: u64,
    /// A connection with nothing happening for this long is dropped.
    pub idle_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Body {
        left: u64,
        seed: u64,
        off: u64,
    },
    /// A request is complete; the response starts at `at` (delay) once the previous
    /// one is acknowledged.
    Ready {
        at: u64,
    },
}

struct Conn {
    tcb: Tcb,
    irs: u32,
    phase: Phase,
    rbuf: Vec<u8>,
    /// The response being sent: head bytes then `body`, starting at stream offset
    /// `resp_start`.
    resp_start: u64,
    resp_head: Vec<u8>,
    resp_body: BodySpec,
    /// The response the pending request gets.
    next: BodySpec,
    next_bad: bool,
    served: u32,
    last_activity: u64,
    active_pos: usize,
    pending: bool,
}

struct Resp<'a> {
    start: u64,
    head: &'a [u8],
    body: BodySpec,
}

impl Source for Resp<'_> {
    fn end(&self) -> u64 {
        self.start + self.head.len() as u64 + self.body.size
    }
    fn fill(&self, off: u64, out: &mut [u8]) {
        debug_assert!(off >= self.start);
        let mut rel = off - self.start;
        let mut i = 0;
        let hl = self.head.len() as u64;
        if rel < hl {
            let n = ((hl - rel) as usize).min(out.len());
            out[..n].copy_from_slice(&self.head[rel as usize..rel as usize + n]);
            i = n;
            rel += n as u64;
        }
        if i < out.len() {
            content::fill_body(self.body.seed, rel - hl, &mut out[i..]);
        }
    }
}

type Key = (u32, u16, u32, u16);

pub struct Server {
    pub net: Net,
    cfg: ServerCfg,
    conns: Vec<Conn>,
    free: Vec<u32>,
    active: Vec<u32>,
    map: HashMap<Key, u32>,
    pending: Vec<u32>,
    rng: Rng,
    scratch: Vec<u8>,
    batch: MbufBatch,
}

fn key(rip: Ipv4Addr, rport: u16, lip: Ipv4Addr, lport: u16) -> Key {
    (u32::from(rip), rport, u32::from(lip), lport)
}

impl Server {
    pub fn new(net: Net, cfg: ServerCfg, seed: u64) -> Server {
        Server {
            net,
            map: HashMap::with_capacity(cfg.max_conns),
            conns: Vec::new(),
            free: Vec::new(),
            active: Vec::new(),
            pending: Vec::with_capacity(1024),
            rng: Rng(seed ^ 0x005E_4EE4),
            scratch: vec![0u8; MSS],
            batch: MbufBatch::new(),
            cfg,
        }
    }

    /// Gratuitous ARP for every backend address (see `Client::announce`).
    pub fn announce(&mut self, c: &mut Counters) {
        for ip in self.cfg.ips.clone() {
            self.net
                .send_arp(arp_op::REQUEST, ip, tcpstate::wire::MacAddr([0; 6]), ip, c);
        }
        self.net.flush();
    }

    pub fn active(&self) -> usize {
        self.active.len()
    }

    pub fn poll(&mut self, now: u64, c: &mut Counters) -> usize {
        let mut batch = std::mem::take(&mut self.batch);
        let n = self.net.rx(&mut batch, c);
        for m in batch.drain() {
            self.net.count_rx_bytes(m.len(), c);
            match self.net.parse(&m) {
                Ok(Rx::Arp(arp)) => {
                    if arp.operation == arp_op::REQUEST && self.cfg.ips.contains(&arp.target_ip) {
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
                Ok(Rx::Tcp(seg)) => self.on_tcp(&seg, now, c),
                Err(d) => count_drop(d, c),
            }
        }
        self.batch = batch;
        self.output(now, c);
        // Frames in the delay line are work to come: keep polling until they are out.
        n + self.net.held()
    }

    fn release(&mut self, id: u32) {
        let conn = &self.conns[id as usize];
        let t = &conn.tcb;
        self.map.remove(&key(t.rip, t.rport, t.lip, t.lport));
        let pos = conn.active_pos;
        let last = *self.active.last().expect("active");
        self.active.swap_remove(pos);
        if last != id {
            self.conns[last as usize].active_pos = pos;
        }
        self.free.push(id);
    }

    fn mark_pending(&mut self, id: u32) {
        let conn = &mut self.conns[id as usize];
        if !conn.pending {
            conn.pending = true;
            self.pending.push(id);
        }
    }

    fn accept(&mut self, seg: &TcpIn<'_>, now: u64, c: &mut Counters) {
        let r = &seg.repr;
        if self.active.len() >= self.cfg.max_conns {
            c.drop_server_full += 1;
            return;
        }
        let mut tcb = Tcb::new(
            St::SynRcvd,
            seg.dst_ip,
            r.dst_port,
            seg.src_ip,
            r.src_port,
            seg.src_mac,
            self.rng.next_u64() as u32,
            self.cfg.rto_ns,
        );
        tcb.rcv_nxt = r.seq_number + 1;
        tcb.peer_mss = r.max_seg_size.unwrap_or(536);
        tcb.peer_wnd = u32::from(r.window_len);
        tcb.rto_at = now + self.cfg.rto_ns;
        let id = match self.free.pop() {
            Some(id) => {
                self.conns[id as usize].tcb = tcb;
                id
            }
            None => {
                self.conns.push(Conn {
                    tcb,
                    irs: 0,
                    phase: Phase::Head,
                    rbuf: Vec::new(),
                    resp_start: 0,
                    resp_head: Vec::new(),
                    resp_body: BodySpec { size: 0, seed: 0 },
                    next: BodySpec { size: 0, seed: 0 },
                    next_bad: false,
                    served: 0,
                    last_activity: 0,
                    active_pos: 0,
                    pending: false,
                });
                (self.conns.len() - 1) as u32
            }
        };
        let pos = self.active.len();
        self.active.push(id);
        let conn = &mut self.conns[id as usize];
        conn.irs = r.seq_number.0;
        conn.phase = Phase::Head;
        conn.rbuf.clear();
        conn.resp_start = 0;
        conn.resp_head.clear();
        conn.resp_body = BodySpec { size: 0, seed: 0 };
        conn.served = 0;
        conn.last_activity = now;
        conn.active_pos = pos;
        conn.pending = false;
        self.map
            .insert(key(seg.src_ip, r.src_port, seg.dst_ip, r.dst_port), id);
        conn.tcb.send_syn(&mut self.net, c);
    }

    fn on_tcp(&mut self, seg: &TcpIn<'_>, now: u64, c: &mut Counters) {
        let r = &seg.repr;
        if !self.cfg.ips.contains(&seg.dst_ip) {
            c.drop_not_for_us += 1;
            return;
        }
        let syn = r.flags & tcp_flags::SYN != 0;
        let rst = r.flags & tcp_flags::RST != 0;
        let k = key(seg.src_ip, r.src_port, seg.dst_ip, r.dst_port);
        let Some(&id) = self.map.get(&k) else {
            if syn && r.ack_number.is_none() && !rst {
                if r.dst_port == self.cfg.port {
                    self.accept(seg, now, c);
                } else {
                    c.srv_closed_port += 1;
                    answer_stray(&mut self.net, seg.src_mac, seg.dst_ip, seg.src_ip, r, c);
                }
            } else {
                c.drop_stray += 1;
                answer_stray(&mut self.net, seg.src_mac, seg.dst_ip, seg.src_ip, r, c);
            }
            return;
        };
        let conn = &mut self.conns[id as usize];
        conn.last_activity = now;
        if syn && r.ack_number.is_none() {
            if conn.tcb.st == St::SynRcvd && conn.irs == r.seq_number.0 {
                conn.tcb.send_syn(&mut self.net, c); // our SYN-ACK was lost
            } else {
                // a new connection on a tuple we still hold: the old one is over
                self.release(id);
                self.accept(seg, now, c);
            }
            return;
        }
        if rst {
            let d = r.seq_number.wrapping_diff(conn.tcb.rcv_nxt);
            if (0..65536).contains(&d) {
                c.srv_resets += 1;
                self.release(id);
            }
            return;
        }
        let Some(ack) = r.ack_number else {
            return;
        };
        if conn.tcb.st == St::SynRcvd {
            if ack != conn.tcb.iss + 1 {
                return;
            }
            conn.tcb.st = St::Est;
            conn.tcb.rto_at = 0;
            conn.tcb.retries = 0;
            conn.tcb.rto = self.cfg.rto_ns;
            c.srv_accepted += 1;
        } else {
            conn.tcb.on_ack(ack, r.window_len, now, self.cfg.rto_ns);
        }
        let fin = r.flags & tcp_flags::FIN != 0;
        let d = conn.tcb.on_data(r.seq_number, seg.payload.len(), fin, c);
        if d.take > 0 {
            if conn.rbuf.len() + d.take > 65536 {
                c.srv_bad_request += 1;
                conn.tcb.send_rst(&mut self.net, c);
                self.release(id);
                return;
            }
            conn.rbuf
                .extend_from_slice(&seg.payload[d.skip..d.skip + d.take]);
        }
        if !self.process(id, now, c) {
            return;
        }
        self.mark_pending(id);
    }

    /// Runs the request parser over the buffered bytes and responds when it can.
    /// False when the connection was dropped.
    fn process(&mut self, id: u32, now: u64, c: &mut Counters) -> bool {
        let delay = self.cfg.delay_ns;
        let close_after = self.cfg.close_after;
        let conn = &mut self.conns[id as usize];
        loop {
            match conn.phase {
                Phase::Head => {
                    if conn.tcb.fin_queued {
                        conn.rbuf.clear();
                        break;
                    }
                    let Some(end) = conn.rbuf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        if conn.rbuf.len() > 16384 {
                            c.srv_bad_request += 1;
                            conn.tcb.send_rst(&mut self.net, c);
                            self.release(id);
                            return false;
                        }
                        break;
                    };
                    let end = end + 4;
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    let mut req = httparse::Request::new(&mut headers);
                    let parsed = matches!(
                        req.parse(&conn.rbuf[..end]),
                        Ok(httparse::Status::Complete(_))
                    );
                    let path = req.path.unwrap_or("");
                    if !parsed || path.is_empty() {
                        c.srv_bad_request += 1;
                        conn.tcb.send_rst(&mut self.net, c);
                        self.release(id);
                        return false;
                    }
                    let spec = content::body_for_target(path.as_bytes());
                    let mut clen = 0u64;
                    for h in req.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            clen = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|s| s.trim().parse().ok())
                                .unwrap_or(0);
                        }
                    }
                    c.srv_requests += 1;
                    conn.next = spec;
                    conn.next_bad = false;
                    conn.rbuf.drain(..end);
                    conn.phase = if clen > 0 {
                        Phase::Body {
                            left: clen,
                            seed: spec.seed ^ content::REQUEST_SALT,
                            off: 0,
                        }
                    } else {
                        Phase::Ready { at: now + delay }
                    };
                }
                Phase::Body { left, seed, off } => {
                    let take = (left as usize).min(conn.rbuf.len());
                    if take == 0 {
                        break;
                    }
                    if !content::check_body(seed, off, &conn.rbuf[..take]) {
                        conn.next_bad = true;
                    }
                    conn.rbuf.drain(..take);
                    let left = left - take as u64;
                    conn.phase = if left == 0 {
                        if conn.next_bad {
                            c.srv_body_integrity += 1;
                        }
                        Phase::Ready { at: now + delay }
                    } else {
                        Phase::Body {
                            left,
                            seed,
                            off: off + take as u64,
                        }
                    };
                }
                Phase::Ready { at } => {
                    let end = conn.resp_start + conn.resp_head.len() as u64 + conn.resp_body.size;
                    if now < at || !conn.tcb.all_acked(end) || conn.tcb.fin_queued {
                        break;
                    }
                    // the response: head then the body the URL implies
                    conn.served += 1;
                    let close = close_after > 0 && conn.served >= close_after;
                    conn.resp_start = end;
                    conn.resp_body = conn.next;
                    conn.resp_head.clear();
                    {
                        use std::io::Write;
                        let _ = write!(
                            conn.resp_head,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nX-Backend: {}\r\n{}\r\n",
                            conn.next.size,
                            conn.tcb.lip,
                            if close { "Connection: close\r\n" } else { "" }
                        );
                    }
                    c.srv_responses += 1;
                    if close {
                        conn.tcb.fin_queued = true;
                    }
                    conn.phase = Phase::Head;
                }
            }
        }
        // the client closed and nothing is left to answer: close too
        if conn.tcb.fin_rcvd && conn.phase == Phase::Head && conn.rbuf.is_empty() {
            conn.tcb.fin_queued = true;
        }
        true
    }

    fn maybe_done(&mut self, id: u32) -> bool {
        let conn = &self.conns[id as usize];
        let end = conn.resp_start + conn.resp_head.len() as u64 + conn.resp_body.size;
        if conn.tcb.fin_rcvd && conn.tcb.fin_acked(end) && !conn.tcb.ack_now {
            self.release(id);
            return true;
        }
        false
    }

    pub fn output(&mut self, now: u64, c: &mut Counters) {
        let mut i = 0;
        while i < self.pending.len() {
            let id = self.pending[i];
            let conn = &mut self.conns[id as usize];
            let t = &conn.tcb;
            if self.map.get(&key(t.rip, t.rport, t.lip, t.lport)) != Some(&id) {
                conn.pending = false;
                i += 1;
                continue;
            }
            let src = Resp {
                start: conn.resp_start,
                head: &conn.resp_head,
                body: conn.resp_body,
            };
            let done = conn
                .tcb
                .output(&src, &mut self.net, &mut self.scratch, now, c, true);
            if !done {
                break;
            }
            conn.pending = false;
            i += 1;
            self.maybe_done(id);
        }
        self.pending.drain(..i);
        self.net.flush();
    }

    pub fn timers(&mut self, now: u64, c: &mut Counters) {
        let mut k = 0;
        while k < self.active.len() {
            let id = self.active[k];
            let conn = &mut self.conns[id as usize];
            if now >= conn.last_activity + self.cfg.idle_ns {
                conn.tcb.send_rst(&mut self.net, c);
                self.release(id);
                continue;
            }
            let t = &mut conn.tcb;
            if t.rto_at != 0 && now >= t.rto_at {
                if !t.on_rto(now) {
                    t.send_rst(&mut self.net, c);
                    self.release(id);
                    continue;
                }
                if t.st == St::SynRcvd {
                    c.server_retransmits += 1;
                    t.send_syn(&mut self.net, c);
                } else {
                    self.mark_pending(id);
                }
            }
            let conn = &self.conns[id as usize];
            if let Phase::Ready { at } = conn.phase {
                if now >= at && self.process(id, now, c) {
                    self.mark_pending(id);
                }
            }
            k += 1;
        }
    }
}
