//! The delivery queues, in memory: which pending delivery of each subscriber goes next.
//!
//! The outbox entries (`o` keys) are the durable truth; these queues are derived from them
//! (built on first use by a scan of the pending entries) and kept in step by every write
//! that changes a delivery's state. Keeping them out of sled saves four index writes per
//! delivery (a queue key and a due key, each inserted and removed again), which in sled
//! 0.34 — whose leaves split above 16 keys and merge below 4 — is most of the cost of
//! recording an attempt.
//!
//! Per subscriber and application the pending deliveries form a queue in log order; only
//! its head can be due. A head that is delivered or dead-lettered hands over to the next
//! one, due at once; a failed head stays, due again later. So one application's events
//! reach a subscriber in sequence order while other applications flow freely.
//!
//! Claims: [`Queues::claim`] hands due heads out, each to one caller, until the attempt is
//! recorded ([`Queues::finish`] or [`Queues::reschedule`]) or the claim expires (its
//! claimant died or gave up): then it is due again. Invariant: a delivery is in the due
//! set exactly when it is its application's head, pending and not claimed.
//!
//! Pure data structure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// An application: a 64-bit hash of (integration, application id), to keep a pending
/// delivery at a few dozen bytes. Two applications whose hashes collided would share one
/// queue: each one's events would still go out in order, one application merely waiting
/// for the other.
pub(super) type AppKey = u64;

pub(super) fn app_key(integration_id: &str, application_id: &str) -> AppKey {
    use std::hash::{Hash as _, Hasher as _};
    // SipHash with fixed keys: the same key in every process (not that it must be).
    let mut hasher = std::hash::DefaultHasher::new();
    integration_id.hash(&mut hasher);
    application_id.hash(&mut hasher);
    hasher.finish()
}

/// One pending delivery, as the queues need it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pending {
    pub subscriber: String,
    pub log_seq: u64,
    pub app: AppKey,
    /// When it is due, ms since the epoch (the entry's `due_at`).
    pub due_ms: i64,
}

#[derive(Debug, Default)]
struct SubscriberQueues {
    /// Each application's pending deliveries, in log order.
    apps: HashMap<AppKey, VecDeque<u64>>,
    /// The unclaimed heads of the application queues, by (due ms, log sequence).
    due: BTreeSet<(i64, u64)>,
    /// Claimed deliveries and when each claim expires (ms).
    claimed: HashMap<u64, i64>,
    /// Every pending delivery, in log order: its application and due time.
    pending: BTreeMap<u64, (AppKey, i64)>,
    /// Dead letters (kept here so that `/metrics` need not scan the outbox).
    dead: u64,
}

impl SubscriberQueues {
    fn add(&mut self, log_seq: u64, app: AppKey, due_ms: i64) {
        if self.pending.contains_key(&log_seq) {
            return;
        }
        self.pending.insert(log_seq, (app, due_ms));
        let queue = self.apps.entry(app).or_default();
        let old_head = queue.front().copied();
        let at = queue.partition_point(|&s| s < log_seq);
        queue.insert(at, log_seq);
        if at == 0 {
            // The new delivery is the application's head: the old head waits behind it
            // (if it is claimed, its attempt is already under way and stays so).
            if let Some(old) = old_head
                && let Some((_, ms)) = self.pending.get(&old)
            {
                self.due.remove(&(*ms, old));
            }
            self.due.insert((due_ms, log_seq));
        }
    }

    fn is_head(&self, log_seq: u64, app: AppKey) -> bool {
        self.apps.get(&app).and_then(|q| q.front()) == Some(&log_seq)
    }

    /// Makes `log_seq` due again at its due time, if it is its application's head.
    fn settle(&mut self, log_seq: u64) {
        if let Some(&(app, ms)) = self.pending.get(&log_seq)
            && !self.claimed.contains_key(&log_seq)
            && self.is_head(log_seq, app)
        {
            self.due.insert((ms, log_seq));
        }
    }

    /// Claims that expired by `now_ms` are released: their deliveries are due again.
    fn expire_claims(&mut self, now_ms: i64) {
        if self.claimed.is_empty() {
            return;
        }
        let expired: Vec<u64> = self
            .claimed
            .iter()
            .filter(|(_, until)| **until <= now_ms)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            self.claimed.remove(&seq);
            self.settle(seq);
        }
    }

    /// Ends a claim without an attempt: the delivery is due again as it was.
    fn release(&mut self, log_seq: u64) {
        if self.claimed.remove(&log_seq).is_some() {
            self.settle(log_seq);
        }
    }

    /// Claims up to `limit` heads due at `now_ms`, earliest first, until `until_ms`.
    fn claim(&mut self, now_ms: i64, limit: usize, until_ms: i64) -> Vec<(i64, u64)> {
        self.expire_claims(now_ms);
        let mut out = Vec::new();
        while out.len() < limit {
            match self.due.first() {
                Some(&(ms, seq)) if ms <= now_ms => {
                    self.due.remove(&(ms, seq));
                    self.claimed.insert(seq, until_ms);
                    out.push((ms, seq));
                }
                _ => break,
            }
        }
        out
    }

    /// A delivery left the queues (delivered or dead). Its application's next delivery
    /// becomes due at `now_ms` (or its own due time, if later).
    fn finish(&mut self, log_seq: u64, now_ms: i64) {
        let Some((app, due_ms)) = self.pending.remove(&log_seq) else {
            return;
        };
        self.due.remove(&(due_ms, log_seq));
        self.claimed.remove(&log_seq);
        let Some(queue) = self.apps.get_mut(&app) else {
            return;
        };
        let was_head = queue.front() == Some(&log_seq);
        queue.retain(|&s| s != log_seq);
        match queue.front().copied() {
            None => {
                self.apps.remove(&app);
            }
            Some(next) if was_head => {
                if let Some((_, ms)) = self.pending.get_mut(&next) {
                    *ms = (*ms).max(now_ms);
                }
                self.settle(next);
            }
            Some(_) => {}
        }
    }

    /// A failed head (claimed or not) is due again at `due_ms`; its claim ends.
    fn reschedule(&mut self, log_seq: u64, due_ms: i64) {
        let Some((_, ms)) = self.pending.get_mut(&log_seq) else {
            return;
        };
        let old = *ms;
        *ms = due_ms;
        self.due.remove(&(old, log_seq));
        self.claimed.remove(&log_seq);
        self.settle(log_seq);
    }
}

/// Every subscriber's queues, plus the deliveries committed but not yet durable.
#[derive(Debug, Default)]
pub(super) struct Queues {
    /// Whether the queues were built from the store yet.
    pub built: bool,
    /// Whether a deliverer in this process will read them. Until one does (or they are
    /// built), published deliveries are not kept: a `sync --once` that emits a million
    /// events must not hold a million pending deliveries in memory for nobody; a later
    /// build finds them in the outbox.
    pub wanted: bool,
    subscribers: HashMap<String, SubscriberQueues>,
    /// Committed but not flushed: they join the queues when a flush makes them durable,
    /// so nothing is sent before it is on disk. In log order.
    staged: Vec<Pending>,
}

impl Queues {
    /// Adds a pending delivery that is already durable (building, or re-queueing).
    pub fn add(&mut self, p: Pending) {
        self.subscribers
            .entry(p.subscriber)
            .or_default()
            .add(p.log_seq, p.app, p.due_ms);
    }

    /// Adds a delivery that was just committed; it waits for [`Queues::publish`]. (A
    /// released held event keeps its earlier log sequence, so staging keeps the order.)
    pub fn stage(&mut self, p: Pending) {
        let at = self.staged.partition_point(|s| s.log_seq <= p.log_seq);
        self.staged.insert(at, p);
    }

    /// The highest log sequence staged: a flush that starts now makes it durable.
    pub fn staged_through(&self) -> Option<u64> {
        self.staged.last().map(|p| p.log_seq)
    }

    /// Whether a delivery is staged (committed, not yet durable).
    pub fn is_staged(&self, subscriber: &str, log_seq: u64) -> bool {
        self.staged
            .iter()
            .any(|p| p.log_seq == log_seq && p.subscriber == subscriber)
    }

    /// A flush made every staged delivery up to `log_seq` durable: they join the queues.
    pub fn publish(&mut self, through: u64) {
        let n = self.staged.partition_point(|p| p.log_seq <= through);
        let ready: Vec<Pending> = self.staged.drain(..n).collect();
        if self.built || self.wanted {
            for p in ready {
                self.add(p);
            }
        }
    }

    /// See [`SubscriberQueues::finish`].
    pub fn finish(&mut self, subscriber: &str, log_seq: u64, now_ms: i64) {
        if let Some(q) = self.subscribers.get_mut(subscriber) {
            q.finish(log_seq, now_ms);
        }
    }

    /// A delivery became a dead letter (after [`Queues::finish`]), or was counted as one
    /// while building.
    pub fn dead_added(&mut self, subscriber: &str) {
        self.subscribers
            .entry(subscriber.to_owned())
            .or_default()
            .dead += 1;
    }

    /// A dead letter was put back in the queue (before [`Queues::add`]).
    pub fn dead_requeued(&mut self, subscriber: &str) {
        if let Some(q) = self.subscribers.get_mut(subscriber) {
            q.dead = q.dead.saturating_sub(1);
        }
    }

    /// A dead letter was removed by retention.
    pub fn dead_removed(&mut self, subscriber: &str) {
        if let Some(q) = self.subscribers.get_mut(subscriber) {
            q.dead = q.dead.saturating_sub(1);
        }
    }

    /// Dead letters of a subscriber.
    pub fn dead(&self, subscriber: &str) -> u64 {
        self.subscribers.get(subscriber).map_or(0, |q| q.dead)
    }

    /// The log sequence of a subscriber's oldest pending delivery.
    pub fn oldest_pending(&self, subscriber: &str) -> Option<u64> {
        self.subscribers
            .get(subscriber)
            .and_then(|q| q.pending.keys().next().copied())
    }

    /// See [`SubscriberQueues::reschedule`].
    pub fn reschedule(&mut self, subscriber: &str, log_seq: u64, due_ms: i64) {
        if let Some(q) = self.subscribers.get_mut(subscriber) {
            q.reschedule(log_seq, due_ms);
        }
    }

    /// Claims up to `limit` heads due at `now_ms`, earliest first, until `until_ms`
    /// (see the module's notes on claims). Returns `(due ms, log sequence)`.
    pub fn claim(
        &mut self,
        subscriber: &str,
        now_ms: i64,
        limit: usize,
        until_ms: i64,
    ) -> Vec<(i64, u64)> {
        match self.subscribers.get_mut(subscriber) {
            Some(q) => q.claim(now_ms, limit, until_ms),
            None => Vec::new(),
        }
    }

    /// See [`SubscriberQueues::release`].
    pub fn release(&mut self, subscriber: &str, log_seq: u64) {
        if let Some(q) = self.subscribers.get_mut(subscriber) {
            q.release(log_seq);
        }
    }

    /// When a subscriber's next delivery can be claimed: the earliest unclaimed head's due
    /// time, or the earliest claim's expiry.
    pub fn next_due(&self, subscriber: &str) -> Option<i64> {
        let q = self.subscribers.get(subscriber)?;
        let head = q.due.first().map(|(ms, _)| *ms);
        let claim = q.claimed.values().min().copied();
        match (head, claim) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Pending deliveries of a subscriber (durable ones).
    pub fn pending(&self, subscriber: &str) -> usize {
        self.subscribers
            .get(subscriber)
            .map_or(0, |q| q.pending.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(sub: &str, seq: u64, app: &str, due_ms: i64) -> Pending {
        Pending {
            subscriber: sub.into(),
            log_seq: seq,
            app: app_key("gh", app),
            due_ms,
        }
    }

    /// What is due at `now`, without claiming it.
    fn due(q: &Queues, now: i64) -> Vec<u64> {
        peek(q, now).into_iter().map(|(_, s)| s).collect()
    }

    fn peek(q: &Queues, now: i64) -> Vec<(i64, u64)> {
        q.subscribers.get("crm").map_or_else(Vec::new, |s| {
            s.due
                .iter()
                .take_while(|(ms, _)| *ms <= now)
                .copied()
                .collect()
        })
    }

    /// a: 1, 3; b: 2 — all for "crm".
    fn setup() -> Queues {
        let mut q = Queues::default();
        for (seq, app) in [(1, "a"), (2, "b"), (3, "a")] {
            q.add(p("crm", seq, app, seq as i64));
        }
        q
    }

    #[test]
    fn each_step_moves_the_heads_as_the_catalogue_says() {
        // (step, due at 100 afterwards)
        type Step = fn(&mut Queues);
        let cases: &[(&str, Step, &[u64])] = &[
            ("built", |_| {}, &[1, 2]),
            (
                "1 delivered: 3 is a's head",
                |q| q.finish("crm", 1, 50),
                &[2, 3],
            ),
            ("2 delivered: b is empty", |q| q.finish("crm", 2, 50), &[1]),
            (
                "1 retried later: not due",
                |q| q.reschedule("crm", 1, 500),
                &[2],
            ),
            (
                "3 finished out of turn: 1 stays head",
                |q| q.finish("crm", 3, 50),
                &[1, 2],
            ),
            (
                "unknown sequence: nothing moves",
                |q| q.finish("crm", 99, 50),
                &[1, 2],
            ),
            (
                "another subscriber: nothing moves",
                |q| q.finish("slack", 1, 50),
                &[1, 2],
            ),
            (
                "an earlier delivery re-queued becomes head, due when re-queued",
                |q| {
                    q.finish("crm", 1, 50);
                    q.add(p("crm", 1, "a", 60));
                },
                &[2, 1],
            ),
        ];
        for (name, step, want) in cases {
            let mut q = setup();
            step(&mut q);
            assert_eq!(due(&q, 100), *want, "{name}");
        }
    }

    #[test]
    fn a_finished_head_hands_over_at_now_or_later() {
        let mut q = Queues::default();
        q.add(p("crm", 1, "a", 10));
        q.add(p("crm", 2, "a", 20));
        q.add(p("crm", 3, "b", 30));
        q.finish("crm", 1, 40);
        assert_eq!(
            peek(&q, 100),
            [(30, 3), (40, 2)],
            "the next head queues behind what was already due"
        );
        assert_eq!(q.next_due("crm"), Some(30));
        assert_eq!(q.pending("crm"), 2);
        assert_eq!(q.oldest_pending("crm"), Some(2));
    }

    #[test]
    fn dead_letters_are_counted_in_and_out() {
        let mut q = setup();
        q.finish("crm", 1, 50);
        q.dead_added("crm");
        q.dead_added("slack");
        assert_eq!((q.dead("crm"), q.dead("slack"), q.dead("teams")), (1, 1, 0));
        assert_eq!(q.oldest_pending("crm"), Some(2));
        q.dead_requeued("crm");
        q.add(p("crm", 1, "a", 60));
        assert_eq!(q.dead("crm"), 0);
        assert_eq!(q.oldest_pending("crm"), Some(1));
        q.dead_requeued("teams");
        assert_eq!(q.dead("teams"), 0, "never below zero");
    }

    #[test]
    fn a_re_queued_head_demotes_the_current_one() {
        let mut q = Queues::default();
        q.add(p("crm", 3, "a", 30));
        q.add(p("crm", 1, "a", 60));
        assert_eq!(due(&q, 100), [1]);
        q.finish("crm", 1, 70);
        assert_eq!(peek(&q, 100), [(70, 3)]);
    }

    #[test]
    fn claims_respect_time_and_limit() {
        let mut q = Queues::default();
        for seq in 1..=6 {
            q.add(p("crm", seq, &format!("app{seq}"), seq as i64 * 10));
        }
        assert_eq!(due(&q, 35), [1, 2, 3]);
        assert_eq!(q.claim("crm", 100, 2, 1_000), [(10, 1), (20, 2)]);
        assert_eq!(
            q.claim("crm", 100, 2, 1_000),
            [(30, 3), (40, 4)],
            "a claimed delivery is not handed out again"
        );
        assert_eq!(q.claim("crm", 55, 10, 1_000), [(50, 5)], "6 is not due yet");
        assert!(q.claim("slack", 100, 3, 1_000).is_empty());
        assert_eq!(q.next_due("slack"), None);
        assert_eq!(q.next_due("crm"), Some(60));
    }

    #[test]
    fn a_claim_ends_with_its_attempt_or_when_it_expires() {
        // (what happens to claimed delivery 1 of app a (a: 1, 3; b: 2), due at 100 after)
        type Step = fn(&mut Queues);
        let cases: &[(&str, Step, &[u64])] = &[
            ("still claimed", |_| {}, &[2]),
            ("delivered: 3 is due", |q| q.finish("crm", 1, 50), &[2, 3]),
            (
                "retried: due again",
                |q| q.reschedule("crm", 1, 60),
                &[2, 1],
            ),
            (
                "retried later: not due",
                |q| q.reschedule("crm", 1, 500),
                &[2],
            ),
            ("released: due as it was", |q| q.release("crm", 1), &[1, 2]),
            (
                "the claim expired: due again",
                |q| {
                    q.subscribers
                        .get_mut("crm")
                        .expect("crm")
                        .expire_claims(100)
                },
                &[1, 2],
            ),
            (
                "an earlier delivery re-queued: it is head, 1 stays claimed",
                |q| q.add(p("crm", 0, "a", 70)),
                &[2, 0],
            ),
        ];
        for (name, step, want) in cases {
            let mut q = setup();
            assert_eq!(q.claim("crm", 1, 1, 100), [(1, 1)], "{name}");
            step(&mut q);
            assert_eq!(due(&q, 100), *want, "{name}");
        }
    }

    #[test]
    fn an_expired_claim_is_handed_out_again_and_next_due_counts_it() {
        let mut q = setup();
        assert_eq!(q.claim("crm", 10, 10, 40), [(1, 1), (2, 2)]);
        assert_eq!(q.next_due("crm"), Some(40), "when the claims expire");
        assert!(q.claim("crm", 39, 10, 80).is_empty());
        assert_eq!(q.claim("crm", 40, 10, 80), [(1, 1), (2, 2)]);
        q.finish("crm", 1, 45);
        assert_eq!(q.claim("crm", 50, 10, 90), [(45, 3)]);
    }

    #[test]
    fn a_demoted_head_in_flight_is_not_due_twice() {
        let mut q = Queues::default();
        q.add(p("crm", 5, "a", 10));
        assert_eq!(q.claim("crm", 10, 10, 1_000), [(10, 5)]);
        // A dead letter of the same application is put back while 5 is in flight.
        q.add(p("crm", 2, "a", 20));
        assert_eq!(q.claim("crm", 20, 10, 1_000), [(20, 2)]);
        q.finish("crm", 2, 30);
        assert!(
            q.claim("crm", 40, 10, 1_000).is_empty(),
            "5 is still claimed: not handed out again"
        );
        q.finish("crm", 5, 50);
        assert_eq!(q.pending("crm"), 0);
        assert_eq!(q.next_due("crm"), None);
    }

    #[test]
    fn staged_deliveries_wait_for_the_flush_that_covers_them() {
        let mut q = Queues {
            wanted: true,
            ..Queues::default()
        };
        q.stage(p("crm", 1, "a", 1));
        q.stage(p("crm", 2, "b", 2));
        assert!(due(&q, 100).is_empty(), "not durable yet");
        assert_eq!(q.staged_through(), Some(2));
        assert!(q.is_staged("crm", 2));
        q.stage(p("crm", 4, "d", 4));
        q.stage(p("crm", 3, "c", 3));
        assert_eq!(
            q.staged_through(),
            Some(4),
            "a released event keeps its place"
        );
        q.publish(2);
        assert_eq!(
            due(&q, 100),
            [1, 2],
            "a flush started before 3 was committed"
        );
        assert!(!q.is_staged("crm", 2));
        q.publish(4);
        assert_eq!(due(&q, 100), [1, 2, 3, 4]);
        assert_eq!(q.staged_through(), None);
    }

    #[test]
    fn published_deliveries_are_kept_only_for_a_deliverer() {
        let mut q = Queues::default();
        q.stage(p("crm", 1, "a", 1));
        q.publish(1);
        assert_eq!(q.pending("crm"), 0, "nobody delivers: not kept");
        assert_eq!(q.staged_through(), None, "but no longer staged either");
        q.wanted = true;
        q.stage(p("crm", 2, "b", 2));
        q.publish(2);
        assert_eq!(due(&q, 100), [2]);
    }

    #[test]
    fn adding_twice_is_harmless() {
        let mut q = setup();
        q.add(p("crm", 1, "a", 1));
        q.finish("crm", 1, 50);
        assert_eq!(due(&q, 100), [2, 3]);
        assert_eq!(q.pending("crm"), 2);
    }
}
