//! A node of a cluster: the controller it may be, the broker it may be, and the metadata image
//! both serve from.
//!
//! A controller (`process.roles` has `controller`) runs a quorum node of `freshet-cluster` on its
//! metadata directory and answers the controller listener ([`rpc`]): Raft messages from the other
//! controllers, and registrations, heartbeats, image fetches and admin requests from brokers. A
//! broker registers with the active controller, heartbeats, follows the committed image (its own
//! quorum node's, or fetched from a controller) and keeps its log holding the partitions the image
//! gives it ([`reconcile`]). Requests are served from the image: Metadata lists the live brokers
//! and each partition's leader, Produce and Fetch go to a partition's leader only, admin requests
//! are forwarded to the active controller.

pub(crate) mod coordinators;
mod fetcher;
mod link;
pub(crate) mod participants;
mod reconcile;
pub(crate) mod replica;
pub(crate) mod rpc;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use freshet_cluster::controller::{NewTopic, Registration, TopicDefaults};
use freshet_cluster::raft::{FileDisk, NodeId, QuorumConfig, QuorumNode};
use freshet_cluster::records::{AclEntry, BrokerId, ConfigResource, Endpoint, TopicId, NO_LEADER};
use freshet_cluster::{
    Controller, ControllerConfig, ControllerError, Heartbeat, MetadataImage, Quorum, QuorumDescription,
};
use freshet_coord::code;
use freshet_log::Log;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::rpc::{Call, Peers, Reply, TcpTransport};

/// A node's place in a cluster, from Kafka's settings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `node.id`.
    pub node_id: i32,
    /// `process.roles` has `controller`.
    pub controller: bool,
    /// `process.roles` has `broker`.
    pub broker: bool,
    /// `controller.quorum.voters`: each controller's id and controller listener.
    pub voters: BTreeMap<i32, SocketAddr>,
    /// Where this node's controller listener listens (a controller only).
    pub controller_listen: Option<SocketAddr>,
    /// The metadata log's directory (`metadata.log.dir`, or `__cluster_metadata-0` in the data
    /// directory).
    pub metadata_dir: PathBuf,
    /// The cluster id every node's data directory carries.
    pub cluster_id: String,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// The client listener's name, as this broker registers it (`PLAINTEXT`).
    pub listener_name: String,
    /// `broker.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `controller.quorum.election.timeout.ms`.
    pub election_timeout: Duration,
    /// `num.partitions` and `default.replication.factor`.
    pub defaults: TopicDefaults,
    /// `offsets.topic.replication.factor`.
    pub offsets_replication_factor: i16,
    /// `transaction.state.log.replication.factor`.
    pub transactions_replication_factor: i16,
    /// `replica.lag.time.max.ms`: a follower that has not caught up with its leader for this
    /// long leaves the ISR.
    pub replica_lag_max: Duration,
    /// `auto.leader.rebalance.enable` and `leader.imbalance.check.interval.seconds`: how often
    /// the active controller gives leadership back to preferred replicas (`None`: off).
    pub leader_rebalance: Option<Duration>,
    /// `unclean.leader.election.enable`: with no in-sync replica live, a partition is led by
    /// another live replica rather than staying offline (records may be lost).
    pub unclean_election: bool,
}

impl ClusterConfig {
    /// A node of the quorum `voters`, with Kafka's defaults.
    pub fn new(node_id: i32, voters: BTreeMap<i32, SocketAddr>, metadata_dir: PathBuf, cluster_id: String) -> Self {
        Self {
            node_id,
            controller: voters.contains_key(&node_id),
            broker: true,
            controller_listen: voters.get(&node_id).copied(),
            voters,
            metadata_dir,
            cluster_id,
            rack: None,
            listener_name: "PLAINTEXT".into(),
            session_timeout: Duration::from_millis(9000),
            heartbeat_interval: Duration::from_millis(2000),
            election_timeout: Duration::from_millis(1000),
            defaults: TopicDefaults { num_partitions: 1, replication_factor: 1 },
            offsets_replication_factor: 1,
            transactions_replication_factor: 1,
            replica_lag_max: Duration::from_secs(30),
            leader_rebalance: Some(Duration::from_secs(300)),
            unclean_election: false,
        }
    }
}

/// A controller-only node (`process.roles=controller`): the quorum and the controller listener,
/// no client listener and no partitions.
#[derive(Debug)]
pub struct ControllerNode(Arc<ClusterNode>);

impl ControllerNode {
    /// Starts the controller of `config` (its `controller` set, `broker` unset).
    pub async fn start(mut config: ClusterConfig) -> freshet_log::Result<Self> {
        config.broker = false;
        config.controller = true;
        Ok(Self(ClusterNode::start(config, None).await?))
    }

    /// The active controller's id, if this node knows it.
    pub fn leader(&self) -> Option<i32> {
        self.0.controller_id()
    }

    /// Stops the node.
    pub async fn stop(self) {
        self.0.stop().await;
    }
}

/// Why a partition is not served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotServed {
    /// Kafka's error code.
    pub(crate) code: i16,
    /// The partition's leader, if it has one.
    pub(crate) leader: Option<(BrokerId, i32)>,
}

/// This node's part in the cluster.
#[derive(Debug)]
pub(crate) struct ClusterNode {
    pub(crate) config: ClusterConfig,
    quorum: Option<Arc<QuorumNode>>,
    peers: Arc<Peers>,
    image: watch::Receiver<Arc<MetadataImage>>,
    /// This broker's registration epoch, once registered.
    epoch: watch::Receiver<Option<i64>>,
    /// The producer ids left of this broker's block: the next, and the end.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// The partitions this broker leads and their followers (a broker only).
    pub(crate) replicas: Option<Arc<replica::Replicas>>,
    /// The coordinators' partitions whose state this broker has loaded, with the leader epoch
    /// it loaded them at (see [`coordinators`]).
    coordinators: std::sync::Mutex<BTreeMap<(String, i32), i32>>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl ClusterNode {
    /// Starts the controller (if this node is one) and the broker's registration, heartbeats,
    /// image and log reconciliation, advertising `endpoint` to clients.
    pub(crate) async fn start(
        config: ClusterConfig,
        broker: Option<(Log, (String, u16))>,
    ) -> freshet_log::Result<Arc<Self>> {
        let internal = |e: String| freshet_log::Error::Internal(e);
        let peers = Arc::new(Peers::default());
        let mut tasks = Vec::new();
        let mut quorum = None;
        let (image_tx, image_rx) = watch::channel(Arc::new(MetadataImage::default()));
        if config.controller {
            let listen =
                config.controller_listen.ok_or_else(|| internal("a controller needs a controller listener".into()))?;
            let listener = TcpListener::bind(listen).await.map_err(|e| freshet_log::Error::InvalidConfig {
                key: "listeners".into(),
                value: listen.to_string(),
                reason: format!("the controller listener cannot listen: {e}"),
            })?;
            let disk = FileDisk::open(&config.metadata_dir)
                .map_err(|e| internal(format!("the metadata log in {}: {e}", config.metadata_dir.display())))?;
            let voters: BTreeMap<NodeId, String> =
                config.voters.iter().map(|(id, addr)| (*id as NodeId, addr.to_string())).collect();
            let transport = Arc::new(TcpTransport {
                peers: peers.clone(),
                voters: config.voters.iter().map(|(id, a)| (*id as NodeId, *a)).collect(),
            });
            let quorum_config = QuorumConfig {
                election_timeout: config.election_timeout,
                heartbeat_interval: config.election_timeout / 5,
                snapshot_every: 10_000,
            };
            // The listener answers before the quorum node exists: Raft messages wait for it.
            let (node_tx, node_rx) = watch::channel::<Option<Served>>(None);
            tasks.push(tokio::spawn(serve_controller_listener(listener, node_rx)));
            let node = QuorumNode::start(config.node_id as NodeId, &voters, Arc::new(disk), transport, &quorum_config)
                .await
                .map_err(|e| internal(format!("starting the metadata quorum: {e}")))?;
            let node = Arc::new(node);
            let ctl = Controller::new(
                node.clone(),
                ControllerConfig {
                    cluster_id: config.cluster_id.clone(),
                    session_timeout: config.session_timeout,
                    defaults: config.defaults,
                    producer_id_block: 1000,
                    leader_rebalance: config.leader_rebalance,
                    elections: freshet_cluster::controller::Elections { unclean_default: config.unclean_election },
                },
            );
            tasks.push(tokio::spawn(ctl.clone().run_sessions()));
            tasks.push(tokio::spawn(ctl.clone().run_leader_rebalance()));
            tasks.push(tokio::spawn(report_leadership(node.clone())));
            let _ = node_tx.send(Some(Served { quorum: node.clone(), controller: ctl.clone() }));
            // Keep the sender alive for the listener's lifetime.
            tasks.push(tokio::spawn(async move {
                node_tx.closed().await;
            }));
            tracing::info!(node = config.node_id, %listen, voters = config.voters.len(), "controller started");
            quorum = Some(node);
        }
        // The image: the local quorum node's, or fetched from the controllers.
        let image = match &quorum {
            Some(node) => {
                drop(image_tx);
                node.image()
            }
            None => {
                tasks.push(tokio::spawn(follow_image(config.voters.clone(), peers.clone(), image_tx)));
                image_rx
            }
        };
        let (epoch_tx, epoch_rx) = watch::channel(None);
        let broker = broker.filter(|_| config.broker);
        let node = Arc::new_cyclic(|weak| Self {
            config: config.clone(),
            quorum,
            peers,
            image,
            epoch: epoch_rx,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            replicas: broker.as_ref().map(|(log, _)| {
                Arc::new(replica::Replicas::new(config.node_id, log.clone(), config.replica_lag_max, weak.clone()))
            }),
            coordinators: std::sync::Mutex::new(BTreeMap::new()),
            tasks: std::sync::Mutex::new(tasks),
        });
        if let Some((log, endpoint)) = broker {
            let registration = Registration {
                broker_id: config.node_id,
                incarnation_id: u128::from(freshet_cluster::raft::thread_random()) << 64
                    | u128::from(freshet_cluster::raft::thread_random()),
                cluster_id: config.cluster_id.clone(),
                endpoints: vec![Endpoint {
                    name: config.listener_name.clone(),
                    host: endpoint.0,
                    port: endpoint.1,
                    security_protocol: "PLAINTEXT".into(),
                }],
                rack: config.rack.clone(),
            };
            let beat = tokio::spawn(node.clone().heartbeats(registration, epoch_tx));
            let follow = tokio::spawn(reconcile::run(node.clone(), log.clone()));
            let fetch = tokio::spawn(fetcher::run(node.clone(), log));
            let replicas = node.replicas.clone().expect("a broker has replicas");
            let checks = tokio::spawn(replica::run_isr_checks(replicas));
            node.tasks.lock().expect("cluster tasks lock").extend([beat, follow, fetch, checks]);
        }
        Ok(node)
    }

    /// The committed image this node serves from.
    /// This broker's replica metrics under its image.
    pub(crate) fn replica_metrics(&self) -> freshet_cluster::replication::ReplicaMetrics {
        let image = self.image();
        let mut metrics = self.replicas.as_ref().map(|r| r.metrics(&image)).unwrap_or_default();
        if self.replicas.is_none() {
            metrics.offline = image.partitions().filter(|(_, _, p)| p.leader == NO_LEADER).count() as u64;
        }
        metrics
    }

    /// Whether this node is the quorum's leader: the active controller.
    pub(crate) fn is_active_controller(&self) -> bool {
        self.quorum.as_ref().is_some_and(|q| q.leader() == Some(self.config.node_id as NodeId))
    }

    pub(crate) fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Returns once the image has this broker's registration (this process's, not an earlier
    /// one's still in the log) unfenced.
    pub(crate) async fn wait_unfenced(&self) {
        let me = self.config.node_id;
        let mut epochs = self.epoch.clone();
        let Ok(epoch) = epochs.wait_for(Option::is_some).await.map(|e| *e) else { return };
        let mut images = self.image.clone();
        let _ = images.wait_for(|i| i.brokers.get(&me).is_some_and(|b| Some(b.epoch) == epoch && !b.fenced)).await;
    }

    /// Whether the coordinators' state of `topic`-`partition` is loaded for leader epoch
    /// `epoch`.
    pub(crate) fn coordinator_loaded(&self, topic: &str, partition: i32, epoch: i32) -> bool {
        self.coordinators.lock().expect("coordinators lock").get(&(topic.to_owned(), partition)) == Some(&epoch)
    }

    /// Runs `task` with the node's own tasks: stopped with the node.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.lock().expect("cluster tasks lock").push(tokio::spawn(task));
    }

    /// A receiver of every new image.
    pub(crate) fn images(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// The active controller's id, if this node knows it.
    pub(crate) fn controller_id(&self) -> Option<i32> {
        self.quorum.as_ref().and_then(|q| q.leader()).map(|l| l as i32)
    }

    /// Whether this broker may serve `topic`-`partition` as its leader: `Err` says why not.
    /// `epoch` is the leader epoch the client holds (-1: none).
    pub(crate) fn check_leader(&self, topic: &str, partition: i32, epoch: i32) -> Result<(), NotServed> {
        let image = self.image.borrow();
        let Some(p) = image.topic(topic).and_then(|t| t.partitions.get(&partition)) else {
            return Err(NotServed { code: code::UNKNOWN_TOPIC_OR_PARTITION, leader: None });
        };
        let leader = (p.leader != NO_LEADER).then_some((p.leader, p.leader_epoch));
        if p.leader != self.config.node_id {
            return Err(NotServed { code: code::NOT_LEADER_OR_FOLLOWER, leader });
        }
        if epoch >= 0 && epoch < p.leader_epoch {
            return Err(NotServed { code: code::FENCED_LEADER_EPOCH, leader });
        }
        if epoch > p.leader_epoch {
            return Err(NotServed { code: code::UNKNOWN_LEADER_EPOCH, leader });
        }
        Ok(())
    }

    /// Sends `call` to the active controller, following NOT_CONTROLLER answers, until `within`.
    pub(crate) async fn ask_controller(&self, call: Call, within: Duration) -> Result<Reply, ControllerError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut hint: Option<NodeId> = self.quorum.as_ref().and_then(|q| q.leader());
        let order: Vec<(NodeId, SocketAddr)> = self.config.voters.iter().map(|(id, a)| (*id as NodeId, *a)).collect();
        let mut next = 0usize;
        let mut last = String::from("no controller answered");
        while tokio::time::Instant::now() < deadline {
            let (id, addr) = match hint.take().and_then(|h| order.iter().find(|(id, _)| *id == h)) {
                Some(target) => *target,
                None => {
                    next += 1;
                    order[next % order.len()]
                }
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.peers.call(addr, &call, left.min(Duration::from_secs(30))).await {
                Ok(Reply::NotController(leader)) => {
                    hint = leader.filter(|l| *l != id);
                    if hint.is_none() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    last = format!("controller {id} is not active");
                }
                Ok(Reply::Unavailable(why)) => {
                    last = why;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(ControllerError::new(
            code::REQUEST_TIMED_OUT,
            format!("no active controller answered within {within:?}: {last}"),
        ))
    }

    /// A producer id no other broker hands out: the next of this broker's block, a new block
    /// from the controller when it is used up (AllocateProducerIds).
    pub(crate) async fn producer_id(&self) -> Result<i64, ControllerError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let epoch = self.epoch.borrow().ok_or_else(|| {
                ControllerError::new(code::COORDINATOR_NOT_AVAILABLE, "this broker is not registered yet")
            })?;
            let call = Call::AllocateProducerIds { broker_id: self.config.node_id, broker_epoch: epoch };
            match self.ask_controller(call, Duration::from_secs(10)).await? {
                Reply::ProducerIds(Ok((start, count))) => *ids = (start, start + count),
                Reply::ProducerIds(Err(e)) => return Err(e),
                other => return Err(unexpected(&other)),
            }
        }
        ids.0 += 1;
        Ok(ids.0 - 1)
    }

    /// CreateTopics through the controller; answers once this node's image has the topic.
    pub(crate) async fn create_topic(
        &self,
        topic: NewTopic,
        validate_only: bool,
    ) -> Result<(TopicId, i32, i16), ControllerError> {
        let name = topic.name.clone();
        match self.ask_controller(Call::CreateTopic { topic, validate_only }, Duration::from_secs(30)).await? {
            Reply::Created(Ok(created)) => {
                if !validate_only {
                    self.wait_image(|i| i.topic(&name).is_some_and(|t| t.id == created.0)).await;
                }
                Ok(created)
            }
            Reply::Created(Err(e)) => Err(e),
            other => Err(unexpected(&other)),
        }
    }

    /// DeleteTopics through the controller; answers once this node's image lacks the topic.
    pub(crate) async fn delete_topic(&self, name: &str) -> Result<(), ControllerError> {
        self.done(Call::DeleteTopic { name: name.to_owned() }).await?;
        self.wait_image(|i| i.topic(name).is_none()).await;
        Ok(())
    }

    /// CreatePartitions through the controller.
    pub(crate) async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Vec<Vec<BrokerId>>,
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        self.done(Call::CreatePartitions { name: name.to_owned(), count, assignments, validate_only }).await?;
        if !validate_only {
            self.wait_image(|i| i.topic(name).is_some_and(|t| t.partitions.len() as i32 >= count)).await;
        }
        Ok(())
    }

    /// ElectLeaders (PREFERRED) through the controller.
    pub(crate) async fn elect_preferred(&self, topic: &str, partition: i32) -> Result<(), ControllerError> {
        self.done(Call::ElectPreferred { topic: topic.to_owned(), partition }).await
    }

    /// ElectLeaders (UNCLEAN) through the controller.
    pub(crate) async fn elect_unclean(&self, topic: &str, partition: i32) -> Result<(), ControllerError> {
        self.done(Call::ElectUnclean { topic: topic.to_owned(), partition }).await
    }

    /// Topic or broker configs through the controller.
    pub(crate) async fn alter_configs(
        &self,
        resource: ConfigResource,
        changes: Vec<(String, Option<String>)>,
    ) -> Result<(), ControllerError> {
        self.done(Call::AlterConfigs { resource, changes }).await
    }

    /// A partition's reassignment through the controller (`target` `None`: its cancellation);
    /// answers once this node's image shows it started (or after a few seconds).
    pub(crate) async fn alter_reassignment(
        &self,
        topic: &str,
        partition: i32,
        target: Option<Vec<BrokerId>>,
        allow_rf_change: bool,
    ) -> Result<(), ControllerError> {
        let before = self.image().topic(topic).and_then(|t| t.partitions.get(&partition)).map(|p| p.partition_epoch);
        let call = Call::Reassign { topic: topic.to_owned(), partition, target, allow_rf_change };
        self.done(call).await?;
        self.wait_image(|i| {
            i.topic(topic).and_then(|t| t.partitions.get(&partition)).map(|p| p.partition_epoch) != before
        })
        .await;
        Ok(())
    }

    /// The metadata quorum, as the active controller describes it.
    pub(crate) async fn describe_quorum(&self) -> Result<QuorumDescription, ControllerError> {
        match self.ask_controller(Call::DescribeQuorum, Duration::from_secs(30)).await? {
            Reply::Quorum(result) => result,
            other => Err(unexpected(&other)),
        }
    }

    /// Creates the ACLs of `add` and deletes those of `remove` through the controller; returns
    /// once this node's image shows the change (or after a few seconds).
    pub(crate) async fn alter_acls(&self, add: Vec<AclEntry>, remove: Vec<AclEntry>) -> Result<(), ControllerError> {
        self.done(Call::AlterAcls { add: add.clone(), remove: remove.clone() }).await?;
        self.wait_image(|i| add.iter().all(|a| i.acls.contains(a)) && !remove.iter().any(|a| i.acls.contains(a))).await;
        Ok(())
    }

    async fn done(&self, call: Call) -> Result<(), ControllerError> {
        match self.ask_controller(call, Duration::from_secs(30)).await? {
            Reply::Done(result) => result,
            other => Err(unexpected(&other)),
        }
    }

    /// Waits (a few seconds at most) until this node's image satisfies `ready`.
    pub(crate) async fn wait_image(&self, ready: impl Fn(&MetadataImage) -> bool) {
        let mut images = self.image.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), images.wait_for(|i| ready(i))).await;
    }

    /// Registers, then heartbeats every `broker.heartbeat.interval.ms`, re-registering when the
    /// controller no longer knows this registration.
    async fn heartbeats(self: Arc<Self>, registration: Registration, epoch_tx: watch::Sender<Option<i64>>) {
        let interval = self.config.heartbeat_interval;
        let mut fenced = true;
        loop {
            let epoch = *epoch_tx.borrow();
            let result = match epoch {
                None => match self.ask_controller(Call::Register(registration.clone()), interval * 2).await {
                    Ok(Reply::Epoch(Ok(epoch))) => {
                        tracing::info!(broker = self.config.node_id, epoch, "registered with the controller");
                        let _ = epoch_tx.send(Some(epoch));
                        continue;
                    }
                    Ok(Reply::Epoch(Err(e))) => Err(e),
                    Ok(other) => Err(unexpected(&other)),
                    Err(e) => Err(e),
                },
                Some(epoch) => {
                    let hb = Heartbeat {
                        broker_id: self.config.node_id,
                        broker_epoch: epoch,
                        metadata_offset: self.image.borrow().offset,
                        want_fence: false,
                        want_shutdown: false,
                    };
                    match self.ask_controller(Call::Heartbeat(hb), interval * 2).await {
                        Ok(Reply::Heartbeat(Ok(reply))) => {
                            if reply.is_fenced != fenced {
                                fenced = reply.is_fenced;
                                tracing::info!(
                                    broker = self.config.node_id,
                                    fenced,
                                    "the controller changed this broker's state"
                                );
                            }
                            Ok(())
                        }
                        Ok(Reply::Heartbeat(Err(e))) => Err(e),
                        Ok(other) => Err(unexpected(&other)),
                        Err(e) => Err(e),
                    }
                }
            };
            if let Err(e) = result {
                if e.code == code::STALE_BROKER_EPOCH || e.code == code::BROKER_ID_NOT_REGISTERED {
                    tracing::warn!(broker = self.config.node_id, error = %e, "registering again");
                    let _ = epoch_tx.send(None);
                } else {
                    tracing::debug!(broker = self.config.node_id, error = %e, "heartbeat failed");
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Tells the controller this broker is stopping (its leadership moves away), then stops the
    /// node's tasks and its quorum node.
    pub(crate) async fn stop(&self) {
        if let Some(epoch) = *self.epoch.borrow() {
            let hb = Heartbeat {
                broker_id: self.config.node_id,
                broker_epoch: epoch,
                metadata_offset: self.image.borrow().offset,
                want_fence: false,
                want_shutdown: true,
            };
            if let Err(e) = self.ask_controller(Call::Heartbeat(hb), Duration::from_secs(3)).await {
                tracing::info!(error = %e, "the controller did not hear this broker's shutdown; its session will expire");
            }
        }
        for task in self.tasks.lock().expect("cluster tasks lock").drain(..) {
            task.abort();
        }
        if let Some(q) = &self.quorum {
            q.shutdown().await;
        }
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().expect("cluster tasks lock").drain(..) {
            task.abort();
        }
    }
}

fn unexpected(reply: &Reply) -> ControllerError {
    ControllerError::new(code::UNKNOWN_SERVER_ERROR, format!("the controller answered {reply:?}"))
}

/// Logs when this controller becomes the active one or stops being it.
async fn report_leadership(node: Arc<QuorumNode>) {
    let me = node.node_id();
    let mut metrics = node.metrics();
    let mut active = false;
    loop {
        let (leader, term) = {
            let m = metrics.borrow_and_update();
            (m.current_leader, m.current_term)
        };
        if (leader == Some(me)) != active {
            active = !active;
            match active {
                true => tracing::info!(node = me, term, "this node is now the active controller"),
                false => tracing::info!(node = me, ?leader, term, "this node is no longer the active controller"),
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// What the controller listener serves from.
#[derive(Clone)]
struct Served {
    quorum: Arc<QuorumNode>,
    controller: Arc<Controller>,
}

async fn serve_controller_listener(listener: TcpListener, node: watch::Receiver<Option<Served>>) {
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "controller listener: accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut node = node.clone();
        tokio::spawn(async move {
            let served = match node.wait_for(Option::is_some).await {
                Ok(served) => served.clone().expect("waited for it"),
                Err(_) => return,
            };
            loop {
                let call: Call = match rpc::read_frame(&mut stream).await {
                    Ok(Some(call)) => call,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "controller listener: connection closed");
                        return;
                    }
                };
                let reply = answer(&served, call).await;
                if rpc::write_frame(&mut stream, &reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn answer(served: &Served, call: Call) -> Reply {
    let ctl = &served.controller;
    let me = served.quorum.node_id();
    if !matches!(call, Call::Raft(_) | Call::Image { .. }) && served.quorum.leader() != Some(me) {
        return Reply::NotController(served.quorum.leader());
    }
    let not_active = |e: &ControllerError| e.code == code::NOT_CONTROLLER;
    match call {
        Call::Raft(request) => Reply::Raft(served.quorum.handle(request).await),
        Call::Image { known, wait_ms } => {
            let mut images = served.quorum.image();
            let waited =
                tokio::time::timeout(Duration::from_millis(wait_ms), images.wait_for(|i| i.offset > known)).await;
            match waited {
                Ok(Ok(image)) => Reply::Image(Some(Box::new((**image).clone()))),
                _ => Reply::Image(None),
            }
        }
        Call::Register(reg) => match ctl.register(reg).await {
            Err(e) if not_active(&e) => Reply::NotController(served.quorum.leader()),
            r => Reply::Epoch(r),
        },
        Call::Heartbeat(hb) => match ctl.heartbeat(hb).await {
            Err(e) if not_active(&e) => Reply::NotController(served.quorum.leader()),
            r => Reply::Heartbeat(r),
        },
        Call::CreateTopic { topic, validate_only } => match ctl.create_topic(topic, validate_only).await {
            Err(e) if not_active(&e) => Reply::NotController(served.quorum.leader()),
            r => Reply::Created(r),
        },
        Call::AllocateProducerIds { broker_id, broker_epoch } => {
            match ctl.allocate_producer_ids(broker_id, broker_epoch).await {
                Err(e) if not_active(&e) => Reply::NotController(served.quorum.leader()),
                r => Reply::ProducerIds(r),
            }
        }
        Call::DeleteTopic { name } => done(served, ctl.delete_topic(&name).await),
        Call::CreatePartitions { name, count, assignments, validate_only } => {
            done(served, ctl.create_partitions(&name, count, &assignments, validate_only).await)
        }
        Call::ElectPreferred { topic, partition } => done(served, ctl.elect_preferred(&topic, partition).await),
        Call::ElectUnclean { topic, partition } => done(served, ctl.elect_unclean(&topic, partition).await),
        Call::AlterConfigs { resource, changes } => done(served, ctl.alter_configs(resource, changes).await),
        Call::AlterAcls { add, remove } => done(served, ctl.alter_acls(add, remove).await),
        Call::AlterPartition(change) => done(served, ctl.alter_partition(change).await),
        Call::Reassign { topic, partition, target, allow_rf_change } => {
            done(served, ctl.alter_reassignment(&topic, partition, target, allow_rf_change).await)
        }
        Call::DescribeQuorum => match ctl.describe_quorum().await {
            Err(e) if not_active(&e) => Reply::NotController(served.quorum.leader()),
            result => Reply::Quorum(result),
        },
    }
}

fn done(served: &Served, result: Result<(), ControllerError>) -> Reply {
    match result {
        Err(e) if e.code == code::NOT_CONTROLLER => Reply::NotController(served.quorum.leader()),
        r => Reply::Done(r),
    }
}

/// A broker without a quorum node of its own: long-polls the controllers for the image.
async fn follow_image(
    voters: BTreeMap<i32, SocketAddr>,
    peers: Arc<Peers>,
    publish: watch::Sender<Arc<MetadataImage>>,
) {
    let addrs: Vec<SocketAddr> = voters.values().copied().collect();
    let mut next = 0usize;
    loop {
        let known = publish.borrow().offset;
        let addr = addrs[next % addrs.len()];
        match peers.call(addr, &Call::Image { known, wait_ms: 1000 }, Duration::from_secs(5)).await {
            Ok(Reply::Image(Some(mut image))) => {
                // A controller behind another could hand back an older image: keep the newest.
                if image.offset > publish.borrow().offset {
                    image.reindex();
                    publish.send_replace(Arc::new(*image));
                }
            }
            Ok(Reply::Image(None)) => {}
            _ => {
                next += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
