//! Typed, zero-copy views of the frames the switch handles: Ethernet II, ARP for
//! IPv4 over Ethernet, IPv4, ICMPv4, TCP (with its options) and UDP.
//!
//! Every protocol follows one pattern, so callers can move between them without
//! looking anything up:
//!
//! * `Xxx<T: AsRef<[u8]>>` wraps a buffer without copying it. `new_unchecked` trusts
//!   the buffer (for frames the switch has just built or already validated);
//!   `new_checked` first runs `check_len`, which guarantees that no getter can index
//!   out of bounds, length fields included. Getters read straight from the bytes;
//!   setters exist only when the buffer is also `AsMut<[u8]>`, so a frame borrowed
//!   for reading can never be written by accident.
//! * `XxxRepr` is a plain-value summary for when a packet is built from scratch or
//!   must outlive its buffer: `parse` from a view, `buffer_len` to size a buffer and
//!   `emit` into a view over it.
//!
//! Nothing here allocates, logs or panics on received bytes: a malformed frame is an
//! `Err(WireError)` that the dataplane counts and drops. Setters and `emit` may panic
//! when handed a buffer that is too small, which is a bug in the caller, not hostile
//! input.

mod arp;
pub mod checksum;
mod error;
mod ethernet;
mod icmpv4;
mod ipv4;
mod seq;
mod tcp;
pub mod tunnel;
mod udp;
mod walk;

#[cfg(test)]
mod fixtures;

pub use self::arp::{arp_op, ArpPacket, ArpRepr};
pub use self::error::{Result, WireError};
pub use self::ethernet::{ethertype, EthernetFrame, EthernetRepr, MacAddr};
pub use self::icmpv4::{icmp_type, Icmpv4Packet};
pub use self::ipv4::{ip_proto, Ipv4Packet, Ipv4Repr};
pub use self::seq::SeqNumber;
pub use self::tcp::{tcp_flags, TcpOption, TcpOptionIter, TcpPacket, TcpRepr};
pub use self::udp::UdpPacket;
pub use self::walk::parse_all;

/// Reads a big-endian `u16` at `at`. Panics if out of bounds: callers only pass
/// offsets that `check_len` has vouched for.
/// (Always inlined, with one bounds check per field: they are read on every packet.)
#[inline(always)]
fn be16(data: &[u8], at: usize) -> u16 {
    let b: [u8; 2] = data[at..at + 2].try_into().expect("two bytes");
    u16::from_be_bytes(b)
}

/// Reads a big-endian `u32` at `at` (same contract as [`be16`]).
#[inline(always)]
fn be32(data: &[u8], at: usize) -> u32 {
    let b: [u8; 4] = data[at..at + 4].try_into().expect("four bytes");
    u32::from_be_bytes(b)
}

#[inline]
fn put16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[inline]
fn put32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

#[inline]
fn ipv4_at(data: &[u8], at: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(be32(data, at))
}
