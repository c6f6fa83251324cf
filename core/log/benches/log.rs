//! Storage-engine benchmark: each figure beside the machine's own limit, measured in the same run.
//!
//! Run with `cargo bench -p freshet-log --bench log`. `FRESHET_BENCH_MB` sets the megabytes per
//! run (default 1024); `FRESHET_BENCH_DIR` the directory (default: a temporary one under
//! `target/`, so it is on the disk the project lives on).
//!
//! Limits: sequential write with `fdatasync` after every 1 MiB and 4 MiB write (the best of the
//! two), page-cache write in 1 MiB writes without sync, both writing the very batches the engine
//! then appends (same bytes, same memory), and memory copy. Engine: append of 100 B
//! and 1 KiB records in 256 KiB batches with 32 appends in flight, with fsync group commit and
//! without fsync; and hot reads (from the page cache) in 1 MiB fetches. Targets: durable append
//! at least 85% of the fsync'd disk bandwidth; append without fsync at least 70% of page-cache
//! write bandwidth.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use bytes::BytesMut;
use freshet_log::batch::BatchBuilder;
use freshet_log::config::{Durability, LogConfig};
use freshet_log::Log;

const MIB: usize = 1 << 20;

fn mb_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

/// Writes `sources` to a new file in `chunk`-byte writes (several buffers per `writev`), with an
/// `fdatasync` after each write when `sync`; returns MB/s. The sources are the very bytes the
/// engine is given in the same case, so the limit moves the same data from the same memory.
fn write_limit(dir: &Path, sources: &[BytesMut], chunk: usize, sync: bool) -> f64 {
    use std::io::IoSlice;
    let path = dir.join("limit");
    let mut f = std::fs::File::create(&path).unwrap();
    let total: usize = sources.iter().map(|b| b.len()).sum();
    let per_write = (chunk / sources[0].len()).max(1);
    let start = Instant::now();
    for group in sources.chunks(per_write) {
        let mut slices: Vec<IoSlice<'_>> = group.iter().map(|b| IoSlice::new(b)).collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            let n = f.write_vectored(slices).unwrap();
            IoSlice::advance_slices(&mut slices, n);
        }
        if sync {
            f.sync_data().unwrap();
        }
    }
    let rate = mb_per_s(total, start.elapsed().as_secs_f64());
    drop(f);
    std::fs::remove_file(&path).unwrap();
    rate
}

/// Sequential write with `fdatasync` after every 1 MiB and every 4 MiB: the better of the two.
fn disk_fsync_limit(dir: &Path, sources: &[BytesMut]) -> f64 {
    write_limit(dir, sources, MIB, true).max(write_limit(dir, sources, 4 * MIB, true))
}

/// Sequential write to the page cache in 1 MiB writes, no sync.
fn page_cache_limit(dir: &Path, sources: &[BytesMut]) -> f64 {
    write_limit(dir, sources, MIB, false)
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
    println!("  limit: memory copy                                 {rate:>9.1} MB/s");
    rate
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn batches(record_bytes: usize, total: usize) -> Vec<BytesMut> {
    let batch_bytes = env_usize("FRESHET_BENCH_BATCH_KB", 256) * 1024;
    let value = vec![b'v'; record_bytes.saturating_sub(20)];
    let mut template = BatchBuilder::with_capacity(batch_bytes + 1024);
    let mut i = 0u64;
    while template.size() + record_bytes <= batch_bytes {
        let key = format!("key-{i:08}");
        template.push(Some(key.as_bytes()), Some(&value), &[], 1_700_000_000_000);
        i += 1;
    }
    let template = template.finish();
    (0..total.div_ceil(template.len())).map(|_| BytesMut::from(&template[..])).collect()
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}

async fn append_all(log: &Log, topic: &str, batches: Vec<BytesMut>) -> (usize, f64) {
    let total: usize = batches.iter().map(|b| b.len()).sum();
    let cpu = cpu_seconds();
    let start = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    for batch in batches {
        let log = log.clone();
        let topic = topic.to_owned();
        in_flight.spawn(async move { log.append(&topic, 0, batch).await.unwrap() });
        while in_flight.len() >= env_usize("FRESHET_BENCH_IN_FLIGHT", 128) {
            in_flight.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = in_flight.join_next().await {
        r.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    if std::env::var_os("FRESHET_BENCH_VERBOSE").is_some() {
        println!(
            "    appended {} MB in {secs:.3} s using {:.2} cores",
            total / 1_000_000,
            (cpu_seconds() - cpu) / secs
        );
    }
    (total, secs)
}

fn verdict(ratio: f64, target: Option<f64>) -> String {
    match target {
        Some(t) if ratio >= t => format!("(target {:.0}%: met)", t * 100.0),
        Some(t) => format!("(target {:.0}%: NOT met)", t * 100.0),
        None => String::new(),
    }
}

struct Case {
    name: &'static str,
    durability: Durability,
    record_bytes: usize,
    target: f64,
}

/// Appends `total` bytes to a fresh log and reads them all back; returns (append MB/s, read MB/s).
fn engine_run(runtime: &tokio::runtime::Runtime, dir: &Path, case: &Case, batches: Vec<BytesMut>) -> (f64, f64) {
    let case_dir = dir.join("engine");
    let rates = runtime.block_on(async {
        let config = LogConfig { durability: case.durability, ..LogConfig::default() };
        let log = Log::open(&case_dir, config).await.unwrap();
        log.create_topic("bench", 1, Default::default()).await.unwrap();
        let (bytes, secs) = append_all(&log, "bench", batches).await;
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
            let last = freshet_log::batch::Batches::new(&fetched.batches).last().unwrap().unwrap();
            offset = last.next_offset();
        }
        let read_rate = mb_per_s(read, start.elapsed().as_secs_f64());
        log.close().await.unwrap();
        (rate, read_rate)
    });
    std::fs::remove_dir_all(&case_dir).unwrap();
    rates
}

/// File descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Opening a partition of many segments, after a clean shutdown and after a crash, beside the
/// time to merely open and stat its files.
fn open_benchmark(runtime: &tokio::runtime::Runtime, dir: &Path) {
    let n_segments = env_usize("FRESHET_BENCH_SEGMENTS", 2000);
    let case_dir = dir.join("open");
    runtime.block_on(async {
        let config = LogConfig { durability: Durability::OsCache, ..LogConfig::default() };
        let log = Log::open(&case_dir, config).await.unwrap();
        let configs = [("segment.bytes".to_string(), "4096".to_string())].into();
        log.create_topic("many", 1, configs).await.unwrap();
        let mut b = BatchBuilder::default();
        for i in 0..30 {
            b.push(Some(format!("k{i}").as_bytes()), Some(&[b'v'; 100]), &[], 1_700_000_000_000);
        }
        let batch = b.finish();
        while log.describe_partitions("many").unwrap()[0].n_segments < n_segments {
            log.append("many", 0, BytesMut::from(&batch[..])).await.unwrap();
        }
        log.close().await.unwrap();
    });
    let pdir = case_dir.join("topics/many/0");
    let start = Instant::now();
    let mut n_files = 0;
    for entry in std::fs::read_dir(&pdir).unwrap() {
        let file = std::fs::File::open(entry.unwrap().path()).unwrap();
        std::hint::black_box(file.metadata().unwrap().len());
        n_files += 1;
    }
    let limit_ms = start.elapsed().as_secs_f64() * 1e3;
    for (label, clean) in [("after a clean shutdown", true), ("after a crash", false)] {
        let config = || LogConfig { durability: Durability::OsCache, ..LogConfig::default() };
        if !clean {
            // Open and drop without closing: the next open recovers.
            runtime.block_on(async { drop(Log::open(&case_dir, config()).await.unwrap()) });
        }
        let fds_before = open_fds();
        let start = Instant::now();
        let log = runtime.block_on(Log::open(&case_dir, config())).unwrap();
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let report = log.recovery_reports().into_iter().find(|r| r.topic == "many").unwrap();
        println!(
            "  open {n_segments} segments {label:<23} {ms:>8.1} ms = {:>5.1}x opening and stating its {n_files} files ({limit_ms:.1} ms); rescanned {} segments; {} file descriptors held",
            ms / limit_ms,
            report.n_segments_scanned,
            open_fds().saturating_sub(fds_before)
        );
        if clean {
            runtime.block_on(log.close()).unwrap();
        }
    }
    std::fs::remove_dir_all(&case_dir).unwrap();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total = env_usize("FRESHET_BENCH_MB", 1024) * MIB;
    let repeats = env_usize("FRESHET_BENCH_REPEATS", 3);
    let only = std::env::var("FRESHET_BENCH_ONLY").unwrap_or_default();
    let base = std::env::var_os("FRESHET_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data"));
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "Freshet log benchmark: {} MiB per run, best of {repeats} runs, each limit measured right before its case",
        total / MIB
    );
    println!(
        "  (in {}; batches of {} KiB, {} appends in flight)",
        dir.path().display(),
        env_usize("FRESHET_BENCH_BATCH_KB", 256),
        env_usize("FRESHET_BENCH_IN_FLIGHT", 128)
    );

    let copy_limit = memcpy_limit();
    for record_bytes in [100usize, 1024] {
        let sample = batches(record_bytes, 64 * MIB);
        let start = Instant::now();
        for b in &sample {
            freshet_log::batch::BatchView::parse(b).unwrap().validate().unwrap();
        }
        let rate = mb_per_s(sample.iter().map(|b| b.len()).sum(), start.elapsed().as_secs_f64());
        println!(
            "  batch validation, {record_bytes:>4} B records       {rate:>9.1} MB/s = {:>5.1}% of memory copy",
            rate / copy_limit * 100.0
        );
    }

    let cases = [
        Case {
            name: "durable append (fsync group commit)",
            durability: Durability::Fsync,
            record_bytes: 100,
            target: 0.85,
        },
        Case {
            name: "durable append (fsync group commit)",
            durability: Durability::Fsync,
            record_bytes: 1024,
            target: 0.85,
        },
        Case { name: "append without fsync", durability: Durability::OsCache, record_bytes: 100, target: 0.70 },
        Case { name: "append without fsync", durability: Durability::OsCache, record_bytes: 1024, target: 0.70 },
    ];
    let mut reads = Vec::new();
    for case in &cases {
        let label = format!("{}, {} B records", case.name, case.record_bytes);
        if !only.is_empty() && !label.contains(&only) {
            continue;
        }
        let (mut best_limit, mut best_rate, mut best_read) = (0.0f64, 0.0f64, 0.0f64);
        for _ in 0..repeats {
            let sources = batches(case.record_bytes, total);
            let limit = match case.durability {
                Durability::Fsync => disk_fsync_limit(dir.path(), &sources),
                _ => page_cache_limit(dir.path(), &sources),
            };
            let (rate, read) = engine_run(&runtime, dir.path(), case, sources);
            best_limit = best_limit.max(limit);
            best_rate = best_rate.max(rate);
            best_read = best_read.max(read);
        }
        let ratio = best_rate / best_limit;
        let limit_name = match case.durability {
            Durability::Fsync => "write+fdatasync",
            _ => "page-cache write",
        };
        println!(
            "  {label:<50} {best_rate:>9.1} MB/s = {:>5.1}% of {limit_name} {best_limit:.1} MB/s {}",
            ratio * 100.0,
            verdict(ratio, Some(case.target))
        );
        reads.push((format!("hot read after {label}"), best_read));
    }
    if only.is_empty() || "open".contains(&only) {
        open_benchmark(&runtime, dir.path());
    }
    for (name, rate) in reads {
        println!(
            "  {name:<50} {rate:>9.1} MB/s = {:>5.1}% of memory copy {copy_limit:.1} MB/s",
            rate / copy_limit * 100.0
        );
    }
}
