use super::*;
use rules::config::PortRole;

const OUR_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const PEER_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const OWN: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);

fn port() -> PortAddrs {
    PortAddrs {
        name: "client".into(),
        role: PortRole::Client,
        mac: OUR_MAC,
        own: vec!["10.99.0.1/24".parse().unwrap()],
        vips: vec![(VIP, vec![80])],
        per_request: vec![false],
        gateway: None,
        agent_port: 7946,
        agent_vips: Vec::new(),
        exception: false,
        cluster_port: 0,
        takeover: None,
        adopted_steer: None,
    }
}

/// The same port with an exception path to the host's kernel.
fn port_with_kernel() -> PortAddrs {
    PortAddrs {
        exception: true,
        ..port()
    }
}

fn arp_frame(
    op: u16,
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
    dst: MacAddr,
) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    build_arp_request(&mut f, sender_mac, sender_ip, target_ip);
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_dst_addr(dst);
    ArpPacket::new_unchecked(&mut f[14..42]).set_operation(op);
    f
}

/// A real `ping -c1 10.99.0.10` request as Linux sent it on the testbed (id 0x1d2b,
/// seq 1, 56 data bytes), captured with tcpdump.
fn echo_request() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&OUR_MAC.0);
    f.extend_from_slice(&PEER_MAC.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let payload: Vec<u8> = (0..56u8).collect();
    let total = 20 + 8 + payload.len();
    let mut ip = vec![
        0x45,
        0x00,
        (total >> 8) as u8,
        total as u8,
        0x6b,
        0x21,
        0x40,
        0x00,
        0x40,
        0x01,
        0,
        0,
    ];
    ip.extend_from_slice(&PEER.octets());
    ip.extend_from_slice(&VIP.octets());
    let c = checksum::internet(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut icmp = vec![8, 0, 0, 0, 0x1d, 0x2b, 0x00, 0x01];
    icmp.extend_from_slice(&payload);
    let c = checksum::internet(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

#[test]
fn arp_request_for_vip_and_own_address_is_answered_in_place() {
    for target in [VIP, OWN] {
        let mut neigh = NeighbourTable::new(16, 1000);
        let mut f = arp_frame(arp_op::REQUEST, PEER_MAC, PEER, target, MacAddr::BROADCAST);
        let (action, learned) = process_frame(&mut f, &port(), &mut neigh, 0, 1);
        assert_eq!(action, Action::ArpAnswered);
        assert_eq!(learned.unwrap().outcome, Learned::New);
        assert_eq!(neigh.lookup(PEER, 1), Some(PEER_MAC));
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(eth.dst_addr(), PEER_MAC);
        assert_eq!(eth.src_addr(), OUR_MAC);
        let reply = ArpRepr::parse(&ArpPacket::new_checked(&f[14..]).unwrap()).unwrap();
        assert_eq!(reply.operation, arp_op::REPLY);
        assert_eq!((reply.sender_mac, reply.sender_ip), (OUR_MAC, target));
        assert_eq!((reply.target_mac, reply.target_ip), (PEER_MAC, PEER));
    }
}

#[test]
fn arp_for_someone_else_is_dropped_and_not_learned() {
    let mut neigh = NeighbourTable::new(16, 1000);
    let mut f = arp_frame(
        arp_op::REQUEST,
        PEER_MAC,
        PEER,
        Ipv4Addr::new(10, 99, 0, 77),
        MacAddr::BROADCAST,
    );
    let (action, learned) = process_frame(&mut f, &port(), &mut neigh, 0, 1);
    assert_eq!(action, Action::Drop(DropReason::ArpNotForUs));
    assert!(learned.is_none() && neigh.is_empty());
    // An off-link sender is not learned either, even when asking for us.
    let mut f = arp_frame(
        arp_op::REQUEST,
        PEER_MAC,
        Ipv4Addr::new(192, 0, 2, 1),
        VIP,
        MacAddr::BROADCAST,
    );
    let (action, learned) = process_frame(&mut f, &port(), &mut neigh, 0, 1);
    assert_eq!(action, Action::ArpAnswered);
    assert!(learned.is_none());
}

#[test]
fn arp_reply_to_us_is_learned() {
    let mut neigh = NeighbourTable::new(16, 1000);
    let mut f = arp_frame(arp_op::REPLY, PEER_MAC, PEER, OWN, OUR_MAC);
    let (action, learned) = process_frame(&mut f, &port(), &mut neigh, 5, 1);
    assert_eq!(action, Action::Absorbed);
    assert_eq!(learned.map(|l| (l.ip, l.mac)), Some((PEER, PEER_MAC)));
}

#[test]
fn frames_for_other_macs_and_protocols_are_dropped() {
    let mut neigh = NeighbourTable::new(16, 1000);
    let other = MacAddr([0x02, 9, 9, 9, 9, 9]);
    let mut f = arp_frame(arp_op::REQUEST, PEER_MAC, PEER, VIP, other);
    assert_eq!(
        process_frame(&mut f, &port(), &mut neigh, 0, 1).0,
        Action::Drop(DropReason::NotOurMac)
    );
    let mut f = echo_request();
    f[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
    assert_eq!(
        process_frame(&mut f, &port(), &mut neigh, 0, 1).0,
        Action::Drop(DropReason::UnsupportedEthertype)
    );
    for len in 0..f.len() {
        let mut short = echo_request()[..len].to_vec();
        let (a, _) = process_frame(&mut short, &port(), &mut neigh, 0, 1);
        assert!(matches!(a, Action::Drop(_)), "prefix {len} gave {a:?}");
    }
}

#[test]
fn echo_request_is_answered_in_place() {
    let mut neigh = NeighbourTable::new(16, 1000);
    let mut f = echo_request();
    f.extend_from_slice(&[0; 4]); // Ethernet padding must not be echoed
    let (action, _) = process_frame(&mut f, &port(), &mut neigh, 0, 1);
    let Action::EchoAnswered { len } = action else {
        panic!("{action:?}")
    };
    assert_eq!(len, f.len() - 4);
    let f = &f[..len];
    let eth = EthernetFrame::new_checked(f).unwrap();
    assert_eq!((eth.dst_addr(), eth.src_addr()), (PEER_MAC, OUR_MAC));
    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr(), ip.ttl()), (VIP, PEER, TTL));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(icmp.msg_type(), icmp_type::ECHO_REPLY);
    assert!(
        icmp.verify_checksum(),
        "incremental checksum update is right"
    );
    assert_eq!((icmp.echo_ident(), icmp.echo_seq()), (0x1d2b, 1));
    assert_eq!(icmp.data(), &(0..56u8).collect::<Vec<_>>()[..]);
}

#[test]
fn bad_ip_and_icmp_are_dropped_with_reasons() {
    let mut neigh = NeighbourTable::new(16, 1000);
    let mut f = echo_request();
    f[24] ^= 0xff; // IP checksum
    assert_eq!(
        process_frame(&mut f, &port(), &mut neigh, 0, 1).0,
        Action::Drop(DropReason::BadIpChecksum)
    );
    let mut f = echo_request();
    f[40] ^= 0xff; // ICMP checksum
    assert_eq!(
        process_frame(&mut f, &port(), &mut neigh, 0, 1).0,
        Action::Drop(DropReason::BadIcmpChecksum)
    );
    let mut f = echo_request();
    f[30..34].copy_from_slice(&[10, 99, 0, 99]); // not ours
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.fill_checksum();
    assert_eq!(
        process_frame(&mut f, &port(), &mut neigh, 0, 1).0,
        Action::Drop(DropReason::NotForUs)
    );
    let mut f = echo_request();
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_more_frags(true);
    ip.fill_checksum();
    assert_eq!(
        process_frame(&mut f, &port(), &mut neigh, 0, 1).0,
        Action::Drop(DropReason::IpFragment)
    );
    let mut f = echo_request();
    f[34] = icmp_type::TIME_EXCEEDED;
    assert_eq!(
        process_frame(&mut f, &port(), &mut neigh, 0, 1).0,
        Action::Drop(DropReason::IcmpNotEcho)
    );
}

#[test]
fn tcp_to_vip_is_steered_by_client_tuple() {
    let mut neigh = NeighbourTable::new(16, 1000);
    let mut f = echo_request();
    // Turn it into a minimal TCP SYN to VIP:80 from PEER:40000.
    f.truncate(14 + 20);
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    f.extend_from_slice(&tcp);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_protocol(ip_proto::TCP);
    ip.set_total_len(40);
    ip.fill_checksum();
    let expect = steer::client_flow_core(PEER, 40000, VIP, 80, 2);
    assert_eq!(
        process_frame(&mut f, &port(), &mut neigh, 0, 2).0,
        Action::Tcp { core: expect }
    );
}

/// A UDP datagram from PEER to `dst`:`dport` carrying `payload`, its checksum filled.
fn udp_frame(dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = echo_request();
    f.truncate(14 + 20);
    let len = 8 + payload.len();
    f.resize(14 + 20 + len, 0);
    {
        let mut u = UdpPacket::new_unchecked(&mut f[34..]);
        u.set_src_port(40000);
        u.set_dst_port(dport);
        u.set_len(len as u16);
        u.payload_mut().copy_from_slice(payload);
        u.fill_checksum(PEER, dst);
    }
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_protocol(ip_proto::UDP);
    ip.set_dst_addr(dst);
    ip.set_total_len((20 + len) as u16);
    ip.fill_checksum();
    f
}

#[test]
fn agent_beats_are_classified_by_port_and_address() {
    let mut neigh = NeighbourTable::new(16, 1000);
    let payload = br#"{"v":1}"#;
    // To our own address at the agent port: a beat, its payload located (padding after).
    let mut f = udp_frame(OWN, 7946, payload);
    f.extend_from_slice(&[0; 6]);
    let (action, _) = process_frame(&mut f, &port(), &mut neigh, 0, 2);
    let Action::AgentBeat { src, at, len } = action else {
        panic!("{action:?}")
    };
    assert_eq!((src, &f[at..at + len]), (PEER, &payload[..]));
    // Without a checksum (0): taken as sent.
    let mut f = udp_frame(OWN, 7946, payload);
    UdpPacket::new_unchecked(&mut f[34..]).set_checksum(0);
    assert!(matches!(
        process_frame(&mut f, &port(), &mut neigh, 0, 1).0,
        Action::AgentBeat { .. }
    ));
    // A wrong checksum on the agent port: a bad beat.
    let mut f = udp_frame(OWN, 7946, payload);
    f[44] ^= 0x01;
    assert_eq!(
        process_frame(&mut f, &port(), &mut neigh, 0, 1).0,
        Action::Drop(DropReason::BadAgentBeat)
    );
    // Any other UDP stays unsupported: another port, the VIP, a broken header.
    for (dst, dport) in [(OWN, 7947), (VIP, 7946), (VIP, 80)] {
        let mut f = udp_frame(dst, dport, payload);
        assert_eq!(
            process_frame(&mut f, &port(), &mut neigh, 0, 1).0,
            Action::Drop(DropReason::UnsupportedProtocol),
            "{dst}:{dport}"
        );
    }
    let mut f = udp_frame(OWN, 7946, payload);
    UdpPacket::new_unchecked(&mut f[34..]).set_len(200);
    assert_eq!(
        process_frame(&mut f, &port(), &mut neigh, 0, 1).0,
        Action::Drop(DropReason::UnsupportedProtocol)
    );
}

/// With an exception path, what is not the switch's goes to the kernel; what is the
/// switch's (its own and VIP addresses) stays exactly as without one.
#[test]
fn with_an_exception_path_what_is_not_ours_goes_to_the_kernel() {
    let host = Ipv4Addr::new(10, 99, 0, 21);
    let mut neigh = NeighbourTable::new(16, 1000);
    // ARP for the host's address: the kernel answers it.
    let mut f = arp_frame(arp_op::REQUEST, PEER_MAC, PEER, host, MacAddr::BROADCAST);
    let (a, learned) = process_frame(&mut f, &port_with_kernel(), &mut neigh, 0, 1);
    assert_eq!(a, Action::ToKernel);
    assert!(
        learned.is_none(),
        "a request for the host teaches the switch nothing"
    );
    // The answer to the kernel's own request: the kernel's, and learned by the switch
    // when it already tracks the sender (here: not).
    let mut f = arp_frame(arp_op::REPLY, PEER_MAC, PEER, host, OUR_MAC);
    assert_eq!(
        process_frame(&mut f, &port_with_kernel(), &mut neigh, 0, 1).0,
        Action::ToKernel
    );
    neigh.learn(PEER, PEER_MAC, 0);
    let mut f = arp_frame(arp_op::REPLY, PEER_MAC, PEER, host, OUR_MAC);
    let (a, learned) = process_frame(&mut f, &port_with_kernel(), &mut neigh, 1, 1);
    assert_eq!((a, learned.map(|l| l.ip)), (Action::ToKernel, Some(PEER)));
    // ARP for the switch's own address and a VIP: answered by the switch as before.
    for target in [OWN, VIP] {
        let mut f = arp_frame(arp_op::REQUEST, PEER_MAC, PEER, target, MacAddr::BROADCAST);
        assert_eq!(
            process_frame(&mut f, &port_with_kernel(), &mut neigh, 0, 1).0,
            Action::ArpAnswered
        );
    }
    // IPv4 to the host (BGP, ssh, ping): the kernel's; to a VIP: the switch's.
    let mut f = echo_request();
    f[30..34].copy_from_slice(&host.octets());
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    assert_eq!(
        process_frame(&mut f, &port_with_kernel(), &mut neigh, 0, 1).0,
        Action::ToKernel
    );
    let mut f = echo_request();
    assert!(matches!(
        process_frame(&mut f, &port_with_kernel(), &mut neigh, 0, 1).0,
        Action::EchoAnswered { .. }
    ));
    // IPv6 and multicast: the kernel's. Another station's unicast MAC: nobody's.
    let mut f = echo_request();
    f[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
    assert_eq!(
        process_frame(&mut f, &port_with_kernel(), &mut neigh, 0, 1).0,
        Action::ToKernel
    );
    let mut f = echo_request();
    f[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(
        process_frame(&mut f, &port_with_kernel(), &mut neigh, 0, 1).0,
        Action::ToKernel
    );
    let mut f = echo_request();
    f[..6].copy_from_slice(&[0x02, 9, 9, 9, 9, 9]);
    assert_eq!(
        process_frame(&mut f, &port_with_kernel(), &mut neigh, 0, 1).0,
        Action::Drop(DropReason::NotOurMac)
    );
    // Broken frames are dropped, never handed on.
    let mut f = echo_request();
    f[24] ^= 0xff;
    assert_eq!(
        process_frame(&mut f, &port_with_kernel(), &mut neigh, 0, 1).0,
        Action::Drop(DropReason::BadIpChecksum)
    );
}
