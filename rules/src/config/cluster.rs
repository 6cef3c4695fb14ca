//! The instance's part in a cluster of webswitches behind ECMP (`cluster`): how it tells
//! the routing daemon on its appliance to announce the VIPs, or to withdraw them.
use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use super::{ConfigError, PortConfig, PortRole, VipConfig};

/// Most members a cluster lists (as `tcpstate::cluster::MAX_MEMBERS`).
pub const MAX_MEMBERS: usize = 32;

/// One instance of the cluster: every instance lists the same members in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Its name: what the connection-ownership table is built from, so it must be the
    /// same in every instance's config.
    pub name: String,
    /// Its own address on the client-facing port (one of that instance's
    /// `ports[].addresses`): beats and handed-over segments go there.
    pub address: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// A command (program and arguments, no shell) run when the instance starts
    /// serving: some backend is ready and not down by its health checks, it has heard
    /// from the other members (`members`), and no operator withdrew it
    /// (`cluster.withdraw`). For BIRD:
    /// `["birdc", "-s", "/run/bird/bird.ctl", "enable", "vip"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announce: Vec<String>,
    /// The command run when it stops serving (`... "disable", "vip"]`). Its routing
    /// daemon then withdraws the VIPs and the routers stop sending new flows here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withdraw: Vec<String>,
    /// The instances that share the VIPs (this one included, found by its address).
    /// Empty: no membership, every instance handles what reaches it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberConfig>,
    /// The UDP port of the members' beats.
    #[serde(default = "ClusterConfig::default_port")]
    pub port: u16,
    /// How often each member sends every other one a beat.
    #[serde(default = "ClusterConfig::default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A member not heard from for this long is taken as gone.
    #[serde(default = "ClusterConfig::default_dead_after_ms")]
    pub dead_after_ms: u64,
    /// This instance is a front (paper 001's stateless front tier, for sites without ECMP
    /// routers): it owns no connection and hands every segment of a VIP flow to the
    /// member that owns it, which answers the client directly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub front: bool,
    /// Where spliced connections' state is shared. Absent: pushed to every member as each
    /// round is spliced (`tcpstate::cluster::sync`). With a store: written there, and read
    /// from it by a member that receives a segment of a connection it holds no state for
    /// (the Yoda L7 balancer's design).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_store: Option<StateStore>,
    /// How the members share new connections (who owns their setup). Every member builds
    /// the same table from the members' beats, whatever its own setting; this says only
    /// whether this instance reports its workload factor in them.
    #[serde(default, skip_serializing_if = "Balance::is_equal")]
    pub balance: Balance,
}

/// `cluster.balance`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Equal shares (a member that reports no workload factor counts as fully available).
    #[default]
    Equal,
    /// Shares in proportion to each member's available capacity (paper 001's workload
    /// factor: the busiest worker's idle share and the fullest core's free flow entries,
    /// in 16 steps, held 3 s before they change).
    Workload,
}

impl Balance {
    fn is_equal(&self) -> bool {
        *self == Balance::Equal
    }
}

/// A shared store of splice records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateStore {
    /// A memcached server every member reaches through its host's kernel (the exception
    /// path, or a management network), text protocol: `"10.0.0.5:11211"`.
    pub memcached: SocketAddrV4,
    /// Seconds a record lives in the store unless written again (each round of a
    /// keep-alive connection writes it again).
    #[serde(default = "StateStore::default_ttl_s")]
    pub ttl_s: u32,
}

impl StateStore {
    fn default_ttl_s() -> u32 {
        3600
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            announce: Vec::new(),
            withdraw: Vec::new(),
            members: Vec::new(),
            port: Self::default_port(),
            heartbeat_ms: Self::default_heartbeat_ms(),
            dead_after_ms: Self::default_dead_after_ms(),
            front: false,
            state_store: None,
            balance: Balance::Equal,
        }
    }
}

impl ClusterConfig {
    fn default_port() -> u16 {
        7947
    }
    fn default_heartbeat_ms() -> u64 {
        100
    }
    fn default_dead_after_ms() -> u64 {
        500
    }

    /// This instance among `members`: (member index, index of the port that has its
    /// address). None without members.
    pub fn me(&self, ports: &[PortConfig]) -> Option<(usize, usize)> {
        self.members.iter().enumerate().find_map(|(m, member)| {
            ports
                .iter()
                .position(|p| p.addresses.iter().any(|a| a.addr == member.address))
                .map(|p| (m, p))
        })
    }

    /// The membership checks that need the ports and VIPs (after theirs passed).
    pub(super) fn validate_members(
        &self,
        ports: &[PortConfig],
        vips: &[VipConfig],
        agent_port: u16,
    ) -> Result<(), ConfigError> {
        if let Some(store) = &self.state_store {
            if self.members.is_empty() {
                return Err(ConfigError::new(
                    "cluster.state_store",
                    "a state store is for the members' connections: list the members",
                ));
            }
            if store.memcached.port() == 0 || store.memcached.ip().is_unspecified() {
                return Err(ConfigError::new(
                    "cluster.state_store.memcached",
                    "an address and port to connect to",
                ));
            }
            // memcached reads a larger relative time as an absolute one (a past date).
            if !(1..=2_592_000).contains(&store.ttl_s) {
                return Err(ConfigError::new(
                    "cluster.state_store.ttl_s",
                    "must be 1..=2592000 (30 days, memcached's longest relative time)",
                ));
            }
        }
        if self.members.is_empty() {
            if self.front {
                return Err(ConfigError::new(
                    "cluster.front",
                    "a front needs members to hand connections to",
                ));
            }
            return Ok(());
        }
        if self.front && self.members.len() < 2 {
            return Err(ConfigError::new(
                "cluster.front",
                "a front needs at least one other member to own its connections",
            ));
        }
        if self.members.len() > MAX_MEMBERS {
            return Err(ConfigError::new(
                "cluster.members",
                format!("at most {MAX_MEMBERS} members"),
            ));
        }
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for (i, m) in self.members.iter().enumerate() {
            let ok = !m.name.is_empty()
                && m.name.len() <= 32
                && m.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok || !names.insert(m.name.as_str()) {
                return Err(ConfigError::new(
                    format!("cluster.members[{i}].name"),
                    format!(
                        "`{}` is empty, too long, not [A-Za-z0-9._-] or used twice",
                        m.name
                    ),
                ));
            }
            if !addrs.insert(m.address) {
                return Err(ConfigError::new(
                    format!("cluster.members[{i}].address"),
                    format!("{} is listed twice", m.address),
                ));
            }
        }
        let mine: Vec<usize> = (0..self.members.len())
            .filter(|&m| {
                ports.iter().any(|p| {
                    p.addresses
                        .iter()
                        .any(|a| a.addr == self.members[m].address)
                })
            })
            .collect();
        if mine.len() != 1 {
            return Err(ConfigError::new(
                "cluster.members",
                format!(
                    "exactly one member must have one of this instance's own addresses (found {})",
                    mine.len()
                ),
            ));
        }
        let (me, p) = self.me(ports).expect("one member is ours");
        let port = &ports[p];
        if port.role == PortRole::Backend {
            return Err(ConfigError::new(
                format!("cluster.members[{me}].address"),
                format!(
                    "port `{}` faces backends; members meet on the client-facing port",
                    port.name
                ),
            ));
        }
        for (i, m) in self.members.iter().enumerate() {
            if i != me && !port.addresses.iter().any(|a| a.contains(m.address)) {
                return Err(ConfigError::new(
                    format!("cluster.members[{i}].address"),
                    format!("{} is not on a subnet of port `{}`", m.address, port.name),
                ));
            }
        }
        if let Some(i) = vips.iter().position(|v| v.port != port.name) {
            return Err(ConfigError::new(
                format!("vips[{i}].port"),
                format!(
                    "in a cluster every VIP is on the members' port `{}`",
                    port.name
                ),
            ));
        }
        if self.port == 0 || self.port == agent_port {
            return Err(ConfigError::new(
                "cluster.port",
                "must not be 0 or handoff.agent_port",
            ));
        }
        if !(10..=10_000).contains(&self.heartbeat_ms) {
            return Err(ConfigError::new(
                "cluster.heartbeat_ms",
                "must be 10..=10000",
            ));
        }
        if self.dead_after_ms < 2 * self.heartbeat_ms || self.dead_after_ms > 600_000 {
            return Err(ConfigError::new(
                "cluster.dead_after_ms",
                "must be at least twice heartbeat_ms and at most 600000",
            ));
        }
        Ok(())
    }

    pub(super) fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether announce/withdraw commands are configured.
    pub fn has_hooks(&self) -> bool {
        !self.announce.is_empty()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (field, cmd) in [("announce", &self.announce), ("withdraw", &self.withdraw)] {
            if cmd.first().is_some_and(|p| p.trim().is_empty()) {
                return Err(ConfigError::new(
                    format!("cluster.{field}[0]"),
                    "the program to run must not be empty",
                ));
            }
        }
        if self.announce.is_empty() != self.withdraw.is_empty() {
            let missing = if self.announce.is_empty() {
                "announce"
            } else {
                "withdraw"
            };
            return Err(ConfigError::new(
                format!("cluster.{missing}"),
                "announce and withdraw go together: a VIP announced must be withdrawable",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_come_in_pairs_and_name_a_program() {
        let c = |a: &[&str], w: &[&str]| ClusterConfig {
            announce: a.iter().map(|s| s.to_string()).collect(),
            withdraw: w.iter().map(|s| s.to_string()).collect(),
            ..ClusterConfig::default()
        };
        assert!(c(&[], &[]).validate().is_ok());
        assert!(c(&["birdc", "enable", "vip"], &["birdc", "disable", "vip"])
            .validate()
            .is_ok());
        assert_eq!(
            c(&["birdc"], &[]).validate().unwrap_err().field,
            "cluster.withdraw"
        );
        assert_eq!(
            c(&[], &["birdc"]).validate().unwrap_err().field,
            "cluster.announce"
        );
        assert_eq!(
            c(&[" "], &["x"]).validate().unwrap_err().field,
            "cluster.announce[0]"
        );
    }
}
