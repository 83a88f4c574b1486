//! `/healthz`: the process answers. `/readyz`: the store reads fine, both in readiness's own
//! probe and in what the daemon did with it lately, and every integration synced
//! successfully within 3 × `poll_interval`.

use super::with_store;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

use super::AdminState;
use super::error::ApiError;
use crate::inspect::staleness;
use crate::store::StoreError;
use crate::store_health::{StoreHealth, describe};

/// How long a readiness answer is reused: `/readyz` needs no token, so however often it
/// is called, the store is read for it at most once per this.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The name readiness's own store reads are reported under (see [`StoreHealth`]).
const PROBE: &str = "readiness probe";

/// One readiness answer and when it was made.
#[derive(Debug, Clone)]
pub struct Probe {
    at: Instant,
    status: StatusCode,
    body: serde_json::Value,
}

/// Always 200 while the process serves requests.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when ready; 503 naming each stale integration and why (never synced, last success
/// too old, with the last error), and the store failures (`"store"`: what failed, never
/// stored content). Answers are reused for [`PROBE_EVERY`].
pub async fn readyz(State(state): State<AdminState>) -> Response {
    // Held while a probe runs: concurrent calls wait for it and share its answer.
    let mut last = state.inner.readiness.lock().await;
    let probe = match last.as_ref() {
        Some(probe) if probe.at.elapsed() < PROBE_EVERY => probe.clone(),
        _ => {
            let probe = probe(&state).await;
            *last = Some(probe.clone());
            probe
        }
    };
    drop(last);
    (probe.status, Json(probe.body)).into_response()
}

/// Reads what readiness needs from the store, the cheap way.
async fn probe(state: &AdminState) -> Probe {
    let health = state.inner.store_health.clone();
    let probe_health = health.clone();
    let result = with_store!(state, |store, config| {
        let health = &probe_health;
        // What `/v1/status` reads besides the sync states, without scanning the
        // outbox: each subscriber's queue summary (kept in memory; plus the record of
        // its oldest pending event) and whether it is disabled.
        for subscriber in &config.subscribers {
            probed(health, store.queue_summary(&subscriber.name).await)?;
            probed(health, store.disabled_reason(&subscriber.name).await)?;
        }
        let now = Utc::now();
        let mut fresh = Vec::new();
        let mut stale = Vec::new();
        for integration in &config.integrations {
            let sync = probed(health, store.sync_state(&integration.id).await)?;
            // Unauthenticated: never text from Kombo's answers (an upstream error
            // body can hold anything); `/v1/status` has the full error.
            let last_error = sync.last_error_summary.clone().or_else(|| {
                sync.last_error
                    .as_ref()
                    .map(|_| "the last sync failed (see /v1/status)".to_owned())
            });
            let entry = json!({
                "integration": integration.id,
                "last_success_at": sync.last_success_at,
                "last_error": last_error,
            });
            match staleness(
                &sync,
                config.kombo.poll_interval,
                now,
                last_error.as_deref(),
            ) {
                None => fresh.push(entry),
                Some(reason) => {
                    let mut entry = entry;
                    entry["reason"] = reason.into();
                    stale.push(entry);
                }
            }
        }
        health.succeeded(PROBE);
        Ok((fresh, stale))
    })
    .await;
    let store = store_failures(&health);
    let (status, body) = match (result, store) {
        (Ok((fresh, stale)), None) if stale.is_empty() => (
            StatusCode::OK,
            json!({"status": "ready", "integrations": fresh}),
        ),
        (Ok((fresh, stale)), None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "stale": stale, "integrations": fresh}),
        ),
        (Ok((fresh, stale)), Some(store)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "store": store, "stale": stale, "integrations": fresh}),
        ),
        (Err(e), store) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "store": store.unwrap_or(e.message)}),
        ),
    };
    Probe {
        at: Instant::now(),
        status,
        body,
    }
}

/// A store read of the probe: a failure is recorded and described without stored content.
fn probed<T>(health: &StoreHealth, result: Result<T, StoreError>) -> Result<T, ApiError> {
    result.map_err(|e| {
        health.failed(PROBE, &e);
        ApiError::internal(format!("readiness cannot read the store: {}", describe(&e)))
    })
}

/// The store failures standing now, one line: `operation: error (since …)`, `; `-joined.
fn store_failures(health: &StoreHealth) -> Option<String> {
    let failures = health.failures();
    (!failures.is_empty()).then(|| {
        failures
            .iter()
            .map(|f| {
                format!(
                    "{}: {} (last at {})",
                    f.operation,
                    f.error,
                    crate::event::format_timestamp(&f.at)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}
