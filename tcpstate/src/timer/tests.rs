//! The wheel against its promises: exact deadlines (never early, never missed), O(1)
//! changes, far deadlines over laps, and `expire` visiting only what is due plus the
//! few entries moving down a level.
use std::collections::HashMap;

use super::*;
use crate::xorshift::XorShift;

fn expired(w: &mut TimerWheel, now: u64) -> Vec<ConnId> {
    let mut out = Vec::new();
    w.expire(now, &mut out);
    out.sort_unstable();
    out
}

#[test]
fn fires_at_its_deadline_and_not_before() {
    let mut w = TimerWheel::new(8, 1_000);
    w.schedule(3, 1_100).unwrap();
    w.schedule(5, 1_001).unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(w.deadline(3), Some(1_100));
    assert_eq!(expired(&mut w, 1_000), Vec::<ConnId>::new());
    assert_eq!(expired(&mut w, 1_001), vec![5]);
    assert_eq!(expired(&mut w, 1_099), Vec::<ConnId>::new());
    assert_eq!(expired(&mut w, 1_100), vec![3]);
    assert_eq!(w.deadline(3), None, "handed out: no deadline left");
    assert!(w.is_empty());
    assert_eq!(expired(&mut w, 100_000), Vec::<ConnId>::new());
}

#[test]
fn cancel_and_reschedule() {
    let mut w = TimerWheel::new(8, 0);
    w.schedule(1, 50).unwrap();
    w.schedule(2, 50).unwrap();
    w.schedule(3, 50).unwrap();
    // The middle, the first and the last of one slot's list.
    assert!(w.cancel(2));
    assert!(!w.cancel(2), "already cancelled");
    assert!(!w.cancel(7), "never scheduled");
    assert_eq!(w.len(), 2);
    w.schedule(3, 10_000).unwrap(); // later
    w.schedule(1, 20).unwrap(); // earlier
    w.schedule(1, 20).unwrap(); // the same: nothing moves
    assert_eq!(w.len(), 2);
    assert_eq!(expired(&mut w, 49), vec![1]);
    assert_eq!(expired(&mut w, 9_999), Vec::<ConnId>::new());
    assert!(w.cancel(3));
    assert_eq!(expired(&mut w, 1 << 40), Vec::<ConnId>::new());
    assert!(w.is_empty());
    // A cancelled id is scheduled again as new.
    w.schedule(2, (1 << 40) + 5).unwrap();
    assert_eq!(expired(&mut w, (1 << 40) + 5), vec![2]);
}

#[test]
fn deadline_already_reached_fires_at_the_next_expire() {
    let mut w = TimerWheel::new(4, 0);
    assert_eq!(expired(&mut w, 5_000), Vec::<ConnId>::new());
    w.schedule(0, 4_000).unwrap(); // in the past
    w.schedule(1, 5_000).unwrap(); // now
    w.schedule(2, 0).unwrap();
    w.schedule(3, 5_001).unwrap();
    assert_eq!(w.len(), 4);
    // A clock that went back hands out nothing (and loses nothing).
    assert_eq!(expired(&mut w, 4_999), Vec::<ConnId>::new());
    assert_eq!(expired(&mut w, 5_000), vec![0, 1, 2]);
    // Rescheduled while overdue, then cancelled while overdue.
    w.schedule(0, 1).unwrap();
    w.schedule(0, 2).unwrap();
    w.schedule(1, 3).unwrap();
    assert!(w.cancel(1));
    assert_eq!(expired(&mut w, 5_000), vec![0]);
    assert_eq!(expired(&mut w, 5_001), vec![3]);
}

#[test]
fn far_deadlines_fire_on_time_over_laps() {
    const TOP_REACH: u64 = 1 << 36; // what six levels of 64 slots span, in ms
    let start = 123_456_789;
    let mut w = TimerWheel::new(6, start);
    let deadlines = [
        start + 3_600_000,              // an hour
        start + TOP_REACH - 1,          // the edge of the top level
        start + TOP_REACH,              // one lap
        start + 3 * TOP_REACH + 12_345, // three laps and a bit
        u64::MAX - 1,                   // "never", as a deadline
    ];
    for (id, d) in deadlines.iter().enumerate() {
        w.schedule(id as ConnId, *d).unwrap();
    }
    for (id, &d) in deadlines.iter().enumerate().take(4) {
        assert_eq!(expired(&mut w, d - 1), Vec::<ConnId>::new(), "{id} early");
        assert_eq!(expired(&mut w, d), vec![id as ConnId], "{id} on time");
    }
    assert_eq!(w.deadline(4), Some(u64::MAX - 1));
    // Big strides: each one only visits the slots that come round.
    let before = w.work();
    assert_eq!(
        expired(&mut w, deadlines[3] + 40 * TOP_REACH),
        Vec::<ConnId>::new()
    );
    assert!(w.work().slots - before.slots <= 64 * 40 + 64 * LEVELS as u64);
}

#[test]
fn ids_beyond_the_capacity_are_refused() {
    let mut w = TimerWheel::new(3, 0);
    assert_eq!(w.capacity(), 3);
    assert_eq!(w.schedule(3, 10), Err(IdOutOfRange));
    assert_eq!(w.schedule(ConnId::MAX, 10), Err(IdOutOfRange));
    assert!(!w.cancel(3));
    assert_eq!(w.deadline(3), None);
    for id in 0..3 {
        w.schedule(id, 10).unwrap();
    }
    assert_eq!(w.len(), 3);
    let mut out = Vec::with_capacity(w.capacity());
    w.expire(10, &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(out.capacity(), 3, "room for `capacity` ids is enough");
    let mut empty = TimerWheel::new(0, 0);
    assert_eq!(empty.schedule(0, 1), Err(IdOutOfRange));
    assert_eq!(expired(&mut empty, 100), Vec::<ConnId>::new());
}

#[test]
fn many_ids_each_fire_at_the_first_expire_past_their_deadline() {
    const N: usize = 200_000;
    let mut rng = XorShift(0x5eed);
    let mut w = TimerWheel::new(N, 0);
    let mut deadline = vec![0u64; N];
    for (id, d) in deadline.iter_mut().enumerate() {
        *d = 1 + rng.below_u64(600_000);
        w.schedule(id as ConnId, *d).unwrap();
    }
    let mut fired = vec![false; N];
    let mut out = Vec::with_capacity(N);
    let mut prev = 0;
    let mut now = 0;
    while now <= 600_010 {
        out.clear();
        w.expire(now, &mut out);
        for &id in &out {
            let d = deadline[id as usize];
            assert!(d <= now && d > prev, "{id}: deadline {d} at {prev}..{now}");
            assert!(!fired[id as usize]);
            fired[id as usize] = true;
        }
        prev = now;
        now += 10;
    }
    assert!(fired.iter().all(|f| *f));
    assert!(w.is_empty());
}

/// Random schedules, reschedules, cancels and clock steps against a map of deadlines.
#[test]
fn agrees_with_a_reference_model() {
    for seed in 1..=20u64 {
        const N: u64 = 512;
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let start = rng.below_u64(1 << 40);
        let mut w = TimerWheel::new(N as usize, start);
        let mut model: HashMap<ConnId, u64> = HashMap::new();
        let mut now = start;
        for step in 0..20_000 {
            let id = rng.below_u64(N) as ConnId;
            match rng.below_u64(10) {
                0..=4 => {
                    // Deadlines of every reach: past, now, this slot, each level, laps.
                    let d = match rng.below_u64(8) {
                        0 => now.saturating_sub(rng.below_u64(1_000)),
                        1 => now,
                        2 => now + rng.below_u64(64),
                        3 => now + rng.below_u64(4_096),
                        4 => now + rng.below_u64(1 << 20),
                        5 => now + rng.below_u64(1 << 34),
                        6 => now + rng.below_u64(1 << 38),
                        _ => now + rng.below_u64(200),
                    };
                    w.schedule(id, d).unwrap();
                    model.insert(id, d);
                }
                5 => assert_eq!(w.cancel(id), model.remove(&id).is_some()),
                _ => {
                    now += match rng.below_u64(20) {
                        0 => rng.below_u64(1 << 37),
                        1 => rng.below_u64(1 << 22),
                        2..=5 => 0,
                        _ => rng.below_u64(300),
                    };
                    let got = expired(&mut w, now);
                    let mut want: Vec<ConnId> = model
                        .iter()
                        .filter(|(_, d)| **d <= now)
                        .map(|(id, _)| *id)
                        .collect();
                    want.sort_unstable();
                    assert_eq!(got, want, "seed {seed} step {step} now {now}");
                    model.retain(|_, d| *d > now);
                }
            }
            assert_eq!(w.len(), model.len());
            assert_eq!(w.deadline(id), model.get(&id).copied());
        }
    }
}

/// A million connections on a core whose deadlines are far (idle timeouts) and a
/// thousand that are due: `expire` visits the thousand, not the million.
#[test]
fn expire_visits_only_what_is_due_among_a_million() {
    const N: usize = 1_000_000;
    const DUE: usize = 1_000;
    let now0 = 7_777_777;
    let mut w = TimerWheel::new(N, now0);
    let mut rng = XorShift(42);
    for id in DUE..N {
        // Idle timeouts of 60 to 120 s.
        w.schedule(id as ConnId, now0 + 60_000 + rng.below_u64(60_000))
            .unwrap();
    }
    for id in 0..DUE {
        w.schedule(id as ConnId, now0 + 1 + rng.below_u64(10))
            .unwrap();
    }
    let mut out = Vec::with_capacity(N);
    let before = w.work();
    w.expire(now0 + 10, &mut out);
    let work = w.work();
    assert_eq!(out.len(), DUE);
    assert!(out.iter().all(|id| (*id as usize) < DUE));
    let entries = work.entries - before.entries;
    let slots = work.slots - before.slots;
    println!("1M scheduled, {DUE} due: expire visited {entries} entries in {slots} slots");
    // The due ones, and at most a slot of level 1 moving down (none here: the far
    // deadlines sit at levels 2 and 3).
    assert_eq!(entries, DUE as u64);
    assert!(slots <= 10 + LEVELS as u64);
    // A quiet 10 ms later: nothing visited at all.
    out.clear();
    w.expire(now0 + 20, &mut out);
    assert!(out.is_empty());
    assert_eq!(w.work().entries, work.entries);
}

/// Work per timer over a whole run, swept every 10 ms as the worker does: the same for
/// a thousand and for a million connections (each entry moves down at most
/// `LEVELS - 1` times, and in practice about twice). The times printed beside it are
/// for docs/benchmarks.md; only the counted work is asserted.
#[test]
fn work_per_timer_is_flat_from_a_thousand_to_a_million() {
    struct Run {
        entries_per_timer: f64,
        slots_per_expire: f64,
        schedule_ns: f64,
        reschedule_ns: f64,
        expire_ns: f64,
    }
    let run = |n: usize| -> Run {
        let mut rng = XorShift(n as u64 | 1);
        let mut w = TimerWheel::new(n, 0);
        let ns_per = |t: std::time::Instant| t.elapsed().as_nanos() as f64 / n as f64;
        // Idle timeouts and retransmissions spread over two minutes.
        let t = std::time::Instant::now();
        for id in 0..n {
            w.schedule(id as ConnId, 1 + rng.below_u64(120_000))
                .unwrap();
        }
        let schedule_ns = ns_per(t);
        // Every connection's deadline moved once, in no order (what a sync does for
        // the connections that saw segments).
        let t = std::time::Instant::now();
        for _ in 0..n {
            let id = rng.below(n) as ConnId;
            w.schedule(id, 1 + rng.below_u64(120_000)).unwrap();
        }
        let reschedule_ns = ns_per(t);
        let mut out = Vec::with_capacity(n);
        let t = std::time::Instant::now();
        let mut now = 0;
        let mut fired = 0;
        while fired < n {
            now += 10;
            out.clear();
            w.expire(now, &mut out);
            fired += out.len();
        }
        let expire_ns = ns_per(t);
        let work = w.work();
        Run {
            entries_per_timer: work.entries as f64 / n as f64,
            slots_per_expire: work.slots as f64 / (now / 10) as f64,
            schedule_ns,
            reschedule_ns,
            expire_ns,
        }
    };
    println!("flows      entries/timer  slots/expire  schedule ns  reschedule ns  expire ns/timer");
    let runs: Vec<(usize, Run)> = [1_000, 10_000, 100_000, 1_000_000]
        .into_iter()
        .map(|n| (n, run(n)))
        .collect();
    for (n, r) in &runs {
        println!(
            "{n:>9}  {:>13.2}  {:>12.2}  {:>11.0}  {:>13.0}  {:>15.0}",
            r.entries_per_timer, r.slots_per_expire, r.schedule_ns, r.reschedule_ns, r.expire_ns
        );
    }
    let small = runs[0].1.entries_per_timer;
    let large = runs[3].1.entries_per_timer;
    assert!(small <= LEVELS as f64 && large <= LEVELS as f64);
    assert!((large - small).abs() < 0.5, "{small} vs {large}");
}
