//! Prometheus metrics, served by the admin API at `/metrics`.
//!
//! Each [`Metrics`] owns its own `prometheus_client` registry: no process-global recorder,
//! so several daemons in one process (the integration tests run many) never mix their
//! counts, and a component built without metrics (a CLI `sync --once`, a test) records into
//! an instance nobody reads. Counters and histograms are updated where things happen
//! (sync, Kombo client, delivery worker, Kombo push trigger); the gauges that describe the
//! store (outbox depth, oldest pending delivery, dead letters, disabled subscribers) are
//! computed from the store on each scrape by [`Metrics::render`].
//!
//! Every name starts with `hirehook_`; `docs/operations.md` lists them with their meaning.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::ats::KomboError;
use crate::config::Config;
use crate::event::EventType;
use crate::store::{AttemptResult, Store, StoreError};

/// The content type of [`Metrics::render`]'s output (OpenMetrics text, which Prometheus
/// scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntegrationLabels {
    integration: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    integration: String,
    /// `ok` or `error`.
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KomboErrorLabels {
    integration: String,
    /// Kombo's `error.code`, else `http_<status>`, `transport` or `malformed`.
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    integration: String,
    event_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriberLabels {
    subscriber: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    subscriber: String,
    /// Deliveries: `delivered` or `dead_lettered`; attempts: `delivered`, `retry`,
    /// `dead_lettered`, `disabled`.
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    /// `events`, `deliveries`, `attempts`, `event_ids`, `snapshots`.
    class: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    /// `triggered`, `coalesced`, `duplicate`, `ignored`, `unauthorized`, `bad_request`.
    result: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn sync_duration_histogram() -> Histogram {
    // 50 ms .. ~7 min.
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

fn delivery_latency_histogram() -> Histogram {
    // 10 ms .. ~11.6 h: a delivery that needed the whole retry schedule still lands in a
    // bucket.
    Histogram::new(exponential_buckets(0.01, 4.0, 12))
}

struct Inner {
    registry: Registry,
    syncs: Family<SyncLabels, Counter>,
    sync_duration: HistogramFamily<SyncLabels>,
    pages: Family<IntegrationLabels, Counter>,
    records: Family<IntegrationLabels, Counter>,
    records_rejected: Family<IntegrationLabels, Counter>,
    records_unchanged: Family<IntegrationLabels, Counter>,
    kombo_errors: Family<KomboErrorLabels, Counter>,
    events: Family<EventLabels, Counter>,
    events_held: Family<IntegrationLabels, Counter>,
    deliveries: Family<OutcomeLabels, Counter>,
    attempts: Family<OutcomeLabels, Counter>,
    delivery_latency: HistogramFamily<SubscriberLabels>,
    subscribers_disabled_total: Family<SubscriberLabels, Counter>,
    kombo_webhooks: Family<ResultLabels, Counter>,
    lease_lost: Family<IntegrationLabels, Counter>,
    retention_removed: Family<ClassLabels, Counter>,
    // Computed from the store on scrape.
    outbox_pending: Family<SubscriberLabels, Gauge>,
    outbox_oldest_age: Family<SubscriberLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    dead_letters: Family<SubscriberLabels, Gauge>,
    subscriber_disabled: Family<SubscriberLabels, Gauge>,
    last_success: Family<IntegrationLabels, Gauge>,
    applications: Family<IntegrationLabels, Gauge>,
    held_pending: Family<IntegrationLabels, Gauge>,
    store_size: Gauge,
    oldest_event_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Serializes scrapes: gauges are set, then the registry is encoded.
    scrape: tokio::sync::Mutex<()>,
}

/// The daemon's metrics. Cheap to clone: clones share one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Why the metrics could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read the store for the metrics: {0}")]
    Store(#[from] StoreError),
    #[error("cannot encode the metrics")]
    Encode(#[from] std::fmt::Error),
}

impl Metrics {
    /// A fresh registry with every hirehook metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hirehook");
        let syncs = Family::default();
        registry.register(
            "syncs",
            "Syncs finished, by integration and outcome (ok, error)",
            Clone::clone(&syncs),
        );
        let sync_duration: HistogramFamily<SyncLabels> =
            Family::new_with_constructor(sync_duration_histogram);
        registry.register_with_unit(
            "sync_duration",
            "Duration of syncs, by integration and outcome",
            Unit::Seconds,
            sync_duration.clone(),
        );
        let pages = Family::default();
        registry.register(
            "kombo_pages",
            "Pages fetched from Kombo",
            Clone::clone(&pages),
        );
        let records = Family::default();
        registry.register(
            "kombo_records",
            "Application records fetched from Kombo",
            Clone::clone(&records),
        );
        let records_rejected = Family::default();
        registry.register(
            "kombo_records_rejected",
            "Records that could not be read (the watermark waits for them)",
            Clone::clone(&records_rejected),
        );
        let records_unchanged = Family::default();
        registry.register(
            "kombo_records_unchanged",
            "Records skipped unparsed: byte for byte the record their snapshot came from",
            Clone::clone(&records_unchanged),
        );
        let kombo_errors = Family::default();
        registry.register(
            "kombo_errors",
            "Failed Kombo requests (each attempt), by Kombo error code or http_<status>, transport, malformed",
            Clone::clone(&kombo_errors),
        );
        let events = Family::default();
        registry.register(
            "events",
            "Events derived and logged (queued for delivery), by integration and type",
            Clone::clone(&events),
        );
        let events_held = Family::default();
        registry.register(
            "events_held",
            "Events held by the mass-change guard for an operator",
            Clone::clone(&events_held),
        );
        let deliveries = Family::default();
        registry.register(
            "deliveries",
            "Deliveries finished, by subscriber and outcome (delivered, dead_lettered)",
            Clone::clone(&deliveries),
        );
        let attempts = Family::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts, by subscriber and outcome (delivered, retry, dead_lettered, disabled)",
            Clone::clone(&attempts),
        );
        let delivery_latency: HistogramFamily<SubscriberLabels> =
            Family::new_with_constructor(delivery_latency_histogram);
        registry.register_with_unit(
            "delivery_latency",
            "From the event's detection to its successful delivery, retries included",
            Unit::Seconds,
            delivery_latency.clone(),
        );
        let subscribers_disabled_total = Family::default();
        registry.register(
            "subscriber_disables",
            "Times a subscriber was disabled by a 410 Gone",
            Clone::clone(&subscribers_disabled_total),
        );
        let kombo_webhooks = Family::default();
        registry.register(
            "kombo_webhooks",
            "Kombo data-changed webhooks received, by result (triggered, coalesced, duplicate, ignored, unauthorized, bad_request)",
            Clone::clone(&kombo_webhooks),
        );
        let lease_lost = Family::default();
        registry.register(
            "lease_lost",
            "Page commits and sync-state writes the store refused because this replica's lease on the integration had lapsed or moved (fencing)",
            Clone::clone(&lease_lost),
        );
        let retention_removed = Family::default();
        registry.register(
            "retention_removed",
            "Items removed by retention, by class (events, deliveries, attempts, event_ids, snapshots)",
            Clone::clone(&retention_removed),
        );
        let store_size = Gauge::default();
        registry.register_with_unit(
            "store_size",
            "Size of the store on disk (sled: its directory; PostgreSQL: the database)",
            Unit::Bytes,
            Clone::clone(&store_size),
        );
        let oldest_event_age: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
        registry.register_with_unit(
            "oldest_event_age",
            "Age of the oldest event still in the log (0 when it is empty): what retention keeps",
            Unit::Seconds,
            Clone::clone(&oldest_event_age),
        );
        let outbox_pending = Family::default();
        registry.register(
            "outbox_pending",
            "Deliveries waiting (due, retrying or queued behind an earlier event)",
            Clone::clone(&outbox_pending),
        );
        let outbox_oldest_age = Family::default();
        registry.register_with_unit(
            "outbox_oldest_pending_age",
            "Age of the oldest pending delivery's event (0 when none)",
            Unit::Seconds,
            Clone::clone(&outbox_oldest_age),
        );
        let dead_letters = Family::default();
        registry.register(
            "dead_letters",
            "Dead letters currently stored",
            Clone::clone(&dead_letters),
        );
        let subscriber_disabled = Family::default();
        registry.register(
            "subscriber_disabled",
            "1 while a subscriber is disabled (after a 410 Gone), else 0",
            Clone::clone(&subscriber_disabled),
        );
        let last_success = Family::default();
        registry.register(
            "integration_last_success_timestamp",
            "Unix time of the integration's last successful sync (0: never)",
            Clone::clone(&last_success),
        );
        let applications = Family::default();
        registry.register(
            "integration_applications",
            "Applications with a snapshot, per integration",
            Clone::clone(&applications),
        );
        let held_pending = Family::default();
        registry.register(
            "integration_held_events",
            "Events currently held by the mass-change guard",
            Clone::clone(&held_pending),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                syncs,
                sync_duration,
                pages,
                records,
                records_rejected,
                records_unchanged,
                kombo_errors,
                events,
                events_held,
                deliveries,
                attempts,
                delivery_latency,
                subscribers_disabled_total,
                kombo_webhooks,
                lease_lost,
                retention_removed,
                outbox_pending,
                outbox_oldest_age,
                dead_letters,
                subscriber_disabled,
                last_success,
                applications,
                held_pending,
                store_size,
                oldest_event_age,
                scrape: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// A sync ended (successfully or not) after `duration`.
    pub fn sync_finished(&self, integration: &str, ok: bool, duration: Duration) {
        let labels = SyncLabels {
            integration: integration.to_owned(),
            outcome: if ok { "ok" } else { "error" }.to_owned(),
        };
        self.inner.syncs.get_or_create(&labels).inc();
        self.inner
            .sync_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    /// A page came from Kombo with `records` readable (of which `unchanged` were skipped
    /// unparsed) and `rejected` unreadable records.
    pub fn page_fetched(&self, integration: &str, records: usize, unchanged: u64, rejected: usize) {
        let labels = integration_labels(integration);
        self.inner.pages.get_or_create(&labels).inc();
        self.inner
            .records
            .get_or_create(&labels)
            .inc_by(records as u64);
        self.inner
            .records_unchanged
            .get_or_create(&labels)
            .inc_by(unchanged);
        if rejected > 0 {
            self.inner
                .records_rejected
                .get_or_create(&labels)
                .inc_by(rejected as u64);
        }
    }

    /// [`Metrics::kombo_error`] as the Kombo client's error observer.
    pub fn kombo_error_observer(&self) -> crate::ats::client::ErrorObserver {
        let metrics = self.clone();
        std::sync::Arc::new(move |error: &KomboError| {
            metrics.kombo_error(&error.at().integration_id, error)
        })
    }

    /// A request to Kombo failed (retried or not).
    pub fn kombo_error(&self, integration: &str, error: &KomboError) {
        self.inner
            .kombo_errors
            .get_or_create(&KomboErrorLabels {
                integration: integration.to_owned(),
                code: kombo_error_code(error),
            })
            .inc();
    }

    /// An event was logged and queued for delivery.
    pub fn event_logged(&self, integration: &str, event_type: EventType) {
        self.inner
            .events
            .get_or_create(&EventLabels {
                integration: integration.to_owned(),
                event_type: event_type.as_str().to_owned(),
            })
            .inc();
    }

    /// A sync's events were held by the mass-change guard.
    pub fn events_held(&self, integration: &str, n: u64) {
        if n > 0 {
            self.inner
                .events_held
                .get_or_create(&integration_labels(integration))
                .inc_by(n);
        }
    }

    /// A delivery attempt ended with `result`.
    pub fn attempt(&self, subscriber: &str, result: &AttemptResult) {
        let outcome = match result {
            AttemptResult::Delivered => "delivered",
            AttemptResult::Retry { .. } => "retry",
            AttemptResult::Dead => "dead_lettered",
            AttemptResult::Disable { .. } => "disabled",
        };
        let labels = OutcomeLabels {
            subscriber: subscriber.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.inner.attempts.get_or_create(&labels).inc();
        match result {
            AttemptResult::Delivered | AttemptResult::Dead => {
                self.inner.deliveries.get_or_create(&labels).inc();
            }
            AttemptResult::Disable { .. } => {
                self.inner
                    .subscribers_disabled_total
                    .get_or_create(&subscriber_labels(subscriber))
                    .inc();
            }
            AttemptResult::Retry { .. } => {}
        }
    }

    /// An event reached `subscriber` `latency` after it was detected.
    pub fn delivered_after(&self, subscriber: &str, latency: Duration) {
        self.inner
            .delivery_latency
            .get_or_create(&subscriber_labels(subscriber))
            .observe(latency.as_secs_f64());
    }

    /// A Kombo webhook was handled with `result` (`triggered`, `coalesced` into a poll
    /// already queued, `duplicate` id, `ignored`, `unauthorized`, `bad_request`).
    pub fn kombo_webhook(&self, result: &str) {
        self.inner
            .kombo_webhooks
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// The store refused a write of a sync of `integration`: this replica's lease on it had
    /// lapsed or moved to another replica (fencing).
    pub fn lease_lost(&self, integration: &str) {
        self.inner
            .lease_lost
            .get_or_create(&integration_labels(integration))
            .inc();
    }

    /// A retention batch removed what `report` counts.
    pub fn retention_removed(&self, report: &crate::store::SweepReport) {
        for (class, n) in report.classes() {
            // Every class appears from the first sweep on, at 0 when nothing went.
            let counter = self.inner.retention_removed.get_or_create(&ClassLabels {
                class: class.to_owned(),
            });
            counter.inc_by(n);
        }
    }

    /// The metrics as OpenMetrics text, after computing the store gauges for the
    /// integrations and subscribers of `config`.
    ///
    /// Cost: the in-memory queues (see [`Store::queue_summary`]), not a scan of the outbox.
    pub async fn render(&self, store: &Store, config: &Config) -> Result<String, RenderError> {
        let inner = &*self.inner;
        let _scrape = inner.scrape.lock().await;
        let now = Utc::now();
        for integration in &config.integrations {
            let labels = integration_labels(&integration.id);
            let state = store.sync_state(&integration.id).await?;
            inner
                .last_success
                .get_or_create(&labels)
                .set(state.last_success_at.map_or(0, |t| t.timestamp()));
            inner
                .applications
                .get_or_create(&labels)
                .set(i64::try_from(state.applications).unwrap_or(i64::MAX));
            let held = store.held_events(&integration.id).await?.len();
            inner
                .held_pending
                .get_or_create(&labels)
                .set(i64::try_from(held).unwrap_or(i64::MAX));
        }
        for subscriber in &config.subscribers {
            let labels = subscriber_labels(&subscriber.name);
            let backlog = store.queue_summary(&subscriber.name).await?;
            inner
                .outbox_pending
                .get_or_create(&labels)
                .set(i64::try_from(backlog.pending).unwrap_or(i64::MAX));
            let age = backlog
                .oldest_pending
                .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
            inner.outbox_oldest_age.get_or_create(&labels).set(age);
            inner
                .dead_letters
                .get_or_create(&labels)
                .set(i64::try_from(backlog.dead).unwrap_or(i64::MAX));
            let disabled = store.disabled_reason(&subscriber.name).await?.is_some();
            inner
                .subscriber_disabled
                .get_or_create(&labels)
                .set(i64::from(disabled));
        }
        inner
            .store_size
            .set(i64::try_from(store.size_on_disk().await?).unwrap_or(i64::MAX));
        let oldest = store.oldest_event_at().await?;
        inner
            .oldest_event_age
            .set(oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &inner.registry)?;
        Ok(text)
    }
}

fn integration_labels(integration: &str) -> IntegrationLabels {
    IntegrationLabels {
        integration: integration.to_owned(),
    }
}

fn subscriber_labels(subscriber: &str) -> SubscriberLabels {
    SubscriberLabels {
        subscriber: subscriber.to_owned(),
    }
}

/// The `code` label of a Kombo error: Kombo's own code when it sent one, else the HTTP
/// status, else the kind of failure.
pub fn kombo_error_code(error: &KomboError) -> String {
    if let Some(code) = error.code() {
        return code.to_owned();
    }
    match error {
        KomboError::Api { status, .. } | KomboError::Http { status, .. } => {
            format!("http_{status}")
        }
        KomboError::Unauthorized { .. } => "http_401".to_owned(),
        KomboError::Malformed { .. } => "malformed".to_owned(),
        KomboError::Transport { .. } => "transport".to_owned(),
        KomboError::TooLarge { .. } => "too_large".to_owned(),
        KomboError::BadCursor { .. } => "bad_cursor".to_owned(),
        KomboError::CursorLoop { .. } => "cursor_loop".to_owned(),
        KomboError::TooManyPages { .. } => "too_many_pages".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn separate_instances_do_not_share_counts() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.page_fetched("gh:1", 10, 7, 0);
        let config = Config::from_str_with_env(
            "[kombo]\napi_key = \"k\"\n[[integrations]]\nid = \"gh:1\"\n",
            std::path::Path::new("t.toml"),
            |_| None,
        )
        .expect("config");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_sled(dir.path(), 1 << 20).expect("store");
        let text_a = a.render(&store, &config).await.expect("render");
        let text_b = b.render(&store, &config).await.expect("render");
        assert!(text_a.contains("hirehook_kombo_records_total{integration=\"gh:1\"} 10"));
        assert!(text_a.contains("hirehook_kombo_records_unchanged_total{integration=\"gh:1\"} 7"));
        assert!(!text_b.contains("hirehook_kombo_records_total{"));
        assert!(text_a.ends_with("# EOF\n"));
    }
}
