//! `hirehook run`: pollers, the deliverer, the retention sweep and the admin server in one
//! process, until shut down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminError, AdminState, ServeLimits};
use crate::ats::KomboClient;
use crate::clock::Clock;
use crate::config::Config;
use crate::deliver::worker::{DeliverError, Deliverer, DeliverySettings, Target, Waker};
use crate::leases::{Held, LeaseLoop, Unit};
use crate::metrics::Metrics;
use crate::retention::Sweeper;
use crate::store::{RetentionPolicy, Store, StoreError};
use crate::store_health::StoreHealth;
use crate::sync::{SyncError, SyncSettings, Syncer};
use crate::triggers::{PollTrigger, PollTriggers};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Deliver(#[from] DeliverError),
    #[error("cannot build the HTTP client for Kombo: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything `hirehook run` runs.
pub struct Daemon {
    config: Arc<Config>,
    store: Arc<Store>,
    syncer: Syncer,
    deliverer: Deliverer,
    /// One registry for this daemon, served at `/metrics`.
    metrics: Metrics,
    /// The store failures the pollers and the deliverer run into, for `/readyz`.
    store_health: StoreHealth,
    triggers: PollTriggers,
    /// The admin listener, once bound (by [`Daemon::bind_admin`] or handed in).
    admin: Option<TcpListener>,
    /// Timeouts and connection cap of the admin listener (the defaults, unless a test
    /// shortens them).
    admin_limits: ServeLimits,
    /// Where "now" comes from (the retention sweep's too).
    clock: Clock,
}

impl Daemon {
    /// Builds the pollers and the deliverer of `config`. Nothing runs or listens yet.
    pub fn new(config: Config, store: Arc<Store>) -> Result<Self, StartError> {
        Self::with_clock(config, store, Clock::System)
    }

    /// As [`Daemon::new`], with every "now" of the pollers and the deliverer read from
    /// `clock` (tests run the daemon on tokio's paused clock).
    pub fn with_clock(config: Config, store: Arc<Store>, clock: Clock) -> Result<Self, StartError> {
        let metrics = Metrics::new();
        let store_health = StoreHealth::default();
        let client = KomboClient::new(config.kombo.client_config())?
            .with_error_observer(metrics.kombo_error_observer());
        let syncer = Syncer::new(client, store.clone(), SyncSettings::from_config(&config))
            .with_metrics(metrics.clone())
            .with_clock(clock);
        let deliverer = Deliverer::new(
            store.clone(),
            Target::from_config(&config)?,
            DeliverySettings {
                clock,
                ..DeliverySettings::from_config(&config)
            },
        )?
        .with_metrics(metrics.clone())
        .with_store_health(store_health.clone());
        let triggers = PollTriggers::new(config.integrations.iter().map(|i| i.id.as_str()));
        Ok(Self {
            config: Arc::new(config),
            store,
            syncer,
            deliverer,
            metrics,
            store_health,
            triggers,
            admin: None,
            admin_limits: ServeLimits::default(),
            clock,
        })
    }

    /// Binds `[admin] listen` now (refusing a non-loopback address without a token) and
    /// returns the bound address (useful with port 0). [`Daemon::run`] binds if this was
    /// not called.
    pub async fn bind_admin(&mut self) -> Result<SocketAddr, StartError> {
        let listener = crate::admin::bind(&self.config).await?;
        self.set_admin_listener(listener)
    }

    /// Serves the admin API on an already bound listener instead of `[admin] listen`
    /// (still refused on a non-loopback address without a token).
    pub fn set_admin_listener(&mut self, listener: TcpListener) -> Result<SocketAddr, StartError> {
        let addr = listener.local_addr().map_err(|source| AdminError::Bind {
            listen: self.config.admin.listen,
            source,
        })?;
        crate::admin::check_exposure(addr, self.config.admin.token.as_ref())?;
        self.admin = Some(listener);
        Ok(addr)
    }

    /// Serves the admin API within `limits` instead of the defaults (tests use short
    /// timeouts so they need not wait 10 s).
    pub fn set_admin_limits(&mut self, limits: ServeLimits) {
        self.admin_limits = limits;
    }

    /// The "poll now" triggers (what `POST /v1/integrations/{id}/sync` pulls).
    pub fn triggers(&self) -> PollTriggers {
        self.triggers.clone()
    }

    /// Polls every integration on its interval (or at once when triggered), delivers, and
    /// serves the admin API until `shutdown`; then stops polling and serving, lets
    /// deliveries in flight finish (grace period), flushes the store.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), RunError> {
        let listener = match self.admin.take() {
            Some(listener) => listener,
            None => crate::admin::bind(&self.config).await?,
        };
        let waker = self.deliverer.waker();
        let admin_state = AdminState::new(
            self.config.clone(),
            self.store.clone(),
            self.metrics.clone(),
            self.triggers.clone(),
            waker.clone(),
            self.store_health.clone(),
        );
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "admin API listening");
        }
        let admin = tokio::spawn(crate::admin::serve_with_limits(
            listener,
            admin_state,
            self.admin_limits,
            shutdown.clone(),
        ));
        let units = self
            .config
            .integrations
            .iter()
            .map(|i| Unit::Integration(i.id.clone()))
            .chain(
                self.config
                    .subscribers
                    .iter()
                    .map(|s| Unit::Subscriber(s.name.clone())),
            )
            .collect();
        let (lease_loop, held) = LeaseLoop::new(
            self.store.clone(),
            units,
            self.config.store.lease_ttl,
            self.store_health.clone(),
        );
        // The first round before any poller looks: with the embedded store it grants every
        // lease at once.
        lease_loop.round().await;
        let leases = tokio::spawn(lease_loop.run(shutdown.clone()));
        let ctx = PollContext {
            syncer: self.syncer.clone(),
            interval: self.config.kombo.poll_interval,
            held: held.clone(),
            waker: waker.clone(),
            health: self.store_health.clone(),
            metrics: self.metrics.clone(),
        };
        let mut pollers = tokio::task::JoinSet::new();
        for integration in &self.config.integrations {
            pollers.spawn(poll_loop(
                ctx.clone(),
                integration.id.clone(),
                self.triggers.get(&integration.id),
                shutdown.clone(),
            ));
        }
        // Commits by other replicas wake this one's workers at once.
        match self.store.wakeups().await {
            Ok(Some(mut wakeups)) => {
                let waker = waker.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            changed = wakeups.changed() => {
                                if changed.is_err() {
                                    return;
                                }
                                waker.wake();
                            }
                        }
                    }
                });
            }
            Ok(None) => {}
            Err(e) => tracing::error!(
                "cannot listen for other replicas' commits (deliveries they queue wait for this \
                 replica's next look at the store): {e}"
            ),
        }
        let retention = self.config.retention;
        let policy = RetentionPolicy::from(&retention);
        let rewrite_growth = match &*self.store {
            Store::Sled(_) => self.config.store.rewrite_growth,
            Store::Postgres(_) => crate::config::RewriteGrowth::Never,
        };
        let sweeper = if policy == RetentionPolicy::default()
            && rewrite_growth == crate::config::RewriteGrowth::Never
        {
            tracing::info!("retention: [retention] keeps everything forever; no sweeps");
            None
        } else {
            tracing::info!(
                events = %retention.events,
                deleted_applications = %retention.deleted_applications,
                sweep_interval = ?retention.sweep_interval,
                rewrite_growth = %rewrite_growth,
                "retention: sweeping every sweep_interval"
            );
            let sweeper = Sweeper::new(self.store.clone(), policy, self.clock)
                .with_metrics(self.metrics.clone())
                .with_rewrite(rewrite_growth);
            Some(tokio::spawn(sweeper.run(
                retention.sweep_interval,
                self.store_health.clone(),
                shutdown.clone(),
            )))
        };
        // Anything queued before this start (a backlog, retries due) goes out at once.
        waker.wake();
        self.deliverer.with_leases(held).run(shutdown.clone()).await;
        while pollers.join_next().await.is_some() {}
        if let Some(sweeper) = sweeper
            && let Err(e) = sweeper.await
        {
            tracing::error!("the retention task failed: {e}");
        }
        if let Err(e) = leases.await {
            tracing::error!("the lease task failed: {e}");
        }
        match admin.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("{e}"),
            Err(e) => tracing::error!("the admin server task failed: {e}"),
        }
        self.store.flush().await?;
        tracing::info!("stopped; store flushed");
        Ok(())
    }
}

/// What a poller shares with the rest of the daemon.
#[derive(Clone)]
struct PollContext {
    syncer: Syncer,
    interval: Duration,
    /// The integrations this process holds leases on.
    held: Held,
    /// Wakes the deliverer after a page with events.
    waker: Waker,
    /// Store failures are reported here (a Kombo failure says nothing about the store).
    health: StoreHealth,
    /// Counts the writes fencing refused.
    metrics: Metrics,
}

/// The first wait before a sync that failed on the store is tried again; it doubles with
/// each failure in a row, up to the poll interval (never longer than polling would wait).
const STORE_RETRY_FIRST: Duration = Duration::from_secs(1);

/// How long to wait before the next sync after `failures` syncs in a row failed on the
/// store: [`STORE_RETRY_FIRST`], doubled per failure, at most `interval`; `interval` when
/// the last sync did not fail on the store.
fn next_poll_in(interval: Duration, store_failures: u32) -> Duration {
    if store_failures == 0 {
        return interval;
    }
    let factor = 1u32 << (store_failures - 1).min(16);
    STORE_RETRY_FIRST.saturating_mul(factor).min(interval)
}

/// Syncs one integration every `interval`, or as soon as it is triggered, while this
/// process holds its lease, until shut down. A sync cut short by shutdown loses nothing:
/// pages are atomic and the watermark only moves at the end.
async fn poll_loop(
    ctx: PollContext,
    integration_id: String,
    trigger: Arc<PollTrigger>,
    shutdown: CancellationToken,
) {
    let PollContext {
        syncer,
        interval,
        mut held,
        waker,
        health,
        metrics,
    } = ctx;
    let operation = format!("sync of {integration_id}");
    // Syncs in a row that failed on the store (the database away): they are retried
    // sooner than the poll interval, backing off.
    let mut store_failures = 0u32;
    loop {
        if !held.holds(&integration_id) {
            // Another replica polls it (or none may yet): wait for this one's lease. What
            // this replica's syncs of it ran into is no longer its concern.
            health.succeeded(&operation);
            store_failures = 0;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = held.changed() => continue,
            }
        }
        trigger.starting();
        let sync = syncer.sync(&integration_id, |events| {
            // For latency measurements across processes (examples/e2e.rs): the moment a
            // page's events became durable, by id (ids carry no candidate data).
            tracing::debug!(target: "hirehook::durable", ids = %EventIds(events), "events durable");
            waker.wake();
        });
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = sync => result,
        };
        match &result {
            Ok(_) => {
                health.succeeded(&operation);
                store_failures = 0;
            }
            // Fencing did its job: the store works, this replica's lease lapsed or moved.
            // The lease loop drops it at its next round (or renews it, if it is free).
            Err(SyncError::Store {
                source: StoreError::LeaseLost { .. },
                ..
            }) => {
                health.succeeded(&operation);
                metrics.lease_lost(&integration_id);
                store_failures = 0;
            }
            Err(SyncError::Store { source, .. }) => {
                health.failed(&operation, source);
                store_failures = store_failures.saturating_add(1);
            }
            Err(SyncError::Kombo(_)) => store_failures = 0,
        }
        let wait = next_poll_in(interval, store_failures);
        match result {
            Ok(report) => tracing::info!(
                integration = %report.integration_id,
                kind = report.kind.as_str(),
                pages = report.pages,
                records = report.records,
                unchanged = report.unchanged,
                events = report.events(),
                held = report.held,
                rejected = report.rejected.len(),
                duration_ms = report.duration.as_millis() as u64,
                "sync finished"
            ),
            Err(
                err @ SyncError::Store {
                    source: StoreError::LeaseLost { .. },
                    ..
                },
            ) => tracing::warn!(
                integration = %integration_id,
                "sync stopped, nothing committed: {err}"
            ),
            Err(err @ SyncError::Store { .. }) => tracing::error!(
                integration = %integration_id,
                retry_in = ?wait,
                "sync failed: {}",
                crate::redact::bounded(&err.to_string(), crate::redact::MAX_TEXT)
            ),
            Err(err) => tracing::error!(
                integration = %integration_id,
                "sync failed: {}",
                crate::redact::bounded(&err.to_string(), crate::redact::MAX_TEXT)
            ),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = trigger.requested() => {
                tracing::debug!(integration = %integration_id, "poll triggered");
            }
        }
    }
}

/// Event ids joined by commas, formatted only when the log line is enabled.
struct EventIds<'a>(&'a [crate::store::EventRecord]);

impl std::fmt::Display for EventIds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&e.id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_failing_on_the_store_is_retried_sooner_backing_off_up_to_the_interval() {
        let minute = Duration::from_secs(60);
        let cases = [
            (minute, 0, minute),
            (minute, 1, Duration::from_secs(1)),
            (minute, 2, Duration::from_secs(2)),
            (minute, 5, Duration::from_secs(16)),
            (minute, 7, minute),
            (minute, u32::MAX, minute),
            (Duration::from_millis(500), 1, Duration::from_millis(500)),
        ];
        for (interval, failures, want) in cases {
            assert_eq!(
                next_poll_in(interval, failures),
                want,
                "{interval:?} after {failures}"
            );
        }
    }
}
