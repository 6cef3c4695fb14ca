//! The worker's side of the cluster's membership (`crate::cluster::members`): peers'
//! beats on whichever core received them, and this instance's own beats, sent by worker
//! 0 every `cluster.heartbeat_ms` to each member's address on the members' port (their
//! MAC from their beats, else from ARP, asked for at most once a second).
use std::net::Ipv4Addr;

use dpdk_env::Mbuf;
use tcpstate::cluster::beat::{Beat, MemberState};

use crate::cluster::members::Membership;
use tcpstate::wire::{EthernetFrame, MacAddr};

use super::{Worker, ARP_RETRY_MS, MIN_FRAME_LEN};
use crate::l2l3;
use crate::stats::{Counter, DropReason};

/// Worker 0's beat schedule.
#[derive(Debug, Default)]
pub(super) struct BeatClock {
    next_ms: u64,
    seq: u32,
    /// Per member: when we last asked ARP for its address.
    asked_ms: Vec<Option<u64>>,
}

impl Worker {
    /// A member's beat (the payload of a datagram to the cluster port of one of our own
    /// addresses, checksum verified), from the frame whose source MAC is `src_mac`.
    pub(super) fn on_cluster_beat(&mut self, src: Ipv4Addr, src_mac: MacAddr, payload: &[u8]) {
        if tcpstate::cluster::sync::is_sync(payload) {
            self.on_sync_datagram(src, payload);
            return;
        }
        let Some(cl) = self.shared.cluster.as_ref() else {
            self.stats().drop(DropReason::BadClusterBeat, 1);
            return;
        };
        match Beat::decode(payload) {
            Ok(b) if cl.on_beat(src, src_mac, &b, dpdk_env::rdtsc()) => {
                if let Some((ip, mac)) = b.backend {
                    // The address to take over should the sender die: known before any
                    // record of its has reached us (records may live in a store).
                    cl.takeover.learn(usize::from(b.index), ip, mac);
                }
                self.stats().add(Counter::ClusterBeatsReceived, 1)
            }
            _ => self.stats().drop(DropReason::BadClusterBeat, 1),
        }
    }

    /// Worker 0, from the sweep: this instance's beat to every other member when due;
    /// `leaving` at a clean stop (then sent at once, whatever the schedule).
    pub(super) fn cluster_beats(&mut self, now_ms: u64, leaving: bool) {
        let Some(cl) = self.shared.cluster.clone() else {
            return;
        };
        if self.index != 0 {
            return;
        }
        if !leaving {
            self.announce_taken_addresses(&cl);
        }
        if !leaving && now_ms < self.beats.next_ms {
            return;
        }
        self.beats.next_ms = now_ms + cl.heartbeat_ms;
        if leaving {
            cl.leaving.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.beats.asked_ms.resize(cl.names.len(), None);
        let b = Beat {
            state: if leaving {
                MemberState::Leaving
            } else if cl.draining.load(std::sync::atomic::Ordering::Relaxed) {
                MemberState::Draining
            } else {
                MemberState::Alive
            },
            index: cl.me as u8,
            capacity: cl.capacity.load(std::sync::atomic::Ordering::Relaxed),
            seq: self.beats.seq,
            live: cl.tables().now.live(),
            backend: self.backend_face(),
        }
        .encode();
        self.beats.seq = self.beats.seq.wrapping_add(1);
        let p = cl.port;
        let our_ip = cl.addresses[cl.me];
        for m in 0..cl.names.len() {
            if m == cl.me {
                continue;
            }
            let peer = cl.addresses[m];
            let mac = cl.mac_of(m).or_else(|| self.neigh[p].lookup(peer, now_ms));
            let Some(mac) = mac else {
                let due =
                    self.beats.asked_ms[m].is_none_or(|t| now_ms.saturating_sub(t) >= ARP_RETRY_MS);
                if due {
                    self.beats.asked_ms[m] = Some(now_ms);
                    if self.send_arp_request(p, our_ip, peer) {
                        self.stats().add(Counter::ArpRequestsSent, 1);
                    }
                }
                continue;
            };
            if self.send_to_member(&cl, m, mac, &b) {
                self.stats().add(Counter::ClusterBeatsSent, 1);
            }
        }
    }
}

impl Worker {
    /// One datagram with `payload` from our address on the members' port to member `m`
    /// (at `mac`), port to port `cluster.port`; false (counted) without an mbuf.
    pub(super) fn send_to_member(
        &mut self,
        cl: &Membership,
        m: usize,
        mac: MacAddr,
        payload: &[u8],
    ) -> bool {
        let p = cl.port;
        let Some(mut f) = Mbuf::alloc(&self.shared.pool) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return false;
        };
        let len = l2l3::udp_frame_len(payload.len()).max(MIN_FRAME_LEN);
        let Some(buf) = f.append(len) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return false;
        };
        buf.fill(0);
        l2l3::build_udp_frame(
            buf,
            (self.shared.addrs[p].mac, mac),
            (cl.addresses[cl.me], cl.addresses[m]),
            (cl.udp_port, cl.udp_port),
            payload,
        );
        self.stage(p, f);
        true
    }
}

/// The source MAC of a received frame.
pub(super) fn frame_src_mac(frame: &[u8]) -> MacAddr {
    EthernetFrame::new_checked(frame)
        .map(|e| e.src_addr())
        .unwrap_or(MacAddr([0; 6]))
}

impl Worker {
    /// Worker 0: a gratuitous ARP for each gone member's address this instance just took
    /// over (`cluster::takeover`), on the port whose subnet holds it, so the backends'
    /// replies to it come here from now on.
    fn announce_taken_addresses(&mut self, cl: &crate::cluster::members::Membership) {
        let taken: Vec<Ipv4Addr> = cl.takeover.take_announcements().collect();
        for ip in taken {
            let Some(p) = self.shared.addrs.iter().position(|a| a.on_link(ip)) else {
                continue;
            };
            // Twice: one lost announcement would leave the backends' caches on the
            // member that is gone until they expire.
            for _ in 0..2 {
                if self.send_arp_request(p, ip, ip) {
                    self.stats().add(Counter::GratuitousArpSent, 1);
                }
            }
            self.stats().add(Counter::ClusterAddressesTaken, 1);
            tracing::info!(address = %ip, "announced a taken-over address");
        }
        let back: Vec<(Ipv4Addr, MacAddr)> = cl.takeover.take_handbacks().collect();
        for (ip, mac) in back {
            let Some(p) = self.shared.addrs.iter().position(|a| a.on_link(ip)) else {
                continue;
            };
            for _ in 0..2 {
                if self.send_arp_for(p, mac, ip) {
                    self.stats().add(Counter::GratuitousArpSent, 1);
                }
            }
            tracing::info!(address = %ip, %mac, "handed a taken-over address back");
        }
    }

    /// A gratuitous ARP on port `p` saying `ip` is at `mac` (another member's).
    fn send_arp_for(&mut self, p: usize, mac: MacAddr, ip: Ipv4Addr) -> bool {
        let Some(mut f) = Mbuf::alloc(&self.shared.pool) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return false;
        };
        let Some(buf) = f.append(MIN_FRAME_LEN) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return false;
        };
        buf.fill(0);
        l2l3::build_arp_announce_for(buf, self.shared.addrs[p].mac, mac, ip);
        self.stage(p, f);
        true
    }
}
