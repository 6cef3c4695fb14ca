//! What the switch changes in a request on its way to the backend. Telling a backend
//! who the client is (a pool's `client_address`): the `X-Forwarded-For` /
//! `X-Forwarded-Proto` headers rewritten into a request head, or a PROXY protocol
//! header (HAProxy's specification, versions 1 and 2) put before it. And the request
//! target with its path normalised, for a VIP with `forward_normalized_path`.
//!
//! All change how many bytes the backend receives, so the switch's splice translation
//! carries the difference (see `tcpstate::conn`); this module only produces the bytes.
use std::net::Ipv4Addr;
use std::ops::Range;

use crate::config::ClientXff;
use crate::path;

/// What a head rewrite did (for counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XffRewrite {
    /// Client-supplied `X-Forwarded-For`/`X-Forwarded-Proto` lines removed.
    pub removed: u32,
    /// The client's address was appended to a client-supplied `X-Forwarded-For`.
    pub appended: bool,
}

/// Writes `head` (a complete request head that [`crate::parse_request`] accepted, up to
/// and including its blank line) to `out` with `X-Forwarded-For: <client>` and
/// `X-Forwarded-Proto: http` added. A client's own `X-Forwarded-Proto` is always
/// dropped; its `X-Forwarded-For` lines are dropped (`Remove`) or kept with the address
/// appended to the last one (`Append`, RFC 7239's list order: the nearest proxy last).
pub fn rewrite_xff(
    head: &[u8],
    client: Ipv4Addr,
    mode: ClientXff,
    out: &mut Vec<u8>,
) -> XffRewrite {
    out.clear();
    let mut result = XffRewrite::default();
    // Where the value of the last kept X-Forwarded-For line ends in `out`.
    let mut last_xff_end: Option<usize> = None;
    let mut rest = head;
    let mut first = true;
    while !rest.is_empty() {
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(nl);
        rest = tail;
        let content = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        if content.is_empty() {
            // The blank line: ours go just before it.
            let ip = client.to_string();
            match (last_xff_end, mode) {
                (Some(at), ClientXff::Append) => {
                    let add = format!(", {ip}");
                    out.splice(at..at, add.bytes());
                    result.appended = true;
                }
                _ => {
                    out.extend_from_slice(b"X-Forwarded-For: ");
                    out.extend_from_slice(ip.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
            out.extend_from_slice(b"X-Forwarded-Proto: http\r\n");
            out.extend_from_slice(line);
            out.extend_from_slice(rest);
            return result;
        }
        if !first {
            let name_end = content.iter().position(|&b| b == b':').unwrap_or(0);
            let name = &content[..name_end];
            if name.eq_ignore_ascii_case(b"x-forwarded-proto") {
                result.removed += 1;
                continue;
            }
            if name.eq_ignore_ascii_case(b"x-forwarded-for") {
                if mode == ClientXff::Remove {
                    result.removed += 1;
                    continue;
                }
                let mut end = content.len();
                while end > name_end + 1 && matches!(content[end - 1], b' ' | b'\t') {
                    end -= 1;
                }
                last_xff_end = Some(out.len() + end);
            }
        }
        first = false;
        out.extend_from_slice(line);
    }
    result
}

/// For a VIP with `forward_normalized_path`: makes the backend get `head` (a complete
/// request head that [`crate::parse_request`] accepted, and whose path
/// [`crate::path::normalize`] accepted) with the path of its request target
/// normalised, spelled by [`encode_path`]; the query is kept as sent, a fragment is
/// dropped, the scheme and authority of an absolute-form target are kept.
///
/// It composes with the other rewrites through the pair `(buf, replaces)` that the
/// switch hands to the splice (send `buf` instead of the first `replaces` bytes of the
/// head): after [`rewrite_xff`] (`buf` is the rewritten head, `replaces` its length),
/// the target is replaced inside `buf`; after [`proxy_v1`]/[`proxy_v2`] or none
/// (`replaces` 0), the head follows in `buf` and `replaces` becomes its length. Returns
/// false, leaving both alone, when the path is already normal (nothing to change) or
/// cannot be normalised.
pub fn forward_normalized_path(head: &[u8], buf: &mut Vec<u8>, replaces: &mut usize) -> bool {
    let Some(tr) = target_range(head) else {
        return false;
    };
    let target = &head[tr.clone()];
    let Some(start) = path_start(target) else {
        return false;
    };
    let query = target[start..]
        .iter()
        .position(|&b| b == b'?')
        .map_or(target.len(), |q| start + q);
    let sent = match &target[start..query] {
        [] => &b"/"[..],
        p => p,
    };
    if path::is_normal(sent) {
        return false;
    }
    // A raw `#` ends the path; what follows it (a `?` too) is the fragment.
    let tail = if sent.contains(&b'#') {
        &[][..]
    } else {
        &target[query..]
    };
    let write_target = |out: &mut Vec<u8>| {
        path::with_normalized(sent, |normal| {
            let Ok(normal) = normal else { return false };
            out.extend_from_slice(&target[..start]);
            encode_path(normal, out);
            out.extend_from_slice(tail);
            true
        })
    };
    if *replaces == 0 {
        let before = buf.len();
        buf.extend_from_slice(&head[..tr.start]);
        if !write_target(buf) {
            buf.truncate(before);
            return false;
        }
        buf.extend_from_slice(&head[tr.end..]);
        *replaces = head.len();
        return true;
    }
    // `buf` holds the head rewritten from its first byte, request line unchanged.
    if *replaces != head.len() || buf.get(tr.clone()) != Some(target) {
        return false;
    }
    let before = buf.len();
    if !write_target(buf) {
        return false;
    }
    let written = buf.len() - before;
    // In place, with no other buffer: drop the old target, then rotate the new one
    // (written at the end) into its place.
    buf.drain(tr.clone());
    buf[tr.start..].rotate_right(written);
    true
}

/// Where the request target is in the request line that starts `head`
/// (`METHOD SP target SP version`).
fn target_range(head: &[u8]) -> Option<Range<usize>> {
    let line_end = head.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let line = &head[..line_end];
    let first = line.iter().position(|&b| b == b' ')?;
    let last = line.iter().rposition(|&b| b == b' ')?;
    (first < last).then(|| first + 1..last)
}

/// Where the path of a request target starts: 0 in origin form (`/p?q`), after the
/// authority in absolute form (`http://host/p?q`; the target's length if it has no
/// path); `None` for `*`.
fn path_start(target: &[u8]) -> Option<usize> {
    if target.first() == Some(&b'/') {
        return Some(0);
    }
    let auth = target.windows(3).position(|w| w == b"://")? + 3;
    Some(
        target[auth..]
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .map_or(target.len(), |p| auth + p),
    )
}

/// Appends `path`, a normalised (decoded) path, spelled for a request target: bytes
/// that a path segment may carry literally (RFC 3986 `pchar` but `%`: unreserved,
/// sub-delims, `:`, `@`) and `/` as they are, every other byte (`%`, `?`, `#`, space,
/// controls, non-ASCII) percent-encoded, so that a backend decoding it once gets
/// `path` back.
pub fn encode_path(path: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in path {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// The PROXY protocol v1 header for a TCP/IPv4 connection from `client` to `vip`.
pub fn proxy_v1(client: (Ipv4Addr, u16), vip: (Ipv4Addr, u16), out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let _ = write!(
        out,
        "PROXY TCP4 {} {} {} {}\r\n",
        client.0, vip.0, client.1, vip.1
    );
}

/// The PROXY protocol v2 signature (section 2.2 of the specification).
pub const PROXY_V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The PROXY protocol v2 header (command PROXY, TCP over IPv4, no TLVs).
pub fn proxy_v2(client: (Ipv4Addr, u16), vip: (Ipv4Addr, u16), out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&PROXY_V2_SIGNATURE);
    out.push(0x21); // version 2, command PROXY
    out.push(0x11); // AF_INET, STREAM
    out.extend_from_slice(&12u16.to_be_bytes());
    out.extend_from_slice(&client.0.octets());
    out.extend_from_slice(&vip.0.octets());
    out.extend_from_slice(&client.1.to_be_bytes());
    out.extend_from_slice(&vip.1.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_request;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

    fn rewrite(head: &str, mode: ClientXff) -> (String, XffRewrite) {
        let mut out = Vec::new();
        let r = rewrite_xff(head.as_bytes(), IP, mode, &mut out);
        let s = String::from_utf8(out).unwrap();
        parse_request(s.as_bytes()).expect("the rewritten head parses");
        (s, r)
    }

    #[test]
    fn inserts_before_the_blank_line() {
        let (s, r) = rewrite("GET / HTTP/1.1\r\nHost: a\r\n\r\n", ClientXff::Remove);
        assert_eq!(
            s,
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.99.0.2\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
        assert_eq!(r, XffRewrite::default());
    }

    #[test]
    fn removes_spoofed_headers() {
        let (s, r) = rewrite(
            "GET / HTTP/1.1\r\nx-forwarded-for: 1.2.3.4\r\nHost: a\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 5.6.7.8\r\n\r\nbody",
            ClientXff::Remove,
        );
        assert_eq!(
            s,
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.99.0.2\r\nX-Forwarded-Proto: http\r\n\r\nbody"
        );
        assert_eq!(r.removed, 3);
    }

    #[test]
    fn appends_to_the_last_client_list() {
        let (s, r) = rewrite(
            "GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nHost: a\r\nX-Forwarded-For: 5.6.7.8 \r\n\r\n",
            ClientXff::Append,
        );
        assert_eq!(
            s,
            "GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nHost: a\r\nX-Forwarded-For: 5.6.7.8, 10.99.0.2 \r\nX-Forwarded-Proto: http\r\n\r\n"
        );
        assert!(r.appended);
    }

    #[test]
    fn request_line_is_never_a_header() {
        let (s, _) = rewrite(
            "GET /x-forwarded-for: HTTP/1.1\r\nHost: a\r\n\r\n",
            ClientXff::Remove,
        );
        assert!(s.starts_with("GET /x-forwarded-for: HTTP/1.1\r\n"));
    }

    /// `head` through the rewrites a pool and a VIP with `forward_normalized_path`
    /// ask for, as the switch applies them: `(what the backend gets, replaces)`.
    fn forwarded(head: &str, client_address: Option<ClientXff>, proxy: bool) -> (String, usize) {
        let head = head.as_bytes();
        let mut buf = Vec::new();
        let mut replaces = 0;
        if let Some(mode) = client_address {
            rewrite_xff(head, IP, mode, &mut buf);
            replaces = head.len();
        }
        if proxy {
            proxy_v1((IP, 61001), (Ipv4Addr::new(10, 99, 0, 10), 80), &mut buf);
        }
        let changed = forward_normalized_path(head, &mut buf, &mut replaces);
        assert_eq!(
            changed,
            replaces == head.len(),
            "changed means the head is replaced"
        );
        let mut sent = buf;
        sent.extend_from_slice(&head[replaces..]);
        (String::from_utf8(sent).unwrap(), replaces)
    }

    #[test]
    fn normalised_targets() {
        for (target, normal) in [
            ("/x/../admin/", "/admin/"),
            ("//admin/?q=/../x#f", "/admin/?q=/../x#f"),
            ("/%61dmin/./", "/admin/"),
            ("/a%20b/%25/%3F%23", "/a%20b/%25/%3F%23"),
            ("/a/%2e%2e/%C3%A9", "/%C3%A9"),
            ("/a/#/../b?c", "/a/"),
            ("http://h:8080//a/../b?c", "http://h:8080/b?c"),
            ("/semi;colon/./x", "/semi;colon/x"),
        ] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let (sent, replaces) = forwarded(&head, None, false);
            assert_eq!(
                sent,
                format!("GET {normal} HTTP/1.1\r\nHost: h\r\n\r\n"),
                "{target}"
            );
            parse_request(sent.as_bytes()).expect("the forwarded head parses");
            assert_eq!(replaces, head.len());
        }
    }

    #[test]
    fn normal_and_refused_paths_are_left_alone() {
        for target in [
            "/admin/",
            "/a/b.png?x=/../",
            "*",
            "http://h",
            "/%zz",
            "/../a",
        ] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let mut buf = b"keep".to_vec();
            let mut replaces = 0;
            assert!(!forward_normalized_path(
                head.as_bytes(),
                &mut buf,
                &mut replaces
            ));
            assert_eq!((buf.as_slice(), replaces), (&b"keep"[..], 0), "{target}");
        }
    }

    #[test]
    fn normalised_target_composes_with_xff_and_proxy() {
        let head = "GET /x/../%61pp?q HTTP/1.1\r\nHost: a\r\n\r\n";
        let (sent, _) = forwarded(head, Some(ClientXff::Remove), false);
        assert_eq!(
            sent,
            "GET /app?q HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.99.0.2\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
        let (sent, _) = forwarded(head, None, true);
        assert_eq!(
            sent,
            "PROXY TCP4 10.99.0.2 10.99.0.10 61001 80\r\nGET /app?q HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        let (sent, replaces) = forwarded("GET /app HTTP/1.1\r\nHost: a\r\n\r\n", None, true);
        assert_eq!(replaces, 0, "a normal path needs no head rewrite");
        assert!(sent.starts_with("PROXY TCP4 "));
    }

    #[test]
    fn encoded_paths_decode_back() {
        let mut scratch = Vec::new();
        let all: Vec<u8> = (1..=255u8).filter(|&b| b != b'/').collect();
        let mut path = b"/".to_vec();
        path.extend_from_slice(&all);
        let mut encoded = Vec::new();
        encode_path(&path, &mut encoded);
        assert!(encoded.iter().all(|b| b.is_ascii_graphic()));
        let decoded = crate::path::normalize(&encoded, &mut scratch).unwrap();
        assert_eq!(decoded, &path[..]);
    }

    #[test]
    fn proxy_headers() {
        let mut out = Vec::new();
        proxy_v1((IP, 61001), (Ipv4Addr::new(10, 99, 0, 10), 80), &mut out);
        assert_eq!(out, b"PROXY TCP4 10.99.0.2 10.99.0.10 61001 80\r\n");
        proxy_v2((IP, 61001), (Ipv4Addr::new(10, 99, 0, 10), 80), &mut out);
        assert_eq!(out.len(), 28);
        assert_eq!(&out[..12], &PROXY_V2_SIGNATURE);
        assert_eq!(&out[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&out[16..20], &[10, 99, 0, 2]);
        assert_eq!(&out[24..26], &61001u16.to_be_bytes());
    }
}
