//! `StreamsBuilder` and `KStream`: the declarative DSL over the Processor API.
//!
//! Every operator adds one node to the builder's graph, backed by a small processor; node names
//! follow Kafka Streams' pattern (`KSTREAM-MAPVALUES-0000000001`) unless the user names the node
//! with [`KStream::named`]. Closures are shared by every task's instance of a node, so they must
//! be `Fn + Send + Sync`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use freshet_core::batch::Header;

use crate::error::{Error, Result};
use crate::processor::{
    Data, ErasedNode, NodeBox, Processor, ProcessorContext, ProcessorNode, Record, RecordMeta, SinkRecord,
};
use crate::serde::Serde;
use crate::store::StoreBuilder;
use crate::topology::{InternalTopic, NodeKind, NodeSpec, Topology};

/// What a source does with a record its serdes cannot decode (a poison record).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OnDecodeError {
    /// Fail the task with an error naming the topic, partition and offset (the default, as
    /// Kafka Streams' `LogAndFailExceptionHandler`).
    #[default]
    Fail,
    /// Log it, count it in the task's `dropped_records`, and go on (`LogAndContinue`).
    Skip,
    /// Write it, bytes unchanged, to this topic with `freshet.error` and `freshet.source` headers
    /// saying why and where from, count it, and go on.
    DeadLetter(String),
}

/// How a source topic is read: key and value serdes, an optional node name, and what to do with
/// records that do not decode.
pub struct Consumed<K, V> {
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) value: Arc<dyn Serde<V>>,
    pub(crate) name: Option<String>,
    pub(crate) on_decode_error: OnDecodeError,
}

impl<K, V> Consumed<K, V> {
    /// Reads keys with `key` and values with `value`.
    pub fn with(key: impl Serde<K>, value: impl Serde<V>) -> Self {
        Consumed { key: Arc::new(key), value: Arc::new(value), name: None, on_decode_error: OnDecodeError::Fail }
    }

    /// Sets what happens to records that do not decode.
    pub fn on_decode_error(mut self, policy: OnDecodeError) -> Self {
        self.on_decode_error = policy;
        self
    }
    /// Names the source node.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
}

impl<K: 'static, V: 'static> std::fmt::Debug for Consumed<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Consumed({}, {})", self.key.name(), self.value.name())
    }
}

impl<K: 'static, V: 'static> std::fmt::Debug for Produced<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Produced({}, {})", self.key.name(), self.value.name())
    }
}

/// How a sink topic is written: key and value serdes, and an optional node name.
pub struct Produced<K, V> {
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    name: Option<String>,
}

impl<K, V> Produced<K, V> {
    /// Writes keys with `key` and values with `value`.
    pub fn with(key: impl Serde<K>, value: impl Serde<V>) -> Self {
        Produced { key: Arc::new(key), value: Arc::new(value), name: None }
    }
    /// Names the sink node.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
}

#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) stores: Vec<StoreBuilder>,
    pub(crate) global_stores: Vec<StoreBuilder>,
    pub(crate) internal_topics: Vec<InternalTopic>,
    /// Generated store names taken: nodes and stores share one numbering, as in Kafka Streams,
    /// so a store's generated name sits between its neighbours'.
    store_names_taken: usize,
    /// What operators found wrong as they were added; `build` reports the first.
    pub(crate) errors: Vec<String>,
}

/// How a stream goes through a repartition topic: serdes, an optional name (the topic is
/// `<name>-repartition`) and partition count.
pub struct Repartitioned<K, V> {
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) value: Arc<dyn Serde<V>>,
    pub(crate) name: Option<String>,
    pub(crate) partitions: Option<u32>,
}

impl<K, V> Repartitioned<K, V> {
    /// Writes and reads the topic with these serdes.
    pub fn with(key: impl Serde<K>, value: impl Serde<V>) -> Self {
        Repartitioned { key: Arc::new(key), value: Arc::new(value), name: None, partitions: None }
    }
    /// Names the topic `<name>-repartition` (and its sink and source nodes after it).
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
    /// Gives the topic `n` partitions.
    pub fn with_partitions(mut self, n: u32) -> Self {
        self.partitions = Some(n);
        self
    }
}

impl<K: 'static, V: 'static> std::fmt::Debug for Repartitioned<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repartitioned({}, {}, {:?}, {:?})", self.key.name(), self.value.name(), self.name, self.partitions)
    }
}

impl Graph {
    /// The number the next generated name takes.
    pub(crate) fn next_index(&self) -> usize {
        self.nodes.len() + self.store_names_taken
    }

    /// A generated name with the number the next node takes (without taking it).
    pub(crate) fn next_name(&self, prefix: &str) -> String {
        format!("{prefix}-{:010}", self.next_index())
    }

    /// A generated store name: takes a number, as a node does.
    pub(crate) fn new_store_name(&mut self, prefix: &str) -> String {
        let name = self.next_name(prefix);
        self.store_names_taken += 1;
        name
    }

    pub(crate) fn add(
        &mut self,
        prefix: &str,
        name: Option<String>,
        kind: NodeKind,
        parents: &[usize],
        make: crate::topology::MakeNode,
    ) -> usize {
        let idx = self.nodes.len();
        let (name, named) = match name {
            Some(n) => (n, true),
            None => (self.next_name(prefix), false),
        };
        self.nodes.push(NodeSpec {
            name,
            named,
            kind,
            parents: parents.to_vec(),
            children: Vec::new(),
            make,
            feeds_table: false,
        });
        for &p in parents {
            self.nodes[p].children.push(idx);
        }
        idx
    }
}

/// Builds a [`Topology`] from streams (see the module docs).
#[derive(Default)]
pub struct StreamsBuilder {
    pub(crate) graph: Rc<RefCell<Graph>>,
}

impl std::fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsBuilder").field("nodes", &self.graph.borrow().nodes.len()).finish()
    }
}

pub(crate) fn make<K: 'static, V: 'static, KOut: 'static, VOut: 'static, P>(
    supplier: impl Fn() -> P + Send + Sync + 'static,
) -> crate::topology::MakeNode
where
    P: Processor<K, V, KOut, VOut>,
{
    Arc::new(move || {
        let node = ProcessorNode::<P, KOut, VOut> { processor: supplier(), _out: PhantomData };
        Box::new(NodeBox::<K, V>(Box::new(node))) as Box<dyn ErasedNode>
    })
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream of the records of `topic`, decoded with `consumed`'s serdes.
    pub fn stream<K: Data, V: Data>(&self, topic: &str, consumed: Consumed<K, V>) -> KStream<K, V> {
        let (key, value, on_error) = (consumed.key, consumed.value, consumed.on_decode_error);
        let make = make::<Option<Bytes>, Option<Bytes>, K, V, _>(move || SourceProcessor {
            key: key.clone(),
            value: value.clone(),
            on_error: on_error.clone(),
        });
        let kind = NodeKind::Source { topics: vec![topic.to_string()] };
        let node = self.graph.borrow_mut().add("KSTREAM-SOURCE", consumed.name, kind, &[], make);
        KStream::at(&self.graph, node, false)
    }

    /// Declares a state store; processors name it in [`KStream::process_with_stores`].
    pub fn add_state_store(&self, store: StoreBuilder) {
        self.graph.borrow_mut().stores.push(store);
    }

    /// The topology; fails on duplicate node or store names, a topic read twice, a store no one
    /// declared, or a store used by two sub-topologies.
    pub fn build(self) -> Result<Topology> {
        let graph = self.graph.borrow();
        if let Some(error) = graph.errors.first() {
            return Err(Error::Topology(error.clone()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for node in &graph.nodes {
            if !seen.insert(node.name.as_str()) {
                return Err(Error::Topology(format!("two nodes are named {:?}; names must be unique", node.name)));
            }
        }
        let mut sources = BTreeMap::new();
        for node in &graph.nodes {
            if let NodeKind::Source { topics } = &node.kind {
                for t in topics {
                    if let Some(other) = sources.insert(t.as_str(), node.name.as_str()) {
                        return Err(Error::Topology(format!(
                            "topic {t:?} is read by both {other} and {}; read it once and share the stream",
                            node.name
                        )));
                    }
                }
            }
        }
        let mut store_names = std::collections::BTreeSet::new();
        for store in graph.stores.iter().chain(&graph.global_stores) {
            if !store_names.insert(store.name()) {
                return Err(Error::Topology(format!("two state stores are named {:?}", store.name())));
            }
        }
        for node in &graph.nodes {
            if let NodeKind::Processor { stores } = &node.kind {
                if let Some(missing) = stores.iter().find(|s| !store_names.contains(s.as_str())) {
                    return Err(Error::Topology(format!(
                        "processor {} uses state store {missing:?}, which was never added (StreamsBuilder::add_state_store)",
                        node.name
                    )));
                }
            }
        }
        Topology::new(
            graph.nodes.clone(),
            graph.stores.clone(),
            graph.global_stores.clone(),
            graph.internal_topics.clone(),
        )
    }
}

/// A stream of records `(K, V)`.
pub struct KStream<K, V> {
    pub(crate) graph: Rc<RefCell<Graph>>,
    pub(crate) node: usize,
    /// Whether an operator may have changed keys since the stream was last partitioned by its
    /// key (map, flat_map, select_key, process): grouping and joins then repartition first.
    pub(crate) key_changed: bool,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream { graph: self.graph.clone(), node: self.node, key_changed: self.key_changed, _types: PhantomData }
    }
}

impl<K, V> KStream<K, V> {
    pub(crate) fn at(graph: &Rc<RefCell<Graph>>, node: usize, key_changed: bool) -> Self {
        KStream { graph: graph.clone(), node, key_changed, _types: PhantomData }
    }
}

impl<K, V> std::fmt::Debug for KStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KStream({})", self.graph.borrow().nodes[self.node].name)
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn then<K2: Data, V2: Data>(&self, prefix: &str, make: crate::topology::MakeNode) -> KStream<K2, V2> {
        let kind = NodeKind::Processor { stores: Vec::new() };
        let node = self.graph.borrow_mut().add(prefix, None, kind, &[self.node], make);
        KStream::at(&self.graph, node, self.key_changed)
    }

    /// [`KStream::then`] for an operator that may change keys.
    fn rekeyed<K2: Data, V2: Data>(&self, prefix: &str, make: crate::topology::MakeNode) -> KStream<K2, V2> {
        let mut stream = self.then(prefix, make);
        stream.key_changed = true;
        stream
    }

    /// Names the node that makes this stream (instead of a generated name).
    pub fn named(self, name: &str) -> Self {
        let mut graph = self.graph.borrow_mut();
        graph.nodes[self.node].name = name.to_string();
        graph.nodes[self.node].named = true;
        drop(graph);
        self
    }

    /// A new key and value for every record.
    pub fn map<K2: Data, V2: Data>(&self, f: impl Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static) -> KStream<K2, V2> {
        let f = Arc::new(f);
        self.rekeyed(
            "KSTREAM-MAP",
            make::<K, V, K2, V2, _>(move || {
                let f = f.clone();
                FnProcessor(move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V2>| {
                    let (k, v) = f(&r.key, &r.value);
                    ctx.forward(Record { key: k, value: v, timestamp: r.timestamp, headers: r.headers })
                })
            }),
        )
    }

    /// A new value for every record; the key stays (no repartition needed downstream).
    pub fn map_values<V2: Data>(&self, f: impl Fn(&V) -> V2 + Send + Sync + 'static) -> KStream<K, V2> {
        let f = Arc::new(f);
        self.then(
            "KSTREAM-MAPVALUES",
            make::<K, V, K, V2, _>(move || {
                let f = f.clone();
                FnProcessor(move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V2>| {
                    let v = f(&r.value);
                    ctx.forward(r.with_value(v))
                })
            }),
        )
    }

    /// The records for which `predicate` holds.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        let p = Arc::new(predicate);
        self.then(
            "KSTREAM-FILTER",
            make::<K, V, K, V, _>(move || {
                let p = p.clone();
                FnProcessor(
                    move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>| {
                        if p(&r.key, &r.value) {
                            ctx.forward(r)
                        } else {
                            Ok(())
                        }
                    },
                )
            }),
        )
    }

    /// The records for which `predicate` does not hold.
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// Zero or more records for every record, each with the input's timestamp and headers.
    pub fn flat_map<K2: Data, V2: Data, I>(&self, f: impl Fn(&K, &V) -> I + Send + Sync + 'static) -> KStream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        let f = Arc::new(f);
        self.rekeyed(
            "KSTREAM-FLATMAP",
            make::<K, V, K2, V2, _>(move || {
                let f = f.clone();
                FnProcessor(move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V2>| {
                    for (k, v) in f(&r.key, &r.value) {
                        ctx.forward(Record { key: k, value: v, timestamp: r.timestamp, headers: r.headers.clone() })?;
                    }
                    Ok(())
                })
            }),
        )
    }

    /// Zero or more values for every record, each with the input's key.
    pub fn flat_map_values<V2: Data, I>(&self, f: impl Fn(&V) -> I + Send + Sync + 'static) -> KStream<K, V2>
    where
        I: IntoIterator<Item = V2>,
    {
        let f = Arc::new(f);
        self.then(
            "KSTREAM-FLATMAPVALUES",
            make::<K, V, K, V2, _>(move || {
                let f = f.clone();
                FnProcessor(move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V2>| {
                    for v in f(&r.value) {
                        ctx.forward(Record {
                            key: r.key.clone(),
                            value: v,
                            timestamp: r.timestamp,
                            headers: r.headers.clone(),
                        })?;
                    }
                    Ok(())
                })
            }),
        )
    }

    /// A new key for every record (the value stays).
    pub fn select_key<K2: Data>(&self, f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static) -> KStream<K2, V> {
        let f = Arc::new(f);
        self.rekeyed(
            "KSTREAM-KEY-SELECT",
            make::<K, V, K2, V, _>(move || {
                let f = f.clone();
                FnProcessor(move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V>| {
                    let k = f(&r.key, &r.value);
                    ctx.forward(r.with_key(k))
                })
            }),
        )
    }

    /// Calls `f` for every record and passes it on unchanged.
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> KStream<K, V> {
        let f = Arc::new(f);
        self.then(
            "KSTREAM-PEEK",
            make::<K, V, K, V, _>(move || {
                let f = f.clone();
                FnProcessor(move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>| {
                    f(&r.key, &r.value);
                    ctx.forward(r)
                })
            }),
        )
    }

    /// Calls `f` for every record; the stream ends here.
    pub fn foreach(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) {
        let f = Arc::new(f);
        let _: KStream<K, V> = self.then(
            "KSTREAM-FOREACH",
            make::<K, V, K, V, _>(move || {
                let f = f.clone();
                FnProcessor(move |r: Record<K, V>, _: &mut ProcessorContext<'_, K, V>| {
                    f(&r.key, &r.value);
                    Ok(())
                })
            }),
        );
    }

    /// This stream and `other` as one (records in the order they are processed).
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let kind = NodeKind::Processor { stores: Vec::new() };
        let make = make::<K, V, K, V, _>(|| {
            FnProcessor(|r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>| ctx.forward(r))
        });
        let node = self.graph.borrow_mut().add("KSTREAM-MERGE", None, kind, &[self.node, other.node], make);
        KStream::at(&self.graph, node, self.key_changed || other.key_changed)
    }

    /// Runs a processor of the low-level API on every record: `supplier` makes one per task.
    pub fn process<K2: Data, V2: Data, P>(&self, supplier: impl Fn() -> P + Send + Sync + 'static) -> KStream<K2, V2>
    where
        P: Processor<K, V, K2, V2>,
    {
        self.rekeyed("KSTREAM-PROCESSOR", make::<K, V, K2, V2, _>(supplier))
    }

    /// Like [`KStream::process`], for a processor that uses the state stores `stores` (declared
    /// with [`StreamsBuilder::add_state_store`]).
    pub fn process_with_stores<K2: Data, V2: Data, P>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
        stores: &[&str],
    ) -> KStream<K2, V2>
    where
        P: Processor<K, V, K2, V2>,
    {
        let kind = NodeKind::Processor { stores: stores.iter().map(|s| s.to_string()).collect() };
        let make = make::<K, V, K2, V2, _>(supplier);
        let node = self.graph.borrow_mut().add("KSTREAM-PROCESSOR", None, kind, &[self.node], make);
        KStream::at(&self.graph, node, true)
    }

    /// Splits the stream into named branches: each record goes to the first branch whose
    /// predicate holds (see [`Split`]).
    pub fn split(&self, prefix: &str) -> Split<K, V> {
        Split { parent: self.clone(), prefix: prefix.to_string(), branches: Vec::new() }
    }

    /// Sends the stream through a repartition topic, so records are partitioned by their current
    /// key: a sink writes the topic and a new source reads it, in a new sub-topology (whose tasks
    /// then hold each key's records together).
    pub fn repartition(&self, repartitioned: Repartitioned<K, V>) -> KStream<K, V> {
        let base = match repartitioned.name.clone() {
            Some(name) => name,
            None => self.graph.borrow().next_name("KSTREAM-REPARTITION"),
        };
        let topic = format!("{base}-repartition");
        let named = |suffix: &str| repartitioned.name.as_ref().map(|_| format!("{topic}-{suffix}"));
        let (key, value) = (repartitioned.key.clone(), repartitioned.value.clone());
        let produced = Produced { key: key.clone(), value: value.clone(), name: named("sink") };
        self.to(&topic, produced);
        let consumed = Consumed { key, value, name: named("source"), on_decode_error: OnDecodeError::Fail };
        let builder = StreamsBuilder { graph: self.graph.clone() };
        let stream = builder.stream(&topic, consumed);
        self.graph
            .borrow_mut()
            .internal_topics
            .push(InternalTopic { name: topic, partitions: repartitioned.partitions });
        stream
    }

    /// Writes every record to `topic`.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let (key, value, topic_name) = (produced.key, produced.value, topic.to_string());
        let make = make::<K, V, (), (), _>(move || SinkProcessor {
            topic: topic_name.clone(),
            key: key.clone(),
            value: value.clone(),
        });
        let kind = NodeKind::Sink { topic: topic.to_string() };
        self.graph.borrow_mut().add("KSTREAM-SINK", produced.name, kind, &[self.node], make);
    }
}

type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// Branches being declared on a stream: `stream.split("s-").branch("a", p).default_branch("rest")`.
pub struct Split<K, V> {
    parent: KStream<K, V>,
    prefix: String,
    branches: Vec<(String, Option<Predicate<K, V>>)>,
}

impl<K, V> std::fmt::Debug for Split<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl<K: Data, V: Data> Split<K, V> {
    /// A branch of the records for which `predicate` holds (and no earlier predicate did).
    pub fn branch(mut self, name: &str, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.branches.push((name.to_string(), Some(Arc::new(predicate))));
        self
    }

    /// The branches, by name (`prefix` + branch name).
    pub fn no_default_branch(self) -> BTreeMap<String, KStream<K, V>> {
        self.finish()
    }

    /// The branches plus one for records no predicate took.
    pub fn default_branch(mut self, name: &str) -> BTreeMap<String, KStream<K, V>> {
        self.branches.push((name.to_string(), None));
        self.finish()
    }

    fn finish(self) -> BTreeMap<String, KStream<K, V>> {
        let names: Vec<String> = self.branches.iter().map(|(n, _)| format!("{}{n}", self.prefix)).collect();
        let predicates: Vec<Option<Predicate<K, V>>> = self.branches.into_iter().map(|(_, p)| p).collect();
        let targets = names.clone();
        let split: KStream<K, V> = self.parent.then(
            "KSTREAM-BRANCH",
            make::<K, V, K, V, _>(move || {
                let (predicates, targets) = (predicates.clone(), targets.clone());
                FnProcessor(move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>| {
                    for (p, target) in predicates.iter().zip(&targets) {
                        if p.as_ref().is_none_or(|p| p(&r.key, &r.value)) {
                            return ctx.forward_to(target, r);
                        }
                    }
                    Ok(())
                })
            }),
        );
        let split = split.named(&self.prefix);
        names
            .into_iter()
            .map(|name| {
                let branch: KStream<K, V> = split.then(
                    "KSTREAM-BRANCHCHILD",
                    make::<K, V, K, V, _>(|| {
                        FnProcessor(|r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>| ctx.forward(r))
                    }),
                );
                (name.clone(), branch.named(&name))
            })
            .collect()
    }
}

/// A processor from a closure.
pub(crate) struct FnProcessor<F>(pub(crate) F);

impl<K, V, K2, V2, F> Processor<K, V, K2, V2> for FnProcessor<F>
where
    F: FnMut(Record<K, V>, &mut ProcessorContext<'_, K2, V2>) -> Result<()> + Send + 'static,
{
    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V2>) -> Result<()> {
        (self.0)(record, ctx)
    }
}

/// Decodes raw records with the topic's serdes.
struct SourceProcessor<K, V> {
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    on_error: OnDecodeError,
}

impl<K: Data, V: Data> SourceProcessor<K, V> {
    fn decode(&self, r: &Record<Option<Bytes>, Option<Bytes>>, meta: &RecordMeta) -> Result<(K, V)> {
        let err = |what, serde: String, detail| Error::Deserialize {
            what,
            topic: meta.topic.clone(),
            partition: meta.partition,
            offset: meta.offset,
            serde,
            detail,
        };
        let key = self.key.deserialize(r.key.as_deref()).map_err(|d| err("key", self.key.name(), d))?;
        let value = self.value.deserialize(r.value.as_deref()).map_err(|d| err("value", self.value.name(), d))?;
        Ok((key, value))
    }
}

impl<K: Data, V: Data> Processor<Option<Bytes>, Option<Bytes>, K, V> for SourceProcessor<K, V> {
    fn process(&mut self, r: Record<Option<Bytes>, Option<Bytes>>, ctx: &mut ProcessorContext<'_, K, V>) -> Result<()> {
        let meta = ctx.record_meta().cloned().unwrap_or(RecordMeta { topic: String::new(), partition: 0, offset: -1 });
        let error = match self.decode(&r, &meta) {
            Ok((key, value)) => return ctx.forward(Record { key, value, timestamp: r.timestamp, headers: r.headers }),
            Err(e) => e,
        };
        match &self.on_error {
            OnDecodeError::Fail => Err(error),
            OnDecodeError::Skip => {
                tracing::warn!(topic = %meta.topic, partition = meta.partition, offset = meta.offset, %error, "skipping a record that does not decode");
                ctx.task().dropped_records += 1;
                Ok(())
            }
            OnDecodeError::DeadLetter(topic) => {
                tracing::warn!(topic = %meta.topic, partition = meta.partition, offset = meta.offset, %error, dead_letter_topic = %topic, "a record that does not decode goes to the dead-letter topic");
                let mut headers = r.headers;
                headers.push(Header { key: "freshet.error".into(), value: Some(Bytes::from(error.to_string())) });
                let source = format!("{}-{}@{}", meta.topic, meta.partition, meta.offset);
                headers.push(Header { key: "freshet.source".into(), value: Some(Bytes::from(source)) });
                let task = ctx.task();
                task.dropped_records += 1;
                task.output.push(SinkRecord {
                    topic: topic.clone(),
                    partition: None,
                    key: r.key,
                    value: r.value,
                    timestamp: r.timestamp,
                    headers,
                });
                Ok(())
            }
        }
    }
}

/// Encodes records with the topic's serdes into the task's output.
struct SinkProcessor<K, V> {
    topic: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
}

impl<K: Data, V: Data> Processor<K, V, (), ()> for SinkProcessor<K, V> {
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, (), ()>) -> Result<()> {
        let err = |what, serde: String, detail| Error::Serialize { what, topic: self.topic.clone(), serde, detail };
        let key = self.key.serialize(&r.key).map_err(|d| err("key", self.key.name(), d))?;
        let value = self.value.serialize(&r.value).map_err(|d| err("value", self.value.name(), d))?;
        ctx.task().output.push(SinkRecord {
            topic: self.topic.clone(),
            partition: None,
            key,
            value,
            timestamp: r.timestamp,
            headers: r.headers,
        });
        Ok(())
    }
}
