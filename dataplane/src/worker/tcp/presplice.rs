//! Per-request routing on keep-alive connections (a VIP's `mode: "presplice"`).
//!
//! A spliced connection forwards segments in place; to route *every* request, the
//! switch must also know where each request and each response ends. The framers of
//! `rules::framing` are fed the bytes of each direction in order, as segments pass:
//!
//! ```text
//!  request N spliced to backend A ──► request ends (framer) ──► response ends (framer)
//!      ──► the client's next byte, acking all of response N, arrives in order:
//!          A is reset and forgotten, the connection starts round N+1 (`Conn::next_round`):
//!          the switch reads the head, routes it, connects backend B from the client's
//!          current sequence number, and splices again with B's response continuing the
//!          client's stream where A's ended.
//! ```
//!
//! What the switch cannot frame with certainty it does not route: a framing error, an
//! upgrade, a response with `Connection: close`, or a pipelined request (bytes of the
//! next request before the previous response is complete and acked) turn per-request
//! routing off for the rest of the connection, which stays spliced to its backend —
//! pipelined requests therefore stay on the backend of the first, as HTTP requires them
//! to be answered in order and the switch holds no response bytes to reorder. Bytes that
//! arrive ahead of a gap while a message is being framed are dropped (the sender
//! retransmits them in order): a framer must see every byte once, in order, and the
//! switch keeps no copy.
use rules::framing::{
    BodyFraming, Phase, RequestFramer, RequestMethod, ResponseEvent, ResponseFramer,
};
use rules::http::RequestHead;
use tcpstate::conn::{Outputs, SegmentInfo, State};
use tcpstate::flow::ConnId;
use tcpstate::wire::SeqNumber;

use super::super::Worker;
use crate::stats::{Counter, DropReason};

/// Capacity of a connection's response head buffer; a longer head turns per-request
/// routing off for that connection (it stays spliced).
const RESPONSE_HEAD_BYTES: usize = 4096;

/// The framing state of one presplice connection.
pub struct PerRequest {
    req: RequestFramer,
    resp: ResponseFramer<Box<[u8]>>,
    /// The next client byte the request framer expects (client space).
    c2b_framed: SeqNumber,
    /// The next response byte the response framer expects (client space).
    b2c_framed: SeqNumber,
    /// Where the current request ended, once it has.
    req_done_at: Option<SeqNumber>,
    /// Where the current response ended, once it has.
    resp_done_at: Option<SeqNumber>,
    /// Client bytes the framer had already seen were forwarded (or dropped) again: the
    /// backend may have read other bytes there than the framer did, so this round's
    /// backend connection is never reused.
    tainted: bool,
}

impl PerRequest {
    pub fn new() -> Box<PerRequest> {
        Box::new(PerRequest {
            req: RequestFramer::new(),
            resp: ResponseFramer::with_buffer(vec![0u8; RESPONSE_HEAD_BYTES].into_boxed_slice()),
            c2b_framed: SeqNumber(0),
            b2c_framed: SeqNumber(0),
            req_done_at: None,
            resp_done_at: None,
            tainted: false,
        })
    }

    /// Sets up framing for a request whose head was just parsed: `buffered` is
    /// everything the switch holds from the head's first byte at `head_start` (the head
    /// is its first `head_len` bytes), `response_start` the client-space number of the
    /// response's first byte. `false`: the request cannot be framed (or more than one
    /// request is buffered), so the connection is left to a plain splice.
    pub fn start(
        &mut self,
        req: &RequestHead<'_>,
        buffered: &[u8],
        head_start: SeqNumber,
        response_start: SeqNumber,
    ) -> bool {
        let head_len = req.len;
        self.req = RequestFramer::new();
        let mut resp =
            std::mem::replace(&mut self.resp, ResponseFramer::with_buffer(Box::default()))
                .into_buffer();
        if resp.len() != RESPONSE_HEAD_BYTES {
            resp = vec![0u8; RESPONSE_HEAD_BYTES].into_boxed_slice();
        }
        self.resp = ResponseFramer::with_buffer(resp);
        self.req_done_at = None;
        self.resp_done_at = None;
        self.tainted = false;
        self.c2b_framed = head_start + buffered.len();
        self.b2c_framed = response_start;
        let Ok(has_body) = self.req.start_body(req) else {
            return false;
        };
        let rest = &buffered[head_len.min(buffered.len())..];
        if has_body {
            match self.req.feed(rest) {
                Ok(p) if p.complete => {
                    if p.used < rest.len() {
                        return false; // another request buffered behind this one
                    }
                    self.req_done_at = Some(head_start + head_len + p.used);
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        } else {
            if !rest.is_empty() {
                return false;
            }
            self.req_done_at = Some(head_start + head_len);
        }
        if self.req.phase() == Phase::Closed {
            return false; // `Connection: close`: no next request to route
        }
        self.resp.begin(RequestMethod::of(req.method)).is_ok()
    }
}

/// What to do with a segment of a presplice connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Process it as usual.
    Pass,
    /// Drop it (out of order while framing; the sender retransmits).
    Drop,
    /// Stop routing per request; then process it as usual.
    Fallback,
    /// The previous exchange is over and this segment starts the next request: start a
    /// new round, then process it.
    NextRound {
        client_next: SeqNumber,
        our_next: SeqNumber,
    },
}

impl PerRequest {
    /// A client segment with payload, while spliced.
    pub fn client_step(&mut self, seg: &SegmentInfo, payload: &[u8]) -> Step {
        let seq = seg.seq;
        let end = seq + payload.len();
        match self.req_done_at {
            None => {
                if seq.wrapping_diff(self.c2b_framed) > 0 {
                    return Step::Drop;
                }
                // Framed in `client_commit`, once the state machine forwards it.
                Step::Pass
            }
            Some(done) => {
                if end.wrapping_diff(done) <= 0 {
                    return Step::Pass; // a retransmission of this request
                }
                let Some(r) = self.resp_done_at else {
                    return Step::Fallback; // the next request before the response: pipelined
                };
                if seq.wrapping_diff(done) > 0 {
                    return Step::Drop; // ahead of a gap: wait for it in order
                }
                if seq != done || seg.ack.is_none_or(|a| a.wrapping_diff(r) < 0) {
                    // Straddling the boundary, or the response not all received yet.
                    return Step::Fallback;
                }
                Step::NextRound {
                    client_next: done,
                    our_next: r,
                }
            }
        }
    }

    /// A client segment the state machine is forwarding: its new bytes are framed now
    /// (only bytes that reach the backend may move the framer).
    pub fn client_commit(&mut self, seg: &SegmentInfo, payload: &[u8]) -> Step {
        let seq = seg.seq;
        let end = seq + payload.len();
        if payload.is_empty() {
            return Step::Pass;
        }
        if self.req_done_at.is_some() || end.wrapping_diff(self.c2b_framed) <= 0 {
            // Bytes the framer already saw, sent again: they may not be the same.
            self.tainted = true;
            return Step::Pass;
        }
        let off = self.c2b_framed.wrapping_diff(seq);
        if off < 0 {
            return Step::Fallback; // cannot happen: `client_step` drops these
        }
        if off > 0 {
            self.tainted = true;
        }
        let off = off as usize;
        match self.req.feed(&payload[off..]) {
            Ok(p) => {
                self.c2b_framed += p.used;
                if p.complete {
                    if off + p.used < payload.len() {
                        return Step::Fallback; // pipelined
                    }
                    self.req_done_at = Some(self.c2b_framed);
                }
                Step::Pass
            }
            Err(_) => Step::Fallback,
        }
    }

    /// Frames request bytes that were buffered (from `base`) while the head was routed
    /// and the backend connected: they reach the backend with the head, not through
    /// `client_step`.
    pub fn sync_buffered(&mut self, base: SeqNumber, buffered: &[u8]) -> Step {
        if self.req_done_at.is_some() {
            return Step::Pass;
        }
        let seen = self.c2b_framed.wrapping_diff(base);
        if seen < 0 || seen as usize >= buffered.len() {
            return Step::Pass;
        }
        let rest = &buffered[seen as usize..];
        match self.req.feed(rest) {
            Ok(p) => {
                self.c2b_framed += p.used;
                if p.complete {
                    if p.used < rest.len() {
                        return Step::Fallback; // another request behind it
                    }
                    self.req_done_at = Some(self.c2b_framed);
                }
                Step::Pass
            }
            Err(_) => Step::Fallback,
        }
    }

    /// A backend segment with payload (its sequence number in the client's space), while
    /// spliced, before the state machine sees it: out-of-order bytes wait.
    pub fn backend_step(&mut self, seq: SeqNumber, _payload: &[u8]) -> Step {
        if self.resp_done_at.is_none() && seq.wrapping_diff(self.b2c_framed) > 0 {
            return Step::Drop;
        }
        Step::Pass
    }

    /// A backend segment the state machine is forwarding: its new bytes are framed now.
    pub fn backend_commit(&mut self, seq: SeqNumber, payload: &[u8]) -> Step {
        let end = seq + payload.len();
        if payload.is_empty() {
            return Step::Pass;
        }
        if self.resp_done_at.is_some() {
            return if end.wrapping_diff(self.b2c_framed) <= 0 {
                Step::Pass
            } else {
                Step::Fallback // bytes after the response: not framed by us
            };
        }
        if seq.wrapping_diff(self.b2c_framed) > 0 || end.wrapping_diff(self.b2c_framed) <= 0 {
            return Step::Pass;
        }
        let mut off = self.b2c_framed.wrapping_diff(seq) as usize;
        loop {
            let p = match self.resp.feed(&payload[off..]) {
                Ok(p) => p,
                Err(_) => return Step::Fallback,
            };
            off += p.used;
            self.b2c_framed += p.used;
            match p.event {
                None => return Step::Pass,
                Some(ResponseEvent::Interim(_)) | Some(ResponseEvent::Head(_)) => {
                    if off >= payload.len() {
                        return Step::Pass;
                    }
                }
                Some(ResponseEvent::Complete(h)) => {
                    if h.close || off < payload.len() || h.body == BodyFraming::UntilClose {
                        return Step::Fallback;
                    }
                    self.resp_done_at = Some(self.b2c_framed);
                    return Step::Pass;
                }
                Some(ResponseEvent::Upgraded(_)) => return Step::Fallback,
            }
        }
    }
}

impl Worker {
    /// After the state machine decided to forward a segment of presplice connection
    /// `id`: frames its new bytes.
    pub(super) fn presplice_commit(
        &mut self,
        id: ConnId,
        backend_side: bool,
        seg: &SegmentInfo,
        payload: &[u8],
    ) {
        let Some(conn) = self.tcp.flows.get(id) else {
            return;
        };
        let Some(pr) = self.tcp.per_request[id as usize].as_mut() else {
            return;
        };
        let step = if backend_side {
            let seq_c = seg.seq + conn.b2c.seq_delta as usize;
            pr.backend_commit(seq_c, payload)
        } else {
            pr.client_commit(seg, payload)
        };
        if step == Step::Fallback {
            self.presplice_fallback(id);
        }
    }

    /// Brings the request framer of `id` up to the bytes buffered with its head (call
    /// before the head buffer goes back to the pool).
    pub(super) fn presplice_sync(&mut self, id: ConnId) {
        let Some(pr) = self.tcp.per_request[id as usize].as_mut() else {
            return;
        };
        let Some(head) = self.tcp.flows.get(id).and_then(|c| c.head.as_ref()) else {
            return;
        };
        if pr.sync_buffered(head.base(), head.contiguous()) == Step::Fallback {
            self.presplice_fallback(id);
        }
    }

    /// Stops per-request routing for `id`: it stays spliced to its backend.
    pub(super) fn presplice_fallback(&mut self, id: ConnId) {
        if let Some(pr) = self.tcp.per_request[id as usize].take() {
            self.stats().add(Counter::PrespliceFallbacks, 1);
            self.tcp.pr_pool.push(pr);
        }
    }

    /// Decides what to do with a segment of a presplice connection before the state
    /// machine sees it; `false`: it was dropped.
    pub(super) fn presplice_segment(
        &mut self,
        id: ConnId,
        backend_side: bool,
        seg: &SegmentInfo,
        payload: &[u8],
        now_ms: u64,
    ) -> bool {
        if payload.is_empty() {
            return true;
        }
        let Some(conn) = self.tcp.flows.get(id) else {
            return true;
        };
        if conn.state != State::Spliced {
            return true;
        }
        let Some(pr) = self.tcp.per_request[id as usize].as_mut() else {
            return true;
        };
        let step = if backend_side {
            let seq_c = seg.seq + conn.b2c.seq_delta as usize;
            pr.backend_step(seq_c, payload)
        } else {
            if conn.backend_closed() {
                Step::Fallback
            } else {
                pr.client_step(seg, payload)
            }
        };
        match step {
            Step::Pass => true,
            Step::Drop => {
                self.stats().drop(DropReason::PresplicePending, 1);
                false
            }
            Step::Fallback => {
                self.presplice_fallback(id);
                true
            }
            Step::NextRound {
                client_next,
                our_next,
            } => {
                if !self.start_next_round(id, client_next, our_next, now_ms) {
                    self.presplice_fallback(id);
                }
                true
            }
        }
    }

    /// Ends the finished exchange on `id` and readies it to read its next request.
    fn start_next_round(
        &mut self,
        id: ConnId,
        client_next: SeqNumber,
        our_next: SeqNumber,
        now_ms: u64,
    ) -> bool {
        let tainted = self.tcp.per_request[id as usize]
            .as_ref()
            .is_none_or(|pr| pr.tainted);
        let Some(head) = self.take_head_buffer() else {
            return false;
        };
        // The previous backend connection is done (its response complete and acked):
        // back to its warm pool if it has one, else reset and forgotten.
        if tainted || !self.return_warm(id, our_next, now_ms) {
            let mut out = Outputs::default();
            if let Some(c) = self.tcp.flows.get_mut(id) {
                c.abort_backend(&mut out);
            }
            for e in out.iter() {
                if let tcpstate::conn::Emit::ToBackend(s) = e {
                    self.send_to_backend(id, &s);
                }
            }
        }
        self.release_backend(id);
        if let Some(c) = self.tcp.flows.get_mut(id) {
            if let Some(b) = c.take_rewrite() {
                self.tcp.rewrite_bufs.push(b);
            }
            if let Some(old) = c.head.take() {
                self.tcp.heads.push(old);
            }
            c.next_round(head, client_next, our_next, now_ms);
        }
        let meta = &mut self.tcp.meta[id as usize];
        meta.tried = [0; 4];
        meta.routed_us = 0;
        meta.ttfb_done = false;
        self.stats().add(Counter::PrespliceRounds, 1);
        true
    }
}
