//! `docs/events.md` shows one real body per event type, rendered by hirehook's own code.
//! This test regenerates the page and fails when the committed one differs, so the docs
//! cannot drift from the wire format. Refresh with `HIREHOOK_UPDATE_DOCS=1 cargo test
//! --test docs_events`.

use chrono::{TimeZone, Utc};
use hirehook::ats::Outcome;
use hirehook::ats::model::OfferStatus;
use hirehook::event::{
    ApplicationSummary, CandidateRef, Event, EventDetail, EventType, InterviewRef, JobRef,
    OfferRef, StageRef,
};

fn t(h: u32, m: u32) -> hirehook::ats::Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 29, h, m, 0)
        .single()
        .expect("valid time")
}

fn stage(id: &str, name: &str, index: i64) -> StageRef {
    StageRef {
        id: id.into(),
        remote_id: Some(format!("{index}01")),
        name: Some(name.into()),
        index: Some(index),
    }
}

fn samples() -> Vec<Event> {
    let onsite = stage("5J7L4b48wBfffYwek9Az9pkM", "Onsite", 3);
    let screening = stage("9pQs3XcV1bNm2LkJhGfDsA8e", "Initial Screening", 2);
    let summary = |outcome: Outcome, stage: &StageRef| ApplicationSummary {
        id: "26vafvWSRmbhNcxJYqjCzuJg".into(),
        remote_id: Some("32".into()),
        outcome: Some(outcome),
        job: Some(JobRef {
            id: "H5daSm8e85Dmvmne3wLeCPhX".into(),
            remote_id: Some("4031".into()),
            name: Some("Backend Engineer".into()),
        }),
        candidate: Some(CandidateRef {
            id: "H77fDF8uvEzGNPRubiz5DvQ7".into(),
            first_name: Some("Jane".into()),
            last_name: Some("Roe".into()),
        }),
        current_stage: Some(stage.clone()),
        remote_url: Some("https://app.greenhouse.io/people/32".into()),
    };
    let offer = |status: OfferStatus| OfferRef {
        id: "76bab8LKuFtqpZ89mofCPMHX".into(),
        remote_id: Some("6".into()),
        status: Some(status),
    };
    let interview = InterviewRef {
        id: "8dFgH2jK4lMn6PqRsT9vWxYz".into(),
        remote_id: Some("77".into()),
        title: Some("Onsite loop".into()),
        starting_at: Some(t(14, 30)),
        ending_at: Some(t(15, 30)),
        canceled: false,
    };
    let integration = "greenhouse:CBNMt7dSNCzBdnRTx87dev4E";
    let app = "26vafvWSRmbhNcxJYqjCzuJg";
    let mut seq = 0;
    let mut ev = |outcome: Outcome, stage: &StageRef, detail: EventDetail| {
        seq += 1;
        Event::new(
            integration,
            app,
            seq,
            t(10, seq as u32),
            Some(t(9, 58)),
            summary(outcome, stage),
            detail,
        )
    };
    vec![
        ev(
            Outcome::Pending,
            &screening,
            EventDetail::ApplicationCreated {
                offers: vec![],
                interviews: vec![],
            },
        ),
        ev(
            Outcome::Pending,
            &onsite,
            EventDetail::StageChanged {
                previous_stage: Some(screening.clone()),
                current_stage: Some(onsite.clone()),
            },
        ),
        ev(
            Outcome::Pending,
            &onsite,
            EventDetail::InterviewScheduled {
                interview: interview.clone(),
            },
        ),
        ev(
            Outcome::Pending,
            &onsite,
            EventDetail::InterviewRescheduled {
                interview: InterviewRef {
                    starting_at: Some(t(16, 0)),
                    ending_at: Some(t(17, 0)),
                    ..interview.clone()
                },
                previous_starting_at: Some(t(14, 30)),
                previous_ending_at: Some(t(15, 30)),
            },
        ),
        ev(
            Outcome::Pending,
            &onsite,
            EventDetail::InterviewCanceled {
                interview: InterviewRef {
                    canceled: true,
                    ..interview.clone()
                },
            },
        ),
        ev(
            Outcome::Pending,
            &onsite,
            EventDetail::OfferCreated {
                offer: offer(OfferStatus::Draft),
            },
        ),
        ev(
            Outcome::Pending,
            &onsite,
            EventDetail::OfferStatusChanged {
                offer: offer(OfferStatus::Accepted),
                previous_status: Some(OfferStatus::Sent),
                current_status: Some(OfferStatus::Accepted),
            },
        ),
        ev(
            Outcome::Hired,
            &onsite,
            EventDetail::OutcomeHired {
                previous_outcome: Some(Outcome::Pending),
                offers: vec![offer(OfferStatus::Accepted)],
            },
        ),
        ev(
            Outcome::Pending,
            &onsite,
            EventDetail::OutcomeReverted {
                previous_outcome: Some(Outcome::Hired),
                current_outcome: Some(Outcome::Pending),
            },
        ),
        ev(
            Outcome::Declined,
            &onsite,
            EventDetail::Rejected {
                previous_outcome: Some(Outcome::Pending),
                rejection_reason_name: Some("Position filled".into()),
                rejected_at: Some(t(10, 9)),
            },
        ),
        ev(
            Outcome::Declined,
            &onsite,
            EventDetail::ApplicationDeleted {
                remote_deleted_at: t(10, 10),
            },
        ),
        ev(Outcome::Declined, &onsite, EventDetail::ApplicationRestored),
    ]
}

fn render() -> String {
    let mut page = String::from(
        "# Event bodies\n\n\
         One real body per event type, rendered by hirehook's own code (`tests/it/docs_events.rs`\n\
         regenerates this page and fails when it drifts). Every body is the Standard Webhooks\n\
         envelope: `type`, `timestamp` (= `data.detected_at`), `data`. The `webhook-id`\n\
         header is `data.event_id`. Bodies are sent compact; they are pretty-printed here.\n\
         The examples follow one application through its life, so `sequence` counts up.\n",
    );
    let events = samples();
    for kind in EventType::ALL {
        let event = events
            .iter()
            .find(|e| e.event_type == kind)
            .unwrap_or_else(|| panic!("a sample of {kind}"));
        let body: serde_json::Value =
            serde_json::from_slice(&event.body_bytes()).expect("the body is JSON");
        // Re-serialize from the ordered bytes to keep hirehook's field order.
        let pretty = serde_json::to_string_pretty(event).expect("pretty");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&pretty).expect("json"),
            body
        );
        page.push_str(&format!("\n## `{kind}`\n\n```json\n{pretty}\n```\n"));
    }
    page
}

#[test]
fn docs_events_md_is_current() {
    let path = format!("{}/docs/events.md", env!("CARGO_MANIFEST_DIR"));
    let want = render();
    if std::env::var_os("HIREHOOK_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).expect("write docs/events.md");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/events.md is out of date: run `HIREHOOK_UPDATE_DOCS=1 cargo test --test docs_events`"
    );
}
