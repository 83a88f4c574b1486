//! Delivery state: which event goes to which subscriber next, attempts, dead letters.
//!
//! Per subscriber and application the pending deliveries form a queue (`a` keys, in log
//! order); only its head is in the due index (`q` keys, by due time). Recording the outcome
//! of an attempt moves the head: delivered or dead → the next event of that application
//! becomes due at once; failed → the same head is due again later. So one application's
//! events reach a subscriber in sequence order, while other applications flow freely.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{DeliveryState, OutboxEntry, Store, StoreError, decode_record, encode_json, keys};
use crate::ats::Timestamp;

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

/// A delivery that is due, with what to send.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    pub log_seq: u64,
    pub entry: OutboxEntry,
    /// The event body, verbatim.
    pub body: Vec<u8>,
    /// Its key in the due index (to continue a sweep after it).
    pub key: Vec<u8>,
}

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

    /// As [`Store::due_deliveries`], starting after the due-index key `after` (the `key`
    /// of a delivery returned earlier), so that a worker sweeping a long queue does not
    /// walk past the deliveries it has in flight again and again.
    pub fn due_deliveries_after(
        &self,
        subscriber: &str,
        now: Timestamp,
        limit: usize,
        skip: &HashSet<u64>,
        after: Option<&[u8]>,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let now_ms = now.timestamp_millis();
        let prefix = keys::due_prefix(subscriber);
        let start = match after {
            Some(key) if key.starts_with(&prefix) => {
                let mut start = key.to_vec();
                start.push(0);
                start
            }
            _ => prefix.clone(),
        };
        // Every key of this subscriber starts with `prefix`, which ends with a 0 separator.
        let mut end = prefix;
        end.pop();
        end.push(1);
        let mut out = Vec::new();
        for item in self.tree.range(start..end) {
            let (key, _) = item?;
            let Some((due_ms, log_seq)) = keys::due_parts(&key) else {
                continue;
            };
            if due_ms > now_ms || out.len() >= limit {
                break;
            }
            if skip.contains(&log_seq) {
                continue;
            }
            let Some(entry) = self.entry(subscriber, log_seq)? else {
                continue;
            };
            let body = match self.tree.get(keys::event(log_seq))? {
                Some(v) => decode_record(&v)?.body,
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
                body,
                key: key.to_vec(),
            });
        }
        Ok(out)
    }

    /// When the earliest queued delivery of `subscriber` is due.
    pub fn next_due_at(&self, subscriber: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .tree
            .scan_prefix(keys::due_prefix(subscriber))
            .keys()
            .next()
            .transpose()?
            .and_then(|k| keys::due_parts(&k))
            .map(|(ms, _)| ms))
    }

    /// Records an attempt and its consequence in one atomic batch.
    pub fn record_attempt(
        &self,
        subscriber: &str,
        log_seq: u64,
        attempt: &AttemptRecord,
        result: AttemptResult,
    ) -> Result<(), StoreError> {
        let _guard = self.lock();
        let Some(mut entry) = self.entry(subscriber, log_seq)? else {
            return Err(corrupt(
                format!("outbox entry {log_seq} of {subscriber}"),
                "an attempt was made for a delivery that does not exist",
            ));
        };
        let mut batch = sled::Batch::default();
        batch.insert(
            keys::attempt(subscriber, log_seq, attempt.attempt),
            encode_json(attempt)?,
        );
        batch.remove(keys::due(subscriber, &entry.due_at, log_seq));
        entry.attempts = entry.attempts.max(attempt.attempt);
        entry.updated_at = attempt.at;
        entry.last_error = match (&attempt.error, attempt.status) {
            (Some(e), _) => Some(e.clone()),
            (None, Some(s)) if !(200..300).contains(&s) => Some(format!("HTTP {s}")),
            _ => None,
        };
        let mut advance_queue = false;
        match result {
            AttemptResult::Delivered => {
                entry.state = DeliveryState::Delivered;
                advance_queue = true;
            }
            AttemptResult::Dead => {
                entry.state = DeliveryState::Dead;
                advance_queue = true;
            }
            AttemptResult::Retry { due_at } => {
                entry.due_at = due_at;
                batch.insert(keys::due(subscriber, &due_at, log_seq), &[][..]);
            }
            AttemptResult::Disable { reason } => {
                batch.insert(keys::disabled(subscriber), reason.as_bytes());
                batch.insert(keys::due(subscriber, &entry.due_at, log_seq), &[][..]);
            }
        }
        if advance_queue {
            let prefix =
                keys::app_queue_prefix(subscriber, &entry.integration_id, &entry.application_id);
            batch.remove(keys::app_queue(
                subscriber,
                &entry.integration_id,
                &entry.application_id,
                log_seq,
            ));
            let next = self
                .tree
                .scan_prefix(&prefix)
                .keys()
                .filter_map(|k| k.ok().and_then(|k| keys::trailing_seq(&k)))
                .find(|&seq| seq != log_seq);
            if let Some(next_seq) = next
                && let Some(mut next_entry) = self.entry(subscriber, next_seq)?
            {
                let old_due = next_entry.due_at;
                next_entry.due_at = attempt.at.max(old_due);
                batch.remove(keys::due(subscriber, &old_due, next_seq));
                batch.insert(keys::due(subscriber, &next_entry.due_at, next_seq), &[][..]);
                batch.insert(
                    keys::outbox(subscriber, next_seq),
                    encode_json(&next_entry)?,
                );
            }
        }
        batch.insert(keys::outbox(subscriber, log_seq), encode_json(&entry)?);
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// The attempts of one delivery, in order.
    pub fn attempts(
        &self,
        subscriber: &str,
        log_seq: u64,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        self.tree
            .scan_prefix(keys::attempt_prefix(subscriber, log_seq))
            .values()
            .map(|v| {
                serde_json::from_slice(&v?)
                    .map_err(|e| corrupt(format!("attempt of {log_seq} to {subscriber}"), e))
            })
            .collect()
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
        let _guard = self.lock();
        let mut batch = sled::Batch::default();
        for (name, log_seq, mut entry) in dead.iter().cloned() {
            entry.state = DeliveryState::Pending;
            entry.round_start = entry.attempts;
            entry.due_at = now;
            entry.updated_at = now;
            batch.insert(
                keys::app_queue(&name, &entry.integration_id, &entry.application_id, log_seq),
                &[][..],
            );
            batch.insert(keys::due(&name, &now, log_seq), &[][..]);
            batch.insert(keys::outbox(&name, log_seq), encode_json(&entry)?);
        }
        self.tree.apply_batch(batch)?;
        Ok(dead.len())
    }
}
