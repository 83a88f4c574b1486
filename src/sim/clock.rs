//! The simulator's clock: wall time in milliseconds, but strictly increasing, so two
//! changes never share a timestamp and `updated_after` is unambiguous.

use super::world::Ms;

/// A strictly increasing millisecond clock.
#[derive(Debug, Clone)]
pub struct SimClock {
    /// The last instant handed out.
    last: Ms,
}

impl SimClock {
    /// A clock whose first tick is later than `floor` (e.g. the newest generated record).
    pub fn starting_after(floor: Ms) -> Self {
        Self { last: floor }
    }

    /// `max(wall_now, last + 1)`.
    pub fn tick(&mut self) -> Ms {
        let wall = chrono::Utc::now().timestamp_millis();
        self.last = wall.max(self.last.saturating_add(1));
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
        let mut c = SimClock::starting_after(future);
        let a = c.tick();
        let b = c.tick();
        assert_eq!(a, future + 1);
        assert_eq!(b, future + 2);
        let mut c = SimClock::starting_after(0);
        let mut prev = 0;
        for _ in 0..1000 {
            let t = c.tick();
            assert!(t > prev);
            prev = t;
        }
    }
}
