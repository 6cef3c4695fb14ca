use super::*;

/// What `curl -v http://10.99.0.10/img/a.png` sends (curl 7.88).
const CURL: &[u8] = b"GET /img/a.png HTTP/1.1\r\n\
Host: 10.99.0.10\r\n\
User-Agent: curl/7.88.1\r\n\
Accept: */*\r\n\
\r\n";

/// What wrk 4 sends by default.
const WRK: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: 10.99.0.10:80\r\n\r\n";

/// A Firefox-like navigation with cookies.
const BROWSER: &[u8] = b"GET /app/cart.php?id=7&x=y HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate\r\n\
Connection: keep-alive\r\n\
Cookie: session=abc123; theme=\"dark\"\r\n\
Cookie: lang=en\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Priority: u=0, i\r\n\
\r\n";

/// `curl -d @file` (POST with a body) and `Expect: 100-continue` for a large one.
const POST: &[u8] = b"POST /upload HTTP/1.1\r\n\
Host: 10.99.0.10\r\n\
User-Agent: curl/7.88.1\r\n\
Accept: */*\r\n\
Content-Length: 104857600\r\n\
Content-Type: application/x-www-form-urlencoded\r\n\
Expect: 100-continue\r\n\
\r\n";

/// A python http.client chunked upload.
const CHUNKED: &[u8] = b"PUT /store/x HTTP/1.1\r\n\
Host: 10.99.0.10\r\n\
Accept-Encoding: identity\r\n\
Transfer-Encoding: chunked\r\n\
\r\n\
5\r\nhello\r\n0\r\n\r\n";

fn parse(b: &[u8]) -> Result<RequestHead<'_>, HttpError> {
    let end = head_end(b).expect("a complete head");
    parse_request(&b[..end])
}

fn err(b: &[u8]) -> HttpError {
    parse(b).expect_err("should be refused")
}

#[test]
fn head_end_finds_the_blank_line() {
    assert_eq!(head_end(CURL), Some(CURL.len()));
    assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY"), Some(27));
    assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r"), None);
    assert_eq!(head_end(b""), None);
    assert_eq!(head_end(b"\r\n\r\n"), Some(4));
    // A bare-LF blank line ends the head too (then parse_request refuses it).
    assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
    assert_eq!(head_end(b"GET / HTTP/1.0\nA: b\n\r\n"), Some(22));
    let n = head_end(CHUNKED).unwrap();
    assert!(CHUNKED[..n].ends_with(b"chunked\r\n\r\n"));
}

#[test]
fn head_end_resumes_byte_by_byte() {
    for fixture in [CURL, WRK, BROWSER, POST] {
        let mut scanned = 0;
        let mut found = None;
        for len in 1..=fixture.len() {
            if let Some(e) = head_end_from(&fixture[..len], scanned) {
                found = Some(e);
                break;
            }
            scanned = len;
        }
        assert_eq!(found, Some(fixture.len()));
    }
    // Split just inside the terminator.
    assert_eq!(
        head_end_from(b"GET / HTTP/1.1\r\nA: b\r\n\r\n", 23),
        Some(24)
    );
    assert_eq!(head_end_from(b"ab", 10), None);
}

#[test]
fn curl_request() {
    let r = parse(CURL).unwrap();
    assert_eq!(r.method, "GET");
    assert_eq!(r.target, "/img/a.png");
    assert_eq!(r.path, "/img/a.png");
    assert_eq!(r.path_only(), "/img/a.png");
    assert_eq!(r.version, 1);
    assert_eq!(r.host, Some("10.99.0.10"));
    assert_eq!(r.host_name(), Some("10.99.0.10"));
    assert_eq!(r.content_length, None);
    assert!(!r.chunked && !r.connection_close && !r.expect_continue);
    assert_eq!(r.len, CURL.len());
    assert_eq!(r.headers().len(), 3);
    assert_eq!(r.header("user-agent"), Some(&b"curl/7.88.1"[..]));
    assert_eq!(r.header("ACCEPT"), Some(&b"*/*"[..]));
    assert_eq!(r.header("cookie"), None);
}

#[test]
fn wrk_request_host_with_port() {
    let r = parse(WRK).unwrap();
    assert_eq!(r.host, Some("10.99.0.10:80"));
    assert_eq!(r.host_name(), Some("10.99.0.10"));
}

#[test]
fn browser_request_and_cookies() {
    let r = parse(BROWSER).unwrap();
    assert_eq!(r.path, "/app/cart.php?id=7&x=y");
    assert_eq!(r.path_only(), "/app/cart.php");
    assert_eq!(r.host_name(), Some("shop.example.com"));
    assert!(!r.connection_close);
    assert_eq!(r.cookie("session"), Some("abc123"));
    assert_eq!(r.cookie("theme"), Some("\"dark\""));
    assert_eq!(r.cookie("lang"), Some("en"), "second Cookie header");
    assert_eq!(r.cookie("Session"), None, "cookie names are case-sensitive");
    assert_eq!(r.cookie("sess"), None);
    assert_eq!(r.headers().len(), 11);
}

#[test]
fn cookie_edge_cases() {
    let r =
        parse(b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1;b=2; =3; c; d=; e==x\r\n\r\n").unwrap();
    assert_eq!(r.cookie("a"), Some("1"));
    assert_eq!(r.cookie("b"), Some("2"));
    assert_eq!(r.cookie("c"), None, "no `=`: not a cookie pair");
    assert_eq!(r.cookie("d"), Some(""));
    assert_eq!(r.cookie("e"), Some("=x"));
    assert_eq!(r.cookie(""), Some("3"));
}

#[test]
fn post_with_length_and_expect() {
    let r = parse(POST).unwrap();
    assert_eq!(r.method, "POST");
    assert_eq!(r.content_length, Some(104_857_600));
    assert!(r.expect_continue);
    assert!(!r.chunked);
}

#[test]
fn chunked_body() {
    let r = parse(CHUNKED).unwrap();
    assert!(r.chunked);
    assert_eq!(r.content_length, None);
    assert_eq!(&CHUNKED[r.len..], b"5\r\nhello\r\n0\r\n\r\n");
    let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\n\r\n").unwrap();
    assert!(r.chunked, "coding names are case-insensitive");
}

#[test]
fn http10_defaults_to_close() {
    let r = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(r.version, 0);
    assert_eq!(r.host, None);
    assert!(r.connection_close);
    let r = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
    assert!(!r.connection_close);
    let r = parse(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: TE, close\r\n\r\n").unwrap();
    assert!(r.connection_close);
    let r = parse(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\r\n").unwrap();
    assert!(!r.connection_close);
}

#[test]
fn target_forms() {
    let r =
        parse(b"GET http://Example.COM:8080/a/b.png?q=1 HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
    assert_eq!(r.target, "http://Example.COM:8080/a/b.png?q=1");
    assert_eq!(r.path, "/a/b.png?q=1");
    assert_eq!(
        r.host,
        Some("Example.COM:8080"),
        "the authority wins over Host"
    );
    assert_eq!(r.host_name(), Some("Example.COM"));
    let r = parse(b"GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n").unwrap();
    assert_eq!(r.path, "/");
    let r = parse(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(r.path, "*");
    assert_eq!(
        err(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
        HttpError::Malformed
    );
    assert_eq!(
        err(b"GET index.html HTTP/1.1\r\nHost: a\r\n\r\n"),
        HttpError::Malformed
    );
    assert_eq!(
        err(b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"),
        HttpError::Malformed
    );
    assert_eq!(
        err(b"GET http://u:p@h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
        HttpError::Malformed
    );
    assert_eq!(
        err(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
        HttpError::NotImplemented
    );
    let r = parse(b"GET /[v6] HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").unwrap();
    assert_eq!(r.host_name(), Some("[::1]"));
}

#[test]
fn malformed_heads() {
    for bad in [
        &b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"[..], // space before the colon
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n continued\r\n\r\n", // obs-fold
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tcontinued\r\n\r\n", // obs-fold with tab
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",      // two spaces
        b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",      // trailing space
        b"G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n",    // control in method
        b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", // DEL in target
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", // NUL in a value
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", // bare CR
        b"GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n", // empty name
        b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
        b"GET /\r\n\r\n",                                // HTTP/0.9
        b"\r\n\r\n",                                     // nothing
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", // two Hosts
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",          // bad Host
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\xffX: y\r\n\r\n",
    ] {
        assert_eq!(
            parse(bad).map(|_| ()),
            Err(HttpError::Malformed),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // Not a complete head at all.
    assert_eq!(
        parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n").map(|_| ()),
        Err(HttpError::Malformed)
    );
}

#[test]
fn bare_lf_is_refused() {
    // httparse itself accepts a bare LF as a line end ...
    let mut h = [httparse::EMPTY_HEADER; 4];
    let mut req = httparse::Request::new(&mut h);
    assert!(req
        .parse(b"GET / HTTP/1.1\nHost: a\n\n")
        .unwrap()
        .is_complete());
    // ... we do not: a backend might split the lines differently.
    assert_eq!(err(b"GET / HTTP/1.1\nHost: a\n\n"), HttpError::Malformed);
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n"),
        HttpError::Malformed
    );
    assert_eq!(err(b"GET / HTTP/1.0\n\n"), HttpError::Malformed);
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\n\r\n"),
        HttpError::Malformed
    );
}

#[test]
fn missing_host() {
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        HttpError::MissingHost
    );
    assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n").status(), 400);
    // An empty Host is allowed (RFC 9110 7.2: a target with no authority).
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").unwrap().host,
        Some("")
    );
}

#[test]
fn versions() {
    assert_eq!(
        err(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
        HttpError::UnsupportedVersion
    );
    assert_eq!(
        err(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
        HttpError::UnsupportedVersion
    );
    assert_eq!(err(b"GET / HTTP/3.0\r\nHost: a\r\n\r\n").status(), 505);
    assert_eq!(
        err(b"GET / HTTP/x.y\r\nHost: a\r\n\r\n"),
        HttpError::Malformed
    );
    assert_eq!(
        err(b"GET / FTP/1.1\r\nHost: a\r\n\r\n"),
        HttpError::Malformed
    );
    // The HTTP/2 connection preface (prior knowledge, `curl --http2-prior-knowledge`).
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    assert_eq!(head_end(preface), Some(18));
    assert_eq!(err(preface), HttpError::UnsupportedVersion);
}

#[test]
fn too_many_headers() {
    let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..MAX_HEADERS - 1 {
        head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    assert_eq!(parse(&head).unwrap().headers().len(), MAX_HEADERS);
    let mut more = head[..head.len() - 2].to_vec();
    more.extend_from_slice(b"X-last: v\r\n\r\n");
    assert_eq!(err(&more), HttpError::TooManyHeaders);
    assert_eq!(HttpError::TooManyHeaders.status(), 431);
}

#[test]
fn smuggling_content_length_and_transfer_encoding() {
    use HttpError::{AmbiguousFraming as Amb, NotImplemented as Nimp};
    for (head, want) in [
        // CL.TE and TE.CL
        (&b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"[..], Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n", Amb),
        // duplicate, differing Content-Length
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nContent-Length: 7\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6, 7\r\n\r\n", Amb),
        // invalid Content-Length
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +6\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6 6\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6,\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", Amb),
        // Transfer-Encoding not ending in chunked, chunked twice, obfuscated
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", Amb),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", Amb),
        // Transfer-Encoding in HTTP/1.0
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Amb),
        // a coding before chunked that the switch does not handle
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Nimp),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", Nimp),
    ] {
        assert_eq!(
            parse(head).map(|_| ()),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(head)
        );
    }
    // Whitespace before the colon is a syntax error (RFC 9112 5.1), not a header we ignore.
    assert_eq!(
        err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n"),
        HttpError::Malformed
    );
    assert_eq!(HttpError::AmbiguousFraming.status(), 400);
    assert_eq!(HttpError::NotImplemented.status(), 501);
}

#[test]
fn equal_content_lengths_are_one() {
    let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nContent-Length: 6\r\n\r\n")
        .unwrap();
    assert_eq!(r.content_length, Some(6));
    let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6 , 6\r\n\r\n").unwrap();
    assert_eq!(r.content_length, Some(6));
    let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert_eq!(r.content_length, Some(0));
    let r = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n")
        .unwrap();
    assert_eq!(r.content_length, Some(u64::MAX));
}

#[test]
fn error_responses_are_complete_http() {
    for status in [400, 408, 431, 501, 503, 505, 500, 999] {
        let bytes = error_response(status);
        let mut h = [httparse::EMPTY_HEADER; 8];
        let mut resp = httparse::Response::new(&mut h);
        let n = match resp.parse(bytes).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("{status}: incomplete"),
        };
        let want = if status == 999 { 500 } else { status };
        assert_eq!(resp.code, Some(want));
        assert_eq!(resp.version, Some(1));
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| std::str::from_utf8(h.value).unwrap())
        };
        assert_eq!(header("connection"), Some("close"));
        assert_eq!(header("content-type"), Some("text/plain"));
        let len: usize = header("content-length").unwrap().parse().unwrap();
        assert_eq!(
            len,
            bytes.len() - n,
            "{status}: Content-Length matches the body"
        );
        let body = &bytes[n..];
        assert!(body.ends_with(b"\n") && body.len() > 1);
        assert_eq!(&body[..body.len() - 1], resp.reason.unwrap().as_bytes());
    }
    assert!(error_response(431).starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
}

#[test]
fn errors_display() {
    assert_eq!(HttpError::MissingHost.to_string(), "missing_host (400)");
    assert_eq!(HttpError::UnsupportedVersion.name(), "unsupported_version");
}

#[test]
fn leading_empty_line_and_pipelining() {
    // RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request.
    let r = parse(b"\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(r.path, "/a");
    assert_eq!(r.len, 30);
    // Two pipelined requests: the first head ends where the second starts.
    let two = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    let end = head_end(two).unwrap();
    let r = parse_request(&two[..end]).unwrap();
    assert_eq!((r.path, r.len), ("/1", end));
    assert_eq!(parse(&two[end..]).unwrap().path, "/2");
}
