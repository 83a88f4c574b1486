//! Table-driven tests of the diff rules, the bodies and the snapshot encoding.

use chrono::{DateTime, TimeDelta};
use serde_json::{Value, json};

use super::*;
use crate::domain::{Candidate, Interview, Job, Offer, OfferStatus, Outcome, Stage};
use crate::event::{EventHeader, EventType, format_timestamp, is_event_id};

use EventType::*;

const INTEGRATION: &str = "greenhouse:CBNMt7dSNCzBdnRTx87dev4E";

/// 2026-11-29T00:00:00Z plus `hours`.
pub(super) fn t(hours: i64) -> Timestamp {
    DateTime::from_timestamp(1_795_910_400, 0).unwrap_or_default() + TimeDelta::hours(hours)
}

pub(super) fn ctx(first_sight: FirstSight) -> DiffContext<'static> {
    DiffContext {
        integration_id: INTEGRATION,
        detected_at: t(100) + TimeDelta::milliseconds(123),
        first_sight,
    }
}

/// Builds `Application` values; starts with known-empty offers and interviews.
#[derive(Clone)]
struct B(Application);

fn app() -> B {
    B(Application {
        id: "app_1".into(),
        remote_id: Some("r-app-1".into()),
        outcome: Some(Outcome::Pending),
        rejection_reason_name: None,
        rejected_at: None,
        current_stage_id: None,
        job_id: None,
        candidate_id: None,
        remote_url: Some("https://ats.example.com/app/1".into()),
        remote_deleted_at: None,
        remote_updated_at: Some(t(1)),
        candidate: None,
        current_stage: None,
        job: None,
        interviews: Some(vec![]),
        offers: Some(vec![]),
    })
}

impl B {
    fn stage(mut self, id: &str, name: &str, index: i64) -> B {
        self.0.current_stage_id = Some(id.into());
        self.0.current_stage = Some(Stage {
            id: id.into(),
            remote_id: Some(format!("r-{id}")),
            name: Some(name.into()),
            index: Some(index),
        });
        self
    }
    /// Only `current_stage.id`, no `current_stage_id`.
    fn stage_object_only(mut self, id: &str, name: &str) -> B {
        self = self.stage(id, name, 1);
        self.0.current_stage_id = None;
        self
    }
    fn no_stage(mut self) -> B {
        self.0.current_stage_id = None;
        self.0.current_stage = None;
        self
    }
    fn outcome(mut self, o: Option<&str>) -> B {
        self.0.outcome = o.map(Outcome::from_wire);
        self
    }
    fn rejected(mut self, reason: &str, at: Timestamp) -> B {
        self.0.rejection_reason_name = Some(reason.into());
        self.0.rejected_at = Some(at);
        self
    }
    fn offer(mut self, id: &str, status: Option<&str>) -> B {
        self.0.offers.get_or_insert_with(Vec::new).push(Offer {
            id: id.into(),
            remote_id: Some(format!("r-{id}")),
            status: status.map(OfferStatus::from_wire),
        });
        self
    }
    fn offers_unknown(mut self) -> B {
        self.0.offers = None;
        self
    }
    fn interview(mut self, id: &str, start_h: i64, canceled: Option<bool>) -> B {
        self.0
            .interviews
            .get_or_insert_with(Vec::new)
            .push(Interview {
                id: id.into(),
                remote_id: Some(format!("r-{id}")),
                title: Some("Onsite".into()),
                starting_at: Some(t(start_h)),
                ending_at: Some(t(start_h + 1)),
                canceled,
            });
        self
    }
    fn interview_end(mut self, id: &str, end: Timestamp) -> B {
        if let Some(iv) = self
            .0
            .interviews
            .iter_mut()
            .flatten()
            .find(|iv| iv.id == id)
        {
            iv.ending_at = Some(end);
        }
        self
    }
    fn interviews_unknown(mut self) -> B {
        self.0.interviews = None;
        self
    }
    fn deleted(mut self, hours: i64) -> B {
        self.0.remote_deleted_at = Some(t(hours));
        self
    }
    /// What Kombo leaves 14 days after a deletion: fields nulled.
    fn tombstone(hours: i64) -> B {
        let mut b = app().deleted(hours).outcome(None);
        b.0.remote_id = None;
        b.0.remote_url = None;
        b.0.offers = None;
        b.0.interviews = None;
        b
    }
    fn job(mut self, name: &str) -> B {
        self.0.job_id = Some("job_1".into());
        self.0.job = Some(Job {
            id: "job_1".into(),
            remote_id: Some("r-job-1".into()),
            name: Some(name.into()),
        });
        self
    }
    fn candidate(mut self, first: &str) -> B {
        self.0.candidate_id = Some("cand_1".into());
        self.0.candidate = Some(Candidate {
            id: "cand_1".into(),
            first_name: Some(first.into()),
            last_name: Some("Doe".into()),
        });
        self
    }
    fn updated(mut self, hours: i64) -> B {
        self.0.remote_updated_at = Some(t(hours));
        self
    }
    fn a(self) -> Application {
        self.0
    }
}

/// A typical live record.
fn full() -> B {
    app()
        .job("Backend Engineer")
        .candidate("John")
        .stage("st_screen", "Initial Screening", 2)
}

/// Diffs the steps in order (the first against no snapshot with `first_sight`, the others
/// with `Emit`), checks the invariants every step must keep, and returns every step's
/// outcome.
fn run(first_sight: FirstSight, steps: &[Application]) -> Vec<DiffOutcome> {
    let mut prev: Option<Snapshot> = None;
    let mut outs = Vec::new();
    for (i, record) in steps.iter().enumerate() {
        let c = if i == 0 {
            ctx(first_sight)
        } else {
            ctx(FirstSight::Emit)
        };
        let out = diff(prev.as_ref(), record, &c);
        // Sequences continue the previous snapshot's, one by one.
        let base = prev.as_ref().map_or(0, |p| p.sequence);
        for (k, e) in out.events.iter().enumerate() {
            assert_eq!(e.sequence, base + k as u64 + 1, "step {i}: sequence");
            assert_eq!(e.event_type, e.detail.event_type());
            assert!(is_event_id(&e.id), "{}", e.id);
        }
        assert_eq!(out.snapshot.sequence, base + out.events.len() as u64);
        // The poll overlap: the same record again gives nothing and no write.
        let again = diff(Some(&out.snapshot), record, &ctx(FirstSight::Emit));
        assert!(
            again.events.is_empty(),
            "step {i}: re-diff gave {:?}",
            types(&again)
        );
        assert!(!again.changed, "step {i}: re-diff changed the snapshot");
        // The stored form reads back identical.
        let decoded = Snapshot::decode(&out.snapshot.encode());
        assert_eq!(decoded.as_ref(), Ok(&out.snapshot), "step {i}: round trip");
        prev = Some(out.snapshot.clone());
        outs.push(out);
    }
    outs
}

fn types(out: &DiffOutcome) -> Vec<EventType> {
    out.events.iter().map(|e| e.event_type).collect()
}

/// One row per rule: the records polled in turn and the event types each poll yields.
#[test]
fn rules_table() {
    use FirstSight::{Baseline, Emit};
    let s1 = || full();
    let s2 = || full().stage("st_onsite", "Onsite", 3);
    let s3 = || full().stage("st_offer", "Offer", 4);
    let out = |o: &str| full().outcome(Some(o));
    #[allow(clippy::type_complexity)]
    let rows: Vec<(&str, FirstSight, Vec<(Application, Vec<EventType>)>)> = vec![
        // First sight.
        (
            "baseline stores silently",
            Baseline,
            vec![(s1().a(), vec![])],
        ),
        (
            "emit: one application_created",
            Emit,
            vec![(
                s1().offer("of_1", Some("DRAFT"))
                    .interview("iv_1", 5, None)
                    .a(),
                vec![ApplicationCreated],
            )],
        ),
        (
            "first seen already deleted (emit): nothing",
            Emit,
            vec![(s1().deleted(0).a(), vec![])],
        ),
        (
            "first seen already deleted (baseline): nothing",
            Baseline,
            vec![(s1().deleted(0).a(), vec![])],
        ),
        (
            "first seen deleted, then restored: restored + differences",
            Emit,
            vec![
                (s1().deleted(0).a(), vec![]),
                (s2().a(), vec![ApplicationRestored, StageChanged]),
            ],
        ),
        (
            "a baseline record changing later emits",
            Baseline,
            vec![(s1().a(), vec![]), (s2().a(), vec![StageChanged])],
        ),
        // Stage.
        (
            "stage moves",
            Emit,
            vec![
                (s1().a(), vec![ApplicationCreated]),
                (s2().a(), vec![StageChanged]),
            ],
        ),
        (
            "two moves between polls: one event",
            Baseline,
            vec![(s1().a(), vec![]), (s3().a(), vec![StageChanged])],
        ),
        (
            "stage rename alone: nothing",
            Baseline,
            vec![
                (s1().a(), vec![]),
                (full().stage("st_screen", "Phone Screen", 5).a(), vec![]),
            ],
        ),
        (
            "stage id from current_stage.id when current_stage_id is null",
            Baseline,
            vec![
                (s1().a(), vec![]),
                (
                    full().stage_object_only("st_onsite", "Onsite").a(),
                    vec![StageChanged],
                ),
            ],
        ),
        (
            "stage to null",
            Baseline,
            vec![
                (s1().a(), vec![]),
                (full().no_stage().a(), vec![StageChanged]),
            ],
        ),
        (
            "stage from null",
            Baseline,
            vec![
                (full().no_stage().a(), vec![]),
                (s1().a(), vec![StageChanged]),
            ],
        ),
        (
            "A→B→A→B: an event each time",
            Baseline,
            vec![
                (s1().a(), vec![]),
                (s2().a(), vec![StageChanged]),
                (s1().a(), vec![StageChanged]),
                (s2().a(), vec![StageChanged]),
            ],
        ),
        // Outcome.
        (
            "PENDING→HIRED",
            Baseline,
            vec![
                (out("PENDING").a(), vec![]),
                (out("HIRED").a(), vec![OutcomeHired]),
            ],
        ),
        (
            "null→HIRED",
            Baseline,
            vec![
                (s1().outcome(None).a(), vec![]),
                (out("HIRED").a(), vec![OutcomeHired]),
            ],
        ),
        (
            "PENDING→DECLINED",
            Baseline,
            vec![
                (out("PENDING").a(), vec![]),
                (out("DECLINED").a(), vec![Rejected]),
            ],
        ),
        (
            "HIRED→DECLINED",
            Baseline,
            vec![
                (out("HIRED").a(), vec![]),
                (out("DECLINED").a(), vec![Rejected]),
            ],
        ),
        (
            "DECLINED→HIRED",
            Baseline,
            vec![
                (out("DECLINED").a(), vec![]),
                (out("HIRED").a(), vec![OutcomeHired]),
            ],
        ),
        (
            "HIRED→PENDING: reverted",
            Baseline,
            vec![
                (out("HIRED").a(), vec![]),
                (out("PENDING").a(), vec![OutcomeReverted]),
            ],
        ),
        (
            "DECLINED→null: reverted",
            Baseline,
            vec![
                (out("DECLINED").a(), vec![]),
                (s1().outcome(None).a(), vec![OutcomeReverted]),
            ],
        ),
        (
            "null→PENDING: nothing",
            Baseline,
            vec![
                (s1().outcome(None).a(), vec![]),
                (out("PENDING").a(), vec![]),
            ],
        ),
        (
            "PENDING→null: nothing",
            Baseline,
            vec![
                (out("PENDING").a(), vec![]),
                (s1().outcome(None).a(), vec![]),
            ],
        ),
        (
            "rejected, reverted, rejected again",
            Baseline,
            vec![
                (out("PENDING").a(), vec![]),
                (out("DECLINED").a(), vec![Rejected]),
                (out("PENDING").a(), vec![OutcomeReverted]),
                (out("DECLINED").a(), vec![Rejected]),
            ],
        ),
        (
            "unknown outcome: stored, nothing",
            Baseline,
            vec![(out("PENDING").a(), vec![]), (out("WITHDRAWN").a(), vec![])],
        ),
        (
            "HIRED→unknown: nothing",
            Baseline,
            vec![(out("HIRED").a(), vec![]), (out("WITHDRAWN").a(), vec![])],
        ),
        (
            "HIRED→unknown→PENDING: reverted at PENDING",
            Baseline,
            vec![
                (out("HIRED").a(), vec![]),
                (out("WITHDRAWN").a(), vec![]),
                (out("PENDING").a(), vec![OutcomeReverted]),
            ],
        ),
        (
            "HIRED→unknown→HIRED: nothing",
            Baseline,
            vec![
                (out("HIRED").a(), vec![]),
                (out("WITHDRAWN").a(), vec![]),
                (out("HIRED").a(), vec![]),
            ],
        ),
        (
            "unknown→DECLINED",
            Baseline,
            vec![
                (out("WITHDRAWN").a(), vec![]),
                (out("DECLINED").a(), vec![Rejected]),
            ],
        ),
        // Offers.
        (
            "new offer",
            Baseline,
            vec![
                (s1().a(), vec![]),
                (s1().offer("of_1", Some("DRAFT")).a(), vec![OfferCreated]),
            ],
        ),
        (
            "new offer with null status",
            Baseline,
            vec![
                (s1().a(), vec![]),
                (s1().offer("of_1", None).a(), vec![OfferCreated]),
            ],
        ),
        (
            "offer status steps, skips, to and from null",
            Baseline,
            vec![
                (s1().offer("of_1", Some("DRAFT")).a(), vec![]),
                (
                    s1().offer("of_1", Some("SENT")).a(),
                    vec![OfferStatusChanged],
                ),
                (s1().offer("of_1", None).a(), vec![OfferStatusChanged]),
                (
                    s1().offer("of_1", Some("ACCEPTED")).a(),
                    vec![OfferStatusChanged],
                ),
                (
                    s1().offer("of_1", Some("SOMETHING_NEW")).a(),
                    vec![OfferStatusChanged],
                ),
            ],
        ),
        (
            "offer disappears: nothing; reappears unchanged: nothing; then changed",
            Baseline,
            vec![
                (s1().offer("of_1", Some("SENT")).a(), vec![]),
                (s1().a(), vec![]),
                (s1().offer("of_1", Some("SENT")).a(), vec![]),
                (s1().a(), vec![]),
                (
                    s1().offer("of_1", Some("ACCEPTED")).a(),
                    vec![OfferStatusChanged],
                ),
            ],
        ),
        (
            "offers unknown: nothing, kept",
            Baseline,
            vec![
                (s1().offer("of_1", Some("SENT")).a(), vec![]),
                (s1().offers_unknown().a(), vec![]),
                (s1().offer("of_1", Some("SENT")).a(), vec![]),
            ],
        ),
        (
            "duplicate offer ids in one record: the first counts",
            Baseline,
            vec![
                (s1().a(), vec![]),
                (
                    s1().offer("of_1", Some("SENT"))
                        .offer("of_1", Some("DRAFT"))
                        .a(),
                    vec![OfferCreated],
                ),
            ],
        ),
        // Interviews.
        (
            "new interview",
            Baseline,
            vec![
                (s1().a(), vec![]),
                (
                    s1().interview("iv_1", 5, None).a(),
                    vec![InterviewScheduled],
                ),
            ],
        ),
        (
            "new interview, canceled false",
            Baseline,
            vec![
                (s1().a(), vec![]),
                (
                    s1().interview("iv_1", 5, Some(false)).a(),
                    vec![InterviewScheduled],
                ),
            ],
        ),
        (
            "new interview already canceled: nothing",
            Baseline,
            vec![
                (s1().a(), vec![]),
                (s1().interview("iv_1", 5, Some(true)).a(), vec![]),
            ],
        ),
        (
            "start moved",
            Baseline,
            vec![
                (s1().interview("iv_1", 5, None).a(), vec![]),
                (
                    s1().interview("iv_1", 7, None).a(),
                    vec![InterviewRescheduled],
                ),
            ],
        ),
        (
            "end moved",
            Baseline,
            vec![
                (s1().interview("iv_1", 5, None).a(), vec![]),
                (
                    s1().interview("iv_1", 5, None)
                        .interview_end("iv_1", t(8))
                        .a(),
                    vec![InterviewRescheduled],
                ),
            ],
        ),
        (
            "sub-millisecond jitter: nothing",
            Baseline,
            vec![
                (s1().interview("iv_1", 5, None).a(), vec![]),
                (
                    s1().interview("iv_1", 5, None)
                        .interview_end("iv_1", t(6) + TimeDelta::microseconds(7))
                        .a(),
                    vec![],
                ),
            ],
        ),
        (
            "canceled flag",
            Baseline,
            vec![
                (s1().interview("iv_1", 5, None).a(), vec![]),
                (
                    s1().interview("iv_1", 5, Some(true)).a(),
                    vec![InterviewCanceled],
                ),
            ],
        ),
        (
            "disappears: canceled",
            Baseline,
            vec![
                (s1().interview("iv_1", 5, None).a(), vec![]),
                (s1().a(), vec![InterviewCanceled]),
            ],
        ),
        (
            "canceled once: canceled then disappears gives nothing",
            Baseline,
            vec![
                (s1().interview("iv_1", 5, None).a(), vec![]),
                (
                    s1().interview("iv_1", 5, Some(true)).a(),
                    vec![InterviewCanceled],
                ),
                (s1().a(), vec![]),
            ],
        ),
        (
            "new time and canceled in one poll: only canceled",
            Baseline,
            vec![
                (s1().interview("iv_1", 5, None).a(), vec![]),
                (
                    s1().interview("iv_1", 9, Some(true)).a(),
                    vec![InterviewCanceled],
                ),
            ],
        ),
        (
            "canceled interview moved: nothing",
            Baseline,
            vec![
                (s1().interview("iv_1", 5, Some(true)).a(), vec![]),
                (s1().interview("iv_1", 9, Some(true)).a(), vec![]),
            ],
        ),
        (
            "un-canceled: scheduled again",
            Baseline,
            vec![
                (s1().interview("iv_1", 5, None).a(), vec![]),
                (
                    s1().interview("iv_1", 5, Some(true)).a(),
                    vec![InterviewCanceled],
                ),
                (
                    s1().interview("iv_1", 5, None).a(),
                    vec![InterviewScheduled],
                ),
            ],
        ),
        (
            "disappeared, then back: scheduled again",
            Baseline,
            vec![
                (s1().interview("iv_1", 5, None).a(), vec![]),
                (s1().a(), vec![InterviewCanceled]),
                (
                    s1().interview("iv_1", 5, None).a(),
                    vec![InterviewScheduled],
                ),
            ],
        ),
        (
            "interviews unknown: nothing, kept",
            Baseline,
            vec![
                (s1().interview("iv_1", 5, None).a(), vec![]),
                (s1().interviews_unknown().a(), vec![]),
                (s1().interview("iv_1", 5, None).a(), vec![]),
            ],
        ),
        // Deletion.
        (
            "deleted: only application_deleted",
            Baseline,
            vec![
                (out("HIRED").a(), vec![]),
                (B::tombstone(50).a(), vec![ApplicationDeleted]),
            ],
        ),
        (
            "deleted with live fields still present: only application_deleted",
            Baseline,
            vec![
                (s1().a(), vec![]),
                (
                    s2().outcome(Some("DECLINED"))
                        .offer("of_1", None)
                        .deleted(50)
                        .a(),
                    vec![ApplicationDeleted],
                ),
            ],
        ),
        (
            "while deleted: nothing",
            Baseline,
            vec![
                (s1().a(), vec![]),
                (s1().deleted(50).a(), vec![ApplicationDeleted]),
                (B::tombstone(50).a(), vec![]),
                (s2().deleted(60).a(), vec![]),
            ],
        ),
        (
            "restored unchanged: only application_restored",
            Baseline,
            vec![
                (s1().interview("iv_1", 5, None).a(), vec![]),
                (B::tombstone(50).a(), vec![ApplicationDeleted]),
                (
                    s1().interview("iv_1", 5, None).a(),
                    vec![ApplicationRestored],
                ),
            ],
        ),
        (
            "restored with changes: restored, then the differences in order",
            Baseline,
            vec![
                (s1().interview("iv_1", 5, None).a(), vec![]),
                (B::tombstone(50).a(), vec![ApplicationDeleted]),
                (
                    s2().outcome(Some("HIRED"))
                        .offer("of_1", Some("ACCEPTED"))
                        .interview("iv_2", 9, None)
                        .a(),
                    vec![
                        ApplicationRestored,
                        StageChanged,
                        OutcomeHired,
                        OfferCreated,
                        InterviewScheduled,
                        InterviewCanceled,
                    ],
                ),
            ],
        ),
        // Order of one record's events.
        (
            "several changes in one poll: stage, outcome, offers, interviews",
            Baseline,
            vec![
                (
                    s1().offer("of_1", Some("DRAFT"))
                        .interview("iv_1", 5, None)
                        .a(),
                    vec![],
                ),
                (
                    s2().outcome(Some("DECLINED"))
                        .offer("of_2", None)
                        .offer("of_1", Some("DECLINED"))
                        .interview("iv_2", 9, None)
                        .a(),
                    vec![
                        StageChanged,
                        Rejected,
                        OfferCreated,
                        OfferStatusChanged,
                        InterviewScheduled,
                        InterviewCanceled,
                    ],
                ),
            ],
        ),
        // Payload-only fields.
        (
            "job, candidate, URL renamed: nothing",
            Baseline,
            vec![
                (s1().a(), vec![]),
                (
                    app()
                        .job("Staff Engineer")
                        .candidate("Johnny")
                        .stage("st_screen", "Initial Screening", 2)
                        .updated(9)
                        .a(),
                    vec![],
                ),
            ],
        ),
    ];
    for (name, first_sight, steps) in rows {
        let records: Vec<Application> = steps.iter().map(|(a, _)| a.clone()).collect();
        let outs = run(first_sight, &records);
        for (i, ((_, want), got)) in steps.iter().zip(&outs).enumerate() {
            assert_eq!(&types(got), want, "row `{name}`, step {i}");
        }
    }
}

#[test]
fn stage_rename_refreshes_the_snapshot() {
    let first = diff(None, &full().a(), &ctx(FirstSight::Baseline));
    let renamed = full().stage("st_screen", "Phone Screen", 5).a();
    let out = diff(Some(&first.snapshot), &renamed, &ctx(FirstSight::Emit));
    assert!(out.events.is_empty());
    assert!(out.changed, "a rename must be written");
    let stage = out
        .snapshot
        .stage
        .clone()
        .unwrap_or_else(|| panic!("no stage"));
    assert_eq!(stage.name.as_deref(), Some("Phone Screen"));
    assert_eq!(stage.index, Some(5));
    // The next move shows the new name as the previous stage.
    let moved = full().stage("st_onsite", "Onsite", 6).a();
    let out = diff(Some(&out.snapshot), &moved, &ctx(FirstSight::Emit));
    let body = out.events[0].body();
    assert_eq!(body["data"]["previous_stage"]["name"], "Phone Screen");
}

#[test]
fn stage_without_object_keeps_stored_details() {
    let first = diff(None, &full().a(), &ctx(FirstSight::Baseline));
    let mut bare = full().a();
    bare.current_stage = None;
    let out = diff(Some(&first.snapshot), &bare, &ctx(FirstSight::Emit));
    assert!(out.events.is_empty());
    assert!(!out.changed);
}

#[test]
fn two_moves_between_polls_go_from_stored_to_current() {
    let outs = run(
        FirstSight::Baseline,
        &[full().a(), full().stage("st_offer", "Offer", 4).a()],
    );
    let body = outs[1].events[0].body();
    assert_eq!(body["data"]["previous_stage"]["id"], "st_screen");
    assert_eq!(body["data"]["current_stage"]["id"], "st_offer");
    assert_eq!(
        body["data"]["application"]["current_stage"]["id"],
        "st_offer"
    );
}

#[test]
fn deletion_keeps_the_pre_deletion_state() {
    let live = full()
        .outcome(Some("HIRED"))
        .offer("of_1", Some("ACCEPTED"))
        .interview("iv_1", 5, None)
        .a();
    let outs = run(FirstSight::Baseline, &[live, B::tombstone(50).a()]);
    let kept = &outs[1].snapshot;
    assert_eq!(kept.deleted_at, Some(t(50)));
    assert_eq!(
        kept.stage.as_ref().map(|s| s.id.as_str()),
        Some("st_screen")
    );
    assert_eq!(kept.outcome, Some(Outcome::Hired));
    assert_eq!(kept.offers.len(), 1);
    assert_eq!(kept.interviews.len(), 1);
    assert!(!kept.interviews[0].canceled);
    // The deleted event shows the application as it was, and when it was deleted.
    let body = outs[1].events[0].body();
    assert_eq!(body["type"], "application_deleted");
    assert_eq!(
        body["data"]["remote_deleted_at"],
        "2026-12-01T02:00:00.000Z"
    );
    assert_eq!(body["data"]["application"]["outcome"], "HIRED");
    assert_eq!(
        body["data"]["application"]["job"]["name"],
        "Backend Engineer"
    );
}

#[test]
fn first_sight_deleted_is_stored() {
    let out = diff(None, &full().deleted(3).a(), &ctx(FirstSight::Emit));
    assert!(out.events.is_empty());
    assert!(out.changed);
    assert_eq!(out.snapshot.sequence, 0);
    assert_eq!(out.snapshot.deleted_at, Some(t(3)));
}

#[test]
fn unknown_outcome_is_carried_raw() {
    let outs = run(
        FirstSight::Baseline,
        &[
            full().outcome(Some("HIRED")).a(),
            full().outcome(Some("WITHDRAWN")).a(),
            full().outcome(Some("WITHDRAWN")).stage("st_x", "X", 9).a(),
            full().outcome(Some("PENDING")).a(),
        ],
    );
    assert!(outs[1].changed);
    assert_eq!(
        outs[1].snapshot.outcome,
        Some(Outcome::Unknown("WITHDRAWN".into()))
    );
    assert_eq!(outs[1].snapshot.known_outcome, KnownOutcome::Hired);
    let moved = outs[2].events[0].body();
    assert_eq!(moved["data"]["application"]["outcome"], "WITHDRAWN");
    let reverted = outs[3].events.last().map(|e| e.body()).unwrap_or_default();
    assert_eq!(reverted["type"], "outcome_reverted");
    assert_eq!(reverted["data"]["previous_outcome"], "HIRED");
    assert_eq!(reverted["data"]["current_outcome"], "PENDING");
}

#[test]
fn same_record_twice_is_unchanged() {
    let record = full()
        .outcome(Some("HIRED"))
        .offer("of_1", Some("ACCEPTED"))
        .interview("iv_1", 5, None)
        .interview("iv_2", 6, Some(true))
        .a();
    for mode in [FirstSight::Baseline, FirstSight::Emit] {
        let first = diff(None, &record, &ctx(mode));
        assert!(first.changed);
        let second = diff(Some(&first.snapshot), &record, &ctx(mode));
        assert!(second.events.is_empty());
        assert!(!second.changed);
        assert_eq!(second.snapshot, first.snapshot);
    }
}

// ---------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------

fn parse(e: &Event) -> Value {
    let bytes = e.body_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    assert_eq!(v, e.body(), "body() and body_bytes() agree");
    v
}

#[test]
fn stage_changed_body_matches_the_design_example() {
    let outs = run(
        FirstSight::Baseline,
        &[full().a(), full().stage("st_onsite", "Onsite", 3).a()],
    );
    let e = &outs[1].events[0];
    let body = parse(e);
    let id = e.id.clone();
    assert_eq!(
        body,
        json!({
            "type": "stage_changed",
            "timestamp": "2026-12-03T04:00:00.123Z",
            "data": {
                "event_id": id,
                "integration_id": INTEGRATION,
                "sequence": 1,
                "detected_at": "2026-12-03T04:00:00.123Z",
                "remote_updated_at": "2026-11-29T01:00:00.000Z",
                "application": {
                    "id": "app_1",
                    "remote_id": "r-app-1",
                    "outcome": "PENDING",
                    "job": {"id": "job_1", "remote_id": "r-job-1", "name": "Backend Engineer"},
                    "candidate": {"id": "cand_1", "first_name": "John", "last_name": "Doe"},
                    "current_stage": {"id": "st_onsite", "remote_id": "r-st_onsite", "name": "Onsite", "index": 3},
                    "remote_url": "https://ats.example.com/app/1"
                },
                "previous_stage": {"id": "st_screen", "remote_id": "r-st_screen", "name": "Initial Screening", "index": 2},
                "current_stage": {"id": "st_onsite", "remote_id": "r-st_onsite", "name": "Onsite", "index": 3}
            }
        })
    );
    // webhook-id is data.event_id; timestamp is data.detected_at, the same string.
    assert_eq!(body["data"]["event_id"], e.id.as_str());
    assert_eq!(body["timestamp"], body["data"]["detected_at"]);
    // Compact, and in the envelope's order.
    let text = String::from_utf8(e.body_bytes()).unwrap_or_default();
    assert!(
        text.starts_with(r#"{"type":"stage_changed","timestamp":"#),
        "{text}"
    );
    assert!(!text.contains('\n') && !text.contains(": "));
    // No contact details anywhere (the domain record has none: `ats::convert` tests that a
    // wire record's do not get through).
    assert!(
        body["data"]["application"]["candidate"]
            .get("email_addresses")
            .is_none()
    );
}

#[test]
fn application_created_body_carries_the_full_summary() {
    let record = full()
        .outcome(Some("PENDING"))
        .offer("of_1", Some("DRAFT"))
        .interview("iv_1", 5, None)
        .interview("iv_2", 6, Some(true))
        .a();
    let out = diff(None, &record, &ctx(FirstSight::Emit));
    assert_eq!(out.events.len(), 1);
    let e = &out.events[0];
    assert_eq!(e.sequence, 1);
    let body = parse(e);
    let a = &body["data"]["application"];
    assert_eq!(body["type"], "application_created");
    assert_eq!(a["current_stage"]["name"], "Initial Screening");
    assert_eq!(a["outcome"], "PENDING");
    assert_eq!(
        a["offers"],
        json!([{"id": "of_1", "remote_id": "r-of_1", "status": "DRAFT"}])
    );
    assert_eq!(
        a["interviews"],
        json!([
            {"id": "iv_1", "remote_id": "r-iv_1", "title": "Onsite",
             "starting_at": "2026-11-29T05:00:00.000Z", "ending_at": "2026-11-29T06:00:00.000Z",
             "canceled": false},
            {"id": "iv_2", "remote_id": "r-iv_2", "title": "Onsite",
             "starting_at": "2026-11-29T06:00:00.000Z", "ending_at": "2026-11-29T07:00:00.000Z",
             "canceled": true}
        ])
    );
}

#[test]
fn outcome_bodies() {
    let outs = run(
        FirstSight::Baseline,
        &[
            full().offer("of_1", Some("SENT")).a(),
            full()
                .outcome(Some("DECLINED"))
                .rejected("Not a fit", t(7) + TimeDelta::microseconds(1500))
                .offer("of_1", Some("SENT"))
                .a(),
            full()
                .outcome(Some("HIRED"))
                .offer("of_1", Some("SENT"))
                .a(),
            full()
                .outcome(Some("HIRED"))
                .offers_unknown()
                .outcome(None)
                .a(),
        ],
    );
    let rejected = parse(&outs[1].events[0]);
    assert_eq!(rejected["type"], "rejected");
    assert_eq!(rejected["data"]["previous_outcome"], "PENDING");
    assert_eq!(rejected["data"]["rejection_reason_name"], "Not a fit");
    assert_eq!(rejected["data"]["rejected_at"], "2026-11-29T07:00:00.001Z");
    let hired = parse(&outs[2].events[0]);
    assert_eq!(hired["type"], "outcome_hired");
    assert_eq!(hired["data"]["previous_outcome"], "DECLINED");
    assert_eq!(
        hired["data"]["offers"],
        json!([{"id": "of_1", "remote_id": "r-of_1", "status": "SENT"}])
    );
    let reverted = parse(&outs[3].events[0]);
    assert_eq!(reverted["type"], "outcome_reverted");
    assert_eq!(reverted["data"]["previous_outcome"], "HIRED");
    assert_eq!(reverted["data"]["current_outcome"], Value::Null);
}

#[test]
fn offer_and_interview_bodies() {
    let outs = run(
        FirstSight::Baseline,
        &[
            full()
                .offer("of_1", Some("DRAFT"))
                .interview("iv_1", 5, None)
                .a(),
            full()
                .offer("of_1", Some("ACCEPTED"))
                .offer("of_2", Some("NEGOTIATING"))
                .interview("iv_1", 8, None)
                .a(),
            full().offer("of_1", Some("ACCEPTED")).a(),
        ],
    );
    let ev: Vec<Value> = outs[1].events.iter().map(parse).collect();
    assert_eq!(ev[0]["type"], "offer_status_changed");
    assert_eq!(ev[0]["data"]["previous_status"], "DRAFT");
    assert_eq!(ev[0]["data"]["current_status"], "ACCEPTED");
    assert_eq!(ev[0]["data"]["offer"]["status"], "ACCEPTED");
    assert_eq!(ev[1]["type"], "offer_created");
    assert_eq!(ev[1]["data"]["offer"]["status"], "NEGOTIATING");
    assert_eq!(ev[2]["type"], "interview_rescheduled");
    assert_eq!(
        ev[2]["data"]["previous_starting_at"],
        "2026-11-29T05:00:00.000Z"
    );
    assert_eq!(
        ev[2]["data"]["previous_ending_at"],
        "2026-11-29T06:00:00.000Z"
    );
    assert_eq!(
        ev[2]["data"]["interview"]["starting_at"],
        "2026-11-29T08:00:00.000Z"
    );
    let canceled = parse(&outs[2].events[0]);
    assert_eq!(canceled["type"], "interview_canceled");
    assert_eq!(canceled["data"]["interview"]["canceled"], true);
    assert_eq!(
        canceled["data"]["interview"]["starting_at"],
        "2026-11-29T08:00:00.000Z"
    );
}

#[test]
fn restored_body_has_no_extra_fields() {
    let outs = run(
        FirstSight::Baseline,
        &[full().a(), B::tombstone(50).a(), full().a()],
    );
    let body = parse(&outs[2].events[0]);
    assert_eq!(body["type"], "application_restored");
    let keys: Vec<&String> = body["data"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys.len(), 6, "{keys:?}");
}

#[test]
fn timestamp_format_has_three_fraction_digits() {
    assert_eq!(format_timestamp(&t(0)), "2026-11-29T00:00:00.000Z");
    let ts = t(0) + TimeDelta::nanoseconds(123_456_789);
    assert_eq!(format_timestamp(&ts), "2026-11-29T00:00:00.123Z");
}

// ---------------------------------------------------------------------------------------
// Event ids
// ---------------------------------------------------------------------------------------

#[test]
fn event_ids_are_deterministic() {
    let steps = [full().a(), full().stage("st_onsite", "Onsite", 3).a()];
    let a = run(FirstSight::Baseline, &steps);
    let b = run(FirstSight::Baseline, &steps);
    assert_eq!(a[1].events[0].id, b[1].events[0].id);
    assert!(is_event_id(&a[1].events[0].id));
    assert_eq!(a[1].events[0].id.len(), 36);

    // Another detection time: same id.
    let mut later = ctx(FirstSight::Emit);
    later.detected_at = t(500);
    let c = diff(Some(&a[0].snapshot), &steps[1], &later);
    assert_eq!(c.events[0].id, a[1].events[0].id);
    assert_ne!(c.events[0].detected_at, a[1].events[0].detected_at);

    // Another integration or application: another id.
    let mut other = ctx(FirstSight::Emit);
    other.integration_id = "lever:other";
    let d = diff(Some(&a[0].snapshot), &steps[1], &other);
    assert_ne!(d.events[0].id, a[1].events[0].id);
    let mut moved = steps[1].clone();
    moved.id = "app_2".into();
    let e = diff(Some(&a[0].snapshot), &moved, &ctx(FirstSight::Emit));
    assert_ne!(e.events[0].id, a[1].events[0].id);
}

#[test]
fn a_repeated_transition_gets_another_id() {
    let a = || full().a();
    let b = || full().stage("st_onsite", "Onsite", 3).a();
    let outs = run(FirstSight::Baseline, &[a(), b(), a(), b()]);
    let ids: Vec<&str> = outs[1..].iter().map(|o| o.events[0].id.as_str()).collect();
    assert_ne!(ids[0], ids[2], "A→B twice");
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
}

#[test]
fn every_event_of_a_record_has_its_own_id() {
    let outs = run(
        FirstSight::Baseline,
        &[
            full()
                .interview("iv_1", 5, None)
                .interview("iv_2", 6, None)
                .a(),
            full().a(),
        ],
    );
    let ids: Vec<&str> = outs[1].events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
}

// ---------------------------------------------------------------------------------------
// Reading bodies back
// ---------------------------------------------------------------------------------------

#[test]
fn from_body_reads_the_common_fields() {
    let outs = run(
        FirstSight::Baseline,
        &[full().a(), full().outcome(Some("HIRED")).a()],
    );
    let e = &outs[1].events[0];
    let header = Event::from_body(&e.body_bytes()).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        header,
        EventHeader {
            event_id: e.id.clone(),
            event_type: EventType::OutcomeHired,
            integration_id: INTEGRATION.into(),
            application_id: "app_1".into(),
            sequence: 1,
            detected_at: e.detected_at,
            remote_updated_at: e.remote_updated_at,
        }
    );
    // A null remote_updated_at is fine.
    let mut bare = full().outcome(Some("DECLINED")).a();
    bare.remote_updated_at = None;
    let out = diff(Some(&outs[0].snapshot), &bare, &ctx(FirstSight::Emit));
    let header = Event::from_body(&out.events[0].body_bytes());
    assert_eq!(header.ok().and_then(|h| h.remote_updated_at), None);
    assert!(Event::from_body(&out.events[0].body_bytes()).is_ok());
}

#[test]
fn from_body_is_strict() {
    let outs = run(
        FirstSight::Baseline,
        &[full().a(), full().outcome(Some("HIRED")).a()],
    );
    let good = outs[1].events[0].body();
    let check = |edit: &dyn Fn(&mut Value), want: &str| {
        let mut v = good.clone();
        edit(&mut v);
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        let err = Event::from_body(&bytes)
            .err()
            .unwrap_or_else(|| panic!("accepted, wanted `{want}`"));
        assert!(
            err.to_string().contains(want),
            "{err} does not name `{want}`"
        );
    };
    check(&|v| v["type"] = json!("moved_house"), "type");
    check(
        &|v| {
            if let Some(d) = v["data"].as_object_mut() {
                d.remove("sequence");
            }
        },
        "sequence",
    );
    check(&|v| v["data"]["sequence"] = json!("7"), "data.sequence");
    check(
        &|v| {
            if let Some(d) = v["data"].as_object_mut() {
                d.remove("remote_updated_at");
            }
        },
        "remote_updated_at",
    );
    check(
        &|v| v["data"]["remote_updated_at"] = json!("soon"),
        "data.remote_updated_at",
    );
    check(&|v| v["data"]["event_id"] = json!("evt_XYZ"), "event_id");
    check(
        &|v| v["timestamp"] = json!("2026-12-03T04:00:00.124Z"),
        "differs",
    );
    check(
        &|v| {
            v["timestamp"] = json!("yesterday");
            v["data"]["detected_at"] = json!("yesterday");
        },
        "data.detected_at",
    );
    check(&|v| v["data"]["application"] = json!({}), "application");
    let err = Event::from_body(b"{not json").err();
    assert!(err.is_some());
}

// ---------------------------------------------------------------------------------------
// Snapshot encoding
// ---------------------------------------------------------------------------------------

/// A realistic record: 24-character Kombo ids everywhere, numeric remote ids (Greenhouse
/// style), a stage, job, candidate and `offers`/`interviews` of the given sizes.
fn typical(offers: usize, interviews: usize) -> Application {
    let k = |p: &str| format!("{p}{}", "8Ldp2wYzcKk7ZmPP5QqjbGXM")[..24].to_owned();
    let mut a = app().outcome(Some("PENDING"));
    for i in 0..offers {
        a = a.offer(&k(&format!("of{i}")), Some("SENT"));
    }
    for i in 0..interviews {
        a = a.interview(&k(&format!("iv{i}")), 5 + i as i64, None);
    }
    let mut a = a.a();
    a.id = k("ap");
    a.remote_id = Some("123456789".into());
    a.remote_url = Some("https://app.greenhouse.io/people/123456789?application_id=987654".into());
    a.current_stage_id = Some(k("st"));
    a.current_stage = Some(Stage {
        id: k("st"),
        remote_id: Some("4412345".into()),
        name: Some("Technical Interview".into()),
        index: Some(3),
    });
    a.job_id = Some(k("jb"));
    a.job = Some(Job {
        id: k("jb"),
        remote_id: Some("4012345".into()),
        name: Some("Senior Backend Engineer".into()),
    });
    a.candidate_id = Some(k("cd"));
    a.candidate = full().a().candidate;
    if let Some(c) = a.candidate.as_mut() {
        c.id = k("cd");
    }
    for o in a.offers.iter_mut().flatten() {
        o.remote_id = Some("5012345".into());
    }
    for iv in a.interviews.iter_mut().flatten() {
        iv.remote_id = Some("6012345".into());
        iv.title = Some("Onsite: system design".into());
    }
    a
}

#[test]
fn snapshot_round_trip_and_size() {
    for (offers, interviews, limit) in [(0, 0, 250), (0, 1, 300), (1, 2, 400)] {
        let out = diff(None, &typical(offers, interviews), &ctx(FirstSight::Emit));
        let bytes = out.snapshot.encode();
        assert_eq!(bytes[0], SNAPSHOT_VERSION);
        assert_eq!(Snapshot::decode(&bytes), Ok(out.snapshot.clone()));
        println!(
            "snapshot with {offers} offers, {interviews} interviews: {} bytes",
            bytes.len()
        );
        assert!(bytes.len() < limit, "{} bytes", bytes.len());
    }
    let out = diff(None, &typical(1, 1), &ctx(FirstSight::Emit));

    // Every field shape: unknown values, nulls, negative index, canceled, deleted.
    let mut s = out.snapshot;
    s.sequence = u64::MAX;
    s.deleted_at = Some(t(-1_000_000));
    s.outcome = Some(Outcome::Unknown("WITHDRAWN".into()));
    s.known_outcome = KnownOutcome::Declined;
    if let Some(stage) = s.stage.as_mut() {
        stage.index = Some(i64::MIN);
        stage.name = None;
    }
    s.offers.push(crate::event::OfferRef {
        id: "o2".into(),
        remote_id: None,
        status: Some(OfferStatus::Unknown("NEGOTIATING".into())),
    });
    s.offers.push(crate::event::OfferRef {
        id: "o3".into(),
        remote_id: Some(String::new()),
        status: None,
    });
    s.interviews[0].canceled = true;
    s.interviews[0].ending_at = None;
    s.job = None;
    assert_eq!(Snapshot::decode(&s.encode()), Ok(s.clone()));
    let empty = Snapshot::default();
    assert_eq!(Snapshot::decode(&empty.encode()), Ok(empty));
}

#[test]
fn snapshot_decode_rejects_bad_input() {
    let err = Snapshot::decode(&[7, 0, 0]).err();
    assert_eq!(err, Some(SnapshotError::UnsupportedVersion(7)));
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("version 7"), "{text}");
    assert_eq!(Snapshot::decode(&[]), Err(SnapshotError::Empty));

    let bytes = diff(None, &typical(1, 2), &ctx(FirstSight::Emit))
        .snapshot
        .encode();
    // Every strict prefix is an error, never a panic.
    for n in 1..bytes.len() {
        assert!(Snapshot::decode(&bytes[..n]).is_err(), "prefix {n}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Snapshot::decode(&longer),
        Err(SnapshotError::TrailingBytes(1))
    );
    // A huge count does not allocate, it fails.
    let huge = [1u8, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(Snapshot::decode(&huge).is_err());
}
