use std::net::Ipv4Addr;

use super::*;
use crate::wire::{fixtures, Ipv4Packet};

const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
const NS_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 2);

/// The TCP segment of a captured frame (all fixtures have 20-byte IP headers and no
/// Ethernet padding) with its IP source and destination.
fn seg(frame: &[u8]) -> (&[u8], Ipv4Addr, Ipv4Addr) {
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    (&frame[34..], src, dst)
}

fn repr_of(frame: &[u8]) -> TcpRepr {
    let (bytes, src, dst) = seg(frame);
    TcpRepr::parse(&TcpPacket::new_checked(bytes).unwrap(), src, dst, true).unwrap()
}

#[test]
fn real_syn() {
    let (bytes, src, dst) = seg(fixtures::TCP_SYN);
    let p = TcpPacket::new_checked(bytes).unwrap();
    assert_eq!((p.src_port(), p.dst_port()), (33800, 8080));
    assert_eq!(p.seq_number(), SeqNumber(4_271_207_097));
    assert_eq!(
        (p.header_len(), p.flags(), p.window_len()),
        (40, tcp_flags::SYN, 64240)
    );
    assert!(
        p.syn() && !p.ack() && !p.fin() && !p.rst() && !p.psh() && !p.urg() && !p.ece() && !p.cwr()
    );
    assert_eq!((p.checksum(), p.urgent_at()), (0xc0ff, 0));
    assert_eq!(p.options().len(), 20);
    assert!(p.payload().is_empty());
    assert_eq!(p.segment_len(), 1);
    assert!(p.verify_checksum(src, dst));
    let opts: Vec<_> = TcpOptionIter::new(p.options())
        .collect::<Result<_>>()
        .unwrap();
    assert_eq!(
        opts,
        [
            TcpOption::MaxSegmentSize(1460),
            TcpOption::SackPermitted,
            TcpOption::Timestamps {
                tsval: 909_323_003,
                tsecr: 0
            },
            TcpOption::NoOperation,
            TcpOption::WindowScale(10),
        ]
    );
    assert_eq!(
        repr_of(fixtures::TCP_SYN),
        TcpRepr {
            src_port: 33800,
            dst_port: 8080,
            seq_number: SeqNumber(4_271_207_097),
            ack_number: None,
            flags: tcp_flags::SYN,
            window_len: 64240,
            max_seg_size: Some(1460),
            window_scale: Some(10),
            sack_permitted: true,
            timestamps: Some((909_323_003, 0)),
            payload_len: 0,
        }
    );
}

#[test]
fn real_syn_ack_get_fin_rst() {
    let r = repr_of(fixtures::TCP_SYN_ACK);
    assert_eq!(
        (r.seq_number, r.ack_number),
        (SeqNumber(1_969_593_124), Some(SeqNumber(4_271_207_098)))
    );
    assert_eq!(
        (r.flags, r.window_len, r.timestamps),
        (tcp_flags::SYN, 65160, Some((1_011_537_161, 909_323_003)))
    );

    let (bytes, ..) = seg(fixtures::TCP_HTTP_GET);
    let p = TcpPacket::new_checked(bytes).unwrap();
    assert!(p.payload().starts_with(b"GET /index.html HTTP/1.1\r\n"));
    assert_eq!(
        (p.payload().len(), p.segment_len(), p.header_len()),
        (89, 89, 32)
    );
    let r = repr_of(fixtures::TCP_HTTP_GET);
    assert_eq!(
        (r.flags, r.payload_len, r.window_len),
        (tcp_flags::PSH, 89, 63)
    );
    assert_eq!(
        (r.seq_number, r.ack_number),
        (SeqNumber(4_271_207_098), Some(SeqNumber(1_969_593_125)))
    );
    assert_eq!(
        (r.max_seg_size, r.window_scale, r.sack_permitted),
        (None, None, false)
    );

    let r = repr_of(fixtures::TCP_FIN_ACK);
    assert_eq!((r.flags, r.segment_len()), (tcp_flags::FIN, 1));
    assert_eq!(
        (r.seq_number, r.ack_number),
        (SeqNumber(1_969_593_326), Some(SeqNumber(4_271_207_188)))
    );
    assert_eq!(
        (r.src_port, r.window_len, r.timestamps),
        (8080, 64, Some((1_011_537_165, 909_323_007)))
    );

    let (bytes, ..) = seg(fixtures::TCP_RST_ACK);
    let p = TcpPacket::new_checked(bytes).unwrap();
    assert!(p.rst() && p.ack() && p.options().is_empty());
    assert_eq!(p.segment_len(), 0);
    let r = repr_of(fixtures::TCP_RST_ACK);
    assert_eq!(
        (r.src_port, r.dst_port, r.seq_number),
        (8081, 49376, SeqNumber(0))
    );
    assert_eq!(
        (r.flags, r.ack_number, r.window_len),
        (tcp_flags::RST, Some(SeqNumber(83_473_187)), 0)
    );
}

#[test]
fn real_sack_blocks() {
    let (bytes, ..) = seg(fixtures::TCP_SACK_ACK);
    let p = TcpPacket::new_checked(bytes).unwrap();
    assert_eq!(p.ack_number(), SeqNumber(741_707_093));
    let opts: Vec<_> = TcpOptionIter::new(p.options())
        .collect::<Result<_>>()
        .unwrap();
    assert_eq!(
        opts,
        [
            TcpOption::NoOperation,
            TcpOption::NoOperation,
            TcpOption::Timestamps {
                tsval: 3_651_528_874,
                tsecr: 3_040_340_308
            },
            TcpOption::NoOperation,
            TcpOption::NoOperation,
            TcpOption::SackRange([
                Some((741_744_741, 741_746_189)),
                Some((741_708_541, 741_743_293)),
                None
            ]),
        ]
    );
    let r = repr_of(fixtures::TCP_SACK_ACK);
    assert_eq!(
        (r.window_len, r.timestamps.map(|t| t.0)),
        (154, Some(3_651_528_874))
    );
}

#[test]
fn checksums_verify_and_recompute() {
    for frame in fixtures::TCP {
        let (bytes, src, dst) = seg(frame);
        let p = TcpPacket::new_checked(bytes).unwrap();
        assert!(p.verify_checksum(src, dst));
        assert!(
            !p.verify_checksum(src, Ipv4Addr::new(10, 250, 0, 3)),
            "pseudo-header is covered"
        );
        let mut b = bytes.to_vec();
        let last = b.len() - 1;
        b[last] ^= 0x01;
        let mut q = TcpPacket::new_checked(&mut b[..]).unwrap();
        assert!(!q.verify_checksum(src, dst));
        q.fill_checksum(src, dst);
        assert!(q.verify_checksum(src, dst));
        b[last] ^= 0x01;
        TcpPacket::new_unchecked(&mut b[..]).fill_checksum(src, dst);
        assert_eq!(b, bytes, "recomputed checksum equals the captured one");
        assert_eq!(
            TcpRepr::parse(&TcpPacket::new_unchecked(&b[..]), src, dst, true).map(|_| ()),
            Ok(())
        );
    }
}

#[test]
fn offloaded_loopback_checksum_is_rejected_unless_trusted() {
    let (bytes, src, dst) = seg(fixtures::LO_TCP_SYN_OFFLOADED);
    assert_eq!((src, dst), (Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST));
    let p = TcpPacket::new_checked(bytes).unwrap();
    assert!(!p.verify_checksum(src, dst));
    assert_eq!(
        TcpRepr::parse(&p, src, dst, true),
        Err(WireError::BadChecksum)
    );
    let r = TcpRepr::parse(&p, src, dst, false).unwrap();
    assert_eq!(
        (r.src_port, r.dst_port, r.max_seg_size),
        (42762, 8099, Some(65495))
    );
    // tcpdump said the right value is 0xf631.
    let mut b = bytes.to_vec();
    let mut q = TcpPacket::new_unchecked(&mut b[..]);
    q.fill_checksum(src, dst);
    assert_eq!(q.checksum(), 0xf631);
}

#[test]
fn emit_reproduces_linux_segments() {
    for frame in [
        fixtures::TCP_SYN,
        fixtures::TCP_SYN_ACK,
        fixtures::TCP_HTTP_GET,
        fixtures::TCP_FIN_ACK,
        fixtures::TCP_RST_ACK,
    ] {
        let (bytes, src, dst) = seg(frame);
        let p = TcpPacket::new_checked(bytes).unwrap();
        let repr = TcpRepr::parse(&p, src, dst, true).unwrap();
        assert_eq!(repr.header_len(), usize::from(p.header_len()));
        assert_eq!(repr.buffer_len(), bytes.len());
        let mut buf = vec![0x5a; repr.buffer_len() + 7]; // a larger buffer is fine
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut buf[..]),
            src,
            dst,
            p.payload(),
        );
        assert_eq!(&buf[..bytes.len()], bytes);
        assert_eq!(
            &buf[bytes.len()..],
            &[0x5a; 7],
            "nothing written past buffer_len"
        );
    }
}

/// Deterministic xorshift64 for generated cases.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn maybe(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

#[test]
fn repr_round_trip_generated() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let (src, dst) = (HOST_IP, NS_IP);
    for _ in 0..5_000 {
        let payload: Vec<u8> = (0..rng.next() % 64).map(|_| rng.next() as u8).collect();
        let repr = TcpRepr {
            src_port: 1 + (rng.next() % 65535) as u16,
            dst_port: 1 + (rng.next() % 65535) as u16,
            seq_number: SeqNumber(rng.next() as u32),
            ack_number: rng.maybe().then(|| SeqNumber(rng.next() as u32)),
            flags: rng.next() as u8 & !tcp_flags::ACK,
            window_len: rng.next() as u16,
            max_seg_size: rng.maybe().then(|| rng.next() as u16),
            window_scale: rng.maybe().then(|| (rng.next() % 15) as u8),
            sack_permitted: rng.maybe(),
            timestamps: rng.maybe().then(|| (rng.next() as u32, rng.next() as u32)),
            payload_len: payload.len(),
        };
        assert_eq!(repr.header_len() % 4, 0);
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut buf[..]),
            src,
            dst,
            &payload,
        );
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(TcpRepr::parse(&p, src, dst, true), Ok(repr));
        assert_eq!(p.payload(), &payload[..]);
        assert_eq!(p.segment_len(), repr.segment_len());
        assert_eq!(p.ack(), repr.ack_number.is_some());
    }
}

#[test]
fn repr_parse_rules() {
    let (bytes, src, dst) = seg(fixtures::TCP_SYN);
    // Port 0 on either side.
    for at in [0, 2] {
        let mut b = bytes.to_vec();
        b[at..at + 2].fill(0);
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(
            TcpRepr::parse(&p, src, dst, false),
            Err(WireError::Malformed)
        );
    }
    // A window scale above 14 is read as 14 (RFC 7323 §2.3).
    let mut b = bytes.to_vec();
    b[39] = 200;
    let r = TcpRepr::parse(&TcpPacket::new_checked(&b[..]).unwrap(), src, dst, false).unwrap();
    assert_eq!(r.window_scale, Some(14));
    // A malformed option fails the whole parse.
    let mut b = bytes.to_vec();
    b[21] = 5; // MSS with length 5
    let p = TcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(
        TcpRepr::parse(&p, src, dst, false),
        Err(WireError::Malformed)
    );
    // ACK in flags is carried by ack_number only.
    let r = repr_of(fixtures::TCP_SYN_ACK);
    assert_eq!(r.flags & tcp_flags::ACK, 0);
}

#[test]
fn truncated_at_every_length() {
    for frame in fixtures::TCP {
        let (bytes, src, dst) = seg(frame);
        let header_len = usize::from(TcpPacket::new_checked(bytes).unwrap().header_len());
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            let checked = TcpPacket::new_checked(cut);
            if len < header_len {
                assert_eq!(checked.err(), Some(WireError::Truncated), "len {len}");
                let unchecked = TcpPacket::new_unchecked(cut);
                assert_eq!(
                    TcpRepr::parse(&unchecked, src, dst, false),
                    Err(WireError::Truncated)
                );
            } else {
                let p = checked.unwrap();
                assert_eq!(p.payload().len(), len - header_len);
                assert!(!p.verify_checksum(src, dst) || len == bytes.len());
            }
        }
    }
}

#[test]
fn bad_data_offset() {
    let (bytes, ..) = seg(fixtures::TCP_HTTP_GET);
    for words in 0u8..5 {
        let mut b = bytes.to_vec();
        b[12] = words << 4;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).err(),
            Some(WireError::BadHeaderLen),
            "offset {words}"
        );
    }
    // 60-byte header in a 40-byte segment.
    let (bytes, ..) = seg(fixtures::TCP_RST_ACK);
    let mut b = bytes.to_vec();
    b[12] = 0xf0;
    assert_eq!(
        TcpPacket::new_checked(&b[..]).err(),
        Some(WireError::Truncated)
    );
    b[12] = 0x50;
    assert!(TcpPacket::new_checked(&b[..]).is_ok());
}

#[test]
fn setters() {
    let (bytes, src, dst) = seg(fixtures::TCP_RST_ACK);
    let mut b = [0u8; 20];
    let mut p = TcpPacket::new_unchecked(&mut b[..]);
    p.set_src_port(8081);
    p.set_dst_port(49376);
    p.set_seq_number(SeqNumber(0));
    p.set_ack_number(SeqNumber(83_473_187));
    p.set_header_len(20);
    p.set_rst(true);
    p.set_ack(true);
    p.set_window_len(0);
    p.set_urgent_at(0);
    p.fill_checksum(src, dst);
    assert_eq!(&b[..], bytes);

    let mut p = TcpPacket::new_unchecked(&mut b[..]);
    p.set_flags(0);
    p.set_fin(true);
    assert!(p.fin() && p.flags() == tcp_flags::FIN);
    p.set_syn(true);
    assert!(p.syn() && p.flags() == tcp_flags::FIN | tcp_flags::SYN);
    p.set_fin(false);
    p.set_syn(false);
    p.set_rst(true);
    p.set_psh(true);
    p.set_ack(true);
    p.set_urg(true);
    assert_eq!(
        p.flags(),
        tcp_flags::RST | tcp_flags::PSH | tcp_flags::ACK | tcp_flags::URG
    );
    p.set_ece(true);
    p.set_cwr(true);
    assert!(p.ece() && p.cwr() && p.urg() && p.psh());
    assert_eq!(p.flags(), 0xfc);
    for bit in [
        tcp_flags::RST,
        tcp_flags::PSH,
        tcp_flags::ACK,
        tcp_flags::URG,
        tcp_flags::ECE,
        tcp_flags::CWR,
    ] {
        p.set_flags(p.flags() & !bit);
    }
    assert_eq!(p.flags(), 0);
    p.set_urgent_at(7);
    p.set_checksum(0xbeef);
    assert_eq!((p.urgent_at(), p.checksum()), (7, 0xbeef));
    // set_header_len keeps the low (reserved/AE) nibble.
    p.buffer[12] = 0x51;
    p.set_header_len(24);
    assert_eq!(p.into_inner()[12], 0x61);
}

#[test]
fn options_and_payload_mut() {
    let (bytes, ..) = seg(fixtures::TCP_HTTP_GET);
    let mut b = bytes.to_vec();
    let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
    assert_eq!(p.options_mut().len(), 12);
    p.options_mut()[0] = 0;
    p.payload_mut()[0] = b'P';
    assert_eq!(
        TcpOptionIter::new(p.options()).collect::<Vec<_>>(),
        [Ok(TcpOption::EndOfList)]
    );
    assert!(p.payload().starts_with(b"PET "));
}

mod options {
    use super::*;

    fn all(bytes: &[u8]) -> Vec<Result<TcpOption<'_>>> {
        TcpOptionIter::new(bytes).collect()
    }

    #[test]
    fn malformed_lengths_yield_one_error_then_stop() {
        let cases: &[&[u8]] = &[
            &[2],                         // kind without a length byte
            &[30],                        // unknown kind, same
            &[2, 0, 5, 0xb4],             // length 0
            &[2, 1, 5, 0xb4],             // length 1
            &[2, 5, 5, 0xb4, 0],          // MSS must be 4
            &[3, 2],                      // window scale must be 3
            &[4, 3, 0],                   // SACK-permitted must be 2
            &[8, 10, 0, 0, 0],            // runs past the end
            &[8, 9, 0, 0, 0, 0, 0, 0, 0], // timestamps must be 10
            &[5, 2],                      // SACK with no block
            &[5, 6, 0, 0, 0, 0],          // SACK with a partial block
            &[5, 34, 0, 0, 0, 0],         // four blocks claimed, not there
            &[30, 200, 1],                // unknown kind, past the end
        ];
        for &case in cases {
            let mut with_prefix = vec![1, 1];
            with_prefix.extend_from_slice(case);
            let got = all(&with_prefix);
            assert_eq!(got.len(), 3, "{case:?}: {got:?}");
            assert_eq!(
                got[..2],
                [Ok(TcpOption::NoOperation), Ok(TcpOption::NoOperation)]
            );
            assert_eq!(got[2], Err(WireError::Malformed), "{case:?}");
        }
        // Nothing after a bad length is read, even if it would parse.
        assert_eq!(
            all(&[1, 2, 0, 2, 4, 5, 0xb4]),
            [Ok(TcpOption::NoOperation), Err(WireError::Malformed)]
        );
        let mut it = TcpOptionIter::new(&[2, 1, 1, 1]);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none() && it.next().is_none());
    }

    #[test]
    fn end_of_list_stops_iteration() {
        assert_eq!(
            all(&[1, 0, 2, 4, 5, 0xb4]),
            [Ok(TcpOption::NoOperation), Ok(TcpOption::EndOfList)]
        );
        assert!(all(&[]).is_empty());
        assert_eq!(TcpOption::parse(&[]), Err(WireError::Truncated));
    }

    #[test]
    fn unknown_and_four_block_sack() {
        assert_eq!(
            all(&[30, 4, 0xab, 0xcd, 1]),
            [
                Ok(TcpOption::Unknown {
                    kind: 30,
                    data: &[0xab, 0xcd]
                }),
                Ok(TcpOption::NoOperation)
            ]
        );
        let mut sack = vec![5, 34];
        for i in 1..=8u32 {
            sack.extend_from_slice(&(i * 100).to_be_bytes());
        }
        assert_eq!(
            all(&sack),
            [Ok(TcpOption::SackRange([
                Some((100, 200)),
                Some((300, 400)),
                Some((500, 600))
            ]))]
        );
    }

    #[test]
    fn emit_parse_round_trip() {
        let options = [
            TcpOption::EndOfList,
            TcpOption::NoOperation,
            TcpOption::MaxSegmentSize(1460),
            TcpOption::WindowScale(7),
            TcpOption::SackPermitted,
            TcpOption::SackRange([Some((1, 2)), None, None]),
            TcpOption::SackRange([Some((1, 2)), Some((3, 4)), Some((0xffff_fff0, 5))]),
            TcpOption::Timestamps {
                tsval: 0xdead_beef,
                tsecr: 1,
            },
            TcpOption::Unknown {
                kind: 254,
                data: &[0xf9, 0x89, 1, 2],
            },
            TcpOption::Unknown {
                kind: 99,
                data: &[],
            },
        ];
        for option in options {
            let mut buf = [0xee; 40];
            let len = option.emit(&mut buf);
            assert_eq!(len, option.buffer_len());
            let (rest, parsed) = TcpOption::parse(&buf[..len]).unwrap();
            assert_eq!((rest.len(), parsed), (0, option));
        }
        // Emitting the SYN's option list reproduces its bytes.
        let (bytes, ..) = seg(fixtures::TCP_SYN);
        let p = TcpPacket::new_checked(bytes).unwrap();
        let mut buf = [0u8; 40];
        let mut at = 0;
        for option in TcpOptionIter::new(p.options()) {
            at += option.unwrap().emit(&mut buf[at..]);
        }
        assert_eq!(&buf[..at], p.options());
    }
}
