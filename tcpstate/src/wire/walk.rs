//! A whole-frame walk over every view, for fuzzing: whatever the bytes, it must
//! return (`Ok` or `Err`) and never panic. Where a `Repr` exists it also checks
//! that emitting the parsed value and parsing it again gives the same value, so the
//! fuzzer finds builder bugs too (those asserts are the only intended panics, and
//! each one would be a real bug).
use std::hint::black_box;

use super::{
    ethertype, ip_proto, ArpPacket, ArpRepr, EthernetFrame, Icmpv4Packet, Ipv4Packet, Ipv4Repr,
    Result, TcpOptionIter, TcpPacket, TcpRepr,
};

/// Parses `frame` as Ethernet, then ARP or IPv4, then ICMP or TCP with its options,
/// reading every field on the way. Ethertypes and protocols the switch ignores end
/// the walk with `Ok(())`.
pub fn parse_all(frame: &[u8]) -> Result<()> {
    let eth = EthernetFrame::new_checked(frame)?;
    black_box((
        eth.dst_addr(),
        eth.src_addr(),
        eth.dst_addr().is_broadcast(),
        eth.src_addr().is_unicast(),
    ));
    match eth.ethertype() {
        ethertype::ARP => walk_arp(eth.payload()),
        ethertype::IPV4 => walk_ipv4(eth.payload()),
        _ => Ok(()),
    }
}

fn walk_arp(bytes: &[u8]) -> Result<()> {
    let arp = ArpPacket::new_checked(bytes)?;
    black_box((
        arp.hardware_type(),
        arp.protocol_type(),
        arp.hardware_len(),
        arp.protocol_len(),
    ));
    let repr = ArpRepr::parse(&arp)?;
    let mut buf = [0u8; ArpPacket::<&[u8]>::LEN];
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
    let again = ArpPacket::new_checked(&buf[..]).map(|p| ArpRepr::parse(&p));
    assert_eq!(again, Ok(Ok(repr)), "ARP round trip");
    Ok(())
}

fn walk_ipv4(bytes: &[u8]) -> Result<()> {
    let ip = Ipv4Packet::new_checked(bytes)?;
    black_box((
        ip.version(),
        ip.dscp_ecn(),
        ip.ident(),
        ip.dont_frag(),
        ip.more_frags(),
        ip.frag_offset(),
    ));
    black_box((
        ip.is_fragment(),
        ip.has_options(),
        ip.options(),
        ip.ttl(),
        ip.checksum(),
        ip.verify_checksum(),
    ));
    let (src, dst) = (ip.src_addr(), ip.dst_addr());

    if let Ok(repr) = Ipv4Repr::parse(&ip, false) {
        // Round-trip the header alone; the payload is walked below.
        let header = Ipv4Repr {
            payload_len: 0,
            ..repr
        };
        let mut buf = [0u8; Ipv4Packet::<&[u8]>::HEADER_LEN];
        header.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let again = Ipv4Packet::new_checked(&buf[..]).map(|p| Ipv4Repr::parse(&p, true));
        assert_eq!(again, Ok(Ok(header)), "IPv4 round trip");
    }
    // A later fragment starts mid-datagram: there is no L4 header to read.
    if ip.frag_offset() != 0 {
        return Ok(());
    }
    match ip.protocol() {
        ip_proto::ICMP => {
            let icmp = Icmpv4Packet::new_checked(ip.payload())?;
            black_box((
                icmp.msg_type(),
                icmp.code(),
                icmp.checksum(),
                icmp.echo_ident(),
                icmp.echo_seq(),
            ));
            black_box((icmp.data(), icmp.verify_checksum()));
            Ok(())
        }
        ip_proto::TCP => walk_tcp(ip.payload(), src, dst),
        _ => Ok(()),
    }
}

fn walk_tcp(bytes: &[u8], src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr) -> Result<()> {
    let tcp = TcpPacket::new_checked(bytes)?;
    black_box((
        tcp.src_port(),
        tcp.dst_port(),
        tcp.seq_number(),
        tcp.ack_number(),
        tcp.header_len(),
    ));
    black_box((
        tcp.flags(),
        tcp.fin(),
        tcp.syn(),
        tcp.rst(),
        tcp.psh(),
        tcp.ack(),
        tcp.urg(),
        tcp.ece(),
        tcp.cwr(),
    ));
    black_box((
        tcp.window_len(),
        tcp.checksum(),
        tcp.urgent_at(),
        tcp.segment_len(),
        tcp.payload(),
    ));
    black_box(tcp.verify_checksum(src, dst));
    for option in TcpOptionIter::new(tcp.options()) {
        let option = option?;
        // Every option that parsed must emit to the same bytes length it claims.
        let mut buf = [0u8; 40];
        let len = option.emit(&mut buf[..option.buffer_len()]);
        assert_eq!(len, option.buffer_len(), "TCP option length");
        black_box(option);
    }

    let repr = TcpRepr::parse(&tcp, src, dst, false)?;
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut buf[..]),
        src,
        dst,
        tcp.payload(),
    );
    let again = TcpPacket::new_checked(&buf[..]).map(|p| TcpRepr::parse(&p, src, dst, true));
    assert_eq!(again, Ok(Ok(repr)), "TCP round trip");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{fixtures, WireError};

    #[test]
    fn every_fixture_walks_cleanly() {
        for frame in fixtures::ALL {
            assert_eq!(parse_all(frame), Ok(()));
        }
    }

    #[test]
    fn every_prefix_of_every_fixture_returns() {
        for frame in fixtures::ALL {
            for len in 0..frame.len() {
                let _ = parse_all(&frame[..len]);
            }
        }
        // The error comes from the innermost view that was cut.
        assert_eq!(
            parse_all(&fixtures::ARP_REQUEST[..13]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            parse_all(&fixtures::ARP_REQUEST[..41]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            parse_all(&fixtures::TCP_SYN[..73]),
            Err(WireError::Truncated)
        );
        // An ICMP message cut short but with a consistent IP length still walks.
        let mut f = fixtures::ICMP_ECHO_REQUEST[..50].to_vec();
        f[16..18].copy_from_slice(&36u16.to_be_bytes());
        assert_eq!(parse_all(&f), Ok(()));
        f[16..18].copy_from_slice(&27u16.to_be_bytes());
        assert_eq!(parse_all(&f), Err(WireError::Truncated));
    }

    #[test]
    fn inner_errors_propagate() {
        let mut f = fixtures::TCP_SACK_ACK.to_vec();
        f[34 + 12] = 0x40; // TCP data offset 4
        assert_eq!(parse_all(&f), Err(WireError::BadHeaderLen));
        let mut f = fixtures::TCP_SACK_ACK.to_vec();
        f[34 + 20 + 2] = 8; // NOP NOP then kind 8 (timestamps) with length 1
        f[34 + 20 + 3] = 1;
        assert_eq!(parse_all(&f), Err(WireError::Malformed));
        let mut f = fixtures::ARP_REPLY.to_vec();
        f[15] = 6; // hardware type 6 (IEEE 802)
        assert_eq!(parse_all(&f), Err(WireError::Malformed));
        let mut f = fixtures::ICMP_ECHO_REPLY.to_vec();
        f[14] = 0x46; // IHL 6: ICMP's first word becomes an IP option; lengths still agree
        assert_eq!(parse_all(&f), Ok(()));
        f[14] = 0x65;
        assert_eq!(parse_all(&f), Err(WireError::BadVersion));
    }

    #[test]
    fn later_fragments_are_not_parsed_as_l4() {
        let mut f = fixtures::TCP_SYN.to_vec();
        f[34 + 12] = 0x10; // garbage TCP data offset...
        let mut ip = crate::wire::Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.set_frag_offset(1480); // ...in a non-first fragment is not looked at
        assert_eq!(parse_all(&f), Ok(()));
    }
}
