//! The table keeps the timers, counts and MAC list true through every kind of change:
//! a deadline moved by a call into `Conn`, a state change, a removal, a slot reused.
use std::net::Ipv4Addr;

use super::*;
use crate::conn::tests::{bare_opts, params};
use crate::conn::{BackendTarget, Outputs, SegmentInfo};
use crate::reasm::HeadBuffer;
use crate::wire::SeqNumber;

/// The fixture's timeouts (`conn::tests::params`).
const HEAD_TIMEOUT: u64 = 10_000;
const CONNECT_TIMEOUT: u64 = 1_000;

fn key(port: u16) -> FlowKey {
    FlowKey {
        remote_ip: Ipv4Addr::new(198, 51, 100, 7),
        remote_port: port,
        local_ip: Ipv4Addr::new(203, 0, 113, 10),
        local_port: 80,
    }
}

/// A connection just accepted by cookie at `now` (ReadingHead, head timer running).
fn accepted(port: u16, now: u64) -> Conn {
    let ack = SegmentInfo {
        seq: SeqNumber(1001),
        ack: Some(SeqNumber(5001)),
        flags: 0,
        window: 502,
        timestamps: None,
        payload_len: 0,
        mss: None,
        window_scale: None,
        sack_permitted: false,
        checked: true,
    };
    Conn::accept(
        key(port),
        bare_opts(),
        ack.seq,
        SeqNumber(5001),
        &ack,
        HeadBuffer::new(256),
        params(),
        now,
    )
}

fn backend(local_port: u16) -> BackendTarget {
    BackendTarget {
        id: 0,
        key: FlowKey {
            remote_ip: Ipv4Addr::new(10, 1, 0, 7),
            remote_port: 8080,
            local_ip: Ipv4Addr::new(10, 1, 0, 1),
            local_port,
        },
    }
}

fn expired(t: &mut ConnTable, now: u64) -> Vec<ConnId> {
    let mut out = Vec::new();
    t.expire(now, &mut out);
    out.sort_unstable();
    out
}

#[test]
fn state_indexes_are_the_order_of_all() {
    for (i, s) in State::ALL.iter().enumerate() {
        assert_eq!(*s as usize, i, "{s:?}");
    }
}

#[test]
fn deadlines_follow_every_change() {
    let mut t = ConnTable::new(4, 0);
    let a = t.try_insert(key(1), accepted(1, 100)).unwrap();
    let b = t.try_insert(key(2), accepted(2, 100)).unwrap();
    assert_eq!(
        expired(&mut t, 100 + HEAD_TIMEOUT - 1),
        Vec::<ConnId>::new()
    );
    // `a` is queued for 50 ms: its deadline moves earlier through `get_mut`.
    t.get_mut(a).unwrap().enqueue(50, 200);
    assert_eq!(expired(&mut t, 100 + HEAD_TIMEOUT - 1), vec![a]);
    // Handed out: its deadline is off the wheel until the caller's `on_timer` moved
    // it; a connection left as it was comes out again (as the sweep called it again).
    assert_eq!(expired(&mut t, 100 + HEAD_TIMEOUT - 1), vec![a]);
    t.get_mut(a)
        .unwrap()
        .connect(backend(40_000), 20_000, &mut Outputs::default());
    assert_eq!(expired(&mut t, 100 + HEAD_TIMEOUT), vec![b]);
    assert_eq!(expired(&mut t, 20_000 + CONNECT_TIMEOUT - 1), vec![b]);
    assert_eq!(expired(&mut t, 20_000 + CONNECT_TIMEOUT), vec![a, b]);
    // Removed: no timer any more, even past every deadline.
    t.remove(a, &[key(1)]).unwrap();
    t.remove(b, &[key(2)]).unwrap();
    assert_eq!(expired(&mut t, 1 << 40), Vec::<ConnId>::new());
    assert!(t.timers().is_empty());
}

#[test]
fn a_reused_slot_carries_the_new_connections_timer_only() {
    let mut t = ConnTable::new(1, 0);
    let a = t.try_insert(key(1), accepted(1, 0)).unwrap();
    t.sync();
    // Removed and its slot taken before any sync: the newcomer's deadline counts.
    t.get_mut(a).unwrap().enqueue(5, 0);
    t.remove(a, &[key(1)]).unwrap();
    let b = t.try_insert(key(2), accepted(2, 1_000)).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        expired(&mut t, 1_000 + HEAD_TIMEOUT - 1),
        Vec::<ConnId>::new()
    );
    assert_eq!(t.count(State::Queued), 0);
    assert_eq!(t.count(State::ReadingHead), 1);
    assert_eq!(expired(&mut t, 1_000 + HEAD_TIMEOUT), vec![b]);
}

#[test]
fn counts_per_state_follow_changes_and_removals() {
    let mut t = ConnTable::new(8, 0);
    let ids: Vec<ConnId> = (0..5)
        .map(|p| t.try_insert(key(p), accepted(p, 0)).unwrap())
        .collect();
    t.sync();
    assert_eq!(t.count(State::ReadingHead), 5);
    t.get_mut(ids[0]).unwrap().enqueue(1_000, 10);
    t.get_mut(ids[1])
        .unwrap()
        .connect(backend(40_001), 10, &mut Outputs::default());
    t.get_mut(ids[2]).unwrap().kill(10, &mut Outputs::default());
    // Counts are as of the last sync: the gauges are read right after one.
    assert_eq!(t.count(State::ReadingHead), 5);
    t.sync();
    let counts: Vec<u64> = State::ALL.iter().map(|s| t.count(*s)).collect();
    // ReadingHead, Queued, Connecting, Spliced, Responding, HandedOff, Closed.
    assert_eq!(counts, vec![2, 1, 1, 0, 0, 0, 1]);
    // A removal counts at once, synced or not.
    t.remove(ids[2], &[key(2)]).unwrap();
    t.get_mut(ids[3]).unwrap().enqueue(1_000, 10);
    t.remove(ids[3], &[key(3)]).unwrap();
    assert_eq!(t.count(State::Closed), 0);
    t.sync();
    let counts: Vec<u64> = State::ALL.iter().map(|s| t.count(*s)).collect();
    assert_eq!(counts, vec![1, 1, 1, 0, 0, 0, 0]);
    assert_eq!(counts.iter().sum::<u64>(), t.len() as u64);
}

#[test]
fn connections_waiting_for_a_mac_are_listed_until_they_stop_waiting() {
    let mut t = ConnTable::new(4, 0);
    let a = t.try_insert(key(1), accepted(1, 0)).unwrap();
    let b = t.try_insert(key(2), accepted(2, 0)).unwrap();
    let c = t.try_insert(key(3), accepted(3, 0)).unwrap();
    for id in [a, b] {
        t.get_mut(id)
            .unwrap()
            .connect(backend(0), 5, &mut Outputs::default());
    }
    t.get_mut(c)
        .unwrap()
        .connect(backend(40_002), 5, &mut Outputs::default());
    let mut out = Vec::new();
    t.waiting_for_mac(&mut out);
    assert!(out.is_empty(), "as of the last sync: none yet");
    t.sync();
    t.waiting_for_mac(&mut out);
    out.sort_unstable();
    assert_eq!(out, vec![a, b]);
    // `a` got its MAC and a port; `b` went away and its slot went to one that waits.
    t.get_mut(a)
        .unwrap()
        .connect(backend(40_003), 6, &mut Outputs::default());
    t.remove(b, &[key(2)]).unwrap();
    let d = t.try_insert(key(4), accepted(4, 7)).unwrap();
    assert_eq!(d, b);
    t.get_mut(d)
        .unwrap()
        .connect(backend(0), 7, &mut Outputs::default());
    t.sync();
    t.waiting_for_mac(&mut out);
    assert_eq!(out, vec![d]);
    t.remove(d, &[key(4)]).unwrap();
    t.waiting_for_mac(&mut out);
    assert!(out.is_empty());
    assert!(
        t.waiting_mac.is_empty(),
        "the list forgets who stopped waiting"
    );
}

/// Random changes against a brute-force look over the whole table: after a sync, the
/// wheel holds every connection's deadline and the counts match.
#[test]
fn agrees_with_a_scan_of_the_table() {
    const CAP: u16 = 64;
    let mut rng = crate::xorshift::XorShift(0xC0FFEE);
    let mut t = ConnTable::new(CAP as usize, 0);
    let mut now = 0u64;
    let mut out = Vec::new();
    for _ in 0..20_000 {
        let p = rng.below(CAP as usize * 2) as u16;
        let found = t.lookup(&key(p)).map(|(id, _)| id);
        match (rng.below(6), found) {
            (0, None) => {
                let _ = t.try_insert(key(p), accepted(p, now));
            }
            (1, Some(id)) => {
                t.remove(id, &[key(p)]);
            }
            (2, Some(id)) => t.get_mut(id).unwrap().enqueue(rng.below_u64(5_000), now),
            (3, Some(id)) => {
                let port = if rng.below(2) == 0 { 0 } else { 40_000 + p };
                t.get_mut(id)
                    .unwrap()
                    .connect(backend(port), now, &mut Outputs::default());
            }
            (4, Some(id)) => {
                let _ = t.get_mut(id).unwrap().kill(now, &mut Outputs::default());
            }
            _ => {
                now += rng.below_u64(50);
                out.clear();
                t.expire(now, &mut out);
                for &id in &out {
                    let c = t.get_mut(id).unwrap();
                    assert!(c.deadline_ms() <= now, "only due ones");
                    // What the worker does with a due one, in the ways that keep it.
                    if c.state == State::Closed {
                        t.remove(id, &[c_key(&t, id)]);
                    } else {
                        let _ = t.get_mut(id).unwrap().kill(now, &mut Outputs::default());
                    }
                }
                // Every live connection not handed out has its deadline on the wheel
                // (or was just changed and waits for the sync below).
                t.sync();
                let mut ids = Vec::new();
                t.live_ids(&mut ids);
                let mut by_state = [0u64; State::ALL.len()];
                for &id in &ids {
                    let c = t.get(id).unwrap();
                    assert_eq!(t.timers().deadline(id), Some(c.deadline_ms()));
                    by_state[c.state as usize] += 1;
                }
                for s in State::ALL {
                    assert_eq!(t.count(s), by_state[s as usize], "{s:?}");
                }
                assert_eq!(t.timers().len(), ids.len());
            }
        }
    }
}

fn c_key(t: &ConnTable, id: ConnId) -> FlowKey {
    t.get(id).unwrap().client
}
