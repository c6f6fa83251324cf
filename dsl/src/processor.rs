//! The low-level Processor API and the task graph it runs in.
//!
//! A [`Processor`] receives typed [`Record`]s and forwards records to its children through a
//! [`ProcessorContext`]. A topology is instantiated once per task (one partition of its source
//! topics) as a [`TaskGraph`]: every node is created fresh from its supplier, so processors keep
//! per-task state in plain fields.
//!
//! # How typed records travel without boxing
//!
//! Edges are typed: a node that emits `(K, V)` forwards `Record<K, V>` to children that take
//! `Record<K, V>`. The graph keeps its nodes in one vector, each behind a type-erased slot; to
//! forward, the sender takes the child out of its slot, checks its type once (a `TypeId`
//! comparison, no allocation), calls it and puts it back. So a record moves down the graph by
//! value, with no per-record allocation, and a diamond (two paths into one node, as `merge`
//! makes) needs no shared ownership. A record forwarded to several children is cloned for all
//! but the last.

use std::any::Any;

use bytes::Bytes;
use freshet_core::batch::Header;

use freshet_state::{KeyValueStore, SessionStore, StateSerde, WindowStore};

use crate::error::{Error, Result};

/// Values that can travel along the graph.
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// A record inside the graph: typed key and value, timestamp (ms) and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time in milliseconds.
    pub timestamp: i64,
    /// Headers, passed along unchanged unless an operator changes them.
    pub headers: Vec<Header>,
}

impl<K, V> Record<K, V> {
    /// A record without headers.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Record { key, value, timestamp, headers: Vec::new() }
    }

    /// The same record with another key.
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record { key, value: self.value, timestamp: self.timestamp, headers: self.headers }
    }

    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record { key: self.key, value, timestamp: self.timestamp, headers: self.headers }
    }
}

/// Where the record being processed came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: u32,
    /// Offset in the source partition.
    pub offset: i64,
}

/// A record a sink wrote, for the runtime to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// Target topic.
    pub topic: String,
    /// Target partition; `None`: by key, as Kafka's default partitioner.
    pub partition: Option<u32>,
    /// Key bytes (`None`: null).
    pub key: Option<Bytes>,
    /// Value bytes (`None`: null).
    pub value: Option<Bytes>,
    /// Timestamp (ms).
    pub timestamp: i64,
    /// Headers.
    pub headers: Vec<Header>,
}

/// A task: one sub-topology over one partition of its source topics, as Kafka Streams' `TaskId`.
/// Shown as `<sub-topology>_<partition>` (`0_3`), the name of its state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    /// The sub-topology the task runs.
    pub subtopology: usize,
    /// The partition of the sub-topology's source topics the task owns.
    pub partition: u32,
}

impl TaskId {
    /// The task of `subtopology` over `partition`.
    pub fn new(subtopology: usize, partition: u32) -> Self {
        TaskId { subtopology, partition }
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// What a task knows while it processes a record: which task it is, the record's origin, stream
/// time, wall-clock time, and the records its sinks wrote.
#[derive(Debug, Default)]
pub struct TaskContext {
    /// The sub-topology this task runs.
    pub subtopology: usize,
    /// The partition of the source topics this task owns.
    pub partition: u32,
    /// The record being processed, when it came from a topic.
    pub current: Option<RecordMeta>,
    /// The largest timestamp seen by this task (ms); `i64::MIN` before the first record.
    pub stream_time_ms: i64,
    /// Wall-clock time as the runtime (or test driver) sees it (ms).
    pub wall_clock_ms: i64,
    /// Records written by sinks, in order, for the runtime to deliver.
    pub output: Vec<SinkRecord>,
    /// Records sources dropped because they did not decode (see `OnDecodeError`).
    pub dropped_records: u64,
    /// The task's state stores, opened by the runtime from the topology's store builders.
    pub state: Option<freshet_state::TaskState>,
    /// The stores of global tables, shared by every task of the instance (each holds a whole
    /// topic); `None` when the topology has none.
    pub globals: Option<std::sync::Arc<std::sync::Mutex<freshet_state::TaskState>>>,
    /// Records windowed operators dropped because they arrived after their window closed
    /// (stream time past window end plus grace); one count per record and window.
    pub late_records: u64,
    /// Punctuations processors scheduled.
    pub(crate) schedules: Vec<Schedule>,
}

impl TaskContext {
    /// The task this context belongs to.
    pub fn task_id(&self) -> TaskId {
        TaskId::new(self.subtopology, self.partition)
    }
}

/// Which clock a punctuation follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunctuationType {
    /// Stream time: the largest record timestamp the task has seen. Schedules are aligned to 0
    /// and fire once stream time reaches them, with the stream time as timestamp (missed
    /// intervals are skipped, not replayed), as in Kafka Streams.
    StreamTime,
    /// Wall-clock time: fires `interval` after scheduling and every `interval` after that.
    WallClockTime,
}

/// Names a scheduled punctuation, for [`Processor::punctuate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PunctuationId(pub u32);

#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    node: usize,
    id: PunctuationId,
    kind: PunctuationType,
    interval_ms: i64,
    next_ms: i64,
}

impl TaskContext {
    /// A context for `partition` of `subtopology`.
    pub fn new(subtopology: usize, partition: u32) -> Self {
        TaskContext { subtopology, partition, stream_time_ms: i64::MIN, ..Default::default() }
    }
}

/// A processor of the low-level API: takes `Record<KIn, VIn>`, forwards `Record<KOut, VOut>`.
pub trait Processor<KIn, VIn, KOut, VOut>: Send + 'static {
    /// Called once when the task starts, before any record.
    fn init(&mut self, _ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        Ok(())
    }
    /// Called for each record.
    fn process(&mut self, record: Record<KIn, VIn>, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()>;
    /// Called when a punctuation scheduled with [`ProcessorContext::schedule`] is due;
    /// `timestamp_ms` is the stream time or wall-clock time that made it due.
    fn punctuate(
        &mut self,
        _id: PunctuationId,
        _timestamp_ms: i64,
        _ctx: &mut ProcessorContext<'_, KOut, VOut>,
    ) -> Result<()> {
        Ok(())
    }
    /// Called once when the task closes.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A processor's view of its task: forwarding, record metadata, time.
pub struct ProcessorContext<'a, K, V> {
    node: usize,
    slots: &'a mut [Slot],
    children: &'a [usize],
    task: &'a mut TaskContext,
    _types: std::marker::PhantomData<fn(K, V)>,
}

impl<K, V> std::fmt::Debug for ProcessorContext<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorContext").field("children", &self.children).finish_non_exhaustive()
    }
}

impl<K: Data, V: Data> ProcessorContext<'_, K, V> {
    /// Forwards `record` to every child.
    pub fn forward(&mut self, record: Record<K, V>) -> Result<()> {
        match self.children.split_last() {
            None => Ok(()),
            Some((&last, rest)) => {
                for &child in rest {
                    forward_to_slot(self.slots, child, record.clone(), self.task)?;
                }
                forward_to_slot(self.slots, last, record, self.task)
            }
        }
    }

    /// Forwards `record` to the child named `name` only.
    pub fn forward_to(&mut self, name: &str, record: Record<K, V>) -> Result<()> {
        let child = self
            .children
            .iter()
            .copied()
            .find(|&c| self.slots[c].name == name)
            .ok_or_else(|| Error::Process(format!("no child named {name:?}")))?;
        forward_to_slot(self.slots, child, record, self.task)
    }
}

impl<K, V> ProcessorContext<'_, K, V> {
    /// Where the record being processed came from (`None` for records a punctuator made).
    pub fn record_meta(&self) -> Option<&RecordMeta> {
        self.task.current.as_ref()
    }
    /// The task's stream time (ms): the largest record timestamp it has seen.
    pub fn stream_time_ms(&self) -> i64 {
        self.task.stream_time_ms
    }
    /// Wall-clock time (ms).
    pub fn wall_clock_ms(&self) -> i64 {
        self.task.wall_clock_ms
    }
    /// The partition this task owns.
    pub fn partition(&self) -> u32 {
        self.task.partition
    }
    /// The task's context (for sinks: its output buffer).
    pub(crate) fn task(&mut self) -> &mut TaskContext {
        self.task
    }

    /// The task's stores, once `name` is checked to be one this processor declared (as Kafka
    /// Streams refuses a processor a store it is not connected to).
    fn state(&mut self, name: &str) -> Result<&mut freshet_state::TaskState> {
        let slot = &self.slots[self.node];
        if !slot.stores.iter().any(|s| s == name) {
            return Err(Error::Process(format!(
                "processor {} uses state store {name:?} without declaring it (process_with_stores)",
                slot.name
            )));
        }
        self.task.state.as_mut().ok_or_else(|| Error::Process("this task has no state stores".into()))
    }

    /// Runs `f` on the byte-level key-value store `name` the processor declared: a store of
    /// this task or, when the task has none of that name, a global table's store.
    pub(crate) fn with_kv<R>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut KeyValueStore<Bytes, Bytes>) -> Result<R>,
    ) -> Result<R> {
        let slot = &self.slots[self.node];
        if !slot.stores.iter().any(|s| s == name) {
            return Err(Error::Process(format!(
                "processor {} reads state store {name:?} it did not declare",
                slot.name
            )));
        }
        if let Some(state) = self.task.state.as_mut().filter(|s| s.store_names().any(|n| n == name)) {
            return f(state.kv_store(name)?);
        }
        let globals =
            self.task.globals.clone().ok_or_else(|| Error::Process(format!("this task has no store {name:?}")))?;
        let mut globals = globals.lock().map_err(|_| Error::Process("a global store's lock was poisoned".into()))?;
        f(globals.kv_store(name)?)
    }

    /// Counts a record a windowed operator dropped as late.
    pub(crate) fn count_late(&mut self) {
        self.task.late_records += 1;
    }

    /// Counts a record an operator dropped (e.g. a null key where a key is needed).
    pub(crate) fn count_dropped(&mut self) {
        self.task.dropped_records += 1;
    }

    /// The key-value store `name` (declared with [`crate::StreamsBuilder::add_state_store`] and
    /// connected to this processor).
    pub fn kv_store<SK: StateSerde, SV: StateSerde>(&mut self, name: &str) -> Result<&mut KeyValueStore<SK, SV>> {
        Ok(self.state(name)?.kv_store(name)?)
    }

    /// The window store `name`.
    pub fn window_store<SK: StateSerde, SV: StateSerde>(&mut self, name: &str) -> Result<&mut WindowStore<SK, SV>> {
        Ok(self.state(name)?.window_store(name)?)
    }

    /// The session store `name`.
    pub fn session_store<SK: StateSerde + Clone, SV: StateSerde>(
        &mut self,
        name: &str,
    ) -> Result<&mut SessionStore<SK, SV>> {
        Ok(self.state(name)?.session_store(name)?)
    }

    /// Schedules [`Processor::punctuate`] every `interval` of `kind` time (see
    /// [`PunctuationType`]).
    pub fn schedule(&mut self, interval: std::time::Duration, kind: PunctuationType) -> Result<PunctuationId> {
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        if interval_ms < 1 {
            return Err(Error::Process(format!("punctuation interval {interval:?} is under 1 ms")));
        }
        let id = PunctuationId(self.task.schedules.len() as u32);
        let next_ms = match kind {
            PunctuationType::StreamTime => 0,
            PunctuationType::WallClockTime => self.task.wall_clock_ms.saturating_add(interval_ms),
        };
        self.task.schedules.push(Schedule { node: self.node, id, kind, interval_ms, next_ms });
        Ok(id)
    }
}

/// One node of a task graph, type-erased: its name, children and the typed node itself.
pub(crate) struct Slot {
    pub(crate) name: String,
    pub(crate) children: Vec<usize>,
    /// The state stores the node declared: the only ones it may use.
    pub(crate) stores: Vec<String>,
    pub(crate) node: Option<Box<dyn ErasedNode>>,
}

/// A node with its types hidden, so nodes of every type share one vector.
pub(crate) trait ErasedNode: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn init(&mut self, at: Hop<'_>) -> Result<()>;
    fn punctuate(&mut self, id: PunctuationId, timestamp_ms: i64, at: Hop<'_>) -> Result<()>;
    fn close(&mut self) -> Result<()>;
}

/// Where a node runs: its slot, the other slots, its children and the task.
pub(crate) struct Hop<'a> {
    pub(crate) node: usize,
    pub(crate) slots: &'a mut [Slot],
    pub(crate) children: &'a [usize],
    pub(crate) task: &'a mut TaskContext,
}

/// A node taking `Record<K, V>`: a processor and the types it emits.
pub(crate) trait Node<K, V>: Send {
    fn process(&mut self, record: Record<K, V>, at: Hop<'_>) -> Result<()>;
    fn init(&mut self, at: Hop<'_>) -> Result<()>;
    fn punctuate(&mut self, id: PunctuationId, timestamp_ms: i64, at: Hop<'_>) -> Result<()>;
    fn close(&mut self) -> Result<()>;
}

/// The concrete type behind an erased node taking `Record<K, V>`.
pub(crate) struct NodeBox<K, V>(pub(crate) Box<dyn Node<K, V>>);

impl<K: 'static, V: 'static> ErasedNode for NodeBox<K, V> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn init(&mut self, at: Hop<'_>) -> Result<()> {
        self.0.init(at)
    }
    fn punctuate(&mut self, id: PunctuationId, timestamp_ms: i64, at: Hop<'_>) -> Result<()> {
        self.0.punctuate(id, timestamp_ms, at)
    }
    fn close(&mut self) -> Result<()> {
        self.0.close()
    }
}

/// A [`Processor`] as a node.
pub(crate) struct ProcessorNode<P, KOut, VOut> {
    pub(crate) processor: P,
    pub(crate) _out: std::marker::PhantomData<fn(KOut, VOut)>,
}

impl<P, KIn, VIn, KOut, VOut> Node<KIn, VIn> for ProcessorNode<P, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
    KOut: 'static,
    VOut: 'static,
{
    fn process(&mut self, record: Record<KIn, VIn>, at: Hop<'_>) -> Result<()> {
        self.processor.process(record, &mut context(at))
    }
    fn init(&mut self, at: Hop<'_>) -> Result<()> {
        self.processor.init(&mut context(at))
    }
    fn punctuate(&mut self, id: PunctuationId, timestamp_ms: i64, at: Hop<'_>) -> Result<()> {
        self.processor.punctuate(id, timestamp_ms, &mut context(at))
    }
    fn close(&mut self) -> Result<()> {
        self.processor.close()
    }
}

fn context<K, V>(at: Hop<'_>) -> ProcessorContext<'_, K, V> {
    ProcessorContext {
        node: at.node,
        slots: at.slots,
        children: at.children,
        task: at.task,
        _types: std::marker::PhantomData,
    }
}

/// Runs `f` on the node in slot `idx`, taken out of its slot meanwhile (see the module docs).
fn with_node<R>(
    slots: &mut [Slot],
    idx: usize,
    task: &mut TaskContext,
    f: impl FnOnce(&mut Box<dyn ErasedNode>, Hop<'_>) -> Result<R>,
) -> Result<R> {
    let mut node = slots[idx].node.take().expect("a node is never entered while it runs: the graph has no cycles");
    let children = std::mem::take(&mut slots[idx].children);
    let result = f(&mut node, Hop { node: idx, slots, children: &children, task });
    slots[idx].children = children;
    slots[idx].node = Some(node);
    result
}

/// Hands `record` to the node in slot `idx` (see the module docs).
pub(crate) fn forward_to_slot<K: 'static, V: 'static>(
    slots: &mut [Slot],
    idx: usize,
    record: Record<K, V>,
    task: &mut TaskContext,
) -> Result<()> {
    with_node(slots, idx, task, |node, at| match node.as_any_mut().downcast_mut::<NodeBox<K, V>>() {
        Some(typed) => typed.0.process(record, at),
        None => Err(Error::Process(format!(
            "node {} does not take records of ({}, {})",
            at.slots[at.node].name,
            std::any::type_name::<K>(),
            std::any::type_name::<V>()
        ))),
    })
}

/// One task's instance of a topology: every node created fresh, and the source topics that lead
/// into it.
pub struct TaskGraph {
    pub(crate) slots: Vec<Slot>,
    /// `(topic, slot)` of each source.
    pub(crate) sources: Vec<(String, usize)>,
    /// The source topics that are tables' topics.
    pub(crate) tables: std::collections::BTreeSet<String>,
}

impl std::fmt::Debug for TaskGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.slots.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("TaskGraph").field("nodes", &names).field("sources", &self.sources).finish()
    }
}

impl TaskGraph {
    /// Calls every node's `init`, parents before children.
    pub fn init(&mut self, task: &mut TaskContext) -> Result<()> {
        for idx in 0..self.slots.len() {
            with_node(&mut self.slots, idx, task, |node, at| node.init(at))?;
        }
        Ok(())
    }

    /// Runs the punctuations of `kind` that are due at `now_ms` (stream time or wall-clock
    /// time), each once, in schedule order; records they forward land in `task.output`.
    pub fn punctuate(&mut self, kind: PunctuationType, now_ms: i64, task: &mut TaskContext) -> Result<()> {
        for i in 0..task.schedules.len() {
            let s = &mut task.schedules[i];
            if s.kind != kind || s.next_ms > now_ms {
                continue;
            }
            // The next time after `now_ms` on the schedule's grid: missed intervals are skipped.
            let missed = (now_ms - s.next_ms) / s.interval_ms + 1;
            s.next_ms = s.next_ms.saturating_add(missed.saturating_mul(s.interval_ms));
            let (node, id) = (s.node, s.id);
            task.current = None;
            with_node(&mut self.slots, node, task, |n, at| n.punctuate(id, now_ms, at))?;
        }
        Ok(())
    }

    /// The source topics of this graph.
    pub fn source_topics(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().map(|(t, _)| t.as_str())
    }

    /// Whether `topic` is the topic of a table this graph materializes: of records with equal
    /// timestamps, a task takes a table's first, so a stream-table join sees the table as of
    /// its record's time, that time included.
    pub fn is_table_source(&self, topic: &str) -> bool {
        self.tables.contains(topic)
    }

    /// Processes one record read from `meta.topic` (raw key and value bytes): the source
    /// decodes it and it travels down the graph; sinks' records land in `task.output`. Stream
    /// time advances to the record's timestamp.
    pub fn process(
        &mut self,
        meta: RecordMeta,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: i64,
        headers: Vec<Header>,
        task: &mut TaskContext,
    ) -> Result<()> {
        let idx = self
            .sources
            .iter()
            .find(|(t, _)| *t == meta.topic)
            .map(|&(_, idx)| idx)
            .ok_or_else(|| Error::Process(format!("topic {:?} is not a source of this task", meta.topic)))?;
        task.stream_time_ms = task.stream_time_ms.max(timestamp);
        task.current = Some(meta);
        let record = Record { key, value, timestamp, headers };
        let result = forward_to_slot(&mut self.slots, idx, record, task);
        task.current = None;
        result
    }

    /// Calls every node's `close`; the first error, if any.
    pub fn close(&mut self) -> Result<()> {
        let mut result = Ok(());
        for slot in &mut self.slots {
            if let Some(node) = slot.node.as_mut() {
                let r = node.close();
                if result.is_ok() {
                    result = r;
                }
            }
        }
        result
    }
}
