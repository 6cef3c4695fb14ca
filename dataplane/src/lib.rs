//! The webswitch dataplane: one poll loop per worker lcore over DPDK ports.
//!
//! `setup` turns a validated config into a running EAL, mempool, ports and workers;
//! `worker` is the l3fwd-shaped poll loop; `l2l3` holds the per-packet ARP/ICMP logic as
//! pure functions over byte slices (unit-tested without DPDK); `stats` the per-core
//! counters that the main thread reads without stopping anyone; `agents` what the
//! handoff agents' beats said; `cluster` an instance's part among several behind ECMP.
#![forbid(unsafe_code)]

pub mod addrs;
pub mod agents;
pub mod backoff;
pub mod clients;
pub mod cluster;
pub mod control;
pub mod eal_args;
pub mod hist;
pub mod l2l3;
pub mod role;
pub mod runtime;
pub mod setup;
pub mod stats;
pub mod web;
pub mod worker;
