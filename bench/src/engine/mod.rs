//! The poll loop: both sides on one lcore (the main thread), each polling its own port,
//! with timers, the load schedule (closed or open loop), the SYN flood, a progress line
//! per second and the report at the end.
pub mod client;
pub mod net;
pub mod server;
pub mod tcp;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use self::client::Client;
use self::server::Server;
use crate::hist::Hist;
use crate::report::{Counters, Percentiles, Tick};

/// Background connections (slowloris, idle) opened per second until all are open.
const BACKGROUND_OPEN_RATE: u64 = 20_000;

/// How the load is shaped.
#[derive(Debug, Clone)]
pub struct Load {
    pub duration_ns: u64,
    pub drain_ns: u64,
    /// Closed loop: this many connections open at all times.
    pub concurrency: usize,
    /// Open loop: new connections per second (overrides `concurrency`).
    pub rate: Option<f64>,
    /// Spoofed SYNs per second (0: none).
    pub syn_flood: f64,
    pub quiet: bool,
    /// Longest idle sleep of the poll loop.
    pub idle_max_sleep_us: u64,
}

/// What a run produced.
pub struct Outcome {
    pub totals: Counters,
    pub window: Counters,
    pub load_s: f64,
    pub elapsed_s: f64,
    pub connect: Percentiles,
    pub ttfb: Percentiles,
    /// Time to first byte by URL class (classes with responses only).
    pub ttfb_by_class: std::collections::BTreeMap<String, Percentiles>,
    pub response: Percentiles,
    pub timeline: Vec<Tick>,
}

/// A nanosecond clock from the TSC.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    t0: u64,
    ns_per_tick: f64,
}

impl Clock {
    pub fn new() -> Clock {
        let hz = dpdk_env::tsc_hz().max(1);
        Clock {
            t0: dpdk_env::rdtsc(),
            ns_per_tick: 1e9 / hz as f64,
        }
    }
    #[inline]
    pub fn now(&self) -> u64 {
        ((dpdk_env::rdtsc() - self.t0) as f64 * self.ns_per_tick) as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Idle backoff: spin, then pause, then sleep doubling up to a ceiling.
struct Backoff {
    empty: u32,
    sleep_us: u64,
    max_us: u64,
}

impl Backoff {
    fn reset(&mut self) {
        self.empty = 0;
        self.sleep_us = 8;
    }
    fn idle(&mut self) {
        self.empty = self.empty.saturating_add(1);
        if self.empty <= 256 {
        } else if self.empty <= 256 + 2048 {
            for _ in 0..32 {
                dpdk_env::pause();
            }
        } else {
            std::thread::sleep(Duration::from_micros(self.sleep_us.min(self.max_us)));
            self.sleep_us = (self.sleep_us * 2).min(self.max_us);
        }
    }
}

/// Waits (polling both sides, so each answers the other's and the switch's ARP) until
/// the client side knows its gateway's MAC. False on timeout or stop.
pub fn resolve(
    client: &mut Option<Client>,
    server: &mut Option<Server>,
    clock: &Clock,
    timeout: Duration,
    flood: bool,
    stop: &AtomicBool,
    c: &mut Counters,
) -> bool {
    let deadline = clock.now() + timeout.as_nanos() as u64;
    if let Some(s) = server.as_mut() {
        s.announce(c);
    }
    if let Some(cl) = client.as_mut() {
        cl.announce(flood, c);
    }
    loop {
        let now = clock.now();
        if let Some(s) = server.as_mut() {
            s.poll(now, c);
        }
        match client.as_mut() {
            Some(cl) => {
                cl.poll(now, c);
                if cl.gw_mac.is_some() {
                    return true;
                }
                cl.resolve(now, c);
            }
            None => return true,
        }
        if now >= deadline || stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs the load; `stop` (SIGINT/SIGTERM) ends the load window early.
pub fn run(
    client: &mut Option<Client>,
    server: &mut Option<Server>,
    load: &Load,
    clock: &Clock,
    stop: Arc<AtomicBool>,
    c: &mut Counters,
) -> Outcome {
    let start = clock.now();
    let load_end = start + load.duration_ns;
    let mut draining = false;
    let mut drain_started = 0u64;
    let mut end_window: Option<(Counters, u64)> = None;
    let window_start = *c;
    let mut next_timer = start;
    let mut next_background_timer = start;
    let mut next_background = start;
    let mut next_tick = start + 1_000_000_000;
    let mut last_tick_counters = *c;
    let mut timeline = Vec::new();
    let mut backoff = Backoff {
        empty: 0,
        sleep_us: 8,
        max_us: load.idle_max_sleep_us.max(1),
    };
    let interval = load.rate.map(|r| (1e9 / r.max(1e-3)) as u64);
    let mut next_open = start;
    let flood_interval = (load.syn_flood > 0.0).then(|| (1e9 / load.syn_flood) as u64);
    let mut next_flood = start;
    let server_only = client.is_none();
    loop {
        let now = clock.now();
        let mut work = 0usize;
        if let Some(s) = server.as_mut() {
            work += s.poll(now, c);
        }
        if let Some(cl) = client.as_mut() {
            work += cl.poll(now, c);
            if !draining {
                // Background connections ramp up at BACKGROUND_OPEN_RATE, not in one
                // burst that would overflow the tx rings (theirs and the switch's).
                let mut due = 0;
                while next_background <= now && due < 8 {
                    next_background += 1_000_000_000 / BACKGROUND_OPEN_RATE;
                    due += 1;
                }
                if next_background + 1_000_000_000 < now {
                    next_background = now;
                }
                work += cl.open_background(due, now, c);
                match interval {
                    Some(iv) => {
                        let mut opened = 0;
                        while next_open <= now && opened < 32 {
                            if !cl.open(now, c) {
                                c.drop_no_slot += 1;
                            }
                            next_open += iv;
                            opened += 1;
                        }
                        if next_open + 1_000_000_000 < now {
                            next_open = now; // fell a second behind: do not burst to catch up
                        }
                        work += opened;
                    }
                    None => {
                        let mut opened = 0;
                        while cl.active() < load.concurrency && opened < 32 {
                            if !cl.open(now, c) {
                                break;
                            }
                            opened += 1;
                        }
                        work += opened;
                    }
                }
                if let Some(fi) = flood_interval {
                    let mut n = 0;
                    while next_flood <= now && n < 32 {
                        next_flood += fi;
                        n += 1;
                    }
                    if next_flood + 1_000_000_000 < now {
                        next_flood = now;
                    }
                    if n > 0 {
                        cl.flood(n, c);
                        work += n as usize;
                    }
                }
            }
            if work > 0 {
                cl.output(now, c);
            }
        }
        if now >= next_timer {
            next_timer = now + 1_000_000;
            if let Some(cl) = client.as_mut() {
                cl.timers(now, c);
                if now >= next_background_timer {
                    next_background_timer = now + 10_000_000;
                    cl.background_timers(now, c);
                }
                cl.output(now, c);
            }
            if let Some(s) = server.as_mut() {
                s.timers(now, c);
                s.output(now, c);
            }
        }
        if now >= next_tick {
            let secs = (now - start) as f64 / 1e9;
            let d = c.delta(&last_tick_counters);
            let span = 1.0 + (now - next_tick) as f64 / 1e9;
            let active = client.as_ref().map(|x| x.active()).unwrap_or(0)
                + server.as_ref().map(|x| x.active()).unwrap_or(0);
            let (sc, st) = match client.as_mut() {
                Some(cl) => {
                    let r = (Percentiles::of(&cl.s_connect), Percentiles::of(&cl.s_ttfb));
                    cl.s_connect.clear();
                    cl.s_ttfb.clear();
                    r
                }
                None => (Percentiles::of(&Hist::new()), Percentiles::of(&Hist::new())),
            };
            let tick = Tick {
                t: (secs * 1000.0).round() / 1000.0,
                connections_per_s: d.conn_established as f64 / span,
                requests_per_s: d.req_ok as f64 / span,
                errors: d.error_total(),
                active: active as u64,
                tx_pps: (d.client_tx_pkts + d.server_tx_pkts) as f64 / span,
                rx_pps: (d.client_rx_pkts + d.server_rx_pkts) as f64 / span,
                connect_p50_us: sc.p50_us,
                connect_p99_us: sc.p99_us,
                ttfb_p50_us: st.p50_us,
                ttfb_p90_us: st.p90_us,
                ttfb_p99_us: st.p99_us,
            };
            if !load.quiet {
                eprintln!(
                    "[{:>5.1}s] conn/s {:>8.0} req/s {:>8.0} active {:>5} tx {:>8.0} pps rx {:>8.0} pps  ttfb p50 {:>7.0} us p99 {:>7.0} us  errors {} drops {}",
                    tick.t,
                    tick.connections_per_s,
                    tick.requests_per_s,
                    tick.active,
                    tick.tx_pps,
                    tick.rx_pps,
                    tick.ttfb_p50_us,
                    tick.ttfb_p99_us,
                    tick.errors,
                    d.drops().iter().map(|x| x.1).sum::<u64>()
                );
            }
            timeline.push(tick);
            last_tick_counters = *c;
            next_tick += 1_000_000_000;
            if next_tick <= now {
                next_tick = now + 1_000_000_000;
            }
        }
        let stopped = stop.load(Ordering::Relaxed);
        if !draining && (now >= load_end || stopped) {
            draining = true;
            drain_started = now;
            let mut snap = *c;
            if let Some(cl) = client.as_ref() {
                // what is open at the end of the window ends outside it
                let (connecting, waiting) = cl.in_flight();
                snap.conn_unfinished += connecting;
                snap.req_unfinished += waiting;
            }
            end_window = Some((snap, now));
            if let Some(cl) = client.as_mut() {
                cl.drain(now);
            }
        }
        if draining {
            let idle = client.as_ref().map(|x| x.active() == 0).unwrap_or(true);
            if (idle && !server_only)
                || now >= drain_started + load.drain_ns
                || stop.load(Ordering::Relaxed) && now >= drain_started + 200_000_000
            {
                break;
            }
        }
        if work > 0 {
            backoff.reset();
        } else {
            backoff.idle();
        }
    }
    let now = clock.now();
    if let Some(cl) = client.as_mut() {
        cl.finish(c);
    }
    let (win_end, win_end_t) = end_window.unwrap_or((*c, now));
    let window = win_end.delta(&window_start);
    let (connect, ttfb, response) = match client.as_ref() {
        Some(cl) => (
            Percentiles::of(&cl.h_connect),
            Percentiles::of(&cl.h_ttfb),
            Percentiles::of(&cl.h_resp),
        ),
        None => {
            let e = Percentiles::of(&Hist::new());
            (e, e, e)
        }
    };
    let ttfb_by_class = client
        .as_ref()
        .map(|cl| {
            crate::content::UrlClass::ALL
                .iter()
                .filter(|k| cl.h_ttfb_class[k.index()].count() > 0)
                .map(|k| {
                    (
                        k.name().to_string(),
                        Percentiles::of(&cl.h_ttfb_class[k.index()]),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Outcome {
        totals: *c,
        window,
        load_s: (win_end_t - start) as f64 / 1e9,
        elapsed_s: (now - start) as f64 / 1e9,
        connect,
        ttfb,
        ttfb_by_class,
        response,
        timeline,
    }
}
