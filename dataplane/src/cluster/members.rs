//! Who else serves the VIPs (`cluster.members`), as their beats say, and the ownership
//! tables built from that (see `tcpstate::cluster`).
//!
//! Any core may receive a peer's beat and records it here (atomics, one slot per
//! member). Worker 0 sends this instance's beats. The main thread looks every 100 ms at
//! who is live and at the workload factors their beats report (`cluster.balance`) and,
//! when either changed, builds a new Maglev table and publishes it with the previous one; cores read the tables only for segments of flows they hold no state
//! for. So a member is dropped at most `dead_after_ms` + 100 ms after its last beat, or
//! at once when it says it leaves.
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use rules::Config;
use serde_json::{json, Value};
use tcpstate::cluster::beat::{Beat, MemberState};
use tcpstate::cluster::load;
use tcpstate::cluster::maglev::Maglev;
use tcpstate::cluster::ownership::Ownership;
use tcpstate::cluster::sync::SpliceRecord;
use tcpstate::flow::FlowKey;
use tcpstate::wire::MacAddr;

use super::takeover::Takeover;

/// What another thread leaves in a worker's inbox.
#[derive(Debug, Clone, Copy)]
pub enum Inbound {
    /// A splice record for a flow the core steers: pushed by a member (the datagram
    /// reached another core), or found in the store.
    Record(SpliceRecord),
    /// The store holds no record under this tuple, which the core asked for.
    StoreNone(FlowKey),
}

#[derive(Default)]
struct Slot {
    /// TSC of the last beat (0: never heard).
    heard_tsc: AtomicU64,
    /// The MAC its beats come from: where handed-over segments go (0: unknown).
    mac: AtomicU64,
    leaving: AtomicBool,
    draining: AtomicBool,
    seq: AtomicU32,
    /// The members it sees live, as its last beat said.
    view: AtomicU32,
    beats: AtomicU64,
    /// Times it was taken out of the table (gone silent or left).
    lost: AtomicU64,
    state: AtomicU8,
    /// Splice records (and forgets) received from it, and the TSC of the last one.
    records: AtomicU64,
    record_tsc: AtomicU64,
    /// Its workload factor as its last beat said (`tcpstate::cluster::load`; 0: none).
    capacity: AtomicU8,
}

/// How long after a change of owners a segment about to be handed over is first checked
/// against this instance's own SYN cookies: longer than any handshake's round trip here.
pub const HANDSHAKE_GRACE_MS: u64 = 5000;

/// Liveness as the table was last built (`Slot::state`).
const STATE_DOWN: u8 = 0;
const STATE_LIVE: u8 = 1;

pub struct Membership {
    /// This instance's index in `names`.
    pub me: usize,
    /// The port the members meet on (holds `addresses[me]`).
    pub port: usize,
    pub names: Vec<String>,
    pub addresses: Vec<Ipv4Addr>,
    pub udp_port: u16,
    pub heartbeat_ms: u64,
    dead_after_tsc: u64,
    started_tsc: u64,
    tsc_hz: u64,
    /// TSC of the last change of owners (start counts as one): handshakes answered just
    /// before it may complete at an instance that no longer owns them (`recently_changed`).
    changed_tsc: AtomicU64,
    slots: Vec<Slot>,
    tables: ArcSwap<Ownership>,
    /// Set at a clean stop: worker 0's last beats say `leaving`.
    pub leaving: AtomicBool,
    /// This instance owns no new connection (it cannot serve, or an operator withdrew
    /// it): its beats say `draining`. Set by the main thread.
    pub draining: AtomicBool,
    /// The operator's `cluster.withdraw` (until `cluster.announce`).
    pub operator_withdrawn: AtomicBool,
    /// A front (`cluster.front`): owns no connection, ever; hands every one over.
    pub front: bool,
    /// Backend-facing addresses of gone members that this instance answers for.
    pub takeover: Arc<Takeover>,
    /// Adopted connections whose backend side the port rule would steer to another core
    /// (members with other worker counts).
    pub adopted_steer: Arc<super::adopted_steer::AdoptedSteer>,
    /// Per worker: splice records received by another core for flows it steers (the
    /// core that receives a record's datagram is not the one that would adopt it).
    pub inbox: Vec<ArrayQueue<Inbound>>,
    /// `cluster.state_store`: records go to this store instead of to every member.
    pub store: Option<Arc<super::store::Store>>,
    /// `cluster.balance` is `workload`: this instance reports its workload factor.
    pub reports_workload: bool,
    /// The workload factor its beats report (a level, 0: none), and the measured
    /// available capacity behind it (thousandths). Set by the main thread.
    pub capacity: AtomicU8,
    pub available_permille: AtomicU32,
}

/// Records a worker may have waiting from the others (beyond, they are dropped and
/// counted: their connections then cannot be adopted).
const INBOX_LEN: usize = 4096;

fn mac_bits(m: MacAddr) -> u64 {
    m.0.iter().fold(0u64, |a, b| a << 8 | u64::from(*b))
}

fn bits_mac(b: u64) -> MacAddr {
    let mut m = [0u8; 6];
    for (i, x) in m.iter_mut().enumerate() {
        *x = (b >> (8 * (5 - i))) as u8;
    }
    MacAddr(m)
}

impl Membership {
    /// None when the config lists no members.
    pub fn from_config(config: &Config, tsc_hz: u64, now_tsc: u64) -> Option<Membership> {
        let c = &config.cluster;
        let (me, port) = c.me(&config.ports)?;
        let names: Vec<String> = c.members.iter().map(|m| m.name.clone()).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // Weighed as `refresh` weighs (no member has reported a workload factor yet: each
        // counts as a full share), or its first look would rebuild the same table.
        let full = vec![load::weight(0); names.len()];
        let now = Maglev::build_weighted(&refs, 1 << me, &full).expect("this member is live");
        let slots: Vec<Slot> = (0..names.len()).map(|_| Slot::default()).collect();
        slots[me].state.store(STATE_LIVE, Ordering::Relaxed);
        Some(Membership {
            me,
            port,
            addresses: c.members.iter().map(|m| m.address).collect(),
            names,
            udp_port: c.port,
            heartbeat_ms: c.heartbeat_ms,
            dead_after_tsc: c.dead_after_ms * (tsc_hz / 1000).max(1),
            started_tsc: now_tsc,
            tsc_hz,
            changed_tsc: AtomicU64::new(now_tsc),
            slots,
            tables: ArcSwap::from_pointee(Ownership {
                me,
                now,
                prev: None,
                reachable: 1 << me,
                generation: 1,
            }),
            leaving: AtomicBool::new(false),
            draining: AtomicBool::new(c.front),
            operator_withdrawn: AtomicBool::new(false),
            front: c.front,
            takeover: Arc::new(Takeover::default()),
            adopted_steer: Arc::new(super::adopted_steer::AdoptedSteer::default()),
            inbox: (0..config.lcores.workers.len().max(1))
                .map(|_| ArrayQueue::new(INBOX_LEN))
                .collect(),
            store: c
                .state_store
                .as_ref()
                .map(|s| Arc::new(super::store::Store::new(s.memcached, s.ttl_s))),
            reports_workload: c.balance == rules::config::Balance::Workload,
            capacity: AtomicU8::new(0),
            available_permille: AtomicU32::new(1000),
        })
    }

    /// Records a peer's beat. False when it is not from a member at the address its
    /// index names (the caller counts it as a bad beat).
    pub fn on_beat(&self, src: Ipv4Addr, src_mac: MacAddr, beat: &Beat, now_tsc: u64) -> bool {
        let i = usize::from(beat.index);
        if i == self.me || self.addresses.get(i) != Some(&src) {
            return false;
        }
        let s = &self.slots[i];
        s.mac.store(mac_bits(src_mac), Ordering::Relaxed);
        s.seq.store(beat.seq, Ordering::Relaxed);
        s.view.store(beat.live, Ordering::Relaxed);
        s.capacity.store(beat.capacity, Ordering::Relaxed);
        s.leaving
            .store(beat.state == MemberState::Leaving, Ordering::Relaxed);
        s.draining
            .store(beat.state == MemberState::Draining, Ordering::Relaxed);
        s.beats.fetch_add(1, Ordering::Relaxed);
        s.heard_tsc.store(now_tsc.max(1), Ordering::Release);
        true
    }

    /// The TSC of member `m`'s last beat (0: never heard).
    pub fn heard_tsc(&self, m: usize) -> u64 {
        self.slots
            .get(m)
            .map_or(0, |s| s.heard_tsc.load(Ordering::Acquire))
    }

    /// A splice record from member `m` was accepted (for `webswitchctl cluster`).
    pub fn on_record(&self, m: usize, now_tsc: u64) {
        if let Some(s) = self.slots.get(m) {
            s.records.fetch_add(1, Ordering::Relaxed);
            s.record_tsc.store(now_tsc.max(1), Ordering::Relaxed);
        }
    }

    /// The members now (a bit per index): those that may own new connections, and
    /// those segments may be handed to. Reachable: this one (unless leaving) and every
    /// peer heard within `dead_after_ms` that did not say it leaves; serving: those of
    /// them that are not draining.
    pub fn live_now(&self, now_tsc: u64) -> (u32, u32) {
        let (mut serving, mut reachable) = (0u32, 0u32);
        for (i, s) in self.slots.iter().enumerate() {
            let (up, draining) = if i == self.me {
                (
                    !self.leaving.load(Ordering::Relaxed),
                    self.draining.load(Ordering::Relaxed),
                )
            } else {
                let heard = s.heard_tsc.load(Ordering::Acquire);
                (
                    heard != 0
                        && now_tsc.saturating_sub(heard) <= self.dead_after_tsc
                        && !s.leaving.load(Ordering::Relaxed),
                    s.draining.load(Ordering::Relaxed),
                )
            };
            if up {
                reachable |= 1 << i;
                if !draining {
                    serving |= 1 << i;
                }
            }
        }
        (serving, reachable)
    }

    /// Whether this instance started so recently that a segment to its own address with
    /// no flow may belong to a connection another member adopted from its previous run, and
    /// the records that say so are still on their way (they come once the others hear it):
    /// such a segment is dropped (the peer retransmits) rather than reset. `dead_after_ms`
    /// plus two seconds.
    pub fn joining(&self, now_tsc: u64) -> bool {
        now_tsc.saturating_sub(self.started_tsc) < self.dead_after_tsc + 2 * self.tsc_hz
    }

    /// Whether this instance has had time to hear every peer (every one heard, or
    /// `dead_after_ms` since start): before that its table may give it flows a peer owns.
    pub fn settled(&self, now_tsc: u64) -> bool {
        now_tsc.saturating_sub(self.started_tsc) > self.dead_after_tsc
            || self
                .slots
                .iter()
                .enumerate()
                .all(|(i, s)| i == self.me || s.heard_tsc.load(Ordering::Relaxed) != 0)
    }

    /// The table weight of every member (by index) as the beats say now: its reported
    /// workload factor, or a full share when it reports none.
    pub fn weights(&self) -> Vec<u32> {
        (0..self.names.len())
            .map(|i| load::weight(self.reported_capacity(i)))
            .collect()
    }

    /// Member `i`'s workload factor: ours, or as its last beat said (0: none).
    fn reported_capacity(&self, i: usize) -> u8 {
        if i == self.me {
            self.capacity.load(Ordering::Relaxed)
        } else {
            self.slots[i].capacity.load(Ordering::Relaxed)
        }
    }

    /// Main thread: rebuilds and publishes the tables when the live set or the live
    /// members' weights changed. Returns the new generation when it did.
    pub fn refresh(&self, now_tsc: u64) -> Option<u64> {
        let (serving, reachable) = self.live_now(now_tsc);
        // Someone must own new connections: with every member draining, all of them do.
        let live = if serving != 0 { serving } else { reachable };
        let cur = self.tables.load();
        let weights = self.weights();
        let same_weights =
            (0..self.names.len()).all(|i| live >> i & 1 == 0 || cur.now.weights()[i] == weights[i]);
        let same_owners = cur.now.live() == live && same_weights;
        if (same_owners && cur.reachable == reachable) || live == 0 {
            return None;
        }
        if same_owners {
            // Only who may be handed segments changed (a draining member left or came
            // back): same owners, same previous table.
            self.tables.store(Arc::new(Ownership {
                reachable,
                generation: cur.generation + 1,
                ..Ownership::clone(&cur)
            }));
            return Some(cur.generation + 1);
        }
        let refs: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let now = Maglev::build_weighted(&refs, live, &weights)?;
        if cur.now.live() == live {
            tracing::info!(weights = ?now.weights(), generation = cur.generation + 1, "cluster shares changed with the members' workload factors");
        }
        let generation = cur.generation + 1;
        for (i, s) in self.slots.iter().enumerate() {
            let up = reachable >> i & 1 == 1;
            let was = s
                .state
                .swap(if up { STATE_LIVE } else { STATE_DOWN }, Ordering::Relaxed);
            if was == STATE_LIVE && !up {
                s.lost.fetch_add(1, Ordering::Relaxed);
            }
            if (was == STATE_LIVE) != up {
                tracing::warn!(member = %self.names[i], live = up, generation, "cluster membership changed");
            }
            if up && (live >> i & 1 == 1) != (cur.now.live() >> i & 1 == 1) {
                let owns = live >> i & 1 == 1;
                tracing::warn!(member = %self.names[i], owns_new_connections = owns, generation, "cluster ownership changed");
            }
        }
        // The table the others used before: ours, except when ours had only us (we just
        // started, or heard no one for a while): then theirs, without us, where the
        // connections opened meanwhile live.
        let prev = if cur.now.live() == 1 << self.me {
            Maglev::build_weighted(&refs, live & !(1 << self.me), &weights)
        } else {
            Some(cur.now.clone())
        };
        self.tables.store(Arc::new(Ownership {
            me: self.me,
            now,
            prev,
            reachable,
            generation,
        }));
        self.changed_tsc.store(now_tsc, Ordering::Release);
        Some(generation)
    }

    /// Whether the owners changed within the last [`HANDSHAKE_GRACE_MS`]: a handshake this
    /// instance answered just before may now complete here while another member owns it.
    #[inline]
    pub fn recently_changed(&self, now_tsc: u64) -> bool {
        let grace = HANDSHAKE_GRACE_MS * (self.tsc_hz / 1000).max(1);
        now_tsc.saturating_sub(self.changed_tsc.load(Ordering::Acquire)) < grace
    }

    /// The tables segments of unknown flows are routed by.
    #[inline]
    pub fn tables(&self) -> arc_swap::Guard<Arc<Ownership>> {
        self.tables.load()
    }

    /// Where a segment for member `m` goes (None until a beat told its MAC).
    pub fn mac_of(&self, m: usize) -> Option<MacAddr> {
        let b = self.slots.get(m)?.mac.load(Ordering::Relaxed);
        (b != 0).then(|| bits_mac(b))
    }

    /// The member whose frames come from `mac`, if any (a handed-over segment).
    pub fn member_with_mac(&self, mac: MacAddr) -> Option<usize> {
        let b = mac_bits(mac);
        self.slots
            .iter()
            .position(|s| s.mac.load(Ordering::Relaxed) == b)
            .filter(|&i| i != self.me)
    }

    /// What `cluster` shows of the members.
    pub fn json(&self, now_tsc: u64) -> Value {
        let t = self.tables.load();
        let shares = t.now.shares(self.names.len());
        let live = t.reachable;
        let ms = |tsc: u64| tsc * 1000 / self.tsc_hz.max(1);
        let members: Vec<Value> = (0..self.names.len())
            .map(|i| {
                let s = &self.slots[i];
                let heard = s.heard_tsc.load(Ordering::Relaxed);
                let record = s.record_tsc.load(Ordering::Relaxed);
                let last_record = (record != 0).then(|| ms(now_tsc.saturating_sub(record)));
                json!({
                    "name": self.names[i],
                    "address": self.addresses[i].to_string(),
                    "self": i == self.me,
                    "live": live >> i & 1 == 1,
                    "share": shares[i] as f64 / tcpstate::cluster::maglev::TABLE_SIZE as f64,
                    "heard_ms_ago": (i != self.me && heard != 0).then(|| ms(now_tsc.saturating_sub(heard))),
                    "beats": s.beats.load(Ordering::Relaxed),
                    "seq": s.seq.load(Ordering::Relaxed),
                    "sees_owning": (i != self.me && heard != 0).then(|| s.view.load(Ordering::Relaxed)),
                    "leaving": s.leaving.load(Ordering::Relaxed),
                    "draining": if i == self.me { self.draining.load(Ordering::Relaxed) } else { s.draining.load(Ordering::Relaxed) },
                    "times_lost": s.lost.load(Ordering::Relaxed),
                    "mac": self.mac_of(i).map(|m| m.to_string()),
                    "records_received": s.records.load(Ordering::Relaxed),
                    "last_record_ms_ago": last_record,
                    "backend_address": self.takeover.state(i).0.map(|a| a.to_string()),
                    "backend_address_taken": self.takeover.state(i).2,
                    "capacity": Some(self.reported_capacity(i))
                        .filter(|&c| c != 0)
                        .map(|c| f64::from(c) / f64::from(load::LEVELS)),
                    "weight": t.now.weights()[i],
                })
            })
            .collect();
        json!({
            "me": self.names[self.me],
            "front": self.front,
            "generation": t.generation,
            "live": live,
            "owning": t.now.live(),
            "settled": self.settled(now_tsc),
            "balance": if self.reports_workload { "workload" } else { "equal" },
            "available": f64::from(self.available_permille.load(Ordering::Relaxed)) / 1000.0,
            "members": members,
            "state_sharing": match &self.store {
                Some(s) => json!({ "design": "store", "store": s.json() }),
                None => json!({ "design": "push" }),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpstate::cluster::maglev::TABLE_SIZE;

    #[test]
    fn macs_round_trip_through_the_slot_encoding() {
        let m = MacAddr([0x02, 0, 0x0a, 0xe7, 4, 0x1f]);
        assert_eq!(bits_mac(mac_bits(m)), m);
    }

    /// 1 GHz: a millisecond is 1,000,000 ticks.
    const HZ: u64 = 1_000_000_000;
    const MS: u64 = HZ / 1000;

    /// Instance `me` (0-based) of a three-member cluster built from examples/cluster.json.
    fn member(me: u8) -> Membership {
        let mut v: serde_json::Value =
            serde_json::from_str(include_str!("../../../examples/cluster.json")).unwrap();
        v["ports"][0]["addresses"][0] = format!("10.99.4.{}/24", 31 + me).into();
        v["cluster"]["members"] = json!([
            { "name": "sw1", "address": "10.99.4.31" },
            { "name": "sw2", "address": "10.99.4.32" },
            { "name": "sw3", "address": "10.99.4.33" },
        ]);
        let c = Config::from_json(&v.to_string()).unwrap();
        Membership::from_config(&c, HZ, MS).unwrap()
    }

    fn beat(m: &Membership, from: u8, state: MemberState, at: u64) -> bool {
        let b = Beat {
            state,
            index: from,
            capacity: 0,
            seq: 0,
            live: 0,
            backend: None,
        };
        let src = Ipv4Addr::new(10, 99, 4, 31 + from);
        m.on_beat(src, MacAddr([2, 0, 0, 0, 0, from]), &b, at)
    }

    #[test]
    fn beats_from_strangers_or_wrong_addresses_are_refused() {
        let m = member(0);
        assert!(beat(&m, 1, MemberState::Alive, 10 * MS));
        assert!(!beat(&m, 0, MemberState::Alive, 10 * MS), "our own index");
        let b = Beat {
            state: MemberState::Alive,
            index: 2,
            capacity: 0,
            seq: 0,
            live: 0,
            backend: None,
        };
        assert!(!m.on_beat(Ipv4Addr::new(10, 99, 4, 99), MacAddr([2; 6]), &b, 10 * MS));
        let b = Beat { index: 7, ..b };
        assert!(!m.on_beat(Ipv4Addr::new(10, 99, 4, 33), MacAddr([2; 6]), &b, 10 * MS));
    }

    #[test]
    fn members_come_drain_and_go_with_their_beats() {
        let m = member(0);
        assert_eq!(m.refresh(2 * MS), None, "alone as at start: the same table");
        assert!(!m.settled(2 * MS), "heard no one yet");
        beat(&m, 1, MemberState::Alive, 10 * MS);
        beat(&m, 2, MemberState::Alive, 10 * MS);
        assert!(m.settled(11 * MS));
        assert_eq!(m.refresh(20 * MS), Some(2));
        let t = m.tables();
        assert_eq!((t.now.live(), t.reachable), (0b111, 0b111));
        // Just joined: the previous table is the others', without us.
        assert_eq!(t.prev.as_ref().map(|p| p.live()), Some(0b110));
        assert_eq!(m.refresh(30 * MS), None, "nothing changed");
        // sw3 drains: it owns nothing new but is still handed its segments.
        beat(&m, 1, MemberState::Alive, 100 * MS);
        beat(&m, 2, MemberState::Draining, 100 * MS);
        assert_eq!(m.refresh(110 * MS), Some(3));
        let t = m.tables();
        assert_eq!((t.now.live(), t.reachable), (0b011, 0b111));
        assert_eq!(t.prev.as_ref().map(|p| p.live()), Some(0b111));
        // sw3 goes silent: gone after dead_after_ms (500), the owners unchanged.
        beat(&m, 1, MemberState::Alive, 600 * MS);
        assert_eq!(
            m.refresh(601 * MS),
            Some(4),
            "sw3 is gone: reachability changed"
        );
        let t = m.tables();
        assert_eq!((t.now.live(), t.reachable), (0b011, 0b011));
        assert_eq!(
            t.prev.as_ref().map(|p| p.live()),
            Some(0b111),
            "same owners, same previous"
        );
        // sw2 leaves cleanly: dropped at once, not after dead_after_ms.
        beat(&m, 1, MemberState::Leaving, 610 * MS);
        assert_eq!(m.refresh(611 * MS), Some(5));
        let t = m.tables();
        assert_eq!((t.now.live(), t.reachable), (0b001, 0b001));
        // After that spell alone, sw2 and sw3 come back: the previous table is theirs.
        beat(&m, 1, MemberState::Alive, 900 * MS);
        beat(&m, 2, MemberState::Alive, 900 * MS);
        assert_eq!(m.refresh(901 * MS), Some(6));
        let t = m.tables();
        assert_eq!(t.now.live(), 0b111);
        assert_eq!(t.prev.as_ref().map(|p| p.live()), Some(0b110));
    }

    #[test]
    fn reported_workload_factors_set_the_shares() {
        let m = member(0);
        let at = |from: u8, capacity: u8, t: u64| {
            let b = Beat {
                state: MemberState::Alive,
                index: from,
                capacity,
                seq: 0,
                live: 0,
                backend: None,
            };
            let src = Ipv4Addr::new(10, 99, 4, 31 + from);
            assert!(m.on_beat(src, MacAddr([2, 0, 0, 0, 0, from]), &b, t));
        };
        // No one reports (balance equal, or an older version): equal shares.
        at(1, 0, 10 * MS);
        at(2, 0, 10 * MS);
        m.refresh(11 * MS);
        let equal = m.tables().now.shares(3);
        assert!(
            equal.iter().all(|s| s.abs_diff(TABLE_SIZE / 3) <= 1),
            "{equal:?}"
        );
        // Full capacity reported is the same table: nothing is rebuilt.
        at(1, 16, 20 * MS);
        at(2, 16, 20 * MS);
        assert_eq!(m.refresh(21 * MS), None);
        // sw3 has a quarter left: its share drops to 4 / (16 + 16 + 4).
        let generation = m.tables().generation;
        at(1, 16, 30 * MS);
        at(2, 4, 30 * MS);
        assert_eq!(m.refresh(31 * MS), Some(generation + 1));
        let t = m.tables();
        let shares = t.now.shares(3);
        assert!(shares[2].abs_diff(TABLE_SIZE * 4 / 36) <= 2, "{shares:?}");
        assert_eq!(t.now.weights(), &[16, 16, 4]);
        // The previous table is the equal one: connections set up before the change.
        assert_eq!(
            t.prev.as_ref().map(|p| p.weights().to_vec()),
            Some(vec![16, 16, 16])
        );
        // Our own factor counts the same way.
        m.capacity.store(8, Ordering::Relaxed);
        m.refresh(40 * MS);
        assert_eq!(m.tables().now.weights(), &[8, 16, 4]);
        assert_eq!(m.json(41 * MS)["members"][2]["capacity"], 0.25);
    }

    #[test]
    fn a_draining_instance_gives_its_share_away_and_all_draining_still_own() {
        let m = member(0);
        beat(&m, 1, MemberState::Alive, 10 * MS);
        beat(&m, 2, MemberState::Alive, 10 * MS);
        m.refresh(11 * MS);
        m.draining.store(true, Ordering::Relaxed);
        m.refresh(12 * MS);
        assert_eq!(m.tables().now.live(), 0b110);
        // Everyone draining: someone must still own new connections; all do.
        beat(&m, 1, MemberState::Draining, 20 * MS);
        beat(&m, 2, MemberState::Draining, 20 * MS);
        m.refresh(21 * MS);
        assert_eq!(m.tables().now.live(), 0b111);
    }
}
