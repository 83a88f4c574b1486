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
    /// Follow the log: print events as they are logged (through the admin API while the
    /// daemon runs), until Ctrl-C.
    Tail(TailArgs),
    /// Deliver the events the mass-change guard held for an integration (through the admin
    /// API when the daemon runs).
    Release(HeldArgs),
    /// Discard the events the mass-change guard held for an integration (through the admin
    /// API when the daemon runs).
    Drop(HeldArgs),
    /// One event: its body, deliveries and attempts (through the admin API when the
    /// daemon runs).
    Show(super::inspect::ShowArgs),
}

/// Which events: the flags of `events list|export|tail` and `replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct SelectArgs {
    /// Detected at or after: RFC 3339 (`2026-11-29T10:00:00Z`) or an age (`2h`, `3d`).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<Timestamp>,
    /// Detected before: RFC 3339 or an age.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<Timestamp>,
    /// Only this type (repeatable).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<EventType>,
    /// Only this integration's events.
    #[arg(long)]
    pub integration: Option<String>,
    /// Only this application's events.
    #[arg(long)]
    pub application: Option<String>,
}

impl SelectArgs {
    /// The event filter these flags describe.
    pub fn filter(&self) -> EventFilter {
        EventFilter {
            since: self.since,
            until: self.until,
            types: self.types.clone(),
            integration_id: self.integration.clone(),
            application_id: self.application.clone(),
            after_log_seq: None,
            limit: None,
        }
    }
}

/// Which events, from which store.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// The TOML config file (for the store's path).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    #[command(flatten)]
    pub select: SelectArgs,
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
pub struct TailArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print the JSON bodies instead of one summary line per event.
    #[arg(long)]
    pub json: bool,
    /// How often to look for new events.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub interval: std::time::Duration,
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
    /// The TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The integration whose held events to release or drop (one of the config's).
    #[arg(long)]
    pub integration: String,
}

/// Accepts RFC 3339, or a humantime age counted back from now.
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    crate::domain::parse_time(s, Utc::now())
}

impl FilterArgs {
    fn filter(&self) -> EventFilter {
        EventFilter {
            limit: self.limit,
            ..self.select.filter()
        }
    }

    async fn read(&self) -> Result<Vec<EventRecord>, Failure> {
        let config = load_config(&self.config)?;
        let store = open_store(&config).await?;
        Ok(store
            .events(&self.filter())
            .await
            .context("cannot read the event log")?)
    }
}

pub async fn run(args: EventsArgs) -> Result<(), Failure> {
    match args.command {
        EventsCommand::Show(args) => super::inspect::show_event(args).await,
        EventsCommand::List(args) => list(args).await,
        EventsCommand::Tail(args) => tail(args).await,
        EventsCommand::Export(args) => export(args).await,
        EventsCommand::Release(args) => decide_held(args, true).await,
        EventsCommand::Drop(args) => decide_held(args, false).await,
    }
}

async fn list(args: ListArgs) -> Result<(), Failure> {
    let events = args.filter.read().await?;
    let mut out = std::io::stdout().lock();
    for e in &events {
        let written = if args.json {
            out.write_all(&e.body).and_then(|()| out.write_all(b"\n"))
        } else {
            writeln!(
                out,
                "{}",
                summary_line(
                    &e.detected_at,
                    e.event_type,
                    &e.integration_id,
                    &e.application_id,
                    e.sequence,
                    &e.id
                )
            )
        };
        written.context("cannot write to stdout")?;
    }
    out.flush().context("cannot write to stdout")?;
    Ok(())
}

/// One line per event, as `list` prints it.
fn summary_line(
    detected_at: &Timestamp,
    event_type: EventType,
    integration_id: &str,
    application_id: &str,
    sequence: u64,
    id: &str,
) -> String {
    format!(
        "{}  {:<22} {}  {}  #{}  {}",
        crate::ats::client::format_timestamp(detected_at),
        event_type.as_str(),
        integration_id,
        application_id,
        sequence,
        id
    )
}

/// Follows the log from now (or from `--since`). Events are printed in log order; an
/// event released by an operator after being held keeps its original log position, so a
/// tail that already passed it does not print it.
async fn tail(args: TailArgs) -> Result<(), Failure> {
    use super::admin_client::{Source, store_or_api};
    use crate::inspect::EventSummary;

    let config = load_config(&args.filter.config)?;
    let source = store_or_api(&config).await?;
    let mut filter = args.filter.filter();
    filter.limit = Some(500);
    let mut after: Option<u64> = None;
    if args.filter.select.since.is_none() {
        // Start at the end of the log.
        after = Some(match &source {
            Source::Store(store) => store
                .events(&EventFilter::default())
                .await
                .context("cannot read the event log")?
                .last()
                .map_or(0, |e| e.log_seq),
            Source::Api(_) => 0,
        });
    }
    let mut first_api_poll = matches!(source, Source::Api(_)) && args.filter.select.since.is_none();
    loop {
        filter.after_log_seq = after;
        let batch: Vec<EventSummary> = match &source {
            Source::Store(store) => store
                .events(&filter)
                .await
                .context("cannot read the event log")?
                .into_iter()
                .map(EventSummary::from_record)
                .collect::<Result<_, _>>()
                .context("cannot read the event log")?,
            Source::Api(client) => {
                let mut api_filter = filter.clone();
                if first_api_poll {
                    // Following from now: the daemon's log up to here is not wanted.
                    api_filter.since = Some(Utc::now());
                }
                let mut query = api_filter.to_query();
                if let Some(seq) = after.filter(|s| *s > 0) {
                    query.push_str(&format!(
                        "&cursor={}",
                        crate::admin::api::encode_cursor(seq)
                    ));
                }
                let page: Option<crate::admin::api::EventsPage> =
                    client.get(&format!("/v1/events?{query}")).await?;
                first_api_poll = false;
                page.map(|p| p.events).unwrap_or_default()
            }
        };
        let mut out = std::io::stdout().lock();
        for e in &batch {
            let line = if args.json {
                e.body.get().to_owned()
            } else {
                summary_line(
                    &e.detected_at,
                    e.event_type,
                    &e.integration_id,
                    &e.application_id,
                    e.sequence,
                    &e.id,
                )
            };
            writeln!(out, "{line}").context("cannot write to stdout")?;
            after = Some(after.unwrap_or(0).max(e.log_seq));
        }
        out.flush().context("cannot write to stdout")?;
        drop(out);
        if batch.len() < filter.limit.unwrap_or(500) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tokio::time::sleep(args.interval) => {}
            }
        }
    }
}

async fn export(args: ExportArgs) -> Result<(), Failure> {
    let events = args.filter.read().await?;
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

/// `events release|drop`: on the store, or through the admin API while the daemon runs.
/// The same checks, output and exit codes either way.
async fn decide_held(args: HeldArgs, release: bool) -> Result<(), Failure> {
    use super::admin_client::{Source, store_or_api, v1_path};
    use crate::admin::api::{HeldDropped, HeldReleased};
    use crate::held::Decision;

    let config = load_config(&args.config)?;
    if config.integration(&args.integration).is_none() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "no integration `{}` in {}",
            args.integration,
            args.config.display()
        )));
    }
    let id = args.integration.as_str();
    let decision = match (store_or_api(&config).await?, release) {
        (Source::Store(store), true) => crate::held::release(&store, id)
            .await
            .context("cannot release held events")?,
        (Source::Store(store), false) => crate::held::drop(&store, id)
            .await
            .context("cannot drop held events")?,
        (Source::Api(api), true) => {
            let answer: HeldReleased = api
                .post(
                    &v1_path(&["integrations", id, "held", "release"]),
                    &serde_json::json!({}),
                )
                .await?;
            Decision {
                decided: answer.released,
                undecided: answer.undecided,
            }
        }
        (Source::Api(api), false) => {
            let answer: HeldDropped = api
                .post(
                    &v1_path(&["integrations", id, "held", "drop"]),
                    &serde_json::json!({}),
                )
                .await?;
            Decision {
                decided: answer.dropped,
                undecided: answer.undecided,
            }
        }
    };
    if release {
        eprintln!(
            "released {} held event(s) of {id} for delivery",
            decision.decided
        );
    } else {
        eprintln!("dropped {} held event(s) of {id}", decision.decided);
    }
    if decision.undecided > 0 {
        eprintln!(
            "{} more held event(s) of {id} await the mass-change guard's decision at the end \
             of a sync (one is running, or the last was cut short and the next decides); \
             they were left as they are",
            decision.undecided
        );
    }
    Ok(())
}
