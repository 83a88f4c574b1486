//! Events: the hiring signals hirehook derives and delivers.
//!
//! An [`Event`] is produced by the pure diff, made durable in the store, then delivered as a
//! Standard Webhooks request whose body is [`Event::body`] (the envelope documented in `docs/events.md`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::Timestamp;
use crate::domain::{OfferStatus, Outcome};

/// The event catalogue. The wire names are a contract: receivers switch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    ApplicationCreated,
    StageChanged,
    OutcomeHired,
    Rejected,
    OutcomeReverted,
    OfferCreated,
    OfferStatusChanged,
    InterviewScheduled,
    InterviewRescheduled,
    InterviewCanceled,
    ApplicationDeleted,
    ApplicationRestored,
}

impl EventType {
    /// Every type, in catalogue order.
    pub const ALL: [EventType; 12] = [
        EventType::ApplicationCreated,
        EventType::StageChanged,
        EventType::OutcomeHired,
        EventType::Rejected,
        EventType::OutcomeReverted,
        EventType::OfferCreated,
        EventType::OfferStatusChanged,
        EventType::InterviewScheduled,
        EventType::InterviewRescheduled,
        EventType::InterviewCanceled,
        EventType::ApplicationDeleted,
        EventType::ApplicationRestored,
    ];

    /// The wire name, e.g. `stage_changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ApplicationCreated => "application_created",
            EventType::StageChanged => "stage_changed",
            EventType::OutcomeHired => "outcome_hired",
            EventType::Rejected => "rejected",
            EventType::OutcomeReverted => "outcome_reverted",
            EventType::OfferCreated => "offer_created",
            EventType::OfferStatusChanged => "offer_status_changed",
            EventType::InterviewScheduled => "interview_scheduled",
            EventType::InterviewRescheduled => "interview_rescheduled",
            EventType::InterviewCanceled => "interview_canceled",
            EventType::ApplicationDeleted => "application_deleted",
            EventType::ApplicationRestored => "application_restored",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::parse(s).ok_or_else(|| {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            format!("unknown event type `{s}` (known: {})", known.join(", "))
        })
    }
}

// ---------------------------------------------------------------------------------------
// Payload parts
// ---------------------------------------------------------------------------------------

/// Formats a timestamp the way every webhook body does: RFC 3339, UTC, exactly three
/// fraction digits and `Z` (e.g. `2026-11-29T10:00:00.123Z`).
pub fn format_timestamp(ts: &Timestamp) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serializes a timestamp with [`format_timestamp`], without an intermediate `String`.
fn ser_ts<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&ts.format(TS_FORMAT))
}

/// As [`ser_ts`], for an optional timestamp (`null` when absent).
fn ser_opt_ts<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => ser_ts(ts, s),
        None => s.serialize_none(),
    }
}

/// The `strftime` pattern equal to `to_rfc3339_opts(Millis, true)` for years 0..=9999.
const TS_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// A stage as events show it: `{id, remote_id, name, index}`.
///
/// Stages are job-specific; `name` and `index` may be null in Kombo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageRef {
    /// Kombo's stage id: what `stage_changed` compares.
    pub id: String,
    /// The ATS's own id, for receivers that map back to the ATS.
    pub remote_id: Option<String>,
    /// Display name; refreshed on a rename so later payloads are current.
    pub name: Option<String>,
    /// Position in the job's pipeline, when the ATS has one.
    pub index: Option<i64>,
}

/// The job an application is for: `{id, remote_id, name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRef {
    /// Kombo's job id.
    pub id: String,
    /// The ATS's own id.
    pub remote_id: Option<String>,
    /// The job title, what a human reading a Slack relay recognises.
    pub name: Option<String>,
}

/// The candidate behind an application: `{id, first_name, last_name}`.
///
/// Deliberately without contact details (no emails, phones, social links): webhooks leave
/// the building and are relayed into chat tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CandidateRef {
    /// Kombo's candidate id.
    pub id: String,
    /// Given name, if the ATS has it.
    pub first_name: Option<String>,
    /// Family name, if the ATS has it.
    pub last_name: Option<String>,
}

/// An offer: `{id, remote_id, status}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfferRef {
    /// Kombo's offer id: the key `offer_created`/`offer_status_changed` compare by.
    pub id: String,
    /// The ATS's own id.
    pub remote_id: Option<String>,
    /// The status; an unknown value is carried as its raw string, null stays null.
    pub status: Option<OfferStatus>,
}

/// An interview: `{id, remote_id, title, starting_at, ending_at, canceled}`.
///
/// Times are kept at millisecond precision (what bodies and snapshots carry), so a
/// sub-millisecond difference is never a reschedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterviewRef {
    /// Kombo's interview id: the key the interview rules compare by.
    pub id: String,
    /// The ATS's own id.
    pub remote_id: Option<String>,
    /// What the interview is called in the ATS.
    pub title: Option<String>,
    /// Start; null when the ATS has none yet.
    #[serde(serialize_with = "ser_opt_ts")]
    pub starting_at: Option<Timestamp>,
    /// End; null when the ATS has none.
    #[serde(serialize_with = "ser_opt_ts")]
    pub ending_at: Option<Timestamp>,
    /// Canceled in the ATS, or vanished from the record while not canceled (an interview is
    /// canceled once: the flag is what makes that hold).
    pub canceled: bool,
}

/// The `data.application` object common to every event.
///
/// It shows the application as known *after* the change (for `application_deleted`: as it
/// was before the deletion, since a tombstone's fields may be nulled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationSummary {
    /// Kombo's application id.
    pub id: String,
    /// The ATS's own id (may be composite).
    pub remote_id: Option<String>,
    /// The outcome as Kombo reports it; an unknown value (e.g. `WITHDRAWN`) verbatim.
    pub outcome: Option<Outcome>,
    /// The job applied to.
    pub job: Option<JobRef>,
    /// Who applied, without contact details.
    pub candidate: Option<CandidateRef>,
    /// The stage the application is in.
    pub current_stage: Option<StageRef>,
    /// Link to the application in the ATS.
    pub remote_url: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// The fields of one event type (the DESIGN table's right-hand column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventDetail {
    /// First sight after the baseline. The offers and interviews are rendered inside
    /// `data.application` (the "full summary").
    ApplicationCreated {
        /// Every offer of the record.
        offers: Vec<OfferRef>,
        /// Every interview of the record, canceled ones included (flagged).
        interviews: Vec<InterviewRef>,
    },
    /// `current_stage_id` differs from the stored one.
    StageChanged {
        /// The stage stored before (as last seen, name included).
        previous_stage: Option<StageRef>,
        /// The stage now.
        current_stage: Option<StageRef>,
    },
    /// The outcome became `HIRED`.
    OutcomeHired {
        /// The last known outcome before.
        previous_outcome: Option<Outcome>,
        /// The record's offers (the kept ones when the record's are unknown).
        offers: Vec<OfferRef>,
    },
    /// The outcome became `DECLINED` (rejection or withdrawal).
    Rejected {
        /// The last known outcome before.
        previous_outcome: Option<Outcome>,
        /// The ATS's reason, if any.
        rejection_reason_name: Option<String>,
        /// When the ATS says it happened.
        rejected_at: Option<Timestamp>,
    },
    /// The outcome left `HIRED`/`DECLINED` for `PENDING` or null.
    OutcomeReverted {
        /// `HIRED` or `DECLINED`.
        previous_outcome: Option<Outcome>,
        /// `PENDING` or null.
        current_outcome: Option<Outcome>,
    },
    /// An offer id not seen before.
    OfferCreated {
        /// The offer as first seen.
        offer: OfferRef,
    },
    /// A known offer's status differs.
    OfferStatusChanged {
        /// The offer now.
        offer: OfferRef,
        /// The stored status.
        previous_status: Option<OfferStatus>,
        /// The status now.
        current_status: Option<OfferStatus>,
    },
    /// An interview id not seen before and not canceled (or a canceled one un-canceled).
    InterviewScheduled {
        /// The interview now.
        interview: InterviewRef,
    },
    /// A known, non-canceled interview's start or end moved.
    InterviewRescheduled {
        /// The interview now.
        interview: InterviewRef,
        /// The stored start.
        previous_starting_at: Option<Timestamp>,
        /// The stored end.
        previous_ending_at: Option<Timestamp>,
    },
    /// `canceled` became true, or a known non-canceled interview disappeared.
    InterviewCanceled {
        /// The interview, `canceled: true`.
        interview: InterviewRef,
    },
    /// `remote_deleted_at` became non-null.
    ApplicationDeleted {
        /// When the ATS deleted it.
        remote_deleted_at: Timestamp,
    },
    /// `remote_deleted_at` went back to null.
    ApplicationRestored,
}

impl EventDetail {
    /// The catalogue type these fields belong to.
    pub fn event_type(&self) -> EventType {
        match self {
            EventDetail::ApplicationCreated { .. } => EventType::ApplicationCreated,
            EventDetail::StageChanged { .. } => EventType::StageChanged,
            EventDetail::OutcomeHired { .. } => EventType::OutcomeHired,
            EventDetail::Rejected { .. } => EventType::Rejected,
            EventDetail::OutcomeReverted { .. } => EventType::OutcomeReverted,
            EventDetail::OfferCreated { .. } => EventType::OfferCreated,
            EventDetail::OfferStatusChanged { .. } => EventType::OfferStatusChanged,
            EventDetail::InterviewScheduled { .. } => EventType::InterviewScheduled,
            EventDetail::InterviewRescheduled { .. } => EventType::InterviewRescheduled,
            EventDetail::InterviewCanceled { .. } => EventType::InterviewCanceled,
            EventDetail::ApplicationDeleted { .. } => EventType::ApplicationDeleted,
            EventDetail::ApplicationRestored => EventType::ApplicationRestored,
        }
    }

    /// Feeds the values that define this change into the id hash.
    fn hash_values(&self, h: &mut IdHasher) {
        match self {
            EventDetail::ApplicationCreated { .. } | EventDetail::ApplicationRestored => {}
            EventDetail::StageChanged {
                previous_stage,
                current_stage,
            } => {
                h.opt_str(previous_stage.as_ref().map(|s| s.id.as_str()));
                h.opt_str(current_stage.as_ref().map(|s| s.id.as_str()));
            }
            EventDetail::OutcomeHired {
                previous_outcome, ..
            }
            | EventDetail::Rejected {
                previous_outcome, ..
            } => {
                h.opt_str(previous_outcome.as_ref().map(Outcome::as_str));
            }
            EventDetail::OutcomeReverted {
                previous_outcome,
                current_outcome,
            } => {
                h.opt_str(previous_outcome.as_ref().map(Outcome::as_str));
                h.opt_str(current_outcome.as_ref().map(Outcome::as_str));
            }
            EventDetail::OfferCreated { offer } => {
                h.str(&offer.id);
                h.opt_str(offer.status.as_ref().map(OfferStatus::as_str));
            }
            EventDetail::OfferStatusChanged {
                offer,
                previous_status,
                current_status,
            } => {
                h.str(&offer.id);
                h.opt_str(previous_status.as_ref().map(OfferStatus::as_str));
                h.opt_str(current_status.as_ref().map(OfferStatus::as_str));
            }
            EventDetail::InterviewScheduled { interview } => {
                h.str(&interview.id);
                h.opt_ts(interview.starting_at.as_ref());
                h.opt_ts(interview.ending_at.as_ref());
            }
            EventDetail::InterviewRescheduled {
                interview,
                previous_starting_at,
                previous_ending_at,
            } => {
                h.str(&interview.id);
                h.opt_ts(previous_starting_at.as_ref());
                h.opt_ts(previous_ending_at.as_ref());
                h.opt_ts(interview.starting_at.as_ref());
                h.opt_ts(interview.ending_at.as_ref());
            }
            EventDetail::InterviewCanceled { interview } => h.str(&interview.id),
            EventDetail::ApplicationDeleted { remote_deleted_at } => {
                h.opt_ts(Some(remote_deleted_at));
            }
        }
    }

    /// Writes the type's own `data` fields after the common ones.
    fn serialize_fields<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        match self {
            // Rendered inside `data.application`, see `SummaryView`.
            EventDetail::ApplicationCreated { .. } | EventDetail::ApplicationRestored => Ok(()),
            EventDetail::StageChanged {
                previous_stage,
                current_stage,
            } => {
                map.serialize_entry("previous_stage", previous_stage)?;
                map.serialize_entry("current_stage", current_stage)
            }
            EventDetail::OutcomeHired {
                previous_outcome,
                offers,
            } => {
                map.serialize_entry("previous_outcome", previous_outcome)?;
                map.serialize_entry("offers", offers)
            }
            EventDetail::Rejected {
                previous_outcome,
                rejection_reason_name,
                rejected_at,
            } => {
                map.serialize_entry("previous_outcome", previous_outcome)?;
                map.serialize_entry("rejection_reason_name", rejection_reason_name)?;
                map.serialize_entry("rejected_at", &OptTs(rejected_at))
            }
            EventDetail::OutcomeReverted {
                previous_outcome,
                current_outcome,
            } => {
                map.serialize_entry("previous_outcome", previous_outcome)?;
                map.serialize_entry("current_outcome", current_outcome)
            }
            EventDetail::OfferCreated { offer } => map.serialize_entry("offer", offer),
            EventDetail::OfferStatusChanged {
                offer,
                previous_status,
                current_status,
            } => {
                map.serialize_entry("offer", offer)?;
                map.serialize_entry("previous_status", previous_status)?;
                map.serialize_entry("current_status", current_status)
            }
            EventDetail::InterviewScheduled { interview }
            | EventDetail::InterviewCanceled { interview } => {
                map.serialize_entry("interview", interview)
            }
            EventDetail::InterviewRescheduled {
                interview,
                previous_starting_at,
                previous_ending_at,
            } => {
                map.serialize_entry("interview", interview)?;
                map.serialize_entry("previous_starting_at", &OptTs(previous_starting_at))?;
                map.serialize_entry("previous_ending_at", &OptTs(previous_ending_at))
            }
            EventDetail::ApplicationDeleted { remote_deleted_at } => {
                map.serialize_entry("remote_deleted_at", &OptTs(&Some(*remote_deleted_at)))
            }
        }
    }
}

/// One derived hiring signal about one application.
///
/// Built by the diff with [`Event::new`] (which derives the id); made durable as
/// [`Event::body_bytes`]; delivered with `webhook-id` = [`Event::id`].
///
/// `Serialize` writes the webhook body (the Standard Webhooks envelope), fields in the
/// order `docs/events.md` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `evt_` + 32 lowercase hex digits (128 bits of SHA-256): deterministic, so a
    /// re-derivation after a crash yields the same id and receivers dedupe it.
    pub id: String,
    /// The catalogue type; always `detail.event_type()` when built with [`Event::new`].
    pub event_type: EventType,
    /// The Kombo integration the application belongs to.
    pub integration_id: String,
    /// Kombo's application id; with the integration id, what orders delivery.
    pub application_id: String,
    /// Per application, +1 per event, the first event is 1: receivers detect gaps with it.
    pub sequence: u64,
    /// When hirehook saw the change (passed in by the caller: the diff has no clock).
    pub detected_at: Timestamp,
    /// The ATS's own last-update time of the record, where it has one.
    pub remote_updated_at: Option<Timestamp>,
    /// The application after the change.
    pub application: ApplicationSummary,
    /// The type's own fields.
    pub detail: EventDetail,
}

impl Event {
    /// Builds an event and derives its deterministic id (see [`event_id`]).
    pub fn new(
        integration_id: &str,
        application_id: &str,
        sequence: u64,
        detected_at: Timestamp,
        remote_updated_at: Option<Timestamp>,
        application: ApplicationSummary,
        detail: EventDetail,
    ) -> Event {
        Event {
            id: event_id(integration_id, application_id, sequence, &detail),
            event_type: detail.event_type(),
            integration_id: integration_id.to_owned(),
            application_id: application_id.to_owned(),
            sequence,
            detected_at,
            remote_updated_at,
            application,
            detail,
        }
    }

    /// The webhook body as a JSON value: `{"type", "timestamp", "data": {...}}`.
    ///
    /// Prefer [`Event::body_bytes`] for what is signed and stored: a `Value`'s key order
    /// depends on serde_json's features.
    pub fn body(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(v) => v,
            // Unreachable: see `body_bytes`.
            Err(e) => Value::String(format!("unserializable event: {e}")),
        }
    }

    /// The webhook body as compact JSON: exactly what gets signed, stored and sent.
    pub fn body_bytes(&self) -> Vec<u8> {
        match serde_json::to_vec(self) {
            Ok(b) => b,
            // serde_json fails only on non-string map keys or a failing `Serialize`; the
            // envelope has neither, so this arm is never taken. Kept panic-free anyway.
            Err(e) => format!("{{\"error\":{:?}}}", e.to_string()).into_bytes(),
        }
    }

    /// Reads the common fields back from a stored or exported body (strictly: every
    /// field present and well-formed, `timestamp == data.detected_at`).
    pub fn from_body(bytes: &[u8]) -> Result<EventHeader, BodyError> {
        EventHeader::parse(bytes)
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("type", self.event_type.as_str())?;
        map.serialize_entry("timestamp", &Ts(&self.detected_at))?;
        map.serialize_entry("data", &DataView(self))?;
        map.end()
    }
}

/// `data`: the common fields, then the type's own.
struct DataView<'a>(&'a Event);

impl Serialize for DataView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("event_id", &e.id)?;
        map.serialize_entry("integration_id", &e.integration_id)?;
        map.serialize_entry("sequence", &e.sequence)?;
        map.serialize_entry("detected_at", &Ts(&e.detected_at))?;
        map.serialize_entry("remote_updated_at", &OptTs(&e.remote_updated_at))?;
        let extra = match &e.detail {
            EventDetail::ApplicationCreated { offers, interviews } => {
                Some((offers.as_slice(), interviews.as_slice()))
            }
            _ => None,
        };
        map.serialize_entry(
            "application",
            &SummaryView {
                summary: &e.application,
                extra,
            },
        )?;
        e.detail.serialize_fields(&mut map)?;
        map.end()
    }
}

/// `data.application`, with offers and interviews for `application_created`.
struct SummaryView<'a> {
    summary: &'a ApplicationSummary,
    extra: Option<(&'a [OfferRef], &'a [InterviewRef])>,
}

impl Serialize for SummaryView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let a = self.summary;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &a.id)?;
        map.serialize_entry("remote_id", &a.remote_id)?;
        map.serialize_entry("outcome", &a.outcome)?;
        map.serialize_entry("job", &a.job)?;
        map.serialize_entry("candidate", &a.candidate)?;
        map.serialize_entry("current_stage", &a.current_stage)?;
        map.serialize_entry("remote_url", &a.remote_url)?;
        if let Some((offers, interviews)) = self.extra {
            map.serialize_entry("offers", offers)?;
            map.serialize_entry("interviews", interviews)?;
        }
        map.end()
    }
}

/// A timestamp in body format.
struct Ts<'a>(&'a Timestamp);

impl Serialize for Ts<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ser_ts(self.0, serializer)
    }
}

/// An optional timestamp in body format, `null` when absent.
struct OptTs<'a>(&'a Option<Timestamp>);

impl Serialize for OptTs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ser_opt_ts(self.0, serializer)
    }
}

// ---------------------------------------------------------------------------------------
// Event ids
// ---------------------------------------------------------------------------------------

/// Prefix of every event id.
pub const EVENT_ID_PREFIX: &str = "evt_";

/// Domain separation: a future change of the encoding changes this tag.
const ID_DOMAIN: &str = "hirehook.event-id.v1";

/// The deterministic event id: SHA-256 over a length-prefixed encoding of (domain tag,
/// integration id, application id, sequence, type, the values that define the change),
/// first 16 bytes, `evt_` + lowercase hex.
///
/// No timestamp of detection goes in: re-deriving the same change at another time (after
/// a crash) yields the same id. The sequence does: a later identical transition (A→B,
/// B→A, A→B) gets another id.
pub fn event_id(
    integration_id: &str,
    application_id: &str,
    sequence: u64,
    detail: &EventDetail,
) -> String {
    let mut h = IdHasher(Sha256::new());
    h.str(ID_DOMAIN);
    h.str(integration_id);
    h.str(application_id);
    h.bytes(&sequence.to_be_bytes());
    h.str(detail.event_type().as_str());
    detail.hash_values(&mut h);
    let digest = h.0.finalize();
    let mut id = String::with_capacity(EVENT_ID_PREFIX.len() + 32);
    id.push_str(EVENT_ID_PREFIX);
    id.push_str(&hex::encode(&digest[..16]));
    id
}

/// Whether `s` has the shape of an event id (`evt_` + 32 lowercase hex digits).
pub fn is_event_id(s: &str) -> bool {
    s.strip_prefix(EVENT_ID_PREFIX).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Unambiguous field encoding for the id hash: every field is length-prefixed, every
/// optional field tagged, so no two different inputs share a byte string.
struct IdHasher(Sha256);

impl IdHasher {
    fn bytes(&mut self, b: &[u8]) {
        self.0.update((b.len() as u64).to_be_bytes());
        self.0.update(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.0.update([0u8]),
            Some(s) => {
                self.0.update([1u8]);
                self.str(s);
            }
        }
    }

    fn opt_ts(&mut self, ts: Option<&Timestamp>) {
        match ts {
            None => self.0.update([0u8]),
            Some(ts) => {
                self.0.update([1u8]);
                self.bytes(&ts.timestamp_millis().to_be_bytes());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading bodies back
// ---------------------------------------------------------------------------------------

/// Which events: the one filter of `events list|export|tail`, `replay` (from the log, an
/// export file or the API), the `/v1/events` route and the store's event queries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Detected at or after.
    pub since: Option<Timestamp>,
    /// Detected before.
    pub until: Option<Timestamp>,
    /// Any of these types (empty: all).
    pub types: Vec<EventType>,
    pub integration_id: Option<String>,
    pub application_id: Option<String>,
    /// Only events after this log position (for `tail`; the store and the API only).
    pub after_log_seq: Option<u64>,
    /// At most this many (the store and the API only).
    pub limit: Option<usize>,
}

impl EventFilter {
    /// Whether an event with these facts passes the filters on them (`after_log_seq` and
    /// `limit` are the reader's business).
    pub fn selects(
        &self,
        detected_at: Timestamp,
        event_type: EventType,
        integration_id: &str,
        application_id: &str,
    ) -> bool {
        self.since.is_none_or(|t| detected_at >= t)
            && self.until.is_none_or(|t| detected_at < t)
            && (self.types.is_empty() || self.types.contains(&event_type))
            && self
                .integration_id
                .as_deref()
                .is_none_or(|i| integration_id == i)
            && self
                .application_id
                .as_deref()
                .is_none_or(|a| application_id == a)
    }

    /// [`EventFilter::selects`] for an event read from a body.
    pub fn selects_header(&self, h: &EventHeader) -> bool {
        self.selects(
            h.detected_at,
            h.event_type,
            &h.integration_id,
            &h.application_id,
        )
    }

    /// The `/v1/events` query string of this filter (form-encoded; no cursor: the caller
    /// adds the page position).
    pub fn to_query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(limit) = self.limit {
            q.append_pair("limit", &limit.to_string());
        }
        if let Some(t) = &self.since {
            q.append_pair("since", &format_timestamp(t));
        }
        if let Some(t) = &self.until {
            q.append_pair("until", &format_timestamp(t));
        }
        for t in &self.types {
            q.append_pair("type", t.as_str());
        }
        if let Some(i) = &self.integration_id {
            q.append_pair("integration", i);
        }
        if let Some(a) = &self.application_id {
            q.append_pair("application", a);
        }
        q.finish()
    }
}

/// The common fields of a stored body: what the event log's filters and the replay reader
/// need without the type-specific part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHeader {
    /// `data.event_id`, also the `webhook-id`.
    pub event_id: String,
    /// `type`.
    pub event_type: EventType,
    /// `data.integration_id`.
    pub integration_id: String,
    /// `data.application.id`.
    pub application_id: String,
    /// `data.sequence`.
    pub sequence: u64,
    /// `data.detected_at` (equal to `timestamp`).
    pub detected_at: Timestamp,
    /// `data.remote_updated_at`.
    pub remote_updated_at: Option<Timestamp>,
}

/// Why a body could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Not JSON, or a field missing or of the wrong type; `path` names it.
    #[error("event body: at `{path}`: {message}")]
    Json {
        /// Path of the offending field, e.g. `data.sequence`.
        path: String,
        /// serde_json's description.
        message: String,
    },
    /// A timestamp field is not RFC 3339.
    #[error("event body: `{field}` is not an RFC 3339 timestamp: {value:?}")]
    Timestamp {
        /// Which field.
        field: &'static str,
        /// The value found.
        value: String,
    },
    /// `data.event_id` is not `evt_` + 32 lowercase hex digits.
    #[error("event body: `data.event_id` is not `evt_` + 32 lowercase hex digits: {0:?}")]
    EventId(String),
    /// `timestamp` and `data.detected_at` differ.
    #[error(
        "event body: `timestamp` {timestamp:?} differs from `data.detected_at` {detected_at:?}"
    )]
    TimestampMismatch {
        /// The envelope's `timestamp`.
        timestamp: String,
        /// `data.detected_at`.
        detected_at: String,
    },
}

#[derive(Deserialize)]
struct RawBody {
    #[serde(rename = "type")]
    event_type: EventType,
    timestamp: String,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    event_id: String,
    integration_id: String,
    sequence: u64,
    detected_at: String,
    /// Required, but may be null (`deserialize_with` turns off serde's missing-is-None).
    #[serde(deserialize_with = "Option::deserialize")]
    remote_updated_at: Option<String>,
    application: RawApplication,
}

#[derive(Deserialize)]
struct RawApplication {
    id: String,
}

impl EventHeader {
    /// Parses the common fields of a body; see [`Event::from_body`].
    pub fn parse(bytes: &[u8]) -> Result<EventHeader, BodyError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawBody = serde_path_to_error::deserialize(de).map_err(|e| BodyError::Json {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
        if !is_event_id(&raw.data.event_id) {
            return Err(BodyError::EventId(raw.data.event_id));
        }
        if raw.timestamp != raw.data.detected_at {
            return Err(BodyError::TimestampMismatch {
                timestamp: raw.timestamp,
                detected_at: raw.data.detected_at,
            });
        }
        let detected_at = parse_ts("data.detected_at", &raw.data.detected_at)?;
        let remote_updated_at = match &raw.data.remote_updated_at {
            Some(s) => Some(parse_ts("data.remote_updated_at", s)?),
            None => None,
        };
        Ok(EventHeader {
            event_id: raw.data.event_id,
            event_type: raw.event_type,
            integration_id: raw.data.integration_id,
            application_id: raw.data.application.id,
            sequence: raw.data.sequence,
            detected_at,
            remote_updated_at,
        })
    }
}

fn parse_ts(field: &'static str, value: &str) -> Result<Timestamp, BodyError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| BodyError::Timestamp {
            field,
            value: value.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        DateTime::from_timestamp(1_795_910_400 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn the_event_filter_selects_on_every_field() {
        let all = EventFilter::default();
        let narrow = EventFilter {
            since: Some(at(10)),
            until: Some(at(20)),
            types: vec![EventType::StageChanged, EventType::Rejected],
            integration_id: Some("gh:1".into()),
            application_id: Some("app_1".into()),
            ..Default::default()
        };
        // (detected, type, integration, application) -> selected by `narrow`
        let cases = [
            (at(10), EventType::StageChanged, "gh:1", "app_1", true),
            (at(19), EventType::Rejected, "gh:1", "app_1", true),
            (at(9), EventType::StageChanged, "gh:1", "app_1", false),
            (at(20), EventType::StageChanged, "gh:1", "app_1", false),
            (at(15), EventType::OutcomeHired, "gh:1", "app_1", false),
            (at(15), EventType::StageChanged, "gh:2", "app_1", false),
            (at(15), EventType::StageChanged, "gh:1", "app_2", false),
        ];
        for (detected, kind, integration, application, want) in cases {
            assert_eq!(
                narrow.selects(detected, kind, integration, application),
                want,
                "{detected} {kind:?} {integration} {application}"
            );
            assert!(all.selects(detected, kind, integration, application));
        }
    }

    #[test]
    fn the_event_filter_as_an_api_query_is_form_encoded() {
        assert_eq!(EventFilter::default().to_query(), "");
        let filter = EventFilter {
            since: Some(at(0)),
            types: vec![EventType::StageChanged, EventType::Rejected],
            integration_id: Some("greenhouse:a&b=c".into()),
            limit: Some(500),
            after_log_seq: Some(7),
            ..Default::default()
        };
        assert_eq!(
            filter.to_query(),
            "limit=500&since=2026-11-29T00%3A00%3A00.000Z&type=stage_changed&type=rejected\
             &integration=greenhouse%3Aa%26b%3Dc"
        );
    }
}
