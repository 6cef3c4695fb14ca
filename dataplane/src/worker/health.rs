//! Active health checks, run by worker 0 from the dataplane itself: a TCP connect to
//! each backend every `health.interval_ms`. A SYN-ACK within `health.timeout_ms` is a
//! pass (answered with a RST at once, so the backend keeps no connection); a RST, no
//! answer, or an unknown MAC is a failure. `rise` passes in a row bring a backend up,
//! `fall` failures take it down. Connects that fail on any core (RST or no answer to the
//! switch's SYN for a real connection) count as failures too (passive checks). The
//! result goes to `Shared::health`, which every core applies to its schedulers at its
//! next sweep.
use std::sync::atomic::Ordering;

use rules::config::HealthConfig;
use tcpstate::conn::{Data, SegmentInfo, SegmentOut};
use tcpstate::flow::FlowKey;
use tcpstate::wire::{tcp_flags, SeqNumber};

use super::Worker;
use crate::runtime::{Admin, MAX_BACKENDS};
use crate::stats::Counter;

pub const HEALTH_UNKNOWN: u8 = 0;
pub const HEALTH_UP: u8 = 1;
pub const HEALTH_DOWN: u8 = 2;

#[derive(Debug, Clone, Copy, Default)]
struct Probe {
    /// The probe in flight: our tuple, ISN and when it was sent.
    in_flight: Option<(FlowKey, SeqNumber, u64)>,
    next_ms: u64,
    passes: u32,
    fails: u32,
}

pub struct HealthChecker {
    settings: HealthConfig,
    probes: Vec<Probe>,
    isn: u32,
}

impl HealthChecker {
    pub fn new(settings: HealthConfig) -> Self {
        Self {
            settings,
            probes: vec![Probe::default(); MAX_BACKENDS],
            isn: 0x5EED_0001,
        }
    }
}

impl Worker {
    /// Worker 0, every sweep: time out probes in flight and send the ones due.
    pub(super) fn health_tick(&mut self, now_ms: u64) {
        if self.index != 0 || !self.health.settings.enabled {
            return;
        }
        let rt = self.shared.runtime.load_full();
        let s = self.health.settings;
        for b in 0..rt.routes.len() {
            let passive = self.shared.passive_fails[b].swap(0, Ordering::Relaxed);
            if rt.removed[b] || rt.admin[b] == Admin::Maint {
                self.health.probes[b] = Probe::default();
                continue;
            }
            for _ in 0..passive.min(s.fall) {
                self.health_result(b, false, now_ms);
            }
            if let Some((key, _, sent)) = self.health.probes[b].in_flight {
                if now_ms.saturating_sub(sent) >= s.timeout_ms {
                    self.tcp_unbind_probe(&key);
                    self.health.probes[b].in_flight = None;
                    self.health_result(b, false, now_ms);
                }
                continue;
            }
            if now_ms < self.health.probes[b].next_ms {
                continue;
            }
            self.health.probes[b].next_ms = now_ms + s.interval_ms;
            let route = rt.routes[b];
            let Some(mac) = self.neigh[route.via_port].lookup(route.next_hop, now_ms) else {
                self.health_result(b, false, now_ms);
                continue;
            };
            let Some(port) = self.probe_port(route) else {
                continue;
            };
            let key = FlowKey {
                remote_ip: route.address,
                remote_port: route.port,
                local_ip: route.local_ip,
                local_port: port,
            };
            self.health.isn = self
                .health
                .isn
                .wrapping_mul(1_103_515_245)
                .wrapping_add(12345);
            let isn = SeqNumber(self.health.isn);
            self.health.probes[b].in_flight = Some((key, isn, now_ms));
            self.tcp_bind_probe(key, b);
            let syn = SegmentOut {
                seq: isn,
                ack: None,
                flags: tcp_flags::SYN,
                window: 1024,
                timestamps: None,
                syn_options: None,
                data: Data::None,
            };
            self.send_raw_segment(route.via_port, mac, key, &syn);
            self.stats().add(Counter::HealthProbesSent, 1);
        }
    }

    /// A segment on a probe's tuple (found in the TCP path before the flow table).
    pub(super) fn health_segment(
        &mut self,
        b: usize,
        key: FlowKey,
        seg: &SegmentInfo,
        now_ms: u64,
    ) {
        let Some((k, isn, _)) = self.health.probes[b].in_flight else {
            return;
        };
        if k != key {
            return;
        }
        let pass = seg.syn() && !seg.rst() && seg.ack == Some(isn + 1);
        let fail = seg.rst();
        if !pass && !fail {
            return;
        }
        self.health.probes[b].in_flight = None;
        self.tcp_unbind_probe(&key);
        if pass {
            // Close the half-open connection at once: the backend keeps nothing.
            let route = self.shared.runtime.load().routes[b];
            if let Some(mac) = self.neigh[route.via_port].lookup(route.next_hop, now_ms) {
                let rst = SegmentOut {
                    seq: isn + 1,
                    ack: None,
                    flags: tcp_flags::RST,
                    window: 0,
                    timestamps: None,
                    syn_options: None,
                    data: Data::None,
                };
                self.send_raw_segment(route.via_port, mac, key, &rst);
            }
        }
        self.health_result(b, pass, now_ms);
    }

    fn health_result(&mut self, b: usize, pass: bool, _now_ms: u64) {
        let s = self.health.settings;
        let p = &mut self.health.probes[b];
        if pass {
            p.passes += 1;
            p.fails = 0;
        } else {
            p.fails += 1;
            p.passes = 0;
        }
        let cell = &self.shared.health[b];
        let old = cell.load(Ordering::Relaxed);
        let new = if pass && (old == HEALTH_UNKNOWN || p.passes >= s.rise) {
            HEALTH_UP
        } else if !pass && (old != HEALTH_DOWN && p.fails >= s.fall) {
            HEALTH_DOWN
        } else {
            old
        };
        if new != old {
            cell.store(new, Ordering::Relaxed);
            self.stats().add(Counter::HealthChanges, 1);
            let name = self
                .shared
                .runtime
                .load()
                .config
                .backends
                .get(b)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            // Rare (a state change), so logging here does not cost the hot path.
            tracing::warn!(backend = %name, state = if new == HEALTH_UP { "up" } else { "down" }, "health changed");
        }
    }
}
