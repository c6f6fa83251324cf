//! The record cache: a write-back cache in front of a store, bounded in bytes.
//!
//! Repeated updates of a key collapse in the cache, so only the latest reaches the store and its
//! changelog. When the cache is over its budget, least recently used entries leave it; dirty ones
//! are written down and handed to the caller as evicted (the streams layer forwards them
//! downstream, as Kafka Streams forwards cache flushes). A commit writes down every dirty entry.
//! Reads that miss are cached clean, so read-modify-write loops hit memory.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::bytes::{ScanRange, Write};

/// Bytes counted for an entry beyond its key and value (map nodes, LRU node).
const ENTRY_OVERHEAD_BYTES: usize = 80;

#[derive(Debug)]
struct Entry {
    value: Option<Bytes>,
    dirty: bool,
    tick: u64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct RecordCache {
    budget_bytes: usize,
    used_bytes: usize,
    entries: BTreeMap<Bytes, Entry>,
    /// Use order, oldest first: `(tick, key)` pushed at every use. An element whose tick is no
    /// longer its entry's is stale and skipped (cheaper than moving an element on every use);
    /// the queue is rebuilt when stale elements outnumber live ones.
    lru: VecDeque<(u64, Bytes)>,
    tick: u64,
    n_hits: u64,
    n_misses: u64,
}

fn size_of(key: &[u8], value: &Option<Bytes>) -> usize {
    key.len() + value.as_ref().map_or(0, Bytes::len) + ENTRY_OVERHEAD_BYTES
}

impl RecordCache {
    pub(crate) fn new(budget_bytes: usize) -> Self {
        RecordCache {
            budget_bytes,
            used_bytes: 0,
            entries: BTreeMap::new(),
            lru: VecDeque::new(),
            tick: 0,
            n_hits: 0,
            n_misses: 0,
        }
    }

    pub(crate) fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    pub(crate) fn hits_and_misses(&self) -> (u64, u64) {
        (self.n_hits, self.n_misses)
    }

    fn touch(&mut self, key: &Bytes) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.entries.get_mut(key) {
            e.tick = tick;
            self.lru.push_back((tick, key.clone()));
            self.compact_lru();
        }
    }

    /// Drops stale queue elements once they outnumber live entries.
    fn compact_lru(&mut self) {
        if self.lru.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.lru.retain(|(tick, key)| entries.get(key).is_some_and(|e| e.tick == *tick));
        }
    }

    /// `Some(value)` on a hit (`Some(None)`: the key is deleted).
    pub(crate) fn get(&mut self, key: &[u8]) -> Option<Option<Bytes>> {
        match self.entries.get_key_value(key) {
            Some((k, e)) => {
                let (k, v) = (k.clone(), e.value.clone());
                self.n_hits += 1;
                self.touch(&k);
                Some(v)
            }
            None => {
                self.n_misses += 1;
                None
            }
        }
    }

    fn insert(&mut self, key: Bytes, value: Option<Bytes>, dirty: bool, evicted: &mut Vec<Write>) {
        self.tick += 1;
        let size = size_of(&key, &value);
        let entry = Entry { value, dirty, tick: self.tick };
        if let Some(old) = self.entries.insert(key.clone(), entry) {
            self.used_bytes -= size_of(&key, &old.value);
        }
        self.lru.push_back((self.tick, key));
        self.used_bytes += size;
        self.evict(evicted);
        self.compact_lru();
    }

    /// Caches a write; dirty entries pushed out by it are appended to `evicted`.
    pub(crate) fn put(&mut self, key: Bytes, value: Option<Bytes>, evicted: &mut Vec<Write>) {
        self.insert(key, value, true, evicted);
    }

    /// Caches a value read from below.
    pub(crate) fn put_clean(&mut self, key: Bytes, value: Option<Bytes>, evicted: &mut Vec<Write>) {
        self.insert(key, value, false, evicted);
    }

    fn evict(&mut self, evicted: &mut Vec<Write>) {
        while self.used_bytes > self.budget_bytes {
            let Some((tick, key)) = self.lru.pop_front() else { break };
            let (key, entry) = match self.entries.entry(key) {
                std::collections::btree_map::Entry::Occupied(e) if e.get().tick == tick => e.remove_entry(),
                _ => continue, // stale: the key was used again later (or is gone)
            };
            self.used_bytes -= size_of(&key, &entry.value);
            if entry.dirty {
                evicted.push((key, entry.value));
            }
        }
    }

    /// Every dirty entry, in key order; all entries become clean.
    pub(crate) fn take_dirty(&mut self) -> Vec<Write> {
        let mut out = Vec::new();
        for (k, e) in self.entries.iter_mut() {
            if e.dirty {
                e.dirty = false;
                out.push((k.clone(), e.value.clone()));
            }
        }
        out
    }

    pub(crate) fn range<'a>(&'a self, range: &ScanRange) -> impl Iterator<Item = (Bytes, Option<Bytes>)> + 'a {
        let empty = range.is_empty();
        let iter = if empty { None } else { Some(self.entries.range::<[u8], _>(range.as_slices())) };
        iter.into_iter().flatten().map(|(k, e)| (k.clone(), e.value.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_updates_and_evicts_least_recent_dirty_first() {
        let per_entry = size_of(b"k0", &Some(Bytes::from_static(b"v0")));
        let mut cache = RecordCache::new(per_entry * 2);
        let mut evicted = Vec::new();
        cache.put(Bytes::from("k0"), Some(Bytes::from("v0")), &mut evicted);
        cache.put(Bytes::from("k0"), Some(Bytes::from("v1")), &mut evicted);
        cache.put(Bytes::from("k1"), Some(Bytes::from("v1")), &mut evicted);
        assert!(evicted.is_empty());
        assert_eq!(cache.get(b"k0"), Some(Some(Bytes::from("v1"))));
        cache.put(Bytes::from("k2"), Some(Bytes::from("v2")), &mut evicted);
        // k1 was used least recently (k0 was read after it).
        assert_eq!(evicted, vec![(Bytes::from("k1"), Some(Bytes::from("v1")))]);
        let dirty = cache.take_dirty();
        assert_eq!(dirty.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), ["k0", "k2"]);
        assert!(cache.take_dirty().is_empty());
    }
}
