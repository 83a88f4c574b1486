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
//!
//! A second test pauses one replica in the middle of a sync, deterministically: its
//! request to Kombo is held by the simulator, it is `SIGSTOP`ped while waiting and
//! answered while stopped, the world changes again, a second replica starts, takes the
//! lapsed lease and syncs the world as it is; when the first resumes, the page it had been
//! answered (an older view of the world) would undo those changes if it were committed. The store refuses it: the paused replica logs the lease-lost refusal,
//! counts it in `hirehook_lease_lost_total`, stays ready, and the log is exactly what one
//! undisturbed hirehook derives.

use std::process::Stdio;
use std::time::Duration;

use crate::common::oracle::{self, Reference};
use crate::common::{ConfigBuilder, Receiver};
use chrono::Utc;
use hirehook::sim::rng::Rng;
use hirehook::sim::{SimConfig, spawn};
use hirehook::store::Store;
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
    oracle::wait_synced(store, integrations, since, LIMIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_killed_and_paused_deliver_exactly_what_one_hirehook_derives() {
    let Some(database) = hirehook::store::postgres::test_database().await else {
        return;
    };
    let seed = seed();
    println!("replica test seed: {seed} (rerun with HIREHOOK_REPLICA_SEED={seed})");
    let mut rng = Rng::new(seed);

    let (sim, integrations, receiver, dir) = world(4, 40, seed % 1_000).await;
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
        .replace("lease_ttl = \"3s\"", "lease_ttl = \"2s\"")
        + oracle::KEEP_DELETED_APPLICATIONS;
    let config_path = dir.path().join("hirehook.toml");
    std::fs::write(&config_path, &toml).expect("config");
    let config = hirehook::config::Config::from_str_with_env(&toml, &config_path, |_| None)
        .expect("config is valid");
    assert_eq!(config.store.lease_ttl, LEASE_TTL);

    // The reference: sled, same settings, never disturbed.
    let reference = Reference::new(&config, dir.path());
    let reference_sync = || reference.sync();
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
    assert!(
        oracle::wait_drained(&shared, LIMIT).await,
        "nothing left pending\n{}",
        replicas.logs()
    );
    for i in 0..REPLICAS {
        replicas.kill9(i).await;
    }

    // The shared log is the reference's, id for id and byte for byte (but for detection
    // times); the receiver got each, verified, in order per application.
    let expected = reference.expected().await;
    if std::env::var_os("HIREHOOK_REPLICA_LOGS").is_some() {
        println!("{}", replicas_logs_full(dir.path(), "replica-"));
    }
    oracle::assert_log_is_the_reference(&shared, &expected).await;
    assert!(expected.len() > 160, "{} events", expected.len());
    oracle::assert_received_exactly(&receiver, &expected);
}

/// The integration's lease holder as the store says (its replica id names its process:
/// `host:pid:suffix`), and whether it is unexpired.
async fn lease_holder(store: &Store, integration: &str) -> Option<(String, bool)> {
    holder_of(store.leases().await.ok()?, integration)
}

/// `key`'s holder in a list of leases, and whether its lease is unexpired.
fn holder_of(
    leases: Vec<(String, String, hirehook::ats::Timestamp)>,
    key: &str,
) -> Option<(String, bool)> {
    leases
        .into_iter()
        .find(|(k, _, _)| k == key)
        .map(|(_, holder, expires)| (holder, expires > Utc::now()))
}

/// Whether a replica id is process `pid`'s.
fn is_process(holder: &str, pid: u32) -> bool {
    holder.split(':').nth(1) == Some(pid.to_string().as_str())
}

/// Polls `done` every 20 ms; panics with `what` and the logs after [`LIMIT`].
async fn until(what: &str, logs: impl Fn() -> String, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "never: {what}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_paused_mid_sync_past_its_lease_commits_nothing_when_it_resumes() {
    use hirehook::sim::faults::{FaultConfig, FaultKind, ScriptedFault};

    let Some(database) = hirehook::store::postgres::test_database().await else {
        return;
    };
    let (sim, integrations, receiver, dir) = world(1, 30, 21).await;
    let integration = integrations[0].clone();
    // Each replica's admin API on a port of its own choosing (port 0): A's address is read
    // from its log. (A port picked free at the start could be taken, by another test's
    // connection, before B starts.)
    let mut paths = Vec::new();
    let mut config = None;
    for i in 0..2 {
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
        builder.admin_listen = "127.0.0.1:0".to_owned();
        let builder = builder.subscriber("crm", &receiver.url);
        // The paused replica's request to Kombo must not time out while it is stopped.
        let toml = builder
            .toml()
            .replace("lease_ttl = \"3s\"", "lease_ttl = \"2s\"")
            .replace("request_timeout = \"5s\"", "request_timeout = \"60s\"")
            + oracle::KEEP_DELETED_APPLICATIONS;
        let path = dir.path().join(format!("replica-{i}.toml"));
        std::fs::write(&path, &toml).expect("config");
        let parsed = hirehook::config::Config::from_str_with_env(&toml, &path, |_| None)
            .expect("config is valid");
        assert_eq!(parsed.store.lease_ttl, LEASE_TTL);
        config.get_or_insert(parsed);
        paths.push(path);
    }
    let config = config.expect("a config");
    let reference = Reference::new(&config, dir.path());
    reference.sync().await;
    let shared = Store::open(&config.store)
        .await
        .expect("the shared store opens")
        .unfenced();
    let mut replicas = Replicas {
        config_path: paths[0].clone(),
        dir: dir.path().to_owned(),
        children: vec![None, None],
        starts: 0,
    };
    let logs = || replicas_logs(dir.path());

    // A polls alone: it holds the lease and synced the baseline.
    replicas.start(0);
    let a = replicas.pid(0) as u32;
    let since = Utc::now();
    assert!(
        wait_synced(&shared, &integrations, since).await,
        "{}",
        logs()
    );
    until("A holds the lease", logs, async || {
        lease_holder(&shared, &integration)
            .await
            .is_some_and(|(holder, live)| live && is_process(&holder, a))
    })
    .await;
    // A's next request for the page is held by the simulator; A is stopped while waiting.
    sim.sim()
        .set_faults(FaultConfig {
            slow_delay: Duration::from_millis(500),
            script: vec![ScriptedFault::page(&integration, 1, FaultKind::Slow)],
            ..FaultConfig::default()
        })
        .expect("faults");
    let pages_before = sim.sim().stats().integrations[&integration].pages;
    until("A's request arrived", logs, async || {
        sim.sim().faults().script.is_empty()
    })
    .await;
    replicas.signal(0, "-STOP");
    // The page A will be answered shows these changes ...
    sim.sim().mutate(12);
    until("the simulator answered A", logs, async || {
        sim.sim().stats().integrations[&integration].pages > pages_before
    })
    .await;
    // ... and not these. The reference sees both at once, as B will: B starts only now,
    // so it cannot have synced the world between the two batches.
    sim.sim().mutate(12);
    let since = Utc::now();
    reference.sync().await;
    replicas.config_path = paths[1].clone();
    replicas.start(1);
    let b = replicas.pid(1) as u32;
    // A's lease lapses; B takes it and syncs the world as it is now.
    until("B holds the lease", logs, async || {
        lease_holder(&shared, &integration)
            .await
            .is_some_and(|(holder, live)| live && is_process(&holder, b))
    })
    .await;
    assert!(
        wait_synced(&shared, &integrations, since).await,
        "B synced the changes\n{}",
        logs()
    );
    let logged_before = shared
        .events(&hirehook::store::EventFilter::default())
        .await
        .expect("log")
        .len();

    // A resumes and commits its page: an older view, which would undo B's changes.
    replicas.signal(0, "-CONT");
    let refusal = format!(
        "{}",
        hirehook::store::StoreError::LeaseLost {
            integration: integration.clone()
        }
    );
    until("A logged the refusal", logs, async || {
        replicas_logs_full(dir.path(), "replica-0-").contains(&refusal)
    })
    .await;
    let admin = admin_address(&dir.path().join("replica-0-1.log")).await;
    let http = reqwest::Client::new();
    let metrics = metrics_of(&http, &admin).await;
    let counted = format!("hirehook_lease_lost_total{{integration=\"{integration}\"}} 1");
    assert!(
        metrics.lines().any(|l| l == counted),
        "A counted one refused commit ({counted}):\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("lease_lost"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The refusal is not a store failure: A is ready (B keeps the integration fresh).
    until("A's /readyz is 200", logs, async || {
        http.get(format!("http://{admin}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    // B keeps the lease; A rejoined without it.
    let (holder, _) = lease_holder(&shared, &integration).await.expect("a lease");
    assert!(is_process(&holder, b), "{holder}");
    assert_eq!(
        shared
            .events(&hirehook::store::EventFilter::default())
            .await
            .expect("log")
            .len(),
        logged_before,
        "nothing logged since A resumed"
    );

    // The log is exactly what one undisturbed hirehook derives, and all of it delivered.
    assert!(
        oracle::wait_drained(&shared, LIMIT).await,
        "nothing pending\n{}",
        logs()
    );
    let expected = reference.expected().await;
    oracle::assert_log_is_the_reference(&shared, &expected).await;
    oracle::assert_received_exactly(&receiver, &expected);
    for i in 0..2 {
        replicas.kill9(i).await;
    }
}

/// The admin API's address, from the "admin API listening" line of a daemon's log.
async fn admin_address(log: &std::path::Path) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find(|l| l.contains("admin API listening"))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
        {
            return addr.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no admin address in {}:\n{text}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The tails of the replicas' logs in `dir`, for failure messages.
fn replicas_logs(dir: &std::path::Path) -> String {
    Replicas {
        config_path: dir.to_owned(),
        dir: dir.to_owned(),
        children: Vec::new(),
        starts: 0,
    }
    .logs()
}

/// The whole logs of the replica runs whose file names start with `prefix`.
fn replicas_logs_full(dir: &std::path::Path, prefix: &str) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".log") {
            out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    out
}

/// A simulator with `integrations` of `applications` each (from `seed`), its integration
/// ids, a verifying receiver and a work directory.
async fn world(
    integrations: usize,
    applications: usize,
    seed: u64,
) -> (
    hirehook::sim::RunningSim,
    Vec<String>,
    Receiver,
    tempfile::TempDir,
) {
    let sim = spawn(SimConfig {
        integrations,
        applications,
        seed,
        ..Default::default()
    })
    .await
    .expect("sim");
    let integrations = sim.sim().integration_ids();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    (sim, integrations, receiver, dir)
}

/// The subscriber's delivery lease holder as the store says, and whether it is unexpired.
async fn delivery_holder(store: &Store, subscriber: &str) -> Option<(String, bool)> {
    holder_of(store.delivery_leases().await.ok()?, subscriber)
}

/// A replica's `/metrics` page.
async fn metrics_of(http: &reqwest::Client, admin: &str) -> String {
    http.get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("body")
}

/// The attempts a replica made to `subscriber`, from its `/metrics`.
async fn attempts_of(http: &reqwest::Client, admin: &str, subscriber: &str) -> u64 {
    let text = metrics_of(http, admin).await;
    let label = format!("subscriber=\"{subscriber}\"");
    text.lines()
        .filter(|l| l.starts_with("hirehook_delivery_attempts_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// One replica at a time claims a subscriber's deliveries (its delivery lease), and the
/// work spreads: with one integration and one subscriber, a second replica joining takes
/// the subscriber while the first keeps polling; every later delivery is the second's.
/// When that one is killed, the first takes the subscriber back and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_delivers_to_a_subscriber_and_a_survivor_takes_over() {
    let Some(database) = hirehook::store::postgres::test_database().await else {
        return;
    };
    let (sim, integrations, receiver, dir) = world(1, 20, 33).await;
    let integration = integrations[0].clone();
    let mut builder = ConfigBuilder::new(
        &dir.path().join("unused"),
        sim.base_url(),
        sim.sim().api_key(),
        integrations.clone(),
    )
    .with_database(Some(database));
    builder.initial_sync = "emit";
    builder.poll_interval = "200ms";
    builder.shutdown_grace = "1s";
    let builder = builder.subscriber("crm", &receiver.url);
    let toml = builder
        .toml()
        .replace("lease_ttl = \"3s\"", "lease_ttl = \"2s\"");
    let path = dir.path().join("replicas.toml");
    std::fs::write(&path, &toml).expect("config");
    let config = hirehook::config::Config::from_str_with_env(&toml, &path, |_| None)
        .expect("config is valid");
    assert_eq!(config.store.lease_ttl, LEASE_TTL);
    let shared = Store::open(&config.store)
        .await
        .expect("the shared store opens")
        .unfenced();
    let mut replicas = Replicas {
        config_path: path,
        dir: dir.path().to_owned(),
        children: vec![None, None],
        starts: 0,
    };
    let logs = || replicas_logs(dir.path());
    let http = reqwest::Client::new();
    // Changes `n` applications, waits until the replicas synced them and delivered all.
    let change_and_settle = async |n: usize| {
        sim.sim().mutate(n);
        let since = Utc::now();
        assert!(
            wait_synced(&shared, &integrations, since).await,
            "{}",
            logs()
        );
        assert!(oracle::wait_drained(&shared, LIMIT).await, "{}", logs());
    };
    let logged = async || {
        shared
            .events(&hirehook::store::EventFilter::default())
            .await
            .expect("log")
            .into_iter()
            .map(|e| e.id)
            .collect::<std::collections::BTreeSet<_>>()
    };

    // A alone: it polls and delivers.
    replicas.start(0);
    let a = replicas.pid(0) as u32;
    let a_admin = admin_address(&dir.path().join("replica-0-1.log")).await;
    until("A delivered the initial sync", logs, async || {
        let n = logged().await.len();
        n >= 20 && receiver.delivered().len() >= n
    })
    .await;
    let (holder, _) = delivery_holder(&shared, "crm").await.expect("a lease");
    assert!(is_process(&holder, a), "{holder}");

    // B joins: A keeps the integration and gives the subscriber back; B takes it.
    replicas.start(1);
    let b = replicas.pid(1) as u32;
    let b_admin = admin_address(&dir.path().join("replica-1-2.log")).await;
    until("B delivers to crm", logs, async || {
        delivery_holder(&shared, "crm")
            .await
            .is_some_and(|(holder, live)| live && is_process(&holder, b))
    })
    .await;
    let (holder, _) = lease_holder(&shared, &integration).await.expect("a lease");
    assert!(is_process(&holder, a), "A still polls: {holder}");
    assert!(oracle::wait_drained(&shared, LIMIT).await, "{}", logs());
    let a_before = attempts_of(&http, &a_admin, "crm").await;
    let b_before = attempts_of(&http, &b_admin, "crm").await;
    let logged_before = logged().await.len() as u64;

    // Changes: A derives the events, B sends every one of them.
    change_and_settle(15).await;
    let new = logged().await.len() as u64 - logged_before;
    assert!(new > 0, "the changes made events");
    assert_eq!(
        attempts_of(&http, &a_admin, "crm").await,
        a_before,
        "A made no attempt to crm\n{}",
        logs()
    );
    assert_eq!(
        attempts_of(&http, &b_admin, "crm").await - b_before,
        new,
        "B made one attempt per new event"
    );

    // B dies: A takes crm back and delivers what is derived next.
    replicas.kill9(1).await;
    until("A delivers to crm again", logs, async || {
        delivery_holder(&shared, "crm")
            .await
            .is_some_and(|(holder, live)| live && is_process(&holder, a))
    })
    .await;
    change_and_settle(15).await;
    let received: std::collections::BTreeSet<String> =
        receiver.delivered().into_iter().map(|r| r.id).collect();
    let missing: Vec<String> = logged().await.difference(&received).cloned().collect();
    assert!(missing.is_empty(), "never received: {missing:?}");
    replicas.kill9(0).await;
}
