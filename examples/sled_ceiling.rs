//! sled 0.34 on its own, doing what hirehook asks of it: the ceilings behind the figures in
//! BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release --example sled_ceiling -- inserts 1000000   # a backfill's snapshot writes
//! cargo run --release --example sled_ceiling -- updates 20000     # recording delivery attempts
//! cargo run --release --example sled_ceiling -- churn 20000       # does sled reuse freed space?
//! ```
//!
//! `inserts N`: N new random keys (hirehook's snapshot key shape) with 240-byte values,
//! 64 MiB cache, once in batches of 250 (one page) and once one insert at a time.
//! `updates N`: N values of 450 bytes updated once each next to N cold 1.5 KB values, once
//! as a two-key batch per update (how attempts were recorded) and once as one insert.
//! Each prints the rate, and the bytes written to storage per operation (`/proc/self/io`).
//! `churn N`: ten rounds of N new 1000-byte values under increasing keys, each updated once
//! by a single insert, and the previous round's removed: the file size after each round
//! (sled's own segment cleaning at work, without hirehook's key mix; compare
//! `examples/retention_disk.rs`).

use std::time::Instant;

use anyhow::{Context as _, bail};

fn written_bytes() -> f64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

fn open(dir: &std::path::Path) -> anyhow::Result<(sled::Db, sled::Tree)> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(64 << 20)
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let tree = db.open_tree("x")?;
    Ok((db, tree))
}

/// xorshift: reproducible random keys without a dependency.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn inserts(n: u64, batch: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (db, tree) = open(dir.path())?;
    let before = written_bytes();
    let started = Instant::now();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut pending = sled::Batch::default();
    let mut in_batch = 0;
    let mut slice = Instant::now();
    let mut slices = Vec::new();
    for i in 0..n {
        let key = format!("sgh:123\0{:024x}", next(&mut x));
        let value = vec![(i % 251) as u8; 240];
        if batch <= 1 {
            tree.insert(key.as_bytes(), value)?;
        } else {
            pending.insert(key.as_bytes(), value);
            in_batch += 1;
            if in_batch == batch {
                tree.apply_batch(std::mem::take(&mut pending))?;
                in_batch = 0;
            }
        }
        if (i + 1) % 100_000 == 0 {
            slices.push(format!("{:.0}k", 100.0 / slice.elapsed().as_secs_f64()));
            slice = Instant::now();
        }
    }
    tree.apply_batch(pending)?;
    let took = started.elapsed();
    db.flush()?;
    println!(
        "inserts, {}: {n} in {took:.2?} = {:.0}/s; {:.0} bytes written per insert; {:.0} MB on disk; per 100k: {}",
        if batch <= 1 {
            "one at a time".to_owned()
        } else {
            format!("batches of {batch}")
        },
        n as f64 / took.as_secs_f64(),
        (written_bytes() - before) / n as f64,
        db.size_on_disk()? as f64 / 1e6,
        slices.join(" ")
    );
    Ok(())
}

fn updates(n: u64, batched: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (db, tree) = open(dir.path())?;
    for i in 0..n {
        tree.insert(
            [b"e".as_slice(), &i.to_be_bytes()].concat(),
            vec![7u8; 1500],
        )?;
        tree.insert([b"o".as_slice(), &i.to_be_bytes()].concat(), vec![1u8; 450])?;
    }
    db.flush()?;
    let before = written_bytes();
    let started = Instant::now();
    for i in 0..n {
        let key = [b"o".as_slice(), &i.to_be_bytes()].concat();
        if batched {
            let mut batch = sled::Batch::default();
            batch.insert(key, vec![2u8; 450]);
            batch.insert([b"t".as_slice(), &i.to_be_bytes()].concat(), vec![3u8; 150]);
            tree.apply_batch(batch)?;
        } else {
            tree.insert(key, vec![2u8; 450])?;
        }
    }
    let took = started.elapsed();
    db.flush()?;
    println!(
        "updates, {}: {n} in {took:.2?} = {:.1} µs each; {:.0} bytes written per update",
        if batched {
            "a two-key batch each"
        } else {
            "one insert each"
        },
        took.as_secs_f64() * 1e6 / n as f64,
        (written_bytes() - before) / n as f64
    );
    Ok(())
}

fn churn(n: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (db, tree) = open(dir.path())?;
    let file_size = || {
        std::fs::read_dir(dir.path())
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok().filter(|m| m.is_file()))
                    .map(|m| m.len())
                    .sum::<u64>()
            })
            .unwrap_or(0)
    };
    for round in 0..10u64 {
        let keys = round * n..(round + 1) * n;
        let mut batch = sled::Batch::default();
        for i in keys.clone() {
            batch.insert(&i.to_be_bytes(), vec![7u8; 1000]);
            if i % 250 == 249 {
                tree.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        tree.apply_batch(batch)?;
        for i in keys {
            tree.insert(i.to_be_bytes(), vec![8u8; 1000])?;
        }
        if round > 0 {
            let mut batch = sled::Batch::default();
            for i in (round - 1) * n..round * n {
                batch.remove(&i.to_be_bytes());
                if i % 250 == 249 {
                    tree.apply_batch(std::mem::take(&mut batch))?;
                }
            }
            tree.apply_batch(batch)?;
        }
        db.flush()?;
        println!(
            "churn round {round}: {} keys live ({:.1} MB of values), file {:.1} MB",
            tree.len(),
            tree.len() as f64 * 1000.0 / 1e6,
            file_size() as f64 / 1e6
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = match args.get(1) {
        Some(n) => n.parse().context("N must be a number")?,
        None => 100_000,
    };
    match args.first().map(String::as_str) {
        Some("inserts") => {
            inserts(n, 250)?;
            inserts(n, 1)
        }
        Some("updates") => {
            updates(n, true)?;
            updates(n, false)
        }
        Some("churn") => churn(n),
        _ => bail!("usage: sled_ceiling inserts|updates|churn [N]"),
    }
}
