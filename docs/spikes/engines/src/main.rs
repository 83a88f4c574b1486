//! hirehook's page-commit write shape on three engines: per page of 250 events, one atomic,
//! fsynced batch (SHAPE=four: snapshot, event id, event and outbox keys per event; three:
//! without the outbox key; packed: snapshot and event id per event, the page's events and
//! outbox entries as one value), then one unsynced update per event (the attempt record).
//! CPU from /proc/self/stat. Writes only: no reads, no claims.
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::Instant;

const PAGE: usize = 250;

fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = s.rsplit_once(')').unwrap().1.to_owned();
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

struct Page {
    writes: Vec<(Vec<u8>, Vec<u8>)>,
    updates: Vec<(Vec<u8>, Vec<u8>)>,
}

fn shape() -> String {
    std::env::var("SHAPE").unwrap_or_else(|_| "four".into())
}

fn pages(n: usize) -> Vec<Page> {
    let shape = shape();
    let mut rng = StdRng::seed_from_u64(7);
    let mut seq = 0u64;
    let alnum = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    (0..n)
        .map(|_| {
            let mut writes = Vec::new();
            let mut updates = Vec::new();
            for _ in 0..PAGE {
                seq += 1;
                let app: Vec<u8> = (0..24).map(|_| alnum[rng.gen_range(0..alnum.len())]).collect();
                let mut k = b"sgh:1\0".to_vec();
                k.extend_from_slice(&app);
                writes.push((k, (0..270).map(|_| rng.r#gen::<u8>()).collect()));
                let mut k = b"i".to_vec();
                k.extend((0..32).map(|_| alnum[rng.gen_range(0..16)]));
                writes.push((k, seq.to_be_bytes().to_vec()));
                let mut ek = b"e".to_vec();
                ek.extend_from_slice(&seq.to_be_bytes());
                let mut k = b"ocrm\0".to_vec();
                k.extend_from_slice(&seq.to_be_bytes());
                match shape.as_str() {
                    // today: event, outbox entry
                    "four" => {
                        writes.push((ek, vec![b'x'; 1100]));
                        writes.push((k.clone(), vec![b'p'; 200]));
                    }
                    // the outbox entry implied by the event until its first attempt
                    "three" => writes.push((ek, vec![b'x'; 1100])),
                    // the page's events and outbox entries in one value, written below
                    _ => {}
                }
                updates.push((k, vec![b'd'; 220]));
            }
            if shape == "packed" {
                let mut k = b"e".to_vec();
                k.extend_from_slice(&seq.to_be_bytes());
                writes.push((k, vec![b'x'; 1300 * PAGE]));
            }
            Page { writes, updates }
        })
        .collect()
}

fn report(name: &str, n: usize, t: Instant, c: f64) {
    let events = (n * PAGE) as f64;
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu() - c;
    println!(
        "{name}: {events} events in {wall:.2} s = {:.0}/s; CPU {cpu:.2} s = {:.1} µs/event",
        events / wall,
        cpu * 1e6 / events
    );
}

fn sled_run(dir: &std::path::Path, pages: &[Page]) {
    let db = sled::Config::new()
        .path(dir.join("sled"))
        .cache_capacity(64 << 20)
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap();
    let tree = db.open_tree("t").unwrap();
    let (t, c) = (Instant::now(), cpu());
    for p in pages {
        let mut b = sled::Batch::default();
        for (k, v) in &p.writes {
            b.insert(k.as_slice(), v.as_slice());
        }
        tree.apply_batch(b).unwrap();
        db.flush().unwrap();
        for (k, v) in &p.updates {
            tree.insert(k.as_slice(), v.as_slice()).unwrap();
        }
    }
    db.flush().unwrap();
    report("sled 0.34", pages.len(), t, c);
}

fn fjall_run(dir: &std::path::Path, pages: &[Page]) {
    let ks = fjall::Config::new(dir.join("fjall")).open().unwrap();
    let part = ks
        .open_partition("t", fjall::PartitionCreateOptions::default())
        .unwrap();
    let (t, c) = (Instant::now(), cpu());
    for p in pages {
        let mut b = ks.batch();
        for (k, v) in &p.writes {
            b.insert(&part, k.as_slice(), v.as_slice());
        }
        b.commit().unwrap();
        ks.persist(fjall::PersistMode::SyncData).unwrap();
        for (k, v) in &p.updates {
            part.insert(k.as_slice(), v.as_slice()).unwrap();
        }
    }
    ks.persist(fjall::PersistMode::SyncData).unwrap();
    report("fjall 2", pages.len(), t, c);
}

fn redb_run(dir: &std::path::Path, pages: &[Page]) {
    const T: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("t");
    let db = redb::Database::create(dir.join("redb")).unwrap();
    let (t, c) = (Instant::now(), cpu());
    for p in pages {
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(T).unwrap();
            for (k, v) in &p.writes {
                table.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
        // Attempts: non-durable commits, grouped per page here (as the issue suggests).
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(redb::Durability::None);
        {
            let mut table = tx.open_table(T).unwrap();
            for (k, v) in &p.updates {
                table.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    report("redb 2", pages.len(), t, c);
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let n: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let pages = pages(n);
    let dir = tempfile_dir();
    match which.as_str() {
        "sled" => sled_run(&dir, &pages),
        "fjall" => fjall_run(&dir, &pages),
        "redb" => redb_run(&dir, &pages),
        _ => eprintln!("sled|fjall|redb [pages]"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("spike-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
