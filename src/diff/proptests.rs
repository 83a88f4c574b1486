//! Property tests: idempotence, stable ids, consecutive sequences, lossless snapshots, and
//! no panics on any bytes.

use std::collections::HashSet;

use chrono::TimeDelta;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::tests::{ctx, t};
use super::*;
use crate::domain::{Candidate, Interview, Job, Offer, OfferStatus, Outcome, Stage};
use crate::event::is_event_id;

/// Small pools, so that generated records share ids and collide often.
/// Half of them shaped like real Kombo ids (24 base58 characters: packed when stored).
fn id(prefix: &'static str) -> impl Strategy<Value = String> {
    (0..4u8).prop_map(move |n| {
        if n % 2 == 0 {
            format!("{prefix}{n}")
        } else {
            format!("{prefix}{n}{}", "26vafvWSRmbhNcxJYqjCzuJg")[..24].to_owned()
        }
    })
}

fn text() -> impl Strategy<Value = Option<String>> {
    option::of(prop_oneof![
        Just(String::new()),
        Just("Onsite".to_owned()),
        Just("Ünïcödé \"quoted\" \\ \n".to_owned()),
    ])
}

fn outcome() -> impl Strategy<Value = Option<Outcome>> {
    option::of(prop_oneof![
        Just(Outcome::Pending),
        Just(Outcome::Hired),
        Just(Outcome::Declined),
        Just(Outcome::Unknown("WITHDRAWN".into())),
    ])
}

fn status() -> impl Strategy<Value = Option<OfferStatus>> {
    option::of(prop_oneof![
        Just(OfferStatus::Draft),
        Just(OfferStatus::Sent),
        Just(OfferStatus::Accepted),
        Just(OfferStatus::Declined),
        Just(OfferStatus::Unknown("NEGOTIATING".into())),
    ])
}

/// A time from a few hours, sometimes with sub-millisecond noise.
fn time() -> impl Strategy<Value = Option<Timestamp>> {
    option::of(
        (
            0..4i64,
            prop_oneof![Just(0i64), Just(1i64), Just(999_999i64)],
        )
            .prop_map(|(h, ns)| t(h) + TimeDelta::nanoseconds(ns)),
    )
}

fn stage() -> impl Strategy<Value = Stage> {
    (id("st"), text(), option::of(-2..5i64)).prop_map(|(id, name, index)| Stage {
        remote_id: Some(format!("r-{id}")),
        id,
        name,
        index,
    })
}

fn offer() -> impl Strategy<Value = Offer> {
    (id("of"), status()).prop_map(|(id, status)| Offer {
        remote_id: Some(format!("r-{id}")),
        id,
        status,
    })
}

fn interview() -> impl Strategy<Value = Interview> {
    (id("iv"), text(), time(), time(), option::of(any::<bool>())).prop_map(
        |(id, title, starting_at, ending_at, canceled)| Interview {
            remote_id: None,
            id,
            title,
            starting_at,
            ending_at,
            canceled,
        },
    )
}

prop_compose! {
    fn application()(
        stage_id in option::of(id("st")),
        stage in option::of(stage()),
        outcome in outcome(),
        offers in option::of(vec(offer(), 0..4)),
        interviews in option::of(vec(interview(), 0..4)),
        deleted in option::of(0..2i64),
        job_id in option::of(id("job")),
        job_name in text(),
        candidate_name in text(),
        remote_url in text(),
    ) -> Application {
        Application {
            id: "app_1".into(),
            remote_id: Some("r-app".into()),
            outcome,
            rejection_reason_name: None,
            rejected_at: None,
            current_stage_id: stage_id,
            job_id: job_id.clone(),
            candidate_id: None,
            remote_url,
            remote_deleted_at: deleted.map(t),
            remote_updated_at: Some(t(2)),
            candidate: candidate_name.map(|n| Candidate {
                id: "cand_1".into(),
                first_name: Some(n),
                last_name: None,
            }),
            current_stage: stage,
            job: job_id.map(|id| Job { id, remote_id: None, name: job_name }),
            interviews,
            offers,
        }
    }
}

fn first_sight() -> impl Strategy<Value = FirstSight> {
    prop_oneof![Just(FirstSight::Baseline), Just(FirstSight::Emit)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Diffing any record against the snapshot it produced yields nothing.
    #[test]
    fn a_record_against_its_own_snapshot_is_quiet(app in application(), mode in first_sight()) {
        let first = diff(None, &app, &ctx(mode));
        prop_assert!(first.changed);
        let again = diff(Some(&first.snapshot), &app, &ctx(FirstSight::Emit));
        prop_assert!(again.events.is_empty(), "{:?}", again.events);
        prop_assert!(!again.changed);
        prop_assert_eq!(Snapshot::decode(&first.snapshot.encode()), Ok(first.snapshot));
    }

    /// Along any history: sequences consecutive, each state quiet against itself, ids stable
    /// across re-derivations (even at another time) and unique, snapshots lossless, bodies
    /// readable back.
    #[test]
    fn histories_keep_their_invariants(
        history in vec(application(), 1..8),
        mode in first_sight(),
    ) {
        let mut prev: Option<Snapshot> = None;
        let mut ids = HashSet::new();
        let mut last_sequence = 0u64;
        for (i, app) in history.iter().enumerate() {
            let c = if i == 0 { ctx(mode) } else { ctx(FirstSight::Emit) };
            let out = diff(prev.as_ref(), app, &c);

            let mut later = c;
            later.detected_at = c.detected_at + TimeDelta::hours(5);
            let rederived = diff(prev.as_ref(), app, &later);
            prop_assert_eq!(&rederived.snapshot, &out.snapshot);
            let a: Vec<&str> = out.events.iter().map(|e| e.id.as_str()).collect();
            let b: Vec<&str> = rederived.events.iter().map(|e| e.id.as_str()).collect();
            prop_assert_eq!(a, b);

            for e in &out.events {
                prop_assert_eq!(e.sequence, last_sequence + 1);
                last_sequence = e.sequence;
                prop_assert!(is_event_id(&e.id));
                prop_assert!(ids.insert(e.id.clone()), "duplicate id {}", e.id);
                let header = Event::from_body(&e.body_bytes());
                prop_assert!(header.is_ok(), "{:?}", header);
                if let Ok(h) = header {
                    prop_assert_eq!(&h.event_id, &e.id);
                    prop_assert_eq!(h.sequence, e.sequence);
                    prop_assert_eq!(h.event_type, e.event_type);
                }
            }
            prop_assert_eq!(out.snapshot.sequence, last_sequence);
            prop_assert_eq!(out.changed, prev.as_ref() != Some(&out.snapshot));

            let again = diff(Some(&out.snapshot), app, &ctx(FirstSight::Emit));
            prop_assert!(again.events.is_empty(), "step {}: {:?}", i, again.events);
            prop_assert!(!again.changed);
            prop_assert_eq!(Snapshot::decode(&out.snapshot.encode()), Ok(out.snapshot.clone()));
            prev = Some(out.snapshot);
        }
    }

    /// Any bytes decode to a snapshot or an error, never a panic.
    #[test]
    fn decode_never_panics(mut bytes in vec(any::<u8>(), 0..200)) {
        let _ = Snapshot::decode(&bytes);
        if let Some(first) = bytes.first_mut() {
            *first = SNAPSHOT_VERSION;
        }
        let _ = Snapshot::decode(&bytes);
    }

    /// Mutating one byte of a real snapshot never panics.
    #[test]
    fn corrupted_snapshots_never_panic(app in application(), at in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = diff(None, &app, &ctx(FirstSight::Baseline)).snapshot.encode();
        let n = bytes.len();
        if let Some(b) = bytes.get_mut(at % n) {
            *b = byte;
        }
        let _ = Snapshot::decode(&bytes);
    }
}
