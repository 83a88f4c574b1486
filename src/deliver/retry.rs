//! When to try a failed delivery again: pure, no clock, no randomness (callers pass them).

use std::time::Duration;

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextAttempt {
    /// Try again after this long.
    After(Duration),
    /// The schedule is exhausted: dead letter.
    GiveUp,
}

/// The retry schedule (`[delivery] retry_schedule`, see `docs/receivers.md`): delays after
/// the first attempt, then dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    /// Delay before attempt 2, 3, ...; its length is the number of retries.
    pub delays: Vec<Duration>,
    /// ± this share of each delay, e.g. 0.2 for ±20 %.
    pub jitter: f64,
    /// Cap on a `Retry-After` the subscriber asks for.
    pub max_retry_after: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        let m = 60;
        let h = 3600;
        Self {
            delays: [5, 5 * m, 30 * m, 2 * h, 5 * h, 10 * h, 10 * h]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            jitter: 0.2,
            max_retry_after: Duration::from_secs(24 * h),
        }
    }
}

impl RetrySchedule {
    /// After `attempts_made` failed attempts (from 1), what next. `random` in `[0, 1)` picks
    /// the jitter; `retry_after` is what a 429/503 asked for: the wait is the larger of the
    /// jittered delay and `retry_after` (capped at `max_retry_after`).
    pub fn next(
        &self,
        attempts_made: u32,
        random: f64,
        retry_after: Option<Duration>,
    ) -> NextAttempt {
        let index = attempts_made.saturating_sub(1) as usize;
        let Some(base) = self.delays.get(index) else {
            return NextAttempt::GiveUp;
        };
        let factor = 1.0 + self.jitter.clamp(0.0, 1.0) * (2.0 * random.clamp(0.0, 1.0) - 1.0);
        let jittered = base.mul_f64(factor.max(0.0));
        let wait = match retry_after {
            Some(asked) => jittered.max(asked.min(self.max_retry_after)),
            None => jittered,
        };
        NextAttempt::After(wait)
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.delays.len() as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn follows_the_schedule_with_jitter_and_retry_after() {
        let schedule = RetrySchedule::default();
        // (attempts made, random, retry-after) -> next
        let cases = [
            (1, 0.5, None, NextAttempt::After(s(5))),
            (1, 0.0, None, NextAttempt::After(s(4))),
            (1, 1.0, None, NextAttempt::After(s(6))),
            (2, 0.5, None, NextAttempt::After(s(300))),
            (7, 0.5, None, NextAttempt::After(s(36_000))),
            (8, 0.5, None, NextAttempt::GiveUp),
            (100, 0.5, None, NextAttempt::GiveUp),
            (1, 0.5, Some(s(60)), NextAttempt::After(s(60))),
            (2, 0.5, Some(s(60)), NextAttempt::After(s(300))),
            (
                1,
                0.5,
                Some(s(10 * 24 * 3600)),
                NextAttempt::After(s(24 * 3600)),
            ),
        ];
        for (made, random, retry_after, want) in cases {
            assert_eq!(
                schedule.next(made, random, retry_after),
                want,
                "{made} {random} {retry_after:?}"
            );
        }
        assert_eq!(schedule.max_attempts(), 8);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let schedule = RetrySchedule::default();
        for i in 0..=100 {
            let r = f64::from(i) / 100.0;
            let NextAttempt::After(d) = schedule.next(3, r, None) else {
                panic!("schedule has a third delay");
            };
            assert!(d >= s(1440) && d <= s(2160), "{d:?}");
        }
    }

    #[test]
    fn an_empty_schedule_gives_up_at_once() {
        let schedule = RetrySchedule {
            delays: vec![],
            ..Default::default()
        };
        assert_eq!(schedule.next(1, 0.5, None), NextAttempt::GiveUp);
    }
}
