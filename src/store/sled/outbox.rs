//! Delivery state: which event goes to which subscriber next, attempts, dead letters.
//!
//! The outbox entries (`o` keys, each with its state and latest attempts) are durable; the
//! order in which pending deliveries go out comes from the in-memory queues derived from
//! them (see [`super::queues`]). Recording the outcome of an attempt is one insert (the
//! entry with its new state and the attempt appended), then the queues move: delivered or dead → the
//! application's next event becomes due at once; failed → the same head is due again
//! later. So one application's events reach a subscriber in sequence order, while other
//! applications flow freely.

use super::queues::{Pending, app_key};
use super::{SledStore, decode_record, encode_json, keys};
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

impl SledStore {
    pub(super) fn entry(
        &self,
        subscriber: &str,
        log_seq: u64,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        match self.h()?.tree.get(keys::outbox(subscriber, log_seq))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| corrupt(format!("outbox entry {log_seq} of {subscriber}"), e)),
        }
    }

    /// Every delivery of one subscriber, oldest first.
    pub fn outbox(&self, subscriber: &str) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.h()?
            .tree
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
        for item in self.h()?.tree.scan_prefix(prefix) {
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

    /// Claims up to `limit` deliveries of `subscriber` due at `now`, earliest first, for
    /// `hold` (see [`super::queues`]): each is handed out once, until its attempt is
    /// recorded or the claim expires. Nothing while the subscriber is disabled.
    pub fn claim_due(
        &self,
        subscriber: &str,
        now: Timestamp,
        limit: usize,
        hold: std::time::Duration,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let now_ms = now.timestamp_millis();
        let until_ms = now_ms.saturating_add(i64::try_from(hold.as_millis()).unwrap_or(i64::MAX));
        let claimed = {
            let mut queues = self.queues()?;
            // Read under the queues' lock: a 410's attempt writes the disabled key before
            // it takes that lock to end its claim, so once that claim has ended, no claim
            // hands out anything more.
            if self.h()?.tree.contains_key(keys::disabled(subscriber))? {
                return Ok(Vec::new());
            }
            queues.claim(subscriber, now_ms, limit, until_ms)
        };
        let mut out = Vec::with_capacity(claimed.len());
        for &(_, log_seq) in &claimed {
            match self.claimed_delivery(subscriber, log_seq) {
                Ok(Some(d)) => out.push(d),
                Ok(None) => {}
                Err(e) => {
                    // Nothing is handed out: the claims end, and the next call meets the
                    // same error (and reports it) rather than skipping these deliveries.
                    let mut queues = self.queues()?;
                    for &(_, seq) in &claimed {
                        queues.release(subscriber, seq);
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    fn claimed_delivery(
        &self,
        subscriber: &str,
        log_seq: u64,
    ) -> Result<Option<DueDelivery>, StoreError> {
        let Some(entry) = self.entry(subscriber, log_seq)? else {
            return Ok(None);
        };
        let record = match self.h()?.tree.get(keys::event(log_seq))? {
            Some(v) => decode_record(&v)?,
            None => {
                return Err(corrupt(
                    format!("event {log_seq}"),
                    "queued for delivery but missing from the log",
                ));
            }
        };
        Ok(Some(DueDelivery {
            subscriber: subscriber.to_owned(),
            log_seq,
            entry,
            body: record.body,
            detected_at: record.detected_at,
        }))
    }

    /// Ends a claim without an attempt: the delivery is claimable again as it was.
    pub fn release_claim(&self, delivery: &DueDelivery) -> Result<(), StoreError> {
        self.queues()?
            .release(&delivery.subscriber, delivery.log_seq);
        Ok(())
    }

    /// Says that a deliverer in this process will take deliveries from the queues: from
    /// now on, deliveries published by a flush are kept for it (see [`super::queues`]).
    pub fn expect_deliveries(&self) {
        self.queues_unbuilt().wanted = true;
    }

    /// When a delivery of `subscriber` can next be claimed.
    pub fn next_due_at(&self, subscriber: &str) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .queues()?
            .next_due(subscriber)
            .and_then(Timestamp::from_timestamp_millis))
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
                .h()?
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

    /// Records an attempt on a claimed delivery and its consequence (one atomic write),
    /// then moves the queues; the claim ends. The entry is the one read with the claim:
    /// sound because a pending delivery is changed only by its claimant.
    pub fn record_attempt(
        &self,
        delivery: &DueDelivery,
        attempt: &AttemptRecord,
        result: AttemptResult,
    ) -> Result<(), StoreError> {
        let subscriber = delivery.subscriber.as_str();
        let log_seq = delivery.log_seq;
        let mut entry = delivery.entry.clone();
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
            self.h()?.tree.apply_batch(batch)?;
        } else {
            // One key: atomic without a batch, and without the log-buffer write and sync
            // that every sled 0.34 batch costs.
            self.h()?.tree.insert(key, value)?;
        }
        let mut queues = self.queues()?;
        if self.take_erased_mark(subscriber, log_seq) {
            // Claimed before an erasure: the attempts this claim read are erased again
            // (this attempt's own record stays, as on PostgreSQL, which appends it).
            let earlier = entry.recent_attempts.len().saturating_sub(1);
            for a in entry.recent_attempts.iter_mut().take(earlier) {
                crate::store::erase::erase_attempt(a);
            }
            self.h()?
                .tree
                .insert(keys::outbox(subscriber, log_seq), encode_json(&entry)?)?;
        }
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
            // Stays due (the claim ends): the worker sends nothing while the subscriber
            // is disabled.
            AttemptResult::Disable { .. } => {
                queues.reschedule(subscriber, log_seq, entry.due_at.timestamp_millis());
            }
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
            .h()?
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
            .h()?
            .tree
            .get(keys::disabled(subscriber))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Re-enables a subscriber disabled by a 410; its backlog resumes. Returns whether it
    /// was disabled.
    pub fn enable_subscriber(&self, subscriber: &str) -> Result<bool, StoreError> {
        Ok(self.h()?.tree.remove(keys::disabled(subscriber))?.is_some())
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
        self.h()?.tree.apply_batch(batch)?;
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
