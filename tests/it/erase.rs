//! `hirehook erase` and `POST /v1/erase` as an operator runs them (the real binary, the
//! simulator, a verifying receiver; sled and a throwaway PostgreSQL): the names leave the
//! store and its files, a pending delivery goes out erased and validly signed, `replay`
//! sends the erased body, the daemon keeps syncing and delivering after an online erase,
//! and bad input is refused naming the flag or field.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use hirehook::diff::Snapshot;
use hirehook::sim::{Mutation, RunningSim, SimConfig, spawn};
use hirehook::store::{EventFilter, Store};
use tokio::process::Command;

use crate::common::harness::LIMIT;
use crate::common::process::{free_port, start_daemon, tail};
use crate::common::{Backend, ConfigBuilder, Receiver, Reply};
use crate::on_both_backends;

async fn hirehook(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args(args)
        .env("RUST_LOG", "info")
        .output();
    tokio::time::timeout(LIMIT * 4, out)
        .await
        .expect("hirehook ends")
        .expect("hirehook runs")
}

/// Stops a daemon as an operator would (SIGTERM: its claims end, its writes are flushed).
async fn stop(daemon: &mut tokio::process::Child) {
    crate::common::process::signal(daemon.id().expect("running"), "-TERM");
    tokio::time::timeout(LIMIT, daemon.wait())
        .await
        .expect("the daemon stops")
        .expect("reaped");
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// A simulator (no automatic changes), a receiver, and a config for both: the first sync
/// emits every application (so bodies name candidates), deliveries go to `crm`.
struct Setup {
    sim: RunningSim,
    receiver: Receiver,
    dir: tempfile::TempDir,
    config: PathBuf,
    integration: String,
    /// The PostgreSQL URL, or `None` on sled.
    database: Option<String>,
    admin: String,
}

impl Setup {
    async fn start(backend: Backend) -> Option<Setup> {
        let database = backend.database().await?;
        let sim = spawn(SimConfig {
            integrations: 1,
            applications: 30,
            seed: 11,
            ..Default::default()
        })
        .await
        .expect("sim");
        let receiver = Receiver::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let integration = sim.sim().integration_ids()[0].clone();
        let admin = format!("127.0.0.1:{}", free_port());
        let mut builder = ConfigBuilder::new(
            &dir.path().join("store"),
            sim.base_url(),
            sim.sim().api_key(),
            vec![integration.clone()],
        )
        .with_database(database.clone())
        .subscriber("crm", &receiver.url);
        builder.initial_sync = "emit";
        builder.poll_interval = "1h";
        // Retries come quickly and do not run out while a test looks.
        builder.retry_schedule = r#"["300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms", "300ms"]"#;
        builder.admin_listen = admin.clone();
        let config = dir.path().join("hirehook.toml");
        std::fs::write(&config, builder.toml()).expect("config");
        Some(Setup {
            sim,
            receiver,
            dir,
            config,
            integration,
            database,
            admin,
        })
    }

    fn config(&self) -> &str {
        self.config.to_str().expect("utf-8")
    }

    async fn sync_once(&self) {
        let out = hirehook(&["sync", "--config", self.config(), "--once"]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    async fn open(&self) -> Arc<Store> {
        let config = hirehook::config::Config::load(&self.config).expect("config");
        Arc::new(Store::open(&config.store).await.expect("store").unfenced())
    }

    /// Two applications whose candidates' names are each found in no other snapshot:
    /// `(application, candidate id, first, last)`, the one to erase and the control.
    async fn two_people(&self) -> [(String, String, String, String); 2] {
        let store = self.open().await;
        let apps = self.sim.sim().application_ids(&self.integration);
        let ids: Vec<&str> = apps.iter().map(String::as_str).collect();
        let snapshots = store
            .snapshots(&self.integration, &ids)
            .await
            .expect("read");
        let people: Vec<(String, String, String, String)> = apps
            .iter()
            .zip(snapshots)
            .filter_map(|(app, bytes)| {
                let c = Snapshot::decode(&bytes?).ok()?.candidate?;
                Some((app.clone(), c.id, c.first_name?, c.last_name?))
            })
            .collect();
        let unique = |name: &str| {
            name.len() >= 4
                && people
                    .iter()
                    .filter(|p| p.2.contains(name) || p.3.contains(name))
                    .count()
                    == 1
        };
        let mut chosen: Vec<_> = people
            .iter()
            .filter(|p| unique(&p.2) && unique(&p.3))
            .filter(|p| people.iter().filter(|q| q.1 == p.1).count() == 1)
            .cloned()
            .collect();
        assert!(chosen.len() >= 2, "the simulator names people: {people:?}");
        chosen.truncate(2);
        [chosen[0].clone(), chosen[1].clone()]
    }

    /// The files that hold the store's data: sled's directory, or the database's
    /// directory (after a checkpoint, so what the server has is on disk).
    async fn data_dir(&self) -> PathBuf {
        match &self.database {
            None => self.dir.path().join("store"),
            Some(url) => {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                tokio::spawn(conn);
                client
                    .batch_execute("CHECKPOINT")
                    .await
                    .expect("checkpoint");
                let oid: u32 = client
                    .query_one(
                        "SELECT oid FROM pg_database WHERE datname = current_database()",
                        &[],
                    )
                    .await
                    .expect("oid")
                    .get(0);
                let data: String = client
                    .query_one("SHOW data_directory", &[])
                    .await
                    .expect("data directory")
                    .get(0);
                Path::new(&data).join("base").join(oid.to_string())
            }
        }
    }

    /// Whether any file of the store holds `needle`.
    async fn files_hold(&self, needle: &str) -> bool {
        fn scan(dir: &Path, needle: &[u8]) -> bool {
            std::fs::read_dir(dir).expect("list").flatten().any(|e| {
                let path = e.path();
                if path.is_dir() {
                    scan(&path, needle)
                } else {
                    std::fs::read(&path)
                        .map(|b| b.windows(needle.len()).any(|w| w == needle))
                        .unwrap_or(false)
                }
            })
        }
        scan(&self.data_dir().await, needle.as_bytes())
    }
}

/// Erased by the CLI (the store not in use; on PostgreSQL it would work beside replicas
/// too): the names are gone from the store and its files, the control's are not.
async fn erase_leaves_no_trace_in_the_store_files(backend: Backend) {
    let Some(setup) = Setup::start(backend).await else {
        return;
    };
    setup.sync_once().await;
    let [
        (app, candidate, first, last),
        (_, _, control_first, control_last),
    ] = setup.two_people().await;
    for name in [&first, &last, &control_first, &control_last] {
        assert!(
            setup.files_hold(name).await,
            "{name} is on disk before (else the scan proves nothing)"
        );
    }
    let out = hirehook(&[
        "erase",
        "--config",
        setup.config(),
        "--integration",
        &setup.integration,
        "--candidate",
        &candidate,
    ])
    .await;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let want = format!(
        "erased candidate {candidate} of integration {}: 2 changed (1 snapshot, 1 event, 0 delivery records)",
        setup.integration
    );
    assert!(stdout.starts_with(&want), "{stdout}");
    assert!(stderr.contains("personal data erased"), "{stderr}");
    for name in [&first, &last] {
        assert!(
            !stderr.contains(name.as_str()) && !stdout.contains(name.as_str()),
            "never logged"
        );
        assert!(
            !setup.files_hold(name).await,
            "{name} is still in the store's files"
        );
    }
    for name in [&control_first, &control_last] {
        assert!(
            setup.files_hold(name).await,
            "the control {name} is still there"
        );
    }
    // The store: the names are null, the ids and the event stay.
    let store = setup.open().await;
    let bytes = store
        .snapshots(&setup.integration, &[app.as_str()])
        .await
        .expect("read")[0]
        .clone()
        .expect("kept");
    let c = Snapshot::decode(&bytes)
        .expect("decodes")
        .candidate
        .expect("candidate");
    assert_eq!(
        (c.id.as_str(), c.first_name, c.last_name),
        (candidate.as_str(), None, None)
    );
    let events = store
        .events(&EventFilter {
            application_id: Some(app.clone()),
            ..EventFilter::default()
        })
        .await
        .expect("events");
    assert_eq!(events.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&events[0].body).expect("json");
    assert_eq!(
        body["data"]["application"]["candidate"]["id"],
        candidate.as_str()
    );
    assert!(body["data"]["application"]["candidate"]["first_name"].is_null());
    drop(store);
    // Again: nothing more.
    let out = hirehook(&[
        "erase",
        "--config",
        setup.config(),
        "--integration",
        &setup.integration,
        "--application",
        &app,
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(": 0 changed (0 snapshots, 0 events, 0 delivery records)"));
}

/// A delivery that failed (503) and is pending when its event is erased goes out with the
/// erased body and a valid signature; the failed attempt's record is cleared; `replay`
/// sends the erased body.
async fn a_pending_delivery_goes_out_erased_and_signed(backend: Backend) {
    let Some(setup) = Setup::start(backend).await else {
        return;
    };
    setup.sync_once().await;
    let [(app, _, first, _), _] = setup.two_people().await;
    setup
        .receiver
        .set_behaviour(Box::new(|_, _| Reply::Status(503)));
    let log = setup.dir.path().join("run1.log");
    let mut daemon = start_daemon(&setup.config, &log);
    // A graceful stop records the attempts that got an answer.
    setup
        .receiver
        .wait_until(LIMIT, |r| r.iter().any(|x| x.application() == app))
        .await;
    stop(&mut daemon).await;
    let first_try = setup
        .receiver
        .received()
        .into_iter()
        .find(|x| x.application() == app)
        .expect("tried");
    assert!(
        text(&first_try.body).contains(&first),
        "sent before the erasure"
    );
    let out = hirehook(&[
        "erase",
        "--config",
        setup.config(),
        "--integration",
        &setup.integration,
        "--application",
        &app,
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 delivery record"),
        "{}",
        text(&out.stdout)
    );
    {
        let store = setup.open().await;
        let event = &store
            .events(&EventFilter {
                application_id: Some(app.clone()),
                ..EventFilter::default()
            })
            .await
            .expect("events")[0];
        let delivery = store
            .delivery("crm", event.log_seq)
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(delivery.state, hirehook::store::DeliveryState::Pending);
        assert_eq!(delivery.last_error, None);
        assert!(
            delivery
                .recent_attempts
                .iter()
                .all(|a| a.error.is_none() && a.response_prefix.is_none())
        );
        assert!(
            delivery
                .recent_attempts
                .iter()
                .any(|a| a.status == Some(503))
        );
    }
    setup.receiver.set_behaviour(Box::new(|_, _| Reply::Ok));
    let log = setup.dir.path().join("run2.log");
    let mut daemon = start_daemon(&setup.config, &log);
    let sent = setup
        .receiver
        .try_wait_until(LIMIT, |r| {
            r.iter()
                .any(|x| x.application() == app && x.answered == 200)
        })
        .await;
    stop(&mut daemon).await;
    if let Err(received) = sent {
        // Failed once under CI's load, not reproduced: say what the daemon did.
        let tried: Vec<u16> = received
            .iter()
            .filter(|x| x.application() == app)
            .map(|x| x.answered)
            .collect();
        panic!(
            "the erased delivery was not sent with a 200 within {LIMIT:?}; {} requests, those \
             for it answered {tried:?}; the second daemon's log:\n{}",
            received.len(),
            text(&std::fs::read(&log).unwrap_or_default())
        );
    }
    let delivered = setup
        .receiver
        .received()
        .into_iter()
        .find(|x| x.application() == app && x.answered == 200)
        .expect("delivered");
    assert!(delivered.verified, "the signature covers the erased body");
    assert_eq!(delivered.id, first_try.id, "the same event");
    assert!(
        !text(&delivered.body).contains(&first),
        "{}",
        text(&delivered.body)
    );
    assert!(delivered.event["data"]["application"]["candidate"]["first_name"].is_null());
    assert!(
        !text(&std::fs::read(&log).unwrap_or_default()).contains(&first),
        "{}",
        tail(&log)
    );
    // Replay sends the stored, erased body.
    let before = setup.receiver.received().len();
    let out = hirehook(&[
        "replay",
        "--config",
        setup.config(),
        "--to",
        &setup.receiver.url,
        "--secret",
        crate::common::SECRET,
        "--application",
        &app,
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    setup.receiver.wait_until(LIMIT, |r| r.len() > before).await;
    let replayed = setup.receiver.received().pop().expect("replayed");
    assert_eq!(replayed.id, first_try.id);
    assert!(replayed.verified);
    assert_eq!(replayed.body, delivered.body, "the erased body");
}

/// While `hirehook run` holds a sled store, `hirehook erase` goes through the admin API,
/// which answers after the online rewrite; no trace is left while the daemon runs, and
/// the daemon still syncs and delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_through_the_api_while_run_holds_a_sled_store() {
    let Some(setup) = Setup::start(Backend::Sled).await else {
        return;
    };
    setup.sync_once().await;
    let [(app, candidate, first, last), (other, _, control_first, _)] = setup.two_people().await;
    let log = setup.dir.path().join("run.log");
    let mut daemon = start_daemon(&setup.config, &log);
    let total = setup.sim.sim().application_ids(&setup.integration).len();
    setup.receiver.wait_until(LIMIT, |r| r.len() >= total).await;
    let out = hirehook(&[
        "erase",
        "--config",
        setup.config(),
        "--integration",
        &setup.integration,
        "--candidate",
        &candidate,
    ])
    .await;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", tail(&log));
    assert!(stderr.contains("going through its admin API"), "{stderr}");
    assert!(
        text(&out.stdout).starts_with(&format!(
            "erased candidate {candidate} of integration {}: 2 changed (1 snapshot, 1 event, 0 delivery records)",
            setup.integration
        )),
        "{}",
        text(&out.stdout)
    );
    assert!(
        daemon.try_wait().expect("status").is_none(),
        "the daemon runs on"
    );
    for name in [&first, &last] {
        assert!(
            !setup.files_hold(name).await,
            "{name} is still in the store's files"
        );
    }
    assert!(
        setup.files_hold(&control_first).await,
        "the control is still there"
    );
    // The daemon syncs and delivers after the swap.
    let sim = setup.sim.sim();
    if sim
        .apply(&setup.integration, &other, Mutation::Hire)
        .is_err()
    {
        sim.apply(
            &setup.integration,
            &other,
            Mutation::Reject { reason: None },
        )
        .expect("a change");
    }
    let client = reqwest::Client::new();
    let path = hirehook::cli::admin_client::v1_path(&["integrations", &setup.integration, "sync"]);
    let answer = client
        .post(format!("http://{}{path}", setup.admin))
        .send()
        .await
        .expect("sync now");
    assert_eq!(answer.status().as_u16(), 202);
    setup
        .receiver
        .wait_until(LIMIT, |r| {
            r.len() > total && r.iter().skip(total).any(|x| x.application() == other)
        })
        .await;
    // The erasure's log line has ids and counts, never the names.
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("personal data erased"), "{}", tail(&log));
    assert!(logged.contains(&candidate));
    for name in [&first, &last] {
        assert!(!logged.contains(name.as_str()), "the daemon logged a name");
    }
    // Through the API directly: the answer is the report; bad bodies are 400 naming the
    // field.
    let url = format!("http://{}/v1/erase", setup.admin);
    let post = |body: serde_json::Value| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.post(url).json(&body).send().await.expect("post");
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.expect("json"))
        }
    };
    let (status, body) =
        post(serde_json::json!({"integration_id": setup.integration, "application_id": app})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"changed": 0, "snapshots": 0, "events": 0, "deliveries": 0})
    );
    for (request, field) in [
        (serde_json::json!({"application": app}), "`integration`"),
        (
            serde_json::json!({"integration": setup.integration}),
            "`application` or `candidate`",
        ),
        (
            serde_json::json!({"integration": setup.integration, "application": app, "candidate": candidate}),
            "not both",
        ),
        (
            serde_json::json!({"integration": setup.integration, "application": "a b"}),
            "`application`",
        ),
        (
            serde_json::json!({"integration": "", "candidate": "c"}),
            "`integration`",
        ),
        (
            serde_json::json!({"integration": setup.integration, "candidate": "x".repeat(257)}),
            "`candidate`",
        ),
    ] {
        let (status, body) = post(request.clone()).await;
        assert_eq!(status, 400, "{request}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{request}: {message}");
    }
    daemon.kill().await.expect("kill");
}

/// Bad input: unknown integration or nothing matched is exit 0 with "0 changed"; a
/// malformed id is exit 2 naming the flag; both flags or neither is exit 2.
#[tokio::test]
async fn bad_input_is_refused_naming_the_flag() {
    let Some(setup) = Setup::start(Backend::Sled).await else {
        return;
    };
    setup.sync_once().await;
    let config = setup.config();
    for args in [
        vec!["--integration", "nowhere", "--application", "app"],
        vec![
            "--integration",
            setup.integration.as_str(),
            "--candidate",
            "nobody",
        ],
    ] {
        let out = hirehook(&[&["erase", "--config", config][..], &args[..]].concat()).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains(": 0 changed"),
            "{}",
            text(&out.stdout)
        );
    }
    let long = "x".repeat(257);
    for (args, flag) in [
        (
            vec!["--integration", "i", "--application", ""],
            "--application",
        ),
        (
            vec!["--integration", "i", "--application", "a b"],
            "--application",
        ),
        (
            vec!["--integration", "i", "--candidate", "c\u{1}"],
            "--candidate",
        ),
        (
            vec!["--integration", "i", "--candidate", long.as_str()],
            "--candidate",
        ),
        (
            vec!["--integration", " ", "--candidate", "c"],
            "--integration",
        ),
        (
            vec![
                "--integration",
                "i",
                "--application",
                "a",
                "--candidate",
                "c",
            ],
            "--candidate",
        ),
        (vec!["--integration", "i"], "--application"),
    ] {
        let out = hirehook(&[&["erase", "--config", config][..], &args[..]].concat()).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

on_both_backends!(
    erase_leaves_no_trace_in_the_store_files,
    a_pending_delivery_goes_out_erased_and_signed,
);
