//! TCP segments (RFC 9293): the header view here, options in `option`, the
//! value form in `repr`.
use std::net::Ipv4Addr;

use super::{be16, be32, checksum, ip_proto, put16, put32, Result, SeqNumber, WireError};

mod option;
mod repr;

pub use self::option::{TcpOption, TcpOptionIter};
pub use self::repr::TcpRepr;

/// The flag bits of header byte 13.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// A view of a TCP segment. The buffer must be exactly the IP payload: the payload
/// runs to its end and the checksum covers all of it.
#[derive(Debug, Clone)]
pub struct TcpPacket<T> {
    buffer: T,
}

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: usize = 4;
    pub const ACK_NUM: usize = 8;
    /// Data offset (high nibble) and the reserved/AE bits (low nibble).
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const OPTIONS: usize = 20;
}

impl<T> TcpPacket<T> {
    /// Length of a header without options.
    pub const HEADER_LEN: usize = field::OPTIONS;

    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than 20 bytes or than the data
    /// offset says; `Err(BadHeaderLen)` if the data offset is below 5 words.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = usize::from(self.header_len());
        if header_len < Self::HEADER_LEN {
            return Err(WireError::BadHeaderLen);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    #[inline]
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(be32(self.buffer.as_ref(), field::SEQ_NUM))
    }

    /// The acknowledgment field, whether or not ACK is set (check [`ack`](Self::ack)).
    #[inline]
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(be32(self.buffer.as_ref(), field::ACK_NUM))
    }

    /// Header length in bytes (data offset × 4), 20..=60 once checked.
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// All eight flag bits (see [`tcp_flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline]
    fn flag(&self, bit: u8) -> bool {
        self.flags() & bit != 0
    }

    #[inline]
    pub fn fin(&self) -> bool {
        self.flag(tcp_flags::FIN)
    }

    #[inline]
    pub fn syn(&self) -> bool {
        self.flag(tcp_flags::SYN)
    }

    #[inline]
    pub fn rst(&self) -> bool {
        self.flag(tcp_flags::RST)
    }

    #[inline]
    pub fn psh(&self) -> bool {
        self.flag(tcp_flags::PSH)
    }

    #[inline]
    pub fn ack(&self) -> bool {
        self.flag(tcp_flags::ACK)
    }

    #[inline]
    pub fn urg(&self) -> bool {
        self.flag(tcp_flags::URG)
    }

    #[inline]
    pub fn ece(&self) -> bool {
        self.flag(tcp_flags::ECE)
    }

    #[inline]
    pub fn cwr(&self) -> bool {
        self.flag(tcp_flags::CWR)
    }

    /// The raw (unscaled) window field.
    #[inline]
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    /// The option bytes (iterate them with [`TcpOptionIter`]).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..usize::from(self.header_len())]
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..]
    }

    /// Sequence space the segment occupies: payload bytes plus one each for SYN and
    /// FIN.
    #[inline]
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// Whether the checksum over the pseudo-header and the whole buffer is correct.
    /// A buffer over 65535 bytes cannot be a TCP segment and never verifies.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        let Ok(len) = u16::try_from(data.len()) else {
            return false;
        };
        let acc = checksum::pseudo_header_v4(src, dst, ip_proto::TCP, len) + checksum::sum(data);
        !checksum::fold(acc) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    #[inline]
    pub fn set_seq_number(&mut self, value: SeqNumber) {
        put32(self.buffer.as_mut(), field::SEQ_NUM, value.0);
    }

    #[inline]
    pub fn set_ack_number(&mut self, value: SeqNumber) {
        put32(self.buffer.as_mut(), field::ACK_NUM, value.0);
    }

    /// Sets the header length in bytes (stored as data offset = `header_len / 4`),
    /// keeping the reserved/AE bits.
    #[inline]
    pub fn set_header_len(&mut self, header_len: u8) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | ((header_len / 4) << 4);
    }

    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    #[inline]
    fn set_flag(&mut self, bit: u8, on: bool) {
        let f = self.flags();
        self.set_flags(if on { f | bit } else { f & !bit });
    }

    #[inline]
    pub fn set_fin(&mut self, on: bool) {
        self.set_flag(tcp_flags::FIN, on);
    }

    #[inline]
    pub fn set_syn(&mut self, on: bool) {
        self.set_flag(tcp_flags::SYN, on);
    }

    #[inline]
    pub fn set_rst(&mut self, on: bool) {
        self.set_flag(tcp_flags::RST, on);
    }

    #[inline]
    pub fn set_psh(&mut self, on: bool) {
        self.set_flag(tcp_flags::PSH, on);
    }

    #[inline]
    pub fn set_ack(&mut self, on: bool) {
        self.set_flag(tcp_flags::ACK, on);
    }

    #[inline]
    pub fn set_urg(&mut self, on: bool) {
        self.set_flag(tcp_flags::URG, on);
    }

    #[inline]
    pub fn set_ece(&mut self, on: bool) {
        self.set_flag(tcp_flags::ECE, on);
    }

    #[inline]
    pub fn set_cwr(&mut self, on: bool) {
        self.set_flag(tcp_flags::CWR, on);
    }

    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::WIN_SIZE, value);
    }

    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::URGENT, value);
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.header_len());
        &mut self.buffer.as_mut()[field::OPTIONS..end]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = usize::from(self.header_len());
        &mut self.buffer.as_mut()[start..]
    }

    /// Recomputes the checksum over the pseudo-header and the whole buffer.
    ///
    /// # Panics
    /// If the buffer is longer than 65535 bytes (no IPv4 packet can carry it).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let len = u16::try_from(data.len()).expect("TCP segment longer than 65535 bytes");
        let acc = checksum::pseudo_header_v4(src, dst, ip_proto::TCP, len) + checksum::sum(data);
        self.set_checksum(!checksum::fold(acc));
    }
}

#[cfg(test)]
mod tests;
