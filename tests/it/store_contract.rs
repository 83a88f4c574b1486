//! The store's contract, written once against the seam ([`Store`]) and run on every
//! backend: what sync, delivery, the admin API and the CLI rely on, whichever store is
//! behind it. A backend joins by adding one line to the `contract!` list at the bottom.
//!
//! Each check gets a fresh, empty store. Times are explicit (no clock is read), so the
//! checks are exact.

use std::time::Duration;

use chrono::TimeZone as _;
use hirehook::ats::Timestamp;
use hirehook::diff::Snapshot;
use hirehook::event::EventType;
use hirehook::store::{
    ATTEMPTS_KEPT, AttemptRecord, AttemptResult, DeliveryState, DueDelivery, EraseReport,
    ErasureSubject, EventFilter, NewEvent, PageCommit, QueueSummary, RetentionPolicy,
    SnapshotWrite, Store, StoreError, SweepCursor, SweepReport, SyncState,
};

/// A store under test, and what it takes to open it again (as after a crash).
pub struct Fixture {
    store: Option<Store>,
    place: Place,
}

enum Place {
    Sled(tempfile::TempDir),
    /// A database of its own; operator-style handles (no lease needed to commit: fencing
    /// has its own tests beside the backend).
    Postgres(String),
}

impl Fixture {
    pub async fn sled() -> Option<Fixture> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_sled(&dir.path().join("store"), 8 << 20).expect("sled opens");
        Some(Fixture {
            store: Some(store),
            place: Place::Sled(dir),
        })
    }

    /// `None` (after saying why) when no PostgreSQL can be had here.
    pub async fn postgres() -> Option<Fixture> {
        let url = hirehook::store::postgres::test_database().await?;
        let store = Self::connect(&url).await;
        Some(Fixture {
            store: Some(store),
            place: Place::Postgres(url),
        })
    }

    async fn connect(url: &str) -> Store {
        let config = hirehook::config::StoreConfig {
            backend: hirehook::config::StoreBackend::Postgres,
            url: Some(url.to_owned()),
            pool_size: 4,
            ..Default::default()
        };
        Store::open(&config)
            .await
            .expect("PostgreSQL opens")
            .unfenced()
    }

    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("open")
    }

    /// Closes the store without flushing anything more and opens it again.
    pub async fn reopen(&mut self) {
        drop(self.store.take());
        let store = match &self.place {
            Place::Sled(dir) => {
                Store::open_sled(&dir.path().join("store"), 8 << 20).expect("sled opens again")
            }
            Place::Postgres(url) => Self::connect(url).await,
        };
        self.store = Some(store);
    }
}

fn at(secs: i64) -> Timestamp {
    chrono::Utc
        .timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .expect("valid")
}

fn event(id: &str, app: &str, seq: u64, t: EventType, subs: &[&str]) -> NewEvent {
    NewEvent {
        id: id.into(),
        event_type: t,
        application_id: app.into(),
        sequence: seq,
        detected_at: at(seq as i64),
        body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        subscribers: subs.iter().map(|s| s.to_string()).collect(),
        hold: false,
    }
}

fn held(id: &str, app: &str, seq: u64, subs: &[&str]) -> NewEvent {
    NewEvent {
        hold: true,
        ..event(id, app, seq, EventType::ApplicationDeleted, subs)
    }
}

fn snap(app: &str, bytes: &[u8], is_new: bool) -> SnapshotWrite {
    SnapshotWrite {
        application_id: app.into(),
        bytes: bytes.to_vec(),
        is_new,
        previous_deleted_at: None,
    }
}

fn events_only(events: Vec<NewEvent>) -> PageCommit {
    PageCommit {
        snapshots: vec![],
        events,
    }
}

fn attempt(n: u32, t: i64, status: u16) -> AttemptRecord {
    AttemptRecord {
        attempt: n,
        at: at(t),
        status: Some(status),
        latency_ms: 1,
        error: None,
        response_prefix: None,
    }
}

const HOLD: Duration = Duration::from_secs(60);

/// Claims everything of `crm` due at `now` and gives it straight back, returning the log
/// sequences that were claimable.
async fn claimable(store: &Store, now: i64) -> Vec<u64> {
    let claimed = claim(store, now).await;
    for d in &claimed {
        store.release_claim(d).await.expect("give back");
    }
    claimed.iter().map(|d| d.log_seq).collect()
}

async fn claim(store: &Store, now: i64) -> Vec<DueDelivery> {
    store
        .claim_due("crm", at(now), 100, HOLD)
        .await
        .expect("claim")
}

/// Claims the delivery at `seq` (giving back anything else claimed with it).
async fn claim_one(store: &Store, now: i64, seq: u64) -> DueDelivery {
    let mut found = None;
    for d in claim(store, now).await {
        if d.log_seq == seq {
            found = Some(d);
        } else {
            store.release_claim(&d).await.expect("give back");
        }
    }
    found.unwrap_or_else(|| panic!("{seq} is claimable at {now}"))
}

/// Two applications to `crm`: `a` has events 1 and 3, `b` has event 2.
async fn two_applications(store: &Store) {
    store
        .commit_page(
            "gh:1",
            events_only(vec![
                event("e1", "a", 1, EventType::StageChanged, &["crm"]),
                event("e2", "b", 1, EventType::StageChanged, &["crm"]),
                event("e3", "a", 2, EventType::Rejected, &["crm"]),
            ]),
        )
        .await
        .expect("commit");
    store.flush().await.expect("flush");
}

const DAY: i64 = 86_400;

/// `[retention]` of 30 days for events and 14 for deleted applications.
fn policy() -> RetentionPolicy {
    RetentionPolicy {
        events: Some(Duration::from_secs(30 * DAY as u64)),
        deleted_applications: Some(Duration::from_secs(14 * DAY as u64)),
    }
}

/// An event detected at `t`.
fn event_at(id: &str, app: &str, seq: u64, t: i64, subs: &[&str]) -> NewEvent {
    NewEvent {
        detected_at: at(t),
        ..event(id, app, seq, EventType::StageChanged, subs)
    }
}

/// A snapshot in the diff's encoding: `sequence`, deleted upstream at `deleted` (or live).
fn real_snap(app: &str, sequence: u64, deleted: Option<i64>, is_new: bool) -> SnapshotWrite {
    let snapshot = Snapshot {
        sequence,
        deleted_at: deleted.map(at),
        remote_id: Some(format!("remote-{app}")),
        ..Snapshot::default()
    };
    SnapshotWrite {
        application_id: app.into(),
        bytes: snapshot.encode(),
        is_new,
        previous_deleted_at: None,
    }
}

/// Sweeps batch after batch (of `limit`) until nothing is left; the total.
async fn sweep_all(store: &Store, policy: &RetentionPolicy, now: i64, limit: usize) -> SweepReport {
    let mut cursor = SweepCursor::default();
    let mut total = SweepReport::default();
    for _ in 0..1000 {
        let report = store
            .sweep(policy, at(now), limit, &mut cursor)
            .await
            .expect("sweep");
        total.add(&report);
        if !report.more {
            return total;
        }
    }
    panic!("the sweep never finished");
}

/// Claims `subscriber`'s delivery of `seq` at `now` and records an attempt at `t` with
/// `result`.
async fn settle(
    store: &Store,
    subscriber: &str,
    seq: u64,
    now: i64,
    t: i64,
    result: AttemptResult,
) {
    let claimed = store
        .claim_due(subscriber, at(now), 100, HOLD)
        .await
        .expect("claim");
    let mut found = None;
    for d in claimed {
        if d.log_seq == seq {
            found = Some(d);
        } else {
            store.release_claim(&d).await.expect("give back");
        }
    }
    let d = found.unwrap_or_else(|| panic!("{subscriber}: {seq} is claimable at {now}"));
    let status = if result == AttemptResult::Delivered {
        200
    } else {
        500
    };
    store
        .record_attempt(&d, &attempt(1, t, status), result)
        .await
        .expect("record");
}

async fn log_ids(store: &Store) -> Vec<String> {
    store
        .events(&EventFilter::default())
        .await
        .expect("log")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// A body as the diff writes it, naming candidate `cand` of application `app`.
fn person_body(id: &str, app: &str, cand: &str, first: &str, last: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "stage_changed",
        "timestamp": "2023-11-14T22:13:21.000Z",
        "data": {
            "event_id": id,
            "integration_id": "gh:1",
            "application": {
                "id": app,
                "candidate": {"id": cand, "first_name": first, "last_name": last},
                "current_stage": {"id": "stage_2", "name": "Onsite"}
            },
            "previous_stage": {"id": "stage_1", "name": "Screen"}
        }
    }))
    .expect("json")
}

/// An event of `app` whose body names candidate `cand`.
fn person_event(id: &str, app: &str, seq: u64, cand: &str, hold: bool) -> NewEvent {
    NewEvent {
        body: person_body(
            id,
            app,
            cand,
            &format!("First{cand}"),
            &format!("Last{cand}"),
        ),
        hold,
        ..event(id, app, seq, EventType::StageChanged, &["crm"])
    }
}

/// A snapshot of `app` (sequence `sequence`) whose candidate is `cand`, names included.
fn person_snap(app: &str, sequence: u64, cand: &str) -> SnapshotWrite {
    let snapshot = Snapshot {
        sequence,
        remote_id: Some(format!("remote-{app}")),
        candidate: Some(hirehook::event::CandidateRef {
            id: cand.into(),
            first_name: Some(format!("First{cand}")),
            last_name: Some(format!("Last{cand}")),
        }),
        ..Snapshot::default()
    };
    snap(app, &snapshot.encode(), true)
}

/// In `gh:1`: applications `a` and `b` of candidate `c1`, `x` of `c2`; events `e1` (a),
/// `e2` (x), `e3` (b) logged for `crm`, `e4` (a) held; `e1` failed once with an error and
/// a response excerpt. In `gh:2`: application `a` of `c1` with event `f1`.
async fn people(store: &Store) {
    store
        .commit_page(
            "gh:1",
            PageCommit {
                snapshots: vec![
                    person_snap("a", 2, "c1"),
                    person_snap("b", 1, "c1"),
                    person_snap("x", 1, "c2"),
                ],
                events: vec![
                    person_event("e1", "a", 1, "c1", false),
                    person_event("e2", "x", 1, "c2", false),
                    person_event("e3", "b", 1, "c1", false),
                    person_event("e4", "a", 2, "c1", true),
                ],
            },
        )
        .await
        .expect("commit");
    store
        .commit_page(
            "gh:2",
            PageCommit {
                snapshots: vec![person_snap("a", 1, "c1")],
                events: vec![person_event("f1", "a", 1, "c1", false)],
            },
        )
        .await
        .expect("commit");
    store.flush().await.expect("flush");
    let d = claim_one(store, 100, 1).await;
    store
        .record_attempt(
            &d,
            &AttemptRecord {
                error: Some("echo of Firstc1".into()),
                response_prefix: Some("bad request: Lastc1".into()),
                ..attempt(1, 100, 400)
            },
            AttemptResult::Retry { due_at: at(200) },
        )
        .await
        .expect("record");
}

/// The candidate's names in a stored snapshot.
async fn snapshot_names(
    store: &Store,
    integration: &str,
    app: &str,
) -> (Option<String>, Option<String>, String, u64) {
    let bytes = store.snapshots(integration, &[app]).await.expect("read")[0]
        .clone()
        .expect("stored");
    let s = Snapshot::decode(&bytes).expect("decodes");
    let c = s.candidate.expect("candidate kept");
    (c.first_name, c.last_name, c.id, s.sequence)
}

/// Whether the stored body of event `id` (logged or held) still has names.
async fn body_has_names(store: &Store, id: &str) -> bool {
    let record = store.event_by_id(id).await.expect("read").expect("stored");
    let body: serde_json::Value = serde_json::from_slice(&record.body).expect("json");
    let c = &body["data"]["application"]["candidate"];
    assert!(c["id"].is_string(), "the candidate id stays: {body}");
    assert_eq!(
        body["data"]["application"]["current_stage"]["name"],
        "Onsite"
    );
    !c["first_name"].is_null() || !c["last_name"].is_null()
}

pub mod checks {
    use super::*;

    pub async fn a_page_commits_snapshots_events_and_outbox_together(fx: &mut Fixture) {
        let store = fx.store();
        let written = store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![snap("a", b"one", true), snap("b", b"two", true)],
                    events: vec![
                        event("evt_1", "a", 1, EventType::StageChanged, &["crm", "slack"]),
                        event("evt_2", "b", 1, EventType::Rejected, &["crm"]),
                    ],
                },
            )
            .await
            .expect("commit");
        store.flush().await.expect("flush");
        assert_eq!(
            written.iter().map(|r| r.log_seq).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(written[0].integration_id, "gh:1");
        assert_eq!(
            store
                .snapshots("gh:1", &["a", "missing", "b"])
                .await
                .expect("snapshots"),
            [Some(b"one".to_vec()), None, Some(b"two".to_vec())]
        );
        assert_eq!(
            store.snapshots("lever:2", &["a"]).await.expect("snapshots"),
            [None],
            "snapshots belong to their integration"
        );
        assert!(store.has_snapshots("gh:1").await.expect("has"));
        assert!(!store.has_snapshots("lever:2").await.expect("has"));
        assert_eq!(store.snapshot_count("gh:1").await.expect("count"), 2);
        let state = store.sync_state("gh:1").await.expect("state");
        assert_eq!(state.applications, 2, "new snapshots are counted");
        let crm = store.outbox("crm").await.expect("outbox");
        assert_eq!(crm.len(), 2);
        assert_eq!(
            (crm[0].0, crm[0].1.state, crm[0].1.attempts),
            (1, DeliveryState::Pending, 0)
        );
        assert_eq!(crm[0].1.due_at, at(1), "due when detected");
        let slack = store.outbox("slack").await.expect("outbox");
        assert_eq!(slack.len(), 1);
        assert_eq!(slack[0].1.event_id, "evt_1");
        let found = store
            .event_by_id("evt_2")
            .await
            .expect("read")
            .expect("logged");
        assert_eq!(found.event_type, EventType::Rejected);
        assert_eq!(found.body, b"{\"id\":\"evt_2\"}");
        assert_eq!(found.detected_at, at(1));
        assert_eq!(found.subscribers, ["crm"]);
        assert!(store.event_by_id("nope").await.expect("read").is_none());
        // A snapshot rewritten: not new, the count stays.
        store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![snap("a", b"three", false)],
                    events: vec![],
                },
            )
            .await
            .expect("commit");
        assert_eq!(
            store.snapshots("gh:1", &["a"]).await.expect("snapshots"),
            [Some(b"three".to_vec())]
        );
        assert_eq!(
            store.sync_state("gh:1").await.expect("state").applications,
            2
        );
    }

    pub async fn a_rederived_event_keeps_its_place_and_is_not_logged_twice(fx: &mut Fixture) {
        let store = fx.store();
        let page = || {
            events_only(vec![
                event("evt_1", "a", 1, EventType::StageChanged, &["crm"]),
                event("evt_2", "a", 2, EventType::Rejected, &["crm"]),
            ])
        };
        assert_eq!(store.commit_page("gh:1", page()).await.expect("1").len(), 2);
        let again = store.commit_page("gh:1", page()).await.expect("2");
        assert!(again.is_empty(), "{again:?}");
        let mixed = store
            .commit_page(
                "gh:1",
                events_only(vec![
                    event("evt_2", "a", 2, EventType::Rejected, &["crm"]),
                    event("evt_3", "a", 3, EventType::OutcomeHired, &["crm"]),
                ]),
            )
            .await
            .expect("3");
        assert_eq!(
            mixed
                .iter()
                .map(|r| (r.id.as_str(), r.log_seq))
                .collect::<Vec<_>>(),
            [("evt_3", 3)],
            "the known id is skipped; the new one takes the next sequence"
        );
        assert_eq!(
            store
                .events(&EventFilter::default())
                .await
                .expect("log")
                .len(),
            3
        );
        assert_eq!(store.outbox("crm").await.expect("outbox").len(), 3);
    }

    pub async fn log_sequences_have_no_gaps_and_survive_a_reopen(fx: &mut Fixture) {
        fx.store()
            .commit_page(
                "gh:1",
                events_only(vec![event("e1", "a", 1, EventType::StageChanged, &[])]),
            )
            .await
            .expect("commit");
        let mut h = held("e2", "b", 1, &[]);
        h.hold = true;
        fx.store()
            .commit_page("gh:1", events_only(vec![h]))
            .await
            .expect("commit held");
        fx.store().flush().await.expect("flush");
        fx.reopen().await;
        let written = fx
            .store()
            .commit_page(
                "lever:2",
                events_only(vec![event("e3", "a", 2, EventType::Rejected, &[])]),
            )
            .await
            .expect("commit after reopen");
        assert_eq!(
            written[0].log_seq, 3,
            "a held event keeps a sequence; none is reused"
        );
    }

    pub async fn filters_select_exactly(fx: &mut Fixture) {
        let store = fx.store();
        store
            .commit_page(
                "gh:1",
                events_only(vec![
                    event("e1", "a", 1, EventType::StageChanged, &[]),
                    event("e2", "b", 2, EventType::Rejected, &[]),
                    event("e3", "a", 3, EventType::OutcomeHired, &[]),
                ]),
            )
            .await
            .expect("commit");
        store
            .commit_page(
                "lever:2",
                events_only(vec![event("e4", "a", 4, EventType::StageChanged, &[])]),
            )
            .await
            .expect("commit");
        let cases: Vec<(EventFilter, Vec<&str>)> = vec![
            (EventFilter::default(), vec!["e1", "e2", "e3", "e4"]),
            (
                EventFilter {
                    types: vec![EventType::StageChanged],
                    ..Default::default()
                },
                vec!["e1", "e4"],
            ),
            (
                EventFilter {
                    integration_id: Some("gh:1".into()),
                    ..Default::default()
                },
                vec!["e1", "e2", "e3"],
            ),
            (
                EventFilter {
                    application_id: Some("a".into()),
                    ..Default::default()
                },
                vec!["e1", "e3", "e4"],
            ),
            (
                EventFilter {
                    since: Some(at(2)),
                    until: Some(at(4)),
                    ..Default::default()
                },
                vec!["e2", "e3"],
            ),
            (
                EventFilter {
                    after_log_seq: Some(2),
                    ..Default::default()
                },
                vec!["e3", "e4"],
            ),
            (
                EventFilter {
                    limit: Some(2),
                    ..Default::default()
                },
                vec!["e1", "e2"],
            ),
            (
                EventFilter {
                    application_id: Some("a".into()),
                    after_log_seq: Some(1),
                    limit: Some(1),
                    ..Default::default()
                },
                vec!["e3"],
            ),
        ];
        for (filter, want) in cases {
            let got: Vec<String> = store
                .events(&filter)
                .await
                .expect("events")
                .into_iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(got, want, "{filter:?}");
        }
    }

    pub async fn held_events_wait_for_an_operator(fx: &mut Fixture) {
        let store = fx.store();
        store
            .commit_page(
                "gh:1",
                events_only(vec![
                    held("e1", "a", 1, &["crm"]),
                    event("e2", "b", 1, EventType::StageChanged, &["crm"]),
                    held("e3", "c", 1, &["crm"]),
                ]),
            )
            .await
            .expect("commit");
        store.flush().await.expect("flush");
        assert_eq!(
            store
                .events(&EventFilter::default())
                .await
                .expect("log")
                .len(),
            1
        );
        assert_eq!(store.outbox("crm").await.expect("outbox").len(), 1);
        let waiting = store.held_events("gh:1").await.expect("held");
        assert_eq!(
            waiting.iter().map(|r| r.log_seq).collect::<Vec<_>>(),
            [1, 3]
        );
        assert!(store.held_events("lever:2").await.expect("held").is_empty());
        assert!(
            store.event_by_id("e1").await.expect("read").is_some(),
            "held events are findable"
        );
        let released = store
            .release_held("gh:1", Some(&[3]))
            .await
            .expect("release");
        assert_eq!(
            released.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["e3"]
        );
        let released = store.release_held("gh:1", None).await.expect("release all");
        assert_eq!(released.len(), 1);
        assert_eq!(
            released[0].log_seq, 1,
            "a released event keeps its sequence"
        );
        assert!(store.held_events("gh:1").await.expect("held").is_empty());
        let log: Vec<u64> = store
            .events(&EventFilter::default())
            .await
            .expect("log")
            .iter()
            .map(|r| r.log_seq)
            .collect();
        assert_eq!(log, [1, 2, 3]);
        assert_eq!(store.outbox("crm").await.expect("outbox").len(), 3);
    }

    pub async fn dropped_held_events_do_not_come_back(fx: &mut Fixture) {
        let store = fx.store();
        let page = || events_only(vec![held("e1", "a", 1, &["crm"])]);
        let seqs: Vec<u64> = store
            .commit_page("gh:1", page())
            .await
            .expect("commit")
            .iter()
            .map(|r| r.log_seq)
            .collect();
        assert_eq!(store.drop_held("gh:1", &seqs).await.expect("drop"), 1);
        assert_eq!(
            store.drop_held("gh:1", &seqs).await.expect("drop again"),
            0,
            "no longer held"
        );
        assert!(
            store
                .commit_page("gh:1", page())
                .await
                .expect("again")
                .is_empty()
        );
        assert!(store.held_events("gh:1").await.expect("held").is_empty());
        assert!(store.outbox("crm").await.expect("outbox").is_empty());
    }

    pub async fn sync_state_round_trips(fx: &mut Fixture) {
        let store = fx.store();
        assert_eq!(
            store.sync_state("gh:1").await.expect("state"),
            SyncState::default()
        );
        let state = SyncState {
            watermark: Some(at(10)),
            last_full_resync: Some(at(5)),
            baseline_done: true,
            applications: 3,
            last_success_at: Some(at(11)),
            last_error: Some("HTTP 500 from Kombo".into()),
            last_error_summary: Some("HTTP 500".into()),
            guard_decided_through: 7,
            baseline_unread: vec!["x".into()],
        };
        store.put_sync_state("gh:1", &state).await.expect("put");
        store.flush().await.expect("flush");
        fx.reopen().await;
        assert_eq!(fx.store().sync_state("gh:1").await.expect("state"), state);
        assert_eq!(
            fx.store().sync_state("lever:2").await.expect("state"),
            SyncState::default()
        );
    }

    pub async fn only_the_oldest_pending_delivery_of_an_application_is_claimable(fx: &mut Fixture) {
        let store = fx.store();
        two_applications(store).await;
        assert_eq!(claimable(store, 0).await, Vec::<u64>::new(), "not due yet");
        assert_eq!(claimable(store, 100).await, [1, 2]);
        let due = claim(store, 100).await;
        assert_eq!(due[0].subscriber, "crm");
        assert_eq!(due[0].body, b"{\"id\":\"e1\"}");
        assert_eq!(due[0].detected_at, at(1));
        assert_eq!(due[0].entry.event_id, "e1");
        assert!(
            claim(store, 100).await.is_empty(),
            "claimed deliveries are not handed out twice"
        );
        assert!(
            store
                .claim_due("slack", at(100), 10, HOLD)
                .await
                .expect("claim")
                .is_empty()
        );
    }

    pub async fn claims_respect_the_limit_and_the_due_order(fx: &mut Fixture) {
        let store = fx.store();
        let events = (1..=5)
            .map(|i| {
                event(
                    &format!("e{i}"),
                    &format!("app{i}"),
                    i,
                    EventType::StageChanged,
                    &["crm"],
                )
            })
            .collect();
        store
            .commit_page("gh:1", events_only(events))
            .await
            .expect("commit");
        store.flush().await.expect("flush");
        let first = store
            .claim_due("crm", at(3), 10, HOLD)
            .await
            .expect("claim");
        assert_eq!(
            first.iter().map(|d| d.log_seq).collect::<Vec<_>>(),
            [1, 2, 3],
            "only what is due"
        );
        let next = store
            .claim_due("crm", at(10), 1, HOLD)
            .await
            .expect("claim");
        assert_eq!(next.iter().map(|d| d.log_seq).collect::<Vec<_>>(), [4]);
    }

    pub async fn an_abandoned_claim_comes_back_when_it_expires(fx: &mut Fixture) {
        let store = fx.store();
        two_applications(store).await;
        let claimed = store
            .claim_due("crm", at(10), 10, Duration::from_secs(30))
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 2);
        assert_eq!(
            store.next_due_at("crm").await.expect("next"),
            Some(at(40)),
            "the claims expire then"
        );
        assert!(claim(store, 39).await.is_empty(), "still claimed");
        let again = claim(store, 40).await;
        assert_eq!(
            again.iter().map(|d| d.log_seq).collect::<Vec<_>>(),
            [1, 2],
            "handed out again"
        );
    }

    pub async fn claims_survive_a_crash_as_pending_deliveries(fx: &mut Fixture) {
        two_applications(fx.store()).await;
        let claimed = claim(fx.store(), 10).await;
        assert_eq!(claimed.len(), 2);
        // The claimant dies: nothing was recorded.
        fx.reopen().await;
        let after = claim(fx.store(), 10 + HOLD.as_secs() as i64).await;
        assert_eq!(
            after.iter().map(|d| d.log_seq).collect::<Vec<_>>(),
            [1, 2],
            "claimable again at the latest when the claims expire, in the same order"
        );
        assert_eq!(after[0].entry.event_id, "e1");
    }

    pub async fn a_failed_attempt_blocks_its_application_only(fx: &mut Fixture) {
        let store = fx.store();
        two_applications(store).await;
        let d = claim_one(store, 10, 1).await;
        store
            .record_attempt(
                &d,
                &attempt(1, 10, 500),
                AttemptResult::Retry { due_at: at(60) },
            )
            .await
            .expect("record");
        assert_eq!(claimable(store, 20).await, [2], "b flows, a waits");
        assert_eq!(store.next_due_at("crm").await.expect("next"), Some(at(1)));
        let d = claim_one(store, 60, 1).await;
        assert_eq!(d.entry.attempts, 1);
        store
            .record_attempt(&d, &attempt(2, 61, 200), AttemptResult::Delivered)
            .await
            .expect("record");
        let after: Vec<u64> = claim(store, 61).await.iter().map(|d| d.log_seq).collect();
        assert_eq!(
            after,
            [2, 3],
            "a's next event is due as soon as a's head is done"
        );
        let entries = store.outbox("crm").await.expect("outbox");
        assert_eq!(entries[0].1.state, DeliveryState::Delivered);
        assert_eq!(entries[0].1.attempts, 2);
        assert_eq!(entries[0].1.last_error, None, "cleared by the success");
        let attempts = store.attempts("crm", 1).await.expect("attempts");
        assert_eq!(
            attempts
                .iter()
                .map(|a| (a.attempt, a.status))
                .collect::<Vec<_>>(),
            [(1, Some(500)), (2, Some(200))]
        );
        let one = store
            .delivery("crm", 1)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(one.state, DeliveryState::Delivered);
        assert!(store.delivery("crm", 99).await.expect("read").is_none());
    }

    pub async fn an_entry_keeps_its_latest_attempts(fx: &mut Fixture) {
        let store = fx.store();
        two_applications(store).await;
        let total = ATTEMPTS_KEPT as u32 + 3;
        for n in 1..=total {
            let t = 10 + i64::from(n);
            let d = claim_one(store, t, 1).await;
            store
                .record_attempt(
                    &d,
                    &attempt(n, t, 500),
                    AttemptResult::Retry { due_at: at(t) },
                )
                .await
                .expect("record");
        }
        let attempts = store.attempts("crm", 1).await.expect("attempts");
        assert_eq!(attempts.len(), ATTEMPTS_KEPT);
        assert_eq!(attempts.first().map(|a| a.attempt), Some(4));
        assert_eq!(attempts.last().map(|a| a.attempt), Some(total));
        let entry = &store.outbox("crm").await.expect("outbox")[0].1;
        assert_eq!(entry.attempts, total);
        assert_eq!(entry.last_error.as_deref(), Some("HTTP 500"));
    }

    pub async fn a_dead_letter_unblocks_its_application_and_can_be_retried(fx: &mut Fixture) {
        let store = fx.store();
        two_applications(store).await;
        let d = claim_one(store, 10, 1).await;
        let mut failed = attempt(1, 10, 0);
        failed.status = None;
        failed.error = Some("connection refused".into());
        store
            .record_attempt(&d, &failed, AttemptResult::Dead)
            .await
            .expect("record");
        assert_eq!(claimable(store, 10).await, [2, 3]);
        assert_eq!(
            store.queue_summary("crm").await.expect("summary"),
            QueueSummary {
                pending: 2,
                dead: 1,
                oldest_pending: Some(at(1)),
            }
        );
        let dead = store
            .deliveries(None, Some(DeliveryState::Dead), None)
            .await
            .expect("dead");
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].0.as_str(), dead[0].1), ("crm", 1));
        assert_eq!(dead[0].2.last_error.as_deref(), Some("connection refused"));
        let backlog = store.subscriber_backlog("crm").await.expect("backlog");
        assert_eq!(
            (backlog.pending, backlog.delivered, backlog.dead),
            (2, 0, 1)
        );
        assert_eq!(
            backlog.last_error.map(|(_, e)| e).as_deref(),
            Some("connection refused")
        );
        assert_eq!(
            store
                .retry_dead(Some("crm"), Some("nope"), at(20))
                .await
                .expect("retry"),
            0
        );
        assert_eq!(
            store
                .retry_dead(Some("crm"), Some("e1"), at(20))
                .await
                .expect("retry"),
            1
        );
        assert_eq!(
            claimable(store, 20).await,
            [2, 1],
            "the re-queued e1 is a's head again, due when re-queued: e3 waits behind it"
        );
        let entry = store
            .delivery("crm", 1)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(
            (entry.state, entry.attempts, entry.round_start, entry.due_at),
            (DeliveryState::Pending, 1, 1, at(20))
        );
        let summary = store.queue_summary("crm").await.expect("summary");
        assert_eq!((summary.pending, summary.dead), (3, 0));
    }

    pub async fn a_410_disables_until_enabled_and_keeps_the_delivery(fx: &mut Fixture) {
        let store = fx.store();
        two_applications(store).await;
        let d = claim_one(store, 10, 1).await;
        store
            .record_attempt(
                &d,
                &attempt(1, 10, 410),
                AttemptResult::Disable {
                    reason: "410 Gone".into(),
                },
            )
            .await
            .expect("record");
        assert_eq!(
            store
                .disabled_reason("crm")
                .await
                .expect("reason")
                .as_deref(),
            Some("410 Gone")
        );
        assert_eq!(store.disabled_reason("slack").await.expect("reason"), None);
        assert_eq!(
            store
                .delivery("crm", 1)
                .await
                .expect("read")
                .map(|e| e.state),
            Some(DeliveryState::Pending)
        );
        assert_eq!(
            claimable(store, 10).await,
            Vec::<u64>::new(),
            "a disabled subscriber is handed nothing"
        );
        assert!(store.enable_subscriber("crm").await.expect("enable"));
        assert!(!store.enable_subscriber("crm").await.expect("enable again"));
        assert_eq!(store.disabled_reason("crm").await.expect("reason"), None);
        assert_eq!(
            claimable(store, 10).await,
            [1, 2],
            "enabled: still pending, and the 410's claim ended"
        );
    }

    /// The claim itself refuses a disabled subscriber, whoever recorded the 410: a
    /// deliverer that checked the subscriber's state just before the 410 landed (on
    /// another replica) still gets nothing from its claim; other subscribers are not
    /// affected; once enabled, the backlog is claimable as it was.
    pub async fn a_disabled_subscriber_is_handed_nothing_until_enabled(fx: &mut Fixture) {
        let store = fx.store();
        store
            .commit_page(
                "gh:1",
                events_only(vec![
                    event("e1", "a", 1, EventType::StageChanged, &["crm", "slack"]),
                    event("e2", "b", 1, EventType::StageChanged, &["crm", "slack"]),
                    event("e3", "c", 1, EventType::StageChanged, &["crm", "slack"]),
                ]),
            )
            .await
            .expect("commit");
        store.flush().await.expect("flush");
        // The deliverer's view before the 410: enabled, three due.
        assert_eq!(store.disabled_reason("crm").await.expect("reason"), None);
        let first = store
            .claim_due("crm", at(10), 1, HOLD)
            .await
            .expect("claim");
        assert_eq!(first.len(), 1);
        // The 410 on that delivery lands (another worker, another replica).
        store
            .record_attempt(
                &first[0],
                &attempt(1, 10, 410),
                AttemptResult::Disable {
                    reason: "410 Gone".into(),
                },
            )
            .await
            .expect("record");
        // Every claim from now on hands out nothing to crm, however much is due and
        // whenever asked, including the delivery whose claim the 410 ended.
        for now in [10, 11, 1_000_000] {
            let got = store
                .claim_due("crm", at(now), 100, HOLD)
                .await
                .expect("claim");
            assert!(got.is_empty(), "at {now}: {got:?}");
        }
        assert_eq!(
            store.queue_summary("crm").await.expect("summary").pending,
            3,
            "nothing was lost: all three wait"
        );
        // Another subscriber is not affected.
        let slack = store
            .claim_due("slack", at(10), 100, HOLD)
            .await
            .expect("claim");
        assert_eq!(
            slack.iter().map(|d| d.log_seq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        // Enabled: claimable again, all three, in order.
        assert!(store.enable_subscriber("crm").await.expect("enable"));
        let again = store
            .claim_due("crm", at(10), 100, HOLD)
            .await
            .expect("claim");
        assert_eq!(
            again.iter().map(|d| d.log_seq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(again[0].entry.attempts, 1, "the 410 was recorded");
    }

    pub async fn released_events_queue_behind_pending_ones(fx: &mut Fixture) {
        let store = fx.store();
        two_applications(store).await;
        store
            .commit_page("gh:1", events_only(vec![held("e4", "b", 2, &["crm"])]))
            .await
            .expect("commit");
        store.release_held("gh:1", None).await.expect("release");
        store.flush().await.expect("flush");
        assert_eq!(
            claimable(store, 100).await,
            [1, 2],
            "b's second event waits for its first"
        );
        let d = claim_one(store, 100, 2).await;
        store
            .record_attempt(&d, &attempt(1, 100, 204), AttemptResult::Delivered)
            .await
            .expect("record");
        assert!(claimable(store, 100).await.contains(&4));
    }

    pub async fn pending_deliveries_survive_a_reopen(fx: &mut Fixture) {
        two_applications(fx.store()).await;
        let d = claim_one(fx.store(), 10, 1).await;
        fx.store()
            .record_attempt(
                &d,
                &attempt(1, 10, 500),
                AttemptResult::Retry { due_at: at(60) },
            )
            .await
            .expect("record");
        let d = claim_one(fx.store(), 10, 2).await;
        fx.store()
            .record_attempt(&d, &attempt(1, 10, 200), AttemptResult::Delivered)
            .await
            .expect("record");
        fx.store().flush().await.expect("flush");
        fx.reopen().await;
        let store = fx.store();
        assert_eq!(
            claimable(store, 20).await,
            Vec::<u64>::new(),
            "a waits for its retry; b is done"
        );
        assert_eq!(claimable(store, 60).await, [1]);
        let summary = store.queue_summary("crm").await.expect("summary");
        assert_eq!((summary.pending, summary.dead), (2, 0));
    }

    pub async fn retention_removes_old_settled_events_and_keeps_what_is_needed(fx: &mut Fixture) {
        let (old, young, now) = (20 * DAY, 50 * DAY, 60 * DAY);
        let store = fx.store();
        store
            .commit_page(
                "gh:1",
                events_only(vec![
                    event_at("delivered", "a", 1, old, &["crm", "slack"]),
                    event_at("pending", "b", 1, old, &["crm"]),
                    event_at("retrying", "c", 1, old, &["crm"]),
                    event_at("dead_long_ago", "d", 1, old, &["crm"]),
                    event_at("dead_lately", "e", 1, old, &["crm"]),
                ]),
            )
            .await
            .expect("commit");
        let mut held = event_at("held", "h", 1, old, &["crm"]);
        held.hold = true;
        store
            .commit_page("gh:1", events_only(vec![held]))
            .await
            .expect("hold");
        store
            .commit_page(
                "gh:1",
                events_only(vec![
                    event_at("nobody_wanted", "g", 1, old, &[]),
                    // Last, so the highest log sequence is one retention removes (later).
                    event_at("young", "f", 1, young, &["crm"]),
                ]),
            )
            .await
            .expect("commit");
        store.flush().await.expect("flush");
        settle(store, "crm", 1, old, old + 1, AttemptResult::Delivered).await;
        settle(store, "slack", 1, old, old + 2, AttemptResult::Delivered).await;
        let later = AttemptResult::Retry {
            due_at: at(now + DAY),
        };
        settle(store, "crm", 3, old, old + 3, later).await;
        settle(store, "crm", 4, old, old + 5 * DAY, AttemptResult::Dead).await;
        settle(store, "crm", 5, old, now - 10 * DAY, AttemptResult::Dead).await;
        settle(store, "crm", 8, young, young + 1, AttemptResult::Delivered).await;
        assert_eq!(store.queue_summary("crm").await.expect("summary").dead, 2);
        let before = store.size_on_disk().await.expect("size");
        assert!(before > 0);

        let report = sweep_all(store, &policy(), now, 100).await;
        assert_eq!(
            report,
            SweepReport {
                events: 3,
                deliveries: 3,
                attempts: 3,
                event_ids: 3,
                snapshots: 0,
                more: false,
            },
            "delivered, dead long ago, and the one nobody wanted"
        );
        assert_eq!(
            log_ids(store).await,
            ["pending", "retrying", "dead_lately", "young"],
            "a pending or retrying delivery keeps its event; a dead letter younger than \
             `events` is kept; a young event is kept"
        );
        assert_eq!(store.held_events("gh:1").await.expect("held").len(), 1);
        assert_eq!(store.event_by_id("delivered").await.expect("read"), None);
        assert_eq!(store.delivery("crm", 1).await.expect("read"), None);
        assert_eq!(store.attempts("slack", 1).await.expect("read"), vec![]);
        assert_eq!(
            store.queue_summary("crm").await.expect("summary"),
            QueueSummary {
                pending: 2,
                dead: 1,
                oldest_pending: Some(at(old)),
            },
            "the dead letter removed is no longer counted"
        );
        assert_eq!(
            store.oldest_event_at().await.expect("oldest"),
            Some(at(old))
        );
        assert_eq!(
            claimable(store, now).await,
            [2],
            "the pending one is still claimable"
        );

        // Idempotent.
        assert!(sweep_all(store, &policy(), now, 100).await.is_empty());
        // Once settled, and settled for `events`, the kept ones go too.
        settle(store, "crm", 2, now, now, AttemptResult::Delivered).await;
        settle(
            store,
            "crm",
            3,
            now + DAY,
            now + DAY,
            AttemptResult::Delivered,
        )
        .await;
        assert!(sweep_all(store, &policy(), now + DAY, 100).await.is_empty());
        let report = sweep_all(store, &policy(), now + 32 * DAY, 100).await;
        assert_eq!((report.events, report.deliveries), (4, 4), "{report:?}");
        assert!(log_ids(store).await.is_empty());
        assert_eq!(store.oldest_event_at().await.expect("oldest"), None);
        assert_eq!(store.queue_summary("crm").await.expect("summary").dead, 0);

        // Log sequences are never handed out again, even after a reopen.
        store.flush().await.expect("flush");
        fx.reopen().await;
        let written = fx
            .store()
            .commit_page(
                "gh:1",
                events_only(vec![event_at("next", "a", 2, now, &["crm"])]),
            )
            .await
            .expect("commit");
        assert_eq!(written[0].log_seq, 9, "after the removed 8 (6 is held)");
    }

    pub async fn retention_keeps_the_sequence_and_refuses_a_replay_of_a_pruned_event(
        fx: &mut Fixture,
    ) {
        let (old, now) = (10 * DAY, 60 * DAY);
        let store = fx.store();
        // A page as a sync commits it: the snapshot holds the last event's sequence.
        let page = |is_new| PageCommit {
            snapshots: vec![real_snap("a", 2, None, is_new)],
            events: vec![
                event_at("evt_1", "a", 1, old, &[]),
                event_at("evt_2", "a", 2, old, &[]),
            ],
        };
        assert_eq!(
            store
                .commit_page("gh:1", page(true))
                .await
                .expect("1")
                .len(),
            2
        );
        let report = sweep_all(store, &policy(), now, 100).await;
        assert_eq!((report.events, report.event_ids), (2, 2), "{report:?}");
        assert_eq!(store.event_by_id("evt_1").await.expect("read"), None);

        // A crash replay of the page whose events were pruned (its snapshot is there now):
        // no new event, no new id.
        let again = store.commit_page("gh:1", page(false)).await.expect("again");
        assert!(again.is_empty(), "{again:?}");
        // A re-derivation under another id (what a sequence taken from the log would
        // give): refused too, by the snapshot's sequence.
        let other_id = store
            .commit_page(
                "gh:1",
                events_only(vec![event_at("evt_2_again", "a", 2, now, &["crm"])]),
            )
            .await
            .expect("other id");
        assert!(other_id.is_empty(), "{other_id:?}");
        assert!(log_ids(store).await.is_empty());

        // The next change continues the sequence.
        let next = store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![real_snap("a", 3, None, false)],
                    events: vec![event_at("evt_3", "a", 3, now, &["crm"])],
                },
            )
            .await
            .expect("next");
        assert_eq!(
            next.iter()
                .map(|r| (r.id.as_str(), r.sequence, r.log_seq))
                .collect::<Vec<_>>(),
            [("evt_3", 3, 3)]
        );
        assert_eq!(
            store.sync_state("gh:1").await.expect("state").applications,
            1
        );
    }

    pub async fn retention_forgets_old_dropped_ids_but_not_their_sequence(fx: &mut Fixture) {
        let (old, now) = (10 * DAY, 60 * DAY);
        let store = fx.store();
        let mut h = event_at("dropped", "a", 1, old, &["crm"]);
        h.hold = true;
        store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![real_snap("a", 1, None, true)],
                    events: vec![h.clone()],
                },
            )
            .await
            .expect("hold");
        assert_eq!(store.drop_held("gh:1", &[1]).await.expect("drop"), 1);
        assert!(sweep_all(store, &policy(), old + DAY, 100).await.is_empty());
        let report = sweep_all(store, &policy(), now, 100).await;
        assert_eq!(report.event_ids, 1, "{report:?}");
        assert!(sweep_all(store, &policy(), now, 100).await.is_empty());
        let again = store
            .commit_page("gh:1", events_only(vec![h]))
            .await
            .expect("again");
        assert!(
            again.is_empty(),
            "the id is forgotten, the snapshot's sequence still refuses it: {again:?}"
        );
        fx.store().flush().await.expect("flush");
        fx.reopen().await;
        let written = fx
            .store()
            .commit_page(
                "gh:1",
                events_only(vec![event_at("next", "b", 1, now, &[])]),
            )
            .await
            .expect("commit");
        assert_eq!(
            written[0].log_seq, 2,
            "the dropped event's sequence stays used"
        );
    }

    pub async fn retention_purges_long_deleted_applications_and_keeps_their_sequence(
        fx: &mut Fixture,
    ) {
        let now = 60 * DAY;
        let store = fx.store();
        let state = SyncState {
            watermark: Some(at(now - 60)),
            baseline_done: true,
            last_full_resync: Some(at(now - 3600)),
            ..SyncState::default()
        };
        store.put_sync_state("gh:1", &state).await.expect("state");
        store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![
                        real_snap("live", 3, None, true),
                        real_snap("gone", 5, Some(now - 20 * DAY), true),
                        real_snap("lately", 2, Some(now - 5 * DAY), true),
                        real_snap("back", 4, Some(now - 20 * DAY), true),
                    ],
                    events: vec![],
                },
            )
            .await
            .expect("commit");
        store
            .commit_page(
                "lever:2",
                PageCommit {
                    snapshots: vec![real_snap("other", 1, Some(now - 30 * DAY), true)],
                    events: vec![],
                },
            )
            .await
            .expect("commit");
        // `back` is restored before any sweep: it leaves the index of deleted applications.
        let mut restored = real_snap("back", 5, None, false);
        restored.previous_deleted_at = Some(at(now - 20 * DAY));
        store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![restored],
                    events: vec![event_at("back_restored", "back", 5, now - DAY, &[])],
                },
            )
            .await
            .expect("restore");
        store.flush().await.expect("flush");
        assert_eq!(
            store.sync_state("gh:1").await.expect("state").applications,
            4
        );

        let report = sweep_all(store, &policy(), now, 1).await;
        assert_eq!(
            report.snapshots, 2,
            "gone and other, in batches of one: {report:?}"
        );
        assert_eq!(report.events, 0);
        assert!(sweep_all(store, &policy(), now, 100).await.is_empty());
        let after = store.sync_state("gh:1").await.expect("state");
        assert_eq!(
            after,
            SyncState {
                applications: 3,
                ..state.clone()
            },
            "the count drops; the rest of the sync state stays"
        );
        assert_eq!(store.snapshot_count("gh:1").await.expect("count"), 3);
        assert_eq!(
            store
                .sync_state("lever:2")
                .await
                .expect("state")
                .applications,
            0
        );
        assert!(
            store.has_snapshots("lever:2").await.expect("has"),
            "its tombstone"
        );
        // A caller's stale copy of the state does not bring the count back.
        store
            .put_sync_state(
                "gh:1",
                &SyncState {
                    applications: 4,
                    ..state
                },
            )
            .await
            .expect("put");
        assert_eq!(
            store.sync_state("gh:1").await.expect("state").applications,
            3
        );

        let found = store
            .snapshots("gh:1", &["live", "gone", "lately"])
            .await
            .expect("read");
        let decoded: Vec<Snapshot> = found
            .iter()
            .map(|b| Snapshot::decode(b.as_deref().expect("something")).expect("decodes"))
            .collect();
        assert_eq!(decoded[0].remote_id.as_deref(), Some("remote-live"));
        assert_eq!(
            decoded[1],
            Snapshot::tombstone(5, at(now - 20 * DAY)),
            "only the sequence and the deletion are kept"
        );
        assert_eq!(decoded[2].remote_id.as_deref(), Some("remote-lately"));

        // `lately` goes once it is old enough; `back` and `live` never.
        let report = sweep_all(store, &policy(), now + 10 * DAY, 100).await;
        assert_eq!(report.snapshots, 1, "{report:?}");
        assert_eq!(store.snapshot_count("gh:1").await.expect("count"), 2);

        // Kombo shows `gone` again, restored: its events continue its sequence, and it
        // counts again.
        let mut back = real_snap("gone", 6, None, false);
        back.previous_deleted_at = Some(at(now - 20 * DAY));
        let written = store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![back],
                    events: vec![event_at("gone_restored", "gone", 6, now, &["crm"])],
                },
            )
            .await
            .expect("restore");
        assert_eq!(written.len(), 1);
        assert_eq!(
            store.sync_state("gh:1").await.expect("state").applications,
            3
        );
        assert_eq!(store.snapshot_count("gh:1").await.expect("count"), 3);
        let read = store.snapshots("gh:1", &["gone"]).await.expect("read");
        let read = Snapshot::decode(read[0].as_deref().expect("one")).expect("decodes");
        assert_eq!((read.sequence, read.deleted_at), (6, None));
        assert!(
            sweep_all(store, &policy(), now + 100 * DAY, 100)
                .await
                .snapshots
                == 0
        );
    }

    pub async fn forever_keeps_everything(fx: &mut Fixture) {
        let store = fx.store();
        store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![real_snap("gone", 1, Some(0), true)],
                    events: vec![event_at("old", "gone", 1, 0, &[])],
                },
            )
            .await
            .expect("commit");
        let forever = RetentionPolicy::default();
        assert!(sweep_all(store, &forever, 1000 * DAY, 100).await.is_empty());
        assert_eq!(log_ids(store).await, ["old"]);
        assert_eq!(store.snapshot_count("gh:1").await.expect("count"), 1);
    }

    pub async fn a_sweep_goes_in_batches_of_its_limit(fx: &mut Fixture) {
        let store = fx.store();
        let events = (1..=7)
            .map(|i| event_at(&format!("e{i}"), &format!("app{i}"), 1, DAY, &[]))
            .collect();
        store
            .commit_page("gh:1", events_only(events))
            .await
            .expect("commit");
        let mut cursor = SweepCursor::default();
        let mut sizes = Vec::new();
        loop {
            let report = store
                .sweep(&policy(), at(60 * DAY), 3, &mut cursor)
                .await
                .expect("sweep");
            sizes.push(report.events);
            if !report.more {
                break;
            }
        }
        assert_eq!(sizes, [3, 3, 1]);
        assert!(log_ids(store).await.is_empty());
    }

    pub async fn a_missing_store_item_is_an_error_not_a_panic(fx: &mut Fixture) {
        // Recording an attempt for a delivery that is not pending in the store (here: one
        // made up) must not corrupt anything; either it is refused or it is a no-op.
        let store = fx.store();
        two_applications(store).await;
        let mut d = claim_one(store, 10, 1).await;
        d.log_seq = 99;
        let result = store
            .record_attempt(&d, &attempt(1, 10, 200), AttemptResult::Delivered)
            .await;
        if let Err(e) = &result {
            assert!(!matches!(e, StoreError::Locked { .. }), "{e}");
        }
        assert_eq!(
            store
                .delivery("crm", 1)
                .await
                .expect("read")
                .map(|e| e.state),
            Some(DeliveryState::Pending)
        );
    }

    pub async fn erase_by_application_changes_exactly_its_records(fx: &mut Fixture) {
        let store = fx.store();
        people(store).await;
        let log_before: Vec<(u64, String, u64)> = store
            .events(&EventFilter::default())
            .await
            .expect("log")
            .into_iter()
            .map(|r| (r.log_seq, r.id, r.sequence))
            .collect();
        let report = store
            .erase("gh:1", &ErasureSubject::Application("a".into()))
            .await
            .expect("erase");
        assert_eq!(
            report,
            EraseReport {
                snapshots: 1,
                events: 2,
                deliveries: 1
            }
        );
        assert_eq!(report.changed(), 4);
        // Durable: what a reopen reads.
        fx.reopen().await;
        let store = fx.store();
        assert_eq!(
            snapshot_names(store, "gh:1", "a").await,
            (None, None, "c1".into(), 2)
        );
        assert_eq!(
            snapshot_names(store, "gh:1", "b").await.0.as_deref(),
            Some("Firstc1")
        );
        assert_eq!(
            snapshot_names(store, "gh:2", "a").await.0.as_deref(),
            Some("Firstc1")
        );
        assert!(!body_has_names(store, "e1").await);
        assert!(!body_has_names(store, "e4").await, "held events too");
        for kept in ["e2", "e3", "f1"] {
            assert!(body_has_names(store, kept).await, "{kept} is not a's");
        }
        let log_after: Vec<(u64, String, u64)> = store
            .events(&EventFilter::default())
            .await
            .expect("log")
            .into_iter()
            .map(|r| (r.log_seq, r.id, r.sequence))
            .collect();
        assert_eq!(log_after, log_before, "ids, sequences and log order stay");
        assert_eq!(store.held_events("gh:1").await.expect("held").len(), 1);
        let entry = store.delivery("crm", 1).await.expect("read").expect("kept");
        assert_eq!(entry.state, DeliveryState::Pending);
        assert_eq!(entry.attempts, 1);
        assert_eq!(entry.last_error, None);
        let attempts = store.attempts("crm", 1).await.expect("attempts");
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].status, Some(400), "the status stays");
        assert_eq!(attempts[0].error, None);
        assert_eq!(attempts[0].response_prefix, None);
        // The pending delivery goes out with the erased body.
        let d = claim_one(store, 300, 1).await;
        let body: serde_json::Value = serde_json::from_slice(&d.body).expect("json");
        assert!(body["data"]["application"]["candidate"]["first_name"].is_null());
        store.release_claim(&d).await.expect("give back");
        // Again: nothing more.
        let again = store
            .erase("gh:1", &ErasureSubject::Application("a".into()))
            .await
            .expect("erase");
        assert_eq!(again, EraseReport::default());
        assert_eq!(again.changed(), 0);
    }

    pub async fn erase_by_candidate_changes_every_record_of_the_candidate(fx: &mut Fixture) {
        let store = fx.store();
        people(store).await;
        let report = store
            .erase("gh:1", &ErasureSubject::Candidate("c1".into()))
            .await
            .expect("erase");
        assert_eq!(
            report,
            EraseReport {
                snapshots: 2,
                events: 3,
                deliveries: 1
            }
        );
        for app in ["a", "b"] {
            assert_eq!(snapshot_names(store, "gh:1", app).await.0, None, "{app}");
        }
        assert_eq!(
            snapshot_names(store, "gh:1", "x").await.0.as_deref(),
            Some("Firstc2")
        );
        assert_eq!(
            snapshot_names(store, "gh:2", "a").await.0.as_deref(),
            Some("Firstc1")
        );
        for erased in ["e1", "e3", "e4"] {
            assert!(!body_has_names(store, erased).await, "{erased}");
        }
        assert!(body_has_names(store, "e2").await);
        assert!(body_has_names(store, "f1").await, "another integration's");
        let again = store
            .erase("gh:1", &ErasureSubject::Candidate("c1".into()))
            .await
            .expect("erase");
        assert_eq!(again.changed(), 0);
    }

    pub async fn erase_of_nothing_changes_nothing(fx: &mut Fixture) {
        let store = fx.store();
        people(store).await;
        for (integration, subject) in [
            ("gh:9", ErasureSubject::Application("a".into())),
            ("gh:9", ErasureSubject::Candidate("c1".into())),
            ("gh:1", ErasureSubject::Application("nobody".into())),
            ("gh:1", ErasureSubject::Candidate("nobody".into())),
        ] {
            let report = store.erase(integration, &subject).await.expect("erase");
            assert_eq!(report.changed(), 0, "{integration} {subject:?}");
        }
        assert!(body_has_names(store, "e1").await);
        assert_eq!(
            snapshot_names(store, "gh:1", "a").await.0.as_deref(),
            Some("Firstc1")
        );
    }

    pub async fn an_attempt_claimed_before_an_erasure_does_not_bring_names_back(fx: &mut Fixture) {
        let store = fx.store();
        people(store).await;
        let d = claim_one(store, 300, 1).await;
        store
            .erase("gh:1", &ErasureSubject::Application("a".into()))
            .await
            .expect("erase");
        store
            .record_attempt(&d, &attempt(2, 300, 200), AttemptResult::Delivered)
            .await
            .expect("record");
        let entry = store.delivery("crm", 1).await.expect("read").expect("kept");
        assert_eq!(entry.state, DeliveryState::Delivered);
        let attempts = store.attempts("crm", 1).await.expect("attempts");
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].error, None, "the erased attempt stays erased");
        assert_eq!(attempts[0].response_prefix, None);
        assert_eq!(attempts[1].status, Some(200));
    }
}

/// One test per check, for one backend. `$open` gives a fresh fixture, or `None` when the
/// backend is not available here (it says why).
macro_rules! contract {
    ($backend:ident, $open:path; $($check:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $check() {
                    let Some(mut fx) = $open().await else { return };
                    super::checks::$check(&mut fx).await;
                }
            )*
        }
    };
}

macro_rules! every_check {
    ($backend:ident, $open:path) => {
        contract!($backend, $open;
            a_page_commits_snapshots_events_and_outbox_together,
            a_rederived_event_keeps_its_place_and_is_not_logged_twice,
            log_sequences_have_no_gaps_and_survive_a_reopen,
            filters_select_exactly,
            held_events_wait_for_an_operator,
            dropped_held_events_do_not_come_back,
            sync_state_round_trips,
            only_the_oldest_pending_delivery_of_an_application_is_claimable,
            claims_respect_the_limit_and_the_due_order,
            an_abandoned_claim_comes_back_when_it_expires,
            claims_survive_a_crash_as_pending_deliveries,
            a_failed_attempt_blocks_its_application_only,
            an_entry_keeps_its_latest_attempts,
            a_dead_letter_unblocks_its_application_and_can_be_retried,
            a_410_disables_until_enabled_and_keeps_the_delivery,
            a_disabled_subscriber_is_handed_nothing_until_enabled,
            released_events_queue_behind_pending_ones,
            pending_deliveries_survive_a_reopen,
            a_missing_store_item_is_an_error_not_a_panic,
            retention_removes_old_settled_events_and_keeps_what_is_needed,
            retention_keeps_the_sequence_and_refuses_a_replay_of_a_pruned_event,
            retention_forgets_old_dropped_ids_but_not_their_sequence,
            retention_purges_long_deleted_applications_and_keeps_their_sequence,
            forever_keeps_everything,
            a_sweep_goes_in_batches_of_its_limit,
            erase_by_application_changes_exactly_its_records,
            erase_by_candidate_changes_every_record_of_the_candidate,
            erase_of_nothing_changes_nothing,
            an_attempt_claimed_before_an_erasure_does_not_bring_names_back,
        );
    };
}

every_check!(sled, super::Fixture::sled);
every_check!(postgres, super::Fixture::postgres);
