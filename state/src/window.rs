//! The typed window store.

use std::marker::PhantomData;
use std::ops::Bound;

use bytes::Bytes;

use crate::bytes::{prefix_successor, ScanRange};
use crate::error::Result;
use crate::keys::{key_prefix, split_window_key, window_key};
use crate::kv::{Evicted, TypedIter};
use crate::serde::StateSerde;
use crate::stack::StoreStack;

/// A key with its window: `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Windowed<K> {
    /// The key.
    pub key: K,
    /// Window start (ms, inclusive).
    pub start: i64,
    /// Window end (ms, exclusive for windows; inclusive last event time for sessions).
    pub end: i64,
}

/// Values of `K` per time window, kept for `retention_ms` of stream time.
///
/// Order: [`WindowStore::fetch`] returns a key's windows by start time; the multi-key fetches
/// return entries by key (encoded order), then start time. Windows older than the retention are
/// neither returned nor stored.
pub struct WindowStore<K, V> {
    pub(crate) stack: StoreStack,
    retention_ms: i64,
    window_size_ms: i64,
    retain_duplicates: bool,
    seq: u32,
    observed_ms: i64,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: StateSerde, V: StateSerde> WindowStore<K, V> {
    pub(crate) fn new(stack: StoreStack, retention_ms: i64, window_size_ms: i64, retain_duplicates: bool) -> Self {
        let observed_ms = stack.inner().observed_time().unwrap_or(i64::MIN);
        WindowStore { stack, retention_ms, window_size_ms, retain_duplicates, seq: 0, observed_ms, types: PhantomData }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.stack.name
    }

    /// The oldest window start still kept.
    pub fn min_live_ms(&self) -> i64 {
        let observed = self.observed_ms.max(self.stack.inner().observed_time().unwrap_or(i64::MIN));
        observed.saturating_sub(self.retention_ms).saturating_add(1)
    }

    /// Puts the value of `key` in the window starting at `window_start` (`None` deletes it; with
    /// duplicates retained, every put is kept and `None` is ignored, as in Kafka Streams).
    pub fn put(&mut self, key: &K, value: Option<&V>, window_start: i64) -> Result<()> {
        self.observed_ms = self.observed_ms.max(window_start);
        if window_start < self.min_live_ms() {
            return Ok(());
        }
        if self.retain_duplicates {
            let Some(value) = value else { return Ok(()) };
            self.seq = self.seq.wrapping_add(1);
            return self.stack.put(window_key(&key.to_bytes(), window_start, Some(self.seq)), Some(value.to_bytes()));
        }
        self.stack.put(window_key(&key.to_bytes(), window_start, None), value.map(StateSerde::to_bytes))
    }

    /// The value of `key` in the window starting at `window_start`.
    pub fn fetch(&mut self, key: &K, window_start: i64) -> Result<Option<V>> {
        if window_start < self.min_live_ms() {
            return Ok(None);
        }
        if self.retain_duplicates {
            let mut first = self.fetch_range(key, window_start, window_start)?;
            return first.next().transpose().map(|o| o.map(|(_, v)| v));
        }
        match self.stack.get(&window_key(&key.to_bytes(), window_start, None))? {
            Some(v) => Ok(Some(V::from_bytes(&v)?)),
            None => Ok(None),
        }
    }

    /// The sequence number that bounds a scan of windows with duplicates (none without).
    fn seq_bound(&self, last: bool) -> Option<u32> {
        self.retain_duplicates.then_some(if last { u32::MAX } else { 0 })
    }

    /// `(window start, value)` of `key` for windows starting in `[time_from, time_to]`, by start.
    pub fn fetch_range(&self, key: &K, time_from: i64, time_to: i64) -> Result<TypedIter<'_, (i64, V)>> {
        let from = time_from.max(self.min_live_ms());
        let k = key.to_bytes();
        let range = ScanRange {
            from: Bound::Included(window_key(&k, from, self.seq_bound(false))),
            to: Bound::Included(window_key(&k, time_to, self.seq_bound(true))),
            time: Some((from, time_to)),
        };
        let with_seq = self.retain_duplicates;
        Ok(Box::new(self.stack.scan(&range)?.map(move |r| {
            let (k, v) = r?;
            let (_, start) = split_window_key(&k, with_seq)?;
            Ok((start, V::from_bytes(&v)?))
        })))
    }

    /// Entries for keys in `[key_from, key_to]` and windows starting in `[time_from, time_to]`.
    pub fn fetch_key_range(
        &self,
        key_from: &K,
        key_to: &K,
        time_from: i64,
        time_to: i64,
    ) -> Result<TypedIter<'_, (Windowed<K>, V)>> {
        let to = match prefix_successor(&key_prefix(&key_to.to_bytes())) {
            Some(next) => Bound::Excluded(next),
            None => Bound::Unbounded,
        };
        let range = ScanRange { from: Bound::Included(key_prefix(&key_from.to_bytes())), to, time: None };
        self.windowed_scan(range, time_from, time_to)
    }

    /// Entries of every key for windows starting in `[time_from, time_to]`.
    pub fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<TypedIter<'_, (Windowed<K>, V)>> {
        self.windowed_scan(ScanRange::all(), time_from, time_to)
    }

    /// Every entry kept.
    pub fn all(&self) -> Result<TypedIter<'_, (Windowed<K>, V)>> {
        self.windowed_scan(ScanRange::all(), i64::MIN, i64::MAX)
    }

    fn windowed_scan(
        &self,
        mut range: ScanRange,
        time_from: i64,
        time_to: i64,
    ) -> Result<TypedIter<'_, (Windowed<K>, V)>> {
        let from = time_from.max(self.min_live_ms());
        range.time = Some((from, time_to));
        let with_seq = self.retain_duplicates;
        let size = self.window_size_ms;
        Ok(Box::new(self.stack.scan(&range)?.filter_map(move |r| {
            let decoded = (|| {
                let (k, v) = r?;
                let (key, start) = split_window_key(&k, with_seq)?;
                if start < from || start > time_to {
                    return Ok(None);
                }
                Ok(Some((
                    Windowed { key: K::from_bytes(&key)?, start, end: start.saturating_add(size) },
                    V::from_bytes(&v)?,
                )))
            })();
            decoded.transpose()
        })))
    }

    /// Writes every dirty cache entry down (they then come out of [`WindowStore::take_evicted`]).
    pub fn flush_cache(&mut self) -> Result<()> {
        self.stack.flush_cache()
    }

    /// Entries the cache wrote down since the last call (kept only with
    /// [`crate::StoreOptions::report_evicted`]).
    pub fn take_evicted(&mut self) -> Result<Vec<Evicted<Windowed<K>, V>>> {
        let with_seq = self.retain_duplicates;
        let size = self.window_size_ms;
        self.stack
            .take_evicted()
            .into_iter()
            .map(|(k, v): (Bytes, Option<Bytes>)| {
                let (key, start) = split_window_key(&k, with_seq)?;
                Ok(Evicted {
                    key: Windowed { key: K::from_bytes(&key)?, start, end: start.saturating_add(size) },
                    value: v.map(|v| V::from_bytes(&v)).transpose()?,
                })
            })
            .collect()
    }
}

impl<K, V> std::fmt::Debug for WindowStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowStore").field("stack", &self.stack).finish_non_exhaustive()
    }
}
