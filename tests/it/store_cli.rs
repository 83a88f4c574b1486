//! `hirehook store migrate`, `copy` and `compact` as an operator runs them: the real
//! binary, config files, a throwaway PostgreSQL database, and for the copy a sled store
//! filled by `hirehook sync --once` against the simulator plus held, dropped, retried,
//! dead-lettered and disabled state written through the store; for `compact`, stores of
//! both backends holding events of many ages and a long-deleted application.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use chrono::SubsecRound as _;
use hirehook::ats::Timestamp;
use hirehook::event::EventType;
use hirehook::sim::{Mutation, RunningSim, SimConfig, spawn};
use hirehook::store::postgres::test_database;
use hirehook::store::{
    AttemptRecord, AttemptResult, DeliveryState, EventFilter, EventRecord, NewEvent, OutboxEntry,
    PageCommit, Store,
};
use tokio::process::Command;

use crate::common::{Receiver, SECRET, live};

async fn hirehook(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("hirehook runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The part of a config after `[store]`: the simulator (or nothing listening), the
/// integrations, subscribers on loopback.
fn rest_of_config(
    base_url: &str,
    api_key: &str,
    integrations: &[String],
    subscribers: &[(&str, &str)],
) -> String {
    let mut text = format!(
        r#"
[kombo]
base_url = "{base_url}"
api_key = "{api_key}"
request_timeout = "5s"
initial_sync = "emit"
poll_interval = "1s"

[delivery]
retry_schedule = ["50ms", "100ms"]
allow_private_networks = true

[admin]
listen = "127.0.0.1:0"
"#
    );
    for id in integrations {
        text.push_str(&format!("\n[[integrations]]\nid = \"{id}\"\n"));
    }
    for (name, url) in subscribers {
        text.push_str(&format!(
            "\n[[subscribers]]\nname = \"{name}\"\nurl = \"{url}\"\nsecrets = [\"{SECRET}\"]\n"
        ));
    }
    text
}

/// A config whose store is the PostgreSQL database at `url`.
fn postgres_config(
    dir: &Path,
    url: &str,
    base_url: &str,
    api_key: &str,
    integrations: &[String],
    subscribers: &[(&str, &str)],
) -> PathBuf {
    let text = format!(
        "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n{}",
        rest_of_config(base_url, api_key, integrations, subscribers)
    );
    let path = dir.join("postgres.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A config for nothing in particular: one integration, no subscriber.
fn plain_postgres_config(dir: &Path, url: &str) -> PathBuf {
    postgres_config(
        dir,
        url,
        "http://127.0.0.1:9",
        "test-key",
        &["greenhouse:a".into()],
        &[],
    )
}

/// A sled config for the simulator: the baseline emits; subscribers `crm` and `ats`.
fn sled_config(dir: &Path, sim: &RunningSim, integrations: &[String], urls: [&str; 2]) -> PathBuf {
    let text = format!(
        "[store]\npath = \"{}\"\n{}",
        dir.join("sled").display(),
        rest_of_config(
            &sim.base_url(),
            sim.sim().api_key(),
            integrations,
            &[("crm", urls[0]), ("ats", urls[1])]
        )
    );
    let path = dir.join("sled.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

async fn open_postgres(url: &str) -> Store {
    let config = hirehook::config::StoreConfig {
        backend: hirehook::config::StoreBackend::Postgres,
        url: Some(url.to_owned()),
        pool_size: 4,
        ..Default::default()
    };
    Store::open(&config)
        .await
        .expect("PostgreSQL opens")
        .unfenced()
}

use crate::common::process::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_the_schema_once_and_says_so() {
    let Some(url) = test_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = plain_postgres_config(dir.path(), &url);
    let config = config.to_str().expect("utf-8 path");

    let out = hirehook(&["store", "migrate", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let version = hirehook::store::postgres::SCHEMA_VERSION;
    assert_eq!(
        text(&out.stdout).trim(),
        format!("schema version {version} (applied {version} migration(s))")
    );

    let again = hirehook(&["store", "migrate", "--config", config]).await;
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stdout).trim(),
        format!("already at version {version}")
    );

    // The store opens on the migrated schema.
    let store = open_postgres(&url).await;
    assert_eq!(store.backend(), "postgres");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_and_copy_refuse_a_sled_config_with_exit_2() {
    let Some(_url) = test_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sled.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n\n[kombo]\napi_key = \"k\"\n\n[[integrations]]\nid = \"greenhouse:a\"\n",
            dir.path().join("store").display()
        ),
    )
    .expect("write");
    let config = config.to_str().expect("utf-8 path");

    let out = hirehook(&["store", "migrate", "--config", config]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("sled") && stderr.contains("no schema to migrate"),
        "{stderr}"
    );

    let source = dir.path().join("store");
    let out = hirehook(&[
        "store",
        "copy",
        "--from",
        source.to_str().expect("utf-8"),
        "--config",
        config,
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("backend = \"sled\""));
    assert!(!source.exists(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_names_the_host_and_never_the_password() {
    let Some(_url) = test_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("postgres://hirehook:pw-s3cret-71@127.0.0.1:{port}/hirehook");
    let config = plain_postgres_config(dir.path(), &url);
    let out = hirehook(&[
        "store",
        "migrate",
        "--config",
        config.to_str().expect("utf-8"),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}/hirehook")),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
    assert!(!stderr.contains("pw-s3cret-71"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_refuses_a_missing_or_busy_source() {
    let Some(url) = test_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = plain_postgres_config(dir.path(), &url);
    let config = config.to_str().expect("utf-8");

    let missing = dir.path().join("nothing-here");
    let out = hirehook(&[
        "store",
        "copy",
        "--from",
        missing.to_str().expect("utf-8"),
        "--config",
        config,
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no sled store at"));
    assert!(!missing.exists(), "no store was created there");

    // In use: this process holds the sled store.
    let busy = dir.path().join("busy");
    let held = Store::open_sled(&busy, 8 << 20).expect("sled opens");
    let out = hirehook(&[
        "store",
        "copy",
        "--from",
        busy.to_str().expect("utf-8"),
        "--config",
        config,
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("in use by another process"),
        "{}",
        text(&out.stderr)
    );
    drop(held);
    let target = open_postgres(&url).await;
    let Store::Postgres(pg) = &target else {
        panic!("a PostgreSQL store");
    };
    assert_eq!(pg.is_empty().await.expect("check"), None, "nothing written");
}

fn at_micros(t: Timestamp) -> Timestamp {
    t.trunc_subsecs(6)
}

/// An event as PostgreSQL keeps it (timestamps in microseconds).
fn event_norm(mut e: EventRecord) -> EventRecord {
    e.detected_at = at_micros(e.detected_at);
    e
}

fn entry_norm(
    (subscriber, seq, mut entry): (String, u64, OutboxEntry),
) -> (String, u64, OutboxEntry) {
    entry.due_at = at_micros(entry.due_at);
    entry.updated_at = at_micros(entry.updated_at);
    (subscriber, seq, entry)
}

fn attempt(n: u32, at: Timestamp, status: u16) -> AttemptRecord {
    AttemptRecord {
        attempt: n,
        at,
        status: Some(status),
        latency_ms: 12,
        error: (status >= 300).then(|| format!("HTTP {status}")),
        response_prefix: Some(format!("answer {n}")),
    }
}

fn held_event(id: &str, app: &str, at: Timestamp) -> NewEvent {
    NewEvent {
        id: id.into(),
        event_type: EventType::ApplicationDeleted,
        application_id: app.into(),
        sequence: 99,
        detected_at: at,
        body: format!("{{\"type\":\"application_deleted\",\"id\":\"{id}\"}}").into_bytes(),
        subscribers: vec!["crm".into(), "ats".into()],
        hold: true,
    }
}

/// Fills a sled store the way hirehook does: two syncs against the simulator (a baseline
/// that emits, then changes), then held events (one dropped), deliveries delivered,
/// retried, dead-lettered, and a subscriber disabled by a 410. Returns the log sequence
/// of the dropped held event (the highest one handed out).
async fn fill_sled(dir: &Path, sim: &RunningSim, integrations: &[String], urls: [&str; 2]) -> u64 {
    let config = sled_config(dir, sim, integrations, urls);
    let config = config.to_str().expect("utf-8");
    let out = hirehook(&["sync", "--once", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!out.stdout.is_empty(), "the baseline emits");

    let live: Vec<String> = live(sim, &integrations[0]).into_iter().take(3).collect();
    for id in &live {
        sim.sim()
            .apply(&integrations[0], id, Mutation::ScheduleInterview)
            .expect("schedule");
    }
    let out = hirehook(&["sync", "--once", "--config", config]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!out.stdout.is_empty(), "the changes are events");

    let store = Store::open_sled(&dir.join("sled"), 8 << 20).expect("sled opens");
    let now = chrono::Utc::now();
    let held = store
        .commit_page(
            &integrations[1],
            PageCommit {
                snapshots: Vec::new(),
                events: vec![
                    held_event("evt_held_1", "app-h1", now),
                    held_event("evt_held_2", "app-h2", now),
                    held_event("evt_held_3", "app-h3", now),
                ],
            },
        )
        .await
        .expect("hold");
    assert_eq!(held.len(), 3);
    let dropped = held[2].log_seq;
    assert_eq!(
        store
            .drop_held(&integrations[1], &[dropped])
            .await
            .expect("drop"),
        1
    );
    // Judged a mass change, as a sync's guard would: they wait for an operator.
    let mut state = store.sync_state(&integrations[1]).await.expect("state");
    state.guard_decided_through = dropped;
    store
        .put_sync_state(&integrations[1], &state)
        .await
        .expect("state");
    store.flush().await.expect("flush");

    // Deliveries: one delivered, one retried then dead, one retrying; 410 for `ats`.
    let later = now + chrono::TimeDelta::days(1);
    let hold = Duration::from_secs(60);
    let claimed = store.claim_due("crm", later, 3, hold).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    store
        .record_attempt(&claimed[0], &attempt(1, now, 200), AttemptResult::Delivered)
        .await
        .expect("record");
    // Due again before every other head, so the next claim of one takes it.
    store
        .record_attempt(
            &claimed[1],
            &attempt(1, now, 503),
            AttemptResult::Retry {
                due_at: now - chrono::TimeDelta::days(1),
            },
        )
        .await
        .expect("record");
    store
        .record_attempt(
            &claimed[2],
            &attempt(1, now, 500),
            AttemptResult::Retry { due_at: later },
        )
        .await
        .expect("record");
    let again = store.claim_due("crm", now, 1, hold).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].log_seq, claimed[1].log_seq, "the retried delivery");
    store
        .record_attempt(&again[0], &attempt(2, now, 500), AttemptResult::Dead)
        .await
        .expect("record");
    let ats = store.claim_due("ats", later, 1, hold).await.expect("claim");
    store
        .record_attempt(
            &ats[0],
            &attempt(1, now, 410),
            AttemptResult::Disable {
                reason: "410 Gone at https://ats.example.com/hook".into(),
            },
        )
        .await
        .expect("record");
    store.flush().await.expect("flush");
    dropped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_moves_a_sled_store_into_postgres_and_the_log_continues() {
    let Some(url) = test_database().await else {
        return;
    };
    let sim = spawn(SimConfig {
        integrations: 2,
        applications: 40,
        seed: 11,
        ..Default::default()
    })
    .await
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let integrations = sim.sim().integration_ids();
    let urls = [
        "https://crm.example.com/hook",
        "https://ats.example.com/hook",
    ];
    let dropped = fill_sled(dir.path(), &sim, &integrations, urls).await;

    let config = postgres_config(
        dir.path(),
        &url,
        &sim.base_url(),
        sim.sim().api_key(),
        &integrations,
        &[("crm", urls[0]), ("ats", urls[1])],
    );
    let config = config.to_str().expect("utf-8");
    let source = dir.path().join("sled");
    let source = source.to_str().expect("utf-8");
    let out = hirehook(&[
        "store", "copy", "--from", source, "--config", config, "--batch", "7",
    ])
    .await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert!(stdout.contains("copied the sled store at"), "{stdout}");
    let stderr = text(&out.stderr);

    let sled = Store::open_sled(&dir.path().join("sled"), 8 << 20).expect("sled opens");
    let pg = open_postgres(&url).await;

    // The log: same ids, log sequences, bodies, everything.
    let sled_events = sled.events(&EventFilter::default()).await.expect("events");
    let pg_events = pg.events(&EventFilter::default()).await.expect("events");
    assert!(sled_events.len() > 40, "{}", sled_events.len());
    assert_eq!(
        pg_events,
        sled_events.into_iter().map(event_norm).collect::<Vec<_>>()
    );
    let line = |what: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(what))
            .unwrap_or_else(|| panic!("no {what} line: {stdout}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(line("events")[1], pg_events.len().to_string());
    assert_eq!(line("held events")[2], "2");

    // Held events, snapshots and sync states, per integration.
    let mut last_seq = 0;
    let mut snapshots = 0;
    for integration in &integrations {
        let held = sled.held_events(integration).await.expect("held");
        assert_eq!(
            pg.held_events(integration).await.expect("held"),
            held.into_iter().map(event_norm).collect::<Vec<_>>()
        );
        let ids = sim.sim().application_ids(integration);
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let sled_snapshots = sled.snapshots(integration, &ids).await.expect("snapshots");
        assert!(sled_snapshots.iter().all(Option::is_some));
        assert_eq!(
            pg.snapshots(integration, &ids).await.expect("snapshots"),
            sled_snapshots
        );
        let count = sled.snapshot_count(integration).await.expect("count");
        assert_eq!(pg.snapshot_count(integration).await.expect("count"), count);
        snapshots += count;
        let state = sled.sync_state(integration).await.expect("state");
        assert!(state.baseline_done && state.watermark.is_some());
        assert_eq!(pg.sync_state(integration).await.expect("state"), state);
    }
    for e in pg.events(&EventFilter::default()).await.expect("events") {
        last_seq = last_seq.max(e.log_seq);
    }
    assert!(
        dropped > last_seq,
        "the dropped held event was the last one"
    );
    assert!(
        stderr.contains(&format!("snapshots: {snapshots} copied"))
            && stderr.contains("deliveries: "),
        "a line per kind: {stderr}"
    );

    // Deliveries: state, attempts, times, recent attempts; attempts as read.
    let sled_deliveries = sled.deliveries(None, None, None).await.expect("deliveries");
    let pg_deliveries = pg.deliveries(None, None, None).await.expect("deliveries");
    assert_eq!(
        pg_deliveries,
        sled_deliveries
            .into_iter()
            .map(entry_norm)
            .collect::<Vec<_>>()
    );
    let states: Vec<_> = pg_deliveries
        .iter()
        .filter(|(_, _, e)| e.attempts > 0)
        .map(|(s, _, e)| (s.as_str(), e.state.as_str(), e.attempts))
        .collect();
    assert_eq!(states.len(), 4, "{states:?}");
    assert!(states.contains(&("crm", "dead", 2)), "{states:?}");
    assert!(states.contains(&("crm", "delivered", 1)), "{states:?}");
    for (subscriber, seq, _) in pg_deliveries.iter().filter(|(_, _, e)| e.attempts > 0) {
        assert_eq!(
            pg.attempts(subscriber, *seq).await.expect("attempts"),
            sled.attempts(subscriber, *seq).await.expect("attempts")
        );
    }
    for subscriber in ["crm", "ats"] {
        assert_eq!(
            pg.disabled_reason(subscriber).await.expect("reason"),
            sled.disabled_reason(subscriber).await.expect("reason")
        );
        let (a, b) = (
            pg.queue_summary(subscriber).await.expect("summary"),
            sled.queue_summary(subscriber).await.expect("summary"),
        );
        assert_eq!((a.pending, a.dead), (b.pending, b.dead), "{subscriber}");
    }
    assert!(pg.disabled_reason("ats").await.expect("reason").is_some());
    drop(sled);

    // A second copy into the now non-empty store is refused, and writes nothing.
    let out = hirehook(&["store", "copy", "--from", source, "--config", config]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert!(stderr.contains("snapshot(s)"), "{stderr}");
    assert_eq!(
        pg.events(&EventFilter::default())
            .await
            .expect("events")
            .len(),
        pg_events.len()
    );

    // The log continues: known ids (logged, held, held and dropped) write nothing; a new
    // event comes after the highest sequence the sled store handed out.
    let known = &pg_events[0];
    let page = |id: &str, app: &str| NewEvent {
        id: id.into(),
        event_type: known.event_type,
        application_id: app.into(),
        sequence: 1,
        detected_at: chrono::Utc::now(),
        body: b"{}".to_vec(),
        subscribers: vec!["crm".into()],
        hold: false,
    };
    let written = pg
        .commit_page(
            &known.integration_id,
            PageCommit {
                snapshots: Vec::new(),
                events: vec![
                    page(&known.id, &known.application_id),
                    page("evt_held_1", "app-h1"),
                    page("evt_held_3", "app-h3"),
                ],
            },
        )
        .await
        .expect("commit");
    assert!(written.is_empty(), "{written:?}");
    let written = pg
        .commit_page(
            &known.integration_id,
            PageCommit {
                snapshots: Vec::new(),
                events: vec![page("evt_brand_new", "app-new")],
            },
        )
        .await
        .expect("commit");
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].log_seq, dropped + 1);
    assert_eq!(
        pg.events(&EventFilter::default())
            .await
            .expect("events")
            .len(),
        pg_events.len() + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_copy_run_on_postgres_delivers_the_backlog_once_and_the_log_continues() {
    let Some(url) = test_database().await else {
        return;
    };
    let sim = spawn(SimConfig {
        integrations: 2,
        applications: 30,
        seed: 12,
        ..Default::default()
    })
    .await
    .expect("sim");
    let crm = Receiver::start().await;
    let ats = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let integrations = sim.sim().integration_ids();
    let dropped = fill_sled(dir.path(), &sim, &integrations, [&crm.url, &ats.url]).await;

    // What the sled store still owes crm: per application, its pending deliveries in log
    // order up to the first that is not due yet (one is retried tomorrow, and holds back
    // its application's later events); and what must not be sent again.
    let now = chrono::Utc::now();
    let (due, settled) = {
        let sled = Store::open_sled(&dir.path().join("sled"), 8 << 20).expect("sled opens");
        let all = sled
            .deliveries(Some("crm"), None, None)
            .await
            .expect("deliveries");
        let mut blocked = BTreeSet::new();
        let mut due = BTreeSet::new();
        for (_, _, e) in &all {
            let app = (e.integration_id.clone(), e.application_id.clone());
            if e.state != DeliveryState::Pending || blocked.contains(&app) {
                continue;
            }
            if e.due_at <= now {
                due.insert(e.event_id.clone());
            } else {
                blocked.insert(app);
            }
        }
        let settled: BTreeSet<String> = all
            .iter()
            .map(|(_, _, e)| e.event_id.clone())
            .filter(|id| !due.contains(id))
            .collect();
        (due, settled)
    };
    assert!(
        due.len() > 10 && settled.len() >= 3,
        "{} {}",
        due.len(),
        settled.len()
    );

    let config = postgres_config(
        dir.path(),
        &url,
        &sim.base_url(),
        sim.sim().api_key(),
        &integrations,
        &[("crm", &crm.url), ("ats", &ats.url)],
    );
    let source = dir.path().join("sled");
    let out = hirehook(&[
        "store",
        "copy",
        "--from",
        source.to_str().expect("utf-8"),
        "--config",
        config.to_str().expect("utf-8"),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    let mut daemon = Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("hirehook run starts");
    let limit = Duration::from_secs(60);
    crm.wait_until(limit, |r| {
        r.iter()
            .map(|x| x.id.as_str())
            .collect::<BTreeSet<_>>()
            .len()
            >= due.len()
    })
    .await;

    // A change after the copy: derived once, delivered, logged after the copied log.
    let app = live(&sim, &integrations[1])
        .into_iter()
        .next()
        .expect("a live application");
    sim.sim()
        .apply(&integrations[1], &app, Mutation::ScheduleInterview)
        .expect("schedule");
    crm.wait_until(limit, |r| {
        r.iter()
            .any(|x| x.event_type() == "interview_scheduled" && x.application() == app)
    })
    .await;
    // Let a poll or two more run: nothing else may arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    crate::common::process::signal(daemon.id().expect("running"), "-TERM");
    let status = tokio::time::timeout(limit, daemon.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(status.success(), "{status:?}");

    let got = crm.received();
    assert!(got.iter().all(|r| r.verified && r.answered == 200));
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    let unique: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
    assert_eq!(ids.len(), unique.len(), "nothing delivered twice");
    assert!(
        unique.is_disjoint(&settled),
        "settled deliveries stay settled"
    );
    let new: BTreeSet<String> = unique.difference(&due).cloned().collect();
    assert_eq!(
        unique.intersection(&due).count(),
        due.len(),
        "the whole backlog"
    );
    assert!(!new.is_empty(), "the change after the copy");
    assert!(ats.received().is_empty(), "ats stays disabled");

    let pg = open_postgres(&url).await;
    assert_eq!(
        pg.held_events(&integrations[1])
            .await
            .expect("held")
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        ["evt_held_1", "evt_held_2"],
        "held events stay held for an operator"
    );
    let after: Vec<EventRecord> = pg
        .events(&EventFilter {
            after_log_seq: Some(dropped),
            ..Default::default()
        })
        .await
        .expect("events");
    assert_eq!(after.first().map(|e| e.log_seq), Some(dropped + 1));
    assert_eq!(
        after.iter().map(|e| e.id.clone()).collect::<BTreeSet<_>>(),
        new,
        "every new event is logged after the copied log and delivered"
    );
}

/// Events 60 and 59 days old nobody wanted, one as old still pending, one an hour old; a
/// live application and one deleted upstream 30 days ago.
async fn fill_for_compact(store: &Store) {
    use hirehook::diff::Snapshot;
    use hirehook::store::SnapshotWrite;
    let now = chrono::Utc::now();
    let days = |n: i64| now - chrono::TimeDelta::days(n);
    let snap = |app: &str, deleted: Option<Timestamp>| SnapshotWrite {
        application_id: app.into(),
        bytes: Snapshot {
            sequence: 1,
            deleted_at: deleted,
            ..Snapshot::default()
        }
        .encode(),
        is_new: true,
        previous_deleted_at: None,
    };
    let event = |id: &str, app: &str, at: Timestamp, subs: &[&str]| NewEvent {
        id: id.into(),
        event_type: EventType::StageChanged,
        application_id: app.into(),
        sequence: 1,
        detected_at: at,
        body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        subscribers: subs.iter().map(|s| s.to_string()).collect(),
        hold: false,
    };
    store
        .commit_page(
            "greenhouse:a",
            PageCommit {
                snapshots: vec![snap("live", None), snap("gone", Some(days(30)))],
                events: vec![
                    event("evt_old_1", "a1", days(60), &[]),
                    event("evt_old_2", "a2", days(59), &[]),
                    event("evt_old_pending", "a3", days(59), &["crm"]),
                    event("evt_young", "a4", now - chrono::TimeDelta::hours(1), &[]),
                ],
            },
        )
        .await
        .expect("commit");
    store.flush().await.expect("flush");
}

/// Runs `store compact` on `config`, checks what it says it removed and what is left.
async fn compact_and_check(config: &Path) {
    let config = config.to_str().expect("utf-8 path");
    let out = hirehook(&["store", "compact", "--config", config]).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let counts: std::collections::BTreeMap<String, u64> = stdout
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.parse().ok()?))
        })
        .collect();
    let want: std::collections::BTreeMap<String, u64> = [
        ("events", 2),
        ("deliveries", 0),
        ("attempts", 0),
        ("event_ids", 2),
        ("snapshots", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(counts, want, "{stdout}");
    assert!(
        stdout.contains("events 30d, deleted applications 14d"),
        "{stdout}"
    );

    let list = hirehook(&["events", "list", "--config", config]).await;
    assert!(list.status.success(), "{}", text(&list.stderr));
    let listed = text(&list.stdout);
    for kept in ["evt_old_pending", "evt_young"] {
        assert!(listed.contains(kept), "{kept} kept: {listed}");
    }
    for gone in ["evt_old_1", "evt_old_2"] {
        assert!(!listed.contains(gone), "{gone} removed: {listed}");
    }
    let status = hirehook(&["status", "--json", "--config", config]).await;
    assert!(status.status.success(), "{}", text(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status is JSON");
    assert_eq!(
        status["integrations"][0]["applications"], 1,
        "the purge shows in the count: {status}"
    );

    // Again: nothing more.
    let again = hirehook(&["store", "compact", "--config", config]).await;
    assert!(again.status.success(), "{}", text(&again.stderr));
    let stdout = text(&again.stdout);
    assert!(
        stdout
            .lines()
            .filter(|l| l.starts_with("  "))
            .all(|l| l.split_whitespace().nth(1) == Some("0")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_removes_what_retention_says_on_sled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sled");
    {
        let store = Store::open_sled(&path, 8 << 20).expect("open");
        fill_for_compact(&store).await;
    }
    let config = dir.path().join("sled.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n{}",
            path.display(),
            rest_of_config(
                "http://127.0.0.1:9",
                "test-key",
                &["greenhouse:a".into()],
                &[]
            )
        ),
    )
    .expect("write config");
    compact_and_check(&config).await;
    // On sled the store was rewritten to give the space back; it still opens.
    let out = hirehook(&[
        "store",
        "compact",
        "--config",
        config.to_str().expect("utf-8"),
    ])
    .await;
    assert!(
        text(&out.stdout).contains("rewrote the sled store"),
        "{}",
        text(&out.stdout)
    );
    assert!(!path.join(".rewrite").exists());
    let store = Store::open_sled(&path, 8 << 20).expect("opens after the rewrite");
    assert_eq!(
        store
            .events(&EventFilter::default())
            .await
            .expect("log")
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_removes_what_retention_says_on_postgres() {
    let Some(url) = test_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    fill_for_compact(&open_postgres(&url).await).await;
    compact_and_check(&plain_postgres_config(dir.path(), &url)).await;
}
