//! Disk faults at start: a store that cannot be opened or written is a clear error (what
//! and where) with exit code 1, and never leaves a corrupt store behind: once the
//! condition is gone, the same store opens and works, with everything it held before.
//!
//! What "read-only" and "full" can mean here: the tests run as root in CI, where a
//! `chmod 0555` directory is still writable. So the read-only cases that hold for root
//! too are used (a store path under a regular file, a store path that is a file), and
//! the `chmod` case runs only where it takes effect (it says so when skipped). A full
//! disk cannot be made without privileges (no tmpfs mount); the closest thing any user
//! can make is a file size limit (`ulimit -f`, with `SIGXFSZ` ignored so writes fail with
//! `EFBIG` like they would with `ENOSPC`), under which a populated store must be written.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::common::ConfigBuilder;
use hirehook::sim::{Mutation, RunningSim, SimConfig, spawn};
use hirehook::store::{EventFilter, Store};
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(60);

async fn sim() -> RunningSim {
    spawn(SimConfig {
        integrations: 1,
        applications: 300,
        seed: 4,
        ..Default::default()
    })
    .await
    .expect("sim")
}

fn write_config(dir: &Path, store: &Path, sim: &RunningSim) -> std::path::PathBuf {
    let builder = ConfigBuilder::new(
        store,
        sim.base_url(),
        sim.sim().api_key(),
        sim.sim().integration_ids(),
    );
    let path = dir.join("hirehook.toml");
    std::fs::write(&path, builder.toml()).expect("config");
    path
}

/// Runs `hirehook <args> --config <config>`, optionally under `sh` with a prefix (e.g. a
/// `ulimit`), and returns its output.
async fn hirehook(config: &Path, args: &[&str], shell_prefix: Option<&str>) -> Output {
    let bin = env!("CARGO_BIN_EXE_hirehook");
    let mut cmd = match shell_prefix {
        None => Command::new(bin),
        Some(prefix) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("{prefix}; exec \"$0\" \"$@\""))
                .arg(bin);
            c
        }
    };
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("hirehook finishes within the limit")
        .expect("hirehook runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A store holding a baseline and some events; returns (snapshots, event ids).
async fn populate(config: &Path, store: &Path, sim: &RunningSim) -> (usize, Vec<String>) {
    let out = hirehook(config, &["sync", "--once"], None).await;
    assert!(out.status.success(), "baseline: {}", stderr(&out));
    let integration = sim.sim().integration_ids()[0].clone();
    for id in sim
        .sim()
        .application_ids(&integration)
        .into_iter()
        .filter(|id| {
            sim.sim()
                .application(&integration, id)
                .is_some_and(|a| a.remote_deleted_at.is_none())
        })
        .take(20)
    {
        sim.sim()
            .apply(&integration, &id, Mutation::ScheduleInterview)
            .expect("schedule");
    }
    let out = hirehook(config, &["sync", "--once"], None).await;
    assert!(out.status.success(), "sync: {}", stderr(&out));
    contents(store, &integration).await
}

async fn contents(store: &Path, integration: &str) -> (usize, Vec<String>) {
    let store = Store::open_sled(store, 16 << 20).expect("the store opens");
    let events = store
        .events(&EventFilter::default())
        .await
        .expect("log")
        .into_iter()
        .map(|e| e.id)
        .collect();
    (
        store.snapshot_count(integration).await.expect("count") as usize,
        events,
    )
}

/// The store works again: it opens with what it held, and a sync commits to it.
async fn still_works(config: &Path, store: &Path, sim: &RunningSim, before: &(usize, Vec<String>)) {
    let integration = sim.sim().integration_ids()[0].clone();
    let now = contents(store, &integration).await;
    assert_eq!(&now, before, "the store holds exactly what it held");
    let id = sim
        .sim()
        .application_ids(&integration)
        .into_iter()
        .find(|id| {
            sim.sim()
                .application(&integration, id)
                .is_some_and(|a| a.remote_deleted_at.is_none())
        })
        .expect("live");
    sim.sim()
        .apply(&integration, &id, Mutation::ScheduleInterview)
        .expect("schedule");
    let out = hirehook(config, &["sync", "--once"], None).await;
    assert!(
        out.status.success(),
        "sync after recovery: {}",
        stderr(&out)
    );
    let after = contents(store, &integration).await;
    assert_eq!(after.1.len(), before.1.len() + 1, "one more event logged");
    assert!(before.1.iter().all(|id| after.1.contains(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_path_under_a_regular_file_is_a_clear_error_with_exit_1() {
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"just a file").expect("file");
    let store = blocker.join("store");
    let config = write_config(dir.path(), &store, &sim);
    for args in [
        &["sync", "--once"][..],
        &["run"][..],
        &["events", "list"][..],
    ] {
        let out = hirehook(&config, args, None).await;
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(
            text.contains("cannot open the store at") && text.contains(&*store.to_string_lossy()),
            "{args:?}: {text}"
        );
        assert!(!text.contains("panicked"), "{text}");
    }
    assert_eq!(
        std::fs::read(&blocker).expect("file"),
        b"just a file",
        "the file in the way is untouched"
    );
    assert_eq!(
        sim.sim().requests_served(),
        0,
        "nothing polled without a store"
    );

    // The condition gone, the same path works.
    std::fs::remove_file(&blocker).expect("remove");
    let before = populate(&config, &store, &sim).await;
    still_works(&config, &store, &sim, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_path_that_is_a_file_is_a_clear_error_and_the_file_is_untouched() {
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    std::fs::write(&store, b"someone else's file").expect("file");
    let config = write_config(dir.path(), &store, &sim);
    for args in [&["sync", "--once"][..], &["run"][..]] {
        let out = hirehook(&config, args, None).await;
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(
            text.contains("cannot open the store at") && text.contains(&*store.to_string_lossy()),
            "{args:?}: {text}"
        );
    }
    assert_eq!(std::fs::read(&store).expect("file"), b"someone else's file");
}

/// Whether `chmod 0555` stops this process from writing (it does not for root).
fn read_only_takes_effect(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let probe = dir.join("probe");
    let writable = std::fs::write(&probe, b"x").is_ok();
    let _ = std::fs::remove_file(&probe);
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    !writable
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_directory_is_a_clear_error_and_the_store_survives() {
    use std::os::unix::fs::PermissionsExt;
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    if !read_only_takes_effect(dir.path()) {
        println!(
            "skipped: chmod 0555 does not stop writes for this user (root); \
             the read-only cases that hold for root are the other tests"
        );
        return;
    }
    let store = dir.path().join("store");
    let config = write_config(dir.path(), &store, &sim);
    let before = populate(&config, &store, &sim).await;
    let set_mode = |mode: u32| {
        for entry in std::fs::read_dir(&store).expect("store dir").flatten() {
            if entry.path().is_file() {
                let file_mode = if mode == 0o555 { 0o444 } else { 0o644 };
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(file_mode))
                    .expect("chmod file");
            }
        }
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    set_mode(0o555);
    let out = hirehook(&config, &["sync", "--once"], None).await;
    let text = stderr(&out);
    set_mode(0o755);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("cannot open the store at"), "{text}");
    still_works(&config, &store, &sim, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_failing_at_start_are_a_clear_error_and_the_store_survives() {
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let config = write_config(dir.path(), &store, &sim);
    let before = populate(&config, &store, &sim).await;
    let integration = sim.sim().integration_ids()[0].clone();
    // Work to write: changes to sync.
    let changed = sim
        .sim()
        .application_ids(&integration)
        .into_iter()
        .take(60)
        .filter(|id| {
            sim.sim()
                .apply(&integration, id, Mutation::ScheduleInterview)
                .is_ok()
        })
        .count();
    assert!(changed > 20);
    // No file may grow past 4 KiB: every write of the store fails (EFBIG).
    for args in [&["sync", "--once"][..], &["run"][..]] {
        let out = hirehook(&config, args, Some("trap '' XFSZ; ulimit -f 8")).await;
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(text.contains("store"), "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{args:?}: {text}");
        println!("{args:?} with writes failing: {}", text.trim());
    }
    still_works_after_failed_writes(&config, &store, &sim, &before, changed).await;
}

/// As [`still_works`], but the failed runs may have committed some pages before their
/// writes failed (sled keeps what reached the disk whole): the store holds at least what
/// it held, and a clean sync derives the rest.
async fn still_works_after_failed_writes(
    config: &Path,
    store: &Path,
    sim: &RunningSim,
    before: &(usize, Vec<String>),
    changed: usize,
) {
    let integration = sim.sim().integration_ids()[0].clone();
    let now = contents(store, &integration).await;
    assert_eq!(now.0, before.0, "every snapshot is still there");
    assert!(
        before.1.iter().all(|id| now.1.contains(id)),
        "no event lost"
    );
    let out = hirehook(config, &["sync", "--once"], None).await;
    assert!(
        out.status.success(),
        "sync after recovery: {}",
        stderr(&out)
    );
    let after = contents(store, &integration).await;
    assert_eq!(
        after.1.len(),
        before.1.len() + changed,
        "every change derived once"
    );
    let out = hirehook(config, &["sync", "--once"], None).await;
    assert!(out.status.success());
    assert_eq!(contents(store, &integration).await, after, "nothing twice");
}
