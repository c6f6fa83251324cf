//! The embedded substrate: the storage engine called in-process, with the same contract as a
//! cluster (consumer groups of the consumers in this process, range assignment, committed offsets,
//! a revocation reported before a partition changes hands, transactions through the transaction
//! coordinator).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use freshet_coord::group::{GroupOffsets, OffsetAndMetadata, TopicPartition};
use freshet_coord::transactions::Transactions;
use freshet_log::batch::{BatchBuilder, Batches};
use freshet_log::config::ConfigEntry;
use freshet_log::partitioner::partition_for_key;
use freshet_log::{AbortedFilter, Error, Log, OffsetSpec, PartitionDescription, Result, TopicDescription};

use crate::substrate::*;

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

#[async_trait]
impl Substrate for Embedded {
    fn describe(&self) -> String {
        format!("the embedded log in {}", self.log.dir().display())
    }

    fn producer(&self) -> Result<Arc<dyn Producer>> {
        Ok(Arc::new(Embedded::producer(self)))
    }

    fn admin(&self) -> Result<Arc<dyn Admin>> {
        Ok(Arc::new(Embedded::admin(self)))
    }

    fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(Embedded::consumer(self, config)))
    }

    async fn transactional_producer(
        &self,
        transactional_id: &str,
        timeout: Duration,
    ) -> Result<Arc<dyn TransactionalProducer>> {
        Ok(Arc::new(Embedded::transactional_producer(self, transactional_id, timeout).await?))
    }

    fn clock(&self) -> Arc<dyn freshet_log::clock::Clock> {
        self.log.clock().clone()
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

impl EmbeddedProducer {
    /// Appends `batches` to one partition, in order; returns where each landed.
    async fn append_in_order(
        &self,
        topic: &str,
        partition: u32,
        batches: Vec<Bytes>,
    ) -> Result<Vec<freshet_log::AppendInfo>> {
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
        let now = self.log.clock().now_ms();
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
fn without_aborted(bytes: &Bytes, aborted: Vec<freshet_log::AbortedTxn>) -> Result<Bytes> {
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
