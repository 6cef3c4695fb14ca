//! Handoff's control-connection transport, the switch's side (`handoff.transport:
//! "control"`, paper 004; the wire format is `tcpstate::handoff::channel`).
//!
//! The held head goes to the agent as handoff requests, UDP from this port's address
//! and `handoff.agent_port` to the agent host's address and `handoff.control_port`,
//! resent on the handoff's backoff timer until the agent's ack says its kernel holds the
//! whole head. The client's segments that arrive before the ack are held here (a bounded
//! list per core, `handoff_held_for_ack`) and forwarded in order when it comes, so the
//! agent never sees a segment of a connection it has not yet taken. A client segment that
//! acknowledges bytes only the kernel can have sent proves the same (the ack was lost):
//! the held ones go, then it, as the inline transport's confirmation. Every later step
//! (forwarding, the watch, moves, notices) is the inline transport's.
use rules::config::HandoffTransport;
use tcpstate::flow::{ConnId, FlowKey};
use tcpstate::handoff::channel::{AckRepr, RequestRepr, MAX_DATAGRAM};
use tcpstate::wire::{Ipv4Packet, SeqNumber, UdpPacket};

use super::super::Worker;
use super::handoff::AgentSegment;
use super::{Rx, ETH};
use crate::stats::{Counter, DropReason};
use dpdk_env::Mbuf;

/// Client segments held per core for handoffs not yet acked; more are dropped (the
/// client sends them again).
pub(super) const MAX_HELD_FOR_ACK: usize = 256;

/// A client segment that came before its connection's handoff ack.
pub(super) struct HeldForAck {
    id: ConnId,
    /// The connection's client tuple (a slot `id` reused by another connection must not
    /// get these bytes).
    client: FlowKey,
    rx: Rx,
    m: Mbuf,
}

impl Worker {
    /// Whether handoffs on this switch use the control transport.
    pub(super) fn control_transport(&self) -> bool {
        self.tcp.rt.config.handoff.transport == HandoffTransport::Control
    }

    /// Sends one piece of `id`'s held head to its agent as a handoff request; `false`
    /// if it could not (no mbuf, or the connection is gone).
    pub(super) fn send_handoff_request(
        &mut self,
        id: ConnId,
        seg: &AgentSegment<'_>,
        head_end: SeqNumber,
    ) -> bool {
        let Some(conn) = self.tcp.flows.get(id) else {
            return false;
        };
        let Some(target) = conn.backend else {
            return false;
        };
        let Some(payload) = conn.head_bytes().get(seg.head.clone()) else {
            return false;
        };
        let route = self.tcp.rt.routes[target.id];
        let meta = self.tcp.meta[id as usize];
        let request = RequestRepr {
            key: conn.client,
            seq: seg.seq,
            ack: seg.ack,
            window: seg.window,
            tcp_flags: seg.flags,
            head_end,
            on_link: route.tunnel.is_none(),
            options: seg.options,
            payload,
        };
        let len = request.buffer_len();
        let mut datagram = [0u8; MAX_DATAGRAM];
        request.emit(&mut datagram[..len]);
        let addrs = &self.shared.addrs[meta.backend_port];
        let Some(mut m) = Mbuf::alloc(&self.shared.pool) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return false;
        };
        let frame_len = crate::l2l3::udp_frame_len(len);
        let Some(buf) = m.append(frame_len.max(60)) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return false;
        };
        buf.fill(0);
        crate::l2l3::build_udp_frame(
            buf,
            (addrs.mac, meta.backend_mac),
            (route.local_ip, route.address),
            (addrs.agent_port, self.tcp.rt.config.handoff.control_port),
            &datagram[..len],
        );
        self.stats().add(Counter::HandoffRequestsSent, 1);
        self.stage(meta.backend_port, m);
        true
    }

    /// Whether a client segment of handed-off `id` must wait for the agent's ack.
    pub(super) fn awaits_handoff_ack(&self, id: ConnId) -> bool {
        self.control_transport()
            && self
                .tcp
                .flows
                .get(id)
                .is_some_and(|c| c.handoff_awaits_ack())
    }

    /// Holds a client segment of `id` until its handoff ack (dropped, counted, when the
    /// core holds [`MAX_HELD_FOR_ACK`] already, after letting go of what no connection
    /// waits for any more).
    pub(super) fn hold_for_ack(&mut self, id: ConnId, m: Mbuf, rx: &Rx) {
        let Some(client) = self.tcp.flows.get(id).map(|c| c.client) else {
            return;
        };
        if self.tcp.ack_held.len() >= MAX_HELD_FOR_ACK {
            self.purge_held_for_ack();
        }
        if self.tcp.ack_held.len() >= MAX_HELD_FOR_ACK {
            self.stats().drop(DropReason::HandoffHeldFull, 1);
            return;
        }
        self.stats().add(Counter::HandoffHeldForAck, 1);
        self.tcp.ack_held.push(HeldForAck {
            id,
            client,
            rx: *rx,
            m,
        });
    }

    /// Lets go of held segments whose connection no longer waits for an ack (it ended, or
    /// its slot went to another connection). From the sweep, and when the list is full.
    pub(super) fn purge_held_for_ack(&mut self) {
        let flows = &self.tcp.flows;
        self.tcp.ack_held.retain(|h| {
            flows
                .get(h.id)
                .is_some_and(|c| c.client == h.client && c.handoff_awaits_ack())
        });
    }

    /// A datagram on the agent port that is a handoff ack (l2l3 steered it here by the
    /// client tuple it names): the connection's head is taken, its held segments go on.
    /// Taken only from the agent the connection was handed to.
    pub(in crate::worker) fn on_handoff_ack(&mut self, m: Mbuf, now_ms: u64) {
        let parsed = Ipv4Packet::new_checked(&m[ETH..]).ok().and_then(|ip| {
            let src = ip.src_addr();
            let udp = UdpPacket::new_checked(ip.payload()).ok()?;
            AckRepr::parse(udp.payload()).ok().map(|a| (src, a))
        });
        let Some((src, ack)) = parsed else {
            self.stats().drop(DropReason::HandoffAckStale, 1);
            return;
        };
        let Some((id, _)) = self.tcp.flows.lookup(&ack.key) else {
            self.stats().drop(DropReason::HandoffAckStale, 1);
            return;
        };
        let routes = &self.tcp.rt.routes;
        let taken = match self.tcp.flows.get_mut(id) {
            Some(c) if c.backend.is_some_and(|t| routes[t.id].address == src) => {
                c.handoff_taken(ack.acked, now_ms)
            }
            _ => false,
        };
        if !taken {
            // A repeated ack (our resend crossed it), or one from elsewhere.
            self.stats().drop(DropReason::HandoffAckStale, 1);
            return;
        }
        self.stats().add(Counter::HandoffAcks, 1);
        self.release_held_for_ack(id, now_ms);
    }

    /// `id` no longer waits for its ack: its held segments go to the agent, in the order
    /// they came.
    pub(super) fn release_held_for_ack(&mut self, id: ConnId, now_ms: u64) {
        let Some(client) = self.tcp.flows.get(id).map(|c| c.client) else {
            return;
        };
        let mut go = std::mem::take(&mut self.tcp.ack_scratch);
        go.extend(
            self.tcp
                .ack_held
                .extract_if(.., |h| h.id == id && h.client == client),
        );
        for h in go.drain(..) {
            self.forward_handed_off(h.id, h.m, &h.rx, now_ms);
        }
        self.tcp.ack_scratch = go;
    }
}
