use super::*;
use crate::wire::checksum;

const NAME: &[u8] = b"PHPSESSID";

/// A 20-byte TCP header with `pad` option bytes (to move the payload's word alignment),
/// then `payload`, with a checksum over the segment alone (the pseudo-header adds a
/// constant, which an incremental update leaves alone).
fn segment(pad: usize, payload: &[u8]) -> (Vec<u8>, usize) {
    let mut s = vec![0u8; 20 + pad];
    s[12] = (((20 + pad.div_ceil(4) * 4) / 4) << 4) as u8;
    s.extend_from_slice(payload);
    seal(&mut s);
    (s, 20 + pad)
}

fn seal(s: &mut [u8]) {
    s[16..18].copy_from_slice(&[0, 0]);
    let c = checksum::internet(s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
}

fn checksum_ok(s: &[u8]) -> bool {
    let mut copy = s.to_vec();
    seal(&mut copy);
    copy[16..18] == s[16..18]
}

fn text(s: &[u8], at: usize) -> String {
    String::from_utf8_lossy(&s[at..]).into_owned()
}

const RESPONSE: &str = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 3\r\n\
    Set-Cookie: PHPSESSID=abc123; Path=/\r\nset-cookie:  other=1\r\n\r\nhi\n";

#[test]
fn tags_carry_the_backend() {
    assert_eq!(&tag(2), b"WS000002");
    assert_eq!(&tag(65535), b"WS065535");
    assert_eq!(tagged_backend(b"WS000002D", NAME), Some(2));
    assert_eq!(tagged_backend(b"WS065535D", NAME), Some(65535));
    assert_eq!(tagged_backend(b"WS999999D", NAME), None, "beyond a u16");
    assert_eq!(
        tagged_backend(b"WS000002X", NAME),
        None,
        "another name's tail"
    );
    assert_eq!(tagged_backend(b"WS00000aD", NAME), None);
    assert_eq!(tagged_backend(b"PHPSESSID", NAME), None);
    assert_eq!(tagged_backend(b"WS000002DD", NAME), None);
}

#[test]
fn a_set_cookie_is_tagged_at_any_alignment() {
    for pad in [0, 1, 2, 3] {
        let (mut s, at) = segment(pad, RESPONSE.as_bytes());
        let r = tag_set_cookies(&mut s, at, NAME, 2);
        assert_eq!(
            r,
            Rewritten {
                names: 1,
                missed: false
            }
        );
        assert_eq!(text(&s, at), RESPONSE.replace("PHPSESSID=", "WS000002D="));
        assert!(checksum_ok(&s), "pad {pad}");
        // The same again (a retransmission of the rewritten copy is not rewritten twice).
        let r = tag_set_cookies(&mut s, at, NAME, 2);
        assert_eq!(r.names, 0);
    }
}

#[test]
fn restore_takes_back_only_this_backends_tag() {
    let req = "GET /app/x HTTP/1.1\r\nHost: v\r\nCookie: a=1; WS000002D=abc; WS000003D=def;WS000002D=x\r\n\r\n";
    for pad in [0, 1] {
        let (mut s, at) = segment(pad, req.as_bytes());
        let r = restore_cookies(&mut s, at, NAME, 2);
        assert_eq!(r.names, 2);
        assert_eq!(
            text(&s, at),
            "GET /app/x HTTP/1.1\r\nHost: v\r\nCookie: a=1; PHPSESSID=abc; WS000003D=def;PHPSESSID=x\r\n\r\n"
        );
        assert!(checksum_ok(&s));
    }
}

#[test]
fn bodies_and_other_headers_are_left_alone() {
    // The body after the head, a header whose value names the cookie, a request line
    // in a body without a head around it: none is a Set-Cookie line of a head.
    let resp = "HTTP/1.1 200 OK\r\nX-Note: Set-Cookie: PHPSESSID=1\r\nContent-Length: 40\r\n\r\n\
        \r\nSet-Cookie: PHPSESSID=not-a-header\r\n";
    let (mut s, at) = segment(0, resp.as_bytes());
    let before = s.clone();
    assert_eq!(tag_set_cookies(&mut s, at, NAME, 1).names, 0);
    assert_eq!(s, before);
    // A body segment with no head in it.
    let (mut s, at) = segment(0, b"\r\nSet-Cookie: PHPSESSID=abc\r\n\r\n");
    assert_eq!(tag_set_cookies(&mut s, at, NAME, 1).names, 0);
    // Another cookie whose name starts the same.
    let (mut s, at) = segment(0, b"HTTP/1.1 200 OK\r\nSet-Cookie: PHPSESSIDX=1\r\n\r\n");
    assert_eq!(tag_set_cookies(&mut s, at, NAME, 1).names, 0);
}

#[test]
fn pipelined_heads_in_one_segment_are_each_rewritten() {
    let two = format!("{RESPONSE}{RESPONSE}");
    let (mut s, at) = segment(0, two.as_bytes());
    assert_eq!(tag_set_cookies(&mut s, at, NAME, 7).names, 2);
    assert!(checksum_ok(&s));
    // A header value holding "HTTP/1." does not make its head scanned twice.
    let via = "GET / HTTP/1.1\r\nVia: HTTP/1.1 proxy\r\nCookie: WS000007D=1\r\n\r\n";
    let (mut s, at) = segment(0, via.as_bytes());
    assert_eq!(restore_cookies(&mut s, at, NAME, 7).names, 1);
    assert!(checksum_ok(&s));
}

#[test]
fn a_name_cut_by_the_segment_edge_is_missed_not_mangled() {
    for cut in [40, 60, 66, 70] {
        let part = &RESPONSE.as_bytes()[..cut];
        let (mut s, at) = segment(0, part);
        let before = s.clone();
        let r = tag_set_cookies(&mut s, at, NAME, 2);
        assert_eq!(r.names, 0, "cut at {cut}");
        assert!(r.missed, "cut at {cut}: {:?}", text(&before, at));
        assert_eq!(s, before);
    }
    // Cut after the name's '=': whole, so tagged.
    let cut = RESPONSE.find("abc123").unwrap();
    let (mut s, at) = segment(0, &RESPONSE.as_bytes()[..cut]);
    let r = tag_set_cookies(&mut s, at, NAME, 2);
    assert_eq!(r.names, 1);
    assert!(r.missed, "the line itself is cut");
}

#[test]
fn garbage_never_panics() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        let mut p = Vec::new();
        let n = (x % 200) as usize;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let pieces: [&[u8]; 8] = [
                b"HTTP/1.",
                b"\r\n",
                b"Set-Cookie:",
                b"Cookie:",
                b"PHPSESSID=",
                b"WS000001D=",
                b";",
                b" ",
            ];
            p.extend_from_slice(pieces[(x % 8) as usize]);
        }
        let (mut s, at) = segment((x % 4) as usize, &p);
        tag_set_cookies(&mut s, at, NAME, 1);
        assert!(checksum_ok(&s));
        restore_cookies(&mut s, at, NAME, 1);
        assert!(checksum_ok(&s));
    }
}
