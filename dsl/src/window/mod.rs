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

mod session;
mod time;

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
