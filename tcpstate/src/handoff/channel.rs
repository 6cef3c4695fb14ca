//! The control-connection transport (paper 004, TCPHA's handoff protocol), the other
//! way to move a connection to an agent (`handoff.transport: "control"`): the switch
//! sends the held head to the agent as **handoff requests** on a per-agent channel,
//! UDP from the switch's backend-facing address and `handoff.agent_port` to the agent
//! host's address and its `control_port`, and forwards the client's later segments only
//! once the agent sent its **handoff ack** back on the same channel.
//!
//! A request carries, as TCPHA's does, a magic number, the connection (its tuple), and
//! the head segment the inline transport would have sent on the client's tuple: its
//! sequence and acknowledgment numbers, window, flags, options (timestamps and the
//! handoff option, [`super::option`]) and bytes. The agent rebuilds that segment and
//! takes it as the inline transport's, so both transports share every later step. A
//! head longer than one datagram goes as several requests, one per piece.
//!
//! The agent acks once its kernel has acknowledged the whole head (`head_end`): the
//! replayed SYN, the ACK and the request are in (paper 003's order), so nothing of what
//! the switch acknowledged to the client can be lost any more. Until then the switch
//! sends the requests again on the handoff's backoff timer (UDP carries no promise); an
//! agent that has acked answers a repeated request with the ack again.
//!
//! ```text
//!  request (switch -> agent)                 ack (agent -> switch)
//!  0        4    5    6    7    8            0        4    5    6    7    8
//! +--------+----+----+----+----+            +--------+----+----+----+----+
//! | magic  |ver |type|flag| 0  |            | magic  |ver |type| 0  | 0  |
//! +--------+----+----+----+----+            +--------+----+----+----+----+
//! 8  client ip, client port, VIP port, VIP  8  client ip, client port, VIP port, VIP
//! 20 seq    24 ack    28 window  30 tcp flags  20 acked: the kernel has the client's
//! 31 options length   32 head_end                 stream up to here (>= head_end)
//! 36 options, then the head's bytes to the end
//! ```
//!
//! Every number is big-endian. `flag` bit 0 (on-link): the switch is on the agent's LAN
//! (no tunnel), so the agent may address its termination notices to the request's
//! source MAC.
use std::net::Ipv4Addr;

use crate::flow::FlowKey;
use crate::wire::SeqNumber;

/// TCPHA's handoff packet identifier.
pub const MAGIC: u32 = 0x0129_68b9;
pub const VERSION: u8 = 1;
/// A request's fixed part; options and bytes follow.
pub const REQUEST_HEADER_LEN: usize = 36;
pub const ACK_LEN: usize = 24;
/// The largest datagram payload on a 1,500-byte MTU (IPv4 and UDP headers off).
pub const MAX_DATAGRAM: usize = 1500 - 20 - 8;
/// Head bytes per request when the options take their most (40 bytes).
pub const MAX_PIECE: usize = MAX_DATAGRAM - REQUEST_HEADER_LEN - 40;

const TYPE_REQUEST: u8 = 1;
const TYPE_ACK: u8 = 2;
const FLAG_ON_LINK: u8 = 0x01;

/// Why a datagram is not a handoff message this side takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
    /// Too short for its type, or an options length past the end or not a multiple of 4.
    Truncated,
    /// Not the magic number, or a version or type this build does not know.
    NotHandoff,
}

/// The kind of a datagram on the channel (a cheap look at its first bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Ack,
}

/// Which handoff message `buf` is, if any.
pub fn kind(buf: &[u8]) -> Option<Kind> {
    if buf.len() < 8 || buf[..4] != MAGIC.to_be_bytes() || buf[4] != VERSION {
        return None;
    }
    match buf[5] {
        TYPE_REQUEST if buf.len() >= REQUEST_HEADER_LEN => Some(Kind::Request),
        TYPE_ACK if buf.len() >= ACK_LEN => Some(Kind::Ack),
        _ => None,
    }
}

/// The connection a message is about: the client's tuple toward the VIP, as the switch's
/// flow table keys it (remote: the client, local: the VIP).
fn emit_key(out: &mut [u8], key: &FlowKey) {
    out[0..4].copy_from_slice(&key.remote_ip.octets());
    out[4..6].copy_from_slice(&key.remote_port.to_be_bytes());
    out[6..8].copy_from_slice(&key.local_port.to_be_bytes());
    out[8..12].copy_from_slice(&key.local_ip.octets());
}

fn parse_key(b: &[u8]) -> FlowKey {
    FlowKey {
        remote_ip: Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        remote_port: u16::from_be_bytes([b[4], b[5]]),
        local_port: u16::from_be_bytes([b[6], b[7]]),
        local_ip: Ipv4Addr::new(b[8], b[9], b[10], b[11]),
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Checks the magic, version and type, then the length the type needs.
fn typed(buf: &[u8], ty: u8, len: usize) -> Result<(), ChannelError> {
    if buf.len() < 8 || buf[..4] != MAGIC.to_be_bytes() || buf[4] != VERSION || buf[5] != ty {
        return Err(ChannelError::NotHandoff);
    }
    if buf.len() < len {
        return Err(ChannelError::Truncated);
    }
    Ok(())
}

fn header(out: &mut [u8], ty: u8, flags: u8) {
    out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    out[4] = VERSION;
    out[5] = ty;
    out[6] = flags;
    out[7] = 0;
}

/// A handoff request: one head segment of the client's connection, as the inline
/// transport would have sent it on the client's tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRepr<'a> {
    pub key: FlowKey,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    pub window: u16,
    pub tcp_flags: u8,
    /// The client sequence number just past the whole head (its FIN counted): the agent
    /// acks once its kernel acknowledged this far.
    pub head_end: SeqNumber,
    /// The switch reaches the agent on its LAN (no tunnel, no router between).
    pub on_link: bool,
    /// TCP options, a multiple of 4 bytes, at most 40.
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> RequestRepr<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Self, ChannelError> {
        typed(buf, TYPE_REQUEST, REQUEST_HEADER_LEN)?;
        let opt_len = usize::from(buf[31]);
        if opt_len > 40 || !opt_len.is_multiple_of(4) || buf.len() < REQUEST_HEADER_LEN + opt_len {
            return Err(ChannelError::Truncated);
        }
        Ok(RequestRepr {
            key: parse_key(&buf[8..20]),
            seq: SeqNumber(be32(&buf[20..24])),
            ack: SeqNumber(be32(&buf[24..28])),
            window: u16::from_be_bytes([buf[28], buf[29]]),
            tcp_flags: buf[30],
            head_end: SeqNumber(be32(&buf[32..36])),
            on_link: buf[6] & FLAG_ON_LINK != 0,
            options: &buf[REQUEST_HEADER_LEN..REQUEST_HEADER_LEN + opt_len],
            payload: &buf[REQUEST_HEADER_LEN + opt_len..],
        })
    }

    pub fn buffer_len(&self) -> usize {
        REQUEST_HEADER_LEN + self.options.len() + self.payload.len()
    }

    /// Writes the request into `out[..buffer_len()]`; the caller sized it.
    pub fn emit(&self, out: &mut [u8]) {
        debug_assert!(self.options.len() <= 40 && self.options.len().is_multiple_of(4));
        header(
            out,
            TYPE_REQUEST,
            if self.on_link { FLAG_ON_LINK } else { 0 },
        );
        emit_key(&mut out[8..20], &self.key);
        out[20..24].copy_from_slice(&self.seq.0.to_be_bytes());
        out[24..28].copy_from_slice(&self.ack.0.to_be_bytes());
        out[28..30].copy_from_slice(&self.window.to_be_bytes());
        out[30] = self.tcp_flags;
        out[31] = self.options.len() as u8;
        out[32..36].copy_from_slice(&self.head_end.0.to_be_bytes());
        let o = REQUEST_HEADER_LEN + self.options.len();
        out[REQUEST_HEADER_LEN..o].copy_from_slice(self.options);
        out[o..o + self.payload.len()].copy_from_slice(self.payload);
    }
}

/// A handoff ack: the agent's kernel holds the client's stream up to `acked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRepr {
    pub key: FlowKey,
    pub acked: SeqNumber,
}

impl AckRepr {
    pub fn parse(buf: &[u8]) -> Result<Self, ChannelError> {
        typed(buf, TYPE_ACK, ACK_LEN)?;
        Ok(AckRepr {
            key: parse_key(&buf[8..20]),
            acked: SeqNumber(be32(&buf[20..24])),
        })
    }

    /// Writes the ack into `out[..ACK_LEN]`.
    pub fn emit(&self, out: &mut [u8]) {
        header(out, TYPE_ACK, 0);
        emit_key(&mut out[8..20], &self.key);
        out[20..24].copy_from_slice(&self.acked.0.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FlowKey {
        FlowKey {
            remote_ip: Ipv4Addr::new(10, 0, 0, 2),
            remote_port: 40_001,
            local_ip: Ipv4Addr::new(10, 0, 0, 100),
            local_port: 80,
        }
    }

    #[test]
    fn request_round_trip() {
        let options = [1u8, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
        let r = RequestRepr {
            key: key(),
            seq: SeqNumber(1001),
            ack: SeqNumber(0xffff_fff0),
            window: 502,
            tcp_flags: 0x18,
            head_end: SeqNumber(1001 + 77),
            on_link: true,
            options: &options,
            payload: b"GET / HTTP/1.1\r\n\r\n",
        };
        let mut buf = [0u8; 128];
        let n = r.buffer_len();
        r.emit(&mut buf[..n]);
        assert_eq!(kind(&buf[..n]), Some(Kind::Request));
        assert_eq!(RequestRepr::parse(&buf[..n]), Ok(r));
        let off = RequestRepr {
            on_link: false,
            ..r
        };
        off.emit(&mut buf[..n]);
        assert!(!RequestRepr::parse(&buf[..n]).unwrap().on_link);
        // Cut inside the options: truncated, not misread.
        assert_eq!(
            RequestRepr::parse(&buf[..REQUEST_HEADER_LEN + 4]),
            Err(ChannelError::Truncated)
        );
        assert_eq!(RequestRepr::parse(&buf[..20]), Err(ChannelError::Truncated));
        // Options length not a multiple of 4.
        buf[31] = 6;
        assert_eq!(RequestRepr::parse(&buf[..n]), Err(ChannelError::Truncated));
    }

    #[test]
    fn ack_round_trip_and_strangers() {
        let a = AckRepr {
            key: key(),
            acked: SeqNumber(5),
        };
        let mut buf = [0u8; ACK_LEN];
        a.emit(&mut buf);
        assert_eq!(kind(&buf), Some(Kind::Ack));
        assert_eq!(AckRepr::parse(&buf), Ok(a));
        assert_eq!(AckRepr::parse(&buf[..20]), Err(ChannelError::Truncated));
        // A request is not an ack, nor an ack a request.
        assert_eq!(RequestRepr::parse(&buf), Err(ChannelError::NotHandoff));
        let mut other = buf;
        other[4] = 2;
        assert_eq!(kind(&other), None);
        assert_eq!(AckRepr::parse(&other), Err(ChannelError::NotHandoff));
        other = buf;
        other[0] = 0;
        assert_eq!(AckRepr::parse(&other), Err(ChannelError::NotHandoff));
        assert_eq!(kind(b"beat"), None);
    }

    #[test]
    fn the_largest_piece_fits_a_datagram() {
        let options = [0u8; 40];
        let payload = [b'x'; MAX_PIECE];
        let r = RequestRepr {
            key: key(),
            seq: SeqNumber(1),
            ack: SeqNumber(1),
            window: 0,
            tcp_flags: 0x10,
            head_end: SeqNumber(1 + MAX_PIECE as u32),
            on_link: true,
            options: &options,
            payload: &payload,
        };
        assert_eq!(r.buffer_len(), MAX_DATAGRAM);
    }
}
