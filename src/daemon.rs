//! `hirehook run`: pollers and the deliverer in one process, until shut down.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ats::KomboClient;
use crate::config::Config;
use crate::deliver::worker::{DeliverError, Deliverer, DeliverySettings, Target, Waker};
use crate::store::Store;
use crate::sync::{SyncSettings, Syncer};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Deliver(#[from] DeliverError),
    #[error("cannot build the HTTP client for Kombo: {0}")]
    Client(#[from] reqwest::Error),
}

/// Everything `hirehook run` runs.
pub struct Daemon {
    config: Arc<Config>,
    store: Arc<Store>,
    syncer: Syncer,
    deliverer: Deliverer,
}

impl Daemon {
    pub fn new(config: Config, store: Arc<Store>) -> Result<Self, StartError> {
        let client = KomboClient::new(config.kombo.client_config())?;
        let syncer = Syncer::new(client, store.clone(), SyncSettings::from_config(&config));
        let deliverer = Deliverer::new(
            store.clone(),
            Target::from_config(&config)?,
            DeliverySettings::from_config(&config),
        )?;
        Ok(Self {
            config: Arc::new(config),
            store,
            syncer,
            deliverer,
        })
    }

    /// Polls every integration on its interval and delivers until `shutdown`; then stops
    /// polling, lets deliveries in flight finish (grace period), flushes the store.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), crate::store::StoreError> {
        let waker = self.deliverer.waker();
        let mut pollers = tokio::task::JoinSet::new();
        for integration in &self.config.integrations {
            pollers.spawn(poll_loop(
                self.syncer.clone(),
                integration.id.clone(),
                self.config.kombo.poll_interval,
                waker.clone(),
                shutdown.clone(),
            ));
        }
        // Anything queued before this start (a backlog, retries due) goes out at once.
        waker.wake();
        self.deliverer.run(shutdown.clone()).await;
        while pollers.join_next().await.is_some() {}
        self.store.flush_async().await?;
        tracing::info!("stopped; store flushed");
        Ok(())
    }
}

/// Syncs one integration every `interval` until shut down. A sync cut short by shutdown
/// loses nothing: pages are atomic and the watermark only moves at the end.
async fn poll_loop(
    syncer: Syncer,
    integration_id: String,
    interval: Duration,
    waker: Waker,
    shutdown: CancellationToken,
) {
    loop {
        let sync = syncer.sync(&integration_id, |_| waker.wake());
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = sync => result,
        };
        match result {
            Ok(report) => tracing::info!(
                integration = %report.integration_id,
                kind = report.kind.as_str(),
                pages = report.pages,
                records = report.records,
                events = report.events(),
                held = report.held,
                rejected = report.rejected.len(),
                duration_ms = report.duration.as_millis() as u64,
                "sync finished"
            ),
            Err(err) => tracing::error!(integration = %integration_id, "sync failed: {err}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
