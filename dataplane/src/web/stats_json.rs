//! `/stats.json`: what the stats page shows. Rates come from a sampler thread that
//! reads the per-core counters once a second.
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::State;
use crate::hist::{self, BUCKETS};
use crate::stats::Counter;

const RATE_KEYS: [Counter; 8] = [
    Counter::RxPackets,
    Counter::TxPackets,
    Counter::RxBytes,
    Counter::TxBytes,
    Counter::ConnsAccepted,
    Counter::RequestsRouted,
    Counter::BusyCycles,
    Counter::IdleCycles,
];

fn read(state: &State) -> Vec<[u64; 8]> {
    state
        .shared
        .stats
        .iter()
        .map(|w| RATE_KEYS.map(|k| w.get(k)))
        .collect()
}

/// Every second: per-core and total rates over the last second into `state.rates`.
pub(super) fn sampler(state: &State, stop: &AtomicBool) {
    let mut last = read(state);
    let mut at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if at.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let now = read(state);
        let secs = at.elapsed().as_secs_f64();
        at = Instant::now();
        let mut cores = Vec::new();
        let mut tot = [0f64; 6];
        for (i, (n, l)) in now.iter().zip(&last).enumerate() {
            let d: Vec<u64> = n.iter().zip(l).map(|(a, b)| a.saturating_sub(*b)).collect();
            let per = |k: usize| d[k] as f64 / secs;
            for (k, t) in tot.iter_mut().enumerate() {
                *t += per(k);
            }
            let cyc = d[6] + d[7];
            let busy = if cyc == 0 {
                0.0
            } else {
                100.0 * d[6] as f64 / cyc as f64
            };
            cores.push(json!({
                "core": i, "rx_pps": per(0).round(), "tx_pps": per(1).round(),
                "rx_bps": (per(2) * 8.0).round(), "tx_bps": (per(3) * 8.0).round(),
                "conns_per_s": per(4).round(), "requests_per_s": per(5).round(),
                "busy_pct": (busy * 10.0).round() / 10.0,
            }));
        }
        last = now;
        let v = json!({
            "interval_ms": (secs * 1000.0).round(),
            "rx_pps": tot[0].round(), "tx_pps": tot[1].round(),
            "rx_bps": (tot[2] * 8.0).round(), "tx_bps": (tot[3] * 8.0).round(),
            "conns_per_s": tot[4].round(), "requests_per_s": tot[5].round(),
            "cores": cores,
        });
        *state.rates.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }
}

/// The page's JSON.
pub(super) fn render(state: &State) -> Value {
    let s = &state.shared;
    let rt = s.runtime.load_full();
    let total = |c: Counter| -> u64 { s.stats.iter().map(|w| w.get(c)).sum() };
    let (mut setup, mut ttfb) = ([0u64; BUCKETS], [0u64; BUCKETS]);
    for w in &s.stats {
        w.setup_us.add_into(&mut setup);
        w.ttfb_us.add_into(&mut ttfb);
    }
    let cores: Vec<Value> = s
        .stats
        .iter()
        .enumerate()
        .map(|(i, w)| {
            json!({ "core": i, "rx_packets": w.get(Counter::RxPackets), "tx_packets": w.get(Counter::TxPackets),
                    "requests_routed": w.get(Counter::RequestsRouted), "conns_accepted": w.get(Counter::ConnsAccepted),
                    "flows_live": w.get(Counter::FlowsLive), "drops_total": w.total_drops() })
        })
        .collect();
    let (rule_counts, pool_counts) = crate::stats::routing_json(&s.stats, &s.queue_len, &rt);
    let pools: Vec<Value> = rt
        .config
        .pools
        .iter()
        .zip(pool_counts.as_array().cloned().unwrap_or_default())
        .map(|(p, c)| {
            json!({ "name": p.name, "scheduler": p.scheduler, "backends": p.backends,
                    "requests": c["requests"], "queued": c["queued"], "queue_timeouts": c["queue_timeouts"] })
        })
        .collect();
    let rules: Vec<Value> = rt
        .config
        .rules
        .iter()
        .enumerate()
        .zip(rule_counts.as_array().cloned().unwrap_or_default())
        .map(|((i, r), c)| {
            json!({ "index": i, "name": c["name"], "match": r.matches,
                    "pool": r.pool, "action": c["action"], "hits": c["hits"] })
        })
        .collect();
    json!({
        "uptime_ms": state.started.elapsed().as_millis() as u64,
        "config_version": rt.version,
        "totals": {
            "rx_packets": total(Counter::RxPackets), "tx_packets": total(Counter::TxPackets),
            "rx_bytes": total(Counter::RxBytes), "tx_bytes": total(Counter::TxBytes),
            "conns_accepted": total(Counter::ConnsAccepted), "conns_closed": total(Counter::ConnsClosed),
            "requests_routed": total(Counter::RequestsRouted), "flows_live": total(Counter::FlowsLive),
            "drops_total": s.stats.iter().map(|w| w.total_drops()).sum::<u64>(),
        },
        "rates": state.rates.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        "cores": cores,
        "backends": super::backend_rows(s),
        "pools": pools,
        "default_pool": rt.config.default_pool,
        "rules": rules,
        "latency_us": { "setup": hist::summary(&setup), "ttfb": hist::summary(&ttfb) },
        "mbufs_in_use": s.pool.in_use().saturating_sub(s.held_by_taps),
    })
}
