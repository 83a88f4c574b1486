//! Micro benchmarks of the hot path: page parse, diff, snapshot encode/decode, sign.
//! `cargo bench --bench micro`; figures and method in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hirehook::ats::Application;
use hirehook::ats::model::{PageData, PageEnvelope};
use hirehook::deliver::sign::{SigningKey, sign};
use hirehook::diff::{DiffContext, FirstSight, Snapshot, diff};
use hirehook::sim::{Mutation, SimConfig, Simulator};

/// 250 realistic records from the simulator, and the same records after one change each.
fn records() -> (
    Vec<hirehook::domain::Application>,
    Vec<hirehook::domain::Application>,
    String,
) {
    let sim = Simulator::new(SimConfig {
        integrations: 1,
        applications: 250,
        seed: 7,
        ..Default::default()
    });
    let integration = sim.integration_ids()[0].clone();
    let ids = sim.application_ids(&integration);
    let before: Vec<Application> = ids
        .iter()
        .filter_map(|id| sim.application(&integration, id))
        .collect();
    for id in &ids {
        let _ = sim.apply(&integration, id, Mutation::ScheduleInterview);
    }
    let after: Vec<Application> = ids
        .iter()
        .filter_map(|id| sim.application(&integration, id))
        .collect();
    let page = serde_json::to_string(&PageEnvelope {
        status: Some("success".into()),
        data: PageData {
            next: Some("cursor".into()),
            results: before.clone(),
        },
    })
    .expect("serializes");
    let domain = |list: Vec<Application>| list.into_iter().map(Into::into).collect();
    (domain(before), domain(after), page)
}

fn benches(c: &mut Criterion) {
    let (before, after, page) = records();
    let ctx = DiffContext {
        integration_id: "greenhouse:bench",
        detected_at: chrono::Utc::now(),
        first_sight: FirstSight::Baseline,
    };
    let snapshots: Vec<Snapshot> = before
        .iter()
        .map(|a| diff(None, a, &ctx).snapshot)
        .collect();
    let encoded: Vec<Vec<u8>> = snapshots.iter().map(Snapshot::encode).collect();

    let mut g = c.benchmark_group("page");
    g.throughput(Throughput::Elements(before.len() as u64));
    g.bench_function("parse 250 records", |b| {
        b.iter(|| hirehook::ats::page::parse_page(black_box(page.as_bytes())))
    });
    g.finish();

    let mut g = c.benchmark_group("diff");
    g.throughput(Throughput::Elements(before.len() as u64));
    g.bench_function("first sight (baseline)", |b| {
        b.iter(|| {
            for a in &before {
                black_box(diff(None, a, &ctx));
            }
        })
    });
    g.bench_function("unchanged", |b| {
        b.iter(|| {
            for (a, s) in before.iter().zip(&snapshots) {
                black_box(diff(Some(s), a, &ctx));
            }
        })
    });
    g.bench_function("one new interview each (event + body)", |b| {
        b.iter(|| {
            for (a, s) in after.iter().zip(&snapshots) {
                let out = diff(Some(s), a, &ctx);
                for e in &out.events {
                    black_box(e.body_bytes());
                }
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("snapshot");
    g.throughput(Throughput::Elements(snapshots.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| {
            for s in &snapshots {
                black_box(s.encode());
            }
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            for e in &encoded {
                black_box(Snapshot::decode(e).ok());
            }
        })
    });
    g.finish();

    let key = SigningKey::from_bytes(b"a benchmark signing key of 32 b".to_vec());
    let body = vec![b'x'; 2048];
    let mut g = c.benchmark_group("sign");
    g.throughput(Throughput::Elements(1));
    g.bench_function("2 KB body, one key", |b| {
        b.iter(|| {
            sign(
                black_box("evt_0123456789abcdef"),
                1_764_400_000,
                &body,
                std::slice::from_ref(&key),
            )
        })
    });
    g.finish();
}

criterion_group!(micro, benches);
criterion_main!(micro);
