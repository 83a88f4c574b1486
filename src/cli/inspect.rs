//! `hirehook status`, `events show ID`, `subscribers list`: readable by a person, `--json`
//! for scripts. They read the store when the daemon is stopped and its admin API when it
//! runs (the daemon holds the store's lock).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::Utc;
use serde::Serialize;

use super::Failure;
use super::admin_client::{Source, store_or_api};
use super::sync::load_config;
use crate::admin::api::SubscribersList;
use crate::ats::Timestamp;
use crate::event::{format_timestamp, is_event_id};
use crate::inspect::{self, EventView, StatusView, SubscriberStatus};

/// Options of `hirehook status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Print JSON (the admin API's `/v1/status`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `hirehook events show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The event id (`evt_…`, the `webhook-id`).
    pub id: String,
    /// Print JSON (the admin API's `/v1/events/{id}`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `hirehook subscribers list`.
#[derive(Debug, clap::Args)]
pub struct SubscribersListArgs {
    /// The TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Print JSON (the admin API's `/v1/subscribers`) instead of text.
    #[arg(long)]
    pub json: bool,
}

fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    print_text(&(text + "\n"))
}

fn print_text(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")?;
    Ok(())
}

/// `hirehook status`.
pub async fn status(args: StatusArgs) -> Result<(), Failure> {
    let config = load_config(&args.config)?;
    let view: StatusView = match store_or_api(&config).await? {
        Source::Store(store) => inspect::status(&store, &config, Utc::now())
            .await
            .context("cannot read the store")?,
        Source::Api(api) => api
            .get("/v1/status")
            .await?
            .context("the admin API has no /v1/status (an older daemon?)")?,
    };
    if args.json {
        print_json(&view)
    } else {
        print_text(&render_status(&view, Utc::now()))
    }
}

/// `hirehook events show ID`.
pub async fn show_event(args: ShowArgs) -> Result<(), Failure> {
    if !is_event_id(&args.id) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "`{}` is not an event id (`evt_` + 32 lowercase hex digits)",
            args.id
        )));
    }
    let config = load_config(&args.config)?;
    let view: Option<EventView> = match store_or_api(&config).await? {
        Source::Store(store) => inspect::event(&store, &args.id)
            .await
            .context("cannot read the store")?,
        Source::Api(api) => api.get(&format!("/v1/events/{}", args.id)).await?,
    };
    let Some(view) = view else {
        return Err(Failure::Runtime(anyhow::anyhow!("no event {}", args.id)));
    };
    if args.json {
        print_json(&view)
    } else {
        print_text(&render_event(&view))
    }
}

/// `hirehook subscribers list`.
pub async fn list_subscribers(args: SubscribersListArgs) -> Result<(), Failure> {
    let config = load_config(&args.config)?;
    let list: SubscribersList = match store_or_api(&config).await? {
        Source::Store(store) => SubscribersList {
            subscribers: inspect::subscribers(&store, &config, Utc::now())
                .await
                .context("cannot read the store")?,
        },
        Source::Api(api) => api
            .get("/v1/subscribers")
            .await?
            .context("the admin API has no /v1/subscribers")?,
    };
    if args.json {
        print_json(&list)
    } else {
        let mut text = String::new();
        if list.subscribers.is_empty() {
            text.push_str("no subscribers configured\n");
        }
        for s in &list.subscribers {
            render_subscriber(&mut text, s);
        }
        print_text(&text)
    }
}

/// `2026-11-29T10:00:00.000Z (3m 12s ago)`, or `never`.
fn when(t: Option<&Timestamp>, now: Timestamp) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let age = (now - *t).to_std().unwrap_or_default();
            format!(
                "{} ({} ago)",
                format_timestamp(t),
                humantime::format_duration(std::time::Duration::from_secs(age.as_secs()))
            )
        }
    }
}

/// The status, for people.
pub fn render_status(view: &StatusView, now: Timestamp) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "integrations");
    if view.integrations.is_empty() {
        let _ = writeln!(t, "  none configured");
    }
    for i in &view.integrations {
        let name = match &i.label {
            Some(label) => format!("{} ({label})", i.id),
            None => i.id.clone(),
        };
        let health = match &i.stale {
            None => "ok".to_owned(),
            Some(why) => format!("STALE: {why}"),
        };
        let _ = writeln!(t, "  {name}: {health}");
        let _ = writeln!(
            t,
            "    last sync      {}",
            when(i.last_success_at.as_ref(), now)
        );
        let _ = writeln!(t, "    watermark      {}", when(i.watermark.as_ref(), now));
        let _ = writeln!(
            t,
            "    full resync    {}",
            when(i.last_full_resync.as_ref(), now)
        );
        let _ = writeln!(t, "    applications   {}", i.applications);
        if i.held_events > 0 {
            let _ = writeln!(
                t,
                "    held events    {} (see `hirehook events release|drop --integration {}`)",
                i.held_events, i.id
            );
        } else {
            let _ = writeln!(t, "    held events    0");
        }
        let _ = writeln!(
            t,
            "    last error     {}",
            i.last_error.as_deref().unwrap_or("none")
        );
    }
    let _ = writeln!(t, "subscribers");
    if view.subscribers.is_empty() {
        let _ = writeln!(t, "  none configured");
    }
    for s in &view.subscribers {
        render_subscriber(&mut t, s);
    }
    t
}

fn render_subscriber(t: &mut String, s: &SubscriberStatus) {
    let now = Utc::now();
    let state = match &s.disabled_reason {
        None => "enabled".to_owned(),
        Some(why) => format!("DISABLED: {why} (`hirehook subscribers enable {}`)", s.name),
    };
    let _ = writeln!(t, "  {}: {state}", s.name);
    let oldest = if s.pending > 0 {
        format!(", oldest {}", when(s.oldest_pending_at.as_ref(), now))
    } else {
        String::new()
    };
    let _ = writeln!(t, "    backlog        {} pending{oldest}", s.pending);
    let _ = writeln!(
        t,
        "    delivered      {}, dead letters {}",
        s.delivered, s.dead
    );
    let last_error = match (&s.last_error, &s.last_error_at) {
        (Some(e), Some(at)) => format!("{e} ({})", when(Some(at), now)),
        (Some(e), None) => e.clone(),
        (None, _) => "none".into(),
    };
    let _ = writeln!(t, "    last error     {last_error}");
}

/// One event with its deliveries and attempts, for people.
pub fn render_event(view: &EventView) -> String {
    let e = &view.event;
    let mut t = String::new();
    let _ = writeln!(t, "event {}  {}", e.id, e.event_type);
    let _ = writeln!(t, "  integration    {}", e.integration_id);
    let _ = writeln!(
        t,
        "  application    {} (sequence {})",
        e.application_id, e.sequence
    );
    let _ = writeln!(t, "  detected at    {}", format_timestamp(&e.detected_at));
    let _ = writeln!(t, "  log position   {}", e.log_seq);
    let _ = writeln!(t, "deliveries");
    if view.deliveries.is_empty() {
        let _ = writeln!(t, "  none (no subscriber wants it, or it is held)");
    }
    for d in &view.deliveries {
        let _ = writeln!(
            t,
            "  {}: {} after {} attempt(s){}",
            d.subscriber,
            d.state.as_str(),
            d.attempts.len(),
            if d.state == crate::store::DeliveryState::Pending {
                format!(", next due {}", format_timestamp(&d.due_at))
            } else {
                String::new()
            }
        );
        for a in &d.attempts {
            let status = a
                .status
                .map_or_else(|| "no response".to_owned(), |s| format!("HTTP {s}"));
            let _ = writeln!(
                t,
                "    #{:<2} {}  {:<12} {:>6} ms  {}",
                a.attempt,
                format_timestamp(&a.at),
                status,
                a.latency_ms,
                a.error.as_deref().unwrap_or("")
            );
        }
    }
    let _ = writeln!(t, "body");
    let pretty = serde_json::from_str::<serde_json::Value>(e.body.get())
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| e.body.get().to_owned());
    for line in pretty.lines() {
        let _ = writeln!(t, "  {line}");
    }
    t
}
