//! Maglev's consistent hashing (Eisenbud et al., NSDI 2016, section 3.4): a lookup table
//! of prime size in which every live member owns an almost equal share of entries, built
//! so that a member joining or leaving moves few entries between the others.
//!
//! Each member has a permutation of the table's slots (a start and a step derived from
//! its name); members take turns claiming their next preferred free slot until the table
//! is full. The table depends only on the names, which of them are live and their
//! weights, so every instance that sees the same live set and weights builds the same
//! table.
//!
//! Weights (the paper's weighted backends; here paper 001's workload factors, see
//! [`super::load`]): in each turn a member earns its weight in credit and claims a slot
//! for every heaviest weight's worth it holds, so its share is its weight over the sum.
//! Equal weights give exactly the unweighted table (one claim per member per turn).
use super::{name_hash, MAX_MEMBERS};

/// Entries of the table: a prime (Maglev needs M prime for the permutations), large
/// enough that shares are even and a change moves little (the paper uses 65537).
pub const TABLE_SIZE: usize = 65_537;

/// A built table: the member index owning each entry.
#[derive(Clone, PartialEq, Eq)]
pub struct Maglev {
    entries: Box<[u8]>,
    live: u32,
    /// Per member index: the weight it was built with (0: not live).
    weights: Box<[u32]>,
}

impl std::fmt::Debug for Maglev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Maglev {{ live: {:#x} }}", self.live)
    }
}

impl Maglev {
    /// The table over `names[i]` for every `i` set in `live` (a bit per member index).
    /// None when no member is live or there are more than [`MAX_MEMBERS`] names.
    pub fn build(names: &[&str], live: u32) -> Option<Maglev> {
        Maglev::build_weighted(names, live, &vec![1; names.len()])
    }

    /// The table over the live members with shares in proportion to `weights[i]` (a
    /// weight of 0 counts as 1: a live member always owns some entries). None as
    /// [`Maglev::build`], or when `weights` does not cover every name.
    pub fn build_weighted(names: &[&str], live: u32, weights: &[u32]) -> Option<Maglev> {
        if names.len() > MAX_MEMBERS || live == 0 || weights.len() < names.len() {
            return None;
        }
        let m = TABLE_SIZE as u64;
        let members: Vec<(usize, u64, u64)> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| live >> i & 1 == 1)
            .map(|(i, n)| {
                let offset = name_hash(n, 0) % m;
                let skip = name_hash(n, 0x5bd1_e995) % (m - 1) + 1;
                (i, offset, skip)
            })
            .collect();
        if members.is_empty() {
            return None;
        }
        let weight_of = |i: usize| u64::from(weights[i].max(1));
        let heaviest = members.iter().map(|m| weight_of(m.0)).max()?;
        const FREE: u8 = u8::MAX;
        let mut entries = vec![FREE; TABLE_SIZE].into_boxed_slice();
        let mut next = vec![0u64; members.len()];
        let mut credit = vec![0u64; members.len()];
        let mut filled = 0;
        'fill: loop {
            for (k, &(i, offset, skip)) in members.iter().enumerate() {
                credit[k] += weight_of(i);
                if credit[k] < heaviest {
                    continue;
                }
                credit[k] -= heaviest;
                // This member's next preferred slot that is still free.
                let slot = loop {
                    let s = ((offset + next[k] * skip) % m) as usize;
                    next[k] += 1;
                    if entries[s] == FREE {
                        break s;
                    }
                };
                entries[slot] = i as u8;
                filled += 1;
                if filled == TABLE_SIZE {
                    break 'fill;
                }
            }
        }
        let weights = (0..names.len())
            .map(|i| {
                if live >> i & 1 == 1 {
                    weight_of(i) as u32
                } else {
                    0
                }
            })
            .collect();
        Some(Maglev {
            entries,
            live,
            weights,
        })
    }

    /// The member owning `key` (a [`super::flow_key`]).
    #[inline]
    pub fn owner(&self, key: u64) -> usize {
        usize::from(self.entries[(key % TABLE_SIZE as u64) as usize])
    }

    /// The live set this table was built over.
    pub fn live(&self) -> u32 {
        self.live
    }

    /// The weight each member index was built with (0: not live).
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// Entries owned by each member index (for `webswitchctl cluster` and tests).
    pub fn shares(&self, members: usize) -> Vec<usize> {
        let mut n = vec![0; members];
        for &e in self.entries.iter() {
            if let Some(c) = n.get_mut(usize::from(e)) {
                *c += 1;
            }
        }
        n
    }

    /// Entries whose owner differs between two tables.
    pub fn moved(&self, other: &Maglev) -> usize {
        self.entries
            .iter()
            .zip(other.entries.iter())
            .filter(|(a, b)| a != b)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 5] = ["sw1", "sw2", "sw3", "sw4", "sw5"];

    #[test]
    fn every_live_member_gets_an_even_share() {
        for n in 1..=5 {
            let live = (1u32 << n) - 1;
            let t = Maglev::build(&NAMES[..n], live).unwrap();
            let shares = t.shares(n);
            let fair = TABLE_SIZE / n;
            for (i, s) in shares.iter().enumerate() {
                assert!(
                    s.abs_diff(fair) <= 1,
                    "{n} members: member {i} has {s}, fair {fair}"
                );
            }
        }
        assert!(Maglev::build(&NAMES, 0).is_none());
    }

    #[test]
    fn only_live_members_own_entries() {
        let t = Maglev::build(&NAMES, 0b10110).unwrap();
        let shares = t.shares(5);
        assert_eq!((shares[0], shares[3]), (0, 0));
        assert!(shares[1] > 0 && shares[2] > 0 && shares[4] > 0);
    }

    #[test]
    fn a_member_leaving_or_joining_moves_few_entries() {
        let all = Maglev::build(&NAMES, 0b11111).unwrap();
        let without = Maglev::build(&NAMES, 0b11011).unwrap();
        // What the leaver owned must move (1/5); Maglev moves only a little more.
        let moved = all.moved(&without);
        let own = all.shares(5)[2];
        assert!(
            moved >= own && moved < own + TABLE_SIZE / 50,
            "moved {moved}, owned {own}"
        );
        // Symmetric for a join.
        assert_eq!(without.moved(&all), moved);
    }

    #[test]
    fn shares_follow_the_weights() {
        let t = Maglev::build_weighted(&NAMES[..3], 0b111, &[16, 8, 4]).unwrap();
        let shares = t.shares(3);
        for (i, w) in [16.0, 8.0, 4.0].iter().enumerate() {
            let want = TABLE_SIZE as f64 * w / 28.0;
            let got = shares[i] as f64;
            assert!(
                (got - want).abs() < 2.0,
                "member {i}: {got} entries, want {want}"
            );
        }
        assert_eq!(t.weights(), &[16, 8, 4]);
        // Equal weights, whatever their value, are the unweighted table.
        let equal = Maglev::build_weighted(&NAMES[..3], 0b111, &[5, 5, 5]).unwrap();
        assert_eq!(
            equal.entries,
            Maglev::build(&NAMES[..3], 0b111).unwrap().entries
        );
        // A weight of 0 still owns (as 1); a member not live owns nothing and shows 0.
        let t = Maglev::build_weighted(&NAMES[..3], 0b011, &[0, 16, 16]).unwrap();
        let shares = t.shares(3);
        assert!(shares[0] > 0 && shares[2] == 0, "{shares:?}");
        assert_eq!(t.weights(), &[1, 16, 0]);
        assert!(Maglev::build_weighted(&NAMES[..3], 0b111, &[1, 1]).is_none());
    }

    #[test]
    fn a_weight_change_moves_about_the_share_that_changed_hands() {
        let before = Maglev::build_weighted(&NAMES[..3], 0b111, &[16, 16, 16]).unwrap();
        let after = Maglev::build_weighted(&NAMES[..3], 0b111, &[16, 16, 8]).unwrap();
        // Member 2 gives up 1/3 - 1/5 of the table; Maglev moves at most a few times that.
        let handed = before.shares(3)[2] - after.shares(3)[2];
        let moved = before.moved(&after);
        assert!(handed > TABLE_SIZE / 8, "handed {handed}");
        assert!(
            moved >= handed && moved < 3 * handed,
            "moved {moved}, handed {handed}"
        );
    }

    #[test]
    fn tables_are_the_same_wherever_they_are_built() {
        let a = Maglev::build(&NAMES[..3], 0b111).unwrap();
        let b = Maglev::build(&NAMES[..3], 0b111).unwrap();
        assert_eq!(a, b);
        let key = super::super::flow_key(
            std::net::Ipv4Addr::new(10, 1, 3, 2),
            40000,
            std::net::Ipv4Addr::new(10, 1, 5, 10),
            80,
        );
        assert_eq!(a.owner(key), b.owner(key));
    }
}
