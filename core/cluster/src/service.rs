//! The active controller: requests serialized, decided on the committed image, committed through
//! the quorum; broker sessions kept and expired.
//!
//! Every request takes the one lock, confirms this node still leads and waits for its image to
//! hold every committed entry, decides (`crate::controller`), proposes the records and answers
//! once they are applied. Two requests therefore never decide on the same image, whichever
//! controller is active. Sessions live only on the active controller, as in KRaft: a controller
//! that takes over gives every broker a full session before fencing it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use freshet_coord::code;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::controller::{self, ControllerError, NewTopic, Registration, TopicDefaults};
use crate::image::MetadataImage;
use crate::records::{AclEntry, BrokerId, ConfigResource, MetadataBatch, MetadataRecord, TopicId};
use crate::{raft, Quorum, QuorumError};

/// The active controller's settings, from the broker's properties.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// The cluster id every broker must carry.
    pub cluster_id: String,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout: Duration,
    /// `num.partitions` and `default.replication.factor`.
    pub defaults: TopicDefaults,
    /// Producer ids per block handed to a broker (Kafka hands 1000).
    pub producer_id_block: i64,
    /// `auto.leader.rebalance.enable` with `leader.imbalance.check.interval.seconds`: how often
    /// leadership goes back to preferred replicas (`None`: never by itself).
    pub leader_rebalance: Option<Duration>,
    /// How leaders are chosen when no in-sync replica is live.
    pub elections: controller::Elections,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            cluster_id: String::new(),
            session_timeout: Duration::from_millis(9000),
            defaults: TopicDefaults::default(),
            producer_id_block: 1000,
            leader_rebalance: Some(Duration::from_secs(300)),
            elections: controller::Elections::default(),
        }
    }
}

/// BrokerHeartbeat's request.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The broker.
    pub broker_id: BrokerId,
    /// Its registration's epoch.
    pub broker_epoch: i64,
    /// The metadata offset the broker has applied.
    pub metadata_offset: u64,
    /// The broker asks to be fenced.
    pub want_fence: bool,
    /// The broker is shutting down and asks to hand over its leadership.
    pub want_shutdown: bool,
}

/// BrokerHeartbeat's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The broker has applied its own registration.
    pub is_caught_up: bool,
    /// The broker is fenced: it leads nothing.
    pub is_fenced: bool,
    /// The broker may stop: it leads nothing any more.
    pub should_shutdown: bool,
}

#[derive(Debug, Default)]
struct Sessions {
    /// The term the sessions were started in.
    term: u64,
    last_seen: BTreeMap<BrokerId, Instant>,
    /// Each broker's last heartbeat: the metadata offset it had applied, and when (ms since the
    /// epoch, for DescribeQuorum's observers).
    applied: BTreeMap<BrokerId, (u64, i64)>,
}

/// How far one node has the metadata log (Kafka's DescribeQuorum `ReplicaState`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaProgress {
    /// The node.
    pub id: i32,
    /// The end of its log as far as the leader knows (-1: not known).
    pub log_end_offset: i64,
    /// When it last fetched or heartbeat (ms since the epoch; -1: not known, and for the
    /// leader).
    pub last_fetch_ms: i64,
    /// When it was last known to have the whole log (ms since the epoch; -1: not known; now for
    /// the leader).
    pub last_caught_up_ms: i64,
}

/// The metadata quorum as its leader sees it (Kafka's DescribeQuorum).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumDescription {
    /// The active controller.
    pub leader_id: i32,
    /// Its term (KRaft's leader epoch).
    pub leader_epoch: i32,
    /// The committed end of the log.
    pub high_watermark: i64,
    /// The voters.
    pub voters: Vec<ReplicaProgress>,
    /// The brokers that follow the log without voting.
    pub observers: Vec<ReplicaProgress>,
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(-1, |d| d.as_millis() as i64)
}

/// The controller on one node: active while its quorum node leads.
pub struct Controller {
    quorum: Arc<dyn Quorum>,
    config: ControllerConfig,
    sessions: Mutex<Sessions>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").field("node", &self.quorum.node_id()).field("config", &self.config).finish()
    }
}

fn refused(e: QuorumError) -> ControllerError {
    match e {
        QuorumError::NotLeader { leader } => ControllerError::new(
            code::NOT_CONTROLLER,
            match leader {
                Some(l) => format!("This node is not the active controller; controller {l} is."),
                None => "This node is not the active controller, and no controller is active yet.".to_owned(),
            },
        ),
        QuorumError::Failed(reason) => ControllerError::new(code::REQUEST_TIMED_OUT, reason),
    }
}

impl Controller {
    /// The controller over `quorum`.
    pub fn new(quorum: Arc<dyn Quorum>, config: ControllerConfig) -> Arc<Self> {
        Arc::new(Self { quorum, config, sessions: Mutex::new(Sessions::default()) })
    }

    /// The quorum under this controller.
    pub fn quorum(&self) -> &Arc<dyn Quorum> {
        &self.quorum
    }

    /// The image this node has applied.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.quorum.image().borrow().clone()
    }

    /// Decides on the committed image and commits what `decide` returns, serialized with every
    /// other request.
    async fn run<T>(
        &self,
        decide: impl FnOnce(&MetadataImage, &mut Sessions, Instant) -> Result<(Vec<MetadataRecord>, T), ControllerError>,
    ) -> Result<T, ControllerError> {
        let mut sessions = self.sessions.lock().await;
        let read = self.quorum.barrier().await.map_err(refused)?;
        let mut images = self.quorum.image();
        let image = images
            .wait_for(|i| i.offset >= read)
            .await
            .map_err(|_| ControllerError::new(code::REQUEST_TIMED_OUT, "the quorum node stopped"))?
            .clone();
        let now = Instant::now();
        let term = self.quorum.term();
        if sessions.term != term {
            // A controller taking over gives every broker a full session.
            sessions.term = term;
            sessions.last_seen = image.brokers.keys().map(|b| (*b, now)).collect();
        }
        let (records, answer) = decide(&image, &mut sessions, now)?;
        if !records.is_empty() {
            self.quorum.propose(MetadataBatch::new(records)).await.map_err(refused)?;
        }
        Ok(answer)
    }

    /// BrokerRegistration: registers a broker (fenced until it catches up) and answers its epoch.
    pub async fn register(&self, reg: Registration) -> Result<i64, ControllerError> {
        let timeout = self.config.session_timeout;
        let cluster_id = self.config.cluster_id.clone();
        let elections = self.config.elections;
        self.run(|image, sessions, now| {
            let alive = sessions.last_seen.get(&reg.broker_id).is_some_and(|t| now.duration_since(*t) < timeout);
            let (records, epoch) = controller::register_broker(image, &cluster_id, &reg, alive, &elections)?;
            sessions.last_seen.insert(reg.broker_id, now);
            Ok((records, epoch))
        })
        .await
    }

    /// BrokerHeartbeat: keeps the broker's session, unfences it once it has caught up, fences it
    /// when it asks, and hands its leadership over when it shuts down.
    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply, ControllerError> {
        self.run(|image, sessions, now| {
            controller::check_epoch(image, hb.broker_id, hb.broker_epoch)?;
            sessions.last_seen.insert(hb.broker_id, now);
            sessions.applied.insert(hb.broker_id, (hb.metadata_offset, wall_ms()));
            let broker = &image.brokers[&hb.broker_id];
            let caught_up = hb.metadata_offset >= broker.registered_at;
            let (records, fenced) = if hb.want_shutdown || hb.want_fence {
                (controller::fence_broker(image, hb.broker_id, &self.config.elections), true)
            } else if broker.fenced && caught_up {
                (controller::unfence_broker(image, hb.broker_id, &self.config.elections), false)
            } else {
                (Vec::new(), broker.fenced)
            };
            let reply =
                HeartbeatReply { is_caught_up: caught_up, is_fenced: fenced, should_shutdown: hb.want_shutdown };
            Ok((records, reply))
        })
        .await
    }

    /// Fences every broker whose session has expired, re-leading its partitions. Called
    /// periodically on every controller; does nothing where the node does not lead.
    pub async fn expire_sessions(&self) -> Result<Vec<BrokerId>, ControllerError> {
        if self.quorum.leader() != Some(self.quorum.node_id()) {
            return Ok(Vec::new());
        }
        let timeout = self.config.session_timeout;
        self.run(|image, sessions, now| {
            let mut records = Vec::new();
            let mut fenced = Vec::new();
            // Fenced in turn on the image as it will stand, so a partition whose leader and
            // next in line both expired gets a leader that is still live.
            let mut next: Option<MetadataImage> = None;
            for b in image.live_brokers() {
                let seen = *sessions.last_seen.entry(b.id).or_insert(now);
                if now.duration_since(seen) < timeout {
                    continue;
                }
                tracing::warn!(
                    broker = b.id,
                    silent_ms = now.duration_since(seen).as_millis() as u64,
                    "fencing a broker whose session expired"
                );
                let next = next.get_or_insert_with(|| image.clone());
                let fence = controller::fence_broker(next, b.id, &self.config.elections);
                next.apply(next.offset, &MetadataBatch::new(fence.clone()));
                records.extend(fence);
                fenced.push(b.id);
            }
            Ok((records, fenced))
        })
        .await
    }

    /// Runs [`Self::expire_sessions`] every quarter session until the task is dropped.
    pub async fn run_sessions(self: Arc<Self>) {
        let period = self.config.session_timeout / 4;
        loop {
            tokio::time::sleep(period).await;
            if let Err(e) = self.expire_sessions().await {
                tracing::debug!(error = %e, "session expiry skipped");
            }
        }
    }

    /// CreateTopics, one topic: answers its id, partitions and replication factor.
    pub async fn create_topic(
        &self,
        topic: NewTopic,
        validate_only: bool,
    ) -> Result<(TopicId, i32, i16), ControllerError> {
        let id = (u128::from(raft::thread_random()) << 64 | u128::from(raft::thread_random())).max(1);
        let defaults = self.config.defaults;
        self.run(|image, _, _| {
            let (records, partitions, rf) = controller::create_topic(image, &topic, defaults, id)?;
            Ok((if validate_only { Vec::new() } else { records }, (id, partitions, rf)))
        })
        .await
    }

    /// DeleteTopics, one topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ControllerError> {
        self.run(|image, _, _| Ok((controller::delete_topic(image, name)?, ()))).await
    }

    /// CreatePartitions, one topic.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: &[Vec<BrokerId>],
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        self.run(|image, _, _| {
            let records = controller::create_partitions(image, name, count, assignments)?;
            Ok((if validate_only { Vec::new() } else { records }, ()))
        })
        .await
    }

    /// ElectLeaders (UNCLEAN), one partition.
    pub async fn elect_unclean(&self, topic: &str, partition: i32) -> Result<(), ControllerError> {
        self.run(|image, _, _| Ok((vec![controller::elect_unclean(image, topic, partition)?], ()))).await
    }

    /// Gives leadership back to every preferred replica that is live and in sync; nothing
    /// where this node is not the active controller. Returns how many partitions moved.
    pub async fn rebalance_leaders(&self) -> Result<usize, ControllerError> {
        if self.quorum.leader() != Some(self.quorum.node_id()) {
            return Ok(0);
        }
        self.run(|image, _, _| {
            let records = controller::rebalance_leaders(image);
            let n = records.len();
            Ok((records, n))
        })
        .await
    }

    /// Runs [`Self::rebalance_leaders`] every `leader_rebalance` until the task is dropped.
    pub async fn run_leader_rebalance(self: Arc<Self>) {
        let Some(period) = self.config.leader_rebalance else { return };
        loop {
            tokio::time::sleep(period).await;
            match self.rebalance_leaders().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(partitions = n, "leadership given back to preferred replicas"),
                Err(e) => tracing::debug!(error = %e, "leader rebalance skipped"),
            }
        }
    }

    /// ElectLeaders (PREFERRED), one partition.
    pub async fn elect_preferred(&self, topic: &str, partition: i32) -> Result<(), ControllerError> {
        self.run(|image, _, _| Ok((vec![controller::elect_preferred(image, topic, partition)?], ()))).await
    }

    /// AlterPartition: a leader's ISR change, committed (or already in place).
    pub async fn alter_partition(&self, change: controller::IsrChange) -> Result<(), ControllerError> {
        self.run(|image, _, _| Ok((controller::alter_partition(image, &change)?, ()))).await
    }

    /// AlterPartitionReassignments, one partition: starts, replaces or (`target` `None`)
    /// cancels its reassignment.
    pub async fn alter_reassignment(
        &self,
        topic: &str,
        partition: i32,
        target: controller::ReassignmentTarget,
        allow_rf_change: bool,
    ) -> Result<(), ControllerError> {
        self.run(|image, _, _| {
            Ok((controller::alter_reassignment(image, topic, partition, &target, allow_rf_change)?, ()))
        })
        .await
    }

    /// AllocateProducerIds: the first id of a new block for the broker, and the block's size.
    pub async fn allocate_producer_ids(
        &self,
        broker_id: BrokerId,
        broker_epoch: i64,
    ) -> Result<(i64, i64), ControllerError> {
        let count = self.config.producer_id_block;
        self.run(|image, _, _| {
            let (record, start) = controller::allocate_producer_ids(image, broker_id, broker_epoch, count)?;
            Ok((vec![record], (start, count)))
        })
        .await
    }

    /// DescribeQuorum: the leader, its term, the committed offset, each voter's log end as this
    /// leader knows it, and the brokers that only follow (observers) with the offset each had
    /// applied at its last heartbeat. Answered by the active controller only.
    pub async fn describe_quorum(&self) -> Result<QuorumDescription, ControllerError> {
        let me = self.quorum.node_id();
        if self.quorum.leader() != Some(me) {
            return Err(ControllerError::new(code::NOT_CONTROLLER, format!("node {me} is not the active controller")));
        }
        let progress = self.quorum.progress();
        let applied = self.sessions.lock().await.applied.clone();
        let voters: Vec<ReplicaProgress> = progress
            .voters
            .iter()
            .map(|(id, matched)| ReplicaProgress {
                id: *id as i32,
                log_end_offset: matched.map_or(-1, |m| m as i64),
                last_fetch_ms: -1,
                last_caught_up_ms: if *id == me { wall_ms() } else { -1 },
            })
            .collect();
        let observers = self
            .image()
            .brokers
            .keys()
            .filter(|b| !progress.voters.contains_key(&(**b as raft::NodeId)))
            .map(|b| {
                let (offset, at) = applied.get(b).copied().map_or((-1, -1), |(o, at)| (o as i64, at));
                ReplicaProgress { id: *b, log_end_offset: offset, last_fetch_ms: at, last_caught_up_ms: -1 }
            })
            .collect();
        Ok(QuorumDescription {
            leader_id: me as i32,
            leader_epoch: i32::try_from(self.quorum.term()).unwrap_or(i32::MAX),
            high_watermark: progress.committed as i64,
            voters,
            observers,
        })
    }

    /// CreateAcls and DeleteAcls: creates the ACLs of `add` and deletes those of `remove` (the
    /// broker that forwards them checked them, and matched DeleteAcls' filters to its image).
    pub async fn alter_acls(&self, add: Vec<AclEntry>, remove: Vec<AclEntry>) -> Result<(), ControllerError> {
        self.run(|image, _, _| Ok((controller::alter_acls(image, &add, &remove), ()))).await
    }

    /// IncrementalAlterConfigs of one resource: sets (`Some`) or removes (`None`) each key. Keys
    /// and values are checked by the broker that forwards the request.
    pub async fn alter_configs(
        &self,
        resource: ConfigResource,
        changes: Vec<(String, Option<String>)>,
    ) -> Result<(), ControllerError> {
        self.run(|image, _, _| {
            if let ConfigResource::Topic(name) = &resource {
                if image.topic(name).is_none() {
                    return Err(ControllerError::new(
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("Topic '{name}' does not exist."),
                    ));
                }
            }
            let records = changes
                .into_iter()
                .map(|(name, value)| MetadataRecord::Config { resource: resource.clone(), name, value })
                .collect();
            Ok((records, ()))
        })
        .await
    }
}
