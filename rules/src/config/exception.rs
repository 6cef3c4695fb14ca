//! The exception path of a port (`ports[].exception`): what arrives on the port and is
//! not the switch's (not for a VIP, a flow or one of the port's own addresses) goes to
//! the host's kernel through a TAP, and what the kernel sends out of that TAP leaves by
//! the port. An unmodified routing daemon (BIRD, FRR), sshd or anything else on the
//! appliance then uses the port as if it were the kernel's own NIC.
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Longest kernel interface name (IFNAMSIZ less the NUL).
const IFNAME_MAX: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionConfig {
    /// The kernel interface of the TAP (`wsx0`). webswitch attaches `net_tap` to it with
    /// the port's MAC, so the LAN sees one station; if no such interface exists it is
    /// created (and goes with the switch). Create it beforehand (`ip tuntap add NAME mode
    /// tap multi_queue`) to give it the host's addresses before the switch starts.
    pub tap: String,
}

impl ExceptionConfig {
    /// Checks the block of `ports[index]`.
    pub(super) fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let t = &self.tap;
        let ok = !t.is_empty()
            && t.len() <= IFNAME_MAX
            && t != "."
            && t != ".."
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(ConfigError::new(
                format!("ports[{index}].exception.tap"),
                format!(
                    "`{t}` is not a kernel interface name (1-{IFNAME_MAX} of A-Z a-z 0-9 - _ .)"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        let c = |t: &str| ExceptionConfig { tap: t.into() }.validate(2);
        assert!(c("wsx0").is_ok());
        assert!(c("tap-bgp.1").is_ok());
        for bad in ["", "a/b", "way-too-long-name", "..", "sp ace"] {
            let e = c(bad).unwrap_err();
            assert_eq!(e.field, "ports[2].exception.tap", "{bad}");
        }
    }
}
