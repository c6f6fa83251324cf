//! One partition: an ordered list of segments, its offsets, its append queue and its durability.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::{Bytes, BytesMut};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit};

use super::checkpoint::{sync_dir, Checkpoint};
use super::producers::{BatchFacts, Checked, ProducerState};
use super::segment::{self, Segment};
use super::txn::{AbortedTxn, Isolation, Marker, ReadLimit};
use crate::batch::{self, BatchView, Batches, TimestampType};
use crate::clock::Clock;
use crate::config::{Durability, LogConfig, TopicConfig};
use crate::error::{Error, IoContext, Result};

mod compaction;
mod producer_state;
mod read;
mod recovery;
mod replica;
mod retention;

pub(crate) use compaction::SealedSegment;

/// What a partition takes from the log it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    pub(crate) durability: Durability,
    pub(crate) clock: Arc<dyn Clock>,
    /// The bound on the producers a partition remembers.
    pub(crate) max_producers: usize,
    /// [`LogConfig::replicated`].
    pub(crate) replicated: bool,
}

impl Host {
    pub(crate) fn of(config: &LogConfig) -> Self {
        Host {
            durability: config.durability,
            clock: config.clock.clone(),
            max_producers: config.max_producers_per_partition,
            replicated: config.replicated,
        }
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Offset of the batch's last record.
    pub last_offset: i64,
    /// The append time stamped on the batch, for `LogAppendTime` topics.
    pub log_append_time: Option<i64>,
    /// The partition's log start offset after the append.
    pub log_start_offset: i64,
    /// The leader epoch the batch was written under (for a retry recognized as stored, the
    /// epoch current when it was): waiting for its replication fails once the copy leaves it.
    pub leader_epoch: i32,
}

/// A range of a segment file holding whole batches (and, when the byte budget cut it, possibly a
/// partial last batch), ready to be sent as it is or read into memory.
#[derive(Debug, Clone)]
pub struct LogSlice {
    /// The segment file. It stays readable even if retention or compaction removes the segment.
    pub file: Arc<File>,
    /// The file's path, for error messages.
    pub path: PathBuf,
    /// Byte position of the first batch.
    pub position: u64,
    /// Length in bytes.
    pub len: u64,
    /// Size of the first batch (always whole inside the slice).
    pub first_batch_bytes: u64,
}

impl LogSlice {
    /// Reads the slice and drops a trailing partial batch, so the result holds whole batches only.
    /// Every batch's CRC is checked: stored data that no longer matches is reported, never returned.
    pub fn read_whole_batches(&self) -> Result<Bytes> {
        let mut buf = BytesMut::zeroed(self.len as usize);
        self.file.read_exact_at(&mut buf, self.position).at(&self.path)?;
        let mut whole = 0usize;
        for view in Batches::new(&buf) {
            let view = view.map_err(|e| self.corrupt(whole, e))?;
            view.check_crc().map_err(|e| self.corrupt(whole, e))?;
            whole += view.size();
        }
        if whole == 0 {
            return Err(self.corrupt(0, Error::InvalidBatch("no whole batch in the slice".into())));
        }
        buf.truncate(whole);
        Ok(buf.freeze())
    }

    fn corrupt(&self, at: usize, e: Error) -> Error {
        Error::Corrupt { path: self.path.clone(), position: self.position + at as u64, detail: e.to_string() }
    }
}

/// Left by earlier versions in a partition that had held transactional batches; producer
/// snapshots replace it.
const TRANSACTIONAL_FILE: &str = "transactional";

/// What a read found.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// The data, `None` when there is nothing at or after the offset yet.
    pub slice: Option<LogSlice>,
    /// The high watermark when the read happened.
    pub high_watermark: i64,
    /// The last stable offset when the read happened: below it, every transaction has ended.
    pub last_stable_offset: i64,
    /// For a `read_committed` read, the aborted transactions with records from the read offset on.
    pub aborted: Vec<AbortedTxn>,
    /// The log start offset when the read happened.
    pub log_start_offset: i64,
    /// The log end offset when the read happened.
    pub log_end_offset: i64,
}

/// What opening a partition found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// Whether the previous run shut down cleanly.
    pub clean_shutdown: bool,
    /// Segments opened.
    pub n_segments: usize,
    /// Segments whose every batch was rescanned.
    pub n_segments_scanned: usize,
    /// Segments whose indexes were rebuilt.
    pub n_indexes_rebuilt: usize,
    /// Bytes cut off torn or corrupt tails.
    pub bytes_truncated: u64,
    /// Segments deleted because they followed a corrupt point or lay below the log start offset.
    pub n_segments_deleted: usize,
    /// Compaction swaps that a crash interrupted and that were completed.
    pub n_swaps_completed: usize,
    /// Unfinished compaction output that was discarded.
    pub n_cleaned_discarded: usize,
    /// Batches of producers read to rebuild producer state after its latest snapshot (all of
    /// them, when there was none).
    pub producer_batches_replayed: usize,
}

impl RecoveryReport {
    /// Whether opening had to repair anything.
    pub fn repaired(&self) -> bool {
        self.n_indexes_rebuilt > 0
            || self.bytes_truncated > 0
            || self.n_segments_deleted > 0
            || self.n_swaps_completed > 0
            || self.n_cleaned_discarded > 0
    }
}

/// Counters of one partition's work since it was opened (see `Log::stats`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) batches_appended: AtomicU64,
    pub(crate) bytes_appended: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
}

/// Batches written with one `writev` before their appenders are answered.
const WRITE_GROUP_BYTES: u64 = 1 << 20;

pub(crate) struct PendingAppend {
    pub(crate) batch: BytesMut,
    pub(crate) reply: oneshot::Sender<Result<AppendInfo>>,
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<PendingAppend>,
    draining: bool,
}

#[derive(Debug, Clone, Copy)]
struct Position {
    segment_base: i64,
    position: u64,
}

pub(crate) struct State {
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) log_start_offset: i64,
    high_watermark: i64,
    hw_position: Position,
    durable_offset: i64,
    pub(crate) recovery_point: i64,
    /// The recovery point as last written to the checkpoint.
    persisted_recovery_point: i64,
    /// Segments rolled but not yet synced with their indexes.
    pending_seal: Vec<i64>,
    dir_dirty: bool,
    pub(crate) cleaner_offset: i64,
    leader_epochs: Vec<(i32, i64)>,
    /// Set while the partition is replicated: the high watermark goes no further. On a leader,
    /// the lowest log end among the other in-sync replicas; on a follower, its leader's high
    /// watermark. `None`: this copy alone decides (one copy, or a leader alone in sync).
    hw_bound: Option<i64>,
    /// A follower's copy takes only its leader's batches ([`Partition::append_replicated`]);
    /// a leader's (or a lone copy's) only appends. A replicated copy opens as a follower's.
    follower: bool,
    closed: Option<Closed>,
    /// Set when an fsync failed: what is in the page cache can no longer be trusted to reach the
    /// disk, so the partition takes no more appends until it is reopened (and recovered).
    failed: Option<String>,
    /// Each producer's epoch and latest sequences, and the open and aborted transactions.
    producers: ProducerState,
    /// Producer snapshots taken when segments rolled, written by the next flush (after the
    /// segments below them are synced): `(offset, file contents)`.
    pending_snapshots: Vec<(i64, Vec<u8>)>,
    /// When the first record written since the last flush began was written (`flush.ms`).
    unflushed_since: Option<std::time::Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    Deleted,
    Shutdown,
}

/// The durable offset, and whether syncing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Durable {
    pub(crate) offset: i64,
    pub(crate) failed: bool,
}

impl State {
    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a partition always has an active segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a partition always has an active segment")
    }
    pub(crate) fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }
    /// Whether a batch of `size` bytes and `n + 1` records (time `batch_time`) must go to a new
    /// segment, when `pending_bytes` and `pending_records` are gathered for the active one.
    fn needs_roll(
        &self,
        pending_bytes: u64,
        pending_records: i64,
        size: u64,
        n: i64,
        batch_time: i64,
        config: &TopicConfig,
    ) -> bool {
        let active = self.active();
        let base_offset = active.next_offset + pending_records;
        active.size + pending_bytes > 0
            && (active.size + pending_bytes + size > config.segment_bytes
                || active.index_full(config.segment_index_bytes)
                || active.rolling_timestamp.is_some_and(|t| batch_time.saturating_sub(t) > config.segment_ms)
                || base_offset + n - active.base_offset > i64::from(u32::MAX))
    }
    fn current_epoch(&self) -> i32 {
        self.leader_epochs.last().map_or(0, |e| e.0)
    }
    fn visible_limit(&self, segment: &Segment) -> u64 {
        Self::limit_below(segment, self.hw_position)
    }
    /// How many bytes of `segment` lie below `end`.
    fn limit_below(segment: &Segment, end: Position) -> u64 {
        use std::cmp::Ordering::*;
        match segment.base_offset.cmp(&end.segment_base) {
            Less => segment.size,
            Equal => end.position.min(segment.size),
            Greater => 0,
        }
    }
    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            log_start_offset: self.log_start_offset,
            recovery_point: self.recovery_point,
            high_watermark: self.high_watermark,
            cleaner_offset: self.cleaner_offset,
            leader_epochs: self.leader_epochs.clone(),
        }
    }
    /// Total bytes of all segments.
    pub(crate) fn size(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }
}

/// One partition of a topic.
pub struct Partition {
    topic: String,
    index: u32,
    dir: PathBuf,
    config: RwLock<Arc<TopicConfig>>,
    durability: Durability,
    clock: Arc<dyn Clock>,
    max_producers: usize,
    state: Mutex<State>,
    queue: Mutex<Queue>,
    checkpoint_lock: Mutex<()>,
    high_watermark_tx: watch::Sender<i64>,
    log_end_tx: watch::Sender<i64>,
    durable_tx: watch::Sender<Durable>,
    pub(crate) flush_queued: AtomicBool,
    /// Held by the flusher thread that is syncing this partition.
    pub(crate) flush_lock: Mutex<()>,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Partition({}-{})", self.topic, self.index)
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

impl Partition {
    /// Creates a new, empty partition directory.
    pub(crate) fn create(
        dir: PathBuf,
        topic: &str,
        index: u32,
        config: Arc<TopicConfig>,
        durability: Host,
    ) -> Result<Arc<Self>> {
        // A directory here is a leftover of a creation that crashed before the topic's metadata
        // named it: nothing refers to it.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).at(&dir)?;
        }
        std::fs::create_dir_all(&dir).at(&dir)?;
        let checkpoint = Checkpoint {
            log_start_offset: 0,
            recovery_point: 0,
            high_watermark: 0,
            cleaner_offset: 0,
            leader_epochs: vec![(0, 0)],
        };
        let segment = Segment::create(&dir, 0)?;
        checkpoint.write(&dir)?;
        sync_dir(&dir)?;
        Ok(Self::assemble(dir, topic, index, config, durability, BTreeMap::from([(0, segment)]), checkpoint))
    }

    fn assemble(
        dir: PathBuf,
        topic: &str,
        index: u32,
        config: Arc<TopicConfig>,
        durability: Host,
        segments: BTreeMap<i64, Segment>,
        checkpoint: Checkpoint,
    ) -> Arc<Self> {
        let active = segments.values().next_back().expect("at least one segment");
        let leo = active.next_offset;
        let hw_position = Position { segment_base: active.base_offset, position: active.size };
        let mut state = State {
            log_start_offset: checkpoint.log_start_offset,
            high_watermark: leo,
            hw_position,
            durable_offset: leo,
            recovery_point: active.base_offset,
            persisted_recovery_point: checkpoint.recovery_point.min(active.base_offset),
            pending_seal: Vec::new(),
            dir_dirty: false,
            cleaner_offset: checkpoint.cleaner_offset.clamp(checkpoint.log_start_offset, leo),
            leader_epochs: checkpoint.leader_epochs,
            hw_bound: None,
            // A replicated copy takes no appends until its broker's image and registration say
            // it leads: a restarted broker's first image may still name it the leader of a
            // partition another broker has led since, under a newer epoch.
            follower: durability.replicated,
            closed: None,
            failed: None,
            producers: ProducerState::default(),
            pending_snapshots: Vec::new(),
            unflushed_since: None,
            segments,
        };
        // A replicated copy shows no more than its checkpoint said was on every in-sync replica,
        // and its own appends and flushes do not move that until the replication bounds it.
        if durability.replicated {
            let hw = checkpoint.high_watermark.clamp(state.log_start_offset, leo);
            state.hw_bound = Some(hw);
            match state.position_of(hw) {
                Ok(position) => (state.high_watermark, state.hw_position) = (hw, position),
                Err(error) => tracing::warn!(topic, partition = index, %error, "high watermark not restored"),
            }
        }
        let hw = state.high_watermark;
        Arc::new(Partition {
            topic: topic.to_owned(),
            index,
            dir,
            config: RwLock::new(config),
            durability: durability.durability,
            clock: durability.clock,
            max_producers: durability.max_producers,
            state: Mutex::new(state),
            queue: Mutex::new(Queue::default()),
            checkpoint_lock: Mutex::new(()),
            high_watermark_tx: watch::Sender::new(hw),
            log_end_tx: watch::Sender::new(leo),
            durable_tx: watch::Sender::new(Durable { offset: leo, failed: false }),
            flush_queued: AtomicBool::new(false),
            flush_lock: Mutex::new(()),
            counters: Counters::default(),
        })
    }

    /// Topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// Partition index.
    pub fn index(&self) -> u32 {
        self.index
    }
    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub(crate) fn config(&self) -> Arc<TopicConfig> {
        self.config.read().expect("config lock").clone()
    }
    pub(crate) fn set_config(&self, config: Arc<TopicConfig>) {
        *self.config.write().expect("config lock") = config;
    }
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("partition state lock poisoned")
    }

    /// `(log start, high watermark, log end)` offsets.
    pub fn offsets(&self) -> (i64, i64, i64) {
        let state = self.lock();
        (state.log_start_offset, state.high_watermark, state.log_end_offset())
    }

    /// The last stable offset: below it every transaction has ended (the high watermark when no
    /// transaction is open).
    pub fn last_stable_offset(&self) -> i64 {
        let mut state = self.lock();
        let hw = state.high_watermark;
        state.producers.txns.last_stable_offset(hw)
    }

    /// The offset below which everything has been synced to disk.
    pub fn durable_offset(&self) -> i64 {
        self.lock().durable_offset
    }

    /// A receiver that sees every change of the high watermark.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark_tx.subscribe()
    }
    /// A receiver that sees every change of the log end offset (what followers wait on).
    pub fn watch_log_end(&self) -> watch::Receiver<i64> {
        self.log_end_tx.subscribe()
    }
    pub(crate) fn watch_durable(&self) -> watch::Receiver<Durable> {
        self.durable_tx.subscribe()
    }
    /// When an append to this partition is acknowledged: the log's durability, or after its fsync
    /// when the topic says `flush.messages=1`.
    pub(crate) fn durability(&self) -> Durability {
        if self.config().flush_messages == Some(1) {
            Durability::Fsync
        } else {
            self.durability
        }
    }

    /// Whether the topic's `flush.messages` or `flush.ms` calls for an fsync now.
    pub(crate) fn flush_due(&self) -> bool {
        let config = self.config();
        if config.flush_messages.is_none() && config.flush_ms.is_none() {
            return false;
        }
        let state = self.lock();
        let unflushed = u64::try_from(state.log_end_offset() - state.durable_offset).unwrap_or(0);
        config.flush_messages.is_some_and(|n| unflushed >= n)
            || config.flush_ms.is_some_and(|ms| {
                state.unflushed_since.is_some_and(|t| t.elapsed() >= std::time::Duration::from_millis(ms))
            })
    }

    /// Queues an append; returns `true` when the caller must start a drain (see [`Self::drain`]).
    pub(crate) fn enqueue(&self, item: PendingAppend) -> bool {
        let mut queue = self.queue.lock().expect("queue lock");
        queue.items.push_back(item);
        if queue.draining {
            false
        } else {
            queue.draining = true;
            true
        }
    }

    /// Appends everything queued, in queue order, until the queue is empty. Runs on a blocking
    /// thread; only one drain runs per partition at a time, which keeps appends in order.
    ///
    /// `on_write` runs after every write of up to `WRITE_GROUP_BYTES`, with no lock held, so the
    /// flusher can start syncing the first megabyte while the next one is being written.
    pub(crate) fn drain(&self, on_write: impl Fn()) {
        loop {
            let items: Vec<PendingAppend> = {
                let mut queue = self.queue.lock().expect("queue lock");
                if queue.items.is_empty() {
                    queue.draining = false;
                    return;
                }
                let mut bytes = 0u64;
                let mut n = 0;
                while n < queue.items.len() && bytes < WRITE_GROUP_BYTES {
                    bytes += queue.items[n].batch.len() as u64;
                    n += 1;
                }
                queue.items.drain(..n).collect()
            };
            if self.append_group(items) {
                on_write();
            }
        }
    }

    /// Assigns offsets to a group of (already validated) batches and writes them with as few writes
    /// as possible, rolling the segment where needed. Each reply carries the batch's own result.
    fn append_group(&self, items: Vec<PendingAppend>) -> bool {
        let config = self.config();
        let now = self.clock.now_ms();
        let mut state = self.lock();
        if state.closed.is_some() || state.failed.is_some() || state.follower {
            for item in items {
                let error = match (&state.failed, state.closed) {
                    (None, None) => Error::NotLeader { topic: self.topic.clone(), partition: self.index },
                    (Some(failure), _) => Error::StorageFailed(format!(
                        "partition {}-{} is offline after a failed fsync ({failure}); reopen the log to recover it",
                        self.topic, self.index
                    )),
                    (None, Some(Closed::Deleted)) => Error::UnknownTopic(self.topic.clone()),
                    (None, _) => Error::Closed,
                };
                let _ = item.reply.send(Err(error));
            }
            return false;
        }
        let mut group: Vec<(PendingAppend, AppendInfo)> = Vec::new();
        let mut group_bytes = 0u64;
        let mut group_records = 0i64;
        let mut wrote = false;
        let mut failed = false;
        let mut duplicates = Vec::new();
        for mut item in items {
            if failed {
                // Checked against producer state that included what failed to be written.
                let _ = item.reply.send(Err(Error::Internal("an append before this one failed; retry it".into())));
                continue;
            }
            // Validated before it was queued (`Partition::validate`); parse only.
            let view = match BatchView::parse(&item.batch) {
                Ok(view) => view,
                Err(e) => {
                    let _ = item.reply.send(Err(e));
                    continue;
                }
            };
            // Producer state decides first: a retry of a stored batch is answered with its
            // offsets (once the writes before it are done), a gap or a fenced epoch is refused.
            let mut facts = match BatchFacts::of(&view, state.log_end_offset() + group_records) {
                Ok(facts) => facts,
                Err(e) => {
                    let _ = item.reply.send(Err(e));
                    continue;
                }
            };
            match state.producers.check(&facts) {
                Ok(Checked::Append) => {}
                Ok(Checked::Duplicate { base_offset, last_offset }) => {
                    let info = AppendInfo {
                        base_offset,
                        last_offset,
                        log_append_time: None,
                        log_start_offset: state.log_start_offset,
                        leader_epoch: state.current_epoch(),
                    };
                    duplicates.push((item, info));
                    continue;
                }
                Err(e) => {
                    let _ = item.reply.send(Err(e));
                    continue;
                }
            }
            let n = i64::from(view.last_offset_delta());
            // As in Kafka, `segment.ms` compares record time: this batch's against the first batch's.
            let batch_time = match config.timestamp_type {
                TimestampType::LogAppendTime => now,
                TimestampType::CreateTime => view.max_timestamp(),
            };
            let size = item.batch.len() as u64;
            if state.needs_roll(group_bytes, group_records, size, n, batch_time, &config) {
                // What is gathered belongs in the old segment. (`drain` already hands over at most
                // about WRITE_GROUP_BYTES at a time, so no other split is needed here.)
                match self.write_group(&mut state, std::mem::take(&mut group), &config) {
                    Some(w) => wrote |= w,
                    None => {
                        failed = true;
                        let _ =
                            item.reply.send(Err(Error::Internal("an append before this one failed; retry it".into())));
                        continue;
                    }
                }
                group_bytes = 0;
                group_records = 0;
                let new_base = state.log_end_offset();
                if let Err(e) = self.roll(&mut state, new_base, &config) {
                    let _ = item.reply.send(Err(e));
                    continue;
                }
            }
            let base_offset = state.log_end_offset() + group_records;
            let log_append_time = (config.timestamp_type == TimestampType::LogAppendTime).then_some(now);
            batch::assign_in_place(&mut item.batch, base_offset, state.current_epoch(), log_append_time);
            // Applied before the write so that a retry later in this group is recognized; a failed
            // write reloads the state from what is on disk.
            facts.base_offset = base_offset;
            facts.last_offset = base_offset + n;
            state.producers.apply(&facts, self.max_producers);
            group_bytes += size;
            group_records += n + 1;
            let info = AppendInfo {
                base_offset,
                last_offset: base_offset + n,
                log_append_time,
                log_start_offset: state.log_start_offset,
                leader_epoch: state.current_epoch(),
            };
            group.push((item, info));
        }
        match self.write_group(&mut state, group, &config) {
            Some(w) => wrote |= w,
            None => failed = true,
        }
        for (item, info) in duplicates {
            let reply = if failed {
                Err(Error::Internal("an append before this retried batch failed; retry it".into()))
            } else {
                Ok(info)
            };
            let _ = item.reply.send(reply);
        }
        wrote
    }

    /// Checks a batch before it is queued for append (size, framing, CRC, counts and, on
    /// compacted topics, keys) and, when the topic's `compression.type` names a codec other than the
    /// batch's, compresses it anew with that codec, as Kafka's broker does (control batches stay
    /// as they are); the batch as stored must fit `max.message.bytes` too. Pure CPU work, done
    /// by the caller so that the preparation of one batch overlaps the write of the previous ones.
    pub(crate) fn prepare(&self, batch: BytesMut) -> Result<BytesMut> {
        let config = self.config();
        self.validate_with(&batch, &config)?;
        let Some(codec) = config.compression else { return Ok(batch) };
        let view = BatchView::parse(&batch)?;
        if view.is_control() || view.compression()? == codec {
            return Ok(batch);
        }
        let recompressed = batch::recompress(&view, codec)?;
        if recompressed.len() > config.max_message_bytes {
            return Err(Error::BatchTooLarge {
                topic: self.topic.clone(),
                size: recompressed.len(),
                max: config.max_message_bytes,
            });
        }
        Ok(recompressed)
    }

    fn validate_with(&self, batch: &[u8], config: &TopicConfig) -> Result<()> {
        if batch.len() > config.max_message_bytes {
            return Err(Error::BatchTooLarge {
                topic: self.topic.clone(),
                size: batch.len(),
                max: config.max_message_bytes,
            });
        }
        let view = BatchView::parse(batch)?;
        if view.size() != batch.len() {
            return Err(Error::InvalidBatch(format!(
                "batch length field says {} bytes but {} were given; append one batch at a time",
                view.size(),
                batch.len()
            )));
        }
        view.validate()?;
        if view.is_control() {
            if view.producer_id() < 0 {
                return Err(Error::InvalidBatch("a control batch without a producer id".into()));
            }
            Marker::of(&view)?;
        } else if view.is_transactional() && view.producer_id() < 0 {
            return Err(Error::InvalidBatch("a transactional batch without a producer id".into()));
        }
        if config.cleanup_policy.compact && !view.is_control() {
            // Every keyless record is named, so a client can fail exactly those.
            let mut keyless = Vec::new();
            let mut index = 0i32;
            view.for_each_record(|record| {
                if record.key.is_none() {
                    keyless.push((index, "Compacted topic cannot accept message without key.".to_string()));
                }
                index += 1;
                Ok(())
            })?;
            if !keyless.is_empty() {
                return Err(Error::InvalidRecords {
                    message: format!(
                        "{} of {index} records have no key, and topic \"{}\" is compacted (cleanup.policy includes \
                         compact): every record needs a key",
                        keyless.len(),
                        self.topic
                    ),
                    records: keyless,
                });
            }
        }
        Ok(())
    }

    /// Writes a group of batches whose offsets are assigned: `Some(whether anything was written)`,
    /// `None` when the write failed (every batch of the group is answered with the error).
    fn write_group(
        &self,
        state: &mut State,
        group: Vec<(PendingAppend, AppendInfo)>,
        config: &TopicConfig,
    ) -> Option<bool> {
        if group.is_empty() {
            return Some(false);
        }
        let buffers: Vec<&[u8]> = group.iter().map(|(item, _)| &item.batch[..]).collect();
        let ranges: Vec<(i64, i64)> = group.iter().map(|(_, info)| (info.base_offset, info.last_offset)).collect();
        let result = self.write_batches(state, &buffers, &ranges, config);
        drop(buffers);
        match result {
            Ok(()) => {
                for (item, info) in group {
                    let _ = item.reply.send(Ok(info));
                }
                Some(true)
            }
            Err(e) => {
                let message = e.to_string();
                for (item, _) in group {
                    let _ =
                        item.reply.send(Err(Error::Internal(format!("append failed, nothing was written: {message}"))));
                }
                None
            }
        }
    }

    /// Writes batches whose offsets are assigned (`ranges`: each one's base and last offset) with
    /// one write, and moves the log end and, as far as durability and the other replicas allow,
    /// the high watermark. A failed write leaves nothing behind and reloads producer state (the
    /// batches were applied to it before the write).
    fn write_batches(
        &self,
        state: &mut State,
        buffers: &[&[u8]],
        ranges: &[(i64, i64)],
        config: &TopicConfig,
    ) -> Result<()> {
        if buffers.is_empty() {
            return Ok(());
        }
        // Offsets are contiguous: each batch starts where the one before it (or the log) ends. A
        // gap or an overlap here would be served to every reader and follower as it is.
        let mut next = state.log_end_offset();
        for &(base, last) in ranges {
            assert_eq!(
                base, next,
                "partition {}-{}: a batch was given base offset {base} where the log ends at {next}",
                self.topic, self.index
            );
            assert!(last >= base, "a batch whose last offset is below its base");
            next = last + 1;
        }
        match state.active_mut().append(buffers, config.index_interval_bytes) {
            Ok(()) => {
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
                self.counters.batches_appended.fetch_add(buffers.len() as u64, Ordering::Relaxed);
                let bytes: usize = buffers.iter().map(|b| b.len()).sum();
                self.counters.bytes_appended.fetch_add(bytes as u64, Ordering::Relaxed);
                let leo = state.log_end_offset();
                assert_eq!(leo, next, "partition {}-{}: the log end after an append", self.topic, self.index);
                let active = state.active();
                let end = Position { segment_base: active.base_offset, position: active.size };
                // Without fsync acknowledgements, what is written is visible at once (as far as
                // the other in-sync replicas allow); the durable offset still moves only with
                // syncs (the interval flusher's, or a roll's).
                state.unflushed_since.get_or_insert_with(std::time::Instant::now);
                self.log_end_tx.send_replace(leo);
                if self.durability() != Durability::Fsync {
                    self.raise_high_watermark(state, leo, end);
                }
                tracing::debug!(topic = %self.topic, partition = self.index, n_batches = buffers.len(), leo, "appended");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "append failed");
                if let Err(error) = self.load_producer_state(state) {
                    tracing::error!(topic = %self.topic, partition = self.index, %error, "producer state could not be reloaded; the partition stops taking appends");
                    state.failed = Some(format!("producer state could not be reloaded after a failed append: {error}"));
                }
                Err(e)
            }
        }
    }

    fn roll(&self, state: &mut State, new_base: i64, config: &TopicConfig) -> Result<()> {
        let segment = Segment::create(&self.dir, new_base)?;
        let old_base = state.active().base_offset;
        state.active_mut().seal(config.index_interval_bytes)?;
        state.segments.insert(new_base, segment);
        state.pending_seal.push(old_base);
        let snapshot = state.producers.encode(new_base);
        state.pending_snapshots.push((new_base, snapshot));
        state.dir_dirty = true;
        tracing::debug!(topic = %self.topic, partition = self.index, new_base, "rolled segment");
        Ok(())
    }

    /// Rolls the active segment if it holds data, so that retention can delete it.
    pub(crate) fn roll_if_not_empty(&self) -> Result<()> {
        let config = self.config();
        let mut state = self.lock();
        if state.active().size > 0 {
            let leo = state.log_end_offset();
            self.roll(&mut state, leo, &config)?;
        }
        Ok(())
    }

    /// Makes everything written so far durable: syncs rolled segments with their indexes, the
    /// directory when files were created, and the active segment; then advances the durable offset
    /// (and, with `Durability::Fsync`, the high watermark) and wakes those waiting on it.
    pub(crate) fn flush(&self) -> Result<()> {
        let (seal_files, active_file, active_path, target, target_position, dir_dirty, sealed_bases, snapshots) = {
            let mut state = self.lock();
            let snapshots = std::mem::take(&mut state.pending_snapshots);
            // Everything written so far is in this flush.
            state.unflushed_since = None;
            let mut seal_files = Vec::new();
            for base in &state.pending_seal {
                if let Some(segment) = state.segments.get(base) {
                    let (index, time_index) = segment.indexes.files()?;
                    seal_files.push((segment.file.clone(), segment.path.clone(), index, time_index));
                }
            }
            let active = state.active();
            (
                seal_files,
                active.file.clone(),
                active.path.clone(),
                active.next_offset,
                Position { segment_base: active.base_offset, position: active.size },
                std::mem::take(&mut state.dir_dirty),
                state.pending_seal.clone(),
                snapshots,
            )
        };
        let sync = || -> Result<()> {
            super::failpoint::check("flush.fsync", &self.dir)?;
            for (file, path, index, time_index) in &seal_files {
                file.sync_data().at(path)?;
                index.sync_data().at(path)?;
                time_index.sync_data().at(path)?;
            }
            if dir_dirty {
                sync_dir(&self.dir)?;
            }
            active_file.sync_data().at(&active_path)
        };
        if let Err(e) = sync() {
            self.lock().dir_dirty |= dir_dirty;
            return Err(e);
        }
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        let recovery_point_moved = {
            let mut state = self.lock();
            if target > state.durable_offset {
                state.durable_offset = target;
                self.durable_tx.send_replace(Durable { offset: target, failed: false });
                // (Without fsync acknowledgements the high watermark is already past it, unless
                // the topic's `flush.messages` changed from 1 while appends waited.)
                self.raise_high_watermark(&mut state, target, target_position);
            }
            state.pending_seal.retain(|b| !sealed_bases.contains(b));
            let first_unsynced = state.pending_seal.first().copied().unwrap_or(state.active().base_offset);
            let moved = first_unsynced > state.recovery_point;
            state.recovery_point = state.recovery_point.max(first_unsynced);
            moved
        };
        if recovery_point_moved {
            self.write_checkpoint()?;
        }
        // The segments below the snapshots are synced now.
        self.write_snapshots(snapshots);
        Ok(())
    }

    /// Whether there is anything a flush would sync.
    pub(crate) fn needs_flush(&self) -> bool {
        let state = self.lock();
        state.durable_offset < state.log_end_offset() || !state.pending_seal.is_empty() || state.dir_dirty
    }

    pub(crate) fn write_checkpoint(&self) -> Result<()> {
        let _guard = self.checkpoint_lock.lock().expect("checkpoint lock");
        let checkpoint = self.lock().checkpoint();
        checkpoint.write(&self.dir)?;
        let mut state = self.lock();
        state.persisted_recovery_point = state.persisted_recovery_point.max(checkpoint.recovery_point);
        Ok(())
    }

    /// Marks the partition closed: later appends fail.
    pub(crate) fn close(&self, why: Closed) {
        self.lock().closed = Some(why);
    }

    /// Takes the partition offline after a failed fsync and fails everyone waiting for durability.
    pub(crate) fn fail(&self, failure: String) {
        let mut state = self.lock();
        state.failed = Some(failure);
        let offset = state.durable_offset;
        self.durable_tx.send_replace(Durable { offset, failed: true });
    }

    /// Whether a rolled segment still waits for its sync.
    pub(crate) fn has_pending_seal(&self) -> bool {
        !self.lock().pending_seal.is_empty()
    }

    /// The last flush before a clean shutdown: data, indexes and checkpoint.
    pub(crate) fn flush_for_close(&self) -> Result<()> {
        self.flush()?;
        self.lock().active().indexes.sync()?;
        let snapshot = {
            let state = self.lock();
            let leo = state.log_end_offset();
            (leo, state.producers.encode(leo))
        };
        self.write_snapshots(vec![snapshot]);
        self.write_checkpoint()
    }

    /// The current leader epoch and the history of epochs with their start offsets.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        self.lock().leader_epochs.clone()
    }

    /// Starts a new leader epoch at the current log end offset (replication uses this).
    pub fn bump_leader_epoch(&self, epoch: i32) -> Result<()> {
        {
            let mut state = self.lock();
            if epoch <= state.current_epoch() {
                return Err(Error::Internal(format!(
                    "leader epoch {epoch} is not above the current epoch {}",
                    state.current_epoch()
                )));
            }
            let leo = state.log_end_offset();
            state.leader_epochs.push((epoch, leo));
            // Epochs and their start offsets only go forward: followers truncate by them.
            assert!(
                state.leader_epochs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "partition {}-{}: leader epochs out of order: {:?}",
                self.topic,
                self.index,
                state.leader_epochs
            );
        }
        self.write_checkpoint()
    }
}
