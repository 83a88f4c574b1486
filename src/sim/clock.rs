//! The simulator's clock: [`Clock`] time in milliseconds (the wall clock, or tokio's in
//! tests), but strictly increasing, so two changes never share a timestamp and
//! `updated_after` is unambiguous.

use super::world::Ms;
use crate::clock::Clock;

/// A strictly increasing millisecond clock.
#[derive(Debug, Clone)]
pub struct SimClock {
    /// The last instant handed out.
    last: Ms,
    /// Where "now" comes from.
    clock: Clock,
}

impl SimClock {
    /// A clock whose first tick is later than `floor` (e.g. the newest generated record).
    pub fn starting_after(floor: Ms, clock: Clock) -> Self {
        Self { last: floor, clock }
    }

    /// `max(now, last + 1)`.
    pub fn tick(&mut self) -> Ms {
        let now = self.clock.now_millis();
        self.last = now.max(self.last.saturating_add(1));
        self.last
    }

    /// The last instant handed out.
    pub fn last(&self) -> Ms {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_even_ahead_of_the_wall() {
        let future = chrono::Utc::now().timestamp_millis() + 60_000;
        let mut c = SimClock::starting_after(future, Clock::System);
        let a = c.tick();
        let b = c.tick();
        assert_eq!(a, future + 1);
        assert_eq!(b, future + 2);
        let mut c = SimClock::starting_after(0, Clock::System);
        let mut prev = 0;
        for _ in 0..1000 {
            let t = c.tick();
            assert!(t > prev);
            prev = t;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn on_tokio_time_it_moves_with_tokio_and_stays_strictly_increasing() {
        let start = chrono::DateTime::from_timestamp(1_795_910_400, 0).unwrap_or_default();
        let mut c = SimClock::starting_after(0, Clock::tokio_at(start));
        let ms = start.timestamp_millis();
        assert_eq!(c.tick(), ms);
        assert_eq!(c.tick(), ms + 1, "the same instant twice: one more");
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        assert_eq!(c.tick(), ms + 60_000);
    }
}
