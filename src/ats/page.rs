//! Parsing one page of `GET /ats/applications`, record by record.
//!
//! The envelope is parsed first with the records left as raw JSON ([`scan_page_with`]):
//! each record keeps its bytes, its id (read cheaply) and the [`RecordDigest`] of its
//! bytes. Each record is then parsed on its own ([`ScannedPage::parse`]), so one malformed
//! record is reported (with its id and the path of the bad field) while the rest of the
//! page is still processed, and a record the sync already knows byte for byte is never
//! parsed at all.

use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::model::{Application, PageEnvelope};
use crate::domain::RecordDigest;

/// A record that could not be read; the rest of its page was.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRecord {
    /// Position in the page's `results`, from 0.
    pub index: usize,
    /// The record's Kombo `id`, when at least that could be read.
    pub id: Option<String>,
    /// Path of the offending field inside the record, e.g. `offers[0].status`.
    pub path: String,
    /// What was wrong with it.
    pub message: String,
}

impl std::fmt::Display for RejectedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {} (id {}) at `{}`: {}",
            self.index,
            crate::redact::bounded(self.id.as_deref().unwrap_or("unknown"), MAX_PATH),
            self.path,
            self.message
        )
    }
}

/// One record of a page as Kombo sent it, not parsed yet.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    /// Position in the page's `results`, from 0.
    pub index: usize,
    /// Its `id`, read without parsing the rest; `None` when it cannot be read that way (the
    /// record's parse then says what is wrong with it).
    pub id: Option<String>,
    /// The digest of its bytes.
    pub digest: RecordDigest,
    /// Where its JSON lies in the page's text.
    span: Range<usize>,
}

/// A page whose envelope is readable, its records not parsed yet.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedPage {
    /// Cursor of the next page; `None` on the last page.
    pub next: Option<String>,
    /// The records to parse, in Kombo's order.
    pub records: Vec<RawRecord>,
    /// The records refused whole, unparsed: larger than the limit, or not UTF-8.
    pub refused: Vec<RejectedRecord>,
    /// The body as text (each byte that was not UTF-8 replaced by `?`).
    text: String,
}

impl ScannedPage {
    /// A record's JSON.
    pub fn json(&self, record: &RawRecord) -> &str {
        self.text.get(record.span.clone()).unwrap_or_default()
    }

    /// Parses one record.
    pub fn parse(&self, record: &RawRecord) -> Result<Application, RejectedRecord> {
        let json = self.json(record);
        parse_record(json).map_err(|(path, message)| RejectedRecord {
            index: record.index,
            id: record_id(json),
            path,
            message,
        })
    }

    /// Parses every record: those that parse, and every rejection (the refused ones
    /// included) in page order.
    pub fn parse_all(mut self) -> ParsedPage {
        let mut records = Vec::with_capacity(self.records.len());
        let mut rejected = std::mem::take(&mut self.refused);
        for record in &self.records {
            match self.parse(record) {
                Ok(app) => records.push(app),
                Err(r) => rejected.push(r),
            }
        }
        rejected.sort_by_key(|r| r.index);
        ParsedPage {
            next: self.next,
            records,
            rejected,
        }
    }

    /// How many records the page listed (parsed or not, refused included).
    pub fn len(&self) -> usize {
        self.records.len() + self.refused.len()
    }

    /// Whether the page listed no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A page whose envelope is readable, every record parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPage {
    /// Cursor of the next page; `None` on the last page.
    pub next: Option<String>,
    /// The records that parsed.
    pub records: Vec<Application>,
    /// The records that did not.
    pub rejected: Vec<RejectedRecord>,
}

/// Why a page body could not be read at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("at `{path}`: {message}")]
pub struct EnvelopeError {
    /// Serde path of the failure (`.` for the document itself).
    pub path: String,
    pub message: String,
    /// The body ended early: most likely a cut connection, worth a retry.
    pub truncated: bool,
}

/// What one page may hold, beyond which it (or a record of it) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    /// Records in `data.results`: more than the `page_size` asked for is a broken upstream.
    pub max_records: usize,
    /// Bytes of one record's JSON: a larger record is rejected (the rest of the page goes on).
    pub max_record_bytes: usize,
}

impl Default for PageLimits {
    fn default() -> Self {
        Self {
            max_records: usize::MAX,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// The default of `[kombo] max_record_bytes`.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Parses a success body with the default limits (no bound on the number of records).
pub fn parse_page(body: &[u8]) -> Result<ParsedPage, EnvelopeError> {
    parse_page_with(body, &PageLimits::default())
}

/// Parses a success body. Fails only when the envelope itself is unreadable or breaks
/// `limits.max_records`; a record that does not parse, is larger than
/// `limits.max_record_bytes` or holds bytes that are not UTF-8 is rejected on its own.
pub fn parse_page_with(body: &[u8], limits: &PageLimits) -> Result<ParsedPage, EnvelopeError> {
    scan_page_with(body, limits).map(ScannedPage::parse_all)
}

/// Reads a success body's envelope and finds its records, without parsing them. Fails as
/// [`parse_page_with`] does; a record larger than `limits.max_record_bytes` or holding
/// bytes that are not UTF-8 is refused on its own.
pub fn scan_page_with(body: &[u8], limits: &PageLimits) -> Result<ScannedPage, EnvelopeError> {
    // JSON is UTF-8. A body that is not is read with each invalid byte replaced by `?`
    // (offsets stay those of the body), and the records that held one are rejected: one
    // bad byte costs one record, not the page.
    let (text, valid_utf8) = match std::str::from_utf8(body) {
        Ok(text) => (std::borrow::Cow::Borrowed(text), true),
        Err(_) => (std::borrow::Cow::Owned(replace_invalid_utf8(body)), false),
    };
    let text: &str = &text;
    let mut de = serde_json::Deserializer::from_str(text);
    let envelope: PageEnvelope<&RawValue> =
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            EnvelopeError {
                path: crate::redact::bounded(&path, MAX_PATH).into_owned(),
                truncated: inner.is_eof(),
                message: inner.to_string(),
            }
        })?;
    de.end().map_err(|e| EnvelopeError {
        path: ".".into(),
        message: e.to_string(),
        truncated: false,
    })?;
    let results = envelope.data.results;
    if results.len() > limits.max_records {
        return Err(EnvelopeError {
            path: "data.results".into(),
            message: format!(
                "{} records, more than the page_size of {} asked for",
                results.len(),
                limits.max_records
            ),
            truncated: false,
        });
    }
    // Where each record lies in `text`, to find the records that held a bad byte.
    let span = |raw: &RawValue| {
        let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
        start..start + raw.get().len()
    };
    if !valid_utf8 {
        let spans: Vec<_> = results.iter().map(|raw| span(raw)).collect();
        let mut at = 0;
        for chunk in body.utf8_chunks() {
            at += chunk.valid().len();
            if !chunk.invalid().is_empty() {
                // Spans are in body order: the last one starting at or before `at`.
                let i = spans.partition_point(|s| s.start <= at);
                if i == 0 || !spans[i - 1].contains(&at) {
                    return Err(EnvelopeError {
                        path: ".".into(),
                        message: format!(
                            "bytes that are not UTF-8 at byte {at} of the body, outside any record"
                        ),
                        truncated: false,
                    });
                }
            }
            at += chunk.invalid().len();
        }
    }

    let mut records = Vec::with_capacity(results.len());
    let mut refused = Vec::new();
    for (index, raw) in results.into_iter().enumerate() {
        let json = raw.get();
        let why = if json.len() > limits.max_record_bytes {
            Some(format!(
                "the record is {} bytes, more than kombo.max_record_bytes ({})",
                json.len(),
                limits.max_record_bytes
            ))
        } else if let Some(Err(e)) = (!valid_utf8).then(|| std::str::from_utf8(&body[span(raw)])) {
            Some(format!(
                "the record holds bytes that are not UTF-8 (at byte {} of the record)",
                e.valid_up_to()
            ))
        } else {
            None
        };
        match why {
            // The record as a whole is refused: its path is the record itself.
            Some(message) => refused.push(RejectedRecord {
                index,
                id: record_id(json),
                path: ".".to_owned(),
                message,
            }),
            None => records.push(RawRecord {
                index,
                id: quick_id(json),
                digest: RecordDigest::of(json.as_bytes()),
                span: span(raw),
            }),
        }
    }
    Ok(ScannedPage {
        next: envelope.data.next,
        records,
        refused,
        text: text.to_owned(),
    })
}

/// The longest field path a rejection names (a path can hold an upstream map key).
const MAX_PATH: usize = 256;

/// `body` with every byte of an invalid UTF-8 sequence replaced by `?`: the same length,
/// so offsets in the result are offsets in `body`.
fn replace_invalid_utf8(body: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(body.len());
    for chunk in body.utf8_chunks() {
        bytes.extend_from_slice(chunk.valid().as_bytes());
        bytes.extend(std::iter::repeat_n(b'?', chunk.invalid().len()));
    }
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Parses one record, reporting the path of the first bad field.
///
/// The happy path parses directly; only a record that fails is parsed again with path
/// tracking (which costs about 70 % more) to say where it failed.
pub fn parse_record(json: &str) -> Result<Application, (String, String)> {
    if let Ok(app) = serde_json::from_str(json) {
        return Ok(app);
    }
    let mut de = serde_json::Deserializer::from_str(json);
    match serde_path_to_error::deserialize::<_, Application>(&mut de) {
        Ok(app) => Ok(app),
        Err(e) => {
            let path = crate::redact::bounded(&e.path().to_string(), MAX_PATH).into_owned();
            let message = redact_values(&e.into_inner().to_string());
            Err((
                path,
                crate::redact::bounded(&message, MAX_PATH * 2).into_owned(),
            ))
        }
    }
}

/// serde_json quotes the offending value in its messages (`invalid type: string "Jane"`);
/// a record's values may be candidate data, which must not reach logs or the status API.
/// Field names (in backticks) and types stay.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_quotes = false;
    for c in message.chars() {
        match (c, in_quotes) {
            ('"', false) => {
                in_quotes = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                in_quotes = false;
                out.push('"');
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// A record's `id`, read cheaply: Kombo writes it first, so a record that starts
/// `{"id":"` is read up to the closing quote (when no escape comes before it); any other
/// record is read as [`record_id`] does. It only chooses which snapshot a record is
/// compared with: a record is skipped only when its bytes are the very bytes that
/// snapshot came from.
fn quick_id(json: &str) -> Option<String> {
    const START: &str = "{\"id\":\"";
    if let Some(rest) = json.strip_prefix(START)
        && let Some(end) = rest.find(['"', '\\'])
        && rest.as_bytes()[end] == b'"'
    {
        return Some(rest[..end].to_owned());
    }
    record_id(json)
}

/// The `id` of a record that failed to parse, if it has a readable one.
fn record_id(json: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<String>,
    }
    serde_json::from_str::<IdOnly>(json).ok().and_then(|r| r.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        r#"{"id":"a1","changed_at":"2024-01-02T03:04:05.678Z","interviews":[],"offers":[]}"#;

    #[test]
    fn the_scan_reads_ids_cheaply_and_keeps_each_records_bytes() {
        let cases: [(&str, Option<&str>); 6] = [
            (r#"{"id":"a1","offers":[]}"#, Some("a1")),
            // Not in Kombo's layout: read by the slower path, same answer.
            (r#"{ "id" : "a2" }"#, Some("a2")),
            (r#"{"offers":[],"id":"a3"}"#, Some("a3")),
            (r#"{"id":"a\"4"}"#, Some("a\"4")),
            (r#"{"id":null}"#, None),
            (r#"{"id":7}"#, None),
        ];
        for (json, want) in cases {
            assert_eq!(quick_id(json).as_deref(), want, "{json}");
        }
        let body = format!(
            r#"{{"status":"success","data":{{"next":"c2","results":[{GOOD}, {}]}}}}"#,
            GOOD.replace("a1", "b2")
        );
        let page = scan_page_with(body.as_bytes(), &PageLimits::default()).expect("scans");
        assert_eq!(page.next.as_deref(), Some("c2"));
        assert_eq!(page.len(), 2);
        let [first, second] = &page.records[..] else {
            panic!("two records: {:?}", page.records)
        };
        assert_eq!(page.json(first), GOOD);
        assert_eq!(first.id.as_deref(), Some("a1"));
        assert_eq!(first.digest, RecordDigest::of(GOOD.as_bytes()));
        assert_ne!(first.digest, second.digest);
        assert_eq!(second.index, 1);
        assert_eq!(page.parse(second).map(|a| a.id), Ok("b2".to_owned()));
    }

    #[test]
    fn one_bad_record_does_not_fail_the_page() {
        let body = format!(
            r#"{{"status":"success","data":{{"next":"c2","results":[{GOOD},{{"id":"bad","changed_at":"yesterday"}},{{"nope":1}}]}}}}"#
        );
        let page = parse_page(body.as_bytes()).expect("envelope parses");
        assert_eq!(page.next.as_deref(), Some("c2"));
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].id, "a1");
        assert_eq!(page.rejected.len(), 2);
        assert_eq!(page.rejected[0].index, 1);
        assert_eq!(page.rejected[0].id.as_deref(), Some("bad"));
        assert_eq!(page.rejected[0].path, "changed_at");
        assert_eq!(page.rejected[1].id, None);
    }

    #[test]
    fn rejected_values_are_not_repeated_in_messages() {
        let (path, message) =
            parse_record(r#"{"id":"a","changed_at":"2024-01-02T03:04:05Z","candidate":{"id":"c","first_name":7,"last_name":"Roe","tags":"Jane Roe"}}"#)
                .unwrap_err();
        assert_eq!(path, "candidate.first_name");
        assert!(message.contains("integer"), "{message}");
        let (path, message) = parse_record(
            r#"{"id":"a","changed_at":"2024-01-02T03:04:05Z","remote_url":{"secret":"jane@example.com"}}"#,
        )
        .unwrap_err();
        assert_eq!(path, "remote_url");
        assert!(!message.contains("jane@example.com"), "{message}");
        let (_, message) =
            parse_record(r#"{"id":"a","changed_at":"Jane Roe's birthday"}"#).unwrap_err();
        assert!(!message.contains("Jane"), "{message}");
    }

    #[test]
    fn truncated_body_is_flagged() {
        let body =
            format!(r#"{{"status":"success","data":{{"next":null,"results":[{GOOD},{{"id":"x"#);
        let err = parse_page(body.as_bytes()).unwrap_err();
        assert!(err.truncated, "{err}");
    }

    #[test]
    fn wrong_envelope_names_the_path() {
        let err =
            parse_page(br#"{"status":"success","data":{"next":5,"results":[]}}"#).unwrap_err();
        assert_eq!(err.path, "data.next");
        assert!(!err.truncated);
    }

    #[test]
    fn a_record_with_bytes_that_are_not_utf8_is_rejected_alone() {
        let bad = br#"{"id":"b2","changed_at":"2024-01-02T03:04:05.678Z","interviews":[],"offers":[],"candidate":{"id":"c","first_name":"J"#;
        let mut body =
            format!(r#"{{"status":"success","data":{{"next":"c2","results":[{GOOD},"#).into_bytes();
        body.extend_from_slice(bad);
        body.extend_from_slice(b"\xff\xfe\"}}, ");
        body.extend_from_slice(GOOD.replace("a1", "a3").as_bytes());
        body.extend_from_slice(b"]}}");
        let page = parse_page(&body).expect("the envelope is readable");
        let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a1", "a3"]);
        assert_eq!(page.rejected.len(), 1);
        assert_eq!(page.rejected[0].index, 1);
        assert_eq!(page.rejected[0].id.as_deref(), Some("b2"));
        assert!(
            page.rejected[0].message.contains("not UTF-8"),
            "{:?}",
            page.rejected[0]
        );
        assert_eq!(page.next.as_deref(), Some("c2"));
    }

    #[test]
    fn bytes_that_are_not_utf8_outside_records_fail_the_page() {
        let body = b"{\"status\":\"success\",\"data\":{\"next\":\"c\xff\",\"results\":[]}}";
        let err = parse_page(body).unwrap_err();
        assert!(err.message.contains("outside any record"), "{err}");
        assert!(!err.truncated);
    }

    #[test]
    fn limits_reject_large_records_and_refuse_long_pages() {
        let big = format!(
            r#"{{"id":"big","changed_at":"2024-01-02T03:04:05.678Z","interviews":[],"offers":[],"custom_fields":{{"x":"{}"}}}}"#,
            "y".repeat(2000)
        );
        let body = format!(r#"{{"data":{{"next":null,"results":[{GOOD},{big}]}}}}"#);
        let limits = PageLimits {
            max_records: 2,
            max_record_bytes: 1000,
        };
        let page = parse_page_with(body.as_bytes(), &limits).expect("parses");
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.rejected.len(), 1);
        assert_eq!(page.rejected[0].id.as_deref(), Some("big"));
        assert!(page.rejected[0].message.contains("max_record_bytes"));

        let limits = PageLimits {
            max_records: 1,
            ..limits
        };
        let err = parse_page_with(body.as_bytes(), &limits).unwrap_err();
        assert_eq!(err.path, "data.results");
        assert!(
            err.message
                .contains("2 records, more than the page_size of 1"),
            "{err}"
        );
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        let err = parse_page(br#"{"data":{"next":null,"results":[]}} x"#).unwrap_err();
        assert!(err.message.contains("trailing"), "{err}");
    }
}
