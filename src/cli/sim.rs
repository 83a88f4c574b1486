//! `hirehook sim`: serve the simulator until SIGINT/SIGTERM.
//!
//! Once listening it prints exactly one JSON line on stdout,
//! `{"base_url": "http://127.0.0.1:7700/v1", "api_key": "…", "integrations": ["…", …]}`,
//! so scripts and tests can start it with `--listen 127.0.0.1:0` and read where it is.
//! Logs go to stderr.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, anyhow};

use super::Failure;
use crate::sim::{DEFAULT_API_KEY, FaultConfig, SimConfig, Simulator};

/// Options of `hirehook sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port (the printed line tells which).
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: String,
    /// Number of integrations (worlds).
    #[arg(long, default_value_t = 3)]
    pub integrations: usize,
    /// Applications generated per integration.
    #[arg(long, default_value_t = 10_000)]
    pub applications: usize,
    /// Seed of the worlds, the random changes and the random faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Random changes applied per second while serving (0 = a static world).
    #[arg(long, default_value_t = 0.0)]
    pub changes_per_second: f64,
    /// Bearer token clients must send.
    #[arg(long, env = "HIREHOOK_SIM_API_KEY", default_value = DEFAULT_API_KEY)]
    pub api_key: String,
    /// Share of requests answered 429 (0..1).
    #[arg(long = "fault-429", default_value_t = 0.0)]
    pub fault_429: f64,
    /// Share of requests answered 503 with a non-JSON body (0..1).
    #[arg(long = "fault-503", default_value_t = 0.0)]
    pub fault_503: f64,
    /// Share of requests answered with a truncated JSON body (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub fault_truncate: f64,
    /// Share of requests answered after `--slow-delay` (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub fault_slow: f64,
    /// Delay of a slow response, e.g. `2s`, `250ms`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub slow_delay: Duration,
    /// `ratelimit-reset` / `Retry-After` of a 429, in seconds.
    #[arg(long, default_value_t = 1)]
    pub retry_after_secs: u64,
}

impl SimArgs {
    /// The simulator configuration, or a usage error naming the bad flag.
    fn config(&self) -> Result<SimConfig, Failure> {
        if self.integrations == 0 {
            return Err(Failure::Usage(anyhow!("--integrations must be at least 1")));
        }
        if self.applications > u32::MAX as usize / 2 {
            return Err(Failure::Usage(anyhow!(
                "--applications must be at most {}",
                u32::MAX / 2
            )));
        }
        if !self.changes_per_second.is_finite() || self.changes_per_second < 0.0 {
            return Err(Failure::Usage(anyhow!(
                "--changes-per-second must be a number >= 0, got {}",
                self.changes_per_second
            )));
        }
        if self.api_key.trim().is_empty() {
            return Err(Failure::Usage(anyhow!("--api-key must not be empty")));
        }
        let faults = FaultConfig {
            rate_limit: self.fault_429,
            unavailable: self.fault_503,
            truncate: self.fault_truncate,
            slow: self.fault_slow,
            slow_delay: self.slow_delay,
            retry_after_secs: self.retry_after_secs,
            ..FaultConfig::default()
        };
        faults
            .validate()
            .map_err(|e| Failure::Usage(anyhow!("{}", e.replace("fault rate ", "--fault-* "))))?;
        Ok(SimConfig {
            integrations: self.integrations,
            applications: self.applications,
            seed: self.seed,
            changes_per_second: self.changes_per_second,
            api_key: self.api_key.clone(),
            faults,
        })
    }
}

/// Runs the simulator until interrupted.
pub async fn run(args: SimArgs) -> Result<(), Failure> {
    let config = args.config()?;
    let resolved: Vec<std::net::SocketAddr> = tokio::net::lookup_host(&args.listen)
        .await
        .map(Iterator::collect)
        .unwrap_or_default();
    if resolved.is_empty() {
        return Err(Failure::Usage(anyhow!(
            "--listen must be an address like 127.0.0.1:7700, got {:?}",
            args.listen
        )));
    }
    let listener = tokio::net::TcpListener::bind(resolved.as_slice())
        .await
        .map_err(|e| Failure::Runtime(anyhow!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .with_context(|| format!("cannot read the address bound for {}", args.listen))?;
    tracing::info!(
        integrations = config.integrations,
        applications = config.applications,
        seed = config.seed,
        "generating the simulated worlds"
    );
    let sim = tokio::task::spawn_blocking(move || Simulator::new(config))
        .await
        .map_err(|e| Failure::Runtime(anyhow!("generating the worlds failed: {e}")))?;

    let line = serde_json::json!({
        "base_url": format!("http://{addr}/v1"),
        "api_key": sim.api_key(),
        "integrations": sim.integration_ids(),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write the address line to stdout")?;
    drop(stdout);
    tracing::info!(%addr, changes_per_second = sim.changes_per_second(), "simulator listening");

    sim.serve(listener, shutdown_signal())
        .await
        .context("the simulator server failed")?;
    tracing::info!("simulator stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
