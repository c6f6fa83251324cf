//! The Freshet broker beside Apache Kafka's (4.4, from its jars), on this machine, in one run:
//! Kafka's own producer and consumer perf tools are the one load generator for both.
//!
//! `cargo bench -p freshet --bench vs_kafka` (after `./dev test` has fetched Kafka's jars).
//! `FRESHET_BENCH_RECORDS` sets the records of each 100 B phase (default 1 M; 1 KiB phases send
//! half as many).
//!
//! Limits first, measured in the same run: a 4 KiB write with fdatasync (the disk's commit
//! rate), sequential writes flushed once (its bandwidth), memory copy, one loopback TCP
//! connection. Then, at each durability (the page cache: Kafka's default beside Freshet's
//! `none`; on disk before the answer: Kafka flushing every message beside Freshet's fsync group
//! commit), each broker in turn on a fresh data directory, 4 partitions, alone on the machine:
//! the other stopped, its data deleted and the page cache written back, so that neither pays for
//! the other's dirty pages (whichever runs second would):
//! - produce throughput, 100 B and 1 KiB records, acks=1 and acks=all (ProducerPerformance at
//!   full speed);
//! - consume throughput of the 100 B records of both 100 B phases (ConsumerPerformance), and the
//!   CPU-seconds per million records consumed that the broker and the consumer spent meanwhile
//!   (where the consumer's are about equal on both and the broker's far apart, the consumer is
//!   the limit, not the broker);
//! - produce latency p50/p99/p99.9 at a fixed rate below saturation: half the slower broker's
//!   100 B acks=all throughput (ProducerPerformance with --throughput);
//! - the broker's peak resident memory (VmHWM) over those phases.
//!
//! Each figure is printed with the ratio Freshet / Kafka. Targets (issue "Apache Kafka as the
//! peer"): throughput at least 1.5x Kafka's at equal durability, p99 no higher, at most a quarter
//! of its memory.
//!
//! Then streams, in the shape of Kafka Streams' SimpleBenchmark (8-byte keys over a million
//! values, 100-byte values, 3 partitions, one stream thread, at least once): passthrough, count
//! (RocksDB with a 10 MiB cache) and a stream-table join, as a Kafka Streams application
//! (`tests/java/StreamsBench.java`) on Kafka's broker and as a `StreamsApp` on the Freshet broker
//! and on the embedded log; records/s from the application's start until every input record is
//! read, and the application process's CPU-seconds per million records (the broker's not
//! counted). `FRESHET_BENCH_STREAMS_RECORDS` (default 1 M) sets the stream's records; the join
//! loads the million-key table first and counts it as input. `FRESHET_BENCH_ONLY=broker|streams`
//! runs one half. Target: the Freshet runtime at least 3x Kafka Streams per core.

#![allow(clippy::print_stdout)]

// The allocator the `freshet` program uses (and the streams benchmark): the `StreamsApp`s run in
// this process, and glibc's malloc cost a fifth of their CPU here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

#[path = "common/limits.rs"]
mod limits;
#[allow(dead_code, unreachable_pub)]
#[path = "../tests/it/peer.rs"]
mod peer;
#[path = "common/perf.rs"]
mod perf;

use limits::{cpu_seconds, peak_rss_mib, print_limits, ratio};
use perf::{consume, produce, PerfSummary};

use peer::{java, Kind, Peer, Setup};

use freshet::prelude::*;

/// What one broker did at one durability.
#[derive(Debug, Default)]
struct Figures {
    produce: Vec<((usize, &'static str), PerfSummary)>,
    consume: f64,
    /// The broker's CPU-seconds per million records consumed.
    consume_cpu: f64,
    /// The consumer's CPU-seconds per million records consumed.
    consumer_cpu: f64,
    latency: PerfSummary,
    peak_rss_mib: f64,
}

fn main() {
    let scratch = tempfile::tempdir().unwrap();
    println!("Freshet beside Apache Kafka 4.4 on this machine");
    print_limits(scratch.path());
    let only = std::env::var("FRESHET_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "broker" {
        brokers(scratch.path());
    }
    if only.is_empty() || only == "streams" {
        streams(scratch.path());
    }
}

/// Stops a broker, deletes its data and writes the page cache back, so that the next broker runs
/// on a machine as quiet as the first one did.
fn alone_again(peer: Peer, dir: tempfile::TempDir) {
    peer.stop();
    drop(dir);
    let _ = std::process::Command::new("sync").status();
}

/// The brokers side by side, Kafka's perf tools driving both.
fn brokers(scratch: &std::path::Path) {
    let records: u64 = std::env::var("FRESHET_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    println!("\nbrokers: Kafka's ProducerPerformance and ConsumerPerformance as the load generator");

    let cases: [(usize, &'static str); 4] = [(100, "1"), (100, "all"), (1024, "1"), (1024, "all")];
    for fsync in [false, true] {
        let durability = if fsync {
            "on disk before the answer (Kafka: flush every message; Freshet: fsync group commit)"
        } else {
            "page cache (both defaults without fsync)"
        };
        println!("\ndurability: {durability}");
        let setup = Setup { fsync, partitions: 4 };
        let mut figures: Vec<(Kind, Figures)> = Vec::new();
        for kind in [Kind::Kafka, Kind::Freshet] {
            let dir = tempfile::tempdir_in(scratch).unwrap();
            let peer = Peer::start_with(kind, dir.path(), setup);
            let mut f = Figures::default();
            for (size, acks) in cases {
                let n = if size > 100 { records / 2 } else { records };
                let topic = format!("perf-{size}-{acks}");
                f.produce.push(((size, acks), produce(peer.addr(), &topic, n, size, acks, None)));
            }
            // Both 100 B topics: long enough a phase that the consumer's start does not dominate.
            (f.consume, f.consume_cpu, f.consumer_cpu) = consume(peer.addr(), "perf-100-.*", 2 * records, peer.pid());
            f.peak_rss_mib = peak_rss_mib(peer.pid());
            figures.push((kind, f));
            alone_again(peer, dir);
        }
        // Latency at one rate for both: half the slower broker's 100 B acks=all throughput, each
        // broker again alone on a fresh data directory.
        let saturation = figures
            .iter()
            .map(|(_, f)| f.produce.iter().find(|(c, _)| *c == (100, "all")).unwrap().1.records_per_sec)
            .fold(f64::INFINITY, f64::min);
        let rate = (saturation / 2.0) as u64;
        for (kind, f) in &mut figures {
            let dir = tempfile::tempdir_in(scratch).unwrap();
            let peer = Peer::start_with(*kind, dir.path(), setup);
            f.latency = produce(peer.addr(), "latency", rate * 10, 100, "all", Some(rate));
            alone_again(peer, dir);
        }
        let (kafka, freshet) = (&figures[0].1, &figures[1].1);
        println!("| produce | Kafka records/s | Freshet records/s | Freshet MB/s | Freshet / Kafka |");
        println!("|---|---:|---:|---:|---:|");
        for (i, ((size, acks), k)) in kafka.produce.iter().enumerate() {
            let f = freshet.produce[i].1;
            println!(
                "| {size} B acks={acks} | {:.0} | {:.0} | {:.1} | {} |",
                k.records_per_sec,
                f.records_per_sec,
                f.mb_per_sec,
                ratio(f.records_per_sec, k.records_per_sec)
            );
        }
        println!(
            "| consume 100 B | {:.0} | {:.0} | | {} |",
            kafka.consume,
            freshet.consume,
            ratio(freshet.consume, kafka.consume)
        );
        println!(
            "| broker CPU-s per M records consumed | {:.3} | {:.3} | | {} |",
            kafka.consume_cpu,
            freshet.consume_cpu,
            ratio(freshet.consume_cpu, kafka.consume_cpu)
        );
        println!(
            "| consumer CPU-s per M records consumed | {:.3} | {:.3} | | {} |",
            kafka.consumer_cpu,
            freshet.consumer_cpu,
            ratio(freshet.consumer_cpu, kafka.consumer_cpu)
        );
        println!("| produce latency at {rate} records/s, 100 B acks=all | p50 / p99 / p99.9 ms | |");
        println!("|---|---:|---:|");
        for (name, l) in [("Kafka", kafka.latency), ("Freshet", freshet.latency)] {
            println!("| {name} | {:.0} / {:.0} / {:.0} | |", l.p50_ms, l.p99_ms, l.p999_ms);
        }
        println!(
            "| p99 Freshet / Kafka | {} | |",
            ratio(freshet.latency.p99_ms.max(1.0), kafka.latency.p99_ms.max(1.0))
        );
        println!(
            "| peak resident memory | Kafka {:.0} MiB, Freshet {:.0} MiB | {} |",
            kafka.peak_rss_mib,
            freshet.peak_rss_mib,
            ratio(freshet.peak_rss_mib, kafka.peak_rss_mib)
        );
    }
}

const KEY_SPACE: u64 = 1_000_000;
const PHASES: [&str; 3] = ["passthrough", "count", "join"];

fn key(i: u64) -> bytes::Bytes {
    // The same keys as StreamsBench.java: a multiplicative hash over the key space.
    bytes::Bytes::copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % KEY_SPACE).to_be_bytes())
}

fn value(i: u64) -> bytes::Bytes {
    let mut v = vec![b'x'; 100];
    v[..8].copy_from_slice(&i.to_be_bytes());
    bytes::Bytes::from(v)
}

/// This process's CPU time (user and system), seconds.
fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

/// One phase's topology, reading `PHASE-input` (and `PHASE-table`).
fn topology(phase: &str) -> Topology {
    let builder = StreamsBuilder::new();
    let input = builder.stream(&format!("{phase}-input"), Consumed::with(Serdes::bytes(), Serdes::bytes()));
    let out = format!("{phase}-output");
    match phase {
        "passthrough" => input.to(&out, Produced::with(Serdes::bytes(), Serdes::bytes())),
        "count" => input
            .group_by_key(Grouped::with(Serdes::bytes(), Serdes::bytes()))
            .count(Materialized::named("counts"))
            .to_stream()
            .to(&out, Produced::with(Serdes::bytes(), Serdes::i64().nullable())),
        _ => {
            let table = builder.table(
                &format!("{phase}-table"),
                Consumed::with(Serdes::bytes(), Serdes::bytes()),
                Materialized::named("table"),
            );
            input
                .join_table(
                    &table,
                    |v: &bytes::Bytes, t: &bytes::Bytes| bytes::Bytes::from([&v[..8], &t[..8]].concat()),
                    Serdes::bytes(),
                )
                .to(&out, Produced::with(Serdes::bytes(), Serdes::bytes()))
        }
    }
    builder.build().expect("topology")
}

/// Loads a phase's input on `substrate`; the records the application will read.
fn load(rt: &tokio::runtime::Runtime, substrate: &dyn Substrate, phase: &str, n: u64) -> u64 {
    let admin = substrate.admin().expect("admin");
    let mut topics = vec![format!("{phase}-input"), format!("{phase}-output")];
    if phase == "join" {
        topics.push(format!("{phase}-table"));
    }
    for name in &topics {
        rt.block_on(admin.create_topic(NewTopic { name: name.clone(), n_partitions: 3, ..Default::default() }))
            .expect("create");
    }
    let producer = substrate.producer().expect("producer");
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
        - 50_000_000;
    let send = |topic: String, keys: &dyn Fn(u64) -> bytes::Bytes, count: u64, stamp: &dyn Fn(u64) -> i64| {
        let mut i = 0;
        while i < count {
            let end = (i + 10_000).min(count);
            let records: Vec<ProducerRecord> = (i..end)
                .map(|j| ProducerRecord {
                    topic: topic.clone(),
                    key: Some(keys(j)),
                    value: Some(value(j)),
                    timestamp: Some(stamp(j)),
                    ..Default::default()
                })
                .collect();
            rt.block_on(producer.send(records)).expect("send");
            i = end;
        }
    };
    let mut expected = n;
    if phase == "join" {
        send(format!("{phase}-table"), &|k| bytes::Bytes::copy_from_slice(&k.to_be_bytes()), KEY_SPACE, &|_| base);
        expected += KEY_SPACE;
    }
    send(format!("{phase}-input"), &key, n, &|j| base + j as i64);
    expected
}

/// Runs a phase as a `StreamsApp` on `substrate` until it read `expected` records: (records/s,
/// CPU-seconds of this process).
fn run_app(
    rt: &tokio::runtime::Runtime,
    substrate: impl Substrate + 'static,
    dir: &std::path::Path,
    phase: &str,
    expected: u64,
) -> (f64, f64) {
    let mut config = StreamsConfig::new(&format!("bench-{phase}")).expect("config");
    config.state_dir = dir.join(format!("state-{phase}"));
    config.commit_interval = Duration::from_secs(10);
    config.num_stream_threads = 1;
    let mut app = StreamsApp::new(topology(phase), substrate, config, rt.handle().clone()).expect("app");
    let cpu = own_cpu_seconds();
    let started = Instant::now();
    app.start().expect("start");
    let (mut last, mut moved) = (0, Instant::now());
    while app.metrics().records_in < expected {
        let records_in = app.metrics().records_in;
        assert!(app.error().is_none(), "{phase}: {:?}", app.error());
        if records_in != last {
            (last, moved) = (records_in, Instant::now());
        }
        assert!(moved.elapsed() < Duration::from_secs(60), "{phase}: stuck at {records_in} of {expected}");
        std::thread::sleep(Duration::from_millis(2));
    }
    let rate = expected as f64 / started.elapsed().as_secs_f64();
    let cpu = own_cpu_seconds() - cpu;
    app.close().expect("close");
    (rate, cpu)
}

/// Kafka Streams on Kafka's broker beside Freshet's runtime on its broker and on the embedded log.
fn streams(scratch: &std::path::Path) {
    let n: u64 = std::env::var("FRESHET_BENCH_STREAMS_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    println!("\nstreams: SimpleBenchmark's shape, {n} records (the join also reads a {KEY_SPACE}-key table), one stream thread");
    let setup = Setup { fsync: false, partitions: 3 };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // (phase, [Kafka Streams on Kafka, Freshet on its broker, Freshet embedded]) as (records/s, CPU s).
    let mut rows: Vec<(&str, [(f64, f64); 3])> = Vec::new();
    for phase in PHASES {
        let mut row = [(0.0, 0.0); 3];
        let dir = tempfile::tempdir_in(scratch).unwrap();
        let kafka = Peer::start_with(Kind::Kafka, dir.path(), setup);
        let state = dir.path().join("kafka-streams-state");
        let out = java("StreamsBench", &[kafka.addr(), phase, &n.to_string(), state.to_str().unwrap()]);
        let figures: Vec<f64> = out
            .lines()
            .find(|l| l.starts_with(phase))
            .map(|l| l.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect())
            .unwrap_or_default();
        row[0] = (figures[0], figures[1]);
        kafka.stop();

        let dir = tempfile::tempdir_in(scratch).unwrap();
        let broker = Peer::start_with(Kind::Freshet, dir.path(), setup);
        let remote = freshet::core::remote::Remote::new(broker.addr().to_string());
        let expected = load(&rt, &remote, phase, n);
        row[1] = run_app(&rt, remote, dir.path(), phase, expected);
        broker.stop();

        let dir = tempfile::tempdir_in(scratch).unwrap();
        let log = rt
            .block_on(Embedded::open(dir.path().join("log"), freshet::core::config::LogConfig::default()))
            .expect("open");
        let expected = load(&rt, &log, phase, n);
        row[2] = run_app(&rt, log.clone(), dir.path(), phase, expected);
        rt.block_on(log.close()).expect("close");
        let million = expected as f64 / 1e6;
        for cell in &mut row {
            cell.1 /= million;
        }
        rows.push((phase, row));
    }
    println!("| phase | Kafka Streams on Kafka: records/s, CPU s per M | Freshet on its broker | Freshet embedded | Freshet broker / Kafka Streams, per CPU-second |");
    println!("|---|---:|---:|---:|---:|");
    for (phase, [k, b, e]) in rows {
        // Records per CPU-second: the "per core" comparison.
        let per_cpu = |(_, cpu_per_m): (f64, f64)| if cpu_per_m > 0.0 { 1e6 / cpu_per_m } else { f64::NAN };
        println!(
            "| {phase} | {:.0}, {:.2} | {:.0}, {:.2} | {:.0}, {:.2} | {} (records/s {}) |",
            k.0,
            k.1,
            b.0,
            b.1,
            e.0,
            e.1,
            ratio(per_cpu(b), per_cpu(k)),
            ratio(b.0, k.0)
        );
    }
}
