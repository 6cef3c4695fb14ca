//! Open connections per client address, shared by every worker, for `tcp.max_conns_per_client`
//! (HAProxy's `src_conn_cur` limit, without a stick table to fill).
//!
//! A count-min sketch: two rows of counters, each indexed by its own keyed hash of the
//! client's address. A connection adds one to both of its counters; a client's count is
//! the smaller one. Collisions only ever over-count (a client may be refused a little
//! early when it shares both counters with a busy neighbour, never admitted past its cap),
//! memory is fixed (two rows of `SLOTS` `u32`s, 512 KiB) however many sources an attack
//! spoofs, and no lock is taken: two cores admitting the same client at the same instant
//! may each see the other's increment and refuse, never both pass a full cap by more than
//! the number of cores minus one. The hash keys are random per run, so a flood cannot aim
//! at one client's counters.
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

/// Counters per row (a power of two).
const SLOTS: usize = 1 << 16;

pub struct ClientConns {
    /// The most connections one client address may hold open (0: no cap, nothing counted).
    cap: u32,
    keys: [u64; 2],
    rows: [Box<[AtomicU32]>; 2],
}

impl ClientConns {
    pub fn new(cap: u32, seed: u64) -> Self {
        let row = || (0..SLOTS).map(|_| AtomicU32::new(0)).collect();
        Self {
            cap,
            keys: [seed | 1, seed.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15],
            rows: [row(), row()],
        }
    }

    pub fn cap(&self) -> u32 {
        self.cap
    }

    fn slot(&self, row: usize, client: Ipv4Addr) -> usize {
        // A multiply-xorshift mix of the address under the row's key: cheap, and
        // without the key two addresses cannot be made to collide on purpose.
        let mut x =
            (u64::from(u32::from(client)) ^ self.keys[row]).wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^= x >> 29;
        (x as usize) & (SLOTS - 1)
    }

    /// Counts one more open connection for `client`, or refuses it (false, nothing
    /// counted) when the client already holds `cap`. Always true without a cap.
    pub fn try_open(&self, client: Ipv4Addr) -> bool {
        if self.cap == 0 {
            return true;
        }
        let (a, b) = (self.slot(0, client), self.slot(1, client));
        let after_a = self.rows[0][a].fetch_add(1, Ordering::Relaxed) + 1;
        let after_b = self.rows[1][b].fetch_add(1, Ordering::Relaxed) + 1;
        if after_a.min(after_b) > self.cap {
            self.rows[0][a].fetch_sub(1, Ordering::Relaxed);
            self.rows[1][b].fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Counts a connection `try_open` admitted as closed. Exactly once per admission.
    pub fn close(&self, client: Ipv4Addr) {
        if self.cap == 0 {
            return;
        }
        for row in 0..2 {
            let slot = &self.rows[row][self.slot(row, client)];
            // Saturating: a bug elsewhere must not wrap a counter into a permanent refusal.
            let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }

    /// Connections counted open now, over all clients (0 without a cap). Reads a whole
    /// row: for the management thread's snapshots, never the packet path.
    pub fn open_total(&self) -> u64 {
        self.rows[0]
            .iter()
            .map(|c| u64::from(c.load(Ordering::Relaxed)))
            .sum()
    }

    /// Bytes of counters.
    pub fn bytes(&self) -> usize {
        2 * SLOTS * std::mem::size_of::<AtomicU32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_refused_at_its_cap_and_admitted_again_after_a_close() {
        let c = ClientConns::new(3, 42);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        assert!((0..3).all(|_| c.try_open(a)));
        assert!(!c.try_open(a), "fourth refused");
        assert!(c.try_open(b), "another client is not affected");
        assert_eq!(c.open_total(), 4, "the refusal counted nothing");
        c.close(a);
        assert!(c.try_open(a));
        for _ in 0..3 {
            c.close(a);
        }
        c.close(b);
        assert_eq!(c.open_total(), 0);
        // A stray close never wraps into a refusal.
        c.close(a);
        assert!(c.try_open(a));
    }

    #[test]
    fn without_a_cap_nothing_is_counted() {
        let c = ClientConns::new(0, 7);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        assert!((0..100).all(|_| c.try_open(a)));
        assert_eq!(c.open_total(), 0);
    }

    #[test]
    fn many_sources_do_not_crowd_out_others() {
        // 20,000 sources with two connections each in 65,536 slots per row, cap 10: a
        // fresh client is refused only where both its counters hold five or more of
        // them at once, which almost never happens.
        let c = ClientConns::new(10, 99);
        for i in 0..20_000u32 {
            let ip = Ipv4Addr::from(0x0b00_0000 + i);
            assert!(c.try_open(ip) && c.try_open(ip));
        }
        let refused = (0..1000u32)
            .filter(|i| !c.try_open(Ipv4Addr::from(0x0c00_0000 + i)))
            .count();
        assert!(refused < 5, "{refused} of 1000 fresh clients refused");
    }
}
