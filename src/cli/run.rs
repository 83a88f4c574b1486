//! `hirehook run`: poll and deliver until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Failure;
use super::sync::{load_config, open_poller_store};
use crate::admin::AdminError;
use crate::daemon::{Daemon, StartError};

/// Options of `hirehook run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Runs until the first SIGINT/SIGTERM, then shuts down gracefully (exit 0). A second
/// signal exits at once; everything committed is already in the store.
pub async fn run(args: RunArgs) -> Result<(), Failure> {
    let config = load_config(&args.config)?;
    let store = Arc::new(open_poller_store(&config).await?);
    tracing::info!(
        integrations = config.integrations.len(),
        subscribers = config.subscribers.len(),
        backend = store.backend(),
        replica = store.replica_id(),
        "hirehook running"
    );
    let mut daemon = Daemon::new(config, store).map_err(|e| Failure::Usage(e.into()))?;
    daemon.bind_admin().await.map_err(|e| match e {
        StartError::Admin(AdminError::Bind { .. }) => Failure::Runtime(e.into()),
        e => Failure::Usage(e.into()),
    })?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    daemon
        .run(shutdown)
        .await
        .map_err(|e| Failure::Runtime(e.into()))
}

async fn watch_signals(shutdown: CancellationToken) {
    wait_for_signal().await;
    tracing::info!("shutting down: polling stopped, finishing deliveries in flight");
    shutdown.cancel();
    wait_for_signal().await;
    tracing::warn!("second signal: exiting now");
    std::process::exit(130);
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, Ctrl-C still ends the process the default way.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
