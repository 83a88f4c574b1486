//! Configuration: the TOML file, `${VAR}` expansion, defaults and validation.
//!
//! Loading goes in four steps, each with errors that say where:
//! 1. parse the TOML (syntax errors carry file, line and column);
//! 2. expand `${VAR}` in every string value from the environment: `VAR` is letters, digits
//!    and `_` (not starting with a digit), `$${` is a literal `${`, any other `$` is kept,
//!    expanded values are not expanded again; an unset variable is an error naming itself
//!    and the key (a variable that is not valid Unicode counts as unset);
//! 3. deserialize into the typed structs below (`deny_unknown_fields` everywhere: a typo is
//!    an error naming the key, file, line and column; defaults fill what is left out);
//! 4. validate the whole, collecting every problem with its key path into one error.
//!
//! The structs' doc comments are the user documentation of each key;
//! `deploy/hirehook.example.toml` shows every key with its default.

mod expand;
mod size;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::ats::client::{ClientConfig, MAX_PAGE_SIZE, ResponseLimits, RetryPolicy};
use crate::secret::Secret;

pub use size::ByteSize;

/// The prefix of a Standard Webhooks signing secret.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";

/// A configuration that could not be loaded. Every variant names the file; messages name
/// keys, never secret values.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or a key or value the typed config does not accept (unknown key,
    /// wrong type, bad duration...). `message` starts with `line L, column C` when known.
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// A `${VAR}` whose variable is not set.
    #[error("{}: {key}: environment variable {var} is not set", path.display())]
    Env {
        path: PathBuf,
        /// Key path of the string holding the reference, e.g. `subscribers[0].secrets[0]`.
        key: String,
        var: String,
    },
    /// Parsed, but the values do not make a working configuration.
    #[error("{}: invalid configuration:\n  - {}", path.display(), problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        /// Every problem found, each starting with its key path.
        problems: Vec<String>,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where hirehook keeps snapshots, sync state, the event log and the outbox.
    #[serde(default)]
    pub store: StoreConfig,
    /// How to reach Kombo and how often to poll it.
    pub kombo: KomboConfig,
    /// The Kombo integrations (connected ATS accounts) to poll; at least one.
    #[serde(default)]
    pub integrations: Vec<Integration>,
    /// Who receives the events. None is allowed: events are still logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribers: Vec<Subscriber>,
    /// Retry and network policy shared by all subscribers.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Safety checks on what a sync may emit.
    #[serde(default)]
    pub guard: GuardConfig,
    /// The admin HTTP API (health, metrics, inspection).
    #[serde(default)]
    pub admin: AdminConfig,
    /// How long the store keeps events, delivery records and the snapshots of deleted
    /// applications.
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// `[store]`: where hirehook keeps snapshots, sync state, the event log and the outbox:
/// an embedded sled database (the default), or PostgreSQL shared by several replicas.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `"sled"` (embedded, one process) or `"postgres"` (one database, any number of
    /// replicas). Default `"sled"`.
    pub backend: StoreBackend,
    /// sled only: the directory; created if missing. Relative paths are relative to the
    /// working directory. Default `./hirehook-data`.
    pub path: PathBuf,
    /// sled only: its page cache, in bytes: an integer or a string with a unit
    /// (`"64MiB"`, `"1GiB"`). More cache, fewer disk reads when diffing large
    /// integrations. Default `64MiB`.
    pub cache_capacity: ByteSize,
    /// postgres only, and required there: the database URL,
    /// `postgres://user:password@host:5432/database?sslmode=require` (`sslmode` as libpq:
    /// `disable`, `prefer`, `require`, `verify-ca`, `verify-full`; `sslrootcert` names a
    /// PEM file of trusted roots). Write `"${HIREHOOK_DATABASE_URL}"` to keep the
    /// password out of the file; it is redacted wherever the config is shown or logged.
    pub url: Option<String>,
    /// postgres only: connections each replica keeps to the database. Default 16; at
    /// least 1.
    pub pool_size: u32,
    /// postgres only: how long a replica owns an integration (polls it) without renewing
    /// its lease; a dead replica's integrations move to a survivor after about this long.
    /// Default `15s`; at least `1s`.
    #[serde(with = "duration")]
    pub lease_ttl: Duration,
    /// sled only: sled does not give back (or, in hirehook's workload, reuse) the space of
    /// what retention removes, so the daemon rewrites the store's files online once they
    /// grew by this much since its start or the last rewrite (checked after each retention
    /// sweep). Syncs and deliveries pause while it runs (about a second per 60 MB kept).
    /// Default `"100%"` (the files doubled); `"never"` leaves it to `hirehook store compact`.
    pub rewrite_growth: RewriteGrowth,
}

/// `store.rewrite_growth`: a percentage (`"100%"`), or `"never"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RewriteGrowth {
    /// The daemon never rewrites the files.
    Never,
    /// Rewrite once the files grew by this fraction (1.0 = doubled).
    By(f64),
}

impl std::fmt::Display for RewriteGrowth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RewriteGrowth::Never => f.write_str("never"),
            RewriteGrowth::By(fraction) => write!(f, "{}%", fraction * 100.0),
        }
    }
}

impl Serialize for RewriteGrowth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RewriteGrowth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let trimmed = text.trim();
        if trimmed == "never" {
            return Ok(RewriteGrowth::Never);
        }
        match trimmed
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
        {
            Some(percent) if percent.is_finite() && percent >= 1.0 => {
                Ok(RewriteGrowth::By(percent / 100.0))
            }
            _ => Err(serde::de::Error::custom(format!(
                "{text:?} is not a growth: write a percentage of at least 1%, like \"100%\" \
                 (rewrite once the files doubled), or \"never\""
            ))),
        }
    }
}

/// Which store backend hirehook uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// The embedded sled database (one process).
    #[default]
    Sled,
    /// PostgreSQL, shared by replicas.
    Postgres,
}

impl StoreBackend {
    /// The name the config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreBackend::Sled => "sled",
            StoreBackend::Postgres => "postgres",
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sled,
            path: PathBuf::from("./hirehook-data"),
            cache_capacity: ByteSize::mib(64),
            url: None,
            pool_size: 16,
            lease_ttl: Duration::from_secs(15),
            rewrite_growth: RewriteGrowth::By(1.0),
        }
    }
}

/// The URL's password never shows: `url` is redacted like every printed URL.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .field("cache_capacity", &self.cache_capacity)
            .field("url", &self.url.as_deref().map(crate::redact::url))
            .field("pool_size", &self.pool_size)
            .field("lease_ttl", &self.lease_ttl)
            .field("rewrite_growth", &self.rewrite_growth)
            .finish()
    }
}

/// The effective `[store]`: the backend and its own keys only (so that it reads back as
/// a valid config), the URL redacted.
impl Serialize for StoreConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut out = s.serialize_struct("StoreConfig", 5)?;
        out.serialize_field("backend", &self.backend)?;
        match self.backend {
            StoreBackend::Sled => {
                out.serialize_field("path", &self.path)?;
                out.serialize_field("cache_capacity", &self.cache_capacity)?;
                out.serialize_field("rewrite_growth", &self.rewrite_growth)?;
            }
            StoreBackend::Postgres => {
                if let Some(url) = &self.url {
                    out.serialize_field("url", &crate::redact::url(url))?;
                }
                out.serialize_field("pool_size", &self.pool_size)?;
                out.serialize_field("lease_ttl", &duration::format(self.lease_ttl))?;
            }
        }
        out.end()
    }
}

/// `[kombo]`: the API hirehook polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KomboConfig {
    /// Kombo API root; `/ats/applications` is appended. Point it at `hirehook sim` for tests.
    /// Default `https://api.kombo.dev/v1`.
    #[serde(
        default = "default_base_url",
        serialize_with = "crate::redact::serialize_url"
    )]
    pub base_url: String,
    /// Kombo API key (sent as a bearer token). Required; write `"${KOMBO_API_KEY}"` to keep
    /// it out of the file.
    pub api_key: Secret,
    /// Kombo's own webhook signing secret, for receiving Kombo's webhooks (e.g. to poll an
    /// integration as soon as Kombo reports a sync). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<Secret>,
    /// Time between the starts of two polls of one integration. Default `5m`; at least `1s`.
    #[serde(default = "default_poll_interval", with = "duration")]
    pub poll_interval: Duration,
    /// Subtracted from the previous poll's start to form `updated_after`, so records
    /// written while that poll ran are not missed. Default `2m`; must be less than
    /// `full_resync_interval`.
    #[serde(default = "default_overlap", with = "duration")]
    pub overlap: Duration,
    /// How often a poll fetches everything (no `updated_after`), catching what the filter
    /// misses. Default `24h`.
    #[serde(default = "default_full_resync_interval", with = "duration")]
    pub full_resync_interval: Duration,
    /// What the first sync of an integration does: `"baseline"` stores snapshots and emits
    /// nothing, `"emit"` emits `application_created` for every application. Default
    /// `"baseline"`.
    #[serde(default)]
    pub initial_sync: InitialSync,
    /// Per HTTP request to Kombo, reading the body included. Default `30s`.
    #[serde(default = "default_request_timeout", with = "duration")]
    pub request_timeout: Duration,
    /// Records per page, 1..=250. Default 250 (Kombo's maximum); lower it only to test
    /// paging.
    #[serde(default = "default_page_size")]
    pub page_size: u16,
    /// The largest response body read from Kombo, in bytes (an integer or a string with a
    /// unit, like `cache_capacity`). A larger one is cut off and its page fails (the sync
    /// stops, the watermark stays, the next poll tries again). Default `64MiB`; at least
    /// `1MiB`.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: ByteSize,
    /// The largest single record (application) read, in bytes. A larger one is rejected
    /// like any unreadable record: reported with its id, the rest of its page goes on.
    /// Default `1MiB`; at least `16KiB` and at most `max_response_bytes`.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: ByteSize,
}

/// What the first sync of an integration emits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialSync {
    /// Store snapshots, emit nothing: only changes after the first sync are events.
    #[default]
    Baseline,
    /// Emit `application_created` for every application found.
    Emit,
}

/// `[[integrations]]`: one Kombo integration to poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Integration {
    /// Kombo's integration id (`X-Integration-Id`), e.g. `greenhouse:CBNMt7dSNCzBdnRTx87dev4E`.
    /// Unique.
    pub id: String,
    /// A human name for logs and the admin API. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// `[[subscribers]]`: one webhook receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscriber {
    /// Unique name, used in logs and in `hirehook deliveries`/`subscribers` commands.
    pub name: String,
    /// Where events are POSTed; `http` or `https`. Redirects are not followed.
    #[serde(serialize_with = "crate::redact::serialize_url")]
    pub url: String,
    /// Standard Webhooks signing secrets, `whsec_` + base64. Several = rotation: each
    /// delivery carries one signature per secret. At least one.
    pub secrets: Vec<Secret>,
    /// Event types to deliver. Omit for all types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// Integration ids whose events to deliver. Omit for all configured integrations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrations: Option<Vec<String>>,
    /// Per delivery attempt, connection to end of response. Default `15s`.
    #[serde(default = "default_subscriber_timeout", with = "duration")]
    pub timeout: Duration,
    /// Requests in flight to this subscriber at once. Default 16; at least 1.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Requests per second to this subscriber, fractions allowed. Omit for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
}

/// `[delivery]`: retries and network policy for all subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Waits before each retry after a failed attempt; after the last one the event is
    /// dead-lettered. Default `["5s", "5m", "30m", "2h", "5h", "10h", "10h"]`.
    #[serde(with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// Each wait is scaled by a random factor in `1 ± jitter`. Default 0.2; 0..=1.
    pub jitter: f64,
    /// Cap on a receiver's `Retry-After` (429/503); the wait is max(scheduled, capped
    /// Retry-After). Default `24h`.
    #[serde(with = "duration")]
    pub max_retry_after: Duration,
    /// On shutdown, how long deliveries in flight may take to finish. Default `10s`.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// Allow subscriber URLs that resolve to loopback, private, link-local, CGNAT or other
    /// non-global addresses (SSRF guard off). For tests, demos and local relays only.
    /// Default false.
    pub allow_private_networks: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let (s, m, h) = (1, 60, 3600);
        Self {
            retry_schedule: [5 * s, 5 * m, 30 * m, 2 * h, 5 * h, 10 * h, 10 * h]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            jitter: 0.2,
            max_retry_after: Duration::from_secs(24 * h),
            shutdown_grace: Duration::from_secs(10),
            allow_private_networks: false,
        }
    }
}

/// `[guard]`: holds back a suspicious sync instead of flooding subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// If one sync would delete (or null) more than this share of an integration's known
    /// applications, its events are held for an operator instead of delivered. In (0, 1];
    /// 1 disables the guard. Default 0.5.
    pub mass_change_ratio: f64,
    /// The guard applies only to integrations with more than this many known applications.
    /// Default 100.
    pub mass_change_min_records: u64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            mass_change_ratio: 0.5,
            mass_change_min_records: 100,
        }
    }
}

/// `[admin]`: the admin HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Socket address (IP and port) to listen on. Default `127.0.0.1:9400`.
    pub listen: SocketAddr,
    /// Bearer token the admin API requires. Required when `listen` is not a loopback
    /// address; optional (no auth) on loopback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9400)),
            token: None,
        }
    }
}

/// `[retention]`: what the store removes once it is old enough, so that it stops growing.
/// Each class is kept for a duration (`"30d"`, `"72h"`) or `"forever"`. Nothing is removed
/// that anything still needs: a pending or retrying delivery keeps its event, and held
/// events, sync state and the snapshots of live applications are never removed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// An event, its body and its delivery records are removed once it was detected longer
    /// ago than this and every delivery of it was settled (delivered or dead-lettered)
    /// longer ago than this: a dead letter stays this long after it died. Default `"30d"`;
    /// `"forever"` keeps every event.
    pub events: Keep,
    /// The snapshot of an application deleted upstream is removed once Kombo's
    /// `remote_deleted_at` is longer ago than this (Kombo anonymises deleted records after
    /// 14 days). Its last sequence is kept (a few bytes), so the application's events
    /// continue from it should it ever come back. Default `"14d"`; `"forever"` keeps them.
    pub deleted_applications: Keep,
    /// How often `hirehook run` applies retention (in small batches that never stall syncs
    /// or deliveries). Default `"10m"`; at least `1s`.
    #[serde(with = "duration")]
    pub sweep_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            events: Keep::For(Duration::from_secs(30 * 86_400)),
            deleted_applications: Keep::For(Duration::from_secs(14 * 86_400)),
            sweep_interval: Duration::from_secs(10 * 60),
        }
    }
}

/// How long a retention class is kept: `"forever"`, or a duration (humantime: `"30d"`,
/// `"72h"`). `"0s"` is refused by validation: it would keep nothing, which is never meant;
/// `"forever"` is how to keep everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Never removed.
    Forever,
    /// Removed once older than this.
    For(Duration),
}

impl Keep {
    /// The duration, `None` for forever.
    pub fn duration(self) -> Option<Duration> {
        match self {
            Keep::Forever => None,
            Keep::For(d) => Some(d),
        }
    }
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keep::Forever => f.write_str("forever"),
            Keep::For(d) if !d.is_zero() && d.as_millis() % 86_400_000 == 0 => {
                write!(f, "{}d", d.as_millis() / 86_400_000)
            }
            Keep::For(d) => f.write_str(&duration::format(*d)),
        }
    }
}

impl Serialize for Keep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim() == "forever" {
            return Ok(Keep::Forever);
        }
        humantime::parse_duration(text.trim())
            .map(Keep::For)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{text:?} is not a duration ({e}): write one like \"30d\" or \"72h\", or \"forever\""
                ))
            })
    }
}

fn default_base_url() -> String {
    "https://api.kombo.dev/v1".to_owned()
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_overlap() -> Duration {
    Duration::from_secs(2 * 60)
}
fn default_full_resync_interval() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_page_size() -> u16 {
    MAX_PAGE_SIZE
}
fn default_max_response_bytes() -> ByteSize {
    ByteSize::mib(64)
}
fn default_max_record_bytes() -> ByteSize {
    ByteSize::mib(1)
}
fn default_subscriber_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_max_in_flight() -> u32 {
    16
}

impl Config {
    /// Reads, expands (from the process environment), parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_str_with_env(&text, path, |name| std::env::var(name).ok())
    }

    /// Parses and validates `text`; `origin` is only used in error messages; `env` resolves
    /// `${VAR}` references (`None` = unset).
    pub fn from_str_with_env(
        text: &str,
        origin: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut doc = toml::de::DeTable::parse(text)
            .map_err(|e| parse_error(origin, text, e.span(), "", e.message()))?;

        if let Some(first) = expand::expand_document(doc.get_mut(), &env)
            .into_iter()
            .next()
        {
            return Err(match first.error {
                expand::PlaceholderError::Unset(var) => ConfigError::Env {
                    path: origin.to_owned(),
                    key: first.key,
                    var,
                },
                other => {
                    let message = match other {
                        // The braces might hold a pasted secret: do not echo them.
                        expand::PlaceholderError::BadName(_) if is_secret_key(&first.key) => {
                            "a `${…}` in this value does not hold a variable name (write `$${` for a literal `${`)".to_owned()
                        }
                        other => other.to_string(),
                    };
                    parse_error(origin, text, Some(first.span), &first.key, &message)
                }
            });
        }

        let store_keys = store_keys(doc.get_ref());
        let config: Config = serde_path_to_error::deserialize(toml::de::Deserializer::from(doc))
            .map_err(|e| {
                let key = match e.path().to_string() {
                    root if root == "." => String::new(),
                    key => key,
                };
                let message = e.inner().message();
                let message = if is_secret_key(&key) {
                    redact_message(message)
                } else {
                    message.to_owned()
                };
                parse_error(origin, text, e.inner().span(), &key, &message)
            })?;

        let problems = validate::problems(&config, &store_keys);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: origin.to_owned(),
                problems,
            })
        }
    }

    /// The configured integration with this id.
    pub fn integration(&self, id: &str) -> Option<&Integration> {
        self.integrations.iter().find(|i| i.id == id)
    }

    /// The configured subscriber with this name.
    pub fn subscriber(&self, name: &str) -> Option<&Subscriber> {
        self.subscribers.iter().find(|s| s.name == name)
    }

    /// The effective configuration (defaults filled in) as TOML, secrets written as
    /// `[redacted]`.
    pub fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

impl KomboConfig {
    /// What the Kombo client needs, with the default retry policy.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            base_url: self.base_url.clone(),
            api_key: self.api_key.clone(),
            request_timeout: self.request_timeout,
            retry: RetryPolicy::default(),
            limits: ResponseLimits {
                max_response_bytes: self.max_response_bytes.bytes(),
                max_record_bytes: usize::try_from(self.max_record_bytes.bytes())
                    .unwrap_or(usize::MAX),
            },
        }
    }
}

impl Subscriber {
    /// Whether this subscriber receives events of `event_type` from `integration_id`.
    pub fn wants(&self, event_type: &str, integration_id: &str) -> bool {
        let allows = |filter: &Option<Vec<String>>, value: &str| {
            filter
                .as_ref()
                .is_none_or(|list| list.iter().any(|v| v == value))
        };
        allows(&self.events, event_type) && allows(&self.integrations, integration_id)
    }

    /// The HMAC keys of [`Subscriber::secrets`], in order. Validation guarantees they decode;
    /// a secret that does not is skipped.
    pub fn signing_keys(&self) -> Vec<Vec<u8>> {
        self.secrets
            .iter()
            .filter_map(|s| decode_webhook_secret(s).ok())
            .collect()
    }
}

/// Why a webhook secret is unusable. Never carries the secret itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretFormatError {
    #[error("must start with `whsec_`")]
    MissingPrefix,
    #[error("the part after `whsec_` is not valid base64 (standard alphabet)")]
    NotBase64,
    #[error("the part after `whsec_` decodes to an empty key")]
    Empty,
}

/// The HMAC key of a Standard Webhooks secret: base64 (standard alphabet, padding optional)
/// after the `whsec_` prefix.
pub fn decode_webhook_secret(secret: &Secret) -> Result<Vec<u8>, SecretFormatError> {
    let encoded = secret
        .expose()
        .strip_prefix(WEBHOOK_SECRET_PREFIX)
        .ok_or(SecretFormatError::MissingPrefix)?;
    let key = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
        .decode(encoded)
        .map_err(|_| SecretFormatError::NotBase64)?;
    if key.is_empty() {
        return Err(SecretFormatError::Empty);
    }
    Ok(key)
}

/// The keys the `[store]` table gives (a default and a given value are told apart:
/// sled's keys given with `backend = "postgres"` are an error, and the other way round).
fn store_keys(doc: &toml::de::DeTable<'_>) -> Vec<String> {
    doc.iter()
        .find(|(key, _)| key.get_ref() == "store")
        .and_then(|(_, value)| match value.get_ref() {
            toml::de::DeValue::Table(table) => Some(
                table
                    .iter()
                    .map(|(key, _)| key.get_ref().to_string())
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// Whether the value at `key` (e.g. `subscribers[0].secrets[1]`) is a secret, whose value
/// must not appear in an error.
fn is_secret_key(key: &str) -> bool {
    if key == "store.url" {
        return true; // a database URL holds its password
    }
    let last = key.rsplit('.').next().unwrap_or(key);
    let name = last.split('[').next().unwrap_or(last);
    matches!(name, "api_key" | "webhook_secret" | "token" | "secrets")
}

/// A serde message about a secret's value without the value: serde quotes what it got
/// (`invalid type: string "whsec_…", expected a sequence`); keep only what was expected.
fn redact_message(message: &str) -> String {
    let expected = message
        .rfind("expected ")
        .map(|i| format!(", {}", &message[i..]))
        .unwrap_or_default();
    format!("invalid value (not shown: this key holds a secret){expected}")
}

/// A [`ConfigError::Parse`] saying `line L, column C: key: message`.
fn parse_error(
    origin: &Path,
    text: &str,
    span: Option<std::ops::Range<usize>>,
    key: &str,
    message: &str,
) -> ConfigError {
    let mut out = String::new();
    if let Some(span) = span {
        let (line, column) = line_column(text, span.start);
        out.push_str(&format!("line {line}, column {column}: "));
    }
    if !key.is_empty() {
        out.push_str(key);
        out.push_str(": ");
    }
    out.push_str(message.trim_end());
    ConfigError::Parse {
        path: origin.to_owned(),
        message: out,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// serde for `Duration`: humantime strings in (`"250ms"`, `"5m"`, `"1day"`), and out in
/// the largest of `h`, `m`, `s`, `ms` that writes it exactly (`"24h"`, not `"1day"`).
mod duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn format(d: Duration) -> String {
        let ms = d.as_millis();
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            return humantime::format_duration(d).to_string();
        }
        match ms {
            0 => "0s".to_owned(),
            _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
            _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
            _ => format!("{ms}ms"),
        }
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        humantime_serde::deserialize(d)
    }
}

/// serde for `Vec<Duration>`, each element as in [`duration`].
mod duration_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(list: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(|d| super::duration::format(*d)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<humantime_serde::Serde<Duration>>::deserialize(d)
            .map(|list| list.into_iter().map(|d| d.into_inner()).collect())
    }
}

#[cfg(test)]
mod tests;
