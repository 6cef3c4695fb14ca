//! The agent's side of registration and heartbeats (`rules::beat`): with a `switch`
//! block in its config, the agent's main thread (not its lcore) sends a `register` at
//! start, a `heartbeat` every `switch.heartbeat_ms`, and a `leave` on a clean stop.
//!
//! They go out as ordinary UDP from a kernel socket in the agent's own network
//! namespace: the kernel picks the host's address as the source and routes the datagram
//! out through the TAP, and the agent's lcore bridges it to the NIC like any of the
//! host's traffic, so it reaches the switch's address on the backends' LAN the way a
//! health check comes back. The switch knows the agent by that source address. Nothing
//! is answered: a lost beat is made good by the next one, and a switch started after
//! the agent learns everything from the next heartbeat (each beat carries every field).
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use rules::beat::{busy_of, load_of, Beat, BeatKind};
use rules::config::AgentSwitch;

use super::agent::{AgentCounter, AgentStats};

/// How long a clean stop waits for the lcore to pass the `leave` to the NIC (it is
/// usually out within the lcore's idle sleep; the TAP goes down when the port stops).
const LEAVE_WAIT: Duration = Duration::from_millis(250);

/// Sends the agent's beats; the main thread calls [`Beater::tick`] between its sleeps.
pub struct Beater {
    socket: UdpSocket,
    to: SocketAddrV4,
    name: Option<String>,
    capacity: u32,
    every: Duration,
    /// The next beat's sequence number (the register is 0).
    seq: u64,
    next: Instant,
    /// Busy and idle cycles at the previous beat, for `busy` over the interval.
    cycles: (u64, u64),
    /// Whether the last send failed (a failure is logged once per run of them).
    failing: bool,
    buf: Vec<u8>,
}

impl Beater {
    /// A socket for beats to `switch`; nothing is sent yet.
    pub fn new(switch: &AgentSwitch) -> std::io::Result<Beater> {
        Ok(Beater {
            socket: UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?,
            to: SocketAddrV4::new(switch.address, switch.port),
            name: switch.name.clone(),
            capacity: switch.capacity,
            every: Duration::from_millis(switch.heartbeat_ms),
            seq: 0,
            next: Instant::now(),
            cycles: (0, 0),
            failing: false,
            buf: Vec::with_capacity(rules::beat::MAX_BEAT_LEN),
        })
    }

    /// When the next heartbeat is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// The register, at start; heartbeats follow every `heartbeat_ms`.
    pub fn register(&mut self, stats: &AgentStats, now: Instant) {
        self.send(BeatKind::Register, stats);
        self.next = now + self.every;
    }

    /// Sends a heartbeat if one is due at `now`.
    pub fn tick(&mut self, stats: &AgentStats, now: Instant) {
        if now < self.next {
            return;
        }
        self.send(BeatKind::Heartbeat, stats);
        self.next = next_due(self.next, self.every, now);
    }

    /// The leave, on a clean stop (before the lcore stops: it carries the datagram out),
    /// then a short wait for the lcore to have bridged it.
    pub fn leave(&mut self, stats: &AgentStats) {
        let bridged = stats.get(AgentCounter::BridgedToNic);
        if !self.send(BeatKind::Leave, stats) {
            return;
        }
        let give_up = Instant::now() + LEAVE_WAIT;
        while stats.get(AgentCounter::BridgedToNic) == bridged && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Builds and sends one beat from the agent's counters now; whether it went out.
    fn send(&mut self, kind: BeatKind, stats: &AgentStats) -> bool {
        let cycles = (
            stats.get(AgentCounter::BusyCycles),
            stats.get(AgentCounter::IdleCycles),
        );
        let flows = stats.get(AgentCounter::FlowsLive);
        let beat = Beat {
            kind,
            name: self.name.as_deref(),
            capacity: self.capacity,
            flows,
            load: load_of(flows, self.capacity),
            busy: busy_of(
                cycles.0.saturating_sub(self.cycles.0),
                cycles.1.saturating_sub(self.cycles.1),
            ),
            seq: self.seq,
        };
        self.cycles = cycles;
        self.seq += 1;
        let sent = match beat.encode(&mut self.buf) {
            Ok(()) => self.socket.send_to(&self.buf, self.to).map(|_| ()),
            // The config was validated, so this is a bug; say so rather than panic.
            Err(e) => Err(std::io::Error::other(e)),
        };
        match sent {
            Ok(()) => {
                stats.add(AgentCounter::BeatsSent, 1);
                if std::mem::take(&mut self.failing) {
                    tracing::info!(switch = %self.to, "beats to the switch go out again");
                }
                true
            }
            Err(e) => {
                stats.add(AgentCounter::BeatSendFailures, 1);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(switch = %self.to, kind = kind.name(), error = %e, "cannot send a beat to the switch");
                }
                false
            }
        }
    }
}

/// The heartbeat after one due at `due`, sent at `now`: on the beat's own period, but
/// never in a burst to catch up after a stall (the next is then a period from now).
fn next_due(due: Instant, every: Duration, now: Instant) -> Instant {
    let next = due + every;
    if next <= now {
        now + every
    } else {
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_keep_their_period_without_bursts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // On time, or a little late: the period holds.
        assert_eq!(next_due(t0, ms(500), t0), t0 + ms(500));
        assert_eq!(next_due(t0, ms(500), t0 + ms(90)), t0 + ms(500));
        // A stall longer than a period: one beat now, the next a period later.
        assert_eq!(next_due(t0, ms(500), t0 + ms(1700)), t0 + ms(2200));
    }

    #[test]
    fn beats_go_out_as_datagrams_with_the_agents_figures() {
        let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let port = rx.local_addr().unwrap().port();
        let cfg = AgentSwitch {
            address: Ipv4Addr::LOCALHOST,
            port,
            capacity: 200,
            heartbeat_ms: 50,
            name: Some("be1".into()),
        };
        let stats = AgentStats::default();
        let mut b = Beater::new(&cfg).unwrap();
        let now = Instant::now();
        b.register(&stats, now);
        stats.add(AgentCounter::BusyCycles, 100);
        stats.add(AgentCounter::IdleCycles, 300);
        stats.add(AgentCounter::FlowsLive, 50);
        b.tick(&stats, now); // not due yet
        b.tick(&stats, b.due());
        b.leave(&stats);
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        for _ in 0..3 {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            let beat = Beat::decode(&buf[..n]).unwrap();
            got.push((beat.kind, beat.seq, beat.flows, beat.load, beat.busy));
            assert_eq!((beat.name, beat.capacity), (Some("be1"), 200));
        }
        assert_eq!(
            got,
            [
                (BeatKind::Register, 0, 0, 0.0, 0.0),
                (BeatKind::Heartbeat, 1, 50, 0.25, 0.25),
                (BeatKind::Leave, 2, 50, 0.25, 0.0),
            ]
        );
        assert_eq!(stats.get(AgentCounter::BeatsSent), 3);
        assert_eq!(stats.get(AgentCounter::BeatSendFailures), 0);
    }
}
