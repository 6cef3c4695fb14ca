//! The JSON config file (documented field by field in docs/config.md).
//!
//! Parsing is two steps: serde (strict: unknown fields are errors, with the JSON path
//! of the offending field) and then `validate`, which checks what types cannot: address
//! syntax, references between sections, duplicates. Every error names its field.
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod agent;
mod cluster;
mod exception;
mod handoff;
mod mgmt;
pub(crate) mod routing;
mod tcp;
mod web;

pub use agent::{AgentConfig, AgentPort, AgentSwitch, AgentVip};
pub use cluster::{Balance, ClusterConfig, MemberConfig};
pub use exception::ExceptionConfig;
pub use handoff::{HandoffConfig, HandoffTransport};
pub use mgmt::{HealthConfig, MgmtConfig};
pub use routing::{
    BackendConfig, ClientAddress, ClientXff, CookieMatch, HeaderMatch, LardConfig, PoolConfig,
    PrefixRewrite, RuleAction, RuleConfig, RuleMatch, Scheduler, Tunnel, WarmConfig,
    MAX_QUEUE_LENGTH, MAX_RESPONSE_BYTES, MAX_RETRIES, MAX_WARM, MAX_WEIGHT,
};
pub use tcp::TcpConfig;
pub use web::WebConfig;

/// A config error: `field` is a JSON path such as `ports[1].addresses[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() || self.field == "." {
            write!(f, "config: {}", self.message)
        } else {
            write!(f, "config field `{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// An IPv4 address with a prefix length, written `10.0.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn netmask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }
    /// Whether `ip` is on this address's subnet (on-link).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.netmask()) == (u32::from(self.addr) & self.netmask())
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not ADDRESS/PREFIX (e.g. 10.0.0.1/24)"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| format!("`{p}` is not a prefix length"))?;
        if prefix > 32 {
            return Err(format!("prefix length {prefix} is over 32"));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub eal: EalConfig,
    pub lcores: LcoreConfig,
    #[serde(default)]
    pub mempool: MempoolConfig,
    pub ports: Vec<PortConfig>,
    pub vips: Vec<VipConfig>,
    #[serde(default)]
    pub arp: ArpConfig,
    #[serde(default)]
    pub worker: WorkerConfig,
    /// The real servers (`backends[].name` is what pools refer to).
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// Named groups of backends, each with a scheduler.
    #[serde(default)]
    pub pools: Vec<PoolConfig>,
    /// Content rules, in order: the first whose conditions all hold picks the pool.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// The pool for requests no rule matches; required unless a rule matches everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pool: Option<String>,
    /// The switch's TCP limits and timers.
    #[serde(default)]
    pub tcp: TcpConfig,
    /// The JSON management socket.
    #[serde(default)]
    pub mgmt: MgmtConfig,
    /// Active health checks of the backends.
    #[serde(default)]
    pub health: HealthConfig,
    /// The read-only HTTP listener (`/metrics`, the stats page); off unless `listen` is set.
    #[serde(default)]
    pub web: WebConfig,
    /// The handoff agents' beats (VIP mode `handoff`).
    #[serde(default)]
    pub handoff: HandoffConfig,
    /// Announcing the VIPs through the appliance's routing daemon (ECMP clusters).
    #[serde(default, skip_serializing_if = "ClusterConfig::is_default")]
    pub cluster: ClusterConfig,
}

/// EAL arguments. webswitch adds `--lcores`, `--main-lcore`, `--file-prefix`, and one
/// `--vdev`/`-a` per port itself; `args` carries the rest (memory, logging...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EalConfig {
    #[serde(default = "EalConfig::default_args")]
    pub args: Vec<String>,
    #[serde(default = "EalConfig::default_prefix")]
    pub file_prefix: String,
}

impl EalConfig {
    fn default_args() -> Vec<String> {
        [
            "--no-huge",
            "-m",
            "512",
            "--no-telemetry",
            "--log-level",
            "lib.eal:warning",
        ]
        .map(String::from)
        .to_vec()
    }
    fn default_prefix() -> String {
        "webswitch".into()
    }
}

impl Default for EalConfig {
    fn default() -> Self {
        Self {
            args: Self::default_args(),
            file_prefix: Self::default_prefix(),
        }
    }
}

/// Which lcores exist and where they run. Each lcore is pinned to the CPU of the same
/// number unless `cpus` maps it elsewhere (several lcores may share a CPU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LcoreConfig {
    #[serde(default)]
    pub main: u32,
    pub workers: Vec<u32>,
    #[serde(default)]
    pub cpus: BTreeMap<String, u32>,
}

impl LcoreConfig {
    pub fn cpu_of(&self, lcore: u32) -> u32 {
        self.cpus.get(&lcore.to_string()).copied().unwrap_or(lcore)
    }
    /// The EAL `--lcores` value, e.g. `0@0,1@1,2@0`.
    pub fn eal_lcores(&self) -> String {
        std::iter::once(self.main)
            .chain(self.workers.iter().copied())
            .map(|l| format!("{l}@{}", self.cpu_of(l)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MempoolConfig {
    /// Mbufs in the pool shared by all ports (a power of two minus one is best).
    #[serde(default = "MempoolConfig::default_mbufs")]
    pub mbufs: u32,
    /// Per-lcore cache of the pool.
    #[serde(default = "MempoolConfig::default_cache")]
    pub cache: u32,
}

impl MempoolConfig {
    fn default_mbufs() -> u32 {
        16383
    }
    fn default_cache() -> u32 {
        256
    }
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            mbufs: Self::default_mbufs(),
            cache: Self::default_cache(),
        }
    }
}

/// Which side of the switch a port faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortRole {
    Client,
    Backend,
    /// Faces both (one-armed deployment).
    Both,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// A name used by `vips[].port` and in logs and stats.
    pub name: String,
    /// A DPDK device: a vdev with its arguments (`net_af_packet0,iface=eth1,qpairs=2`)
    /// or a PCI address (`0000:03:00.0`).
    pub device: String,
    pub role: PortRole,
    /// The switch's own addresses on this port, first one primary (`10.0.0.1/24`).
    pub addresses: Vec<Cidr>,
    /// Next hop for destinations off the port's subnets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default = "PortConfig::default_desc")]
    pub rx_descriptors: u16,
    #[serde(default = "PortConfig::default_desc")]
    pub tx_descriptors: u16,
    /// Frames that are not the switch's go to the host's kernel through a TAP, and
    /// back (see `ExceptionConfig`). Off when absent: such frames are dropped, counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<ExceptionConfig>,
}

impl PortConfig {
    fn default_desc() -> u16 {
        1024
    }
    /// The name DPDK knows the device by: the part before the first comma.
    pub fn dpdk_name(&self) -> &str {
        self.device.split(',').next().unwrap_or("")
    }
    /// Whether `device` is a PCI address (then passed as `-a`, else as `--vdev`).
    pub fn is_pci(&self) -> bool {
        let n = self.dpdk_name();
        n.contains(':')
            && n.contains('.')
            && n.chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    pub address: Ipv4Addr,
    /// The `ports[].name` the VIP is reached on.
    pub port: String,
    /// TCP ports served on the VIP.
    #[serde(default = "VipConfig::default_tcp_ports")]
    pub tcp_ports: Vec<u16>,
    /// How requests on a keep-alive connection are routed.
    #[serde(default, skip_serializing_if = "VipMode::is_splice")]
    pub mode: VipMode,
    /// Send backends the request target with its path normalised (as the rules saw
    /// it, see `crate::path`) instead of as the client sent it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_normalized_path: bool,
    /// Session persistence on a handoff VIP (paper 002's cookie-name rewriting): the
    /// name of the backends' own session cookie (`PHPSESSID`, `JSESSIONID`...). The
    /// agents tag its name with their backend's id in responses; a request whose
    /// cookies carry a tag of a backend in the pool its rules chose goes to that
    /// backend (`tcpstate::handoff::cookie`). The agents' `vips[]` need the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_cookie: Option<String>,
    /// Pre-allocation at SYN time on a handoff VIP (paper 002): the switch guesses a
    /// backend of the default pool when it answers the SYN and has its agent replay the
    /// handshake at once; the first request goes there if its pool has it, else the
    /// guess is cancelled with a RST.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preallocate: bool,
}

/// Whether only the first request of a connection is routed, or every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VipMode {
    /// The first request routes; the connection is then spliced to that backend for
    /// its life (later requests on it go to the same backend).
    #[default]
    Splice,
    /// Every request routes: after each response, the client connection is spliced
    /// onto a backend connection chosen for its next request.
    Presplice,
    /// The first request routes; the connection is then handed off to the agent in
    /// front of the chosen backend, whose kernel answers the client directly (DWSR's
    /// inline transport, docs/architecture.md "Handoff"). Only the client's packets
    /// cross the switch after that.
    Handoff,
}

impl VipMode {
    fn is_splice(&self) -> bool {
        *self == VipMode::Splice
    }
}

impl VipConfig {
    fn default_tcp_ports() -> Vec<u16> {
        vec![80]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArpConfig {
    /// How long a learned neighbour stays valid.
    #[serde(default = "ArpConfig::default_ttl")]
    pub entry_ttl_ms: u64,
    /// Entries per core; learning past it evicts the oldest.
    #[serde(default = "ArpConfig::default_max")]
    pub max_entries: usize,
    /// Gratuitous ARPs sent for each address at start.
    #[serde(default = "ArpConfig::default_garp")]
    pub gratuitous_at_start: u32,
}

impl ArpConfig {
    fn default_ttl() -> u64 {
        300_000
    }
    fn default_max() -> usize {
        4096
    }
    fn default_garp() -> u32 {
        1
    }
}

impl Default for ArpConfig {
    fn default() -> Self {
        Self {
            entry_ttl_ms: Self::default_ttl(),
            max_entries: Self::default_max(),
            gratuitous_at_start: Self::default_garp(),
        }
    }
}

/// Poll loop tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Longest sleep of an idle worker, in microseconds (the backoff doubles up to it).
    #[serde(default = "WorkerConfig::default_max_sleep")]
    pub idle_max_sleep_us: u64,
    /// Staged tx is flushed at least this often, in microseconds.
    #[serde(default = "WorkerConfig::default_drain")]
    pub tx_drain_us: u64,
    /// For this long after its last work a worker's sleeps stay at most
    /// `idle_recent_sleep_us`, so sparse traffic is not held back by the long sleeps of a
    /// worker that is idle for good (0: always the long ones).
    #[serde(default = "WorkerConfig::default_recent_ms")]
    pub idle_recent_ms: u64,
    #[serde(default = "WorkerConfig::default_recent_sleep")]
    pub idle_recent_sleep_us: u64,
}

impl WorkerConfig {
    fn default_max_sleep() -> u64 {
        2000
    }
    fn default_drain() -> u64 {
        100
    }
    fn default_recent_ms() -> u64 {
        0
    }
    fn default_recent_sleep() -> u64 {
        30
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            idle_max_sleep_us: Self::default_max_sleep(),
            tx_drain_us: Self::default_drain(),
            idle_recent_ms: Self::default_recent_ms(),
            idle_recent_sleep_us: Self::default_recent_sleep(),
        }
    }
}

impl Config {
    /// Parses and validates a JSON config.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            // serde_json appends " at line L column C"; keep it, it helps in big files.
            ConfigError::new(field, inner.to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Self::from_json(&text)
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    /// Checks what serde cannot: references, duplicates, ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.lcores;
        if l.workers.is_empty() {
            return Err(ConfigError::new(
                "lcores.workers",
                "at least one worker lcore is needed",
            ));
        }
        let mut seen = HashSet::from([l.main]);
        for (i, w) in l.workers.iter().enumerate() {
            if !seen.insert(*w) {
                return Err(ConfigError::new(
                    format!("lcores.workers[{i}]"),
                    format!("lcore {w} is listed twice (or is the main lcore)"),
                ));
            }
            if *w >= 128 {
                return Err(ConfigError::new(
                    format!("lcores.workers[{i}]"),
                    format!("lcore {w} is out of range (0-127)"),
                ));
            }
        }
        for key in l.cpus.keys() {
            let ok = key
                .parse::<u32>()
                .map(|k| seen.contains(&k))
                .unwrap_or(false);
            if !ok {
                return Err(ConfigError::new(
                    format!("lcores.cpus.{key}"),
                    "not one of the configured lcores",
                ));
            }
        }
        if self.mempool.mbufs < 1024 {
            return Err(ConfigError::new(
                "mempool.mbufs",
                "at least 1024 mbufs are needed",
            ));
        }
        if self.ports.is_empty() {
            return Err(ConfigError::new("ports", "at least one port is needed"));
        }
        let mut names = HashSet::new();
        let mut devices = HashSet::new();
        let mut own = HashSet::new();
        let mut taps = HashSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            if p.name.is_empty() || !names.insert(p.name.as_str()) {
                return Err(ConfigError::new(
                    format!("ports[{i}].name"),
                    format!("`{}` is empty or used twice", p.name),
                ));
            }
            if p.dpdk_name().is_empty() || !devices.insert(p.dpdk_name()) {
                return Err(ConfigError::new(
                    format!("ports[{i}].device"),
                    format!("`{}` is empty or used twice", p.device),
                ));
            }
            if p.addresses.is_empty() {
                return Err(ConfigError::new(
                    format!("ports[{i}].addresses"),
                    "a port needs at least one address",
                ));
            }
            for (j, a) in p.addresses.iter().enumerate() {
                if !own.insert(a.addr) {
                    return Err(ConfigError::new(
                        format!("ports[{i}].addresses[{j}]"),
                        format!("{} is configured twice", a.addr),
                    ));
                }
                if a.addr.is_unspecified()
                    || a.addr.is_broadcast()
                    || a.addr.is_multicast()
                    || a.prefix == 0
                    || a.prefix > 30
                {
                    return Err(ConfigError::new(
                        format!("ports[{i}].addresses[{j}]"),
                        format!("{a} is not a usable unicast address/prefix (prefix 1-30)"),
                    ));
                }
            }
            if let Some(gw) = p.gateway {
                if !p.addresses.iter().any(|a| a.contains(gw)) {
                    return Err(ConfigError::new(
                        format!("ports[{i}].gateway"),
                        format!("{gw} is not on any subnet of the port"),
                    ));
                }
            }
            if !p.rx_descriptors.is_power_of_two() || !(64..=16384).contains(&p.rx_descriptors) {
                return Err(ConfigError::new(
                    format!("ports[{i}].rx_descriptors"),
                    "must be a power of two in 64..=16384",
                ));
            }
            if !p.tx_descriptors.is_power_of_two() || !(64..=16384).contains(&p.tx_descriptors) {
                return Err(ConfigError::new(
                    format!("ports[{i}].tx_descriptors"),
                    "must be a power of two in 64..=16384",
                ));
            }
            if let Some(x) = &p.exception {
                x.validate(i)?;
                if !taps.insert(x.tap.as_str()) {
                    return Err(ConfigError::new(
                        format!("ports[{i}].exception.tap"),
                        format!("`{}` is the TAP of another port too", x.tap),
                    ));
                }
            }
        }
        if self.vips.is_empty() {
            return Err(ConfigError::new("vips", "at least one VIP is needed"));
        }
        let mut vips = HashSet::new();
        for (i, v) in self.vips.iter().enumerate() {
            let Some(port) = self.ports.iter().find(|p| p.name == v.port) else {
                return Err(ConfigError::new(
                    format!("vips[{i}].port"),
                    format!("no port is named `{}`", v.port),
                ));
            };
            if port.role == PortRole::Backend {
                return Err(ConfigError::new(
                    format!("vips[{i}].port"),
                    format!(
                        "port `{}` faces backends; a VIP needs a client-facing port",
                        v.port
                    ),
                ));
            }
            if !vips.insert(v.address) || own.contains(&v.address) {
                return Err(ConfigError::new(
                    format!("vips[{i}].address"),
                    format!("{} is already used by another VIP or a port", v.address),
                ));
            }
            if v.address.is_unspecified() || v.address.is_broadcast() || v.address.is_multicast() {
                return Err(ConfigError::new(
                    format!("vips[{i}].address"),
                    format!("{} is not a unicast address", v.address),
                ));
            }
            if v.tcp_ports.is_empty() || v.tcp_ports.contains(&0) {
                return Err(ConfigError::new(
                    format!("vips[{i}].tcp_ports"),
                    "list one or more TCP ports (1-65535)",
                ));
            }
            if v.preallocate && v.mode != VipMode::Handoff {
                return Err(ConfigError::new(
                    format!("vips[{i}].preallocate"),
                    "only a handoff VIP pre-allocates (`mode: \"handoff\"`)",
                ));
            }
            if let Some(c) = &v.session_cookie {
                let field = format!("vips[{i}].session_cookie");
                check_session_cookie(&field, c)?;
                if v.mode != VipMode::Handoff {
                    return Err(ConfigError::new(
                        field,
                        "only a handoff VIP's agents rewrite cookie names (`mode: \"handoff\"`)",
                    ));
                }
            }
        }
        if !self.ports.iter().any(|p| p.role != PortRole::Client) {
            return Err(ConfigError::new(
                "ports",
                "no port faces the backends (role `backend` or `both`)",
            ));
        }
        if self.arp.max_entries == 0 || self.arp.max_entries > 1 << 20 {
            return Err(ConfigError::new("arp.max_entries", "must be 1..=1048576"));
        }
        if self.arp.entry_ttl_ms < 1000 {
            return Err(ConfigError::new(
                "arp.entry_ttl_ms",
                "must be at least 1000",
            ));
        }
        if self.worker.idle_max_sleep_us > 100_000 {
            return Err(ConfigError::new(
                "worker.idle_max_sleep_us",
                "must be at most 100000",
            ));
        }
        if self.worker.idle_recent_ms > 60_000 {
            return Err(ConfigError::new(
                "worker.idle_recent_ms",
                "must be 0..=60000",
            ));
        }
        if self.worker.idle_recent_sleep_us == 0 || self.worker.idle_recent_sleep_us > 1000 {
            return Err(ConfigError::new(
                "worker.idle_recent_sleep_us",
                "must be 1..=1000",
            ));
        }
        if self.worker.tx_drain_us == 0 || self.worker.tx_drain_us > 10_000 {
            return Err(ConfigError::new("worker.tx_drain_us", "must be 1..=10000"));
        }
        if self.eal.file_prefix.is_empty()
            || !self
                .eal
                .file_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::new(
                "eal.file_prefix",
                "use letters, digits, - and _ only",
            ));
        }
        for (i, a) in self.eal.args.iter().enumerate() {
            let managed = [
                "-l",
                "--lcores",
                "--main-lcore",
                "--file-prefix",
                "--vdev",
                "-a",
                "-c",
            ];
            if managed.contains(&a.as_str()) {
                return Err(ConfigError::new(
                    format!("eal.args[{i}]"),
                    format!(
                        "`{a}` is set by webswitch from lcores/ports/eal.file_prefix; remove it"
                    ),
                ));
            }
        }
        self.validate_tcp()?;
        self.health.validate()?;
        self.web.validate()?;
        self.handoff.validate()?;
        self.cluster.validate()?;
        self.cluster
            .validate_members(&self.ports, &self.vips, self.handoff.agent_port)?;
        self.validate_backends_and_pools()?;
        // The rules and `default_pool` are checked by compiling them, exactly as the
        // workers will.
        crate::matcher::Router::new(self)?;
        Ok(())
    }

    /// Whether the VIP at `address` forwards normalised paths
    /// (`vips[].forward_normalized_path`).
    pub fn forwards_normalized_path(&self, address: Ipv4Addr) -> bool {
        self.vips
            .iter()
            .any(|v| v.forward_normalized_path && v.address == address)
    }

    /// Whether the VIP at `address` pre-allocates at SYN time (`vips[].preallocate`).
    pub fn preallocates(&self, address: Ipv4Addr) -> bool {
        self.vips
            .iter()
            .any(|v| v.preallocate && v.address == address)
    }

    /// The session cookie of the VIP at `address` (`vips[].session_cookie`), if any.
    pub fn session_cookie(&self, address: Ipv4Addr) -> Option<&str> {
        self.vips
            .iter()
            .find(|v| v.address == address)
            .and_then(|v| v.session_cookie.as_deref())
    }

    /// Whether the VIP at `address` hands its connections off (`vips[].mode`).
    pub fn hands_off(&self, address: Ipv4Addr) -> bool {
        self.vips
            .iter()
            .any(|v| v.mode == VipMode::Handoff && v.address == address)
    }

    /// The index of the pool named `name` (a [`crate::PoolId`]).
    pub fn pool_index(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|p| p.name == name)
    }

    /// The index of the backend named `name` (a [`crate::BackendId`]).
    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }
}

#[cfg(test)]
mod tests;

/// A session cookie's name as cookie-name rewriting needs it: a token (RFC 6265 4.1.1)
/// of at least [`SESSION_COOKIE_MIN`] characters, so the tag fits in it.
pub(crate) fn check_session_cookie(field: &str, name: &str) -> Result<(), ConfigError> {
    if !routing::is_token(name) || !(SESSION_COOKIE_MIN..=64).contains(&name.len()) {
        return Err(ConfigError::new(
            field,
            format!(
                "`{name}` must be a cookie name (token characters) of {SESSION_COOKIE_MIN} to 64: \
                 its first {SESSION_COOKIE_MIN} carry the backend's tag"
            ),
        ));
    }
    Ok(())
}

/// Characters of a session cookie's name the agents' tag replaces
/// (`tcpstate::handoff::cookie::TAG_LEN`, which the dataplane checks is the same).
pub const SESSION_COOKIE_MIN: usize = 8;
