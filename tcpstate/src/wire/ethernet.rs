//! Ethernet II frames (no 802.1Q tag: the switch's ports are untagged) and MAC
//! addresses.
use std::fmt;
use std::str::FromStr;

use super::{be16, put16, Result, WireError};

/// EtherType values the switch looks at.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
}

/// A 48-bit IEEE MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// The address in the first six bytes of `data`.
    ///
    /// # Panics
    /// If `data` is not exactly six bytes long; views only pass fixed ranges.
    pub fn from_bytes(data: &[u8]) -> MacAddr {
        let mut b = [0u8; 6];
        b.copy_from_slice(data);
        MacAddr(b)
    }

    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group bit set: multicast, including broadcast.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Group bit clear. The all-zero address counts as unicast here; callers that
    /// learn neighbours may want to refuse it separately.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Locally administered (U/L bit set), as for virtual NICs.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = WireError;

    /// Parses the colon form `aa:bb:cc:dd:ee:ff` (either case, two hex digits per
    /// octet), the form `ip link` prints and configs use.
    fn from_str(s: &str) -> Result<MacAddr> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or(WireError::Malformed)?;
            if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(WireError::Malformed);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| WireError::Malformed)?;
        }
        if parts.next().is_some() {
            return Err(WireError::Malformed);
        }
        Ok(MacAddr(out))
    }
}

/// A view of an Ethernet II frame: 14-byte header, then the payload up to the end of
/// the buffer (which may include the padding short frames carry; the IPv4 view
/// bounds its payload by its own length field).
#[derive(Debug, Clone)]
pub struct EthernetFrame<T> {
    buffer: T,
}

mod field {
    use std::ops::{Range, RangeFrom};

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

impl<T> EthernetFrame<T> {
    pub const HEADER_LEN: usize = field::PAYLOAD.start;

    /// Wraps `buffer` without checking it; getters panic if it is shorter than the
    /// header.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// `Err(Truncated)` unless the buffer holds a whole header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < Self::HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::ETHERTYPE, value);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// An Ethernet header as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub src_addr: MacAddr,
    pub dst_addr: MacAddr,
    pub ethertype: u16,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &EthernetFrame<&T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// The header length; the payload comes on top.
    pub const fn buffer_len(&self) -> usize {
        EthernetFrame::<&[u8]>::HEADER_LEN
    }

    /// Writes the header; the payload is left as it is.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, frame: &mut EthernetFrame<&mut T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures;

    const HOST: MacAddr = MacAddr([0x46, 0x6c, 0xcc, 0x36, 0xb5, 0xff]);
    const NS: MacAddr = MacAddr([0xf2, 0xab, 0x1c, 0x44, 0x9c, 0x8e]);

    #[test]
    fn mac_text_round_trip() {
        let m: MacAddr = "46:6C:cc:36:b5:ff".parse().unwrap();
        assert_eq!(m, HOST);
        assert_eq!(m.to_string(), "46:6c:cc:36:b5:ff");
        assert_eq!(MacAddr::BROADCAST.to_string(), "ff:ff:ff:ff:ff:ff");
        for bad in [
            "",
            "46:6c:cc:36:b5",
            "46:6c:cc:36:b5:ff:00",
            "46:6c:cc:36:b5:f",
            "46:6c:cc:36:b5:fff",
            "46-6c-cc-36-b5-ff",
            "46:6c:cc:36:b5:+f",
            "g6:6c:cc:36:b5:ff",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(WireError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn mac_classes() {
        assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
        assert!(!MacAddr::BROADCAST.is_unicast());
        let v6_all_routers = MacAddr([0x33, 0x33, 0, 0, 0, 2]);
        assert!(v6_all_routers.is_multicast() && !v6_all_routers.is_broadcast());
        assert!(HOST.is_unicast() && HOST.is_local());
        assert!(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]).is_local());
        assert!(!MacAddr([0x00, 0x1b, 0x21, 1, 2, 3]).is_local());
        assert_eq!(MacAddr::from_bytes(&fixtures::ARP_REQUEST[6..12]), HOST);
    }

    #[test]
    fn real_frames() {
        let f = EthernetFrame::new_checked(fixtures::ARP_REQUEST).unwrap();
        assert_eq!(
            (f.dst_addr(), f.src_addr(), f.ethertype()),
            (MacAddr::BROADCAST, HOST, ethertype::ARP)
        );
        assert_eq!(f.payload().len(), 28);
        let f = EthernetFrame::new_checked(fixtures::ICMP_ECHO_REQUEST).unwrap();
        assert_eq!(
            (f.dst_addr(), f.src_addr(), f.ethertype()),
            (NS, HOST, ethertype::IPV4)
        );
        let f = EthernetFrame::new_checked(fixtures::IPV6_ROUTER_SOLICIT).unwrap();
        assert_eq!(f.ethertype(), ethertype::IPV6);
        assert!(f.dst_addr().is_multicast());
    }

    #[test]
    fn truncated_at_every_length() {
        let full = fixtures::ARP_REPLY;
        for len in 0..EthernetFrame::<&[u8]>::HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&full[..len]).err(),
                Some(WireError::Truncated)
            );
        }
        let hdr_only = EthernetFrame::new_checked(&full[..14]).unwrap();
        assert!(hdr_only.payload().is_empty());
    }

    #[test]
    fn setters_and_repr_round_trip() {
        let repr =
            EthernetRepr::parse(&EthernetFrame::new_checked(fixtures::ARP_REPLY).unwrap()).unwrap();
        assert_eq!(
            repr,
            EthernetRepr {
                src_addr: NS,
                dst_addr: HOST,
                ethertype: ethertype::ARP
            }
        );
        let mut buf = fixtures::ARP_REPLY.to_vec();
        buf[..14].fill(0);
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        assert_eq!(buf, fixtures::ARP_REPLY);
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        f.set_ethertype(ethertype::IPV4);
        f.payload_mut()[0] = 0x45;
        assert_eq!(&f.into_inner()[12..15], &[0x08, 0x00, 0x45]);
        assert_eq!(repr.buffer_len(), 14);
    }
}
