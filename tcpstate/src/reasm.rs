//! Bounded reassembly of a client's request head.
//!
//! Before the switch can route a request it must hold the whole head, which may
//! arrive in several segments, out of order, duplicated, overlapping or
//! retransmitted. [`HeadBuffer`] puts each segment's bytes at their offset from the
//! first data sequence number (the client's ISN + 1) in a buffer allocated once, and
//! keeps which byte ranges it holds: the in-order prefix, which is what the head
//! parser reads and what the switch acknowledges, plus up to [`MAX_RANGES`]
//! out-of-order ranges waiting for the holes before them.
//!
//! Nothing is ever overwritten: where a segment overlaps bytes already held, the
//! first copy wins (RFC 9293 leaves the choice to the receiver). That matters less
//! than it seems, because the switch forwards to the backend the very bytes it
//! inspected from this buffer, so routing and the backend can never see two
//! different versions of an ambiguous request.
use std::fmt;

use crate::wire::SeqNumber;

/// Out-of-order ranges held at once. A client that needs more holes than this is
/// either on a very lossy path or probing; the segment that would need another
/// range is refused ([`Insert::TooFragmented`]) and will be retransmitted.
pub const MAX_RANGES: usize = 8;

/// What [`HeadBuffer::insert`] did with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Insert {
    /// New bytes were stored; `contiguous` is the in-order prefix length after them
    /// (unchanged if they landed after a hole).
    Added { contiguous: usize },
    /// Every byte was already held (a retransmission or duplicate), or the segment
    /// was empty. A careful server answers with an ACK of [`HeadBuffer::ack_seq`].
    Duplicate,
    /// Nothing of the segment can be in this buffer: it ends before the first data
    /// byte (the SYN's number or earlier) or starts at or beyond the capacity (the
    /// right edge of any window this buffer could have advertised). Drop it; RFC
    /// 9293 §3.10.7.4 says to answer with an ACK.
    OutOfWindow,
    /// The segment runs past the capacity: what fits was stored and the rest
    /// dropped. Once the prefix fills the capacity without a complete head, the head
    /// is too large (431).
    Overflow,
    /// Storing the segment would need more than [`MAX_RANGES`] out-of-order ranges;
    /// nothing was stored.
    TooFragmented,
}

/// A fixed-capacity reassembly buffer for one connection's request head.
///
/// Offsets are relative to the base sequence number; offset `o` lives at
/// `buf[o]`. The buffer's bytes are never cleared: only held ranges are ever
/// exposed, so a pooled buffer's stale contents cannot leak into a new connection.
pub struct HeadBuffer {
    buf: Box<[u8]>,
    base: SeqNumber,
    /// Bytes held from offset 0 without a hole.
    contiguous: usize,
    /// Out-of-order ranges `[start, end)`: sorted, disjoint, not touching each
    /// other, all starting after `contiguous`. Offsets as `u32` (a buffer is at most
    /// 64 KiB): the buffer sits inside every connection, so its size is per flow.
    ranges: [(u32, u32); MAX_RANGES],
    n_ranges: usize,
}

impl fmt::Debug for HeadBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadBuffer")
            .field("capacity", &self.buf.len())
            .field("base", &self.base)
            .field("contiguous", &self.contiguous)
            .field("out_of_order", &&self.ranges[..self.n_ranges])
            .finish()
    }
}

impl HeadBuffer {
    /// A buffer holding up to `capacity` bytes (the longest head accepted, plus
    /// whatever the client may send after it before the switch stops it), allocated
    /// here once. Its base is sequence number 0 until [`reset`](Self::reset).
    pub fn new(capacity: usize) -> Self {
        assert!(
            u32::try_from(capacity).is_ok(),
            "a head buffer of {capacity} bytes"
        );
        HeadBuffer {
            buf: vec![0; capacity].into_boxed_slice(),
            base: SeqNumber(0),
            contiguous: 0,
            ranges: [(0, 0); MAX_RANGES],
            n_ranges: 0,
        }
    }

    /// Empties the buffer for a new connection whose first data byte is `base`
    /// (the client's ISN + 1).
    pub fn reset(&mut self, base: SeqNumber) {
        self.base = base;
        self.clear();
    }

    /// Forgets every byte held, keeping the base.
    pub fn clear(&mut self) {
        self.contiguous = 0;
        self.n_ranges = 0;
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The sequence number of the first data byte.
    pub fn base(&self) -> SeqNumber {
        self.base
    }

    /// The in-order bytes received so far: the head (or its beginning), and
    /// whatever followed it in the same segments.
    pub fn contiguous(&self) -> &[u8] {
        &self.buf[..self.contiguous]
    }

    pub fn contiguous_len(&self) -> usize {
        self.contiguous
    }

    /// Whether the in-order prefix fills the whole capacity.
    pub fn is_full(&self) -> bool {
        self.contiguous == self.buf.len()
    }

    /// What a careful server acknowledges: the first byte it does not have in order.
    /// Out-of-order bytes are held but not acknowledged (only SACK could say so).
    pub fn ack_seq(&self) -> SeqNumber {
        self.base + self.contiguous
    }

    /// The receive window to advertise from [`ack_seq`](Self::ack_seq): all the
    /// space after the in-order prefix, held out-of-order bytes included (they are
    /// within the window already promised). It is 0 only when the buffer is full;
    /// a server waiting for the rest of a head must not advertise a zero window, or
    /// the client would stall in persist mode. When the caller expresses it in a
    /// scaled window field it should round up for the same reason.
    pub fn window(&self) -> usize {
        self.buf.len() - self.contiguous
    }

    /// The out-of-order ranges held, as `(left, right)` sequence numbers in
    /// sequence order: the blocks a SACK option would report.
    pub fn out_of_order(&self) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + '_ {
        self.ranges[..self.n_ranges]
            .iter()
            .map(|&(s, e)| (self.base + s as usize, self.base + e as usize))
    }

    /// Stores a segment's `payload`, whose first byte has sequence number `seq`.
    ///
    /// Bytes before the base and bytes already held are skipped; bytes beyond the
    /// capacity are dropped. Sequence numbers are taken modulo 2^32 relative to the
    /// base, so a connection whose numbers wrap around 0 needs nothing special.
    pub fn insert(&mut self, seq: SeqNumber, payload: &[u8]) -> Insert {
        if payload.is_empty() {
            return Insert::Duplicate;
        }
        let cap = self.buf.len() as i64;
        let off = i64::from(seq.wrapping_diff(self.base));
        let end = off + payload.len() as i64;
        if end <= 0 || off >= cap {
            return Insert::OutOfWindow;
        }
        let overflow = end > cap;
        // In range now: 0 <= start, stop <= cap.
        let start = off.max(self.contiguous as i64) as usize;
        let stop = end.min(cap) as usize;
        let nothing_new = if overflow {
            Insert::Overflow
        } else {
            Insert::Duplicate
        };
        if start >= stop {
            return nothing_new;
        }

        // The out-of-order ranges that overlap or touch [start, stop) are
        // ranges[first..last]; they merge with it into one.
        let all = self.ranges; // a copy (64 bytes), so the buffer can be written below
        let ranges = &all[..self.n_ranges];
        let first = ranges.partition_point(|&(_, e)| (e as usize) < start);
        let last = ranges.partition_point(|&(s, _)| s as usize <= stop);
        let joins_prefix = start == self.contiguous;
        let new_count = self.n_ranges - (last - first) + usize::from(!joins_prefix);
        if new_count > MAX_RANGES {
            return Insert::TooFragmented;
        }

        // Copy into the gaps only: held bytes are never overwritten.
        let mut new_bytes = 0;
        let mut pos = start;
        for &(s, e) in &ranges[first..last] {
            let (s, e) = (s as usize, e as usize);
            if s > pos {
                self.copy_in(pos, s, off, payload);
                new_bytes += s - pos;
            }
            pos = pos.max(e);
        }
        if pos < stop {
            self.copy_in(pos, stop, off, payload);
            new_bytes += stop - pos;
        }
        if new_bytes == 0 {
            return nothing_new;
        }

        let (lo, hi) = if last > first {
            (
                (ranges[first].0 as usize).min(start),
                (ranges[last - 1].1 as usize).max(stop),
            )
        } else {
            (start, stop)
        };
        let mut merged = [(0u32, 0u32); MAX_RANGES];
        let mut n = 0;
        for &r in &ranges[..first] {
            merged[n] = r;
            n += 1;
        }
        if joins_prefix {
            // first == 0 here (every range starts after the prefix), and the next
            // range starts after `hi` (ranges never touch), so nothing else joins.
            self.contiguous = hi;
        } else {
            merged[n] = (lo as u32, hi as u32);
            n += 1;
        }
        for &r in &ranges[last..] {
            merged[n] = r;
            n += 1;
        }
        self.ranges = merged;
        self.n_ranges = n;

        if overflow {
            Insert::Overflow
        } else {
            Insert::Added {
                contiguous: self.contiguous,
            }
        }
    }

    /// Keeps only the first `len` in-order bytes: the rest (and every out-of-order
    /// range) is forgotten, as if never received. Presplice uses it when the buffer
    /// holds more than one request: the first goes to its backend, the others were
    /// copied elsewhere to wait for their turn.
    pub fn truncate(&mut self, len: usize) {
        self.contiguous = self.contiguous.min(len);
        self.n_ranges = 0;
    }

    /// Moves the base forward to `seq`, forgetting every byte before it and keeping
    /// every byte held after it, in order or not: the buffer then serves as a sliding
    /// store of what a reader has not taken yet. A `seq` at or before the base changes
    /// nothing. Costs a copy of what is held after `seq`.
    pub fn advance_to(&mut self, seq: SeqNumber) {
        let off = seq.wrapping_diff(self.base);
        if off <= 0 {
            return;
        }
        let off = off as usize;
        self.base = seq;
        let mut held = [(0usize, 0usize); MAX_RANGES + 1];
        let mut n = 0;
        if self.contiguous > 0 {
            held[0] = (0, self.contiguous);
            n = 1;
        }
        for &(s, e) in &self.ranges[..self.n_ranges] {
            held[n] = (s as usize, e as usize);
            n += 1;
        }
        let end = if n > 0 { held[n - 1].1 } else { 0 };
        if end > off {
            self.buf.copy_within(off..end, 0);
        }
        self.contiguous = 0;
        self.n_ranges = 0;
        for &(s, e) in &held[..n] {
            if e <= off {
                continue;
            }
            let (s, e) = (s.max(off) - off, e - off);
            if s == 0 {
                self.contiguous = e;
            } else {
                self.ranges[self.n_ranges] = (s as u32, e as u32);
                self.n_ranges += 1;
            }
        }
    }

    /// Copies the payload bytes for buffer offsets `[from, to)`; the payload starts
    /// at offset `payload_off`.
    fn copy_in(&mut self, from: usize, to: usize, payload_off: i64, payload: &[u8]) {
        let at = (from as i64 - payload_off) as usize;
        self.buf[from..to].copy_from_slice(&payload[at..at + (to - from)]);
    }
}

#[cfg(test)]
mod tests;
