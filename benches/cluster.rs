//! Three Freshet brokers beside one, on this machine, in one run: Kafka's producer and consumer
//! perf tools drive both.
//!
//! `cargo bench -p freshet --bench cluster` (after `./dev test` has fetched Kafka's jars).
//! `FRESHET_BENCH_RECORDS` sets the records (default 1 M, 100 B each).
//!
//! The machine's limits first (disk with fdatasync, memory copy, loopback TCP). Then one broker
//! (`freshet broker`, fsync group commit) and a cluster of three (`freshet broker` processes with
//! the metadata quorum, each broker and controller), each on fresh directories and alone on the
//! machine: a topic of 6 partitions (on the cluster, two led by each broker), produced at full
//! speed with acks=all (ProducerPerformance), then read whole (ConsumerPerformance). Each figure
//! is printed beside the one broker's as a ratio. Partitions have one copy: this measures spreading
//! the work over brokers, not replication. On one machine the three brokers share its cores and
//! disk, so the ratio says what the routing and the extra processes cost here, not what three
//! machines would give.

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
use peer::{kafka_tool, BrokerProcess, FreshetCluster};
use perf::{consume, produce, PerfSummary};

/// What one setup did.
struct Figures {
    produced: PerfSummary,
    consumed: f64,
    /// CPU-seconds of the brokers per million records, producing and consuming.
    cpu_per_million: f64,
}

fn create(addr: &str, topic: &str) {
    let out = kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &["--bootstrap-server", addr, "--create", "--topic", topic, "--partitions", "6"],
        "",
    );
    assert!(out.contains("Created topic"), "{out}");
}

/// Produces then consumes `records` through `bootstrap`; `pids` are the brokers' processes.
fn run(bootstrap: &str, pids: &[u32], records: u64) -> Figures {
    create(bootstrap.split(',').next().unwrap(), "bench");
    let cpu = || pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let before = cpu();
    let produced = produce(bootstrap, "bench", records, 100, "all", None);
    let (consumed, _, _) = consume(bootstrap, "bench", records, pids[0]);
    let cpu_per_million = (cpu() - before) / (records as f64 / 1e6);
    Figures { produced, consumed, cpu_per_million }
}

fn main() {
    let records: u64 = std::env::var("FRESHET_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let scratch = tempfile::tempdir().unwrap();
    println!("Three Freshet brokers beside one on this machine ({records} records of 100 B, 6 partitions, acks=all)");
    print_limits(scratch.path());

    let one_dir = tempfile::tempdir().unwrap();
    let one = BrokerProcess::start(&one_dir.path().join("data"));
    let single = run(&one.addr, &[one.pid()], records);
    one.stop();
    drop(one_dir);
    let _ = std::process::Command::new("sync").status();

    let cluster = FreshetCluster::start(3);
    let addrs: Vec<String> = (1..=3).map(|n| cluster.addr(n)).collect();
    let pids: Vec<u32> = cluster.nodes.iter().map(|n| n.as_ref().expect("running").pid()).collect();
    let three = run(&addrs.join(","), &pids, records);
    cluster.stop();

    println!();
    println!("| | one broker | three brokers | three / one |");
    println!("|---|---|---|---|");
    println!(
        "| produce, records/s | {:.0} | {:.0} | {} |",
        single.produced.records_per_sec,
        three.produced.records_per_sec,
        ratio(three.produced.records_per_sec, single.produced.records_per_sec)
    );
    println!(
        "| produce, MB/s | {:.1} | {:.1} | {} |",
        single.produced.mb_per_sec,
        three.produced.mb_per_sec,
        ratio(three.produced.mb_per_sec, single.produced.mb_per_sec)
    );
    println!(
        "| produce p99, ms (at full speed) | {:.0} | {:.0} | {} |",
        single.produced.p99_ms,
        three.produced.p99_ms,
        ratio(three.produced.p99_ms, single.produced.p99_ms)
    );
    println!(
        "| consume, records/s | {:.0} | {:.0} | {} |",
        single.consumed,
        three.consumed,
        ratio(three.consumed, single.consumed)
    );
    println!(
        "| brokers' CPU-s per million records | {:.2} | {:.2} | {} |",
        single.cpu_per_million,
        three.cpu_per_million,
        ratio(three.cpu_per_million, single.cpu_per_million)
    );
}
