//! Roles other than the switch that the same binary takes on (`"role"` in the config).
//! `agent`: the handoff agent in front of a backend host's kernel; `heartbeat`: its
//! register, heartbeats and leave to the switch, sent by its main thread.
pub mod agent;
pub mod heartbeat;
pub mod tap_routes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dpdk_env::{tsc_hz, Eal, Mempool, Port, PortConfig as DpdkPortConfig};
use rules::config::AgentConfig;
use rules::ConfigError;
use tcpstate::wire::MacAddr;

use crate::setup::{PortInfo, StartError};

/// Data room of each mbuf, as the switch's.
const MBUF_DATA_ROOM: u16 = 2048 + 128;
const LINK_WAIT: Duration = Duration::from_secs(5);

/// A running agent. Dropping it without [`RunningAgent::stop`] still stops the lcore.
pub struct RunningAgent {
    shared: Option<Arc<agent::AgentShared>>,
    lcore: u32,
    pub ports: Vec<PortInfo>,
    eal: Option<Eal>,
    /// The host's routes through the kernel's TAP, put back after the ports close.
    tap_routes: Option<tap_routes::TapRoutes>,
}

fn dpdk(field: &str) -> impl FnOnce(dpdk_env::DpdkError) -> StartError + '_ {
    move |error| StartError::Dpdk {
        field: field.to_string(),
        error,
    }
}

/// The EAL arguments of an agent: its lcores, prefix and two devices.
pub fn agent_eal_args(config: &AgentConfig) -> Vec<String> {
    let mut args = config.eal.args.clone();
    args.extend([
        "--lcores".into(),
        config.lcores.eal_lcores(),
        "--main-lcore".into(),
        config.lcores.main.to_string(),
        "--file-prefix".into(),
        config.eal.file_prefix.clone(),
    ]);
    let pci = |d: &str| !d.starts_with("net_");
    if !pci(&config.nic.device) && !args.iter().any(|a| a == "--no-pci") {
        args.push("--no-pci".into());
    }
    for d in [&config.nic.device, &config.kernel.device] {
        args.push(if pci(d) { "-a".into() } else { "--vdev".into() });
        args.push(d.clone());
    }
    args
}

/// Starts the EAL, the two ports and the agent's lcore.
pub fn start_agent(config: &AgentConfig) -> Result<RunningAgent, StartError> {
    config.validate()?;
    for l in std::iter::once(config.lcores.main).chain(config.lcores.workers.iter().copied()) {
        let cpu = config.lcores.cpu_of(l);
        if !dpdk_env::cpu_available(cpu) {
            return Err(ConfigError::new(
                "lcores",
                format!("lcore {l} maps to CPU {cpu}, which this process may not use"),
            )
            .into());
        }
    }
    // Before the EAL attaches to the TAP: what the host routes through it.
    let tap_routes =
        tap_routes::iface_of(&config.kernel.device).and_then(tap_routes::TapRoutes::save);
    if let Some(r) = &tap_routes {
        tracing::info!(
            routes = r.len(),
            "the kernel's routes through its TAP will be put back at stop"
        );
    }
    let eal = Eal::init(&agent_eal_args(config)).map_err(dpdk("eal.args"))?;
    let mut running = RunningAgent {
        tap_routes,
        shared: None,
        lcore: config.lcores.workers[0],
        ports: Vec::new(),
        eal: None,
    };
    let pool = Arc::new(
        Mempool::new(
            "wsa_mbufs",
            config.mempool.mbufs,
            config.mempool.cache,
            MBUF_DATA_ROOM,
        )
        .map_err(dpdk("mempool"))?,
    );
    let mut ports = Vec::new();
    for (field, name, device) in [
        ("nic.device", "nic", &config.nic.device),
        ("kernel.device", "kernel", &config.kernel.device),
    ] {
        let dpdk_name = device.split(',').next().unwrap_or(device);
        let id = Port::find(dpdk_name).map_err(dpdk(field))?;
        let conf = DpdkPortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            rss: false,
            // The NIC carries the host's traffic whatever the destination MAC (the
            // kernel's TAP may have its own); the TAP delivers all the kernel sends.
            promiscuous: true,
        };
        let port = Port::start(id, name, &conf, Arc::clone(&pool)).map_err(dpdk(field))?;
        let link_up = port.wait_link(LINK_WAIT).map(|l| l.up).unwrap_or(false);
        if !link_up {
            tracing::warn!(port = name, "link is down after {LINK_WAIT:?}; going on");
        }
        running.ports.push(PortInfo {
            name: name.into(),
            mac: MacAddr(port.mac()).to_string(),
            rx_queues: port.rx_queues(),
            tx_queues: port.tx_queues(),
            rss: false,
            rx_checksum: port.rx_checksum(),
            link_up,
        });
        ports.push(port);
    }
    let kernel = ports.pop().expect("two ports");
    let nic = ports.pop().expect("two ports");
    let shared = Arc::new(agent::AgentShared {
        nic,
        kernel,
        pool,
        config: config.clone(),
        stop: AtomicBool::new(false),
        stats: agent::AgentStats::default(),
        tsc_hz: tsc_hz(),
    });
    running.shared = Some(Arc::clone(&shared));
    running.eal = Some(eal);
    let eal = running.eal.as_ref().expect("set above");
    eal.launch(running.lcore, move || {
        agent::run(shared);
        0
    })
    .map_err(dpdk("lcores.workers[0]"))?;
    Ok(running)
}

impl RunningAgent {
    /// The agent's counters (`None` once stopped and torn down).
    pub fn stats(&self) -> Option<&agent::AgentStats> {
        self.shared.as_deref().map(|s| &s.stats)
    }

    pub fn stats_json(&self) -> serde_json::Value {
        match &self.shared {
            Some(s) => s.stats.json(),
            None => serde_json::Value::Null,
        }
    }

    /// Stops the lcore and waits for it.
    pub fn stop(&mut self) {
        if let (Some(s), Some(eal)) = (&self.shared, &self.eal) {
            s.stop.store(true, Ordering::Relaxed);
            eal.wait(self.lcore);
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.stop();
        // Ports and the mempool go before the EAL is cleaned up.
        self.shared = None;
        self.eal = None;
        // The TAP went down with its port and the kernel dropped its routes.
        if let Some(r) = self.tap_routes.take() {
            r.restore();
        }
    }
}
