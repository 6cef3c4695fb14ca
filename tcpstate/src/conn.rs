//! One spliced connection's state machine, from the client's cookie-validated ACK to
//! its removal. No I/O: every method takes the parsed segment and `now_ms`, updates
//! the state, and says what to send in an [`Outputs`] list that the dataplane turns
//! into packets (building new ones, or translating the received one in place).
//!
//! The life of a connection:
//!
//! ```text
//!  SYN ─► (stateless SYN-ACK with a cookie; no Conn yet)
//!  ACK with a valid cookie ─► ReadingHead: buffer the request head, ACK it
//!        │ head complete: the caller parses and routes it, then `connect`
//!        │                  (or `respond` with 400/431/503..., or `enqueue`
//!        │                  while every backend is at its connection limit)
//!        ▼
//!  Connecting: SYN to the backend with ISN = client ISN, so client sequence numbers
//!        │     need no translation toward the backend
//!        ▼ SYN-ACK: translations fixed, the buffered head sent to the backend
//!  Spliced: every segment translated in place both ways; FIN/RST tracked
//!        ▼ both FINs acked, or a RST, or an idle timeout
//!  Closed: linger (late retransmissions still find the entry), then removed
//!  Responding: the switch's own HTTP response + FIN, then removed
//!  Queued: waiting for a backend slot (bytes still buffered and acked), then `connect`
//! ```
//!
//! **Rewritten heads.** The caller may replace the start of the buffered bytes before
//! `connect` (`set_head_rewrite`: X-Forwarded-For inserted, a PROXY header in front).
//! The backend then receives `shift` more (or fewer) bytes than the client sent, and
//! the two sequence spaces differ by `shift` from the end of the buffered bytes on:
//! client → backend sequence numbers get `+shift`, backend → client acknowledgments
//! (and SACK edges) `−shift`. The switch acked the buffered bytes to the client itself,
//! so every backend ack inside the rewritten part maps to an ack the client already
//! has (harmless). A client retransmission of buffered bytes is dropped rather than
//! forwarded: those sequence numbers now hold other bytes on the backend's side.
//!
//! **Retries after the splice.** Until the backend sends its first response byte, the
//! head stays buffered. A backend that resets or closes before that is abandoned and,
//! for an idempotent request whose bytes all came from the buffer, the caller picks
//! another backend (`Verdict::BackendFailed { retry: true }`), so the client never
//! sees the failure; otherwise it answers 502.
use crate::cluster::sync::{SpliceRecord, SyncKind};
use crate::flow::FlowKey;
use crate::reasm::{HeadBuffer, Insert};
use crate::segment::{Chunk, Sender, Timeout};
use crate::splice::{rescale_window, Translation};
use crate::syncookie::SynOptions;
use crate::wire::{tcp_flags, MacAddr, SeqNumber};

/// Retransmission timeout for what the switch itself sends (head to the backend,
/// error responses). Fixed: these are one-off sends on a LAN, not a data stream.
pub const RTO_MS: u64 = 200;
/// Retransmissions of one thing before giving up.
pub const MAX_RETRANSMITS: u32 = crate::segment::MAX_RETRIES;
/// Challenge ACKs (RFC 5961) a connection may send in a burst, and how often it earns
/// one back: Linux answers at most one per 500 ms per socket (`tcp_invalid_ratelimit`),
/// so a flood of forged RSTs or SYNs cannot turn the switch into an ACK reflector.
pub const CHALLENGE_ACK_BURST: u32 = 2;
pub const CHALLENGE_ACK_INTERVAL_MS: u64 = 500;
/// How long an adopted connection learns its peers' sequence numbers from their
/// acknowledgments (`Conn::adopt`): a few round trips, beyond the retransmission of what
/// was in flight through the member that died.
pub const ADOPT_LEARN_MS: u64 = 3_000;

/// Timeouts and sizes from the config.
#[derive(Debug, Clone, Copy)]
pub struct ConnParams {
    /// MSS we announce to clients.
    pub mss: u16,
    /// Window scale we announce to clients that asked for scaling.
    pub window_scale: u8,
    pub head_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub connect_attempts: u32,
    pub idle_timeout_ms: u64,
    pub fin_timeout_ms: u64,
    pub closed_linger_ms: u64,
    /// Added to `now_ms` for the TSvals the switch's SYNs to backends carry: wall-clock
    /// milliseconds at start, so they keep growing across restarts (see `connect`).
    pub backend_ts_base: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    ReadingHead,
    Queued,
    Connecting,
    Spliced,
    Responding,
    /// Handed off to a backend's agent (VIP mode `handoff`): the backend answers the
    /// client directly; the switch forwards the client's segments (see `conn/handoff.rs`).
    HandedOff,
    Closed,
}

impl State {
    pub const ALL: [State; 7] = [
        State::ReadingHead,
        State::Queued,
        State::Connecting,
        State::Spliced,
        State::Responding,
        State::HandedOff,
        State::Closed,
    ];
    pub fn name(self) -> &'static str {
        match self {
            State::ReadingHead => "reading_head",
            State::Queued => "queued",
            State::Connecting => "connecting",
            State::Spliced => "spliced",
            State::Responding => "responding",
            State::HandedOff => "handed_off",
            State::Closed => "closed",
        }
    }
}

/// The parts of a received segment the state machine looks at.
#[derive(Debug, Clone, Copy)]
pub struct SegmentInfo {
    pub seq: SeqNumber,
    pub ack: Option<SeqNumber>,
    /// Without ACK (`TcpRepr` convention: ACK is `ack.is_some()`).
    pub flags: u8,
    pub window: u16,
    pub timestamps: Option<(u32, u32)>,
    pub payload_len: usize,
    /// Options of a SYN (backend SYN-ACK).
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// Whether its checksum was verified (by the port or in software). A spliced data
    /// segment whose contents the switch does not read is carried unverified (see
    /// [`Conn::carries_unchecked`]): it is forwarded if its sequence number fits the
    /// window, and nothing else in it is believed (its ACK, window or option values
    /// may be corrupt; the end host drops it if they are).
    pub checked: bool,
}

impl SegmentInfo {
    pub fn syn(&self) -> bool {
        self.flags & tcp_flags::SYN != 0
    }
    pub fn fin(&self) -> bool {
        self.flags & tcp_flags::FIN != 0
    }
    pub fn rst(&self) -> bool {
        self.flags & tcp_flags::RST != 0
    }
}

/// Payload of a segment the switch builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    None,
    /// `len` bytes of the buffered head from `offset`.
    Head {
        offset: usize,
        len: usize,
    },
    /// `len` bytes of the switch's own response from `offset` (the caller cuts it into
    /// MSS-sized segments with `segment::mss_chunks`; a FIN, if the segment has one, goes
    /// on the last).
    Response {
        offset: usize,
        len: usize,
    },
}

/// A response the switch sends itself.
#[derive(Debug, Clone)]
pub enum Response {
    /// Built into the binary (errors).
    Static(&'static [u8]),
    /// Built from the config or the request (rule actions).
    Shared(std::sync::Arc<[u8]>),
}

impl Response {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Response::Static(b) => b,
            Response::Shared(b) => b,
        }
    }
}

/// Bytes that replace the start of the buffered head toward the backend.
#[derive(Debug)]
struct HeadRewrite {
    bytes: Vec<u8>,
    /// How many buffered bytes `bytes` replaces.
    replaces: usize,
}

/// A segment the switch builds and sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentOut {
    pub seq: SeqNumber,
    pub ack: Option<SeqNumber>,
    /// Without ACK.
    pub flags: u8,
    pub window: u16,
    pub timestamps: Option<(u32, u32)>,
    /// SYN options (a SYN to a backend).
    pub syn_options: Option<SynOptions>,
    pub data: Data,
}

impl SegmentOut {
    /// A bare RST at `seq` (no ACK, no options): how the switch resets a peer.
    pub fn rst(seq: SeqNumber) -> SegmentOut {
        SegmentOut {
            seq,
            ack: None,
            flags: tcp_flags::RST,
            window: 0,
            timestamps: None,
            syn_options: None,
            data: Data::None,
        }
    }
}

/// What to send in answer to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Translate the received segment in place and send it on (to the other side).
    Forward,
    ToClient(SegmentOut),
    ToBackend(SegmentOut),
}

/// What the caller must do beyond sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// The head is complete: parse and route it, then `connect` or `respond`.
    HeadComplete,
    /// The backend attempt failed (RST or timeout): pick a backend again and
    /// `connect`, or `respond(503)` if none is left. `attempts` made so far.
    NeedBackend {
        attempts: u32,
    },
    /// The backend reset or closed the spliced connection before any response byte
    /// (the segment was not forwarded; the caller aborts the backend side with
    /// `abort_backend`). `retry`: the request may go to another backend
    /// (`prepare_retry`, then `connect`); otherwise answer 502.
    BackendFailed {
        retry: bool,
    },
    /// The connection waited in a queue past its timeout: `respond(503)`.
    QueueTimeout,
    /// The head did not arrive within the head timeout: `respond(408)`.
    HeadTimeout,
    /// The head buffer filled without a complete head: `respond(431)`.
    HeadTooLarge,
    /// Forget the connection (remove it from the flow table).
    Remove,
    /// A handed-off connection's head was not confirmed in time: send it to the agent
    /// again ([`Conn::handoff_head`]).
    HandoffResend,
    /// The segment was not acceptable and was not forwarded.
    Drop(ConnDrop),
    /// The segment was refused under RFC 5961 and answered with a challenge ACK
    /// (`sent`), or would have been but the connection's challenge budget is spent.
    Challenged {
        why: Challenge,
        sent: bool,
    },
}

/// Why a segment got a challenge ACK instead of being acted on (RFC 5961).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// A RST inside the window but not at the next expected sequence number (3.2).
    RstNotExact,
    /// A SYN on an established connection (4.2).
    SynOnEstablished,
    /// An ACK of bytes that were never sent (5.2).
    AckOfUnsent,
}

/// Why a segment of a known connection was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnDrop {
    OutOfWindow,
    HeadOverflow,
    Unexpected,
    /// A client retransmission of bytes the switch buffered and rewrote.
    HeadRetransmit,
}

/// A small fixed list of emits (no allocation per packet).
#[derive(Debug, Default)]
pub struct Outputs {
    items: [Option<Emit>; 4],
    len: usize,
}

impl Outputs {
    pub fn push(&mut self, e: Emit) {
        if self.len < self.items.len() {
            self.items[self.len] = Some(e);
            self.len += 1;
        }
    }
    pub fn clear(&mut self) {
        self.len = 0;
    }
    pub fn iter(&self) -> impl Iterator<Item = Emit> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An established backend connection as the splice needs it (see `Conn::attach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSide {
    /// Our next sequence number toward the backend.
    pub next_to_backend: SeqNumber,
    /// The backend's next sequence number (what we ack).
    pub next_from_backend: SeqNumber,
    /// The backend's latest TSval, if timestamps are on.
    pub ts_recent: Option<u32>,
    /// The latest TSval we sent the backend (ours must not go back: PAWS).
    pub ts_last_sent: u32,
    /// (the scale we announced to the backend, the backend's), if scaling is on.
    pub window_scales: Option<(u8, u8)>,
    /// The MSS the backend announced.
    pub mss: u16,
    /// The backend's latest raw window field.
    pub window: u16,
}

/// The backend a connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendTarget {
    pub id: usize,
    /// Backend side tuple: remote = backend, local = our backend-facing address/port.
    pub key: FlowKey,
}

#[derive(Debug)]
pub struct Conn {
    pub client: FlowKey,
    pub state: State,
    pub backend: Option<BackendTarget>,
    /// The client's SYN options, from the cookie.
    pub syn: SynOptions,
    client_isn: SeqNumber,
    our_isn: SeqNumber,
    backend_isn: SeqNumber,
    /// Backend-space number of this round's first byte toward the backend: the client's
    /// (`client_isn + 1`) after our own SYN, where a warm connection stands otherwise.
    backend_base: SeqNumber,
    /// Latest TSval from the client (echoed in our TSecr).
    client_ts_recent: u32,
    /// Latest TSval we sent the client (ours must not go backwards).
    our_ts_last: u32,
    /// Latest TSval from the backend (echoed to it in the head segments).
    backend_ts_recent: u32,
    /// The MSS the backend announced (the head is cut to fit it and the client's).
    pub backend_mss: u16,
    /// Client TSval → the TSval the backend sees (fixed at `connect`).
    backend_ts_delta: u32,
    /// Both sides negotiated timestamps (the client in its SYN, the backend in its SYN-ACK).
    ts_on: bool,
    /// Latest raw window field from the client.
    client_window: u16,
    /// Sequence number of the client segment that set it (RFC 9293 SND.WL1): an older
    /// segment, reordered, must not bring back a window since closed.
    client_window_seq: SeqNumber,
    /// Window scale we announced to the client (0 if none).
    our_ws: u8,
    pub head: Option<HeadBuffer>,
    /// What replaces the start of the head toward the backend, if anything.
    rewrite: Option<HeadRewrite>,
    /// Buffered client bytes at the splice (client space: from `client_isn + 1`).
    head_consumed: usize,
    /// Bytes of the head sent to the backend (backend space, rewrite included); the
    /// backend has acked them (and a client FIN sent after them) once `head_acked` is set.
    /// Handed off: `head_acked` is the control transport's ack (`handoff_taken`).
    head_sent: usize,
    head_acked: bool,
    /// The head's way to the backend, within the backend's window.
    head_tx: Sender,
    /// The backend has sent response bytes (no retry after that).
    response_started: bool,
    /// The request may be sent again to another backend (idempotent, all buffered).
    retry_ok: bool,
    /// The client's highest sequence number seen in spliced state (for our ack in a
    /// 502 after bytes went straight through).
    client_next: SeqNumber,
    pub c2b: Translation,
    pub b2c: Translation,
    /// Sequence number of the client's FIN (client space = backend space).
    client_fin: Option<SeqNumber>,
    client_fin_acked: bool,
    /// Sequence number of the backend's FIN, in the client's space.
    backend_fin: Option<SeqNumber>,
    backend_fin_acked: bool,
    /// Highest ack and window each side announced (client space), for window checks.
    client_ack: Option<SeqNumber>,
    backend_ack: Option<SeqNumber>,
    /// The receive window (bytes) each side last announced.
    client_wnd: u32,
    backend_wnd: u32,
    pub attempts: u32,
    /// The switch's own response while Responding.
    response: Response,
    /// The response's way to the client, within the client's window (its FIN included).
    resp_tx: Sender,
    client_fin_seen_responding: bool,
    /// While Responding: the sequence number after the client's FIN, once seen.
    client_fin_end: Option<SeqNumber>,
    deadline_ms: u64,
    last_activity_ms: u64,
    params: ConnParams,
    /// Bytes spliced each way (payload), for counters.
    pub bytes_c2b: u64,
    /// Client bytes forwarded straight to the backend in this round (decides retries).
    round_c2b: u64,
    /// This round's head is not acknowledged to the client by the switch: only the
    /// backend's ACK, through the splice, acknowledges it (`defer_head_ack`).
    defer_head_ack: bool,
    /// When this round was spliced onto a warm connection (`None`: our own SYN).
    warm_attached_ms: Option<u64>,
    pub bytes_b2c: u64,
    /// Client space: the sequence number after the backend's highest byte (or FIN) seen
    /// this round, i.e. the backend's SND.NXT as the client knows it.
    backend_next_seen: SeqNumber,
    /// Challenge ACKs this connection may still send now (see `CHALLENGE_ACK_BURST`),
    /// and when the budget last grew.
    challenge_tokens: u32,
    challenge_refilled_ms: u64,
    /// A connection adopted from a member that died (`adopt`): until then, an ACK of
    /// bytes the switch never saw go through is taken as news, not challenged (they went
    /// through the member that spliced the connection). 0: not learning. Four bytes (a
    /// wrapping time, cleared once past) keep `Conn` within its 640.
    adopted_until_ms: u32,
}

/// The window field that announces `bytes` at scale `ws`: rounded up to the scale's
/// granularity so that room stays room (as Linux's `__tcp_select_window` does), and a
/// zero window stays zero.
fn window_field(bytes: usize, ws: u8) -> u16 {
    let unit = (1usize << ws) - 1;
    (bytes.saturating_add(unit) >> ws).min(65535) as u16
}

impl Conn {
    /// A connection whose handshake was completed by a valid cookie. `client_seq` and
    /// `our_seq` are the ACK's seq and ack (ISNs + 1); `head` an empty buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn accept(
        client: FlowKey,
        syn: SynOptions,
        client_seq: SeqNumber,
        our_seq: SeqNumber,
        ack_seg: &SegmentInfo,
        mut head: HeadBuffer,
        params: ConnParams,
        now_ms: u64,
    ) -> Conn {
        head.reset(client_seq);
        let our_ws = if syn.window_scale.is_some() {
            params.window_scale
        } else {
            0
        };
        let (ts_recent, our_ts) = ack_seg.timestamps.unwrap_or((0, 0));
        Conn {
            client,
            state: State::ReadingHead,
            backend: None,
            syn,
            client_isn: client_seq - 1,
            our_isn: our_seq - 1,
            backend_isn: SeqNumber(0),
            backend_base: client_seq,
            client_ts_recent: ts_recent,
            our_ts_last: our_ts,
            backend_ts_recent: 0,
            ts_on: false,
            backend_ts_delta: 0,
            backend_mss: 536,
            client_window: ack_seg.window,
            client_window_seq: client_seq,
            our_ws,
            head: Some(head),
            rewrite: None,
            head_consumed: 0,
            head_sent: 0,
            head_acked: false,
            head_tx: Sender::empty(),
            response_started: false,
            retry_ok: false,
            client_next: client_seq,
            c2b: Translation::default(),
            b2c: Translation::default(),
            client_fin: None,
            client_fin_acked: false,
            backend_fin: None,
            backend_fin_acked: false,
            client_ack: None,
            backend_ack: None,
            client_wnd: 0,
            backend_wnd: 0,
            attempts: 0,
            response: Response::Static(b""),
            resp_tx: Sender::empty(),
            client_fin_seen_responding: false,
            client_fin_end: None,
            deadline_ms: now_ms + params.head_timeout_ms,
            last_activity_ms: now_ms,
            params,
            bytes_c2b: 0,
            round_c2b: 0,
            defer_head_ack: false,
            warm_attached_ms: None,
            bytes_b2c: 0,
            backend_next_seen: our_seq,
            challenge_tokens: CHALLENGE_ACK_BURST,
            challenge_refilled_ms: now_ms,
            adopted_until_ms: 0,
        }
    }

    /// What another member needs to carry on forwarding this connection
    /// (`cluster::sync`): once spliced with the whole head acknowledged by the backend,
    /// no byte is held by the switch any more and the translations are all there is.
    /// `None` before that (and in every other state).
    pub fn splice_record(
        &self,
        origin: u8,
        backend_mac: MacAddr,
        origin_backend_mac: MacAddr,
    ) -> Option<SpliceRecord> {
        let b = self
            .backend
            .filter(|_| self.state == State::Spliced && self.head_acked)?;
        Some(SpliceRecord {
            kind: SyncKind::Splice,
            origin,
            client: self.client,
            backend: b.key,
            client_isn: self.client_isn.0,
            our_isn: self.our_isn.0,
            backend_isn: self.backend_isn.0,
            c2b: self.c2b,
            b2c: self.b2c,
            client_mss: self.syn.mss,
            client_window_scale: self.syn.window_scale,
            our_window_scale: self.our_ws,
            sack_permitted: self.syn.sack_permitted,
            client_timestamps: self.syn.timestamps,
            ts_on: self.ts_on,
            backend_id: b.id.min(usize::from(u16::MAX)) as u16,
            backend_mac,
            origin_backend_mac,
            request_end: None,
            response_end: None,
            response_start: None,
            response_to_head: false,
            last: false,
            adopted: false,
        })
    }

    /// A spliced connection another member set up, taken over from its record when that
    /// member is gone. The switch has not seen its recent segments, so for
    /// `ADOPT_LEARN_MS` the next sequence numbers of each side are learned from the
    /// other side's acknowledgments instead of being checked against them (RFC 5961 5.2
    /// is relaxed for those seconds; the window checks learn as usual from the first
    /// segments).
    pub fn adopt(r: &SpliceRecord, params: ConnParams, now_ms: u64) -> Conn {
        let client_seq = SeqNumber(r.client_isn) + 1;
        let our_seq = SeqNumber(r.our_isn) + 1;
        let info = SegmentInfo {
            seq: client_seq,
            ack: Some(our_seq),
            flags: 0,
            window: 0,
            timestamps: None,
            payload_len: 0,
            mss: None,
            window_scale: None,
            sack_permitted: false,
            checked: true,
        };
        let syn = SynOptions {
            mss: r.client_mss,
            window_scale: r.client_window_scale,
            sack_permitted: r.sack_permitted,
            timestamps: r.client_timestamps,
        };
        let mut c = Conn::accept(
            r.client,
            syn,
            client_seq,
            our_seq,
            &info,
            HeadBuffer::new(0),
            params,
            now_ms,
        );
        c.head = None;
        c.state = State::Spliced;
        c.backend = Some(BackendTarget {
            id: usize::from(r.backend_id),
            key: r.backend,
        });
        c.our_ws = r.our_window_scale;
        c.backend_isn = SeqNumber(r.backend_isn);
        c.backend_base = client_seq + r.c2b.seq_delta as usize;
        c.ts_on = r.ts_on;
        c.c2b = r.c2b;
        c.b2c = r.b2c;
        c.head_acked = true;
        c.response_started = true;
        c.client_window_seq = client_seq;
        c.adopted_until_ms = ((now_ms + ADOPT_LEARN_MS) as u32).max(1);
        c.deadline_ms = now_ms + params.idle_timeout_ms;
        c
    }

    /// A client segment the caller refuses, ending the connection on it: what it says of
    /// the client (its acknowledgment, where its next byte is) is taken first, so that the
    /// resets that follow land exactly. An adopted connection may not have seen the client
    /// yet; its reset would otherwise carry a sequence number the client ignores.
    pub fn note_client_segment(&mut self, seg: &SegmentInfo) {
        if let Some(ack) = seg.ack.filter(|_| seg.checked && !seg.rst()) {
            self.client_ack = Some(self.client_ack.map_or(ack, |a| a.max(ack)));
        }
        if seg.seq.wrapping_diff(self.client_next) > 0 {
            self.client_next = seg.seq;
        }
        // Not heard from the backend since: it has had every byte before this one.
        if self.backend_ack.is_none() {
            self.backend_ack = Some(seg.seq);
        }
    }

    /// Whether this connection was adopted and is still learning its peers' numbers.
    fn learning(&mut self) -> bool {
        if self.adopted_until_ms == 0 {
            return false;
        }
        let left = self
            .adopted_until_ms
            .wrapping_sub(self.last_activity_ms as u32) as i32;
        if left <= 0 {
            self.adopted_until_ms = 0;
        }
        left > 0
    }

    /// One line for logs: the state and the close/ack bookkeeping.
    pub fn summary(&self) -> String {
        format!(
            "{:?} client={}:{} backend={:?} head_sent={} head_acked={} client_fin={:?}/{} backend_fin={:?}/{} client_ack={:?} backend_ack={:?} deadline={}",
            self.state,
            self.client.remote_ip,
            self.client.remote_port,
            self.backend.map(|b| b.key.local_port),
            self.head_sent,
            self.head_acked,
            self.client_fin.map(|s| s.0),
            self.client_fin_acked,
            self.backend_fin.map(|s| s.0),
            self.backend_fin_acked,
            self.client_ack.map(|s| s.0),
            self.backend_ack.map(|s| s.0),
            self.deadline_ms
        )
    }

    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// The client's ISN as this round sees it (its first SYN's, until a handoff move
    /// starts a new round).
    pub fn client_isn(&self) -> SeqNumber {
        self.client_isn
    }

    /// The buffered head (and any bytes after it received with it).
    pub fn head_bytes(&self) -> &[u8] {
        self.head.as_ref().map(|h| h.contiguous()).unwrap_or(&[])
    }

    /// Whether the buffered head is no longer needed: the backend has it, and no retry
    /// could need it again.
    fn head_done(&self) -> bool {
        match self.state {
            State::Spliced => {
                self.head_acked && (self.response_started || !self.retry_ok || self.round_c2b > 0)
            }
            // The agent's kernel has answered, or (control transport) the agent acked:
            // the head will not be sent again.
            State::HandedOff => self.response_started || self.head_acked,
            State::Closed => true,
            _ => false,
        }
    }

    /// Takes the head buffer back (for the caller's pool) once it is no longer needed.
    pub fn take_head_if_done(&mut self) -> Option<HeadBuffer> {
        if self.head_done() {
            self.head.take()
        } else {
            None
        }
    }

    /// Takes the rewrite buffer back (for the caller's pool) once it is no longer needed.
    pub fn take_rewrite_if_done(&mut self) -> Option<Vec<u8>> {
        if self.head_done() || self.state == State::Responding {
            self.rewrite.take().map(|r| r.bytes)
        } else {
            None
        }
    }

    /// Per-request routing: the previous request's response is complete and acked, and
    /// the client started its next request at `client_next`. Starts a new round on the
    /// same client connection as if it had just been accepted there: sequence bases move
    /// to `client_next` (the client's next byte) and `our_next` (the next byte of ours
    /// the client expects), the head is read into `head` (a buffer based at
    /// `client_next`: empty, or holding what the client sent ahead, see
    /// [`has_whole_head`](Self::has_whole_head)), and the caller routes it and
    /// `connect`s. The caller has aborted and released the previous backend (and
    /// taken back the rewrite buffer) before.
    pub fn next_round(
        &mut self,
        head: HeadBuffer,
        client_next: SeqNumber,
        our_next: SeqNumber,
        now_ms: u64,
    ) {
        debug_assert_eq!(head.base(), client_next);
        self.head = Some(head);
        self.client_isn = client_next - 1;
        self.our_isn = our_next - 1;
        self.backend_base = client_next;
        self.client_next = client_next;
        self.forget_backend_side();
        self.rewrite = None;
        self.head_consumed = 0;
        self.retry_ok = false;
        self.client_fin = None;
        self.attempts = 0;
        self.round_c2b = 0;
        self.defer_head_ack = false;
        self.warm_attached_ms = None;
        self.state = State::ReadingHead;
        self.deadline_ms = now_ms + self.params.head_timeout_ms;
    }

    /// For the round [`next_round`](Self::next_round) just started: the switch does not
    /// acknowledge the client's head bytes itself; the backend's acknowledgment, through
    /// the splice, does. In a cluster the head is then never lost with the instance that
    /// read it: until the backend has it, the client still holds it and sends it again,
    /// and a member that adopts the connection routes it (`cluster::sync`). The cost: a
    /// client whose head the backend takes longer than its RTO to acknowledge sends it
    /// again.
    pub fn defer_head_ack(&mut self) {
        self.defer_head_ack = true;
    }

    /// Whether the head buffer holds a whole request head (to be routed).
    pub fn has_whole_head(&self) -> bool {
        self.state == State::ReadingHead
            && self
                .head
                .as_ref()
                .is_some_and(|h| rules_head_end(h.contiguous()))
    }

    /// The first sequence number of this round's response, in the client's space.
    pub fn response_base(&self) -> SeqNumber {
        self.our_isn + 1
    }

    /// Whether a data segment of this connection may be carried without verifying its
    /// checksum: spliced, and nothing of the splice's setup still depends on its
    /// fields (the backend has the whole head, no head rewrite's bytes can come again).
    /// The caller also requires only ACK and PSH among its flags, a payload, and no
    /// byte of it that presplice framing reads; then what the switch takes from the
    /// segment is its sequence number (checked against the window), and a TSval only
    /// within a bounded step (see `SegmentInfo::checked`).
    pub fn carries_unchecked(&self) -> bool {
        self.state == State::Spliced && self.head_acked && self.rewrite.is_none()
    }

    /// Whether the client has acknowledged everything before `seq` (our bytes).
    pub fn client_acked(&self, seq: SeqNumber) -> bool {
        self.client_ack.is_some_and(|a| a.wrapping_diff(seq) >= 0)
    }

    /// Whether the backend has acknowledged every client byte up to `end` (client
    /// space), and nothing past it was forwarded: the request that ends there reached it
    /// whole. A backend that answered early (nginx's `return` answers at the head) may
    /// still miss the body's tail; reused, it would read the next request's bytes as
    /// that tail.
    pub fn backend_has_all_of(&self, end: SeqNumber) -> bool {
        self.client_next == end && self.backend_ack == Some(end)
    }

    /// Whether the backend has closed its side (sent a FIN).
    pub fn backend_closed(&self) -> bool {
        self.backend_fin.is_some()
    }

    /// Whether a rewritten head's buffer is still held.
    pub fn has_rewrite(&self) -> bool {
        self.rewrite.is_some()
    }

    /// Takes the rewrite buffer back unconditionally (the connection is going away).
    pub fn take_rewrite(&mut self) -> Option<Vec<u8>> {
        self.rewrite.take().map(|r| r.bytes)
    }

    /// Sends `bytes` to the backend instead of the first `replaces` buffered bytes (call
    /// before `connect`; `replaces` at most what is buffered).
    pub fn set_head_rewrite(&mut self, bytes: Vec<u8>, replaces: usize) {
        let replaces = replaces.min(self.head_bytes().len());
        self.rewrite = Some(HeadRewrite { bytes, replaces });
    }

    /// Whether the request may be retried on another backend after the splice, until
    /// the first response byte (the caller knows the method).
    pub fn set_retryable(&mut self, retry_ok: bool) {
        self.retry_ok = retry_ok;
    }

    /// What the backend receives from the buffer: two slices, in order.
    pub fn backend_stream(&self) -> (&[u8], &[u8]) {
        let buffered = self.head_bytes();
        match &self.rewrite {
            Some(r) => (&r.bytes, &buffered[r.replaces.min(buffered.len())..]),
            None => (buffered, &[]),
        }
    }

    /// Backend bytes minus client bytes (mod 2^32): the client → backend sequence shift.
    fn shift(&self) -> u32 {
        match &self.rewrite {
            Some(r) => (r.bytes.len() as u32).wrapping_sub(r.replaces as u32),
            None => 0,
        }
    }

    fn our_tsval(&mut self, now_ms: u64) -> u32 {
        // Our TS clock to the client is milliseconds, never going backwards from what the
        // cookie's TSval (or a translated backend TSval) already told the client.
        let t = (now_ms as u32).max(self.our_ts_last);
        self.our_ts_last = t;
        t
    }

    fn client_timestamps(&mut self, now_ms: u64) -> Option<(u32, u32)> {
        self.syn
            .timestamps
            .then(|| (self.our_tsval(now_ms), self.client_ts_recent))
    }

    /// An ACK to the client for what the head buffer holds.
    fn ack_to_client(&mut self, now_ms: u64) -> SegmentOut {
        let (ack, free) = match &self.head {
            Some(h) => (h.ack_seq(), h.window()),
            None => (self.client_isn + 1, 0),
        };
        SegmentOut {
            seq: self.our_isn + 1,
            ack: Some(ack),
            flags: 0,
            // Exactly the room left (a full buffer announces zero: bytes past it would
            // be dropped anyway).
            window: window_field(free, self.our_ws),
            timestamps: self.client_timestamps(now_ms),
            syn_options: None,
            data: Data::None,
        }
    }

    /// Takes one challenge ACK from the connection's budget, refilled one per
    /// `CHALLENGE_ACK_INTERVAL_MS` up to `CHALLENGE_ACK_BURST`; false if it is spent.
    fn take_challenge_token(&mut self, now_ms: u64) -> bool {
        let earned = now_ms.saturating_sub(self.challenge_refilled_ms) / CHALLENGE_ACK_INTERVAL_MS;
        if earned > 0 {
            self.challenge_tokens = (self.challenge_tokens
                + earned.min(u64::from(CHALLENGE_ACK_BURST)) as u32)
                .min(CHALLENGE_ACK_BURST);
            self.challenge_refilled_ms += earned * CHALLENGE_ACK_INTERVAL_MS;
        }
        if self.challenge_tokens == 0 {
            return false;
        }
        self.challenge_tokens -= 1;
        true
    }

    /// RFC 5961: the segment is refused; `ack` is the challenge ACK to send if the
    /// budget allows (it tells the real peer where it stands, so a genuine RST comes
    /// back exact and a genuine SYN's sender resets its stale connection).
    fn challenge(
        &mut self,
        why: Challenge,
        ack: impl FnOnce(&mut Self) -> Emit,
        now_ms: u64,
        out: &mut Outputs,
    ) -> Verdict {
        let sent = self.take_challenge_token(now_ms);
        if sent {
            let e = ack(self);
            out.push(e);
        }
        Verdict::Challenged { why, sent }
    }

    /// A segment from the client.
    pub fn on_client(
        &mut self,
        seg: &SegmentInfo,
        payload: &[u8],
        now_ms: u64,
        out: &mut Outputs,
    ) -> Verdict {
        self.last_activity_ms = now_ms;
        if let Some((tsval, _)) = seg.timestamps {
            // Only newer TSvals (RFC 7323 4.3): a reordered old segment must not make us
            // echo, or send the backend, a value below one it has already seen.
            if newer_ts(tsval, self.client_ts_recent, seg.checked) {
                self.client_ts_recent = tsval;
            }
        }
        if seg.checked && seg.ack.is_some() && seg.seq.wrapping_diff(self.client_window_seq) >= 0 {
            self.client_window = seg.window;
            self.client_window_seq = seg.seq;
        }
        match self.state {
            State::ReadingHead | State::Queued | State::Connecting => {
                self.client_before_splice(seg, payload, now_ms, out)
            }
            State::Spliced => self.client_spliced(seg, now_ms, out),
            State::Responding => self.client_responding(seg, now_ms, out),
            State::HandedOff => self.client_handed_off(seg, now_ms),
            State::Closed => {
                // Late retransmissions after the close: pass them on while the entry
                // lingers so the other end can finish (it may have missed our FIN/ACK).
                if self.backend.is_some() && self.head_sent > 0 && !seg.syn() {
                    out.push(Emit::Forward);
                    Verdict::Continue
                } else {
                    Verdict::Drop(ConnDrop::Unexpected)
                }
            }
        }
    }

    fn client_before_splice(
        &mut self,
        seg: &SegmentInfo,
        payload: &[u8],
        now_ms: u64,
        out: &mut Outputs,
    ) -> Verdict {
        let Some(head) = self.head.as_ref() else {
            return Verdict::Drop(ConnDrop::Unexpected);
        };
        let rcv_nxt = head.ack_seq();
        let rcv_wnd = head.window();
        let ack_to_client = |c: &mut Self| Emit::ToClient(c.ack_to_client(now_ms));
        if seg.rst() {
            // RFC 5961 3.2: only a RST at exactly the next expected byte ends it; one
            // elsewhere in the window is challenged, one outside it ignored.
            let at = i64::from(seg.seq.wrapping_diff(rcv_nxt));
            // (After its FIN, a client's RST may count it: one past.)
            if at == 0 || (at == 1 && self.client_fin == Some(rcv_nxt)) {
                self.close(now_ms);
                return Verdict::Remove;
            }
            if at < 0 || at > rcv_wnd.max(1) as i64 {
                return Verdict::Drop(ConnDrop::OutOfWindow);
            }
            return self.challenge(Challenge::RstNotExact, ack_to_client, now_ms, out);
        }
        if seg.syn() {
            return self.challenge(Challenge::SynOnEstablished, ack_to_client, now_ms, out);
        }
        if seg
            .ack
            .is_some_and(|a| a.wrapping_diff(self.our_isn + 1) > 0)
        {
            // The switch has sent no byte yet: this acks nothing that exists.
            return self.challenge(Challenge::AckOfUnsent, ack_to_client, now_ms, out);
        }
        if seg.fin() {
            // Remembered where it stands: once the bytes before it are all buffered, it
            // goes to the backend after them (`send_head`), or is acked by our own
            // response, whether or not the client ever sends it again.
            self.client_fin = Some(seg.seq + seg.payload_len);
        }
        let Some(head) = self.head.as_mut() else {
            return Verdict::Drop(ConnDrop::Unexpected);
        };
        let before = head.contiguous_len();
        let mut verdict = Verdict::Continue;
        if !payload.is_empty() {
            match head.insert(seg.seq, payload) {
                Insert::Added { .. } | Insert::Duplicate => {}
                Insert::OutOfWindow => verdict = Verdict::Drop(ConnDrop::OutOfWindow),
                _ => verdict = Verdict::Drop(ConnDrop::HeadOverflow),
            }
        }
        let grew = head.contiguous_len() > before;
        if !payload.is_empty() && !self.defer_head_ack {
            // ACK data like a careful server: every data segment, in order or not (an
            // out-of-order one gets a duplicate ACK that tells the client what is missing).
            let ack = self.ack_to_client(now_ms);
            out.push(Emit::ToClient(ack));
        }
        if self.state == State::ReadingHead {
            let head = self.head.as_ref().expect("checked above");
            if grew && rules_head_end(head.contiguous()) {
                // A FIN riding on the head's last segment is not acked here: it goes to
                // the backend right after the head (`send_head`), and the backend's ACK
                // of it reaches the client through the splice (half-close).
                return Verdict::HeadComplete;
            }
            if rules_head_end(head.contiguous()) {
                // A whole head held already (a presplice round that starts with the
                // pipelined requests held for it: the caller routes it). A full buffer
                // is no reason to refuse it.
                return verdict;
            }
            if head.is_full() {
                return Verdict::HeadTooLarge;
            }
            if seg.fin() {
                let fin_at = seg.seq + seg.payload_len;
                if head.ack_seq() == fin_at {
                    // The client closed before sending a whole head: close our side as a
                    // server would (our FIN acks theirs) instead of vanishing, or its FIN
                    // retransmissions would each look like a new cookie-valid connection.
                    self.client_fin_end = Some(fin_at + 1);
                    self.client_fin_seen_responding = true;
                    self.respond(Response::Static(b""), now_ms, out);
                    return Verdict::Continue;
                }
                // Out of order: the duplicate ACK above tells it what is missing.
            }
        }
        verdict
    }

    fn client_spliced(&mut self, seg: &SegmentInfo, now_ms: u64, out: &mut Outputs) -> Verdict {
        let challenge_ack = |c: &mut Self| Emit::ToClient(c.challenge_ack_to_client());
        if seg.syn() {
            // RFC 5961 4.2: whatever its sequence number, never forwarded, never a reset.
            return self.challenge(Challenge::SynOnEstablished, challenge_ack, now_ms, out);
        }
        if !self.client_in_window(seg) {
            return Verdict::Drop(ConnDrop::OutOfWindow);
        }
        if seg.rst() && !self.client_rst_exact(seg.seq) {
            // RFC 5961 3.2: in the window but not where the backend expects it: it might
            // be blind, so it is neither forwarded nor allowed to end the connection.
            return self.challenge(Challenge::RstNotExact, challenge_ack, now_ms, out);
        }
        if let Some(a) = seg
            .ack
            .filter(|a| !seg.rst() && seg.checked && a.wrapping_diff(self.backend_next_seen) > 0)
        {
            if self.learning() {
                // Adopted: the backend sent them through the member that died.
                self.backend_next_seen = a;
            } else {
                // RFC 5961 5.2: it acks bytes the backend never sent through the switch.
                return self.challenge(Challenge::AckOfUnsent, challenge_ack, now_ms, out);
            }
        }
        let consumed_end = self.client_isn + 1 + self.head_consumed;
        if seg.payload_len > 0
            && (seg.seq + seg.payload_len).wrapping_diff(self.client_isn + 1) <= 0
        {
            // Bytes of an earlier round (presplice): they belonged to another backend
            // connection; mapped into this one they would land on other bytes.
            return Verdict::Drop(ConnDrop::HeadRetransmit);
        }
        if seg.payload_len > 0 && seg.seq.wrapping_diff(consumed_end) < 0 {
            if self.rewrite.is_some() {
                // These sequence numbers hold other bytes on the backend's side.
                return Verdict::Drop(ConnDrop::HeadRetransmit);
            }
        } else if seg.payload_len > 0 {
            self.bytes_c2b += seg.payload_len as u64;
            self.round_c2b += seg.payload_len as u64;
        }
        let end = seg.seq + seg.payload_len + usize::from(seg.fin());
        if end.wrapping_diff(self.client_next) > 0 {
            self.client_next = end;
        }
        if seg.rst() {
            self.state = State::Closed;
            self.deadline_ms = self.last_activity_ms + self.params.closed_linger_ms;
            out.push(Emit::Forward);
            return Verdict::Continue;
        }
        if seg.fin() {
            self.client_fin = Some(seg.seq + seg.payload_len);
        }
        if let Some(ack) = seg.ack.filter(|_| seg.checked) {
            self.client_ack = Some(self.client_ack.map_or(ack, |a| a.max(ack)));
            self.client_wnd = u32::from(seg.window) << self.c2b.window_shift_in;
            if let Some(bf) = self.backend_fin {
                if ack.wrapping_diff(bf) > 0 {
                    self.backend_fin_acked = true;
                }
            }
        }
        self.after_fin_progress();
        out.push(Emit::Forward);
        Verdict::Continue
    }

    /// Whether a client RST in spliced state is exact: at the next byte the backend
    /// expects, as far as the switch can tell (the client's next byte it has seen, or
    /// the backend's latest ack; after the client's FIN, the FIN's own number too, as
    /// Linux's `tcp_reset_check` allows).
    fn client_rst_exact(&self, seq: SeqNumber) -> bool {
        seq == self.client_next || Some(seq) == self.backend_ack || Some(seq) == self.client_fin
    }

    /// Whether a backend RST (its sequence number in client space) is exact, likewise.
    fn backend_rst_exact(&self, seq_client_space: SeqNumber) -> bool {
        seq_client_space == self.backend_next_seen
            || Some(seq_client_space) == self.client_ack
            || Some(seq_client_space) == self.backend_fin
    }

    /// A challenge ACK to the client of a spliced connection, in the backend's name:
    /// the backend's next sequence number and window, our next expected client byte.
    fn challenge_ack_to_client(&self) -> SegmentOut {
        SegmentOut {
            seq: self.backend_next_seen,
            ack: Some(self.client_next),
            flags: 0,
            window: window_field(self.backend_wnd as usize, self.our_ws),
            // The highest TSval the client has had from this side: never backwards.
            timestamps: self
                .syn
                .timestamps
                .then_some((self.our_ts_last, self.client_ts_recent)),
            syn_options: None,
            data: Data::None,
        }
    }

    /// A challenge ACK to the backend of a spliced connection, in the client's name.
    fn challenge_ack_to_backend(&self) -> SegmentOut {
        SegmentOut {
            seq: self.client_next + self.c2b.seq_delta as usize,
            ack: Some(self.backend_next_seen + self.b2c.seq_delta.wrapping_neg() as usize),
            ..self.ack_to_backend()
        }
    }

    fn client_in_window(&self, seg: &SegmentInfo) -> bool {
        in_window(
            seg.seq,
            seg.payload_len,
            self.backend_ack,
            self.backend_wnd,
            seg.rst(),
        )
    }

    fn backend_in_window(&self, seq_client_space: SeqNumber, seg: &SegmentInfo) -> bool {
        in_window(
            seq_client_space,
            seg.payload_len,
            self.client_ack,
            self.client_wnd,
            seg.rst(),
        )
    }

    fn client_responding(&mut self, seg: &SegmentInfo, now_ms: u64, out: &mut Outputs) -> Verdict {
        let rcv_nxt = self.client_rcv_nxt();
        let ack_now = |c: &mut Self| Emit::ToClient(c.responding_ack(now_ms));
        if seg.rst() {
            // RFC 5961 3.2, as in every state: exact ends it, in-window is challenged.
            let at = i64::from(seg.seq.wrapping_diff(rcv_nxt));
            if at == 0 || (at == -1 && self.client_fin_end.is_some()) {
                return Verdict::Remove;
            }
            if !(0..=RESPONDING_WINDOW as i64).contains(&at) {
                return Verdict::Drop(ConnDrop::OutOfWindow);
            }
            return self.challenge(Challenge::RstNotExact, ack_now, now_ms, out);
        }
        if seg.syn() {
            return self.challenge(Challenge::SynOnEstablished, ack_now, now_ms, out);
        }
        if let Some(ack) = seg.ack {
            let offset = i64::from(ack.wrapping_diff(self.our_isn + 1));
            if !self.resp_tx.ack_acceptable(offset) {
                return self.challenge(Challenge::AckOfUnsent, ack_now, now_ms, out);
            }
            let window = self.client_window_bytes(seg.window);
            if offset >= 0 && self.resp_tx.on_ack(offset as usize, window, seg.seq) {
                self.deadline_ms = now_ms + RTO_MS;
            }
        }
        if seg.fin() {
            self.client_fin_seen_responding = true;
            self.client_fin_end = Some(seg.seq + seg.payload_len + 1);
        }
        // More of the response, as far as the client's (perhaps reopened) window allows.
        if let Some(chunk) = self.resp_tx.poll() {
            let seg = self.response_segment(chunk, now_ms);
            out.push(Emit::ToClient(seg));
            self.deadline_ms = now_ms + RTO_MS;
        }
        if seg.fin() && self.client_fin_end.is_some() {
            // ACK the client's FIN (and any retransmission of it).
            let ack = self.responding_ack(now_ms);
            out.push(Emit::ToClient(ack));
        }
        if self.resp_tx.done() && self.client_fin_seen_responding {
            self.close(now_ms);
        }
        Verdict::Continue
    }

    /// The client's window field in bytes (its scale applies if scaling was agreed).
    fn client_window_bytes(&self, field: u16) -> usize {
        let scale = if self.our_ws > 0 {
            self.syn.window_scale.unwrap_or(0).min(14)
        } else {
            0
        };
        usize::from(field) << scale
    }

    /// The client's next byte as far as the switch has taken it (its FIN included once
    /// acked by the switch's own response).
    fn client_rcv_nxt(&self) -> SeqNumber {
        let buffered = self
            .head
            .as_ref()
            .map(|h| h.ack_seq())
            .unwrap_or(self.client_isn + 1);
        let seen = if buffered.wrapping_diff(self.client_next) > 0 {
            buffered
        } else {
            self.client_next
        };
        self.client_fin_end.unwrap_or(seen)
    }

    /// A pure ACK while Responding: our next byte, their next byte.
    fn responding_ack(&mut self, now_ms: u64) -> SegmentOut {
        SegmentOut {
            seq: self.our_isn + 1 + self.resp_tx.next(),
            ack: Some(self.client_rcv_nxt()),
            flags: 0,
            window: window_field(RESPONDING_WINDOW, self.our_ws),
            timestamps: self.client_timestamps(now_ms),
            syn_options: None,
            data: Data::None,
        }
    }

    /// Every backend is at its limit: wait (bytes are still buffered and acked) until
    /// the caller `connect`s, or `timeout_ms` passes (`Verdict::QueueTimeout`).
    pub fn enqueue(&mut self, timeout_ms: u64, now_ms: u64) {
        self.state = State::Queued;
        self.deadline_ms = now_ms + timeout_ms;
    }

    /// The caller routed the head to `target`: send the SYN (ISN = client ISN).
    pub fn connect(&mut self, target: BackendTarget, now_ms: u64, out: &mut Outputs) {
        // Our SYN's TSval comes from a clock that only grows (wall-clock ms), not from the
        // client's TSval: when a local port is reused while the backend still holds the old
        // connection in TIME_WAIT, the newer TSval is what lets it accept the SYN (Linux
        // `tcp_timewait_state_process`, RFC 6191). Client TSvals are shifted into this
        // clock from then on, and the backend's echoes shifted back.
        let backend_clock = self.params.backend_ts_base.wrapping_add(now_ms as u32);
        self.backend_ts_delta = backend_clock.wrapping_sub(self.client_ts_recent);
        self.backend = Some(target);
        self.state = State::Connecting;
        self.attempts += 1;
        self.deadline_ms = now_ms + self.params.connect_timeout_ms;
        out.push(Emit::ToBackend(self.syn_to_backend()));
    }

    fn syn_to_backend(&self) -> SegmentOut {
        SegmentOut {
            seq: self.client_isn,
            ack: None,
            flags: tcp_flags::SYN,
            window: 65535,
            timestamps: self
                .syn
                .timestamps
                .then_some((self.client_ts_recent.wrapping_add(self.backend_ts_delta), 0)),
            // The client's options, so what the backend sends fits the client; the MSS no
            // larger than the switch's own.
            syn_options: Some(SynOptions {
                mss: self.syn.mss.min(self.params.mss),
                ..self.syn
            }),
            data: Data::None,
        }
    }

    /// Answer the client with the switch's own HTTP response (`response` ends the
    /// connection: it carries `Connection: close`) and a FIN, within the client's window.
    pub fn respond(&mut self, response: Response, now_ms: u64, out: &mut Outputs) {
        if let (Some(fin), None) = (self.client_fin, self.client_fin_end) {
            // The client closed its side after the request (or after what went straight
            // to a backend): the response acks its FIN.
            let seen = self.client_rcv_nxt();
            if fin.wrapping_diff(seen) <= 0 {
                self.client_fin_end = Some(fin + 1);
                self.client_fin_seen_responding = true;
            }
        }
        self.state = State::Responding;
        self.response = response;
        let window = self.client_window_bytes(self.client_window);
        self.resp_tx = Sender::new(self.response.bytes().len(), true, window)
            .window_from(self.client_window_seq);
        self.deadline_ms = now_ms + RTO_MS;
        if let Some(chunk) = self.resp_tx.poll() {
            let seg = self.response_segment(chunk, now_ms);
            out.push(Emit::ToClient(seg));
        }
    }

    /// The response's bytes (what `Data::Response` refers to).
    pub fn response_bytes(&self) -> &[u8] {
        self.response.bytes()
    }

    /// `chunk` of the response (and the FIN if it carries it).
    fn response_segment(&mut self, chunk: Chunk, now_ms: u64) -> SegmentOut {
        SegmentOut {
            seq: self.our_isn + 1 + chunk.offset,
            ack: Some(self.client_rcv_nxt()),
            flags: tcp_flags::PSH | if chunk.fin { tcp_flags::FIN } else { 0 },
            window: window_field(RESPONDING_WINDOW, self.our_ws),
            timestamps: self.client_timestamps(now_ms),
            syn_options: None,
            data: Data::Response {
                offset: chunk.offset,
                len: chunk.len,
            },
        }
    }

    /// A zero-window probe to the client: the byte before its last ack, no data.
    fn response_probe(&mut self, now_ms: u64) -> SegmentOut {
        SegmentOut {
            seq: self.our_isn + self.resp_tx.acked(),
            ..self.responding_ack(now_ms)
        }
    }

    /// A segment from the backend.
    pub fn on_backend(&mut self, seg: &SegmentInfo, now_ms: u64, out: &mut Outputs) -> Verdict {
        self.last_activity_ms = now_ms;
        match self.state {
            State::Connecting => self.backend_connecting(seg, now_ms, out),
            State::Spliced => self.backend_spliced(seg, now_ms, out),
            State::Closed if self.head_sent > 0 && !seg.syn() => {
                out.push(Emit::Forward);
                Verdict::Continue
            }
            _ => Verdict::Drop(ConnDrop::Unexpected),
        }
    }

    fn backend_connecting(&mut self, seg: &SegmentInfo, now_ms: u64, out: &mut Outputs) -> Verdict {
        let expected_ack = self.client_isn + 1;
        if seg.rst() {
            if seg.ack == Some(expected_ack) {
                return Verdict::NeedBackend {
                    attempts: self.attempts,
                };
            }
            return Verdict::Drop(ConnDrop::Unexpected);
        }
        if !seg.syn() || seg.ack != Some(expected_ack) {
            return Verdict::Drop(ConnDrop::Unexpected);
        }
        self.backend_isn = seg.seq;
        // Window scaling is on toward the backend only if both SYNs carried it (our SYN
        // carried the client's scale).
        let ws = match (self.syn.window_scale, seg.window_scale) {
            (Some(c), Some(b)) => Some((c, b)),
            _ => None,
        };
        let side = BackendSide {
            next_to_backend: self.client_isn + 1,
            next_from_backend: seg.seq + 1,
            ts_recent: seg.timestamps.map(|t| t.0),
            ts_last_sent: self.client_ts_recent.wrapping_add(self.backend_ts_delta),
            window_scales: ws,
            mss: seg.mss.unwrap_or(536),
            window: seg.window,
        };
        // A SYN-ACK's window is never scaled (RFC 7323 2.2).
        self.splice_with(side, u32::from(seg.window), now_ms, out);
        Verdict::Continue
    }

    /// Splices onto the backend connection `side` describes (just opened by our SYN, or
    /// a warm one): fixes both translations, starts the window checks, sends the head.
    /// `backend_window`: the backend's window in bytes.
    fn splice_with(
        &mut self,
        side: BackendSide,
        backend_window: u32,
        now_ms: u64,
        out: &mut Outputs,
    ) {
        let target = self.backend.expect("splicing has a backend");
        self.backend_isn = side.next_from_backend - 1;
        self.backend_base = side.next_to_backend;
        let client_ws = self.syn.window_scale.unwrap_or(0);
        let (to_backend_ws, backend_ws) = side.window_scales.unwrap_or((0, 0));
        let ts_on = self.syn.timestamps && side.ts_recent.is_some();
        // Backend TSvals are shifted into our TS clock toward the client, just ahead of
        // what we last sent it, so the client's PAWS check sees them only increase.
        let ts_delta = match side.ts_recent {
            Some(b_tsval) if ts_on => self.our_tsval(now_ms).wrapping_add(1).wrapping_sub(b_tsval),
            _ => 0,
        };
        let vip = (self.client.local_ip, self.client.local_port);
        let client = (self.client.remote_ip, self.client.remote_port);
        let local = (target.key.local_ip, target.key.local_port);
        let backend = (target.key.remote_ip, target.key.remote_port);
        // Client → backend: where this round starts on each side, plus the rewrite.
        let seq_delta = self
            .backend_base
            .0
            .wrapping_sub((self.client_isn + 1).0)
            .wrapping_add(self.shift());
        self.c2b = Translation {
            src: local,
            dst: backend,
            seq_delta,
            ack_delta: self.backend_isn.0.wrapping_sub(self.our_isn.0),
            ts_val_delta: self.backend_ts_delta,
            ts_ecr_delta: ts_delta.wrapping_neg(),
            window_shift_in: client_ws,
            window_shift_out: to_backend_ws,
        };
        self.b2c = Translation {
            src: vip,
            dst: client,
            seq_delta: self.our_isn.0.wrapping_sub(self.backend_isn.0),
            ack_delta: seq_delta.wrapping_neg(),
            ts_val_delta: ts_delta,
            ts_ecr_delta: self.backend_ts_delta.wrapping_neg(),
            window_shift_in: backend_ws,
            window_shift_out: self.our_ws,
        };
        if let Some(b_tsval) = side.ts_recent {
            self.backend_ts_recent = b_tsval;
        }
        self.ts_on = ts_on;
        // Both directions' window checks start now, from what each side has announced,
        // so a blind RST cannot slip in before the first spliced segment.
        self.client_ack = Some(self.our_isn + 1);
        self.client_wnd = u32::from(self.client_window) << client_ws;
        self.backend_ack = Some(self.client_isn + 1);
        self.backend_wnd = backend_window;
        self.backend_mss = side.mss;
        self.state = State::Spliced;
        self.head_consumed = self.head_bytes().len();
        let buffered_end = self.client_isn + 1 + self.head_consumed;
        if buffered_end.wrapping_diff(self.client_next) > 0 {
            self.client_next = buffered_end;
        }
        let (a, b) = self.backend_stream();
        self.head_sent = a.len() + b.len();
        if self.client_fin == Some(buffered_end) {
            self.client_next = buffered_end + 1;
        }
        self.backend_next_seen = self.our_isn + 1;
        self.deadline_ms = now_ms + RTO_MS;
        self.start_head(out);
    }

    /// Splices onto an established (warm) backend connection instead of opening one:
    /// the caller routed the head to `target` and took `side` from its warm pool.
    pub fn attach(
        &mut self,
        target: BackendTarget,
        side: BackendSide,
        now_ms: u64,
        out: &mut Outputs,
    ) {
        let clock = self.params.backend_ts_base.wrapping_add(now_ms as u32);
        // Never below what the backend saw last on this connection (PAWS): a previous
        // client's timestamps may have run ahead of our clock.
        let backend_clock = if side.ts_last_sent.wrapping_sub(clock) as i32 >= 0 {
            side.ts_last_sent.wrapping_add(1)
        } else {
            clock
        };
        self.backend_ts_delta = backend_clock.wrapping_sub(self.client_ts_recent);
        self.backend = Some(target);
        self.attempts += 1;
        self.warm_attached_ms = Some(now_ms);
        let window = u32::from(side.window) << side.window_scales.map_or(0, |w| w.1);
        self.splice_with(side, window, now_ms, out);
    }

    /// Whether a warm backend connection with these properties can carry this client's
    /// traffic: timestamps on both or neither, and its segments no larger than the
    /// client takes.
    pub fn fits(&self, ts_on: bool, mss_announced_to_backend: u16) -> bool {
        self.syn.timestamps == ts_on && self.syn.mss >= mss_announced_to_backend
    }

    /// At the end of a round whose exchange is over (every request byte acked by the
    /// backend, every response byte — up to `our_next`, client space — acked by the
    /// client, no FIN either way): the backend connection as it stands, for the warm
    /// pool. `None` if it cannot be reused.
    pub fn detach(&mut self, our_next: SeqNumber) -> Option<(BackendTarget, BackendSide)> {
        if self.state != State::Spliced
            || self.client_fin.is_some()
            || self.backend_fin.is_some()
            || !self.head_acked
        {
            return None;
        }
        let target = self.backend?;
        // Everything the client sent was acked by the backend, everything the backend
        // sent was acked by the client: both next numbers are known exactly.
        let client_acked = self.backend_ack?;
        if client_acked != self.client_next {
            return None;
        }
        // The caller saw the client ack `our_next` (possibly in the segment it is about
        // to hand over, so not yet in `client_ack`).
        let side = BackendSide {
            next_to_backend: client_acked + self.c2b.seq_delta as usize,
            next_from_backend: our_next + self.b2c.seq_delta.wrapping_neg() as usize,
            ts_recent: self.ts_on.then_some(self.backend_ts_recent),
            ts_last_sent: self.client_ts_recent.wrapping_add(self.backend_ts_delta),
            window_scales: (self.c2b.window_shift_out != 0 || self.b2c.window_shift_in != 0)
                .then_some((self.c2b.window_shift_out, self.b2c.window_shift_in)),
            mss: self.backend_mss,
            window: (self.backend_wnd >> self.b2c.window_shift_in).min(65535) as u16,
        };
        self.backend = None;
        Some((target, side))
    }

    /// Starts sending the buffered head (and what came with it) to the backend.
    fn start_head(&mut self, out: &mut Outputs) {
        // A client FIN right after the buffered bytes (it closed its side after the
        // request) goes with them: after a retry, the new backend must see it too.
        let fin = self.client_fin == Some(self.client_isn + 1 + self.head_consumed);
        self.head_tx = Sender::new(self.head_sent, fin, self.backend_wnd as usize);
        self.send_head(out);
    }

    /// What the backend's window allows of the head, as one `Data::Head` emit; the
    /// caller cuts it into MSS-sized segments.
    fn send_head(&mut self, out: &mut Outputs) {
        if let Some(chunk) = self.head_tx.poll() {
            out.push(Emit::ToBackend(self.head_segment(chunk)));
        }
    }

    fn head_segment(&self, chunk: Chunk) -> SegmentOut {
        SegmentOut {
            seq: self.backend_base + chunk.offset,
            ack: Some(self.backend_isn + 1),
            flags: tcp_flags::PSH | if chunk.fin { tcp_flags::FIN } else { 0 },
            window: self.window_to_backend(),
            timestamps: self.ts_on.then_some((
                self.client_ts_recent.wrapping_add(self.backend_ts_delta),
                self.backend_ts_recent,
            )),
            syn_options: None,
            data: Data::Head {
                offset: chunk.offset,
                len: chunk.len,
            },
        }
    }

    /// The client's latest window, re-expressed at the scale the backend applies
    /// (exactly: zero stays zero).
    fn window_to_backend(&self) -> u16 {
        rescale_window(
            self.client_window,
            self.c2b.window_shift_in,
            self.c2b.window_shift_out,
        )
    }

    /// A zero-window probe to the backend (the byte before its last ack of the head).
    fn head_probe(&self) -> SegmentOut {
        SegmentOut {
            seq: self.backend_base + self.head_tx.acked() - 1,
            flags: 0,
            data: Data::None,
            ..self.head_segment(Chunk {
                offset: 0,
                len: 0,
                fin: false,
            })
        }
    }

    fn backend_spliced(&mut self, seg: &SegmentInfo, now_ms: u64, out: &mut Outputs) -> Verdict {
        let challenge_ack = |c: &mut Self| Emit::ToBackend(c.challenge_ack_to_backend());
        if seg.syn() {
            if seg.seq == self.backend_isn && !self.head_acked {
                // Our ACK of its SYN-ACK was lost: send the head again (it carries the
                // ACK).
                self.head_tx.rewind();
                self.send_head(out);
                return Verdict::Drop(ConnDrop::Unexpected);
            }
            return self.challenge(Challenge::SynOnEstablished, challenge_ack, now_ms, out);
        }
        let seq_client_space = SeqNumber(seg.seq.0.wrapping_add(self.b2c.seq_delta));
        if !self.backend_in_window(seq_client_space, seg) {
            return Verdict::Drop(ConnDrop::OutOfWindow);
        }
        if seg.rst() && !self.backend_rst_exact(seq_client_space) {
            return self.challenge(Challenge::RstNotExact, challenge_ack, now_ms, out);
        }
        if let Some(raw_ack) = seg.ack.filter(|_| !seg.rst() && seg.checked) {
            // RFC 5961 5.2: not beyond what the switch sent (the client's bytes, the
            // head, a FIN after them).
            let head_end = self.backend_base + self.head_tx.next();
            let sent = (self.client_next + self.c2b.seq_delta as usize).max(head_end);
            if raw_ack.wrapping_diff(sent) > 0 {
                if !self.learning() {
                    return self.challenge(Challenge::AckOfUnsent, challenge_ack, now_ms, out);
                }
                self.client_next = raw_ack + self.c2b.seq_delta.wrapping_neg() as usize;
            }
        }
        if seg.payload_len > 0
            && (seq_client_space + seg.payload_len).wrapping_diff(self.our_isn + 1) <= 0
        {
            // A reused warm connection resending an earlier exchange's bytes (that client
            // acked them, its ack was not forwarded): never to this client. Ack it here.
            out.push(Emit::ToBackend(self.ack_to_backend()));
            return Verdict::Drop(ConnDrop::Unexpected);
        }
        if let Some((tsval, _)) = seg.timestamps {
            if seg.checked || newer_ts(tsval, self.backend_ts_recent, false) {
                self.backend_ts_recent = tsval;
            }
            let to_client = tsval.wrapping_add(self.b2c.ts_val_delta);
            if newer_ts(to_client, self.our_ts_last, seg.checked) {
                self.our_ts_last = self.our_ts_last.max(to_client);
            }
        }
        if !self.response_started
            && seg.payload_len == 0
            && (seg.rst() || seg.fin())
            && self.client_fin.is_none()
        {
            // Reset or closed before any response byte, while the client still waits
            // for one: a failed attempt, not a reply. (After the client's FIN, a close
            // without a response is the server giving up on a client that left.)
            let retry = self.retry_ok && self.round_c2b == 0 && self.head.is_some();
            return Verdict::BackendFailed { retry };
        }
        if seg.payload_len > 0 {
            self.response_started = true;
        }
        self.bytes_b2c += seg.payload_len as u64;
        if seg.rst() {
            self.state = State::Closed;
            self.deadline_ms = now_ms + self.params.closed_linger_ms;
            out.push(Emit::Forward);
            return Verdict::Continue;
        }
        if let Some(raw_ack) = seg.ack.filter(|_| seg.checked) {
            // Into client space (they differ by the rewrite's shift).
            let ack = raw_ack + self.b2c.ack_delta as usize;
            self.backend_ack = Some(self.backend_ack.map_or(ack, |a| a.max(ack)));
            self.backend_wnd = u32::from(seg.window) << self.b2c.window_shift_in;
            if !self.head_acked {
                self.head_progress(raw_ack, seg.seq, now_ms, out);
            }
            if let Some(cf) = self.client_fin {
                if ack.wrapping_diff(cf) > 0 {
                    self.client_fin_acked = true;
                }
            }
        }
        if seg.fin() {
            self.backend_fin = Some(seq_client_space + seg.payload_len);
        }
        let end = seq_client_space + seg.payload_len + usize::from(seg.fin());
        if end.wrapping_diff(self.backend_next_seen) > 0 {
            self.backend_next_seen = end;
        }
        self.after_fin_progress();
        out.push(Emit::Forward);
        Verdict::Continue
    }

    /// The backend acked `raw_ack` (its space) while the head is still going out: more
    /// of the head as its window allows, and done once all of it (and a FIN) is acked.
    fn head_progress(
        &mut self,
        raw_ack: SeqNumber,
        seq: SeqNumber,
        now_ms: u64,
        out: &mut Outputs,
    ) {
        let offset = i64::from(raw_ack.wrapping_diff(self.backend_base));
        if offset < 0 {
            return;
        }
        // Past the head: the client's later bytes (forwarded) were acked too.
        let offset = (offset as usize).min(self.head_tx.next());
        let window = self.backend_wnd as usize;
        if self.head_tx.on_ack(offset, window, seq) {
            self.deadline_ms = now_ms + RTO_MS;
        }
        if self.head_tx.done() {
            self.head_acked = true;
            self.deadline_ms = now_ms + self.params.idle_timeout_ms;
            return;
        }
        let before = self.head_tx.next();
        self.send_head(out);
        if self.head_tx.next() > before {
            // Something new went out: the retransmission timer restarts from it.
            self.deadline_ms = now_ms + RTO_MS;
        }
    }

    fn after_fin_progress(&mut self) {
        let now = self.last_activity_ms;
        if self.client_fin_acked && self.backend_fin_acked {
            self.state = State::Closed;
            self.deadline_ms = now + self.params.closed_linger_ms;
        } else if (self.client_fin.is_some() || self.backend_fin.is_some()) && self.head_acked {
            self.deadline_ms = now + self.params.fin_timeout_ms;
        } else if self.head_acked {
            self.deadline_ms = now + self.params.idle_timeout_ms;
        }
    }

    fn close(&mut self, now_ms: u64) {
        self.state = State::Closed;
        self.deadline_ms = now_ms + self.params.closed_linger_ms;
    }

    /// The connection's deadline passed: retransmit, give up, or remove.
    pub fn on_timer(&mut self, now_ms: u64, out: &mut Outputs) -> Verdict {
        if now_ms < self.deadline_ms {
            return Verdict::Continue;
        }
        match self.state {
            State::ReadingHead => {
                // Slowloris and friends: the head did not arrive in time.
                Verdict::HeadTimeout
            }
            State::Queued => Verdict::QueueTimeout,
            State::Connecting => Verdict::NeedBackend {
                attempts: self.attempts,
            },
            State::Spliced
                if !self.head_acked
                    && self
                        .warm_attached_ms
                        .is_some_and(|t| now_ms >= t + self.params.connect_timeout_ms) =>
            {
                // A warm connection that does not take the head: the backend is gone
                // (silently). A failed attempt, like an unanswered SYN.
                self.warm_attached_ms = None;
                let retry = self.retry_ok && self.round_c2b == 0 && self.head.is_some();
                Verdict::BackendFailed { retry }
            }
            State::Spliced if !self.head_acked => {
                let seg = match self.head_tx.on_timeout() {
                    Timeout::Done => return Verdict::Continue,
                    Timeout::GiveUp => return self.abort(now_ms, out),
                    Timeout::Retransmit(chunk) => self.head_segment(chunk),
                    Timeout::Probe => self.head_probe(),
                };
                self.deadline_ms = now_ms + self.head_tx.interval_ms(RTO_MS);
                out.push(Emit::ToBackend(seg));
                Verdict::Continue
            }
            State::Spliced => self.abort(now_ms, out),
            State::Responding => {
                let seg = match self.resp_tx.on_timeout() {
                    Timeout::Done => return Verdict::Remove,
                    Timeout::GiveUp => {
                        // As a Linux socket that gives up: a RST, then gone.
                        let seq = self.our_isn + 1 + self.resp_tx.next();
                        out.push(Emit::ToClient(SegmentOut::rst(seq)));
                        return Verdict::Remove;
                    }
                    Timeout::Retransmit(chunk) => self.response_segment(chunk, now_ms),
                    Timeout::Probe => self.response_probe(now_ms),
                };
                self.deadline_ms = now_ms + self.resp_tx.interval_ms(RTO_MS);
                out.push(Emit::ToClient(seg));
                Verdict::Continue
            }
            State::HandedOff => self.handoff_timer(now_ms, out),
            State::Closed => Verdict::Remove,
        }
    }

    /// The operator kills the connection: RST both ways, then linger and go.
    pub fn kill(&mut self, now_ms: u64, out: &mut Outputs) -> Verdict {
        self.abort(now_ms, out)
    }

    /// Idle or stuck: reset both ends and close.
    fn abort(&mut self, now_ms: u64, out: &mut Outputs) -> Verdict {
        let to_client = SegmentOut::rst(self.client_ack.unwrap_or(self.our_isn + 1));
        out.push(Emit::ToClient(to_client));
        self.abort_backend(out);
        self.close(now_ms);
        Verdict::Continue
    }

    /// A pure ACK to the backend of everything before this round's response.
    fn ack_to_backend(&self) -> SegmentOut {
        SegmentOut {
            seq: self.backend_next(),
            ack: Some(self.backend_isn + 1),
            flags: 0,
            window: self.window_to_backend(),
            timestamps: self.ts_on.then_some((
                self.client_ts_recent.wrapping_add(self.backend_ts_delta),
                self.backend_ts_recent,
            )),
            syn_options: None,
            data: Data::None,
        }
    }

    /// Our next sequence number on the backend connection as far as the backend has
    /// acked it: what a RST or a pure ACK must carry to be accepted exactly.
    fn backend_next(&self) -> SeqNumber {
        match self.backend_ack {
            Some(a) if a != self.client_isn + 1 => a + self.c2b.seq_delta as usize,
            // Nothing of this round acked yet: the round's start on that connection
            // (not the client's start mapped through a rewrite's shift).
            _ => self.backend_base,
        }
    }

    /// A RST to the backend (its sequence space), e.g. after `BackendFailed`.
    pub fn abort_backend(&mut self, out: &mut Outputs) {
        let to_backend = SegmentOut::rst(self.backend_next());
        out.push(Emit::ToBackend(to_backend));
    }

    /// After `BackendFailed { retry: true }` (and the caller released the backend):
    /// forget the failed backend's side, keep the client's, ready for `connect`.
    pub fn prepare_retry(&mut self) {
        self.state = State::Connecting;
        self.forget_backend_side();
    }

    /// Everything this connection knows of its backend connection, forgotten (a retry,
    /// or a new round): translations, acks, FINs, what of the head went out.
    fn forget_backend_side(&mut self) {
        self.backend = None;
        self.head_sent = 0;
        self.head_acked = false;
        self.head_tx = Sender::empty();
        self.response_started = false;
        self.backend_fin = None;
        self.backend_fin_acked = false;
        self.client_fin_acked = false;
        self.client_ack = None;
        self.backend_ack = None;
        self.c2b = Translation::default();
        self.b2c = Translation::default();
    }
}

/// How far ahead of the last value a TSval from an unverified segment may move the
/// switch's record (2^24 ms: over four hours of a millisecond clock). A corrupt one
/// cannot push it further, so the switch's own TSvals never leap half the number
/// space ahead (which a receiver would take for old ones, PAWS).
const UNCHECKED_TS_STEP: u32 = 1 << 24;

/// Whether `tsval` is at or after `last` (RFC 7323's modular comparison); from an
/// unverified segment, also no further ahead than [`UNCHECKED_TS_STEP`].
fn newer_ts(tsval: u32, last: u32, checked: bool) -> bool {
    let ahead = tsval.wrapping_sub(last);
    if checked {
        ahead as i32 >= 0
    } else {
        ahead < UNCHECKED_TS_STEP
    }
}

/// The receive window the switch announces while it answers by itself (what the
/// client sends then is read and dropped; this only bounds an in-window RST).
const RESPONDING_WINDOW: usize = 1024;

/// Extra room beyond the receiver's announced window: window updates and acks cross in
/// flight, and the switch never buffers, so only what no recent window allows is refused.
const WINDOW_SLACK: i64 = 256 * 1024;
/// How far behind the receiver's ack a (duplicate, harmless) segment may start.
const OLD_LIMIT: i64 = 1 << 30;

/// Whether a segment starting at `seq` with `len` bytes fits the receiver's window
/// (`acked`, `wnd` as last announced). RSTs must start inside the window itself
/// (RFC 5961 3.2's test, without the challenge ACK), so a blind RST cannot kill a
/// spliced connection.
fn in_window(seq: SeqNumber, len: usize, acked: Option<SeqNumber>, wnd: u32, rst: bool) -> bool {
    let Some(acked) = acked else { return true };
    let start = i64::from(seq.wrapping_diff(acked));
    let right = i64::from(wnd) + WINDOW_SLACK;
    if rst {
        return (-1..=right).contains(&start);
    }
    let end = start + len as i64;
    end >= -OLD_LIMIT && start <= right
}

/// Whether the buffer holds a complete request head: `rules::http::head_end` (a blank
/// line ended by CRLF or a bare LF ends the head, so a bare-LF request is answered 400
/// at once rather than left to time out), which searches with memchr.
fn rules_head_end(buf: &[u8]) -> bool {
    rules::http::head_end(buf).is_some()
}

mod handoff;
pub use handoff::{HandoffHead, HANDOFF_TRIES};

#[cfg(test)]
// The fixtures are shared with `conn_table`'s tests.
pub(crate) mod tests;
