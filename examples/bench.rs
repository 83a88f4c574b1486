//! End-to-end benchmarks: backfill ingest, incremental sync, delivery throughput, latency.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench -- --applications 1000000
//! ```
//!
//! Each figure is printed next to a ceiling measured in the same run on the same machine
//! (raw page fetch + parse; a bare reqwest sender), with the ratio. The simulator runs as a
//! separate process (`target/release/hirehook sim`) so this process's peak RSS is
//! hirehook's own. Method and results: BENCHMARKS.md.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use hirehook::ats::{ApplicationsQuery, ClientConfig, KomboClient, RetryPolicy};
use hirehook::config::Config;
use hirehook::deliver::worker::{Deliverer, DeliverySettings, Target};
use hirehook::secret::Secret;
use hirehook::store::{DeliveryState, Store};
use hirehook::sync::{PageProgress, SyncSettings, Syncer};
use tokio_util::sync::CancellationToken;

#[path = "common/procs.rs"]
mod procs;
#[path = "common/stats.rs"]
mod stats;
use procs::{SimProcess, start_sim};
use stats::percentiles;

#[derive(Debug, Parser)]
struct Args {
    /// Applications in the backfill world.
    #[arg(long, default_value_t = 1_000_000)]
    applications: usize,
    /// Share of applications changed for the incremental sync.
    #[arg(long, default_value_t = 0.01)]
    changed_share: f64,
    /// Events for the delivery throughput run.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Seconds of the latency run (at ~100 events/s).
    #[arg(long, default_value_t = 20)]
    latency_secs: u64,
    /// Poll interval of the latency run, ms.
    #[arg(long, default_value_t = 1000)]
    latency_poll_ms: u64,
    /// sled cache for the ingest store, bytes.
    #[arg(long, default_value_t = 64 << 20)]
    cache_bytes: u64,
    /// Only these parts (ingest, delivery, latency); default all.
    #[arg(long)]
    only: Vec<String>,
    /// Run on PostgreSQL instead of sled: a throwaway server started here (initdb +
    /// pg_ctl), a fresh database per part.
    #[arg(long)]
    postgres: bool,
}

const SECRET: &str = "whsec_YmVuY2htYXJrIHNpZ25pbmcga2V5";

fn client(sim: &SimProcess) -> anyhow::Result<KomboClient> {
    Ok(KomboClient::new(ClientConfig {
        base_url: sim.base_url.clone(),
        api_key: Secret::new(sim.api_key.clone()),
        request_timeout: Duration::from_secs(60),
        limits: Default::default(),
        retry: RetryPolicy::default(),
    })?)
}

/// CPU seconds (user + system) this process has used, all threads.
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// The first number on the line of `/proc/self/<file>` that starts with `key`.
fn proc_self(file: &str, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/self/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

/// Bytes this process has caused to be written to storage.
fn written_bytes() -> f64 {
    proc_self("io", "write_bytes:")
}

fn peak_rss_mb() -> f64 {
    proc_self("status", "VmHWM:") / 1024.0
}

fn config(
    store: &Path,
    sim: &SimProcess,
    subscribers: &[String],
    cache: u64,
    initial: &str,
) -> anyhow::Result<Config> {
    let mut toml = format!(
        "[store]\npath = \"{}\"\ncache_capacity = {cache}\n\n[kombo]\nbase_url = \"{}\"\napi_key = \"{}\"\ninitial_sync = \"{initial}\"\nrequest_timeout = \"60s\"\n\n[delivery]\nallow_private_networks = true\n",
        store.display(),
        sim.base_url,
        sim.api_key
    );
    for id in &sim.integrations {
        toml.push_str(&format!("\n[[integrations]]\nid = \"{id}\"\n"));
    }
    for (i, url) in subscribers.iter().enumerate() {
        toml.push_str(&format!(
            "\n[[subscribers]]\nname = \"s{i}\"\nurl = \"{url}\"\nsecrets = [\"{SECRET}\"]\nmax_in_flight = 64\n"
        ));
    }
    Ok(Config::from_str_with_env(
        &toml,
        Path::new("<bench>"),
        |_| None,
    )?)
}

/// The throwaway PostgreSQL server of `--postgres`.
static POSTGRES: std::sync::OnceLock<hirehook::store::postgres::scratch::ScratchServer> =
    std::sync::OnceLock::new();

/// A fresh store in a temporary directory (or a fresh PostgreSQL database), and a syncer
/// on it against `sim`.
struct Setup {
    _dir: tempfile::TempDir,
    cfg: Config,
    store: Arc<Store>,
    syncer: Syncer,
}

async fn setup(
    sim: &SimProcess,
    subscribers: &[String],
    cache: u64,
    initial: &str,
) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(&dir.path().join("store"), sim, subscribers, cache, initial)?;
    let store = match POSTGRES.get() {
        Some(server) => {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let url = server
                .create_database(&format!("bench_{n}"))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            cfg.store.backend = hirehook::config::StoreBackend::Postgres;
            cfg.store.url = Some(url);
            Arc::new(Store::open(&cfg.store).await?.unfenced())
        }
        None => Arc::new(Store::open_sled(
            &cfg.store.path,
            cfg.store.cache_capacity.0,
        )?),
    };
    let syncer = Syncer::new(client(sim)?, store.clone(), SyncSettings::from_config(&cfg));
    Ok(Setup {
        _dir: dir,
        cfg,
        store,
        syncer,
    })
}

/// The ceiling: fetch and parse every page, nothing else.
async fn fetch_parse_all(sim: &SimProcess) -> anyhow::Result<(u64, Duration)> {
    let client = client(sim)?;
    let started = Instant::now();
    let mut pager = client.applications(
        &sim.integrations[0],
        ApplicationsQuery {
            include_deleted: true,
            ..Default::default()
        },
        0,
    );
    let mut n = 0u64;
    while let Some(page) = pager.next_page().await? {
        n += page.records.parse_all().records.len() as u64;
    }
    Ok((n, started.elapsed()))
}

async fn ingest(args: &Args) -> anyhow::Result<()> {
    println!("## Backfill ingest: {} applications", args.applications);
    let started = Instant::now();
    let sim = start_sim(args.applications, 0.0, 1)?;
    println!(
        "simulator ready in {:.1?} (separate process)",
        started.elapsed()
    );

    let (n, took) = fetch_parse_all(&sim).await?;
    let ceiling = n as f64 / took.as_secs_f64();
    println!("ceiling (fetch + parse only): {n} records in {took:.2?} = {ceiling:.0}/s");

    let Setup {
        _dir,
        store,
        syncer,
        ..
    } = setup(&sim, &[], args.cache_bytes, "baseline").await?;
    let slices: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = slices.clone();
    let syncer = syncer.with_progress(Arc::new(move |_, p: PageProgress| {
        if let Ok(mut s) = sink.lock() {
            s.push((p.records, Instant::now()));
        }
    }));
    let started = Instant::now();
    let report = syncer.sync(&sim.integrations[0], |_| {}).await?;
    let took = started.elapsed();
    let rate = report.records as f64 / took.as_secs_f64();
    store.flush().await?;
    let disk = store.size_on_disk().await?;
    println!(
        "ingest (fetch + parse + diff + commit): {} records in {took:.2?} = {rate:.0}/s ({:.0} % of the ceiling)",
        report.records,
        100.0 * rate / ceiling
    );
    println!(
        "  of which: waiting for the next page {:.2?}, diffing {:.2?}, committing {:.2?}",
        report.timings.waiting_for_kombo, report.timings.diffing, report.timings.committing
    );
    println!("peak RSS of this process: {:.0} MB", peak_rss_mb());
    println!(
        "store on disk: {:.1} MB = {:.0} bytes/application",
        disk as f64 / 1e6,
        disk as f64 / report.records.max(1) as f64
    );
    let slices = slices.lock().map(|s| s.clone()).unwrap_or_default();
    let step = 100_000u64;
    let mut boundary = step;
    let mut last = (0u64, started);
    let mut row = Vec::new();
    for (records, at) in slices {
        if records >= boundary {
            let rate = (records - last.0) as f64 / at.duration_since(last.1).as_secs_f64();
            row.push(format!("{:.0}k", rate / 1000.0));
            last = (records, at);
            boundary += step;
        }
    }
    println!("rate per 100k slice (apps/s): {}", row.join(" "));

    // Incremental: change a share, sync again, count requests.
    let changes = (args.applications as f64 * args.changed_share).round() as usize;
    let http = reqwest::Client::new();
    let root = sim.base_url.trim_end_matches("/v1").to_owned();
    let requests = |v: serde_json::Value| v["requests"].as_u64().unwrap_or(0);
    let truth: serde_json::Value = http
        .post(format!("{root}/_sim/mutate?n={changes}"))
        .send()
        .await?
        .json()
        .await?;
    let changed: std::collections::HashSet<String> = truth["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["application_id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let before = requests(
        http.get(format!("{root}/_sim/stats"))
            .send()
            .await?
            .json()
            .await?,
    );
    let started = Instant::now();
    let report = syncer.sync(&sim.integrations[0], |_| {}).await?;
    let took = started.elapsed();
    let after = requests(
        http.get(format!("{root}/_sim/stats"))
            .send()
            .await?
            .json()
            .await?,
    );
    let minimum = changed.len().div_ceil(250) + 1;
    println!(
        "incremental: {changes} changes to {} applications → {} records, {} events, {} requests (minimum {minimum}), {took:.2?}",
        changed.len(),
        report.records,
        report.events(),
        after - before
    );

    // Full resync: every record listed again, nearly all of them unchanged since the
    // snapshot they made (skipped by their digest).
    let integration = &sim.integrations[0];
    let mut state = store.sync_state(integration).await?;
    state.last_full_resync = None;
    store.put_sync_state(integration, &state).await?;
    let (cpu, started) = (cpu_secs(), Instant::now());
    let report = syncer.sync(integration, |_| {}).await?;
    let (took, cpu) = (started.elapsed(), cpu_secs() - cpu);
    println!(
        "full resync ({}): {} records ({} unchanged, skipped unparsed), {} events in {took:.2?} = {:.0}/s; CPU of this process {cpu:.2} s = {:.1} µs/record",
        report.kind.as_str(),
        report.records,
        report.unchanged,
        report.events(),
        report.records as f64 / took.as_secs_f64(),
        cpu * 1e6 / report.records.max(1) as f64
    );
    Ok(())
}

/// Serves `app` on a loopback port; returns its URL.
async fn serve(app: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// A receiver that answers 200 at once and counts.
async fn counting_receiver() -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    Ok((serve(app).await?, count))
}

async fn wait_count(count: &AtomicU64, want: u64, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while count.load(Ordering::Relaxed) < want {
        if Instant::now() > deadline {
            bail!(
                "only {} of {want} within {limit:?}",
                count.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Bare reqwest: POST `n` bodies at concurrency `c`, no signing, no store.
async fn bare_sender(url: &str, n: usize, c: usize, body: Vec<u8>) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..c {
        let (client, next, url, body) =
            (client.clone(), next.clone(), url.to_owned(), body.clone());
        tasks.spawn(async move {
            while (next.fetch_add(1, Ordering::Relaxed) as usize) < n {
                let _ = client.post(&url).body(body.clone()).send().await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn delivery(args: &Args) -> anyhow::Result<()> {
    println!("\n## Delivery throughput: {} events", args.events);
    let sim = start_sim(args.events, 0.0, 2)?;
    for subscribers in [1usize, 4] {
        let mut urls = Vec::new();
        let mut counts = Vec::new();
        for _ in 0..subscribers {
            let (url, count) = counting_receiver().await?;
            urls.push(url);
            counts.push(count);
        }
        let Setup {
            _dir,
            cfg,
            store,
            syncer,
        } = setup(&sim, &urls, 64 << 20, "emit").await?;
        let report = syncer.sync(&sim.integrations[0], |_| {}).await?;
        let events = report.events();
        let total = events * subscribers as u64;
        let deliverer = Deliverer::new(
            store.clone(),
            Target::from_config(&cfg)?,
            DeliverySettings::from_config(&cfg),
        )?;
        let shutdown = CancellationToken::new();
        let started = Instant::now();
        let task = tokio::spawn(deliverer.run(shutdown.clone()));
        for c in &counts {
            wait_count(c, events, Duration::from_secs(600)).await?;
        }
        // Durably recorded: no delivery left in any due index (an attempt leaves it only
        // once its outcome is recorded), then flushed. `next_due_at` is one index lookup,
        // so this check costs nothing while the deliverer works.
        loop {
            let mut pending = false;
            for i in 0..subscribers {
                pending |= store.next_due_at(&format!("s{i}")).await?.is_some();
            }
            if !pending {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        store.flush().await?;
        let took = started.elapsed();
        shutdown.cancel();
        let _ = task.await;
        let rate = total as f64 / took.as_secs_f64();
        let body = store
            .events(&Default::default())
            .await?
            .first()
            .map(|e| e.body.clone())
            .unwrap_or_default();
        let bare = bare_sender(&urls[0], 20_000, 32, body).await?;
        println!(
            "{subscribers} subscriber(s): {total} deliveries in {took:.2?} = {rate:.0}/s; bare reqwest (c=32) {bare:.0}/s; ratio {:.0} %",
            100.0 * rate / bare
        );
    }
    Ok(())
}

/// The store's share of delivery: take due deliveries and record them delivered, no HTTP.
async fn outbox(args: &Args) -> anyhow::Result<()> {
    println!(
        "\n## Outbox only (claim + record, no HTTP): {} events",
        args.events
    );
    let sim = start_sim(args.events, 0.0, 2)?;
    let Setup {
        _dir,
        store,
        syncer,
        ..
    } = setup(&sim, &["http://127.0.0.1:9/".into()], 64 << 20, "emit").await?;
    let report = syncer.sync(&sim.integrations[0], |_| {}).await?;
    let started = Instant::now();
    let cpu0 = cpu_secs();
    let io0 = written_bytes();
    let mut n = 0u64;
    let (mut t_due, mut t_rec) = (Duration::ZERO, Duration::ZERO);
    loop {
        let t = Instant::now();
        let due = store
            .claim_due("s0", chrono::Utc::now(), 64, Duration::from_secs(60))
            .await?;
        t_due += t.elapsed();
        if due.is_empty() {
            break;
        }
        let t = Instant::now();
        for d in due {
            let record = hirehook::store::AttemptRecord {
                attempt: 1,
                at: chrono::Utc::now(),
                status: Some(200),
                latency_ms: 1,
                error: None,
                response_prefix: Some("ok".into()),
            };
            store
                .record_attempt(&d, &record, hirehook::store::AttemptResult::Delivered)
                .await?;
            n += 1;
        }
        t_rec += t.elapsed();
    }
    let took = started.elapsed();
    store.flush().await?;
    let cpu = cpu_secs() - cpu0;
    let io = written_bytes() - io0;
    println!(
        "{n} of {} in {took:.2?} = {:.0}/s (claim {t_due:.2?}, record {t_rec:.2?}); CPU {:.1} µs and {:.0} bytes written per delivery",
        report.events(),
        n as f64 / took.as_secs_f64(),
        cpu * 1e6 / n.max(1) as f64,
        io / n.max(1) as f64
    );
    Ok(())
}

/// A receiver that answers 200 at once and notes when each `webhook-id` arrived.
async fn timing_receiver() -> anyhow::Result<(String, Arc<Mutex<HashMap<String, Instant>>>)> {
    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let sink = arrivals.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let sink = sink.clone();
            async move {
                let now = Instant::now();
                if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok())
                    && let Ok(mut map) = sink.lock()
                {
                    map.entry(id.to_owned()).or_insert(now);
                }
                "ok"
            }
        }),
    );
    Ok((serve(app).await?, arrivals))
}

async fn latency(args: &Args) -> anyhow::Result<()> {
    let poll = Duration::from_millis(args.latency_poll_ms);
    println!(
        "\n## Latency at ~100 events/s for {} s, polling every {poll:?}",
        args.latency_secs
    );
    let sim = start_sim(20_000, 100.0, 3)?;
    let (url, arrivals) = timing_receiver().await?;
    let Setup {
        _dir,
        cfg,
        store,
        syncer,
    } = setup(&sim, &[url], 64 << 20, "baseline").await?;
    // The baseline first: it derives no events.
    syncer.sync(&sim.integrations[0], |_| {}).await?;
    let deliverer = Deliverer::new(
        store.clone(),
        Target::from_config(&cfg)?,
        DeliverySettings::from_config(&cfg),
    )?;
    let waker = deliverer.waker();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(deliverer.run(shutdown.clone()));
    // The moment each event became durable: `on_events` runs right after the flush.
    let mut committed: HashMap<String, Instant> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(args.latency_secs);
    while Instant::now() < deadline {
        let next = Instant::now() + poll;
        syncer
            .sync(&sim.integrations[0], |events| {
                let now = Instant::now();
                for e in events {
                    committed.insert(e.id.clone(), now);
                }
                waker.wake();
            })
            .await?;
        tokio::time::sleep_until(next.into()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    let _ = task.await;
    let arrivals = arrivals.lock().map(|m| m.clone()).unwrap_or_default();
    let commit_to_receipt: Vec<f64> = committed
        .iter()
        .filter_map(|(id, at)| arrivals.get(id).map(|got| (*got - *at).as_secs_f64() * 1e3))
        .collect();
    println!(
        "commit (flushed) → received: {} (of {} committed)",
        percentiles(commit_to_receipt),
        committed.len()
    );
    let detected: BTreeMap<u64, hirehook::ats::Timestamp> = store
        .events(&Default::default())
        .await?
        .into_iter()
        .map(|e| (e.log_seq, e.detected_at))
        .collect();
    let mut detected_to_2xx = Vec::new();
    for (sub, seq, _) in store
        .deliveries(None, Some(DeliveryState::Delivered), None)
        .await?
    {
        let (Some(at), Some(last)) = (detected.get(&seq), store.attempts(&sub, seq).await?.pop())
        else {
            continue;
        };
        let done = last.at + chrono::Duration::milliseconds(last.latency_ms as i64);
        detected_to_2xx.push((done - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    println!(
        "page received → 2xx (includes the diff, the commit and its fsync): {}",
        percentiles(detected_to_2xx)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let want = |part: &str| args.only.is_empty() || args.only.iter().any(|o| o == part);
    println!(
        "machine: {} cores; hirehook {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        env!("CARGO_PKG_VERSION")
    );
    if args.postgres {
        let server = hirehook::store::postgres::scratch::ScratchServer::start()
            .map_err(|e| anyhow::anyhow!("cannot start PostgreSQL: {e}"))?;
        println!("store: PostgreSQL (scratch server, fsync on)");
        let _ = POSTGRES.set(server);
    }
    let mut failures = BTreeMap::new();
    if want("ingest")
        && let Err(e) = ingest(&args).await
    {
        failures.insert("ingest", e);
    }
    if want("delivery")
        && let Err(e) = delivery(&args).await
    {
        failures.insert("delivery", e);
    }
    if args.only.iter().any(|o| o == "outbox")
        && let Err(e) = outbox(&args).await
    {
        failures.insert("outbox", e);
    }
    if want("latency")
        && let Err(e) = latency(&args).await
    {
        failures.insert("latency", e);
    }
    for (part, e) in &failures {
        eprintln!("{part} failed: {e:#}");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{} part(s) failed", failures.len())
    }
}
