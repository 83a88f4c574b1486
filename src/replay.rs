//! Replay: re-send logged or exported events to a URL, signed like deliveries, with their
//! original `webhook-id` (receivers dedupe on it), in log order.
//!
//! Replay is outside delivery: it never reads or changes a subscriber's delivery state,
//! and its requests are not retried (a failure is counted and reported; run the replay
//! again for what failed, receivers dedupe).
//!
//! The pieces, driven by `hirehook replay` (`cli::replay`):
//! - [`FileEvents`]: events of an export file, each line checked with
//!   [`EventHeader::parse`]; a bad line is reported by number and the rest goes on;
//! - [`StorePages`]: the store's log, page by page (memory stays bounded);
//! - [`Replayer`]: signs and sends one event, paced to `--rate`;
//! - [`Summary`]: sent, accepted, failed, by status, what failed.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use url::Url;

use crate::deliver::send::{Pacer, describe_error, webhook_request};
use crate::deliver::sign::SigningKey;
use crate::deliver::ssrf;
use crate::event::{EventHeader, EventType};
use crate::secret::Secret;
use crate::store::{EventFilter, EventRecord, Store, StoreError};

/// Events read from the store per page.
const PAGE: usize = 500;

/// The longest line of an export file that is read as an event (an event body is at most
/// about one Kombo record, itself at most `kombo.max_record_bytes`, 1 MiB by default).
/// A longer line is reported as bad and skipped without being held in memory.
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// Why a replay could not start or read its events.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("--to {url}: {message}")]
    BadUrl { url: String, message: String },
    #[error("--secret number {index}: not a valid whsec_ secret ({reason})")]
    BadSecret { index: usize, reason: String },
    #[error("at least one --secret (or HIREHOOK_REPLAY_SECRET) is required to sign")]
    NoSecret,
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One event to re-send.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayItem {
    /// The original event id: the `webhook-id`.
    pub event_id: String,
    pub event_type: EventType,
    pub integration_id: String,
    pub application_id: String,
    /// The body, byte for byte as logged or exported.
    pub body: Vec<u8>,
}

impl From<EventRecord> for ReplayItem {
    fn from(r: EventRecord) -> Self {
        Self {
            event_id: r.id,
            event_type: r.event_type,
            integration_id: r.integration_id,
            application_id: r.application_id,
            body: r.body,
        }
    }
}

/// A line of an export file that is not an event body.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// 1-based.
    pub line: usize,
    pub error: String,
}

/// The events of an export file (JSON lines, as `hirehook events export` writes them).
/// Blank lines are skipped; every other line must be an event body.
pub struct FileEvents<R> {
    reader: R,
    line: usize,
    filter: EventFilter,
    buf: Vec<u8>,
}

impl<R: BufRead> FileEvents<R> {
    pub fn new(reader: R, filter: EventFilter) -> Self {
        Self {
            reader,
            line: 0,
            filter,
            buf: Vec::new(),
        }
    }
}

impl<R: BufRead> Iterator for FileEvents<R> {
    /// A selected event, a bad line, or a read error (which ends the iteration).
    type Item = Result<Result<ReplayItem, BadLine>, std::io::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            let limit = MAX_LINE_BYTES as u64 + 1;
            match std::io::Read::take(self.reader.by_ref(), limit).read_until(b'\n', &mut self.buf)
            {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            self.line += 1;
            if self.buf.len() > MAX_LINE_BYTES && self.buf.last() != Some(&b'\n') {
                self.buf.clear();
                if let Err(e) = skip_line(&mut self.reader) {
                    return Some(Err(e));
                }
                return Some(Ok(Err(BadLine {
                    line: self.line,
                    error: format!(
                        "longer than {} MiB: not read as an event (skipped)",
                        MAX_LINE_BYTES / (1024 * 1024)
                    ),
                })));
            }
            let mut body: &[u8] = &self.buf;
            while let [rest @ .., b'\n' | b'\r'] = body {
                body = rest;
            }
            if body.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match EventHeader::parse(body) {
                Err(e) => {
                    return Some(Ok(Err(BadLine {
                        line: self.line,
                        error: e.to_string(),
                    })));
                }
                Ok(h) if !self.filter.selects_header(&h) => continue,
                Ok(h) => {
                    return Some(Ok(Ok(ReplayItem {
                        event_id: h.event_id,
                        event_type: h.event_type,
                        integration_id: h.integration_id,
                        application_id: h.application_id,
                        body: body.to_vec(),
                    })));
                }
            }
        }
    }
}

/// Reads and drops the rest of the current line (through its `\n`), holding no more than
/// the reader's buffer.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

/// The store's log, selected, page by page in log order.
pub struct StorePages {
    store: Arc<Store>,
    filter: EventFilter,
    done: bool,
}

impl StorePages {
    pub fn new(store: Arc<Store>, filter: &EventFilter) -> Self {
        Self {
            store,
            filter: EventFilter {
                limit: Some(PAGE),
                after_log_seq: None,
                ..filter.clone()
            },
            done: false,
        }
    }

    /// How many events are selected (a pass over the log that keeps nothing).
    pub async fn count(&self) -> Result<u64, StoreError> {
        let mut filter = self.filter.clone();
        let mut n = 0;
        loop {
            let page = self.store.events(&filter).await?;
            n += page.len() as u64;
            match page.last() {
                Some(last) if page.len() >= PAGE => filter.after_log_seq = Some(last.log_seq),
                _ => return Ok(n),
            }
        }
    }

    /// The next page; `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ReplayItem>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let page = self.store.events(&self.filter).await?;
        match page.last() {
            Some(last) if page.len() >= PAGE => self.filter.after_log_seq = Some(last.log_seq),
            _ => self.done = true,
        }
        if page.is_empty() {
            return Ok(None);
        }
        Ok(Some(page.into_iter().map(ReplayItem::from).collect()))
    }
}

/// What one replayed request got.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The HTTP status, when a response came.
    pub status: Option<u16>,
    /// Timeout, connection error, refused URL.
    pub error: Option<String>,
}

impl Outcome {
    /// 2xx.
    pub fn accepted(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// The status, or `error` when no response came: the key of [`Summary::by_status`].
    pub fn status_key(&self) -> String {
        self.status
            .map_or_else(|| "error".to_owned(), |s| s.to_string())
    }

    fn describe(&self) -> String {
        match (&self.error, self.status) {
            (Some(e), _) => e.clone(),
            (None, Some(s)) => format!("HTTP {s}"),
            (None, None) => "no response".into(),
        }
    }
}

/// Signs and sends events to one URL.
pub struct Replayer {
    client: reqwest::Client,
    url: Url,
    keys: Vec<SigningKey>,
    pacer: Pacer,
}

impl Replayer {
    /// A replayer to `url`, signing with every secret, at most `rate` requests per second.
    ///
    /// The URL is the operator's explicit choice, so private and loopback addresses are
    /// allowed (the SSRF guard protects against subscriber URLs from config); redirects are
    /// still not followed.
    pub fn new(
        url: &str,
        secrets: &[Secret],
        rate: Option<f64>,
        timeout: Duration,
    ) -> Result<Self, ReplayError> {
        let bad_url = |message: String| ReplayError::BadUrl {
            url: crate::redact::url(url),
            message,
        };
        let parsed = Url::parse(url).map_err(|e| bad_url(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad_url("must be an http or https URL".into()));
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                SigningKey::from_secret(s).map_err(|e| ReplayError::BadSecret {
                    index: i + 1,
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(ReplayError::NoSecret);
        }
        let client = ssrf::delivery_client(timeout, true).map_err(ReplayError::Client)?;
        Ok(Self {
            client,
            url: parsed,
            keys,
            pacer: Pacer::new(rate),
        })
    }

    /// Sends one event (after waiting its turn under the rate limit).
    pub async fn send(&mut self, item: &ReplayItem) -> Outcome {
        self.pacer.wait().await;
        let request = webhook_request(
            &self.client,
            &self.url,
            &item.event_id,
            item.body.clone(),
            &self.keys,
            Utc::now().timestamp(),
        );
        match request.send().await {
            Ok(response) => Outcome {
                status: Some(response.status().as_u16()),
                error: None,
            },
            Err(e) => Outcome {
                status: None,
                error: Some(describe_error(&e)),
            },
        }
    }
}

/// The tally of a replay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Requests made.
    pub sent: u64,
    /// 2xx answers.
    pub accepted: u64,
    /// Everything else: other statuses, timeouts, connection errors.
    pub failed: u64,
    /// Requests by status (`"200"`, `"500"`, `"error"`).
    pub by_status: BTreeMap<String, u64>,
    /// Event id, type and what went wrong, for each failure.
    pub failures: Vec<(String, EventType, String)>,
    /// Lines of the file that were not events.
    pub bad_lines: Vec<BadLine>,
}

impl Summary {
    /// Counts one request.
    pub fn record(&mut self, item: &ReplayItem, outcome: &Outcome) {
        self.sent += 1;
        *self.by_status.entry(outcome.status_key()).or_default() += 1;
        if outcome.accepted() {
            self.accepted += 1;
        } else {
            self.failed += 1;
            self.failures
                .push((item.event_id.clone(), item.event_type, outcome.describe()));
        }
    }

    /// Whether anything failed or could not be read.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.bad_lines.is_empty()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {}, accepted {}, failed {}",
            self.sent, self.accepted, self.failed
        )?;
        if !self.by_status.is_empty() {
            let statuses: Vec<String> = self
                .by_status
                .iter()
                .map(|(s, n)| format!("{s} ×{n}"))
                .collect();
            write!(f, "\nby status: {}", statuses.join(", "))?;
        }
        if !self.failures.is_empty() {
            write!(f, "\nfailed:")?;
            for (id, t, why) in &self.failures {
                write!(f, "\n  {id} ({t}): {why}")?;
            }
        }
        if !self.bad_lines.is_empty() {
            write!(f, "\nbad lines (not replayed):")?;
            for b in &self.bad_lines {
                write!(f, "\n  line {}: {}", b.line, b.error)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(id_digit: char, event_type: &str, app: &str) -> String {
        let id = format!("evt_{}", id_digit.to_string().repeat(32));
        format!(
            r#"{{"type":"{event_type}","timestamp":"2026-11-29T10:00:00.000Z","data":{{"event_id":"{id}","integration_id":"gh:1","sequence":1,"detected_at":"2026-11-29T10:00:00.000Z","remote_updated_at":null,"application":{{"id":"{app}"}}}}}}"#
        )
    }

    #[test]
    fn file_lines_are_checked_numbered_and_filtered() {
        let text = format!(
            "{}\n\n{{\"not\": \"an event\"}}\r\n{}\r\nnot json\n{}",
            body('1', "stage_changed", "a1"),
            body('2', "rejected", "a2"),
            body('3', "stage_changed", "a3"),
        );
        let selection = EventFilter {
            types: vec![EventType::StageChanged],
            ..Default::default()
        };
        let read: Vec<Result<ReplayItem, BadLine>> =
            FileEvents::new(std::io::Cursor::new(text), selection)
                .collect::<Result<_, _>>()
                .expect("reads");
        let ok: Vec<&str> = read
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|i| i.application_id.as_str())
            .collect();
        assert_eq!(ok, ["a1", "a3"], "the rejected event is filtered out");
        let bad: Vec<usize> = read
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|b| b.line)
            .collect();
        assert_eq!(bad, [3, 5], "line numbers count blank lines");
        let first = read[0].as_ref().expect("first is good");
        assert_eq!(first.body, body('1', "stage_changed", "a1").into_bytes());
    }

    #[test]
    fn summary_counts_and_lists_failures() {
        let item = ReplayItem {
            event_id: "evt_1".into(),
            event_type: EventType::Rejected,
            integration_id: "gh:1".into(),
            application_id: "a".into(),
            body: Vec::new(),
        };
        let mut s = Summary::default();
        s.record(
            &item,
            &Outcome {
                status: Some(200),
                error: None,
            },
        );
        s.record(
            &item,
            &Outcome {
                status: Some(500),
                error: None,
            },
        );
        s.record(
            &item,
            &Outcome {
                status: None,
                error: Some("timed out".into()),
            },
        );
        assert_eq!((s.sent, s.accepted, s.failed), (3, 1, 2));
        assert!(!s.ok());
        let text = s.to_string();
        assert!(
            text.contains("by status: 200 ×1, 500 ×1, error ×1"),
            "{text}"
        );
        assert!(text.contains("evt_1 (rejected): HTTP 500"), "{text}");
        assert!(text.contains("evt_1 (rejected): timed out"), "{text}");
    }

    #[test]
    fn bad_urls_and_secrets_are_refused() {
        let secret = Secret::new("whsec_aGlyZWhvb2sgdGVzdCBzaWduaW5nIGtleQ==");
        let t = Duration::from_secs(1);
        assert!(Replayer::new("ftp://x", std::slice::from_ref(&secret), None, t).is_err());
        assert!(Replayer::new("not a url", std::slice::from_ref(&secret), None, t).is_err());
        assert!(matches!(
            Replayer::new("http://127.0.0.1:1/", &[], None, t),
            Err(ReplayError::NoSecret)
        ));
        let bad = Replayer::new("http://127.0.0.1:1/", &[Secret::new("nope")], None, t);
        assert!(matches!(bad, Err(ReplayError::BadSecret { index: 1, .. })));
        assert!(Replayer::new("http://127.0.0.1:1/", &[secret], Some(5.0), t).is_ok());
    }
}
