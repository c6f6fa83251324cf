//! Tables, grouping and aggregation: `KTable`, `GlobalKTable`, `KGroupedStream` and
//! `KGroupedTable`.
//!
//! A table is a changelog stream: each of its nodes forwards [`Change`]s (the key's new value and
//! the one it replaces), so that an aggregation downstream can subtract what a key no longer
//! holds. Tables that come from a topic or an aggregation are materialized in a key-value store,
//! keyed and valued with the user's serdes, every value stored beside its timestamp; derived tables
//! (`filter`, `map_values`, joins) are not, and are read through a *value getter* that applies
//! their derivation to the store below, as in Kafka Streams.
//!
//! Aggregations emit every update downstream as soon as it happens (the record cache below them
//! only batches writes to RocksDB and the changelog); windowed ones can hold results until their
//! window closes instead (see [`crate::window`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::codec::{decode_stamped, encode, encode_stamped, Change, ChangeSerde, OptionSerde};
use crate::error::Result;
use crate::processor::{Data, Processor, ProcessorContext, Record};
use crate::serde::Serde;
use crate::store::StoreBuilder;
use crate::stream::{make, Consumed, Graph, KStream, Repartitioned, StreamsBuilder};
use crate::topology::NodeKind;

/// How an operator's state store is kept: its name, changelog, cache and (for windows) retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Materialized {
    pub(crate) name: Option<String>,
    pub(crate) logging: bool,
    pub(crate) caching: bool,
    pub(crate) retention_ms: Option<i64>,
}

impl Default for Materialized {
    fn default() -> Self {
        Materialized { name: None, logging: true, caching: true, retention_ms: None }
    }
}

impl Materialized {
    /// A store with a generated name, changelogged and cached.
    pub fn new() -> Self {
        Self::default()
    }
    /// A store named `name` (its changelog topic and, after a key change, its repartition topic
    /// are named after it).
    pub fn named(name: &str) -> Self {
        Materialized { name: Some(name.to_string()), ..Self::default() }
    }
    /// Whether the store writes a changelog topic (default on).
    pub fn with_logging(mut self, logging: bool) -> Self {
        self.logging = logging;
        self
    }
    /// Whether a record cache sits in front of the store (default on).
    pub fn with_caching(mut self, caching: bool) -> Self {
        self.caching = caching;
        self
    }
    /// How long a windowed store keeps windows (default: window size plus grace, the least it
    /// may be).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention_ms = Some(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        self
    }

    pub(crate) fn store(&self, graph: &Rc<RefCell<Graph>>, prefix: &str) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => graph.borrow_mut().new_store_name(prefix),
        }
    }

    pub(crate) fn apply(&self, store: StoreBuilder) -> StoreBuilder {
        store.with_logging(self.logging).with_caching(self.caching)
    }
}

/// How records are grouped: the serdes of the key and value (for the repartition topic and the
/// store) and an optional name for the repartition topic (`<name>-repartition`).
pub struct Grouped<K, V> {
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) value: Arc<dyn Serde<V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Clone for Grouped<K, V> {
    fn clone(&self) -> Self {
        Grouped { key: self.key.clone(), value: self.value.clone(), name: self.name.clone() }
    }
}

impl<K, V> Grouped<K, V> {
    /// Keys written with `key`, values with `value`.
    pub fn with(key: impl Serde<K>, value: impl Serde<V>) -> Self {
        Grouped { key: Arc::new(key), value: Arc::new(value), name: None }
    }
    /// Names the repartition topic `<name>-repartition` (otherwise it is named after the store).
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
}

impl<K: 'static, V: 'static> std::fmt::Debug for Grouped<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Grouped({}, {}, {:?})", self.key.name(), self.value.name(), self.name)
    }
}

/// Reads byte-level key-value stores a node declared (its task's or a global table's).
pub(crate) trait StoreReader {
    fn read(&mut self, store: &str, key: &Bytes) -> Result<Option<Bytes>>;
    fn read_window(&mut self, store: &str, key: &Bytes, start: i64) -> Result<Option<Bytes>>;
    fn read_session(&mut self, store: &str, key: &Bytes, start: i64, end: i64) -> Result<Option<Bytes>>;
}

impl<K, V> StoreReader for ProcessorContext<'_, K, V> {
    fn read(&mut self, store: &str, key: &Bytes) -> Result<Option<Bytes>> {
        self.with_kv(store, |s| Ok(s.get(key)?))
    }
    fn read_window(&mut self, store: &str, key: &Bytes, start: i64) -> Result<Option<Bytes>> {
        Ok(self.window_store::<Bytes, Bytes>(store)?.fetch(key, start)?)
    }
    fn read_session(&mut self, store: &str, key: &Bytes, start: i64, end: i64) -> Result<Option<Bytes>> {
        Ok(self.session_store::<Bytes, Bytes>(store)?.fetch_session(key, start, end)?)
    }
}

type GetFn<K, V> = Arc<dyn Fn(&mut dyn StoreReader, &K) -> Result<Option<(V, i64)>> + Send + Sync>;

/// Reads a table's current value of a key (and its timestamp) from the stores below it.
pub(crate) struct Getter<K, V> {
    /// The stores it reads: a node that uses the getter declares them.
    pub(crate) stores: Vec<String>,
    pub(crate) get: GetFn<K, V>,
}

impl<K, V> Clone for Getter<K, V> {
    fn clone(&self) -> Self {
        Getter { stores: self.stores.clone(), get: self.get.clone() }
    }
}

impl<K: 'static, V: 'static> Getter<K, V> {
    /// Reads `store`, whose keys and values these serdes wrote.
    pub(crate) fn of_store(store: &str, key: Arc<dyn Serde<K>>, value: Arc<dyn Serde<V>>) -> Self {
        let name = store.to_string();
        let get: GetFn<K, V> = Arc::new(move |reader, k| {
            let Some(kb) = encode(&key, k, "key", &name)? else { return Ok(None) };
            match reader.read(&name, &kb)? {
                Some(stored) => Ok(Some(decode_stamped(&value, &stored, &name)?)),
                None => Ok(None),
            }
        });
        Getter { stores: vec![store.to_string()], get }
    }

    /// This getter with `f` applied to what it reads.
    pub(crate) fn then<V2: 'static>(&self, f: impl Fn(&K, V) -> Option<V2> + Send + Sync + 'static) -> Getter<K, V2> {
        let get = self.get.clone();
        Getter {
            stores: self.stores.clone(),
            get: Arc::new(move |reader, k| Ok(get(reader, k)?.and_then(|(v, ts)| f(k, v).map(|v2| (v2, ts))))),
        }
    }
}

/// A table: the latest value of each key, as a stream of [`Change`]s.
pub struct KTable<K, V> {
    pub(crate) graph: Rc<RefCell<Graph>>,
    pub(crate) node: usize,
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) getter: Getter<K, V>,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        KTable { graph: self.graph.clone(), node: self.node, key: self.key.clone(), getter: self.getter.clone() }
    }
}

impl<K, V> std::fmt::Debug for KTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KTable({})", self.graph.borrow().nodes[self.node].name)
    }
}

/// A table replicated whole to every instance, filled from every partition of its topic; joined
/// from a stream by a key the stream's records map to (no co-partitioning needed).
pub struct GlobalKTable<K, V> {
    pub(crate) getter: Getter<K, V>,
    pub(crate) store: String,
}

impl<K, V> std::fmt::Debug for GlobalKTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GlobalKTable({})", self.store)
    }
}

/// Adds a processor node that uses `stores`, below `parents`.
pub(crate) fn add_stateful(
    graph: &Rc<RefCell<Graph>>,
    prefix: &str,
    parents: &[usize],
    stores: &[String],
    make: crate::topology::MakeNode,
) -> usize {
    let kind = NodeKind::Processor { stores: stores.to_vec() };
    graph.borrow_mut().add(prefix, None, kind, parents, make)
}

impl StreamsBuilder {
    /// A table of the records of `topic`: each record replaces its key's value (a null value
    /// deletes it). Materialized in a key-value store.
    pub fn table<K: Data, V: Data>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized,
    ) -> KTable<K, V> {
        let (key, value) = (consumed.key.clone(), consumed.value.clone());
        let store = materialized.store(&self.graph, &format!("{topic}-STATE-STORE"));
        let source: KStream<K, Option<V>> = self.stream(topic, consumed.optional_values());
        self.graph.borrow_mut().nodes[source.node].feeds_table = true;
        self.graph.borrow_mut().stores.push(materialized.apply(StoreBuilder::raw_key_value(&store)));
        let node = table_source_node(&self.graph, source.node, &store, key.clone(), value.clone(), false);
        KTable::of_store(&self.graph, node, &store, key, value)
    }

    /// A global table of `topic`: every instance holds all of it (see [`GlobalKTable`]). Its
    /// store has no changelog (the topic is one).
    pub fn global_table<K: Data, V: Data>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized,
    ) -> GlobalKTable<K, V> {
        let (key, value) = (consumed.key.clone(), consumed.value.clone());
        let store = materialized.store(&self.graph, &format!("{topic}-STATE-STORE"));
        let source: KStream<K, Option<V>> = self.stream(topic, consumed.optional_values());
        let builder = materialized.apply(StoreBuilder::raw_key_value(&store)).with_logging(false);
        self.graph.borrow_mut().global_stores.push(builder);
        table_source_node(&self.graph, source.node, &store, key.clone(), value.clone(), true);
        GlobalKTable { getter: Getter::of_store(&store, key, value), store }
    }
}

fn table_source_node<K: Data, V: Data>(
    graph: &Rc<RefCell<Graph>>,
    parent: usize,
    store: &str,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    global: bool,
) -> usize {
    let name = store.to_string();
    let make = make::<K, Option<V>, K, Change<V>, _>(move || TableSource {
        store: name.clone(),
        key: key.clone(),
        value: value.clone(),
        global,
    });
    add_stateful(graph, "KTABLE-SOURCE", &[parent], &[store.to_string()], make)
}

/// Puts each record of a table's topic into its store and forwards the change.
struct TableSource<K, V> {
    store: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    global: bool,
}

impl<K: Data, V: Data> Processor<K, Option<V>, K, Change<V>> for TableSource<K, V> {
    fn process(&mut self, r: Record<K, Option<V>>, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        let Some(kb) = key_or_drop(ctx, &self.key, &r.key, &self.store)? else { return Ok(()) };
        let stored = match &r.value {
            Some(v) => encode_stamped(&self.value, v, r.timestamp, &self.store)?,
            None => None,
        };
        let old_bytes = ctx.with_kv(&self.store, |s| {
            let old = s.get(&kb)?;
            match &stored {
                Some(b) => s.put(&kb, b)?,
                None => {
                    s.delete(&kb)?;
                }
            }
            Ok(old)
        })?;
        if self.global {
            return Ok(());
        }
        let old = old_bytes.map(|b| decode_stamped(&self.value, &b, &self.store)).transpose()?.map(|(v, _)| v);
        let new = if stored.is_some() { r.value } else { None };
        ctx.forward(Record { key: r.key, value: Change { new, old }, timestamp: r.timestamp, headers: r.headers })
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    /// The table `node` makes, materialized in `store`.
    fn of_store(
        graph: &Rc<RefCell<Graph>>,
        node: usize,
        store: &str,
        key: Arc<dyn Serde<K>>,
        value: Arc<dyn Serde<V>>,
    ) -> Self {
        KTable { graph: graph.clone(), node, key: key.clone(), getter: Getter::of_store(store, key, value) }
    }

    fn derive<V2: Data>(&self, prefix: &str, make: crate::topology::MakeNode, getter: Getter<K, V2>) -> KTable<K, V2> {
        let node = add_stateful(&self.graph, prefix, &[self.node], &[], make);
        KTable { graph: self.graph.clone(), node, key: self.key.clone(), getter }
    }

    /// Names the node that makes this table.
    pub fn named(self, name: &str) -> Self {
        let mut graph = self.graph.borrow_mut();
        graph.nodes[self.node].name = name.to_string();
        graph.nodes[self.node].named = true;
        drop(graph);
        self
    }

    /// The entries for which `predicate` holds; an update that makes it fail deletes the key
    /// downstream.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KTable<K, V> {
        let p = Arc::new(predicate);
        let getter_p = p.clone();
        let getter = self.getter.then(move |k, v| getter_p(k, &v).then_some(v));
        self.derive(
            "KTABLE-FILTER",
            make::<K, Change<V>, K, Change<V>, _>(move || {
                let p = p.clone();
                ChangeFn(move |k: &K, c: Change<V>| {
                    let keep = |v: Option<V>| v.filter(|v| p(k, v));
                    let (new, old) = (keep(c.new), keep(c.old));
                    (new.is_some() || old.is_some()).then_some(Change { new, old })
                })
            }),
            getter,
        )
    }

    /// The entries for which `predicate` does not hold.
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KTable<K, V> {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// Each value mapped with `f`.
    pub fn map_values<V2: Data>(&self, f: impl Fn(&V) -> V2 + Send + Sync + 'static) -> KTable<K, V2> {
        let f = Arc::new(f);
        let getter_f = f.clone();
        let getter = self.getter.then(move |_, v| Some(getter_f(&v)));
        self.derive(
            "KTABLE-MAPVALUES",
            make::<K, Change<V>, K, Change<V2>, _>(move || {
                let f = f.clone();
                ChangeFn(move |_: &K, c: Change<V>| {
                    Some(Change { new: c.new.as_ref().map(|v| f(v)), old: c.old.as_ref().map(|v| f(v)) })
                })
            }),
            getter,
        )
    }

    /// The table's updates as a stream: each change's new value (`None` for a deletion).
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let make = make::<K, Change<V>, K, Option<V>, _>(|| {
            crate::stream::FnProcessor(|r: Record<K, Change<V>>, ctx: &mut ProcessorContext<'_, K, Option<V>>| {
                let new = r.value.new;
                ctx.forward(Record { key: r.key, value: new, timestamp: r.timestamp, headers: r.headers })
            })
        });
        let node = add_stateful(&self.graph, "KTABLE-TOSTREAM", &[self.node], &[], make);
        KStream::at(&self.graph, node, false)
    }

    /// Groups the table by a new key (and value) that `selector` makes from each entry, for a
    /// re-aggregation: entries move through a repartition topic, and when an entry changes, its
    /// old value is subtracted from its old group and its new value added to its new one.
    pub fn group_by<K2: Data, V2: Data>(
        &self,
        selector: impl Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
        grouped: Grouped<K2, V2>,
    ) -> KGroupedTable<K2, V2> {
        let selector = Arc::new(selector);
        let key_serde = grouped.key.clone();
        let make = make::<K, Change<V>, K2, Change<V2>, _>(move || TableSelect {
            selector: selector.clone(),
            key: key_serde.clone(),
        });
        let node = add_stateful(&self.graph, "KTABLE-SELECT", &[self.node], &[], make);
        KGroupedTable { stream: KStream::at(&self.graph, node, true), grouped }
    }
}

/// A table node from a closure over changes (`None`: forward nothing).
struct ChangeFn<F>(F);

impl<K: Data, V: Data, V2: Data, F> Processor<K, Change<V>, K, Change<V2>> for ChangeFn<F>
where
    F: FnMut(&K, Change<V>) -> Option<Change<V2>> + Send + 'static,
{
    fn process(&mut self, r: Record<K, Change<V>>, ctx: &mut ProcessorContext<'_, K, Change<V2>>) -> Result<()> {
        match (self.0)(&r.key, r.value) {
            Some(change) => {
                ctx.forward(Record { key: r.key, value: change, timestamp: r.timestamp, headers: r.headers })
            }
            None => Ok(()),
        }
    }
}

type Selector<K, V, K2, V2> = Arc<dyn Fn(&K, &V) -> (K2, V2) + Send + Sync>;

/// Maps a table's changes to their new groups: one record when old and new land in the same
/// group, else a subtraction for the old group and then an addition for the new one.
struct TableSelect<K, V, K2, V2> {
    selector: Selector<K, V, K2, V2>,
    key: Arc<dyn Serde<K2>>,
}

impl<K: Data, V: Data, K2: Data, V2: Data> Processor<K, Change<V>, K2, Change<V2>> for TableSelect<K, V, K2, V2> {
    fn process(&mut self, r: Record<K, Change<V>>, ctx: &mut ProcessorContext<'_, K2, Change<V2>>) -> Result<()> {
        let old = r.value.old.as_ref().map(|v| (self.selector)(&r.key, v));
        let new = r.value.new.as_ref().map(|v| (self.selector)(&r.key, v));
        let at = |key, value| Record { key, value, timestamp: r.timestamp, headers: r.headers.clone() };
        match (old, new) {
            (Some((ko, vo)), Some((kn, vn)))
                if encode(&self.key, &ko, "key", "group_by")? == encode(&self.key, &kn, "key", "group_by")? =>
            {
                ctx.forward(at(kn, Change { new: Some(vn), old: Some(vo) }))
            }
            (old, new) => {
                if let Some((ko, vo)) = old {
                    ctx.forward(at(ko, Change { new: None, old: Some(vo) }))?;
                }
                if let Some((kn, vn)) = new {
                    ctx.forward(at(kn, Change { new: Some(vn), old: None }))?;
                }
                Ok(())
            }
        }
    }
}

/// A stream grouped by key, ready to aggregate (see [`KStream::group_by_key`]).
pub struct KGroupedStream<K, V> {
    pub(crate) stream: KStream<K, V>,
    pub(crate) grouped: Grouped<K, V>,
}

impl<K, V> std::fmt::Debug for KGroupedStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KGroupedStream({:?})", self.stream)
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    /// Groups records by their key, to aggregate them. If an operator upstream may have changed
    /// the keys, records first go through a repartition topic so that each key's records meet in
    /// one task.
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream { stream: self.clone(), grouped }
    }

    /// Groups records by the key `f` selects (always through a repartition topic).
    pub fn group_by<K2: Data>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        self.select_key(f).group_by_key(grouped)
    }
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    /// The stream the aggregation reads: this one, or its repartitioned copy when keys changed.
    pub(crate) fn partitioned(&self, store: &str) -> KStream<K, V> {
        if !self.stream.key_changed {
            return self.stream.clone();
        }
        let base = self.grouped.name.clone().unwrap_or_else(|| store.to_string());
        self.stream.repartition(Repartitioned {
            key: self.grouped.key.clone(),
            value: self.grouped.value.clone(),
            name: Some(base),
            partitions: None,
        })
    }

    fn aggregate_with<A: Data>(
        &self,
        prefix: &str,
        materialized: Materialized,
        serde: Arc<dyn Serde<A>>,
        add: AddFn<K, V, A>,
    ) -> KTable<K, A> {
        let graph = &self.stream.graph;
        let store = materialized.store(graph, &format!("{prefix}-STATE-STORE"));
        let input = self.partitioned(&store);
        graph.borrow_mut().stores.push(materialized.apply(StoreBuilder::raw_key_value(&store)));
        let (name, key, agg) = (store.clone(), self.grouped.key.clone(), serde.clone());
        let make = make::<K, V, K, Change<A>, _>(move || StreamAggregate {
            store: name.clone(),
            key: key.clone(),
            serde: agg.clone(),
            add: add.clone(),
        });
        let node = add_stateful(graph, prefix, &[input.node], std::slice::from_ref(&store), make);
        KTable::of_store(graph, node, &store, self.grouped.key.clone(), serde)
    }

    /// The number of records per key.
    pub fn count(&self, materialized: Materialized) -> KTable<K, i64> {
        let add: AddFn<K, V, i64> = Arc::new(|_, _, old| old.unwrap_or(0) + 1);
        self.aggregate_with("KSTREAM-AGGREGATE", materialized, Arc::new(crate::serde::NumberSerde::<i64>::new()), add)
    }

    /// Combines each key's values with `reducer(aggregate, value)`; the first value starts it.
    pub fn reduce(
        &self,
        reducer: impl Fn(&V, &V) -> V + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<K, V> {
        let add: AddFn<K, V, V> = Arc::new(move |_, v, old| match old {
            Some(agg) => reducer(&agg, v),
            None => v.clone(),
        });
        self.aggregate_with("KSTREAM-REDUCE", materialized, self.grouped.value.clone(), add)
    }

    /// Folds each key's values into an aggregate: `initializer()` starts it, `aggregator(key,
    /// value, aggregate)` adds a value; the aggregate is stored with `serde`.
    pub fn aggregate<A: Data>(
        &self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        aggregator: impl Fn(&K, &V, A) -> A + Send + Sync + 'static,
        serde: impl Serde<A>,
        materialized: Materialized,
    ) -> KTable<K, A> {
        let add: AddFn<K, V, A> = Arc::new(move |k, v, old| aggregator(k, v, old.unwrap_or_else(&initializer)));
        self.aggregate_with("KSTREAM-AGGREGATE", materialized, Arc::new(serde), add)
    }
}

/// Adds a value to an aggregate (`None`: the key has none yet).
pub(crate) type AddFn<K, V, A> = Arc<dyn Fn(&K, &V, Option<A>) -> A + Send + Sync>;

/// Aggregates a grouped stream into a key-value store; forwards each key's new aggregate.
struct StreamAggregate<K, V, A> {
    store: String,
    key: Arc<dyn Serde<K>>,
    serde: Arc<dyn Serde<A>>,
    add: AddFn<K, V, A>,
}

impl<K: Data, V: Data, A: Data> Processor<K, V, K, Change<A>> for StreamAggregate<K, V, A> {
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, Change<A>>) -> Result<()> {
        let Some(kb) = key_or_drop(ctx, &self.key, &r.key, &self.store)? else { return Ok(()) };
        // One store access reads, folds and writes.
        let (store, serde, add) = (&self.store, &self.serde, &self.add);
        let (old, new, timestamp) = ctx.with_kv(store, |s| {
            let old = s.get(&kb)?.map(|b| decode_stamped(serde, &b, store)).transpose()?;
            let timestamp = old.as_ref().map_or(r.timestamp, |(_, ts)| r.timestamp.max(*ts));
            let old = old.map(|(v, _)| v);
            let new = add(&r.key, &r.value, old.clone());
            match encode_stamped(serde, &new, timestamp, store)? {
                Some(b) => s.put(&kb, &b)?,
                None => {
                    s.delete(&kb)?;
                }
            }
            Ok((old, new, timestamp))
        })?;
        ctx.forward(Record { key: r.key, value: Change { new: Some(new), old }, timestamp, headers: r.headers })
    }
}

/// The bytes of a record's key for `store`, or `None` when the key serde writes it as null: such a
/// record cannot be aggregated or stored, and is dropped (counted, with a warning).
pub(crate) fn key_or_drop<K: 'static, KO, VO>(
    ctx: &mut ProcessorContext<'_, KO, VO>,
    serde: &Arc<dyn Serde<K>>,
    key: &K,
    store: &str,
) -> Result<Option<Bytes>> {
    let encoded = encode(serde, key, "key", store)?;
    if encoded.is_none() {
        tracing::warn!(store, "a record without a key is dropped");
        ctx.count_dropped();
    }
    Ok(encoded)
}

/// A table grouped by a new key, ready to re-aggregate (see [`KTable::group_by`]).
pub struct KGroupedTable<K, V> {
    stream: KStream<K, Change<V>>,
    grouped: Grouped<K, V>,
}

impl<K, V> std::fmt::Debug for KGroupedTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KGroupedTable({:?})", self.stream)
    }
}

type SubFn<K, V, A> = Arc<dyn Fn(&K, &V, A) -> A + Send + Sync>;

impl<K: Data, V: Data> KGroupedTable<K, V> {
    fn aggregate_with<A: Data>(
        &self,
        prefix: &str,
        materialized: Materialized,
        serde: Arc<dyn Serde<A>>,
        add: AddFn<K, V, A>,
        sub: SubFn<K, V, A>,
    ) -> KTable<K, A> {
        let graph = &self.stream.graph;
        let store = materialized.store(graph, &format!("{prefix}-STATE-STORE"));
        let base = self.grouped.name.clone().unwrap_or_else(|| store.clone());
        let input = self.stream.repartition(Repartitioned {
            key: self.grouped.key.clone(),
            value: Arc::new(ChangeSerde(self.grouped.value.clone())),
            name: Some(base),
            partitions: None,
        });
        graph.borrow_mut().stores.push(materialized.apply(StoreBuilder::raw_key_value(&store)));
        let (name, key, agg) = (store.clone(), self.grouped.key.clone(), serde.clone());
        let make = make::<K, Change<V>, K, Change<A>, _>(move || TableAggregate {
            store: name.clone(),
            key: key.clone(),
            serde: agg.clone(),
            add: add.clone(),
            sub: sub.clone(),
        });
        let node = add_stateful(graph, prefix, &[input.node], std::slice::from_ref(&store), make);
        KTable::of_store(graph, node, &store, self.grouped.key.clone(), serde)
    }

    /// The number of entries per group.
    pub fn count(&self, materialized: Materialized) -> KTable<K, i64> {
        let add: AddFn<K, V, i64> = Arc::new(|_, _, old| old.unwrap_or(0) + 1);
        let sub: SubFn<K, V, i64> = Arc::new(|_, _, agg| agg - 1);
        self.aggregate_with(
            "KTABLE-AGGREGATE",
            materialized,
            Arc::new(crate::serde::NumberSerde::<i64>::new()),
            add,
            sub,
        )
    }

    /// Combines each group's values with `adder(aggregate, value)` and takes a value back out
    /// with `subtractor(aggregate, value)` when an entry leaves the group or changes.
    pub fn reduce(
        &self,
        adder: impl Fn(&V, &V) -> V + Send + Sync + 'static,
        subtractor: impl Fn(&V, &V) -> V + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<K, V> {
        let add: AddFn<K, V, V> = Arc::new(move |_, v, old| match old {
            Some(agg) => adder(&agg, v),
            None => v.clone(),
        });
        let sub: SubFn<K, V, V> = Arc::new(move |_, v, agg| subtractor(&agg, v));
        self.aggregate_with("KTABLE-REDUCE", materialized, self.grouped.value.clone(), add, sub)
    }

    /// Folds each group's values into an aggregate: `initializer()` starts it, `adder` adds a
    /// value, `subtractor` takes one back out.
    pub fn aggregate<A: Data>(
        &self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        adder: impl Fn(&K, &V, A) -> A + Send + Sync + 'static,
        subtractor: impl Fn(&K, &V, A) -> A + Send + Sync + 'static,
        serde: impl Serde<A>,
        materialized: Materialized,
    ) -> KTable<K, A> {
        let add: AddFn<K, V, A> = Arc::new(move |k, v, old| adder(k, v, old.unwrap_or_else(&initializer)));
        self.aggregate_with("KTABLE-AGGREGATE", materialized, Arc::new(serde), add, Arc::new(subtractor))
    }
}

/// Re-aggregates a grouped table: subtracts each change's old value, adds its new one.
struct TableAggregate<K, V, A> {
    store: String,
    key: Arc<dyn Serde<K>>,
    serde: Arc<dyn Serde<A>>,
    add: AddFn<K, V, A>,
    sub: SubFn<K, V, A>,
}

impl<K: Data, V: Data, A: Data> Processor<K, Change<V>, K, Change<A>> for TableAggregate<K, V, A> {
    fn process(&mut self, r: Record<K, Change<V>>, ctx: &mut ProcessorContext<'_, K, Change<A>>) -> Result<()> {
        let Some(kb) = key_or_drop(ctx, &self.key, &r.key, &self.store)? else { return Ok(()) };
        // One store access reads, subtracts the old value, adds the new one and writes.
        let (store, serde, add, sub) = (&self.store, &self.serde, &self.add, &self.sub);
        let (old, agg, timestamp) = ctx.with_kv(store, |s| {
            let old = s.get(&kb)?.map(|b| decode_stamped(serde, &b, store)).transpose()?;
            let timestamp = old.as_ref().map_or(r.timestamp, |(_, ts)| r.timestamp.max(*ts));
            let old = old.map(|(v, _)| v);
            let mut agg = old.clone();
            if let (Some(v), Some(a)) = (&r.value.old, agg.take()) {
                agg = Some(sub(&r.key, v, a));
            } else {
                agg = old.clone();
            }
            if let Some(v) = &r.value.new {
                agg = Some(add(&r.key, v, agg));
            }
            match agg.as_ref().map(|a| encode_stamped(serde, a, timestamp, store)).transpose()?.flatten() {
                Some(b) => s.put(&kb, &b)?,
                None => {
                    s.delete(&kb)?;
                }
            }
            Ok((old, agg, timestamp))
        })?;
        ctx.forward(Record { key: r.key, value: Change { new: agg, old }, timestamp, headers: r.headers })
    }
}

impl<K: 'static, V: 'static> Consumed<K, V> {
    /// The same serdes reading null values as `None` (tombstones of a table).
    pub(crate) fn optional_values(self) -> Consumed<K, Option<V>> {
        Consumed {
            key: self.key,
            value: Arc::new(OptionSerde(self.value)),
            name: self.name,
            on_decode_error: self.on_decode_error,
        }
    }
}
