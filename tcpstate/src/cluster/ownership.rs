//! Where a segment of a VIP flow goes when this instance holds no state for it.
//!
//! A connection's state lives on the instance that answered its SYN. Routers may send
//! its later segments to any instance (their hash is not ours, and it changes with the
//! membership), so an instance that has no state for a segment asks [`Ownership::stray`]:
//!
//! - a new connection (a SYN) belongs to the owner in the current table;
//! - any other segment goes to the current owner, and if that is this instance, to the
//!   owner in the previous table ([`Stray::Previous`]): a connection opened before the
//!   last membership change may live there (a member joined and took over part of the
//!   table), unless the segment completes a handshake this instance answered (a valid
//!   SYN cookie: with cookies a new connection has no state until that ACK);
//! - a segment that a peer handed over is never handed back to that peer, and goes on
//!   at most once more, so no segment circles;
//! - only live members are handed anything; otherwise this instance handles it (a SYN is
//!   answered, anything else gets what a stray segment gets on a single switch).
//!
//! The caller also keeps, for a few seconds after a change of owners, a segment that
//! completes a handshake it answered under the old table (its own cookie is valid), even
//! when another member owns the tuple now: only the instance that answered can accept it.
use super::maglev::Maglev;

/// What to do with a segment of a VIP flow this instance has no state for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stray {
    /// Handle it here.
    Local,
    /// Hand it to this member (index into `cluster.members`).
    Forward(usize),
    /// Hand it to this member, the owner before the last membership change, unless it
    /// completes one of our own handshakes (checked by the caller against its cookies).
    Previous(usize),
}

/// The tables one instance routes by: the current one and the one before the last
/// membership change.
#[derive(Debug, Clone)]
pub struct Ownership {
    /// This instance's index in `cluster.members`.
    pub me: usize,
    pub now: Maglev,
    pub prev: Option<Maglev>,
    /// The members segments may be handed to (bit per index): the ones in `now` and
    /// the draining ones, which own no new connection but keep theirs.
    pub reachable: u32,
    /// Bumped at every change (shown by `webswitchctl cluster`).
    pub generation: u64,
}

impl Ownership {
    /// `key` is the flow's [`super::flow_key`]; `syn` whether the segment opens a
    /// connection (SYN without ACK); `from` the member that handed it over, if one did.
    pub fn stray(&self, key: u64, syn: bool, from: Option<usize>) -> Stray {
        let live = self.reachable;
        let is_live = |m: usize| m != self.me && live >> m & 1 == 1 && Some(m) != from;
        let owner = self.now.owner(key);
        if owner != self.me {
            // Handed over by a peer whose table disagrees with ours (a change one of us
            // has not seen yet): keep it rather than pass it on, so a segment crosses at
            // most two hand-overs (to the owner, then to the previous owner).
            return if from.is_none() && is_live(owner) {
                Stray::Forward(owner)
            } else {
                Stray::Local
            };
        }
        if syn {
            return Stray::Local;
        }
        match self.prev.as_ref().map(|p| p.owner(key)) {
            Some(prev) if prev != self.me && is_live(prev) => Stray::Previous(prev),
            _ => Stray::Local,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::flow_key;
    use std::net::Ipv4Addr;

    const NAMES: [&str; 3] = ["sw1", "sw2", "sw3"];

    fn key(port: u16) -> u64 {
        flow_key(
            Ipv4Addr::new(10, 1, 3, 2),
            port,
            Ipv4Addr::new(10, 1, 5, 10),
            80,
        )
    }

    fn table(live: u32) -> Maglev {
        Maglev::build(&NAMES, live).unwrap()
    }

    /// A flow key whose owner in `t` is `m`.
    fn key_owned_by(t: &Maglev, m: usize, skip: impl Fn(u64) -> bool) -> u64 {
        (1..u16::MAX)
            .map(key)
            .find(|&k| t.owner(k) == m && !skip(k))
            .expect("some key")
    }

    #[test]
    fn segments_go_to_the_current_owner() {
        let o = Ownership {
            me: 0,
            now: table(0b111),
            prev: None,
            reachable: 0b111,
            generation: 1,
        };
        let k = key_owned_by(&o.now, 1, |_| false);
        assert_eq!(o.stray(k, true, None), Stray::Forward(1));
        assert_eq!(o.stray(k, false, None), Stray::Forward(1));
        let mine = key_owned_by(&o.now, 0, |_| false);
        assert_eq!(o.stray(mine, true, None), Stray::Local);
        assert_eq!(o.stray(mine, false, None), Stray::Local);
    }

    #[test]
    fn after_a_join_old_connections_are_found_at_their_previous_owner() {
        // sw3 joined; we are sw3 and own keys that sw1 owned before.
        let o = Ownership {
            me: 2,
            now: table(0b111),
            prev: Some(table(0b011)),
            reachable: 0b111,
            generation: 2,
        };
        let prev = o.prev.as_ref().unwrap();
        let k = key_owned_by(&o.now, 2, |k| prev.owner(k) != 0);
        assert_eq!(
            o.stray(k, false, None),
            Stray::Previous(0),
            "an old connection"
        );
        assert_eq!(o.stray(k, true, None), Stray::Local, "a new one is ours");
        // Handed to us by sw1 itself (it has no state either): not back to it.
        assert_eq!(o.stray(k, false, Some(0)), Stray::Local);
    }

    #[test]
    fn a_draining_member_owns_nothing_new_but_keeps_its_connections() {
        // sw2 drains: out of the table, still reachable; we (sw1) own its share now.
        let o = Ownership {
            me: 0,
            now: table(0b101),
            prev: Some(table(0b111)),
            reachable: 0b111,
            generation: 4,
        };
        let prev = o.prev.as_ref().unwrap();
        let k = key_owned_by(&o.now, 0, |k| prev.owner(k) != 1);
        assert_eq!(
            o.stray(k, true, None),
            Stray::Local,
            "a new connection is ours"
        );
        assert_eq!(
            o.stray(k, false, None),
            Stray::Previous(1),
            "an old one is still sw2's"
        );
    }

    #[test]
    fn nothing_goes_to_a_member_that_is_not_live_or_back_to_its_sender() {
        // Handed over by sw3, whose table is stale: not passed on to sw2 (two hops at most).
        let o = Ownership {
            me: 0,
            now: table(0b111),
            prev: None,
            reachable: 0b111,
            generation: 1,
        };
        let k = key_owned_by(&o.now, 1, |_| false);
        assert_eq!(o.stray(k, false, Some(2)), Stray::Local);
        // Our table says sw2 owns it, but sw2 handed it to us: keep it.
        let o = Ownership {
            me: 0,
            now: table(0b111),
            prev: None,
            reachable: 0b111,
            generation: 1,
        };
        let k = key_owned_by(&o.now, 1, |_| false);
        assert_eq!(o.stray(k, false, Some(1)), Stray::Local);
        // The previous owner has left since: nothing to hand it to.
        let o = Ownership {
            me: 0,
            now: table(0b101),
            prev: Some(table(0b111)),
            reachable: 0b101,
            generation: 3,
        };
        let prev = o.prev.as_ref().unwrap();
        let k = key_owned_by(&o.now, 0, |k| prev.owner(k) != 1);
        assert_eq!(o.stray(k, false, None), Stray::Local);
    }
}
