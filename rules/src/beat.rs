//! Agent beats: the datagrams a handoff agent sends the switch (issue 16, paper 004's
//! register request and the heartbeats that carry its load, for `weighted_random`).
//!
//! One small JSON object per UDP datagram, from the agent's host address to one of the
//! switch's own addresses at `handoff.agent_port` (7946 unless configured):
//!
//! ```json
//! {"v":1,"type":"heartbeat","name":"be1","capacity":1000,"flows":12,"load":0.012,"busy":0.0031,"seq":42}
//! ```
//!
//! - `type`: `register` when the agent starts, `heartbeat` every `switch.heartbeat_ms`,
//!   `leave` on a clean stop. Every message carries every field, so a switch started
//!   after the agent learns everything from the next heartbeat.
//! - `name`: the agent's own name for itself (optional; letters, digits, `.`, `_`, `-`,
//!   at most [`MAX_NAME_LEN`] bytes). The switch knows the agent by the datagram's source
//!   address, not by this.
//! - `capacity`: connections the host takes; `flows`: the agent's live handed-off flows;
//!   `load`: `flows / capacity`, clamped to 0..=1 ([`load_of`]); `busy`: the share of
//!   the agent's poll-loop cycles that moved packets since the previous beat
//!   ([`busy_of`]); `seq`: counts the agent's beats from 0 (its register).
//!
//! Why JSON, and why this crate: the message is read at most a few times a second per
//! agent, so a text format costs nothing that matters, shows up readable in a packet
//! capture, and grows by adding fields (unknown fields are ignored; `v` changes only
//! when a field changes meaning). `rules` already has serde_json, the agent's config
//! and the scheduler the load feeds (`Pools::set_load`); `tcpstate` has no serde and
//! would need a second, hand-written JSON parser. Decoding borrows from the datagram
//! and allocates nothing: a name is plain ASCII and never escaped, and an escaped one
//! (which cannot be borrowed) is refused with the other bad names.
//!
//! Bounded: a datagram over [`MAX_BEAT_LEN`] bytes is refused unread, and [`Beat::encode`]
//! never produces one (the longest valid beat is about 200 bytes).
use std::fmt;

use serde::{Deserialize, Serialize};

/// The layout version this module writes and reads.
pub const VERSION: u32 = 1;
/// Longest datagram accepted (and written).
pub const MAX_BEAT_LEN: usize = 512;
/// Longest agent name.
pub const MAX_NAME_LEN: usize = 32;
/// The UDP port beats go to unless configured otherwise (`handoff.agent_port` on the
/// switch, `switch.port` on the agent).
pub const DEFAULT_PORT: u16 = 7946;
/// Largest `capacity` an agent may announce.
pub const MAX_CAPACITY: u32 = 10_000_000;

/// What a beat says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BeatKind {
    /// The agent started.
    Register,
    /// The agent is alive; its figures now.
    Heartbeat,
    /// The agent stops cleanly: take no more handoffs to it.
    Leave,
}

impl BeatKind {
    pub const fn name(self) -> &'static str {
        match self {
            BeatKind::Register => "register",
            BeatKind::Heartbeat => "heartbeat",
            BeatKind::Leave => "leave",
        }
    }
}

/// One beat, its name borrowed from the datagram (or from the agent's config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beat<'a> {
    pub kind: BeatKind,
    pub name: Option<&'a str>,
    pub capacity: u32,
    pub flows: u64,
    /// 0.0..=1.0.
    pub load: f64,
    /// 0.0..=1.0.
    pub busy: f64,
    pub seq: u64,
}

/// The wire object: [`Beat`] with its version.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    v: u32,
    #[serde(rename = "type")]
    kind: BeatKind,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    name: Option<&'a str>,
    capacity: u32,
    flows: u64,
    load: f64,
    busy: f64,
    seq: u64,
}

/// Why a datagram is not a beat (the switch counts them all as `bad_agent_beat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeatError {
    /// Over [`MAX_BEAT_LEN`] bytes.
    TooLong(usize),
    /// Not the JSON object described above (serde's message).
    Malformed(String),
    /// Another layout version.
    Version(u32),
    /// A field out of its range.
    Field(&'static str),
}

impl fmt::Display for BeatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BeatError::TooLong(n) => write!(f, "{n} bytes, more than {MAX_BEAT_LEN}"),
            BeatError::Malformed(e) => write!(f, "not a beat: {e}"),
            BeatError::Version(v) => write!(f, "version {v}, this switch reads {VERSION}"),
            BeatError::Field(name) => write!(f, "field `{name}` out of range"),
        }
    }
}

impl std::error::Error for BeatError {}

/// Whether `name` may name an agent: 1 to [`MAX_NAME_LEN`] letters, digits, `.`, `_`, `-`.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A fraction of 0..=1 rounded to 4 decimals (what a beat needs; keeps it short).
fn fraction(x: f64) -> f64 {
    if x.is_nan() {
        return 0.0;
    }
    (x.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0
}

/// `flows / capacity`, clamped to 0..=1 (a host over its capacity reports itself full).
pub fn load_of(flows: u64, capacity: u32) -> f64 {
    fraction(flows as f64 / f64::from(capacity.max(1)))
}

/// The share of cycles spent busy, from the busy and idle cycles since the last beat
/// (0 when no cycle passed).
pub fn busy_of(busy_cycles: u64, idle_cycles: u64) -> f64 {
    let (busy, all) = (busy_cycles as f64, busy_cycles as f64 + idle_cycles as f64);
    if all == 0.0 {
        0.0
    } else {
        fraction(busy / all)
    }
}

impl<'a> Beat<'a> {
    /// Checks what types cannot (see the module doc).
    fn check(&self) -> Result<(), BeatError> {
        if self.name.is_some_and(|n| !valid_name(n)) {
            return Err(BeatError::Field("name"));
        }
        if !(1..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(BeatError::Field("capacity"));
        }
        if !(0.0..=1.0).contains(&self.load) {
            return Err(BeatError::Field("load"));
        }
        if !(0.0..=1.0).contains(&self.busy) {
            return Err(BeatError::Field("busy"));
        }
        Ok(())
    }

    /// Reads a beat from a datagram's payload.
    pub fn decode(bytes: &'a [u8]) -> Result<Beat<'a>, BeatError> {
        if bytes.len() > MAX_BEAT_LEN {
            return Err(BeatError::TooLong(bytes.len()));
        }
        let w: Wire<'a> =
            serde_json::from_slice(bytes).map_err(|e| BeatError::Malformed(e.to_string()))?;
        if w.v != VERSION {
            return Err(BeatError::Version(w.v));
        }
        let beat = Beat {
            kind: w.kind,
            name: w.name,
            capacity: w.capacity,
            flows: w.flows,
            load: w.load,
            busy: w.busy,
            seq: w.seq,
        };
        beat.check()?;
        Ok(beat)
    }

    /// Writes the beat into `out` (cleared first): a datagram's payload.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), BeatError> {
        self.check()?;
        out.clear();
        let w = Wire {
            v: VERSION,
            kind: self.kind,
            name: self.name,
            capacity: self.capacity,
            flows: self.flows,
            load: self.load,
            busy: self.busy,
            seq: self.seq,
        };
        serde_json::to_writer(&mut *out, &w).map_err(|e| BeatError::Malformed(e.to_string()))?;
        if out.len() > MAX_BEAT_LEN {
            return Err(BeatError::TooLong(out.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(kind: BeatKind) -> Beat<'static> {
        Beat {
            kind,
            name: Some("be-1.a_b"),
            capacity: 1000,
            flows: 12,
            load: load_of(12, 1000),
            busy: busy_of(1, 3),
            seq: 42,
        }
    }

    #[test]
    fn round_trips_every_kind() {
        let mut out = Vec::new();
        for kind in [BeatKind::Register, BeatKind::Heartbeat, BeatKind::Leave] {
            let b = beat(kind);
            b.encode(&mut out).unwrap();
            assert!(out.len() <= MAX_BEAT_LEN);
            assert_eq!(Beat::decode(&out).unwrap(), b);
        }
        let anonymous = Beat {
            name: None,
            ..beat(BeatKind::Heartbeat)
        };
        anonymous.encode(&mut out).unwrap();
        assert!(!String::from_utf8_lossy(&out).contains("name"));
        assert_eq!(Beat::decode(&out).unwrap(), anonymous);
    }

    #[test]
    fn the_documented_wire_form() {
        let text = br#"{"v":1,"type":"heartbeat","name":"be1","capacity":1000,"flows":12,"load":0.012,"busy":0.0031,"seq":42}"#;
        let b = Beat::decode(text).unwrap();
        assert_eq!(b.kind, BeatKind::Heartbeat);
        assert_eq!(
            (b.name, b.capacity, b.flows, b.seq),
            (Some("be1"), 1000, 12, 42)
        );
        assert_eq!((b.load, b.busy), (0.012, 0.0031));
        let mut out = Vec::new();
        b.encode(&mut out).unwrap();
        assert_eq!(out, text.to_vec());
        // Unknown fields (a newer agent's) are ignored; key order does not matter.
        let newer = br#"{"seq":1,"busy":0,"load":0,"flows":0,"capacity":5,"type":"leave","v":1,"extra":[1,2]}"#;
        assert_eq!(Beat::decode(newer).unwrap().kind, BeatKind::Leave);
    }

    #[test]
    fn the_longest_beat_fits() {
        let name = "n".repeat(MAX_NAME_LEN);
        let b = Beat {
            kind: BeatKind::Heartbeat,
            name: Some(&name),
            capacity: MAX_CAPACITY,
            flows: u64::MAX,
            load: 0.3333,
            busy: 0.6667,
            seq: u64::MAX,
        };
        let mut out = Vec::new();
        b.encode(&mut out).unwrap();
        assert!(out.len() < 256, "{}", out.len());
        assert_eq!(Beat::decode(&out).unwrap(), b);
    }

    #[test]
    fn bounds() {
        let mut long =
            br#"{"v":1,"type":"leave","capacity":1,"flows":0,"load":0,"busy":0,"seq":0}"#.to_vec();
        assert!(Beat::decode(&long).is_ok());
        // Padding with whitespace keeps it valid JSON: refused on length alone.
        long.splice(1..1, std::iter::repeat_n(b' ', MAX_BEAT_LEN));
        assert_eq!(Beat::decode(&long), Err(BeatError::TooLong(long.len())));
        let base = beat(BeatKind::Heartbeat);
        let field = |b: Beat<'_>| {
            let mut out = Vec::new();
            b.encode(&mut out).unwrap_err()
        };
        let long_name = "x".repeat(MAX_NAME_LEN + 1);
        for (b, f) in [
            (
                Beat {
                    name: Some(""),
                    ..base
                },
                "name",
            ),
            (
                Beat {
                    name: Some(&long_name),
                    ..base
                },
                "name",
            ),
            (
                Beat {
                    name: Some("be 1"),
                    ..base
                },
                "name",
            ),
            (
                Beat {
                    capacity: 0,
                    ..base
                },
                "capacity",
            ),
            (
                Beat {
                    capacity: MAX_CAPACITY + 1,
                    ..base
                },
                "capacity",
            ),
            (Beat { load: 1.5, ..base }, "load"),
            (
                Beat {
                    load: f64::NAN,
                    ..base
                },
                "load",
            ),
            (Beat { busy: -0.1, ..base }, "busy"),
        ] {
            assert_eq!(field(b), BeatError::Field(f));
        }
    }

    #[test]
    fn garbage_is_refused() {
        let bad: &[&[u8]] = &[
            b"",
            b"\xff\xfe",
            b"ping",
            b"[]",
            b"{}",
            b"null",
            br#"{"v":1,"type":"hello","capacity":1,"flows":0,"load":0,"busy":0,"seq":0}"#,
            br#"{"v":1,"type":"leave","capacity":1,"flows":-1,"load":0,"busy":0,"seq":0}"#,
            br#"{"v":1,"type":"leave","capacity":1,"flows":0,"load":"0","busy":0,"seq":0}"#,
            br#"{"v":1,"type":"leave","capacity":1,"flows":0,"load":0,"busy":0}"#,
            // An escaped name cannot be borrowed, and no valid name needs escaping.
            br#"{"v":1,"type":"leave","name":"b\u0065","capacity":1,"flows":0,"load":0,"busy":0,"seq":0}"#,
            br#"{"v":1,"type":"leave","capacity":1,"flows":0,"load":0,"busy":0,"seq":0} x"#,
        ];
        for b in bad {
            assert!(
                matches!(Beat::decode(b), Err(BeatError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        let v2 = br#"{"v":2,"type":"leave","capacity":1,"flows":0,"load":0,"busy":0,"seq":0}"#;
        assert_eq!(Beat::decode(v2), Err(BeatError::Version(2)));
        let load = br#"{"v":1,"type":"leave","capacity":1,"flows":0,"load":2,"busy":0,"seq":0}"#;
        assert_eq!(Beat::decode(load), Err(BeatError::Field("load")));
        let name = br#"{"v":1,"type":"leave","name":"a/b","capacity":1,"flows":0,"load":0,"busy":0,"seq":0}"#;
        assert_eq!(Beat::decode(name), Err(BeatError::Field("name")));
    }

    #[test]
    fn figures() {
        assert_eq!(load_of(0, 1000), 0.0);
        assert_eq!(load_of(250, 1000), 0.25);
        assert_eq!(load_of(5000, 1000), 1.0);
        assert_eq!(load_of(1, 3), 0.3333);
        assert_eq!(load_of(7, 0), 1.0);
        assert_eq!(busy_of(0, 0), 0.0);
        assert_eq!(busy_of(1, 3), 0.25);
        assert_eq!(busy_of(u64::MAX, u64::MAX), 0.5);
        assert!(valid_name("be1") && valid_name("host-7.rack_2"));
        assert!(!valid_name("") && !valid_name("é") && !valid_name("a b"));
    }
}
