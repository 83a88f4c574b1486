//! Giving disk space back: an offline rewrite of a sled store.
//!
//! sled 0.34 does not give back, or in hirehook's workload even reuse, the space of what
//! retention removes: its file grows with every byte written (measured in
//! `BENCHMARKS.md`). Bounding the file therefore takes a rewrite: every key is copied into
//! a fresh sled database, which holds only what is live, and the fresh files replace the
//! old ones. It runs while nothing has the store open (`hirehook store compact`).
//!
//! The fresh database is built in `<store>/.rewrite/` (inside the store's directory, so a
//! store that is a volume's mount point can be rewritten too; sled ignores entries it did
//! not write). Once it is complete and on disk, a `MANIFEST` naming its files is written
//! last; only then are the old files replaced. Every open first looks for `.rewrite/`:
//! with a manifest the swap is finished (it can be resumed from any point: old files not
//! in the manifest are removed, each new file still in `.rewrite/` replaces its namesake),
//! without one the rewrite never completed and is discarded (the old store is intact).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// The directory a rewrite builds the fresh store in, inside the store's.
const REWRITE_DIR: &str = ".rewrite";
/// Written last into [`REWRITE_DIR`]: the fresh store is complete; one name a line.
const MANIFEST: &str = "MANIFEST";
/// The lock file a rewrite holds, inside the store's directory.
const LOCK_FILE: &str = ".rewrite.lock";
/// Keys copied per batch.
const BATCH: usize = 10_000;

/// What a rewrite did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewriteReport {
    /// The store's files before and after, in bytes.
    pub before: u64,
    pub after: u64,
    /// Keys copied.
    pub keys: u64,
    pub took: Duration,
}

fn io(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {e}", path.display()))
}

/// Whether a directory entry is one of sled's own files.
fn is_sled_file(name: &str) -> bool {
    // (`.rewrite`, `.rewrite.lock` and anything else are not sled's.)
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

/// The bytes of every file under `dir` (the rewrite directory included while it exists).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn remove(path: &Path) -> Result<(), StoreError> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path, "cannot remove", e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, "cannot sync", e))
}

/// Takes the lock a rewrite holds from start to end (`<store>/.rewrite.lock`): one
/// rewrite at a time, and no open finishing a swap another process is still making.
fn lock(path: &Path) -> Result<std::fs::File, StoreError> {
    let at = path.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&at)
        .map_err(|e| io(&at, "cannot open", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&at, "cannot lock", e)),
    }
}

/// Finishes a rewrite whose fresh store is complete, or discards one that is not: run
/// before sled opens `path`. A rewrite still under way (its lock held) is the store in
/// use by another process.
pub(super) fn recover(path: &Path) -> Result<(), StoreError> {
    if !path.join(REWRITE_DIR).is_dir() {
        return Ok(());
    }
    let _lock = lock(path)?;
    finish_or_discard(path)
}

fn finish_or_discard(path: &Path) -> Result<(), StoreError> {
    let fresh = path.join(REWRITE_DIR);
    if !fresh.is_dir() {
        return Ok(());
    }
    let manifest = match std::fs::read_to_string(fresh.join(MANIFEST)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                store = %path.display(),
                "discarding a store rewrite that did not complete; the store is as it was"
            );
            return remove(&fresh);
        }
        Err(e) => return Err(io(&fresh, "cannot read the rewrite manifest in", e)),
    };
    let names: Vec<&str> = manifest.lines().filter(|l| !l.is_empty()).collect();
    // Old files the fresh store has no namesake for (older page-table snapshots above
    // all): sled would take the highest-named snapshot, so they go first.
    let entries = std::fs::read_dir(path).map_err(|e| io(path, "cannot list", e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_sled_file(&name) && !names.contains(&name.as_str()) {
            remove(&entry.path())?;
        }
    }
    // Each fresh file still waiting replaces its namesake (one already moved stays).
    for name in &names {
        let from = fresh.join(name);
        if from.exists() {
            let to = path.join(name);
            remove(&to)?;
            std::fs::rename(&from, &to).map_err(|e| io(&from, "cannot move", e))?;
        }
    }
    sync_dir(path)?;
    remove(&fresh)?;
    sync_dir(path)
}

/// Opens the sled database at `path` the way the store does, waiting briefly for a lock a
/// closing handle still holds.
fn open_raw(path: &Path, cache_bytes: u64) -> Result<::sled::Db, StoreError> {
    let deadline = Instant::now() + super::LOCK_WAIT;
    loop {
        let result = ::sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .mode(::sled::Mode::HighThroughput)
            .open();
        match result {
            Ok(db) => return Ok(db),
            Err(::sled::Error::Io(e))
                if (e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("lock"))
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(::sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("lock") =>
            {
                return Err(StoreError::Locked {
                    path: path.to_owned(),
                });
            }
            Err(e) => {
                return Err(StoreError::Open {
                    path: path.to_owned(),
                    cause: e.to_string(),
                });
            }
        }
    }
}

/// Waits (up to [`super::LOCK_WAIT`]) until no handle holds the lock sled takes on the
/// `db` file of the store at `path`.
fn wait_unlocked(path: &Path) -> Result<(), StoreError> {
    let db = path.join("db");
    let deadline = Instant::now() + super::LOCK_WAIT;
    loop {
        let file = std::fs::File::open(&db).map_err(|e| io(&db, "cannot open", e))?;
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: path.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&db, "cannot lock", e)),
        }
    }
}

/// Copies every tree of `from` (the store at `path`) into a fresh store in
/// `<path>/.rewrite/`, makes it durable and writes the manifest last: from then on an open
/// (or [`finish_or_discard`]) completes the swap. Returns the keys copied.
fn copy_to_fresh(from: &::sled::Db, path: &Path, cache_bytes: u64) -> Result<u64, StoreError> {
    let fresh: PathBuf = path.join(REWRITE_DIR);
    remove(&fresh)?;
    let mut keys = 0u64;
    {
        let to = open_raw(&fresh, cache_bytes)?;
        for name in from.tree_names() {
            let (source, target) = (from.open_tree(&name)?, to.open_tree(&name)?);
            let mut batch = ::sled::Batch::default();
            let mut in_batch = 0;
            for item in source.iter() {
                let (k, v) = item?;
                batch.insert(k, v);
                keys += 1;
                in_batch += 1;
                if in_batch >= BATCH {
                    target.apply_batch(std::mem::take(&mut batch))?;
                    in_batch = 0;
                }
            }
            target.apply_batch(batch)?;
        }
        to.flush()?;
    }
    wait_unlocked(&fresh)?;
    let mut names = Vec::new();
    let entries = std::fs::read_dir(&fresh).map_err(|e| io(&fresh, "cannot list", e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() {
            std::fs::File::open(entry.path())
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&entry.path(), "cannot sync", e))?;
        }
        names.push(name);
    }
    names.sort();
    let manifest = fresh.join(MANIFEST);
    {
        use std::io::Write as _;
        let mut file =
            std::fs::File::create(&manifest).map_err(|e| io(&manifest, "cannot write", e))?;
        file.write_all(names.join("\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io(&manifest, "cannot write", e))?;
    }
    sync_dir(&fresh)?;
    Ok(keys)
}

/// Rewrites the sled store at `path` (which nothing may have open) into fresh files that
/// hold only its live keys, and swaps them in (see the module's notes on safety).
pub fn rewrite(path: &Path, cache_bytes: u64) -> Result<RewriteReport, StoreError> {
    let started = Instant::now();
    if !path.join("db").is_file() {
        return Err(StoreError::Open {
            path: path.to_owned(),
            cause: "no sled store there".into(),
        });
    }
    let _lock = lock(path)?;
    finish_or_discard(path)?;
    let before = dir_size(path);
    let keys = {
        let from = open_raw(path, cache_bytes)?;
        copy_to_fresh(&from, path, cache_bytes)?
    };
    // sled lets its files go from a background thread a moment after the handles drop:
    // wait for that before touching them.
    wait_unlocked(path)?;
    finish_or_discard(path)?;
    Ok(RewriteReport {
        before,
        after: dir_size(path),
        keys,
        took: started.elapsed(),
    })
}

impl super::SledStore {
    /// Rewrites the store's files while it is open (the daemon holds it): what an
    /// erasure overwrote leaves sled's log segments. Under the commit lock, the queues'
    /// lock and the handles' write guard (syncs, deliveries and every other store
    /// operation wait for it: the pause is this call's length, see BENCHMARKS.md): flush,
    /// copy every key into `.rewrite/`, write the manifest, drop the handles, finish the
    /// swap as an open would ([`finish_or_discard`]), reopen. A crash at any point leaves a
    /// store the next open recovers (finishing the swap once the manifest is written).
    pub fn rewrite_online(&self) -> Result<RewriteReport, StoreError> {
        let started = Instant::now();
        let _commit = self.lock();
        let _queues = self.queues_unbuilt();
        let mut slot = self.handles.write();
        let path = self.path.as_path();
        let _lock = lock(path)?;
        let before = dir_size(path);
        let copied = match slot.as_ref() {
            Some(handles) => {
                handles.db.flush()?;
                copy_to_fresh(&handles.db, path, self.cache_bytes)
            }
            None => Err(StoreError::Io(format!(
                "the sled store at {} is closed",
                path.display()
            ))),
        };
        let keys = match copied {
            Ok(keys) => keys,
            Err(e) => {
                // The old files are intact: discard the copy and carry on with them.
                let _ = remove(&path.join(REWRITE_DIR));
                return Err(e);
            }
        };
        // Every handle goes, so sled lets the files go (a flush in flight holds a clone
        // for a moment: waited out).
        drop(slot.take());
        let swapped = wait_unlocked(path).and_then(|()| finish_or_discard(path));
        // Reopen whatever is there now: the fresh store, or (the swap failed part way) what
        // the next open's recovery makes of it.
        let reopened = finish_or_discard(path)
            .and_then(|()| open_raw(path, self.cache_bytes))
            .and_then(|db| {
                let tree = db.open_tree("hirehook")?;
                Ok(super::Handles { db, tree })
            });
        match reopened {
            Ok(handles) => *slot = Some(handles),
            Err(e) => {
                tracing::error!(
                    store = %path.display(),
                    error = %e,
                    "the sled store could not be reopened after an online rewrite; restart hirehook"
                );
                return Err(e);
            }
        }
        swapped?;
        Ok(RewriteReport {
            before,
            after: dir_size(path),
            keys,
            took: started.elapsed(),
        })
    }
}
