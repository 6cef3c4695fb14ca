//! Counters, the final report (text and JSON), its consistency checks and the ratios to
//! ceilings measured in other runs.
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::hist::Hist;

/// Everything the engine counts. Plain integers: one thread owns them.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Counters {
    // Connections opened by the client side; each ends in exactly one of established,
    // refused, connect_timeout, connect_reset, or (when the run ends) connect_unfinished.
    pub conn_attempts: u64,
    pub conn_established: u64,
    pub conn_refused: u64,
    pub conn_timeout: u64,
    pub conn_reset: u64,
    pub conn_unfinished: u64,
    /// Established connections that ended with both FINs exchanged.
    pub conn_closed_clean: u64,
    /// Established connections reset by the peer between requests (no request lost).
    pub conn_reset_idle: u64,
    // Requests sent; each ends in exactly one of ok or an error kind, or unfinished.
    pub req_sent: u64,
    pub req_ok: u64,
    pub req_reset: u64,
    pub req_timeout: u64,
    pub req_integrity: u64,
    pub req_http: u64,
    pub req_misrouted: u64,
    pub req_closed: u64,
    pub req_unfinished: u64,
    /// Response body bytes checked against the URL.
    pub body_bytes_checked: u64,
    // Frames and bytes (Ethernet frames as handed to / taken from the port).
    pub client_tx_pkts: u64,
    pub client_tx_bytes: u64,
    pub client_rx_pkts: u64,
    pub client_rx_bytes: u64,
    pub server_tx_pkts: u64,
    pub server_tx_bytes: u64,
    pub server_rx_pkts: u64,
    pub server_rx_bytes: u64,
    pub client_retransmits: u64,
    pub server_retransmits: u64,
    // The harness's own drops.
    pub drop_tx_full: u64,
    pub drop_no_mbuf: u64,
    pub drop_bad_checksum: u64,
    pub drop_malformed: u64,
    pub drop_not_for_us: u64,
    pub drop_stray: u64,
    pub drop_no_slot: u64,
    pub drop_server_full: u64,
    pub drop_out_of_order: u64,
    // The server side.
    pub srv_accepted: u64,
    pub srv_requests: u64,
    pub srv_responses: u64,
    pub srv_body_integrity: u64,
    pub srv_bad_request: u64,
    pub srv_resets: u64,
    pub srv_closed_port: u64,
    // SYN flood.
    pub flood_syns: u64,
    pub flood_synacks: u64,
    pub flood_other: u64,
    pub arp_answered: u64,
    // Background connections (slowloris and idle), outside the load's figures: opened,
    // established, reset or given up on (a per-client cap refuses with a RST); the slow
    // ones' ends (408, another answer, or a close without one); idle ones answered once.
    pub bg_attempts: u64,
    pub bg_established: u64,
    pub bg_reset: u64,
    pub slow_408: u64,
    pub slow_other: u64,
    pub slow_closed: u64,
    pub idle_answered: u64,
}

impl Counters {
    /// Request errors by kind (connect failures are separate).
    pub fn request_errors(&self) -> [(&'static str, u64); 6] {
        [
            ("reset", self.req_reset),
            ("timeout", self.req_timeout),
            ("integrity", self.req_integrity),
            ("http", self.req_http),
            ("misrouted", self.req_misrouted),
            ("closed", self.req_closed),
        ]
    }

    pub fn connect_errors(&self) -> [(&'static str, u64); 3] {
        [
            ("refused", self.conn_refused),
            ("timeout", self.conn_timeout),
            ("reset", self.conn_reset),
        ]
    }

    pub fn drops(&self) -> [(&'static str, u64); 9] {
        [
            ("tx_full", self.drop_tx_full),
            ("no_mbuf", self.drop_no_mbuf),
            ("bad_checksum", self.drop_bad_checksum),
            ("malformed", self.drop_malformed),
            ("not_for_us", self.drop_not_for_us),
            ("stray", self.drop_stray),
            ("no_slot", self.drop_no_slot),
            ("server_full", self.drop_server_full),
            ("out_of_order", self.drop_out_of_order),
        ]
    }

    pub fn error_total(&self) -> u64 {
        self.request_errors().iter().map(|e| e.1).sum::<u64>()
            + self.connect_errors().iter().map(|e| e.1).sum::<u64>()
            + self.srv_body_integrity
            + self.conn_reset_idle
    }

    pub fn integrity_failures(&self) -> u64 {
        self.req_integrity + self.req_misrouted + self.srv_body_integrity
    }

    /// Field-wise `self - earlier` (for per-second and per-window figures).
    pub fn delta(&self, earlier: &Counters) -> Counters {
        let a = serde_json::to_value(self).expect("counters serialise");
        let b = serde_json::to_value(earlier).expect("counters serialise");
        let mut out = serde_json::Map::new();
        for (k, v) in a.as_object().expect("object") {
            let x = v
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(b[k].as_u64().unwrap_or(0));
            out.insert(k.clone(), Value::from(x));
        }
        serde_json::from_value(Value::Object(out)).expect("counters deserialise")
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tick {
    /// Seconds since the load started (end of this interval).
    pub t: f64,
    pub connections_per_s: f64,
    pub requests_per_s: f64,
    pub errors: u64,
    pub active: u64,
    pub tx_pps: f64,
    pub rx_pps: f64,
    pub connect_p50_us: f64,
    pub connect_p99_us: f64,
    pub ttfb_p50_us: f64,
    pub ttfb_p90_us: f64,
    pub ttfb_p99_us: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Percentiles {
    /// From a histogram of nanoseconds.
    pub fn of(h: &Hist) -> Percentiles {
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            count: h.count(),
            p50_us: us(h.quantile(0.5)),
            p90_us: us(h.quantile(0.9)),
            p99_us: us(h.quantile(0.99)),
            p999_us: us(h.quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

/// Rates over the load window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Rates {
    pub connections_per_s: f64,
    pub requests_per_s: f64,
    /// Client side: frames sent toward the switch / received from it.
    pub client_tx_pps: f64,
    pub client_rx_pps: f64,
    pub client_tx_bps: f64,
    pub client_rx_bps: f64,
    /// Server side: frames sent toward the switch / received from it.
    pub server_tx_pps: f64,
    pub server_rx_pps: f64,
    pub server_tx_bps: f64,
    pub server_rx_bps: f64,
    /// All frames the harness sent and received, both sides.
    pub packets_per_s: f64,
    pub bits_per_s: f64,
}

impl Rates {
    pub fn over(c: &Counters, secs: f64) -> Rates {
        let s = secs.max(1e-9);
        let bits = |bytes: u64| bytes as f64 * 8.0 / s;
        Rates {
            connections_per_s: c.conn_established as f64 / s,
            requests_per_s: c.req_ok as f64 / s,
            client_tx_pps: c.client_tx_pkts as f64 / s,
            client_rx_pps: c.client_rx_pkts as f64 / s,
            client_tx_bps: bits(c.client_tx_bytes),
            client_rx_bps: bits(c.client_rx_bytes),
            server_tx_pps: c.server_tx_pkts as f64 / s,
            server_rx_pps: c.server_rx_pkts as f64 / s,
            server_tx_bps: bits(c.server_tx_bytes),
            server_rx_bps: bits(c.server_rx_bytes),
            packets_per_s: (c.client_tx_pkts
                + c.client_rx_pkts
                + c.server_tx_pkts
                + c.server_rx_pkts) as f64
                / s,
            bits_per_s: bits(
                c.client_tx_bytes + c.client_rx_bytes + c.server_tx_bytes + c.server_rx_bytes,
            ),
        }
    }
}

/// The whole report, as written to `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub mode: String,
    /// The command line settings that shape the load.
    pub settings: Value,
    /// Length of the load window (new connections and requests were started in it).
    pub load_s: f64,
    /// Whole run including the drain at the end.
    pub elapsed_s: f64,
    /// Rates over the load window (counts of the window / load_s).
    pub rates: Rates,
    /// Counts of the load window only.
    pub window: Counters,
    /// Counts of the whole run, drain included; unfinished = still open at the end.
    pub totals: Counters,
    pub latency: LatencyReport,
    /// Time to first byte by URL class (`img`, `app`, `other`; classes that had
    /// responses), so that pools set up differently (e.g. with and without warm backend
    /// connections) are compared under the same load and the same machine noise.
    #[serde(default)]
    pub ttfb_by_class: std::collections::BTreeMap<String, Percentiles>,
    /// Errors by kind over the whole run (connect and request errors of the same kind
    /// added up).
    pub errors: std::collections::BTreeMap<String, u64>,
    pub drops: std::collections::BTreeMap<String, u64>,
    pub timeline: Vec<Tick>,
    pub ceilings: Vec<Value>,
    /// Whether every identity in `check` holds and no integrity failure was seen.
    pub ok: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LatencyReport {
    /// SYN sent to SYN-ACK received.
    pub connect: Percentiles,
    /// Request written to the first response byte received.
    pub ttfb: Percentiles,
    /// Request written to the last response byte received.
    pub response: Percentiles,
}

/// Errors by kind, connect and request errors merged by name.
pub fn errors_by_kind(c: &Counters) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for (k, v) in c.connect_errors().into_iter().chain(c.request_errors()) {
        *m.entry(k.to_string()).or_insert(0) += v;
    }
    *m.entry("reset".to_string()).or_insert(0) += c.conn_reset_idle;
    m.insert("server_integrity".into(), c.srv_body_integrity);
    m
}

/// The identities the figures must satisfy; an empty list when they all hold.
pub fn check(c: &Counters) -> Vec<String> {
    let mut bad = Vec::new();
    let conn_ends =
        c.conn_established + c.conn_refused + c.conn_timeout + c.conn_reset + c.conn_unfinished;
    if conn_ends != c.conn_attempts {
        bad.push(format!(
            "connections: attempts {} != established {} + refused {} + timeout {} + reset {} + unfinished {}",
            c.conn_attempts, c.conn_established, c.conn_refused, c.conn_timeout, c.conn_reset, c.conn_unfinished
        ));
    }
    let req_ends: u64 =
        c.req_ok + c.request_errors().iter().map(|e| e.1).sum::<u64>() + c.req_unfinished;
    if req_ends != c.req_sent {
        bad.push(format!(
            "requests: sent {} != ok {} + errors {:?} + unfinished {}",
            c.req_sent,
            c.req_ok,
            c.request_errors(),
            c.req_unfinished
        ));
    }
    if c.conn_closed_clean > c.conn_established {
        bad.push(format!(
            "clean closes {} > established {}",
            c.conn_closed_clean, c.conn_established
        ));
    }
    bad
}

/// Ratios of `rates` to a ceiling report read from `path` (a report of this tool).
pub fn ceiling_ratios(rates: &Rates, path: &str, ceiling: &Value) -> Value {
    let r = &ceiling["rates"];
    let ratio = |name: &str, ours: f64| -> Value {
        match r[name].as_f64() {
            Some(c) if c > 0.0 => json!((ours / c * 1000.0).round() / 1000.0),
            _ => Value::Null,
        }
    };
    json!({
        "file": path,
        "mode": ceiling["mode"],
        "connections_per_s": ratio("connections_per_s", rates.connections_per_s),
        "requests_per_s": ratio("requests_per_s", rates.requests_per_s),
        "packets_per_s": ratio("packets_per_s", rates.packets_per_s),
        "bits_per_s": ratio("bits_per_s", rates.bits_per_s),
        "ceiling_rates": r,
    })
}

fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

impl Report {
    /// The human-readable summary.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let r = &self.rates;
        let t = &self.totals;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "webswitch-bench {} mode: {:.1} s of load ({:.1} s with the drain)",
            self.mode, self.load_s, self.elapsed_s
        );
        let _ = writeln!(
            s,
            "  connections/s {:>10}   requests/s {:>10}",
            si(r.connections_per_s),
            si(r.requests_per_s)
        );
        let _ = writeln!(
            s,
            "  client side   tx {:>8}pps {:>8}b/s   rx {:>8}pps {:>8}b/s",
            si(r.client_tx_pps),
            si(r.client_tx_bps),
            si(r.client_rx_pps),
            si(r.client_rx_bps)
        );
        let _ = writeln!(
            s,
            "  server side   tx {:>8}pps {:>8}b/s   rx {:>8}pps {:>8}b/s",
            si(r.server_tx_pps),
            si(r.server_tx_bps),
            si(r.server_rx_pps),
            si(r.server_rx_bps)
        );
        let _ = writeln!(
            s,
            "  latency (us)        n        p50       p90       p99     p99.9       max"
        );
        for (name, p) in [
            ("connect", &self.latency.connect),
            ("ttfb", &self.latency.ttfb),
            ("response", &self.latency.response),
        ] {
            let _ = writeln!(
                s,
                "    {:<10} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                name, p.count, p.p50_us, p.p90_us, p.p99_us, p.p999_us, p.max_us
            );
        }
        if self.ttfb_by_class.len() > 1 {
            for (class, p) in &self.ttfb_by_class {
                let _ = writeln!(
                    s,
                    "    {:<10} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                    format!("ttfb {class}"),
                    p.count,
                    p.p50_us,
                    p.p90_us,
                    p.p99_us,
                    p.p999_us,
                    p.max_us
                );
            }
        }
        let _ = writeln!(
            s,
            "  connections   attempts {} established {} clean-closed {} unfinished {}",
            t.conn_attempts, t.conn_established, t.conn_closed_clean, t.conn_unfinished
        );
        let _ = writeln!(
            s,
            "  requests      sent {} ok {} unfinished {}   body bytes checked {}",
            t.req_sent, t.req_ok, t.req_unfinished, t.body_bytes_checked
        );
        let errs: Vec<String> = self
            .errors
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(s, "  errors        {}", errs.join(", "));
        let drops: Vec<String> = self
            .drops
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            s,
            "  harness drops {}   retransmits client {} server {}",
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(", ")
            },
            t.client_retransmits,
            t.server_retransmits
        );
        if t.srv_accepted > 0 || t.srv_requests > 0 {
            let _ = writeln!(
                s,
                "  server side   accepted {} requests {} responses {} bad requests {} resets {}",
                t.srv_accepted, t.srv_requests, t.srv_responses, t.srv_bad_request, t.srv_resets
            );
        }
        if t.bg_attempts > 0 {
            let _ = writeln!(
                s,
                "  background    opened {} established {} reset {}; slowloris answered 408 {} other {} closed {}; idle answered {}",
                t.bg_attempts, t.bg_established, t.bg_reset, t.slow_408, t.slow_other, t.slow_closed, t.idle_answered
            );
        }
        if t.flood_syns > 0 {
            let _ = writeln!(
                s,
                "  SYN flood     spoofed SYNs {} SYN-ACKs back {}",
                t.flood_syns, t.flood_synacks
            );
        }
        for c in &self.ceilings {
            let _ = writeln!(
                s,
                "  vs ceiling {} ({}): connections/s {} requests/s {} packets/s {} bits/s {}",
                c["file"].as_str().unwrap_or("?"),
                c["mode"].as_str().unwrap_or("?"),
                c["connections_per_s"],
                c["requests_per_s"],
                c["packets_per_s"],
                c["bits_per_s"]
            );
        }
        let _ = writeln!(
            s,
            "  result        {}",
            if self.ok {
                "OK".to_string()
            } else {
                format!("FAILED: {}", self.problems.join("; "))
            }
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Counters {
        Counters {
            conn_attempts: 10,
            conn_established: 7,
            conn_refused: 1,
            conn_timeout: 1,
            conn_unfinished: 1,
            conn_closed_clean: 6,
            req_sent: 20,
            req_ok: 15,
            req_reset: 1,
            req_integrity: 1,
            req_closed: 1,
            req_unfinished: 2,
            ..Counters::default()
        }
    }

    #[test]
    fn identities_hold_and_are_checked() {
        assert!(check(&sample()).is_empty());
        let mut c = sample();
        c.req_ok += 1;
        assert_eq!(check(&c).len(), 1);
        c.conn_attempts += 1;
        assert_eq!(check(&c).len(), 2);
    }

    #[test]
    fn errors_by_kind_add_connect_and_request_errors() {
        let mut c = sample();
        c.conn_reset = 2;
        c.conn_attempts += 2;
        let e = errors_by_kind(&c);
        assert_eq!(e["reset"], 3);
        assert_eq!(e["timeout"], 1);
        assert_eq!(e["refused"], 1);
        assert_eq!(e["integrity"], 1);
        assert_eq!(
            e.values().sum::<u64>(),
            c.error_total(),
            "errors by kind add up to the total"
        );
    }

    #[test]
    fn delta_and_rates() {
        let a = sample();
        let mut b = a;
        b.req_ok += 100;
        b.client_tx_pkts = 50;
        b.client_tx_bytes = 1000;
        let d = b.delta(&a);
        assert_eq!(d.req_ok, 100);
        assert_eq!(d.conn_attempts, 0);
        let r = Rates::over(&d, 2.0);
        assert_eq!(r.requests_per_s, 50.0);
        assert_eq!(r.client_tx_pps, 25.0);
        assert_eq!(r.client_tx_bps, 4000.0);
        assert_eq!(r.packets_per_s, 25.0);
    }

    #[test]
    fn ceiling_ratios_divide_by_the_ceiling() {
        let ours = Rates {
            connections_per_s: 50.0,
            requests_per_s: 100.0,
            ..Rates::default()
        };
        let ceiling = json!({"mode": "back-to-back", "rates": {"connections_per_s": 100.0, "requests_per_s": 400.0, "packets_per_s": 0.0}});
        let v = ceiling_ratios(&ours, "c.json", &ceiling);
        assert_eq!(v["connections_per_s"], 0.5);
        assert_eq!(v["requests_per_s"], 0.25);
        assert!(v["packets_per_s"].is_null());
    }
}
