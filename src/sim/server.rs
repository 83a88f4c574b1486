//! The HTTP face of the simulator (axum).
//!
//! API (as Kombo, see `shared/kombo/README.md`):
//! - `GET /v1/ats/applications`: `Authorization: Bearer <key>` (else 401
//!   `PLATFORM.AUTHENTICATION_INVALID`), `X-Integration-Id` (missing: 400
//!   `PLATFORM.INPUT_INVALID`; unknown: 404 `PLATFORM.INTEGRATION_NOT_FOUND`), then the
//!   query parameters (400 `PLATFORM.INPUT_INVALID` naming the parameter), then faults.
//!
//! Control API (no authentication; for tests, `demo` and benchmarks):
//! - `GET  /_sim/truth?since=SEQ`: `{"last_seq": n, "entries": [TruthEntry…]}` with
//!   `seq > since`.
//! - `POST /_sim/mutate?n=N`: applies N (default 1, at most 100 000) random changes,
//!   answers `{"entries": [TruthEntry…]}`.
//! - `POST /_sim/apply` with `{"integration_id", "application_id", "mutation": Mutation}`:
//!   one targeted change, answers the `TruthEntry` (404 / 409 with a Kombo error body when
//!   it does not apply).
//! - `GET  /_sim/faults`, `POST /_sim/faults` with a `FaultConfig` (replaces it).
//! - `GET  /_sim/stats`: [`SimStats`](super::stats::SimStats).
//!
//! Every error, including unknown routes, has Kombo's error body.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::cursor::Cursor;
use super::faults::{FaultConfig, FaultKind};
use super::mutate::{Mutation, SimError, TruthEntry};
use super::query::{InputError, ListParams};
use super::simulator::Simulator;
use crate::ats::model::{ErrorBody, ErrorEnvelope, PageData, PageEnvelope};

/// The routes, bound to `sim`.
pub fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/v1/ats/applications", get(list_applications))
        .route("/_sim/truth", get(truth))
        .route("/_sim/mutate", post(mutate))
        .route("/_sim/apply", post(apply))
        .route("/_sim/faults", get(get_faults).post(set_faults))
        .route("/_sim/stats", get(stats))
        .fallback(unknown_route)
        .with_state(sim)
}

/// A Kombo error response.
pub fn kombo_error(
    status: StatusCode,
    code: &str,
    title: &str,
    message: impl Into<String>,
) -> Response {
    error_response(status, Some(code), title, message)
}

/// A Kombo error response; `code` is `None` where Kombo's list of codes has none that fits
/// (the SDK accepts only its listed codes, or null).
fn error_response(
    status: StatusCode,
    code: Option<&str>,
    title: &str,
    message: impl Into<String>,
) -> Response {
    let body = ErrorEnvelope {
        status: Some("error".into()),
        error: ErrorBody {
            code: code.map(str::to_owned),
            title: Some(title.to_owned()),
            message: message.into(),
            log_url: Some("https://sim.kombo.invalid/logs".into()),
        },
    };
    json_response(status, &body)
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot serialize the response: {err}"),
        )
            .into_response(),
    }
}

fn input_invalid(message: impl Into<String>) -> Response {
    kombo_error(
        StatusCode::BAD_REQUEST,
        "PLATFORM.INPUT_INVALID",
        "Input invalid",
        message,
    )
}

async fn list_applications(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    sim.update_stats(|s| s.requests += 1);

    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| key.trim() == sim.api_key());
    if !authorized {
        sim.update_stats(|s| s.unauthorized += 1);
        return kombo_error(
            StatusCode::UNAUTHORIZED,
            "PLATFORM.AUTHENTICATION_INVALID",
            "Authentication invalid",
            "The API key in the Authorization header (Bearer <key>) is missing or invalid.",
        );
    }

    let Some(integration_id) = headers
        .get("x-integration-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
    else {
        sim.update_stats(|s| s.invalid_input += 1);
        return input_invalid("the X-Integration-Id header is required");
    };
    if !sim.has_integration(integration_id) {
        sim.update_stats(|s| s.unknown_integration += 1);
        return kombo_error(
            StatusCode::NOT_FOUND,
            "PLATFORM.INTEGRATION_NOT_FOUND",
            "Integration not found",
            format!("no integration with id {integration_id:?} exists"),
        );
    }
    sim.update_stats(|s| {
        s.integrations
            .entry(integration_id.to_owned())
            .or_default()
            .requests += 1
    });

    let params = match ListParams::parse(query.as_deref().unwrap_or("")) {
        Ok(p) => p,
        Err(InputError(message)) => {
            sim.update_stats(|s| s.invalid_input += 1);
            return input_invalid(message);
        }
    };
    let fingerprint = params.filters.fingerprint(integration_id);
    let cursor = match params
        .cursor
        .as_deref()
        .map(|c| Cursor::decode(c, &fingerprint))
    {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(InputError(message))) => {
            sim.update_stats(|s| s.invalid_input += 1);
            return input_invalid(message);
        }
    };
    let page_number = cursor.map_or(1, |c| c.page);

    let decision = sim.decide_fault(integration_id, page_number);
    let mut truncate = false;
    if let Some(d) = &decision {
        sim.update_stats(|s| s.faults.count(&d.kind, d.scripted));
        let config = sim.faults();
        match &d.kind {
            FaultKind::RateLimit { .. } => {
                return rate_limited(&config, d.retry_after);
            }
            FaultKind::Unavailable => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))],
                    "<html>Service Unavailable</html>",
                )
                    .into_response();
            }
            FaultKind::Error {
                status,
                code,
                message,
            } => {
                let status =
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return kombo_error(
                    status,
                    code,
                    "Injected error",
                    message
                        .clone()
                        .unwrap_or_else(|| format!("injected {code} by the simulator")),
                );
            }
            FaultKind::Slow => {
                tokio::time::sleep(config.slow_delay).await;
            }
            FaultKind::Truncate => {
                truncate = true;
            }
        }
    }

    let page = match sim.page(integration_id, &params, cursor) {
        Ok(p) => p,
        Err(message) => {
            sim.update_stats(|s| s.invalid_input += 1);
            return input_invalid(message);
        }
    };
    let records = page.results.len() as u64;
    let envelope = PageEnvelope {
        status: Some("success".into()),
        data: PageData {
            next: page.next.map(|c| c.encode(&fingerprint)),
            results: page.results,
        },
    };
    let mut body = match serde_json::to_vec(&envelope) {
        Ok(b) => b,
        Err(err) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot serialize the page: {err}"),
            )
                .into_response();
        }
    };
    if truncate {
        // Cut in the middle: the body is then invalid JSON whose Content-Length matches.
        body.truncate(body.len() / 2);
    } else {
        sim.update_stats(|s| {
            let i = s.integrations.entry(integration_id.to_owned()).or_default();
            i.pages += 1;
            i.records += records;
        });
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from(body),
    )
        .into_response()
}

/// 429 with Kombo's body and rate-limit headers.
fn rate_limited(config: &FaultConfig, retry_after: bool) -> Response {
    let mut response = kombo_error(
        StatusCode::TOO_MANY_REQUESTS,
        "PLATFORM.RATE_LIMIT_EXCEEDED",
        "Rate limit exceeded",
        "You have exceeded the rate limit. Please wait before sending more requests.",
    );
    let h = response.headers_mut();
    let secs = HeaderValue::from(config.retry_after_secs);
    h.insert("ratelimit-limit", HeaderValue::from(config.ratelimit_limit));
    h.insert("ratelimit-remaining", HeaderValue::from_static("0"));
    h.insert("ratelimit-reset", secs.clone());
    if retry_after {
        h.insert(header::RETRY_AFTER, secs);
    }
    response
}

fn query_u64(query: Option<&str>, name: &str, default: u64) -> Result<u64, String> {
    let Some(query) = query else {
        return Ok(default);
    };
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == name {
            return v
                .parse()
                .map_err(|_| format!("{name} must be a non-negative integer, got {v:?}"));
        }
    }
    Ok(default)
}

/// Answer of `GET /_sim/truth`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TruthPage {
    /// The newest sequence number; pass it as `since` next time.
    pub last_seq: u64,
    pub entries: Vec<TruthEntry>,
}

async fn truth(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let since = match query_u64(query.as_deref(), "since", 0) {
        Ok(s) => s,
        Err(message) => return input_invalid(message),
    };
    let entries = sim.truth_since(since);
    let last_seq = entries.last().map_or_else(|| sim.last_seq(), |e| e.seq);
    json_response(StatusCode::OK, &TruthPage { last_seq, entries })
}

/// Answer of `POST /_sim/mutate` and `POST /_sim/apply`'s list form.
#[derive(Debug, Serialize, Deserialize)]
pub struct Entries {
    pub entries: Vec<TruthEntry>,
}

/// Most random changes one control request may ask for.
const MAX_MUTATIONS_PER_REQUEST: u64 = 100_000;

async fn mutate(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let n = match query_u64(query.as_deref(), "n", 1) {
        Ok(n) if n <= MAX_MUTATIONS_PER_REQUEST => n,
        Ok(n) => {
            return input_invalid(format!(
                "n must be at most {MAX_MUTATIONS_PER_REQUEST}, got {n}"
            ));
        }
        Err(message) => return input_invalid(message),
    };
    let entries = sim.mutate(n as usize);
    json_response(StatusCode::OK, &Entries { entries })
}

/// Body of `POST /_sim/apply`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub integration_id: String,
    pub application_id: String,
    pub mutation: Mutation,
}

async fn apply(State(sim): State<Simulator>, body: Bytes) -> Response {
    let request: ApplyRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(err) => return input_invalid(format!("invalid apply request: {err}")),
    };
    match sim.apply(
        &request.integration_id,
        &request.application_id,
        request.mutation,
    ) {
        Ok(entry) => json_response(StatusCode::OK, &entry),
        Err(err) => {
            let (status, code) = match err {
                SimError::UnknownIntegration(_) => {
                    (StatusCode::NOT_FOUND, "PLATFORM.INTEGRATION_NOT_FOUND")
                }
                SimError::UnknownApplication(_) => {
                    (StatusCode::NOT_FOUND, "PLATFORM.INPUT_INVALID")
                }
                SimError::Deleted(_) | SimError::NotApplicable(_) => {
                    (StatusCode::CONFLICT, "PLATFORM.INPUT_INVALID")
                }
            };
            kombo_error(status, code, "Mutation not applied", err.to_string())
        }
    }
}

async fn get_faults(State(sim): State<Simulator>) -> Response {
    json_response(StatusCode::OK, &sim.faults())
}

async fn set_faults(State(sim): State<Simulator>, body: Bytes) -> Response {
    let config: FaultConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(err) => return input_invalid(format!("invalid fault config: {err}")),
    };
    match sim.set_faults(config) {
        Ok(()) => json_response(StatusCode::OK, &sim.faults()),
        Err(err) => input_invalid(err.to_string()),
    }
}

async fn stats(State(sim): State<Simulator>) -> Response {
    json_response(StatusCode::OK, &sim.stats())
}

async fn unknown_route() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        None,
        "Not found",
        "no such route; the API is GET /v1/ats/applications",
    )
}

/// Serving: the simulator's routes, and the server with its mutation ticker.
impl Simulator {
    /// The HTTP routes (`/v1/ats/applications` and the `/_sim/` control API).
    pub fn router(&self) -> axum::Router {
        router(self.clone())
    }

    /// Serves on `listener` until `shutdown` completes, running the mutation ticker too.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = tokio_util::sync::CancellationToken::new();
        let ticker = tokio::spawn(self.clone().tick(stop.clone()));
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        stop.cancel();
        let _ = ticker.await;
        result
    }

    /// Applies `changes_per_second` random mutations per second until `stop`.
    async fn tick(self, stop: tokio_util::sync::CancellationToken) {
        let rate = self.changes_per_second();
        if rate <= 0.0 || !rate.is_finite() {
            return;
        }
        // Tick often enough for the rate, at most 20 times a second; carry fractions over.
        let period = std::time::Duration::from_secs_f64((1.0 / rate).clamp(0.05, 1.0));
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut credit = 0.0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = interval.tick() => {}
            }
            credit += rate * period.as_secs_f64();
            let n = credit.floor();
            credit -= n;
            if n >= 1.0 {
                let applied = self.mutate(n as usize);
                tracing::debug!(changes = applied.len(), "sim ticker applied changes");
            }
        }
    }
}
