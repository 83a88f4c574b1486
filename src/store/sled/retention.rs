//! Retention on sled: removing old events with their deliveries, the ids of old dropped
//! events, and the snapshots of applications deleted upstream long ago (see
//! [`crate::store::Store::sweep`] for what goes and what never does).
//!
//! Each class is found without scanning what stays: events from the start of the log
//! (oldest first, a cursor skipping those a pending delivery keeps), dropped events by
//! their `k` markers in log order, deleted applications by their `x` index in deletion
//! order. A batch is one `apply_batch`, so it is atomic, and it takes the locks the writes
//! it races with take: the queue lock while it removes events (a dead letter put back in
//! the queue by an operator is either seen pending or removed before), the commit lock
//! while it purges snapshots (a page commit restoring the same application counts it
//! again).

use ::sled::{Batch, Tree};

use super::{SledStore, decode_record, encode_json, keys};
use crate::ats::Timestamp;
use crate::diff::Snapshot;
use crate::diff::snapshot::Header;
use crate::store::{
    DeliveryState, OutboxEntry, RetentionPolicy, SnapshotWrite, StoreError, SweepCursor,
    SweepReport, SyncState,
};

/// The highest log sequence retention removed (0: none).
pub(super) fn log_floor(tree: &Tree) -> Result<u64, StoreError> {
    Ok(tree
        .get(keys::meta("log_floor"))?
        .and_then(|v| keys::trailing_seq(&v))
        .unwrap_or(0))
}

/// Builds the index of deleted applications (`x` keys) from the snapshots, once: stores
/// written before retention existed have snapshots of deleted applications but no index.
pub(super) fn build_deleted_index(tree: &Tree) -> Result<(), StoreError> {
    const DONE: &[u8] = b"1";
    if tree.get(keys::meta("deleted_index"))?.is_some() {
        return Ok(());
    }
    let mut batch = Batch::default();
    let mut pending = 0usize;
    for item in tree.scan_prefix([keys::SNAPSHOT]) {
        let (key, value) = item?;
        let Some(deleted_at) = Header::read(&value).and_then(|h| h.deleted_at) else {
            continue;
        };
        let rest = key.get(1..).unwrap_or_default();
        let Some(sep) = rest.iter().position(|&b| b == 0) else {
            continue;
        };
        let (integration, application) = (&rest[..sep], &rest[sep + 1..]);
        let mut index = keys::deleted_from(deleted_at.timestamp_millis());
        index.extend_from_slice(integration);
        index.push(0);
        index.extend_from_slice(application);
        batch.insert(index, &[][..]);
        pending += 1;
        if pending >= 10_000 {
            tree.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    batch.insert(keys::meta("deleted_index"), DONE);
    tree.apply_batch(batch)?;
    Ok(())
}

/// Keeps the index of deleted applications in step with one snapshot write of a page
/// commit (into the page's `batch`, under the commit lock). Returns 1 when the write
/// restores an application whose snapshot retention purged (its tombstone goes, and it
/// counts as an application again), else 0.
pub(super) fn index_write(
    tree: &Tree,
    batch: &mut Batch,
    integration_id: &str,
    snap: &SnapshotWrite,
) -> Result<u64, StoreError> {
    let now_deleted = Header::read(&snap.bytes).and_then(|h| h.deleted_at);
    let app = snap.application_id.as_str();
    let mut restored = 0;
    if snap.previous_deleted_at != now_deleted {
        if let Some(before) = snap.previous_deleted_at {
            batch.remove(keys::deleted(
                before.timestamp_millis(),
                integration_id,
                app,
            ));
            // Read the tombstone (or a snapshot purged since the caller read it).
            let tombstone = keys::purged(integration_id, app);
            if tree.contains_key(&tombstone)? {
                batch.remove(tombstone);
                if !snap.is_new {
                    restored = 1;
                }
            }
        }
        if let Some(at) = now_deleted {
            batch.insert(
                keys::deleted(at.timestamp_millis(), integration_id, app),
                &[][..],
            );
        }
    }
    Ok(restored)
}

impl SledStore {
    /// One batch of retention (see [`crate::store::Store::sweep`]).
    pub fn sweep(
        &self,
        policy: &RetentionPolicy,
        now: Timestamp,
        limit: usize,
        cursor: &mut SweepCursor,
    ) -> Result<SweepReport, StoreError> {
        let limit = limit.max(1);
        let mut report = SweepReport::default();
        if let Some(horizon) = policy.events_horizon(now) {
            self.sweep_events(horizon, limit, cursor, &mut report)?;
            self.sweep_dropped(horizon, limit, &mut report)?;
        }
        if let Some(horizon) = policy.deleted_horizon(now) {
            self.sweep_snapshots(horizon, limit, &mut report)?;
        }
        Ok(report)
    }

    /// Looks at up to `limit` events after the cursor, oldest first, stopping at the first
    /// one detected at or after `horizon` (the log is in commit order, which detection
    /// times follow to within a sync's length: an event a little out of order goes at the
    /// next pass), and removes those whose every delivery was settled before `horizon`.
    fn sweep_events(
        &self,
        horizon: Timestamp,
        limit: usize,
        cursor: &mut SweepCursor,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let start = keys::event(cursor.after_log_seq.saturating_add(1));
        let mut candidates = Vec::new();
        let mut young = false;
        for item in self.h()?.tree.range(start..=keys::event(u64::MAX)) {
            let (_, value) = item?;
            let record = decode_record(&value)?;
            if record.detected_at >= horizon {
                young = true;
                break;
            }
            candidates.push(record);
            if candidates.len() >= limit {
                break;
            }
        }
        if let Some(last) = candidates.last() {
            cursor.after_log_seq = last.log_seq;
        }
        report.more |= !young && candidates.len() >= limit;
        if candidates.is_empty() {
            return Ok(());
        }
        // Under the queue lock: `retry_dead` puts a dead letter back under it, so an entry
        // read dead here stays dead until this batch is applied.
        let mut queues = self.queues_unbuilt();
        let mut batch = Batch::default();
        let mut dead_removed: Vec<String> = Vec::new();
        let mut floor = log_floor(&self.h()?.tree)?;
        let mut removed = SweepReport::default();
        'events: for record in &candidates {
            let mut entries: Vec<(&str, OutboxEntry)> = Vec::new();
            for subscriber in &record.subscribers {
                let Some(entry) = self.entry(subscriber, record.log_seq)? else {
                    continue;
                };
                if entry.state == DeliveryState::Pending || entry.updated_at >= horizon {
                    continue 'events;
                }
                entries.push((subscriber, entry));
            }
            batch.remove(keys::event(record.log_seq));
            batch.remove(keys::event_id(&record.id));
            removed.events += 1;
            removed.event_ids += 1;
            for (subscriber, entry) in entries {
                batch.remove(keys::outbox(subscriber, record.log_seq));
                removed.deliveries += 1;
                removed.attempts += entry.recent_attempts.len() as u64;
                // Attempt records of stores written by earlier builds.
                for key in self
                    .h()?
                    .tree
                    .scan_prefix(keys::attempt_prefix(subscriber, record.log_seq))
                    .keys()
                {
                    batch.remove(key?);
                    removed.attempts += 1;
                }
                if entry.state == DeliveryState::Dead {
                    dead_removed.push(subscriber.to_owned());
                }
            }
            floor = floor.max(record.log_seq);
        }
        if removed.events > 0 {
            batch.insert(keys::meta("log_floor"), &floor.to_be_bytes()[..]);
            self.h()?.tree.apply_batch(batch)?;
            // Built queues count dead letters; unbuilt ones count what the outbox holds when
            // they are built.
            if queues.built {
                for subscriber in &dead_removed {
                    queues.dead_removed(subscriber);
                }
            }
        }
        drop(queues);
        report.events += removed.events;
        report.deliveries += removed.deliveries;
        report.attempts += removed.attempts;
        report.event_ids += removed.event_ids;
        Ok(())
    }

    /// Forgets the ids of up to `limit` dropped held events detected before `horizon`,
    /// in log order (stopping at the first younger one).
    fn sweep_dropped(
        &self,
        horizon: Timestamp,
        limit: usize,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        let mut n = 0u64;
        let mut floor = log_floor(&self.h()?.tree)?;
        let mut young = false;
        for item in self.h()?.tree.scan_prefix([keys::DROPPED]) {
            let (key, value) = item?;
            let detected_ms = value
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(i64::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt {
                    what: "dropped event marker".into(),
                    message: "too short".into(),
                })?;
            if detected_ms >= horizon.timestamp_millis() {
                young = true;
                break;
            }
            let id = String::from_utf8_lossy(value.get(8..).unwrap_or_default()).into_owned();
            batch.remove(keys::event_id(&id));
            batch.remove(key.clone());
            floor = floor.max(keys::trailing_seq(&key).unwrap_or(0));
            n += 1;
            if n as usize >= limit {
                break;
            }
        }
        if n > 0 {
            // The marker held the highest sequence of a dropped event: keep it handed out.
            batch.insert(keys::meta("log_floor"), &floor.to_be_bytes()[..]);
            self.h()?.tree.apply_batch(batch)?;
        }
        report.event_ids += n;
        report.more |= !young && n as usize >= limit;
        Ok(())
    }

    /// Replaces by their tombstones the snapshots of up to `limit` applications deleted
    /// upstream before `horizon`, oldest deletion first, and lowers their integrations'
    /// application counts, in one batch under the commit lock.
    fn sweep_snapshots(
        &self,
        horizon: Timestamp,
        limit: usize,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let _commit = self.lock();
        let end = keys::deleted_from(horizon.timestamp_millis());
        let mut batch = Batch::default();
        let mut per_integration: std::collections::BTreeMap<String, u64> = Default::default();
        let mut seen = 0usize;
        for item in self.h()?.tree.range(vec![keys::DELETED]..end) {
            let key = item?.0;
            seen += 1;
            batch.remove(key.clone());
            let Some((integration, application)) = keys::deleted_parts(&key) else {
                continue;
            };
            let integration = String::from_utf8_lossy(integration).into_owned();
            let application = String::from_utf8_lossy(application).into_owned();
            let snapshot_key = keys::snapshot(&integration, &application);
            // A stale entry (restored since, or a snapshot that is not this version's)
            // only leaves the index.
            let header = self
                .h()?
                .tree
                .get(&snapshot_key)?
                .and_then(|v| Header::read(&v));
            if let Some(Header {
                sequence,
                deleted_at: Some(deleted_at),
            }) = header
                && deleted_at < horizon
            {
                batch.remove(snapshot_key);
                batch.insert(
                    keys::purged(&integration, &application),
                    Snapshot::tombstone(sequence, deleted_at).encode(),
                );
                *per_integration.entry(integration).or_default() += 1;
            }
            if seen >= limit {
                break;
            }
        }
        if seen == 0 {
            return Ok(());
        }
        let mut purged = 0;
        for (integration, n) in per_integration {
            let state = self.sync_state(&integration)?;
            let state = SyncState {
                applications: state.applications.saturating_sub(n),
                ..state
            };
            batch.insert(keys::sync_state(&integration), encode_json(&state)?);
            purged += n;
        }
        self.h()?.tree.apply_batch(batch)?;
        report.snapshots += purged;
        report.more |= seen >= limit;
        Ok(())
    }

    /// When the first event in the log was detected (the log is in commit order: the
    /// oldest retained event, to within a sync's length).
    pub fn oldest_event_at(&self) -> Result<Option<Timestamp>, StoreError> {
        match self.h()?.tree.scan_prefix([keys::EVENT]).values().next() {
            Some(value) => Ok(Some(decode_record(&value?)?.detected_at)),
            None => Ok(None),
        }
    }
}
