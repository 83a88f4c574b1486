//! What only the sled backend does: its directory lock, its own upgrades of stores written
//! by earlier builds, and deliveries claimable only after the flush that makes them
//! durable. The behaviour every backend shares is the contract suite
//! (`tests/it/store_contract.rs`).

use super::*;
use crate::store::fixtures::{at, event};
use crate::store::*;

fn open() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(&dir.path().join("db"), 8 << 20).expect("open");
    (dir, store)
}

#[test]
fn a_second_open_is_told_the_store_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let _first = SledStore::open(&path, 8 << 20).unwrap();
    let err = SledStore::open(&path, 8 << 20).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}

#[test]
fn a_torn_snapshot_left_by_a_crash_does_not_stop_the_store_opening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = SledStore::open(&path, 8 << 20).unwrap();
        store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![],
                    events: vec![event("e1", "a", 1, EventType::StageChanged, &["crm"])],
                },
            )
            .unwrap();
        store.flush().unwrap();
    }
    // What a kill -9 in the middle of sled's snapshot write leaves: a torn file that sorts
    // after every finished snapshot.
    std::fs::write(path.join("snap.FFFFFFFFFFFFFFFF.generating"), b"torn").unwrap();
    let store = SledStore::open(&path, 8 << 20).expect("opens despite the torn snapshot");
    assert_eq!(
        store.events(&EventFilter::default()).unwrap().len(),
        1,
        "what was flushed is still there"
    );
    assert!(!path.join("snap.FFFFFFFFFFFFFFFF.generating").exists());
}

mod delivery {
    use super::*;

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

    /// What `crm` could claim at `now` (claimed, then released again).
    fn due_seqs(store: &SledStore, now: i64) -> Vec<u64> {
        let claimed = store
            .claim_due("crm", at(now), 100, std::time::Duration::from_secs(60))
            .unwrap();
        for d in &claimed {
            store.release_claim(d).unwrap();
        }
        claimed.iter().map(|d| d.log_seq).collect()
    }

    /// A store directory to open, close and open again.
    fn store_path() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        (dir, path)
    }

    /// Commits `events` (no snapshots) for `gh:1`.
    fn log(store: &SledStore, events: Vec<NewEvent>) {
        store
            .commit_page(
                "gh:1",
                PageCommit {
                    events,
                    ..Default::default()
                },
            )
            .unwrap();
    }

    #[test]
    fn a_store_from_an_earlier_build_loses_its_index_keys_and_keeps_its_attempts() {
        let (_dir, path) = store_path();
        {
            let store = SledStore::open(&path, 8 << 20).expect("open");
            log(
                &store,
                vec![event("e1", "a", 1, EventType::StageChanged, &["crm"])],
            );
            // What earlier builds wrote besides the outbox entry: a queue key, a due key,
            // and the first attempt as its own record.
            let mut legacy_attempt = keys::attempt_prefix("crm", 1);
            legacy_attempt.extend_from_slice(&1u32.to_be_bytes());
            store
                .h()
                .unwrap()
                .tree
                .insert(legacy_attempt, encode_json(&attempt(1, 10, 500)).unwrap())
                .unwrap();
            store
                .h()
                .unwrap()
                .tree
                .insert(b"acrm\0gh:1\0a\0\0\0\0\0\0\0\0\x01", &[][..])
                .unwrap();
            store
                .h()
                .unwrap()
                .tree
                .insert(b"qcrm\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x01", &[][..])
                .unwrap();
            let mut entry = store.outbox("crm").unwrap()[0].1.clone();
            entry.attempts = 1;
            store
                .h()
                .unwrap()
                .tree
                .insert(keys::outbox("crm", 1), encode_json(&entry).unwrap())
                .unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(&path, 8 << 20).expect("reopen");
        assert_eq!(
            store.h().unwrap().tree.scan_prefix(b"a").count(),
            0,
            "queue keys removed"
        );
        assert_eq!(
            store.h().unwrap().tree.scan_prefix(b"q").count(),
            0,
            "due keys removed"
        );
        assert_eq!(
            due_seqs(&store, 100),
            [1],
            "still pending, rebuilt from the outbox"
        );
        let claimed = store
            .claim_due("crm", at(61), 1, std::time::Duration::from_secs(60))
            .unwrap();
        store
            .record_attempt(&claimed[0], &attempt(2, 61, 200), AttemptResult::Delivered)
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
}

#[test]
fn a_store_from_before_retention_gets_its_index_of_deleted_applications() {
    use crate::diff::Snapshot;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        // As an earlier build left it: snapshots, no index, no mark.
        let store = SledStore::open(&path, 8 << 20).unwrap();
        let deleted = Snapshot {
            sequence: 4,
            deleted_at: Some(at(0)),
            ..Snapshot::default()
        };
        store
            .h()
            .unwrap()
            .tree
            .insert(keys::snapshot("gh:1", "gone"), deleted.encode())
            .unwrap();
        store
            .h()
            .unwrap()
            .tree
            .insert(keys::snapshot("gh:1", "live"), Snapshot::default().encode())
            .unwrap();
        store
            .h()
            .unwrap()
            .tree
            .insert(
                keys::sync_state("gh:1"),
                serde_json::to_vec(&SyncState {
                    applications: 2,
                    ..SyncState::default()
                })
                .unwrap(),
            )
            .unwrap();
        store
            .h()
            .unwrap()
            .tree
            .remove(keys::meta("deleted_index"))
            .unwrap();
        for key in store.h().unwrap().tree.scan_prefix([keys::DELETED]).keys() {
            store.h().unwrap().tree.remove(key.unwrap()).unwrap();
        }
        store.flush().unwrap();
    }
    let store = SledStore::open(&path, 8 << 20).unwrap();
    let index: Vec<_> = store
        .h()
        .unwrap()
        .tree
        .scan_prefix([keys::DELETED])
        .keys()
        .map(|k| k.unwrap().to_vec())
        .collect();
    assert_eq!(
        index,
        [keys::deleted(at(0).timestamp_millis(), "gh:1", "gone")]
    );
    let policy = RetentionPolicy {
        events: None,
        deleted_applications: Some(std::time::Duration::from_secs(86_400)),
    };
    let report = store
        .sweep(&policy, at(2 * 86_400), 10, &mut SweepCursor::default())
        .unwrap();
    assert_eq!(report.snapshots, 1);
    assert_eq!(store.sync_state("gh:1").unwrap().applications, 1);
}

/// A tree's name and its keys and values, in order.
type TreeContents = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// Every key of every tree, for comparing stores.
fn everything(path: &std::path::Path) -> Vec<TreeContents> {
    let db = open_raw(path);
    let mut names: Vec<_> = db.tree_names();
    names.sort();
    let all = names
        .into_iter()
        .map(|name| {
            let tree = db.open_tree(&name).unwrap();
            let kvs = tree
                .iter()
                .map(|kv| {
                    let (k, v) = kv.unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect();
            (String::from_utf8_lossy(&name).into_owned(), kvs)
        })
        .collect();
    drop(db);
    all
}

/// The store's sled database opened directly, once the last handle of an earlier open has
/// let go of sled's file lock (its background flusher holds it a moment after a drop).
fn open_raw(path: &std::path::Path) -> ::sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match ::sled::Config::new().path(path).open() {
            Ok(db) => return db,
            Err(::sled::Error::Io(e))
                if e.to_string().contains("lock") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("cannot open {}: {e}", path.display()),
        }
    }
}

/// A store with most of its events removed by retention (closed again).
fn swept_store(path: &std::path::Path) {
    let store = SledStore::open(path, 8 << 20).unwrap();
    for page in 0..40u64 {
        let events = (0..250u64)
            .map(|i| {
                let n = page * 250 + i;
                let mut e = event(
                    &format!("e{n}"),
                    &format!("a{n}"),
                    1,
                    EventType::StageChanged,
                    &[],
                );
                e.body = vec![b'x'; 900];
                e.detected_at = at(n as i64);
                e
            })
            .collect();
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
    let policy = RetentionPolicy {
        events: Some(std::time::Duration::from_secs(1)),
        deleted_applications: None,
    };
    let mut cursor = SweepCursor::default();
    while store
        .sweep(&policy, at(9_000), 1000, &mut cursor)
        .unwrap()
        .more
    {}
    store.flush().unwrap();
}

#[test]
fn a_rewrite_gives_the_space_back_and_keeps_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    swept_store(&path);
    let before = everything(&path);
    let report = rewrite::rewrite(&path, 8 << 20).unwrap();
    assert!(
        report.after * 2 < report.before,
        "{} -> {}",
        report.before,
        report.after
    );
    assert_eq!(everything(&path), before);
    assert!(!path.join(".rewrite").exists());
    let store = SledStore::open(&path, 8 << 20).unwrap();
    let left = store.events(&EventFilter::default()).unwrap();
    assert_eq!(left.len(), 1001, "events detected at 8,999 s and after");
    let written = store
        .commit_page(
            "gh:1",
            PageCommit {
                snapshots: vec![],
                events: vec![event("next", "z", 1, EventType::StageChanged, &[])],
            },
        )
        .unwrap();
    assert_eq!(written[0].log_seq, 10_001, "the log continues");
}

#[test]
fn a_rewrite_cut_short_is_discarded_or_finished_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    swept_store(&path);
    let want = everything(&path);

    // Cut before its manifest: the old store stays as it was.
    std::fs::create_dir_all(path.join(".rewrite")).unwrap();
    std::fs::write(path.join(".rewrite").join("db"), b"half a store").unwrap();
    drop(SledStore::open(&path, 8 << 20).unwrap());
    assert!(!path.join(".rewrite").exists());
    assert_eq!(everything(&path), want);

    // Cut during the swap: the fresh store is complete, its `db` already moved, an old
    // snapshot file with a high name still there. The open finishes the swap.
    let fresh = tempfile::tempdir().unwrap();
    let copy = fresh.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&path).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    let report = rewrite::rewrite(&copy, 8 << 20).unwrap();
    assert!(report.after < report.before);
    // Stage the fresh files as a rewrite would have left them.
    let staged = path.join(".rewrite");
    std::fs::create_dir_all(&staged).unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&copy).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if entry.path().is_dir() {
            std::fs::create_dir_all(staged.join(&name)).unwrap();
        } else {
            std::fs::copy(entry.path(), staged.join(&name)).unwrap();
        }
        names.push(name);
    }
    std::fs::write(staged.join("MANIFEST"), names.join("\n")).unwrap();
    std::fs::rename(staged.join("db"), path.join("db")).unwrap();
    std::fs::write(path.join("snap.FFFFFFFFFFFFFFFF"), b"an old snapshot").unwrap();
    drop(SledStore::open(&path, 8 << 20).unwrap());
    assert!(!path.join(".rewrite").exists());
    assert!(!path.join("snap.FFFFFFFFFFFFFFFF").exists());
    assert_eq!(everything(&path), want);
    assert!(
        rewrite::dir_size(&path) * 2 < report.before,
        "the fresh files are in place"
    );
}

/// Whether any file under `dir` holds `needle`.
fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            files_contain(&path, needle)
        } else {
            std::fs::read(&path)
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        }
    })
}

/// An event of `app` whose body names the candidate `first`.
fn named_event(id: &str, app: &str, first: &str) -> NewEvent {
    NewEvent {
        body: format!(
            r#"{{"type":"stage_changed","data":{{"application":{{"id":"{app}","candidate":{{"id":"c-{app}","first_name":"{first}","last_name":null}}}}}}}}"#
        )
        .into_bytes(),
        ..event(id, app, 1, crate::event::EventType::StageChanged, &["crm"])
    }
}

#[test]
fn an_online_rewrite_leaves_no_trace_of_erased_values_and_the_store_goes_on() {
    let (dir, store) = open();
    let path = dir.path().join("db");
    let page = PageCommit {
        snapshots: vec![],
        events: vec![
            named_event("e1", "a", "Zebulonerased"),
            named_event("e2", "b", "Quentincontrol"),
        ],
    };
    store.commit_page("gh:1", page).unwrap();
    store.flush().unwrap();
    let report = store
        .erase(
            "gh:1",
            &crate::store::ErasureSubject::Application("a".into()),
        )
        .unwrap();
    assert_eq!(report.events, 1);
    assert!(
        files_contain(&path, b"Zebulonerased"),
        "sled keeps the overwritten value in its segments (else this test proves nothing)"
    );
    // Readers and a writer beside the rewrite: none fails, none blocks for good.
    std::thread::scope(|s| {
        let busy = s.spawn(|| {
            for i in 0..200 {
                store.event_by_id("e2").unwrap().expect("e2");
                store
                    .put_sync_state(
                        "gh:1",
                        &SyncState {
                            guard_decided_through: i,
                            ..SyncState::default()
                        },
                    )
                    .unwrap();
            }
        });
        let r = store.rewrite_online().expect("rewrite");
        assert!(r.keys > 0);
        busy.join().unwrap();
    });
    assert!(!files_contain(&path, b"Zebulonerased"), "no trace left");
    assert!(
        files_contain(&path, b"Quentincontrol"),
        "the control is still there"
    );
    // The store goes on: a commit, a read, a flush, and a reopen that sees them.
    store
        .commit_page(
            "gh:1",
            PageCommit {
                snapshots: vec![],
                events: vec![named_event("e3", "c", "Other")],
            },
        )
        .unwrap();
    store.flush().unwrap();
    assert_eq!(store.event_by_id("e3").unwrap().unwrap().log_seq, 3);
    assert_eq!(store.sync_state("gh:1").unwrap().guard_decided_through, 199);
    drop(store);
    let store = SledStore::open(&path, 8 << 20).expect("reopen");
    let ids: Vec<String> = store
        .events(&EventFilter::default())
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["e1", "e2", "e3"]);
    assert!(!path.join(".rewrite").exists());
}

/// An incremental poll whose records are all unchanged commits an empty page. sled would
/// apply even an empty batch: its global write lock, a sealed log buffer and a batch
/// marker in the log (24 bytes each, 48,000 for these 2,000 before the early return).
#[test]
fn an_empty_page_commit_writes_nothing() {
    let (_dir, store) = open();
    store.flush().expect("flush");
    let before = store.size_on_disk().expect("size");
    for _ in 0..2000 {
        let written = store
            .commit_page("acme", crate::store::PageCommit::default())
            .expect("commit");
        assert!(written.is_empty());
        store.flush().expect("flush");
    }
    assert_eq!(store.size_on_disk().expect("size"), before);
}
