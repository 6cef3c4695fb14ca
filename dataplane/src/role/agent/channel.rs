//! The agent's end of handoff's control-connection transport (`tcpstate::handoff::
//! channel`): a handoff request arriving on `control_port` is turned back into the head
//! segment it carries and taken exactly as the inline transport's (so both share every
//! later step); once the kernel has acknowledged the whole head the agent sends its
//! handoff ack to the request's sender, and answers a repeated request with it again.
//! Datagrams to the control port never reach the host's kernel.
use std::net::Ipv4Addr;

use dpdk_env::Mbuf;
use tcpstate::flow::FlowKey;
use tcpstate::handoff::channel::{AckRepr, RequestRepr, ACK_LEN};
use tcpstate::wire::{
    ethertype, ip_proto, EthernetFrame, Ipv4Packet, MacAddr, SeqNumber, TcpPacket, UdpPacket,
};

use super::{Agent, AgentCounter, Entry, Seen, ETH};

/// The sender of a flow's handoff requests: where its ack goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChannelPeer {
    /// The request frame's source MAC (the switch's, or the router's toward it).
    mac: MacAddr,
    /// The switch's address and port, and the host address the request came to.
    switch: (Ipv4Addr, u16),
    local: Ipv4Addr,
    /// The ack goes once the kernel has acknowledged the client's stream this far.
    head_end: SeqNumber,
    acked: bool,
}

/// A UDP datagram to the control port, as far as the agent reads it.
struct Datagram {
    mac: MacAddr,
    src: (Ipv4Addr, u16),
    dst: Ipv4Addr,
}

/// If the kernel segment `seen` of flow `e` acknowledges the whole head of a handoff
/// that came on the channel and was not acked yet: the peer to ack (marked acked).
pub(super) fn kernel_took_head(e: &mut Entry, seen: &Seen) -> Option<ChannelPeer> {
    // Inline flows (no peer) and acked ones pay only this check per kernel segment.
    if e.control.is_none_or(|c| c.acked) {
        return None;
    }
    let ack = seen.seg.ack?;
    // The kernel acknowledges in the client's space as the kernel sees it; a flow that
    // came back after a move may see the client's stream shifted (`to_client` undoes it).
    let delta = e.flow.to_client().map_or(0, |t| t.ack_delta);
    let client_space = SeqNumber(ack.0.wrapping_add(delta));
    let c = e.control.as_mut()?;
    if client_space.wrapping_diff(c.head_end) < 0 {
        return None;
    }
    c.acked = true;
    Some(*c)
}

impl Agent {
    /// A frame from the NIC that is a datagram to the control port is taken here (`Ok`);
    /// any other goes back to the caller.
    pub(super) fn on_channel(&mut self, m: Mbuf, now_ms: u64) -> Result<(), Mbuf> {
        let d = match self.channel_datagram(&m) {
            None => return Err(m),
            Some(Ok(d)) => d,
            Some(Err(())) => {
                self.count(AgentCounter::DropBadRequest);
                return Ok(());
            }
        };
        if let Some(sw) = &self.s.config.switch {
            if d.src.0 != sw.address {
                self.count(AgentCounter::DropChannelStranger);
                return Ok(());
            }
        }
        let ip = Ipv4Packet::new_unchecked(&m[ETH..]);
        let udp = UdpPacket::new_unchecked(ip.payload());
        let request = match RequestRepr::parse(udp.payload()) {
            Ok(r) if self.s.config.is_vip(r.key.local_ip, r.key.local_port) => r,
            _ => {
                self.count(AgentCounter::DropBadRequest);
                return Ok(());
            }
        };
        self.count(AgentCounter::HandoffRequests);
        let key = request.key;
        let Some(segment) = self.head_segment(&request, d.mac) else {
            return Ok(());
        };
        let (head_end, on_link) = (request.head_end, request.on_link);
        drop(m);
        self.on_nic_frame(segment, now_ms);
        let Some(e) = self.flows.get_mut(&key) else {
            return Ok(());
        };
        if !on_link {
            // The request came through a router: notices to its MAC would go astray.
            e.notify = None;
        }
        let peer = ChannelPeer {
            mac: d.mac,
            switch: d.src,
            local: d.dst,
            head_end,
            acked: false,
        };
        match e.control {
            // Acked already: our ack was lost (or crossed this resend).
            Some(c) if c.acked && c.head_end == head_end => self.send_handoff_ack(&key, &c),
            Some(c) if c.head_end == head_end => {}
            // A first request, or a new round's (a connection moved back here).
            _ => e.control = Some(peer),
        }
        Ok(())
    }

    /// The datagram's addresses if `frame` is UDP/IPv4 to the control port (`Err`: its
    /// checksum is wrong; `None`: not for the channel).
    fn channel_datagram(&self, frame: &[u8]) -> Option<Result<Datagram, ()>> {
        if frame.get(ETH + 9) != Some(&ip_proto::UDP) {
            return None;
        }
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() != ethertype::IPV4 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(&frame[ETH..]).ok()?;
        if ip.more_frags() || ip.frag_offset() != 0 {
            return None;
        }
        let udp = UdpPacket::new_checked(ip.payload()).ok()?;
        if udp.dst_port() != self.s.config.control_port {
            return None;
        }
        if !udp.verify_checksum(ip.src_addr(), ip.dst_addr()) {
            return Some(Err(()));
        }
        Some(Ok(Datagram {
            mac: eth.src_addr(),
            src: (ip.src_addr(), udp.src_port()),
            dst: ip.dst_addr(),
        }))
    }

    /// The head segment a request carries, as the inline transport would have sent it:
    /// client -> VIP, from `mac` (the switch's) to the NIC.
    fn head_segment(&mut self, r: &RequestRepr<'_>, mac: MacAddr) -> Option<Mbuf> {
        let (client, vip) = (r.key.remote_ip, r.key.local_ip);
        let tcp_len = 20 + r.options.len() + r.payload.len();
        let mut m = self.ipv4_frame(self.nic_mac, client, vip, tcp_len)?;
        let buf = &mut m[..];
        EthernetFrame::new_unchecked(&mut buf[..]).set_src_addr(mac);
        let mut tcp = TcpPacket::new_unchecked(&mut buf[ETH + 20..ETH + 20 + tcp_len]);
        tcp.set_src_port(r.key.remote_port);
        tcp.set_dst_port(r.key.local_port);
        tcp.set_seq_number(r.seq);
        tcp.set_ack_number(r.ack);
        tcp.set_header_len((20 + r.options.len()) as u8);
        tcp.set_flags(r.tcp_flags);
        tcp.set_window_len(r.window);
        tcp.options_mut().copy_from_slice(r.options);
        tcp.payload_mut()[..r.payload.len()].copy_from_slice(r.payload);
        tcp.fill_checksum(client, vip);
        Some(m)
    }

    /// The handoff ack for `key` to the switch, from the host address the request came to.
    pub(super) fn send_handoff_ack(&mut self, key: &FlowKey, c: &ChannelPeer) {
        let mut payload = [0u8; ACK_LEN];
        AckRepr {
            key: *key,
            acked: c.head_end,
        }
        .emit(&mut payload);
        let Some(mut m) = Mbuf::alloc(&self.s.pool) else {
            self.count(AgentCounter::DropNoMbuf);
            return;
        };
        let len = crate::l2l3::udp_frame_len(ACK_LEN);
        let Some(buf) = m.append(len.max(60)) else {
            self.count(AgentCounter::DropNoMbuf);
            return;
        };
        buf.fill(0);
        crate::l2l3::build_udp_frame(
            buf,
            (self.nic_mac, c.mac),
            (c.local, c.switch.0),
            (self.s.config.control_port, c.switch.1),
            &payload,
        );
        self.count(AgentCounter::HandoffAcksSent);
        self.push_nic(m);
    }
}
