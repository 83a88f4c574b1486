//! `hirehook run` as a process: SIGTERM under load exits 0 within the grace period, and a
//! restart delivers everything that was pending, with the same ids.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{ConfigBuilder, Receiver};
use hirehook::sim::{SimConfig, spawn};
use hirehook::store::{DeliveryState, EventFilter, Store};
use tokio::process::{Child, Command};

const LIMIT: Duration = Duration::from_secs(60);

fn start(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("hirehook run starts")
}

fn signal(child: &Child, sig: &str) {
    crate::common::process::signal(child.id().expect("running"), sig);
}

async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("exits within the limit")
        .expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_and_a_restart_delivers_the_rest_with_the_same_ids() {
    let sim = spawn(SimConfig {
        integrations: 1,
        applications: 1_200,
        seed: 5,
        ..Default::default()
    })
    .await
    .expect("sim");
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(20));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut builder = ConfigBuilder::new(
        &dir.path().join("store"),
        sim.base_url(),
        sim.sim().api_key(),
        sim.sim().integration_ids(),
    );
    // Every application is an event on the first sync: about a thousand pending at once.
    builder.initial_sync = "emit";
    builder.poll_interval = "1h";
    builder.shutdown_grace = "3s";
    builder.extra_subscriber_keys = "max_in_flight = 4";
    let builder = builder.subscriber("crm", &receiver.url);
    let config = dir.path().join("hirehook.toml");
    std::fs::write(&config, builder.toml()).expect("config");

    let mut child = start(&config);
    receiver.wait_until(LIMIT, |r| r.len() >= 40).await;
    signal(&child, "-TERM");
    let asked = Instant::now();
    let status = wait_exit(&mut child).await;
    let took = asked.elapsed();
    assert!(status.success(), "graceful exit: {status:?}");
    let first: BTreeSet<String> = receiver.delivered().into_iter().map(|r| r.id).collect();

    let (total, pending) = {
        let store = Store::open_sled(&dir.path().join("store"), 16 << 20).expect("store");
        let total = store
            .events(&EventFilter::default())
            .await
            .expect("log")
            .len();
        let pending = store
            .deliveries(Some("crm"), Some(DeliveryState::Pending), None)
            .await
            .expect("deliveries")
            .len();
        (total, pending)
    };
    // Each live application is one `application_created` (deleted ones are stored
    // silently). The first run may have stopped before its last page: then the restart's
    // sync derives the rest.
    let integration = sim.sim().integration_ids()[0].clone();
    let expected = sim
        .sim()
        .application_ids(&integration)
        .iter()
        .filter(|id| {
            sim.sim()
                .application(&integration, id)
                .is_some_and(|a| a.remote_deleted_at.is_none())
        })
        .count();
    assert!(total > 200 && total <= expected, "{total} of {expected}");
    assert!(pending > 0, "the shutdown left a backlog");
    assert!(first.len() < total);
    // Not a timing assertion: a sanity bound far above the 3 s grace.
    assert!(took < Duration::from_secs(30), "{took:?}");

    receiver.set_delay(Duration::ZERO);
    let mut child = start(&config);
    let got = receiver
        .wait_until(LIMIT, |r| {
            r.iter()
                .map(|x| x.id.as_str())
                .collect::<BTreeSet<_>>()
                .len()
                >= expected
        })
        .await;
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child).await.success());

    let ids: BTreeSet<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), expected, "every event, once per id");
    assert!(first.iter().all(|id| ids.contains(id.as_str())));
    assert!(got.iter().all(|r| r.verified));
    let store = Store::open_sled(&dir.path().join("store"), 16 << 20).expect("store");
    let logged: BTreeSet<String> = store
        .events(&EventFilter::default())
        .await
        .expect("log")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, logged.iter().map(String::as_str).collect());
    assert!(
        store
            .deliveries(Some("crm"), Some(DeliveryState::Pending), None)
            .await
            .expect("deliveries")
            .is_empty(),
        "nothing left pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_user_is_told_the_store_is_in_use() {
    let sim = spawn(SimConfig {
        integrations: 1,
        applications: 10,
        ..Default::default()
    })
    .await
    .expect("sim");
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut builder = ConfigBuilder::new(
        &dir.path().join("store"),
        sim.base_url(),
        sim.sim().api_key(),
        sim.sim().integration_ids(),
    );
    builder.poll_interval = "1h";
    let builder = builder.subscriber("crm", &receiver.url);
    let config = dir.path().join("hirehook.toml");
    std::fs::write(&config, builder.toml()).expect("config");
    let mut child = start(&config);
    // The first sync has run once the simulator served a request.
    let served = async {
        while sim.sim().requests_served() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(LIMIT, served).await.expect("polled");
    let out = Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args(["events", "list", "--config"])
        .arg(&config)
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    signal(&child, "-INT");
    assert!(wait_exit(&mut child).await.success());
}
