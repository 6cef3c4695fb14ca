//! Per-packet logic below TCP: Ethernet checks, ARP (answer, learn, build requests),
//! ICMP echo, and the one kind of UDP the switch takes (handoff agents' beats). Pure functions over a frame's bytes: answers are written in place into
//! the received buffer (no allocation, no copy), so the worker only decides where the
//! buffer goes next. Unit-tested with byte fixtures, no DPDK needed.
use std::net::Ipv4Addr;

use tcpstate::neighbour::{Learned, NeighbourTable};
use tcpstate::steer;
use tcpstate::wire::{
    arp_op, checksum, ethertype, icmp_type, ip_proto, ArpPacket, ArpRepr, EthernetFrame,
    Icmpv4Packet, Ipv4Packet, Ipv4Repr, MacAddr, TcpPacket, UdpPacket,
};

use crate::addrs::{Local, PortAddrs};
use crate::stats::DropReason;

/// TTL of packets the switch originates.
pub const TTL: u8 = 64;

/// Length of an Ethernet + ARP frame (before any padding).
pub const ARP_FRAME_LEN: usize = EthernetFrame::<&[u8]>::HEADER_LEN + ArpPacket::<&[u8]>::LEN;

/// What became of a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Drop(DropReason),
    /// Rewritten into an ARP reply: send it back out of the same port.
    ArpAnswered,
    /// Rewritten into an ICMP echo reply (now `len` bytes): send it back out.
    EchoAnswered {
        len: usize,
    },
    /// Nothing to send: an ARP reply or announcement that (maybe) taught us a neighbour.
    Absorbed,
    /// A TCP segment to a local address; `core` owns its flow.
    Tcp {
        core: usize,
    },
    /// A UDP datagram from `src` to one of our own addresses at the agent port (checksum
    /// verified when it has one): a handoff agent's beat, its payload at
    /// `frame[at..at + len]`, for `rules::beat` to decode.
    AgentBeat {
        src: Ipv4Addr,
        at: usize,
        len: usize,
    },
    /// A handoff ack on the agent port (control transport, checksum verified): to
    /// `core`, which owns the client flow it names.
    HandoffAck {
        core: usize,
    },
    /// A UDP datagram to one of our own addresses at the cluster port (checksum verified
    /// when it has one): a cluster member's beat, its payload at `frame[at..at + len]`,
    /// for `tcpstate::cluster::beat` to decode.
    ClusterBeat {
        src: Ipv4Addr,
        at: usize,
        len: usize,
    },
    /// Not the switch's, on a port with an exception path: to the host's kernel as it
    /// is (ARP and ICMP for the host's addresses, BGP, ssh, IPv6, LLDP...).
    ToKernel,
}

/// A neighbour mapping learned from the frame, to count and to share with other cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learn {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub outcome: Learned,
}

/// Classifies a frame received on `port` and, for ARP and ICMP, answers it in place.
pub fn process_frame(
    frame: &mut [u8],
    port: &PortAddrs,
    neigh: &mut NeighbourTable,
    now_ms: u64,
    cores: usize,
) -> (Action, Option<Learn>) {
    let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
        return (Action::Drop(DropReason::Malformed), None);
    };
    let dst = eth.dst_addr();
    if dst != port.mac && !dst.is_broadcast() {
        // Multicast (IPv6 neighbour discovery, LLDP, OSPF...) is never the switch's.
        if port.exception && dst.is_multicast() {
            return (Action::ToKernel, None);
        }
        return (Action::Drop(DropReason::NotOurMac), None);
    }
    match eth.ethertype() {
        ethertype::ARP => process_arp(frame, port, neigh, now_ms),
        ethertype::IPV4 => (process_ipv4(frame, port, cores), None),
        _ => (not_ours(port, DropReason::UnsupportedEthertype), None),
    }
}

/// What becomes of a frame that is not the switch's: the kernel's with an exception
/// path, else dropped for `reason`.
#[inline]
fn not_ours(port: &PortAddrs, reason: DropReason) -> Action {
    if port.exception {
        Action::ToKernel
    } else {
        Action::Drop(reason)
    }
}

fn process_arp(
    frame: &mut [u8],
    port: &PortAddrs,
    neigh: &mut NeighbourTable,
    now_ms: u64,
) -> (Action, Option<Learn>) {
    let hdr = EthernetFrame::<&[u8]>::HEADER_LEN;
    let Ok(arp) = ArpPacket::new_checked(&frame[hdr..]) else {
        return (Action::Drop(DropReason::Malformed), None);
    };
    let Ok(req) = ArpRepr::parse(&arp) else {
        return (Action::Drop(DropReason::Malformed), None);
    };
    let target_is_ours = port.answers_arp(req.target_ip);
    let sender_known = neigh.lookup(req.sender_ip, now_ms).is_some();
    // Learn only on-link, unicast senders of ARP that concerns us (or that we already
    // track, to follow a neighbour's MAC change): a flood of foreign ARP fills nothing.
    let learnable = port.on_link(req.sender_ip)
        && !req.sender_ip.is_unspecified()
        && req.sender_mac.is_unicast()
        && port.local(req.sender_ip).is_none()
        && (target_is_ours || sender_known);
    let learned = learnable.then(|| Learn {
        ip: req.sender_ip,
        mac: req.sender_mac,
        outcome: neigh.learn(req.sender_ip, req.sender_mac, now_ms),
    });
    match req.operation {
        arp_op::REQUEST if target_is_ours => {
            let reply = ArpRepr {
                operation: arp_op::REPLY,
                sender_mac: port.mac,
                sender_ip: req.target_ip,
                target_mac: req.sender_mac,
                target_ip: req.sender_ip,
            };
            let mut arp = ArpPacket::new_unchecked(&mut frame[hdr..]);
            reply.emit(&mut arp);
            let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
            eth.set_dst_addr(req.sender_mac);
            eth.set_src_addr(port.mac);
            (Action::ArpAnswered, learned)
        }
        // With an exception path the kernel sees every ARP not aimed at the switch's own
        // addresses (its own addresses' requests and replies, announcements), after the
        // switch learned what it may from it.
        arp_op::REQUEST | arp_op::REPLY if port.exception && !target_is_ours => {
            (Action::ToKernel, learned)
        }
        arp_op::REQUEST | arp_op::REPLY if learned.is_some() => (Action::Absorbed, learned),
        arp_op::REQUEST | arp_op::REPLY => (Action::Drop(DropReason::ArpNotForUs), None),
        _ => (Action::Drop(DropReason::Malformed), None),
    }
}

fn process_ipv4(frame: &mut [u8], port: &PortAddrs, cores: usize) -> Action {
    let hdr = EthernetFrame::<&[u8]>::HEADER_LEN;
    let (src, dst, proto, ip_hdr_len, total_len) = {
        let Ok(ip) = Ipv4Packet::new_checked(&frame[hdr..]) else {
            return Action::Drop(DropReason::Malformed);
        };
        if !ip.verify_checksum() {
            return Action::Drop(DropReason::BadIpChecksum);
        }
        (
            ip.src_addr(),
            ip.dst_addr(),
            ip.protocol(),
            ip.header_len() as usize,
            ip.total_len() as usize,
        )
    };
    let Some(local) = port.local(dst) else {
        if proto == ip_proto::TCP && port.agent_vips.contains(&src) {
            // A handoff agent's control reply (VIP -> client, to our MAC): to the core
            // that owns the client's flow.
            let Ok(tcp) = TcpPacket::new_checked(&frame[hdr + ip_hdr_len..hdr + total_len]) else {
                return Action::Drop(DropReason::Malformed);
            };
            let core = steer::client_flow_core(dst, tcp.dst_port(), src, tcp.src_port(), cores);
            return Action::Tcp { core };
        }
        return not_ours(port, DropReason::NotForUs);
    };
    let ip = Ipv4Packet::new_unchecked(&frame[hdr..]);
    if ip.is_fragment() {
        return Action::Drop(DropReason::IpFragment);
    }
    if ip.has_options() {
        return Action::Drop(DropReason::IpOptions);
    }
    match proto {
        ip_proto::ICMP => answer_echo(frame, port.mac, src, dst, ip_hdr_len, total_len),
        ip_proto::TCP => {
            let Ok(tcp) = TcpPacket::new_checked(&frame[hdr + ip_hdr_len..hdr + total_len]) else {
                return Action::Drop(DropReason::Malformed);
            };
            let core = match local {
                Local::Vip(_) => {
                    steer::client_flow_core(src, tcp.src_port(), dst, tcp.dst_port(), cores)
                }
                Local::Own => port
                    .adopted_steer
                    .as_ref()
                    .filter(|t| !t.is_empty() && !port.own.iter().any(|c| c.addr == dst))
                    .and_then(|t| {
                        // Another member's connection (a taken-over address): its record
                        // or adopted flow may live on another core than the port says.
                        t.core_of(crate::cluster::adopted_steer::key(
                            src,
                            tcp.src_port(),
                            dst,
                            tcp.dst_port(),
                        ))
                    })
                    .unwrap_or_else(|| steer::local_port_core(tcp.dst_port(), cores)),
            };
            Action::Tcp { core }
        }
        ip_proto::UDP if local == Local::Own => own_datagram(
            &frame[hdr + ip_hdr_len..hdr + total_len],
            port,
            (src, dst),
            hdr + ip_hdr_len,
            cores,
        ),
        _ => Action::Drop(DropReason::UnsupportedProtocol),
    }
}

/// A UDP datagram (`udp`, starting at frame offset `at`) to one of our own addresses:
/// an agent's beat or handoff ack when it is for the agent port, a cluster member's beat
/// for the cluster port. Any other UDP is unsupported, as it always was; a beat with a wrong checksum is
/// a bad beat.
fn own_datagram(
    udp: &[u8],
    port: &PortAddrs,
    (src, dst): (Ipv4Addr, Ipv4Addr),
    at: usize,
    cores: usize,
) -> Action {
    let Ok(u) = UdpPacket::new_checked(udp) else {
        return Action::Drop(DropReason::UnsupportedProtocol);
    };
    let (agent, member) = (
        u.dst_port() == port.agent_port,
        port.cluster_port != 0 && u.dst_port() == port.cluster_port,
    );
    if !(agent || member) {
        return Action::Drop(DropReason::UnsupportedProtocol);
    }
    if !u.verify_checksum(src, dst) {
        return Action::Drop(if agent {
            DropReason::BadAgentBeat
        } else {
            DropReason::BadClusterBeat
        });
    }
    if agent {
        if let Ok(a) = tcpstate::handoff::channel::AckRepr::parse(u.payload()) {
            let k = a.key;
            let core = steer::client_flow_core(
                k.remote_ip,
                k.remote_port,
                k.local_ip,
                k.local_port,
                cores,
            );
            return Action::HandoffAck { core };
        }
    }
    let (at, len) = (at + UdpPacket::<&[u8]>::HEADER_LEN, u.payload().len());
    if agent {
        Action::AgentBeat { src, at, len }
    } else {
        Action::ClusterBeat { src, at, len }
    }
}

/// Writes a whole Ethernet + IPv4 + UDP frame carrying `payload` into `buf` (exactly
/// [`udp_frame_len`] bytes) with both checksums: a cluster beat from this instance.
pub fn build_udp_frame(
    buf: &mut [u8],
    (src_mac, dst_mac): (MacAddr, MacAddr),
    (src, dst): (Ipv4Addr, Ipv4Addr),
    (sport, dport): (u16, u16),
    payload: &[u8],
) {
    let hdr = EthernetFrame::<&[u8]>::HEADER_LEN;
    let udp_len = UdpPacket::<&[u8]>::HEADER_LEN + payload.len();
    {
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.set_dst_addr(dst_mac);
        eth.set_src_addr(src_mac);
        eth.set_ethertype(ethertype::IPV4);
    }
    let ip = Ipv4Repr {
        src,
        dst,
        protocol: ip_proto::UDP,
        payload_len: udp_len,
        ttl: TTL,
    };
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[hdr..]));
    let at = hdr + Ipv4Packet::<&[u8]>::HEADER_LEN;
    let mut u = UdpPacket::new_unchecked(&mut buf[at..at + udp_len]);
    u.set_src_port(sport);
    u.set_dst_port(dport);
    u.set_len(udp_len as u16);
    u.payload_mut()[..payload.len()].copy_from_slice(payload);
    u.fill_checksum(src, dst);
}

/// Length of the frame [`build_udp_frame`] writes for a payload of `payload` bytes.
pub const fn udp_frame_len(payload: usize) -> usize {
    EthernetFrame::<&[u8]>::HEADER_LEN
        + Ipv4Packet::<&[u8]>::HEADER_LEN
        + UdpPacket::<&[u8]>::HEADER_LEN
        + payload
}

/// Turns an ICMP echo request into its reply in place.
fn answer_echo(
    frame: &mut [u8],
    our_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ip_hdr_len: usize,
    total_len: usize,
) -> Action {
    let hdr = EthernetFrame::<&[u8]>::HEADER_LEN;
    let icmp_range = hdr + ip_hdr_len..hdr + total_len;
    {
        let Ok(icmp) = Icmpv4Packet::new_checked(&frame[icmp_range.clone()]) else {
            return Action::Drop(DropReason::Malformed);
        };
        if icmp.msg_type() != icmp_type::ECHO_REQUEST || icmp.code() != 0 {
            return Action::Drop(DropReason::IcmpNotEcho);
        }
        if !icmp.verify_checksum() {
            return Action::Drop(DropReason::BadIcmpChecksum);
        }
    }
    {
        let mut icmp = Icmpv4Packet::new_unchecked(&mut frame[icmp_range]);
        // Only the type changes (8 → 0): patch the checksum for that one word (RFC 1624).
        let old_word = u16::from(icmp_type::ECHO_REQUEST) << 8;
        let new_word = u16::from(icmp_type::ECHO_REPLY) << 8;
        let csum = checksum::update16(icmp.checksum(), old_word, new_word);
        icmp.set_msg_type(icmp_type::ECHO_REPLY);
        icmp.set_checksum(csum);
    }
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[hdr..]);
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_ttl(TTL);
        ip.fill_checksum();
    }
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    let peer = eth.src_addr();
    eth.set_dst_addr(peer);
    eth.set_src_addr(our_mac);
    // Drop any Ethernet padding the request carried.
    Action::EchoAnswered {
        len: hdr + total_len,
    }
}

/// Writes an ARP request for `target_ip` from (`our_mac`, `our_ip`) into `buf`
/// (at least [`ARP_FRAME_LEN`] bytes). With `target_ip == our_ip` it is a gratuitous
/// ARP announcing the address.
pub fn build_arp_request(buf: &mut [u8], our_mac: MacAddr, our_ip: Ipv4Addr, target_ip: Ipv4Addr) {
    build_arp(buf, our_mac, our_mac, our_ip, target_ip);
}

/// A gratuitous ARP sent from `our_mac` that says `ip` is at `their_mac`: how a cluster
/// member hands a taken-over address back to the member that came back for it (the frame
/// leaves from our MAC, so the switches' forwarding tables stay right; neighbours update
/// their entry from the ARP sender fields).
pub fn build_arp_announce_for(buf: &mut [u8], our_mac: MacAddr, their_mac: MacAddr, ip: Ipv4Addr) {
    build_arp(buf, our_mac, their_mac, ip, ip);
}

fn build_arp(
    buf: &mut [u8],
    eth_src: MacAddr,
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
) {
    let hdr = EthernetFrame::<&[u8]>::HEADER_LEN;
    {
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.set_dst_addr(MacAddr::BROADCAST);
        eth.set_src_addr(eth_src);
        eth.set_ethertype(ethertype::ARP);
    }
    let repr = ArpRepr {
        operation: arp_op::REQUEST,
        sender_mac,
        sender_ip,
        target_mac: MacAddr([0; 6]),
        target_ip,
    };
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[hdr..ARP_FRAME_LEN]));
}

#[cfg(test)]
mod tests;
