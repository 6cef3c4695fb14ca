//! Handoff's control messages, for moving a connection from one agent to another when a
//! later request on it belongs to another backend (issue 16 point 4, DWSR's switch-back).
//!
//! They ride on TCP segments of the connection's own tuple, marked by an RFC 6994
//! experimental option (kind 253, ExID "WT", 8 bytes) so nothing else needs a channel:
//!
//! ```text
//!  switch -> old agent   Release: a bare ACK, client -> VIP, seq = the next request's first
//!                        byte, ack = what the client has of the kernel's bytes; the option
//!                        says how many requests the kernel was given in this round
//!  old agent -> switch   Released (the kernel had answered every one of those requests
//!                        with a whole response, had sent and the client had acknowledged
//!                        everything, and the kernel had every client byte before the
//!                        request: its connection is parked, the agent goes silent),
//!                        or Busy (a response is still under way: ask again), VIP -> client,
//!                        to the switch's MAC
//!  agent -> switch       Closed (paper 003's termination notice): the connection ended at
//!                        the backend (both FINs acknowledged, or the kernel reset it), so
//!                        the switch can free its entry now instead of at its FIN timeout
//! ```
//!
//! ```text
//!  0      1      2      3      4      5      6      7
//! +------+------+------+------+------+------+------+------+
//! | 253  |   8  | ExID 0x5754 | type | requests    |   0  |
//! +------+------+------+------+------+------+------+------+
//! ```
//!
//! `requests` (Release only, big-endian): the requests the kernel was given since the
//! connection came to it, the one it came with included. An idle kernel is not enough
//! to let go: a server writing its response in pieces (a head, then a body; a chunk,
//! a pause, the next chunk) is idle, every byte acknowledged, between them. The agent
//! frames the kernel's responses and lets go only after that many complete ones. 0 says
//! the count cannot be used (a HEAD among the requests, whose response's length headers
//! describe no body, or more than 65,535): the agent then falls back on the kernel having
//! been silent a while.
use crate::wire::{TcpOption, TcpOptionIter};

pub const KIND: u8 = 253;
pub const EXID: u16 = 0x5754;
pub const LEN: usize = 8;

/// One control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    /// Switch to agent: let the connection go once the kernel answered `requests`
    /// requests in full (0: unknown) and is idle.
    Release { requests: u16 },
    /// Agent to switch: the connection is let go (its kernel side reset quietly).
    Released,
    /// Agent to switch: not idle yet; ask again.
    Busy,
    /// Agent to switch: the connection ended at the backend.
    Closed,
}

impl Control {
    fn code(self) -> u8 {
        match self {
            Control::Release { .. } => 1,
            Control::Released => 2,
            Control::Busy => 3,
            Control::Closed => 4,
        }
    }

    /// Writes the option (exactly [`LEN`] bytes); 0 if `out` is short.
    pub fn emit(self, out: &mut [u8]) -> usize {
        let Some(o) = out.get_mut(..LEN) else {
            return 0;
        };
        let requests = match self {
            Control::Release { requests } => requests.to_be_bytes(),
            _ => [0, 0],
        };
        o.copy_from_slice(&[
            KIND,
            LEN as u8,
            (EXID >> 8) as u8,
            EXID as u8,
            self.code(),
            requests[0],
            requests[1],
            0,
        ]);
        LEN
    }

    /// The control message in a TCP options area, if any (malformed options: none).
    pub fn find(options: &[u8]) -> Option<Control> {
        TcpOptionIter::new(options).find_map(|o| match o {
            Ok(TcpOption::Unknown { kind: KIND, data })
                if data.len() == LEN - 2 && data[..2] == EXID.to_be_bytes() =>
            {
                match data[2] {
                    1 => Some(Control::Release {
                        requests: u16::from_be_bytes([data[3], data[4]]),
                    }),
                    2 => Some(Control::Released),
                    3 => Some(Control::Busy),
                    4 => Some(Control::Closed),
                    _ => None,
                }
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_beside_other_options() {
        for c in [
            Control::Release { requests: 0 },
            Control::Release { requests: 0x1234 },
            Control::Released,
            Control::Busy,
            Control::Closed,
        ] {
            let mut opts = [
                1u8, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0,
            ];
            assert_eq!(c.emit(&mut opts[12..]), LEN);
            assert_eq!(Control::find(&opts), Some(c));
        }
        // The handoff record's ExID is not a control message.
        let mut other = [0u8; 8];
        Control::Release { requests: 1 }.emit(&mut other);
        other[3] = 0x53;
        assert_eq!(Control::find(&other), None);
        assert_eq!(Control::find(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]), None);
        assert_eq!(Control::Busy.emit(&mut [0u8; 7]), 0);
    }
}
