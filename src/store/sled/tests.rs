use super::*;
use crate::store::*;
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
    let seqs: Vec<u64> = store
        .commit_page("gh:1", page())
        .unwrap()
        .iter()
        .map(|r| r.log_seq)
        .collect();
    assert_eq!(store.drop_held_seqs("gh:1", &seqs).unwrap(), 1);
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

mod delivery {
    use super::*;
    use std::collections::HashSet;

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

    fn due_seqs(store: &Store, now: i64) -> Vec<u64> {
        store
            .due_deliveries("crm", at(now), 100, &HashSet::new())
            .unwrap()
            .into_iter()
            .map(|d| d.log_seq)
            .collect::<std::collections::BTreeSet<u64>>()
            .into_iter()
            .collect()
    }

    /// Two applications: `a` has events 1 and 3, `b` has event 2.
    fn setup() -> (tempfile::TempDir, Store) {
        let (dir, store) = open();
        store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![],
                    events: vec![
                        event("e1", "a", 1, EventType::StageChanged, &["crm"]),
                        event("e2", "b", 1, EventType::StageChanged, &["crm"]),
                        event("e3", "a", 2, EventType::Rejected, &["crm"]),
                    ],
                },
            )
            .unwrap();
        store.flush().unwrap();
        (dir, store)
    }

    /// A store directory to open, close and open again.
    fn store_path() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        (dir, path)
    }

    /// Commits `events` (no snapshots) for `gh:1`.
    fn log(store: &Store, events: Vec<NewEvent>) {
        store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![],
                    events,
                },
            )
            .unwrap();
    }

    #[test]
    fn a_store_from_an_earlier_build_loses_its_index_keys_and_keeps_its_attempts() {
        let (_dir, path) = store_path();
        {
            let store = Store::open(&path, 8 << 20).expect("open");
            log(
                &store,
                vec![event("e1", "a", 1, EventType::StageChanged, &["crm"])],
            );
            // What earlier builds wrote besides the outbox entry: a queue key, a due key,
            // and the first attempt as its own record.
            let mut legacy_attempt = keys::attempt_prefix("crm", 1);
            legacy_attempt.extend_from_slice(&1u32.to_be_bytes());
            store
                .tree
                .insert(legacy_attempt, encode_json(&attempt(1, 10, 500)).unwrap())
                .unwrap();
            store
                .tree
                .insert(b"acrm\0gh:1\0a\0\0\0\0\0\0\0\0\x01", &[][..])
                .unwrap();
            store
                .tree
                .insert(b"qcrm\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x01", &[][..])
                .unwrap();
            let mut entry = store.outbox("crm").unwrap()[0].1.clone();
            entry.attempts = 1;
            store
                .tree
                .insert(keys::outbox("crm", 1), encode_json(&entry).unwrap())
                .unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(&path, 8 << 20).expect("reopen");
        assert_eq!(
            store.tree.scan_prefix(b"a").count(),
            0,
            "queue keys removed"
        );
        assert_eq!(store.tree.scan_prefix(b"q").count(), 0, "due keys removed");
        assert_eq!(
            due_seqs(&store, 100),
            [1],
            "still pending, rebuilt from the outbox"
        );
        store
            .record_attempt("crm", 1, &attempt(2, 61, 200), AttemptResult::Delivered)
            .unwrap();
        let statuses: Vec<(u32, Option<u16>)> = store
            .attempts("crm", 1)
            .unwrap()
            .iter()
            .map(|a| (a.attempt, a.status))
            .collect();
        assert_eq!(statuses, [(1, Some(500)), (2, Some(200))]);
    }

    #[test]
    fn an_entry_keeps_its_latest_attempts() {
        let (_dir, store) = setup();
        let total = ATTEMPTS_KEPT as u32 + 3;
        for n in 1..=total {
            store
                .record_attempt(
                    "crm",
                    1,
                    &attempt(n, 10 + i64::from(n), 500),
                    AttemptResult::Retry { due_at: at(100) },
                )
                .unwrap();
        }
        let attempts = store.attempts("crm", 1).unwrap();
        assert_eq!(attempts.len(), ATTEMPTS_KEPT);
        assert_eq!(attempts.first().map(|a| a.attempt), Some(4));
        assert_eq!(attempts.last().map(|a| a.attempt), Some(total));
        assert_eq!(store.outbox("crm").unwrap()[0].1.attempts, total);
    }

    #[test]
    fn nothing_is_due_before_the_flush_that_makes_it_durable() {
        let (_dir, store) = open();
        store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![],
                    events: vec![event("e1", "a", 1, EventType::StageChanged, &["crm"])],
                },
            )
            .unwrap();
        assert_eq!(
            due_seqs(&store, 100),
            Vec::<u64>::new(),
            "committed, not flushed"
        );
        assert_eq!(store.next_due_at("crm").unwrap(), None);
        store.flush().unwrap();
        assert_eq!(due_seqs(&store, 100), [1]);
    }

    #[test]
    fn the_queues_are_rebuilt_from_the_outbox_on_reopen() {
        let (_dir, path) = store_path();
        {
            let store = Store::open(&path, 8 << 20).expect("open");
            log(
                &store,
                vec![
                    event("e1", "a", 1, EventType::StageChanged, &["crm"]),
                    event("e2", "b", 1, EventType::StageChanged, &["crm"]),
                    event("e3", "a", 2, EventType::Rejected, &["crm"]),
                    event("e4", "c", 1, EventType::Rejected, &["crm"]),
                ],
            );
            store.flush().unwrap();
            store
                .record_attempt("crm", 2, &attempt(1, 10, 200), AttemptResult::Delivered)
                .unwrap();
            store
                .record_attempt(
                    "crm",
                    1,
                    &attempt(1, 10, 500),
                    AttemptResult::Retry { due_at: at(60) },
                )
                .unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(&path, 8 << 20).expect("reopen");
        assert_eq!(
            due_seqs(&store, 20),
            [4],
            "a waits for its retry; b is done"
        );
        assert_eq!(due_seqs(&store, 60), [1, 4]);
        let summary = store.queue_summary("crm").unwrap();
        assert_eq!((summary.pending, summary.dead), (3, 0));
        store
            .record_attempt("crm", 1, &attempt(2, 61, 200), AttemptResult::Delivered)
            .unwrap();
        assert_eq!(due_seqs(&store, 61), [3, 4]);
    }

    #[test]
    fn only_the_head_of_each_application_is_due() {
        let (_dir, store) = setup();
        assert_eq!(due_seqs(&store, 100), [1, 2]);
        let due = store
            .due_deliveries("crm", at(100), 100, &HashSet::new())
            .unwrap();
        assert_eq!(due[0].body, b"{\"id\":\"e1\"}");
        assert_eq!(
            due_seqs(&store, 0),
            Vec::<u64>::new(),
            "not due before detection"
        );
        let skip: HashSet<u64> = [1].into();
        let due = store.due_deliveries("crm", at(100), 100, &skip).unwrap();
        assert_eq!(due.iter().map(|d| d.log_seq).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_failed_head_blocks_its_application_only() {
        let (_dir, store) = setup();
        store
            .record_attempt(
                "crm",
                1,
                &attempt(1, 10, 500),
                AttemptResult::Retry { due_at: at(60) },
            )
            .unwrap();
        assert_eq!(due_seqs(&store, 20), [2], "b flows, a waits");
        assert_eq!(due_seqs(&store, 60), [1, 2]);
        assert_eq!(
            store.next_due_at("crm").unwrap(),
            Some(at(1).timestamp_millis())
        );
        store
            .record_attempt("crm", 1, &attempt(2, 61, 200), AttemptResult::Delivered)
            .unwrap();
        assert_eq!(due_seqs(&store, 61), [2, 3], "a's next event is due now");
        let entries = store.outbox("crm").unwrap();
        assert_eq!(entries[0].1.state, DeliveryState::Delivered);
        assert_eq!(entries[0].1.attempts, 2);
        assert_eq!(store.attempts("crm", 1).unwrap().len(), 2);
    }

    #[test]
    fn a_dead_letter_unblocks_its_application_and_can_be_retried() {
        let (_dir, store) = setup();
        store
            .record_attempt("crm", 1, &attempt(1, 10, 500), AttemptResult::Dead)
            .unwrap();
        assert_eq!(due_seqs(&store, 10), [2, 3]);
        assert_eq!(
            store.queue_summary("crm").unwrap(),
            QueueSummary {
                pending: 2,
                dead: 1,
                oldest_pending: Some(at(1)),
            }
        );
        let dead = store
            .deliveries(None, Some(DeliveryState::Dead), None)
            .unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].0, "crm");
        assert_eq!(dead[0].2.last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(
            store.retry_dead(Some("crm"), Some("e1"), at(20)).unwrap(),
            1
        );
        assert_eq!(
            due_seqs(&store, 20),
            [1, 2],
            "the re-queued e1 is a's head again: e3 waits behind it"
        );
        let entry = &store.outbox("crm").unwrap()[0].1;
        assert_eq!(
            (entry.state, entry.attempts, entry.round_start),
            (DeliveryState::Pending, 1, 1)
        );
        let summary = store.queue_summary("crm").unwrap();
        assert_eq!((summary.pending, summary.dead), (3, 0));
    }

    #[test]
    fn a_410_disables_until_enabled_and_keeps_the_delivery() {
        let (_dir, store) = setup();
        store
            .record_attempt(
                "crm",
                1,
                &attempt(1, 10, 410),
                AttemptResult::Disable {
                    reason: "410 Gone".into(),
                },
            )
            .unwrap();
        assert_eq!(
            store.disabled_reason("crm").unwrap().as_deref(),
            Some("410 Gone")
        );
        assert_eq!(due_seqs(&store, 10), [1, 2], "still pending");
        assert!(store.enable_subscriber("crm").unwrap());
        assert_eq!(store.disabled_reason("crm").unwrap(), None);
    }

    #[test]
    fn released_events_queue_behind_pending_ones() {
        let (_dir, store) = setup();
        let mut held = event("e4", "b", 2, EventType::ApplicationDeleted, &["crm"]);
        held.hold = true;
        store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![],
                    events: vec![held],
                },
            )
            .unwrap();
        store.release_held("gh:1").unwrap();
        store.flush().unwrap();
        assert_eq!(
            due_seqs(&store, 100),
            [1, 2],
            "b's second event waits for its first"
        );
    }
}
