//! `hirehook config …`.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use super::Failure;
use crate::config::Config;

/// Options of `hirehook config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// The `hirehook config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and print the effective config (defaults filled in, secrets
    /// redacted) as TOML.
    Check(CheckArgs),
}

/// Options of `hirehook config check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Runs a `hirehook config` subcommand.
pub fn run(args: ConfigArgs) -> Result<(), Failure> {
    match args.command {
        ConfigCommand::Check(args) => check(args),
    }
}

/// Loads and validates the file: the effective config goes to stdout, a one-line summary
/// to stderr. Any config error is a usage failure (exit 2).
fn check(args: CheckArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config).map_err(|e| Failure::Usage(e.into()))?;
    let effective = config
        .to_redacted_toml()
        .context("cannot write the effective config as TOML")?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(effective.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    eprintln!(
        "config OK: {} integrations, {} subscribers",
        config.integrations.len(),
        config.subscribers.len()
    );
    Ok(())
}
