//! Three Freshet brokers beside one, and replication beside none, on this machine, in one run:
//! Kafka's producer and consumer perf tools drive every setup, Apache Kafka's own three-broker
//! cluster among them.
//!
//! `cargo bench -p freshet --bench cluster` (after `./dev test` has fetched Kafka's jars).
//! `FRESHET_BENCH_RECORDS` sets the records (default 1 M, 100 B each).
//!
//! The machine's limits first (disk with fdatasync, memory copy, loopback TCP). Then, each on
//! fresh directories and alone on the machine, a topic of 6 partitions produced at full speed
//! with acks=all (ProducerPerformance), then read whole (ConsumerPerformance):
//! - one Freshet broker (`freshet broker`, fsync group commit);
//! - three Freshet brokers (processes with the metadata quorum, each broker and controller), the
//!   topic with one copy per partition (two partitions led by each broker);
//! - the same three with replication factor 3 and `min.insync.replicas=2`: every record
//!   acknowledged once all three brokers hold it;
//! - Apache Kafka's three-broker cluster (KRaft, combined mode, its defaults: page-cache
//!   durability) with the same topic, replication factor 3 and `min.insync.replicas=2`.
//!
//! On one machine the brokers share its cores and disk, so the ratios say what routing, the
//! extra processes and replication cost here, not what three machines would give.

#![allow(clippy::print_stdout)]

// Shared with the other benchmarks, which use parts this one does not.
#[allow(dead_code)]
#[path = "common/limits.rs"]
mod limits;
#[allow(dead_code, unreachable_pub)]
#[path = "../tests/it/peer.rs"]
mod peer;
#[allow(dead_code)]
#[path = "common/perf.rs"]
mod perf;

use limits::{cpu_seconds, print_limits, ratio};
use peer::{kafka_tool, BrokerProcess, FreshetCluster, KafkaCluster};
use perf::{consume, produce, PerfSummary};

/// What one setup did.
struct Figures {
    produced: PerfSummary,
    consumed: f64,
    /// CPU-seconds of the brokers per million records, producing and consuming.
    cpu_per_million: f64,
}

/// Creates `topic` (6 partitions) with `replicas` replicas each, and `min.insync.replicas=2`
/// when replicated.
fn create(addr: &str, topic: &str, replicas: usize) {
    let rf = replicas.to_string();
    let mut args = vec!["--bootstrap-server", addr, "--create", "--topic", topic, "--partitions", "6"];
    args.extend(["--replication-factor", &rf]);
    if replicas > 1 {
        args.extend(["--config", "min.insync.replicas=2"]);
    }
    let out = kafka_tool("org.apache.kafka.tools.TopicCommand", &args, "");
    assert!(out.contains("Created topic"), "{out}");
}

/// Produces then consumes `records` of `topic` (created with `replicas` replicas) through
/// `bootstrap`; `pids` are the brokers' processes.
fn run(bootstrap: &str, pids: &[u32], topic: &str, replicas: usize, records: u64) -> Figures {
    create(bootstrap.split(',').next().unwrap(), topic, replicas);
    let cpu = || pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let before = cpu();
    let produced = produce(bootstrap, topic, records, 100, "all", None);
    let (consumed, _, _) = consume(bootstrap, topic, records, pids[0]);
    let cpu_per_million = (cpu() - before) / (records as f64 / 1e6);
    Figures { produced, consumed, cpu_per_million }
}

/// One row of the table: each setup's figure, then the ratios the brief asks for.
fn row(name: &str, f: impl Fn(&Figures) -> f64, all: &[&Figures; 4], digits: usize) {
    let [one, three, rf3, kafka] = all;
    println!(
        "| {name} | {:.digits$} | {:.digits$} | {:.digits$} | {:.digits$} | {} | {} | {} |",
        f(one),
        f(three),
        f(rf3),
        f(kafka),
        ratio(f(three), f(one)),
        ratio(f(rf3), f(three)),
        ratio(f(rf3), f(kafka)),
    );
}

fn main() {
    let records: u64 = std::env::var("FRESHET_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let scratch = tempfile::tempdir().unwrap();
    println!(
        "Freshet: one broker, three, three replicating (RF 3), and Kafka's three replicating, on this machine \
         ({records} records of 100 B, 6 partitions, acks=all)"
    );
    print_limits(scratch.path());

    let one_dir = tempfile::tempdir().unwrap();
    let one = BrokerProcess::start(&one_dir.path().join("data"));
    let single = run(&one.addr, &[one.pid()], "bench", 1, records);
    one.stop();
    drop(one_dir);
    let _ = std::process::Command::new("sync").status();

    let cluster = FreshetCluster::start(3);
    let addrs: Vec<String> = (1..=3).map(|n| cluster.addr(n)).collect();
    let pids: Vec<u32> = cluster.nodes.iter().map(|n| n.as_ref().expect("running").pid()).collect();
    let three = run(&addrs.join(","), &pids, "bench", 1, records);
    cluster.stop();
    let _ = std::process::Command::new("sync").status();

    let cluster = FreshetCluster::start(3);
    let addrs: Vec<String> = (1..=3).map(|n| cluster.addr(n)).collect();
    let pids: Vec<u32> = cluster.nodes.iter().map(|n| n.as_ref().expect("running").pid()).collect();
    let replicated = run(&addrs.join(","), &pids, "bench-rf3", 3, records);
    cluster.stop();
    let _ = std::process::Command::new("sync").status();

    let kafka_dir = tempfile::tempdir().unwrap();
    let kafka = KafkaCluster::start(kafka_dir.path(), 3, "");
    let kafka_rf3 = run(&kafka.bootstrap(), &kafka.pids(), "bench-rf3", 3, records);
    kafka.stop();

    println!();
    println!(
        "| | one broker | three, RF 1 | three, RF 3 | Kafka three, RF 3 | three / one | RF 3 / RF 1 | Freshet / Kafka, RF 3 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let all = [&single, &three, &replicated, &kafka_rf3];
    row("produce, records/s", |f| f.produced.records_per_sec, &all, 0);
    row("produce, MB/s", |f| f.produced.mb_per_sec, &all, 1);
    row("produce p99, ms (at full speed)", |f| f.produced.p99_ms, &all, 0);
    row("consume, records/s", |f| f.consumed, &all, 0);
    row("brokers' CPU-s per million records", |f| f.cpu_per_million, &all, 2);
}
