//! The switch's side of a handed-off connection (VIP mode `handoff`, DWSR's inline
//! transport; the agent's side is [`crate::handoff`]).
//!
//! The switch answered the handshake with a cookie and holds the request head. Instead of
//! opening its own backend connection it sends the held bytes to the backend's agent as
//! segments of the client's own connection (client space, acknowledging the switch's ISN),
//! each carrying the connection's state in a handoff option. The agent replays the
//! handshake into its kernel, which from then on answers the client directly. The switch
//! keeps only enough to forward the client's later segments to the same agent:
//!
//! ```text
//! client            switch                         agent / kernel
//!   | SYN ------------> |  (cookie)                        |
//!   | <------- SYN-ACK  |                                  |
//!   | GET / ----------> |  route                           |
//!   | <----------- ACK  |  head + option ----------------> |  SYN/SYN-ACK/ACK replayed
//!   |                   |                                  |  GET delivered
//!   | <------------------------------------ response (from the VIP, switch's seq space)
//!   | ACK ------------> |  forwarded (MAC rewrite) ------> |
//! ```
//!
//! The switch acknowledged the head itself, so it owns those bytes until the handoff is
//! known to have taken: the head goes out again on a backoff timer until the client's
//! acknowledgment number passes the switch's ISN (the client has received response
//! bytes from the kernel, which the switch never sends). No control round trip is needed.
use super::{Conn, State, Verdict, RTO_MS};
use crate::conn::{BackendTarget, Outputs, SegmentInfo};
use crate::wire::SeqNumber;

/// Sends of the head (the first included) before the switch gives up on an agent that
/// never answers the client: 200 ms doubling, about 12.6 s in all, as a SYN's retries.
pub const HANDOFF_TRIES: u32 = 6;

/// What the switch sends the agent: the held bytes (`Conn::head_bytes`, from `seq`) and
/// the state its option carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandoffHead {
    /// The client's ISN (its SYN's sequence number); the head starts at `client_isn + 1`.
    pub client_isn: SeqNumber,
    /// The switch's ISN: the head segments acknowledge `switch_isn + 1`.
    pub switch_isn: SeqNumber,
    /// The MSS the client announced (as the cookie kept it).
    pub mss: u16,
    /// The client's window shift, if it offered window scaling.
    pub client_ws: Option<u8>,
    /// The window shift the switch announced to the client (0 without scaling).
    pub switch_ws: u8,
    pub sack_permitted: bool,
    /// (the client's latest TSval, the switch's latest TSval) when timestamps are on:
    /// the head segments' TS option, and the clock the kernel's TSvals must continue.
    pub timestamps: Option<(u32, u32)>,
    /// The client's latest raw window field (its scale).
    pub window: u16,
    /// The client's FIN came right after the held bytes (a request and its FIN in one
    /// segment, or a FIN before the handoff): the last head segment carries it, since the
    /// client may never send it again.
    pub fin: bool,
}

impl Conn {
    /// Hands the connection off toward `target` (its agent): from now on the switch only
    /// forwards the client's segments. Returns what the head segments carry.
    pub fn hand_off(&mut self, target: BackendTarget, now_ms: u64) -> HandoffHead {
        self.backend = Some(target);
        self.client_next = self.client_isn + 1 + self.head_bytes().len();
        self.state = State::HandedOff;
        self.attempts = 1;
        self.response_started = false;
        // Set by the control transport's ack (`handoff_taken`); the inline one never does.
        self.head_acked = false;
        self.deadline_ms = now_ms + RTO_MS;
        self.handoff_head(now_ms)
    }

    /// The control transport's handoff ack: the agent's kernel holds the client's stream
    /// up to `acked`. Once that covers the whole head (and a FIN after it) the head is
    /// not sent again and the client's later segments may go to the agent. `true` when
    /// this ack is the one that took it (a repeated or short ack changes nothing).
    pub fn handoff_taken(&mut self, acked: SeqNumber, now_ms: u64) -> bool {
        if !self.handoff_awaits_ack() {
            return false;
        }
        let fin = usize::from(self.client_fin.is_some());
        let end = self.client_isn + 1 + self.head_bytes().len() + fin;
        if acked.wrapping_diff(end) < 0 {
            return false;
        }
        self.head_acked = true;
        self.deadline_ms = now_ms + self.idle_timeout();
        true
    }

    /// Whether the control transport's ack for the current handoff is still awaited
    /// (the switch holds the client's later segments until it comes, or until the
    /// client shows it has heard from the kernel: `handoff_heard_of`).
    pub fn handoff_awaits_ack(&self) -> bool {
        self.state == State::HandedOff && !self.head_acked && !self.response_started
    }

    /// A client segment (checked) of a connection awaiting its handoff ack acknowledges
    /// bytes only the agent's kernel can have sent: the handoff took, as with the inline
    /// transport, even if the ack itself was lost. `true` if so (the segments held so far
    /// may go on, ahead of this one).
    pub fn handoff_heard_of(&mut self, seg: &SegmentInfo) -> bool {
        let heard = self.state == State::HandedOff
            && seg.checked
            && seg
                .ack
                .is_some_and(|a| a.wrapping_diff(self.our_isn + 1) > 0);
        if heard {
            self.response_started = true;
        }
        heard
    }

    /// How long a handed-off entry lives without a client segment.
    fn idle_timeout(&self) -> u64 {
        if self.client_fin.is_some() {
            self.params.fin_timeout_ms
        } else {
            self.params.idle_timeout_ms
        }
    }

    /// The head segments' state, for the first send and every resend.
    pub fn handoff_head(&mut self, now_ms: u64) -> HandoffHead {
        let timestamps = self
            .syn
            .timestamps
            .then(|| (self.client_ts_recent, self.our_tsval(now_ms)));
        HandoffHead {
            client_isn: self.client_isn,
            switch_isn: self.our_isn,
            mss: self.syn.mss,
            client_ws: self.syn.window_scale,
            switch_ws: self.our_ws,
            sack_permitted: self.syn.sack_permitted,
            timestamps,
            window: self.client_window,
            fin: self.client_fin == Some(self.client_isn + 1 + self.head_bytes().len()),
        }
    }

    /// Only the first `len` held bytes go to this agent (the rest is a later request,
    /// held for another): the head is cut there.
    pub fn truncate_handoff_head(&mut self, len: usize) {
        if let Some(h) = self.head.as_mut() {
            h.truncate(len);
        }
        self.client_next = self.client_isn + 1 + self.head_bytes().len();
    }

    /// The switch ends a handed-off connection itself (a later request refused): the
    /// caller sent the RSTs; the entry lingers for late segments, then goes.
    pub fn end_handoff(&mut self, now_ms: u64) {
        if self.state == State::HandedOff {
            self.close(now_ms);
        }
    }

    /// Where RSTs that end a handed-off connection must land: (toward the client, the
    /// latest ack it sent: where it expects the kernel's next byte; toward the agent,
    /// the client's next sequence number: where the kernel expects it).
    pub fn handoff_reset_points(&self) -> (SeqNumber, SeqNumber) {
        (
            self.client_ack.unwrap_or(self.our_isn + 1),
            self.client_next.max(self.client_isn + 1),
        )
    }

    /// Whether the agent's kernel has been heard from (through the client's acks).
    pub fn handoff_confirmed(&self) -> bool {
        self.state == State::HandedOff && self.response_started
    }

    /// A client segment of a handed-off connection: the caller forwards it in any case
    /// (the agent's kernel is the endpoint now and judges it); this only tracks whether
    /// the handoff took and when the entry may go.
    pub(super) fn client_handed_off(&mut self, seg: &SegmentInfo, now_ms: u64) -> Verdict {
        if seg.rst() {
            // Forwarded in any case: the kernel judges it (RFC 5961: it ends the connection
            // only at exactly its next expected byte, and challenges one elsewhere in its
            // window). The entry ends only with an exact one, as far as the switch can
            // tell; after any other the connection lives on, and the kernel's challenge
            // ACK reaches the client past the switch. A blind RST must not end it here.
            if seg.checked
                && crate::handoff::client_rst_exact(seg.seq, self.client_next, self.client_fin)
            {
                // The entry lingers closed (later segments are dropped), then goes.
                self.close(now_ms);
            }
            return Verdict::Continue;
        }
        if seg.fin() {
            self.client_fin = Some(seg.seq + seg.payload_len);
        }
        if let (true, Some((_, ecr))) = (seg.checked, seg.timestamps) {
            // The client echoes the latest TSval it has seen, from the kernel too (through
            // the agent, in the switch's clock): a later handoff's clock starts above it.
            if ecr.wrapping_sub(self.our_ts_last) as i32 > 0 {
                self.our_ts_last = ecr;
            }
        }
        if seg.checked {
            // Where a RST of the switch's must land to be taken (`handoff_reset_points`).
            // Bytes only: a bare ACK's number may be past bytes held back from the agent.
            let end = seg.seq + seg.payload_len;
            if seg.payload_len > 0 && end.wrapping_diff(self.client_next) > 0 {
                self.client_next = end;
            }
            if let Some(ack) = seg.ack {
                if self.client_ack.is_none_or(|a| ack.wrapping_diff(a) > 0) {
                    self.client_ack = Some(ack);
                }
            }
        }
        if let Some(ack) = seg.ack {
            // An ack past our ISN + 1 acknowledges bytes only the kernel sent.
            if seg.checked && ack.wrapping_diff(self.our_isn + 1) > 0 {
                self.response_started = true;
            }
        }
        if self.response_started || self.head_acked {
            self.deadline_ms = now_ms + self.idle_timeout();
        }
        Verdict::Continue
    }

    /// The deadline of a handed-off connection passed: send the head again while the
    /// handoff is unconfirmed, give up after [`HANDOFF_TRIES`] (a RST to the client, as
    /// a connect that fails), or forget an idle one.
    pub(super) fn handoff_timer(&mut self, now_ms: u64, out: &mut Outputs) -> Verdict {
        if self.response_started || self.head_acked {
            // Idle (or closing) past its timeout: the agent's kernel keeps its own timers;
            // a later segment of the client finds no flow and gets a RST.
            return Verdict::Remove;
        }
        if self.attempts >= HANDOFF_TRIES {
            out.push(super::Emit::ToClient(super::SegmentOut::rst(
                self.our_isn + 1,
            )));
            self.close(now_ms);
            return Verdict::Continue;
        }
        self.deadline_ms = now_ms + (RTO_MS << self.attempts.min(10));
        self.attempts += 1;
        Verdict::HandoffResend
    }
}
