//! Paper 001's workload factor: each member says in its beats how much of its capacity is
//! still available, and the connection-ownership table gives it a share in proportion
//! (`cluster.balance: "workload"`; the paper's front tier picks a proxy with probability
//! W_i / sum W). The table is looked up by a uniform hash of the client's tuple, which is
//! the paper's random number made the same for every segment of one connection, so the
//! front stays stateless and a connection's segments keep going to one owner.
//!
//! Capacity is measured as fractions of this instance's own maximum (so instances of
//! different sizes compare): the busiest worker's share of busy cycles, and the fullest
//! core's flow table. A change of weights rebuilds every member's table and moves
//! connection setup between them, so the advertised level is coarse ([`LEVELS`] steps),
//! smoothed, and changes only after the measurement has pointed at one other level for
//! [`HOLD_MS`]: a member's weight moves at most once per hold, not with every burst.
//!
//! Pure: the caller measures and passes the time.

/// Steps of advertised capacity: 16 is all of it, 1 the least (a member that reports
/// nothing available still owns a sixteenth of a full member's share, so a saturated
/// cluster keeps serving).
pub const LEVELS: u8 = 16;

/// How long a measurement must point at another level before the advertised one moves.
pub const HOLD_MS: u64 = 3000;

/// What this instance has in use, in thousandths of what it can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// The busiest worker's busy cycles over its busy and idle ones, since the last sample.
    pub cpu_permille: u32,
    /// The fullest core's flows over `tcp.max_flows_per_core`.
    pub flows_permille: u32,
}

impl Usage {
    /// The workload factor: what is left of the scarcest resource.
    pub fn available_permille(&self) -> u32 {
        1000 - self.cpu_permille.max(self.flows_permille).min(1000)
    }
}

/// The level for an available capacity (rounded to the nearest step, at least 1).
pub fn level_of(available_permille: u32) -> u8 {
    let l = (available_permille.min(1000) * u32::from(LEVELS) + 500) / 1000;
    l.clamp(1, u32::from(LEVELS)) as u8
}

/// The table weight of what a beat reports: the level, or a full member's weight when
/// it reports none (an `equal` member, or an older version).
pub fn weight(reported: u8) -> u32 {
    match reported {
        1..=LEVELS => u32::from(reported),
        _ => u32::from(LEVELS),
    }
}

/// This member's advertised level: a smoothed measurement, held before it moves.
#[derive(Debug, Clone)]
pub struct Workload {
    smoothed_permille: u32,
    level: u8,
    /// The other level the smoothed measurement points at, and since when (a new target
    /// starts the hold again).
    pending: Option<(u8, u64)>,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            smoothed_permille: 1000,
            level: LEVELS,
            pending: None,
        }
    }
}

impl Workload {
    /// Takes a measurement of available capacity (one every few hundred milliseconds;
    /// each weighs a quarter) and returns the level to advertise.
    pub fn update(&mut self, now_ms: u64, available_permille: u32) -> u8 {
        self.smoothed_permille = (3 * self.smoothed_permille + available_permille.min(1000)) / 4;
        let target = level_of(self.smoothed_permille);
        self.pending = match self.pending {
            _ if target == self.level => None,
            Some((t, since)) if t == target => {
                if now_ms.saturating_sub(since) >= HOLD_MS {
                    self.level = target;
                    None
                } else {
                    Some((t, since))
                }
            }
            _ => Some((target, now_ms)),
        };
        self.level
    }

    /// The level advertised now.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// The smoothed available capacity, in thousandths.
    pub fn smoothed_permille(&self) -> u32 {
        self.smoothed_permille
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scarcest_resource_sets_the_level() {
        let u = Usage {
            cpu_permille: 200,
            flows_permille: 600,
        };
        assert_eq!(u.available_permille(), 400);
        assert_eq!(level_of(400), 6, "6.4 steps round to 6");
        assert_eq!(level_of(1000), LEVELS);
        assert_eq!(
            level_of(0),
            1,
            "never 0: a saturated member still owns a little"
        );
        let over = Usage {
            cpu_permille: 1500,
            flows_permille: 0,
        };
        assert_eq!(over.available_permille(), 0);
        assert_eq!((weight(0), weight(7), weight(200)), (16, 7, 16));
    }

    #[test]
    fn the_level_moves_only_after_the_hold_and_not_for_a_burst() {
        let mut w = Workload::default();
        // A one-sample burst to no capacity: the smoothed value dips, the level holds.
        assert_eq!(w.update(0, 0), LEVELS);
        for t in 1..=20 {
            assert_eq!(w.update(t * 500, 1000), LEVELS, "at {t}");
        }
        // A lasting change: the level follows once the measurement held for HOLD_MS.
        let mut moved_at = None;
        for t in 0..40u64 {
            let now = 20_000 + t * 500;
            if w.update(now, 500) != LEVELS {
                moved_at = Some(now);
                break;
            }
        }
        let at = moved_at.expect("the level followed");
        assert!(at >= 20_000 + HOLD_MS, "moved at {at}");
        // It settles at half capacity, a level at a time only after each hold.
        for t in 0..40u64 {
            w.update(at + t * 500, 500);
        }
        assert_eq!(w.level(), 8);
        assert!(w.smoothed_permille().abs_diff(500) <= 5);
    }
}
