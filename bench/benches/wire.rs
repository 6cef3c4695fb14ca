//! Issue 15, point 8: smoltcp's `wire` views against tcpstate's own, on the work the splice
//! path does per segment. `cargo bench -p webswitch-bench --bench wire` prints nanoseconds per
//! operation (noisy on a shared machine); `bench/scripts/callgrind-wire.sh` runs the same
//! binary under callgrind and prints instructions per operation, which is what the decision
//! in docs/benchmarks.md ("smoltcp's wire types") rests on.
//!
//! Each operation is a `#[inline(never)]` function run `ITERATIONS` times over the same
//! frame, once with tcpstate's types and once with smoltcp's:
//!
//! - `*_classify`: the IPv4 header checked as l2l3 checks every frame (`new_checked`, header
//!   checksum verified), protocol and addresses read;
//! - `*_parse`: what `parse_tcp` takes from a segment l2l3 passed (TCP header checked, every
//!   field and option the connection state machine reads, no checksum);
//! - `*_translate`: the splice's rewrite (addresses, ports, sequence and acknowledgment
//!   numbers, window, timestamps, both checksums patched incrementally), written over
//!   smoltcp's views with tcpstate's `Incremental` for the smoltcp side (smoltcp has no
//!   incremental update);
//! - `ours_translate_same`: `smoltcp_translate` line for line over tcpstate's views (the
//!   views' cost without `splice::translate`'s generality);
//! - `smoltcp_translate_refill`: the same rewrite as smoltcp's own idiom would do it,
//!   setting the fields and recomputing both checksums (`fill_checksum`);
//! - `*_verify`: the TCP checksum verified over the whole segment.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire as smol;
use tcpstate::splice::{self, Translation};
use tcpstate::wire::checksum::Incremental;
use tcpstate::wire::{ip_proto, tcp_flags, Ipv4Packet, Ipv4Repr, SeqNumber, TcpPacket, TcpRepr};

const ITERATIONS: u32 = 200_000;
const PAYLOAD: usize = 1448;
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 100);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 10);
const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 1);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 11);

/// An IPv4 + TCP data segment from the backend, with timestamps (NOP NOP TS), as most
/// segments of a splice are.
fn segment() -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: 80,
        dst_port: 40_000,
        seq_number: SeqNumber(0x1234_5678),
        ack_number: Some(SeqNumber(0x9abc_def0)),
        flags: tcp_flags::PSH,
        window_len: 501,
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        timestamps: Some((1_000_000, 2_000_000)),
        payload_len: PAYLOAD,
    };
    let ip = Ipv4Repr {
        src: BACKEND,
        dst: LOCAL,
        protocol: ip_proto::TCP,
        payload_len: tcp.header_len() + PAYLOAD,
        ttl: 64,
    };
    let mut buf = vec![0u8; 20 + tcp.header_len() + PAYLOAD];
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| (i * 7) as u8).collect();
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut buf[20..]),
        BACKEND,
        LOCAL,
        &payload,
    );
    buf
}

fn translation() -> Translation {
    Translation {
        src: (VIP, 80),
        dst: (CLIENT, 51_000),
        seq_delta: 0x0101_0101,
        ack_delta: 0x0202_0202,
        ts_val_delta: 77,
        ts_ecr_delta: 99,
        window_shift_in: 7,
        window_shift_out: 7,
    }
}

/// What the classification yields: source, destination, protocol, header length.
type Classified = Option<(Ipv4Addr, Ipv4Addr, u8, usize)>;

#[inline(never)]
fn ours_classify(frame: &[u8]) -> Classified {
    let ip = Ipv4Packet::new_checked(frame).ok()?;
    ip.verify_checksum().then(|| {
        (
            ip.src_addr(),
            ip.dst_addr(),
            ip.protocol(),
            usize::from(ip.header_len()),
        )
    })
}

#[inline(never)]
fn smoltcp_classify(frame: &[u8]) -> Classified {
    let ip = smol::Ipv4Packet::new_checked(frame).ok()?;
    ip.verify_checksum().then(|| {
        (
            ip.src_addr(),
            ip.dst_addr(),
            u8::from(ip.next_header()),
            usize::from(ip.header_len()),
        )
    })
}

/// What the connection state machine reads of a segment: ports, seq, ack, flags, window,
/// timestamps, payload length.
type Parsed = Option<(u16, u16, u32, u32, u8, u16, Option<(u32, u32)>, usize)>;

#[inline(never)]
fn ours_parse(segment: &[u8]) -> Parsed {
    let tcp = TcpPacket::new_checked(segment).ok()?;
    let r = TcpRepr::parse(&tcp, BACKEND, LOCAL, false).ok()?;
    Some((
        r.src_port,
        r.dst_port,
        r.seq_number.0,
        r.ack_number.map_or(0, |a| a.0),
        r.flags,
        r.window_len,
        r.timestamps,
        r.payload_len,
    ))
}

#[inline(never)]
fn smoltcp_parse(segment: &[u8]) -> Parsed {
    let tcp = smol::TcpPacket::new_checked(segment).ok()?;
    let r = smol::TcpRepr::parse(
        &tcp,
        &BACKEND.into(),
        &LOCAL.into(),
        &ChecksumCapabilities::ignored(),
    )
    .ok()?;
    let flags = match r.control {
        smol::TcpControl::Syn => tcp_flags::SYN,
        smol::TcpControl::Fin => tcp_flags::FIN,
        smol::TcpControl::Rst => tcp_flags::RST,
        smol::TcpControl::Psh => tcp_flags::PSH,
        smol::TcpControl::None => 0,
    };
    Some((
        r.src_port,
        r.dst_port,
        r.seq_number.0 as u32,
        r.ack_number.map_or(0, |a| a.0 as u32),
        flags,
        r.window_len,
        r.timestamp.map(|t| (t.tsval, t.tsecr)),
        r.payload.len(),
    ))
}

#[inline(never)]
fn ours_translate(ip_and_tcp: &mut [u8], t: &Translation) -> bool {
    splice::translate(ip_and_tcp, t).is_ok()
}

/// Shifts TSval and TSecr of the NOP NOP TS layout (the only one this benchmark feeds),
/// patching `csum` if given.
#[inline]
fn shift_timestamps(options: &mut [u8], t: &Translation, mut csum: Option<&mut Incremental>) {
    if options.len() != 12 || options[..4] != [1, 1, 8, 10] {
        return;
    }
    for (at, delta) in [(4, t.ts_val_delta), (8, t.ts_ecr_delta)] {
        let field: [u8; 4] = options[at..at + 4].try_into().expect("four bytes");
        let old = u32::from_be_bytes(field);
        let new = old.wrapping_add(delta);
        options[at..at + 4].copy_from_slice(&new.to_be_bytes());
        if let Some(c) = csum.as_deref_mut() {
            c.dword(old, new);
        }
    }
}

/// The rewrite of `splice::translate` (data segments with ACK and the NOP NOP TS layout,
/// which is all this benchmark feeds it) written over smoltcp's views.
#[inline(never)]
fn smoltcp_translate(ip_and_tcp: &mut [u8], t: &Translation) -> bool {
    let Ok(mut ip) = smol::Ipv4Packet::new_checked(&mut ip_and_tcp[..]) else {
        return false;
    };
    let (old_src, old_dst) = (ip.src_addr(), ip.dst_addr());
    let mut addresses = Incremental::changes();
    addresses.dword(u32::from(old_src), u32::from(t.src.0));
    addresses.dword(u32::from(old_dst), u32::from(t.dst.0));
    let ip_csum = addresses.applied_to(ip.checksum());
    ip.set_src_addr(t.src.0);
    ip.set_dst_addr(t.dst.0);
    ip.set_checksum(ip_csum.finish());
    let header_len = usize::from(ip.header_len());
    let Ok(mut tcp) = smol::TcpPacket::new_checked(&mut ip_and_tcp[header_len..]) else {
        return false;
    };
    let mut csum = addresses.applied_to(tcp.checksum());
    csum.word(tcp.src_port(), t.src.1);
    tcp.set_src_port(t.src.1);
    csum.word(tcp.dst_port(), t.dst.1);
    tcp.set_dst_port(t.dst.1);
    let seq = tcp.seq_number().0 as u32;
    let new_seq = seq.wrapping_add(t.seq_delta);
    csum.dword(seq, new_seq);
    tcp.set_seq_number(smol::TcpSeqNumber(new_seq as i32));
    let ack = tcp.ack_number().0 as u32;
    let new_ack = ack.wrapping_add(t.ack_delta);
    csum.dword(ack, new_ack);
    tcp.set_ack_number(smol::TcpSeqNumber(new_ack as i32));
    let window = tcp.window_len();
    let new_window = splice::rescale_window(window, t.window_shift_in, t.window_shift_out);
    csum.word(window, new_window);
    tcp.set_window_len(new_window);
    shift_timestamps(tcp.options_mut(), t, Some(&mut csum));
    tcp.set_checksum(csum.finish());
    true
}

/// `smoltcp_translate` line for line over tcpstate's views: the cost of the views alone,
/// without `splice::translate`'s generality (any option layout, SACK blocks, SYN and
/// segments without ACK, the receive limit, every check before the first write).
#[inline(never)]
fn ours_translate_same(ip_and_tcp: &mut [u8], t: &Translation) -> bool {
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut ip_and_tcp[..]) else {
        return false;
    };
    let (old_src, old_dst) = (ip.src_addr(), ip.dst_addr());
    let mut addresses = Incremental::changes();
    addresses.dword(u32::from(old_src), u32::from(t.src.0));
    addresses.dword(u32::from(old_dst), u32::from(t.dst.0));
    let ip_csum = addresses.applied_to(ip.checksum());
    ip.set_src_addr(t.src.0);
    ip.set_dst_addr(t.dst.0);
    ip.set_checksum(ip_csum.finish());
    let header_len = usize::from(ip.header_len());
    let Ok(mut tcp) = TcpPacket::new_checked(&mut ip_and_tcp[header_len..]) else {
        return false;
    };
    let mut csum = addresses.applied_to(tcp.checksum());
    csum.word(tcp.src_port(), t.src.1);
    tcp.set_src_port(t.src.1);
    csum.word(tcp.dst_port(), t.dst.1);
    tcp.set_dst_port(t.dst.1);
    let seq = tcp.seq_number().0;
    let new_seq = seq.wrapping_add(t.seq_delta);
    csum.dword(seq, new_seq);
    tcp.set_seq_number(SeqNumber(new_seq));
    let ack = tcp.ack_number().0;
    let new_ack = ack.wrapping_add(t.ack_delta);
    csum.dword(ack, new_ack);
    tcp.set_ack_number(SeqNumber(new_ack));
    let window = tcp.window_len();
    let new_window = splice::rescale_window(window, t.window_shift_in, t.window_shift_out);
    csum.word(window, new_window);
    tcp.set_window_len(new_window);
    shift_timestamps(tcp.options_mut(), t, Some(&mut csum));
    tcp.set_checksum(csum.finish());
    true
}

/// The same rewrite in smoltcp's own idiom: set the fields, then recompute both checksums.
#[inline(never)]
fn smoltcp_translate_refill(ip_and_tcp: &mut [u8], t: &Translation) -> bool {
    let Ok(mut ip) = smol::Ipv4Packet::new_checked(&mut ip_and_tcp[..]) else {
        return false;
    };
    ip.set_src_addr(t.src.0);
    ip.set_dst_addr(t.dst.0);
    ip.fill_checksum();
    let header_len = usize::from(ip.header_len());
    let Ok(mut tcp) = smol::TcpPacket::new_checked(&mut ip_and_tcp[header_len..]) else {
        return false;
    };
    tcp.set_src_port(t.src.1);
    tcp.set_dst_port(t.dst.1);
    tcp.set_seq_number(tcp.seq_number() + t.seq_delta as usize);
    tcp.set_ack_number(tcp.ack_number() + t.ack_delta as usize);
    let window = tcp.window_len();
    tcp.set_window_len(splice::rescale_window(
        window,
        t.window_shift_in,
        t.window_shift_out,
    ));
    shift_timestamps(tcp.options_mut(), t, None);
    tcp.fill_checksum(&t.src.0.into(), &t.dst.0.into());
    true
}

#[inline(never)]
fn ours_verify(segment: &[u8]) -> bool {
    TcpPacket::new_unchecked(segment).verify_checksum(BACKEND, LOCAL)
}

#[inline(never)]
fn smoltcp_verify(segment: &[u8]) -> bool {
    smol::TcpPacket::new_unchecked(segment).verify_checksum(&BACKEND.into(), &LOCAL.into())
}

/// Runs `op` `ITERATIONS` times and prints its time per call.
fn time<R>(name: &str, mut op: impl FnMut() -> R) {
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        black_box(op());
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS);
    println!("{name:<26} {ns:>8.1} ns");
}

fn main() {
    if std::env::args().any(|a| a == "--calls") {
        // Calls of each operation in a run: the checks below, then the timed loop.
        println!("{}", ITERATIONS + 1);
        return;
    }
    let frame = segment();
    let t = translation();

    // Both sides must agree before their costs mean anything.
    let classified = ours_classify(&frame);
    assert!(classified.is_some());
    assert_eq!(classified, smoltcp_classify(&frame));
    assert_eq!(ours_parse(&frame[20..]), smoltcp_parse(&frame[20..]));
    assert!(ours_verify(&frame[20..]));
    assert!(smoltcp_verify(&frame[20..]));
    let (mut a, mut b, mut c, mut d) = (frame.clone(), frame.clone(), frame.clone(), frame.clone());
    assert!(ours_translate(&mut a, &t));
    assert!(smoltcp_translate(&mut b, &t));
    assert!(smoltcp_translate_refill(&mut c, &t));
    assert!(ours_translate_same(&mut d, &t));
    assert_eq!(a, b, "the smoltcp rewrite differs from splice::translate");
    assert_eq!(a, d, "the reduced rewrite differs from splice::translate");
    assert_eq!(
        a, c,
        "smoltcp's recomputed checksums differ from the patched ones"
    );
    assert!(splice::verify(&a), "translated checksums verify");

    println!("{ITERATIONS} calls each, one {PAYLOAD}-byte data segment with timestamps:");
    time("ours_classify", || ours_classify(black_box(&frame)));
    time("smoltcp_classify", || smoltcp_classify(black_box(&frame)));
    time("ours_parse", || ours_parse(black_box(&frame[20..])));
    time("smoltcp_parse", || smoltcp_parse(black_box(&frame[20..])));
    // The rewrite runs over the same buffer again and again: its fields keep changing,
    // its cost does not.
    let mut buf = frame.clone();
    time("ours_translate", || ours_translate(black_box(&mut buf), &t));
    time("ours_translate_same", || {
        ours_translate_same(black_box(&mut buf), &t)
    });
    time("smoltcp_translate", || {
        smoltcp_translate(black_box(&mut buf), &t)
    });
    time("smoltcp_translate_refill", || {
        smoltcp_translate_refill(black_box(&mut buf), &t)
    });
    time("ours_verify", || ours_verify(black_box(&frame[20..])));
    time("smoltcp_verify", || smoltcp_verify(black_box(&frame[20..])));
}
