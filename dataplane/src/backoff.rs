//! Adaptive idle backoff for a poll loop: spin while traffic may be coming, then pause,
//! then sleep with a doubling interval up to a ceiling, so an idle worker costs about
//! 1% of a core while a busy one never sleeps.
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
}

/// What the loop should do after an empty poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    Spin,
    Pause(u32),
    Sleep(Duration),
}

impl Backoff {
    pub fn new(max_sleep_us: u64) -> Self {
        Self {
            empty_polls: 0,
            sleep_us: FIRST_SLEEP_US,
            max_sleep_us: max_sleep_us.max(1),
        }
    }

    /// Work arrived: start over at spinning.
    #[inline]
    pub fn reset(&mut self) {
        self.empty_polls = 0;
        self.sleep_us = FIRST_SLEEP_US;
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
            let d = Duration::from_micros(self.sleep_us.min(self.max_sleep_us));
            self.sleep_us = (self.sleep_us * 2).min(self.max_sleep_us);
            Idle::Sleep(d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_then_pauses_then_sleeps_doubling_to_the_cap() {
        let mut b = Backoff::new(1000);
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
}
