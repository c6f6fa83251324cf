//! The storage engine: topics of partitions of segments, in one data directory.
//!
//! See [`format`](mod@format) for the bytes on disk and what each fsync guarantees.
//!
//! # Threads
//!
//! Nothing here blocks an async worker. Appends go to a per-partition queue; the first append that
//! finds the queue idle starts a drain on tokio's blocking pool, which writes everything queued
//! (one `writev` for many batches) in queue order. Durability is a separate stage: flusher threads
//! `fdatasync` partitions that have unsynced data, so while one fsync runs, the next group of
//! appends is written behind it (group commit). A maintenance thread applies retention and runs
//! compaction. Reads run on the blocking pool.
//!
//! # Back pressure
//!
//! Appends take permits for their bytes from one semaphore of `append_queue_bytes` before they are
//! queued; a producer that outruns the disk waits there.

pub mod format {
    #![doc = include_str!("FORMAT.md")]
}

mod background;
mod checkpoint;
mod cleaner;
#[doc(hidden)]
pub mod failpoint;
mod partition;
mod producers;
mod replication;
mod segment;
pub mod txn;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch, Semaphore};

pub use cleaner::CleanStats;
pub use partition::{AppendInfo, LogSlice, Partition, ReadResult, RecoveryReport};
pub use producers::ProducerInfo;
pub use txn::{AbortedFilter, AbortedTxn, Isolation, Marker, ReadLimit};

use crate::config::{ConfigEntry, Durability, LogConfig, TopicConfig};
use crate::error::{Error, IoContext, Result};
use background::{after_write, flusher, maintenance, run_maintenance};
use checkpoint::{sync_dir, write_atomically};
use partition::{Host, PendingAppend};

const TOPICS_DIR: &str = "topics";
const DELETED_DIR: &str = "deleted";
const CLEAN_SHUTDOWN: &str = ".clean-shutdown";
const TOPIC_FILE: &str = "topic.json";
const LOCK_FILE: &str = ".lock";

/// Checks a topic name against Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let bad = |reason: &str| Err(Error::InvalidTopicName { name: name.to_owned(), reason: reason.to_owned() });
    if name.is_empty() {
        return bad("a topic name cannot be empty");
    }
    if name == "." || name == ".." {
        return bad("\".\" and \"..\" are not allowed");
    }
    if name.len() > 249 {
        return bad("longer than 249 characters");
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return bad(&format!("character {c:?} is not allowed; use ASCII letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

/// Where to start reading, for [`Log::list_offset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark: the offset the next visible record will get.
    Latest,
    /// The last stable offset: where `read_committed` readers end (the high watermark when no
    /// transaction is open).
    LastStable,
    /// The first record with a timestamp at or after this (milliseconds).
    Timestamp(i64),
    /// The record with the largest timestamp.
    MaxTimestamp,
}

/// A topic as `list` and `describe` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    /// Name.
    pub name: String,
    /// A random id given at creation (Kafka's topic id).
    pub id: String,
    /// Number of partitions.
    pub n_partitions: u32,
    /// Configs set on the topic (not the defaults).
    pub overrides: BTreeMap<String, String>,
    /// Whether Freshet created the topic for itself.
    pub internal: bool,
}

/// Offsets and size of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDescription {
    /// Partition index.
    pub partition: u32,
    /// First offset held.
    pub log_start_offset: i64,
    /// First offset not yet visible to readers.
    pub high_watermark: i64,
    /// Offset of the next append.
    pub log_end_offset: i64,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Number of segments.
    pub n_segments: usize,
}

/// What the log has done since it was opened, summed over its current partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStats {
    /// Record batches appended.
    pub batches_appended: u64,
    /// Bytes appended.
    pub bytes_appended: u64,
    /// `writev` calls that wrote them.
    pub writes: u64,
    /// Partition syncs (each an `fdatasync` of the active segment, and more after a roll).
    pub fsyncs: u64,
}

/// Batches read from one partition.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Whole record batches, as stored.
    pub batches: Bytes,
    /// The high watermark at the time of the read.
    pub high_watermark: i64,
    /// The last stable offset at the time of the read (the high watermark when no transaction is
    /// open).
    pub last_stable_offset: i64,
    /// For a `read_committed` read, the aborted transactions whose records it may hold.
    pub aborted: Vec<AbortedTxn>,
    /// The log start offset at the time of the read.
    pub log_start_offset: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
    name: String,
    id: String,
    n_partitions: u32,
    overrides: BTreeMap<String, String>,
}

struct Topic {
    meta: RwLock<TopicMeta>,
    dir: PathBuf,
    partitions: RwLock<Vec<Arc<Partition>>>,
}

impl Topic {
    fn partition(&self, index: u32) -> Result<Arc<Partition>> {
        let partitions = self.partitions.read().expect("partitions lock");
        partitions.get(index as usize).cloned().ok_or_else(|| Error::UnknownPartition {
            topic: self.meta.read().expect("meta lock").name.clone(),
            n_partitions: partitions.len() as u32,
            partition: index,
        })
    }
    fn describe(&self) -> TopicDescription {
        let meta = self.meta.read().expect("meta lock");
        TopicDescription {
            name: meta.name.clone(),
            id: meta.id.clone(),
            n_partitions: meta.n_partitions,
            overrides: meta.overrides.clone(),
            internal: meta.name.starts_with("__"),
        }
    }
    fn write_meta(&self) -> Result<()> {
        let meta = self.meta.read().expect("meta lock");
        let json = serde_json::to_vec_pretty(&*meta).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomically(&self.dir.join(TOPIC_FILE), &json)
    }
}

struct FlushQueue {
    queue: Mutex<VecDeque<Arc<Partition>>>,
    ready: Condvar,
}

struct Shared {
    dir: PathBuf,
    config: LogConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    flush: FlushQueue,
    shutdown: AtomicBool,
    /// `true` once the maintenance thread must stop.
    maintenance_wake: (Mutex<bool>, Condvar),
    maintenance_lock: Mutex<()>,
    append_budget: Arc<Semaphore>,
    /// Bumped whenever any partition's high watermark moves: consumers of many partitions wait on it.
    data_arrived: watch::Sender<u64>,
    /// Bumped after every write to any partition: followers' fetches wait on it.
    data_written: watch::Sender<u64>,
    recovery: Mutex<Vec<RecoveryReport>>,
    /// The first failure of the storage (an fsync that failed), once there is one.
    storage_failed: watch::Sender<Option<String>>,
    /// Defaults of topic configs set while the log is open (a broker's dynamic configs), over
    /// `config.topic_defaults`.
    dynamic_defaults: RwLock<BTreeMap<String, String>>,
}

/// The log: every topic in one data directory.
///
/// Cheap to clone; all clones share the same engine. Call [`Log::close`] for a clean shutdown
/// (the next open then trusts indexes instead of rescanning the active segments).
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
    threads: Arc<Threads>,
}

/// The background threads. When the last `Log` handle goes away without `close`, they are
/// stopped (what was written stays on disk; the next open recovers as after a crash) and the
/// directory lock is released once they have finished.
struct Threads {
    shared: Arc<Shared>,
    handles: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The open `.lock` file; its `flock` goes with it.
    dir_lock: Option<std::fs::File>,
}

impl Threads {
    /// Stops the threads and waits for them (blocking).
    fn stop(&self) {
        self.signal_stop();
        for t in std::mem::take(&mut *self.handles.lock().expect("threads lock")) {
            let _ = t.join();
        }
    }

    fn signal_stop(&self) {
        // Set the flag while holding each thread's wait lock, so a thread about to wait cannot miss
        // the notification.
        {
            let _queue = self.shared.flush.queue.lock().expect("flush queue");
            self.shared.shutdown.store(true, Ordering::SeqCst);
            self.shared.flush.ready.notify_all();
        }
        {
            let mut stop = self.shared.maintenance_wake.0.lock().expect("maintenance lock");
            *stop = true;
            self.shared.maintenance_wake.1.notify_all();
        }
    }
}

impl Drop for Threads {
    /// Never blocks: the last handle may be dropped on an async worker while a flusher is in an
    /// fsync or the maintenance thread in a compaction pass. A short-lived thread waits for them
    /// and then releases the directory lock (`Log::open` retries the lock for a moment).
    fn drop(&mut self) {
        self.signal_stop();
        let handles = std::mem::take(&mut *self.handles.lock().expect("threads lock"));
        let dir_lock = self.dir_lock.take();
        if handles.is_empty() {
            return;
        }
        let _ = std::thread::Builder::new().name("freshet-stop".into()).spawn(move || {
            for t in handles {
                let _ = t.join();
            }
            drop(dir_lock);
        });
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.shared.dir).finish_non_exhaustive()
    }
}

fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut id = String::with_capacity(32);
    for salt in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        h.write_u32(std::process::id());
        id.push_str(&format!("{:016x}", h.finish()));
    }
    id
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering from a crash if the last run did not close
    /// cleanly, and starts its flusher and maintenance threads.
    pub async fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Log> {
        let dir = dir.into();
        blocking(move || Self::open_blocking(dir, config)).await
    }

    fn open_blocking(dir: PathBuf, config: LogConfig) -> Result<Log> {
        for d in [dir.clone(), dir.join(TOPICS_DIR), dir.join(DELETED_DIR)] {
            std::fs::create_dir_all(&d).at(&d)?;
        }
        let lock_path = dir.join(LOCK_FILE);
        let dir_lock =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).at(&lock_path)?;
        // A process that just closed the log, or a child forked while it was open, can hold the
        // lock for a moment: retry briefly before giving up.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while dir_lock.try_lock().is_err() {
            if std::time::Instant::now() >= deadline {
                return Err(Error::Io {
                    path: lock_path.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::WouldBlock,
                        "another process has this data directory open",
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Topics deleted just before the process stopped.
        let deleted = dir.join(DELETED_DIR);
        for entry in std::fs::read_dir(&deleted).at(&deleted)? {
            let path = entry.at(&deleted)?.path();
            std::fs::remove_dir_all(&path).at(&path)?;
        }
        let marker = dir.join(CLEAN_SHUTDOWN);
        let clean = marker.exists();
        if clean {
            std::fs::remove_file(&marker).at(&marker)?;
            sync_dir(&dir)?;
        }
        let log_config = &config;
        let mut topics = BTreeMap::new();
        let mut reports = Vec::new();
        let topics_dir = dir.join(TOPICS_DIR);
        let mut names: Vec<PathBuf> =
            std::fs::read_dir(&topics_dir).at(&topics_dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for topic_dir in names {
            let meta_path = topic_dir.join(TOPIC_FILE);
            let Ok(json) = std::fs::read(&meta_path) else {
                // A topic whose creation did not finish: its metadata file is written last.
                tracing::warn!(dir = %topic_dir.display(), "removing a topic directory without metadata");
                std::fs::remove_dir_all(&topic_dir).at(&topic_dir)?;
                continue;
            };
            let meta: TopicMeta = serde_json::from_slice(&json).map_err(|e| Error::Corrupt {
                path: meta_path.clone(),
                position: 0,
                detail: e.to_string(),
            })?;
            let config = Arc::new(Self::effective_config(&log_config.topic_defaults, &meta.overrides)?);
            let mut partitions = Vec::new();
            for index in 0..meta.n_partitions {
                let pdir = topic_dir.join(index.to_string());
                let durability = Host::of(log_config);
                let (partition, report) = if pdir.exists() {
                    Partition::open(pdir, &meta.name, index, config.clone(), durability.clone(), clean)?
                } else {
                    (Partition::create(pdir, &meta.name, index, config.clone(), durability)?, RecoveryReport::default())
                };
                partitions.push(partition);
                reports.push(report);
            }
            let name = meta.name.clone();
            topics.insert(
                name,
                Arc::new(Topic { meta: RwLock::new(meta), dir: topic_dir, partitions: RwLock::new(partitions) }),
            );
        }
        let shared = Arc::new(Shared {
            dir,
            append_budget: Arc::new(Semaphore::new(config.append_queue_bytes)),
            config,
            topics: RwLock::new(topics),
            flush: FlushQueue { queue: Mutex::new(VecDeque::new()), ready: Condvar::new() },
            shutdown: AtomicBool::new(false),
            maintenance_wake: (Mutex::new(false), Condvar::new()),
            maintenance_lock: Mutex::new(()),
            data_arrived: watch::Sender::new(0),
            data_written: watch::Sender::new(0),
            storage_failed: watch::Sender::new(None),
            recovery: Mutex::new(reports),
            dynamic_defaults: RwLock::new(BTreeMap::new()),
        });
        let threads = Threads { shared: shared.clone(), handles: Mutex::new(Vec::new()), dir_lock: Some(dir_lock) };
        let log = Log { threads: Arc::new(threads), shared };
        log.start_threads()?;
        Ok(log)
    }

    fn effective_config(
        defaults: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig> {
        let mut merged = defaults.clone();
        merged.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        TopicConfig::from_overrides(&merged)
    }

    /// The defaults of topic configs in effect: those set while the log is open
    /// ([`Log::set_dynamic_topic_defaults`]) over those it was opened with.
    pub fn topic_defaults(&self) -> BTreeMap<String, String> {
        let mut merged = self.shared.config.topic_defaults.clone();
        merged.extend(self.shared.dynamic_defaults.read().expect("defaults lock").clone());
        merged
    }

    /// Replaces the defaults of topic configs set while the log is open (a broker's dynamic
    /// configs), over those it was opened with. Every topic without its own value of a config
    /// follows the new default at once. All are checked before any applies.
    pub async fn set_dynamic_topic_defaults(&self, defaults: BTreeMap<String, String>) -> Result<()> {
        let mut merged = self.shared.config.topic_defaults.clone();
        merged.extend(defaults.clone());
        TopicConfig::validate(&merged)?;
        let topics: Vec<Arc<Topic>> = self.shared.topics.read().expect("topics lock").values().cloned().collect();
        let mut configs = Vec::with_capacity(topics.len());
        for topic in &topics {
            let overrides = topic.meta.read().expect("meta lock").overrides.clone();
            configs.push(Arc::new(Self::effective_config(&merged, &overrides)?));
        }
        *self.shared.dynamic_defaults.write().expect("defaults lock") = defaults;
        for (topic, config) in topics.iter().zip(configs) {
            for partition in topic.partitions.read().expect("partitions lock").iter() {
                partition.set_config(config.clone());
            }
        }
        Ok(())
    }

    fn start_threads(&self) -> Result<()> {
        let mut threads = self.threads.handles.lock().expect("threads lock");
        let n_flushers = 2;
        for i in 0..n_flushers {
            let shared = self.shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("freshet-flush-{i}"))
                    .spawn(move || flusher(&shared))
                    .map_err(|e| Error::Internal(format!("cannot start a flusher thread: {e}")))?,
            );
        }
        let shared = self.shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("freshet-maintenance".into())
                .spawn(move || maintenance(&shared))
                .map_err(|e| Error::Internal(format!("cannot start the maintenance thread: {e}")))?,
        );
        Ok(())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The settings the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.shared.config
    }

    /// The clock the log was opened with (`LogConfig::clock`): the coordinators over this log read
    /// time from it too.
    pub fn clock(&self) -> &Arc<dyn crate::clock::Clock> {
        &self.shared.config.clock
    }

    /// Counters of appends, writes and syncs: `batches_appended / fsyncs` is how many batches one
    /// group commit covered on average.
    pub fn stats(&self) -> LogStats {
        let mut stats = LogStats::default();
        for p in all_partitions(&self.shared) {
            let c = &p.counters;
            stats.batches_appended += c.batches_appended.load(Ordering::Relaxed);
            stats.bytes_appended += c.bytes_appended.load(Ordering::Relaxed);
            stats.writes += c.writes.load(Ordering::Relaxed);
            stats.fsyncs += c.fsyncs.load(Ordering::Relaxed);
        }
        stats
    }

    /// What opening found and repaired, one report per partition.
    pub fn recovery_reports(&self) -> Vec<RecoveryReport> {
        self.shared.recovery.lock().expect("recovery lock").clone()
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.shared
            .topics
            .read()
            .expect("topics lock")
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic(name.to_owned()))
    }

    /// The partition `index` of `topic`.
    pub fn partition(&self, topic: &str, index: u32) -> Result<Arc<Partition>> {
        self.topic(topic)?.partition(index)
    }

    /// Creates a topic. Configs use Kafka's names; unknown keys and bad values are refused.
    pub async fn create_topic(&self, name: &str, n_partitions: u32, overrides: BTreeMap<String, String>) -> Result<()> {
        validate_topic_name(name)?;
        if n_partitions == 0 {
            return Err(Error::InvalidConfig {
                key: "partitions".into(),
                value: "0".into(),
                reason: "a topic needs at least one partition".into(),
            });
        }
        let config = Arc::new(Self::effective_config(&self.topic_defaults(), &overrides)?);
        if self.shared.topics.read().expect("topics lock").contains_key(name) {
            return Err(Error::TopicExists(name.to_owned()));
        }
        let this = self.clone();
        let name = name.to_owned();
        blocking(move || {
            let mut topics = this.shared.topics.write().expect("topics lock");
            if topics.contains_key(&name) {
                return Err(Error::TopicExists(name));
            }
            let dir = this.shared.dir.join(TOPICS_DIR).join(&name);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).at(&dir)?;
            }
            std::fs::create_dir_all(&dir).at(&dir)?;
            let durability = Host::of(&this.shared.config);
            let mut partitions = Vec::new();
            for index in 0..n_partitions {
                partitions.push(Partition::create(
                    dir.join(index.to_string()),
                    &name,
                    index,
                    config.clone(),
                    durability.clone(),
                )?);
            }
            let meta = TopicMeta { name: name.clone(), id: random_id(), n_partitions, overrides };
            let topic =
                Arc::new(Topic { meta: RwLock::new(meta), dir: dir.clone(), partitions: RwLock::new(partitions) });
            sync_dir(&dir)?;
            topic.write_meta()?;
            sync_dir(&this.shared.dir.join(TOPICS_DIR))?;
            tracing::info!(topic = %name, n_partitions, "created topic");
            topics.insert(name, topic);
            Ok(())
        })
        .await
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let topic = {
            let mut topics = self.shared.topics.write().expect("topics lock");
            topics.remove(name).ok_or_else(|| Error::UnknownTopic(name.to_owned()))?
        };
        for partition in topic.partitions.read().expect("partitions lock").iter() {
            partition.close(partition::Closed::Deleted);
        }
        let shared = self.shared.clone();
        let name = name.to_owned();
        blocking(move || {
            let id = topic.meta.read().expect("meta lock").id.clone();
            let grave = shared.dir.join(DELETED_DIR).join(format!("{name}-{id}"));
            std::fs::rename(&topic.dir, &grave).at(&topic.dir)?;
            sync_dir(&shared.dir.join(TOPICS_DIR))?;
            std::fs::remove_dir_all(&grave).at(&grave)?;
            tracing::info!(topic = %name, "deleted topic");
            Ok(())
        })
        .await
    }

    /// Every topic, by name.
    pub fn list_topics(&self) -> Vec<TopicDescription> {
        self.shared.topics.read().expect("topics lock").values().map(|t| t.describe()).collect()
    }

    /// One topic.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        Ok(self.topic(name)?.describe())
    }

    /// Offsets and sizes of a topic's partitions.
    pub fn describe_partitions(&self, name: &str) -> Result<Vec<PartitionDescription>> {
        let topic = self.topic(name)?;
        let partitions = topic.partitions.read().expect("partitions lock");
        Ok(partitions
            .iter()
            .map(|p| {
                let (log_start_offset, high_watermark, log_end_offset) = p.offsets();
                let state = p.lock();
                PartitionDescription {
                    partition: p.index(),
                    log_start_offset,
                    high_watermark,
                    log_end_offset,
                    size_bytes: state.size(),
                    n_segments: state.segments.len(),
                }
            })
            .collect())
    }

    /// Every config of a topic with the value in effect and whether it is a default.
    pub fn describe_configs(&self, name: &str) -> Result<Vec<ConfigEntry>> {
        let topic = self.topic(name)?;
        let overrides = topic.meta.read().expect("meta lock").overrides.clone();
        Ok(self.describe_overrides(&overrides))
    }

    /// Every topic config in effect for a topic with `overrides`, over this log's defaults: what
    /// [`Log::describe_configs`] gives for a topic this log holds, for one it does not (a topic
    /// of a cluster held by other brokers).
    pub fn describe_overrides(&self, overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
        let mut merged = self.topic_defaults();
        merged.extend(overrides.clone());
        let mut entries = TopicConfig::describe(&merged);
        for entry in &mut entries {
            entry.is_default = !overrides.contains_key(&entry.name);
        }
        entries
    }

    /// Sets (`Some`) or removes (`None`) topic configs. All changes are checked before any applies.
    pub async fn alter_topic_config(&self, name: &str, changes: BTreeMap<String, Option<String>>) -> Result<()> {
        let topic = self.topic(name)?;
        let mut overrides = topic.meta.read().expect("meta lock").overrides.clone();
        for (key, value) in changes {
            match value {
                Some(v) => overrides.insert(key, v),
                None => overrides.remove(&key),
            };
        }
        let config = Arc::new(Self::effective_config(&self.topic_defaults(), &overrides)?);
        blocking(move || {
            topic.meta.write().expect("meta lock").overrides = overrides;
            topic.write_meta()?;
            for partition in topic.partitions.read().expect("partitions lock").iter() {
                partition.set_config(config.clone());
            }
            Ok(())
        })
        .await
    }

    /// Grows a topic to `n_partitions` partitions.
    pub async fn create_partitions(&self, name: &str, n_partitions: u32) -> Result<()> {
        let topic = self.topic(name)?;
        let durability = Host::of(&self.shared.config);
        let name = name.to_owned();
        blocking(move || {
            let mut partitions = topic.partitions.write().expect("partitions lock");
            let current = partitions.len() as u32;
            if n_partitions <= current {
                return Err(Error::InvalidConfig {
                    key: "partitions".into(),
                    value: n_partitions.to_string(),
                    reason: format!("topic \"{name}\" already has {current} partitions; the count can only grow"),
                });
            }
            let config = partitions[0].config();
            for index in current..n_partitions {
                partitions.push(Partition::create(
                    topic.dir.join(index.to_string()),
                    &name,
                    index,
                    config.clone(),
                    durability.clone(),
                )?);
            }
            topic.meta.write().expect("meta lock").n_partitions = n_partitions;
            topic.write_meta()
        })
        .await
    }

    /// Appends one record batch (v2, as a producer encoded it) to a partition and returns where it
    /// landed once the log's durability condition holds for it.
    ///
    /// The batch takes its place in the partition's queue when the future is first polled, so
    /// appends polled in order land in that order, however many are in flight.
    pub async fn append(&self, topic: &str, partition: u32, batch: impl Into<BytesMut>) -> Result<AppendInfo> {
        let partition = self.partition(topic, partition)?;
        let batch = partition.prepare(batch.into())?;
        let permits = (batch.len().min(self.shared.config.append_queue_bytes) as u32).max(1);
        let permit = self.shared.append_budget.clone().acquire_many_owned(permits).await.map_err(|_| Error::Closed)?;
        let (reply, response) = oneshot::channel();
        if partition.enqueue(PendingAppend { batch, reply, _permit: Some(permit) }) {
            let shared = self.shared.clone();
            let p = partition.clone();
            tokio::task::spawn_blocking(move || p.drain(|| after_write(&shared, &p)));
        }
        let info = response.await.map_err(|_| Error::Closed)??;
        if partition.durability() == Durability::Fsync {
            let mut durable = partition.watch_durable();
            let state =
                *durable.wait_for(|d| d.offset > info.last_offset || d.failed).await.map_err(|_| Error::Closed)?;
            if state.offset <= info.last_offset {
                return Err(Error::StorageFailed(format!(
                    "the fsync that would make offsets {}..={} of {topic}-{} durable failed; they may or may not survive a crash",
                    info.base_offset,
                    info.last_offset,
                    partition.index()
                )));
            }
        }
        Ok(info)
    }

    /// Reads from `offset`: whole batches starting with the one that contains `offset`, up to
    /// `max_bytes` but at least one batch. Empty when there is nothing at `offset` yet.
    pub async fn read(&self, topic: &str, partition: u32, offset: i64, max_bytes: u64) -> Result<Fetched> {
        self.read_isolated(topic, partition, offset, ReadLimit::AtLeastOne(max_bytes), Isolation::ReadUncommitted).await
    }

    /// Like [`Log::read`], with a choice of limit and isolation: `ReadCommitted` stops at the last
    /// stable offset and lists the aborted transactions the reader must skip (see
    /// [`AbortedFilter`]).
    pub async fn read_isolated(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        limit: ReadLimit,
        isolation: Isolation,
    ) -> Result<Fetched> {
        let partition = self.partition(topic, partition)?;
        blocking(move || fetched(partition.read(offset, limit, isolation)?)).await
    }

    /// Like [`Log::read`], but waits up to `max_wait` for data when there is none at `offset`.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: u64,
        max_wait: Duration,
    ) -> Result<Fetched> {
        let p = self.partition(topic, partition)?;
        let mut hw = p.watch_high_watermark();
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            hw.borrow_and_update();
            let fetched = self.read(topic, partition, offset, max_bytes).await?;
            if !fetched.batches.is_empty() {
                return Ok(fetched);
            }
            match tokio::time::timeout_at(deadline, hw.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) => return Ok(fetched),
            }
        }
    }

    /// A receiver bumped whenever any partition gets new visible data.
    pub fn watch_data(&self) -> watch::Receiver<u64> {
        self.shared.data_arrived.subscribe()
    }

    /// Answers Kafka's ListOffsets for one partition: `(offset, timestamp)`; for a timestamp with no
    /// record at or after it, the answer is `None`.
    pub async fn list_offset(&self, topic: &str, partition: u32, spec: OffsetSpec) -> Result<Option<(i64, i64)>> {
        let partition = self.partition(topic, partition)?;
        match spec {
            OffsetSpec::Earliest => Ok(Some((partition.offsets().0, -1))),
            OffsetSpec::Latest => Ok(Some((partition.offsets().1, -1))),
            OffsetSpec::LastStable => Ok(Some((partition.last_stable_offset(), -1))),
            OffsetSpec::Timestamp(t) => blocking(move || partition.offset_for_timestamp(t)).await,
            OffsetSpec::MaxTimestamp => blocking(move || partition.offset_of_max_timestamp()).await,
        }
    }

    /// Creates a compacted internal topic (100 MiB segments) unless it exists; a concurrent
    /// creation is no error.
    pub async fn ensure_compacted_topic(&self, name: &str, n_partitions: u32) -> Result<()> {
        if self.describe_topic(name).is_ok() {
            return Ok(());
        }
        let configs = BTreeMap::from([
            ("cleanup.policy".to_owned(), "compact".to_owned()),
            ("segment.bytes".to_owned(), (100 << 20).to_string()),
        ]);
        match self.create_topic(name, n_partitions, configs).await {
            Ok(()) | Err(Error::TopicExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Calls `f` with every record of a partition, from its log start to its high watermark: how
    /// an internal topic's state is loaded.
    pub async fn for_each_record(
        &self,
        topic: &str,
        partition: u32,
        mut f: impl FnMut(crate::batch::RecordView<'_>) -> Result<()>,
    ) -> Result<()> {
        self.for_each_batch(topic, partition, |batch| {
            for record in batch.records()? {
                f(record?)?;
            }
            Ok(())
        })
        .await
    }

    /// Like [`Log::for_each_record`], a whole batch at a time: for state that must know which
    /// records are transactional and where the markers fall.
    pub async fn for_each_batch(
        &self,
        topic: &str,
        partition: u32,
        f: impl FnMut(&crate::batch::BatchView<'_>) -> Result<()>,
    ) -> Result<()> {
        self.scan(topic, partition, false, f).await
    }

    /// Like [`Log::for_each_batch`], up to the log end rather than the high watermark: what a
    /// coordinator taking over a partition of its topic loads (its log is the partition's now;
    /// the high watermark catches up with it once the followers fetch).
    pub async fn for_each_stored_batch(
        &self,
        topic: &str,
        partition: u32,
        f: impl FnMut(&crate::batch::BatchView<'_>) -> Result<()>,
    ) -> Result<()> {
        self.scan(topic, partition, true, f).await
    }

    async fn scan(
        &self,
        topic: &str,
        partition: u32,
        to_log_end: bool,
        mut f: impl FnMut(&crate::batch::BatchView<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut position = self.list_offset(topic, partition, OffsetSpec::Earliest).await?.map_or(0, |o| o.0);
        loop {
            let fetched = if to_log_end {
                self.read_replica(topic, partition, position, ReadLimit::AtLeastOne(1 << 20)).await?
            } else {
                self.read(topic, partition, position, 1 << 20).await?
            };
            if fetched.batches.is_empty() {
                return Ok(());
            }
            for batch in crate::batch::Batches::new(&fetched.batches) {
                let batch = batch?;
                position = batch.next_offset();
                f(&batch)?;
            }
        }
    }

    /// A partition's last stable offset (the end of what `read_committed` readers see).
    pub fn last_stable_offset(&self, topic: &str, partition: u32) -> Result<i64> {
        Ok(self.partition(topic, partition)?.last_stable_offset())
    }

    /// Advances a partition's log start offset (Kafka's DeleteRecords); -1 means the high
    /// watermark. Returns the new log start offset.
    pub async fn delete_records(&self, topic: &str, partition: u32, before_offset: i64) -> Result<i64> {
        let partition = self.partition(topic, partition)?;
        blocking(move || partition.delete_records_before(before_offset)).await
    }

    /// Runs retention and compaction on every partition now, instead of waiting for the
    /// maintenance thread. `now_ms` stands in for the clock.
    pub async fn run_maintenance(&self, now_ms: i64) -> Result<Vec<(String, u32, Option<CleanStats>)>> {
        let shared = self.shared.clone();
        blocking(move || run_maintenance(&shared, now_ms)).await
    }

    /// Flushes everything, writes checkpoints and marks the shutdown clean.
    pub async fn close(&self) -> Result<()> {
        let shared = self.shared.clone();
        let threads = self.threads.clone();
        blocking(move || {
            threads.stop();
            let partitions = all_partitions(&shared);
            for p in &partitions {
                p.close(partition::Closed::Shutdown);
            }
            for p in &partitions {
                p.flush_for_close()?;
            }
            let marker = shared.dir.join(CLEAN_SHUTDOWN);
            std::fs::File::create(&marker).and_then(|f| f.sync_all()).at(&marker)?;
            sync_dir(&shared.dir)?;
            tracing::info!(dir = %shared.dir.display(), "log closed cleanly");
            Ok(())
        })
        .await
    }
}

/// What a read found, with its batches read into memory (whole ones, their CRCs checked).
fn fetched(result: ReadResult) -> Result<Fetched> {
    let batches = match &result.slice {
        Some(slice) => slice.read_whole_batches()?,
        None => Bytes::new(),
    };
    Ok(Fetched {
        batches,
        high_watermark: result.high_watermark,
        last_stable_offset: result.last_stable_offset,
        aborted: result.aborted,
        log_start_offset: result.log_start_offset,
    })
}

fn all_partitions(shared: &Shared) -> Vec<Arc<Partition>> {
    let topics = shared.topics.read().expect("topics lock");
    topics.values().flat_map(|t| t.partitions.read().expect("partitions lock").clone()).collect()
}
