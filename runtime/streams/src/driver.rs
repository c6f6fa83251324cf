//! The topology test driver: runs a [`Topology`] synchronously and deterministically in memory.
//!
//! Records piped into an input topic are partitioned as a Kafka producer would (by the murmur2
//! hash of the serialized key; keyless records round-robin), appended to the topic, and processed
//! at once by the task that owns that partition of the sub-topology reading the topic. What sinks
//! write is appended to its topic the same way and, when another sub-topology reads that topic,
//! processed in turn, until nothing is left: one `pipe` call runs to quiescence, in a fixed order.
//!
//! Unlike Kafka Streams' driver, topics can have several partitions (set per topic), so
//! repartitioning and co-partitioned operators run as they would on a cluster. The tasks run the
//! same operator code as the runtime: the driver only replaces the log with vectors and the
//! clock with one it advances by hand.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use freshet_core::batch::Header;
use freshet_core::partitioner::partition_for_key;
use freshet_dsl::{PunctuationType, Record, RecordMeta, Serde, TaskContext, TaskGraph, Topology};
use freshet_state::{Backend, StateSerde, StoreOptions, TaskConfig, TaskState};

use crate::error::{Error, Result};

/// A record as a topic holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// Partition.
    pub partition: u32,
    /// Offset in the partition.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Bytes>,
    /// Value bytes.
    pub value: Option<Bytes>,
    /// Timestamp (ms).
    pub timestamp: i64,
    /// Headers.
    pub headers: Vec<Header>,
}

/// A topic of the driver: records in the order they were appended, across partitions.
#[derive(Debug, Default)]
struct Topic {
    n_partitions: u32,
    next_offsets: Vec<i64>,
    records: Vec<StoredRecord>,
    /// How far reads through [`TopologyTestDriver::read_output`] got.
    read: usize,
    round_robin: u32,
}

/// Settings of a driver.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Partitions of topics not listed in `partitions`.
    pub default_partitions: u32,
    /// Partitions per topic.
    pub partitions: BTreeMap<String, u32>,
    /// Wall-clock time at the start (ms).
    pub start_wall_clock_ms: i64,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig { default_partitions: 1, partitions: BTreeMap::new(), start_wall_clock_ms: 0 }
    }
}

impl DriverConfig {
    /// Gives `topic` `n` partitions.
    pub fn partitions(mut self, topic: &str, n: u32) -> Self {
        self.partitions.insert(topic.to_string(), n);
        self
    }
}

/// An input topic with its serdes.
pub struct TestInputTopic<K, V> {
    topic: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
}

impl<K, V> Debug for TestInputTopic<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestInputTopic({})", self.topic)
    }
}

impl<K, V> TestInputTopic<K, V> {
    /// `topic`, written with these serdes.
    pub fn new(topic: &str, key: impl Serde<K>, value: impl Serde<V>) -> Self {
        TestInputTopic { topic: topic.to_string(), key: Arc::new(key), value: Arc::new(value) }
    }
}

/// An output topic with its serdes.
pub struct TestOutputTopic<K, V> {
    topic: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
}

impl<K, V> Debug for TestOutputTopic<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestOutputTopic({})", self.topic)
    }
}

impl<K, V> TestOutputTopic<K, V> {
    /// `topic`, read with these serdes.
    pub fn new(topic: &str, key: impl Serde<K>, value: impl Serde<V>) -> Self {
        TestOutputTopic { topic: topic.to_string(), key: Arc::new(key), value: Arc::new(value) }
    }
}

/// A record read from an output topic: where it landed and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRecord<K, V> {
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: i64,
    /// The record.
    pub record: Record<K, V>,
}

struct Task {
    graph: TaskGraph,
    ctx: TaskContext,
}

/// Runs a topology in memory (see the module docs).
pub struct TopologyTestDriver {
    topology: Topology,
    /// Where the tasks' stores live (in memory; the directory holds their locks).
    state_dir: tempfile::TempDir,
    config: DriverConfig,
    topics: BTreeMap<String, Topic>,
    /// Which sub-topology reads each topic.
    readers: BTreeMap<String, usize>,
    tasks: BTreeMap<(usize, u32), Task>,
    /// Sub-topologies that fill global stores: one task each (partition 0) over every partition.
    global_subs: std::collections::BTreeSet<usize>,
    wall_clock_ms: i64,
}

impl Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver")
            .field("topics", &self.topics.keys().collect::<Vec<_>>())
            .field("tasks", &self.tasks.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TopologyTestDriver {
    /// A driver with one partition per topic.
    pub fn new(topology: Topology) -> Result<Self> {
        Self::with_config(topology, DriverConfig::default())
    }

    /// A driver with partitions per topic as `config` says. The source topics of a sub-topology
    /// must have the same number of partitions (they are co-partitioned: one task per partition).
    pub fn with_config(topology: Topology, mut config: DriverConfig) -> Result<Self> {
        // Repartition topics get the partitions the topology asks for unless the config says.
        for t in topology.internal_topics() {
            if let Some(n) = t.partitions {
                config.partitions.entry(t.name.clone()).or_insert(n);
            }
        }
        if config.default_partitions == 0 || config.partitions.values().any(|&n| n == 0) {
            return Err(Error::Config("a topic needs at least one partition".into()));
        }
        let state_dir =
            tempfile::tempdir().map_err(|e| Error::Config(format!("cannot create a state directory: {e}")))?;
        let mut driver = TopologyTestDriver {
            topology,
            state_dir,
            wall_clock_ms: config.start_wall_clock_ms,
            config,
            topics: BTreeMap::new(),
            readers: BTreeMap::new(),
            tasks: BTreeMap::new(),
            global_subs: Default::default(),
        };
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        let internal: Vec<&str> = driver.topology.internal_topics().iter().map(|t| t.name.as_str()).collect();
        for sub in driver.topology.subtopologies() {
            for t in sub
                .source_topics
                .iter()
                .filter(|t| !internal.contains(&t.as_str()) || driver.config.partitions.contains_key(*t))
            {
                counts.insert(t.clone(), driver.n_partitions(t));
            }
        }
        crate::plan::size_internal_topics(&driver.topology, &mut counts)?;
        driver.config.partitions.extend(counts.clone());
        crate::plan::check_copartitioned(&driver.topology, &counts)?;
        // Global stores first, one copy shared by every task.
        let globals = driver.open_globals()?;
        for sub in driver.topology.global_subtopologies() {
            let mut graph = driver.topology.build_task(sub.id);
            let mut ctx = TaskContext::new(sub.id, 0);
            ctx.wall_clock_ms = driver.wall_clock_ms;
            ctx.globals = globals.clone();
            graph.init(&mut ctx)?;
            driver.tasks.insert((sub.id, 0), Task { graph, ctx });
            driver.global_subs.insert(sub.id);
            for t in sub.source_topics {
                driver.readers.insert(t, sub.id);
            }
        }
        for sub in driver.topology.subtopologies() {
            if let Some(&n) = sub.source_topics.first().map(|t| &counts[t]) {
                for partition in 0..n {
                    let mut graph = driver.topology.build_task(sub.id);
                    let mut ctx = TaskContext::new(sub.id, partition);
                    ctx.wall_clock_ms = driver.wall_clock_ms;
                    ctx.state = driver.open_stores(sub.id, partition, n)?;
                    ctx.globals = globals.clone();
                    graph.init(&mut ctx)?;
                    let mut task = Task { graph, ctx };
                    let queue = driver.deliver(&mut task)?;
                    driver.tasks.insert((sub.id, partition), task);
                    driver.run(queue)?;
                }
            }
            for t in sub.source_topics {
                driver.readers.insert(t, sub.id);
            }
        }
        Ok(driver)
    }

    /// The global stores, in memory, shared by every task.
    fn open_globals(&self) -> Result<Option<Arc<std::sync::Mutex<TaskState>>>> {
        let stores = self.topology.global_stores();
        if stores.is_empty() {
            return Ok(None);
        }
        let config = TaskConfig::new(self.state_dir.path(), "driver", "global", 0, 1, Backend::InMemory, None);
        let mut state = TaskState::open(config)?;
        for store in stores {
            store.open_in(&mut state, StoreOptions { logging: false, ..store.options() })?;
        }
        Ok(Some(Arc::new(std::sync::Mutex::new(state))))
    }

    /// The stores of a task, in memory and without changelogs.
    fn open_stores(&self, sub: usize, partition: u32, n_partitions: u32) -> Result<Option<TaskState>> {
        let stores = self.topology.stores_of(sub);
        if stores.is_empty() {
            return Ok(None);
        }
        let task_id = format!("{sub}_{partition}");
        let config = TaskConfig::new(
            self.state_dir.path(),
            "driver",
            &task_id,
            partition,
            n_partitions,
            Backend::InMemory,
            None,
        );
        let mut state = TaskState::open(config)?;
        for store in stores {
            store.open_in(&mut state, StoreOptions { logging: false, ..store.options() })?;
        }
        Ok(Some(state))
    }

    /// Appends what a task's sinks wrote; returns those records for the tasks that read them.
    fn deliver(&mut self, task: &mut Task) -> Result<VecDeque<(String, usize)>> {
        let mut queue = VecDeque::new();
        for r in std::mem::take(&mut task.ctx.output) {
            let at = self.append(&r.topic, r.partition, r.key, r.value, r.timestamp, r.headers)?;
            queue.push_back((r.topic, at));
        }
        Ok(queue)
    }

    fn n_partitions(&self, topic: &str) -> u32 {
        self.config.partitions.get(topic).copied().unwrap_or(self.config.default_partitions)
    }

    fn topic(&mut self, name: &str) -> &mut Topic {
        let n = self.n_partitions(name);
        self.topics.entry(name.to_string()).or_insert_with(|| Topic {
            n_partitions: n,
            next_offsets: vec![0; n as usize],
            ..Topic::default()
        })
    }

    /// Appends a record to `topic` (partition by key when not given); returns its index in the
    /// topic's records.
    fn append(
        &mut self,
        topic: &str,
        partition: Option<u32>,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: i64,
        headers: Vec<Header>,
    ) -> Result<usize> {
        let t = self.topic(topic);
        let partition = match (partition, &key) {
            (Some(p), _) if p < t.n_partitions => p,
            (Some(p), _) => {
                return Err(Error::Config(format!(
                    "topic {topic} has {} partitions, but partition {p} was requested",
                    t.n_partitions
                )))
            }
            (None, Some(k)) => partition_for_key(k, t.n_partitions),
            (None, None) => {
                t.round_robin = t.round_robin.wrapping_add(1);
                (t.round_robin - 1) % t.n_partitions
            }
        };
        let offset = t.next_offsets[partition as usize];
        t.next_offsets[partition as usize] += 1;
        t.records.push(StoredRecord { partition, offset, key, value, timestamp, headers });
        Ok(t.records.len() - 1)
    }

    /// Pipes a record into `input` at `timestamp` (ms) and processes everything it leads to.
    pub fn pipe<K: 'static, V: 'static>(
        &mut self,
        input: &TestInputTopic<K, V>,
        key: K,
        value: V,
        timestamp: i64,
    ) -> Result<()> {
        self.pipe_record(input, Record::new(key, value, timestamp), None)
    }

    /// Pipes a record (with headers, and into a chosen partition if given) and processes
    /// everything it leads to.
    pub fn pipe_record<K: 'static, V: 'static>(
        &mut self,
        input: &TestInputTopic<K, V>,
        record: Record<K, V>,
        partition: Option<u32>,
    ) -> Result<()> {
        let key = input.key.serialize(&record.key).map_err(|d| Error::Config(format!("input key: {d}")))?;
        let value = input.value.serialize(&record.value).map_err(|d| Error::Config(format!("input value: {d}")))?;
        let at = self.append(&input.topic, partition, key, value, record.timestamp, record.headers)?;
        self.run(VecDeque::from([(input.topic.clone(), at)]))
    }

    /// Processes appended records until none is left for any task.
    fn run(&mut self, mut queue: VecDeque<(String, usize)>) -> Result<()> {
        while let Some((topic, idx)) = queue.pop_front() {
            let Some(&sub) = self.readers.get(&topic) else { continue };
            let stored = self.topics[&topic].records[idx].clone();
            let (partition, offset) = (stored.partition, stored.offset);
            let task_partition = if self.global_subs.contains(&sub) { 0 } else { partition };
            let mut task = self.tasks.remove(&(sub, task_partition)).expect("a task per partition of a source topic");
            task.ctx.wall_clock_ms = self.wall_clock_ms;
            let meta = RecordMeta { topic: topic.clone(), partition, offset };
            let mut result =
                task.graph.process(meta, stored.key, stored.value, stored.timestamp, stored.headers, &mut task.ctx);
            if result.is_ok() {
                let now = task.ctx.stream_time_ms;
                result = task.graph.punctuate(PunctuationType::StreamTime, now, &mut task.ctx);
            }
            let delivered = self.deliver(&mut task);
            self.tasks.insert((sub, task_partition), task);
            result?;
            queue.extend(delivered?);
        }
        Ok(())
    }

    /// Moves wall-clock time forward and runs the wall-clock punctuations that became due.
    pub fn advance_wall_clock(&mut self, by: Duration) -> Result<()> {
        self.wall_clock_ms += i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let keys: Vec<(usize, u32)> = self.tasks.keys().copied().collect();
        for key in keys {
            let mut task = self.tasks.remove(&key).expect("listed");
            task.ctx.wall_clock_ms = self.wall_clock_ms;
            let result = task.graph.punctuate(PunctuationType::WallClockTime, self.wall_clock_ms, &mut task.ctx);
            let delivered = self.deliver(&mut task);
            self.tasks.insert(key, task);
            result?;
            self.run(delivered?)?;
        }
        Ok(())
    }

    /// Every entry of key-value store `name` across the tasks that hold it, in key order.
    pub fn kv_store_entries<K: StateSerde + Ord, V: StateSerde>(&mut self, name: &str) -> Result<Vec<(K, V)>> {
        let mut entries = Vec::new();
        for task in self.tasks.values_mut() {
            if let Some(state) = task.ctx.state.as_mut() {
                if state.store_names().any(|n| n == name) {
                    for entry in state.kv_store::<K, V>(name)?.all()? {
                        entries.push(entry?);
                    }
                }
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }

    /// Every record of `topic` not read before, in the order written, decoded.
    pub fn read_output<K: 'static, V: 'static>(
        &mut self,
        output: &TestOutputTopic<K, V>,
    ) -> Result<Vec<TestRecord<K, V>>> {
        let Some(topic) = self.topics.get_mut(&output.topic) else { return Ok(Vec::new()) };
        let unread = &topic.records[topic.read..];
        let mut out = Vec::with_capacity(unread.len());
        for r in unread {
            let decode = |what: &str, d: String| {
                Error::Config(format!("{what} of {}-{} offset {}: {d}", output.topic, r.partition, r.offset))
            };
            let key = output.key.deserialize(r.key.as_deref()).map_err(|d| decode("key", d))?;
            let value = output.value.deserialize(r.value.as_deref()).map_err(|d| decode("value", d))?;
            out.push(TestRecord {
                partition: r.partition,
                offset: r.offset,
                record: Record { key, value, timestamp: r.timestamp, headers: r.headers.clone() },
            });
        }
        topic.read = topic.records.len();
        Ok(out)
    }

    /// The unread records of `output` as stable text, one line per record, for
    /// `insta::assert_snapshot!`: `partition@offset t=timestamp key => value`.
    pub fn render_output<K: Debug + 'static, V: Debug + 'static>(
        &mut self,
        output: &TestOutputTopic<K, V>,
    ) -> Result<String> {
        let mut text = String::new();
        for r in self.read_output(output)? {
            text.push_str(&format!(
                "{}@{} t={} {:?} => {:?}\n",
                r.partition, r.offset, r.record.timestamp, r.record.key, r.record.value
            ));
        }
        Ok(text)
    }

    /// Records the tasks dropped: sources for records that did not decode, operators for records
    /// they cannot take (a null key where a key is needed, a negative timestamp in a window).
    pub fn dropped_records(&self) -> u64 {
        self.tasks.values().map(|t| t.ctx.dropped_records).sum()
    }

    /// Records windowed operators dropped because their window had closed (one count per record
    /// and window).
    pub fn late_records(&self) -> u64 {
        self.tasks.values().map(|t| t.ctx.late_records).sum()
    }

    /// Every entry of the DSL table store `name` (an aggregation's or a table's) across the tasks
    /// that hold it, decoded with the table's serdes, in key order: `(key, value, timestamp)`.
    pub fn table_entries<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        key: &dyn Serde<K>,
        value: &dyn Serde<V>,
    ) -> Result<Vec<(K, V, i64)>> {
        let mut raw: Vec<(Bytes, Bytes)> = Vec::new();
        for task in self.tasks.values_mut() {
            if let Some(state) = task.ctx.state.as_mut() {
                if state.store_names().any(|n| n == name) {
                    for entry in state.kv_store::<Bytes, Bytes>(name)?.all()? {
                        raw.push(entry?);
                    }
                }
            }
        }
        raw.sort();
        let bad = |d: String| Error::Config(format!("store {name}: {d}"));
        raw.into_iter()
            .map(|(k, v)| {
                if v.len() < 8 {
                    return Err(bad("a value shorter than its timestamp".into()));
                }
                let ts = i64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
                Ok((key.deserialize(Some(&k)).map_err(bad)?, value.deserialize(Some(&v[8..])).map_err(bad)?, ts))
            })
            .collect()
    }

    /// Every entry of the DSL window store `name` (a windowed aggregation's) across the tasks that
    /// hold it, decoded, by window start then key: `(key, window start, value, timestamp)`.
    pub fn window_entries<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        key: &dyn Serde<K>,
        value: &dyn Serde<V>,
    ) -> Result<Vec<(K, i64, V, i64)>> {
        let mut raw: Vec<(i64, Bytes, Bytes)> = Vec::new();
        for task in self.tasks.values_mut() {
            if let Some(state) = task.ctx.state.as_mut() {
                if state.store_names().any(|n| n == name) {
                    for entry in state.window_store::<Bytes, Bytes>(name)?.all()? {
                        let (w, v) = entry?;
                        raw.push((w.start, w.key, v));
                    }
                }
            }
        }
        raw.sort();
        let bad = |d: String| Error::Config(format!("store {name}: {d}"));
        raw.into_iter()
            .map(|(start, k, v)| {
                if v.len() < 8 {
                    return Err(bad("a value shorter than its timestamp".into()));
                }
                let ts = i64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
                Ok((key.deserialize(Some(&k)).map_err(bad)?, start, value.deserialize(Some(&v[8..])).map_err(bad)?, ts))
            })
            .collect()
    }

    /// Every session of the DSL session store `name` across the tasks that hold it, decoded, by
    /// end then key: `(key, start, end, value)`.
    pub fn session_entries<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        key: &dyn Serde<K>,
        value: &dyn Serde<V>,
    ) -> Result<Vec<(K, i64, i64, V)>> {
        let mut raw: Vec<(i64, i64, Bytes, Bytes)> = Vec::new();
        for task in self.tasks.values_mut() {
            if let Some(state) = task.ctx.state.as_mut() {
                if state.store_names().any(|n| n == name) {
                    for entry in state.session_store::<Bytes, Bytes>(name)?.sessions_ending(i64::MIN, i64::MAX)? {
                        let (w, v) = entry?;
                        raw.push((w.end, w.start, w.key, v));
                    }
                }
            }
        }
        raw.sort();
        let bad = |d: String| Error::Config(format!("store {name}: {d}"));
        raw.into_iter()
            .map(|(end, start, k, v)| {
                Ok((key.deserialize(Some(&k)).map_err(bad)?, start, end, value.deserialize(Some(&v)).map_err(bad)?))
            })
            .collect()
    }

    /// [`TopologyTestDriver::table_entries`] as stable text, one `key => value @ timestamp` line
    /// per entry, for `insta::assert_snapshot!`.
    pub fn render_table<K: Debug + 'static, V: Debug + 'static>(
        &mut self,
        name: &str,
        key: &dyn Serde<K>,
        value: &dyn Serde<V>,
    ) -> Result<String> {
        Ok(self
            .table_entries(name, key, value)?
            .into_iter()
            .map(|(k, v, ts)| format!("{k:?} => {v:?} @ {ts}\n"))
            .collect())
    }

    /// Every record `topic` holds, as stored (inputs and outputs alike).
    pub fn topic_records(&self, topic: &str) -> &[StoredRecord] {
        self.topics.get(topic).map_or(&[], |t| &t.records)
    }

    /// Closes every task and its stores.
    pub fn close(mut self) -> Result<()> {
        let mut globals = None;
        for (_, mut task) in std::mem::take(&mut self.tasks) {
            task.graph.close()?;
            if let Some(state) = task.ctx.state.take() {
                state.close()?;
            }
            globals = task.ctx.globals.take().or(globals);
        }
        if let Some(state) = globals.and_then(Arc::into_inner).and_then(|m| m.into_inner().ok()) {
            state.close()?;
        }
        Ok(())
    }
}
