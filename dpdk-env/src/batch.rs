//! Fixed-size bursts of mbufs, kept on the stack: the unit of rx, tx and ring transfer.
use crate::ffi;
use crate::mbuf::{data_start, prefetch0, Mbuf};

/// Packets per burst, as in DPDK's l3fwd.
pub const BURST: usize = 32;

/// How far ahead `drain` prefetches packet data.
const PREFETCH_AHEAD: usize = 3;

/// Up to [`BURST`] owned mbufs. Dropping a batch frees what it still holds in bulk.
pub struct MbufBatch {
    pub(crate) slots: [*mut ffi::rte_mbuf; BURST],
    pub(crate) len: usize,
}

// SAFETY: the batch uniquely owns the mbufs in slots[..len], like a Vec<Mbuf>.
unsafe impl Send for MbufBatch {}

impl Default for MbufBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl MbufBatch {
    pub const fn new() -> Self {
        Self {
            slots: [std::ptr::null_mut(); BURST],
            len: 0,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == BURST
    }

    /// Adds an mbuf; hands it back when the batch is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == BURST {
            return Err(m);
        }
        self.slots[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Moves every mbuf out in order, prefetching a few packets ahead of the consumer.
    /// Mbufs the iterator does not reach are freed when it is dropped.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_> {
        let end = self.len;
        self.len = 0;
        for i in 0..end.min(PREFETCH_AHEAD) {
            // SAFETY: slots[..end] hold valid mbufs owned by the batch.
            prefetch0(unsafe { data_start(self.slots[i]) })
        }
        Drain {
            batch: self,
            next: 0,
            end,
        }
    }

    /// Removes the first `n` mbufs (already handed to DPDK) and shifts the rest down.
    pub(crate) fn consume_front(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        self.slots.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

impl Drop for MbufBatch {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: slots[..len] are valid mbufs owned by the batch, freed exactly once.
            unsafe { ffi::rte_pktmbuf_free_bulk(self.slots.as_mut_ptr(), self.len as u32) }
            self.len = 0;
        }
    }
}

/// Iterator returned by [`MbufBatch::drain`].
pub struct Drain<'a> {
    batch: &'a mut MbufBatch,
    next: usize,
    end: usize,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.end {
            return None;
        }
        let ahead = self.next + PREFETCH_AHEAD;
        if ahead < self.end {
            // SAFETY: slots[next..end] are still owned by the drain and valid.
            prefetch0(unsafe { data_start(self.batch.slots[ahead]) })
        }
        let raw = self.batch.slots[self.next];
        self.next += 1;
        // SAFETY: each slot in next..end is yielded once; ownership moves to the Mbuf.
        Some(unsafe { Mbuf::from_raw(raw) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        let rest = self.end - self.next;
        if rest > 0 {
            // SAFETY: slots[next..end] were not yielded and are still owned here.
            unsafe {
                ffi::rte_pktmbuf_free_bulk(
                    self.batch.slots.as_mut_ptr().add(self.next),
                    rest as u32,
                )
            }
        }
    }
}
