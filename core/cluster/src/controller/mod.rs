//! The controller's decisions: requests in, metadata records out.
//!
//! Every function here reads one [`MetadataImage`] and returns the records that carry out a
//! request, or the Kafka error that refuses it, without touching anything: the active controller
//! ([`crate::Controller`]) serializes requests, proposes the records to the quorum and answers
//! once they are committed. Keeping the decisions pure keeps them testable without a quorum, and
//! makes placement and elections the same on whichever controller is active.

use std::collections::BTreeSet;
use std::fmt;

use freshet_coord::code;
use serde::{Deserialize, Serialize};

mod reassign;

use reassign::complete_reassignment;
pub use reassign::{alter_reassignment, ReassignmentTarget};

use crate::image::{MetadataImage, PartitionImage};
use crate::records::{
    AclEntry, BrokerId, ConfigResource, Endpoint, MetadataRecord, PartitionChange, PartitionRecord, TopicId, NO_LEADER,
};

/// A refused request: Kafka's error code and a message naming what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerError {
    /// Kafka's error code (`freshet_coord::code`).
    pub code: i16,
    /// What was wrong.
    pub message: String,
}

impl ControllerError {
    /// An error with `code` and `message`.
    pub fn new(code: i16, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl fmt::Display for ControllerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (error code {})", self.message, self.code)
    }
}

impl std::error::Error for ControllerError {}

type Result<T> = std::result::Result<T, ControllerError>;

/// A CreateTopics request's topic.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NewTopic {
    /// The topic's name.
    pub name: String,
    /// Partitions, or -1 for `num.partitions`.
    pub partitions: i32,
    /// Replication factor, or -1 for `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit replica lists by partition index (then `partitions` and `replication_factor`
    /// must be -1).
    pub assignments: Vec<(i32, Vec<BrokerId>)>,
    /// Topic configs.
    pub configs: Vec<(String, String)>,
}

/// The cluster-wide defaults topic creation falls back on.
#[derive(Clone, Copy, Debug)]
pub struct TopicDefaults {
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub replication_factor: i16,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        Self { num_partitions: 1, replication_factor: 1 }
    }
}

/// Records creating `topic` with id `topic_id`, and the partitions and replication factor it got.
pub fn create_topic(
    image: &MetadataImage,
    topic: &NewTopic,
    defaults: TopicDefaults,
    topic_id: TopicId,
) -> Result<(Vec<MetadataRecord>, i32, i16)> {
    freshet_log::validate_topic_name(&topic.name)
        .map_err(|e| ControllerError::new(code::INVALID_TOPIC_EXCEPTION, e.to_string()))?;
    if image.topic(&topic.name).is_some() {
        return Err(ControllerError::new(
            code::TOPIC_ALREADY_EXISTS,
            format!("Topic '{}' already exists.", topic.name),
        ));
    }
    let assignments = if topic.assignments.is_empty() {
        let partitions = if topic.partitions == -1 { defaults.num_partitions } else { topic.partitions };
        let rf = if topic.replication_factor == -1 { defaults.replication_factor } else { topic.replication_factor };
        if partitions < 1 {
            return Err(ControllerError::new(code::INVALID_PARTITIONS, "Number of partitions must be larger than 0."));
        }
        if rf < 1 {
            return Err(ControllerError::new(
                code::INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0.",
            ));
        }
        place(image, 0, partitions, rf, topic_id)?
    } else {
        if topic.partitions != -1 || topic.replication_factor != -1 {
            return Err(ControllerError::new(
                code::INVALID_REQUEST,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        explicit(image, &topic.assignments, 0)?
    };
    let rf = assignments[0].len() as i16;
    let mut records = vec![MetadataRecord::Topic { name: topic.name.clone(), topic_id }];
    for (partition, replicas) in assignments.iter().enumerate() {
        records.push(MetadataRecord::Partition(new_partition(image, topic_id, partition as i32, replicas)?));
    }
    for (name, value) in &topic.configs {
        records.push(MetadataRecord::Config {
            resource: ConfigResource::Topic(topic.name.clone()),
            name: name.clone(),
            value: Some(value.clone()),
        });
    }
    Ok((records, assignments.len() as i32, rf))
}

/// Records deleting the topic named `name`.
pub fn delete_topic(image: &MetadataImage, name: &str) -> Result<Vec<MetadataRecord>> {
    let topic = image.topic(name).ok_or_else(|| unknown_topic(name))?;
    Ok(vec![MetadataRecord::RemoveTopic { topic_id: topic.id }])
}

/// Records growing topic `name` to `count` partitions (CreatePartitions), placing the new ones,
/// or putting them on `assignments` (one replica list per new partition).
pub fn create_partitions(
    image: &MetadataImage,
    name: &str,
    count: i32,
    assignments: &[Vec<BrokerId>],
) -> Result<Vec<MetadataRecord>> {
    let topic = image.topic(name).ok_or_else(|| unknown_topic(name))?;
    let current = topic.partitions.len() as i32;
    if count <= current {
        return Err(ControllerError::new(
            code::INVALID_PARTITIONS,
            format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
        ));
    }
    let rf = topic.partitions.values().next().map_or(1, |p| p.replicas.len()) as i16;
    let placed = if assignments.is_empty() {
        place(image, current, count - current, rf, topic.id)?
    } else {
        if assignments.len() as i32 != count - current {
            return Err(ControllerError::new(
                code::INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "Attempted to add {} additional partition(s), but only {} assignment(s) were specified.",
                    count - current,
                    assignments.len()
                ),
            ));
        }
        let numbered: Vec<_> = assignments.iter().enumerate().map(|(i, r)| (current + i as i32, r.clone())).collect();
        explicit(image, &numbered, current)?
    };
    placed
        .iter()
        .enumerate()
        .map(|(i, replicas)| {
            new_partition(image, topic.id, current + i as i32, replicas).map(MetadataRecord::Partition)
        })
        .collect()
}

fn new_partition(
    image: &MetadataImage,
    topic_id: TopicId,
    partition: i32,
    replicas: &[BrokerId],
) -> Result<PartitionRecord> {
    let isr: Vec<BrokerId> = replicas.iter().copied().filter(|b| image.is_live(*b)).collect();
    let Some(&leader) = isr.first() else {
        return Err(ControllerError::new(
            code::INVALID_REPLICA_ASSIGNMENT,
            format!("All brokers specified in the partition assignment for partition {partition} are fenced or in controlled shutdown."),
        ));
    };
    Ok(PartitionRecord {
        topic_id,
        partition,
        replicas: replicas.to_vec(),
        isr,
        leader,
        leader_epoch: 0,
        partition_epoch: 0,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    })
}

/// Checks explicit assignments (partitions numbered from `first`, in order, one size, registered
/// brokers, no repeats) and returns the replica lists in partition order.
fn explicit(image: &MetadataImage, assignments: &[(i32, Vec<BrokerId>)], first: i32) -> Result<Vec<Vec<BrokerId>>> {
    let mut sorted = assignments.to_vec();
    sorted.sort_by_key(|(p, _)| *p);
    let rf = sorted[0].1.len();
    for (i, (partition, replicas)) in sorted.iter().enumerate() {
        let bad = |message: String| Err(ControllerError::new(code::INVALID_REPLICA_ASSIGNMENT, message));
        if *partition != first + i as i32 {
            return bad(format!(
                "Partitions should be consecutive and start at {first}; partition {partition} is out of place."
            ));
        }
        if replicas.is_empty() || replicas.len() != rf {
            return bad(format!(
                "All partitions should have the same number of replicas; partition {partition} has {}.",
                replicas.len()
            ));
        }
        if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
            return bad(format!(
                "Duplicate brokers not allowed in replica assignment: {replicas:?} for partition {partition}."
            ));
        }
        if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
            return bad(format!("Partition {partition} names broker {b}, which is not registered."));
        }
    }
    Ok(sorted.into_iter().map(|(_, r)| r).collect())
}

/// Places `count` partitions numbered from `first` with `rf` replicas on the live brokers: each
/// partition's first replica (its preferred leader) goes round the brokers from a start that
/// depends on the topic, so leaders spread across brokers and topics; followers are taken at a
/// shift that grows every full round, preferring racks the partition has no replica on yet.
/// Brokers are ordered alternating between racks, as Kafka's rack-aware assignment does.
fn place(image: &MetadataImage, first: i32, count: i32, rf: i16, topic_id: TopicId) -> Result<Vec<Vec<BrokerId>>> {
    let brokers = rack_alternated(image);
    let n = brokers.len();
    if (rf as usize) > n {
        return Err(ControllerError::new(
            code::INVALID_REPLICATION_FACTOR,
            format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {n} broker(s) are registered."),
        ));
    }
    let start = (topic_id % n as u128) as usize;
    let racks_total = brokers.iter().map(|(_, r)| r).collect::<BTreeSet<_>>().len();
    let mut placed = Vec::with_capacity(count as usize);
    for p in (first as usize)..(first + count) as usize {
        let lead = (start + p) % n;
        let shift = if n > 1 { (start + p / n) % (n - 1) } else { 0 };
        let mut replicas = vec![brokers[lead].0];
        let mut racks: BTreeSet<&Option<String>> = BTreeSet::from([&brokers[lead].1]);
        while replicas.len() < rf as usize {
            let candidates =
                (0..n).map(|k| &brokers[(lead + 1 + shift + k) % n]).filter(|(b, _)| !replicas.contains(b));
            let mut candidates: Vec<_> = candidates.collect();
            if racks.len() < racks_total {
                candidates.sort_by_key(|(_, rack)| racks.contains(rack));
            }
            let (broker, rack) = candidates[0];
            replicas.push(*broker);
            racks.insert(rack);
        }
        placed.push(replicas);
    }
    Ok(placed)
}

/// Live brokers ordered rack by rack in turn (rack a's first, rack b's first, ..., rack a's
/// second, ...), so consecutive brokers sit on different racks.
fn rack_alternated(image: &MetadataImage) -> Vec<(BrokerId, Option<String>)> {
    let mut by_rack: std::collections::BTreeMap<&Option<String>, Vec<BrokerId>> = Default::default();
    for b in image.live_brokers() {
        by_rack.entry(&b.rack).or_default().push(b.id);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for i in 0..longest {
        for (rack, ids) in &by_rack {
            if let Some(id) = ids.get(i) {
                out.push((*id, (*rack).clone()));
            }
        }
    }
    out
}

/// A broker's registration request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Registration {
    /// `node.id`.
    pub broker_id: BrokerId,
    /// This process's incarnation.
    pub incarnation_id: u128,
    /// The cluster id the broker's data directory carries.
    pub cluster_id: String,
    /// Advertised listeners.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
}

/// Records registering a broker, and its new epoch. A retry of the same incarnation gets its
/// existing epoch and no records; another incarnation of a broker whose session is still alive
/// (`session_alive`) is refused, as Kafka refuses it, until that session expires.
pub fn register_broker(
    image: &MetadataImage,
    cluster_id: &str,
    reg: &Registration,
    session_alive: bool,
    elections: &Elections,
) -> Result<(Vec<MetadataRecord>, i64)> {
    if reg.cluster_id != cluster_id {
        return Err(ControllerError::new(
            code::INCONSISTENT_CLUSTER_ID,
            format!(
                "Broker {} has cluster id {}, but this cluster's id is {cluster_id}.",
                reg.broker_id, reg.cluster_id
            ),
        ));
    }
    if let Some(existing) = image.brokers.get(&reg.broker_id) {
        if existing.incarnation_id == reg.incarnation_id {
            return Ok((Vec::new(), existing.epoch));
        }
        if session_alive && !existing.fenced {
            return Err(ControllerError::new(
                code::DUPLICATE_BROKER_REGISTRATION,
                format!("Another broker is registered with id {} and its session has not expired.", reg.broker_id),
            ));
        }
    }
    let epoch = image.last_broker_epoch + 1;
    let mut records = vec![MetadataRecord::RegisterBroker {
        broker_id: reg.broker_id,
        incarnation_id: reg.incarnation_id,
        broker_epoch: epoch,
        endpoints: reg.endpoints.clone(),
        rack: reg.rack.clone(),
    }];
    // The new registration starts fenced: whatever the old one led is re-led now.
    records.extend(fence_changes(image, reg.broker_id, elections));
    Ok((records, epoch))
}

/// Checks that `epoch` is broker `id`'s current registration.
pub fn check_epoch(image: &MetadataImage, id: BrokerId, epoch: i64) -> Result<()> {
    match image.brokers.get(&id) {
        None => Err(ControllerError::new(code::BROKER_ID_NOT_REGISTERED, format!("Broker {id} is not registered."))),
        Some(b) if b.epoch != epoch => Err(ControllerError::new(
            code::STALE_BROKER_EPOCH,
            format!("Broker {id}'s epoch {epoch} is stale; the current registration has epoch {}.", b.epoch),
        )),
        Some(_) => Ok(()),
    }
}

/// Records fencing broker `id`: the fence, and a new leader (or none) for every partition it
/// led, with it out of every ISR it is not the last member of.
pub fn fence_broker(image: &MetadataImage, id: BrokerId, elections: &Elections) -> Vec<MetadataRecord> {
    let Some(b) = image.brokers.get(&id).filter(|b| !b.fenced) else { return Vec::new() };
    let mut records = vec![MetadataRecord::FenceBroker { broker_id: id, broker_epoch: b.epoch }];
    records.extend(fence_changes(image, id, elections));
    records
}

/// How leaders are chosen when no in-sync replica is live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Elections {
    /// `unclean.leader.election.enable` in the controller's own config: the default of topics
    /// that do not set it, unless the cluster's dynamic default does.
    pub unclean_default: bool,
}

fn fence_changes(image: &MetadataImage, id: BrokerId, elections: &Elections) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for (topic, partition, p) in image.partitions() {
        if !p.isr.contains(&id) && p.leader != id {
            continue;
        }
        let mut isr: Vec<BrokerId> =
            if p.isr.len() > 1 { p.isr.iter().copied().filter(|b| *b != id).collect() } else { p.isr.clone() };
        let mut recovering = None;
        let leader = if p.leader == id || p.leader == NO_LEADER {
            let clean = p.replicas.iter().copied().find(|b| *b != id && isr.contains(b) && image.is_live(*b));
            match clean {
                Some(leader) => leader,
                None => match unclean_candidate(image, &topic.name, p, id, elections) {
                    Some(leader) => {
                        isr = vec![leader];
                        recovering = Some(true);
                        leader
                    }
                    None => NO_LEADER,
                },
            }
        } else {
            p.leader
        };
        let change = PartitionChange {
            topic_id: topic.id,
            partition,
            leader: (leader != p.leader).then_some(leader),
            isr: (isr != p.isr).then_some(isr),
            leader_recovering: recovering,
            ..Default::default()
        };
        if change.leader.is_some() || change.isr.is_some() {
            records.push(MetadataRecord::PartitionChange(change));
        }
    }
    records
}

/// Whether `topic` may elect a leader from outside its ISR: its `unclean.leader.election.enable`,
/// or the cluster's default (a dynamic broker config of the cluster).
fn unclean_allowed(image: &MetadataImage, topic: &str, elections: &Elections) -> bool {
    const KEY: &str = "unclean.leader.election.enable";
    let set = image.topic_configs.get(topic).and_then(|c| c.get(KEY));
    let default = image.broker_configs.get("").and_then(|c| c.get(KEY));
    set.or(default).map_or(elections.unclean_default, |v| v.eq_ignore_ascii_case("true"))
}

/// The live replica (not `excluded`) an unclean election would make leader, if the topic
/// allows one.
fn unclean_candidate(
    image: &MetadataImage,
    topic: &str,
    p: &PartitionImage,
    excluded: BrokerId,
    elections: &Elections,
) -> Option<BrokerId> {
    if !unclean_allowed(image, topic, elections) {
        return None;
    }
    p.replicas.iter().copied().find(|b| *b != excluded && image.is_live(*b))
}

/// The record of an unclean election of `topic`-`partition` (ElectLeaders, UNCLEAN): a live
/// replica leads with only itself in sync, whatever the topic's setting, since an operator asked
/// for it; refused while a leader leads (ELECTION_NOT_NEEDED) or when no replica is live.
pub fn elect_unclean(image: &MetadataImage, topic: &str, partition: i32) -> Result<MetadataRecord> {
    let t = image.topic(topic).ok_or_else(|| unknown_topic(topic))?;
    let p: &PartitionImage = t.partitions.get(&partition).ok_or_else(|| unknown_partition(topic, partition))?;
    if p.leader != NO_LEADER {
        return Err(ControllerError::new(
            code::ELECTION_NOT_NEEDED,
            format!("Leader election not needed for topic partition {topic}-{partition}."),
        ));
    }
    let Some(leader) = p.replicas.iter().copied().find(|b| image.is_live(*b)) else {
        return Err(ControllerError::new(
            code::ELIGIBLE_LEADERS_NOT_AVAILABLE,
            format!("No replica of {topic}-{partition} is live: none can be elected."),
        ));
    };
    let clean = p.isr.contains(&leader);
    Ok(MetadataRecord::PartitionChange(PartitionChange {
        topic_id: t.id,
        partition,
        leader: Some(leader),
        isr: (!clean).then(|| vec![leader]),
        leader_recovering: (!clean).then_some(true),
        ..Default::default()
    }))
}

/// Records giving leadership back to preferred replicas (Kafka's `auto.leader.rebalance.enable`):
/// every partition whose first replica is live, in sync and not leading.
pub fn rebalance_leaders(image: &MetadataImage) -> Vec<MetadataRecord> {
    image
        .partitions()
        .filter(|(_, _, p)| {
            let preferred = p.preferred_leader();
            p.leader != preferred && p.isr.contains(&preferred) && image.is_live(preferred)
        })
        .map(|(t, partition, p)| {
            MetadataRecord::PartitionChange(PartitionChange {
                topic_id: t.id,
                partition,
                leader: Some(p.preferred_leader()),
                ..Default::default()
            })
        })
        .collect()
}

/// Records unfencing broker `id` (it has caught up with the metadata log): the unfence, and it
/// as leader of every leaderless partition whose ISR holds it.
pub fn unfence_broker(image: &MetadataImage, id: BrokerId, elections: &Elections) -> Vec<MetadataRecord> {
    let Some(b) = image.brokers.get(&id).filter(|b| b.fenced) else { return Vec::new() };
    let mut records = vec![MetadataRecord::UnfenceBroker { broker_id: id, broker_epoch: b.epoch }];
    for (topic, partition, p) in image.partitions() {
        if p.leader == NO_LEADER && p.isr.contains(&id) {
            records.push(MetadataRecord::PartitionChange(PartitionChange {
                topic_id: topic.id,
                partition,
                leader: Some(id),
                ..Default::default()
            }));
        } else if p.leader == NO_LEADER && p.replicas.contains(&id) && unclean_allowed(image, &topic.name, elections) {
            // No in-sync replica is coming back, and the topic would rather lose records than
            // stay offline.
            records.push(MetadataRecord::PartitionChange(PartitionChange {
                topic_id: topic.id,
                partition,
                leader: Some(id),
                isr: Some(vec![id]),
                leader_recovering: Some(true),
                ..Default::default()
            }));
        }
    }
    records
}

/// The record electing a partition's preferred leader (ElectLeaders, PREFERRED), or the error
/// Kafka gives: the preferred leader already leads, or it is not live and in sync.
pub fn elect_preferred(image: &MetadataImage, topic: &str, partition: i32) -> Result<MetadataRecord> {
    let t = image.topic(topic).ok_or_else(|| unknown_topic(topic))?;
    let p: &PartitionImage = t.partitions.get(&partition).ok_or_else(|| unknown_partition(topic, partition))?;
    let preferred = p.preferred_leader();
    if p.leader == preferred {
        return Err(ControllerError::new(
            code::ELECTION_NOT_NEEDED,
            format!("Leader election not needed for topic partition {topic}-{partition}."),
        ));
    }
    if !p.isr.contains(&preferred) || !image.is_live(preferred) {
        return Err(ControllerError::new(
            code::PREFERRED_LEADER_NOT_AVAILABLE,
            format!("Failed to elect leader for partition {topic}-{partition} under strategy PreferredReplicaPartitionLeaderElectionStrategy: broker {preferred} is not live and in sync."),
        ));
    }
    Ok(MetadataRecord::PartitionChange(PartitionChange {
        topic_id: t.id,
        partition,
        leader: Some(preferred),
        ..Default::default()
    }))
}

/// A leader's proposed ISR (AlterPartition).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrChange {
    /// The leader proposing it.
    pub broker_id: BrokerId,
    /// Its registration.
    pub broker_epoch: i64,
    /// The partition's topic.
    pub topic_id: TopicId,
    /// The partition.
    pub partition: i32,
    /// The leader epoch the leader holds.
    pub leader_epoch: i32,
    /// The partition epoch the proposal starts from.
    pub partition_epoch: i32,
    /// The ISR proposed.
    pub new_isr: Vec<BrokerId>,
}

/// The records carrying out a leader's ISR change (AlterPartition), none when the ISR already
/// is the one proposed (and the completion of a reassignment the change allows), or Kafka's
/// refusal: a stale registration or leader epoch, a partition epoch
/// that moved on since the leader read it, or a replica that may not join (not a replica of the
/// partition, or fenced). The leader stays in its ISR.
pub fn alter_partition(image: &MetadataImage, change: &IsrChange) -> Result<Vec<MetadataRecord>> {
    check_epoch(image, change.broker_id, change.broker_epoch)?;
    let name = image.topic_name(change.topic_id).ok_or_else(|| {
        ControllerError::new(code::UNKNOWN_TOPIC_ID, format!("No topic has id {:032x}.", change.topic_id))
    })?;
    let p = image
        .topic(name)
        .and_then(|t| t.partitions.get(&change.partition))
        .ok_or_else(|| unknown_partition(name, change.partition))?;
    let at = format!("{name}-{}", change.partition);
    if p.leader != change.broker_id {
        return Err(ControllerError::new(
            code::NOT_LEADER_OR_FOLLOWER,
            format!("Broker {} does not lead {at}; broker {} does.", change.broker_id, p.leader),
        ));
    }
    if change.leader_epoch != p.leader_epoch {
        return Err(ControllerError::new(
            code::FENCED_LEADER_EPOCH,
            format!("Leader epoch {} of {at} is not the current one, {}.", change.leader_epoch, p.leader_epoch),
        ));
    }
    if change.partition_epoch != p.partition_epoch {
        return Err(ControllerError::new(
            code::INVALID_UPDATE_VERSION,
            format!(
                "Partition epoch {} of {at} is not the current one, {}.",
                change.partition_epoch, p.partition_epoch
            ),
        ));
    }
    if !change.new_isr.contains(&change.broker_id) {
        return Err(ControllerError::new(
            code::INVALID_REQUEST,
            format!("The ISR proposed for {at}, {:?}, leaves out its leader {}.", change.new_isr, change.broker_id),
        ));
    }
    for b in &change.new_isr {
        let eligible = p.replicas.contains(b) && (p.isr.contains(b) || image.is_live(*b));
        if !eligible {
            return Err(ControllerError::new(
                code::INELIGIBLE_REPLICA,
                format!("Broker {b} may not join the ISR of {at}: it is not a replica of it, or it is fenced."),
            ));
        }
    }
    let mut isr: Vec<BrokerId> = Vec::with_capacity(change.new_isr.len());
    for b in &change.new_isr {
        if !isr.contains(b) {
            isr.push(*b);
        }
    }
    let same = isr.len() == p.isr.len() && isr.iter().all(|b| p.isr.contains(b));
    if same {
        return Ok(Vec::new());
    }
    // A leader elected uncleanly that brings followers back in sync has made its log theirs.
    let mut records = vec![MetadataRecord::PartitionChange(PartitionChange {
        topic_id: change.topic_id,
        partition: change.partition,
        isr: Some(isr.clone()),
        leader_recovering: p.leader_recovering.then_some(false),
        ..Default::default()
    })];
    // The replicas a reassignment adds joined the ISR: the move completes.
    let after = PartitionImage { isr, ..p.clone() };
    records.extend(complete_reassignment(image, change.topic_id, change.partition, &after));
    Ok(records)
}

/// The record handing broker `id` (at `epoch`) the next `count` producer ids, and the first.
pub fn allocate_producer_ids(
    image: &MetadataImage,
    id: BrokerId,
    epoch: i64,
    count: i64,
) -> Result<(MetadataRecord, i64)> {
    check_epoch(image, id, epoch)?;
    let start = image.next_producer_id;
    Ok((MetadataRecord::ProducerIds { broker_id: id, broker_epoch: epoch, next_producer_id: start + count }, start))
}

/// Records creating the ACLs of `add` not in the image and deleting those of `remove` that are.
pub fn alter_acls(image: &MetadataImage, add: &[AclEntry], remove: &[AclEntry]) -> Vec<MetadataRecord> {
    let mut records: Vec<MetadataRecord> = Vec::new();
    let mut added = std::collections::BTreeSet::new();
    for acl in add.iter().filter(|a| !image.acls.contains(a)) {
        if added.insert(acl) {
            records.push(MetadataRecord::AccessControlEntry(acl.clone()));
        }
    }
    let mut removed = std::collections::BTreeSet::new();
    for acl in remove.iter().filter(|a| image.acls.contains(a)) {
        if removed.insert(acl) {
            records.push(MetadataRecord::RemoveAccessControlEntry(acl.clone()));
        }
    }
    records
}

fn unknown_topic(name: &str) -> ControllerError {
    ControllerError::new(code::UNKNOWN_TOPIC_OR_PARTITION, format!("This server does not host topic '{name}'."))
}

fn unknown_partition(topic: &str, partition: i32) -> ControllerError {
    ControllerError::new(code::UNKNOWN_TOPIC_OR_PARTITION, format!("Topic '{topic}' has no partition {partition}."))
}
