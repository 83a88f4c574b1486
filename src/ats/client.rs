//! The Kombo client: `GET /ats/applications`, page by page, with retries.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::error::{KomboError, PageRef, RetryNotice};
use super::model::{ErrorEnvelope, Outcome, Timestamp};
use super::page::{DEFAULT_MAX_RECORD_BYTES, PageLimits, ScannedPage, scan_page_with};
use crate::clock::Clock;
use crate::secret::Secret;

/// Kombo's maximum page size; hirehook always asks for it.
pub const MAX_PAGE_SIZE: u16 = 250;

/// How a client reaches Kombo.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// e.g. `https://api.kombo.dev/v1`; the path `/ats/applications` is appended.
    pub base_url: String,
    pub api_key: Secret,
    /// Per request, including reading the body.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// What a response may hold.
    pub limits: ResponseLimits,
}

/// Bounds on what Kombo sends, so a broken or hostile upstream cannot exhaust memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// A response body larger than this is cut off and the page fails
    /// (`[kombo] max_response_bytes`).
    pub max_response_bytes: u64,
    /// A record larger than this is rejected like any unreadable record
    /// (`[kombo] max_record_bytes`).
    pub max_record_bytes: usize,
}

/// The default of `[kombo] max_response_bytes`: a full page of 250 applications is
/// typically well under 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// The longest `next` cursor followed. Kombo's cursors are short opaque strings; a longer
/// one cannot be sent back in a URL anyway.
pub const MAX_CURSOR_BYTES: usize = 4096;

/// The most of an error body read (only Kombo's error code and message are needed).
const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;

impl Default for ResponseLimits {
    fn default() -> Self {
        Self {
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// When and how often a failed request is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles after each failure.
    pub base_delay: Duration,
    /// Cap on the computed backoff.
    pub max_delay: Duration,
    /// Cap on a wait the server asks for (`Retry-After`, `ratelimit-reset`).
    pub max_server_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_server_wait: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (from 1): exponential backoff with jitter
    /// (`jitter` in `[0, 1)` scales it between 50 % and 100 %), but never less than what
    /// the server asked for, itself capped at `max_server_wait`. Pure.
    pub fn wait(&self, attempt: u32, server_hint: Option<Duration>, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let backoff = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay)
            .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        match server_hint {
            Some(hint) => backoff.max(hint.min(self.max_server_wait)),
            None => backoff,
        }
    }
}

/// The filters of one listing. Every one is re-sent with every cursor request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplicationsQuery {
    /// Records changed (or whose interviews, offers or candidate changed) after this.
    pub updated_after: Option<Timestamp>,
    /// hirehook sets this: deletions are events.
    pub include_deleted: bool,
    pub ignore_unsupported_filters: bool,
    pub ids: Vec<String>,
    pub remote_ids: Vec<String>,
    pub outcomes: Vec<Outcome>,
    pub job_ids: Vec<String>,
    pub job_remote_ids: Vec<String>,
    pub current_stage_ids: Vec<String>,
    /// Day granularity: created on or after that day.
    pub remote_created_after: Option<NaiveDate>,
    /// 1..=250; `None` means [`MAX_PAGE_SIZE`].
    pub page_size: Option<u16>,
}

impl ApplicationsQuery {
    /// The query parameters, cursor excluded.
    fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![(
            "page_size",
            self.page_size.unwrap_or(MAX_PAGE_SIZE).to_string(),
        )];
        if let Some(t) = self.updated_after {
            p.push(("updated_after", format_timestamp(&t)));
        }
        if self.include_deleted {
            p.push(("include_deleted", "true".into()));
        }
        if self.ignore_unsupported_filters {
            p.push(("ignore_unsupported_filters", "true".into()));
        }
        let lists: [(&'static str, Vec<&str>); 6] = [
            ("ids", self.ids.iter().map(String::as_str).collect()),
            (
                "remote_ids",
                self.remote_ids.iter().map(String::as_str).collect(),
            ),
            (
                "outcomes",
                self.outcomes.iter().map(Outcome::as_str).collect(),
            ),
            ("job_ids", self.job_ids.iter().map(String::as_str).collect()),
            (
                "job_remote_ids",
                self.job_remote_ids.iter().map(String::as_str).collect(),
            ),
            (
                "current_stage_ids",
                self.current_stage_ids.iter().map(String::as_str).collect(),
            ),
        ];
        for (name, values) in lists {
            if !values.is_empty() {
                p.push((name, values.join(",")));
            }
        }
        if let Some(day) = self.remote_created_after {
            p.push(("remote_created_after", day.format("%Y-%m-%d").to_string()));
        }
        p
    }
}

/// Kombo's timestamp format: UTC, milliseconds, `Z` (an offset is rejected with 400).
pub fn format_timestamp(t: &Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// One page, as handed to the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Where it came from (for errors and logs).
    pub at: PageRef,
    /// The records, in Kombo's order, not parsed yet: the caller parses those it needs
    /// ([`ScannedPage::parse`]); the refused ones were not processed and are to be reported.
    pub records: ScannedPage,
    /// Whether another page follows.
    pub has_more: bool,
}

/// Observes retries (logging, metrics, tests).
pub type RetryObserver = Arc<dyn Fn(&RetryNotice) + Send + Sync>;

/// Observes failed requests (metrics).
pub type ErrorObserver = Arc<dyn Fn(&KomboError) + Send + Sync>;

/// A Kombo API client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct KomboClient {
    http: reqwest::Client,
    /// `{base_url}/ats/applications`.
    endpoint: String,
    api_key: Secret,
    retry: RetryPolicy,
    limits: ResponseLimits,
    /// `Retry-After` dates are counted from its now.
    clock: Clock,
    on_retry: Option<RetryObserver>,
    /// Told of every failed request (metrics count them by error code).
    on_error: Option<ErrorObserver>,
}

impl std::fmt::Debug for KomboClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KomboClient")
            .field("endpoint", &self.endpoint)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl KomboClient {
    pub fn new(config: ClientConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("hirehook/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()?;
        Ok(Self {
            http,
            endpoint: format!("{}/ats/applications", config.base_url.trim_end_matches('/')),
            api_key: config.api_key,
            retry: config.retry,
            limits: config.limits,
            clock: Clock::System,
            on_retry: None,
            on_error: None,
        })
    }

    /// Reads "now" from `clock` (for `Retry-After` dates).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Calls `observer` before every retry.
    pub fn with_retry_observer(mut self, observer: RetryObserver) -> Self {
        self.on_retry = Some(observer);
        self
    }

    /// Calls `observer` on every failed request, retried or not.
    pub fn with_error_observer(mut self, observer: ErrorObserver) -> Self {
        self.on_error = Some(observer);
        self
    }

    /// A pager over one integration's applications. Nothing is fetched until
    /// [`Pager::next_page`] is called; each call holds one page in memory.
    ///
    /// `known_applications` (how many the integration had at the last count) sizes the
    /// page budget: see [`Pager::page_budget`].
    pub fn applications(
        &self,
        integration_id: &str,
        query: ApplicationsQuery,
        known_applications: u64,
    ) -> Pager {
        let page_size = query.page_size.unwrap_or(MAX_PAGE_SIZE).max(1);
        Pager {
            client: self.clone(),
            integration_id: integration_id.to_owned(),
            params: Arc::new(query.params()),
            page_limits: PageLimits {
                max_records: usize::from(page_size),
                max_record_bytes: self.limits.max_record_bytes,
            },
            known_applications,
            records_read: 0,
            cursors_seen: HashSet::new(),
            cursor: None,
            pages_fetched: 0,
            finished: false,
            prefetch: None,
            ahead: Arc::new(tokio::sync::Semaphore::new(PAGES_AHEAD)),
        }
    }

    /// One page request with retries, scanned.
    async fn fetch(
        &self,
        at: &PageRef,
        params: &[(&'static str, String)],
        cursor: Option<&str>,
        limits: &PageLimits,
    ) -> Result<ScannedPage, KomboError> {
        self.with_retries(at, |attempt| async move {
            let body = self.request_once(at, params, cursor, attempt).await?;
            parse_body(at, &body, attempt, limits)
        })
        .await
    }

    /// One page request with retries, unparsed: a 2xx body.
    async fn fetch_raw(
        &self,
        at: &PageRef,
        params: &[(&'static str, String)],
        cursor: Option<&str>,
    ) -> Result<bytes::Bytes, KomboError> {
        self.with_retries(at, |attempt| self.request_once(at, params, cursor, attempt))
            .await
    }

    /// Runs `step(attempt)` until it succeeds, fails for good, or the attempts run out,
    /// waiting between attempts as the retry policy and the server say.
    async fn with_retries<T, Fut>(
        &self,
        at: &PageRef,
        step: impl FnMut(u32) -> Fut,
    ) -> Result<T, KomboError>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.with_retries_from(at, 1, step).await
    }

    /// As [`Self::with_retries`], counting attempts from `first` (earlier ones were made
    /// elsewhere).
    async fn with_retries_from<T, Fut>(
        &self,
        at: &PageRef,
        first: u32,
        mut step: impl FnMut(u32) -> Fut,
    ) -> Result<T, KomboError>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut attempt = first;
        loop {
            match step(attempt).await {
                Ok(value) => return Ok(value),
                Err(failure) => self.after_failure(at, attempt, failure).await?,
            }
            attempt += 1;
        }
    }

    /// After failed attempt `attempt`: counts the error, and either returns it (final, or
    /// the attempts ran out) or logs, notifies and waits before the next attempt.
    async fn after_failure(
        &self,
        at: &PageRef,
        attempt: u32,
        failure: Failure,
    ) -> Result<(), KomboError> {
        let (err, hint) = match failure {
            Failure::Final(err) => {
                self.count_error(&err);
                return Err(*err);
            }
            Failure::Retryable(err, hint) => (*err, hint),
        };
        self.count_error(&err);
        if attempt >= self.retry.max_attempts {
            return Err(err);
        }
        let wait = self.retry.wait(attempt, hint, rand::random::<f64>());
        let notice = RetryNotice {
            at: at.clone(),
            attempt,
            wait,
            server_hint: hint,
            reason: crate::redact::bounded(&err.to_string(), crate::redact::MAX_TEXT).into_owned(),
        };
        tracing::warn!(
            integration = %at.integration_id,
            page = at.page,
            attempt,
            wait = %humantime::format_duration(wait),
            reason = %notice.reason,
            "kombo request failed; retrying"
        );
        if let Some(observer) = &self.on_retry {
            observer(&notice);
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn count_error(&self, err: &KomboError) {
        if let Some(observer) = &self.on_error {
            observer(err);
        }
    }

    /// One HTTP request: the body of a 2xx, or the failure classified.
    async fn request_once(
        &self,
        at: &PageRef,
        params: &[(&'static str, String)],
        cursor: Option<&str>,
        attempts: u32,
    ) -> Result<bytes::Bytes, Failure> {
        if let Some(cursor) = cursor
            && cursor.len() > MAX_CURSOR_BYTES
        {
            // It can never be sent: no retry will help.
            return Err(Failure::Final(Box::new(KomboError::BadCursor {
                at: at.clone(),
                bytes: cursor.len(),
                max: MAX_CURSOR_BYTES,
            })));
        }
        let mut request = self
            .http
            .get(&self.endpoint)
            .bearer_auth(self.api_key.expose())
            .header("X-Integration-Id", &at.integration_id)
            .header("Accept", "application/json")
            .query(params);
        if let Some(cursor) = cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let transport = |source: reqwest::Error| {
            // A request that could not be built will not build on the next attempt either.
            let unbuildable = source.is_builder();
            // Its URL holds the cursor and the filters: neither belongs in a log line.
            let err = Box::new(KomboError::Transport {
                at: at.clone(),
                source: source.without_url(),
                attempts,
            });
            if unbuildable {
                Failure::Final(err)
            } else {
                Failure::Retryable(err, None)
            }
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let limit = if status.is_success() {
            self.limits.max_response_bytes
        } else {
            MAX_ERROR_BODY_BYTES
        };
        if let Some(length) = response.content_length()
            && length > limit
            && status.is_success()
        {
            return Err(Failure::Final(Box::new(KomboError::TooLarge {
                at: at.clone(),
                limit,
            })));
        }
        // Copied as they come (see `body`): holding the chunks would pin the client's read
        // buffers; a body cut at the limit is never joined.
        let mut buffer = super::body::BodyBuffer::new(response.content_length(), limit);
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if (buffer.len() + chunk.len()) as u64 > limit {
                if !status.is_success() {
                    // An error body is only read for Kombo's code: its start will do.
                    let room = (limit as usize).saturating_sub(buffer.len());
                    buffer.push(&chunk[..room.min(chunk.len())]);
                    break;
                }
                // The same body would come again: the sync fails, the next poll retries.
                return Err(Failure::Final(Box::new(KomboError::TooLarge {
                    at: at.clone(),
                    limit,
                })));
            }
            buffer.push(&chunk);
        }
        let body = buffer.finish();
        if status.is_success() {
            return Ok(body);
        }
        Err(classify_error(
            self.clock.now(),
            at,
            status,
            &headers,
            &body,
            attempts,
        ))
    }
}

/// Parses a 2xx body; a truncated one is worth another attempt.
fn parse_body(
    at: &PageRef,
    body: &[u8],
    attempts: u32,
    limits: &PageLimits,
) -> Result<ScannedPage, Failure> {
    scan_page_with(body, limits).map_err(|source| {
        let truncated = source.truncated;
        let err = KomboError::Malformed {
            at: at.clone(),
            source,
            attempts,
        };
        if truncated {
            Failure::Retryable(Box::new(err), None)
        } else {
            Failure::Final(Box::new(err))
        }
    })
}

/// The `data.next` cursor read from the first bytes of a page, before the records are
/// parsed, so that the next request can go out while this page is being parsed. `None`
/// when it cannot be read that cheaply (the caller then waits for the full parse, which
/// is also what confirms the value).
fn quick_next(body: &[u8]) -> Option<Option<String>> {
    use serde::Deserialize as _;
    let head = &body[..body.len().min(1024)];
    let find = |needle: &[u8]| head.windows(needle.len()).position(|w| w == needle);
    let key = find(b"\"next\"")?;
    if find(b"\"results\"").is_some_and(|results| results < key) {
        return None;
    }
    let rest = &body[key + 6..];
    let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    if rest[colon] != b':' {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(&rest[colon + 1..]);
    Option::<String>::deserialize(&mut de).ok()
}

/// An attempt's failure, and whether another attempt may help.
enum Failure {
    Final(Box<KomboError>),
    /// With the wait the server asked for, if any.
    Retryable(Box<KomboError>, Option<Duration>),
}

/// Error codes worth another attempt.
const RETRYABLE_CODES: &[&str] = &[
    "PLATFORM.RATE_LIMIT_EXCEEDED",
    "PLATFORM.CONCURRENCY_LIMIT_EXCEEDED",
    "REMOTE.RATE_LIMIT_EXCEEDED",
    "REMOTE.SERVICE_UNAVAILABLE",
];

fn classify_error(
    now: Timestamp,
    at: &PageRef,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    attempts: u32,
) -> Failure {
    let parsed = serde_json::from_slice::<ErrorEnvelope>(body).ok();
    let code = parsed.as_ref().and_then(|e| e.error.code.as_deref());
    let retryable = matches!(status.as_u16(), 429 | 502 | 503 | 504)
        || code.is_some_and(|c| RETRYABLE_CODES.contains(&c));
    let unauthorized =
        status == StatusCode::UNAUTHORIZED || code == Some("PLATFORM.AUTHENTICATION_INVALID");
    let err = match parsed {
        Some(_) | None if unauthorized => KomboError::Unauthorized {
            at: at.clone(),
            message: parsed
                .as_ref()
                .map(|e| e.error.message.clone())
                .unwrap_or_else(|| format!("HTTP {status}")),
        },
        Some(envelope) => KomboError::Api {
            at: at.clone(),
            status: status.as_u16(),
            body: envelope.error,
            attempts,
        },
        None => KomboError::Http {
            at: at.clone(),
            status: status.as_u16(),
            body_prefix: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            attempts,
        },
    };
    if retryable {
        Failure::Retryable(Box::new(err), server_wait(headers, now))
    } else {
        Failure::Final(Box::new(err))
    }
}

/// The wait a response asks for: `Retry-After` (seconds, or an HTTP date counted from
/// `now`) or `ratelimit-reset` (seconds), the longer of the two.
pub fn server_wait(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let retry_after = text("retry-after").and_then(|v| {
        v.parse::<u64>().ok().map(Duration::from_secs).or_else(|| {
            let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            (when.with_timezone(&Utc) - now).to_std().ok()
        })
    });
    let reset = text("ratelimit-reset")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)));
    retry_after.into_iter().chain(reset).max()
}

/// Walks one listing page by page.
#[derive(Debug)]
pub struct Pager {
    client: KomboClient,
    integration_id: String,
    params: Arc<Vec<(&'static str, String)>>,
    /// The page size asked for bounds a page's records.
    page_limits: PageLimits,
    /// The integration's size when the sync began, for the page budget.
    known_applications: u64,
    /// Records (read or rejected) in the pages so far.
    records_read: u64,
    /// A 128-bit hash of every cursor followed in this listing: a repeat is a loop.
    cursors_seen: HashSet<u128>,
    cursor: Option<String>,
    pages_fetched: u32,
    finished: bool,
    /// The next page, being fetched and parsed while the caller works on this one.
    prefetch: Option<Prefetch>,
    /// Pages fetched ahead of the caller at most: each prefetch holds a permit from
    /// before its request until the caller takes its page. With the page the caller holds,
    /// a sync keeps at most three pages in memory.
    ahead: Arc<tokio::sync::Semaphore>,
}

/// How many pages a pager fetches ahead of its caller.
const PAGES_AHEAD: usize = 2;

/// Pages any listing may take beyond twice what its size needs (see
/// [`Pager::page_budget`]).
pub const PAGE_BUDGET_FLOOR: u64 = 100;

/// A 128-bit hash of a cursor (cursors can be long; their hashes are what a pager keeps).
fn cursor_hash(cursor: &str) -> u128 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(cursor.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(first)
}

/// A page fetch running in its own task; aborted (with any fetch it started) if dropped.
#[derive(Debug)]
struct Prefetch {
    /// The cursor it fetches (`None`: the first page).
    cursor: Option<String>,
    task: tokio::task::JoinHandle<Prefetched>,
}

/// What a prefetch task hands back.
#[derive(Debug)]
struct Prefetched {
    page: Result<ScannedPage, KomboError>,
    /// The fetch of the page after it, started as soon as this page's cursor was readable.
    next: Option<Prefetch>,
    /// Released when the caller takes the page.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Prefetch {
    /// Fetches page `page` at `cursor`: waits for a permit, requests the raw body, starts
    /// the following page's request as soon as its cursor can be read, then parses.
    fn start(
        client: KomboClient,
        params: Arc<Vec<(&'static str, String)>>,
        limits: PageLimits,
        at: PageRef,
        cursor: Option<String>,
        ahead: Arc<tokio::sync::Semaphore>,
    ) -> Prefetch {
        let task_cursor = cursor.clone();
        let task = tokio::spawn(async move {
            let permit = ahead.clone().acquire_owned().await.ok();
            let body = match client.fetch_raw(&at, &params, task_cursor.as_deref()).await {
                Ok(body) => body,
                Err(e) => {
                    return Prefetched {
                        page: Err(e),
                        next: None,
                        _permit: permit,
                    };
                }
            };
            let next = match quick_next(&body) {
                // A cursor that points back at this page is not fetched ahead (the
                // pager reports the loop when it confirms the cursor).
                Some(Some(cursor)) if task_cursor.as_deref() != Some(cursor.as_str()) => {
                    Some(Prefetch::start(
                        client.clone(),
                        params.clone(),
                        limits,
                        PageRef {
                            integration_id: at.integration_id.clone(),
                            page: at.page + 1,
                        },
                        Some(cursor),
                        ahead,
                    ))
                }
                _ => None,
            };
            // A body that does not parse counts as the first attempt: a truncated one is
            // fetched again with the usual retries (and notices), a malformed one is final.
            let page = match parse_body(&at, &body, 1, &limits) {
                Ok(page) => Ok(page),
                Err(failure) => match client.after_failure(&at, 1, failure).await {
                    Err(e) => Err(e),
                    Ok(()) => {
                        let (client, params, cursor) = (&client, &params, task_cursor.as_deref());
                        let (at, limits) = (&at, &limits);
                        client
                            .with_retries_from(at, 2, |attempt| async move {
                                let body = client.request_once(at, params, cursor, attempt).await?;
                                parse_body(at, &body, attempt, limits)
                            })
                            .await
                    }
                },
            };
            Prefetched {
                page,
                next,
                _permit: permit,
            }
        });
        Prefetch { cursor, task }
    }
}

impl Pager {
    /// The next page, or `None` after the last. After an error the same call can be made
    /// again: it retries the same page.
    ///
    /// Pages are fetched ahead (up to two): while the caller processes a page, the next is
    /// parsed and the one after it requested, each on the runtime's worker threads.
    pub async fn next_page(&mut self) -> Result<Option<Page>, KomboError> {
        if self.finished {
            return Ok(None);
        }
        let at = PageRef {
            integration_id: self.integration_id.clone(),
            page: self.pages_fetched + 1,
        };
        let prefetch = match self.prefetch.take() {
            Some(p) => p,
            None => self.prefetch_at(self.cursor.clone()),
        };
        let Prefetched {
            page,
            next,
            _permit,
        } = match (&mut { prefetch }.task).await {
            Ok(done) => done,
            // A prefetch that panicked or was cancelled is simply fetched here.
            Err(_) => Prefetched {
                page: self
                    .client
                    .fetch(&at, &self.params, self.cursor.as_deref(), &self.page_limits)
                    .await,
                next: None,
                _permit: None,
            },
        };
        let parsed = page?;
        self.records_read += parsed.len() as u64;
        if let Some(next) = &parsed.next {
            // Without these checks a cursor that loops pages forever (one was seen at
            // 1,750 requests/s): the listing ends with an error instead, and the sync
            // with it, before the watermark moves.
            let budget = self.page_budget();
            let runaway = if !self.cursors_seen.insert(cursor_hash(next)) {
                Some(KomboError::CursorLoop { at: at.clone() })
            } else if u64::from(at.page) >= budget {
                Some(KomboError::TooManyPages {
                    at: at.clone(),
                    budget,
                })
            } else {
                None
            };
            if let Some(err) = runaway {
                self.finished = true;
                self.prefetch = None;
                return Err(err);
            }
        }
        self.pages_fetched += 1;
        self.finished = parsed.next.is_none();
        self.cursor = parsed.next.clone();
        if !self.finished {
            // Keep the speculative fetch only if it used the cursor the full parse confirms.
            self.prefetch = match next {
                Some(p) if p.cursor == self.cursor => Some(p),
                _ => Some(self.prefetch_at(self.cursor.clone())),
            };
        }
        Ok(Some(Page {
            at,
            records: parsed,
            has_more: !self.finished,
        }))
    }

    /// The most pages this listing may take: [`PAGE_BUDGET_FLOOR`] plus twice the pages
    /// the integration's size needs, its size being the larger of the applications known
    /// when the sync began and the records read so far. Full pages raise the budget faster
    /// than they use it, so only a listing of (nearly) empty pages that never ends runs
    /// out: a cursor that changes every time but leads nowhere.
    pub fn page_budget(&self) -> u64 {
        let size = self.known_applications.max(self.records_read);
        let per_page = self.page_limits.max_records.max(1) as u64;
        PAGE_BUDGET_FLOOR + 2 * size.div_ceil(per_page)
    }

    fn prefetch_at(&self, cursor: Option<String>) -> Prefetch {
        Prefetch::start(
            self.client.clone(),
            self.params.clone(),
            self.page_limits,
            PageRef {
                integration_id: self.integration_id.clone(),
                page: self.pages_fetched + 1,
            },
            cursor,
            self.ahead.clone(),
        )
    }

    /// Pages fetched so far.
    pub fn pages_fetched(&self) -> u32 {
        self.pages_fetched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn wait_doubles_caps_and_honours_the_server() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            max_server_wait: Duration::from_secs(60),
        };
        // (attempt, server hint, jitter) -> wait
        let cases = [
            (1, None, 1.0, Duration::from_secs(1)),
            (2, None, 1.0, Duration::from_secs(2)),
            (3, None, 1.0, Duration::from_secs(4)),
            (3, None, 0.0, Duration::from_secs(2)),
            (9, None, 1.0, Duration::from_secs(10)),
            (1, Some(Duration::from_secs(7)), 1.0, Duration::from_secs(7)),
            (4, Some(Duration::from_secs(3)), 1.0, Duration::from_secs(8)),
            (
                1,
                Some(Duration::from_secs(3600)),
                1.0,
                Duration::from_secs(60),
            ),
            (u32::MAX, None, 1.0, Duration::from_secs(10)),
        ];
        for (attempt, hint, jitter, want) in cases {
            assert_eq!(
                p.wait(attempt, hint, jitter),
                want,
                "attempt {attempt} hint {hint:?}"
            );
        }
    }

    #[test]
    fn quick_next_reads_the_cursor_only_when_it_comes_first() {
        let cases: [(&str, Option<Option<&str>>); 7] = [
            (
                r#"{"status":"success","data":{"next":"abc","results":[]}}"#,
                Some(Some("abc")),
            ),
            (
                r#"{"status":"success","data":{"next" : null,"results":[]}}"#,
                Some(None),
            ),
            (
                r#"{"data":{"results":[{"custom_fields":{"next":"x"}}],"next":"abc"}}"#,
                None,
            ),
            (r#"{"data":{"results":[]}}"#, None),
            (r#"{"data":{"next":"ab"#, None),
            (r#"{"data":{"next" "abc"}}"#, None),
            (r#"{"data":{"next":42}}"#, None),
        ];
        for (body, want) in cases {
            let got = quick_next(body.as_bytes());
            assert_eq!(got, want.map(|o| o.map(String::from)), "{body}");
        }
    }

    #[test]
    fn server_wait_reads_both_headers_and_dates_from_the_given_now() {
        let now = chrono::DateTime::parse_from_rfc2822("Sun, 29 Nov 2026 10:00:00 GMT")
            .expect("date")
            .with_timezone(&Utc);
        let mut h = HeaderMap::new();
        assert_eq!(server_wait(&h, now), None);
        h.insert("ratelimit-reset", HeaderValue::from_static("4"));
        assert_eq!(server_wait(&h, now), Some(Duration::from_secs(4)));
        h.insert("retry-after", HeaderValue::from_static("9"));
        assert_eq!(server_wait(&h, now), Some(Duration::from_secs(9)));
        h.insert("retry-after", HeaderValue::from_static("not a date"));
        assert_eq!(server_wait(&h, now), Some(Duration::from_secs(4)));
        // An HTTP date is counted from `now`, not from the wall clock.
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 29 Nov 2026 10:02:00 GMT"),
        );
        assert_eq!(server_wait(&h, now), Some(Duration::from_secs(120)));
        // A date in the past asks for nothing (the other header still counts).
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 29 Nov 2026 09:00:00 GMT"),
        );
        assert_eq!(server_wait(&h, now), Some(Duration::from_secs(4)));
    }

    #[test]
    fn timestamps_are_utc_millis_with_z() {
        let t = chrono::DateTime::parse_from_rfc3339("2024-01-02T04:04:05.678912+01:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_timestamp(&t), "2024-01-02T03:04:05.678Z");
    }

    #[test]
    fn params_join_lists_and_skip_empty_ones() {
        let q = ApplicationsQuery {
            include_deleted: true,
            ids: vec!["a".into(), "b".into()],
            outcomes: vec![Outcome::Hired, Outcome::Declined],
            remote_created_after: NaiveDate::from_ymd_opt(2024, 5, 6),
            ..Default::default()
        };
        let params = q.params();
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("page_size"), Some("250"));
        assert_eq!(get("include_deleted"), Some("true"));
        assert_eq!(get("ids"), Some("a,b"));
        assert_eq!(get("outcomes"), Some("HIRED,DECLINED"));
        assert_eq!(get("remote_created_after"), Some("2024-05-06"));
        assert_eq!(get("job_ids"), None);
        assert_eq!(get("updated_after"), None);
    }
}
