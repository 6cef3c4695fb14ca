//! The datagram instances of a cluster send one another every `cluster.heartbeat_ms`
//! (UDP, from the sender's own address on the cluster port to each member's, port
//! `cluster.port`). Fixed binary layout, 26 bytes, network byte order:
//!
//! ```text
//!  0      4        5      6       7          8       12      16           20            26
//!  | WSCB | version | state | index | capacity | seq   | live  | backend ip | backend MAC |
//! ```
//!
//! - `state`: [`MemberState`]; `draining` while the sender cannot serve or an operator
//!   withdrew it (it keeps its connections but owns no new one); `leaving` at a clean
//!   stop, so the others drop the sender at once instead of after `dead_after_ms`.
//! - `index`: the sender's position in `cluster.members` (every instance lists the same
//!   members in the same order; the receiver also checks the source address).
//! - `capacity`: the sender's workload factor (paper 001), its available capacity in
//!   [`super::load::LEVELS`] steps, 1 to 16; 0 when it does not report one (`cluster.balance`
//!   `equal`, or a version that predates the field: the byte was reserved, always 0).
//! - `seq`: counts the sender's beats; `live`: the members the sender sees live (bit per
//!   index), so each instance can show whether the others agree with its view.
//! - `backend ip`, `backend MAC`: the sender's address and MAC on its backend-facing
//!   port (all zero: none), the address its designated survivor takes over if it dies
//!   (`cluster::takeover`). Known from the beats, the survivor can take it over even
//!   when no record of the sender's has reached it (the store design: records are read
//!   from the store on a miss, and a gone member's backends may retransmit to its address
//!   while no client segment comes to cause a lookup).
//!
//! Version 1 beats (16 bytes, without the backend fields) are still read.
use std::net::Ipv4Addr;

use crate::wire::MacAddr;

/// First four bytes of every beat.
pub const MAGIC: [u8; 4] = *b"WSCB";
/// The layout version this module writes (it reads 1 too).
pub const VERSION: u8 = 2;
/// Length of a beat.
pub const LEN: usize = 26;
/// Length of a version 1 beat (no backend fields).
pub const LEN_V1: usize = 16;
/// The UDP port beats go to unless configured otherwise.
pub const DEFAULT_PORT: u16 = 7947;

/// What a member says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Serving: may own connections.
    Alive,
    /// Keeps the connections it has, owns no new one.
    Draining,
    /// Stopping cleanly: take it out of the table now.
    Leaving,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    pub state: MemberState,
    pub index: u8,
    /// Available capacity, 1..=[`super::load::LEVELS`]; 0: not reported.
    pub capacity: u8,
    pub seq: u32,
    pub live: u32,
    /// The sender's address and MAC on its backend-facing port, if it has one.
    pub backend: Option<(Ipv4Addr, MacAddr)>,
}

/// Why a datagram is not a beat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeatError {
    Length,
    Magic,
    Version,
    State,
}

impl Beat {
    pub fn decode(b: &[u8]) -> Result<Beat, BeatError> {
        if b.len() < LEN_V1 {
            return Err(BeatError::Length);
        }
        if b[..4] != MAGIC {
            return Err(BeatError::Magic);
        }
        let want = match b[4] {
            1 => LEN_V1,
            VERSION => LEN,
            _ => return Err(BeatError::Version),
        };
        if b.len() != want {
            return Err(BeatError::Length);
        }
        let state = match b[5] {
            0 => MemberState::Alive,
            1 => MemberState::Leaving,
            2 => MemberState::Draining,
            _ => return Err(BeatError::State),
        };
        let word = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        Ok(Beat {
            state,
            index: b[6],
            capacity: b[7],
            seq: word(8),
            live: word(12),
            backend: (b.len() == LEN)
                .then(|| {
                    let ip = Ipv4Addr::from(word(16));
                    let mac = MacAddr([b[20], b[21], b[22], b[23], b[24], b[25]]);
                    (ip, mac)
                })
                .filter(|(ip, _)| !ip.is_unspecified()),
        })
    }

    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = match self.state {
            MemberState::Alive => 0,
            MemberState::Leaving => 1,
            MemberState::Draining => 2,
        };
        b[6] = self.index;
        b[7] = self.capacity;
        b[8..12].copy_from_slice(&self.seq.to_be_bytes());
        b[12..16].copy_from_slice(&self.live.to_be_bytes());
        if let Some((ip, mac)) = self.backend {
            b[16..20].copy_from_slice(&ip.octets());
            b[20..26].copy_from_slice(&mac.0);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_round_trip_and_bad_ones_are_named() {
        let beat = Beat {
            state: MemberState::Leaving,
            index: 3,
            capacity: 9,
            seq: 0xdead_beef,
            live: 0b1011,
            backend: Some((Ipv4Addr::new(10, 1, 2, 3), MacAddr([2, 0, 0, 0, 0, 9]))),
        };
        let b = beat.encode();
        assert_eq!(Beat::decode(&b), Ok(beat));
        let none = Beat {
            backend: None,
            ..beat
        };
        assert_eq!(Beat::decode(&none.encode()), Ok(none));
        // A version 1 beat: the first 16 bytes, no backend fields.
        let mut v1 = [0u8; LEN_V1];
        v1.copy_from_slice(&b[..LEN_V1]);
        v1[4] = 1;
        assert_eq!(Beat::decode(&v1), Ok(none));
        assert_eq!(Beat::decode(&b[..15]), Err(BeatError::Length));
        assert_eq!(Beat::decode(&b[..20]), Err(BeatError::Length));
        let mut long_v1 = b;
        long_v1[4] = 1;
        assert_eq!(Beat::decode(&long_v1), Err(BeatError::Length));
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(Beat::decode(&bad), Err(BeatError::Magic));
        let mut bad = b;
        bad[4] = 3;
        assert_eq!(Beat::decode(&bad), Err(BeatError::Version));
        let mut bad = b;
        bad[5] = 7;
        assert_eq!(Beat::decode(&bad), Err(BeatError::State));
    }
}
