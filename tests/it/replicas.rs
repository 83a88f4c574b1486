//! Three replicas on one PostgreSQL store, killed, paused and restarted at random moments,
//! are one logical hirehook: the events they derive and deliver are exactly those a single
//! hirehook that never crashes derives.
//!
//! Three `hirehook run` processes share one config file (`[store] backend = "postgres"`,
//! `lease_ttl = "2s"`) and poll four simulated integrations, delivering to one verifying
//! receiver. Between batches of seeded random changes to the simulated world, a seeded RNG
//! picks a disruption: `SIGKILL` a replica (restarted a moment later), `SIGSTOP` one for
//! twice the lease's time to live (its leases move to the others; when it resumes, the
//! store fences it: a commit on a lapsed lease fails), or nothing. The seed is printed;
//! `HIREHOOK_REPLICA_SEED=<n>` replays it.
//!
//! # The oracle
//!
//! As in the crash test, a **reference** (a sled store and a syncer in this process, same
//! settings, never disturbed) syncs after each batch of changes, and the world changes only
//! once the replicas have synced every integration since the last batch (read from the
//! shared store), so both observe the same states and derive the same deterministic ids.
//!
//! At the end: the shared log holds exactly the reference's ids with the same bodies; the
//! receiver got every one, verified, any duplicate byte-identical; per application, first
//! receipts came in `sequence` order; nothing is pending.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{ConfigBuilder, Receiver};
use chrono::Utc;
use hirehook::sim::rng::Rng;
use hirehook::sim::{SimConfig, spawn};
use hirehook::store::{DeliveryState, EventFilter, Store};
use hirehook::sync::{SyncSettings, Syncer};
use tokio::process::{Child, Command};

/// A safety net for every wait, not a timing assertion.
const LIMIT: Duration = Duration::from_secs(90);
const REPLICAS: usize = 3;
const LEASE_TTL: Duration = Duration::from_secs(2);

fn seed() -> u64 {
    std::env::var("HIREHOOK_REPLICA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        })
}

struct Replicas {
    config_path: std::path::PathBuf,
    dir: std::path::PathBuf,
    children: Vec<Option<Child>>,
    starts: usize,
}

impl Replicas {
    fn start(&mut self, i: usize) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("replica-{i}-{}.log", self.starts)))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_hirehook"))
            .args(["run", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("hirehook run starts");
        self.children[i] = Some(child);
    }

    fn pid(&self, i: usize) -> i32 {
        self.children[i]
            .as_ref()
            .and_then(|c| c.id())
            .map(|p| p as i32)
            .expect("running")
    }

    async fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().await.expect("SIGKILL");
        }
    }

    fn signal(&self, i: usize, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid(i).to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal}");
    }

    /// Every replica's log, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            for path in names {
                if path.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    out.push_str(&format!("--- {}\n", path.display()));
                    out.push_str(&lines[lines.len().saturating_sub(25)..].join("\n"));
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Waits until every integration completed a sync that started after `since`.
async fn wait_synced(store: &Store, integrations: &[String], since: chrono::DateTime<Utc>) -> bool {
    let wait = async {
        loop {
            let mut all = true;
            for id in integrations {
                let state = store.sync_state(id).await.expect("sync state");
                if !(state.baseline_done
                    && state.last_error.is_none()
                    && state.watermark.is_some_and(|w| w > since))
                {
                    all = false;
                }
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(LIMIT, wait).await.is_ok()
}

/// A webhook body without its detection times.
fn without_times(body: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
    if let Some(o) = v.as_object_mut() {
        o.remove("timestamp");
    }
    if let Some(data) = v.get_mut("data").and_then(|d| d.as_object_mut()) {
        data.remove("detected_at");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_killed_and_paused_deliver_exactly_what_one_hirehook_derives() {
    let Some(database) = hirehook::store::postgres::test_database().await else {
        return;
    };
    let seed = seed();
    println!("replica test seed: {seed} (rerun with HIREHOOK_REPLICA_SEED={seed})");
    let mut rng = Rng::new(seed);

    let sim = spawn(SimConfig {
        integrations: 4,
        applications: 40,
        seed: seed % 1_000,
        ..Default::default()
    })
    .await
    .expect("sim");
    let integrations = sim.sim().integration_ids();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut builder = ConfigBuilder::new(
        &dir.path().join("unused"),
        sim.base_url(),
        sim.sim().api_key(),
        integrations.clone(),
    )
    .with_database(Some(database.clone()));
    builder.initial_sync = "emit";
    builder.poll_interval = "1s";
    builder.shutdown_grace = "1s";
    builder.extra_subscriber_keys = "max_in_flight = 4";
    let builder = builder.subscriber("crm", &receiver.url);
    let toml = builder
        .toml()
        .replace("lease_ttl = \"3s\"", "lease_ttl = \"2s\"");
    let config_path = dir.path().join("hirehook.toml");
    std::fs::write(&config_path, &toml).expect("config");
    let config = hirehook::config::Config::from_str_with_env(&toml, &config_path, |_| None)
        .expect("config is valid");
    assert_eq!(config.store.lease_ttl, LEASE_TTL);

    // The reference: sled, same settings, never disturbed.
    let reference_store =
        Arc::new(Store::open_sled(&dir.path().join("reference"), 16 << 20).expect("reference"));
    let mut reference_config = config.clone();
    reference_config.kombo.request_timeout = Duration::from_secs(10);
    let reference = Syncer::new(
        hirehook::ats::KomboClient::new(reference_config.kombo.client_config()).expect("client"),
        reference_store.clone(),
        SyncSettings::from_config(&reference_config),
    );
    let reference_sync = || async {
        for id in &integrations {
            let report = reference.sync(id, |_| {}).await.expect("reference sync");
            assert!(report.rejected.is_empty() && report.watermark_advanced);
        }
    };
    reference_sync().await;

    // The shared store, as an operator sees it.
    let shared = Store::open(&config.store)
        .await
        .expect("the shared store opens")
        .unfenced();

    let mut replicas = Replicas {
        config_path,
        dir: dir.path().to_owned(),
        children: (0..REPLICAS).map(|_| None).collect(),
        starts: 0,
    };
    let mut since = Utc::now();
    for i in 0..REPLICAS {
        replicas.start(i);
    }
    let mut disruptions = Vec::new();
    for round in 0..6u32 {
        assert!(
            wait_synced(&shared, &integrations, since).await,
            "round {round}: every integration synced since the last change\n{}",
            replicas.logs()
        );
        // Everyone has seen the world as it is: change it, and let the reference see it.
        let n = 20 + rng.below(30) as usize;
        sim.sim().mutate(n);
        since = Utc::now();
        reference_sync().await;
        // A disruption at a random moment while the replicas pick the changes up.
        tokio::time::sleep(Duration::from_millis(rng.below(600))).await;
        let victim = rng.below(REPLICAS as u64) as usize;
        match rng.below(3) {
            0 => {
                replicas.kill9(victim).await;
                let down = rng.below(800);
                tokio::time::sleep(Duration::from_millis(down)).await;
                replicas.start(victim);
                disruptions.push(format!(
                    "round {round}: SIGKILL replica {victim}, down {down} ms"
                ));
            }
            1 => {
                // Paused past its lease: the others take its integrations; resumed, it
                // finds its commits fenced and its leases gone, and rejoins.
                replicas.signal(victim, "-STOP");
                tokio::time::sleep(LEASE_TTL * 2).await;
                replicas.signal(victim, "-CONT");
                disruptions.push(format!("round {round}: SIGSTOP replica {victim} for 4 s"));
            }
            _ => disruptions.push(format!("round {round}: nothing")),
        }
        if let Some(last) = disruptions.last() {
            println!("{last}");
        }
    }
    println!("disruptions:\n  {}", disruptions.join("\n  "));
    assert!(
        wait_synced(&shared, &integrations, since).await,
        "the last changes synced\n{}",
        replicas.logs()
    );
    // Every logged event delivered.
    let drained = async {
        loop {
            let pending = shared
                .deliveries(None, Some(DeliveryState::Pending), None)
                .await
                .expect("deliveries");
            if pending.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(
        tokio::time::timeout(LIMIT, drained).await.is_ok(),
        "nothing left pending\n{}",
        replicas.logs()
    );
    for i in 0..REPLICAS {
        replicas.kill9(i).await;
    }

    // The shared log is the reference's, id for id and byte for byte.
    let expected: BTreeMap<String, Vec<u8>> = reference_store
        .events(&EventFilter::default())
        .await
        .expect("reference log")
        .into_iter()
        .map(|e| (e.id, e.body))
        .collect();
    let logged = shared
        .events(&EventFilter::default())
        .await
        .expect("shared log");
    let seqs: Vec<u64> = logged.iter().map(|e| e.log_seq).collect();
    assert_eq!(
        seqs,
        (1..=logged.len() as u64).collect::<Vec<_>>(),
        "log sequences without gaps"
    );
    let logged: BTreeMap<String, Vec<u8>> = logged.into_iter().map(|e| (e.id, e.body)).collect();
    let missing: Vec<&String> = expected
        .keys()
        .filter(|id| !logged.contains_key(*id))
        .collect();
    let extra: Vec<&String> = logged
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?} ({} expected)",
        expected.len()
    );
    // The same bodies, but for when each run detected the change (the reference and the
    // replicas saw it at different moments): `timestamp` and `data.detected_at`.
    let differing: Vec<&String> = expected
        .iter()
        .filter(|(id, body)| logged.get(*id).map(|b| without_times(b)) != Some(without_times(body)))
        .map(|(id, _)| id)
        .collect();
    assert!(differing.is_empty(), "bodies differ: {differing:?}");
    assert!(expected.len() > 160, "{} events", expected.len());

    // The receiver got every one, verified; a duplicate is byte-identical.
    let received = receiver.received();
    assert!(
        received.iter().all(|r| r.verified),
        "every signature verifies"
    );
    let mut first: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for r in &received {
        match first.get(&r.id) {
            Some(body) => assert_eq!(body, &r.body, "a duplicate of {} differs", r.id),
            None => {
                first.insert(r.id.clone(), r.body.clone());
            }
        }
    }
    let got: BTreeSet<&String> = received
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| &r.id)
        .collect();
    let want: BTreeSet<&String> = expected.keys().collect();
    assert_eq!(got, want, "every event delivered");
    // Per application, first receipts in sequence order.
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for r in &received {
        if !seen.insert(r.id.clone()) {
            continue;
        }
        let app = r.application().to_owned();
        let seq = r.sequence();
        if let Some(prev) = last.get(&app) {
            assert!(seq > *prev, "{app}: sequence {seq} arrived after {prev}");
        }
        last.insert(app, seq);
    }
}
