use super::*;
use chrono::TimeZone;

fn at(secs: i64) -> Timestamp {
    chrono::Utc
        .timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .expect("valid")
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db"), 8 << 20).expect("open");
    (dir, store)
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

fn snap(app: &str, is_new: bool) -> SnapshotWrite {
    SnapshotWrite {
        application_id: app.into(),
        bytes: vec![1, 2, 3],
        is_new,
    }
}

#[test]
fn a_page_commits_snapshots_events_and_outbox_together() {
    let (_dir, store) = open();
    let written = store
        .commit_page(
            "gh:1",
            PageCommit {
                snapshots: vec![snap("a", true), snap("b", true)],
                events: vec![
                    event("evt_1", "a", 1, EventType::StageChanged, &["crm", "slack"]),
                    event("evt_2", "b", 1, EventType::Rejected, &["crm"]),
                ],
            },
        )
        .expect("commit");
    assert_eq!(
        written.iter().map(|r| r.log_seq).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        store.snapshot("gh:1", "a").unwrap().as_deref(),
        Some(&[1u8, 2, 3][..])
    );
    assert_eq!(store.sync_state("gh:1").unwrap().applications, 2);
    assert_eq!(store.outbox("crm").unwrap().len(), 2);
    assert_eq!(store.outbox("slack").unwrap().len(), 1);
    assert_eq!(store.outbox("slack").unwrap()[0].1.event_id, "evt_1");
    let found = store.event_by_id("evt_2").unwrap().expect("logged");
    assert_eq!(found.event_type, EventType::Rejected);
    assert_eq!(found.body, b"{\"id\":\"evt_2\"}");
}

#[test]
fn a_rederived_event_is_not_logged_twice() {
    let (_dir, store) = open();
    let page = || PageCommit {
        snapshots: vec![snap("a", false)],
        events: vec![event("evt_1", "a", 1, EventType::StageChanged, &["crm"])],
    };
    assert_eq!(store.commit_page("gh:1", page()).unwrap().len(), 1);
    assert_eq!(store.commit_page("gh:1", page()).unwrap().len(), 0);
    assert_eq!(store.events(&EventFilter::default()).unwrap().len(), 1);
    assert_eq!(store.outbox("crm").unwrap().len(), 1);
}

#[test]
fn log_sequences_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = Store::open(&path, 8 << 20).unwrap();
        let page = PageCommit {
            snapshots: vec![],
            events: vec![event("evt_1", "a", 1, EventType::StageChanged, &[])],
        };
        store.commit_page("gh:1", page).unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(&path, 8 << 20).unwrap();
    let page = PageCommit {
        snapshots: vec![],
        events: vec![event("evt_2", "a", 2, EventType::Rejected, &[])],
    };
    let written = store.commit_page("gh:1", page).unwrap();
    assert_eq!(written[0].log_seq, 2);
}

#[test]
fn filters_select_exactly() {
    let (_dir, store) = open();
    let page = PageCommit {
        snapshots: vec![],
        events: vec![
            event("e1", "a", 1, EventType::StageChanged, &[]),
            event("e2", "b", 2, EventType::Rejected, &[]),
            event("e3", "a", 3, EventType::OutcomeHired, &[]),
        ],
    };
    store.commit_page("gh:1", page).unwrap();
    let page = PageCommit {
        snapshots: vec![],
        events: vec![event("e4", "a", 4, EventType::StageChanged, &[])],
    };
    store.commit_page("lever:2", page).unwrap();

    let ids = |f: EventFilter| -> Vec<String> {
        store
            .events(&f)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect()
    };
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
    ];
    for (filter, want) in cases {
        assert_eq!(ids(filter.clone()), want, "{filter:?}");
    }
}

#[test]
fn held_events_wait_for_an_operator() {
    let (_dir, store) = open();
    let mut held = event("e1", "a", 1, EventType::ApplicationDeleted, &["crm"]);
    held.hold = true;
    let page = PageCommit {
        snapshots: vec![],
        events: vec![held, event("e2", "b", 1, EventType::StageChanged, &["crm"])],
    };
    store.commit_page("gh:1", page).unwrap();
    assert_eq!(store.events(&EventFilter::default()).unwrap().len(), 1);
    assert_eq!(store.outbox("crm").unwrap().len(), 1);
    assert_eq!(store.held_events("gh:1").unwrap().len(), 1);
    assert!(
        store.event_by_id("e1").unwrap().is_some(),
        "held events are findable"
    );

    let released = store.release_held("gh:1").unwrap();
    assert_eq!(released.len(), 1);
    assert!(store.held_events("gh:1").unwrap().is_empty());
    assert_eq!(store.events(&EventFilter::default()).unwrap().len(), 2);
    assert_eq!(store.outbox("crm").unwrap().len(), 2);
}

#[test]
fn dropped_held_events_do_not_come_back() {
    let (_dir, store) = open();
    let mut held = event("e1", "a", 1, EventType::ApplicationDeleted, &[]);
    held.hold = true;
    let page = || PageCommit {
        snapshots: vec![],
        events: vec![held.clone()],
    };
    store.commit_page("gh:1", page()).unwrap();
    assert_eq!(store.drop_held("gh:1").unwrap(), 1);
    assert!(store.commit_page("gh:1", page()).unwrap().is_empty());
    assert!(store.held_events("gh:1").unwrap().is_empty());
}

#[test]
fn sync_state_round_trips() {
    let (_dir, store) = open();
    assert_eq!(store.sync_state("gh:1").unwrap(), SyncState::default());
    let state = SyncState {
        watermark: Some(at(10)),
        baseline_done: true,
        applications: 3,
        ..Default::default()
    };
    store.put_sync_state("gh:1", &state).unwrap();
    assert_eq!(store.sync_state("gh:1").unwrap(), state);
}

#[test]
fn a_second_open_is_told_the_store_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let _first = Store::open(&path, 8 << 20).unwrap();
    let err = Store::open(&path, 8 << 20).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}
