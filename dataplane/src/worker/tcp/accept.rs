//! A client's first segments: a SYN is answered by a cookie SYN-ACK and no state is kept;
//! the ACK that completes the handshake is checked against its cookie and only then gets a
//! flow-table entry and a head buffer (from the core's pool, lent until the head is routed).
//! Segments no connection accepts get a RST.
use dpdk_env::Mbuf;

use tcpstate::conn::{Conn, Data, SegmentOut};
use tcpstate::flow::{FlowKey, Side};
use tcpstate::reasm::HeadBuffer;
use tcpstate::syncookie::SynOptions;
use tcpstate::wire::{tcp_flags, SeqNumber};

use super::super::Worker;
use super::{Meta, RequestLine, Rx};
use crate::stats::{Counter, DropReason};

impl Worker {
    pub(super) fn on_new_client_segment(
        &mut self,
        p: usize,
        vip: usize,
        key: FlowKey,
        m: Mbuf,
        rx: &Rx,
        now_ms: u64,
    ) {
        let seg = rx.seg;
        if seg.rst() {
            self.stats().drop(DropReason::TcpNoFlow, 1);
            return;
        }
        let served = self.shared.addrs[p].vips[vip].1.contains(&rx.dport);
        if !served {
            self.stats().drop(DropReason::TcpClosedPort, 1);
            self.send_rst_for(p, rx, m);
            return;
        }
        if seg.syn() && seg.ack.is_none() {
            self.send_syn_ack(p, rx, m, now_ms);
            return;
        }
        let Some(ack) = seg.ack else {
            self.stats().drop(DropReason::TcpNoFlow, 1);
            return;
        };
        if seg.syn() {
            self.stats().drop(DropReason::TcpNoFlow, 1);
            self.send_rst_for(p, rx, m);
            return;
        }
        let opts = match self.tcp.cookies.check(
            rx.src,
            rx.sport,
            rx.dst,
            rx.dport,
            seg.seq,
            ack,
            seg.timestamps.map(|t| t.1),
            now_ms,
        ) {
            Ok(o) => o,
            Err(_) => {
                self.stats().drop(DropReason::BadCookie, 1);
                self.send_rst_for(p, rx, m);
                return;
            }
        };
        // A full table recycles the entry that has lingered longest (closed, kept only
        // for late segments), as TIME_WAIT is recycled; only a table full of open
        // connections refuses. Checked before a head buffer is taken.
        if self.tcp.flows.is_full() && !self.recycle_lingering() {
            self.stats().drop(DropReason::FlowTableFull, 1);
            self.send_rst_for(p, rx, m);
            return;
        }
        let Some(head) = self.take_head_buffer() else {
            self.stats().drop(DropReason::HeadBuffersExhausted, 1);
            self.send_rst_for(p, rx, m);
            return;
        };
        // Counted here, once the connection is sure to exist, and uncounted exactly once:
        // when it closes (`remove_conn` or `mark_closed`, whichever comes first).
        if !self.shared.client_conns.try_open(rx.src) {
            self.tcp.heads.push(head);
            self.stats().drop(DropReason::ClientConnCap, 1);
            self.send_rst_for(p, rx, m);
            return;
        }
        let conn = Conn::accept(key, opts, seg.seq, ack, &seg, head, self.tcp.params, now_ms);
        let id = match self.tcp.flows.try_insert(key, conn) {
            Ok(id) => id,
            Err((_, mut conn)) => {
                self.shared.client_conns.close(rx.src);
                // The head buffer goes back to the pool: dropped, it would be lost to the
                // pool for good (`heads_allocated` never goes down).
                if let Some(h) = conn.head.take() {
                    self.tcp.heads.push(h);
                }
                self.stats().drop(DropReason::FlowTableFull, 1);
                self.send_rst_for(p, rx, m);
                return;
            }
        };
        let per_request_vip = self.shared.addrs[p]
            .per_request
            .get(vip)
            .copied()
            .unwrap_or(false);
        self.tcp.request_lines[id as usize] = RequestLine::EMPTY;
        self.tcp.meta[id as usize] = Meta {
            client_mac: rx.src_mac,
            client_port: p,
            accept_us: self.now_us(),
            sticky: !per_request_vip,
            ..Meta::default()
        };
        self.stats().add(Counter::ConnsAccepted, 1);
        tracing::trace!(worker = self.index, client = %rx.src, port = rx.sport, seq = seg.seq.0, len = seg.payload_len, flags = seg.flags, "accepted by cookie");
        self.on_flow_segment(id, Side::Client, p, m, rx, now_ms);
    }

    /// Removes the connection that has lingered longest, for a new one; false if none.
    fn recycle_lingering(&mut self) -> bool {
        let Some(old) = self.tcp.flows.oldest_lingering() else {
            return false;
        };
        self.remove_conn(old);
        self.stats().add(Counter::LingerRecycled, 1);
        true
    }

    pub(super) fn take_head_buffer(&mut self) -> Option<HeadBuffer> {
        if let Some(h) = self.tcp.heads.pop() {
            return Some(h);
        }
        if self.tcp.heads_allocated < self.tcp.max_heads {
            self.tcp.heads_allocated += 1;
            return Some(HeadBuffer::new(self.tcp.head_capacity));
        }
        None
    }

    /// Answers a SYN with a cookie SYN-ACK: no state is kept.
    fn send_syn_ack(&mut self, p: usize, rx: &Rx, m: Mbuf, now_ms: u64) {
        self.stats().add(Counter::SynReceived, 1);
        let seg = rx.seg;
        let client_opts = SynOptions {
            mss: seg.mss.unwrap_or(536),
            window_scale: seg.window_scale,
            sack_permitted: seg.sack_permitted,
            timestamps: seg.timestamps.is_some(),
        };
        let cookie = self.tcp.cookies.make(
            rx.src,
            rx.sport,
            rx.dst,
            rx.dport,
            seg.seq,
            &client_opts,
            now_ms,
        );
        // Without timestamps the cookie has nowhere to keep window scale and SACK-permitted,
        // so (as Linux does) they are not offered: both ends then agree there are none.
        let ts = seg.timestamps.is_some();
        let ours = SynOptions {
            mss: self.tcp.params.mss,
            window_scale: seg
                .window_scale
                .filter(|_| ts)
                .map(|_| self.tcp.params.window_scale),
            sack_permitted: seg.sack_permitted && ts,
            timestamps: ts,
        };
        let out = SegmentOut {
            seq: cookie.isn,
            ack: Some(seg.seq + 1),
            flags: tcp_flags::SYN,
            window: 65535,
            timestamps: match (cookie.tsval, seg.timestamps) {
                (Some(tsval), Some((their, _))) => Some((tsval, their)),
                _ => None,
            },
            syn_options: Some(ours),
            data: Data::None,
        };
        let frame = self.answer_frame(p, rx);
        drop(m);
        self.emit_segment(p, &frame, &out, &[]);
        self.stats().add(Counter::SynCookiesSent, 1);
        self.preallocate(rx, cookie.isn, cookie.tsval, &ours, now_ms);
    }

    /// RST in answer to a segment no connection accepts (RFC 9293 3.10.7.1).
    pub(super) fn send_rst_for(&mut self, p: usize, rx: &Rx, m: Mbuf) {
        let seg = rx.seg;
        if seg.rst() {
            return;
        }
        let out = match seg.ack {
            Some(ack) => SegmentOut::rst(ack),
            None => {
                let len = seg.payload_len + usize::from(seg.syn()) + usize::from(seg.fin());
                SegmentOut {
                    seq: SeqNumber(0),
                    ack: Some(seg.seq + len),
                    flags: tcp_flags::RST,
                    window: 0,
                    timestamps: None,
                    syn_options: None,
                    data: Data::None,
                }
            }
        };
        tracing::debug!(
            worker = self.index,
            from = %rx.src,
            from_port = rx.sport,
            to = %rx.dst,
            to_port = rx.dport,
            seq = seg.seq.0,
            ack = ?seg.ack.map(|a| a.0),
            len = seg.payload_len,
            "a segment of no flow: reset"
        );
        let frame = self.answer_frame(p, rx);
        drop(m);
        self.emit_segment(p, &frame, &out, &[]);
        self.stats().add(Counter::RstSent, 1);
    }
}
