//! `hirehook replay`: re-send logged or exported events to a URL, signed, with their
//! original `webhook-id`, in log order.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use super::Failure;
use super::admin_client::{Source, store_or_api};
use super::events::SelectArgs;
use super::sync::load_config;
use crate::admin::api::EventsPage;
use crate::event::EventFilter;
use crate::replay::{FileEvents, ReplayItem, Replayer, StorePages, Summary};
use crate::secret::Secret;

/// Options of `hirehook replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Where to send: any http(s) URL, private addresses included (it is your choice, not
    /// a subscriber's).
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Signing secret (`whsec_…`); repeat for one signature per secret. Also read from
    /// HIREHOOK_REPLAY_SECRET (comma-separated), which keeps it out of the process list.
    #[arg(
        long = "secret",
        value_name = "WHSEC",
        env = "HIREHOOK_REPLAY_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub secrets: Vec<String>,
    /// The TOML config file: the store to read the log from (required without
    /// --from-file).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Replay the events of an export file (`hirehook events export`) instead of the log.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    #[command(flatten)]
    pub select: SelectArgs,
    /// At most this many requests per second (fractions allowed).
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Per request.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// List what would be sent; send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.trim_end_matches("/s");
    n.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| format!("`{s}` is not a positive number of requests per second"))
}

/// Progress on stderr: a bar on a terminal, a line every few seconds otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    last_line: Instant,
    total: Option<u64>,
}

impl Progress {
    fn new(total: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(n) => ProgressBar::new(n),
                None => ProgressBar::no_length(),
            };
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Self {
            bar,
            last_line: Instant::now(),
            total,
        }
    }

    fn tick(&mut self, summary: &Summary) {
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!(
                    "accepted {} failed {}",
                    summary.accepted, summary.failed
                ));
            }
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(2) {
                    self.last_line = Instant::now();
                    let of = self.total.map(|t| format!("/{t}")).unwrap_or_default();
                    eprintln!(
                        "replayed {}{of} (accepted {}, failed {})",
                        summary.sent, summary.accepted, summary.failed
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// What a replay does with each selected event.
struct Run {
    replayer: Option<Replayer>,
    summary: Summary,
    progress: Progress,
    dry_run_lines: String,
}

impl Run {
    async fn handle(&mut self, item: ReplayItem) {
        match &mut self.replayer {
            None => {
                self.dry_run_lines.push_str(&format!(
                    "{}  {:<22} {}  {}\n",
                    item.event_id, item.event_type, item.integration_id, item.application_id
                ));
                *self.summary.by_status.entry("dry-run".into()).or_default() += 1;
            }
            Some(replayer) => {
                let outcome = replayer.send(&item).await;
                if !outcome.accepted() {
                    tracing::warn!(
                        event_id = %item.event_id,
                        status = outcome.status_key(),
                        "replay failed"
                    );
                }
                self.summary.record(&item, &outcome);
                self.progress.tick(&self.summary);
            }
        }
    }
}

/// `hirehook replay`. Exit 1 if any request failed or any line of the file was bad.
pub async fn run(args: ReplayArgs) -> Result<(), Failure> {
    let secrets: Vec<Secret> = args.secrets.iter().map(Secret::new).collect();
    // A dry run needs no secret, but checks those it is given.
    let replayer = if args.dry_run && secrets.is_empty() {
        None
    } else {
        Some(
            Replayer::new(&args.to, &secrets, args.rate, args.timeout)
                .map_err(|e| Failure::Usage(e.into()))?,
        )
    };
    let filter = args.select.filter();
    let mut run = Run {
        replayer: replayer.filter(|_| !args.dry_run),
        summary: Summary::default(),
        progress: Progress::new(None),
        dry_run_lines: String::new(),
    };
    // Ctrl-C stops sending and still prints what was sent. The handler is installed
    // before the first event is read.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot watch for SIGINT")?;
    let work = send_all(&args, filter, &mut run);
    let interrupted = tokio::select! {
        result = work => {
            result?;
            false
        }
        _ = sigint.recv() => true,
    };
    run.progress.finish();
    let summary = &run.summary;
    let to = crate::redact::url(&args.to);
    let mut out = String::new();
    if args.dry_run {
        let n = summary.by_status.get("dry-run").copied().unwrap_or(0);
        out.push_str(&run.dry_run_lines);
        out.push_str(&format!("dry run: {n} event(s) would be sent to {to}\n"));
        for bad in &summary.bad_lines {
            out.push_str(&format!("bad line {}: {}\n", bad.line, bad.error));
        }
    } else {
        out.push_str(&format!("replay to {to}: {summary}\n"));
    }
    if interrupted {
        out.push_str("interrupted (SIGINT): the events after these were not sent\n");
    }
    print!("{out}");
    if interrupted {
        Err(Failure::Runtime(anyhow::anyhow!(
            "interrupted after {} request(s)",
            summary.sent
        )))
    } else if summary.ok() {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow::anyhow!(
            "{} request(s) failed, {} bad line(s)",
            summary.failed,
            summary.bad_lines.len()
        )))
    }
}

/// Reads the selected events from the file, the store or the admin API and hands each to
/// `run`, in log order.
async fn send_all(args: &ReplayArgs, filter: EventFilter, run: &mut Run) -> Result<(), Failure> {
    match (&args.from_file, &args.config) {
        (Some(path), _) => {
            let open = || {
                std::fs::File::open(path)
                    .map(std::io::BufReader::new)
                    .with_context(|| format!("cannot open {}", path.display()))
            };
            // First pass: how many (for the progress bar); second: send.
            let total = FileEvents::new(open()?, filter.clone())
                .filter(|r| matches!(r, Ok(Ok(_))))
                .count() as u64;
            run.progress = Progress::new(Some(total));
            for result in FileEvents::new(open()?, filter) {
                match result.with_context(|| format!("cannot read {}", path.display()))? {
                    Ok(item) => run.handle(item).await,
                    Err(bad) => {
                        if let Some(bar) = &run.progress.bar {
                            bar.suspend(|| {
                                eprintln!("{}: line {}: {}", path.display(), bad.line, bad.error)
                            });
                        } else {
                            eprintln!("{}: line {}: {}", path.display(), bad.line, bad.error);
                        }
                        run.summary.bad_lines.push(bad);
                    }
                }
            }
        }
        (None, Some(config_path)) => {
            let config = load_config(config_path)?;
            match store_or_api(&config).await? {
                Source::Store(store) => {
                    let mut pages = StorePages::new(store, &filter);
                    let total = pages.count().await.context("cannot read the event log")?;
                    run.progress = Progress::new(Some(total));
                    while let Some(page) = pages
                        .next_page()
                        .await
                        .context("cannot read the event log")?
                    {
                        for item in page {
                            run.handle(item).await;
                        }
                    }
                }
                Source::Api(api) => {
                    let query = EventFilter {
                        limit: Some(500),
                        ..filter
                    }
                    .to_query();
                    let mut cursor: Option<String> = None;
                    loop {
                        let path = match &cursor {
                            Some(c) => format!("/v1/events?{query}&cursor={c}"),
                            None => format!("/v1/events?{query}"),
                        };
                        let page: EventsPage = api
                            .get(&path)
                            .await?
                            .context("the admin API has no /v1/events")?;
                        for e in page.events {
                            run.handle(ReplayItem {
                                event_id: e.id,
                                event_type: e.event_type,
                                integration_id: e.integration_id,
                                application_id: e.application_id,
                                body: e.body.get().as_bytes().to_vec(),
                            })
                            .await;
                        }
                        match page.next_cursor {
                            Some(c) => cursor = Some(c),
                            None => break,
                        }
                    }
                }
            }
        }
        (None, None) => {
            return Err(Failure::Usage(anyhow::anyhow!(
                "say where the events come from: --config (the store's log) or --from-file"
            )));
        }
    }
    Ok(())
}
