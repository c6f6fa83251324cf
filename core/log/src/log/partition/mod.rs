//! One partition: an ordered list of segments, its offsets and its durability (its appends are
//! in `append`, its part in replication in `replica`).

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

mod append;
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
    /// The high watermark as last written to the checkpoint.
    persisted_high_watermark: i64,
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
            persisted_high_watermark: checkpoint.high_watermark,
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
        state.persisted_high_watermark = checkpoint.high_watermark;
        Ok(())
    }

    /// Writes the checkpoint when the high watermark moved since the last one, so a restarted
    /// copy of a replicated partition shows, from its first fetch, nearly all its in-sync replicas
    /// had (as Kafka's `replica.high.watermark.checkpoint.interval.ms`; here every maintenance
    /// pass, 5 s by default).
    pub(crate) fn checkpoint_high_watermark(&self) -> Result<()> {
        let moved = {
            let state = self.lock();
            state.high_watermark != state.persisted_high_watermark
        };
        if moved {
            self.write_checkpoint()?;
        }
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
}
