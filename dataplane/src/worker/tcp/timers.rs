//! The sweep: every loop iteration serves the pool queues; every `SWEEP_MS` it also picks
//! up runtime and health changes, answers the management thread, runs health probes and
//! warm pools, rotates the cookie secrets, publishes the per-state gauges, and fires the
//! connection timers that are due (connect, head, idle, retransmission, linger), as well
//! as connects that waited for a backend's MAC.
use tcpstate::conn::{Emit, Outputs, State};

use super::super::Worker;
use super::splitmix;
use crate::stats::Counter;

/// Timer sweep period.
const SWEEP_MS: u64 = 10;

impl Worker {
    /// Runs due connection timers; called every loop iteration, acts every `SWEEP_MS`.
    pub(in crate::worker) fn tcp_timers(&mut self, now_ms: u64) {
        self.serve_queues(now_ms);
        if now_ms < self.tcp.next_sweep_ms {
            return;
        }
        self.tcp.next_sweep_ms = now_ms + SWEEP_MS;
        self.adopt_runtime();
        self.sync_backend_state();
        self.serve_ctl(now_ms);
        self.health_tick(now_ms);
        self.warm_tick(now_ms);
        let mut fresh = [0u8; 16];
        fresh[..8].copy_from_slice(&splitmix(&mut self.tcp.rng).to_le_bytes());
        fresh[8..].copy_from_slice(&splitmix(&mut self.tcp.rng).to_le_bytes());
        self.tcp.cookies.maybe_rotate(now_ms, fresh);
        let mut ids = std::mem::take(&mut self.tcp.scratch_ids);
        self.tcp.flows.live_ids(&mut ids);
        let mut by_state = [0u64; State::ALL.len()];
        for &id in &ids {
            if let Some(c) = self.tcp.flows.get(id) {
                by_state[State::ALL.iter().position(|s| *s == c.state).unwrap_or(0)] += 1;
            }
        }
        let gauges = [
            Counter::ConnsReadingHead,
            Counter::ConnsQueued,
            Counter::ConnsConnecting,
            Counter::ConnsSpliced,
            Counter::ConnsResponding,
            Counter::ConnsClosedLinger,
        ];
        for (g, n) in gauges.iter().zip(by_state) {
            self.stats().set(*g, n);
        }
        self.stats().set(Counter::FlowsLive, self.tcp.live() as u64);
        for &id in &ids {
            // Waiting for a backend's MAC (the first connect after start, or after the
            // entry expired): go as soon as it is known, not at the connect timeout.
            let waiting_arp = self.tcp.flows.get(id).and_then(|c| {
                let t = c.backend?;
                (c.state == State::Connecting && t.key.local_port == 0).then_some(t.id)
            });
            if let Some(b) = waiting_arp {
                let route = self.tcp.rt.routes.get(b).copied();
                if route
                    .is_some_and(|r| self.neigh[r.via_port].lookup(r.next_hop, now_ms).is_some())
                {
                    if let Some(c) = self.tcp.flows.get_mut(id) {
                        c.backend = None;
                    }
                    self.connect_backend(id, None, now_ms);
                    continue;
                }
            }
            let due = self
                .tcp
                .flows
                .get(id)
                .is_some_and(|c| now_ms >= c.deadline_ms());
            if !due {
                continue;
            }
            let mut out = Outputs::default();
            let verdict = match self.tcp.flows.get_mut(id) {
                Some(c) => c.on_timer(now_ms, &mut out),
                None => continue,
            };
            for e in out.iter() {
                match e {
                    Emit::ToClient(s) => self.send_to_client(id, &s, now_ms),
                    Emit::ToBackend(s) => self.send_to_backend(id, &s),
                    Emit::Forward => {}
                }
            }
            self.apply_verdict(id, verdict, now_ms);
        }
        self.tcp.scratch_ids = ids;
    }
}
