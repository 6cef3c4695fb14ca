//! Pure TCP/IP building blocks for webswitch: typed packet views and builders,
//! checksums, sequence arithmetic and the per-core tables. Nothing here does I/O,
//! logs or reads a clock: time and buffers come in as arguments, actions go out
//! as return values, so every piece is testable with byte fixtures.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod conn;
pub mod conn_table;
pub mod flow;
pub mod handoff;
pub mod neighbour;
pub mod presplice;
pub mod reasm;
pub mod segment;
pub mod splice;
pub mod steer;
pub mod syncookie;
pub mod timer;
pub mod warm;
pub mod wire;
#[cfg(test)]
mod xorshift;
