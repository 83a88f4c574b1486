//! Delivery end to end on loopback: simulator → hirehook (the real daemon) → a capturing
//! receiver that verifies every signature with the Standard Webhooks reference crate.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{Backend, ConfigBuilder, Receiver, Reply, live};
use hirehook::config::Config;
use hirehook::daemon::Daemon;
use hirehook::sim::{Mutation, RunningSim, SimConfig, spawn};
use hirehook::store::{DeliveryState, EventFilter, Store};
use hirehook::sync::{SyncSettings, Syncer};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(30);

async fn sim(applications: usize) -> RunningSim {
    spawn(SimConfig {
        integrations: 2,
        applications,
        seed: 21,
        ..Default::default()
    })
    .await
    .expect("sim")
}

struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("daemon stops within the limit")
            .expect("daemon task");
    }
}

/// The store a config names (an operator's handle: the test's baseline commits without a
/// lease; the daemon still takes its leases).
async fn open_store(config: &Config) -> Arc<Store> {
    Arc::new(Store::open(&config.store).await.expect("store").unfenced())
}

/// The baseline, done before the daemon starts so that later mutations are events.
async fn baseline(config: &Config, store: &Arc<Store>) {
    let client = hirehook::ats::KomboClient::new(config.kombo.client_config()).expect("client");
    let syncer = Syncer::new(client, store.clone(), SyncSettings::from_config(config));
    for i in &config.integrations {
        syncer.sync(&i.id, |_| {}).await.expect("baseline");
    }
}

fn start(config: Config, store: Arc<Store>) -> Running {
    let daemon = Daemon::new(config, store).expect("daemon starts");
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        daemon.run(token).await.expect("daemon runs");
    });
    Running { shutdown, task }
}

/// Waits until `done` holds for the store (polled; `LIMIT` is a safety net).
async fn wait_store(store: &Store, done: impl AsyncFn(&Store) -> bool) {
    let wait = async {
        while !done(store).await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(LIMIT, wait)
        .await
        .expect("store condition met within the limit");
}

async fn delivered(store: &Store, n: usize) -> bool {
    store
        .deliveries(None, Some(DeliveryState::Delivered), None)
        .await
        .is_ok_and(|d| d.len() >= n)
}

/// One integration with the receiver as subscriber `crm`: a baseline, then one interview
/// scheduled on the first live application, then the daemon started.
async fn one_interview(
    sim: &RunningSim,
    receiver: &Receiver,
    dir: &tempfile::TempDir,
) -> (String, Arc<Store>, Running) {
    let integration = sim.sim().integration_ids()[0].clone();
    let config = ConfigBuilder::new(
        &dir.path().join("store"),
        sim.base_url(),
        sim.sim().api_key(),
        vec![integration.clone()],
    )
    .subscriber("crm", &receiver.url)
    .build();
    let store = open_store(&config).await;
    baseline(&config, &store).await;
    let app = live(sim, &integration)[0].clone();
    sim.sim()
        .apply(&integration, &app, Mutation::ScheduleInterview)
        .expect("schedule");
    let running = start(config, store.clone());
    (integration, store, running)
}

async fn every_event_arrives_verified_once_per_id(backend: Backend) {
    let Some(database) = backend.database().await else {
        return;
    };
    let sim = sim(200).await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ConfigBuilder::new(
        &dir.path().join("store"),
        sim.base_url(),
        sim.sim().api_key(),
        sim.sim().integration_ids(),
    )
    .with_database(database.clone())
    .subscriber("crm", &receiver.url)
    .build();
    let store = open_store(&config).await;
    baseline(&config, &store).await;

    let mut expected = BTreeSet::new();
    for integration in sim.sim().integration_ids() {
        for id in live(&sim, &integration).into_iter().take(25) {
            sim.sim()
                .apply(&integration, &id, Mutation::ScheduleInterview)
                .expect("schedule");
            expected.insert(id);
        }
    }
    let running = start(config, store.clone());
    let got = receiver
        .wait_until(LIMIT, |r| {
            r.iter()
                .map(|x| x.application().to_owned())
                .collect::<BTreeSet<_>>()
                == expected
        })
        .await;
    running.stop().await;

    assert!(
        got.iter().all(|r| r.verified),
        "every signature verifies independently"
    );
    assert!(got.iter().all(|r| r.event_type() == "interview_scheduled"));
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "once per webhook-id");
    for r in &got {
        assert_eq!(
            r.event["data"]["event_id"],
            r.id.as_str(),
            "webhook-id is the event id"
        );
    }
    let logged: BTreeSet<String> = store
        .events(&EventFilter::default())
        .await
        .expect("log")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(logged, unique.iter().map(|s| s.to_string()).collect());
    assert!(
        store
            .deliveries(Some("crm"), Some(DeliveryState::Pending), None)
            .await
            .expect("deliveries")
            .is_empty()
    );
}

async fn failed_attempts_are_retried_with_the_same_id_and_body_then_dead_lettered_and_retried(
    backend: Backend,
) {
    let Some(database) = backend.database().await else {
        return;
    };
    let sim = sim(50).await;
    // The first two attempts of every id fail.
    let receiver = Receiver::start_with(Box::new(|_, seen| {
        if seen < 2 {
            Reply::Status(500)
        } else {
            Reply::Ok
        }
    }))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (integration, store, running) = one_interview(&sim, &receiver, &dir).await;
    let got = receiver
        .wait_until(LIMIT, |r| r.iter().any(|x| x.answered == 200))
        .await;
    wait_store(&store, async |s| delivered(s, 1).await).await;
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|r| r.id == got[0].id && r.body == got[0].body)
    );
    assert!(got.iter().all(|r| r.verified));
    let event = store.events(&EventFilter::default()).await.expect("log");
    let attempts = store
        .attempts("crm", event[0].log_seq)
        .await
        .expect("attempts");
    assert_eq!(
        attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        [Some(500), Some(500), Some(200)]
    );
    // The recorded attempt times follow the schedule (50ms, 100ms, ±20 %).
    let gap = |i: usize| (attempts[i + 1].at - attempts[i].at).num_milliseconds();
    assert!(gap(0) >= 40 && gap(1) >= 80, "{} {}", gap(0), gap(1));

    // Now every attempt fails: 4 attempts (1 + 3 retries), then a dead letter.
    receiver.set_behaviour(Box::new(|_, _| Reply::Status(503)));
    let second = live(&sim, &integration)[1].clone();
    sim.sim()
        .apply(&integration, &second, Mutation::ScheduleInterview)
        .expect("schedule");
    let dead = async {
        loop {
            let dead = store
                .deliveries(Some("crm"), Some(DeliveryState::Dead), None)
                .await
                .expect("deliveries");
            if !dead.is_empty() {
                return dead;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let dead = tokio::time::timeout(LIMIT, dead)
        .await
        .expect("dead-lettered");
    assert_eq!(dead[0].2.attempts, 4);
    assert_eq!(dead[0].2.last_error.as_deref(), Some("HTTP 503"));

    receiver.set_behaviour(Box::new(|_, _| Reply::Ok));
    assert_eq!(
        store
            .retry_dead(Some("crm"), None, chrono::Utc::now())
            .await
            .expect("retry"),
        1
    );
    let dead_id = dead[0].2.event_id.clone();
    running.shutdown.cancel();
    running.task.await.expect("stopped");
    // A fresh daemon picks the requeued letter up (its worker wakes on start).
    let config = ConfigBuilder::new(
        &dir.path().join("store"),
        sim.base_url(),
        sim.sim().api_key(),
        vec![integration.clone()],
    )
    .with_database(database.clone())
    .subscriber("crm", &receiver.url)
    .build();
    let running = start(config, store.clone());
    receiver
        .wait_until(LIMIT, |r| {
            r.iter().any(|x| x.id == dead_id && x.answered == 200)
        })
        .await;
    running.stop().await;
}

async fn one_application_waits_for_its_failing_event_while_others_flow(backend: Backend) {
    let Some(database) = backend.database().await else {
        return;
    };
    let sim = sim(60).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let integration = sim.sim().integration_ids()[0].clone();
    let apps = live(&sim, &integration);
    let (slow, other) = (apps[0].clone(), apps[1].clone());
    let slow_for_receiver = slow.clone();
    // Event 1 of `slow` fails twice.
    let receiver = Receiver::start_with(Box::new(move |r, seen| {
        if r.application() == slow_for_receiver && r.sequence() == 1 && seen < 2 {
            Reply::Status(500)
        } else {
            Reply::Ok
        }
    }))
    .await;
    let config = ConfigBuilder::new(
        &dir.path().join("store"),
        sim.base_url(),
        sim.sim().api_key(),
        vec![integration.clone()],
    )
    .with_database(database.clone())
    .subscriber("crm", &receiver.url)
    .build();
    let store = open_store(&config).await;
    baseline(&config, &store).await;
    sim.sim()
        .apply(&integration, &slow, Mutation::ScheduleInterview)
        .expect("schedule");
    sim.sim()
        .apply(&integration, &slow, Mutation::ScheduleInterview)
        .expect("schedule a second");
    sim.sim()
        .apply(&integration, &other, Mutation::ScheduleInterview)
        .expect("schedule");
    let running = start(config, store.clone());
    let got = receiver
        .wait_until(LIMIT, |r| {
            r.iter()
                .filter(|x| x.application() == slow && x.answered == 200)
                .count()
                == 2
        })
        .await;
    running.stop().await;
    let slow_events: Vec<(u64, u16)> = got
        .iter()
        .filter(|r| r.application() == slow)
        .map(|r| (r.sequence(), r.answered))
        .collect();
    assert_eq!(
        slow_events,
        [(1, 500), (1, 500), (1, 200), (2, 200)],
        "event 2 only after event 1 was delivered"
    );
    let other_at = got
        .iter()
        .position(|r| r.application() == other)
        .expect("other delivered");
    let slow_done = got
        .iter()
        .position(|r| r.application() == slow && r.answered == 200)
        .expect("slow delivered");
    assert!(other_at < slow_done, "the other application did not wait");
}

async fn a_410_disables_the_subscriber_until_enabled(backend: Backend) {
    let Some(database) = backend.database().await else {
        return;
    };
    let sim = sim(40).await;
    let receiver = Receiver::start_with(Box::new(|_, _| Reply::Status(410))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let integration = sim.sim().integration_ids()[0].clone();
    let mut builder = ConfigBuilder::new(
        &dir.path().join("store"),
        sim.base_url(),
        sim.sim().api_key(),
        vec![integration.clone()],
    )
    .with_database(database.clone());
    // One request at a time, so nothing else is in flight when the 410 comes back.
    builder.extra_subscriber_keys = "max_in_flight = 1";
    let builder = builder.subscriber("crm", &receiver.url);
    let store = open_store(&builder.build()).await;
    baseline(&builder.build(), &store).await;
    for id in live(&sim, &integration).into_iter().take(3) {
        sim.sim()
            .apply(&integration, &id, Mutation::ScheduleInterview)
            .expect("schedule");
    }
    let running = start(builder.build(), store.clone());
    receiver.wait_until(LIMIT, |r| !r.is_empty()).await;
    let disabled = async {
        while store.disabled_reason("crm").await.expect("state").is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(LIMIT, disabled)
        .await
        .expect("disabled");
    running.stop().await;
    assert_eq!(
        receiver.received().len(),
        1,
        "no more requests once disabled"
    );
    assert!(
        store
            .disabled_reason("crm")
            .await
            .expect("state")
            .is_some_and(|r| r.contains("410")),
        "persisted with its reason"
    );

    receiver.set_behaviour(Box::new(|_, _| Reply::Ok));
    assert!(store.enable_subscriber("crm").await.expect("enable"));
    let running = start(builder.build(), store.clone());
    receiver
        .wait_until(LIMIT, |r| {
            r.iter().filter(|x| x.answered == 200).count() == 3
        })
        .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let sim = sim(40).await;
    let receiver = Receiver::start_with(Box::new(|_, seen| {
        if seen == 0 {
            Reply::RetryAfter(429, 1)
        } else {
            Reply::Ok
        }
    }))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, store, running) = one_interview(&sim, &receiver, &dir).await;
    receiver
        .wait_until(LIMIT, |r| r.iter().any(|x| x.answered == 200))
        .await;
    running.stop().await;
    let event = &store.events(&EventFilter::default()).await.expect("log")[0];
    let attempts = store
        .attempts("crm", event.log_seq)
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 2);
    let gap = (attempts[1].at - attempts[0].at).num_milliseconds();
    assert!(
        gap >= 1000,
        "waited for Retry-After (1 s), not the 50 ms schedule: {gap} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssrf_guard_refuses_private_addresses_unless_allowed() {
    let sim = sim(40).await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let integration = sim.sim().integration_ids()[0].clone();
    let mut builder = ConfigBuilder::new(
        &dir.path().join("store"),
        sim.base_url(),
        sim.sim().api_key(),
        vec![integration.clone()],
    )
    .subscriber("crm", &receiver.url)
    .subscriber("metadata", "http://169.254.169.254/latest/meta-data");
    builder.allow_private_networks = false;
    builder.retry_schedule = r#"["10ms"]"#;
    // `config check` refuses these literals; the guard behind it must refuse them too.
    let message = hirehook::config::Config::from_str_with_env(
        &builder.toml(),
        std::path::Path::new("t.toml"),
        |_| None,
    )
    .expect_err("validation refuses private literals")
    .to_string();
    assert!(message.contains("subscribers[0].url") && message.contains("subscribers[1].url"));
    let store = open_store(&builder.build_unvalidated()).await;
    baseline(&builder.build_unvalidated(), &store).await;
    let app = live(&sim, &integration)[0].clone();
    sim.sim()
        .apply(&integration, &app, Mutation::ScheduleInterview)
        .expect("schedule");
    let running = start(builder.build_unvalidated(), store.clone());
    let dead = async {
        loop {
            let dead = store
                .deliveries(None, Some(DeliveryState::Dead), None)
                .await
                .expect("deliveries");
            if dead.len() == 2 {
                return dead;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let dead = tokio::time::timeout(LIMIT, dead)
        .await
        .expect("both dead-lettered");
    running.stop().await;
    assert!(receiver.received().is_empty(), "nothing reached 127.0.0.1");
    let errors: BTreeMap<String, String> = dead
        .into_iter()
        .map(|(s, _, e)| (s, e.last_error.unwrap_or_default()))
        .collect();
    for (subscriber, error) in &errors {
        assert!(
            error.contains("127.0.0.1") || error.contains("169.254.169.254"),
            "{subscriber}: {error}"
        );
    }

    // With the flag, the loopback receiver gets it.
    builder.allow_private_networks = true;
    assert_eq!(
        store
            .retry_dead(Some("crm"), None, chrono::Utc::now())
            .await
            .expect("retry"),
        1
    );
    let running = start(builder.build(), store.clone());
    receiver.wait_until(LIMIT, |r| r.len() == 1).await;
    running.stop().await;
}

async fn pending_retries_survive_a_restart_with_the_same_ids(backend: Backend) {
    let Some(database) = backend.database().await else {
        return;
    };
    let sim = sim(80).await;
    let receiver = Receiver::start_with(Box::new(|_, _| Reply::Status(500))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let integration = sim.sim().integration_ids()[0].clone();
    let mut builder = ConfigBuilder::new(
        &dir.path().join("store"),
        sim.base_url(),
        sim.sim().api_key(),
        vec![integration.clone()],
    )
    .with_database(database.clone())
    .subscriber("crm", &receiver.url);
    builder.retry_schedule = r#"["200ms", "200ms", "200ms", "200ms", "200ms", "200ms"]"#;
    let store = open_store(&builder.build()).await;
    baseline(&builder.build(), &store).await;
    for id in live(&sim, &integration).into_iter().take(5) {
        sim.sim()
            .apply(&integration, &id, Mutation::ScheduleInterview)
            .expect("schedule");
    }
    let running = start(builder.build(), store.clone());
    let failed = receiver.wait_until(LIMIT, |r| r.len() >= 5).await;
    running.stop().await;
    drop(store);

    let first_ids: BTreeSet<String> = failed.iter().map(|r| r.id.clone()).collect();
    receiver.set_behaviour(Box::new(|_, _| Reply::Ok));
    let store = open_store(&builder.build()).await;
    let running = start(builder.build(), store.clone());
    let got = receiver
        .wait_until(LIMIT, |r| {
            r.iter().filter(|x| x.answered == 200).count() == 5
        })
        .await;
    running.stop().await;
    let delivered: BTreeSet<String> = got
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(
        delivered, first_ids,
        "the same webhook-ids after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_filters_select_types_and_integrations() {
    let sim = sim(40).await;
    let all = Receiver::start().await;
    let hires = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let integrations = sim.sim().integration_ids();
    let mut builder = ConfigBuilder::new(
        &dir.path().join("store"),
        sim.base_url(),
        sim.sim().api_key(),
        integrations.clone(),
    )
    .subscriber("all", &all.url);
    builder.extra_subscriber_keys = "";
    let mut toml = builder.toml();
    toml.push_str(&format!(
        "\n[[subscribers]]\nname = \"hires\"\nurl = \"{}\"\nsecrets = [\"{}\"]\nevents = [\"interview_scheduled\"]\nintegrations = [\"{}\"]\n",
        hires.url,
        crate::common::SECRET,
        integrations[1]
    ));
    let config =
        Config::from_str_with_env(&toml, std::path::Path::new("t.toml"), |_| None).expect("valid");
    let store = open_store(&config).await;
    baseline(&config, &store).await;
    for integration in &integrations {
        let app = live(&sim, integration)[0].clone();
        sim.sim()
            .apply(integration, &app, Mutation::ScheduleInterview)
            .expect("schedule");
        sim.sim()
            .apply(integration, &app, Mutation::CreateOffer { status: None })
            .expect("offer");
    }
    let running = start(config, store.clone());
    all.wait_until(LIMIT, |r| r.len() == 4).await;
    let got = hires.wait_until(LIMIT, |r| !r.is_empty()).await;
    running.stop().await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event_type(), "interview_scheduled");
    assert_eq!(
        got[0].event["data"]["integration_id"],
        integrations[1].as_str()
    );
}

crate::on_both_backends!(
    every_event_arrives_verified_once_per_id,
    failed_attempts_are_retried_with_the_same_id_and_body_then_dead_lettered_and_retried,
    one_application_waits_for_its_failing_event_while_others_flow,
    a_410_disables_the_subscriber_until_enabled,
    pending_retries_survive_a_restart_with_the_same_ids,
);
