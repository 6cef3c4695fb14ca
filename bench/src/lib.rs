//! webswitch-bench: a pktgen-style load generator for webswitch. A client side emulates
//! many HTTP/1.1 clients over its own TCP, a server side emulates the backends; both run
//! on DPDK ports in one process. This library holds the parts that do no I/O (content
//! derivation, histograms, the report); the engine lives in the binary's modules.
#![forbid(unsafe_code)]

pub mod compare;
pub mod content;
pub mod engine;
pub mod hist;
pub mod plot;
pub mod report;
