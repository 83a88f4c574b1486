//! `hirehook store copy` at scale: a sled store of N snapshots and E events (each with a
//! delivery to two subscribers) copied into a fresh PostgreSQL database (a scratch server
//! started here, or the server `HIREHOOK_TEST_DATABASE_URL` names): the figures in
//! docs/operations.md ("Moving from sled to PostgreSQL").
//!
//! ```sh
//! cargo run --release --example store_copy -- 1000000 100000     # snapshots, events
//! cargo run --release --example store_copy -- 1000000 100000 2000 # ... in batches of 2,000
//! ```
//!
//! Builds the sled store first (pages of 1,000 applications over 4 integrations, 240-byte
//! snapshots, 600-byte event bodies; half the deliveries recorded as delivered), then
//! runs the copy the command runs (`hirehook::cli::store::copy`: one import transaction,
//! binary `COPY` per batch, the commit and `ANALYZE`) and prints the time and rates.
//! `PROBE=1` first times reading the sled store alone (snapshots, events, deliveries).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use hirehook::event::EventType;
use hirehook::store::postgres::{PgStore, test_database};
use hirehook::store::{
    AttemptRecord, AttemptResult, NewEvent, PageCommit, SledStore, SnapshotWrite,
};

const INTEGRATIONS: u64 = 4;

fn at(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap_or_default()
}

fn build(path: &std::path::Path, snapshots: u64, events: u64) -> anyhow::Result<SledStore> {
    let store = SledStore::open(path, 64 << 20)?;
    let per_integration = snapshots.div_ceil(INTEGRATIONS);
    let mut next_event = 0u64;
    let mut page = PageCommit::default();
    let mut integration = String::new();
    for i in 0..snapshots {
        let name = format!("greenhouse:bench{}", i / per_integration);
        if name != integration && !page.snapshots.is_empty() {
            store.commit_page(&integration, std::mem::take(&mut page))?;
        }
        integration = name;
        let app = format!("app_{i:08}");
        page.snapshots.push(SnapshotWrite {
            application_id: app.clone(),
            bytes: vec![(i % 251) as u8; 240],
            is_new: true,
            previous_deleted_at: None,
        });
        // Events spread evenly over the applications.
        if next_event < events && i * events / snapshots.max(1) >= next_event {
            let id = format!("evt_{next_event:032x}");
            page.events.push(NewEvent {
                body: format!(
                    "{{\"type\":\"application_created\",\"data\":{{\"event_id\":\"{id}\",\"padding\":\"{}\"}}}}",
                    "x".repeat(520)
                )
                .into_bytes(),
                id,
                event_type: EventType::ApplicationCreated,
                application_id: app,
                sequence: 1,
                detected_at: at(next_event as i64),
                subscribers: vec!["crm".to_owned(), "ats".to_owned()],
                hold: false,
            });
            next_event += 1;
        }
        if page.snapshots.len() == 1000 {
            store.commit_page(&integration, std::mem::take(&mut page))?;
        }
    }
    if !page.snapshots.is_empty() {
        store.commit_page(&integration, page)?;
    }
    store.flush()?;
    // Half of crm's deliveries delivered (an entry with an attempt).
    let now = at(events as i64 + 1);
    let mut recorded = 0;
    while recorded < events / 2 {
        let due = store.claim_due(
            "crm",
            now,
            ((events / 2 - recorded) as usize).min(1000),
            Duration::from_secs(60),
        )?;
        if due.is_empty() {
            break;
        }
        for d in &due {
            let attempt = AttemptRecord {
                attempt: 1,
                at: now,
                status: Some(200),
                latency_ms: 3,
                error: None,
                response_prefix: None,
            };
            store.record_attempt(d, &attempt, AttemptResult::Delivered)?;
        }
        recorded += due.len() as u64;
    }
    store.flush()?;
    Ok(store)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| -> anyhow::Result<u64> {
        args.get(i)
            .map(|s| s.parse::<u64>().context("a number"))
            .transpose()
            .map(|n| n.unwrap_or(default))
    };
    let (snapshots, events, batch) = (num(0, 1_000_000)?, num(1, 100_000)?, num(2, 5_000)?);
    if events > snapshots {
        bail!("at most one event per snapshot");
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sled");
    let started = Instant::now();
    let source = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || build(&path, snapshots, events)).await??
    };
    println!(
        "built the sled store: {snapshots} snapshots, {events} events, {} deliveries in {:.1?} ({:.0} MiB on disk)",
        events * 2,
        started.elapsed(),
        source.size_on_disk()? as f64 / (1 << 20) as f64
    );
    if std::env::var("PROBE").is_ok() {
        let t = Instant::now();
        let n = source.export_snapshots().filter(|r| r.is_ok()).count();
        println!("probe: {n} snapshots read in {:.2?}", t.elapsed());
        let t = Instant::now();
        let n = source.export_events().filter(|r| r.is_ok()).count();
        println!("probe: {n} events read in {:.2?}", t.elapsed());
        let t = Instant::now();
        let n = source.export_outbox().filter(|r| r.is_ok()).count();
        println!("probe: {n} deliveries read in {:.2?}", t.elapsed());
    }
    let url = test_database()
        .await
        .ok_or_else(|| anyhow!("no PostgreSQL (see the message above)"))?;
    let target = PgStore::connect(&url, 4).await?;
    let started = Instant::now();
    let report = hirehook::cli::store::copy(Arc::new(source), &target, batch as usize, true)
        .await
        .map_err(|e| match e {
            hirehook::cli::Failure::Usage(e) | hirehook::cli::Failure::Runtime(e) => e,
        })?;
    let took = started.elapsed();
    print!("{}", report.summary(&path, target.target(), took));
    let items = report.snapshots + report.events + report.deliveries;
    println!(
        "copy: {:.1} s in all, {:.0} items/s; database {:.0} MiB",
        took.as_secs_f64(),
        items as f64 / took.as_secs_f64(),
        target.size_on_disk().await? as f64 / (1 << 20) as f64
    );
    for (kind, n, t) in &report.phases {
        println!(
            "  {kind:<21} {n:>9} in {:>6.2} s: {:>8.0}/s",
            t.as_secs_f64(),
            *n as f64 / t.as_secs_f64()
        );
    }
    Ok(())
}
