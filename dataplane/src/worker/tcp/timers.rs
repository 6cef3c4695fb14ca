//! Timers and the sweep. Every loop iteration serves the pool queues and fires the
//! connection timers that are due (connect, head, idle, retransmission, linger: read from
//! the wheel once a millisecond, at most `TIMERS_PER_ITERATION` fired per iteration);
//! every `SWEEP_MS` the sweep also picks up runtime and health changes, answers the
//! management thread, runs health probes and warm pools, rotates the cookie secrets,
//! publishes the per-state gauges, and starts connects that waited for a backend's MAC.
//! None of it walks the flow table: the timers come from a wheel, the gauges from counts
//! kept as states change, and the connects from the list of those waiting
//! (`tcpstate::conn_table`), so an iteration costs what is due, not what is open.
use std::sync::Arc;
use tcpstate::conn::{Emit, Outputs, State};

use super::super::Worker;
use super::splitmix;
use crate::stats::Counter;

/// Timer sweep period.
const SWEEP_MS: u64 = 10;

/// Connection timers fired per loop iteration at most. The wheel is read once a
/// millisecond; what it hands out is fired over as many iterations as it takes, so that
/// the connections of a busy millisecond (at 100,000 new connections a second, a hundred
/// lingering ones end each millisecond) never hold the packets of a whole burst back.
/// Firing them all at once every `SWEEP_MS` stalled the loop: at 120,000 connections/s
/// the harness saw time to first byte p99 at 2.9 ms (docs/benchmarks.md, "Ratios in one
/// harness run").
const TIMERS_PER_ITERATION: usize = 16;

impl Worker {
    /// Every loop iteration: serves the pool queues, fires due connection timers (a
    /// bounded number), and every `SWEEP_MS` runs the sweep. Returns whether timers are
    /// still waiting to be fired (then the loop must not sleep).
    #[inline]
    pub(in crate::worker) fn tcp_timers(&mut self, now_ms: u64) -> bool {
        self.serve_queues(now_ms);
        let pending = self.fire_due_timers(now_ms);
        if now_ms >= self.tcp.next_sweep_ms {
            self.tcp.next_sweep_ms = now_ms + SWEEP_MS;
            self.sweep(now_ms);
        }
        pending
    }

    /// Everything but the connection timers, every `SWEEP_MS`. Never inlined, as
    /// `fire_timer`: the callgrind recipes collect both by name (bench/scripts/lib.sh),
    /// and not the rest of the loop's empty iterations.
    #[inline(never)]
    fn sweep(&mut self, now_ms: u64) {
        self.adopt_runtime();
        self.sync_backend_state();
        self.serve_ctl(now_ms);
        self.health_tick(now_ms);
        self.warm_tick(now_ms);
        self.handoff_moves_tick(now_ms);
        self.handoff_agents_tick(now_ms);
        self.purge_held_for_ack();
        self.cluster_beats(now_ms, false);
        self.sync_joined();
        let steer = self
            .shared
            .cluster
            .as_ref()
            .map(|c| Arc::clone(&c.adopted_steer));
        let expired = self.tcp.standby.expire(now_ms, |r| {
            // Not adopted (an adoption takes the record out first): its steering goes.
            if let Some(t) = &steer {
                t.remove(super::sync::steer_key(&r.backend));
            }
        });
        if expired > 0 {
            self.stats()
                .add(Counter::ClusterStandbyExpired, expired as u64);
        }
        let mut fresh = [0u8; 16];
        fresh[..8].copy_from_slice(&splitmix(&mut self.tcp.rng).to_le_bytes());
        fresh[8..].copy_from_slice(&splitmix(&mut self.tcp.rng).to_le_bytes());
        self.tcp.cookies.maybe_rotate(now_ms, fresh);
        // Timers, counts and the MAC list catch up with the connections changed since.
        self.tcp.flows.sync();
        let gauges = [
            (Counter::ConnsReadingHead, State::ReadingHead),
            (Counter::ConnsQueued, State::Queued),
            (Counter::ConnsConnecting, State::Connecting),
            (Counter::ConnsSpliced, State::Spliced),
            (Counter::ConnsResponding, State::Responding),
            (Counter::ConnsHandedOff, State::HandedOff),
            (Counter::ConnsClosedLinger, State::Closed),
        ];
        for (g, state) in gauges {
            self.stats().set(g, self.tcp.flows.count(state));
        }
        self.stats().set(Counter::FlowsLive, self.tcp.live() as u64);
        let (tables, heads) = self.tcp.memory_bytes();
        self.stats().set(Counter::MemoryTablesBytes, tables as u64);
        self.stats()
            .set(Counter::MemoryHeadBuffersBytes, heads as u64);
        let mut ids = std::mem::take(&mut self.tcp.scratch_ids);
        // Waiting for a backend's MAC (the first connect after start, or after the
        // entry expired): go as soon as it is known, not at the connect timeout.
        self.tcp.flows.waiting_for_mac(&mut ids);
        for &id in &ids {
            let Some(b) = self.tcp.flows.get(id).and_then(|c| c.backend).map(|t| t.id) else {
                continue;
            };
            let route = self.tcp.rt.routes.get(b).copied();
            if route.is_some_and(|r| self.route_mac(&r, now_ms).is_some()) {
                if let Some(c) = self.tcp.flows.get_mut(id) {
                    c.backend = None;
                }
                self.connect_backend(id, None, now_ms);
            }
        }
        ids.clear();
        self.tcp.scratch_ids = ids;
    }

    /// Fires up to `TIMERS_PER_ITERATION` of the connection timers that are due, taking
    /// them from the wheel once a millisecond when none wait. Returns whether some still
    /// wait.
    fn fire_due_timers(&mut self, now_ms: u64) -> bool {
        if self.tcp.due_next == self.tcp.due.len() {
            if now_ms == self.tcp.due_read_ms {
                return false;
            }
            self.tcp.due_read_ms = now_ms;
            let mut due = std::mem::take(&mut self.tcp.due);
            due.clear();
            self.tcp.flows.expire(now_ms, &mut due);
            self.tcp.due = due;
            self.tcp.due_next = 0;
        }
        let end = self
            .tcp
            .due
            .len()
            .min(self.tcp.due_next + TIMERS_PER_ITERATION);
        for i in self.tcp.due_next..end {
            let id = self.tcp.due[i];
            self.fire_timer(id, now_ms);
        }
        self.tcp.due_next = end;
        end < self.tcp.due.len()
    }

    /// Runs connection `id`'s timer if it is still due.
    #[inline(never)]
    fn fire_timer(&mut self, id: tcpstate::flow::ConnId, now_ms: u64) {
        // Handed out by the wheel, but it may have been removed or rescheduled since (by
        // another's timer, or by its own segments while it waited its turn here).
        let due = self
            .tcp
            .flows
            .get(id)
            .is_some_and(|c| now_ms >= c.deadline_ms());
        if !due {
            return;
        }
        let mut out = Outputs::default();
        let verdict = match self.tcp.flows.get_mut(id) {
            Some(c) => {
                let handed_off = c.state == State::HandedOff;
                let v = c.on_timer(now_ms, &mut out);
                if handed_off && c.state == State::Closed {
                    // The agent never answered the client: given up, RST sent.
                    self.shared.stats[self.index].add(Counter::HandoffFailures, 1);
                }
                v
            }
            None => return,
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
}
