//! The routing part of the config: `backends`, `pools`, `rules` and `default_pool`
//! (documented in docs/config.md). The rules themselves are checked by compiling them
//! ([`crate::matcher::Router::new`]), so a config that validates is one that routes.
use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, PortRole};

/// Largest `backends[].weight`: keeps the schedulers' sums far from overflow.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// A real server behind the switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Referenced by `pools[].backends`, shown in logs and stats. Unique.
    pub name: String,
    pub address: Ipv4Addr,
    #[serde(default = "BackendConfig::default_port")]
    pub port: u16,
    /// Relative share of the traffic; 0 drains the backend (no new connections).
    #[serde(default = "BackendConfig::default_weight")]
    pub weight: u32,
    /// Most connections open to this backend at once (split among the worker cores);
    /// none means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

impl BackendConfig {
    fn default_port() -> u16 {
        80
    }
    fn default_weight() -> u32 {
        1
    }
}

/// How a pool chooses among its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheduler {
    /// Each available backend in turn.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin (as nginx): proportional to `weight`, interleaved.
    WeightedRoundRobin,
    /// The backend with the fewest active connections per unit of weight.
    LeastConnections,
    /// Locality-aware request distribution: a URL sticks to one backend until load
    /// thresholds move it (Pai et al., reference [4] of paper 003).
    Lard,
    /// Random choice weighted by the capacity backends report (paper 001, section 5.1).
    WeightedRandom,
}

/// LARD's thresholds, in active connections per backend (the paper's T_low and T_high).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LardConfig {
    #[serde(default = "LardConfig::default_low")]
    pub low: u32,
    #[serde(default = "LardConfig::default_high")]
    pub high: u32,
}

impl LardConfig {
    fn default_low() -> u32 {
        25
    }
    fn default_high() -> u32 {
        65
    }
}

impl Default for LardConfig {
    fn default() -> Self {
        Self {
            low: Self::default_low(),
            high: Self::default_high(),
        }
    }
}

/// A named set of backends with a scheduler; rules send requests to pools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    /// `backends[].name`s, at least one, each once.
    pub backends: Vec<String>,
    #[serde(default)]
    pub scheduler: Scheduler,
    /// Only with `scheduler: "lard"`; defaults to `{ "low": 25, "high": 65 }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lard: Option<LardConfig>,
}

impl PoolConfig {
    /// The LARD thresholds in force (the defaults when `lard` is absent).
    pub fn lard_thresholds(&self) -> LardConfig {
        self.lard.unwrap_or_default()
    }
}

/// One content rule: when every condition of `match` holds, the request goes to `pool`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "match", default)]
    pub matches: RuleMatch,
    /// A `pools[].name`.
    pub pool: String,
}

/// The conditions of a rule; all that are given must hold. None given: matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    /// The path (the target before any `?`) starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// A regular expression (Rust `regex` syntax, unanchored) found in the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// File extensions without the dot (`png`), compared case-insensitively with the
    /// last path segment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Vec<String>>,
    /// The request's host (Host header, or the authority of an absolute-form target),
    /// port stripped, compared case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The method, exactly (methods are case-sensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<CookieMatch>,
}

impl RuleMatch {
    /// Whether no condition is given (the rule matches every request).
    pub fn is_empty(&self) -> bool {
        *self == RuleMatch::default()
    }
}

/// A header is present (name case-insensitive) and, if `value_regex` is given, one of
/// its values contains a match of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_regex: Option<String>,
}

/// A cookie is present (name case-sensitive) and, if `value` is given, has exactly
/// that value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Whether `s` is an HTTP token (RFC 9110 5.6.2): header names, methods, cookie names.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Config {
    /// `backends` and `pools`: names, addresses, references, ranges. The rules are
    /// checked by compiling them (see `validate`).
    pub(super) fn validate_backends_and_pools(&self) -> Result<(), ConfigError> {
        let backend_ports: Vec<_> = self
            .ports
            .iter()
            .filter(|p| p.role != PortRole::Client)
            .collect();
        let has_gateway = backend_ports.iter().any(|p| p.gateway.is_some());
        let own: HashSet<Ipv4Addr> = self
            .ports
            .iter()
            .flat_map(|p| p.addresses.iter().map(|a| a.addr))
            .chain(self.vips.iter().map(|v| v.address))
            .collect();
        let mut names = HashSet::new();
        let mut endpoints = HashSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            if b.name.is_empty() || !names.insert(b.name.as_str()) {
                return Err(ConfigError::new(
                    format!("backends[{i}].name"),
                    format!("`{}` is empty or used twice", b.name),
                ));
            }
            let a = b.address;
            if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
                return Err(ConfigError::new(
                    format!("backends[{i}].address"),
                    format!("{a} is not a unicast address"),
                ));
            }
            if own.contains(&a) {
                return Err(ConfigError::new(
                    format!("backends[{i}].address"),
                    format!("{a} is one of the switch's own addresses or a VIP"),
                ));
            }
            let on_link = backend_ports
                .iter()
                .any(|p| p.addresses.iter().any(|c| c.contains(a)));
            if !on_link && !has_gateway {
                return Err(ConfigError::new(
                    format!("backends[{i}].address"),
                    format!(
                        "{a} is on no subnet of a backend-facing port (role `backend` or \
                         `both`), and none of those ports has a `gateway`"
                    ),
                ));
            }
            if b.port == 0 {
                return Err(ConfigError::new(
                    format!("backends[{i}].port"),
                    "must be 1-65535",
                ));
            }
            if !endpoints.insert((a, b.port)) {
                return Err(ConfigError::new(
                    format!("backends[{i}].address"),
                    format!("{a}:{} is already another backend", b.port),
                ));
            }
            if b.weight > MAX_WEIGHT {
                return Err(ConfigError::new(
                    format!("backends[{i}].weight"),
                    format!("must be 0..={MAX_WEIGHT} (0 drains the backend)"),
                ));
            }
            if b.max_connections == Some(0) {
                return Err(ConfigError::new(
                    format!("backends[{i}].max_connections"),
                    "must be at least 1 (to take a backend out of service, set `weight` to 0)",
                ));
            }
        }
        let mut pools = HashSet::new();
        for (i, p) in self.pools.iter().enumerate() {
            if p.name.is_empty() || !pools.insert(p.name.as_str()) {
                return Err(ConfigError::new(
                    format!("pools[{i}].name"),
                    format!("`{}` is empty or used twice", p.name),
                ));
            }
            if p.backends.is_empty() {
                return Err(ConfigError::new(
                    format!("pools[{i}].backends"),
                    "a pool needs at least one backend",
                ));
            }
            let mut members = HashSet::new();
            for (j, name) in p.backends.iter().enumerate() {
                if !names.contains(name.as_str()) {
                    return Err(ConfigError::new(
                        format!("pools[{i}].backends[{j}]"),
                        format!("no backend is named `{name}`"),
                    ));
                }
                if !members.insert(name.as_str()) {
                    return Err(ConfigError::new(
                        format!("pools[{i}].backends[{j}]"),
                        format!("`{name}` is listed twice"),
                    ));
                }
            }
            if let Some(l) = p.lard {
                if p.scheduler != Scheduler::Lard {
                    return Err(ConfigError::new(
                        format!("pools[{i}].lard"),
                        "only used with `scheduler: \"lard\"`; remove it",
                    ));
                }
                if l.high == 0 {
                    return Err(ConfigError::new(
                        format!("pools[{i}].lard.high"),
                        "must be at least 1",
                    ));
                }
                if l.low >= l.high {
                    return Err(ConfigError::new(
                        format!("pools[{i}].lard.low"),
                        format!("must be below `high` ({})", l.high),
                    ));
                }
            }
        }
        Ok(())
    }
}
