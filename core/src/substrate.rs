//! The substrate: how everything above `freshet-core` reaches a log.
//!
//! Three traits, [`Producer`], [`Consumer`] and [`Admin`], with two implementations planned: the
//! embedded one here, which calls the storage engine in-process, and a remote one over the Kafka
//! protocol. The traits are shaped so both fit:
//!
//! * **Batches.** A producer call carries many records and resolves once all are acknowledged; a
//!   consumer poll returns whole record batches as stored (`Bytes`, no per-record allocation until
//!   a record is looked at).
//! * **Async with back pressure.** A send resolves only when its records are acknowledged under
//!   the log's durability policy; the embedded log also makes a sender wait when its queue of
//!   unwritten bytes is full. Callers bound their in-flight sends.
//! * **Boxed.** The traits use `async_trait` because callers choose the implementation at run time
//!   (`Box<dyn Producer>`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::batch::{BatchBuilder, Batches, Compression, Header};
use crate::config::ConfigEntry;
use crate::error::{Error, Result};
pub use crate::group::{GroupOffsets, OffsetAndMetadata, TopicPartition};
use crate::log::{AbortedFilter, Isolation, Log, OffsetSpec, PartitionDescription, TopicDescription};
use crate::partitioner::partition_for_key;
use crate::transactions::Transactions;

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

/// Manages topics and groups.
#[async_trait]
pub trait Admin: Send + Sync {
    /// Creates a topic.
    async fn create_topic(&self, topic: NewTopic) -> Result<()>;
    /// Deletes a topic.
    async fn delete_topic(&self, name: &str) -> Result<()>;
    /// Lists topics.
    async fn list_topics(&self) -> Result<Vec<TopicDescription>>;
    /// Describes a topic and its partitions.
    async fn describe_topic(&self, name: &str) -> Result<(TopicDescription, Vec<PartitionDescription>)>;
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

/// The embedded substrate: the storage engine in this process.
#[derive(Debug, Clone)]
pub struct Embedded {
    log: Log,
    groups: GroupOffsets,
    members: Arc<LocalMembers>,
    transactions: Transactions,
}

/// The live members of consumer groups whose consumers are in this process (an embedded log is
/// used from one process): each subscribe or leave starts a new generation. A member takes its
/// range assignment when it next polls: first it gives up the partitions it loses (reporting
/// them revoked, completing at its following poll), then it takes the new ones once their
/// previous owners have given them up, so a partition never has two owners.
#[derive(Debug)]
struct LocalMembers {
    groups: Mutex<HashMap<String, LocalGroup>>,
    next_member: AtomicU64,
    /// Bumped at every change of membership or ownership, so waiting members look again.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for LocalMembers {
    fn default() -> Self {
        LocalMembers {
            groups: Mutex::default(),
            next_member: AtomicU64::new(0),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }
}

#[derive(Debug, Default)]
struct LocalGroup {
    generation: u64,
    /// Member id -> its topics and client id.
    members: BTreeMap<u64, (Vec<String>, String)>,
    /// Which member holds each partition.
    owners: HashMap<TopicPartition, u64>,
}

impl LocalMembers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LocalGroup>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn join(&self, group: &str, member: u64, topics: Vec<String>, client_id: String) {
        {
            let mut groups = self.lock();
            let g = groups.entry(group.to_string()).or_default();
            g.members.insert(member, (topics, client_id));
            g.generation += 1;
        }
        self.notify();
    }

    /// Removes `member`, freeing its partitions.
    fn leave(&self, group: &str, member: u64) {
        {
            let mut groups = self.lock();
            if let Some(g) = groups.get_mut(group) {
                if g.members.remove(&member).is_some() {
                    g.generation += 1;
                }
                g.owners.retain(|_, m| *m != member);
                if g.members.is_empty() {
                    groups.remove(group);
                }
            }
        }
        self.notify();
    }

    fn generation(&self, group: &str) -> u64 {
        self.lock().get(group).map_or(0, |g| g.generation)
    }

    /// The generation and every member's assignment.
    fn assignments(&self, group: &str, log: &Log) -> (u64, BTreeMap<u64, Vec<TopicPartition>>) {
        let groups = self.lock();
        let Some(g) = groups.get(group) else { return (0, BTreeMap::new()) };
        let members: Vec<(u64, Vec<String>)> = g.members.iter().map(|(m, (t, _))| (*m, t.clone())).collect();
        (g.generation, range_assign(&members, |t| log.describe_topic(t).ok().map(|d| d.n_partitions)))
    }

    /// Gives up `partitions` held by `member`.
    fn release(&self, group: &str, member: u64, partitions: &[TopicPartition]) {
        {
            let mut groups = self.lock();
            if let Some(g) = groups.get_mut(group) {
                for tp in partitions {
                    if g.owners.get(tp) == Some(&member) {
                        g.owners.remove(tp);
                    }
                }
            }
        }
        self.notify();
    }

    /// Takes every one of `partitions` for `member` if none is held by another member and the
    /// group is still at `generation`; takes nothing otherwise.
    fn try_take(&self, group: &str, member: u64, generation: u64, partitions: &[TopicPartition]) -> bool {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else { return false };
        if g.generation != generation || partitions.iter().any(|tp| g.owners.get(tp).is_some_and(|m| *m != member)) {
            return false;
        }
        for tp in partitions {
            g.owners.insert(tp.clone(), member);
        }
        true
    }

    fn client_id(&self, group: &str, member: u64) -> String {
        self.lock().get(group).and_then(|g| g.members.get(&member)).map_or_else(String::new, |(_, c)| c.clone())
    }
}

impl Embedded {
    /// Opens the log in `dir` with `config`, and the group offset store on it.
    pub async fn open(dir: impl Into<std::path::PathBuf>, config: crate::config::LogConfig) -> Result<Self> {
        let n_offsets_partitions = config.offsets_topic_partitions;
        let log = Log::open(dir, config).await?;
        let groups = GroupOffsets::open(log.clone(), n_offsets_partitions).await?;
        // Transactions a previous run decided are completed before anyone reads.
        let transactions = Transactions::new(log.clone(), groups.clone());
        transactions.load().await?;
        transactions.start_expiry(Duration::from_secs(1));
        Ok(Embedded { log, groups, members: Arc::default(), transactions })
    }

    /// The transaction coordinator.
    pub fn transactions(&self) -> &Transactions {
        &self.transactions
    }

    /// A transactional producer with `transactional_id`, its transactions aborted when open
    /// longer than `timeout`. A transaction an earlier producer with this id left open is aborted,
    /// and that producer fenced.
    pub async fn transactional_producer(&self, transactional_id: &str, timeout: Duration) -> Result<EmbeddedProducer> {
        let (producer_id, epoch) = self.transactions.init_producer_id(transactional_id, timeout).await?;
        let txn = EmbeddedTxn {
            transactions: self.transactions.clone(),
            id: transactional_id.to_owned(),
            producer_id,
            epoch,
            local: Mutex::default(),
        };
        Ok(EmbeddedProducer { txn: Some(Arc::new(txn)), ..self.producer() })
    }

    /// The committed offsets of consumer groups.
    pub fn group_offsets(&self) -> &GroupOffsets {
        &self.groups
    }

    /// The underlying log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// A producer.
    pub fn producer(&self) -> EmbeddedProducer {
        EmbeddedProducer { log: self.log.clone(), round_robin: AtomicU32::new(0), txn: None }
    }

    /// A consumer.
    pub fn consumer(&self, config: ConsumerConfig) -> EmbeddedConsumer {
        EmbeddedConsumer {
            log: self.log.clone(),
            groups: self.groups.clone(),
            config,
            positions: BTreeMap::new(),
            members: self.members.clone(),
            membership: None,
            changes: Vec::new(),
            paused: Default::default(),
        }
    }

    /// The admin interface.
    pub fn admin(&self) -> EmbeddedAdmin {
        EmbeddedAdmin { log: self.log.clone(), groups: self.groups.clone(), members: self.members.clone() }
    }

    /// Closes the log cleanly.
    pub async fn close(&self) -> Result<()> {
        self.log.close().await
    }
}

/// The embedded [`Producer`], and [`TransactionalProducer`] when made by
/// [`Embedded::transactional_producer`].
#[derive(Debug)]
pub struct EmbeddedProducer {
    log: Log,
    round_robin: AtomicU32,
    txn: Option<Arc<EmbeddedTxn>>,
}

/// A transactional producer's identity and its open transaction.
#[derive(Debug)]
struct EmbeddedTxn {
    transactions: Transactions,
    id: String,
    producer_id: i64,
    epoch: i16,
    local: Mutex<TxnLocal>,
}

#[derive(Debug, Default)]
struct TxnLocal {
    open: bool,
    /// Whether the coordinator knows of the open transaction (a partition or offsets were added):
    /// a transaction with nothing in it ends without it.
    enlisted: bool,
    /// Partitions added to the open transaction.
    partitions: std::collections::HashSet<TopicPartition>,
    /// The next sequence number per partition.
    sequences: HashMap<TopicPartition, i32>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl EmbeddedProducer {
    /// Appends `batches` to one partition, in order; returns where each landed.
    async fn append_in_order(
        &self,
        topic: &str,
        partition: u32,
        batches: Vec<Bytes>,
    ) -> Result<Vec<crate::log::AppendInfo>> {
        // `join_all` polls the appends first in order, and the log queues appends in the order
        // they are first polled, so the batches land in order.
        let appends = batches.into_iter().map(|batch| self.log.append(topic, partition, bytes::BytesMut::from(batch)));
        futures::future::join_all(appends).await.into_iter().collect()
    }

    fn n_partitions(&self, topic: &str) -> Result<u32> {
        Ok(self.log.describe_topic(topic)?.n_partitions)
    }

    /// A batch builder for `n` records to one partition: a transactional producer's carry its
    /// producer id, epoch and the partition's next sequence.
    fn builder(&self, topic: &str, partition: u32, n: usize, capacity: usize) -> BatchBuilder {
        let builder = BatchBuilder::with_capacity(capacity);
        let Some(txn) = &self.txn else { return builder };
        let mut local = txn.local.lock().expect("transaction lock");
        let next = local.sequences.entry(TopicPartition::new(topic, partition)).or_insert(0);
        let sequence = *next;
        *next = next.wrapping_add(n as i32).max(0);
        builder.producer(txn.producer_id, txn.epoch, sequence).transactional()
    }

    /// For a transactional producer: checks a transaction is open and adds the partitions it has
    /// not written yet to it.
    async fn enlist(&self, partitions: impl Iterator<Item = (&str, u32)>) -> Result<()> {
        let Some(txn) = &self.txn else { return Ok(()) };
        let new: Vec<TopicPartition> = {
            let local = txn.local.lock().expect("transaction lock");
            if !local.open {
                return Err(Error::Transaction(format!(
                    "transactional id {:?}: a send outside a transaction (begin one first)",
                    txn.id
                )));
            }
            partitions.map(|(t, p)| TopicPartition::new(t, p)).filter(|tp| !local.partitions.contains(tp)).collect()
        };
        if new.is_empty() {
            return Ok(());
        }
        txn.transactions.add_partitions(&txn.id, txn.producer_id, txn.epoch, &new).await?;
        let mut local = txn.local.lock().expect("transaction lock");
        local.partitions.extend(new);
        local.enlisted = true;
        Ok(())
    }

    fn txn(&self) -> Result<&Arc<EmbeddedTxn>> {
        self.txn.as_ref().ok_or_else(|| Error::Transaction("this producer has no transactional id".into()))
    }

    /// Ends the open transaction.
    async fn end(&self, commit: bool) -> Result<()> {
        let txn = self.txn()?;
        let enlisted = {
            let local = txn.local.lock().expect("transaction lock");
            if !local.open {
                return Err(Error::Transaction(format!("transactional id {:?} has no open transaction", txn.id)));
            }
            local.enlisted
        };
        let ended =
            if enlisted { txn.transactions.end(&txn.id, txn.producer_id, txn.epoch, commit).await } else { Ok(()) };
        let mut local = txn.local.lock().expect("transaction lock");
        local.open = false;
        local.enlisted = false;
        local.partitions.clear();
        Ok(ended?)
    }
}

#[async_trait]
impl TransactionalProducer for EmbeddedProducer {
    fn begin(&self) -> Result<()> {
        let txn = self.txn()?;
        let mut local = txn.local.lock().expect("transaction lock");
        if local.open {
            return Err(Error::Transaction(format!("transactional id {:?} already has a transaction open", txn.id)));
        }
        local.open = true;
        Ok(())
    }

    async fn send_offsets(
        &self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        group: &GroupMetadata,
    ) -> Result<()> {
        let txn = self.txn()?;
        if !txn.local.lock().expect("transaction lock").open {
            return Err(Error::Transaction(format!("transactional id {:?} has no open transaction", txn.id)));
        }
        let t = &txn.transactions;
        t.add_offsets(&txn.id, txn.producer_id, txn.epoch, &group.group_id).await?;
        t.commit_offsets(&txn.id, txn.producer_id, txn.epoch, &group.group_id, &offsets).await?;
        txn.local.lock().expect("transaction lock").enlisted = true;
        Ok(())
    }

    async fn commit(&self) -> Result<()> {
        self.end(true).await
    }

    async fn abort(&self) -> Result<()> {
        self.end(false).await
    }
}

/// Splits records of estimated `sizes` (in order) into runs of at most [`BATCH_BYTES`] (a larger
/// record is a run of its own): the record ranges of the batches to build.
fn batch_runs(sizes: impl Iterator<Item = usize>) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut end, mut n_bytes) = (0, 0, 0);
    for size in sizes {
        if end > start && n_bytes + size > BATCH_BYTES {
            runs.push(start..end);
            (start, n_bytes) = (end, 0);
        }
        n_bytes += size;
        end += 1;
    }
    if end > start {
        runs.push(start..end);
    }
    runs
}

#[async_trait]
impl Producer for EmbeddedProducer {
    async fn send(&self, records: Vec<ProducerRecord>) -> Result<Vec<RecordMetadata>> {
        // One batch per partition, records in the order given; batches go out concurrently.
        // Keys borrow the records' topic names: no allocation per record.
        let mut by_partition: BTreeMap<(&str, u32), Vec<usize>> = BTreeMap::new();
        let mut n_partitions: HashMap<&str, u32> = HashMap::new();
        for (i, record) in records.iter().enumerate() {
            let n = match n_partitions.get(record.topic.as_str()) {
                Some(n) => *n,
                None => {
                    let n = self.n_partitions(&record.topic)?;
                    n_partitions.insert(&record.topic, n);
                    n
                }
            };
            let partition = match (record.partition, &record.key) {
                (Some(p), _) if p < n => p,
                (Some(p), _) => {
                    return Err(Error::UnknownPartition { topic: record.topic.clone(), n_partitions: n, partition: p })
                }
                (None, Some(key)) => partition_for_key(key, n),
                (None, None) => self.round_robin.fetch_add(1, Ordering::Relaxed) % n,
            };
            by_partition.entry((&record.topic, partition)).or_default().push(i);
        }
        self.enlist(by_partition.keys().copied()).await?;
        let now = now_ms();
        let mut sends = Vec::new();
        for ((topic, partition), indexes) in by_partition {
            // Batches of at most about BATCH_BYTES, so a large send stays under max.message.bytes.
            let runs = batch_runs(indexes.iter().map(|&i| estimate(&records[i])));
            let batches = runs
                .iter()
                .map(|run| {
                    let mut builder = self.builder(topic, partition, run.len(), run.len() * 64);
                    for &i in &indexes[run.clone()] {
                        let r = &records[i];
                        builder.push(r.key.as_deref(), r.value.as_deref(), &r.headers, r.timestamp.unwrap_or(now));
                    }
                    builder.finish()
                })
                .collect();
            sends.push(async move {
                let infos = self.append_in_order(topic, partition, batches).await?;
                Ok::<_, Error>((topic, partition, indexes, runs, infos))
            });
        }
        let mut out: Vec<Option<RecordMetadata>> = vec![None; records.len()];
        for result in futures::future::join_all(sends).await {
            let (topic, partition, indexes, runs, infos) = result?;
            for (run, info) in runs.into_iter().zip(infos) {
                for (k, &i) in indexes[run].iter().enumerate() {
                    out[i] = Some(RecordMetadata {
                        topic: topic.to_string(),
                        partition,
                        offset: info.base_offset + k as i64,
                        timestamp: info.log_append_time.unwrap_or(records[i].timestamp.unwrap_or(now)),
                    });
                }
            }
        }
        Ok(out.into_iter().map(|m| m.expect("every record was sent")).collect())
    }

    async fn send_to_partition(
        &self,
        tp: &TopicPartition,
        records: &[(Bytes, Option<Bytes>)],
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>> {
        let n = self.n_partitions(&tp.topic)?;
        if tp.partition >= n {
            return Err(Error::UnknownPartition { topic: tp.topic.clone(), n_partitions: n, partition: tp.partition });
        }
        if records.is_empty() {
            return Ok(None);
        }
        self.enlist(std::iter::once((tp.topic.as_str(), tp.partition))).await?;
        let size = |(k, v): &(Bytes, Option<Bytes>)| k.len() + v.as_ref().map_or(0, Bytes::len) + RECORD_FRAMING_BYTES;
        let runs = batch_runs(records.iter().map(size));
        let batches = runs
            .iter()
            .map(|run| {
                let n_bytes = records[run.clone()].iter().map(size).sum();
                let mut builder = self.builder(&tp.topic, tp.partition, run.len(), n_bytes);
                for (k, v) in &records[run.clone()] {
                    builder.push(Some(k), v.as_deref(), &[], timestamp);
                }
                builder.finish()
            })
            .collect();
        let infos = self.append_in_order(&tp.topic, tp.partition, batches).await?;
        let first = infos.first().expect("one batch at least").base_offset;
        let last =
            infos.last().expect("one batch at least").base_offset + runs.last().map_or(0, |r| r.len() as i64) - 1;
        Ok(Some((first, last)))
    }
}

/// Record bytes per batch a send builds, by estimate: within the default `max.message.bytes`.
/// Estimates err high ([`RECORD_FRAMING_BYTES`] per record, where varints take at most 32), so a
/// batch stays within the default 1048588 even with the 61-byte batch header.
const BATCH_BYTES: usize = 1_000_000;

/// Bytes a record's framing (length, attributes, deltas, field lengths) takes at most, rounded up.
const RECORD_FRAMING_BYTES: usize = 40;

fn estimate(r: &ProducerRecord) -> usize {
    let headers: usize = r.headers.iter().map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()) + 10).sum();
    r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()) + headers + RECORD_FRAMING_BYTES
}

/// The embedded [`Consumer`].
#[derive(Debug)]
pub struct EmbeddedConsumer {
    log: Log,
    groups: GroupOffsets,
    config: ConsumerConfig,
    positions: BTreeMap<TopicPartition, i64>,
    members: Arc<LocalMembers>,
    /// After `subscribe`: the consumer's place in its group.
    membership: Option<Membership>,
    /// What the last poll saw happen to the assignment.
    changes: Vec<GroupChange>,
    /// Assigned partitions not fetched for now.
    paused: std::collections::HashSet<TopicPartition>,
}

/// A subscribed embedded consumer's place in its group.
#[derive(Debug)]
struct Membership {
    group: String,
    member: u64,
    /// The generation whose assignment the member holds or is taking.
    generation: u64,
    /// Partitions reported revoked, given up at the next poll.
    revoking: Vec<TopicPartition>,
    /// The generation's assignment, until every partition of it is free to take.
    taking: Option<Vec<TopicPartition>>,
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        if let Some(m) = self.membership.take() {
            self.members.leave(&m.group, m.member);
        }
    }
}

impl EmbeddedConsumer {
    /// Follows the group: completes a revocation the last poll reported; at a new generation,
    /// reports the partitions this member loses as revoked (and stops there), then takes its
    /// new assignment once no one else holds any of it. Partitions kept keep their position;
    /// new ones start at the committed offset or where `auto_offset_reset` says.
    async fn follow_group(&mut self) -> Result<()> {
        let Some(m) = self.membership.as_mut() else { return Ok(()) };
        if !m.revoking.is_empty() {
            let revoked = std::mem::take(&mut m.revoking);
            for tp in &revoked {
                self.positions.remove(tp);
                self.paused.remove(tp);
            }
            self.members.release(&m.group, m.member, &revoked);
        }
        if self.members.generation(&m.group) != m.generation {
            let (generation, mut assignments) = self.members.assignments(&m.group, &self.log);
            let assigned = assignments.remove(&m.member).unwrap_or_default();
            let lost: Vec<TopicPartition> =
                self.positions.keys().filter(|tp| !assigned.contains(tp)).cloned().collect();
            m.generation = generation;
            m.taking = Some(assigned);
            if !lost.is_empty() {
                m.revoking.clone_from(&lost);
                self.changes.push(GroupChange::Revoked(lost));
                return Ok(());
            }
        }
        let Some(assigned) = &m.taking else { return Ok(()) };
        if !self.members.try_take(&m.group, m.member, m.generation, assigned) {
            return Ok(());
        }
        let assigned = m.taking.take().unwrap_or_default();
        let group = m.group.clone();
        let committed = self.groups.fetch(&group, Some(&assigned));
        let mut positions = BTreeMap::new();
        for tp in &assigned {
            let position = match (self.positions.get(tp), committed.get(tp)) {
                (Some(p), _) => *p,
                (None, Some(c)) => c.offset,
                (None, None) => self.reset_position(tp).await?,
            };
            positions.insert(tp.clone(), position);
        }
        self.positions = positions;
        self.paused.retain(|tp| self.positions.contains_key(tp));
        self.changes.push(GroupChange::Assigned(assigned));
        Ok(())
    }

    /// Whether a revocation was reported and waits for the next poll.
    fn revoking(&self) -> bool {
        self.membership.as_ref().is_some_and(|m| !m.revoking.is_empty())
    }

    async fn reset_position(&self, tp: &TopicPartition) -> Result<i64> {
        let spec = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => OffsetSpec::Earliest,
            AutoOffsetReset::Latest => OffsetSpec::Latest,
            AutoOffsetReset::None => {
                return Err(Error::InvalidConfig {
                    key: "auto.offset.reset".into(),
                    value: "none".into(),
                    reason: format!("{tp} has no committed offset and the consumer may not pick one"),
                })
            }
        };
        Ok(self.log.list_offset(&tp.topic, tp.partition, spec).await?.map_or(0, |o| o.0))
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        if let Some(m) = self.membership.take() {
            self.members.leave(&m.group, m.member);
        }
        let committed = match &self.config.group_id {
            Some(group) => self.groups.fetch(group, Some(&partitions)),
            None => BTreeMap::new(),
        };
        let mut positions = BTreeMap::new();
        for tp in partitions {
            self.log.partition(&tp.topic, tp.partition)?;
            let position = match committed.get(&tp) {
                Some(c) => c.offset,
                None => self.reset_position(&tp).await?,
            };
            positions.insert(tp, position);
        }
        self.positions = positions;
        self.paused.retain(|tp| self.positions.contains_key(tp));
        Ok(())
    }

    async fn seek(&mut self, tp: &TopicPartition, to: OffsetSpec) -> Result<()> {
        if !self.positions.contains_key(tp) {
            return Err(Error::Internal(format!("{tp} is not assigned to this consumer")));
        }
        let offset = match self.log.list_offset(&tp.topic, tp.partition, to).await? {
            Some((offset, _)) => offset,
            None => self.log.list_offset(&tp.topic, tp.partition, OffsetSpec::Latest).await?.map_or(0, |o| o.0),
        };
        self.positions.insert(tp.clone(), offset);
        Ok(())
    }

    fn seek_to_offset(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        match self.positions.get_mut(tp) {
            Some(p) => {
                *p = offset;
                Ok(())
            }
            None => Err(Error::Internal(format!("{tp} is not assigned to this consumer"))),
        }
    }

    fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.positions.get(tp).copied()
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedBatches>> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut data = self.log.watch_data();
        let mut members = self.members.changed.subscribe();
        self.changes.clear();
        loop {
            members.borrow_and_update();
            self.follow_group().await?;
            if self.revoking() {
                return Ok(Vec::new());
            }
            data.borrow_and_update();
            let mut out = Vec::new();
            let mut budget = self.config.fetch_max_bytes;
            let tps: Vec<(TopicPartition, i64)> = self
                .positions
                .iter()
                .filter(|(t, _)| !self.paused.contains(*t))
                .map(|(t, p)| (t.clone(), *p))
                .collect();
            for (tp, position) in tps {
                if budget == 0 {
                    break;
                }
                let max = self.config.max_partition_fetch_bytes.min(budget);
                let isolation = self.config.isolation;
                let fetched = match self.log.read_isolated(&tp.topic, tp.partition, position, max, isolation).await {
                    Ok(f) => f,
                    Err(Error::OffsetOutOfRange { .. }) => {
                        // Retention removed what we were about to read, or the position is past the
                        // end (the topic was re-created): start again where auto.offset.reset says,
                        // as a Kafka consumer does.
                        let reset = self.reset_position(&tp).await?;
                        tracing::info!(%tp, from = position, to = reset, "position out of range; reset");
                        self.positions.insert(tp.clone(), reset);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if fetched.batches.is_empty() {
                    continue;
                }
                budget = budget.saturating_sub(fetched.batches.len() as u64);
                let mut consumed = ConsumedBatches {
                    tp: tp.clone(),
                    bytes: fetched.batches,
                    from_offset: position,
                    high_watermark: fetched.high_watermark,
                };
                self.positions.insert(tp, consumed.next_offset());
                if !fetched.aborted.is_empty() {
                    // Aborted transactions' batches are left out (their offsets are passed over).
                    consumed.bytes = without_aborted(&consumed.bytes, fetched.aborted)?;
                    if consumed.bytes.is_empty() {
                        continue;
                    }
                }
                out.push(consumed);
            }
            if !out.is_empty() {
                return Ok(out);
            }
            let woken = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    changed = data.changed() => changed.map_err(|_| Error::Closed),
                    _ = members.changed() => Ok(()),
                }
            });
            match woken.await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(out),
            }
        }
    }

    async fn commit(&mut self, offsets: BTreeMap<TopicPartition, OffsetAndMetadata>) -> Result<()> {
        let group = self.config.group_id.as_deref().ok_or_else(|| no_group("commit offsets"))?;
        self.groups.commit(group, &offsets).await
    }

    async fn commit_positions(&mut self) -> Result<()> {
        let offsets = self.positions.iter().map(|(tp, p)| (tp.clone(), OffsetAndMetadata::new(*p))).collect();
        self.commit(offsets).await
    }

    async fn committed(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
        Ok(match &self.config.group_id {
            Some(group) => self.groups.fetch(group, Some(partitions)),
            None => BTreeMap::new(),
        })
    }

    async fn subscribe(&mut self, topics: Vec<String>) -> Result<()> {
        let group = self.config.group_id.clone().ok_or_else(|| no_group("subscribe"))?;
        if let Some(m) = self.membership.take() {
            self.members.leave(&m.group, m.member);
        }
        self.positions.clear();
        self.changes.clear();
        let member = self.members.next_member.fetch_add(1, Ordering::Relaxed);
        let client_id = self.config.client_id.clone().unwrap_or_else(|| "freshet".into());
        self.members.join(&group, member, topics, client_id);
        // Generation 0 is never current: the first poll takes the assignment.
        self.membership = Some(Membership { group, member, generation: 0, revoking: Vec::new(), taking: None });
        Ok(())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    fn take_group_changes(&mut self) -> Vec<GroupChange> {
        std::mem::take(&mut self.changes)
    }

    fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            if !self.positions.contains_key(tp) {
                return Err(Error::Internal(format!("{tp} is not assigned to this consumer")));
            }
        }
        self.paused.extend(partitions.iter().cloned());
        Ok(())
    }

    fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.paused.remove(tp);
        }
        Ok(())
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        self.config.group_id.clone().map(|group_id| GroupMetadata { group_id, native: None })
    }
}

/// The batches of `bytes` that a `read_committed` consumer sees, given the read's aborted
/// transactions.
fn without_aborted(bytes: &Bytes, aborted: Vec<crate::log::AbortedTxn>) -> Result<Bytes> {
    let mut filter = AbortedFilter::new(aborted);
    let mut kept = bytes::BytesMut::with_capacity(bytes.len());
    for batch in Batches::new(bytes) {
        let batch = batch?;
        if filter.keep(&batch) {
            kept.extend_from_slice(batch.as_bytes());
        }
    }
    Ok(kept.freeze())
}

/// The error of a consumer without a group asked to do what only a group member does.
pub(crate) fn no_group(what: &str) -> Error {
    Error::InvalidConfig {
        key: "group.id".into(),
        value: String::new(),
        reason: format!("this consumer has no group, so it cannot {what}"),
    }
}

/// The embedded [`Admin`].
#[derive(Debug, Clone)]
pub struct EmbeddedAdmin {
    log: Log,
    groups: GroupOffsets,
    members: Arc<LocalMembers>,
}

#[async_trait]
impl Admin for EmbeddedAdmin {
    async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        self.log.create_topic(&topic.name, topic.n_partitions, topic.configs).await
    }
    async fn delete_topic(&self, name: &str) -> Result<()> {
        self.log.delete_topic(name).await?;
        self.groups.forget_topic(name).await
    }
    async fn list_topics(&self) -> Result<Vec<TopicDescription>> {
        Ok(self.log.list_topics())
    }
    async fn describe_topic(&self, name: &str) -> Result<(TopicDescription, Vec<PartitionDescription>)> {
        Ok((self.log.describe_topic(name)?, self.log.describe_partitions(name)?))
    }
    async fn describe_configs(&self, name: &str) -> Result<Vec<ConfigEntry>> {
        self.log.describe_configs(name)
    }
    async fn alter_configs(&self, name: &str, changes: BTreeMap<String, Option<String>>) -> Result<()> {
        self.log.alter_topic_config(name, changes).await
    }
    async fn create_partitions(&self, name: &str, n_partitions: u32) -> Result<()> {
        self.log.create_partitions(name, n_partitions).await
    }
    async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<Option<(i64, i64)>> {
        self.log.list_offset(&tp.topic, tp.partition, spec).await
    }
    async fn delete_records(&self, tp: &TopicPartition, before_offset: i64) -> Result<i64> {
        self.log.delete_records(&tp.topic, tp.partition, before_offset).await
    }
    async fn list_groups(&self) -> Result<Vec<String>> {
        Ok(self.groups.groups())
    }
    async fn group_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
        Ok(self.groups.fetch(group, None))
    }
    async fn group_members(&self, group: &str) -> Result<Option<GroupMembers>> {
        // Members of consumers in this process; a broker serving the log keeps its own.
        let (_, assignments) = self.members.assignments(group, &self.log);
        if assignments.is_empty() {
            return Ok(None);
        }
        let members = assignments
            .into_iter()
            .map(|(member, assignment)| GroupMember {
                // Zero-padded, so member ids sort as the members do (the range assignor's order).
                member_id: format!("embedded-{member:020}"),
                client_id: self.members.client_id(group, member),
                host: "in-process".into(),
                assignment,
            })
            .collect();
        Ok(Some(GroupMembers { state: "Stable".into(), protocol: "range".into(), members }))
    }
}
