//! One owning packet buffer type: `Mbuf` derefs to its bytes and frees itself on drop.
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::ffi;
use crate::mempool::Mempool;

/// An owned, single-segment packet buffer. Multi-segment mbufs received from a port are
/// linearised or dropped at the boundary (see `MbufBatch`), so the bytes are contiguous.
#[repr(transparent)]
pub struct Mbuf {
    raw: NonNull<ffi::rte_mbuf>,
}

// SAFETY: an Mbuf is uniquely owned (not shared, refcount 1 as far as Rust can reach),
// so moving it to another thread moves the only handle; DPDK frees it thread-safely.
unsafe impl Send for Mbuf {}

/// A received packet's L4 checksum as the port checked it (`RTE_MBUF_F_RX_L4_CKSUM_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxChecksum {
    /// Not checked (no offload, or the port could not tell): verify in software.
    Unknown,
    /// The port verified it.
    Good,
    /// The port found it wrong.
    Bad,
}

impl Mbuf {
    /// Takes a fresh, empty mbuf from `pool`; `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: the pool is alive; a non-NULL result is a fresh mbuf we now own.
        let raw = unsafe { ffi::ws_pktmbuf_alloc(pool.as_ptr()) };
        NonNull::new(raw).map(|raw| Mbuf { raw })
    }

    /// Wraps a raw mbuf. Caller guarantees it is valid and owned by nobody else.
    #[inline]
    pub(crate) unsafe fn from_raw(raw: *mut ffi::rte_mbuf) -> Mbuf {
        Mbuf {
            raw: NonNull::new(raw).expect("DPDK returned a NULL mbuf"),
        }
    }

    /// Gives up ownership without freeing (for handing to DPDK).
    #[inline]
    pub(crate) fn into_raw(self) -> *mut ffi::rte_mbuf {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        raw
    }

    /// Length of the packet data.
    #[inline]
    pub fn len(&self) -> usize {
        // SAFETY: self.raw is a valid mbuf we own.
        unsafe { ffi::ws_pktmbuf_data_len(self.raw.as_ptr()) as usize }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes that can still be appended.
    #[inline]
    pub fn tailroom(&self) -> usize {
        // SAFETY: as above.
        unsafe { ffi::ws_pktmbuf_tailroom(self.raw.as_ptr()) as usize }
    }

    /// Bytes that can still be prepended.
    #[inline]
    pub fn headroom(&self) -> usize {
        // SAFETY: as above.
        unsafe { ffi::ws_pktmbuf_headroom(self.raw.as_ptr()) as usize }
    }

    /// The RSS hash the NIC computed, if any (0 otherwise).
    #[inline]
    pub fn rss_hash(&self) -> u32 {
        // SAFETY: as above.
        unsafe { ffi::ws_mbuf_rss_hash(self.raw.as_ptr()) }
    }

    /// What the port found of the TCP/UDP checksum of a received packet (its
    /// `ol_flags`): only ports with the rx checksum offload enabled say anything.
    #[inline]
    pub fn rx_l4_checksum(&self) -> RxChecksum {
        // SAFETY: as above.
        let flags = unsafe { ffi::ws_mbuf_ol_flags(self.raw.as_ptr()) };
        match flags & u64::from(ffi::RTE_MBUF_F_RX_L4_CKSUM_MASK) {
            f if f == u64::from(ffi::RTE_MBUF_F_RX_L4_CKSUM_GOOD) => RxChecksum::Good,
            f if f == u64::from(ffi::RTE_MBUF_F_RX_L4_CKSUM_BAD) => RxChecksum::Bad,
            _ => RxChecksum::Unknown,
        }
    }

    /// Grows the data by `n` bytes at the end; returns the new bytes, or None without
    /// room (the mbuf is then unchanged).
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: valid owned mbuf; on success DPDK returns a pointer to n writable bytes
        // inside the data room, which live as long as the mbuf and are borrowed mutably.
        unsafe {
            let p = ffi::ws_pktmbuf_append(self.raw.as_ptr(), n16);
            (!p.is_null()).then(|| std::slice::from_raw_parts_mut(p.cast::<u8>(), n))
        }
    }

    /// Grows the data by `n` bytes at the front; None without headroom.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: as for append, the returned n bytes precede the old data.
        unsafe {
            let p = ffi::ws_pktmbuf_prepend(self.raw.as_ptr(), n16);
            (!p.is_null()).then(|| std::slice::from_raw_parts_mut(p.cast::<u8>(), n))
        }
    }

    /// Removes `n` bytes from the front. False (and unchanged) if shorter than `n`.
    #[inline]
    pub fn adj(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: valid owned mbuf; DPDK checks the length and returns NULL on failure.
        unsafe { !ffi::ws_pktmbuf_adj(self.raw.as_ptr(), n16).is_null() }
    }

    /// Removes `n` bytes from the end. False (and unchanged) if shorter than `n`.
    #[inline]
    pub fn trim(&mut self, n: usize) -> bool {
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: as for adj.
        unsafe { ffi::ws_pktmbuf_trim(self.raw.as_ptr(), n16) == 0 }
    }

    /// Sets the data length to `len` (shrinking, or growing into tailroom).
    pub fn set_len(&mut self, len: usize) -> bool {
        let cur = self.len();
        if len <= cur {
            self.trim(cur - len)
        } else {
            self.append(len - cur).is_some()
        }
    }

    /// Prefetches the first cache line of the packet data.
    #[inline]
    pub fn prefetch(&self) {
        // SAFETY: prefetch of any address is harmless; mtod is valid for an owned mbuf.
        unsafe { ffi::ws_prefetch0(ffi::ws_pktmbuf_mtod(self.raw.as_ptr())) }
    }
}

impl Deref for Mbuf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the first segment holds data_len initialised bytes at mtod, valid while
        // the mbuf lives; we own it, so nobody else writes them.
        unsafe {
            let p = ffi::ws_pktmbuf_mtod(self.raw.as_ptr()).cast::<u8>();
            std::slice::from_raw_parts(p, self.len())
        }
    }
}

impl DerefMut for Mbuf {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for deref, and `&mut self` makes the borrow unique.
        unsafe {
            let p = ffi::ws_pktmbuf_mtod(self.raw.as_ptr()).cast::<u8>();
            std::slice::from_raw_parts_mut(p, self.len())
        }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it goes back to its pool (segments and refcount included).
        unsafe { ffi::ws_pktmbuf_free(self.raw.as_ptr()) }
    }
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mbuf({} bytes)", self.len())
    }
}
