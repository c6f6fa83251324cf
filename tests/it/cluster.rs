//! A cluster of three `freshet broker` processes, configured with Kafka's KRaft keys and
//! formatted with one cluster id, driven by real clients (confluent-kafka, kafka-python, kcat)
//! through any broker; brokers and the active controller killed with SIGKILL.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::broker::{kcat, python_clients, BrokerProcess};
use crate::peer::kafka_tool;

struct Cluster {
    _dir: tempfile::TempDir,
    files: Vec<PathBuf>,
    data: Vec<PathBuf>,
    nodes: Vec<Option<BrokerProcess>>,
}

impl Cluster {
    /// Three nodes, each broker and controller, as Kafka's combined-mode sample has them.
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let held: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let ports: Vec<u16> = held.iter().map(|l| l.local_addr().unwrap().port()).collect();
        drop(held);
        let voters: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1)).collect();
        let freshet = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_freshet")).args(args).output().unwrap();
            assert!(out.status.success(), "freshet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let id = freshet(&["storage", "random-uuid"]);
        let (mut files, mut data) = (Vec::new(), Vec::new());
        for (i, port) in ports.iter().enumerate() {
            let node = i + 1;
            let dir = dir.path().join(format!("node-{node}"));
            let file = dir.with_extension("properties");
            std::fs::write(
                &file,
                format!(
                    "process.roles=broker,controller\n\
                     node.id={node}\n\
                     controller.quorum.voters={}\n\
                     listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:{port}\n\
                     controller.listener.names=CONTROLLER\n\
                     listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
                     log.dirs={}\n\
                     num.partitions=1\n\
                     offsets.topic.replication.factor=1\n\
                     broker.session.timeout.ms=3000\n\
                     broker.heartbeat.interval.ms=500\n",
                    voters.join(","),
                    dir.display()
                ),
            )
            .unwrap();
            freshet(&["storage", "format", "-t", &id, "-c", file.to_str().unwrap()]);
            files.push(file);
            data.push(dir);
        }
        let mut cluster = Cluster { _dir: dir, files, data, nodes: Vec::new() };
        for node in 1..=3 {
            let started = cluster.start_node(node);
            cluster.nodes.push(Some(started));
        }
        // Whole once every broker has registered and caught up.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kcat(&["-b", &cluster.addr(1), "-L"], "").contains("3 brokers") {
            assert!(Instant::now() < deadline, "the three brokers never all registered");
            std::thread::sleep(Duration::from_millis(200));
        }
        cluster
    }

    fn start_node(&self, node: usize) -> BrokerProcess {
        BrokerProcess::start_with(&self.data[node - 1], &["--config", self.files[node - 1].to_str().unwrap()])
    }

    fn addr(&self, node: usize) -> String {
        self.nodes[node - 1].as_ref().expect("the node runs").addr.clone()
    }

    fn kill(&mut self, node: usize) {
        let process = self.nodes[node - 1].take().expect("the node runs");
        let status = Command::new("kill").args(["-KILL", &process.pid().to_string()]).status().unwrap();
        assert!(status.success());
        drop(process);
    }

    /// kcat's metadata of `topic` from `node`, once `ready` holds of it (within 30 s).
    fn metadata_until(&self, node: usize, topic: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = kcat(&["-b", &self.addr(node), "-L", "-t", topic], "");
            if ready(&out) {
                return out;
            }
            assert!(Instant::now() < deadline, "the metadata never got there:\n{out}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The node that last logged becoming the active controller.
    fn active_controller(&self) -> usize {
        let mut latest: Option<(String, usize)> = None;
        for (i, data) in self.data.iter().enumerate() {
            let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
            let mut stamps = log.lines().filter(|l| l.contains("is now the active controller"));
            if let Some(stamp) = stamps.next_back().and_then(|l| l.split_whitespace().next()).map(str::to_owned) {
                if latest.as_ref().is_none_or(|(s, _)| stamp > *s) {
                    latest = Some((stamp, i + 1));
                }
            }
        }
        latest.expect("a node logged becoming the active controller").1
    }

    fn stop(mut self) {
        for node in self.nodes.iter_mut() {
            if let Some(process) = node.take() {
                process.stop();
            }
        }
    }
}

/// A failing test shows the end of each node's log.
impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (i, data) in self.data.iter().enumerate() {
                let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
                eprintln!("--- node {} log:\n{}", i + 1, tail.join("\n"));
            }
        }
    }
}

/// The ids of the brokers leading `topic`'s partitions, in partition order, from kcat's listing.
fn leaders(metadata: &str) -> Vec<i32> {
    metadata
        .lines()
        .filter_map(|l| l.trim().strip_prefix("partition "))
        .map(|l| l.split("leader ").nth(1).and_then(|r| r.split(',').next()).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn three_brokers_share_topics_clients_follow_leaders_and_dead_nodes_are_replaced() {
    let mut cluster = Cluster::start();
    // Through broker 2: a topic led by all three, 3,000 records across them, two groups.
    python_clients("cluster.py", &["spread", &cluster.addr(2), "3"]);
    let all = cluster.metadata_until(1, "spread", |m| m.contains("3 brokers"));
    let before = leaders(&all);
    assert_eq!(before.len(), 6, "{all}");

    // Kafka's own tools (the Java client) through broker 3.
    let b3 = cluster.addr(3);
    let tool = |class: &str, args: &[&str], stdin: &str| {
        let mut all = vec!["--bootstrap-server", b3.as_str()];
        all.extend_from_slice(args);
        kafka_tool(class, &all, stdin)
    };
    let topics = "org.apache.kafka.tools.TopicCommand";
    let out = tool(topics, &["--create", "--topic", "java-tools", "--partitions", "3"], "");
    assert!(out.contains("Created topic java-tools."), "{out}");
    let out = tool(topics, &["--describe", "--topic", "java-tools"], "");
    let mut led: Vec<&str> =
        out.lines().filter_map(|l| l.split("Leader: ").nth(1)).filter_map(|l| l.split_whitespace().next()).collect();
    led.sort_unstable();
    assert_eq!(led, ["1", "2", "3"], "each broker leads one partition:\n{out}");
    tool("org.apache.kafka.tools.ConsoleProducer", &["--topic", "java-tools"], "a\nb\nc\nd\ne\nf\n");
    let out = tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &["--topic", "java-tools", "--group", "java-readers", "--from-beginning", "--max-messages", "6"],
        "",
    );
    let mut read: Vec<&str> = out.lines().collect();
    read.sort_unstable();
    assert_eq!(read, ["a", "b", "c", "d", "e", "f"]);

    // Broker 3 killed: once its session expires, its partitions (one copy each) have no leader
    // and say so; the others are still written.
    cluster.kill(3);
    let offline = cluster.metadata_until(1, "spread", |m| m.contains("leader -1") && m.contains("2 brokers"));
    for (p, leader) in leaders(&offline).iter().enumerate() {
        assert_eq!(*leader == -1, before[p] == 3, "partition {p}:\n{offline}");
    }
    assert!(offline.contains("Leader not available"), "{offline}");
    let live = before.iter().position(|l| *l != 3).unwrap().to_string();
    kcat(&["-b", &cluster.addr(1), "-P", "-t", "spread", "-p", &live], "while-3-is-down\n");

    // Back: it leads its partitions again, with their records.
    cluster.nodes[2] = Some(cluster.start_node(3));
    let back = cluster.metadata_until(1, "spread", |m| !m.contains("leader -1") && m.contains("3 brokers"));
    assert_eq!(leaders(&back), before, "{back}");
    python_clients("cluster.py", &["count", &cluster.addr(3), "spread", "3001"]);

    // The active controller killed: the quorum elects another, which serves a new topic.
    let controller = cluster.active_controller();
    cluster.kill(controller);
    let other = if controller == 1 { 2 } else { 1 };
    python_clients("cluster.py", &["create", &cluster.addr(other), "after-failover"]);
    // Once the dead node's session expires, it is no longer listed.
    let gone = format!("broker {controller} at");
    cluster.metadata_until(other, "after-failover", |m| m.contains("3 partitions") && !m.contains(&gone));
    cluster.nodes[controller - 1] = Some(cluster.start_node(controller));
    cluster.metadata_until(controller, "after-failover", |m| m.contains("3 partitions") && m.contains("3 brokers"));
    cluster.stop();
}
