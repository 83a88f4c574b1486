//! Applying `[retention]`: the sweep the daemon runs every `sweep_interval`, and the one
//! `hirehook store compact` runs now.
//!
//! A sweep is a loop of small batches ([`crate::store::Store::sweep`], at most [`BATCH`]
//! items per class each), yielding between them: each batch holds the store's locks only
//! for itself, so syncs and deliveries go on between batches (the longest pause a batch
//! causes is measured in `BENCHMARKS.md`). "Now" comes from a [`Clock`], so tests sweep
//! at any time they like.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::RewriteGrowth;
use crate::metrics::Metrics;
use crate::store::{RetentionPolicy, Store, StoreError, SweepCursor, SweepReport};
use crate::store_health::StoreHealth;

/// Items per class a batch looks at (events) or removes (snapshots, dropped ids).
pub const BATCH: usize = 200;

/// The least growth of sled's files that makes the daemon rewrite them, whatever
/// `store.rewrite_growth` says: a small store is not rewritten for a few megabytes.
pub const REWRITE_MIN_GROWTH: u64 = 8 << 20;

/// Whether files now `size` bytes, `baseline` bytes after the last rewrite (or at start),
/// grew enough to be rewritten: by `fraction` of the baseline, and by at least `min_bytes`.
pub fn grown_enough(baseline: u64, size: u64, fraction: f64, min_bytes: u64) -> bool {
    let grown = size.saturating_sub(baseline);
    grown >= min_bytes && grown as f64 >= baseline as f64 * fraction
}

/// What one sweep (all its batches) did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SweepOutcome {
    /// What was removed, by class.
    pub removed: SweepReport,
    /// Batches run.
    pub batches: u32,
    /// The longest a single batch took: how long it held the store's locks at most.
    pub longest_batch: Duration,
    /// The whole sweep.
    pub took: Duration,
}

/// Runs retention against a store.
#[derive(Debug, Clone)]
pub struct Sweeper {
    store: std::sync::Arc<Store>,
    policy: RetentionPolicy,
    clock: Clock,
    batch: usize,
    metrics: Option<Metrics>,
    /// sled: rewrite the files online once they grew by this fraction, and at least
    /// this many bytes (`None`: never).
    rewrite: Option<(f64, u64)>,
}

impl Sweeper {
    /// A sweeper applying `policy` to `store`, reading "now" from `clock`.
    pub fn new(store: std::sync::Arc<Store>, policy: RetentionPolicy, clock: Clock) -> Self {
        Self {
            store,
            policy,
            clock,
            batch: BATCH,
            metrics: None,
            rewrite: None,
        }
    }

    /// After each sweep of [`Sweeper::run`], rewrites a sled store's files online once
    /// they grew by `growth` since the first sweep or the last rewrite (and by at least
    /// [`REWRITE_MIN_GROWTH`]). Nothing on PostgreSQL.
    pub fn with_rewrite(mut self, growth: RewriteGrowth) -> Self {
        self.rewrite = match growth {
            RewriteGrowth::Never => None,
            RewriteGrowth::By(fraction) => Some((fraction, REWRITE_MIN_GROWTH)),
        };
        self
    }

    /// The least growth that triggers a rewrite, instead of [`REWRITE_MIN_GROWTH`] (tests).
    pub fn with_rewrite_min_growth(mut self, bytes: u64) -> Self {
        if let Some((_, min)) = &mut self.rewrite {
            *min = bytes;
        }
        self
    }

    /// Rewrites a sled store's files online if they grew enough since `baseline` (their
    /// size after the last rewrite; `None` the first time: it only records it). Returns
    /// the rewrite's report when it ran.
    pub async fn rewrite_if_grown(
        &self,
        baseline: &mut Option<u64>,
    ) -> Result<Option<crate::store::sled::rewrite::RewriteReport>, StoreError> {
        let Some((fraction, min_bytes)) = self.rewrite else {
            return Ok(None);
        };
        let Some(size) = self.store.sled_files_size().await else {
            return Ok(None);
        };
        let Some(base) = *baseline else {
            *baseline = Some(size);
            return Ok(None);
        };
        if !grown_enough(base, size, fraction, min_bytes) {
            return Ok(None);
        }
        let report = self.store.rewrite_online().await?;
        if let Some(r) = &report {
            *baseline = Some(r.after);
            tracing::info!(
                before_bytes = r.before,
                after_bytes = r.after,
                keys = r.keys,
                paused_ms = r.took.as_millis() as u64,
                "store files rewritten online (store.rewrite_growth); syncs and deliveries \
                 waited for it"
            );
        }
        Ok(report)
    }

    /// Counts what it removes in `metrics` (`hirehook_retention_removed_total`).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Batches of `batch` items per class instead of [`BATCH`].
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// One sweep: batches until nothing old enough is left (as of its start), yielding
    /// between them.
    pub async fn sweep(&self) -> Result<SweepOutcome, StoreError> {
        let started = Instant::now();
        let now = self.clock.now();
        let mut cursor = SweepCursor::default();
        let mut outcome = SweepOutcome::default();
        loop {
            let batch_started = Instant::now();
            let report = self
                .store
                .sweep(&self.policy, now, self.batch, &mut cursor)
                .await?;
            outcome.longest_batch = outcome.longest_batch.max(batch_started.elapsed());
            outcome.batches += 1;
            outcome.removed.add(&report);
            if let Some(metrics) = &self.metrics {
                metrics.retention_removed(&report);
            }
            if !report.more {
                break;
            }
            tokio::task::yield_now().await;
        }
        outcome.took = started.elapsed();
        Ok(outcome)
    }

    /// Sweeps every `interval` (the first right away) until `shutdown`, logging what each
    /// sweep removed (counts only) and reporting store failures to `health`. A sweep cut
    /// by shutdown loses nothing: each batch is atomic.
    pub async fn run(self, interval: Duration, health: StoreHealth, shutdown: CancellationToken) {
        const OPERATION: &str = "retention sweep";
        const REWRITE: &str = "store rewrite";
        let mut baseline = None;
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                result = self.sweep() => result,
            };
            match result {
                Ok(outcome) => {
                    health.succeeded(OPERATION);
                    log(&outcome);
                    match self.rewrite_if_grown(&mut baseline).await {
                        Ok(Some(_)) => health.succeeded(REWRITE),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(
                                "rewriting the store's files failed (the next sweep tries again): {e}"
                            );
                            health.failed(REWRITE, &e);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!("retention sweep failed (the next one tries again): {e}");
                    health.failed(OPERATION, &e);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// One line per sweep: info when it removed something, debug otherwise. Counts only.
fn log(outcome: &SweepOutcome) {
    let r = &outcome.removed;
    let took_ms = outcome.took.as_millis() as u64;
    let longest_batch_ms = outcome.longest_batch.as_millis() as u64;
    if r.is_empty() {
        tracing::debug!(
            batches = outcome.batches,
            took_ms,
            "retention sweep: nothing old enough"
        );
    } else {
        tracing::info!(
            events = r.events,
            deliveries = r.deliveries,
            attempts = r.attempts,
            event_ids = r.event_ids,
            snapshots = r.snapshots,
            batches = outcome.batches,
            longest_batch_ms,
            took_ms,
            "retention sweep removed what was old enough"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::EventType;
    use crate::store::{NewEvent, PageCommit};

    fn at(days: i64) -> crate::ats::Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000 + days * 86_400, 0).unwrap_or_default()
    }

    fn event(id: &str, detected_at: crate::ats::Timestamp) -> NewEvent {
        NewEvent {
            id: id.into(),
            event_type: EventType::StageChanged,
            application_id: id.into(),
            sequence: 1,
            detected_at,
            body: b"{}".to_vec(),
            subscribers: vec![],
            hold: false,
        }
    }

    /// Commits `events` (no snapshots) to integration `gh:1`.
    async fn commit(store: &Store, events: Vec<NewEvent>) {
        store
            .commit_page(
                "gh:1",
                PageCommit {
                    events,
                    ..Default::default()
                },
            )
            .await
            .expect("commit");
    }

    async fn ids(store: &Store) -> Vec<String> {
        store
            .events(&Default::default())
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.id)
            .collect()
    }

    #[test]
    fn a_rewrite_waits_for_enough_growth() {
        const MIB: u64 = 1 << 20;
        // (baseline, size now, fraction, least growth, rewrite?)
        let table = [
            (100 * MIB, 199 * MIB, 1.0, 8 * MIB, false),
            (100 * MIB, 200 * MIB, 1.0, 8 * MIB, true),
            (100 * MIB, 120 * MIB, 0.2, 8 * MIB, true),
            (100 * MIB, 119 * MIB, 0.2, 8 * MIB, false),
            // Small stores: the least growth decides.
            (2 * MIB, 9 * MIB, 1.0, 8 * MIB, false),
            (2 * MIB, 10 * MIB, 1.0, 8 * MIB, true),
            // Shrunk (a sweep's rewrite elsewhere, files removed): never.
            (100 * MIB, 50 * MIB, 0.01, 0, false),
            (0, 0, 1.0, 0, true),
        ];
        for (baseline, size, fraction, min, want) in table {
            assert_eq!(
                grown_enough(baseline, size, fraction, min),
                want,
                "baseline {baseline}, size {size}, fraction {fraction}, min {min}"
            );
        }
    }

    /// After a sweep removed most of a sled store, the daemon's check rewrites the files
    /// online once they grew past the baseline: the files shrink, what was kept reads back,
    /// and the store takes new commits afterwards.
    #[tokio::test]
    async fn a_grown_sled_store_is_rewritten_online_after_a_sweep() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_sled(dir.path(), 1 << 20).expect("store"));
        let policy = RetentionPolicy {
            events: Some(Duration::from_secs(30 * 86_400)),
            deleted_applications: None,
        };
        let sweeper = Sweeper::new(store.clone(), policy, Clock::tokio_at(at(100)))
            .with_rewrite(RewriteGrowth::By(0.5))
            .with_rewrite_min_growth(0);
        let mut baseline = None;
        assert_eq!(
            sweeper
                .rewrite_if_grown(&mut baseline)
                .await
                .expect("check"),
            None,
            "the first check only records the baseline"
        );
        let body = vec![b'x'; 2048];
        for page in 0..40 {
            let events = (0..50)
                .map(|i| {
                    let mut e = event(&format!("old-{page}-{i}"), at(0));
                    e.body = body.clone();
                    e
                })
                .collect();
            commit(&store, events).await;
        }
        commit(&store, vec![event("young", at(99))]).await;
        store.flush().await.expect("flush");
        sweeper.sweep().await.expect("sweep");
        store.flush().await.expect("flush");
        let grown = store.sled_files_size().await.expect("sled");
        let report = sweeper
            .rewrite_if_grown(&mut baseline)
            .await
            .expect("rewrite")
            .expect("the files grew by more than half: rewritten");
        assert!(
            report.after < grown / 2,
            "the rewrite gave the space back: {} bytes before, {} after",
            grown,
            report.after
        );
        assert_eq!(
            baseline,
            Some(report.after),
            "the next growth counts from here"
        );
        assert_eq!(ids(&store).await, ["young"]);
        commit(&store, vec![event("after", at(100))]).await;
        assert_eq!(ids(&store).await, ["young", "after"]);
        assert_eq!(
            sweeper
                .rewrite_if_grown(&mut baseline)
                .await
                .expect("check"),
            None,
            "no growth since: no rewrite"
        );
    }

    /// The daemon's task on tokio's paused clock: a sweep at start, then one per interval,
    /// each removing what has aged past the horizon by then; shutdown ends it.
    #[tokio::test(start_paused = true)]
    async fn the_task_sweeps_every_interval_until_shut_down() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_sled(dir.path(), 1 << 20).expect("store"));
        commit(
            &store,
            vec![event("a", at(0)), event("b", at(1)), event("c", at(5))],
        )
        .await;
        let policy = RetentionPolicy {
            events: Some(Duration::from_secs(30 * 86_400)),
            deleted_applications: None,
        };
        let metrics = Metrics::new();
        // "Now" is day 30 and a half: `a` is old enough at once, `b` a day later.
        let clock = Clock::tokio_at(at(30) + chrono::TimeDelta::hours(12));
        let sweeper = Sweeper::new(store.clone(), policy, clock)
            .with_metrics(metrics.clone())
            .with_batch(1);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sweeper.run(
            Duration::from_secs(86_400),
            StoreHealth::default(),
            shutdown.clone(),
        ));
        // The sweep at start runs on the blocking pool: let it finish.
        for _ in 0..50 {
            if ids(&store).await == ["b", "c"] {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(ids(&store).await, ["b", "c"]);
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        for _ in 0..50 {
            if ids(&store).await == ["c"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(ids(&store).await, ["c"]);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends at shutdown")
            .expect("no panic");

        let config = crate::config::Config::from_str_with_env(
            "[kombo]\napi_key = \"k\"\n[[integrations]]\nid = \"gh:1\"\n",
            std::path::Path::new("t.toml"),
            |_| None,
        )
        .expect("config");
        let text = metrics.render(&store, &config).await.expect("render");
        for want in [
            "hirehook_retention_removed_total{class=\"events\"} 2",
            "hirehook_retention_removed_total{class=\"snapshots\"} 0",
            "hirehook_store_size_bytes ",
            "hirehook_oldest_event_age_seconds ",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }

    #[tokio::test]
    async fn a_sweep_reports_its_batches_and_what_they_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_sled(dir.path(), 1 << 20).expect("store"));
        let events = (0..5).map(|i| event(&format!("e{i}"), at(0))).collect();
        commit(&store, events).await;
        let policy = RetentionPolicy {
            events: Some(Duration::from_secs(86_400)),
            deleted_applications: Some(Duration::from_secs(86_400)),
        };
        let clock = Clock::tokio_at(at(10));
        let outcome = Sweeper::new(store.clone(), policy, clock)
            .with_batch(2)
            .sweep()
            .await
            .expect("sweep");
        assert_eq!(outcome.removed.events, 5);
        assert_eq!(outcome.batches, 3, "2 + 2 + 1");
        assert!(outcome.longest_batch <= outcome.took);
        assert!(ids(&store).await.is_empty());
    }
}
