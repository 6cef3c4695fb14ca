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
        // A field read, not a call into the C shim: this runs several times per packet.
        // SAFETY: self.raw is a valid mbuf we own; the field's offset is checked against C's
        // (`tests` below).
        unsafe { usize::from((*self.raw.as_ptr()).data_len) }
    }

    /// The first data byte (`rte_pktmbuf_mtod`).
    #[inline]
    fn data_ptr(&self) -> *mut u8 {
        // SAFETY: self.raw is a valid mbuf we own.
        unsafe { data_start(self.raw.as_ptr()) }
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
        // SAFETY: as above (a field read).
        let flags = unsafe { (*self.raw.as_ptr()).ol_flags };
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
        prefetch0(self.data_ptr());
    }
}

/// `rte_pktmbuf_mtod` as field reads (the buffer plus the data offset), inlined where the
/// shim's function would cost a call per packet.
///
/// # Safety
/// `m` must point to a valid mbuf.
#[inline]
pub(crate) unsafe fn data_start(m: *mut ffi::rte_mbuf) -> *mut u8 {
    // SAFETY: the caller guarantees a valid mbuf; data_off lies within its buffer, and
    // both fields' offsets are checked against DPDK's C layout (`tests` below).
    unsafe {
        let m = &*m;
        m.buf_addr.cast::<u8>().add(usize::from(m.data_off))
    }
}

/// Asks the CPU to bring the cache line at `p` into every cache level (`rte_prefetch0`).
#[inline]
pub(crate) fn prefetch0(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address; SSE is baseline on x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl Deref for Mbuf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the first segment holds data_len initialised bytes at mtod, valid while
        // the mbuf lives; we own it, so nobody else writes them.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.len()) }
    }
}

impl DerefMut for Mbuf {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for deref, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), self.len()) }
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

#[cfg(test)]
mod tests {
    use crate::ffi;

    /// The fields `Mbuf` reads without the shim sit where DPDK's C compiler puts them.
    #[test]
    fn mbuf_fields_read_directly_are_laid_out_as_in_c() {
        let mut c = [0usize; 4];
        // SAFETY: writes four offsets into the array it is given, nothing else.
        unsafe { ffi::ws_mbuf_layout(c.as_mut_ptr()) };
        let rust = [
            std::mem::offset_of!(ffi::rte_mbuf, buf_addr),
            std::mem::offset_of!(ffi::rte_mbuf, data_off),
            std::mem::offset_of!(ffi::rte_mbuf, data_len),
            std::mem::offset_of!(ffi::rte_mbuf, ol_flags),
        ];
        assert_eq!(rust, c);
    }
}
