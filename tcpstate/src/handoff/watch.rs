//! The switch's watch over a handed-off connection's later requests.
//!
//! Once handed off, a connection's client segments still cross the switch (only the
//! responses skip it), so the switch can still read every request the client sends on
//! a keep-alive connection and check it against the rules before the backend sees it:
//! a `deny` holds on every request, not only the first. [`RequestWatch`] frames the
//! client's byte stream from the end of the first request: request heads are read,
//! bodies are counted ([`rules::framing::RequestFramer`]), and only the bytes the
//! framer must read are kept.
//!
//! Nothing is held back for framing: a segment ahead of a hole is forwarded at once
//! (so the backend can acknowledge it selectively and the client's fast recovery
//! works), its bytes copied into a small store if the framer will need them. Body
//! bytes of a known length are never copied: the framer skips them by count, even
//! before they arrive. What the store cannot take (past its capacity, or too many
//! holes) is dropped and counted; the client sends it again.
//!
//! ```text
//! client stream:  | request 1 (routed, handed off) | body 1 (counted) | head 2 | body 2 ...
//!                                                   ^ framed           ^ store base when
//!                                                                        head 2 is due
//! ```
use rules::framing::{BodyFraming, FramingError, Phase, RequestFramer, RequestMethod};
use rules::http::RequestHead;

use crate::reasm::{HeadBuffer, Insert};
use crate::wire::SeqNumber;

/// What to do with a client segment of a handed-off connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStep {
    /// Forward it.
    Pass,
    /// A whole request head is in the store ([`RequestWatch::head`], `len` bytes):
    /// decide on it, then [`RequestWatch::accept`] it and ask again, or end the
    /// connection. The segment has not been forwarded.
    Head { len: usize },
    /// Lend a store ([`RequestWatch::lend`]) and ask again, or drop the segment.
    NeedStore,
    /// Do not forward it (the store could not keep bytes the framer needs); the
    /// client sends them again.
    Drop,
    /// Request boundaries are lost (malformed framing, a head larger than the store):
    /// end the connection. Nothing of the offending segment was forwarded.
    Lost(FramingError),
}

/// Frames a handed-off connection's client → server stream (client sequence space).
#[derive(Debug)]
pub struct RequestWatch {
    framer: RequestFramer,
    /// Every byte before this is accounted for (forwarded and framed).
    framed: SeqNumber,
    /// Bytes from `framed` on that the framer has yet to read; lent by the caller
    /// when first needed, given back with [`take_store`](Self::take_store).
    store: Option<HeadBuffer>,
    /// Requests the watch has framed after the first.
    pub requests: u32,
    /// A HEAD among the requests given to the agent: its response's length headers
    /// describe no body, so the agent cannot frame responses by them alone.
    head_method: bool,
    /// A request that belongs to another backend is held while the current agent is
    /// asked to let the connection go.
    pending: Option<Migration>,
}

/// A request held for a move to another agent (see `handoff::control`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// What the client had acknowledged of the current kernel's bytes when it sent the
    /// request: where the next backend's answer must start.
    pub client_ack: SeqNumber,
    /// Release requests sent so far.
    pub tries: u32,
    /// When to ask again.
    pub next_ms: u64,
    /// The pool the held request goes to.
    pub pool: usize,
}

impl RequestWatch {
    /// A watch that starts after the first request: its head ends at `head_end`
    /// (client space), and `first` is that head, parsed, for its body framing.
    pub fn new(first: &RequestHead<'_>, head_end: SeqNumber) -> Result<Self, FramingError> {
        let mut framer = RequestFramer::new();
        framer.start_body(first)?;
        Ok(RequestWatch {
            framer,
            framed: head_end,
            store: None,
            requests: 0,
            head_method: RequestMethod::of(first.method) == RequestMethod::Head,
            pending: None,
        })
    }

    /// Where the framer stands (client space): bytes before it are accounted for.
    pub fn framed(&self) -> SeqNumber {
        self.framed
    }

    /// The request [`WatchStep::Head`] found is held for a move to another agent: no
    /// byte from it on goes to the current one until [`take_for_move`](Self::take_for_move)
    /// or [`cancel_move`](Self::cancel_move).
    pub fn hold_for_move(&mut self, m: Migration) {
        self.pending = Some(m);
    }

    /// The held move, if any (`tries`, `next_ms` may be updated through it).
    pub fn pending_move(&mut self) -> Option<&mut Migration> {
        self.pending.as_mut()
    }

    /// The move goes ahead: the store (its base is the held request's first byte, with
    /// the request's bytes in it) becomes the connection's head buffer for the next
    /// backend, and the watch is done (a new one starts from the next routing).
    pub fn take_for_move(&mut self) -> Option<(Migration, crate::reasm::HeadBuffer)> {
        let m = self.pending.take()?;
        let store = self.store.take()?;
        Some((m, store))
    }

    /// Takes a store for the bytes the framer must read (a head buffer of the core's).
    pub fn lend(&mut self, mut store: HeadBuffer) {
        store.reset(self.framed);
        self.store = Some(store);
    }

    /// Gives the store back (at the connection's end).
    pub fn take_store(&mut self) -> Option<HeadBuffer> {
        self.store.take()
    }

    /// The head [`WatchStep::Head`] found (its first `len` bytes are the head).
    pub fn head(&self) -> &[u8] {
        self.store.as_ref().map(|s| s.contiguous()).unwrap_or(&[])
    }

    /// The head of `len` bytes ([`WatchStep::Head`]) may go on: its body, framed as
    /// `framing` (`RequestFramer::framing_of` the parsed head; `close`: it carries
    /// `Connection: close`), is framed next.
    pub fn accept(
        &mut self,
        framing: BodyFraming,
        close: bool,
        method: RequestMethod,
        len: usize,
    ) -> Result<(), FramingError> {
        self.framer.start(framing, close)?;
        self.advance(len);
        self.requests += 1;
        self.head_method |= method == RequestMethod::Head;
        Ok(())
    }

    /// The requests the agent's kernel was given in this round, the first included, as
    /// a `Release` carries them (`control::Control::Release`): 0 when the agent cannot
    /// count responses against them (a HEAD among them, or more than `u16::MAX`).
    pub fn requests_given(&self) -> u16 {
        if self.head_method {
            return 0;
        }
        u16::try_from(self.requests + 1).unwrap_or(0)
    }

    fn advance(&mut self, n: usize) {
        self.framed += n;
        if let Some(s) = self.store.as_mut() {
            s.advance_to(self.framed);
            if s.contiguous_len() == 0 && s.out_of_order().next().is_none() {
                // Nothing held: a fresh base, so the whole capacity is ahead of it.
                s.reset(self.framed);
            }
        }
    }

    /// Body bytes of a known count need no reading: skip them at once, arrived or not.
    fn skip_counted(&mut self) {
        let k = self.framer.skippable();
        if k > 0 {
            let p = self.framer.skip(k);
            self.advance(p.used);
        }
    }

    /// A client segment (`seq`, `payload`) of the handed-off connection. Call again
    /// with the same segment after [`WatchStep::Head`] (accepted) or
    /// [`WatchStep::NeedStore`]: bytes already framed are not framed twice.
    pub fn on_segment(&mut self, seq: SeqNumber, payload: &[u8]) -> WatchStep {
        if let Phase::Failed(e) = self.framer.phase() {
            return WatchStep::Lost(e);
        }
        self.skip_counted();
        let end = seq + payload.len();
        if payload.is_empty() || end.wrapping_diff(self.framed) <= 0 {
            // An ACK, a FIN, or bytes already framed (a retransmission).
            return WatchStep::Pass;
        }
        if self.pending.is_some() {
            // Bytes of the held request or after it: the current agent must not get
            // them, the next one will (kept in the store, or sent again by the client).
            if let Some(store) = self.store.as_mut() {
                let _ = store.insert(seq, payload);
            }
            return WatchStep::Drop;
        }
        if self.framer.phase() == Phase::Closed {
            // After a request with `Connection: close` the server reads nothing more
            // (RFC 9112 9.6): whatever the client sends is not a request it will serve.
            return WatchStep::Pass;
        }
        let Some(store) = self.store.as_mut() else {
            return WatchStep::NeedStore;
        };
        match store.insert(seq, payload) {
            Insert::Added { .. } | Insert::Duplicate => {}
            // Bytes past the store's end: in a head, the head is too large to check.
            Insert::Overflow | Insert::OutOfWindow
                if self.framer.phase() == Phase::Idle && store.is_full() =>
            {
                return WatchStep::Lost(FramingError::HeadTooLarge);
            }
            Insert::Overflow | Insert::OutOfWindow | Insert::TooFragmented => {
                return WatchStep::Drop;
            }
        }
        loop {
            self.skip_counted();
            let Some(store) = self.store.as_ref() else {
                return WatchStep::NeedStore;
            };
            match self.framer.phase() {
                Phase::Idle => {
                    let bytes = store.contiguous();
                    if let Some(len) = rules::http::head_end(bytes) {
                        return WatchStep::Head { len };
                    }
                    if store.is_full() {
                        return WatchStep::Lost(FramingError::HeadTooLarge);
                    }
                    return WatchStep::Pass;
                }
                Phase::Body => {
                    let bytes = store.contiguous();
                    if bytes.is_empty() {
                        return WatchStep::Pass;
                    }
                    match self.framer.feed(bytes) {
                        Ok(p) => {
                            let used = p.used;
                            self.advance(used);
                            if !p.complete {
                                return WatchStep::Pass;
                            }
                        }
                        Err(e) => return WatchStep::Lost(e),
                    }
                }
                Phase::Closed | Phase::Opaque | Phase::Head => return WatchStep::Pass,
                Phase::Failed(e) => return WatchStep::Lost(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u32 = 4_294_967_000; // the stream wraps past 2^32 in these tests

    fn watch_after(first: &[u8]) -> RequestWatch {
        let end = rules::http::head_end(first).unwrap();
        let req = rules::http::parse_request(&first[..end]).unwrap();
        let mut w = RequestWatch::new(&req, SeqNumber(BASE) + end).unwrap();
        w.lend(HeadBuffer::new(256));
        w
    }

    /// Feeds `seg` at stream offset `off`; accepts every head found; returns the
    /// targets of the heads found and the final step.
    fn run(w: &mut RequestWatch, off: usize, seg: &[u8]) -> (Vec<String>, WatchStep) {
        let mut found = Vec::new();
        loop {
            match w.on_segment(SeqNumber(BASE) + off, seg) {
                WatchStep::Head { len } => {
                    let head = w.head()[..len].to_vec();
                    let req = rules::http::parse_request(&head).unwrap();
                    found.push(req.path.to_string());
                    let framing = RequestFramer::framing_of(&req).unwrap();
                    w.accept(
                        framing,
                        req.connection_close,
                        RequestMethod::of(req.method),
                        len,
                    )
                    .unwrap();
                }
                step => return (found, step),
            }
        }
    }

    #[test]
    fn the_requests_given_count_the_first_and_a_head_makes_them_uncountable() {
        let first = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut w = watch_after(first);
        assert_eq!(w.requests_given(), 1);
        let two = b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n";
        run(&mut w, first.len(), two);
        assert_eq!(w.requests_given(), 2);
        let head = b"HEAD /three HTTP/1.1\r\nHost: a\r\n\r\n";
        run(&mut w, first.len() + two.len(), head);
        assert_eq!(w.requests_given(), 0);
        assert_eq!(
            watch_after(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").requests_given(),
            0
        );
    }

    #[test]
    fn keep_alive_heads_are_found_in_order_and_bodies_counted() {
        let first = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
        let mut w = watch_after(first);
        let mut stream = first.to_vec();
        stream.extend_from_slice(b"hello");
        stream.extend_from_slice(b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n");
        stream.extend_from_slice(b"GET /three HTTP/1.1\r\nHost: a\r\n\r\n");
        // One segment with the body and both heads.
        let (found, step) = run(&mut w, first.len(), &stream[first.len()..]);
        assert_eq!(found, ["/two", "/three"]);
        assert_eq!(step, WatchStep::Pass);
        assert_eq!(w.framed(), SeqNumber(BASE) + stream.len());
        assert_eq!(w.requests, 2);
    }

    #[test]
    fn a_head_split_over_segments_is_found_when_whole() {
        let first = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut w = watch_after(first);
        let next = b"GET /admin/ HTTP/1.1\r\nHost: a\r\n\r\n";
        let at = first.len();
        assert_eq!(run(&mut w, at, &next[..10]), (vec![], WatchStep::Pass));
        let (found, step) = run(&mut w, at + 10, &next[10..]);
        assert_eq!(
            (found.as_slice(), step),
            (&["/admin/".to_string()][..], WatchStep::Pass)
        );
    }

    #[test]
    fn segments_ahead_of_a_hole_are_passed_and_read_when_it_fills() {
        let first = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut w = watch_after(first);
        let next = b"GET /late HTTP/1.1\r\nHost: a\r\n\r\n";
        let at = first.len();
        // The second half first: forwarded at once, kept for the framer.
        assert_eq!(run(&mut w, at + 12, &next[12..]), (vec![], WatchStep::Pass));
        // The hole fills: the whole head is there.
        let (found, _) = run(&mut w, at, &next[..12]);
        assert_eq!(found, ["/late"]);
    }

    #[test]
    fn counted_body_bytes_are_skipped_even_before_they_arrive() {
        let first = b"PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n";
        let mut w = watch_after(first);
        let at = first.len();
        // A segment deep in the body, far beyond the store's 256 bytes: no copy needed.
        assert_eq!(
            run(&mut w, at + 50_000, &[7u8; 1400]),
            (vec![], WatchStep::Pass)
        );
        // The next head right after the body, ahead of the body's missing bytes.
        let next = b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n";
        let (found, _) = run(&mut w, at + 100_000, next);
        assert_eq!(found, ["/after"]);
    }

    #[test]
    fn chunked_bodies_are_read_and_the_next_head_found() {
        let first = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut w = watch_after(first);
        let rest = b"5\r\nhello\r\n0\r\n\r\nGET /n HTTP/1.1\r\nHost: a\r\n\r\n";
        let at = first.len();
        let (found, step) = run(&mut w, at, rest);
        assert_eq!(
            (found.as_slice(), step),
            (&["/n".to_string()][..], WatchStep::Pass)
        );
    }

    #[test]
    fn malformed_chunks_and_oversized_heads_are_lost() {
        let first = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut w = watch_after(first);
        let (_, step) = run(&mut w, first.len(), b"zz\r\nhello\r\n");
        assert!(matches!(step, WatchStep::Lost(_)), "{step:?}");

        let first = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut w = watch_after(first);
        let (_, step) = run(&mut w, first.len(), &[b'a'; 300]);
        assert_eq!(step, WatchStep::Lost(FramingError::HeadTooLarge));
    }

    #[test]
    fn no_store_asks_for_one_and_retransmissions_pass() {
        let first = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let end = first.len();
        let req = rules::http::parse_request(first).unwrap();
        let mut w = RequestWatch::new(&req, SeqNumber(BASE) + end).unwrap();
        // A retransmission of the first request needs nothing.
        assert_eq!(w.on_segment(SeqNumber(BASE), first), WatchStep::Pass);
        assert_eq!(
            w.on_segment(SeqNumber(BASE) + end, b"GET"),
            WatchStep::NeedStore
        );
        w.lend(HeadBuffer::new(64));
        assert_eq!(w.on_segment(SeqNumber(BASE) + end, b"GET"), WatchStep::Pass);
        assert!(w.take_store().is_some());
    }
}
