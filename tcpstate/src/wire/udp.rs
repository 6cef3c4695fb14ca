//! UDP (RFC 768), for the one kind of datagram the switch takes: its handoff agents'
//! beats (`rules::beat`). A view of the datagram (header and payload) with the same
//! contract as the other views: `new_checked` vouches that the length field fits the
//! buffer, so no getter can index out of bounds.
use std::net::Ipv4Addr;

use super::{be16, checksum, ip_proto, put16, Result, WireError};

/// A view of a UDP datagram: the buffer is the IP payload (Ethernet padding beyond the
/// datagram's length field is allowed and ignored).
#[derive(Debug, Clone)]
pub struct UdpPacket<T> {
    buffer: T,
}

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

impl<T> UdpPacket<T> {
    pub const HEADER_LEN: usize = 8;

    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if shorter than the header or than the length field says;
    /// `Err(Malformed)` if the length field is below the header's 8 bytes.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(be16(b, field::LENGTH));
        if len < Self::HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if len > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header and payload.
    #[inline]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the datagram carries no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= Self::HEADER_LEN
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload, as far as the length field says.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the checksum is right, or absent (0: the sender computed none, which
    /// RFC 768 allows over IPv4).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let data = &self.buffer.as_ref()[..usize::from(len)];
        let sum = checksum::pseudo_header_v4(src, dst, ip_proto::UDP, len) + checksum::sum(data);
        checksum::fold(sum) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    #[inline]
    pub fn set_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, value);
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        &mut self.buffer.as_mut()[Self::HEADER_LEN..len]
    }

    /// Computes and stores the checksum (a computed 0 is sent as 0xffff, RFC 768).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = self.len();
        let data = &self.buffer.as_ref()[..usize::from(len)];
        let sum = checksum::pseudo_header_v4(src, dst, ip_proto::UDP, len) + checksum::sum(data);
        let c = !checksum::fold(sum);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 11);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 1);

    fn datagram(payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 8 + payload.len()];
        let mut u = UdpPacket::new_unchecked(&mut b[..]);
        u.set_src_port(40000);
        u.set_dst_port(7946);
        u.set_len((8 + payload.len()) as u16);
        u.payload_mut().copy_from_slice(payload);
        u.fill_checksum(SRC, DST);
        b
    }

    #[test]
    fn fields_and_checksum() {
        let mut b = datagram(b"{\"v\":1}");
        // Ethernet padding past the length field is not part of the datagram.
        b.extend_from_slice(&[0xee; 5]);
        let u = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.len()), (40000, 7946, 15));
        assert_eq!(u.payload(), b"{\"v\":1}");
        assert!(!u.is_empty());
        assert!(u.verify_checksum(SRC, DST));
        assert!(!u.verify_checksum(Ipv4Addr::new(10, 99, 1, 12), DST));
        // Any flipped bit is caught.
        for i in 0..15 {
            let mut c = b.clone();
            c[i] ^= 0x10;
            let u = UdpPacket::new_checked(&c[..]);
            if let Ok(u) = u {
                if u.checksum() != 0 {
                    assert!(!u.verify_checksum(SRC, DST), "byte {i}");
                }
            }
        }
        // No checksum: taken as sent.
        let mut z = b.clone();
        UdpPacket::new_unchecked(&mut z[..]).set_checksum(0);
        assert!(UdpPacket::new_checked(&z[..])
            .unwrap()
            .verify_checksum(SRC, DST));
    }

    #[test]
    fn a_computed_zero_is_sent_as_ffff() {
        // Find a payload whose checksum computes to 0 (two bytes adjusted).
        for x in 0..=u16::MAX {
            let b = datagram(&x.to_be_bytes());
            let u = UdpPacket::new_checked(&b[..]).unwrap();
            if u.checksum() == 0xffff {
                assert!(u.verify_checksum(SRC, DST));
                return;
            }
            assert_ne!(u.checksum(), 0);
        }
        panic!("no payload checksums to 0");
    }

    #[test]
    fn lengths() {
        let b = datagram(b"abc");
        for len in 0..8 {
            assert_eq!(
                UdpPacket::new_checked(&b[..len]).err(),
                Some(WireError::Truncated)
            );
        }
        assert_eq!(
            UdpPacket::new_checked(&b[..10]).err(),
            Some(WireError::Truncated),
            "the length field says 11"
        );
        let mut short = b.clone();
        UdpPacket::new_unchecked(&mut short[..]).set_len(7);
        assert_eq!(
            UdpPacket::new_checked(&short[..]).err(),
            Some(WireError::Malformed)
        );
        let empty = datagram(b"");
        let u = UdpPacket::new_checked(&empty[..]).unwrap();
        assert!(u.is_empty() && u.payload().is_empty());
    }
}
