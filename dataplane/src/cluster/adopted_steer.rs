//! Where the backend side of an adopted connection is steered, when the port alone would
//! say another core (issue 17: members with different worker counts).
//!
//! A member picks each backend connection's local port so that the backend's replies
//! steer to the core that owns the client's tuple (`steer::next_local_port_for_core`, for
//! its own worker count). Another member keeps that connection's record (and would adopt
//! it) on the core the client tuple steers to there, and with another worker count the
//! port may say another core: the backend tuple goes in this table when the record
//! arrives, so that a backend segment reaching a survivor before the client's does finds
//! the record, and stays while the record or the adopted connection lives. `l2l3` consults
//! it for segments to addresses that are not the port's own (a taken-over member's) before
//! the port rule. The core that keeps the record inserts and removes; every core reads.
//!
//! Lock-free open addressing over a fixed array: a key (the backend's address and port and
//! our local port, never 0) is published with a release store after its core, so a reader
//! that sees the key sees the core. Removed keys leave a tombstone (a later insert reuses
//! it). A probe looks at [`PROBES`] slots at most; an empty table costs a reader one
//! relaxed load.
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Slots in the table: the adopted connections a member can steer against its ports.
pub const SLOTS: usize = 1 << 16;
/// Slots one key may be looked for in.
pub const PROBES: usize = 32;

const EMPTY: u64 = 0;
const TOMB: u64 = u64::MAX;
/// A slot claimed by an insert that has not published its key yet.
const CLAIMED: u64 = u64::MAX - 1;

pub struct AdoptedSteer {
    keys: Box<[AtomicU64]>,
    cores: Box<[AtomicU8]>,
    live: AtomicUsize,
}

impl std::fmt::Debug for AdoptedSteer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdoptedSteer")
            .field("live", &self.len())
            .finish()
    }
}

impl Default for AdoptedSteer {
    fn default() -> Self {
        AdoptedSteer {
            keys: (0..SLOTS).map(|_| AtomicU64::new(EMPTY)).collect(),
            cores: (0..SLOTS).map(|_| AtomicU8::new(0)).collect(),
            live: AtomicUsize::new(0),
        }
    }
}

/// The table's key for a backend-side tuple: the backend's address and port, and the
/// member's address and port toward it, mixed into 64 bits (two tuples share a key with
/// a chance of about 2^-64; the markers are mapped away).
pub fn key(backend: Ipv4Addr, backend_port: u16, local: Ipv4Addr, local_port: u16) -> u64 {
    let a = (u64::from(u32::from(backend)) << 32)
        | (u64::from(backend_port) << 16)
        | u64::from(local_port);
    let k = mix(a ^ mix(u64::from(u32::from(local)) | 1 << 40));
    if k == EMPTY || k >= CLAIMED {
        1
    } else {
        k
    }
}

/// splitmix64's finaliser: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn home(k: u64) -> usize {
    // The key is already mixed.
    k as usize & (SLOTS - 1)
}

impl AdoptedSteer {
    /// Steers `k` to `core` from now on; `false` when its probe window is full.
    pub fn insert(&self, k: u64, core: usize) -> bool {
        let h = home(k);
        for i in 0..PROBES {
            let s = (h + i) & (SLOTS - 1);
            if self.keys[s].load(Ordering::Acquire) == k {
                self.cores[s].store(core as u8, Ordering::Release);
                return true;
            }
        }
        for i in 0..PROBES {
            let s = (h + i) & (SLOTS - 1);
            let cur = self.keys[s].load(Ordering::Relaxed);
            if (cur == EMPTY || cur == TOMB)
                && self.keys[s]
                    .compare_exchange(cur, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                self.cores[s].store(core as u8, Ordering::Relaxed);
                self.keys[s].store(k, Ordering::Release);
                self.live.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    /// Stops steering `k` (nothing if it is not in the table).
    pub fn remove(&self, k: u64) {
        let h = home(k);
        for i in 0..PROBES {
            let s = (h + i) & (SLOTS - 1);
            match self.keys[s].load(Ordering::Acquire) {
                x if x == k => {
                    self.keys[s].store(TOMB, Ordering::Release);
                    self.live.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                EMPTY => return,
                _ => {}
            }
        }
    }

    /// The core `k` is steered to, if it is in the table.
    #[inline]
    pub fn core_of(&self, k: u64) -> Option<usize> {
        if self.live.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let h = home(k);
        for i in 0..PROBES {
            let s = (h + i) & (SLOTS - 1);
            match self.keys[s].load(Ordering::Acquire) {
                x if x == k => return Some(usize::from(self.cores[s].load(Ordering::Acquire))),
                EMPTY => return None,
                _ => {}
            }
        }
        None
    }

    /// Keys in the table.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn k(i: u32) -> u64 {
        key(
            Ipv4Addr::from(0x0a00_0100 + (i >> 16)),
            80,
            Ipv4Addr::new(10, 0, 1, 2),
            i as u16,
        )
    }

    #[test]
    fn keys_differ_by_every_field() {
        let b = Ipv4Addr::new(10, 0, 1, 11);
        let l = Ipv4Addr::new(10, 0, 1, 2);
        let base = key(b, 80, l, 40_000);
        assert_ne!(base, key(Ipv4Addr::new(10, 0, 1, 12), 80, l, 40_000));
        assert_ne!(base, key(b, 81, l, 40_000));
        assert_ne!(base, key(b, 80, Ipv4Addr::new(10, 0, 1, 3), 40_000));
        assert_ne!(base, key(b, 80, l, 40_001));
        assert_eq!(base, key(b, 80, l, 40_000));
    }

    #[test]
    fn insert_look_up_remove() {
        let t = AdoptedSteer::default();
        assert_eq!(t.core_of(k(1)), None);
        assert!(t.insert(k(1), 1));
        assert!(t.insert(k(2), 0));
        assert_eq!((t.core_of(k(1)), t.core_of(k(2))), (Some(1), Some(0)));
        assert_eq!(t.core_of(k(3)), None);
        // Insert again: the core changes, the count does not.
        assert!(t.insert(k(1), 2));
        assert_eq!((t.core_of(k(1)), t.len()), (Some(2), 2));
        t.remove(k(1));
        t.remove(k(1));
        assert_eq!(
            (t.core_of(k(1)), t.core_of(k(2)), t.len()),
            (None, Some(0), 1)
        );
        t.remove(k(2));
        assert!(t.is_empty());
    }

    #[test]
    fn colliding_keys_past_a_tombstone() {
        let t = AdoptedSteer::default();
        // Keys with the same home slot, found by search.
        let h = home(k(0));
        let same: Vec<u64> = (1..2_000_000u32)
            .map(k)
            .filter(|&x| home(x) == h)
            .take(3)
            .collect();
        assert_eq!(same.len(), 3);
        for (i, &x) in same.iter().enumerate() {
            assert!(t.insert(x, i));
        }
        // The first removed: the others are still found past its tombstone, and a new
        // insert takes the tombstone's slot.
        t.remove(same[0]);
        assert_eq!((t.core_of(same[1]), t.core_of(same[2])), (Some(1), Some(2)));
        assert!(t.insert(same[0], 7));
        assert_eq!(t.core_of(same[0]), Some(7));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn a_full_window_refuses() {
        let t = AdoptedSteer::default();
        let h = home(k(0));
        let mut n = 0;
        let mut refused = false;
        for i in 0..40_000_000u32 {
            let x = k(i);
            let d = home(x).wrapping_sub(h) & (SLOTS - 1);
            if d < 4 {
                if !t.insert(x, 0) {
                    refused = true;
                    break;
                }
                n += 1;
            }
        }
        assert!(refused, "{n} keys in the window");
        assert!((PROBES..=PROBES + 4).contains(&n), "{n}");
    }

    #[test]
    fn readers_see_a_published_key_with_its_core() {
        let t = Arc::new(AdoptedSteer::default());
        let w = Arc::clone(&t);
        let writer = std::thread::spawn(move || {
            for i in 0..5_000u32 {
                assert!(w.insert(k(i), (i % 3) as usize + 1));
                if i % 2 == 0 {
                    w.remove(k(i));
                }
            }
        });
        for _ in 0..50_000 {
            for i in (0..5_000u32).step_by(97) {
                if let Some(c) = t.core_of(k(i)) {
                    assert_eq!(c, (i % 3) as usize + 1);
                }
            }
        }
        writer.join().unwrap();
        for i in 0..5_000u32 {
            let want = (i % 2 == 1).then_some((i % 3) as usize + 1);
            assert_eq!(t.core_of(k(i)), want, "{i}");
        }
    }
}
