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

mod builder;
mod config;
mod global;
mod metrics;
mod plumbing;
mod rebalance;
mod standby;
mod task;
mod thread;

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
use freshet_dsl::{PunctuationType, RecordMeta, TaskContext, TaskGraph, TaskId, Topology};
use freshet_state::{Backend, Changelogs, RestoreListener, RestoreProgress, StoreOptions, TaskConfig, TaskState};
use tokio::runtime::Handle;

use crate::error::{Error, Result};

pub use self::builder::StreamsAppBuilder;
pub use self::config::{ErrorPolicy, ProcessingGuarantee, StreamsConfig, TimestampExtractor};
use self::global::*;
pub use self::metrics::Metrics;
use self::metrics::*;
use self::plumbing::*;
use self::task::*;
use self::thread::*;

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
            return Err(Error::InvalidState { operation: "start", state: self.state() });
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
                .map_err(|source| Error::ThreadStart { thread: "the global thread".into(), source })?;
            self.threads.push(handle);
            // The stream threads start once the global tables hold their topics.
            if ready_rx.recv().is_err() {
                return Err(Error::Failed(self.error().unwrap_or_else(|| "the global thread stopped".into())));
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
                .map_err(|source| Error::ThreadStart { thread: "a stream thread".into(), source })?;
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
                    return Err(Error::Failed(self.error().unwrap_or_else(|| "the application failed".into())))
                }
                _ if Instant::now() >= deadline => return Err(Error::Timeout { waited: timeout, state: self.state() }),
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
            let name = handle.thread().name().unwrap_or("a stream thread").to_string();
            let result = handle.join().unwrap_or_else(|_| Err(Error::ThreadPanicked(name)));
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
                Err(freshet_core::Error::UnknownTopic(_)) => return Err(Error::MissingSourceTopic(topic.clone())),
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
                    return Err(Error::InternalTopicPartitions {
                        topic: physical.clone(),
                        found: d.n_partitions,
                        needed: n,
                    })
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
