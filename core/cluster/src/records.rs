//! The metadata log's records, shaped like KRaft's (`metadata/src/main/resources/common/metadata`).
//!
//! The active controller turns each request into a [`MetadataBatch`] of these records; the quorum
//! commits the batch whole, and every node applies it to its [`MetadataImage`](crate::MetadataImage)
//! in log order. Records state results, never requests: a record is applied as it stands, so
//! every node that applies the same log reaches the same image.

use serde::{Deserialize, Serialize};

/// A broker id (`node.id`), as Kafka's protocol carries it.
pub type BrokerId = i32;

/// A topic id: Kafka's 128-bit topic UUID.
pub type TopicId = u128;

/// `-1`: a partition without a leader (every in-sync replica is fenced).
pub const NO_LEADER: BrokerId = -1;

/// One listener a broker advertises (`advertised.listeners`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The listener's name (`PLAINTEXT`, `INTERNAL`, ...).
    pub name: String,
    /// The host clients connect to.
    pub host: String,
    /// The port clients connect to.
    pub port: u16,
    /// The security protocol (`PLAINTEXT`, `SASL_PLAINTEXT`, ...).
    pub security_protocol: String,
}

/// A committed change to the cluster's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// `RegisterBrokerRecord`: a broker (re)joined; it starts fenced until it has caught up.
    RegisterBroker {
        /// The broker's `node.id`.
        broker_id: BrokerId,
        /// Chosen by the broker process at start: a restart is a new incarnation.
        incarnation_id: u128,
        /// The registration's epoch; requests carrying an older one are stale.
        broker_epoch: i64,
        /// Its advertised listeners.
        endpoints: Vec<Endpoint>,
        /// `broker.rack`.
        rack: Option<String>,
    },
    /// `UnregisterBrokerRecord`: the broker left the cluster for good.
    UnregisterBroker {
        /// The broker's id.
        broker_id: BrokerId,
        /// The registration it ends.
        broker_epoch: i64,
    },
    /// `FenceBrokerRecord`: the broker's session expired or it asked to be fenced.
    FenceBroker {
        /// The broker's id.
        broker_id: BrokerId,
        /// The registration fenced.
        broker_epoch: i64,
    },
    /// `UnfenceBrokerRecord`: the broker caught up with the metadata log and may lead again.
    UnfenceBroker {
        /// The broker's id.
        broker_id: BrokerId,
        /// The registration unfenced.
        broker_epoch: i64,
    },
    /// `TopicRecord`: a topic was created.
    Topic {
        /// Its name.
        name: String,
        /// Its id.
        topic_id: TopicId,
    },
    /// `PartitionRecord`: a partition was created.
    Partition(PartitionRecord),
    /// `PartitionChangeRecord`: a partition's leader, ISR or replicas changed.
    PartitionChange(PartitionChange),
    /// `RemoveTopicRecord`: a topic was deleted, with its partitions and configs.
    RemoveTopic {
        /// The deleted topic's id.
        topic_id: TopicId,
    },
    /// `ConfigRecord`: a config of a topic or broker was set (`value`) or removed (`None`).
    Config {
        /// Whose config.
        resource: ConfigResource,
        /// The config's key.
        name: String,
        /// Its new value, or `None` to fall back to the default.
        value: Option<String>,
    },
    /// `AccessControlEntryRecord`: an ACL was created.
    AccessControlEntry(AclEntry),
    /// `RemoveAccessControlEntryRecord`: an ACL was deleted.
    RemoveAccessControlEntry(AclEntry),
    /// `ProducerIdsRecord`: a block of producer ids was handed to a broker.
    ProducerIds {
        /// The broker the block went to.
        broker_id: BrokerId,
        /// Its epoch at the time.
        broker_epoch: i64,
        /// The first id after the block: the next block starts here.
        next_producer_id: i64,
    },
}

/// One ACL: a resource pattern and an access control entry, in Kafka's codes (resource type,
/// pattern type, operation and permission as the protocol numbers them). Every broker enforces
/// the image's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclEntry {
    /// `ResourceType` (2 topic, 3 group, 4 cluster, 5 transactional id, ...).
    pub resource_type: i8,
    /// The resource's name or pattern.
    pub resource_name: String,
    /// `PatternType` (3 literal, 4 prefixed).
    pub pattern_type: i8,
    /// `User:name`.
    pub principal: String,
    /// The client host, or `*`.
    pub host: String,
    /// `AclOperation`.
    pub operation: i8,
    /// `AclPermissionType` (2 deny, 3 allow).
    pub permission: i8,
}

/// What a [`MetadataRecord::Config`] applies to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    /// A topic's config (`retention.ms`, ...), by name.
    Topic(String),
    /// One broker's dynamic config, or the cluster default when `None`.
    Broker(Option<BrokerId>),
}

/// `PartitionRecord`: one partition as created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: i32,
    /// The replicas, the preferred leader first.
    pub replicas: Vec<BrokerId>,
    /// The in-sync replicas.
    pub isr: Vec<BrokerId>,
    /// The leader, or [`NO_LEADER`].
    pub leader: BrokerId,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Bumped on every change of the partition.
    pub partition_epoch: i32,
    /// Replicas being added by a reassignment (already in `replicas`).
    pub adding_replicas: Vec<BrokerId>,
    /// Replicas being removed by a reassignment (still in `replicas`).
    pub removing_replicas: Vec<BrokerId>,
}

/// `PartitionChangeRecord`: the fields that changed; `None` keeps the current value. A change of
/// leader bumps the leader epoch; every change bumps the partition epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    /// The topic's id.
    pub topic_id: TopicId,
    /// The partition's index.
    pub partition: i32,
    /// The new leader.
    pub leader: Option<BrokerId>,
    /// The new ISR.
    pub isr: Option<Vec<BrokerId>>,
    /// The new replica list.
    pub replicas: Option<Vec<BrokerId>>,
    /// The new adding replicas.
    pub adding_replicas: Option<Vec<BrokerId>>,
    /// The new removing replicas.
    pub removing_replicas: Option<Vec<BrokerId>>,
    /// Kafka's `LeaderRecoveryState`: `Some(true)` when the new leader was elected from outside
    /// the ISR (an unclean election), `Some(false)` once that is over.
    #[serde(default)]
    pub leader_recovering: Option<bool>,
}

/// The records the quorum commits as one entry: all of them or none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataBatch {
    /// The records, applied in order.
    pub records: Vec<MetadataRecord>,
}

impl MetadataBatch {
    /// A batch of `records`.
    pub fn new(records: Vec<MetadataRecord>) -> Self {
        Self { records }
    }
}
