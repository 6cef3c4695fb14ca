//! The `tcp` section: limits and timers of the switch's own TCP (client endpoint,
//! backend connections, spliced flows). A config model only: the dataplane applies it.
use serde::{Deserialize, Serialize};

use super::{Config, ConfigError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// Flow table capacity of each worker core; connections beyond it are refused and counted.
    #[serde(default = "TcpConfig::default_max_flows")]
    pub max_flows_per_core: u32,
    /// The most connections one client address may hold open at once, over all cores
    /// (0: no cap); one more is refused with a RST and counted.
    #[serde(default)]
    pub max_conns_per_client: u32,
    /// Largest request head the switch reassembles before answering 431.
    #[serde(default = "TcpConfig::default_max_head")]
    pub max_head_bytes: u32,
    /// Time from the handshake to a complete request head before answering 408.
    #[serde(default = "TcpConfig::default_head_timeout")]
    pub head_timeout_ms: u64,
    /// Time a backend has to answer one SYN.
    #[serde(default = "TcpConfig::default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// SYNs sent in total (over the pool's backends) before the client gets a 503.
    #[serde(default = "TcpConfig::default_connect_attempts")]
    pub connect_attempts: u32,
    /// An established (spliced) flow with no segment for this long is dropped.
    #[serde(default = "TcpConfig::default_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// A flow in which a FIN was seen is dropped this long after the last segment.
    #[serde(default = "TcpConfig::default_fin_timeout")]
    pub fin_timeout_ms: u64,
    /// A closed flow (both FINs acknowledged, or RST) stays this long to absorb
    /// retransmissions before its entry is freed.
    #[serde(default = "TcpConfig::default_closed_linger")]
    pub closed_linger_ms: u64,
    /// The largest MSS the switch announces on either side (its SYN-ACKs and its SYNs).
    #[serde(default = "TcpConfig::default_mss")]
    pub mss: u16,
    /// The window scale the switch announces on the connections it terminates.
    #[serde(default = "TcpConfig::default_window_scale")]
    pub window_scale: u8,
    /// How often the SYN cookie secret is rotated.
    #[serde(default = "TcpConfig::default_cookie_rotate")]
    pub syn_cookie_rotate_s: u64,
}

impl TcpConfig {
    fn default_max_flows() -> u32 {
        65536
    }
    fn default_max_head() -> u32 {
        8192
    }
    fn default_head_timeout() -> u64 {
        10_000
    }
    fn default_connect_timeout() -> u64 {
        1000
    }
    fn default_connect_attempts() -> u32 {
        3
    }
    fn default_idle_timeout() -> u64 {
        300_000
    }
    fn default_fin_timeout() -> u64 {
        30_000
    }
    fn default_closed_linger() -> u64 {
        2000
    }
    fn default_mss() -> u16 {
        1460
    }
    fn default_window_scale() -> u8 {
        7
    }
    fn default_cookie_rotate() -> u64 {
        300
    }
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            max_flows_per_core: Self::default_max_flows(),
            max_conns_per_client: 0,
            max_head_bytes: Self::default_max_head(),
            head_timeout_ms: Self::default_head_timeout(),
            connect_timeout_ms: Self::default_connect_timeout(),
            connect_attempts: Self::default_connect_attempts(),
            idle_timeout_ms: Self::default_idle_timeout(),
            fin_timeout_ms: Self::default_fin_timeout(),
            closed_linger_ms: Self::default_closed_linger(),
            mss: Self::default_mss(),
            window_scale: Self::default_window_scale(),
            syn_cookie_rotate_s: Self::default_cookie_rotate(),
        }
    }
}

/// `Err` naming `tcp.<field>` unless `lo <= v <= hi`.
fn range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        Err(ConfigError::new(
            format!("tcp.{field}"),
            format!("{v} is out of range: must be {lo}..={hi}"),
        ))
    } else {
        Ok(())
    }
}

impl Config {
    pub(super) fn validate_tcp(&self) -> Result<(), ConfigError> {
        let t = &self.tcp;
        range("max_flows_per_core", t.max_flows_per_core, 1, 1 << 24)?;
        range("max_conns_per_client", t.max_conns_per_client, 0, 1 << 24)?;
        range("max_head_bytes", t.max_head_bytes, 1024, 65536)?;
        range("head_timeout_ms", t.head_timeout_ms, 100, 3_600_000)?;
        range("connect_timeout_ms", t.connect_timeout_ms, 10, 60_000)?;
        range("connect_attempts", t.connect_attempts, 1, 16)?;
        range("idle_timeout_ms", t.idle_timeout_ms, 1000, 86_400_000)?;
        range("fin_timeout_ms", t.fin_timeout_ms, 100, 3_600_000)?;
        range("closed_linger_ms", t.closed_linger_ms, 0, 600_000)?;
        range("mss", t.mss, 536, 9000)?;
        range("window_scale", t.window_scale, 0, 14)?;
        // A cookie lives 2-3 counter periods of 64 s, checked against the current and the
        // previous secret: rotating faster than that would cut cookies in flight short.
        range("syn_cookie_rotate_s", t.syn_cookie_rotate_s, 192, 86_400)?;
        Ok(())
    }
}
