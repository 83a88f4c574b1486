//! Crash safety: the real binary, `SIGKILL`ed again and again, loses nothing.
//!
//! `hirehook run` (the binary, as operators run it) polls the simulator and delivers to a
//! capturing, verifying receiver. It is killed with `SIGKILL` ten times, at moments chosen
//! by a seeded RNG (the seed is printed; `HIREHOOK_CRASH_SEED=<n>` replays it) and aimed at
//! the dangerous windows: mid-commit (a few milliseconds after a page of a 400-event
//! baseline was served), mid-page (a scripted slow response in flight), mid-delivery (a
//! slow receiver with requests in flight) and at random moments, with and without random
//! slow pages. Between rounds, the simulator's world changes (seeded random mutations).
//!
//! # The oracle
//!
//! A **reference** hirehook runs in the test process with a fresh store, the same settings
//! and the same simulator, and never crashes: it syncs after each batch of mutations. Event
//! ids are deterministic (integration, application, per-application sequence, type and the
//! values that define the event; never the time), so two hirehooks that observe the same
//! states of every application derive exactly the same ids. The test makes that hold by
//! changing the world only while the crashing binary is down *and* after it has completed a
//! sync of the current world (checked through its admin API); crashes in between are
//! arbitrary. Both use `initial_sync = "emit"`, so even a baseline cut short and redone
//! derives the same `application_created` events.
//!
//! After a final clean run, the test asserts:
//! - the crashed store's event log holds **exactly the reference's event ids** (nothing
//!   lost, nothing spurious, nothing re-derived under a new id);
//! - the receiver got **every logged id**, every request verified with the Standard
//!   Webhooks reference crate, and any duplicate (a crash between the 2xx and its record)
//!   carries the same `webhook-id` with a byte-identical body;
//! - per application, first receipts arrive in `sequence` order;
//! - nothing is left pending in the store;
//! - against the simulator's truth log, independently of the reference: every application
//!   that changed exactly once got the event that change defines, and no application
//!   outside the truth log got any event after the baseline.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{ConfigBuilder, Received, Receiver};
use chrono::{DateTime, Utc};
use hirehook::ats::{ClientConfig, KomboClient, Outcome, RetryPolicy};
use hirehook::event::EventType;
use hirehook::secret::Secret;
use hirehook::sim::rng::Rng;
use hirehook::sim::{
    FaultConfig, FaultKind, RunningSim, ScriptedFault, SimConfig, TruthChange, TruthEntry, spawn,
};
use hirehook::store::{DeliveryState, EventFilter, Store};
use hirehook::sync::{SyncSettings, Syncer};
use tokio::process::{Child, Command};

/// A safety net for every wait, not a timing assertion.
const LIMIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "crash-test-admin-token-0123456789";

/// The crashing binary and everything around it.
struct Rig {
    sim: RunningSim,
    receiver: Receiver,
    dir: tempfile::TempDir,
    config_path: std::path::PathBuf,
    admin: SocketAddr,
    http: reqwest::Client,
    integration: String,
    /// Log file of the current run (kept for failure messages).
    runs: u32,
}

impl Rig {
    fn log_path(&self, run: u32) -> std::path::PathBuf {
        self.dir.path().join(format!("run-{run}.log"))
    }

    fn start(&mut self) -> Child {
        self.runs += 1;
        let log = std::fs::File::create(self.log_path(self.runs)).expect("log file");
        Command::new(env!("CARGO_BIN_EXE_hirehook"))
            .args(["run", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("hirehook run starts")
    }

    /// The last lines the current run logged (for assertion messages).
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path(self.runs)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until the running binary's `/v1/status` satisfies `done`.
    async fn wait_status(
        &self,
        child: &mut Child,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) {
        let url = format!("http://{}/v1/status", self.admin);
        let wait = async {
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("hirehook exited early: {status:?}\n{}", self.log_tail());
                }
                if let Ok(response) = self.http.get(&url).bearer_auth(TOKEN).send().await
                    && let Ok(body) = response.json::<serde_json::Value>().await
                    && done(&body)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(LIMIT, wait)
            .await
            .unwrap_or_else(|_| panic!("{what}: not within {LIMIT:?}\n{}", self.log_tail()));
    }

    /// Waits until the running binary reports a complete sync that finished after `since`.
    async fn wait_synced(&self, child: &mut Child, since: DateTime<Utc>) {
        self.wait_status(child, "a complete sync", |body| {
            let integration = &body["integrations"][0];
            integration["baseline_done"] == true
                && integration["last_error"].is_null()
                && integration["last_success_at"]
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .is_some_and(|t| t.with_timezone(&Utc) > since)
        })
        .await;
    }

    /// Waits until the simulator has served `n` more listing requests than `base`.
    async fn wait_requests(&self, base: u64, n: u64) {
        let wait = async {
            while self.sim.sim().requests_served() < base + n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(LIMIT, wait)
            .await
            .expect("the binary polls within the limit");
    }
}

async fn kill9(child: &mut Child) {
    // `Child::kill` sends SIGKILL on Unix and reaps the process.
    child.kill().await.expect("SIGKILL");
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn seed() -> u64 {
    std::env::var("HIREHOOK_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
        })
}

/// Sleeps a random time in `0..max_ms` (the kill moment: random on purpose).
async fn random_pause(rng: &mut Rng, max_ms: u64) -> u64 {
    let ms = rng.below(max_ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

/// The event a single truth change must produce (`None`: no event by the catalogue).
fn expected_event(change: &TruthChange) -> Option<EventType> {
    let terminal = |o: &Option<Outcome>| matches!(o, Some(Outcome::Hired | Outcome::Declined));
    match change {
        TruthChange::ApplicationCreated { .. } => Some(EventType::ApplicationCreated),
        TruthChange::StageMoved {
            from_stage_id,
            to_stage_id,
        } => (from_stage_id != to_stage_id).then_some(EventType::StageChanged),
        TruthChange::OutcomeChanged { from, to, .. } => match to {
            _ if from == to => None,
            Some(Outcome::Hired) => Some(EventType::OutcomeHired),
            Some(Outcome::Declined) => Some(EventType::Rejected),
            Some(Outcome::Pending) | None if terminal(from) => Some(EventType::OutcomeReverted),
            _ => None,
        },
        TruthChange::OfferCreated { .. } => Some(EventType::OfferCreated),
        TruthChange::OfferStatusChanged { from, to, .. } => {
            (from != to).then_some(EventType::OfferStatusChanged)
        }
        TruthChange::InterviewScheduled { .. } => Some(EventType::InterviewScheduled),
        TruthChange::InterviewRescheduled { .. } => Some(EventType::InterviewRescheduled),
        TruthChange::InterviewCanceled { .. } => Some(EventType::InterviewCanceled),
        TruthChange::InterviewRemoved { was_canceled, .. } => {
            (!was_canceled).then_some(EventType::InterviewCanceled)
        }
        TruthChange::Deleted => Some(EventType::ApplicationDeleted),
        TruthChange::Restored => Some(EventType::ApplicationRestored),
        TruthChange::StageRenamed { .. } | TruthChange::CandidateEdited { .. } => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_rederives_the_same_ids() {
    let seed = seed();
    println!("crash test seed: {seed} (rerun with HIREHOOK_CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);

    let sim = spawn(SimConfig {
        integrations: 1,
        applications: 400,
        seed: seed % 1_000,
        ..Default::default()
    })
    .await
    .expect("sim");
    let integration = sim.sim().integration_ids()[0].clone();
    let initial_apps: BTreeSet<String> = sim
        .sim()
        .application_ids(&integration)
        .into_iter()
        .collect();
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(5));
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = free_port();
    let mut builder = ConfigBuilder::new(
        &dir.path().join("store"),
        sim.base_url(),
        sim.sim().api_key(),
        vec![integration.clone()],
    );
    builder.initial_sync = "emit";
    builder.poll_interval = "1s";
    builder.shutdown_grace = "2s";
    builder.extra_subscriber_keys = "max_in_flight = 4";
    builder.admin_listen = admin.to_string();
    builder.admin_token = Some(TOKEN.into());
    let builder = builder.subscriber("crm", &receiver.url);
    // Small pages: a baseline is eight pages, each its own commit.
    let toml = builder
        .toml()
        .replacen("[kombo]\n", "[kombo]\npage_size = 50\n", 1)
        + crate::common::oracle::KEEP_DELETED_APPLICATIONS;
    let config_path = dir.path().join("hirehook.toml");
    std::fs::write(&config_path, &toml).expect("config");
    let config = hirehook::config::Config::from_str_with_env(&toml, &config_path, |_| None)
        .expect("config is valid");

    // The reference: same settings, fresh store, never crashes.
    let reference_store = Arc::new(
        Store::open_sled(&dir.path().join("reference"), 16 << 20).expect("reference store"),
    );
    let reference = Syncer::new(
        KomboClient::new(ClientConfig {
            base_url: sim.base_url(),
            api_key: Secret::new(sim.sim().api_key()),
            request_timeout: Duration::from_secs(10),
            limits: Default::default(),
            retry: RetryPolicy {
                max_attempts: 10,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                max_server_wait: Duration::from_millis(50),
            },
        })
        .expect("client"),
        reference_store.clone(),
        SyncSettings::from_config(&config),
    );
    let reference_sync = || async {
        let report = reference
            .sync(&integration, |_| {})
            .await
            .expect("reference sync");
        assert!(report.rejected.is_empty() && report.watermark_advanced);
    };
    reference_sync().await;

    let mut rig = Rig {
        sim,
        receiver,
        dir,
        config_path,
        admin,
        http: reqwest::Client::new(),
        integration: integration.clone(),
        runs: 0,
    };
    let mut kills = Vec::new();

    for round in 0..5u32 {
        let sim = rig.sim.sim().clone();
        if round > 0 {
            // The binary is down and has synced the world as it was: change it.
            let n = 30 + rng.below(40) as usize;
            sim.mutate(n);
            reference_sync().await;
        }
        // Run A: killed at a moment aimed at one window.
        let base = sim.requests_served();
        let started = Utc::now();
        let mut child = rig.start();
        let what = match round {
            0 => {
                // Mid-commit: just after a baseline page (≈50 events) was served.
                let page = 1 + rng.below(6);
                rig.wait_requests(base, page).await;
                let ms = random_pause(&mut rng, 40).await;
                format!("baseline: {ms} ms after page {page} was requested (mid-commit)")
            }
            1 => {
                // Mid-page: the listing's first page is slow and in flight.
                sim.set_faults(FaultConfig {
                    slow_delay: Duration::from_millis(1_500),
                    ..FaultConfig::default()
                })
                .expect("faults");
                sim.script_fault(ScriptedFault::page(&integration, 1, FaultKind::Slow));
                let wait = async {
                    while sim.stats().faults.slowed == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                };
                tokio::time::timeout(LIMIT, wait).await.expect("slow page");
                let ms = random_pause(&mut rng, 200).await;
                format!("{ms} ms into a slow page (mid-page)")
            }
            2 => {
                // Mid-delivery: a slow receiver with requests in flight.
                rig.receiver.set_delay(Duration::from_millis(150));
                let before = rig.receiver.received().len();
                let more = 1 + rng.below(4) as usize;
                rig.receiver
                    .wait_until(LIMIT, |r| r.len() >= before + more)
                    .await;
                let ms = random_pause(&mut rng, 100).await;
                format!("{ms} ms after {more} slow deliveries (mid-delivery)")
            }
            _ => {
                // Anywhere, with random slow pages.
                sim.set_faults(FaultConfig {
                    slow: 0.3,
                    slow_delay: Duration::from_millis(150),
                    ..FaultConfig::default()
                })
                .expect("faults");
                let ms = random_pause(&mut rng, 1_200).await;
                format!("{ms} ms after start (random)")
            }
        };
        kill9(&mut child).await;
        kills.push(format!("round {round} run A: {what}"));
        sim.set_faults(FaultConfig::default()).expect("faults");

        // Run B: completes a sync of this world, then is killed while it delivers.
        let mut child = rig.start();
        rig.wait_synced(&mut child, started).await;
        let ms = random_pause(&mut rng, 300).await;
        kill9(&mut child).await;
        kills.push(format!(
            "round {round} run B: {ms} ms after a complete sync"
        ));
        rig.receiver.set_delay(Duration::from_millis(5));
    }
    println!("kills:\n  {}", kills.join("\n  "));

    let expected: BTreeSet<String> = reference_store
        .events(&EventFilter::default())
        .await
        .expect("reference log")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert!(expected.len() > 400, "{} reference events", expected.len());

    // The final run: no more crashes; everything must arrive.
    rig.receiver.set_delay(Duration::ZERO);
    let started = Utc::now();
    let mut child = rig.start();
    rig.wait_synced(&mut child, started).await;
    rig.wait_status(&mut child, "an empty backlog", |body| {
        body["subscribers"][0]["pending"] == 0
    })
    .await;
    // Everything is recorded as delivered: stop gracefully.
    crate::common::process::signal(child.id().expect("running"), "-TERM");
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(
        status.success(),
        "graceful exit: {status:?}\n{}",
        rig.log_tail()
    );

    let store =
        Store::open_sled(&rig.dir.path().join("store"), 16 << 20).expect("crashed store opens");
    let logged = store.events(&EventFilter::default()).await.expect("log");
    let logged_ids: BTreeSet<String> = logged.iter().map(|e| e.id.clone()).collect();
    assert_eq!(logged_ids.len(), logged.len(), "no id logged twice");
    let missing: Vec<&String> = expected.difference(&logged_ids).collect();
    let extra: Vec<&String> = logged_ids.difference(&expected).collect();
    if !missing.is_empty() || !extra.is_empty() {
        let reference_log = reference_store
            .events(&EventFilter::default())
            .await
            .expect("reference log");
        let describe = |log: &[hirehook::store::EventRecord], app: &str| {
            log.iter()
                .filter(|e| e.application_id == app)
                .map(|e| format!("{}#{} {}", e.event_type, e.sequence, e.id))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let apps: BTreeSet<&str> = reference_log
            .iter()
            .chain(&logged)
            .filter(|e| missing.contains(&&e.id) || extra.contains(&&e.id))
            .map(|e| e.application_id.as_str())
            .collect();
        for app in apps {
            println!(
                "application {app}\n  reference: {}\n  crashed:   {}",
                describe(&reference_log, app),
                describe(&logged, app)
            );
        }
    }
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the crashed store derived other events than the reference: {} missing {missing:?}, {} extra {extra:?}",
        missing.len(),
        extra.len()
    );

    let received = rig.receiver.received();
    assert!(
        received.iter().all(|r| r.verified),
        "every request verifies"
    );
    let mut by_id: BTreeMap<&str, Vec<&Received>> = BTreeMap::new();
    for r in &received {
        by_id.entry(r.id.as_str()).or_default().push(r);
    }
    for id in &logged_ids {
        assert!(by_id.contains_key(id.as_str()), "{id} was never delivered");
    }
    assert!(
        by_id.keys().all(|id| logged_ids.contains(*id)),
        "only logged ids are sent"
    );
    let duplicates = by_id.values().filter(|v| v.len() > 1).count();
    for (id, copies) in &by_id {
        assert!(
            copies.iter().all(|c| c.body == copies[0].body),
            "duplicates of {id} carry the same body"
        );
    }
    println!(
        "{} events, {} requests, {duplicates} ids delivered more than once",
        logged_ids.len(),
        received.len()
    );

    // Order: per application, first receipts in sequence order.
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for r in &received {
        if !seen.insert(r.id.clone()) {
            continue;
        }
        let prev = last.insert(r.application().to_owned(), r.sequence());
        assert!(
            prev.is_none_or(|p| p < r.sequence()),
            "application {}: sequence {} arrived after {prev:?}",
            r.application(),
            r.sequence()
        );
    }

    assert!(
        store
            .deliveries(Some("crm"), Some(DeliveryState::Pending), None)
            .await
            .expect("deliveries")
            .is_empty(),
        "nothing left pending"
    );

    // The simulator's truth, independently of the reference.
    let truth: Vec<TruthEntry> = rig.sim.sim().truth();
    let mut changes: BTreeMap<&str, Vec<&TruthChange>> = BTreeMap::new();
    for entry in &truth {
        if let Some(app) = &entry.application_id {
            changes.entry(app.as_str()).or_default().push(&entry.change);
        }
    }
    let mut types: BTreeMap<&str, BTreeSet<EventType>> = BTreeMap::new();
    for e in &logged {
        let baseline = e.event_type == EventType::ApplicationCreated
            && initial_apps.contains(&e.application_id);
        if !baseline {
            types
                .entry(e.application_id.as_str())
                .or_default()
                .insert(e.event_type);
        }
    }
    for app in types.keys() {
        assert!(
            changes.contains_key(app),
            "application {app} got events but never changed"
        );
    }
    let mut checked = 0;
    for (app, list) in &changes {
        if let [only] = list.as_slice()
            && let Some(want) = expected_event(only)
        {
            checked += 1;
            assert!(
                types.get(app).is_some_and(|t| t.contains(&want)),
                "application {app}: {only:?} should yield {want:?}, got {:?}",
                types.get(app)
            );
        }
    }
    assert!(checked > 20, "{checked} single changes checked");
    assert_eq!(rig.integration, integration);
}
