//! Request paths normalised the way the web servers behind the switch read them, so
//! that a rule (a `deny` above all) sees the path the backend will serve and not just
//! one of its spellings.
//!
//! nginx (`ngx_http_parse_complex_uri`) and Apache decode every percent-encoding of
//! the path once, merge repeated slashes and resolve `.` and `..` segments before they
//! pick a location or a file; `/x/../admin/`, `/%61dmin/`, `//admin/` and
//! `/%2e%2e/admin/`-style spellings all serve `/admin/`. [`normalize`] does the same:
//!
//! - every `%XX` is decoded, once (`%2561` is `%61`, literally, not `a`); a decoded
//!   byte is data, except that a decoded `.` counts in dot segments (`%2e%2e` is `..`),
//!   as in nginx;
//! - `.` and `..` segments are removed (RFC 3986 5.2.4), a trailing one leaving its
//!   slash (`/a/..` is `/`);
//! - runs of `/` are merged (nginx's default `merge_slashes on`);
//! - a raw `#` ends the path (nginx ignores what follows it); a query is not part of
//!   the path (give this what [`crate::RequestHead::path_only`] returns).
//!
//! Refused (the request is answered 400, as nginx does, see [`PathError`]): a `%` not
//! followed by two hex digits, an encoded `/` (`%2F`: nginx would decode it into a
//! separator, Apache refuses it; either way the switch and the backend could disagree
//! on the segments), an encoded NUL, and a `..` that climbs above the root.
//!
//! Case, `;` and `\` are left alone: nginx and Apache on Linux treat `/Admin/`,
//! `/admin;x/` and `\admin` as other paths than `/admin/`.
//!
//! Normalising allocates nothing: a path already in normal form (the common case,
//! found by one scan) is returned as it is, and others are written into a scratch
//! buffer the caller keeps (its capacity grows to the longest path seen, bounded by
//! the head size).
use std::cell::RefCell;
use std::fmt;

/// Why a path cannot be normalised. The switch answers such a request 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `%` not followed by two hex digits (`%zz`, `%4` at the end).
    BadEscape,
    /// `%2F`: an encoded slash.
    EncodedSlash,
    /// `%00`: an encoded NUL.
    EncodedNul,
    /// A `..` segment above the root (`/../x`, `/a/../../x`).
    AboveRoot,
}

impl PathError {
    /// The HTTP status to answer with (400 for all of them).
    pub fn status(self) -> u16 {
        400
    }

    /// A short name for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            PathError::BadEscape => "bad_escape",
            PathError::EncodedSlash => "encoded_slash",
            PathError::EncodedNul => "encoded_nul",
            PathError::AboveRoot => "above_root",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.status())
    }
}

impl std::error::Error for PathError {}

/// Whether `path` has no empty, `.` or `..` segment after a slash (`//`, `/./`,
/// `/../`, or such a segment at the end): what a normalised path looks like apart
/// from its escapes.
pub fn segments_normal(path: &[u8]) -> bool {
    let mut i = 0;
    while let Some(off) = path[i..].iter().position(|&b| b == b'/') {
        let rest = &path[i + off + 1..];
        let seg_end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let seg = &rest[..seg_end];
        let is_last = seg_end == rest.len();
        if (seg.is_empty() && !is_last) || seg == b"." || seg == b".." {
            return false;
        }
        i += off + 1;
    }
    true
}

/// Whether [`normalize`] would return `path` unchanged.
pub fn is_normal(path: &[u8]) -> bool {
    !path.iter().any(|&b| b == b'%' || b == b'#') && segments_normal(path)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The normal form of `path` (a request path without its query): `path` itself when
/// it is already normal, else the normalised bytes written into `scratch` (cleared
/// first). A path that does not start with `/` (`*` of `OPTIONS *`) is returned as
/// it is. See the module documentation for what is decoded, merged and refused.
pub fn normalize<'a>(path: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<&'a [u8], PathError> {
    if path.first() != Some(&b'/') || is_normal(path) {
        return Ok(path);
    }
    let out = scratch;
    out.clear();
    out.push(b'/');
    // Where the segment being written starts in `out` (just past its slash).
    let mut seg_start = 1;
    let mut i = 1;
    loop {
        match path.get(i).copied() {
            None | Some(b'#') => {
                end_segment(out, seg_start, true)?;
                return Ok(&out[..]);
            }
            Some(b'/') => {
                end_segment(out, seg_start, false)?;
                seg_start = out.len();
                i += 1;
            }
            Some(b'%') => {
                let hi = path.get(i + 1).copied().and_then(hex);
                let lo = path.get(i + 2).copied().and_then(hex);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadEscape);
                };
                match hi << 4 | lo {
                    b'/' => return Err(PathError::EncodedSlash),
                    0 => return Err(PathError::EncodedNul),
                    b => out.push(b),
                }
                i += 3;
            }
            Some(b) => {
                out.push(b);
                i += 1;
            }
        }
    }
}

thread_local! {
    /// The scratch of [`with_normalized`] (its capacity grows to the longest path
    /// normalised on this thread, bounded by the head size).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with the normal form of `path`, normalised into a per-thread scratch
/// buffer: [`normalize`] for callers on the hot path that keep no buffer of their own.
/// `f` must not call `with_normalized` itself.
pub fn with_normalized<R>(path: &[u8], f: impl FnOnce(Result<&[u8], PathError>) -> R) -> R {
    SCRATCH.with(|scratch| f(normalize(path, &mut scratch.borrow_mut())))
}

/// Ends the segment `out[seg_start..]` (`out[seg_start - 1]` is its slash): drops it
/// if empty or `.`, drops it and the one before if `..`, else keeps it and, unless it
/// is the last, writes the slash of the next one.
fn end_segment(out: &mut Vec<u8>, seg_start: usize, last: bool) -> Result<(), PathError> {
    match &out[seg_start..] {
        // `//` merged; at the end, the trailing slash stays.
        [] => {}
        [b'.'] => out.truncate(seg_start),
        [b'.', b'.'] => {
            if seg_start == 1 {
                return Err(PathError::AboveRoot);
            }
            let parent = out[..seg_start - 1]
                .iter()
                .rposition(|&b| b == b'/')
                .expect("a normalised path starts with `/`");
            out.truncate(parent + 1);
        }
        _ => {
            if !last {
                out.push(b'/');
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
