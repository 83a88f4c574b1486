//! `/healthz`: the process answers. `/readyz`: the store answers and every integration
//! synced successfully within 3 × `poll_interval`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

use super::AdminState;
use crate::inspect::staleness;

/// Always 200 while the process serves requests.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when ready; 503 naming each stale integration and why (never synced, last success
/// too old, with the last error), or the store failure.
pub async fn readyz(State(state): State<AdminState>) -> Response {
    let result = state
        .with_store(|store, config| {
            let now = Utc::now();
            let mut fresh = Vec::new();
            let mut stale = Vec::new();
            for integration in &config.integrations {
                let sync = store.sync_state(&integration.id)?;
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
            Ok((fresh, stale))
        })
        .await;
    match result {
        Ok((fresh, stale)) if stale.is_empty() => (
            StatusCode::OK,
            Json(json!({"status": "ready", "integrations": fresh})),
        )
            .into_response(),
        Ok((fresh, stale)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "stale": stale, "integrations": fresh})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "store": e.message})),
        )
            .into_response(),
    }
}
