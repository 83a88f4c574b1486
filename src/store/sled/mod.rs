//! The sled backend: one tree, a page commit is one `apply_batch`, the delivery queues
//! derived in memory (see [`queues`]). Layout and atomicity: see [`keys`].

mod erase;
pub mod export;
pub mod keys;
mod outbox;
mod queues;
mod retention;
pub mod rewrite;
mod stats;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{
    DeliveryState, EventFilter, EventRecord, OutboxEntry, PageCommit, StoreError, SyncState,
};
use crate::ats::Timestamp;
use crate::diff::snapshot::Header;

impl From<::sled::Error> for StoreError {
    fn from(err: ::sled::Error) -> Self {
        StoreError::Io(err.to_string())
    }
}

/// The sled store. One per process (sled locks the directory).
pub struct SledStore {
    /// sled's handles, swappable by an online rewrite ([`SledStore::rewrite_online`]):
    /// every access holds a read guard for its operation ([`SledStore::h`]) and no handle
    /// leaves it (but for the moment a flush is in flight, which a swap waits out). `None`
    /// only if an online rewrite could not reopen the store.
    handles: parking_lot::RwLock<Option<Handles>>,
    /// Where the store is and its cache size, to reopen it after an online rewrite.
    path: std::path::PathBuf,
    cache_bytes: u64,
    /// Serializes commits so log sequences are assigned and applied in order.
    commit_lock: Mutex<u64>,
    /// The delivery queues, derived from the outbox (see [`queues`]). Lock order: the
    /// commit lock before this one.
    queues: Mutex<queues::Queues>,
    /// Pending deliveries of erased events whose next attempt's record is to be erased
    /// as it is written (see `erase`); `erased_any` says whether there are any.
    erased_pending: Mutex<std::collections::HashSet<(String, u64)>>,
    erased_any: std::sync::atomic::AtomicBool,
}

/// The sled database and hirehook's tree in it.
struct Handles {
    db: ::sled::Db,
    tree: ::sled::Tree,
}

/// A read guard on the handles, for one operation.
type HandlesGuard<'a> = parking_lot::MappedRwLockReadGuard<'a, Handles>;

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

const FORMAT_VERSION: &[u8] = b"1";

/// How long [`SledStore::open`] waits for a lock that a closing handle still holds.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl SledStore {
    /// Opens (or creates) the store at `path` with a cache of `cache_bytes`.
    ///
    /// sled releases its directory lock from a background thread a moment after the last
    /// handle is dropped, so a lock held when we start is waited for briefly (up to
    /// [`LOCK_WAIT`]) before it is reported as another process's.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match Self::open_once(path, cache_bytes) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        rewrite::recover(path)?;
        remove_incomplete_snapshots(path)?;
        let db = ::sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .mode(::sled::Mode::HighThroughput)
            .open()
            .map_err(|source| match &source {
                ::sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked {
                        path: path.to_owned(),
                    }
                }
                ::sled::Error::Io(io) if io.to_string().contains("lock") => StoreError::Locked {
                    path: path.to_owned(),
                },
                _ => StoreError::Open {
                    path: path.to_owned(),
                    cause: source.to_string(),
                },
            })?;
        let tree = db.open_tree("hirehook")?;
        match tree.get(keys::meta("format"))? {
            None => {
                tree.insert(keys::meta("format"), FORMAT_VERSION)?;
            }
            Some(v) if v.as_ref() == FORMAT_VERSION => {}
            Some(v) => {
                return Err(StoreError::Corrupt {
                    what: "format version".into(),
                    message: format!(
                        "store format {:?} is not supported by this hirehook (expects {:?})",
                        String::from_utf8_lossy(&v),
                        String::from_utf8_lossy(FORMAT_VERSION)
                    ),
                });
            }
        }
        let last = tree
            .scan_prefix([keys::EVENT])
            .keys()
            .next_back()
            .transpose()?
            .and_then(|k| keys::trailing_seq(&k))
            .unwrap_or(0);
        let last_held = tree
            .scan_prefix([keys::HELD])
            .keys()
            .filter_map(|k| k.ok().and_then(|k| keys::trailing_seq(&k)))
            .max()
            .unwrap_or(0);
        // Dropped held events and the events retention removed had sequences too: none is
        // handed out again.
        let last_dropped = tree
            .scan_prefix([keys::DROPPED])
            .keys()
            .next_back()
            .transpose()?
            .and_then(|k| keys::trailing_seq(&k))
            .unwrap_or(0);
        let floor = retention::log_floor(&tree)?;
        retire_index_keys(&tree)?;
        retention::build_deleted_index(&tree)?;
        Ok(SledStore {
            handles: parking_lot::RwLock::new(Some(Handles { db, tree })),
            path: path.to_owned(),
            cache_bytes,
            commit_lock: Mutex::new(last.max(last_held).max(last_dropped).max(floor)),
            queues: Mutex::new(queues::Queues::default()),
            erased_pending: Mutex::default(),
            erased_any: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The handles, for the length of one operation. Recursive: an operation may call
    /// another while it holds them, even while a rewrite waits for the write guard.
    fn h(&self) -> Result<HandlesGuard<'_>, StoreError> {
        parking_lot::RwLockReadGuard::try_map(self.handles.read_recursive(), Option::as_ref)
            .map_err(|_| {
                StoreError::Io(format!(
                    "the sled store at {} is closed: an online rewrite could not reopen it \
                     (restart hirehook; its open finishes or discards the rewrite)",
                    self.path.display()
                ))
            })
    }

    /// Makes every committed change durable. Deliveries committed before it started join
    /// the delivery queues once it returns: nothing is sent before it is on disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        let through = self.queues_unbuilt().staged_through();
        self.h()?.db.flush()?;
        if let Some(seq) = through {
            self.queues_unbuilt().publish(seq);
        }
        Ok(())
    }

    /// Async flush, for use inside the runtime; as [`SledStore::flush`].
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        let through = self.queues_unbuilt().staged_through();
        let db = self.h()?.db.clone();
        db.flush_async().await?;
        if let Some(seq) = through {
            self.queues_unbuilt().publish(seq);
        }
        Ok(())
    }

    /// The queues as they are, built or not (staging and publishing need no build).
    fn queues_unbuilt(&self) -> std::sync::MutexGuard<'_, queues::Queues> {
        // Poisoned: a panic mid-update; the queues may be off, but the outbox is the truth
        // and a restart rebuilds them from it.
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The delivery queues, built from the outbox's pending entries on first use. The
    /// caller must not hold the commit lock.
    fn queues(&self) -> Result<std::sync::MutexGuard<'_, queues::Queues>, StoreError> {
        {
            let q = self.queues_unbuilt();
            if q.built {
                return Ok(q);
            }
        }
        // No commit may run while the outbox is read: its entries would be missed, or
        // staged ones taken as durable.
        let _commit = self.lock();
        let mut q = self.queues_unbuilt();
        if !q.built {
            #[derive(Deserialize)]
            struct QueueEntry {
                state: DeliveryState,
                integration_id: String,
                application_id: String,
                due_at: Timestamp,
            }
            for item in self.h()?.tree.scan_prefix([keys::OUTBOX]) {
                let (key, value) = item?;
                let seq = keys::trailing_seq(&key).unwrap_or(0);
                let subscriber = key
                    .get(1..key.len().saturating_sub(9))
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let entry: QueueEntry =
                    serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                        what: format!("outbox entry {seq} of {subscriber}"),
                        message: e.to_string(),
                    })?;
                if entry.state == DeliveryState::Dead {
                    q.dead_added(&subscriber);
                }
                if entry.state == DeliveryState::Pending && !q.is_staged(&subscriber, seq) {
                    q.add(queues::Pending {
                        subscriber,
                        log_seq: seq,
                        app: queues::app_key(&entry.integration_id, &entry.application_id),
                        due_ms: entry.due_at.timestamp_millis(),
                    });
                }
            }
            q.built = true;
        }
        Ok(q)
    }

    /// The stored snapshots of the given applications, in the same order.
    pub fn snapshots(
        &self,
        integration_id: &str,
        application_ids: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        application_ids
            .iter()
            .map(|id| {
                let found = match self.h()?.tree.get(keys::snapshot(integration_id, id))? {
                    Some(v) => Some(v),
                    // Rarely there: only an application seen for the first time looks.
                    None => self.h()?.tree.get(keys::purged(integration_id, id))?,
                };
                Ok(found.map(|v| v.to_vec()))
            })
            .collect()
    }

    /// The sync state of an integration (default when never synced).
    pub fn sync_state(&self, integration_id: &str) -> Result<SyncState, StoreError> {
        match self.h()?.tree.get(keys::sync_state(integration_id))? {
            None => Ok(SyncState::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                what: format!("sync state of {integration_id}"),
                message: e.to_string(),
            }),
        }
    }

    /// Writes the sync state (e.g. the watermark after the last page).
    pub fn put_sync_state(
        &self,
        integration_id: &str,
        state: &SyncState,
    ) -> Result<(), StoreError> {
        let _guard = self.lock();
        let key = keys::sync_state(integration_id);
        // The count is the store's (commits raise it, retention lowers it, both under this
        // lock): a caller's copy read before a purge must not bring it back.
        let value = match self.h()?.tree.get(&key)? {
            Some(_) => {
                let stored = self.sync_state(integration_id)?;
                encode_json(&SyncState {
                    applications: stored.applications,
                    ..state.clone()
                })?
            }
            None => encode_json(state)?,
        };
        self.h()?.tree.insert(key, value)?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        // A poisoned lock only means another commit panicked; the counter is still valid
        // because it is advanced only after a successful apply.
        self.commit_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Deliveries just committed (under the commit lock, so in log order) wait for the
    /// flush that makes them durable.
    fn stage(&self, staged: Vec<queues::Pending>) {
        if staged.is_empty() {
            return;
        }
        let mut q = self.queues_unbuilt();
        for p in staged {
            q.stage(p);
        }
    }

    /// Commits one page atomically: snapshots, events (logged or held), outbox entries, the
    /// integration's application count and the index of deleted applications. A
    /// re-derived event is skipped: its id is known, or its sequence is not above its
    /// application's stored snapshot's. Returns the records that were newly logged or
    /// held.
    pub fn commit_page(
        &self,
        integration_id: &str,
        page: PageCommit,
    ) -> Result<Vec<EventRecord>, StoreError> {
        if page.snapshots.is_empty() && page.events.is_empty() {
            // An idle poll's page, or one whose records were all unchanged, changes
            // nothing. sled would apply even an empty batch under its global
            // write lock, which stalls every other reader and writer (the deliveries),
            // and seals its log buffer, handing the write to its thread pool.
            return Ok(Vec::new());
        }
        let mut next_seq = self.lock();
        let mut batch = ::sled::Batch::default();
        let mut seq = *next_seq;
        let mut written = Vec::with_capacity(page.events.len());
        let mut staged = Vec::new();

        // The sequences of the stored snapshots, read before this page overwrites them:
        // an event at or below its application's is a re-derivation (see `commit_page` on
        // the seam), even once retention removed its id.
        let mut stored_seqs: HashMap<String, u64> = HashMap::new();
        for event in &page.events {
            if !stored_seqs.contains_key(event.application_id.as_str()) {
                let seq = self
                    .h()?
                    .tree
                    .get(keys::snapshot(integration_id, &event.application_id))?
                    .and_then(|v| Header::read(&v))
                    .map_or(0, |h| h.sequence);
                stored_seqs.insert(event.application_id.clone(), seq);
            }
        }
        let mut new_apps = page.snapshots.iter().filter(|s| s.is_new).count() as u64;
        for snap in &page.snapshots {
            new_apps += retention::index_write(&self.h()?.tree, &mut batch, integration_id, snap)?;
        }
        if new_apps > 0 {
            let mut state = self.sync_state(integration_id)?;
            state.applications += new_apps;
            batch.insert(keys::sync_state(integration_id), encode_json(&state)?);
        }
        let mut fresh = Vec::with_capacity(page.events.len());
        for event in page.events {
            let known = stored_seqs
                .get(event.application_id.as_str())
                .is_some_and(|&stored| event.sequence <= stored);
            if known || self.h()?.tree.contains_key(keys::event_id(&event.id))? {
                continue;
            }
            fresh.push(event);
        }
        for snap in page.snapshots {
            batch.insert(
                keys::snapshot(integration_id, &snap.application_id),
                snap.bytes,
            );
        }
        for event in fresh {
            seq += 1;
            let record = EventRecord {
                log_seq: seq,
                id: event.id,
                event_type: event.event_type,
                integration_id: integration_id.to_owned(),
                application_id: event.application_id,
                sequence: event.sequence,
                detected_at: event.detected_at,
                subscribers: event.subscribers,
                body: event.body,
            };
            batch.insert(keys::event_id(&record.id), &seq.to_be_bytes()[..]);
            if event.hold {
                batch.insert(keys::held(integration_id, seq), encode_record(&record)?);
            } else {
                add_to_log(&mut batch, &record, &mut staged)?;
            }
            written.push(record);
        }
        self.h()?.tree.apply_batch(batch)?;
        *next_seq = seq;
        self.stage(staged);
        Ok(written)
    }

    /// Events of the log matching `filter`, oldest first.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        let start = keys::event(filter.after_log_seq.map_or(0, |s| s.saturating_add(1)));
        let end = keys::event(u64::MAX);
        let mut out = Vec::new();
        for item in self.h()?.tree.range(start..=end) {
            let (_, value) = item?;
            let record = decode_record(&value)?;
            if filter.selects(
                record.detected_at,
                record.event_type,
                &record.integration_id,
                &record.application_id,
            ) {
                out.push(record);
                if filter.limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// One logged or held event by id.
    pub fn event_by_id(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        let Some(seq) = self.h()?.tree.get(keys::event_id(id))? else {
            return Ok(None);
        };
        let seq = keys::trailing_seq(&seq).ok_or_else(|| StoreError::Corrupt {
            what: format!("index entry of event {id}"),
            message: "not a sequence number".into(),
        })?;
        if let Some(v) = self.h()?.tree.get(keys::event(seq))? {
            return decode_record(&v).map(Some);
        }
        for item in self.h()?.tree.scan_prefix([keys::HELD]) {
            let (key, value) = item?;
            if keys::trailing_seq(&key) == Some(seq) {
                return decode_record(&value).map(Some);
            }
        }
        Ok(None)
    }

    /// Events held by the mass-change guard for an integration, oldest first.
    pub fn held_events(&self, integration_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        self.h()?
            .tree
            .scan_prefix(keys::held_prefix(integration_id))
            .values()
            .map(|v| decode_record(&v?))
            .collect()
    }

    /// Moves an integration's held events (all, or those with the log sequences in
    /// `only`) into the log and the outbox. Returns them.
    pub fn release_held(
        &self,
        integration_id: &str,
        only: Option<&[u64]>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let only: Option<std::collections::HashSet<u64>> =
            only.map(|seqs| seqs.iter().copied().collect());
        let _guard = self.lock();
        let mut batch = ::sled::Batch::default();
        let mut released = Vec::new();
        let mut staged = Vec::new();
        for item in self
            .h()?
            .tree
            .scan_prefix(keys::held_prefix(integration_id))
        {
            let (key, value) = item?;
            let record = decode_record(&value)?;
            if only
                .as_ref()
                .is_some_and(|seqs| !seqs.contains(&record.log_seq))
            {
                continue;
            }
            batch.remove(key);
            add_to_log(&mut batch, &record, &mut staged)?;
            released.push(record);
        }
        self.h()?.tree.apply_batch(batch)?;
        self.stage(staged);
        Ok(released)
    }

    /// Discards the given held events (by log sequence): an operator decided they are
    /// noise. Their ids stay known, so a re-derivation does not bring them back; those no
    /// longer held are skipped. Returns how many were discarded.
    pub fn drop_held(&self, integration_id: &str, log_seqs: &[u64]) -> Result<usize, StoreError> {
        let _guard = self.lock();
        let mut batch = ::sled::Batch::default();
        let mut n = 0;
        for &seq in log_seqs {
            let key = keys::held(integration_id, seq);
            if let Some(value) = self.h()?.tree.get(&key)? {
                // The id stays known; the marker lets retention forget it in time.
                let record = decode_record(&value)?;
                let mut marker = record.detected_at.timestamp_millis().to_be_bytes().to_vec();
                marker.extend_from_slice(record.id.as_bytes());
                batch.insert(keys::dropped(seq), marker);
                batch.remove(key);
                n += 1;
            }
        }
        self.h()?.tree.apply_batch(batch)?;
        Ok(n)
    }

    /// Whether any snapshot (or tombstone of a purged one) is stored for an integration.
    pub fn has_snapshots(&self, integration_id: &str) -> Result<bool, StoreError> {
        for prefix in [
            keys::snapshot_prefix(integration_id),
            keys::purged_prefix(integration_id),
        ] {
            if self
                .h()?
                .tree
                .scan_prefix(prefix)
                .keys()
                .next()
                .transpose()?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Snapshots stored for an integration.
    pub fn snapshot_count(&self, integration_id: &str) -> Result<u64, StoreError> {
        let mut n = 0;
        for key in self
            .h()?
            .tree
            .scan_prefix(keys::snapshot_prefix(integration_id))
            .keys()
        {
            key?;
            n += 1;
        }
        Ok(n)
    }

    /// Size of the store on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.h()?.db.size_on_disk()?)
    }
}

/// Removes the page-table snapshots sled began to write but never finished
/// (`snap.<lsn>.generating`), as a crash mid-write leaves them.
///
/// sled 0.34 writes a snapshot to `snap.<lsn>.generating`, syncs it and only then renames
/// it to `snap.<lsn>`; but when it opens, it takes the highest-named `snap.*` file as the
/// latest snapshot, `.generating` ones included, and refuses to open ("empty/corrupt
/// snapshot file found", then `Read corrupted data`) when that one is a torn write. A
/// `.generating` file is never a finished snapshot (a finished one has been renamed), so
/// removing it is safe: sled then starts from the last finished snapshot and replays the
/// log after it, as it would have had the crash come a moment earlier. Found by the crash
/// test (`tests/it/crash.rs`); sled's issues #1387, #1527 and #1533 report the same.
fn remove_incomplete_snapshots(path: &Path) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        // No store yet (sled creates it), or a problem sled's own open will report.
        Err(_) => return Ok(()),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path()).map_err(|e| StoreError::Open {
                path: path.to_owned(),
                cause: format!("cannot remove the incomplete sled snapshot {name}: {e}"),
            })?;
            tracing::warn!(
                store = %path.display(),
                file = %name,
                "removed an incomplete sled snapshot left by a crash; sled replays its log instead"
            );
        }
    }
    Ok(())
}

/// Logs a record with an outbox entry per subscriber; `staged` collects the deliveries
/// to queue once the batch is applied and flushed.
fn add_to_log(
    batch: &mut ::sled::Batch,
    record: &EventRecord,
    staged: &mut Vec<queues::Pending>,
) -> Result<(), StoreError> {
    batch.insert(keys::event(record.log_seq), encode_record(record)?);
    let app = queues::app_key(&record.integration_id, &record.application_id);
    for subscriber in &record.subscribers {
        let entry = OutboxEntry {
            event_id: record.id.clone(),
            integration_id: record.integration_id.clone(),
            application_id: record.application_id.clone(),
            sequence: record.sequence,
            state: DeliveryState::Pending,
            attempts: 0,
            round_start: 0,
            due_at: record.detected_at,
            last_error: None,
            updated_at: record.detected_at,
            recent_attempts: Vec::new(),
        };
        batch.insert(
            keys::outbox(subscriber, record.log_seq),
            encode_json(&entry)?,
        );
        staged.push(queues::Pending {
            subscriber: subscriber.clone(),
            log_seq: record.log_seq,
            app,
            due_ms: entry.due_at.timestamp_millis(),
        });
    }
    Ok(())
}

/// Removes the sled-resident queue indexes (`a` and `q` keys) that stores written by
/// hirehook before the in-memory queues kept; the queues are derived from the outbox.
fn retire_index_keys(tree: &::sled::Tree) -> Result<(), StoreError> {
    let mut batch = ::sled::Batch::default();
    let mut any = false;
    for prefix in [keys::RETIRED_APP_QUEUE, keys::RETIRED_DUE] {
        for key in tree.scan_prefix([prefix]).keys() {
            batch.remove(key?);
            any = true;
        }
    }
    if any {
        tree.apply_batch(batch)?;
    }
    Ok(())
}

fn encode_json<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        what: std::any::type_name::<T>().into(),
        message: e.to_string(),
    })
}

fn encode_record(record: &EventRecord) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(record).map_err(|e| StoreError::Corrupt {
        what: format!("event {}", record.id),
        message: e.to_string(),
    })
}

fn decode_record(bytes: &[u8]) -> Result<EventRecord, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        what: "event record".into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
