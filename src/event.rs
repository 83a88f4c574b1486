//! Events: the hiring signals hirehook derives and delivers.
//!
//! An [`Event`] is produced by the pure diff, made durable in the store, then delivered as a
//! Standard Webhooks request whose body is [`Event::body`] (the envelope of DESIGN.md).

use serde::{Deserialize, Serialize};

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
