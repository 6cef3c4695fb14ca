//! The agent's count of the kernel's complete responses, so that a connection moves to
//! another agent only between responses.
//!
//! A kernel with nothing unacknowledged is not done: a server writes its response in
//! pieces (nginx a head, then the file; a proxied or generated body chunk by chunk, with
//! pauses between), and between two pieces every byte the kernel sent may be
//! acknowledged. A connection let go there would give the client the next backend's
//! bytes in the middle of the body it is reading. [`ResponseTally`] frames the kernel's
//! byte stream ([`rules::framing::ResponseFramer`]) as the agent passes it on and counts
//! the final responses that ended in the current round (since the connection came to
//! this agent, or came back to it); the switch's `Release` says how many requests the
//! kernel was given in the round, and the agent lets go only once as many have ended.
//!
//! Only heads and chunk-size lines are read; body bytes of a known length are counted,
//! arrived or not. A hole in what must be read (a kernel segment the agent never saw
//! before a later one) stops the count where it is: [`ResponseTally::answered`] then
//! cannot say yes, and the caller falls back on the kernel having been silent for a
//! while ([`QUIET_MS`]: no byte from it, none given to it), as it does when the switch
//! could not count (a HEAD request, whose response's `Content-Length` describes no body).
use rules::framing::{Phase, RequestMethod, ResponseEvent, ResponseFramer};

use crate::wire::SeqNumber;

/// When the count cannot decide: how long the kernel must have sent nothing before an
/// idle connection may go. A guess, which a server pausing longer mid-response defeats.
pub const QUIET_MS: u64 = 250;

/// The longest response head the agent reads (parsed in place, as it came in one
/// segment); a longer one leaves the count to the quiet rule.
pub const MAX_HEAD: usize = rules::framing::MAX_RESPONSE_HEAD;

/// The most of a head split across segments that a flow keeps: the flow's one buffer,
/// so its size is what every handed-off connection costs the agent (64 MiB at the
/// default 65,536 flows). A split head longer than this leaves the count to the quiet
/// rule.
pub const SPLIT_HEAD: usize = 1024;

/// Frames one connection's kernel → client stream (kernel sequence space).
#[derive(Debug)]
pub struct ResponseTally {
    framer: ResponseFramer,
    /// Every kernel byte before this has been framed; `None` until the kernel's ISN is
    /// known.
    next: Option<SeqNumber>,
    /// Final responses complete in this round.
    complete: u32,
    /// A byte the framer had to read never came in order, or the stream is not HTTP/1.x
    /// as the framer reads it: the count says nothing from here on.
    lost: bool,
    /// A 101 (or a 2xx to CONNECT) ended: another protocol from here on, never a
    /// response boundary again, so the connection never goes.
    upgraded: bool,
    /// When the kernel last sent a byte, or was given one of the client's (a request it
    /// has yet to answer): what the silence of the fallback is measured from.
    last_byte_ms: u64,
}

impl Default for ResponseTally {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseTally {
    pub fn new() -> Self {
        ResponseTally {
            framer: ResponseFramer::with_split_buffer(
                vec![0; SPLIT_HEAD].into_boxed_slice(),
                MAX_HEAD,
            ),
            next: None,
            complete: 0,
            lost: false,
            upgraded: false,
            last_byte_ms: 0,
        }
    }

    /// The kernel's SYN-ACK came with ISN `isn`: its stream starts after it.
    pub fn start(&mut self, isn: SeqNumber) {
        if self.next.is_none() {
            self.next = Some(isn + 1);
        }
    }

    /// The connection came back to this kernel with new requests: count afresh.
    pub fn new_round(&mut self) {
        self.complete = 0;
    }

    /// Client bytes went to the kernel: a request it may not have begun to answer, so
    /// silence counts from now.
    pub fn on_client_bytes(&mut self, now_ms: u64) {
        self.last_byte_ms = self.last_byte_ms.max(now_ms);
    }

    /// A kernel segment at `seq` (kernel space) carrying `payload`.
    pub fn on_kernel(&mut self, seq: SeqNumber, payload: &[u8], now_ms: u64) {
        if payload.is_empty() {
            return;
        }
        let Some(next) = self.next else {
            return;
        };
        let end = seq + payload.len();
        if end.wrapping_diff(next) <= 0 {
            // Already framed (a retransmission).
            return;
        }
        self.last_byte_ms = self.last_byte_ms.max(now_ms);
        if self.lost || self.upgraded {
            return;
        }
        let ahead = seq.wrapping_diff(next);
        let mut bytes = payload;
        if ahead > 0 {
            // A hole before this segment: crossable only if it lies in counted body bytes.
            if u64::from(ahead as u32) > self.framer.skippable() {
                self.lost = true;
                return;
            }
            let p = self.framer.skip(ahead as u64);
            self.count(p.event);
        } else {
            bytes = &payload[(-ahead) as usize..];
        }
        self.next = Some(end);
        self.frame(bytes);
    }

    fn frame(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.framer.phase() == Phase::Idle
                && self.framer.begin(RequestMethod::Other).is_err()
            {
                self.lost = true;
                return;
            }
            let skip = self.framer.skippable().min(bytes.len() as u64);
            let p = if skip > 0 {
                self.framer.skip(skip)
            } else {
                match self.framer.feed(bytes) {
                    Ok(p) => p,
                    Err(_) => {
                        self.lost = true;
                        return;
                    }
                }
            };
            if !self.count(p.event) {
                return;
            }
            bytes = &bytes[p.used..];
        }
    }

    /// Takes a framer event into the count; false once the stream is no longer HTTP.
    fn count(&mut self, event: Option<ResponseEvent>) -> bool {
        match event {
            Some(ResponseEvent::Complete(_)) => self.complete += 1,
            Some(ResponseEvent::Upgraded(_)) => {
                self.upgraded = true;
                return false;
            }
            _ => {}
        }
        true
    }

    /// Whether the kernel has answered `requests` requests in full this round, and is
    /// between responses. `requests == 0` (the switch could not count) or a count that
    /// cannot be trusted: whether the kernel has been silent for [`QUIET_MS`]. An
    /// upgraded connection: never.
    pub fn answered(&self, requests: u16, now_ms: u64) -> bool {
        if self.upgraded {
            return false;
        }
        if requests == 0 || self.lost || self.next.is_none() {
            return now_ms.saturating_sub(self.last_byte_ms) >= QUIET_MS;
        }
        self.framer.phase() == Phase::Idle && self.complete >= u32::from(requests)
    }

    /// Final responses complete this round (for logs).
    pub fn complete(&self) -> u32 {
        self.complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISN: SeqNumber = SeqNumber(1000);
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

    fn tally() -> (ResponseTally, SeqNumber) {
        let mut t = ResponseTally::new();
        t.start(ISN);
        (t, ISN + 1)
    }

    #[test]
    fn a_head_without_its_body_is_not_an_answer() {
        let (mut t, mut at) = tally();
        t.on_kernel(at, HEAD, 0);
        at += HEAD.len();
        // Everything sent is framed and (say) acknowledged: still mid-response.
        assert!(!t.answered(1, 10_000));
        t.on_kernel(at, b"0123456789", 10_000);
        assert!(t.answered(1, 10_000));
        assert!(!t.answered(2, 10_000), "one response for two requests");
    }

    #[test]
    fn chunks_with_a_pause_between_them() {
        let (mut t, mut at) = tally();
        for piece in [CHUNKED, b"5\r\nhello\r\n", b"0\r\n\r\n"] {
            assert!(!t.answered(1, 0));
            t.on_kernel(at, piece, 0);
            at += piece.len();
        }
        assert!(t.answered(1, 0));
    }

    #[test]
    fn pipelined_responses_in_one_segment_and_retransmissions() {
        let (mut t, at) = tally();
        let mut two = HEAD.to_vec();
        two.extend_from_slice(b"0123456789");
        two.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
        t.on_kernel(at, &two, 0);
        // The same bytes again, and a piece of them: framed once.
        t.on_kernel(at, &two, 0);
        t.on_kernel(at + 5, &two[5..20], 0);
        assert_eq!(t.complete(), 2);
        assert!(t.answered(2, 0));
        // A new round counts from zero.
        t.new_round();
        assert!(!t.answered(1, 0));
    }

    #[test]
    fn a_long_head_in_one_segment_and_a_short_one_split() {
        let (mut t, mut at) = tally();
        let mut long = b"HTTP/1.1 200 OK\r\nSet-Cookie: ".to_vec();
        long.resize(4000, b'c');
        long.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
        t.on_kernel(at, &long, 0);
        at += long.len();
        assert!(t.answered(1, 0));
        // The next head in three pieces.
        let head = b"HTTP/1.1 204 No Content\r\n\r\n";
        for piece in [&head[..5], &head[5..20], &head[20..]] {
            t.on_kernel(at, piece, 0);
            at += piece.len();
        }
        assert!(t.answered(2, 0));
    }

    #[test]
    fn a_hole_in_counted_body_bytes_is_crossed() {
        let (mut t, mut at) = tally();
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n";
        t.on_kernel(at, head, 0);
        at += head.len();
        // Bytes 1000..3000 first; 0..1000 (lost before the agent) come again later.
        t.on_kernel(at + 1000, &[b'x'; 2000], 0);
        assert_eq!(t.complete(), 1);
        t.on_kernel(at, &[b'x'; 1000], 0);
        assert!(t.answered(1, 0));
    }

    #[test]
    fn a_hole_in_a_head_falls_back_on_silence() {
        let (mut t, at) = tally();
        t.on_kernel(at + 5, &HEAD[5..], 100);
        t.on_kernel(at + HEAD.len(), b"0123456789", 100);
        assert!(!t.answered(1, 100 + QUIET_MS - 1));
        assert!(t.answered(1, 100 + QUIET_MS));
    }

    #[test]
    fn an_upgraded_connection_never_goes() {
        let (mut t, at) = tally();
        let up = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        t.on_kernel(at, up, 50);
        t.on_kernel(at + up.len(), b"frames", 60);
        for requests in [0, 1] {
            assert!(!t.answered(requests, 60 + 100 * QUIET_MS));
        }
    }

    #[test]
    fn a_hole_that_ends_a_response_counts_it() {
        let (mut t, at) = tally();
        t.on_kernel(at, HEAD, 0);
        // The body's bytes lost before the agent; the next response's head seen first.
        let next = b"HTTP/1.1 204 No Content\r\n\r\n";
        t.on_kernel(at + HEAD.len() + 10, next, 0);
        assert_eq!(t.complete(), 2);
    }

    #[test]
    fn silence_counts_from_the_last_request_too() {
        let (mut t, _) = tally();
        // A HEAD request (uncountable) just given to a kernel that has sent nothing yet:
        // not silence, a server at work.
        t.on_client_bytes(1_000);
        assert!(!t.answered(0, 1_000 + QUIET_MS - 1));
        assert!(t.answered(0, 1_000 + QUIET_MS));
    }

    #[test]
    fn an_unknown_count_falls_back_on_silence() {
        let (mut t, at) = tally();
        t.on_kernel(at, HEAD, 0);
        assert!(!t.answered(0, QUIET_MS - 1));
        assert!(t.answered(0, QUIET_MS));
    }
}
