//! Delivery state: which event goes to which subscriber next, attempts, dead letters.
//!
//! The outbox entries (`o` keys, each with its state and latest attempts) are durable; the
//! order in which pending deliveries go out comes from the in-memory queues derived from
//! them (see [`super::queues`]). Recording the outcome of an attempt is one insert (the
//! entry with its new state and the attempt appended), then the queues move: delivered or dead → the
//! application's next event becomes due at once; failed → the same head is due again
//! later. So one application's events reach a subscriber in sequence order, while other
//! applications flow freely.

use std::collections::HashSet;

use super::queues::{Pending, app_key};
use super::{Store, decode_record, encode_json, keys};
use crate::ats::Timestamp;
use crate::store::{
    ATTEMPTS_KEPT, AttemptRecord, AttemptResult, DeliveryState, DueDelivery, OutboxEntry,
    QueueSummary, StoreError,
};

fn corrupt(what: String, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        message: e.to_string(),
    }
}

impl Store {
    fn entry(&self, subscriber: &str, log_seq: u64) -> Result<Option<OutboxEntry>, StoreError> {
        match self.tree.get(keys::outbox(subscriber, log_seq))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| corrupt(format!("outbox entry {log_seq} of {subscriber}"), e)),
        }
    }

    /// Every delivery of one subscriber, oldest first.
    pub fn outbox(&self, subscriber: &str) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.tree
            .scan_prefix(keys::outbox_prefix(subscriber))
            .map(|item| {
                let (key, value) = item?;
                let seq = keys::trailing_seq(&key).unwrap_or(0);
                let entry = serde_json::from_slice(&value)
                    .map_err(|e| corrupt(format!("outbox entry {seq} of {subscriber}"), e))?;
                Ok((seq, entry))
            })
            .collect()
    }

    /// Deliveries across subscribers, filtered; `(subscriber, log sequence, entry)`.
    pub fn deliveries(
        &self,
        subscriber: Option<&str>,
        state: Option<DeliveryState>,
        event_id: Option<&str>,
    ) -> Result<Vec<(String, u64, OutboxEntry)>, StoreError> {
        let prefix = match subscriber {
            Some(s) => keys::outbox_prefix(s),
            None => vec![keys::OUTBOX],
        };
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix) {
            let (key, value) = item?;
            let seq = keys::trailing_seq(&key).unwrap_or(0);
            let name = key
                .get(1..key.len().saturating_sub(9))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let entry: OutboxEntry = serde_json::from_slice(&value)
                .map_err(|e| corrupt(format!("outbox entry {seq} of {name}"), e))?;
            if state.is_some_and(|s| s != entry.state)
                || event_id.is_some_and(|id| id != entry.event_id)
            {
                continue;
            }
            out.push((name, seq, entry));
        }
        Ok(out)
    }

    /// Up to `limit` deliveries of `subscriber` due at `now`, earliest first, skipping the
    /// log sequences in `skip` (those in flight).
    pub fn due_deliveries(
        &self,
        subscriber: &str,
        now: Timestamp,
        limit: usize,
        skip: &HashSet<u64>,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.due_deliveries_after(subscriber, now, limit, skip, None)
    }

    /// As [`Store::due_deliveries`], starting after the position `after` (the `key` of a
    /// delivery returned earlier), so that a worker sweeping a long queue does not walk
    /// past the deliveries it has in flight again and again.
    pub fn due_deliveries_after(
        &self,
        subscriber: &str,
        now: Timestamp,
        limit: usize,
        skip: &HashSet<u64>,
        after: Option<&[u8]>,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let after = after.and_then(decode_position);
        let due = self
            .queues()?
            .due(subscriber, now.timestamp_millis(), limit, after, |seq| {
                skip.contains(&seq)
            });
        let mut out = Vec::with_capacity(due.len());
        for (due_ms, log_seq) in due {
            let Some(entry) = self.entry(subscriber, log_seq)? else {
                continue;
            };
            let record = match self.tree.get(keys::event(log_seq))? {
                Some(v) => decode_record(&v)?,
                None => {
                    return Err(corrupt(
                        format!("event {log_seq}"),
                        "queued for delivery but missing from the log",
                    ));
                }
            };
            out.push(DueDelivery {
                log_seq,
                entry,
                body: record.body,
                detected_at: record.detected_at,
                key: encode_position(due_ms, log_seq),
            });
        }
        Ok(out)
    }

    /// Says that a deliverer in this process will take deliveries from the queues: from
    /// now on, deliveries published by a flush are kept for it (see [`super::queues`]).
    pub fn expect_deliveries(&self) {
        self.queues_unbuilt().wanted = true;
    }

    /// When the earliest queued delivery of `subscriber` is due (ms since the epoch).
    pub fn next_due_at(&self, subscriber: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.queues()?.next_due(subscriber))
    }

    /// A subscriber's pending and dead deliveries and its oldest pending event, from the
    /// in-memory queues: cheap enough for every `/metrics` scrape, however long the
    /// outbox's history (the first call builds the queues with one scan).
    pub fn queue_summary(&self, subscriber: &str) -> Result<QueueSummary, StoreError> {
        let (pending, dead, oldest) = {
            let q = self.queues()?;
            (
                q.pending(subscriber),
                q.dead(subscriber),
                q.oldest_pending(subscriber),
            )
        };
        let oldest_pending = match oldest {
            Some(seq) => self
                .tree
                .get(keys::event(seq))?
                .map(|v| decode_record(&v).map(|r| r.detected_at))
                .transpose()?,
            None => None,
        };
        Ok(QueueSummary {
            pending: pending as u64,
            dead,
            oldest_pending,
        })
    }

    /// Records an attempt and its consequence (one atomic write), then moves the queues.
    pub fn record_attempt(
        &self,
        subscriber: &str,
        log_seq: u64,
        attempt: &AttemptRecord,
        result: AttemptResult,
    ) -> Result<(), StoreError> {
        let Some(entry) = self.entry(subscriber, log_seq)? else {
            return Err(corrupt(
                format!("outbox entry {log_seq} of {subscriber}"),
                "an attempt was made for a delivery that does not exist",
            ));
        };
        self.record_attempt_on(subscriber, log_seq, entry, attempt, result)
    }

    /// As [`Store::record_attempt`], on the entry as the caller read it with the due
    /// delivery (saving a read). Sound because a pending delivery is changed only by the
    /// attempt its worker has in flight.
    pub fn record_attempt_on(
        &self,
        subscriber: &str,
        log_seq: u64,
        mut entry: OutboxEntry,
        attempt: &AttemptRecord,
        result: AttemptResult,
    ) -> Result<(), StoreError> {
        // Built before the write, so that building does not count this attempt's outcome
        // and then see it applied again.
        drop(self.queues()?);
        entry.attempts = entry.attempts.max(attempt.attempt);
        entry.updated_at = attempt.at;
        entry.last_error = match (&attempt.error, attempt.status) {
            (Some(e), _) => Some(e.clone()),
            (None, Some(s)) if !(200..300).contains(&s) => Some(format!("HTTP {s}")),
            _ => None,
        };
        if entry.recent_attempts.len() >= ATTEMPTS_KEPT {
            entry.recent_attempts.remove(0);
        }
        entry.recent_attempts.push(attempt.clone());
        match &result {
            AttemptResult::Delivered => entry.state = DeliveryState::Delivered,
            AttemptResult::Dead => entry.state = DeliveryState::Dead,
            AttemptResult::Retry { due_at } => entry.due_at = *due_at,
            AttemptResult::Disable { .. } => {}
        }
        let key = keys::outbox(subscriber, log_seq);
        let value = encode_json(&entry)?;
        if let AttemptResult::Disable { reason } = &result {
            let mut batch = sled::Batch::default();
            batch.insert(keys::disabled(subscriber), reason.as_bytes());
            batch.insert(key, value);
            self.tree.apply_batch(batch)?;
        } else {
            // One key: atomic without a batch, and without the log-buffer write and sync
            // that every sled 0.34 batch costs.
            self.tree.insert(key, value)?;
        }
        let mut queues = self.queues()?;
        match result {
            AttemptResult::Delivered => {
                queues.finish(subscriber, log_seq, attempt.at.timestamp_millis());
            }
            AttemptResult::Dead => {
                queues.finish(subscriber, log_seq, attempt.at.timestamp_millis());
                queues.dead_added(subscriber);
            }
            AttemptResult::Retry { due_at } => {
                queues.reschedule(subscriber, log_seq, due_at.timestamp_millis());
            }
            // Stays due: the worker sends nothing while the subscriber is disabled.
            AttemptResult::Disable { .. } => {}
        }
        Ok(())
    }

    /// The attempts of one delivery, in order: those its entry keeps, after any separate
    /// attempt records (`t` keys) a store written by an earlier build holds.
    pub fn attempts(
        &self,
        subscriber: &str,
        log_seq: u64,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut attempts: Vec<AttemptRecord> = self
            .tree
            .scan_prefix(keys::attempt_prefix(subscriber, log_seq))
            .values()
            .map(|v| {
                serde_json::from_slice(&v?)
                    .map_err(|e| corrupt(format!("attempt of {log_seq} to {subscriber}"), e))
            })
            .collect::<Result<_, StoreError>>()?;
        if let Some(entry) = self.entry(subscriber, log_seq)? {
            let kept_from = attempts.last().map_or(0, |a| a.attempt);
            attempts.extend(
                entry
                    .recent_attempts
                    .into_iter()
                    .filter(|a| a.attempt > kept_from),
            );
        }
        Ok(attempts)
    }

    /// Why a subscriber is disabled, if it is.
    pub fn disabled_reason(&self, subscriber: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tree
            .get(keys::disabled(subscriber))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Re-enables a subscriber disabled by a 410; its backlog resumes. Returns whether it
    /// was disabled.
    pub fn enable_subscriber(&self, subscriber: &str) -> Result<bool, StoreError> {
        Ok(self.tree.remove(keys::disabled(subscriber))?.is_some())
    }

    /// Puts dead letters back in the queue, due now. Returns how many.
    pub fn retry_dead(
        &self,
        subscriber: Option<&str>,
        event_id: Option<&str>,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let dead = self.deliveries(subscriber, Some(DeliveryState::Dead), event_id)?;
        let mut queues = self.queues()?;
        let mut batch = sled::Batch::default();
        for (name, log_seq, entry) in &dead {
            let mut entry = entry.clone();
            entry.state = DeliveryState::Pending;
            entry.round_start = entry.attempts;
            entry.due_at = now;
            entry.updated_at = now;
            batch.insert(keys::outbox(name, *log_seq), encode_json(&entry)?);
        }
        self.tree.apply_batch(batch)?;
        for (name, log_seq, entry) in dead.iter() {
            queues.dead_requeued(name);
            queues.add(Pending {
                subscriber: name.clone(),
                log_seq: *log_seq,
                app: app_key(&entry.integration_id, &entry.application_id),
                due_ms: now.timestamp_millis(),
            });
        }
        Ok(dead.len())
    }
}

/// A position in the due order, as [`DueDelivery::key`] carries it.
fn encode_position(due_ms: i64, log_seq: u64) -> Vec<u8> {
    let mut key = due_ms.to_be_bytes().to_vec();
    key.extend_from_slice(&log_seq.to_be_bytes());
    key
}

fn decode_position(key: &[u8]) -> Option<(i64, u64)> {
    let ms: [u8; 8] = key.get(..8)?.try_into().ok()?;
    let seq: [u8; 8] = key.get(8..16)?.try_into().ok()?;
    Some((i64::from_be_bytes(ms), u64::from_be_bytes(seq)))
}
