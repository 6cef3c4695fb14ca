//! ARP (RFC 826), only in its one live form: Ethernet hardware addresses and IPv4
//! protocol addresses. Anything else is rejected as `Malformed` so the getters can
//! rely on fixed 6/4-byte address fields.
use std::net::Ipv4Addr;

use super::{be16, ipv4_at, put16, MacAddr, Result, WireError};

/// ARP operation codes.
pub mod arp_op {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

const HTYPE_ETHERNET: u16 = 1;
const PTYPE_IPV4: u16 = super::ethertype::IPV4;

/// A view of an Ethernet/IPv4 ARP packet. The buffer may be longer than
/// [`LEN`](Self::LEN) (Ethernet pads short frames to 60 bytes); the rest is ignored.
#[derive(Debug, Clone)]
pub struct ArpPacket<T> {
    buffer: T,
}

mod field {
    use std::ops::Range;

    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: usize = 14;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: usize = 24;
    pub const END: usize = 28;
}

impl<T> ArpPacket<T> {
    /// Length of an Ethernet/IPv4 ARP packet.
    pub const LEN: usize = field::END;

    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if shorter than 28 bytes; `Err(Malformed)` unless hardware
    /// and protocol are Ethernet (6-byte addresses) and IPv4 (4-byte addresses),
    /// since the address fields' positions depend on those lengths.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < Self::LEN {
            return Err(WireError::Truncated);
        }
        if self.hardware_type() != HTYPE_ETHERNET
            || self.protocol_type() != PTYPE_IPV4
            || self.hardware_len() != 6
            || self.protocol_len() != 4
        {
            return Err(WireError::Malformed);
        }
        Ok(())
    }

    #[inline]
    pub fn hardware_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::HTYPE)
    }

    #[inline]
    pub fn protocol_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PTYPE)
    }

    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    #[inline]
    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER)
    }

    #[inline]
    pub fn sender_hw_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    #[inline]
    pub fn sender_proto_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::SPA)
    }

    #[inline]
    pub fn target_hw_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    #[inline]
    pub fn target_proto_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    #[inline]
    pub fn set_hardware_type(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::HTYPE, value);
    }

    #[inline]
    pub fn set_protocol_type(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::PTYPE, value);
    }

    #[inline]
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    #[inline]
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    #[inline]
    pub fn set_operation(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::OPER, value);
    }

    #[inline]
    pub fn set_sender_hw_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_sender_proto_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA..field::SPA + 4].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_target_hw_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_target_proto_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA..field::TPA + 4].copy_from_slice(&addr.octets());
    }
}

/// An Ethernet/IPv4 ARP packet as values. The operation is kept as a number, so an
/// unknown one (RARP, InARP) parses and the caller decides what to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: u16,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Reads the packet, re-running the checks of `new_checked` so that a view made
    /// with `new_unchecked` yields an error rather than a panic.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &ArpPacket<&T>) -> Result<ArpRepr> {
        packet.check_len()?;
        Ok(ArpRepr {
            operation: packet.operation(),
            sender_mac: packet.sender_hw_addr(),
            sender_ip: packet.sender_proto_addr(),
            target_mac: packet.target_hw_addr(),
            target_ip: packet.target_proto_addr(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        ArpPacket::<&[u8]>::LEN
    }

    /// Writes all 28 bytes, including the fixed hardware/protocol fields, so it can
    /// fill a fresh buffer as well as rewrite a received request in place.
    ///
    /// # Panics
    /// If the buffer is shorter than 28 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut ArpPacket<&mut T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(PTYPE_IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_sender_hw_addr(self.sender_mac);
        packet.set_sender_proto_addr(self.sender_ip);
        packet.set_target_hw_addr(self.target_mac);
        packet.set_target_proto_addr(self.target_ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures;

    const HOST: MacAddr = MacAddr([0x46, 0x6c, 0xcc, 0x36, 0xb5, 0xff]);
    const NS: MacAddr = MacAddr([0xf2, 0xab, 0x1c, 0x44, 0x9c, 0x8e]);
    const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
    const NS_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 2);

    fn arp(frame: &[u8]) -> &[u8] {
        &frame[14..]
    }

    #[test]
    fn real_request_and_reply() {
        let p = ArpPacket::new_checked(arp(fixtures::ARP_REQUEST)).unwrap();
        assert_eq!(
            (
                p.hardware_type(),
                p.protocol_type(),
                p.hardware_len(),
                p.protocol_len()
            ),
            (1, 0x0800, 6, 4)
        );
        let req = ArpRepr::parse(&p).unwrap();
        assert_eq!(
            req,
            ArpRepr {
                operation: arp_op::REQUEST,
                sender_mac: HOST,
                sender_ip: HOST_IP,
                target_mac: MacAddr([0; 6]),
                target_ip: NS_IP,
            }
        );
        let rep =
            ArpRepr::parse(&ArpPacket::new_checked(arp(fixtures::ARP_REPLY)).unwrap()).unwrap();
        assert_eq!(
            rep,
            ArpRepr {
                operation: arp_op::REPLY,
                sender_mac: NS,
                sender_ip: NS_IP,
                target_mac: HOST,
                target_ip: HOST_IP
            }
        );
    }

    #[test]
    fn emit_reproduces_the_capture() {
        for frame in [fixtures::ARP_REQUEST, fixtures::ARP_REPLY] {
            let repr = ArpRepr::parse(&ArpPacket::new_checked(arp(frame)).unwrap()).unwrap();
            // Garbage in the fixed fields must be overwritten, not kept.
            let mut buf = vec![0xa5; repr.buffer_len()];
            repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
            assert_eq!(buf, arp(frame));
            assert_eq!(
                ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()).unwrap(),
                repr
            );
        }
    }

    #[test]
    fn padded_buffer_is_accepted() {
        let mut padded = arp(fixtures::ARP_REQUEST).to_vec();
        padded.resize(46, 0);
        let p = ArpPacket::new_checked(&padded[..]).unwrap();
        assert_eq!(p.target_proto_addr(), NS_IP);
    }

    #[test]
    fn truncated_at_every_length() {
        let full = arp(fixtures::ARP_REPLY);
        for len in 0..ArpPacket::<&[u8]>::LEN {
            assert_eq!(
                ArpPacket::new_checked(&full[..len]).err(),
                Some(WireError::Truncated),
                "len {len}"
            );
            assert_eq!(
                ArpRepr::parse(&ArpPacket::new_unchecked(&full[..len])),
                Err(WireError::Truncated)
            );
        }
    }

    #[test]
    fn other_hardware_or_protocol_is_malformed() {
        let base = arp(fixtures::ARP_REQUEST).to_vec();
        let cases: [(usize, u8); 5] = [(1, 6), (2, 0x86), (3, 0xdd), (4, 8), (5, 16)];
        for (at, value) in cases {
            let mut b = base.clone();
            b[at] = value;
            assert_eq!(
                ArpPacket::new_checked(&b[..]).err(),
                Some(WireError::Malformed),
                "byte {at} = {value}"
            );
            assert_eq!(
                ArpRepr::parse(&ArpPacket::new_unchecked(&b[..])),
                Err(WireError::Malformed)
            );
        }
    }

    #[test]
    fn setters() {
        let mut b = [0u8; 28];
        let mut p = ArpPacket::new_unchecked(&mut b[..]);
        p.set_hardware_type(1);
        p.set_protocol_type(0x0800);
        p.set_hardware_len(6);
        p.set_protocol_len(4);
        p.set_operation(arp_op::REPLY);
        p.set_sender_hw_addr(NS);
        p.set_sender_proto_addr(NS_IP);
        p.set_target_hw_addr(HOST);
        p.set_target_proto_addr(HOST_IP);
        assert_eq!(p.into_inner(), arp(fixtures::ARP_REPLY));
    }
}
