//! In a cluster (`cluster.members`): segments of VIP flows this core holds no state
//! for are handed to the member that owns them (`tcpstate::cluster::ownership`), and
//! segments a member handed to us are answered toward the client, not back to it.
//!
//! A hand-over is the frame itself, re-addressed on the members' port: its destination
//! MAC becomes the owner's, its source MAC ours, so the owner knows which member sent it
//! (never sending it back there). Nothing else changes: no copy, no encapsulation.
use std::net::Ipv4Addr;

use dpdk_env::Mbuf;
use tcpstate::cluster::flow_key;
use tcpstate::cluster::ownership::Stray;
use tcpstate::wire::{EthernetFrame, MacAddr};

use super::Rx;
use crate::stats::{Counter, DropReason};
use crate::worker::Worker;

impl Worker {
    /// The member that handed this segment over, if it came from one (its source MAC is
    /// a member's). Its answers then go toward the client by our own routing: the
    /// client's MAC if it is on the port's link, else the gateway's. False when that
    /// next hop is not known yet (the segment is dropped, counted; the client retries).
    pub(super) fn taken_from_peer(
        &mut self,
        p: usize,
        rx: &mut Rx,
        now_ms: u64,
    ) -> Result<Option<usize>, ()> {
        let Some(cl) = self.shared.cluster.as_deref() else {
            return Ok(None);
        };
        if p != cl.port {
            return Ok(None);
        }
        let Some(from) = cl.member_with_mac(rx.src_mac) else {
            return Ok(None);
        };
        match self.next_hop_mac(p, rx.src, now_ms) {
            Some(mac) => {
                rx.src_mac = mac;
                self.stats().add(Counter::ClusterTakenFromPeer, 1);
                Ok(Some(from))
            }
            None => {
                self.stats().drop(DropReason::ClusterNoRoute, 1);
                Err(())
            }
        }
    }

    /// Whether a segment is the ACK of a SYN-ACK this core sent (its cookie is valid).
    pub(super) fn completes_our_handshake(&self, rx: &Rx, now_ms: u64) -> bool {
        let seg = &rx.seg;
        let Some(ack) = seg.ack.filter(|_| !seg.syn() && !seg.rst()) else {
            return false;
        };
        let ts = seg.timestamps.map(|t| t.1);
        self.tcp
            .cookies
            .check(rx.src, rx.sport, rx.dst, rx.dport, seg.seq, ack, ts, now_ms)
            .is_ok()
    }

    /// The MAC frames to `ip` leave port `p` for: `ip`'s own on the port's link, the
    /// gateway's otherwise (both from the neighbour table).
    pub(super) fn next_hop_mac(&mut self, p: usize, ip: Ipv4Addr, now_ms: u64) -> Option<MacAddr> {
        let port = &self.shared.addrs[p];
        let hop = if port.on_link(ip) { ip } else { port.gateway? };
        self.neigh[p].lookup(hop, now_ms)
    }

    /// A segment to a VIP on the members' port whose flow this core does not hold: to
    /// its owner when that is another live member (whose MAC we know), else back to the
    /// caller to be handled here.
    pub(super) fn hand_over(
        &mut self,
        p: usize,
        mut m: Mbuf,
        rx: &Rx,
        from: Option<usize>,
        now_ms: u64,
    ) -> Option<Mbuf> {
        let Some(cl) = self.shared.cluster.clone() else {
            return Some(m);
        };
        if p != cl.port {
            return Some(m);
        }
        let key = flow_key(rx.src, rx.sport, rx.dst, rx.dport);
        let syn = rx.seg.syn() && rx.seg.ack.is_none();
        let owner = match cl.tables().stray(key, syn, from) {
            Stray::Local => return Some(m),
            // Just after a change of owners, the ACK of a handshake we answered under the
            // old table is ours, whoever owns the tuple now (the new owner has not our
            // cookie secret). Checked only then: in the steady state forwarding costs no
            // cookie computation.
            Stray::Forward(_)
                if !syn
                    && cl.recently_changed(self.tsc_of(now_ms))
                    && self.completes_our_handshake(rx, now_ms) =>
            {
                return Some(m)
            }
            Stray::Forward(owner) => owner,
            Stray::Previous(_) if self.completes_our_handshake(rx, now_ms) => return Some(m),
            Stray::Previous(owner) => owner,
        };
        let Some(mac) = cl.mac_of(owner) else {
            return Some(m);
        };
        {
            let mut eth = EthernetFrame::new_unchecked(&mut m[..]);
            eth.set_dst_addr(mac);
            eth.set_src_addr(self.shared.addrs[p].mac);
        }
        self.stats().add(Counter::ClusterHandedOver, 1);
        self.stage(p, m);
        None
    }
}
