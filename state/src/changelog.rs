//! Changelogs: every write of a store also goes to a topic, from which the store is restored.
//!
//! # Why a store never holds a write its changelog lacks
//!
//! Writes that reach a changelogged store are buffered and sent to the changelog in batches (at
//! `batch_bytes`, and at every commit). They are applied to the store below (RocksDB) only once the
//! changelog has acknowledged them; until then reads see them through an ordered overlay of
//! pending writes. RocksDB runs without its write-ahead log, so what it has on disk after any stop
//! is a prefix of what was applied, and so a prefix of the acknowledged changelog. A checkpoint
//! written after a flush says that everything up to its offset is in the store. Restoring from the
//! checkpointed offset to the end therefore rebuilds exactly the state the changelog implies, after
//! a clean stop or a crash alike: records the store already holds are applied again, in order,
//! which changes nothing. (Kafka Streams, which writes to RocksDB first, must instead wipe the store
//! after an unclean stop under exactly-once.)
//!
//! Batches go to the changelog one after another (each is sent when the one before is
//! acknowledged), so the changelog has the writes in the order the store saw them. The writer does
//! not wait for that: unacknowledged writes are bounded at `batch_bytes` buffered plus
//! `max_in_flight` batches queued, and only then does it wait for the oldest acknowledgement.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::BuildHasher;

// foldhash, randomly seeded per process: several times faster than SipHash on short keys.
use hashbrown::DefaultHashBuilder as RandomState;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use freshet_core::{Admin, AutoOffsetReset, Consumer, ConsumerConfig, NewTopic, Producer, Substrate, TopicPartition};
use freshet_core::{Clock, Isolation, OffsetSpec};
use hashbrown::HashTable;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::bytes::{BytesStore, Replay, ScanRange, Write};
use crate::error::{Error, Result};

/// How stores reach the log: the substrate (a producer for changelog writes, consumers for
/// restores, an admin client for changelog topics) and the runtime their futures run on.
#[derive(Clone)]
pub struct Changelogs {
    substrate: Arc<dyn Substrate>,
    producer: Arc<dyn Producer>,
    admin: Arc<dyn Admin>,
    runtime: Handle,
    /// Restores read at this isolation, and end at the matching offset.
    isolation: Isolation,
    /// Stamps changelog records: the substrate's clock.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Changelogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changelogs").field("substrate", &self.substrate).finish_non_exhaustive()
    }
}

impl Changelogs {
    /// Changelogs in `substrate` (the embedded log, a Freshet broker, a Kafka cluster), their
    /// futures on `runtime`. Fails when the substrate cannot make its producer or admin client.
    pub fn new(substrate: impl Substrate + 'static, runtime: Handle) -> Result<Self> {
        let substrate: Arc<dyn Substrate> = Arc::new(substrate);
        Ok(Changelogs {
            producer: substrate.producer().map_err(Error::Substrate)?,
            admin: substrate.admin().map_err(Error::Substrate)?,
            clock: substrate.clock(),
            substrate,
            runtime,
            isolation: Isolation::ReadUncommitted,
        })
    }

    /// The same changelogs written through `producer` (a stream thread's transactional producer)
    /// and restored at `read_committed` isolation, up to the last stable offset: what exactly-once
    /// processing needs, so a store never restores a write its transaction did not commit.
    pub fn transactional(&self, producer: Arc<dyn Producer>) -> Self {
        Changelogs { producer, isolation: Isolation::ReadCommitted, ..self.clone() }
    }

    /// The substrate the changelogs are in.
    pub fn substrate(&self) -> &Arc<dyn Substrate> {
        &self.substrate
    }

    /// The settings of the consumers that restore stores: outside any group, from the start, in
    /// large fetches.
    pub fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            isolation: self.isolation,
            group_id: None,
            auto_offset_reset: AutoOffsetReset::Earliest,
            max_partition_fetch_bytes: 4 << 20,
            fetch_max_bytes: 16 << 20,
            ..ConsumerConfig::default()
        }
    }

    /// Runs a future to completion from a thread that may block (never from an async task).
    pub(crate) fn block_on<F: std::future::Future + Send + 'static>(&self, f: F) -> F::Output
    where
        F::Output: Send + 'static,
    {
        let handle = self.runtime.spawn(f);
        futures::executor::block_on(handle).expect("changelog task panicked")
    }

    pub(crate) fn producer(&self) -> &Arc<dyn Producer> {
        &self.producer
    }

    pub(crate) fn runtime(&self) -> &Handle {
        &self.runtime
    }

    pub(crate) fn consumer(&self) -> freshet_core::Result<Box<dyn Consumer>> {
        self.substrate.consumer(self.consumer_config())
    }

    /// Checks the changelog topic of `store` exists with `n_partitions`, creating it with `kind`'s
    /// configs when `create` is set and it does not exist.
    pub fn ensure_topic(
        &self,
        store: &str,
        topic: &str,
        n_partitions: u32,
        kind: &ChangelogKind,
        create: bool,
    ) -> Result<()> {
        let admin = self.admin.clone();
        let name = topic.to_string();
        let described = self.block_on(async move { admin.describe_topic(&name).await });
        let err = |source| Error::Changelog { store: store.to_string(), source };
        match described {
            Ok((desc, _)) if desc.n_partitions == n_partitions => Ok(()),
            Ok((desc, _)) => Err(Error::ChangelogPartitions {
                store: store.to_string(),
                topic: topic.to_string(),
                expected: n_partitions,
                actual: desc.n_partitions,
            }),
            Err(freshet_core::Error::UnknownTopic(_)) if create => {
                let admin = self.admin.clone();
                let new = NewTopic { name: topic.to_string(), n_partitions, configs: kind.topic_configs() };
                match self.block_on(async move { admin.create_topic(new).await }) {
                    Ok(()) | Err(freshet_core::Error::TopicExists(_)) => Ok(()),
                    Err(e) => Err(err(e)),
                }
            }
            Err(freshet_core::Error::UnknownTopic(_)) => {
                Err(Error::ChangelogMissing { store: store.to_string(), topic: topic.to_string() })
            }
            Err(e) => Err(err(e)),
        }
    }

    /// `(log start, end)` offsets of a changelog partition.
    pub(crate) fn bounds(&self, store: &str, tp: &TopicPartition) -> Result<(i64, i64)> {
        let admin = self.admin.clone();
        let tp2 = tp.clone();
        let end_spec = match self.isolation {
            Isolation::ReadCommitted => OffsetSpec::LastStable,
            Isolation::ReadUncommitted => OffsetSpec::Latest,
        };
        let (start, end) = self
            .block_on(async move {
                let start = admin.list_offset(&tp2, OffsetSpec::Earliest).await?;
                let end = admin.list_offset(&tp2, end_spec).await?;
                Ok::<_, freshet_core::Error>((start, end))
            })
            .map_err(|source| Error::Changelog { store: store.to_string(), source })?;
        Ok((start.map_or(0, |o| o.0), end.map_or(0, |o| o.0)))
    }
}

/// What kind of store a changelog serves, which decides its topic configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangelogKind {
    /// Key-value store: compacted.
    KeyValue,
    /// Window or session store: compacted, and deleted past the store's retention plus a day (as
    /// Kafka Streams' `windowstore.changelog.additional.retention.ms`).
    Windowed {
        /// The store's retention.
        retention_ms: i64,
    },
}

impl ChangelogKind {
    /// The topic configs a changelog of this kind is created with.
    pub fn topic_configs(&self) -> BTreeMap<String, String> {
        let mut configs = BTreeMap::new();
        match self {
            ChangelogKind::KeyValue => {
                configs.insert("cleanup.policy".to_string(), "compact".to_string());
            }
            ChangelogKind::Windowed { retention_ms } => {
                configs.insert("cleanup.policy".to_string(), "compact,delete".to_string());
                configs.insert("retention.ms".to_string(), retention_ms.saturating_add(86_400_000).to_string());
            }
        }
        configs
    }
}

/// The changelog topic of a store: `<application id>-<store name>-changelog`.
pub fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

/// A batch sent to the changelog and not yet applied below.
struct InFlight {
    seq: u64,
    /// Shared with the task sending it, which encodes straight from it.
    writes: Arc<Vec<Write>>,
    handle: JoinHandle<freshet_core::Result<Option<(i64, i64)>>>,
}

/// The changelog layer of one store (see the module docs).
///
/// Writes are kept once, in the batch that carries them (`buffer` until it is sent, then an
/// [`InFlight`]); a hash table finds each key's latest pending write by its place, `(batch seq,
/// index)`. When a batch is acknowledged, the writes in it that are still their key's latest are
/// applied below (older ones would only be overwritten) and leave the table.
pub(crate) struct ChangeLogger {
    store: String,
    changelogs: Changelogs,
    tp: TopicPartition,
    batch_bytes: usize,
    max_in_flight: usize,
    /// Writes not sent yet: the batch with sequence number `next_seq`.
    buffer: Vec<Write>,
    buffer_bytes: usize,
    /// Sent batches, oldest first, with consecutive sequence numbers.
    in_flight: VecDeque<InFlight>,
    /// The latest pending write of each key, as `(batch seq, index in the batch)`.
    latest: HashTable<(u64, u32)>,
    hasher: RandomState,
    /// The keys of `latest` in key order, once a scan has needed them: a store read and written
    /// only by key never pays for keeping them sorted.
    pending_order: RefCell<Option<BTreeSet<Bytes>>>,
    next_seq: u64,
    /// Fires when the newest batch sent has its answer: the next batch waits for it, so batches
    /// reach the changelog in the order they were written.
    previous_done: Option<tokio::sync::oneshot::Receiver<()>>,
    /// The changelog offset after the last acknowledged write: the checkpoint offset once the
    /// store below is flushed.
    next_offset: Option<i64>,
    failed: bool,
}

impl std::fmt::Debug for ChangeLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeLogger")
            .field("store", &self.store)
            .field("tp", &self.tp)
            .field("pending", &self.latest.len())
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

/// The write at `(seq, index)`: in the buffer (`seq == next_seq`) or in a batch in flight.
fn write_at<'a>(buffer: &'a [Write], in_flight: &'a VecDeque<InFlight>, next_seq: u64, at: (u64, u32)) -> &'a Write {
    let (seq, i) = at;
    if seq == next_seq {
        &buffer[i as usize]
    } else {
        let first = in_flight.front().expect("a pending write's batch is in flight").seq;
        &in_flight[(seq - first) as usize].writes[i as usize]
    }
}

impl ChangeLogger {
    pub(crate) fn new(store: &str, changelogs: Changelogs, tp: TopicPartition, batch_bytes: usize) -> Self {
        ChangeLogger {
            store: store.to_string(),
            changelogs,
            tp,
            batch_bytes: batch_bytes.max(1),
            max_in_flight: 4,
            buffer: Vec::new(),
            buffer_bytes: 0,
            in_flight: VecDeque::new(),
            latest: HashTable::new(),
            hasher: RandomState::default(),
            pending_order: RefCell::new(None),
            next_seq: 0,
            previous_done: None,
            next_offset: None,
            failed: false,
        }
    }

    pub(crate) fn changelogs(&self) -> &Changelogs {
        &self.changelogs
    }

    pub(crate) fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// Sets where the changelog ends after a restore.
    pub(crate) fn set_next_offset(&mut self, offset: i64) {
        self.next_offset = Some(offset);
    }

    pub(crate) fn next_offset(&self) -> Option<i64> {
        self.next_offset
    }

    fn check(&self) -> Result<()> {
        if self.failed {
            return Err(Error::Changelog {
                store: self.store.clone(),
                source: freshet_core::Error::Internal("an earlier changelog write failed; reopen the task".into()),
            });
        }
        Ok(())
    }

    fn find(&self, key: &[u8]) -> Option<(u64, u32)> {
        if self.latest.is_empty() {
            return None; // the common case after a commit: no hashing
        }
        let (buffer, in_flight, next_seq) = (&self.buffer, &self.in_flight, self.next_seq);
        let eq = |&at: &(u64, u32)| write_at(buffer, in_flight, next_seq, at).0 == key;
        self.latest.find(self.hasher.hash_one(key), eq).copied()
    }

    /// A pending write of `key`, if any: `Some(None)` is a pending delete.
    pub(crate) fn pending(&self, key: &[u8]) -> Option<Option<Bytes>> {
        let at = self.find(key)?;
        Some(write_at(&self.buffer, &self.in_flight, self.next_seq, at).1.clone())
    }

    /// Pending writes in `range`, in key order.
    pub(crate) fn pending_range(&self, range: &ScanRange) -> impl Iterator<Item = (Bytes, Option<Bytes>)> {
        let mut out = Vec::new();
        if !range.is_empty() && !self.latest.is_empty() {
            let (buffer, in_flight, next_seq) = (&self.buffer, &self.in_flight, self.next_seq);
            let mut order = self.pending_order.borrow_mut();
            let order = order.get_or_insert_with(|| {
                self.latest.iter().map(|&at| write_at(buffer, in_flight, next_seq, at).0.clone()).collect()
            });
            for key in order.range::<[u8], _>(range.as_slices()) {
                let at = self.find(key).expect("an ordered pending key is pending");
                out.push((key.clone(), write_at(buffer, in_flight, next_seq, at).1.clone()));
            }
        }
        out.into_iter()
    }

    /// Logs writes; applies acknowledged batches to `inner`.
    pub(crate) fn record(&mut self, writes: Vec<Write>, inner: &mut dyn BytesStore) -> Result<()> {
        for (k, v) in writes {
            self.record_one(k, v, inner)?;
        }
        Ok(())
    }

    /// Logs one write; applies acknowledged batches to `inner`.
    pub(crate) fn record_one(&mut self, key: Bytes, value: Option<Bytes>, inner: &mut dyn BytesStore) -> Result<()> {
        self.check()?;
        self.buffer_bytes += key.len() + value.as_ref().map_or(0, Bytes::len) + 24;
        let at = (self.next_seq, u32::try_from(self.buffer.len()).expect("batches hold fewer than 2^32 writes"));
        let hash = self.hasher.hash_one(&key[..]);
        let (buffer, in_flight, next_seq) = (&self.buffer, &self.in_flight, self.next_seq);
        let eq = |&at: &(u64, u32)| write_at(buffer, in_flight, next_seq, at).0 == key;
        match self.latest.find_mut(hash, eq) {
            Some(slot) => *slot = at,
            None => {
                if let Some(order) = self.pending_order.get_mut() {
                    order.insert(key.clone());
                }
                self.buffer.push((key, value));
                let (buffer, in_flight, hasher) = (&self.buffer, &self.in_flight, &self.hasher);
                let rehash = |&at: &(u64, u32)| hasher.hash_one(&write_at(buffer, in_flight, next_seq, at).0[..]);
                self.latest.insert_unique(hash, at, rehash);
                return self.maybe_send(inner);
            }
        }
        self.buffer.push((key, value));
        self.maybe_send(inner)
    }

    /// Sends the buffer once it reaches `batch_bytes` (batches stay near it however many writes
    /// come at once, e.g. a whole cache flushed at commit), then waits while too many batches
    /// are in flight.
    fn maybe_send(&mut self, inner: &mut dyn BytesStore) -> Result<()> {
        if self.buffer_bytes >= self.batch_bytes {
            self.send_buffer();
            while self.in_flight.len() > self.max_in_flight {
                self.complete_oldest(inner)?;
            }
        }
        Ok(())
    }

    fn send_buffer(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let writes = Arc::new(std::mem::take(&mut self.buffer));
        self.buffer_bytes = 0;
        let producer = self.changelogs.producer().clone();
        let tp = self.tp.clone();
        let previous = self.previous_done.take();
        let (done, next_waits) = tokio::sync::oneshot::channel();
        self.previous_done = Some(next_waits);
        let sent = writes.clone();
        let now_ms = self.changelogs.clock.now_ms();
        let handle = self.changelogs.runtime().spawn(async move {
            if let Some(previous) = previous {
                // An error means the previous task ended without sending (it failed): the store
                // has failed too, and this batch is never applied.
                let _ = previous.await;
            }
            let result = producer.send_to_partition(&tp, &sent, now_ms).await;
            let _ = done.send(());
            result
        });
        self.in_flight.push_back(InFlight { seq: self.next_seq, writes, handle });
        self.next_seq += 1;
    }

    /// Waits for the oldest batch's acknowledgement and applies its writes that are still their
    /// key's latest to `inner`.
    fn complete_oldest(&mut self, inner: &mut dyn BytesStore) -> Result<()> {
        let Some(front) = self.in_flight.front_mut() else { return Ok(()) };
        let result = futures::executor::block_on(&mut front.handle).expect("changelog send task panicked");
        match result {
            Ok(Some((_, last))) => self.next_offset = Some(last + 1),
            Ok(None) => {}
            Err(source) => {
                self.failed = true;
                return Err(Error::Changelog { store: self.store.clone(), source });
            }
        }
        let seq = front.seq;
        let mut latest = Vec::with_capacity(front.writes.len());
        let order = self.pending_order.get_mut();
        for (i, (key, _)) in front.writes.iter().enumerate() {
            let at = (seq, i as u32);
            let is_latest = match self.latest.find_entry(self.hasher.hash_one(&key[..]), |&e| e == at) {
                Ok(entry) => {
                    entry.remove();
                    true
                }
                Err(_) => false,
            };
            if is_latest {
                if let Some(order) = order.as_mut() {
                    order.remove(key);
                }
            }
            latest.push(is_latest);
        }
        let flight = self.in_flight.pop_front().expect("the front batch");
        let writes = Arc::try_unwrap(flight.writes).unwrap_or_else(|shared| (*shared).clone());
        let mut is_latest = latest.into_iter();
        let applied: Vec<Write> = writes.into_iter().filter(|_| is_latest.next() == Some(true)).collect();
        if let Err(e) = inner.write(applied) {
            self.failed = true;
            return Err(e);
        }
        Ok(())
    }

    /// Sends what is buffered, waits for every acknowledgement and applies everything to `inner`.
    pub(crate) fn flush(&mut self, inner: &mut dyn BytesStore) -> Result<()> {
        self.check()?;
        self.send_buffer();
        while !self.in_flight.is_empty() {
            self.complete_oldest(inner)?;
        }
        debug_assert!(self.latest.is_empty());
        Ok(())
    }
}

/// The offset after the last batch of `replay` (its `from` when it holds none).
fn replay_next_offset(replay: &Replay) -> i64 {
    freshet_core::batch::Batches::new(&replay.bytes)
        .filter_map(|b| b.ok())
        .last()
        .map_or(replay.from, |b| b.next_offset())
}

/// Where a restore stands, reported to a [`RestoreListener`].
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreProgress {
    /// The store.
    pub store: String,
    /// The changelog partition.
    pub changelog: TopicPartition,
    /// The offset the restore started at.
    pub start_offset: i64,
    /// The changelog's end when the restore started: the restore stops there.
    pub end_offset: i64,
    /// The next offset to apply.
    pub position: i64,
    /// Records applied so far.
    pub n_records: u64,
    /// Record bytes (keys and values) applied so far.
    pub n_bytes: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

impl RestoreProgress {
    /// Offsets left to read.
    pub fn remaining_offsets(&self) -> i64 {
        (self.end_offset - self.position).max(0)
    }

    /// Records applied per second so far.
    pub fn records_per_sec(&self) -> f64 {
        self.n_records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Megabytes (10^6) applied per second so far.
    pub fn mb_per_sec(&self) -> f64 {
        self.n_bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The fraction done, 0 to 1.
    pub fn fraction_done(&self) -> f64 {
        let total = (self.end_offset - self.start_offset).max(0);
        if total == 0 {
            return 1.0;
        }
        (self.position - self.start_offset).clamp(0, total) as f64 / total as f64
    }
}

/// Told about restores, e.g. to draw a progress bar. Progress comes at most every
/// `RESTORE_PROGRESS_EVERY` and after the last batch.
pub trait RestoreListener: Send + Sync {
    /// A restore begins.
    fn on_start(&self, progress: &RestoreProgress);
    /// Batches were applied.
    fn on_progress(&self, progress: &RestoreProgress);
    /// The restore reached the end offset.
    fn on_end(&self, progress: &RestoreProgress);
}

/// How often restore progress is reported.
pub const RESTORE_PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Replays `tp` from `start` up to `end` into `inner`, one write batch per fetched batch set.
pub(crate) fn restore(
    store: &str,
    changelogs: &Changelogs,
    tp: &TopicPartition,
    start: i64,
    end: i64,
    inner: &mut dyn BytesStore,
    listener: Option<&dyn RestoreListener>,
) -> Result<RestoreProgress> {
    let started = Instant::now();
    let mut progress = RestoreProgress {
        store: store.to_string(),
        changelog: tp.clone(),
        start_offset: start,
        end_offset: end,
        position: start,
        n_records: 0,
        n_bytes: 0,
        elapsed: Duration::ZERO,
    };
    tracing::info!(store, topic = %tp.topic, partition = tp.partition, start, end, "restoring store from its changelog");
    if let Some(l) = listener {
        l.on_start(&progress);
    }
    let err = |source| Error::Changelog { store: store.to_string(), source };
    if start < end {
        let consumer = changelogs.consumer().map_err(err)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<freshet_core::Result<Vec<freshet_core::ConsumedBatches>>>(2);
        // A fetching task reads ahead while this thread applies, with at most two fetches queued.
        let fetch_tp = tp.clone();
        let fetcher = changelogs.runtime().spawn(async move {
            let mut consumer = consumer;
            if let Err(e) = consumer.assign(vec![fetch_tp.clone()]).await {
                let _ = tx.send(Err(e)).await;
                return;
            }
            if let Err(e) = consumer.seek_to_offset(&fetch_tp, start) {
                let _ = tx.send(Err(e)).await;
                return;
            }
            loop {
                let position = consumer.position(&fetch_tp).unwrap_or(end);
                // At read_committed, a client may stop short of the end when transaction markers
                // or aborted records are all that remain.
                if position >= end || consumer.reached_end(&fetch_tp) {
                    return;
                }
                let polled = consumer.poll(Duration::from_millis(500)).await;
                let stop = polled.is_err();
                if tx.send(polled).await.is_err() || stop {
                    return;
                }
            }
        });
        let mut last_report = Instant::now();
        while progress.position < end {
            let polled = match rx.blocking_recv() {
                Some(p) => p.map_err(err)?,
                None => {
                    // The fetcher stops without an error only when its position reached the end:
                    // what lies between the last batch applied and the end is transaction markers
                    // or aborted records, which a read_committed consumer passes over.
                    progress.position = end;
                    break;
                }
            };
            for batches in polled {
                let replay = Replay { bytes: batches.bytes, from: progress.position, to: end };
                let next_offset = replay_next_offset(&replay);
                let (n_records, n_bytes) = replay.count()?;
                progress.n_records += n_records;
                progress.n_bytes += n_bytes;
                progress.position = progress.position.max(next_offset.min(end));
                inner.restore(replay)?;
            }
            if last_report.elapsed() >= RESTORE_PROGRESS_EVERY {
                last_report = Instant::now();
                progress.elapsed = started.elapsed();
                tracing::info!(
                    store,
                    position = progress.position,
                    remaining = progress.remaining_offsets(),
                    records = progress.n_records,
                    mb_per_sec = progress.mb_per_sec(),
                    "restoring"
                );
                if let Some(l) = listener {
                    l.on_progress(&progress);
                }
            }
        }
        fetcher.abort();
        inner.finish_restore()?;
        if progress.position < end {
            return Err(err(freshet_core::Error::Internal(format!(
                "restore of {tp} stopped at offset {} before the end offset {end}",
                progress.position
            ))));
        }
    }
    progress.elapsed = started.elapsed();
    if let Some(l) = listener {
        l.on_progress(&progress);
        l.on_end(&progress);
    }
    tracing::info!(
        store,
        records = progress.n_records,
        bytes = progress.n_bytes,
        secs = progress.elapsed.as_secs_f64(),
        "restored store"
    );
    Ok(progress)
}
