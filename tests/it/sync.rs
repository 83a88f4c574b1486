//! Syncs against the simulator: the events derived match what the simulator changed,
//! crashes between pages lose nothing, the mass-change guard holds, `sync --once` works.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hirehook::ats::model::OfferStatus;
use hirehook::ats::{ClientConfig, KomboClient, Outcome, RetryPolicy};
use hirehook::diff::FirstSight;
use hirehook::event::{EventHeader, EventType};
use hirehook::secret::Secret;
use hirehook::sim::{FaultKind, Mutation, RunningSim, ScriptedFault, SimConfig, spawn};
use hirehook::store::{EventFilter, EventRecord, Store};
use hirehook::sync::{MassChangeGuard, Route, SyncSettings, Syncer};

async fn sim(applications: usize) -> RunningSim {
    spawn(SimConfig {
        integrations: 1,
        applications,
        seed: 11,
        ..Default::default()
    })
    .await
    .expect("simulator starts")
}

fn settings(page_size: u16, initial_sync: FirstSight) -> SyncSettings {
    SyncSettings {
        overlap: Duration::from_secs(120),
        full_resync_interval: Duration::from_secs(24 * 3600),
        initial_sync,
        page_size,
        guard: MassChangeGuard::default(),
        routes: vec![Route {
            subscriber: "crm".into(),
            types: None,
            integrations: None,
        }],
    }
}

fn syncer(sim: &RunningSim, store: Arc<Store>, settings: SyncSettings) -> Syncer {
    let client = KomboClient::new(ClientConfig {
        base_url: sim.base_url(),
        api_key: Secret::new(sim.sim().api_key()),
        request_timeout: Duration::from_secs(10),
        limits: Default::default(),
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(10),
            max_server_wait: Duration::from_secs(2),
        },
    })
    .expect("client");
    Syncer::new(client, store, settings)
}

fn store(dir: &tempfile::TempDir) -> Arc<Store> {
    Arc::new(Store::open_sled(&dir.path().join("db"), 16 << 20).expect("store opens"))
}

async fn sync_collect(syncer: &Syncer, integration: &str) -> Vec<EventRecord> {
    let mut got = Vec::new();
    syncer
        .sync(integration, |events| got.extend_from_slice(events))
        .await
        .expect("sync succeeds");
    got
}

/// Picks applications of the simulator's world that satisfy `pred`, skipping `used` ones.
fn pick(
    sim: &RunningSim,
    integration: &str,
    used: &mut BTreeSet<String>,
    pred: impl Fn(&hirehook::ats::Application) -> bool,
) -> String {
    let id = sim
        .sim()
        .application_ids(integration)
        .into_iter()
        .find(|id| {
            !used.contains(id)
                && sim
                    .sim()
                    .application(integration, id)
                    .is_some_and(|a| a.remote_deleted_at.is_none() && pred(&a))
        })
        .expect("the world has such an application");
    used.insert(id.clone());
    id
}

#[tokio::test]
async fn every_kind_of_change_yields_exactly_its_event_and_a_second_sync_none() {
    let sim = sim(400).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let syncer = syncer(&sim, store(&dir), settings(250, FirstSight::Baseline));

    assert!(
        sync_collect(&syncer, &integration).await.is_empty(),
        "the baseline emits nothing"
    );

    let s = sim.sim();
    let mut used = BTreeSet::new();
    let mut expected: BTreeMap<String, Vec<EventType>> = BTreeMap::new();
    let mut expect = |id: String, t: &[EventType]| {
        expected.insert(id, t.to_vec());
    };

    let id = pick(&sim, &integration, &mut used, |a| {
        a.current_stage_id.is_some()
    });
    let app = s.application(&integration, &id).expect("app");
    let job = app.job_id.clone().expect("job");
    let other_stage = s
        .application_ids(&integration)
        .into_iter()
        .filter_map(|other| s.application(&integration, &other))
        .find(|o| o.job_id.as_ref() == Some(&job) && o.current_stage_id != app.current_stage_id)
        .and_then(|o| o.current_stage_id)
        .expect("another stage of the same job");
    s.apply(
        &integration,
        &id,
        Mutation::MoveStage {
            to_stage_id: other_stage,
        },
    )
    .expect("move");
    expect(id, &[EventType::StageChanged]);

    let id = pick(&sim, &integration, &mut used, |a| {
        a.outcome == Some(Outcome::Pending)
    });
    s.apply(&integration, &id, Mutation::Hire).expect("hire");
    expect(id, &[EventType::OutcomeHired]);

    let id = pick(&sim, &integration, &mut used, |a| {
        a.outcome == Some(Outcome::Pending)
    });
    s.apply(&integration, &id, Mutation::Reject { reason: None })
        .expect("reject");
    expect(id, &[EventType::Rejected]);

    let id = pick(&sim, &integration, &mut used, |a| {
        matches!(a.outcome, Some(Outcome::Hired | Outcome::Declined))
    });
    s.apply(&integration, &id, Mutation::Revert { to_null: false })
        .expect("revert");
    expect(id, &[EventType::OutcomeReverted]);

    let id = pick(&sim, &integration, &mut used, |_| true);
    s.apply(
        &integration,
        &id,
        Mutation::CreateOffer {
            status: Some(OfferStatus::Draft),
        },
    )
    .expect("offer");
    expect(id, &[EventType::OfferCreated]);

    let id = pick(&sim, &integration, &mut used, |a| {
        a.offers
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o.status != Some(OfferStatus::Sent)))
    });
    let offer = s
        .application(&integration, &id)
        .expect("app")
        .offers
        .expect("offers")
        .into_iter()
        .find(|o| o.status != Some(OfferStatus::Sent))
        .expect("offer");
    s.apply(
        &integration,
        &id,
        Mutation::SetOfferStatus {
            offer_id: offer.id,
            status: Some(OfferStatus::Sent),
        },
    )
    .expect("offer status");
    expect(id, &[EventType::OfferStatusChanged]);

    let id = pick(&sim, &integration, &mut used, |_| true);
    s.apply(&integration, &id, Mutation::ScheduleInterview)
        .expect("schedule");
    expect(id, &[EventType::InterviewScheduled]);

    let open_interview = |a: &hirehook::ats::Application| {
        a.interviews
            .as_ref()
            .and_then(|list| {
                list.iter()
                    .find(|i| i.canceled != Some(true) && i.starting_at.is_some())
            })
            .map(|i| i.id.clone())
    };
    let id = pick(&sim, &integration, &mut used, |a| {
        open_interview(a).is_some()
    });
    let interview = open_interview(&s.application(&integration, &id).expect("app")).expect("iv");
    let start = chrono::Utc::now() + chrono::Duration::days(30);
    s.apply(
        &integration,
        &id,
        Mutation::Reschedule {
            interview_id: interview,
            starting_at: Some(start),
            ending_at: Some(start + chrono::Duration::hours(1)),
        },
    )
    .expect("reschedule");
    expect(id, &[EventType::InterviewRescheduled]);

    let id = pick(&sim, &integration, &mut used, |a| {
        open_interview(a).is_some()
    });
    let interview = open_interview(&s.application(&integration, &id).expect("app")).expect("iv");
    s.apply(
        &integration,
        &id,
        Mutation::CancelInterview {
            interview_id: interview,
        },
    )
    .expect("cancel");
    expect(id, &[EventType::InterviewCanceled]);

    let id = pick(&sim, &integration, &mut used, |a| {
        open_interview(a).is_some()
    });
    let interview = open_interview(&s.application(&integration, &id).expect("app")).expect("iv");
    s.apply(
        &integration,
        &id,
        Mutation::RemoveInterview {
            interview_id: interview,
        },
    )
    .expect("remove");
    expect(id, &[EventType::InterviewCanceled]);

    let id = pick(&sim, &integration, &mut used, |_| true);
    s.apply(&integration, &id, Mutation::Delete)
        .expect("delete");
    expect(id, &[EventType::ApplicationDeleted]);

    let id = pick(&sim, &integration, &mut used, |_| true);
    s.apply(
        &integration,
        &id,
        Mutation::RenameStage {
            name: Some("Renamed".into()),
        },
    )
    .ok();
    let id2 = pick(&sim, &integration, &mut used, |_| true);
    s.apply(&integration, &id2, Mutation::EditCandidate)
        .expect("edit");
    // A rename and a candidate edit yield nothing.
    let _ = id;

    let created = s.create_application(&integration).expect("create");
    let created_id = created.application_id.clone().expect("new id");
    expect(created_id, &[EventType::ApplicationCreated]);

    let events = sync_collect(&syncer, &integration).await;
    let mut got: BTreeMap<String, Vec<EventType>> = BTreeMap::new();
    for e in &events {
        got.entry(e.application_id.clone())
            .or_default()
            .push(e.event_type);
    }
    // A stage rename changes `current_stage.name` of every application in that stage, but
    // no event: so `got` has exactly the expected applications.
    assert_eq!(got, expected);

    // Bodies are the contract: parse them back and check the header fields.
    for e in &events {
        let header = EventHeader::parse(&e.body).expect("body parses");
        assert_eq!(header.event_id, e.id);
        assert_eq!(header.event_type, e.event_type);
        assert_eq!(header.integration_id, integration);
    }

    let mut again = Vec::new();
    let report = syncer
        .sync(&integration, |events| again.extend_from_slice(events))
        .await
        .expect("sync succeeds");
    assert!(
        again.is_empty(),
        "nothing changed since: the overlap re-fetch yields nothing"
    );
    // The overlap brings back the records changed above, byte for byte as they were
    // diffed: every one is skipped unparsed.
    assert!(report.records >= got.len() as u64, "{report:?}");
    assert_eq!(report.unchanged, report.records, "{report:?}");
    let outbox = syncer.store().outbox("crm").await.expect("outbox");
    assert_eq!(outbox.len(), events.len(), "one outbox entry per event");
}

#[tokio::test]
async fn a_sync_that_fails_on_page_3_commits_pages_1_and_2_and_resumes_without_gaps() {
    let sim = sim(300).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir);
    let syncer = syncer(&sim, store.clone(), settings(50, FirstSight::Emit));

    sim.sim().script_fault(ScriptedFault::page(
        &integration,
        3,
        FaultKind::Error {
            status: 400,
            code: "PLATFORM.INPUT_INVALID".into(),
            message: Some("injected".into()),
        },
    ));
    let mut first = Vec::new();
    let err = syncer
        .sync(&integration, |events| first.extend_from_slice(events))
        .await
        .expect_err("page 3 fails");
    assert!(err.to_string().contains("page 3"), "{err}");
    // Pages 1 and 2 (100 records) committed their events; an application already deleted at
    // first sight is stored without one.
    assert!(!first.is_empty() && first.len() <= 100, "{}", first.len());
    let state = store.sync_state(&integration).await.expect("state");
    assert_eq!(state.watermark, None, "the watermark did not move");
    assert!(state.last_error.is_some_and(|e| e.contains("page 3")));

    let second = sync_collect(&syncer, &integration).await;
    let all: BTreeSet<String> = first
        .iter()
        .chain(&second)
        .map(|e| e.application_id.clone())
        .collect();
    let world: BTreeSet<String> = sim
        .sim()
        .application_ids(&integration)
        .into_iter()
        .filter(|id| {
            sim.sim()
                .application(&integration, id)
                .is_some_and(|a| a.remote_deleted_at.is_none())
        })
        .collect();
    assert_eq!(all, world, "every live application, once");
    assert_eq!(first.len() + second.len(), world.len(), "none twice");
    let logged = store.events(&EventFilter::default()).await.expect("log");
    assert_eq!(logged.len(), world.len());
    assert!(
        store
            .sync_state(&integration)
            .await
            .expect("state")
            .watermark
            .is_some()
    );
}

#[tokio::test]
async fn an_incremental_sync_interrupted_midway_redelivers_nothing_and_loses_nothing() {
    let sim = sim(300).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir);
    let syncer = syncer(&sim, store.clone(), settings(20, FirstSight::Baseline));
    sync_collect(&syncer, &integration).await;

    let mut touched = BTreeSet::new();
    for id in sim
        .sim()
        .application_ids(&integration)
        .into_iter()
        .take(100)
    {
        if sim
            .sim()
            .apply(&integration, &id, Mutation::ScheduleInterview)
            .is_ok()
        {
            touched.insert(id);
        }
    }
    assert!(touched.len() > 60);
    sim.sim().script_fault(ScriptedFault::next(
        1,
        FaultKind::Error {
            status: 401,
            code: "PLATFORM.AUTHENTICATION_INVALID".into(),
            message: None,
        },
    ));
    // The first request of the next sync fails outright; then page 2 of the retry fails.
    assert!(syncer.sync(&integration, |_| {}).await.is_err());
    sim.sim().script_fault(ScriptedFault::page(
        &integration,
        2,
        FaultKind::Error {
            status: 404,
            code: "PLATFORM.INTEGRATION_NOT_FOUND".into(),
            message: None,
        },
    ));
    let mut got = Vec::new();
    assert!(
        syncer
            .sync(&integration, |e| got.extend_from_slice(e))
            .await
            .is_err()
    );
    assert!(got.len() <= 20, "at most page 1 committed");
    got.extend(sync_collect(&syncer, &integration).await);
    let apps: Vec<&str> = got.iter().map(|e| e.application_id.as_str()).collect();
    let unique: BTreeSet<&str> = apps.iter().copied().collect();
    assert_eq!(unique.len(), apps.len(), "no event twice");
    assert_eq!(unique, touched.iter().map(String::as_str).collect());
    assert!(
        got.iter()
            .all(|e| e.event_type == EventType::InterviewScheduled)
    );
}

#[tokio::test]
async fn a_mass_deletion_is_held_until_released() {
    let sim = sim(200).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir);
    let syncer = syncer(&sim, store.clone(), settings(250, FirstSight::Baseline));
    sync_collect(&syncer, &integration).await;

    let mut deleted = 0;
    for id in sim.sim().application_ids(&integration) {
        if sim.sim().apply(&integration, &id, Mutation::Delete).is_ok() {
            deleted += 1;
        }
    }
    assert!(deleted > 150, "{deleted}");
    let mut seen = Vec::new();
    let report = syncer
        .sync(&integration, |e| seen.extend_from_slice(e))
        .await
        .expect("sync");
    assert_eq!(report.held as usize, deleted);
    assert!(seen.is_empty(), "nothing handed on");
    assert!(store.outbox("crm").await.expect("outbox").is_empty());
    assert_eq!(
        store.held_events(&integration).await.expect("held").len(),
        deleted
    );

    let released = store
        .release_held(&integration, None)
        .await
        .expect("release");
    assert_eq!(released.len(), deleted);
    assert_eq!(store.outbox("crm").await.expect("outbox").len(), deleted);
    assert!(
        released
            .iter()
            .all(|e| e.event_type == EventType::ApplicationDeleted)
    );
}

#[tokio::test]
async fn a_few_deletions_flow_at_the_end_of_the_sync() {
    let sim = sim(200).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir);
    let syncer = syncer(&sim, store.clone(), settings(50, FirstSight::Baseline));
    sync_collect(&syncer, &integration).await;
    let ids = sim.sim().application_ids(&integration);
    let mut deleted = BTreeSet::new();
    for id in ids.iter().take(10) {
        if sim.sim().apply(&integration, id, Mutation::Delete).is_ok() {
            deleted.insert(id.clone());
        }
    }
    let events = sync_collect(&syncer, &integration).await;
    let got: BTreeSet<String> = events.iter().map(|e| e.application_id.clone()).collect();
    assert_eq!(got, deleted);
    assert!(
        store
            .held_events(&integration)
            .await
            .expect("held")
            .is_empty()
    );
}

/// Retention between syncs: a long-deleted application's snapshot is purged, later full
/// resyncs still listing it (as Kombo does with `include_deleted`) neither store it again
/// nor announce it, its restore continues its sequence; events pruned are not derived
/// again by a full re-sync from an old watermark (a crash replay).
#[tokio::test]
async fn retention_between_syncs_keeps_sequences_and_derives_nothing_twice() {
    use hirehook::store::{RetentionPolicy, SweepCursor};
    let sim = sim(30).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir);
    // Every sync after the baseline lists everything, deleted records included.
    // No subscriber: no delivery keeps an event from retention.
    let every_time = SyncSettings {
        full_resync_interval: Duration::from_millis(1),
        routes: vec![],
        ..settings(250, FirstSight::Baseline)
    };
    let syncer = syncer(&sim, store.clone(), every_time);
    assert!(sync_collect(&syncer, &integration).await.is_empty());
    let baseline_state = store.sync_state(&integration).await.expect("state");
    assert_eq!(baseline_state.applications, 30);

    let id = pick(&sim, &integration, &mut BTreeSet::new(), |_| true);
    sim.sim()
        .apply(&integration, &id, Mutation::Delete)
        .expect("delete");
    let deleted = sync_collect(&syncer, &integration).await;
    let deleted: Vec<&EventRecord> = deleted.iter().filter(|e| e.application_id == id).collect();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0].event_type, EventType::ApplicationDeleted);
    let deleted_seq = deleted[0].sequence;

    let sweep = |policy: RetentionPolicy, days: i64| {
        let store = store.clone();
        async move {
            let now = chrono::Utc::now() + chrono::TimeDelta::days(days);
            store
                .sweep(&policy, now, 1000, &mut SweepCursor::default())
                .await
                .expect("sweep")
        }
    };
    let fortnight = RetentionPolicy {
        events: None,
        deleted_applications: Some(Duration::from_secs(14 * 86_400)),
    };
    assert_eq!(sweep(fortnight, 1).await.snapshots, 0);
    assert_eq!(sweep(fortnight, 15).await.snapshots, 1);
    assert_eq!(
        store
            .sync_state(&integration)
            .await
            .expect("state")
            .applications,
        29
    );

    // Kombo keeps listing it, deleted: nothing is stored again, nothing is said.
    assert!(sync_collect(&syncer, &integration).await.is_empty());
    assert_eq!(store.snapshot_count(&integration).await.expect("count"), 29);
    assert_eq!(
        store
            .sync_state(&integration)
            .await
            .expect("state")
            .applications,
        29
    );

    // It comes back: its events continue its sequence, and it counts again.
    sim.sim()
        .apply(&integration, &id, Mutation::Restore)
        .expect("restore");
    let restored = sync_collect(&syncer, &integration).await;
    let restored: Vec<&EventRecord> = restored.iter().filter(|e| e.application_id == id).collect();
    assert_eq!(restored[0].event_type, EventType::ApplicationRestored);
    assert_eq!(restored[0].sequence, deleted_seq + 1, "{restored:?}");
    for (i, e) in restored.iter().enumerate() {
        assert_eq!(e.sequence, deleted_seq + 1 + i as u64);
    }
    assert_eq!(
        store
            .sync_state(&integration)
            .await
            .expect("state")
            .applications,
        30
    );

    // Every event pruned, then a crash replay from the baseline's watermark: nothing is
    // derived again.
    let month = RetentionPolicy {
        events: Some(Duration::from_secs(30 * 86_400)),
        deleted_applications: None,
    };
    let report = sweep(month, 31).await;
    assert!(report.events >= 2, "{report:?}");
    assert!(
        store
            .events(&EventFilter::default())
            .await
            .expect("log")
            .is_empty()
    );
    let mut state = store.sync_state(&integration).await.expect("state");
    state.watermark = baseline_state.watermark;
    store
        .put_sync_state(&integration, &state)
        .await
        .expect("state");
    assert!(sync_collect(&syncer, &integration).await.is_empty());
    assert!(
        store
            .events(&EventFilter::default())
            .await
            .expect("log")
            .is_empty()
    );
}
