//! Active health checks, run by worker 0 from the dataplane itself: a TCP connect to
//! each backend every `health.interval_ms`. A SYN-ACK within `health.timeout_ms` is a
//! pass (answered with a RST at once, so the backend keeps no connection); a RST, no
//! answer, or an unknown MAC is a failure. `rise` passes in a row bring a backend up,
//! `fall` failures take it down. Connects that fail on any core (RST or no answer to the
//! switch's SYN for a real connection) count as failures too (passive checks). The
//! result goes to `Shared::health`, which every core applies to its schedulers at its
//! next sweep.
use std::sync::atomic::Ordering;

use rules::config::HealthConfig;
use tcpstate::conn::{Data, SegmentInfo, SegmentOut};
use tcpstate::flow::FlowKey;
use tcpstate::wire::{tcp_flags, SeqNumber};

use super::Worker;
use crate::runtime::{Admin, MAX_BACKENDS};
use crate::stats::Counter;

pub const HEALTH_UNKNOWN: u8 = 0;
pub const HEALTH_UP: u8 = 1;
pub const HEALTH_DOWN: u8 = 2;

#[derive(Debug, Clone, Copy, Default)]
struct Probe {
    /// The probe in flight: our tuple, ISN and when it was sent.
    in_flight: Option<(FlowKey, SeqNumber, u64)>,
    /// HTTP checks: the backend's ISN once it answered the SYN (the GET is out).
    http_sent: Option<SeqNumber>,
    next_ms: u64,
    passes: u32,
    fails: u32,
}

pub struct HealthChecker {
    settings: HealthConfig,
    probes: Vec<Probe>,
    isn: u32,
    /// The GET request of HTTP checks, built once.
    request: Vec<u8>,
}

impl HealthChecker {
    pub fn new(settings: HealthConfig) -> Self {
        let request = settings
            .http_path
            .as_ref()
            .map(|p| {
                format!(
                    "GET {p} HTTP/1.0\r\nUser-Agent: webswitch-health\r\nConnection: close\r\n\r\n"
                )
                .into_bytes()
            })
            .unwrap_or_default();
        Self {
            settings,
            probes: vec![Probe::default(); MAX_BACKENDS],
            isn: 0x5EED_0001,
            request,
        }
    }
}

/// An HTTP status line that counts as healthy: 2xx or 3xx.
fn healthy_status(payload: &[u8]) -> bool {
    payload.len() >= 12 && payload.starts_with(b"HTTP/1.") && matches!(payload[9], b'2' | b'3')
}

impl Worker {
    /// Worker 0, every sweep: time out probes in flight and send the ones due.
    pub(super) fn health_tick(&mut self, now_ms: u64) {
        if self.index != 0 || !self.health.settings.enabled {
            return;
        }
        let rt = self.shared.runtime.load_full();
        let s = self.health.settings.clone();
        for b in 0..rt.routes.len() {
            let passive = self.shared.passive_fails[b].swap(0, Ordering::Relaxed);
            if rt.removed[b] || rt.admin[b] == Admin::Maint {
                self.health.probes[b] = Probe::default();
                continue;
            }
            for _ in 0..passive.min(s.fall) {
                self.health_result(b, false, now_ms);
            }
            if let Some((key, _, sent)) = self.health.probes[b].in_flight {
                if now_ms.saturating_sub(sent) >= s.timeout_ms {
                    self.tcp_unbind_probe(&key);
                    self.health.probes[b].in_flight = None;
                    self.health.probes[b].http_sent = None;
                    self.health_result(b, false, now_ms);
                }
                continue;
            }
            if now_ms < self.health.probes[b].next_ms {
                continue;
            }
            self.health.probes[b].next_ms = now_ms + s.interval_ms;
            let route = rt.routes[b];
            let Some(mac) = self.route_mac(&route, now_ms) else {
                self.health_result(b, false, now_ms);
                continue;
            };
            let Some(port) = self.probe_port(route) else {
                continue;
            };
            let key = FlowKey {
                remote_ip: route.address,
                remote_port: route.port,
                local_ip: route.local_ip,
                local_port: port,
            };
            self.health.isn = self
                .health
                .isn
                .wrapping_mul(1_103_515_245)
                .wrapping_add(12345);
            let isn = SeqNumber(self.health.isn);
            self.health.probes[b].in_flight = Some((key, isn, now_ms));
            self.tcp_bind_probe(key, b);
            let syn = SegmentOut {
                seq: isn,
                ack: None,
                flags: tcp_flags::SYN,
                window: 1024,
                timestamps: None,
                syn_options: None,
                data: Data::None,
            };
            self.send_raw_segment(route.via_port, mac, key, &syn);
            self.stats().add(Counter::HealthProbesSent, 1);
        }
    }

    /// A segment on a probe's tuple (found in the TCP path before the flow table).
    /// `payload` is the segment's data (HTTP checks read the status line from it).
    pub(super) fn health_segment(
        &mut self,
        b: usize,
        key: FlowKey,
        seg: &SegmentInfo,
        payload: &[u8],
        now_ms: u64,
    ) {
        let Some((k, isn, _)) = self.health.probes[b].in_flight else {
            return;
        };
        if k != key {
            return;
        }
        let route = self.shared.runtime.load().routes[b];
        let mac = self.route_mac(&route, now_ms);
        let http = !self.health.request.is_empty();
        let req_len = self.health.request.len();
        let verdict = match self.health.probes[b].http_sent {
            _ if seg.rst() => Some(false),
            None if seg.syn() && seg.ack == Some(isn + 1) && !http => Some(true),
            None if seg.syn() && seg.ack == Some(isn + 1) => {
                // HTTP check: ACK the SYN-ACK with the GET and wait for the status line.
                self.health.probes[b].http_sent = Some(seg.seq);
                if let Some(mac) = mac {
                    let get = SegmentOut {
                        seq: isn + 1,
                        ack: Some(seg.seq + 1),
                        flags: tcp_flags::PSH,
                        window: 8192,
                        timestamps: None,
                        syn_options: None,
                        data: Data::None,
                    };
                    let request = std::mem::take(&mut self.health.request);
                    self.send_raw_segment_with(route.via_port, mac, key, &get, &request);
                    self.health.request = request;
                }
                None
            }
            Some(their) if !payload.is_empty() && seg.seq == their + 1 => {
                Some(healthy_status(payload))
            }
            _ => None,
        };
        let Some(pass) = verdict else { return };
        if !seg.rst() {
            // Close the probe's connection at once: the backend keeps nothing.
            if let Some(mac) = mac {
                let sent = if self.health.probes[b].http_sent.is_some() {
                    req_len
                } else {
                    0
                };
                let rst = SegmentOut::rst(isn + 1 + sent);
                self.send_raw_segment(route.via_port, mac, key, &rst);
            }
        }
        self.health.probes[b].in_flight = None;
        self.health.probes[b].http_sent = None;
        self.tcp_unbind_probe(&key);
        self.health_result(b, pass, now_ms);
    }

    fn health_result(&mut self, b: usize, pass: bool, _now_ms: u64) {
        let s = self.health.settings.clone();
        let p = &mut self.health.probes[b];
        if pass {
            p.passes += 1;
            p.fails = 0;
        } else {
            p.fails += 1;
            p.passes = 0;
        }
        let cell = &self.shared.health[b];
        let old = cell.load(Ordering::Relaxed);
        let new = if pass && (old == HEALTH_UNKNOWN || p.passes >= s.rise) {
            HEALTH_UP
        } else if !pass && (old != HEALTH_DOWN && p.fails >= s.fall) {
            HEALTH_DOWN
        } else {
            old
        };
        if new != old {
            cell.store(new, Ordering::Relaxed);
            self.stats().add(Counter::HealthChanges, 1);
            let name = self
                .shared
                .runtime
                .load()
                .config
                .backends
                .get(b)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            // Rare (a state change), so logging here does not cost the hot path.
            tracing::warn!(backend = %name, state = if new == HEALTH_UP { "up" } else { "down" }, "health changed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::healthy_status;

    #[test]
    fn status_lines() {
        assert!(healthy_status(b"HTTP/1.1 200 OK\r\n"));
        assert!(healthy_status(b"HTTP/1.0 302 Found\r\n"));
        assert!(!healthy_status(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(!healthy_status(b"HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(!healthy_status(b"SSH-2.0-OpenSSH\r\n"));
        assert!(!healthy_status(b"HTTP/1.1 2"));
    }
}
