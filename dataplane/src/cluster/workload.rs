//! This instance's workload factor (`cluster.balance: "workload"`, paper 001), measured
//! by the main thread from what the workers count, and handed to worker 0's beats
//! through `Membership::capacity`. What it means and how it is held steady is in
//! `tcpstate::cluster::load`.
use std::sync::atomic::Ordering;

use tcpstate::cluster::load::{Usage, Workload};

use super::members::Membership;
use crate::stats::{Counter, WorkerStats};

/// How often a measurement is taken (cycles over a shorter span are mostly noise).
const SAMPLE_MS: u64 = 500;

pub struct Meter {
    /// Per worker: busy and idle cycles at the last sample.
    last: Vec<(u64, u64)>,
    workload: Workload,
    next_ms: u64,
    max_flows_per_core: u64,
}

impl Meter {
    pub fn new(max_flows_per_core: u64) -> Meter {
        Meter {
            last: Vec::new(),
            workload: Workload::default(),
            next_ms: 0,
            max_flows_per_core: max_flows_per_core.max(1),
        }
    }

    /// From the main thread's loop: a measurement when one is due. Does nothing unless
    /// this instance reports its workload factor.
    pub fn tick(&mut self, cl: &Membership, workers: &[WorkerStats], now_ms: u64) {
        if !cl.reports_workload || now_ms < self.next_ms {
            return;
        }
        self.next_ms = now_ms + SAMPLE_MS;
        let now: Vec<(u64, u64)> = workers
            .iter()
            .map(|w| (w.get(Counter::BusyCycles), w.get(Counter::IdleCycles)))
            .collect();
        let first = self.last.len() != now.len();
        let cpu_permille = now
            .iter()
            .zip(self.last.iter().chain(std::iter::repeat(&(0, 0))))
            .map(|(&(busy, idle), &(busy0, idle0))| {
                let (b, i) = (busy.saturating_sub(busy0), idle.saturating_sub(idle0));
                (b * 1000).checked_div(b + i).unwrap_or(0) as u32
            })
            .max()
            .unwrap_or(0);
        let flows_permille = workers
            .iter()
            .map(|w| (w.get(Counter::FlowsLive) * 1000 / self.max_flows_per_core).min(1000) as u32)
            .max()
            .unwrap_or(0);
        self.last = now;
        if first {
            // Cycles since start say little of now.
            return;
        }
        let usage = Usage {
            cpu_permille,
            flows_permille,
        };
        let level = self.workload.update(now_ms, usage.available_permille());
        cl.available_permille
            .store(self.workload.smoothed_permille(), Ordering::Relaxed);
        cl.capacity.store(level, Ordering::Relaxed);
    }
}
