//! Parsing one page of `GET /ats/applications`, record by record.
//!
//! The envelope is parsed first with the records left as raw JSON; each record is then
//! parsed on its own, so one malformed record is reported (with its id and the path of the
//! bad field) while the rest of the page is still processed.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::model::{Application, PageEnvelope};

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
            self.id.as_deref().unwrap_or("unknown"),
            self.path,
            self.message
        )
    }
}

/// A page whose envelope is readable.
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

/// Parses a success body. Fails only when the envelope itself is unreadable.
pub fn parse_page(body: &[u8]) -> Result<ParsedPage, EnvelopeError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let envelope: PageEnvelope<&RawValue> =
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            EnvelopeError {
                path,
                truncated: inner.is_eof(),
                message: inner.to_string(),
            }
        })?;
    de.end().map_err(|e| EnvelopeError {
        path: ".".into(),
        message: e.to_string(),
        truncated: false,
    })?;

    let mut records = Vec::with_capacity(envelope.data.results.len());
    let mut rejected = Vec::new();
    for (index, raw) in envelope.data.results.into_iter().enumerate() {
        match parse_record(raw.get()) {
            Ok(app) => records.push(app),
            Err((path, message)) => rejected.push(RejectedRecord {
                index,
                id: record_id(raw.get()),
                path,
                message,
            }),
        }
    }
    Ok(ParsedPage {
        next: envelope.data.next,
        records,
        rejected,
    })
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
            let path = e.path().to_string();
            Err((path, redact_values(&e.into_inner().to_string())))
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
    fn trailing_garbage_is_an_error() {
        let err = parse_page(br#"{"data":{"next":null,"results":[]}} x"#).unwrap_err();
        assert!(err.message.contains("trailing"), "{err}");
    }
}
