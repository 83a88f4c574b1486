//! The durable state: snapshots, sync state, the event log, the outbox, held events.
//!
//! This module is the seam between hirehook and its storage: the vocabulary in the
//! domain's words (a page to commit, an event record, an outbox entry, an attempt and its
//! consequence) and [`Store`], an enum over the backends whose async methods dispatch to
//! the one in use. The backends live in their own folders (`src/store/sled/`); no backend
//! type crosses into the rest of the crate. The contract every backend keeps is written
//! once, as the test suite `tests/it/store_contract.rs`.
//!
//! Durability: a commit is atomic; it is durable once [`Store::flush`] returns. Callers
//! flush before telling anyone about an event (printing, delivering).

pub mod erase;
#[cfg(test)]
mod fixtures;
pub mod postgres;
pub mod sled;

pub use self::erase::{EraseReport, ErasureSubject};
pub use self::postgres::PgStore;
pub use self::sled::{LOCK_WAIT, SledStore, keys};

/// The one event filter, defined with the events (the CLI, the API and replay use it too).
pub use crate::event::EventFilter;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ats::Timestamp;
use crate::event::EventType;

/// What went wrong with the store, and where.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store at {path} is in use by another process (is `hirehook run` running? stop it or use its admin API)"
    )]
    Locked { path: PathBuf },
    /// The cause is part of the message (not a `source`), so a chained report names it once.
    /// Backends describe their errors in words: no backend's error type crosses the seam.
    #[error("cannot open the store at {path}: {cause}")]
    Open { path: PathBuf, cause: String },
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("corrupt {what} in the store: {message}")]
    Corrupt { what: String, message: String },
    /// A PostgreSQL store could not be reached or opened: `target` is `host:port/database`
    /// (never the password), `cause` says why in words.
    #[error("cannot use the PostgreSQL store at {target}: {cause}")]
    Database { target: String, cause: String },
    /// The database was migrated by a newer hirehook than this one.
    #[error(
        "the database schema is version {found}; this hirehook knows up to {known}: upgrade hirehook"
    )]
    SchemaTooNew { found: u32, known: u32 },
    /// Fencing: this replica's lease on the integration expired or moved to another
    /// replica, so its page commit or sync-state write was refused and nothing was written.
    #[error(
        "this replica no longer holds the lease on integration {integration} (it lapsed, or another replica took it): nothing was written"
    )]
    LeaseLost { integration: String },
}

/// The store: one of the backends, behind one interface.
///
/// An enum rather than a trait object: the set of backends is closed (all in this crate),
/// async methods need no boxing, and a method a backend lacks is a compile error here.
#[derive(Debug)]
pub enum Store {
    /// Embedded, one process (the default).
    Sled(Arc<SledStore>),
    /// Shared by replicas.
    Postgres(PgStore),
}

/// Runs a sled scan on the blocking pool: a long one must not stall the async threads.
async fn scan<T, F>(store: &Arc<SledStore>, f: F) -> Result<T, StoreError>
where
    F: FnOnce(&SledStore) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| StoreError::Io(format!("a store scan failed: {e}")))?
}

impl Store {
    /// Opens (or creates) a sled store at `path` with a page cache of `cache_bytes`.
    pub fn open_sled(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        SledStore::open(path, cache_bytes).map(|s| Store::Sled(Arc::new(s)))
    }

    /// Opens the store a config names. PostgreSQL: connects (a pool of `pool_size`) and
    /// applies the schema's migrations first.
    pub async fn open(config: &crate::config::StoreConfig) -> Result<Store, StoreError> {
        match config.backend {
            crate::config::StoreBackend::Sled => {
                Self::open_sled(&config.path, config.cache_capacity.0)
            }
            crate::config::StoreBackend::Postgres => {
                let url = config.url.as_deref().ok_or_else(|| StoreError::Database {
                    target: "PostgreSQL".into(),
                    cause: "`store.url` is not set".into(),
                })?;
                let pool_size = usize::try_from(config.pool_size).unwrap_or(usize::MAX);
                PgStore::connect(url, pool_size).await.map(Store::Postgres)
            }
        }
    }

    /// The same store without fencing: page commits and sync-state writes no longer need a
    /// lease. For operator commands (held events, dead letters, `store copy`), which are
    /// never a poller; a poller keeps the fenced store.
    pub fn unfenced(self) -> Store {
        match self {
            Store::Sled(s) => Store::Sled(s),
            Store::Postgres(p) => Store::Postgres(p.without_fencing()),
        }
    }

    /// The backend's name, for logs and status.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sled(_) => "sled",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Makes every committed change durable. Deliveries committed before it started can be
    /// claimed once it returns: nothing is sent before it is durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match self {
            // sled's `flush_async` hands the flush to sled's own thread pool, which wakes
            // all seven of its idle threads per job. Flushing on tokio's blocking pool
            // instead cut the latency p99 by about a sixth but raised the peak RSS of a
            // 50,000-event burst by 20-25 MB, for a reason not found (BENCHMARKS.md,
            // "Where the latency tail comes from"): not kept.
            Store::Sled(s) => s.flush_async().await,
            Store::Postgres(p) => p.flush().await,
        }
    }

    /// The stored snapshots of the given applications, in the same order. An application
    /// whose snapshot retention purged gets its tombstone (its last sequence and
    /// deletion; see [`Store::sweep`]), so its sequence continues.
    pub async fn snapshots(
        &self,
        integration_id: &str,
        application_ids: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        match self {
            Store::Sled(s) => s.snapshots(integration_id, application_ids),
            Store::Postgres(p) => p.snapshots(integration_id, application_ids).await,
        }
    }

    /// The sync state of an integration (default when never synced).
    pub async fn sync_state(&self, integration_id: &str) -> Result<SyncState, StoreError> {
        match self {
            Store::Sled(s) => s.sync_state(integration_id),
            Store::Postgres(p) => p.sync_state(integration_id).await,
        }
    }

    /// Writes the sync state (e.g. the watermark after the last page). The application
    /// count is the store's own (page commits raise it, retention lowers it): a state
    /// already stored keeps its count, whatever `state` says.
    pub async fn put_sync_state(
        &self,
        integration_id: &str,
        state: &SyncState,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sled(s) => s.put_sync_state(integration_id, state),
            Store::Postgres(p) => p.put_sync_state(integration_id, state).await,
        }
    }

    /// Commits one page atomically: snapshots, events (logged or held), outbox entries, and
    /// the integration's application count. A re-derived event is skipped: one whose id is
    /// already known (logged, held or dropped, while retention keeps it), or whose
    /// per-application sequence is not above that of its application's stored snapshot
    /// (which holds the sequence of the last event ever logged for it, so this outlives
    /// the events and ids retention removes). Returns the records newly logged or held,
    /// with their log sequences (increasing, no gaps, in commit order, never reused).
    pub async fn commit_page(
        &self,
        integration_id: &str,
        page: PageCommit,
    ) -> Result<Vec<EventRecord>, StoreError> {
        match self {
            Store::Sled(s) => s.commit_page(integration_id, page),
            Store::Postgres(p) => p.commit_page(integration_id, page).await,
        }
    }

    /// Events of the log matching `filter`, oldest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        match self {
            Store::Sled(s) => {
                let filter = filter.clone();
                scan(s, move |s| s.events(&filter)).await
            }
            Store::Postgres(p) => p.events(filter).await,
        }
    }

    /// One logged or held event by id.
    pub async fn event_by_id(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        match self {
            Store::Sled(s) => s.event_by_id(id),
            Store::Postgres(p) => p.event_by_id(id).await,
        }
    }

    /// Events held by the mass-change guard for an integration, oldest first.
    pub async fn held_events(&self, integration_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        match self {
            Store::Sled(s) => s.held_events(integration_id),
            Store::Postgres(p) => p.held_events(integration_id).await,
        }
    }

    /// Moves an integration's held events (all, or those with the log sequences in
    /// `only`) into the log and the outbox, keeping their log sequences. Returns them.
    pub async fn release_held(
        &self,
        integration_id: &str,
        only: Option<&[u64]>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        match self {
            Store::Sled(s) => s.release_held(integration_id, only),
            Store::Postgres(p) => p.release_held(integration_id, only).await,
        }
    }

    /// Discards held events (by log sequence); their ids stay known, so a re-derivation
    /// does not bring them back. Returns how many were discarded.
    pub async fn drop_held(
        &self,
        integration_id: &str,
        log_seqs: &[u64],
    ) -> Result<usize, StoreError> {
        match self {
            Store::Sled(s) => s.drop_held(integration_id, log_seqs),
            Store::Postgres(p) => p.drop_held(integration_id, log_seqs).await,
        }
    }

    /// Whether any snapshot (or tombstone of a purged one) is stored for an integration.
    pub async fn has_snapshots(&self, integration_id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sled(s) => s.has_snapshots(integration_id),
            Store::Postgres(p) => p.has_snapshots(integration_id).await,
        }
    }

    /// Snapshots stored for an integration (tombstones not counted).
    pub async fn snapshot_count(&self, integration_id: &str) -> Result<u64, StoreError> {
        match self {
            Store::Sled(s) => s.snapshot_count(integration_id),
            Store::Postgres(p) => p.snapshot_count(integration_id).await,
        }
    }

    /// The store's size on disk, in bytes.
    pub async fn size_on_disk(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sled(s) => s.size_on_disk(),
            Store::Postgres(p) => p.size_on_disk().await,
        }
    }

    /// Every delivery of one subscriber, oldest first.
    pub async fn outbox(&self, subscriber: &str) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        match self {
            Store::Sled(s) => {
                let subscriber = subscriber.to_owned();
                scan(s, move |s| s.outbox(&subscriber)).await
            }
            Store::Postgres(p) => p.outbox(subscriber).await,
        }
    }

    /// Deliveries across subscribers, filtered; `(subscriber, log sequence, entry)`.
    pub async fn deliveries(
        &self,
        subscriber: Option<&str>,
        state: Option<DeliveryState>,
        event_id: Option<&str>,
    ) -> Result<Vec<(String, u64, OutboxEntry)>, StoreError> {
        match self {
            Store::Sled(s) => {
                let subscriber = subscriber.map(str::to_owned);
                let event_id = event_id.map(str::to_owned);
                scan(s, move |s| {
                    s.deliveries(subscriber.as_deref(), state, event_id.as_deref())
                })
                .await
            }
            Store::Postgres(p) => p.deliveries(subscriber, state, event_id).await,
        }
    }

    /// The delivery of the event at `log_seq` to `subscriber`, if there is one.
    pub async fn delivery(
        &self,
        subscriber: &str,
        log_seq: u64,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        match self {
            Store::Sled(s) => s.delivery(subscriber, log_seq),
            Store::Postgres(p) => p.delivery(subscriber, log_seq).await,
        }
    }

    /// Claims up to `limit` deliveries of `subscriber` that are due at `now`, earliest
    /// first, for `hold`. A delivery is claimable when it is pending, due, not claimed by
    /// anyone (or its claim expired), and the oldest pending delivery of its application
    /// to this subscriber: so one application's events go out in order, on every backend
    /// and across replicas. A claim ends when its attempt is recorded
    /// ([`Store::record_attempt`]) or `hold` runs out (its claimant died).
    pub async fn claim_due(
        &self,
        subscriber: &str,
        now: Timestamp,
        limit: usize,
        hold: Duration,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        match self {
            Store::Sled(s) => s.claim_due(subscriber, now, limit, hold),
            Store::Postgres(p) => p.claim_due(subscriber, now, limit, hold).await,
        }
    }

    /// When a delivery of `subscriber` can next be claimed (a head's due time or a claim's
    /// expiry); `None` when nothing is pending.
    pub async fn next_due_at(&self, subscriber: &str) -> Result<Option<Timestamp>, StoreError> {
        match self {
            Store::Sled(s) => s.next_due_at(subscriber),
            Store::Postgres(p) => p.next_due_at(subscriber).await,
        }
    }

    /// Records an attempt on a claimed delivery and its consequence, atomically; the claim
    /// ends. Delivered or dead: the application's next delivery becomes due. Retry: due
    /// again at the given time. Disable: the subscriber is disabled, the delivery stays
    /// pending.
    pub async fn record_attempt(
        &self,
        delivery: &DueDelivery,
        attempt: &AttemptRecord,
        result: AttemptResult,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sled(s) => s.record_attempt(delivery, attempt, result),
            Store::Postgres(p) => {
                p.record_attempt(&delivery.subscriber, delivery, attempt, result)
                    .await
            }
        }
    }

    /// Ends a claim without an attempt (its claimant will not make one): the delivery is
    /// claimable again as it was.
    pub async fn release_claim(&self, delivery: &DueDelivery) -> Result<(), StoreError> {
        match self {
            Store::Sled(s) => s.release_claim(delivery),
            Store::Postgres(p) => p.release_claim(delivery).await,
        }
    }

    /// The attempts of one delivery, in order.
    pub async fn attempts(
        &self,
        subscriber: &str,
        log_seq: u64,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        match self {
            Store::Sled(s) => s.attempts(subscriber, log_seq),
            Store::Postgres(p) => p.attempts(subscriber, log_seq).await,
        }
    }

    /// A subscriber's pending and dead deliveries and its oldest pending event: cheap
    /// enough for every `/metrics` scrape.
    pub async fn queue_summary(&self, subscriber: &str) -> Result<QueueSummary, StoreError> {
        match self {
            Store::Sled(s) => s.queue_summary(subscriber),
            Store::Postgres(p) => p.queue_summary(subscriber).await,
        }
    }

    /// A subscriber's deliveries counted by state, its oldest pending event and its latest
    /// error (one pass over its outbox).
    pub async fn subscriber_backlog(
        &self,
        subscriber: &str,
    ) -> Result<SubscriberBacklog, StoreError> {
        match self {
            Store::Sled(s) => {
                let subscriber = subscriber.to_owned();
                scan(s, move |s| s.subscriber_backlog(&subscriber)).await
            }
            Store::Postgres(p) => p.subscriber_backlog(subscriber).await,
        }
    }

    /// Why a subscriber is disabled (by a 410), if it is.
    pub async fn disabled_reason(&self, subscriber: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sled(s) => s.disabled_reason(subscriber),
            Store::Postgres(p) => p.disabled_reason(subscriber).await,
        }
    }

    /// Re-enables a disabled subscriber; its backlog resumes. Returns whether it was
    /// disabled.
    pub async fn enable_subscriber(&self, subscriber: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sled(s) => s.enable_subscriber(subscriber),
            Store::Postgres(p) => p.enable_subscriber(subscriber).await,
        }
    }

    /// Puts dead letters back in the queue, due at `now`. Returns how many.
    pub async fn retry_dead(
        &self,
        subscriber: Option<&str>,
        event_id: Option<&str>,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        match self {
            Store::Sled(s) => s.retry_dead(subscriber, event_id, now),
            Store::Postgres(p) => p.retry_dead(subscriber, event_id, now).await,
        }
    }

    /// This process's name among the replicas sharing the store (leases and claims carry
    /// it).
    pub fn replica_id(&self) -> &str {
        match self {
            Store::Sled(_) => "local",
            Store::Postgres(p) => p.replica_id(),
        }
    }

    /// Says this replica is alive for `ttl`; returns how many replicas are (this one
    /// included).
    pub async fn heartbeat(&self, ttl: Duration) -> Result<usize, StoreError> {
        match self {
            Store::Sled(_) => Ok(1),
            Store::Postgres(p) => p.heartbeat(ttl).await,
        }
    }

    /// Takes or renews this replica's lease on an integration for `ttl`: granted when the
    /// lease is free, expired or already ours. Returns whether it is held now. While it is
    /// not, [`Store::commit_page`] and [`Store::put_sync_state`] for that integration fail
    /// (a lost lease): fencing. The embedded store has one process: always.
    pub async fn try_lease(&self, integration_id: &str, ttl: Duration) -> Result<bool, StoreError> {
        match self {
            Store::Sled(_) => Ok(true),
            Store::Postgres(p) => p.try_lease(integration_id, ttl).await,
        }
    }

    /// Gives up this replica's lease on an integration.
    pub async fn release_lease(&self, integration_id: &str) -> Result<(), StoreError> {
        match self {
            Store::Sled(_) => Ok(()),
            Store::Postgres(p) => p.release_lease(integration_id).await,
        }
    }

    /// Takes or renews this replica's delivery lease on a subscriber for `ttl`: granted
    /// when free, expired or already ours. Returns whether it is held now. The holder is
    /// the replica that claims the subscriber's deliveries; claims, not the lease, keep a
    /// delivery on one replica and the order per application. The embedded store: always.
    pub async fn try_delivery_lease(
        &self,
        subscriber: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sled(_) => Ok(true),
            Store::Postgres(p) => p.try_delivery_lease(subscriber, ttl).await,
        }
    }

    /// Gives up this replica's delivery lease on a subscriber.
    pub async fn release_delivery_lease(&self, subscriber: &str) -> Result<(), StoreError> {
        match self {
            Store::Sled(_) => Ok(()),
            Store::Postgres(p) => p.release_delivery_lease(subscriber).await,
        }
    }

    /// Every delivery lease: (subscriber, holder, expiry). None on the embedded store.
    pub async fn delivery_leases(&self) -> Result<Vec<(String, String, Timestamp)>, StoreError> {
        match self {
            Store::Sled(_) => Ok(Vec::new()),
            Store::Postgres(p) => p.delivery_leases().await,
        }
    }

    /// Every lease: (integration, holder, expiry). None on the embedded store.
    pub async fn leases(&self) -> Result<Vec<(String, String, Timestamp)>, StoreError> {
        match self {
            Store::Sled(_) => Ok(Vec::new()),
            Store::Postgres(p) => p.leases().await,
        }
    }

    /// Wake-ups from other processes sharing the store: the value changes after every
    /// commit elsewhere that made deliveries claimable. `None` when no other process can
    /// write (the embedded store: this process wakes its own workers).
    pub async fn wakeups(&self) -> Result<Option<tokio::sync::watch::Receiver<u64>>, StoreError> {
        match self {
            Store::Sled(_) => Ok(None),
            Store::Postgres(p) => p.listen().await.map(Some),
        }
    }

    /// Applies retention once, in one small batch: removes what `policy` says is old
    /// enough at `now` and nothing anything still needs, at most about `limit` items per
    /// class, continuing from `cursor` (start from `SweepCursor::default()` and call again
    /// while [`SweepReport::more`] says so). What goes:
    ///
    /// - **events** detected before `now - policy.events` whose every delivery was settled
    ///   (delivered or dead) before that too: the event with its body, its outbox entries
    ///   and their attempts, and its id in the event-id index. A pending or retrying
    ///   delivery keeps its event, however old; held events wait for an operator and are
    ///   never removed.
    /// - the ids of **dropped** held events detected before the same horizon.
    /// - **snapshots** of applications whose `remote_deleted_at` is before
    ///   `now - policy.deleted_applications`: each leaves a tombstone (its last sequence
    ///   and deletion, see [`crate::diff::Snapshot::tombstone`]) that [`Store::snapshots`]
    ///   returns in its place, and the integration's application count drops.
    ///
    /// Sync state and snapshots of live applications are never removed. Log sequences are
    /// never reused after their events are removed, and a re-derived event is still
    /// refused (see [`Store::commit_page`]). Idempotent: sweeping again removes nothing
    /// more. Safe beside syncs, deliveries and other sweepers (on PostgreSQL one replica
    /// sweeps at a time; a batch another replica is sweeping is skipped).
    pub async fn sweep(
        &self,
        policy: &RetentionPolicy,
        now: Timestamp,
        limit: usize,
        cursor: &mut SweepCursor,
    ) -> Result<SweepReport, StoreError> {
        match self {
            Store::Sled(s) => {
                let (policy, mut moved) = (*policy, *cursor);
                let (report, moved) = scan(s, move |s| {
                    s.sweep(&policy, now, limit, &mut moved).map(|r| (r, moved))
                })
                .await?;
                *cursor = moved;
                Ok(report)
            }
            Store::Postgres(p) => p.sweep(policy, now, limit, cursor).await,
        }
    }

    /// Erases the personal data of `subject` in integration `integration_id` (see
    /// [`erase`]): the candidate's values in the matched snapshots and event bodies (log
    /// and held) become null, and the matched events' delivery records lose what may echo
    /// a body (last error, attempts' errors and response excerpts). Ids, types,
    /// sequences, timestamps and delivery states stay. By application: its snapshot and
    /// every event of it; by candidate: the snapshots whose candidate is that id, and the
    /// events whose body names it or whose application is one of those. One atomic write,
    /// durable before it returns; erasing again changes 0. A pending delivery of an erased
    /// event is sent with the erased body (bodies are signed as they are sent).
    ///
    /// The old values may still be in the store's files (sled's log segments,
    /// PostgreSQL's dead tuples) until [`Store::purge_erased`].
    pub async fn erase(
        &self,
        integration_id: &str,
        subject: &ErasureSubject,
    ) -> Result<EraseReport, StoreError> {
        match self {
            Store::Sled(s) => {
                let (integration_id, subject) = (integration_id.to_owned(), subject.clone());
                scan(s, move |s| s.erase(&integration_id, &subject)).await
            }
            Store::Postgres(p) => p.erase(integration_id, subject).await,
        }
    }

    /// Makes the values an [`Store::erase`] overwrote leave the store's files, while the
    /// store is in use: sled rewrites its files online ([`SledStore::rewrite_online`]),
    /// PostgreSQL rewrites each table the erasure changed (`VACUUM FULL`). Either pauses
    /// the store's users (sled: this process's syncs and deliveries; PostgreSQL: every
    /// replica's use of those tables) for its length, which it returns. Nothing is done
    /// when the erasure changed nothing.
    pub async fn purge_erased(&self, report: &EraseReport) -> Result<PurgeReport, StoreError> {
        if report.changed() == 0 {
            return Ok(PurgeReport::default());
        }
        match self {
            Store::Sled(s) => {
                let r = scan(s, |s| s.rewrite_online()).await?;
                Ok(PurgeReport {
                    took: r.took,
                    what: format!(
                        "rewrote the sled store's files ({} keys, {} bytes before, {} after)",
                        r.keys, r.before, r.after
                    ),
                })
            }
            Store::Postgres(p) => {
                let (tables, took) = p.vacuum_full(report).await?;
                Ok(PurgeReport {
                    took,
                    what: format!("VACUUM FULL {}", tables.join(", ")),
                })
            }
        }
    }

    /// sled only: the bytes of the store's files (`None` on PostgreSQL, whose files are
    /// the server's business).
    pub async fn sled_files_size(&self) -> Option<u64> {
        match self {
            Store::Sled(s) => {
                let path = s.path().to_owned();
                tokio::task::spawn_blocking(move || sled::rewrite::dir_size(&path))
                    .await
                    .ok()
            }
            Store::Postgres(_) => None,
        }
    }

    /// sled only: rewrites the store's files online so they hold only what is live
    /// ([`SledStore::rewrite_online`]; this process's syncs and deliveries wait for it).
    /// `None` on PostgreSQL, which reuses freed space itself once vacuumed.
    pub async fn rewrite_online(&self) -> Result<Option<sled::rewrite::RewriteReport>, StoreError> {
        match self {
            Store::Sled(s) => scan(s, |s| s.rewrite_online()).await.map(Some),
            Store::Postgres(_) => Ok(None),
        }
    }

    /// When the oldest event still in the log was detected (`None`: the log is empty).
    pub async fn oldest_event_at(&self) -> Result<Option<Timestamp>, StoreError> {
        match self {
            Store::Sled(s) => s.oldest_event_at(),
            Store::Postgres(p) => p.oldest_event_at().await,
        }
    }

    /// Says that a deliverer in this process will claim deliveries (sled keeps its queues
    /// in memory only for one).
    pub fn expect_deliveries(&self) {
        match self {
            Store::Sled(s) => s.expect_deliveries(),
            Store::Postgres(_) => {}
        }
    }
}

/// What [`Store::purge_erased`] did, and how long the store's users waited for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub took: Duration,
    /// In words, for logs and the CLI (empty: nothing was done).
    pub what: String,
}

/// Per-integration progress, written with the page that changes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    /// Start time of the last sync that committed all its pages: the next
    /// `updated_after` is this minus the overlap. Never moves past uncommitted data.
    pub watermark: Option<Timestamp>,
    /// Start time of the last complete full resync (no `updated_after`).
    pub last_full_resync: Option<Timestamp>,
    /// Whether the first (baseline) sync completed: after it, new records are events.
    pub baseline_done: bool,
    /// Applications with a snapshot.
    pub applications: u64,
    /// When the last sync finished successfully.
    pub last_success_at: Option<Timestamp>,
    /// The last sync failure, until a sync succeeds (may quote Kombo's answer: shown only
    /// to authenticated readers and operators).
    pub last_error: Option<String>,
    /// The same failure without any text from upstream (integration, page, HTTP status,
    /// Kombo's error code), for the unauthenticated `/readyz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_summary: Option<String>,
    /// Held events up to this log sequence were judged a mass change and wait for an
    /// operator; held events after it still wait for the guard's decision (a sync that
    /// stopped between its page commits and its end leaves such events behind).
    #[serde(default)]
    pub guard_decided_through: u64,
    /// Ids of records the baseline could not read: when one becomes readable it is stored
    /// silently, as the baseline would have (it is not a new application).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_unread: Vec<String>,
}

/// An event as it enters the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub id: String,
    pub event_type: EventType,
    pub application_id: String,
    /// Per-application sequence.
    pub sequence: u64,
    pub detected_at: Timestamp,
    /// The exact JSON body that will be signed and sent.
    pub body: Vec<u8>,
    /// Subscribers that want it: one outbox entry each.
    pub subscribers: Vec<String>,
    /// Hold it for an operator instead of logging it (mass-change guard).
    pub hold: bool,
}

/// A snapshot to write with a page.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotWrite {
    pub application_id: String,
    pub bytes: Vec<u8>,
    /// No snapshot existed before: counts towards the integration's applications.
    pub is_new: bool,
    /// The `remote_deleted_at` of the snapshot (or tombstone) this one replaces, as the
    /// caller read it: `None` when that was live or there was none. The store keeps an
    /// index of deleted applications for retention; a restore (deleted before, live now)
    /// tells it to drop the entry, and a restore of a purged application counts it again.
    pub previous_deleted_at: Option<Timestamp>,
}

/// One page's worth of changes, committed atomically.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageCommit {
    pub snapshots: Vec<SnapshotWrite>,
    pub events: Vec<NewEvent>,
}

/// An event in the log (or held).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Position in the global log: strictly increasing, no gaps.
    pub log_seq: u64,
    pub id: String,
    /// By wire name, so reordering the enum never changes stored records.
    #[serde(with = "event_type_name")]
    pub event_type: EventType,
    pub integration_id: String,
    pub application_id: String,
    pub sequence: u64,
    pub detected_at: Timestamp,
    /// Subscribers that get an outbox entry (recorded for held events, released later).
    pub subscribers: Vec<String>,
    /// The JSON body, verbatim.
    #[serde(with = "serde_bytes_compat")]
    pub body: Vec<u8>,
}

/// The delivery of one event to one subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub event_id: String,
    pub integration_id: String,
    pub application_id: String,
    pub sequence: u64,
    pub state: DeliveryState,
    /// Attempts made so far, over the delivery's whole life.
    pub attempts: u32,
    /// `attempts` when the current round of the retry schedule began (a dead letter put
    /// back by an operator starts a new round).
    #[serde(default)]
    pub round_start: u32,
    /// When the next attempt is due (meaningful while pending).
    pub due_at: Timestamp,
    /// What the last failed attempt said.
    pub last_error: Option<String>,
    /// When the state last changed.
    pub updated_at: Timestamp,
    /// The latest attempts, oldest first (at most [`ATTEMPTS_KEPT`]; `attempts` counts
    /// them all). Kept in the entry so that recording an attempt is one sled insert: a
    /// multi-key batch makes sled 0.34 write and sync its log buffer each time. Use
    /// [`Store::attempts`] to read them (it also reads the separate attempt records of
    /// stores written by earlier builds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_attempts: Vec<AttemptRecord>,
}

/// How many attempts an outbox entry keeps.
pub const ATTEMPTS_KEPT: usize = 32;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its turn or its next attempt.
    Pending,
    /// A 2xx was received.
    Delivered,
    /// The retry schedule ran out: a dead letter.
    Dead,
}

impl DeliveryState {
    /// Every state, in lifecycle order.
    pub const ALL: [DeliveryState; 3] = [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Dead,
    ];

    /// The name operators type and read (`pending`, `delivered`, `dead`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<DeliveryState> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One attempt to deliver, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// From 1.
    pub attempt: u32,
    pub at: Timestamp,
    /// HTTP status, when a response came.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// Timeout, connection error, refused by the SSRF guard, ...
    pub error: Option<String>,
    /// The start of the response body (bounded).
    pub response_prefix: Option<String>,
}

/// What an attempt means for the delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// 2xx: done; the application's next event becomes due.
    Delivered,
    /// Failed: try again at `due_at`.
    Retry { due_at: Timestamp },
    /// Failed for the last time: a dead letter; the application's next event becomes due.
    Dead,
    /// 410 Gone: the subscriber is disabled; the delivery stays pending for when an
    /// operator enables it again.
    Disable { reason: String },
}

/// What retention keeps (see [`Store::sweep`]); `None` keeps a class forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Events, their bodies and delivery records: removed once older than this and
    /// settled for this long.
    pub events: Option<Duration>,
    /// Snapshots of applications deleted upstream longer ago than this.
    pub deleted_applications: Option<Duration>,
}

impl From<&crate::config::RetentionConfig> for RetentionPolicy {
    /// The policy `[retention]` configures.
    fn from(config: &crate::config::RetentionConfig) -> Self {
        RetentionPolicy {
            events: config.events.duration(),
            deleted_applications: config.deleted_applications.duration(),
        }
    }
}

impl RetentionPolicy {
    /// Events detected before this (and settled before it) may go.
    pub fn events_horizon(&self, now: Timestamp) -> Option<Timestamp> {
        self.events.map(|d| before(now, d))
    }

    /// Snapshots of applications deleted upstream before this may go.
    pub fn deleted_horizon(&self, now: Timestamp) -> Option<Timestamp> {
        self.deleted_applications.map(|d| before(now, d))
    }
}

/// `now - d`, saturating at the earliest time.
fn before(now: Timestamp, d: Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// What one [`Store::sweep`] removed, by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Events removed from the log, with their bodies.
    pub events: u64,
    /// Their delivery (outbox) entries, delivered or dead.
    pub deliveries: u64,
    /// The attempt records those entries kept.
    pub attempts: u64,
    /// Event ids the store no longer knows: those of removed events and of old dropped held
    /// events. sled removes them from its id index; PostgreSQL, which has no id index
    /// since schema 4, counts the ids that left with the events' rows and the dropped
    /// events' markers — the same number for the same store.
    pub event_ids: u64,
    /// Snapshots of applications deleted upstream, each replaced by a tombstone.
    pub snapshots: u64,
    /// A class stopped at the batch's limit: call again (with the same cursor).
    pub more: bool,
}

impl SweepReport {
    /// Adds another batch's counts (`more` is the other's).
    pub fn add(&mut self, other: &SweepReport) {
        self.events += other.events;
        self.deliveries += other.deliveries;
        self.attempts += other.attempts;
        self.event_ids += other.event_ids;
        self.snapshots += other.snapshots;
        self.more = other.more;
    }

    /// Whether anything was removed.
    pub fn is_empty(&self) -> bool {
        self.events + self.deliveries + self.attempts + self.event_ids + self.snapshots == 0
    }

    /// `(class, count)` in a fixed order: the metric's `class` label and the CLI's rows.
    pub fn classes(&self) -> [(&'static str, u64); 5] {
        [
            ("events", self.events),
            ("deliveries", self.deliveries),
            ("attempts", self.attempts),
            ("event_ids", self.event_ids),
            ("snapshots", self.snapshots),
        ]
    }
}

/// Where a sweep's walk through the event log stands, between its batches: the events
/// before it were looked at in this pass (those kept, because a delivery is pending, are
/// not looked at again until the next pass). Start each pass from the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepCursor {
    /// The last log sequence examined.
    pub(crate) after_log_seq: u64,
}

/// Where a subscriber's queue stands (see [`Store::queue_summary`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueSummary {
    /// Deliveries waiting: due, retrying, or queued behind an earlier event.
    pub pending: u64,
    /// Dead letters.
    pub dead: u64,
    /// When the event of the oldest pending delivery was detected.
    pub oldest_pending: Option<Timestamp>,
}

/// A claimed delivery, with what to send (see [`Store::claim_due`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    pub subscriber: String,
    pub log_seq: u64,
    pub entry: OutboxEntry,
    /// The event body, verbatim.
    pub body: Vec<u8>,
    /// When the event was detected.
    pub detected_at: Timestamp,
}

/// Where one subscriber's deliveries stand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriberBacklog {
    /// Deliveries waiting: due, retrying, or queued behind an earlier event of their
    /// application.
    pub pending: u64,
    /// Deliveries that got a 2xx.
    pub delivered: u64,
    /// Dead letters.
    pub dead: u64,
    /// When the event of the oldest pending delivery was detected.
    pub oldest_pending: Option<Timestamp>,
    /// The most recent failure among pending and dead deliveries: when, and what.
    pub last_error: Option<(Timestamp, String)>,
}

/// Stores an event type as its wire name.
mod event_type_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::event::EventType;

    pub fn serialize<S: Serializer>(t: &EventType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EventType, D::Error> {
        let name: &str = Deserialize::deserialize(d)?;
        EventType::parse(name).ok_or_else(|| D::Error::custom(format!("unknown event type {name}")))
    }
}

/// Stores the body as raw bytes in postcard (not as a sequence of numbers).
mod serde_bytes_compat {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let bytes: &[u8] = Deserialize::deserialize(d)?;
        Ok(bytes.to_vec())
    }
}
