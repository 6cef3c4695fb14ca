//! Rounds of a presplice connection as the papers draw them: segments in, decisions
//! out, with loss, reordering and pipelining.
use super::*;
use crate::wire::tcp_flags;

/// Client space: the request head starts here, the response too (our side).
const C0: u32 = 1_000;
const R0: u32 = 50_000;

fn seg(seq: SeqNumber, len: usize, ack: Option<SeqNumber>, flags: u8) -> SegmentInfo {
    SegmentInfo {
        seq,
        ack,
        flags,
        window: 1000,
        timestamps: None,
        payload_len: len,
        mss: None,
        window_scale: None,
        sack_permitted: false,
        checked: true,
    }
}

fn buffer() -> HeadBuffer {
    HeadBuffer::new(16 * 1024)
}

/// A round started on `head` (with whatever followed it in the buffer).
fn started(buffered: &[u8]) -> (Box<PerRequest>, Buffered) {
    let end = rules::http::head_end(buffered).expect("a whole head");
    let req = rules::http::parse_request(&buffered[..end]).expect("a valid head");
    let mut pr = PerRequest::new();
    let b = pr
        .start(&req, buffered, SeqNumber(C0), SeqNumber(R0))
        .expect("framable");
    (pr, b)
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
const RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n";

/// Feeds backend segments (client-space seq, payload), lending stores when asked.
fn backend(pr: &mut PerRequest, at: u32, payload: &[u8]) -> BackendStep {
    let mut step = pr.backend_step(SeqNumber(at), payload, false);
    if step == BackendStep::NeedBuffer {
        pr.lend_store(buffer());
        step = pr.backend_step(SeqNumber(at), payload, false);
    }
    step
}

/// A next request with nothing held yet: a buffer is asked for, then lent, and the
/// request starts a round of its own at `client_next` / `our_next`.
fn held_then_next_round(
    pr: &mut PerRequest,
    s: &SegmentInfo,
    payload: &[u8],
    client_next: SeqNumber,
    our_next: SeqNumber,
) {
    let never = |_: SeqNumber| false;
    assert_eq!(
        pr.client_step(s, payload, never, false),
        ClientStep::NeedBuffer { keep: 0 }
    );
    pr.lend_held(buffer());
    assert_eq!(
        pr.client_step(s, payload, never, false),
        ClientStep::NextRound {
            client_next,
            our_next
        }
    );
}

/// The client's next GET at `req_end`, the whole response (to `resp_end`) acknowledged:
/// held, then given a round of its own.
fn next_get_after_the_response(pr: &mut PerRequest, req_end: SeqNumber, resp_end: SeqNumber) {
    let next = seg(
        req_end,
        GET.len(),
        Some(resp_end),
        tcp_flags::ACK | tcp_flags::PSH,
    );
    held_then_next_round(pr, &next, GET, req_end, resp_end);
}

#[test]
fn a_length_response_ends_where_its_length_says_whatever_the_order() {
    let (mut pr, b) = started(GET);
    assert_eq!(b, Buffered::One);
    assert_eq!(pr.request_end(), Some(SeqNumber(C0) + GET.len()));
    let h = RESPONSE_HEAD.len() as u32;
    // The body's last segment first, then its middle: forwarded at once, no store.
    assert_eq!(
        backend(&mut pr, R0 + h + 2000, &[b'z'; 1000]),
        BackendStep::Pass
    );
    assert_eq!(
        backend(&mut pr, R0 + h + 1000, &[b'y'; 1000]),
        BackendStep::Pass
    );
    assert_eq!(pr.response_end(), None, "the head has not been read yet");
    // The head arrives: the end is known at once.
    let mut first = RESPONSE_HEAD.to_vec();
    first.extend_from_slice(&[b'x'; 1000]);
    assert_eq!(backend(&mut pr, R0, &first), BackendStep::Pass);
    assert_eq!(pr.response_end(), Some(SeqNumber(R0 + h + 3000)));
    // Retransmissions pass; bytes past the response were asked for by nobody.
    assert_eq!(backend(&mut pr, R0 + h, &[b'x'; 10]), BackendStep::Pass);
    assert_eq!(
        backend(&mut pr, R0 + h + 3000, b"HTTP/1.1 200 OK\r\n"),
        BackendStep::Abort(Lost::UnrequestedResponse)
    );
}

#[test]
fn a_chunked_response_ahead_of_a_hole_is_kept_until_the_hole_fills() {
    let (mut pr, _) = started(GET);
    let stream: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let (a, rest) = stream.split_at(20);
    let (b, c) = rest.split_at(30);
    // c, then b, then a: each forwarded at once.
    assert_eq!(backend(&mut pr, R0 + 50, c), BackendStep::Pass);
    assert_eq!(backend(&mut pr, R0 + 20, b), BackendStep::Pass);
    assert_eq!(pr.response_end(), None);
    assert_eq!(backend(&mut pr, R0, a), BackendStep::Pass);
    assert_eq!(
        pr.response_end(),
        Some(SeqNumber(R0) + stream.len()),
        "framed from the store once in order"
    );
}

#[test]
fn a_full_store_drops_only_the_segment_that_does_not_fit() {
    let (mut pr, _) = started(GET);
    pr.lend_store(HeadBuffer::new(64));
    let far = [b'a'; 100];
    assert_eq!(
        pr.backend_step(SeqNumber(R0 + 10), &far, false),
        BackendStep::Drop(Pending::StoreFull)
    );
    assert_eq!(
        pr.backend_step(SeqNumber(R0 + 10), &far[..20], false),
        BackendStep::Pass
    );
}

#[test]
fn interim_responses_precede_the_final_one() {
    let post =
        b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n";
    let (mut pr, _) = started(post);
    // The body's end is known from its length, before any of it arrives.
    assert_eq!(pr.request_end(), Some(SeqNumber(C0) + post.len() + 5000));
    let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
    assert_eq!(backend(&mut pr, R0, cont), BackendStep::Pass);
    assert_eq!(pr.response_end(), None);
    let fin = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    let at = R0 + cont.len() as u32;
    assert_eq!(backend(&mut pr, at, fin), BackendStep::Pass);
    assert_eq!(pr.response_end(), Some(SeqNumber(at) + fin.len()));
}

#[test]
fn pipelined_requests_buffered_with_the_head_are_split_off() {
    let two = [GET, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"].concat();
    let (pr, b) = started(&two);
    assert_eq!(b, Buffered::More { len: GET.len() });
    assert_eq!(pr.request_end(), Some(SeqNumber(C0) + GET.len()));
}

#[test]
fn a_request_after_the_current_one_is_held_and_starts_the_next_round() {
    let (mut pr, _) = started(GET);
    let done = SeqNumber(C0) + GET.len();
    let next = b"GET /img/x.png HTTP/1.1\r\nHost: x\r\n\r\n";
    // A retransmission of the request's tail with the next request behind it: only
    // the tail goes to this backend; the rest is held, in a buffer lent for it.
    let mut straddle = GET[GET.len() - 4..].to_vec();
    straddle.extend_from_slice(next);
    let s = seg(
        done - 4,
        straddle.len(),
        Some(SeqNumber(R0)),
        tcp_flags::PSH,
    );
    let never = |_| false;
    assert_eq!(
        pr.client_step(&s, &straddle, never, false),
        ClientStep::NeedBuffer { keep: 4 }
    );
    pr.lend_held(buffer());
    assert_eq!(
        pr.client_step(&s, &straddle, never, false),
        ClientStep::Trim {
            keep: 4,
            refused: false
        }
    );
    assert_eq!(pr.held_len(), next.len());
    // The response arrives; the next round waits for the client's ack of all of it.
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(backend(&mut pr, R0, resp), BackendStep::Pass);
    let r = SeqNumber(R0) + resp.len();
    let half = seg(done + next.len(), 0, Some(r - 1), 0);
    assert_eq!(pr.client_step(&half, &[], never, false), ClientStep::Pass);
    let all = seg(done + next.len(), 0, Some(r), 0);
    assert_eq!(
        pr.client_step(&all, &[], never, false),
        ClientStep::NextRound {
            client_next: done,
            our_next: r
        }
    );
    let held = pr.take_held().expect("the held request");
    assert_eq!(held.base(), done);
    assert_eq!(held.contiguous(), next);
}

#[test]
fn a_fin_after_held_bytes_waits_and_a_fin_right_after_the_request_passes() {
    let (mut pr, _) = started(GET);
    let done = SeqNumber(C0) + GET.len();
    let never = |_| false;
    let fin_at_end = seg(done, 0, Some(SeqNumber(R0)), tcp_flags::FIN);
    assert_eq!(
        pr.client_step(&fin_at_end, &[], never, false),
        ClientStep::Pass
    );
    let fin_later = seg(done + 10, 0, Some(SeqNumber(R0)), tcp_flags::FIN);
    assert_eq!(
        pr.client_step(&fin_later, &[], never, false),
        ClientStep::Trim {
            keep: 0,
            refused: false
        }
    );
}

#[test]
fn a_chunked_request_body_past_a_hole_waits_for_it() {
    let head = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (mut pr, _) = started(head);
    assert_eq!(pr.request_end(), None);
    let body: &[u8] = b"5\r\nhello\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
    let at = SeqNumber(C0) + head.len();
    let never = |_| false;
    // Past the hole: cannot tell whose bytes these are.
    let late = seg(at + 3, body.len() - 3, Some(SeqNumber(R0)), 0);
    assert_eq!(
        pr.client_step(&late, &body[3..], never, false),
        ClientStep::Drop(Pending::RequestAheadOfGap)
    );
    // In order: the request ends inside the segment, the next one is held.
    let s = seg(at, body.len(), Some(SeqNumber(R0)), 0);
    assert_eq!(
        pr.client_step(&s, body, never, false),
        ClientStep::NeedBuffer { keep: 15 }
    );
    pr.lend_held(buffer());
    assert_eq!(
        pr.client_step(&s, body, never, false),
        ClientStep::Trim {
            keep: 15,
            refused: false
        }
    );
    // The state machine forwards the first 15 bytes: the framer moves over them.
    assert_eq!(pr.client_commit(at, &body[..15]), None);
    assert_eq!(pr.request_end(), Some(at + 15));
    assert_eq!(pr.held_len(), body.len() - 15);
    assert!(!pr.tainted());
}

/// The hang seen in `presplice_one_worker`: nginx answers a chunked POST at its head,
/// the client reads the answer and sends its next request while the body's tail is
/// still lost. The next request is dropped (ahead of the hole); the client's
/// retransmission brings the tail and the next request in one segment, which holds the
/// next request but cannot start the round (the request ends only once the segment is
/// forwarded). Nothing else will come from the client (it has everything acked), so the
/// round must be startable right after the segment went through.
#[test]
fn a_next_request_behind_a_refilled_hole_starts_its_round_after_the_segment() {
    let head = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (mut pr, _) = started(head);
    let body: &[u8] = b"5\r\nhello\r\n0\r\n\r\n";
    let next: &[u8] = b"GET /next HTTP/1.1\r\n\r\n";
    let at = SeqNumber(C0) + head.len();
    // The answer, whole, before the body's end; the client acknowledges all of it.
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(backend(&mut pr, R0, resp), BackendStep::Pass);
    let r = SeqNumber(R0) + resp.len();
    let acked = |s: SeqNumber| s.wrapping_diff(r) <= 0;
    // The next request first: ahead of the hole.
    let early = seg(at + body.len(), next.len(), Some(r), tcp_flags::PSH);
    assert_eq!(
        pr.client_step(&early, next, acked, false),
        ClientStep::Drop(Pending::RequestAheadOfGap)
    );
    // The retransmission: the body and the next request.
    let mut both = body.to_vec();
    both.extend_from_slice(next);
    let s = seg(at, both.len(), Some(r), tcp_flags::PSH);
    assert_eq!(
        pr.client_step(&s, &both, acked, false),
        ClientStep::NeedBuffer { keep: body.len() }
    );
    pr.lend_held(buffer());
    assert_eq!(
        pr.client_step(&s, &both, acked, false),
        ClientStep::Trim {
            keep: body.len(),
            refused: false
        }
    );
    assert_eq!(
        pr.next_round_ready(acked),
        None,
        "the request has not ended yet"
    );
    assert_eq!(pr.client_commit(at, body), None);
    assert_eq!(
        pr.next_round_ready(acked),
        Some((at + body.len(), r)),
        "the exchange is over and the next request waits"
    );
    // Not before the client has all of the response.
    assert_eq!(pr.next_round_ready(|_| false), None);
}

#[test]
fn a_close_ends_routing_and_nothing_after_the_request_goes_out() {
    let close = b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (mut pr, _) = started(close);
    assert!(pr.is_last());
    let done = SeqNumber(C0) + close.len();
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(backend(&mut pr, R0, resp), BackendStep::Pass);
    let more = b"GET /b HTTP/1.1\r\n\r\n";
    let s = seg(done, more.len(), Some(SeqNumber(R0) + resp.len()), 0);
    assert_eq!(
        pr.client_step(&s, more, |_| true, false),
        ClientStep::Trim {
            keep: 0,
            refused: false
        }
    );
}

#[test]
fn an_upgrade_makes_the_rest_opaque() {
    let ws = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let (mut pr, _) = started(ws);
    let up = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi";
    assert_eq!(backend(&mut pr, R0, up), BackendStep::Plain);
}

#[test]
fn a_malformed_response_ends_the_connection() {
    let (mut pr, _) = started(GET);
    let bad = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
    assert!(matches!(
        backend(&mut pr, R0, bad),
        BackendStep::Abort(Lost::Framing(_))
    ));
}

#[test]
fn a_response_head_split_across_segments_and_reordered() {
    let (mut pr, _) = started(GET);
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..100 {
        head.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(80)).as_bytes());
    }
    head.extend_from_slice(b"Content-Length: 4\r\n\r\nbody");
    assert!(head.len() > 8000);
    // In 1000-byte segments, every pair swapped.
    let segs: Vec<(usize, &[u8])> = head
        .chunks(1000)
        .enumerate()
        .map(|(i, c)| (i * 1000, c))
        .collect();
    let mut order: Vec<usize> = (0..segs.len()).collect();
    for p in order.chunks_mut(2) {
        p.reverse();
    }
    for i in order {
        let (at, c) = segs[i];
        assert_eq!(
            backend(&mut pr, R0 + at as u32, c),
            BackendStep::Pass,
            "{i}"
        );
    }
    assert_eq!(pr.response_end(), Some(SeqNumber(R0) + head.len()));
}

#[test]
fn splice_mode_lets_a_checked_request_straight_through() {
    let (mut pr, _) = started(GET);
    pr.set_sticky(true);
    let done = SeqNumber(C0) + GET.len();
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let never = |_| false;
    // Before the response is complete: held for a round, as in presplice.
    let next = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    let early = seg(done, next.len(), Some(SeqNumber(R0)), 0);
    assert_eq!(
        pr.client_step(&early, next, never, false),
        ClientStep::NeedBuffer { keep: 0 }
    );
    let mut pr2 = started(GET).0;
    pr2.set_sticky(true);
    assert_eq!(backend(&mut pr2, R0, resp), BackendStep::Pass);
    let r = SeqNumber(R0) + resp.len();
    // After it: the caller checks the head and lets it through.
    let s = seg(done, next.len(), Some(r), 0);
    assert_eq!(
        pr2.client_step(&s, next, never, false),
        ClientStep::NextHead {
            head_len: next.len()
        }
    );
    let req = rules::http::parse_request(next).unwrap();
    pr2.continue_with(&req, next, done).unwrap();
    assert_eq!(pr2.client_step(&s, next, never, false), ClientStep::Pass);
    assert_eq!(pr2.client_commit(done, next), None);
    assert!(!pr2.tainted());
    assert_eq!(pr2.request_end(), Some(done + next.len()));
    // Its response continues the stream.
    assert_eq!(
        backend(&mut pr2, R0 + resp.len() as u32, resp),
        BackendStep::Pass
    );
    assert_eq!(pr2.response_end(), Some(r + resp.len()));
    // A request the caller will not let through is held for a round of its own.
    let done2 = done + next.len();
    let s = seg(done2, next.len(), Some(r + resp.len()), 0);
    assert_eq!(
        pr2.client_step(&s, next, never, false),
        ClientStep::NextHead {
            head_len: next.len()
        }
    );
    pr2.hold_for_round();
    held_then_next_round(&mut pr2, &s, next, done2, r + resp.len());
}

#[test]
fn held_bytes_are_acknowledged_and_the_window_ends_at_the_bound() {
    let (mut pr, _) = started(GET);
    let done = SeqNumber(C0) + GET.len();
    let never = |_| false;
    // Nothing held yet: the window may reach one spare buffer past the request; with
    // no buffer left it closes at the request's end.
    let l = pr.receive_limit(16 * 1024).expect("the request is done");
    assert_eq!((l.ack_at, l.ack_to), (done, done));
    assert_eq!(l.right_edge, done + 16 * 1024);
    assert_eq!(pr.receive_limit(0).unwrap().right_edge, done);
    // A pipelined request is held: acknowledged on the backend's next ack of `done`.
    let next = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    let s = seg(done, next.len(), Some(SeqNumber(R0)), tcp_flags::PSH);
    assert_eq!(
        pr.client_step(&s, next, never, false),
        ClientStep::NeedBuffer { keep: 0 }
    );
    pr.lend_held(HeadBuffer::new(100));
    assert_eq!(
        pr.client_step(&s, next, never, false),
        ClientStep::Trim {
            keep: 0,
            refused: false
        }
    );
    let l = pr.receive_limit(0).unwrap();
    assert_eq!(l.ack_to, done + next.len());
    assert_eq!(l.right_edge, done + 100, "the held buffer's own room");
    // A client that sends past the bound anyway (it was told before the request's end
    // was known): what does not fit is refused, and it is told a zero window.
    let big = [b'x'; 120];
    let s = seg(done + next.len(), big.len(), Some(SeqNumber(R0)), 0);
    assert_eq!(
        pr.client_step(&s, &big, never, false),
        ClientStep::Trim {
            keep: 0,
            refused: true
        }
    );
    let l = pr.receive_limit(0).unwrap();
    assert_eq!(l.ack_to, done + 100);
    assert_eq!(l.right_edge, done + 100);
    // A request that closes the connection: nothing after it is read, nothing said.
    let close = b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (pr, _) = started(close);
    assert_eq!(pr.receive_limit(16 * 1024), None);
}

#[test]
fn only_body_bytes_of_known_length_are_unread() {
    let head = b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
    let (mut pr, _) = started(head);
    let body = SeqNumber(C0) + head.len();
    // The body: skipped by arithmetic, read by nobody.
    assert!(!pr.reads_request(body, 500));
    assert!(!pr.reads_request(body + 500, 500));
    // A byte past it belongs to the next request: read.
    assert!(pr.reads_request(body + 500, 501));
    // The response: its head is read, its body of known length is not.
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n";
    assert!(pr.reads_response(SeqNumber(R0), resp.len()));
    assert_eq!(backend(&mut pr, R0, resp), BackendStep::Pass);
    let rbody = SeqNumber(R0) + resp.len();
    assert!(!pr.reads_response(rbody + 1000, 2000));
    // Past the response's end: bytes no request asked for, read (to end the connection).
    assert!(pr.reads_response(rbody + 1000, 2001));
    // Once the response's end is known, the client's segments count: their acks start
    // the next round.
    assert!(pr.reads_request(body, 10));
}

#[test]
fn an_adopted_connection_carries_its_exchange_then_routes_the_next_request() {
    // A member adopted the connection mid-response: the record said where the request
    // and the response end.
    let (req_end, resp_end) = (SeqNumber(C0 + 300), SeqNumber(R0 + 5000));
    let mut pr = PerRequest::new();
    pr.adopted(req_end, resp_end);
    assert!(
        pr.tainted(),
        "the carried backend connection is never reused"
    );
    assert_eq!(pr.known_request_end(), Some(req_end));
    assert_eq!(pr.response_end(), Some(resp_end));
    // The rest of the response passes unread; a byte past it was asked for by nobody.
    assert_eq!(
        backend(&mut pr, R0 + 4000, &[b'x'; 1000]),
        BackendStep::Pass
    );
    assert!(!pr.reads_response(SeqNumber(R0 + 4000), 1000));
    assert_eq!(
        backend(&mut pr, R0 + 5000, b"H"),
        BackendStep::Abort(Lost::UnrequestedResponse)
    );
    // The client's next request, with the whole response acknowledged: held, then the
    // next round starts at the two ends.
    next_get_after_the_response(&mut pr, req_end, resp_end);
    assert_eq!(pr.held_len(), GET.len());
}

#[test]
fn a_connection_adopted_before_its_response_frames_it_from_its_start() {
    // A member adopted the connection after the backend acknowledged the request and
    // before the response began: the record said where the request ends and where the
    // response starts.
    let req_end = SeqNumber(C0 + 300);
    let mut pr = PerRequest::new();
    pr.adopted_before_response(req_end, SeqNumber(R0), false);
    assert!(pr.tainted());
    assert_eq!(pr.response_end(), None);
    assert_eq!(pr.response_start(), Some((SeqNumber(R0), false)));
    assert_eq!(pr.awaiting_response_start(), Some(SeqNumber(R0)));
    // A segment ahead of the start passes (kept for the framer), and the start is still
    // awaited.
    assert_eq!(backend(&mut pr, R0 + 100, b"later"), BackendStep::Pass);
    assert_eq!(pr.awaiting_response_start(), Some(SeqNumber(R0)));
    // The response from its first byte: framed, its end known from its head.
    assert_eq!(backend(&mut pr, R0, RESPONSE_HEAD), BackendStep::Pass);
    assert_eq!(pr.awaiting_response_start(), None);
    let resp_end = SeqNumber(R0) + RESPONSE_HEAD.len() + 3000;
    assert_eq!(pr.response_end(), Some(resp_end));
    // The client's next request, the whole response acknowledged: a round of its own.
    next_get_after_the_response(&mut pr, req_end, resp_end);
}

#[test]
fn a_connection_adopted_before_a_head_response_expects_no_body() {
    let req_end = SeqNumber(C0 + 300);
    let mut pr = PerRequest::new();
    pr.adopted_before_response(req_end, SeqNumber(R0), true);
    assert_eq!(pr.response_start(), Some((SeqNumber(R0), true)));
    // Content-Length says what a GET would have got; a HEAD's response ends at its head.
    assert_eq!(backend(&mut pr, R0, RESPONSE_HEAD), BackendStep::Pass);
    assert_eq!(pr.response_end(), Some(SeqNumber(R0) + RESPONSE_HEAD.len()));
    assert_eq!(pr.response_start(), None, "the end is known now");
}

#[test]
fn a_round_tells_where_its_response_starts_until_it_ends() {
    let (mut pr, _) = started(GET);
    assert_eq!(pr.response_start(), Some((SeqNumber(R0), false)));
    assert_eq!(pr.awaiting_response_start(), None, "not adopted");
    assert_eq!(backend(&mut pr, R0, RESPONSE_HEAD), BackendStep::Pass);
    assert_eq!(pr.response_start(), None);
}
