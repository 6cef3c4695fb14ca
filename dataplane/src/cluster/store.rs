//! The second way of sharing splice state (`cluster.state_store`): records written to a
//! memcached server every member reaches, and read from it on a miss, as the Yoda L7
//! balancer does with its TCP store (paper: "Yoda: A Highly Available Layer-7 Load
//! Balancer", EuroSys 2016). The other way, pushing each record to every member, is in
//! `worker/tcp/sync.rs`; both share the record layout (`tcpstate::cluster::sync`).
//!
//! Workers never block on the store: they queue operations here (`Store::submit`) and a
//! thread of the main process carries them out over one kernel TCP connection (through
//! the host's kernel: the exception path or a management network). A record is written
//! under two keys, its client tuple and its backend tuple, so a member finds it from
//! either side's first segment; writes use `noreply` (a record is not waited for: the
//! connection goes on as it would without a cluster). A lookup's answer, the record or
//! "none", goes to the inbox of the core that asked; that worker dropped the segment
//! meanwhile (its sender retransmits) and adopts the connection on the retransmission.
//!
//! While the store cannot be reached (at a start, before the kernel has its neighbour;
//! after a lost connection), operations wait in the queue and the thread tries again
//! every [`RETRY`]: a lookup unanswered is not a lookup that found nothing, and a worker
//! never takes a connection for a stray (and resets it) because the store was away.
//!
//! Text protocol, binary-safe values: `set <key> 0 <ttl> <len> noreply`, `delete <key>
//! noreply`, `get <key>` → `VALUE <key> <flags> <len>` + data, then `END`.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use serde_json::{json, Value};
use tcpstate::cluster::sync::{SpliceRecord, SyncKind};
use tcpstate::flow::FlowKey;

/// Operations waiting for the store thread (beyond, they are refused and counted).
const QUEUE_LEN: usize = 16_384;
/// Read and write timeouts: a store that does not answer must not hold lookups for long
/// (their segments are retransmitted meanwhile).
const IO_TIMEOUT: Duration = Duration::from_millis(500);
/// Connect timeout: long enough for the kernel's second ARP request and SYN (one second
/// after the first), which a start needs when the first went out before the exception
/// path carried the answer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(2_500);
/// After a failed connection, the next attempt.
const RETRY: Duration = Duration::from_millis(200);
/// How often one operation is tried on a fresh connection before it is given up.
const MAX_TRIES: u32 = 3;
/// How long the thread goes on after a stop to write the last records.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// What a worker asks of the store.
#[derive(Debug, Clone, Copy)]
pub enum StoreOp {
    /// Write (a `Splice` record) or delete (a `Forget`) under both tuples.
    Put(SpliceRecord),
    /// The record of a connection by one of its tuples: client side (`true`) or backend.
    /// The answer goes to worker `core`'s inbox.
    Get {
        key: FlowKey,
        client_side: bool,
        core: usize,
    },
}

/// A lookup's answer, for the worker that asked.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Found(SpliceRecord),
    /// The store holds nothing under the tuple (or nothing usable).
    None(FlowKey),
}

#[derive(Debug, Default)]
struct Counts {
    writes: AtomicU64,
    deletes: AtomicU64,
    lookups: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    refused: AtomicU64,
    connects: AtomicU64,
    /// Lookup round trips, summed (µs), and the largest.
    lookup_us_total: AtomicU64,
    lookup_us_max: AtomicU64,
}

pub struct Store {
    pub address: SocketAddrV4,
    pub ttl_s: u32,
    queue: ArrayQueue<StoreOp>,
    counts: Counts,
    connected: AtomicBool,
    /// The thread has carried out every write queued before the workers stopped (set
    /// once, at a stop: the `leaving` beat waits for it).
    drained: AtomicBool,
}

/// The key of a record under one of its tuples: `ws<c|b>:<remote>:<port>:<local>:<port>` in
/// hex, ASCII without spaces (memcached's rule), at most 37 bytes.
fn key(side: char, k: &FlowKey) -> String {
    format!(
        "ws{side}:{:08x}:{:04x}:{:08x}:{:04x}",
        u32::from(k.remote_ip),
        k.remote_port,
        u32::from(k.local_ip),
        k.local_port
    )
}

impl Store {
    pub fn new(address: SocketAddrV4, ttl_s: u32) -> Store {
        Store {
            address,
            ttl_s,
            queue: ArrayQueue::new(QUEUE_LEN),
            counts: Counts::default(),
            connected: AtomicBool::new(false),
            drained: AtomicBool::new(false),
        }
    }

    /// Queues `op` for the store thread; false when the queue is full.
    pub fn submit(&self, op: StoreOp) -> bool {
        let ok = self.queue.push(op).is_ok();
        if !ok {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// For `webswitchctl cluster`: the store's address and its counts.
    pub fn json(&self) -> Value {
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let lookups = get(&c.lookups);
        json!({
            "memcached": self.address.to_string(),
            "ttl_s": self.ttl_s,
            "connected": self.connected.load(Ordering::Relaxed),
            "connects": get(&c.connects),
            "writes": get(&c.writes),
            "deletes": get(&c.deletes),
            "lookups": lookups,
            "hits": get(&c.hits),
            "misses": get(&c.misses),
            "errors": get(&c.errors),
            "refused": get(&c.refused),
            "queued": self.queue.len(),
            "lookup_us_mean": get(&c.lookup_us_total).checked_div(lookups).unwrap_or(0),
            "lookup_us_max": get(&c.lookup_us_max),
        })
    }

    /// Whether every write queued before the stop reached the store (or was given up).
    pub fn drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }

    /// The store thread: until `stop`, carries out queued operations; each lookup's answer
    /// goes to `deliver` with the core that asked (for that core's inbox). After `stop`
    /// it goes on until the workers are out of their loops (`workers_done`) and the queue
    /// is empty, for at most [`DRAIN_LIMIT`]: the last records of a member that stops
    /// cleanly are what the member that adopts its connections reads.
    pub fn run(
        self: Arc<Self>,
        stop: &AtomicBool,
        workers_done: impl Fn() -> bool,
        deliver: impl Fn(Answer, usize),
    ) {
        let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
        let mut next_try = Instant::now();
        let mut idle = 0u32;
        let mut stopped_at: Option<Instant> = None;
        // An operation whose connection broke under it, and how often it was tried: it
        // goes first on the next connection, so the writes stay in order; given up (and
        // counted) after `MAX_TRIES`, so that no one operation holds the others forever.
        let mut waiting: Option<(StoreOp, u32)> = None;
        // Whether the last attempt to connect failed (logged once, not every retry).
        let mut unreachable = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                let since = *stopped_at.get_or_insert_with(Instant::now);
                let done = workers_done() && self.queue.is_empty() && waiting.is_none();
                if done || since.elapsed() >= DRAIN_LIMIT {
                    if let (true, Some((w, r))) = (done, conn.as_mut()) {
                        // The writes are `noreply`: handed to the kernel is not done. A
                        // command answered after them is (memcached carries out one
                        // connection's commands in order); the member that adopts our
                        // connections reads what they wrote.
                        if let Err(e) = Self::sync_point(w, r) {
                            tracing::warn!(store = %self.address, error = %e, "cluster state store: last writes not confirmed");
                        }
                    }
                    self.drained.store(true, Ordering::Release);
                    return;
                }
            }
            // Connected from the start, not at the first operation: the first lookups
            // come with the first adoption, when waiting costs the most.
            if conn.is_none() {
                if Instant::now() < next_try {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                conn = self.connect(!unreachable);
                unreachable = conn.is_none();
                if unreachable {
                    self.counts.errors.fetch_add(1, Ordering::Relaxed);
                    next_try = Instant::now() + RETRY;
                    continue;
                }
            }
            let (op, tries) = match waiting.take() {
                Some(w) => w,
                None => match self.queue.pop() {
                    Some(op) => (op, 0),
                    None => {
                        // Backs off to 1 ms: a lookup waits at most that long to start.
                        idle = (idle + 1).min(10);
                        std::thread::sleep(Duration::from_micros(100 * u64::from(idle)));
                        continue;
                    }
                },
            };
            idle = 0;
            if stopped_at.is_some() && matches!(op, StoreOp::Get { .. }) {
                continue; // no worker is left to adopt what it finds
            }
            let Some((w, r)) = conn.as_mut() else {
                waiting = Some((op, tries));
                continue;
            };
            let done = match op {
                StoreOp::Put(rec) => self.put(w, &rec),
                StoreOp::Get {
                    key,
                    client_side,
                    core,
                } => self.get(w, r, &key, client_side).map(|found| {
                    let answer = match found {
                        Some(rec) => Answer::Found(rec),
                        None => Answer::None(key),
                    };
                    deliver(answer, core);
                }),
            };
            if let Err(e) = done {
                tracing::warn!(store = %self.address, error = %e, "cluster state store: connection lost");
                self.counts.errors.fetch_add(1, Ordering::Relaxed);
                self.connected.store(false, Ordering::Relaxed);
                conn = None;
                next_try = Instant::now() + RETRY;
                // A write may have reached the store in part: written again whole (a
                // `set` replaces). A lookup is asked again.
                if tries + 1 < MAX_TRIES {
                    waiting = Some((op, tries + 1));
                }
            }
        }
    }

    /// Waits for memcached's answer to a `version` command, sent after every write before
    /// it on the connection.
    fn sync_point(w: &mut TcpStream, r: &mut BufReader<TcpStream>) -> std::io::Result<()> {
        w.write_all(b"version\r\n")?;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.starts_with("VERSION") {
                return Ok(());
            }
        }
    }

    /// A connection to the store; a failure is logged when `log` (the first of a row).
    fn connect(&self, log: bool) -> Option<(TcpStream, BufReader<TcpStream>)> {
        let s = TcpStream::connect_timeout(&SocketAddr::V4(self.address), CONNECT_TIMEOUT)
            .map_err(|e| {
                if log {
                    tracing::warn!(store = %self.address, error = %e, "cluster state store: cannot connect (trying again)");
                }
            })
            .ok()?;
        s.set_nodelay(true).ok()?;
        s.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
        s.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
        let r = BufReader::new(s.try_clone().ok()?);
        self.counts.connects.fetch_add(1, Ordering::Relaxed);
        self.connected.store(true, Ordering::Relaxed);
        Some((s, r))
    }

    fn put(&self, w: &mut TcpStream, rec: &SpliceRecord) -> std::io::Result<()> {
        let bytes = rec.encode();
        let mut msg = Vec::with_capacity(2 * (64 + bytes.len()));
        for k in [key('c', &rec.client), key('b', &rec.backend)] {
            match rec.kind {
                SyncKind::Splice => {
                    msg.extend_from_slice(
                        format!("set {k} 0 {} {} noreply\r\n", self.ttl_s, bytes.len()).as_bytes(),
                    );
                    msg.extend_from_slice(&bytes);
                    msg.extend_from_slice(b"\r\n");
                }
                SyncKind::Forget | SyncKind::Held => {
                    msg.extend_from_slice(format!("delete {k} noreply\r\n").as_bytes())
                }
            }
        }
        w.write_all(&msg)?;
        let c = match rec.kind {
            SyncKind::Splice => &self.counts.writes,
            SyncKind::Forget | SyncKind::Held => &self.counts.deletes,
        };
        c.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn get(
        &self,
        w: &mut TcpStream,
        r: &mut BufReader<TcpStream>,
        k: &FlowKey,
        client_side: bool,
    ) -> std::io::Result<Option<SpliceRecord>> {
        let started = Instant::now();
        let k = key(if client_side { 'c' } else { 'b' }, k);
        w.write_all(format!("get {k}\r\n").as_bytes())?;
        let mut found = None;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l == "END" {
                break;
            }
            let f: Vec<&str> = l.split(' ').collect();
            let len = match f.as_slice() {
                ["VALUE", _, _, len] => len.parse::<usize>().ok(),
                _ => None,
            };
            let Some(len) = len.filter(|&n| n <= 4096) else {
                return Err(std::io::Error::other(format!("unexpected answer {l:?}")));
            };
            let mut data = vec![0u8; len + 2];
            r.read_exact(&mut data)?;
            found = SpliceRecord::decode(&data[..len]).ok();
        }
        let us = started.elapsed().as_micros() as u64;
        self.counts.lookups.fetch_add(1, Ordering::Relaxed);
        self.counts.lookup_us_total.fetch_add(us, Ordering::Relaxed);
        self.counts.lookup_us_max.fetch_max(us, Ordering::Relaxed);
        let c = if found.is_some() {
            &self.counts.hits
        } else {
            &self.counts.misses
        };
        c.fetch_add(1, Ordering::Relaxed);
        Ok(found.filter(|r| r.kind == SyncKind::Splice && r.client.local_port != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn keys_are_memcached_safe_and_name_their_side() {
        let k = FlowKey {
            remote_ip: Ipv4Addr::new(10, 9, 3, 2),
            remote_port: 40000,
            local_ip: Ipv4Addr::new(10, 9, 5, 10),
            local_port: 80,
        };
        let c = key('c', &k);
        assert_eq!(c, "wsc:0a090302:9c40:0a09050a:0050");
        assert!(c.len() <= 250 && c.bytes().all(|b| b.is_ascii_graphic()));
        assert_ne!(key('b', &k), c);
    }
}
