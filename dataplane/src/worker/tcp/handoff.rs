//! Handoff, the switch's side (VIP mode `handoff`; `tcpstate::conn::handoff` decides,
//! `tcpstate::handoff` is the agent's side). A routed connection is not spliced: its held
//! bytes go to the agent in front of the chosen backend as segments of the client's own
//! connection, each with the handoff option, and every later client segment is forwarded
//! there with only its Ethernet addresses rewritten. The backend answers the client
//! directly, so response bytes never cross the switch.
use std::sync::Arc;

use rules::framing::{RequestFramer, RequestMethod};
use rules::{http, Action};
use tcpstate::conn::{BackendTarget, Emit, HandoffHead, Outputs, State, Verdict};
use tcpstate::flow::{ConnId, FlowKey};
use tcpstate::handoff::control::Control;
use tcpstate::handoff::option::{options_with_handoff, HandoffRecord};
use tcpstate::handoff::watch::{Migration, WatchStep};
use tcpstate::wire::tunnel::Encap;
use tcpstate::wire::{
    ethertype, ip_proto, tcp_flags, EthernetFrame, Ipv4Packet, Ipv4Repr, MacAddr, SeqNumber,
    TcpPacket,
};

use super::super::Worker;
use super::{Rx, ETH, IP};
use crate::stats::{Counter, DropReason};
use dpdk_env::Mbuf;

/// A segment of a handed-off connection's client tuple that the switch itself sends
/// toward the agent: a piece of the held head, or a bare RST.
pub(super) struct AgentSegment<'a> {
    pub(super) seq: SeqNumber,
    pub(super) ack: SeqNumber,
    pub(super) flags: u8,
    pub(super) window: u16,
    pub(super) options: &'a [u8],
    /// The bytes of `Conn::head_bytes` it carries (`send_to_agent`).
    pub(super) head: std::ops::Range<usize>,
}

/// Where a segment toward an agent goes: the backend port, the next hop's MAC, and the
/// tunnel to a routed backend.
#[derive(Clone, Copy)]
pub(super) struct AgentPath {
    pub(super) port: usize,
    pub(super) mac: MacAddr,
    pub(super) tunnel: Option<Tunnel>,
}

/// What the watch says about a client segment of a handed-off connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watched {
    Pass,
    /// Not forwarded (counted); the client sends it again.
    Drop,
    /// A request the rules refuse, or framing lost: end the connection.
    Refuse,
    /// A request of another pool: held (with what follows it) for a move to its agent.
    Held,
}

/// A move's release is asked again this often, at most [`MOVE_TRIES`] times (ten seconds
/// for a response still under way, e.g. ahead of a pipelined request, to end).
const MOVE_RETRY_MS: u64 = 20;
const MOVE_TRIES: u32 = 500;

/// Payload of a head segment toward an agent: a 1,500-byte MTU less the IPv4 and TCP
/// headers and the largest option area this sends (timestamps and the handoff option).
const HANDOFF_SEGMENT: usize = 1500 - 20 - 20 - 32;

impl Worker {
    /// The head of `id` routed to `pool` on a handoff VIP: pick a backend whose agent is
    /// alive, and hand the connection to its agent; 503 when no backend can take it
    /// (`handoff_no_agent` when no member of the pool has a live agent: none has beaten
    /// within `handoff.agent_timeout_ms`, as at start before the first heartbeats).
    pub(super) fn hand_off(&mut self, id: ConnId, pool: usize, now_ms: u64) {
        self.tcp.pool_of[id as usize] = pool;
        let Some(b) = self.pick_backend(id, pool) else {
            let now_tsc = dpdk_env::rdtsc();
            let agents = &self.shared.agents;
            let members = self.tcp.pools.members(pool);
            if !members.iter().any(|&m| agents.alive(m, now_tsc)) {
                self.stats().add(Counter::HandoffNoAgent, 1);
            }
            self.respond(id, 503, now_ms);
            return;
        };
        if !self.tcp.meta[id as usize].prealloc_settled {
            self.tcp.meta[id as usize].prealloc_settled = true;
            self.prealloc_settle(id, b, now_ms);
        }
        let route = self.tcp.rt.routes[b];
        let Some(mac) = self.route_mac(&route, now_ms) else {
            // Wait as a connect does; the sweep comes back here once the MAC is known.
            self.stats().add(Counter::HandoffNoMac, 1);
            self.wait_for_mac(id, b, route, now_ms);
            return;
        };
        let meta = &mut self.tcp.meta[id as usize];
        meta.mark_tried(b);
        meta.backend_mac = mac;
        meta.backend_port = route.via_port;
        let target = BackendTarget {
            id: b,
            // The agent's host; the connection itself keeps the client's tuple.
            key: FlowKey {
                remote_ip: route.address,
                remote_port: route.port,
                local_ip: route.local_ip,
                local_port: 0,
            },
        };
        let Some(head) = self
            .tcp
            .flows
            .get_mut(id)
            .map(|c| c.hand_off(target, now_ms))
        else {
            return;
        };
        self.stats().add(Counter::HandoffsStarted, 1);
        crate::stats::bump(&self.stats().backend_requests[b], 1);
        // Bytes buffered behind the first request (its body, pipelined requests) go out
        // with the head: the watch reads them first.
        let start = self.tcp.watches[id as usize].as_ref().map(|w| w.framed());
        if let Some(start) = start {
            let mut scratch = std::mem::take(&mut self.tcp.seg_scratch);
            scratch.clear();
            if let Some(c) = self.tcp.flows.get(id) {
                let from = start.wrapping_diff(head.client_isn + 1).max(0) as usize;
                scratch.extend_from_slice(c.head_bytes().get(from..).unwrap_or(&[]));
            }
            let verdict = if scratch.is_empty() {
                Watched::Pass
            } else {
                // The client has nothing of the kernel's yet: a later request of another
                // pool waits for its turn (the move starts once the kernel has answered).
                self.watch(id, start, &scratch, Some(head.switch_isn + 1), now_ms)
            };
            self.tcp.seg_scratch = scratch;
            if verdict == Watched::Held {
                // Only the bytes before the held request go to this agent.
                let keep = self.tcp.watches[id as usize]
                    .as_ref()
                    .map(|w| w.framed().wrapping_diff(head.client_isn + 1).max(0) as usize);
                if let (Some(keep), Some(c)) = (keep, self.tcp.flows.get_mut(id)) {
                    c.truncate_handoff_head(keep);
                }
            } else if verdict != Watched::Pass {
                // Nothing went to the agent yet: the client alone is reset.
                self.stats().add(Counter::HandoffRefused, 1);
                self.send_to_client(
                    id,
                    &tcpstate::conn::SegmentOut::rst(head.switch_isn + 1),
                    now_ms,
                );
                if let Some(c) = self.tcp.flows.get_mut(id) {
                    c.end_handoff(now_ms);
                }
                return;
            }
        }
        self.send_handoff_head(id, &head);
    }

    /// Sends the held bytes of `id` to its agent, cut to fit the MTU with the option.
    fn send_handoff_head(&mut self, id: ConnId, head: &HandoffHead) {
        let Some(conn) = self.tcp.flows.get(id) else {
            return;
        };
        let Some(target) = conn.backend else { return };
        let record = HandoffRecord {
            client_isn: head.client_isn,
            mss: head.mss,
            client_ws: head.client_ws,
            switch_ws: head.switch_ws,
            sack_permitted: head.sack_permitted,
            timestamps: head.timestamps.is_some(),
            switch_tsval: head.timestamps.map_or(0, |t| t.1),
            backend_id: target.id as u16,
        };
        let mut options = [0u8; 40];
        let opt_len = options_with_handoff(head.timestamps, &record, &mut options);
        let total = conn.head_bytes().len();
        // The control transport's requests carry the head's end: the agent acks once its
        // kernel has acknowledged that far (the FIN counted).
        let head_end = head.client_isn + 1 + total + usize::from(head.fin);
        let control = self.control_transport();
        let piece = if control {
            tcpstate::handoff::channel::MAX_PIECE
        } else {
            HANDOFF_SEGMENT
        };
        // At least one segment, so an empty head (a bare FIN) still carries the state.
        let mut off = 0;
        loop {
            let n = (total - off).min(piece);
            let last = off + n >= total;
            let mut flags = tcp_flags::ACK | if last && n > 0 { tcp_flags::PSH } else { 0 };
            if last && head.fin {
                flags |= tcp_flags::FIN;
            }
            let seg = AgentSegment {
                seq: head.client_isn + 1 + off,
                ack: head.switch_isn + 1,
                flags,
                window: head.window,
                options: &options[..opt_len],
                head: off..off + n,
            };
            let sent = if control {
                self.send_handoff_request(id, &seg, head_end)
            } else {
                self.send_to_agent(id, &seg)
            };
            if !sent {
                return;
            }
            off += n;
            if last {
                break;
            }
        }
    }

    /// Builds and stages one segment of `id`'s client tuple toward its agent; `false`
    /// if it could not (no mbuf, or the connection is gone).
    fn send_to_agent(&mut self, id: ConnId, seg: &AgentSegment<'_>) -> bool {
        let Some(conn) = self.tcp.flows.get(id) else {
            return false;
        };
        let meta = self.tcp.meta[id as usize];
        let path = AgentPath {
            port: meta.backend_port,
            mac: meta.backend_mac,
            tunnel: self.tunnel_of(conn.backend.map(|t| t.id)),
        };
        let Some(payload) = conn.head_bytes().get(seg.head.clone()) else {
            return false;
        };
        let Some(m) = self.agent_frame(conn.client, path, seg, payload) else {
            return false;
        };
        self.stage(path.port, m);
        true
    }

    /// One segment of the client tuple `key` toward an agent by `path`, carrying
    /// `payload`; `None` (counted) when no mbuf is left.
    pub(super) fn agent_frame(
        &self,
        key: FlowKey,
        path: AgentPath,
        seg: &AgentSegment<'_>,
        payload: &[u8],
    ) -> Option<Mbuf> {
        let src_mac = self.shared.addrs[path.port].mac;
        let n = payload.len();
        let opt_len = seg.options.len();
        let Some(mut m) = Mbuf::alloc(&self.shared.pool) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return None;
        };
        let tcp_len = 20 + opt_len + n;
        let outer = path.tunnel.map_or(0, |t| t.encap.overhead());
        let frame_len = (ETH + outer + IP + tcp_len).max(60);
        let Some(buf) = m.append(frame_len) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return None;
        };
        buf.fill(0);
        {
            let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
            eth.set_dst_addr(path.mac);
            eth.set_src_addr(src_mac);
            eth.set_ethertype(ethertype::IPV4);
        }
        if let Some(t) = path.tunnel {
            t.encap
                .write_outer(&mut buf[ETH..], t.from, t.to, IP + tcp_len);
        }
        let buf = &mut buf[outer..];
        Ipv4Repr {
            src: key.remote_ip,
            dst: key.local_ip,
            protocol: ip_proto::TCP,
            payload_len: tcp_len,
            ttl: crate::l2l3::TTL,
        }
        .emit(&mut Ipv4Packet::new_unchecked(
            &mut buf[ETH..ETH + IP + tcp_len],
        ));
        let mut tcp = TcpPacket::new_unchecked(&mut buf[ETH + IP..ETH + IP + tcp_len]);
        tcp.set_src_port(key.remote_port);
        tcp.set_dst_port(key.local_port);
        tcp.set_seq_number(seg.seq);
        tcp.set_ack_number(seg.ack);
        tcp.set_header_len((20 + opt_len) as u8);
        tcp.set_flags(seg.flags);
        tcp.set_window_len(seg.window);
        tcp.set_urgent_at(0);
        tcp.options_mut().copy_from_slice(seg.options);
        tcp.payload_mut()[..n].copy_from_slice(payload);
        tcp.fill_checksum(key.remote_ip, key.local_ip);
        self.stats().add(Counter::TcpSegmentsSent, 1);
        Some(m)
    }

    /// The handoff was not confirmed in time: the head once more.
    pub(super) fn resend_handoff_head(&mut self, id: ConnId, now_ms: u64) {
        let Some(head) = self.tcp.flows.get_mut(id).map(|c| c.handoff_head(now_ms)) else {
            return;
        };
        self.stats().add(Counter::HandoffHeadsResent, 1);
        self.send_handoff_head(id, &head);
    }

    /// A client segment of a handed-off connection: to the agent, as it came (only the
    /// Ethernet addresses change; the agent and its kernel judge the segment).
    pub(super) fn forward_handed_off(&mut self, id: ConnId, mut m: Mbuf, rx: &Rx, now_ms: u64) {
        if self.awaits_handoff_ack(id) {
            // Control transport: the agent may not have the connection yet, unless the
            // client has heard from its kernel (then what was held goes first).
            let heard = self
                .tcp
                .flows
                .get_mut(id)
                .is_some_and(|c| c.handoff_heard_of(&rx.seg));
            if !heard {
                self.hold_for_ack(id, m, rx);
                return;
            }
            self.stats().add(Counter::HandoffHeardOf, 1);
            self.release_held_for_ack(id, now_ms);
        }
        let mut bare = *rx;
        let mut held = false;
        if let (true, Some(ack)) = (rx.seg.checked, rx.seg.ack) {
            // A move waits for the client to have the current kernel's whole response
            // (pipelined requests are held until then): its acks say how far it is.
            if let Some(mv) = self.tcp.watches[id as usize]
                .as_mut()
                .and_then(|w| w.pending_move())
            {
                if ack.wrapping_diff(mv.client_ack) > 0 {
                    mv.client_ack = ack;
                }
            }
        }
        if rx.seg.payload_len > 0 && rx.seg.checked {
            // A later request the rules refuse never reaches the agent.
            let payload = &m[ETH + IP + rx.tcp_hdr..ETH + rx.ip_total];
            let watched = self.watch(id, rx.seg.seq, payload, rx.seg.ack, now_ms);
            held = watched == Watched::Held;
            match watched {
                Watched::Pass => {}
                Watched::Drop | Watched::Held if rx.seg.ack.is_some() => {
                    // The bytes are not this agent's, but the acknowledgment is: often the
                    // client's last ack of the current response rides on its next request,
                    // and a kernel that never gets it would retransmit into a connection
                    // parked for a switch-back. The segment goes on as a bare ACK, ahead
                    // of the first Release.
                    bare = strip_to_ack(&mut m, rx);
                }
                Watched::Drop => return,
                Watched::Held => {
                    self.first_release(id, now_ms);
                    return;
                }
                Watched::Refuse => {
                    self.refuse_handed_off(id, rx.seg.ack, now_ms);
                    return;
                }
            }
        }
        let rx = &bare;
        let mut out = Outputs::default();
        let verdict = match self.tcp.flows.get_mut(id) {
            Some(conn) => {
                let payload = &m[ETH + IP + rx.tcp_hdr..ETH + rx.ip_total];
                conn.on_client(&rx.seg, payload, now_ms, &mut out)
            }
            None => return,
        };
        let meta = self.tcp.meta[id as usize];
        let tunnel = self
            .tcp
            .flows
            .get(id)
            .and_then(|c| self.tunnel_of(c.backend.map(|t| t.id)));
        if let Some(t) = tunnel {
            // Room for the encapsulation between the Ethernet header and the packet.
            let end = ETH + rx.ip_total;
            if m.len() > end {
                m.set_len(end);
            }
            let n = t.encap.overhead();
            if m.prepend(n).is_none() {
                self.stats().drop(DropReason::NoMbuf, 1);
                return;
            }
            m.copy_within(n..n + ETH, 0);
            t.encap
                .write_outer(&mut m[ETH..], t.from, t.to, rx.ip_total);
        }
        let mut eth = EthernetFrame::new_unchecked(&mut m[..]);
        eth.set_src_addr(self.shared.addrs[meta.backend_port].mac);
        eth.set_dst_addr(meta.backend_mac);
        self.stats().add(Counter::HandedOffPacketsC2b, 1);
        self.stats()
            .add(Counter::HandedOffBytesC2b, rx.seg.payload_len as u64);
        self.stage(meta.backend_port, m);
        if held {
            self.first_release(id, now_ms);
        }
        for e in out.iter() {
            if let Emit::ToClient(s) = e {
                self.send_to_client(id, &s, now_ms);
            }
        }
        self.apply_verdict(id, verdict, now_ms);
    }

    /// A move was just decided (the watch held a request for another agent): ask the
    /// current agent at once if the handoff is confirmed (else the moves tick does, once
    /// it is).
    fn first_release(&mut self, id: ConnId, now_ms: u64) {
        if self.handoff_confirmed(id) {
            self.send_release(id, now_ms);
        }
    }

    /// Runs `id`'s request watch over client bytes at `seq`: every later request's head
    /// is checked against the rules before any of it goes on.
    /// `client_ack`: the segment's acknowledgment number, when a request for another
    /// pool may start a move to another agent (`None`: it stays on this one).
    fn watch(
        &mut self,
        id: ConnId,
        seq: SeqNumber,
        payload: &[u8],
        client_ack: Option<SeqNumber>,
        now_ms: u64,
    ) -> Watched {
        let mut lent = false;
        loop {
            let Some(w) = self.tcp.watches[id as usize].as_mut() else {
                return Watched::Pass;
            };
            match w.on_segment(seq, payload) {
                WatchStep::Pass => return Watched::Pass,
                WatchStep::Drop if w.pending_move().is_some() => {
                    // Held for the next agent (or sent again by the client).
                    return Watched::Drop;
                }
                WatchStep::Drop => {
                    self.stats().drop(DropReason::HandoffWatchFull, 1);
                    return Watched::Drop;
                }
                WatchStep::NeedStore => {
                    let store = if lent { None } else { self.take_head_buffer() };
                    let Some(store) = store else {
                        self.stats().drop(DropReason::HeadBuffersExhausted, 1);
                        return Watched::Drop;
                    };
                    lent = true;
                    if let Some(w) = self.tcp.watches[id as usize].as_mut() {
                        w.lend(store);
                    }
                }
                WatchStep::Lost(e) => {
                    tracing::debug!(worker = self.index, conn = id, %e, "handed-off request framing lost");
                    return Watched::Refuse;
                }
                WatchStep::Head { len } => {
                    self.shared.stats[self.index].add(Counter::HandoffRequestsChecked, 1);
                    let rt = Arc::clone(&self.tcp.rt);
                    let pool = self.tcp.pool_of[id as usize];
                    let (current, req_vip) = match self.tcp.flows.get(id) {
                        Some(c) => (c.backend.map(|t| t.id), c.client.local_ip),
                        None => return Watched::Pass,
                    };
                    let (allowed, framing, close, method) = {
                        let head = &w.head()[..len];
                        match http::parse_request(head) {
                            Err(_) => (false, None, false, RequestMethod::Other),
                            Ok(req) => {
                                let (rule, action) = rt.router.decide(&req);
                                let stats = &self.shared.stats[self.index];
                                if let Some(r) = rule {
                                    crate::stats::bump(&stats.rule_hits[rt.rule_slot[r]], 1);
                                }
                                // A pool lets it through; an answer does not.
                                let allowed = matches!(action, Action::Pool(_));
                                let other = match action {
                                    Action::Pool(p) if *p != pool => Some(*p),
                                    // The same pool, but the session cookie names another
                                    // of its backends that can take it: go there.
                                    Action::Pool(p) => rt
                                        .config
                                        .session_cookie(req_vip)
                                        .and_then(|name| {
                                            super::route::session_backend(
                                                &req,
                                                name,
                                                self.tcp.pools.members(*p),
                                            )
                                        })
                                        .map(usize::from)
                                        .filter(|&b| {
                                            Some(b) != current && self.tcp.pools.is_usable(b)
                                        })
                                        .map(|_| *p),
                                    _ => None,
                                };
                                (
                                    allowed,
                                    RequestFramer::framing_of(&req).ok().map(|f| (f, other)),
                                    req.connection_close,
                                    RequestMethod::of(req.method),
                                )
                            }
                        }
                    };
                    let (true, Some((framing, other))) = (allowed, framing) else {
                        return Watched::Refuse;
                    };
                    if let (Some(p), Some(ack)) = (other, client_ack) {
                        if self.may_move(id) {
                            // Another pool's request: held while the current agent is asked
                            // to let the connection go (`handoff::control`).
                            if let Some(w) = self.tcp.watches[id as usize].as_mut() {
                                w.hold_for_move(Migration {
                                    client_ack: ack,
                                    tries: 0,
                                    next_ms: now_ms,
                                    pool: p,
                                });
                            }
                            // The first Release goes out from the caller, after this
                            // segment's acknowledgment (see `forward_handed_off`).
                            self.tcp.moving.push(id);
                            return Watched::Held;
                        }
                    }
                    let Some(w) = self.tcp.watches[id as usize].as_mut() else {
                        return Watched::Pass;
                    };
                    if w.accept(framing, close, method, len).is_err() {
                        return Watched::Refuse;
                    }
                    self.stats().add(Counter::RequestsRouted, 1);
                    crate::stats::bump(&self.stats().pool_requests[rt.pool_slot[pool]], 1);
                }
            }
        }
    }

    /// A later request of handed-off `id` is refused (or cannot be framed): the backend
    /// must never see it, and the switch cannot answer in the backend's stream, so both
    /// ends are reset (a client retrying on a new connection gets the rules' answer).
    fn refuse_handed_off(&mut self, id: ConnId, client_ack: Option<SeqNumber>, now_ms: u64) {
        self.stats().add(Counter::HandoffRefused, 1);
        let points = self.tcp.flows.get(id).map(|c| c.handoff_reset_points());
        let Some((latest_ack, _)) = points else {
            return;
        };
        // The refused request's first byte: the kernel's next expected one (nothing of
        // the request went on).
        let at = self.tcp.watches[id as usize].as_ref().map(|w| w.framed());
        let to_agent = at.unwrap_or(latest_ack);
        self.reset_handed_off(id, client_ack.unwrap_or(latest_ack), to_agent, now_ms);
    }

    /// The operator kills handed-off `id` (`connections.kill`): RSTs both ways.
    pub(super) fn kill_handed_off(&mut self, id: ConnId, now_ms: u64) {
        let Some((to_client, to_agent)) = self.tcp.flows.get(id).map(|c| c.handoff_reset_points())
        else {
            return;
        };
        self.reset_handed_off(id, to_client, to_agent, now_ms);
    }

    /// Ends handed-off `id`: a RST to the client at `client_seq` (the latest ack it sent:
    /// exactly where it expects the kernel's next byte, so it is taken), a RST to the
    /// agent at `agent_seq` (the kernel's next expected byte; the agent translates it
    /// and its flow ends with it), then the entry lingers closed.
    fn reset_handed_off(
        &mut self,
        id: ConnId,
        client_seq: SeqNumber,
        agent_seq: SeqNumber,
        now_ms: u64,
    ) {
        self.send_to_client(id, &tcpstate::conn::SegmentOut::rst(client_seq), now_ms);
        self.stats().add(Counter::RstSent, 1);
        self.tcp.meta[id as usize].reset_handoff = true;
        let seg = AgentSegment {
            seq: agent_seq,
            ack: client_seq,
            flags: tcp_flags::RST | tcp_flags::ACK,
            window: 0,
            options: &[],
            head: 0..0,
        };
        self.send_to_agent(id, &seg);
        if let Some(c) = self.tcp.flows.get_mut(id) {
            c.end_handoff(now_ms);
        }
        self.apply_verdict(id, Verdict::Continue, now_ms);
    }

    /// Whether `id`'s agent has answered the client (its acks passed the switch's ISN).
    fn handoff_confirmed(&self, id: ConnId) -> bool {
        self.tcp
            .flows
            .get(id)
            .is_some_and(|c| c.handoff_confirmed())
    }

    /// Whether handed-off `id` may move to another agent: its current one answers
    /// the switch on the LAN (not through a tunnel, whose replies the switch would have
    /// to take out of IP-in-IP), and no move is under way. (Whether the current kernel
    /// is done with its response is the agent's to say: it answers `Busy` until then.)
    fn may_move(&self, id: ConnId) -> bool {
        let Some(c) = self.tcp.flows.get(id) else {
            return false;
        };
        c.state == State::HandedOff
            && self.tunnel_of(c.backend.map(|t| t.id)).is_none()
            && !self.tcp.moving.contains(&id)
    }

    /// Asks `id`'s current agent to let the connection go (a `Release` on a bare ACK at
    /// the held request's first byte, acknowledging what the client has).
    fn send_release(&mut self, id: ConnId, now_ms: u64) {
        let Some(w) = self.tcp.watches[id as usize].as_mut() else {
            return;
        };
        let at = w.framed();
        let requests = w.requests_given();
        let Some(m) = w.pending_move() else {
            return;
        };
        m.tries += 1;
        m.next_ms = now_ms + MOVE_RETRY_MS;
        let ack = m.client_ack;
        let mut options = [0u8; 8];
        let n = Control::Release { requests }.emit(&mut options);
        let seg = AgentSegment {
            seq: at,
            ack,
            flags: tcp_flags::ACK,
            window: 0,
            options: &options[..n],
            head: 0..0,
        };
        self.stats().add(Counter::HandoffReleasesSent, 1);
        self.send_to_agent(id, &seg);
    }

    /// The sweep: releases not answered in time are asked again; after [`MOVE_TRIES`]
    /// the move is given up and the connection reset (the held request never reached
    /// any backend).
    pub(super) fn handoff_moves_tick(&mut self, now_ms: u64) {
        let mut i = 0;
        while i < self.tcp.moving.len() {
            let id = self.tcp.moving[i];
            let due = self.tcp.watches[id as usize]
                .as_mut()
                .and_then(|w| w.pending_move().map(|m| (m.tries, m.next_ms)));
            match due {
                None => {
                    self.tcp.moving.swap_remove(i);
                    continue;
                }
                Some((tries, _)) if tries >= MOVE_TRIES => {
                    self.tcp.moving.swap_remove(i);
                    self.stats().add(Counter::HandoffMovesFailed, 1);
                    let ack = self.tcp.watches[id as usize]
                        .as_mut()
                        .and_then(|w| w.pending_move().map(|m| m.client_ack));
                    self.refuse_handed_off(id, ack, now_ms);
                    continue;
                }
                Some((_, next)) if now_ms >= next => {
                    if self.handoff_confirmed(id) {
                        self.send_release(id, now_ms);
                    } else if let Some(m) = self.tcp.watches[id as usize]
                        .as_mut()
                        .and_then(|w| w.pending_move())
                    {
                        // The agent has not answered the client yet (its flow may not
                        // even exist): asking now could let the connection go before
                        // the current request is served. Wait, within the same budget.
                        m.tries += 1;
                        m.next_ms = now_ms + MOVE_RETRY_MS;
                    }
                }
                Some(_) => {}
            }
            i += 1;
        }
    }

    /// The sweep: an agent that registered anew or left holds none of the connections
    /// handed to it before; this core's ones are reset (the client at its latest ack), so
    /// their clients learn at once instead of waiting on a kernel that is gone.
    pub(super) fn handoff_agents_tick(&mut self, now_ms: u64) {
        let n = self
            .tcp
            .rt
            .routes
            .len()
            .min(self.tcp.agent_incarnations.len());
        let mut changed = Vec::new();
        for b in 0..n {
            let inc = self.shared.agents.incarnation(b);
            if inc != self.tcp.agent_incarnations[b] {
                self.tcp.agent_incarnations[b] = inc;
                changed.push(b);
            }
        }
        if changed.is_empty() {
            return;
        }
        let mut ids = Vec::new();
        self.tcp.flows.live_ids(&mut ids);
        for id in ids {
            let gone = self.tcp.flows.get(id).is_some_and(|c| {
                c.state == State::HandedOff && c.backend.is_some_and(|t| changed.contains(&t.id))
            });
            if gone {
                if let Some((to_client, _)) =
                    self.tcp.flows.get(id).map(|c| c.handoff_reset_points())
                {
                    self.agent_gone(id, to_client, now_ms);
                }
            }
        }
    }

    /// A control segment from an agent (VIP -> client, to the switch's backend port): its
    /// answer to a `Release`.
    pub(super) fn agent_reply(&mut self, rx: &Rx, control: Option<Control>, now_ms: u64) {
        let key = FlowKey {
            remote_ip: rx.dst,
            remote_port: rx.dport,
            local_ip: rx.src,
            local_port: rx.sport,
        };
        let Some((id, _)) = self.tcp.flows.lookup(&key) else {
            self.stats().drop(DropReason::TcpNoFlow, 1);
            return;
        };
        if rx.seg.rst() {
            // A termination notice: the agent no longer holds the connection (it
            // restarted, or its flow ended). Taken only at exactly the client's latest
            // ack, so nobody on the backend LAN can reset a connection by guessing.
            let Some(c) = self.tcp.flows.get(id) else {
                return;
            };
            let (latest_ack, _) = c.handoff_reset_points();
            // Before the client has heard from the kernel the agent may simply not have
            // the head yet (reordered or lost on the way): the head's resend takes care of
            // that, and a notice then means nothing.
            if c.state == State::HandedOff && c.handoff_confirmed() && rx.seg.seq == latest_ack {
                self.agent_gone(id, latest_ack, now_ms);
            } else {
                self.stats().drop(DropReason::RstNotExact, 1);
            }
            return;
        }
        let pending = self.tcp.watches[id as usize]
            .as_mut()
            .is_some_and(|w| w.pending_move().is_some());
        match control {
            Some(Control::Released) if pending => self.move_handed_off(id, now_ms),
            Some(Control::Closed) => self.agent_closed(id, rx, now_ms),
            // Busy: the sweep asks again; a late or stray answer changes nothing.
            Some(Control::Busy) | Some(Control::Released) => {}
            _ => self.stats().drop(DropReason::TcpUnexpected, 1),
        }
    }

    /// Paper 003's termination notice: `id`'s connection ended at its backend (both FINs
    /// acknowledged, or the kernel reset it). Taken only from the MAC the connection was
    /// handed to, on a confirmed handoff with no move under way: the entry lingers closed
    /// for late segments, then goes, instead of living out its FIN or idle timeout.
    fn agent_closed(&mut self, id: ConnId, rx: &Rx, now_ms: u64) {
        let meta = self.tcp.meta[id as usize];
        let moving = self.tcp.watches[id as usize]
            .as_mut()
            .is_some_and(|w| w.pending_move().is_some());
        let Some(c) = self.tcp.flows.get_mut(id) else {
            return;
        };
        if rx.src_mac != meta.backend_mac || !c.handoff_confirmed() || moving {
            self.stats().drop(DropReason::TcpUnexpected, 1);
            return;
        }
        c.end_handoff(now_ms);
        self.stats().add(Counter::HandoffClosedNotices, 1);
    }

    /// The current agent let `id` go: the held request starts a new round from where the
    /// client's stream stands (its next byte, and what it has of the old kernel's), and is
    /// routed and handed to its own pool's agent.
    fn move_handed_off(&mut self, id: ConnId, now_ms: u64) {
        let Some((m, store)) = self.tcp.watches[id as usize]
            .as_mut()
            .and_then(|w| w.take_for_move())
        else {
            return;
        };
        self.release_watch(id);
        self.tcp.moving.retain(|&m| m != id);
        let client_next = store.base();
        let whole = match self.tcp.flows.get_mut(id) {
            Some(c) => {
                // Its agent parked the kernel connection: come back to it when we can.
                self.tcp.meta[id as usize].parked_backend =
                    super::BackendSlot::of(c.backend.map(|t| t.id as u16));
                if let Some(old) = c.head.take() {
                    self.tcp.heads.push(old);
                }
                c.next_round(store, client_next, m.client_ack, now_ms);
                c.has_whole_head()
            }
            None => {
                self.tcp.heads.push(store);
                return;
            }
        };
        let meta = &mut self.tcp.meta[id as usize];
        meta.tried = [0; 4];
        meta.routed_us = 0;
        meta.ttfb_done = false;
        self.stats().add(Counter::HandoffMoves, 1);
        if whole {
            self.route_head(id, now_ms);
        }
    }

    /// `id`'s agent holds it no more: the client is reset at `ack` (its latest), the entry
    /// closed. (Nothing goes to the agent: it has no flow for it.)
    fn agent_gone(&mut self, id: ConnId, ack: SeqNumber, now_ms: u64) {
        self.stats().add(Counter::HandoffAgentResets, 1);
        self.send_to_client(id, &tcpstate::conn::SegmentOut::rst(ack), now_ms);
        self.stats().add(Counter::RstSent, 1);
        self.tcp.meta[id as usize].reset_handoff = true;
        if let Some(c) = self.tcp.flows.get_mut(id) {
            c.end_handoff(now_ms);
        }
        self.apply_verdict(id, Verdict::Continue, now_ms);
    }

    /// A segment from a client whose handed-off connection the switch reset: another RST
    /// at exactly the ack it carries (its receive point), unless it is a RST itself. As a
    /// closed Linux socket answers.
    pub(super) fn reset_again(&mut self, id: ConnId, rx: &Rx, now_ms: u64) {
        if rx.seg.rst() || !rx.seg.checked {
            return;
        }
        if let Some(ack) = rx.seg.ack {
            self.send_to_client(id, &tcpstate::conn::SegmentOut::rst(ack), now_ms);
            self.stats().add(Counter::RstSent, 1);
        }
    }

    /// Gives `id`'s request watch (and its store) back to the core.
    pub(super) fn release_watch(&mut self, id: ConnId) {
        if let Some(mut w) = self.tcp.watches[id as usize].take() {
            if let Some(b) = w.take_store() {
                self.tcp.heads.push(b);
            }
            self.tcp.watch_pool.push(w);
        }
    }

    /// The tunnel toward backend `b`'s agent, if the backend is reached through one
    /// (`backends[].tunnel`).
    pub(super) fn tunnel_of(&self, b: Option<usize>) -> Option<Tunnel> {
        let r = self.tcp.rt.routes.get(b?)?;
        Some(Tunnel {
            encap: r.tunnel?,
            from: r.local_ip,
            to: r.address,
        })
    }

    /// Whether `id` came in on a VIP in `mode: "handoff"`.
    pub(super) fn on_handoff_vip(&self, id: ConnId) -> bool {
        self.tcp
            .flows
            .get(id)
            .is_some_and(|c| self.tcp.rt.config.hands_off(c.client.local_ip))
    }

    /// Whether `id` is handed off (its client segments take `forward_handed_off`).
    #[inline]
    pub(super) fn is_handed_off(&self, id: ConnId) -> bool {
        self.tcp
            .flows
            .get(id)
            .is_some_and(|c| c.state == State::HandedOff)
    }
}

/// Cuts a client segment down to its headers, ACK as its only flag (its payload, FIN and
/// PSH belong to a request held for another agent), both checksums made anew; returns
/// what it now is.
fn strip_to_ack(m: &mut Mbuf, rx: &Rx) -> Rx {
    let ip_total = IP + rx.tcp_hdr;
    {
        let frame = &mut m[..];
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH..ETH + ip_total]);
        ip.set_total_len(ip_total as u16);
        ip.fill_checksum();
        let mut tcp = TcpPacket::new_unchecked(&mut frame[ETH + IP..ETH + ip_total]);
        tcp.set_flags(tcp_flags::ACK);
        tcp.fill_checksum(rx.src, rx.dst);
    }
    if m.len() > ETH + ip_total {
        // Ethernet padding up to the minimum frame, from what the frame already held.
        m.set_len((ETH + ip_total).max(60).min(m.len()));
    }
    let mut bare = *rx;
    bare.ip_total = ip_total;
    bare.seg.payload_len = 0;
    bare.seg.flags &= tcp_flags::ACK;
    bare
}

/// How a handed-off connection's segments reach a routed backend's agent: the
/// encapsulation, and the outer header's source (our backend port's address) and
/// destination (the backend host).
#[derive(Clone, Copy)]
pub(super) struct Tunnel {
    encap: Encap,
    from: std::net::Ipv4Addr,
    to: std::net::Ipv4Addr,
}
