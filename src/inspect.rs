//! What operators look at: the status of integrations and subscribers, one event with its
//! deliveries and attempts, a page of the event log.
//!
//! These views are built from the store (and the config, for what is configured) and are
//! the JSON of the admin API; the CLI builds the same views from the store when the daemon
//! is stopped, or reads them back from the API when it runs, and prints them either way.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ats::Timestamp;
use crate::config::Config;
use crate::event::EventType;
use crate::store::{
    AttemptRecord, DeliveryState, EventRecord, OutboxEntry, Store, StoreError, SyncState,
};

/// An integration is stale when its last successful sync is older than this many poll
/// intervals (or it never synced successfully).
pub const STALE_AFTER_INTERVALS: u32 = 3;

/// Everything `hirehook status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// One per configured integration, in config order.
    pub integrations: Vec<IntegrationStatus>,
    /// One per configured subscriber, in config order.
    pub subscribers: Vec<SubscriberStatus>,
}

/// Where one integration's polling stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntegrationStatus {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Whether the first (baseline) sync completed.
    pub baseline_done: bool,
    /// When the last sync finished successfully.
    pub last_success_at: Option<Timestamp>,
    /// The next incremental sync asks for records updated after this (minus the overlap).
    pub watermark: Option<Timestamp>,
    pub last_full_resync: Option<Timestamp>,
    /// Applications with a snapshot.
    pub applications: u64,
    /// The last sync failure (or unreadable records), until a sync succeeds cleanly.
    pub last_error: Option<String>,
    /// Events held by the mass-change guard, waiting for `hirehook events release|drop`.
    pub held_events: u64,
    /// Why the integration counts as stale for `/readyz`; `None` when it is fresh.
    pub stale: Option<String>,
}

/// Where one subscriber's deliveries stand.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriberStatus {
    pub name: String,
    /// False after a 410 Gone, until an operator enables it.
    pub enabled: bool,
    /// Why it is disabled.
    pub disabled_reason: Option<String>,
    /// Deliveries waiting (the backlog).
    pub pending: u64,
    pub delivered: u64,
    /// Dead letters.
    pub dead: u64,
    /// When the event of the oldest pending delivery was detected.
    pub oldest_pending_at: Option<Timestamp>,
    /// Its age in seconds when the view was built.
    pub oldest_pending_age_seconds: Option<f64>,
    /// The most recent failure among pending and dead deliveries.
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
}

/// One logged (or held) event with its deliveries and their attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventView {
    pub event: EventSummary,
    /// One per subscriber the event was routed to (none while held).
    pub deliveries: Vec<DeliveryView>,
}

/// An event of the log, with its webhook body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventSummary {
    /// Position in the global log.
    pub log_seq: u64,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub integration_id: String,
    pub application_id: String,
    /// Per-application sequence.
    pub sequence: u64,
    pub detected_at: Timestamp,
    /// The webhook body, verbatim.
    pub body: Box<RawValue>,
}

/// One delivery of an event to a subscriber.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryView {
    pub subscriber: String,
    pub state: DeliveryState,
    /// When the next attempt is due (meaningful while pending).
    pub due_at: Timestamp,
    pub last_error: Option<String>,
    pub updated_at: Timestamp,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptRecord>,
}

/// A dead letter (or any delivery) without its attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryRow {
    pub subscriber: String,
    pub log_seq: u64,
    #[serde(flatten)]
    pub entry: OutboxEntry,
}

impl DeliveryRow {
    /// The row of one delivery; its attempts are left out (see [`DeliveryView`]).
    pub fn new(subscriber: String, log_seq: u64, mut entry: OutboxEntry) -> Self {
        entry.recent_attempts = Vec::new();
        Self {
            subscriber,
            log_seq,
            entry,
        }
    }
}

impl EventSummary {
    /// The summary of a stored record. A body that is not JSON (never written by
    /// hirehook) is reported as corrupt.
    pub fn from_record(record: EventRecord) -> Result<Self, StoreError> {
        let body = String::from_utf8(record.body)
            .ok()
            .and_then(|s| RawValue::from_string(s).ok())
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("body of event {}", record.id),
                message: "not JSON".into(),
            })?;
        Ok(Self {
            log_seq: record.log_seq,
            id: record.id,
            event_type: record.event_type,
            integration_id: record.integration_id,
            application_id: record.application_id,
            sequence: record.sequence,
            detected_at: record.detected_at,
            body,
        })
    }
}

/// Why an integration is stale at `now`, or `None` when it synced successfully within
/// [`STALE_AFTER_INTERVALS`] × `interval`. `last_error` is what the reason quotes of the
/// last failure: the full text for operators, [`SyncState::last_error_summary`] for
/// `/readyz`.
pub fn staleness(
    state: &SyncState,
    interval: Duration,
    now: Timestamp,
    last_error: Option<&str>,
) -> Option<String> {
    let limit = interval.saturating_mul(STALE_AFTER_INTERVALS);
    let last_error = last_error
        .map(|e| format!("; last error: {e}"))
        .unwrap_or_default();
    match state.last_success_at {
        None => Some(format!("never synced successfully{last_error}")),
        Some(at) => {
            let age = (now - at).to_std().unwrap_or_default();
            (age > limit).then(|| {
                format!(
                    "last successful sync {} ago ({}), more than {STALE_AFTER_INTERVALS} × poll_interval ({}){last_error}",
                    humantime::format_duration(Duration::from_secs(age.as_secs())),
                    crate::event::format_timestamp(&at),
                    humantime::format_duration(limit),
                )
            })
        }
    }
}

/// The status of every configured integration and subscriber.
pub async fn status(
    store: &Store,
    config: &Config,
    now: Timestamp,
) -> Result<StatusView, StoreError> {
    let mut integrations = Vec::with_capacity(config.integrations.len());
    for integration in &config.integrations {
        let state = store.sync_state(&integration.id).await?;
        let held_events = store.held_events(&integration.id).await?.len() as u64;
        integrations.push(IntegrationStatus {
            id: integration.id.clone(),
            label: integration.label.clone(),
            // Done once a sync has read every record (which is what sets a watermark): a
            // baseline whose records were all rejected stored nothing to diff against.
            baseline_done: state.baseline_done && state.watermark.is_some(),
            last_success_at: state.last_success_at,
            watermark: state.watermark,
            last_full_resync: state.last_full_resync,
            applications: state.applications,
            stale: staleness(
                &state,
                config.kombo.poll_interval,
                now,
                state.last_error.as_deref(),
            ),
            last_error: state.last_error,
            held_events,
        });
    }
    Ok(StatusView {
        integrations,
        subscribers: subscribers(store, config, now).await?,
    })
}

/// The status of every configured subscriber.
pub async fn subscribers(
    store: &Store,
    config: &Config,
    now: Timestamp,
) -> Result<Vec<SubscriberStatus>, StoreError> {
    let mut out = Vec::with_capacity(config.subscribers.len());
    for s in &config.subscribers {
        out.push(subscriber(store, &s.name, now).await?);
    }
    Ok(out)
}

/// The status of one subscriber.
pub async fn subscriber(
    store: &Store,
    name: &str,
    now: Timestamp,
) -> Result<SubscriberStatus, StoreError> {
    let backlog = store.subscriber_backlog(name).await?;
    let disabled_reason = store.disabled_reason(name).await?;
    let (last_error_at, last_error) = backlog.last_error.unzip();
    Ok(SubscriberStatus {
        name: name.to_owned(),
        enabled: disabled_reason.is_none(),
        disabled_reason,
        pending: backlog.pending,
        delivered: backlog.delivered,
        dead: backlog.dead,
        oldest_pending_at: backlog.oldest_pending,
        oldest_pending_age_seconds: backlog
            .oldest_pending
            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
        last_error,
        last_error_at,
    })
}

/// One event by id with its deliveries and attempts; `None` when the id is unknown.
pub async fn event(store: &Store, id: &str) -> Result<Option<EventView>, StoreError> {
    let Some(record) = store.event_by_id(id).await? else {
        return Ok(None);
    };
    let log_seq = record.log_seq;
    let mut deliveries = Vec::new();
    for subscriber in &record.subscribers {
        let Some(entry) = store.delivery(subscriber, log_seq).await? else {
            continue;
        };
        deliveries.push(DeliveryView {
            subscriber: subscriber.clone(),
            state: entry.state,
            due_at: entry.due_at,
            last_error: entry.last_error,
            updated_at: entry.updated_at,
            attempts: store.attempts(subscriber, log_seq).await?,
        });
    }
    Ok(Some(EventView {
        event: EventSummary::from_record(record)?,
        deliveries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn staleness_follows_three_intervals_and_names_the_reason() {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 29, 10, 0, 0)
            .single()
            .expect("time");
        let minute = Duration::from_secs(60);
        let mut state = SyncState::default();
        let never = staleness(&state, minute, now, state.last_error.as_deref()).expect("stale");
        assert!(never.contains("never synced"), "{never}");

        state.last_success_at = Some(now - chrono::Duration::seconds(179));
        assert_eq!(
            staleness(&state, minute, now, state.last_error.as_deref()),
            None
        );

        state.last_success_at = Some(now - chrono::Duration::seconds(181));
        state.last_error = Some("Kombo answered HTTP 500".into());
        let old = staleness(&state, minute, now, state.last_error.as_deref()).expect("stale");
        assert!(old.contains("3m 1s ago"), "{old}");
        assert!(old.contains("HTTP 500"), "{old}");
    }
}
