//! The agent's per-flow state: the handshake it replays into the backend host's
//! kernel, and the two [`Translation`]s that make the kernel's connection and the
//! client's one connection afterwards.
//!
//! ```text
//!          start()          on_kernel_syn_ack()
//!  (none) ────────► SynSent ───────────────────► Established ── both FINs acked ──► lingers
//!                      │  kernel RST (refused)     │   ▲  │  RST, either way          LINGER_MS
//!                      └───────────────► Closed ◄──┼───┼──┘  (lingers LINGER_MS too)
//!                                          ▲       │   │ resume() (the switch brings
//!                       kernel FIN, data,  │  on_release()  the connection back)
//!                       RST; PARK_MS       │       ▼   │
//!                                          └──── Parked
//! ```
//!
//! `Parked` is paper 002's switch-back: a connection moved to another backend for a
//! request of another pool leaves its kernel connection open and silent here, so that a
//! later request for this backend continues on it without a new handshake: only the
//! sequence deltas move, by what the client sent elsewhere and received from elsewhere
//! meanwhile.
//!
//! The agent never rewrites addresses or ports: the kernel holds the VIP (on `lo`)
//! and answers from it, so the client's 4-tuple is the kernel's. What differs is
//! everything the two handshakes chose independently:
//!
//! - **Sequence numbers.** The client acknowledges the switch's ISN space
//!   (`switch_isn`, a SYN cookie); the kernel sends from its own (`kernel_isn`). The
//!   client's own sequence space is the same on both sides, because the replayed
//!   SYN carries the client's ISN.
//! - **Timestamp clocks.** The client echoes the switch's TSvals and has seen them
//!   up to `switch_tsval`; the kernel's clock starts wherever it likes. Kernel TSvals
//!   are moved to continue from `switch_tsval` (never backwards: the client's PAWS
//!   check would drop them) and client echoes are moved back into the kernel clock
//!   (or its RTT samples would be garbage).
//! - **Window scales.** The client applies the switch's announced shift to every
//!   window it receives; the kernel sends in its own. The client's shift is the same
//!   on both sides (the replayed SYN carries it), unless the kernel declines window
//!   scaling altogether.
//!
//! Pure and small: no buffers, no allocation, no clock (`now_ms` comes in). Segments
//! that cannot go to the kernel yet are held by the caller, which owns the packets.
use std::fmt;
use std::net::Ipv4Addr;

use super::option::HandoffRecord;
use crate::splice::{rescale_window, Translation};
use crate::wire::{tcp_flags, SeqNumber, TcpPacket, TcpRepr};

/// How long a flow stays after it ended (both FINs acknowledged, or a RST): late
/// retransmissions (a FIN whose ACK was lost, the segments that crossed a RST)
/// still find the flow and are translated or dropped, instead of looking like the
/// start of a new one.
pub const LINGER_MS: u64 = 2_000;

/// A flow with no segment in either direction for this long is forgotten (a client
/// or kernel that vanished without FIN or RST). Five minutes: longer than any
/// sensible HTTP keep-alive timeout, so a live idle connection is not cut.
pub const IDLE_MS: u64 = 300_000;

/// How long a parked kernel connection waits for the connection to come back before it
/// is reset. Below nginx's default `keepalive_timeout` (75 s) and Apache's (5 s is its
/// default: its kernel FIN then ends the parked flow earlier, see
/// [`AgentFlow::on_kernel`]).
pub const PARK_MS: u64 = 15_000;

/// How long a flow prepared at SYN time (`vips[].preallocate`: a handoff option on a
/// bare ACK, no request yet) waits for its request before its kernel connection is
/// reset: a wrong guess whose cancel was lost, or a client that never sent one.
pub const PREPARED_MS: u64 = 3_000;

/// The window of the replayed SYN. A SYN's window is never scaled (RFC 7323 §2.2)
/// and the switch does not keep the client's: the largest unscaled value, replaced
/// by the client's real window in the ACK that follows.
const SYN_WINDOW: u16 = 65535;

/// The two ends of the flow, as both see them: the kernel answers from the VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowAddrs {
    pub client: (Ipv4Addr, u16),
    pub vip: (Ipv4Addr, u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// The SYN went to the kernel; its SYN-ACK has not come back.
    SynSent,
    /// Both translations are known; segments pass both ways.
    Established,
    /// Reset by either end (or refused by the kernel): segments are dropped until
    /// the flow expires.
    Closed,
    /// Let go to another backend (`on_release`), the kernel's connection kept open and
    /// idle for a [`resume`](AgentFlow::resume); the client's segments are dropped.
    Parked,
}

/// What the flow tracks of a segment, read *before* any translation (as it came
/// from the client or the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegFlags {
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    /// The acknowledgment number, when ACK is set.
    pub ack: Option<SeqNumber>,
    pub seq: SeqNumber,
    pub payload_len: usize,
}

impl SegFlags {
    pub fn from_repr(repr: &TcpRepr) -> SegFlags {
        SegFlags {
            syn: repr.flags & tcp_flags::SYN != 0,
            fin: repr.flags & tcp_flags::FIN != 0,
            rst: repr.flags & tcp_flags::RST != 0,
            ack: repr.ack_number,
            seq: repr.seq_number,
            payload_len: repr.payload_len,
        }
    }

    /// From the header directly, without parsing options. `tcp` must have passed
    /// `check_len` (a `TcpPacket::new_checked` view).
    pub fn from_packet<T: AsRef<[u8]>>(tcp: &TcpPacket<T>) -> SegFlags {
        SegFlags {
            syn: tcp.syn(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            ack: tcp.ack().then(|| tcp.ack_number()),
            seq: tcp.seq_number(),
            payload_len: tcp.payload().len(),
        }
    }
}

/// What to do with a segment from the client (or the switch on its behalf).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientVerdict {
    /// Keep it until the kernel's handshake completes, then translate it with
    /// [`AgentFlow::to_kernel`] and send it, after the ACK, in arrival order. The
    /// caller holds a bounded number; beyond that it drops them like lost segments
    /// (their sender retransmits).
    Hold,
    /// Translate with [`AgentFlow::to_kernel`] and send to the kernel.
    Translate,
    Drop,
}

/// What to do with a segment from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelVerdict {
    /// Translate with [`AgentFlow::to_client`] and send to the client.
    Translate,
    /// A parked connection the kernel is ending (its FIN, or bytes past what it had
    /// sent): reset it quietly at [`AgentFlow::kernel_rst_seq`]; the flow is
    /// closed. Nothing goes to the client, which is elsewhere.
    ResetKernel,
    /// A SYN-ACK, first or retransmitted: pass it to
    /// [`AgentFlow::on_kernel_syn_ack`], which gives the ACK to send the kernel.
    /// The SYN-ACK itself goes nowhere (the client had the switch's).
    ResendAck,
    Drop,
}

/// Why a kernel SYN-ACK was refused. The flow is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentError {
    /// Not an answer to our SYN: not SYN+ACK, a RST, other ports, an acknowledgment
    /// other than the client's ISN + 1, or a flow the kernel already refused.
    UnexpectedSynAck,
    /// A SYN-ACK for our SYN with another ISN than the one already accepted: the
    /// kernel's connection is not the one the translations were made for.
    KernelIsnChanged,
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AgentError::UnexpectedSynAck => "SYN-ACK does not answer the replayed SYN",
            AgentError::KernelIsnChanged => "SYN-ACK with another ISN than the accepted one",
        })
    }
}

impl std::error::Error for AgentError {}

/// [`AgentFlow::resume`] refused: the flow is not parked, or the head does not continue
/// the parked connection's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotResumable;

/// One handed-off connection on the backend host.
#[derive(Debug, Clone)]
pub struct AgentFlow {
    rec: HandoffRecord,
    switch_isn: SeqNumber,
    /// The client's TSval from the segment that started the flow (0 without one).
    client_tsval: u32,
    /// Valid once `handshake_done`.
    kernel_isn: SeqNumber,
    /// The kernel SYN-ACK's TSval; valid when `kernel_ts`.
    kernel_tsval: u32,
    /// Addresses from the start; deltas and shifts once `handshake_done`.
    to_kernel: Translation,
    /// The same, or (when `refused`) the translation of the kernel's refusing RST.
    to_client: Translation,
    last_ms: u64,
    /// When the flow began to linger: both FINs acknowledged, or closed.
    linger_from_ms: Option<u64>,
    /// The client's FIN's sequence number (client space, the same on both sides).
    client_fin: Option<SeqNumber>,
    /// The kernel's FIN's sequence number, translated into the client's view.
    kernel_fin: Option<SeqNumber>,
    /// The window field of the ACK sent to the kernel (kept so that a retransmitted
    /// SYN-ACK gets the very same ACK).
    ack_window: u16,
    state: AgentState,
    handshake_done: bool,
    /// Timestamps are on between the agent and the kernel.
    kernel_ts: bool,
    /// The kernel answered the SYN with a RST.
    refused: bool,
    /// When the flow was parked (valid in `Parked`).
    parked_ms: u64,
    /// The client sent a RST before the handshake completed (held by the caller).
    client_rst: bool,
    /// The kernel reset the established connection.
    kernel_rst: bool,
    client_fin_acked: bool,
    kernel_fin_acked: bool,
    /// The end of what the kernel has sent (client space): its next byte.
    kernel_next: SeqNumber,
    /// The end of what the client has sent the kernel (client space).
    client_next: SeqNumber,
}

/// What the agent answers the switch's [`Release`](super::control::Control::Release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseVerdict {
    /// Nothing is left to let go (the flow was closed): answer `Released`.
    Released,
    /// Let go: answer `Released`; the kernel's connection stays open and the flow
    /// silent ([`AgentState::Parked`]) until it is resumed, or until it is reset.
    Parked,
    /// A response or a request is still under way: answer `Busy`.
    Busy,
}

impl AgentFlow {
    /// Starts a flow from a handoff segment and returns it with the SYN to inject
    /// into the kernel.
    ///
    /// `switch_isn` is the handoff segment's acknowledgment number minus 1 (the
    /// switch has sent the client nothing but its SYN-ACK). `client_tsval` is that
    /// segment's TSval: the replayed SYN and the ACK carry it, so that the kernel's
    /// `ts_recent` starts no later than any held segment replayed after them
    /// (a later TSval would make the kernel's PAWS check drop those).
    ///
    /// The segment itself is not accounted here: pass it to
    /// [`on_client`](Self::on_client) like any other (it is held).
    pub fn start(
        addrs: FlowAddrs,
        rec: HandoffRecord,
        switch_isn: SeqNumber,
        client_tsval: Option<u32>,
        now_ms: u64,
    ) -> (AgentFlow, TcpRepr) {
        let placeholder = |src, dst| Translation {
            src,
            dst,
            ..Translation::default()
        };
        let flow = AgentFlow {
            rec,
            switch_isn,
            client_tsval: client_tsval.unwrap_or(0),
            kernel_isn: SeqNumber(0),
            kernel_tsval: 0,
            to_kernel: placeholder(addrs.client, addrs.vip),
            to_client: placeholder(addrs.vip, addrs.client),
            last_ms: now_ms,
            linger_from_ms: None,
            client_fin: None,
            kernel_fin: None,
            ack_window: 0,
            state: AgentState::SynSent,
            handshake_done: false,
            kernel_ts: false,
            refused: false,
            parked_ms: 0,
            client_rst: false,
            kernel_rst: false,
            client_fin_acked: false,
            kernel_fin_acked: false,
            kernel_next: switch_isn + 1,
            client_next: rec.client_isn + 1,
        };
        let syn = flow.syn();
        (flow, syn)
    }

    /// The SYN to inject into the kernel (the one [`start`](Self::start) returned),
    /// for a retransmission: the client's ISN and SYN options as the record gives
    /// them, and the client's TSval.
    pub fn syn(&self) -> TcpRepr {
        TcpRepr {
            src_port: self.to_kernel.src.1,
            dst_port: self.to_kernel.dst.1,
            seq_number: self.rec.client_isn,
            ack_number: None,
            flags: tcp_flags::SYN,
            window_len: SYN_WINDOW,
            max_seg_size: Some(self.rec.mss),
            window_scale: self.rec.client_ws,
            sack_permitted: self.rec.sack_permitted,
            timestamps: self.rec.timestamps.then_some((self.client_tsval, 0)),
            payload_len: 0,
        }
    }

    pub fn state(&self) -> AgentState {
        self.state
    }

    /// The record the flow started from.
    pub fn record(&self) -> &HandoffRecord {
        &self.rec
    }

    pub fn switch_isn(&self) -> SeqNumber {
        self.switch_isn
    }

    /// The kernel's ISN, once its SYN-ACK was accepted.
    pub fn kernel_isn(&self) -> Option<SeqNumber> {
        self.handshake_done.then_some(self.kernel_isn)
    }

    /// Takes the kernel's SYN-ACK (parsed) and returns the ACK that completes its
    /// handshake. The first one fixes the kernel's ISN, timestamp clock and window
    /// scale, and with them both translations; the flow becomes `Established`, or
    /// `Closed` when the client has already sent a RST (the caller then replays it,
    /// held, after the ACK, which resets the kernel's connection cleanly).
    ///
    /// `client_window` is the window field of the latest segment from the client
    /// (the handoff segment's at least), as sent, at the client's scale: the ACK
    /// carries it re-expressed at the scale the kernel applies.
    ///
    /// A retransmitted SYN-ACK (the same ISN: the ACK was lost) gets the same ACK
    /// again; one with another ISN is refused, as is anything that does not answer
    /// our SYN. On `Err` the flow is unchanged.
    pub fn on_kernel_syn_ack(
        &mut self,
        repr: &TcpRepr,
        client_window: u16,
        now_ms: u64,
    ) -> Result<TcpRepr, AgentError> {
        let answers_our_syn = repr.flags & tcp_flags::SYN != 0
            && repr.flags & tcp_flags::RST == 0
            && repr.ack_number == Some(self.rec.client_isn + 1)
            && repr.src_port == self.to_kernel.dst.1
            && repr.dst_port == self.to_kernel.src.1;
        if !answers_our_syn || self.refused {
            return Err(AgentError::UnexpectedSynAck);
        }
        if self.handshake_done {
            if repr.seq_number != self.kernel_isn {
                return Err(AgentError::KernelIsnChanged);
            }
            self.last_ms = now_ms;
            return Ok(self.ack());
        }

        // Scaling between the agent and the kernel needs both SYNs to carry the
        // option (RFC 7323 §2.2): ours carries the client's shift when the client
        // scales; a kernel with scaling off answers without one, and then neither
        // side of the kernel's connection scales.
        let client_shift = self.rec.client_ws.unwrap_or(0);
        let (kernel_rcv_shift, kernel_snd_shift) = match (self.rec.client_ws, repr.window_scale) {
            (Some(client), Some(kernel)) => (client, kernel),
            _ => (0, 0),
        };
        let switch_shift = if self.rec.client_ws.is_some() {
            self.rec.switch_ws
        } else {
            0
        };
        // Timestamps likewise: a kernel with them off sends none, and ignores the
        // client's (translating them is then harmless).
        let kernel_tsval = if self.rec.timestamps {
            repr.timestamps.map(|(tsval, _)| tsval)
        } else {
            None
        };
        let (ecr_delta, val_delta) = match kernel_tsval {
            // An echo of the switch's latest TSval becomes the SYN-ACK's TSval; the
            // SYN-ACK's TSval becomes the switch's latest, and the kernel's later
            // ones (never smaller) continue from there.
            Some(k) => (
                k.wrapping_sub(self.rec.switch_tsval),
                self.rec.switch_tsval.wrapping_sub(k),
            ),
            None => (0, 0),
        };

        self.kernel_isn = repr.seq_number;
        self.kernel_tsval = kernel_tsval.unwrap_or(0);
        self.kernel_ts = kernel_tsval.is_some();
        self.to_kernel = Translation {
            seq_delta: 0,
            ack_delta: self.kernel_isn.0.wrapping_sub(self.switch_isn.0),
            ts_val_delta: 0,
            ts_ecr_delta: ecr_delta,
            window_shift_in: client_shift,
            window_shift_out: kernel_rcv_shift,
            ..self.to_kernel
        };
        self.to_client = Translation {
            seq_delta: self.switch_isn.0.wrapping_sub(self.kernel_isn.0),
            ack_delta: 0,
            ts_val_delta: val_delta,
            ts_ecr_delta: 0,
            window_shift_in: kernel_snd_shift,
            window_shift_out: switch_shift,
            ..self.to_client
        };
        self.ack_window = rescale_window(client_window, client_shift, kernel_rcv_shift);
        self.handshake_done = true;
        self.last_ms = now_ms;
        if self.client_rst {
            self.close(now_ms);
        } else {
            self.state = AgentState::Established;
        }
        Ok(self.ack())
    }

    /// The ACK completing the kernel's handshake (valid once `handshake_done`).
    fn ack(&self) -> TcpRepr {
        TcpRepr {
            src_port: self.to_kernel.src.1,
            dst_port: self.to_kernel.dst.1,
            seq_number: self.rec.client_isn + 1,
            ack_number: Some(self.kernel_isn + 1),
            flags: 0,
            window_len: self.ack_window,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: self
                .kernel_ts
                .then_some((self.client_tsval, self.kernel_tsval)),
            payload_len: 0,
        }
    }

    /// How to rewrite client segments for the kernel; `None` until the kernel's
    /// SYN-ACK was accepted.
    pub fn to_kernel(&self) -> Option<&Translation> {
        self.handshake_done.then_some(&self.to_kernel)
    }

    /// How to rewrite kernel segments for the client; `None` until the kernel's
    /// SYN-ACK was accepted, except after the kernel refused the SYN: then it
    /// translates that RST (see [`on_kernel`](Self::on_kernel)).
    pub fn to_client(&self) -> Option<&Translation> {
        (self.handshake_done || self.refused).then_some(&self.to_client)
    }

    /// Accounts a segment from the client (or from the switch on its behalf: the
    /// handoff segments), read before translation.
    ///
    /// - A SYN is translated to an established kernel connection, which answers it
    ///   with a challenge ACK (RFC 5961 §4.2); in every other state it is dropped: the
    ///   switch answered the client's handshake, and the agent made its own.
    /// - Before the kernel's handshake completes everything else is
    ///   [`Hold`](ClientVerdict::Hold), a RST included (replayed after the ACK, it
    ///   resets the kernel's fresh connection instead of leaving it half open).
    /// - Established: [`Translate`](ClientVerdict::Translate); a RST at exactly the
    ///   client's next byte closes the flow. Any other RST goes on without closing
    ///   it: the kernel judges it (RFC 5961 §3.2) and its challenge ACK must reach the
    ///   client through the flow.
    /// - Closed: dropped.
    ///
    /// A FIN is noted (its sequence number is `seq + payload_len`) whenever it is
    /// held or translated, as is an acknowledgment of the kernel's FIN.
    pub fn on_client(&mut self, seg: SegFlags, now_ms: u64) -> ClientVerdict {
        self.last_ms = now_ms;
        if seg.syn {
            // Established: the kernel answers a SYN on its connection with a challenge
            // ACK (RFC 5961 4.2), which tells a client that really restarted to reset.
            // Before, the agent made the kernel's handshake itself; after, nobody listens.
            return match self.state {
                AgentState::Established => ClientVerdict::Translate,
                _ => ClientVerdict::Drop,
            };
        }
        match self.state {
            AgentState::Closed | AgentState::Parked => ClientVerdict::Drop,
            AgentState::SynSent => {
                if seg.rst {
                    self.client_rst = true;
                } else {
                    self.note_client(&seg, now_ms);
                }
                ClientVerdict::Hold
            }
            AgentState::Established => {
                if seg.rst {
                    // Only an exact RST ends the flow here; the kernel challenges any
                    // other (its ACK must reach the client, and the connection lives on).
                    if super::client_rst_exact(seg.seq, self.client_next, self.client_fin) {
                        self.close(now_ms);
                    }
                } else {
                    self.note_client(&seg, now_ms);
                }
                ClientVerdict::Translate
            }
        }
    }

    /// Accounts a segment from the kernel, read before translation.
    ///
    /// - A SYN-ACK is [`ResendAck`](KernelVerdict::ResendAck) (unless the flow is
    ///   closed); any other SYN is dropped.
    /// - Before the handshake completes, a RST that answers our SYN (ack = client
    ///   ISN + 1: the kernel refuses the connection, e.g. nothing listens) is
    ///   translated for the client, so the client learns at once: the flow closes
    ///   and [`to_client`](Self::to_client) then moves the RST's sequence number to
    ///   the switch's ISN + 1, the only one the client accepts (RFC 5961 §3.2).
    ///   Everything else is dropped.
    /// - Established: [`Translate`](KernelVerdict::Translate); a RST closes the
    ///   flow.
    /// - Closed: dropped.
    ///
    /// A FIN is noted, as is an acknowledgment of the client's FIN.
    pub fn on_kernel(&mut self, seg: SegFlags, now_ms: u64) -> KernelVerdict {
        self.last_ms = now_ms;
        if seg.syn {
            return if seg.ack.is_some() && self.state != AgentState::Closed {
                KernelVerdict::ResendAck
            } else {
                KernelVerdict::Drop
            };
        }
        match self.state {
            AgentState::Closed => KernelVerdict::Drop,
            AgentState::Parked => {
                // Past what it had sent when it was parked: new bytes (or its FIN) for a
                // client that is elsewhere. Anything else is a retransmission (a tail
                // loss probe that crossed the client's ACK, which is on its way) or a
                // pure ACK: nothing to do.
                let end = SeqNumber(
                    (seg.seq + seg.payload_len)
                        .0
                        .wrapping_add(self.to_client.seq_delta),
                );
                let new_bytes = end.wrapping_diff(self.kernel_next) > 0;
                if seg.rst {
                    self.close(now_ms);
                    KernelVerdict::Drop
                } else if seg.fin || new_bytes {
                    self.close(now_ms);
                    KernelVerdict::ResetKernel
                } else {
                    KernelVerdict::Drop
                }
            }
            AgentState::SynSent => {
                if !seg.rst || seg.ack != Some(self.rec.client_isn + 1) {
                    return KernelVerdict::Drop;
                }
                self.to_client.seq_delta = (self.switch_isn + 1).0.wrapping_sub(seg.seq.0);
                self.refused = true;
                self.close(now_ms);
                KernelVerdict::Translate
            }
            AgentState::Established => {
                if seg.rst {
                    self.kernel_rst = true;
                    self.close(now_ms);
                } else {
                    self.note_kernel(&seg, now_ms);
                }
                KernelVerdict::Translate
            }
        }
    }

    /// Whether the flow can be forgotten: [`LINGER_MS`] after it ended (both FINs
    /// acknowledged, or closed), or [`IDLE_MS`] after its last segment.
    pub fn expired(&self, now_ms: u64) -> bool {
        if self.state == AgentState::Parked {
            return now_ms.saturating_sub(self.parked_ms) >= PARK_MS;
        }
        if self.unused() {
            return now_ms.saturating_sub(self.last_ms) >= PREPARED_MS;
        }
        match self.linger_from_ms {
            Some(from) => now_ms.saturating_sub(from) >= LINGER_MS,
            None => now_ms.saturating_sub(self.last_ms) >= IDLE_MS,
        }
    }

    /// The switch asks the flow to let its connection go (the client's next request,
    /// starting at `seq`, belongs to another backend; `ack` is what the client has
    /// acknowledged of the kernel's bytes). Only an idle connection is let go: the kernel
    /// has sent nothing the client lacks, and has every client byte before `seq`, so its
    /// connection can be reset without anyone losing a byte and the next backend's
    /// answer continues the client's stream exactly at `ack`.
    ///
    /// `answered`: whether the kernel has answered every request it was given with a
    /// whole response (`responses::ResponseTally::answered`): an idle kernel may be in
    /// the middle of one, between two of its server's writes.
    pub fn on_release(
        &mut self,
        seq: SeqNumber,
        ack: SeqNumber,
        answered: bool,
        now_ms: u64,
    ) -> ReleaseVerdict {
        self.last_ms = now_ms;
        match self.state {
            // Nothing of it is left to silence.
            AgentState::Closed => ReleaseVerdict::Released,
            // Asked again (our answer was lost).
            AgentState::Parked => ReleaseVerdict::Parked,
            AgentState::SynSent => ReleaseVerdict::Busy,
            AgentState::Established => {
                if answered
                    && self.kernel_next == ack
                    && self.client_next == seq
                    && self.kernel_fin.is_none()
                    && self.client_fin.is_none()
                {
                    self.state = AgentState::Parked;
                    self.parked_ms = now_ms;
                    ReleaseVerdict::Parked
                } else {
                    ReleaseVerdict::Busy
                }
            }
        }
    }

    /// The switch brings a parked connection back with a new request (its handoff head,
    /// whose record `rec` starts at `rec.client_isn + 1` and whose acknowledgment `ack` is
    /// what the client has received of the server side so far). The client sent other
    /// backends the bytes between what this kernel has and the head, and received theirs
    /// answers: the deltas move by both amounts, so the kernel's connection continues
    /// exactly where the client's stream now stands. Timestamps and window scales keep
    /// their translation (the kernel's clock ran on; the client's connection is the
    /// same).
    ///
    /// `Err` (the flow unchanged) unless parked and the head lies at or after both
    /// ends of what this kernel saw: then it is another connection on the same ports,
    /// and the caller resets the parked kernel connection and starts afresh.
    pub fn resume(
        &mut self,
        rec: HandoffRecord,
        ack: SeqNumber,
        now_ms: u64,
    ) -> Result<(), NotResumable> {
        let head = rec.client_isn + 1;
        let sent_elsewhere = head.wrapping_diff(self.client_next);
        let got_elsewhere = ack.wrapping_diff(self.kernel_next);
        // Within 1 GiB: a stream position, not a stranger's sequence number.
        let plausible = |d: i32| (0..1 << 30).contains(&d);
        if self.state != AgentState::Parked
            || !plausible(sent_elsewhere)
            || !plausible(got_elsewhere)
        {
            return Err(NotResumable);
        }
        let sent = sent_elsewhere as u32;
        let got = got_elsewhere as u32;
        // Client bytes: the head's first byte is the kernel's next expected one.
        self.to_kernel.seq_delta = self.to_kernel.seq_delta.wrapping_sub(sent);
        self.to_client.ack_delta = self.to_client.ack_delta.wrapping_add(sent);
        // Kernel bytes: its next byte is the one the client expects next.
        self.to_client.seq_delta = self.to_client.seq_delta.wrapping_add(got);
        self.to_kernel.ack_delta = self.to_kernel.ack_delta.wrapping_sub(got);
        self.client_next = head;
        self.kernel_next = ack;
        self.rec = HandoffRecord {
            client_isn: rec.client_isn,
            ..self.rec
        };
        self.state = AgentState::Established;
        self.linger_from_ms = None;
        self.last_ms = now_ms;
        Ok(())
    }

    /// A head (the option with a request) for a flow prepared at SYN time: since the
    /// prepare, the switch has shown the client later TSvals (its ACK of the request), and
    /// a kernel TSval translated from the prepare's would go back past them; the client's
    /// PAWS check would drop the response. Timestamps now continue from the head's
    /// `switch_tsval` (the SYN-ACK's TSval maps to it, as at a handshake). Nothing changes
    /// for a flow that has carried bytes, or for an older record.
    pub fn take_head_record(&mut self, rec: &HandoffRecord) {
        let later = rec.switch_tsval.wrapping_sub(self.rec.switch_tsval) as i32 > 0;
        if !later || rec.client_isn != self.rec.client_isn {
            return;
        }
        match self.state {
            // The SYN-ACK will make the translations from this.
            AgentState::SynSent => self.rec.switch_tsval = rec.switch_tsval,
            AgentState::Established if self.unused() => {
                self.rec.switch_tsval = rec.switch_tsval;
                if self.kernel_ts {
                    self.to_client.ts_val_delta = rec.switch_tsval.wrapping_sub(self.kernel_tsval);
                    self.to_kernel.ts_ecr_delta = self.kernel_tsval.wrapping_sub(rec.switch_tsval);
                }
            }
            _ => {}
        }
    }

    /// Whether the connection ended at the backend's side, as the switch wants to hear
    /// (paper 003's termination notice): both FINs acknowledged, or the kernel reset it.
    /// (A client's RST went through the switch, which knows.)
    pub fn ended(&self) -> bool {
        (self.client_fin_acked && self.kernel_fin_acked) || self.kernel_rst
    }

    /// Established with no byte and no FIN either way yet: a flow prepared at SYN time
    /// that no request has reached.
    pub fn unused(&self) -> bool {
        self.state == AgentState::Established
            && self.client_next == self.rec.client_isn + 1
            && self.kernel_next == self.switch_isn + 1
            && self.client_fin.is_none()
            && self.kernel_fin.is_none()
    }

    /// Whether forgetting the flow (it expired) leaves a kernel connection open that
    /// must be reset: a parked one, or one prepared and never used.
    pub fn holds_kernel_connection(&self) -> bool {
        self.state == AgentState::Parked || self.unused()
    }

    /// The sequence number a RST to the kernel must carry to reset its connection (its
    /// next expected byte, kernel space), once the handshake is done.
    pub fn kernel_rst_seq(&self) -> Option<SeqNumber> {
        self.handshake_done
            .then(|| SeqNumber(self.client_next.0.wrapping_add(self.to_kernel.seq_delta)))
    }

    /// (the end of what the kernel sent, the end of what the client sent), client space:
    /// what [`on_release`](Self::on_release) compares (for logs).
    pub fn stream_ends(&self) -> (SeqNumber, SeqNumber) {
        (self.kernel_next, self.client_next)
    }

    fn note_client(&mut self, seg: &SegFlags, now_ms: u64) {
        // Only bytes count: a bare ACK's sequence number is the client's next one, which
        // may lie past bytes the switch holds back from this agent (a request for another
        // backend) and the kernel has never seen.
        let end = seg.seq + seg.payload_len;
        if seg.payload_len > 0 && end.wrapping_diff(self.client_next) > 0 {
            self.client_next = end;
        }
        if seg.fin && self.client_fin.is_none() {
            self.client_fin = Some(seg.seq + seg.payload_len);
        }
        // The client's acknowledgments are in its view of the kernel's space, where
        // `kernel_fin` is kept.
        if let (Some(ack), Some(fin)) = (seg.ack, self.kernel_fin) {
            if ack > fin {
                self.kernel_fin_acked = true;
            }
        }
        self.check_ended(now_ms);
    }

    fn note_kernel(&mut self, seg: &SegFlags, now_ms: u64) {
        let end = SeqNumber(
            (seg.seq + seg.payload_len)
                .0
                .wrapping_add(self.to_client.seq_delta),
        );
        if end.wrapping_diff(self.kernel_next) > 0 {
            self.kernel_next = end;
        }
        if seg.fin && self.kernel_fin.is_none() {
            let fin = seg.seq + seg.payload_len;
            self.kernel_fin = Some(SeqNumber(fin.0.wrapping_add(self.to_client.seq_delta)));
        }
        // The kernel acknowledges in its view of the client's space: the client's own
        // until a switch-back moved it (`resume`), so it is taken back first.
        if let (Some(ack), Some(fin)) = (seg.ack, self.client_fin) {
            if SeqNumber(ack.0.wrapping_add(self.to_client.ack_delta)) > fin {
                self.client_fin_acked = true;
            }
        }
        self.check_ended(now_ms);
    }

    fn check_ended(&mut self, now_ms: u64) {
        if self.client_fin_acked && self.kernel_fin_acked && self.linger_from_ms.is_none() {
            self.linger_from_ms = Some(now_ms);
        }
    }

    fn close(&mut self, now_ms: u64) {
        self.state = AgentState::Closed;
        self.linger_from_ms.get_or_insert(now_ms);
    }
}
