//! Connector pipelines: Freshet's worker beside Kafka Connect (4.3, from its jars), on this
//! machine, in one run, both on the same Freshet broker.
//!
//! `cargo bench -p freshet --bench connect` (after `./dev test` has fetched Kafka's jars).
//! `FRESHET_BENCH_CONNECT_RECORDS` sets the lines (default 1 M, 100 bytes each).
//!
//! Limits first, measured in the same run (disk with fdatasync, sequential writes, memory copy,
//! one loopback TCP connection). Then:
//! - file -> topic -> file: the FileStream source reads a file of lines into a topic and the
//!   FileStream sink writes the topic into another file, with string converters, as Kafka's
//!   quickstart runs it: Kafka Connect standalone (`ConnectStandalone`), then `freshet connect
//!   standalone`, each alone on the machine but for the broker; Kafka Connect with the heap its
//!   script gives it (`-Xms256M -Xmx2G`). Records/s from the first line out
//!   to the last; the worker's CPU-seconds over the whole run (start-up included) and from the
//!   first line out, as records/s per core; its peak resident memory (VmHWM).
//! - datagen -> blackhole, Freshet alone (Kafka ships no generator): the Datagen source's Nexmark
//!   bids through the embedded log into a sink that drops them; the same figures.
//!
//! Targets (issue "Connector pipelines"): at least 3x Kafka Connect's records/s per core, at most
//! a tenth of its memory.

#![allow(clippy::print_stdout)]

#[path = "common/limits.rs"]
mod limits;
#[allow(dead_code, unreachable_pub)]
#[path = "../tests/it/peer.rs"]
mod peer;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use limits::{cpu_seconds, peak_rss_mib, print_limits, ratio};
use peer::{Kind, Peer};

/// What one worker did.
#[derive(Debug, Default)]
struct Run {
    /// Seconds from the first record out to the last.
    steady_secs: f64,
    /// CPU-seconds of the worker from its start to the last record.
    cpu_total: f64,
    /// CPU-seconds of the worker from the first record out to the last.
    cpu_steady: f64,
    /// Peak resident memory, MiB.
    peak_rss_mib: f64,
    /// Seconds from the worker's start to the last record.
    wall: f64,
}

impl Run {
    /// Records/s from the first record out to the last.
    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.steady_secs
    }

    fn per_core(&self, n: u64) -> f64 {
        n as f64 / self.cpu_steady
    }

    fn per_core_total(&self, n: u64) -> f64 {
        n as f64 / self.cpu_total
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// A file of `n` lines of 100 bytes each (the newline included).
fn write_input(path: &Path, n: u64) -> u64 {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(f, "line {i:010} {}", "x".repeat(83)).unwrap();
    }
    f.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// Which worker runs the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Worker {
    KafkaConnect,
    Freshet,
}

/// The file pipeline on `broker` with `worker`: its figures once the output file equals the
/// input.
fn file_pipeline(worker: Worker, broker: &str, dir: &Path, input: &Path, size: u64) -> Run {
    let name = match worker {
        Worker::KafkaConnect => "kafka",
        Worker::Freshet => "freshet",
    };
    let path = |f: &str| dir.join(format!("{name}-{f}"));
    let output = path("out.txt");
    std::fs::write(
        path("worker.properties"),
        format!(
            "bootstrap.servers={broker}\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             offset.storage.file.filename={}\noffset.flush.interval.ms=10000\n\
             listeners=http://127.0.0.1:{}\nplugin.discovery=only_scan\n",
            path("offsets").display(),
            free_port()
        ),
    )
    .unwrap();
    std::fs::write(
        path("source.properties"),
        format!(
            "name=source\nconnector.class=FileStreamSource\ntasks.max=1\nfile={}\ntopic={name}-lines\n",
            input.display()
        ),
    )
    .unwrap();
    std::fs::write(
        path("sink.properties"),
        format!(
            "name=sink\nconnector.class=FileStreamSink\ntasks.max=1\nfile={}\ntopics={name}-lines\n",
            output.display()
        ),
    )
    .unwrap();
    let files = [path("worker.properties"), path("source.properties"), path("sink.properties")];
    let log = std::fs::File::create(path("worker.log")).unwrap();
    let mut command = match worker {
        Worker::KafkaConnect => {
            let mut c = Command::new("java");
            // The heap connect-standalone.sh gives it (KAFKA_HEAP_OPTS' default).
            c.args(["-Xms256M", "-Xmx2G"]).arg(peer::log4j_config()).args([
                "-cp",
                &peer::connect_classpath(),
                "org.apache.kafka.connect.cli.ConnectStandalone",
            ]);
            c
        }
        Worker::Freshet => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_freshet"));
            c.args(["connect", "standalone"]);
            c
        }
    };
    let started = Instant::now();
    let child = command.args(files).stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let run =
        watch(child.id(), started, || std::fs::metadata(&output).map_or(0, |m| m.len()), size, &path("worker.log"));
    stop(child);
    assert_eq!(std::fs::read(&output).unwrap(), std::fs::read(input).unwrap(), "{name}: the output is the input");
    run
}

/// Samples a worker until `progress` reaches `done`: the figures of its run.
fn watch(pid: u32, started: Instant, progress: impl Fn() -> u64, done: u64, log: &PathBuf) -> Run {
    let deadline = started + Duration::from_secs(1800);
    let mut first: Option<(Instant, f64)> = None;
    loop {
        let now = progress();
        if now > 0 && first.is_none() {
            first = Some((Instant::now(), cpu_seconds(pid)));
        }
        if now >= done {
            let end = Instant::now();
            let cpu = cpu_seconds(pid);
            let (t0, cpu0) = first.expect("seen before the end");
            return Run {
                steady_secs: (end - t0).as_secs_f64(),
                cpu_total: cpu,
                cpu_steady: cpu - cpu0,
                peak_rss_mib: peak_rss_mib(pid),
                wall: (end - started).as_secs_f64(),
            };
        }
        assert!(
            Instant::now() < deadline,
            "the worker made {now} of {done} in 30 minutes; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The datagen -> blackhole pipeline on the embedded log: Freshet's figures.
fn datagen_pipeline(dir: &Path, n: u64) -> Run {
    let path = |f: &str| dir.join(f);
    let port = free_port();
    std::fs::write(
        path("datagen-worker.properties"),
        format!("offset.flush.interval.ms=10000\nlisteners=http://127.0.0.1:{port}\n"),
    )
    .unwrap();
    std::fs::write(
        path("datagen.properties"),
        format!("name=datagen\nconnector.class=DatagenSource\nkafka.topic=bids\nquickstart=bids\niterations={n}\n"),
    )
    .unwrap();
    std::fs::write(path("blackhole.properties"), "name=blackhole\nconnector.class=BlackholeSink\ntopics=bids\n")
        .unwrap();
    let log = std::fs::File::create(path("datagen.log")).unwrap();
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["connect", "standalone"])
        .args([path("datagen-worker.properties"), path("datagen.properties"), path("blackhole.properties")])
        .arg("--data-dir")
        .arg(path("datagen-data"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/connectors/blackhole/status");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let written = move || -> u64 {
        let Ok(mut response) = agent.get(&url).call() else { return 0 };
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let status: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        status["tasks"][0]["metrics"]["records-written"].as_u64().unwrap_or(0)
    };
    let run = watch(child.id(), started, written, n, &path("datagen.log"));
    stop(child);
    run
}

fn main() {
    let n: u64 = std::env::var("FRESHET_BENCH_CONNECT_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let scratch = tempfile::tempdir().unwrap();
    println!("Connector pipelines: Freshet's worker beside Kafka Connect 4.3 on this machine");
    print_limits(scratch.path());

    let broker_dir = scratch.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let broker = Peer::start(Kind::Freshet, &broker_dir);
    let input = scratch.path().join("in.txt");
    let size = write_input(&input, n);
    println!("\nfile -> topic -> file, {n} lines of 100 B, string converters, on a Freshet broker:");
    let mut runs = Vec::new();
    for worker in [Worker::KafkaConnect, Worker::Freshet] {
        runs.push(file_pipeline(worker, broker.addr(), scratch.path(), &input, size));
        let _ = Command::new("sync").status();
    }
    broker.stop();
    let (kafka, freshet) = (&runs[0], &runs[1]);
    println!("  {:<36} {:>14} {:>14} {:>8}", "", "Kafka Connect", "Freshet", "ratio");
    let row = |what: &str, k: f64, f: f64, unit: &str| {
        println!("  {what:<36} {:>14} {:>14} {:>8}", format!("{k:.0}{unit}"), format!("{f:.0}{unit}"), ratio(f, k));
    };
    row("records/s (first line out to last)", kafka.rate(n), freshet.rate(n), "");
    row("records/s per core (same interval)", kafka.per_core(n), freshet.per_core(n), "");
    row("records/s per core (start-up included)", kafka.per_core_total(n), freshet.per_core_total(n), "");
    row("worker CPU-seconds, whole run", kafka.cpu_total, freshet.cpu_total, "");
    row("seconds from start to the last line", kafka.wall, freshet.wall, "");
    row("peak resident memory, MiB", kafka.peak_rss_mib, freshet.peak_rss_mib, "");

    println!("\ndatagen -> blackhole, {n} Nexmark bids, JSON with schemas, embedded log (Freshet alone):");
    let dg = datagen_pipeline(scratch.path(), n);
    println!("  records/s (first record out to last): {:.0}", dg.rate(n));
    println!("  records/s per core: {:.0} (start-up included: {:.0})", dg.per_core(n), dg.per_core_total(n));
    println!("  peak resident memory: {:.0} MiB", dg.peak_rss_mib);
}
