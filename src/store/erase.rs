//! Erasure (GDPR): what is personal data in the store, and how a stored record loses it.
//!
//! Personal data in hirehook's store is what came from the candidate: the candidate object
//! (`{id, first_name, last_name}`, see [`crate::event::CandidateRef`]) of snapshots and of
//! event bodies (`data.application.candidate`), and, in delivery records of the erased
//! events, anything free-form that may echo a body (the last error, each attempt's error
//! and response excerpt). Erasing nulls those values; ids, types, sequences, timestamps
//! and delivery states stay, so ordering and dedupe keep working. The backends apply
//! these functions in one atomic write (see [`crate::store::Store::erase`]).

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::{AttemptRecord, OutboxEntry};
use crate::diff::Snapshot;

/// Whose data to erase, within one integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErasureSubject {
    /// One application: its snapshot and every event of it.
    Application(String),
    /// One candidate: the snapshots whose candidate is this id, and every event whose
    /// body names this candidate or whose application is one of those snapshots'.
    Candidate(String),
}

impl ErasureSubject {
    /// `application` or `candidate`, for logs and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            ErasureSubject::Application(_) => "application",
            ErasureSubject::Candidate(_) => "candidate",
        }
    }

    /// The id it names.
    pub fn id(&self) -> &str {
        match self {
            ErasureSubject::Application(id) | ErasureSubject::Candidate(id) => id,
        }
    }
}

/// What one erasure changed, by class. A record counts once, when a value of it was
/// actually erased: erasing again changes 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub struct EraseReport {
    /// Snapshots (including tombstones, which hold no candidate).
    pub snapshots: u64,
    /// Event bodies, in the log and held.
    pub events: u64,
    /// Delivery (outbox) records of the erased events, with their attempts.
    pub deliveries: u64,
}

impl EraseReport {
    /// Records changed in all.
    pub fn changed(&self) -> u64 {
        self.snapshots + self.events + self.deliveries
    }

    /// What `hirehook erase` prints after "erased ... of integration I: ".
    pub fn summary(&self) -> String {
        fn plural(n: u64, one: &str, many: &str) -> String {
            format!("{n} {}", if n == 1 { one } else { many })
        }
        format!(
            "{} changed ({}, {}, {})",
            self.changed(),
            plural(self.snapshots, "snapshot", "snapshots"),
            plural(self.events, "event", "events"),
            plural(self.deliveries, "delivery record", "delivery records"),
        )
    }
}

impl Serialize for EraseReport {
    /// `{"changed": N, "snapshots": .., "events": .., "deliveries": ..}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut st = s.serialize_struct("EraseReport", 4)?;
        st.serialize_field("changed", &self.changed())?;
        st.serialize_field("snapshots", &self.snapshots)?;
        st.serialize_field("events", &self.events)?;
        st.serialize_field("deliveries", &self.deliveries)?;
        st.end()
    }
}

/// The candidate id of an encoded snapshot (`None`: no candidate, or not a snapshot this
/// version reads).
pub fn snapshot_candidate(bytes: &[u8]) -> Option<String> {
    Snapshot::decode(bytes).ok()?.candidate.map(|c| c.id)
}

/// The snapshot without its candidate's personal fields (the candidate id stays), or
/// `None` when there is nothing to erase (no candidate, names already null, or bytes this
/// version does not read: those are kept as they are, and the caller counts nothing).
pub fn erase_snapshot(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut snapshot = Snapshot::decode(bytes).ok()?;
    let candidate = snapshot.candidate.as_mut()?;
    if candidate.first_name.is_none() && candidate.last_name.is_none() {
        return None;
    }
    candidate.first_name = None;
    candidate.last_name = None;
    // No longer what its record makes: the next poll diffs the record again, as before.
    snapshot.source = None;
    Some(snapshot.encode())
}

/// `data.application.id` and `data.application.candidate.id` of an event body, when the
/// body has them.
pub fn body_candidate(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        data: Data,
    }
    #[derive(serde::Deserialize)]
    struct Data {
        application: Option<Application>,
    }
    #[derive(serde::Deserialize)]
    struct Application {
        candidate: Option<Candidate>,
    }
    #[derive(serde::Deserialize)]
    struct Candidate {
        id: Option<String>,
    }
    let body: Body = serde_json::from_slice(body).ok()?;
    body.data.application?.candidate?.id
}

/// The body with every value of every `candidate` object nulled except its `id`, wherever
/// in the body such an object is (today `data.application.candidate`); keys keep their
/// order and everything else its exact bytes. `None` when there is nothing to erase, or
/// when the body is not JSON (it is then kept, and counted as nothing).
pub fn erase_body(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    scrub(raw, false, &mut changed, &mut out).ok()?;
    changed.then(|| out.into_bytes())
}

/// An object's entries in their order, each value unparsed.
struct Entries(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(V)
    }
}

/// Writes `raw` to `out` (compact), nulling the personal values of candidate objects;
/// `candidate` says `raw` is the value of a `candidate` key.
fn scrub(
    raw: &RawValue,
    candidate: bool,
    changed: &mut bool,
    out: &mut String,
) -> Result<(), serde_json::Error> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'{') => {
            let Entries(entries) = serde_json::from_str(text)?;
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key)?);
                out.push(':');
                if candidate && key != "id" {
                    if value.get().trim() != "null" {
                        *changed = true;
                    }
                    out.push_str("null");
                } else {
                    scrub(value, key == "candidate", changed, out)?;
                }
            }
            out.push('}');
        }
        Some(b'[') => {
            let items: Vec<Box<RawValue>> = serde_json::from_str(text)?;
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                scrub(item, false, changed, out)?;
            }
            out.push(']');
        }
        _ => out.push_str(text),
    }
    Ok(())
}

/// Clears what a delivery record may echo of the body (the last error, each attempt's
/// error and response excerpt); `true` when anything was there.
pub fn erase_entry(entry: &mut OutboxEntry) -> bool {
    let mut changed = entry.last_error.take().is_some();
    for attempt in &mut entry.recent_attempts {
        changed |= erase_attempt(attempt);
    }
    changed
}

/// Clears an attempt's error and response excerpt; `true` when either was there.
pub fn erase_attempt(attempt: &mut AttemptRecord) -> bool {
    let error = attempt.error.take().is_some();
    let prefix = attempt.response_prefix.take().is_some();
    error || prefix
}

/// Whether `id` is acceptable as an application, candidate or integration id to erase:
/// not empty, no whitespace or control characters, at most 256 bytes. `Err` says why.
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("is empty");
    }
    if id.len() > 256 {
        return Err("is longer than 256 bytes");
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_loses_the_candidates_names_and_nothing_else() {
        let body = br#"{"type":"stage_changed","timestamp":"2024-01-01T00:00:00.000Z","data":{"event_id":"evt_1","sequence":3,"application":{"id":"app_1","candidate":{"id":"cand_1","first_name":"Jane","last_name":"Ro\"e"},"current_stage":{"id":"s","name":"Onsite"}},"previous_stage":null}}"#;
        let erased = erase_body(body).expect("changed");
        assert_eq!(
            std::str::from_utf8(&erased).unwrap(),
            r#"{"type":"stage_changed","timestamp":"2024-01-01T00:00:00.000Z","data":{"event_id":"evt_1","sequence":3,"application":{"id":"app_1","candidate":{"id":"cand_1","first_name":null,"last_name":null},"current_stage":{"id":"s","name":"Onsite"}},"previous_stage":null}}"#
        );
        assert_eq!(erase_body(&erased), None, "a second erase changes nothing");
        assert_eq!(body_candidate(body).as_deref(), Some("cand_1"));
        assert_eq!(body_candidate(&erased).as_deref(), Some("cand_1"));
        assert_eq!(erase_body(b"not json"), None);
        assert_eq!(
            erase_body(br#"{"data":{"application":{"candidate":null}}}"#),
            None
        );
    }

    #[test]
    fn a_snapshot_loses_the_candidates_names() {
        let snapshot = Snapshot {
            sequence: 4,
            candidate: Some(crate::event::CandidateRef {
                id: "cand_1".into(),
                first_name: Some("Jane".into()),
                last_name: None,
            }),
            source: Some(crate::domain::RecordDigest::of(b"the record")),
            ..Snapshot::default()
        };
        let erased = erase_snapshot(&snapshot.encode()).expect("changed");
        let back = Snapshot::decode(&erased).unwrap();
        assert_eq!(back.sequence, 4);
        // No longer what its record makes: the next poll diffs the record again.
        assert_eq!(back.source, None);
        assert_eq!(
            back.candidate.as_ref().map(|c| c.id.as_str()),
            Some("cand_1")
        );
        assert_eq!(back.candidate.and_then(|c| c.first_name), None);
        assert_eq!(erase_snapshot(&erased), None);
        assert_eq!(snapshot_candidate(&erased).as_deref(), Some("cand_1"));
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("app_1").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("a b").is_err());
        assert!(check_id("a\u{7}").is_err());
        assert!(check_id(&"x".repeat(257)).is_err());
        assert!(check_id(&"x".repeat(256)).is_ok());
    }

    #[test]
    fn the_report_reads_as_the_cli_prints_it() {
        let r = EraseReport {
            snapshots: 1,
            events: 3,
            deliveries: 1,
        };
        assert_eq!(
            r.summary(),
            "5 changed (1 snapshot, 3 events, 1 delivery record)"
        );
        assert_eq!(
            serde_json::to_value(r).unwrap(),
            serde_json::json!({"changed": 5, "snapshots": 1, "events": 3, "deliveries": 1})
        );
    }
}
