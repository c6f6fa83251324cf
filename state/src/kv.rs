//! The typed key-value store.

use std::marker::PhantomData;
use std::ops::Bound;

use bytes::Bytes;

use crate::bytes::ScanRange;
use crate::error::Result;
use crate::serde::StateSerde;
use crate::stack::StoreStack;

/// An iterator of decoded entries.
pub type TypedIter<'a, T> = Box<dyn Iterator<Item = Result<T>> + 'a>;

/// A key-value store of `K -> V`, in key order of the encoded keys (see [`StateSerde`]).
pub struct KeyValueStore<K, V> {
    pub(crate) stack: StoreStack,
    types: PhantomData<fn() -> (K, V)>,
}

/// An entry written down from the record cache (evicted or flushed at commit): the streams layer
/// forwards these downstream. `value: None` is a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted<K, V> {
    /// The key.
    pub key: K,
    /// The latest value, `None` when deleted.
    pub value: Option<V>,
}

pub(crate) fn decode_pair<K: StateSerde, V: StateSerde>(r: Result<(Bytes, Bytes)>) -> Result<(K, V)> {
    let (k, v) = r?;
    Ok((K::from_bytes(&k)?, V::from_bytes(&v)?))
}

impl<K: StateSerde, V: StateSerde> KeyValueStore<K, V> {
    pub(crate) fn new(stack: StoreStack) -> Self {
        KeyValueStore { stack, types: PhantomData }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.stack.name
    }

    /// The value of `key`.
    pub fn get(&mut self, key: &K) -> Result<Option<V>> {
        match self.stack.get(&key.to_bytes())? {
            Some(v) => Ok(Some(V::from_owned(v)?)),
            None => Ok(None),
        }
    }

    /// Puts a value.
    pub fn put(&mut self, key: &K, value: &V) -> Result<()> {
        self.stack.put(key.to_bytes(), Some(value.to_bytes()))
    }

    /// Puts a value unless the key has one; returns the existing value.
    pub fn put_if_absent(&mut self, key: &K, value: &V) -> Result<Option<V>> {
        let existing = self.get(key)?;
        if existing.is_none() {
            self.put(key, value)?;
        }
        Ok(existing)
    }

    /// Puts many values, in order.
    pub fn put_all<'a>(&mut self, entries: impl IntoIterator<Item = (&'a K, &'a V)>) -> Result<()> {
        let writes = entries.into_iter().map(|(k, v)| (k.to_bytes(), Some(v.to_bytes()))).collect();
        self.stack.put_all(writes)
    }

    /// Deletes a key; returns the value it had.
    pub fn delete(&mut self, key: &K) -> Result<Option<V>> {
        let old = self.get(key)?;
        self.stack.put(key.to_bytes(), None)?;
        Ok(old)
    }

    /// Entries with `from <= key <= to`, in key order (empty when `from > to`).
    pub fn range(&self, from: &K, to: &K) -> Result<TypedIter<'_, (K, V)>> {
        self.scan(ScanRange::inclusive(from.to_bytes(), to.to_bytes()))
    }

    /// Entries whose encoded key starts with the encoding of `prefix` (for string keys: keys that
    /// start with the string), in key order.
    pub fn prefix_scan(&self, prefix: &K) -> Result<TypedIter<'_, (K, V)>> {
        self.scan(ScanRange::prefix(&prefix.to_bytes()))
    }

    /// Entries with keys from `from` (inclusive) on, in key order.
    pub fn range_from(&self, from: &K) -> Result<TypedIter<'_, (K, V)>> {
        self.scan(ScanRange { from: Bound::Included(from.to_bytes()), to: Bound::Unbounded, time: None })
    }

    /// Every entry, in key order.
    pub fn all(&self) -> Result<TypedIter<'_, (K, V)>> {
        self.scan(ScanRange::all())
    }

    fn scan(&self, range: ScanRange) -> Result<TypedIter<'_, (K, V)>> {
        Ok(Box::new(self.stack.scan(&range)?.map(decode_pair::<K, V>)))
    }

    /// An estimate of the number of keys in the backend (writes still in the cache or awaiting the
    /// changelog are not counted; RocksDB counts overwritten keys until it compacts them).
    pub fn approximate_num_entries(&self) -> Result<u64> {
        self.stack.approximate_len()
    }

    /// Writes every dirty cache entry down (they then come out of [`KeyValueStore::take_evicted`]).
    pub fn flush_cache(&mut self) -> Result<()> {
        self.stack.flush_cache()
    }

    /// Entries the cache wrote down since the last call, in the order they left it (kept only
    /// with [`crate::StoreOptions::report_evicted`]).
    pub fn take_evicted(&mut self) -> Result<Vec<Evicted<K, V>>> {
        self.stack
            .take_evicted()
            .into_iter()
            .map(|(k, v)| Ok(Evicted { key: K::from_bytes(&k)?, value: v.map(|v| V::from_bytes(&v)).transpose()? }))
            .collect()
    }

    /// Cache bytes in use, cache hits and misses (`None` without a cache).
    pub fn cache_stats(&self) -> Option<(usize, u64, u64)> {
        self.stack.cache_stats()
    }
}

impl<K, V> std::fmt::Debug for KeyValueStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueStore").field("stack", &self.stack).finish_non_exhaustive()
    }
}
