//! The read-only HTTP listener: `/metrics` (Prometheus) and the stats page.
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Where (and whether) the metrics and stats page listener runs. Absent or
/// `listen: null`: no listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// `address:port` to listen on, e.g. `127.0.0.1:9180` (inside the switch's network
    /// namespace). `null`: disabled.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Connections served at once; further ones wait in the kernel's backlog.
    #[serde(default = "WebConfig::default_max_connections")]
    pub max_connections: u32,
    /// A client must send its request (and a keep-alive connection its next one)
    /// within this time.
    #[serde(default = "WebConfig::default_request_timeout_ms")]
    pub request_timeout_ms: u64,
}

impl WebConfig {
    fn default_max_connections() -> u32 {
        8
    }
    fn default_request_timeout_ms() -> u64 {
        5000
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(a) = &self.listen {
            if a.port() == 0 {
                return Err(ConfigError::new("web.listen", "the port must not be 0"));
            }
        }
        if !(1..=1024).contains(&self.max_connections) {
            return Err(ConfigError::new("web.max_connections", "must be 1..=1024"));
        }
        if !(100..=600_000).contains(&self.request_timeout_ms) {
            return Err(ConfigError::new(
                "web.request_timeout_ms",
                "must be 100..=600000",
            ));
        }
        Ok(())
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen: None,
            max_connections: Self::default_max_connections(),
            request_timeout_ms: Self::default_request_timeout_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_their_field() {
        let w: WebConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(w, WebConfig::default());
        assert!(w.validate().is_ok());
        let w: WebConfig = serde_json::from_str(r#"{"listen":"127.0.0.1:9180"}"#).unwrap();
        assert_eq!(w.listen.unwrap().port(), 9180);
        let bad = |j: &str| {
            serde_json::from_str::<WebConfig>(j)
                .unwrap()
                .validate()
                .unwrap_err()
                .field
        };
        assert_eq!(bad(r#"{"listen":"127.0.0.1:0"}"#), "web.listen");
        assert_eq!(bad(r#"{"max_connections":0}"#), "web.max_connections");
        assert_eq!(bad(r#"{"request_timeout_ms":5}"#), "web.request_timeout_ms");
        assert!(serde_json::from_str::<WebConfig>(r#"{"listen":"nope"}"#).is_err());
        assert!(serde_json::from_str::<WebConfig>(r#"{"bogus":1}"#).is_err());
    }
}
