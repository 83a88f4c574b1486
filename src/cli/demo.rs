//! `hirehook demo`: the simulator, hirehook and a verifying receiver, all on loopback, with
//! the live event stream on screen. Nothing to configure, no account.
//!
//! The event lines come from [`crate::demo::describe`] (pure).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use tokio_util::sync::CancellationToken;

use super::Failure;
use crate::config::Config;
use crate::daemon::Daemon;
use crate::deliver::sign::{DEFAULT_TOLERANCE, SigningKey, verify_headers};
use crate::demo::describe::{Tone, describe};
use crate::secret::Secret;
use crate::sim::{SimConfig, spawn};
use crate::store::Store;

/// Options of `hirehook demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stop by itself after this long (e.g. `30s`); default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Simulated integrations (ATS accounts).
    #[arg(long, default_value_t = 3)]
    pub integrations: usize,
    /// Applications per integration.
    #[arg(long, default_value_t = 300)]
    pub applications: usize,
    /// Changes the simulator makes per second, across all integrations.
    #[arg(long, default_value_t = 6.0)]
    pub changes_per_second: f64,
    /// Seed of the simulated world.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How often hirehook polls (at least 1s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub poll_interval: Duration,
}

/// What the demo receiver saw.
#[derive(Debug, Default)]
struct Seen {
    received: u64,
    verified: u64,
    rejected: u64,
    duplicates: u64,
    by_type: BTreeMap<String, u64>,
    /// Recent ids, for deduplication (bounded).
    recent: VecDeque<String>,
    recent_set: HashSet<String>,
}

struct Receiver {
    keys: Vec<SigningKey>,
    seen: Mutex<Seen>,
    colour: bool,
}

const DEDUPE_WINDOW: usize = 10_000;

async fn receive(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = chrono::Utc::now().timestamp();
    let verdict = verify_headers(&headers, &body, &rx.keys, now, DEFAULT_TOLERANCE);
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut seen = rx
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    seen.received += 1;
    if let Err(e) = verdict {
        seen.rejected += 1;
        eprintln!("demo receiver: refused a request with a bad signature: {e}");
        return StatusCode::UNAUTHORIZED;
    }
    seen.verified += 1;
    if !seen.recent_set.insert(id.clone()) {
        seen.duplicates += 1;
        return StatusCode::OK;
    }
    seen.recent.push_back(id);
    if seen.recent.len() > DEDUPE_WINDOW
        && let Some(old) = seen.recent.pop_front()
    {
        seen.recent_set.remove(&old);
    }
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let kind = event["type"].as_str().unwrap_or("?").to_owned();
    *seen.by_type.entry(kind).or_default() += 1;
    drop(seen);
    print_event(&event, rx.colour);
    StatusCode::OK
}

fn print_event(event: &serde_json::Value, colour: bool) {
    let line = describe(event);
    let time = chrono::Local::now().format("%H:%M:%S");
    let integration = event["data"]["integration_id"].as_str().unwrap_or("?");
    let short: String = match integration.split_once(':') {
        Some((tool, rest)) => format!("{tool}:{}", rest.chars().take(4).collect::<String>()),
        None => integration.to_owned(),
    };
    let (on, off) = match (colour, line.tone) {
        (false, _) => ("", ""),
        (true, Tone::Good) => ("\x1b[32m", "\x1b[0m"),
        (true, Tone::Bad) => ("\x1b[31m", "\x1b[0m"),
        (true, Tone::Neutral) => ("\x1b[36m", "\x1b[0m"),
    };
    let dim = if colour { "\x1b[2m" } else { "" };
    let reset = if colour { "\x1b[0m" } else { "" };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{dim}{time}  {short:<16}{reset} {:<44} {on}{}{off}",
        line.who, line.what
    );
}

fn random_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Runs the demo until Ctrl-C or `--duration`.
pub async fn run(args: DemoArgs) -> Result<(), Failure> {
    if args.poll_interval < Duration::from_secs(1) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--poll-interval must be at least 1s"
        )));
    }
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let sim = spawn(SimConfig {
        integrations: args.integrations.max(1),
        applications: args.applications.max(1),
        seed: args.seed,
        changes_per_second: args.changes_per_second.max(0.0),
        ..Default::default()
    })
    .await
    .context("cannot start the simulator")?;

    let secret = random_secret();
    let key = SigningKey::from_secret(&Secret::new(secret.clone()))
        .map_err(|e| anyhow::anyhow!("demo secret: {e}"))?;
    let receiver = Arc::new(Receiver {
        keys: vec![key],
        seen: Mutex::new(Seen::default()),
        colour,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the demo receiver")?;
    let receiver_url = format!(
        "http://{}/hook",
        listener.local_addr().context("receiver address")?
    );
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    let receiver_task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let store_dir = tempfile::tempdir().context("cannot create a temporary store")?;
    let mut toml = format!(
        r#"
[store]
path = "{store}"

[kombo]
base_url = "{base}"
api_key = "{key}"
poll_interval = "{poll}"

[delivery]
allow_private_networks = true
retry_schedule = ["1s", "5s", "30s"]
shutdown_grace = "5s"

[admin]
listen = "127.0.0.1:0"

[[subscribers]]
name = "demo-receiver"
url = "{receiver_url}"
secrets = ["{secret}"]
"#,
        store = store_dir.path().join("store").display(),
        base = sim.base_url(),
        key = sim.sim().api_key(),
        poll = humantime::format_duration(args.poll_interval),
    );
    for id in sim.sim().integration_ids() {
        toml.push_str(&format!("\n[[integrations]]\nid = \"{id}\"\n"));
    }
    let config = Config::from_str_with_env(&toml, Path::new("<demo>"), |_| None)
        .map_err(|e| Failure::Runtime(anyhow::Error::new(e).context("demo config")))?;
    let store = Arc::new(
        Store::open(&config.store)
            .await
            .context("cannot open the demo store")?,
    );
    let mut daemon = Daemon::new(config, store).context("cannot start hirehook")?;
    let admin = daemon
        .bind_admin()
        .await
        .context("cannot bind the admin API")?;

    let (b, r) = if colour {
        ("\x1b[1m", "\x1b[0m")
    } else {
        ("", "")
    };
    println!("{b}hirehook demo{r}: simulator → hirehook → a verifying receiver, all on loopback");
    println!(
        "  simulator  {}  ({} integrations × {} applications, {} changes/s)",
        sim.base_url(),
        args.integrations.max(1),
        args.applications.max(1),
        args.changes_per_second
    );
    println!("  receiver   {receiver_url}  (checks every Standard Webhooks signature)");
    println!(
        "  admin      http://{admin}/metrics  http://{admin}/v1/status  (health: /healthz /readyz)"
    );
    println!(
        "  store      {} (removed on exit)",
        store_dir.path().display()
    );
    println!(
        "  The first sync is a baseline; events follow as the simulator changes things. {}",
        match args.duration {
            Some(d) => format!("Stops after {}.", humantime::format_duration(d)),
            None => "Ctrl-C stops.".to_owned(),
        }
    );
    println!();

    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    let duration = args.duration;
    tokio::spawn(async move {
        let deadline = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = deadline => {}
        }
        stopper.cancel();
    });
    daemon
        .run(shutdown)
        .await
        .context("hirehook stopped with an error")?;
    receiver_task.abort();
    let _ = sim.shutdown().await;

    let seen = receiver
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    println!();
    println!(
        "{b}{} event(s) delivered{r}, {} signature(s) verified, {} refused, {} duplicate(s)",
        seen.verified - seen.duplicates,
        seen.verified,
        seen.rejected,
        seen.duplicates
    );
    for (kind, n) in &seen.by_type {
        println!("  {kind:<24} {n}");
    }
    if seen.rejected > 0 {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{} request(s) failed signature verification",
            seen.rejected
        )));
    }
    Ok(())
}
