//! The command line: `hirehook <command>`.
//!
//! Exit codes: 0 ok, 2 bad usage or config, 1 runtime failure.

pub mod admin_client;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod erase;
pub mod events;
pub mod inspect;
pub mod replay;
pub mod run;
pub mod sim;
pub mod store;
pub mod sync;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// hirehook: turn Kombo's polled ATS API into signed hiring webhooks.
#[derive(Debug, Parser)]
#[command(name = "hirehook", version, about, long_about = None)]
pub struct Cli {
    /// Log line format (filter with RUST_LOG, e.g. `RUST_LOG=hirehook=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulator + hirehook + a verifying receiver on loopback, live events on screen.
    Demo(demo::DemoArgs),
    /// Poll and deliver until SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// Poll every integration once, print derived events as JSON lines, queue them.
    Sync(sync::SyncArgs),
    /// Read the event log; release or drop events held by the mass-change guard.
    Events(events::EventsArgs),
    /// Inspect deliveries.
    Deliveries(delivery::DeliveriesArgs),
    /// List or retry dead letters.
    #[command(name = "dead-letters")]
    DeadLetters(delivery::DeadLettersArgs),
    /// List or repair subscribers.
    Subscribers(delivery::SubscribersArgs),
    /// Integrations (last sync, watermark, errors) and subscribers (backlog) at a glance.
    Status(inspect::StatusArgs),
    /// Re-send logged or exported events to a URL, signed, with their original ids.
    Replay(replay::ReplayArgs),
    /// Run the built-in Kombo-compatible simulator.
    Sim(sim::SimArgs),
    /// Inspect configuration files.
    Config(config::ConfigArgs),
    /// The store: apply the PostgreSQL schema (`migrate`), fill it from a sled store
    /// (`copy`), apply retention now (`compact`).
    Store(store::StoreArgs),
    /// Remove a person's data (an application's or a candidate's) from every stored
    /// snapshot, event body and delivery record of an integration, and from the store's
    /// files.
    Erase(erase::EraseArgs),
}

/// A failed command, with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Bad usage or configuration: exit 2.
    Usage(anyhow::Error),
    /// Anything that went wrong while running: exit 1.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Runtime(err)
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help and version to stdout (exit 0), usage errors to stderr (exit 2).
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    // The demo's screen is its event stream: only warnings and errors interleave with it.
    let default_level = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    };
    init_tracing(cli.log_format, default_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Demo(args) => demo::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Sync(args) => sync::run(args).await,
        Command::Deliveries(args) => delivery::deliveries(args).await,
        Command::DeadLetters(args) => delivery::dead_letters(args).await,
        Command::Subscribers(args) => delivery::subscribers(args).await,
        Command::Status(args) => inspect::status(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Events(args) => events::run(args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Config(args) => config::run(args),
        Command::Store(args) => store::run(args).await,
        Command::Erase(args) => erase::run(args).await,
    }
}

/// Logs go to stderr; stdout is for data (JSON lines, the simulator's address line).
fn init_tracing(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: log files and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
