//! The delivery worker: one task per subscriber claims due deliveries from the store, signs,
//! POSTs, records the attempt, and reschedules or dead-letters.
//!
//! The worker keeps no queue: which delivery goes next, and that one application's events
//! go in order, is the store's (see [`Store::claim_due`]). A claim ends when the attempt is
//! recorded; a worker that dies mid-attempt leaves its claims to expire, and those
//! deliveries are sent again with the same `webhook-id`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use url::Url;

use super::retry::{NextAttempt, RetrySchedule};
use super::send::{Pacer, describe_error, webhook_request};
use super::sign::SigningKey;
use super::ssrf;
use crate::clock::Clock;
use crate::config::Config;
use crate::leases::Held;
use crate::metrics::Metrics;
use crate::store::{AttemptRecord, AttemptResult, DueDelivery, Store, StoreError};
use crate::store_health::StoreHealth;

/// How much of a response body is kept with an attempt.
const RESPONSE_PREFIX_BYTES: usize = 512;

/// The longest a worker sleeps without looking at the store again.
const MAX_IDLE: Duration = Duration::from_secs(30);

/// The first wait after the store failed (the database away); it doubles with each failure
/// in a row, up to [`STORE_RETRY_MAX`]. A wake-up (a commit, the wake-up connection
/// coming back) cuts a wait short.
const STORE_RETRY_MIN: Duration = Duration::from_millis(250);
const STORE_RETRY_MAX: Duration = Duration::from_secs(10);

/// The next wait after a store failure that followed a wait of `last` (none: the first).
fn store_backoff(last: Option<Duration>) -> Duration {
    last.map_or(STORE_RETRY_MIN, |d| (d * 2).min(STORE_RETRY_MAX))
}

/// How long a claim outlives the request's own timeout: time to record the attempt. A
/// claim held longer than its subscriber's timeout plus this is taken for abandoned (its
/// worker died) and the delivery is handed out again.
const CLAIM_MARGIN: Duration = Duration::from_secs(30);

/// Why the deliverer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("subscriber {subscriber}: bad url: {message}")]
    BadUrl { subscriber: String, message: String },
    #[error("subscriber {subscriber}: a webhook secret is not a valid whsec_ secret")]
    BadSecret { subscriber: String },
    #[error("cannot build the HTTP client for subscriber {subscriber}: {source}")]
    Client {
        subscriber: String,
        #[source]
        source: reqwest::Error,
    },
}

/// One subscriber, as the worker needs it.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub url: Url,
    /// One signature per key (rotation).
    pub keys: Arc<Vec<SigningKey>>,
    /// Concurrent requests at most.
    pub max_in_flight: usize,
    /// Requests per second at most.
    pub rate_limit: Option<f64>,
    /// Per request.
    pub timeout: Duration,
}

/// Settings shared by every subscriber.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub schedule: RetrySchedule,
    pub allow_private_networks: bool,
    /// How long deliveries in flight may finish after shutdown is asked.
    pub shutdown_grace: Duration,
    /// Attempt times and due times are read from it.
    pub clock: Clock,
}

impl DeliverySettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            schedule: RetrySchedule {
                delays: config.delivery.retry_schedule.clone(),
                jitter: config.delivery.jitter,
                max_retry_after: config.delivery.max_retry_after,
            },
            allow_private_networks: config.delivery.allow_private_networks,
            shutdown_grace: config.delivery.shutdown_grace,
            clock: Clock::System,
        }
    }
}

impl Target {
    /// The targets of a config's subscribers.
    pub fn from_config(config: &Config) -> Result<Vec<Target>, DeliverError> {
        config
            .subscribers
            .iter()
            .map(|s| {
                let url = Url::parse(&s.url).map_err(|e| DeliverError::BadUrl {
                    subscriber: s.name.clone(),
                    message: e.to_string(),
                })?;
                let keys = s
                    .secrets
                    .iter()
                    .map(SigningKey::from_secret)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| DeliverError::BadSecret {
                        subscriber: s.name.clone(),
                    })?;
                Ok(Target {
                    name: s.name.clone(),
                    url,
                    keys: Arc::new(keys),
                    max_in_flight: s.max_in_flight.max(1) as usize,
                    rate_limit: s.rate_limit,
                    timeout: s.timeout,
                })
            })
            .collect()
    }
}

/// Wakes the workers when new events are queued. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Waker {
    /// One per subscriber: `notify_one` keeps a permit when the worker is busy, so a wake
    /// is never lost.
    notifies: Arc<Vec<Arc<Notify>>>,
}

impl Waker {
    /// Tells every worker to look at the store now.
    pub fn wake(&self) {
        for n in self.notifies.iter() {
            n.notify_one();
        }
    }
}

/// What a subscriber answered to one attempt, as the deliverer judges it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// The HTTP status; `None` when there was none (connection failed, timed out).
    pub status: Option<u16>,
    /// What a 429 or 503 asked for (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// Why there was no status.
    pub error: Option<String>,
    /// The start of the response body.
    pub body_prefix: Option<String>,
}

impl Answer {
    fn failed(error: String) -> Self {
        Self {
            error: Some(error),
            ..Self::default()
        }
    }

    /// For log lines: the error, else the status with its reason phrase.
    fn describe(&self) -> String {
        match (self.status, &self.error) {
            (_, Some(e)) => e.clone(),
            (Some(s), None) => match StatusCode::from_u16(s) {
                Ok(code) => format!("HTTP {code}"),
                Err(_) => format!("HTTP {s}"),
            },
            (None, None) => "no response".into(),
        }
    }
}

/// Answers attempts without a network: `(subscriber, delivery) -> answer`. For tests of
/// the schedule on tokio's paused clock (real sockets would race a clock that jumps) and
/// for benchmarks of the delivery path alone.
pub type ScriptedAnswers = Arc<dyn Fn(&str, &DueDelivery) -> Answer + Send + Sync>;

/// How attempts reach subscribers.
#[derive(Clone)]
enum Transport {
    /// HTTP: the daemon's.
    Http(reqwest::Client),
    /// No network: see [`ScriptedAnswers`].
    Scripted(ScriptedAnswers),
}

/// Delivers every subscriber's queue until shut down.
pub struct Deliverer {
    store: Arc<Store>,
    settings: Arc<DeliverySettings>,
    workers: Vec<(Target, Transport, Arc<Notify>)>,
    waker: Waker,
    /// Attempts, deliveries and latencies are counted here.
    metrics: Metrics,
    /// Store failures are reported here (readiness shows them).
    health: StoreHealth,
    /// Which subscribers this process delivers to (its delivery leases); all of them when
    /// not set.
    leases: Option<Held>,
}

impl Deliverer {
    pub fn new(
        store: Arc<Store>,
        targets: Vec<Target>,
        settings: DeliverySettings,
    ) -> Result<Self, DeliverError> {
        let mut workers = Vec::with_capacity(targets.len());
        for target in targets {
            if let Err(e) = ssrf::check_literal(&target.url, settings.allow_private_networks) {
                tracing::error!(
                    subscriber = %target.name,
                    "{e}; every delivery to it will fail until its url or \
                     `delivery.allow_private_networks` changes"
                );
            }
            let client = ssrf::delivery_client(target.timeout, settings.allow_private_networks)
                .map_err(|source| DeliverError::Client {
                    subscriber: target.name.clone(),
                    source,
                })?;
            workers.push((target, Transport::Http(client), Arc::new(Notify::new())));
        }
        let waker = Waker {
            notifies: Arc::new(workers.iter().map(|(_, _, n)| n.clone()).collect()),
        };
        store.expect_deliveries();
        Ok(Self {
            store,
            settings: Arc::new(settings),
            workers,
            waker,
            metrics: Metrics::default(),
            health: StoreHealth::default(),
            leases: None,
        })
    }

    /// Answers every attempt with `answers` instead of sending it (see [`ScriptedAnswers`]).
    pub fn with_scripted_answers(mut self, answers: ScriptedAnswers) -> Self {
        for (_, transport, _) in &mut self.workers {
            *transport = Transport::Scripted(answers.clone());
        }
        self
    }

    /// Reports the store failures the workers run into to `health`.
    pub fn with_store_health(mut self, health: StoreHealth) -> Self {
        self.health = health;
        self
    }

    /// Counts attempts, deliveries and delivery latency in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Claims a subscriber's deliveries only while `leases` says this process delivers to
    /// it (see [`crate::leases`]); deliveries in flight when a lease moves finish.
    pub fn with_leases(mut self, leases: Held) -> Self {
        self.leases = Some(leases);
        self
    }

    /// A handle that wakes the workers.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Runs every subscriber's worker until `shutdown`; then lets deliveries in flight
    /// finish within the grace period and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut set = JoinSet::new();
        for (target, transport, notify) in self.workers {
            let worker = Worker {
                store: self.store.clone(),
                settings: self.settings.clone(),
                transport,
                notify,
                metrics: self.metrics.clone(),
                health: self.health.clone(),
                operations: Operations::of(&target.name),
                target: Arc::new(target),
            };
            set.spawn(worker.run(self.leases.clone(), shutdown.clone()));
        }
        while set.join_next().await.is_some() {}
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One subscriber's worker.
struct Worker {
    store: Arc<Store>,
    settings: Arc<DeliverySettings>,
    target: Arc<Target>,
    transport: Transport,
    notify: Arc<Notify>,
    metrics: Metrics,
    /// Store failures are reported here, under `operations`.
    health: StoreHealth,
    operations: Operations,
}

/// The names this worker reports its store operations under (see [`StoreHealth`]).
struct Operations {
    due: String,
    record: String,
}

impl Operations {
    fn of(subscriber: &str) -> Self {
        Self {
            due: format!("deliveries to {subscriber}: reading due deliveries"),
            record: format!("deliveries to {subscriber}: recording attempts"),
        }
    }
}

impl Worker {
    /// Delivers until `shutdown`, claiming only while `leases` says this process delivers
    /// to the subscriber (none: always).
    async fn run(self, mut leases: Option<Held>, shutdown: CancellationToken) {
        let name = self.target.name.clone();
        let semaphore = Arc::new(Semaphore::new(self.target.max_in_flight));
        let mut pacer = Pacer::new(self.target.rate_limit);
        let hold = self.target.timeout + CLAIM_MARGIN;
        let mut tasks: JoinSet<()> = JoinSet::new();
        // Claimed deliveries whose attempt is not recorded yet: handed back if shutdown
        // abandons them, so the next start (or another replica) need not wait for their
        // claims to expire.
        let unrecorded: Arc<std::sync::Mutex<Vec<DueDelivery>>> = Arc::default();
        let this = Arc::new(self);
        // The last wait after a failed claim, while claims fail in a row.
        let mut backoff: Option<Duration> = None;
        loop {
            while tasks.try_join_next().is_some() {}
            if shutdown.is_cancelled() {
                break;
            }
            if let Some(leases) = leases.as_mut()
                && !leases.delivers(&name)
            {
                // Another replica delivers to this subscriber (or none may yet): claim
                // nothing until this one holds its lease. Deliveries in flight finish.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = leases.changed() => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
                continue;
            }
            // A disabled subscriber (a 410, recorded by this replica or another) is handed
            // nothing by the claim itself: there is no window between a check of the
            // subscriber's state and the claim for another replica's 410 to land in.
            let free = semaphore.available_permits();
            let mut due = Vec::new();
            if free > 0 {
                // A paced subscriber claims one delivery when its turn comes, so that no
                // claim waits for the pacer (and outlives its hold).
                let want = if pacer.is_limited() {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = pacer.ready() => {}
                    }
                    1
                } else {
                    free
                };
                let result = this
                    .store
                    .claim_due(&name, this.settings.clock.now(), want, hold)
                    .await;
                this.health.record(&this.operations.due, &result);
                match result {
                    Ok(claimed) => {
                        due = claimed;
                        backoff = None;
                    }
                    Err(e) => {
                        let wait = store_backoff(backoff);
                        backoff = Some(wait);
                        tracing::error!(
                            subscriber = %name,
                            retry_in = ?wait,
                            "cannot claim due deliveries: {e}"
                        );
                    }
                }
            }
            if due.is_empty() {
                let wait = if let Some(wait) = backoff {
                    // The store failed: try again after the backoff, not at a due time
                    // read from it.
                    wait
                } else if free == 0 {
                    MAX_IDLE
                } else {
                    this.idle_wait().await
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = this.notify.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
                continue;
            }
            for delivery in due {
                pacer.take();
                // Claimed no more than the free permits: this never waits.
                let Ok(permit) = semaphore.clone().acquire_owned().await else {
                    break;
                };
                let worker = this.clone();
                let unrecorded = unrecorded.clone();
                lock(&unrecorded).push(delivery.clone());
                let span = tracing::info_span!(
                    "delivery",
                    subscriber = %name,
                    event_id = %delivery.entry.event_id
                );
                tasks.spawn(
                    async move {
                        let key = (delivery.log_seq, delivery.entry.attempts);
                        worker.attempt(delivery).await;
                        lock(&unrecorded).retain(|d| (d.log_seq, d.entry.attempts) != key);
                        worker.notify.notify_one();
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
        }
        // Shutdown: let deliveries in flight finish within the grace period. One that does
        // not is abandoned; its claim expires and it is sent again (after a restart, or by
        // another replica).
        let grace = this.settings.shutdown_grace;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                subscriber = %name,
                in_flight = tasks.len(),
                "deliveries still in flight after the grace period; they will be retried after restart"
            );
            tasks.abort_all();
            let abandoned = std::mem::take(&mut *lock(&unrecorded));
            for delivery in &abandoned {
                if let Err(e) = this.store.release_claim(delivery).await {
                    tracing::warn!(
                        subscriber = %name,
                        "cannot hand an abandoned delivery back (it is sent again when its claim expires): {e}"
                    );
                }
            }
        }
    }

    /// How long to sleep when nothing could be claimed: until the next delivery can be
    /// (a due time, or a claim expiring), at most [`MAX_IDLE`]. What is due but claimed by
    /// this worker wakes the loop when its task finishes.
    async fn idle_wait(&self) -> Duration {
        match self.store.next_due_at(&self.target.name).await {
            Ok(Some(at)) => {
                let now = self.settings.clock.now();
                if at <= now {
                    MAX_IDLE
                } else {
                    (at - now).to_std().unwrap_or(MAX_IDLE).min(MAX_IDLE)
                }
            }
            _ => MAX_IDLE,
        }
    }

    /// One attempt: sign, POST, record, reschedule.
    async fn attempt(&self, delivery: DueDelivery) {
        let target = &self.target;
        // The claim (made just before) lapses a hold after now: until shortly before,
        // recording the attempt is tried again if the store fails.
        let record_until = tokio::time::Instant::now()
            + (target.timeout + CLAIM_MARGIN).saturating_sub(Duration::from_secs(1));
        let attempt_no = delivery.entry.attempts + 1;
        let at = self.settings.clock.now();
        let started = Instant::now();
        let response = self.post(&delivery).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let record = AttemptRecord {
            attempt: attempt_no,
            at,
            status: response.status,
            latency_ms,
            error: response.error.clone(),
            response_prefix: response.body_prefix.clone(),
        };
        let result = match response.status {
            Some(200..=299) => AttemptResult::Delivered,
            Some(410) => AttemptResult::Disable {
                reason: format!(
                    "410 Gone from {} for event {} at {}",
                    crate::redact::url(target.url.as_str()),
                    delivery.entry.event_id,
                    crate::event::format_timestamp(&at)
                ),
            },
            _ => {
                let in_round = attempt_no.saturating_sub(delivery.entry.round_start);
                match self.settings.schedule.next(
                    in_round,
                    rand::random::<f64>(),
                    response.retry_after,
                ) {
                    NextAttempt::After(wait) => AttemptResult::Retry {
                        due_at: at
                            + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
                    },
                    NextAttempt::GiveUp => AttemptResult::Dead,
                }
            }
        };
        let what = response.describe();
        self.metrics.attempt(&target.name, &result);
        if result == AttemptResult::Delivered {
            let latency = (self.settings.clock.now() - delivery.detected_at)
                .to_std()
                .unwrap_or_default();
            self.metrics.delivered_after(&target.name, latency);
        }
        match &result {
            AttemptResult::Delivered => tracing::debug!(
                subscriber = %target.name,
                event_id = %delivery.entry.event_id,
                latency_ms,
                "delivered"
            ),
            AttemptResult::Retry { due_at } => tracing::warn!(
                subscriber = %target.name,
                event_id = %delivery.entry.event_id,
                attempt = attempt_no,
                next_attempt = %crate::event::format_timestamp(due_at),
                "delivery failed: {what}"
            ),
            AttemptResult::Dead => tracing::error!(
                subscriber = %target.name,
                event_id = %delivery.entry.event_id,
                attempt = attempt_no,
                "delivery failed for the last time, dead-lettered: {what}"
            ),
            AttemptResult::Disable { .. } => tracing::error!(
                subscriber = %target.name,
                url = %crate::redact::url(target.url.as_str()),
                "subscriber answered 410 Gone: disabled until `hirehook subscribers enable {}`",
                target.name
            ),
        }
        self.record(&delivery, &record, result, record_until).await;
    }

    /// Records an attempt. While the store cannot be reached (the database away), tries
    /// again with backoff until `until`, shortly before the claim lapses: an attempt
    /// recorded after the database came back is not made again. Past `until` (or on an
    /// error that waiting cannot cure) it gives up: the delivery is made again, with the
    /// same `webhook-id`, once its claim has expired.
    async fn record(
        &self,
        delivery: &DueDelivery,
        record: &AttemptRecord,
        result: AttemptResult,
        until: tokio::time::Instant,
    ) {
        let target = &self.target;
        let mut backoff = None;
        loop {
            let recorded = self
                .store
                .record_attempt(delivery, record, result.clone())
                .await;
            self.health.record(&self.operations.record, &recorded);
            let Err(e) = recorded else {
                if backoff.is_some() {
                    tracing::info!(
                        subscriber = %target.name,
                        event_id = %delivery.entry.event_id,
                        "delivery attempt recorded after the store came back"
                    );
                }
                return;
            };
            let wait = store_backoff(backoff);
            let transient = matches!(e, StoreError::Io(_) | StoreError::Database { .. });
            if !transient || tokio::time::Instant::now() + wait > until {
                tracing::error!(
                    subscriber = %target.name,
                    event_id = %delivery.entry.event_id,
                    "cannot record a delivery attempt (it will be made again, with the same \
                     webhook-id, once its claim expires): {e}"
                );
                return;
            }
            tracing::warn!(
                subscriber = %target.name,
                event_id = %delivery.entry.event_id,
                retry_in = ?wait,
                "cannot record a delivery attempt yet: {e}"
            );
            backoff = Some(wait);
            tokio::time::sleep(wait).await;
        }
    }

    async fn post(&self, delivery: &DueDelivery) -> Answer {
        let target = &self.target;
        if let Err(e) = ssrf::check_literal(&target.url, self.settings.allow_private_networks) {
            return Answer::failed(e.to_string());
        }
        let client = match &self.transport {
            Transport::Http(client) => client,
            Transport::Scripted(answers) => return answers(&target.name, delivery),
        };
        let request = webhook_request(
            client,
            &target.url,
            &delivery.entry.event_id,
            delivery.body.clone(),
            &target.keys,
            self.settings.clock.now().timestamp(),
        );
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Answer::failed(describe_error(&e)),
        };
        let status = response.status();
        let retry_after = if matches!(status.as_u16(), 429 | 503) {
            crate::ats::client::server_wait(response.headers(), self.settings.clock.now())
        } else {
            None
        };
        let mut prefix = Vec::new();
        while prefix.len() < RESPONSE_PREFIX_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => prefix.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        prefix.truncate(RESPONSE_PREFIX_BYTES);
        Answer {
            status: Some(status.as_u16()),
            retry_after,
            error: None,
            body_prefix: (!prefix.is_empty())
                .then(|| String::from_utf8_lossy(&prefix).into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_back_off_doubling_to_a_ceiling() {
        let mut waits = Vec::new();
        let mut last = None;
        for _ in 0..9 {
            let wait = store_backoff(last);
            waits.push(wait.as_millis());
            last = Some(wait);
        }
        assert_eq!(
            waits,
            [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
    }
}
