//! The per-core flow table: connections in a fixed-capacity slab, found by either of
//! their two 4-tuples (the client side and, once connected, the backend side).
//!
//! One core owns the table; nothing here is shared or locked. Both tuples of a
//! connection hash to the same core by construction (see `steer`), so a lookup from
//! either direction finds the same slot. The capacity is fixed at creation: when it is
//! full, `insert` refuses and the caller counts it, instead of growing without bound
//! under a flood.
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

#[derive(Debug)]
pub struct FlowTable<C> {
    keys: HashMap<FlowKey, (ConnId, Side)>,
    slots: Vec<Option<C>>,
    free: Vec<ConnId>,
    /// Live slot ids, for timer sweeps (position kept in `live_pos`).
    live: Vec<ConnId>,
    live_pos: Vec<u32>,
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
        }
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
        if self.keys.contains_key(&client) {
            return Err(TableFull);
        }
        let id = self.free.pop().ok_or(TableFull)?;
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
        self.free.push(id);
        Some(conn)
    }

    /// The live connection ids (a snapshot to iterate while mutating the table).
    pub fn live_ids(&self, out: &mut Vec<ConnId>) {
        out.clear();
        out.extend_from_slice(&self.live);
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
}
