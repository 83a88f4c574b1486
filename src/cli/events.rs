//! `hirehook events list|export|release|drop`: read and repair the event log.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::Utc;

use super::Failure;
use super::sync::{load_config, open_store};
use crate::ats::Timestamp;
use crate::event::EventType;
use crate::store::{EventFilter, EventRecord};

/// Options of `hirehook events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub command: EventsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// List logged events, oldest first, one line each (`--json` for the bodies).
    List(ListArgs),
    /// Write logged events as JSON lines (the webhook bodies) to a file or stdout.
    Export(ExportArgs),
    /// Deliver the events the mass-change guard held for an integration.
    Release(HeldArgs),
    /// Discard the events the mass-change guard held for an integration.
    Drop(HeldArgs),
    /// One event: its body, deliveries and attempts (through the admin API when the
    /// daemon runs).
    Show(super::inspect::ShowArgs),
}

/// Which events.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// The TOML config file (for the store's path).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Detected at or after: RFC 3339 (`2026-11-29T10:00:00Z`) or an age (`2h`, `3d`).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<Timestamp>,
    /// Detected before: RFC 3339 or an age.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<Timestamp>,
    /// Only this type (repeatable).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<EventType>,
    #[arg(long)]
    pub integration: Option<String>,
    #[arg(long)]
    pub application: Option<String>,
    /// At most this many events.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print the JSON bodies instead of one summary line per event.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct HeldArgs {
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    #[arg(long)]
    pub integration: String,
}

/// Accepts RFC 3339, or a humantime age counted back from now.
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = humantime::parse_duration(s)
        .map_err(|_| format!("`{s}` is neither an RFC 3339 time nor an age like `2h`"))?;
    let age = chrono::Duration::from_std(age).map_err(|_| format!("`{s}` is too long ago"))?;
    Ok(Utc::now() - age)
}

impl FilterArgs {
    fn filter(&self) -> EventFilter {
        EventFilter {
            since: self.since,
            until: self.until,
            types: self.types.clone(),
            integration_id: self.integration.clone(),
            application_id: self.application.clone(),
            after_log_seq: None,
            limit: self.limit,
        }
    }

    fn read(&self) -> Result<Vec<EventRecord>, Failure> {
        let config = load_config(&self.config)?;
        let store = open_store(&config)?;
        Ok(store
            .events(&self.filter())
            .context("cannot read the event log")?)
    }
}

pub async fn run(args: EventsArgs) -> Result<(), Failure> {
    match args.command {
        EventsCommand::Show(args) => super::inspect::show_event(args).await,
        EventsCommand::List(args) => list(args),
        EventsCommand::Export(args) => export(args),
        EventsCommand::Release(args) => release(args),
        EventsCommand::Drop(args) => drop_held(args),
    }
}

fn list(args: ListArgs) -> Result<(), Failure> {
    let events = args.filter.read()?;
    let mut out = std::io::stdout().lock();
    for e in &events {
        let written = if args.json {
            out.write_all(&e.body).and_then(|()| out.write_all(b"\n"))
        } else {
            writeln!(
                out,
                "{}  {:<22} {}  {}  #{}  {}",
                crate::ats::client::format_timestamp(&e.detected_at),
                e.event_type.as_str(),
                e.integration_id,
                e.application_id,
                e.sequence,
                e.id
            )
        };
        written.context("cannot write to stdout")?;
    }
    out.flush().context("cannot write to stdout")?;
    Ok(())
}

fn export(args: ExportArgs) -> Result<(), Failure> {
    let events = args.filter.read()?;
    let mut sink: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    for e in &events {
        sink.write_all(&e.body)
            .and_then(|()| sink.write_all(b"\n"))
            .context("cannot write the export")?;
    }
    sink.flush().context("cannot write the export")?;
    eprintln!("exported {} event(s)", events.len());
    Ok(())
}

fn release(args: HeldArgs) -> Result<(), Failure> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let released = store
        .release_held(&args.integration)
        .context("cannot release held events")?;
    store.flush().context("cannot flush the store")?;
    eprintln!(
        "released {} held event(s) of {} for delivery",
        released.len(),
        args.integration
    );
    Ok(())
}

fn drop_held(args: HeldArgs) -> Result<(), Failure> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let dropped = store
        .drop_held(&args.integration)
        .context("cannot drop held events")?;
    store.flush().context("cannot flush the store")?;
    eprintln!("dropped {dropped} held event(s) of {}", args.integration);
    Ok(())
}
