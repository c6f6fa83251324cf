//! Storage-engine benchmark: each figure beside the machine's own limit, measured in the same run.
//!
//! Run with `cargo bench -p freshet-core --bench log`. `FRESHET_BENCH_MB` sets the megabytes per
//! case (default 256); `FRESHET_BENCH_DIR` the directory (default: a temporary one under
//! `target/`, so it is on the disk the project lives on).
//!
//! Limits: sequential write with `fdatasync` after every 1 MiB and 4 MiB write (the best of the
//! two), page-cache write in 1 MiB writes without sync, and memory copy. Engine: append of 100 B
//! and 1 KiB records in 256 KiB batches with 32 appends in flight, with fsync group commit and
//! without fsync; and hot reads (from the page cache) in 1 MiB fetches. Targets: durable append
//! at least 85% of the fsync'd disk bandwidth; append without fsync at least 70% of page-cache
//! write bandwidth.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use bytes::BytesMut;
use freshet_core::batch::BatchBuilder;
use freshet_core::config::{Durability, LogConfig};
use freshet_core::log::Log;

const MIB: usize = 1 << 20;

fn mb_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn disk_fsync_limit(dir: &Path, total: usize) -> f64 {
    let mut best: f64 = 0.0;
    for chunk in [MIB, 4 * MIB] {
        let path = dir.join("limit-fsync");
        let mut f = std::fs::File::create(&path).unwrap();
        let buf = vec![0x5au8; chunk];
        let start = Instant::now();
        for _ in 0..total / chunk {
            f.write_all(&buf).unwrap();
            f.sync_data().unwrap();
        }
        let rate = mb_per_s(total, start.elapsed().as_secs_f64());
        println!("  limit: write + fdatasync every {:>1} MiB      {rate:>9.1} MB/s", chunk / MIB);
        best = best.max(rate);
        drop(f);
        std::fs::remove_file(&path).unwrap();
    }
    best
}

fn page_cache_limit(dir: &Path, total: usize) -> f64 {
    let path = dir.join("limit-cache");
    let mut f = std::fs::File::create(&path).unwrap();
    let buf = vec![0x5au8; MIB];
    let start = Instant::now();
    for _ in 0..total / MIB {
        f.write_all(&buf).unwrap();
    }
    let rate = mb_per_s(total, start.elapsed().as_secs_f64());
    drop(f);
    std::fs::remove_file(&path).unwrap();
    println!("  limit: page-cache write, 1 MiB writes       {rate:>9.1} MB/s");
    rate
}

fn memcpy_limit() -> f64 {
    let source = vec![0x5au8; 64 * MIB];
    let mut target = vec![0u8; 64 * MIB];
    let start = Instant::now();
    let rounds = 16;
    for i in 0..rounds {
        target.copy_from_slice(&source);
        std::hint::black_box(&target[i]);
    }
    let rate = mb_per_s(rounds * 64 * MIB, start.elapsed().as_secs_f64());
    println!("  limit: memory copy                          {rate:>9.1} MB/s");
    rate
}

fn batches(record_bytes: usize, total: usize) -> Vec<BytesMut> {
    let value = vec![b'v'; record_bytes.saturating_sub(20)];
    let mut template = BatchBuilder::with_capacity(256 * 1024 + 1024);
    let mut i = 0u64;
    while template.size() + record_bytes <= 256 * 1024 {
        let key = format!("key-{i:08}");
        template.push(Some(key.as_bytes()), Some(&value), &[], 1_700_000_000_000);
        i += 1;
    }
    let template = template.finish();
    (0..total.div_ceil(template.len())).map(|_| BytesMut::from(&template[..])).collect()
}

async fn append_all(log: &Log, topic: &str, batches: Vec<BytesMut>) -> (usize, f64) {
    let total: usize = batches.iter().map(|b| b.len()).sum();
    let start = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    for batch in batches {
        let log = log.clone();
        let topic = topic.to_owned();
        in_flight.spawn(async move { log.append(&topic, 0, batch).await.unwrap() });
        while in_flight.len() >= 32 {
            in_flight.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = in_flight.join_next().await {
        r.unwrap();
    }
    (total, start.elapsed().as_secs_f64())
}

fn verdict(ratio: f64, target: Option<f64>) -> String {
    match target {
        Some(t) if ratio >= t => format!("(target {:.0}%: met)", t * 100.0),
        Some(t) => format!("(target {:.0}%: NOT met)", t * 100.0),
        None => String::new(),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total = std::env::var("FRESHET_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(256usize) * MIB;
    let base = std::env::var_os("FRESHET_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data"));
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("Freshet log benchmark: {} MiB per case in {}", total / MIB, dir.path().display());

    let fsync_limit = disk_fsync_limit(dir.path(), total);
    let cache_limit = page_cache_limit(dir.path(), total);
    let copy_limit = memcpy_limit();

    for record_bytes in [100usize, 1024] {
        let sample = batches(record_bytes, 64 * MIB);
        let start = Instant::now();
        for b in &sample {
            freshet_core::batch::BatchView::parse(b).unwrap().validate().unwrap();
        }
        let rate = mb_per_s(sample.iter().map(|b| b.len()).sum(), start.elapsed().as_secs_f64());
        let start = Instant::now();
        for b in &sample {
            std::hint::black_box(crc32c::crc32c(b));
        }
        let crc = mb_per_s(sample.iter().map(|b| b.len()).sum(), start.elapsed().as_secs_f64());
        println!("  batch validation, {record_bytes:>4} B records      {rate:>9.1} MB/s (CRC-32C alone {crc:.0} MB/s)");
    }

    let mut results = Vec::new();
    for (durability, name, limit, target) in [
        (Durability::Fsync, "durable append (fsync group commit)", fsync_limit, 0.85),
        (Durability::OsCache, "append without fsync", cache_limit, 0.70),
    ] {
        for record_bytes in [100usize, 1024] {
            let case_dir = dir.path().join(format!("{durability:?}-{record_bytes}"));
            let (rate, read_rate) = runtime.block_on(async {
                let config = LogConfig { durability, ..LogConfig::default() };
                let log = Log::open(&case_dir, config).await.unwrap();
                log.create_topic("bench", 1, Default::default()).await.unwrap();
                let (bytes, secs) = append_all(&log, "bench", batches(record_bytes, total)).await;
                let rate = mb_per_s(bytes, secs);
                // Hot reads: everything is in the page cache now.
                let start = Instant::now();
                let (mut offset, mut read) = (0i64, 0usize);
                loop {
                    let fetched = log.read("bench", 0, offset, MIB as u64).await.unwrap();
                    if fetched.batches.is_empty() {
                        break;
                    }
                    read += fetched.batches.len();
                    let last = freshet_core::batch::Batches::new(&fetched.batches).last().unwrap().unwrap();
                    offset = last.next_offset();
                }
                let read_rate = mb_per_s(read, start.elapsed().as_secs_f64());
                log.close().await.unwrap();
                (rate, read_rate)
            });
            std::fs::remove_dir_all(&case_dir).unwrap();
            let ratio = rate / limit;
            println!(
                "  {name}, {record_bytes:>4} B records {rate:>9.1} MB/s = {:>5.1}% of limit {}",
                ratio * 100.0,
                verdict(ratio, Some(target))
            );
            results.push((format!("hot read, {record_bytes} B records"), read_rate));
        }
    }
    for (name, rate) in results {
        println!("  {name:<41} {rate:>9.1} MB/s = {:>5.1}% of memory copy", rate / copy_limit * 100.0);
    }
}
