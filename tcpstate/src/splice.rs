//! The per-direction translation of a spliced connection (Maltz and Bhagwat's TCP
//! splice; Cohen, Rangarajan and Slye's "On the performance of TCP splicing for
//! URL-aware redirection").
//!
//! After the switch has answered the client's handshake itself and opened its own
//! connection to the backend, the two connections become one: every segment from
//! either end is rewritten in place so that each end sees a consistent peer. The
//! client believes it talks to the VIP with the sequence numbers, timestamps and
//! window scale of the switch's SYN-ACK; the backend believes it talks to the
//! switch's backend-facing address with those of the switch's SYN. A
//! [`Translation`] holds the differences for one direction and [`translate`]
//! applies them to one packet.
//!
//! Nothing is copied or recomputed over the payload: every rewritten 16- or 32-bit
//! word patches the IP and TCP checksums by RFC 1624's incremental update, so the
//! cost is independent of the segment size. A side effect worth having: a segment
//! that arrived with a bad TCP checksum still has a bad one after translation, so
//! the receiving end drops it exactly as if the switch were not there, and the
//! switch never has to verify checksums on the fast path.
use std::fmt;
use std::net::Ipv4Addr;

use crate::wire::checksum::Incremental;
use crate::wire::{ip_proto, tcp_flags, Ipv4Packet, SeqNumber, TcpOption, TcpPacket};

/// How to rewrite the segments of one direction of a spliced connection.
///
/// All deltas are added modulo 2^32, so a delta of `x.wrapping_neg()` subtracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The new source address and port.
    pub src: (Ipv4Addr, u16),
    /// The new destination address and port.
    pub dst: (Ipv4Addr, u16),
    /// Added to the sequence number: maps the sender's sequence space into the one
    /// the receiver agreed on in its handshake (with the switch, not the sender).
    pub seq_delta: u32,
    /// Added to the acknowledgment number and to every SACK block edge. Both
    /// acknowledge the *receiver's* own data in the sender's view of the
    /// receiver's sequence space; SACK edges are sequence numbers of the same space
    /// as the ACK field, so they must move with it, or the receiver would see
    /// blocks far outside its send window and ignore them (or, worse, act on
    /// them).
    pub ack_delta: u32,
    /// Added to TSval: maps the sender's timestamp clock to the clock the receiver
    /// saw in its handshake, so its PAWS check and RTT samples keep working.
    pub ts_val_delta: u32,
    /// Added to TSecr: the sender echoes values of the clock it was shown; the
    /// receiver measures RTT by subtracting its own clock, so the echo must be put
    /// back into that clock.
    pub ts_ecr_delta: u32,
    /// The window scale the sender applies to its window field (the shift it
    /// announced in its SYN; 0 without window scaling).
    pub window_shift_in: u8,
    /// The window scale the receiver applies to windows it receives on this
    /// connection (the shift the switch announced to it; 0 without scaling).
    pub window_shift_out: u8,
}

/// A placeholder for a connection whose translation is not known yet: addresses
/// 0.0.0.0:0, no deltas, no scaling. (Not an identity: it would rewrite the
/// addresses.)
impl Default for Translation {
    fn default() -> Self {
        Translation {
            src: (Ipv4Addr::UNSPECIFIED, 0),
            dst: (Ipv4Addr::UNSPECIFIED, 0),
            seq_delta: 0,
            ack_delta: 0,
            ts_val_delta: 0,
            ts_ecr_delta: 0,
            window_shift_in: 0,
            window_shift_out: 0,
        }
    }
}

/// What the switch tells a receiver on top of what the sender of a spliced segment
/// said (presplice, toward the client): it holds bytes itself after everything the
/// sender acknowledged (pipelined requests, kept for their own round), and it has room
/// for only so many of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveLimit {
    /// An acknowledgment number (translated) equal to `ack_at` becomes `ack_to`: the
    /// sender has everything before `ack_at`, the switch holds the bytes up to `ack_to`.
    /// Any other value is left alone (the sender still misses bytes before `ack_at`).
    pub ack_at: SeqNumber,
    pub ack_to: SeqNumber,
    /// The window never reaches past this sequence number: the receiver stops sending
    /// there (a zero window once it is acknowledged), and nothing it sends is dropped
    /// for want of room.
    pub right_edge: SeqNumber,
}

/// What the caller needs from a translated segment to track the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translated {
    /// All eight TCP flag bits (see [`tcp_flags`]).
    pub flags: u8,
    /// The translated sequence number.
    pub seq: SeqNumber,
    /// The translated acknowledgment number; the untouched field when ACK is not
    /// set (then it means nothing).
    pub ack: SeqNumber,
    pub payload_len: usize,
    pub fin: bool,
    pub rst: bool,
}

/// Why a packet could not be translated. The packet is unchanged in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpliceError {
    /// The IPv4 or TCP header is truncated, has impossible length fields or is not
    /// IPv4.
    Malformed,
    /// The IP protocol is not TCP.
    NotTcp,
    /// An IP fragment: only a whole datagram has a TCP header to rewrite.
    Fragment,
    /// The TCP options do not parse (a length byte that is missing, too small, runs
    /// past the header, or is wrong for its kind): their SACK blocks and timestamps
    /// cannot be located, so the segment cannot be translated faithfully.
    BadOptions,
}

impl fmt::Display for SpliceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpliceError::Malformed => "malformed IPv4/TCP header",
            SpliceError::NotTcp => "not a TCP segment",
            SpliceError::Fragment => "IP fragment",
            SpliceError::BadOptions => "malformed TCP options",
        })
    }
}

impl std::error::Error for SpliceError {}

/// Option kinds this module rewrites.
const KIND_SACK: u8 = 5;
const KIND_TS: u8 = 8;
/// At most 40 option bytes: four timestamp options, or fewer SACKs.
const MAX_PATCHED_OPTIONS: usize = 4;

/// The largest shift RFC 7323 §2.3 allows; larger ones are used as 14.
const MAX_WINDOW_SCALE: u8 = 14;

/// Re-expresses a window field sent at scale `shift_in` in units of `shift_out`.
///
/// The result is clamped to 65535 (the receiver's scale cannot express more, so it
/// is told less, which is always safe) and rounded *up*: a window that is open must
/// not become 0, or the sender would stop in persist mode though the receiver has
/// room. Linux's own `__tcp_select_window` rounds up to the scale granularity for
/// the same reason; the cost is at most `2^shift_out - 1` bytes more than the
/// receiver really has, which it trims.
pub fn rescale_window(window: u16, shift_in: u8, shift_out: u8) -> u16 {
    if window == 0 {
        return 0;
    }
    let bytes = u64::from(window) << shift_in.min(MAX_WINDOW_SCALE);
    let out = shift_out.min(MAX_WINDOW_SCALE);
    let units = (bytes + (1 << out) - 1) >> out;
    units.min(u64::from(u16::MAX)) as u16
}

/// Rewrites one spliced segment in place.
///
/// `ip_and_tcp` starts at the IPv4 header; bytes after the IP total length (link
/// padding) are ignored and left alone. Rewritten: IP source and destination
/// (header checksum patched), TCP ports, sequence number, acknowledgment number
/// and SACK blocks (only with ACK set: without it they mean nothing and are left
/// alone), the window (except on SYN segments), TSval, and TSecr (with ACK set,
/// for the same reason as the ACK field: RFC 7323 §3.2). The TCP checksum is
/// patched for each change, the pseudo-header's addresses included.
///
/// Why the window is left alone on a SYN: RFC 7323 §2.2 says the window field of
/// a SYN or SYN-ACK is never scaled, since scaling starts only once both SYNs have
/// been exchanged; the raw value means the same on both sides.
///
/// Checksums are not verified (see the module doc). Every check happens before
/// the first byte is written, so on `Err` the packet is untouched.
pub fn translate(ip_and_tcp: &mut [u8], t: &Translation) -> Result<Translated, SpliceError> {
    translate_limited(ip_and_tcp, t, None)
}

/// [`translate`], then (with `limit`, on a segment with ACK set) the acknowledgment
/// number raised over bytes the switch holds and the window cut at the limit's right
/// edge (rounded down to the receiver's scale: a cap may close the window). The
/// window may shrink this way (RFC 9293 §3.8.6 discourages it but requires senders
/// to cope); it is how a receiver that is out of room stops its sender.
pub fn translate_limited(
    ip_and_tcp: &mut [u8],
    t: &Translation,
    limit: Option<&ReceiveLimit>,
) -> Result<Translated, SpliceError> {
    // --- Validation, read-only. ---
    let (ip_header_len, total_len) = {
        let ip = Ipv4Packet::new_checked(&*ip_and_tcp).map_err(|_| SpliceError::Malformed)?;
        if ip.protocol() != ip_proto::TCP {
            return Err(SpliceError::NotTcp);
        }
        if ip.is_fragment() {
            return Err(SpliceError::Fragment);
        }
        (usize::from(ip.header_len()), usize::from(ip.total_len()))
    };
    // Fixed-size views of both headers, cut once: every field access below is at a
    // constant offset into an array, with no bounds check left (this runs per packet).
    let (ip_hdr, segment) = ip_and_tcp[..total_len].split_at_mut(ip_header_len);
    let tcp_header_len = usize::from(
        TcpPacket::new_checked(&*segment)
            .map_err(|_| SpliceError::Malformed)?
            .header_len(),
    );
    let (tcp_fixed, rest) = segment.split_at_mut(TcpPacket::<&[u8]>::HEADER_LEN);
    let (options, payload) = rest.split_at_mut(tcp_header_len - TcpPacket::<&[u8]>::HEADER_LEN);
    // The two layouts of nearly every segment of a splice, none and NOP NOP TS (Linux,
    // BSD), are patched without a walk; any other is walked and validated first.
    let layout = match options.len() {
        0 => Layout::Bare,
        12 if options[..4] == [1, 1, KIND_TS, 10] => Layout::Timestamps,
        _ => Layout::Walked(locate_options(options)?),
    };
    let ip_fixed: &mut [u8; Ipv4Packet::<&[u8]>::HEADER_LEN] = (&mut ip_hdr
        [..Ipv4Packet::<&[u8]>::HEADER_LEN])
        .try_into()
        .map_err(|_| SpliceError::Malformed)?;
    let tcp_fixed: &mut [u8; TcpPacket::<&[u8]>::HEADER_LEN] =
        tcp_fixed.try_into().map_err(|_| SpliceError::Malformed)?;
    let payload_len = payload.len();

    // --- IP header. ---
    let mut ip = Ipv4Packet::new_unchecked(ip_fixed);
    // The addresses' change: in the IP header and in the TCP pseudo-header alike.
    let mut addresses = Incremental::changes();
    addresses.dword(u32::from(ip.src_addr()), u32::from(t.src.0));
    addresses.dword(u32::from(ip.dst_addr()), u32::from(t.dst.0));
    let ip_csum = addresses.applied_to(ip.checksum());
    ip.set_src_addr(t.src.0);
    ip.set_dst_addr(t.dst.0);
    ip.set_checksum(ip_csum.finish());

    // --- TCP header. ---
    let mut tcp = TcpPacket::new_unchecked(tcp_fixed);
    let flags = tcp.flags();
    let has_ack = flags & tcp_flags::ACK != 0;
    let mut csum = addresses.applied_to(tcp.checksum());

    csum.word(tcp.src_port(), t.src.1);
    tcp.set_src_port(t.src.1);
    csum.word(tcp.dst_port(), t.dst.1);
    tcp.set_dst_port(t.dst.1);

    let seq = SeqNumber(tcp.seq_number().0.wrapping_add(t.seq_delta));
    csum.dword(tcp.seq_number().0, seq.0);
    tcp.set_seq_number(seq);

    let ack = if has_ack {
        let mut ack = SeqNumber(tcp.ack_number().0.wrapping_add(t.ack_delta));
        if let Some(l) = limit {
            if ack == l.ack_at {
                ack = l.ack_to;
            }
        }
        csum.dword(tcp.ack_number().0, ack.0);
        tcp.set_ack_number(ack);
        ack
    } else {
        tcp.ack_number()
    };

    if flags & tcp_flags::SYN == 0 {
        let old = tcp.window_len();
        let mut new = rescale_window(old, t.window_shift_in, t.window_shift_out);
        if let (Some(l), true) = (limit, has_ack) {
            let room = l.right_edge.wrapping_diff(ack).max(0) as u64;
            let units = room >> t.window_shift_out.min(MAX_WINDOW_SCALE);
            new = new.min(units.min(u64::from(u16::MAX)) as u16);
        }
        csum.word(old, new);
        tcp.set_window_len(new);
    }

    // Options: offsets are from the start of the options, an even offset in the
    // checksum's 16-bit words (the fixed header is 20 bytes).
    match layout {
        Layout::Bare => {}
        Layout::Timestamps => {
            // TSval at 4, TSecr at 8: whole checksum words.
            if let Ok(ts) = <&mut [u8; 12]>::try_from(&mut *options) {
                shift_aligned(ts, 4, t.ts_val_delta, &mut csum);
                if has_ack {
                    shift_aligned(ts, 8, t.ts_ecr_delta, &mut csum);
                }
            }
        }
        Layout::Walked(patches) => {
            for patch in patches.iter().flatten() {
                let at = usize::from(patch.at);
                match patch.kind {
                    KIND_TS => {
                        add32(options, at + 2, t.ts_val_delta, &mut csum);
                        if has_ack {
                            add32(options, at + 6, t.ts_ecr_delta, &mut csum);
                        }
                    }
                    _ if has_ack => {
                        // SACK: (len - 2) / 8 blocks of two edges; all of them, including
                        // a fourth block that `TcpOption` itself does not report.
                        for edge in 0..usize::from(patch.len - 2) / 4 {
                            add32(options, at + 2 + 4 * edge, t.ack_delta, &mut csum);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    tcp.set_checksum(csum.finish());

    Ok(Translated {
        flags,
        seq,
        ack,
        payload_len,
        fin: flags & tcp_flags::FIN != 0,
        rst: flags & tcp_flags::RST != 0,
    })
}

/// Whether the IPv4 header checksum and the TCP checksum (with its pseudo-header)
/// are both correct, by full recomputation. For tests and debugging: the fast path
/// never needs it.
pub fn verify(ip_and_tcp: &[u8]) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(ip_and_tcp) else {
        return false;
    };
    if !ip.verify_checksum() || ip.protocol() != ip_proto::TCP || ip.is_fragment() {
        return false;
    }
    match TcpPacket::new_checked(ip.payload()) {
        Ok(tcp) => tcp.verify_checksum(ip.src_addr(), ip.dst_addr()),
        Err(_) => false,
    }
}

/// A timestamps or SACK option to rewrite: its offset within the option bytes,
/// kind and length.
#[derive(Debug, Clone, Copy)]
struct Patch {
    /// Offset in the options (at most 40 bytes; a byte keeps the array small to return).
    at: u8,
    kind: u8,
    len: u8,
}

/// Walks the options once, validating every length, and notes where the
/// timestamps and SACK options are. Every occurrence is noted (a receiver might
/// act on any of them), at most four, which is all that 40 option bytes can hold.
fn locate_options(options: &[u8]) -> Result<[Option<Patch>; MAX_PATCHED_OPTIONS], SpliceError> {
    let mut patches = [None; MAX_PATCHED_OPTIONS];
    let mut found = 0;
    let mut at = 0;
    while at < options.len() {
        let (rest, option) =
            TcpOption::parse(&options[at..]).map_err(|_| SpliceError::BadOptions)?;
        if option == TcpOption::EndOfList {
            break;
        }
        let len = options.len() - at - rest.len();
        let kind = options[at];
        if kind == KIND_TS || kind == KIND_SACK {
            // Each is at least 10 bytes, so four of them fill the 40 bytes.
            patches[found] = Some(Patch {
                at: at as u8,
                kind,
                len: len as u8,
            });
            found += 1;
        }
        at += len;
    }
    Ok(patches)
}

/// The options of a segment, as `translate_limited` patches them.
enum Layout {
    /// No options.
    Bare,
    /// NOP, NOP, timestamps: 12 bytes.
    Timestamps,
    /// Any other layout, walked: where its timestamps and SACK options are.
    Walked([Option<Patch>; MAX_PATCHED_OPTIONS]),
}

/// Adds `delta` to the big-endian `u32` at the even offset `at` of `ts` and patches the
/// checksum (constant offsets into an array: no bounds check, no call).
#[inline]
fn shift_aligned(ts: &mut [u8; 12], at: usize, delta: u32, csum: &mut Incremental) {
    let old = u32::from_be_bytes([ts[at], ts[at + 1], ts[at + 2], ts[at + 3]]);
    let new = old.wrapping_add(delta);
    ts[at..at + 4].copy_from_slice(&new.to_be_bytes());
    csum.dword(old, new);
}

/// Adds `delta` to the big-endian `u32` at `at` in the options and patches the
/// checksum. At an even offset the field is two checksum words (RFC 1624
/// on a 32-bit field); at an odd one (an option placed without NOP padding) it
/// straddles three words, which are patched one by one.
#[inline]
fn add32(seg: &mut [u8], at: usize, delta: u32, csum: &mut Incremental) {
    let old = u32::from_be_bytes([seg[at], seg[at + 1], seg[at + 2], seg[at + 3]]);
    let new = old.wrapping_add(delta);
    if at.is_multiple_of(2) {
        seg[at..at + 4].copy_from_slice(&new.to_be_bytes());
        csum.dword(old, new);
        return;
    }
    // Words at at-1, at+1 and at+3. The field lies in the options, whose length is
    // a multiple of 4, so the last word's second byte exists.
    let word = |s: &[u8], w: usize| u16::from_be_bytes([s[w], s[w + 1]]);
    let before = [word(seg, at - 1), word(seg, at + 1), word(seg, at + 3)];
    seg[at..at + 4].copy_from_slice(&new.to_be_bytes());
    for (i, old_word) in before.into_iter().enumerate() {
        csum.word(old_word, word(seg, at - 1 + 2 * i));
    }
}

#[cfg(test)]
mod tests;
