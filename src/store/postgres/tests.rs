//! What only the PostgreSQL backend does, against a real PostgreSQL ([`test_database`]:
//! `HIREHOOK_TEST_DATABASE_URL`, or a scratch server per process): atomicity of a failed
//! commit, gap-free sequences across concurrent handles, migrations, connection errors,
//! TLS, fencing and leases, heartbeats, LISTEN/NOTIFY, claim plans and concurrent
//! claimants, grouped attempts. The behaviour every backend shares is the contract suite
//! (`tests/it/store_contract.rs`), which runs here too. Each test gets an empty database;
//! without PostgreSQL the tests say they were skipped and pass, unless
//! `HIREHOOK_REQUIRE_POSTGRES=1`.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::TimeZone;

use super::*;
use crate::ats::Timestamp;
use crate::event::EventType;
use crate::store::fixtures::{at, event};
use crate::store::*;

/// One application's stored snapshot, read the way the sync reads them (a page at a time).
async fn one_snapshot(store: &PgStore, integration: &str, application: &str) -> Option<Vec<u8>> {
    let mut found = store
        .snapshots(integration, &[application])
        .await
        .expect("snapshots");
    found.pop().flatten()
}

/// An unfenced store on a fresh database, or None (skipped).
async fn open() -> Option<PgStore> {
    let url = test_database().await?;
    Some(connect(&url).await.without_fencing())
}

async fn connect(url: &str) -> PgStore {
    PgStore::connect(url, 4)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// A fresh database's URL, or return from the test (skipped).
macro_rules! database {
    () => {
        match test_database().await {
            Some(url) => url,
            None => return,
        }
    };
}

/// An unfenced store on a fresh database, or return from the test (skipped).
macro_rules! store {
    () => {
        match open().await {
            Some(store) => store,
            None => return,
        }
    };
}

fn held(id: &str, app: &str, seq: u64, subs: &[&str]) -> NewEvent {
    NewEvent {
        hold: true,
        ..event(id, app, seq, EventType::ApplicationDeleted, subs)
    }
}

fn snap(app: &str, is_new: bool) -> SnapshotWrite {
    SnapshotWrite {
        application_id: app.into(),
        bytes: vec![1, 2, 3],
        is_new,
        previous_deleted_at: None,
    }
}

fn events_page(events: Vec<NewEvent>) -> PageCommit {
    PageCommit {
        snapshots: vec![],
        events,
    }
}

async fn log(store: &PgStore, events: Vec<NewEvent>) -> Vec<EventRecord> {
    store
        .commit_page("gh:1", events_page(events))
        .await
        .expect("commit")
}

fn seqs(records: &[EventRecord]) -> Vec<u64> {
    records.iter().map(|r| r.log_seq).collect()
}

#[tokio::test]
async fn snapshots_are_replaced_and_only_new_ones_count() {
    let store = store!();
    let page = |is_new: bool, bytes: Vec<u8>| PageCommit {
        snapshots: vec![SnapshotWrite {
            application_id: "a".into(),
            bytes,
            is_new,
            previous_deleted_at: None,
        }],
        events: vec![],
    };
    store
        .commit_page("gh:1", page(true, vec![1]))
        .await
        .unwrap();
    store
        .commit_page("gh:1", page(false, vec![2]))
        .await
        .unwrap();
    assert_eq!(one_snapshot(&store, "gh:1", "a").await, Some(vec![2]));
    assert_eq!(store.sync_state("gh:1").await.unwrap().applications, 1);
    // The same application twice in one page: the last write wins, as in a batch.
    let twice = PageCommit {
        snapshots: vec![snap("b", true), {
            let mut s = snap("b", false);
            s.bytes = vec![9];
            s
        }],
        events: vec![],
    };
    store.commit_page("gh:1", twice).await.unwrap();
    assert_eq!(one_snapshot(&store, "gh:1", "b").await, Some(vec![9]));
    assert_eq!(store.sync_state("gh:1").await.unwrap().applications, 2);
    // The count joins a sync state written before.
    let mut state = store.sync_state("gh:1").await.unwrap();
    state.baseline_done = true;
    state.watermark = Some(at(5));
    store.put_sync_state("gh:1", &state).await.unwrap();
    store
        .commit_page("gh:1", page(true, vec![3]))
        .await
        .unwrap();
    let after = store.sync_state("gh:1").await.unwrap();
    assert_eq!(
        (after.applications, after.baseline_done, after.watermark),
        (3, true, Some(at(5)))
    );
}

#[tokio::test]
async fn a_failed_commit_writes_nothing() {
    let store = store!();
    let mut bad = event("e2", "b", 1, EventType::Rejected, &["crm"]);
    bad.sequence = u64::MAX; // beyond bigint: fails after the snapshots were written
    let err = store
        .commit_page(
            "gh:1",
            PageCommit {
                snapshots: vec![snap("a", true)],
                events: vec![event("e1", "a", 1, EventType::StageChanged, &["crm"]), bad],
            },
        )
        .await
        .expect_err("fails");
    assert!(matches!(err, StoreError::Io(_)), "{err:?}");
    assert_eq!(one_snapshot(&store, "gh:1", "a").await, None);
    assert_eq!(
        store.sync_state("gh:1").await.unwrap(),
        SyncState::default()
    );
    assert!(store.event_by_id("e1").await.unwrap().is_none());
    assert!(store.outbox("crm").await.unwrap().is_empty());
    // The ids and the sequence numbers were not used up.
    let written = log(
        &store,
        vec![event("e1", "a", 1, EventType::StageChanged, &["crm"])],
    )
    .await;
    assert_eq!(seqs(&written), [1]);
}

#[tokio::test]
async fn timestamps_round_trip_to_the_microsecond() {
    let store = store!();
    let mut e = event("e1", "a", 1, EventType::StageChanged, &["crm"]);
    e.detected_at = chrono::Utc
        .timestamp_opt(1_700_000_000, 123_456_789)
        .single()
        .expect("valid");
    let written = log(&store, vec![e]).await;
    assert_eq!(written[0].detected_at.timestamp_subsec_nanos(), 123_456_000);
    assert_eq!(
        store.event_by_id("e1").await.unwrap().as_ref(),
        Some(&written[0])
    );
    let entry = &store.outbox("crm").await.unwrap()[0].1;
    assert_eq!(entry.due_at, written[0].detected_at);
}

#[tokio::test]
async fn log_sequences_have_no_gaps_across_concurrent_handles() {
    let url = database!();
    let a = connect(&url).await.without_fencing();
    let b = connect(&url).await.without_fencing();
    let mut tasks = Vec::new();
    for (n, store) in [a.clone(), b.clone(), a, b].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for page in 0..10 {
                let events = (0..3)
                    .map(|i| {
                        let id = format!("t{n}_p{page}_e{i}");
                        event(&id, &id, 1, EventType::StageChanged, &["crm"])
                    })
                    .collect();
                let written = store
                    .commit_page(&format!("gh:{n}"), events_page(events))
                    .await
                    .expect("commit");
                got.extend(seqs(&written));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let got = t.await.expect("task");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "increasing per writer");
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=120).collect::<Vec<u64>>());
    let store = open_existing(&url).await;
    let logged = store.events(&EventFilter::default()).await.unwrap();
    assert_eq!(seqs(&logged), (1..=120).collect::<Vec<u64>>());
}

/// The check by id (no `event_ids` since schema 4): an event whose id is already logged,
/// held, or held and dropped is skipped even when its sequence is above its application's
/// stored snapshot's (so the sequence check lets it through); two events with one id in a
/// page log the first. Nothing is written for them: no outbox row, no log sequence.
#[tokio::test]
async fn a_known_id_above_the_snapshots_sequence_is_not_logged_again() {
    use crate::diff::Snapshot;
    let store = store!();
    let real = |app: &str, sequence: u64, is_new: bool| SnapshotWrite {
        application_id: app.into(),
        bytes: Snapshot {
            sequence,
            ..Snapshot::default()
        }
        .encode(),
        is_new,
        previous_deleted_at: None,
    };
    let first = store
        .commit_page(
            "gh:1",
            PageCommit {
                snapshots: vec![real("a", 1, true), real("b", 1, true), real("c", 1, true)],
                events: vec![
                    event("e1", "a", 1, EventType::StageChanged, &["crm"]),
                    held("h1", "b", 1, &["crm"]),
                    held("d1", "c", 1, &["crm"]),
                ],
            },
        )
        .await
        .expect("first");
    assert_eq!(seqs(&first), [1, 2, 3]);
    assert_eq!(store.drop_held("gh:1", &[3]).await.expect("drop"), 1);

    // The same ids at sequence 2, above the stored snapshots' 1: only the id refuses them.
    let again = store
        .commit_page(
            "gh:1",
            events_page(vec![
                event("e1", "a", 2, EventType::StageChanged, &["crm"]),
                event("h1", "b", 2, EventType::StageChanged, &["crm"]),
                event("d1", "c", 2, EventType::StageChanged, &["crm"]),
            ]),
        )
        .await
        .expect("again");
    assert!(again.is_empty(), "{again:?}");
    let logged = store.events(&EventFilter::default()).await.unwrap();
    assert_eq!(
        logged
            .iter()
            .map(|r| (r.id.as_str(), r.sequence, r.log_seq))
            .collect::<Vec<_>>(),
        [("e1", 1, 1)]
    );
    assert_eq!(seqs(&store.held_events("gh:1").await.unwrap()), [2]);
    assert_eq!(store.outbox("crm").await.unwrap().len(), 1);

    // One id twice in a page: the first is logged, once.
    let twice = store
        .commit_page(
            "gh:1",
            events_page(vec![
                event("e2", "a", 2, EventType::StageChanged, &["crm"]),
                event("e2", "a", 3, EventType::StageChanged, &["crm"]),
            ]),
        )
        .await
        .expect("twice");
    assert_eq!(
        twice
            .iter()
            .map(|r| (r.id.as_str(), r.sequence, r.log_seq))
            .collect::<Vec<_>>(),
        [("e2", 2, 4)],
        "no log sequence was used for the refused ones"
    );
    assert_eq!(store.outbox("crm").await.unwrap().len(), 2);
    let by_id = store.event_by_id("e1").await.unwrap().expect("e1");
    assert_eq!((by_id.sequence, by_id.log_seq), (1, 1));
}

async fn open_existing(url: &str) -> PgStore {
    connect(url).await.without_fencing()
}

mod schema {
    use super::*;

    #[tokio::test]
    async fn a_second_connect_migrates_nothing_and_keeps_the_data() {
        let url = database!();
        assert_eq!(migrate(&url).await.unwrap(), SCHEMA_VERSION);
        let store = open_existing(&url).await;
        log(
            &store,
            vec![event("e1", "a", 1, EventType::StageChanged, &[])],
        )
        .await;
        let again = open_existing(&url).await;
        assert_eq!(
            again.events(&EventFilter::default()).await.unwrap().len(),
            1
        );
        assert_eq!(migrate(&url).await.unwrap(), SCHEMA_VERSION);
        let written = log(
            &again,
            vec![event("e2", "a", 2, EventType::StageChanged, &[])],
        )
        .await;
        assert_eq!(seqs(&written), [2]);
    }

    #[tokio::test]
    async fn replicas_starting_together_both_connect() {
        let url = database!();
        let (a, b, c) = tokio::join!(
            PgStore::connect(&url, 2),
            PgStore::connect(&url, 2),
            migrate(&url)
        );
        let (a, b) = (a.expect("first"), b.expect("second"));
        assert_eq!(c.expect("migrate"), SCHEMA_VERSION);
        assert_ne!(a.replica_id(), b.replica_id());
        let client = a.client().await.unwrap();
        let rows = client
            .query("SELECT version FROM hirehook_schema_version", &[])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, i32>(0) as u32, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn migrating_from_version_1_indexes_the_deleted_snapshots_already_there() {
        use crate::diff::Snapshot;
        let url = database!();
        let server = Server::parse(&url).unwrap();
        let client = server.connect_one().await.unwrap();
        client
            .batch_execute(
                "CREATE TABLE hirehook_schema_version (version integer NOT NULL); \
                 INSERT INTO hirehook_schema_version VALUES (1)",
            )
            .await
            .unwrap();
        client
            .batch_execute(include_str!("migrations/0001_initial.sql"))
            .await
            .unwrap();
        let deleted = Snapshot {
            sequence: 4,
            deleted_at: Some(at(7)),
            ..Snapshot::default()
        }
        .encode();
        let live = Snapshot {
            sequence: 2,
            ..Snapshot::default()
        }
        .encode();
        client
            .execute(
                "INSERT INTO snapshots VALUES ('gh:1', 'gone', $1), ('gh:1', 'live', $2), \
                 ('gh:1', 'junk', '\\x01')",
                &[&deleted, &live],
            )
            .await
            .unwrap();
        assert_eq!(migrate(&url).await.unwrap(), SCHEMA_VERSION);
        let rows = client
            .query(
                "SELECT application_id, deleted_at FROM snapshots ORDER BY application_id",
                &[],
            )
            .await
            .unwrap();
        let got: Vec<(String, Option<Timestamp>)> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(
            got,
            [
                ("gone".to_owned(), Some(at(7))),
                ("junk".to_owned(), None),
                ("live".to_owned(), None),
            ]
        );
    }

    /// A database an older hirehook left at schema 3, with ids in `event_ids` (of a logged,
    /// a held and a dropped held event): migration 4 drops the table, and the ids stay
    /// known through the events, held events and dropped-event markers.
    #[tokio::test]
    async fn migrating_from_version_3_drops_event_ids_and_keeps_the_ids_known() {
        use crate::diff::Snapshot;
        let url = database!();
        assert_eq!(super::super::migrate::migrate_to(&url, 3).await.unwrap(), 3);
        let server = Server::parse(&url).unwrap();
        let client = server.connect_one().await.unwrap();
        let snapshot = Snapshot {
            sequence: 1,
            ..Snapshot::default()
        }
        .encode();
        client
            .execute(
                "INSERT INTO snapshots (integration_id, application_id, bytes) \
                 VALUES ('gh:1', 'a', $1), ('gh:1', 'b', $1), ('gh:1', 'c', $1)",
                &[&snapshot],
            )
            .await
            .unwrap();
        let kind = EventType::StageChanged.as_str();
        let columns = super::super::log::EVENT_COLUMNS;
        for table in ["events", "held_events"] {
            let (seq, id, app) = if table == "events" {
                (1i64, "e1", "a")
            } else {
                (2, "h1", "b")
            };
            client
                .execute(
                    &format!(
                        "INSERT INTO {table} ({columns}) \
                         VALUES ($1, $2, $3, 'gh:1', $4, 1, now(), '[]', '\\x7b7d')"
                    ),
                    &[&seq, &id, &kind, &app],
                )
                .await
                .unwrap();
        }
        client
            .batch_execute(
                "INSERT INTO dropped_events (log_seq, id, detected_at) VALUES (3, 'd1', now()); \
                 INSERT INTO event_ids (id) VALUES ('e1'), ('h1'), ('d1'); \
                 UPDATE log_counter SET last = 3",
            )
            .await
            .unwrap();

        assert_eq!(migrate(&url).await.unwrap(), SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 5);
        let row = client
            .query_one(
                "SELECT (SELECT max(version) FROM hirehook_schema_version), \
                 to_regclass('event_ids') IS NULL, \
                 to_regclass('dropped_events_by_id') IS NOT NULL, \
                 to_regclass('delivery_leases') IS NOT NULL",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (
                row.get::<_, i32>(0),
                row.get::<_, bool>(1),
                row.get::<_, bool>(2),
                row.get::<_, bool>(3)
            ),
            (5, true, true, true)
        );

        let store = open_existing(&url).await;
        // Above the snapshots' sequence: refused by id alone.
        let again = log(
            &store,
            vec![
                event("e1", "a", 2, EventType::StageChanged, &["crm"]),
                event("h1", "b", 2, EventType::StageChanged, &["crm"]),
                event("d1", "c", 2, EventType::StageChanged, &["crm"]),
            ],
        )
        .await;
        assert!(again.is_empty(), "{again:?}");
        let next = log(
            &store,
            vec![event("e2", "a", 2, EventType::StageChanged, &["crm"])],
        )
        .await;
        assert_eq!(
            seqs(&next),
            [4],
            "the log continues after the dropped event"
        );
        assert_eq!(
            store
                .events(&EventFilter::default())
                .await
                .unwrap()
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            ["e1", "e2"]
        );
        assert_eq!(seqs(&store.held_events("gh:1").await.unwrap()), [2]);
        // A migrated database is at the latest version: migrating again does nothing.
        assert_eq!(migrate(&url).await.unwrap(), SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let url = database!();
        let store = open_existing(&url).await;
        store
            .client()
            .await
            .unwrap()
            .execute("UPDATE hirehook_schema_version SET version = 99", &[])
            .await
            .unwrap();
        let err = PgStore::connect(&url, 1).await.expect_err("refused");
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, known } if known == SCHEMA_VERSION),
            "{err:?}"
        );
        let shown = err.to_string();
        assert!(
            shown.contains("version 99") && shown.contains("upgrade hirehook"),
            "{shown}"
        );
    }
}

mod connect_errors {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_names_the_target_not_the_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let url = format!("postgres://hirehook:s3cretpw@127.0.0.1:{port}/hooks?connect_timeout=5");
        let err = PgStore::connect(&url, 1).await.expect_err("refused");
        let shown = format!("{err} {err:?}");
        assert!(matches!(err, StoreError::Database { .. }), "{shown}");
        assert!(
            shown.contains(&format!("127.0.0.1:{port}/hooks")),
            "{shown}"
        );
        assert!(shown.to_lowercase().contains("refused"), "{shown}");
        assert!(!shown.contains("s3cretpw"), "{shown}");
        let err = migrate(&url).await.expect_err("refused");
        assert!(!format!("{err:?}").contains("s3cretpw"));
    }

    #[tokio::test]
    async fn a_bad_url_is_described_without_the_password() {
        let cases = [
            "postgres://u:s3cretpw@h:notaport/db",
            "postgres://u:s3cretpw@h/db?sslmode=sometimes",
            "postgres://u:s3cretpw@h/db?nosuchoption=1",
        ];
        for url in cases {
            let err = PgStore::connect(url, 1).await.expect_err(url);
            let shown = format!("{err} {err:?}");
            assert!(matches!(err, StoreError::Database { .. }), "{shown}");
            assert!(!shown.contains("s3cretpw"), "{shown}");
        }
    }

    /// This process's scratch server, when the tests use one (not with
    /// `HIREHOOK_TEST_DATABASE_URL`: another server's roles, passwords and TLS are not ours
    /// to know).
    async fn own_scratch() -> Option<&'static scratch::ScratchServer> {
        test_database().await?;
        if std::env::var("HIREHOOK_TEST_DATABASE_URL").is_ok_and(|u| !u.trim().is_empty()) {
            return None;
        }
        scratch::scratch_server().ok()
    }

    #[tokio::test]
    async fn a_missing_database_a_wrong_password_or_role_is_named() {
        let Some(server) = own_scratch().await else {
            return;
        };
        let port = server.port();
        let pw = scratch::SCRATCH_PASSWORD;
        let url = format!("postgres://postgres:{pw}@127.0.0.1:{port}/no_such_db?sslmode=disable");
        let err = PgStore::connect(&url, 1).await.expect_err("missing");
        let shown = err.to_string();
        assert!(matches!(err, StoreError::Database { .. }), "{shown}");
        assert!(
            shown.contains(&format!("127.0.0.1:{port}/no_such_db")),
            "{shown}"
        );
        assert!(shown.contains("does not exist"), "{shown}");
        assert!(!shown.contains(pw), "{shown}");
        let url = format!("postgres://postgres:s3cretpw@127.0.0.1:{port}/postgres?sslmode=disable");
        let err = PgStore::connect(&url, 1).await.expect_err("wrong password");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("password authentication failed"), "{shown}");
        assert!(
            shown.contains(&format!("127.0.0.1:{port}/postgres")),
            "{shown}"
        );
        assert!(!shown.contains("s3cretpw"), "{shown}");
        let url = format!("postgres://nobody:{pw}@127.0.0.1:{port}/postgres?sslmode=disable");
        let err = PgStore::connect(&url, 1).await.expect_err("no role");
        assert!(err.to_string().contains("nobody"), "{err}");
    }

    #[tokio::test]
    async fn tls_modes_do_what_libpq_says() {
        let Some(server) = own_scratch().await else {
            return;
        };
        let (port, pw) = (server.port(), scratch::SCRATCH_PASSWORD);
        let url = |host: &str, params: &str| {
            format!("postgres://postgres:{pw}@{host}:{port}/postgres?{params}")
        };
        let Some(root) = server.tls_root() else {
            // A server without TLS: required TLS fails clearly, preferred falls back.
            eprintln!("no openssl: the scratch server has no TLS; testing the plain case only");
            let err = PgStore::connect(&url("127.0.0.1", "sslmode=require"), 1)
                .await
                .expect_err("no TLS");
            assert!(matches!(err, StoreError::Database { .. }), "{err:?}");
            migrate(&url("127.0.0.1", "sslmode=prefer"))
                .await
                .expect("prefer falls back to plain");
            return;
        };
        let root = url::form_urlencoded::byte_serialize(root.to_string_lossy().as_bytes())
            .collect::<String>();
        let encrypted = |store: PgStore| async move {
            let client = store.client().await.expect("client");
            client
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await
                .expect("pg_stat_ssl")
                .get::<_, bool>(0)
        };
        let works = [
            ("127.0.0.1", "sslmode=require".to_owned(), true),
            ("127.0.0.1", "sslmode=prefer".to_owned(), true),
            ("127.0.0.1", "sslmode=disable".to_owned(), false),
            (
                "localhost",
                format!("sslmode=verify-full&sslrootcert={root}"),
                true,
            ),
            (
                "127.0.0.1",
                format!("sslmode=verify-ca&sslrootcert={root}"),
                true,
            ),
        ];
        for (host, params, tls) in works {
            let store = PgStore::connect(&url(host, &params), 1)
                .await
                .unwrap_or_else(|e| panic!("{host} {params}: {e}"));
            assert_eq!(encrypted(store).await, tls, "{host} {params}");
        }
        let fails = [
            // The certificate is for localhost.
            (
                "127.0.0.1",
                format!("sslmode=verify-full&sslrootcert={root}"),
            ),
            // Not signed by a root the system trusts.
            ("localhost", "sslmode=verify-full".to_owned()),
            ("localhost", "sslmode=verify-ca".to_owned()),
        ];
        for (host, params) in fails {
            let err = PgStore::connect(&url(host, &params), 1)
                .await
                .expect_err(&params);
            let shown = format!("{err} {err:?}");
            assert!(matches!(err, StoreError::Database { .. }), "{shown}");
            assert!(!shown.contains(pw), "{shown}");
        }
    }
}

mod fencing {
    use super::*;

    const TTL: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn a_commit_without_the_lease_writes_nothing() {
        let url = database!();
        let store = connect(&url).await;
        let page = || PageCommit {
            snapshots: vec![snap("a", true)],
            events: vec![event("e1", "a", 1, EventType::StageChanged, &["crm"])],
        };
        let err = store.commit_page("gh:1", page()).await.expect_err("fenced");
        assert!(
            matches!(&err, StoreError::LeaseLost { integration } if integration == "gh:1"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("no longer holds the lease on integration gh:1")
        );
        let err = store
            .put_sync_state("gh:1", &SyncState::default())
            .await
            .expect_err("fenced");
        assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
        let reader = open_existing(&url).await;
        assert_eq!(one_snapshot(&reader, "gh:1", "a").await, None);
        assert!(reader.event_by_id("e1").await.unwrap().is_none());
        assert!(reader.outbox("crm").await.unwrap().is_empty());

        assert!(
            store
                .try_lease("gh:1", Duration::from_secs(30))
                .await
                .unwrap()
        );
        let written = store.commit_page("gh:1", page()).await.expect("leased");
        assert_eq!(
            seqs(&written),
            [1],
            "nothing was used up by the refused commit"
        );
        store
            .put_sync_state("gh:1", &SyncState::default())
            .await
            .expect("leased");
        let err = store
            .commit_page("gh:2", events_page(vec![]))
            .await
            .expect_err("a lease covers one integration");
        assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_lease_is_one_replicas_until_it_expires() {
        let url = database!();
        let a = connect(&url).await;
        let b = connect(&url).await;
        assert!(a.try_lease("gh:1", TTL).await.unwrap());
        assert!(a.try_lease("gh:1", TTL).await.unwrap(), "renewed");
        assert!(!b.try_lease("gh:1", TTL).await.unwrap(), "held by a");
        assert!(
            b.try_lease("gh:2", Duration::from_secs(30)).await.unwrap(),
            "another integration"
        );
        let leases = a.leases().await.unwrap();
        let holders: Vec<(&str, &str)> = leases
            .iter()
            .map(|(i, h, _)| (i.as_str(), h.as_str()))
            .collect();
        assert_eq!(
            holders,
            [("gh:1", a.replica_id()), ("gh:2", b.replica_id())]
        );

        tokio::time::sleep(TTL + Duration::from_millis(200)).await;
        assert!(b.try_lease("gh:1", TTL).await.unwrap(), "expired: taken");
        // a was paused past its lease: its commit is refused, b's goes through.
        let err = a
            .commit_page(
                "gh:1",
                events_page(vec![event("e1", "a", 1, EventType::StageChanged, &[])]),
            )
            .await
            .expect_err("fenced");
        assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");
        assert!(!a.try_lease("gh:1", TTL).await.unwrap());
        b.commit_page(
            "gh:1",
            events_page(vec![event("e1", "a", 1, EventType::StageChanged, &[])]),
        )
        .await
        .expect("b holds it");

        b.release_lease("gh:1").await.unwrap();
        a.release_lease("gh:2").await.unwrap(); // not a's: nothing happens
        assert!(a.try_lease("gh:1", TTL).await.unwrap(), "released: free");
        assert!(!a.try_lease("gh:2", TTL).await.unwrap(), "still b's");
    }

    #[tokio::test]
    async fn a_delivery_lease_is_one_replicas_until_it_expires_or_is_given_back() {
        let url = database!();
        let a = connect(&url).await;
        let b = connect(&url).await;
        assert!(a.try_delivery_lease("hooks", TTL).await.unwrap());
        assert!(a.try_delivery_lease("hooks", TTL).await.unwrap(), "renewed");
        assert!(
            !b.try_delivery_lease("hooks", TTL).await.unwrap(),
            "held by a"
        );
        assert!(
            b.try_lease("hooks", Duration::from_secs(30)).await.unwrap(),
            "an integration of the same name is another lease"
        );
        assert!(
            b.try_delivery_lease("crm", Duration::from_secs(30))
                .await
                .unwrap(),
            "another subscriber"
        );
        let leases = a.delivery_leases().await.unwrap();
        let holders: Vec<(&str, &str)> = leases
            .iter()
            .map(|(s, h, _)| (s.as_str(), h.as_str()))
            .collect();
        assert_eq!(
            holders,
            [("crm", b.replica_id()), ("hooks", a.replica_id())]
        );

        tokio::time::sleep(TTL + Duration::from_millis(200)).await;
        assert!(
            b.try_delivery_lease("hooks", TTL).await.unwrap(),
            "expired: taken"
        );
        assert!(!a.try_delivery_lease("hooks", TTL).await.unwrap());
        a.release_delivery_lease("crm").await.unwrap(); // not a's: nothing happens
        assert!(
            !a.try_delivery_lease("crm", TTL).await.unwrap(),
            "still b's"
        );
        b.release_delivery_lease("hooks").await.unwrap();
        assert!(
            a.try_delivery_lease("hooks", TTL).await.unwrap(),
            "given back: free"
        );
    }

    #[tokio::test]
    async fn heartbeats_count_live_replicas() {
        let url = database!();
        let a = connect(&url).await;
        let b = connect(&url).await;
        assert_eq!(a.heartbeat(Duration::from_secs(30)).await.unwrap(), 1);
        assert_eq!(b.heartbeat(TTL).await.unwrap(), 2);
        assert_eq!(a.heartbeat(Duration::from_secs(30)).await.unwrap(), 2);
        tokio::time::sleep(TTL + Duration::from_millis(200)).await;
        assert_eq!(
            a.heartbeat(Duration::from_secs(30)).await.unwrap(),
            1,
            "b went quiet"
        );
    }
}

mod wakeups {
    use super::*;

    #[tokio::test]
    async fn a_commit_on_one_handle_wakes_a_listener_on_another() {
        let url = database!();
        let a = open_existing(&url).await;
        let b = open_existing(&url).await;
        let mut wake = a.listen().await.expect("listen");
        let before = *wake.borrow_and_update();
        b.commit_page(
            "gh:1",
            events_page(vec![event("e1", "a", 1, EventType::StageChanged, &["crm"])]),
        )
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), wake.changed())
            .await
            .expect("woken within 5 s")
            .expect("listener alive");
        assert_ne!(*wake.borrow_and_update(), before);

        // Releases and retried dead letters wake too.
        b.commit_page("gh:1", events_page(vec![held("e2", "b", 1, &["crm"])]))
            .await
            .unwrap();
        b.release_held("gh:1", None).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), wake.changed())
            .await
            .expect("woken by the release")
            .expect("listener alive");
    }

    #[tokio::test]
    async fn the_listener_comes_back_after_its_connection_is_killed() {
        let url = database!();
        let a = open_existing(&url).await;
        let mut wake = a.listen().await.expect("listen");
        wake.borrow_and_update();
        let admin = a.client().await.unwrap();
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE query LIKE 'LISTEN%' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap();
        // Reconnecting bumps the counter (something may have been missed meanwhile).
        tokio::time::timeout(Duration::from_secs(20), wake.changed())
            .await
            .expect("reconnected")
            .expect("listener alive");
        wake.borrow_and_update();
        a.commit_page(
            "gh:1",
            events_page(vec![event("e1", "a", 1, EventType::StageChanged, &["crm"])]),
        )
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), wake.changed())
            .await
            .expect("woken on the new connection")
            .expect("listener alive");
    }
}

mod delivery {
    use super::*;

    const HOLD: Duration = Duration::from_secs(60);

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

    async fn claim(store: &PgStore, now: i64) -> Vec<DueDelivery> {
        store
            .claim_due("crm", at(now), 100, HOLD)
            .await
            .expect("claim")
    }

    /// Two applications: `a` has events 1 and 3, `b` has event 2.
    async fn setup() -> Option<PgStore> {
        let store = open().await?;
        log(
            &store,
            vec![
                event("e1", "a", 1, EventType::StageChanged, &["crm"]),
                event("e2", "b", 1, EventType::StageChanged, &["crm"]),
                event("e3", "a", 2, EventType::Rejected, &["crm"]),
            ],
        )
        .await;
        Some(store)
    }

    macro_rules! setup {
        () => {
            match setup().await {
                Some(store) => store,
                None => return,
            }
        };
    }

    /// Claims delivery `seq` (only: the others claimed with it are given back).
    async fn one(store: &PgStore, seq: u64, now: i64) -> DueDelivery {
        let due = claim(store, now)
            .await
            .into_iter()
            .find(|d| d.log_seq == seq)
            .unwrap_or_else(|| panic!("{seq} is not claimable at {now}"));
        let client = store.client().await.unwrap();
        client
            .execute(
                "UPDATE outbox SET claimed_until = NULL, claimed_by = NULL \
                 WHERE subscriber = 'crm' AND log_seq <> $1",
                &[&(seq as i64)],
            )
            .await
            .unwrap();
        due
    }

    #[tokio::test]
    async fn a_claim_after_a_backfill_probes_the_application_index() {
        let store = store!();
        // More than the first ANALYZE threshold, in pages of 1,000.
        for page in 0..11 {
            let events = (0..1000)
                .map(|i| {
                    let n = page * 1000 + i;
                    event(
                        &format!("e{n}"),
                        &format!("app{}", n % 500),
                        n / 500 + 1,
                        EventType::StageChanged,
                        &["crm"],
                    )
                })
                .collect();
            log(&store, events).await;
        }
        let client = store.client().await.unwrap();
        let explain = |sql: String| {
            let client = &client;
            async move {
                client
                    .query(&format!("EXPLAIN {sql}"), &[])
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        };
        // The claim walks the due index in order and stops at its limit...
        let plan = explain(
            super::super::outbox::CLAIMABLE
                .replace("$1", "'crm'")
                .replace("$2", "now()")
                .replace("$3", "64")
                .replace("$6", "'1970-01-01'::timestamptz")
                .replace("$7", "-1"),
        )
        .await;
        assert!(
            plan.contains("Index Scan using outbox_pending_due"),
            "{plan}"
        );
        assert!(
            !plan.contains("Seq Scan") && !plan.contains("Sort"),
            "{plan}"
        );
        // ... and the head check is one probe of the per-application index.
        let plan = explain(
            "SELECT p.log_seq FROM outbox p WHERE p.subscriber = 'crm' \
             AND p.integration_id = 'gh:1' AND p.application_id = 'app7' AND p.state = 'pending' \
             ORDER BY p.subscriber, p.integration_id, p.application_id, p.log_seq LIMIT 1"
                .to_owned(),
        )
        .await;
        assert!(plan.contains("outbox_pending_by_application"), "{plan}");
        assert_eq!(claim(&store, 100_000).await.len(), 100);
    }

    #[tokio::test]
    async fn a_410_on_one_replica_stops_the_claims_of_another() {
        let url = database!();
        let a = open_existing(&url).await;
        let b = open_existing(&url).await;
        log(
            &a,
            vec![
                event("e1", "a", 1, EventType::StageChanged, &["crm"]),
                event("e2", "b", 1, EventType::StageChanged, &["crm"]),
                event("e3", "c", 1, EventType::StageChanged, &["crm"]),
            ],
        )
        .await;
        // B's deliverer saw crm enabled a moment ago ...
        assert_eq!(b.disabled_reason("crm").await.unwrap(), None);
        // ... then A's 410 lands ...
        let first = a.claim_due("crm", at(10), 1, HOLD).await.unwrap();
        assert_eq!(seqs_of(&first), [1]);
        a.record_attempt(
            "crm",
            &first[0],
            &attempt(1, 10, 410),
            AttemptResult::Disable {
                reason: "410 Gone".into(),
            },
        )
        .await
        .unwrap();
        // ... and B's claim hands out nothing, though two more are due and the first is
        // unclaimed again.
        assert!(
            b.claim_due("crm", at(10), 100, HOLD)
                .await
                .unwrap()
                .is_empty()
        );
        let client = b.client().await.unwrap();
        let unclaimed: i64 = client
            .query_one(
                "SELECT count(*) FROM outbox WHERE subscriber = 'crm' AND state = 'pending' \
                 AND claimed_by IS NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(unclaimed, 3, "no claim was set by the refused claim");
        assert!(b.enable_subscriber("crm").await.unwrap());
        assert_eq!(
            seqs_of(&a.claim_due("crm", at(10), 100, HOLD).await.unwrap()),
            [1, 2, 3]
        );
    }

    fn seqs_of(due: &[DueDelivery]) -> Vec<u64> {
        due.iter().map(|d| d.log_seq).collect()
    }

    #[tokio::test]
    async fn concurrent_claimants_never_share_a_delivery() {
        let url = database!();
        let writer = open_existing(&url).await;
        let events: Vec<NewEvent> = (0..300)
            .map(|i| {
                event(
                    &format!("e{i}"),
                    &format!("app{}", i % 100),
                    i / 100 + 1,
                    EventType::StageChanged,
                    &["crm"],
                )
            })
            .collect();
        log(&writer, events).await;
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let store = open_existing(&url).await;
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                let mut idle = 0;
                while idle < 3 {
                    let due = store
                        .claim_due("crm", at(1000), 7, HOLD)
                        .await
                        .expect("claim");
                    if due.is_empty() {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    idle = 0;
                    for d in due {
                        store
                            .record_attempt(
                                "crm",
                                &d,
                                &attempt(1, 1000, 200),
                                AttemptResult::Delivered,
                            )
                            .await
                            .expect("record");
                        got.push((d.entry.application_id.clone(), d.entry.sequence, d.log_seq));
                    }
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        let unique: BTreeSet<u64> = all.iter().map(|(_, _, s)| *s).collect();
        assert_eq!(all.len(), 300, "each delivery once");
        assert_eq!(unique.len(), 300);
        let summary = writer.queue_summary("crm").await.unwrap();
        assert_eq!((summary.pending, summary.dead), (0, 0));
        assert_eq!(
            writer.subscriber_backlog("crm").await.unwrap().delivered,
            300
        );
    }

    #[tokio::test]
    async fn attempts_recorded_at_once_are_each_applied_and_answered() {
        let store = store!();
        let events = (0..50)
            .map(|i| {
                event(
                    &format!("e{i}"),
                    &format!("app{i}"),
                    1,
                    EventType::StageChanged,
                    &["crm"],
                )
            })
            .collect();
        log(&store, events).await;
        let due = claim(&store, 100).await;
        assert_eq!(due.len(), 50);
        let first = due[0].clone();
        let missing = DueDelivery {
            log_seq: 999,
            ..first.clone()
        };
        let mut calls = Vec::new();
        for d in due.iter().skip(1) {
            calls.push((d.clone(), attempt(1, 10, 200), AttemptResult::Delivered));
        }
        // Two attempts of one delivery at once: both count, in order.
        calls.push((
            first.clone(),
            attempt(1, 10, 500),
            AttemptResult::Retry { due_at: at(20) },
        ));
        calls.push((
            first.clone(),
            attempt(2, 20, 500),
            AttemptResult::Retry { due_at: at(30) },
        ));
        calls.push((missing, attempt(1, 10, 200), AttemptResult::Delivered));
        let results = futures::future::join_all(
            calls
                .iter()
                .map(|(d, a, r)| store.record_attempt("crm", d, a, r.clone())),
        )
        .await;
        let (last, rest) = results.split_last().expect("results");
        assert!(matches!(last, Err(StoreError::Corrupt { .. })), "{last:?}");
        assert!(rest.iter().all(Result::is_ok), "{rest:?}");
        let summary = store.subscriber_backlog("crm").await.unwrap();
        assert_eq!((summary.delivered, summary.pending), (49, 1));
        let entry = store
            .delivery("crm", first.log_seq)
            .await
            .unwrap()
            .expect("entry");
        assert_eq!((entry.attempts, entry.due_at), (2, at(30)));
        assert_eq!(
            store.attempts("crm", first.log_seq).await.unwrap(),
            [attempt(1, 10, 500), attempt(2, 20, 500)]
        );
    }

    #[tokio::test]
    async fn an_attempt_error_is_the_last_error() {
        let store = setup!();
        let d = one(&store, 1, 100).await;
        let failed = AttemptRecord {
            status: None,
            error: Some("connection refused".into()),
            ..attempt(1, 10, 0)
        };
        store
            .record_attempt("crm", &d, &failed, AttemptResult::Retry { due_at: at(20) })
            .await
            .unwrap();
        let entry = store.delivery("crm", 1).await.unwrap().expect("entry");
        assert_eq!(entry.last_error.as_deref(), Some("connection refused"));
        let backlog = store.subscriber_backlog("crm").await.unwrap();
        assert_eq!(
            backlog,
            SubscriberBacklog {
                pending: 3,
                delivered: 0,
                dead: 0,
                oldest_pending: Some(at(1)),
                last_error: Some((at(10), "connection refused".into())),
            }
        );
        let missing = DueDelivery { log_seq: 99, ..d };
        let err = store
            .record_attempt("crm", &missing, &failed, AttemptResult::Delivered)
            .await
            .expect_err("no such delivery");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn deliveries_filter_by_subscriber_state_and_event() {
        let store = store!();
        log(
            &store,
            vec![
                event("e1", "a", 1, EventType::StageChanged, &["crm", "slack"]),
                event("e2", "b", 1, EventType::StageChanged, &["slack"]),
            ],
        )
        .await;
        let key = |v: Vec<(String, u64, OutboxEntry)>| -> Vec<(String, u64)> {
            v.into_iter().map(|(s, q, _)| (s, q)).collect()
        };
        let all = key(store.deliveries(None, None, None).await.unwrap());
        assert_eq!(
            all,
            [("crm".into(), 1), ("slack".into(), 1), ("slack".into(), 2)]
        );
        let slack = key(store.deliveries(Some("slack"), None, None).await.unwrap());
        assert_eq!(slack, [("slack".into(), 1), ("slack".into(), 2)]);
        let e1 = key(store.deliveries(None, None, Some("e1")).await.unwrap());
        assert_eq!(e1, [("crm".into(), 1), ("slack".into(), 1)]);
        let pending = store
            .deliveries(Some("crm"), Some(DeliveryState::Pending), None)
            .await
            .unwrap();
        assert_eq!(pending.len(), 1);
        assert!(
            store
                .deliveries(None, Some(DeliveryState::Delivered), None)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.next_due_at("slack").await.unwrap(), Some(at(1)));
        assert_eq!(store.next_due_at("teams").await.unwrap(), None);
        assert_eq!(
            store.queue_summary("teams").await.unwrap(),
            QueueSummary::default()
        );
        assert_eq!(
            store.subscriber_backlog("teams").await.unwrap(),
            SubscriberBacklog::default()
        );
    }
}
