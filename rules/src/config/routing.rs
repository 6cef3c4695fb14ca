//! The routing part of the config: `backends`, `pools`, `rules` and `default_pool`
//! (documented in docs/config.md). The rules themselves are checked by compiling them
//! ([`crate::matcher::Router::new`]), so a config that validates is one that routes.
use std::collections::{BTreeMap, HashSet};
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
    /// Most connections open to this backend at once, over all worker cores (HAProxy's
    /// `maxconn`; `max_conns` is accepted as another name). Requests beyond it wait in
    /// their pool's queue. None: no limit.
    #[serde(default, alias = "max_conns", skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// How a handoff VIP reaches this backend's agent when it is routed (not on a
    /// backend port's subnet): `"ipip"` wraps what the switch sends it in IPv4-in-IPv4
    /// (RFC 2003), `"gre"` in GRE (RFC 2784); the agent takes either off in userspace.
    /// None: the same segment, by MAC rewrite. Splice and presplice connections ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
    /// The local node (papers 003 and 004): this backend is the switch host's own kernel,
    /// at an address it holds on the exception TAP of the backend-facing port whose
    /// subnet has `address`; the switch reaches it through that TAP, not the wire.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
}

/// An encapsulation toward a handoff agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tunnel {
    /// IPv4 in IPv4 (RFC 2003): 20 bytes per packet.
    Ipip,
    /// GRE (RFC 2784), no checksum, key or sequence number: 24 bytes per packet.
    Gre,
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
    /// thresholds move it (Pai et al., reference \[4\] of paper 003).
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
    /// How the backend learns the client's address.
    #[serde(default, skip_serializing_if = "ClientAddress::is_none")]
    pub client_address: ClientAddress,
    /// With `client_address: "x-forwarded-for"`: what happens to an `X-Forwarded-For`
    /// the client sent itself.
    #[serde(default, skip_serializing_if = "ClientXff::is_remove")]
    pub client_xff: ClientXff,
    /// Other backends of the pool tried after a failed connect or a reset before any
    /// response byte. Default: `tcp.connect_attempts` − 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Requests that may wait for a backend under its `max_connections` (over all
    /// cores); past it the answer is 503 at once.
    #[serde(default = "PoolConfig::default_queue_length")]
    pub queue_length: u32,
    /// How long a request may wait in the queue before it is answered 503.
    #[serde(default = "PoolConfig::default_queue_timeout_ms")]
    pub queue_timeout_ms: u64,
    /// Warm backend connections: opened ahead of time to each member, per worker core,
    /// so requests are spliced onto them without a backend handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmConfig>,
}

/// A pool's warm connections, per backend and worker core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmConfig {
    /// Established, unused connections kept ready (replenished in the background).
    pub min_idle: u32,
    /// Most unused connections kept (a connection given back beyond it is closed).
    #[serde(default = "WarmConfig::default_max_idle")]
    pub max_idle: u32,
}

impl WarmConfig {
    fn default_max_idle() -> u32 {
        64
    }
}

/// Most warm connections per backend and core.
pub const MAX_WARM: u32 = 1024;

/// Most requests one pool may queue.
pub const MAX_QUEUE_LENGTH: u32 = 65536;
/// Most retries a pool may configure.
pub const MAX_RETRIES: u32 = 16;

/// How a pool passes the client's address to its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAddress {
    /// Not at all: the backend sees the switch's address.
    #[default]
    None,
    /// `X-Forwarded-For: <client>` and `X-Forwarded-Proto: http` inserted into the
    /// request head.
    XForwardedFor,
    /// A PROXY protocol version 1 (text) header first on the backend connection.
    ProxyV1,
    /// A PROXY protocol version 2 (binary) header first on the backend connection.
    ProxyV2,
}

impl ClientAddress {
    fn is_none(&self) -> bool {
        *self == ClientAddress::None
    }
}

/// What to do with a client-supplied `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientXff {
    /// Removed, so a client cannot make the backend believe another address.
    #[default]
    Remove,
    /// Kept, with the client's address appended (for a switch behind trusted proxies).
    Append,
}

impl ClientXff {
    fn is_remove(&self) -> bool {
        *self == ClientXff::Remove
    }
}

impl PoolConfig {
    fn default_queue_length() -> u32 {
        256
    }
    fn default_queue_timeout_ms() -> u64 {
        5000
    }
    /// A pool with these backends and every other field at its default.
    pub fn with_backends(name: impl Into<String>, backends: Vec<String>) -> PoolConfig {
        PoolConfig {
            name: name.into(),
            backends,
            scheduler: Scheduler::default(),
            lard: None,
            client_address: ClientAddress::None,
            client_xff: ClientXff::Remove,
            retries: None,
            queue_length: Self::default_queue_length(),
            queue_timeout_ms: Self::default_queue_timeout_ms(),
            warm: None,
        }
    }
}

impl PoolConfig {
    /// The LARD thresholds in force (the defaults when `lard` is absent).
    pub fn lard_thresholds(&self) -> LardConfig {
        self.lard.unwrap_or_default()
    }
}

/// One content rule: when every condition of `match` holds, the request goes to `pool`,
/// or the switch answers it itself as `action` says (exactly one of the two).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "match", default)]
    pub matches: RuleMatch,
    /// A `pools[].name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RuleAction>,
}

impl RuleConfig {
    /// Whether the rule sends its requests to the pool named `name`.
    pub fn uses_pool(&self, name: &str) -> bool {
        self.pool.as_deref() == Some(name)
    }
}

/// An answer the switch gives itself; no backend sees the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum RuleAction {
    /// Refuse: `status` (default 403) with a short text body.
    Deny {
        #[serde(default = "RuleAction::default_deny_status")]
        status: u16,
    },
    /// Redirect to `location`, a template: `{host}` (the request's Host, as sent) and
    /// `{path}` (path and query, after `replace_prefix`) are replaced.
    Redirect {
        #[serde(default = "RuleAction::default_redirect_status")]
        status: u16,
        location: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replace_prefix: Option<PrefixRewrite>,
    },
    /// A fixed response from the config (a maintenance page...).
    Respond {
        #[serde(default = "RuleAction::default_respond_status")]
        status: u16,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        #[serde(default = "RuleAction::default_content_type")]
        content_type: String,
        #[serde(default)]
        body: String,
    },
}

/// The start of the path `from` becomes `to` (in a redirect's `{path}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixRewrite {
    pub from: String,
    pub to: String,
}

/// Largest response (head and body) a `respond` action may configure.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024;

impl RuleAction {
    fn default_deny_status() -> u16 {
        403
    }
    fn default_redirect_status() -> u16 {
        302
    }
    fn default_respond_status() -> u16 {
        200
    }
    fn default_content_type() -> String {
        "text/plain".into()
    }

    /// Checks what serde cannot; `field` is the action's JSON path.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        match self {
            RuleAction::Deny { status } => {
                if !(400..=599).contains(status) {
                    return Err(ConfigError::new(
                        format!("{field}.deny.status"),
                        "must be an error status, 400-599",
                    ));
                }
            }
            RuleAction::Redirect {
                status,
                location,
                replace_prefix,
            } => {
                if ![301, 302, 303, 307, 308].contains(status) {
                    return Err(ConfigError::new(
                        format!("{field}.redirect.status"),
                        "must be 301, 302, 303, 307 or 308",
                    ));
                }
                if location.is_empty() || !is_field_value(location) {
                    return Err(ConfigError::new(
                        format!("{field}.redirect.location"),
                        "must be a non-empty header value (no control characters)",
                    ));
                }
                let mut rest = location.as_str();
                while let Some(open) = rest.find('{') {
                    let close = rest[open..].find('}').map(|c| open + c).ok_or_else(|| {
                        ConfigError::new(
                            format!("{field}.redirect.location"),
                            "a `{` without its `}`",
                        )
                    })?;
                    let var = &rest[open + 1..close];
                    if var != "host" && var != "path" {
                        return Err(ConfigError::new(
                            format!("{field}.redirect.location"),
                            format!("unknown placeholder `{{{var}}}` (known: {{host}}, {{path}})"),
                        ));
                    }
                    rest = &rest[close + 1..];
                }
                if let Some(p) = replace_prefix {
                    if !p.from.starts_with('/') || !p.to.starts_with('/') || !is_field_value(&p.to)
                    {
                        return Err(ConfigError::new(
                            format!("{field}.redirect.replace_prefix"),
                            "`from` and `to` must be paths starting with `/`",
                        ));
                    }
                }
            }
            RuleAction::Respond {
                status,
                headers,
                content_type,
                body,
            } => {
                if !(200..=599).contains(status) || [204, 304].contains(status) {
                    return Err(ConfigError::new(
                        format!("{field}.respond.status"),
                        "must be 200-599 (not 204 or 304: the response has a body)",
                    ));
                }
                for (name, value) in headers {
                    let reserved = [
                        "content-length",
                        "content-type",
                        "connection",
                        "transfer-encoding",
                    ];
                    if !is_token(name) || reserved.contains(&name.to_ascii_lowercase().as_str()) {
                        return Err(ConfigError::new(
                            format!("{field}.respond.headers.{name}"),
                            "not a header name, or one the switch sets itself \
                             (Content-Length, Content-Type, Connection, Transfer-Encoding)",
                        ));
                    }
                    if !is_field_value(value) {
                        return Err(ConfigError::new(
                            format!("{field}.respond.headers.{name}"),
                            "the value has control characters",
                        ));
                    }
                }
                if !is_field_value(content_type) || content_type.is_empty() {
                    return Err(ConfigError::new(
                        format!("{field}.respond.content_type"),
                        "must be a non-empty header value",
                    ));
                }
                let size = body.len()
                    + headers
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 4)
                        .sum::<usize>();
                if size + 256 > MAX_RESPONSE_BYTES {
                    return Err(ConfigError::new(
                        format!("{field}.respond.body"),
                        format!("the response must fit in {MAX_RESPONSE_BYTES} bytes"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether `s` can be an HTTP field value as written: visible ASCII, spaces and tabs.
pub(crate) fn is_field_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
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
            if b.local {
                let tap_port = backend_ports
                    .iter()
                    .find(|p| p.addresses.iter().any(|c| c.contains(a)));
                let why = match tap_port {
                    None => Some("is on no subnet of a backend-facing port"),
                    Some(p) if p.exception.is_none() => {
                        Some("is on a backend-facing port without an `exception` TAP")
                    }
                    Some(_) if b.tunnel.is_some() => Some("has a `tunnel`"),
                    Some(_) => None,
                };
                if let Some(why) = why {
                    return Err(ConfigError::new(
                        format!("backends[{i}].local"),
                        format!(
                            "a local backend is reached through its port's exception TAP, \
                             and {a} {why}"
                        ),
                    ));
                }
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
            if p.client_xff != ClientXff::Remove && p.client_address != ClientAddress::XForwardedFor
            {
                return Err(ConfigError::new(
                    format!("pools[{i}].client_xff"),
                    "only used with `client_address: \"x-forwarded-for\"`; remove it",
                ));
            }
            if let Some(w) = p.warm {
                if matches!(
                    p.client_address,
                    ClientAddress::ProxyV1 | ClientAddress::ProxyV2
                ) {
                    return Err(ConfigError::new(
                        format!("pools[{i}].warm"),
                        format!(
                            "a warm connection is opened before its client is known, so it \
                             cannot start with a PROXY header: remove `pools[{i}].warm` or \
                             set `pools[{i}].client_address` to \"x-forwarded-for\" or \"none\""
                        ),
                    ));
                }
                if w.max_idle > MAX_WARM || w.min_idle > w.max_idle {
                    return Err(ConfigError::new(
                        format!("pools[{i}].warm"),
                        format!("need min_idle <= max_idle <= {MAX_WARM}"),
                    ));
                }
            }
            if p.retries.is_some_and(|r| r > MAX_RETRIES) {
                return Err(ConfigError::new(
                    format!("pools[{i}].retries"),
                    format!("must be 0..={MAX_RETRIES}"),
                ));
            }
            if p.queue_length > MAX_QUEUE_LENGTH {
                return Err(ConfigError::new(
                    format!("pools[{i}].queue_length"),
                    format!("must be 0..={MAX_QUEUE_LENGTH} (0: no queue, 503 at once)"),
                ));
            }
            if !(1..=3_600_000).contains(&p.queue_timeout_ms) {
                return Err(ConfigError::new(
                    format!("pools[{i}].queue_timeout_ms"),
                    "must be 1..=3600000",
                ));
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
