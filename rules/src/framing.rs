//! Streaming HTTP/1.1 message framing for both directions of a spliced connection:
//! where each message ends, found without buffering bodies.
//!
//! To route every request of a keep-alive connection (issue 4), the switch must know
//! at each byte of each direction which message it belongs to: where the next request
//! head starts, when a response is complete (so the client can be re-spliced onto
//! another backend), and whether either side will close. The framers here are fed the
//! bytes of one direction in order, one segment at a time (TCP reordering is the
//! caller's job), and say how many bytes at the front of the segment belong to the
//! current message and whether it ended there, so the caller can split a segment at a
//! message boundary. Several messages in one segment (pipelining) are handled by
//! feeding the rest of the segment again after each boundary.
//!
//! - [`RequestFramer`] (client → server): the caller parses each request head with
//!   [`crate::http::parse_request`] and hands its framing over with
//!   [`RequestFramer::start_body`]; the framer then consumes the body, by
//!   Content-Length or chunked, and says where the request ends.
//! - [`ResponseFramer`] (server → client): told the method of the request each response
//!   answers ([`ResponseFramer::begin`]), it parses the response head itself
//!   (incrementally, bounded by its head buffer) and then consumes the body: no body
//!   (HEAD, 1xx, 204, 304), Content-Length, chunked, or close-delimited; 101 (and a 2xx
//!   to CONNECT) makes the rest of the connection opaque.
//!
//! The rules are RFC 9112's, applied strictly: whatever the switch cannot frame with
//! certainty (both Content-Length and Transfer-Encoding, an invalid or repeated
//! differing Content-Length, a bare LF, a malformed chunk-size line, ...) is a
//! [`FramingError`], after which the framer stays failed. An error never means the
//! switch must break the connection; it means it can no longer tell message
//! boundaries, so it stops routing per request and falls back to a plain splice (or
//! closes), rather than risk reading a boundary the client or the backend does not
//! (request smuggling, response splitting).
//!
//! Both framers are small state machines: O(1) state (plus the response head buffer,
//! allocated once with the framer or lent by the caller), no allocation and no panic
//! on any input, the same boundaries for any split of the same bytes.
use std::fmt;

use crate::http::{self, RequestHead};

/// The default capacity of a [`ResponseFramer`]'s head buffer: the longest response
/// head accepted (the same bound the switch puts on request heads).
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Most header lines a response head may have. Higher than the request bound
/// ([`http::MAX_HEADERS`]): responses carry many `Set-Cookie`, `Link`, CSP lines.
pub const MAX_RESPONSE_HEADERS: usize = 128;

/// The longest chunk-size line accepted, extensions and CRLF included. Extensions
/// are skipped, not buffered, so this bounds work rather than memory: a peer sending
/// an endless extension is stopped, as hyper and Node.js do.
pub const MAX_CHUNK_LINE: u32 = 4096;

/// The largest trailer section accepted (all trailer lines and the final CRLF).
pub const MAX_TRAILERS: u32 = 16 * 1024;

/// Why a framer can no longer tell where messages end. Once returned, the framer stays
/// in [`Phase::Failed`] and returns the same error from every later call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FramingError {
    /// A chunked body that breaks RFC 9112 section 7.1: a chunk-size line that is not
    /// `1*HEXDIG [chunk-ext] CRLF` (or overflows 64 bits, or is longer than
    /// [`MAX_CHUNK_LINE`]), chunk data not followed by CRLF, a malformed trailer
    /// section or one over [`MAX_TRAILERS`].
    Chunked,
    /// A response head that is not a well-formed HTTP/1.0 or 1.1 status line and
    /// header section (bare LF line ends and obs-fold included), or with more than
    /// [`MAX_RESPONSE_HEADERS`] header lines.
    MalformedHead,
    /// A response head longer than the framer's head buffer.
    HeadTooLarge,
    /// The body length cannot be determined unambiguously (RFC 9112 6.1, 6.3): both
    /// Content-Length and Transfer-Encoding, an invalid Content-Length or several
    /// differing ones, Transfer-Encoding in an HTTP/1.0 message, `chunked` applied
    /// twice or not last, or a 1xx/204 response that announces a body.
    AmbiguousFraming,
    /// Something out of turn: response bytes with no request outstanding, bytes after
    /// a message that closed the connection, or a new message started while the
    /// previous one is still in progress.
    OutOfTurn,
    /// The connection was closed in the middle of a message (or before the response
    /// to an outstanding request began).
    Truncated,
}

impl FramingError {
    /// A short name for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            FramingError::Chunked => "bad_chunked",
            FramingError::MalformedHead => "malformed_head",
            FramingError::HeadTooLarge => "head_too_large",
            FramingError::AmbiguousFraming => "ambiguous_framing",
            FramingError::OutOfTurn => "out_of_turn",
            FramingError::Truncated => "truncated",
        }
    }
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for FramingError {}

/// How a message's body is delimited on the wire (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyFraming {
    /// No body: the message ends with its head.
    Empty,
    /// Exactly this many bytes (Content-Length, RFC 9112 6.2: the recipient can
    /// only know the message ended by counting them), more than zero.
    Length(u64),
    /// Transfer-Encoding with `chunked` last (RFC 9112 6.1, 7.1): chunks, the last
    /// chunk, trailers, an empty line.
    Chunked,
    /// Everything until the connection closes (responses only, RFC 9112 6.3 rule 8).
    UntilClose,
}

/// The framing phase a framer is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Between messages. A [`RequestFramer`] waits for the caller to parse the next
    /// head; a [`ResponseFramer`] expects no response until [`ResponseFramer::begin`].
    Idle,
    /// Reading a response head ([`ResponseFramer`] only).
    Head,
    /// Consuming a message body.
    Body,
    /// After a 101 (Switching Protocols) or a 2xx to CONNECT: the rest of the
    /// connection is another protocol, opaque to the switch.
    Opaque,
    /// A message that closes the connection has ended: no further message may follow.
    Closed,
    /// A [`FramingError`]: message boundaries are lost for good.
    Failed(FramingError),
}

/// What feeding a slice to a [`RequestFramer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Progress {
    /// Bytes at the front of the slice that belong to the current message (its body,
    /// chunk framing and trailers included).
    pub used: usize,
    /// The message ended at `used`: `bytes[used..]` belongs to the next message. When
    /// false, `used` is the whole slice and the message goes on.
    pub complete: bool,
}

// ---------------------------------------------------------------------------------
// Body decoding, shared by both directions.
// ---------------------------------------------------------------------------------

/// Where a chunked body's decoder is (RFC 9112 section 7.1):
///
/// ```text
/// chunked-body    = *chunk last-chunk trailer-section CRLF
/// chunk           = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// last-chunk      = 1*("0") [ chunk-ext ] CRLF
/// chunk-ext       = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// trailer-section = *( field-line CRLF )
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// At the start of a chunk-size line: a hex digit must come.
    SizeStart,
    /// In the chunk-size's hex digits (`size` so far).
    Size(u64),
    /// BWS after the size: only more whitespace or `;` may follow.
    SizeWs(u64),
    /// In the chunk extensions (after a `;`), up to the CR.
    Ext(u64),
    /// The CR ending the chunk-size line was seen; the LF must follow.
    SizeLf(u64),
    /// In the chunk data, `left` bytes to go (never 0).
    Data(u64),
    /// The chunk data is complete: its CR must follow.
    DataCr,
    /// The LF after the chunk data must follow.
    DataLf,
    /// At the start of a trailer line, or of the final CRLF.
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value, up to the CR.
    TrailerValue,
    /// The LF ending a trailer line must follow.
    TrailerLf,
    /// The LF of the final CRLF must follow.
    FinalLf,
}

/// A chunked-body decoder that does not decode: it only finds the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunked {
    state: Chunk,
    /// Bytes of the current chunk-size line, or of the trailer section so far.
    line: u32,
}

/// A byte that may appear in a field name (RFC 9110 5.6.2 `tchar`).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte that may appear in a field value or chunk extension: VCHAR, SP, HTAB or
/// obs-text (RFC 9110 5.5). CR, LF, NUL and the other controls may not.
fn is_text(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

impl Chunked {
    const fn new() -> Self {
        Chunked {
            state: Chunk::SizeStart,
            line: 0,
        }
    }

    /// Consumes bytes up to the end of the chunked body. `Ok(Some(n))`: the body ended
    /// after `n` bytes of `bytes`; `Ok(None)`: all of `bytes` was body.
    fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, FramingError> {
        let mut i = 0;
        while i < bytes.len() {
            if let Chunk::Data(left) = self.state {
                // The data itself is skipped in one step, whatever its size.
                let avail = bytes.len() - i;
                let n = usize::try_from(left).map_or(avail, |l| l.min(avail));
                i += n;
                // n <= left, as a u64 (n is at most `left` when it fits in a usize).
                let left = left - n as u64;
                self.state = if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                };
                continue;
            }
            let b = bytes[i];
            i += 1;
            match self.step(b)? {
                Some(next) => self.state = next,
                None => return Ok(Some(i)),
            }
        }
        Ok(None)
    }

    /// One byte of framing (anything but chunk data). `Ok(None)`: the body ended with
    /// this byte.
    fn step(&mut self, b: u8) -> Result<Option<Chunk>, FramingError> {
        use Chunk::*;
        // Framing lines are bounded (chunk data is not: it is skipped in bulk).
        let limit = match self.state {
            SizeStart | Size(_) | SizeWs(_) | Ext(_) | SizeLf(_) => Some(MAX_CHUNK_LINE),
            TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf => Some(MAX_TRAILERS),
            Data(_) | DataCr | DataLf => None,
        };
        if let Some(limit) = limit {
            self.line = self.line.saturating_add(1);
            if self.line > limit {
                return Err(FramingError::Chunked);
            }
        }
        let next = match (self.state, b) {
            (SizeStart, _) => Size(hex(b).ok_or(FramingError::Chunked)?),
            (Size(size), _) if b.is_ascii_hexdigit() => {
                // More than 16 significant hex digits overflow a u64: refuse rather
                // than wrap (a wrapped size is a classic smuggling vector).
                if size >> 60 != 0 {
                    return Err(FramingError::Chunked);
                }
                Size(size << 4 | hex(b).ok_or(FramingError::Chunked)?)
            }
            // BWS is allowed only before a `;` (chunk-ext grammar): a bare
            // `5 \r\n` is refused, since servers disagree on it.
            (Size(size) | SizeWs(size), b' ' | b'\t') => SizeWs(size),
            (Size(size) | SizeWs(size), b';') => Ext(size),
            (Size(size), b'\r') => SizeLf(size),
            // Extensions are skipped, not parsed: any text up to the CR. No valid
            // extension contains CR, LF or another control (quoted-strings may not
            // either), so every conforming parser ends the line at the same CRLF;
            // a bare LF or a control is refused rather than guessed at.
            (Ext(size), b'\r') => SizeLf(size),
            (Ext(size), _) if is_text(b) => Ext(size),
            (SizeLf(0), b'\n') => {
                self.line = 0;
                TrailerStart
            }
            (SizeLf(size), b'\n') => Data(size),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => {
                self.line = 0;
                SizeStart
            }
            // The trailer section: field lines until an empty line. A line
            // starting with whitespace (obs-fold) or anything but a tchar is
            // refused, as is a bare LF.
            (TrailerStart, b'\r') => FinalLf,
            (TrailerStart, _) if is_tchar(b) => TrailerName,
            (TrailerName, _) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if is_text(b) => TrailerValue,
            (TrailerLf, b'\n') => TrailerStart,
            (FinalLf, b'\n') => return Ok(None),
            _ => return Err(FramingError::Chunked),
        };
        Ok(Some(next))
    }
}

/// The value of a hex digit.
fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// A body being consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Content-Length: bytes left, never 0.
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

impl Body {
    /// The decoder for a framing; `None` for a message without body.
    fn new(framing: BodyFraming) -> Option<Body> {
        match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => None,
            BodyFraming::Length(n) => Some(Body::Length(n)),
            BodyFraming::Chunked => Some(Body::Chunked(Chunked::new())),
            BodyFraming::UntilClose => Some(Body::UntilClose),
        }
    }

    /// How many of the next bytes are body data whose contents do not matter to
    /// framing (what is left of a Content-Length body, or of the current chunk's data).
    fn skippable(&self) -> u64 {
        match self {
            Body::Length(left) => *left,
            Body::Chunked(Chunked {
                state: Chunk::Data(left),
                ..
            }) => *left,
            Body::Chunked(_) | Body::UntilClose => 0,
        }
    }

    /// Consumes `n` (at most [`skippable`](Self::skippable)) bytes without seeing
    /// them: `true` if that ended the body.
    fn skip(&mut self, n: u64) -> bool {
        let n = n.min(self.skippable());
        match self {
            Body::Length(left) => {
                *left -= n;
                *left == 0
            }
            Body::Chunked(c) => {
                if let Chunk::Data(left) = c.state {
                    c.state = if left == n {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left - n)
                    };
                }
                false
            }
            Body::UntilClose => false,
        }
    }

    /// Consumes body bytes: `Ok(Some(n))` if the body ended after `n` bytes.
    fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, FramingError> {
        match self {
            Body::Length(left) => {
                let n = usize::try_from(*left).map_or(bytes.len(), |l| l.min(bytes.len()));
                *left -= n as u64;
                Ok((*left == 0).then_some(n))
            }
            Body::Chunked(c) => c.feed(bytes),
            Body::UntilClose => Ok(None),
        }
    }
}

// ---------------------------------------------------------------------------------
// Requests.
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqState {
    Idle,
    Body(Body),
    Closed,
    Failed(FramingError),
}

/// Tracks the request boundaries of a client → server byte stream.
///
/// The caller parses each head itself (it needs the head to route) and calls
/// [`start_body`](Self::start_body) with it; the framer then consumes the body and
/// returns to [`Phase::Idle`] when the request ends, or goes to [`Phase::Closed`] if
/// the request carried `Connection: close` (RFC 9112 9.6: a client that sends `close`
/// MUST NOT send further requests, and the server will not read them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFramer {
    state: ReqState,
    /// The current request asked to close the connection.
    close: bool,
}

impl Default for RequestFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestFramer {
    /// A framer at the start of a connection: the first bytes are a request head.
    pub const fn new() -> Self {
        RequestFramer {
            state: ReqState::Idle,
            close: false,
        }
    }

    /// Where the framer is.
    pub fn phase(&self) -> Phase {
        match self.state {
            ReqState::Idle => Phase::Idle,
            ReqState::Body(_) => Phase::Body,
            ReqState::Closed => Phase::Closed,
            ReqState::Failed(e) => Phase::Failed(e),
        }
    }

    /// The framing of a parsed request (RFC 9112 6.3): chunked if Transfer-Encoding
    /// ends in `chunked` (rule 4), else the Content-Length (rule 6), else no body:
    /// unlike a response, a request is never close-delimited (rule 7), so a request
    /// without either header ends with its head, whatever its method.
    pub fn framing_of(head: &RequestHead<'_>) -> Result<BodyFraming, FramingError> {
        match (head.chunked, head.content_length) {
            // parse_request refuses this already (rule 3: it smells of smuggling).
            (true, Some(_)) => Err(FramingError::AmbiguousFraming),
            (true, None) => Ok(BodyFraming::Chunked),
            (false, Some(0) | None) => Ok(BodyFraming::Empty),
            (false, Some(n)) => Ok(BodyFraming::Length(n)),
        }
    }

    /// The caller parsed a request head (with [`http::parse_request`]) and fed its
    /// bytes on; the body, if any, comes next. Returns whether a body follows: if not,
    /// the request is already complete and the framer is back in [`Phase::Idle`] (or
    /// [`Phase::Closed`] if the request asked to close).
    ///
    /// [`FramingError::OutOfTurn`] (and no change) unless the framer is
    /// [`Phase::Idle`].
    pub fn start_body(&mut self, head: &RequestHead<'_>) -> Result<bool, FramingError> {
        let framing = Self::framing_of(head)?;
        self.start(framing, head.connection_close)
    }

    /// [`start_body`](Self::start_body) for a framing the caller determined itself
    /// (`close`: the request carries `Connection: close`, or is HTTP/1.0 without
    /// keep-alive). [`BodyFraming::UntilClose`] makes the rest of the stream one
    /// body, e.g. for the client's side of an upgraded connection.
    pub fn start(&mut self, framing: BodyFraming, close: bool) -> Result<bool, FramingError> {
        match self.state {
            ReqState::Idle => {}
            ReqState::Failed(e) => return Err(e),
            ReqState::Body(_) | ReqState::Closed => return Err(FramingError::OutOfTurn),
        }
        self.close = close;
        match Body::new(framing) {
            Some(body) => {
                self.state = ReqState::Body(body);
                Ok(true)
            }
            None => {
                self.end();
                Ok(false)
            }
        }
    }

    /// Feeds the next bytes of the stream. In [`Phase::Body`]: says how many bytes
    /// at the front of `bytes` are the body and whether the request ended there
    /// (feed the rest after the next head is parsed). In [`Phase::Idle`]: `used` 0,
    /// `complete`: the bytes start the next head. In [`Phase::Closed`]: any byte is
    /// [`FramingError::OutOfTurn`].
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Progress, FramingError> {
        let result = match &mut self.state {
            ReqState::Idle => Ok(Some(0)),
            ReqState::Closed if bytes.is_empty() => Ok(Some(0)),
            ReqState::Closed => Err(FramingError::OutOfTurn),
            ReqState::Failed(e) => Err(*e),
            ReqState::Body(body) => body.feed(bytes),
        };
        match result {
            Ok(Some(used)) => {
                if matches!(self.state, ReqState::Body(_)) {
                    self.end();
                }
                Ok(Progress {
                    used,
                    complete: true,
                })
            }
            Ok(None) => Ok(Progress {
                used: bytes.len(),
                complete: false,
            }),
            Err(e) => {
                self.state = ReqState::Failed(e);
                Err(e)
            }
        }
    }

    /// How many of the next bytes are body data the framer need not see (their count
    /// is known, their contents do not matter): the caller may [`skip`](Self::skip)
    /// them, e.g. while they are still on their way, behind a gap.
    pub fn skippable(&self) -> u64 {
        match &self.state {
            ReqState::Body(body) => body.skippable(),
            _ => 0,
        }
    }

    /// How many bytes the current request still has, when that is known from where the
    /// framer stands: `Some(0)` between requests, the bytes left of a Content-Length
    /// body; `None` in a chunked body (its end shows only when it comes) and once the
    /// stream can carry no further request.
    pub fn left_in_request(&self) -> Option<u64> {
        match &self.state {
            ReqState::Idle => Some(0),
            ReqState::Body(Body::Length(left)) => Some(*left),
            ReqState::Body(_) | ReqState::Closed | ReqState::Failed(_) => None,
        }
    }

    /// Consumes `n` bytes (at most [`skippable`](Self::skippable)) without their
    /// contents, as [`feed`](Self::feed) would have.
    pub fn skip(&mut self, n: u64) -> Progress {
        let n = n.min(self.skippable());
        let ended = match &mut self.state {
            ReqState::Body(body) => body.skip(n),
            _ => false,
        };
        if ended {
            self.end();
        }
        Progress {
            used: n as usize,
            complete: ended,
        }
    }

    /// The client closed its side (FIN). Fine between requests or at the end of a
    /// [`BodyFraming::UntilClose`] body; [`FramingError::Truncated`] in the middle of
    /// a body. The framer is [`Phase::Closed`] after.
    pub fn finish(&mut self) -> Result<(), FramingError> {
        let result = match self.state {
            ReqState::Idle | ReqState::Closed | ReqState::Body(Body::UntilClose) => Ok(()),
            ReqState::Body(_) => Err(FramingError::Truncated),
            ReqState::Failed(e) => Err(e),
        };
        self.state = match result {
            Ok(()) => ReqState::Closed,
            Err(e) => ReqState::Failed(e),
        };
        result
    }

    fn end(&mut self) {
        self.state = if self.close {
            ReqState::Closed
        } else {
            ReqState::Idle
        };
    }
}

// ---------------------------------------------------------------------------------
// Responses.
// ---------------------------------------------------------------------------------

/// What of a request's method matters to its response's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestMethod {
    /// HEAD: the response never has a body (RFC 9112 6.3 rule 1).
    Head,
    /// CONNECT: a 2xx response turns the connection into a tunnel (rule 2).
    Connect,
    /// Any other method.
    Other,
}

impl RequestMethod {
    /// The kind of `method`. Methods are case-sensitive (RFC 9110 9.1): `head` is not
    /// HEAD.
    pub fn of(method: &str) -> Self {
        match method {
            "HEAD" => RequestMethod::Head,
            "CONNECT" => RequestMethod::Connect,
            _ => RequestMethod::Other,
        }
    }
}

/// What the framing needs of a parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseHead {
    /// The status code (100..=999).
    pub status: u16,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// How the body is delimited on the wire (`Empty` for HEAD, 1xx, 204, 304 whatever
    /// the headers say).
    pub body: BodyFraming,
    /// The server will close the connection after this response: `Connection:
    /// close`, HTTP/1.0 without `Connection: keep-alive` (RFC 9112 9.3), or a
    /// close-delimited body.
    pub close: bool,
}

/// Something [`ResponseFramer::feed`] found at `used`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseEvent {
    /// An interim (1xx but 101) response ended: its head is all it has (RFC 9110
    /// 15.2). The final response to the same request follows.
    Interim(ResponseHead),
    /// The head of the final response ended and a body follows (its `body` is
    /// `Length`, `Chunked` or `UntilClose`).
    Head(ResponseHead),
    /// The final response ended; bytes after it belong to the next response. A
    /// response without body reports this at the end of its head, without a `Head`
    /// event first.
    Complete(ResponseHead),
    /// A 101 (Switching Protocols), or a 2xx to CONNECT, ended: everything after it,
    /// both ways, is another protocol (RFC 9112 6.3 rule 2, RFC 9110 15.2.2).
    Upgraded(ResponseHead),
}

/// What feeding a slice to a [`ResponseFramer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseProgress {
    /// Bytes at the front of the slice consumed: they belong to the current response.
    pub used: usize,
    /// What happened at `used`, if anything; `None` means all of the slice was used.
    /// After any event, feed the rest of the slice again (after
    /// [`ResponseFramer::begin`] for the next response, if it was `Complete`).
    pub event: Option<ResponseEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RespState {
    Idle,
    Head(RequestMethod),
    Body(Body, ResponseHead),
    Opaque,
    Closed,
    Failed(FramingError),
}

/// Tracks the response boundaries of a server → client byte stream.
///
/// For each request sent, in order, the caller calls [`begin`](Self::begin) with its
/// method once the previous response is complete, then feeds the server's bytes.
/// A head that arrives whole in one slice is parsed in place; one split across
/// slices is gathered in the head buffer `B` (any `AsMut<[u8]>`: the default boxed
/// [`MAX_RESPONSE_HEAD`] bytes from [`new`](Self::new), an array, or a slice lent
/// from a pool with [`with_buffer`](Self::with_buffer)), whose length is the longest
/// head accepted.
pub struct ResponseFramer<B = Box<[u8]>> {
    state: RespState,
    buf: B,
    /// Bytes of a split head held in `buf`.
    held: usize,
    /// The longest head accepted when it arrives whole in one slice (parsed in place);
    /// a split one must also fit `buf`.
    max_head: usize,
}

impl<B> fmt::Debug for ResponseFramer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFramer")
            .field("state", &self.state)
            .field("held", &self.held)
            .finish()
    }
}

impl Default for ResponseFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseFramer {
    /// A framer with its own head buffer of [`MAX_RESPONSE_HEAD`] bytes (the one
    /// allocation it ever makes), expecting no response until [`begin`](Self::begin).
    pub fn new() -> Self {
        Self::with_buffer(vec![0; MAX_RESPONSE_HEAD].into_boxed_slice())
    }
}

impl<B: AsMut<[u8]>> ResponseFramer<B> {
    /// A framer gathering split heads in `buf`; heads longer than `buf` are
    /// [`FramingError::HeadTooLarge`].
    pub fn with_buffer(mut buf: B) -> Self {
        let max_head = buf.as_mut().len();
        Self::with_split_buffer(buf, max_head)
    }

    /// A framer that parses heads of up to `max_head` bytes in place when they arrive
    /// whole in one slice, and gathers only split ones in `buf` (which bounds those):
    /// for a framer kept per connection, whose memory is mostly the buffer, where heads
    /// almost always come in one segment.
    pub fn with_split_buffer(buf: B, max_head: usize) -> Self {
        ResponseFramer {
            state: RespState::Idle,
            buf,
            held: 0,
            max_head,
        }
    }

    /// Gives the head buffer back.
    pub fn into_buffer(self) -> B {
        self.buf
    }

    /// Where the framer is.
    pub fn phase(&self) -> Phase {
        match self.state {
            RespState::Idle => Phase::Idle,
            RespState::Head(_) => Phase::Head,
            RespState::Body(..) => Phase::Body,
            RespState::Opaque => Phase::Opaque,
            RespState::Closed => Phase::Closed,
            RespState::Failed(e) => Phase::Failed(e),
        }
    }

    /// A request with this method was sent and its response is the next one: start
    /// reading its head. [`FramingError::OutOfTurn`] (and no change) unless the framer
    /// is [`Phase::Idle`]: responses come in request order (RFC 9112 9.3.2), so the
    /// next response cannot start before the previous one is complete.
    pub fn begin(&mut self, method: RequestMethod) -> Result<(), FramingError> {
        match self.state {
            RespState::Idle => {
                self.state = RespState::Head(method);
                self.held = 0;
                Ok(())
            }
            RespState::Failed(e) => Err(e),
            _ => Err(FramingError::OutOfTurn),
        }
    }

    /// Feeds the next bytes of the server's stream; returns at the first event
    /// (a head parsed, the response complete, an upgrade), so feed the rest again.
    /// In [`Phase::Opaque`] all bytes are used and nothing happens; in
    /// [`Phase::Idle`] and [`Phase::Closed`] any byte is [`FramingError::OutOfTurn`]
    /// (the server sent something no request asked for).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<ResponseProgress, FramingError> {
        let result = self.feed_inner(bytes);
        if let Err(e) = result {
            self.state = RespState::Failed(e);
        }
        result
    }

    fn feed_inner(&mut self, bytes: &[u8]) -> Result<ResponseProgress, FramingError> {
        let all = ResponseProgress {
            used: bytes.len(),
            event: None,
        };
        if bytes.is_empty() {
            return match self.state {
                RespState::Failed(e) => Err(e),
                _ => Ok(all),
            };
        }
        match &mut self.state {
            RespState::Idle | RespState::Closed => Err(FramingError::OutOfTurn),
            RespState::Failed(e) => Err(*e),
            RespState::Opaque => Ok(all),
            RespState::Head(method) => {
                let method = *method;
                self.feed_head(method, bytes)
            }
            RespState::Body(body, head) => {
                let head = *head;
                match body.feed(bytes)? {
                    Some(used) => Ok(self.complete(head, used)),
                    None => Ok(all),
                }
            }
        }
    }

    /// Gathers and parses a head.
    fn feed_head(
        &mut self,
        method: RequestMethod,
        bytes: &[u8],
    ) -> Result<ResponseProgress, FramingError> {
        let max_head = self.max_head;
        let buf = self.buf.as_mut();
        let cap = buf.len();
        let (head, used) = if self.held == 0 {
            match http::head_end(bytes) {
                // The whole head is in this slice: parse it where it is.
                Some(end) if end <= max_head => (parse_response(&bytes[..end], method)?, end),
                Some(_) => return Err(FramingError::HeadTooLarge),
                None if bytes.len() >= cap => return Err(FramingError::HeadTooLarge),
                None => {
                    buf[..bytes.len()].copy_from_slice(bytes);
                    self.held = bytes.len();
                    return Ok(ResponseProgress {
                        used: bytes.len(),
                        event: None,
                    });
                }
            }
        } else {
            let old = self.held.min(cap);
            let take = bytes.len().min(cap - old);
            buf[old..old + take].copy_from_slice(&bytes[..take]);
            let new = old + take;
            match http::head_end_from(&buf[..new], old) {
                Some(end) => {
                    self.held = 0;
                    (parse_response(&buf[..end], method)?, end - old)
                }
                None if new >= cap => return Err(FramingError::HeadTooLarge),
                None => {
                    self.held = new;
                    return Ok(ResponseProgress {
                        used: bytes.len(),
                        event: None,
                    });
                }
            }
        };
        let event = if head.status == 101
            || (method == RequestMethod::Connect && (200..300).contains(&head.status))
        {
            self.state = RespState::Opaque;
            ResponseEvent::Upgraded(head)
        } else if (100..200).contains(&head.status) {
            // The final response to the same request follows.
            self.state = RespState::Head(method);
            ResponseEvent::Interim(head)
        } else {
            match Body::new(head.body) {
                Some(body) => {
                    self.state = RespState::Body(body, head);
                    ResponseEvent::Head(head)
                }
                None => return Ok(self.complete(head, used)),
            }
        };
        Ok(ResponseProgress {
            used,
            event: Some(event),
        })
    }

    fn complete(&mut self, head: ResponseHead, used: usize) -> ResponseProgress {
        self.state = if head.close {
            RespState::Closed
        } else {
            RespState::Idle
        };
        ResponseProgress {
            used,
            event: Some(ResponseEvent::Complete(head)),
        }
    }

    /// How many of the next bytes are body data the framer need not see (see
    /// [`RequestFramer::skippable`]).
    pub fn skippable(&self) -> u64 {
        match &self.state {
            RespState::Body(body, _) => body.skippable(),
            _ => 0,
        }
    }

    /// Consumes `n` bytes (at most [`skippable`](Self::skippable)) without their
    /// contents, as [`feed`](Self::feed) would have: the event is `Complete` if that
    /// ended the response.
    pub fn skip(&mut self, n: u64) -> ResponseProgress {
        let n = n.min(self.skippable());
        if let RespState::Body(body, head) = &mut self.state {
            let head = *head;
            if body.skip(n) {
                return self.complete(head, n as usize);
            }
        }
        ResponseProgress {
            used: n as usize,
            event: None,
        }
    }

    /// The server closed its side (FIN). `Ok(Some(head))`: that completed a
    /// close-delimited response (RFC 9112 6.3 rule 8). `Ok(None)`: the close came
    /// between responses, with none outstanding, or on an opaque connection.
    /// [`FramingError::Truncated`]: a response was cut short, or an outstanding
    /// request got none (the server closed an idle connection just as a request was
    /// sent on it: the request may be retried if it is idempotent). The framer is
    /// [`Phase::Closed`] after.
    pub fn finish(&mut self) -> Result<Option<ResponseHead>, FramingError> {
        let result = match self.state {
            RespState::Idle | RespState::Closed | RespState::Opaque => Ok(None),
            RespState::Body(Body::UntilClose, head) => Ok(Some(head)),
            RespState::Head(_) | RespState::Body(..) => Err(FramingError::Truncated),
            RespState::Failed(e) => Err(e),
        };
        self.state = match result {
            Ok(_) => RespState::Closed,
            Err(e) => RespState::Failed(e),
        };
        result
    }
}

/// Parses a complete response head (`head` ends with its blank line) and decides its
/// framing by RFC 9112 section 6.3, in the rules' order.
fn parse_response(head: &[u8], method: RequestMethod) -> Result<ResponseHead, FramingError> {
    // Left uninitialised for httparse to fill: zeroing 128 headers (4 KiB) on every
    // response cost more than parsing a typical head.
    let mut headers =
        [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_RESPONSE_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        head,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        _ => return Err(FramingError::MalformedHead),
    }
    // httparse accepts a bare LF as a line end (RFC 9112 2.2 lets a recipient);
    // a client might not, and would see other header lines, or another end of the
    // head, than the switch did.
    if memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r') {
        return Err(FramingError::MalformedHead);
    }
    let (Some(version), Some(status)) = (res.version, res.code) else {
        return Err(FramingError::MalformedHead);
    };
    if status < 100 {
        return Err(FramingError::MalformedHead);
    }

    let mut content_len: Option<Result<u64, ()>> = None;
    let mut te_seen = false;
    let mut te_last_chunked = false;
    let mut te_chunked = 0u32;
    let mut te_codings = 0u32;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    for h in res.headers.iter() {
        let v = trim_ows(h.value);
        if h.name.eq_ignore_ascii_case("content-length") {
            // Several Content-Length lines (or a list) must all agree (RFC 9110 8.6);
            // differing ones are an error, remembered until the end.
            let n = content_length(v).ok_or(());
            content_len = match (content_len, n) {
                (Some(Err(())), _) | (_, Err(())) => Some(Err(())),
                (Some(Ok(a)), Ok(b)) if a != b => Some(Err(())),
                (_, n) => Some(n),
            };
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te_seen = true;
            for coding in list(v) {
                te_last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                te_chunked = te_chunked.saturating_add(u32::from(te_last_chunked));
                te_codings = te_codings.saturating_add(1);
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in list(v) {
                conn_close |= t.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    // RFC 9112 9.3: HTTP/1.1 persists unless `close`; HTTP/1.0 closes unless
    // `keep-alive`.
    let mut close = conn_close || (version == 0 && !conn_keep_alive);

    let body = if (100..200).contains(&status) || status == 204 {
        // Rule 1: no body. A server MUST NOT send Transfer-Encoding or Content-Length
        // in a 1xx or 204 (RFC 9112 6.1, RFC 9110 8.6); a lenient client could still
        // read a body after one that does, so only `Content-Length: 0` is let pass.
        if te_seen || content_len.is_some_and(|n| n != Ok(0)) {
            return Err(FramingError::AmbiguousFraming);
        }
        BodyFraming::Empty
    } else if method == RequestMethod::Head || status == 304 {
        // Rule 1: no body, whatever the headers say: in a response to HEAD and in a
        // 304 they describe the representation a GET would have carried (RFC 9110
        // 8.6, 9.3.2, 15.4.5).
        BodyFraming::Empty
    } else if method == RequestMethod::Connect && (200..300).contains(&status) {
        // Rule 2: a tunnel; the caller is told `Upgraded`.
        BodyFraming::Empty
    } else if te_seen {
        // Rule 3: Transfer-Encoding with Content-Length "ought to be handled as an
        // error" (it smells of response splitting); RFC 9112 6.1: a 1.0 message with
        // Transfer-Encoding has faulty framing. Rule 4: chunked must be the final
        // coding, applied once (RFC 9112 7); a response whose final coding is not
        // chunked is close-delimited, but `chunked` anywhere but last is refused
        // (clients disagree on it).
        if content_len.is_some() || version == 0 || te_chunked > 1 {
            return Err(FramingError::AmbiguousFraming);
        }
        if te_codings == 0 {
            // `Transfer-Encoding:` with no coding at all.
            return Err(FramingError::AmbiguousFraming);
        }
        if te_last_chunked {
            BodyFraming::Chunked
        } else if te_chunked == 0 {
            BodyFraming::UntilClose
        } else {
            return Err(FramingError::AmbiguousFraming);
        }
    } else {
        match content_len {
            // Rule 5: an invalid Content-Length is an unrecoverable error.
            Some(Err(())) => return Err(FramingError::AmbiguousFraming),
            // Rule 6.
            Some(Ok(0)) => BodyFraming::Empty,
            Some(Ok(n)) => BodyFraming::Length(n),
            // Rule 8: the body runs until the server closes.
            None => BodyFraming::UntilClose,
        }
    };
    if body == BodyFraming::UntilClose {
        close = true;
    }
    Ok(ResponseHead {
        status,
        version,
        body,
        close,
    })
}

/// Strips optional whitespace (SP, HTAB) at both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The elements of a comma-separated header list, trimmed, empty ones skipped.
fn list(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// One Content-Length value: a decimal number, or a list of equal ones (RFC 9110
/// 8.6); `None` if invalid, overflowing, or if the elements differ.
fn content_length(v: &[u8]) -> Option<u64> {
    let mut out = None;
    for e in v.split(|&b| b == b',').map(trim_ows) {
        if e.is_empty() || !e.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = e.iter().try_fold(0u64, |a, &d| {
            a.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })?;
        if out.is_some_and(|o| o != n) {
            return None;
        }
        out = Some(n);
    }
    out
}

#[cfg(test)]
mod tests;
