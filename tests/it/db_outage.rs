//! The PostgreSQL store going away under a running `hirehook run`, and coming back.
//!
//! The daemon runs as a process against a database of its own scratch server (the test
//! stops and starts that server: the per-process one serves the other tests). Twice, while
//! changes flow and a delivery is in flight, the server stops for longer than the leases
//! live: first in order (`pg_ctl stop -m fast`), then as a crash (`-m immediate`). While it
//! is away: `/readyz` answers 503 naming the database and the failing operations, never the
//! password; the process is alive, did not panic, and retries with backoff (its error
//! lines stay few); the world changes meanwhile. Once the server is back: every
//! integration syncs again and further changes flow. After the orderly stop, no event was
//! sent twice: the attempt that finished while the database was away was recorded when it
//! came back. At the end, against a never-disturbed reference (see
//! [`crate::common::oracle`]), the log holds exactly the reference's ids and the receiver
//! got each of them, verified, any duplicate (a crash may lose the last moment of
//! recorded attempts) byte-identical under the same id; nothing is left pending and
//! `/readyz` is 200 again.

use std::time::{Duration, Instant};

use chrono::Utc;
use hirehook::sim::{SimConfig, spawn};
use hirehook::store::Store;
use hirehook::store::postgres::scratch::{SCRATCH_PASSWORD, ScratchServer, StopMode};
use tokio::process::Child;

use crate::common::oracle::{
    Reference, assert_log_is_the_reference, assert_received_exactly, wait_drained, wait_synced,
};
use crate::common::process::{free_port, own_server, start_daemon, tail};
use crate::common::{ConfigBuilder, Receiver};

/// A safety net for every wait, not a timing assertion.
const LIMIT: Duration = Duration::from_secs(90);
/// The builder's `lease_ttl`.
const LEASE_TTL: Duration = Duration::from_secs(3);

/// `GET /readyz`: status and body (None while the admin API does not answer).
async fn readyz(http: &reqwest::Client, admin: &str) -> Option<(u16, serde_json::Value)> {
    let response = http
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body = response.json().await.ok()?;
    Some((status, body))
}

/// Polls `/readyz` until `done` holds for its answer; returns that answer, or panics after
/// `limit` with the last one.
async fn readyz_until(
    http: &reqwest::Client,
    admin: &str,
    limit: Duration,
    done: impl Fn(u16, &serde_json::Value) -> bool,
    log: &std::path::Path,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        if let Some((status, body)) = readyz(http, admin).await {
            if done(status, &body) {
                return body;
            }
            last = Some((status, body));
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never got there; last answer {last:?}\n{}",
            tail(log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lines of `log` that contain `needle`.
fn count(log: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// What an outage works on.
struct World<'a> {
    server: &'a ScratchServer,
    sim: &'a hirehook::sim::RunningSim,
    reference: &'a Reference,
    shared: &'a Store,
    receiver: &'a Receiver,
    http: reqwest::Client,
    admin: String,
    log: std::path::PathBuf,
    integrations: Vec<String>,
    /// `host:port/database` of the store.
    target: String,
}

impl World<'_> {
    /// A batch of changes, seen by the reference at once and synced by the daemon before
    /// this returns.
    async fn change_and_sync(&self) {
        self.sim.sim().mutate(25);
        let since = Utc::now();
        self.reference.sync().await;
        assert!(
            wait_synced(self.shared, &self.integrations, since, LIMIT).await,
            "the changes synced\n{}",
            tail(&self.log)
        );
    }

    /// Stops the database (`mode`) while a delivery is in flight, checks what the daemon
    /// shows and does while it is away, starts it again and waits until the daemon synced
    /// what changed meanwhile. Returns how many requests were answered while it was away.
    async fn outage(&self, daemon: &mut Child, mode: StopMode) -> usize {
        // The receiver holds requests: a delivery is in flight when the database goes,
        // and its attempt ends (answered once the database is gone) while it is away.
        self.receiver.hold();
        self.change_and_sync().await;
        let deadline = Instant::now() + LIMIT;
        while self.receiver.arrived() <= self.receiver.received().len() {
            assert!(Instant::now() < deadline, "no delivery in flight");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let answered_at_stop = self.receiver.received().len();
        self.server.stop(mode).expect("stop PostgreSQL");
        let stopped = Instant::now();
        self.receiver.release();
        let noise_before = count(&self.log, " ERROR ") + count(&self.log, " WARN ");
        // The world changes meanwhile; the reference sees it, the daemon will once it can.
        self.sim.sim().mutate(25);
        let since = Utc::now();
        self.reference.sync().await;

        // /readyz says why: the store, naming the database and each failing operation,
        // never the password.
        let body = readyz_until(
            &self.http,
            &self.admin,
            LIMIT,
            |status, body| {
                let store = body["store"].as_str().unwrap_or("");
                status == 503
                    && store.contains(&self.target)
                    && self
                        .integrations
                        .iter()
                        .all(|id| store.contains(&format!("sync of {id}")))
            },
            &self.log,
        )
        .await;
        assert_eq!(body["status"], "not_ready");
        let shown = body.to_string();
        assert!(!shown.contains(SCRATCH_PASSWORD), "{shown}");
        assert!(shown.contains("PostgreSQL at"), "{shown}");
        // The outage outlasts the leases (a scenario's length, not a wait for luck).
        tokio::time::sleep((LEASE_TTL * 2).saturating_sub(stopped.elapsed())).await;
        assert!(
            daemon.try_wait().expect("status").is_none(),
            "the daemon is still running\n{}",
            tail(&self.log)
        );
        // Not spinning: each poller retries about once a second (its poll interval), each
        // worker backs off to 10 s, the lease loop runs every second, the wake-up
        // connection backs off to 5 s. A loop without a wait would log thousands of lines.
        let noise = count(&self.log, " ERROR ") + count(&self.log, " WARN ") - noise_before;
        let seconds = stopped.elapsed().as_secs_f64();
        assert!(
            (noise as f64) < 30.0 * seconds,
            "{noise} error lines in {seconds:.1} s of outage\n{}",
            tail(&self.log)
        );
        assert!(noise > 0, "the outage was noticed\n{}", tail(&self.log));
        // Nothing is claimed without the database: what was answered since was in flight
        // when it went (max_in_flight = 2).
        let answered_away = self.receiver.received().len() - answered_at_stop;
        assert!(answered_away <= 2, "{answered_away} answered while away");

        // It comes back: the leases, lapsed meanwhile, are the daemon's again, and the syncs
        // catch up (a sync commits only under its lease: fencing).
        self.server.start_again().expect("start PostgreSQL again");
        assert!(
            wait_synced(self.shared, &self.integrations, since, LIMIT).await,
            "every integration synced after the database came back\n{}",
            tail(&self.log)
        );
        let pid = daemon.id().expect("running").to_string();
        let leases = self.shared.leases().await.expect("leases");
        assert_eq!(leases.len(), self.integrations.len(), "{leases:?}");
        for (integration, holder, expires) in &leases {
            assert_eq!(
                holder.split(':').nth(1),
                Some(pid.as_str()),
                "{integration} is the daemon's"
            );
            assert!(*expires > Utc::now(), "{integration}'s lease renewed");
        }
        answered_away
    }

    /// Waits until every event of the reference was delivered and nothing is pending.
    async fn wait_all_delivered(&self) {
        let expected = self.reference.expected().await;
        self.receiver
            .wait_until(LIMIT, |r| {
                let got: std::collections::BTreeSet<&str> = r
                    .iter()
                    .filter(|x| x.answered == 200)
                    .map(|x| x.id.as_str())
                    .collect();
                expected.keys().all(|id| got.contains(id.as_str()))
            })
            .await;
        assert!(
            wait_drained(self.shared, LIMIT).await,
            "nothing left pending\n{}",
            tail(&self.log)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_pauses_work_and_nothing_is_lost_or_renamed_when_it_returns() {
    let Some(server) = own_server() else {
        return;
    };
    let url = server.create_database("outage").await.expect("a database");

    let sim = spawn(SimConfig {
        integrations: 2,
        applications: 40,
        seed: 13,
        ..Default::default()
    })
    .await
    .expect("sim");
    let integrations = sim.sim().integration_ids();
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(40));
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = format!("127.0.0.1:{}", free_port());
    let mut builder = ConfigBuilder::new(
        &dir.path().join("unused"),
        sim.base_url(),
        sim.sim().api_key(),
        integrations.clone(),
    )
    .with_database(Some(url.clone()));
    builder.initial_sync = "emit";
    builder.poll_interval = "1s";
    builder.shutdown_grace = "2s";
    builder.extra_subscriber_keys = "max_in_flight = 2";
    builder.admin_listen = admin.clone();
    let builder = builder.subscriber("crm", &receiver.url);
    // Room for a held request to outlast stopping the database without timing out.
    let toml = builder
        .toml()
        .replace("timeout = \"2s\"", "timeout = \"15s\"")
        + crate::common::oracle::KEEP_DELETED_APPLICATIONS;
    let config_path = dir.path().join("hirehook.toml");
    std::fs::write(&config_path, &toml).expect("config");
    let config = hirehook::config::Config::from_str_with_env(&toml, &config_path, |_| None)
        .expect("config is valid");
    assert_eq!(config.store.lease_ttl, LEASE_TTL);
    assert_eq!(config.subscribers[0].timeout, Duration::from_secs(15));
    let log = dir.path().join("daemon.log");

    let reference = Reference::new(&config, dir.path());
    reference.sync().await;
    // The store as an operator sees it (its connections break and come back too).
    let shared = Store::open(&config.store)
        .await
        .expect("the store opens")
        .unfenced();
    let world = World {
        server: &server,
        sim: &sim,
        reference: &reference,
        shared: &shared,
        receiver: &receiver,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        admin: admin.clone(),
        log: log.clone(),
        integrations: integrations.clone(),
        target: format!("127.0.0.1:{}/outage", server.port()),
    };

    let mut daemon = start_daemon(&config_path, &log);
    let since = Utc::now();
    assert!(
        wait_synced(&shared, &integrations, since, LIMIT).await,
        "the first syncs\n{}",
        tail(&log)
    );
    readyz_until(&world.http, &admin, LIMIT, |s, _| s == 200, &log).await;

    // An orderly stop: every recorded attempt survives it, so nothing is sent twice (the
    // attempt that ended while the database was away is recorded when it returns).
    let answered_away = world.outage(&mut daemon, StopMode::Fast).await;
    assert!(
        answered_away > 0,
        "an attempt ended while the database was away"
    );
    world.change_and_sync().await;
    world.wait_all_delivered().await;
    let received = receiver.received();
    let ids: std::collections::BTreeSet<&str> = received.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids.len(),
        received.len(),
        "no event sent twice across an orderly outage\n{}",
        tail(&log)
    );

    // A crash of the database: claims and attempts committed in its last moments may be
    // lost (they commit without waiting for the disk), and those are made again under the
    // same id.
    world.outage(&mut daemon, StopMode::Immediate).await;
    world.change_and_sync().await;
    world.wait_all_delivered().await;
    readyz_until(&world.http, &admin, LIMIT, |s, _| s == 200, &log).await;
    assert!(
        daemon.try_wait().expect("status").is_none(),
        "still running\n{}",
        tail(&log)
    );
    crate::common::process::signal(daemon.id().expect("running"), "-TERM");
    let status = tokio::time::timeout(LIMIT, daemon.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(status.success(), "{status:?}\n{}", tail(&log));

    let expected = reference.expected().await;
    assert_log_is_the_reference(&shared, &expected).await;
    assert_received_exactly(&receiver, &expected);
    assert!(expected.len() > 120, "{} events", expected.len());
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains("panicked"), "{}", tail(&log));
    assert!(
        !text.contains(SCRATCH_PASSWORD),
        "the log never shows the password"
    );
    assert!(
        text.contains(&world.target),
        "the log names the database it cannot reach"
    );
}
