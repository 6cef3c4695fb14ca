//! Backend pools and their schedulers, as one worker core sees them.
//!
//! Each worker core owns a [`Pools`] (no locks, no shared counters): it counts the
//! connections *it* has open to each backend, keeps its own round-robin positions,
//! LARD's URL table and the load figures it was told. Consequences, by scheduler:
//! - round robin and weighted round robin: each core cycles on its own, so the total
//!   is still proportional to the weights (exactly per core, approximately overall).
//! - least connections: a core compares the connections *it* opened; with clients
//!   spread evenly over cores (RSS) that is the total divided by the number of cores,
//!   but a backend loaded by other cores' long connections is not seen as loaded here.
//! - LARD: the URL → backend table is per core, so a URL may be assigned to a
//!   different backend on each core (up to one copy of a document per core in the
//!   backends' caches), and the thresholds compare per-core connection counts: each
//!   core applies its share of `low`/`high` (divided by the number of workers, rounded
//!   up), so the pool as a whole moves URLs at about the configured totals.
//! - `max_connections` is exact over all cores: the worker keeps one shared counter per
//!   backend and marks a backend at its limit `blocked` here before it picks (see
//!   [`Pools::set_blocked`]), which also excludes backends a retry already tried.
//! - weighted random: the reported load is per backend, not per core, so every core
//!   applies the same figures (the management thread sends them to each core).
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use crate::config::{BackendConfig, Config, ConfigError, Scheduler};
use crate::matcher::PoolId;

/// A backend, as its index in `Config::backends`.
pub type BackendId = usize;

/// URLs LARD remembers per pool (per core); past it the oldest assignment is dropped.
pub const LARD_MAX_URLS: usize = 65536;

/// Fixed point of the weighted-random capacity figure: 1.0 (all capacity free).
const CAPACITY_ONE: u64 = 1 << 16;

#[derive(Debug, Clone)]
struct Backend {
    config: BackendConfig,
    up: bool,
    active: u32,
    /// Not to be picked now (at its connection limit, or already tried).
    blocked: bool,
    /// Free capacity for weighted random, 0..=CAPACITY_ONE (1 − load).
    capacity: u64,
}

impl Backend {
    fn available(&self) -> bool {
        self.up && self.config.weight > 0 && !self.blocked
    }
}

/// Whether `a` has fewer active connections per unit of weight than `b`.
fn less_loaded(a: &Backend, b: &Backend) -> bool {
    u64::from(a.active) * u64::from(b.config.weight)
        < u64::from(b.active) * u64::from(a.config.weight)
}

/// A hasher for keys that are already random 64-bit hashes.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug, Clone)]
struct Lard {
    low: u32,
    high: u32,
    /// Keyed hash of the URL (keys are per `Pools`, so collisions cannot be aimed).
    hasher: RandomState,
    server: HashMap<u64, BackendId, BuildHasherDefault<PreHashed>>,
    /// Insertion order, for evicting the oldest.
    order: VecDeque<u64>,
    /// Where the next search for the least loaded starts, so that ties (an idle
    /// pool) spread new documents over the backends instead of piling them on one.
    next: usize,
}

#[derive(Debug, Clone)]
enum Sched {
    RoundRobin {
        next: usize,
    },
    /// nginx's smooth weighted round robin: the current weight of each member.
    Weighted {
        current: Box<[i64]>,
    },
    LeastConnections {
        next: usize,
    },
    Lard(Box<Lard>),
    WeightedRandom,
}

#[derive(Debug, Clone)]
struct Pool {
    members: Box<[BackendId]>,
    sched: Sched,
}

/// The pools and backends of one config, with one worker core's scheduling state.
#[derive(Debug, Clone)]
pub struct Pools {
    backends: Vec<Backend>,
    pools: Vec<Pool>,
}

/// `total` split over `parts` cores, rounded up (at least 1).
fn share(total: u32, parts: u32) -> u32 {
    total.div_ceil(parts.max(1)).max(1)
}

impl Pools {
    /// One core's view of `config.backends` and `config.pools` (all backends up, no
    /// connections, no load reported). Errors name the field, as `Config::validate`.
    pub fn new(config: &Config) -> Result<Pools, ConfigError> {
        let workers = u32::try_from(config.lcores.workers.len())
            .unwrap_or(u32::MAX)
            .max(1);
        let backends = config
            .backends
            .iter()
            .map(|b| Backend {
                config: b.clone(),
                up: true,
                active: 0,
                blocked: false,
                capacity: CAPACITY_ONE,
            })
            .collect();
        let mut pools = Vec::with_capacity(config.pools.len());
        for (i, p) in config.pools.iter().enumerate() {
            let members = p
                .backends
                .iter()
                .enumerate()
                .map(|(j, name)| {
                    config.backend_index(name).ok_or_else(|| {
                        ConfigError::new(
                            format!("pools[{i}].backends[{j}]"),
                            format!("no backend is named `{name}`"),
                        )
                    })
                })
                .collect::<Result<Box<[_]>, _>>()?;
            if members.is_empty() {
                return Err(ConfigError::new(
                    format!("pools[{i}].backends"),
                    "a pool needs at least one backend",
                ));
            }
            let sched = match p.scheduler {
                Scheduler::RoundRobin => Sched::RoundRobin { next: 0 },
                Scheduler::WeightedRoundRobin => Sched::Weighted {
                    current: vec![0; members.len()].into_boxed_slice(),
                },
                Scheduler::LeastConnections => Sched::LeastConnections { next: 0 },
                Scheduler::WeightedRandom => Sched::WeightedRandom,
                Scheduler::Lard => {
                    let t = p.lard_thresholds();
                    Sched::Lard(Box::new(Lard {
                        low: share(t.low, workers).min(t.low),
                        high: share(t.high, workers),
                        hasher: RandomState::new(),
                        server: HashMap::with_capacity_and_hasher(
                            LARD_MAX_URLS,
                            BuildHasherDefault::default(),
                        ),
                        order: VecDeque::with_capacity(LARD_MAX_URLS),
                        next: 0,
                    }))
                }
            };
            pools.push(Pool { members, sched });
        }
        Ok(Pools { backends, pools })
    }

    /// Chooses a backend of `pool` for a new connection, or `None` if none is
    /// available (all down, drained — weight 0 — or at their connection limit).
    /// `request_key` identifies the document for LARD (the request's path, query
    /// included); `rand` is a uniformly random number, used by weighted random only.
    /// The caller reports the connection with [`Pools::connection_opened`].
    ///
    /// Panics if `pool` is not a pool of this config.
    pub fn pick(&mut self, pool: PoolId, request_key: &[u8], rand: u64) -> Option<BackendId> {
        let backends = &self.backends;
        let Pool { members, sched } = &mut self.pools[pool];
        let avail = |b: BackendId| backends[b].available();
        match sched {
            Sched::RoundRobin { next } => {
                let n = members.len();
                let k = (0..n)
                    .map(|k| (*next + k) % n)
                    .find(|&k| avail(members[k]))?;
                *next = (k + 1) % n;
                Some(members[k])
            }
            Sched::Weighted { current } => {
                // Smooth WRR (nginx, ngx_http_upstream_get_peer): every available
                // member gains its weight, the largest is chosen and loses the total.
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for (k, &b) in members.iter().enumerate() {
                    if !avail(b) {
                        continue;
                    }
                    let w = i64::from(backends[b].config.weight);
                    current[k] += w;
                    total += w;
                    if best.is_none_or(|j| current[k] > current[j]) {
                        best = Some(k);
                    }
                }
                let j = best?;
                current[j] -= total;
                Some(members[j])
            }
            Sched::LeastConnections { next } => {
                let k = least_loaded(backends, members, *next)?;
                // Start the next scan after the winner: ties go round robin.
                *next = (k + 1) % members.len();
                Some(members[k])
            }
            Sched::Lard(l) => l.pick(backends, members, request_key),
            Sched::WeightedRandom => weighted_random(backends, members, rand),
        }
    }

    /// A connection to `b` was opened (counts toward least connections, LARD's load
    /// and `max_connections`).
    pub fn connection_opened(&mut self, b: BackendId) {
        let a = &mut self.backends[b].active;
        *a = a.saturating_add(1);
    }

    /// A connection to `b` was closed.
    pub fn connection_closed(&mut self, b: BackendId) {
        let a = &mut self.backends[b].active;
        *a = a.saturating_sub(1);
    }

    /// Blocks `b` from being picked (at its connection limit, or tried already by a
    /// retry) until unblocked.
    pub fn set_blocked(&mut self, b: BackendId, blocked: bool) {
        self.backends[b].blocked = blocked;
    }

    /// Whether `b` is up and takes new connections (weight above 0), limits aside.
    pub fn is_usable(&self, b: BackendId) -> bool {
        let b = &self.backends[b];
        b.up && b.config.weight > 0
    }

    /// Marks `b` up or down (health checks); a down backend is never picked.
    pub fn set_up(&mut self, b: BackendId, up: bool) {
        self.backends[b].up = up;
    }

    /// Changes `b`'s weight at run time (0 drains it).
    pub fn set_weight(&mut self, b: BackendId, weight: u32) {
        self.backends[b].config.weight = weight.min(crate::config::MAX_WEIGHT);
    }

    /// The load `b` reports, as the fraction of its capacity in use: 0.0 idle, 1.0
    /// full (clamped to that range; NaN counts as full). Used by weighted random.
    pub fn set_load(&mut self, b: BackendId, load: f64) {
        let load = if load.is_nan() {
            1.0
        } else {
            load.clamp(0.0, 1.0)
        };
        self.backends[b].capacity = ((1.0 - load) * CAPACITY_ONE as f64).round() as u64;
    }

    /// The backend's config (with the run-time weight).
    pub fn backend(&self, b: BackendId) -> &BackendConfig {
        &self.backends[b].config
    }

    /// Whether `b` is marked up.
    pub fn is_up(&self, b: BackendId) -> bool {
        self.backends[b].up
    }

    /// Whether `b` could be picked now: up, weight above 0, under its connection limit.
    pub fn is_available(&self, b: BackendId) -> bool {
        self.backends[b].available()
    }

    /// Connections this core has open to `b`.
    pub fn active(&self, b: BackendId) -> u32 {
        self.backends[b].active
    }

    /// The members of `pool`.
    pub fn members(&self, pool: PoolId) -> &[BackendId] {
        &self.pools[pool].members
    }

    pub fn backend_count(&self) -> usize {
        self.backends.len()
    }

    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }
}

/// The index in `members` of the available backend with the fewest active connections
/// per unit of weight; the scan starts at `start` and keeps the first of equals.
fn least_loaded(backends: &[Backend], members: &[BackendId], start: usize) -> Option<usize> {
    let n = members.len();
    let mut best: Option<usize> = None;
    for k in (0..n).map(|k| (start + k) % n) {
        let b = &backends[members[k]];
        if b.available() && best.is_none_or(|j| less_loaded(b, &backends[members[j]])) {
            best = Some(k);
        }
    }
    best
}

impl Lard {
    /// LARD as in Pai et al., "Locality-Aware Request Distribution in Cluster-based
    /// Network Servers" (ASPLOS 1998; reference \[4\] of paper 003), with load = active
    /// connections:
    ///
    /// ```text
    /// if server[target] is null: server[target] = least loaded node
    /// else if (load(server[target]) > T_high and some node has load < T_low)
    ///         or load(server[target]) >= 2 T_high:
    ///     server[target] = least loaded node
    /// send to server[target]
    /// ```
    ///
    /// plus: an assigned backend that is unavailable (down, drained, full) is replaced
    /// like an overloaded one; "least loaded" weighs connections by `weight`, and ties
    /// go round robin.
    fn pick(
        &mut self,
        backends: &[Backend],
        members: &[BackendId],
        key: &[u8],
    ) -> Option<BackendId> {
        let h = self.hasher.hash_one(key);
        let next = &mut self.next;
        let mut least = || {
            let k = least_loaded(backends, members, *next)?;
            *next = (k + 1) % members.len();
            Some(members[k])
        };
        match self.server.get_mut(&h) {
            Some(assigned) => {
                let cur = &backends[*assigned];
                let load = cur.active;
                let overloaded = (load > self.high
                    && members
                        .iter()
                        .any(|&m| backends[m].available() && backends[m].active < self.low))
                    || u64::from(load) >= 2 * u64::from(self.high);
                if cur.available() && !overloaded {
                    return Some(*assigned);
                }
                let n = least()?;
                *assigned = n;
                Some(n)
            }
            None => {
                let n = least()?;
                if self.server.len() >= LARD_MAX_URLS {
                    if let Some(old) = self.order.pop_front() {
                        self.server.remove(&old);
                    }
                }
                self.server.insert(h, n);
                self.order.push_back(h);
                Some(n)
            }
        }
    }

    #[cfg(test)]
    fn assigned(&self, key: &[u8]) -> Option<BackendId> {
        self.server.get(&self.hasher.hash_one(key)).copied()
    }
}

/// The workload-weighted random choice of paper 001, section 5.1 ("L3 Load Balancer"),
/// after its reference [7]: each server reports a workload factor W_i, the fraction of
/// its capacity that is available; with W'_i = W_i / Σ W_j, a random r in [0, 1)
/// picks server s_i when r ∈ [Σ_{j<i} W'_j, Σ_{j≤i} W'_j). Here W_i = weight_i ×
/// (1 − load_i) over the available members (weight 1 everywhere is the paper's rule;
/// the configured weight scales backends of different size). If every available
/// member reports itself full, the choice falls back to the weights alone, so a
/// request is still served while any backend can take it.
fn weighted_random(backends: &[Backend], members: &[BackendId], rand: u64) -> Option<BackendId> {
    let factor = |b: &Backend, by_load: bool| -> u64 {
        if !b.available() {
            0
        } else if by_load {
            u64::from(b.config.weight) * b.capacity
        } else {
            u64::from(b.config.weight)
        }
    };
    for by_load in [true, false] {
        let total: u64 = members.iter().map(|&m| factor(&backends[m], by_load)).sum();
        if total == 0 {
            continue;
        }
        // r × total, uniformly in [0, total).
        let x = ((u128::from(rand) * u128::from(total)) >> 64) as u64;
        let mut acc = 0;
        for &m in members {
            acc += factor(&backends[m], by_load);
            if x < acc {
                return Some(m);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
