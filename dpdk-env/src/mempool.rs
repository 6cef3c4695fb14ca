//! Packet-buffer pools (`rte_pktmbuf_pool_create`).
use std::ffi::CString;
use std::ptr::NonNull;

use crate::error::{DpdkError, Result};
use crate::ffi;

/// A pool of packet buffers. Must outlive every mbuf taken from it and every port
/// queue that receives into it (hold it in an `Arc` beside them).
pub struct Mempool {
    raw: NonNull<ffi::rte_mempool>,
    capacity: u32,
}

// SAFETY: DPDK mempools are safe to use from several threads (per-lcore caches plus a
// lock-free ring behind them); the handle is just a pointer to shared state.
unsafe impl Send for Mempool {}
// SAFETY: as above; no method takes &self to mutate Rust-side state.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `count` mbufs, each with `data_room` bytes (headroom included),
    /// and a per-lcore cache of `cache` mbufs.
    pub fn new(name: &str, count: u32, cache: u32, data_room: u16) -> Result<Mempool> {
        let cname = CString::new(name)
            .map_err(|_| DpdkError::new("mempool name with NUL", libc::EINVAL))?;
        // SAFETY: the name is a valid C string copied by DPDK; SOCKET_ID_ANY is -1.
        let raw =
            unsafe { ffi::rte_pktmbuf_pool_create(cname.as_ptr(), count, cache, 0, data_room, -1) };
        NonNull::new(raw)
            .map(|raw| Mempool {
                raw,
                capacity: count,
            })
            .ok_or_else(|| {
                DpdkError::from_rte_errno(format!("rte_pktmbuf_pool_create({name}, {count})"))
            })
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.raw.as_ptr()
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Mbufs currently free in the pool (including per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive for the lifetime of `self`.
        unsafe { ffi::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Mbufs currently out of the pool: held by queues, rings or the application.
    pub fn in_use(&self) -> u32 {
        // SAFETY: as above.
        unsafe { ffi::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the owner guarantees no mbuf or queue still refers to the pool.
        unsafe { ffi::rte_mempool_free(self.raw.as_ptr()) }
    }
}
