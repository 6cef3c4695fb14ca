//! HTTP/1.x request heads: finding the end of one in a reassembly buffer, parsing it
//! (with `httparse`, into a view that borrows the buffer), and deciding its framing
//! the way a careful server does, so that the switch and the backend can never read
//! a different message boundary out of the same bytes (no request smuggling).
//!
//! What is refused, and with which status (`HttpError::status`):
//! - 400: syntax errors, obs-fold (continuation lines), a bare LF as a line end, a
//!   header name with whitespace before the colon, a bad or repeated Host, a target
//!   that is not origin-, absolute- or (for OPTIONS) asterisk-form; and ambiguous
//!   framing: Content-Length with Transfer-Encoding, differing or invalid
//!   Content-Lengths, a Transfer-Encoding whose last coding is not `chunked` (or
//!   that applies `chunked` twice), Transfer-Encoding in an HTTP/1.0 request.
//! - 400: an HTTP/1.1 request without Host (RFC 9112 3.2).
//! - 431: more than [`MAX_HEADERS`] header lines.
//! - 501: `CONNECT` (the switch is not a tunnel), or a transfer coding other than
//!   `chunked` before the final `chunked`.
//! - 505: any version but HTTP/1.0 and 1.1, including the HTTP/2 preface.
//!
//! Parsing allocates nothing: the header array lives in the returned [`RequestHead`].
use std::fmt;

/// Most header lines a request head may have (more: 431).
pub const MAX_HEADERS: usize = 64;

/// The index just past the blank line that ends the request head in `buf`, if it has
/// arrived: normally just past the first `\r\n\r\n`. A blank line ended by a bare LF
/// (`\n\n`, `\n\r\n`) also ends the head here, so such a request is answered 400 by
/// [`parse_request`] at once instead of waiting for a `\r\n\r\n` that never comes.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    head_end_from(buf, 0)
}

/// [`head_end`] resumed: `scanned` is the length `buf` had at a previous call that
/// found no end (the bytes before it are not looked at again), so feeding a head one
/// segment at a time costs linear time overall.
pub fn head_end_from(buf: &[u8], scanned: usize) -> Option<usize> {
    let mut i = scanned.min(buf.len());
    // memchr's vectorised search: heads are scanned on every request, both ways.
    while let Some(off) = memchr::memchr(b'\n', &buf[i..]) {
        let n = i + off;
        let blank = (n >= 1 && buf[n - 1] == b'\n')
            || (n >= 2 && buf[n - 1] == b'\r' && buf[n - 2] == b'\n');
        if blank {
            return Some(n + 1);
        }
        i = n + 1;
    }
    None
}

/// Why a request head was refused; [`HttpError::status`] is the answer to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpError {
    /// Not a well-formed HTTP/1.x request head (400).
    Malformed,
    /// More than [`MAX_HEADERS`] header lines (431).
    TooManyHeaders,
    /// The body's length cannot be determined unambiguously (400).
    AmbiguousFraming,
    /// Not HTTP/1.0 or HTTP/1.1 (505).
    UnsupportedVersion,
    /// An HTTP/1.1 request without a Host header (400).
    MissingHost,
    /// A method or transfer coding the switch does not handle (501).
    NotImplemented,
}

impl HttpError {
    /// The HTTP status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            HttpError::Malformed | HttpError::AmbiguousFraming | HttpError::MissingHost => 400,
            HttpError::TooManyHeaders => 431,
            HttpError::NotImplemented => 501,
            HttpError::UnsupportedVersion => 505,
        }
    }

    /// A short name for counters and logs (`malformed`, `ambiguous_framing`, ...).
    pub fn name(self) -> &'static str {
        match self {
            HttpError::Malformed => "malformed",
            HttpError::TooManyHeaders => "too_many_headers",
            HttpError::AmbiguousFraming => "ambiguous_framing",
            HttpError::UnsupportedVersion => "unsupported_version",
            HttpError::MissingHost => "missing_host",
            HttpError::NotImplemented => "not_implemented",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.status())
    }
}

impl std::error::Error for HttpError {}

/// A parsed request head. Everything borrows the buffer it was parsed from.
#[derive(Debug, Clone)]
pub struct RequestHead<'b> {
    pub method: &'b str,
    /// The request target exactly as sent.
    pub target: &'b str,
    /// The target in origin form, query included: the target itself, or for an
    /// absolute-form target (`http://host/p?q`) the part after the authority (`/p?q`,
    /// `/` if empty); `*` for `OPTIONS *`.
    pub path: &'b str,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The host the request is for, as sent (port included): the authority of an
    /// absolute-form target, else the Host header. `None` only for HTTP/1.0 without Host.
    pub host: Option<&'b str>,
    /// The body length from Content-Length (`None`: no Content-Length).
    pub content_length: Option<u64>,
    /// The body is chunked (Transfer-Encoding: chunked).
    pub chunked: bool,
    /// The client asked to close after this request: `Connection: close`, or HTTP/1.0
    /// without `Connection: keep-alive`.
    pub connection_close: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Bytes of the buffer the head took (the body, if any, starts here).
    pub len: usize,
    headers: [httparse::Header<'b>; MAX_HEADERS],
    n_headers: usize,
}

impl<'b> RequestHead<'b> {
    /// The header lines in order.
    pub fn headers(&self) -> &[httparse::Header<'b>] {
        &self.headers[..self.n_headers]
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers()
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The value of the first cookie named `name` (case-sensitive) in the Cookie
    /// header(s) (`a=b; c=d`), as sent (quotes, if any, kept).
    pub fn cookie(&self, name: &str) -> Option<&'b str> {
        self.cookies()
            .find(|(n, _)| *n == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every cookie of the Cookie header(s) in the order sent, as (name, value) with
    /// optional whitespace trimmed; pairs without `=` are skipped.
    pub fn cookies(&self) -> impl Iterator<Item = (&'b [u8], &'b [u8])> + '_ {
        self.headers()
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .flat_map(|h| h.value.split(|&b| b == b';'))
            .filter_map(|pair| {
                let eq = pair.iter().position(|&b| b == b'=')?;
                Some((trim_ows(&pair[..eq]), trim_ows(&pair[eq + 1..])))
            })
    }

    /// The path without the query: what path rules and extensions look at.
    pub fn path_only(&self) -> &'b str {
        let p = self.path;
        p.split_once('?').map_or(p, |(a, _)| a)
    }

    /// The host without the port (`[::1]` keeps its brackets).
    pub fn host_name(&self) -> Option<&'b str> {
        self.host.map(strip_port)
    }
}

/// `host[:port]` → `host`, for names, IPv4 and bracketed IPv6 literals.
pub(crate) fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        h.find(']').map_or(h, |e| &h[..=e])
    } else {
        h.split_once(':').map_or(h, |(a, _)| a)
    }
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

/// Whether `v` is a valid Host value (uri-host [":" port], RFC 9110 7.2), or empty.
fn valid_host(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        match v.iter().position(|&b| b == b']') {
            Some(e) => {
                let inner = &v[1..e];
                if inner.is_empty()
                    || !inner
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                {
                    return false;
                }
                match &v[e + 1..] {
                    [] => (&v[..0], None),
                    [b':', port @ ..] => (&v[..0], Some(port)),
                    _ => return false,
                }
            }
            None => return false,
        }
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(c) => (&v[..c], Some(&v[c + 1..])),
            None => (v, None),
        }
    };
    let host_ok = host
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b));
    let port_ok = port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit));
    host_ok && port_ok
}

/// Parses one Content-Length value (a list of equal decimal numbers is allowed,
/// RFC 9110 8.6); `None` if invalid or if the elements differ.
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

/// Whether the request line's version looks like `HTTP/d.d` (then an unsupported
/// version is a 505; anything else in that place is a 400).
fn looks_like_version(head: &[u8]) -> bool {
    let line_end = head
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(head.len());
    let line = &head[..line_end];
    match line.iter().rposition(|&b| b == b' ') {
        Some(sp) => matches!(
            &line[sp + 1..],
            [b'H', b'T', b'T', b'P', b'/', a, b'.', b] if a.is_ascii_digit() && b.is_ascii_digit()
        ),
        None => false,
    }
}

/// Parses a complete request head (`head` ends with its blank line, as found by
/// [`head_end`]; bytes after the head are allowed and ignored).
pub fn parse_request(head: &[u8]) -> Result<RequestHead<'_>, HttpError> {
    if head.starts_with(b"PRI * HTTP/2.0\r\n") {
        return Err(HttpError::UnsupportedVersion);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (method, target, version, n_headers, len) = {
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(head) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Err(HttpError::Malformed),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
            Err(httparse::Error::Version) if looks_like_version(head) => {
                return Err(HttpError::UnsupportedVersion)
            }
            Err(_) => return Err(HttpError::Malformed),
        };
        match (req.method, req.path, req.version) {
            (Some(m), Some(p), Some(v)) => (m, p, v, req.headers.len(), len),
            _ => return Err(HttpError::Malformed),
        }
    };
    // httparse accepts a bare LF as a line end; a backend might not, and would then
    // see other header lines than we did. Refuse it (RFC 9112 2.2 allows either).
    let parsed = &head[..len];
    if parsed
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || parsed[i - 1] != b'\r'))
    {
        return Err(HttpError::Malformed);
    }
    if method == "CONNECT" {
        return Err(HttpError::NotImplemented);
    }

    let mut host_header: Option<&[u8]> = None;
    let mut content_len: Option<u64> = None;
    let mut te_seen = false;
    let mut te_last_chunked = false;
    let mut te_chunked = 0u32;
    let mut te_other = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    for h in &headers[..n_headers] {
        let name = h.name;
        let v = trim_ows(h.value);
        if name.eq_ignore_ascii_case("host") {
            if host_header.is_some() || !valid_host(v) {
                return Err(HttpError::Malformed);
            }
            host_header = Some(v);
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = content_length(v).ok_or(HttpError::AmbiguousFraming)?;
            if content_len.is_some_and(|o| o != n) {
                return Err(HttpError::AmbiguousFraming);
            }
            content_len = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            te_seen = true;
            for coding in list(v) {
                te_last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                if te_last_chunked {
                    te_chunked += 1;
                } else {
                    te_other = true;
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for t in list(v) {
                conn_close |= t.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = v.eq_ignore_ascii_case(b"100-continue");
        }
    }

    // The target's form (RFC 9112 3.2).
    let mut path = target;
    let mut authority: Option<&str> = None;
    let t = target.as_bytes();
    let scheme_len = if t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        Some(7)
    } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        Some(8)
    } else {
        None
    };
    if let Some(sl) = scheme_len {
        let rest = &target[sl..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let auth = &rest[..end];
        if auth.is_empty() || auth.contains('@') || !valid_host(auth.as_bytes()) {
            return Err(HttpError::Malformed);
        }
        authority = Some(auth);
        path = if end == rest.len() { "/" } else { &rest[end..] };
    } else if target == "*" {
        if method != "OPTIONS" {
            return Err(HttpError::Malformed);
        }
    } else if !target.starts_with('/') {
        return Err(HttpError::Malformed);
    }

    if version == 1 && host_header.is_none() {
        return Err(HttpError::MissingHost);
    }
    let mut chunked = false;
    if te_seen {
        // RFC 9112 6.1 and 6.3: a 1.0 message with Transfer-Encoding has faulty
        // framing; with Content-Length too it is a smuggling attempt; chunked must be
        // the final coding, once.
        if version == 0 || content_len.is_some() || !te_last_chunked || te_chunked != 1 {
            return Err(HttpError::AmbiguousFraming);
        }
        if te_other {
            return Err(HttpError::NotImplemented);
        }
        chunked = true;
    }
    let host = match authority {
        Some(a) => Some(a),
        // valid_host admits ASCII only.
        None => host_header.and_then(|h| std::str::from_utf8(h).ok()),
    };
    Ok(RequestHead {
        method,
        target,
        path,
        version,
        host,
        content_length: content_len,
        chunked,
        connection_close: conn_close || (version == 0 && !conn_keep_alive),
        expect_continue,
        len,
        headers,
        n_headers,
    })
}

/// A complete response the switch sends itself (then FIN): HTTP/1.1, `Connection:
/// close`, a one-line text body. For 400, 408, 431, 501, 502, 503 and 505; any other
/// status gets the 500 response.
pub fn error_response(status: u16) -> &'static [u8] {
    macro_rules! response {
        ($code:literal, $reason:literal, $len:literal) => {
            concat!(
                "HTTP/1.1 ",
                $code,
                " ",
                $reason,
                "\r\nContent-Type: text/plain\r\nContent-Length: ",
                $len,
                "\r\nConnection: close\r\n\r\n",
                $reason,
                "\n"
            )
            .as_bytes()
        };
    }
    match status {
        400 => response!("400", "Bad Request", "12"),
        408 => response!("408", "Request Timeout", "16"),
        431 => response!("431", "Request Header Fields Too Large", "32"),
        501 => response!("501", "Not Implemented", "16"),
        502 => response!("502", "Bad Gateway", "12"),
        503 => response!("503", "Service Unavailable", "20"),
        505 => response!("505", "HTTP Version Not Supported", "27"),
        _ => response!("500", "Internal Server Error", "22"),
    }
}

#[cfg(test)]
mod tests;
