//! The typed session store.

use std::marker::PhantomData;
use std::ops::Bound;

use crate::bytes::{prefix_successor, ScanRange};
use crate::error::Result;
use crate::keys::{key_prefix, session_key, split_session_key};
use crate::kv::{Evicted, TypedIter};
use crate::serde::StateSerde;
use crate::stack::StoreStack;
use crate::window::Windowed;

/// Sessions of `K`: values over `[start, end]` (end inclusive: the last event's time), kept for
/// `retention_ms` of stream time past their end.
///
/// Order: a key's sessions come back by end time, then start; multi-key finds by key first.
pub struct SessionStore<K, V> {
    pub(crate) stack: StoreStack,
    retention_ms: i64,
    observed_ms: i64,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: StateSerde + Clone, V: StateSerde> SessionStore<K, V> {
    pub(crate) fn new(stack: StoreStack, retention_ms: i64) -> Self {
        let observed_ms = stack.inner().observed_time().unwrap_or(i64::MIN);
        SessionStore { stack, retention_ms, observed_ms, types: PhantomData }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.stack.name
    }

    /// Sessions ending before this are expired.
    pub fn min_live_ms(&self) -> i64 {
        let observed = self.observed_ms.max(self.stack.inner().observed_time().unwrap_or(i64::MIN));
        observed.saturating_sub(self.retention_ms).saturating_add(1)
    }

    /// Puts a session's value.
    pub fn put(&mut self, session: &Windowed<K>, value: &V) -> Result<()> {
        self.observed_ms = self.observed_ms.max(session.end);
        if session.end < self.min_live_ms() {
            return Ok(());
        }
        self.stack.put(session_key(&session.key.to_bytes(), session.start, session.end), Some(value.to_bytes()))
    }

    /// Removes a session.
    pub fn remove(&mut self, session: &Windowed<K>) -> Result<()> {
        self.stack.put(session_key(&session.key.to_bytes(), session.start, session.end), None)
    }

    /// The value of exactly this session.
    pub fn fetch_session(&mut self, key: &K, start: i64, end: i64) -> Result<Option<V>> {
        if end < self.min_live_ms() {
            return Ok(None);
        }
        match self.stack.get(&session_key(&key.to_bytes(), start, end))? {
            Some(v) => Ok(Some(V::from_bytes(&v)?)),
            None => Ok(None),
        }
    }

    /// Sessions of `key` with `end >= earliest_end` and `start <= latest_start`: those that overlap
    /// `[earliest_end, latest_start]`.
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<TypedIter<'_, (Windowed<K>, V)>> {
        self.find_sessions_range(key, key, earliest_end, latest_start)
    }

    /// [`SessionStore::find_sessions`] for every key in `[key_from, key_to]`.
    pub fn find_sessions_range(
        &self,
        key_from: &K,
        key_to: &K,
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<TypedIter<'_, (Windowed<K>, V)>> {
        let earliest_end = earliest_end.max(self.min_live_ms());
        let to = match prefix_successor(&key_prefix(&key_to.to_bytes())) {
            Some(next) => Bound::Excluded(next),
            None => Bound::Unbounded,
        };
        let from = if key_from.to_bytes() == key_to.to_bytes() {
            Bound::Included(session_key(&key_from.to_bytes(), i64::MIN, earliest_end))
        } else {
            Bound::Included(key_prefix(&key_from.to_bytes()))
        };
        let range = ScanRange { from, to, time: Some((earliest_end, i64::MAX)) };
        Ok(Box::new(self.stack.scan(&range)?.filter_map(move |r| {
            let decoded = (|| {
                let (k, v) = r?;
                let (key, start, end) = split_session_key(&k)?;
                if end < earliest_end || start > latest_start {
                    return Ok(None);
                }
                Ok(Some((Windowed { key: K::from_bytes(&key)?, start, end }, V::from_bytes(&v)?)))
            })();
            decoded.transpose()
        })))
    }

    /// Every live session, of any key, ending in `[earliest_end, latest_end]`; by key, then end.
    pub fn sessions_ending(&self, earliest_end: i64, latest_end: i64) -> Result<TypedIter<'_, (Windowed<K>, V)>> {
        let earliest_end = earliest_end.max(self.min_live_ms());
        let range = ScanRange { from: Bound::Unbounded, to: Bound::Unbounded, time: Some((earliest_end, latest_end)) };
        Ok(Box::new(self.stack.scan(&range)?.filter_map(move |r| {
            let decoded = (|| {
                let (k, v) = r?;
                let (key, start, end) = split_session_key(&k)?;
                if end < earliest_end || end > latest_end {
                    return Ok(None);
                }
                Ok(Some((Windowed { key: K::from_bytes(&key)?, start, end }, V::from_bytes(&v)?)))
            })();
            decoded.transpose()
        })))
    }

    /// Every live session of `key`.
    pub fn fetch(&self, key: &K) -> Result<TypedIter<'_, (Windowed<K>, V)>> {
        self.find_sessions(key, i64::MIN, i64::MAX)
    }

    /// Adds an event session `[start, end]` with `value` for `key` and merges it, as session
    /// windowing does, with every stored session of the key that comes within `gap_ms` of it
    /// (`end >= start - gap` and `start <= end + gap`): those are removed and replaced by one
    /// session over their union, whose value folds their values into `value` with
    /// `merge(acc, old)` in end-time order. Returns the session written and its value.
    pub fn merge(
        &mut self,
        key: &K,
        start: i64,
        end: i64,
        gap_ms: i64,
        value: V,
        mut merge: impl FnMut(V, V) -> V,
    ) -> Result<(Windowed<K>, V)> {
        let overlapping: Vec<(Windowed<K>, V)> = self
            .find_sessions(key, start.saturating_sub(gap_ms), end.saturating_add(gap_ms))?
            .collect::<Result<_>>()?;
        let mut merged = Windowed { key: key.clone(), start, end };
        let mut acc = value;
        for (session, old) in overlapping {
            merged.start = merged.start.min(session.start);
            merged.end = merged.end.max(session.end);
            acc = merge(acc, old);
            self.remove(&session)?;
        }
        self.put(&merged, &acc)?;
        Ok((merged, acc))
    }

    /// Writes every dirty cache entry down (they then come out of [`SessionStore::take_evicted`]).
    pub fn flush_cache(&mut self) -> Result<()> {
        self.stack.flush_cache()
    }

    /// Entries the cache wrote down since the last call (kept only with
    /// [`crate::StoreOptions::report_evicted`]).
    pub fn take_evicted(&mut self) -> Result<Vec<Evicted<Windowed<K>, V>>> {
        self.stack
            .take_evicted()
            .into_iter()
            .map(|(k, v)| {
                let (key, start, end) = split_session_key(&k)?;
                Ok(Evicted {
                    key: Windowed { key: K::from_bytes(&key)?, start, end },
                    value: v.map(|v| V::from_bytes(&v)).transpose()?,
                })
            })
            .collect()
    }
}

impl<K, V> std::fmt::Debug for SessionStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore").field("stack", &self.stack).finish_non_exhaustive()
    }
}
