//! Apache Kafka as the peer: a single-node KRaft Kafka broker started from Kafka's jars (no
//! distribution scripts), beside the Freshet broker, so one scenario runs against both; and Java
//! programs of `tests/java` run with Kafka's own client jars.
//!
//! `./dev test` fetches the jars once into a cache outside the clone (`tests/kafka/pom.xml`) and
//! names the directory in `FRESHET_KAFKA_JARS`.

// Brokers on a network of their own (a directory module would not do: the benches include
// this file by path).
#[path = "netns.rs"]
pub(crate) mod netns;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A directory of jars `./dev test` fetched: from `env`, or its default under the cache.
fn jars(env: &str, default: &str, pom: &str) -> PathBuf {
    let dir = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/freshet").join(default)
    });
    assert!(dir.join(".complete").exists(), "no jars in {} (./dev test fetches them with {pom})", dir.display());
    dir
}

/// The classpath of Apache Kafka's jars (broker, clients, Streams, tools).
fn classpath() -> String {
    format!("{}/*", jars("FRESHET_KAFKA_JARS", "kafka-4.4.0/jars", "tests/kafka/pom.xml").display())
}

/// The classpath of Kafka Connect with its FileStream connectors.
pub(crate) fn connect_classpath() -> String {
    let dir = jars("FRESHET_KAFKA_CONNECT_JARS", "kafka-connect-4.3.1/jars", "tests/kafka/connect-pom.xml");
    format!("{}/*", dir.display())
}

/// Kafka Connect's `plugin.path` holding Debezium's PostgreSQL connector.
pub(crate) fn debezium_plugins() -> PathBuf {
    let dir = jars("FRESHET_DEBEZIUM_JARS", "debezium-3.6.1/plugins/debezium-postgres", "tests/kafka/debezium-pom.xml");
    dir.parent().expect("a plugin directory is in plugin.path").to_path_buf()
}

/// The log4j configuration the Java programs of the tests use (warnings and errors, to stderr).
pub(crate) fn log4j_config() -> String {
    format!("-Dlog4j2.configurationFile={}/tests/java/log4j2.properties", env!("CARGO_MANIFEST_DIR"))
}

/// A port free on loopback now (the OS's next ephemeral port; a race with another process taking
/// it is possible but rare).
/// Two distinct ports free on loopback now (both held until both are chosen, so they differ;
/// another process may still take one before Kafka binds it: `KafkaProcess::start` then retries).
fn free_ports() -> (u16, u16) {
    let (a, b) = (TcpListener::bind("127.0.0.1:0").unwrap(), TcpListener::bind("127.0.0.1:0").unwrap());
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// A broker process on a free port.
pub(crate) struct BrokerProcess {
    child: Child,
    pub(crate) addr: String,
    /// Where its log goes.
    log: std::path::PathBuf,
}

impl BrokerProcess {
    pub(crate) fn start(data: &Path) -> Self {
        Self::start_with(data, &[])
    }

    pub(crate) fn start_with(data: &Path, args: &[&str]) -> Self {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::start_exact(data, &all)
    }

    /// With `args` only: where it listens is theirs to say.
    pub(crate) fn start_exact(data: &Path, args: &[&str]) -> Self {
        Self::start_exact_env(data, args, &[])
    }

    /// Like [`BrokerProcess::start_exact`], with `env` added to the process's environment.
    pub(crate) fn start_exact_env(data: &Path, args: &[&str], env: &[(String, String)]) -> Self {
        Self::start_in(data, args, env, None)
    }

    /// Like [`BrokerProcess::start_exact_env`], in the network namespace `netns` if given.
    pub(crate) fn start_in(data: &Path, args: &[&str], env: &[(String, String)], netns: Option<&str>) -> Self {
        // Its log goes next to the data directory, for a failing test to show.
        let log_path = data.with_extension("log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let mut command = match netns {
            // `ip netns exec` runs the program in place of itself: the process is the broker.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_freshet")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_freshet")),
        };
        let mut child = command
            .args(["broker", "--data-dir"])
            .arg(data)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| {
                    "freshet=info,freshet_broker=info,freshet_log=info,freshet_coord=info,freshet_core=info".into()
                }),
            )
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .split_whitespace()
            .find(|w| w.parse::<std::net::SocketAddr>().is_ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        BrokerProcess { child, addr, log: log_path }
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to `timeout`) for the process to end on its own: its exit status and its log.
    pub(crate) fn wait_exit(mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the broker did not stop within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        };
        (status, std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Stops it as an operator would (SIGTERM) and waits.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let status = self.child.wait().unwrap();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        assert!(status.success(), "the broker stops cleanly: {status}; its log ends:\n{}", tail.join("\n"));
    }
}

/// A broker left running by a failed assertion is killed.
impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cluster of `freshet broker` processes on loopback, configured with Kafka's KRaft keys (every
/// node broker and controller, as Kafka's combined-mode sample) and formatted with one cluster id.
pub(crate) struct FreshetCluster {
    _dir: tempfile::TempDir,
    files: Vec<PathBuf>,
    data: Vec<PathBuf>,
    /// Added to every node's environment.
    env: Vec<(String, String)>,
    /// The network namespace of each node, when the nodes have their own.
    netns: Vec<String>,
    /// Where each node serves its metrics (`metrics.listen`).
    metrics: Vec<String>,
    pub(crate) nodes: Vec<Option<BrokerProcess>>,
}

impl FreshetCluster {
    /// `n` nodes, returned once every broker has registered and caught up.
    pub(crate) fn start(n: usize) -> Self {
        Self::start_with(n, "")
    }

    /// Like [`FreshetCluster::start`], with `extra` (lines of Kafka's keys) in every node's
    /// config file.
    pub(crate) fn start_with(n: usize, extra: &str) -> Self {
        Self::start_with_env(n, extra, Vec::new())
    }

    /// Like [`FreshetCluster::start_with`], with `env` in every node's environment.
    pub(crate) fn start_with_env(n: usize, extra: &str, env: Vec<(String, String)>) -> Self {
        Self::start_on(n, extra, env, None)
    }

    /// Like [`FreshetCluster::start_with`], each node in its own namespace of `network`.
    pub(crate) fn start_in_network(n: usize, extra: &str, network: &netns::Network) -> Self {
        Self::start_on(n, extra, Vec::new(), Some(network))
    }

    fn start_on(n: usize, extra: &str, env: Vec<(String, String)>, network: Option<&netns::Network>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        type Ports = (Vec<String>, Vec<u16>, Vec<u16>, Vec<u16>);
        let (hosts, ports, client_ports, metrics_ports): Ports = match network {
            // Each node has an address (and ports) of its own.
            Some(net) => ((1..=n).map(|i| net.ip(i)).collect(), vec![9093; n], vec![9092; n], vec![9094; n]),
            None => {
                // Every listener's port chosen at once (all held until all are chosen): a node
                // binding port 0 could otherwise take a controller port another node is about
                // to bind.
                let held: Vec<TcpListener> = (0..3 * n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
                let all: Vec<u16> = held.iter().map(|l| l.local_addr().unwrap().port()).collect();
                drop(held);
                let (controllers, rest) = all.split_at(n);
                let (clients, metrics) = rest.split_at(n);
                (vec!["127.0.0.1".to_owned(); n], controllers.to_vec(), clients.to_vec(), metrics.to_vec())
            }
        };
        let metrics: Vec<String> = hosts.iter().zip(&metrics_ports).map(|(h, p)| format!("{h}:{p}")).collect();
        let netns = network.map(|net| (1..=n).map(|i| net.namespace(i)).collect()).unwrap_or_default();
        let voters: Vec<String> =
            ports.iter().enumerate().map(|(i, p)| format!("{}@{}:{p}", i + 1, hosts[i])).collect();
        let freshet = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_freshet")).args(args).output().unwrap();
            assert!(out.status.success(), "freshet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let id = freshet(&["storage", "random-uuid"]);
        let (mut files, mut data) = (Vec::new(), Vec::new());
        for (i, port) in ports.iter().enumerate() {
            let (node, host) = (i + 1, &hosts[i]);
            let dir = dir.path().join(format!("node-{node}"));
            let file = dir.with_extension("properties");
            std::fs::write(
                &file,
                format!(
                    "process.roles=broker,controller\n\
                     node.id={node}\n\
                     controller.quorum.voters={}\n\
                     listeners=PLAINTEXT://{host}:{},CONTROLLER://{host}:{port}\n\
                     controller.listener.names=CONTROLLER\n\
                     listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
                     log.dirs={}\n\
                     num.partitions=1\n\
                     offsets.topic.replication.factor=1\n\
                     broker.session.timeout.ms=6000\n\
                     broker.heartbeat.interval.ms=500\n\
                     metrics.listen={}\n\
                     {extra}",
                    voters.join(","),
                    client_ports[i],
                    dir.display(),
                    metrics[i]
                ),
            )
            .unwrap();
            freshet(&["storage", "format", "-t", &id, "-c", file.to_str().unwrap()]);
            files.push(file);
            data.push(dir);
        }
        let mut cluster = FreshetCluster { _dir: dir, files, data, env, netns, metrics, nodes: Vec::new() };
        for node in 1..=n {
            let started = cluster.start_node(node);
            cluster.nodes.push(Some(started));
        }
        // Whole once every broker has registered and caught up.
        let deadline = Instant::now() + Duration::from_secs(30);
        let whole = format!("{n} brokers");
        loop {
            let out = Command::new("kcat").args(["-b", &cluster.addr(1), "-L"]).output().expect("kcat is installed");
            if String::from_utf8_lossy(&out.stdout).contains(&whole) {
                break;
            }
            assert!(Instant::now() < deadline, "the {n} brokers never all registered");
            std::thread::sleep(Duration::from_millis(200));
        }
        cluster
    }

    pub(crate) fn start_node(&self, node: usize) -> BrokerProcess {
        let config = ["--config", self.files[node - 1].to_str().unwrap()];
        BrokerProcess::start_in(&self.data[node - 1], &config, &self.env, self.netns.get(node - 1).map(String::as_str))
    }

    pub(crate) fn addr(&self, node: usize) -> String {
        self.nodes[node - 1].as_ref().expect("the node runs").addr.clone()
    }

    /// What `node`'s metrics endpoint (`freshet broker --metrics-listen`) serves.
    pub(crate) fn metrics(&self, node: usize) -> String {
        let url = format!("http://{}/metrics", self.metrics[node - 1]);
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into();
        agent.get(&url).call().and_then(|mut r| r.body_mut().read_to_string()).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    /// A metric of `node`: the value of the line `name` (with its labels, if any) in what its
    /// metrics endpoint serves; 0 when absent.
    pub(crate) fn metric(&self, node: usize, name: &str) -> f64 {
        let text = self.metrics(node);
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().unwrap_or_else(|e| panic!("node {node}: {name} {v}: {e}")))
    }

    pub(crate) fn kill(&mut self, node: usize) {
        let process = self.nodes[node - 1].take().expect("the node runs");
        let status = Command::new("kill").args(["-KILL", &process.pid().to_string()]).status().unwrap();
        assert!(status.success());
        drop(process);
    }

    /// kcat's metadata of `topic` from `node`, once `ready` holds of it (within 30 s).
    pub(crate) fn metadata_until(&self, node: usize, topic: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new("kcat").args(["-b", &self.addr(node), "-L", "-t", topic]).output().expect("kcat");
            let out = String::from_utf8_lossy(&out.stdout).into_owned();
            if ready(&out) {
                return out;
            }
            assert!(Instant::now() < deadline, "the metadata never got there:\n{out}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Every running node's client address, as a `bootstrap.servers` list.
    pub(crate) fn bootstrap(&self) -> String {
        self.nodes.iter().flatten().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",")
    }

    /// The node that last logged becoming the active controller.
    pub(crate) fn active_controller(&self) -> usize {
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

    pub(crate) fn stop(mut self) {
        for node in self.nodes.iter_mut() {
            if let Some(process) = node.take() {
                process.stop();
            }
        }
    }
}

/// A failing test shows the end of each node's log, and with `FRESHET_TEST_LOGS=<dir>` keeps the
/// whole logs there.
impl Drop for FreshetCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let keep = std::env::var_os("FRESHET_TEST_LOGS").map(std::path::PathBuf::from);
            for (i, data) in self.data.iter().enumerate() {
                let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
                if let Some(dir) = &keep {
                    let name = format!("{}-node-{}.log", std::process::id(), i + 1);
                    let kept = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(dir.join(&name), &log));
                    eprintln!("--- node {} log kept as {}: {kept:?}", i + 1, dir.join(&name).display());
                }
                let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
                eprintln!("--- node {} log:\n{}", i + 1, tail.join("\n"));
            }
        }
    }
}

/// A single-node KRaft Kafka broker (broker and controller in one process) on loopback ports.
pub(crate) struct KafkaProcess {
    child: Child,
    pub(crate) addr: String,
    log: PathBuf,
}

impl KafkaProcess {
    /// Formats a storage directory under `dir`, starts the broker and waits until it answers.
    pub(crate) fn start(dir: &Path) -> Self {
        Self::start_with(dir, "")
    }

    /// As `start`, with more broker properties (`key=value` lines, which override the defaults).
    /// A start that loses its ports to another process is tried again on others.
    pub(crate) fn start_with(dir: &Path, properties_extra: &str) -> Self {
        for attempt in 1.. {
            match Self::try_start(dir, properties_extra) {
                Ok(kafka) => return kafka,
                Err(log) if attempt < 3 && log.contains("Address already in use") => continue,
                Err(log) => panic!("Kafka exited while starting:\n{log}"),
            }
        }
        unreachable!()
    }

    fn try_start(dir: &Path, properties_extra: &str) -> Result<Self, String> {
        let (port, controller) = free_ports();
        let voters = format!("1@127.0.0.1:{controller}");
        let mut kafka = Self::spawn(dir, 1, &voters, (port, controller), 1, properties_extra);
        kafka.wait_until_serving(1)?;
        Ok(kafka)
    }

    /// Formats node `node`'s storage under `dir` and starts it (broker and controller) on
    /// `ports` (client, controller), one of the quorum `voters`; internal topics get
    /// `replicas` replicas.
    fn spawn(dir: &Path, node: usize, voters: &str, ports: (u16, u16), replicas: usize, extra: &str) -> Self {
        let (port, controller) = ports;
        std::fs::create_dir_all(dir).unwrap();
        let data = dir.join("kafka-data");
        let _ = std::fs::remove_dir_all(&data);
        let properties = dir.join("server.properties");
        std::fs::write(
            &properties,
            format!(
                "process.roles=broker,controller\n\
                 node.id={node}\n\
                 controller.quorum.voters={voters}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
                 controller.listener.names=CONTROLLER\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                 inter.broker.listener.name=PLAINTEXT\n\
                 log.dirs={}\n\
                 num.partitions=1\n\
                 offsets.topic.replication.factor={replicas}\n\
                 offsets.topic.num.partitions=4\n\
                 transaction.state.log.replication.factor={replicas}\n\
                 transaction.state.log.min.isr={}\n\
                 transaction.state.log.num.partitions=4\n\
                 group.initial.rebalance.delay.ms=0\n\
                 share.coordinator.state.topic.replication.factor={replicas}\n\
                 {extra}",
                data.display(),
                replicas.min(2),
            ),
        )
        .unwrap();
        let log4j = dir.join("log4j2.properties");
        std::fs::write(
            &log4j,
            "rootLogger.level = WARN\n\
             rootLogger.appenderRef.out.ref = OUT\n\
             appender.out.type = Console\n\
             appender.out.name = OUT\n\
             appender.out.layout.type = PatternLayout\n\
             appender.out.layout.pattern = [%d] %p %m (%c)%n\n",
        )
        .unwrap();
        let java = |class: &str| {
            let mut c = Command::new("java");
            c.arg("-Xmx1g").arg(format!("-Dlog4j2.configurationFile={}", log4j.display())).args([
                "-cp",
                &classpath(),
                class,
            ]);
            c
        };
        let format = java("kafka.tools.StorageTool")
            .args(["format", "--cluster-id", "fReShEtPeErClUsTeR0001", "--config"])
            .arg(&properties)
            .output()
            .expect("java is installed (./dev test checks)");
        assert!(format.status.success(), "formatting Kafka's storage: {}", String::from_utf8_lossy(&format.stderr));
        let log_path = dir.join("kafka.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = java("kafka.Kafka").arg(&properties).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
        KafkaProcess { child, addr: format!("127.0.0.1:{port}"), log: log_path }
    }

    /// Waits until the broker has a controller and answers Metadata listing `brokers` brokers;
    /// its log if it exits first.
    fn wait_until_serving(&mut self, brokers: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("({status})\n{}", self.log_tail()));
            }
            if TcpStream::connect(&self.addr).is_ok() {
                let out = Command::new("kcat").args(["-b", &self.addr, "-L", "-m", "2"]).output().unwrap();
                if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&format!("{brokers} brokers"))
                {
                    return Ok(());
                }
            }
            assert!(Instant::now() < deadline, "Kafka did not answer within 60 s:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        tail.join("\n")
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it as an operator would (SIGTERM) and waits for its controlled shutdown.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let status = self.child.wait().unwrap();
        // The JVM exits 143 on SIGTERM after its shutdown hooks have run.
        assert!(status.success() || status.code() == Some(143), "Kafka stops cleanly: {status}\n{}", self.log_tail());
    }
}

/// A cluster of Kafka brokers on loopback, each broker and controller (Kafka's combined-mode
/// sample), with internal topics replicated on every one: the peer of a Freshet cluster.
pub(crate) struct KafkaCluster {
    pub(crate) nodes: Vec<KafkaProcess>,
}

impl KafkaCluster {
    /// `n` nodes under `dir`, returned once every one answers Metadata listing all `n`.
    pub(crate) fn start(dir: &Path, n: usize, properties_extra: &str) -> Self {
        let ports: Vec<(u16, u16)> = {
            let held: Vec<TcpListener> = (0..2 * n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
            let all: Vec<u16> = held.iter().map(|l| l.local_addr().unwrap().port()).collect();
            (0..n).map(|i| (all[2 * i], all[2 * i + 1])).collect()
        };
        let voters: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, c))| format!("{}@127.0.0.1:{c}", i + 1)).collect();
        let voters = voters.join(",");
        let mut nodes: Vec<KafkaProcess> = (0..n)
            .map(|i| {
                KafkaProcess::spawn(
                    &dir.join(format!("kafka-{}", i + 1)),
                    i + 1,
                    &voters,
                    ports[i],
                    n,
                    properties_extra,
                )
            })
            .collect();
        for node in &mut nodes {
            if let Err(log) = node.wait_until_serving(n) {
                panic!("a Kafka node exited while starting:\n{log}");
            }
        }
        KafkaCluster { nodes }
    }

    /// Every node's client address, comma-separated.
    pub(crate) fn bootstrap(&self) -> String {
        self.nodes.iter().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",")
    }

    /// The nodes' process ids.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(KafkaProcess::pid).collect()
    }

    /// Stops every node at once (one by one, the last would wait for a quorum that is gone).
    pub(crate) fn stop(mut self) {
        for node in &self.nodes {
            let _ = Command::new("kill").arg(node.child.id().to_string()).status();
        }
        for node in &mut self.nodes {
            let status = node.child.wait().unwrap();
            assert!(
                status.success() || status.code() == Some(143),
                "Kafka stops cleanly: {status}\n{}",
                node.log_tail()
            );
        }
    }
}

impl Drop for KafkaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which broker a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Freshet,
    Kafka,
}

/// A running broker of either kind.
pub(crate) enum Peer {
    Freshet(BrokerProcess),
    Kafka(KafkaProcess),
}

/// How a broker is set up, in the same terms for both kinds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup {
    /// An append is acknowledged once on disk (Freshet's fsync group commit; Kafka flushing
    /// every message), else once in the page cache (Kafka's default; Freshet's `none`).
    pub(crate) fsync: bool,
    /// Partitions of automatically created topics.
    pub(crate) partitions: u32,
}

impl Peer {
    /// Starts a broker of `kind` with its files under `dir`, each kind with its defaults.
    pub(crate) fn start(kind: Kind, dir: &Path) -> Self {
        match kind {
            Kind::Freshet => Peer::Freshet(BrokerProcess::start(&dir.join("freshet-data"))),
            Kind::Kafka => Peer::Kafka(KafkaProcess::start(dir)),
        }
    }

    /// Starts a broker of `kind` set up as `setup` says.
    pub(crate) fn start_with(kind: Kind, dir: &Path, setup: Setup) -> Self {
        match kind {
            Kind::Freshet => {
                let partitions = setup.partitions.to_string();
                let durability = if setup.fsync { "fsync" } else { "none" };
                let args = ["--num-partitions", &partitions, "--durability", durability];
                Peer::Freshet(BrokerProcess::start_with(&dir.join("freshet-data"), &args))
            }
            Kind::Kafka => {
                let mut extra = format!("num.partitions={}\n", setup.partitions);
                if setup.fsync {
                    extra.push_str("log.flush.interval.messages=1\n");
                }
                Peer::Kafka(KafkaProcess::start_with(dir, &extra))
            }
        }
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        match self {
            Peer::Freshet(b) => b.pid(),
            Peer::Kafka(k) => k.pid(),
        }
    }

    /// Its bootstrap address.
    pub(crate) fn addr(&self) -> &str {
        match self {
            Peer::Freshet(b) => &b.addr,
            Peer::Kafka(k) => &k.addr,
        }
    }

    pub(crate) fn stop(self) {
        match self {
            Peer::Freshet(b) => b.stop(),
            Peer::Kafka(k) => k.stop(),
        }
    }
}

/// Runs the Java program `tests/java/{program}.java` (a single-file source) with Kafka's jars on
/// its classpath; it prints "ok" when all held. Gives its standard output.
pub(crate) fn java(program: &str, args: &[&str]) -> String {
    let source = format!("{}/tests/java/{program}.java", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("java")
        .arg(log4j_config())
        .args(["-cp", &classpath(), &source])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("java is installed (./dev test checks)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().last() == Some("ok"),
        "{program} {args:?} ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

/// Runs a main class of Kafka's jars (a command-line tool) and gives its standard output.
pub(crate) fn kafka_tool(class: &str, args: &[&str], stdin: &str) -> String {
    let output = kafka_tool_output(class, args, stdin);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{class} {args:?} ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Stops a peer's process as an operator would (SIGTERM), killing it (SIGKILL) if it has not
/// gone within `grace`: a JVM whose shutdown hangs (Kafka Connect stopping Debezium's connector
/// now and then) must not hang the test that only compares what it wrote.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> std::process::ExitStatus {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("process {} did not stop within {grace:?} of SIGTERM: killed", child.id());
    let _ = child.kill();
    child.wait().unwrap()
}

/// Runs a main class of Kafka's jars; its output, whether it succeeded or not.
pub(crate) fn kafka_tool_output(class: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut java = Command::new("java");
    java.arg(log4j_config()).args(["-cp", &classpath(), class]).args(args);
    run_with_stdin(&mut java, stdin, "java is installed (./dev test checks)")
}

/// Runs `command` with `stdin` written to it; its output. `missing` says why it should exist.
pub(crate) fn run_with_stdin(command: &mut Command, stdin: &str, missing: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}: {missing}"));
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// `freshet connect standalone` with `files` (the worker's properties, then connectors'), its
/// log (at `RUST_LOG=info`) to `log`.
pub(crate) fn connect_standalone(files: &[PathBuf], log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["connect", "standalone"])
        .args(files)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Produces `input` (kcat's `-P` lines) with kcat and `args`, acknowledged.
pub(crate) fn kcat_produce(args: &[&str], input: &str) {
    let out =
        run_with_stdin(Command::new("kcat").arg("-P").args(args), input, "kcat is installed (./dev test installs it)");
    assert!(out.status.success(), "kcat {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
