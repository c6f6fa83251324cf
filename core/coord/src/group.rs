//! Committed consumer-group offsets, kept in the internal compacted topic `__consumer_offsets`.
//!
//! Records use Kafka's own layout for that topic, so the data is what a Kafka broker would write:
//!
//! * key (version 1): `i16 version = 1`, `string group`, `string topic`, `i32 partition`;
//! * value (version 3): `i16 version = 3`, `i64 offset`, `i32 leader_epoch` (-1: unknown),
//!   `string metadata`, `i64 commit_timestamp`;
//! * a null value (tombstone) deletes the committed offset.
//!
//! Strings are an `i16` length then UTF-8 bytes, all integers big-endian. A group's offsets live in
//! partition `abs(java_hash(group)) % n_partitions`, as in Kafka, and one commit is one batch, so it
//! lands or fails as a whole. Offsets committed in a transaction are the same records in a
//! transactional batch of its producer, as Kafka writes them: they count once the producer's commit
//! marker follows them in the partition, and never after an abort marker. The store reads the
//! topic once when the log opens and then serves reads from memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use freshet_log::batch::BatchBuilder;
use freshet_log::partitioner::java_string_hash;
use freshet_log::{Error, Result};
use freshet_log::{Log, Marker};

use crate::membership::{GroupSnapshot, MemberSnapshot};

/// The internal topic's name.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How long the committed offsets of a group without members are kept after its last commit and
/// after it was last seen with members (Kafka's `offsets.retention.minutes`, seven days): the bound
/// on the table of groups.
pub const OFFSETS_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// How often expired offsets are looked for (Kafka's `offsets.retention.check.interval.ms`).
const RETENTION_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// A topic and a partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
}

impl TopicPartition {
    /// `topic`-`partition`.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A committed offset: the next offset the group will read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetAndMetadata {
    /// The next offset to read.
    pub offset: i64,
    /// The leader epoch of the last record read, -1 when unknown.
    pub leader_epoch: i32,
    /// Free text the committer attached.
    pub metadata: String,
    /// When the commit happened (ms).
    pub commit_timestamp: i64,
}

impl OffsetAndMetadata {
    /// An offset without metadata. Its commit timestamp is left to the coordinator
    /// ([`GroupOffsets::commit`] stamps it with the log's clock), as Kafka's broker stamps the
    /// commits of OffsetCommit v2 and later.
    pub fn new(offset: i64) -> Self {
        OffsetAndMetadata { offset, leader_epoch: -1, metadata: String::new(), commit_timestamp: -1 }
    }
}

fn put_string(buf: &mut BytesMut, s: &str) -> Result<()> {
    let len = i16::try_from(s.len()).map_err(|_| Error::Decode(format!("string of {} bytes is too long", s.len())))?;
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.0.len() < n {
            return Err(Error::Decode("a __consumer_offsets record is truncated".into()));
        }
        let (head, rest) = self.0.split_at(n);
        let head_ptr: &[u8] = head;
        self.0 = rest;
        Ok(head_ptr)
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn string(&mut self) -> Result<String> {
        Ok(self.nullable_string()?.unwrap_or_default())
    }
    fn nullable_string(&mut self) -> Result<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let bytes = self.take(len as usize)?.to_vec();
        String::from_utf8(bytes).map(Some).map_err(|_| Error::Decode("string is not UTF-8".into()))
    }
    fn bytes(&mut self) -> Result<&[u8]> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(&[]);
        }
        self.take(len as usize)
    }
}

pub(crate) fn encode_key(group: &str, tp: &TopicPartition) -> Result<BytesMut> {
    let mut key = BytesMut::new();
    key.put_i16(1);
    put_string(&mut key, group)?;
    put_string(&mut key, &tp.topic)?;
    key.put_i32(tp.partition as i32);
    Ok(key)
}

pub(crate) fn encode_value(offset: &OffsetAndMetadata) -> Result<BytesMut> {
    let mut value = BytesMut::new();
    value.put_i16(3);
    value.put_i64(offset.offset);
    value.put_i32(offset.leader_epoch);
    put_string(&mut value, &offset.metadata)?;
    value.put_i64(offset.commit_timestamp);
    Ok(value)
}

/// Kafka's GroupMetadata key (version 2): the group.
fn encode_group_key(group: &str) -> Result<BytesMut> {
    let mut key = BytesMut::new();
    key.put_i16(2);
    put_string(&mut key, group)?;
    Ok(key)
}

/// The group a GroupMetadata key names; `None` for other record kinds.
fn decode_group_key(key: &[u8]) -> Result<Option<String>> {
    let mut r = Reader(key);
    match r.i16()? {
        2 => Ok(Some(r.string()?)),
        _ => Ok(None),
    }
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) -> Result<()> {
    match s {
        Some(s) => put_string(buf, s),
        None => {
            buf.put_i16(-1);
            Ok(())
        }
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) -> Result<()> {
    let len = i32::try_from(b.len()).map_err(|_| Error::Decode(format!("{} bytes are too many", b.len())))?;
    buf.put_i32(len);
    buf.put_slice(b);
    Ok(())
}

/// Kafka's GroupMetadata value (version 3): the group's protocol, generation, leader and
/// members with their subscriptions and assignments.
fn encode_group_value(g: &GroupSnapshot) -> Result<BytesMut> {
    let mut value = BytesMut::new();
    value.put_i16(3);
    put_string(&mut value, &g.protocol_type)?;
    value.put_i32(g.generation);
    put_nullable_string(&mut value, g.protocol.as_deref())?;
    put_nullable_string(&mut value, g.leader.as_deref())?;
    value.put_i64(g.timestamp);
    value.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_string(&mut value, &m.member_id)?;
        put_nullable_string(&mut value, m.instance_id.as_deref())?;
        put_string(&mut value, &m.client_id)?;
        put_string(&mut value, &m.client_host)?;
        value.put_i32(i32::try_from(m.rebalance_timeout.as_millis()).unwrap_or(i32::MAX));
        value.put_i32(i32::try_from(m.session_timeout.as_millis()).unwrap_or(i32::MAX));
        put_bytes(&mut value, &m.subscription)?;
        put_bytes(&mut value, &m.assignment)?;
    }
    Ok(value)
}

/// Decodes a GroupMetadata value of versions 0 to 3.
fn decode_group_value(value: &[u8]) -> Result<GroupSnapshot> {
    let mut r = Reader(value);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(Error::Decode(format!("group metadata of version {version}")));
    }
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let timestamp = if version >= 2 { r.i64()? } else { -1 };
    let n = r.i32()?;
    let mut members = Vec::with_capacity(n.clamp(0, 1024) as usize);
    for _ in 0..n.max(0) {
        let member_id = r.string()?;
        let instance_id = if version >= 3 { r.nullable_string()? } else { None };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let session_ms;
        let rebalance_ms;
        if version >= 1 {
            rebalance_ms = r.i32()?;
            session_ms = r.i32()?;
        } else {
            session_ms = r.i32()?;
            rebalance_ms = session_ms;
        }
        let subscription = Bytes::copy_from_slice(r.bytes()?);
        let assignment = Bytes::copy_from_slice(r.bytes()?);
        let ms = |v: i32| std::time::Duration::from_millis(v.max(0) as u64);
        members.push(MemberSnapshot {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout: ms(rebalance_ms),
            session_timeout: ms(session_ms),
            subscription,
            assignment,
        });
    }
    Ok(GroupSnapshot { protocol_type, generation, protocol, leader, timestamp, members })
}

/// Decodes a key; `None` for record kinds other than offset commits (Kafka's group metadata).
pub(crate) fn decode_key(key: &[u8]) -> Result<Option<(String, TopicPartition)>> {
    let mut r = Reader(key);
    match r.i16()? {
        0 | 1 => {
            let group = r.string()?;
            let topic = r.string()?;
            let partition = r.i32()?;
            Ok(Some((group, TopicPartition { topic, partition: partition as u32 })))
        }
        _ => Ok(None),
    }
}

pub(crate) fn decode_value(value: &[u8]) -> Result<OffsetAndMetadata> {
    let mut r = Reader(value);
    let version = r.i16()?;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp = r.i64()?;
    Ok(OffsetAndMetadata { offset, leader_epoch, metadata, commit_timestamp })
}

type Offsets = HashMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>;

/// Offsets committed in open transactions, by `__consumer_offsets` partition and producer id:
/// they become the groups' when that partition gets the producer's commit marker.
type Pending = HashMap<(u32, i64), Offsets>;

/// Adds a committed transaction's offsets to the groups'.
/// The offsets one partition of `__consumer_offsets` holds, and those transactions committed
/// there that wait for their markers, read from its log start to its log end.
async fn read_partition(log: &Log, partition: u32) -> Result<(Offsets, Pending)> {
    let mut offsets = Offsets::new();
    let mut pending = Pending::new();
    log.for_each_stored_batch(OFFSETS_TOPIC, partition, |batch| {
        let producer = (partition, batch.producer_id());
        if batch.is_control() {
            // A transaction's end: its offsets become the groups' on commit.
            let committed = pending.remove(&producer);
            if let (Marker::Commit, Some(committed)) = (Marker::of(batch)?, committed) {
                merge(&mut offsets, committed);
            }
            return Ok(());
        }
        let target = if batch.is_transactional() { pending.entry(producer).or_default() } else { &mut offsets };
        for record in batch.records()? {
            let record = record?;
            let Some(key) = record.key else { continue };
            let Some((group, tp)) = decode_key(key)? else { continue };
            match record.value {
                Some(value) => {
                    target.entry(group).or_default().insert(tp, decode_value(value)?);
                }
                None => {
                    if let Some(g) = target.get_mut(&group) {
                        g.remove(&tp);
                    }
                }
            }
        }
        Ok(())
    })
    .await?;
    offsets.retain(|_, g| !g.is_empty());
    Ok((offsets, pending))
}

fn merge(offsets: &mut Offsets, committed: Offsets) {
    for (group, tps) in committed {
        offsets.entry(group).or_default().extend(tps);
    }
}

/// When each group was last seen with members, by the expiry (in memory: after a restart a group
/// counts as seen at the first check, so expiry only ever comes later).
type LastLive = std::sync::Mutex<HashMap<String, i64>>;

/// How long a commit waits for the replicas of its `__consumer_offsets` partition (Kafka's
/// `offsets.commit.timeout.ms`).
pub const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Consumer-group offsets over the log.
#[derive(Debug, Clone)]
pub struct GroupOffsets {
    shared: Arc<Shared>,
}

/// What the clones of a [`GroupOffsets`] share.
#[derive(Debug)]
struct Shared {
    log: Log,
    n_partitions: u32,
    offsets: RwLock<Offsets>,
    pending: std::sync::Mutex<Pending>,
    last_live: LastLive,
}

impl GroupOffsets {
    /// Opens the store: creates `__consumer_offsets` if needed and loads what it holds.
    pub async fn open(log: Log, n_partitions: u32) -> Result<Self> {
        log.ensure_compacted_topic(OFFSETS_TOPIC, n_partitions).await?;
        let n_partitions = log.describe_topic(OFFSETS_TOPIC)?.n_partitions;
        let mut offsets = Offsets::new();
        let mut pending = Pending::new();
        for partition in 0..n_partitions {
            let (loaded, waiting) = read_partition(&log, partition).await?;
            offsets.extend(loaded);
            pending.extend(waiting);
        }
        let shared = Shared {
            log,
            n_partitions,
            offsets: RwLock::new(offsets),
            pending: std::sync::Mutex::new(pending),
            last_live: LastLive::default(),
        };
        Ok(GroupOffsets { shared: Arc::new(shared) })
    }

    /// Loads again what partition `partition` of `__consumer_offsets` holds, in place of what
    /// this store had of its groups: this broker took the partition over (in a cluster, it
    /// became its leader), and its copy is now the groups' truth.
    pub async fn load_partition(&self, partition: u32) -> Result<()> {
        let (loaded, waiting) = read_partition(&self.shared.log, partition).await?;
        {
            let mut offsets = self.shared.offsets.write().expect("offsets lock");
            offsets.retain(|group, _| self.partition_for(group) != partition);
            offsets.extend(loaded);
        }
        let mut pending = self.shared.pending.lock().expect("pending offsets lock");
        pending.retain(|(p, _), _| *p != partition);
        pending.extend(waiting);
        Ok(())
    }

    /// The partition of `__consumer_offsets` that holds `group`'s offsets (Kafka's rule).
    pub fn partition_for(&self, group: &str) -> u32 {
        java_string_hash(group).unsigned_abs() % self.shared.n_partitions
    }

    /// The partitions of `__consumer_offsets`.
    pub fn n_partitions(&self) -> u32 {
        self.shared.n_partitions
    }

    /// Commits offsets for a group, durably and atomically (one batch).
    pub async fn commit(&self, group: &str, offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>) -> Result<()> {
        let Some((_, stored)) = self.store(group, offsets, BatchBuilder::default()).await? else { return Ok(()) };
        self.shared.offsets.write().expect("offsets lock").entry(group.to_owned()).or_default().extend(stored);
        Ok(())
    }

    /// Kafka's TxnOffsetCommit at the group coordinator: offsets that `group` commits if, and
    /// when, the transaction of `producer_id` commits. They are stored now, as a transactional
    /// batch of that producer (so a fenced epoch is refused here as on any partition), and
    /// become the group's when the transaction's marker reaches the group's partition
    /// ([`GroupOffsets::complete_transaction`]).
    pub async fn commit_transactional(
        &self,
        group: &str,
        producer_id: i64,
        producer_epoch: i16,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<()> {
        let builder = BatchBuilder::default().producer(producer_id, producer_epoch, -1).transactional();
        let Some((partition, stored)) = self.store(group, offsets, builder).await? else { return Ok(()) };
        let mut pending = self.shared.pending.lock().expect("pending offsets lock");
        pending.entry((partition, producer_id)).or_default().entry(group.to_owned()).or_default().extend(stored);
        Ok(())
    }

    /// Appends `group`'s `offsets` (commit timestamps stamped where unset) to its partition as
    /// one batch of `builder`; returns the partition and the offsets as stored, or `None` when
    /// there are none.
    async fn store(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
        mut builder: BatchBuilder,
    ) -> Result<Option<(u32, BTreeMap<TopicPartition, OffsetAndMetadata>)>> {
        if group.is_empty() {
            return Err(Error::InvalidConfig {
                key: "group.id".into(),
                value: String::new(),
                reason: "committing offsets needs a group id".into(),
            });
        }
        if offsets.is_empty() {
            return Ok(None);
        }
        let now = self.shared.log.clock().now_ms();
        let stored: BTreeMap<TopicPartition, OffsetAndMetadata> = offsets
            .iter()
            .map(|(tp, offset)| {
                let commit_timestamp = if offset.commit_timestamp < 0 { now } else { offset.commit_timestamp };
                (tp.clone(), OffsetAndMetadata { commit_timestamp, ..offset.clone() })
            })
            .collect();
        for (tp, offset) in &stored {
            builder.push(Some(&encode_key(group, tp)?), Some(&encode_value(offset)?), &[], now);
        }
        let partition = self.partition_for(group);
        let info = self.shared.log.append(OFFSETS_TOPIC, partition, builder.finish()).await?;
        // Answered once every replica of the group's partition has it, as Kafka's coordinator
        // writes with acks=all: a commit answered is never lost with its coordinator.
        self.shared.log.wait_replicated(OFFSETS_TOPIC, partition, &info, COMMIT_TIMEOUT).await?;
        Ok(Some((partition, stored)))
    }

    /// The transaction of `producer_id` ended on `partition` of `__consumer_offsets` (its marker
    /// is stored there): the offsets it committed become the groups' if it committed.
    pub fn complete_transaction(&self, partition: u32, producer_id: i64, commit: bool) {
        let ended = self.shared.pending.lock().expect("pending offsets lock").remove(&(partition, producer_id));
        if let (true, Some(ended)) = (commit, ended) {
            merge(&mut self.shared.offsets.write().expect("offsets lock"), ended);
        }
    }

    /// The partitions of `group` with offsets waiting in an open transaction: a consumer that
    /// requires stable offsets must wait for those.
    pub fn pending_offsets(&self, group: &str) -> BTreeSet<TopicPartition> {
        let pending = self.shared.pending.lock().expect("pending offsets lock");
        pending.values().filter_map(|groups| groups.get(group)).flat_map(|tps| tps.keys().cloned()).collect()
    }

    /// The committed offsets of a group for the given partitions (all of them when `None`).
    pub fn fetch(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        let all = self.shared.offsets.read().expect("offsets lock");
        let Some(committed) = all.get(group) else { return BTreeMap::new() };
        match partitions {
            None => committed.clone(),
            Some(tps) => tps.iter().filter_map(|tp| committed.get(tp).map(|o| (tp.clone(), o.clone()))).collect(),
        }
    }

    /// Every group with committed offsets.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.shared.offsets.read().expect("offsets lock").keys().cloned().collect();
        groups.sort();
        groups
    }

    /// Forgets every group's committed offsets for a deleted topic, as Kafka's coordinator does, so
    /// a topic created again under the same name is read from its start.
    pub async fn forget_topic(&self, topic: &str) -> Result<()> {
        let affected: Vec<(String, Vec<TopicPartition>)> = {
            let all = self.shared.offsets.read().expect("offsets lock");
            all.iter()
                .map(|(g, offsets)| {
                    (g.clone(), offsets.keys().filter(|tp| tp.topic == topic).cloned().collect::<Vec<_>>())
                })
                .filter(|(_, tps)| !tps.is_empty())
                .collect()
        };
        for (group, tps) in affected {
            let mut builder = BatchBuilder::default();
            let now = self.shared.log.clock().now_ms();
            for tp in &tps {
                builder.push(Some(&encode_key(&group, tp)?), None, &[], now);
            }
            self.shared.log.append(OFFSETS_TOPIC, self.partition_for(&group), builder.finish()).await?;
            let mut all = self.shared.offsets.write().expect("offsets lock");
            if let Some(offsets) = all.get_mut(&group) {
                for tp in &tps {
                    offsets.remove(tp);
                }
                if offsets.is_empty() {
                    all.remove(&group);
                }
            }
        }
        Ok(())
    }

    /// Deletes the committed offsets of every group that `coordinator` shows without members
    /// and whose last commit, and the last time it was seen with members, are more than
    /// `retention` before `now_ms`, as Kafka's `offsets.retention.minutes`. Returns the groups.
    pub async fn expire(
        &self,
        coordinator: &crate::membership::Coordinator,
        now_ms: i64,
        retention: std::time::Duration,
    ) -> Result<Vec<String>> {
        let retention = retention.as_millis() as i64;
        let newest: Vec<(String, i64)> = {
            let all = self.shared.offsets.read().expect("offsets lock");
            all.iter().map(|(g, o)| (g.clone(), o.values().map(|c| c.commit_timestamp).max().unwrap_or(0))).collect()
        };
        let mut expired = Vec::new();
        for (group, last_commit) in newest {
            let live = coordinator.has_members(&group).await;
            let last_live = {
                let mut seen = self.shared.last_live.lock().expect("group liveness lock");
                let at = seen.entry(group.clone()).or_insert(now_ms);
                if live {
                    *at = now_ms;
                }
                *at
            };
            if live || now_ms.saturating_sub(last_commit.max(last_live)) <= retention {
                continue;
            }
            tracing::info!(%group, "committed offsets expired (offsets.retention.minutes)");
            self.delete_group(&group).await?;
            // The coordinator forgets the empty group too (its members' table).
            coordinator.delete(&group).await;
            self.shared.last_live.lock().expect("group liveness lock").remove(&group);
            expired.push(group);
        }
        Ok(expired)
    }

    /// Runs [`GroupOffsets::expire`] with [`OFFSETS_RETENTION`] every ten minutes while the store
    /// lives.
    pub fn start_expiry(&self, coordinator: crate::membership::Coordinator) {
        // A weak reference: the task must not keep the log (and its directory lock) open.
        let weak = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RETENTION_CHECK_INTERVAL).await;
                let Some(shared) = weak.upgrade() else { return };
                let this = GroupOffsets { shared };
                let now = this.shared.log.clock().now_ms();
                if let Err(error) = this.expire(&coordinator, now, OFFSETS_RETENTION).await {
                    tracing::warn!(%error, "expiring committed offsets failed");
                }
            }
        });
    }

    /// Deletes a group's committed offsets for some partitions (Kafka's OffsetDelete), with
    /// tombstones so compaction forgets them. Partitions without an offset are passed over.
    pub async fn delete_offsets(&self, group: &str, partitions: &[TopicPartition]) -> Result<()> {
        let committed = self.fetch(group, Some(partitions));
        if committed.is_empty() {
            return Ok(());
        }
        let mut builder = BatchBuilder::default();
        let now = self.shared.log.clock().now_ms();
        for tp in committed.keys() {
            builder.push(Some(&encode_key(group, tp)?), None, &[], now);
        }
        self.shared.log.append(OFFSETS_TOPIC, self.partition_for(group), builder.finish()).await?;
        let mut all = self.shared.offsets.write().expect("offsets lock");
        if let Some(offsets) = all.get_mut(group) {
            for tp in committed.keys() {
                offsets.remove(tp);
            }
            if offsets.is_empty() {
                all.remove(group);
            }
        }
        Ok(())
    }

    /// Stores what a group's membership is after a rebalance (Kafka's GroupMetadata record, in
    /// the group's partition), once every replica of the partition has it, so that the group's
    /// next coordinator goes on with it ([`GroupOffsets::stored_groups`]).
    pub async fn store_group(&self, group: &str, snapshot: &GroupSnapshot) -> Result<()> {
        let mut builder = BatchBuilder::default();
        let now = self.shared.log.clock().now_ms();
        builder.push(Some(&encode_group_key(group)?), Some(&encode_group_value(snapshot)?), &[], now);
        let partition = self.partition_for(group);
        let info = self.shared.log.append(OFFSETS_TOPIC, partition, builder.finish()).await?;
        self.shared.log.wait_replicated(OFFSETS_TOPIC, partition, &info, COMMIT_TIMEOUT).await
    }

    /// The groups whose membership partition `partition` of `__consumer_offsets` stores, each as
    /// last stored (groups deleted since left out).
    pub async fn stored_groups(&self, partition: u32) -> Result<Vec<(String, GroupSnapshot)>> {
        let mut groups: HashMap<String, Option<GroupSnapshot>> = HashMap::new();
        self.shared
            .log
            .for_each_stored_batch(OFFSETS_TOPIC, partition, |batch| {
                if batch.is_control() || batch.is_transactional() {
                    return Ok(());
                }
                for record in batch.records()? {
                    let record = record?;
                    let Some(group) = record.key.map(decode_group_key).transpose()?.flatten() else { continue };
                    let snapshot = record.value.map(decode_group_value).transpose()?;
                    groups.insert(group, snapshot);
                }
                Ok(())
            })
            .await?;
        let mut stored: Vec<(String, GroupSnapshot)> =
            groups.into_iter().filter_map(|(g, s)| s.map(|s| (g, s))).collect();
        stored.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(stored)
    }

    /// Deletes a group's committed offsets and stored membership (tombstones, so compaction
    /// forgets them). Whether it had offsets.
    pub async fn delete_group(&self, group: &str) -> Result<bool> {
        let committed = self.fetch(group, None);
        let mut builder = BatchBuilder::default();
        let now = self.shared.log.clock().now_ms();
        builder.push(Some(&encode_group_key(group)?), None, &[], now);
        for tp in committed.keys() {
            builder.push(Some(&encode_key(group, tp)?), None, &[], now);
        }
        self.shared.log.append(OFFSETS_TOPIC, self.partition_for(group), builder.finish()).await?;
        self.shared.offsets.write().expect("offsets lock").remove(group);
        Ok(!committed.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let tp = TopicPartition::new("orders", 7);
        let key = encode_key("g1", &tp).unwrap();
        assert_eq!(decode_key(&key).unwrap(), Some(("g1".to_owned(), tp)));
        let value = OffsetAndMetadata { offset: 42, leader_epoch: 3, metadata: "m".into(), commit_timestamp: 1000 };
        assert_eq!(decode_value(&encode_value(&value).unwrap()).unwrap(), value);
        assert!(decode_value(&[0, 3, 0]).is_err());
    }

    #[test]
    fn group_metadata_round_trips() {
        let snapshot = GroupSnapshot {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            timestamp: 1234,
            members: vec![MemberSnapshot {
                member_id: "m-1".into(),
                instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout: std::time::Duration::from_secs(300),
                session_timeout: std::time::Duration::from_secs(45),
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let key = encode_group_key("g1").unwrap();
        assert_eq!(decode_group_key(&key).unwrap(), Some("g1".to_owned()));
        assert_eq!(decode_key(&key).unwrap(), None, "not an offset commit");
        let value = encode_group_value(&snapshot).unwrap();
        assert_eq!(decode_group_value(&value).unwrap(), snapshot);
        assert!(decode_group_value(&value[..value.len() - 2]).is_err(), "a truncated value is an error");
    }
}
