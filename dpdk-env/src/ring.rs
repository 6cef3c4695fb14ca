//! Multi-producer, single-consumer rings of mbufs: how a worker hands a packet to the
//! core that owns its flow when the NIC could not steer it there.
use std::ffi::{c_void, CString};
use std::ptr::NonNull;

use crate::batch::{MbufBatch, BURST};
use crate::error::{DpdkError, Result};
use crate::ffi;
use crate::mbuf::Mbuf;

pub struct MbufRing {
    raw: NonNull<ffi::rte_ring>,
}

// SAFETY: the ring is created multi-producer; enqueue may run on any thread.
unsafe impl Send for MbufRing {}
// SAFETY: as above. Dequeue is single-consumer: `dequeue_burst` takes `&self`, so the
// caller promises only the owning worker dequeues (documented on the method).
unsafe impl Sync for MbufRing {}

impl MbufRing {
    /// A ring with room for `size - 1` mbufs (`size` a power of two).
    pub fn new(name: &str, size: u32) -> Result<MbufRing> {
        let cname =
            CString::new(name).map_err(|_| DpdkError::new("ring name with NUL", libc::EINVAL))?;
        // SAFETY: valid name; flags select multi-producer enqueue, single-consumer dequeue.
        let raw = unsafe { ffi::rte_ring_create(cname.as_ptr(), size, -1, ffi::RING_F_SC_DEQ) };
        NonNull::new(raw)
            .map(|raw| MbufRing { raw })
            .ok_or_else(|| DpdkError::from_rte_errno(format!("rte_ring_create({name}, {size})")))
    }

    /// Enqueues one mbuf; hands it back when the ring is full.
    #[inline]
    pub fn enqueue(&self, m: Mbuf) -> std::result::Result<(), Mbuf> {
        let raw = m.into_raw();
        let objs = [raw.cast::<c_void>()];
        // SAFETY: the ring is alive and multi-producer; on success it owns the mbuf.
        let n = unsafe { ffi::ws_ring_mp_enqueue_burst(self.raw.as_ptr(), objs.as_ptr(), 1) };
        if n == 1 {
            Ok(())
        } else {
            // SAFETY: not enqueued, so still ours.
            Err(unsafe { Mbuf::from_raw(raw) })
        }
    }

    /// Moves as many mbufs as fit into `batch`. Only the ring's single consumer may call
    /// this (each ring belongs to one worker).
    #[inline]
    pub fn dequeue_burst(&self, batch: &mut MbufBatch) -> usize {
        let room = BURST - batch.len;
        if room == 0 {
            return 0;
        }
        // SAFETY: the ring holds only mbuf pointers we enqueued; they land in free slots
        // of the batch, which then owns them.
        let n = unsafe {
            ffi::ws_ring_sc_dequeue_burst(
                self.raw.as_ptr(),
                batch
                    .slots
                    .as_mut_ptr()
                    .add(batch.len)
                    .cast::<*mut c_void>(),
                room as u32,
            )
        } as usize;
        batch.len += n;
        n
    }

    pub fn count(&self) -> u32 {
        // SAFETY: reading the ring's counters is always safe.
        unsafe { ffi::ws_ring_count(self.raw.as_ptr()) }
    }
}

impl Drop for MbufRing {
    fn drop(&mut self) {
        let mut batch = MbufBatch::new();
        // Free whatever is still queued, then the ring itself.
        while self.dequeue_burst(&mut batch) > 0 {
            drop(std::mem::take(&mut batch));
        }
        // SAFETY: nobody else uses the ring once its owner drops it.
        unsafe { ffi::rte_ring_free(self.raw.as_ptr()) }
    }
}
