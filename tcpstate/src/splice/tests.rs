use std::net::Ipv4Addr;

use super::*;
use crate::wire::{checksum, Ipv4Repr, TcpOptionIter, TcpRepr};

// The wire module keeps its fixtures private; load the same file here, as
// tests/parse_random.rs does.
#[allow(clippy::duplicate_mod)]
#[path = "../wire/fixtures.rs"]
mod fixtures;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 2);
const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 1);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 7);

/// Deterministic xorshift64 for generated cases.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn maybe(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// A client-to-backend translation with deltas that change every byte.
fn c2b() -> Translation {
    Translation {
        src: (LOCAL, 40_001),
        dst: (BACKEND, 8080),
        seq_delta: 0x1234_5678,
        ack_delta: 0x9abc_def0,
        ts_val_delta: 0x0f0f_0f0f,
        ts_ecr_delta: 0xf0f0_f0f1,
        window_shift_in: 7,
        window_shift_out: 7,
    }
}

/// The translation that undoes `t` on the packets it produced, given the
/// addresses those packets had before.
fn undo(t: &Translation, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Translation {
    Translation {
        src,
        dst,
        seq_delta: t.seq_delta.wrapping_neg(),
        ack_delta: t.ack_delta.wrapping_neg(),
        ts_val_delta: t.ts_val_delta.wrapping_neg(),
        ts_ecr_delta: t.ts_ecr_delta.wrapping_neg(),
        window_shift_in: t.window_shift_out,
        window_shift_out: t.window_shift_in,
    }
}

/// An IPv4 packet carrying a TCP segment with exactly these option bytes.
#[allow(clippy::too_many_arguments)]
fn build(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: Option<u32>,
    flags: u8,
    window: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let tcp_len = 20 + options.len() + payload.len();
    let ip = Ipv4Repr {
        src: src.0,
        dst: dst.0,
        protocol: ip_proto::TCP,
        payload_len: tcp_len,
        ttl: 64,
    };
    let mut buf = vec![0u8; ip.buffer_len()];
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
    let mut tcp = TcpPacket::new_unchecked(&mut buf[20..]);
    tcp.set_src_port(src.1);
    tcp.set_dst_port(dst.1);
    tcp.set_seq_number(SeqNumber(seq));
    tcp.set_ack_number(SeqNumber(ack.unwrap_or(0)));
    tcp.set_header_len((20 + options.len()) as u8);
    tcp.set_flags(flags | if ack.is_some() { tcp_flags::ACK } else { 0 });
    tcp.set_window_len(window);
    tcp.options_mut().copy_from_slice(options);
    tcp.payload_mut().copy_from_slice(payload);
    tcp.fill_checksum(src.0, dst.0);
    buf
}

/// The same, from the wire module's value types.
fn build_repr(src: Ipv4Addr, dst: Ipv4Addr, repr: &TcpRepr, payload: &[u8]) -> Vec<u8> {
    let ip = Ipv4Repr {
        src,
        dst,
        protocol: ip_proto::TCP,
        payload_len: repr.buffer_len(),
        ttl: 64,
    };
    let mut buf = vec![0u8; ip.buffer_len()];
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut buf[20..]),
        src,
        dst,
        payload,
    );
    buf
}

fn sack_option(blocks: &[(u32, u32)]) -> Vec<u8> {
    let mut o = vec![5, (2 + 8 * blocks.len()) as u8];
    for &(l, r) in blocks {
        o.extend_from_slice(&l.to_be_bytes());
        o.extend_from_slice(&r.to_be_bytes());
    }
    o
}

fn ts_option(tsval: u32, tsecr: u32) -> Vec<u8> {
    let mut o = vec![8, 10];
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&tsecr.to_be_bytes());
    o
}

fn ip_of(pkt: &[u8]) -> Ipv4Packet<&[u8]> {
    Ipv4Packet::new_checked(pkt).unwrap()
}

fn tcp_of(pkt: &[u8]) -> TcpPacket<&[u8]> {
    let ip = Ipv4Packet::new_checked(pkt).unwrap();
    let (h, t) = (usize::from(ip.header_len()), usize::from(ip.total_len()));
    TcpPacket::new_checked(&pkt[h..t]).unwrap()
}

/// Both checksums verify and equal a full recomputation, bit for bit.
fn assert_checksums_exact(pkt: &[u8]) {
    assert!(verify(pkt), "checksums verify");
    let mut copy = pkt.to_vec();
    let ip = ip_of(pkt);
    let (h, t) = (usize::from(ip.header_len()), usize::from(ip.total_len()));
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    Ipv4Packet::new_unchecked(&mut copy[..]).fill_checksum();
    TcpPacket::new_unchecked(&mut copy[h..t]).fill_checksum(src, dst);
    assert_eq!(copy, pkt, "incremental checksums equal recomputed ones");
}

/// (TSval, TSecr) of the last timestamps option, and every SACK block.
type TsAndSack = (Option<(u32, u32)>, Vec<(u32, u32)>);

/// The timestamps and SACK blocks of a segment (all SACK blocks, read raw so a
/// fourth is seen too).
fn ts_and_sack(pkt: &[u8]) -> TsAndSack {
    let tcp = tcp_of(pkt);
    let opts = tcp.options();
    let mut ts = None;
    let mut sack = Vec::new();
    let mut at = 0;
    for option in TcpOptionIter::new(opts) {
        let option = option.unwrap();
        let len = option.buffer_len();
        match option {
            TcpOption::Timestamps { tsval, tsecr } => ts = Some((tsval, tsecr)),
            TcpOption::SackRange(_) => {
                let raw = &opts[at..at + usize::from(opts[at + 1])];
                for b in raw[2..].chunks_exact(8) {
                    let l = u32::from_be_bytes(b[..4].try_into().unwrap());
                    let r = u32::from_be_bytes(b[4..].try_into().unwrap());
                    sack.push((l, r));
                }
                at += raw.len();
                continue;
            }
            _ => {}
        }
        at += len;
    }
    (ts, sack)
}

/// Translates, checks the checksums, undoes, and checks the original came back.
fn translate_and_back(pkt: &[u8], t: &Translation) -> (Vec<u8>, Translated) {
    let ip = ip_of(pkt);
    let tcp = tcp_of(pkt);
    let before = (
        (ip.src_addr(), tcp.src_port()),
        (ip.dst_addr(), tcp.dst_port()),
    );
    let mut out = pkt.to_vec();
    let got = translate(&mut out, t).unwrap();
    assert_checksums_exact(&out);
    let mut back = out.clone();
    let u = undo(t, before.0, before.1);
    translate(&mut back, &u).unwrap();
    assert_eq!(back, pkt, "the inverse translation restores every byte");
    (out, got)
}

#[test]
fn rewrites_every_field() {
    // nop nop TS, nop nop SACK with three blocks: 12 + 28 = 40 option bytes.
    let mut options = vec![1, 1];
    options.extend(ts_option(3_651_528_874, 3_040_340_308));
    options.extend([1, 1]);
    options.extend(sack_option(&[
        (741_744_741, 741_746_189),
        (741_708_541, 741_743_293),
        (0xffff_fff0, 0x10),
    ]));
    let payload = b"odd-length payload!";
    let pkt = build(
        (CLIENT, 58_472),
        (VIP, 80),
        0x4643_7406,
        Some(741_707_093),
        tcp_flags::PSH,
        154,
        &options,
        payload,
    );
    assert_checksums_exact(&pkt);
    let t = c2b();
    let (out, got) = translate_and_back(&pkt, &t);

    let ip = ip_of(&out);
    let tcp = tcp_of(&out);
    assert_eq!((ip.src_addr(), ip.dst_addr()), (LOCAL, BACKEND));
    assert_eq!((tcp.src_port(), tcp.dst_port()), (40_001, 8080));
    assert_eq!(
        tcp.seq_number(),
        SeqNumber(0x4643_7406u32.wrapping_add(0x1234_5678))
    );
    assert_eq!(
        tcp.ack_number(),
        SeqNumber(741_707_093u32.wrapping_add(0x9abc_def0))
    );
    assert_eq!(tcp.window_len(), 154);
    assert_eq!(tcp.flags(), tcp_flags::PSH | tcp_flags::ACK);
    assert_eq!(tcp.payload(), payload);
    let (ts, sack) = ts_and_sack(&out);
    assert_eq!(
        ts,
        Some((
            3_651_528_874u32.wrapping_add(0x0f0f_0f0f),
            3_040_340_308u32.wrapping_add(0xf0f0_f0f1)
        ))
    );
    let d = 0x9abc_def0u32;
    assert_eq!(
        sack,
        [
            (
                741_744_741u32.wrapping_add(d),
                741_746_189u32.wrapping_add(d)
            ),
            (
                741_708_541u32.wrapping_add(d),
                741_743_293u32.wrapping_add(d)
            ),
            (0xffff_fff0u32.wrapping_add(d), 0x10u32.wrapping_add(d)),
        ]
    );
    assert_eq!(
        got,
        Translated {
            flags: tcp_flags::PSH | tcp_flags::ACK,
            seq: tcp.seq_number(),
            ack: tcp.ack_number(),
            payload_len: payload.len(),
            fin: false,
            rst: false,
        }
    );
    // Everything else is as it was: TTL, identification, urgent pointer, option
    // kinds and lengths.
    let ip0 = ip_of(&pkt);
    assert_eq!(
        (ip.ttl(), ip.ident(), ip.total_len()),
        (ip0.ttl(), ip0.ident(), ip0.total_len())
    );
    assert_eq!(tcp.header_len(), 60);
}

#[test]
fn built_with_tcp_repr() {
    let repr = TcpRepr {
        src_port: 8080,
        dst_port: 40_001,
        seq_number: SeqNumber(1_969_593_125),
        ack_number: Some(SeqNumber(4_271_207_187)),
        flags: tcp_flags::PSH,
        window_len: 509,
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        timestamps: Some((1_011_537_165, 909_323_007)),
        payload_len: 1_001,
    };
    let payload: Vec<u8> = (0..1_001u32).map(|i| (i * 7) as u8).collect();
    let pkt = build_repr(BACKEND, LOCAL, &repr, &payload);
    // Backend to client: scale 7 on the backend side, 9 toward the client.
    let t = Translation {
        src: (VIP, 80),
        dst: (CLIENT, 33_800),
        seq_delta: 0x8000_0001,
        ack_delta: 0,
        ts_val_delta: 123_456,
        ts_ecr_delta: 0,
        window_shift_in: 9,
        window_shift_out: 7,
    };
    let (out, got) = translate_and_back(&pkt, &t);
    let tcp = tcp_of(&out);
    let r = TcpRepr::parse(&tcp, VIP, CLIENT, true).unwrap();
    assert_eq!(r.src_port, 80);
    assert_eq!(r.dst_port, 33_800);
    assert_eq!(
        r.seq_number,
        SeqNumber(1_969_593_125u32.wrapping_add(0x8000_0001))
    );
    assert_eq!(r.ack_number, Some(SeqNumber(4_271_207_187)));
    assert_eq!(r.window_len, 509 * 4, "509 << 9 bytes is 2036 << 7");
    assert_eq!(r.timestamps, Some((1_011_537_165 + 123_456, 909_323_007)));
    assert_eq!(got.payload_len, 1_001);
}

/// The two layouts translated without walking the options (none, and NOP NOP TS) with
/// and without ACK: TSecr, like the ACK field, is left alone on a segment without ACK.
#[test]
fn usual_layouts_with_and_without_ack() {
    for (ack, timestamps) in [(true, true), (false, true), (true, false), (false, false)] {
        let repr = TcpRepr {
            src_port: 8080,
            dst_port: 40_001,
            seq_number: SeqNumber(0xfffe_0000),
            ack_number: ack.then_some(SeqNumber(0x7fff_ffff)),
            flags: if ack { tcp_flags::PSH } else { tcp_flags::SYN },
            window_len: 1000,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: timestamps.then_some((0xffff_fff0, 0x0000_0010)),
            payload_len: 33,
        };
        let payload = [0x5a; 33];
        let pkt = build_repr(BACKEND, LOCAL, &repr, &payload);
        let t = Translation {
            src: (VIP, 80),
            dst: (CLIENT, 33_800),
            seq_delta: 0x0002_0001,
            ack_delta: 0x9000_0000,
            ts_val_delta: 0x20,
            ts_ecr_delta: 0xffff_fff0,
            window_shift_in: 0,
            window_shift_out: 0,
        };
        let (out, _) = translate_and_back(&pkt, &t);
        let r = TcpRepr::parse(&tcp_of(&out), VIP, CLIENT, true).expect("checksums verify");
        assert_eq!(r.seq_number, SeqNumber(0x0000_0001), "{ack} {timestamps}");
        let want_ack = ack.then_some(SeqNumber(0x7fff_ffffu32.wrapping_add(0x9000_0000)));
        assert_eq!(r.ack_number, want_ack, "{ack} {timestamps}");
        let ecr = if ack { 0x0000_0000 } else { 0x0000_0010 };
        assert_eq!(
            r.timestamps,
            timestamps.then_some((0x0000_0010, ecr)),
            "{ack} {timestamps}"
        );
    }
}

#[test]
fn real_captured_segments() {
    for frame in fixtures::TCP {
        let pkt = &frame[14..];
        assert!(verify(pkt));
        let tcp0 = tcp_of(pkt);
        let (ts0, sack0) = ts_and_sack(pkt);
        let t = Translation {
            window_shift_in: 10,
            window_shift_out: 8,
            ..c2b()
        };
        let (out, got) = translate_and_back(pkt, &t);
        let tcp = tcp_of(&out);
        let has_ack = tcp0.ack();
        assert_eq!(got.flags, tcp0.flags());
        assert_eq!((got.fin, got.rst), (tcp0.fin(), tcp0.rst()));
        assert_eq!(got.payload_len, tcp0.payload().len());
        assert_eq!(got.seq.0, tcp0.seq_number().0.wrapping_add(t.seq_delta));
        if has_ack {
            assert_eq!(got.ack.0, tcp0.ack_number().0.wrapping_add(t.ack_delta));
        } else {
            assert_eq!(got.ack, tcp0.ack_number(), "no ACK: field untouched");
        }
        if tcp0.syn() {
            assert_eq!(
                tcp.window_len(),
                tcp0.window_len(),
                "SYN windows are never scaled"
            );
        } else {
            assert_eq!(
                tcp.window_len(),
                (u32::from(tcp0.window_len()) * 4).min(65_535) as u16
            );
        }
        let (ts, sack) = ts_and_sack(&out);
        assert_eq!(
            ts,
            ts0.map(|(v, e)| (
                v.wrapping_add(t.ts_val_delta),
                if has_ack {
                    e.wrapping_add(t.ts_ecr_delta)
                } else {
                    e
                }
            ))
        );
        let d = t.ack_delta;
        let want: Vec<_> = sack0
            .iter()
            .map(|&(l, r)| (l.wrapping_add(d), r.wrapping_add(d)))
            .collect();
        assert_eq!(sack, want);
        assert_eq!(tcp.payload(), tcp0.payload());
    }
    // The SACK fixture really has two blocks, the GET a payload and timestamps.
    assert_eq!(ts_and_sack(&fixtures::TCP_SACK_ACK[14..]).1.len(), 2);
    assert!(ts_and_sack(&fixtures::TCP_HTTP_GET[14..]).0.is_some());
}

#[test]
fn deltas_wrap_around() {
    let mut options = vec![1, 1];
    options.extend(ts_option(u32::MAX - 1, 5));
    let pkt = build(
        (CLIENT, 1),
        (VIP, 2),
        u32::MAX - 2,
        Some(3),
        0,
        1000,
        &options,
        b"x",
    );
    let t = Translation {
        seq_delta: 10,
        ack_delta: (-10i32) as u32,
        ts_val_delta: 3,
        ts_ecr_delta: (-6i32) as u32,
        window_shift_in: 0,
        window_shift_out: 0,
        ..c2b()
    };
    let (out, got) = translate_and_back(&pkt, &t);
    assert_eq!((got.seq, got.ack), (SeqNumber(7), SeqNumber(u32::MAX - 6)));
    assert_eq!(ts_and_sack(&out).0, Some((1, u32::MAX)));
    // Zero deltas and the same addresses change nothing at all.
    let same = Translation {
        src: (CLIENT, 1),
        dst: (VIP, 2),
        ..Translation::default()
    };
    let mut copy = pkt.clone();
    translate(&mut copy, &same).unwrap();
    assert_eq!(copy, pkt);
}

#[test]
fn window_rescaling() {
    // (window, in, out, expected)
    let cases = [
        (0, 0, 14, 0),
        (0, 14, 0, 0),
        (1, 0, 0, 1),
        (65_535, 0, 0, 65_535),
        (100, 2, 0, 400),
        (20_000, 2, 0, 65_535), // clamped: the receiver's scale cannot say more
        (65_535, 14, 0, 65_535),
        (65_535, 14, 14, 65_535),
        (400, 0, 2, 100),
        (401, 0, 2, 101), // rounded up
        (1, 0, 7, 1),     // an open window stays open
        (127, 0, 7, 1),
        (129, 0, 7, 2),
        (3, 7, 9, 1),
        (8, 7, 9, 2),
        (100, 15, 0, 65_535), // shifts above 14 are used as 14
        (4, 0, 200, 1),
    ];
    for (w, i, o, want) in cases {
        assert_eq!(rescale_window(w, i, o), want, "{w} << {i} >> {o}");
    }
    // In a segment, with the checksum patched.
    let t = Translation {
        window_shift_in: 0,
        window_shift_out: 2,
        ..c2b()
    };
    for (window, want) in [(0u16, 0u16), (1, 1), (4, 1), (5, 2), (65_535, 16_384)] {
        let mut pkt = build((CLIENT, 1), (VIP, 2), 1, Some(1), 0, window, &[], b"");
        translate(&mut pkt, &t).unwrap();
        assert_checksums_exact(&pkt);
        assert_eq!(tcp_of(&pkt).window_len(), want);
    }
    // SYN and SYN-ACK: never scaled, whatever the shifts.
    for (flags, ack) in [(tcp_flags::SYN, None), (tcp_flags::SYN, Some(9))] {
        let mut pkt = build((CLIENT, 1), (VIP, 2), 1, ack, flags, 64_240, &[], b"");
        let t = Translation {
            window_shift_in: 0,
            window_shift_out: 14,
            ..c2b()
        };
        translate(&mut pkt, &t).unwrap();
        assert_checksums_exact(&pkt);
        assert_eq!(tcp_of(&pkt).window_len(), 64_240);
    }
}

#[test]
fn odd_length_payloads() {
    let mut options = vec![1, 1];
    options.extend(ts_option(77, 88));
    for len in 0..=33 {
        let payload: Vec<u8> = (0..len).map(|i| 0xf0 ^ i as u8).collect();
        let pkt = build(
            (CLIENT, 33_800),
            (VIP, 80),
            4_271_207_098,
            Some(1_969_593_125),
            tcp_flags::PSH,
            63,
            &options,
            &payload,
        );
        let (_, got) = translate_and_back(&pkt, &c2b());
        assert_eq!(got.payload_len, len);
    }
}

#[test]
fn odd_aligned_options() {
    // NOP TS NOP: TSval and TSecr at odd offsets. NOP SACK(1 block) NOP likewise.
    let mut ts = vec![1];
    ts.extend(ts_option(0x0102_0304, 0xfffe_fdfc));
    ts.push(1);
    let mut sack = vec![1];
    sack.extend(sack_option(&[(0x8000_0000, 0x8000_05b4)]));
    sack.push(1);
    let mut both = ts.clone();
    both.extend(&sack);
    // An unknown option before them shifts alignment too.
    let mut unknown = vec![30, 3, 0xaa];
    unknown.extend(ts_option(5, 6));
    unknown.extend([0, 0, 0]); // end of list, padding
    for options in [ts, sack, both, unknown] {
        for payload in [&b""[..], b"a", b"ab"] {
            let pkt = build(
                (CLIENT, 1234),
                (VIP, 80),
                99,
                Some(0x7fff_ffff),
                0,
                512,
                &options,
                payload,
            );
            let (ts0, sack0) = ts_and_sack(&pkt);
            let t = c2b();
            let (out, _) = translate_and_back(&pkt, &t);
            let (ts, sack) = ts_and_sack(&out);
            assert_eq!(
                ts,
                ts0.map(|(v, e)| (
                    v.wrapping_add(t.ts_val_delta),
                    e.wrapping_add(t.ts_ecr_delta)
                ))
            );
            assert_eq!(sack.len(), sack0.len());
        }
    }
}

#[test]
fn four_sack_blocks_all_move() {
    let blocks = [(100, 200), (300, 400), (500, 600), (700, 800)];
    let options = sack_option(&blocks);
    let mut padded = options.clone();
    padded.extend([1, 1]); // 34 + 2 = 36 bytes
    let pkt = build((CLIENT, 1), (VIP, 2), 1, Some(50), 0, 10, &padded, b"");
    let (out, _) = translate_and_back(&pkt, &c2b());
    let d = c2b().ack_delta;
    let want: Vec<_> = blocks
        .iter()
        .map(|&(l, r)| (l.wrapping_add(d), r.wrapping_add(d)))
        .collect();
    assert_eq!(ts_and_sack(&out).1, want);
}

#[test]
fn without_ack_only_the_sender_side_moves() {
    let mut options = ts_option(1000, 0);
    options.extend([1, 1]);
    options.extend(sack_option(&[(1, 2)]));
    options.extend([1, 1]);
    let pkt = build(
        (CLIENT, 1),
        (VIP, 2),
        7,
        None,
        tcp_flags::RST,
        0,
        &options,
        b"",
    );
    let t = c2b();
    let (out, got) = translate_and_back(&pkt, &t);
    assert!(got.rst && !got.fin);
    assert_eq!(got.ack, SeqNumber(0));
    assert_eq!(tcp_of(&out).ack_number(), SeqNumber(0));
    assert_eq!(
        ts_and_sack(&out),
        (
            Some((1000u32.wrapping_add(t.ts_val_delta), 0)),
            vec![(1, 2)]
        )
    );
}

#[test]
fn fin_is_reported() {
    let pkt = &fixtures::TCP_FIN_ACK[14..];
    let mut out = pkt.to_vec();
    let got = translate(&mut out, &c2b()).unwrap();
    assert!(got.fin && !got.rst);
    assert_eq!(got.flags, tcp_flags::FIN | tcp_flags::ACK);
}

#[test]
fn malformed_options_rejected_untouched() {
    let cases: &[&[u8]] = &[
        &[2, 5, 5, 0xb4],                       // MSS with length 5
        &[8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  // timestamps of length 9
        &[1, 1, 5, 6, 0, 0, 0, 0],              // SACK with a partial block
        &[1, 1, 5, 11, 0, 0, 0, 0, 0, 0, 0, 0], // SACK of length 11
        &[1, 1, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0], // TS running long
        &[1, 1, 1, 30],                         // kind without room for a length
        &[30, 0, 0, 0],                         // length 0
        &[30, 1, 0, 0],                         // length 1
        &[1, 1, 30, 200],                       // past the end of the header
    ];
    for &options in cases {
        let pkt = build((CLIENT, 1), (VIP, 2), 1, Some(1), 0, 10, options, b"data");
        let mut out = pkt.clone();
        assert_eq!(
            translate(&mut out, &c2b()),
            Err(SpliceError::BadOptions),
            "{options:?}"
        );
        assert_eq!(out, pkt, "nothing written on error");
    }
    // Garbage after an end-of-list is padding, not options.
    let pkt = build(
        (CLIENT, 1),
        (VIP, 2),
        1,
        Some(1),
        0,
        10,
        &[0, 8, 3, 0xff],
        b"",
    );
    translate_and_back(&pkt, &c2b());
}

#[test]
fn not_tcp_fragments_and_bad_headers() {
    // ICMP.
    let mut icmp = fixtures::ICMP_ECHO_REQUEST[14..].to_vec();
    let before = icmp.clone();
    assert_eq!(translate(&mut icmp, &c2b()), Err(SpliceError::NotTcp));
    assert_eq!(icmp, before);
    assert!(!verify(&icmp));
    // A first fragment (MF) and a later one.
    for flg_off in [[0x20, 0x00], [0x00, 0x10]] {
        let mut pkt = fixtures::TCP_HTTP_GET[14..].to_vec();
        pkt[6..8].copy_from_slice(&flg_off);
        Ipv4Packet::new_unchecked(&mut pkt[..]).fill_checksum();
        let before = pkt.clone();
        assert_eq!(translate(&mut pkt, &c2b()), Err(SpliceError::Fragment));
        assert_eq!(pkt, before);
    }
    // IPv6 version nibble, IHL below 5, TCP data offset below 5 or past the end.
    let get = &fixtures::TCP_HTTP_GET[14..];
    for (at, value) in [(0, 0x65), (0, 0x44), (32, 0x40), (32, 0xf0)] {
        let mut pkt = get.to_vec();
        pkt[at] = value;
        let before = pkt.clone();
        let e = translate(&mut pkt, &c2b());
        if (at, value) == (32, 0xf0) {
            // 60-byte header: the options now reach into the payload, which is
            // not a valid option list.
            assert!(e.is_err());
        } else {
            assert_eq!(e, Err(SpliceError::Malformed), "byte {at} = {value:#x}");
        }
        assert_eq!(pkt, before);
    }
}

#[test]
fn truncated_at_every_length() {
    for frame in fixtures::TCP {
        let full = &frame[14..];
        for len in 0..full.len() {
            let mut cut = full[..len].to_vec();
            assert_eq!(
                translate(&mut cut, &c2b()),
                Err(SpliceError::Malformed),
                "len {len}"
            );
            assert_eq!(cut, &full[..len]);
            assert!(!verify(&cut));
        }
    }
}

#[test]
fn link_padding_and_ip_options_are_respected() {
    // A 54-byte RST padded to 60 on the wire: padding is not part of the segment.
    let mut pkt = fixtures::TCP_RST_ACK[14..].to_vec();
    pkt.extend_from_slice(&[0xaa; 6]);
    let (out, got) = translate_and_back(&pkt, &c2b());
    assert_eq!(&out[40..], &[0xaa; 6]);
    assert_eq!(got.payload_len, 0);

    // An IP header with 4 bytes of options (a NOP-padded end of list).
    let base = &fixtures::TCP_SACK_ACK[14..];
    let mut pkt = base[..20].to_vec();
    pkt.extend_from_slice(&[1, 1, 1, 0]);
    pkt.extend_from_slice(&base[20..]);
    pkt[0] = 0x46;
    let total = pkt.len() as u16;
    pkt[2..4].copy_from_slice(&total.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut pkt[..]).fill_checksum();
    assert!(verify(&pkt));
    let (out, _) = translate_and_back(&pkt, &c2b());
    assert_eq!(&out[20..24], &[1, 1, 1, 0]);
    assert_eq!(ts_and_sack(&out).1.len(), 2);
}

#[test]
fn bad_checksums_stay_bad() {
    // The switch does not verify; the endpoint must still see the corruption.
    let mut pkt = fixtures::TCP_HTTP_GET[14..].to_vec();
    let last = pkt.len() - 1;
    pkt[last] ^= 0x40;
    assert!(!verify(&pkt));
    translate(&mut pkt, &c2b()).unwrap();
    assert!(!verify(&pkt));
    pkt[last] ^= 0x40;
    assert!(
        verify(&pkt),
        "only the corruption differs from a good translation"
    );
}

#[test]
fn generated_segments() {
    let mut rng = XorShift(0x0ddb_a11c_afe0_0001);
    for case in 0..5_000 {
        // Random option layouts, aligned or not.
        let mut options = Vec::new();
        while options.len() < 40 {
            let room = 40 - options.len();
            match rng.below(6) {
                0 => options.push(1),
                1 if room >= 10 => options.extend(ts_option(rng.next() as u32, rng.next() as u32)),
                2 if room >= 10 => {
                    let n = (1 + rng.below(4)).min((room - 2) / 8);
                    let blocks: Vec<_> = (0..n)
                        .map(|_| (rng.next() as u32, rng.next() as u32))
                        .collect();
                    options.extend(sack_option(&blocks));
                }
                3 if room >= 4 => options.extend([2, 4, 5, 0xb4]),
                4 if room >= 3 => options.extend([30, 3, rng.next() as u8]),
                _ => break,
            }
        }
        while options.len() % 4 != 0 {
            options.push(0);
        }
        let payload: Vec<u8> = (0..rng.below(80)).map(|_| rng.next() as u8).collect();
        let flags = rng.next() as u8 & !tcp_flags::ACK;
        let ack = rng.maybe().then(|| rng.next() as u32);
        let addr = |r: &mut XorShift| Ipv4Addr::from(r.next() as u32);
        let port = |r: &mut XorShift| 1 + r.below(65_535) as u16;
        let src = (addr(&mut rng), port(&mut rng));
        let dst = (addr(&mut rng), port(&mut rng));
        // Windows that survive the round trip: out <= in, small enough not to clamp.
        let shift_out = rng.below(15) as u8;
        let shift_in = shift_out + rng.below(15 - usize::from(shift_out)) as u8;
        let window = (rng.next() as u16) >> (shift_in - shift_out);
        let pkt = build(
            src,
            dst,
            rng.next() as u32,
            ack,
            flags,
            window,
            &options,
            &payload,
        );
        let t = Translation {
            src: (addr(&mut rng), port(&mut rng)),
            dst: (addr(&mut rng), port(&mut rng)),
            seq_delta: rng.next() as u32,
            ack_delta: rng.next() as u32,
            ts_val_delta: rng.next() as u32,
            ts_ecr_delta: rng.next() as u32,
            window_shift_in: shift_in,
            window_shift_out: shift_out,
        };
        let (ts0, sack0) = ts_and_sack(&pkt);
        let (out, got) = translate_and_back(&pkt, &t);
        let has_ack = ack.is_some();
        let (ts, sack) = ts_and_sack(&out);
        assert_eq!(
            ts,
            ts0.map(|(v, e)| (
                v.wrapping_add(t.ts_val_delta),
                if has_ack {
                    e.wrapping_add(t.ts_ecr_delta)
                } else {
                    e
                }
            )),
            "case {case}"
        );
        let d = if has_ack { t.ack_delta } else { 0 };
        let want: Vec<_> = sack0
            .iter()
            .map(|&(l, r)| (l.wrapping_add(d), r.wrapping_add(d)))
            .collect();
        assert_eq!(sack, want, "case {case}");
        assert_eq!(got.payload_len, payload.len());
    }
}

#[test]
fn mutated_packets_never_panic() {
    let mut rng = XorShift(0xfeed_face_dead_beef);
    for _ in 0..50_000 {
        let frame = fixtures::TCP[rng.below(fixtures::TCP.len())];
        let mut pkt = frame[14..].to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(pkt.len());
            pkt[at] = rng.next() as u8;
        }
        if rng.maybe() {
            pkt.truncate(rng.below(pkt.len() + 1));
        }
        let before = pkt.clone();
        match translate(&mut pkt, &c2b()) {
            Ok(_) => {
                // Whatever the bytes, the checksums moved consistently, and (equal
                // window shifts) the inverse restores them.
                let ip = ip_of(&before);
                let tcp = TcpPacket::new_unchecked(&before[usize::from(ip.header_len())..]);
                let u = undo(
                    &c2b(),
                    (ip.src_addr(), tcp.src_port()),
                    (ip.dst_addr(), tcp.dst_port()),
                );
                let mut back = pkt.clone();
                translate(&mut back, &u).unwrap();
                assert_eq!(back, before);
                assert_eq!(verify(&pkt), verify(&before));
            }
            Err(_) => assert_eq!(pkt, before),
        }
    }
}

#[test]
fn verify_helper() {
    for frame in fixtures::TCP {
        assert!(verify(&frame[14..]));
    }
    let mut pkt = fixtures::TCP_SYN[14..].to_vec();
    pkt[10] ^= 1; // IP header checksum
    assert!(!verify(&pkt));
    let mut pkt = fixtures::TCP_SYN[14..].to_vec();
    pkt[12] ^= 1; // source address: both checksums break
    assert!(!verify(&pkt));
    Ipv4Packet::new_unchecked(&mut pkt[..]).fill_checksum();
    assert!(!verify(&pkt), "the TCP pseudo-header covers it");
    assert!(!verify(&[]));
    // The loopback capture's TCP checksum is an offload placeholder.
    assert!(!verify(&fixtures::LO_TCP_SYN_OFFLOADED[14..]));
    assert_eq!(
        checksum::internet(&fixtures::LO_TCP_SYN_OFFLOADED[14..34]),
        0,
        "its IP header is fine"
    );
}

#[test]
fn errors_display() {
    assert_eq!(SpliceError::NotTcp.to_string(), "not a TCP segment");
    let e: Box<dyn std::error::Error> = Box::new(SpliceError::BadOptions);
    assert_eq!(e.to_string(), "malformed TCP options");
}

#[test]
fn receive_limit_raises_the_ack_and_cuts_the_window() {
    // Toward the client (b2c): ack_delta maps the backend's ack into client space.
    let t = Translation {
        src: (VIP, 80),
        dst: (CLIENT, 50_000),
        seq_delta: 1000,
        ack_delta: 0,
        ts_val_delta: 0,
        ts_ecr_delta: 0,
        window_shift_in: 0,
        window_shift_out: 2,
    };
    let done = 5000u32;
    let limit = ReceiveLimit {
        ack_at: SeqNumber(done),
        ack_to: SeqNumber(done + 300),
        right_edge: SeqNumber(done + 1024),
    };
    let from_backend = |ack: u32, window: u16| {
        build(
            (BACKEND, 8080),
            (LOCAL, 40_001),
            77,
            Some(ack),
            tcp_flags::PSH,
            window,
            &[&[1u8, 1][..], &ts_option(1, 2)].concat(),
            b"HTTP/1.1 200 OK\r\n",
        )
    };
    // The backend has the whole request: the held bytes are acknowledged, and the
    // window (65535 bytes open at the backend) ends at the right edge.
    let mut pkt = from_backend(done, 65535);
    let out = translate_limited(&mut pkt, &t, Some(&limit)).unwrap();
    assert_eq!(out.ack, SeqNumber(done + 300));
    assert_eq!(tcp_of(&pkt).ack_number(), SeqNumber(done + 300));
    assert_eq!(tcp_of(&pkt).window_len(), (1024 - 300) >> 2);
    assert_checksums_exact(&pkt);
    // The backend still misses request bytes: its ack stands; the edge still holds.
    let mut pkt = from_backend(done - 100, 65535);
    translate_limited(&mut pkt, &t, Some(&limit)).unwrap();
    assert_eq!(tcp_of(&pkt).ack_number(), SeqNumber(done - 100));
    assert_eq!(tcp_of(&pkt).window_len(), (1024 + 100) >> 2);
    assert_checksums_exact(&pkt);
    // A smaller window of the backend's own is kept.
    let mut pkt = from_backend(done, 20);
    translate_limited(&mut pkt, &t, Some(&limit)).unwrap();
    assert_eq!(tcp_of(&pkt).window_len(), 5);
    // Held bytes up to the edge: a zero window, acknowledged.
    let full = ReceiveLimit {
        ack_to: SeqNumber(done + 1024),
        ..limit
    };
    let mut pkt = from_backend(done, 65535);
    translate_limited(&mut pkt, &t, Some(&full)).unwrap();
    assert_eq!(tcp_of(&pkt).ack_number(), SeqNumber(done + 1024));
    assert_eq!(tcp_of(&pkt).window_len(), 0);
    assert_checksums_exact(&pkt);
    // Without a limit, exactly what `translate` does.
    let (mut a, mut b) = (from_backend(done, 65535), from_backend(done, 65535));
    translate_limited(&mut a, &t, None).unwrap();
    translate(&mut b, &t).unwrap();
    assert_eq!(a, b);
}
