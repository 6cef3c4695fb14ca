//! Frames out of what `tcpstate` decided: a received segment translated in place and sent
//! on (`forward`), segments the switch builds itself from a connection's buffers (its own
//! responses toward the client, a rewritten or held head toward the backend), cut to the
//! MSS, and bare segments (SYN-ACKs, RSTs, probes). Also the parsing of a received TCP
//! frame into `Rx`, and its trimming when presplice keeps only part of it.
use std::net::Ipv4Addr;

use dpdk_env::Mbuf;
use tcpstate::conn::{Data, SegmentInfo, SegmentOut};
use tcpstate::flow::{ConnId, FlowKey, Side};
use tcpstate::segment::{mss_chunks, Chunk};
use tcpstate::wire::{
    ethertype, ip_proto, tcp_flags, EthernetFrame, Ipv4Packet, Ipv4Repr, MacAddr, TcpPacket,
    TcpRepr,
};

use super::super::Worker;
use super::{Rx, ETH, IP};
use crate::stats::{Counter, DropReason};

impl Worker {
    /// Translates the received segment in place and stages it toward the other side.
    pub(super) fn forward(&mut self, id: ConnId, from: Side, mut m: Mbuf, rx: &Rx) {
        let Some(conn) = self.tcp.flows.get(id) else {
            return;
        };
        let meta = &self.tcp.meta[id as usize];
        let (t, out_port, dst_mac) = match from {
            Side::Client => (conn.c2b, meta.backend_port, meta.backend_mac),
            Side::Backend => (conn.b2c, meta.client_port, meta.client_mac),
        };
        let end = ETH + rx.ip_total;
        if m.len() > end {
            m.set_len(end);
        }
        let limit = match from {
            Side::Backend => self.receive_limit(id),
            Side::Client => None,
        };
        if tcpstate::splice::translate_limited(&mut m[ETH..end], &t, limit.as_ref()).is_err() {
            self.stats().drop(DropReason::BadTcp, 1);
            return;
        }
        let mut eth = EthernetFrame::new_unchecked(&mut m[..]);
        eth.set_src_addr(self.shared.addrs[out_port].mac);
        eth.set_dst_addr(dst_mac);
        let payload = rx.seg.payload_len as u64;
        match from {
            Side::Client => {
                self.stats().add(Counter::SplicedPacketsC2b, 1);
                self.stats().add(Counter::SplicedBytesC2b, payload);
            }
            Side::Backend => {
                self.stats().add(Counter::SplicedPacketsB2c, 1);
                self.stats().add(Counter::SplicedBytesB2c, payload);
            }
        }
        self.stage(out_port, m);
    }

    /// Sends what `s` stands for to the client: a bare segment, or the switch's own
    /// response from the connection's buffer cut to the MSS.
    pub(super) fn send_to_client(&mut self, id: ConnId, s: &SegmentOut, _now_ms: u64) {
        let Some(conn) = self.tcp.flows.get(id) else {
            return;
        };
        let meta = self.tcp.meta[id as usize];
        let key = conn.client;
        let frame = FrameSpec {
            src_mac: self.shared.addrs[meta.client_port].mac,
            dst_mac: meta.client_mac,
            src: (key.local_ip, key.local_port),
            dst: (key.remote_ip, key.remote_port),
        };
        let (offset, len) = match s.data {
            Data::None => (0, 0),
            Data::Response { offset, len } => (offset, len),
            // Heads go to backends only.
            Data::Head { .. } => return,
        };
        if len == 0 {
            self.emit_segment(meta.client_port, &frame, s, &[]);
            return;
        }
        // The switch's own response, cut to the client's MSS; PSH and FIN on the last.
        let mss = usize::from(conn.syn.mss.min(self.tcp.params.mss)).clamp(536, MAX_SEGMENT)
            - options_len(s);
        // A scratch buffer kept by the core (not a 9 KB array zeroed per call).
        let mut buf = std::mem::take(&mut self.tcp.seg_scratch);
        buf.resize(MAX_SEGMENT, 0);
        for c in pieces(len, mss) {
            let (off, n) = (c.offset, c.len);
            {
                let src = self
                    .tcp
                    .flows
                    .get(id)
                    .and_then(|c| c.response_bytes().get(offset + off..offset + off + n));
                let Some(src) = src else {
                    break;
                };
                buf[..n].copy_from_slice(src);
            }
            self.emit_segment(meta.client_port, &frame, &piece(s, c), &buf[..n]);
        }
        self.tcp.seg_scratch = buf;
    }

    /// Sends what `s` stands for to the backend: a bare segment, or the held (perhaps
    /// rewritten) head and the client bytes behind it, cut to the MSS.
    pub(super) fn send_to_backend(&mut self, id: ConnId, s: &SegmentOut) {
        let Some(conn) = self.tcp.flows.get(id) else {
            return;
        };
        let Some(target) = conn.backend else { return };
        if target.key.local_port == 0 {
            return; // still resolving the backend's MAC
        }
        let meta = self.tcp.meta[id as usize];
        let frame = FrameSpec {
            src_mac: self.shared.addrs[meta.backend_port].mac,
            dst_mac: meta.backend_mac,
            src: (target.key.local_ip, target.key.local_port),
            dst: (target.key.remote_ip, target.key.remote_port),
        };
        let mss = usize::from(conn.syn.mss.min(conn.backend_mss)).clamp(536, MAX_SEGMENT)
            - options_len(s);
        match s.data {
            // A FIN alone after the head (the backend's window had no room for it before).
            Data::Head { len: 0, .. } => self.emit_segment(meta.backend_port, &frame, s, &[]),
            Data::Head { offset, len } => {
                // What the backend gets from the buffer (a rewritten head, then the
                // client's bytes), cut to the MSS; PSH (and a FIN) on the last segment.
                let mut buf = std::mem::take(&mut self.tcp.seg_scratch);
                buf.resize(MAX_SEGMENT, 0);
                for c in pieces(len, mss) {
                    let (off, n) = (c.offset, c.len);
                    let copied = self.tcp.flows.get(id).is_some_and(|conn| {
                        let (a, b) = conn.backend_stream();
                        copy_from_two(a, b, offset + off, &mut buf[..n])
                    });
                    if !copied {
                        break;
                    }
                    self.emit_segment(meta.backend_port, &frame, &piece(s, c), &buf[..n]);
                }
                self.tcp.seg_scratch = buf;
            }
            Data::Response { .. } | Data::None => {
                self.emit_segment(meta.backend_port, &frame, s, &[])
            }
        }
    }

    /// Builds Ethernet + IPv4 + TCP (+ data) in a fresh mbuf and stages it on port `p`.
    pub(super) fn emit_segment(&mut self, p: usize, f: &FrameSpec, s: &SegmentOut, data: &[u8]) {
        let syn = s.syn_options;
        let repr = TcpRepr {
            src_port: f.src.1,
            dst_port: f.dst.1,
            seq_number: s.seq,
            ack_number: s.ack,
            flags: s.flags,
            window_len: s.window,
            max_seg_size: syn.map(|o| o.mss),
            window_scale: syn.and_then(|o| o.window_scale),
            sack_permitted: syn.is_some_and(|o| o.sack_permitted),
            timestamps: s.timestamps,
            payload_len: data.len(),
        };
        let tcp_len = repr.buffer_len();
        let total = ETH + IP + tcp_len;
        let Some(mut m) = Mbuf::alloc(&self.shared.pool) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return;
        };
        let Some(buf) = m.append(total.max(60)) else {
            self.stats().drop(DropReason::NoMbuf, 1);
            return;
        };
        buf.fill(0);
        {
            let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
            eth.set_dst_addr(f.dst_mac);
            eth.set_src_addr(f.src_mac);
            eth.set_ethertype(ethertype::IPV4);
        }
        let ip = Ipv4Repr {
            src: f.src.0,
            dst: f.dst.0,
            protocol: ip_proto::TCP,
            payload_len: tcp_len,
            ttl: crate::l2l3::TTL,
        };
        ip.emit(&mut Ipv4Packet::new_unchecked(
            &mut buf[ETH..ETH + IP + tcp_len],
        ));
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut buf[ETH + IP..ETH + IP + tcp_len]),
            f.src.0,
            f.dst.0,
            data,
        );
        if total < 60 {
            m.set_len(total.max(60));
        }
        self.stats().add(Counter::TcpSegmentsSent, 1);
        self.stage(p, m);
    }

    /// Where an answer to received segment `rx` (on port `p`) goes: back to its sender.
    pub(super) fn answer_frame(&self, p: usize, rx: &Rx) -> FrameSpec {
        FrameSpec {
            src_mac: self.shared.addrs[p].mac,
            dst_mac: rx.src_mac,
            src: (rx.dst, rx.dport),
            dst: (rx.src, rx.sport),
        }
    }

    /// Sends a segment on a tuple that has no connection (health probes).
    pub(in crate::worker) fn send_raw_segment(
        &mut self,
        p: usize,
        dst_mac: MacAddr,
        key: FlowKey,
        s: &SegmentOut,
    ) {
        self.send_raw_segment_with(p, dst_mac, key, s, &[]);
    }

    /// As `send_raw_segment`, with data.
    pub(in crate::worker) fn send_raw_segment_with(
        &mut self,
        p: usize,
        dst_mac: MacAddr,
        key: FlowKey,
        s: &SegmentOut,
        data: &[u8],
    ) {
        let frame = FrameSpec {
            src_mac: self.shared.addrs[p].mac,
            dst_mac,
            src: (key.local_ip, key.local_port),
            dst: (key.remote_ip, key.remote_port),
        };
        self.emit_segment(p, &frame, s, data);
    }
}

/// Largest segment the switch builds itself (jumbo frames included).
pub(super) const MAX_SEGMENT: usize = 9000;

/// Bytes of TCP options on a data segment the switch builds: the MSS counts payload
/// only, so the options come out of it (RFC 6691), or the packet outgrows the MTU.
fn options_len(s: &SegmentOut) -> usize {
    if s.timestamps.is_some() {
        12 // NOP, NOP, TSval, TSecr
    } else {
        0
    }
}

/// `len` bytes cut into pieces of at most `mss` (`tcpstate::segment::mss_chunks`), `fin`
/// marking the last one.
fn pieces(len: usize, mss: usize) -> impl Iterator<Item = Chunk> {
    mss_chunks(
        Chunk {
            offset: 0,
            len,
            fin: true,
        },
        mss,
    )
}

/// The segment that carries piece `c` (from `pieces`) of what `s` stands for: PSH and
/// FIN stay on the last piece only.
fn piece(s: &SegmentOut, c: Chunk) -> SegmentOut {
    let mut seg = *s;
    seg.seq = s.seq + c.offset;
    if !c.fin {
        seg.flags &= !(tcp_flags::PSH | tcp_flags::FIN);
    }
    seg
}

/// Copies `out.len()` bytes starting `at` bytes into `a` followed by `b`; false if
/// they do not hold that many.
fn copy_from_two(a: &[u8], b: &[u8], at: usize, out: &mut [u8]) -> bool {
    let n = out.len();
    if at + n > a.len() + b.len() {
        return false;
    }
    let mut done = 0;
    if at < a.len() {
        let k = (a.len() - at).min(n);
        out[..k].copy_from_slice(&a[at..at + k]);
        done = k;
    }
    if done < n {
        let from = at + done - a.len();
        out[done..].copy_from_slice(&b[from..from + (n - done)]);
    }
    true
}

/// The addresses of a segment the switch builds: Ethernet source and destination, IP and
/// TCP source and destination.
pub(super) struct FrameSpec {
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
}

/// Parses the TCP segment of a frame l2l3 already validated (Ethernet, IPv4 with a good
/// header checksum, no options, not a fragment, TCP). The TCP checksum is *not*
/// verified here: the caller decides whether the switch acts on the segment's contents
/// (then [`tcp_checksum_ok`]) or only carries it (see `Worker::handle_owned_tcp`).
pub(super) fn parse_tcp(m: &[u8]) -> Option<Rx> {
    // Only frames `l2l3::process_frame` classified as TCP get here (directly or through a
    // steering ring), so the Ethernet and IPv4 headers were already checked: read them
    // without checking again.
    let eth = EthernetFrame::new_unchecked(m);
    let src_mac = eth.src_addr();
    let ip = Ipv4Packet::new_unchecked(&m[ETH..]);
    let (src, dst, ip_total) = (ip.src_addr(), ip.dst_addr(), usize::from(ip.total_len()));
    let tcp = TcpPacket::new_checked(&m[ETH + IP..ETH + ip_total]).ok()?;
    let repr = TcpRepr::parse(&tcp, src, dst, false).ok()?;
    Some(Rx {
        src,
        dst,
        src_mac,
        ip_total,
        tcp_hdr: usize::from(tcp.header_len()),
        sport: repr.src_port,
        dport: repr.dst_port,
        seg: SegmentInfo {
            seq: repr.seq_number,
            ack: repr.ack_number,
            flags: repr.flags,
            window: repr.window_len,
            timestamps: repr.timestamps,
            payload_len: repr.payload_len,
            mss: repr.max_seg_size,
            window_scale: repr.window_scale,
            sack_permitted: repr.sack_permitted,
            checked: false,
        },
    })
}

/// Whether the TCP checksum of the segment in `m` (parsed into `rx`) is right.
pub(super) fn tcp_checksum_ok(m: &[u8], rx: &Rx) -> bool {
    TcpPacket::new_unchecked(&m[ETH + IP..ETH + rx.ip_total]).verify_checksum(rx.src, rx.dst)
}

/// Cuts a received segment's payload to its first `keep` bytes and clears its FIN (the
/// rest belongs to a later request, see `presplice`): lengths and checksums are set
/// anew. Returns the segment as it now is.
pub(super) fn trim_payload(m: &mut Mbuf, rx: &Rx, keep: usize) -> Rx {
    let keep = keep.min(rx.seg.payload_len);
    let ip_total = IP + rx.tcp_hdr + keep;
    {
        let frame = &mut m[ETH..ETH + rx.ip_total];
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[..]);
        ip.set_total_len(ip_total as u16);
        ip.fill_checksum();
        let mut tcp = TcpPacket::new_unchecked(&mut frame[IP..ip_total]);
        tcp.set_fin(false);
        tcp.fill_checksum(rx.src, rx.dst);
    }
    m.set_len(ETH + ip_total);
    let mut out = *rx;
    out.ip_total = ip_total;
    out.seg.payload_len = keep;
    out.seg.flags &= !tcp_flags::FIN;
    out
}
