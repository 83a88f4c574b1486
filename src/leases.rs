//! Which integrations this process polls: one poller per integration across replicas.
//!
//! Each replica holds a lease per integration it polls, renews it well inside the lease's
//! time to live, and takes its fair share of the integrations: `ceil(integrations / live
//! replicas)`, live replicas counted by heartbeats in the store. A replica over its share
//! (a new one joined) gives leases back; a dead replica's leases expire and the survivors
//! take them. The store fences: a page commit by a replica whose lease lapsed fails, so a
//! paused replica that wakes up after its lease moved commits nothing.
//!
//! With the embedded store (one process) every lease is granted at once and this is a
//! no-op in effect.
//!
//! [`plan`] is the pure part (what to try, what to give back), table-tested; [`run`] is the
//! loop around it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::Store;
use crate::store_health::StoreHealth;

/// What one round of the lease loop does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Held leases to renew (up to the fair share).
    pub renew: Vec<String>,
    /// Leases to give back (over the fair share).
    pub release: Vec<String>,
    /// Leases not held, in the order to try them until the share is full. All of them: a
    /// free one may sit behind any number held by live replicas.
    pub candidates: Vec<String>,
    /// How many leases this replica should hold.
    pub share: usize,
}

/// The fair share of `integrations` among `live` replicas.
pub fn fair_share(integrations: usize, live: usize) -> usize {
    integrations.div_ceil(live.max(1))
}

/// Plans one round: renew what is held (up to the fair share), give back the rest, and
/// list the others to try, in order, until the share is full. `start` rotates where a
/// replica begins looking among the integrations, so replicas starting together reach for
/// different ones first.
pub fn plan(integrations: &[String], held: &BTreeSet<String>, live: usize, start: usize) -> Plan {
    let share = fair_share(integrations.len(), live);
    let mut out = Plan {
        share,
        ..Plan::default()
    };
    let n = integrations.len();
    let order = (0..n).map(|i| &integrations[(start + i) % n.max(1)]);
    let (mine, others): (Vec<&String>, Vec<&String>) = order.partition(|id| held.contains(*id));
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

/// The integrations this process holds leases on, as the pollers watch them.
#[derive(Debug, Clone)]
pub struct Held {
    rx: watch::Receiver<BTreeSet<String>>,
}

impl Held {
    /// Whether this process polls `integration_id` now.
    pub fn holds(&self, integration_id: &str) -> bool {
        self.rx.borrow().contains(integration_id)
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
    integrations: Vec<String>,
    ttl: Duration,
    start: usize,
    health: StoreHealth,
    tx: watch::Sender<BTreeSet<String>>,
}

impl LeaseLoop {
    pub fn new(
        store: Arc<Store>,
        integrations: Vec<String>,
        ttl: Duration,
        health: StoreHealth,
    ) -> (Self, Held) {
        let (tx, rx) = watch::channel(BTreeSet::new());
        let start = store.replica_id().bytes().map(usize::from).sum::<usize>();
        (
            Self {
                store,
                integrations,
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
            &self.integrations,
            &held,
            live,
            self.start % self.integrations.len().max(1),
        );
        let mut now_held = BTreeSet::new();
        let renewals = plan.renew.iter().map(|id| (id, true));
        let candidates = plan.candidates.iter().map(|id| (id, false));
        for (id, renewal) in renewals.chain(candidates) {
            if !renewal && now_held.len() >= plan.share {
                break;
            }
            match self.store.try_lease(id, self.ttl).await {
                Ok(true) => {
                    if !held.contains(id) {
                        tracing::info!(integration = %id, live_replicas = live, "lease taken: this replica polls it");
                    }
                    now_held.insert(id.clone());
                }
                Ok(false) => {
                    if held.contains(id) {
                        tracing::warn!(integration = %id, "lease lost to another replica");
                    }
                }
                Err(e) => {
                    self.health.failed(operation, &e);
                    tracing::error!(integration = %id, "cannot take or renew a lease: {e}");
                    if held.contains(id) {
                        // Still ours until it lapses; the store fences if it does.
                        now_held.insert(id.clone());
                    }
                }
            }
        }
        for id in &plan.release {
            match self.store.release_lease(id).await {
                Ok(()) => {
                    tracing::info!(integration = %id, live_replicas = live, "lease given back: over this replica's share")
                }
                Err(e) => {
                    tracing::warn!(integration = %id, "cannot give a lease back (it will lapse): {e}")
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
            if let Err(e) = self.store.release_lease(&id).await {
                tracing::warn!(integration = %id, "cannot give a lease back at shutdown (it will lapse): {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("i{i}")).collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
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
        // (case, integrations, held, live replicas, start, renew, release, candidates, share)
        type Case<'a> = (
            &'a str,
            usize,
            &'a [&'a str],
            usize,
            usize,
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            usize,
        );
        let cases: &[Case] = &[
            (
                "alone: everything",
                3,
                &[],
                1,
                0,
                &[],
                &[],
                &["i0", "i1", "i2"],
                3,
            ),
            (
                "alone, rotated start",
                3,
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
                4,
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
                4,
                &["i0", "i1", "i2", "i3"],
                2,
                0,
                &["i0", "i1"],
                &["i2", "i3"],
                &[],
                2,
            ),
            ("no integrations", 0, &[], 3, 0, &[], &[], &[], 0),
        ];
        for (name, n, held, live, start, renew, release, candidates, share) in cases {
            let got = plan(&ids(*n), &set(held), *live, *start);
            assert_eq!(got.renew, *renew, "{name}: renew");
            assert_eq!(got.release, *release, "{name}: release");
            assert_eq!(got.candidates, *candidates, "{name}: candidates");
            assert_eq!(got.share, *share, "{name}: share");
        }
    }

    #[tokio::test]
    async fn with_the_embedded_store_every_integration_is_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_sled(&dir.path().join("db"), 1 << 20).expect("store"));
        let (lease_loop, held) = LeaseLoop::new(
            store,
            ids(3),
            Duration::from_secs(15),
            StoreHealth::default(),
        );
        lease_loop.round().await;
        assert!(["i0", "i1", "i2"].iter().all(|id| held.holds(id)));
        assert!(!held.holds("i9"));
    }
}
