//! Per-request rounds on a keep-alive connection (a VIP's `mode: "presplice"`): where
//! each request and each response ends, found as segments pass, so that every request
//! is routed by the rules and the client is re-spliced between responses.
//!
//! ```text
//!  round N: request spliced to backend A ─► request ends at `req_done_at` (client space)
//!           response ends at `resp_done_at`  ─► the client acks it
//!           ─► round N+1 starts at those two numbers (`Conn::next_round`): the switch
//!              reads the next head (perhaps already held), routes it, splices onto B
//! ```
//!
//! What this module decides, segment by segment, and why:
//!
//! - **Every in-window segment is forwarded at once**, in both directions, out of order
//!   or not: a receiver that never sees data past a hole cannot SACK it, and its sender
//!   falls back to timeouts. The framers catch up when the hole fills. They need the
//!   contents only of heads, chunk-size lines and trailers: body bytes whose count is
//!   known (Content-Length, chunk data) are *skipped* by sequence arithmetic, even
//!   before they arrive. The few bytes a response framer needs that arrive ahead of a
//!   hole are copied into a bounded store (`NeedBuffer`: the caller lends one of its
//!   head buffers); when none can be had, or the store is full, that one segment is
//!   dropped and counted (its sender retransmits), never the whole flow.
//! - **A request's bytes only ever reach its own backend.** Client bytes after the end of
//!   the current request belong to the next one, which may go elsewhere: they are held
//!   (copied into a buffer that becomes the next round's head buffer) and the segment is
//!   forwarded trimmed to the current request's end (`ClientStep::Trim`), so its ACK
//!   and window still reach the backend. Pipelined requests are thus answered in
//!   order, each by the pool its rule names. A request whose end cannot be known yet
//!   (a chunked body with a hole before its next chunk-size line) does not let bytes
//!   past the hole through: those are dropped and retransmitted (rare: chunked uploads
//!   on a lossy path).
//! - **The request framer sees exactly what the backend gets**: a client may send
//!   different bytes under the same sequence numbers, so the request framer moves
//!   only with bytes that are forwarded ([`PerRequest::client_commit`]), and a round in
//!   which client bytes went out twice is `tainted` (its backend connection is not
//!   reused). Response bytes come from a backend the switch chose and may be framed
//!   as they arrive.
//! - **Nothing is ever routed by guesswork.** The only ways out of per-request routing
//!   are those after which there is no next request to route: a 101 upgrade (the rest
//!   is opaque, [`BackendStep::Plain`]), or a close (`Connection: close` either way, a
//!   close-delimited response, a backend FIN): `last` is set and client bytes after
//!   the request are never forwarded. A framing error, a response head over the
//!   framer's bound, or response bytes no request asked for end the connection
//!   ([`BackendStep::Abort`], [`ClientStep::Abort`]): the switch cannot tell message
//!   boundaries any more, and guessing them is how requests get smuggled.
//!
//! Pure: no I/O, no clock, no allocation after [`PerRequest::new`]; buffers come from
//! the caller (its bounded pool of head buffers) and go back with
//! [`PerRequest::take_buffers`].
use rules::framing::{
    BodyFraming, FramingError, Phase, RequestFramer, RequestMethod, ResponseEvent, ResponseFramer,
    MAX_RESPONSE_HEAD,
};
use rules::http::RequestHead;

use crate::conn::SegmentInfo;
use crate::reasm::{HeadBuffer, Insert};
use crate::splice::ReceiveLimit;
use crate::wire::SeqNumber;

/// The longest response head framed (a longer one ends the connection): the same
/// bound as the longest request head, and HAProxy's default buffer size.
pub const RESPONSE_HEAD_LIMIT: usize = MAX_RESPONSE_HEAD;

/// Why a segment was dropped rather than forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// Client bytes past a hole in a chunked request body: whether they belong to this
    /// request is not known until the hole fills.
    RequestAheadOfGap,
    /// Response bytes the framer needs, ahead of a hole, and no room to keep a copy.
    StoreFull,
}

/// Why per-request routing cannot go on: the connection must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The request or response broke HTTP/1.1 framing (or the response head was over
    /// [`RESPONSE_HEAD_LIMIT`]).
    Framing(FramingError),
    /// The backend sent bytes after the response to the only request it was sent.
    UnrequestedResponse,
}

/// What to do with a client segment of a presplice connection, before the state
/// machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientStep {
    /// Process it as usual.
    Pass,
    /// Process it with only its first `keep` payload bytes and no FIN: the rest belongs
    /// to a later request (held, when there was room) and must not reach this backend.
    /// `refused`: some of those bytes were not held (no room: past the bound the client
    /// was told, or sent before it was told); it sends them again.
    Trim { keep: usize, refused: bool },
    /// Drop it (counted); the client retransmits.
    Drop(Pending),
    /// The exchange is over: start the next round from these numbers (client space)
    /// with [`PerRequest::take_held`] as its head buffer, then process the segment.
    NextRound {
        client_next: SeqNumber,
        our_next: SeqNumber,
    },
    /// Splice mode: this segment starts the next request, whole head included, right
    /// after a complete response. Check the head: to let it through to the same
    /// backend, [`PerRequest::continue_with`] it and ask again; otherwise
    /// [`PerRequest::hold_for_round`] and ask again (it is held for a round of its own).
    /// The head is the payload's first `head_len` bytes.
    NextHead { head_len: usize },
    /// Lend a head buffer with [`PerRequest::lend_held`] and ask again (or `Trim` it to
    /// `keep` yourself if none is left: the bytes after are then retransmitted).
    NeedBuffer { keep: usize },
    /// Framing is lost: reset the connection.
    Abort(Lost),
}

/// What to do with a backend segment of a presplice connection (its sequence number
/// in the client's space), before the state machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendStep {
    /// Process it as usual.
    Pass,
    /// Drop it (counted); the backend retransmits.
    Drop(Pending),
    /// Lend a head buffer with [`PerRequest::lend_store`] and ask again (or drop it).
    NeedBuffer,
    /// The connection was upgraded (101): the rest is opaque, both ways. Stop
    /// per-request routing, then process it as usual.
    Plain,
    /// Framing is lost: reset the connection.
    Abort(Lost),
}

/// How the bytes buffered with a request head divide, from [`PerRequest::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffered {
    /// All of them belong to this request (which may go on after them).
    One,
    /// The request ends after `len` buffered bytes; the rest starts the next request:
    /// send only `len` bytes to the backend and [`PerRequest::hold`] the rest.
    More { len: usize },
}

/// The framing state of one presplice connection.
pub struct PerRequest {
    req: RequestFramer,
    resp: ResponseFramer<Box<[u8]>>,
    /// The next client byte the request framer needs (client space). Ahead of what was
    /// received while a body of known length is still on its way.
    c2b_framed: SeqNumber,
    /// The end of the highest client bytes forwarded in this round.
    c2b_high: SeqNumber,
    /// The next response byte the response framer needs (client space).
    b2c_framed: SeqNumber,
    /// Where the current request ended, once it has.
    req_done_at: Option<SeqNumber>,
    /// Where the current response ended, once it has.
    resp_done_at: Option<SeqNumber>,
    /// Client bytes went out twice in this round: the backend may have read other
    /// bytes there than the framer did, so its connection is never reused.
    tainted: bool,
    /// No round follows this one (a close was announced or seen).
    last: bool,
    /// Response bytes ahead of a hole that the framer will need.
    store: Option<HeadBuffer>,
    /// Client bytes after the current request: the next round's head buffer.
    held: Option<HeadBuffer>,
    /// Splice mode: later requests stay on the connection's backend, so one whose
    /// head arrives whole, in order, after a complete response, may go straight
    /// through once the caller has checked it ([`ClientStep::NextHead`]).
    sticky: bool,
    /// The caller declined the straight path for this round's successor.
    no_straight: bool,
    /// Held bytes are not acknowledged to the client (see [`PerRequest::set_durable`]).
    durable: bool,
    /// Where the current round's response starts (client space), and its request's kind.
    resp_start: SeqNumber,
    resp_method: RequestMethod,
    /// Adopted before the response began ([`PerRequest::adopted_before_response`]): no
    /// response byte at `b2c_framed` seen yet.
    resp_unseen: bool,
}

impl PerRequest {
    /// Allocates the response framer's head buffer, once; pool the result.
    pub fn new() -> Box<PerRequest> {
        Box::new(PerRequest {
            req: RequestFramer::new(),
            resp: ResponseFramer::with_buffer(vec![0u8; RESPONSE_HEAD_LIMIT].into_boxed_slice()),
            c2b_framed: SeqNumber(0),
            c2b_high: SeqNumber(0),
            b2c_framed: SeqNumber(0),
            req_done_at: None,
            resp_done_at: None,
            tainted: false,
            last: false,
            store: None,
            held: None,
            sticky: false,
            no_straight: false,
            durable: false,
            resp_start: SeqNumber(0),
            resp_method: RequestMethod::Other,
            resp_unseen: false,
        })
    }

    /// `true`: the bytes held for the next round are not acknowledged to the client
    /// (`receive_limit` lets it send them, but acks only up to the request's end), so
    /// until a backend acknowledges them the client keeps them and sends them again if
    /// needed. A cluster member sets it: its connections may be adopted by another member,
    /// which can route a request the client still holds, but not one only a dead member
    /// read (with `Conn::defer_head_ack`).
    pub fn set_durable(&mut self, durable: bool) {
        self.durable = durable;
    }

    /// Splice mode (`true`): later requests are checked against the rules but stay on
    /// the connection's backend.
    pub fn set_sticky(&mut self, sticky: bool) {
        self.sticky = sticky;
    }

    /// Whether this round's backend connection saw client bytes twice.
    pub fn tainted(&self) -> bool {
        self.tainted
    }

    /// Whether no request may follow this round's.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// Where the current request ended, once it has.
    pub fn request_end(&self) -> Option<SeqNumber> {
        self.req_done_at
    }

    /// Where the current request ends (client space), if that is known already: once it
    /// has ended, or while a body of known length is on its way. `None` in a chunked
    /// body. What a cluster member needs to carry the connection on without its framing
    /// state (`cluster::sync`): no client byte past this point may go through unchecked.
    pub fn known_request_end(&self) -> Option<SeqNumber> {
        if let Some(done) = self.req_done_at {
            return Some(done);
        }
        let left = self.req.left_in_request()?;
        Some(self.c2b_framed + usize::try_from(left).ok()?)
    }

    /// Where the current response ended, once it has.
    pub fn response_end(&self) -> Option<SeqNumber> {
        self.resp_done_at
    }

    /// Where the current response starts (client space) and whether it answers a HEAD,
    /// while its end is not known and it can be framed from its start (not a CONNECT's,
    /// not an opaque stream): what a cluster member's adopter needs to frame it itself.
    pub fn response_start(&self) -> Option<(SeqNumber, bool)> {
        if self.resp_done_at.is_some()
            || self.resp_method == RequestMethod::Connect
            || self.resp.phase() == Phase::Opaque
        {
            return None;
        }
        Some((self.resp_start, self.resp_method == RequestMethod::Head))
    }

    /// Adopted before the response began: where its framing waits (client space) until
    /// a response byte there is seen. A client that acknowledges beyond it got bytes the
    /// gone member forwarded, which the backend will not send again: the response cannot
    /// be framed here.
    pub fn awaiting_response_start(&self) -> Option<SeqNumber> {
        self.resp_unseen.then_some(self.b2c_framed)
    }

    /// Bytes held for the next round.
    pub fn held_len(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.contiguous_len())
    }

    /// What the client is told on a backend segment beyond what the backend says, once
    /// the current request has ended (the bytes after it are the switch's to hold):
    /// the held bytes are acknowledged as soon as the backend has the whole request,
    /// and the window ends where the held buffer does, so a pipelining client stops
    /// at the bound (a zero window) instead of sending what cannot be kept.
    /// `spare`: the capacity of a buffer the caller could still lend (0: none left,
    /// the window closes at the request's end).
    pub fn receive_limit(&self, spare: usize) -> Option<ReceiveLimit> {
        let done = self.req_done_at?;
        if self.last {
            return None; // nothing after this request is read
        }
        let (held, room) = match self.held.as_ref() {
            Some(h) if h.base() == done => (h.contiguous_len(), h.capacity()),
            Some(h) if h.contiguous_len() == 0 => (0, h.capacity()),
            // Based elsewhere (cannot happen while a request is done): say nothing.
            Some(_) => return None,
            None => (0, spare),
        };
        Some(ReceiveLimit {
            ack_at: done,
            ack_to: if self.durable { done } else { done + held },
            right_edge: done + room,
        })
    }

    /// Whether the framers would read any byte of a client segment (`seq`, `len` bytes)
    /// or decide anything from it: `false` only while the response is still to come
    /// and the segment lies within the current request's bytes already accounted for
    /// (a body of known length, skipped by arithmetic), where [`client_step`] passes it
    /// whatever it holds. Such a segment may be carried without its checksum verified.
    ///
    /// [`client_step`]: Self::client_step
    pub fn reads_request(&self, seq: SeqNumber, len: usize) -> bool {
        let known = self.req_done_at.unwrap_or(self.c2b_framed);
        self.resp_done_at.is_some() || (seq + len).wrapping_diff(known) > 0
    }

    /// The same for a backend segment (`seq` in client space): `false` only for bytes
    /// of a response body of known length, skipped by arithmetic (the whole response,
    /// once its end is known: [`backend_step`](Self::backend_step) passes them).
    pub fn reads_response(&self, seq: SeqNumber, len: usize) -> bool {
        let end = seq + len;
        match self.resp_done_at {
            Some(r) => end.wrapping_diff(r) > 0,
            None => self.resp.phase() == Phase::Opaque || end.wrapping_diff(self.b2c_framed) > 0,
        }
    }

    /// Gives the buffer a client step asked for (`NeedBuffer`): it will hold the
    /// bytes after the current request.
    pub fn lend_held(&mut self, mut buf: HeadBuffer) {
        buf.reset(self.req_done_at.unwrap_or(self.c2b_framed));
        self.held = Some(buf);
    }

    /// Gives the buffer a backend step asked for (`NeedBuffer`): it will keep response
    /// bytes that arrive ahead of a hole.
    pub fn lend_store(&mut self, mut buf: HeadBuffer) {
        buf.reset(self.b2c_framed);
        self.store = Some(buf);
    }

    /// Whether a buffer for held bytes was lent already.
    pub fn holds_buffer(&self) -> bool {
        self.held.is_some()
    }

    /// Holds `bytes` (from `seq`, at or after the request's end) for the next round:
    /// bytes that were buffered with the request's head (see [`Buffered::More`]).
    /// Needs a buffer lent with [`lend_held`](Self::lend_held); what does not fit is
    /// not kept.
    pub fn hold_from(&mut self, seq: SeqNumber, bytes: &[u8]) {
        if let Some(h) = self.held.as_mut() {
            if h.contiguous_len() == 0 && h.out_of_order().next().is_none() && h.base() != seq {
                h.reset(seq);
            }
            let _: Insert = h.insert(seq, bytes);
        }
    }

    /// The next round's head buffer, holding what the client sent after the request
    /// (`None`: nothing was held, take a fresh one).
    pub fn take_held(&mut self) -> Option<HeadBuffer> {
        self.held.take()
    }

    /// Every buffer lent, to go back to the caller's pool (the connection is going).
    pub fn take_buffers(&mut self) -> impl Iterator<Item = HeadBuffer> {
        [self.store.take(), self.held.take()].into_iter().flatten()
    }

    /// Sets up a round for a request whose head was just parsed: `buffered` is
    /// everything held from the head's first byte at `head_start` (the head is its
    /// first `req.len` bytes), `response_start` the client-space number of the
    /// response's first byte. A response store kept from an earlier round is reused.
    pub fn start(
        &mut self,
        req: &RequestHead<'_>,
        buffered: &[u8],
        head_start: SeqNumber,
        response_start: SeqNumber,
    ) -> Result<Buffered, FramingError> {
        self.req = RequestFramer::new();
        self.resp = ResponseFramer::with_buffer(
            std::mem::replace(&mut self.resp, ResponseFramer::with_buffer(Box::default()))
                .into_buffer(),
        );
        self.req_done_at = None;
        self.resp_done_at = None;
        self.tainted = false;
        self.last = false;
        self.no_straight = false;
        self.c2b_framed = head_start + req.len;
        self.c2b_high = head_start + buffered.len();
        self.b2c_framed = response_start;
        self.resp_start = response_start;
        self.resp_method = RequestMethod::of(req.method);
        self.resp_unseen = false;
        if let Some(s) = self.store.as_mut() {
            s.reset(response_start);
        }
        self.req.start_body(req)?;
        self.resp.begin(RequestMethod::of(req.method))?;
        self.frame_request(&buffered[req.len.min(buffered.len())..])
            .map(|used| match used {
                Some(n) if req.len + n < buffered.len() => Buffered::More { len: req.len + n },
                _ => Buffered::One,
            })
    }

    /// A connection adopted from a cluster member that is gone (`cluster::sync`): the
    /// request in progress ends at `request_end` and its response at `response_end`
    /// (client space), as the member's record said. Bytes up to those ends pass as they
    /// come; framing starts again with the next request, which gets a round of its own
    /// (routed by the rules). The backend connection carried until then is never reused
    /// (`tainted`): its local address is the gone member's.
    pub fn adopted(&mut self, request_end: SeqNumber, response_end: SeqNumber) {
        self.req = RequestFramer::new();
        self.req_done_at = Some(request_end);
        self.resp_done_at = Some(response_end);
        self.c2b_framed = request_end;
        self.c2b_high = request_end;
        self.b2c_framed = response_end;
        self.resp_unseen = false;
        self.tainted = true;
        self.last = false;
        self.sticky = false;
        self.no_straight = false;
    }

    /// A connection adopted from a cluster member that is gone while the response was
    /// still to come: the request ended at `request_end`, and the response, which starts
    /// at `response_start` (client space; `to_head`: it answers a HEAD), is framed here
    /// from its first byte, so that the client's next request gets a round of its own.
    /// The backend connection is never reused (`tainted`).
    pub fn adopted_before_response(
        &mut self,
        request_end: SeqNumber,
        response_start: SeqNumber,
        to_head: bool,
    ) {
        self.adopted(request_end, response_start);
        self.resp = ResponseFramer::with_buffer(
            std::mem::replace(&mut self.resp, ResponseFramer::with_buffer(Box::default()))
                .into_buffer(),
        );
        self.resp_done_at = None;
        self.resp_start = response_start;
        self.resp_method = if to_head {
            RequestMethod::Head
        } else {
            RequestMethod::Other
        };
        if let Some(s) = self.store.as_mut() {
            s.reset(response_start);
        }
        // A fresh framer is idle: `begin` cannot fail.
        let _ = self.resp.begin(self.resp_method);
        self.resp_unseen = true;
    }

    /// Splice mode, after [`ClientStep::NextHead`]: the request in the segment (its head
    /// parsed into `req`, the segment's payload `payload` from `seq`) goes straight to
    /// the same backend; framing moves on to it. Bytes of a further request in the
    /// same segment are held when asked again.
    pub fn continue_with(
        &mut self,
        req: &RequestHead<'_>,
        payload: &[u8],
        seq: SeqNumber,
    ) -> Result<(), FramingError> {
        let response_start = self.resp_done_at.unwrap_or(self.b2c_framed);
        self.start(req, payload, seq, response_start)?;
        // Nothing of it went out yet: the state machine forwards it next.
        self.c2b_high = seq;
        Ok(())
    }

    /// Splice mode, after [`ClientStep::NextHead`]: the request needs a round of its own
    /// (the switch answers it, or rewrites its head), so it is held like any other.
    pub fn hold_for_round(&mut self) {
        self.no_straight = true;
    }

    /// Frames request bytes buffered (from `base`) after [`start`](Self::start), while
    /// the backend was connected: they reach the backend with the head.
    pub fn sync_buffered(
        &mut self,
        base: SeqNumber,
        buffered: &[u8],
    ) -> Result<Buffered, FramingError> {
        if let Some(done) = self.req_done_at {
            // Whatever came after the end is another request's, and was not framed.
            let len = done.wrapping_diff(base).max(0) as usize;
            return Ok(if len < buffered.len() {
                Buffered::More { len }
            } else {
                Buffered::One
            });
        }
        let seen = self.c2b_framed.wrapping_diff(base);
        if seen < 0 || seen as usize >= buffered.len() {
            self.skip_request_body();
            return Ok(Buffered::One);
        }
        let end = base + buffered.len();
        if end.wrapping_diff(self.c2b_high) > 0 {
            self.c2b_high = end;
        }
        let used = self.frame_request(&buffered[seen as usize..])?;
        Ok(match used {
            Some(n) if seen as usize + n < buffered.len() => Buffered::More {
                len: seen as usize + n,
            },
            _ => Buffered::One,
        })
    }

    /// Feeds request bytes starting at `c2b_framed` (skipping body bytes of known
    /// length first); `Some(n)`: the request ended after `n` of them.
    fn frame_request(&mut self, bytes: &[u8]) -> Result<Option<usize>, FramingError> {
        let mut off = 0;
        loop {
            if self.req.phase() != Phase::Body {
                return Ok(self.request_ended(off));
            }
            let skip = self.req.skippable().min((bytes.len() - off) as u64);
            if skip > 0 {
                let p = self.req.skip(skip);
                off += p.used;
                self.c2b_framed += p.used;
                if p.complete {
                    return Ok(self.request_ended(off));
                }
                continue;
            }
            if off >= bytes.len() {
                // Body bytes of known length still to come need not be seen.
                self.skip_request_body();
                return Ok(None);
            }
            let p = self.req.feed(&bytes[off..])?;
            off += p.used;
            self.c2b_framed += p.used;
            if p.complete {
                return Ok(self.request_ended(off));
            }
        }
    }

    /// A Content-Length body (or the rest of a chunk) need not be waited for: its end
    /// is known now.
    fn skip_request_body(&mut self) {
        let k = self.req.skippable();
        if k > 0 {
            let p = self.req.skip(k);
            self.c2b_framed += p.used;
            if p.complete {
                self.request_ended(0);
            }
        }
    }

    /// The request framer left the body: records where.
    fn request_ended(&mut self, off: usize) -> Option<usize> {
        if self.req_done_at.is_none() {
            self.req_done_at = Some(self.c2b_framed);
            if self.req.phase() == Phase::Closed {
                self.last = true; // `Connection: close`: no next request to route
            }
        }
        Some(off)
    }

    /// A client segment (payload or not) of a spliced presplice connection, before
    /// the state machine sees it. `backend_closed`: the backend sent its FIN.
    pub fn client_step(
        &mut self,
        seg: &SegmentInfo,
        payload: &[u8],
        client_acked: impl Fn(SeqNumber) -> bool,
        backend_closed: bool,
    ) -> ClientStep {
        if backend_closed {
            self.last = true;
        }
        if payload.is_empty()
            && !seg.fin()
            && (self.req_done_at.is_none() || self.resp_done_at.is_none() || self.held_len() == 0)
        {
            // A bare ACK that cannot start the next round (nothing held, or the exchange
            // is not over): the common case, decided without the rest.
            return ClientStep::Pass;
        }
        let seq = seg.seq;
        let end = seq + payload.len();
        let Some(done) = self.req_done_at else {
            if payload.is_empty() || end.wrapping_diff(self.c2b_framed) <= 0 {
                return ClientStep::Pass; // an ACK, or body bytes already accounted for
            }
            if seq.wrapping_diff(self.c2b_framed) > 0 {
                return ClientStep::Drop(Pending::RequestAheadOfGap);
            }
            // Where would the request end in this segment? (A trial on a copy: the
            // framer itself moves only once the segment is forwarded.)
            let mut trial = self.req.clone();
            let off = self.c2b_framed.wrapping_diff(seq) as usize;
            let rest = &payload[off..];
            let mut used = 0;
            loop {
                let skip = trial.skippable().min((rest.len() - used) as u64);
                let p = if skip > 0 {
                    trial.skip(skip)
                } else if used < rest.len() {
                    match trial.feed(&rest[used..]) {
                        Ok(p) => p,
                        Err(e) => return ClientStep::Abort(Lost::Framing(e)),
                    }
                } else {
                    return ClientStep::Pass;
                };
                used += p.used;
                if p.complete {
                    let keep = off + used;
                    if keep >= payload.len() {
                        return ClientStep::Pass;
                    }
                    // Another request starts inside this segment.
                    return self.hold(seq + keep, &payload[keep..], keep);
                }
                if used >= rest.len() {
                    return ClientStep::Pass;
                }
            }
        };
        if self.sticky
            && !self.no_straight
            && !self.last
            && seq == done
            && self.resp_done_at.is_some()
            && self.held.as_ref().is_none_or(|h| h.contiguous_len() == 0)
        {
            if let Some(head_len) = rules::http::head_end(payload) {
                return ClientStep::NextHead { head_len };
            }
        }
        // Bytes of this segment before the end of the request; what follows them is
        // the next request's and never reaches this backend.
        let stop = done.wrapping_diff(seq).clamp(0, payload.len() as i32) as usize;
        let over = payload.len() > stop;
        let mut refused = false;
        if over {
            match self.hold(seq + stop, &payload[stop..], stop) {
                step @ ClientStep::NeedBuffer { .. } => return step,
                ClientStep::Trim { refused: r, .. } => refused = r,
                _ => {}
            }
        }
        // A FIN may follow the request to this backend only right after it.
        let fin_too_far = seg.fin() && end.wrapping_diff(done) > 0;
        let acked =
            |r: SeqNumber| seg.ack.is_some_and(|a| a.wrapping_diff(r) >= 0) || client_acked(r);
        if let Some((client_next, our_next)) = self.next_round_ready(acked) {
            return ClientStep::NextRound {
                client_next,
                our_next,
            };
        }
        if over || fin_too_far {
            ClientStep::Trim {
                keep: stop,
                refused,
            }
        } else {
            ClientStep::Pass
        }
    }

    /// The exchange is over and the next request is waiting: the request ended, the
    /// response ended and the client acknowledged all of it (`client_acked` of its end),
    /// and bytes of the next request are held. Then the next round starts from
    /// `(client_next, our_next)`: the request's end and the response's end.
    ///
    /// `client_step` asks on each client segment. The caller also asks after a segment
    /// went through (`Worker::presplice_late_round`): when the request's end and the next
    /// request came in one segment (a retransmission that filled a hole behind an early
    /// next request), nothing else may ever arrive to ask, and the connection would hang.
    pub fn next_round_ready(
        &self,
        client_acked: impl Fn(SeqNumber) -> bool,
    ) -> Option<(SeqNumber, SeqNumber)> {
        if self.last || self.held_len() == 0 {
            return None;
        }
        let (done, r) = (self.req_done_at?, self.resp_done_at?);
        client_acked(r).then_some((done, r))
    }

    /// Copies client bytes after the current request (`bytes`, from `seq`) into the
    /// held buffer; the segment is to be forwarded with `keep` bytes.
    fn hold(&mut self, seq: SeqNumber, bytes: &[u8], keep: usize) -> ClientStep {
        if self.req_done_at.is_none() {
            // Found by a trial in this very segment: the framer has not moved yet.
            // Remember the end now so the buffer is based there.
            return self.hold_after_trial(seq, bytes, keep);
        }
        if self.last {
            // Never read: no request follows this one.
            return ClientStep::Trim {
                keep,
                refused: false,
            };
        }
        let Some(h) = self.held.as_mut() else {
            return ClientStep::NeedBuffer { keep };
        };
        // Full, fragmented or beyond the buffer: not kept; the client sends it again.
        let refused = !matches!(
            h.insert(seq, bytes),
            Insert::Added { .. } | Insert::Duplicate
        );
        ClientStep::Trim { keep, refused }
    }

    fn hold_after_trial(&mut self, seq: SeqNumber, bytes: &[u8], keep: usize) -> ClientStep {
        let Some(h) = self.held.as_mut() else {
            return ClientStep::NeedBuffer { keep };
        };
        if h.base() != seq {
            h.reset(seq); // lent before the end was known
        }
        let refused = !matches!(
            h.insert(seq, bytes),
            Insert::Added { .. } | Insert::Duplicate
        );
        ClientStep::Trim { keep, refused }
    }

    /// The state machine forwarded a client segment (its payload cut to what was
    /// forwarded): the request framer moves over the bytes that reached the backend.
    pub fn client_commit(&mut self, seq: SeqNumber, payload: &[u8]) -> Option<Lost> {
        if payload.is_empty() {
            return None;
        }
        let end = seq + payload.len();
        if seq.wrapping_diff(self.c2b_high) < 0 {
            // Bytes that went out before, sent again: they may not be the same.
            self.tainted = true;
        }
        if end.wrapping_diff(self.c2b_high) > 0 {
            self.c2b_high = end;
        }
        if self.req_done_at.is_some() || end.wrapping_diff(self.c2b_framed) <= 0 {
            return None;
        }
        let off = self.c2b_framed.wrapping_diff(seq);
        if off < 0 {
            return None; // `client_step` drops these
        }
        self.frame_request(&payload[off as usize..])
            .err()
            .map(Lost::Framing)
    }

    /// A backend segment with payload, its first byte at `seq` (client space), before
    /// the state machine sees it. Response bytes are framed as they arrive.
    pub fn backend_step(&mut self, seq: SeqNumber, payload: &[u8], fin: bool) -> BackendStep {
        if fin {
            self.last = true;
        }
        if payload.is_empty() {
            return BackendStep::Pass;
        }
        let end = seq + payload.len();
        if let Some(r) = self.resp_done_at {
            return if end.wrapping_diff(r) <= 0 {
                BackendStep::Pass // this response's bytes again
            } else {
                BackendStep::Abort(Lost::UnrequestedResponse)
            };
        }
        if self.resp.phase() == Phase::Opaque {
            return BackendStep::Plain;
        }
        if self.resp_unseen && seq.wrapping_diff(self.b2c_framed) <= 0 {
            self.resp_unseen = false;
        }
        if end.wrapping_diff(self.b2c_framed) <= 0 {
            return BackendStep::Pass; // already framed, or skipped body bytes
        }
        if seq.wrapping_diff(self.b2c_framed) > 0 {
            // Ahead of a hole: keep a copy of what the framer will need.
            let Some(store) = self.store.as_mut() else {
                return BackendStep::NeedBuffer;
            };
            if store.base() != self.b2c_framed {
                store.advance_to(self.b2c_framed);
            }
            return match store.insert(seq, payload) {
                Insert::Added { .. } | Insert::Duplicate => BackendStep::Pass,
                _ => BackendStep::Drop(Pending::StoreFull),
            };
        }
        let off = self.b2c_framed.wrapping_diff(seq) as usize;
        match self.frame_response(&payload[off..]) {
            Ok(step) => {
                if step != BackendStep::Pass {
                    return step;
                }
                self.frame_stored()
            }
            Err(lost) => BackendStep::Abort(lost),
        }
    }

    /// Feeds the stored bytes that are now in order.
    fn frame_stored(&mut self) -> BackendStep {
        let Some(mut store) = self.store.take() else {
            return BackendStep::Pass;
        };
        let mut step = BackendStep::Pass;
        while self.resp_done_at.is_none() {
            store.advance_to(self.b2c_framed);
            if store.contiguous_len() == 0 {
                break;
            }
            let before = self.b2c_framed;
            match self.frame_response(store.contiguous()) {
                Ok(BackendStep::Pass) => {}
                Ok(other) => {
                    step = other;
                    break;
                }
                Err(lost) => {
                    step = BackendStep::Abort(lost);
                    break;
                }
            }
            if self.b2c_framed == before {
                break;
            }
        }
        self.store = Some(store);
        step
    }

    /// Feeds response bytes starting at `b2c_framed`, skipping body bytes of known
    /// length (received or not).
    fn frame_response(&mut self, bytes: &[u8]) -> Result<BackendStep, Lost> {
        let mut off: usize = 0;
        loop {
            let skip = self.resp.skippable();
            if skip > 0 {
                // Skipped whole, even past this segment: those bytes need not be seen.
                let p = self.resp.skip(skip);
                self.b2c_framed += p.used;
                off = off.saturating_add(p.used);
                if let Some(ResponseEvent::Complete(h)) = p.event {
                    return self.response_complete(h.close, off < bytes.len());
                }
                continue;
            }
            if off >= bytes.len() {
                return Ok(BackendStep::Pass);
            }
            let p = self.resp.feed(&bytes[off..]).map_err(Lost::Framing)?;
            off += p.used;
            self.b2c_framed += p.used;
            match p.event {
                None => return Ok(BackendStep::Pass),
                Some(ResponseEvent::Interim(_)) => {} // 100 Continue: the final one follows
                Some(ResponseEvent::Head(h)) => {
                    if h.body == BodyFraming::UntilClose {
                        self.last = true; // the response ends with the connection
                    }
                }
                Some(ResponseEvent::Complete(h)) => {
                    return self.response_complete(h.close, off < bytes.len());
                }
                Some(ResponseEvent::Upgraded(_)) => return Ok(BackendStep::Plain),
            }
        }
    }

    fn response_complete(&mut self, close: bool, more: bool) -> Result<BackendStep, Lost> {
        if more {
            return Err(Lost::UnrequestedResponse);
        }
        self.resp_done_at = Some(self.b2c_framed);
        if close {
            self.last = true;
        }
        Ok(BackendStep::Pass)
    }
}

#[cfg(test)]
mod tests;
