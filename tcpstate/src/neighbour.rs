//! The per-core ARP cache: IPv4 → MAC with expiry and a hard size limit.
//!
//! Each worker keeps its own table (no sharing, no locks). Learning is deliberately
//! narrow: the dataplane only offers on-link senders of ARP traffic addressed to us or
//! replies, so a flood of unrelated ARP cannot fill it; when it is full of live
//! entries a new neighbour is refused (and counted) rather than evicting a live one.
// hashbrown with its default foldhash: a keyed-by-IP table needs no SipHash DoS
// resistance here (its size is bounded and only on-link senders are learned), and
// SipHash was about a quarter of the ARP path's instructions.
use hashbrown::HashMap;
use std::net::Ipv4Addr;

use crate::wire::MacAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    mac: MacAddr,
    expires_ms: u64,
}

/// What `learn` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    New,
    Refreshed,
    /// The neighbour answered with a different MAC than before (failover, or spoofing).
    Changed,
    /// The table is full of live entries; the mapping was not stored.
    TableFull,
}

#[derive(Debug)]
pub struct NeighbourTable {
    entries: HashMap<Ipv4Addr, Entry>,
    capacity: usize,
    ttl_ms: u64,
}

impl NeighbourTable {
    pub fn new(capacity: usize, ttl_ms: u64) -> Self {
        Self {
            entries: HashMap::with_capacity(capacity),
            capacity,
            ttl_ms,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The MAC of `ip` if known and not expired at `now_ms`.
    pub fn lookup(&self, ip: Ipv4Addr, now_ms: u64) -> Option<MacAddr> {
        self.entries
            .get(&ip)
            .filter(|e| e.expires_ms > now_ms)
            .map(|e| e.mac)
    }

    /// Stores `ip` → `mac`, valid for the table's TTL from `now_ms`.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, now_ms: u64) -> Learned {
        let expires_ms = now_ms.saturating_add(self.ttl_ms);
        if let Some(e) = self.entries.get_mut(&ip) {
            let changed = e.mac != mac;
            *e = Entry { mac, expires_ms };
            return if changed {
                Learned::Changed
            } else {
                Learned::Refreshed
            };
        }
        if self.entries.len() >= self.capacity {
            self.expire(now_ms);
            if self.entries.len() >= self.capacity {
                return Learned::TableFull;
            }
        }
        self.entries.insert(ip, Entry { mac, expires_ms });
        Learned::New
    }

    /// Drops expired entries; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.expires_ms > now_ms);
        before - self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
    const C: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);
    const M1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const M2: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn learn_lookup_expire() {
        let mut t = NeighbourTable::new(2, 1000);
        assert_eq!(t.lookup(A, 0), None);
        assert_eq!(t.learn(A, M1, 0), Learned::New);
        assert_eq!(t.lookup(A, 999), Some(M1));
        assert_eq!(t.lookup(A, 1000), None, "expired exactly at ttl");
        assert_eq!(t.learn(A, M1, 500), Learned::Refreshed);
        assert_eq!(t.lookup(A, 1400), Some(M1));
        assert_eq!(t.learn(A, M2, 600), Learned::Changed);
        assert_eq!(t.lookup(A, 700), Some(M2));
    }

    #[test]
    fn full_table_refuses_then_recovers_after_expiry() {
        let mut t = NeighbourTable::new(2, 1000);
        t.learn(A, M1, 0);
        t.learn(B, M1, 100);
        assert_eq!(t.learn(C, M2, 200), Learned::TableFull);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(A, 200), Some(M1), "a live entry is never evicted");
        assert_eq!(
            t.learn(C, M2, 1000),
            Learned::New,
            "A expired and made room"
        );
        assert_eq!(t.lookup(C, 1001), Some(M2));
        assert_eq!(t.expire(5000), 2);
        assert!(t.is_empty());
    }
}
