//! Who does which work: one poller per integration and one deliverer per subscriber across
//! replicas.
//!
//! Each replica holds a lease per integration it polls and per subscriber it delivers to,
//! renews them well inside the leases' time to live, and takes its fair share of the work:
//! `ceil((integrations + subscribers) / live replicas)` leases, live replicas counted by
//! heartbeats in the store. A replica over its share (a new one joined) gives leases back,
//! subscribers before integrations (handing a subscriber over interrupts nothing; handing
//! an integration over waits for its next poll); a dead replica's leases expire and the
//! survivors take them.
//!
//! The two kinds guard different things. The store fences integrations: a page commit by a
//! replica whose lease lapsed fails, so a paused replica that wakes up after its lease
//! moved commits nothing. A subscriber's lease only decides which replica claims its
//! deliveries: claims keep each delivery on one replica and the order per application
//! whoever claims, and a lease that moves while deliveries are in flight lets them finish.
//! One claimer per subscriber keeps its claims large (three replicas splitting one queue
//! claimed 12 rows at a time instead of 21, and lost 18 % of the throughput to it) and
//! makes its `max_in_flight` and `rate_limit` hold across the cluster.
//!
//! With the embedded store (one process) every lease is granted at once and this is a
//! no-op in effect.
//!
//! [`plan`] is the pure part (what to try, what to give back), table-tested; [`run`] is the
//! loop around it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};
use crate::store_health::StoreHealth;

/// A piece of work one replica at a time does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    /// Polling an integration (and committing its pages).
    Integration(String),
    /// Claiming and sending a subscriber's deliveries.
    Subscriber(String),
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Integration(id) => write!(f, "integration {id}"),
            Unit::Subscriber(name) => write!(f, "subscriber {name}"),
        }
    }
}

impl Unit {
    async fn try_lease(&self, store: &Store, ttl: Duration) -> Result<bool, StoreError> {
        match self {
            Unit::Integration(id) => store.try_lease(id, ttl).await,
            Unit::Subscriber(name) => store.try_delivery_lease(name, ttl).await,
        }
    }

    async fn release(&self, store: &Store) -> Result<(), StoreError> {
        match self {
            Unit::Integration(id) => store.release_lease(id).await,
            Unit::Subscriber(name) => store.release_delivery_lease(name).await,
        }
    }

    /// What holding it means, for log lines.
    fn role(&self) -> &'static str {
        match self {
            Unit::Integration(_) => "this replica polls it",
            Unit::Subscriber(_) => "this replica delivers to it",
        }
    }
}

/// What one round of the lease loop does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Held leases to renew (up to the fair share).
    pub renew: Vec<Unit>,
    /// Leases to give back (over the fair share).
    pub release: Vec<Unit>,
    /// Leases not held, in the order to try them until the share is full. All of them: a
    /// free one may sit behind any number held by live replicas.
    pub candidates: Vec<Unit>,
    /// How many leases this replica should hold.
    pub share: usize,
}

/// The fair share of `units` of work among `live` replicas.
pub fn fair_share(units: usize, live: usize) -> usize {
    units.div_ceil(live.max(1))
}

/// Plans one round: renew what is held (up to the fair share; integrations kept before
/// subscribers), give back the rest, and list the others to try, in order, until the share
/// is full. `start` rotates where a replica begins looking among the units, so replicas
/// starting together reach for different ones first.
pub fn plan(units: &[Unit], held: &BTreeSet<Unit>, live: usize, start: usize) -> Plan {
    let share = fair_share(units.len(), live);
    let mut out = Plan {
        share,
        ..Plan::default()
    };
    let n = units.len();
    let order = (0..n).map(|i| &units[(start + i) % n.max(1)]);
    let (mut mine, others): (Vec<&Unit>, Vec<&Unit>) = order.partition(|u| held.contains(*u));
    // Stable: within a kind, the rotated order stays.
    mine.sort_by_key(|u| matches!(u, Unit::Subscriber(_)));
    for (i, id) in mine.into_iter().enumerate() {
        if i < share {
            out.renew.push(id.clone());
        } else {
            out.release.push(id.clone());
        }
    }
    out.candidates = others.into_iter().cloned().collect();
    out
}

/// The leases this process holds, as the pollers and delivery workers watch them.
#[derive(Debug, Clone)]
pub struct Held {
    rx: watch::Receiver<BTreeSet<Unit>>,
}

impl Held {
    /// Whether this process polls `integration_id` now.
    pub fn holds(&self, integration_id: &str) -> bool {
        self.rx
            .borrow()
            .iter()
            .any(|u| matches!(u, Unit::Integration(id) if id == integration_id))
    }

    /// Whether this process claims `subscriber`'s deliveries now.
    pub fn delivers(&self, subscriber: &str) -> bool {
        self.rx
            .borrow()
            .iter()
            .any(|u| matches!(u, Unit::Subscriber(name) if name == subscriber))
    }

    /// Waits until the held set changes.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The lease loop ended (shutdown): nothing will change any more.
            std::future::pending::<()>().await;
        }
    }
}

/// Runs the lease loop: one round at once, then every `ttl / 3`.
pub struct LeaseLoop {
    store: Arc<Store>,
    units: Vec<Unit>,
    ttl: Duration,
    start: usize,
    health: StoreHealth,
    tx: watch::Sender<BTreeSet<Unit>>,
}

impl LeaseLoop {
    pub fn new(
        store: Arc<Store>,
        units: Vec<Unit>,
        ttl: Duration,
        health: StoreHealth,
    ) -> (Self, Held) {
        let (tx, rx) = watch::channel(BTreeSet::new());
        let start = store.replica_id().bytes().map(usize::from).sum::<usize>();
        (
            Self {
                store,
                units,
                ttl,
                start,
                health,
                tx,
            },
            Held { rx },
        )
    }

    /// One round: heartbeat, plan, take, renew and give back; publishes what is held.
    pub async fn round(&self) {
        let operation = "leases: heartbeat and renewal";
        let live = match self.store.heartbeat(self.ttl).await {
            Ok(live) => {
                self.health.succeeded(operation);
                live
            }
            Err(e) => {
                self.health.failed(operation, &e);
                tracing::error!("cannot renew this replica's heartbeat: {e}");
                // Without the store nothing can be committed anyway; keep what we think
                // we hold until the leases lapse (the store fences).
                return;
            }
        };
        let held = self.tx.borrow().clone();
        let plan = plan(
            &self.units,
            &held,
            live,
            self.start % self.units.len().max(1),
        );
        let mut now_held = BTreeSet::new();
        let renewals = plan.renew.iter().map(|id| (id, true));
        let candidates = plan.candidates.iter().map(|id| (id, false));
        for (id, renewal) in renewals.chain(candidates) {
            if !renewal && now_held.len() >= plan.share {
                break;
            }
            match id.try_lease(&self.store, self.ttl).await {
                Ok(true) => {
                    if !held.contains(id) {
                        tracing::info!(unit = %id, live_replicas = live, "lease taken: {}", id.role());
                    }
                    now_held.insert(id.clone());
                }
                Ok(false) => {
                    if held.contains(id) {
                        tracing::warn!(unit = %id, "lease lost to another replica");
                    }
                }
                Err(e) => {
                    self.health.failed(operation, &e);
                    tracing::error!(unit = %id, "cannot take or renew a lease: {e}");
                    if held.contains(id) {
                        // Still ours until it lapses; the store fences if it does.
                        now_held.insert(id.clone());
                    }
                }
            }
        }
        for id in &plan.release {
            match id.release(&self.store).await {
                Ok(()) => {
                    tracing::info!(unit = %id, live_replicas = live, "lease given back: over this replica's share")
                }
                Err(e) => {
                    tracing::warn!(unit = %id, "cannot give a lease back (it will lapse): {e}")
                }
            }
        }
        self.tx.send_if_modified(|held| {
            if *held == now_held {
                false
            } else {
                *held = now_held;
                true
            }
        });
    }

    /// Rounds every `ttl / 3` until `shutdown`; then gives every lease back, so another
    /// replica takes over at once instead of after the lease lapses.
    pub async fn run(self, shutdown: CancellationToken) {
        let every = (self.ttl / 3).max(Duration::from_millis(100));
        loop {
            self.round().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
        let held = self.tx.borrow().clone();
        self.tx.send_replace(BTreeSet::new());
        for id in held {
            if let Err(e) = id.release(&self.store).await {
                tracing::warn!(unit = %id, "cannot give a lease back at shutdown (it will lapse): {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "i3" is integration i3, "s3" subscriber s3.
    fn unit(name: &str) -> Unit {
        match name.as_bytes().first() {
            Some(b'i') => Unit::Integration(name.to_string()),
            Some(b's') => Unit::Subscriber(name.to_string()),
            _ => panic!("a unit's name starts with i or s: {name}"),
        }
    }

    fn units(names: &[&str]) -> Vec<Unit> {
        names.iter().map(|n| unit(n)).collect()
    }

    fn set(names: &[&str]) -> BTreeSet<Unit> {
        names.iter().map(|n| unit(n)).collect()
    }

    #[test]
    fn the_fair_share_rounds_up() {
        let cases = [
            (0, 1, 0),
            (1, 1, 1),
            (5, 2, 3),
            (6, 3, 2),
            (7, 3, 3),
            (2, 5, 1),
            (4, 0, 4),
        ];
        for (integrations, live, want) in cases {
            assert_eq!(
                fair_share(integrations, live),
                want,
                "{integrations}/{live}"
            );
        }
    }

    #[test]
    fn a_round_renews_gives_back_and_lists_every_other_to_try() {
        // (case, units, held, live replicas, start, renew, release, candidates, share)
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            &'a [&'a str],
            usize,
            usize,
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            usize,
        );
        let four: &[&str] = &["i0", "i1", "i2", "i3"];
        let cases: &[Case] = &[
            (
                "alone: everything",
                &["i0", "i1", "s0"],
                &[],
                1,
                0,
                &[],
                &[],
                &["i0", "i1", "s0"],
                3,
            ),
            (
                "alone, rotated start",
                &["i0", "i1", "i2"],
                &[],
                1,
                1,
                &[],
                &[],
                &["i1", "i2", "i0"],
                3,
            ),
            (
                "two replicas: every other one is a candidate, the share is half",
                four,
                &["i3"],
                2,
                0,
                &["i3"],
                &[],
                &["i0", "i1", "i2"],
                2,
            ),
            (
                "a new replica joined: give back the excess",
                four,
                &["i0", "i1", "i2", "i3"],
                2,
                0,
                &["i0", "i1"],
                &["i2", "i3"],
                &[],
                2,
            ),
            (
                "over the share: subscribers go back before integrations",
                &["i0", "s0"],
                &["i0", "s0"],
                2,
                1,
                &["i0"],
                &["s0"],
                &[],
                1,
            ),
            (
                "one integration, one subscriber, three replicas: one each",
                &["i0", "s0"],
                &["i0"],
                3,
                0,
                &["i0"],
                &[],
                &["s0"],
                1,
            ),
            (
                "subscribers count toward the share",
                &["i0", "i1", "s0", "s1"],
                &["s1"],
                2,
                2,
                &["s1"],
                &[],
                &["s0", "i0", "i1"],
                2,
            ),
            ("nothing to do", &[], &[], 3, 0, &[], &[], &[], 0),
        ];
        for (name, all, held, live, start, renew, release, candidates, share) in cases {
            let got = plan(&units(all), &set(held), *live, *start);
            assert_eq!(got.renew, units(renew), "{name}: renew");
            assert_eq!(got.release, units(release), "{name}: release");
            assert_eq!(got.candidates, units(candidates), "{name}: candidates");
            assert_eq!(got.share, *share, "{name}: share");
        }
    }

    #[tokio::test]
    async fn with_the_embedded_store_every_lease_is_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_sled(&dir.path().join("db"), 1 << 20).expect("store"));
        let (lease_loop, held) = LeaseLoop::new(
            store,
            units(&["i0", "i1", "i2", "s0"]),
            Duration::from_secs(15),
            StoreHealth::default(),
        );
        lease_loop.round().await;
        assert!(["i0", "i1", "i2"].iter().all(|id| held.holds(id)));
        assert!(held.delivers("s0"));
        assert!(!held.holds("i9"));
        assert!(!held.holds("s0"), "a subscriber is not an integration");
        assert!(!held.delivers("i0"), "an integration is not a subscriber");
    }
}
