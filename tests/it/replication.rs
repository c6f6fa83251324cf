//! Replicated partitions across three `freshet broker` processes (replication factor 3,
//! `min.insync.replicas=2`) while an idempotent `acks=all` producer (confluent-kafka) writes
//! throughout: a partition's leader killed with SIGKILL and brought back, a follower paused with
//! SIGSTOP past `replica.lag.time.max.ms` and resumed. Afterwards a checker in the manner of
//! Jepsen's Kafka workload reads everything with two clients: no acknowledged record lost, none
//! stored twice, each at the offset it was acknowledged with. Where a leader is cut off, a
//! transactional producer writes beside it, checked at `read_committed`: every committed
//! transaction whole and no aborted one's record. The brokers' metrics show the under-replicated and under-min-ISR partitions
//! meanwhile. Also: coordinators and partitions that move, and an exactly-once streams
//! application whose input's leader dies.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::broker::{python_clients, python_script};
use crate::peer::FreshetCluster;

/// Each partition's leader and in-sync replicas, in partition order, from kcat's listing.
fn placement(metadata: &str) -> Vec<(i32, Vec<i32>)> {
    metadata
        .lines()
        .filter_map(|l| l.trim().strip_prefix("partition "))
        .map(|l| {
            let leader = l.split("leader ").nth(1).and_then(|r| r.split(',').next()).unwrap().parse().unwrap();
            let isr = l.split("isrs: ").nth(1).unwrap_or("");
            (leader, isr.split(',').filter_map(|b| b.trim().parse().ok()).collect())
        })
        .collect()
}

/// Whether each of a three-partition topic's partitions is led and has all three replicas in
/// sync, from kcat's listing.
fn all_in_sync(metadata: &str) -> bool {
    let p = placement(metadata);
    p.len() == 3 && p.iter().all(|(l, isr)| *l > 0 && isr.len() == 3)
}

/// Whether every partition is led by its preferred (first) replica, from kcat's listing.
fn preferred_lead(metadata: &str) -> bool {
    let lines: Vec<&str> = metadata.lines().filter_map(|l| l.trim().strip_prefix("partition ")).collect();
    !lines.is_empty()
        && lines.iter().all(|l| {
            let leader = l.split("leader ").nth(1).and_then(|r| r.split(',').next()).unwrap_or("");
            let first = l.split("replicas: ").nth(1).and_then(|r| r.split(',').next()).unwrap_or("-");
            leader == first
        })
}

/// An idempotent `acks=all` producer (`replication.py produce`) writing numbered records to a
/// topic until finished, noting every acknowledged record in a file the checker reads.
struct Writer {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Writer {
    fn start(bootstrap: &str, topic: &str) -> Self {
        Self::spawn("produce", bootstrap, topic)
    }

    /// A transactional producer (`replication.py txn-produce`) instead, writing to `topic`
    /// (created with three partitions of three replicas), its file noting each transaction's
    /// records and outcome.
    fn transactional(cluster: &FreshetCluster, topic: &str) -> Self {
        python_clients("replication.py", &["create", &cluster.addr(1), topic, "3", "3"]);
        Self::spawn("txn-produce", &cluster.bootstrap(), topic)
    }

    /// Stops a transactional writer and checks its topic at `read_committed`: every committed
    /// transaction whole, no aborted one's record.
    fn check_transactions(self, bootstrap: &str, topic: &str) {
        assert!(self.acked() > 20, "only {} transactions ended", self.acked());
        let outcomes = self.acks();
        let _dir = self.finish();
        python_clients("replication.py", &["txn-check", bootstrap, topic, &outcomes]);
    }

    fn spawn(mode: &str, bootstrap: &str, topic: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (python, script) = python_script("replication.py");
        let (stop, acks) = (dir.path().join("stop"), dir.path().join("acks"));
        let child = Command::new(&python)
            .arg(&script)
            .args([mode, bootstrap, topic, stop.to_str().unwrap(), acks.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Writer { child, dir }
    }

    /// The acknowledgement file.
    fn acks(&self) -> String {
        self.dir.path().join("acks").to_str().unwrap().to_owned()
    }

    fn acked(&self) -> usize {
        std::fs::read_to_string(self.acks()).map_or(0, |a| a.lines().count())
    }

    /// Waits (a minute at most) until `more` records more are acknowledged.
    fn wait_acked(&self, more: usize) {
        let target = self.acked() + more;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked() < target {
            assert!(Instant::now() < deadline, "the producer stalled at {} acknowledged records", self.acked());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it, checks it ended well (every record answered), and returns its directory, with
    /// the acknowledgement file the checker reads.
    fn finish(self) -> tempfile::TempDir {
        std::fs::write(self.dir.path().join("stop"), "").unwrap();
        let out = self.child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        eprintln!("producer: {said}");
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok", "{said}");
        self.dir
    }
}

/// Waits (30 s at most) until `holds`, failing with `what` otherwise.
fn eventually(what: &str, holds: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !holds() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Now, in seconds since the epoch (as the acknowledgement file's times).
fn now_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Faults and the time the producer went without an acknowledgement during each: the
/// unavailability each caused, as the writer saw it.
#[derive(Default)]
struct Unavailability(Vec<(String, f64, f64)>);

impl Unavailability {
    /// Notes a fault's window: from `from` (when it struck) until now (once the writer went
    /// on past it).
    fn note(&mut self, name: &str, from: f64) {
        self.0.push((name.to_owned(), from, now_s()));
    }

    /// Prints, per fault, the longest time between two acknowledgements within its window
    /// (from the file of a finished writer).
    fn report(&self, acks: &str) {
        let mut times: Vec<f64> = std::fs::read_to_string(acks)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["t"].as_f64())
            .collect();
        times.sort_by(f64::total_cmp);
        for (name, from, to) in &self.0 {
            let mut last = *from;
            let mut longest = 0f64;
            for t in times.iter().filter(|t| **t > *from && **t <= *to) {
                longest = longest.max(t - last);
                last = *t;
            }
            eprintln!("unavailability: {name}: {} ms without an acknowledgement", (longest * 1000.0) as u64);
        }
    }
}

/// The Java client's read of a finished writer's topic (Kafka's console consumer): every
/// acknowledged record, each once, at the partition and offset it was acknowledged with.
fn check_with_java_client(bootstrap: &str, topic: &str, acks: &str) {
    // (partition, offset, value); an acknowledgement without an offset (a retry recognized as
    // stored but older than the batches the broker remembers) is checked for its partition.
    let acked: Vec<(i64, Option<i64>, String)> = std::fs::read_to_string(acks)
        .unwrap()
        .lines()
        .map(|l| {
            let a: serde_json::Value = serde_json::from_str(l).unwrap();
            (a["p"].as_i64().unwrap(), a["o"].as_i64(), a["v"].as_str().unwrap().to_owned())
        })
        .collect();
    let n = acked.len().to_string();
    let out = crate::peer::kafka_tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            &n,
            "--timeout-ms",
            "30000",
            "--property",
            "print.partition=true",
            "--property",
            "print.offset=true",
        ],
        "",
    );
    let mut read = std::collections::BTreeSet::new();
    for line in out.lines() {
        let mut fields = line.split('\t');
        let (Some(p), Some(o), Some(v)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let field = |f: &str, name: &str| f.strip_prefix(name).and_then(|x| x.parse::<i64>().ok());
        let (Some(p), Some(o)) = (field(p, "Partition:"), field(o, "Offset:")) else { continue };
        assert!(read.insert((p, o, v.to_owned())), "the Java client read {p}/{o} twice");
    }
    assert_eq!(read.len(), acked.len(), "the Java client read {} records of {}", read.len(), acked.len());
    let at: std::collections::BTreeMap<(i64, String), i64> =
        read.iter().map(|(p, o, v)| ((*p, v.clone()), *o)).collect();
    for (p, o, v) in &acked {
        let found = at.get(&(*p, v.clone()));
        assert!(
            found.is_some_and(|f| o.is_none_or(|o| o == *f)),
            "the Java client read {v} at {found:?} of partition {p}, acknowledged at {o:?}"
        );
    }
}

fn signal(cluster: &FreshetCluster, node: usize, signal: &str) {
    let pid = cluster.nodes[node - 1].as_ref().expect("the node runs").pid();
    assert!(Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success());
}

#[test]
fn replicated_partitions_lose_no_acknowledged_record_when_a_leader_dies_or_a_follower_stalls() {
    let extra = "default.replication.factor=3\nmin.insync.replicas=2\nreplica.lag.time.max.ms=3000\n\
                 leader.imbalance.check.interval.seconds=2\ntransaction.state.log.replication.factor=3\n";
    let mut cluster = FreshetCluster::start_with(3, extra);
    python_clients("replication.py", &["create", &cluster.addr(1), "jepsen", "3", "3"]);
    let md = cluster.metadata_until(1, "jepsen", all_in_sync);
    // A topic that needs all three in sync, to be under its minimum while one is not.
    let first = cluster.addr(1);
    let strict = ["--bootstrap-server", first.as_str(), "--create", "--topic", "strict", "--partitions", "1"];
    let strict = [&strict[..], &["--replication-factor", "3", "--config", "min.insync.replicas=3"]].concat();
    let out = crate::peer::kafka_tool("org.apache.kafka.tools.TopicCommand", &strict, "");
    assert!(out.contains("Created topic strict."), "{out}");

    let bootstrap = cluster.bootstrap();
    let writer = Writer::start(&bootstrap, "jepsen");
    // Transactions throughout, committed and aborted: their markers must survive the faults.
    let transactions = Writer::transactional(&cluster, "jepsen-txn");
    let wait_acked = |more: usize| writer.wait_acked(more);
    wait_acked(2000);

    let mut faults = Unavailability::default();
    // Partition 0's leader killed: a new leader from the ISR, and writes go on.
    let leader = placement(&md)[0].0 as usize;
    let from = now_s();
    cluster.kill(leader);
    let other = if leader == 1 { 2 } else { 1 };
    let failed_over = cluster.metadata_until(other, "jepsen", |m| {
        placement(m).first().is_some_and(|(l, _)| *l > 0 && *l as usize != leader)
    });
    eprintln!("leader {leader} killed:\n{failed_over}");
    wait_acked(2000);
    faults.note("a leader killed (SIGKILL)", from);
    // Back: it catches up from the new leaders, rejoins every ISR, and leads its partitions
    // again once the controller gives leadership back to preferred replicas.
    let from = now_s();
    cluster.nodes[leader - 1] = Some(cluster.start_node(leader));
    cluster.metadata_until(other, "jepsen", |m| all_in_sync(m) && preferred_lead(m));
    cluster.metadata_until(other, "strict", |m| placement(m).first().is_some_and(|(l, isr)| *l > 0 && isr.len() == 3));
    cluster.metadata_until(other, "jepsen-txn", all_in_sync);
    wait_acked(2000);
    faults.note("the killed leader back, preferred leaders restored", from);

    // A follower paused past replica.lag.time.max.ms leaves the ISR; writes go on with two in
    // sync; resumed, it catches up and rejoins.
    let md = cluster.metadata_until(1, "jepsen", all_in_sync);
    let leader = placement(&md)[0].0 as usize;
    let paused = if leader == 3 { 2 } else { 3 };
    let watch = if paused == 1 || leader == 1 { 6 - paused - leader } else { 1 };
    let from = now_s();
    signal(&cluster, paused, "-STOP");
    let shrunk = cluster.metadata_until(watch, "jepsen", |m| {
        placement(m).iter().all(|(_, isr)| !isr.contains(&(paused as i32)) && isr.len() == 2)
    });
    eprintln!("broker {paused} paused:\n{shrunk}");
    // Visible as kafka-topics shows it: every partition under-replicated, none under its
    // min.insync.replicas (two are in sync).
    let target = ["--bootstrap".to_owned(), cluster.addr(watch)];
    let (ok, out, err) = crate::topic::freshet(&["topic", "describe", "--under-replicated-partitions"], &target);
    assert!(ok, "{err}");
    for p in 0..3 {
        let line = out.lines().find(|l| l.starts_with(&format!("jepsen-{p}:"))).unwrap_or_else(|| panic!("{out}"));
        let isr = line.split("isr [").nth(1).and_then(|r| r.split(']').next()).unwrap_or_default();
        assert!(line.contains("min.insync.replicas 2") && !isr.contains(&paused.to_string()), "{line}");
    }
    let (ok, out, err) = crate::topic::freshet(&["topic", "describe", "jepsen", "--under-min-isr-partitions"], &target);
    assert!(ok && out.trim().is_empty(), "{out}{err}");
    // And in the metrics the leaders serve: each of jepsen's partitions under-replicated at its
    // leader, "strict" (min.insync.replicas=3) under its minimum too. (A broker's image may lag
    // the one kcat was answered from by a moment.)
    let running: Vec<usize> = (1..=3).filter(|n| *n != paused).collect();
    let total = |name: &str| running.iter().map(|n| cluster.metric(*n, name)).sum::<f64>();
    let partition_line =
        |metric: &str, topic: &str, p: i32| format!("freshet_{metric}{{topic=\"{topic}\",partition=\"{p}\"}}");
    eventually("every partition of jepsen under-replicated at its leader", || {
        (0..3).all(|p| total(&partition_line("partition_under_replicated", "jepsen", p)) == 1.0)
    });
    cluster.metadata_until(watch, "strict", |m| {
        placement(m).first().is_some_and(|(l, isr)| *l > 0 && isr.len() == 2 && !isr.contains(&(paused as i32)))
    });
    // Strict is under its minimum, jepsen (two of three in sync, min.insync.replicas=2) is not.
    let under_min_strict = partition_line("partition_under_min_isr", "strict", 0);
    let under_min = || -> Vec<String> {
        running
            .iter()
            .flat_map(|n| cluster.metrics(*n).lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|l| l.starts_with("freshet_partition_under_min_isr{"))
            .filter(|l| l.contains("topic=\"strict\"") || l.contains("topic=\"jepsen\""))
            .collect()
    };
    eventually("strict alone under its minimum", || under_min() == [format!("{under_min_strict} 1")]);
    assert!(total("freshet_under_replicated_partitions") >= 4.0);
    assert_eq!(total("freshet_offline_partitions"), 0.0);
    wait_acked(2000);
    faults.note("a follower paused (SIGSTOP) past replica.lag.time.max.ms=3000", from);
    let from = now_s();
    signal(&cluster, paused, "-CONT");
    cluster.metadata_until(watch, "jepsen", all_in_sync);
    cluster.metadata_until(watch, "strict", |m| placement(m).first().is_some_and(|(l, isr)| *l > 0 && isr.len() == 3));
    // Back in sync: nothing under-replicated any more, and every broker counted the ISR's
    // shrinks and expansions of what it led.
    let all = |name: &str| (1..=3).map(|n| cluster.metric(n, name)).sum::<f64>();
    eventually("no partition under-replicated in the metrics", || all("freshet_under_replicated_partitions") == 0.0);
    assert!(all("freshet_isr_shrinks_total") >= 2.0 && all("freshet_isr_expands_total") >= 2.0);
    assert_eq!(all(&under_min_strict), 0.0, "strict is back above its minimum");
    wait_acked(2000);
    faults.note("the paused follower resumed and back in sync", from);

    let acks = writer.acks();
    let _dir = writer.finish();
    faults.report(&acks);
    python_clients("replication.py", &["check", &bootstrap, "jepsen", &acks]);
    check_with_java_client(&bootstrap, "jepsen", &acks);
    transactions.check_transactions(&bootstrap, "jepsen-txn");
    cluster.stop();
}

#[test]
fn a_rolling_restart_of_every_broker_loses_nothing() {
    let extra = "default.replication.factor=3\nmin.insync.replicas=2\nreplica.lag.time.max.ms=3000\n\
                 leader.imbalance.check.interval.seconds=2\n";
    let mut cluster = FreshetCluster::start_with(3, extra);
    python_clients("replication.py", &["create", &cluster.addr(1), "rolling", "3", "3"]);
    cluster.metadata_until(1, "rolling", all_in_sync);
    let bootstrap = cluster.bootstrap();
    let writer = Writer::start(&bootstrap, "rolling");
    writer.wait_acked(1000);
    // As an operator upgrades a cluster: one broker at a time stopped (SIGTERM), started
    // again, and the next only once every partition is back in sync.
    let mut faults = Unavailability::default();
    for node in 1..=3 {
        let from = now_s();
        let process = cluster.nodes[node - 1].take().expect("the node runs");
        process.stop();
        let other = if node == 1 { 2 } else { 1 };
        cluster.metadata_until(other, "rolling", |m| placement(m).iter().all(|(l, _)| *l > 0 && *l as usize != node));
        writer.wait_acked(1000);
        cluster.nodes[node - 1] = Some(cluster.start_node(node));
        cluster.metadata_until(other, "rolling", |m| all_in_sync(m) && preferred_lead(m));
        writer.wait_acked(1000);
        faults.note(&format!("broker {node} restarted (SIGTERM, started again, back in sync)"), from);
    }
    let acks = writer.acks();
    let _dir = writer.finish();
    faults.report(&acks);
    python_clients("replication.py", &["check", &bootstrap, "rolling", &acks]);
    cluster.stop();
}

#[test]
fn a_leader_cut_off_from_the_other_brokers_loses_no_acknowledged_record() {
    if !crate::peer::netns::Network::available() {
        // Network namespaces need root; CI runs as root, where this test runs.
        eprintln!("skipped: this machine does not let the tests make network namespaces (root needed)");
        return;
    }
    let network = crate::peer::netns::Network::new(3);
    let extra = "default.replication.factor=3\nmin.insync.replicas=2\nreplica.lag.time.max.ms=3000\n\
                 transaction.state.log.replication.factor=3\n";
    let cluster = FreshetCluster::start_in_network(3, extra, &network);
    python_clients("replication.py", &["create", &cluster.addr(1), "cut", "3", "3"]);
    let md = cluster.metadata_until(1, "cut", all_in_sync);
    let bootstrap = cluster.bootstrap();
    let writer = Writer::start(&bootstrap, "cut");
    let transactions = Writer::transactional(&cluster, "cut-txn");
    writer.wait_acked(2000);

    // Partition 0's leader loses the other brokers (and the controller quorum's majority) but
    // not its clients: it can no longer replicate, so it acknowledges nothing with acks=all and
    // cannot shrink its ISR; the others fence it and elect a new leader, and writes go on there.
    let mut faults = Unavailability::default();
    let leader = placement(&md)[0].0 as usize;
    let other = if leader == 1 { 2 } else { 1 };
    let from = now_s();
    network.isolate(leader);
    let moved = cluster
        .metadata_until(other, "cut", |m| placement(m).first().is_some_and(|(l, _)| *l > 0 && *l as usize != leader));
    eprintln!("broker {leader} cut off:\n{moved}");
    writer.wait_acked(2000);
    faults.note("a leader cut off from the other brokers", from);
    // Healed: it learns it leads no more, cuts its log back to where the new leader's agrees
    // (records it took but never replicated were never acknowledged), catches up and rejoins.
    let from = now_s();
    network.heal(leader);
    cluster.metadata_until(other, "cut", all_in_sync);
    writer.wait_acked(1000);
    faults.note("the cut-off broker back in sync", from);

    let acks = writer.acks();
    let _dir = writer.finish();
    faults.report(&acks);
    python_clients("replication.py", &["check", &bootstrap, "cut", &acks]);
    check_with_java_client(&bootstrap, "cut", &acks);
    transactions.check_transactions(&bootstrap, "cut-txn");
    cluster.stop();
}

/// The fault library (tests/faults/failsync.c) built into `dir`: preloaded, it fails a process's
/// fsyncs once told to.
fn failsync_library(dir: &std::path::Path) -> std::path::PathBuf {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/failsync.c");
    let library = dir.join("failsync.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .output()
        .expect("a C compiler (cc) is installed: the build of RocksDB needs one too");
    assert!(out.status.success(), "building {}: {}", source.display(), String::from_utf8_lossy(&out.stderr));
    library
}

#[test]
fn a_broker_whose_disk_fails_fsync_stops_and_the_others_take_over() {
    let faults = tempfile::tempdir().unwrap();
    let library = failsync_library(faults.path());
    let when = faults.path().join("failing");
    let env = vec![
        ("LD_PRELOAD".to_owned(), library.to_str().unwrap().to_owned()),
        ("FRESHET_FAILSYNC_WHEN".to_owned(), when.to_str().unwrap().to_owned()),
    ];
    let extra = "default.replication.factor=3\nmin.insync.replicas=2\nreplica.lag.time.max.ms=3000\n";
    let mut cluster = FreshetCluster::start_with_env(3, extra, env);
    python_clients("replication.py", &["create", &cluster.addr(1), "disk", "3", "3"]);
    let md = cluster.metadata_until(1, "disk", all_in_sync);
    let bootstrap = cluster.bootstrap();
    let writer = Writer::start(&bootstrap, "disk");
    writer.wait_acked(2000);

    // Partition 0's leader's disk starts failing its fsyncs (every broker syncs each append
    // before acknowledging it, the default): the broker stops rather than serve on.
    let leader = placement(&md)[0].0 as usize;
    let process = cluster.nodes[leader - 1].take().expect("the leader runs");
    std::fs::write(format!("{}.{}", when.display(), process.pid()), "").unwrap();
    let (failed_at, from) = (Instant::now(), now_s());
    let mut faults = Unavailability::default();
    let (status, log) = process.wait_exit(Duration::from_secs(30));
    let stopped = failed_at.elapsed();
    assert!(!status.success(), "the broker stopped with an error: {status}");
    assert!(log.contains("the log directory failed"), "its log says why:\n{log}");
    let other = if leader == 1 { 2 } else { 1 };
    cluster
        .metadata_until(other, "disk", |m| placement(m).first().is_some_and(|(l, _)| *l > 0 && *l as usize != leader));
    writer.wait_acked(2000);
    faults.note("a leader's disk failing its fsyncs", from);
    eprintln!("broker {leader} stopped {stopped:?} after its disk failed; writes went on");
    // Back with a disk that works: it recovers its log (what the failed fsync covered may or
    // may not be there; the leaders' epochs say what to keep), catches up and rejoins.
    cluster.nodes[leader - 1] = Some(cluster.start_node(leader));
    cluster.metadata_until(other, "disk", all_in_sync);
    writer.wait_acked(1000);

    let acks = writer.acks();
    let _dir = writer.finish();
    faults.report(&acks);
    python_clients("replication.py", &["check", &bootstrap, "disk", &acks]);
    cluster.stop();
}

#[test]
fn coordinators_move_with_their_partitions_when_their_broker_dies() {
    let extra = "default.replication.factor=3\nmin.insync.replicas=2\noffsets.topic.replication.factor=3\n\
                 transaction.state.log.replication.factor=3\nreplica.lag.time.max.ms=3000\n";
    let mut cluster = FreshetCluster::start_with(3, extra);
    let bootstrap = cluster.bootstrap();
    python_clients("replication.py", &["create", &bootstrap, "orders", "3", "3"]);
    python_clients("replication.py", &["create", &bootstrap, "txn-out", "3", "3"]);
    crate::broker::kcat(
        &["-b", &cluster.addr(1), "-P", "-t", "orders"],
        &(0..300).map(|i| format!("order-{i}\n")).collect::<String>(),
    );
    let dir = tempfile::tempdir().unwrap();

    // A group commits through its coordinator; the coordinator's broker dies; the group's
    // offsets are on the broker elected in its place.
    let coordinator_file = dir.path().join("coordinator");
    python_clients(
        "replication.py",
        &["group-commit", &bootstrap, "orders", "billing", "120", coordinator_file.to_str().unwrap()],
    );
    let coordinator: usize = std::fs::read_to_string(&coordinator_file).unwrap().trim().parse().unwrap();
    cluster.kill(coordinator);
    let others: Vec<String> = (1..=3).filter(|n| *n != coordinator).map(|n| cluster.addr(n)).collect();
    python_clients("replication.py", &["group-resume", &others.join(","), "orders", "billing", "120"]);
    cluster.nodes[coordinator - 1] = Some(cluster.start_node(coordinator));
    let alive = if coordinator == 1 { 2 } else { 1 };
    cluster.metadata_until(alive, "orders", |m| placement(m).iter().all(|(l, isr)| *l > 0 && isr.len() == 3));

    // A member that stays while its coordinator's broker dies goes on as the same member of the
    // same generation, with no rebalance: the next coordinator loaded the group's membership
    // from its copy of __consumer_offsets, as Kafka's does.
    let (python, script) = python_script("replication.py");
    let stay = dir.path().join("stay");
    std::fs::create_dir(&stay).unwrap();
    let member = Command::new(&python)
        .arg(&script)
        .args(["group-stay", &bootstrap, "orders", "steady", stay.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !stay.join("ready").exists() {
        assert!(Instant::now() < deadline, "the member never read and committed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let coordinator: usize = std::fs::read_to_string(stay.join("coordinator")).unwrap().trim().parse().unwrap();
    cluster.kill(coordinator);
    std::fs::write(stay.join("killed"), "").unwrap();
    let out = member.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    eprintln!("member: {said}");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok", "{said}");
    cluster.nodes[coordinator - 1] = Some(cluster.start_node(coordinator));
    let alive = if coordinator == 1 { 2 } else { 1 };
    cluster.metadata_until(alive, "orders", |m| placement(m).iter().all(|(l, isr)| *l > 0 && isr.len() == 3));

    // A transaction whose coordinator dies between its writes and its commit is committed by
    // the next one, which loaded it from its copy of __transaction_state.
    let txn = Command::new(&python)
        .arg(&script)
        .args(["txn-failover", &bootstrap, "txn-out", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !dir.path().join("ready").exists() {
        assert!(Instant::now() < deadline, "the transaction never got its records written");
        std::thread::sleep(Duration::from_millis(100));
    }
    let state =
        cluster.metadata_until(alive, "__transaction_state", |m| placement(m).first().is_some_and(|(l, _)| *l > 0));
    let txn_coordinator = placement(&state)[0].0 as usize;
    cluster.kill(txn_coordinator);
    std::fs::write(dir.path().join("killed"), "").unwrap();
    let out = txn.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok", "{said}");
    cluster.nodes[txn_coordinator - 1] = Some(cluster.start_node(txn_coordinator));
    cluster.stop();
}

#[test]
fn a_partition_moves_to_another_broker_while_a_producer_writes_to_it() {
    let mut cluster = FreshetCluster::start_with(3, "replica.lag.time.max.ms=3000\n");
    let bootstrap = cluster.bootstrap();
    let tool = |class: &str, args: &[&str]| {
        let mut all = vec!["--bootstrap-server", bootstrap.as_str()];
        all.extend_from_slice(args);
        crate::peer::kafka_tool(class, &all, "")
    };
    let topics = "org.apache.kafka.tools.TopicCommand";
    let out = tool(topics, &["--create", "--topic", "moving", "--replica-assignment", "1"]);
    assert!(out.contains("Created topic moving."), "{out}");
    // Any broker answers for a topic's configs, and changes them, whether it holds a replica or
    // not (Kafka's tools pick any broker: the reassignment tool clears throttles through one).
    let configs = "org.apache.kafka.tools.ConfigCommand";
    let set =
        ["--alter", "--entity-type", "topics", "--entity-name", "moving", "--add-config", "retention.ms=86400000"];
    crate::peer::kafka_tool(configs, &[&["--bootstrap-server", cluster.addr(2).as_str()][..], &set[..]].concat(), "");
    let described = crate::java::describe_configs(&cluster.addr(2), "topics", "moving");
    assert!(described.contains("retention.ms=86400000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG"), "{described}");

    let writer = Writer::start(&bootstrap, "moving");
    writer.wait_acked(3000);

    // Kafka's reassignment tool moves it from broker 1 to broker 3 while the producer writes.
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, r#"{"version":1,"partitions":[{"topic":"moving","partition":0,"replicas":[3]}]}"#).unwrap();
    let reassign = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";
    let out = tool(reassign, &["--execute", "--reassignment-json-file", plan.to_str().unwrap()]);
    assert!(out.contains("Successfully started partition reassignment"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = tool(reassign, &["--verify", "--reassignment-json-file", plan.to_str().unwrap()]);
        if out.contains("Reassignment of partition moving-0 is completed") {
            break;
        }
        assert!(Instant::now() < deadline, "the move never completed:\n{out}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let moved = cluster.metadata_until(2, "moving", |m| placement(m) == [(3, vec![3])]);
    assert!(moved.contains("replicas: 3,"), "{moved}");
    writer.wait_acked(3000);
    let acks = writer.acks();
    let _written = writer.finish();
    // Broker 1 gone, every acknowledged record is read from broker 3, once, where it was
    // acknowledged.
    cluster.kill(1);
    // Until its session expires the metadata still lists it, as Kafka's does, and a client
    // may pick it to ask for metadata (kafka-python then fails the read with the refused
    // connection): the check starts once it is fenced.
    cluster.metadata_until(2, "moving", |m| m.contains("broker 3 at") && !m.contains("broker 1 at"));
    let rest = format!("{},{}", cluster.addr(2), cluster.addr(3));
    python_clients("replication.py", &["check", &rest, "moving", &acks]);
    cluster.nodes[0] = Some(cluster.start_node(1));
    cluster.stop();
}

/// An exactly-once streams application (a plain count per key) over three brokers, the leader of
/// an input partition (and, with it, some of the coordinators and output partitions) killed
/// mid-stream: the committed counts equal an uninterrupted run's, and a read_committed reader
/// never sees a count go back (an aborted update).
#[test]
fn an_exactly_once_application_counts_every_event_once_when_a_leader_dies() -> anyhow::Result<()> {
    use freshet::prelude::*;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let extra = "default.replication.factor=3\nmin.insync.replicas=2\noffsets.topic.replication.factor=3\n\
                 transaction.state.log.replication.factor=3\ntransaction.state.log.min.isr=2\n\
                 replica.lag.time.max.ms=3000\n";
    let mut cluster = FreshetCluster::start_with(3, extra);
    let bootstrap = cluster.bootstrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let remote = Remote::new(&bootstrap)
        .with_property("session.timeout.ms", "6000")
        .with_property("heartbeat.interval.ms", "500");
    let admin = remote.admin()?;
    rt.block_on(admin.create_topic(NewTopic { name: "events".into(), n_partitions: 4, ..Default::default() }))?;
    rt.block_on(admin.create_topic(NewTopic { name: "counts".into(), n_partitions: 4, ..Default::default() }))?;
    let md = cluster.metadata_until(1, "events", |m| {
        let p = placement(m);
        p.len() == 4 && p.iter().all(|(l, isr)| *l > 0 && isr.len() == 3)
    });
    let producer = remote.producer()?;
    let n_events: i64 = 4000;
    let produce = |from: i64, to: i64| {
        let records: Vec<ProducerRecord> = (from..to)
            .map(|i| ProducerRecord::new("events", Some(format!("k{}", i % crate::streams::N_KEYS)), i.to_string()))
            .collect();
        rt.block_on(producer.send(records)).unwrap();
    };

    let state = tempfile::tempdir()?;
    let mut config = StreamsConfig::new("replicated-eos")?;
    config.state_dir = state.path().into();
    config.commit_interval = Duration::from_millis(100);
    config.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
    let mut app = StreamsApp::new(crate::streams::event_counts()?, remote.clone(), config, rt.handle().clone())?;
    app.start()?;
    app.wait_until_running(Duration::from_secs(60))?;
    for from in (0..n_events / 2).step_by(100) {
        produce(from, from + 100);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.metrics().records_in < n_events as u64 / 2 {
        assert!(Instant::now() < deadline, "the application read {} records", app.metrics().records_in);
        std::thread::sleep(Duration::from_millis(50));
    }
    // The leader of events-0 dies while the rest arrive.
    let leader = placement(&md)[0].0 as usize;
    let mut killed = false;
    for from in (n_events / 2..n_events).step_by(100) {
        if !killed && from >= n_events / 2 + 500 {
            cluster.kill(leader);
            killed = true;
        }
        produce(from, from + 100);
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..n_events {
        *expected.entry(format!("k{}", i % crate::streams::N_KEYS)).or_insert(0i64) += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let (updates, finals) = loop {
        let updates = crate::streams::committed_updates(&rt, &remote);
        let finals: std::collections::BTreeMap<String, i64> = updates.iter().cloned().collect();
        if finals == expected || Instant::now() > deadline {
            break (updates, finals);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let read = app.metrics().records_in;
    if finals != expected {
        // A stuck application must not keep the test from failing (and the nodes' logs showing).
        std::mem::forget(app);
        panic!("every event counted once (broker {leader} killed; {read} records read):\n{finals:?}\n{expected:?}");
    }
    let mut seen = std::collections::BTreeMap::new();
    for (key, n) in &updates {
        let before = seen.insert(key.clone(), *n).unwrap_or(0);
        assert!(*n > before, "{key}: count {n} after {before}: an aborted update showed");
    }
    app.close()?;
    cluster.stop();
    Ok(())
}
