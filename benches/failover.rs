//! Failover: how long a producer goes without an acknowledgement when one broker of three fails,
//! Freshet's cluster beside Apache Kafka's, on this machine, in one run.
//!
//! `cargo bench -p freshet --no-default-features --bench failover` (after `./dev test` has
//! fetched Kafka's jars and the Python clients; the broker needs none of the default features,
//! which leaves RocksDB's C++ out of the release build).
//!
//! Each cluster has three nodes (broker and controller each, as Kafka's combined-mode sample),
//! with the same settings: `broker.session.timeout.ms=6000`, `broker.heartbeat.interval.ms=500`,
//! `replica.lag.time.max.ms=3000`. A topic of three partitions, replication factor 3 and
//! `min.insync.replicas=2`, takes records from confluent-kafka's idempotent producer with
//! `acks=all` (`tests/clients/replication.py produce`, a little paced) throughout these faults,
//! in turn:
//! - a follower of partition 0 paused with SIGSTOP, until it has left every ISR (the partitions
//!   it led move once its session runs out);
//! - the paused follower resumed, until every partition has three in-sync replicas again;
//! - partition 0's leader killed with SIGKILL, until another broker leads it.
//!
//! For each, the longest time between two acknowledgements from the fault until 1,000 more
//! records were acknowledged after it settled: the unavailability the producer saw. Shorter is
//! better; the ratio is Freshet's time over Kafka's. Afterwards every acknowledged record is
//! checked to be stored once, where it was acknowledged (`replication.py check`).

#![allow(clippy::print_stdout)]

#[allow(dead_code)]
#[path = "common/limits.rs"]
mod limits;
#[allow(dead_code, unreachable_pub)]
#[path = "../tests/it/peer.rs"]
mod peer;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use limits::{print_limits, ratio};
use peer::{FreshetCluster, KafkaCluster};

/// The settings both clusters run with (Freshet's test clusters set the session and heartbeat
/// themselves, to these values).
const SESSION: &str = "broker.session.timeout.ms=6000\nbroker.heartbeat.interval.ms=500\n";
const REPLICATION: &str = "replica.lag.time.max.ms=3000\n";
const TOPIC: &str = "failover";

/// The Python with the Kafka clients, and `tests/clients/replication.py`.
fn script() -> (String, String) {
    let home = std::env::var("HOME").unwrap_or_default();
    let python = std::env::var("FRESHET_PYTHON").unwrap_or_else(|_| format!("{home}/.cache/freshet/venv/bin/python"));
    (python, format!("{}/tests/clients/replication.py", env!("CARGO_MANIFEST_DIR")))
}

fn replication(args: &[&str]) {
    let (python, script) = script();
    let out = Command::new(python).arg(script).args(args).output().expect("the Python clients are installed");
    assert!(out.status.success(), "replication.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Each partition's leader and in-sync replicas, in partition order, as `addr` tells kcat.
fn placement(addr: &str) -> Vec<(i32, Vec<i32>)> {
    let out = Command::new("kcat").args(["-b", addr, "-L", "-t", TOPIC, "-m", "5"]).output().expect("kcat");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("partition "))
        .filter_map(|l| {
            let leader = l.split("leader ").nth(1)?.split(',').next()?.parse().ok()?;
            let isr = l.split("isrs: ").nth(1).unwrap_or("");
            Some((leader, isr.split(',').filter_map(|b| b.trim().parse().ok()).collect()))
        })
        .collect()
}

/// Waits (60 s at most) until `ready` holds of the topic's placement as `addr` tells it.
fn placement_until(addr: &str, what: &str, ready: impl Fn(&[(i32, Vec<i32>)]) -> bool) -> Vec<(i32, Vec<i32>)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = placement(addr);
        if p.len() == 3 && ready(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "never: {what} ({p:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The idempotent producer, writing until stopped; its acknowledgements in a file.
struct Writer {
    child: Child,
    stop: PathBuf,
    acks: PathBuf,
}

impl Writer {
    fn start(bootstrap: &str, dir: &Path) -> Self {
        let (python, script) = script();
        let (stop, acks) = (dir.join("stop"), dir.join("acks"));
        let child = Command::new(python)
            .arg(script)
            .args(["produce", bootstrap, TOPIC, stop.to_str().unwrap(), acks.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Writer { child, stop, acks }
    }

    fn acked(&self) -> usize {
        std::fs::read_to_string(&self.acks).map_or(0, |a| a.lines().count())
    }

    /// Waits (a minute at most) until `more` records more are acknowledged.
    fn wait_acked(&self, more: usize) {
        let target = self.acked() + more;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked() < target {
            assert!(Instant::now() < deadline, "the producer stalled at {} acknowledged records", self.acked());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The acknowledgement times, ascending.
    fn times(&self) -> Vec<f64> {
        let mut times: Vec<f64> = std::fs::read_to_string(&self.acks)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["t"].as_f64())
            .collect();
        times.sort_by(f64::total_cmp);
        times
    }

    /// Stops it and checks it ended well: every record answered.
    fn finish(self) {
        std::fs::write(&self.stop, "").unwrap();
        let out = self.child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok", "producer: {said}");
    }
}

/// The longest time between two acknowledgements in (`from`, `to`], counted from `from`, ms.
fn longest_gap(times: &[f64], from: f64, to: f64) -> f64 {
    let mut last = from;
    let mut longest = 0f64;
    for t in times.iter().filter(|t| **t > from && **t <= to) {
        longest = longest.max(t - last);
        last = *t;
    }
    longest * 1000.0
}

/// A cluster under test: its nodes' client addresses and processes (node `n` at `n - 1`), and
/// how to kill one for good.
struct Target<'a> {
    addrs: Vec<String>,
    pids: Vec<u32>,
    kill: Box<dyn FnMut(usize) + 'a>,
}

fn signal(pid: u32, signal: &str) {
    assert!(Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success());
}

/// The three faults against `target`; the unavailability of each, ms.
fn faults(mut target: Target<'_>, dir: &Path) -> [f64; 3] {
    let bootstrap = target.addrs.join(",");
    replication(&["create", &bootstrap, TOPIC, "3", "3"]);
    let all_in_sync = |p: &[(i32, Vec<i32>)]| p.iter().all(|(l, isr)| *l > 0 && isr.len() == 3);
    let md = placement_until(&target.addrs[0], "every partition in sync", all_in_sync);
    let writer = Writer::start(&bootstrap, dir);
    writer.wait_acked(2000);
    let mut windows = Vec::new();

    // A follower of partition 0 paused until it has left every ISR.
    let leader = md[0].0 as usize;
    let paused = (1..=3).find(|n| *n != leader).unwrap();
    let watch = (1..=3).find(|n| *n != paused).unwrap();
    let from = now_s();
    signal(target.pids[paused - 1], "-STOP");
    placement_until(&target.addrs[watch - 1], "the paused follower out of every ISR", |p| {
        p.iter().all(|(l, isr)| *l > 0 && *l as usize != paused && !isr.contains(&(paused as i32)))
    });
    writer.wait_acked(1000);
    windows.push((from, now_s()));

    // Resumed: it catches up and rejoins.
    let from = now_s();
    signal(target.pids[paused - 1], "-CONT");
    placement_until(&target.addrs[watch - 1], "every partition in sync again", all_in_sync);
    writer.wait_acked(1000);
    windows.push((from, now_s()));

    // Partition 0's leader killed.
    let md = placement(&target.addrs[watch - 1]);
    let leader = md[0].0 as usize;
    let watch = (1..=3).find(|n| *n != leader).unwrap();
    let from = now_s();
    (target.kill)(leader);
    placement_until(&target.addrs[watch - 1], "partition 0 led by another broker", |p| {
        p[0].0 > 0 && p[0].0 as usize != leader
    });
    writer.wait_acked(1000);
    windows.push((from, now_s()));

    let times = writer.times();
    let acks = writer.acks.to_str().unwrap().to_owned();
    writer.finish();
    let alive: Vec<String> =
        target.addrs.iter().enumerate().filter(|(i, _)| *i + 1 != leader).map(|(_, a)| a.clone()).collect();
    replication(&["check", &alive.join(","), TOPIC, &acks]);
    let gap = |i: usize| longest_gap(&times, windows[i].0, windows[i].1);
    [gap(0), gap(1), gap(2)]
}

fn main() {
    let scratch = tempfile::tempdir().unwrap();
    println!(
        "Failover: the longest time an idempotent acks=all producer went without an acknowledgement, per fault \
         (3 brokers, RF 3, min.insync.replicas=2)"
    );
    print_limits(scratch.path());

    let mut cluster = FreshetCluster::start_with(3, REPLICATION);
    let freshet = {
        let addrs: Vec<String> = (1..=3).map(|n| cluster.addr(n)).collect();
        let pids: Vec<u32> = cluster.nodes.iter().map(|n| n.as_ref().expect("running").pid()).collect();
        let dir = tempfile::tempdir().unwrap();
        let kill = Box::new(|node: usize| cluster.kill(node));
        faults(Target { addrs, pids, kill }, dir.path())
    };
    cluster.stop();
    let _ = Command::new("sync").status();

    let kafka_dir = tempfile::tempdir().unwrap();
    let mut kafka = KafkaCluster::start(kafka_dir.path(), 3, &format!("{SESSION}{REPLICATION}"));
    let kafka_figures = {
        let addrs: Vec<String> = kafka.nodes.iter().map(|n| n.addr.clone()).collect();
        let pids = kafka.pids();
        let by_node = pids.clone();
        let dir = tempfile::tempdir().unwrap();
        let nodes = &mut kafka.nodes;
        let kill = Box::new(move |node: usize| {
            let pid = by_node[node - 1];
            signal(pid, "-KILL");
            // Dropped, it is reaped; the others stop as usual.
            let at = nodes.iter().position(|n| n.pid() == pid).expect("a running node");
            drop(nodes.remove(at));
        });
        faults(Target { addrs, pids, kill }, dir.path())
    };
    kafka.stop();

    println!();
    println!("| fault | Freshet, ms | Kafka, ms | Freshet / Kafka |");
    println!("|---|---|---|---|");
    let names = [
        "a follower paused (SIGSTOP) until it left every ISR",
        "the paused follower resumed, until all in sync",
        "a leader killed (SIGKILL), until another leads",
    ];
    for (i, name) in names.iter().enumerate() {
        println!("| {name} | {:.0} | {:.0} | {} |", freshet[i], kafka_figures[i], ratio(freshet[i], kafka_figures[i]));
    }
}
