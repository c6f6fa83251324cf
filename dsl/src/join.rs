//! Joins: stream-stream (windowed), stream-table, stream-global-table and table-table, with the
//! semantics Kafka Streams documents.
//!
//! - **Stream-stream**: a record joins every record of the other stream with the same key whose
//!   timestamp lies within the join window of its own (`before` earlier to `after` later, seen
//!   from the left); both sides are kept in window stores for that long plus the grace period.
//!   The result's timestamp is the later of the two. Left and outer joins emit a record that
//!   found no partner (joined with `None`) only once its window has closed, so a partner arriving
//!   out of order within the grace period still joins and no spurious `None` result goes out
//!   first. Records later than their window's close are dropped and counted as late.
//! - **Stream-table**: each stream record looks up the table's current value for its key (the
//!   result keeps the stream record's timestamp); table updates produce no output.
//! - **Stream-global-table**: as stream-table, with a key the stream record maps to; the global
//!   table is complete in every instance, so no co-partitioning is needed.
//! - **Table-table**: an update on either side looks up the other side and forwards the change of
//!   the joined value (its timestamp the later of the two); the result is a table.
//!
//! Records without a key (their key serde writes null) cannot join and are dropped and counted.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use freshet_state::WindowOptions;

use crate::codec::{decode, encode, Change};
use crate::error::{Error, Result};
use crate::processor::{Data, Processor, ProcessorContext, Record};
use crate::serde::Serde;
use crate::store::StoreBuilder;
use crate::stream::{make, FnProcessor, Graph, KStream, Repartitioned};
use crate::table::{add_stateful, Getter, GlobalKTable, KTable, StoreReader};
use crate::topology::NodeKind;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The window of a stream-stream join: a left record at `t` joins right records in
/// `[t - before, t + after]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    before_ms: i64,
    after_ms: i64,
    grace_ms: i64,
}

impl JoinWindows {
    /// Records within `difference` of each other join; no grace.
    pub fn of_time_difference_with_no_grace(difference: Duration) -> Self {
        Self::of_time_difference_and_grace(difference, Duration::ZERO)
    }
    /// Records within `difference` of each other join; out-of-order records are accepted until
    /// `grace` after the window closes.
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        JoinWindows { before_ms: ms(difference), after_ms: ms(difference), grace_ms: ms(grace) }
    }
    /// How much earlier than a left record a right record may be.
    pub fn before(mut self, before: Duration) -> Self {
        self.before_ms = ms(before);
        self
    }
    /// How much later than a left record a right record may be.
    pub fn after(mut self, after: Duration) -> Self {
        self.after_ms = ms(after);
        self
    }
}

/// Serdes and names of a stream-stream join's stores: the key, the left and the right values.
pub struct StreamJoined<K, V1, V2> {
    key: Arc<dyn Serde<K>>,
    left: Arc<dyn Serde<V1>>,
    right: Arc<dyn Serde<V2>>,
    name: Option<String>,
    logging: bool,
}

impl<K, V1, V2> StreamJoined<K, V1, V2> {
    /// Keys, left values and right values written with these serdes.
    pub fn with(key: impl Serde<K>, left: impl Serde<V1>, right: impl Serde<V2>) -> Self {
        StreamJoined { key: Arc::new(key), left: Arc::new(left), right: Arc::new(right), name: None, logging: true }
    }
    /// Names the join's stores `<name>-this-join-store` and `<name>-other-join-store` (and its
    /// repartition topics, when needed, `<name>-left-repartition` and `<name>-right-repartition`).
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
    /// Whether the join's stores write changelogs (default on).
    pub fn with_logging(mut self, logging: bool) -> Self {
        self.logging = logging;
        self
    }
}

impl<K, V1, V2> std::fmt::Debug for StreamJoined<K, V1, V2> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamJoined").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Which records a join emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinKind {
    Inner,
    Left,
    Outer,
}

impl JoinKind {
    /// Whether a result is due when the left side has a value (`l`) and the right one (`r`).
    fn emits(self, l: bool, r: bool) -> bool {
        match self {
            JoinKind::Inner => l && r,
            JoinKind::Left => l,
            JoinKind::Outer => l || r,
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            JoinKind::Inner => "JOIN",
            JoinKind::Left => "LEFTJOIN",
            JoinKind::Outer => "OUTERJOIN",
        }
    }
}

type Joiner<V1, V2, VR> = Arc<dyn Fn(Option<&V1>, Option<&V2>) -> VR + Send + Sync>;

/// Maps a stream record to the key it looks up in a table.
type KeyMap<K, V, TK> = Arc<dyn Fn(&K, &V) -> TK + Send + Sync>;

/// The partition count a node's records are known to have at build time: that of the nearest
/// repartition topic above it that declares one.
fn known_partitions(graph: &Graph, node: usize) -> Option<u32> {
    let mut stack = vec![node];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n) {
            continue;
        }
        match &graph.nodes[n].kind {
            NodeKind::Source { topics } => {
                for t in topics {
                    if let Some(p) = graph.internal_topics.iter().find(|i| &i.name == t).and_then(|i| i.partitions) {
                        return Some(p);
                    }
                }
            }
            _ => stack.extend(graph.nodes[n].parents.iter().copied()),
        }
    }
    None
}

/// Records a build error when two inputs of a join are known to have different partition counts.
fn check_copartitioned(graph: &Rc<RefCell<Graph>>, left: usize, right: usize, what: &str) {
    let mut g = graph.borrow_mut();
    if let (Some(l), Some(r)) = (known_partitions(&g, left), known_partitions(&g, right)) {
        if l != r {
            let (ln, rn) = (g.nodes[left].name.clone(), g.nodes[right].name.clone());
            g.errors.push(format!(
                "{what} of {ln} and {rn}: the inputs are not co-partitioned ({l} and {r} partitions); \
                 repartition one side to {r} or {l} partitions"
            ));
        }
    }
}

/// A key-ordered store key for the records of an outer join still waiting for a partner:
/// timestamp (sign bit flipped, so it sorts), side (0 left, 1 right), then the record's key.
fn waiting_key(ts: i64, left: bool, key: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(9 + key.len());
    out.put_u64((ts as u64) ^ (1 << 63));
    out.put_u8(u8::from(!left));
    out.put_slice(key);
    out.freeze()
}

fn split_waiting_key(k: &[u8]) -> Result<(i64, bool, &[u8])> {
    if k.len() < 9 {
        return Err(Error::Process("an outer join store key shorter than its timestamp and side".into()));
    }
    let ts = (u64::from_be_bytes(k[..8].try_into().expect("8 bytes")) ^ (1 << 63)) as i64;
    Ok((ts, k[8] == 0, &k[9..]))
}

/// Values waiting under one outer-join key: each as its length (4 bytes) and bytes.
fn push_value(list: Option<Bytes>, value: &[u8]) -> Bytes {
    let mut out = BytesMut::from(list.as_deref().unwrap_or_default());
    out.put_u32(value.len() as u32);
    out.put_slice(value);
    out.freeze()
}

fn values_of(list: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = list;
    while !rest.is_empty() {
        let len = rest.get(..4).ok_or_else(|| Error::Process("an outer join store value cut short".into()))?;
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        out.push(rest.get(4..4 + len).ok_or_else(|| Error::Process("an outer join store value cut short".into()))?);
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// One side of a stream-stream join: keeps its records, joins them with the other side's.
struct WindowJoinSide<K, V1, V2, VR> {
    left_side: bool,
    this_store: String,
    other_store: String,
    /// The store of records that found no partner yet (left and outer joins).
    waiting: Option<String>,
    key: Arc<dyn Serde<K>>,
    left: Arc<dyn Serde<V1>>,
    right: Arc<dyn Serde<V2>>,
    joiner: Joiner<V1, V2, VR>,
    windows: JoinWindows,
    kind: JoinKind,
}

impl<K: Data, V1: Data, V2: Data, VR: Data> WindowJoinSide<K, V1, V2, VR> {
    fn fresh(&self) -> Self {
        WindowJoinSide {
            left_side: self.left_side,
            this_store: self.this_store.clone(),
            other_store: self.other_store.clone(),
            waiting: self.waiting.clone(),
            key: self.key.clone(),
            left: self.left.clone(),
            right: self.right.clone(),
            joiner: self.joiner.clone(),
            windows: self.windows,
            kind: self.kind,
        }
    }

    /// How far past a record of this side (`left`: the left side) its window reaches.
    fn reach(&self, left: bool) -> i64 {
        if left {
            self.windows.after_ms
        } else {
            self.windows.before_ms
        }
    }

    /// The result for a left and a right value (either may be missing).
    fn result(&self, l: Option<&Bytes>, r: Option<&Bytes>, store: &str) -> Result<VR> {
        let l = l.map(|b| decode(&self.left, b, "value", store)).transpose()?;
        let r = r.map(|b| decode(&self.right, b, "value", store)).transpose()?;
        Ok((self.joiner)(l.as_ref(), r.as_ref()))
    }

    fn process_bytes<T>(&mut self, r: Record<K, T>, vb: Bytes, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<()> {
        let Some(kb) = encode(&self.key, &r.key, "key", &self.this_store)? else {
            ctx.count_dropped();
            return Ok(());
        };
        let t = r.timestamp;
        let stream_time = ctx.stream_time_ms();
        let w = self.windows;
        if t.saturating_add(self.reach(self.left_side)).saturating_add(w.grace_ms) < stream_time {
            tracing::debug!(store = %self.this_store, timestamp = t, stream_time, "skipping a join record whose window has closed");
            ctx.count_late();
            return Ok(());
        }
        ctx.window_store::<Bytes, Bytes>(&self.this_store)?.put(&kb, Some(&vb), t)?;
        // The other side's records in this record's window.
        let (from, to) = if self.left_side {
            (t.saturating_sub(w.before_ms), t.saturating_add(w.after_ms))
        } else {
            (t.saturating_sub(w.after_ms), t.saturating_add(w.before_ms))
        };
        let partners: Vec<(i64, Bytes)> = ctx
            .window_store::<Bytes, Bytes>(&self.other_store)?
            .fetch_range(&kb, from, to)?
            .collect::<freshet_state::Result<_>>()?;
        let mut results = Vec::with_capacity(partners.len());
        let partner_waits = self.kind.emits(!self.left_side, self.left_side);
        for (ot, ob) in &partners {
            let (l, rr) = if self.left_side { (&vb, ob) } else { (ob, &vb) };
            results.push((self.result(Some(l), Some(rr), &self.this_store)?, t.max(*ot)));
            // A record of the side that waits for partners has now found one.
            if let Some(waiting) = self.waiting.as_ref().filter(|_| partner_waits) {
                let wk = waiting_key(*ot, !self.left_side, &kb);
                ctx.with_kv(waiting, |s| {
                    if s.get(&wk)?.is_some() {
                        s.delete(&wk)?;
                    }
                    Ok(())
                })?;
            }
        }
        let needs_partner = self.kind.emits(self.left_side, !self.left_side);
        if partners.is_empty() && needs_partner {
            if let Some(waiting) = &self.waiting {
                let wk = waiting_key(t, self.left_side, &kb);
                ctx.with_kv(waiting, |s| {
                    let list = s.get(&wk)?;
                    Ok(s.put(&wk, &push_value(list, &vb))?)
                })?;
            }
        }
        for (value, timestamp) in results {
            ctx.forward(Record { key: r.key.clone(), value, timestamp, headers: r.headers.clone() })?;
        }
        self.emit_expired(ctx)
    }

    /// Emits, joined with nothing, the waiting records whose windows have closed.
    fn emit_expired(&self, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<()> {
        let Some(waiting) = &self.waiting else { return Ok(()) };
        let stream_time = ctx.stream_time_ms();
        let grace = self.windows.grace_ms;
        let least_reach = self.windows.after_ms.min(self.windows.before_ms);
        let expired: Vec<(Bytes, Bytes)> = ctx.with_kv(waiting, |s| {
            let mut out = Vec::new();
            for entry in s.all()? {
                let (k, v) = entry?;
                let (ts, left, _) = split_waiting_key(&k)?;
                if ts.saturating_add(least_reach).saturating_add(grace) >= stream_time {
                    break;
                }
                if ts.saturating_add(self.reach(left)).saturating_add(grace) < stream_time {
                    out.push((k, v));
                }
            }
            Ok(out)
        })?;
        for (k, list) in expired {
            ctx.with_kv(waiting, |s| s.delete(&k).map(|_| ()).map_err(Into::into))?;
            let (ts, left, kb) = split_waiting_key(&k)?;
            let key = decode(&self.key, kb, "key", waiting)?;
            for vb in values_of(&list)? {
                let vb = Bytes::copy_from_slice(vb);
                let value =
                    if left { self.result(Some(&vb), None, waiting)? } else { self.result(None, Some(&vb), waiting)? };
                ctx.forward(Record { key: key.clone(), value, timestamp: ts, headers: Vec::new() })?;
            }
        }
        Ok(())
    }
}

/// The left side's node.
struct LeftJoinNode<K, V1, V2, VR>(WindowJoinSide<K, V1, V2, VR>);
/// The right side's node.
struct RightJoinNode<K, V1, V2, VR>(WindowJoinSide<K, V1, V2, VR>);

impl<K: Data, V1: Data, V2: Data, VR: Data> Processor<K, V1, K, VR> for LeftJoinNode<K, V1, V2, VR> {
    fn process(&mut self, r: Record<K, V1>, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<()> {
        let Some(vb) = encode(&self.0.left, &r.value, "value", &self.0.this_store)? else { return Ok(()) };
        self.0.process_bytes(r, vb, ctx)
    }
}

impl<K: Data, V1: Data, V2: Data, VR: Data> Processor<K, V2, K, VR> for RightJoinNode<K, V1, V2, VR> {
    fn process(&mut self, r: Record<K, V2>, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<()> {
        let Some(vb) = encode(&self.0.right, &r.value, "value", &self.0.this_store)? else { return Ok(()) };
        self.0.process_bytes(r, vb, ctx)
    }
}

impl<K: Data, V1: Data> KStream<K, V1> {
    /// This stream and `other` as key-partitioned inputs of a join: a side whose keys may have
    /// changed goes through a repartition topic first.
    fn copartitioned<V2: Data>(
        &self,
        other: &KStream<K, V2>,
        base: &str,
        key: &Arc<dyn Serde<K>>,
        left: &Arc<dyn Serde<V1>>,
        right: &Arc<dyn Serde<V2>>,
    ) -> (KStream<K, V1>, KStream<K, V2>) {
        let side = |changed: bool, name: String| changed.then_some(name);
        let l = match side(self.key_changed, format!("{base}-left")) {
            Some(name) => self.repartition(Repartitioned {
                key: key.clone(),
                value: left.clone(),
                name: Some(name),
                partitions: None,
            }),
            None => self.clone(),
        };
        let r = match side(other.key_changed, format!("{base}-right")) {
            Some(name) => other.repartition(Repartitioned {
                key: key.clone(),
                value: right.clone(),
                name: Some(name),
                partitions: None,
            }),
            None => other.clone(),
        };
        (l, r)
    }

    fn window_join<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: Joiner<V1, V2, VR>,
        windows: JoinWindows,
        joined: StreamJoined<K, V1, V2>,
        kind: JoinKind,
    ) -> KStream<K, VR> {
        let graph = self.graph.clone();
        let base =
            joined.name.clone().unwrap_or_else(|| graph.borrow().next_name(&format!("KSTREAM-{}", kind.prefix())));
        let (left, right) = self.copartitioned(other, &base, &joined.key, &joined.left, &joined.right);
        check_copartitioned(&graph, left.node, right.node, "a stream-stream join");
        if windows.before_ms < 0 || windows.after_ms < 0 || windows.before_ms.saturating_add(windows.after_ms) < 0 {
            let e = format!("join of {left:?} and {right:?}: a join window cannot be negative");
            graph.borrow_mut().errors.push(e);
        }
        // Unnamed stores are named after the nodes that keep them, as in Kafka Streams.
        let n = graph.borrow().next_index();
        let (this_store, other_store) = match &joined.name {
            Some(name) => (format!("{name}-this-join-store"), format!("{name}-other-join-store")),
            None => (format!("KSTREAM-JOINTHIS-{n:010}-store"), format!("KSTREAM-JOINOTHER-{:010}-store", n + 1)),
        };
        let span = windows.before_ms.saturating_add(windows.after_ms);
        let retention = span.saturating_add(windows.grace_ms).saturating_add(1);
        let options = WindowOptions { retention_ms: retention, window_size_ms: span.max(1), retain_duplicates: true };
        let mut stores = vec![this_store.clone(), other_store.clone()];
        {
            let mut g = graph.borrow_mut();
            for s in &stores {
                g.stores.push(StoreBuilder::raw_window(s, options).with_logging(joined.logging).with_caching(false));
            }
        }
        let waiting = (kind != JoinKind::Inner).then(|| match &joined.name {
            Some(name) => format!("{name}-outer-shared-join-store"),
            None => format!("KSTREAM-OUTERSHARED-{n:010}-store"),
        });
        if let Some(w) = &waiting {
            graph
                .borrow_mut()
                .stores
                .push(StoreBuilder::raw_key_value(w).with_logging(joined.logging).with_caching(false));
            stores.push(w.clone());
        }
        let side = |left_side: bool| WindowJoinSide {
            left_side,
            this_store: if left_side { this_store.clone() } else { other_store.clone() },
            other_store: if left_side { other_store.clone() } else { this_store.clone() },
            waiting: waiting.clone(),
            key: joined.key.clone(),
            left: joined.left.clone(),
            right: joined.right.clone(),
            joiner: joiner.clone(),
            windows,
            kind,
        };
        let (l, r) = (side(true), side(false));
        let this = add_stateful(
            &graph,
            "KSTREAM-JOINTHIS",
            &[left.node],
            &stores,
            make::<K, V1, K, VR, _>(move || LeftJoinNode(l.fresh())),
        );
        let that = add_stateful(
            &graph,
            "KSTREAM-JOINOTHER",
            &[right.node],
            &stores,
            make::<K, V2, K, VR, _>(move || RightJoinNode(r.fresh())),
        );
        let merge = make::<K, VR, K, VR, _>(|| {
            FnProcessor(|r: Record<K, VR>, ctx: &mut ProcessorContext<'_, K, VR>| ctx.forward(r))
        });
        let node = add_stateful(&graph, "KSTREAM-MERGE", &[this, that], &[], merge);
        KStream::at(&graph, node, false)
    }

    /// Joins records of this stream and `other` with the same key within `windows` of each
    /// other: `joiner(left, right)` for every pair.
    pub fn join<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V1, &V2) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V1, V2>,
    ) -> KStream<K, VR> {
        let j: Joiner<V1, V2, VR> =
            Arc::new(move |l, r| joiner(l.expect("inner join: left"), r.expect("inner join: right")));
        self.window_join(other, j, windows, joined, JoinKind::Inner)
    }

    /// As [`KStream::join`], and each left record that finds no partner within its window is
    /// joined with `None` once the window closes.
    pub fn left_join<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V1, Option<&V2>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V1, V2>,
    ) -> KStream<K, VR> {
        let j: Joiner<V1, V2, VR> = Arc::new(move |l, r| joiner(l.expect("left join: left"), r));
        self.window_join(other, j, windows, joined, JoinKind::Left)
    }

    /// As [`KStream::left_join`], for records of both sides.
    pub fn outer_join<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(Option<&V1>, Option<&V2>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V1, V2>,
    ) -> KStream<K, VR> {
        self.window_join(other, Arc::new(joiner), windows, joined, JoinKind::Outer)
    }

    fn table_join<V2: Data, VR: Data>(
        &self,
        table: &KTable<K, V2>,
        joiner: Joiner<V1, V2, VR>,
        value: Arc<dyn Serde<V1>>,
        kind: JoinKind,
    ) -> KStream<K, VR> {
        let graph = self.graph.clone();
        let stream = if self.key_changed {
            let name = graph.borrow().next_name(&format!("KSTREAM-{}", kind.prefix()));
            self.repartition(Repartitioned { key: table.key.clone(), value, name: Some(name), partitions: None })
        } else {
            self.clone()
        };
        check_copartitioned(&graph, stream.node, table.node, "a stream-table join");
        let getter = table.getter.clone();
        let key = table.key.clone();
        let prefix = format!("KSTREAM-{}", kind.prefix());
        let make = make::<K, V1, K, VR, _>(move || LookupJoin {
            getter: getter.clone(),
            map: Arc::new(|k: &K, _: &V1| k.clone()),
            joiner: joiner.clone(),
            kind,
            key: Some(key.clone()),
        });
        let node = add_stateful(&graph, &prefix, &[stream.node], &table.getter.stores, make);
        KStream::at(&graph, node, false)
    }

    /// Joins each record with the table's current value for its key (records whose key the
    /// table lacks produce nothing).
    pub fn join_table<V2: Data, VR: Data>(
        &self,
        table: &KTable<K, V2>,
        joiner: impl Fn(&V1, &V2) -> VR + Send + Sync + 'static,
        value: impl Serde<V1>,
    ) -> KStream<K, VR> {
        let j: Joiner<V1, V2, VR> = Arc::new(move |l, r| joiner(l.expect("stream"), r.expect("inner join: table")));
        self.table_join(table, j, Arc::new(value), JoinKind::Inner)
    }

    /// Joins each record with the table's current value for its key, or `None`.
    pub fn left_join_table<V2: Data, VR: Data>(
        &self,
        table: &KTable<K, V2>,
        joiner: impl Fn(&V1, Option<&V2>) -> VR + Send + Sync + 'static,
        value: impl Serde<V1>,
    ) -> KStream<K, VR> {
        let j: Joiner<V1, V2, VR> = Arc::new(move |l, r| joiner(l.expect("stream"), r));
        self.table_join(table, j, Arc::new(value), JoinKind::Left)
    }

    fn global_join<GK: Data, V2: Data, VR: Data>(
        &self,
        table: &GlobalKTable<GK, V2>,
        map: impl Fn(&K, &V1) -> GK + Send + Sync + 'static,
        joiner: Joiner<V1, V2, VR>,
        kind: JoinKind,
    ) -> KStream<K, VR> {
        let getter = table.getter.clone();
        let map: KeyMap<K, V1, GK> = Arc::new(map);
        let make = make::<K, V1, K, VR, _>(move || LookupJoin {
            getter: getter.clone(),
            map: map.clone(),
            joiner: joiner.clone(),
            kind,
            key: None,
        });
        let prefix = format!("KSTREAM-{}", kind.prefix());
        let node = add_stateful(&self.graph, &prefix, &[self.node], &table.getter.stores, make);
        KStream::at(&self.graph, node, self.key_changed)
    }

    /// Joins each record with the global table's value for the key `map` gives it (records
    /// whose key the table lacks produce nothing).
    pub fn join_global<GK: Data, V2: Data, VR: Data>(
        &self,
        table: &GlobalKTable<GK, V2>,
        map: impl Fn(&K, &V1) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V1, &V2) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        let j: Joiner<V1, V2, VR> = Arc::new(move |l, r| joiner(l.expect("stream"), r.expect("inner join: table")));
        self.global_join(table, map, j, JoinKind::Inner)
    }

    /// Joins each record with the global table's value for the key `map` gives it, or `None`.
    pub fn left_join_global<GK: Data, V2: Data, VR: Data>(
        &self,
        table: &GlobalKTable<GK, V2>,
        map: impl Fn(&K, &V1) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V1, Option<&V2>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        let j: Joiner<V1, V2, VR> = Arc::new(move |l, r| joiner(l.expect("stream"), r));
        self.global_join(table, map, j, JoinKind::Left)
    }
}

/// Joins stream records with a table by lookup.
struct LookupJoin<K, V1, TK, V2, VR> {
    getter: Getter<TK, V2>,
    map: KeyMap<K, V1, TK>,
    joiner: Joiner<V1, V2, VR>,
    kind: JoinKind,
    /// The stream's key serde, to drop records without a key (stream-table joins).
    key: Option<Arc<dyn Serde<K>>>,
}

impl<K: Data, V1: Data, TK: Data, V2: Data, VR: Data> Processor<K, V1, K, VR> for LookupJoin<K, V1, TK, V2, VR> {
    fn process(&mut self, r: Record<K, V1>, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<()> {
        if let Some(key) = &self.key {
            if encode(key, &r.key, "key", "stream-table join")?.is_none() {
                ctx.count_dropped();
                return Ok(());
            }
        }
        let table_key = (self.map)(&r.key, &r.value);
        let found = (self.getter.get)(ctx as &mut dyn StoreReader, &table_key)?;
        if !self.kind.emits(true, found.is_some()) {
            return Ok(());
        }
        let value = (self.joiner)(Some(&r.value), found.as_ref().map(|(v, _)| v));
        ctx.forward(Record { key: r.key, value, timestamp: r.timestamp, headers: r.headers })
    }
}

impl<K: Data, V1: Data> KTable<K, V1> {
    fn table_table<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: Joiner<V1, V2, VR>,
        kind: JoinKind,
    ) -> KTable<K, VR> {
        let graph = self.graph.clone();
        check_copartitioned(&graph, self.node, other.node, "a table-table join");
        let (lg, rg) = (self.getter.clone(), other.getter.clone());
        let j = joiner.clone();
        let this = {
            let (other_getter, joiner) = (rg.clone(), joiner.clone());
            let make = make::<K, Change<V1>, K, Change<VR>, _>(move || {
                TableJoinLeft(TableJoinSide { other: other_getter.clone(), joiner: joiner.clone(), kind })
            });
            add_stateful(&graph, "KTABLE-JOINTHIS", &[self.node], &rg.stores, make)
        };
        let that = {
            let (other_getter, joiner) = (lg.clone(), joiner.clone());
            let make = make::<K, Change<V2>, K, Change<VR>, _>(move || {
                TableJoinRight(TableJoinSide { other: other_getter.clone(), joiner: joiner.clone(), kind })
            });
            add_stateful(&graph, "KTABLE-JOINOTHER", &[other.node], &lg.stores, make)
        };
        let merge = make::<K, Change<VR>, K, Change<VR>, _>(|| {
            FnProcessor(|r: Record<K, Change<VR>>, ctx: &mut ProcessorContext<'_, K, Change<VR>>| ctx.forward(r))
        });
        let node = add_stateful(&graph, "KTABLE-MERGE", &[this, that], &[], merge);
        let mut stores = lg.stores.clone();
        stores.extend(rg.stores.iter().cloned());
        let getter = Getter {
            stores,
            get: Arc::new(move |reader: &mut dyn StoreReader, k: &K| {
                let l = (lg.get)(reader, k)?;
                let r = (rg.get)(reader, k)?;
                if !kind.emits(l.is_some(), r.is_some()) {
                    return Ok(None);
                }
                let ts = l.as_ref().map_or(i64::MIN, |x| x.1).max(r.as_ref().map_or(i64::MIN, |x| x.1));
                Ok(Some((j(l.as_ref().map(|x| &x.0), r.as_ref().map(|x| &x.0)), ts)))
            }),
        };
        KTable { graph: graph.clone(), node, key: self.key.clone(), getter }
    }

    /// Joins this table with `other` on the key: a key has a result while both sides hold it.
    pub fn join<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(&V1, &V2) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        let j: Joiner<V1, V2, VR> =
            Arc::new(move |l, r| joiner(l.expect("inner join: left"), r.expect("inner join: right")));
        self.table_table(other, j, JoinKind::Inner)
    }

    /// A result for every key of this table, joined with `other`'s value or `None`.
    pub fn left_join<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(&V1, Option<&V2>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        let j: Joiner<V1, V2, VR> = Arc::new(move |l, r| joiner(l.expect("left join: left"), r));
        self.table_table(other, j, JoinKind::Left)
    }

    /// A result for every key either table holds.
    pub fn outer_join<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(Option<&V1>, Option<&V2>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_table(other, Arc::new(joiner), JoinKind::Outer)
    }
}

/// One side's node of a table-table join: looks up the other side's value.
struct TableJoinSide<K, V1, V2, VR, G> {
    other: Getter<K, G>,
    joiner: Joiner<V1, V2, VR>,
    kind: JoinKind,
}

impl<K: Data, V1: Data, V2: Data, VR: Data, G> TableJoinSide<K, V1, V2, VR, G> {
    /// Forwards the change of the joined value, given the left and right values before and
    /// after (`other`: the looked-up side's value and timestamp).
    fn forward(
        &self,
        r: Record<K, ()>,
        (l_new, l_old): (Option<&V1>, Option<&V1>),
        (r_new, r_old): (Option<&V2>, Option<&V2>),
        other_ts: Option<i64>,
        ctx: &mut ProcessorContext<'_, K, Change<VR>>,
    ) -> Result<()> {
        let joined =
            |l: Option<&V1>, r: Option<&V2>| self.kind.emits(l.is_some(), r.is_some()).then(|| (self.joiner)(l, r));
        let new = joined(l_new, r_new);
        let old = joined(l_old, r_old);
        if new.is_none() && old.is_none() {
            return Ok(());
        }
        let timestamp = other_ts.map_or(r.timestamp, |t| r.timestamp.max(t));
        ctx.forward(Record { key: r.key, value: Change { new, old }, timestamp, headers: r.headers })
    }
}

/// The left table's node.
struct TableJoinLeft<K, V1, V2, VR>(TableJoinSide<K, V1, V2, VR, V2>);
/// The right table's node.
struct TableJoinRight<K, V1, V2, VR>(TableJoinSide<K, V1, V2, VR, V1>);

impl<K: Data, V1: Data, V2: Data, VR: Data> Processor<K, Change<V1>, K, Change<VR>> for TableJoinLeft<K, V1, V2, VR> {
    fn process(&mut self, r: Record<K, Change<V1>>, ctx: &mut ProcessorContext<'_, K, Change<VR>>) -> Result<()> {
        let other = (self.0.other.get)(ctx as &mut dyn StoreReader, &r.key)?;
        let ov = other.as_ref().map(|(v, _)| v);
        let change = Change { new: r.value.new, old: r.value.old };
        let at = Record { key: r.key, value: (), timestamp: r.timestamp, headers: r.headers };
        self.0.forward(at, (change.new.as_ref(), change.old.as_ref()), (ov, ov), other.as_ref().map(|o| o.1), ctx)
    }
}

impl<K: Data, V1: Data, V2: Data, VR: Data> Processor<K, Change<V2>, K, Change<VR>> for TableJoinRight<K, V1, V2, VR> {
    fn process(&mut self, r: Record<K, Change<V2>>, ctx: &mut ProcessorContext<'_, K, Change<VR>>) -> Result<()> {
        let other = (self.0.other.get)(ctx as &mut dyn StoreReader, &r.key)?;
        let lv = other.as_ref().map(|(v, _)| v);
        let change = Change { new: r.value.new, old: r.value.old };
        let at = Record { key: r.key, value: (), timestamp: r.timestamp, headers: r.headers };
        self.0.forward(at, (lv, lv), (change.new.as_ref(), change.old.as_ref()), other.as_ref().map(|o| o.1), ctx)
    }
}
