//! `hirehook deliveries list`, `dead-letters list|retry`, `subscribers enable`.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use super::Failure;
use super::admin_client::{Source, store_or_api, v1_path};
use super::sync::{load_config, open_store};
use crate::event::format_timestamp;
use crate::store::{DeliveryState, OutboxEntry};

#[derive(Debug, clap::Args)]
pub struct DeliveriesArgs {
    #[command(subcommand)]
    pub command: DeliveriesCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries with their state, attempts and last error.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    pub command: DeadLettersCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters.
    List(Selection),
    /// Put dead letters back in the queue, due now (all of them unless `--subscriber` or
    /// `--event` says which; through the admin API when the daemon runs).
    Retry(Selection),
}

#[derive(Debug, clap::Args)]
pub struct SubscribersArgs {
    #[command(subcommand)]
    pub command: SubscribersCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SubscribersCommand {
    /// Re-enable a subscriber disabled by a 410 Gone; its backlog resumes (through the
    /// admin API when the daemon runs).
    Enable(EnableArgs),
    /// Every subscriber: state, backlog, oldest pending, last error (through the admin
    /// API when the daemon runs).
    List(super::inspect::SubscribersListArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Only deliveries in this state: pending, delivered or dead.
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub status: Option<DeliveryState>,
}

/// `--status`: a delivery state by name (the store's type knows nothing of clap).
fn parse_state(name: &str) -> Result<DeliveryState, String> {
    DeliveryState::parse(name).ok_or_else(|| {
        let names: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
        format!(
            "`{name}` is not a delivery state: one of {}",
            names.join(", ")
        )
    })
}

/// Which deliveries.
#[derive(Debug, clap::Args)]
pub struct Selection {
    /// The TOML config file (for the store's path).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Only this subscriber.
    #[arg(long)]
    pub subscriber: Option<String>,
    /// Only this event id.
    #[arg(long)]
    pub event: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct EnableArgs {
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The subscriber's name.
    pub name: String,
}

fn print(rows: &[(String, u64, OutboxEntry)]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    for (subscriber, _, e) in rows {
        writeln!(
            out,
            "{:<10} {:<16} {}  attempts {:<2} due {}  {}  {}",
            e.state.as_str(),
            subscriber,
            e.event_id,
            e.attempts,
            format_timestamp(&e.due_at),
            e.application_id,
            e.last_error.as_deref().unwrap_or("")
        )
        .context("cannot write to stdout")?;
    }
    Ok(())
}

pub async fn deliveries(args: DeliveriesArgs) -> Result<(), Failure> {
    match args.command {
        DeliveriesCommand::List(args) => {
            let config = load_config(&args.selection.config)?;
            let store = open_store(&config).await?;
            let rows = store
                .deliveries(
                    args.selection.subscriber.as_deref(),
                    args.status,
                    args.selection.event.as_deref(),
                )
                .await
                .context("cannot read deliveries")?;
            print(&rows)
        }
    }
}

pub async fn dead_letters(args: DeadLettersArgs) -> Result<(), Failure> {
    match args.command {
        DeadLettersCommand::List(sel) => {
            let config = load_config(&sel.config)?;
            let store = open_store(&config).await?;
            let rows = store
                .deliveries(
                    sel.subscriber.as_deref(),
                    Some(DeliveryState::Dead),
                    sel.event.as_deref(),
                )
                .await
                .context("cannot read dead letters")?;
            print(&rows)
        }
        DeadLettersCommand::Retry(sel) => retry_dead_letters(sel).await,
    }
}

/// `dead-letters retry`: on the store, or through the admin API while the daemon runs.
async fn retry_dead_letters(sel: Selection) -> Result<(), Failure> {
    use crate::admin::api::{Requeued, RetryRequest};

    let config = load_config(&sel.config)?;
    if let Some(name) = &sel.subscriber {
        require_subscriber(&config, name, &sel.config)?;
    }
    let n = match store_or_api(&config).await? {
        Source::Store(store) => {
            let n = store
                .retry_dead(
                    sel.subscriber.as_deref(),
                    sel.event.as_deref(),
                    chrono::Utc::now(),
                )
                .await
                .context("cannot requeue dead letters")?;
            store.flush().await.context("cannot flush the store")?;
            n
        }
        Source::Api(api) => {
            // Without a selection the command means every dead letter; the API asks for
            // that in so many words.
            let all = sel.subscriber.is_none() && sel.event.is_none();
            let request = RetryRequest {
                subscriber: sel.subscriber,
                event: sel.event,
                all,
            };
            let answer: Requeued = api.post("/v1/dead-letters/retry", &request).await?;
            answer.requeued
        }
    };
    eprintln!("requeued {n} dead letter(s); `hirehook run` delivers them");
    Ok(())
}

/// A usage error unless the config has a subscriber called `name`.
fn require_subscriber(
    config: &crate::config::Config,
    name: &str,
    path: &std::path::Path,
) -> Result<(), Failure> {
    if config.subscriber(name).is_none() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "no subscriber named `{name}` in {}",
            path.display()
        )));
    }
    Ok(())
}

pub async fn subscribers(args: SubscribersArgs) -> Result<(), Failure> {
    match args.command {
        SubscribersCommand::List(args) => super::inspect::list_subscribers(args).await,
        SubscribersCommand::Enable(args) => enable_subscriber(args).await,
    }
}

/// `subscribers enable NAME`: on the store, or through the admin API while the daemon
/// runs (which also wakes its deliverer).
async fn enable_subscriber(args: EnableArgs) -> Result<(), Failure> {
    let config = load_config(&args.config)?;
    require_subscriber(&config, &args.name, &args.config)?;
    let was = match store_or_api(&config).await? {
        Source::Store(store) => {
            let was = store
                .enable_subscriber(&args.name)
                .await
                .context("cannot enable the subscriber")?;
            store.flush().await.context("cannot flush the store")?;
            was
        }
        Source::Api(api) => {
            let answer: crate::admin::api::Enabled = api
                .post(
                    &v1_path(&["subscribers", &args.name, "enable"]),
                    &serde_json::json!({}),
                )
                .await?;
            answer.was_disabled
        }
    };
    if was {
        eprintln!("subscriber {} enabled; its backlog resumes", args.name);
    } else {
        eprintln!("subscriber {} was not disabled", args.name);
    }
    Ok(())
}
