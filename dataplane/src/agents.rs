//! What the switch knows of each backend's handoff agent, from its beats
//! (`rules::beat`): whether it registered, when it was last heard from, and the figures
//! of its latest beat. One [`AgentCell`] per backend id, in `Shared::agents`.
//!
//! Written by whichever core received the beat (the datagram is steered by the NIC's
//! hash, not by backend), read by every core (`hand_off` asks [`Agents::alive`] for each
//! member of the pool; the sweep picks up the load for `weighted_random`) and by the main
//! thread (`agents.list`, `/metrics`). Every field is its own atomic, stored with a
//! relaxed store: a reader may see one beat's load beside the next beat's sequence
//! number, or two cores may store beats of one agent at once. Both are benign: each
//! field holds a value some recent beat carried, liveness needs only `last_seen_tsc`
//! and `state`, and an agent beats again within its `heartbeat_ms`. The name is packed
//! into four words and may be read torn while it changes, which it does only when an
//! agent restarts under another name.
//!
//! Time is the TSC (`dpdk_env::rdtsc`), which every core and the main thread read
//! alike: a beat stores its TSC, and an agent is alive while the TSC is less than
//! `handoff.agent_timeout_ms` past it.
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use rules::beat::{Beat, BeatKind, MAX_NAME_LEN};

/// No beat received since the switch started.
pub const AGENT_NONE: u8 = 0;
/// The last beat was a register or a heartbeat.
pub const AGENT_REGISTERED: u8 = 1;
/// The last beat was a leave.
pub const AGENT_LEFT: u8 = 2;

/// Load and busy are kept in ten-thousandths (a beat carries 4 decimals).
const FRACTION_ONE: f64 = 10_000.0;

/// One backend's agent, as its beats told it.
#[derive(Default)]
pub struct AgentCell {
    state: AtomicU8,
    /// TSC of the latest accepted beat (0: never).
    last_seen_tsc: AtomicU64,
    capacity: AtomicU32,
    flows: AtomicU64,
    load_e4: AtomicU32,
    busy_e4: AtomicU32,
    seq: AtomicU64,
    /// Beats accepted, of every kind.
    beats: AtomicU64,
    /// Bumped by every `register` and `leave`: an agent that (re)starts or stops holds
    /// none of the connections handed to its predecessor, so each core resets those it
    /// has when it sees this change (see `worker::tcp::handoff`).
    incarnation: AtomicU64,
    name: [AtomicU64; MAX_NAME_LEN / 8],
    name_len: AtomicU8,
}

/// A copy of a cell, for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentView {
    pub state: u8,
    pub last_seen_tsc: u64,
    pub name: Option<String>,
    pub capacity: u32,
    pub flows: u64,
    pub load: f64,
    pub busy: f64,
    pub seq: u64,
    pub beats: u64,
}

/// What a beat changed, to log (rare: an agent coming, going or coming back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It was not alive before this register or heartbeat.
    Arrived,
    /// A leave from an agent that was alive.
    Left,
}

/// Whether an agent is alive: registered, and heard from less than `timeout_tsc` ago.
/// (A beat stored by another core may carry a TSC a little ahead of `now_tsc`: that is
/// "just now", not a wrap.)
pub fn is_alive(state: u8, last_seen_tsc: u64, now_tsc: u64, timeout_tsc: u64) -> bool {
    state == AGENT_REGISTERED && now_tsc.saturating_sub(last_seen_tsc) < timeout_tsc
}

impl AgentCell {
    /// Stores a beat received at `now_tsc`; says whether it changed the agent's liveness.
    pub fn record(&self, beat: &Beat<'_>, now_tsc: u64, timeout_tsc: u64) -> Option<Change> {
        let was_alive = self.alive(now_tsc, timeout_tsc);
        let r = Ordering::Relaxed;
        self.capacity.store(beat.capacity, r);
        self.flows.store(beat.flows, r);
        self.load_e4
            .store((beat.load * FRACTION_ONE).round() as u32, r);
        self.busy_e4
            .store((beat.busy * FRACTION_ONE).round() as u32, r);
        self.seq.store(beat.seq, r);
        self.store_name(beat.name.unwrap_or(""));
        self.beats.fetch_add(1, r);
        // 0 means "never": a TSC of 0 is impossible after boot, but stay exact.
        self.last_seen_tsc.store(now_tsc.max(1), r);
        if matches!(beat.kind, BeatKind::Register | BeatKind::Leave) {
            self.incarnation.fetch_add(1, r);
        }
        let (state, change) = match beat.kind {
            BeatKind::Leave => (AGENT_LEFT, was_alive.then_some(Change::Left)),
            BeatKind::Register | BeatKind::Heartbeat => {
                (AGENT_REGISTERED, (!was_alive).then_some(Change::Arrived))
            }
        };
        self.state.store(state, r);
        change
    }

    /// Whether the agent is alive at `now_tsc`.
    #[inline]
    pub fn alive(&self, now_tsc: u64, timeout_tsc: u64) -> bool {
        is_alive(
            self.state.load(Ordering::Relaxed),
            self.last_seen_tsc.load(Ordering::Relaxed),
            now_tsc,
            timeout_tsc,
        )
    }

    /// The load the agent reported, in ten-thousandths.
    #[inline]
    pub fn load_e4(&self) -> u32 {
        self.load_e4.load(Ordering::Relaxed)
    }

    fn store_name(&self, name: &str) {
        let mut bytes = [0u8; MAX_NAME_LEN];
        let n = name.len().min(MAX_NAME_LEN);
        bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
        for (w, chunk) in self.name.iter().zip(bytes.chunks_exact(8)) {
            let v = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            if w.load(Ordering::Relaxed) != v {
                w.store(v, Ordering::Relaxed);
            }
        }
        self.name_len.store(n as u8, Ordering::Relaxed);
    }

    fn name(&self) -> Option<String> {
        let n = usize::from(self.name_len.load(Ordering::Relaxed)).min(MAX_NAME_LEN);
        if n == 0 {
            return None;
        }
        let mut bytes = [0u8; MAX_NAME_LEN];
        for (w, chunk) in self.name.iter().zip(bytes.chunks_exact_mut(8)) {
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        Some(String::from_utf8_lossy(&bytes[..n]).into_owned())
    }

    pub fn view(&self) -> AgentView {
        let r = Ordering::Relaxed;
        AgentView {
            state: self.state.load(r),
            last_seen_tsc: self.last_seen_tsc.load(r),
            name: self.name(),
            capacity: self.capacity.load(r),
            flows: self.flows.load(r),
            load: f64::from(self.load_e4.load(r)) / FRACTION_ONE,
            busy: f64::from(self.busy_e4.load(r)) / FRACTION_ONE,
            seq: self.seq.load(r),
            beats: self.beats.load(r),
        }
    }
}

/// Every backend id's agent, and the timeout that says which are alive.
pub struct Agents {
    cells: Box<[AgentCell]>,
    timeout_tsc: u64,
    tsc_per_ms: u64,
}

impl Agents {
    /// `slots` cells (one per possible backend id), alive for `timeout_ms` after a beat.
    pub fn new(slots: usize, timeout_ms: u64, tsc_hz: u64) -> Agents {
        let tsc_per_ms = (tsc_hz / 1000).max(1);
        Agents {
            cells: (0..slots).map(|_| AgentCell::default()).collect(),
            timeout_tsc: timeout_ms.saturating_mul(tsc_per_ms),
            tsc_per_ms,
        }
    }

    /// Stores a beat from backend `b`'s host.
    pub fn record(&self, b: usize, beat: &Beat<'_>, now_tsc: u64) -> Option<Change> {
        self.cells
            .get(b)
            .and_then(|c| c.record(beat, now_tsc, self.timeout_tsc))
    }

    /// Whether backend `b`'s agent is alive at `now_tsc`.
    #[inline]
    pub fn alive(&self, b: usize, now_tsc: u64) -> bool {
        self.cells
            .get(b)
            .is_some_and(|c| c.alive(now_tsc, self.timeout_tsc))
    }

    /// The load for `b`'s scheduler, in ten-thousandths: what its agent reported while
    /// it is alive, 0 (no report, as before any agent) otherwise.
    pub fn load_e4(&self, b: usize, now_tsc: u64) -> u32 {
        match self.cells.get(b) {
            Some(c) if c.alive(now_tsc, self.timeout_tsc) => c.load_e4(),
            _ => 0,
        }
    }

    /// How many times `b`'s agent registered or left (see `AgentCell::incarnation`).
    pub fn incarnation(&self, b: usize) -> u64 {
        self.cells
            .get(b)
            .map_or(0, |c| c.incarnation.load(Ordering::Relaxed))
    }

    pub fn view(&self, b: usize) -> Option<AgentView> {
        self.cells.get(b).map(AgentCell::view)
    }

    /// Milliseconds from `tsc` to `now_tsc` (0 if `tsc` is ahead).
    pub fn ms_between(&self, tsc: u64, now_tsc: u64) -> u64 {
        now_tsc.saturating_sub(tsc) / self.tsc_per_ms
    }

    /// `b`'s agent in one word: `alive`, `silent` (registered, not heard from within the
    /// timeout), `left` (said leave) or `none` (never heard from).
    pub fn state_name(&self, b: usize, now_tsc: u64) -> &'static str {
        let Some(c) = self.cells.get(b) else {
            return "none";
        };
        if c.alive(now_tsc, self.timeout_tsc) {
            return "alive";
        }
        match c.state.load(Ordering::Relaxed) {
            AGENT_REGISTERED => "silent",
            AGENT_LEFT => "left",
            _ => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(kind: BeatKind, name: Option<&str>) -> Beat<'_> {
        Beat {
            kind,
            name,
            capacity: 1000,
            flows: 250,
            load: 0.25,
            busy: 0.125,
            seq: 7,
        }
    }

    #[test]
    fn liveness_by_timeout() {
        assert!(!is_alive(AGENT_NONE, 0, 5, 100));
        assert!(is_alive(AGENT_REGISTERED, 1000, 1000, 100));
        assert!(is_alive(AGENT_REGISTERED, 1000, 1099, 100));
        assert!(!is_alive(AGENT_REGISTERED, 1000, 1100, 100));
        assert!(!is_alive(AGENT_LEFT, 1000, 1001, 100));
        // Stored by a core whose TSC read came a little later than ours.
        assert!(is_alive(AGENT_REGISTERED, 1005, 1000, 100));
    }

    #[test]
    fn beats_register_refresh_and_leave() {
        // 1 kHz TSC: one tick per ms; a 1500 ms timeout.
        let a = Agents::new(4, 1500, 1000);
        assert_eq!(a.state_name(1, 10), "none");
        assert!(!a.alive(1, 10));
        let reg = beat(BeatKind::Register, Some("be1"));
        assert_eq!(a.record(1, &reg, 1_000), Some(Change::Arrived));
        assert!(a.alive(1, 1_000) && a.alive(1, 2_499));
        assert_eq!(a.load_e4(1, 1_000), 2_500);
        assert!(
            !a.alive(0, 1_000) && !a.alive(2, 1_000),
            "other backends untouched"
        );
        // Heartbeats keep it alive; none for the timeout and it is silent.
        let hb = beat(BeatKind::Heartbeat, Some("be1"));
        assert_eq!(a.record(1, &hb, 2_000), None);
        assert!(a.alive(1, 3_499));
        assert!(!a.alive(1, 3_500));
        assert_eq!(a.state_name(1, 3_500), "silent");
        assert_eq!(a.load_e4(1, 3_500), 0, "a silent agent's load is forgotten");
        // Back: arrives again (a heartbeat registers it, as after a switch restart).
        assert_eq!(a.record(1, &hb, 4_000), Some(Change::Arrived));
        assert_eq!(a.state_name(1, 4_000), "alive");
        // A leave is at once.
        let leave = beat(BeatKind::Leave, Some("be1"));
        assert_eq!(a.record(1, &leave, 4_010), Some(Change::Left));
        assert!(!a.alive(1, 4_010));
        assert_eq!(a.state_name(1, 4_010), "left");
        assert_eq!(a.record(1, &leave, 4_020), None, "left already");
        let v = a.view(1).unwrap();
        assert_eq!(v.state, AGENT_LEFT);
        assert_eq!((v.beats, v.seq, v.capacity, v.flows), (5, 7, 1000, 250));
        assert_eq!((v.load, v.busy), (0.25, 0.125));
        assert_eq!(a.ms_between(v.last_seen_tsc, 5_000), 980);
        assert!(a.view(9).is_none() && !a.alive(9, 0) && a.record(9, &hb, 1).is_none());
    }

    #[test]
    fn names_pack_and_change() {
        let a = Agents::new(1, 1500, 1000);
        let long = "n".repeat(MAX_NAME_LEN);
        for name in [Some("be1"), Some(long.as_str()), Some("x-2.y_3"), None] {
            a.record(0, &beat(BeatKind::Heartbeat, name), 100);
            assert_eq!(a.view(0).unwrap().name.as_deref(), name);
        }
    }
}
