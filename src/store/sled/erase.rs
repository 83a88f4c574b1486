//! Erasure on sled (see [`crate::store::Store::erase`] and [`crate::store::erase`]).
//!
//! One `apply_batch` under the commit lock (no page commit writes the same snapshots or
//! events meanwhile) and the queues' lock (no dead letter is put back, no attempt's record
//! lands between the read of an entry and its erased write), flushed before returning.
//! Events are found by a walk of the whole log and the integration's held events: sled
//! keeps no index by application or candidate, and an erasure is rare.
//!
//! An attempt in flight records the entry it claimed, which may predate the erasure: the
//! pending deliveries of erased events are marked, and the record of their next attempt is
//! erased as it is written (see `record_attempt`).

use std::collections::HashSet;

use ::sled::Batch;

use super::{SledStore, decode_record, encode_json, encode_record, keys};
use crate::store::erase::{
    EraseReport, ErasureSubject, body_candidate, erase_attempt, erase_body, erase_entry,
    erase_snapshot, snapshot_candidate,
};
use crate::store::{AttemptRecord, DeliveryState, EventRecord, StoreError};

impl SledStore {
    /// Erases a subject's personal data in one integration (see
    /// [`crate::store::Store::erase`]).
    pub fn erase(
        &self,
        integration_id: &str,
        subject: &ErasureSubject,
    ) -> Result<EraseReport, StoreError> {
        let _commit = self.lock();
        let mut report = EraseReport::default();
        let mut batch = Batch::default();
        // The applications whose snapshot is the subject's.
        let mut apps: HashSet<String> = HashSet::new();
        match subject {
            ErasureSubject::Application(app) => {
                apps.insert(app.clone());
            }
            ErasureSubject::Candidate(candidate) => {
                let prefix = keys::snapshot_prefix(integration_id);
                for item in self.h()?.tree.scan_prefix(&prefix) {
                    let (key, value) = item?;
                    if snapshot_candidate(&value).as_deref() == Some(candidate.as_str()) {
                        let app = key.get(prefix.len()..).unwrap_or_default();
                        apps.insert(String::from_utf8_lossy(app).into_owned());
                    }
                }
            }
        }
        for app in &apps {
            let key = keys::snapshot(integration_id, app);
            if let Some(value) = self.h()?.tree.get(&key)?
                && let Some(erased) = erase_snapshot(&value)
            {
                batch.insert(key, erased);
                report.snapshots += 1;
            }
        }
        let matches = |record: &EventRecord| {
            record.integration_id == integration_id
                && (apps.contains(&record.application_id)
                    || matches!(subject, ErasureSubject::Candidate(c)
                        if body_candidate(&record.body).as_deref() == Some(c.as_str())))
        };
        let mut pending: Vec<(String, u64)> = Vec::new();
        for item in self.h()?.tree.scan_prefix([keys::EVENT]) {
            let (key, value) = item?;
            let mut record = decode_record(&value)?;
            if !matches(&record) {
                continue;
            }
            if let Some(body) = erase_body(&record.body) {
                record.body = body;
                batch.insert(key, encode_record(&record)?);
                report.events += 1;
            }
            for subscriber in &record.subscribers {
                let mut changed = false;
                for item in self
                    .h()?
                    .tree
                    .scan_prefix(keys::attempt_prefix(subscriber, record.log_seq))
                {
                    // Attempt records of stores written by earlier builds.
                    let (key, value) = item?;
                    let mut attempt: AttemptRecord =
                        serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                            what: format!("attempt of {} to {subscriber}", record.log_seq),
                            message: e.to_string(),
                        })?;
                    if erase_attempt(&mut attempt) {
                        batch.insert(key, encode_json(&attempt)?);
                        changed = true;
                    }
                }
                if let Some(mut entry) = self.entry(subscriber, record.log_seq)? {
                    if erase_entry(&mut entry) {
                        batch.insert(
                            keys::outbox(subscriber, record.log_seq),
                            encode_json(&entry)?,
                        );
                        changed = true;
                    }
                    if entry.state == DeliveryState::Pending {
                        pending.push((subscriber.clone(), record.log_seq));
                    }
                }
                report.deliveries += u64::from(changed);
            }
        }
        for item in self
            .h()?
            .tree
            .scan_prefix(keys::held_prefix(integration_id))
        {
            let (key, value) = item?;
            let mut record = decode_record(&value)?;
            if matches(&record)
                && let Some(body) = erase_body(&record.body)
            {
                record.body = body;
                batch.insert(key, encode_record(&record)?);
                report.events += 1;
            }
        }
        {
            let _queues = self.queues_unbuilt();
            self.h()?.tree.apply_batch(batch)?;
            self.mark_erased(pending);
        }
        self.h()?.db.flush()?;
        Ok(report)
    }

    /// Remembers pending deliveries of erased events, so that the record of an attempt
    /// claimed before the erasure is erased too. Under the queues' lock.
    fn mark_erased(&self, pending: Vec<(String, u64)>) {
        if pending.is_empty() {
            return;
        }
        let mut marks = self
            .erased_pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        marks.extend(pending);
        self.erased_any
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the delivery was marked by an erasure (the mark goes). Under the queues'
    /// lock.
    pub(super) fn take_erased_mark(&self, subscriber: &str, log_seq: u64) -> bool {
        if !self.erased_any.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let mut marks = self
            .erased_pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = marks.remove(&(subscriber.to_owned(), log_seq));
        if marks.is_empty() {
            self.erased_any
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        found
    }
}
