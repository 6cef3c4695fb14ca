//! Telling a backend who the client is (a pool's `client_address`): the
//! `X-Forwarded-For` / `X-Forwarded-Proto` headers rewritten into a request head, or a
//! PROXY protocol header (HAProxy's specification, versions 1 and 2) put before it.
//!
//! Both change how many bytes the backend receives, so the switch's splice translation
//! carries the difference (see `tcpstate::conn`); this module only produces the bytes.
use std::net::Ipv4Addr;

use crate::config::ClientXff;

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
