//! Broker benchmark: a Kafka client (librdkafka, through the rdkafka crate) against the broker,
//! beside the machine's limits measured in the same run.
//!
//! `cargo bench -p freshet-broker --bench broker`. `FRESHET_BENCH_RECORDS` sets
//! the records per throughput phase (default 1 M).
//!
//! Limits: loopback TCP (bytes through one localhost connection) and the storage engine alone
//! (the embedded producer appending the same records with fsync group commit). Then, through the
//! broker, an rdkafka load generator in this process: produce throughput for 100 B and 1 KiB
//! records at acks=1 and acks=all, consume throughput, and end-to-end latency percentiles (p50,
//! p99, p99.9) at half the saturation rate: the slower of producing and consuming 100 B records
//! (`FRESHET_BENCH_LATENCY_RATE` overrides the rate). Targets: produce at acks=1 at least 60%
//! of the storage engine alone; p99 end-to-end latency under 10 ms at half saturation.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use freshet_broker::{Broker, BrokerConfig};
use freshet_core::config::LogConfig;
use freshet_core::{Admin, Embedded, NewTopic, Producer, ProducerRecord};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
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

/// Counts a producer's deliveries.
#[derive(Default)]
struct Counted {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counted {}

impl ProducerContext for Counted {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn producer(addr: &str, acks: &str, linger_ms: &str) -> BaseProducer<Counted> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", acks)
        .set("linger.ms", linger_ms)
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("enable.idempotence", "false")
        .create_with_context(Counted::default())
        .expect("a producer")
}

/// Sends one record, waiting for room in the local queue.
fn send(producer: &BaseProducer<Counted>, topic: &str, key: &[u8], value: &[u8]) {
    let mut record = BaseRecord::to(topic).key(key).payload(value).partition(0);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => panic!("send: {e}"),
        }
    }
}

/// Records per second produced through the broker, all acknowledged.
fn produce(addr: &str, topic: &str, n: usize, size: usize, acks: &str) -> f64 {
    let producer = producer(addr, acks, "5");
    let v = value(size);
    let started = Instant::now();
    for i in 0..n {
        send(&producer, topic, format!("k{}", i % 100_000).as_bytes(), v.as_bytes());
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let elapsed = started.elapsed().as_secs_f64();
    let context = producer.context();
    assert_eq!(context.failed.load(Ordering::Relaxed), 0, "failed deliveries");
    assert_eq!(context.delivered.load(Ordering::Relaxed), n as u64);
    n as f64 / elapsed
}

fn consumer(addr: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        // librdkafka's default (1 s) pauses fetching whenever the local queue fills, so the
        // client, not the broker, would set the pace (see `remote.rs`).
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("a consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    consumer
}

/// Records per second read back through the broker.
fn consume(addr: &str, topic: &str, n: usize) -> f64 {
    let consumer = consumer(addr, topic);
    let started = Instant::now();
    let mut read = 0;
    while read < n {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(_)) => read += 1,
            Some(Err(e)) => panic!("consume: {e}"),
            None => panic!("no records for 10 s after {read} of {n}"),
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// End-to-end latency percentiles (ms) at `rate` records per second for `seconds`: each value
/// carries its send time; a consumer on another thread measures when it arrives. The producer has
/// the client's default linger (5 ms) and acks=1.
fn latency(addr: &str, topic: &str, rate: f64, seconds: f64) -> String {
    let expected = (rate * seconds) as usize;
    let epoch = Instant::now();
    let reader = {
        let (addr, topic) = (addr.to_string(), topic.to_string());
        std::thread::spawn(move || {
            let consumer = consumer(&addr, &topic);
            let mut latencies = Vec::with_capacity(expected);
            let deadline = Instant::now() + Duration::from_secs_f64(seconds + 60.0);
            while latencies.len() < expected && Instant::now() < deadline {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    let sent: u64 = std::str::from_utf8(m.payload().unwrap()).unwrap()[..20].parse().unwrap();
                    latencies.push(epoch.elapsed().as_nanos() as u64 - sent);
                }
            }
            latencies
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let producer = producer(addr, "1", "5");
    let padding = value(80);
    let started = Instant::now();
    // Paced per millisecond: the records due by now go out, then a short sleep.
    let mut sent = 0usize;
    while sent < expected {
        let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(expected);
        while sent < due {
            let v = format!("{:020}{padding}", epoch.elapsed().as_nanos() as u64);
            send(&producer, topic, b"k", v.as_bytes());
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_micros(200));
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let mut latencies = reader.join().unwrap();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)] as f64 / 1e6;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms ({} of {expected} records)",
        at(0.5),
        at(0.99),
        at(0.999),
        latencies.len()
    )
}

/// Writes every dirty page of the machine back (`sync`), so a phase does not pay for the last.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

/// The p99 figure (ms) of a latency line.
fn line_p99(line: &str) -> f64 {
    line.split("p99 ").nth(1).and_then(|r| r.split(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(f64::MAX)
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
            // Each phase starts with no dirty pages of the one before being written back under it.
            settle();
            let engine = rt.block_on(engine_records_per_sec(&log, &engine_topic, n, size));
            settle();
            let through = produce(&addr, &broker_topic, n, size, acks);
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
                let consumed = consume(&addr, &broker_topic, n);
                if size == 100 {
                    // End to end, records go no faster than the slower of producing and consuming.
                    saturation = saturation.min(consumed);
                }
                println!(
                    "consume {size:>4} B        : {consumed:>9.0} records/s ({:>6.1} MB/s), {:>5.1}% of loopback",
                    consumed * size as f64 / 1e6,
                    consumed * size as f64 / loopback * 100.0
                );
            }
        }
    }
    let rate =
        std::env::var("FRESHET_BENCH_LATENCY_RATE").ok().and_then(|r| r.parse().ok()).unwrap_or(saturation / 2.0);
    let topic = "latency";
    rt.block_on(log.admin().create_topic(NewTopic { name: topic.into(), n_partitions: 1, configs: BTreeMap::new() }))
        .unwrap();
    let line = latency(&addr, topic, rate, 5.0);
    let met = if line_p99(&line) < 10.0 { "met" } else { "MISSED" };
    println!(
        "end-to-end latency at {rate:.0} records/s of 100 B (half of {saturation:.0}/s, the slower of producing and consuming 100 B): {line}; target p99 < 10 ms: {met}"
    );
    rt.block_on(broker.stop());
    rt.block_on(log.close()).unwrap();
}
