//! A TCP header as values, for building segments from scratch and for reading the
//! options the connection logic needs.
use std::net::Ipv4Addr;

use super::{tcp_flags, TcpOption, TcpOptionIter, TcpPacket};
use crate::wire::{Result, SeqNumber, WireError};

/// The largest window shift RFC 7323 §2.3 allows; larger values are read as 14.
const MAX_WINDOW_SCALE: u8 = 14;

/// A TCP header plus the payload's length.
///
/// `flags` holds every flag bit except ACK, which is implied by `ack_number` being
/// `Some` so the two cannot disagree. The SYN-only options (MSS, window scale,
/// SACK-permitted) are reported wherever they appear; honouring them only on a SYN
/// is the connection logic's job. SACK blocks are not kept: the switch does not act
/// on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: SeqNumber,
    pub ack_number: Option<SeqNumber>,
    pub flags: u8,
    pub window_len: u16,
    pub max_seg_size: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    pub payload_len: usize,
}

impl TcpRepr {
    /// Reads a segment carried from `src` to `dst`.
    ///
    /// Errors: those of `check_len`; `Malformed` for port 0 or a malformed option;
    /// `BadChecksum` when `verify_checksum` is set and the checksum (with the
    /// pseudo-header) is wrong. Pass `verify_checksum = false` only when the NIC has
    /// already verified it.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        verify_checksum: bool,
    ) -> Result<TcpRepr> {
        packet.check_len()?;
        if packet.src_port() == 0 || packet.dst_port() == 0 {
            return Err(WireError::Malformed);
        }
        if verify_checksum && !packet.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        let mut repr = TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack().then(|| packet.ack_number()),
            flags: packet.flags() & !tcp_flags::ACK,
            window_len: packet.window_len(),
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
            payload_len: packet.payload().len(),
        };
        for option in TcpOptionIter::new(packet.options()) {
            match option.map_err(|_| WireError::Malformed)? {
                TcpOption::MaxSegmentSize(mss) => repr.max_seg_size = Some(mss),
                TcpOption::WindowScale(shift) => {
                    repr.window_scale = Some(shift.min(MAX_WINDOW_SCALE))
                }
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::Timestamps { tsval, tsecr } => repr.timestamps = Some((tsval, tsecr)),
                TcpOption::EndOfList | TcpOption::NoOperation => {}
                TcpOption::SackRange(_) | TcpOption::Unknown { .. } => {}
            }
        }
        Ok(repr)
    }

    /// Bytes of options [`emit`](Self::emit) writes. They are laid out the way Linux
    /// lays them out (MSS; SACK-permitted + timestamps, or NOP NOP + either; NOP +
    /// window scale), so every option is aligned and the total is a multiple of 4.
    pub fn options_len(&self) -> usize {
        let mut len = 0;
        if self.max_seg_size.is_some() {
            len += 4;
        }
        if self.timestamps.is_some() {
            len += 12;
        } else if self.sack_permitted {
            len += 4;
        }
        if self.window_scale.is_some() {
            len += 4;
        }
        len
    }

    /// The header length in bytes: 20 plus the (already 4-aligned) options.
    pub fn header_len(&self) -> usize {
        TcpPacket::<&[u8]>::HEADER_LEN + self.options_len()
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Sequence space of the segment: payload plus one each for SYN and FIN.
    pub fn segment_len(&self) -> usize {
        self.payload_len
            + usize::from(self.flags & tcp_flags::SYN != 0)
            + usize::from(self.flags & tcp_flags::FIN != 0)
    }

    /// Writes header, options and `payload` into the first
    /// [`buffer_len`](Self::buffer_len) bytes of `packet`, then the checksum over
    /// exactly those bytes (so a larger buffer is fine; the caller sets the IP total
    /// length). The urgent pointer and reserved bits are zeroed.
    ///
    /// # Panics
    /// If the buffer is shorter than `header_len() + payload.len()`.
    /// `payload.len()` should equal `payload_len`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut TcpPacket<&mut T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload: &[u8],
    ) {
        debug_assert_eq!(payload.len(), self.payload_len);
        let header_len = self.header_len();
        let mut seg =
            TcpPacket::new_unchecked(&mut packet.buffer.as_mut()[..header_len + payload.len()]);
        seg.set_src_port(self.src_port);
        seg.set_dst_port(self.dst_port);
        seg.set_seq_number(self.seq_number);
        seg.set_ack_number(self.ack_number.unwrap_or_default());
        // Whole byte: data offset, reserved and AE bits cleared.
        seg.buffer[super::field::DATA_OFF] = ((header_len / 4) as u8) << 4;
        let ack = if self.ack_number.is_some() {
            tcp_flags::ACK
        } else {
            0
        };
        seg.set_flags((self.flags & !tcp_flags::ACK) | ack);
        seg.set_window_len(self.window_len);
        seg.set_urgent_at(0);

        let options = seg.options_mut();
        let mut at = 0;
        let mut put = |option: TcpOption<'_>| at += option.emit(&mut options[at..]);
        if let Some(mss) = self.max_seg_size {
            put(TcpOption::MaxSegmentSize(mss));
        }
        match (self.sack_permitted, self.timestamps) {
            (sack, Some((tsval, tsecr))) => {
                if sack {
                    put(TcpOption::SackPermitted);
                } else {
                    put(TcpOption::NoOperation);
                    put(TcpOption::NoOperation);
                }
                put(TcpOption::Timestamps { tsval, tsecr });
            }
            (true, None) => {
                put(TcpOption::NoOperation);
                put(TcpOption::NoOperation);
                put(TcpOption::SackPermitted);
            }
            (false, None) => {}
        }
        if let Some(shift) = self.window_scale {
            put(TcpOption::NoOperation);
            put(TcpOption::WindowScale(shift));
        }
        debug_assert_eq!(at, self.options_len());

        seg.payload_mut().copy_from_slice(payload);
        seg.fill_checksum(src, dst);
    }
}
