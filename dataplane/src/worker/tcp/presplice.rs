//! Per-request routing on keep-alive connections (a VIP's `mode: "presplice"`): the
//! worker's side of `tcpstate::presplice`, which decides segment by segment (forward,
//! trim off what belongs to a later request, drop, start the next round, give up);
//! this module lends it buffers from the core's head-buffer pool, cuts the mbufs it
//! says to cut, and starts rounds.
//!
//! ```text
//!  request N spliced to backend A ──► request ends (framer) ──► response ends (framer)
//!      ──► the client has acked all of response N and sent (or had held) its next
//!          request: A goes back to its warm pool (or is reset), the connection starts
//!          round N+1 (`Conn::next_round`) with the held bytes as its head: the switch
//!          routes it, splices onto backend B from the client's current sequence
//!          number, and B's response continues the client's stream where A's ended.
//! ```
use std::sync::Arc;
use tcpstate::conn::{Emit, Outputs, SegmentInfo, State};
use tcpstate::flow::ConnId;

use rules::framing::FramingError;
use rules::http;
use tcpstate::presplice::{BackendStep, Buffered, ClientStep, Lost};
use tcpstate::splice::ReceiveLimit;
use tcpstate::wire::SeqNumber;

use super::super::Worker;
use super::TcpCore;
use crate::stats::{Counter, DropReason};

/// What the caller does with a segment of a presplice connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Go {
    /// Process it as received.
    Pass,
    /// Process it cut to its first `keep` payload bytes, without FIN.
    Trim(usize),
    /// Drop it (already counted).
    Drop,
}

/// What a buffer lent to a connection's per-request state is for.
#[derive(Clone, Copy)]
enum Lend {
    /// Client bytes of a later request.
    Held,
    /// Response bytes that arrived ahead of a hole.
    Store,
}

impl Worker {
    /// Decides what to do with a segment of a presplice connection before the state
    /// machine sees it.
    pub(super) fn presplice_segment(
        &mut self,
        id: ConnId,
        backend_side: bool,
        seg: &SegmentInfo,
        payload: &[u8],
        now_ms: u64,
    ) -> Go {
        let Some(state) = self.tcp.flows.get(id).map(|c| c.state) else {
            return Go::Pass;
        };
        if seg.rst() || seg.syn() {
            return Go::Pass;
        }
        if matches!(state, State::Connecting | State::Queued) && !backend_side {
            // Routed, not spliced yet: bytes after the request's end are the next
            // request's. They are held now, not buffered with the head (which keeps
            // only in-order bytes after the split, so they would be lost).
            let done = self.tcp.per_request[id as usize]
                .as_ref()
                .is_some_and(|pr| pr.request_end().is_some());
            return if done {
                self.presplice_client(id, seg, payload, now_ms)
            } else {
                Go::Pass
            };
        }
        if state != State::Spliced {
            return Go::Pass;
        }
        if backend_side {
            self.presplice_backend(id, seg, payload, now_ms)
        } else {
            self.presplice_client(id, seg, payload, now_ms)
        }
    }

    fn presplice_backend(
        &mut self,
        id: ConnId,
        seg: &SegmentInfo,
        payload: &[u8],
        now_ms: u64,
    ) -> Go {
        let mut lent = false;
        loop {
            let TcpCore {
                flows, per_request, ..
            } = &mut self.tcp;
            let (Some(conn), Some(pr)) = (flows.get(id), per_request[id as usize].as_mut()) else {
                return Go::Pass;
            };
            let seq_c = seg.seq + conn.b2c.seq_delta as usize;
            match pr.backend_step(seq_c, payload, seg.fin()) {
                BackendStep::Pass => return Go::Pass,
                BackendStep::Drop(_) => {
                    self.stats().drop(DropReason::PresplicePending, 1);
                    return Go::Drop;
                }
                BackendStep::NeedBuffer => {
                    if lent || !self.lend_buffer(id, Lend::Store) {
                        self.stats().drop(DropReason::PresplicePending, 1);
                        return Go::Drop;
                    }
                    lent = true;
                }
                BackendStep::Plain => {
                    self.presplice_plain(id);
                    return Go::Pass;
                }
                BackendStep::Abort(lost) => {
                    self.presplice_abort(id, lost, now_ms);
                    return Go::Drop;
                }
            }
        }
    }

    fn presplice_client(
        &mut self,
        id: ConnId,
        seg: &SegmentInfo,
        payload: &[u8],
        now_ms: u64,
    ) -> Go {
        let mut lent = false;
        loop {
            let TcpCore {
                flows, per_request, ..
            } = &mut self.tcp;
            let (Some(conn), Some(pr)) = (flows.get(id), per_request[id as usize].as_mut()) else {
                return Go::Pass;
            };
            let acked = |s: SeqNumber| conn.client_acked(s);
            match pr.client_step(seg, payload, acked, conn.backend_closed()) {
                ClientStep::Pass => return Go::Pass,
                ClientStep::Trim { keep, refused } => {
                    self.stats().add(
                        if refused {
                            Counter::PrespliceHoldRefused
                        } else {
                            Counter::PrespliceHeld
                        },
                        1,
                    );
                    return Go::Trim(keep);
                }
                ClientStep::Drop(_) => {
                    self.stats().drop(DropReason::PresplicePending, 1);
                    return Go::Drop;
                }
                ClientStep::NeedBuffer { keep } => {
                    if lent || !self.lend_buffer(id, Lend::Held) {
                        // Not kept: the client sends those bytes again later.
                        self.stats().add(Counter::PrespliceHoldRefused, 1);
                        return Go::Trim(keep);
                    }
                    lent = true;
                }
                ClientStep::NextHead { head_len } => {
                    if let Err(e) = self.straight_through(id, seg, &payload[..head_len], payload) {
                        self.presplice_abort(id, Lost::Framing(e), now_ms);
                        return Go::Drop;
                    }
                }
                ClientStep::NextRound {
                    client_next,
                    our_next,
                } => {
                    if !self.start_next_round(id, client_next, our_next, now_ms) {
                        // No head buffer for the next request: it waits, unacked.
                        self.stats().add(Counter::PrespliceHoldRefused, 1);
                        return Go::Drop;
                    }
                    return Go::Pass;
                }
                ClientStep::Abort(lost) => {
                    self.presplice_abort(id, lost, now_ms);
                    return Go::Drop;
                }
            }
        }
    }

    /// Splice mode: the next request arrived whole, right after a complete response.
    /// If the rules send it to a pool and its head needs no rewrite, it goes straight
    /// to the connection's backend (counted as routed there); otherwise it is held for
    /// a round of its own, where the switch answers or rewrites it.
    fn straight_through(
        &mut self,
        id: ConnId,
        seg: &SegmentInfo,
        head: &[u8],
        payload: &[u8],
    ) -> Result<(), FramingError> {
        let rt = Arc::clone(&self.tcp.rt);
        let pool = self.tcp.pool_of[id as usize];
        let vip = self.tcp.flows.get(id).map(|c| c.client.local_ip);
        // An X-Forwarded-For pool rewrites every head (a PROXY header goes once per
        // backend connection, not per request): such a request needs its round.
        let rewrites = rt
            .config
            .pools
            .get(pool)
            .is_some_and(|p| p.client_address == rules::config::ClientAddress::XForwardedFor)
            || vip.is_some_and(|v| rt.config.forwards_normalized_path(v));
        let parsed = if rewrites {
            None
        } else {
            http::parse_request(head).ok()
        };
        let straight = match parsed {
            Some(req) => {
                let (rule, action) = rt.router.decide(&req);
                if matches!(action, rules::Action::Pool(_)) {
                    if let Some(pr) = self.tcp.per_request[id as usize].as_mut() {
                        pr.continue_with(&req, payload, seg.seq)?;
                    }
                    let stats = &self.shared.stats[self.index];
                    if let Some(r) = rule {
                        crate::stats::bump(&stats.rule_hits[rt.rule_slot[r]], 1);
                    }
                    crate::stats::bump(&stats.pool_requests[rt.pool_slot[pool]], 1);
                    self.stats().add(Counter::RequestsRouted, 1);
                    true
                } else {
                    false
                }
            }
            // Rewritten, or refused before the backend sees it, in a round of its own.
            None => false,
        };
        if !straight {
            if let Some(pr) = self.tcp.per_request[id as usize].as_mut() {
                pr.hold_for_round();
            }
        }
        Ok(())
    }

    /// What the client is told on top of backend segment of `id` (see
    /// `PerRequest::receive_limit`): held bytes acknowledged, the window cut at the
    /// bound.
    pub(super) fn receive_limit(&self, id: ConnId) -> Option<ReceiveLimit> {
        let pr = self.tcp.per_request[id as usize].as_ref()?;
        let spare = if !self.tcp.heads.is_empty() || self.tcp.heads_allocated < self.tcp.max_heads {
            self.tcp.head_capacity
        } else {
            0
        };
        pr.receive_limit(spare)
    }

    /// Lends a head buffer from the core's pool to `id`'s per-request state, for `what`;
    /// `false`: the pool is empty.
    fn lend_buffer(&mut self, id: ConnId, what: Lend) -> bool {
        let Some(b) = self.take_head_buffer() else {
            return false;
        };
        match self.tcp.per_request[id as usize].as_mut() {
            Some(pr) => match what {
                Lend::Held => pr.lend_held(b),
                Lend::Store => pr.lend_store(b),
            },
            None => self.tcp.heads.push(b),
        }
        true
    }

    /// After the state machine decided to forward a client segment of presplice
    /// connection `id` (cut as it was forwarded): the request framer moves over it.
    pub(super) fn presplice_commit(
        &mut self,
        id: ConnId,
        seg: &SegmentInfo,
        payload: &[u8],
        now_ms: u64,
    ) {
        let Some(pr) = self.tcp.per_request[id as usize].as_mut() else {
            return;
        };
        if let Some(lost) = pr.client_commit(seg.seq, payload) {
            self.presplice_abort(id, lost, now_ms);
        }
    }

    /// Brings the request framer of `id` up to the bytes buffered with its head while
    /// the backend is connected (call before the head buffer goes back to the pool);
    /// bytes of a next request are moved out of the head, to wait for their round.
    pub(super) fn presplice_sync(&mut self, id: ConnId, now_ms: u64) {
        let TcpCore {
            flows, per_request, ..
        } = &mut self.tcp;
        let Some(pr) = per_request[id as usize].as_mut() else {
            return;
        };
        let Some(conn) = flows.get(id) else {
            return;
        };
        if !matches!(conn.state, State::Connecting | State::Queued) {
            return;
        }
        let Some(head) = conn.head.as_ref() else {
            return;
        };
        match pr.sync_buffered(head.base(), head.contiguous()) {
            Ok(Buffered::One) => {}
            Ok(Buffered::More { len }) => {
                if !self.split_head(id, len) {
                    self.respond(id, 503, now_ms);
                }
            }
            Err(e) => self.presplice_abort(id, Lost::Framing(e), now_ms),
        }
    }

    /// The head buffer of `id` holds more than its request (`len` bytes): the rest
    /// moves to the held buffer, to be the next round's head. `false`: no buffer left.
    pub(super) fn split_head(&mut self, id: ConnId, len: usize) -> bool {
        let has_buffer = self.tcp.per_request[id as usize]
            .as_ref()
            .is_some_and(|pr| pr.holds_buffer());
        if !has_buffer && !self.lend_buffer(id, Lend::Held) {
            return false;
        }
        let TcpCore {
            flows, per_request, ..
        } = &mut self.tcp;
        let (Some(conn), Some(pr)) = (flows.get_mut(id), per_request[id as usize].as_mut()) else {
            return false;
        };
        let Some(head) = conn.head.as_mut() else {
            return false;
        };
        pr.hold_from(head.base() + len, &head.contiguous()[len..]);
        head.truncate(len);
        self.stats().add(Counter::PrespliceHeld, 1);
        true
    }

    /// Stops per-request routing for `id` after a 101 upgrade: it stays spliced to its
    /// backend, opaque.
    pub(super) fn presplice_plain(&mut self, id: ConnId) {
        if self.release_per_request(id) {
            self.stats().add(Counter::PrespliceFallbacks, 1);
        }
    }

    /// Gives the per-request state of `id` and its buffers back to the pools.
    pub(super) fn release_per_request(&mut self, id: ConnId) -> bool {
        let Some(mut pr) = self.tcp.per_request[id as usize].take() else {
            return false;
        };
        self.tcp.heads.extend(pr.take_buffers());
        self.tcp.pr_pool.push(pr);
        true
    }

    /// Message boundaries are lost on `id`: both ends are reset (guessing boundaries is
    /// how requests get smuggled).
    fn presplice_abort(&mut self, id: ConnId, lost: Lost, now_ms: u64) {
        tracing::debug!(
            worker = self.index,
            conn = id,
            ?lost,
            "presplice: framing lost, resetting"
        );
        self.stats().add(Counter::PrespliceAborts, 1);
        self.release_per_request(id);
        self.kill_conn(id, now_ms);
    }

    /// After a segment of presplice connection `id` went through: starts the next round
    /// if the exchange is over and the next request waits (see
    /// `PerRequest::next_round_ready`). At once, not when the backend acknowledges the
    /// request's last bytes: that acknowledgment may never come (seen: a hang of 60 s),
    /// and the response is complete already. A backend without the whole request is
    /// reset rather than pooled (`start_next_round`). The caller routes the round's
    /// head.
    pub(super) fn presplice_late_round(&mut self, id: ConnId, now_ms: u64) {
        let ready = match (
            self.tcp.flows.get(id),
            self.tcp.per_request[id as usize].as_ref(),
        ) {
            (Some(c), Some(pr)) if c.state == State::Spliced => {
                pr.next_round_ready(|s| c.client_acked(s))
            }
            _ => None,
        };
        let Some((client_next, our_next)) = ready else {
            return;
        };
        tracing::trace!(worker = self.index, conn = id, "presplice: late next round");
        if !self.start_next_round(id, client_next, our_next, now_ms) {
            // No head buffer: the next segment from either side asks again.
            self.stats().add(Counter::PrespliceHoldRefused, 1);
        }
    }

    /// Ends the finished exchange on `id` and readies it to read its next request
    /// (already held, or to come). `false`: no head buffer is free.
    fn start_next_round(
        &mut self,
        id: ConnId,
        client_next: SeqNumber,
        our_next: SeqNumber,
        now_ms: u64,
    ) -> bool {
        // In a cluster (presplice mode), the next request is not acknowledged by the
        // switch (`Conn::defer_head_ack`): until its backend has it, a member that adopts
        // the connection can still route it.
        let durable = !self.tcp.cluster_flows.is_empty() && !self.tcp.meta[id as usize].sticky;
        let (tainted, held) = match self.tcp.per_request[id as usize].as_mut() {
            Some(pr) => (pr.tainted(), pr.take_held()),
            None => (true, None),
        };
        let head = match held {
            Some(h) => h,
            None => match self.take_head_buffer() {
                Some(mut h) => {
                    h.reset(client_next);
                    h
                }
                None => return false,
            },
        };
        // The previous backend connection is done (its response complete and acked):
        // back to its warm pool if it has one, else reset and forgotten.
        // Splice mode keeps its backend: the connection goes to the warm pool even
        // where the pool keeps none, and the round's connect takes it back.
        // (Not for a PROXY pool: a new backend connection, with its PROXY header.)
        let proxy = self
            .tcp
            .rt
            .config
            .pools
            .get(self.tcp.pool_of[id as usize])
            .is_some_and(|p| {
                matches!(
                    p.client_address,
                    rules::config::ClientAddress::ProxyV1 | rules::config::ClientAddress::ProxyV2
                )
            });
        let keep = self.tcp.meta[id as usize].sticky && !proxy;
        // Only a backend that has every byte of the request, and nothing after it, goes
        // back to the pool: one that answered before the body's tail arrived would take
        // the next request's first bytes for that tail (nginx then answers 400).
        let whole = self
            .tcp
            .flows
            .get(id)
            .is_some_and(|c| c.backend_has_all_of(client_next));
        if tainted || !whole || !self.return_warm(id, our_next, now_ms, keep) {
            let mut out = Outputs::default();
            if let Some(c) = self.tcp.flows.get_mut(id) {
                c.abort_backend(&mut out);
            }
            for e in out.iter() {
                if let Emit::ToBackend(s) = e {
                    self.send_to_backend(id, &s);
                }
            }
        }
        self.release_backend(id);
        let mut whole_head = false;
        if let Some(c) = self.tcp.flows.get_mut(id) {
            if let Some(b) = c.take_rewrite() {
                self.tcp.rewrite_bufs.push(b);
            }
            if let Some(old) = c.head.take() {
                self.tcp.heads.push(old);
            }
            c.next_round(head, client_next, our_next, now_ms);
            if durable {
                c.defer_head_ack();
            }
            whole_head = c.has_whole_head();
        }
        let meta = &mut self.tcp.meta[id as usize];
        meta.tried = [0; 4];
        meta.routed_us = 0;
        meta.ttfb_done = false;
        meta.route_pending = whole_head;
        self.stats().add(Counter::PrespliceRounds, 1);
        self.note_adopted_round(id);
        true
    }
}
