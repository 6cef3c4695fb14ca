//! TCP options: kind, length, value (RFC 9293 §3.1; MSS, window scale and
//! timestamps from RFC 7323; SACK from RFC 2018).
use crate::wire::{be16, be32, put16, put32, Result, WireError};

mod kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WS: u8 = 3;
    pub const SACK_PERM: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TS: u8 = 8;
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// Kind 0: the rest of the option space is padding.
    EndOfList,
    /// Kind 1: a one-byte filler for alignment.
    NoOperation,
    MaxSegmentSize(u16),
    /// The shift count as sent (RFC 7323 says to treat values above 14 as 14; that
    /// clamping is [`TcpRepr`](crate::wire::TcpRepr)'s business).
    WindowScale(u8),
    SackPermitted,
    /// Up to three SACK blocks as (left, right) edges. The wire allows four when no
    /// timestamps are sent; a fourth is dropped on parsing, which only makes the
    /// acknowledgment less informative, never wrong.
    SackRange([Option<(u32, u32)>; 3]),
    Timestamps {
        tsval: u32,
        tsecr: u32,
    },
    /// Any other kind, with its value bytes (after kind and length).
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

impl<'a> TcpOption<'a> {
    /// Reads the option at the start of `buffer` and returns it with the bytes after
    /// it. `Err(Malformed)` for a length byte that is missing, below 2, past the end
    /// of the buffer, or wrong for a known kind (RFC 9293 asks receivers to be
    /// ready for illegal lengths rather than trust them).
    pub fn parse(buffer: &'a [u8]) -> Result<(&'a [u8], TcpOption<'a>)> {
        let (&kind, rest) = buffer.split_first().ok_or(WireError::Truncated)?;
        match kind {
            kind::END => return Ok((rest, TcpOption::EndOfList)),
            kind::NOP => return Ok((rest, TcpOption::NoOperation)),
            _ => {}
        }
        let len = usize::from(*rest.first().ok_or(WireError::Malformed)?);
        if len < 2 || len > buffer.len() {
            return Err(WireError::Malformed);
        }
        let data = &buffer[2..len];
        let option = match (kind, len) {
            (kind::MSS, 4) => TcpOption::MaxSegmentSize(be16(data, 0)),
            (kind::WS, 3) => TcpOption::WindowScale(data[0]),
            (kind::SACK_PERM, 2) => TcpOption::SackPermitted,
            (kind::SACK, 10 | 18 | 26 | 34) => {
                let mut blocks = [None; 3];
                for (slot, block) in blocks.iter_mut().zip(data.chunks_exact(8)) {
                    *slot = Some((be32(block, 0), be32(block, 4)));
                }
                TcpOption::SackRange(blocks)
            }
            (kind::TS, 10) => TcpOption::Timestamps {
                tsval: be32(data, 0),
                tsecr: be32(data, 4),
            },
            (kind::MSS | kind::WS | kind::SACK_PERM | kind::SACK | kind::TS, _) => {
                return Err(WireError::Malformed)
            }
            _ => TcpOption::Unknown { kind, data },
        };
        Ok((&buffer[len..], option))
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(blocks) => 2 + 8 * blocks.iter().flatten().count(),
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `buffer` and returns its length.
    ///
    /// # Panics
    /// If `buffer` is shorter than [`buffer_len`](Self::buffer_len), or an
    /// `Unknown` option's data exceeds the 253 bytes a length byte can describe.
    pub fn emit(&self, buffer: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let kind = match self {
            TcpOption::EndOfList => {
                buffer[0] = kind::END;
                return 1;
            }
            TcpOption::NoOperation => {
                buffer[0] = kind::NOP;
                return 1;
            }
            TcpOption::MaxSegmentSize(mss) => {
                put16(buffer, 2, *mss);
                kind::MSS
            }
            TcpOption::WindowScale(shift) => {
                buffer[2] = *shift;
                kind::WS
            }
            TcpOption::SackPermitted => kind::SACK_PERM,
            TcpOption::SackRange(blocks) => {
                for (i, (left, right)) in blocks.iter().flatten().enumerate() {
                    put32(buffer, 2 + 8 * i, *left);
                    put32(buffer, 6 + 8 * i, *right);
                }
                kind::SACK
            }
            TcpOption::Timestamps { tsval, tsecr } => {
                put32(buffer, 2, *tsval);
                put32(buffer, 6, *tsecr);
                kind::TS
            }
            TcpOption::Unknown { kind, data } => {
                buffer[2..len].copy_from_slice(data);
                *kind
            }
        };
        buffer[0] = kind;
        buffer[1] = u8::try_from(len).expect("TCP option longer than 255 bytes");
        len
    }
}

/// Iterates the options of a header (the bytes from
/// [`TcpPacket::options`](crate::wire::TcpPacket::options)).
///
/// Yields each option in order, including `NoOperation`s and one final
/// `EndOfList` if present (after which it stops: the rest is padding). A malformed
/// option yields one `Err` and ends the iteration, since nothing after a bad length
/// can be located.
#[derive(Debug, Clone)]
pub struct TcpOptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptionIter<'a> {
    pub fn new(options: &'a [u8]) -> Self {
        TcpOptionIter { rest: options }
    }
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match TcpOption::parse(self.rest) {
            Ok((_, TcpOption::EndOfList)) => {
                self.rest = &[];
                Some(Ok(TcpOption::EndOfList))
            }
            Ok((rest, option)) => {
                self.rest = rest;
                Some(Ok(option))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for TcpOptionIter<'_> {}
