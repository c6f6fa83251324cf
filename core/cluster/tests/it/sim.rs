//! Deterministic simulation of the metadata quorum and the active controller.
//!
//! Three controllers run openraft on simulated disks ([`MemDisk`]) over a simulated network, on
//! one thread under tokio's paused clock: time moves only when every task waits, and every
//! random choice (faults, delays, drops, election timeouts, topic ids) comes from the seed, so a
//! seed replays the same run. Each step injects a fault (a controller crashed or restarted, one
//! cut off from the others, messages dropped or delayed, a broker silent), drives the controller
//! (brokers registering and heartbeating, topics created, deleted, grown, leaders elected,
//! markers committed), lets simulated time pass and checks:
//! - nodes at the same log offset applied the same history (their images' digests agree);
//! - every partition epoch has one leader, across all nodes and all time;
//! - leader epochs never go backwards along the committed log;
//! - a leader is an unfenced member of its ISR, or there is none;
//! - every acknowledged marker is in every image past its offset: committed metadata is never
//!   lost, across crashes and restarts.
//!
//! At the end the faults heal and every controller must converge on one image holding every
//! acknowledged marker. `FRESHET_SIM_SEED=<n>` replays one seed; `FRESHET_SIM_SEEDS=<n>` runs
//! more seeds than CI's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use freshet_cluster::controller::{NewTopic, Registration, TopicDefaults};
use freshet_cluster::raft::{self, MemDisk, NodeId, QuorumConfig, QuorumNode, RaftRequest, RaftResponse, Transport};
use freshet_cluster::records::{ConfigResource, Endpoint, MetadataRecord, NO_LEADER};
use freshet_cluster::{Controller, ControllerConfig, Heartbeat, MetadataBatch, MetadataImage, Quorum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const NODES: u64 = 3;
const BROKERS: i32 = 4;
const SESSION: Duration = Duration::from_secs(3);

#[derive(Default)]
struct NetState {
    nodes: BTreeMap<NodeId, Arc<QuorumNode>>,
    /// Nodes cut off from every other.
    isolated: BTreeSet<NodeId>,
    drop_per_mille: u32,
    max_delay_ms: u64,
}

struct SimNet {
    state: Mutex<NetState>,
    rng: Mutex<StdRng>,
}

impl SimNet {
    fn passes(&self, from: NodeId, to: NodeId) -> bool {
        let s = self.state.lock().unwrap();
        let drop = self.rng.lock().unwrap().gen_range(0..1000) < s.drop_per_mille;
        !drop && !s.isolated.contains(&from) && !s.isolated.contains(&to)
    }

    fn delay(&self) -> Duration {
        let max = self.state.lock().unwrap().max_delay_ms;
        Duration::from_millis(self.rng.lock().unwrap().gen_range(0..=max))
    }
}

#[async_trait]
impl Transport for SimNet {
    async fn send(&self, from: NodeId, to: NodeId, request: RaftRequest) -> Result<RaftResponse, String> {
        tokio::time::sleep(self.delay()).await;
        if !self.passes(from, to) {
            return Err(format!("{from} -> {to} lost"));
        }
        let Some(target) = self.state.lock().unwrap().nodes.get(&to).cloned() else {
            return Err(format!("controller {to} is down"));
        };
        let response = target.handle(request).await;
        tokio::time::sleep(self.delay()).await;
        if !self.passes(to, from) {
            return Err(format!("{to} -> {from} answer lost"));
        }
        Ok(response)
    }
}

struct Broker {
    id: i32,
    incarnation: u128,
    epoch: Option<i64>,
    alive: bool,
}

/// The controllers' invariants, checked on every image a node holds (the replication
/// simulation checks them too).
#[derive(Default)]
pub(crate) struct Checker {
    digests: BTreeMap<u64, u64>,
    /// (topic id, partition, leader epoch) -> leader.
    leaders: BTreeMap<(u128, i32, i32), i32>,
    /// (topic id, partition) -> offset -> leader epoch.
    epochs: BTreeMap<(u128, i32), BTreeMap<u64, i32>>,
    /// Acknowledged markers: log index -> marker.
    markers: BTreeMap<u64, u64>,
}

impl Checker {
    pub(crate) fn observe(&mut self, seed: u64, node: NodeId, image: &MetadataImage, trace: &[String]) {
        let fail = |what: String| {
            let recent = trace[trace.len().saturating_sub(40)..].join("\n  ");
            panic!(
                "seed {seed}: controller {node} at offset {}: {what}\nthe run's last steps:\n  {recent}",
                image.offset
            )
        };
        if image.offset > 0 {
            if let Some(d) = self.digests.insert(image.offset, image.digest).filter(|d| *d != image.digest) {
                fail(format!("applied a different history (digest {:x}, another node had {d:x})", image.digest));
            }
        }
        for (topic, partition, p) in image.partitions() {
            let key = (topic.id, partition, p.leader_epoch);
            if let Some(other) = self.leaders.insert(key, p.leader).filter(|l| *l != p.leader) {
                fail(format!(
                    "{}-{partition} epoch {} has leaders {} and {other}",
                    topic.name, p.leader_epoch, p.leader
                ));
            }
            let history = self.epochs.entry((topic.id, partition)).or_default();
            history.insert(image.offset, p.leader_epoch);
            let before = history.range(..image.offset).next_back().map(|(_, e)| *e);
            let after = history.range(image.offset + 1..).next().map(|(_, e)| *e);
            if before.is_some_and(|e| e > p.leader_epoch) || after.is_some_and(|e| e < p.leader_epoch) {
                fail(format!(
                    "{}-{partition}'s leader epoch went backwards ({before:?} / {} / {after:?})",
                    topic.name, p.leader_epoch
                ));
            }
            if p.leader != NO_LEADER && (!p.isr.contains(&p.leader) || !image.is_live(p.leader)) {
                fail(format!(
                    "{}-{partition} is led by {}, not a live member of ISR {:?}",
                    topic.name, p.leader, p.isr
                ));
            }
            if p.isr.is_empty() || p.isr.iter().any(|b| !p.replicas.contains(b)) {
                fail(format!("{}-{partition} has ISR {:?} outside replicas {:?}", topic.name, p.isr, p.replicas));
            }
        }
        let configs = image.broker_configs.get("");
        for (index, marker) in self.markers.range(..=image.offset) {
            if configs.and_then(|c| c.get(&format!("marker-{marker}"))).is_none() {
                fail(format!("lost marker {marker}, acknowledged at offset {index}"));
            }
        }
    }
}

type Running = (Arc<QuorumNode>, Arc<Controller>, tokio::task::JoinHandle<()>);

struct Sim {
    seed: u64,
    rng: StdRng,
    net: Arc<SimNet>,
    voters: BTreeMap<NodeId, String>,
    disks: BTreeMap<NodeId, MemDisk>,
    /// Running controllers: the quorum node, its controller and its session task.
    live: BTreeMap<NodeId, Running>,
    brokers: Vec<Broker>,
    checker: Checker,
    trace: Vec<String>,
    next_marker: u64,
    next_topic: u64,
}

/// The quorum's timings in the simulations.
pub(crate) fn quorum_config() -> QuorumConfig {
    QuorumConfig {
        election_timeout: Duration::from_millis(300),
        heartbeat_interval: Duration::from_millis(60),
        snapshot_every: 40,
    }
}

impl Sim {
    fn new(seed: u64) -> Self {
        raft::seed_thread_rng(seed);
        let voters = (1..=NODES).map(|n| (n, format!("controller-{n}"))).collect();
        Self {
            seed,
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            net: Arc::new(SimNet { state: Mutex::default(), rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x4e7)) }),
            voters,
            disks: (1..=NODES).map(|n| (n, MemDisk::new())).collect(),
            live: BTreeMap::new(),
            brokers: (1..=BROKERS).map(|id| Broker { id, incarnation: id as u128, epoch: None, alive: true }).collect(),
            checker: Checker::default(),
            trace: Vec::new(),
            next_marker: 0,
            next_topic: 0,
        }
    }

    async fn start(&mut self, id: NodeId) {
        let disk = Arc::new(self.disks[&id].clone());
        let node = QuorumNode::start(id, &self.voters, disk, self.net.clone(), &quorum_config()).await.expect("start");
        let node = Arc::new(node);
        let config = ControllerConfig {
            cluster_id: "sim".into(),
            session_timeout: SESSION,
            defaults: TopicDefaults { num_partitions: 2, replication_factor: 2 },
            producer_id_block: 1000,
            leader_rebalance: None,
            elections: Default::default(),
        };
        let controller = Controller::new(node.clone(), config);
        let sessions = tokio::spawn(controller.clone().run_sessions());
        self.net.state.lock().unwrap().nodes.insert(id, node.clone());
        self.live.insert(id, (node, controller, sessions));
    }

    async fn crash(&mut self, id: NodeId) {
        if let Some((node, _, sessions)) = self.live.remove(&id) {
            sessions.abort();
            self.net.state.lock().unwrap().nodes.remove(&id);
            node.shutdown().await;
        }
    }

    fn leader(&self) -> Option<(NodeId, Arc<Controller>)> {
        self.live.iter().find(|(id, (node, _, _))| node.leader() == Some(**id)).map(|(id, (_, c, _))| (*id, c.clone()))
    }

    fn log(&mut self, line: String) {
        self.trace.push(line);
    }

    async fn fault(&mut self) {
        let roll = self.rng.gen_range(0..100);
        let pick = self.rng.gen_range(1..=NODES);
        match roll {
            0..=9 if self.live.contains_key(&pick) => {
                self.crash(pick).await;
                self.log(format!("crash {pick}"));
            }
            10..=24 if !self.live.contains_key(&pick) => {
                self.start(pick).await;
                self.log(format!("restart {pick}"));
            }
            25..=32 => {
                self.net.state.lock().unwrap().isolated = BTreeSet::from([pick]);
                self.log(format!("isolate {pick}"));
            }
            33..=45 => {
                self.net.state.lock().unwrap().isolated.clear();
                self.log("heal".into());
            }
            46..=52 => {
                let (drop, delay) = (self.rng.gen_range(0..300), self.rng.gen_range(0..150));
                {
                    let mut s = self.net.state.lock().unwrap();
                    s.drop_per_mille = drop;
                    s.max_delay_ms = delay;
                }
                self.log(format!("network drop {drop}/1000 delay {delay}ms"));
            }
            53..=58 => {
                let b = self.rng.gen_range(0..BROKERS as usize);
                let broker = &mut self.brokers[b];
                broker.alive = !broker.alive;
                if broker.alive {
                    broker.incarnation += 100;
                    broker.epoch = None;
                }
                let line = format!("broker {} {}", broker.id, if broker.alive { "restarts" } else { "goes silent" });
                self.log(line);
            }
            _ => {}
        }
    }

    async fn work(&mut self) {
        let Some((leader, controller)) = self.leader() else { return };
        let within = Duration::from_secs(2);
        // Brokers register and heartbeat.
        for b in 0..self.brokers.len() {
            if !self.brokers[b].alive {
                continue;
            }
            let (id, incarnation, epoch) = (self.brokers[b].id, self.brokers[b].incarnation, self.brokers[b].epoch);
            let offset = controller.image().offset;
            let result = match epoch {
                None => {
                    let reg = Registration {
                        broker_id: id,
                        incarnation_id: incarnation,
                        cluster_id: "sim".into(),
                        endpoints: vec![Endpoint {
                            name: "PLAINTEXT".into(),
                            host: "localhost".into(),
                            port: 9092 + id as u16,
                            security_protocol: "PLAINTEXT".into(),
                        }],
                        rack: Some(format!("rack-{}", id % 2)),
                    };
                    tokio::time::timeout(within, controller.register(reg)).await.map(|r| {
                        r.map(|e| {
                            self.brokers[b].epoch = Some(e);
                            format!("registered epoch {e}")
                        })
                    })
                }
                Some(epoch) => {
                    let hb =
                        Heartbeat { broker_id: id, broker_epoch: epoch, metadata_offset: offset, ..Default::default() };
                    tokio::time::timeout(within, controller.heartbeat(hb))
                        .await
                        .map(|r| r.map(|r| format!("heartbeat fenced={}", r.is_fenced)))
                }
            };
            match result {
                Ok(Ok(line)) => self.log(format!("broker {id}: {line}")),
                Ok(Err(e)) => {
                    if e.code == freshet_coord::code::STALE_BROKER_EPOCH
                        || e.code == freshet_coord::code::BROKER_ID_NOT_REGISTERED
                    {
                        self.brokers[b].epoch = None;
                    }
                    self.log(format!("broker {id}: {}", e.code));
                }
                Err(_) => self.log(format!("broker {id}: timed out")),
            }
        }
        // One controller request.
        let names: Vec<String> = controller.image().topics.keys().cloned().collect();
        let op = self.rng.gen_range(0..10);
        let outcome = match op {
            0..=3 => {
                self.next_topic += 1;
                let topic = NewTopic {
                    name: format!("t{}", self.next_topic),
                    partitions: self.rng.gen_range(1..4),
                    replication_factor: self.rng.gen_range(1..4),
                    ..Default::default()
                };
                tokio::time::timeout(within, controller.create_topic(topic, false))
                    .await
                    .map(|r| r.map(|(_, p, rf)| format!("created {p}x{rf}")))
            }
            4 if !names.is_empty() => {
                let name = names[self.rng.gen_range(0..names.len())].clone();
                tokio::time::timeout(within, controller.delete_topic(&name))
                    .await
                    .map(|r| r.map(|_| format!("deleted {name}")))
            }
            5 if !names.is_empty() => {
                let name = names[self.rng.gen_range(0..names.len())].clone();
                let count = controller.image().topic(&name).map_or(1, |t| t.partitions.len() as i32) + 1;
                tokio::time::timeout(within, controller.create_partitions(&name, count, &[], false))
                    .await
                    .map(|r| r.map(|_| format!("grew {name}")))
            }
            6 if !names.is_empty() => {
                let name = names[self.rng.gen_range(0..names.len())].clone();
                tokio::time::timeout(within, controller.elect_preferred(&name, 0))
                    .await
                    .map(|r| r.map(|_| format!("elected {name}-0")))
            }
            _ => {
                self.next_marker += 1;
                let marker = self.next_marker;
                let batch = MetadataBatch::new(vec![MetadataRecord::Config {
                    resource: ConfigResource::Broker(None),
                    name: format!("marker-{marker}"),
                    value: Some(marker.to_string()),
                }]);
                let quorum = controller.quorum().clone();
                match tokio::time::timeout(within, quorum.propose(batch)).await {
                    Ok(Ok(index)) => {
                        self.checker.markers.insert(index, marker);
                        Ok(Ok(format!("marker {marker} at {index}")))
                    }
                    Ok(Err(e)) => Ok(Err(freshet_cluster::ControllerError::new(-1, e.to_string()))),
                    Err(e) => Err(e),
                }
            }
        };
        let line = match outcome {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => format!("refused {}", e.code),
            Err(_) => "timed out".into(),
        };
        self.log(format!("leader {leader}: {line}"));
    }

    fn check(&mut self) {
        let images: Vec<(NodeId, Arc<MetadataImage>)> =
            self.live.iter().map(|(id, (node, _, _))| (*id, node.image().borrow().clone())).collect();
        for (id, image) in images {
            self.checker.observe(self.seed, id, &image, &self.trace);
        }
    }

    async fn step(&mut self) {
        self.fault().await;
        self.work().await;
        let wait = self.rng.gen_range(0..1500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        self.check();
    }

    /// Heals everything and waits for every controller to hold the same image.
    async fn converge(&mut self) -> Arc<MetadataImage> {
        {
            let mut s = self.net.state.lock().unwrap();
            s.isolated.clear();
            s.drop_per_mille = 0;
            s.max_delay_ms = 5;
        }
        for id in 1..=NODES {
            if !self.live.contains_key(&id) {
                self.start(id).await;
            }
        }
        // A marker committed after healing: every node must reach it.
        let mut committed = None;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if committed.is_none() {
                if let Some((_, c)) = self.leader() {
                    let batch = MetadataBatch::new(vec![MetadataRecord::Config {
                        resource: ConfigResource::Broker(None),
                        name: "marker-final".into(),
                        value: Some("final".into()),
                    }]);
                    if let Ok(Ok(index)) = tokio::time::timeout(Duration::from_secs(2), c.quorum().propose(batch)).await
                    {
                        committed = Some(index);
                    }
                }
            }
            let images: Vec<Arc<MetadataImage>> =
                self.live.values().map(|(n, _, _)| n.image().borrow().clone()).collect();
            if let Some(index) = committed {
                if images.iter().all(|i| i.offset >= index && i.offset == images[0].offset) {
                    self.check();
                    return images[0].clone();
                }
            }
        }
        panic!("seed {}: the controllers did not converge after healing: {}", self.seed, self.trace.join("\n"));
    }
}

/// Runs one seed and returns its trace and final image.
fn run(seed: u64, steps: usize) -> (Vec<String>, Arc<MetadataImage>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async move {
        let mut sim = Sim::new(seed);
        for id in 1..=NODES {
            sim.start(id).await;
        }
        for _ in 0..steps {
            sim.step().await;
        }
        let image = sim.converge().await;
        let markers = image.broker_configs.get("").map_or(0, |c| c.len());
        assert!(markers > sim.checker.markers.len(), "seed {seed}: the final image lacks markers");
        let end = format!(
            "end: offset {} digest {:x} topics {} markers {}",
            image.offset,
            image.digest,
            image.topics.len(),
            markers
        );
        sim.trace.push(end);
        for id in 1..=NODES {
            sim.crash(id).await;
        }
        (sim.trace, image)
    })
}

/// The seeds a simulation runs: `FRESHET_SIM_SEED`'s alone, or `FRESHET_SIM_SEEDS` (default 6)
/// from `first` on, `stride` apart.
pub(crate) fn seeds_from(first: u64, stride: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("FRESHET_SIM_SEED") {
        return vec![seed.parse().expect("FRESHET_SIM_SEED is a number")];
    }
    let count = std::env::var("FRESHET_SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(6u64);
    (0..count).map(|i| first + i * stride).collect()
}

fn seeds() -> Vec<u64> {
    seeds_from(0x00C0_FFEE, 7919)
}

#[test]
fn controllers_survive_crashes_partitions_and_lossy_networks() {
    for seed in seeds() {
        eprintln!("simulating seed {seed} (replay: FRESHET_SIM_SEED={seed})");
        let (trace, image) = run(seed, 150);
        let steps = trace.iter().filter(|l| l.starts_with("leader")).count();
        let faults = trace.iter().filter(|l| l.starts_with("crash") || l.starts_with("isolate")).count();
        eprintln!(
            "seed {seed}: {steps} controller requests, {faults} crashes or isolations, final offset {}",
            image.offset
        );
        assert!(steps > 20, "seed {seed}: the quorum served only {steps} requests in 150 steps");
        assert!(faults > 5, "seed {seed}: only {faults} faults were injected");
    }
}

#[test]
fn a_seed_replays_the_same_run() {
    let seed = seeds()[0];
    let (first, a) = run(seed, 60);
    let (second, b) = run(seed, 60);
    assert_eq!(first, second, "seed {seed} did not replay the same run");
    assert_eq!((a.offset, a.digest), (b.offset, b.digest));
}
