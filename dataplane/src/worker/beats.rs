//! Handoff agents' beats, on whichever core the NIC delivered them to: decoded
//! (`rules::beat`), matched to the backends at the datagram's source address, and stored
//! in `Shared::agents` for every core and the main thread. An agent fronts its whole
//! host, so a beat counts for every backend at that address (several ports of one host).
use std::net::Ipv4Addr;

use rules::beat::Beat;

use super::Worker;
use crate::agents::Change;
use crate::stats::{Counter, DropReason};

impl Worker {
    /// A beat's payload from `src` (a datagram to the agent port of one of our own
    /// addresses, checksum verified). Counted `agent_beats`, or dropped as
    /// `bad_agent_beat` (undecodable) or `agent_beat_unknown` (no backend there).
    pub(super) fn on_agent_beat(&mut self, src: Ipv4Addr, payload: &[u8]) {
        let beat = match Beat::decode(payload) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(worker = self.index, %src, %e, "bad agent beat");
                self.stats().drop(DropReason::BadAgentBeat, 1);
                return;
            }
        };
        let now_tsc = dpdk_env::rdtsc();
        let rt = self.shared.runtime.load();
        let mut known = false;
        for (b, route) in rt.routes.iter().enumerate() {
            if route.address != src || rt.removed[b] {
                continue;
            }
            known = true;
            if let Some(change) = self.shared.agents.record(b, &beat, now_tsc) {
                // Rare (an agent coming, going or coming back): worth a line.
                let backend = &rt.config.backends[b].name;
                let agent = beat.name.unwrap_or("-");
                match change {
                    Change::Arrived => {
                        tracing::info!(%backend, %agent, %src, kind = beat.kind.name(), capacity = beat.capacity, "handoff agent alive")
                    }
                    Change::Left => tracing::info!(%backend, %agent, %src, "handoff agent left"),
                }
            }
        }
        if known {
            self.stats().add(Counter::AgentBeats, 1);
        } else {
            tracing::debug!(worker = self.index, %src, "agent beat from no backend's address");
            self.stats().drop(DropReason::AgentBeatUnknown, 1);
        }
    }
}
