//! One DPDK port of the harness: rx, a tx stage flushed in bursts, and building and
//! parsing the frames the harness speaks (Ethernet, ARP, IPv4, TCP) with tcpstate's
//! wire views.
use std::net::Ipv4Addr;
use std::sync::Arc;

use dpdk_env::{Mbuf, MbufBatch, Mempool, Port, BURST};
use tcpstate::wire::{
    arp_op, ethertype, ip_proto, ArpPacket, ArpRepr, EthernetFrame, Ipv4Packet, Ipv4Repr, MacAddr,
    TcpPacket, TcpRepr, WireError,
};

use crate::report::Counters;

pub const ETH: usize = 14;
pub const IP: usize = 20;
pub const MIN_FRAME: usize = 60;
pub const TTL: u8 = 64;

/// Which side a port serves (decides which counters its frames go to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideKind {
    Client,
    Server,
}

pub struct Net {
    pub port: Port,
    pub mac: MacAddr,
    pool: Arc<Mempool>,
    tx: MbufBatch,
    kind: SideKind,
    /// `--server-latency-us`: frames sent on this port are held this long first.
    delay: Option<Delay>,
}

/// A delay line: frames and the time each may go.
struct Delay {
    clock: super::Clock,
    ns: u64,
    held: std::collections::VecDeque<(u64, Mbuf)>,
}

/// A received frame, parsed.
pub enum Rx<'a> {
    Arp(ArpRepr),
    Tcp(TcpIn<'a>),
}

pub struct TcpIn<'a> {
    pub src_mac: MacAddr,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub repr: TcpRepr,
    pub payload: &'a [u8],
}

/// Why a received frame was dropped.
pub enum RxDrop {
    NotForUs,
    Malformed,
    BadChecksum,
}

impl Net {
    pub fn new(port: Port, pool: Arc<Mempool>, kind: SideKind) -> Net {
        Net {
            mac: MacAddr(port.mac()),
            port,
            pool,
            tx: MbufBatch::new(),
            kind,
            delay: None,
        }
    }

    /// Holds every frame sent on this port for `ns` before the driver gets it (a link
    /// of that one-way latency: `--server-latency-us` puts the backends at a distance).
    pub fn set_delay_ns(&mut self, ns: u64) {
        self.delay = (ns > 0).then(|| Delay {
            clock: super::Clock::new(),
            ns,
            held: std::collections::VecDeque::new(),
        });
    }

    /// Frames in the delay line (the poll loop keeps polling while there are any).
    pub fn held(&self) -> usize {
        self.delay.as_ref().map_or(0, |d| d.held.len())
    }

    /// Receives a burst into `batch`, counting frames (the caller counts bytes).
    #[inline]
    pub fn rx(&self, batch: &mut MbufBatch, c: &mut Counters) -> usize {
        let (n, _chained) = self.port.rx_burst(0, batch);
        match self.kind {
            SideKind::Client => c.client_rx_pkts += n as u64,
            SideKind::Server => c.server_rx_pkts += n as u64,
        }
        n
    }

    #[inline]
    pub fn count_rx_bytes(&self, len: usize, c: &mut Counters) {
        match self.kind {
            SideKind::Client => c.client_rx_bytes += len as u64,
            SideKind::Server => c.server_rx_bytes += len as u64,
        }
    }

    /// Frames that can still be staged now (after flushing a full stage).
    #[inline]
    pub fn room(&mut self) -> usize {
        if self.tx.is_full() {
            self.flush();
        }
        BURST - self.tx.len()
    }

    /// Stages a frame; flushes a full stage first; drops (and counts) when the driver
    /// takes nothing.
    #[inline]
    pub fn send(&mut self, m: Mbuf, c: &mut Counters) {
        if self.tx.is_full() {
            self.flush();
        }
        let len = m.len() as u64;
        match self.tx.push(m) {
            Ok(()) => match self.kind {
                SideKind::Client => {
                    c.client_tx_pkts += 1;
                    c.client_tx_bytes += len;
                }
                SideKind::Server => {
                    c.server_tx_pkts += 1;
                    c.server_tx_bytes += len;
                }
            },
            Err(m) => {
                drop(m);
                c.drop_tx_full += 1;
            }
        }
    }

    /// Hands the stage to the driver; what it does not take stays staged.
    #[inline]
    pub fn flush(&mut self) -> usize {
        if let Some(d) = self.delay.as_mut() {
            let now = d.clock.now();
            for m in self.tx.drain() {
                d.held.push_back((now + d.ns, m));
            }
            while d.held.front().is_some_and(|f| f.0 <= now) && !self.tx.is_full() {
                if let Some((_, m)) = d.held.pop_front() {
                    let _ = self.tx.push(m);
                }
            }
        }
        self.port.tx_burst(0, &mut self.tx)
    }

    pub fn staged(&self) -> usize {
        self.tx.len()
    }

    /// A fresh mbuf of `len` bytes (zeroed), or None (counted) when the pool is empty.
    fn frame(&self, len: usize, c: &mut Counters) -> Option<Mbuf> {
        let Some(mut m) = Mbuf::alloc(&self.pool) else {
            c.drop_no_mbuf += 1;
            return None;
        };
        match m.append(len.max(MIN_FRAME)) {
            Some(buf) => buf.fill(0),
            None => {
                c.drop_no_mbuf += 1;
                return None;
            }
        }
        Some(m)
    }

    /// Builds and sends a TCP segment.
    #[allow(clippy::too_many_arguments)]
    pub fn send_tcp(
        &mut self,
        dst_mac: MacAddr,
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        repr: &TcpRepr,
        payload: &[u8],
        c: &mut Counters,
    ) {
        let tcp_len = repr.header_len() + payload.len();
        let total = ETH + IP + tcp_len;
        let Some(mut m) = self.frame(total, c) else {
            return;
        };
        {
            let buf: &mut [u8] = &mut m;
            let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
            eth.set_dst_addr(dst_mac);
            eth.set_src_addr(self.mac);
            eth.set_ethertype(ethertype::IPV4);
            let ip = Ipv4Repr {
                src: src_ip,
                dst: dst_ip,
                protocol: ip_proto::TCP,
                payload_len: tcp_len,
                ttl: TTL,
            };
            ip.emit(&mut Ipv4Packet::new_unchecked(
                &mut buf[ETH..ETH + IP + tcp_len],
            ));
            repr.emit(
                &mut TcpPacket::new_unchecked(&mut buf[ETH + IP..ETH + IP + tcp_len]),
                src_ip,
                dst_ip,
                payload,
            );
        }
        self.send(m, c);
    }

    /// Sends an ARP packet (request: to broadcast; reply: to `target_mac`).
    pub fn send_arp(
        &mut self,
        operation: u16,
        sender_ip: Ipv4Addr,
        target_mac: MacAddr,
        target_ip: Ipv4Addr,
        c: &mut Counters,
    ) {
        let Some(mut m) = self.frame(ETH + ArpPacket::<&[u8]>::LEN, c) else {
            return;
        };
        {
            let buf: &mut [u8] = &mut m;
            let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
            eth.set_dst_addr(if operation == arp_op::REQUEST {
                MacAddr::BROADCAST
            } else {
                target_mac
            });
            eth.set_src_addr(self.mac);
            eth.set_ethertype(ethertype::ARP);
            let arp = ArpRepr {
                operation,
                sender_mac: self.mac,
                sender_ip,
                target_mac: if operation == arp_op::REQUEST {
                    MacAddr([0; 6])
                } else {
                    target_mac
                },
                target_ip,
            };
            arp.emit(&mut ArpPacket::new_unchecked(
                &mut buf[ETH..ETH + ArpPacket::<&[u8]>::LEN],
            ));
        }
        self.send(m, c);
    }

    /// Parses a received frame addressed to us (or broadcast).
    pub fn parse<'a>(&self, frame: &'a [u8]) -> Result<Rx<'a>, RxDrop> {
        let eth = EthernetFrame::new_checked(frame).map_err(|_| RxDrop::Malformed)?;
        let dst = eth.dst_addr();
        if dst != self.mac && !dst.is_broadcast() {
            return Err(RxDrop::NotForUs);
        }
        let src_mac = eth.src_addr();
        match eth.ethertype() {
            ethertype::ARP => {
                let arp = ArpPacket::new_checked(&frame[ETH..]).map_err(|_| RxDrop::Malformed)?;
                let repr = ArpRepr::parse(&arp).map_err(|_| RxDrop::Malformed)?;
                Ok(Rx::Arp(repr))
            }
            ethertype::IPV4 => {
                let ip = Ipv4Packet::new_checked(&frame[ETH..]).map_err(|_| RxDrop::Malformed)?;
                if !ip.verify_checksum() {
                    return Err(RxDrop::BadChecksum);
                }
                if ip.is_fragment() || ip.protocol() != ip_proto::TCP {
                    return Err(RxDrop::NotForUs);
                }
                let (src_ip, dst_ip) = (ip.src_addr(), ip.dst_addr());
                let tcp_start = ETH + usize::from(ip.header_len());
                let tcp_end = ETH + usize::from(ip.total_len());
                let seg = &frame[tcp_start..tcp_end];
                let tcp = TcpPacket::new_checked(seg).map_err(|_| RxDrop::Malformed)?;
                let repr = TcpRepr::parse(&tcp, src_ip, dst_ip, true).map_err(|e| match e {
                    WireError::BadChecksum => RxDrop::BadChecksum,
                    _ => RxDrop::Malformed,
                })?;
                let data_start = tcp_start + usize::from(tcp.header_len());
                Ok(Rx::Tcp(TcpIn {
                    src_mac,
                    src_ip,
                    dst_ip,
                    repr,
                    payload: &frame[data_start..tcp_end],
                }))
            }
            _ => Err(RxDrop::NotForUs),
        }
    }
}

/// Counts a dropped frame by reason.
pub fn count_drop(d: RxDrop, c: &mut Counters) {
    match d {
        RxDrop::NotForUs => c.drop_not_for_us += 1,
        RxDrop::Malformed => c.drop_malformed += 1,
        RxDrop::BadChecksum => c.drop_bad_checksum += 1,
    }
}
