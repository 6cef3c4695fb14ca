//! Pre-allocation at SYN time (paper 002, its figures 3 and 4), `vips[].preallocate`: when
//! the switch answers a client's SYN on a handoff VIP, it guesses the backend and has
//! that backend's agent replay the handshake into its kernel at once, so that when the
//! request comes a right guess finds the kernel connection ready (no replay on the
//! request's path) and a wrong one is cancelled with a RST.
//!
//! The switch answers SYNs with cookies and keeps no state for them, so the guess must
//! be found again when the request is routed: it is a pure function of the client's
//! address and port and of the default pool's members that can take a connection (up,
//! below their limit, agent alive) — the pick of [`guess`](Worker::prealloc_guess). If the
//! members changed in between, the guessed agent's prepared flow is never used and its
//! agent resets it after `PREPARED_MS` (`tcpstate::handoff::agent`).
//!
//! A prepare is the handoff option (the client's SYN options, the cookie's ISN as the
//! segment's ack, the SYN-ACK's TSval) on a bare ACK at the client's ISN + 1. Since a SYN
//! costs the attacker nothing and a prepared kernel connection costs the backend a socket,
//! each core prepares at most [`PREALLOC_PER_S`] a second (`prealloc_limited` beyond).
use tcpstate::flow::{ConnId, FlowKey};
use tcpstate::handoff::option::{options_with_handoff, HandoffRecord};
use tcpstate::syncookie::SynOptions;
use tcpstate::wire::{tcp_flags, SeqNumber};

use super::super::Worker;
use super::handoff::{AgentPath, AgentSegment};
use super::Rx;
use crate::stats::Counter;

/// Prepares per second a core sends at most.
pub(super) const PREALLOC_PER_S: u32 = 1000;

/// A core's prepare budget: [`PREALLOC_PER_S`] tokens, refilled each second.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PreallocBudget {
    second: u64,
    spent: u32,
}

impl PreallocBudget {
    fn take(&mut self, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        if second != self.second {
            self.second = second;
            self.spent = 0;
        }
        if self.spent >= PREALLOC_PER_S {
            return false;
        }
        self.spent += 1;
        true
    }
}

impl Worker {
    /// Whether the VIP at `vip` pre-allocates (`vips[].preallocate`).
    fn preallocates(&self, vip: std::net::Ipv4Addr) -> bool {
        self.tcp.rt.config.preallocates(vip)
    }

    /// The backend guessed for the client tuple `key`: one of the default pool's members
    /// that can take a connection now, picked by a hash of the client's address and port.
    pub(super) fn prealloc_guess(&self, key: &FlowKey) -> Option<usize> {
        if !self.preallocates(key.local_ip) {
            return None;
        }
        let pool = self.tcp.rt.router.default_pool();
        let now_tsc = dpdk_env::rdtsc();
        let agents = &self.shared.agents;
        let ok =
            |b: usize| self.tcp.pools.is_usable(b) && !self.at_limit(b) && agents.alive(b, now_tsc);
        let members = self.tcp.pools.members(pool);
        let n = members.iter().filter(|&&b| ok(b)).count();
        if n == 0 {
            return None;
        }
        let mut h = (u64::from(u32::from(key.remote_ip)) << 16) | u64::from(key.remote_port);
        let k = (super::splitmix(&mut h) % n as u64) as usize;
        members.iter().copied().filter(|&b| ok(b)).nth(k)
    }

    /// The SYN of `rx` was answered with `cookie_isn` (and `tsval` in its timestamps)
    /// and `ours` agreed: prepare the guessed backend's agent, if the VIP pre-allocates.
    pub(super) fn preallocate(
        &mut self,
        rx: &Rx,
        cookie_isn: SeqNumber,
        tsval: Option<u32>,
        ours: &SynOptions,
        now_ms: u64,
    ) {
        let key = rx.key();
        if !self.preallocates(key.local_ip) {
            return;
        }
        // The budget first: under a SYN flood a spent budget costs one comparison per
        // SYN, not a walk over the pool's members.
        if !self.tcp.prealloc_budget.take(now_ms) {
            self.stats().add(Counter::PreallocLimited, 1);
            return;
        }
        let Some(b) = self.prealloc_guess(&key) else {
            return;
        };
        let route = self.tcp.rt.routes[b];
        let Some(mac) = self.route_mac(&route, now_ms) else {
            return;
        };
        let seg = rx.seg;
        let client_ws = seg.window_scale.filter(|_| ours.window_scale.is_some());
        let record = HandoffRecord {
            client_isn: seg.seq,
            mss: seg.mss.unwrap_or(536),
            client_ws,
            switch_ws: ours.window_scale.unwrap_or(0),
            sack_permitted: ours.sack_permitted,
            timestamps: ours.timestamps,
            switch_tsval: tsval.unwrap_or(0),
            backend_id: b as u16,
        };
        let ts = match (seg.timestamps, tsval) {
            (Some((theirs, _)), Some(t)) => Some((theirs, t)),
            _ => None,
        };
        let mut options = [0u8; 40];
        let opt_len = options_with_handoff(ts, &record, &mut options);
        let prepare = AgentSegment {
            seq: seg.seq + 1,
            ack: cookie_isn + 1,
            flags: tcp_flags::ACK,
            // The SYN's window is unscaled; the kernel learns the real one from the head.
            window: seg.window >> client_ws.unwrap_or(0),
            options: &options[..opt_len],
            head: 0..0,
        };
        let path = AgentPath {
            port: route.via_port,
            mac,
            tunnel: self.tunnel_of(Some(b)),
        };
        if let Some(m) = self.agent_frame(key, path, &prepare, &[]) {
            self.stats().add(Counter::PreallocPrepared, 1);
            self.stage(path.port, m);
        }
    }

    /// `id`'s first request was routed to backend `chosen`: a guess at SYN time that was
    /// another backend is cancelled with a RST at the client's ISN + 1 (the prepared
    /// kernel connection's next expected byte), sent to the guessed agent.
    pub(super) fn prealloc_settle(&mut self, id: ConnId, chosen: usize, now_ms: u64) {
        let Some(conn) = self.tcp.flows.get(id) else {
            return;
        };
        let key = conn.client;
        let client_isn = conn.client_isn();
        let Some(guess) = self.prealloc_guess(&key) else {
            return;
        };
        if guess == chosen {
            self.stats().add(Counter::PreallocHits, 1);
            return;
        }
        let route = self.tcp.rt.routes[guess];
        let Some(mac) = self.route_mac(&route, now_ms) else {
            return;
        };
        let cancel = AgentSegment {
            seq: client_isn + 1,
            ack: SeqNumber(0),
            flags: tcp_flags::RST,
            window: 0,
            options: &[],
            head: 0..0,
        };
        let path = AgentPath {
            port: route.via_port,
            mac,
            tunnel: self.tunnel_of(Some(guess)),
        };
        if let Some(m) = self.agent_frame(key, path, &cancel, &[]) {
            self.stats().add(Counter::PreallocCancelled, 1);
            self.stage(path.port, m);
        }
    }
}
