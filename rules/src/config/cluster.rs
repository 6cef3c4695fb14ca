//! The instance's part in a cluster of webswitches behind ECMP (`cluster`): how it tells
//! the routing daemon on its appliance to announce the VIPs, or to withdraw them.
use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// A command (program and arguments, no shell) run when the instance starts
    /// serving: every VIP has a backend that is ready and not down by its health checks,
    /// and no operator withdrew it (`cluster.withdraw`). For BIRD:
    /// `["birdc", "-s", "/run/bird/bird.ctl", "enable", "vip"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announce: Vec<String>,
    /// The command run when it stops serving (`... "disable", "vip"]`). Its routing
    /// daemon then withdraws the VIPs and the routers stop sending new flows here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withdraw: Vec<String>,
}

impl ClusterConfig {
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
