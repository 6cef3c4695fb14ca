//! Adaptive idle backoff for a poll loop: spin while traffic may be coming, then pause,
//! then sleep with a doubling interval up to a ceiling, so an idle worker costs about
//! 1% of a core while a busy one never sleeps.
//!
//! Two ceilings: for `recent` after the last work the sleeps stay short (`recent_sleep`,
//! tens of microseconds), so sparse traffic (a request every few milliseconds) finds the
//! worker awake within that; only a worker idle for longer goes to the long sleeps that
//! make idling cheap. Idle time is counted as the sum of the sleeps asked for (the spins
//! and pauses before them are short), so no clock is read.
use std::time::Duration;

/// Empty polls answered by spinning straight on.
const SPIN_POLLS: u32 = 256;
/// Further empty polls answered by a `pause` burst.
const PAUSE_POLLS: u32 = 2048;
const PAUSES_PER_POLL: u32 = 32;
/// First sleep once pausing did not bring work.
const FIRST_SLEEP_US: u64 = 8;

#[derive(Debug, Clone)]
pub struct Backoff {
    empty_polls: u32,
    sleep_us: u64,
    max_sleep_us: u64,
    recent_sleep_us: u64,
    recent_us: u64,
    /// Microseconds slept since the last work.
    slept_us: u64,
}

/// What the loop should do after an empty poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    Spin,
    Pause(u32),
    Sleep(Duration),
}

impl Backoff {
    /// Sleeps double up to `max_sleep_us`, but stay at most `recent_sleep_us` until
    /// `recent_ms` of them have passed since the last work.
    pub fn new(max_sleep_us: u64, recent_ms: u64, recent_sleep_us: u64) -> Self {
        let max_sleep_us = max_sleep_us.max(1);
        Self {
            empty_polls: 0,
            sleep_us: FIRST_SLEEP_US,
            max_sleep_us,
            recent_sleep_us: recent_sleep_us.clamp(1, max_sleep_us),
            recent_us: recent_ms * 1000,
            slept_us: 0,
        }
    }

    /// Work arrived: start over at spinning.
    #[inline]
    pub fn reset(&mut self) {
        self.empty_polls = 0;
        self.sleep_us = FIRST_SLEEP_US;
        self.slept_us = 0;
    }

    /// A poll found nothing: how to wait before the next one.
    #[inline]
    pub fn idle(&mut self) -> Idle {
        self.empty_polls = self.empty_polls.saturating_add(1);
        if self.empty_polls <= SPIN_POLLS {
            Idle::Spin
        } else if self.empty_polls <= SPIN_POLLS + PAUSE_POLLS {
            Idle::Pause(PAUSES_PER_POLL)
        } else {
            let cap = if self.slept_us < self.recent_us {
                self.recent_sleep_us
            } else {
                self.max_sleep_us
            };
            let us = self.sleep_us.min(cap);
            self.sleep_us = (self.sleep_us * 2).min(self.max_sleep_us);
            self.slept_us = self.slept_us.saturating_add(us);
            Idle::Sleep(Duration::from_micros(us))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_then_pauses_then_sleeps_doubling_to_the_cap() {
        let mut b = Backoff::new(1000, 0, 30);
        for _ in 0..SPIN_POLLS {
            assert_eq!(b.idle(), Idle::Spin);
        }
        for _ in 0..PAUSE_POLLS {
            assert!(matches!(b.idle(), Idle::Pause(_)));
        }
        let sleeps: Vec<_> = (0..10).map(|_| b.idle()).collect();
        assert_eq!(sleeps[0], Idle::Sleep(Duration::from_micros(8)));
        assert_eq!(sleeps[1], Idle::Sleep(Duration::from_micros(16)));
        assert_eq!(sleeps[9], Idle::Sleep(Duration::from_micros(1000)));
        b.reset();
        assert_eq!(b.idle(), Idle::Spin);
    }

    #[test]
    fn sleeps_stay_short_for_a_while_after_work() {
        let mut b = Backoff::new(2000, 10, 30);
        for _ in 0..SPIN_POLLS + PAUSE_POLLS {
            b.idle();
        }
        let sleep = |i: Idle| match i {
            Idle::Sleep(d) => d.as_micros() as u64,
            other => panic!("{other:?}"),
        };
        assert_eq!(sleep(b.idle()), 8);
        assert_eq!(sleep(b.idle()), 16);
        // Capped at 30 µs until 10 ms have been slept...
        let mut slept = 24;
        while slept < 10_000 {
            let d = sleep(b.idle());
            assert!(d <= 30, "{d}");
            slept += d;
        }
        // ...then the long sleeps (the doubling went on underneath).
        assert_eq!(sleep(b.idle()), 2000);
        b.reset();
        for _ in 0..SPIN_POLLS + PAUSE_POLLS {
            b.idle();
        }
        assert_eq!(sleep(b.idle()), 8);
    }
}
