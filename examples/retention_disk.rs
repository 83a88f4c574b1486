//! Does retention give disk space back on sled? Fills a store with delivered events, sweeps
//! most of them, keeps the store busy, restarts it, and rewrites it, printing the
//! directory's size after each step and how long each sweep batch held the store.
//!
//! ```sh
//! cargo run --release --example retention_disk -- --events 300000 --keep 10 --cycles 5
//! ```
//!
//! - fill: `--events` events (900-byte bodies, one subscriber, one application per five
//!   events with a 240-byte snapshot), detected one every few seconds over 60 days, each
//!   delivered (claimed, one attempt recorded);
//! - sweep: `[retention] events = "30d"` at a "now" where all but `--keep` % are old enough,
//!   in batches of `--batch` (the daemon's default), timing every batch;
//! - idle: `--idle` seconds with nothing to do (sled cleans segments in the background);
//! - busy: `--cycles` times, a tenth of `--events` new events committed and delivered,
//!   then swept as they age (steady state: as much comes as goes);
//! - restart: the store closed and opened again;
//! - rewrite: `store::sled::rewrite` (what `hirehook store compact` does on sled: every
//!   live key copied into fresh files that replace the old ones), then one more cycle.
//!
//! Sizes are the directory's files: their length and the blocks allocated to them (`du`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use hirehook::event::EventType;
use hirehook::store::{
    AttemptRecord, AttemptResult, NewEvent, PageCommit, RetentionPolicy, SledStore, SnapshotWrite,
    SweepCursor,
};

struct Args {
    events: u64,
    keep: u64,
    cycles: u64,
    batch: usize,
    idle: u64,
    /// Where to build the stores (kept afterwards); a temporary directory by default.
    path: Option<std::path::PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        events: 300_000,
        keep: 10,
        cycles: 5,
        batch: hirehook::retention::BATCH,
        idle: 0,
        path: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().context("every flag takes a value")?;
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

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
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

fn report(step: &str, dir: &Path, events_kept: u64) {
    let (len, alloc) = dir_size(dir);
    println!(
        "{step:<44} files {:>9}  allocated {:>9}  events in store {events_kept:>8}  RSS {:>9}",
        mb(len),
        mb(alloc),
        mb(rss())
    );
}

const SUBSCRIBER: &str = "crm";
const PAGE: u64 = 250;

/// Commits events `from..to` (one every `spacing` from `start`), then delivers them.
fn add_and_deliver(
    store: &SledStore,
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
        store.commit_page("gh:1", page)?;
        i = end;
    }
    store.flush()?;
    let far = start + TimeDelta::days(3650);
    loop {
        let due = store.claim_due(SUBSCRIBER, far, 1000, Duration::from_secs(60))?;
        if due.is_empty() {
            break;
        }
        for d in due {
            let attempt = AttemptRecord {
                attempt: 1,
                at: d.detected_at + TimeDelta::seconds(1),
                status: Some(200),
                latency_ms: 3,
                error: None,
                response_prefix: None,
            };
            store.record_attempt(&d, &attempt, AttemptResult::Delivered)?;
        }
    }
    store.flush()?;
    Ok(())
}

/// Sweeps until nothing old is left at `now`; returns (events removed, batch times).
fn sweep(
    store: &SledStore,
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
        let r = store.sweep(&policy, now, batch, &mut cursor)?;
        times.push(started.elapsed());
        removed += r.events;
        if !r.more {
            break;
        }
    }
    store.flush()?;
    Ok((removed, times))
}

fn percentile(times: &mut [Duration], p: f64) -> Duration {
    times.sort_unstable();
    let i = ((times.len() as f64 - 1.0) * p).round() as usize;
    times.get(i).copied().unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let tmp = tempfile::tempdir()?;
    let root = a.path.clone().unwrap_or_else(|| tmp.path().to_owned());
    let dir = root.join("store");
    let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    // The first 100 - keep % of the events fall before the horizon at `now`.
    let spacing = TimeDelta::milliseconds(
        i64::try_from(60 * 86_400_000 / a.events.max(1))
            .unwrap_or(1)
            .max(1),
    );
    let at = |n: u64| start + spacing * i32::try_from(n).unwrap_or(i32::MAX);
    let old = a.events * (100 - a.keep.min(100)) / 100;
    let now = at(old) + TimeDelta::days(30);

    let store = SledStore::open(&dir, 64 << 20)?;
    let started = Instant::now();
    add_and_deliver(&store, 0, a.events, start, spacing)?;
    println!(
        "filled {} events (delivered) in {:.1?}",
        a.events,
        started.elapsed()
    );
    report("full", &dir, a.events);

    let (removed, mut times) = sweep(&store, now, a.batch)?;
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
    report("right after the sweep (flushed)", &dir, kept);
    if a.idle > 0 {
        // sled cleans segments from its flusher thread (every 500 ms, half of it at most).
        std::thread::sleep(Duration::from_secs(a.idle));
        store.flush()?;
        report(&format!("after {} s idle", a.idle), &dir, kept);
    }

    // Steady state: as much comes as goes.
    let step = a.events / 10;
    let mut next = a.events;
    let mut horizon_at = old;
    for cycle in 1..=a.cycles {
        add_and_deliver(&store, next, next + step, start, spacing)?;
        next += step;
        horizon_at += step;
        let (removed, _) = sweep(&store, at(horizon_at) + TimeDelta::days(30), a.batch)?;
        kept = kept + step - removed;
        report(
            &format!("busy, cycle {cycle}: +{step} new, -{removed} old"),
            &dir,
            kept,
        );
    }

    drop(store);
    // sled releases its lock from a background thread a moment after the last handle.
    std::thread::sleep(Duration::from_millis(200));
    let store = SledStore::open(&dir, 64 << 20)?;
    report("after a restart", &dir, kept);
    add_and_deliver(&store, next, next + step, start, spacing)?;
    let (removed, _) = sweep(&store, at(horizon_at + step) + TimeDelta::days(30), a.batch)?;
    kept = kept + step - removed;
    report("after a restart and one more cycle", &dir, kept);
    drop(store);
    std::thread::sleep(Duration::from_millis(200));

    // Offline rewrite (what `hirehook store compact` does on sled).
    let r = hirehook::store::sled::rewrite::rewrite(&dir, 64 << 20)?;
    println!(
        "rewrote the store in {:.1?}: {} keys, {} -> {}",
        r.took,
        r.keys,
        mb(r.before),
        mb(r.after)
    );
    report("rewritten (store compact)", &dir, kept);
    let store = SledStore::open(&dir, 64 << 20)?;
    add_and_deliver(&store, next + step, next + 2 * step, start, spacing)?;
    let (removed, _) = sweep(
        &store,
        at(horizon_at + 2 * step) + TimeDelta::days(30),
        a.batch,
    )?;
    kept = kept + step - removed;
    report("rewritten, then one more cycle", &dir, kept);
    Ok(())
}
