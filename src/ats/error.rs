//! What can go wrong talking to Kombo, always with the integration and page it concerns.

use std::time::Duration;

use super::model::ErrorBody;
use super::page::EnvelopeError;

/// Where a request was going: every error carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRef {
    pub integration_id: String,
    /// 1-based page number within one sync.
    pub page: u32,
}

impl std::fmt::Display for PageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "integration {} page {}", self.integration_id, self.page)
    }
}

/// A failed page request, after any retries.
#[derive(Debug, thiserror::Error)]
pub enum KomboError {
    /// 401 or `PLATFORM.AUTHENTICATION_INVALID`.
    #[error("the Kombo API key was rejected ({at}): {message}")]
    Unauthorized { at: PageRef, message: String },

    /// Kombo answered with its error body.
    #[error(
        "Kombo answered HTTP {status} for {at}: {code}: {message}{log}",
        code = .body.code.as_deref().unwrap_or("no error code"),
        message = .body.message,
        log = .body.log_url.as_deref().map(|u| format!(" (log: {u})")).unwrap_or_default()
    )]
    Api {
        at: PageRef,
        status: u16,
        body: ErrorBody,
        attempts: u32,
    },

    /// A non-success status whose body is not Kombo's error shape (a load balancer's page).
    #[error(
        "Kombo answered HTTP {status} for {at} with a body that is not Kombo's error shape: {body_prefix:?}"
    )]
    Http {
        at: PageRef,
        status: u16,
        body_prefix: String,
        attempts: u32,
    },

    /// A 200 whose body could not be read as a page.
    #[error("malformed page from Kombo for {at}{truncated} {source}", truncated = if .source.truncated { " (body truncated)" } else { "" })]
    Malformed {
        at: PageRef,
        #[source]
        source: EnvelopeError,
        attempts: u32,
    },

    /// Connect, timeout, or reading the body failed (or the request could not be built).
    #[error("request to Kombo failed for {at} after {attempts} attempt(s): {source}")]
    Transport {
        at: PageRef,
        /// The error, without the request's URL (it holds the cursor and filters).
        #[source]
        source: reqwest::Error,
        attempts: u32,
    },

    /// The response body was larger than `kombo.max_response_bytes`; reading stopped there.
    #[error(
        "Kombo's response for {at} is larger than kombo.max_response_bytes ({limit} bytes): \
         the page was not read; the next poll tries again"
    )]
    TooLarge { at: PageRef, limit: u64 },

    /// A `next` cursor too long to send back.
    #[error(
        "Kombo's next cursor after {at} is {bytes} bytes long (at most {max} are followed): \
         the next page cannot be requested"
    )]
    BadCursor {
        at: PageRef,
        bytes: usize,
        max: usize,
    },

    /// A `next` cursor already followed in this listing.
    #[error(
        "Kombo's next cursor after {at} repeats a cursor already followed in this sync (a \
         cursor loop): the sync stops here and the watermark stays"
    )]
    CursorLoop { at: PageRef },

    /// More pages than any listing of this integration's size needs.
    #[error(
        "the listing reached {at} of at most {budget} pages for an integration of this size \
         and Kombo still sends a next cursor: the sync stops here and the watermark stays"
    )]
    TooManyPages { at: PageRef, budget: u64 },
}

impl KomboError {
    /// The integration and page the error concerns.
    pub fn at(&self) -> &PageRef {
        match self {
            KomboError::Unauthorized { at, .. }
            | KomboError::Api { at, .. }
            | KomboError::Http { at, .. }
            | KomboError::Malformed { at, .. }
            | KomboError::Transport { at, .. }
            | KomboError::TooLarge { at, .. }
            | KomboError::BadCursor { at, .. }
            | KomboError::CursorLoop { at }
            | KomboError::TooManyPages { at, .. } => at,
        }
    }

    /// What went wrong in words safe for an unauthenticated reader (`/readyz`): the
    /// integration and page, the HTTP status and Kombo's error code, or the kind of failure;
    /// never text taken from Kombo's answer.
    pub fn summary(&self) -> String {
        let at = self.at();
        match self {
            KomboError::Unauthorized { .. } => format!("{at}: the Kombo API key was rejected"),
            KomboError::Api { status, body, .. } => format!(
                "{at}: Kombo answered HTTP {status} ({})",
                body.code.as_deref().unwrap_or("no error code")
            ),
            KomboError::Http { status, .. } => {
                format!("{at}: Kombo answered HTTP {status} (not Kombo's error shape)")
            }
            KomboError::Malformed { source, .. } => format!(
                "{at}: malformed page{}",
                if source.truncated {
                    " (body truncated)"
                } else {
                    ""
                }
            ),
            KomboError::Transport { source, .. } => {
                let kind = if source.is_timeout() {
                    "timed out"
                } else if source.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                format!("{at}: {kind}")
            }
            KomboError::TooLarge { limit, .. } => {
                format!("{at}: response larger than kombo.max_response_bytes ({limit} bytes)")
            }
            KomboError::BadCursor { bytes, .. } => {
                format!("{at}: next cursor of {bytes} bytes, too long to follow")
            }
            KomboError::CursorLoop { .. } => format!("{at}: cursor loop"),
            KomboError::TooManyPages { budget, .. } => {
                format!("{at}: more than {budget} pages")
            }
        }
    }

    /// Kombo's `error.code`, when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            KomboError::Api { body, .. } => body.code.as_deref(),
            KomboError::Unauthorized { .. } => Some("PLATFORM.AUTHENTICATION_INVALID"),
            _ => None,
        }
    }
}

/// A retry the client is about to make: for logs, metrics and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryNotice {
    pub at: PageRef,
    /// The attempt that failed, from 1.
    pub attempt: u32,
    /// How long the client waits before the next attempt.
    pub wait: Duration,
    /// What the server asked for (`Retry-After` or `ratelimit-reset`), if anything.
    pub server_hint: Option<Duration>,
    /// Why: status and code, or the transport error.
    pub reason: String,
}
