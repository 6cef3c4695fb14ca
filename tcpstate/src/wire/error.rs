//! Why a frame could not be read. The variants are coarse on purpose: the dataplane
//! only counts and drops, and a fuzzer only needs "error, not panic".
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer ends before the header, or before a length field says it ends.
    Truncated,
    /// A header-length field is impossible (IPv4 IHL < 5, TCP data offset < 5, or a
    /// header longer than the packet it heads).
    BadHeaderLen,
    /// The IP version nibble is not 4.
    BadVersion,
    /// A checksum did not verify (only where the caller asked for verification).
    BadChecksum,
    /// A field holds a value the format forbids (ARP for another hardware or protocol
    /// type, an illegal TCP option length, port 0, a malformed address string...).
    Malformed,
    /// Well-formed, but outside what a `Repr` can describe (an IPv4 fragment).
    Unsupported,
}

pub type Result<T> = std::result::Result<T, WireError>;

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated packet",
            WireError::BadHeaderLen => "bad header length",
            WireError::BadVersion => "bad IP version",
            WireError::BadChecksum => "bad checksum",
            WireError::Malformed => "malformed packet",
            WireError::Unsupported => "unsupported packet",
        })
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_prose() {
        assert_eq!(WireError::Truncated.to_string(), "truncated packet");
        let e: Box<dyn std::error::Error> = Box::new(WireError::BadVersion);
        assert_eq!(e.to_string(), "bad IP version");
    }
}
