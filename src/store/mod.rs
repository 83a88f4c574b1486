//! The durable state: snapshots, sync state, the event log, the outbox, held events.
//!
//! This module is the store's vocabulary, in the domain's words (a page to commit, an event
//! record, an outbox entry, an attempt and its consequence); the backend behind it is
//! [`sled`] (`src/store/sled/`), and no sled type crosses into the rest of the crate.
//! Callers speak the domain (commit a page, advance the watermark, list events), so a
//! second backend can follow behind the same interface.
//!
//! Durability: a commit is atomic; it is on disk once [`Store::flush`] returns. Callers
//! flush before telling anyone about an event (printing, delivering).

pub mod postgres;
pub mod sled;

pub use self::sled::{LOCK_WAIT, Store, keys};

/// The one event filter, defined with the events (the CLI, the API and replay use it too).
pub use crate::event::EventFilter;

use std::path::PathBuf;

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
        "this replica no longer holds the lease on integration {integration}; another replica polls it now"
    )]
    LeaseLost { integration: String },
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

/// A delivery that is due, with what to send.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    pub log_seq: u64,
    pub entry: OutboxEntry,
    /// The event body, verbatim.
    pub body: Vec<u8>,
    /// When the event was detected.
    pub detected_at: Timestamp,
    /// Its position in the due order (to continue a sweep after it).
    pub key: Vec<u8>,
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
