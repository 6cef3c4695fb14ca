use std::net::Ipv4Addr;

use super::agent::{
    AgentError, AgentFlow, AgentState, ClientVerdict, FlowAddrs, KernelVerdict, SegFlags, IDLE_MS,
    LINGER_MS,
};
use super::option::{self, find, options_with_handoff, HandoffRecord, OptionError};
use crate::splice::{rescale_window, translate, verify, Translation};
use crate::wire::{
    ip_proto, tcp_flags, Ipv4Packet, Ipv4Repr, SeqNumber, TcpOption, TcpOptionIter, TcpPacket,
    TcpRepr,
};

// ---------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------

const CLIENT: (Ipv4Addr, u16) = (Ipv4Addr::new(192, 0, 2, 10), 40_000);
const VIP: (Ipv4Addr, u16) = (Ipv4Addr::new(198, 51, 100, 1), 80);

/// An IPv4 packet carrying a TCP segment with exactly these option bytes (the
/// same builder as `splice`'s tests, which keeps its own private).
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
    let ip = Ipv4Repr {
        src: src.0,
        dst: dst.0,
        protocol: ip_proto::TCP,
        payload_len: 20 + options.len() + payload.len(),
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

/// The same, from a `TcpRepr` (how the agent emits the SYN and the ACK).
fn build_repr(src: Ipv4Addr, dst: Ipv4Addr, repr: &TcpRepr) -> Vec<u8> {
    let ip = Ipv4Repr {
        src,
        dst,
        protocol: ip_proto::TCP,
        payload_len: repr.buffer_len(),
        ttl: 64,
    };
    let mut buf = vec![0u8; ip.buffer_len()];
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
    let payload = vec![0u8; repr.payload_len];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut buf[20..]),
        src,
        dst,
        &payload,
    );
    buf
}

fn tcp_of(pkt: &[u8]) -> TcpPacket<&[u8]> {
    let ip = Ipv4Packet::new_checked(pkt).unwrap();
    let (h, t) = (usize::from(ip.header_len()), usize::from(ip.total_len()));
    TcpPacket::new_checked(&pkt[h..t]).unwrap()
}

fn addrs_of(pkt: &[u8]) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
    let ip = Ipv4Packet::new_checked(pkt).unwrap();
    let tcp = tcp_of(pkt);
    (
        (ip.src_addr(), tcp.src_port()),
        (ip.dst_addr(), tcp.dst_port()),
    )
}

/// Parses the segment, checksum verified.
fn repr_of(pkt: &[u8]) -> TcpRepr {
    let ip = Ipv4Packet::new_checked(pkt).unwrap();
    TcpRepr::parse(&tcp_of(pkt), ip.src_addr(), ip.dst_addr(), true).unwrap()
}

fn seg_of(pkt: &[u8]) -> SegFlags {
    SegFlags::from_packet(&tcp_of(pkt))
}

fn ts_option(tsval: u32, tsecr: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&tsecr.to_be_bytes());
    o
}

fn sack_option(blocks: &[(u32, u32)]) -> Vec<u8> {
    let mut o = vec![1, 1, 5, (2 + 8 * blocks.len()) as u8];
    for &(l, r) in blocks {
        o.extend_from_slice(&l.to_be_bytes());
        o.extend_from_slice(&r.to_be_bytes());
    }
    o
}

fn sack_of(pkt: &[u8]) -> Vec<(u32, u32)> {
    TcpOptionIter::new(tcp_of(pkt).options())
        .filter_map(|o| match o.unwrap() {
            TcpOption::SackRange(blocks) => Some(blocks),
            _ => None,
        })
        .flat_map(|blocks| blocks.into_iter().flatten())
        .collect()
}

/// Translates a copy and checks that both checksums are still right.
fn translated(pkt: &[u8], t: &Translation) -> Vec<u8> {
    let mut out = pkt.to_vec();
    translate(&mut out, t).unwrap();
    assert!(verify(&out), "checksums valid after translation");
    out
}

// ---------------------------------------------------------------------------------
// The option
// ---------------------------------------------------------------------------------

fn record() -> HandoffRecord {
    HandoffRecord {
        client_isn: SeqNumber(0xfedc_ba98),
        mss: 1460,
        client_ws: Some(8),
        switch_ws: 9,
        sack_permitted: true,
        timestamps: true,
        switch_tsval: 0x8000_0001,
        backend_id: 0x0103,
    }
}

/// The record's 20 bytes, laid out as the module doc draws them.
#[rustfmt::skip]
const RECORD_BYTES: [u8; 20] = [
    253, 20, 0x57, 0x53,    // kind, length, ExID "WS"
    1, 0b111, 0x05, 0xb4,   // version, flags (ws|ts|sack), MSS 1460
    8, 9,                   // client shift, switch shift
    0x80, 0x00, 0x00, 0x01, // switch_tsval
    0xfe, 0xdc, 0xba, 0x98, // client_isn
    0x01, 0x03,             // backend id
];

#[test]
fn option_emit_parse_round_trip() {
    let mut out = [0u8; 24];
    assert_eq!(record().emit(&mut out), option::LEN);
    assert_eq!(out[..20], RECORD_BYTES);
    assert_eq!(out[20..], [0; 4], "nothing written past the option");
    assert_eq!(HandoffRecord::parse(&out), Ok(record()));

    let bare = HandoffRecord {
        client_ws: None,
        switch_ws: 0,
        sack_permitted: false,
        timestamps: false,
        switch_tsval: 0,
        ..record()
    };
    assert_eq!(bare.emit(&mut out), 20);
    assert_eq!(out[5], 0, "no flags");
    assert_eq!(out[8..10], [0, 0]);
    assert_eq!(HandoffRecord::parse(&out[..20]), Ok(bare));
}

#[test]
fn option_emit_into_short_buffer_writes_nothing() {
    let mut out = [0xaa; 19];
    assert_eq!(record().emit(&mut out), 0);
    assert_eq!(out, [0xaa; 19]);
}

#[test]
fn option_parse_errors() {
    let with = |at: usize, value: u8| {
        let mut b = RECORD_BYTES;
        b[at] = value;
        b
    };
    assert_eq!(HandoffRecord::parse(&[]), Err(OptionError::BadLength));
    assert_eq!(HandoffRecord::parse(&[253]), Err(OptionError::BadLength));
    assert_eq!(
        HandoffRecord::parse(&[253, 3, 0x57]),
        Err(OptionError::BadLength),
        "too short for an ExID"
    );
    assert_eq!(
        HandoffRecord::parse(&RECORD_BYTES[..19]),
        Err(OptionError::BadLength),
        "runs past the bytes given"
    );
    // Our ExID with the wrong length, shorter or longer.
    assert_eq!(
        HandoffRecord::parse(&with(1, 19)),
        Err(OptionError::BadLength)
    );
    let mut long = RECORD_BYTES.to_vec();
    long.push(0);
    long[1] = 21;
    assert_eq!(HandoffRecord::parse(&long), Err(OptionError::BadLength));
    assert_eq!(
        HandoffRecord::parse(&with(4, 2)),
        Err(OptionError::BadVersion)
    );
    assert_eq!(
        HandoffRecord::parse(&with(4, 0)),
        Err(OptionError::BadVersion)
    );
    // Fields no switch writes.
    assert_eq!(
        HandoffRecord::parse(&with(5, 0x0f)),
        Err(OptionError::BadField)
    );
    let mut no_mss = RECORD_BYTES;
    no_mss[6..8].copy_from_slice(&[0, 0]);
    assert_eq!(HandoffRecord::parse(&no_mss), Err(OptionError::BadField));
    assert_eq!(
        HandoffRecord::parse(&with(5, 0b011)),
        Err(OptionError::BadField),
        "window shifts without window scaling"
    );
    // Not ours at all.
    assert_eq!(
        HandoffRecord::parse(&with(0, 254)),
        Err(OptionError::NotHandoff)
    );
    assert_eq!(
        HandoffRecord::parse(&with(2, 0x12)),
        Err(OptionError::NotHandoff)
    );
    // Shifts beyond RFC 7323's 14 are read as 14, as the client reads them.
    let mut big = with(8, 15);
    big[9] = 200;
    let rec = HandoffRecord::parse(&big).unwrap();
    assert_eq!((rec.client_ws, rec.switch_ws), (Some(14), 14));
}

#[test]
fn find_among_other_options() {
    let rec = record();
    let mut handoff = [0u8; 20];
    rec.emit(&mut handoff);

    // NOP NOP TS | handoff
    let opts = [ts_option(1, 2), handoff.to_vec()].concat();
    assert_eq!(find(&opts), Ok(Some(rec)));
    // MSS | NOP NOP SACK(1 block) | handoff: 4 + 12 + 20 = 36
    let opts = [
        vec![2, 4, 0x05, 0xb4],
        sack_option(&[(10, 20)]),
        handoff.to_vec(),
    ]
    .concat();
    assert_eq!(find(&opts), Ok(Some(rec)));
    // NOP | handoff (unaligned) | NOP NOP NOP
    let opts = [vec![1], handoff.to_vec(), vec![1, 1, 1]].concat();
    assert_eq!(find(&opts), Ok(Some(rec)));
    // Nothing of ours: absent, or only past the end of the list.
    assert_eq!(find(&ts_option(1, 2)), Ok(None));
    assert_eq!(find(&[]), Ok(None));
    let opts = [vec![1, 1, 1, 0], handoff.to_vec()].concat();
    assert_eq!(find(&opts), Ok(None), "after EOL is padding");
}

#[test]
fn find_skips_other_experiments() {
    let mut handoff = [0u8; 20];
    record().emit(&mut handoff);
    // Kind 253, another ExID (same length, so only the ExID tells them apart).
    let mut foreign = handoff;
    foreign[2..4].copy_from_slice(&0x1234u16.to_be_bytes());
    assert_eq!(find(&foreign), Ok(None));
    // Kind 254 with our ExID: not the kind we use.
    let mut exp2 = handoff;
    exp2[0] = 254;
    assert_eq!(find(&exp2), Ok(None));
    // A kind-253 option too short to have an ExID: someone else's, malformed or not.
    assert_eq!(find(&[253, 2, 1, 1]), Ok(None));
    // Ours after a foreign one.
    let opts = [foreign.to_vec(), handoff.to_vec()].concat();
    assert_eq!(find(&opts), Ok(Some(record())));
}

#[test]
fn find_errors() {
    let mut handoff = [0u8; 20];
    record().emit(&mut handoff);
    // A length byte that runs past the options area.
    assert_eq!(
        find(&[1, 1, 8, 10, 0, 0, 0, 0]),
        Err(OptionError::Malformed)
    );
    assert_eq!(find(&handoff[..16]), Err(OptionError::Malformed));
    // Ours, twice.
    let opts = [handoff, handoff].concat();
    assert_eq!(find(&opts), Err(OptionError::Malformed));
    // Ours, broken: the record's own errors.
    let mut v2 = handoff;
    v2[4] = 2;
    assert_eq!(find(&v2), Err(OptionError::BadVersion));
    assert_eq!(find(&[253, 4, 0x57, 0x53]), Err(OptionError::BadLength));
}

#[test]
fn options_with_handoff_layout() {
    let rec = record();
    let mut out = [0u8; 40];

    let n = options_with_handoff(Some((0x0102_0304, 0x0506_0708)), &rec, &mut out);
    assert_eq!(n, 32);
    #[rustfmt::skip]
    let ts = [1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8];
    assert_eq!(out[..12], ts);
    assert_eq!(out[12..32], RECORD_BYTES);

    let mut bare = [0u8; 40];
    let m = options_with_handoff(None, &rec, &mut bare);
    assert_eq!(m, 20);
    assert_eq!(bare[..20], RECORD_BYTES);

    for (area, ts) in [
        (&out[..n], Some((0x0102_0304, 0x0506_0708))),
        (&bare[..m], None),
    ] {
        assert!(area.len().is_multiple_of(4) && area.len() <= 40);
        // The crate's own option parser walks it, and TcpRepr reads it.
        let options: Vec<TcpOption> = TcpOptionIter::new(area).map(Result::unwrap).collect();
        assert!(options.contains(&TcpOption::Unknown {
            kind: 253,
            data: &RECORD_BYTES[2..],
        }));
        assert_eq!(find(area), Ok(Some(rec)));
        let pkt = build(CLIENT, VIP, 1, Some(2), tcp_flags::PSH, 100, area, b"GET /");
        assert_eq!(repr_of(&pkt).timestamps, ts);
    }
}

// ---------------------------------------------------------------------------------
// The agent
// ---------------------------------------------------------------------------------

const CLIENT_ISN: u32 = 0x1234_5678;
/// Far from the kernel's, which is just below the wrap: its data crosses 2^32.
const SWITCH_ISN: u32 = 0x0000_0100;
const KERNEL_ISN: u32 = 0xffff_ff00;
const CLIENT_TSVAL: u32 = 777_000;
const SWITCH_TSVAL: u32 = 5_000_000;
/// The kernel's clock wraps 16 ms after its SYN-ACK.
const KERNEL_TSVAL: u32 = 0xffff_fff0;
const CLIENT_WS: u8 = 8;
const SWITCH_WS: u8 = 9;
const KERNEL_WS: u8 = 7;
/// The client's window field (at its shift 8: 128,512 bytes).
const CLIENT_WINDOW: u16 = 502;
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";

fn client_record() -> HandoffRecord {
    HandoffRecord {
        client_isn: SeqNumber(CLIENT_ISN),
        mss: 1460,
        client_ws: Some(CLIENT_WS),
        switch_ws: SWITCH_WS,
        sack_permitted: true,
        timestamps: true,
        switch_tsval: SWITCH_TSVAL,
        backend_id: 3,
    }
}

/// The switch's handoff segment: the client's request, as the client would have
/// sent it, plus the option.
fn handoff_segment(rec: &HandoffRecord) -> Vec<u8> {
    let mut opts = [0u8; 40];
    let ts = rec.timestamps.then_some((CLIENT_TSVAL, SWITCH_TSVAL));
    let n = options_with_handoff(ts, rec, &mut opts);
    build(
        CLIENT,
        VIP,
        CLIENT_ISN + 1,
        Some(SWITCH_ISN + 1),
        tcp_flags::PSH,
        CLIENT_WINDOW,
        &opts[..n],
        REQUEST,
    )
}

/// What the agent does with a handoff segment for an unknown flow: reads the
/// option and starts a flow. Returns the flow and the SYN, as bytes.
fn start_from(pkt: &[u8], now_ms: u64) -> (AgentFlow, Vec<u8>) {
    let (client, vip) = addrs_of(pkt);
    let tcp = tcp_of(pkt);
    let rec = find(tcp.options()).unwrap().expect("a handoff option");
    let switch_isn = tcp.ack_number() - 1;
    let client_tsval = repr_of(pkt).timestamps.map(|(tsval, _)| tsval);
    let (flow, syn) = AgentFlow::start(
        FlowAddrs { client, vip },
        rec,
        switch_isn,
        client_tsval,
        now_ms,
    );
    (flow, build_repr(client.0, vip.0, &syn))
}

fn kernel_syn_ack_repr(isn: u32, ws: Option<u8>) -> TcpRepr {
    TcpRepr {
        src_port: VIP.1,
        dst_port: CLIENT.1,
        seq_number: SeqNumber(isn),
        ack_number: Some(SeqNumber(CLIENT_ISN + 1)),
        flags: tcp_flags::SYN,
        window_len: 65160,
        max_seg_size: Some(1460),
        window_scale: ws,
        sack_permitted: true,
        timestamps: Some((KERNEL_TSVAL, CLIENT_TSVAL)),
        payload_len: 0,
    }
}

/// The kernel's SYN-ACK as bytes.
fn kernel_syn_ack(isn: u32, ws: Option<u8>) -> Vec<u8> {
    build_repr(VIP.0, CLIENT.0, &kernel_syn_ack_repr(isn, ws))
}

/// A flow through its handshake, with the handoff segment it holds.
fn established() -> (AgentFlow, Vec<u8>) {
    let handoff = handoff_segment(&client_record());
    let (mut flow, _syn) = start_from(&handoff, 1_000);
    assert_eq!(flow.on_client(seg_of(&handoff), 1_000), ClientVerdict::Hold);
    let syn_ack = kernel_syn_ack(KERNEL_ISN, Some(KERNEL_WS));
    assert_eq!(
        flow.on_kernel(seg_of(&syn_ack), 1_001),
        KernelVerdict::ResendAck
    );
    flow.on_kernel_syn_ack(&repr_of(&syn_ack), CLIENT_WINDOW, 1_001)
        .unwrap();
    assert_eq!(flow.state(), AgentState::Established);
    (flow, handoff)
}

#[test]
fn walk_handoff_to_close() {
    // switch ──► agent:  GET / seq c+1 ack s+1, TS(client, switch), handoff option
    let handoff = handoff_segment(&client_record());
    let (mut flow, syn) = start_from(&handoff, 1_000);
    assert_eq!(flow.state(), AgentState::SynSent);
    assert_eq!(flow.record(), &client_record());
    assert_eq!(flow.switch_isn(), SeqNumber(SWITCH_ISN));
    assert_eq!(flow.on_client(seg_of(&handoff), 1_000), ClientVerdict::Hold);

    // agent ──► kernel:  SYN seq c, the client's options, from the client's address
    assert_eq!(addrs_of(&syn), (CLIENT, VIP));
    let syn = repr_of(&syn);
    assert_eq!(syn.seq_number, SeqNumber(CLIENT_ISN));
    assert_eq!(syn.ack_number, None);
    assert_eq!(syn.flags, tcp_flags::SYN);
    assert_eq!(syn.window_len, 65535);
    assert_eq!(syn.max_seg_size, Some(1460));
    assert_eq!(syn.window_scale, Some(CLIENT_WS));
    assert!(syn.sack_permitted);
    assert_eq!(syn.timestamps, Some((CLIENT_TSVAL, 0)));
    assert_eq!(syn.payload_len, 0);
    assert_eq!(flow.syn(), syn, "the same SYN for a retransmission");

    // kernel ──► agent:  SYN-ACK seq k (just below 2^32), ack c+1, wscale 7
    let syn_ack = kernel_syn_ack(KERNEL_ISN, Some(KERNEL_WS));
    assert_eq!(
        flow.on_kernel(seg_of(&syn_ack), 1_001),
        KernelVerdict::ResendAck
    );
    let ack = flow
        .on_kernel_syn_ack(&repr_of(&syn_ack), CLIENT_WINDOW, 1_001)
        .unwrap();
    assert_eq!(flow.state(), AgentState::Established);
    assert_eq!(flow.kernel_isn(), Some(SeqNumber(KERNEL_ISN)));

    // agent ──► kernel:  ACK seq c+1 ack k+1, the client's window, TS(client, kernel)
    let ack = repr_of(&build_repr(CLIENT.0, VIP.0, &ack));
    assert_eq!((ack.src_port, ack.dst_port), (CLIENT.1, VIP.1));
    assert_eq!(ack.seq_number, SeqNumber(CLIENT_ISN + 1));
    assert_eq!(ack.ack_number, Some(SeqNumber(KERNEL_ISN + 1)));
    assert_eq!(ack.flags, 0);
    assert_eq!(
        ack.window_len, CLIENT_WINDOW,
        "the same shift on both sides"
    );
    assert_eq!(ack.timestamps, Some((CLIENT_TSVAL, KERNEL_TSVAL)));
    assert_eq!(
        (ack.max_seg_size, ack.window_scale, ack.sack_permitted),
        (None, None, false)
    );

    let to_kernel = *flow.to_kernel().unwrap();
    let to_client = *flow.to_client().unwrap();
    assert_eq!(
        to_kernel,
        Translation {
            src: CLIENT,
            dst: VIP,
            seq_delta: 0,
            ack_delta: KERNEL_ISN.wrapping_sub(SWITCH_ISN),
            ts_val_delta: 0,
            ts_ecr_delta: KERNEL_TSVAL.wrapping_sub(SWITCH_TSVAL),
            window_shift_in: CLIENT_WS,
            window_shift_out: CLIENT_WS,
        }
    );
    assert_eq!(
        to_client,
        Translation {
            src: VIP,
            dst: CLIENT,
            seq_delta: SWITCH_ISN.wrapping_sub(KERNEL_ISN),
            ack_delta: 0,
            ts_val_delta: SWITCH_TSVAL.wrapping_sub(KERNEL_TSVAL),
            ts_ecr_delta: 0,
            window_shift_in: KERNEL_WS,
            window_shift_out: SWITCH_WS,
        }
    );

    // agent ──► kernel:  the held GET, replayed: ack k+1, TSecr in the kernel's clock
    let get = translated(&handoff, &to_kernel);
    assert_eq!(addrs_of(&get), (CLIENT, VIP), "addresses never rewritten");
    let r = repr_of(&get);
    assert_eq!(r.seq_number, SeqNumber(CLIENT_ISN + 1));
    assert_eq!(r.ack_number, Some(SeqNumber(KERNEL_ISN + 1)));
    assert_eq!(r.timestamps, Some((CLIENT_TSVAL, KERNEL_TSVAL)));
    assert_eq!(r.window_len, CLIENT_WINDOW);
    assert_eq!(tcp_of(&get).payload(), REQUEST);
    assert_eq!(
        find(tcp_of(&get).options()),
        Ok(Some(client_record())),
        "the option rides along untouched (the kernel skips unknown kinds)"
    );

    // kernel ──► client: 300 bytes at k+1 (crossing 2^32), TSval 32 ms later (the
    // kernel's clock wraps too), window 100 << 7 = 12,800 bytes.
    let ts_later = KERNEL_TSVAL.wrapping_add(0x20);
    let data = vec![b'x'; 300];
    let req_end = CLIENT_ISN + 1 + REQUEST.len() as u32;
    let resp = build(
        VIP,
        CLIENT,
        KERNEL_ISN + 1,
        Some(req_end),
        tcp_flags::PSH,
        100,
        &ts_option(ts_later, CLIENT_TSVAL),
        &data,
    );
    assert_eq!(
        flow.on_kernel(seg_of(&resp), 1_002),
        KernelVerdict::Translate
    );
    let out = translated(&resp, &to_client);
    assert_eq!(addrs_of(&out), (VIP, CLIENT));
    let r = repr_of(&out);
    assert_eq!(
        r.seq_number,
        SeqNumber(SWITCH_ISN + 1),
        "the switch's space"
    );
    assert_eq!(r.ack_number, Some(SeqNumber(req_end)), "client space as is");
    let (tsval, tsecr) = r.timestamps.unwrap();
    assert_eq!(tsval, SWITCH_TSVAL + 0x20, "continues the switch's clock");
    assert!(
        tsval.wrapping_sub(SWITCH_TSVAL) as i32 >= 0,
        "never behind what the client saw"
    );
    assert_eq!(tsecr, CLIENT_TSVAL);
    assert_eq!(r.window_len, 25, "12,800 bytes at the switch's shift 9");
    assert_eq!(tcp_of(&out).payload(), &data[..]);

    // kernel ──► client: a zero window stays zero.
    let resp_end = KERNEL_ISN.wrapping_add(1 + 300);
    let closed = build(
        VIP,
        CLIENT,
        resp_end,
        Some(req_end),
        0,
        0,
        &ts_option(ts_later, CLIENT_TSVAL),
        &[],
    );
    assert_eq!(
        flow.on_kernel(seg_of(&closed), 1_002),
        KernelVerdict::Translate
    );
    assert_eq!(repr_of(&translated(&closed, &to_client)).window_len, 0);

    // client ──► kernel: ACK s+1+100, SACK [s+201, s+301), echoing the translated
    // TSval: ack, SACK edges and TSecr all move into the kernel's spaces.
    let s1 = SWITCH_ISN + 1;
    let opts = [
        ts_option(CLIENT_TSVAL + 5, SWITCH_TSVAL + 0x20),
        sack_option(&[(s1 + 200, s1 + 300)]),
    ]
    .concat();
    let client_ack = build(
        CLIENT,
        VIP,
        req_end,
        Some(s1 + 100),
        0,
        CLIENT_WINDOW,
        &opts,
        &[],
    );
    assert_eq!(
        flow.on_client(seg_of(&client_ack), 1_003),
        ClientVerdict::Translate
    );
    let out = translated(&client_ack, &to_kernel);
    let r = repr_of(&out);
    let k1 = SeqNumber(KERNEL_ISN) + 1;
    assert_eq!(r.ack_number, Some(k1 + 100));
    assert_eq!(sack_of(&out), [((k1 + 200).0, (k1 + 300).0)]);
    assert!((k1 + 300).0 < KERNEL_ISN, "the edge wrapped past 2^32");
    assert_eq!(r.timestamps, Some((CLIENT_TSVAL + 5, ts_later)));
    assert_eq!(r.window_len, CLIENT_WINDOW);

    // kernel ──► client: FIN at k+301.
    let kernel_fin = build(
        VIP,
        CLIENT,
        resp_end,
        Some(req_end),
        tcp_flags::FIN,
        100,
        &ts_option(ts_later, CLIENT_TSVAL),
        &[],
    );
    assert_eq!(
        flow.on_kernel(seg_of(&kernel_fin), 1_004),
        KernelVerdict::Translate
    );
    assert_eq!(
        repr_of(&translated(&kernel_fin, &to_client)).seq_number,
        SeqNumber(s1 + 300)
    );
    // client ──► kernel: an ACK up to the FIN, not over it, does not count...
    let not_yet = build(CLIENT, VIP, req_end, Some(s1 + 300), 0, 502, &[], &[]);
    assert_eq!(
        flow.on_client(seg_of(&not_yet), 1_005),
        ClientVerdict::Translate
    );
    // ...its FIN|ACK acking the kernel's FIN does.
    let client_fin = build(
        CLIENT,
        VIP,
        req_end,
        Some(s1 + 301),
        tcp_flags::FIN,
        502,
        &[],
        &[],
    );
    assert_eq!(
        flow.on_client(seg_of(&client_fin), 1_006),
        ClientVerdict::Translate
    );
    assert!(
        !flow.expired(1_006 + LINGER_MS),
        "the client's FIN is not acknowledged yet"
    );
    // kernel ──► client: the last ACK. Both FINs acknowledged: the flow lingers.
    let last_ack = build(
        VIP,
        CLIENT,
        resp_end.wrapping_add(1),
        Some(req_end + 1),
        0,
        100,
        &[],
        &[],
    );
    assert_eq!(
        flow.on_kernel(seg_of(&last_ack), 1_007),
        KernelVerdict::Translate
    );
    assert_eq!(
        flow.state(),
        AgentState::Established,
        "late retransmits still pass"
    );
    assert!(!flow.expired(1_007 + LINGER_MS - 1));
    assert!(flow.expired(1_007 + LINGER_MS));
}

#[test]
fn holds_everything_before_the_kernel_answers() {
    let handoff = handoff_segment(&client_record());
    let (mut flow, _) = start_from(&handoff, 0);
    assert_eq!(flow.to_kernel(), None);
    assert_eq!(flow.to_client(), None);
    assert_eq!(flow.kernel_isn(), None);

    assert_eq!(flow.on_client(seg_of(&handoff), 1), ClientVerdict::Hold);
    let ack = build(
        CLIENT,
        VIP,
        CLIENT_ISN + 1,
        Some(SWITCH_ISN + 1),
        0,
        502,
        &[],
        &[],
    );
    assert_eq!(flow.on_client(seg_of(&ack), 2), ClientVerdict::Hold);
    let fin = build(
        CLIENT,
        VIP,
        CLIENT_ISN + 1 + REQUEST.len() as u32,
        Some(SWITCH_ISN + 1),
        tcp_flags::FIN,
        502,
        &[],
        &[],
    );
    assert_eq!(flow.on_client(seg_of(&fin), 3), ClientVerdict::Hold);
    let syn = build(
        CLIENT,
        VIP,
        CLIENT_ISN,
        None,
        tcp_flags::SYN,
        65535,
        &[],
        &[],
    );
    assert_eq!(
        flow.on_client(seg_of(&syn), 4),
        ClientVerdict::Drop,
        "the switch answered the client's handshake"
    );

    // From the kernel, only a SYN-ACK or a refusing RST mean anything yet.
    let stray = build(
        VIP,
        CLIENT,
        KERNEL_ISN + 1,
        Some(CLIENT_ISN + 1),
        0,
        100,
        &[],
        &[],
    );
    assert_eq!(flow.on_kernel(seg_of(&stray), 5), KernelVerdict::Drop);
    let kernel_syn = build(VIP, CLIENT, KERNEL_ISN, None, tcp_flags::SYN, 100, &[], &[]);
    assert_eq!(flow.on_kernel(seg_of(&kernel_syn), 5), KernelVerdict::Drop);
    assert_eq!(flow.state(), AgentState::SynSent);
    assert_eq!(flow.to_kernel(), None);
}

#[test]
fn client_fin_held_then_acked_by_the_kernel() {
    // A FIN held before the handshake is remembered: the kernel's ACK of it after
    // the replay counts toward the close.
    let handoff = handoff_segment(&client_record());
    let (mut flow, _) = start_from(&handoff, 0);
    let req_end = CLIENT_ISN + 1 + REQUEST.len() as u32;
    let fin = build(
        CLIENT,
        VIP,
        req_end,
        Some(SWITCH_ISN + 1),
        tcp_flags::FIN,
        502,
        &[],
        &[],
    );
    assert_eq!(flow.on_client(seg_of(&fin), 1), ClientVerdict::Hold);
    flow.on_kernel_syn_ack(&kernel_syn_ack_repr(KERNEL_ISN, Some(7)), 502, 2)
        .unwrap();
    let k1 = KERNEL_ISN.wrapping_add(1);
    let kernel_fin = build(
        VIP,
        CLIENT,
        k1,
        Some(req_end + 1),
        tcp_flags::FIN,
        100,
        &[],
        &[],
    );
    assert_eq!(
        flow.on_kernel(seg_of(&kernel_fin), 3),
        KernelVerdict::Translate
    );
    let last = build(
        CLIENT,
        VIP,
        req_end + 1,
        Some(SWITCH_ISN + 2),
        0,
        502,
        &[],
        &[],
    );
    assert_eq!(flow.on_client(seg_of(&last), 4), ClientVerdict::Translate);
    assert!(!flow.expired(4 + LINGER_MS - 1));
    assert!(flow.expired(4 + LINGER_MS));
}

#[test]
fn retransmitted_syn_ack_gets_the_same_ack() {
    let (mut flow, _) = established();
    let before = (*flow.to_kernel().unwrap(), *flow.to_client().unwrap());
    let syn_ack = repr_of(&kernel_syn_ack(KERNEL_ISN, Some(KERNEL_WS)));
    // The client's window has moved since; the ACK is still the first one.
    let again = flow.on_kernel_syn_ack(&syn_ack, 7, 2_000).unwrap();
    assert_eq!(again.window_len, CLIENT_WINDOW);
    assert_eq!(again.ack_number, Some(SeqNumber(KERNEL_ISN + 1)));
    assert_eq!(again.timestamps, Some((CLIENT_TSVAL, KERNEL_TSVAL)));
    assert_eq!(flow.on_kernel_syn_ack(&syn_ack, 7, 2_001), Ok(again));

    let other = repr_of(&kernel_syn_ack(0x5555_0000, Some(KERNEL_WS)));
    assert_eq!(
        flow.on_kernel_syn_ack(&other, 7, 2_002),
        Err(AgentError::KernelIsnChanged)
    );
    assert_eq!(
        (*flow.to_kernel().unwrap(), *flow.to_client().unwrap()),
        before,
        "translations unchanged"
    );
    assert_eq!(flow.state(), AgentState::Established);
}

#[test]
fn syn_ack_that_does_not_answer_our_syn_is_refused() {
    let (mut flow, _) = start_from(&handoff_segment(&client_record()), 0);
    let good = kernel_syn_ack_repr(KERNEL_ISN, Some(KERNEL_WS));
    let bad = [
        TcpRepr {
            ack_number: Some(SeqNumber(CLIENT_ISN + 2)),
            ..good
        },
        TcpRepr {
            ack_number: None,
            ..good
        },
        TcpRepr { flags: 0, ..good },
        TcpRepr {
            flags: tcp_flags::SYN | tcp_flags::RST,
            ..good
        },
        TcpRepr {
            src_port: 8080,
            ..good
        },
        TcpRepr {
            dst_port: 40_001,
            ..good
        },
    ];
    for repr in bad {
        assert_eq!(
            flow.on_kernel_syn_ack(&repr, CLIENT_WINDOW, 1),
            Err(AgentError::UnexpectedSynAck),
            "{repr:?}"
        );
        assert_eq!(flow.state(), AgentState::SynSent);
        assert_eq!(flow.to_kernel(), None);
    }
    assert!(flow.on_kernel_syn_ack(&good, CLIENT_WINDOW, 1).is_ok());
}

#[test]
fn rst_from_the_client_closes() {
    let (mut flow, _) = established();
    // In the kernel's window but not at its next byte (after the held request): passed
    // to the kernel to challenge, and the flow stays, its answer translated back.
    for seq in [CLIENT_ISN + 1, CLIENT_ISN + 1 + REQUEST.len() as u32 + 900] {
        let rst = build(CLIENT, VIP, seq, None, tcp_flags::RST, 0, &[], &[]);
        assert_eq!(
            flow.on_client(seg_of(&rst), 4_000),
            ClientVerdict::Translate
        );
        assert_eq!(flow.state(), AgentState::Established);
    }
    let challenge = build(
        VIP,
        CLIENT,
        KERNEL_ISN + 1,
        Some(CLIENT_ISN + 1 + REQUEST.len() as u32),
        0,
        9,
        &[],
        &[],
    );
    assert_eq!(
        flow.on_kernel(seg_of(&challenge), 4_001),
        KernelVerdict::Translate
    );
    // A SYN on the connection goes to the kernel too, for its challenge ACK.
    let syn = build(CLIENT, VIP, 99, None, tcp_flags::SYN, 0, &[], &[]);
    assert_eq!(
        flow.on_client(seg_of(&syn), 4_002),
        ClientVerdict::Translate
    );
    assert_eq!(flow.state(), AgentState::Established);
    // At exactly the next byte: the flow ends.
    let rst = build(
        CLIENT,
        VIP,
        CLIENT_ISN + 1 + REQUEST.len() as u32,
        None,
        tcp_flags::RST,
        0,
        &[],
        &[],
    );
    assert_eq!(
        flow.on_client(seg_of(&rst), 5_000),
        ClientVerdict::Translate
    );
    let out = translated(&rst, flow.to_kernel().unwrap());
    assert_eq!(
        repr_of(&out).seq_number,
        SeqNumber(CLIENT_ISN + 1 + REQUEST.len() as u32)
    );
    assert_eq!(flow.state(), AgentState::Closed);
    // What crosses the RST is dropped while the flow lingers.
    let late = build(
        VIP,
        CLIENT,
        KERNEL_ISN + 1,
        Some(CLIENT_ISN + 1),
        0,
        9,
        &[],
        b"x",
    );
    assert_eq!(flow.on_kernel(seg_of(&late), 5_001), KernelVerdict::Drop);
    assert_eq!(flow.on_client(seg_of(&rst), 5_001), ClientVerdict::Drop);
    let syn_ack = kernel_syn_ack(KERNEL_ISN, Some(KERNEL_WS));
    assert_eq!(flow.on_kernel(seg_of(&syn_ack), 5_001), KernelVerdict::Drop);
    assert!(!flow.expired(5_000 + LINGER_MS - 1));
    assert!(flow.expired(5_000 + LINGER_MS));
}

#[test]
fn rst_from_the_kernel_closes() {
    let (mut flow, _) = established();
    let rst = build(
        VIP,
        CLIENT,
        KERNEL_ISN.wrapping_add(1),
        Some(CLIENT_ISN + 1),
        tcp_flags::RST,
        0,
        &[],
        &[],
    );
    assert_eq!(
        flow.on_kernel(seg_of(&rst), 7_000),
        KernelVerdict::Translate
    );
    let out = translated(&rst, flow.to_client().unwrap());
    assert_eq!(repr_of(&out).seq_number, SeqNumber(SWITCH_ISN + 1));
    assert_eq!(flow.state(), AgentState::Closed);
    let data = build(
        CLIENT,
        VIP,
        CLIENT_ISN + 1,
        Some(SWITCH_ISN + 1),
        0,
        9,
        &[],
        b"y",
    );
    assert_eq!(flow.on_client(seg_of(&data), 7_001), ClientVerdict::Drop);
    assert!(!flow.expired(7_000 + LINGER_MS - 1));
    assert!(flow.expired(7_000 + LINGER_MS));
}

#[test]
fn client_rst_before_the_handshake_resets_the_kernel_after_it() {
    let (mut flow, _) = start_from(&handoff_segment(&client_record()), 0);
    let rst = build(
        CLIENT,
        VIP,
        CLIENT_ISN + 1,
        None,
        tcp_flags::RST,
        0,
        &[],
        &[],
    );
    assert_eq!(flow.on_client(seg_of(&rst), 1), ClientVerdict::Hold);
    assert_eq!(flow.state(), AgentState::SynSent);
    // The kernel's handshake completes anyway; the held RST then ends it.
    let ack = flow
        .on_kernel_syn_ack(&kernel_syn_ack_repr(KERNEL_ISN, Some(KERNEL_WS)), 502, 2)
        .unwrap();
    assert_eq!(ack.ack_number, Some(SeqNumber(KERNEL_ISN + 1)));
    assert_eq!(flow.state(), AgentState::Closed);
    let to_kernel = flow.to_kernel().expect("held segments can be replayed");
    assert!(repr_of(&translated(&rst, to_kernel)).flags & tcp_flags::RST != 0);
    assert!(!flow.expired(2 + LINGER_MS - 1));
    assert!(flow.expired(2 + LINGER_MS));
}

#[test]
fn kernel_refusing_the_syn_resets_the_client() {
    let (mut flow, _) = start_from(&handoff_segment(&client_record()), 0);
    // Not an answer to our SYN: ignored.
    let other = build(
        VIP,
        CLIENT,
        0,
        Some(CLIENT_ISN + 7),
        tcp_flags::RST,
        0,
        &[],
        &[],
    );
    assert_eq!(flow.on_kernel(seg_of(&other), 1), KernelVerdict::Drop);
    let bare = build(VIP, CLIENT, 0, None, tcp_flags::RST, 0, &[], &[]);
    assert_eq!(flow.on_kernel(seg_of(&bare), 1), KernelVerdict::Drop);
    assert_eq!(flow.state(), AgentState::SynSent);

    // Linux's answer to a SYN nobody listens for: RST|ACK seq 0 ack c+1.
    let rst = build(
        VIP,
        CLIENT,
        0,
        Some(CLIENT_ISN + 1),
        tcp_flags::RST,
        0,
        &[],
        &[],
    );
    assert_eq!(flow.on_kernel(seg_of(&rst), 2), KernelVerdict::Translate);
    assert_eq!(flow.state(), AgentState::Closed);
    assert_eq!(flow.to_kernel(), None);
    let out = translated(&rst, flow.to_client().unwrap());
    assert_eq!(addrs_of(&out), (VIP, CLIENT));
    let r = repr_of(&out);
    assert_eq!(
        r.seq_number,
        SeqNumber(SWITCH_ISN + 1),
        "the one sequence number the client accepts a RST at"
    );
    assert_eq!(r.flags & tcp_flags::RST, tcp_flags::RST);
    // A late SYN-ACK cannot revive it.
    let syn_ack = kernel_syn_ack_repr(KERNEL_ISN, Some(KERNEL_WS));
    assert_eq!(
        flow.on_kernel_syn_ack(&syn_ack, 502, 3),
        Err(AgentError::UnexpectedSynAck)
    );
    assert!(flow.expired(2 + LINGER_MS));
}

#[test]
fn kernel_without_window_scaling() {
    // The client scales (shift 8, the switch announced 9); the kernel answers
    // without the option, so its connection is unscaled both ways.
    let handoff = handoff_segment(&client_record());
    let (mut flow, _) = start_from(&handoff, 0);
    let ack = flow
        .on_kernel_syn_ack(&kernel_syn_ack_repr(KERNEL_ISN, None), CLIENT_WINDOW, 1)
        .unwrap();
    assert_eq!(ack.window_len, 65535, "502 << 8 bytes, clamped unscaled");
    let (tk, tc) = (*flow.to_kernel().unwrap(), *flow.to_client().unwrap());
    assert_eq!((tk.window_shift_in, tk.window_shift_out), (CLIENT_WS, 0));
    assert_eq!((tc.window_shift_in, tc.window_shift_out), (0, SWITCH_WS));
    // 1,024 bytes of kernel window are 2 units of the switch's 512.
    let seg = build(
        VIP,
        CLIENT,
        KERNEL_ISN + 1,
        Some(CLIENT_ISN + 1),
        0,
        1024,
        &[],
        &[],
    );
    assert_eq!(repr_of(&translated(&seg, &tc)).window_len, 2);
    assert_eq!(rescale_window(3, CLIENT_WS, 0), 768);
}

#[test]
fn client_without_scaling_sack_or_timestamps() {
    let rec = HandoffRecord {
        client_ws: None,
        switch_ws: 0,
        sack_permitted: false,
        timestamps: false,
        switch_tsval: 0,
        mss: 536,
        ..client_record()
    };
    let handoff = handoff_segment(&rec);
    let (mut flow, syn) = start_from(&handoff, 0);
    let syn = repr_of(&syn);
    assert_eq!(
        (
            syn.max_seg_size,
            syn.window_scale,
            syn.sack_permitted,
            syn.timestamps
        ),
        (Some(536), None, false, None)
    );
    // Even a kernel that (wrongly) answered with options gets none back.
    let ack = flow
        .on_kernel_syn_ack(&kernel_syn_ack_repr(KERNEL_ISN, Some(7)), 1000, 1)
        .unwrap();
    assert_eq!(ack.timestamps, None);
    assert_eq!(ack.window_len, 1000);
    let (tk, tc) = (*flow.to_kernel().unwrap(), *flow.to_client().unwrap());
    assert_eq!((tk.window_shift_in, tk.window_shift_out), (0, 0));
    assert_eq!((tc.window_shift_in, tc.window_shift_out), (0, 0));
    assert_eq!((tk.ts_ecr_delta, tc.ts_val_delta), (0, 0));
    assert_eq!(tk.ack_delta, KERNEL_ISN.wrapping_sub(SWITCH_ISN));
}

#[test]
fn idle_flows_expire() {
    let (mut flow, _) = established();
    assert!(!flow.expired(1_001 + IDLE_MS - 1));
    assert!(flow.expired(1_001 + IDLE_MS));
    let ack = build(
        CLIENT,
        VIP,
        CLIENT_ISN + 1,
        Some(SWITCH_ISN + 1),
        0,
        502,
        &[],
        &[],
    );
    assert_eq!(
        flow.on_client(seg_of(&ack), 100_000),
        ClientVerdict::Translate
    );
    assert!(!flow.expired(100_000 + IDLE_MS - 1));
    assert!(flow.expired(100_000 + IDLE_MS));
    assert!(
        !flow.expired(0),
        "a clock behind the flow's does not expire it"
    );

    let (flow, _) = start_from(&handoff_segment(&client_record()), 50);
    assert!(
        !flow.expired(50 + IDLE_MS - 1),
        "a flow whose SYN went unanswered"
    );
    assert!(flow.expired(50 + IDLE_MS));
}

#[test]
fn agent_flow_is_small() {
    // No buffers, no allocation: two translations (32 B each), the record (20 B)
    // and a few numbers (the park time since switch-back: 8 B more): 160 B on x86_64
    // today. One of these per handed-off connection on the backend host.
    let size = std::mem::size_of::<AgentFlow>();
    assert!(size <= 168, "AgentFlow is {size} bytes");
}

#[test]
fn errors_display() {
    assert_eq!(
        AgentError::UnexpectedSynAck.to_string(),
        "SYN-ACK does not answer the replayed SYN"
    );
    assert!(!AgentError::KernelIsnChanged.to_string().is_empty());
    assert_eq!(
        OptionError::BadVersion.to_string(),
        "handoff option of an unknown version"
    );
}

// ---- a move to another agent: the release -----------------------------------------

/// SegFlags of a segment, by hand.
fn flags(seq: SeqNumber, ack: Option<SeqNumber>, len: usize) -> SegFlags {
    SegFlags {
        syn: false,
        fin: false,
        rst: false,
        ack,
        seq,
        payload_len: len,
    }
}

#[test]
fn release_only_when_idle_both_ways() {
    use crate::handoff::agent::ReleaseVerdict;
    let (mut flow, _) = established();
    let req_end = SeqNumber(CLIENT_ISN + 1) + REQUEST.len();
    let kernel_data =
        |off: usize, len: usize| flags(SeqNumber(KERNEL_ISN) + 1 + off, Some(req_end), len);
    // The kernel answers 3,000 bytes; the client has 1,448 of them.
    assert_eq!(
        flow.on_kernel(kernel_data(0, 1448), 1_010),
        KernelVerdict::Translate
    );
    assert_eq!(
        flow.on_kernel(kernel_data(1448, 1552), 1_010),
        KernelVerdict::Translate
    );
    let in_client = |n: usize| SeqNumber(SWITCH_ISN) + 1 + n;
    assert_eq!(
        flow.on_release(req_end, in_client(1448), true, 1_011),
        ReleaseVerdict::Busy,
        "the response is still under way"
    );
    // The client holds its next request back from the kernel; its bare ACKs carry the
    // sequence number past it. They must not count as bytes the kernel has.
    let next_req = 40;
    let ack_all = flags(req_end + next_req, Some(in_client(3000)), 0);
    assert_eq!(flow.on_client(ack_all, 1_012), ClientVerdict::Translate);
    assert_eq!(flow.stream_ends(), (in_client(3000), req_end));
    // A release at a sequence number the kernel has not reached is refused...
    assert_eq!(
        flow.on_release(req_end + 1, in_client(3000), true, 1_013),
        ReleaseVerdict::Busy
    );
    // ...and so is the right one while the kernel's response is not whole (its server
    // wrote a piece and pauses: every byte so far acknowledged)...
    assert_eq!(
        flow.on_release(req_end, in_client(3000), false, 1_013),
        ReleaseVerdict::Busy
    );
    assert_eq!(flow.state(), AgentState::Established);
    // ...the right one, once the client has everything, lets the connection go: the
    // kernel's connection is parked, open and silent.
    assert_eq!(
        flow.on_release(req_end, in_client(3000), true, 1_014),
        ReleaseVerdict::Parked
    );
    assert_eq!(flow.state(), AgentState::Parked);
    assert_eq!(
        flow.on_release(req_end, in_client(3000), true, 1_014),
        ReleaseVerdict::Parked,
        "asked again: the same answer"
    );
    assert_eq!(flow.on_client(ack_all, 1_015), ClientVerdict::Drop);
    // A late pure ACK from the kernel is nothing, nor a retransmission of what the
    // client has (a tail loss probe crossing the client's ACK); new bytes (or its FIN)
    // mean the kernel is ending the connection: reset it at its next expected byte,
    // quietly.
    assert_eq!(
        flow.on_kernel(kernel_data(3000, 0), 1_015),
        KernelVerdict::Drop
    );
    assert_eq!(
        flow.on_kernel(kernel_data(1448, 1552), 1_015),
        KernelVerdict::Drop
    );
    assert_eq!(flow.state(), AgentState::Parked);
    assert_eq!(
        flow.on_kernel(kernel_data(3000, 100), 1_015),
        KernelVerdict::ResetKernel
    );
    assert_eq!(flow.state(), AgentState::Closed);
    assert_eq!(flow.kernel_rst_seq(), Some(req_end));
    assert_eq!(
        flow.on_release(req_end, in_client(3000), true, 1_016),
        ReleaseVerdict::Released
    );
}

/// A flow that answered its request with `served` bytes and was parked once the client
/// had them all. Returns it with (the end of the first request, the client's view of
/// the kernel's next byte).
fn parked(served: usize) -> (AgentFlow, SeqNumber, SeqNumber) {
    use crate::handoff::agent::ReleaseVerdict;
    let (mut flow, _) = established();
    let req_end = SeqNumber(CLIENT_ISN + 1) + REQUEST.len();
    let data = flags(SeqNumber(KERNEL_ISN) + 1, Some(req_end), served);
    assert_eq!(flow.on_kernel(data, 1_010), KernelVerdict::Translate);
    let client_has = SeqNumber(SWITCH_ISN) + 1 + served;
    assert_eq!(
        flow.on_release(req_end, client_has, true, 1_011),
        ReleaseVerdict::Parked
    );
    (flow, req_end, client_has)
}

#[test]
fn a_parked_connection_resumes_where_the_client_stands() {
    let (mut flow, req_end, client_has) = parked(3000);
    // Meanwhile the client sent another backend a 40-byte request and received its
    // 5,000-byte answer. The switch brings the connection back with the next request:
    // its record starts the stream at the head, its ack is what the client has.
    let head_seq = req_end + 40;
    let ack = client_has + 5000;
    let rec = HandoffRecord {
        client_isn: head_seq - 1,
        ..client_record()
    };
    flow.resume(rec, ack, 2_000).unwrap();
    assert_eq!(flow.state(), AgentState::Established);
    assert_eq!(flow.stream_ends(), (ack, head_seq));
    // The head reaches the kernel right after the first request, acknowledging exactly
    // the 3,000 bytes the kernel sent.
    let head = build(
        CLIENT,
        VIP,
        head_seq.0,
        Some(ack.0),
        tcp_flags::PSH,
        CLIENT_WINDOW,
        &ts_option(CLIENT_TSVAL + 50, SWITCH_TSVAL + 40),
        b"GET /b HTTP/1.1\r\n\r\n",
    );
    assert_eq!(
        flow.on_client(seg_of(&head), 2_000),
        ClientVerdict::Translate
    );
    let to_kernel = translated(&head, flow.to_kernel().unwrap());
    let t = tcp_of(&to_kernel);
    assert_eq!(t.seq_number(), req_end);
    assert_eq!(t.ack_number(), SeqNumber(KERNEL_ISN) + 1 + 3000);
    // The kernel's answer continues the client's stream at its ack, and acknowledges
    // the head in the client's space.
    let head_end = head_seq + 19;
    let answer = build(
        VIP,
        CLIENT,
        KERNEL_ISN.wrapping_add(1 + 3000),
        Some((req_end + 19).0),
        0,
        500,
        &ts_option(KERNEL_TSVAL.wrapping_add(2_000), CLIENT_TSVAL + 50),
        &[7u8; 100],
    );
    assert_eq!(
        flow.on_kernel(seg_of(&answer), 2_001),
        KernelVerdict::Translate
    );
    let to_client = translated(&answer, flow.to_client().unwrap());
    let t = tcp_of(&to_client);
    assert_eq!(t.seq_number(), ack);
    assert_eq!(t.ack_number(), head_end);
    assert_eq!(flow.stream_ends(), (ack + 100, head_end));
    // And it can be parked again, and resumed again.
    use crate::handoff::agent::ReleaseVerdict;
    assert_eq!(
        flow.on_release(head_end, ack + 100, true, 2_002),
        ReleaseVerdict::Parked
    );
    let rec = HandoffRecord {
        client_isn: head_end + 7 - 1,
        ..client_record()
    };
    flow.resume(rec, ack + 100 + 9, 2_003).unwrap();
    let third = build(
        CLIENT,
        VIP,
        (head_end + 7).0,
        Some((ack + 109).0),
        0,
        CLIENT_WINDOW,
        &ts_option(CLIENT_TSVAL + 90, SWITCH_TSVAL + 80),
        b"x",
    );
    assert_eq!(
        flow.on_client(seg_of(&third), 2_003),
        ClientVerdict::Translate
    );
    let t_bytes = translated(&third, flow.to_kernel().unwrap());
    let t = tcp_of(&t_bytes);
    assert_eq!(t.seq_number(), req_end + 19);
    assert_eq!(t.ack_number(), SeqNumber(KERNEL_ISN) + 1 + 3100);
    // The connection then closes both ways, FINs in the moved spaces: the flow sees
    // both acknowledged (and may tell the switch).
    let client_fin = head_end + 7 + 1;
    let fin = SegFlags {
        fin: true,
        ..flags(client_fin, Some(ack + 109), 0)
    };
    assert_eq!(flow.on_client(fin, 2_004), ClientVerdict::Translate);
    let kernel_fin_seq = SeqNumber(KERNEL_ISN) + 1 + 3100;
    let kernel_fin = SegFlags {
        fin: true,
        // The kernel's ack of the client's FIN, in its own view of the client's space.
        ..flags(kernel_fin_seq, Some(req_end + 19 + 1 + 1), 0)
    };
    assert_eq!(flow.on_kernel(kernel_fin, 2_005), KernelVerdict::Translate);
    assert!(
        !flow.ended(),
        "the client has not acknowledged the kernel's FIN"
    );
    let last = flags(client_fin + 1, Some(ack + 109 + 1), 0);
    assert_eq!(flow.on_client(last, 2_006), ClientVerdict::Translate);
    assert!(flow.ended());
}

#[test]
fn a_parked_connection_refuses_what_does_not_continue_it() {
    let (mut flow, req_end, client_has) = parked(1000);
    let at = |c: SeqNumber| HandoffRecord {
        client_isn: c - 1,
        ..client_record()
    };
    // A head before what the kernel has, or an ack before what it sent: a stranger.
    assert!(flow.resume(at(req_end - 1), client_has, 2_000).is_err());
    assert!(flow.resume(at(req_end), client_has - 1, 2_000).is_err());
    assert!(flow
        .resume(at(req_end + (1 << 30)), client_has, 2_000)
        .is_err());
    assert_eq!(flow.state(), AgentState::Parked);
    // Nothing moves at all (a move back with nothing sent or received elsewhere).
    assert!(flow.resume(at(req_end), client_has, 2_000).is_ok());
    assert!(
        flow.resume(at(req_end), client_has, 2_000).is_err(),
        "not parked"
    );
}

#[test]
fn a_parked_connection_not_brought_back_expires() {
    use crate::handoff::agent::PARK_MS;
    let (flow, req_end, _) = parked(10);
    assert!(!flow.expired(1_011 + PARK_MS - 1));
    assert!(flow.expired(1_011 + PARK_MS));
    assert_eq!(flow.kernel_rst_seq(), Some(req_end));
}

#[test]
fn release_before_the_kernel_answered_is_busy() {
    use crate::handoff::agent::ReleaseVerdict;
    let handoff = handoff_segment(&client_record());
    let (mut flow, _syn) = start_from(&handoff, 1_000);
    assert_eq!(flow.on_client(seg_of(&handoff), 1_000), ClientVerdict::Hold);
    let req_end = SeqNumber(CLIENT_ISN + 1) + REQUEST.len();
    assert_eq!(
        flow.on_release(req_end, SeqNumber(SWITCH_ISN) + 1, true, 1_001),
        ReleaseVerdict::Busy
    );
}

#[test]
fn a_flow_prepared_at_syn_time_waits_for_its_request_then_expires() {
    use crate::handoff::agent::PREPARED_MS;
    // The prepare: the option on a bare ACK at the client's ISN + 1, no request.
    let rec = client_record();
    let mut opts = [0u8; 40];
    let n = options_with_handoff(Some((CLIENT_TSVAL, SWITCH_TSVAL)), &rec, &mut opts);
    let prepare = build(
        CLIENT,
        VIP,
        CLIENT_ISN + 1,
        Some(SWITCH_ISN + 1),
        0,
        CLIENT_WINDOW,
        &opts[..n],
        &[],
    );
    let (mut flow, _syn) = start_from(&prepare, 1_000);
    assert_eq!(flow.on_client(seg_of(&prepare), 1_000), ClientVerdict::Hold);
    let syn_ack = kernel_syn_ack(KERNEL_ISN, Some(KERNEL_WS));
    flow.on_kernel_syn_ack(&repr_of(&syn_ack), CLIENT_WINDOW, 1_001)
        .unwrap();
    assert!(flow.unused() && flow.holds_kernel_connection());
    assert!(!flow.expired(1_001 + PREPARED_MS - 1));
    assert!(flow.expired(1_001 + PREPARED_MS));
    assert_eq!(flow.kernel_rst_seq(), Some(SeqNumber(CLIENT_ISN + 1)));
    // The request comes (the head, same record but for the TSval the switch has shown
    // the client since: its ACK of the request). Kernel TSvals now continue from there,
    // or the client's PAWS check would drop the response.
    let later = HandoffRecord {
        switch_tsval: SWITCH_TSVAL + 44,
        ..rec
    };
    flow.take_head_record(&later);
    let answer = build(
        VIP,
        CLIENT,
        KERNEL_ISN.wrapping_add(1),
        Some(CLIENT_ISN + 1 + REQUEST.len() as u32),
        0,
        500,
        &ts_option(KERNEL_TSVAL.wrapping_add(3), CLIENT_TSVAL + 9),
        b"HTTP/1.1 200 OK\r\n\r\n",
    );
    let out = translated(&answer, flow.to_client().unwrap());
    assert_eq!(repr_of(&out).timestamps.unwrap().0, SWITCH_TSVAL + 44 + 3);
    let head = handoff_segment(&later);
    assert_eq!(
        flow.on_client(seg_of(&head), 1_500),
        ClientVerdict::Translate
    );
    // Once used, a record changes nothing.
    flow.take_head_record(&HandoffRecord {
        switch_tsval: SWITCH_TSVAL + 99,
        ..rec
    });
    let out = translated(&answer, flow.to_client().unwrap());
    assert_eq!(repr_of(&out).timestamps.unwrap().0, SWITCH_TSVAL + 44 + 3);
    assert!(!flow.unused() && !flow.holds_kernel_connection());
    assert!(!flow.expired(1_001 + PREPARED_MS));
}
