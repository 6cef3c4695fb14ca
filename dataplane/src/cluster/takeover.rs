//! Backend-facing addresses taken over from members that died, so that a spliced
//! connection keeps its backend-side tuple (the backend sees one connection) while
//! another instance forwards it (issue 17, point 5).
//!
//! A member's backend-facing address is learned from the splice records it pushes
//! (`tcpstate::cluster::sync`: the local address of its backend tuples). When that member
//! stops being reachable, one survivor (the first reachable member after it, in
//! `cluster.members` order) answers ARP for the address and announces it by gratuitous
//! ARP, so the backends' replies reach it; it keeps accepting segments to the address
//! after the member comes back (its connections may still use it), but stops answering
//! ARP and announces the address at the member's MAC (a member that was only frozen
//! announces nothing itself; one that restarted also does, at start).
//!
//! Written by the main thread (`update`) and by the core that receives a record
//! (`learn`); read by every core in `l2l3` for frames to addresses that are neither
//! their own nor a VIP (so a port with no takeover pays one relaxed load per such
//! frame).
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use tcpstate::cluster::MAX_MEMBERS;
use tcpstate::wire::MacAddr;

#[derive(Debug, Default)]
pub struct Takeover {
    /// Per member: its backend-facing address (0: not known).
    addrs: [AtomicU32; MAX_MEMBERS],
    /// Per member: its MAC on the backend-facing port (0: not known), where backend
    /// segments of its connections are passed.
    macs: [AtomicU64; MAX_MEMBERS],
    /// Per member: segments to its address are ours too.
    accept: [AtomicBool; MAX_MEMBERS],
    /// Per member: we answer ARP for its address (it is gone).
    answer: [AtomicBool; MAX_MEMBERS],
    /// Any `accept` set: the fast test for frames to foreign addresses.
    any: AtomicBool,
    /// Members whose address is to be announced now (bit per index), for worker 0.
    announce_due: AtomicU32,
    /// Members that came back while we answered for their address: worker 0 announces
    /// the address at their MAC (a member that was only frozen sends no announcement of
    /// its own, and the neighbours would go on sending its traffic here).
    handback_due: AtomicU32,
}

impl Takeover {
    /// A record from `member` used `ip` as its backend-facing address, from `mac`.
    pub fn learn(&self, member: usize, ip: Ipv4Addr, mac: MacAddr) {
        if member >= MAX_MEMBERS {
            return;
        }
        if self.addrs[member].load(Ordering::Relaxed) != u32::from(ip) {
            self.addrs[member].store(u32::from(ip), Ordering::Relaxed);
        }
        let bits = mac.0.iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
        if self.macs[member].load(Ordering::Relaxed) != bits {
            self.macs[member].store(bits, Ordering::Relaxed);
        }
    }

    /// `member`'s MAC on the backend-facing port, if a record told it.
    pub fn backend_mac(&self, member: usize) -> Option<MacAddr> {
        let b = self.macs.get(member)?.load(Ordering::Relaxed);
        (b != 0).then(|| MacAddr(std::array::from_fn(|i| (b >> (8 * (5 - i))) as u8)))
    }

    /// Main thread, every tick: take over the address of each member that is gone and
    /// whose designated survivor we are; stop answering for those that came back.
    /// `reachable` as `Membership::live_now` gives it. Returns the members whose address
    /// this call took over.
    pub fn update(&self, me: usize, members: usize, reachable: u32) -> u32 {
        let mut taken = 0;
        for m in 0..members.min(MAX_MEMBERS) {
            if m == me || self.addrs[m].load(Ordering::Relaxed) == 0 {
                continue;
            }
            let gone = reachable >> m & 1 == 0;
            let answering = self.answer[m].load(Ordering::Relaxed);
            if gone && !self.accept[m].load(Ordering::Relaxed) {
                // Every survivor accepts it: the one answering ARP passes segments of
                // connections another survivor adopted to that one.
                self.accept[m].store(true, Ordering::Relaxed);
                self.any.store(true, Ordering::Release);
            }
            if gone && !answering && designated_survivor(m, members, reachable) == Some(me) {
                self.answer[m].store(true, Ordering::Relaxed);
                self.announce_due.fetch_or(1 << m, Ordering::AcqRel);
                taken |= 1 << m;
            } else if !gone && answering {
                self.answer[m].store(false, Ordering::Relaxed);
                self.handback_due.fetch_or(1 << m, Ordering::AcqRel);
            }
        }
        taken
    }

    /// Whether segments to `ip` are ours (an address taken over, now or earlier).
    #[inline]
    pub fn accepts(&self, ip: Ipv4Addr) -> bool {
        self.any.load(Ordering::Acquire) && self.position(ip, &self.accept).is_some()
    }

    /// Whether we answer ARP for `ip` (its member is gone).
    pub fn answers_arp(&self, ip: Ipv4Addr) -> bool {
        self.any.load(Ordering::Acquire) && self.position(ip, &self.answer).is_some()
    }

    /// Worker 0: the addresses to announce by gratuitous ARP now (taken just now).
    pub fn take_announcements(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let due = self.announce_due.swap(0, Ordering::AcqRel);
        (0..MAX_MEMBERS)
            .filter(move |m| due >> m & 1 == 1)
            .map(|m| Ipv4Addr::from(self.addrs[m].load(Ordering::Relaxed)))
    }

    /// Worker 0: the addresses to hand back now, with their member's MAC.
    pub fn take_handbacks(&self) -> impl Iterator<Item = (Ipv4Addr, MacAddr)> + '_ {
        let due = self.handback_due.swap(0, Ordering::AcqRel);
        (0..MAX_MEMBERS)
            .filter(move |m| due >> m & 1 == 1)
            .filter_map(|m| {
                let mac = self.backend_mac(m)?;
                Some((Ipv4Addr::from(self.addrs[m].load(Ordering::Relaxed)), mac))
            })
    }

    /// For `webswitchctl cluster`: per member, the address and whether it is taken.
    pub fn state(&self, m: usize) -> (Option<Ipv4Addr>, bool, bool) {
        let a = self.addrs[m].load(Ordering::Relaxed);
        (
            (a != 0).then(|| Ipv4Addr::from(a)),
            self.accept[m].load(Ordering::Relaxed),
            self.answer[m].load(Ordering::Relaxed),
        )
    }

    fn position(&self, ip: Ipv4Addr, flags: &[AtomicBool; MAX_MEMBERS]) -> Option<usize> {
        let ip = u32::from(ip);
        (0..MAX_MEMBERS).find(|&m| {
            flags[m].load(Ordering::Relaxed) && self.addrs[m].load(Ordering::Relaxed) == ip
        })
    }
}

/// The member that takes over `gone`'s address: the first reachable one after it in
/// member order (wrapping), the same on every instance that sees the same live set.
pub fn designated_survivor(gone: usize, members: usize, reachable: u32) -> Option<usize> {
    (1..members)
        .map(|k| (gone + k) % members)
        .find(|&m| reachable >> m & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_reachable_member_takes_over() {
        assert_eq!(designated_survivor(0, 3, 0b110), Some(1));
        assert_eq!(designated_survivor(1, 3, 0b101), Some(2));
        assert_eq!(designated_survivor(2, 3, 0b001), Some(0));
        assert_eq!(designated_survivor(1, 2, 0b00), None);
    }

    #[test]
    fn a_gone_members_address_is_taken_once_and_given_back() {
        let t = Takeover::default();
        let x = Ipv4Addr::new(10, 9, 1, 1);
        // Unknown address: nothing to take.
        assert_eq!(t.update(1, 2, 0b10), 0);
        t.learn(0, x, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(t.backend_mac(0), Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(t.backend_mac(1), None);
        assert!(!t.accepts(x));
        assert_eq!(t.update(1, 2, 0b11), 0, "member 0 is alive");
        assert_eq!(t.update(1, 2, 0b10), 0b01);
        assert!(t.accepts(x) && t.answers_arp(x));
        assert_eq!(t.take_announcements().collect::<Vec<_>>(), vec![x]);
        assert_eq!(t.take_announcements().count(), 0, "announced once");
        assert_eq!(t.update(1, 2, 0b10), 0, "already taken");
        // It comes back: we stop answering ARP but still accept its old connections, and
        // hand the address back once.
        t.update(1, 2, 0b11);
        assert!(t.accepts(x) && !t.answers_arp(x));
        assert_eq!(
            t.take_handbacks().collect::<Vec<_>>(),
            vec![(x, MacAddr([2, 0, 0, 0, 0, 1]))]
        );
        assert_eq!(t.take_handbacks().count(), 0);
        assert!(!t.accepts(Ipv4Addr::new(10, 9, 1, 2)));
    }

    #[test]
    fn only_the_designated_survivor_takes_over() {
        let t = Takeover::default();
        let x = Ipv4Addr::new(10, 9, 1, 1);
        t.learn(0, x, MacAddr([2, 0, 0, 0, 0, 1]));
        // Members 1 and 2 survive; 1 is first after 0. Both accept its segments.
        assert_eq!(t.update(2, 3, 0b110), 0);
        assert!(t.accepts(x) && !t.answers_arp(x));
        assert_eq!(t.update(1, 3, 0b110), 0b001);
    }
}
