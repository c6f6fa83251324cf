//! Kafka's producer and consumer perf tools (from its jars) as the load generator of the broker
//! benchmarks, and their summaries parsed.

use crate::limits::{cpu_seconds, stat_seconds};
use crate::peer::kafka_tool;

/// One ProducerPerformance summary line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PerfSummary {
    pub(crate) records_per_sec: f64,
    pub(crate) mb_per_sec: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
}

/// Parses "N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency, P ms
/// 50th, Q ms 95th, R ms 99th, S ms 99.9th."
fn parse_produced(out: &str) -> PerfSummary {
    let line = out.lines().rev().find(|l| l.contains("records sent")).unwrap_or_else(|| panic!("no summary in {out}"));
    let numbers: Vec<f64> = line
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|s| !s.is_empty() && *s != ".")
        .filter_map(|s| s.parse().ok())
        .collect();
    // [N, X, Y, avg, max, p50, 50, p95, 95, p99, 99, p999, 99.9]
    PerfSummary {
        records_per_sec: numbers[1],
        mb_per_sec: numbers[2],
        p50_ms: numbers[5],
        p99_ms: numbers[9],
        p999_ms: numbers[11],
    }
}

pub(crate) fn produce(
    addr: &str,
    topic: &str,
    records: u64,
    size: usize,
    acks: &str,
    rate: Option<u64>,
) -> PerfSummary {
    let throughput = rate.map_or("-1".to_string(), |r| r.to_string());
    let out = kafka_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        &[
            "--topic",
            topic,
            "--num-records",
            &records.to_string(),
            "--record-size",
            &size.to_string(),
            "--throughput",
            &throughput,
            "--producer-props",
            &format!("bootstrap.servers={addr}"),
            &format!("acks={acks}"),
            "linger.ms=5",
            "batch.size=65536",
        ],
        "",
    );
    parse_produced(&out)
}

/// Records per second ConsumerPerformance reads `records` of the topics matching `include` at,
/// and the CPU-seconds per million of them that the broker (process `broker`) and the consumer
/// (the JVM, a child of this process) spent meanwhile.
pub(crate) fn consume(addr: &str, include: &str, records: u64, broker: u32) -> (f64, f64, f64) {
    let cpu = cpu_seconds(broker);
    let children = children_cpu_seconds();
    let out = kafka_tool(
        "org.apache.kafka.tools.ConsumerPerformance",
        &["--bootstrap-server", addr, "--include", include, "--messages", &records.to_string(), "--timeout", "60000"],
        "",
    );
    let cpu = cpu_seconds(broker) - cpu;
    let consumer = children_cpu_seconds() - children;
    // start, end, MB, MB/s, n, n/s, rebalance ms, fetch ms, fetch MB/s, fetch n/s
    let row = out.lines().last().unwrap_or_default();
    let fields: Vec<&str> = row.split(", ").collect();
    let rate = fields.get(9).and_then(|f| f.trim().parse().ok()).unwrap_or_else(|| panic!("no figures in {out}"));
    let millions = records as f64 / 1e6;
    (rate, cpu / millions, consumer / millions)
}

/// The CPU time (user and system) of this process's children that have ended and been waited
/// for, seconds.
fn children_cpu_seconds() -> f64 {
    stat_seconds(std::process::id(), 13)
}
