//! Test data the backends' own tests share (the contract suite in `tests/it` has its own:
//! it sees only the public API).

use chrono::TimeZone;

use super::NewEvent;
use crate::ats::Timestamp;
use crate::event::EventType;

/// A fixed instant plus `secs`.
pub(crate) fn at(secs: i64) -> Timestamp {
    chrono::Utc
        .timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .expect("valid")
}

/// An event of `app` with sequence `seq`, detected at `at(seq)`, for `subs`.
pub(crate) fn event(id: &str, app: &str, seq: u64, t: EventType, subs: &[&str]) -> NewEvent {
    NewEvent {
        id: id.into(),
        event_type: t,
        application_id: app.into(),
        sequence: seq,
        detected_at: at(seq as i64),
        body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        subscribers: subs.iter().map(|s| s.to_string()).collect(),
        hold: false,
    }
}
