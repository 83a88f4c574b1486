//! Does retention give disk space back? Fills a store with delivered events, sweeps most
//! of them, keeps the store busy, restarts it and rewrites it, printing the store's size
//! after each step and how long each sweep batch held the store.
//!
//! ```sh
//! cargo run --release --example retention_disk -- --events 100000 --keep 10 --cycles 5
//! cargo run --release --example retention_disk -- --events 100000 --postgres
//! ```
//!
//! - fill: `--events` events (900-byte bodies, one subscriber, one application per five
//!   events with a 240-byte snapshot), detected evenly over 60 days, each delivered
//!   (claimed, one attempt recorded);
//! - sweep: `[retention] events = "30d"` at a "now" where all but `--keep` % are old enough,
//!   in batches of `--batch` (the daemon's default), timing every batch;
//! - purge: a fifth of `--events` snapshots of applications deleted upstream long ago,
//!   committed and purged (`deleted_applications = "14d"`), timing every batch;
//! - idle: `--idle` seconds with nothing to do (sled cleans segments in the background);
//! - busy: `--cycles` times, a tenth of `--events` new events committed and delivered,
//!   then swept as they age (steady state: as much comes as goes); on PostgreSQL each
//!   cycle ends with the `VACUUM` autovacuum would have run in the days a cycle stands for;
//! - sled: the store closed and opened again; then `store::sled::rewrite` (what
//!   `hirehook store compact` does: the live keys copied into fresh files that replace
//!   the old ones), then one more cycle;
//! - PostgreSQL (`--postgres`, a throwaway server of its own): `VACUUM` and
//!   `VACUUM FULL` of the tables retention deletes from, then one more cycle.
//!
//! sled's size is its directory's files (length, and blocks allocated as `du` counts);
//! PostgreSQL's is `pg_database_size`. RSS is this process's (the store runs in it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use hirehook::event::EventType;
use hirehook::store::{
    AttemptRecord, AttemptResult, NewEvent, PageCommit, RetentionPolicy, SnapshotWrite, Store,
    SweepCursor,
};

struct Args {
    events: u64,
    keep: u64,
    cycles: u64,
    batch: usize,
    idle: u64,
    postgres: bool,
    /// Where to build the sled store (kept afterwards); a temporary directory by default.
    path: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        events: 100_000,
        keep: 10,
        cycles: 5,
        batch: hirehook::retention::BATCH,
        idle: 0,
        postgres: false,
        path: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--postgres" {
            a.postgres = true;
            continue;
        }
        let value = it
            .next()
            .context("every flag but --postgres takes a value")?;
        match flag.as_str() {
            "--events" => a.events = value.parse()?,
            "--keep" => a.keep = value.parse()?,
            "--cycles" => a.cycles = value.parse()?,
            "--batch" => a.batch = value.parse()?,
            "--idle" => a.idle = value.parse()?,
            "--path" => a.path = Some(value.into()),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// (bytes by length, bytes allocated) of every file under `dir`.
fn dir_size(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = (0, 0);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                let (l, a) = dir_size(&entry.path());
                total.0 += l;
                total.1 += a;
            } else {
                total.0 += meta.len();
                total.1 += meta.blocks() * 512;
            }
        }
    }
    total
}

/// This process's resident memory (VmRSS), in bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Where the store under test lives.
enum Place {
    Sled(PathBuf),
    Postgres(String),
}

async fn report(step: &str, store: &Store, place: &Place, events_kept: u64) -> anyhow::Result<()> {
    let size = match place {
        Place::Sled(dir) => {
            let (len, alloc) = dir_size(dir);
            format!("files {:>9}  allocated {:>9}", mb(len), mb(alloc))
        }
        Place::Postgres(_) => format!("database {:>9}", mb(store.size_on_disk().await?)),
    };
    println!(
        "{step:<44} {size}  events in store {events_kept:>8}  RSS {:>9}",
        mb(rss())
    );
    Ok(())
}

const SUBSCRIBER: &str = "crm";
const PAGE: u64 = 250;

/// Commits events `from..to` (one every `spacing` from `start`), then delivers them.
async fn add_and_deliver(
    store: &Store,
    from: u64,
    to: u64,
    start: DateTime<Utc>,
    spacing: TimeDelta,
) -> anyhow::Result<()> {
    let body: Vec<u8> = (0..900u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut i = from;
    while i < to {
        let end = (i + PAGE).min(to);
        let mut page = PageCommit::default();
        for n in i..end {
            let app = format!("app_{:08}", n / 5);
            if n % 5 == 0 {
                page.snapshots.push(SnapshotWrite {
                    application_id: app.clone(),
                    // Not a snapshot of this codec's version: never read as deleted.
                    bytes: vec![0; 240],
                    is_new: true,
                    previous_deleted_at: None,
                });
            }
            page.events.push(NewEvent {
                id: format!("evt_{n:032x}"),
                event_type: EventType::StageChanged,
                application_id: app,
                sequence: n % 5 + 1,
                detected_at: start + spacing * i32::try_from(n).unwrap_or(i32::MAX),
                body: body.clone(),
                subscribers: vec![SUBSCRIBER.into()],
                hold: false,
            });
        }
        store.commit_page("gh:1", page).await?;
        i = end;
    }
    store.flush().await?;
    let far = start + TimeDelta::days(3650);
    loop {
        let due = store
            .claim_due(SUBSCRIBER, far, 1000, Duration::from_secs(60))
            .await?;
        if due.is_empty() {
            break;
        }
        let records = due.iter().map(|d| async move {
            let attempt = AttemptRecord {
                attempt: 1,
                at: d.detected_at + TimeDelta::seconds(1),
                status: Some(200),
                latency_ms: 3,
                error: None,
                response_prefix: None,
            };
            store
                .record_attempt(d, &attempt, AttemptResult::Delivered)
                .await
        });
        for result in futures::future::join_all(records).await {
            result?;
        }
    }
    store.flush().await?;
    Ok(())
}

/// Sweeps until nothing old is left at `now`; returns (events removed, batch times).
async fn sweep(
    store: &Store,
    now: DateTime<Utc>,
    batch: usize,
) -> anyhow::Result<(u64, Vec<Duration>)> {
    let policy = RetentionPolicy {
        events: Some(Duration::from_secs(30 * 86_400)),
        deleted_applications: Some(Duration::from_secs(14 * 86_400)),
    };
    let mut cursor = SweepCursor::default();
    let mut times = Vec::new();
    let mut removed = 0;
    loop {
        let started = Instant::now();
        let r = store.sweep(&policy, now, batch, &mut cursor).await?;
        times.push(started.elapsed());
        removed += r.events;
        if !r.more {
            break;
        }
    }
    store.flush().await?;
    Ok((removed, times))
}

/// Commits `n` snapshots of applications deleted upstream 60 days before `start` + 60
/// days, purges them (batches of `batch`) and prints the time per batch.
async fn purge_deleted(
    store: &Store,
    start: DateTime<Utc>,
    n: u64,
    batch: usize,
) -> anyhow::Result<()> {
    let deleted_at = start;
    let mut i = 0;
    while i < n {
        let end = (i + PAGE).min(n);
        let page = PageCommit {
            snapshots: (i..end)
                .map(|k| SnapshotWrite {
                    application_id: format!("deleted_{k:08}"),
                    bytes: hirehook::diff::Snapshot {
                        sequence: 3,
                        deleted_at: Some(deleted_at),
                        remote_id: Some(format!("{k}")),
                        ..Default::default()
                    }
                    .encode(),
                    is_new: true,
                    previous_deleted_at: None,
                })
                .collect(),
            events: vec![],
        };
        store.commit_page("gh:1", page).await?;
        i = end;
    }
    store.flush().await?;
    let policy = RetentionPolicy {
        events: None,
        deleted_applications: Some(Duration::from_secs(14 * 86_400)),
    };
    let mut cursor = SweepCursor::default();
    let (mut times, mut purged) = (Vec::new(), 0);
    loop {
        let started = Instant::now();
        let r = store
            .sweep(&policy, start + TimeDelta::days(60), batch, &mut cursor)
            .await?;
        times.push(started.elapsed());
        purged += r.snapshots;
        if !r.more {
            break;
        }
    }
    println!(
        "purged {purged} snapshots of deleted applications in {} batches: per batch p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        times.len(),
        percentile(&mut times, 0.5),
        percentile(&mut times, 0.99),
        percentile(&mut times, 1.0),
    );
    Ok(())
}

fn percentile(times: &mut [Duration], p: f64) -> Duration {
    times.sort_unstable();
    let i = ((times.len() as f64 - 1.0) * p).round() as usize;
    times.get(i).copied().unwrap_or_default()
}

async fn open(place: &Place) -> anyhow::Result<Store> {
    Ok(match place {
        Place::Sled(dir) => Store::open_sled(dir, 64 << 20)?,
        Place::Postgres(url) => Store::open(&hirehook::config::StoreConfig {
            backend: hirehook::config::StoreBackend::Postgres,
            url: Some(url.clone()),
            pool_size: 16,
            ..Default::default()
        })
        .await?
        .unfenced(),
    })
}

/// Runs a statement on the database outside the store (VACUUM cannot run in a
/// transaction, and the store has no such operation).
async fn sql(url: &str, statement: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(statement).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let tmp = tempfile::tempdir()?;
    let place = if a.postgres {
        let url = hirehook::store::postgres::test_database()
            .await
            .context("no PostgreSQL: initdb and pg_ctl must be on PATH")?;
        Place::Postgres(url)
    } else {
        let root = a.path.clone().unwrap_or_else(|| tmp.path().to_owned());
        Place::Sled(root.join("store"))
    };
    let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let spacing = TimeDelta::milliseconds(
        i64::try_from(60 * 86_400_000 / a.events.max(1))
            .unwrap_or(1)
            .max(1),
    );
    let at = |n: u64| start + spacing * i32::try_from(n).unwrap_or(i32::MAX);
    // The first 100 - keep % of the events fall before the horizon at `now`.
    let old = a.events * (100 - a.keep.min(100)) / 100;
    let now = at(old) + TimeDelta::days(30);

    let store = Arc::new(open(&place).await?);
    let started = Instant::now();
    add_and_deliver(&store, 0, a.events, start, spacing).await?;
    println!(
        "filled {} events (delivered) in {:.1?}",
        a.events,
        started.elapsed()
    );
    report("full", &store, &place, a.events).await?;

    let (removed, mut times) = sweep(&store, now, a.batch).await?;
    let total: Duration = times.iter().sum();
    println!(
        "swept {removed} events in {} batches of {}: {:.1?} in all; per batch p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        times.len(),
        a.batch,
        total,
        percentile(&mut times, 0.5),
        percentile(&mut times, 0.99),
        percentile(&mut times, 1.0),
    );
    let mut kept = a.events - removed;
    report("right after the sweep", &store, &place, kept).await?;
    purge_deleted(&store, start, a.events / 5, a.batch).await?;
    if a.idle > 0 {
        tokio::time::sleep(Duration::from_secs(a.idle)).await;
        store.flush().await?;
        report(&format!("after {} s idle", a.idle), &store, &place, kept).await?;
    }

    // Steady state: as much comes as goes.
    let step = a.events / 10;
    let mut next = a.events;
    let mut horizon_at = old;
    let mut cycle = |store: Arc<Store>, label: String| {
        let from = next;
        next += step;
        horizon_at += step;
        let now = at(horizon_at) + TimeDelta::days(30);
        async move {
            add_and_deliver(&store, from, from + step, start, spacing).await?;
            let (removed, _) = sweep(&store, now, a.batch).await?;
            anyhow::Ok((label, removed))
        }
    };
    for n in 1..=a.cycles {
        let (label, removed) = cycle(store.clone(), format!("busy, cycle {n}")).await?;
        kept = kept + step - removed;
        if let Place::Postgres(url) = &place {
            // A cycle here stands for days; autovacuum (a minute's naptime) would have
            // run: what it does, at once.
            sql(url, "VACUUM events, outbox, snapshots").await?;
        }
        report(
            &format!("{label}: +{step} new, -{removed} old"),
            &store,
            &place,
            kept,
        )
        .await?;
    }

    match &place {
        Place::Sled(dir) => {
            drop(store);
            let store = Arc::new(open(&place).await?);
            report("after a restart", &store, &place, kept).await?;
            let (_, removed) = cycle(store.clone(), String::new()).await?;
            kept = kept + step - removed;
            report("after a restart and one more cycle", &store, &place, kept).await?;
            drop(store);
            let (dir2, started) = (dir.clone(), Instant::now());
            let r = tokio::task::spawn_blocking(move || {
                hirehook::store::sled::rewrite::rewrite(&dir2, 64 << 20)
            })
            .await??;
            println!(
                "rewrote the store in {:.1?} ({:.1?} with the wait for sled's lock): {} keys, {} -> {}",
                r.took,
                started.elapsed(),
                r.keys,
                mb(r.before),
                mb(r.after)
            );
            let store = Arc::new(open(&place).await?);
            report("rewritten (hirehook store compact)", &store, &place, kept).await?;
            let (_, removed) = cycle(store.clone(), String::new()).await?;
            kept = kept + step - removed;
            report("rewritten, then one more cycle", &store, &place, kept).await?;
        }
        Place::Postgres(url) => {
            let tables = "events, outbox, snapshots";
            let started = Instant::now();
            sql(url, &format!("VACUUM {tables}")).await?;
            println!("VACUUM in {:.1?}", started.elapsed());
            report("after VACUUM", &store, &place, kept).await?;
            let started = Instant::now();
            sql(url, &format!("VACUUM FULL {tables}")).await?;
            println!(
                "VACUUM FULL in {:.1?} (the tables locked meanwhile)",
                started.elapsed()
            );
            report("after VACUUM FULL", &store, &place, kept).await?;
            let (_, removed) = cycle(store.clone(), String::new()).await?;
            kept = kept + step - removed;
            report("after VACUUM FULL and one more cycle", &store, &place, kept).await?;
        }
    }
    Ok(())
}
