//! The admin HTTP server on `[admin] listen`: health for orchestrators, metrics for
//! Prometheus, the `/v1` JSON API for operators, and Kombo's push trigger.
//!
//! - [`health`]: `/healthz`, `/readyz`.
//! - [`api`]: `/v1/...`, bearer-token auth, the route table the OpenAPI document is
//!   tested against (`openapi.json`, served at `/v1/openapi.json`).
//! - [`kombo`]: `POST /kombo/webhook`, authenticated by Kombo's signature.
//! - [`error`]: every error answer is JSON.
//! - [`server`]: the accept loop and its limits (timeouts, connection cap, accept
//!   backoff) that keep the port answering under hostile clients.
//!
//! Unauthenticated: `/healthz`, `/readyz`, `/metrics` (what orchestrators and scrapers
//! call) and `/kombo/webhook` (signed). Everything under `/v1` requires
//! `Authorization: Bearer <admin.token>` when a token is configured; without a token the
//! server only starts on a loopback address.

pub mod api;
pub mod error;
pub mod health;
pub mod kombo;
pub mod server;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::deliver::worker::Waker;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::Store;
use crate::store_health::StoreHealth;
use crate::triggers::PollTriggers;
use error::ApiError;
pub use server::ServeLimits;

/// Largest request body accepted (the Kombo webhook and `/v1` JSON bodies are small).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Longest query string accepted.
pub const QUERY_LIMIT: usize = 4096;

/// Why the admin server cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "admin.listen {listen} is not a loopback address and admin.token is not set: refusing to \
         serve the admin API without authentication; set [admin] token (e.g. \
         token = \"${{HIREHOOK_ADMIN_TOKEN}}\") or listen on 127.0.0.1"
    )]
    Unprotected { listen: SocketAddr },
    #[error("cannot listen on {listen} (admin.listen): {source}")]
    Bind {
        listen: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    store: Arc<Store>,
    metrics: Metrics,
    /// "Poll now" per integration (the `/sync` route and the Kombo push trigger).
    triggers: PollTriggers,
    /// Wakes the delivery workers after an enable, a dead-letter retry or a release of
    /// held events.
    waker: Waker,
    /// Ids of the Kombo webhooks handled lately: a replay is not acted on again.
    kombo_ids: Mutex<kombo::RecentIds>,
    /// The store failures the daemon ran into (readiness reports them).
    store_health: StoreHealth,
    /// The last readiness probe of the store and when it ran (see [`health::PROBE_EVERY`]);
    /// the lock is held while a probe runs, so concurrent `/readyz` calls share one.
    readiness: tokio::sync::Mutex<Option<health::Probe>>,
}

impl AdminState {
    /// The state of one daemon's admin server.
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        metrics: Metrics,
        triggers: PollTriggers,
        waker: Waker,
        store_health: StoreHealth,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                store,
                metrics,
                triggers,
                waker,
                kombo_ids: Mutex::default(),
                store_health,
                readiness: tokio::sync::Mutex::new(None),
            }),
        }
    }

    fn config(&self) -> &Config {
        &self.inner.config
    }

    fn kombo_ids(&self) -> MutexGuard<'_, kombo::RecentIds> {
        // Poisoned: a panic mid-insert; at worst one id is half remembered.
        self.inner
            .kombo_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// `with_store!(state, |store, config| body)`: a future that runs `body` (which may
/// `.await` and `?` into an [`ApiError`]) with the store and config of `state`.
macro_rules! with_store {
    ($state:expr, |$store:ident, $config:pat_param| $body:expr) => {{
        let inner = $state.inner.clone();
        async move {
            let $store: &$crate::store::Store = &inner.store;
            let $config: &$crate::config::Config = &inner.config;
            let result: Result<_, $crate::admin::error::ApiError> = async { $body }.await;
            result
        }
    }};
}
pub(crate) use with_store;

/// Refuses a non-loopback address without a token.
pub fn check_exposure(listen: SocketAddr, token: Option<&Secret>) -> Result<(), AdminError> {
    if listen.ip().is_loopback() || token.is_some_and(|t| !t.expose().is_empty()) {
        Ok(())
    } else {
        Err(AdminError::Unprotected { listen })
    }
}

/// Binds `[admin] listen` after checking it is not exposed without a token.
pub async fn bind(config: &Config) -> Result<TcpListener, AdminError> {
    let listen = config.admin.listen;
    check_exposure(listen, config.admin.token.as_ref())?;
    TcpListener::bind(listen)
        .await
        .map_err(|source| AdminError::Bind { listen, source })
}

/// The whole admin router.
pub fn router(state: AdminState) -> Router {
    let (v1, _) = api::routes();
    let v1 = v1
        .method_not_allowed_fallback(error::method_not_allowed)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics))
        .route("/kombo/webhook", post(kombo::webhook))
        .method_not_allowed_fallback(error::method_not_allowed)
        .nest("/v1", v1)
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(limit_query))
        .with_state(state)
}

/// Serves the admin router on `listener` until `shutdown`, within the default
/// [`ServeLimits`]; then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> Result<(), AdminError> {
    serve_with_limits(listener, state, ServeLimits::default(), shutdown).await
}

/// [`serve`] within other limits (tests use short timeouts and a small cap).
pub async fn serve_with_limits(
    listener: TcpListener,
    state: AdminState,
    limits: ServeLimits,
    shutdown: CancellationToken,
) -> Result<(), AdminError> {
    server::run(listener, router(state), limits, shutdown).await;
    Ok(())
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let metrics = state.inner.metrics.clone();
    let text = with_store!(state, |store, config| {
        metrics
            .render(store, config)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await;
    match text {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Bearer auth for `/v1` when a token is configured.
async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.config().admin.token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match given {
        Some(given) if tokens_equal(given, token.expose()) => next.run(request).await,
        Some(_) => ApiError::unauthorized("wrong bearer token").into_response(),
        None => {
            ApiError::unauthorized("missing `Authorization: Bearer <admin.token>`").into_response()
        }
    }
}

/// The credentials of a `Bearer` authorization header (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// Compares in constant time; hashing first hides the lengths too.
fn tokens_equal(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// Bounds query strings.
async fn limit_query(request: Request, next: Next) -> Response {
    let len = request.uri().query().map_or(0, str::len);
    if len > QUERY_LIMIT {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "query_too_long",
            format!("the query string has {len} bytes; at most {QUERY_LIMIT} are accepted"),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing_and_comparison() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
        assert!(tokens_equal("s3cret", "s3cret"));
        assert!(!tokens_equal("s3cret", "s3cre"));
        assert!(!tokens_equal("", "s3cret"));
    }

    #[test]
    fn exposure_needs_a_token_off_loopback() {
        let token = Secret::new("t");
        let lo: SocketAddr = "127.0.0.1:9400".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:9400".parse().expect("addr");
        let v6: SocketAddr = "[::1]:9400".parse().expect("addr");
        assert!(check_exposure(lo, None).is_ok());
        assert!(check_exposure(v6, None).is_ok());
        assert!(check_exposure(any, Some(&token)).is_ok());
        let err = check_exposure(any, None).expect_err("refused");
        assert!(err.to_string().contains("0.0.0.0:9400"), "{err}");
        assert!(check_exposure(any, Some(&Secret::new(""))).is_err());
    }
}
