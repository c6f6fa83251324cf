//! The substrate: how everything above `freshet-core` reaches a log.
//!
//! [`Substrate`] is a whole log as the layers above see it: it hands out a [`Producer`], an
//! [`Admin`], [`Consumer`]s and [`TransactionalProducer`]s. Two implementations: the embedded
//! one (`Embedded`), which calls the storage engine in-process, and the remote one over the Kafka
//! protocol (`remote::Remote`, any Freshet broker or Kafka cluster). State stores' changelogs,
//! streams applications, SQL sessions and connectors all take a `Substrate`, so each runs
//! unchanged on either. The traits are shaped so both fit:
//!
//! * **Batches.** A producer call carries many records and resolves once all are acknowledged; a
//!   consumer poll returns whole record batches as stored (`Bytes`, no per-record allocation until
//!   a record is looked at).
//! * **Async with back pressure.** A send resolves only when its records are acknowledged under
//!   the log's durability policy; the embedded log also makes a sender wait when its queue of
//!   unwritten bytes is full. Callers bound their in-flight sends.
//! * **Boxed.** The traits use `async_trait` because callers choose the implementation at run time
//!   (`Box<dyn Producer>`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use freshet_coord::group::{OffsetAndMetadata, TopicPartition};
use freshet_log::batch::{Batches, Compression, Header};
use freshet_log::clock::Clock;
use freshet_log::config::ConfigEntry;
use freshet_log::{Error, Isolation, OffsetSpec, PartitionDescription, Result, TopicDescription};

/// A record to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Target topic.
    pub topic: String,
    /// Target partition; `None` lets the partitioner choose (by key hash, round robin without key).
    pub partition: Option<u32>,
    /// Key.
    pub key: Option<Bytes>,
    /// Value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Timestamp (ms); `None` means now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and optional key.
    pub fn new(topic: impl Into<String>, key: Option<impl Into<Bytes>>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            key: key.map(Into::into),
            value: Some(value.into()),
            ..Default::default()
        }
    }
}

/// Where a sent record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: i64,
    /// Timestamp as stored.
    pub timestamp: i64,
}

/// Sends records.
#[async_trait]
pub trait Producer: Send + Sync {
    /// Sends records and resolves when every one is acknowledged, with their positions in the
    /// order given. Records for the same partition keep their order.
    async fn send(&self, records: Vec<ProducerRecord>) -> Result<Vec<RecordMetadata>>;

    /// Sends keyed records (`None` value: a tombstone) to one partition, in order, all with
    /// `timestamp` and no headers, as a state store's changelog writes. Resolves once every one is
    /// acknowledged, with the offsets of the first and the last (`None` for no records).
    ///
    /// The default goes through [`Producer::send`]; a substrate that builds record batches
    /// itself (the embedded log) encodes straight from the borrowed records, with no per-record
    /// allocation.
    async fn send_to_partition(
        &self,
        tp: &TopicPartition,
        records: &[(Bytes, Option<Bytes>)],
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>> {
        let records = records
            .iter()
            .map(|(k, v)| ProducerRecord {
                topic: tp.topic.clone(),
                partition: Some(tp.partition),
                key: Some(k.clone()),
                value: v.clone(),
                headers: Vec::new(),
                timestamp: Some(timestamp),
            })
            .collect();
        let metadata = self.send(records).await?;
        Ok(metadata.first().zip(metadata.last()).map(|(first, last)| (first.offset, last.offset)))
    }
}

/// A consumer group as a transaction commits offsets for it (Kafka's `ConsumerGroupMetadata`),
/// from [`Consumer::group_metadata`]: the group and, on a cluster, the member and its generation,
/// so that a member the group has moved on from cannot commit for partitions it lost.
#[derive(Clone)]
pub struct GroupMetadata {
    /// The group.
    pub group_id: String,
    /// The client library's own form (the remote substrate's), passed through untouched.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) native: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for GroupMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMetadata").field("group_id", &self.group_id).finish_non_exhaustive()
    }
}

/// A producer whose sends belong to transactions (Kafka's transactional producer): everything
/// sent between [`TransactionalProducer::begin`] and [`TransactionalProducer::commit`], and the
/// consumer offsets added with [`TransactionalProducer::send_offsets`], becomes visible to
/// `read_committed` consumers at once, or (on abort, or if the producer dies) never.
///
/// It has a transactional id, which outlives the process: creating a producer with the same id
/// aborts whatever transaction the previous one left open and fences it, so a "zombie" can no
/// longer write ([`Error::ProducerFenced`]).
#[async_trait]
pub trait TransactionalProducer: Producer {
    /// Begins a transaction. Sends outside a transaction are refused.
    fn begin(&self) -> Result<()>;
    /// Adds consumer offsets to the transaction: `group` commits them if, and only if, the
    /// transaction commits.
    async fn send_offsets(
        &self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        group: &GroupMetadata,
    ) -> Result<()>;
    /// Commits the transaction, once every send of it was acknowledged.
    async fn commit(&self) -> Result<()>;
    /// Aborts the transaction: what it sent is never seen by `read_committed` consumers.
    async fn abort(&self) -> Result<()>;
}

/// Where a consumer starts on a partition it has no committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    /// The log start offset.
    #[default]
    Earliest,
    /// The high watermark.
    Latest,
    /// Fail: a consumer must seek explicitly.
    None,
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Group whose committed offsets are used and updated; `None` for a consumer outside a group.
    pub group_id: Option<String>,
    /// Where to start without a committed offset.
    pub auto_offset_reset: AutoOffsetReset,
    /// Largest amount of data a poll returns per partition.
    pub max_partition_fetch_bytes: u64,
    /// Largest amount of data one poll returns.
    pub fetch_max_bytes: u64,
    /// The client's name as the group sees it (Kafka's `client.id`; `freshet` when `None`):
    /// group descriptions show it beside each member.
    pub client_id: Option<String>,
    /// Whether records of open and aborted transactions are read (Kafka's `isolation.level`).
    pub isolation: Isolation,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group_id: None,
            auto_offset_reset: AutoOffsetReset::Earliest,
            max_partition_fetch_bytes: 1 << 20,
            fetch_max_bytes: 50 << 20,
            client_id: None,
            isolation: Isolation::ReadUncommitted,
        }
    }
}

/// A record read from a partition; its fields share the fetched buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Offset.
    pub offset: i64,
    /// Timestamp.
    pub timestamp: i64,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
}

/// Whole batches read from one partition, starting at or before the consumer's position.
#[derive(Debug, Clone)]
pub struct ConsumedBatches {
    /// Where they came from.
    pub tp: TopicPartition,
    /// The batches as stored.
    pub bytes: Bytes,
    /// The first offset the consumer had not seen; records below it are skipped by `records`.
    pub from_offset: i64,
    /// The partition's high watermark at the read (for lag).
    pub high_watermark: i64,
}

impl ConsumedBatches {
    /// Decodes the records at or after `from_offset`.
    pub fn records(&self) -> Result<Vec<ConsumerRecord>> {
        let mut out = Vec::new();
        self.records_into(&mut out)?;
        Ok(out)
    }

    /// Decodes the records at or after `from_offset` onto the end of `out` (a reader's buffer
    /// that keeps its capacity from poll to poll, rather than a new vector per poll). On an error,
    /// the records before the bad one are already in `out`.
    pub fn records_into(&self, out: &mut impl Extend<ConsumerRecord>) -> Result<()> {
        for batch in Batches::new(&self.bytes) {
            let batch = batch?;
            if batch.is_control() {
                continue;
            }
            // Uncompressed records share the fetched buffer; compressed ones share their batch's
            // decompressed buffer.
            let section = match batch.compression()? {
                Compression::None => self.bytes.slice_ref(batch.records_bytes()),
                _ => Bytes::from(batch.decompressed_records()?),
            };
            for record in batch.records_in(&section) {
                let record = record?;
                if record.offset < self.from_offset {
                    continue;
                }
                out.extend([ConsumerRecord {
                    offset: record.offset,
                    timestamp: record.timestamp,
                    key: record.key.map(|k| section.slice_ref(k)),
                    value: record.value.map(|v| section.slice_ref(v)),
                    headers: record.headers()?,
                }]);
            }
        }
        Ok(())
    }

    /// The offset after the last batch: the consumer's next position.
    pub fn next_offset(&self) -> i64 {
        Batches::new(&self.bytes).filter_map(|b| b.ok()).last().map_or(self.from_offset, |b| b.next_offset())
    }
}

/// A change in the partitions a group member holds, seen during a poll (what Kafka's
/// `ConsumerRebalanceListener` is told).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// The group is taking these partitions away. They stay this member's until its next poll,
    /// and no other member reads them before: the moment to commit what was processed of them.
    Revoked(Vec<TopicPartition>),
    /// A rebalance finished: the member's whole assignment now (perhaps unchanged, perhaps
    /// empty). Partitions it did not hold before start at the group's committed offsets.
    Assigned(Vec<TopicPartition>),
}

/// Reads records from assigned partitions and commits its progress.
#[async_trait]
pub trait Consumer: Send {
    /// Replaces the assignment. Each partition starts at the group's committed offset, or where
    /// `auto_offset_reset` says.
    async fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()>;
    /// Moves the position on an assigned partition.
    async fn seek(&mut self, tp: &TopicPartition, to: OffsetSpec) -> Result<()>;
    /// Moves the position on an assigned partition to an exact offset.
    fn seek_to_offset(&mut self, tp: &TopicPartition, offset: i64) -> Result<()>;
    /// The next offset to read on an assigned partition.
    fn position(&self, tp: &TopicPartition) -> Option<i64>;
    /// Waits up to `max_wait` for data on any assigned partition and returns what there is,
    /// advancing the positions past it.
    async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedBatches>>;
    /// Commits the given offsets for the consumer's group.
    async fn commit(&mut self, offsets: BTreeMap<TopicPartition, OffsetAndMetadata>) -> Result<()>;
    /// Commits the current positions of every assigned partition.
    async fn commit_positions(&mut self) -> Result<()>;
    /// The group's committed offsets for these partitions.
    async fn committed(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>>;
    /// Joins the consumer's group as a member subscribed to `topics` (replacing any assignment):
    /// the group deals their partitions over its members with the range assignor, so the
    /// partitions with the same number of co-partitioned topics go to the same member. Each
    /// partition starts at the group's committed offset, or where `auto_offset_reset` says. The
    /// assignment follows members joining and leaving; [`Consumer::assignment`] says what it is
    /// after each poll, and [`Consumer::take_group_changes`] how it changed.
    async fn subscribe(&mut self, topics: Vec<String>) -> Result<()>;
    /// The partitions this consumer reads now.
    fn assignment(&self) -> Vec<TopicPartition>;
    /// After `subscribe`: how this member's partitions changed during the last poll, oldest
    /// first (a poll forgets the changes the one before it saw). A poll that sees a revocation
    /// returns at once; the revocation completes at the start of the next poll, so between
    /// the two the member may still commit the revoked partitions' offsets.
    fn take_group_changes(&mut self) -> Vec<GroupChange>;
    /// Stops fetching these assigned partitions until [`Consumer::resume`]; polls go on (so a
    /// group member stays in its group and is told of rebalances) but return none of their
    /// records. A partition that leaves the assignment is no longer paused.
    fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()>;
    /// Fetches paused partitions again, from their positions.
    fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()>;
    /// The group as a transaction commits offsets for it (`None` outside a group).
    fn group_metadata(&self) -> Option<GroupMetadata>;
    /// Whether the last poll found `tp` read to its end: every record below the end at this
    /// consumer's isolation (the last stable offset, at `read_committed`) was handed over, though
    /// [`Consumer::position`] may stay below it when what remains is transaction markers or
    /// aborted records that a client does not hand over (the remote substrate's case). A reader
    /// that must reach an end offset taken before stops at either.
    fn reached_end(&self, _tp: &TopicPartition) -> bool {
        false
    }
}

/// The range assignor: for each topic, its partitions in order, split into contiguous runs over
/// the members subscribed to it (in member order), the first members taking one more when they
/// do not divide evenly. `members` is (member, its topics); `partitions` gives a topic's count.
pub fn range_assign<M: Ord + Clone>(
    members: &[(M, Vec<String>)],
    partitions: impl Fn(&str) -> Option<u32>,
) -> BTreeMap<M, Vec<TopicPartition>> {
    let mut out: BTreeMap<M, Vec<TopicPartition>> = members.iter().map(|(m, _)| (m.clone(), Vec::new())).collect();
    let mut topics: Vec<&String> = members.iter().flat_map(|(_, t)| t).collect();
    topics.sort();
    topics.dedup();
    for topic in topics {
        let Some(n) = partitions(topic) else { continue };
        let mut subscribed: Vec<&M> = members.iter().filter(|(_, t)| t.contains(topic)).map(|(m, _)| m).collect();
        subscribed.sort();
        let n_members = subscribed.len() as u32;
        let (per, extra) = (n / n_members, n % n_members);
        let mut next = 0;
        for (i, m) in subscribed.into_iter().enumerate() {
            let take = per + u32::from((i as u32) < extra);
            let list = out.get_mut(m).expect("every member has an entry");
            list.extend((next..next + take).map(|p| TopicPartition::new(topic.as_str(), p)));
            next += take;
        }
    }
    out
}

/// A topic to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partitions.
    pub n_partitions: u32,
    /// Config overrides, Kafka names.
    pub configs: BTreeMap<String, String>,
}

/// Where a partition is led and copied, as a cluster's metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlacement {
    /// Partition index.
    pub partition: u32,
    /// The broker leading it; `None` while it has no leader (its replicas are offline).
    pub leader: Option<i32>,
    /// The brokers holding a replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The replicas in sync with the leader.
    pub isr: Vec<i32>,
}

/// Manages topics and groups.
#[async_trait]
pub trait Admin: Send + Sync {
    /// Creates a topic.
    async fn create_topic(&self, topic: NewTopic) -> Result<()>;
    /// Deletes a topic.
    async fn delete_topic(&self, name: &str) -> Result<()>;
    /// Lists topics.
    async fn list_topics(&self) -> Result<Vec<TopicDescription>>;
    /// Describes a topic and its partitions. In a cluster, a partition without a leader has
    /// offsets of -1: no broker can tell them.
    async fn describe_topic(&self, name: &str) -> Result<(TopicDescription, Vec<PartitionDescription>)>;
    /// Where each partition of a topic is led and copied, in partition order; empty for a log
    /// that is no cluster of brokers (the embedded log).
    async fn placement(&self, name: &str) -> Result<Vec<PartitionPlacement>> {
        let _ = name;
        Ok(Vec::new())
    }
    /// Every config of a topic with its value and whether it is the default.
    async fn describe_configs(&self, name: &str) -> Result<Vec<ConfigEntry>>;
    /// Sets (`Some`) or removes (`None`) topic configs.
    async fn alter_configs(&self, name: &str, changes: BTreeMap<String, Option<String>>) -> Result<()>;
    /// Grows a topic's partition count.
    async fn create_partitions(&self, name: &str, n_partitions: u32) -> Result<()>;
    /// `(offset, timestamp)` for a partition; `None` when no record matches a timestamp.
    async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<Option<(i64, i64)>>;
    /// Deletes records before an offset; returns the new log start offset.
    async fn delete_records(&self, tp: &TopicPartition, before_offset: i64) -> Result<i64>;
    /// Groups with committed offsets.
    async fn list_groups(&self) -> Result<Vec<String>>;
    /// A group's committed offsets.
    async fn group_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>>;
    /// Deletes a group that has no members, and with it its committed offsets (Kafka's
    /// DeleteGroups): `false` when there was no such group; an error when it has members.
    async fn delete_group(&self, group: &str) -> Result<bool>;
    /// A group's live membership: its state and members with their assignments; `None` when it
    /// has no members. The embedded log knows the members in this process (those of a broker
    /// serving the log are the broker's).
    async fn group_members(&self, group: &str) -> Result<Option<GroupMembers>>;
}

/// A consumer group's live membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMembers {
    /// The group's state (`Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`, `Dead`).
    pub state: String,
    /// The assignment protocol chosen (e.g. `range`).
    pub protocol: String,
    /// The members.
    pub members: Vec<GroupMember>,
}

/// A member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's host.
    pub host: String,
    /// Partitions assigned to it (decoded from the consumer protocol's assignment).
    pub assignment: Vec<TopicPartition>,
}

/// What a member offers as it joins a group whose members agree on a protocol of their own (a
/// JoinGroup with any protocol type): Kafka Connect's workers use protocol type `connect`, and so
/// do Freshet's distributed connector workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroup {
    /// The group.
    pub group: String,
    /// The member's id: empty on its first join.
    pub member_id: String,
    /// The protocol type every member of the group shares (e.g. `connect`).
    pub protocol_type: String,
    /// The protocols it speaks, in preference order, each with its metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// How long the member may go without a heartbeat before the coordinator drops it.
    pub session_timeout: Duration,
    /// How long the coordinator waits for every member to rejoin a rebalance.
    pub rebalance_timeout: Duration,
}

/// A completed join: the generation and, for the leader, every member's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupJoined {
    /// The generation this join belongs to.
    pub generation: i32,
    /// The member's id (given by the coordinator on a first join).
    pub member_id: String,
    /// The leader's member id.
    pub leader: String,
    /// The protocol the coordinator chose.
    pub protocol: String,
    /// Every member's id and metadata for the chosen protocol; empty for all but the leader.
    pub members: Vec<(String, Bytes)>,
}

impl GroupJoined {
    /// Whether this member leads the generation (and so computes everyone's assignment).
    pub fn is_leader(&self) -> bool {
        self.leader == self.member_id
    }
}

/// A heartbeat's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The member is in the group's current, stable generation.
    Stable,
    /// A rebalance began: the member rejoins, keeping its id.
    Rebalance,
    /// The coordinator no longer knows the member in this generation (its session ran out, or
    /// a newer generation formed without it): it stops its work and joins afresh.
    Lost,
}

/// Membership of groups with a protocol of their own, as the classic group protocol gives it
/// (JoinGroup, SyncGroup, Heartbeat, LeaveGroup): the members agree on the assignment, the
/// coordinator only carries it. [`Substrate::membership`] gives one.
#[async_trait]
pub trait GroupMembership: Send + Sync + std::fmt::Debug {
    /// Joins `join.group`, answered once the rebalance's join phase completes. A first join
    /// (no member id) takes the id the coordinator gives; an id the coordinator no longer knows
    /// is dropped and the join made afresh.
    async fn join(&self, join: &JoinGroup) -> Result<GroupJoined>;

    /// Completes the rebalance: the leader gives every member's assignment (others give none);
    /// each gets its own. `None`: another rebalance began meanwhile, so the member joins again.
    async fn sync(
        &self,
        group: &str,
        joined: &GroupJoined,
        protocol_type: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Option<Bytes>>;

    /// Keeps the member's session alive and tells whether the group is still stable.
    async fn heartbeat(&self, group: &str, generation: i32, member_id: &str) -> Result<Heartbeat>;

    /// Leaves the group at once, so the others rebalance without waiting for the session to end.
    async fn leave(&self, group: &str, member_id: &str) -> Result<()>;
}

/// The error of a group coordinator's refusal of a member's `what` (join, sync), named as Kafka
/// names it, so a worker's log says what to change.
pub(crate) fn membership_refused(what: &str, group: &str, error_code: i16) -> Error {
    use freshet_coord::code;
    let name = match error_code {
        code::INVALID_SESSION_TIMEOUT => {
            return Error::InvalidConfig {
                key: "session.timeout.ms".into(),
                value: String::new(),
                reason: format!(
                    "the coordinator refused the {what} of group {group:?} (INVALID_SESSION_TIMEOUT): the session \
                     timeout is outside the broker's group.min.session.timeout.ms and group.max.session.timeout.ms \
                     (Kafka's minimum is 6000 ms)"
                ),
            }
        }
        code::INCONSISTENT_GROUP_PROTOCOL => "INCONSISTENT_GROUP_PROTOCOL: its members speak another protocol",
        code::GROUP_AUTHORIZATION_FAILED => "GROUP_AUTHORIZATION_FAILED",
        code::GROUP_MAX_SIZE_REACHED => "GROUP_MAX_SIZE_REACHED",
        code::UNKNOWN_MEMBER_ID => "UNKNOWN_MEMBER_ID",
        code::ILLEGAL_GENERATION => "ILLEGAL_GENERATION",
        code::FENCED_INSTANCE_ID => "FENCED_INSTANCE_ID",
        code::INVALID_GROUP_ID => "INVALID_GROUP_ID",
        _ => "an error",
    };
    Error::Remote(format!("the coordinator refused the {what} of group {group:?}: {name} (error code {error_code})"))
}

/// A log as the layers above see it: where producers, consumers and admin clients come from.
///
/// Implemented by `Embedded` (the log in this process) and `remote::Remote` (a Kafka-protocol
/// cluster), and by `Arc` of either, so callers hold an `Arc<dyn Substrate>` or a concrete one
/// alike. Every method may be called from any thread; none blocks.
#[async_trait]
pub trait Substrate: Send + Sync + std::fmt::Debug {
    /// Where the log is, for messages: "the embedded log in data", "the cluster at host:9092".
    fn describe(&self) -> String;

    /// A producer: the same one on every call where making one is costly (a remote client), so
    /// callers share its batching and connections.
    fn producer(&self) -> Result<Arc<dyn Producer>>;

    /// An admin client (shared as the producer is).
    fn admin(&self) -> Result<Arc<dyn Admin>>;

    /// A new consumer with `config`. Fails only on a configuration the implementation refuses.
    fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>>;

    /// A new transactional producer with `transactional_id`, whose transactions the log aborts
    /// when open longer than `timeout`. A transaction an earlier producer with this id left open
    /// is aborted, and that producer fenced.
    async fn transactional_producer(
        &self,
        transactional_id: &str,
        timeout: Duration,
    ) -> Result<Arc<dyn TransactionalProducer>>;

    /// The clock this substrate's records are stamped by: the embedded log's own clock, the
    /// system clock for a remote cluster.
    fn clock(&self) -> Arc<dyn Clock>;

    /// Membership of groups with a protocol of their own (see [`GroupMembership`]).
    fn membership(&self) -> Result<Arc<dyn GroupMembership>>;
}

#[async_trait]
impl<S: Substrate + ?Sized> Substrate for Arc<S> {
    fn describe(&self) -> String {
        (**self).describe()
    }

    fn producer(&self) -> Result<Arc<dyn Producer>> {
        (**self).producer()
    }

    fn admin(&self) -> Result<Arc<dyn Admin>> {
        (**self).admin()
    }

    fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        (**self).consumer(config)
    }

    async fn transactional_producer(
        &self,
        transactional_id: &str,
        timeout: Duration,
    ) -> Result<Arc<dyn TransactionalProducer>> {
        (**self).transactional_producer(transactional_id, timeout).await
    }

    fn clock(&self) -> Arc<dyn Clock> {
        (**self).clock()
    }

    fn membership(&self) -> Result<Arc<dyn GroupMembership>> {
        (**self).membership()
    }
}

/// The error of a consumer without a group asked to do what only a group member does.
pub(crate) fn no_group(what: &str) -> Error {
    Error::InvalidConfig {
        key: "group.id".into(),
        value: String::new(),
        reason: format!("this consumer has no group, so it cannot {what}"),
    }
}
