//! The management socket and the health checks.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Where the JSON control socket listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MgmtConfig {
    /// Path of the Unix socket (created owner-only). Default:
    /// `/run/webswitch/<eal.file_prefix>.sock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// Write an access log line per connection (to the log, target `access`); can be
    /// switched at run time with `log.access`.
    #[serde(default)]
    pub access_log: bool,
}

impl MgmtConfig {
    /// The socket path, defaulted from the EAL file prefix.
    pub fn socket_path(&self, file_prefix: &str) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/run/webswitch/{file_prefix}.sock")))
    }
}

/// Active health checks: worker 0 opens a TCP connection to each backend every
/// `interval_ms` (SYN; a SYN-ACK within `timeout_ms` is a pass, which it resets at
/// once); `rise` passes in a row mark a down backend up, `fall` failures a up one down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    #[serde(default = "HealthConfig::default_enabled")]
    pub enabled: bool,
    #[serde(default = "HealthConfig::default_interval")]
    pub interval_ms: u64,
    #[serde(default = "HealthConfig::default_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "HealthConfig::default_rise")]
    pub rise: u32,
    #[serde(default = "HealthConfig::default_fall")]
    pub fall: u32,
    /// With a path, the check is an HTTP GET of it (HTTP/1.0, `Connection: close`) and
    /// passes on a 2xx or 3xx status line; without one, a TCP connect check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_path: Option<String>,
}

impl HealthConfig {
    fn default_enabled() -> bool {
        true
    }
    fn default_interval() -> u64 {
        2000
    }
    fn default_timeout() -> u64 {
        1000
    }
    fn default_rise() -> u32 {
        2
    }
    fn default_fall() -> u32 {
        3
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(100..=3_600_000).contains(&self.interval_ms) {
            return Err(ConfigError::new(
                "health.interval_ms",
                "must be 100..=3600000",
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > self.interval_ms {
            return Err(ConfigError::new(
                "health.timeout_ms",
                "must be 1..=health.interval_ms",
            ));
        }
        if !(1..=100).contains(&self.rise) {
            return Err(ConfigError::new("health.rise", "must be 1..=100"));
        }
        if !(1..=100).contains(&self.fall) {
            return Err(ConfigError::new("health.fall", "must be 1..=100"));
        }
        if let Some(p) = &self.http_path {
            let ok =
                p.starts_with('/') && p.len() <= 512 && p.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(ConfigError::new(
                    "health.http_path",
                    "must start with / and be printable ASCII without spaces (at most 512 bytes)",
                ));
            }
        }
        Ok(())
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            enabled: Self::default_enabled(),
            interval_ms: Self::default_interval(),
            timeout_ms: Self::default_timeout(),
            rise: Self::default_rise(),
            fall: Self::default_fall(),
            http_path: None,
        }
    }
}
