//! One line per event, as a person wants to read it: "Jane Roe · Backend Engineer ·
//! Onsite → Offer". Pure: takes a webhook body, never fails (odd bodies get a plain line).

use serde_json::Value;

/// What an event says, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `candidate · job`
    pub who: String,
    /// What changed.
    pub what: String,
    /// How it feels: drives the colour.
    pub tone: Tone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Bad,
    Neutral,
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str().filter(|s| !s.is_empty())
}

/// `Jane Roe`, or `a candidate` when the ATS gave no name.
fn candidate(data: &Value) -> String {
    let first = text(data, &["application", "candidate", "first_name"]);
    let last = text(data, &["application", "candidate", "last_name"]);
    match (first, last) {
        (Some(f), Some(l)) => format!("{f} {l}"),
        (Some(n), None) | (None, Some(n)) => n.to_owned(),
        (None, None) => "A candidate".to_owned(),
    }
}

fn stage(v: Option<&Value>) -> String {
    match v {
        Some(s) if !s.is_null() => match (s.get("name").and_then(Value::as_str), s.get("index")) {
            (Some(name), _) if !name.is_empty() => name.to_owned(),
            (_, Some(Value::Number(i))) => format!("stage {i}"),
            _ => "an unnamed stage".to_owned(),
        },
        _ => "no stage".to_owned(),
    }
}

fn or<'a>(v: Option<&'a str>, default: &'a str) -> &'a str {
    v.unwrap_or(default)
}

/// `Dec 9 19:15 UTC` for an RFC 3339 time; anything else as given.
fn when(t: Option<&str>) -> String {
    match t {
        None => "no time".to_owned(),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| {
                d.with_timezone(&chrono::Utc)
                    .format("%b %-d %H:%M UTC")
                    .to_string()
            })
            .unwrap_or_else(|_| t.to_owned()),
    }
}

/// Describes a webhook body.
pub fn describe(body: &Value) -> Line {
    let data = &body["data"];
    let job = text(data, &["application", "job", "name"]).unwrap_or("an unnamed job");
    let who = format!("{} · {job}", candidate(data));
    let kind = body["type"].as_str().unwrap_or("");
    let (what, tone) = match kind {
        "application_created" => (
            format!(
                "applied, now in {}",
                stage(data["application"].get("current_stage"))
            ),
            Tone::Neutral,
        ),
        "stage_changed" => (
            format!(
                "{} → {}",
                stage(data.get("previous_stage")),
                stage(data.get("current_stage"))
            ),
            Tone::Neutral,
        ),
        "outcome_hired" => ("hired 🎉".to_owned(), Tone::Good),
        "rejected" => (
            match text(data, &["rejection_reason_name"]) {
                Some(reason) => format!("rejected ({reason})"),
                None => "rejected".to_owned(),
            },
            Tone::Bad,
        ),
        "outcome_reverted" => (
            format!(
                "outcome reverted: {} → {}",
                or(text(data, &["previous_outcome"]), "none"),
                or(text(data, &["current_outcome"]), "none")
            ),
            Tone::Neutral,
        ),
        "offer_created" => (
            format!(
                "offer created ({})",
                or(text(data, &["offer", "status"]), "no status")
            ),
            Tone::Good,
        ),
        "offer_status_changed" => {
            let to = text(data, &["current_status"]);
            (
                format!(
                    "offer {} → {}",
                    or(text(data, &["previous_status"]), "no status"),
                    or(to, "no status")
                ),
                match to {
                    Some("ACCEPTED") => Tone::Good,
                    Some("DECLINED" | "ABANDONED") => Tone::Bad,
                    _ => Tone::Neutral,
                },
            )
        }
        "interview_scheduled" => (
            format!(
                "interview scheduled: {}{}",
                or(text(data, &["interview", "title"]), "untitled"),
                text(data, &["interview", "starting_at"])
                    .map(|t| format!(", {}", when(Some(t))))
                    .unwrap_or_default()
            ),
            Tone::Neutral,
        ),
        "interview_rescheduled" => (
            format!(
                "interview moved: {} → {}",
                when(text(data, &["previous_starting_at"])),
                when(text(data, &["interview", "starting_at"]))
            ),
            Tone::Neutral,
        ),
        "interview_canceled" => (
            format!(
                "interview canceled: {}",
                or(text(data, &["interview", "title"]), "untitled")
            ),
            Tone::Bad,
        ),
        "application_deleted" => ("application deleted in the ATS".to_owned(), Tone::Bad),
        "application_restored" => ("application restored".to_owned(), Tone::Neutral),
        "" => ("an event without a type".to_owned(), Tone::Neutral),
        other => (other.replace('_', " "), Tone::Neutral),
    };
    Line { who, what, tone }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(kind: &str, extra: Value) -> Value {
        let mut data = json!({
            "application": {
                "candidate": {"first_name": "Jane", "last_name": "Roe"},
                "job": {"name": "Backend Engineer"},
                "current_stage": {"name": "Offer", "index": 4}
            }
        });
        if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                d.insert(k.clone(), v.clone());
            }
        }
        json!({"type": kind, "data": data})
    }

    #[test]
    fn every_type_reads_well() {
        let cases = [
            (
                body(
                    "stage_changed",
                    json!({"previous_stage": {"name": "Onsite"}, "current_stage": {"name": "Offer"}}),
                ),
                "Onsite → Offer",
                Tone::Neutral,
            ),
            (
                body(
                    "stage_changed",
                    json!({"previous_stage": null, "current_stage": {"name": null, "index": 2}}),
                ),
                "no stage → stage 2",
                Tone::Neutral,
            ),
            (
                body(
                    "stage_changed",
                    json!({"previous_stage": {"name": null}, "current_stage": {"name": ""}}),
                ),
                "an unnamed stage → an unnamed stage",
                Tone::Neutral,
            ),
            (body("outcome_hired", json!({})), "hired 🎉", Tone::Good),
            (
                body("rejected", json!({"rejection_reason_name": "Salary"})),
                "rejected (Salary)",
                Tone::Bad,
            ),
            (
                body("rejected", json!({"rejection_reason_name": null})),
                "rejected",
                Tone::Bad,
            ),
            (
                body(
                    "outcome_reverted",
                    json!({"previous_outcome": "HIRED", "current_outcome": null}),
                ),
                "outcome reverted: HIRED → none",
                Tone::Neutral,
            ),
            (
                body("offer_created", json!({"offer": {"status": "DRAFT"}})),
                "offer created (DRAFT)",
                Tone::Good,
            ),
            (
                body(
                    "offer_status_changed",
                    json!({"previous_status": "SENT", "current_status": "ACCEPTED"}),
                ),
                "offer SENT → ACCEPTED",
                Tone::Good,
            ),
            (
                body(
                    "offer_status_changed",
                    json!({"previous_status": "SENT", "current_status": "DECLINED"}),
                ),
                "offer SENT → DECLINED",
                Tone::Bad,
            ),
            (
                body(
                    "interview_scheduled",
                    json!({"interview": {"title": "Onsite", "starting_at": "2026-12-01T10:00:00.000Z"}}),
                ),
                "interview scheduled: Onsite, Dec 1 10:00 UTC",
                Tone::Neutral,
            ),
            (
                body(
                    "interview_rescheduled",
                    json!({"previous_starting_at": "2026-12-01T10:00:00.000Z", "interview": {"starting_at": null}}),
                ),
                "interview moved: Dec 1 10:00 UTC → no time",
                Tone::Neutral,
            ),
            (
                body(
                    "interview_rescheduled",
                    json!({"previous_starting_at": "soon", "interview": {"starting_at": "2026-12-02T09:30:00Z"}}),
                ),
                "interview moved: soon → Dec 2 09:30 UTC",
                Tone::Neutral,
            ),
            (
                body("interview_canceled", json!({"interview": {"title": null}})),
                "interview canceled: untitled",
                Tone::Bad,
            ),
            (
                body("application_created", json!({})),
                "applied, now in Offer",
                Tone::Neutral,
            ),
            (
                body("application_deleted", json!({})),
                "application deleted in the ATS",
                Tone::Bad,
            ),
            (
                body("application_restored", json!({})),
                "application restored",
                Tone::Neutral,
            ),
            (
                body("brand_new_type", json!({})),
                "brand new type",
                Tone::Neutral,
            ),
        ];
        for (b, what, tone) in cases {
            let line = describe(&b);
            assert_eq!(line.who, "Jane Roe · Backend Engineer");
            assert_eq!((line.what.as_str(), line.tone), (what, tone), "{b}");
        }
    }

    #[test]
    fn missing_names_and_odd_bodies_do_not_fail() {
        let line = describe(
            &json!({"type": "outcome_hired", "data": {"application": {"candidate": null, "job": null}}}),
        );
        assert_eq!(line.who, "A candidate · an unnamed job");
        let line = describe(&json!("not an object"));
        assert_eq!(line.what, "an event without a type");
        let line = describe(
            &json!({"type": "stage_changed", "data": {"application": {"candidate": {"first_name": "Ada"}}}}),
        );
        assert_eq!(line.who, "Ada · an unnamed job");
        assert_eq!(line.what, "no stage → no stage");
    }
}
