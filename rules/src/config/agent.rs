//! The handoff agent's config (`"role": "agent"`): the same binary, run on a backend host
//! in front of its unmodified kernel. It owns the host's NIC (`nic`), reaches the kernel
//! through a TAP (`kernel`), and takes over the connections the switch hands off to the
//! VIPs listed here; everything else passes between NIC and kernel untouched. With a
//! `switch` block it registers with the switch and sends it heartbeats (`crate::beat`).
use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, EalConfig, LcoreConfig, MempoolConfig};

/// The whole agent config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Must be `"agent"` (a switch config has no `role`).
    pub role: String,
    #[serde(default)]
    pub eal: EalConfig,
    /// One worker lcore: it polls both ports.
    pub lcores: LcoreConfig,
    #[serde(default)]
    pub mempool: MempoolConfig,
    /// The host's NIC (af_packet or af_xdp on the testbed, a PCI address on an appliance).
    pub nic: AgentPort,
    /// The TAP toward the host's kernel (`net_tap0,iface=NAME`).
    pub kernel: AgentPort,
    /// The VIPs whose handed-off connections this agent takes (the kernel holds them on
    /// `lo` and must not answer ARP for them).
    pub vips: Vec<AgentVip>,
    /// Handed-off connections at most; a handoff beyond it is dropped and counted (the
    /// switch sends the head again, the client retransmits).
    #[serde(default = "AgentConfig::default_max_flows")]
    pub max_flows: usize,
    /// Longest sleep of the idle poll loop.
    #[serde(default = "AgentConfig::default_idle_max_sleep_us")]
    pub idle_max_sleep_us: u64,
    /// The UDP port, on the host's addresses, where the switch's handoff requests arrive
    /// (its `handoff.transport: "control"`); with a `switch` block only its address is
    /// taken. Datagrams to this port never reach the host's kernel.
    #[serde(default = "super::handoff::HandoffConfig::default_control_port")]
    pub control_port: u16,
    /// Where to register and send heartbeats; none: the agent stays silent (and a switch
    /// that waits for agents hands it nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<AgentSwitch>,
}

/// The switch the agent reports to: a register at start, a heartbeat every
/// `heartbeat_ms` with the host's load, a leave on a clean stop (UDP, `crate::beat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSwitch {
    /// The switch's own address on the backends' side (its `ports[].addresses`).
    pub address: Ipv4Addr,
    /// The switch's `handoff.agent_port`.
    #[serde(default = "AgentSwitch::default_port")]
    pub port: u16,
    /// Connections the host takes: the load reported is live flows / capacity.
    #[serde(default = "AgentSwitch::default_capacity")]
    pub capacity: u32,
    #[serde(default = "AgentSwitch::default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// The agent's name in the switch's `agents.list` (the switch knows it by its address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl AgentSwitch {
    fn default_port() -> u16 {
        crate::beat::DEFAULT_PORT
    }
    fn default_capacity() -> u32 {
        1000
    }
    fn default_heartbeat_ms() -> u64 {
        500
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let a = self.address;
        if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
            return Err(ConfigError::new(
                "switch.address",
                format!("{a} is not the switch's unicast address"),
            ));
        }
        if self.port == 0 {
            return Err(ConfigError::new("switch.port", "must not be 0"));
        }
        if !(1..=crate::beat::MAX_CAPACITY).contains(&self.capacity) {
            return Err(ConfigError::new(
                "switch.capacity",
                format!("must be 1..={}", crate::beat::MAX_CAPACITY),
            ));
        }
        if !(50..=10_000).contains(&self.heartbeat_ms) {
            return Err(ConfigError::new(
                "switch.heartbeat_ms",
                "must be 50..=10000",
            ));
        }
        if let Some(n) = &self.name {
            if !crate::beat::valid_name(n) {
                return Err(ConfigError::new(
                    "switch.name",
                    format!(
                        "1 to {} letters, digits, `.`, `_` or `-`",
                        crate::beat::MAX_NAME_LEN
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentPort {
    /// A DPDK device argument (`--vdev` for virtual devices, `-a` for a PCI address).
    pub device: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentVip {
    pub address: Ipv4Addr,
    #[serde(default = "AgentVip::default_tcp_ports")]
    pub tcp_ports: Vec<u16>,
    /// The backend's session cookie, as the switch's VIP names it (`session_cookie`):
    /// its name is tagged with the connection's backend id in responses and restored
    /// in requests. None: responses and requests pass unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_cookie: Option<String>,
}

impl AgentVip {
    fn default_tcp_ports() -> Vec<u16> {
        vec![80]
    }
}

impl AgentConfig {
    fn default_max_flows() -> usize {
        65536
    }
    fn default_idle_max_sleep_us() -> u64 {
        2000
    }

    /// Whether a JSON config is an agent's (it says `"role": "agent"`).
    pub fn is_agent_json(text: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("role").and_then(|r| r.as_str()).map(|r| r == "agent"))
            .unwrap_or(false)
    }

    pub fn from_json(text: &str) -> Result<AgentConfig, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let config: AgentConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            ConfigError::new(field, e.into_inner().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &std::path::Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Self::from_json(&text)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.role != "agent" {
            return Err(ConfigError::new("role", "must be \"agent\""));
        }
        if self.lcores.workers.len() != 1 {
            return Err(ConfigError::new(
                "lcores.workers",
                "an agent runs exactly one worker lcore",
            ));
        }
        if self.lcores.workers[0] == self.lcores.main {
            return Err(ConfigError::new(
                "lcores.workers[0]",
                "must differ from lcores.main",
            ));
        }
        if self.nic.device.trim().is_empty() {
            return Err(ConfigError::new("nic.device", "must not be empty"));
        }
        if !self.kernel.device.starts_with("net_tap") {
            return Err(ConfigError::new(
                "kernel.device",
                "must be a net_tap device (net_tap0,iface=NAME)",
            ));
        }
        if self.control_port == 0 {
            return Err(ConfigError::new("control_port", "must not be 0"));
        }
        if self.vips.is_empty() {
            return Err(ConfigError::new("vips", "at least one VIP is needed"));
        }
        let mut seen = HashSet::new();
        for (i, v) in self.vips.iter().enumerate() {
            if !seen.insert(v.address) {
                return Err(ConfigError::new(
                    format!("vips[{i}].address"),
                    "listed twice",
                ));
            }
            if v.tcp_ports.is_empty() || v.tcp_ports.contains(&0) {
                return Err(ConfigError::new(
                    format!("vips[{i}].tcp_ports"),
                    "at least one port, none of them 0",
                ));
            }
            if let Some(c) = &v.session_cookie {
                super::check_session_cookie(&format!("vips[{i}].session_cookie"), c)?;
            }
        }
        if !(16..=4_000_000).contains(&self.max_flows) {
            return Err(ConfigError::new("max_flows", "must be 16..=4000000"));
        }
        if self.idle_max_sleep_us > 100_000 {
            return Err(ConfigError::new(
                "idle_max_sleep_us",
                "must be at most 100000",
            ));
        }
        if self.mempool.mbufs < 1023 {
            return Err(ConfigError::new("mempool.mbufs", "must be at least 1023"));
        }
        if let Some(s) = &self.switch {
            s.validate()?;
        }
        Ok(())
    }

    /// The session cookie of the VIP at `ip`, if it has one.
    pub fn session_cookie(&self, ip: Ipv4Addr) -> Option<&str> {
        self.vips
            .iter()
            .find(|v| v.address == ip)
            .and_then(|v| v.session_cookie.as_deref())
    }

    /// Whether `(ip, port)` is one of the VIPs' TCP services.
    pub fn is_vip(&self, ip: Ipv4Addr, port: u16) -> bool {
        self.vips
            .iter()
            .any(|v| v.address == ip && v.tcp_ports.contains(&port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../examples/agent.json");

    #[test]
    fn example_parses() {
        assert!(AgentConfig::is_agent_json(EXAMPLE));
        let c = AgentConfig::from_json(EXAMPLE).unwrap();
        assert!(c.is_vip("10.99.0.10".parse().unwrap(), 80));
        assert!(!c.is_vip("10.99.0.10".parse().unwrap(), 81));
    }

    #[test]
    fn errors_name_the_field() {
        let bad = EXAMPLE.replace("\"net_tap0,iface=wsa0\"", "\"net_af_packet9,iface=x\"");
        assert_eq!(
            AgentConfig::from_json(&bad).unwrap_err().field,
            "kernel.device"
        );
        let bad = EXAMPLE.replace("\"workers\": [1]", "\"workers\": [1, 2]");
        assert_eq!(
            AgentConfig::from_json(&bad).unwrap_err().field,
            "lcores.workers"
        );
        let bad = EXAMPLE.replace(
            "\"tcp_ports\": [80]",
            "\"tcp_ports\": [80], \"session_cookie\": \"SID\"",
        );
        assert_eq!(
            AgentConfig::from_json(&bad).unwrap_err().field,
            "vips[0].session_cookie"
        );
        let good = EXAMPLE.replace(
            "\"tcp_ports\": [80]",
            "\"tcp_ports\": [80], \"session_cookie\": \"PHPSESSID\"",
        );
        let c = AgentConfig::from_json(&good).unwrap();
        assert_eq!(
            c.session_cookie("10.99.0.10".parse().unwrap()),
            Some("PHPSESSID")
        );
        assert_eq!(c.control_port, 7947);
        let bad = EXAMPLE.replace(
            "\"role\": \"agent\"",
            "\"role\": \"agent\", \"control_port\": 0",
        );
        assert_eq!(
            AgentConfig::from_json(&bad).unwrap_err().field,
            "control_port"
        );
        let bad = EXAMPLE.replace("\"tcp_ports\": [80]", "\"tcp_ports\": [0]");
        assert_eq!(
            AgentConfig::from_json(&bad).unwrap_err().field,
            "vips[0].tcp_ports"
        );
        let bad = EXAMPLE.replace("\"role\": \"agent\"", "\"role\": \"agent\", \"x\": 1");
        assert!(AgentConfig::from_json(&bad).is_err());
        assert!(!AgentConfig::is_agent_json(include_str!(
            "../../../examples/testbed.json"
        )));
    }

    #[test]
    fn switch_block_defaults_and_errors() {
        let with = |block: &str| {
            let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
            v["switch"] = serde_json::from_str(block).unwrap_or(serde_json::Value::Null);
            v.to_string()
        };
        let c = AgentConfig::from_json(&with(r#"{ "address": "10.99.1.1" }"#)).unwrap();
        let s = c.switch.unwrap();
        assert_eq!(
            (s.port, s.capacity, s.heartbeat_ms, s.name),
            (7946, 1000, 500, None)
        );
        let full = r#"{ "address": "10.99.1.1", "port": 9000, "capacity": 64, "heartbeat_ms": 50, "name": "be1" }"#;
        let s = AgentConfig::from_json(&with(full)).unwrap().switch.unwrap();
        assert_eq!((s.port, s.capacity, s.heartbeat_ms), (9000, 64, 50));
        assert_eq!(s.name.as_deref(), Some("be1"));
        let example = AgentConfig::from_json(EXAMPLE).unwrap().switch.unwrap();
        assert_eq!(example.address, Ipv4Addr::new(10, 99, 1, 1));
        assert_eq!(example.name.as_deref(), Some("be1"));
        let mut none: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
        none.as_object_mut().unwrap().remove("switch");
        assert!(AgentConfig::from_json(&none.to_string())
            .unwrap()
            .switch
            .is_none());
        for (block, field) in [
            (r#"{ "address": "0.0.0.0" }"#, "switch.address"),
            (r#"{ "address": "10.99.1.1", "port": 0 }"#, "switch.port"),
            (
                r#"{ "address": "10.99.1.1", "capacity": 0 }"#,
                "switch.capacity",
            ),
            (
                r#"{ "address": "10.99.1.1", "heartbeat_ms": 49 }"#,
                "switch.heartbeat_ms",
            ),
            (
                r#"{ "address": "10.99.1.1", "heartbeat_ms": 10001 }"#,
                "switch.heartbeat_ms",
            ),
            (
                r#"{ "address": "10.99.1.1", "name": "b e" }"#,
                "switch.name",
            ),
            (r#"{ "port": 7946 }"#, "switch"),
            (r#"{ "address": "10.99.1.1", "bogus": 1 }"#, "switch.bogus"),
            (r#"{ "address": "10.99.1" }"#, "switch.address"),
        ] {
            let e = AgentConfig::from_json(&with(block)).unwrap_err();
            assert_eq!(e.field, field, "{block}: {e}");
        }
    }
}
