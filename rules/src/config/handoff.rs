//! The switch's side of the handoff agents (VIP mode `handoff`): where their beats
//! arrive, and how long an agent stays alive without one.
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Agents register and send heartbeats to the switch (`crate::beat`); a backend whose
/// agent has not been heard from within `agent_timeout_ms` (or that said `leave`) is
/// handed no connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffConfig {
    /// The UDP port, on every one of the switch's own addresses, that beats go to.
    #[serde(default = "HandoffConfig::default_agent_port")]
    pub agent_port: u16,
    /// An agent silent for this long is taken as gone (a few of its `heartbeat_ms`).
    #[serde(default = "HandoffConfig::default_agent_timeout_ms")]
    pub agent_timeout_ms: u64,
    /// How a routed connection moves to its agent: `inline` (paper 002: the head goes as
    /// segments of the client's own connection, carrying the state in a TCP option) or
    /// `control` (paper 004: handoff requests on a per-agent UDP channel to the agent's
    /// `control_port`, and the client's later segments only after the agent's ack).
    #[serde(default)]
    pub transport: HandoffTransport,
    /// The agents' `control_port` (control transport).
    #[serde(default = "HandoffConfig::default_control_port")]
    pub control_port: u16,
}

/// `handoff.transport`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffTransport {
    #[default]
    Inline,
    Control,
}

impl HandoffConfig {
    fn default_agent_port() -> u16 {
        crate::beat::DEFAULT_PORT
    }
    fn default_agent_timeout_ms() -> u64 {
        1500
    }
    pub(super) fn default_control_port() -> u16 {
        crate::beat::DEFAULT_PORT + 1
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.agent_port == 0 {
            return Err(ConfigError::new("handoff.agent_port", "must not be 0"));
        }
        if self.control_port == 0 {
            return Err(ConfigError::new("handoff.control_port", "must not be 0"));
        }
        if !(100..=600_000).contains(&self.agent_timeout_ms) {
            return Err(ConfigError::new(
                "handoff.agent_timeout_ms",
                "must be 100..=600000",
            ));
        }
        Ok(())
    }
}

impl Default for HandoffConfig {
    fn default() -> Self {
        Self {
            agent_port: Self::default_agent_port(),
            agent_timeout_ms: Self::default_agent_timeout_ms(),
            transport: HandoffTransport::Inline,
            control_port: Self::default_control_port(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_their_field() {
        let h: HandoffConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(h, HandoffConfig::default());
        assert_eq!((h.agent_port, h.agent_timeout_ms), (7946, 1500));
        assert!(h.validate().is_ok());
        let bad = |j: &str| {
            serde_json::from_str::<HandoffConfig>(j)
                .unwrap()
                .validate()
                .unwrap_err()
                .field
        };
        assert_eq!(bad(r#"{"agent_port":0}"#), "handoff.agent_port");
        assert_eq!(bad(r#"{"control_port":0}"#), "handoff.control_port");
        let c: HandoffConfig =
            serde_json::from_str(r#"{"transport":"control","control_port":9001}"#).unwrap();
        assert_eq!(
            (c.transport, c.control_port),
            (HandoffTransport::Control, 9001)
        );
        assert_eq!(h.transport, HandoffTransport::Inline);
        assert!(serde_json::from_str::<HandoffConfig>(r#"{"transport":"tcp"}"#).is_err());
        assert_eq!(
            bad(r#"{"agent_timeout_ms":99}"#),
            "handoff.agent_timeout_ms"
        );
        assert_eq!(
            bad(r#"{"agent_timeout_ms":600001}"#),
            "handoff.agent_timeout_ms"
        );
        assert!(serde_json::from_str::<HandoffConfig>(r#"{"agent_port":70000}"#).is_err());
        assert!(serde_json::from_str::<HandoffConfig>(r#"{"bogus":1}"#).is_err());
    }
}
