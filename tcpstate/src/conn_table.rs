//! The per-core table of connections as the worker keeps it: the flow table of `Conn`s
//! together with what has to follow every change of a connection, kept without
//! scanning the table: its deadline in a `TimerWheel`, the number of connections in
//! each state (the `conns_*` gauges), and the connections waiting for a backend's MAC.
//!
//! Reads go straight to the `FlowTable` (`Deref`). A connection can only be changed
//! through `get_mut` or `try_insert`, which note its id (once); `sync` then compares
//! each noted connection's deadline, state and backend with what the wheel, the counts
//! and the MAC list hold, and fixes what differs. No call into `Conn`, however many of
//! them set `deadline_ms`, can leave the wheel behind, and a connection whose idle
//! timer moves at every segment is rescheduled once per `sync`, not once per segment.
//! The caller syncs before it reads the counts and through `expire`, which syncs first.
use std::ops::Deref;

use crate::conn::{Conn, State};
use crate::flow::{ConnId, FlowKey, FlowTable, TableBytes, TableFull};
use crate::timer::TimerWheel;

/// What the table recorded of one connection at the last `sync`.
#[derive(Debug, Clone, Copy, Default)]
struct Track {
    /// The state it is counted in (`None`: not counted: no connection, or not synced).
    counted: Option<State>,
    /// Noted in `touched` since the last `sync`.
    touched: bool,
    /// In `waiting_mac` (perhaps no longer waiting: dropped at the next look).
    waiting_mac: bool,
}

/// The bytes a `ConnTable` holds, by part (allocated at creation; none later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTableBytes {
    pub flows: TableBytes,
    /// The timer wheel.
    pub timers: usize,
    /// What `sync` compares against, and the lists of ids to look at.
    pub tracking: usize,
}

#[derive(Debug)]
pub struct ConnTable {
    flows: FlowTable<Conn>,
    timers: TimerWheel,
    track: Vec<Track>,
    /// Ids handed out for change since the last `sync`, each once.
    touched: Vec<ConnId>,
    by_state: [u64; State::ALL.len()],
    /// Connections that were waiting for a backend's MAC when last synced.
    waiting_mac: Vec<ConnId>,
}

impl Deref for ConnTable {
    type Target = FlowTable<Conn>;

    /// Reads only: every change goes through the methods below, so that nothing
    /// changes behind the timers' and counts' back.
    fn deref(&self) -> &FlowTable<Conn> {
        &self.flows
    }
}

/// Connecting, but no local port yet: the backend's MAC was unknown when it tried.
fn waits_for_mac(c: &Conn) -> bool {
    c.state == State::Connecting && c.backend.is_some_and(|t| t.key.local_port == 0)
}

/// Notes `id` for the next `sync` (once).
#[inline]
fn note(track: &mut [Track], touched: &mut Vec<ConnId>, id: ConnId) {
    let t = &mut track[id as usize];
    if !t.touched {
        t.touched = true;
        touched.push(id);
    }
}

impl ConnTable {
    /// A table for at most `capacity` connections; its timers' clock at `now_ms`.
    pub fn new(capacity: usize, now_ms: u64) -> ConnTable {
        ConnTable {
            flows: FlowTable::new(capacity),
            timers: TimerWheel::new(capacity, now_ms),
            track: vec![Track::default(); capacity],
            // Each id at most once: never grown.
            touched: Vec::with_capacity(capacity),
            by_state: [0; State::ALL.len()],
            waiting_mac: Vec::with_capacity(capacity),
        }
    }

    fn touch(&mut self, id: ConnId) {
        note(&mut self.track, &mut self.touched, id);
    }

    /// As `FlowTable::try_insert`: a refused connection comes back whole, so that its
    /// head buffer returns to the pool (refusals are rare: a full table of open flows).
    #[allow(clippy::result_large_err)]
    pub fn try_insert(&mut self, client: FlowKey, conn: Conn) -> Result<ConnId, (TableFull, Conn)> {
        let id = self.flows.try_insert(client, conn)?;
        self.touch(id);
        Ok(id)
    }

    /// The connection, to change: its deadline and state are looked at again at the
    /// next `sync`.
    #[inline]
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        let ConnTable {
            flows,
            track,
            touched,
            ..
        } = self;
        let conn = flows.get_mut(id)?;
        note(track, touched, id);
        Some(conn)
    }

    /// As `FlowTable::remove`; its timer and its count go with it.
    pub fn remove(&mut self, id: ConnId, keys: &[FlowKey]) -> Option<Conn> {
        let conn = self.flows.remove(id, keys)?;
        self.timers.cancel(id);
        if let Some(s) = self.track[id as usize].counted.take() {
            self.by_state[s as usize] -= 1;
        }
        Some(conn)
    }

    pub fn bind_backend(&mut self, id: ConnId, backend: FlowKey) -> bool {
        self.flows.bind_backend(id, backend)
    }

    pub fn unbind(&mut self, key: &FlowKey) {
        self.flows.unbind(key)
    }

    pub fn mark_lingering(&mut self, id: ConnId) {
        self.flows.mark_lingering(id)
    }

    pub fn oldest_lingering(&mut self) -> Option<ConnId> {
        self.flows.oldest_lingering()
    }

    /// Brings the timers, the per-state counts and the MAC list up to date with every
    /// connection changed since the last call. O(connections changed).
    pub fn sync(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        for &id in &touched {
            let track = &mut self.track[id as usize];
            track.touched = false;
            // Removed since: `remove` took its timer and count already.
            let Some(c) = self.flows.get(id) else {
                continue;
            };
            if track.counted != Some(c.state) {
                if let Some(s) = track.counted {
                    self.by_state[s as usize] -= 1;
                }
                self.by_state[c.state as usize] += 1;
                track.counted = Some(c.state);
            }
            if !track.waiting_mac && waits_for_mac(c) {
                track.waiting_mac = true;
                self.waiting_mac.push(id);
            }
            self.timers
                .schedule(id, c.deadline_ms())
                .expect("the wheel has the table's capacity");
        }
        touched.clear();
        self.touched = touched;
    }

    /// Appends to `out` the connections whose deadline is `<= now_ms` (after a `sync`),
    /// each once. Their deadlines leave the wheel: whatever they become (the caller
    /// runs `Conn::on_timer`) is scheduled at the next `sync`. `out` with room for the
    /// table's capacity is never grown. (Never inlined: the callgrind recipes count it
    /// by name.)
    #[inline(never)]
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<ConnId>) {
        self.sync();
        let from = out.len();
        self.timers.expire(now_ms, out);
        for &id in &out[from..] {
            self.touch(id);
        }
    }

    /// Connections in `state`, as of the last `sync`.
    pub fn count(&self, state: State) -> u64 {
        self.by_state[state as usize]
    }

    /// Sets `out` to the connections waiting for a backend's MAC (as of the last
    /// `sync`), and forgets those no longer waiting. O(connections that waited).
    pub fn waiting_for_mac(&mut self, out: &mut Vec<ConnId>) {
        out.clear();
        let ConnTable {
            flows,
            track,
            waiting_mac,
            ..
        } = self;
        waiting_mac.retain(|&id| {
            let still = flows.get(id).is_some_and(waits_for_mac);
            if still {
                out.push(id);
            } else {
                track[id as usize].waiting_mac = false;
            }
            still
        });
    }

    /// What the table holds in memory, by part.
    pub fn bytes(&self) -> ConnTableBytes {
        use std::mem::size_of;
        ConnTableBytes {
            flows: self.flows.bytes(),
            timers: self.timers.bytes(),
            tracking: self.track.capacity() * size_of::<Track>()
                + (self.touched.capacity() + self.waiting_mac.capacity()) * size_of::<ConnId>(),
        }
    }

    /// The wheel, for its figures.
    pub fn timers(&self) -> &TimerWheel {
        &self.timers
    }
}

#[cfg(test)]
mod tests;
