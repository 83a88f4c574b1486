//! Bad input: the fuzz targets' committed corpus as a normal test, and a seeded property
//! test of byte mutations of a real page.
//!
//! `fuzz/` holds the `cargo fuzz` targets (nightly, libFuzzer): `page_parser`,
//! `diff_history`, `snapshot_decode`, `replay_reader`. Their bodies live in
//! `fuzz/targets.rs`, included here as they are there, so CI runs exactly what the fuzzer
//! runs over `fuzz/corpus/<target>/` (real simulator pages, truncations, broken records,
//! schema drift, histories of one application, encoded snapshots, export files with bad
//! lines). Any finding the fuzzer saves can be dropped into the corpus to stay fixed.
//!
//! The diff's own property tests (identical records yield nothing, ids stable across
//! re-derivation, lossless snapshots, decoding never panics) are in
//! `src/diff/proptests.rs`.

#[path = "../../fuzz/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("corpus file");
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{target}: {} corpus files", files.len());
    files
}

fn run(target: &str, body: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        let result = std::panic::catch_unwind(|| body(&bytes));
        assert!(result.is_ok(), "{target} failed on {}", path.display());
    }
}

#[test]
fn page_parser_corpus() {
    run("page_parser", targets::page_parser);
    // Sensible results, not only no panics: real pages parse whole, broken records are
    // rejected one by one, truncations are flagged.
    for (path, bytes) in corpus("page_parser") {
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let parsed = hirehook::ats::page::parse_page(&bytes);
        if name.starts_with("real-") {
            let page = parsed.expect(name);
            assert!(
                !page.records.is_empty() && page.rejected.is_empty(),
                "{name}"
            );
        } else if name.starts_with("trunc-") {
            assert!(parsed.expect_err(name).truncated, "{name}");
        } else if name.starts_with("mutated-") {
            let page = parsed.expect(name);
            assert_eq!(page.rejected.len(), 1, "{name}: {:?}", page.rejected);
            assert_eq!(page.rejected[0].path, "changed_at");
            assert!(page.rejected[0].id.is_some());
        }
    }
}

#[test]
fn diff_history_corpus() {
    run("diff_history", targets::diff_history);
}

#[test]
fn snapshot_decode_corpus() {
    run("snapshot_decode", targets::snapshot_decode);
    let decoded = corpus("snapshot_decode")
        .iter()
        .filter(|(_, b)| hirehook::diff::Snapshot::decode(b).is_ok())
        .count();
    assert!(decoded >= 8, "real snapshots decode: {decoded}");
}

#[test]
fn replay_reader_corpus() {
    run("replay_reader", targets::replay_reader);
    let file = corpus("replay_reader")
        .into_iter()
        .find(|(p, _)| p.ends_with("export-changes.jsonl"))
        .expect("an export");
    let items: Vec<_> =
        hirehook::replay::FileEvents::new(&file.1[..], hirehook::event::EventFilter::default())
            .collect();
    assert_eq!(items.len(), 12);
    assert!(items.iter().all(|i| matches!(i, Ok(Ok(_)))));
}

/// A real page mutated at random bytes (seeded: failures reproduce): `parse_page` never
/// panics, and either fails or accounts for every result (parsed + rejected = results).
#[test]
fn mutated_real_pages_never_panic_and_account_for_every_result() {
    let pages: Vec<Vec<u8>> = corpus("page_parser")
        .into_iter()
        .filter(|(p, _)| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("real-"))
        })
        .map(|(_, b)| b)
        .collect();
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 2_000,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = (
        0..pages.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        any::<prop::sample::Index>(),
    );
    runner
        .run(&strategy, |(which, edits, cut)| {
            let mut bytes = pages[which].clone();
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            // Sometimes also cut the page short.
            if cut.index(4) == 0 {
                let n = cut.index(bytes.len());
                bytes.truncate(n);
            }
            targets::page_parser(&bytes);
            Ok(())
        })
        .expect("no mutation breaks the parser");
}

/// Writes the snapshot corpus from the diff corpus's histories (run on purpose:
/// `cargo test --test fuzz_corpus -- --ignored`).
#[test]
#[ignore = "regenerates fuzz/corpus/snapshot_decode"]
fn regenerate_snapshot_corpus() {
    use hirehook::ats::Application;
    use hirehook::diff::{DiffContext, FirstSight, diff};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/snapshot_decode");
    std::fs::create_dir_all(&dir).expect("dir");
    let t0 = chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("time");
    for (path, bytes) in corpus("diff_history") {
        let Ok(history) = serde_json::from_slice::<Vec<Application>>(&bytes) else {
            continue;
        };
        let history: Vec<hirehook::domain::Application> =
            history.into_iter().map(Into::into).collect();
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("stem");
        let mut prev = None;
        for (i, app) in history.iter().enumerate() {
            let ctx = DiffContext {
                integration_id: "fuzz:1",
                detected_at: t0,
                first_sight: FirstSight::Emit,
            };
            let out = diff(prev.as_ref(), app, &ctx);
            if i % 2 == 0 {
                let encoded = out.snapshot.encode();
                std::fs::write(dir.join(format!("{stem}-{i}.bin")), &encoded).expect("write");
                if i == 0 {
                    let mut cut = encoded.clone();
                    cut.truncate(encoded.len() / 2);
                    std::fs::write(dir.join(format!("{stem}-{i}-cut.bin")), cut).expect("write");
                }
            }
            prev = Some(out.snapshot);
        }
    }
}
