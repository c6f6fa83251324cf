//! State-store benchmark: Freshet's key-value store beside raw RocksDB, and restore beside the
//! log's own read speed, all measured in the same run on the same keys and values.
//!
//! Run with `cargo bench -p freshet-state --bench store`. `FRESHET_BENCH_OPS` sets the operations
//! per phase (default 10 million); `FRESHET_BENCH_DIR` the directory (default: under `target/`, on
//! the disk the project lives on).
//!
//! Keys are 8 bytes (a 64-bit mix of the operation number, so inserts land in random order),
//! values 100 bytes. Raw RocksDB is opened with the very options Freshet's stores use (shared
//! 512 MiB block cache and write-buffer budget, no write-ahead log) and driven with `put` and
//! `get`; Freshet's store is driven through `KeyValueStore<u64, Bytes>` (no cache, no changelog),
//! then with the record cache, then with the changelog (an embedded log with fsync group commit),
//! then both. Writes include the final flush. Gets read every key once in a scrambled order, after
//! the store's compactions have finished (raw RocksDB's too).
//! Restore rebuilds a store from the changelog the logged phase wrote; the log's read speed is a
//! consumer reading and decoding the same changelog. Targets: the store at least 80% of raw
//! RocksDB; restore at least half the log's read speed.
//!
//! Every phase starts from the same state: its own block cache, the previous phase's files deleted
//! and dirty pages synced. `FRESHET_BENCH_ONLY` picks phases (`store`, `cache`, `changelog`, `both`,
//! comma-separated; `changelog` includes the restore; `restore` alone runs the logged phase and
//! the restore without raw RocksDB), e.g. to profile one.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use freshet_core::config::{Durability, LogConfig};
use freshet_core::{Consumer as _, Embedded, TopicPartition};
use freshet_state::{changelog_topic, Backend, Changelogs, RocksMemory, StoreOptions, TaskConfig, TaskState};

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn key(i: u64) -> u64 {
    splitmix(i)
}

fn value(i: u64) -> Bytes {
    let mut v = vec![0u8; 100];
    v[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(v)
}

/// Operation numbers in a scrambled order that still visits each once (2654435761 is prime, so
/// multiplying by it permutes `0..n` unless `n` is a multiple of it).
fn scrambled(i: u64, n: u64) -> u64 {
    (i * 2_654_435_761) % n
}

/// Prints each phase's rate beside raw RocksDB's.
fn print_table<'a>(title: &str, raw: f64, phases: impl Iterator<Item = (&'a str, f64)>) {
    println!("\n{:<34} {:>14} {:>12}", title, "ops/s", "of raw");
    println!("{:<34} {:>14.0} {:>11.0}%", "raw RocksDB (limit)", raw, 100.0);
    for (name, ops_per_s) in phases {
        println!("{:<34} {:>14.0} {:>11.0}%", format!("freshet {name}"), ops_per_s, 100.0 * ops_per_s / raw);
    }
}

/// A fresh RocksDB memory budget (block cache and write buffers) for each phase, so no phase
/// starts with a cache another filled.
fn memory() -> RocksMemory {
    RocksMemory::new(512 << 20).unwrap()
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

/// Starts each phase from the same state: the previous phase's store files deleted and the
/// kernel's dirty pages written out, so no phase pays for another's write-back or compactions.
fn settle(previous: Option<&Path>) {
    if let Some(dir) = previous {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::process::Command::new("sync").status();
}

fn raw_rocksdb(dir: &Path, memory: &RocksMemory, n: u64) -> (f64, f64) {
    settle(None);
    let db = rocksdb::DB::open(&memory.options(), dir.join("raw")).unwrap();
    let mut write = rocksdb::WriteOptions::default();
    write.disable_wal(true);
    let start = Instant::now();
    for i in 0..n {
        db.put_opt(key(i).to_be_bytes(), value(i), &write).unwrap();
    }
    db.flush().unwrap();
    let put = rate(n, start.elapsed());
    freshet_state::wait_for_compactions(&db).unwrap();
    let start = Instant::now();
    let mut found = 0u64;
    for i in 0..n {
        let k = key(scrambled(i, n));
        if let Some(v) = db.get_pinned(k.to_be_bytes()).unwrap() {
            found += v.len() as u64 / 100;
        }
    }
    let get = rate(n, start.elapsed());
    assert_eq!(found, n);
    drop(db);
    settle(Some(&dir.join("raw")));
    (put, get)
}

fn task_config(dir: &Path, name: &str, memory: &RocksMemory, changelogs: Option<Changelogs>) -> TaskConfig {
    TaskConfig::new(dir.join(name), "bench", "0_0", 0, 1, Backend::RocksDb(memory.clone()), changelogs)
}

fn freshet_store(config: TaskConfig, options: StoreOptions, n: u64) -> (f64, f64) {
    let state_dir = config.state_dir.clone();
    let mut task = TaskState::open(config).unwrap();
    task.add_kv_store::<u64, Bytes>("kv", options).unwrap();
    let start = Instant::now();
    {
        let store = task.kv_store::<u64, Bytes>("kv").unwrap();
        for i in 0..n {
            store.put(&key(i), &value(i)).unwrap();
        }
    }
    task.commit().unwrap();
    let put = rate(n, start.elapsed());
    task.wait_for_background_work().unwrap();
    let store = task.kv_store::<u64, Bytes>("kv").unwrap();
    let start = Instant::now();
    let mut found = 0u64;
    for i in 0..n {
        if let Some(v) = store.get(&key(scrambled(i, n))).unwrap() {
            found += v.len() as u64 / 100;
        }
    }
    let get = rate(n, start.elapsed());
    assert_eq!(found, n);
    task.close().unwrap();
    settle(Some(&state_dir));
    (put, get)
}

fn log_read_mb_per_s(runtime: &tokio::runtime::Runtime, log: &Embedded, topic: &str) -> (f64, u64) {
    let tp = TopicPartition::new(topic, 0);
    let end = log.log().partition(topic, 0).unwrap().offsets().1;
    let mut consumer = log.consumer(Default::default());
    runtime.block_on(async {
        consumer.assign(vec![tp.clone()]).await.unwrap();
        consumer.seek_to_offset(&tp, 0).unwrap();
        let start = Instant::now();
        let mut n_bytes = 0u64;
        while consumer.position(&tp).unwrap() < end {
            for batches in consumer.poll(Duration::from_secs(1)).await.unwrap() {
                for r in batches.records().unwrap() {
                    n_bytes += (r.key.map_or(0, |k| k.len()) + r.value.map_or(0, |v| v.len())) as u64;
                }
            }
        }
        (n_bytes as f64 / 1e6 / start.elapsed().as_secs_f64(), n_bytes)
    })
}

/// Restore: a fresh store rebuilt from the changelog of the logged phase, beside the log's own read.
fn restore_phase(
    runtime: &tokio::runtime::Runtime,
    log: &Embedded,
    dir: &Path,
    memory: &RocksMemory,
    changelogs: Changelogs,
) {
    let topic = changelog_topic("bench", "kv");
    let (log_read, log_bytes) = log_read_mb_per_s(runtime, log, &topic);
    let mut task = TaskState::open(task_config(dir, "restored", memory, Some(changelogs))).unwrap();
    task.add_kv_store::<u64, Bytes>("kv", StoreOptions::default()).unwrap();
    let restored = task.restores()[0].clone();
    assert_eq!(restored.n_bytes, log_bytes);
    task.close().unwrap();
    println!("\n{:<34} {:>14} {:>12}", "restore (key + value bytes)", "MB/s", "of log read");
    println!("{:<34} {:>14.1} {:>11.0}%", "log read + decode (limit)", log_read, 100.0);
    println!(
        "{:<34} {:>14.1} {:>11.0}%   ({} records in {:.1} s)",
        "freshet restore",
        restored.mb_per_sec(),
        100.0 * restored.mb_per_sec() / log_read,
        restored.n_records,
        restored.elapsed.as_secs_f64()
    );
}

fn main() {
    let n: u64 = std::env::var("FRESHET_BENCH_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    assert!(n > 0 && n < 1 << 32, "FRESHET_BENCH_OPS must be between 1 and 2^32");
    let base: PathBuf = std::env::var_os("FRESHET_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| "target".into());
        target.join("bench-data")
    });
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let dir = dir.path();
    println!("state-store benchmark: {n} operations per phase, 8 B keys, 100 B values, in {}", dir.display());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let durability =
        if std::env::var("FRESHET_BENCH_NOSYNC").is_ok() { Durability::OsCache } else { Durability::Fsync };
    let log_config = LogConfig { durability, ..LogConfig::default() };
    let log = runtime.block_on(Embedded::open(dir.join("log"), log_config)).unwrap();
    let changelogs = Changelogs::new(log.clone(), runtime.handle().clone()).expect("changelogs");

    // FRESHET_BENCH_ONLY=restore runs only the logged phase (to write the changelog) and the restore.
    let only_restore = std::env::var("FRESHET_BENCH_ONLY").is_ok_and(|v| v == "restore");
    if only_restore {
        let logged_config = task_config(dir, "logged", &memory(), Some(changelogs.clone()));
        freshet_store(logged_config, StoreOptions::new(true, false), n);
        restore_phase(&runtime, &log, dir, &memory(), changelogs);
        runtime.block_on(log.close()).unwrap();
        return;
    }
    // FRESHET_BENCH_ONLY=cache,changelog (any of store, cache, changelog, both) runs raw RocksDB and
    // those phases only, e.g. to profile one.
    let only = std::env::var("FRESHET_BENCH_ONLY").ok();
    let selected = |phase: &str| only.as_deref().is_none_or(|o| o.split(',').any(|p| p.trim() == phase));
    let (raw_put, raw_get) = raw_rocksdb(dir, &memory(), n);
    let mut phases = Vec::new();
    for (phase, name, config, options) in [
        ("store", "store", task_config(dir, "plain", &memory(), None), StoreOptions::new(false, false)),
        ("cache", "store + cache", task_config(dir, "cached", &memory(), None), StoreOptions::new(false, true)),
        (
            "changelog",
            "store + changelog",
            task_config(dir, "logged", &memory(), Some(changelogs.clone())),
            StoreOptions::new(true, false),
        ),
        (
            "both",
            "store + changelog + cache",
            TaskConfig {
                application_id: "bench2".into(),
                ..task_config(dir, "both", &memory(), Some(changelogs.clone()))
            },
            StoreOptions::new(true, true),
        ),
    ] {
        if selected(phase) {
            let (put, get) = freshet_store(config, options, n);
            phases.push((name, put, get));
        }
    }
    print_table("put (incl. final flush)", raw_put, phases.iter().map(|p| (p.0, p.1)));
    print_table("get (every key once, scrambled)", raw_get, phases.iter().map(|p| (p.0, p.2)));

    if selected("changelog") {
        restore_phase(&runtime, &log, dir, &memory(), changelogs);
    }
    println!("\ntargets: store put and get >= 80% of raw RocksDB; restore >= 50% of the log's read speed");
    runtime.block_on(log.close()).unwrap();
}
