//! The PostgreSQL store's throughput, on a scratch server started here (or the server
//! `HIREHOOK_TEST_DATABASE_URL` names, in a fresh database): the figures behind the
//! PostgreSQL rows of BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release --example pg_store -- ingest 1000 200     # pages × snapshots per page
//! cargo run --release --example pg_store -- deliver 20000 1     # deliveries, events per application
//! ```
//!
//! `ingest P N`: P page commits of N new snapshots (240 bytes each) of one integration,
//! one after another as a sync commits them (fenced: the replica holds the lease), once
//! as a baseline (snapshots only) and once emitting (one event and one outbox row per
//! application). Prints applications per second.
//!
//! `deliver D K`: D pending deliveries to one subscriber (K events per application, so
//! D / K applications), then one PgStore claims them 64 at a time and records each
//! attempt as delivered, 16 attempts at once (a subscriber's default `max_in_flight`),
//! until none is left. Prints deliveries per second (claim + record, no HTTP).

use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt as _;
use hirehook::event::EventType;
use hirehook::store::postgres::{PgStore, test_database};
use hirehook::store::{AttemptRecord, AttemptResult, NewEvent, PageCommit, SnapshotWrite};

const INTEGRATION: &str = "greenhouse:bench";

async fn store() -> anyhow::Result<PgStore> {
    let url = test_database()
        .await
        .ok_or_else(|| anyhow!("no PostgreSQL (see the message above)"))?;
    PgStore::connect(&url, 16).await.context("connect")
}

fn at(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap_or_default()
}

fn event(i: u64, app: u64, sequence: u64) -> NewEvent {
    let id = format!("evt_{i:032x}");
    NewEvent {
        body: format!(
            "{{\"type\":\"application_created\",\"data\":{{\"event_id\":\"{id}\",\"padding\":\"{}\"}}}}",
            "x".repeat(400)
        )
        .into_bytes(),
        id,
        event_type: EventType::ApplicationCreated,
        application_id: format!("app_{app:08}"),
        sequence,
        detected_at: at(i as i64),
        subscribers: vec!["crm".to_owned()],
        hold: false,
    }
}

async fn ingest(pages: u64, per_page: u64, emit: bool) -> anyhow::Result<()> {
    let store = store().await?;
    if !store
        .try_lease(INTEGRATION, Duration::from_secs(3600))
        .await?
    {
        bail!("cannot take the lease");
    }
    let started = Instant::now();
    for page in 0..pages {
        let mut commit = PageCommit::default();
        for j in 0..per_page {
            let i = page * per_page + j;
            commit.snapshots.push(SnapshotWrite {
                application_id: format!("app_{i:08}"),
                bytes: vec![(i % 251) as u8; 240],
                is_new: true,
                previous_deleted_at: None,
            });
            if emit {
                commit.events.push(event(i, i, 1));
            }
        }
        store.commit_page(INTEGRATION, commit).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let apps = pages * per_page;
    let size = store.size_on_disk().await?;
    println!(
        "ingest ({}): {pages} pages × {per_page} = {apps} applications in {secs:.2} s: \
         {:.0} applications/s, {:.1} ms per page; database {:.0} MiB",
        if emit {
            "emit: snapshot + event + outbox row"
        } else {
            "baseline: snapshots"
        },
        apps as f64 / secs,
        secs * 1000.0 / pages as f64,
        size as f64 / (1 << 20) as f64
    );
    Ok(())
}

async fn deliver(deliveries: u64, per_app: u64) -> anyhow::Result<()> {
    let store = store().await?.without_fencing();
    let apps = (deliveries / per_app.max(1)).max(1);
    let mut commit = PageCommit::default();
    for i in 0..deliveries {
        commit.events.push(event(i, i % apps, i / apps + 1));
        if commit.events.len() == 1000 {
            store
                .commit_page(INTEGRATION, std::mem::take(&mut commit))
                .await?;
        }
    }
    store.commit_page(INTEGRATION, commit).await?;
    let now = at(deliveries as i64 + 1);
    let attempt = |n: u32| AttemptRecord {
        attempt: n,
        at: now,
        status: Some(200),
        latency_ms: 3,
        error: None,
        response_prefix: None,
    };
    let started = Instant::now();
    let mut done = 0u64;
    let mut claims = 0u64;
    let mut claim_time = Duration::ZERO;
    loop {
        let t = Instant::now();
        let due = store
            .claim_due("crm", now, 64, Duration::from_secs(60))
            .await?;
        claim_time += t.elapsed();
        claims += 1;
        if due.is_empty() {
            break;
        }
        let n = due.len() as u64;
        let results: Vec<_> = futures::stream::iter(due)
            .map(|d| {
                let store = &store;
                let attempt = attempt(1);
                async move {
                    store
                        .record_attempt("crm", &d, &attempt, AttemptResult::Delivered)
                        .await
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for r in results {
            r?;
        }
        done += n;
    }
    let secs = started.elapsed().as_secs_f64();
    if done != deliveries {
        bail!("delivered {done} of {deliveries}");
    }
    println!(
        "deliver: {deliveries} deliveries over {apps} applications ({per_app} each) in {secs:.2} s: \
         {:.0} deliveries/s ({claims} claims, {:.1} ms each on average)",
        deliveries as f64 / secs,
        claim_time.as_secs_f64() * 1000.0 / claims as f64
    );
    Ok(())
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
    match args.first().map(String::as_str) {
        Some("ingest") => {
            let (pages, per_page) = (num(1, 1000)?, num(2, 200)?);
            ingest(pages, per_page, false).await?;
            ingest(pages, per_page, true).await
        }
        Some("deliver") => deliver(num(1, 20_000)?, num(2, 1)?).await,
        _ => bail!(
            "usage: pg_store ingest [PAGES] [PER_PAGE] | deliver [DELIVERIES] [PER_APPLICATION]"
        ),
    }
}
