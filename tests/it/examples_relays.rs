//! The Slack and Teams relay examples (`examples/slack_relay.rs`, `examples/teams_relay.rs`),
//! included as modules:
//! - their pure formatters, per event type, on real hirehook bodies (built with
//!   `hirehook::event::Event`), with null names, missing links and odd bodies;
//! - each relay end to end, between signed requests (as hirehook sends them) and a fake
//!   Slack/Teams endpoint on 127.0.0.1:0: content, retries, `Retry-After`, failures,
//!   verification, filters, dedupe;
//! - their start-up settings, read through an injected environment.

// Each relay example includes `examples/common/relay.rs` as its own module; including both
// examples here loads that file twice, on purpose (two independent copies, as in the two
// example binaries).
#![allow(clippy::duplicate_mod)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hirehook::ats::Timestamp;
use hirehook::ats::model::{OfferStatus, Outcome};
use hirehook::deliver::sign::{
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SigningKey, signed_headers,
};
use hirehook::event::{
    ApplicationSummary, CandidateRef, Event, EventDetail, InterviewRef, JobRef, OfferRef, StageRef,
};
use hirehook::secret::Secret;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

#[allow(dead_code)]
#[path = "../../examples/slack_relay.rs"]
mod slack_relay;

#[allow(dead_code)]
#[path = "../../examples/teams_relay.rs"]
mod teams_relay;

use slack_relay::slack_message;
use teams_relay::teams_message;

/// The subscriber secret the relays are configured with.
const SECRET: &str = "whsec_aGlyZWhvb2sgdGVzdCBzaWduaW5nIGtleQ==";
/// Another secret: what an impostor signs with.
const OTHER_SECRET: &str = "whsec_c29tZSBvdGhlciBrZXk=";
const REMOTE_URL: &str = "https://app.greenhouse.io/people/17?application_id=42";
const INTEGRATION: &str = "greenhouse:CBNMt7dSNCzBdnRTx87dev4E";

// ---------------------------------------------------------------------------------------
// Real hirehook bodies
// ---------------------------------------------------------------------------------------

fn ts(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

fn stage(id: &str, name: Option<&str>, index: Option<i64>) -> StageRef {
    StageRef {
        id: id.to_owned(),
        remote_id: Some(format!("r-{id}")),
        name: name.map(str::to_owned),
        index,
    }
}

fn offer(id: &str, status: OfferStatus) -> OfferRef {
    OfferRef {
        id: id.to_owned(),
        remote_id: None,
        status: Some(status),
    }
}

fn interview(start: &str, end: &str, canceled: bool) -> InterviewRef {
    InterviewRef {
        id: "int_1".to_owned(),
        remote_id: Some("r-int_1".to_owned()),
        title: Some("Onsite loop".to_owned()),
        starting_at: Some(ts(start)),
        ending_at: Some(ts(end)),
        canceled,
    }
}

/// Jane Roe's application for Backend Engineer, now in "Offer", with a link to the ATS.
fn application() -> ApplicationSummary {
    ApplicationSummary {
        id: "app_1".to_owned(),
        remote_id: Some("42".to_owned()),
        outcome: Some(Outcome::Pending),
        job: Some(JobRef {
            id: "job_1".to_owned(),
            remote_id: Some("7".to_owned()),
            name: Some("Backend Engineer".to_owned()),
        }),
        candidate: Some(CandidateRef {
            id: "cand_1".to_owned(),
            first_name: Some("Jane".to_owned()),
            last_name: Some("Roe".to_owned()),
        }),
        current_stage: Some(stage("st_4", Some("Offer"), Some(4))),
        remote_url: Some(REMOTE_URL.to_owned()),
    }
}

fn event_of(application: ApplicationSummary, detail: EventDetail) -> Event {
    Event::new(
        INTEGRATION,
        &application.id.clone(),
        7,
        ts("2026-11-29T10:00:00.123Z"),
        Some(ts("2026-11-29T09:58:12Z")),
        application,
        detail,
    )
}

fn event(detail: EventDetail) -> Event {
    event_of(application(), detail)
}

fn body(event: &Event) -> Value {
    serde_json::from_slice(&event.body_bytes()).expect("bodies are JSON")
}

fn hired() -> Event {
    event(EventDetail::OutcomeHired {
        previous_outcome: Some(Outcome::Pending),
        offers: vec![offer("off_1", OfferStatus::Accepted)],
    })
}

fn rejected() -> Event {
    event(EventDetail::Rejected {
        previous_outcome: Some(Outcome::Pending),
        rejection_reason_name: Some("Not a fit".to_owned()),
        rejected_at: Some(ts("2026-11-29T09:58:00Z")),
    })
}

fn stage_changed() -> Event {
    event(EventDetail::StageChanged {
        previous_stage: Some(stage("st_3", Some("Onsite"), Some(3))),
        current_stage: Some(stage("st_4", Some("Offer"), Some(4))),
    })
}

fn offer_created() -> Event {
    event(EventDetail::OfferCreated {
        offer: offer("off_1", OfferStatus::Draft),
    })
}

fn offer_accepted() -> Event {
    event(EventDetail::OfferStatusChanged {
        offer: offer("off_1", OfferStatus::Accepted),
        previous_status: Some(OfferStatus::Sent),
        current_status: Some(OfferStatus::Accepted),
    })
}

fn interview_scheduled() -> Event {
    event(EventDetail::InterviewScheduled {
        interview: interview("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z", false),
    })
}

// ---------------------------------------------------------------------------------------
// Formatting, per event type
// ---------------------------------------------------------------------------------------

/// What both relays must show for one body.
struct Expected {
    /// The one-line text (Slack `text`, Teams `fallbackText`).
    text: &'static str,
    /// The headline (first block), emoji included.
    headline: &'static str,
    /// The labelled facts, Candidate and Job included, in order.
    facts: &'static [(&'static str, &'static str)],
    /// The ATS link, when shown.
    link: Option<&'static str>,
}

fn cases() -> Vec<(&'static str, Value, Expected)> {
    let mut unknown = body(&hired());
    unknown["type"] = json!("candidate_teleported");

    let nameless = ApplicationSummary {
        job: Some(JobRef {
            id: "job_1".to_owned(),
            remote_id: None,
            name: None,
        }),
        candidate: Some(CandidateRef {
            id: "cand_1".to_owned(),
            first_name: None,
            last_name: Some("  ".to_owned()),
        }),
        remote_url: None,
        ..application()
    };
    let first_name_only = ApplicationSummary {
        candidate: Some(CandidateRef {
            id: "cand_1".to_owned(),
            first_name: Some("Jane".to_owned()),
            last_name: None,
        }),
        job: None,
        remote_url: None,
        ..application()
    };

    vec![
        (
            "outcome_hired",
            body(&hired()),
            Expected {
                text: "🎉 Jane Roe was hired · Backend Engineer",
                headline: "🎉 Jane Roe was hired",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Outcome", "Pending → Hired"),
                    ("Stage", "Offer"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "rejected",
            body(&rejected()),
            Expected {
                text: "❌ Jane Roe was rejected · Backend Engineer · reason: Not a fit",
                headline: "❌ Jane Roe was rejected",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Reason", "Not a fit"),
                    ("Stage", "Offer"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "rejected without a reason",
            body(&event(EventDetail::Rejected {
                previous_outcome: None,
                rejection_reason_name: None,
                rejected_at: None,
            })),
            Expected {
                text: "❌ Jane Roe was rejected · Backend Engineer",
                headline: "❌ Jane Roe was rejected",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Reason", "not given"),
                    ("Stage", "Offer"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "stage_changed",
            body(&stage_changed()),
            Expected {
                text: "➡️ Jane Roe changed stage · Backend Engineer · Onsite → Offer",
                headline: "➡️ Jane Roe changed stage",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Stage", "Onsite → Offer"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "stage_changed with nulls everywhere",
            body(&event_of(
                nameless,
                EventDetail::StageChanged {
                    previous_stage: Some(stage("st_2", None, Some(2))),
                    current_stage: Some(stage("st_x", None, None)),
                },
            )),
            Expected {
                text: "➡️ A candidate changed stage · stage 2 → an unnamed stage",
                headline: "➡️ A candidate changed stage",
                facts: &[
                    ("Candidate", "A candidate"),
                    ("Stage", "stage 2 → an unnamed stage"),
                ],
                link: None,
            },
        ),
        (
            "stage_changed from no stage, first name only",
            body(&event_of(
                first_name_only,
                EventDetail::StageChanged {
                    previous_stage: None,
                    current_stage: Some(stage("st_1", Some("Applied"), Some(1))),
                },
            )),
            Expected {
                text: "➡️ Jane changed stage · no stage → Applied",
                headline: "➡️ Jane changed stage",
                facts: &[("Candidate", "Jane"), ("Stage", "no stage → Applied")],
                link: None,
            },
        ),
        (
            "outcome_reverted",
            body(&event(EventDetail::OutcomeReverted {
                previous_outcome: Some(Outcome::Hired),
                current_outcome: None,
            })),
            Expected {
                text: "↩️ Jane Roe's outcome was reverted · Backend Engineer · Hired → none",
                headline: "↩️ Jane Roe's outcome was reverted",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Outcome", "Hired → none"),
                    ("Stage", "Offer"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "offer_created",
            body(&offer_created()),
            Expected {
                text: "📝 Offer created for Jane Roe · Backend Engineer · status: Draft",
                headline: "📝 Offer created for Jane Roe",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Offer status", "Draft"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "offer_status_changed to accepted",
            body(&offer_accepted()),
            Expected {
                text: "🤝 Jane Roe accepted the offer · Backend Engineer · Sent → Accepted",
                headline: "🤝 Jane Roe accepted the offer",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Offer status", "Sent → Accepted"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "offer_status_changed to sent",
            body(&event(EventDetail::OfferStatusChanged {
                offer: offer("off_1", OfferStatus::Sent),
                previous_status: Some(OfferStatus::Approved),
                current_status: Some(OfferStatus::Sent),
            })),
            Expected {
                text: "📝 Jane Roe's offer changed status · Backend Engineer · Approved → Sent",
                headline: "📝 Jane Roe's offer changed status",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Offer status", "Approved → Sent"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "interview_scheduled",
            body(&interview_scheduled()),
            Expected {
                text: "📅 Interview scheduled with Jane Roe · Backend Engineer · Tue 1 Dec 2026, 10:00–11:00 UTC",
                headline: "📅 Interview scheduled with Jane Roe",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Interview", "Onsite loop"),
                    ("When", "Tue 1 Dec 2026, 10:00–11:00 UTC"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "interview_rescheduled",
            body(&event(EventDetail::InterviewRescheduled {
                interview: interview("2026-12-02T14:00:00Z", "2026-12-02T15:00:00Z", false),
                previous_starting_at: Some(ts("2026-12-01T10:00:00Z")),
                previous_ending_at: Some(ts("2026-12-01T11:00:00Z")),
            })),
            Expected {
                text: "🔁 Interview with Jane Roe rescheduled · Backend Engineer · now Wed 2 Dec 2026, 14:00–15:00 UTC",
                headline: "🔁 Interview with Jane Roe rescheduled",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Interview", "Onsite loop"),
                    ("When", "Wed 2 Dec 2026, 14:00–15:00 UTC"),
                    ("Was", "Tue 1 Dec 2026, 10:00–11:00 UTC"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "interview_canceled",
            body(&event(EventDetail::InterviewCanceled {
                interview: interview("2026-12-01T23:30:00Z", "2026-12-02T00:30:00Z", true),
            })),
            Expected {
                text: "🚫 Interview with Jane Roe canceled · Backend Engineer · was Tue 1 Dec 2026, 23:30 UTC – Wed 2 Dec 2026, 00:30 UTC",
                headline: "🚫 Interview with Jane Roe canceled",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Interview", "Onsite loop"),
                    (
                        "Was",
                        "Tue 1 Dec 2026, 23:30 UTC – Wed 2 Dec 2026, 00:30 UTC",
                    ),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "application_deleted",
            body(&event(EventDetail::ApplicationDeleted {
                remote_deleted_at: ts("2026-11-30T08:00:00Z"),
            })),
            Expected {
                text: "🗑️ Jane Roe's application was deleted in the ATS · Backend Engineer",
                headline: "🗑️ Jane Roe's application was deleted in the ATS",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Deleted at", "Mon 30 Nov 2026, 08:00 UTC"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "application_restored",
            body(&event(EventDetail::ApplicationRestored)),
            Expected {
                text: "♻️ Jane Roe's application was restored in the ATS · Backend Engineer",
                headline: "♻️ Jane Roe's application was restored in the ATS",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Stage", "Offer"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "application_created",
            body(&event(EventDetail::ApplicationCreated {
                offers: vec![offer("off_1", OfferStatus::Draft)],
                interviews: vec![
                    interview("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z", false),
                    interview("2026-12-03T10:00:00Z", "2026-12-03T11:00:00Z", true),
                ],
            })),
            Expected {
                text: "📥 New application from Jane Roe · Backend Engineer",
                headline: "📥 New application from Jane Roe",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Stage", "Offer"),
                    ("Offers", "1"),
                    ("Interviews", "2"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
        (
            "an unknown type",
            unknown,
            Expected {
                text: "🔔 Event `candidate_teleported` for Jane Roe · Backend Engineer",
                headline: "🔔 Event `candidate_teleported` for Jane Roe",
                facts: &[
                    ("Candidate", "Jane Roe"),
                    ("Job", "Backend Engineer"),
                    ("Event", "candidate_teleported"),
                ],
                link: Some(REMOTE_URL),
            },
        ),
    ]
}

/// The labelled facts of a Slack message's field section, as (label, value).
fn slack_facts(message: &Value) -> Vec<(String, String)> {
    message["blocks"][1]["fields"]
        .as_array()
        .expect("a fields section")
        .iter()
        .map(|f| {
            assert_eq!(f["type"], "mrkdwn");
            let text = f["text"].as_str().expect("field text");
            let (label, value) = text.split_once('\n').expect("label, newline, value");
            let label = label
                .strip_prefix('*')
                .and_then(|l| l.strip_suffix('*'))
                .expect("bold label");
            (label.to_owned(), value.to_owned())
        })
        .collect()
}

/// The Slack message's shape, whatever the event.
fn assert_slack_shape(message: &Value) {
    assert!(message["text"].is_string(), "{message}");
    let blocks = message["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), 3, "{message}");
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    assert_eq!(blocks[1]["type"], "section");
    assert_eq!(blocks[2]["type"], "context");
    assert_eq!(blocks[2]["elements"][0]["type"], "mrkdwn");
}

/// The Teams message's shape, whatever the event; the card.
fn assert_teams_shape(message: &Value) -> &Value {
    assert_eq!(message["type"], "message", "{message}");
    let attachments = message["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachments[0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    let body = card["body"].as_array().expect("card body");
    assert_eq!(body.len(), 3);
    assert_eq!(body[0]["type"], "TextBlock");
    assert_eq!(body[1]["type"], "FactSet");
    assert_eq!(body[2]["type"], "TextBlock");
    card
}

fn teams_facts(card: &Value) -> Vec<(String, String)> {
    card["body"][1]["facts"]
        .as_array()
        .expect("facts")
        .iter()
        .map(|f| {
            (
                f["title"].as_str().expect("title").to_owned(),
                f["value"].as_str().expect("value").to_owned(),
            )
        })
        .collect()
}

fn owned(facts: &[(&str, &str)]) -> Vec<(String, String)> {
    facts
        .iter()
        .map(|(l, v)| ((*l).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn slack_formats_every_event_type() {
    for (name, body, want) in cases() {
        let message = slack_message(&body);
        assert_slack_shape(&message);
        assert_eq!(message["text"], want.text, "{name}");
        let headline = &message["blocks"][0];
        let (emoji, words) = want.headline.split_once(' ').expect("emoji, words");
        assert_eq!(
            headline["text"]["text"],
            format!("{emoji} *{words}*"),
            "{name}"
        );
        assert_eq!(slack_facts(&message), owned(want.facts), "{name}");
        match want.link {
            Some(link) => {
                let button = &headline["accessory"];
                assert_eq!(button["type"], "button", "{name}");
                assert_eq!(button["text"]["text"], "Open in ATS", "{name}");
                assert_eq!(button["url"], link, "{name}");
            }
            None => assert!(headline.get("accessory").is_none(), "{name}"),
        }
        let context = message["blocks"][2]["elements"][0]["text"]
            .as_str()
            .expect("context");
        assert!(context.contains(INTEGRATION), "{name}: {context}");
    }
}

#[test]
fn teams_formats_every_event_type() {
    for (name, body, want) in cases() {
        let message = teams_message(&body);
        let card = assert_teams_shape(&message);
        assert_eq!(card["fallbackText"], want.text, "{name}");
        assert_eq!(card["body"][0]["text"], want.headline, "{name}");
        assert_eq!(teams_facts(card), owned(want.facts), "{name}");
        match want.link {
            Some(link) => {
                assert_eq!(
                    card["actions"],
                    json!([{"type": "Action.OpenUrl", "title": "Open in ATS", "url": link}]),
                    "{name}"
                );
            }
            None => assert!(card.get("actions").is_none(), "{name}"),
        }
        let context = card["body"][2]["text"].as_str().expect("context");
        assert!(context.contains(INTEGRATION), "{name}: {context}");
    }
}

/// Bodies hirehook would never send still get a message, never a panic.
#[test]
fn odd_bodies_get_a_generic_message() {
    let odd = [
        json!(null),
        json!([]),
        json!({}),
        json!({"type": 5, "data": "x"}),
        json!({"type": "outcome_hired", "data": {"application": {"candidate": "Jane", "job": []}}}),
        json!({"type": "interview_rescheduled", "data": {"interview": {"starting_at": "soon", "ending_at": 3}}}),
        json!({"type": "stage_changed", "data": {"previous_stage": {"index": "two"}, "current_stage": 4}}),
    ];
    for body in odd {
        let slack = slack_message(&body);
        assert_slack_shape(&slack);
        let teams = teams_message(&body);
        assert_teams_shape(&teams);
        assert_eq!(
            slack["text"], teams["attachments"][0]["content"]["fallbackText"],
            "{body}"
        );
    }
    assert_eq!(
        slack_message(&json!({}))["text"],
        "🔔 hirehook event for a candidate"
    );
    assert_eq!(
        slack_message(&json!({"type": "outcome_hired"}))["text"],
        "🎉 A candidate was hired"
    );
    assert_eq!(
        slack_message(
            &json!({"type": "interview_rescheduled", "data": {"interview": {"starting_at": "soon"}}})
        )["text"],
        "🔁 Interview with a candidate rescheduled · now soon"
    );
}

/// Slack's reserved characters are escaped; a link that is not http(s) is not offered.
#[test]
fn slack_escapes_and_drops_odd_links() {
    let mut body = body(&hired());
    body["data"]["application"]["candidate"]["first_name"] = json!("<Jane>");
    body["data"]["application"]["candidate"]["last_name"] = json!("Roe & Co");
    body["data"]["application"]["remote_url"] = json!("javascript:alert(1)");
    let slack = slack_message(&body);
    assert_eq!(
        slack["text"],
        "🎉 &lt;Jane&gt; Roe &amp; Co was hired · Backend Engineer"
    );
    assert!(slack["blocks"][0].get("accessory").is_none());
    let teams = teams_message(&body);
    assert!(teams["attachments"][0]["content"].get("actions").is_none());
    // Teams cards are not Slack markup: the name is shown as is.
    assert_eq!(
        teams["attachments"][0]["content"]["body"][0]["text"],
        "🎉 <Jane> Roe & Co was hired"
    );
}

// ---------------------------------------------------------------------------------------
// A fake Slack / Teams endpoint
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// A status with `Retry-After` (seconds).
    RetryAfter(u16, u64),
}

struct FakeState {
    /// Every POST body, parsed, in arrival order.
    posts: Mutex<Vec<Value>>,
    /// Replies for the next requests, in order; then `otherwise`.
    script: Mutex<VecDeque<Reply>>,
    otherwise: Reply,
    /// When present, each answer waits for a permit: the test decides when the chat tool
    /// answers.
    gate: Option<Arc<Semaphore>>,
    changed: Notify,
}

/// A chat tool's incoming webhook on 127.0.0.1:0.
struct FakeChat {
    url: String,
    state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeChat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_answer(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.posts.lock().expect("posts").push(json);
    state.changed.notify_waiters();
    if let Some(gate) = &state.gate {
        let _permit = gate.acquire().await;
    }
    let reply = state
        .script
        .lock()
        .expect("script")
        .pop_front()
        .unwrap_or(state.otherwise);
    let (status, retry_after) = match reply {
        Reply::Status(s) => (s, None),
        Reply::RetryAfter(s, secs) => (s, Some(secs)),
    };
    let mut response = (
        StatusCode::from_u16(status).expect("test status"),
        "fake answer",
    )
        .into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    response
}

impl FakeChat {
    async fn start(script: Vec<Reply>, otherwise: Reply, gate: Option<Arc<Semaphore>>) -> Self {
        let state = Arc::new(FakeState {
            posts: Mutex::new(Vec::new()),
            script: Mutex::new(script.into()),
            otherwise,
            gate,
            changed: Notify::new(),
        });
        let app = axum::Router::new()
            .route("/hook/secret-token", axum::routing::post(fake_answer))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake chat");
        let url = format!(
            "http://{}/hook/secret-token",
            listener.local_addr().expect("addr")
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeChat { url, state, task }
    }

    async fn accepting() -> Self {
        Self::start(Vec::new(), Reply::Status(200), None).await
    }

    fn posts(&self) -> Vec<Value> {
        self.state.posts.lock().expect("posts").clone()
    }

    /// Waits until `n` posts arrived (a 10 s safety net, not a timing assertion).
    async fn wait_for_posts(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let changed = self.state.changed.notified();
            let posts = self.posts();
            if posts.len() >= n {
                return posts;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("fake chat: expected {n} posts, got {}", self.posts().len());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sending as hirehook does
// ---------------------------------------------------------------------------------------

fn key(secret: &str) -> SigningKey {
    SigningKey::from_secret(&Secret::new(secret)).expect("test secret")
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("fits")
}

/// POSTs `body` signed with `secret` at `timestamp`, as hirehook does.
async fn post_signed(
    url: &str,
    id: &str,
    timestamp: i64,
    body: Vec<u8>,
    secret: &str,
) -> reqwest::Response {
    let signed = signed_headers(id, timestamp, &body, &[key(secret)]);
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header(HEADER_ID, signed.id)
        .header(HEADER_TIMESTAMP, signed.timestamp)
        .header(HEADER_SIGNATURE, signed.signature)
        .body(body)
        .send()
        .await
        .expect("relay reachable")
}

/// POSTs an event as hirehook delivers it, signed now with the relay's secret.
async fn deliver(url: &str, event: &Event) -> reqwest::Response {
    post_signed(url, &event.id, unix_now(), event.body_bytes(), SECRET).await
}

fn env_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Each relay end to end
// ---------------------------------------------------------------------------------------

/// The same end-to-end tests for each relay: `$relay` is the example module, `$render` its
/// formatter, `$target_env` the variable of its URL, `$shape` its message-shape check.
macro_rules! relay_suite {
    ($suite:ident, $relay:ident, $render:path, $target_env:literal, $shape:path) => {
        mod $suite {
            use super::*;
            use $relay::relay::{Relay, RetryPolicy, Settings, app};

            /// Fast retries so failing tests stay fast; real `Retry-After` handling.
            fn policy() -> RetryPolicy {
                RetryPolicy {
                    max_attempts: 3,
                    first_backoff: Duration::from_millis(10),
                    max_retry_after: Duration::from_secs(30),
                    attempt_timeout: Duration::from_secs(5),
                    deadline: Duration::from_secs(10),
                }
            }

            /// Starts the relay on 127.0.0.1:0 posting to `chat`, with extra settings.
            async fn start(chat: &FakeChat, extra: &[(&str, &str)]) -> String {
                let mut env = env_map(&[
                    ("HIREHOOK_WEBHOOK_SECRET", SECRET),
                    ($target_env, chat.url.as_str()),
                ]);
                env.extend(env_map(extra));
                let settings =
                    Settings::from_env(target(), |k| env.get(k).cloned()).expect("valid settings");
                let relay = Relay::new(target(), settings, $render, policy()).expect("http client");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind relay");
                let url = format!(
                    "http://{}/hooks/hirehook",
                    listener.local_addr().expect("addr")
                );
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app(Arc::new(relay))).await;
                });
                url
            }

            fn target() -> $relay::relay::Target {
                $relay::relay::Target {
                    name: "fake",
                    env: $target_env,
                    hint: "test",
                }
            }

            #[tokio::test]
            async fn relays_hired_rejected_stage_offer_and_interview_events() {
                let chat = FakeChat::accepting().await;
                let url = start(&chat, &[]).await;
                let events = [
                    hired(),
                    rejected(),
                    stage_changed(),
                    offer_created(),
                    offer_accepted(),
                    interview_scheduled(),
                ];
                for (i, event) in events.iter().enumerate() {
                    let response = deliver(&url, event).await;
                    assert_eq!(response.status(), 200, "{:?}", event.event_type);
                    // Answered after the post: it is there already.
                    let posts = chat.posts();
                    assert_eq!(posts.len(), i + 1);
                    let posted = &posts[i];
                    $shape(posted);
                    assert_eq!(posted, &$render(&body(event)), "{:?}", event.event_type);
                }
                let posts = chat.posts();
                let text = |m: &Value| serde_json::to_string(m).expect("json");
                assert!(text(&posts[0]).contains("Jane Roe was hired"));
                assert!(text(&posts[1]).contains("reason: Not a fit"));
                assert!(text(&posts[2]).contains("Onsite → Offer"));
                assert!(text(&posts[3]).contains("Offer created for Jane Roe"));
                assert!(text(&posts[4]).contains("Jane Roe accepted the offer"));
                assert!(text(&posts[5]).contains("Tue 1 Dec 2026, 10:00–11:00 UTC"));
                for post in &posts {
                    assert!(text(post).contains(REMOTE_URL), "link to the ATS: {post}");
                }
            }

            #[tokio::test]
            async fn answers_hirehook_only_after_the_chat_tool_accepted() {
                let gate = Arc::new(Semaphore::new(0));
                let chat =
                    FakeChat::start(Vec::new(), Reply::Status(200), Some(gate.clone())).await;
                let url = start(&chat, &[]).await;
                let event = hired();
                let mut answer = tokio::spawn(async move { deliver(&url, &event).await });
                chat.wait_for_posts(1).await;
                // The chat tool holds its answer: hirehook must not have one either.
                assert!(
                    tokio::time::timeout(Duration::from_millis(200), &mut answer)
                        .await
                        .is_err(),
                    "the relay answered before the chat tool did"
                );
                gate.add_permits(1);
                let response = answer.await.expect("request task");
                assert_eq!(response.status(), 200);
                assert_eq!(chat.posts().len(), 1);
            }

            #[tokio::test]
            async fn honours_retry_after_on_429_then_relays_once() {
                let chat =
                    FakeChat::start(vec![Reply::RetryAfter(429, 1)], Reply::Status(200), None)
                        .await;
                let url = start(&chat, &[]).await;
                let started = std::time::Instant::now();
                let response = deliver(&url, &rejected()).await;
                assert_eq!(response.status(), 200);
                assert!(
                    started.elapsed() >= Duration::from_secs(1),
                    "Retry-After: 1 honoured, waited {:?}",
                    started.elapsed()
                );
                let posts = chat.posts();
                assert_eq!(posts.len(), 2, "one refused attempt, one accepted");
                assert_eq!(posts[0], posts[1]);
            }

            #[tokio::test]
            async fn a_chat_tool_that_keeps_failing_gets_hirehook_a_5xx() {
                let chat = FakeChat::start(Vec::new(), Reply::Status(500), None).await;
                let url = start(&chat, &[]).await;
                let response = deliver(&url, &hired()).await;
                assert!(response.status().is_server_error(), "{}", response.status());
                assert_eq!(response.status(), 503);
                assert_eq!(chat.posts().len(), 3, "max_attempts");
            }

            #[tokio::test]
            async fn a_retry_after_beyond_the_deadline_goes_back_to_hirehook() {
                let chat = FakeChat::start(Vec::new(), Reply::RetryAfter(429, 60), None).await;
                let url = start(&chat, &[]).await;
                let response = deliver(&url, &hired()).await;
                assert_eq!(response.status(), 503);
                assert_eq!(
                    response.headers().get("retry-after").map(|v| v.as_bytes()),
                    Some(b"30".as_slice()),
                    "capped at max_retry_after"
                );
                assert_eq!(chat.posts().len(), 1, "no waiting out a long Retry-After");
            }

            #[tokio::test]
            async fn a_refusal_is_not_retried_and_gets_hirehook_a_502() {
                let chat = FakeChat::start(Vec::new(), Reply::Status(400), None).await;
                let url = start(&chat, &[]).await;
                let response = deliver(&url, &hired()).await;
                assert_eq!(response.status(), 502);
                assert_eq!(chat.posts().len(), 1);
            }

            #[tokio::test]
            async fn unverified_requests_get_401_and_nothing_is_posted() {
                let chat = FakeChat::accepting().await;
                let url = start(&chat, &[]).await;
                let event = hired();
                let now = unix_now();
                let wrong_key =
                    post_signed(&url, &event.id, now, event.body_bytes(), OTHER_SECRET).await;
                assert_eq!(wrong_key.status(), 401);
                let stale =
                    post_signed(&url, &event.id, now - 600, event.body_bytes(), SECRET).await;
                assert_eq!(stale.status(), 401);
                let mut tampered = event.body_bytes();
                tampered.extend_from_slice(b" ");
                let signed = signed_headers(&event.id, now, &event.body_bytes(), &[key(SECRET)]);
                let tampered = reqwest::Client::new()
                    .post(&url)
                    .header(HEADER_ID, signed.id)
                    .header(HEADER_TIMESTAMP, signed.timestamp)
                    .header(HEADER_SIGNATURE, signed.signature)
                    .body(tampered)
                    .send()
                    .await
                    .expect("relay reachable");
                assert_eq!(tampered.status(), 401);
                let unsigned = reqwest::Client::new()
                    .post(&url)
                    .body(event.body_bytes())
                    .send()
                    .await
                    .expect("relay reachable");
                assert_eq!(unsigned.status(), 401);
                // Then a good one: the only post the chat tool ever sees.
                assert_eq!(deliver(&url, &event).await.status(), 200);
                assert_eq!(chat.posts().len(), 1);
            }

            #[tokio::test]
            async fn a_signed_body_that_is_not_json_gets_400() {
                let chat = FakeChat::accepting().await;
                let url = start(&chat, &[]).await;
                let response =
                    post_signed(&url, "evt_x", unix_now(), b"not json".to_vec(), SECRET).await;
                assert_eq!(response.status(), 400);
                assert!(chat.posts().is_empty());
            }

            #[tokio::test]
            async fn filtered_events_are_acknowledged_and_not_posted() {
                let chat = FakeChat::accepting().await;
                let other = format!("{INTEGRATION},lever:other");
                let url = start(
                    &chat,
                    &[
                        ("RELAY_EVENT_TYPES", "outcome_hired, stage_changed"),
                        ("RELAY_INTEGRATIONS", other.as_str()),
                    ],
                )
                .await;
                assert_eq!(deliver(&url, &rejected()).await.status(), 200);
                let elsewhere = Event::new(
                    "ashby:another",
                    "app_1",
                    1,
                    ts("2026-11-29T10:00:00Z"),
                    None,
                    application(),
                    EventDetail::OutcomeHired {
                        previous_outcome: None,
                        offers: Vec::new(),
                    },
                );
                assert_eq!(deliver(&url, &elsewhere).await.status(), 200);
                assert_eq!(deliver(&url, &hired()).await.status(), 200);
                let posts = chat.posts();
                assert_eq!(posts.len(), 1, "only the wanted type and integration");
                assert_eq!(posts[0], $render(&body(&hired())));
            }

            #[tokio::test]
            async fn a_redelivered_event_is_posted_once() {
                let chat = FakeChat::accepting().await;
                let url = start(&chat, &[]).await;
                let event = stage_changed();
                assert_eq!(deliver(&url, &event).await.status(), 200);
                assert_eq!(deliver(&url, &event).await.status(), 200);
                assert_eq!(chat.posts().len(), 1);
            }

            #[tokio::test]
            async fn an_event_that_failed_is_posted_when_hirehook_retries() {
                let chat = FakeChat::start(
                    vec![Reply::Status(502), Reply::Status(502), Reply::Status(502)],
                    Reply::Status(200),
                    None,
                )
                .await;
                let url = start(&chat, &[]).await;
                let event = hired();
                assert_eq!(deliver(&url, &event).await.status(), 503);
                assert_eq!(deliver(&url, &event).await.status(), 200);
                assert_eq!(chat.posts().len(), 4);
            }
        }
    };
}

relay_suite!(
    slack_end_to_end,
    slack_relay,
    slack_message,
    "SLACK_WEBHOOK_URL",
    assert_slack_shape
);

fn assert_teams_message(message: &Value) {
    assert_teams_shape(message);
}

relay_suite!(
    teams_end_to_end,
    teams_relay,
    teams_message,
    "TEAMS_WEBHOOK_URL",
    assert_teams_message
);

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------

mod settings {
    use super::*;
    use slack_relay::SLACK;
    use slack_relay::relay::{Settings, SettingsError};
    use teams_relay::TEAMS;

    fn read(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let env = env_map(pairs);
        Settings::from_env(SLACK, |k| env.get(k).cloned())
    }

    const SLACK_URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX";

    #[test]
    fn defaults_and_filters() {
        let s = read(&[
            ("HIREHOOK_WEBHOOK_SECRET", SECRET),
            ("SLACK_WEBHOOK_URL", SLACK_URL),
        ])
        .expect("valid");
        assert_eq!(s.keys.len(), 1);
        assert_eq!(s.listen.to_string(), "127.0.0.1:8081");
        assert_eq!(s.target_url.as_str(), SLACK_URL);
        assert!(s.event_types.is_none() && s.integrations.is_none());
        assert!(s.wants(Some("rejected"), Some("any")));
        assert!(s.wants(Some("a_future_type"), None), "no filter relays all");

        let both = format!("{SECRET} {OTHER_SECRET}");
        let s = read(&[
            ("HIREHOOK_WEBHOOK_SECRET", both.as_str()),
            ("SLACK_WEBHOOK_URL", SLACK_URL),
            ("LISTEN_ADDR", "0.0.0.0:9000"),
            ("RELAY_EVENT_TYPES", "outcome_hired,rejected"),
            ("RELAY_INTEGRATIONS", "greenhouse:a, lever:b"),
        ])
        .expect("valid");
        assert_eq!(s.keys.len(), 2, "rotation");
        assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
        assert!(s.wants(Some("rejected"), Some("lever:b")));
        assert!(!s.wants(Some("stage_changed"), Some("lever:b")));
        assert!(!s.wants(Some("rejected"), Some("ashby:c")));
        assert!(!s.wants(None, Some("lever:b")));
        assert!(!s.wants(Some("a_future_type"), Some("lever:b")));
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        match read(pairs) {
            Ok(_) => panic!("expected an error for {pairs:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn missing_or_malformed_settings_are_clear_errors() {
        let url = ("SLACK_WEBHOOK_URL", SLACK_URL);
        let secret = ("HIREHOOK_WEBHOOK_SECRET", SECRET);
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[url], "HIREHOOK_WEBHOOK_SECRET is not set"),
            (
                &[("HIREHOOK_WEBHOOK_SECRET", "  "), url],
                "HIREHOOK_WEBHOOK_SECRET is not set",
            ),
            (
                &[("HIREHOOK_WEBHOOK_SECRET", "s3cr3t-value"), url],
                "HIREHOOK_WEBHOOK_SECRET: secret 1 of 1 must start with `whsec_`",
            ),
            (
                &[
                    ("HIREHOOK_WEBHOOK_SECRET", "whsec_a2V5 whsec_!!s3cr3t!!"),
                    url,
                ],
                "HIREHOOK_WEBHOOK_SECRET: secret 2 of 2 the part after `whsec_` is not valid base64",
            ),
            (
                &[secret],
                "SLACK_WEBHOOK_URL is not set: give it a Slack incoming-webhook URL",
            ),
            (
                &[
                    secret,
                    (
                        "SLACK_WEBHOOK_URL",
                        "hooks.slack.com/services/XXXXSECRETXXXX",
                    ),
                ],
                "SLACK_WEBHOOK_URL is not an http(s) URL",
            ),
            (
                &[
                    secret,
                    ("SLACK_WEBHOOK_URL", "ftp://hooks.slack.com/XXXXSECRETXXXX"),
                ],
                "SLACK_WEBHOOK_URL is not an http(s) URL: the scheme is `ftp`",
            ),
            (
                &[secret, url, ("LISTEN_ADDR", "localhost")],
                "LISTEN_ADDR: \"localhost\" is not an address like 127.0.0.1:8081",
            ),
            (
                &[secret, url, ("RELAY_EVENT_TYPES", "outcome_hired,hired")],
                "RELAY_EVENT_TYPES: unknown event type `hired` (known: application_created",
            ),
            (
                &[secret, url, ("RELAY_INTEGRATIONS", " , ")],
                "RELAY_INTEGRATIONS is set but lists nothing",
            ),
        ];
        for (pairs, want) in cases {
            let got = error(pairs);
            assert!(
                got.starts_with(want),
                "{pairs:?}:\n got: {got}\nwant: {want}"
            );
            assert!(!got.contains("s3cr3t"), "the secret leaked: {got}");
            assert!(!got.contains("XXXXSECRETXXXX"), "the URL leaked: {got}");
        }
    }

    #[test]
    fn teams_wants_its_own_url() {
        let env = env_map(&[
            ("HIREHOOK_WEBHOOK_SECRET", SECRET),
            ("SLACK_WEBHOOK_URL", SLACK_URL),
        ]);
        let got = teams_relay::relay::Settings::from_env(TEAMS, |k| env.get(k).cloned());
        match got {
            Ok(_) => panic!("TEAMS_WEBHOOK_URL is required"),
            Err(e) => assert!(
                e.to_string().starts_with("TEAMS_WEBHOOK_URL is not set"),
                "{e}"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Retry rules (pure)
// ---------------------------------------------------------------------------------------

mod retry_rules {
    use slack_relay::relay::{RetryPolicy, Verdict, parse_retry_after, verdict};

    use super::*;

    #[test]
    fn which_answers_are_retried() {
        let cases = [
            (200, Verdict::Accepted),
            (202, Verdict::Accepted),
            (400, Verdict::Refused),
            (403, Verdict::Refused),
            (404, Verdict::Refused),
            (410, Verdict::Refused),
            (408, Verdict::Retry),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (503, Verdict::Retry),
        ];
        for (status, want) in cases {
            let status = StatusCode::from_u16(status).expect("status");
            assert_eq!(verdict(status), want, "{status}");
        }
    }

    #[test]
    fn waits_back_off_and_honour_retry_after_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.wait_after(1, None), Duration::from_millis(500));
        assert_eq!(p.wait_after(2, None), Duration::from_secs(1));
        assert_eq!(p.wait_after(4, None), Duration::from_secs(4));
        assert_eq!(
            p.wait_after(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.wait_after(4, Some(Duration::from_secs(1))),
            Duration::from_secs(4),
            "never shorter than the backoff"
        );
        assert_eq!(
            p.wait_after(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(30),
            "capped"
        );
        assert!(p.wait_after(u32::MAX, None) > Duration::ZERO, "no overflow");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = ts("2015-10-21T07:28:00Z");
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date: no wait"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
