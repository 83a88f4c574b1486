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
use crate::metrics::Metrics;
use crate::store::{RetentionPolicy, Store, StoreError, SweepCursor, SweepReport};
use crate::store_health::StoreHealth;

/// Items per class a batch looks at (events) or removes (snapshots, dropped ids).
pub const BATCH: usize = 500;

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
        }
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
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                result = self.sweep() => result,
            };
            match result {
                Ok(outcome) => {
                    health.succeeded(OPERATION);
                    log(&outcome);
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
