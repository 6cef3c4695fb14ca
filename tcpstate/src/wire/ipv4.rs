//! IPv4 headers (RFC 791). Options are carried (the view skips them by the header
//! length) but never interpreted: the switch drops packets that have them.
use std::net::Ipv4Addr;

use super::{be16, checksum, ipv4_at, put16, Result, WireError};

/// IP protocol numbers the switch looks at.
pub mod ip_proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    /// IPv4 in IPv4 (RFC 2003): handoff's tunnel to a routed backend.
    pub const IPIP: u8 = 4;
    pub const UDP: u8 = 17;
    /// Generic Routing Encapsulation (RFC 2784): handoff's other tunnel.
    pub const GRE: u8 = 47;
}

/// A view of an IPv4 packet. The buffer may extend past `total_len` (Ethernet
/// padding); [`payload`](Ipv4Packet::payload) stops at `total_len`.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T> {
    buffer: T,
}

mod field {
    use std::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: usize = 12;
    pub const DST_ADDR: usize = 16;
    pub const END: usize = 20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

impl<T> Ipv4Packet<T> {
    /// Length of a header without options.
    pub const HEADER_LEN: usize = field::END;

    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Everything the getters rely on: a 20-byte header, version 4 (the length
    /// fields mean nothing for another version), `20 <= header_len <= total_len`
    /// and `total_len <=` the buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = usize::from(self.header_len());
        let total_len = usize::from(self.total_len());
        if header_len < Self::HEADER_LEN || header_len > total_len {
            return Err(WireError::BadHeaderLen);
        }
        if total_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Length of header plus payload, in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    fn flags_and_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_and_offset() & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_and_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_and_offset() & OFFSET_MASK) << 3
    }

    /// Part of a fragmented datagram: more fragments follow, or this is not the first.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_and_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    #[inline]
    pub fn has_options(&self) -> bool {
        usize::from(self.header_len()) > Self::HEADER_LEN
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::SRC_ADDR)
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The option bytes between the fixed header and the payload.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::END..usize::from(self.header_len())]
    }

    /// Whether the header checksum (over `header_len` bytes) is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::internet(&self.buffer.as_ref()[..usize::from(self.header_len())]) == 0
    }

    /// The bytes after the header, up to `total_len` (excluding any link padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version nibble (4) and the header length in bytes (a multiple of 4,
    /// 20..=60) in one write, as both share the first byte.
    #[inline]
    pub fn set_version_and_header_len(&mut self, version: u8, header_len: u8) {
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | ((header_len / 4) & 0x0f);
    }

    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes (stored as IHL = `header_len / 4`).
    #[inline]
    pub fn set_header_len(&mut self, header_len: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((header_len / 4) & 0x0f);
    }

    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, value);
    }

    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::IDENT, value);
    }

    #[inline]
    fn set_flag(&mut self, flag: u16, on: bool) {
        let raw = self.flags_and_offset();
        put16(
            self.buffer.as_mut(),
            field::FLG_OFF,
            if on { raw | flag } else { raw & !flag },
        );
    }

    #[inline]
    pub fn set_dont_frag(&mut self, on: bool) {
        self.set_flag(FLAG_DF, on);
    }

    #[inline]
    pub fn set_more_frags(&mut self, on: bool) {
        self.set_flag(FLAG_MF, on);
    }

    /// Sets the fragment offset in bytes (rounded down to a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let raw = (self.flags_and_offset() & !OFFSET_MASK) | (bytes >> 3);
        put16(self.buffer.as_mut(), field::FLG_OFF, raw);
    }

    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    #[inline]
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR..field::SRC_ADDR + 4].copy_from_slice(&addr.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR..field::DST_ADDR + 4].copy_from_slice(&addr.octets());
    }

    /// Recomputes the header checksum over `header_len` bytes.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let csum = checksum::internet(&self.buffer.as_ref()[..usize::from(self.header_len())]);
        self.set_checksum(csum);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = usize::from(self.header_len())..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// An IPv4 header without options or fragmentation, as values. The switch only ever
/// originates such headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: usize,
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Reads the header (options are skipped; DSCP/ECN and the identification are
    /// dropped). Fragments are `Unsupported`: their payload is not a whole datagram.
    /// With `verify_checksum` false the checksum is trusted (e.g. the NIC checked it).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Ipv4Packet<&T>,
        verify_checksum: bool,
    ) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if verify_checksum && !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        if packet.is_fragment() {
            return Err(WireError::Unsupported);
        }
        Ok(Ipv4Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - usize::from(packet.header_len()),
            ttl: packet.ttl(),
        })
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        Ipv4Packet::<&[u8]>::HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header: DSCP/ECN 0, DF set, identification 0 (RFC 6864
    /// allows any value for an atomic datagram, which DF makes this), and the
    /// checksum. The payload is left for the caller.
    ///
    /// # Panics
    /// If the buffer is shorter than 20 bytes. `payload_len` must not exceed
    /// 65515; a larger one is clamped (the caller sizes packets by the MTU).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Ipv4Packet<&mut T>) {
        debug_assert!(self.buffer_len() <= usize::from(u16::MAX));
        let total_len = u16::try_from(self.buffer_len()).unwrap_or(u16::MAX);
        packet.set_version_and_header_len(4, Ipv4Packet::<&[u8]>::HEADER_LEN as u8);
        packet.set_dscp_ecn(0);
        packet.set_total_len(total_len);
        packet.set_ident(0);
        put16(packet.buffer.as_mut(), field::FLG_OFF, FLAG_DF);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures;

    const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
    const NS_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 2);

    fn ip(frame: &[u8]) -> &[u8] {
        &frame[14..]
    }

    #[test]
    fn real_echo_request_header() {
        let p = Ipv4Packet::new_checked(ip(fixtures::ICMP_ECHO_REQUEST)).unwrap();
        assert_eq!(
            (p.version(), p.header_len(), p.dscp_ecn(), p.total_len()),
            (4, 20, 0, 84)
        );
        assert_eq!(
            (p.ident(), p.dont_frag(), p.more_frags(), p.frag_offset()),
            (0x734a, true, false, 0)
        );
        assert!(!p.is_fragment() && !p.has_options() && p.options().is_empty());
        assert_eq!(
            (p.ttl(), p.protocol(), p.checksum()),
            (64, ip_proto::ICMP, 0xb168)
        );
        assert_eq!((p.src_addr(), p.dst_addr()), (HOST_IP, NS_IP));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 64);
        // The reply came back without DF (Linux does that for echo replies).
        let p = Ipv4Packet::new_checked(ip(fixtures::ICMP_ECHO_REPLY)).unwrap();
        assert!(!p.dont_frag() && p.verify_checksum());
    }

    #[test]
    fn every_fixture_header_verifies() {
        for frame in fixtures::IPV4 {
            let p = Ipv4Packet::new_checked(ip(frame)).unwrap();
            assert!(p.verify_checksum());
            let mut b = ip(frame).to_vec();
            let mut q = Ipv4Packet::new_unchecked(&mut b[..]);
            q.set_checksum(0x1234);
            assert!(!q.verify_checksum());
            q.fill_checksum();
            assert_eq!(b, ip(frame), "recomputed checksum equals the captured one");
        }
    }

    #[test]
    fn payload_excludes_link_padding() {
        let mut padded = ip(fixtures::TCP_RST_ACK).to_vec();
        padded.extend_from_slice(&[0; 6]); // 54-byte frame padded to 60 on the wire
        let p = Ipv4Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload().len(), 20);
    }

    #[test]
    fn truncated_at_every_length() {
        let full = ip(fixtures::TCP_SYN);
        for len in 0..full.len() {
            let e = Ipv4Packet::new_checked(&full[..len]).err();
            assert_eq!(e, Some(WireError::Truncated), "len {len}");
            assert_eq!(
                Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&full[..len]), true),
                Err(WireError::Truncated)
            );
        }
        assert!(Ipv4Packet::new_checked(full).is_ok());
    }

    #[test]
    fn bad_version_and_header_lengths() {
        let base = ip(fixtures::TCP_SYN).to_vec();
        let mut b = base.clone();
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::BadVersion)
        );
        for ihl in 0..5 {
            b[0] = 0x40 | ihl;
            assert_eq!(
                Ipv4Packet::new_checked(&b[..]).err(),
                Some(WireError::BadHeaderLen),
                "ihl {ihl}"
            );
        }
        // IHL 15 = 60 bytes, longer than total_len (60 bytes of SYN is exactly 60: use a
        // shorter total length).
        let mut b = base.clone();
        b[0] = 0x4f;
        b[2..4].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::BadHeaderLen)
        );
        // total_len smaller than a minimal header.
        let mut b = base.clone();
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::BadHeaderLen)
        );
        // total_len beyond the buffer.
        let mut b = base;
        b[2..4].copy_from_slice(&61u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn options_are_skipped() {
        // The SYN's IP header with 4 bytes of options (NOP x3, EOL) inserted.
        let orig = ip(fixtures::TCP_SYN);
        let mut b = orig[..20].to_vec();
        b.extend_from_slice(&[1, 1, 1, 0]);
        b.extend_from_slice(&orig[20..]);
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_header_len(24);
        p.set_total_len(64);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.has_options() && p.verify_checksum());
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &orig[20..]);
        assert_eq!(Ipv4Repr::parse(&p, true).unwrap().payload_len, 40);
    }

    #[test]
    fn fragments() {
        let mut b = ip(fixtures::ICMP_ECHO_REQUEST).to_vec();
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_more_frags(true);
        assert!(p.is_fragment() && p.more_frags());
        p.set_more_frags(false);
        p.set_frag_offset(1480);
        assert!(p.is_fragment() && p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        p.set_dont_frag(false);
        assert!(!p.dont_frag() && p.frag_offset() == 1480);
        p.fill_checksum();
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap(), true),
            Err(WireError::Unsupported)
        );
    }

    #[test]
    fn repr_round_trip_reproduces_a_linux_header_but_ident() {
        let p = Ipv4Packet::new_checked(ip(fixtures::TCP_SYN_ACK)).unwrap();
        let repr = Ipv4Repr::parse(&p, true).unwrap();
        assert_eq!(
            repr,
            Ipv4Repr {
                src: NS_IP,
                dst: HOST_IP,
                protocol: ip_proto::TCP,
                payload_len: 40,
                ttl: 64
            }
        );
        let mut buf = vec![0xee; repr.buffer_len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        // Linux also sends SYN-ACKs with identification 0 and DF: byte-identical.
        assert_eq!(&buf[..20], &ip(fixtures::TCP_SYN_ACK)[..20]);
        let again = Ipv4Repr::parse(&Ipv4Packet::new_checked(&buf[..]).unwrap(), true).unwrap();
        assert_eq!(again, repr);
        let mut bad = ip(fixtures::TCP_SYN_ACK).to_vec();
        bad[8] = 1; // TTL changed, checksum not
        let p = Ipv4Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p, true), Err(WireError::BadChecksum));
        assert_eq!(Ipv4Repr::parse(&p, false).unwrap().ttl, 1);
    }

    #[test]
    fn setters() {
        let mut b = [0u8; 20];
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_version(4);
        p.set_header_len(20);
        p.set_dscp_ecn(0);
        p.set_total_len(84);
        p.set_ident(0x734a);
        p.set_dont_frag(true);
        p.set_ttl(64);
        p.set_protocol(ip_proto::ICMP);
        p.set_src_addr(HOST_IP);
        p.set_dst_addr(NS_IP);
        p.fill_checksum();
        assert_eq!(&b[..], &ip(fixtures::ICMP_ECHO_REQUEST)[..20]);
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_version_and_header_len(4, 24);
        assert_eq!((p.version(), p.header_len()), (4, 24));
        assert_eq!(p.into_inner()[0], 0x46);
    }

    #[test]
    fn payload_mut_is_bounded_by_total_len() {
        let mut b = ip(fixtures::TCP_RST_ACK).to_vec();
        b.extend_from_slice(&[0; 6]);
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.payload_mut().len(), 20);
        p.payload_mut()[0] = 0xaa;
        assert_eq!(b[20], 0xaa);
    }
}
