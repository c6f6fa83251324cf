//! The streams runtime in the shape of Kafka Streams' SimpleBenchmark, on the embedded log.
//!
//! `cargo bench -p freshet-runtime --bench streams`. 10 million records (`FRESHET_BENCH_RECORDS`),
//! 8-byte keys over a million distinct values, 100-byte values, 3 partitions, one stream thread.
//! Phases: source to sink passthrough, filter and map, count into a RocksDB store with its cache,
//! stream-table join. Each prints records per second per stream thread (one core) beside the
//! storage engine's own write and read throughput measured in the same run, as ratios.
//! Targets: stateless at least 1 million records/s per core; the RocksDB-backed count at least
//! 300,000 records/s per core. With `--features remote`, a `broker` phase runs passthrough and
//! count again through a broker on loopback (in this process, so the broker and librdkafka share
//! the two cores with the application: its figures are per process, not per core).

#![allow(clippy::print_stdout)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use freshet_core::config::LogConfig;
use freshet_core::Substrate;
use freshet_core::{Admin, Consumer, ConsumerConfig, Embedded, NewTopic, Producer, ProducerRecord, TopicPartition};
use freshet_dsl::{Consumed, Grouped, KStream, Materialized, Produced, Serdes, StreamsBuilder, Topology};
use freshet_runtime::{ProcessingGuarantee, StreamsApp, StreamsConfig};
use tokio::runtime::Runtime;

const PARTITIONS: u32 = 3;
const KEY_SPACE: u64 = 1_000_000;
const VALUE_BYTES: usize = 100;

fn key(i: u64) -> Bytes {
    // A multiplicative hash spreads consecutive records over the key space.
    Bytes::copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % KEY_SPACE).to_be_bytes())
}

fn value(i: u64) -> Bytes {
    let mut v = vec![b'x'; VALUE_BYTES];
    v[..8].copy_from_slice(&i.to_be_bytes());
    Bytes::from(v)
}

/// Writes `n` records to `topic` in calls of 10,000; returns records per second. Record `j` is
/// stamped `j` ms after a recent base (records stamped near 1970 would fall to retention).
fn write(rt: &Runtime, log: &Embedded, topic: &str, n: u64, table: bool) -> f64 {
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
        - 50_000_000;
    let producer = log.producer();
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + 10_000).min(n);
        let records: Vec<ProducerRecord> = (i..end)
            .map(|j| ProducerRecord {
                topic: topic.to_string(),
                key: Some(if table { Bytes::copy_from_slice(&j.to_be_bytes()) } else { key(j) }),
                value: Some(value(j)),
                timestamp: Some(base + j as i64),
                ..Default::default()
            })
            .collect();
        rt.block_on(producer.send(records)).expect("write");
        i = end;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Reads all of `topic`; returns records per second.
fn read(rt: &Runtime, log: &Embedded, topic: &str, n: u64) -> f64 {
    let mut consumer = log.consumer(ConsumerConfig::default());
    let tps = (0..PARTITIONS).map(|p| TopicPartition::new(topic, p)).collect();
    rt.block_on(consumer.assign(tps)).expect("assign");
    let started = Instant::now();
    let mut seen = 0u64;
    while seen < n {
        for b in rt.block_on(consumer.poll(Duration::from_millis(100))).expect("poll") {
            seen += b.records().expect("records").len() as u64;
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn create(rt: &Runtime, log: &Embedded, topic: &str) {
    let admin = log.admin();
    let _ = rt.block_on(admin.delete_topic(topic));
    rt.block_on(admin.create_topic(NewTopic {
        name: topic.into(),
        n_partitions: PARTITIONS,
        configs: BTreeMap::new(),
    }))
    .expect("create");
}

fn input(builder: &StreamsBuilder) -> KStream<Bytes, Bytes> {
    builder.stream("input", Consumed::with(Serdes::bytes(), Serdes::bytes()))
}

/// Runs `topology` on the embedded log until it has read `expected_in` records; returns records
/// per second.
fn run(rt: &Runtime, log: &Embedded, dir: &std::path::Path, name: &str, topology: Topology, expected_in: u64) -> f64 {
    run_on(rt, log.clone(), dir, name, topology, expected_in, |_| {})
}

/// Runs `topology` on `substrate` until it has read `expected_in` records; returns records per
/// second.
fn run_on(
    rt: &Runtime,
    substrate: impl Substrate + 'static,
    dir: &std::path::Path,
    name: &str,
    topology: Topology,
    expected_in: u64,
    configure: impl Fn(&mut StreamsConfig),
) -> f64 {
    let mut config = StreamsConfig::new(name).expect("config");
    config.state_dir = dir.join("state");
    config.commit_interval = Duration::from_secs(10);
    config.cache_bytes_per_store = cache_mb() << 20;
    configure(&mut config);
    // `FRESHET_BENCH_COMMIT_MS` sets every phase's commit interval (to compare guarantees at one).
    if let Some(ms) = std::env::var("FRESHET_BENCH_COMMIT_MS").ok().and_then(|s| s.parse().ok()) {
        config.commit_interval = Duration::from_millis(ms);
    }
    let mut app = StreamsApp::new(topology, substrate, config, rt.handle().clone()).expect("app");
    let started = Instant::now();
    app.start().expect("start");
    let (mut last, mut moved) = (0, Instant::now());
    loop {
        let records_in = app.metrics().records_in;
        if records_in >= expected_in {
            break;
        }
        assert!(app.error().is_none(), "{name}: {:?}", app.error());
        if records_in != last {
            (last, moved) = (records_in, Instant::now());
        }
        assert!(moved.elapsed() < Duration::from_secs(30), "{name}: stuck at {records_in} of {expected_in} records");
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = started.elapsed().as_secs_f64();
    app.close().expect("close");
    expected_in as f64 / secs
}

/// The record cache per store, MiB (`FRESHET_BENCH_CACHE_MB`, default Kafka Streams' 10).
fn cache_mb() -> usize {
    std::env::var("FRESHET_BENCH_CACHE_MB").ok().and_then(|s| s.parse().ok()).unwrap_or(10)
}

fn main() {
    let n: u64 = std::env::var("FRESHET_BENCH_RECORDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let only = std::env::var("FRESHET_BENCH_ONLY").unwrap_or_default();
    let wanted = |phase: &str| only.is_empty() || only.split(',').any(|p| p == phase);
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let log = rt.block_on(Embedded::open(dir.path().join("log"), LogConfig::default())).expect("open");
    println!(
        "SimpleBenchmark shape: {n} records, 8 B keys ({KEY_SPACE} distinct), {VALUE_BYTES} B values, \
         {PARTITIONS} partitions, 1 stream thread, {} MiB record cache per store",
        cache_mb()
    );

    create(&rt, &log, "input");
    let write_rate = write(&rt, &log, "input", n, false);
    let read_rate = read(&rt, &log, "input", n);
    println!(
        "limits of this machine, same run: log write {:.0} records/s (fsync), log read {:.0} records/s",
        write_rate, read_rate
    );
    let report = |phase: &str, rate: f64, target: f64| {
        println!(
            "{phase:<28} {rate:>10.0} records/s per core = {:>5.1}% of log read, {:>5.1}% of log write; target {target:.0}/s: {}",
            rate / read_rate * 100.0,
            rate / write_rate * 100.0,
            if rate >= target { "met" } else { "MISSED" }
        );
    };

    if wanted("passthrough") {
        let builder = StreamsBuilder::new();
        input(&builder).to("passthrough-out", Produced::with(Serdes::bytes(), Serdes::bytes()));
        let rate = run(&rt, &log, dir.path(), "passthrough", builder.build().expect("topology"), n);
        report("source -> sink", rate, 1e6);
        let _ = rt.block_on(log.admin().delete_topic("passthrough-out"));
    }
    if wanted("filter-map") {
        let builder = StreamsBuilder::new();
        input(&builder)
            .filter(|_, v| v[7] % 2 == 0)
            .map_values(|v| v.slice(..50))
            .to("filter-map-out", Produced::with(Serdes::bytes(), Serdes::bytes()));
        let rate = run(&rt, &log, dir.path(), "filter-map", builder.build().expect("topology"), n);
        report("filter + map", rate, 1e6);
        let _ = rt.block_on(log.admin().delete_topic("filter-map-out"));
    }
    if wanted("count") {
        let builder = StreamsBuilder::new();
        input(&builder)
            .group_by_key(Grouped::with(Serdes::bytes(), Serdes::bytes()))
            .count(Materialized::named("counts"))
            .to_stream()
            .to("count-out", Produced::with(Serdes::bytes(), Serdes::i64().nullable()));
        let rate = run(&rt, &log, dir.path(), "count", builder.build().expect("topology"), n);
        report("count (RocksDB + cache)", rate, 3e5);
        let _ = rt.block_on(log.admin().delete_topic("count-out"));
    }
    if wanted("count-eos") {
        // Exactly-once, committing every 100 ms as Kafka Streams does under exactly-once: one
        // transaction (output, changelog, input offsets) per commit.
        let builder = StreamsBuilder::new();
        input(&builder)
            .group_by_key(Grouped::with(Serdes::bytes(), Serdes::bytes()))
            .count(Materialized::named("counts"))
            .to_stream()
            .to("count-eos-out", Produced::with(Serdes::bytes(), Serdes::i64().nullable()));
        let substrate = log.clone();
        let rate = run_on(&rt, substrate, dir.path(), "count-eos", builder.build().expect("topology"), n, |c| {
            c.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
            c.commit_interval = Duration::from_millis(100);
        });
        report("count, exactly-once (100 ms)", rate, 3e5);
        let _ = rt.block_on(log.admin().delete_topic("count-eos-out"));
    }
    if wanted("join") {
        create(&rt, &log, "table");
        write(&rt, &log, "table", KEY_SPACE, true);
        let builder = StreamsBuilder::new();
        let table = builder.table(
            "table",
            Consumed::with(Serdes::bytes(), Serdes::bytes()),
            Materialized::named("table-store"),
        );
        input(&builder)
            .join_table(&table, |v: &Bytes, t: &Bytes| Bytes::from([&v[..8], &t[..8]].concat()), Serdes::bytes())
            .to("join-out", Produced::with(Serdes::bytes(), Serdes::bytes()));
        let rate = run(&rt, &log, dir.path(), "join", builder.build().expect("topology"), n + KEY_SPACE);
        report("stream-table join", rate, 3e5);
    }
    #[cfg(feature = "remote")]
    if wanted("broker") {
        // The same input through a broker on loopback (in this process, over the same log): the
        // application reaches it with librdkafka, as it would a remote cluster.
        let config =
            freshet_broker::BrokerConfig { listen: "127.0.0.1:0".parse().expect("address"), ..Default::default() };
        let broker = rt
            .block_on(freshet_broker::Broker::start(log.log().clone(), log.group_offsets().clone(), config))
            .expect("broker");
        let remote = freshet_core::remote::Remote::new(broker.local_addr().to_string());
        let substrate = || remote.clone();
        let builder = StreamsBuilder::new();
        input(&builder).to("broker-passthrough-out", Produced::with(Serdes::bytes(), Serdes::bytes()));
        let rate =
            run_on(&rt, substrate(), dir.path(), "broker-passthrough", builder.build().expect("topology"), n, |_| {});
        report("source -> sink, via broker", rate, 1e6);
        let builder = StreamsBuilder::new();
        input(&builder)
            .group_by_key(Grouped::with(Serdes::bytes(), Serdes::bytes()))
            .count(Materialized::named("counts"))
            .to_stream()
            .to("broker-count-out", Produced::with(Serdes::bytes(), Serdes::i64().nullable()));
        let rate = run_on(&rt, substrate(), dir.path(), "broker-count", builder.build().expect("topology"), n, |_| {});
        report("count, via broker", rate, 3e5);
        rt.block_on(broker.stop());
    }
    rt.block_on(log.close()).expect("close");
}
