//! `hirehook status`, `events show`, `subscribers list` (the real binary): on the store
//! when the daemon is stopped, through the admin API while it runs (it holds the store's
//! lock). The same answers either way.

use crate::common::harness::{Harness, LIMIT, Options};
use crate::common::{Receiver, SECRET};
use hirehook::sim::Mutation;
use hirehook::store::EventFilter;
use serde_json::{Value, json};

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn hirehook(args: &[&str]) -> Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args(args)
        .output();
    let output = tokio::time::timeout(LIMIT, output)
        .await
        .expect("hirehook ends")
        .expect("hirehook runs");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn json_of(out: &Output) -> Value {
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    serde_json::from_str(&out.stdout).expect("--json prints JSON")
}

/// Everything the inspection commands show, as JSON and as text.
struct Seen {
    status: Value,
    event: Value,
    subscribers: Value,
    status_text: String,
    event_text: String,
    subscribers_text: String,
    stderr: String,
}

async fn inspect(config: &str, event_id: &str) -> Seen {
    let status = hirehook(&["status", "--config", config, "--json"]).await;
    let event = hirehook(&["events", "show", event_id, "--config", config, "--json"]).await;
    let subscribers = hirehook(&["subscribers", "list", "--config", config, "--json"]).await;
    let status_text = hirehook(&["status", "--config", config]).await;
    let event_text = hirehook(&["events", "show", event_id, "--config", config]).await;
    let subscribers_text = hirehook(&["subscribers", "list", "--config", config]).await;
    for out in [&status_text, &event_text, &subscribers_text] {
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    }
    Seen {
        status: json_of(&status),
        event: json_of(&event),
        subscribers: json_of(&subscribers),
        stderr: status.stderr + &event.stderr + &subscribers.stderr,
        status_text: status_text.stdout,
        event_text: event_text.stdout,
        subscribers_text: subscribers_text.stdout,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_works_through_the_api_while_running_and_on_the_stopped_store() {
    let mut harness = Harness::start(Options::default()).await;
    let integration = harness.integration();
    let app = harness.live_apps()[0].clone();
    harness
        .sim
        .sim()
        .apply(&integration, &app, Mutation::ScheduleInterview)
        .expect("schedule");
    harness
        .post(&format!("/v1/integrations/{integration}/sync"), &json!({}))
        .await;
    harness.receiver.wait_until(LIMIT, |r| r.len() == 1).await;
    harness
        .wait_store(async |s| {
            s.deliveries(None, Some(hirehook::store::DeliveryState::Delivered), None)
                .await
                .is_ok_and(|d| d.len() == 1)
        })
        .await;
    let event = harness
        .store()
        .events(&EventFilter::default())
        .await
        .expect("log")
        .remove(0);
    let config = harness.config_path.to_str().expect("path").to_owned();

    // Running: the store is locked, the commands go through the API.
    let live = inspect(&config, &event.id).await;
    assert!(
        live.stderr.contains("running daemon") && live.stderr.contains(&harness.url("/v1")),
        "{}",
        live.stderr
    );
    // Replay works while running too (its events come through the API).
    let target = Receiver::start().await;
    let out = hirehook(&[
        "replay",
        "--config",
        &config,
        "--to",
        &target.url,
        "--secret",
        SECRET,
    ])
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(target.received().len(), 1);
    assert!(target.received()[0].verified);
    assert_eq!(target.received()[0].id, event.id);

    harness.stop().await;

    // Stopped: straight from the store.
    let stopped = inspect(&config, &event.id).await;
    assert!(!stopped.stderr.contains("admin API"), "{}", stopped.stderr);

    for seen in [&live, &stopped] {
        let i = &seen.status["integrations"][0];
        assert_eq!(i["id"], integration.as_str());
        assert_eq!(i["baseline_done"], true);
        assert_eq!(i["stale"], Value::Null);
        assert!(i["watermark"].is_string());
        assert!(i["applications"].as_u64().is_some_and(|n| n > 0));
        assert_eq!(seen.status["subscribers"][0]["name"], "crm");
        assert_eq!(seen.status["subscribers"][0]["pending"], 0);
        assert_eq!(seen.status["subscribers"][0]["delivered"], 1);

        assert_eq!(seen.event["event"]["id"], event.id.as_str());
        assert_eq!(seen.event["deliveries"][0]["state"], "delivered");
        assert_eq!(seen.event["deliveries"][0]["attempts"][0]["status"], 200);

        assert_eq!(seen.subscribers["subscribers"][0]["enabled"], true);

        assert!(
            seen.status_text.contains(&format!("{integration}: ok")),
            "{}",
            seen.status_text
        );
        assert!(
            seen.status_text.contains("crm: enabled"),
            "{}",
            seen.status_text
        );
        assert!(
            seen.status_text.contains("0 pending"),
            "{}",
            seen.status_text
        );
        assert!(
            seen.event_text.contains("interview_scheduled"),
            "{}",
            seen.event_text
        );
        assert!(
            seen.event_text
                .contains("crm: delivered after 1 attempt(s)"),
            "{}",
            seen.event_text
        );
        assert!(seen.event_text.contains("HTTP 200"), "{}", seen.event_text);
        assert!(
            seen.subscribers_text.contains("crm: enabled"),
            "{}",
            seen.subscribers_text
        );
    }
    assert_eq!(live.event, stopped.event, "the same event either way");

    // Unknown and malformed ids.
    let out = hirehook(&[
        "events",
        "show",
        "evt_0123456789abcdef0123456789abcdef",
        "--config",
        &config,
    ])
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("no event"), "{}", out.stderr);
    let out = hirehook(&["events", "show", "nope", "--config", &config]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
}
