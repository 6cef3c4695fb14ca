//! IPv4 in IPv4 (RFC 2003), as handoff uses it to reach an agent on a routed backend: the
//! switch puts a 20-byte outer header (its own address to the backend host's, protocol 4)
//! in front of a client's IPv4 packet; the agent takes it off in userspace (this kernel has
//! no tunnel devices, and backends should need none).
//!
//! ```text
//!  before:  | Ethernet | IPv4 client -> VIP, TCP ... |
//!  after:   | Ethernet | IPv4 switch -> backend, proto 4 | IPv4 client -> VIP, TCP ... |
//! ```
use std::net::Ipv4Addr;

use super::ipv4::{ip_proto, Ipv4Packet, Ipv4Repr};

/// Bytes the outer header adds (no options).
pub const OVERHEAD: usize = 20;

/// Writes the outer header into `outer` (its first [`OVERHEAD`] bytes) for an inner
/// packet of `inner_len` bytes: DF set (a tunnel endpoint that fragments is worse than
/// one that is told the MTU), TTL 64, checksum filled.
pub fn write_outer(outer: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, inner_len: usize) {
    Ipv4Repr {
        src,
        dst,
        protocol: ip_proto::IPIP,
        payload_len: inner_len,
        ttl: 64,
    }
    .emit(&mut Ipv4Packet::new_unchecked(
        &mut outer[..OVERHEAD + inner_len],
    ));
}

/// The inner packet's offset in `ip` (an IPv4 packet) if it is a whole IP-in-IP datagram
/// carrying IPv4: the outer header's length. `None` for anything else (not protocol 4, a
/// fragment, a bad outer checksum, a truncated or non-IPv4 inner packet).
pub fn inner_offset(ip: &[u8]) -> Option<usize> {
    let outer = Ipv4Packet::new_checked(ip).ok()?;
    if outer.protocol() != ip_proto::IPIP || outer.is_fragment() || !outer.verify_checksum() {
        return None;
    }
    let at = usize::from(outer.header_len());
    let end = usize::from(outer.total_len());
    let inner = Ipv4Packet::new_checked(&ip[at..end]).ok()?;
    (inner.version() == 4).then_some(at)
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

    #[test]
    fn outer_header_round_trip() {
        let inner = inner_packet();
        let mut buf = vec![0u8; OVERHEAD + inner.len()];
        buf[OVERHEAD..].copy_from_slice(&inner);
        write_outer(
            &mut buf,
            Ipv4Addr::new(10, 1, 1, 1),
            Ipv4Addr::new(10, 1, 2, 14),
            inner.len(),
        );
        let outer = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(outer.protocol(), ip_proto::IPIP);
        assert_eq!(usize::from(outer.total_len()), 60);
        assert_eq!(outer.dst_addr(), Ipv4Addr::new(10, 1, 2, 14));
        assert!(outer.verify_checksum());
        assert_eq!(inner_offset(&buf), Some(OVERHEAD));
        assert_eq!(&buf[OVERHEAD..], &inner[..]);
    }

    #[test]
    fn other_packets_are_not_tunnels() {
        let inner = inner_packet();
        assert_eq!(inner_offset(&inner), None, "TCP is not IP-in-IP");
        let mut buf = vec![0u8; OVERHEAD + inner.len()];
        buf[OVERHEAD..].copy_from_slice(&inner);
        write_outer(
            &mut buf,
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::LOCALHOST,
            inner.len(),
        );
        let mut bad = buf.clone();
        bad[10] ^= 0xff; // outer checksum
        assert_eq!(inner_offset(&bad), None);
        let mut short = buf.clone();
        short.truncate(OVERHEAD + 10); // inner truncated
        assert_eq!(inner_offset(&short), None);
        let mut v6 = buf.clone();
        v6[OVERHEAD] = 0x65; // inner version 6
        assert_eq!(inner_offset(&v6), None);
    }
}
