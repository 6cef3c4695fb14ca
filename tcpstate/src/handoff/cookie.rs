//! Session persistence by cookie-name rewriting (paper 002, "DWSR"): with handoff the
//! switch never sees a response, so it cannot insert or learn a cookie. Instead the
//! agent rewrites the *name* of the backend's own session cookie as the response
//! leaves the host, to carry the backend's id; the client sends it back under that
//! name, the switch routes by the name, and the agent restores the name on the way
//! in, so the application never knows. The name keeps its length, so no sequence
//! number moves; only the TCP checksum changes (incrementally).
//!
//! The tag replaces the first [`TAG_LEN`] characters of the name: `WS` and the backend
//! id as six decimal digits, so `PHPSESSID` from backend 2 becomes `WS000002D`. The
//! name must be at least [`TAG_LEN`] long (checked by the config), and a tagged name
//! is recognised only with the rest of the configured name after the tag.
//!
//! A client that used several pools holds one tagged cookie per backend it got a
//! session from; the switch takes the last one (the newest, in the order browsers
//! send them) whose backend is in the pool the URL rules chose, so URL switching and
//! persistence live together (the paper's point).
//!
//! What is rewritten, and what is not (each a deliberate limit of a per-segment
//! rewrite that holds no bytes back):
//! - Only header lines inside a head that starts in the same segment: after a status
//!   line (`HTTP/1.x ...`, responses) or a request line (`... HTTP/1.x`, requests),
//!   before the blank line ending that head. A body is never touched unless it
//!   carries text that looks exactly like such a head.
//! - A head cut by a segment edge is rewritten up to the edge, and what follows is not
//!   seen: counted ([`Rewritten::missed`]), the client then keeps the plain name for
//!   that response (no persistence, nothing broken). So is a fifth name in one segment.
//! - The functions are pure over the bytes of one segment, so a retransmission gets
//!   the same rewrite as the first copy.
use memchr::memmem;

use crate::wire::checksum::Incremental;

/// Characters of the cookie name the tag replaces.
pub const TAG_LEN: usize = 8;
/// The tag's first characters: what marks a name as rewritten.
const KEYWORD: &[u8; 2] = b"WS";

/// The tag for backend `id`: `WS` and six digits.
pub fn tag(id: u16) -> [u8; TAG_LEN] {
    let mut t = [b'0'; TAG_LEN];
    t[..2].copy_from_slice(KEYWORD);
    let mut v = u32::from(id);
    for d in t[2..].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    t
}

/// The backend id a cookie `name` carries if it is `cookie` (the configured name)
/// with its first [`TAG_LEN`] characters replaced by a tag.
pub fn tagged_backend(name: &[u8], cookie: &[u8]) -> Option<u16> {
    if name.len() != cookie.len() || name.len() < TAG_LEN || &name[..2] != KEYWORD {
        return None;
    }
    if name[TAG_LEN..] != cookie[TAG_LEN..] {
        return None;
    }
    let mut v: u32 = 0;
    for &d in &name[2..TAG_LEN] {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(d - b'0');
    }
    u16::try_from(v).ok()
}

/// What a rewrite did to one segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// Names rewritten (tagged in a response, restored in a request).
    pub names: u32,
    /// A name that may have been one to rewrite was left alone: the segment ends inside
    /// a head, or holds more such names than one rewrite takes.
    pub missed: bool,
}

/// In a response segment from backend `backend`: every `Set-Cookie: <cookie>=` in a
/// response head gets the tag. `tcp` is the whole TCP segment (header first, so that
/// the checksum's word alignment is known), `payload_at` where its payload starts;
/// the checksum is updated for each change.
pub fn tag_set_cookies(
    tcp: &mut [u8],
    payload_at: usize,
    cookie: &[u8],
    backend: u16,
) -> Rewritten {
    let new = tag(backend);
    rewrite(tcp, payload_at, Direction::Response, |name| {
        (name == cookie).then_some(new)
    })
}

/// In a request segment for backend `backend`: every cookie named with this backend's
/// tag in a `Cookie:` header gets its name back. Others' tags stay (the application
/// ignores a cookie it does not know).
pub fn restore_cookies(
    tcp: &mut [u8],
    payload_at: usize,
    cookie: &[u8],
    backend: u16,
) -> Rewritten {
    let mut original = [0u8; TAG_LEN];
    original.copy_from_slice(&cookie[..TAG_LEN]);
    rewrite(tcp, payload_at, Direction::Request, |name| {
        (tagged_backend(name, cookie) == Some(backend)).then_some(original)
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// `Set-Cookie: name=value; attributes`: one cookie per line.
    Response,
    /// `Cookie: a=1; b=2`: many per line.
    Request,
}

/// Finds the cookie names in heads of `tcp[payload_at..]` and overwrites the first
/// [`TAG_LEN`] bytes of each name `replace` returns a value for.
fn rewrite(
    tcp: &mut [u8],
    payload_at: usize,
    dir: Direction,
    replace: impl Fn(&[u8]) -> Option<[u8; TAG_LEN]>,
) -> Rewritten {
    let mut out = Rewritten::default();
    if tcp.len() < 18 || payload_at > tcp.len() {
        return out;
    }
    let mut edits: [(usize, [u8; TAG_LEN]); 4] = [(0, [0; TAG_LEN]); 4];
    let mut n_edits = 0;
    {
        let payload = &tcp[payload_at..];
        let header: &[u8] = match dir {
            Direction::Response => b"set-cookie:",
            Direction::Request => b"cookie:",
        };
        // Where the last head scanned ended: "HTTP/1." inside it is a header's value.
        let mut scanned_to = 0;
        for version in memmem::find_iter(payload, b"HTTP/1.") {
            if version < scanned_to {
                continue;
            }
            // The head: from the line after the status or request line to the blank line.
            let Some(eol) = memmem::find(&payload[version..], b"\r\n") else {
                break;
            };
            let head_from = version + eol + 2;
            let end = match memmem::find(&payload[head_from - 2..], b"\r\n\r\n") {
                Some(e) => head_from + e,
                None => {
                    // The head goes on in the next segment, which has no status or request
                    // line to be recognised by: its cookies are not seen.
                    out.missed = true;
                    payload.len()
                }
            };
            scanned_to = end;
            let mut line = head_from;
            while line < end {
                let line_end = memmem::find(&payload[line..end], b"\r\n").map(|e| line + e);
                let text = &payload[line..line_end.unwrap_or(end)];
                if text.len() > header.len() && text[..header.len()].eq_ignore_ascii_case(header) {
                    let value_at = line + header.len();
                    for (at, name) in names(&payload[value_at..line + text.len()], dir) {
                        let Some(new) = replace(name) else {
                            continue;
                        };
                        if n_edits == edits.len() {
                            out.missed = true;
                            continue;
                        }
                        edits[n_edits] = (payload_at + value_at + at, new);
                        n_edits += 1;
                    }
                }
                match line_end {
                    Some(e) => line = e + 2,
                    None => break,
                }
            }
        }
    }
    for &(at, new) in &edits[..n_edits] {
        overwrite(tcp, at, &new);
        out.names += 1;
    }
    out
}

/// The cookie names in a header value, with their offsets: the one before the first
/// `=` of a `Set-Cookie`, every pair's of a `Cookie`.
fn names(value: &[u8], dir: Direction) -> impl Iterator<Item = (usize, &[u8])> {
    let mut pos = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        while !done {
            let rest = &value[pos..];
            let pair_len = match dir {
                Direction::Response => {
                    done = true;
                    rest.iter().position(|&b| b == b';').unwrap_or(rest.len())
                }
                Direction::Request => match rest.iter().position(|&b| b == b';') {
                    Some(p) => p,
                    None => {
                        done = true;
                        rest.len()
                    }
                },
            };
            let start = pos;
            pos += pair_len + 1;
            let pair = &rest[..pair_len];
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let lead = pair
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            let mut name = &pair[lead..eq];
            while let [rest @ .., b' ' | b'\t'] = name {
                name = rest;
            }
            if name.len() >= TAG_LEN {
                return Some((start + lead, name));
            }
        }
        None
    })
}

/// Writes `new` at `tcp[at..]` and updates the TCP checksum (offset 16) for the words
/// that changed. Words are counted from the segment's start (the pseudo-header is a
/// whole number of words), so an odd `at` shares its first word with the byte before.
fn overwrite(tcp: &mut [u8], at: usize, new: &[u8]) {
    let from = at & !1;
    let to = (at + new.len() + 1) & !1;
    let word = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b.get(i + 1).copied().unwrap_or(0)]);
    let mut old_words = [0u16; TAG_LEN / 2 + 1];
    for (k, i) in (from..to).step_by(2).enumerate() {
        old_words[k] = word(tcp, i);
    }
    tcp[at..at + new.len()].copy_from_slice(new);
    let mut csum = Incremental::new(u16::from_be_bytes([tcp[16], tcp[17]]));
    for (k, i) in (from..to).step_by(2).enumerate() {
        csum.word(old_words[k], word(tcp, i));
    }
    tcp[16..18].copy_from_slice(&csum.finish().to_be_bytes());
}

#[cfg(test)]
mod tests;
