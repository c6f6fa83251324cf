//! The streams runtime: runs a [`Topology`] on a log, as Kafka Streams' `KafkaStreams` does.
//!
//! [`StreamsApp::start`] works out the topics (source topics must exist; repartition topics are
//! created as `<application id>-<name>`, changelog topics as `<application id>-<store>-changelog`),
//! makes one task per sub-topology and input partition, and hands the tasks out to
//! `num_stream_threads` threads. Each thread restores its tasks' stores from their changelogs,
//! then loops: poll its partitions, process the records of each task in timestamp order across
//! the task's partitions (as far as buffered data allows), send what sinks wrote, run
//! punctuations, and at every commit interval commit. A global sub-topology runs on its own thread,
//! reading its topics whole (to their end before the stream threads start, then as they grow).
//!
//! # Why no acknowledged update is lost (at-least-once)
//!
//! A commit, in this order: every record the sinks wrote is sent and acknowledged (output goes out
//! one batch at a time while processing goes on, and a commit waits for the last); every store
//! flushes (its changelog acknowledges every write, then the store checkpoints); only then are the
//! input offsets committed. After a crash the task restores its stores from their changelogs and
//! resumes from the committed offsets: every record is processed at least once, so an update a
//! downstream reader saw is either in the state it resumes from or made again from its input.
//!
//! Stream threads block (RocksDB I/O, changelog waits): they are OS threads, and reach the
//! substrate's futures through the tokio runtime handed in, which must be a multi-thread runtime.
//!
//! # Instances and threads share the tasks
//!
//! Every stream thread's consumer is a member of the consumer group named by the application id,
//! subscribed to every source topic of the (non-global) sub-topologies. The group deals the
//! partitions with the range assignor, so partition N of co-partitioned topics goes to one member:
//! a member's partitions are whole tasks. When the group takes partitions away, the thread is told
//! before they move (a revocation, as Kafka's `onPartitionsRevoked`): it sends and acknowledges its
//! output, flushes every store and commits, then suspends the tasks that lost their partitions
//! (kept open, in case the rebalance gives them back). When the rebalance ends, suspended tasks
//! not given back are closed and new ones are opened, restoring their stores from the changelog
//! (only the tail past their checkpoint when this instance ran the task before); their partitions
//! are read from the committed offsets. This is the same on the embedded log (the members of the
//! instances in this process) and on a Kafka-protocol cluster (the cluster's group coordinator,
//! so instances in separate processes or machines share the work; a killed instance's tasks move
//! when its session times out). With `num_standby_replicas`, other instances keep warm copies of
//! each stateful task's stores (kept open, brought to the changelog's end at every commit),
//! placed from the group's description, so a task that moves restores only the tail.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use freshet_core::batch::Header;
use freshet_core::{
    Admin, AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, GroupChange, NewTopic, OffsetAndMetadata,
    Producer, ProducerRecord, Substrate, TopicPartition, TransactionalProducer,
};
use freshet_core::{Clock, Isolation, OffsetSpec, SystemClock};
use freshet_dsl::{PunctuationType, RecordMeta, TaskContext, TaskGraph, Topology};
use freshet_state::{Backend, Changelogs, RestoreListener, RestoreProgress, StoreOptions, TaskConfig, TaskState};
use tokio::runtime::Handle;

use crate::error::{Error, Result};

/// What happens to a record that fails.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// Stop the application with the error (the default).
    #[default]
    Fail,
    /// Log it, count it as skipped, and go on.
    LogAndContinue,
    /// Write the record as it was read, with `freshet.error`, `freshet.source.topic`,
    /// `freshet.source.partition` and `freshet.source.offset` headers, to this topic, and go on.
    DeadLetter(String),
}

/// What a crash may do to the records an application produces (Kafka Streams'
/// `processing.guarantee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Every record is processed at least once: after a crash, records processed since the last
    /// commit are processed again (their output may appear twice; no committed update is lost).
    #[default]
    AtLeastOnce,
    /// Every record's effects (output, store updates, input offsets) are committed atomically, as
    /// Kafka Streams' `exactly_once_v2`: each stream thread writes its output and its stores'
    /// changelogs through one transactional producer and commits its input offsets in the same
    /// transaction, one transaction per commit interval. Consumers of the output (and restores)
    /// read at `read_committed`: after a crash, nothing of an uncommitted transaction is seen,
    /// and the records it had processed are processed again from the committed offsets.
    ExactlyOnce,
}

/// Where a record's timestamp comes from.
#[derive(Clone, Default)]
pub enum TimestampExtractor {
    /// The record's own timestamp (the default).
    #[default]
    RecordTimestamp,
    /// Computed from the record, e.g. from a field of its value.
    Custom(Arc<dyn Fn(&ConsumerRecord) -> i64 + Send + Sync>),
}

impl TimestampExtractor {
    /// The timestamp of `r`.
    pub fn extract(&self, r: &ConsumerRecord) -> i64 {
        match self {
            TimestampExtractor::RecordTimestamp => r.timestamp,
            TimestampExtractor::Custom(f) => f(r),
        }
    }
}

impl std::fmt::Debug for TimestampExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimestampExtractor::RecordTimestamp => f.write_str("RecordTimestamp"),
            TimestampExtractor::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// Settings of a streams application.
#[derive(Clone)]
pub struct StreamsConfig {
    /// Names the application: its consumer group, the prefix of its internal topics, its
    /// directory under `state_dir`.
    pub application_id: String,
    /// Stream threads (tasks are spread over them).
    pub num_stream_threads: usize,
    /// At-least-once (the default) or exactly-once.
    pub processing_guarantee: ProcessingGuarantee,
    /// How often progress is committed (Kafka Streams' default: 30 s).
    pub commit_interval: Duration,
    /// Where tasks keep their stores.
    pub state_dir: PathBuf,
    /// Where stores live: RocksDB (sharing one memory budget) or memory.
    pub backend: Backend,
    /// The record-cache budget of each cached store, in bytes.
    pub cache_bytes_per_store: usize,
    /// How long a poll waits for records when there is nothing to process.
    pub poll_wait: Duration,
    /// What happens to a record that does not decode, when its source says to fail (the
    /// source's own `OnDecodeError::Skip` or `DeadLetter` take precedence).
    pub on_deserialization_error: ErrorPolicy,
    /// What happens to a record whose processing fails.
    pub on_processing_error: ErrorPolicy,
    /// What happens to an output record the log refuses.
    pub on_production_error: ErrorPolicy,
    /// Where record timestamps come from.
    pub timestamp_extractor: TimestampExtractor,
    /// Told about every store restore.
    pub restore_listener: Option<Arc<dyn RestoreListener>>,
    /// Warm copies of each task's stores kept by other instances, so that a task that moves
    /// restores only the changelog's tail (Kafka Streams' `num.standby.replicas`; default 0).
    /// They need a persistent backend (RocksDB) and their own state directory per instance.
    pub num_standby_replicas: usize,
    /// Wall-clock time: task contexts and wall-clock punctuation read it (Kafka Streams' `Time`).
    /// The system clock by default; a test or simulation hands in one it controls.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StreamsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsConfig")
            .field("application_id", &self.application_id)
            .field("num_stream_threads", &self.num_stream_threads)
            .field("processing_guarantee", &self.processing_guarantee)
            .field("commit_interval", &self.commit_interval)
            .field("state_dir", &self.state_dir)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl StreamsConfig {
    /// Kafka Streams' defaults: one thread, a 30 s commit interval, state under the system's temp
    /// directory, RocksDB (when built with it) with a 512 MiB budget, 10 MiB of cache per store,
    /// failing on errors.
    pub fn new(application_id: &str) -> Result<Self> {
        Ok(StreamsConfig {
            application_id: application_id.to_string(),
            num_stream_threads: 1,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            commit_interval: Duration::from_secs(30),
            state_dir: std::env::temp_dir().join("freshet-streams"),
            backend: Backend::best_available(512 << 20)?,
            cache_bytes_per_store: 10 << 20,
            poll_wait: Duration::from_millis(100),
            on_deserialization_error: ErrorPolicy::Fail,
            on_processing_error: ErrorPolicy::Fail,
            on_production_error: ErrorPolicy::Fail,
            timestamp_extractor: TimestampExtractor::RecordTimestamp,
            restore_listener: None,
            num_standby_replicas: 0,
            clock: Arc::new(SystemClock),
        })
    }

    fn check(&self) -> Result<()> {
        let id = &self.application_id;
        let valid = !id.is_empty()
            && id.len() <= 200
            && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(Error::Config(format!(
                "application.id {id:?}: 1 to 200 of [a-zA-Z0-9._-] (it names topics and directories)"
            )));
        }
        if self.num_stream_threads == 0 {
            return Err(Error::Config("num.stream.threads must be at least 1".into()));
        }
        if self.commit_interval.is_zero() {
            return Err(Error::Config("commit.interval must be over 0".into()));
        }
        Ok(())
    }
}

/// What the runtime holds of its substrate: the substrate itself (consumers, transactional
/// producers), the producer and admin client every thread shares, and the stores' changelogs in
/// it. Instances of an application on one substrate (in this process or, on a cluster,
/// anywhere) share its tasks through its consumer group.
#[derive(Clone)]
struct Plumbing {
    substrate: Arc<dyn Substrate>,
    producer: Arc<dyn Producer>,
    admin: Arc<dyn Admin>,
    changelogs: Changelogs,
}

impl std::fmt::Debug for Plumbing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plumbing").field("substrate", &self.substrate).finish_non_exhaustive()
    }
}

impl Plumbing {
    /// The clients of `substrate`, made once here so that a substrate that cannot make them
    /// (a remote configuration librdkafka refuses) fails the application's creation.
    fn new(substrate: Arc<dyn Substrate>, runtime: Handle) -> Result<Self> {
        let client = |e: freshet_core::Error| Error::Config(format!("{}: {e}", substrate.describe()));
        let producer = substrate.producer().map_err(client)?;
        let admin = substrate.admin().map_err(client)?;
        // A consumer fails only on a configuration the substrate refuses: checked once here.
        substrate.consumer(ConsumerConfig::default()).map_err(client)?;
        let changelogs = Changelogs::new(substrate.clone(), runtime)?;
        Ok(Plumbing { substrate, producer, admin, changelogs })
    }

    fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        Ok(self.substrate.consumer(config)?)
    }

    /// A transactional producer with `id` and a transaction timeout.
    fn transactional_producer(
        &self,
        runtime: &Handle,
        id: &str,
        timeout: Duration,
    ) -> Result<Arc<dyn TransactionalProducer>> {
        Ok(block_on(runtime, self.substrate.transactional_producer(id, timeout))?)
    }
}

/// Where an application is in its life, as Kafka Streams' `KafkaStreams.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamsState {
    /// Built, not started.
    Created,
    /// Starting: topics checked, tasks assigned, stores restoring.
    Rebalancing,
    /// Every task is processing.
    Running,
    /// Closing: threads finishing and committing.
    PendingShutdown,
    /// Closed.
    NotRunning,
    /// Stopped by an error (see [`StreamsApp::error`]).
    Error,
}

type StateListener = Box<dyn Fn(StreamsState, StreamsState) + Send + Sync>;

/// Counters the threads keep.
#[derive(Debug, Default)]
struct Counters {
    records_in: AtomicU64,
    records_out: AtomicU64,
    records_skipped: AtomicU64,
    dropped_records: AtomicU64,
    late_records: AtomicU64,
    process_ns: AtomicU64,
    commits: AtomicU64,
    commit_ns: AtomicU64,
}

/// What the application has done so far, for a user to read.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Records read from source topics.
    pub records_in: u64,
    /// Records written to sink topics.
    pub records_out: u64,
    /// Records read per second since start.
    pub records_in_per_sec: f64,
    /// Records written per second since start.
    pub records_out_per_sec: f64,
    /// Records an error policy skipped or dead-lettered.
    pub records_skipped: u64,
    /// Records operators dropped (not decodable with `OnDecodeError::Skip`, null keys, ...).
    pub dropped_records: u64,
    /// Records windowed operators dropped as late.
    pub late_records: u64,
    /// Mean processing time of a record, source to sinks.
    pub process_latency: Duration,
    /// Commits done.
    pub commits: u64,
    /// Mean time of a commit.
    pub commit_latency: Duration,
    /// Records not yet read, per source partition (at the last poll).
    pub lag: BTreeMap<TopicPartition, i64>,
    /// What each store's restore did.
    pub restores: Vec<RestoreProgress>,
}

struct Shared {
    state: Mutex<StreamsState>,
    listener: Mutex<Option<StateListener>>,
    shutdown: AtomicBool,
    error: Mutex<Option<String>>,
    counters: Counters,
    lag: Mutex<BTreeMap<TopicPartition, i64>>,
    restores: Mutex<Vec<RestoreProgress>>,
    threads_ready: AtomicUsize,
    /// Threads in a rebalance right now.
    rebalancing: AtomicUsize,
    /// Set by `kill`: threads stop without committing, as if the process had died.
    abandon: AtomicBool,
    n_threads: AtomicUsize,
    started: Mutex<Option<Instant>>,
}

impl Shared {
    fn set_state(&self, new: StreamsState) {
        let old = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let old = *state;
            // An error or a close is final: later transitions (threads finishing, the group
            // rebalancing as they leave it) do not undo it.
            let closing = matches!(old, StreamsState::Error | StreamsState::PendingShutdown);
            if old == new || (closing && !matches!(new, StreamsState::NotRunning | StreamsState::Error)) {
                return;
            }
            *state = new;
            old
        };
        tracing::info!(from = ?old, to = ?new, "streams state");
        if let Some(listener) = self.listener.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            listener(new, old);
        }
    }

    fn fail(&self, error: &Error) {
        tracing::error!(%error, "a stream thread failed; the application stops");
        self.error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| error.to_string());
        self.shutdown.store(true, Ordering::SeqCst);
        self.set_state(StreamsState::Error);
    }
}

/// A running streams application (see the module docs).
pub struct StreamsApp {
    topology: Topology,
    substrate: Plumbing,
    config: Arc<StreamsConfig>,
    runtime: Handle,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for StreamsApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsApp").field("config", &self.config).field("state", &self.state()).finish()
    }
}

/// The logical and physical names of the topics a topology reads and writes (only internal
/// topics differ; few, so ordered maps).
#[derive(Debug, Default)]
struct Names {
    physical: BTreeMap<String, String>,
    logical: BTreeMap<String, String>,
}

impl Names {
    fn physical(&self, logical: &str) -> String {
        self.physical.get(logical).cloned().unwrap_or_else(|| logical.to_string())
    }
    fn logical(&self, physical: &str) -> String {
        self.logical.get(physical).cloned().unwrap_or_else(|| physical.to_string())
    }
}

impl StreamsApp {
    /// An application running `topology` on `substrate` (an `Embedded` log, a `Remote` cluster,
    /// or an `Arc<dyn Substrate>`), its futures on `runtime`; nothing happens until `start`.
    pub fn new(
        topology: Topology,
        substrate: impl Substrate + 'static,
        config: StreamsConfig,
        runtime: Handle,
    ) -> Result<Self> {
        config.check()?;
        let substrate = Plumbing::new(Arc::new(substrate), runtime.clone())?;
        let shared = Arc::new(Shared {
            state: Mutex::new(StreamsState::Created),
            listener: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            error: Mutex::new(None),
            counters: Counters::default(),
            lag: Mutex::new(BTreeMap::new()),
            restores: Mutex::new(Vec::new()),
            threads_ready: AtomicUsize::new(0),
            rebalancing: AtomicUsize::new(0),
            abandon: AtomicBool::new(false),
            n_threads: AtomicUsize::new(0),
            started: Mutex::new(None),
        });
        Ok(StreamsApp { topology, substrate, config: Arc::new(config), runtime, shared, threads: Vec::new() })
    }

    /// Calls `listener(new, old)` on every state change.
    pub fn set_state_listener(&self, listener: impl Fn(StreamsState, StreamsState) + Send + Sync + 'static) {
        *self.shared.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(listener));
    }

    /// The current state.
    pub fn state(&self) -> StreamsState {
        *self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error that stopped the application, if one did.
    pub fn error(&self) -> Option<String> {
        self.shared.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Checks the topics, creates the internal ones, and starts the threads; returns once they
    /// are started (they restore, then run: see [`StreamsApp::state`]). Call it from a thread
    /// that may block, not from inside an async task.
    pub fn start(&mut self) -> Result<()> {
        if self.state() != StreamsState::Created {
            return Err(Error::Config(format!("start on an application in state {:?}", self.state())));
        }
        self.shared.set_state(StreamsState::Rebalancing);
        *self.shared.started.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let plan = match self.plan() {
            Ok(plan) => plan,
            Err(e) => {
                self.shared.fail(&e);
                return Err(e);
            }
        };
        let names = Arc::new(plan.names);
        let globals = if self.topology.global_stores().is_empty() {
            None
        } else {
            let dir = self.config.state_dir.clone();
            let config = TaskConfig::new(&dir, &self.config.application_id, "global", 0, 1, Backend::InMemory, None);
            let mut state = TaskState::open(config)?;
            for store in self.topology.global_stores() {
                store.open_in(&mut state, StoreOptions { logging: false, ..store.options() })?;
            }
            Some(Arc::new(Mutex::new(state)))
        };
        if let Some(globals) = &globals {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let thread = GlobalThread {
                topology: self.topology.clone(),
                consumer: self.substrate.consumer(consumer_config(None))?,
                admin: self.substrate.admin.clone(),
                runtime: self.runtime.clone(),
                shared: self.shared.clone(),
                config: self.config.clone(),
                globals: globals.clone(),
            };
            let shared = self.shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("{}-global", self.config.application_id))
                .spawn(move || {
                    let result = thread.run(ready_tx);
                    if let Err(e) = &result {
                        shared.fail(e);
                    }
                    result
                })
                .map_err(|e| Error::Config(format!("cannot start the global thread: {e}")))?;
            self.threads.push(handle);
            // The stream threads start once the global tables hold their topics.
            if ready_rx.recv().is_err() {
                return Err(Error::Config(self.error().unwrap_or_else(|| "the global thread stopped".into())));
            }
        }
        let n_threads = self.config.num_stream_threads;
        self.shared.n_threads.store(n_threads, Ordering::SeqCst);
        // Each source topic's sub-topology and its partition count.
        let mut sources = HashMap::new();
        for sub in self.topology.subtopologies() {
            let Some(&(_, _, n)) = plan.tasks.iter().find(|t| t.0 == sub.id) else { continue };
            for topic in &sub.source_topics {
                sources.insert(names.physical(topic), (sub.id, n));
            }
        }
        let sources = Arc::new(sources);
        // The sub-topologies writing each repartition topic (physical name).
        let internal: BTreeSet<&str> = self.topology.internal_topics().iter().map(|t| t.name.as_str()).collect();
        let mut writers: HashMap<String, Vec<usize>> = HashMap::new();
        for sub in self.topology.subtopologies() {
            for topic in sub.sink_topics.iter().filter(|t| internal.contains(t.as_str())) {
                writers.entry(names.physical(topic)).or_default().push(sub.id);
            }
        }
        let writers = Arc::new(writers);
        let all_tasks = Arc::new(plan.tasks);
        // Thread clients are named `<application id>-<instance>-StreamThread-<n>`, so a group
        // description tells which members are threads of one instance (for standby placement).
        let instance = format!("{:016x}", instance_id());
        let mut topics: Vec<String> = sources.keys().cloned().collect();
        topics.sort();
        let exactly_once = self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
        let mut consumers = Vec::new();
        for i in 0..n_threads {
            let client_id = format!("{}-{instance}-StreamThread-{}", self.config.application_id, i + 1);
            let mut config = consumer_config(Some(&self.config.application_id));
            config.client_id = Some(client_id.clone());
            if exactly_once {
                // Input written by transactions is read once committed.
                config.isolation = Isolation::ReadCommitted;
            }
            let mut consumer = self.substrate.consumer(config)?;
            // Every thread joins before any polls, so the first assignment deals to all of them.
            block_on(&self.runtime, consumer.subscribe(topics.clone()))?;
            consumers.push((client_id, consumer));
        }
        for (i, (client_id, consumer)) in consumers.into_iter().enumerate() {
            // Exactly-once: the thread's output, changelog writes and input offsets go through
            // one transactional producer, named after the thread.
            let txn = if exactly_once { Some(self.transactional_producer(&client_id)?) } else { None };
            let producer: Arc<dyn Producer> = match &txn {
                Some(txn) => txn.clone(),
                None => self.substrate.producer.clone(),
            };
            let changelogs = match &txn {
                Some(txn) => self.substrate.changelogs.transactional(txn.clone()),
                None => self.substrate.changelogs.clone(),
            };
            self.shared.rebalancing.fetch_add(1, Ordering::SeqCst);
            let thread = StreamThread {
                txn,
                changelogs,
                client_id,
                sources: sources.clone(),
                writers: writers.clone(),
                all_tasks: all_tasks.clone(),
                topology: self.topology.clone(),
                substrate: self.substrate.clone(),
                globals: globals.clone(),
                tasks: Vec::new(),
                suspended: Vec::new(),
                owner: HashMap::new(),
                consumer,
                producer,
                runtime: self.runtime.clone(),
                config: self.config.clone(),
                shared: self.shared.clone(),
                names: names.clone(),
                last_commit: Instant::now(),
                keeps_failed_records: [&self.config.on_deserialization_error, &self.config.on_processing_error]
                    .iter()
                    .any(|p| matches!(p, ErrorPolicy::DeadLetter(_))),
                ready: false,
                out: Vec::new(),
                unpolled: Unpolled::default(),
                early: Vec::new(),
                deferred_changes: Vec::new(),
                revocation_pending: false,
                sending: None,
                in_rebalance: true,
                standbys: Vec::new(),
                standbys_placed: true,
                standby_states: BTreeMap::new(),
            };
            let shared = self.shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("{}-stream-{i}", self.config.application_id))
                .spawn(move || {
                    let result = thread.run();
                    if let Err(e) = &result {
                        shared.fail(e);
                    }
                    result
                })
                .map_err(|e| Error::Config(format!("cannot start a stream thread: {e}")))?;
            self.threads.push(handle);
        }
        Ok(())
    }

    /// A transactional producer with `id`, its first transaction begun. Its transactions stay
    /// open for a commit interval, so they time out only well after one.
    fn transactional_producer(&self, id: &str) -> Result<Arc<dyn TransactionalProducer>> {
        let timeout = transaction_timeout(self.config.commit_interval);
        let producer = self.substrate.transactional_producer(&self.runtime, id, timeout)?;
        producer.begin()?;
        Ok(producer)
    }

    /// Waits until every task runs (or `timeout` passes, or the application fails).
    pub fn wait_until_running(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.state() {
                StreamsState::Running => return Ok(()),
                StreamsState::Error => {
                    return Err(Error::Config(self.error().unwrap_or_else(|| "the application failed".into())))
                }
                _ if Instant::now() >= deadline => {
                    return Err(Error::Config(format!("not running after {timeout:?} (state {:?})", self.state())))
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// What the application has done so far.
    pub fn metrics(&self) -> Metrics {
        let c = &self.shared.counters;
        let elapsed = self
            .shared
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(0.0, |s| s.elapsed().as_secs_f64())
            .max(1e-9);
        let records_in = c.records_in.load(Ordering::Relaxed);
        let records_out = c.records_out.load(Ordering::Relaxed);
        let commits = c.commits.load(Ordering::Relaxed);
        Metrics {
            records_in,
            records_out,
            records_in_per_sec: records_in as f64 / elapsed,
            records_out_per_sec: records_out as f64 / elapsed,
            records_skipped: c.records_skipped.load(Ordering::Relaxed),
            dropped_records: c.dropped_records.load(Ordering::Relaxed),
            late_records: c.late_records.load(Ordering::Relaxed),
            process_latency: Duration::from_nanos(c.process_ns.load(Ordering::Relaxed) / records_in.max(1)),
            commits,
            commit_latency: Duration::from_nanos(c.commit_ns.load(Ordering::Relaxed) / commits.max(1)),
            lag: self.shared.lag.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            restores: self.shared.restores.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Stops the threads at once, without committing or closing anything, as if the process had
    /// died: for tests of what other instances do when one fails.
    #[doc(hidden)]
    pub fn kill(mut self) {
        self.shared.abandon.store(true, Ordering::SeqCst);
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }

    /// Stops the threads (each commits and closes its stores) and returns the first error any
    /// thread met.
    pub fn close(mut self) -> Result<()> {
        let failed = self.state() == StreamsState::Error;
        if !failed {
            self.shared.set_state(StreamsState::PendingShutdown);
        }
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let mut first = None;
        for handle in self.threads.drain(..) {
            let result = handle.join().unwrap_or_else(|_| Err(Error::Config("a stream thread panicked".into())));
            if let Err(e) = result {
                first.get_or_insert(e);
            }
        }
        self.shared.set_state(StreamsState::NotRunning);
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The topics' partitions, the internal topics created, the tasks.
    fn plan(&self) -> Result<Plan> {
        let app = &self.config.application_id;
        let admin = self.substrate.admin.clone();
        let runtime = self.runtime.clone();
        let internal: Vec<(String, Option<u32>)> =
            self.topology.internal_topics().iter().map(|t| (t.name.clone(), t.partitions)).collect();
        let mut names = Names::default();
        for (name, _) in &internal {
            let physical = format!("{app}-{name}");
            names.physical.insert(name.clone(), physical.clone());
            names.logical.insert(physical, name.clone());
        }
        let mut counts = BTreeMap::new();
        for (name, n) in &internal {
            if let Some(n) = n {
                counts.insert(name.clone(), *n);
            }
        }
        let subs = self.topology.subtopologies();
        let externals: Vec<String> = subs
            .iter()
            .flat_map(|s| s.source_topics.iter())
            .chain(self.topology.global_subtopologies().iter().flat_map(|s| s.source_topics.iter()))
            .filter(|t| !names.physical.contains_key(*t))
            .cloned()
            .collect();
        for topic in &externals {
            let described = block_on(&runtime, admin.describe_topic(topic));
            match described {
                Ok((d, _)) => {
                    counts.insert(topic.clone(), d.n_partitions);
                }
                Err(freshet_core::Error::UnknownTopic(_)) => {
                    return Err(Error::Config(format!("source topic {topic} does not exist; create it first")))
                }
                Err(e) => return Err(e.into()),
            }
        }
        crate::plan::size_internal_topics(&self.topology, &mut counts)?;
        let per_sub = crate::plan::check_copartitioned(&self.topology, &counts)?;
        for (name, _) in &internal {
            let physical = names.physical(name);
            let n = counts[name];
            match block_on(&runtime, admin.describe_topic(&physical)) {
                Ok((d, _)) if d.n_partitions == n => {}
                Ok((d, _)) => {
                    return Err(Error::Config(format!(
                        "internal topic {physical} has {} partitions where the topology needs {n}; \
                         delete it (or reset the application) to start over",
                        d.n_partitions
                    )))
                }
                Err(freshet_core::Error::UnknownTopic(_)) => {
                    let topic = NewTopic { name: physical.clone(), n_partitions: n, configs: BTreeMap::new() };
                    match block_on(&runtime, admin.create_topic(topic)) {
                        Ok(()) | Err(freshet_core::Error::TopicExists(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Output topics (and dead-letter topics) that do not exist yet are created, as a broker
        // with topic auto-creation would: with the partitions of the sub-topology writing them.
        let mut outputs: BTreeMap<String, u32> = BTreeMap::new();
        for sub in &subs {
            for topic in sub.sink_topics.iter().filter(|t| !names.physical.contains_key(*t)) {
                let n = per_sub.get(&sub.id).copied().unwrap_or(1);
                let entry = outputs.entry(topic.clone()).or_insert(n);
                *entry = (*entry).max(n);
            }
        }
        let policies =
            [&self.config.on_deserialization_error, &self.config.on_processing_error, &self.config.on_production_error];
        for policy in policies {
            if let ErrorPolicy::DeadLetter(topic) = policy {
                outputs.entry(topic.clone()).or_insert(1);
            }
        }
        for (topic, n) in outputs {
            if let Err(freshet_core::Error::UnknownTopic(_)) = block_on(&runtime, admin.describe_topic(&topic)) {
                tracing::info!(%topic, partitions = n, "creating an output topic that does not exist");
                let new = NewTopic { name: topic, n_partitions: n, configs: BTreeMap::new() };
                match block_on(&runtime, admin.create_topic(new)) {
                    Ok(()) | Err(freshet_core::Error::TopicExists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let mut tasks = Vec::new();
        for (&sub, &n) in &per_sub {
            for partition in 0..n {
                tasks.push((sub, partition, n));
            }
        }
        // Spread each sub-topology's partitions over the threads.
        tasks.sort_by_key(|&(sub, partition, _)| (partition, sub));
        Ok(Plan { names, tasks })
    }
}

impl Drop for StreamsApp {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shared.shutdown.store(true, Ordering::SeqCst);
            for handle in self.threads.drain(..) {
                let _ = handle.join();
            }
        }
    }
}

struct Plan {
    names: Names,
    /// `(sub-topology, partition, partitions of the sub-topology)`.
    tasks: Vec<(usize, u32, u32)>,
}

fn block_on<F: std::future::Future>(runtime: &Handle, future: F) -> F::Output {
    runtime.block_on(future)
}

fn consumer_config(group: Option<&str>) -> ConsumerConfig {
    ConsumerConfig {
        group_id: group.map(str::to_string),
        auto_offset_reset: AutoOffsetReset::Earliest,
        max_partition_fetch_bytes: 1 << 20,
        fetch_max_bytes: 16 << 20,
        ..ConsumerConfig::default()
    }
}

/// A stream thread's transaction timeout: at least Kafka Streams' 10 s under exactly-once, and
/// twice the commit interval, since a transaction stays open for one.
fn transaction_timeout(commit_interval: Duration) -> Duration {
    (commit_interval * 2).max(Duration::from_secs(10)).min(freshet_core::MAX_TRANSACTION_TIMEOUT)
}

/// A number naming one started application instance: random per process (std's hasher keys),
/// with the time and a count, so instances on other machines differ too.
fn instance_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static STARTED: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(STARTED.fetch_add(1, Ordering::Relaxed));
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// Repartition topics a stream thread wrote records to that its consumer may not have seen yet:
/// records in the outbox, in the batch in flight, or acknowledged since the last poll.
#[derive(Default)]
struct Unpolled {
    outbox: HashSet<String>,
    in_flight: HashSet<String>,
    acknowledged: HashSet<String>,
}

impl Unpolled {
    fn contains(&self, topic: &str) -> bool {
        self.outbox.contains(topic) || self.in_flight.contains(topic) || self.acknowledged.contains(topic)
    }
}

/// One task as a thread runs it.
struct RunningTask {
    id: String,
    graph: TaskGraph,
    ctx: TaskContext,
    /// Records read and not yet processed, per (physical) input partition.
    queues: BTreeMap<TopicPartition, VecDeque<ConsumerRecord>>,
    /// The (physical) input topics that are tables' topics: first among equal timestamps.
    tables: BTreeSet<String>,
    /// The next offset to commit per input partition (after the last record processed).
    processed: BTreeMap<TopicPartition, i64>,
    /// Records on the log past what was fetched, per input partition, at the last poll.
    behind: BTreeMap<TopicPartition, i64>,
    /// Since when the task has waited for a partition to be fetched.
    waiting_since: Option<Instant>,
    /// Dropped and late counts already added to the application's counters.
    reported: (u64, u64),
    span: tracing::Span,
}

/// A stream thread: a member of its application's group, running the tasks dealt to it.
struct StreamThread {
    /// The thread's consumer's client id: `<application id>-<instance>-StreamThread-<n>`.
    client_id: String,
    /// Each (physical) source topic's sub-topology and that sub-topology's partition count.
    sources: Arc<HashMap<String, (usize, u32)>>,
    /// The sub-topologies writing each (physical) repartition topic.
    writers: Arc<HashMap<String, Vec<usize>>>,
    /// Every task of the application: `(sub-topology, partition, partitions)`.
    all_tasks: Arc<Vec<(usize, u32, u32)>>,
    topology: Topology,
    substrate: Plumbing,
    globals: Option<Arc<Mutex<TaskState>>>,
    /// Whether the thread has had its first assignment.
    ready: bool,
    /// Between a revocation and the end of its rebalance (and before the first assignment).
    in_rebalance: bool,
    /// Tasks this thread keeps warm copies of: `(sub-topology, partition, partitions)`.
    standbys: Vec<(usize, u32, u32)>,
    /// Whether the standbys follow the group's current assignment (else: try at the next commit).
    standbys_placed: bool,
    /// The standby copies open now, by task id.
    standby_states: BTreeMap<String, TaskState>,
    tasks: Vec<RunningTask>,
    /// Tasks whose partitions were revoked, kept open until the rebalance ends: closed if it
    /// does not give them back.
    suspended: Vec<RunningTask>,
    /// Which task reads each (physical) input partition.
    owner: HashMap<TopicPartition, usize>,
    consumer: Box<dyn Consumer>,
    /// Where output goes: the substrate's producer, or (exactly-once) `txn`.
    producer: Arc<dyn Producer>,
    /// Exactly-once: the thread's transactional producer, a transaction always open.
    txn: Option<Arc<dyn TransactionalProducer>>,
    /// The changelogs this thread's tasks write (through `txn`, exactly-once).
    changelogs: Changelogs,
    runtime: Handle,
    config: Arc<StreamsConfig>,
    shared: Arc<Shared>,
    names: Arc<Names>,
    last_commit: Instant,
    /// Whether failed input records may go to a dead-letter topic (so each is kept until
    /// processed).
    keeps_failed_records: bool,
    /// Output records not sent yet.
    out: Vec<ProducerRecord>,
    /// Repartition topics this thread wrote records to that a poll may not have seen yet.
    unpolled: Unpolled,
    /// Records polled while tasks were opening, for the tasks once open.
    early: Vec<freshet_core::ConsumedBatches>,
    /// Group changes seen while stores were opening, for the next loop to handle before it
    /// polls.
    deferred_changes: Vec<GroupChange>,
    /// A revocation was reported and completes at the next poll: no poll before the commit.
    revocation_pending: bool,
    /// The batch of output in flight.
    sending: Option<Sending>,
}

/// A batch of output records sent and not yet acknowledged.
struct Sending {
    handle: tokio::task::JoinHandle<freshet_core::Result<()>>,
    n: u64,
    /// The records, when the production error policy may need them one by one.
    kept: Option<Vec<ProducerRecord>>,
}

/// What opening a task needs: everything of a stream thread but its consumer, so tasks can open
/// (restoring their stores) on a helper thread while the stream thread's consumer keeps polling
/// and so stays in its group.
#[derive(Clone)]
struct TaskOpener {
    topology: Topology,
    changelogs: Changelogs,
    globals: Option<Arc<Mutex<TaskState>>>,
    config: Arc<StreamsConfig>,
    shared: Arc<Shared>,
    names: Arc<Names>,
}

impl TaskOpener {
    /// Opens a task; waits while another thread of this process still has its directory open
    /// (it is closing it in the same rebalance). `None` if the application stops meanwhile.
    fn open_task_when_free(&self, sub: usize, partition: u32, n: u32) -> Result<Option<RunningTask>> {
        let deadline = Instant::now() + TASK_DIRECTORY_WAIT;
        loop {
            match self.open_task(sub, partition, n) {
                Err(Error::State(freshet_state::Error::Locked { path })) => {
                    if self.shared.shutdown.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                    if Instant::now() >= deadline {
                        return Err(Error::Config(format!(
                            "task {sub}_{partition}: its directory {} stayed locked for {TASK_DIRECTORY_WAIT:?} \
                             (is another process using this state directory?)",
                            path.display()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other.map(Some),
            }
        }
    }

    /// Opens a task: its stores (restored from their changelogs), its graph.
    fn open_task(&self, sub: usize, partition: u32, n: u32) -> Result<RunningTask> {
        let app = &self.config.application_id;
        let id = format!("{sub}_{partition}");
        let span = tracing::info_span!("task", app = %app, task = %id);
        let _entered = span.enter();
        let stores = self.topology.stores_of(sub);
        let state = if stores.is_empty() {
            None
        } else {
            let mut config = TaskConfig::new(
                &self.config.state_dir,
                app,
                &id,
                partition,
                n,
                self.config.backend.clone(),
                Some(self.changelogs.clone()),
            );
            config.cache_bytes_per_store = self.config.cache_bytes_per_store;
            config.restore_listener = self.config.restore_listener.clone();
            config.exactly_once = self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
            let mut state = TaskState::open(config)?;
            for store in stores {
                store.open_in(&mut state, store.options())?;
            }
            self.shared.restores.lock().unwrap_or_else(|e| e.into_inner()).extend(state.restores().iter().cloned());
            Some(state)
        };
        let mut graph = self.topology.build_task(sub);
        let mut ctx = TaskContext::new(sub, partition);
        ctx.wall_clock_ms = self.config.clock.now_ms();
        ctx.state = state;
        ctx.globals = self.globals.clone();
        graph.init(&mut ctx)?;
        let queues = graph
            .source_topics()
            .map(|topic| (TopicPartition::new(self.names.physical(topic), partition), VecDeque::new()))
            .collect();
        let tables =
            graph.source_topics().filter(|t| graph.is_table_source(t)).map(|t| self.names.physical(t)).collect();
        drop(_entered);
        Ok(RunningTask {
            id,
            graph,
            ctx,
            queues,
            tables,
            processed: BTreeMap::new(),
            behind: BTreeMap::new(),
            waiting_since: None,
            reported: (0, 0),
            span,
        })
    }
}

/// Output records gathered before a send: sent when this many are waiting, and at the end of
/// each loop.
const SEND_BATCH: usize = 50_000;

/// How often a stream thread opening tasks polls its (paused) consumer to stay in its group.
const KEEPALIVE_POLL: Duration = Duration::from_secs(1);

/// How long a new task waits for its directory while another thread of the process closes it.
const TASK_DIRECTORY_WAIT: Duration = Duration::from_secs(60);

/// How long a task waits for a partition that has records on the log but none fetched yet
/// before it processes its other partitions regardless.
const MAX_WAIT_FOR_PARTITION: Duration = Duration::from_secs(5);

impl StreamThread {
    fn app(&self) -> &str {
        &self.config.application_id
    }

    fn run(mut self) -> Result<()> {
        let result = self.run_loop();
        if self.shared.abandon.load(Ordering::SeqCst) {
            // Killed: no commit, no close; the stores, locks and group membership go as a dead
            // process's would.
            self.tasks.clear();
            self.suspended.clear();
            self.standby_states.clear();
            return result;
        }
        // A failing thread does not commit: its last records will be processed again.
        let closed = if result.is_ok() { self.commit() } else { Ok(()) };
        self.close_standbys();
        if self.txn.is_some() && (result.is_err() || closed.is_err()) {
            // Exactly-once: what the open transaction wrote must not stay in the stores.
            self.abort_and_lose_tasks("the stream thread failed");
            return result.and(closed);
        }
        let mut close_result = Ok(());
        for task in std::mem::take(&mut self.tasks).into_iter().chain(std::mem::take(&mut self.suspended)) {
            let r = self.close_task(task);
            if close_result.is_ok() {
                close_result = r;
            }
        }
        result.and(closed).and(close_result)
    }

    /// Closes a task after a commit: its stores flushed and checkpointed.
    fn close_task(&self, task: RunningTask) -> Result<()> {
        let RunningTask { mut graph, mut ctx, .. } = task;
        let r = graph.close().map_err(Error::from);
        let r2 = ctx.state.take().map_or(Ok(()), |s| s.close().map_err(Error::from));
        r.and(r2)
    }

    /// Closes a task whose last changes may not commit: exactly-once, its stores keep no
    /// checkpoint and are rebuilt from their changelogs when opened again.
    fn close_task_dirty(&self, task: RunningTask) {
        let RunningTask { mut graph, mut ctx, id, .. } = task;
        if let Err(error) = graph.close() {
            tracing::warn!(task = %id, %error, "closing a task's processors failed");
        }
        if let Some(state) = ctx.state.take() {
            state.close_dirty();
        }
    }

    /// Exactly-once, after a failure or when the group moved on: aborts the open transaction and
    /// closes every task without committing (their input is processed again from the committed
    /// offsets by whoever owns it next), then begins a new transaction, with a new producer if
    /// this one was fenced.
    fn abort_and_lose_tasks(&mut self, why: &str) -> Option<Error> {
        tracing::warn!(member = %self.client_id, why, "aborting the transaction and closing this thread's tasks");
        self.out.clear();
        self.unpolled.outbox.clear();
        if let Some(Sending { handle, .. }) = self.sending.take() {
            let _ = block_on(&self.runtime, handle);
        }
        for task in std::mem::take(&mut self.tasks).into_iter().chain(std::mem::take(&mut self.suspended)) {
            self.close_task_dirty(task);
        }
        self.index_partitions();
        let txn = self.txn.clone()?;
        match block_on(&self.runtime, txn.abort()) {
            Ok(()) => txn.begin().err().map(Error::from),
            Err(error) => Some(Error::from(error)),
        }
    }

    fn enter_rebalance(&mut self) {
        if !self.in_rebalance {
            self.in_rebalance = true;
            self.shared.rebalancing.fetch_add(1, Ordering::SeqCst);
            self.shared.set_state(StreamsState::Rebalancing);
        }
    }

    fn leave_rebalance(&mut self) {
        if self.in_rebalance {
            self.in_rebalance = false;
            self.shared.rebalancing.fetch_sub(1, Ordering::SeqCst);
        }
        if !self.ready {
            self.ready = true;
            self.shared.threads_ready.fetch_add(1, Ordering::SeqCst);
        }
        let all_ready =
            self.shared.threads_ready.load(Ordering::SeqCst) >= self.shared.n_threads.load(Ordering::SeqCst);
        if self.shared.rebalancing.load(Ordering::SeqCst) == 0 && all_ready {
            self.shared.set_state(StreamsState::Running);
        }
    }

    /// The group is taking `revoked` away (they stay this thread's until its next poll):
    /// everything processed so far is sent, flushed and committed, then the tasks that lose
    /// partitions are suspended, their buffered records dropped (the next owner reads them again
    /// from the commit).
    fn on_revoked(&mut self, revoked: &[TopicPartition]) -> Result<()> {
        self.revocation_pending = true;
        self.enter_rebalance();
        self.send(true)?;
        self.commit_or_lose_tasks()?;
        let (lost, kept): (Vec<RunningTask>, Vec<RunningTask>) =
            std::mem::take(&mut self.tasks).into_iter().partition(|t| t.queues.keys().any(|tp| revoked.contains(tp)));
        self.tasks = kept;
        for mut task in lost {
            tracing::info!(member = %self.client_id, task = %task.id, "task suspended: its partitions were revoked");
            task.queues.values_mut().for_each(VecDeque::clear);
            task.behind.clear();
            task.waiting_since = None;
            self.suspended.push(task);
        }
        self.index_partitions();
        Ok(())
    }

    /// A rebalance ended with `assigned` this thread's partitions: suspended tasks given back
    /// resume, the others close; new tasks open (restoring their stores) and read from the
    /// committed offsets.
    fn on_assigned(&mut self, assigned: &[TopicPartition]) -> Result<()> {
        // Placed again below; a task that moves here may be one of them.
        self.close_standbys();
        let mut wanted: BTreeMap<String, (usize, u32, u32)> = BTreeMap::new();
        for tp in assigned {
            match self.sources.get(&tp.topic) {
                Some(&(sub, n)) => {
                    wanted.insert(format!("{sub}_{}", tp.partition), (sub, tp.partition, n));
                }
                None => tracing::warn!(member = %self.client_id, %tp, "assigned a partition no task reads"),
            }
        }
        // Running tasks whose partitions went without a revocation (the group lost this member).
        let (kept, gone): (Vec<RunningTask>, Vec<RunningTask>) =
            std::mem::take(&mut self.tasks).into_iter().partition(|t| wanted.contains_key(&t.id));
        self.tasks = kept;
        if self.txn.is_some() && !gone.is_empty() {
            // Exactly-once: the open transaction holds their uncommitted work; it is aborted and
            // every task closed dirty (those still wanted open again below, from their changelogs).
            self.tasks.extend(gone);
            if self.abort_and_lose_tasks("partitions were lost without a revocation").is_some() {
                self.renew_producer()?;
            }
        } else {
            for task in gone {
                tracing::info!(member = %self.client_id, task = %task.id, "task closed: no longer assigned");
                self.close_task(task)?;
            }
        }
        for task in std::mem::take(&mut self.suspended) {
            if wanted.contains_key(&task.id) {
                tracing::info!(member = %self.client_id, task = %task.id, "task resumed");
                self.tasks.push(task);
            } else {
                tracing::info!(member = %self.client_id, task = %task.id, "task closed: revoked");
                self.close_task(task)?;
            }
        }
        let new: Vec<(usize, u32, u32)> =
            wanted.iter().filter(|(id, _)| !self.tasks.iter().any(|t| t.id == **id)).map(|(_, t)| *t).collect();
        if !new.is_empty() {
            let Some(opened) = self.open_while_polling(assigned, new)? else { return Ok(()) };
            for task in opened {
                tracing::info!(member = %self.client_id, task = %task.id, "task assigned");
                self.tasks.push(task);
            }
        }
        self.tasks.sort_by(|a, b| a.id.cmp(&b.id));
        self.index_partitions();
        self.consumer.resume(assigned)?;
        self.standbys_placed = false;
        self.place_standbys();
        tracing::info!(member = %self.client_id, tasks = self.tasks.len(), "stream thread running");
        self.leave_rebalance();
        Ok(())
    }

    fn opener(&self) -> TaskOpener {
        TaskOpener {
            topology: self.topology.clone(),
            changelogs: self.changelogs.clone(),
            globals: self.globals.clone(),
            config: self.config.clone(),
            shared: self.shared.clone(),
            names: self.names.clone(),
        }
    }

    /// Opens `new` tasks (restoring their stores, which may take long) while the consumer keeps
    /// polling (see `while_polling`). `None` if the application stops meanwhile.
    fn open_while_polling(
        &mut self,
        assigned: &[TopicPartition],
        new: Vec<(usize, u32, u32)>,
    ) -> Result<Option<Vec<RunningTask>>> {
        let opener = self.opener();
        self.while_polling(assigned, move || {
            let mut tasks = Vec::new();
            for (sub, partition, n) in new {
                match opener.open_task_when_free(sub, partition, n)? {
                    Some(task) => tasks.push(task),
                    None => return Ok(None),
                }
            }
            Ok(Some(tasks))
        })
    }

    /// Runs `work` (opening stores, which may restore for long) on a helper thread while
    /// `partitions` are paused and the consumer polls every second, so the group does not count
    /// this member gone (librdkafka's `max.poll.interval.ms`). A rebalance seen meanwhile stops
    /// those polls and is handled, in order, by the next loop before it polls; no poll happens
    /// while a revocation waits for this thread's commit. The partitions are resumed after.
    fn while_polling<T: Send + 'static>(
        &mut self,
        partitions: &[TopicPartition],
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (done, finished) = std::sync::mpsc::channel();
        let helper = std::thread::Builder::new()
            .name(format!("{}-open", self.client_id))
            .spawn(move || done.send(work()))
            .map_err(|e| Error::Config(format!("cannot start a thread to open stores: {e}")))?;
        self.consumer.pause(partitions)?;
        let result = loop {
            match finished.recv_timeout(KEEPALIVE_POLL) {
                Ok(result) => break result,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if self.deferred_changes.is_empty() && !self.revocation_pending {
                        let batches = block_on(&self.runtime, self.consumer.poll(Duration::ZERO))?;
                        self.early.extend(batches);
                        self.deferred_changes.extend(self.consumer.take_group_changes());
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(Error::Config("the thread opening stores stopped".into()))
                }
            }
        };
        let _ = helper.join();
        self.consumer.resume(partitions)?;
        result
    }

    fn index_partitions(&mut self) {
        self.owner.clear();
        for (i, task) in self.tasks.iter().enumerate() {
            for tp in task.queues.keys() {
                self.owner.insert(tp.clone(), i);
            }
        }
    }

    /// Commits; if the group has moved on without this member (its session ran out, or it was
    /// too slow to rejoin), its tasks belong to others now: they are closed uncommitted (their
    /// records will be processed again: at least once) and the thread waits for its next
    /// assignment.
    fn commit_or_lose_tasks(&mut self) -> Result<()> {
        match self.commit() {
            // Exactly-once: the transaction did not commit (the group moved on, so its offsets
            // were refused, or this producer was fenced): nothing of it is seen; the tasks go.
            Err(Error::Log(
                e @ (freshet_core::Error::Transaction(_)
                | freshet_core::Error::ProducerFenced(_)
                | freshet_core::Error::Rebalanced(_)),
            )) if self.txn.is_some() => {
                let fenced = matches!(e, freshet_core::Error::ProducerFenced(_));
                let failed = self.abort_and_lose_tasks(&e.to_string());
                if fenced || failed.is_some() {
                    self.renew_producer()?;
                }
                Ok(())
            }
            Err(Error::Log(freshet_core::Error::Rebalanced(reason))) => {
                tracing::warn!(member = %self.client_id, %reason, "the group moved on; closing this thread's tasks");
                for task in std::mem::take(&mut self.tasks).into_iter().chain(std::mem::take(&mut self.suspended)) {
                    self.close_task(task)?;
                }
                self.index_partitions();
                Ok(())
            }
            other => other,
        }
    }

    /// Exactly-once, after a fencing: a new transactional producer with the thread's id (which
    /// fences the old one for good) and its first transaction begun; new tasks write through it.
    fn renew_producer(&mut self) -> Result<()> {
        let timeout = transaction_timeout(self.config.commit_interval);
        let txn = self.substrate.transactional_producer(&self.runtime, &self.client_id, timeout)?;
        txn.begin()?;
        self.changelogs = self.substrate.changelogs.transactional(txn.clone());
        self.producer = txn.clone();
        self.txn = Some(txn);
        Ok(())
    }

    /// Places the standby copies from the group's description (members in member-id order): the
    /// first replica of a stateful task goes to the member the range assignor would give the
    /// task if its instance left; further replicas to the next members, after the one running
    /// it, of instances holding no copy yet (a copy on the same instance would not survive its
    /// loss).
    /// While the group is not settled, the placement waits for the next commit.
    fn place_standbys(&mut self) {
        if self.standbys_placed {
            return;
        }
        if !self.config.backend.persistent() || self.config.num_standby_replicas == 0 {
            self.standbys.clear();
            self.standbys_placed = true;
            return;
        }
        let described = match block_on(&self.runtime, self.substrate.admin.group_members(self.app())) {
            Ok(Some(d)) if d.state == "Stable" => d,
            Ok(_) => return,
            Err(error) => {
                tracing::debug!(member = %self.client_id, %error, "cannot describe the group to place standbys");
                return;
            }
        };
        let mut members = described.members;
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        let instance =
            |client_id: &str| client_id.rsplit_once("-StreamThread-").map_or(client_id, |(i, _)| i).to_string();
        // Where the range assignor would deal each partition if one instance's members left:
        // the first replica goes there, so a task that moves when its instance dies lands where
        // its warm copy is.
        let topics: Vec<String> = self.sources.keys().cloned().collect();
        let sources = self.sources.clone();
        let mut if_gone: HashMap<String, BTreeMap<String, Vec<TopicPartition>>> = HashMap::new();
        let mut mine = Vec::new();
        for &task in self.all_tasks.iter() {
            let (sub, partition, _) = task;
            if self.topology.stores_of(sub).is_empty() {
                continue;
            }
            let Some(topic) = self.sources.iter().find(|(_, s)| s.0 == sub).map(|(t, _)| t) else { continue };
            let tp = TopicPartition::new(topic.clone(), partition);
            let Some(active) = members.iter().position(|m| m.assignment.contains(&tp)) else {
                // Not settled yet: some task has no member.
                return;
            };
            let gone = instance(&members[active].client_id);
            let survivors = if_gone.entry(gone.clone()).or_insert_with(|| {
                let left: Vec<(String, Vec<String>)> = members
                    .iter()
                    .filter(|m| instance(&m.client_id) != gone)
                    .map(|m| (m.member_id.clone(), topics.clone()))
                    .collect();
                freshet_core::range_assign(&left, |t| sources.get(t).map(|s| s.1))
            });
            let heir = survivors.iter().find(|(_, a)| a.contains(&tp)).map(|(m, _)| m.clone());
            let mut used = vec![gone];
            if let Some(heir) = heir.and_then(|h| members.iter().find(|m| m.member_id == h)) {
                used.push(instance(&heir.client_id));
                if heir.client_id == self.client_id {
                    mine.push(task);
                }
            }
            for r in used.len()..=self.config.num_standby_replicas {
                let host = (0..members.len())
                    .map(|k| &members[(active + r + k) % members.len()])
                    .find(|m| !used.contains(&instance(&m.client_id)));
                let Some(host) = host else { break };
                used.push(instance(&host.client_id));
                if host.client_id == self.client_id {
                    mine.push(task);
                }
            }
        }
        tracing::debug!(member = %self.client_id, standbys = mine.len(), "standbys placed");
        self.standbys = mine;
        self.standbys_placed = true;
        self.refresh_standbys();
    }

    /// Brings each standby copy up to its changelog's end: a copy already open applies what its
    /// changelogs gained since (and checkpoints); one not open yet opens its stores, restoring
    /// the tail past their checkpoint, and stays open. Copies no longer placed here are closed. A
    /// copy whose directory is busy (its task runs in this instance) waits for the next commit.
    fn refresh_standbys(&mut self) {
        let placed: BTreeMap<String, (usize, u32, u32)> =
            self.standbys.iter().map(|&(s, p, n)| (format!("{s}_{p}"), (s, p, n))).collect();
        let gone: Vec<String> = self.standby_states.keys().filter(|id| !placed.contains_key(*id)).cloned().collect();
        for id in gone {
            self.close_standby(&id);
        }
        let open: Vec<String> = self.standby_states.keys().cloned().collect();
        for id in &open {
            let caught_up = self.standby_states.get_mut(id).map_or(Ok(0), |state| state.catch_up());
            match caught_up {
                Ok(n) => tracing::debug!(member = %self.client_id, task = %id, applied = n, "standby refreshed"),
                Err(error) => {
                    tracing::debug!(member = %self.client_id, task = %id, %error, "standby not refreshed this time");
                    self.close_standby(id);
                }
            }
        }
        // New copies restore what their checkpoint lacks (everything, the first time): on a
        // helper thread, as tasks do.
        let new: Vec<(String, (usize, u32, u32))> =
            placed.into_iter().filter(|(id, _)| !self.standby_states.contains_key(id)).collect();
        if new.is_empty() {
            return;
        }
        let opener = self.opener();
        let assignment = self.consumer.assignment();
        let opened = self.while_polling(&assignment, move || {
            Ok(new
                .into_iter()
                .map(|(id, (sub, partition, n))| {
                    let state = opener.open_standby(sub, partition, n);
                    (id, state)
                })
                .collect::<Vec<_>>())
        });
        match opened {
            Ok(opened) => {
                for (id, state) in opened {
                    match state {
                        Ok(state) => {
                            let restored: u64 = state.restores().iter().map(|r| r.n_records).sum();
                            tracing::debug!(member = %self.client_id, task = %id, restored, "standby opened");
                            self.standby_states.insert(id, state);
                        }
                        Err(error) => {
                            tracing::debug!(member = %self.client_id, task = %id, %error, "standby not opened this time")
                        }
                    }
                }
            }
            Err(error) => tracing::debug!(member = %self.client_id, %error, "standbys not opened this time"),
        }
    }
}

impl TaskOpener {
    fn open_standby(&self, sub: usize, partition: u32, n: u32) -> Result<TaskState> {
        let id = format!("{sub}_{partition}");
        let mut config = TaskConfig::new(
            &self.config.state_dir,
            &self.config.application_id,
            &id,
            partition,
            n,
            self.config.backend.clone(),
            Some(self.changelogs.clone()),
        );
        config.cache_bytes_per_store = self.config.cache_bytes_per_store;
        let mut state = TaskState::open(config)?;
        for store in self.topology.stores_of(sub) {
            store.open_in(&mut state, store.options())?;
        }
        Ok(state)
    }
}

impl StreamThread {
    fn close_standby(&mut self, id: &str) {
        if let Some(state) = self.standby_states.remove(id) {
            if let Err(error) = state.close() {
                tracing::debug!(member = %self.client_id, task = %id, %error, "closing a standby copy failed");
            }
        }
    }

    /// Closes every standby copy (a rebalance may make one of them a task of this instance).
    fn close_standbys(&mut self) {
        let ids: Vec<String> = self.standby_states.keys().cloned().collect();
        for id in ids {
            self.close_standby(&id);
        }
    }

    fn run_loop(&mut self) -> Result<()> {
        while !self.shared.shutdown.load(Ordering::SeqCst) {
            let buffered = self.tasks.iter().any(|t| t.queues.values().any(|q| !q.is_empty()));
            let wait = if buffered { Duration::ZERO } else { self.config.poll_wait };
            // Changes seen while stores opened come first, before any poll: a poll would
            // complete a revocation among them before this thread committed.
            let mut changes: VecDeque<GroupChange> = self.deferred_changes.drain(..).collect();
            let batches = if changes.is_empty() {
                self.revocation_pending = false;
                // What was acknowledged before this poll is on the log for it to see.
                self.unpolled.acknowledged.clear();
                let batches = block_on(&self.runtime, self.consumer.poll(wait))?;
                changes.extend(self.consumer.take_group_changes());
                batches
            } else {
                Vec::new()
            };
            while let Some(change) = changes.pop_front() {
                match change {
                    GroupChange::Revoked(partitions) => self.on_revoked(&partitions)?,
                    GroupChange::Assigned(partitions) => self.on_assigned(&partitions)?,
                }
                // Seen while tasks were opening: handled in order, after them.
                changes.extend(self.deferred_changes.drain(..));
            }
            let early = std::mem::take(&mut self.early);
            let batches = batches.into_iter().chain(early);
            let mut lag = Vec::new();
            for b in batches {
                let next = b.next_offset();
                lag.push((b.tp.clone(), (b.high_watermark - next).max(0)));
                let Some(&task) = self.owner.get(&b.tp) else { continue };
                let task = &mut self.tasks[task];
                task.behind.insert(b.tp.clone(), (b.high_watermark - next).max(0));
                b.records_into(task.queues.entry(b.tp.clone()).or_default())?;
            }
            if !lag.is_empty() {
                self.shared.lag.lock().unwrap_or_else(|e| e.into_inner()).extend(lag);
            }
            for i in 0..self.tasks.len() {
                self.process_task(i)?;
                if self.out.len() >= SEND_BATCH {
                    self.send(false)?;
                }
            }
            let now = self.config.clock.now_ms();
            for i in 0..self.tasks.len() {
                let task = &mut self.tasks[i];
                task.ctx.wall_clock_ms = now;
                let _entered = task.span.clone().entered();
                task.graph.punctuate(PunctuationType::WallClockTime, now, &mut task.ctx)?;
                self.drain_output(i);
            }
            self.send(false)?;
            if self.last_commit.elapsed() >= self.config.commit_interval {
                self.commit_or_lose_tasks()?;
                self.place_standbys();
            }
        }
        Ok(())
    }

    /// Processes every buffered record of task `i`, each time from the partition whose next
    /// record is oldest.
    fn process_task(&mut self, i: usize) -> Result<()> {
        let span = self.tasks[i].span.clone();
        let _entered = span.enter();
        // Timed per call, not per record (reading the clock costs as much as a simple operator).
        let started = Instant::now();
        let result = self.process_buffered(i);
        self.shared.counters.process_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result
    }

    /// Whether records of the repartition topic `topic` may still come from this thread: a task
    /// of a sub-topology writing it has records to process, or its input is behind the log, or
    /// records for it wait to be sent, or the same holds of a repartition topic that task reads
    /// (a chain of sub-topologies: a join of two aggregates' results waits for the input of
    /// each aggregate, not only for the aggregate).
    fn upstream_busy(&self, topic: &str) -> bool {
        self.upstream_busy_from(topic, &mut Vec::new())
    }

    fn upstream_busy_from<'a>(&'a self, topic: &'a str, seen: &mut Vec<&'a str>) -> bool {
        if seen.contains(&topic) {
            return false;
        }
        seen.push(topic);
        let Some(subs) = self.writers.get(topic) else { return false };
        if self.unpolled.contains(topic) {
            return true;
        }
        let writers = self.tasks.iter().filter(|t| subs.contains(&t.ctx.subtopology));
        for t in writers {
            if t.queues.values().any(|q| !q.is_empty()) || t.behind.values().any(|&lag| lag > 0) {
                return true;
            }
            if t.queues
                .keys()
                .any(|tp| self.writers.contains_key(&tp.topic) && self.upstream_busy_from(&tp.topic, seen))
            {
                return true;
            }
        }
        false
    }

    fn process_buffered(&mut self, i: usize) -> Result<()> {
        loop {
            // A partition with nothing buffered but more to come: more on the log, or (a
            // repartition topic) records its writers in this thread have yet to produce. Its next
            // records may be older than the other partitions' buffered ones, so the task waits for
            // the next poll, for a while at most. Kafka Streams waits only for records on the log
            // (max.task.idle.ms = 0); waiting for this thread's own upstream tasks too keeps a join
            // from racing ahead of one side when both are repartitioned (replaying history, the
            // side with fewer records would otherwise reach the join late).
            let task = &self.tasks[i];
            let starved = task.queues.len() > 1
                && task.queues.iter().any(|(tp, q)| {
                    q.is_empty() && (task.behind.get(tp).is_some_and(|&lag| lag > 0) || self.upstream_busy(&tp.topic))
                });
            let extractor = &self.config.timestamp_extractor;
            let task = &mut self.tasks[i];
            if starved {
                let since = *task.waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() < MAX_WAIT_FOR_PARTITION {
                    return Ok(());
                }
            } else {
                task.waiting_since = None;
            }
            // The oldest record; of equal timestamps, a table's first (see
            // `TaskGraph::is_table_source`).
            let next = task
                .queues
                .iter()
                .filter_map(|(tp, q)| q.front().map(|r| (extractor.extract(r), tp)))
                .min_by_key(|(ts, tp)| (*ts, !task.tables.contains(&tp.topic)))
                .map(|(_, tp)| tp.clone());
            let Some(tp) = next else { return Ok(()) };
            let record = task.queues.get_mut(&tp).and_then(VecDeque::pop_front).expect("a record is there");
            self.process_record(i, &tp, record)?;
            if self.out.len() >= SEND_BATCH {
                self.send(false)?;
            }
        }
    }

    fn process_record(&mut self, i: usize, tp: &TopicPartition, r: ConsumerRecord) -> Result<()> {
        let timestamp = self.config.timestamp_extractor.extract(&r);
        let task = &mut self.tasks[i];
        let offset = r.offset;
        let meta = RecordMeta { topic: self.names.logical(&tp.topic), partition: tp.partition, offset };
        // The record is kept (its bytes shared) only when a failure could send it to a dead-letter
        // topic.
        let (key, value, headers, kept) = if self.keeps_failed_records {
            (r.key.clone(), r.value.clone(), r.headers.clone(), Some(r))
        } else {
            (r.key, r.value, r.headers, None)
        };
        let result = task.graph.process(meta, key, value, timestamp, headers, &mut task.ctx);
        let result = result.and_then(|()| {
            let now = task.ctx.stream_time_ms;
            task.graph.punctuate(PunctuationType::StreamTime, now, &mut task.ctx)
        });
        match task.processed.get_mut(tp) {
            Some(next) => *next = offset + 1,
            None => {
                task.processed.insert(tp.clone(), offset + 1);
            }
        }
        let counters = &self.shared.counters;
        counters.records_in.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = result {
            let policy = match &error {
                freshet_dsl::Error::Deserialize { .. } => &self.config.on_deserialization_error,
                _ => &self.config.on_processing_error,
            };
            // The failed record's partial output is dropped with it.
            task.ctx.output.clear();
            let (topic, partition) = (&tp.topic, tp.partition);
            match policy {
                ErrorPolicy::Fail => {
                    return Err(Error::Config(format!(
                        "task {} failed on {topic}-{partition} offset {offset}: {error}",
                        task.id
                    )))
                }
                ErrorPolicy::LogAndContinue => {
                    tracing::warn!(task = %task.id, %topic, partition, offset, %error, "skipping a record that failed");
                }
                ErrorPolicy::DeadLetter(dlq) => {
                    tracing::warn!(task = %task.id, %topic, partition, offset, %error, dead_letter_topic = %dlq, "a record that failed goes to the dead-letter topic");
                    let r = kept.expect("records are kept when a policy dead-letters");
                    self.out.push(dead_letter(dlq, topic, partition, offset, &error.to_string(), r));
                }
            }
            counters.records_skipped.fetch_add(1, Ordering::Relaxed);
        }
        self.drain_output(i);
        Ok(())
    }

    /// Moves what task `i`'s sinks wrote to the outbox, under physical topic names.
    fn drain_output(&mut self, i: usize) {
        let task = &mut self.tasks[i];
        for s in task.ctx.output.drain(..) {
            let topic = match self.names.physical.get(&s.topic) {
                Some(physical) => physical.clone(),
                None => s.topic,
            };
            if self.writers.contains_key(&topic) && !self.unpolled.outbox.contains(&topic) {
                self.unpolled.outbox.insert(topic.clone());
            }
            self.out.push(ProducerRecord {
                topic,
                partition: s.partition,
                key: s.key,
                value: s.value,
                headers: s.headers,
                timestamp: Some(s.timestamp),
            });
        }
        let (dropped, late) = (task.ctx.dropped_records, task.ctx.late_records);
        let counters = &self.shared.counters;
        counters.dropped_records.fetch_add(dropped - task.reported.0, Ordering::Relaxed);
        counters.late_records.fetch_add(late - task.reported.1, Ordering::Relaxed);
        task.reported = (dropped, late);
    }

    /// Moves the outbox on: reaps the batch in flight if it is acknowledged (or waits for it,
    /// with `wait`, or when the outbox is full), then sends what the outbox holds as the next
    /// batch; with `wait`, returns only once everything sent is acknowledged. One batch is in
    /// flight at a time, so records keep their order, and processing goes on meanwhile: the
    /// outbox fills while the batch before it is acknowledged, so batches grow with the log's
    /// latency instead of one wait per loop.
    fn send(&mut self, wait: bool) -> Result<()> {
        let must_wait = wait || self.out.len() >= SEND_BATCH;
        if self.sending.as_ref().is_some_and(|s| must_wait || s.handle.is_finished()) {
            self.reap_sent()?;
        }
        if self.sending.is_none() && !self.out.is_empty() {
            // The next batch is likely as large: sized now, it grows without copying.
            let capacity = self.out.len().min(SEND_BATCH);
            let records = std::mem::replace(&mut self.out, Vec::with_capacity(capacity));
            self.unpolled.in_flight = std::mem::take(&mut self.unpolled.outbox);
            let n = records.len() as u64;
            // Records are kept for the error policy to handle one by one, unless it fails anyway.
            let kept = (self.config.on_production_error != ErrorPolicy::Fail).then(|| records.clone());
            let producer = self.producer.clone();
            let handle = self.runtime.spawn(async move { producer.send(records).await.map(|_| ()) });
            self.sending = Some(Sending { handle, n, kept });
        }
        if wait && self.sending.is_some() {
            self.reap_sent()?;
        }
        Ok(())
    }

    /// Waits for the batch in flight; a refused batch is retried record by record, and each
    /// refused record goes to the production error policy.
    fn reap_sent(&mut self) -> Result<()> {
        let Some(Sending { handle, n, kept }) = self.sending.take() else { return Ok(()) };
        let sent = std::mem::take(&mut self.unpolled.in_flight);
        self.unpolled.acknowledged.extend(sent);
        let result = block_on(&self.runtime, handle)
            .unwrap_or_else(|e| Err(freshet_core::Error::Internal(format!("a send task failed: {e}"))));
        let error = match result {
            Ok(()) => {
                self.shared.counters.records_out.fetch_add(n, Ordering::Relaxed);
                return Ok(());
            }
            Err(error) => error,
        };
        let Some(records) = kept else {
            return Err(Error::Config(format!("cannot write the output of a task: {error}")));
        };
        tracing::warn!(%error, records = n, "a send failed; retrying record by record");
        for record in records {
            let topic = record.topic.clone();
            match block_on(&self.runtime, self.producer.send(vec![record.clone()])) {
                Ok(_) => {
                    self.shared.counters.records_out.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => match &self.config.on_production_error {
                    ErrorPolicy::Fail => {
                        return Err(Error::Config(format!("cannot write a record to {topic}: {error}")))
                    }
                    ErrorPolicy::LogAndContinue => {
                        tracing::warn!(%topic, %error, "skipping an output record the log refused");
                        self.shared.counters.records_skipped.fetch_add(1, Ordering::Relaxed);
                    }
                    ErrorPolicy::DeadLetter(dlq) => {
                        let mut headers = record.headers.clone();
                        headers
                            .push(Header { key: "freshet.error".into(), value: Some(Bytes::from(error.to_string())) });
                        headers.push(Header {
                            key: "freshet.target.topic".into(),
                            value: Some(Bytes::from(topic.clone())),
                        });
                        let letter = ProducerRecord { topic: dlq.clone(), partition: None, headers, ..record };
                        block_on(&self.runtime, self.producer.send(vec![letter]))?;
                        self.shared.counters.records_skipped.fetch_add(1, Ordering::Relaxed);
                    }
                },
            }
        }
        Ok(())
    }

    /// Sends the outbox and waits for every output record's acknowledgement, flushes every store
    /// (changelogs acknowledged, checkpoints written), then commits the input offsets.
    fn commit(&mut self) -> Result<()> {
        let started = Instant::now();
        self.send(true)?;
        let mut offsets = BTreeMap::new();
        for task in &mut self.tasks {
            let _entered = task.span.clone().entered();
            if let Some(state) = task.ctx.state.as_mut() {
                state.commit()?;
            }
            for (tp, &offset) in &task.processed {
                offsets.insert(tp.clone(), OffsetAndMetadata::new(offset));
            }
        }
        match &self.txn {
            Some(txn) => {
                // The input offsets commit with the output and the changelog writes.
                if !offsets.is_empty() {
                    let group = self.consumer.group_metadata().ok_or_else(|| {
                        Error::Config("exactly-once needs the stream thread's consumer in its group".into())
                    })?;
                    block_on(&self.runtime, txn.send_offsets(offsets, &group))?;
                }
                block_on(&self.runtime, txn.commit())?;
                txn.begin()?;
            }
            None if !offsets.is_empty() => block_on(&self.runtime, self.consumer.commit(offsets))?,
            None => {}
        }
        let counters = &self.shared.counters;
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters.commit_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.refresh_standbys();
        self.last_commit = Instant::now();
        Ok(())
    }
}

/// A failed input record for a dead-letter topic, with where it came from and why it failed.
fn dead_letter(
    topic: &str,
    source: &str,
    partition: u32,
    offset: i64,
    error: &str,
    r: ConsumerRecord,
) -> ProducerRecord {
    let mut headers = r.headers;
    let mut add = |key: &str, value: String| headers.push(Header { key: key.into(), value: Some(Bytes::from(value)) });
    add("freshet.error", error.to_string());
    add("freshet.source.topic", source.to_string());
    add("freshet.source.partition", partition.to_string());
    add("freshet.source.offset", offset.to_string());
    ProducerRecord {
        topic: topic.to_string(),
        partition: None,
        key: r.key,
        value: r.value,
        headers,
        timestamp: Some(r.timestamp),
    }
}

/// Keeps the global tables: reads their topics whole, then follows them.
struct GlobalThread {
    topology: Topology,
    consumer: Box<dyn Consumer>,
    admin: Arc<dyn Admin>,
    runtime: Handle,
    shared: Arc<Shared>,
    config: Arc<StreamsConfig>,
    globals: Arc<Mutex<TaskState>>,
}

impl GlobalThread {
    fn run(mut self, ready: std::sync::mpsc::Sender<()>) -> Result<()> {
        let mut graphs = Vec::new();
        let mut reader = HashMap::new();
        let mut partitions = Vec::new();
        for sub in self.topology.global_subtopologies() {
            let mut graph = self.topology.build_task(sub.id);
            let mut ctx = TaskContext::new(sub.id, 0);
            ctx.globals = Some(self.globals.clone());
            graph.init(&mut ctx)?;
            for topic in &sub.source_topics {
                let (d, _) = block_on(&self.runtime, self.admin.describe_topic(topic))?;
                for p in 0..d.n_partitions {
                    let tp = TopicPartition::new(topic.clone(), p);
                    reader.insert(tp.clone(), graphs.len());
                    partitions.push(tp);
                }
            }
            graphs.push((graph, ctx));
        }
        let mut ends = BTreeMap::new();
        for tp in &partitions {
            let end = block_on(&self.runtime, self.admin.list_offset(tp, OffsetSpec::Latest))?.map_or(0, |(o, _)| o);
            ends.insert(tp.clone(), end);
        }
        block_on(&self.runtime, self.consumer.assign(partitions))?;
        let mut ready = Some(ready);
        while !self.shared.shutdown.load(Ordering::SeqCst) {
            if ready.is_some() && ends.iter().all(|(tp, &end)| self.consumer.position(tp).is_some_and(|p| p >= end)) {
                tracing::info!("global tables restored");
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            let wait = if ready.is_some() { Duration::from_millis(10) } else { self.config.poll_wait };
            for b in block_on(&self.runtime, self.consumer.poll(wait))? {
                let Some(&g) = reader.get(&b.tp) else { continue };
                let (graph, ctx) = &mut graphs[g];
                for r in b.records()? {
                    let meta = RecordMeta { topic: b.tp.topic.clone(), partition: b.tp.partition, offset: r.offset };
                    graph.process(meta, r.key, r.value, r.timestamp, r.headers, ctx)?;
                }
            }
        }
        for (mut graph, _) in graphs {
            graph.close()?;
        }
        Ok(())
    }
}
