//! The two encapsulations handoff uses to reach an agent on a routed backend (paper 004):
//! IPv4 in IPv4 (RFC 2003) and GRE (RFC 2784). The switch puts an outer IPv4 header (its
//! own address to the backend host's), and for GRE a 4-byte GRE header, in front of a
//! client's IPv4 packet; the agent takes them off in userspace (this kernel has no tunnel
//! devices, and backends should need none).
//!
//! ```text
//!  plain:  | Ethernet | IPv4 client -> VIP, TCP ... |
//!  ipip:   | Ethernet | IPv4 switch -> backend, proto 4  | IPv4 client -> VIP, TCP ... |
//!  gre:    | Ethernet | IPv4 switch -> backend, proto 47 | GRE 0x0800 | IPv4 client -> VIP ... |
//! ```
use std::net::Ipv4Addr;

use super::ipv4::{ip_proto, Ipv4Packet, Ipv4Repr};

/// An encapsulation of IPv4 in IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// IPv4 in IPv4 (RFC 2003): a 20-byte outer header, protocol 4.
    Ipip,
    /// GRE (RFC 2784) without checksum, key or sequence number: a 20-byte outer header
    /// (protocol 47) and a 4-byte GRE header naming IPv4 (0x0800) as the payload.
    Gre,
}

/// The outer IPv4 header's length (no options).
const OUTER_IP: usize = 20;
/// The base GRE header: flags and version (2 bytes), protocol type (2 bytes).
const GRE_BASE: usize = 4;
/// GRE's protocol type for IPv4 (an EtherType).
const GRE_PROTO_IPV4: u16 = 0x0800;
/// GRE flag bits in the first byte: checksum, routing (RFC 1701), key, sequence number.
const GRE_C: u8 = 0x80;
const GRE_R: u8 = 0x40;
const GRE_K: u8 = 0x20;
const GRE_S: u8 = 0x10;

impl Encap {
    /// Bytes the encapsulation adds in front of the inner packet.
    pub const fn overhead(self) -> usize {
        match self {
            Encap::Ipip => OUTER_IP,
            Encap::Gre => OUTER_IP + GRE_BASE,
        }
    }

    /// Writes the encapsulation into `outer` (its first [`overhead`](Self::overhead)
    /// bytes) for an inner packet of `inner_len` bytes that follows it: DF set (a tunnel
    /// endpoint that fragments is worse than one that is told the MTU), TTL 64, checksum
    /// filled.
    pub fn write_outer(self, outer: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, inner_len: usize) {
        let (protocol, shim) = match self {
            Encap::Ipip => (ip_proto::IPIP, 0),
            Encap::Gre => (ip_proto::GRE, GRE_BASE),
        };
        Ipv4Repr {
            src,
            dst,
            protocol,
            payload_len: shim + inner_len,
            ttl: 64,
        }
        .emit(&mut Ipv4Packet::new_unchecked(
            &mut outer[..OUTER_IP + shim + inner_len],
        ));
        if shim > 0 {
            let gre = &mut outer[OUTER_IP..OUTER_IP + GRE_BASE];
            gre[..2].copy_from_slice(&[0, 0]);
            gre[2..].copy_from_slice(&GRE_PROTO_IPV4.to_be_bytes());
        }
    }
}

/// If `ip` (an IPv4 packet) is a whole IP-in-IP or GRE datagram carrying IPv4: which, and
/// the inner packet's offset. `None` for anything else: another protocol, a fragment, a bad
/// outer checksum, GRE of another version or payload type or with source routing, a
/// truncated or non-IPv4 inner packet. GRE's optional checksum, key and sequence fields
/// (RFC 2890) are skipped, not checked: the inner packet carries its own checksums.
pub fn inner_offset(ip: &[u8]) -> Option<(Encap, usize)> {
    let outer = Ipv4Packet::new_checked(ip).ok()?;
    if outer.is_fragment() || !outer.verify_checksum() {
        return None;
    }
    let header = usize::from(outer.header_len());
    let end = usize::from(outer.total_len());
    let (encap, at) = match outer.protocol() {
        ip_proto::IPIP => (Encap::Ipip, header),
        ip_proto::GRE => (Encap::Gre, header + gre_len(ip.get(header..end)?)?),
        _ => return None,
    };
    let inner = Ipv4Packet::new_checked(ip.get(at..end)?).ok()?;
    (inner.version() == 4).then_some((encap, at))
}

/// The GRE header's length at the start of `gre` if it is version 0 carrying IPv4 with no
/// source routing.
fn gre_len(gre: &[u8]) -> Option<usize> {
    let flags = *gre.first()?;
    let version = gre.get(1)? & 0x07;
    let proto = u16::from_be_bytes([*gre.get(2)?, *gre.get(3)?]);
    if version != 0 || flags & GRE_R != 0 || proto != GRE_PROTO_IPV4 {
        return None;
    }
    let optional = [GRE_C, GRE_K, GRE_S]
        .iter()
        .filter(|&&f| flags & f != 0)
        .count();
    let len = GRE_BASE + 4 * optional;
    (gre.len() >= len).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner_packet() -> Vec<u8> {
        let mut v = vec![0u8; 40];
        Ipv4Repr {
            src: Ipv4Addr::new(10, 1, 0, 2),
            dst: Ipv4Addr::new(10, 1, 0, 10),
            protocol: ip_proto::TCP,
            payload_len: 20,
            ttl: 63,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut v[..]));
        v
    }

    fn wrapped(encap: Encap) -> Vec<u8> {
        let inner = inner_packet();
        let n = encap.overhead();
        let mut buf = vec![0u8; n + inner.len()];
        buf[n..].copy_from_slice(&inner);
        encap.write_outer(
            &mut buf,
            Ipv4Addr::new(10, 1, 1, 1),
            Ipv4Addr::new(10, 1, 2, 14),
            inner.len(),
        );
        buf
    }

    #[test]
    fn outer_header_round_trip() {
        for (encap, proto) in [(Encap::Ipip, ip_proto::IPIP), (Encap::Gre, ip_proto::GRE)] {
            let buf = wrapped(encap);
            let n = encap.overhead();
            let outer = Ipv4Packet::new_checked(&buf[..]).unwrap();
            assert_eq!(outer.protocol(), proto);
            assert_eq!(usize::from(outer.total_len()), n + 40);
            assert_eq!(outer.dst_addr(), Ipv4Addr::new(10, 1, 2, 14));
            assert!(outer.verify_checksum());
            assert_eq!(inner_offset(&buf), Some((encap, n)));
            assert_eq!(&buf[n..], &inner_packet()[..]);
        }
        assert_eq!(&wrapped(Encap::Gre)[20..24], &[0, 0, 0x08, 0x00]);
    }

    #[test]
    fn gre_optional_fields_are_skipped() {
        // A GRE header with key and sequence number (RFC 2890): 12 bytes.
        let inner = inner_packet();
        let mut buf = vec![0u8; 20 + 12 + inner.len()];
        buf[32..].copy_from_slice(&inner);
        Ipv4Repr {
            src: Ipv4Addr::LOCALHOST,
            dst: Ipv4Addr::LOCALHOST,
            protocol: ip_proto::GRE,
            payload_len: 12 + inner.len(),
            ttl: 64,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        buf[20..24].copy_from_slice(&[GRE_K | GRE_S, 0, 0x08, 0x00]);
        assert_eq!(inner_offset(&buf), Some((Encap::Gre, 32)));
    }

    #[test]
    fn other_packets_are_not_tunnels() {
        assert_eq!(inner_offset(&inner_packet()), None, "TCP is not a tunnel");
        for encap in [Encap::Ipip, Encap::Gre] {
            let buf = wrapped(encap);
            let n = encap.overhead();
            let mut bad = buf.clone();
            bad[10] ^= 0xff; // outer checksum
            assert_eq!(inner_offset(&bad), None);
            let mut short = buf.clone();
            short.truncate(n + 10); // inner truncated
            assert_eq!(inner_offset(&short), None);
            let mut v6 = buf.clone();
            v6[n] = 0x65; // inner version 6
            assert_eq!(inner_offset(&v6), None);
        }
        let gre = wrapped(Encap::Gre);
        let mut other = gre.clone();
        other[22..24].copy_from_slice(&[0x86, 0xdd]); // GRE carrying IPv6
        assert_eq!(inner_offset(&other), None);
        let mut v1 = gre.clone();
        v1[21] = 1; // GRE version 1 (PPTP)
        assert_eq!(inner_offset(&v1), None);
        let mut routed = gre;
        routed[20] = GRE_R;
        assert_eq!(inner_offset(&routed), None);
    }
}
