//! `hirehook store migrate|copy|compact`: the PostgreSQL store's schema, moving a sled
//! store into PostgreSQL, and applying retention now.
//!
//! `copy` reads the sled store kind by kind on a blocking thread (see
//! `SledStore::export_*`) and hands batches to the async side, which writes them into one
//! import transaction (`PgStore::begin_import`): reading the next batch overlaps writing
//! this one, and a copy that fails anywhere writes nothing.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};

use super::Failure;
use super::sync::load_config;
use crate::config::{Config, StoreBackend};
use crate::store::postgres::{Import, PgStore, migrate, schema_version};
use crate::store::{
    DeliveryState, EventRecord, OutboxEntry, SledStore, Store, StoreError, SyncState,
};

/// Options of `hirehook store`.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Apply the PostgreSQL schema's migrations without starting; print the version.
    Migrate(MigrateArgs),
    /// Copy a sled store into the empty PostgreSQL store the config names.
    Copy(CopyArgs),
    /// Apply `[retention]` now (what `hirehook run` does every `sweep_interval`) and print
    /// what was removed.
    Compact(CompactArgs),
}

/// Options of `hirehook store compact`.
#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    /// The TOML config file (its `[store]` and `[retention]`).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Items per class each batch looks at or removes.
    #[arg(
        long,
        value_name = "N",
        default_value_t = crate::retention::BATCH as u32,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    pub batch: u32,
    /// sled only: skip the rewrite that gives the freed space back to the file system
    /// (sled 0.34 keeps it otherwise).
    #[arg(long)]
    pub no_rewrite: bool,
}

/// Options of `hirehook store migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The TOML config file (`[store] backend = "postgres"`).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Options of `hirehook store copy`.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The sled store to copy (the directory `[store] path` named); it must not be in use.
    #[arg(long, value_name = "PATH")]
    pub from: PathBuf,
    /// The TOML config file naming the PostgreSQL store to fill (`[store] backend =
    /// "postgres"`); that store must be empty.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Rows per batch (one `COPY` each).
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_BATCH,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    pub batch: u32,
}

/// Rows per batch: large enough that a batch's round trips cost little, small enough
/// that the batches in flight stay a few megabytes.
pub const DEFAULT_BATCH: u32 = 5_000;

/// The sled page cache while copying: the copy reads each page once, in key order.
const SOURCE_CACHE: u64 = 64 << 20;

/// Runs `hirehook store ...`.
pub async fn run(args: StoreArgs) -> Result<(), Failure> {
    match args.command {
        StoreCommand::Migrate(args) => run_migrate(args).await,
        StoreCommand::Copy(args) => run_copy(args).await,
        StoreCommand::Compact(args) => run_compact(args).await,
    }
}

async fn run_compact(args: CompactArgs) -> Result<(), Failure> {
    let config = load_config(&args.config)?;
    let store = match Store::open(&config.store).await {
        Ok(store) => Arc::new(store.unfenced()),
        Err(e @ StoreError::Locked { .. }) => {
            return Err(Failure::Runtime(anyhow::Error::new(e).context(
                "cannot compact the sled store while `hirehook run` has it open (it applies \
                 [retention] itself every sweep_interval; stop it to compact now)",
            )));
        }
        Err(e) => return Err(Failure::Runtime(e.into())),
    };
    let runtime = |e: StoreError| Failure::Runtime(e.into());
    let before = store.size_on_disk().await.map_err(runtime)?;
    let outcome = crate::retention::Sweeper::new(
        store.clone(),
        crate::store::RetentionPolicy::from(&config.retention),
        crate::clock::Clock::System,
    )
    .with_batch(args.batch as usize)
    .sweep()
    .await
    .map_err(runtime)?;
    store.flush().await.map_err(runtime)?;
    let mut after = store.size_on_disk().await.map_err(runtime)?;
    let mut rewritten = None;
    if config.store.backend == StoreBackend::Sled && !args.no_rewrite {
        drop(store);
        let (path, cache) = (config.store.path.clone(), config.store.cache_capacity.0);
        let report =
            tokio::task::spawn_blocking(move || crate::store::sled::rewrite::rewrite(&path, cache))
                .await
                .map_err(|e| Failure::Runtime(anyhow!("the rewrite failed: {e}")))?
                .map_err(|e| {
                    Failure::Runtime(anyhow::Error::new(e).context(
                "retention was applied, but rewriting the sled store to give the space back failed",
            ))
                })?;
        after = report.after;
        rewritten = Some(report);
    }
    print!(
        "{}",
        compact_summary(&config.retention, &outcome, before, after)
    );
    if let Some(r) = rewritten {
        println!(
            "rewrote the sled store in {:.1?}: {} keys, {} bytes of files before, {} after",
            r.took, r.keys, r.before, r.after
        );
    } else if config.store.backend == StoreBackend::Postgres {
        println!(
            "PostgreSQL reuses the space once (auto)vacuum has passed; `VACUUM FULL events, \
             outbox, snapshots` gives it back to the file system (docs/operations.md)"
        );
    }
    Ok(())
}

/// What `store compact` prints: the policy, then one row per class.
pub fn compact_summary(
    retention: &crate::config::RetentionConfig,
    outcome: &crate::retention::SweepOutcome,
    before: u64,
    after: u64,
) -> String {
    let mut out = format!(
        "retention (events {}, deleted applications {}): removed in {} batch(es), {:.1?} \
         (longest batch {:.1?})\n",
        retention.events,
        retention.deleted_applications,
        outcome.batches,
        outcome.took,
        outcome.longest_batch
    );
    let notes = [
        "with their bodies",
        "delivered or dead",
        "of those deliveries",
        "of removed and old dropped events",
        "of applications deleted upstream (tombstones kept)",
    ];
    for ((class, n), note) in outcome.removed.classes().into_iter().zip(notes) {
        out.push_str(&format!("  {class:<12}{n:>10}  {note}\n"));
    }
    out.push_str(&format!(
        "store size: {before} bytes before, {after} bytes after\n"
    ));
    out
}

/// The PostgreSQL URL of a config; a sled config is a usage error (exit 2).
fn postgres_url<'a>(config: &'a Config, path: &Path, why: &str) -> Result<&'a str, Failure> {
    if config.store.backend != StoreBackend::Postgres {
        return Err(Failure::Usage(anyhow!(
            "{} has store.backend = \"{}\": {why} (set backend = \"postgres\" and store.url)",
            path.display(),
            config.store.backend.as_str()
        )));
    }
    config
        .store
        .url
        .as_deref()
        .ok_or_else(|| Failure::Usage(anyhow!("{}: store.url is not set", path.display())))
}

async fn run_migrate(args: MigrateArgs) -> Result<(), Failure> {
    let config = load_config(&args.config)?;
    let url = postgres_url(
        &config,
        &args.config,
        "the sled store has no schema to migrate; `store migrate` is for the PostgreSQL store",
    )?;
    let runtime = |e: StoreError| Failure::Runtime(e.into());
    let before = schema_version(url).await.map_err(runtime)?;
    let now = migrate(url).await.map_err(runtime)?;
    if now > before {
        println!(
            "schema version {now} (applied {} migration(s))",
            now - before
        );
    } else {
        println!("already at version {now}");
    }
    Ok(())
}

async fn run_copy(args: CopyArgs) -> Result<(), Failure> {
    let config = load_config(&args.config)?;
    postgres_url(
        &config,
        &args.config,
        "`store copy` copies a sled store into PostgreSQL, so the config must name a PostgreSQL store",
    )?;
    // sled creates a store where there is none: make sure one is there first.
    if !args.from.join("conf").is_file() || !args.from.join("db").is_file() {
        return Err(Failure::Usage(anyhow!(
            "no sled store at {} (give the directory `[store] path` named in the sled config)",
            args.from.display()
        )));
    }
    let from = args.from.clone();
    let source = tokio::task::spawn_blocking(move || SledStore::open(&from, SOURCE_CACHE))
        .await
        .map_err(|e| Failure::Runtime(anyhow!("opening the sled store failed: {e}")))?
        .map_err(|e| match e {
            StoreError::Locked { .. } => Failure::Runtime(anyhow::Error::new(e).context(
                "cannot copy the sled store while another process has it open (stop \
                 `hirehook run` first: nothing may write to it during the copy, or after)",
            )),
            e => Failure::Runtime(e.into()),
        })?;
    let target = match Store::open(&config.store).await {
        Ok(Store::Postgres(p)) => p,
        Ok(Store::Sled(_)) => {
            return Err(Failure::Usage(anyhow!("the config names a sled store")));
        }
        Err(e) => return Err(Failure::Runtime(e.into())),
    };
    let started = Instant::now();
    let report = copy(Arc::new(source), &target, args.batch as usize, true).await?;
    print!(
        "{}",
        report.summary(&args.from, target.target(), started.elapsed())
    );
    Ok(())
}

/// What a copy moved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopyReport {
    pub snapshots: u64,
    /// Integrations with snapshots.
    pub integrations: u64,
    pub sync_states: u64,
    pub events: u64,
    /// The log sequences of the copied log (first, last), if any.
    pub event_range: Option<(u64, u64)>,
    pub held: u64,
    pub deliveries: u64,
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    pub disabled: u64,
    /// Tombstones of snapshots retention purged.
    pub purged: u64,
    /// Dropped held events whose ids retention has not let go yet.
    pub dropped: u64,
    /// The target's log counter: the next event gets this + 1.
    pub log_counter: u64,
    /// Time spent on each kind, in copy order, with how many items.
    pub phases: Vec<(&'static str, u64, Duration)>,
}

impl CopyReport {
    /// The summary `store copy` prints.
    pub fn summary(&self, from: &Path, target: &str, took: Duration) -> String {
        let items = self.snapshots
            + self.sync_states
            + self.events
            + self.held
            + self.deliveries
            + self.disabled
            + self.purged
            + self.dropped;
        let mut out = format!(
            "copied the sled store at {} into PostgreSQL at {target}: {items} item(s) in {:.1?} ({}/s)\n",
            from.display(),
            took,
            rate(items, took)
        );
        let range = self
            .event_range
            .map(|(a, b)| format!("log sequences {a}..{b}"))
            .unwrap_or_default();
        let rows: [(&str, u64, String); 9] = [
            (
                "snapshots",
                self.snapshots,
                format!("{} integration(s)", self.integrations),
            ),
            ("sync states", self.sync_states, String::new()),
            ("events", self.events, range),
            ("held events", self.held, String::new()),
            (
                "deliveries",
                self.deliveries,
                format!(
                    "pending {}, delivered {}, dead {}",
                    self.pending, self.delivered, self.dead
                ),
            ),
            ("disabled subscribers", self.disabled, String::new()),
            ("purged applications", self.purged, String::new()),
            ("dropped events", self.dropped, String::new()),
            (
                "log counter",
                self.log_counter,
                format!("the next event gets {}", self.log_counter + 1),
            ),
        ];
        for (what, n, note) in rows {
            let line = format!("  {what:<21}{n:>10}  {note}");
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn rate(n: u64, took: Duration) -> u64 {
    let secs = took.as_secs_f64();
    if secs > 0.0 {
        (n as f64 / secs) as u64
    } else {
        n
    }
}

/// What the reading side sends: a kind starts (with how many items it expects, when
/// that is cheap to know), a batch of it, or the end.
enum Batch {
    /// The next kind: its name and the expected number of items (`None`: not known
    /// without reading them all).
    Phase(&'static str, Option<u64>),
    SyncStates(Vec<(String, SyncState)>),
    Snapshots(Vec<(String, String, Vec<u8>)>),
    Events(Vec<EventRecord>),
    Held(Vec<EventRecord>),
    Outbox(Vec<(String, u64, OutboxEntry)>),
    Disabled(Vec<(String, String)>),
    Purged(Vec<(String, String, Vec<u8>)>),
    Dropped(Vec<(u64, String, crate::ats::Timestamp)>),
    /// The end: the highest log sequence the source's event-id index holds, and the last
    /// one the source handed out to an event it still has.
    Done {
        max_indexed_seq: u64,
        last_log_seq: u64,
    },
}

type Sender = tokio::sync::mpsc::Sender<Result<Batch, StoreError>>;

/// Sends `items` in batches of `size`, `seen` called on each. False when reading failed
/// (the error was sent) or the receiver is gone (the copy failed): stop.
fn send_all<T>(
    items: impl Iterator<Item = Result<T, StoreError>>,
    size: usize,
    tx: &Sender,
    wrap: impl Fn(Vec<T>) -> Batch,
    mut seen: impl FnMut(&T),
) -> bool {
    let mut batch = Vec::with_capacity(size);
    for item in items {
        match item {
            Ok(item) => {
                seen(&item);
                batch.push(item);
                if batch.len() >= size {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(size));
                    if tx.blocking_send(Ok(wrap(full))).is_err() {
                        return false;
                    }
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return false;
            }
        }
    }
    batch.is_empty() || tx.blocking_send(Ok(wrap(batch))).is_ok()
}

/// Reads every kind from `store` in batches of `size` and sends them in copy order
/// (events before the deliveries that refer to them), each kind announced with what it
/// is expected to hold: snapshots by the sync states' application counts, events by the
/// log's bounds, deliveries by the subscribers of the logged events (each has one). The
/// source's event-id index is only read for the highest log sequence it holds: PostgreSQL
/// knows an id by its event (logged or held) or its dropped-event marker, which are
/// copied. Stops early when the receiver is gone (the copy failed).
fn produce(store: &SledStore, size: usize, tx: &Sender) {
    let phase = |kind, total| tx.blocking_send(Ok(Batch::Phase(kind, total))).is_ok();
    let mut applications = 0u64;
    let (mut deliveries, mut max_indexed_seq) = (0u64, 0u64);
    let log_bounds = match store.log_bounds() {
        Ok(bounds) => bounds,
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    };
    let ok = phase("sync states", None)
        && send_all(
            store.export_sync_states(),
            size,
            tx,
            Batch::SyncStates,
            |(_, state)| applications += state.applications,
        )
        && phase("snapshots", Some(applications))
        && send_all(store.export_snapshots(), size, tx, Batch::Snapshots, |_| {})
        && phase("events", log_bounds.map(|(first, last)| last - first + 1))
        && send_all(store.export_events(), size, tx, Batch::Events, |e| {
            deliveries += e.subscribers.len() as u64;
        })
        && phase("held events", None)
        && send_all(store.export_held(), size, tx, Batch::Held, |_| {})
        && highest_indexed(store, tx, &mut max_indexed_seq)
        && phase("deliveries", Some(deliveries))
        && send_all(store.export_outbox(), size, tx, Batch::Outbox, |_| {})
        && phase("disabled subscribers", None)
        && send_all(store.export_disabled(), size, tx, Batch::Disabled, |_| {})
        && phase("purged applications", None)
        && send_all(store.export_purged(), size, tx, Batch::Purged, |_| {})
        && phase("dropped events", None)
        && send_all(store.export_dropped(), size, tx, Batch::Dropped, |_| {});
    if ok {
        let _ = tx.blocking_send(Ok(Batch::Done {
            max_indexed_seq,
            last_log_seq: store.last_log_seq(),
        }));
    }
}

/// Reads the source's event-id index for the highest log sequence it holds, into `max`
/// (the log counter must not hand any of them out again). False when reading failed (the
/// error was sent): stop.
fn highest_indexed(store: &SledStore, tx: &Sender, max: &mut u64) -> bool {
    for item in store.export_event_ids() {
        match item {
            Ok((_, seq)) => *max = (*max).max(seq),
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return false;
            }
        }
    }
    true
}

/// Progress of one kind on stderr: a bar on a terminal (a counter when the total is not
/// known), a line every few seconds otherwise, and a line when the kind is done.
struct Phase {
    kind: &'static str,
    total: Option<u64>,
    done: u64,
    started: Instant,
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl Phase {
    fn new(kind: &'static str, total: Option<u64>, show: bool) -> Phase {
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let (bar, template) = match total {
                Some(n) => (
                    ProgressBar::new(n),
                    "{prefix:>20} {bar:40} {pos}/{len} {per_sec} eta {eta}",
                ),
                None => (
                    ProgressBar::no_length(),
                    "{prefix:>20} {spinner} {pos} {per_sec}",
                ),
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(kind);
            bar
        });
        Phase {
            kind,
            total,
            done: 0,
            started: Instant::now(),
            bar,
            last_line: Instant::now(),
        }
    }

    fn add(&mut self, n: u64, show: bool) {
        self.done += n;
        match &self.bar {
            Some(bar) => {
                // An estimate passed: the bar grows.
                if bar.length().is_some_and(|len| self.done > len) {
                    bar.set_length(self.done);
                }
                bar.inc(n);
            }
            None if show && self.last_line.elapsed() >= Duration::from_secs(5) => {
                self.last_line = Instant::now();
                let of = self.total.map(|t| format!(" of ~{t}")).unwrap_or_default();
                eprintln!("{}: {}{of} ...", self.kind, self.done);
            }
            None => {}
        }
    }

    fn finish(self, show: bool) -> (&'static str, u64, Duration) {
        let took = self.started.elapsed();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if show {
            eprintln!(
                "{}: {} copied in {:.1?} ({}/s)",
                self.kind,
                self.done,
                took,
                rate(self.done, took)
            );
        }
        (self.kind, self.done, took)
    }
}

/// Copies everything in `source` into `target`, which must be empty, in one transaction
/// (batches of `batch` rows); `progress` shows bars or lines on stderr. Fails — and
/// writes nothing — when the target is not empty or anything goes wrong.
pub async fn copy(
    source: Arc<SledStore>,
    target: &PgStore,
    batch: usize,
    progress: bool,
) -> Result<CopyReport, Failure> {
    let runtime = |e: StoreError| Failure::Runtime(e.into());
    let import = target.begin_import().await.map_err(runtime)?;
    if let Some(what) = import.is_empty().await.map_err(runtime)? {
        return Err(Failure::Runtime(anyhow!(
            "the PostgreSQL store at {} is not empty: it holds {what}. `store copy` fills an \
             empty store only: give it a new database (nothing was written)",
            import.target()
        )));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let producer = {
        let batch = batch.max(1);
        tokio::task::spawn_blocking(move || produce(&source, batch, &tx))
    };
    let result = consume(&import, &mut rx, progress).await;
    // The producer stops once the receiver is gone (on an error, before its end).
    drop(rx);
    let _ = producer.await;
    let report = result?;
    import.commit().await.map_err(runtime)?;
    Ok(report)
}

/// Writes the batches into the import as they come; then the log counter.
async fn consume(
    import: &Import,
    rx: &mut tokio::sync::mpsc::Receiver<Result<Batch, StoreError>>,
    progress: bool,
) -> Result<CopyReport, Failure> {
    let runtime = |e: StoreError| Failure::Runtime(e.into());
    let mut report = CopyReport::default();
    let mut phase: Option<Phase> = None;
    let mut last_integration: Option<String> = None;
    let mut max_seq = 0u64;
    let mut done = None;
    while let Some(batch) = rx.recv().await {
        let n = match batch.map_err(runtime)? {
            Batch::Phase(kind, total) => {
                if let Some(p) = phase.take() {
                    report.phases.push(p.finish(progress));
                }
                phase = Some(Phase::new(kind, total, progress));
                0
            }
            Batch::SyncStates(rows) => {
                report.sync_states += rows.len() as u64;
                import.import_sync_states(&rows).await.map_err(runtime)?
            }
            Batch::Snapshots(rows) => {
                for (integration, _, _) in &rows {
                    if last_integration.as_deref() != Some(integration) {
                        report.integrations += 1;
                        last_integration = Some(integration.clone());
                    }
                }
                report.snapshots += rows.len() as u64;
                import.import_snapshots(&rows).await.map_err(runtime)?
            }
            Batch::Events(records) => {
                for r in &records {
                    max_seq = max_seq.max(r.log_seq);
                    report.event_range = Some(match report.event_range {
                        None => (r.log_seq, r.log_seq),
                        Some((a, b)) => (a.min(r.log_seq), b.max(r.log_seq)),
                    });
                }
                report.events += records.len() as u64;
                import.import_events(&records).await.map_err(runtime)?
            }
            Batch::Held(records) => {
                for r in &records {
                    max_seq = max_seq.max(r.log_seq);
                }
                report.held += records.len() as u64;
                import.import_held(&records).await.map_err(runtime)?
            }
            Batch::Outbox(rows) => {
                for (_, _, entry) in &rows {
                    match entry.state {
                        DeliveryState::Pending => report.pending += 1,
                        DeliveryState::Delivered => report.delivered += 1,
                        DeliveryState::Dead => report.dead += 1,
                    }
                }
                report.deliveries += rows.len() as u64;
                import.import_outbox(&rows).await.map_err(runtime)?
            }
            Batch::Disabled(rows) => {
                report.disabled += rows.len() as u64;
                import.import_disabled(&rows).await.map_err(runtime)?
            }
            Batch::Purged(rows) => {
                report.purged += rows.len() as u64;
                import.import_purged(&rows).await.map_err(runtime)?
            }
            Batch::Dropped(rows) => {
                for (seq, _, _) in &rows {
                    max_seq = max_seq.max(*seq);
                }
                report.dropped += rows.len() as u64;
                import.import_dropped(&rows).await.map_err(runtime)?
            }
            Batch::Done {
                max_indexed_seq,
                last_log_seq,
            } => {
                done = Some(max_indexed_seq.max(last_log_seq));
                0
            }
        };
        if let Some(p) = phase.as_mut() {
            p.add(n, progress);
        }
    }
    if let Some(p) = phase.take() {
        report.phases.push(p.finish(progress));
    }
    let Some(last_known) = done else {
        return Err(Failure::Runtime(anyhow!(
            "reading the sled store stopped before its end (nothing was written)"
        )));
    };
    report.log_counter = max_seq.max(last_known);
    import
        .set_log_counter(report.log_counter)
        .await
        .map_err(runtime)?;
    Ok(report)
}
