//! Windowed aggregation: tumbling, hopping, sliding and session windows, each with a grace period.
//!
//! Each windowed aggregation keeps its own stream time: the largest timestamp it has seen. A
//! window closes once that time passes the window's end plus the grace period; a record that
//! arrives for a closed window is *late*: it is dropped, counted in the task's `late_records`,
//! and handed to the operator's late-record callback if one is set. Up to the close, out-of-order
//! records update their windows as any other.
//!
//! By default every update of a window is forwarded at once ([`EmitStrategy::OnWindowUpdate`]);
//! with [`EmitStrategy::OnWindowClose`] nothing is forwarded until the window closes, and then
//! its final value once (as Kafka Streams' `EmitStrategy.onWindowClose()`). How far results were
//! emitted is a mark in a small store of its own (`<store>-emitted`, changelogged), so a restart
//! does not emit them again; which windows wait to be emitted is kept in memory (their starts and
//! keys, rebuilt from the store past the mark), so a close reads only its own windows. After a
//! restart, windows that closed while the task was away are emitted when the next record comes;
//! after a crash, results emitted since the last commit are emitted again (at least once, never
//! lost).
//!
//! Windows are Kafka Streams': time windows are `[start, end)` with starts aligned to the epoch;
//! sliding windows are `[start, start + time difference]`, both ends included, one for each set of
//! records that lie within the time difference of each other; session windows span a key's
//! records that lie within the inactivity gap of each other, `[first, last]`. Records with a
//! negative timestamp cannot be windowed and are dropped (counted in `dropped_records`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use freshet_state::{WindowOptions, Windowed};

use crate::codec::{decode, decode_stamped, encode, encode_stamped, Change};
use crate::error::Result;
use crate::processor::{Data, Processor, ProcessorContext, Record};
use crate::serde::Serde;
use crate::store::StoreBuilder;
use crate::stream::make;
use crate::table::{add_stateful, key_or_drop, AddFn, Getter, KGroupedStream, KTable, Materialized, StoreReader};

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Fixed-size windows: tumbling (advance = size) or hopping (advance < size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    size_ms: i64,
    advance_ms: i64,
    grace_ms: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size`; records are late as soon as their window ends.
    pub fn of_size_with_no_grace(size: Duration) -> Self {
        Self::of_size_and_grace(size, Duration::ZERO)
    }
    /// Tumbling windows of `size`, accepting out-of-order records until `grace` after a window's
    /// end.
    pub fn of_size_and_grace(size: Duration, grace: Duration) -> Self {
        TimeWindows { size_ms: ms(size), advance_ms: ms(size), grace_ms: ms(grace) }
    }
    /// Hopping windows: a new window starts every `advance` (at most the size).
    pub fn advance_by(mut self, advance: Duration) -> Self {
        self.advance_ms = ms(advance);
        self
    }

    /// The windows' size.
    pub fn size(&self) -> Duration {
        Duration::from_millis(self.size_ms.max(0) as u64)
    }
    /// How far apart windows start (the size, for tumbling windows).
    pub fn advance(&self) -> Duration {
        Duration::from_millis(self.advance_ms.max(0) as u64)
    }
    /// How long after its end a window still accepts out-of-order records.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms.max(0) as u64)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.size_ms <= 0 {
            return Err("the window size must be at least 1 ms".into());
        }
        if self.advance_ms <= 0 || self.advance_ms > self.size_ms {
            return Err(format!(
                "the advance ({} ms) must be between 1 ms and the size ({} ms)",
                self.advance_ms, self.size_ms
            ));
        }
        Ok(())
    }

    /// Starts of the windows that hold `ts` (>= 0), oldest first.
    fn starts_for(&self, ts: i64) -> impl Iterator<Item = i64> {
        let first = (ts - self.size_ms + self.advance_ms).max(0) / self.advance_ms * self.advance_ms;
        let advance = self.advance_ms;
        (0..).map(move |i| first + i * advance).take_while(move |&s| s <= ts)
    }
}

/// Sliding windows: every window of length `time difference` (ends included) that a distinct set
/// of records falls into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    difference_ms: i64,
    grace_ms: i64,
}

impl SlidingWindows {
    /// Records within `difference` of each other share windows; no grace.
    pub fn of_time_difference_with_no_grace(difference: Duration) -> Self {
        Self::of_time_difference_and_grace(difference, Duration::ZERO)
    }
    /// Records within `difference` of each other share windows; late by `grace` at most.
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        SlidingWindows { difference_ms: ms(difference), grace_ms: ms(grace) }
    }
}

/// Session windows: a key's records within `gap` of each other form one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    gap_ms: i64,
    grace_ms: i64,
}

impl SessionWindows {
    /// Sessions split by an inactivity gap; no grace.
    pub fn of_inactivity_gap_with_no_grace(gap: Duration) -> Self {
        Self::of_inactivity_gap_and_grace(gap, Duration::ZERO)
    }
    /// Sessions split by an inactivity gap, accepting records up to `grace` late.
    pub fn of_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> Self {
        SessionWindows { gap_ms: ms(gap), grace_ms: ms(grace) }
    }
}

/// When a windowed aggregation forwards results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmitStrategy {
    /// Every update, as it happens (the default).
    #[default]
    OnWindowUpdate,
    /// Each window's final result, once, when the window closes (end plus grace).
    OnWindowClose,
}

/// A record a windowed aggregation dropped because its window had closed.
#[derive(Debug)]
pub struct LateRecord<'a, K, V> {
    /// Its key.
    pub key: &'a K,
    /// Its value.
    pub value: &'a V,
    /// Its timestamp.
    pub timestamp: i64,
    /// The window it was late for: start and end.
    pub window: (i64, i64),
    /// The operator's close time when it arrived: stream time minus grace (minus the gap, for
    /// sessions); windows ending before it are closed.
    pub close_time: i64,
}

type LateFn<K, V> = Arc<dyn Fn(&LateRecord<'_, K, V>) + Send + Sync>;

/// How windows are laid out, for the processor.
#[derive(Debug, Clone, Copy)]
enum Layout {
    Time(TimeWindows),
    Sliding(SlidingWindows),
}

impl Layout {
    fn grace_ms(&self) -> i64 {
        match self {
            Layout::Time(w) => w.grace_ms,
            Layout::Sliding(w) => w.grace_ms,
        }
    }
    /// End minus start of a window (exclusive end for time windows, inclusive for sliding):
    /// a window is closed once `start + span <= close time`.
    fn span_ms(&self) -> i64 {
        match self {
            Layout::Time(w) => w.size_ms,
            Layout::Sliding(w) => w.difference_ms,
        }
    }
}

/// A grouped stream windowed by time, ready to aggregate (see [`KGroupedStream::windowed_by`]).
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    layout: Layout,
    emit: EmitStrategy,
    on_late: Option<LateFn<K, V>>,
}

impl<K, V> std::fmt::Debug for TimeWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeWindowedKStream")
            .field("layout", &self.layout)
            .field("emit", &self.emit)
            .finish_non_exhaustive()
    }
}

/// A grouped stream windowed into sessions (see [`KGroupedStream::windowed_by_session`]).
pub struct SessionWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SessionWindows,
    emit: EmitStrategy,
    on_late: Option<LateFn<K, V>>,
}

impl<K, V> std::fmt::Debug for SessionWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWindowedKStream")
            .field("windows", &self.windows)
            .field("emit", &self.emit)
            .finish_non_exhaustive()
    }
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    /// Aggregates per tumbling or hopping window.
    pub fn windowed_by(&self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        if let Err(e) = windows.check() {
            let e = format!("windowed_by after {:?}: {e}", self.stream);
            self.stream.graph.borrow_mut().errors.push(e);
        }
        TimeWindowedKStream {
            grouped: self.clone(),
            layout: Layout::Time(windows),
            emit: EmitStrategy::default(),
            on_late: None,
        }
    }

    /// Aggregates per sliding window.
    pub fn windowed_by_sliding(&self, windows: SlidingWindows) -> TimeWindowedKStream<K, V> {
        if windows.difference_ms <= 0 {
            let e = format!("windowed_by_sliding after {:?}: the time difference must be at least 1 ms", self.stream);
            self.stream.graph.borrow_mut().errors.push(e);
        }
        TimeWindowedKStream {
            grouped: self.clone(),
            layout: Layout::Sliding(windows),
            emit: EmitStrategy::default(),
            on_late: None,
        }
    }

    /// Aggregates per session.
    pub fn windowed_by_session(&self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        if windows.gap_ms <= 0 {
            let e = format!("windowed_by_session after {:?}: the inactivity gap must be at least 1 ms", self.stream);
            self.stream.graph.borrow_mut().errors.push(e);
        }
        SessionWindowedKStream { grouped: self.clone(), windows, emit: EmitStrategy::default(), on_late: None }
    }
}

impl<K, V> Clone for KGroupedStream<K, V> {
    fn clone(&self) -> Self {
        KGroupedStream { stream: self.stream.clone(), grouped: self.grouped.clone() }
    }
}

/// `Windowed<K>` as bytes: the key's bytes, then start and end (8 bytes each, big-endian).
pub struct WindowedSerde<K>(Arc<dyn Serde<K>>);

impl<K: 'static> std::fmt::Debug for WindowedSerde<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WindowedSerde({})", self.0.name())
    }
}

impl<K> WindowedSerde<K> {
    /// Windowed keys whose keys `inner` encodes.
    pub fn new(inner: impl Serde<K>) -> Self {
        WindowedSerde(Arc::new(inner))
    }
    pub(crate) fn of(inner: Arc<dyn Serde<K>>) -> Self {
        WindowedSerde(inner)
    }
}

impl<K: 'static> Serde<Windowed<K>> for WindowedSerde<K> {
    fn serialize(&self, w: &Windowed<K>) -> std::result::Result<Option<Bytes>, String> {
        let key = self.0.serialize(&w.key)?.unwrap_or_default();
        let mut out = Vec::with_capacity(key.len() + 16);
        out.extend_from_slice(&key);
        out.extend_from_slice(&w.start.to_be_bytes());
        out.extend_from_slice(&w.end.to_be_bytes());
        Ok(Some(Bytes::from(out)))
    }
    fn deserialize(&self, data: Option<&[u8]>) -> std::result::Result<Windowed<K>, String> {
        let data = data.ok_or("a null where a windowed key was expected")?;
        if data.len() < 16 {
            return Err(format!("a windowed key of {} bytes, under the 16 of its window", data.len()));
        }
        let (key, times) = data.split_at(data.len() - 16);
        let start = i64::from_be_bytes(times[..8].try_into().expect("8 bytes"));
        let end = i64::from_be_bytes(times[8..].try_into().expect("8 bytes"));
        Ok(Windowed { key: self.0.deserialize(Some(key))?, start, end })
    }
    fn name(&self) -> String {
        format!("Windowed<{}>", self.0.name())
    }
}

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
    /// When results are forwarded (default: every update).
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    /// Calls `f` for every record dropped as late (besides counting it).
    pub fn on_late_record(mut self, f: impl Fn(&LateRecord<'_, K, V>) + Send + Sync + 'static) -> Self {
        self.on_late = Some(Arc::new(f));
        self
    }

    fn aggregate_with<A: Data>(
        &self,
        prefix: &str,
        materialized: Materialized,
        serde: Arc<dyn Serde<A>>,
        add: AddFn<K, V, A>,
    ) -> KTable<Windowed<K>, A> {
        let graph = &self.grouped.stream.graph;
        let store = materialized.store(graph, &format!("{prefix}-STATE-STORE"));
        let input = self.grouped.partitioned(&store);
        let span = self.layout.span_ms();
        let least = span.saturating_add(self.layout.grace_ms()).saturating_add(1);
        let retention = materialized.retention_ms.unwrap_or(least);
        if retention < least {
            graph.borrow_mut().errors.push(format!(
                "store {store}: a retention of {retention} ms is under the window span plus grace ({least} ms)"
            ));
        }
        let size = match self.layout {
            Layout::Time(w) => w.size_ms,
            Layout::Sliding(w) => w.difference_ms,
        };
        let mut stores = vec![store.clone()];
        let options = WindowOptions { retention_ms: retention, window_size_ms: size, retain_duplicates: false };
        graph.borrow_mut().stores.push(materialized.apply(StoreBuilder::raw_window(&store, options)));
        let records = format!("{store}-records");
        if let Layout::Sliding(w) = self.layout {
            // Sliding windows are built from the records they hold: kept long enough to build
            // the windows on either side of any record still within grace.
            let retention = retention.max(2 * w.difference_ms + w.grace_ms + 2);
            let options = WindowOptions { retention_ms: retention, window_size_ms: 1, retain_duplicates: true };
            graph.borrow_mut().stores.push(materialized.apply(StoreBuilder::raw_window(&records, options)));
            stores.push(records.clone());
        }
        let emitted = emitted_store(graph, &materialized, &store, self.emit, &mut stores);
        let processor = WindowAggregate {
            store: store.clone(),
            records,
            emitted,
            key: self.grouped.grouped.key.clone(),
            value: self.grouped.grouped.value.clone(),
            serde: serde.clone(),
            add,
            layout: self.layout,
            emit_final: self.emit == EmitStrategy::OnWindowClose,
            on_late: self.on_late.clone(),
            observed: i64::MIN,
            pending: None,
        };
        let make = make::<K, V, Windowed<K>, Change<A>, _>(move || processor.fresh());
        let node = add_stateful(graph, prefix, &[input.node], &stores, make);
        let key = self.grouped.grouped.key.clone();
        let getter = windowed_getter(&store, key.clone(), serde);
        KTable { graph: graph.clone(), node, key: Arc::new(WindowedSerde::of(key)), getter }
    }

    /// The number of records per key and window.
    pub fn count(&self, materialized: Materialized) -> KTable<Windowed<K>, i64> {
        let add: AddFn<K, V, i64> = Arc::new(|_, _, old| old.unwrap_or(0) + 1);
        self.aggregate_with("KSTREAM-AGGREGATE", materialized, Arc::new(crate::serde::NumberSerde::<i64>::new()), add)
    }

    /// Combines each key's values per window with `reducer(aggregate, value)`.
    pub fn reduce(
        &self,
        reducer: impl Fn(&V, &V) -> V + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, V> {
        let add: AddFn<K, V, V> = Arc::new(move |_, v, old| match old {
            Some(agg) => reducer(&agg, v),
            None => v.clone(),
        });
        let serde = self.grouped.grouped.value.clone();
        self.aggregate_with("KSTREAM-REDUCE", materialized, serde, add)
    }

    /// Folds each key's values per window into an aggregate stored with `serde`.
    pub fn aggregate<A: Data>(
        &self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        aggregator: impl Fn(&K, &V, A) -> A + Send + Sync + 'static,
        serde: impl Serde<A>,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, A> {
        let add: AddFn<K, V, A> = Arc::new(move |k, v, old| aggregator(k, v, old.unwrap_or_else(&initializer)));
        self.aggregate_with("KSTREAM-AGGREGATE", materialized, Arc::new(serde), add)
    }
}

fn windowed_getter<K: Data, A: Data>(
    store: &str,
    key: Arc<dyn Serde<K>>,
    serde: Arc<dyn Serde<A>>,
) -> Getter<Windowed<K>, A> {
    let name = store.to_string();
    Getter {
        stores: vec![store.to_string()],
        get: Arc::new(move |reader: &mut dyn StoreReader, w: &Windowed<K>| {
            let Some(kb) = encode(&key, &w.key, "key", &name)? else { return Ok(None) };
            match reader.read_window(&name, &kb, w.start)? {
                Some(stored) => Ok(Some(decode_stamped(&serde, &stored, &name)?)),
                None => Ok(None),
            }
        }),
    }
}

/// Aggregates per time or sliding window into a window store.
struct WindowAggregate<K, V, A> {
    store: String,
    /// Sliding windows: the store of the records themselves.
    records: String,
    /// Emitting final results: the store of the start up to which windows were emitted.
    emitted: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    serde: Arc<dyn Serde<A>>,
    add: AddFn<K, V, A>,
    layout: Layout,
    emit_final: bool,
    on_late: Option<LateFn<K, V>>,
    /// The largest timestamp this operator has seen.
    observed: i64,
    /// Emitting final results: the windows written and not emitted yet, by start, with their
    /// keys; built on the first record after the task starts from the store's windows past the
    /// emitted mark (so windows that closed while it was away are emitted then, and open ones
    /// later). A close reads just its windows, by key, rather than scanning the store's segments.
    pending: Option<BTreeMap<i64, BTreeSet<Bytes>>>,
}

/// The key of an emit-final aggregate's mark: how far its results were emitted (time windows:
/// the windows starting at or before it; sessions: those ending before it).
const EMITTED: &[u8] = b"emitted";

/// Emitting final results: declares the store of how far results were emitted (so a restart
/// does not emit them again) and adds it to the operator's `stores`; its name either way.
fn emitted_store(
    graph: &std::cell::RefCell<crate::stream::Graph>,
    materialized: &Materialized,
    store: &str,
    emit: EmitStrategy,
    stores: &mut Vec<String>,
) -> String {
    let emitted = format!("{store}-emitted");
    if emit == EmitStrategy::OnWindowClose {
        graph.borrow_mut().stores.push(materialized.apply(StoreBuilder::raw_key_value(&emitted)));
        stores.push(emitted.clone());
    }
    emitted
}

/// The emitted mark, `i64::MIN` before anything was emitted.
fn read_mark<K, V>(ctx: &mut ProcessorContext<'_, K, V>, store: &str) -> Result<i64> {
    match ctx.kv_store::<Bytes, Bytes>(store)?.get(&Bytes::from_static(EMITTED))? {
        Some(b) => Ok(i64::from_be_bytes(b.as_ref().try_into().map_err(|_| {
            crate::Error::Process(format!("store {store}: an emitted mark of {} bytes, not 8", b.len()))
        })?)),
        None => Ok(i64::MIN),
    }
}

/// Moves the emitted mark on. It is committed with the output it stands for: a commit writes
/// stores only after the output is acknowledged, so a crash before that emits again (at least
/// once) and never skips.
fn write_mark<K, V>(ctx: &mut ProcessorContext<'_, K, V>, store: &str, mark: i64) -> Result<()> {
    let mark = Bytes::copy_from_slice(&mark.to_be_bytes());
    Ok(ctx.kv_store::<Bytes, Bytes>(store)?.put(&Bytes::from_static(EMITTED), &mark)?)
}

/// A window's new aggregate: start, new value, old value, timestamp.
type Update<A> = (i64, A, Option<A>, i64);

impl<K: Data, V: Data, A: Data> WindowAggregate<K, V, A> {
    fn fresh(&self) -> Self {
        WindowAggregate {
            store: self.store.clone(),
            records: self.records.clone(),
            emitted: self.emitted.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
            serde: self.serde.clone(),
            add: self.add.clone(),
            layout: self.layout,
            emit_final: self.emit_final,
            on_late: self.on_late.clone(),
            observed: i64::MIN,
            pending: None,
        }
    }

    fn late(
        &self,
        r: &Record<K, V>,
        window: (i64, i64),
        close_time: i64,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) {
        tracing::debug!(store = %self.store, timestamp = r.timestamp, start = window.0, end = window.1, close_time, "skipping a record for a closed window");
        ctx.count_late();
        if let Some(f) = &self.on_late {
            f(&LateRecord { key: &r.key, value: &r.value, timestamp: r.timestamp, window, close_time });
        }
    }

    fn fetch(
        &self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
        kb: &Bytes,
        start: i64,
    ) -> Result<Option<(A, i64)>> {
        let stored = ctx.window_store::<Bytes, Bytes>(&self.store)?.fetch(kb, start)?;
        stored.map(|b| decode_stamped(&self.serde, &b, &self.store)).transpose()
    }

    fn put(
        &self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
        kb: &Bytes,
        start: i64,
        value: &A,
        ts: i64,
    ) -> Result<()> {
        let stored = encode_stamped(&self.serde, value, ts, &self.store)?;
        Ok(ctx.window_store::<Bytes, Bytes>(&self.store)?.put(kb, stored.as_ref(), start)?)
    }

    /// Tumbling and hopping windows: each window holding the record is updated.
    fn time_windows(
        &self,
        w: TimeWindows,
        r: &Record<K, V>,
        kb: &Bytes,
        close: i64,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) -> Result<Vec<Update<A>>> {
        let mut updates = Vec::new();
        for start in w.starts_for(r.timestamp) {
            let end = start + w.size_ms;
            if end <= close {
                self.late(r, (start, end), close, ctx);
                continue;
            }
            let old = self.fetch(ctx, kb, start)?;
            let ts = old.as_ref().map_or(r.timestamp, |(_, t)| r.timestamp.max(*t));
            let old = old.map(|(v, _)| v);
            let new = (self.add)(&r.key, &r.value, old.clone());
            self.put(ctx, kb, start, &new, ts)?;
            updates.push((start, new, old, ts));
        }
        Ok(updates)
    }

    /// The aggregate of the stored records of a key with timestamps in `[from, to]`.
    fn build(
        &self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
        key: &K,
        kb: &Bytes,
        from: i64,
        to: i64,
    ) -> Result<Option<(A, i64)>> {
        let records: Vec<(i64, Bytes)> = ctx
            .window_store::<Bytes, Bytes>(&self.records)?
            .fetch_range(kb, from, to)?
            .collect::<freshet_state::Result<_>>()?;
        let mut agg: Option<(A, i64)> = None;
        for (ts, bytes) in records {
            let v = decode(&self.value, &bytes, "value", &self.records)?;
            let (old, old_ts) = match agg.take() {
                Some((a, t)) => (Some(a), t),
                None => (None, ts),
            };
            agg = Some(((self.add)(key, &v, old), old_ts.max(ts)));
        }
        Ok(agg)
    }

    /// Sliding windows: the windows already holding the record are updated; the window ending
    /// at the record, the one starting right after it, and the one starting right after the
    /// record before it are built from the stored records when they do not exist yet.
    fn sliding_windows(
        &self,
        w: SlidingWindows,
        r: &Record<K, V>,
        kb: &Bytes,
        close: i64,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) -> Result<Vec<Update<A>>> {
        let (t, d) = (r.timestamp, w.difference_ms);
        if t + 1 + d <= close {
            self.late(r, (t.saturating_sub(d).max(0), t), close, ctx);
            return Ok(Vec::new());
        }
        let Some(vb) = encode(&self.value, &r.value, "value", &self.records)? else { return Ok(Vec::new()) };
        ctx.window_store::<Bytes, Bytes>(&self.records)?.put(kb, Some(&vb), t)?;
        let existing: Vec<(i64, Bytes)> = ctx
            .window_store::<Bytes, Bytes>(&self.store)?
            .fetch_range(kb, (t - d).max(0), t)?
            .collect::<freshet_state::Result<_>>()?;
        let mut updates = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (start, stored) in existing {
            seen.insert(start);
            if start + d <= close {
                continue;
            }
            let (old, old_ts) = decode_stamped(&self.serde, &stored, &self.store)?;
            let new = (self.add)(&r.key, &r.value, Some(old.clone()));
            let ts = old_ts.max(t);
            self.put(ctx, kb, start, &new, ts)?;
            updates.push((start, new, Some(old), ts));
        }
        // The record before this one (within reach of a window holding it).
        let before: Option<i64> = ctx
            .window_store::<Bytes, Bytes>(&self.records)?
            .fetch_range(kb, (t - d - 1).max(0), t - 1)?
            .map(|e| e.map(|(ts, _)| ts))
            .collect::<freshet_state::Result<Vec<_>>>()?
            .into_iter()
            .max();
        let mut candidates = vec![(t - d).max(0), t + 1];
        if let Some(p) = before {
            candidates.push(p + 1);
        }
        for start in candidates {
            if seen.contains(&start) || start + d <= close || self.fetch(ctx, kb, start)?.is_some() {
                continue;
            }
            seen.insert(start);
            if let Some((agg, ts)) = self.build(ctx, &r.key, kb, start, start + d)? {
                self.put(ctx, kb, start, &agg, ts)?;
                updates.push((start, agg, None, ts));
            }
        }
        updates.sort_by_key(|u| u.0);
        Ok(updates)
    }

    /// The final results of the windows that closed since the last call, read before this
    /// record writes anything (a write moves the store's retention on, which could expire windows
    /// not yet emitted after a jump in stream time).
    fn closed_windows(
        &mut self,
        close: i64,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) -> Result<Vec<(Windowed<K>, A, i64)>> {
        let span = self.layout.span_ms();
        let upper = close.saturating_sub(span);
        let pending = match &mut self.pending {
            Some(pending) => pending,
            None => {
                let mark = read_mark(ctx, &self.emitted)?;
                let mut pending: BTreeMap<i64, BTreeSet<Bytes>> = BTreeMap::new();
                for entry in ctx.window_store::<Bytes, Bytes>(&self.store)?.all()? {
                    let (w, _) = entry?;
                    if w.start > mark {
                        pending.entry(w.start).or_default().insert(w.key);
                    }
                }
                self.pending.insert(pending)
            }
        };
        if upper < 0 || pending.first_key_value().is_none_or(|(start, _)| *start > upper) {
            return Ok(Vec::new());
        }
        let open = pending.split_off(&upper.saturating_add(1));
        let closed = std::mem::replace(pending, open);
        let store = ctx.window_store::<Bytes, Bytes>(&self.store)?;
        let mut out = Vec::new();
        // By start, then key bytes.
        for (start, keys) in closed {
            for kb in keys {
                // Gone only if the store's retention passed it (a jump in stream time).
                let Some(stored) = store.fetch(&kb, start)? else { continue };
                let key = decode(&self.key, &kb, "key", &self.store)?;
                let (value, timestamp) = decode_stamped(&self.serde, &stored, &self.store)?;
                out.push((Windowed { key, start, end: start + span }, value, timestamp));
            }
        }
        write_mark(ctx, &self.emitted, upper)?;
        Ok(out)
    }
}

impl<K: Data, V: Data, A: Data> Processor<K, V, Windowed<K>, Change<A>> for WindowAggregate<K, V, A> {
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>) -> Result<()> {
        let Some(kb) = key_or_drop(ctx, &self.key, &r.key, &self.store)? else { return Ok(()) };
        if !windowable(ctx, r.timestamp, &self.store) {
            return Ok(());
        }
        self.observed = self.observed.max(r.timestamp);
        let close = self.observed.saturating_sub(self.layout.grace_ms());
        let closed = if self.emit_final { self.closed_windows(close, ctx)? } else { Vec::new() };
        let updates = match self.layout {
            Layout::Time(w) => self.time_windows(w, &r, &kb, close, ctx)?,
            Layout::Sliding(w) => self.sliding_windows(w, &r, &kb, close, ctx)?,
        };
        if self.emit_final {
            if let Some(pending) = &mut self.pending {
                for (start, ..) in &updates {
                    pending.entry(*start).or_default().insert(kb.clone());
                }
            }
            for (key, value, timestamp) in closed {
                let change = Change { new: Some(value), old: None };
                ctx.forward(Record { key, value: change, timestamp, headers: r.headers.clone() })?;
            }
            return Ok(());
        }
        let span = self.layout.span_ms();
        for (start, new, old, timestamp) in updates {
            let key = Windowed { key: r.key.clone(), start, end: start + span };
            ctx.forward(Record { key, value: Change { new: Some(new), old }, timestamp, headers: r.headers.clone() })?;
        }
        Ok(())
    }
}

/// Whether a record's timestamp can be windowed; a negative one cannot, and the record is dropped
/// (counted, with a warning).
fn windowable<K, V>(ctx: &mut ProcessorContext<'_, K, V>, timestamp: i64, store: &str) -> bool {
    if timestamp < 0 {
        tracing::warn!(store, timestamp, "a record with a negative timestamp cannot be windowed and is dropped");
        ctx.count_dropped();
    }
    timestamp >= 0
}

type MergeFn<K, A> = Arc<dyn Fn(&K, A, A) -> A + Send + Sync>;

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    /// When results are forwarded (default: every update).
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    /// Calls `f` for every record dropped as late (besides counting it).
    pub fn on_late_record(mut self, f: impl Fn(&LateRecord<'_, K, V>) + Send + Sync + 'static) -> Self {
        self.on_late = Some(Arc::new(f));
        self
    }

    fn aggregate_with<A: Data>(
        &self,
        prefix: &str,
        materialized: Materialized,
        serde: Arc<dyn Serde<A>>,
        add: AddFn<K, V, A>,
        merge: MergeFn<K, A>,
    ) -> KTable<Windowed<K>, A> {
        let graph = &self.grouped.stream.graph;
        let store = materialized.store(graph, &format!("{prefix}-STATE-STORE"));
        let input = self.grouped.partitioned(&store);
        // A session can be extended until `gap + grace` past its end, and then merged with
        // sessions up to a gap before that record: kept that long by default.
        let least = self.windows.gap_ms.saturating_add(self.windows.grace_ms).saturating_add(1);
        let retention = materialized.retention_ms.unwrap_or(least.saturating_add(self.windows.gap_ms));
        if retention < least {
            graph.borrow_mut().errors.push(format!(
                "store {store}: a retention of {retention} ms is under the inactivity gap plus grace ({least} ms)"
            ));
        }
        graph.borrow_mut().stores.push(materialized.apply(StoreBuilder::raw_session(&store, retention)));
        let mut stores = vec![store.clone()];
        let emitted = emitted_store(graph, &materialized, &store, self.emit, &mut stores);
        let processor = SessionAggregate {
            store: store.clone(),
            emitted,
            key: self.grouped.grouped.key.clone(),
            serde: serde.clone(),
            add,
            merge,
            windows: self.windows,
            emit_final: self.emit == EmitStrategy::OnWindowClose,
            on_late: self.on_late.clone(),
            observed: i64::MIN,
            last_emit_close: None,
            open: None,
        };
        let make = make::<K, V, Windowed<K>, Change<A>, _>(move || processor.fresh());
        let node = add_stateful(graph, prefix, &[input.node], &stores, make);
        let key = self.grouped.grouped.key.clone();
        let (name, key_serde) = (store.clone(), key.clone());
        let getter = Getter {
            stores: vec![store],
            get: Arc::new(move |reader: &mut dyn StoreReader, w: &Windowed<K>| {
                let Some(kb) = encode(&key_serde, &w.key, "key", &name)? else { return Ok(None) };
                match reader.read_session(&name, &kb, w.start, w.end)? {
                    Some(stored) => Ok(Some((decode(&serde, &stored, "value", &name)?, w.end))),
                    None => Ok(None),
                }
            }),
        };
        KTable { graph: graph.clone(), node, key: Arc::new(WindowedSerde::of(key)), getter }
    }

    /// The number of records per session.
    pub fn count(&self, materialized: Materialized) -> KTable<Windowed<K>, i64> {
        let add: AddFn<K, V, i64> = Arc::new(|_, _, old| old.unwrap_or(0) + 1);
        let merge: MergeFn<K, i64> = Arc::new(|_, a, b| a + b);
        self.aggregate_with(
            "KSTREAM-AGGREGATE",
            materialized,
            Arc::new(crate::serde::NumberSerde::<i64>::new()),
            add,
            merge,
        )
    }

    /// Combines each session's values with `reducer` (which also merges sessions a record joins).
    pub fn reduce(
        &self,
        reducer: impl Fn(&V, &V) -> V + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, V> {
        let reducer = Arc::new(reducer);
        let r2 = reducer.clone();
        let add: AddFn<K, V, V> = Arc::new(move |_, v, old| match old {
            Some(agg) => reducer(&agg, v),
            None => v.clone(),
        });
        let merge: MergeFn<K, V> = Arc::new(move |_, a, b| r2(&a, &b));
        let serde = self.grouped.grouped.value.clone();
        self.aggregate_with("KSTREAM-REDUCE", materialized, serde, add, merge)
    }

    /// Folds each session's values into an aggregate; `merger(key, a, b)` combines the
    /// aggregates of sessions a record joins together.
    pub fn aggregate<A: Data>(
        &self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        aggregator: impl Fn(&K, &V, A) -> A + Send + Sync + 'static,
        merger: impl Fn(&K, A, A) -> A + Send + Sync + 'static,
        serde: impl Serde<A>,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, A> {
        let add: AddFn<K, V, A> = Arc::new(move |k, v, old| aggregator(k, v, old.unwrap_or_else(&initializer)));
        self.aggregate_with("KSTREAM-AGGREGATE", materialized, Arc::new(serde), add, Arc::new(merger))
    }
}

/// Aggregates per session into a session store.
struct SessionAggregate<K, V, A> {
    store: String,
    /// Emitting final results: the store of the close time sessions were emitted up to.
    emitted: String,
    key: Arc<dyn Serde<K>>,
    serde: Arc<dyn Serde<A>>,
    add: AddFn<K, V, A>,
    merge: MergeFn<K, A>,
    windows: SessionWindows,
    emit_final: bool,
    on_late: Option<LateFn<K, V>>,
    observed: i64,
    last_emit_close: Option<i64>,
    /// Emit-final only: the sessions not yet emitted as (end, start, key), in end-time order, so
    /// finding the sessions that closed reads only those (the store is ordered by key first, and
    /// reading every live session at each advance of stream time costs O(records x sessions)).
    /// Built from the store at the first record (after a restart, too), past the emitted mark.
    open: Option<BTreeSet<(i64, i64, Bytes)>>,
}

impl<K: Data, V: Data, A: Data> SessionAggregate<K, V, A> {
    fn fresh(&self) -> Self {
        SessionAggregate {
            store: self.store.clone(),
            emitted: self.emitted.clone(),
            key: self.key.clone(),
            serde: self.serde.clone(),
            add: self.add.clone(),
            merge: self.merge.clone(),
            windows: self.windows,
            emit_final: self.emit_final,
            on_late: self.on_late.clone(),
            observed: i64::MIN,
            last_emit_close: None,
            open: None,
        }
    }

    /// The sessions that closed (ended before `close`) since the last call, by end time, read
    /// before this record writes anything (see `WindowAggregate::closed_windows`).
    fn closed_sessions(
        &mut self,
        close: i64,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) -> Result<Vec<(Windowed<Bytes>, Bytes)>> {
        if !self.emit_final {
            return Ok(Vec::new());
        }
        let mark = match self.open {
            Some(_) => i64::MIN,
            None => read_mark(ctx, &self.emitted)?,
        };
        let store = ctx.session_store::<Bytes, Bytes>(&self.store)?;
        let open = match &mut self.open {
            Some(open) => open,
            None => {
                let mut open = BTreeSet::new();
                // Sessions ending before the mark were emitted.
                for session in store.sessions_ending(mark.max(0), i64::MAX)? {
                    let (w, _) = session?;
                    open.insert((w.end, w.start, w.key));
                }
                self.open.insert(open)
            }
        };
        if close <= 0 || self.last_emit_close.is_some_and(|last| close <= last) {
            return Ok(Vec::new());
        }
        self.last_emit_close = Some(close);
        let still_open = open.split_off(&(close, i64::MIN, Bytes::new()));
        let closed = std::mem::replace(open, still_open);
        let mut sessions = Vec::with_capacity(closed.len());
        let any = !closed.is_empty();
        for (end, start, key) in closed {
            // A session the store no longer holds (expired) has nothing to emit.
            if let Some(value) = store.fetch_session(&key, start, end)? {
                sessions.push((Windowed { key, start, end }, value));
            }
        }
        if any {
            write_mark(ctx, &self.emitted, close)?;
        }
        Ok(sessions)
    }

    /// Keeps the emit-final index of open sessions in step with the store.
    fn track(&mut self, session: &Windowed<Bytes>, open: bool) {
        if let Some(index) = &mut self.open {
            let entry = (session.end, session.start, session.key.clone());
            if open {
                index.insert(entry);
            } else {
                index.remove(&entry);
            }
        }
    }

    /// Forwards the final results of `closed` sessions, but those this record merged away.
    fn emit_closed(
        &self,
        closed: Vec<(Windowed<Bytes>, Bytes)>,
        merged_away: &[Windowed<Bytes>],
        r: &Record<K, V>,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) -> Result<()> {
        for (w, stored) in closed {
            if merged_away.contains(&w) {
                continue;
            }
            let key = decode(&self.key, &w.key, "key", &self.store)?;
            let value = decode(&self.serde, &stored, "value", &self.store)?;
            let session = Windowed { key, start: w.start, end: w.end };
            let change = Change { new: Some(value), old: None };
            ctx.forward(Record { key: session, value: change, timestamp: w.end, headers: r.headers.clone() })?;
        }
        Ok(())
    }
}

impl<K: Data, V: Data, A: Data> Processor<K, V, Windowed<K>, Change<A>> for SessionAggregate<K, V, A> {
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>) -> Result<()> {
        let Some(kb) = key_or_drop(ctx, &self.key, &r.key, &self.store)? else { return Ok(()) };
        if !windowable(ctx, r.timestamp, &self.store) {
            return Ok(());
        }
        let (t, gap) = (r.timestamp, self.windows.gap_ms);
        self.observed = self.observed.max(t);
        let close = self.observed.saturating_sub(self.windows.grace_ms).saturating_sub(gap);
        let closed = self.closed_sessions(close, ctx)?;
        let overlapping: Vec<(Windowed<Bytes>, Bytes)> = ctx
            .session_store::<Bytes, Bytes>(&self.store)?
            .find_sessions(&kb, t.saturating_sub(gap), t.saturating_add(gap))?
            .collect::<freshet_state::Result<_>>()?;
        let (mut start, mut end) = (t, t);
        let mut agg: Option<A> = None;
        let mut merged = Vec::with_capacity(overlapping.len());
        for (session, stored) in overlapping {
            start = start.min(session.start);
            end = end.max(session.end);
            let value = decode(&self.serde, &stored, "value", &self.store)?;
            agg = Some(match agg {
                Some(a) => (self.merge)(&r.key, a, value.clone()),
                None => value.clone(),
            });
            merged.push((session, value));
        }
        if end < close {
            tracing::debug!(store = %self.store, timestamp = t, start, end, close, "skipping a record for a closed session");
            ctx.count_late();
            if let Some(f) = &self.on_late {
                f(&LateRecord { key: &r.key, value: &r.value, timestamp: t, window: (start, end), close_time: close });
            }
            return self.emit_closed(closed, &[], &r, ctx);
        }
        let mut merged_away = Vec::new();
        if (start, end) != (t, t) {
            for (session, value) in merged {
                merged_away.push(session.clone());
                ctx.session_store::<Bytes, Bytes>(&self.store)?.remove(&session)?;
                self.track(&session, false);
                if !self.emit_final {
                    let key = Windowed { key: r.key.clone(), start: session.start, end: session.end };
                    let change = Change { new: None, old: Some(value) };
                    ctx.forward(Record { key, value: change, timestamp: session.end, headers: r.headers.clone() })?;
                }
            }
        }
        let new = (self.add)(&r.key, &r.value, agg);
        let session = Windowed { key: kb, start, end };
        match encode(&self.serde, &new, "value", &self.store)? {
            Some(b) => {
                ctx.session_store::<Bytes, Bytes>(&self.store)?.put(&session, &b)?;
                self.track(&session, true);
            }
            None => {
                ctx.session_store::<Bytes, Bytes>(&self.store)?.remove(&session)?;
                self.track(&session, false);
            }
        }
        if self.emit_final {
            return self.emit_closed(closed, &merged_away, &r, ctx);
        }
        let key = Windowed { key: r.key.clone(), start, end };
        ctx.forward(Record { key, value: Change { new: Some(new), old: None }, timestamp: end, headers: r.headers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_windows_hold_a_timestamp_as_kafka_streams_places_it() {
        let tumbling = TimeWindows::of_size_with_no_grace(Duration::from_millis(10));
        assert_eq!(tumbling.starts_for(0).collect::<Vec<_>>(), [0]);
        assert_eq!(tumbling.starts_for(19).collect::<Vec<_>>(), [10]);
        let hopping = tumbling.advance_by(Duration::from_millis(5));
        assert_eq!(hopping.starts_for(3).collect::<Vec<_>>(), [0]);
        assert_eq!(hopping.starts_for(12).collect::<Vec<_>>(), [5, 10]);
        assert!(TimeWindows::of_size_with_no_grace(Duration::from_millis(5))
            .advance_by(Duration::from_millis(6))
            .check()
            .is_err());
    }

    #[test]
    fn windowed_keys_round_trip() {
        let serde = WindowedSerde::new(crate::serde::StringSerde);
        let w = Windowed { key: "k".to_string(), start: 10, end: 20 };
        let bytes = serde.serialize(&w).unwrap();
        assert_eq!(serde.deserialize(bytes.as_deref()).unwrap(), w);
        assert!(serde.deserialize(Some(b"short")).unwrap_err().contains("under the 16"));
    }
}
