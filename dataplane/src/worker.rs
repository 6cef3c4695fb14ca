//! The per-lcore poll loop, shaped like DPDK's l3fwd: receive a burst of 32 on the stack,
//! prefetch ahead, classify each frame, stage replies per port, flush the staged frames
//! when a burst was short or the drain timer fired, and back off when idle.
//!
//! Worker `i` polls rx queue `i` of every port that has one and transmits on tx queue
//! `i` of every port (setup gives each port one tx queue per worker), so no queue is
//! ever touched by two cores. A TCP segment whose flow belongs to another core (the port
//! had fewer rx queues than workers, or the NIC's hash disagreed with ours) goes to that
//! core through a ring; neighbour learnings are shared with the other cores through
//! small lock-free queues so every core's ARP table converges.
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use arc_swap::ArcSwap;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use dpdk_env::{rdtsc, Doorbell, Mbuf, MbufBatch, MbufRing, Mempool, Port, Ringer, BURST};
use tcpstate::neighbour::{Learned, NeighbourTable};
use tcpstate::wire::{ip_proto, EthernetFrame, MacAddr};

use crate::addrs::PortAddrs;
use crate::backoff::{Backoff, Idle};
use crate::l2l3::{self, Action, ARP_FRAME_LEN};
use crate::runtime::{BackendRoute, Runtime};
use crate::stats::{Counter, DropReason, WorkerStats};

mod beats;
mod cluster;
mod health;
mod tcp;
pub use health::{HEALTH_DOWN, HEALTH_UNKNOWN};
pub use tcp::{AccessRecord, ConnInfo, CoreReply, CoreRequest};

/// Shortest Ethernet frame on the wire (without FCS): frames we build are padded to it.
const MIN_FRAME_LEN: usize = 60;
/// The stop flag and the neighbour housekeeping are looked at every this many iterations.
const HOUSEKEEPING_EVERY: u32 = 1024;
/// At most one ARP request per unresolved gateway per this many milliseconds.
const ARP_RETRY_MS: u64 = 1000;
/// Neighbour learnings queued per peer core before further ones are dropped (the peer
/// will learn the neighbour itself from the next ARP it sees).
pub const NEIGHBOUR_QUEUE_LEN: usize = 256;

/// A neighbour learned by one core, for the others: (port index, IP, MAC).
pub type NeighbourUpdate = (usize, Ipv4Addr, MacAddr);

/// The longest sleep on a doorbell (see `Worker::idle_wait`).
const DOORBELL_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

/// How late the kernel may wake a sleeping worker (PR_SET_TIMERSLACK).
const WORKER_TIMER_SLACK_NS: u64 = 1000;

/// What every worker shares, read-only except through the lock-free parts.
pub struct Shared {
    pub ports: Vec<Port>,
    /// `kernel_taps[p]`: port `p`'s exception path to the host's kernel (`net_tap`, one
    /// rx and one tx queue per worker, as the ports), if it has one.
    pub kernel_taps: Vec<Option<Port>>,
    /// Mbufs the TAPs' receive rings hold for good (filled at start, refilled per frame).
    pub held_by_taps: u32,
    pub addrs: Vec<PortAddrs>,
    pub pool: Arc<Mempool>,
    /// One per worker.
    pub stats: Vec<WorkerStats>,
    /// `steer[w][p]`: TCP segments received on port `p` whose flow worker `w` owns.
    pub steer: Vec<Vec<MbufRing>>,
    /// `neighbours[w]`: learnings for worker `w` from the others.
    pub neighbours: Vec<ArrayQueue<NeighbourUpdate>>,
    pub stop: AtomicBool,
    pub tsc_hz: u64,
    pub settings: WorkerSettings,
    pub tcp: TcpSettings,
    /// The static part of the config (ports, VIPs, limits).
    pub config: rules::Config,
    /// Backends, pools and rules: replaced as a whole by the management thread.
    pub runtime: ArcSwap<Runtime>,
    /// `runtime`'s version, so a worker checks for a change with one relaxed load.
    pub runtime_version: AtomicU64,
    /// Health per backend id (`health::HEALTH_*`), written by worker 0's checks.
    pub health: Vec<AtomicU8>,
    /// Each backend id's handoff agent as its beats told it, written by whichever core
    /// received a beat (see `crate::agents`).
    pub agents: crate::agents::Agents,
    /// `backend_active[core][backend]`: connections each core has open per backend,
    /// published every sweep for `backends list` and drain reporting.
    pub backend_active: Vec<Box<[AtomicU32]>>,
    /// Requests from the management thread to each core (connections list/kill).
    pub ctl: Vec<ArrayQueue<CoreRequest>>,
    pub health_settings: rules::config::HealthConfig,
    /// Failed connects per backend id seen by any core since worker 0 last looked
    /// (passive health; an atomic add per failure, which is rare).
    pub passive_fails: Vec<AtomicU32>,
    /// Whether cores queue access log records (switched at run time by `log.access`).
    pub access_log: AtomicBool,
    /// `access[core]`: access log records for the main thread to write.
    pub access: Vec<ArrayQueue<AccessRecord>>,
    /// Connections open to each backend id over all cores, for `max_connections`
    /// (taken with a compare-and-swap at connect, released at close).
    pub backend_conns: Vec<AtomicU32>,
    /// Requests waiting in each pool's queue (by pool slot), over all cores.
    pub queue_len: Vec<AtomicU32>,
    /// `queue_head[core][pool slot]`: the ticket of the oldest request that core has
    /// queued for the pool (`u64::MAX`: none), so freed slots serve the oldest first.
    pub queue_head: Vec<Box<[AtomicU64]>>,
    /// Queue tickets: arrival order over all cores.
    pub queue_ticket: AtomicU64,
    /// Open connections per client address, for `tcp.max_conns_per_client`.
    pub client_conns: crate::clients::ClientConns,
    /// `sleeping[w]`: worker `w` is asleep on its doorbell, and `ringers[w]` wakes it (a
    /// peer that queued a segment for it rings; none when it has no doorbell).
    pub sleeping: Vec<AtomicBool>,
    /// Workers still in their loop (or flushing what it left): at a stop, worker 0 sends
    /// the cluster's `leaving` beat only once every worker is out (and the state store has
    /// written what they queued), so that no record of a connection they still moved on
    /// follows it.
    pub loops_running: std::sync::atomic::AtomicUsize,
    /// Set by worker 0 once the `leaving` beat is out: the other workers stop keeping
    /// the exception path going (`pump_exception_path`) and return.
    pub left: AtomicBool,
    pub ringers: Vec<Option<Arc<Ringer>>>,
    /// The other instances serving the VIPs and who owns which connection
    /// (`cluster.members`); None outside a cluster.
    pub cluster: Option<Arc<crate::cluster::members::Membership>>,
}

impl Shared {
    /// Wakes worker `w` if it sleeps on its doorbell: after queueing work for it.
    #[inline]
    pub fn wake(&self, w: usize) {
        if self.sleeping[w].load(Ordering::SeqCst) {
            if let Some(r) = &self.ringers[w] {
                r.ring();
            }
        }
    }
}

/// TCP settings every core's `TcpCore` is built from.
#[derive(Debug, Clone, Copy)]
pub struct TcpSettings {
    /// Seed of each core's SYN cookie secrets and random choices.
    pub seed: u64,
    pub max_flows: usize,
    /// Head buffers per core (allocated on demand up to this many).
    pub max_heads: usize,
    pub head_capacity: usize,
    pub cookie_rotate_ms: u64,
    pub params: tcpstate::conn::ConnParams,
}

/// The config values a worker needs, copied out of the config.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    pub arp_ttl_ms: u64,
    pub arp_max_entries: usize,
    pub gratuitous_arps: u32,
    pub idle_max_sleep_us: u64,
    pub idle_recent_ms: u64,
    pub idle_recent_sleep_us: u64,
    pub tx_drain_us: u64,
}

/// One worker's private state. Cache-aligned so two workers never share a line.
#[repr(align(64))]
pub struct Worker {
    index: usize,
    shared: Arc<Shared>,
    /// One per port: frames staged for that port's tx queue `index`.
    tx: Vec<MbufBatch>,
    tx_bytes: Vec<u64>,
    /// One per port: frames staged for the kernel through the port's exception TAP.
    to_kernel: Vec<MbufBatch>,
    /// Bit `p` set: port `p` has an exception TAP, which has the port's MAC; frames
    /// staged on it to that MAC go to the kernel (`stage`).
    kernel_ports: u64,
    neigh: Vec<NeighbourTable>,
    /// Per port: when we last asked for the gateway's MAC.
    gateway_asked_ms: Vec<Option<u64>>,
    backoff: Backoff,
    tcp: tcp::TcpCore,
    /// Worker 0 only: active health checks.
    health: health::HealthChecker,
    /// When worker 0 last asked for each backend's next hop.
    backend_asked_ms: Vec<Option<u64>>,
    start_tsc: u64,
    tsc_per_ms: u64,
    /// 100 µs in TSC cycles: a loop iteration at least this long counts as a stall.
    stall_tsc: u64,
    tx_drain_tsc: u64,
    /// Wakes the idle loop when a frame arrives or a peer queues work (see
    /// `dpdk_env::Doorbell`); without one the loop sleeps blind.
    doorbell: Option<Doorbell>,
    /// Worker 0: when this instance's next cluster beat is due.
    beats: cluster::BeatClock,
    /// How long an armed doorbell sleeps at most: frames and peers wake it, so only the
    /// timers (swept every 10 ms) bound it.
    idle_wait: std::time::Duration,
}

impl Worker {
    pub fn new(index: usize, shared: Arc<Shared>, doorbell: Option<Doorbell>) -> Worker {
        let s = shared.settings;
        let nports = shared.ports.len();
        let tsc_per_ms = (shared.tsc_hz / 1000).max(1);
        Worker {
            index,
            tx: (0..nports).map(|_| MbufBatch::new()).collect(),
            tx_bytes: vec![0; nports],
            to_kernel: (0..nports).map(|_| MbufBatch::new()).collect(),
            kernel_ports: (0..nports)
                .filter(|&p| shared.kernel_taps[p].is_some())
                .fold(0, |bits, p| bits | 1u64.checked_shl(p as u32).unwrap_or(0)),
            neigh: (0..nports)
                .map(|_| NeighbourTable::new(s.arp_max_entries, s.arp_ttl_ms))
                .collect(),
            gateway_asked_ms: vec![None; nports],
            backoff: Backoff::new(
                s.idle_max_sleep_us,
                s.idle_recent_ms,
                s.idle_recent_sleep_us,
            ),
            tcp: tcp::TcpCore::new(&shared, index),
            health: health::HealthChecker::new(shared.health_settings.clone()),
            backend_asked_ms: vec![None; crate::runtime::MAX_BACKENDS],
            start_tsc: rdtsc(),
            tsc_per_ms,
            stall_tsc: tsc_per_ms / 10,
            tx_drain_tsc: (shared.tsc_hz / 1_000_000).max(1) * s.tx_drain_us,
            doorbell,
            beats: cluster::BeatClock::default(),
            idle_wait: DOORBELL_WAIT,
            shared,
        }
    }

    fn stats(&self) -> &WorkerStats {
        &self.shared.stats[self.index]
    }

    /// Microseconds since the worker started, from the TSC (for latency histograms).
    fn now_us(&self) -> u64 {
        rdtsc().wrapping_sub(self.start_tsc) * 1000 / self.tsc_per_ms
    }

    fn now_ms(&self, tsc: u64) -> u64 {
        tsc.wrapping_sub(self.start_tsc) / self.tsc_per_ms
    }

    /// The TSC of the loop's `now_ms` (to the millisecond), for comparisons with TSC
    /// stamps other threads wrote, without reading the clock again per packet.
    fn tsc_of(&self, now_ms: u64) -> u64 {
        self.start_tsc.wrapping_add(now_ms * self.tsc_per_ms)
    }

    /// Runs until the stop flag is raised. Returns 0 (the lcore's exit code).
    pub fn run(mut self) -> i32 {
        // The short sleeps after work are tens of microseconds: the default slack of 50 µs
        // would more than double them.
        if !dpdk_env::set_timer_slack_ns(WORKER_TIMER_SLACK_NS) {
            tracing::warn!(
                worker = self.index,
                "timer slack not set; idle sleeps run long"
            );
        }
        let shared = Arc::clone(&self.shared);
        let queue = self.index as u16;
        let mut rx = MbufBatch::new();
        let mut steered = MbufBatch::new();
        if self.index == 0 {
            self.announce(self.now_ms(rdtsc()));
        }
        let mut last_drain = rdtsc();
        let mut iteration: u32 = 0;
        let mut prev_tsc = rdtsc();
        loop {
            let mut work = 0usize;
            let now_tsc = prev_tsc;
            let now_ms = self.now_ms(now_tsc);
            for p in 0..shared.ports.len() {
                let port = &shared.ports[p];
                if queue < port.rx_queues() {
                    let (n, chained) = port.rx_burst(queue, &mut rx);
                    if chained > 0 {
                        self.stats().drop(DropReason::RxChained, chained as u64);
                    }
                    if n > 0 {
                        work += n;
                        self.handle_burst(p, &mut rx, now_ms);
                    }
                }
                if let Some(tap) = &shared.kernel_taps[p] {
                    if queue < tap.rx_queues() {
                        let (n, _) = tap.rx_burst(queue, &mut rx);
                        if n > 0 {
                            work += n;
                            self.forward_from_kernel(p, &mut rx, now_ms);
                        }
                    }
                }
                let ring = &shared.steer[self.index][p];
                let n = ring.dequeue_burst(&mut steered);
                if n > 0 {
                    work += n;
                    self.stats().add(Counter::SteeredFromPeer, n as u64);
                    for m in steered.drain() {
                        let proto_at = EthernetFrame::<&[u8]>::HEADER_LEN + 9;
                        if m.get(proto_at) == Some(&ip_proto::UDP) {
                            // The one datagram a peer steers here: a handoff ack (l2l3
                            // checked it); segments received here never pay this check.
                            self.on_handoff_ack(m, now_ms);
                        } else {
                            self.handle_owned_tcp(p, m, now_ms);
                        }
                    }
                }
            }
            while let Some((p, ip, mac)) = shared.neighbours[self.index].pop() {
                self.neigh[p].learn(ip, mac, now_ms);
            }
            if shared.cluster.is_some() {
                work += self.drain_sync_inbox(now_ms);
            }
            if self.tcp_timers(now_ms) {
                // Due timers still wait to be fired: come back without sleeping.
                work += 1;
            }
            // Flush when the burst was short (no more coming right now) or on the timer,
            // so a trickle of packets is not held back.
            let short = work < BURST;
            if short || now_tsc.wrapping_sub(last_drain) >= self.tx_drain_tsc {
                self.flush_all();
                last_drain = now_tsc;
            }
            iteration = iteration.wrapping_add(1);
            if iteration.is_multiple_of(HOUSEKEEPING_EVERY) {
                if shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                self.housekeeping(now_ms);
            }
            let end_tsc = rdtsc();
            let spent = end_tsc.wrapping_sub(prev_tsc);
            // Stalls: iterations long enough to hold the next burst back (their work, not
            // a sleep, which comes after this).
            let took = end_tsc.wrapping_sub(now_tsc);
            if took >= self.stall_tsc {
                self.stats().add(Counter::LoopOver100us, 1);
                if took >= self.stall_tsc * 10 {
                    self.stats().add(Counter::LoopOver1ms, 1);
                }
            }
            if work > 0 {
                self.stats().add(Counter::BusyIterations, 1);
                self.stats().add(Counter::BusyCycles, spent);
                self.backoff.reset();
                if let Some(bell) = self.doorbell.as_mut().filter(|b| b.is_armed()) {
                    bell.disarm();
                    shared.sleeping[self.index].store(false, Ordering::SeqCst);
                }
                prev_tsc = end_tsc;
            } else {
                self.stats().add(Counter::IdleIterations, 1);
                match self.backoff.idle() {
                    Idle::Spin => {}
                    Idle::Pause(n) => (0..n).for_each(|_| dpdk_env::pause()),
                    Idle::Sleep(d) => {
                        // Housekeeping must not wait for 1024 slept iterations.
                        if shared.stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match self.doorbell.as_mut() {
                            // Armed, then one more poll (what came before arming rang
                            // nothing), and only then the sleep, ended by the first frame
                            // or a peer's ring. Peers read `sleeping` after queueing.
                            Some(bell) if !bell.is_armed() => {
                                shared.sleeping[self.index].store(true, Ordering::SeqCst);
                                bell.arm();
                            }
                            // Stays armed and `sleeping` until work comes: a peer
                            // may ring at any time in between, which costs a wake-up.
                            Some(bell) => bell.wait(self.idle_wait),
                            None => std::thread::sleep(d),
                        }
                    }
                }
                prev_tsc = rdtsc();
                self.stats()
                    .add(Counter::IdleCycles, prev_tsc.wrapping_sub(end_tsc) + spent);
            }
        }
        self.close_warm(self.now_ms(rdtsc()));
        self.flush_all();
        shared.loops_running.fetch_sub(1, Ordering::AcqRel);
        // With a state store, its last writes and the answer that they are done go
        // through the exception path, which the workers serve: each keeps it going
        // until the `leaving` beat is out (bounded).
        let pump = shared.cluster.as_ref().is_some_and(|c| c.store.is_some());
        let give_up = std::time::Instant::now() + std::time::Duration::from_millis(1500);
        if let Some(cl) = shared.cluster.as_ref().filter(|_| self.index == 0) {
            // Every worker's last records before our `leaving`: the others' out of their
            // loops and flushed, and with a store, written there (bounded: a stuck worker
            // or store must not keep the others from hearing that we leave).
            let quiet = || {
                shared.loops_running.load(Ordering::Acquire) == 0
                    && cl.store.as_ref().is_none_or(|s| s.drained())
            };
            while !quiet() && std::time::Instant::now() < give_up {
                if pump {
                    self.pump_exception_path(queue, &mut rx);
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            // The other members drop us now rather than after `dead_after_ms`.
            self.cluster_beats(self.now_ms(rdtsc()), true);
            self.flush_all();
            shared.left.store(true, Ordering::Release);
        } else if pump {
            while !shared.left.load(Ordering::Acquire) && std::time::Instant::now() < give_up {
                self.pump_exception_path(queue, &mut rx);
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        self.tcp.log_open(self.index, 32);
        0
    }

    /// Classifies a received burst and routes each frame: replies to the port's tx
    /// stage, foreign TCP flows to their core, the rest freed with a counted reason.
    /// Out of line so callgrind can count it alone (bench/callgrind-l2l3.sh).
    #[inline(never)]
    fn handle_burst(&mut self, p: usize, rx: &mut MbufBatch, now_ms: u64) {
        // Field borrows, not an Arc clone: a refcount shared by every core would bounce its
        // cache line between them on each burst.
        let cores = self.shared.stats.len();
        for m in rx.drain() {
            self.stats().add(Counter::RxPackets, 1);
            self.stats().add(Counter::RxBytes, m.len() as u64);
            self.handle_frame(p, m, now_ms, cores, false);
        }
    }

    /// One frame received on port `p`, or (`from_kernel`) one the host's kernel sent
    /// out of the port's exception TAP to an address of the switch. Answers go back the
    /// way the frame came: to the kernel, `stage` tells by their destination MAC.
    /// Inlined into `handle_burst`: a call per received frame costs the packet path
    /// instructions its budget counts.
    #[inline(always)]
    fn handle_frame(
        &mut self,
        p: usize,
        mut m: Mbuf,
        now_ms: u64,
        cores: usize,
        from_kernel: bool,
    ) {
        let (action, learn) = process_packet(
            &mut m,
            &self.shared.addrs[p],
            &mut self.neigh[p],
            now_ms,
            cores,
        );
        if let Some(l) = learn {
            self.learned(p, l);
        }
        match action {
            Action::Drop(reason) => self.stats().drop(reason, 1),
            Action::Absorbed => self.stats().add(Counter::ArpAbsorbed, 1),
            Action::ArpAnswered => {
                self.stats().add(Counter::ArpRequestsAnswered, 1);
                self.stage(p, m);
            }
            Action::EchoAnswered { len } => {
                self.stats().add(Counter::IcmpEchoAnswered, 1);
                m.set_len(len);
                self.stage(p, m);
            }
            // Never back where it came from.
            Action::ToKernel if from_kernel => self.stats().drop(DropReason::NotForUs, 1),
            Action::ToKernel => self.stage_for_kernel(p, m),
            Action::ClusterBeat { src, at, len } => {
                let mac = cluster::frame_src_mac(&m);
                self.on_cluster_beat(src, mac, m.get(at..at + len).unwrap_or(&[]));
            }
            Action::AgentBeat { src, at, len } => {
                self.on_agent_beat(src, m.get(at..at + len).unwrap_or(&[]));
            }
            Action::Tcp { core } if core == self.index => self.handle_owned_tcp(p, m, now_ms),
            Action::HandoffAck { core } if core == self.index => self.on_handoff_ack(m, now_ms),
            // A steered ack is told from a segment by its protocol where the owner
            // drains its ring.
            Action::Tcp { core } | Action::HandoffAck { core } => {
                match self.shared.steer[core][p].enqueue(m) {
                    Ok(()) => {
                        self.shared.wake(core);
                        self.stats().add(Counter::SteeredToPeer, 1)
                    }
                    Err(m) => {
                        drop(m);
                        self.stats().drop(DropReason::PeerRingFull, 1);
                    }
                }
            }
        }
    }

    fn learned(&mut self, p: usize, l: l2l3::Learn) {
        match l.outcome {
            Learned::New => self.stats().add(Counter::NeighboursLearned, 1),
            Learned::Changed => self.stats().add(Counter::NeighbourChanged, 1),
            Learned::Refreshed => {}
            Learned::TableFull => {
                self.stats().drop(DropReason::ArpTableFull, 1);
                return;
            }
        }
        if l.outcome != Learned::Refreshed {
            // Best effort: a peer whose queue is full learns the neighbour from its own
            // traffic or at the next refresh.
            for (w, q) in self.shared.neighbours.iter().enumerate() {
                if w != self.index {
                    let _ = q.push((p, l.ip, l.mac));
                }
            }
        }
    }

    /// At a stop, between leaving the loop and the `leaving` beat: frames between the
    /// host's kernel and the ports keep flowing (the state store's last writes go out
    /// through the exception path, and memcached's answer comes back through it) and ARP
    /// is answered; every other frame is dropped (`drops.cluster_stopping`), so that
    /// nothing moves a connection on after its last record (its peers retransmit to the
    /// member that adopts it).
    fn pump_exception_path(&mut self, queue: u16, rx: &mut MbufBatch) {
        let shared = Arc::clone(&self.shared);
        let now_ms = self.now_ms(rdtsc());
        let cores = shared.stats.len();
        for p in 0..shared.ports.len() {
            let Some(tap) = &shared.kernel_taps[p] else {
                continue;
            };
            if queue < tap.rx_queues() && tap.rx_burst(queue, rx).0 > 0 {
                // Out as it is: nothing the kernel sends the switch itself is taken now.
                for m in rx.drain() {
                    self.stats().add(Counter::ExceptionFromKernel, 1);
                    self.stage_wire(p, m);
                }
            }
            let port = &shared.ports[p];
            if queue >= port.rx_queues() || port.rx_burst(queue, rx).0 == 0 {
                continue;
            }
            for mut m in rx.drain() {
                let (action, learn) =
                    process_packet(&mut m, &shared.addrs[p], &mut self.neigh[p], now_ms, cores);
                if let Some(l) = learn {
                    self.learned(p, l);
                }
                match action {
                    Action::ToKernel => self.stage_for_kernel(p, m),
                    Action::ArpAnswered => self.stage(p, m),
                    Action::Absorbed => self.stats().add(Counter::ArpAbsorbed, 1),
                    Action::Drop(reason) => self.stats().drop(reason, 1),
                    _ => self.stats().drop(DropReason::ClusterStopping, 1),
                }
            }
        }
        self.flush_all();
    }

    /// Stages a frame for transmission on port `p`, flushing first if the stage is full;
    /// on a port with an exception TAP, a frame to the port's own MAC is for the host's
    /// kernel, which has that MAC (a local backend, or an answer to the kernel), and goes
    /// to the TAP.
    fn stage(&mut self, p: usize, m: Mbuf) {
        // Ports without a TAP (the usual case) pay one bit test.
        // (DPDK numbers ports below RTE_MAX_ETHPORTS, 32 in Debian's build; past 64 the
        // bit only pre-filters, `to_own_mac` decides.)
        if self.kernel_ports.wrapping_shr(p as u32) & 1 != 0 && self.to_own_mac(p, &m) {
            self.stats().add(Counter::LocalNodeTx, 1);
            self.stage_for_kernel(p, m);
            return;
        }
        self.stage_wire(p, m);
    }

    /// Whether frame `m` is addressed to port `p`'s own MAC (its TAP's, so the kernel's).
    #[inline(never)]
    fn to_own_mac(&self, p: usize, m: &Mbuf) -> bool {
        m.get(..6) == Some(&self.shared.addrs[p].mac.0[..])
    }

    /// Stages a frame for port `p`'s tx queue as it is.
    #[inline(always)]
    fn stage_wire(&mut self, p: usize, m: Mbuf) {
        if self.tx[p].is_full() {
            self.flush(p);
        }
        self.tx_bytes[p] += m.len() as u64;
        if let Err(m) = self.tx[p].push(m) {
            // Unreachable after the flush above, but never leak: count and free.
            self.tx_bytes[p] -= m.len() as u64;
            self.stats().drop(DropReason::TxFull, 1);
        }
    }

    fn flush_all(&mut self) {
        for p in 0..self.tx.len() {
            if !self.tx[p].is_empty() {
                self.flush(p);
            }
            if !self.to_kernel[p].is_empty() {
                self.flush_kernel(p);
            }
        }
    }

    /// What the host's kernel sent out of port `p`'s exception TAP: out of the port as
    /// it is (the TAP has the port's MAC, so the LAN sees one station).
    fn forward_from_kernel(&mut self, p: usize, rx: &mut MbufBatch, now_ms: u64) {
        let cores = self.shared.stats.len();
        for m in rx.drain() {
            self.stats().add(Counter::ExceptionFromKernel, 1);
            // To an address of the switch's (a local backend's answer, its ARP for our
            // backend-facing address): handled here as if received on the port, since
            // on the wire nothing would bring it back.
            if for_the_switch(&m, &self.shared.addrs[p]) {
                self.stats().add(Counter::LocalNodeRx, 1);
                self.handle_frame(p, m, now_ms, cores, true);
            } else {
                self.stage_wire(p, m);
            }
        }
    }

    /// Stages a frame for the host's kernel on port `p`'s exception TAP.
    fn stage_for_kernel(&mut self, p: usize, m: Mbuf) {
        if self.to_kernel[p].is_full() {
            self.flush_kernel(p);
        }
        self.stats().add(Counter::ExceptionToKernel, 1);
        if self.to_kernel[p].push(m).is_err() {
            // Unreachable after the flush above; the frame is freed, counted.
            self.stats().drop(DropReason::KernelTxFull, 1);
        }
    }

    /// Hands the kernel-bound stage to the TAP; what it refuses is dropped and counted
    /// (a kernel that does not keep up loses frames, as a NIC's would).
    fn flush_kernel(&mut self, p: usize) {
        let staged = self.to_kernel[p].len();
        let sent = match &self.shared.kernel_taps[p] {
            Some(tap) => tap.tx_burst(self.index as u16, &mut self.to_kernel[p]),
            None => 0,
        };
        if sent < staged {
            self.to_kernel[p].drain().for_each(drop);
            self.stats()
                .drop(DropReason::KernelTxFull, (staged - sent) as u64);
        }
    }

    /// Hands the stage to the driver; what it refuses is dropped and counted, because
    /// holding it would only delay newer frames behind a full ring.
    #[inline(never)]
    fn flush(&mut self, p: usize) {
        let staged = self.tx[p].len();
        let sent = self.shared.ports[p].tx_burst(self.index as u16, &mut self.tx[p]);
        let mut bytes = std::mem::take(&mut self.tx_bytes[p]);
        if sent < staged {
            for m in self.tx[p].drain() {
                bytes -= m.len() as u64;
            }
            self.stats()
                .drop(DropReason::TxFull, (staged - sent) as u64);
        }
        self.stats().add(Counter::TxPackets, sent as u64);
        self.stats().add(Counter::TxBytes, bytes);
    }

    /// Worker 0 at start: gratuitous ARP for every address we answer for (so neighbours
    /// and switches learn our MAC at once) and a request for each gateway.
    fn announce(&mut self, now_ms: u64) {
        let shared = Arc::clone(&self.shared);
        for _ in 0..shared.settings.gratuitous_arps {
            for (p, port) in shared.addrs.iter().enumerate() {
                for ip in port.all_addresses() {
                    if self.send_arp_request(p, ip, ip) {
                        self.stats().add(Counter::GratuitousArpSent, 1);
                    }
                }
            }
        }
        self.housekeeping(now_ms);
        self.flush_all();
    }

    /// Expires neighbours and asks again for any gateway or backend next hop we do not
    /// know (worker 0 only; the others learn the answers through the queues).
    fn housekeeping(&mut self, now_ms: u64) {
        let shared = Arc::clone(&self.shared);
        if self.index == 0 {
            let rt = shared.runtime.load();
            for (b, route) in rt.routes.iter().enumerate() {
                if rt.removed[b] {
                    continue;
                }
                if self.route_mac(route, now_ms).is_some() {
                    continue;
                }
                let due = self.backend_asked_ms[b]
                    .is_none_or(|t| now_ms.saturating_sub(t) >= ARP_RETRY_MS);
                if due {
                    self.backend_asked_ms[b] = Some(now_ms);
                    if self.send_arp_request(route.via_port, route.local_ip, route.next_hop) {
                        self.stats().add(Counter::ArpRequestsSent, 1);
                    }
                }
            }
        }
        for (p, port) in shared.addrs.iter().enumerate() {
            self.neigh[p].expire(now_ms);
            // Only one core asks; the answer reaches the others through the queues.
            let Some(gw) = port.gateway.filter(|_| self.index == 0) else {
                continue;
            };
            if self.neigh[p].lookup(gw, now_ms).is_some() {
                continue;
            }
            let due =
                self.gateway_asked_ms[p].is_none_or(|t| now_ms.saturating_sub(t) >= ARP_RETRY_MS);
            if due {
                self.gateway_asked_ms[p] = Some(now_ms);
                if let Some(own) = port.own.iter().find(|c| c.contains(gw)).map(|c| c.addr) {
                    if self.send_arp_request(p, own, gw) {
                        self.stats().add(Counter::ArpRequestsSent, 1);
                    }
                }
            }
        }
    }

    /// The MAC frames to a backend go to: its next hop's, from the neighbour table; for a
    /// local backend (the host's own kernel), the port's own, which its exception TAP
    /// has: `stage` passes frames so addressed to the TAP.
    pub(crate) fn route_mac(&self, route: &BackendRoute, now_ms: u64) -> Option<MacAddr> {
        if route.local {
            return Some(self.shared.addrs[route.via_port].mac);
        }
        self.neigh[route.via_port].lookup(route.next_hop, now_ms)
    }

    /// Builds an ARP request (gratuitous when `target == sender`) and stages it.
    fn send_arp_request(&mut self, p: usize, sender: Ipv4Addr, target: Ipv4Addr) -> bool {
        let Some(mut m) = Mbuf::alloc(&self.shared.pool) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return false;
        };
        let mac = self.shared.addrs[p].mac;
        let Some(buf) = m.append(MIN_FRAME_LEN) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return false;
        };
        buf.fill(0);
        l2l3::build_arp_request(&mut buf[..ARP_FRAME_LEN], mac, sender, target);
        self.stage(p, m);
        true
    }
}

/// Whether a frame the kernel sent out of an exception TAP is addressed to the switch
/// itself (an address or VIP of port `port`): IPv4 by its destination, ARP by its target.
fn for_the_switch(m: &Mbuf, port: &PortAddrs) -> bool {
    let ip_at = |at: usize| {
        m.get(at..at + 4)
            .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    let target = match m.get(12..14) {
        Some([0x08, 0x00]) => ip_at(14 + 16),
        Some([0x08, 0x06]) => ip_at(14 + 24),
        _ => None,
    };
    target.is_some_and(|ip| port.local(ip).is_some())
}

/// The per-packet work of the loop, kept out of line so `callgrind --toggle-collect`
/// can count its instructions alone (docs/benchmarks.md).
#[inline(never)]
pub fn process_packet(
    m: &mut Mbuf,
    port: &PortAddrs,
    neigh: &mut NeighbourTable,
    now_ms: u64,
    cores: usize,
) -> (Action, Option<l2l3::Learn>) {
    l2l3::process_frame(m, port, neigh, now_ms, cores)
}
