//! A warm backend connection: one the switch opens to a backend ahead of time (or keeps
//! after a presplice round) so that a request can be spliced onto it without a backend
//! handshake on its path (paper 000's pre-splicing).
//!
//! While no client is attached, the switch itself is the connection's client: it
//! completes the handshake, acks whatever the backend sends again, and lets go (with a
//! RST) of one the backend closes or resets, so the pool replaces it. Attached, the
//! connection is part of a client's `Conn` (see `Conn::attach` and `Conn::detach`);
//! this type only covers the time in the pool. No I/O: events in, segments out.
use crate::conn::{BackendSide, BackendTarget, Data, SegmentInfo, SegmentOut};
use crate::syncookie::SynOptions;
use crate::wire::{tcp_flags, SeqNumber};

/// SYN retransmission timeout and attempts before giving up on opening.
pub const SYN_RTO_MS: u64 = 500;
pub const SYN_ATTEMPTS: u32 = 3;
/// How long a connection may sit unused in the pool before the switch lets it go (and
/// opens a fresh one): a backend or a middlebox may have forgotten it without a word.
pub const IDLE_MAX_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmState {
    /// Our SYN is out.
    Connecting,
    /// Established, in the pool.
    Idle,
}

/// What the caller must do after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmEvent {
    Nothing,
    /// Send this segment to the backend.
    Send(SegmentOut),
    /// Forget the connection, after sending this (a RST) if given.
    Closed(Option<SegmentOut>),
}

/// A backend connection in the warm pool.
#[derive(Debug, Clone, Copy)]
pub struct WarmConn {
    pub target: BackendTarget,
    pub state: WarmState,
    isn: SeqNumber,
    /// What we announced in our SYN.
    pub mss: u16,
    window_scale: u8,
    /// The connection's state once established.
    side: BackendSide,
    deadline_ms: u64,
    attempts: u32,
}

/// A SYN-ACK's window is never scaled (RFC 7323 2.2), but `BackendSide::window` is a
/// field the backend's scale applies to (as on every later segment): the SYN-ACK's
/// window re-expressed at that scale, rounded down so the switch never counts on more
/// room than the backend announced (a window that was open stays open).
fn syn_ack_window_field(window: u16, backend_ws: u8) -> u16 {
    let field = window >> backend_ws.min(14);
    if field == 0 && window > 0 {
        1
    } else {
        field
    }
}

impl WarmConn {
    /// Opens a connection: our SYN with `isn`, announcing `mss`, window scale
    /// `window_scale`, SACK and timestamps (TSval `ts_clock`, the switch's backend clock).
    pub fn open(
        target: BackendTarget,
        isn: SeqNumber,
        mss: u16,
        window_scale: u8,
        ts_clock: u32,
        now_ms: u64,
    ) -> (WarmConn, SegmentOut) {
        let w = WarmConn {
            target,
            state: WarmState::Connecting,
            isn,
            mss,
            window_scale,
            side: BackendSide {
                next_to_backend: isn + 1,
                next_from_backend: SeqNumber(0),
                ts_recent: None,
                ts_last_sent: ts_clock,
                window_scales: None,
                mss: 536,
                window: 0,
            },
            deadline_ms: now_ms + SYN_RTO_MS,
            attempts: 1,
        };
        let syn = w.syn(ts_clock);
        (w, syn)
    }

    /// A connection a client just gave back (see `Conn::detach`).
    pub fn from_detached(
        target: BackendTarget,
        side: BackendSide,
        mss: u16,
        now_ms: u64,
    ) -> WarmConn {
        WarmConn {
            target,
            state: WarmState::Idle,
            isn: side.next_to_backend - 1,
            mss,
            window_scale: side.window_scales.map_or(0, |w| w.0),
            side,
            deadline_ms: now_ms + IDLE_MAX_MS,
            attempts: 0,
        }
    }

    fn syn(&self, ts_clock: u32) -> SegmentOut {
        SegmentOut {
            seq: self.isn,
            ack: None,
            flags: tcp_flags::SYN,
            window: 65535,
            timestamps: Some((ts_clock, 0)),
            syn_options: Some(SynOptions {
                mss: self.mss,
                window_scale: Some(self.window_scale),
                sack_permitted: true,
                timestamps: true,
            }),
            data: Data::None,
        }
    }

    /// A TSval for the backend: the clock, never below what it saw last (PAWS).
    fn tsval(&mut self, ts_clock: u32) -> u32 {
        let last = self.side.ts_last_sent;
        let t = if last.wrapping_sub(ts_clock) as i32 >= 0 {
            last
        } else {
            ts_clock
        };
        self.side.ts_last_sent = t;
        t
    }

    /// Our pure ACK of everything the backend sent.
    pub fn ack(&mut self, ts_clock: u32) -> SegmentOut {
        let tsval = self.tsval(ts_clock);
        SegmentOut {
            seq: self.side.next_to_backend,
            ack: Some(self.side.next_from_backend),
            flags: 0,
            window: (65535u32 >> self.side.window_scales.map_or(0, |w| w.0)).max(1) as u16,
            timestamps: self.side.ts_recent.map(|r| (tsval, r)),
            syn_options: None,
            data: Data::None,
        }
    }

    fn rst(&self) -> SegmentOut {
        SegmentOut::rst(self.side.next_to_backend)
    }

    /// The connection as `Conn::attach` needs it, if it is established.
    pub fn side(&self) -> Option<BackendSide> {
        (self.state == WarmState::Idle).then_some(self.side)
    }

    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// A segment from the backend.
    pub fn on_segment(&mut self, seg: &SegmentInfo, ts_clock: u32, now_ms: u64) -> WarmEvent {
        if seg.rst() {
            return WarmEvent::Closed(None);
        }
        match self.state {
            WarmState::Connecting => {
                if !seg.syn() || seg.ack != Some(self.isn + 1) {
                    return WarmEvent::Nothing;
                }
                let window_scales = seg.window_scale.map(|b| (self.window_scale, b));
                self.side = BackendSide {
                    next_to_backend: self.isn + 1,
                    next_from_backend: seg.seq + 1,
                    ts_recent: seg.timestamps.map(|t| t.0),
                    ts_last_sent: self.side.ts_last_sent,
                    window_scales,
                    mss: seg.mss.unwrap_or(536),
                    window: syn_ack_window_field(seg.window, window_scales.map_or(0, |w| w.1)),
                };
                self.state = WarmState::Idle;
                self.deadline_ms = now_ms + IDLE_MAX_MS;
                WarmEvent::Send(self.ack(ts_clock))
            }
            WarmState::Idle => {
                if seg.syn() {
                    // Our ACK of its SYN-ACK was lost: ack again.
                    return WarmEvent::Send(self.ack(ts_clock));
                }
                let end = seg.seq + seg.payload_len;
                if seg.fin() || end.wrapping_diff(self.side.next_from_backend) > 0 {
                    // Closing, or data no client asked for: this one cannot be used.
                    return WarmEvent::Closed(Some(self.rst()));
                }
                if let Some((tsval, _)) = seg.timestamps {
                    if tsval.wrapping_sub(self.side.ts_recent.unwrap_or(tsval)) as i32 >= 0 {
                        self.side.ts_recent = Some(tsval);
                    }
                }
                if seg.ack.is_some() {
                    self.side.window = seg.window;
                }
                if seg.payload_len > 0 {
                    // A retransmission of bytes a client already acked: ack them again.
                    return WarmEvent::Send(self.ack(ts_clock));
                }
                WarmEvent::Nothing
            }
        }
    }

    /// The deadline passed: retransmit the SYN or give up; or, idle too long, let go.
    pub fn on_timer(&mut self, now_ms: u64, ts_clock: u32) -> WarmEvent {
        if now_ms < self.deadline_ms {
            return WarmEvent::Nothing;
        }
        if self.state == WarmState::Idle {
            return WarmEvent::Closed(Some(self.rst()));
        }
        if self.attempts >= SYN_ATTEMPTS {
            return WarmEvent::Closed(None);
        }
        self.attempts += 1;
        self.deadline_ms = now_ms + (SYN_RTO_MS << self.attempts.min(4));
        WarmEvent::Send(self.syn(ts_clock))
    }

    /// Closing it from our side (too many idle, backend down, shutdown): the RST to send.
    pub fn close(&self) -> SegmentOut {
        self.rst()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowKey;
    use std::net::Ipv4Addr;

    fn target() -> BackendTarget {
        BackendTarget {
            id: 1,
            key: FlowKey {
                remote_ip: Ipv4Addr::new(10, 1, 0, 7),
                remote_port: 80,
                local_ip: Ipv4Addr::new(10, 1, 0, 1),
                local_port: 40_000,
            },
        }
    }

    fn seg(seq: u32, ack: u32, flags: u8, len: usize) -> SegmentInfo {
        SegmentInfo {
            seq: SeqNumber(seq),
            ack: Some(SeqNumber(ack)),
            flags,
            window: 500,
            timestamps: Some((777, 100)),
            payload_len: len,
            mss: None,
            window_scale: None,
            sack_permitted: false,
            checked: true,
        }
    }

    #[test]
    fn opens_idles_and_lets_go_of_a_closing_backend() {
        let (mut w, syn) = WarmConn::open(target(), SeqNumber(1000), 1460, 7, 100, 0);
        assert_eq!((syn.seq, syn.flags), (SeqNumber(1000), tcp_flags::SYN));
        assert_eq!(w.side(), None);
        // The SYN is retransmitted, then given up.
        assert!(
            matches!(w.on_timer(SYN_RTO_MS, 101), WarmEvent::Send(s) if s.flags == tcp_flags::SYN)
        );
        let synack = SegmentInfo {
            mss: Some(1400),
            window_scale: Some(9),
            ..seg(5000, 1001, tcp_flags::SYN, 0)
        };
        let WarmEvent::Send(ack) = w.on_segment(&synack, 102, 0) else {
            panic!("an ACK")
        };
        assert_eq!((ack.seq, ack.ack), (SeqNumber(1001), Some(SeqNumber(5001))));
        assert_eq!(ack.timestamps, Some((102, 777)));
        let side = w.side().expect("idle");
        assert_eq!(side.next_to_backend, SeqNumber(1001));
        assert_eq!(side.next_from_backend, SeqNumber(5001));
        assert_eq!((side.window_scales, side.mss), (Some((7, 9)), 1400));
        // A retransmitted old byte is acked again; a FIN ends it with a RST.
        assert!(matches!(
            w.on_segment(&seg(5000, 1001, 0, 1), 103, 0),
            WarmEvent::Send(_)
        ));
        assert_eq!(
            w.on_segment(&seg(5001, 1001, 0, 0), 104, 0),
            WarmEvent::Nothing
        );
        let WarmEvent::Closed(Some(rst)) =
            w.on_segment(&seg(5001, 1001, tcp_flags::FIN, 0), 105, 0)
        else {
            panic!("closed with a RST")
        };
        assert_eq!((rst.seq, rst.flags), (SeqNumber(1001), tcp_flags::RST));
    }

    #[test]
    fn the_syn_acks_window_is_not_scaled() {
        // The SYN-ACK announces 29,200 bytes and a scale of 7 for later segments: the
        // warm connection must not count on 29,200 << 7 (3.7 MB) when a head goes out.
        let (mut w, _) = WarmConn::open(target(), SeqNumber(1000), 1460, 7, 100, 0);
        let synack = SegmentInfo {
            window: 29_200,
            window_scale: Some(7),
            ..seg(5000, 1001, tcp_flags::SYN, 0)
        };
        assert!(matches!(w.on_segment(&synack, 101, 0), WarmEvent::Send(_)));
        let side = w.side().expect("idle");
        let bytes = u32::from(side.window) << side.window_scales.expect("scaling").1;
        assert!(bytes <= 29_200 && bytes > 29_200 - 128, "{bytes}");
        // Without scaling the field is the window itself; a tiny open window stays open.
        assert_eq!(syn_ack_window_field(500, 0), 500);
        assert_eq!(syn_ack_window_field(100, 7), 1);
        assert_eq!(syn_ack_window_field(0, 7), 0);
    }

    #[test]
    fn gives_up_after_the_syn_attempts_and_on_a_reset() {
        let (mut w, _) = WarmConn::open(target(), SeqNumber(1), 1460, 7, 0, 0);
        let mut now = 0;
        for _ in 1..SYN_ATTEMPTS {
            now = w.deadline_ms();
            assert!(matches!(w.on_timer(now, 0), WarmEvent::Send(_)));
        }
        assert_eq!(
            w.on_timer(w.deadline_ms().max(now), 0),
            WarmEvent::Closed(None)
        );
        let (mut w, _) = WarmConn::open(target(), SeqNumber(1), 1460, 7, 0, 0);
        assert_eq!(
            w.on_segment(&seg(0, 2, tcp_flags::RST, 0), 0, 0),
            WarmEvent::Closed(None)
        );
    }
}
