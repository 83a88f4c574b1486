//! The bodies of the fuzz targets, shared by `fuzz/fuzz_targets/*.rs` (cargo fuzz) and
//! `tests/fuzz_corpus.rs` (the committed corpus, run by `cargo test`). Each takes any
//! bytes and panics only when an invariant breaks.
#![allow(dead_code)]

use std::collections::HashSet;

use hirehook::ats::Application;
use hirehook::ats::page::{parse_page, parse_record};
use hirehook::diff::{DiffContext, FirstSight, Snapshot, diff};
use hirehook::event::EventFilter;
use hirehook::event::{EventHeader, is_event_id};
use hirehook::replay::FileEvents;

/// `parse_page`: an error, or every result accounted for (parsed or rejected, each index
/// once), and every parsed record reads back to itself; a body that is not UTF-8 parses
/// only with its bad bytes inside records, which are rejected.
pub fn page_parser(data: &[u8]) {
    let Ok(page) = parse_page(data) else {
        return;
    };
    // Bytes that are not UTF-8 cost only the records holding them: read as replaced, the
    // body must be JSON with the same results.
    let text = String::from_utf8_lossy(data);
    let results = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["data"]["results"].as_array().map(Vec::len))
        .expect("a page that parses is JSON with data.results");
    assert_eq!(page.records.len() + page.rejected.len(), results);
    let mut indices = HashSet::new();
    for r in &page.rejected {
        assert!(r.index < results, "{r}");
        assert!(indices.insert(r.index), "{r}");
    }
    if std::str::from_utf8(data).is_err() {
        assert!(
            !page.rejected.is_empty(),
            "a bad byte inside a record rejects it"
        );
    }
    for app in &page.records {
        let json = serde_json::to_string(app).expect("a record serializes");
        assert_eq!(parse_record(&json).as_ref(), Ok(app), "{json}");
    }
}

/// The diff over a history of versions of one application (a JSON array of records):
/// consecutive sequences, unique well-formed ids, readable bodies, an identical record
/// yields nothing, ids do not depend on the detection time, snapshots are lossless.
pub fn diff_history(data: &[u8]) {
    let Ok(history) = serde_json::from_slice::<Vec<Application>>(data) else {
        return;
    };
    let history: Vec<hirehook::domain::Application> = history.into_iter().map(Into::into).collect();
    let t0 = chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("time");
    let mut prev: Option<Snapshot> = None;
    let mut last_sequence = 0;
    let mut ids = HashSet::new();
    for (i, app) in history.iter().enumerate() {
        let ctx = DiffContext {
            integration_id: "fuzz:1",
            detected_at: t0 + chrono::Duration::seconds(i as i64),
            first_sight: FirstSight::Emit,
        };
        let out = diff(prev.as_ref(), app, &ctx);
        let later = DiffContext {
            detected_at: ctx.detected_at + chrono::Duration::hours(5),
            ..ctx
        };
        let rederived = diff(prev.as_ref(), app, &later);
        let a: Vec<&str> = out.events.iter().map(|e| e.id.as_str()).collect();
        let b: Vec<&str> = rederived.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(a, b, "ids are stable");
        for e in &out.events {
            assert_eq!(e.sequence, last_sequence + 1);
            last_sequence = e.sequence;
            assert!(is_event_id(&e.id), "{}", e.id);
            assert!(ids.insert(e.id.clone()), "duplicate id {}", e.id);
            let header = EventHeader::parse(&e.body_bytes()).expect("a body reads back");
            assert_eq!(header.event_id, e.id);
            assert_eq!(header.sequence, e.sequence);
        }
        let again = diff(Some(&out.snapshot), app, &ctx);
        assert!(
            again.events.is_empty(),
            "identical record: {:?}",
            again.events
        );
        assert!(!again.changed);
        assert_eq!(
            Snapshot::decode(&out.snapshot.encode()).as_ref(),
            Ok(&out.snapshot)
        );
        prev = Some(out.snapshot);
    }
}

/// `Snapshot::decode`: an error, or a snapshot that encodes and decodes to itself.
pub fn snapshot_decode(data: &[u8]) {
    if let Ok(snapshot) = Snapshot::decode(data) {
        assert_eq!(Snapshot::decode(&snapshot.encode()).as_ref(), Ok(&snapshot));
    }
}

/// The replay file reader: every line is an event or a numbered bad line; an event's body
/// reads back with the same id and carries no line ending.
pub fn replay_reader(data: &[u8]) {
    let _ = EventHeader::parse(data);
    let lines = data.split(|b| *b == b'\n').count();
    let mut items = 0;
    for item in FileEvents::new(data, EventFilter::default()) {
        items += 1;
        assert!(items <= lines, "more items than lines");
        match item {
            Ok(Ok(event)) => {
                let header = EventHeader::parse(&event.body).expect("a selected body parses");
                assert_eq!(header.event_id, event.event_id);
                assert!(!event.body.ends_with(b"\n") && !event.body.ends_with(b"\r"));
            }
            Ok(Err(bad)) => assert!((1..=lines).contains(&bad.line), "{bad:?}"),
            Err(_) => break,
        }
    }
}
