//! The warm pools: per backend, on each worker core, established backend connections
//! kept ready (a pool's `warm.min_idle`, replenished every sweep while the backend is
//! usable), taken by `connect_backend` instead of a SYN when one fits the client, and
//! given back by presplice rounds whose exchange ended cleanly (up to `warm.max_idle`).
//! A warm connection the backend closes or resets is let go and replaced.
use tcpstate::conn::{BackendSide, BackendTarget, SegmentInfo};
use tcpstate::flow::{ConnId, FlowKey};
use tcpstate::warm::{WarmConn, WarmEvent};
use tcpstate::wire::SeqNumber;

use super::super::Worker;
use super::splitmix;
use crate::stats::Counter;

/// Most warm connections opened per backend in one sweep (10 ms), so a large
/// `min_idle` ramps up instead of bursting.
const OPEN_PER_SWEEP: u32 = 8;
/// After a refused or unanswered open, no new warm connection to that backend for this
/// long.
const WARM_BACKOFF_MS: u64 = 1000;

impl Worker {
    /// The switch's clock for TSvals toward backends (see `ConnParams::backend_ts_base`).
    fn backend_clock(&self, now_ms: u64) -> u32 {
        self.tcp.params.backend_ts_base.wrapping_add(now_ms as u32)
    }

    /// Sends `seg` on warm connection `key` (to backend `b`).
    fn warm_send(&mut self, b: usize, key: FlowKey, seg: &tcpstate::conn::SegmentOut, now_ms: u64) {
        let Some(route) = self.tcp.rt.routes.get(b).copied() else {
            return;
        };
        if let Some(mac) = self.route_mac(&route, now_ms) {
            self.send_raw_segment(route.via_port, mac, key, seg);
        }
    }

    fn warm_forget(&mut self, key: &FlowKey) {
        if let Some(w) = self.tcp.warm.remove(key) {
            let n = &mut self.tcp.warm_count[w.target.id];
            *n = n.saturating_sub(1);
            self.stats().add(Counter::WarmClosed, 1);
        }
    }

    /// A segment from the backend on a warm connection in the pool.
    pub(super) fn warm_segment(&mut self, key: FlowKey, seg: &SegmentInfo, now_ms: u64) {
        let clock = self.backend_clock(now_ms);
        let Some(w) = self.tcp.warm.get_mut(&key) else {
            return;
        };
        let b = w.target.id;
        let connecting = w.side().is_none();
        match w.on_segment(seg, clock, now_ms) {
            WarmEvent::Nothing => {}
            WarmEvent::Send(s) => self.warm_send(b, key, &s, now_ms),
            WarmEvent::Closed(rst) => {
                if let Some(s) = rst {
                    self.warm_send(b, key, &s, now_ms);
                }
                if connecting {
                    // Refused: back off, or the sweep would hammer it with SYNs until
                    // health checks notice; and count it against the backend.
                    self.warm_refused(b, now_ms);
                }
                self.warm_forget(&key);
            }
        }
    }

    /// An attempt to open a warm connection to `b` failed.
    fn warm_refused(&mut self, b: usize, now_ms: u64) {
        if let Some(t) = self.tcp.warm_backoff_until.get_mut(b) {
            *t = now_ms + WARM_BACKOFF_MS;
        }
        if let Some(cell) = self.shared.passive_fails.get(b) {
            cell.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// An idle warm connection to `b` that can carry `id`'s client, taken out of the pool.
    pub(super) fn take_warm(&mut self, b: usize, id: ConnId) -> Option<(FlowKey, BackendSide)> {
        if self.tcp.warm_count.get(b).copied().unwrap_or(0) == 0 {
            return None;
        }
        let conn = self.tcp.flows.get(id)?;
        let key = self.tcp.warm.iter().find_map(|(k, w)| {
            let side = w.side()?;
            (w.target.id == b && conn.fits(side.ts_recent.is_some(), w.mss)).then_some(*k)
        })?;
        let w = self.tcp.warm.remove(&key)?;
        self.tcp.warm_count[b] -= 1;
        w.side().map(|side| (key, side))
    }

    /// Gives `id`'s backend connection back to its warm pool, if its exchange ended
    /// cleanly and the pool wants it (`keep`: whether it wants it or not, for the
    /// connection's own next request in splice mode, taken back at once); `false`: the
    /// caller must let it go.
    pub(super) fn return_warm(
        &mut self,
        id: ConnId,
        our_next: SeqNumber,
        now_ms: u64,
        keep: bool,
    ) -> bool {
        let Some(b) = self.tcp.flows.get(id).and_then(|c| c.backend).map(|t| t.id) else {
            return false;
        };
        let (_, max_idle) = self.tcp.rt.warm.get(b).copied().unwrap_or((0, 0));
        if (!keep && self.tcp.warm_count[b] >= max_idle) || !self.tcp.pools.is_usable(b) {
            return false;
        }
        let Some((target, side)) = self.tcp.flows.get_mut(id).and_then(|c| c.detach(our_next))
        else {
            return false;
        };
        self.tcp.flows.unbind(&target.key);
        self.release_held(id, b);
        let mut w = WarmConn::from_detached(target, side, self.tcp.params.mss, now_ms);
        // Ack the exchange's last bytes now: the client's ack of them may have come on
        // its next request, which went elsewhere; unacked, the backend would resend them.
        let ack = w.ack(self.backend_clock(now_ms));
        self.tcp.warm.insert(target.key, w);
        self.tcp.warm_count[b] += 1;
        self.warm_send(b, target.key, &ack, now_ms);
        self.stats().add(Counter::WarmReturned, 1);
        true
    }

    /// Right after a warm connection of `b` was taken: open its replacement now, not at
    /// the next sweep (up to 10 ms later), so a pool of `min_idle` keeps up with new
    /// connections arriving faster than `OPEN_PER_SWEEP` per sweep (the sweep alone
    /// capped warm use at 800 new connections/s per backend and core; above that,
    /// requests found the pool empty and paid a backend handshake).
    pub(super) fn warm_refill(&mut self, b: usize, now_ms: u64) {
        let rt = std::sync::Arc::clone(&self.tcp.rt);
        let clock = self.backend_clock(now_ms);
        self.warm_fill(&rt, b, now_ms, clock, 1);
    }

    /// Opens up to `max` warm connections to `b`, while it has fewer than `min_idle`
    /// (opening or idle) and is usable.
    fn warm_fill(
        &mut self,
        rt: &crate::runtime::Runtime,
        b: usize,
        now_ms: u64,
        clock: u32,
        max: u32,
    ) {
        let Some(&(min_idle, _)) = rt.warm.get(b) else {
            return;
        };
        if min_idle == 0
            || !self.tcp.pools.is_usable(b)
            || rt.removed[b]
            || self.tcp.warm_backoff_until[b] > now_ms
            || self.tcp.warm_count[b] >= min_idle
        {
            return;
        }
        let route = rt.routes[b];
        let Some(mac) = self.route_mac(&route, now_ms) else {
            return; // worker 0 keeps asking for backends' next hops
        };
        let mut opened = 0;
        while self.tcp.warm_count[b] < min_idle && opened < max {
            let Some(local_port) = self.pick_local_port(route) else {
                break;
            };
            let key = FlowKey {
                remote_ip: route.address,
                remote_port: route.port,
                local_ip: route.local_ip,
                local_port,
            };
            let isn = SeqNumber(splitmix(&mut self.tcp.rng) as u32);
            let (w, syn) = WarmConn::open(
                BackendTarget { id: b, key },
                isn,
                self.tcp.params.mss,
                self.tcp.params.window_scale,
                clock,
                now_ms,
            );
            self.tcp.warm.insert(key, w);
            self.tcp.warm_count[b] += 1;
            self.send_raw_segment(route.via_port, mac, key, &syn);
            self.stats().add(Counter::WarmOpened, 1);
            opened += 1;
        }
    }

    /// At stop: reset every warm connection in the pool, so backends do not keep them.
    pub(in crate::worker) fn close_warm(&mut self, now_ms: u64) {
        let all: Vec<(FlowKey, usize, tcpstate::conn::SegmentOut)> = self
            .tcp
            .warm
            .iter()
            .map(|(k, w)| (*k, w.target.id, w.close()))
            .collect();
        for (k, b, rst) in all {
            self.warm_send(b, k, &rst, now_ms);
            self.warm_forget(&k);
        }
    }

    /// Every sweep: SYN retransmissions, pools kept at `min_idle` for usable backends,
    /// and let go for backends that are not.
    pub(super) fn warm_tick(&mut self, now_ms: u64) {
        let clock = self.backend_clock(now_ms);
        if !self.tcp.warm.is_empty() {
            let mut events: Vec<(FlowKey, usize, WarmEvent)> = Vec::new();
            let mut refused: Vec<usize> = Vec::new();
            for (k, w) in self.tcp.warm.iter_mut() {
                let usable = self.tcp.pools.backend_count() > w.target.id
                    && self.tcp.pools.is_usable(w.target.id)
                    && self.tcp.rt.warm.get(w.target.id).is_some_and(|x| x.1 > 0);
                if !usable {
                    events.push((*k, w.target.id, WarmEvent::Closed(Some(w.close()))));
                    continue;
                }
                if now_ms >= w.deadline_ms() {
                    let connecting = w.side().is_none();
                    let e = w.on_timer(now_ms, clock);
                    if connecting && matches!(e, WarmEvent::Closed(_)) {
                        refused.push(w.target.id);
                    }
                    events.push((*k, w.target.id, e));
                }
            }
            for b in refused {
                self.warm_refused(b, now_ms);
            }
            for (k, b, e) in events {
                match e {
                    WarmEvent::Nothing => {}
                    WarmEvent::Send(s) => self.warm_send(b, k, &s, now_ms),
                    WarmEvent::Closed(rst) => {
                        if let Some(s) = rst {
                            self.warm_send(b, k, &s, now_ms);
                        }
                        self.warm_forget(&k);
                    }
                }
            }
        }
        let rt = std::sync::Arc::clone(&self.tcp.rt);
        let mut idle = 0u64;
        for b in 0..rt.warm.len() {
            self.warm_fill(&rt, b, now_ms, clock, OPEN_PER_SWEEP);
        }
        for w in self.tcp.warm.values() {
            idle += u64::from(w.side().is_some());
        }
        self.stats().set(Counter::WarmIdle, idle);
    }
}
