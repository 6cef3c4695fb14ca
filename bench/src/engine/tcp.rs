//! The harness's own TCP, shared by the client and server sides: one transmission
//! control block per connection, byte offsets in the stream instead of sequence numbers
//! (seq = ISS + 1 + offset), go-back-N retransmission on a timer, in-order receive only
//! (out-of-order segments are dropped and answered with a duplicate ACK), no options
//! beyond MSS. Both ends consume every byte at once, so the advertised window is fixed.
use std::net::Ipv4Addr;

use tcpstate::wire::{tcp_flags, MacAddr, SeqNumber, TcpRepr};

use super::net::Net;
use crate::report::Counters;

pub const MSS: usize = 1460;
pub const WINDOW: u16 = 65535;
/// Bytes in flight at most, whatever the peer's window says.
pub const MAX_INFLIGHT: u64 = 65535;
/// Retransmission timeouts in a row before a connection is given up.
pub const MAX_RETRIES: u32 = 8;
/// Ceiling of the doubled retransmission timeout.
pub const MAX_RTO_NS: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum St {
    SynSent,
    SynRcvd,
    Est,
}

/// What a connection sends: the bytes of the stream at an offset, up to `end`.
pub trait Source {
    fn end(&self) -> u64;
    fn fill(&self, off: u64, out: &mut [u8]);
}

/// A plain buffer whose first byte is at stream offset `base`.
pub struct BufSource<'a> {
    pub buf: &'a [u8],
    pub base: u64,
}

impl Source for BufSource<'_> {
    fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }
    fn fill(&self, off: u64, out: &mut [u8]) {
        let at = (off - self.base) as usize;
        out.copy_from_slice(&self.buf[at..at + out.len()]);
    }
}

#[derive(Debug, Clone)]
pub struct Tcb {
    pub st: St,
    pub lip: Ipv4Addr,
    pub lport: u16,
    pub rip: Ipv4Addr,
    pub rport: u16,
    pub rmac: MacAddr,
    pub iss: SeqNumber,
    pub rcv_nxt: SeqNumber,
    /// Stream offsets: oldest unacknowledged, next to send, highest sent. The FIN, when
    /// queued, sits at offset `Source::end()`.
    pub snd_una: u64,
    pub snd_nxt: u64,
    pub snd_max: u64,
    pub peer_wnd: u32,
    pub peer_mss: u16,
    pub fin_queued: bool,
    pub fin_rcvd: bool,
    /// When the retransmission timer fires (ns; 0 = not armed).
    pub rto_at: u64,
    pub rto: u64,
    pub retries: u32,
    /// Something arrived that must be acknowledged.
    pub ack_now: bool,
}

/// What an incoming segment's sequence space means for the receiver.
pub struct Delivery {
    /// Payload bytes to skip (already received) and to take.
    pub skip: usize,
    pub take: usize,
    /// The peer's FIN arrived in order just now.
    pub fin: bool,
}

impl Tcb {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        st: St,
        lip: Ipv4Addr,
        lport: u16,
        rip: Ipv4Addr,
        rport: u16,
        rmac: MacAddr,
        iss: u32,
        rto: u64,
    ) -> Tcb {
        Tcb {
            st,
            lip,
            lport,
            rip,
            rport,
            rmac,
            iss: SeqNumber(iss),
            rcv_nxt: SeqNumber(0),
            snd_una: 0,
            snd_nxt: 0,
            snd_max: 0,
            peer_wnd: u32::from(WINDOW),
            peer_mss: MSS as u16,
            fin_queued: false,
            fin_rcvd: false,
            rto_at: 0,
            rto,
            retries: 0,
            ack_now: false,
        }
    }

    #[inline]
    pub fn seq_of(&self, off: u64) -> SeqNumber {
        self.iss + 1 + (off as usize)
    }

    /// Processes an acknowledgment; true if it acknowledged new data (or the FIN).
    pub fn on_ack(&mut self, ack: SeqNumber, window: u16, now: u64, rto_init: u64) -> bool {
        self.peer_wnd = u32::from(window);
        let d = ack.wrapping_diff(self.seq_of(self.snd_una));
        if d <= 0 || self.snd_una + d as u64 > self.snd_max {
            return false;
        }
        self.snd_una += d as u64;
        if self.snd_nxt < self.snd_una {
            self.snd_nxt = self.snd_una;
        }
        self.retries = 0;
        self.rto = rto_init;
        self.rto_at = if self.snd_una < self.snd_max {
            now + self.rto
        } else {
            0
        };
        true
    }

    /// Takes what is new of a segment's payload (in order only) and its FIN.
    pub fn on_data(&mut self, seq: SeqNumber, len: usize, fin: bool, c: &mut Counters) -> Delivery {
        let nothing = Delivery {
            skip: 0,
            take: 0,
            fin: false,
        };
        if len == 0 && !fin {
            return nothing;
        }
        let off = self.rcv_nxt.wrapping_diff(seq);
        if off < 0 {
            // a gap before this segment: drop it, say where we are
            c.drop_out_of_order += 1;
            self.ack_now = true;
            return nothing;
        }
        let off = off as usize;
        if off > len || (off == len && (!fin || self.fin_rcvd)) {
            // a duplicate
            self.ack_now = true;
            return nothing;
        }
        let take = len - off;
        self.rcv_nxt += take;
        let fin_now = fin && !self.fin_rcvd;
        if fin_now {
            self.rcv_nxt += 1;
            self.fin_rcvd = true;
        }
        self.ack_now = true;
        Delivery {
            skip: off,
            take,
            fin: fin_now,
        }
    }

    /// Whether our FIN was sent and acknowledged (`end` = the stream's data end).
    #[inline]
    pub fn fin_acked(&self, end: u64) -> bool {
        self.fin_queued && self.snd_una > end
    }

    /// Whether everything written so far was acknowledged.
    #[inline]
    pub fn all_acked(&self, end: u64) -> bool {
        self.snd_una >= end
    }

    /// The retransmission timer fired: go back to the oldest unacknowledged byte.
    /// False when the connection should be given up.
    pub fn on_rto(&mut self, now: u64) -> bool {
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            return false;
        }
        self.rto = (self.rto * 2).min(MAX_RTO_NS);
        self.rto_at = now + self.rto;
        self.snd_nxt = self.snd_una;
        true
    }

    fn repr(&self, seq: SeqNumber, flags: u8, ack: bool, len: usize) -> TcpRepr {
        TcpRepr {
            src_port: self.lport,
            dst_port: self.rport,
            seq_number: seq,
            ack_number: ack.then_some(self.rcv_nxt),
            flags,
            window_len: WINDOW,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
            payload_len: len,
        }
    }

    /// Sends the SYN (client) or SYN-ACK (server).
    pub fn send_syn(&mut self, net: &mut Net, c: &mut Counters) {
        let mut r = self.repr(self.iss, tcp_flags::SYN, self.st == St::SynRcvd, 0);
        r.max_seg_size = Some(MSS as u16);
        net.send_tcp(self.rmac, self.lip, self.rip, &r, &[], c);
    }

    /// Sends a RST (with ACK) for the current state.
    pub fn send_rst(&self, net: &mut Net, c: &mut Counters) {
        let r = self.repr(self.seq_of(self.snd_nxt), tcp_flags::RST, true, 0);
        net.send_tcp(self.rmac, self.lip, self.rip, &r, &[], c);
    }

    /// Sends what the window allows of `src` (and the FIN when queued and reached),
    /// or a bare ACK when one is owed. Returns false when the tx stage was full and
    /// something is left to send.
    pub fn output<S: Source>(
        &mut self,
        src: &S,
        net: &mut Net,
        scratch: &mut [u8],
        now: u64,
        c: &mut Counters,
        server: bool,
    ) -> bool {
        if self.st != St::Est {
            return true;
        }
        let end = src.end();
        let mss = usize::from(self.peer_mss).min(MSS).min(scratch.len()) as u64;
        loop {
            let wnd_end = self.snd_una + u64::from(self.peer_wnd).min(MAX_INFLIGHT);
            let mut len = 0u64;
            if self.snd_nxt < end {
                len = mss
                    .min(end - self.snd_nxt)
                    .min(wnd_end.saturating_sub(self.snd_nxt));
            }
            let fin = self.fin_queued && self.snd_nxt + len == end;
            if len == 0 && !fin {
                break;
            }
            if net.room() == 0 {
                return false;
            }
            let n = len as usize;
            src.fill(self.snd_nxt, &mut scratch[..n]);
            let mut flags = 0;
            if fin {
                flags |= tcp_flags::FIN;
            }
            if n > 0 && self.snd_nxt + len == end {
                flags |= tcp_flags::PSH;
            }
            if self.snd_nxt < self.snd_max {
                if server {
                    c.server_retransmits += 1;
                } else {
                    c.client_retransmits += 1;
                }
            }
            let r = self.repr(self.seq_of(self.snd_nxt), flags, true, n);
            net.send_tcp(self.rmac, self.lip, self.rip, &r, &scratch[..n], c);
            self.snd_nxt += len + u64::from(fin);
            self.snd_max = self.snd_max.max(self.snd_nxt);
            self.ack_now = false;
            if self.rto_at == 0 {
                self.rto_at = now + self.rto;
            }
        }
        if self.ack_now {
            if net.room() == 0 {
                return false;
            }
            let r = self.repr(self.seq_of(self.snd_nxt), 0, true, 0);
            net.send_tcp(self.rmac, self.lip, self.rip, &r, &[], c);
            self.ack_now = false;
        }
        true
    }
}

/// A reply to a segment for which no connection exists, as a host without that
/// connection would give: an ACK for a FIN (a lost last ACK), else a RST; nothing for
/// a RST.
pub fn answer_stray(
    net: &mut Net,
    mac: MacAddr,
    lip: Ipv4Addr,
    rip: Ipv4Addr,
    seg: &TcpRepr,
    c: &mut Counters,
) {
    if seg.flags & tcp_flags::RST != 0 {
        return;
    }
    let fin = seg.flags & tcp_flags::FIN != 0;
    let (seq, flags) = match seg.ack_number {
        Some(a) => (a, if fin { 0 } else { tcp_flags::RST }),
        None => (SeqNumber(0), tcp_flags::RST),
    };
    let r = TcpRepr {
        src_port: seg.dst_port,
        dst_port: seg.src_port,
        seq_number: seq,
        ack_number: Some(seg.seq_number + seg.segment_len()),
        flags,
        window_len: if flags == 0 { WINDOW } else { 0 },
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        timestamps: None,
        payload_len: 0,
    };
    net.send_tcp(mac, lip, rip, &r, &[], c);
}
