//! webswitch's window onto DPDK: the only crate with FFI and `unsafe`.
//!
//! `ffi` is the raw bindgen output over the system libdpdk (22.11) plus a C shim for
//! DPDK's static-inline functions. Everything else is a safe layer in the style of
//! capsule-rs: C return codes become `Result<_, DpdkError>` at the boundary, one owning
//! [`Mbuf`] type frees itself on drop, and bursts move through fixed-size [`MbufBatch`]es
//! so the hot loop never allocates.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod ffi;

mod batch;
mod doorbell;
mod eal;
mod error;
mod mbuf;
mod mempool;
mod port;
mod ring;

pub use batch::{MbufBatch, BURST};
pub use doorbell::{Doorbell, Ringer};
pub use eal::{cpu_available, pause, rdtsc, set_timer_slack_ns, tsc_hz, Eal};
pub use error::{DpdkError, Result};
pub use mbuf::{Mbuf, RxChecksum};
pub use mempool::Mempool;
pub use port::{LinkStatus, Port, PortConfig, PortId, PortStats};
pub use ring::MbufRing;
