//! What every outgoing webhook request shares, whoever sends it (the deliverer, replay):
//! the signed request itself, how a failed request is described, and rate pacing.

use std::time::Duration;

use url::Url;

use super::sign::{SigningKey, signed_headers};

/// A `POST` of `body` to `url` with the Standard Webhooks headers for `event_id`, signed
/// at `now` (unix seconds) with every key.
pub fn webhook_request(
    client: &reqwest::Client,
    url: &Url,
    event_id: &str,
    body: Vec<u8>,
    keys: &[SigningKey],
    now: i64,
) -> reqwest::RequestBuilder {
    let headers = signed_headers(event_id, now, &body, keys);
    client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", headers.id)
        .header("webhook-timestamp", headers.timestamp.to_string())
        .header("webhook-signature", headers.signature)
        .body(body)
}

/// A failed request in one line, with its cause chain (timeouts and refused connections
/// say so).
pub fn describe_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Spaces request starts to honour a rate limit (requests per second).
#[derive(Debug)]
pub struct Pacer {
    /// `None`: no limit.
    interval: Option<Duration>,
    /// When the next request may start.
    next: tokio::time::Instant,
}

impl Pacer {
    /// A pacer for `rate` requests per second; `None`, zero or a non-finite rate: no limit.
    pub fn new(rate: Option<f64>) -> Self {
        Self {
            interval: rate
                .filter(|r| r.is_finite() && *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next: tokio::time::Instant::now(),
        }
    }

    /// Whether requests are paced at all.
    pub fn is_limited(&self) -> bool {
        self.interval.is_some()
    }

    /// Waits until the next request may start, without taking the turn.
    pub async fn ready(&self) {
        if self.interval.is_some() && self.next > tokio::time::Instant::now() {
            tokio::time::sleep_until(self.next).await;
        }
    }

    /// Takes the current turn: the next request may start one interval later.
    pub fn take(&mut self) {
        if let Some(interval) = self.interval {
            self.next = self.next.max(tokio::time::Instant::now()) + interval;
        }
    }

    /// Waits for the next request's turn and takes it.
    pub async fn wait(&mut self) {
        self.ready().await;
        self.take();
    }
}
