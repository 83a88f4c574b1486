//! The minimal receiver example (`examples/receiver.rs`), included as a module and served
//! on 127.0.0.1:0: it verifies (signature and timestamp), dedupes on `webhook-id`, and
//! reads its settings from an injected environment.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use hirehook::ats::model::Outcome;
use hirehook::deliver::sign::{
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SigningKey, signed_headers,
};
use hirehook::event::{ApplicationSummary, CandidateRef, Event, EventDetail, JobRef};
use hirehook::secret::Secret;

#[allow(dead_code)]
#[path = "../../examples/receiver.rs"]
mod receiver;

use receiver::{Config, Dedupe, Receiver, app};

const SECRET: &str = "whsec_aGlyZWhvb2sgdGVzdCBzaWduaW5nIGtleQ==";
const OTHER_SECRET: &str = "whsec_c29tZSBvdGhlciBrZXk=";

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

fn hired(sequence: u64) -> Event {
    let at = DateTime::parse_from_rfc3339("2026-11-29T10:00:00.123Z")
        .expect("timestamp")
        .with_timezone(&Utc);
    Event::new(
        "greenhouse:acme",
        "app_1",
        sequence,
        at,
        None,
        ApplicationSummary {
            id: "app_1".to_owned(),
            remote_id: None,
            outcome: Some(Outcome::Hired),
            job: Some(JobRef {
                id: "job_1".to_owned(),
                remote_id: None,
                name: Some("Backend Engineer".to_owned()),
            }),
            candidate: Some(CandidateRef {
                id: "cand_1".to_owned(),
                first_name: Some("Jane".to_owned()),
                last_name: Some("Roe".to_owned()),
            }),
            current_stage: None,
            remote_url: None,
        },
        EventDetail::OutcomeHired {
            previous_outcome: Some(Outcome::Pending),
            offers: Vec::new(),
        },
    )
}

/// Serves a receiver that accepts `SECRET`; its URL and state.
async fn start() -> (String, Arc<Receiver>) {
    let receiver = Arc::new(Receiver::new(vec![key(SECRET)]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/webhooks", listener.local_addr().expect("addr"));
    let router = app(receiver.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, receiver)
}

async fn post(url: &str, id: &str, timestamp: i64, body: Vec<u8>, secret: &str) -> u16 {
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
        .expect("receiver reachable")
        .status()
        .as_u16()
}

async fn deliver(url: &str, event: &Event) -> u16 {
    post(url, &event.id, unix_now(), event.body_bytes(), SECRET).await
}

#[tokio::test]
async fn a_valid_event_is_handled_once_even_when_redelivered() {
    let (url, receiver) = start().await;
    let event = hired(1);
    assert_eq!(deliver(&url, &event).await, 200);
    assert_eq!(receiver.handled(), 1);
    // hirehook's retry or replay: same id, new timestamp and signature.
    assert_eq!(
        post(&url, &event.id, unix_now() + 1, event.body_bytes(), SECRET).await,
        200
    );
    assert_eq!(receiver.handled(), 1, "a duplicate is not handled twice");
    // Another event is.
    assert_eq!(deliver(&url, &hired(2)).await, 200);
    assert_eq!(receiver.handled(), 2);
}

#[tokio::test]
async fn unverified_requests_get_401() {
    let (url, receiver) = start().await;
    let event = hired(1);
    let now = unix_now();
    let body = event.body_bytes();
    // Well outside the 5-minute tolerance: the receiver's clock may tick between signing
    // and checking.
    assert_eq!(
        post(&url, &event.id, now, body.clone(), OTHER_SECRET).await,
        401,
        "wrong key"
    );
    assert_eq!(
        post(&url, &event.id, now - 600, body.clone(), SECRET).await,
        401,
        "stale timestamp (a replay)"
    );
    assert_eq!(
        post(&url, &event.id, now + 600, body.clone(), SECRET).await,
        401,
        "timestamp from the future"
    );
    let unsigned = reqwest::Client::new()
        .post(&url)
        .body(body)
        .send()
        .await
        .expect("reachable")
        .status();
    assert_eq!(unsigned, 401, "no headers");
    assert_eq!(receiver.handled(), 0);
    // None of them poisoned the dedupe: the genuine delivery is still handled.
    assert_eq!(deliver(&url, &event).await, 200);
    assert_eq!(receiver.handled(), 1);
}

#[tokio::test]
async fn a_verified_body_that_is_not_json_gets_400() {
    let (url, receiver) = start().await;
    assert_eq!(
        post(&url, "evt_x", unix_now(), b"<xml/>".to_vec(), SECRET).await,
        400
    );
    assert_eq!(receiver.handled(), 0);
}

#[tokio::test]
async fn rotation_accepts_either_secret() {
    let receiver = Arc::new(Receiver::new(vec![key(SECRET), key(OTHER_SECRET)]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let router = app(receiver.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let (a, b) = (hired(1), hired(2));
    assert_eq!(
        post(&url, &a.id, unix_now(), a.body_bytes(), SECRET).await,
        200
    );
    assert_eq!(
        post(&url, &b.id, unix_now(), b.body_bytes(), OTHER_SECRET).await,
        200
    );
    assert_eq!(receiver.handled(), 2);
}

#[test]
fn dedupe_memory_is_bounded() {
    let mut seen = Dedupe::new(2);
    assert!(seen.insert("a"));
    assert!(!seen.insert("a"));
    assert!(seen.insert("b"));
    assert!(seen.insert("c"), "evicts a");
    assert!(!seen.insert("b"));
    assert!(!seen.insert("c"));
    assert!(seen.insert("a"), "a was forgotten");
}

fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_env(|k| env.get(k).cloned()).map_err(|e| e.to_string())
}

#[test]
fn settings_from_the_environment() {
    let c = config(&[("HIREHOOK_WEBHOOK_SECRET", SECRET)]).expect("valid");
    assert_eq!(c.keys.len(), 1);
    assert_eq!(c.listen.to_string(), "127.0.0.1:8081");
    let both = format!("{SECRET}  {OTHER_SECRET}");
    let c = config(&[
        ("HIREHOOK_WEBHOOK_SECRET", both.as_str()),
        ("LISTEN_ADDR", "[::1]:9000"),
    ])
    .expect("valid");
    assert_eq!(c.keys.len(), 2);
    assert_eq!(c.listen.to_string(), "[::1]:9000");

    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "HIREHOOK_WEBHOOK_SECRET is not set"),
        (
            &[("HIREHOOK_WEBHOOK_SECRET", "")],
            "HIREHOOK_WEBHOOK_SECRET is not set",
        ),
        (
            &[("HIREHOOK_WEBHOOK_SECRET", "s3cr3t")],
            "HIREHOOK_WEBHOOK_SECRET: secret 1 of 1 must start with `whsec_`",
        ),
        (
            &[("HIREHOOK_WEBHOOK_SECRET", "whsec_a2V5 whsec_")],
            "HIREHOOK_WEBHOOK_SECRET: secret 2 of 2 the part after `whsec_` decodes to an empty key",
        ),
        (
            &[("HIREHOOK_WEBHOOK_SECRET", SECRET), ("LISTEN_ADDR", ":80")],
            "LISTEN_ADDR: \":80\" is not an address like 127.0.0.1:8081",
        ),
    ];
    for (pairs, want) in cases {
        match config(pairs) {
            Ok(_) => panic!("expected an error for {pairs:?}"),
            Err(got) => {
                assert!(got.starts_with(want), "got: {got}\nwant: {want}");
                assert!(!got.contains("s3cr3t"), "the secret leaked: {got}");
            }
        }
    }
}
