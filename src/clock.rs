//! Where "now" comes from. Every time-dependent path (a sync's start and detection times,
//! delivery attempts and due times, `Retry-After` dates, the simulator's change times)
//! asks a [`Clock`] its caller provides, never the wall clock inline, so that tests can
//! run them on tokio's paused clock.
//!
//! Waiting is always tokio's (`tokio::time::sleep`, `Instant`): under
//! `tokio::time::pause` both the waits and [`Clock::Tokio`]'s "now" move only as the test
//! (or tokio's auto-advance) moves them, in step.

use chrono::Utc;

use crate::domain::Timestamp;

/// A source of the current time. Cheap to copy.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The system's wall clock: what the daemon uses.
    #[default]
    System,
    /// `at` plus however far tokio's clock has moved since `since`: follows
    /// `tokio::time::pause` and `advance`.
    Tokio {
        at: Timestamp,
        since: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that reads `at` now and then moves with tokio's clock.
    pub fn tokio_at(at: Timestamp) -> Self {
        Clock::Tokio {
            at,
            since: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { at, since } => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(*since);
                *at + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
            }
        }
    }

    /// The current time in Unix milliseconds.
    pub fn now_millis(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_only_with_tokio_time() {
        let start = chrono::DateTime::from_timestamp(1_795_910_400, 0).unwrap_or_default();
        let clock = Clock::tokio_at(start);
        assert_eq!(clock.now(), start);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(clock.now(), start + chrono::Duration::seconds(5));
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(clock.now(), start + chrono::Duration::seconds(305));
        assert_eq!(clock.now_millis(), (start.timestamp() + 305) * 1000);
    }

    #[test]
    fn the_system_clock_is_the_wall_clock() {
        let before = Utc::now();
        let now = Clock::System.now();
        assert!(now >= before && now <= Utc::now());
    }
}
