//! Ethernet ports: configuration with N rx/tx queues (RSS where the device has it),
//! link state, counters, and bursts through `MbufBatch`.
use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batch::{MbufBatch, BURST};
use crate::error::{DpdkError, Result};
use crate::ffi;
use crate::mempool::Mempool;

pub type PortId = u16;

/// How to bring a port up.
#[derive(Debug, Clone)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    /// Ask the NIC to spread flows across rx queues by RSS (ignored with one queue or
    /// when the device cannot).
    pub rss: bool,
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        Self {
            rx_queues: 1,
            tx_queues: 1,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            rss: true,
            promiscuous: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// The device's own counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Dropped by the device because no rx descriptor was free (the application was slow).
    pub imissed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// Rx failures because the mempool was empty.
    pub rx_nombuf: u64,
}

/// A started port. Stopped and closed on drop. Keeps its rx mempool alive.
pub struct Port {
    id: PortId,
    name: String,
    mac: [u8; 6],
    rx_queues: u16,
    tx_queues: u16,
    rss: bool,
    /// The port verifies TCP checksums on receive (the offload was offered and enabled).
    rx_checksum: bool,
    _pool: Arc<Mempool>,
}

/// Device limits read before configuring.
#[derive(Debug, Clone, Copy)]
pub struct DeviceInfo {
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub rss_offloads: u64,
    pub rx_offloads: u64,
}

impl Port {
    /// Looks up a probed device by name (a vdev name such as `net_af_packet0`, or a PCI
    /// address) and returns its port id.
    pub fn find(name: &str) -> Result<PortId> {
        let cname =
            CString::new(name).map_err(|_| DpdkError::new("port name with NUL", libc::EINVAL))?;
        let mut id: u16 = 0;
        // SAFETY: valid C string and out-pointer.
        let rc = unsafe { ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        DpdkError::check(&format!("rte_eth_dev_get_port_by_name({name})"), rc)?;
        Ok(id)
    }

    /// Probes a virtual device after EAL init (hot-plug), such as the exception path's
    /// `net_tap` whose MAC is only known once the port it shadows has started, and
    /// returns its port id. `args` are the driver's key=value arguments.
    pub fn add_vdev(name: &str, args: &str) -> Result<PortId> {
        let bus = CString::new("vdev").expect("no NUL");
        let cname =
            CString::new(name).map_err(|_| DpdkError::new("vdev name with NUL", libc::EINVAL))?;
        let cargs =
            CString::new(args).map_err(|_| DpdkError::new("vdev args with NUL", libc::EINVAL))?;
        // SAFETY: three valid C strings that live across the call.
        let rc = unsafe { ffi::rte_eal_hotplug_add(bus.as_ptr(), cname.as_ptr(), cargs.as_ptr()) };
        DpdkError::check(&format!("rte_eal_hotplug_add({name},{args})"), rc)?;
        Self::find(name)
    }

    pub fn device_info(id: PortId) -> Result<DeviceInfo> {
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: `info` is a properly sized, zeroed out-struct.
        let rc = unsafe { ffi::rte_eth_dev_info_get(id, &mut info) };
        DpdkError::check(&format!("rte_eth_dev_info_get(port {id})"), rc)?;
        Ok(DeviceInfo {
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            rss_offloads: info.flow_type_rss_offloads,
            rx_offloads: info.rx_offload_capa,
        })
    }

    /// Configures queues, starts the port, and returns it.
    pub fn start(id: PortId, name: &str, conf: &PortConfig, pool: Arc<Mempool>) -> Result<Port> {
        let info = Self::device_info(id)?;
        let op = |what: &str| format!("{what}(port {id} {name})");
        if conf.rx_queues == 0 || conf.rx_queues > info.max_rx_queues {
            return Err(DpdkError::new(
                format!(
                    "{}: {} rx queues requested, device has {}",
                    op("configure"),
                    conf.rx_queues,
                    info.max_rx_queues
                ),
                libc::EINVAL,
            ));
        }
        if conf.tx_queues == 0 || conf.tx_queues > info.max_tx_queues {
            return Err(DpdkError::new(
                format!(
                    "{}: {} tx queues requested, device has {}",
                    op("configure"),
                    conf.tx_queues,
                    info.max_tx_queues
                ),
                libc::EINVAL,
            ));
        }
        let wanted_rss = (ffi::RTE_ETH_RSS_IP as u64)
            | (ffi::RTE_ETH_RSS_TCP as u64)
            | (ffi::RTE_ETH_RSS_UDP as u64);
        let rss_hf = wanted_rss & info.rss_offloads;
        let rss = conf.rss && conf.rx_queues > 1 && rss_hf != 0;
        let mut eth_conf = ffi::rte_eth_conf::default();
        if rss {
            eth_conf.rxmode.mq_mode = ffi::RTE_ETH_MQ_RX_RSS;
            eth_conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // TCP checksums verified by the port where it can (PCI NICs; net_tap in
        // software): the switch then reads the verdict from each mbuf's flags instead
        // of summing the segment (see `Mbuf::rx_l4_checksum`).
        let csum_offload = u64::from(ffi::RTE_ETH_RX_OFFLOAD_TCP_CKSUM);
        let rx_checksum = info.rx_offloads & csum_offload != 0;
        if rx_checksum {
            eth_conf.rxmode.offloads |= csum_offload;
        }
        // SAFETY: eth_conf is a valid, zero-initialised configuration struct.
        let rc =
            unsafe { ffi::rte_eth_dev_configure(id, conf.rx_queues, conf.tx_queues, &eth_conf) };
        DpdkError::check(&op("rte_eth_dev_configure"), rc)?;
        // SAFETY: port id valid (configured above).
        let socket = unsafe { ffi::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..conf.rx_queues {
            // SAFETY: NULL rxconf selects the driver defaults; the pool outlives the port
            // because the port holds an Arc to it.
            let rc = unsafe {
                ffi::rte_eth_rx_queue_setup(
                    id,
                    q,
                    conf.rx_descriptors,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            DpdkError::check(&op(&format!("rte_eth_rx_queue_setup[{q}]")), rc)?;
        }
        for q in 0..conf.tx_queues {
            // SAFETY: NULL txconf selects the driver defaults.
            let rc = unsafe {
                ffi::rte_eth_tx_queue_setup(id, q, conf.tx_descriptors, socket, std::ptr::null())
            };
            DpdkError::check(&op(&format!("rte_eth_tx_queue_setup[{q}]")), rc)?;
        }
        // SAFETY: port fully configured.
        let rc = unsafe { ffi::rte_eth_dev_start(id) };
        DpdkError::check(&op("rte_eth_dev_start"), rc)?;
        if conf.promiscuous {
            // SAFETY: started port. Not every vdev supports it; failure is harmless.
            unsafe { ffi::rte_eth_promiscuous_enable(id) };
        }
        let mut addr = ffi::rte_ether_addr::default();
        // SAFETY: valid out-struct of 6 bytes.
        let rc = unsafe { ffi::rte_eth_macaddr_get(id, &mut addr) };
        DpdkError::check(&op("rte_eth_macaddr_get"), rc)?;
        Ok(Port {
            id,
            name: name.to_owned(),
            mac: addr.addr_bytes,
            rx_queues: conf.rx_queues,
            tx_queues: conf.tx_queues,
            rss,
            rx_checksum,
            _pool: pool,
        })
    }

    pub fn id(&self) -> PortId {
        self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
    pub fn rx_queues(&self) -> u16 {
        self.rx_queues
    }
    pub fn tx_queues(&self) -> u16 {
        self.tx_queues
    }
    /// Whether the NIC spreads flows over the rx queues by RSS.
    /// Whether the port verifies received TCP checksums (see `Mbuf::rx_l4_checksum`).
    pub fn rx_checksum(&self) -> bool {
        self.rx_checksum
    }
    pub fn rss(&self) -> bool {
        self.rss
    }

    pub fn link(&self) -> Result<LinkStatus> {
        let mut link = ffi::rte_eth_link::default();
        // SAFETY: valid out-struct.
        let rc = unsafe { ffi::rte_eth_link_get_nowait(self.id, &mut link) };
        DpdkError::check("rte_eth_link_get_nowait", rc)?;
        Ok(LinkStatus {
            up: link.link_status() != 0,
            speed_mbps: link.link_speed,
            full_duplex: link.link_duplex() != 0,
        })
    }

    /// Polls the link until it is up or `timeout` passes; returns the last status.
    pub fn wait_link(&self, timeout: Duration) -> Result<LinkStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.link()?;
            if status.up || Instant::now() >= deadline {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stats(&self) -> Result<PortStats> {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: valid out-struct.
        let rc = unsafe { ffi::rte_eth_stats_get(self.id, &mut s) };
        DpdkError::check("rte_eth_stats_get", rc)?;
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            imissed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Receives up to the batch's free room from `queue`. Chained (multi-segment)
    /// mbufs are linearised; ones that cannot be are freed and counted in the second
    /// value. Each (port, queue) must be polled by one thread only.
    #[inline]
    pub fn rx_burst(&self, queue: u16, batch: &mut MbufBatch) -> (usize, usize) {
        let room = (BURST - batch.len) as u16;
        // SAFETY: the slots from batch.len on are free; the driver writes at most `room`
        // valid mbuf pointers there, which the batch then owns.
        let n = unsafe {
            ffi::ws_rx_burst(
                self.id,
                queue,
                batch.slots.as_mut_ptr().add(batch.len),
                room,
            )
        } as usize;
        let start = batch.len;
        batch.len += n;
        let mut dropped = 0;
        let mut i = start;
        while i < batch.len {
            // SAFETY: slots[start..len] were just filled with valid mbufs.
            let chained = unsafe { ffi::ws_pktmbuf_nb_segs(batch.slots[i]) } != 1;
            // SAFETY: as above; linearize only touches this mbuf.
            if chained && unsafe { ffi::ws_pktmbuf_linearize(batch.slots[i]) } != 0 {
                // SAFETY: the mbuf is ours; free it and close the gap.
                unsafe { ffi::ws_pktmbuf_free(batch.slots[i]) };
                batch.slots.copy_within(i + 1..batch.len, i);
                batch.len -= 1;
                dropped += 1;
                continue;
            }
            i += 1;
        }
        (n - dropped, dropped)
    }

    /// Sends the batch on `queue`; what the driver did not take stays in the batch
    /// (moved to the front) for the caller to retry or drop. Returns the number sent.
    #[inline]
    pub fn tx_burst(&self, queue: u16, batch: &mut MbufBatch) -> usize {
        if batch.len == 0 {
            return 0;
        }
        // SAFETY: slots[..len] are valid mbufs; the driver takes ownership of the first
        // `sent` of them.
        let sent =
            unsafe { ffi::ws_tx_burst(self.id, queue, batch.slots.as_mut_ptr(), batch.len as u16) }
                as usize;
        batch.consume_front(sent);
        sent
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // SAFETY: no worker polls the port any more (the owner joined them first).
        unsafe {
            ffi::rte_eth_dev_stop(self.id);
            ffi::rte_eth_dev_close(self.id);
        }
    }
}
