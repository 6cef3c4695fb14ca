use super::*;
use crate::http::parse_request;

// ---------------------------------------------------------------------------------
// Drivers: feed a stream in pieces the way the dataplane would, and record where
// messages end (absolute offsets in the stream), so that any two ways of cutting the
// same stream can be compared.
// ---------------------------------------------------------------------------------

/// How a request stream went: the absolute offset where each request ended, and how
/// the stream stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReqRun {
    ends: Vec<usize>,
    /// What stopped the stream: a head parse error (its status) or a framing error.
    error: Option<ReqStop>,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqStop {
    Head(u16),
    Framing(FramingError),
}

/// Cuts `stream` at `cuts` (sorted, within bounds) into pieces.
fn pieces<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    for &c in cuts {
        out.push(&stream[from..c]);
        from = c;
    }
    out.push(&stream[from..]);
    out
}

/// Feeds a client stream: heads are gathered and parsed by the "caller" (as the
/// dataplane does, with `head_end` and `parse_request`), bodies by the framer.
fn run_requests(stream: &[u8], cuts: &[usize]) -> ReqRun {
    let mut f = RequestFramer::new();
    let mut head: Vec<u8> = Vec::new();
    let mut ends = Vec::new();
    let mut pos = 0; // absolute offset of the next unaccounted byte
    for piece in pieces(stream, cuts) {
        let mut rest = piece;
        while !rest.is_empty() {
            match f.phase() {
                Phase::Idle => {
                    let old = head.len();
                    head.extend_from_slice(rest);
                    match http::head_end_from(&head, old) {
                        Some(end) => {
                            let took = end - old;
                            pos += took;
                            rest = &rest[took..];
                            let parsed = match parse_request(&head[..end]) {
                                Ok(h) => h,
                                Err(e) => {
                                    return ReqRun {
                                        ends,
                                        error: Some(ReqStop::Head(e.status())),
                                        phase: f.phase(),
                                    }
                                }
                            };
                            let body = f.start_body(&parsed).expect("idle");
                            if !body {
                                ends.push(pos);
                            }
                            head.clear();
                        }
                        None => {
                            pos += rest.len();
                            rest = &[];
                        }
                    }
                }
                _ => match f.feed(rest) {
                    Ok(p) => {
                        assert!(p.used <= rest.len());
                        if p.complete {
                            ends.push(pos + p.used);
                        } else {
                            assert_eq!(p.used, rest.len());
                        }
                        pos += p.used;
                        rest = &rest[p.used..];
                    }
                    Err(e) => {
                        assert_eq!(f.phase(), Phase::Failed(e));
                        return ReqRun {
                            ends,
                            error: Some(ReqStop::Framing(e)),
                            phase: f.phase(),
                        };
                    }
                },
            }
        }
    }
    assert_eq!(pos, stream.len(), "every byte accounted for");
    ReqRun {
        ends,
        error: None,
        phase: f.phase(),
    }
}

/// How a response stream went: each event at its absolute offset, the error that
/// stopped it, and what the server closing at the end would mean.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RespRun {
    events: Vec<(usize, ResponseEvent)>,
    error: Option<FramingError>,
    finish: Result<Option<ResponseHead>, FramingError>,
}

/// Feeds a server stream answering requests with `methods`, in order; the next
/// response is begun as soon as the previous one is complete.
fn run_responses_with<B: AsMut<[u8]>>(
    mut f: ResponseFramer<B>,
    stream: &[u8],
    methods: &[RequestMethod],
    cuts: &[usize],
) -> RespRun {
    let mut next = methods.iter();
    if let Some(&m) = next.next() {
        f.begin(m).unwrap();
    }
    let mut events = Vec::new();
    let mut pos = 0;
    let mut error = None;
    'all: for piece in pieces(stream, cuts) {
        let mut rest = piece;
        while !rest.is_empty() {
            match f.feed(rest) {
                Ok(p) => {
                    assert!(p.used <= rest.len());
                    pos += p.used;
                    rest = &rest[p.used..];
                    match p.event {
                        None => assert!(rest.is_empty()),
                        Some(ev) => {
                            events.push((pos, ev));
                            if let ResponseEvent::Complete(h) = ev {
                                if h.close {
                                    assert_eq!(f.phase(), Phase::Closed);
                                } else {
                                    assert_eq!(f.phase(), Phase::Idle);
                                    if let Some(&m) = next.next() {
                                        f.begin(m).unwrap();
                                    }
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    assert_eq!(f.phase(), Phase::Failed(e));
                    error = Some(e);
                    break 'all;
                }
            }
        }
    }
    if error.is_none() {
        assert_eq!(pos, stream.len(), "every byte accounted for");
    }
    let finish = f.finish();
    RespRun {
        events,
        error,
        finish,
    }
}

fn run_responses(stream: &[u8], methods: &[RequestMethod], cuts: &[usize]) -> RespRun {
    run_responses_with(ResponseFramer::new(), stream, methods, cuts)
}

/// Asserts that cutting `stream` into two pieces at every position, into three at
/// every pair of positions (for short streams; a sample for long ones), and into
/// single bytes, gives the same run as feeding it whole; returns that run.
fn same_for_every_cut<R: PartialEq + std::fmt::Debug>(
    stream: &[u8],
    run: impl Fn(&[usize]) -> R,
) -> R {
    let whole = run(&[]);
    let n = stream.len();
    for a in 0..=n {
        assert_eq!(run(&[a]), whole, "cut at {a}");
    }
    let step = if n <= 160 { 1 } else { n / 97 + 1 };
    for a in (0..=n).step_by(step) {
        for b in (a..=n).step_by(step) {
            assert_eq!(run(&[a, b]), whole, "cuts at {a}, {b}");
        }
    }
    let bytes: Vec<usize> = (1..n).collect();
    assert_eq!(run(&bytes), whole, "byte at a time");
    whole
}

fn req_ok(stream: &[u8]) -> ReqRun {
    same_for_every_cut(stream, |c| run_requests(stream, c))
}

fn resp_ok(stream: &[u8], methods: &[RequestMethod]) -> RespRun {
    same_for_every_cut(stream, |c| run_responses(stream, methods, c))
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

use RequestMethod::{Connect, Head as HeadM, Other as Get};

fn head(status: u16, version: u8, body: BodyFraming, close: bool) -> ResponseHead {
    ResponseHead {
        status,
        version,
        body,
        close,
    }
}

// ---------------------------------------------------------------------------------
// Requests.
// ---------------------------------------------------------------------------------

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
const POST_CL: &[u8] = b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
const POST_CHUNKED: &[u8] = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
5;name=value;q=\"a b\"\r\nhello\r\n\
B \t; ext\r\n world, 11!\r\n\
0000;last\r\n\
Checksum: abc\r\n\
X-Other:\t v 1 \r\n\
\r\n";

#[test]
fn requests_without_body_pipelined() {
    let s = cat(&[GET, GET, GET]);
    let r = req_ok(&s);
    assert_eq!(r.ends, [GET.len(), 2 * GET.len(), 3 * GET.len()]);
    assert_eq!((r.error, r.phase), (None, Phase::Idle));
}

#[test]
fn request_with_content_length() {
    let s = cat(&[POST_CL, GET]);
    let r = req_ok(&s);
    assert_eq!(r.ends, [POST_CL.len(), POST_CL.len() + GET.len()]);
    assert_eq!(r.error, None);
}

#[test]
fn request_chunked_with_extensions_and_trailers() {
    let s = cat(&[POST_CHUNKED, GET, POST_CHUNKED]);
    let r = req_ok(&s);
    let a = POST_CHUNKED.len();
    assert_eq!(r.ends, [a, a + GET.len(), 2 * a + GET.len()]);
    assert_eq!((r.error, r.phase), (None, Phase::Idle));
}

#[test]
fn request_chunked_minimal_and_uppercase_hex() {
    let body = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
    let s = cat(&[body, POST_CL]);
    let r = req_ok(&s);
    assert_eq!(r.ends, [body.len(), s.len()]);
}

#[test]
fn request_body_partial_then_complete() {
    let mut f = RequestFramer::new();
    assert!(f
        .start(BodyFraming::Length(10), false)
        .expect("idle framer"));
    assert_eq!(f.phase(), Phase::Body);
    assert_eq!(
        f.feed(b"0123"),
        Ok(Progress {
            used: 4,
            complete: false
        })
    );
    assert_eq!(
        f.feed(b"456789GET"),
        Ok(Progress {
            used: 6,
            complete: true
        })
    );
    assert_eq!(f.phase(), Phase::Idle);
    // Idle: the bytes are the next head's.
    assert_eq!(
        f.feed(b"GET"),
        Ok(Progress {
            used: 0,
            complete: true
        })
    );
}

#[test]
fn request_connection_close_ends_the_stream() {
    let close = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n";
    let r = req_ok(close);
    assert_eq!(
        (r.ends.as_slice(), r.phase),
        (&[close.len()][..], Phase::Closed)
    );
    // A request after `close` is out of turn.
    let s = cat(&[POST_CL, close, GET]);
    let mut f = RequestFramer::new();
    let h = parse_request(POST_CL).unwrap();
    assert!(f.start_body(&h).unwrap());
    assert!(f.feed(&s[h.len..POST_CL.len()]).unwrap().complete);
    let h = parse_request(close).unwrap();
    assert!(!f.start_body(&h).unwrap());
    assert_eq!(f.phase(), Phase::Closed);
    assert_eq!(
        f.feed(&[]),
        Ok(Progress {
            used: 0,
            complete: true
        })
    );
    assert_eq!(f.feed(GET), Err(FramingError::OutOfTurn));
    assert_eq!(f.phase(), Phase::Failed(FramingError::OutOfTurn));
}

#[test]
fn request_http10_closes_unless_keep_alive() {
    let r = req_ok(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.phase, Phase::Closed);
    let ka = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    let r = req_ok(&cat(&[ka, ka]));
    assert_eq!(r.ends, [ka.len(), 2 * ka.len()]);
    assert_eq!(r.phase, Phase::Idle);
}

#[test]
fn request_close_with_body_closes_after_the_body() {
    let s = b"POST / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc";
    let r = req_ok(s);
    assert_eq!(
        (r.ends.as_slice(), r.phase),
        (&[s.len()][..], Phase::Closed)
    );
}

#[test]
fn request_start_out_of_turn() {
    let mut f = RequestFramer::new();
    assert_eq!(f.start(BodyFraming::Chunked, false), Ok(true));
    assert_eq!(
        f.start(BodyFraming::Empty, false),
        Err(FramingError::OutOfTurn)
    );
    // Nothing changed: the chunked body is still being read.
    assert_eq!(f.phase(), Phase::Body);
    assert_eq!(
        f.feed(b"0\r\n\r\nX"),
        Ok(Progress {
            used: 5,
            complete: true
        })
    );
}

#[test]
fn request_finish() {
    let mut f = RequestFramer::new();
    assert_eq!(f.finish(), Ok(()));
    assert_eq!(f.phase(), Phase::Closed);

    let mut f = RequestFramer::new();
    f.start(BodyFraming::Length(5), false).unwrap();
    f.feed(b"abc").unwrap();
    assert_eq!(f.finish(), Err(FramingError::Truncated));
    assert_eq!(f.phase(), Phase::Failed(FramingError::Truncated));

    let mut f = RequestFramer::new();
    f.start(BodyFraming::UntilClose, false).unwrap();
    assert_eq!(
        f.feed(&[0xff; 100]),
        Ok(Progress {
            used: 100,
            complete: false
        })
    );
    assert_eq!(f.finish(), Ok(()));
}

#[test]
fn request_huge_content_length() {
    let mut f = RequestFramer::new();
    f.start(BodyFraming::Length(u64::MAX), false).unwrap();
    for _ in 0..3 {
        assert_eq!(
            f.feed(&[0; 1000]),
            Ok(Progress {
                used: 1000,
                complete: false
            })
        );
    }
}

/// Feeds a chunked body (from its first chunk-size line) whole and at every cut;
/// returns where it ended, or the error.
fn chunked(body: &[u8]) -> Result<Option<usize>, FramingError> {
    let run = |cuts: &[usize]| {
        let mut f = RequestFramer::new();
        f.start(BodyFraming::Chunked, false).unwrap();
        let mut pos = 0;
        for piece in pieces(body, cuts) {
            let p = f.feed(piece)?;
            pos += p.used;
            if p.complete {
                return Ok(Some(pos));
            }
        }
        Ok(None)
    };
    same_for_every_cut(body, run)
}

#[test]
fn chunked_valid_forms() {
    let ok: &[&[u8]] = &[
        b"0\r\n\r\n",
        b"000\r\n\r\n",
        b"0;a\r\n\r\n",
        b"0 ; a = \"b;c\"\r\n\r\n",
        b"3\r\nabc\r\n0\r\n\r\n",
        b"00000000000000000000003\r\nabc\r\n0\r\n\r\n",
        b"F\r\n0123456789abcde\r\n0\r\nT: v\r\n\r\n",
        b"1;\xe9t\xe9\r\nx\r\n0\r\n\r\n",
        b"0\r\nA: 1\r\nB:\r\nC: \xff\r\n\r\n",
    ];
    for &b in ok {
        assert_eq!(
            chunked(b),
            Ok(Some(b.len())),
            "{:?}",
            String::from_utf8_lossy(b)
        );
        // With the next message behind it, the boundary is the same.
        let mut s = b.to_vec();
        s.extend_from_slice(GET);
        assert_eq!(chunked(&s), Ok(Some(b.len())));
    }
    // Chunk data may hold anything, CRLF and digits included.
    let tricky = b"5\r\n\r\n0\r\n\r\n0\r\n\r\n";
    assert_eq!(chunked(tricky), Ok(Some(tricky.len())));
    // Incomplete is not an error.
    assert_eq!(chunked(b"5\r\nab"), Ok(None));
    assert_eq!(chunked(b"0\r\nTrailer: x\r\n"), Ok(None));
}

#[test]
fn chunked_errors() {
    let bad: &[&[u8]] = &[
        b"\r\n",                            // no size
        b"g\r\n",                           // not hex
        b"-1\r\n",                          // sign
        b"+1\r\n",                          // sign
        b"0x5\r\n",                         // prefix
        b";ext\r\n",                        // extension without size
        b"5 \r\nhello\r\n0\r\n\r\n",        // whitespace without `;`
        b"5\nhello\r\n0\r\n\r\n",           // bare LF
        b"5\rhello",                        // bare CR
        b"5;a\nb\r\n",                      // bare LF in an extension
        b"5;a\0\r\n",                       // NUL in an extension
        b"5;a\x7f\r\n",                     // DEL in an extension
        b"5\r\nhelloX\r\n",                 // no CRLF after data
        b"5\r\nhello\n0\r\n\r\n",           // LF only after data
        b"5\r\nhello\r0\r\n\r\n",           // CR only after data
        b"10000000000000000\r\n",           // 2^64: overflow
        b"fffffffffffffffff\r\n",           // 17 digits
        b"0\r\n\n",                         // bare LF ends trailers
        b"0\r\n\r\r",                       // CR CR
        b"0\r\n x: y\r\n\r\n",              // obs-fold / leading space
        b"0\r\nA: 1\r\n continued\r\n\r\n", // obs-fold
        b"0\r\nNo colon\r\n\r\n",           // space in the name
        b"0\r\n: novalue\r\n\r\n",          // empty name
        b"0\r\nA: 1\nB: 2\r\n\r\n",         // bare LF in trailers
        b"0\r\nA: \x01\r\n\r\n",            // control in a trailer value
        b"0\r\nA\r\n\r\n",                  // no colon
    ];
    for &b in bad {
        assert_eq!(
            chunked(b),
            Err(FramingError::Chunked),
            "{:?}",
            String::from_utf8_lossy(b)
        );
    }
    // 16 hex digits are fine (the size need not fit in memory: it is never buffered).
    assert_eq!(chunked(b"ffffffffffffffff\r\nabc"), Ok(None));
}

#[test]
fn chunked_line_limits() {
    let mut line = b"5;".to_vec();
    line.resize(MAX_CHUNK_LINE as usize - 2, b'x');
    line.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    assert_eq!(chunked(&line), Ok(Some(line.len())));
    let mut long = b"5;".to_vec();
    long.resize(MAX_CHUNK_LINE as usize - 1, b'x');
    long.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    assert_eq!(chunked(&long), Err(FramingError::Chunked));
    // Leading zeros count against the line too.
    let zeros = vec![b'0'; MAX_CHUNK_LINE as usize + 1];
    assert_eq!(chunked(&zeros), Err(FramingError::Chunked));

    // The trailer section is bounded as a whole.
    let mut t = b"0\r\n".to_vec();
    while t.len() < MAX_TRAILERS as usize {
        t.extend_from_slice(b"X-T: 0123456789\r\n");
    }
    t.extend_from_slice(b"\r\n");
    assert_eq!(chunked(&t), Err(FramingError::Chunked));
    let mut t = b"0\r\n".to_vec();
    t.extend_from_slice(b"X: ");
    t.resize(3 + MAX_TRAILERS as usize - 4, b'v');
    t.extend_from_slice(b"\r\n\r\n");
    assert_eq!(t.len() - 3, MAX_TRAILERS as usize);
    assert_eq!(chunked(&t), Ok(Some(t.len())));
}

#[test]
fn failed_request_framer_stays_failed() {
    let mut f = RequestFramer::new();
    f.start(BodyFraming::Chunked, false).unwrap();
    assert_eq!(f.feed(b"z"), Err(FramingError::Chunked));
    assert_eq!(f.feed(b"0\r\n\r\n"), Err(FramingError::Chunked));
    assert_eq!(
        f.start(BodyFraming::Empty, false),
        Err(FramingError::Chunked)
    );
    assert_eq!(f.finish(), Err(FramingError::Chunked));
}

#[test]
fn framing_of_request_heads() {
    let f = |h: &[u8]| RequestFramer::framing_of(&parse_request(h).unwrap());
    assert_eq!(f(GET), Ok(BodyFraming::Empty));
    assert_eq!(f(POST_CL), Ok(BodyFraming::Length(11)));
    assert_eq!(f(POST_CHUNKED), Ok(BodyFraming::Chunked));
    assert_eq!(
        f(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"),
        Ok(BodyFraming::Empty)
    );
    // A GET may have a body too; framing does not depend on the method.
    assert_eq!(
        f(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n"),
        Ok(BodyFraming::Length(2))
    );
}

// ---------------------------------------------------------------------------------
// Responses.
// ---------------------------------------------------------------------------------

const OK_CL: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n";
const OK_CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
4;x=y\r\nwiki\r\n5\r\npedia\r\n0\r\nExpires: never\r\n\r\n";
const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
const NOT_MODIFIED: &[u8] =
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5000\r\nETag: \"x\"\r\n\r\n";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[test]
fn response_content_length() {
    let r = resp_ok(OK_CL, &[Get]);
    let h = head(200, 1, BodyFraming::Length(12), false);
    let head_len = OK_CL.len() - 12;
    assert_eq!(
        r.events,
        [
            (head_len, ResponseEvent::Head(h)),
            (OK_CL.len(), ResponseEvent::Complete(h))
        ]
    );
    assert_eq!((r.error, r.finish), (None, Ok(None)));
}

#[test]
fn response_chunked_with_trailers() {
    let r = resp_ok(OK_CHUNKED, &[Get]);
    let h = head(200, 1, BodyFraming::Chunked, false);
    assert_eq!(r.events.len(), 2);
    assert_eq!(r.events[0].1, ResponseEvent::Head(h));
    assert_eq!(r.events[1], (OK_CHUNKED.len(), ResponseEvent::Complete(h)));
}

#[test]
fn responses_pipelined_back_to_back() {
    let s = cat(&[OK_CL, OK_CHUNKED, NO_CONTENT, NOT_MODIFIED, OK_CL]);
    let r = resp_ok(&s, &[Get, Get, Get, Get, Get]);
    let ends: Vec<usize> = r
        .events
        .iter()
        .filter(|(_, e)| matches!(e, ResponseEvent::Complete(_)))
        .map(|&(at, _)| at)
        .collect();
    let mut want = Vec::new();
    let mut at = 0;
    for m in [OK_CL, OK_CHUNKED, NO_CONTENT, NOT_MODIFIED, OK_CL] {
        at += m.len();
        want.push(at);
    }
    assert_eq!(ends, want);
    assert_eq!((r.error, r.finish), (None, Ok(None)));
}

#[test]
fn response_to_head_has_no_body() {
    let h = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n";
    let s = cat(&[h, OK_CL]);
    let r = resp_ok(&s, &[HeadM, Get]);
    assert_eq!(
        r.events[0],
        (
            h.len(),
            ResponseEvent::Complete(head(200, 1, BodyFraming::Empty, false))
        )
    );
    assert_eq!(r.events.last().unwrap().0, s.len());
    // Even chunked: the HEAD response stops at its head.
    let hc = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let s = cat(&[hc, OK_CL]);
    let r = resp_ok(&s, &[HeadM, Get]);
    assert_eq!(r.events[0].0, hc.len());
    assert_eq!(r.events.last().unwrap().0, s.len());
    // Only the HEAD method: `head` is another (unknown) method.
    assert_eq!(RequestMethod::of("HEAD"), HeadM);
    assert_eq!(RequestMethod::of("head"), Get);
}

#[test]
fn response_304_and_204_have_no_body() {
    let s = cat(&[NOT_MODIFIED, NO_CONTENT, b"HTTP/1.1 204 No Content\r\n\r\n"]);
    let r = resp_ok(&s, &[Get, Get, Get]);
    assert_eq!(
        r.events,
        [
            (
                NOT_MODIFIED.len(),
                ResponseEvent::Complete(head(304, 1, BodyFraming::Empty, false))
            ),
            (
                NOT_MODIFIED.len() + NO_CONTENT.len(),
                ResponseEvent::Complete(head(204, 1, BodyFraming::Empty, false))
            ),
            (
                s.len(),
                ResponseEvent::Complete(head(204, 1, BodyFraming::Empty, false))
            ),
        ]
    );
}

#[test]
fn continue_then_final_response() {
    let early = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n";
    let s = cat(&[CONTINUE, early, OK_CL, OK_CL]);
    let r = resp_ok(&s, &[Get, Get]);
    let h = head(200, 1, BodyFraming::Length(12), false);
    let c = CONTINUE.len();
    let e = c + early.len();
    assert_eq!(
        r.events,
        [
            (
                c,
                ResponseEvent::Interim(head(100, 1, BodyFraming::Empty, false))
            ),
            (
                e,
                ResponseEvent::Interim(head(103, 1, BodyFraming::Empty, false))
            ),
            (e + OK_CL.len() - 12, ResponseEvent::Head(h)),
            (e + OK_CL.len(), ResponseEvent::Complete(h)),
            (e + 2 * OK_CL.len() - 12, ResponseEvent::Head(h)),
            (s.len(), ResponseEvent::Complete(h)),
        ]
    );
}

#[test]
fn upgrade_makes_the_rest_opaque() {
    let up =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let s = cat(&[up, b"\x81\x05hello HTTP/1.1 200 OK\r\n\r\n garbage"]);
    let r = resp_ok(&s, &[Get, Get]);
    assert_eq!(
        r.events,
        [(
            up.len(),
            ResponseEvent::Upgraded(head(101, 1, BodyFraming::Empty, false))
        )]
    );
    assert_eq!((r.error, r.finish), (None, Ok(None)));

    let mut f = ResponseFramer::new();
    f.begin(Get).unwrap();
    f.feed(up).unwrap();
    assert_eq!(f.phase(), Phase::Opaque);
    assert_eq!(f.begin(Get), Err(FramingError::OutOfTurn));
}

#[test]
fn connect_2xx_is_a_tunnel() {
    let s = b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01";
    let r = resp_ok(s, &[Connect]);
    assert!(matches!(r.events[..], [(39, ResponseEvent::Upgraded(_))]));
    // A refused CONNECT is a normal response.
    let s = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno";
    let r = resp_ok(s, &[Connect]);
    assert_eq!(r.events.last().unwrap().0, s.len());
}

#[test]
fn close_delimited_response() {
    let h = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n";
    let s = cat(&[h, b"<html>... HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]);
    let r = resp_ok(&s, &[Get, Get]);
    let hd = head(200, 1, BodyFraming::UntilClose, true);
    assert_eq!(r.events, [(h.len(), ResponseEvent::Head(hd))]);
    assert_eq!((r.error, r.finish), (None, Ok(Some(hd))));
    // Transfer-Encoding without chunked: close-delimited too (RFC 9112 6.3 rule 4).
    let g = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx";
    let r = resp_ok(g, &[Get]);
    assert!(matches!(
        r.events[..],
        [(
            _,
            ResponseEvent::Head(ResponseHead {
                body: BodyFraming::UntilClose,
                close: true,
                ..
            })
        )]
    ));
}

#[test]
fn response_connection_close_and_http10() {
    let c = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
    let r = resp_ok(c, &[Get, Get]);
    assert_eq!(
        r.events.last(),
        Some(&(
            c.len(),
            ResponseEvent::Complete(head(200, 1, BodyFraming::Length(2), true))
        ))
    );
    // Bytes after a closing response are out of turn.
    let s = cat(&[c, OK_CL]);
    let r = resp_ok(&s, &[Get, Get]);
    assert_eq!(r.error, Some(FramingError::OutOfTurn));

    let old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let r = resp_ok(old, &[Get]);
    assert!(matches!(
        r.events.last(),
        Some((_, ResponseEvent::Complete(ResponseHead { close: true, .. })))
    ));
    let ka = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
    let r = resp_ok(&cat(&[ka, ka]), &[Get, Get]);
    assert_eq!(r.events.len(), 4);
    assert!(matches!(
        r.events.last(),
        Some((
            _,
            ResponseEvent::Complete(ResponseHead {
                close: false,
                version: 0,
                ..
            })
        ))
    ));
}

#[test]
fn duplicate_equal_content_lengths_are_fine() {
    let s = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2, 2\r\n\r\nok";
    let r = resp_ok(s, &[Get]);
    assert_eq!(r.events.last().unwrap().0, s.len());
}

#[test]
fn response_framing_errors() {
    let bad: &[(&[u8], FramingError)] = &[
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            FramingError::AmbiguousFraming,
        ),
        (
            b"HTTP/1.1 100 Continue\r\nContent-Length: 1\r\n\r\n",
            FramingError::AmbiguousFraming,
        ),
        // Malformed heads.
        (b"HTTP/1.1 200 OK\n\n", FramingError::MalformedHead),
        (
            b"HTTP/1.1 200 OK\r\nA: b\n\r\n",
            FramingError::MalformedHead,
        ),
        (
            b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n",
            FramingError::MalformedHead,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
            FramingError::MalformedHead,
        ),
        (b"HTTP/2.0 200 OK\r\n\r\n", FramingError::MalformedHead),
        (b"HTTP/1.1 2000 OK\r\n\r\n", FramingError::MalformedHead),
        (b"HTTP/1.1 099 Low\r\n\r\n", FramingError::MalformedHead),
        (b"HTTP/1.1 20x OK\r\n\r\n", FramingError::MalformedHead),
        (b"<html>hello</html>\r\n\r\n", FramingError::MalformedHead),
        (
            b"\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
            FramingError::MalformedHead,
        ),
        // A bad chunked body.
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloo",
            FramingError::Chunked,
        ),
    ];
    for &(s, e) in bad {
        let r = resp_ok(s, &[Get]);
        assert_eq!(r.error, Some(e), "{:?}", String::from_utf8_lossy(s));
        assert_eq!(r.finish, Err(e));
    }
    // Rule 1 before all: a HEAD or 304 response's framing headers are not looked at.
    for (s, m) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            HeadM,
        ),
        (
            &b"HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n"[..],
            Get,
        ),
    ] {
        let r = resp_ok(s, &[m]);
        assert_eq!(r.error, None);
        assert_eq!(r.events.len(), 1);
    }
}

#[test]
fn too_many_response_headers() {
    let mut s = b"HTTP/1.1 200 OK\r\n".to_vec();
    for _ in 0..MAX_RESPONSE_HEADERS {
        s.extend_from_slice(b"Set-Cookie: a=b\r\n");
    }
    s.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let r = run_responses(&s, &[Get], &[]);
    assert_eq!(r.error, Some(FramingError::MalformedHead));
    let mut s = b"HTTP/1.1 200 OK\r\n".to_vec();
    for _ in 1..MAX_RESPONSE_HEADERS {
        s.extend_from_slice(b"Set-Cookie: a=b\r\n");
    }
    s.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let r = run_responses(&s, &[Get], &[]);
    assert_eq!(r.error, None);
}

#[test]
fn head_size_limit_is_the_same_for_every_cut() {
    // A 64-byte buffer: a 64-byte head fits, a 65-byte head does not, however cut.
    let fits = b"HTTP/1.1 200 OK\r\nX-Pad: aaaaaaaaaaaaaaaaa\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(fits.len(), 64);
    let run = |s: &[u8], cuts: &[usize]| {
        run_responses_with(ResponseFramer::with_buffer([0u8; 64]), s, &[Get], cuts)
    };
    let r = same_for_every_cut(fits, |c| run(fits, c));
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.error, None);
    let over = b"HTTP/1.1 200 OK\r\nX-Pad: aaaaaaaaaaaaaaaaaa\r\nContent-Length: 0\r\n\r\n";
    let r = same_for_every_cut(over, |c| run(over, c));
    assert_eq!(r.error, Some(FramingError::HeadTooLarge));
    // A head that never ends.
    let endless = vec![b'a'; 200];
    let r = same_for_every_cut(&endless, |c| run(&endless, c));
    assert_eq!(r.error, Some(FramingError::HeadTooLarge));

    // The default buffer: MAX_RESPONSE_HEAD.
    let mut big = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    big.resize(MAX_RESPONSE_HEAD - 4, b'p');
    big.extend_from_slice(b"\r\n\r\n");
    for cuts in [&[][..], &[10], &[MAX_RESPONSE_HEAD - 1], &[100, 8000]] {
        let r = run_responses(&big, &[Get], cuts);
        assert_eq!(r.error, None);
        let mut bigger = big.clone();
        bigger.insert(30, b'p');
        let r = run_responses(&bigger, &[Get], cuts);
        assert_eq!(r.error, Some(FramingError::HeadTooLarge));
    }
    // A zero-sized buffer refuses every head but does not panic.
    let r = run_responses_with(ResponseFramer::with_buffer([0u8; 0]), OK_CL, &[Get], &[5]);
    assert_eq!(r.error, Some(FramingError::HeadTooLarge));
}

#[test]
fn a_split_buffer_bounds_only_split_heads() {
    // 64 bytes to gather split heads in; heads up to 128 parsed in place.
    let run = |s: &[u8], cuts: &[usize]| {
        run_responses_with(
            ResponseFramer::with_split_buffer([0u8; 64], 128),
            s,
            &[Get],
            cuts,
        )
    };
    let mut head = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    head.resize(100 - 23, b'p');
    head.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(head.len(), 100);
    // Whole in one slice: parsed, though longer than the buffer.
    assert_eq!(run(&head, &[]).error, None);
    // Split: it must fit the buffer, and does not.
    assert_eq!(run(&head, &[50]).error, Some(FramingError::HeadTooLarge));
    // A short head split anywhere fits.
    let short = b"HTTP/1.1 204 No Content\r\n\r\n";
    let r = same_for_every_cut(short, |c| run(short, c));
    assert_eq!(r.error, None);
    // Past the in-place limit, whole: refused.
    let mut long = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    long.resize(200, b'p');
    long.extend_from_slice(b"\r\n\r\n");
    assert_eq!(run(&long, &[]).error, Some(FramingError::HeadTooLarge));
}

#[test]
fn unsolicited_and_out_of_turn() {
    // Bytes with no request outstanding.
    let mut f = ResponseFramer::new();
    assert_eq!(
        f.feed(&[]),
        Ok(ResponseProgress {
            used: 0,
            event: None
        })
    );
    assert_eq!(f.feed(OK_CL), Err(FramingError::OutOfTurn));
    assert_eq!(f.begin(Get), Err(FramingError::OutOfTurn));

    // begin while a response is in progress.
    let mut f = ResponseFramer::new();
    f.begin(Get).unwrap();
    assert_eq!(f.begin(Get), Err(FramingError::OutOfTurn));
    assert_eq!(f.phase(), Phase::Head);
    assert!(matches!(
        f.feed(OK_CL),
        Ok(ResponseProgress {
            event: Some(ResponseEvent::Head(_)),
            ..
        })
    ));
    assert_eq!(f.begin(Get), Err(FramingError::OutOfTurn));
    assert_eq!(f.phase(), Phase::Body);
}

#[test]
fn response_finish() {
    // The server closed a pooled connection just as a request went out.
    let mut f = ResponseFramer::new();
    f.begin(Get).unwrap();
    assert_eq!(f.finish(), Err(FramingError::Truncated));
    // In the middle of a head or a body.
    let r = run_responses(&OK_CL[..20], &[Get], &[]);
    assert_eq!(r.finish, Err(FramingError::Truncated));
    let r = run_responses(&OK_CL[..OK_CL.len() - 1], &[Get], &[]);
    assert_eq!(r.finish, Err(FramingError::Truncated));
    let r = run_responses(&OK_CHUNKED[..OK_CHUNKED.len() - 1], &[Get], &[]);
    assert_eq!(r.finish, Err(FramingError::Truncated));
    // Between responses: clean.
    let mut f = ResponseFramer::new();
    assert_eq!(f.finish(), Ok(None));
    assert_eq!(f.phase(), Phase::Closed);
}

#[test]
fn response_head_split_keeps_body_bytes_out_of_the_head() {
    // The head's end arrives in the same segment as body bytes and the next
    // response: the buffered path must stop at the blank line.
    let s = cat(&[OK_CL, OK_CL]);
    let cut = 20;
    let r = run_responses(&s, &[Get, Get], &[cut]);
    assert_eq!(r.events.len(), 4);
    assert_eq!(r.events[3].0, s.len());
}

// ---------------------------------------------------------------------------------
// Random streams.
// ---------------------------------------------------------------------------------

/// xorshift64*: a fixed-seed PRNG, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pieces random streams are made of: mostly well-formed framing, so the framers get
/// past the first byte, plus stray bytes.
const BODY_TOKENS: &[&[u8]] = &[
    b"0",
    b"1",
    b"5",
    b"a",
    b"F",
    b"00",
    b"\r\n",
    b"\r",
    b"\n",
    b";",
    b";e=v",
    b" ",
    b"\t",
    b"hello",
    b"X-T: v",
    b":",
    b"0\r\n\r\n",
    b"5\r\nhello\r\n",
    b"3;x\r\nabc\r\n",
    b"0\r\nT: 1\r\n\r\n",
    b"\0",
    b"\xff",
    b"ffffffffffffffff",
];

const STATUS_LINES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 404 Not Found\r\n",
    b"HTTP/1.0 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n",
    b"HTTP/1.1 204 No Content\r\n",
    b"HTTP/1.1 304 Not Modified\r\n",
];

const HEADER_LINES: &[&[u8]] = &[
    b"Content-Length: 5\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Content-Length: 3, 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"X: y\r\n",
];

const RESPONSE_BODIES: &[&[u8]] = &[
    b"",
    b"hello",
    b"abc",
    b"5\r\nhello\r\n",
    b"0\r\n\r\n",
    b"0\r\nT: 1\r\n\r\n",
    b"3;x=y\r\nabc\r\n",
];

/// Responses, mostly well-formed, a few with a random token or byte inserted.
fn random_responses(rng: &mut Rng) -> Vec<u8> {
    let mut s = Vec::new();
    for _ in 0..rng.below(4) + 1 {
        s.extend_from_slice(STATUS_LINES[rng.below(STATUS_LINES.len())]);
        for _ in 0..rng.below(3) {
            s.extend_from_slice(HEADER_LINES[rng.below(HEADER_LINES.len())]);
        }
        s.extend_from_slice(b"\r\n");
        for _ in 0..rng.below(3) {
            s.extend_from_slice(RESPONSE_BODIES[rng.below(RESPONSE_BODIES.len())]);
        }
    }
    for _ in 0..rng.below(3) {
        if rng.below(3) == 0 {
            let at = rng.below(s.len() + 1);
            let junk: &[u8] = match rng.below(4) {
                0 => b"\r",
                1 => b"\n",
                2 => b" ",
                _ => &[0xff],
            };
            s.splice(at..at, junk.iter().copied());
        }
    }
    s
}

fn random_stream(rng: &mut Rng, tokens: &[&[u8]], max_tokens: usize) -> Vec<u8> {
    let mut s = Vec::new();
    for _ in 0..rng.below(max_tokens) + 1 {
        if rng.below(10) == 0 {
            // A random byte.
            s.push(rng.next() as u8);
        } else {
            s.extend_from_slice(tokens[rng.below(tokens.len())]);
        }
    }
    s
}

fn random_cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// Request bodies with random framings, one after another: the framing of message
/// `k` is `framings[k % len]`. Returns the ends and the error.
fn run_bodies(
    stream: &[u8],
    framings: &[BodyFraming],
    cuts: &[usize],
) -> (Vec<usize>, Option<FramingError>) {
    let mut f = RequestFramer::new();
    let mut k = 0;
    let mut ends = Vec::new();
    let mut pos = 0;
    for piece in pieces(stream, cuts) {
        let mut rest = piece;
        while !rest.is_empty() {
            if f.phase() == Phase::Idle {
                let framing = framings[k % framings.len()];
                k += 1;
                if !f.start(framing, false).unwrap() {
                    ends.push(pos);
                    continue;
                }
            }
            match f.feed(rest) {
                Ok(p) => {
                    assert!(p.used <= rest.len());
                    assert!(p.complete || p.used == rest.len());
                    pos += p.used;
                    rest = &rest[p.used..];
                    if p.complete {
                        ends.push(pos);
                    }
                }
                Err(e) => return (ends, Some(e)),
            }
        }
    }
    assert_eq!(pos, stream.len());
    (ends, None)
}

#[test]
fn random_streams_and_cuts_never_panic_and_agree() {
    let mut rng = Rng(0x5eed_f00d_cafe_1234);
    let mut seen_end = [0usize; 2];
    for i in 0..200_000 {
        if i % 2 == 0 {
            // Requests: random bodies (chunked-like bytes) under random framings.
            let s = random_stream(&mut rng, BODY_TOKENS, 24);
            // (Not all empty: a body-less message uses no bytes, so a stream of them
            // would never end.)
            let mut framings: Vec<BodyFraming> = (0..3)
                .map(|_| match rng.below(4) {
                    0 => BodyFraming::Empty,
                    1 => BodyFraming::Length(rng.below(12) as u64),
                    _ => BodyFraming::Chunked,
                })
                .collect();
            framings.push(BodyFraming::Length(rng.below(12) as u64 + 1));
            let cuts = random_cuts(&mut rng, s.len());
            let whole = run_bodies(&s, &framings, &[]);
            assert_eq!(run_bodies(&s, &framings, &cuts), whole, "{s:?} {cuts:?}");
            seen_end[0] += whole.0.len();
        } else {
            // Responses: random heads and bodies, answering random methods.
            let s = random_responses(&mut rng);
            let methods: Vec<RequestMethod> = (0..4)
                .map(|_| [Get, Get, Get, HeadM, Connect][rng.below(5)])
                .collect();
            let cuts = random_cuts(&mut rng, s.len());
            // A small head buffer sometimes, so the limit is hit too.
            let cap = if rng.below(4) == 0 { 40 } else { 4096 };
            let run = |c: &[usize]| {
                run_responses_with(ResponseFramer::with_buffer(vec![0u8; cap]), &s, &methods, c)
            };
            let whole = run(&[]);
            assert_eq!(
                run(&cuts),
                whole,
                "{:?} {cuts:?}",
                String::from_utf8_lossy(&s)
            );
            seen_end[1] += whole
                .events
                .iter()
                .filter(|(_, e)| matches!(e, ResponseEvent::Complete(_)))
                .count();
        }
    }
    // The streams are not all garbage: many messages were framed to their end.
    assert!(seen_end[0] > 10_000 && seen_end[1] > 10_000, "{seen_end:?}");
}

#[test]
fn pure_random_bytes_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let len = rng.below(300);
        let s: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let cuts = random_cuts(&mut rng, len);
        let _ = run_bodies(&s, &[BodyFraming::Chunked], &cuts);
        let _ = run_responses(&s, &[Get], &cuts);
    }
}

#[test]
fn framers_are_small() {
    // O(1) state: the request framer and a response framer lent a buffer are a few
    // words, whatever the message sizes.
    assert!(std::mem::size_of::<RequestFramer>() <= 48);
    assert!(std::mem::size_of::<ResponseFramer<&mut [u8]>>() <= 96);
}

// ---------------------------------------------------------------------------------
// Skipping body bytes unseen (framing ahead of a gap).
// ---------------------------------------------------------------------------------

#[test]
fn response_skip_matches_feed_for_length_and_chunk_data() {
    // A Content-Length body: its bytes are never needed.
    let mut f = ResponseFramer::new();
    f.begin(RequestMethod::Other).unwrap();
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    let p = f.feed(head).unwrap();
    assert!(matches!(p.event, Some(ResponseEvent::Head(_))));
    assert_eq!(f.skippable(), 10);
    assert_eq!(f.skip(4).event, None);
    assert_eq!(f.skippable(), 6);
    let p = f.skip(100); // clamped to what is skippable
    assert_eq!(p.used, 6);
    assert!(matches!(p.event, Some(ResponseEvent::Complete(_))));
    assert_eq!(f.phase(), Phase::Idle);

    // A chunked body: chunk data is skipped, chunk-size lines are read.
    let mut f = ResponseFramer::new();
    f.begin(RequestMethod::Other).unwrap();
    let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n";
    let p = f.feed(head).unwrap();
    assert!(matches!(p.event, Some(ResponseEvent::Head(_))));
    let p = f.feed(&head[p.used..]).unwrap();
    assert_eq!(p.event, None);
    assert_eq!(f.skippable(), 5);
    assert_eq!(f.skip(5).used, 5);
    assert_eq!(f.skippable(), 0, "the CRLF after the data must be read");
    let p = f.feed(b"\r\n0\r\n\r\n").unwrap();
    assert!(matches!(p.event, Some(ResponseEvent::Complete(_))));
}

#[test]
fn request_skip_ends_a_length_body() {
    let head = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\n";
    let req = parse_request(head).unwrap();
    let mut f = RequestFramer::new();
    assert!(f.start_body(&req).unwrap());
    assert_eq!(f.skippable(), 7);
    let p = f.skip(7);
    assert!(p.complete);
    assert_eq!(f.phase(), Phase::Idle);
    assert_eq!(f.skippable(), 0);
    // Nothing to skip between requests.
    assert_eq!(f.skip(3).used, 0);
}
