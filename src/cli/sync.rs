//! `hirehook sync --once`: one poll cycle of every integration.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use super::Failure;
use crate::ats::KomboClient;
use crate::config::Config;
use crate::store::{EventRecord, Store};
use crate::sync::{SyncReport, SyncSettings, Syncer};

/// Options of `hirehook sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Run one cycle and exit (the only mode: `hirehook run` polls continuously).
    #[arg(long, required = true)]
    pub once: bool,
}

/// Opens the store a config names for an operator command (never a poller: no lease is
/// needed to write); a held sled lock is a clear runtime error.
pub async fn open_store(config: &Config) -> Result<Arc<Store>, Failure> {
    Ok(Arc::new(open_poller_store(config).await?.unfenced()))
}

/// Opens the store for polling: on a shared store, page commits need the integration's
/// lease (fencing).
pub async fn open_poller_store(config: &Config) -> Result<Store, Failure> {
    Store::open(&config.store)
        .await
        .map_err(|e| Failure::Runtime(e.into()))
}

/// Loads a config file; any problem is a usage failure (exit 2).
pub fn load_config(path: &std::path::Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| Failure::Usage(e.into()))
}

/// Builds the syncer a config describes.
pub fn syncer(config: &Config, store: Arc<Store>) -> Result<Syncer, Failure> {
    let client = KomboClient::new(config.kombo.client_config())
        .context("cannot build the HTTP client for Kombo")?;
    Ok(Syncer::new(
        client,
        store,
        SyncSettings::from_config(config),
    ))
}

/// Syncs every integration once. Derived events go to stdout as JSON lines (the webhook
/// bodies) as soon as they are durable; a summary per integration goes to stderr. Exit 1
/// if any integration failed; the others still committed.
pub async fn run(args: SyncArgs) -> Result<(), Failure> {
    let config = load_config(&args.config)?;
    let store = Arc::new(open_poller_store(&config).await?);
    let syncer = syncer(&config, store.clone())?;
    let ttl = config.store.lease_ttl;
    let mut failed = Vec::new();
    for integration in &config.integrations {
        // One poller per integration, also beside running replicas: take its lease, and
        // keep it renewed while the sync runs.
        match store.try_lease(&integration.id, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                eprintln!(
                    "{}: not synced: another replica holds its lease and polls it (use that \
                     daemon's `POST /v1/integrations/{}/sync`)",
                    integration.id, integration.id
                );
                failed.push(integration.id.clone());
                continue;
            }
            Err(e) => {
                eprintln!("{}: not synced: cannot take its lease: {e}", integration.id);
                failed.push(integration.id.clone());
                continue;
            }
        }
        let renewal = tokio::spawn(renew_lease(store.clone(), integration.id.clone(), ttl));
        let mut stdout = std::io::stdout().lock();
        let mut write_error = None;
        let result = syncer
            .sync(&integration.id, |events: &[EventRecord]| {
                for event in events {
                    if let Err(e) = stdout
                        .write_all(&event.body)
                        .and_then(|()| stdout.write_all(b"\n"))
                    {
                        write_error.get_or_insert(e);
                    }
                }
            })
            .await;
        renewal.abort();
        if let Err(e) = store.release_lease(&integration.id).await {
            tracing::warn!(integration = %integration.id, "cannot give the lease back (it will lapse): {e}");
        }
        stdout.flush().ok();
        drop(stdout);
        if let Some(e) = write_error {
            return Err(Failure::Runtime(
                anyhow::Error::new(e).context("cannot write events to stdout"),
            ));
        }
        match result {
            Ok(report) => eprintln!("{}", summary(&report)),
            Err(err) => {
                eprintln!("{}: sync failed: {err}", integration.id);
                failed.push(integration.id.clone());
            }
        }
    }
    store.flush().await.context("cannot flush the store")?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow::anyhow!(
            "{} of {} integration(s) failed to sync: {}",
            failed.len(),
            config.integrations.len(),
            failed.join(", ")
        )))
    }
}

/// Renews one lease every `ttl / 3` until aborted.
async fn renew_lease(store: Arc<Store>, integration_id: String, ttl: std::time::Duration) {
    loop {
        tokio::time::sleep((ttl / 3).max(std::time::Duration::from_millis(100))).await;
        match store.try_lease(&integration_id, ttl).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                integration = %integration_id,
                "lease lost to another replica: this sync's next page will not commit"
            ),
            Err(e) => tracing::warn!(integration = %integration_id, "cannot renew the lease: {e}"),
        }
    }
}

/// One line per integration: kind, pages, records, events by type, held, duration.
pub fn summary(report: &SyncReport) -> String {
    let by_type: Vec<String> = report
        .events_by_type
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    let mut line = format!(
        "{}: {} sync, {} page(s), {} record(s), {} event(s){}, {:.2?}",
        report.integration_id,
        report.kind.as_str(),
        report.pages,
        report.records,
        report.events(),
        if by_type.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_type.join(", "))
        },
        report.duration
    );
    if report.held > 0 {
        line.push_str(&format!(
            "; {} event(s) HELD by the mass-change guard (see `hirehook events release`)",
            report.held
        ));
    }
    if !report.rejected.is_empty() {
        line.push_str(&format!(
            "; {} record(s) unreadable, watermark kept:\n  {}",
            report.rejected.len(),
            report.rejected.join("\n  ")
        ));
    }
    line
}
