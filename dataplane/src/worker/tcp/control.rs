//! The core's side of the management socket and of what other threads change: questions
//! about this core's connections (list, kill) answered from the flow table, a new runtime
//! snapshot adopted, health, admin state and the handoff agents' loads applied to the
//! schedulers, and the tuples of health probes kept beside the flow table.
use tcpstate::flow::FlowKey;

use super::super::Worker;
use crate::runtime::{Admin, BackendRoute};

/// A connection as reported to the management socket.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnInfo {
    pub client: String,
    pub vip: String,
    pub backend: Option<String>,
    pub local_port: Option<u16>,
    pub state: &'static str,
    pub core: usize,
    pub bytes_c2b: u64,
    pub bytes_b2c: u64,
    pub age_ms: u64,
}

/// A question from the management thread to one core, answered on `reply`.
pub enum CoreRequest {
    List {
        client: Option<(std::net::Ipv4Addr, Option<u16>)>,
        backend: Option<usize>,
        state: Option<String>,
        limit: usize,
        reply: std::sync::mpsc::SyncSender<CoreReply>,
    },
    Kill {
        client: (std::net::Ipv4Addr, u16),
        reply: std::sync::mpsc::SyncSender<CoreReply>,
    },
}

pub enum CoreReply {
    Connections {
        list: Vec<ConnInfo>,
        truncated: bool,
    },
    Killed(usize),
}

impl Worker {
    /// Picks up a new runtime snapshot: new router and pools; this core's open
    /// connections per backend carry over (backend ids are stable).
    pub(super) fn adopt_runtime(&mut self) {
        let v = self
            .shared
            .runtime_version
            .load(std::sync::atomic::Ordering::Acquire);
        if v == self.tcp.rt.version {
            return;
        }
        let rt = self.shared.runtime.load_full();
        let mut pools = rt.pools.clone();
        let carried = self.tcp.pools.backend_count().min(pools.backend_count());
        for b in 0..carried {
            for _ in 0..self.tcp.pools.active(b) {
                pools.connection_opened(b);
            }
        }
        self.tcp.pools = pools;
        self.tcp.rt = rt;
        // The new pools know no load: give them the agents' at this sweep.
        self.tcp.agent_load.fill(u32::MAX);
    }

    /// Applies health and admin state, and the load each handoff agent reported (for
    /// `weighted_random`; 0 while its agent is not alive), to this core's schedulers,
    /// and publishes this core's open connections per backend.
    pub(super) fn sync_backend_state(&mut self) {
        let rt = std::sync::Arc::clone(&self.tcp.rt);
        let now_tsc = dpdk_env::rdtsc();
        for b in 0..self.tcp.pools.backend_count() {
            let load = self.shared.agents.load_e4(b, now_tsc);
            if let Some(applied) = self.tcp.agent_load.get_mut(b).filter(|l| **l != load) {
                *applied = load;
                self.tcp.pools.set_load(b, f64::from(load) / 10_000.0);
            }
            let health = self.shared.health[b].load(std::sync::atomic::Ordering::Relaxed);
            let up = health != super::super::health::HEALTH_DOWN
                && rt.admin[b] != Admin::Maint
                && !rt.removed[b];
            self.tcp.pools.set_up(b, up);
            let weight = if rt.admin[b] == Admin::Ready {
                rt.config.backends[b].weight
            } else {
                0
            };
            self.tcp.pools.set_weight(b, weight);
            self.shared.backend_active[self.index][b].store(
                self.tcp.pools.active(b),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// Answers the management thread's questions about this core's connections.
    pub(super) fn serve_ctl(&mut self, now_ms: u64) {
        let now_us = self.now_us();
        while let Some(req) = self.shared.ctl[self.index].pop() {
            match req {
                CoreRequest::List {
                    client,
                    backend,
                    state,
                    limit,
                    reply,
                } => {
                    let mut ids = Vec::new();
                    self.tcp.flows.live_ids(&mut ids);
                    let mut list = Vec::new();
                    let mut truncated = false;
                    for id in ids {
                        let Some(c) = self.tcp.flows.get(id) else {
                            continue;
                        };
                        if let Some((ip, port)) = client {
                            if c.client.remote_ip != ip
                                || port.is_some_and(|p| p != c.client.remote_port)
                            {
                                continue;
                            }
                        }
                        if backend.is_some() && c.backend.map(|t| t.id) != backend {
                            continue;
                        }
                        if state.as_deref().is_some_and(|s| s != c.state.name()) {
                            continue;
                        }
                        if list.len() >= limit {
                            truncated = true;
                            break;
                        }
                        list.push(ConnInfo {
                            client: format!("{}:{}", c.client.remote_ip, c.client.remote_port),
                            vip: format!("{}:{}", c.client.local_ip, c.client.local_port),
                            backend: c
                                .backend
                                .and_then(|t| self.tcp.rt.config.backends.get(t.id))
                                .map(|b| b.name.clone()),
                            local_port: c.backend.map(|t| t.key.local_port).filter(|p| *p != 0),
                            state: c.state.name(),
                            core: self.index,
                            bytes_c2b: c.bytes_c2b,
                            bytes_b2c: c.bytes_b2c,
                            age_ms: now_us.saturating_sub(self.tcp.meta[id as usize].accept_us)
                                / 1000,
                        });
                    }
                    let _ = reply.try_send(CoreReply::Connections { list, truncated });
                }
                CoreRequest::Kill { client, reply } => {
                    let mut ids = Vec::new();
                    self.tcp.flows.live_ids(&mut ids);
                    let key = ids.into_iter().find(|id| {
                        self.tcp.flows.get(*id).is_some_and(|c| {
                            c.client.remote_ip == client.0 && c.client.remote_port == client.1
                        })
                    });
                    let mut killed = 0;
                    if let Some(id) = key {
                        self.kill_conn(id, now_ms);
                        killed = 1;
                    }
                    let _ = reply.try_send(CoreReply::Killed(killed));
                }
            }
        }
    }

    pub(in crate::worker) fn tcp_bind_probe(&mut self, key: FlowKey, b: usize) {
        self.tcp.probes.insert(key, b);
    }

    pub(in crate::worker) fn tcp_unbind_probe(&mut self, key: &FlowKey) {
        self.tcp.probes.remove(key);
    }

    /// A local port for a health probe: this core's, not used by a connection or probe.
    pub(in crate::worker) fn probe_port(&mut self, route: BackendRoute) -> Option<u16> {
        let port = self.pick_local_port(route)?;
        let key = FlowKey {
            remote_ip: route.address,
            remote_port: route.port,
            local_ip: route.local_ip,
            local_port: port,
        };
        (!self.tcp.probes.contains_key(&key)).then_some(port)
    }
}
