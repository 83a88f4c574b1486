//! The smallest correct hirehook receiver: verify, dedupe, answer fast, then act.
//!
//! Run it:
//!
//! ```sh
//! HIREHOOK_WEBHOOK_SECRET=whsec_… cargo run --example receiver
//! ```
//!
//! and point a hirehook subscriber at `http://127.0.0.1:8081/` (any path is accepted; set
//! `allow_private_networks = true` in `[delivery]`, since the receiver listens on loopback),
//! with the same secret in its `secrets`. Each new event prints one line on stdout.
//!
//! Environment:
//! - `HIREHOOK_WEBHOOK_SECRET` (required): the subscriber's `whsec_…` secret, or several
//!   separated by spaces while rotating (a request signed with any of them is accepted).
//! - `LISTEN_ADDR` (default `127.0.0.1:8081`): the address to listen on.
//! - `RUST_LOG` (default `info`): log filter; logs go to stderr.
//!
//! What "correct" means, in order:
//! 1. Verify the Standard Webhooks signature over the raw body, before parsing anything, and
//!    refuse a timestamp outside the tolerance (a replayed request): 401.
//! 2. Dedupe on `webhook-id`: hirehook delivers at least once and keeps the id across
//!    retries and replays, so a duplicate is answered 200 and not acted on again.
//! 3. Answer 2xx fast: hirehook counts a slow answer as a failure and retries. Real work
//!    belongs on a queue; this example's work (printing a line) is instant.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hirehook::config::SecretFormatError;
use hirehook::deliver::sign::{DEFAULT_TOLERANCE, HEADER_ID, SigningKey, verify_headers};
use hirehook::event::EventHeader;
use hirehook::secret::Secret;
use serde_json::Value;

/// Environment variable holding the `whsec_…` secret(s).
pub const ENV_SECRET: &str = "HIREHOOK_WEBHOOK_SECRET";
/// Environment variable holding the listen address.
pub const ENV_LISTEN: &str = "LISTEN_ADDR";
/// Where the receiver listens when `LISTEN_ADDR` is unset.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
/// How many recent event ids the dedupe remembers. hirehook's retries of one event span
/// about a day (its default schedule), far fewer events than this for an example's load.
pub const DEDUPE_CAPACITY: usize = 10_000;

/// The receiver's settings, read once at start.
pub struct Config {
    /// One key per configured secret: a request signed with any of them is accepted.
    pub keys: Vec<SigningKey>,
    /// Address to listen on.
    pub listen: SocketAddr,
}

/// Why the receiver cannot start. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{ENV_SECRET} is not set: give it the subscriber's `whsec_…` secret")]
    MissingSecret,
    #[error("{ENV_SECRET}: secret {position} of {count} {reason}")]
    BadSecret {
        position: usize,
        count: usize,
        reason: SecretFormatError,
    },
    #[error("{ENV_LISTEN}: {value:?} is not an address like {DEFAULT_LISTEN}")]
    BadListen { value: String },
}

impl Config {
    /// Reads the settings through `env` (`std::env::var` in `main`, a map in tests).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let secrets = env(ENV_SECRET).unwrap_or_default();
        let secrets: Vec<&str> = secrets.split_whitespace().collect();
        if secrets.is_empty() {
            return Err(ConfigError::MissingSecret);
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                SigningKey::from_secret(&Secret::new(*s)).map_err(|reason| ConfigError::BadSecret {
                    position: i + 1,
                    count: secrets.len(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        let listen = match env(ENV_LISTEN).filter(|v| !v.trim().is_empty()) {
            None => SocketAddr::from(([127, 0, 0, 1], 8081)),
            Some(value) => value
                .trim()
                .parse()
                .map_err(|_| ConfigError::BadListen { value })?,
        };
        Ok(Config { keys, listen })
    }
}

/// The last `capacity` ids seen, in bounded memory: the oldest is forgotten first.
pub struct Dedupe {
    /// For the membership test.
    ids: HashSet<String>,
    /// Arrival order, to know which id to forget.
    order: VecDeque<String>,
    /// How many ids to remember.
    capacity: usize,
}

impl Dedupe {
    pub fn new(capacity: usize) -> Dedupe {
        Dedupe {
            ids: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records `id`; false if it was already remembered (a duplicate).
    pub fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// The receiver's state, shared by every request.
pub struct Receiver {
    /// The keys signatures are checked against.
    keys: Vec<SigningKey>,
    /// Ids of events already handled.
    seen: Mutex<Dedupe>,
    /// How many distinct events were handled (printed).
    handled: AtomicU64,
}

impl Receiver {
    pub fn new(keys: Vec<SigningKey>) -> Receiver {
        Receiver {
            keys,
            seen: Mutex::new(Dedupe::new(DEDUPE_CAPACITY)),
            handled: AtomicU64::new(0),
        }
    }

    /// How many distinct events were handled so far.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }
}

/// The HTTP app: `POST` on any path.
pub fn app(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route("/", post(receive))
        .route("/{*path}", post(receive))
        .with_state(receiver)
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    // 1. Verify the raw bytes, before parsing.
    if let Err(e) = verify_headers(&headers, &body, &receiver.keys, now(), DEFAULT_TOLERANCE) {
        tracing::warn!(error = %e, "refused an unverified request");
        return (StatusCode::UNAUTHORIZED, "signature verification failed\n");
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        tracing::warn!("refused a verified request whose body is not JSON");
        return (StatusCode::BAD_REQUEST, "body is not JSON\n");
    };
    // 2. Dedupe on `webhook-id` (present: verification needs it).
    let id = headers
        .get(HEADER_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let is_new = match receiver.seen.lock() {
        Ok(mut seen) => seen.insert(id),
        // A panic elsewhere poisoned the lock; the set itself is still consistent.
        Err(poisoned) => poisoned.into_inner().insert(id),
    };
    if !is_new {
        tracing::info!(webhook_id = id, "duplicate, already handled");
        return (StatusCode::OK, "duplicate\n");
    }
    // 3. Act (here: one line on stdout), then answer.
    receiver.handled.fetch_add(1, Ordering::Relaxed);
    println!("{}", describe(&body, &event));
    (StatusCode::OK, "ok\n")
}

/// One line about an event. Uses hirehook's strict reader of the common fields, and falls
/// back to the raw JSON for a body it does not know (say, a new event type).
fn describe(body: &[u8], event: &Value) -> String {
    let str_at = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
    let name = [
        str_at("/data/application/candidate/first_name"),
        str_at("/data/application/candidate/last_name"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let name = if name.trim().is_empty() {
        "a candidate".to_owned()
    } else {
        name
    };
    let job = str_at("/data/application/job/name").unwrap_or("an unnamed job");
    match EventHeader::parse(body) {
        Ok(h) => format!(
            "{} {} #{} {}: {name} ({job}) [{}]",
            h.event_id, h.event_type, h.sequence, h.application_id, h.integration_id
        ),
        Err(_) => format!(
            "{} {}: {name} ({job})",
            str_at("/data/event_id").unwrap_or("?"),
            str_at("/type").unwrap_or("unknown event"),
        ),
    }
}

/// Unix seconds now.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = match Config::from_env(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("receiver: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("receiver: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(listen = %config.listen, keys = config.keys.len(), "receiver ready");
    let app = app(Arc::new(Receiver::new(config.keys)));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("receiver: server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
