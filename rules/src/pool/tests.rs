use serde_json::json;

use super::*;

const EXAMPLE: &str = include_str!("../../../examples/testbed.json");

/// Backends a..=e (10.99.1.21-25, weights given), one pool `p` of the given members
/// and scheduler; `workers` worker lcores.
fn pools_with(
    weights: &[u32],
    members: &[&str],
    scheduler: &str,
    extra: serde_json::Value,
    workers: usize,
) -> (Config, Pools) {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
    let names = ["a", "b", "c", "d", "e"];
    v["backends"] = weights
        .iter()
        .enumerate()
        .map(|(i, w)| json!({ "name": names[i], "address": format!("10.99.1.{}", 21 + i), "weight": w }))
        .collect();
    let mut pool = json!({ "name": "p", "backends": members, "scheduler": scheduler });
    if let serde_json::Value::Object(m) = extra {
        for (k, val) in m {
            pool[k] = val;
        }
    }
    v["pools"] = json!([pool]);
    v["rules"] = json!([]);
    v["default_pool"] = "p".into();
    v["lcores"]["workers"] = (1..=workers as u32).collect();
    v["lcores"]["cpus"] = json!({});
    let c = Config::from_json(&v.to_string()).unwrap();
    let p = Pools::new(&c).unwrap();
    (c, p)
}

fn simple(weights: &[u32], scheduler: &str) -> Pools {
    let names = ["a", "b", "c", "d", "e"];
    pools_with(weights, &names[..weights.len()], scheduler, json!({}), 1).1
}

/// Picks `n` times (each pick opened and immediately closed), counting per backend.
fn counts(
    p: &mut Pools,
    n: usize,
    key: impl Fn(usize) -> Vec<u8>,
    rand: impl Fn(usize) -> u64,
) -> Vec<usize> {
    let mut c = vec![0; p.backend_count()];
    for i in 0..n {
        if let Some(b) = p.pick(0, &key(i), rand(i)) {
            c[b] += 1;
        }
    }
    c
}

fn seq(p: &mut Pools, n: usize) -> Vec<BackendId> {
    (0..n).map(|_| p.pick(0, b"/", 0).unwrap()).collect()
}

#[test]
fn round_robin_cycles_and_skips_unavailable() {
    let mut p = simple(&[1, 1, 1], "round_robin");
    assert_eq!(seq(&mut p, 6), [0, 1, 2, 0, 1, 2]);
    p.set_up(1, false);
    assert_eq!(seq(&mut p, 4), [0, 2, 0, 2]);
    p.set_up(1, true);
    p.set_weight(2, 0);
    assert_eq!(seq(&mut p, 4), [0, 1, 0, 1]);
    assert!(!p.is_available(2) && p.is_up(2));
    p.set_up(0, false);
    p.set_up(1, false);
    assert_eq!(p.pick(0, b"/", 0), None, "none available");
}

#[test]
fn smooth_weighted_round_robin() {
    // nginx's example: weights 5, 1, 1 give a a b a c a a (interleaved, not a a a a a b c).
    let mut p = simple(&[5, 1, 1], "weighted_round_robin");
    assert_eq!(seq(&mut p, 7), [0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(seq(&mut p, 7), [0, 0, 1, 0, 2, 0, 0]);
    let mut p = simple(&[3, 2, 1], "weighted_round_robin");
    let c = counts(&mut p, 600, |_| b"/".to_vec(), |_| 0);
    assert_eq!(c, [300, 200, 100]);
    // Drained and down members are skipped; the rest keep their ratio.
    p.set_weight(0, 0);
    let c = counts(&mut p, 300, |_| b"/".to_vec(), |_| 0);
    assert_eq!(c, [0, 200, 100]);
    p.set_up(1, false);
    p.set_up(2, false);
    assert_eq!(p.pick(0, b"/", 0), None);
}

#[test]
fn least_connections_weighs_and_rotates_ties() {
    let mut p = simple(&[1, 1, 1], "least_connections");
    // All idle: ties go round robin.
    assert_eq!(seq(&mut p, 3), [0, 1, 2]);
    // Open connections as picked: each goes to the least loaded.
    let mut p = simple(&[1, 1, 1], "least_connections");
    for _ in 0..9 {
        let b = p.pick(0, b"/", 0).unwrap();
        p.connection_opened(b);
    }
    assert_eq!((p.active(0), p.active(1), p.active(2)), (3, 3, 3));
    p.connection_closed(1);
    p.connection_closed(1);
    assert_eq!(p.pick(0, b"/", 0), Some(1));
    // Weight 2 takes twice the connections.
    let mut p = simple(&[2, 1], "least_connections");
    for _ in 0..30 {
        let b = p.pick(0, b"/", 0).unwrap();
        p.connection_opened(b);
    }
    assert_eq!((p.active(0), p.active(1)), (20, 10));
    p.connection_closed(0);
    p.connection_closed(0);
    p.connection_closed(0);
    assert_eq!(p.pick(0, b"/", 0), Some(0));
    p.set_up(0, false);
    assert_eq!(p.pick(0, b"/", 0), Some(1));
}

#[test]
fn blocked_backends_are_skipped() {
    let (_, mut p) = pools_with(&[1, 1], &["a", "b"], "round_robin", json!({}), 1);
    p.set_blocked(0, true);
    assert_eq!(p.pick(0, b"/", 0), Some(1));
    assert_eq!(p.pick(0, b"/", 0), Some(1));
    p.set_blocked(1, true);
    assert_eq!(p.pick(0, b"/", 0), None, "every member blocked");
    assert!(p.is_usable(0) && !p.is_available(0));
    p.set_blocked(0, false);
    assert_eq!(p.pick(0, b"/", 0), Some(0));
    // Without a limit: never full.
    for _ in 0..1000 {
        p.connection_opened(0);
    }
    assert!(p.is_available(0));
    p.connection_closed(1); // closing more than opened saturates at 0
    assert_eq!(p.active(1), 0);
}

#[test]
fn lard_sticks_then_moves_by_thresholds() {
    let (_, mut p) = pools_with(
        &[1, 1, 1],
        &["a", "b", "c"],
        "lard",
        json!({ "lard": { "low": 2, "high": 4 } }),
        1,
    );
    // New URLs go to the least loaded; the same URL sticks.
    let first = p.pick(0, b"/doc1", 0).unwrap();
    p.connection_opened(first);
    for _ in 0..3 {
        let b = p.pick(0, b"/doc1", 0).unwrap();
        assert_eq!(b, first, "sticky below T_high");
        p.connection_opened(b);
    }
    assert_eq!(p.active(first), 4);
    // A new URL avoids the loaded backend.
    let other = p.pick(0, b"/doc2", 0).unwrap();
    assert_ne!(other, first);
    // load 4 = T_high: not above it, stays.
    assert_eq!(p.pick(0, b"/doc1", 0), Some(first));
    // load 5 > T_high and another backend is below T_low: moves to the least loaded.
    p.connection_opened(first);
    let moved = p.pick(0, b"/doc1", 0).unwrap();
    assert_ne!(moved, first);
    assert_eq!(p.active(moved), 0);
    let Sched::Lard(l) = &p.pools[0].sched else {
        unreachable!()
    };
    assert_eq!(
        l.assigned(b"/doc1"),
        Some(moved),
        "reassigned, not just redirected"
    );
    assert_eq!(
        p.pick(0, b"/doc1", 0),
        Some(moved),
        "and sticks to the new one"
    );
}

#[test]
fn lard_stays_when_no_backend_is_below_low_until_twice_high() {
    let (_, mut p) = pools_with(
        &[1, 1],
        &["a", "b"],
        "lard",
        json!({ "lard": { "low": 2, "high": 4 } }),
        1,
    );
    let a = p.pick(0, b"/x", 0).unwrap();
    let b = 1 - a;
    for _ in 0..5 {
        p.connection_opened(a);
    }
    for _ in 0..3 {
        p.connection_opened(b);
    }
    // load(a) = 5 > T_high but b = 3 is not below T_low: stays.
    assert_eq!(p.pick(0, b"/x", 0), Some(a));
    for _ in 0..3 {
        p.connection_opened(a);
    }
    // load(a) = 8 = 2 T_high: moves regardless.
    assert_eq!(p.pick(0, b"/x", 0), Some(b));
}

#[test]
fn lard_replaces_an_unavailable_backend_and_none_when_all_are() {
    let (_, mut p) = pools_with(&[1, 1], &["a", "b"], "lard", json!({}), 1);
    let a = p.pick(0, b"/y", 0).unwrap();
    p.set_up(a, false);
    let b = p.pick(0, b"/y", 0).unwrap();
    assert_ne!(a, b);
    p.set_up(a, true);
    assert_eq!(p.pick(0, b"/y", 0), Some(b), "sticks to the replacement");
    p.set_weight(0, 0);
    p.set_weight(1, 0);
    assert_eq!(p.pick(0, b"/y", 0), None);
    assert_eq!(p.pick(0, b"/new", 0), None);
}

#[test]
fn lard_partitions_documents_and_bounds_its_table() {
    let (_, mut p) = pools_with(&[1, 1, 1], &["a", "b", "c"], "lard", json!({}), 1);
    // With connections held open, distinct documents spread over the backends ...
    let mut first = Vec::new();
    for i in 0..30 {
        let b = p.pick(0, format!("/d{i}").as_bytes(), 0).unwrap();
        p.connection_opened(b);
        first.push(b);
    }
    assert_eq!((p.active(0), p.active(1), p.active(2)), (10, 10, 10));
    // ... and each keeps its backend.
    for (i, &b) in first.iter().enumerate() {
        assert_eq!(p.pick(0, format!("/d{i}").as_bytes(), 0), Some(b));
    }
    // The table keeps at most LARD_MAX_URLS documents, dropping the oldest first.
    for i in 0..LARD_MAX_URLS {
        p.pick(0, format!("/e{i}").as_bytes(), 0).unwrap();
    }
    let Sched::Lard(l) = &p.pools[0].sched else {
        unreachable!()
    };
    assert_eq!(l.server.len(), LARD_MAX_URLS);
    assert_eq!(l.order.len(), LARD_MAX_URLS);
    assert_eq!(l.assigned(b"/d0"), None, "oldest evicted");
    assert!(l
        .assigned(format!("/e{}", LARD_MAX_URLS - 1).as_bytes())
        .is_some());
}

#[test]
fn lard_thresholds_are_a_per_core_share() {
    let (_, p) = pools_with(&[1], &["a"], "lard", json!({}), 2);
    let Sched::Lard(l) = &p.pools[0].sched else {
        unreachable!()
    };
    assert_eq!(
        (l.low, l.high),
        (13, 33),
        "25/65 over two workers, rounded up"
    );
}

#[test]
fn weighted_random_follows_reported_capacity() {
    // rand at the midpoints of n equal slices of u64: the counts are exact shares.
    let n = 1000usize;
    let even = |i: usize| (((2 * i + 1) as u128 * (1u128 << 64)) / (2 * n) as u128) as u64;
    let mut p = simple(&[1, 1, 1], "weighted_random");
    assert_eq!(counts(&mut p, n, |_| vec![], even), [333, 334, 333]);
    // Paper 001 5.1: share proportional to the available capacity W_i = 1 - load.
    p.set_load(0, 0.5);
    p.set_load(1, 0.75);
    p.set_load(2, 0.75);
    assert_eq!(counts(&mut p, n, |_| vec![], even), [500, 250, 250]);
    // Weight scales it.
    p.set_weight(2, 2);
    assert_eq!(counts(&mut p, n, |_| vec![], even), [400, 200, 400]);
    // A full backend gets nothing; out-of-range loads are clamped; NaN is full.
    p.set_load(0, 1.5);
    p.set_load(1, f64::NAN);
    p.set_load(2, -3.0);
    assert_eq!(counts(&mut p, n, |_| vec![], even), [0, 0, n]);
    // All full: fall back to the weights.
    p.set_load(2, 1.0);
    assert_eq!(counts(&mut p, n, |_| vec![], even), [250, 250, 500]);
    // Down and drained backends are never chosen.
    p.set_up(2, false);
    p.set_weight(1, 0);
    assert_eq!(counts(&mut p, n, |_| vec![], even), [n, 0, 0]);
    p.set_up(0, false);
    assert_eq!(p.pick(0, b"", 12345), None);
    // The extremes of rand stay in range.
    let mut p = simple(&[1, 1], "weighted_random");
    assert_eq!(p.pick(0, b"", 0), Some(0));
    assert_eq!(p.pick(0, b"", u64::MAX), Some(1));
}

#[test]
fn pools_resolve_members_and_report_config() {
    let c = Config::from_json(EXAMPLE).unwrap();
    let p = Pools::new(&c).unwrap();
    assert_eq!(p.pool_count(), 3);
    assert_eq!(p.backend_count(), 3);
    assert_eq!(p.members(2), [0, 1, 2]);
    assert_eq!(p.members(1), [1]);
    assert_eq!(p.backend(1).name, "be2");
    assert_eq!(
        p.backend(1).address,
        "10.99.1.12".parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert_eq!(p.backend(1).port, 80);
}

#[test]
fn lard_spreads_new_documents_over_an_idle_pool() {
    let (_, mut p) = pools_with(&[1, 1, 1], &["a", "b", "c"], "lard", json!({}), 1);
    // Short connections (closed at once): ties, taken in turn.
    let firsts: Vec<_> = (0..6)
        .map(|i| p.pick(0, format!("/s{i}").as_bytes(), 0).unwrap())
        .collect();
    assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
    for (i, &b) in firsts.iter().enumerate() {
        assert_eq!(p.pick(0, format!("/s{i}").as_bytes(), 0), Some(b));
    }
}
