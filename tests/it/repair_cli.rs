//! The repair commands (`events release|drop`, `dead-letters retry`, `subscribers enable`)
//! as an operator runs them (the real binary) while `hirehook run` holds the store: they go
//! through the daemon's admin API, and say so. Stopped, they work on the store, with the
//! same output.

use crate::common::Reply;
use crate::common::harness::{Harness, LIMIT, Options};
use hirehook::sim::Mutation;
use hirehook::store::{DeliveryState, EventFilter};
use serde_json::json;

/// Well below the delivery workers' 30 s idle wait (`MAX_IDLE`), well above the time a
/// woken worker needs.
const WOKEN: std::time::Duration = std::time::Duration::from_secs(15);

struct Output {
    code: i32,
    stderr: String,
}

async fn hirehook(args: &[&str]) -> Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output();
    let output = tokio::time::timeout(LIMIT, output)
        .await
        .expect("hirehook ends")
        .expect("hirehook runs");
    Output {
        code: output.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs a command that must succeed through the API; returns its stderr without the note.
async fn through_api(harness: &Harness, args: &[&str]) -> String {
    let out = hirehook(args).await;
    assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    let note = format!(
        "note: the store is in use by a running daemon; going through its admin API at {}\n",
        harness.url("/v1")
    );
    assert!(out.stderr.starts_with(&note), "{args:?}: {}", out.stderr);
    out.stderr[note.len()..].to_owned()
}

fn config(harness: &Harness) -> String {
    harness.config_path.to_str().expect("utf-8 path").to_owned()
}

/// A harness whose daemon's first sync sees a mass deletion (all but `keep` live
/// applications of 200) and holds it; returns how many events are held.
async fn mass_deletion_held(keep: usize) -> (Harness, usize) {
    let mut harness = Harness::start(Options {
        applications: 200,
        run: false,
        ..Default::default()
    })
    .await;
    let integration = harness.integration();
    let live = harness.live_apps();
    assert!(live.len() > 150, "{}", live.len());
    let mut deleted = 0;
    for app in &live[keep..] {
        harness
            .sim
            .sim()
            .apply(&integration, app, Mutation::Delete)
            .expect("delete");
        deleted += 1;
    }
    // The daemon syncs at once: the guard holds the deletions and decides they are a mass
    // change (nothing is left undecided).
    harness.run();
    harness
        .wait_store(async |s| {
            hirehook::held::held(s, &integration)
                .await
                .is_ok_and(|h| h.decided.len() == deleted && h.undecided.is_empty())
        })
        .await;
    assert!(harness.receiver.received().is_empty(), "held, not sent");
    (harness, deleted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_release_goes_through_the_api_and_the_held_events_are_delivered() {
    let (mut harness, held) = mass_deletion_held(0).await;
    let integration = harness.integration();
    let config = config(&harness);

    let (status, body) = harness
        .get(&format!("/v1/integrations/{integration}/held"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["held"], held);
    assert_eq!(body["undecided"], 0);

    let stderr = through_api(
        &harness,
        &[
            "events",
            "release",
            "--integration",
            &integration,
            "--config",
            &config,
        ],
    )
    .await;
    assert_eq!(
        stderr,
        format!("released {held} held event(s) of {integration} for delivery\n")
    );

    // Idle delivery workers look at the store on their own only every 30 s: delivery well
    // within that shows the release woke them.
    let received = harness
        .receiver
        .wait_until(WOKEN, |r| {
            r.iter()
                .filter(|x| x.answered == 200)
                .map(|x| &x.id)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                == held
        })
        .await;
    assert!(received.iter().all(|r| r.verified));
    assert!(
        received
            .iter()
            .all(|r| r.event_type() == "application_deleted")
    );
    let (_, body) = harness
        .get(&format!("/v1/integrations/{integration}/held"))
        .await;
    assert_eq!(body["held"], 0, "{body}");
    assert_eq!(
        harness
            .store()
            .events(&EventFilter::default())
            .await
            .expect("log")
            .len(),
        held,
        "released into the log"
    );

    // Nothing is left: the same answer through the API as on the stopped store.
    let again = [
        "events",
        "release",
        "--integration",
        &integration,
        "--config",
        &config,
    ];
    let running = through_api(&harness, &again).await;
    harness.stop().await;
    let stopped = hirehook(&again).await;
    assert_eq!(stopped.code, 0, "{}", stopped.stderr);
    assert_eq!(running, stopped.stderr);
    assert_eq!(
        running,
        format!("released 0 held event(s) of {integration} for delivery\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_drop_goes_through_the_api_and_nothing_is_delivered() {
    // Keep a few applications live, to prove afterwards that delivery works.
    let (harness, held) = mass_deletion_held(5).await;
    let integration = harness.integration();
    let config = config(&harness);

    let stderr = through_api(
        &harness,
        &[
            "events",
            "drop",
            "--integration",
            &integration,
            "--config",
            &config,
        ],
    )
    .await;
    assert_eq!(
        stderr,
        format!("dropped {held} held event(s) of {integration}\n")
    );
    let (status, body) = harness
        .get(&format!("/v1/integrations/{integration}/held"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["held"], 0, "{body}");
    assert_eq!(body["events"], json!([]));
    // Dropped events never reach the log, so no delivery of them exists.
    assert!(
        harness
            .store()
            .events(&EventFilter::default())
            .await
            .expect("log")
            .is_empty()
    );
    assert!(
        harness
            .store()
            .outbox("crm")
            .await
            .expect("outbox")
            .is_empty()
    );

    // A later change still flows, and it is the only thing the receiver ever gets.
    let app = harness.live_apps()[0].clone();
    harness
        .sim
        .sim()
        .apply(&integration, &app, Mutation::ScheduleInterview)
        .expect("schedule");
    let (status, _) = harness
        .post(&format!("/v1/integrations/{integration}/sync"), &json!({}))
        .await;
    assert_eq!(status, 202);
    let received = harness.receiver.wait_until(LIMIT, |r| !r.is_empty()).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].event_type(), "interview_scheduled");
    assert_eq!(received[0].application(), app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_retry_and_subscribers_enable_go_through_the_api() {
    let harness = Harness::start(Options {
        retry_schedule: r#"["10ms"]"#,
        ..Default::default()
    })
    .await;
    let integration = harness.integration();
    let config = config(&harness);
    let apps = harness.live_apps();
    let sync = || async {
        let (status, _) = harness
            .post(&format!("/v1/integrations/{integration}/sync"), &json!({}))
            .await;
        assert_eq!(status, 202);
    };

    // Two dead letters.
    harness
        .receiver
        .set_behaviour(Box::new(|_, _| Reply::Status(500)));
    for app in &apps[..2] {
        harness
            .sim
            .sim()
            .apply(&integration, app, Mutation::ScheduleInterview)
            .expect("schedule");
    }
    sync().await;
    harness
        .wait_store(async |s| {
            s.deliveries(None, Some(DeliveryState::Dead), None)
                .await
                .is_ok_and(|d| d.len() == 2)
        })
        .await;
    let dead = harness
        .store()
        .deliveries(None, Some(DeliveryState::Dead), None)
        .await
        .expect("dead letters");
    let first = dead[0].2.event_id.clone();

    // One by event id, then the rest without a selection (every dead letter).
    harness.receiver.set_behaviour(Box::new(|_, _| Reply::Ok));
    let stderr = through_api(
        &harness,
        &[
            "dead-letters",
            "retry",
            "--config",
            &config,
            "--event",
            &first,
        ],
    )
    .await;
    assert_eq!(
        stderr,
        "requeued 1 dead letter(s); `hirehook run` delivers them\n"
    );
    harness
        .receiver
        .wait_until(LIMIT, |r| {
            r.iter().any(|x| x.answered == 200 && x.id == first)
        })
        .await;
    let stderr = through_api(&harness, &["dead-letters", "retry", "--config", &config]).await;
    assert_eq!(
        stderr,
        "requeued 1 dead letter(s); `hirehook run` delivers them\n"
    );
    harness
        .wait_store(async |s| {
            s.deliveries(None, Some(DeliveryState::Delivered), None)
                .await
                .is_ok_and(|d| d.len() == 2)
        })
        .await;
    let stderr = through_api(
        &harness,
        &[
            "dead-letters",
            "retry",
            "--config",
            &config,
            "--subscriber",
            "crm",
        ],
    )
    .await;
    assert_eq!(
        stderr,
        "requeued 0 dead letter(s); `hirehook run` delivers them\n"
    );

    // A 410 disables the subscriber; the command enables it and its backlog resumes.
    harness
        .receiver
        .set_behaviour(Box::new(|_, _| Reply::Status(410)));
    harness
        .sim
        .sim()
        .apply(&integration, &apps[2], Mutation::ScheduleInterview)
        .expect("schedule");
    sync().await;
    harness
        .wait_store(async |s| s.disabled_reason("crm").await.is_ok_and(|r| r.is_some()))
        .await;
    harness.receiver.set_behaviour(Box::new(|_, _| Reply::Ok));
    let stderr = through_api(
        &harness,
        &["subscribers", "enable", "crm", "--config", &config],
    )
    .await;
    assert_eq!(stderr, "subscriber crm enabled; its backlog resumes\n");
    harness
        .wait_store(async |s| {
            s.deliveries(None, Some(DeliveryState::Delivered), None)
                .await
                .is_ok_and(|d| d.len() == 3)
                && s.disabled_reason("crm").await.is_ok_and(|r| r.is_none())
        })
        .await;
    let stderr = through_api(
        &harness,
        &["subscribers", "enable", "crm", "--config", &config],
    )
    .await;
    assert_eq!(stderr, "subscriber crm was not disabled\n");

    // Names the config does not know are usage errors, whichever path.
    let out = hirehook(&["subscribers", "enable", "nobody", "--config", &config]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("no subscriber named `nobody`"),
        "{}",
        out.stderr
    );
    let out = hirehook(&[
        "dead-letters",
        "retry",
        "--config",
        &config,
        "--subscriber",
        "nobody",
    ])
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("no subscriber named `nobody`"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_integration_is_refused_by_the_cli_and_the_api() {
    let harness = Harness::start(Options::default()).await;
    let config = config(&harness);
    for command in ["release", "drop"] {
        // Not in the CLI's config: a usage error before anything is touched.
        let out = hirehook(&[
            "events",
            command,
            "--integration",
            "greenhouse:nope",
            "--config",
            &config,
        ])
        .await;
        assert_eq!(out.code, 2, "{command}: {}", out.stderr);
        assert!(
            out.stderr.contains("no integration `greenhouse:nope`"),
            "{command}: {}",
            out.stderr
        );
        let (status, body) = harness
            .post(
                &format!("/v1/integrations/greenhouse:nope/held/{command}"),
                &json!({}),
            )
            .await;
        crate::common::harness::assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = harness.get("/v1/integrations/greenhouse:nope/held").await;
    crate::common::harness::assert_error(status, &body, 404, "not_found");

    // In the CLI's config but not in the running daemon's: the API's 404 becomes an error
    // naming the route and the reason, exit 1.
    let other = harness.dir.path().join("other.toml");
    let text = std::fs::read_to_string(&harness.config_path).expect("config");
    std::fs::write(
        &other,
        format!("{text}\n[[integrations]]\nid = \"greenhouse:notrunning\"\n"),
    )
    .expect("write config");
    let out = hirehook(&[
        "events",
        "drop",
        "--integration",
        "greenhouse:notrunning",
        "--config",
        other.to_str().expect("path"),
    ])
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("404")
            && out
                .stderr
                .contains("no integration `greenhouse:notrunning`"),
        "{}",
        out.stderr
    );
}
