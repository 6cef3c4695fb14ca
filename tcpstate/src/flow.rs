//! The per-core flow table: connections in a fixed-capacity slab, found by either of
//! their two 4-tuples (the client side and, once connected, the backend side).
//!
//! One core owns the table; nothing here is shared or locked. Both tuples of a
//! connection hash to the same core by construction (see `steer`), so a lookup from
//! either direction finds the same slot. The capacity is fixed at creation: when it is
//! full, `insert` refuses and the caller counts it, instead of growing without bound
//! under a flood.
//!
//! **Lingering entries.** A closed connection keeps its entry for a while (its keys still
//! find it, so late retransmissions are passed on), as TIME_WAIT does. The caller marks
//! such entries (`mark_lingering`); the table keeps them in the order they started to
//! linger, and `oldest_lingering` names the one that has lingered longest, so that a
//! full table (or a wanted tuple) can recycle it for a new connection instead of
//! refusing one, as Linux recycles TIME_WAIT sockets when their table overflows
//! (`tcp_max_tw_buckets`). Lingering is an optimisation, never a reason to refuse.
use std::collections::VecDeque;
use std::net::Ipv4Addr;

use hashbrown::HashMap;

/// A TCP 4-tuple seen from the switch: the peer's address and port, and ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub remote_ip: Ipv4Addr,
    pub remote_port: u16,
    pub local_ip: Ipv4Addr,
    pub local_port: u16,
}

/// Which side of a connection a tuple belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

/// A slot index in the table.
pub type ConnId = u32;

/// The table was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// The bytes a table holds, by part (allocated at creation; none later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableBytes {
    /// The connection slots (`Option<C>` each).
    pub slots: usize,
    /// The key map: two keys per connection, hashbrown's buckets and control bytes.
    pub keys: usize,
    /// Free list, live list and positions, generations, lingering marks and queue.
    pub bookkeeping: usize,
}

#[derive(Debug)]
pub struct FlowTable<C> {
    keys: HashMap<FlowKey, (ConnId, Side)>,
    slots: Vec<Option<C>>,
    free: Vec<ConnId>,
    /// Live slot ids, for listings (position kept in `live_pos`).
    live: Vec<ConnId>,
    live_pos: Vec<u32>,
    /// Per slot: bumped when the slot is freed, so a queued `(id, generation)` of an
    /// earlier occupant is recognised as stale.
    generation: Vec<u32>,
    /// Per slot: marked lingering (and queued in `lingering`).
    is_lingering: Vec<bool>,
    /// Lingering connections, oldest first; may hold stale entries of removed ones.
    lingering: VecDeque<(ConnId, u32)>,
}

impl<C> FlowTable<C> {
    /// A table for at most `capacity` connections (each with up to two keys).
    pub fn new(capacity: usize) -> Self {
        Self {
            keys: HashMap::with_capacity(capacity * 2),
            slots: (0..capacity).map(|_| None).collect(),
            free: (0..capacity as ConnId).rev().collect(),
            live: Vec::with_capacity(capacity),
            live_pos: vec![u32::MAX; capacity],
            generation: vec![0; capacity],
            is_lingering: vec![false; capacity],
            lingering: VecDeque::with_capacity(capacity),
        }
    }

    /// Whether every slot is taken (`insert` of a new key would refuse).
    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Live connections.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Stores a connection under its client-side key.
    pub fn insert(&mut self, client: FlowKey, conn: C) -> Result<ConnId, TableFull> {
        self.try_insert(client, conn).map_err(|(e, _)| e)
    }

    /// As `insert`, but a refused connection is handed back, so that what it owns (a
    /// head buffer from a bounded pool) can be returned instead of dropped.
    pub fn try_insert(&mut self, client: FlowKey, conn: C) -> Result<ConnId, (TableFull, C)> {
        if self.keys.contains_key(&client) {
            return Err((TableFull, conn));
        }
        let Some(id) = self.free.pop() else {
            return Err((TableFull, conn));
        };
        self.slots[id as usize] = Some(conn);
        self.keys.insert(client, (id, Side::Client));
        self.live_pos[id as usize] = self.live.len() as u32;
        self.live.push(id);
        Ok(id)
    }

    /// Adds the backend-side key of connection `id`. False if the key is taken.
    pub fn bind_backend(&mut self, id: ConnId, backend: FlowKey) -> bool {
        if self.keys.contains_key(&backend) {
            return false;
        }
        self.keys.insert(backend, (id, Side::Backend));
        true
    }

    /// Forgets a key (e.g. a backend tuple given up after a failed connect).
    pub fn unbind(&mut self, key: &FlowKey) {
        self.keys.remove(key);
    }

    pub fn contains_key(&self, key: &FlowKey) -> bool {
        self.keys.contains_key(key)
    }

    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<(ConnId, Side)> {
        self.keys.get(key).copied()
    }

    #[inline]
    pub fn get(&self, id: ConnId) -> Option<&C> {
        self.slots.get(id as usize).and_then(Option::as_ref)
    }

    #[inline]
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut C> {
        self.slots.get_mut(id as usize).and_then(Option::as_mut)
    }

    /// Removes connection `id` and the given keys of it; returns it.
    pub fn remove(&mut self, id: ConnId, keys: &[FlowKey]) -> Option<C> {
        let conn = self.slots.get_mut(id as usize)?.take()?;
        for k in keys {
            if self.keys.get(k).is_some_and(|(i, _)| *i == id) {
                self.keys.remove(k);
            }
        }
        let pos = self.live_pos[id as usize] as usize;
        let last = *self.live.last().expect("live holds id");
        self.live.swap_remove(pos);
        if last != id {
            self.live_pos[last as usize] = pos as u32;
        }
        self.live_pos[id as usize] = u32::MAX;
        self.generation[id as usize] = self.generation[id as usize].wrapping_add(1);
        self.is_lingering[id as usize] = false;
        self.free.push(id);
        // Lingering entries mostly go in the order they came (their linger is the same
        // length), so the stale ones are at the front: drop them now, which keeps the
        // queue no longer than the entries lingering plus a few removed out of turn.
        while self
            .lingering
            .front()
            .is_some_and(|&(i, g)| self.generation[i as usize] != g)
        {
            self.lingering.pop_front();
        }
        Some(conn)
    }

    /// Marks live connection `id` as lingering (closed, kept only to absorb late
    /// segments): from now on `oldest_lingering` may name it. Marking again does nothing.
    pub fn mark_lingering(&mut self, id: ConnId) {
        let i = id as usize;
        if self.slots.get(i).is_some_and(Option::is_some) && !self.is_lingering[i] {
            self.is_lingering[i] = true;
            self.lingering.push_back((id, self.generation[i]));
        }
    }

    /// Whether `id` is marked lingering.
    pub fn is_lingering(&self, id: ConnId) -> bool {
        self.is_lingering.get(id as usize).copied().unwrap_or(false)
    }

    /// The connection that has lingered longest, if any: the one to recycle when a new
    /// connection needs its slot. The caller removes it (`remove`) with its keys.
    pub fn oldest_lingering(&mut self) -> Option<ConnId> {
        while let Some(&(id, g)) = self.lingering.front() {
            if self.generation[id as usize] == g && self.is_lingering[id as usize] {
                return Some(id);
            }
            self.lingering.pop_front();
        }
        None
    }

    /// The live connection ids (a snapshot to iterate while mutating the table).
    pub fn live_ids(&self, out: &mut Vec<ConnId>) {
        out.clear();
        out.extend_from_slice(&self.live);
    }

    /// What the table holds in memory, by part.
    pub fn bytes(&self) -> TableBytes {
        use std::mem::size_of;
        TableBytes {
            slots: self.slots.capacity() * size_of::<Option<C>>(),
            keys: self.keys.allocation_size(),
            bookkeeping: (self.free.capacity()
                + self.live.capacity()
                + self.live_pos.capacity()
                + self.generation.capacity())
                * size_of::<u32>()
                + self.is_lingering.capacity()
                + self.lingering.capacity() * size_of::<(ConnId, u32)>(),
        }
    }

    /// Number of keys (two per connected flow, one before): for leak checks.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: u16) -> FlowKey {
        FlowKey {
            remote_ip: Ipv4Addr::new(10, 0, 0, 2),
            remote_port: p,
            local_ip: Ipv4Addr::new(10, 0, 0, 10),
            local_port: 80,
        }
    }

    #[test]
    fn insert_lookup_bind_remove() {
        let mut t: FlowTable<u32> = FlowTable::new(2);
        let a = t.insert(key(1), 100).unwrap();
        assert_eq!(t.lookup(&key(1)), Some((a, Side::Client)));
        assert!(t.bind_backend(a, key(1000)));
        assert!(!t.bind_backend(a, key(1000)), "a taken key is refused");
        assert_eq!(t.lookup(&key(1000)), Some((a, Side::Backend)));
        let b = t.insert(key(2), 200).unwrap();
        assert_eq!(t.insert(key(3), 300), Err(TableFull));
        assert_eq!(t.len(), 2);
        assert_eq!(t.remove(a, &[key(1), key(1000)]), Some(100));
        assert_eq!(t.lookup(&key(1)), None);
        assert_eq!(t.lookup(&key(1000)), None);
        assert_eq!(t.get(b), Some(&200));
        let c = t.insert(key(3), 300).unwrap();
        let mut ids = Vec::new();
        t.live_ids(&mut ids);
        ids.sort();
        let mut want = vec![b, c];
        want.sort();
        assert_eq!(ids, want);
        t.remove(b, &[key(2)]);
        t.remove(c, &[key(3)]);
        assert!(t.is_empty());
        assert_eq!(t.key_count(), 0);
    }

    #[test]
    fn duplicate_client_key_is_refused() {
        let mut t: FlowTable<u8> = FlowTable::new(4);
        t.insert(key(1), 1).unwrap();
        assert_eq!(t.insert(key(1), 2), Err(TableFull));
    }

    #[test]
    fn refused_connection_is_handed_back() {
        let mut t: FlowTable<String> = FlowTable::new(1);
        assert!(!t.is_full());
        t.try_insert(key(1), "a".into()).unwrap();
        assert!(t.is_full());
        // Full, and a duplicate key: either way what the connection owns comes back.
        assert_eq!(
            t.try_insert(key(2), "b".into()),
            Err((TableFull, "b".into()))
        );
        assert_eq!(
            t.try_insert(key(1), "c".into()),
            Err((TableFull, "c".into()))
        );
    }

    #[test]
    fn oldest_lingering_is_recycled_in_the_order_they_closed() {
        let mut t: FlowTable<u32> = FlowTable::new(3);
        let a = t.insert(key(1), 1).unwrap();
        let b = t.insert(key(2), 2).unwrap();
        let c = t.insert(key(3), 3).unwrap();
        assert_eq!(
            t.oldest_lingering(),
            None,
            "nothing lingers: a full table refuses"
        );
        // c closes first, then a; b stays open.
        t.mark_lingering(c);
        t.mark_lingering(a);
        t.mark_lingering(c); // again: no second place in the queue
        assert!(t.is_lingering(a) && !t.is_lingering(b));
        assert!(t.is_full());
        assert_eq!(t.oldest_lingering(), Some(c));
        assert_eq!(t.oldest_lingering(), Some(c), "named until removed");
        assert_eq!(t.remove(c, &[key(3)]), Some(3));
        let d = t.insert(key(4), 4).unwrap();
        assert!(
            !t.is_lingering(d),
            "a new occupant of the slot does not linger"
        );
        assert_eq!(t.oldest_lingering(), Some(a));
        t.remove(a, &[key(1)]);
        assert_eq!(t.oldest_lingering(), None, "b and d are open");
        t.mark_lingering(b);
        assert_eq!(t.oldest_lingering(), Some(b));
    }

    #[test]
    fn entries_removed_out_of_turn_are_skipped() {
        let mut t: FlowTable<u32> = FlowTable::new(4);
        let ids: Vec<_> = (0..4)
            .map(|i| t.insert(key(i), u32::from(i)).unwrap())
            .collect();
        for &id in &ids {
            t.mark_lingering(id);
        }
        // The second and third go early (a reused tuple), the slot of the second is taken
        // by a new connection at once: its stale queue entry must not name the newcomer.
        t.remove(ids[1], &[key(1)]);
        t.remove(ids[2], &[key(2)]);
        let fresh = t.insert(key(10), 10).unwrap();
        assert!(fresh == ids[1] || fresh == ids[2]);
        assert_eq!(t.oldest_lingering(), Some(ids[0]));
        t.remove(ids[0], &[key(0)]);
        assert_eq!(t.oldest_lingering(), Some(ids[3]));
        t.remove(ids[3], &[key(3)]);
        assert_eq!(t.oldest_lingering(), None);
        assert_eq!(t.get(fresh), Some(&10));
        assert!(t.lingering.is_empty(), "stale entries were dropped");
    }

    /// The overload that locked the switch up: connections arrive far faster than their
    /// linger ends. With recycling the table never refuses one, always recycles the one
    /// that lingered longest, and its queue stays bounded.
    #[test]
    fn overload_recycles_instead_of_refusing() {
        const CAP: usize = 64;
        let mut t: FlowTable<u64> = FlowTable::new(CAP);
        let mut order = std::collections::VecDeque::new(); // model: lingering, oldest first
        let mut rng = 0x1234_5678_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let k = |n: u64| FlowKey {
            remote_ip: Ipv4Addr::from((n >> 16) as u32 + 1),
            remote_port: n as u16,
            local_ip: Ipv4Addr::new(10, 0, 0, 10),
            local_port: 80,
        };
        let mut open: Vec<(ConnId, u64)> = Vec::new();
        for n in 0..100_000u64 {
            if t.is_full() {
                let old = t
                    .oldest_lingering()
                    .expect("a full table of closed flows recycles");
                let (want, _) = order.pop_front().expect("model has one too");
                assert_eq!(old, want);
                let v = *t.get(old).unwrap();
                assert_eq!(t.remove(old, &[k(v)]), Some(v));
            }
            let id = t.insert(k(n), n).expect("never refused");
            open.push((id, n));
            // Close a random open one (most connections end quickly); now and then a
            // lingering one is removed early (its linger ran out, or its tuple came back).
            if next() % 4 != 0 && !open.is_empty() {
                let i = (next() % open.len() as u64) as usize;
                let (id, v) = open.swap_remove(i);
                t.mark_lingering(id);
                order.push_back((id, v));
            }
            if next() % 16 == 0 && !order.is_empty() {
                let i = (next() % order.len() as u64) as usize;
                let (id, v) = order.remove(i).unwrap();
                assert_eq!(t.remove(id, &[k(v)]), Some(v));
            }
            assert!(
                t.lingering.len() <= 2 * CAP,
                "queue bounded: {}",
                t.lingering.len()
            );
            assert_eq!(t.len(), open.len() + order.len());
            // Only the open ones may fill the table: keep them under the capacity.
            if open.len() > CAP / 2 {
                let (id, v) = open.swap_remove(0);
                t.mark_lingering(id);
                order.push_back((id, v));
            }
        }
        assert_eq!(t.key_count(), t.len());
    }
}
