//! Deterministic simulation of replication: the metadata quorum and active controller, and
//! brokers replicating partitions between real logs, under a simulated network and clock.
//!
//! Three controllers run openraft on simulated disks; three brokers each keep a real [`Log`] in a
//! directory of their own and run the broker's replication code: the log following the image
//! ([`replication::reconcile`]), the leader's side ([`Leaderships`]: followers' progress, ISR
//! changes proposed to the controller, the high watermark), the follower's (fetch positions,
//! the leader's answers and what the follower does with them, [`follower`]). Only the sockets
//! are the simulation's: requests between brokers and to controllers wait the network's delay
//! and may be lost. Idempotent producers write with `acks=all` to each partition's leader,
//! retrying a batch until it is acknowledged.
//!
//! Everything runs on one thread under tokio's paused clock; the logs' file work is waited for
//! on that thread (nothing else runs meanwhile), and every random choice comes from the seed,
//! so a seed replays the same run. Each step injects a fault (a broker or controller crashed,
//! restarted, cut off from the others, paused; messages lost or delayed), lets simulated time
//! pass and checks, over every live copy:
//! - the controllers' invariants (one leader per epoch, epochs never backwards, leaders live
//!   members of their ISR: [`super::sim::Checker`]);
//! - the same offset holds the same batch on every copy that has it below its high watermark;
//! - a leader's high watermark is never past the log end of any member of its (maximal) ISR;
//! - the leader the latest image names, once it has taken over, holds every batch below the
//!   highest high watermark any leader ever exposed: no offset below a high watermark is lost;
//! - every acknowledged batch is below that high watermark, at the offset it was acknowledged
//!   at.
//!
//! At the end every fault heals; every copy must converge on the leader's log, hold every
//! acknowledged batch, and no producer batch may be stored twice. `FRESHET_SIM_SEED=<n>`
//! replays one seed; `FRESHET_SIM_SEEDS=<n>` runs more seeds than CI's.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use freshet_cluster::controller::{IsrChange, NewTopic, Registration, TopicDefaults};
use freshet_cluster::raft::{self, MemDisk, NodeId, QuorumNode, RaftRequest, RaftResponse, Transport};
use freshet_cluster::records::{BrokerId, Endpoint, NO_LEADER};
use freshet_cluster::replication::{self, follower, Answer, Leaderships};
use freshet_cluster::{Controller, ControllerConfig, Heartbeat, MetadataImage, Quorum};
use freshet_coord::code;
use freshet_log::batch::{BatchBuilder, BatchView, Batches};
use freshet_log::clock::ManualClock;
use freshet_log::config::{Durability, LogConfig};
use freshet_log::{Log, ReadLimit};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant};

use super::sim::{quorum_config, Checker};

const CONTROLLERS: u64 = 3;
const BROKERS: i32 = 3;
/// `broker.session.timeout.ms`.
const SESSION: Duration = Duration::from_secs(3);
/// `replica.lag.time.max.ms`.
const LAG_MAX: Duration = Duration::from_secs(2);
/// How long a produce waits for the ISR (`request.timeout.ms`).
const ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// The topics: name and partitions, each with three replicas and `min.insync.replicas=2`.
const TOPICS: [(&str, i32); 2] = [("a", 2), ("b", 1)];

/// Runs a log operation to its end on this thread: nothing else of the simulation runs
/// meanwhile and simulated time stands still, so the run does not depend on how long the file
/// work takes.
fn at_once<F: Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// An end of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Controller(NodeId),
    Broker(BrokerId),
}

#[derive(Default)]
struct NetState {
    controllers: BTreeMap<NodeId, Arc<QuorumNode>>,
    /// Nodes cut off from every other node (clients still reach an isolated broker).
    isolated: BTreeSet<Node>,
    drop_per_mille: u32,
    max_delay_ms: u64,
}

struct Net {
    state: Mutex<NetState>,
    rng: Mutex<StdRng>,
}

impl Net {
    fn passes(&self, from: Node, to: Node) -> bool {
        let s = self.state.lock().unwrap();
        let drop = self.rng.lock().unwrap().gen_range(0..1000) < s.drop_per_mille;
        !drop && !s.isolated.contains(&from) && !s.isolated.contains(&to)
    }

    /// One message: waits the network's delay, then says whether it arrived.
    async fn hop(&self, from: Node, to: Node) -> bool {
        let max = self.state.lock().unwrap().max_delay_ms;
        let delay = self.rng.lock().unwrap().gen_range(0..=max);
        sleep(Duration::from_millis(delay)).await;
        self.passes(from, to)
    }
}

#[async_trait]
impl Transport for Net {
    async fn send(&self, from: NodeId, to: NodeId, request: RaftRequest) -> Result<RaftResponse, String> {
        if !self.hop(Node::Controller(from), Node::Controller(to)).await {
            return Err(format!("{from} -> {to} lost"));
        }
        let Some(target) = self.state.lock().unwrap().controllers.get(&to).cloned() else {
            return Err(format!("controller {to} is down"));
        };
        let response = target.handle(request).await;
        if !self.hop(Node::Controller(to), Node::Controller(from)).await {
            return Err(format!("{to} -> {from} answer lost"));
        }
        Ok(response)
    }
}

/// A running broker: its log, its registration, the image it follows and its leaderships.
struct BrokerState {
    log: Log,
    incarnation: u128,
    epoch: Option<i64>,
    image: Arc<MetadataImage>,
    leaderships: Leaderships,
}

/// One life of a broker: its state and its tasks, all dropped when it crashes.
struct Running {
    id: BrokerId,
    state: Mutex<BrokerState>,
    tasks: Mutex<JoinSet<()>>,
}

impl Running {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.lock().unwrap().spawn(task);
    }

    fn log(&self) -> Log {
        self.state.lock().unwrap().log.clone()
    }
}

/// A batch acknowledged to a producer.
#[derive(Clone, Debug)]
struct Ack {
    topic: String,
    partition: i32,
    offset: i64,
    producer_id: i64,
    sequence: i32,
}

/// What every task shares.
struct World {
    net: Arc<Net>,
    controllers: Mutex<BTreeMap<NodeId, Arc<Controller>>>,
    brokers: Mutex<BTreeMap<BrokerId, Arc<Running>>>,
    /// Brokers paused (as with SIGSTOP): they act on nothing and answer nothing.
    paused: Mutex<BTreeSet<BrokerId>>,
    acks: Mutex<Vec<Ack>>,
    /// (topic, partition) -> the highest high watermark a leader answered a producer with.
    exposed: Mutex<BTreeMap<(String, i32), i64>>,
    trace: Mutex<Vec<String>>,
}

impl World {
    fn log(&self, line: String) {
        self.trace.lock().unwrap().push(line);
    }

    fn broker(&self, id: BrokerId) -> Option<Arc<Running>> {
        if self.paused.lock().unwrap().contains(&id) {
            return None;
        }
        self.brokers.lock().unwrap().get(&id).cloned()
    }

    fn is_paused(&self, id: BrokerId) -> bool {
        self.paused.lock().unwrap().contains(&id)
    }

    /// The newest image among the live controllers `from` reaches (every controller for a
    /// client).
    fn newest_image(&self, from: Option<Node>) -> Option<Arc<MetadataImage>> {
        let nodes: Vec<(NodeId, Arc<QuorumNode>)> =
            self.net.state.lock().unwrap().controllers.iter().map(|(id, n)| (*id, n.clone())).collect();
        let isolated = self.net.state.lock().unwrap().isolated.clone();
        nodes
            .into_iter()
            .filter(|(id, _)| from.is_none_or(|f| !isolated.contains(&f) && !isolated.contains(&Node::Controller(*id))))
            .map(|(_, n)| n.image().borrow().clone())
            .max_by_key(|i| i.offset)
    }

    /// The active controller, if `from` reaches it.
    fn active_controller(&self, from: Node) -> Option<(NodeId, Arc<Controller>)> {
        let state = self.net.state.lock().unwrap();
        if state.isolated.contains(&from) {
            return None;
        }
        let controllers = self.controllers.lock().unwrap();
        state
            .controllers
            .iter()
            .find(|(id, n)| n.leader() == Some(**id) && !state.isolated.contains(&Node::Controller(**id)))
            .and_then(|(id, _)| controllers.get(id).map(|c| (*id, c.clone())))
    }
}

/// Makes broker `b` follow `image`: its log holds what the image places on it, and its copies'
/// roles and leaderships follow.
fn follow_image(b: &Running, image: Arc<MetadataImage>) {
    let (log, previous) = {
        let st = b.state.lock().unwrap();
        (st.log.clone(), st.image.clone())
    };
    at_once(replication::reconcile(&log, b.id, (previous.offset > 0).then_some(&*previous), &image));
    let mut st = b.state.lock().unwrap();
    let registered = st.epoch.is_some_and(|e| image.brokers.get(&b.id).is_some_and(|r| r.epoch == e));
    let st = &mut *st;
    st.leaderships.on_image(&log, &image, registered, Instant::now());
    st.image = image;
}

/// The broker's registration, heartbeats and image: every 250 ms.
async fn session(world: Arc<World>, b: Arc<Running>) {
    let me = Node::Broker(b.id);
    loop {
        sleep(Duration::from_millis(250)).await;
        if world.is_paused(b.id) {
            continue;
        }
        if let Some(image) = world.newest_image(Some(me)) {
            if image.offset > b.state.lock().unwrap().image.offset {
                follow_image(&b, image);
            }
        }
        let Some((cid, controller)) = world.active_controller(me) else { continue };
        let to = Node::Controller(cid);
        if !world.net.hop(me, to).await {
            continue;
        }
        let (incarnation, epoch, offset) = {
            let st = b.state.lock().unwrap();
            (st.incarnation, st.epoch, st.image.offset)
        };
        let within = Duration::from_secs(2);
        match epoch {
            None => {
                let reg = Registration {
                    broker_id: b.id,
                    incarnation_id: incarnation,
                    cluster_id: "sim".into(),
                    endpoints: vec![Endpoint {
                        name: "PLAINTEXT".into(),
                        host: "localhost".into(),
                        port: 9092 + b.id as u16,
                        security_protocol: "PLAINTEXT".into(),
                    }],
                    rack: None,
                };
                if let Ok(Ok(e)) = timeout(within, controller.register(reg)).await {
                    if world.net.hop(to, me).await {
                        b.state.lock().unwrap().epoch = Some(e);
                        world.log(format!("broker {} registered epoch {e}", b.id));
                    }
                }
            }
            Some(epoch) => {
                let hb =
                    Heartbeat { broker_id: b.id, broker_epoch: epoch, metadata_offset: offset, ..Default::default() };
                if let Ok(Err(e)) = timeout(within, controller.heartbeat(hb)).await {
                    if e.code == code::STALE_BROKER_EPOCH || e.code == code::BROKER_ID_NOT_REGISTERED {
                        b.state.lock().unwrap().epoch = None;
                        world.log(format!("broker {} must register again ({})", b.id, e.code));
                    }
                }
            }
        }
    }
}

/// Sends an ISR change of broker `b`'s to the controller, as the broker does: an outcome not
/// known is asked again while the change waits for one; once its image has the change (or the
/// controller refused it), another may be proposed.
async fn propose(world: Arc<World>, b: Arc<Running>, topic: String, change: IsrChange) {
    let me = Node::Broker(b.id);
    let refused = loop {
        if let Some((cid, controller)) = world.active_controller(me) {
            if world.net.hop(me, Node::Controller(cid)).await {
                if let Ok(answer) = timeout(Duration::from_secs(2), controller.alter_partition(change.clone())).await {
                    if world.net.hop(Node::Controller(cid), me).await {
                        match answer {
                            Ok(()) => break None,
                            Err(e) if replication::decided(e.code) => break Some(e.code),
                            Err(_) => {}
                        }
                    }
                }
            }
        }
        if !b.state.lock().unwrap().leaderships.awaits(&topic, &change) {
            return;
        }
        sleep(Duration::from_millis(500)).await;
    };
    world.log(format!(
        "broker {}: ISR of {topic}-{} to {:?} {}",
        b.id,
        change.partition,
        change.new_isr,
        match refused {
            None => "committed".to_owned(),
            Some(code) => format!("refused ({code})"),
        }
    ));
    if refused.is_none() {
        // Settled once this broker's image has a newer partition epoch.
        loop {
            let moved = {
                let st = b.state.lock().unwrap();
                st.image
                    .topic(&topic)
                    .and_then(|t| t.partitions.get(&change.partition))
                    .is_none_or(|p| p.partition_epoch > change.partition_epoch)
            };
            if moved {
                break;
            }
            sleep(Duration::from_millis(50)).await;
        }
    }
    b.state.lock().unwrap().leaderships.proposal_settled(&topic, &change, refused, Instant::now());
}

/// Every `replica.lag.time.max.ms / 2`, proposes lagging followers out of the ISR.
async fn isr_checks(world: Arc<World>, b: Arc<Running>) {
    loop {
        sleep(LAG_MAX / 2).await;
        if world.is_paused(b.id) {
            continue;
        }
        let changes = {
            let mut st = b.state.lock().unwrap();
            let epoch = st.epoch;
            st.leaderships.shrink_lagging(epoch, Instant::now())
        };
        for (topic, change) in changes {
            b.spawn(propose(world.clone(), b.clone(), topic, change));
        }
    }
}

/// Broker `b`'s fetches from the leaders of the partitions it follows.
async fn fetcher(world: Arc<World>, b: Arc<Running>) {
    let me = Node::Broker(b.id);
    loop {
        if world.is_paused(b.id) {
            sleep(Duration::from_millis(100)).await;
            continue;
        }
        let (image, log) = {
            let st = b.state.lock().unwrap();
            (st.image.clone(), st.log.clone())
        };
        let mut got = false;
        for (leader, partitions) in follower::followed(&image, b.id) {
            if !world.net.hop(me, Node::Broker(leader)).await {
                continue;
            }
            // The leader answers every partition of the fetch at once.
            let Some(l) = world.broker(leader) else { continue };
            let l_log = l.log();
            let mut answers = Vec::new();
            let mut proposals = Vec::new();
            for f in partitions {
                let Some(at) = follower::position(&log, &f.topic, f.partition) else { continue };
                let leads = {
                    let st = l.state.lock().unwrap();
                    st.image.topic(&f.topic).and_then(|t| t.partitions.get(&f.partition)).is_some_and(|p| {
                        p.leader == leader
                            && p.leader_epoch == f.leader_epoch
                            && st.leaderships.leads(&f.topic, f.partition)
                    })
                };
                if !leads {
                    continue; // NOT_LEADER_OR_FOLLOWER or a fenced or unknown epoch
                }
                let noted = || {
                    let mut st = l.state.lock().unwrap();
                    let (live, epoch) = (st.image.is_live(b.id), st.epoch);
                    let change = st.leaderships.on_follower_fetch(
                        &l_log,
                        &f.topic,
                        f.partition,
                        b.id,
                        at.fetch_offset,
                        live,
                        epoch,
                        Instant::now(),
                    );
                    proposals.extend(change.map(|c| (f.topic.clone(), c)));
                };
                let limit = ReadLimit::AtLeastOne(64 << 10);
                match at_once(follower::serve(&l_log, &f.topic, f.partition as u32, at, limit, noted)) {
                    Ok(answer) => answers.push((f.topic, f.partition, answer)),
                    Err(e) => world.log(format!("broker {leader} could not serve {}-{}: {e}", f.topic, f.partition)),
                }
            }
            for (topic, change) in proposals {
                l.spawn(propose(world.clone(), l.clone(), topic, change));
            }
            drop((l, l_log));
            if !world.net.hop(Node::Broker(leader), me).await {
                continue;
            }
            for (topic, partition, answer) in answers {
                match &answer {
                    Answer::Records(f) => got |= !f.batches.is_empty(),
                    other => {
                        world.log(format!("broker {} fetching {topic}-{partition} from {leader}: {other:?}", b.id))
                    }
                }
                if let Err(e) = at_once(follower::apply(&log, &topic, partition as u32, answer)) {
                    world.log(format!("broker {} could not apply {topic}-{partition}: {e}", b.id));
                }
            }
        }
        // A leader with nothing new holds the fetch (Fetch's max wait).
        sleep(Duration::from_millis(if got { 5 } else { 100 })).await;
    }
}

/// An idempotent producer writing to one partition with `acks=all`: one batch in flight,
/// retried (same sequence) until acknowledged.
async fn producer(world: Arc<World>, topic: &'static str, partition: i32, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let producer_id = 1000 + partition as i64 + if topic == "a" { 0 } else { 100 };
    let mut sequence = 0i32;
    let mut pending: Option<bytes::Bytes> = None;
    loop {
        sleep(Duration::from_millis(rng.gen_range(10..120))).await;
        // A batch not acknowledged is sent again as it was.
        let batch = pending
            .get_or_insert_with(|| {
                let mut builder = BatchBuilder::default().producer(producer_id, 0, sequence);
                for i in 0..rng.gen_range(1..4) {
                    let value = format!("{topic}-{partition}-{sequence}-{i}");
                    builder.push(None, Some(value.as_bytes()), &[], 1000);
                }
                bytes::Bytes::copy_from_slice(&builder.finish())
            })
            .clone();
        let Some(image) = world.newest_image(None) else { continue };
        let Some(leader) = image.topic(topic).and_then(|t| t.partitions.get(&partition)).map(|p| p.leader) else {
            continue;
        };
        let Some(l) = world.broker(leader).filter(|_| leader != NO_LEADER) else { continue };
        // The broker takes a produce request when its own image names it the leader, as
        // `check_leader` does: an image followed before the broker registered again after a
        // restart may still name it, and its copy must then refuse the append itself.
        let (log, broker_image) = {
            let st = l.state.lock().unwrap();
            let named = st.image.topic(topic).and_then(|t| t.partitions.get(&partition)).map(|p| p.leader);
            if named != Some(leader) {
                continue;
            }
            (st.log.clone(), st.image.clone())
        };
        if replication::check_min_isr(&log, &broker_image, topic, partition).is_err() {
            continue;
        }
        let info = match at_once(log.append(topic, partition as u32, bytes::BytesMut::from(&batch[..]))) {
            Ok(info) => info,
            Err(e) => {
                world.log(format!("produce {topic}-{partition} seq {sequence} to {leader}: {e}"));
                continue;
            }
        };
        drop((log, broker_image));
        // The broker holds the answer until the ISR has the batch.
        let Ok(copy) = l.log().partition(topic, partition as u32) else { continue };
        let hw = copy.watch_high_watermark();
        let deadline = Instant::now() + ACK_TIMEOUT;
        let acked = loop {
            if world.is_paused(leader) || !world.brokers.lock().unwrap().contains_key(&leader) {
                break false;
            }
            // As the broker: a copy that left the epoch it was written in answers nothing.
            if !copy.leads_in(info.leader_epoch) {
                break false;
            }
            let now = *hw.borrow();
            if now > info.last_offset {
                let mut exposed = world.exposed.lock().unwrap();
                let at = exposed.entry((topic.to_owned(), partition)).or_insert(0);
                *at = (*at).max(now);
                let st = l.state.lock().unwrap();
                break replication::check_min_isr(&st.log, &st.image, topic, partition).is_ok();
            }
            if Instant::now() >= deadline || !l.state.lock().unwrap().leaderships.leads(topic, partition) {
                break false;
            }
            sleep(Duration::from_millis(20)).await;
        };
        drop(l);
        if acked {
            world.log(format!("ack {topic}-{partition} seq {sequence} at {}", info.base_offset));
            world.acks.lock().unwrap().push(Ack {
                topic: topic.into(),
                partition,
                offset: info.base_offset,
                producer_id,
                sequence,
            });
            // Sequences count records.
            sequence += Batches::new(&batch).next().and_then(|v| v.ok()).map_or(1, |v| v.record_count());
            pending = None;
        }
    }
}

/// What one copy holds.
struct Copy {
    broker: BrokerId,
    high_watermark: i64,
    log_end: i64,
    /// Base offset -> (last offset, the batch's bytes as stored).
    batches: BTreeMap<i64, (i64, bytes::Bytes)>,
    /// The copy's leader epochs and where each began.
    epochs: Vec<(i32, i64)>,
}

impl Copy {
    /// The copy's batches around `offset` and its epochs, for a failure's message.
    fn around(&self, offset: i64) -> String {
        let near: Vec<String> = self
            .batches
            .range(offset - 6..offset + 6)
            .map(|(base, (last, bytes))| {
                let epoch = Batches::new(bytes).next().and_then(|v| v.ok()).map_or(-1, |v| v.partition_leader_epoch());
                format!("{base}..={last}@{epoch}")
            })
            .collect();
        format!("broker {}: epochs {:?}, batches {}", self.broker, self.epochs, near.join(" "))
    }
}

fn read_copy(broker: BrokerId, log: &Log, topic: &str, partition: i32) -> Option<Copy> {
    let p = log.partition(topic, partition as u32).ok()?;
    let (start, high_watermark, log_end) = p.offsets();
    let mut batches = BTreeMap::new();
    let mut offset = start;
    while offset < log_end {
        let fetched =
            at_once(log.read_replica(topic, partition as u32, offset, ReadLimit::AtLeastOne(1 << 20))).ok()?;
        if fetched.batches.is_empty() {
            break;
        }
        for view in Batches::new(&fetched.batches) {
            let view: BatchView<'_> = view.ok()?;
            let at = fetched.batches.slice_ref(view.as_bytes());
            batches.insert(view.base_offset(), (view.last_offset(), at));
            offset = view.next_offset();
        }
    }
    Some(Copy { broker, high_watermark, log_end, batches, epochs: p.leader_epochs() })
}

struct Sim {
    seed: u64,
    rng: StdRng,
    world: Arc<World>,
    voters: BTreeMap<NodeId, String>,
    disks: BTreeMap<NodeId, MemDisk>,
    sessions: BTreeMap<NodeId, tokio::task::JoinHandle<()>>,
    dirs: tempfile::TempDir,
    incarnations: BTreeMap<BrokerId, u128>,
    producers: Vec<tokio::task::JoinHandle<()>>,
    checker: Checker,
    /// (topic, partition, base offset) -> the batch every copy must hold there once committed,
    /// and which copy showed it first.
    committed: BTreeMap<(String, i32, i64), (bytes::Bytes, String)>,
    /// (topic, partition) -> the highest high watermark a leader exposed.
    exposed: BTreeMap<(String, i32), i64>,
    /// (topic, partition) -> its leader and leader epoch in the newest image seen.
    leaders: BTreeMap<(String, i32), (BrokerId, i32)>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        raft::seed_thread_rng(seed);
        let world = World {
            net: Arc::new(Net { state: Mutex::default(), rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x4e7)) }),
            controllers: Mutex::default(),
            brokers: Mutex::default(),
            paused: Mutex::default(),
            acks: Mutex::default(),
            exposed: Mutex::default(),
            trace: Mutex::default(),
        };
        Sim {
            seed,
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            world: Arc::new(world),
            voters: (1..=CONTROLLERS).map(|n| (n, format!("controller-{n}"))).collect(),
            disks: (1..=CONTROLLERS).map(|n| (n, MemDisk::new())).collect(),
            sessions: BTreeMap::new(),
            dirs: tempfile::tempdir().unwrap(),
            incarnations: BTreeMap::new(),
            producers: Vec::new(),
            checker: Checker::default(),
            committed: BTreeMap::new(),
            exposed: BTreeMap::new(),
            leaders: BTreeMap::new(),
        }
    }

    fn log(&self, line: String) {
        self.world.log(line);
    }

    fn fail(&self, what: String) -> ! {
        let trace = self.world.trace.lock().unwrap();
        let keep = if std::env::var_os("FRESHET_SIM_TRACE").is_some() { trace.len() } else { 60 };
        let recent = trace[trace.len().saturating_sub(keep)..].join("\n  ");
        panic!("seed {}: {what}\nthe run's last steps (replay: FRESHET_SIM_SEED={}):\n  {recent}", self.seed, self.seed)
    }

    async fn start_controller(&mut self, id: NodeId) {
        let disk = Arc::new(self.disks[&id].clone());
        let node =
            QuorumNode::start(id, &self.voters, disk, self.world.net.clone(), &quorum_config()).await.expect("start");
        let node = Arc::new(node);
        let config = ControllerConfig {
            cluster_id: "sim".into(),
            session_timeout: SESSION,
            defaults: TopicDefaults { num_partitions: 1, replication_factor: 3 },
            producer_id_block: 1000,
            leader_rebalance: Some(Duration::from_secs(5)),
            elections: Default::default(),
        };
        let controller = Controller::new(node.clone(), config);
        self.sessions.insert(id, tokio::spawn(controller.clone().run_sessions()));
        self.world.net.state.lock().unwrap().controllers.insert(id, node);
        self.world.controllers.lock().unwrap().insert(id, controller);
    }

    async fn crash_controller(&mut self, id: NodeId) {
        if let Some(sessions) = self.sessions.remove(&id) {
            sessions.abort();
            self.world.controllers.lock().unwrap().remove(&id);
            let node = self.world.net.state.lock().unwrap().controllers.remove(&id);
            if let Some(node) = node {
                node.shutdown().await;
            }
        }
    }

    fn start_broker(&mut self, id: BrokerId) {
        let incarnation = self.incarnations.entry(id).or_insert(id as u128);
        *incarnation += 1000;
        let config = LogConfig {
            durability: Durability::OsCache,
            clock: ManualClock::new(1_000_000),
            replicated: true,
            ..Default::default()
        };
        let dir: PathBuf = self.dirs.path().join(format!("broker-{id}"));
        let log = at_once(Log::open(&dir, config)).expect("open the broker's log");
        let running = Arc::new(Running {
            id,
            state: Mutex::new(BrokerState {
                log,
                incarnation: *incarnation,
                epoch: None,
                image: Arc::new(MetadataImage::default()),
                leaderships: Leaderships::new(id, LAG_MAX),
            }),
            tasks: Mutex::new(JoinSet::new()),
        });
        running.spawn(session(self.world.clone(), running.clone()));
        running.spawn(isr_checks(self.world.clone(), running.clone()));
        running.spawn(fetcher(self.world.clone(), running.clone()));
        self.world.brokers.lock().unwrap().insert(id, running);
    }

    async fn crash_broker(&mut self, id: BrokerId) {
        let running = self.world.brokers.lock().unwrap().remove(&id);
        if let Some(running) = running {
            let mut tasks = std::mem::take(&mut *running.tasks.lock().unwrap());
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        self.world.paused.lock().unwrap().remove(&id);
    }

    async fn fault(&mut self) {
        let roll = self.rng.gen_range(0..100);
        let broker = self.rng.gen_range(1..=BROKERS);
        let controller = self.rng.gen_range(1..=CONTROLLERS);
        let running = self.world.brokers.lock().unwrap().contains_key(&broker);
        let down = BROKERS as usize - self.world.brokers.lock().unwrap().len();
        match roll {
            0..=7 if running && down == 0 => {
                self.crash_broker(broker).await;
                self.log(format!("crash broker {broker}"));
            }
            8..=19 if !running => {
                self.start_broker(broker);
                self.log(format!("restart broker {broker}"));
            }
            20..=25 => {
                self.world.net.state.lock().unwrap().isolated = BTreeSet::from([Node::Broker(broker)]);
                self.log(format!("isolate broker {broker}"));
            }
            26..=29 if running => {
                let mut paused = self.world.paused.lock().unwrap();
                let line = if paused.insert(broker) {
                    format!("pause broker {broker}")
                } else {
                    paused.remove(&broker);
                    format!("resume broker {broker}")
                };
                drop(paused);
                self.log(line);
            }
            30..=34 if self.sessions.contains_key(&controller) && self.sessions.len() == CONTROLLERS as usize => {
                self.crash_controller(controller).await;
                self.log(format!("crash controller {controller}"));
            }
            35..=41 if !self.sessions.contains_key(&controller) => {
                self.start_controller(controller).await;
                self.log(format!("restart controller {controller}"));
            }
            42..=45 => {
                self.world.net.state.lock().unwrap().isolated = BTreeSet::from([Node::Controller(controller)]);
                self.log(format!("isolate controller {controller}"));
            }
            46..=51 => {
                self.world.net.state.lock().unwrap().isolated.clear();
                self.world.paused.lock().unwrap().clear();
                self.log("heal".into());
            }
            52..=57 => {
                let (drop, delay) = (self.rng.gen_range(0..200), self.rng.gen_range(0..100));
                {
                    let mut s = self.world.net.state.lock().unwrap();
                    s.drop_per_mille = drop;
                    s.max_delay_ms = delay;
                }
                self.log(format!("network drop {drop}/1000 delay {delay}ms"));
            }
            _ => {}
        }
    }

    /// Every live copy of every partition, with the broker that holds it.
    fn copies(&self, topic: &str, partition: i32) -> Vec<Copy> {
        let brokers: Vec<Arc<Running>> = self.world.brokers.lock().unwrap().values().cloned().collect();
        brokers.iter().filter_map(|b| read_copy(b.id, &b.log(), topic, partition)).collect()
    }

    fn check(&mut self) {
        let images: Vec<(NodeId, Arc<MetadataImage>)> = self
            .world
            .net
            .state
            .lock()
            .unwrap()
            .controllers
            .iter()
            .map(|(id, n)| (*id, n.image().borrow().clone()))
            .collect();
        let trace = self.world.trace.lock().unwrap().clone();
        for (id, image) in &images {
            self.checker.observe(self.seed, *id, image, &trace);
        }
        let Some(latest) = images.iter().map(|(_, i)| i.clone()).max_by_key(|i| i.offset) else { return };
        let brokers: BTreeMap<BrokerId, Arc<Running>> = self.world.brokers.lock().unwrap().clone();
        for (topic, n) in TOPICS {
            for partition in 0..n {
                let key = (topic.to_owned(), partition);
                let copies = self.copies(topic, partition);
                let by_broker: BTreeMap<BrokerId, &Copy> = copies.iter().map(|c| (c.broker, c)).collect();
                for c in &copies {
                    let b = &brokers[&c.broker];
                    let leads = b.state.lock().unwrap().leaderships.maximal_isr(topic, partition);
                    if let Some(isr) = leads {
                        let exposed = self.exposed.entry(key.clone()).or_insert(0);
                        *exposed = (*exposed).max(c.high_watermark);
                        for member in isr.iter().filter(|m| **m != c.broker) {
                            if let Some(m) = by_broker.get(member).filter(|m| m.log_end < c.high_watermark) {
                                self.fail(format!(
                                    "{topic}-{partition}: leader {}'s high watermark {} is past in-sync replica {member}'s log end {}",
                                    c.broker, c.high_watermark, m.log_end
                                ));
                            }
                        }
                    }
                    for (base, (last, batch)) in c.batches.range(..c.high_watermark) {
                        let _ = last;
                        let held = self
                            .committed
                            .entry((topic.to_owned(), partition, *base))
                            .or_insert_with(|| (batch.clone(), c.around(*base)))
                            .clone();
                        if held.0 != *batch {
                            let copies: Vec<String> = copies.iter().map(|c| c.around(*base)).collect();
                            self.fail(format!(
                                "{topic}-{partition}: broker {} holds a different batch at offset {base}, below its high watermark {}; first shown by {}; now {}",
                                c.broker,
                                c.high_watermark,
                                held.1,
                                copies.join("; ")
                            ));
                        }
                    }
                }
                // The leader the latest image names, once it has taken over, holds everything
                // any leader exposed.
                let answered = self.world.exposed.lock().unwrap().get(&key).copied().unwrap_or(0);
                let exposed = self.exposed.entry(key.clone()).or_insert(0);
                *exposed = (*exposed).max(answered);
                let exposed = *exposed;
                let Some(p) = latest.topic(topic).and_then(|t| t.partitions.get(&partition)) else { continue };
                if self.leaders.insert(key.clone(), (p.leader, p.leader_epoch)) != Some((p.leader, p.leader_epoch)) {
                    self.log(format!(
                        "elected: {topic}-{partition} led by {} in epoch {}, ISR {:?}",
                        p.leader, p.leader_epoch, p.isr
                    ));
                }
                let took_over = brokers.get(&p.leader).is_some_and(|b| {
                    let st = b.state.lock().unwrap();
                    st.leaderships.leads(topic, partition)
                        && st.image.topic(topic).and_then(|t| t.partitions.get(&partition)).map(|q| q.leader_epoch)
                            == Some(p.leader_epoch)
                });
                // Every acknowledged batch is on the leader that took over, and on every copy
                // whose high watermark passed it, at the offset it was acknowledged at.
                let acks: Vec<Ack> = self
                    .world
                    .acks
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|a| a.topic == topic && a.partition == partition)
                    .cloned()
                    .collect();
                for c in &copies {
                    let leads = c.broker == p.leader && took_over;
                    for ack in acks.iter().filter(|a| leads || a.offset < c.high_watermark) {
                        let held = c.batches.get(&ack.offset).and_then(|(_, b)| Batches::new(b).next()?.ok());
                        if !held
                            .is_some_and(|v| v.producer_id() == ack.producer_id && v.base_sequence() == ack.sequence)
                        {
                            self.fail(format!(
                                "{topic}-{partition}: broker {} ({}, high watermark {}) lacks the batch acknowledged at offset {} (sequence {})",
                                c.broker,
                                if leads { "the leader" } else { "a follower" },
                                c.high_watermark,
                                ack.offset,
                                ack.sequence
                            ));
                        }
                    }
                }
                if let Some(c) = by_broker.get(&p.leader).filter(|_| took_over) {
                    let expected =
                        self.committed.range((topic.to_owned(), partition, 0)..(topic.to_owned(), partition, exposed));
                    for ((_, _, base), (batch, _)) in expected {
                        if c.batches.get(base).map(|(_, b)| b) != Some(batch) {
                            self.fail(format!(
                                "{topic}-{partition}: leader {} (epoch {}) lacks the batch at offset {base}, below the high watermark {exposed} a leader exposed",
                                p.leader, p.leader_epoch
                            ));
                        }
                    }
                }
            }
        }
    }

    async fn step(&mut self) {
        self.fault().await;
        let wait = self.rng.gen_range(50..1000);
        sleep(Duration::from_millis(wait)).await;
        self.check();
    }

    async fn create_topics(&mut self) {
        for (name, partitions) in TOPICS {
            loop {
                sleep(Duration::from_millis(200)).await;
                let Some((_, controller)) = self.world.active_controller(Node::Controller(0)) else { continue };
                let topic = NewTopic {
                    name: name.into(),
                    partitions,
                    replication_factor: 3,
                    configs: vec![("min.insync.replicas".into(), "2".into())],
                    ..Default::default()
                };
                match timeout(Duration::from_secs(2), controller.create_topic(topic, false)).await {
                    Ok(Ok(_)) => break,
                    Ok(Err(e)) if e.code == code::TOPIC_ALREADY_EXISTS => break,
                    _ => {}
                }
            }
        }
    }

    /// Heals everything and waits for every copy to hold its leader's log, all in sync.
    async fn converge(&mut self) {
        {
            let mut s = self.world.net.state.lock().unwrap();
            s.isolated.clear();
            s.drop_per_mille = 0;
            s.max_delay_ms = 5;
        }
        self.world.paused.lock().unwrap().clear();
        for id in 1..=CONTROLLERS {
            if !self.sessions.contains_key(&id) {
                self.start_controller(id).await;
            }
        }
        for id in 1..=BROKERS {
            if !self.world.brokers.lock().unwrap().contains_key(&id) {
                self.start_broker(id);
            }
        }
        for producer in self.producers.drain(..) {
            producer.abort();
        }
        self.log("healed: every node runs, producers stopped".into());
        for _ in 0..300 {
            sleep(Duration::from_millis(200)).await;
            self.check();
            if self.converged() {
                return;
            }
        }
        self.fail("the copies did not converge after healing".into());
    }

    fn converged(&self) -> bool {
        let Some(image) = self.world.newest_image(None) else { return false };
        TOPICS.iter().all(|(topic, n)| {
            (0..*n).all(|partition| {
                let Some(p) = image.topic(topic).and_then(|t| t.partitions.get(&partition)) else { return false };
                let copies = self.copies(topic, partition);
                p.leader != NO_LEADER
                    && p.isr.len() == BROKERS as usize
                    && copies.len() == BROKERS as usize
                    && copies.iter().all(|c| c.log_end == copies[0].log_end && c.high_watermark == c.log_end)
            })
        })
    }

    /// After converging: every copy holds every acknowledged batch, and no producer batch twice.
    fn verify(&self) -> String {
        let acks = self.world.acks.lock().unwrap().clone();
        let mut summary = Vec::new();
        for (topic, n) in TOPICS {
            for partition in 0..n {
                for copy in self.copies(topic, partition) {
                    let mut seen = BTreeSet::new();
                    for (base, (_, batch)) in &copy.batches {
                        let view = Batches::new(batch).next().unwrap().unwrap();
                        if !seen.insert((view.producer_id(), view.base_sequence())) {
                            self.fail(format!(
                                "{topic}-{partition}: broker {} stores producer {}'s sequence {} twice (again at {base})",
                                copy.broker,
                                view.producer_id(),
                                view.base_sequence()
                            ));
                        }
                    }
                    for ack in acks.iter().filter(|a| a.topic == topic && a.partition == partition) {
                        let held = copy.batches.get(&ack.offset).and_then(|(_, b)| Batches::new(b).next()?.ok());
                        if !held
                            .is_some_and(|v| v.producer_id() == ack.producer_id && v.base_sequence() == ack.sequence)
                        {
                            self.fail(format!(
                                "{topic}-{partition}: broker {} lost the batch acknowledged at offset {} (sequence {})",
                                copy.broker, ack.offset, ack.sequence
                            ));
                        }
                    }
                    if copy.broker == 1 {
                        summary.push(format!(
                            "{topic}-{partition}: {} batches to offset {}",
                            copy.batches.len(),
                            copy.log_end
                        ));
                    }
                }
            }
        }
        summary.join(", ")
    }
}

/// Runs one seed and returns its trace.
fn run(seed: u64, steps: usize) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async move {
        let mut sim = Sim::new(seed);
        for id in 1..=CONTROLLERS {
            sim.start_controller(id).await;
        }
        for id in 1..=BROKERS {
            sim.start_broker(id);
        }
        sim.create_topics().await;
        for (i, (topic, n)) in TOPICS.iter().enumerate() {
            for partition in 0..*n {
                let world = sim.world.clone();
                let seed = seed ^ ((i as u64) << 8 | partition as u64);
                sim.producers.push(tokio::spawn(producer(world, topic, partition, seed)));
            }
        }
        for _ in 0..steps {
            sim.step().await;
        }
        sim.converge().await;
        let end = sim.verify();
        let acks = sim.world.acks.lock().unwrap().len();
        sim.log(format!("end: {acks} batches acknowledged; {end}"));
        for id in 1..=BROKERS {
            sim.crash_broker(id).await;
        }
        for id in 1..=CONTROLLERS {
            sim.crash_controller(id).await;
        }
        let trace = sim.world.trace.lock().unwrap().clone();
        trace
    })
}

fn seeds() -> Vec<u64> {
    super::sim::seeds_from(0x0005_EED5, 104_729)
}

#[test]
fn replicas_lose_no_acknowledged_write_under_crashes_partitions_and_pauses() {
    for seed in seeds() {
        eprintln!("simulating seed {seed} (replay: FRESHET_SIM_SEED={seed})");
        let trace = run(seed, 300);
        if std::env::var_os("FRESHET_SIM_TRACE").is_some() {
            eprintln!("{}", trace.join("\n"));
        }
        let count = |prefix: &str| trace.iter().filter(|l| l.starts_with(prefix)).count();
        let (acks, crashes, isolations) = (count("ack "), count("crash "), count("isolate "));
        let isr = trace.iter().filter(|l| l.contains("ISR of") && l.ends_with("committed")).count();
        let elections = count("elected: ");
        eprintln!(
            "seed {seed}: {acks} batches acknowledged, {crashes} crashes, {isolations} isolations, {} pauses, {isr} ISR changes, {elections} leaders elected; {}",
            count("pause "),
            trace.last().map_or("", |l| l.as_str())
        );
        assert!(acks > 100, "seed {seed}: only {acks} batches were acknowledged");
        assert!(crashes + isolations > 10, "seed {seed}: only {crashes} crashes and {isolations} isolations");
        assert!(isr > 5, "seed {seed}: the ISR changed only {isr} times");
        assert!(elections > 5, "seed {seed}: only {elections} leaders were elected");
    }
}

#[test]
fn a_replication_seed_replays_the_same_run() {
    let seed = seeds()[0];
    let first = run(seed, 60);
    let second = run(seed, 60);
    if first != second {
        let at = first.iter().zip(&second).position(|(a, b)| a != b).unwrap_or(first.len().min(second.len()));
        panic!(
            "seed {seed} did not replay the same run: they part at line {at}:\n  {:?}\n  {:?}",
            first.get(at),
            second.get(at)
        );
    }
}
