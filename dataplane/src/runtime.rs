//! The part of the config that changes at run time (backends, pools, rules), published
//! to the workers as one immutable snapshot.
//!
//! The management thread builds a new [`Runtime`] beside the running one, validates it
//! completely, and only then swaps the pointer (`ArcSwap`) and bumps the version; a
//! worker notices the version between bursts and adopts the snapshot, so it never waits
//! for a lock and never sees a half-applied change. Existing connections keep the
//! backend they were spliced to: they hold its address and MAC, not a reference into
//! the snapshot.
//!
//! Backend ids are stable for the life of the process: a removed backend keeps its
//! slot (in no pool, so it gets no new connections) so that connections still open to
//! it are accounted to the right id. At most [`MAX_BACKENDS`] slots exist.
use std::net::Ipv4Addr;
use std::sync::Arc;

use rules::config::{BackendConfig, PortRole};
use rules::{Config, ConfigError, Pools, Router};

/// Backend slots per process (ids are never reused within a run).
pub const MAX_BACKENDS: usize = 256;
/// Rule and pool slots per process, for their counters (keyed by name: a rule or pool
/// keeps its counters across config changes; an unnamed rule is keyed by its position).
pub const MAX_RULES: usize = 256;
pub const MAX_POOLS: usize = 256;

/// Stable counter slots by name: a name keeps its slot for the life of the process.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    pub names: Vec<String>,
}

impl Slots {
    /// The slot of each key, assigning new ones; `None` when `max` would be exceeded.
    fn assign(&mut self, keys: &[String], max: usize) -> Option<Vec<usize>> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let slot = match self.names.iter().position(|n| n == k) {
                Some(i) => i,
                None => {
                    if self.names.len() >= max {
                        return None;
                    }
                    self.names.push(k.clone());
                    self.names.len() - 1
                }
            };
            out.push(slot);
        }
        Some(out)
    }
}

/// The counter key of rule `i`: its name, or `#i` for an unnamed rule.
pub fn rule_key(config: &Config, i: usize) -> String {
    config.rules[i]
        .name
        .clone()
        .unwrap_or_else(|| format!("#{i}"))
}

/// The operator's wish for a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Admin {
    /// Takes new connections (when healthy).
    Ready,
    /// No new connections; open ones finish.
    Drain,
    /// As drain, and health checks stop.
    Maint,
}

/// How to reach one backend.
#[derive(Debug, Clone, Copy)]
pub struct BackendRoute {
    pub address: Ipv4Addr,
    pub port: u16,
    /// DPDK port index facing it, our address there, and the next hop to resolve.
    pub via_port: usize,
    pub local_ip: Ipv4Addr,
    pub next_hop: Ipv4Addr,
    /// The encapsulation handoff reaches its agent through (`backends[].tunnel`), if any.
    pub tunnel: Option<tcpstate::wire::tunnel::Encap>,
    /// The host's own kernel (`backends[].local`), behind `via_port`'s exception TAP.
    pub local: bool,
}

/// One published snapshot.
pub struct Runtime {
    pub version: u64,
    /// The config with every backend slot in id order (removed ones included, in no pool).
    pub config: Config,
    pub removed: Vec<bool>,
    pub admin: Vec<Admin>,
    pub router: Arc<Router>,
    /// Scheduler state to start from (no connections); cores carry their counts over.
    pub pools: Pools,
    pub routes: Vec<BackendRoute>,
    /// Counter slot of each rule and pool (by index in `config`), and every slot's name.
    pub rule_slot: Vec<usize>,
    pub rule_slots: Slots,
    pub pool_slot: Vec<usize>,
    pub pool_slots: Slots,
    /// Pool index by slot (`None`: that pool is gone).
    pub pool_by_slot: Vec<Option<usize>>,
    /// Per backend id: (min_idle, max_idle) warm connections per core, the largest any
    /// of its pools asks for; (0, 0) for none.
    pub warm: Vec<(u32, u32)>,
}

impl Runtime {
    /// Validates `config` (with slot bookkeeping) and compiles everything the workers
    /// need. Nothing is published here.
    pub fn build(
        version: u64,
        config: Config,
        removed: Vec<bool>,
        admin: Vec<Admin>,
        slots: (Slots, Slots),
    ) -> Result<Runtime, ConfigError> {
        if config.backends.len() > MAX_BACKENDS {
            return Err(ConfigError::new(
                "backends",
                format!("at most {MAX_BACKENDS} backends per run"),
            ));
        }
        config.validate()?;
        let router = Arc::new(Router::new(&config)?);
        let pools = Pools::new(&config)?;
        let routes = backend_routes(&config)?;
        let (mut rule_slots, mut pool_slots) = slots;
        let rule_keys: Vec<String> = (0..config.rules.len())
            .map(|i| rule_key(&config, i))
            .collect();
        let rule_slot = rule_slots.assign(&rule_keys, MAX_RULES).ok_or_else(|| {
            ConfigError::new("rules", format!("at most {MAX_RULES} rule names per run"))
        })?;
        let pool_keys: Vec<String> = config.pools.iter().map(|p| p.name.clone()).collect();
        let pool_slot = pool_slots.assign(&pool_keys, MAX_POOLS).ok_or_else(|| {
            ConfigError::new("pools", format!("at most {MAX_POOLS} pool names per run"))
        })?;
        let mut pool_by_slot = vec![None; pool_slots.names.len()];
        for (i, &slot) in pool_slot.iter().enumerate() {
            pool_by_slot[slot] = Some(i);
        }
        let mut warm = vec![(0u32, 0u32); config.backends.len()];
        for p in &config.pools {
            let Some(w) = p.warm else { continue };
            for name in &p.backends {
                if let Some(b) = config.backend_index(name) {
                    warm[b].0 = warm[b].0.max(w.min_idle);
                    warm[b].1 = warm[b].1.max(w.max_idle);
                }
            }
        }
        Ok(Runtime {
            warm,
            version,
            config,
            removed,
            admin,
            router,
            pools,
            routes,
            rule_slot,
            rule_slots,
            pool_slot,
            pool_slots,
            pool_by_slot,
        })
    }

    /// The first snapshot, from the config the switch started with.
    pub fn initial(config: &Config) -> Result<Runtime, ConfigError> {
        let n = config.backends.len();
        Runtime::build(
            1,
            config.clone(),
            vec![false; n],
            vec![Admin::Ready; n],
            Default::default(),
        )
    }

    /// The config as the operator sees it: removed backends left out. What `config show`
    /// prints and `config save` writes (and `webswitch run` accepts).
    pub fn public_config(&self) -> Config {
        let mut c = self.config.clone();
        c.backends = self
            .config
            .backends
            .iter()
            .zip(&self.removed)
            .filter(|(_, r)| !**r)
            .map(|(b, _)| b.clone())
            .collect();
        c
    }

    /// The backends not removed, with their ids (what the reports list).
    pub fn live_backends(&self) -> impl Iterator<Item = (usize, &BackendConfig)> {
        self.config
            .backends
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.removed[*i])
    }

    pub fn backend_id(&self, name: &str) -> Option<usize> {
        self.config
            .backends
            .iter()
            .zip(&self.removed)
            .position(|(b, r)| !r && b.name == name)
    }

    /// Pools a live backend belongs to.
    pub fn pools_of(&self, name: &str) -> Vec<String> {
        self.config
            .pools
            .iter()
            .filter(|p| p.backends.iter().any(|b| b == name))
            .map(|p| p.name.clone())
            .collect()
    }

    /// A successor snapshot with `config` as the operator's new config: backends are
    /// matched to their slots by name (new names get new slots, missing ones are
    /// removed), admin states carry over.
    pub fn successor_with(&self, mut new: Config) -> Result<Runtime, ConfigError> {
        let mut slots: Vec<BackendConfig> = self.config.backends.clone();
        let mut removed = vec![true; slots.len()];
        let mut admin = self.admin.clone();
        for b in new.backends.drain(..) {
            match slots.iter().position(|s| s.name == b.name) {
                Some(i) => {
                    slots[i] = b;
                    removed[i] = false;
                }
                None => {
                    slots.push(b);
                    removed.push(false);
                    admin.push(Admin::Ready);
                }
            }
        }
        new.backends = slots;
        let slots = (self.rule_slots.clone(), self.pool_slots.clone());
        Runtime::build(self.version + 1, new, removed, admin, slots)
    }
}

/// For each backend: the port facing it, our address there, and the next hop.
pub fn backend_routes(config: &Config) -> Result<Vec<BackendRoute>, ConfigError> {
    let mut routes = Vec::with_capacity(config.backends.len());
    for (i, b) in config.backends.iter().enumerate() {
        let facing = |p: &&rules::config::PortConfig| p.role != PortRole::Client;
        let direct = config
            .ports
            .iter()
            .enumerate()
            .filter(|(_, p)| facing(p))
            .find_map(|(pi, p)| {
                p.addresses
                    .iter()
                    .find(|c| c.contains(b.address))
                    .map(|c| (pi, c.addr, b.address))
            });
        let via_gateway = || {
            config
                .ports
                .iter()
                .enumerate()
                .filter(|(_, p)| facing(p))
                .find_map(|(pi, p)| {
                    let gw = p.gateway?;
                    p.addresses
                        .iter()
                        .find(|c| c.contains(gw))
                        .map(|c| (pi, c.addr, gw))
                })
        };
        let Some((via_port, local_ip, next_hop)) = direct.or_else(via_gateway) else {
            return Err(ConfigError::new(
                format!("backends[{i}].address"),
                format!(
                    "{} is on no backend-facing port's subnet and no such port has a gateway",
                    b.address
                ),
            ));
        };
        routes.push(BackendRoute {
            address: b.address,
            port: b.port,
            via_port,
            local_ip,
            next_hop,
            tunnel: b.tunnel.map(|t| match t {
                rules::config::Tunnel::Ipip => tcpstate::wire::tunnel::Encap::Ipip,
                rules::config::Tunnel::Gre => tcpstate::wire::tunnel::Encap::Gre,
            }),
            local: b.local,
        });
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Config {
        Config::from_json(include_str!("../../examples/testbed.json")).unwrap()
    }

    #[test]
    fn successor_keeps_slots_by_name() {
        let rt = Runtime::initial(&example()).unwrap();
        let mut c = rt.public_config();
        // Remove be2 (from its pools too) and add be4.
        c.backends.retain(|b| b.name != "be2");
        for p in &mut c.pools {
            p.backends.retain(|b| b != "be2");
        }
        c.pools.retain(|p| !p.backends.is_empty());
        c.rules
            .retain(|r| c.pools.iter().any(|p| r.uses_pool(&p.name)));
        let mut be4 = c.backends[0].clone();
        be4.name = "be4".into();
        be4.address = "10.99.1.14".parse().unwrap();
        c.backends.push(be4);
        c.pools[0].backends.push("be4".into());
        let next = rt.successor_with(c).unwrap();
        assert_eq!(next.version, 2);
        let names: Vec<_> = next
            .config
            .backends
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        assert_eq!(names, ["be1", "be2", "be3", "be4"], "slots are stable");
        assert_eq!(next.removed, [false, true, false, false]);
        assert_eq!(next.backend_id("be2"), None);
        assert_eq!(next.backend_id("be4"), Some(3));
        assert!(next
            .public_config()
            .backends
            .iter()
            .all(|b| b.name != "be2"));
    }

    #[test]
    fn a_bad_successor_changes_nothing() {
        let rt = Runtime::initial(&example()).unwrap();
        let mut c = rt.public_config();
        c.default_pool = Some("nope".into());
        let err = rt.successor_with(c).err().expect("invalid");
        assert_eq!(err.field, "default_pool");
        assert_eq!(rt.version, 1);
    }
}
