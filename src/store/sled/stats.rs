//! Read-only summaries for operators: a subscriber's backlog, one delivery by position.
//!
//! These serve the admin API, `/metrics` and the inspection commands; nothing here writes.

use serde::Deserialize;

use super::{SledStore, decode_record, keys};
use crate::ats::Timestamp;
use crate::store::{DeliveryState, OutboxEntry, StoreError, SubscriberBacklog};

/// The part of an outbox entry a backlog needs (cheaper to decode than the whole).
#[derive(Deserialize)]
struct EntryState {
    state: DeliveryState,
    last_error: Option<String>,
    updated_at: Timestamp,
}

impl SledStore {
    /// Counts one subscriber's deliveries by state, finds its oldest pending delivery and
    /// its latest error. Cost: one scan of the subscriber's outbox.
    pub fn subscriber_backlog(&self, subscriber: &str) -> Result<SubscriberBacklog, StoreError> {
        let mut backlog = SubscriberBacklog::default();
        let mut oldest_seq = None;
        for item in self.h()?.tree.scan_prefix(keys::outbox_prefix(subscriber)) {
            let (key, value) = item?;
            let seq = keys::trailing_seq(&key).unwrap_or(0);
            let entry: EntryState =
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    what: format!("outbox entry {seq} of {subscriber}"),
                    message: e.to_string(),
                })?;
            match entry.state {
                DeliveryState::Pending => {
                    backlog.pending += 1;
                    oldest_seq.get_or_insert(seq);
                }
                DeliveryState::Delivered => backlog.delivered += 1,
                DeliveryState::Dead => backlog.dead += 1,
            }
            if entry.state != DeliveryState::Delivered
                && let Some(error) = entry.last_error
                && backlog
                    .last_error
                    .as_ref()
                    .is_none_or(|(at, _)| *at <= entry.updated_at)
            {
                backlog.last_error = Some((entry.updated_at, error));
            }
        }
        if let Some(seq) = oldest_seq
            && let Some(value) = self.h()?.tree.get(keys::event(seq))?
        {
            backlog.oldest_pending = Some(decode_record(&value)?.detected_at);
        }
        Ok(backlog)
    }

    /// The delivery of the event at `log_seq` to `subscriber`, if there is one.
    pub fn delivery(
        &self,
        subscriber: &str,
        log_seq: u64,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        match self.h()?.tree.get(keys::outbox(subscriber, log_seq))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    what: format!("outbox entry {log_seq} of {subscriber}"),
                    message: e.to_string(),
                }),
        }
    }
}
