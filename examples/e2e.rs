//! End to end, as users run it: `hirehook run` as its own process (or several replicas),
//! the simulator in another, and a receiver in a third; CPU and memory of each from `/proc`.
//!
//! ```sh
//! cargo build --release --bin hirehook --example e2e
//! target/release/examples/e2e throughput --events 50000 --subscribers 1 --runs 3
//! target/release/examples/e2e throughput --backend postgres --replicas 3
//! target/release/examples/e2e latency --events-per-second 100 --seconds 30
//! ```
//!
//! **throughput**: the simulator serves `--events` applications and no changes; hirehook
//! starts with `initial_sync = "emit"`, so each application is one `application_created`
//! event per subscriber. The rate is deliveries over the time from the receiver's first
//! request to its last; hirehook's CPU is utime + stime of its process(es) over the whole
//! run (start-up included), divided by the deliveries. The receiver's ceiling is measured
//! in the same run, before hirehook starts: a bare reqwest sender in this process, 64
//! requests in flight, against the same receiver process.
//!
//! **latency**: the simulator changes `--events-per-second` applications a second, hirehook
//! polls every `--poll-ms`; hirehook logs the ids of each page's events right after the
//! flush that made them durable (`hirehook::durable` at debug, JSON logs with microsecond
//! timestamps), and the receiver notes when each `webhook-id` arrived: commit → receiver
//! per event, on one machine's clock, across processes. It also prints the latency of the
//! events made durable from `--warmup-seconds` on (the steady state: the first incremental
//! poll carries the changes made while the daemon started, sent at once through
//! connections still being opened), of the first and the last event of each page,
//! hirehook's and the simulator's CPU over the run,
//! and, before the runs, a floor: a bare reqwest sender in this process posting bursts of
//! 4 to the same receiver, timed the same way.
//!
//! With `--backend postgres` a throwaway PostgreSQL 15 is started here (initdb + pg_ctl,
//! default settings, fsync on), a fresh database per run; its CPU (the postmaster and every
//! backend, exited ones included) is printed beside hirehook's. Method and results:
//! BENCHMARKS.md.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[path = "common/procs.rs"]
mod procs;
#[path = "common/stats.rs"]
mod stats;
use procs::{SimProcess, first_line, hirehook_binary, start_sim};
use stats::percentiles;

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Clone, clap::Args)]
struct Common {
    /// Store backend: sled or postgres.
    #[arg(long, default_value = "sled")]
    backend: String,
    /// hirehook processes sharing the store (postgres only).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Subscribers, each a path on the one receiver.
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// `max_in_flight` of each subscriber.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Repeat the whole run (fresh store each time) this many times.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// With postgres: print the statements that took the database's time (needs
    /// `HIREHOOK_SCRATCH_PG_OPTIONS="-c shared_preload_libraries=pg_stat_statements"`).
    #[arg(long)]
    statements: bool,
    /// Keep each daemon's stderr in this directory, and (latency) the receiver's arrival
    /// times, `arrivals-<run>.json` (default: discarded unless needed).
    #[arg(long)]
    logs: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Deliveries per second and hirehook's CPU per delivery.
    Throughput {
        #[command(flatten)]
        common: Common,
        /// Applications (= events per subscriber).
        #[arg(long, default_value_t = 50_000)]
        events: usize,
    },
    /// Commit → receiver latency at a steady change rate.
    Latency {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 100.0)]
        events_per_second: f64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 200)]
        poll_ms: u64,
        /// Also report the events made durable this long after the first: the steady
        /// state, without the start-up burst (the changes made while the daemon started,
        /// sent at once through connections still being opened).
        #[arg(long, default_value_t = 2)]
        warmup_seconds: u64,
    },
    /// Internal: the receiver process.
    Receive {
        /// Note each webhook-id's arrival time.
        #[arg(long)]
        record: bool,
    },
}

const SECRET: &str = "whsec_YmVuY2htYXJrIHNpZ25pbmcga2V5";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.mode {
        Mode::Receive { record } => receive(record),
        Mode::Throughput { common, events } => {
            tokio::runtime::Runtime::new()?.block_on(throughput(common, events))
        }
        Mode::Latency {
            common,
            events_per_second,
            seconds,
            poll_ms,
            warmup_seconds,
        } => tokio::runtime::Runtime::new()?.block_on(latency(
            common,
            events_per_second,
            seconds,
            poll_ms,
            warmup_seconds,
        )),
    }
}

// ---------------------------------------------------------------------------------------
// The receiver process.

#[derive(Default)]
struct Counts {
    count: AtomicU64,
    first_us: AtomicU64,
    last_us: AtomicU64,
    arrivals: Mutex<Vec<(String, u64)>>,
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Answers every POST with 200 at once, counts, and (with `record`) notes arrival times.
/// `GET /stats` reports; `POST /reset` starts over. Prints its base URL on stdout.
fn receive(record: bool) -> anyhow::Result<()> {
    use axum::routing::{get, post};
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let counts = Arc::new(Counts::default());
        let hits = counts.clone();
        let on_post = move |headers: axum::http::HeaderMap| {
            let counts = hits.clone();
            async move {
                let now = unix_us();
                if counts.count.fetch_add(1, Ordering::Relaxed) == 0 {
                    counts.first_us.store(now, Ordering::Relaxed);
                }
                counts.last_us.fetch_max(now, Ordering::Relaxed);
                if record
                    && let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok())
                    && let Ok(mut a) = counts.arrivals.lock()
                {
                    a.push((id.to_owned(), now));
                }
                "ok"
            }
        };
        let stats = counts.clone();
        let reset = counts.clone();
        let app = axum::Router::new()
            .route(
                "/stats",
                get(move || {
                    let c = stats.clone();
                    async move {
                        let arrivals = c.arrivals.lock().map(|a| a.clone()).unwrap_or_default();
                        axum::Json(serde_json::json!({
                            "count": c.count.load(Ordering::Relaxed),
                            "first_us": c.first_us.load(Ordering::Relaxed),
                            "last_us": c.last_us.load(Ordering::Relaxed),
                            "arrivals": arrivals,
                        }))
                    }
                }),
            )
            .route(
                "/reset",
                post(move || {
                    let c = reset.clone();
                    async move {
                        c.count.store(0, Ordering::Relaxed);
                        c.first_us.store(0, Ordering::Relaxed);
                        c.last_us.store(0, Ordering::Relaxed);
                        if let Ok(mut a) = c.arrivals.lock() {
                            a.clear();
                        }
                        "ok"
                    }
                }),
            )
            .fallback(post(on_post));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("http://{}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        anyhow::Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// Processes and /proc.

/// A child that is killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM, then wait (killed after 10 s).
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The fields after the command name of /proc/PID/stat (field 3 onwards).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    Some(
        rest.split_whitespace()
            .skip(1) // the state letter
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// CPU seconds of a process: utime + stime, plus its reaped children's with `children`.
fn cpu_secs(pid: u32, children: bool) -> f64 {
    // After the state: ppid(0) pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime(10) stime(11) cutime(12) cstime(13).
    let Some(f) = stat_fields(pid) else {
        return 0.0;
    };
    let get = |i: usize| f.get(i).copied().unwrap_or(0) as f64;
    let mut ticks = get(10) + get(11);
    if children {
        ticks += get(12) + get(13);
    }
    ticks / clock_ticks()
}

/// Peak RSS (VmHWM) of a process, MB.
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds of a PostgreSQL server: the postmaster (with its reaped backends) and its
/// live children.
fn postgres_cpu_secs(postmaster: u32) -> f64 {
    let mut total = cpu_secs(postmaster, true);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if stat_fields(pid).and_then(|f| f.first().copied()) == Some(u64::from(postmaster)) {
                total += cpu_secs(pid, false);
            }
        }
    }
    total
}

// ---------------------------------------------------------------------------------------
// The pieces of a run.

struct Receiver {
    proc: Proc,
    url: String,
    http: reqwest::Client,
}

#[derive(serde::Deserialize)]
struct Stats {
    count: u64,
    first_us: u64,
    last_us: u64,
    #[serde(default)]
    arrivals: Vec<(String, u64)>,
}

impl Receiver {
    fn start(record: bool) -> anyhow::Result<Receiver> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("receive");
        if record {
            cmd.arg("--record");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the receiver")?;
        let url = first_line(&mut child)?;
        Ok(Receiver {
            proc: Proc(child),
            url,
            http: reqwest::Client::new(),
        })
    }

    async fn stats(&self) -> anyhow::Result<Stats> {
        Ok(self
            .http
            .get(format!("{}/stats", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn reset(&self) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/reset", self.url))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// The receiver's ceiling: `n` bare POSTs of a typical body, `c` in flight, from this
    /// process. Returns (requests/s, receiver CPU µs per request).
    async fn ceiling(&self, n: usize, c: usize) -> anyhow::Result<(f64, f64)> {
        let body = bytes::Bytes::from(vec![b'x'; 900]);
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(c)
            .build()?;
        let next = Arc::new(AtomicU64::new(0));
        let cpu0 = cpu_secs(self.proc.pid(), false);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..c {
            let (client, next, body, url) =
                (client.clone(), next.clone(), body.clone(), self.url.clone());
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n as u64 {
                    let _ = client
                        .post(&url)
                        .header("webhook-id", "msg_ceiling")
                        .body(body.clone())
                        .send()
                        .await;
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        let secs = started.elapsed().as_secs_f64();
        let cpu = cpu_secs(self.proc.pid(), false) - cpu0;
        self.reset().await?;
        Ok((n as f64 / secs, cpu / n as f64 * 1e6))
    }
}

impl Receiver {
    /// The floor under durable → received: a bare reqwest sender in this process posts
    /// bursts of `burst` requests every `every` for `seconds` (the shape of the latency
    /// run's pages), and each request's time from just before `send` to the receiver's
    /// handler is measured as the latency run measures hirehook's. What this takes, the
    /// machine and the receiver take; hirehook can only add to it.
    async fn floor(&self, burst: usize, every: Duration, seconds: u64) -> anyhow::Result<Vec<f64>> {
        let body = bytes::Bytes::from(vec![b'x'; 900]);
        let client = reqwest::Client::new();
        let mut sent = HashMap::new();
        let mut tick = tokio::time::interval(every);
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut n = 0usize;
        while Instant::now() < until {
            tick.tick().await;
            let mut burst_tasks = Vec::new();
            for _ in 0..burst {
                n += 1;
                let id = format!("msg_floor_{n}");
                let (client, body, url) = (client.clone(), body.clone(), self.url.clone());
                sent.insert(id.clone(), unix_us());
                burst_tasks.push(tokio::spawn(async move {
                    let _ = client
                        .post(&url)
                        .header("webhook-id", id)
                        .body(body)
                        .send()
                        .await;
                }));
            }
            for t in burst_tasks {
                t.await?;
            }
        }
        let stats = self.stats().await?;
        self.reset().await?;
        Ok(stats
            .arrivals
            .into_iter()
            .filter_map(|(id, got)| sent.get(&id).map(|at| (got as f64 - *at as f64) / 1000.0))
            .collect())
    }
}

/// Where the store lives for one run.
enum StoreSpec {
    Sled(tempfile::TempDir),
    Postgres(String),
}

static POSTGRES: std::sync::OnceLock<hirehook::store::postgres::scratch::ScratchServer> =
    std::sync::OnceLock::new();

fn postgres() -> anyhow::Result<&'static hirehook::store::postgres::scratch::ScratchServer> {
    if let Some(s) = POSTGRES.get() {
        return Ok(s);
    }
    let server = hirehook::store::postgres::scratch::ScratchServer::start()
        .map_err(|e| anyhow::anyhow!("starting PostgreSQL: {e}"))?;
    Ok(POSTGRES.get_or_init(|| server))
}

/// The postmaster's pid (first line of `postmaster.pid` in the data directory).
fn postmaster_pid() -> Option<u32> {
    let server = POSTGRES.get()?;
    let dir = server.dir();
    for candidate in [dir.join("data/postmaster.pid"), dir.join("postmaster.pid")] {
        if let Ok(s) = std::fs::read_to_string(&candidate) {
            return s.lines().next()?.trim().parse().ok();
        }
    }
    None
}

async fn store_spec(common: &Common, run: usize) -> anyhow::Result<StoreSpec> {
    match common.backend.as_str() {
        "sled" => {
            if common.replicas != 1 {
                bail!("sled is one process: --replicas needs --backend postgres");
            }
            Ok(StoreSpec::Sled(tempfile::tempdir()?))
        }
        "postgres" => {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let url = postgres()?
                .create_database(&format!("e2e_{run}_{n}"))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(StoreSpec::Postgres(url))
        }
        other => bail!("unknown backend {other:?}: sled or postgres"),
    }
}

fn config_text(
    store: &StoreSpec,
    sim: &SimProcess,
    receiver: &str,
    common: &Common,
    initial: &str,
    poll: &str,
) -> String {
    let store = match store {
        StoreSpec::Sled(dir) => format!(
            "[store]\npath = \"{}\"\n",
            dir.path().join("store").display()
        ),
        StoreSpec::Postgres(url) => {
            format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nlease_ttl = \"5s\"\n")
        }
    };
    let mut toml = format!(
        "{store}\n[kombo]\nbase_url = \"{}\"\napi_key = \"{}\"\ninitial_sync = \"{initial}\"\npoll_interval = \"{poll}\"\nrequest_timeout = \"60s\"\n\n[delivery]\nallow_private_networks = true\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        sim.base_url, sim.api_key
    );
    for id in &sim.integrations {
        toml.push_str(&format!("\n[[integrations]]\nid = \"{id}\"\n"));
    }
    for i in 0..common.subscribers {
        toml.push_str(&format!(
            "\n[[subscribers]]\nname = \"s{i}\"\nurl = \"{receiver}/s{i}\"\nsecrets = [\"{SECRET}\"]\nmax_in_flight = {}\n",
            common.max_in_flight
        ));
    }
    toml
}

/// Starts `replicas` daemons on one config; stderr to `logs/<run>-<i>.log` or a temp file.
fn start_daemons(
    config: &Path,
    common: &Common,
    run: usize,
    log_filter: &str,
    json: bool,
) -> anyhow::Result<Vec<(Proc, PathBuf)>> {
    let dir = match &common.logs {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => config.parent().context("config dir")?.to_path_buf(),
    };
    let mut out = Vec::new();
    for i in 0..common.replicas {
        let log = dir.join(format!("hirehook-{run}-{i}.log"));
        let mut cmd = Command::new(hirehook_binary()?);
        if json {
            cmd.args(["--log-format", "json"]);
        }
        let child = cmd
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", log_filter)
            .env("HIREHOOK_REPLICA_SEED", i.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting hirehook run")?;
        out.push((Proc(child), log));
    }
    Ok(out)
}

/// Resets pg_stat_statements, or prints its top statements by time.
async fn statements(url: &str, print: bool) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await?;
    if !print {
        client
            .batch_execute("SELECT pg_stat_statements_reset()")
            .await?;
        return Ok(());
    }
    let rows = client
        .query(
            "SELECT calls, total_exec_time, rows, query FROM pg_stat_statements \
             ORDER BY total_exec_time DESC LIMIT 12",
            &[],
        )
        .await?;
    for r in rows {
        let (calls, ms, n, q): (i64, f64, i64, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        let q: String = q.split_whitespace().collect::<Vec<_>>().join(" ");
        println!(
            "  {calls:>8} calls {ms:>9.0} ms {:>7.1} µs/call {n:>8} rows  {}",
            ms * 1000.0 / calls.max(1) as f64,
            q.chars().take(150).collect::<String>()
        );
    }
    Ok(())
}

/// The events of the first finished sync, from the daemons' JSON logs.
fn first_sync_events(daemons: &[(Proc, PathBuf)]) -> anyhow::Result<Option<u64>> {
    for (_, log) in daemons {
        for line in std::fs::read_to_string(log)?.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["fields"]["message"] == "sync finished" {
                return Ok(v["fields"]["events"].as_u64());
            }
        }
    }
    Ok(None)
}

fn summary(label: &str, values: &mut [f64], unit: &str) -> String {
    values.sort_by(|a, b| a.total_cmp(b));
    let (min, max) = (values[0], values[values.len() - 1]);
    let median = values[values.len() / 2];
    format!("{label}: median {median:.1}{unit} (min {min:.1}, max {max:.1})")
}

// ---------------------------------------------------------------------------------------
// Throughput.

async fn throughput(common: Common, events: usize) -> anyhow::Result<()> {
    println!(
        "## End to end: {events} applications, initial_sync = \"emit\", {} subscriber(s), {} replica(s), {}, max_in_flight {}",
        common.subscribers, common.replicas, common.backend, common.max_in_flight
    );
    let receiver = Receiver::start(false)?;
    let (mut rates, mut cpus, mut ceilings, mut rss, mut db_cpus) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..common.runs {
        let sim = start_sim(events, 0.0, 7)?;
        let (ceiling, recv_us) = receiver.ceiling(50_000, 64).await?;
        let spec = store_spec(&common, run).await?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("hirehook.toml");
        std::fs::write(
            &config,
            config_text(&spec, &sim, &receiver.url, &common, "emit", "1h"),
        )?;
        if common.statements
            && let StoreSpec::Postgres(url) = &spec
        {
            statements(url, false).await?;
        }
        let db0 = postmaster_pid().map_or(0.0, postgres_cpu_secs);
        let recv0 = cpu_secs(receiver.proc.pid(), false);
        let mut daemons = start_daemons(&config, &common, run, "warn,hirehook::daemon=info", true)?;
        let deadline = Instant::now() + Duration::from_secs(900);
        // Not every application yields an `application_created` event: the expected count
        // is what the first sync derived, from its "sync finished" line.
        let mut want = None;
        let stats = loop {
            let s = receiver.stats().await?;
            if want.is_none() {
                want = first_sync_events(&daemons)?.map(|n| n * common.subscribers as u64);
            }
            if let Some(want) = want
                && s.count >= want
            {
                break s;
            }
            for (p, log) in &mut daemons {
                if let Ok(Some(status)) = p.0.try_wait() {
                    bail!(
                        "hirehook exited ({status}) after {} deliveries; its log: {}",
                        s.count,
                        log.display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("only {} of {want:?} deliveries after 900 s", s.count);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let cpu: f64 = daemons.iter().map(|(p, _)| cpu_secs(p.pid(), false)).sum();
        let peak: f64 = daemons.iter().map(|(p, _)| peak_rss_mb(p.pid())).sum();
        let db = postmaster_pid().map_or(0.0, postgres_cpu_secs) - db0;
        let recv = cpu_secs(receiver.proc.pid(), false) - recv0;
        for (p, _) in &mut daemons {
            p.stop();
        }
        let secs = (stats.last_us.saturating_sub(stats.first_us)) as f64 / 1e6;
        let rate = stats.count as f64 / secs;
        let per = cpu / stats.count as f64 * 1e6;
        println!(
            "run {}: {} deliveries in {secs:.2} s = {rate:.0}/s; hirehook CPU {cpu:.2} s = {per:.1} µs/delivery, peak RSS {peak:.0} MB{}; receiver {:.1} µs/request (ceiling {ceiling:.0}/s at {recv_us:.1} µs/request)",
            run + 1,
            stats.count,
            if POSTGRES.get().is_some() {
                format!(
                    "; PostgreSQL CPU {db:.2} s = {:.1} µs/delivery",
                    db / stats.count as f64 * 1e6
                )
            } else {
                String::new()
            },
            recv / stats.count as f64 * 1e6,
        );
        if common.statements
            && let StoreSpec::Postgres(url) = &spec
        {
            statements(url, true).await?;
        }
        rates.push(rate);
        cpus.push(per);
        ceilings.push(ceiling);
        rss.push(peak);
        db_cpus.push(db / stats.count as f64 * 1e6);
        receiver.reset().await?;
        drop(spec);
    }
    println!("{}", summary("deliveries/s", &mut rates, ""));
    println!("{}", summary("hirehook CPU per delivery", &mut cpus, " µs"));
    println!("{}", summary("peak RSS (all replicas)", &mut rss, " MB"));
    println!("{}", summary("receiver ceiling", &mut ceilings, "/s"));
    if POSTGRES.get().is_some() {
        println!(
            "{}",
            summary("PostgreSQL CPU per delivery", &mut db_cpus, " µs")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Latency.

/// When an event's page was durable, and where the event stood in it.
#[derive(Debug, Clone, Copy)]
struct Durable {
    /// µs since the epoch.
    at: u64,
    /// Its place in the page's events (0: first).
    index: usize,
    /// How many events the page made durable.
    page_len: usize,
}

/// The `hirehook::durable` lines of a JSON log: event id → when its page was durable.
fn durable_times(log: &Path, into: &mut HashMap<String, Durable>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(log)?;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["target"] != "hirehook::durable" {
            continue;
        }
        let (Some(ts), Some(ids)) = (v["timestamp"].as_str(), v["fields"]["ids"].as_str()) else {
            continue;
        };
        let at = chrono::DateTime::parse_from_rfc3339(ts)
            .with_context(|| format!("timestamp {ts:?}"))?
            .timestamp_micros() as u64;
        let ids: Vec<&str> = ids.split(',').filter(|s| !s.is_empty()).collect();
        for (index, id) in ids.iter().enumerate() {
            into.entry((*id).to_owned()).or_insert(Durable {
                at,
                index,
                page_len: ids.len(),
            });
        }
    }
    Ok(())
}

async fn latency(
    common: Common,
    events_per_second: f64,
    seconds: u64,
    poll_ms: u64,
    warmup_seconds: u64,
) -> anyhow::Result<()> {
    println!(
        "## Latency: {events_per_second} changes/s for {seconds} s, poll_interval {poll_ms}ms, {} subscriber(s), {} replica(s), {}",
        common.subscribers, common.replicas, common.backend
    );
    let receiver = Receiver::start(true)?;
    // Pages carried about 4 events each at 100 changes/s and 200ms.
    let floor = receiver
        .floor(4, Duration::from_millis(50), seconds.min(10))
        .await?;
    println!(
        "floor (a bare reqwest sender in this process, bursts of 4 every 50 ms, nothing else running): {}",
        percentiles(floor)
    );
    for run in 0..common.runs {
        let sim = start_sim(20_000, events_per_second, 7)?;
        let spec = store_spec(&common, run).await?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("hirehook.toml");
        std::fs::write(
            &config,
            config_text(
                &spec,
                &sim,
                &receiver.url,
                &common,
                "baseline",
                &format!("{poll_ms}ms"),
            ),
        )?;
        let mut daemons =
            start_daemons(&config, &common, run, "warn,hirehook::durable=debug", true)?;
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        // Let the last page's deliveries land.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let elapsed = started.elapsed().as_secs_f64();
        let hirehook_cpu: f64 = daemons.iter().map(|(p, _)| cpu_secs(p.pid(), false)).sum();
        let sim_cpu = cpu_secs(sim.pid(), false);
        for (p, _) in &mut daemons {
            p.stop();
        }
        let stats = receiver.stats().await?;
        let mut durable = HashMap::new();
        for (_, log) in &daemons {
            durable_times(log, &mut durable)?;
        }
        if let Some(dir) = &common.logs {
            let path = dir.join(format!("arrivals-{run}.json"));
            std::fs::write(&path, serde_json::to_vec(&stats.arrivals)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let arrivals: HashMap<String, u64> = stats.arrivals.into_iter().collect();
        let latencies: Vec<(Durable, f64)> = durable
            .iter()
            .filter_map(|(id, d)| {
                arrivals
                    .get(id)
                    .map(|got| (*d, (*got as f64 - d.at as f64) / 1000.0))
            })
            .collect();
        let ms: Vec<f64> = latencies.iter().map(|(_, ms)| *ms).collect();
        let pages = durable.values().filter(|d| d.index == 0).count().max(1);
        println!(
            "run {}: durable → received: {} ({} durable in {} pages, {} requests)",
            run + 1,
            percentiles(ms),
            durable.len(),
            pages,
            stats.count
        );
        // Where in its page an event stood: the first of a page waits for nothing else;
        // the last waits for the rest of the page to be sent before it.
        let first: Vec<f64> = latencies
            .iter()
            .filter(|(d, _)| d.index == 0)
            .map(|(_, ms)| *ms)
            .collect();
        let last: Vec<f64> = latencies
            .iter()
            .filter(|(d, _)| d.page_len > 1 && d.index + 1 == d.page_len)
            .map(|(_, ms)| *ms)
            .collect();
        let first_durable = durable.values().map(|d| d.at).min().unwrap_or(0);
        let steady: Vec<f64> = latencies
            .iter()
            .filter(|(d, _)| d.at >= first_durable + warmup_seconds * 1_000_000)
            .map(|(_, ms)| *ms)
            .collect();
        println!("  from {warmup_seconds} s on:      {}", percentiles(steady));
        println!("  first of its page: {}", percentiles(first));
        println!("  last of its page:  {}", percentiles(last));
        println!(
            "  CPU over the run: hirehook {hirehook_cpu:.2} s ({:.0} % of a core), simulator {sim_cpu:.2} s ({:.0} %)",
            100.0 * hirehook_cpu / elapsed,
            100.0 * sim_cpu / elapsed
        );
        receiver.reset().await?;
        drop(spec);
    }
    Ok(())
}
