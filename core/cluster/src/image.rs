//! The metadata image: the cluster as the committed metadata log describes it.
//!
//! Every node applies the same committed batches in the same order to its image, so every node
//! serves the same brokers, topics, partitions, leaders, epochs and configs. An image is a value:
//! the quorum publishes a new `Arc<MetadataImage>` after each applied entry, and readers keep the
//! one they hold for as long as they need a consistent view.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::{
    AclEntry, BrokerId, ConfigResource, Endpoint, MetadataBatch, MetadataRecord, PartitionChange, PartitionRecord,
    TopicId, NO_LEADER,
};

/// A registered broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImage {
    /// `node.id`.
    pub id: BrokerId,
    /// The registered process incarnation.
    pub incarnation_id: u128,
    /// The registration's epoch.
    pub epoch: i64,
    /// The metadata offset of the registration: the broker is caught up once it has applied it.
    pub registered_at: u64,
    /// Advertised listeners.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is out of every ISR it can leave.
    pub fenced: bool,
}

/// A partition's replicas, leader and epochs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// The replicas, the preferred leader first.
    pub replicas: Vec<BrokerId>,
    /// The in-sync replicas.
    pub isr: Vec<BrokerId>,
    /// The leader, or [`NO_LEADER`].
    pub leader: BrokerId,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Bumped on every change.
    pub partition_epoch: i32,
    /// Replicas a reassignment is adding.
    pub adding_replicas: Vec<BrokerId>,
    /// Replicas a reassignment is removing.
    pub removing_replicas: Vec<BrokerId>,
    /// The leader was elected from outside the ISR (an unclean election): records only the
    /// old in-sync replicas held may be lost.
    #[serde(default)]
    pub leader_recovering: bool,
}

impl PartitionImage {
    /// The preferred leader: the first replica.
    pub fn preferred_leader(&self) -> BrokerId {
        self.replicas.first().copied().unwrap_or(NO_LEADER)
    }
}

/// A topic and its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: TopicId,
    /// Its partitions by index.
    pub partitions: BTreeMap<i32, PartitionImage>,
}

/// The cluster's metadata at one offset of the metadata log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// The index of the last applied log entry (0: nothing applied).
    pub offset: u64,
    /// A running digest of every batch applied: two nodes at the same offset with different
    /// digests applied different histories (the simulation tests check this).
    pub digest: u64,
    /// Registered brokers by id.
    pub brokers: BTreeMap<BrokerId, BrokerImage>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicImage>,
    /// Topic configs by topic name, then key.
    pub topic_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Dynamic broker configs by broker id (`""`: the cluster default), then key.
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// The highest broker epoch handed out.
    pub last_broker_epoch: i64,
    /// The ACLs every broker enforces.
    #[serde(default)]
    pub acls: std::collections::BTreeSet<AclEntry>,
    #[serde(skip)]
    names: BTreeMap<TopicId, String>,
}

impl MetadataImage {
    /// Applies one committed batch at log index `offset`.
    pub fn apply(&mut self, offset: u64, batch: &MetadataBatch) {
        for record in &batch.records {
            self.apply_record(offset, record);
        }
        self.advance(offset, &serde_json::to_vec(batch).unwrap_or_default());
    }

    /// Moves to `offset` for an entry without records (a leader's blank entry, a membership
    /// change), folding `bytes` into the digest.
    pub fn advance(&mut self, offset: u64, bytes: &[u8]) {
        self.offset = offset;
        self.digest = fold(fold(self.digest, &offset.to_le_bytes()), bytes);
    }

    fn apply_record(&mut self, offset: u64, record: &MetadataRecord) {
        match record {
            MetadataRecord::RegisterBroker { broker_id, incarnation_id, broker_epoch, endpoints, rack } => {
                self.last_broker_epoch = self.last_broker_epoch.max(*broker_epoch);
                self.brokers.insert(
                    *broker_id,
                    BrokerImage {
                        id: *broker_id,
                        incarnation_id: *incarnation_id,
                        epoch: *broker_epoch,
                        registered_at: offset,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        fenced: true,
                    },
                );
            }
            MetadataRecord::UnregisterBroker { broker_id, broker_epoch } => {
                if self.brokers.get(broker_id).is_some_and(|b| b.epoch == *broker_epoch) {
                    self.brokers.remove(broker_id);
                }
            }
            MetadataRecord::FenceBroker { broker_id, broker_epoch } => self.set_fenced(*broker_id, *broker_epoch, true),
            MetadataRecord::UnfenceBroker { broker_id, broker_epoch } => {
                self.set_fenced(*broker_id, *broker_epoch, false)
            }
            MetadataRecord::Topic { name, topic_id } => {
                self.names.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage { name: name.clone(), id: *topic_id, partitions: BTreeMap::new() },
                );
            }
            MetadataRecord::Partition(p) => self.apply_partition(p),
            MetadataRecord::PartitionChange(c) => self.apply_change(c),
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.names.remove(topic_id) {
                    self.topics.remove(&name);
                    self.topic_configs.remove(&name);
                }
            }
            MetadataRecord::Config { resource, name, value } => {
                let configs = match resource {
                    ConfigResource::Topic(topic) => self.topic_configs.entry(topic.clone()).or_default(),
                    ConfigResource::Broker(id) => {
                        self.broker_configs.entry(id.map(|id| id.to_string()).unwrap_or_default()).or_default()
                    }
                };
                match value {
                    Some(v) => configs.insert(name.clone(), v.clone()),
                    None => configs.remove(name),
                };
            }
            MetadataRecord::AccessControlEntry(acl) => {
                self.acls.insert(acl.clone());
            }
            MetadataRecord::RemoveAccessControlEntry(acl) => {
                self.acls.remove(acl);
            }
            MetadataRecord::ProducerIds { next_producer_id, .. } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id)
            }
        }
    }

    fn set_fenced(&mut self, id: BrokerId, epoch: i64, fenced: bool) {
        if let Some(b) = self.brokers.get_mut(&id).filter(|b| b.epoch == epoch) {
            b.fenced = fenced;
        }
    }

    fn apply_partition(&mut self, p: &PartitionRecord) {
        let Some(topic) = self.names.get(&p.topic_id).and_then(|n| self.topics.get_mut(n)) else { return };
        topic.partitions.insert(
            p.partition,
            PartitionImage {
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                adding_replicas: p.adding_replicas.clone(),
                removing_replicas: p.removing_replicas.clone(),
                leader_recovering: false,
            },
        );
    }

    fn apply_change(&mut self, c: &PartitionChange) {
        let Some(topic) = self.names.get(&c.topic_id).and_then(|n| self.topics.get_mut(n)) else { return };
        let Some(p) = topic.partitions.get_mut(&c.partition) else { return };
        if let Some(leader) = c.leader {
            if leader != p.leader {
                p.leader = leader;
                p.leader_epoch += 1;
                p.leader_recovering = false;
            }
        }
        if let Some(isr) = &c.isr {
            p.isr = isr.clone();
        }
        if let Some(replicas) = &c.replicas {
            p.replicas = replicas.clone();
        }
        if let Some(adding) = &c.adding_replicas {
            p.adding_replicas = adding.clone();
        }
        if let Some(removing) = &c.removing_replicas {
            p.removing_replicas = removing.clone();
        }
        if let Some(recovering) = c.leader_recovering {
            p.leader_recovering = recovering;
        }
        p.partition_epoch += 1;
    }

    /// Rebuilds the indexes a deserialized image does not carry.
    pub fn reindex(&mut self) {
        self.names = self.topics.values().map(|t| (t.id, t.name.clone())).collect();
    }

    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    /// The name of the topic with id `id`.
    pub fn topic_name(&self, id: TopicId) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// Whether broker `id` is registered and not fenced.
    pub fn is_live(&self, id: BrokerId) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// The registered, unfenced brokers, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Every partition as (topic, index, partition).
    pub fn partitions(&self) -> impl Iterator<Item = (&TopicImage, i32, &PartitionImage)> {
        self.topics.values().flat_map(|t| t.partitions.iter().map(move |(i, p)| (t, *i, p)))
    }
}

/// FNV-1a, 64 bits: the image's digest of its history (a check between nodes, never stored in
/// a format anyone else reads).
fn fold(mut hash: u64, bytes: &[u8]) -> u64 {
    if hash == 0 {
        hash = 0xcbf2_9ce4_8422_2325;
    }
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
