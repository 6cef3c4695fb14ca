//! From a validated config to running workers: check the lcores against the CPUs we may
//! use, start the EAL, create the mempool, start each port with one tx queue per worker,
//! create the steering rings and launch one poll loop per worker lcore. Every failure
//! names the config field it comes from.
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use dpdk_env::{
    cpu_available, tsc_hz, Doorbell, Eal, MbufRing, Mempool, Port, PortConfig as DpdkPortConfig,
    PortStats,
};
use rules::{Config, ConfigError};
use tcpstate::wire::MacAddr;

use crate::addrs::PortAddrs;
use crate::cluster::members::Inbound;
use crate::cluster::store::Answer;
use crate::eal_args::eal_args;
use crate::stats::WorkerStats;
use crate::worker::{Shared, TcpSettings, Worker, WorkerSettings, NEIGHBOUR_QUEUE_LEN};

/// Data room of each mbuf: a standard 2 KiB buffer plus DPDK's 128-byte headroom.
const MBUF_DATA_ROOM: u16 = 2048 + 128;
/// Slots of each steering ring (a power of two).
const STEER_RING_SIZE: u32 = 1024;
/// How long to wait for each port's link at start before going on with a warning.
const LINK_WAIT: Duration = Duration::from_secs(5);

/// Why webswitch could not start.
#[derive(Debug)]
pub enum StartError {
    /// The config is wrong (names the field).
    Config(ConfigError),
    /// DPDK refused something the config asked for; the field it came from, then why.
    Dpdk {
        field: String,
        error: dpdk_env::DpdkError,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => e.fmt(f),
            StartError::Dpdk { field, error } => write!(f, "config field `{field}`: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        StartError::Config(e)
    }
}

fn dpdk(field: impl Into<String>) -> impl FnOnce(dpdk_env::DpdkError) -> StartError {
    let field = field.into();
    move |error| StartError::Dpdk { field, error }
}

/// A started port as reported in the `ready` event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PortInfo {
    pub name: String,
    pub mac: String,
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rss: bool,
    /// The port verifies received TCP checksums (rx offload); otherwise the workers do,
    /// for the segments whose contents they act on.
    pub rx_checksum: bool,
    pub link_up: bool,
}

/// The running switch. Dropping it without [`Running::stop`] still stops the workers.
pub struct Running {
    shared: Option<Arc<Shared>>,
    lcores: Vec<u32>,
    pub ports: Vec<PortInfo>,
    // Last: the EAL is cleaned up after every port, ring and pool is gone.
    eal: Option<Eal>,
}

/// Checks that every lcore maps to a CPU this process may run on, before the EAL would
/// abort on it.
pub fn check_cpus(config: &Config) -> Result<(), ConfigError> {
    let l = &config.lcores;
    let check = |field: String, lcore: u32| {
        let cpu = l.cpu_of(lcore);
        if cpu_available(cpu) {
            Ok(())
        } else {
            Err(ConfigError::new(
                field,
                format!("lcore {lcore} runs on CPU {cpu}, which this process may not use"),
            ))
        }
    };
    check("lcores.main".into(), l.main)?;
    for (i, w) in l.workers.iter().enumerate() {
        check(format!("lcores.workers[{i}]"), *w)?;
    }
    Ok(())
}

/// Checks that each `net_af_packet`/`net_af_xdp` port's interface exists here, so the
/// error names the port instead of coming out of a failed EAL probe.
pub fn check_interfaces(config: &Config) -> Result<(), ConfigError> {
    for (i, p) in config.ports.iter().enumerate() {
        let name = p.dpdk_name();
        if !(name.starts_with("net_af_packet") || name.starts_with("net_af_xdp")) {
            continue;
        }
        let iface = p.device.split(',').find_map(|kv| kv.strip_prefix("iface="));
        match iface {
            None => {
                return Err(ConfigError::new(
                    format!("ports[{i}].device"),
                    format!("{name} needs iface=<interface>"),
                ))
            }
            Some(ifc) if !std::path::Path::new("/sys/class/net").join(ifc).exists() => {
                return Err(ConfigError::new(
                    format!("ports[{i}].device"),
                    format!("interface {ifc:?} does not exist in this network namespace"),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Starts everything the config describes and launches the workers.
pub fn start(config: &Config) -> Result<Running, StartError> {
    config.validate()?;
    check_cpus(config)?;
    check_interfaces(config)?;
    let workers = config.lcores.workers.len();
    let eal = Eal::init(&eal_args(config)).map_err(dpdk("eal.args"))?;
    let mut running = Running {
        shared: None,
        lcores: config.lcores.workers.clone(),
        ports: Vec::new(),
        eal: None,
    };

    let needed = needed_mbufs(config);
    if config.mempool.mbufs < needed {
        return Err(ConfigError::new(
            "mempool.mbufs",
            format!("{} is too few for the configured descriptors, rings and bursts: needs at least {needed}", config.mempool.mbufs),
        )
        .into());
    }
    let pool = Arc::new(
        Mempool::new(
            "ws_mbufs",
            config.mempool.mbufs,
            config.mempool.cache,
            MBUF_DATA_ROOM,
        )
        .map_err(dpdk("mempool"))?,
    );

    let mut ports = Vec::with_capacity(config.ports.len());
    for (i, pc) in config.ports.iter().enumerate() {
        let field = format!("ports[{i}].device");
        let id = Port::find(pc.dpdk_name()).map_err(dpdk(field.clone()))?;
        let info = Port::device_info(id).map_err(dpdk(field.clone()))?;
        if usize::from(info.max_tx_queues) < workers {
            let hint = if pc.dpdk_name().starts_with("net_af_packet") {
                format!(" (add qpairs={workers} to the device arguments)")
            } else {
                String::new()
            };
            return Err(ConfigError::new(
                field,
                format!(
                    "device {} has {} tx queues; webswitch needs one per worker ({workers}){hint}",
                    pc.dpdk_name(),
                    info.max_tx_queues
                ),
            )
            .into());
        }
        let conf = DpdkPortConfig {
            rx_queues: info.max_rx_queues.min(workers as u16).max(1),
            tx_queues: workers as u16,
            rx_descriptors: pc.rx_descriptors,
            tx_descriptors: pc.tx_descriptors,
            rss: true,
            promiscuous: false,
        };
        let port = Port::start(id, &pc.name, &conf, Arc::clone(&pool)).map_err(dpdk(field))?;
        let link_up = match port.wait_link(LINK_WAIT) {
            Ok(l) => l.up,
            Err(e) => {
                tracing::warn!(port = %pc.name, "link status unavailable: {e}");
                false
            }
        };
        if !link_up {
            tracing::warn!(port = %pc.name, "link is down after {LINK_WAIT:?}; going on");
        }
        running.ports.push(PortInfo {
            name: pc.name.clone(),
            mac: MacAddr(port.mac()).to_string(),
            rx_queues: port.rx_queues(),
            tx_queues: port.tx_queues(),
            rss: port.rss(),
            rx_checksum: port.rx_checksum(),
            link_up,
        });
        ports.push(port);
    }

    let macs: Vec<MacAddr> = ports.iter().map(|p| MacAddr(p.mac())).collect();
    let before_taps = pool.in_use();
    let kernel_taps = start_kernel_taps(config, &macs, &pool)?;
    // net_tap fills its receive rings from the pool when it starts and keeps them full:
    // those buffers are the TAPs', not in flight (see `Snapshot::mbufs_in_use`).
    let held_by_taps = pool.in_use().saturating_sub(before_taps);
    let runtime = crate::runtime::Runtime::initial(config)?;
    let mut steer = Vec::with_capacity(workers);
    for w in 0..workers {
        let mut per_port = Vec::with_capacity(ports.len());
        for p in 0..ports.len() {
            per_port.push(
                MbufRing::new(&format!("ws_steer_{w}_{p}"), STEER_RING_SIZE)
                    .map_err(dpdk("lcores.workers"))?,
            );
        }
        steer.push(per_port);
    }
    let mut doorbells: Vec<Option<Doorbell>> = (0..workers).map(|_| doorbell(config)).collect();
    for bell in doorbells.iter_mut().flatten() {
        for pc in &config.ports {
            if let Some(x) = &pc.exception {
                if let Err(e) = bell.add_kernel_tap(&x.tap) {
                    // Frames from the kernel then wait out an idle sleep (≤ 5 ms).
                    tracing::warn!(tap = %x.tap, error = %e, "the exception TAP does not wake idle workers");
                }
            }
        }
    }
    let cluster =
        crate::cluster::members::Membership::from_config(config, tsc_hz(), dpdk_env::rdtsc())
            .map(Arc::new);
    let mut addrs = PortAddrs::from_config(config, &macs);
    if let Some(cl) = &cluster {
        for a in &mut addrs {
            a.takeover = Some(Arc::clone(&cl.takeover));
            a.adopted_steer = Some(Arc::clone(&cl.adopted_steer));
        }
    }
    let shared = Arc::new(Shared {
        addrs,
        ports,
        kernel_taps,
        held_by_taps,
        pool,
        stats: (0..workers).map(|_| WorkerStats::default()).collect(),
        steer,
        neighbours: (0..workers)
            .map(|_| ArrayQueue::new(NEIGHBOUR_QUEUE_LEN))
            .collect(),
        stop: AtomicBool::new(false),
        tsc_hz: tsc_hz(),
        settings: WorkerSettings {
            arp_ttl_ms: config.arp.entry_ttl_ms,
            arp_max_entries: config.arp.max_entries,
            gratuitous_arps: config.arp.gratuitous_at_start,
            idle_max_sleep_us: config.worker.idle_max_sleep_us,
            idle_recent_ms: config.worker.idle_recent_ms,
            idle_recent_sleep_us: config.worker.idle_recent_sleep_us,
            tx_drain_us: config.worker.tx_drain_us,
        },
        tcp: tcp_settings(config),
        config: config.clone(),
        runtime: arc_swap::ArcSwap::from_pointee(runtime),
        runtime_version: std::sync::atomic::AtomicU64::new(1),
        health: (0..crate::runtime::MAX_BACKENDS)
            .map(|_| std::sync::atomic::AtomicU8::new(crate::worker::HEALTH_UNKNOWN))
            .collect(),
        agents: crate::agents::Agents::new(
            crate::runtime::MAX_BACKENDS,
            config.handoff.agent_timeout_ms,
            tsc_hz(),
        ),
        backend_active: (0..workers)
            .map(|_| {
                (0..crate::runtime::MAX_BACKENDS)
                    .map(|_| std::sync::atomic::AtomicU32::new(0))
                    .collect()
            })
            .collect(),
        ctl: (0..workers).map(|_| ArrayQueue::new(16)).collect(),
        health_settings: config.health.clone(),
        access_log: std::sync::atomic::AtomicBool::new(config.mgmt.access_log),
        passive_fails: (0..crate::runtime::MAX_BACKENDS)
            .map(|_| std::sync::atomic::AtomicU32::new(0))
            .collect(),
        access: (0..workers).map(|_| ArrayQueue::new(4096)).collect(),
        backend_conns: (0..crate::runtime::MAX_BACKENDS)
            .map(|_| AtomicU32::new(0))
            .collect(),
        queue_len: (0..crate::runtime::MAX_POOLS)
            .map(|_| AtomicU32::new(0))
            .collect(),
        queue_head: (0..workers)
            .map(|_| {
                (0..crate::runtime::MAX_POOLS)
                    .map(|_| AtomicU64::new(u64::MAX))
                    .collect()
            })
            .collect(),
        queue_ticket: AtomicU64::new(0),
        client_conns: crate::clients::ClientConns::new(
            config.tcp.max_conns_per_client,
            random_seed(),
        ),
        sleeping: (0..workers).map(|_| AtomicBool::new(false)).collect(),
        loops_running: std::sync::atomic::AtomicUsize::new(workers),
        left: AtomicBool::new(false),
        cluster,
        ringers: doorbells
            .iter_mut()
            .map(|b| b.as_mut().and_then(|b| b.ringer().ok()))
            .collect(),
    });
    running.shared = Some(Arc::clone(&shared));
    running.eal = Some(eal);
    start_state_store(&shared);
    for ((i, lcore), bell) in config.lcores.workers.iter().enumerate().zip(doorbells) {
        let s = Arc::clone(&shared);
        let eal = running.eal.as_ref().expect("set above");
        eal.launch(*lcore, move || Worker::new(i, s, bell).run())
            .map_err(dpdk(format!("lcores.workers[{i}]")))?;
    }
    Ok(running)
}

/// `cluster.state_store`: the thread that talks to the store for the workers
/// (`cluster::store`); it ends with the workers (`Shared::stop`).
fn start_state_store(shared: &Arc<Shared>) {
    let Some(store) = shared.cluster.as_ref().and_then(|c| c.store.clone()) else {
        return;
    };
    let s = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("ws-store".into())
        .spawn(move || {
            let Some(cl) = s.cluster.clone() else {
                return;
            };
            let done = Arc::clone(&s);
            let workers_done = move || done.loops_running.load(Ordering::Acquire) == 0;
            store.run(&s.stop, workers_done, |answer, core| {
                let inbound = match answer {
                    Answer::Found(rec) => Inbound::Record(rec),
                    Answer::None(key) => Inbound::StoreNone(key),
                };
                // (An answer that finds the inbox full is lost: the worker that asked
                // gives the lookup up after a while, as for a store that never answers.)
                if let Some(inbox) = cl.inbox.get(core) {
                    if inbox.push(inbound).is_ok() {
                        s.wake(core);
                    }
                }
            });
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cluster state store: no thread; records are not shared");
    }
}

/// Each port's exception path (`ports[].exception`): a `net_tap` probed now that the
/// port's MAC is known, so the kernel's interface gets that MAC and the LAN sees one
/// station. One rx and one tx queue per worker, as the ports: any core hands the
/// kernel what it received and sends out what the kernel gave it.
fn start_kernel_taps(
    config: &Config,
    macs: &[MacAddr],
    pool: &Arc<Mempool>,
) -> Result<Vec<Option<Port>>, StartError> {
    let workers = config.lcores.workers.len() as u16;
    let mut taps = Vec::with_capacity(config.ports.len());
    for (i, (pc, mac)) in config.ports.iter().zip(macs).enumerate() {
        let Some(x) = &pc.exception else {
            taps.push(None);
            continue;
        };
        let field = format!("ports[{i}].exception.tap");
        let vdev = format!("net_tap_ws{i}");
        let id = Port::add_vdev(&vdev, &format!("iface={},mac={mac}", x.tap))
            .map_err(dpdk(field.clone()))?;
        let conf = DpdkPortConfig {
            rx_queues: workers,
            tx_queues: workers,
            rx_descriptors: KERNEL_TAP_DESCRIPTORS,
            tx_descriptors: KERNEL_TAP_DESCRIPTORS,
            rss: false,
            promiscuous: false,
        };
        let port = Port::start(id, &format!("{}-kernel", pc.name), &conf, Arc::clone(pool))
            .map_err(dpdk(field))?;
        tracing::info!(port = %pc.name, tap = %x.tap, %mac, "exception path to the kernel");
        taps.push(Some(port));
    }
    Ok(taps)
}

/// Descriptors of each exception TAP queue: the kernel's control traffic (BGP, ssh,
/// ARP) is light, and each rx descriptor holds an mbuf for as long as the switch runs. A
/// local backend's bulk traffic crosses the TAP too: the local-node test moves 100 MB
/// each way through these rings with no `kernel_tx_full`.
const KERNEL_TAP_DESCRIPTORS: u16 = 256;

/// A worker's doorbell (`dpdk_env::Doorbell`): a socket on the kernel interface of every
/// port, when every port is `net_af_packet` (whose PMD has no receive interrupt). None
/// otherwise (a port the doorbell cannot hear would wait out each sleep), and when the
/// kernel refuses the sockets: then the worker sleeps blind, as before.
fn doorbell(config: &Config) -> Option<Doorbell> {
    let ifaces: Vec<&str> = config
        .ports
        .iter()
        .map(|p| {
            p.dpdk_name()
                .starts_with("net_af_packet")
                .then(|| p.device.split(',').find_map(|kv| kv.strip_prefix("iface=")))
                .flatten()
        })
        .collect::<Option<_>>()?;
    if ifaces.is_empty() {
        return None;
    }
    let mut bell = match Doorbell::new() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no doorbell: idle workers sleep blind");
            return None;
        }
    };
    for i in ifaces {
        if let Err(e) = bell.add_interface(i) {
            tracing::warn!(iface = i, error = %e, "no doorbell: idle workers sleep blind");
            return None;
        }
    }
    Some(bell)
}

/// Head buffers per core: allocated on demand, capped so a slowloris flood costs at
/// most this many times `tcp.max_head_bytes` of memory per core.
const MAX_HEADS_PER_CORE: usize = 16384;

fn tcp_settings(config: &Config) -> TcpSettings {
    let t = &config.tcp;
    TcpSettings {
        seed: random_seed(),
        max_flows: t.max_flows_per_core as usize,
        max_heads: (t.max_flows_per_core as usize).min(MAX_HEADS_PER_CORE),
        head_capacity: t.max_head_bytes as usize,
        cookie_rotate_ms: t.syn_cookie_rotate_s * 1000,
        params: tcpstate::conn::ConnParams {
            mss: t.mss,
            window_scale: t.window_scale,
            head_timeout_ms: t.head_timeout_ms,
            connect_timeout_ms: t.connect_timeout_ms,
            connect_attempts: t.connect_attempts,
            idle_timeout_ms: t.idle_timeout_ms,
            fin_timeout_ms: t.fin_timeout_ms,
            closed_linger_ms: t.closed_linger_ms,
            backend_ts_base: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u32)
                .unwrap_or(0),
        },
    }
}

/// 64 bits from the kernel's CSPRNG (SYN cookie secrets derive from it).
fn random_seed() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_le_bytes(b),
        // Not expected on Linux; fall back to the clock rather than refuse to start.
        Err(_) => dpdk_env::rdtsc() ^ u64::from(std::process::id()),
    }
}

/// Mbufs the ports and rings can hold at once, plus one burst per worker and port in
/// flight and each worker's mempool cache: fewer and a busy port starves the others.
fn needed_mbufs(config: &Config) -> u32 {
    let workers = config.lcores.workers.len() as u32;
    let ports = config.ports.len() as u32;
    let descriptors: u32 = config
        .ports
        .iter()
        .map(|p| (u32::from(p.rx_descriptors) + u32::from(p.tx_descriptors)) * workers)
        .sum();
    let rings = workers * ports * STEER_RING_SIZE;
    let bursts = workers * ports * 3 * dpdk_env::BURST as u32;
    let taps = config
        .ports
        .iter()
        .filter(|p| p.exception.is_some())
        .count() as u32
        * workers
        * (2 * u32::from(KERNEL_TAP_DESCRIPTORS) + 2 * dpdk_env::BURST as u32);
    let caches = (workers + 1) * config.mempool.cache;
    descriptors + rings + bursts + caches + taps
}

/// Counters of the whole switch at one moment.
pub struct Snapshot {
    pub cores: Vec<serde_json::Value>,
    pub total: serde_json::Value,
    pub ports: Vec<(String, Option<PortStats>)>,
    /// Buffers taken from the pool and not back: in flight, queued, or leaked. The
    /// exception TAPs' receive rings (always full) are not counted.
    pub mbufs_in_use: u32,
    /// Connections counted against `tcp.max_conns_per_client` now (0 without a cap).
    pub client_conns_open: u64,
    /// What the switch holds in memory, by part, in bytes.
    pub memory: serde_json::Value,
}

/// An mbuf's footprint in its pool: the 128-byte `rte_mbuf` header, then the data room
/// (headroom included).
const MBUF_BYTES: u64 = 128 + MBUF_DATA_ROOM as u64;

/// Reads every worker's counters and the ports' hardware counters.
pub fn snapshot(s: &Shared) -> Snapshot {
    let all: Vec<&WorkerStats> = s.stats.iter().collect();
    Snapshot {
        cores: s.stats.iter().map(WorkerStats::to_json).collect(),
        total: crate::stats::total_json(&all),
        ports: s
            .ports
            .iter()
            .map(|p| (p.name().to_string(), p.stats().ok()))
            .collect(),
        mbufs_in_use: s.pool.in_use().saturating_sub(s.held_by_taps),
        client_conns_open: s.client_conns.open_total(),
        memory: memory_json(s, &all),
    }
}

/// Memory by part: the cores' connection tables (fixed at start), their head buffers
/// (allocated on demand, capped per core), the per-client counters and the mbuf pool.
fn memory_json(s: &Shared, all: &[&WorkerStats]) -> serde_json::Value {
    let sum = |c: crate::stats::Counter| all.iter().map(|w| w.get(c)).sum::<u64>();
    let tables = sum(crate::stats::Counter::MemoryTablesBytes);
    let heads = sum(crate::stats::Counter::MemoryHeadBuffersBytes);
    let clients = s.client_conns.bytes() as u64;
    let mbufs = u64::from(s.pool.capacity()) * MBUF_BYTES;
    serde_json::json!({
        "connection_tables": tables, "head_buffers": heads, "client_counters": clients,
        "mbuf_pool": mbufs, "total": tables + heads + clients + mbufs,
    })
}

/// A snapshot as JSON: `total`, `cores`, `ports`, `mbufs_in_use`.
pub fn snapshot_json(s: &Snapshot) -> serde_json::Value {
    let ports: serde_json::Map<String, serde_json::Value> = s
        .ports
        .iter()
        .map(|(name, st)| {
            let v = match st {
                Some(st) => serde_json::json!({
                    "rx_packets": st.rx_packets, "tx_packets": st.tx_packets,
                    "rx_bytes": st.rx_bytes, "tx_bytes": st.tx_bytes,
                    "imissed": st.imissed, "rx_errors": st.rx_errors, "tx_errors": st.tx_errors,
                    "rx_nombuf": st.rx_nombuf,
                }),
                None => serde_json::Value::Null,
            };
            (name.clone(), v)
        })
        .collect();
    serde_json::json!({
        "total": s.total, "cores": s.cores, "ports": ports, "mbufs_in_use": s.mbufs_in_use,
        "client_conns_open": s.client_conns_open, "memory": s.memory,
    })
}

impl Running {
    fn shared(&self) -> &Shared {
        self.shared.as_ref().expect("present until drop")
    }

    /// Reads every worker's counters and the ports' hardware counters.
    pub fn snapshot(&self) -> Snapshot {
        snapshot(self.shared())
    }

    /// The shared state, for the management socket (stop its server before `stop`).
    pub fn shared_arc(&self) -> Arc<Shared> {
        Arc::clone(self.shared.as_ref().expect("present until drop"))
    }

    /// Raises the stop flag and waits for every worker to leave its loop.
    pub fn stop(&mut self) {
        if let (Some(s), Some(eal)) = (&self.shared, &self.eal) {
            s.stop.store(true, Ordering::Relaxed);
            for l in &self.lcores {
                let rc = eal.wait(*l);
                if rc != 0 {
                    tracing::warn!(lcore = l, rc, "worker exited with an error");
                }
            }
            // A worker that saw the flag late may have steered a segment to a peer that
            // had already left its loop: free those now, so the final count of buffers in
            // use is true (the rings' own Drop would free them, but after the snapshot).
            let mut batch = dpdk_env::MbufBatch::new();
            for (w, rings) in s.steer.iter().enumerate() {
                for ring in rings {
                    loop {
                        let n = ring.dequeue_burst(&mut batch);
                        if n == 0 {
                            break;
                        }
                        s.stats[w].drop(crate::stats::DropReason::LeftAtStop, n as u64);
                        drop(std::mem::take(&mut batch));
                    }
                }
            }
        }
    }

    pub fn tsc_hz(&self) -> u64 {
        self.shared().tsc_hz
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
        // Ports, rings and pool go first (their Drops call into DPDK), then the EAL.
        if let Some(shared) = self.shared.take() {
            match Arc::try_unwrap(shared) {
                Ok(s) => drop(s),
                Err(_) => tracing::error!("a worker still holds the shared state; leaking it"),
            }
        }
        self.eal.take();
    }
}
