//! What the Slack and Teams relays share (a module of both examples, not an example itself).
//!
//! - [`Settings`]: read from the environment once at start; a missing or malformed value is
//!   an error that names the variable (and never prints a secret or the chat URL).
//! - [`app`]: the endpoint hirehook posts to. It verifies the signature over the raw body,
//!   drops filtered events (200), skips events it already relayed (200), renders the rest
//!   with the relay's pure formatter and posts them to the chat tool, answering hirehook only
//!   once the chat tool accepted (200) or gave up (5xx, so hirehook's retries cover chat
//!   outages).
//! - [`post_json`]: the bounded retry towards the chat tool, honouring `Retry-After`.
//! - [`Summary`]: a platform-neutral, human-readable reading of one event, built leniently
//!   (missing or odd fields never panic) and rendered by each relay's formatter.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use hirehook::config::SecretFormatError;
use hirehook::deliver::sign::{DEFAULT_TOLERANCE, HEADER_ID, SigningKey, verify_headers};
use hirehook::event::EventType;
use hirehook::secret::Secret;
use reqwest::Url;
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------

/// The `whsec_…` secret(s) of the hirehook subscriber, space-separated when rotating.
pub const ENV_SECRET: &str = "HIREHOOK_WEBHOOK_SECRET";
/// The address to listen on.
pub const ENV_LISTEN: &str = "LISTEN_ADDR";
/// Event types to relay, comma-separated (default: all, unknown future types included).
pub const ENV_EVENT_TYPES: &str = "RELAY_EVENT_TYPES";
/// Integration ids to relay, comma-separated (default: all).
pub const ENV_INTEGRATIONS: &str = "RELAY_INTEGRATIONS";
/// The listen address when `LISTEN_ADDR` is unset.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

/// The chat tool a relay posts to: its name in logs and the variable holding its URL.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// "Slack", "Teams": for logs and errors.
    pub name: &'static str,
    /// The environment variable holding the incoming-webhook URL.
    pub env: &'static str,
    /// What to put there, for the error when it is missing.
    pub hint: &'static str,
}

/// A relay's settings.
pub struct Settings {
    /// One key per configured secret: a request signed with any of them is accepted.
    pub keys: Vec<SigningKey>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The chat tool's incoming-webhook URL. A credential: never logged.
    pub target_url: Url,
    /// Relay only these types; `None` relays every type.
    pub event_types: Option<BTreeSet<EventType>>,
    /// Relay only these integrations; `None` relays every integration.
    pub integrations: Option<BTreeSet<String>>,
}

/// Why a relay cannot start. Never carries a secret or the chat URL.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{var} is not set: {hint}")]
    Missing {
        var: &'static str,
        hint: &'static str,
    },
    #[error("{ENV_SECRET}: secret {position} of {count} {reason}")]
    BadSecret {
        position: usize,
        count: usize,
        reason: SecretFormatError,
    },
    #[error("{ENV_LISTEN}: {value:?} is not an address like {DEFAULT_LISTEN}")]
    BadListen { value: String },
    // The value is left out on purpose: a webhook URL is a credential.
    #[error("{var} is not an http(s) URL: {reason}")]
    BadUrl { var: &'static str, reason: String },
    #[error("{ENV_EVENT_TYPES}: {0}")]
    BadEventType(String),
    #[error("{var} is set but lists nothing; unset it to relay everything")]
    EmptyList { var: &'static str },
}

impl Settings {
    /// Reads the settings through `env` (`std::env::var` in `main`, a map in tests).
    pub fn from_env(
        target: Target,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        // Empty or blank counts as unset.
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());

        let secrets = var(ENV_SECRET).ok_or(SettingsError::Missing {
            var: ENV_SECRET,
            hint: "give it the hirehook subscriber's `whsec_…` secret",
        })?;
        let secrets: Vec<&str> = secrets.split_whitespace().collect();
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                SigningKey::from_secret(&Secret::new(*s)).map_err(|reason| {
                    SettingsError::BadSecret {
                        position: i + 1,
                        count: secrets.len(),
                        reason,
                    }
                })
            })
            .collect::<Result<_, _>>()?;

        let listen = match var(ENV_LISTEN) {
            None => SocketAddr::from(([127, 0, 0, 1], 8081)),
            Some(value) => value
                .trim()
                .parse()
                .map_err(|_| SettingsError::BadListen { value })?,
        };

        let url = var(target.env).ok_or(SettingsError::Missing {
            var: target.env,
            hint: target.hint,
        })?;
        let target_url = Url::parse(url.trim()).map_err(|e| SettingsError::BadUrl {
            var: target.env,
            reason: e.to_string(),
        })?;
        if !matches!(target_url.scheme(), "http" | "https") {
            return Err(SettingsError::BadUrl {
                var: target.env,
                reason: format!("the scheme is `{}`", target_url.scheme()),
            });
        }

        let event_types = match var(ENV_EVENT_TYPES) {
            None => None,
            Some(list) => Some(
                list_items(&list, ENV_EVENT_TYPES)?
                    .iter()
                    .map(|t| t.parse::<EventType>().map_err(SettingsError::BadEventType))
                    .collect::<Result<BTreeSet<_>, _>>()?,
            ),
        };
        let integrations = match var(ENV_INTEGRATIONS) {
            None => None,
            Some(list) => Some(list_items(&list, ENV_INTEGRATIONS)?.into_iter().collect()),
        };

        Ok(Settings {
            keys,
            listen,
            target_url,
            event_types,
            integrations,
        })
    }

    /// Whether an event of this type and integration is to be relayed.
    pub fn wants(&self, event_type: Option<&str>, integration: Option<&str>) -> bool {
        let type_ok = self.event_types.as_ref().is_none_or(|types| {
            event_type
                .and_then(EventType::parse)
                .is_some_and(|t| types.contains(&t))
        });
        let integration_ok = self
            .integrations
            .as_ref()
            .is_none_or(|ids| integration.is_some_and(|i| ids.contains(i)));
        type_ok && integration_ok
    }
}

/// The items of a comma- (or space-) separated list; an error if there are none.
fn list_items(list: &str, var: &'static str) -> Result<Vec<String>, SettingsError> {
    let items: Vec<String> = list
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if items.is_empty() {
        return Err(SettingsError::EmptyList { var });
    }
    Ok(items)
}

// ---------------------------------------------------------------------------------------
// The endpoint hirehook posts to
// ---------------------------------------------------------------------------------------

/// A relay's formatter: a hirehook body (JSON) to the chat tool's message (JSON). Pure.
pub type Render = fn(&Value) -> Value;

/// How many relayed event ids a relay remembers, to absorb hirehook's duplicates.
pub const DEDUPE_CAPACITY: usize = 10_000;

/// One relay: settings, formatter, HTTP client and the memory of what it relayed.
pub struct Relay {
    /// The chat tool, for logs.
    target: Target,
    /// Keys, filters and the chat URL.
    settings: Settings,
    /// Event body to chat message.
    render: Render,
    /// Attempts, backoff and deadline of the POST to the chat tool.
    policy: RetryPolicy,
    /// Shared connection pool; redirects are not followed.
    client: reqwest::Client,
    /// Ids relayed already: a redelivery after a lost 200 is not posted twice.
    relayed: Mutex<Dedupe>,
}

impl Relay {
    pub fn new(
        target: Target,
        settings: Settings,
        render: Render,
        policy: RetryPolicy,
    ) -> Result<Relay, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "hirehook-relay-example/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Relay {
            target,
            settings,
            render,
            policy,
            client,
            relayed: Mutex::new(Dedupe::new(DEDUPE_CAPACITY)),
        })
    }

    /// Records a relayed id; false if it was relayed before.
    fn remember(&self, id: &str) -> bool {
        match self.relayed.lock() {
            Ok(mut seen) => seen.insert(id),
            Err(poisoned) => poisoned.into_inner().insert(id),
        }
    }

    fn already_relayed(&self, id: &str) -> bool {
        match self.relayed.lock() {
            Ok(seen) => seen.contains(id),
            Err(poisoned) => poisoned.into_inner().contains(id),
        }
    }
}

/// The HTTP app: `POST` on any path.
pub fn app(relay: Arc<Relay>) -> Router {
    Router::new()
        .route("/", post(receive))
        .route("/{*path}", post(receive))
        .with_state(relay)
}

async fn receive(State(relay): State<Arc<Relay>>, headers: HeaderMap, body: Bytes) -> Response {
    // Verify the raw bytes before anything else.
    if let Err(e) = verify_headers(
        &headers,
        &body,
        &relay.settings.keys,
        unix_now(),
        DEFAULT_TOLERANCE,
    ) {
        tracing::warn!(error = %e, "refused an unverified request");
        return (StatusCode::UNAUTHORIZED, "signature verification failed\n").into_response();
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        tracing::warn!("refused a verified request whose body is not JSON");
        return (StatusCode::BAD_REQUEST, "body is not JSON\n").into_response();
    };
    let id = headers
        .get(HEADER_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let event_type = event.get("type").and_then(Value::as_str);
    let integration = event
        .pointer("/data/integration_id")
        .and_then(Value::as_str);

    if !relay.settings.wants(event_type, integration) {
        tracing::debug!(webhook_id = id, event_type, integration, "filtered out");
        return (StatusCode::OK, "filtered out\n").into_response();
    }
    if relay.already_relayed(id) {
        tracing::info!(webhook_id = id, "duplicate, already relayed");
        return (StatusCode::OK, "duplicate\n").into_response();
    }

    let message = (relay.render)(&event);
    let target = relay.target.name;
    match post_json(
        &relay.client,
        &relay.settings.target_url,
        &message,
        &relay.policy,
    )
    .await
    {
        Ok(attempts) => {
            relay.remember(id);
            tracing::info!(webhook_id = id, event_type, attempts, "relayed to {target}");
            (StatusCode::OK, "relayed\n").into_response()
        }
        Err(PostError::Refused { status, body }) => {
            // The chat tool's answer (e.g. Slack's `invalid_blocks`), not the message. Its
            // status is not passed on: a 410 from Slack (archived channel) would make
            // hirehook disable the subscriber.
            tracing::error!(webhook_id = id, event_type, status, response = %body, "{target} refused the message");
            (
                StatusCode::BAD_GATEWAY,
                "the chat tool refused the message\n",
            )
                .into_response()
        }
        Err(PostError::Unavailable {
            attempts,
            last,
            retry_after,
        }) => {
            tracing::error!(webhook_id = id, event_type, attempts, last_failure = %last, "{target} unavailable, leaving the retry to hirehook");
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                "the chat tool is unavailable\n",
            )
                .into_response();
            if let Some(wait) = retry_after {
                // Rounded up: hirehook must not come back before the chat tool allows.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
    }
}

/// Reads the settings from the process environment and serves until Ctrl-C: the whole
/// `main` of a relay. Exit codes: 2 bad settings, 1 runtime failure.
pub async fn main_for(target: Target, render: Render) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let program = std::env::args().next().unwrap_or_default();
    let program = program.rsplit(['/', '\\']).next().unwrap_or("relay");
    let settings = match Settings::from_env(target, |name| std::env::var(name).ok()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{program}: {e}");
            return ExitCode::from(2);
        }
    };
    let listen = settings.listen;
    let relay = match Relay::new(target, settings, render, RetryPolicy::default()) {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("{program}: cannot build the HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("{program}: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        %listen,
        keys = relay.settings.keys.len(),
        event_types = ?relay.settings.event_types,
        integrations = ?relay.settings.integrations,
        "relaying hirehook events to {}",
        target.name
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match axum::serve(listener, app(Arc::new(relay)))
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Unix seconds now.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The last `capacity` ids, in bounded memory: the oldest is forgotten first.
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

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Records `id`; false if it was already remembered.
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

// ---------------------------------------------------------------------------------------
// Posting to the chat tool
// ---------------------------------------------------------------------------------------

/// How hard a relay tries before handing the retry back to hirehook.
///
/// The whole exchange must end before hirehook's request timeout (15 s by default):
/// otherwise hirehook counts a failure and redelivers while the first attempt may still
/// land, and the message shows up twice. Hence the `deadline`; a `Retry-After` that does not
/// fit in it is passed back to hirehook as `503` + `Retry-After`, which hirehook honours.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one.
    pub first_backoff: Duration,
    /// A longer `Retry-After` is taken as this.
    pub max_retry_after: Duration,
    /// Timeout of one attempt.
    pub attempt_timeout: Duration,
    /// Time budget of all attempts and waits together.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            first_backoff: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(12),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based): the exponential backoff, or the
    /// chat tool's `Retry-After` (capped) when that is longer.
    pub fn wait_after(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let shift = attempt.saturating_sub(1).min(16);
        let backoff = self.first_backoff.saturating_mul(1 << shift);
        match retry_after {
            Some(ra) => backoff.max(ra.min(self.max_retry_after)),
            None => backoff,
        }
    }
}

/// What one answer of the chat tool means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: posted.
    Accepted,
    /// 429, 5xx (and 408): worth another attempt.
    Retry,
    /// Any other status: the same payload would be refused again.
    Refused,
}

/// Whether an answer is a success, worth a retry, or final.
pub fn verdict(status: StatusCode) -> Verdict {
    if status.is_success() {
        Verdict::Accepted
    } else if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        Verdict::Retry
    } else {
        Verdict::Refused
    }
}

/// A `Retry-After` value: delay-seconds, or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default())
}

/// Why a message was not posted.
#[derive(Debug)]
pub enum PostError {
    /// The chat tool refused it (a 4xx other than 408/429): retrying now would not help.
    Refused {
        /// The status it answered.
        status: u16,
        /// The start of its answer (Slack says why there, e.g. `invalid_blocks`).
        body: String,
    },
    /// Still failing (429, 5xx, timeouts, connection errors) when attempts or time ran out.
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure, without the URL.
        last: String,
        /// How long the chat tool asked to wait, when it said so and that did not fit.
        retry_after: Option<Duration>,
    },
}

/// POSTs `payload` as JSON to `url`, retrying per `policy`; the number of attempts made
/// when it was accepted.
pub async fn post_json(
    client: &reqwest::Client,
    url: &Url,
    payload: &Value,
    policy: &RetryPolicy,
) -> Result<u32, PostError> {
    let started = tokio::time::Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let remaining = policy.deadline.saturating_sub(started.elapsed());
        let sent = client
            .post(url.clone())
            .json(payload)
            .timeout(policy.attempt_timeout.min(remaining))
            .send()
            .await;
        let (last, retry_after) = match sent {
            Ok(response) => {
                let status = response.status();
                match verdict(status) {
                    Verdict::Accepted => return Ok(attempt),
                    Verdict::Refused => {
                        let body = response.text().await.unwrap_or_default();
                        return Err(PostError::Refused {
                            status: status.as_u16(),
                            body: body.chars().take(200).collect(),
                        });
                    }
                    Verdict::Retry => {
                        let retry_after = response
                            .headers()
                            .get(header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| parse_retry_after(v, Utc::now()));
                        (format!("HTTP {status}"), retry_after)
                    }
                }
            }
            // `without_url`: the URL is a credential.
            Err(e) => (e.without_url().to_string(), None),
        };
        let wait = policy.wait_after(attempt, retry_after);
        let out_of_time = started.elapsed() + wait >= policy.deadline;
        if attempt >= policy.max_attempts || out_of_time {
            return Err(PostError::Unavailable {
                attempts: attempt,
                last,
                retry_after: retry_after.map(|_| wait),
            });
        }
        tracing::debug!(attempt, ?wait, failure = %last, "retrying the chat tool");
        tokio::time::sleep(wait).await;
    }
}

// ---------------------------------------------------------------------------------------
// A human reading of one event
// ---------------------------------------------------------------------------------------

/// What a person needs to know about one event, independent of the chat tool.
///
/// Built by [`Summary::of`] from the body as JSON, leniently: a missing or oddly typed field
/// falls back to a neutral wording, an unknown event type to a generic message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// A leading emoji for the type, e.g. 🎉 for a hire.
    pub emoji: &'static str,
    /// What happened, as a sentence without a full stop: "Jane Roe was hired".
    pub headline: String,
    /// The candidate's name, or "A candidate".
    pub candidate: String,
    /// The job's name, when the body has one.
    pub job: Option<String>,
    /// The change in a few words, for the one-line text: "Onsite → Offer".
    pub detail: Option<String>,
    /// Labelled facts after Candidate and Job: ("Stage", "Onsite → Offer").
    pub facts: Vec<(&'static str, String)>,
    /// The application in the ATS (`remote_url`), when it is an http(s) URL.
    pub link: Option<String>,
    /// The event type as sent (or "event" when absent).
    pub event_type: String,
    /// The integration id, when present.
    pub integration: Option<String>,
}

impl Summary {
    /// The one-line text: "🎉 Jane Roe was hired · Backend Engineer".
    pub fn text(&self) -> String {
        let mut line = format!("{} {}", self.emoji, self.headline);
        for part in [&self.job, &self.detail].into_iter().flatten() {
            line.push_str(" · ");
            line.push_str(part);
        }
        line
    }

    /// The small print under a message: type and integration.
    pub fn context(&self) -> String {
        match &self.integration {
            Some(integration) => format!("{} · {integration} · via hirehook", self.event_type),
            None => format!("{} · via hirehook", self.event_type),
        }
    }

    /// Reads one hirehook body.
    pub fn of(event: &Value) -> Summary {
        let data = event.get("data").unwrap_or(&Value::Null);
        let app = data.get("application").unwrap_or(&Value::Null);
        let name = candidate_name(app.get("candidate"));
        let subject = name.clone().unwrap_or_else(|| "A candidate".to_owned());
        let object = name.clone().unwrap_or_else(|| "a candidate".to_owned());
        let possessive = format!("{subject}'s");
        let job = text(app.pointer("/job/name"));
        let event_type = text(event.get("type"));
        let current_stage = stage(app.get("current_stage"));

        let (emoji, headline, detail, facts): (&str, String, Option<String>, Vec<_>) =
            match event_type.as_deref() {
                Some("outcome_hired") => {
                    let change =
                        transition(outcome(data.get("previous_outcome")), "Hired".to_owned());
                    (
                        "🎉",
                        format!("{subject} was hired"),
                        None,
                        vec![("Outcome", change), ("Stage", current_stage)],
                    )
                }
                Some("rejected") => {
                    let reason = text(data.get("rejection_reason_name"));
                    let mut facts = vec![(
                        "Reason",
                        reason.clone().unwrap_or_else(|| "not given".to_owned()),
                    )];
                    facts.push(("Stage", current_stage));
                    (
                        "❌",
                        format!("{subject} was rejected"),
                        reason.map(|r| format!("reason: {r}")),
                        facts,
                    )
                }
                Some("stage_changed") => {
                    let change = transition(
                        stage(data.get("previous_stage")),
                        stage(data.get("current_stage")),
                    );
                    (
                        "➡️",
                        format!("{subject} changed stage"),
                        Some(change.clone()),
                        vec![("Stage", change)],
                    )
                }
                Some("outcome_reverted") => {
                    let change = transition(
                        outcome(data.get("previous_outcome")),
                        outcome(data.get("current_outcome")),
                    );
                    (
                        "↩️",
                        format!("{possessive} outcome was reverted"),
                        Some(change.clone()),
                        vec![("Outcome", change), ("Stage", current_stage)],
                    )
                }
                Some("offer_created") => {
                    let status = offer_status(data.pointer("/offer/status"));
                    (
                        "📝",
                        format!("Offer created for {object}"),
                        Some(format!("status: {status}")),
                        vec![("Offer status", status)],
                    )
                }
                Some("offer_status_changed") => {
                    let current = data
                        .get("current_status")
                        .filter(|v| !v.is_null())
                        .or_else(|| data.pointer("/offer/status"));
                    let change = transition(
                        offer_status(data.get("previous_status")),
                        offer_status(current),
                    );
                    let (emoji, headline) = match current.and_then(Value::as_str) {
                        Some("ACCEPTED") => ("🤝", format!("{subject} accepted the offer")),
                        Some("DECLINED") => ("👋", format!("{subject} declined the offer")),
                        _ => ("📝", format!("{possessive} offer changed status")),
                    };
                    (
                        emoji,
                        headline,
                        Some(change.clone()),
                        vec![("Offer status", change)],
                    )
                }
                Some("interview_scheduled") => {
                    let interview = data.get("interview");
                    let when = interview_time(interview);
                    (
                        "📅",
                        format!("Interview scheduled with {object}"),
                        Some(when.clone()),
                        vec![("Interview", interview_title(interview)), ("When", when)],
                    )
                }
                Some("interview_rescheduled") => {
                    let interview = data.get("interview");
                    let when = interview_time(interview);
                    let before = span(
                        data.get("previous_starting_at"),
                        data.get("previous_ending_at"),
                    );
                    (
                        "🔁",
                        format!("Interview with {object} rescheduled"),
                        Some(format!("now {when}")),
                        vec![
                            ("Interview", interview_title(interview)),
                            ("When", when),
                            ("Was", before),
                        ],
                    )
                }
                Some("interview_canceled") => {
                    let interview = data.get("interview");
                    let when = interview_time(interview);
                    (
                        "🚫",
                        format!("Interview with {object} canceled"),
                        Some(format!("was {when}")),
                        vec![("Interview", interview_title(interview)), ("Was", when)],
                    )
                }
                Some("application_deleted") => (
                    "🗑️",
                    format!("{possessive} application was deleted in the ATS"),
                    None,
                    vec![("Deleted at", time(data.get("remote_deleted_at")))],
                ),
                Some("application_restored") => (
                    "♻️",
                    format!("{possessive} application was restored in the ATS"),
                    None,
                    vec![("Stage", current_stage)],
                ),
                Some("application_created") => {
                    let count =
                        |key: &str| app.get(key).and_then(Value::as_array).map_or(0, Vec::len);
                    let mut facts = vec![("Stage", current_stage)];
                    let (offers, interviews) = (count("offers"), count("interviews"));
                    if offers > 0 {
                        facts.push(("Offers", offers.to_string()));
                    }
                    if interviews > 0 {
                        facts.push(("Interviews", interviews.to_string()));
                    }
                    ("📥", format!("New application from {object}"), None, facts)
                }
                Some(other) => (
                    "🔔",
                    format!("Event `{other}` for {object}"),
                    None,
                    vec![("Event", other.to_owned())],
                ),
                None => (
                    "🔔",
                    format!("hirehook event for {object}"),
                    None,
                    Vec::new(),
                ),
            };

        Summary {
            emoji,
            headline,
            candidate: subject,
            job,
            detail,
            facts,
            link: text(app.get("remote_url"))
                .filter(|u| u.starts_with("https://") || u.starts_with("http://")),
            event_type: event_type.unwrap_or_else(|| "event".to_owned()),
            integration: text(data.get("integration_id")),
        }
    }
}

/// A non-blank string value, trimmed.
fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// "First Last", or whichever of the two is present.
fn candidate_name(candidate: Option<&Value>) -> Option<String> {
    let candidate = candidate?;
    let parts: Vec<String> = [candidate.get("first_name"), candidate.get("last_name")]
        .into_iter()
        .filter_map(text)
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// A stage by name; by position when unnamed; "no stage" when null.
fn stage(stage: Option<&Value>) -> String {
    match stage.filter(|s| s.is_object()) {
        None => "no stage".to_owned(),
        Some(s) => match (text(s.get("name")), s.get("index").and_then(Value::as_i64)) {
            (Some(name), _) => name,
            (None, Some(index)) => format!("stage {index}"),
            (None, None) => "an unnamed stage".to_owned(),
        },
    }
}

/// An outcome in words: `HIRED` → "Hired", null → "none".
fn outcome(value: Option<&Value>) -> String {
    text(value).map_or_else(|| "none".to_owned(), |s| capitalize(&s))
}

/// An offer status in words: `ACCEPTED` → "Accepted", null → "unknown".
fn offer_status(value: Option<&Value>) -> String {
    text(value).map_or_else(|| "unknown".to_owned(), |s| capitalize(&s))
}

/// "HIRED" → "Hired"; "NOT_SURE" → "Not sure".
fn capitalize(word: &str) -> String {
    let lower = word.replace('_', " ").to_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn transition(before: String, after: String) -> String {
    format!("{before} → {after}")
}

fn interview_title(interview: Option<&Value>) -> String {
    text(interview.and_then(|i| i.get("title"))).unwrap_or_else(|| "Interview".to_owned())
}

fn interview_time(interview: Option<&Value>) -> String {
    match interview {
        Some(i) => span(i.get("starting_at"), i.get("ending_at")),
        None => "time not set".to_owned(),
    }
}

/// A start and end in UTC: "Tue 1 Dec 2026, 10:00–11:00 UTC".
fn span(start: Option<&Value>, end: Option<&Value>) -> String {
    let parse = |v: Option<&Value>| {
        let s = text(v)?;
        Some(match DateTime::parse_from_rfc3339(&s) {
            Ok(t) => Ok(t.with_timezone(&Utc)),
            Err(_) => Err(s),
        })
    };
    match (parse(start), parse(end)) {
        (None, _) => "time not set".to_owned(),
        (Some(Ok(s)), Some(Ok(e))) if s.date_naive() == e.date_naive() => format!(
            "{}–{} UTC",
            s.format("%a %-d %b %Y, %H:%M"),
            e.format("%H:%M")
        ),
        (Some(s), Some(e)) => format!("{} – {}", one_time(s), one_time(e)),
        (Some(s), None) => one_time(s),
    }
}

/// One timestamp, or the raw string if it does not parse.
fn one_time(t: Result<DateTime<Utc>, String>) -> String {
    match t {
        Ok(t) => t.format("%a %-d %b %Y, %H:%M UTC").to_string(),
        Err(raw) => raw,
    }
}

/// A timestamp field in words: "Tue 1 Dec 2026, 10:00 UTC", or "unknown".
fn time(value: Option<&Value>) -> String {
    match text(value) {
        None => "unknown".to_owned(),
        Some(s) => one_time(
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| s),
        ),
    }
}
