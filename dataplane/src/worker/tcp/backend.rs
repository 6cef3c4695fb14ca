//! The backend side of a connection: picking a backend of the request's pool (not at its
//! `max_connections`, not one this request already failed on), taking its connection slot
//! (shared by all cores), the SYN or a warm connection, a local port of this core's share,
//! retries and passive health; and the pool queues, served oldest first over all cores
//! when a slot frees.
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tcpstate::conn::{BackendTarget, Emit, Outputs, State};
use tcpstate::flow::{ConnId, FlowKey, Side};
use tcpstate::steer;

use super::super::Worker;
use super::{splitmix, TcpCore};
use crate::runtime::BackendRoute;
use crate::stats::{Counter, DropReason};

/// Ephemeral ports the switch uses toward backends.
pub(super) const LOCAL_PORTS: std::ops::RangeInclusive<u16> = 10000..=65535;

impl Worker {
    /// Picks a backend (again) and sends the SYN; 503 when none can be reached.
    pub(super) fn connect_backend(&mut self, id: ConnId, pool: Option<usize>, now_ms: u64) {
        let waiting = self.tcp.flows.get(id).is_some_and(|c| {
            matches!(
                c.state,
                State::ReadingHead | State::Queued | State::Connecting
            )
        });
        if !waiting {
            return; // closed, answered or spliced meanwhile
        }
        let pool = match pool {
            Some(p) => {
                self.tcp.pool_of[id as usize] = p;
                p
            }
            None => self.tcp.pool_of[id as usize],
        };
        if self.on_handoff_vip(id) {
            // Waited for the backend's MAC, or a retry: the agent gets it, not a SYN.
            self.hand_off(id, pool, now_ms);
            return;
        }
        let Some(b) = self.pick_backend(id, pool) else {
            if self.pool_is_full(pool) {
                self.enqueue(id, pool, now_ms);
            } else {
                self.respond(id, 503, now_ms);
            }
            return;
        };
        let route = self.tcp.rt.routes[b];
        let Some(mac) = self.route_mac(&route, now_ms) else {
            self.wait_for_mac(id, b, route, now_ms);
            return;
        };
        if !self.take_slot(b) {
            // Another core took the last slot since `pick_backend` looked.
            self.enqueue(id, pool, now_ms);
            return;
        }
        if self.tcp.meta[id as usize].sticky {
            self.tcp.meta[id as usize].sticky_backend = Some(b as u16);
        }
        if let Some((key, side)) = self.take_warm(b, id) {
            // A warm connection: no backend handshake on this request's path.
            self.tcp.meta[id as usize].mark_tried(b);
            self.tcp.flows.bind_backend(id, key);
            self.tcp.pools.connection_opened(b);
            let meta = &mut self.tcp.meta[id as usize];
            meta.backend_held = true;
            meta.backend_mac = mac;
            meta.backend_port = route.via_port;
            let mut out = Outputs::default();
            if let Some(conn) = self.tcp.flows.get_mut(id) {
                conn.attach(BackendTarget { id: b, key }, side, now_ms, &mut out);
            }
            self.stats().add(Counter::WarmAttached, 1);
            crate::stats::bump(&self.stats().backend_requests[b], 1);
            for e in out.iter() {
                if let Emit::ToBackend(s) = e {
                    self.send_to_backend(id, &s);
                }
            }
            // A replacement now, not at the next sweep: the pool keeps up with a
            // burst of new connections.
            self.warm_refill(b, now_ms);
            return;
        }
        let Some(local_port) = self.pick_local_port(route) else {
            self.release_slot(b);
            self.stats().drop(DropReason::NoLocalPort, 1);
            self.respond(id, 503, now_ms);
            return;
        };
        self.tcp.meta[id as usize].mark_tried(b);
        let key = FlowKey {
            remote_ip: route.address,
            remote_port: route.port,
            local_ip: route.local_ip,
            local_port,
        };
        self.tcp.flows.bind_backend(id, key);
        self.tcp.pools.connection_opened(b);
        self.tcp.meta[id as usize].backend_held = true;
        let meta = &mut self.tcp.meta[id as usize];
        meta.backend_mac = mac;
        meta.backend_port = route.via_port;
        let mut out = Outputs::default();
        if let Some(conn) = self.tcp.flows.get_mut(id) {
            conn.connect(BackendTarget { id: b, key }, now_ms, &mut out);
        }
        self.stats().add(Counter::BackendConnects, 1);
        crate::stats::bump(&self.stats().backend_requests[b], 1);
        for e in out.iter() {
            if let Emit::ToBackend(s) = e {
                self.send_to_backend(id, &s);
            }
        }
    }

    /// Backend `b`'s MAC (its next hop's) is unknown: ask for it, and mark `id` as
    /// connecting to `b` without a local port, so the sweep (`waiting_for_mac`) comes back
    /// as soon as the MAC is known, and the connect timeout gives up if it never is.
    pub(super) fn wait_for_mac(&mut self, id: ConnId, b: usize, route: BackendRoute, now_ms: u64) {
        if self.send_arp_request(route.via_port, route.local_ip, route.next_hop) {
            self.stats().add(Counter::ArpRequestsSent, 1);
        }
        if let Some(conn) = self.tcp.flows.get_mut(id) {
            let mut out = Outputs::default();
            let key = FlowKey {
                remote_ip: route.address,
                remote_port: route.port,
                local_ip: route.local_ip,
                local_port: 0,
            };
            conn.connect(BackendTarget { id: b, key }, now_ms, &mut out);
        }
    }

    /// Picks an available backend of `pool` for `id`: not at its limit, and not tried
    /// before by this request unless every other one is out. On a handoff VIP, only a
    /// backend whose agent is alive (`crate::agents`): a handoff to a host without one
    /// would be silence until the switch gives up.
    pub(super) fn pick_backend(&mut self, id: ConnId, pool: usize) -> Option<usize> {
        let n = self.tcp.pools.members(pool).len();
        let meta = self.tcp.meta[id as usize];
        // The TSC to judge agents by, on a handoff VIP only (one read per pick).
        let agents_at = self.on_handoff_vip(id).then(dpdk_env::rdtsc);
        let agents = &self.shared.agents;
        let no_agent = |b: usize| agents_at.is_some_and(|t| !agents.alive(b, t));
        if let Some(b) = meta.sticky_backend.map(usize::from) {
            // Splice mode: the connection's backend, while it can take it.
            if !meta.tried(b) && self.tcp.pools.is_usable(b) && !self.at_limit(b) && !no_agent(b) {
                return Some(b);
            }
        }
        if let Some(b) = meta.session_backend.get() {
            // Handoff: the backend the request's session cookie names, while it can take
            // it (route_head kept it only if it is in this pool).
            if !meta.tried(b) && self.tcp.pools.is_usable(b) && !self.at_limit(b) && !no_agent(b) {
                self.stats().add(Counter::SessionCookieHits, 1);
                return Some(b);
            }
            self.stats().add(Counter::SessionCookieMisses, 1);
        }
        if !meta.prealloc_settled {
            // Handoff with pre-allocation: the backend guessed at SYN time, if this pool
            // has it (its kernel connection is ready).
            let guess = self
                .tcp
                .flows
                .get(id)
                .and_then(|c| self.prealloc_guess(&c.client));
            if let Some(g) = guess {
                if self.tcp.pools.members(pool).contains(&g) && !meta.tried(g) {
                    return Some(g);
                }
            }
        }
        if let Some(b) = meta.parked_backend.get() {
            // Handoff: back to the agent that holds the connection parked, if it is in
            // this pool and can take it (paper 002's switch-back).
            let member = self.tcp.pools.members(pool).contains(&b);
            if member
                && !meta.tried(b)
                && self.tcp.pools.is_usable(b)
                && !self.at_limit(b)
                && !no_agent(b)
            {
                self.stats().add(Counter::HandoffReturns, 1);
                return Some(b);
            }
        }
        let mut any_tried = false;
        for k in 0..n {
            let b = self.tcp.pools.members(pool)[k];
            let tried = meta.tried(b);
            any_tried |= tried;
            let blocked = tried || self.at_limit(b) || no_agent(b);
            self.tcp.pools.set_blocked(b, blocked);
        }
        let r = splitmix(&mut self.tcp.rng);
        let TcpCore { flows, pools, .. } = &mut self.tcp;
        let head = flows.get(id).map(|c| c.head_bytes()).unwrap_or(&[]);
        let mut picked = pools.pick(pool, request_path(head), r);
        if picked.is_none() && any_tried {
            // Every untried one is out: a tried one (still up, its agent alive on a
            // handoff VIP) is better than nothing.
            for k in 0..n {
                let b = pools.members(pool)[k];
                if meta.tried(b) && !no_agent(b) {
                    pools.set_blocked(b, false);
                }
            }
            picked = pools.pick(pool, request_path(head), r);
        }
        for k in 0..n {
            let b = pools.members(pool)[k];
            pools.set_blocked(b, false);
        }
        picked
    }

    /// A local port of this core's share toward `route` that no connection, warm
    /// connection or probe uses (a lingering holder is recycled).
    pub(super) fn pick_local_port(&mut self, route: BackendRoute) -> Option<u16> {
        let cores = self.shared.stats.len();
        for _ in 0..64 {
            let port = steer::next_local_port_for_core(
                self.tcp.next_local_port,
                self.index,
                cores,
                LOCAL_PORTS,
            );
            self.tcp.next_local_port = if port >= *LOCAL_PORTS.end() {
                *LOCAL_PORTS.start()
            } else {
                port + 1
            };
            let key = FlowKey {
                remote_ip: route.address,
                remote_port: route.port,
                local_ip: route.local_ip,
                local_port: port,
            };
            // A tuple a member still uses, for a connection it adopted from this instance
            // (it answers for our address while we were gone), is not ours to reuse.
            if self.tcp.warm.contains_key(&key)
                || self.tcp.probes.contains_key(&key)
                || self.tcp.standby.by_backend(&key).is_some()
            {
                continue;
            }
            match self.tcp.flows.lookup(&key) {
                None => return Some(port),
                // Held only by a lingering connection: recycle it (as a TIME_WAIT tuple is
                // reused), or a table of closed flows would leave no port to pick.
                Some((holder, Side::Backend)) if self.tcp.flows.is_lingering(holder) => {
                    self.remove_conn(holder);
                    self.stats().add(Counter::LingerRecycled, 1);
                    return Some(port);
                }
                Some(_) => {}
            }
        }
        None
    }

    /// Lets go of the connection's backend side (tuple and slot), for a retry or an answer.
    pub(super) fn release_backend(&mut self, id: ConnId) {
        if let Some(conn) = self.tcp.flows.get_mut(id) {
            if let Some(t) = conn.backend.take() {
                if t.key.local_port != 0 {
                    self.tcp.flows.unbind(&t.key);
                }
                self.release_held(id, t.id);
            }
        }
    }

    /// Whether backend `b` has all the connections its `max_connections` allows.
    pub(super) fn at_limit(&self, b: usize) -> bool {
        self.tcp.rt.config.backends[b]
            .max_connections
            .is_some_and(|m| self.shared.backend_conns[b].load(Ordering::Relaxed) >= m)
    }

    /// Takes one of `b`'s connection slots (over all cores); false when it is full.
    fn take_slot(&self, b: usize) -> bool {
        let limit = self.tcp.rt.config.backends[b].max_connections;
        let cell = &self.shared.backend_conns[b];
        cell.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
            (limit.is_none_or(|m| n < m)).then_some(n + 1)
        })
        .is_ok()
    }

    /// The connection's backend side is over: give back its slot and scheduler count.
    pub(super) fn release_held(&mut self, id: ConnId, b: usize) {
        if std::mem::take(&mut self.tcp.meta[id as usize].backend_held) {
            self.tcp.pools.connection_closed(b);
            self.release_slot(b);
        }
    }

    fn release_slot(&self, b: usize) {
        let _ =
            self.shared.backend_conns[b].fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// Passive health: a failed connect or a reset before any response counts against
    /// the backend; worker 0 folds these into its checks.
    pub(super) fn count_passive_failure(&mut self, id: ConnId) {
        let failed = self
            .tcp
            .flows
            .get(id)
            .and_then(|c| c.backend)
            .filter(|t| t.key.local_port != 0);
        if let Some(t) = failed {
            if let Some(cell) = self.shared.passive_fails.get(t.id) {
                cell.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// How many other backends a failed request may try (its pool's `retries`).
    pub(super) fn retries_of(&self, id: ConnId) -> u32 {
        let pool = self.tcp.pool_of[id as usize];
        let default = self.tcp.params.connect_attempts.saturating_sub(1);
        self.tcp
            .rt
            .config
            .pools
            .get(pool)
            .and_then(|p| p.retries)
            .unwrap_or(default)
    }

    /// Whether some member of `pool` is usable but at its connection limit (so waiting
    /// in the queue can help).
    fn pool_is_full(&self, pool: usize) -> bool {
        self.tcp
            .pools
            .members(pool)
            .iter()
            .any(|&b| self.tcp.pools.is_usable(b) && self.at_limit(b))
    }

    /// Puts `id` in `pool`'s queue (503 when the queue is full).
    fn enqueue(&mut self, id: ConnId, pool: usize, now_ms: u64) {
        let rt = Arc::clone(&self.tcp.rt);
        let slot = rt.pool_slot[pool];
        let cfg = &rt.config.pools[pool];
        let len = self.shared.queue_len[slot].fetch_add(1, Ordering::AcqRel);
        if len >= cfg.queue_length {
            self.shared.queue_len[slot].fetch_sub(1, Ordering::AcqRel);
            self.stats().add(Counter::QueueFull, 1);
            self.respond(id, 503, now_ms);
            return;
        }
        let ticket = self.shared.queue_ticket.fetch_add(1, Ordering::AcqRel) + 1;
        let meta = &mut self.tcp.meta[id as usize];
        meta.queue_ticket = ticket;
        meta.queue_slot = slot as u16;
        let q = &mut self.tcp.queues[slot];
        q.push_back((ticket, id));
        if q.len() == 1 {
            self.shared.queue_head[self.index][slot].store(ticket, Ordering::Release);
        }
        self.tcp.queued_local += 1;
        self.stats().add(Counter::RequestsQueued, 1);
        if let Some(c) = self.tcp.flows.get_mut(id) {
            c.enqueue(cfg.queue_timeout_ms, now_ms);
        }
    }

    /// Takes `id` out of its queue, if it is in one.
    pub(super) fn dequeue(&mut self, id: ConnId) {
        let meta = &mut self.tcp.meta[id as usize];
        let ticket = std::mem::take(&mut meta.queue_ticket);
        if ticket == 0 {
            return;
        }
        let slot = meta.queue_slot as usize;
        let q = &mut self.tcp.queues[slot];
        if let Some(pos) = q.iter().position(|&(t, _)| t == ticket) {
            q.remove(pos);
            self.tcp.queued_local -= 1;
            let _ = self.shared.queue_len[slot].fetch_update(
                Ordering::AcqRel,
                Ordering::Relaxed,
                |n| Some(n.saturating_sub(1)),
            );
        }
        let head = q.front().map_or(u64::MAX, |&(t, _)| t);
        self.shared.queue_head[self.index][slot].store(head, Ordering::Release);
    }

    /// Serves queued requests whose turn it is (the oldest over all cores) while their
    /// pool has a free slot.
    pub(super) fn serve_queues(&mut self, now_ms: u64) {
        if self.tcp.queued_local == 0 {
            return;
        }
        let cores = self.shared.stats.len();
        for slot in 0..self.tcp.queues.len() {
            while let Some(&(ticket, id)) = self.tcp.queues[slot].front() {
                let oldest = (0..cores).all(|c| {
                    c == self.index
                        || self.shared.queue_head[c][slot].load(Ordering::Acquire) >= ticket
                });
                if !oldest {
                    break;
                }
                let Some(pool) = self.tcp.rt.pool_by_slot.get(slot).copied().flatten() else {
                    // The pool was removed while the request waited.
                    self.dequeue(id);
                    self.respond(id, 503, now_ms);
                    continue;
                };
                let room = self
                    .tcp
                    .pools
                    .members(pool)
                    .iter()
                    .any(|&b| self.tcp.pools.is_usable(b) && !self.at_limit(b));
                if !room {
                    break;
                }
                self.dequeue(id);
                self.connect_backend(id, Some(pool), now_ms);
            }
            if self.tcp.queued_local == 0 {
                return;
            }
        }
    }
}

/// The request target of a head ("GET /a/b HTTP/1.1" → "/a/b"), for LARD's URL map.
fn request_path(head: &[u8]) -> &[u8] {
    let line_end = head.iter().position(|b| *b == b'\r').unwrap_or(head.len());
    let line = &head[..line_end];
    let mut parts = line.split(|b| *b == b' ');
    parts.next();
    parts.next().unwrap_or(&[])
}
