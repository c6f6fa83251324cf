//! Broker benchmark: Kafka clients against `freshet broker`, beside the machine's limits measured
//! in the same run.
//!
//! `cargo bench -p freshet-core --bench broker`. Needs kcat and, for the latency phase, the
//! Python venv `./dev test` installs (`FRESHET_PYTHON` or `~/.cache/freshet/venv/bin/python`).
//! `FRESHET_BENCH_RECORDS` sets the records per phase (default 1 M).
//!
//! Limits: loopback TCP (bytes through one localhost connection) and the storage engine alone
//! (the embedded producer appending the same records with fsync group commit). Then, through the
//! broker: produce throughput with kcat (librdkafka) for 100 B and 1 KiB records at acks=1 and
//! acks=all, consume throughput with kcat, and end-to-end latency percentiles (p50, p99, p99.9)
//! with confluent-kafka at half the measured produce rate. Targets: produce at acks=1 at least
//! 60% of the storage engine alone; p99 end-to-end latency under 10 ms at half saturation.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use freshet_core::broker::{Broker, BrokerConfig};
use freshet_core::config::LogConfig;
use freshet_core::substrate::{Admin, Embedded, NewTopic, Producer, ProducerRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes per second through one loopback TCP connection.
async fn loopback_bytes_per_sec() -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let total: usize = 2 << 30;
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        while n < total {
            n += s.read(&mut buf).await.unwrap();
        }
    });
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let chunk = vec![7u8; 1 << 20];
    let started = Instant::now();
    for _ in 0..total / chunk.len() {
        s.write_all(&chunk).await.unwrap();
    }
    reader.await.unwrap();
    total as f64 / started.elapsed().as_secs_f64()
}

fn value(size: usize) -> String {
    "x".repeat(size)
}

/// Records per second the storage engine alone appends (the embedded producer, fsync).
async fn engine_records_per_sec(log: &Embedded, topic: &str, n: usize, size: usize) -> f64 {
    let producer = log.producer();
    let v = value(size);
    let started = Instant::now();
    let mut sent = 0;
    while sent < n {
        let batch: Vec<ProducerRecord> =
            (0..10_000.min(n - sent)).map(|i| ProducerRecord::new(topic, Some(format!("k{i}")), v.clone())).collect();
        sent += batch.len();
        producer.send(batch).await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Records per second kcat produces through the broker.
fn kcat_produce(addr: &str, topic: &str, n: usize, size: usize, acks: &str) -> f64 {
    let line = format!("{}\n", value(size));
    let input: String = line.repeat(n);
    let started = Instant::now();
    let mut child = Command::new("kcat")
        .args(["-b", addr, "-P", "-t", topic, "-X", &format!("acks={acks}"), "-X", "linger.ms=5"])
        .args(["-X", "batch.num.messages=10000", "-X", "queue.buffering.max.messages=1000000"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat is installed (./dev test installs it)");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "kcat produce");
    n as f64 / started.elapsed().as_secs_f64()
}

/// Records per second kcat reads back through the broker.
fn kcat_consume(addr: &str, topic: &str, n: usize) -> f64 {
    let started = Instant::now();
    let out = Command::new("kcat")
        .args(["-b", addr, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "\n"])
        .stderr(Stdio::null())
        .output()
        .expect("kcat is installed");
    let read = out.stdout.iter().filter(|&&b| b == b'\n').count();
    assert!(read >= n, "read {read} of {n}");
    read as f64 / started.elapsed().as_secs_f64()
}

/// End-to-end latency percentiles (ms) at `rate` records per second, measured by confluent-kafka.
fn latency(addr: &str, topic: &str, rate: f64) -> Option<String> {
    let home = std::env::var("HOME").unwrap_or_default();
    let python = std::env::var("FRESHET_PYTHON").unwrap_or_else(|_| format!("{home}/.cache/freshet/venv/bin/python"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/clients/latency.py");
    let out = Command::new(&python).args([script, addr, topic, &format!("{rate:.0}"), "5"]).output().ok()?;
    if !out.status.success() {
        println!("latency: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let n: usize = std::env::var("FRESHET_BENCH_RECORDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = rt.block_on(Embedded::open(dir.path(), LogConfig::default())).unwrap();
    let loopback = rt.block_on(loopback_bytes_per_sec());
    println!("loopback TCP, one connection: {:.0} MB/s", loopback / 1e6);
    let broker = rt
        .block_on(Broker::start(
            log.log().clone(),
            log.group_offsets().clone(),
            BrokerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..BrokerConfig::default() },
        ))
        .unwrap();
    let addr = broker.local_addr().to_string();
    let mut saturation = 0.0f64;
    for size in [100usize, 1024] {
        for (i, acks) in ["1", "all"].iter().enumerate() {
            let engine_topic = format!("engine-{size}-{i}");
            let broker_topic = format!("broker-{size}-{i}");
            for t in [&engine_topic, &broker_topic] {
                let new = NewTopic { name: t.clone(), n_partitions: 1, configs: BTreeMap::new() };
                rt.block_on(log.admin().create_topic(new)).unwrap();
            }
            let engine = rt.block_on(engine_records_per_sec(&log, &engine_topic, n, size));
            let through = kcat_produce(&addr, &broker_topic, n, size, acks);
            if size == 100 && *acks == "1" {
                saturation = through;
            }
            println!(
                "produce {size:>4} B acks={acks:<3}: {through:>9.0} records/s ({:>6.1} MB/s) = {:>5.1}% of the engine alone ({engine:.0}/s), {:>5.1}% of loopback{}",
                through * size as f64 / 1e6,
                through / engine * 100.0,
                through * size as f64 / loopback * 100.0,
                if *acks == "1" { if through >= 0.6 * engine { "; target 60%: met" } else { "; target 60%: MISSED" } } else { "" }
            );
            if *acks == "1" {
                let consumed = kcat_consume(&addr, &broker_topic, n);
                println!(
                    "consume {size:>4} B        : {consumed:>9.0} records/s ({:>6.1} MB/s), {:>5.1}% of loopback",
                    consumed * size as f64 / 1e6,
                    consumed * size as f64 / loopback * 100.0
                );
            }
        }
    }
    let rate = (saturation / 2.0).min(5_000.0);
    let topic = "latency";
    rt.block_on(log.admin().create_topic(NewTopic { name: topic.into(), n_partitions: 1, configs: BTreeMap::new() }))
        .unwrap();
    match latency(&addr, topic, rate) {
        Some(line) => println!("end-to-end latency at {rate:.0} records/s (half the 100 B saturation, capped at 5 k/s, what the Python client sustains): {line}; target p99 < 10 ms"),
        None => println!("end-to-end latency: skipped (no Python clients)"),
    }
    rt.block_on(broker.stop());
    rt.block_on(log.close()).unwrap();
}
