//! Connection timers without scans: a hierarchical timing wheel keyed by `ConnId`.
//!
//! Each connection has at most one deadline (ms). `schedule`, `reschedule` (the same
//! call) and `cancel` are O(1); `expire(now)` hands out the connections whose deadline
//! is `<= now` and touches nothing else but the few entries that move down a level on
//! the way (each entry moves at most `LEVELS - 1` times in its life). The cost of a
//! timer is therefore flat in the number of connections, where a sweep over the flow
//! table costs one visit per connection every period.
//!
//! Like Firecracker's dumbo, the wheel is pure: time comes in as an argument, nothing is
//! logged or counted outside it, and all memory is taken at construction (`capacity`
//! ids, 16 bytes each, plus a fixed 1.5 KiB of slot heads).
//!
//! **Layout.** As the Linux kernel's and tokio's wheels: `LEVELS` levels of 64 slots;
//! a slot of level `L` spans `64^L` ms, so level 0 has one slot per millisecond and the
//! six levels together span 2^36 ms (2.2 years). A deadline goes to the level of the
//! highest 6-bit group in which it differs from the wheel's clock (`elapsed`), and to
//! the slot its own bits name at that level: every entry of level 0 is in the current
//! 64 ms, every entry of level 1 in a later 64 ms block of the current 4 s, and so on,
//! so the first occupied slot of the lowest occupied level is the next to expire. When
//! the clock reaches a slot of level `L > 0`, its entries move down to the level their
//! deadline now calls for; entries of a level-0 slot are all due. A deadline beyond the
//! top level's reach waits in the top level and goes back in there when its slot comes
//! round early (the exact deadline is kept, so it never fires early). A deadline
//! already reached when it is scheduled waits in a separate list that the next
//! `expire` hands out first.
//!
//! **Entries.** Per id: the exact deadline and the two links of the doubly linked list
//! of its slot. The first entry of a slot has no previous entry; its `prev` names the
//! slot instead (`HEAD_BIT` set), so that `cancel` finds the slot's head without
//! storing the slot separately.
use crate::flow::ConnId;

/// Levels of the wheel; 6 bits of the deadline per level.
const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS_PER_LEVEL: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = SLOTS_PER_LEVEL as u64 - 1;
/// The list of deadlines already reached when they were scheduled, after the wheel's slots.
const OVERDUE: usize = LEVELS * SLOTS_PER_LEVEL;
/// No entry (end of a list, empty slot).
const NIL: u32 = u32::MAX;
/// In `prev`: this entry is the first of slot `prev & !HEAD_BIT`.
const HEAD_BIT: u32 = 1 << 31;
/// In `prev`: the id has no deadline.
const UNSCHEDULED: u32 = u32::MAX;

/// An id at or beyond the wheel's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdOutOfRange;

/// What `expire` has visited since the wheel was made: the measure of its cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WheelWork {
    /// Slots whose time came (each visited once, then empty).
    pub slots: u64,
    /// Entries taken out of those slots or of the overdue list: handed out, or moved
    /// down a level.
    pub entries: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    deadline_ms: u64,
    next: u32,
    prev: u32,
}

#[derive(Debug)]
pub struct TimerWheel {
    /// Every deadline up to here has been handed out (or was overdue when scheduled).
    elapsed: u64,
    entries: Vec<Entry>,
    /// First entry of each slot (`NIL`: empty), then of the overdue list.
    heads: [u32; OVERDUE + 1],
    /// Per level, one bit per non-empty slot.
    occupied: [u64; LEVELS],
    scheduled: usize,
    work: WheelWork,
}

impl TimerWheel {
    /// A wheel for ids `0..capacity`, its clock at `now_ms`.
    pub fn new(capacity: usize, now_ms: u64) -> TimerWheel {
        // Ids and slot numbers share `prev`: ids must stay below HEAD_BIT.
        assert!(
            capacity < HEAD_BIT as usize,
            "timer wheel capacity {capacity}"
        );
        TimerWheel {
            elapsed: now_ms,
            entries: vec![
                Entry {
                    deadline_ms: 0,
                    next: NIL,
                    prev: UNSCHEDULED,
                };
                capacity
            ],
            heads: [NIL; OVERDUE + 1],
            occupied: [0; LEVELS],
            scheduled: 0,
            work: WheelWork::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Ids with a deadline.
    pub fn len(&self) -> usize {
        self.scheduled
    }

    pub fn is_empty(&self) -> bool {
        self.scheduled == 0
    }

    /// The deadline of `id`, if it has one.
    pub fn deadline(&self, id: ConnId) -> Option<u64> {
        self.entries
            .get(id as usize)
            .filter(|e| e.prev != UNSCHEDULED)
            .map(|e| e.deadline_ms)
    }

    /// What the wheel holds in memory (all of it taken at construction).
    pub fn bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + std::mem::size_of_val(&self.heads)
            + std::mem::size_of_val(&self.occupied)
    }

    /// What `expire` has visited so far.
    pub fn work(&self) -> WheelWork {
        self.work
    }

    /// Gives `id` the deadline `deadline_ms`, replacing the one it had. O(1).
    pub fn schedule(&mut self, id: ConnId, deadline_ms: u64) -> Result<(), IdOutOfRange> {
        let e = self.entries.get(id as usize).ok_or(IdOutOfRange)?;
        if e.prev != UNSCHEDULED {
            if e.deadline_ms == deadline_ms {
                return Ok(());
            }
            self.unlink(id);
        } else {
            self.scheduled += 1;
        }
        self.entries[id as usize].deadline_ms = deadline_ms;
        self.link(id);
        Ok(())
    }

    /// Takes away the deadline of `id`; false if it had none. O(1).
    pub fn cancel(&mut self, id: ConnId) -> bool {
        if self.deadline(id).is_none() {
            return false;
        }
        self.unlink(id);
        self.entries[id as usize].prev = UNSCHEDULED;
        self.scheduled -= 1;
        true
    }

    /// Appends to `out` every id whose deadline is `<= now_ms` (each once, in no
    /// particular order) and takes their deadlines away. `now_ms` must not go back; an
    /// earlier `now_ms` than a previous call's hands out nothing. `out` with room for
    /// `capacity` ids is never grown.
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<ConnId>) {
        if now_ms < self.elapsed {
            return;
        }
        // Overdue when scheduled: due at any `now_ms` from `elapsed` on.
        let mut id = std::mem::replace(&mut self.heads[OVERDUE], NIL);
        while id != NIL {
            let next = self.entries[id as usize].next;
            self.hand_out(id, out);
            id = next;
        }
        while let Some((level, slot, start)) = self.next_slot() {
            if start > now_ms {
                break;
            }
            self.work.slots += 1;
            // The clock moves to the slot's start, so that what is not due yet goes
            // back in relative to it (to a lower level, or the same top-level slot
            // one lap on).
            self.elapsed = start;
            let index = level * SLOTS_PER_LEVEL + slot;
            let mut id = std::mem::replace(&mut self.heads[index], NIL);
            self.occupied[level] &= !(1 << slot);
            while id != NIL {
                let next = self.entries[id as usize].next;
                if self.entries[id as usize].deadline_ms <= now_ms {
                    self.hand_out(id, out);
                } else {
                    self.work.entries += 1;
                    self.link(id);
                }
                id = next;
            }
        }
        self.elapsed = now_ms;
    }

    fn hand_out(&mut self, id: ConnId, out: &mut Vec<ConnId>) {
        self.work.entries += 1;
        self.entries[id as usize].prev = UNSCHEDULED;
        self.scheduled -= 1;
        out.push(id);
    }

    /// The first occupied slot of the lowest occupied level, and the time it starts.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        let level = self.occupied.iter().position(|&o| o != 0)?;
        let shift = SLOT_BITS * level as u32;
        // The clock's own slot of a level holds nothing due this lap (those deadlines
        // went to lower levels); at the top level it may hold deadlines a lap or more
        // on, so it is looked at last.
        let after_now = (((self.elapsed >> shift) + 1) & SLOT_MASK) as u32;
        let slot = (after_now
            + self.occupied[level]
                .rotate_right(after_now)
                .trailing_zeros()) as usize
            % SLOTS_PER_LEVEL;
        let level_span = 1u64 << (shift + SLOT_BITS);
        let level_start = self.elapsed & !(level_span - 1);
        let mut start = level_start + ((slot as u64) << shift);
        if start <= self.elapsed {
            // Only the top level holds slots behind the clock: deadlines beyond its
            // reach, one lap on.
            start += level_span;
        }
        Some((level, slot, start))
    }

    /// Puts scheduled `id` in the list its deadline calls for, relative to `elapsed`.
    fn link(&mut self, id: ConnId) {
        let deadline = self.entries[id as usize].deadline_ms;
        let index = if deadline <= self.elapsed {
            OVERDUE
        } else {
            // The highest 6-bit group in which the deadline and the clock differ.
            let differ = (self.elapsed ^ deadline) | SLOT_MASK;
            let level = ((63 - differ.leading_zeros()) / SLOT_BITS).min(LEVELS as u32 - 1);
            let slot = (deadline >> (SLOT_BITS * level)) & SLOT_MASK;
            self.occupied[level as usize] |= 1 << slot;
            level as usize * SLOTS_PER_LEVEL + slot as usize
        };
        let first = self.heads[index];
        if first != NIL {
            self.entries[first as usize].prev = id;
        }
        let e = &mut self.entries[id as usize];
        e.next = first;
        e.prev = HEAD_BIT | index as u32;
        self.heads[index] = id;
    }

    /// Takes scheduled `id` out of its list (its `prev` is left for the caller to set).
    fn unlink(&mut self, id: ConnId) {
        let Entry { next, prev, .. } = self.entries[id as usize];
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        if prev & HEAD_BIT != 0 {
            let index = (prev & !HEAD_BIT) as usize;
            self.heads[index] = next;
            if next == NIL && index < OVERDUE {
                self.occupied[index / SLOTS_PER_LEVEL] &= !(1 << (index % SLOTS_PER_LEVEL));
            }
        } else {
            self.entries[prev as usize].next = next;
        }
    }
}

#[cfg(test)]
mod tests;
