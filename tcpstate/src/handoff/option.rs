//! The handoff option: the state of a connection the switch answered, carried in
//! every segment of the held request head the switch sends the backend host (the
//! first send and every resend), as an RFC 6994 experimental option (kind 253,
//! ExID "WS"). The client's own later segments go on without it.
//!
//! ```text
//!  0      1      2      3      4      5      6      7      8      9
//! +------+------+------+------+------+------+------+------+------+------+
//! | 253  |  20  | ExID 0x5753 | ver  |flags | client MSS  |c. ws |s. ws |
//! +------+------+------+------+------+------+------+------+------+------+
//! |        switch_tsval       |         client_isn        | backend id  |
//! +------+------+------+------+------+------+------+------+------+------+
//!  10                          14                          18
//!
//! flags: bit 0 SACK permitted, bit 1 timestamps, bit 2 window scaling
//! ```
//!
//! Why every head segment and not only the first: the agent may see any of them first
//! (reordering, a lost first segment), and a record that arrives with each one lets
//! it start from whichever it gets, with no state shared between switch and agent
//! beyond the packets themselves. 20 bytes of the 40 are spent; the timestamps
//! option still fits beside it (32 bytes with NOP NOP TS), a SACK block would not
//! (42), and these segments have none to carry: they speak for the client, which
//! has received nothing from the switch but its SYN-ACK.
//!
//! Why the record holds what it holds: the agent must replay the client's SYN into
//! the backend's kernel (client ISN, MSS, window scale, SACK-permitted, timestamps)
//! and must then translate between the sequence space, timestamp clock and window
//! scale the switch showed the client and the kernel's own (the switch's ISN is the
//! handoff segment's acknowledgment number minus one, so it needs no field).
use std::fmt;

use crate::wire::{SeqNumber, TcpOption, TcpOptionIter};

/// RFC 6994 experimental option kind (the first of the two shared kinds).
pub const KIND: u8 = 253;
/// Our experiment identifier: "WS" (webswitch). Not registered with IANA; RFC 6994
/// asks for registration before deployment beyond a controlled network.
pub const EXID: u16 = 0x5753;
/// The option's length, kind and length bytes included.
pub const LEN: usize = 20;
/// The layout version; a receiver refuses any other (a change of meaning takes a
/// new version).
pub const VERSION: u8 = 1;

/// Bits of the flags byte (offset 5).
mod flag {
    pub const SACK_PERMITTED: u8 = 0x01;
    pub const TIMESTAMPS: u8 = 0x02;
    pub const WINDOW_SCALE: u8 = 0x04;
    pub const ALL: u8 = SACK_PERMITTED | TIMESTAMPS | WINDOW_SCALE;
}

/// The largest shift RFC 7323 §2.3 allows; larger ones are read as 14, as the
/// client reads them.
const MAX_WINDOW_SCALE: u8 = 14;

/// What the agent needs to know about a connection the switch answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandoffRecord {
    /// The sequence number of the client's SYN.
    pub client_isn: SeqNumber,
    /// The MSS the client's connection uses (the one the switch's SYN cookie kept).
    pub mss: u16,
    /// The client's window shift when window scaling is in effect on its connection
    /// with the switch: the client offered it and the switch answered (the switch
    /// answers every offer the cookie keeps, see
    /// [`SynOptions::window_scale`](crate::syncookie::SynOptions::window_scale)).
    /// `None`: the client's windows are unscaled.
    pub client_ws: Option<u8>,
    /// The shift the switch announced to the client: the scale the client applies
    /// to every window it receives. 0 when scaling is not in effect.
    pub switch_ws: u8,
    pub sack_permitted: bool,
    /// Timestamps are in effect on the client's connection.
    pub timestamps: bool,
    /// The highest TSval the switch has sent the client (0 without timestamps): the
    /// kernel's timestamps continue from it, so that they never go backwards for the
    /// client's PAWS check (RFC 7323 §5).
    pub switch_tsval: u32,
    /// The backend the switch chose, for sanity checks and counters on the agent.
    pub backend_id: u16,
}

/// Why the bytes at hand are not a usable handoff option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionError {
    /// The length byte is not [`LEN`], is too small to hold an ExID, or runs past
    /// the bytes given.
    BadLength,
    /// Our ExID with a version this code does not know.
    BadVersion,
    /// A field no switch of this version writes: reserved flag bits, an MSS of 0,
    /// or a switch window shift without window scaling.
    BadField,
    /// The options area does not parse (a TCP option length that is missing, too
    /// small, runs past the end or is wrong for its kind), or holds two handoff
    /// options.
    Malformed,
    /// [`HandoffRecord::parse`] was given another option: another kind, or kind 253
    /// with another experiment's ExID. [`find`] skips those instead.
    NotHandoff,
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptionError::BadLength => "handoff option with a bad length",
            OptionError::BadVersion => "handoff option of an unknown version",
            OptionError::BadField => "handoff option with an impossible field",
            OptionError::Malformed => "malformed TCP options",
            OptionError::NotHandoff => "not a handoff option",
        })
    }
}

impl std::error::Error for OptionError {}

impl HandoffRecord {
    /// Writes the whole option (kind, length, ExID, version, fields) at the start of
    /// `out` and returns [`LEN`]; returns 0 and writes nothing when `out` is
    /// shorter. Fields are written as given (shifts above 14 included: the client
    /// reads those as 14, and so does [`parse`](Self::parse)).
    pub fn emit(&self, out: &mut [u8]) -> usize {
        let Some(out) = out.get_mut(..LEN) else {
            return 0;
        };
        let mut flags = 0;
        if self.sack_permitted {
            flags |= flag::SACK_PERMITTED;
        }
        if self.timestamps {
            flags |= flag::TIMESTAMPS;
        }
        if self.client_ws.is_some() {
            flags |= flag::WINDOW_SCALE;
        }
        out[0] = KIND;
        out[1] = LEN as u8;
        out[2..4].copy_from_slice(&EXID.to_be_bytes());
        out[4] = VERSION;
        out[5] = flags;
        out[6..8].copy_from_slice(&self.mss.to_be_bytes());
        out[8] = self.client_ws.unwrap_or(0);
        out[9] = self.switch_ws;
        out[10..14].copy_from_slice(&self.switch_tsval.to_be_bytes());
        out[14..18].copy_from_slice(&self.client_isn.0.to_be_bytes());
        out[18..20].copy_from_slice(&self.backend_id.to_be_bytes());
        LEN
    }

    /// Reads a handoff option from its kind byte on (`option_bytes_from_kind` may
    /// run on past the option; only its length byte's worth is read).
    ///
    /// Checks in this order, so that each error says the most useful thing: kind
    /// ([`NotHandoff`](OptionError::NotHandoff)), a length that can hold an ExID and
    /// fits ([`BadLength`](OptionError::BadLength)), the ExID (`NotHandoff`), the
    /// length is [`LEN`] (`BadLength`), the version
    /// ([`BadVersion`](OptionError::BadVersion)), then the fields
    /// ([`BadField`](OptionError::BadField)). Window shifts above 14 are read as 14
    /// (RFC 7323 §2.3, as the client and the kernel read them).
    pub fn parse(option_bytes_from_kind: &[u8]) -> Result<HandoffRecord, OptionError> {
        let bytes = option_bytes_from_kind;
        match bytes.first() {
            Some(&KIND) => {}
            Some(_) => return Err(OptionError::NotHandoff),
            None => return Err(OptionError::BadLength),
        }
        let len = usize::from(*bytes.get(1).ok_or(OptionError::BadLength)?);
        if len < 4 || len > bytes.len() {
            return Err(OptionError::BadLength);
        }
        parse_value(&bytes[2..len])
    }
}

/// Reads a kind-253 option from its value bytes (after kind and length), as
/// [`TcpOption::Unknown`] hands them out.
fn parse_value(data: &[u8]) -> Result<HandoffRecord, OptionError> {
    let be16 = |at: usize| u16::from_be_bytes([data[at], data[at + 1]]);
    let be32 = |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    if data.len() < 2 {
        return Err(OptionError::BadLength);
    }
    if be16(0) != EXID {
        return Err(OptionError::NotHandoff);
    }
    if data.len() != LEN - 2 {
        return Err(OptionError::BadLength);
    }
    // Offsets below are those of the layout minus the two bytes of kind and length.
    if data[2] != VERSION {
        return Err(OptionError::BadVersion);
    }
    let flags = data[3];
    let mss = be16(4);
    let scaling = flags & flag::WINDOW_SCALE != 0;
    let (client_ws, switch_ws) = (data[6], data[7]);
    if flags & !flag::ALL != 0 || mss == 0 || (!scaling && (client_ws != 0 || switch_ws != 0)) {
        return Err(OptionError::BadField);
    }
    Ok(HandoffRecord {
        client_isn: SeqNumber(be32(12)),
        mss,
        client_ws: scaling.then_some(client_ws.min(MAX_WINDOW_SCALE)),
        switch_ws: switch_ws.min(MAX_WINDOW_SCALE),
        sack_permitted: flags & flag::SACK_PERMITTED != 0,
        timestamps: flags & flag::TIMESTAMPS != 0,
        switch_tsval: be32(8),
        backend_id: be16(16),
    })
}

/// Looks for the handoff option in a TCP options area (the bytes of
/// [`TcpPacket::options`](crate::wire::TcpPacket::options)).
///
/// `Ok(None)` when there is none; options of other kinds, kind-253 options of
/// other experiments and every kind-254 option are skipped (they belong to
/// someone else, who may well be on the same path). `Err` when the area does not
/// parse ([`Malformed`](OptionError::Malformed)), when our option is there but
/// unusable (the errors of [`HandoffRecord::parse`]), or when it is there twice
/// (`Malformed`: which one would be meant?).
pub fn find(tcp_options: &[u8]) -> Result<Option<HandoffRecord>, OptionError> {
    let mut found = None;
    for option in TcpOptionIter::new(tcp_options) {
        let Ok(option) = option else {
            return Err(OptionError::Malformed);
        };
        let TcpOption::Unknown { kind: KIND, data } = option else {
            continue;
        };
        // Too short for an ExID, or another one: another experiment's business.
        if data.get(..2) != Some(&EXID.to_be_bytes()[..]) {
            continue;
        }
        match parse_value(data) {
            Err(e) => return Err(e),
            Ok(_) if found.is_some() => return Err(OptionError::Malformed),
            Ok(record) => found = Some(record),
        }
    }
    Ok(found)
}

/// Builds the options area of a handoff data segment into `out`: NOP NOP TS (when
/// `ts` is given as (TSval, TSecr)) then the record, padded with NOPs to a multiple
/// of 4 bytes. Returns the area's length (20 or 32: both already multiples of 4,
/// and each option starts 4-aligned).
///
/// Timestamps come first, laid out as Linux lays them out, so the receiver's
/// parser finds them where it usually does; the handoff option after them is
/// skipped by any TCP that does not know it (unknown kinds are ignored, RFC 9293
/// §3.1).
pub fn options_with_handoff(
    ts: Option<(u32, u32)>,
    rec: &HandoffRecord,
    out: &mut [u8; 40],
) -> usize {
    let mut at = 0;
    if let Some((tsval, tsecr)) = ts {
        at += TcpOption::NoOperation.emit(&mut out[at..]);
        at += TcpOption::NoOperation.emit(&mut out[at..]);
        at += TcpOption::Timestamps { tsval, tsecr }.emit(&mut out[at..]);
    }
    at += rec.emit(&mut out[at..]);
    while !at.is_multiple_of(4) {
        at += TcpOption::NoOperation.emit(&mut out[at..]);
    }
    at
}
