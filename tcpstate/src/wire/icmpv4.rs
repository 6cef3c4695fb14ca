//! ICMPv4 (RFC 792). The switch answers echo requests in place and may originate
//! errors, so the view exposes the common 4-byte header plus the echo
//! identifier/sequence words; for error messages those 4 bytes are the "unused" or
//! next-hop-MTU field and the data is the offending datagram's header.
use super::{be16, checksum, put16, Result, WireError};

/// ICMP message types the switch handles.
pub mod icmp_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
}

/// A view of an ICMPv4 message. The buffer must be exactly the IP payload: the
/// checksum covers all of it.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T> {
    buffer: T,
}

mod field {
    use std::ops::RangeFrom;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const DATA: RangeFrom<usize> = 8..;
}

impl<T> Icmpv4Packet<T> {
    /// Type, code, checksum and the 4-byte rest-of-header.
    pub const HEADER_LEN: usize = field::DATA.start;

    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if shorter than the 8-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < Self::HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Identifier of an echo request/reply.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Sequence number of an echo request/reply.
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// Everything after the 8-byte header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// Whether the checksum over the whole message is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::internet(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    #[inline]
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    #[inline]
    pub fn set_echo_seq(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::ECHO_SEQ, value);
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Recomputes the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let csum = checksum::internet(self.buffer.as_ref());
        self.set_checksum(csum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures;

    /// ICMP starts after Ethernet (14) and an option-less IPv4 header (20).
    fn icmp(frame: &[u8]) -> &[u8] {
        &frame[34..]
    }

    #[test]
    fn real_echo_request_and_reply() {
        let req = Icmpv4Packet::new_checked(icmp(fixtures::ICMP_ECHO_REQUEST)).unwrap();
        assert_eq!(
            (req.msg_type(), req.code(), req.checksum()),
            (icmp_type::ECHO_REQUEST, 0, 0xbc4d)
        );
        assert_eq!((req.echo_ident(), req.echo_seq()), (6188, 1));
        assert_eq!(req.data().len(), 56);
        // iputils ping data: a 16-byte struct timeval, then bytes 0x10, 0x11, ...
        assert_eq!(&req.data()[16..20], &[0x10, 0x11, 0x12, 0x13]);
        assert!(req.verify_checksum());
        let rep = Icmpv4Packet::new_checked(icmp(fixtures::ICMP_ECHO_REPLY)).unwrap();
        assert_eq!(
            (rep.msg_type(), rep.echo_ident(), rep.echo_seq()),
            (icmp_type::ECHO_REPLY, 6188, 1)
        );
        assert!(rep.verify_checksum());
        assert_eq!(rep.data(), req.data());
    }

    #[test]
    fn in_place_reply_matches_the_kernels() {
        // Turn the captured request into a reply the way the dataplane does (type
        // change + RFC 1624 update) and compare with the reply Linux sent.
        let mut b = icmp(fixtures::ICMP_ECHO_REQUEST).to_vec();
        let mut p = Icmpv4Packet::new_unchecked(&mut b[..]);
        let old = u16::from(icmp_type::ECHO_REQUEST) << 8;
        let csum = checksum::update16(p.checksum(), old, 0);
        p.set_msg_type(icmp_type::ECHO_REPLY);
        p.set_checksum(csum);
        assert!(p.verify_checksum());
        assert_eq!(b, icmp(fixtures::ICMP_ECHO_REPLY));
        // A full recomputation agrees.
        let mut p = Icmpv4Packet::new_unchecked(&mut b[..]);
        p.set_checksum(0xffff);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert_eq!(p.checksum(), 0xc44d);
    }

    #[test]
    fn truncated_at_every_length() {
        let full = icmp(fixtures::ICMP_ECHO_REPLY);
        for len in 0..8 {
            assert_eq!(
                Icmpv4Packet::new_checked(&full[..len]).err(),
                Some(WireError::Truncated)
            );
        }
        for len in 8..full.len() {
            let p = Icmpv4Packet::new_checked(&full[..len]).unwrap();
            assert_eq!(p.data().len(), len - 8);
            assert!(
                !p.verify_checksum(),
                "a cut message fails its checksum (len {len})"
            );
        }
    }

    #[test]
    fn setters_build_an_error_header() {
        let mut b = [0u8; 8 + 28];
        let mut p = Icmpv4Packet::new_unchecked(&mut b[..]);
        p.set_msg_type(icmp_type::DEST_UNREACHABLE);
        p.set_code(4); // fragmentation needed
        p.set_echo_ident(0);
        p.set_echo_seq(1400); // next-hop MTU shares the echo sequence's position
        p.data_mut().copy_from_slice(&fixtures::TCP_SYN[14..42]);
        p.fill_checksum();
        let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.msg_type(), p.code(), p.echo_seq()), (3, 4, 1400));
        assert!(p.verify_checksum());
        assert_eq!(p.clone().into_inner().len(), 36);
        let mut p = Icmpv4Packet::new_unchecked(&mut b[..]);
        p.set_msg_type(icmp_type::TIME_EXCEEDED);
        assert!(!p.verify_checksum());
    }
}
