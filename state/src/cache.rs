//! The record cache: a write-back cache in front of a store, bounded in bytes.
//!
//! Repeated updates of a key collapse in the cache, so only the latest reaches the store and its
//! changelog. When the cache is over its budget, least recently used entries leave it; dirty ones
//! are written down and handed to the caller as evicted (the streams layer forwards them
//! downstream, as Kafka Streams forwards cache flushes). A commit writes down every dirty entry.
//! A key read from below is cached (clean) when it missed recently before: one pass over many keys
//! (a bulk lookup, a scan-like read pattern) then neither pays for caching nor pushes hot entries
//! out, while keys read again and again are served from memory. This is the "doorkeeper" of
//! TinyLFU caches: a bit set remembering recent misses, cleared after as many misses as it
//! has bits/4 so it keeps a recent window.
//!
//! # Layout
//!
//! Entries live in a slab, linked in use order (a doubly linked list of slab indexes), and are
//! found through a hash table of slab indexes: a get, a put and an eviction are each a constant
//! number of steps, whatever the cache holds. Scans need dirty entries in key order (clean ones
//! equal what is below, so a scan reads those from below); that ordered index is built the first
//! time a scan asks for it and kept from then on, so a store used only by key never pays for it.
//!
//! Eviction leaves a little headroom (up to 1/64 of the budget) so that entries leave in groups,
//! which reach the store below as one write batch.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::hash::BuildHasher;

// foldhash, randomly seeded per process: several times faster than SipHash on short keys.
use hashbrown::DefaultHashBuilder as RandomState;

use bytes::Bytes;
use hashbrown::HashTable;

use crate::bytes::{ScanRange, Write};

/// Bytes counted for an entry beyond its key and value (slab node, table slot, allocations).
const ENTRY_OVERHEAD_BYTES: usize = 80;

/// No slab index: the end of the use-order list.
const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Node {
    key: Bytes,
    value: Option<Bytes>,
    dirty: bool,
    /// Neighbours in use order: `prev` was used less recently.
    prev: u32,
    next: u32,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct RecordCache {
    budget_bytes: usize,
    used_bytes: usize,
    nodes: Vec<Node>,
    free: Vec<u32>,
    table: HashTable<u32>,
    hasher: RandomState,
    /// Least recently used entry.
    oldest: u32,
    /// Most recently used entry.
    newest: u32,
    /// Dirty keys in key order, once a scan has needed them (see the module docs).
    dirty_order: RefCell<Option<BTreeSet<Bytes>>>,
    /// Recently missed keys (see the module docs): bits set by two probes of the key's hash.
    doorkeeper: Vec<u64>,
    doorkeeper_misses: usize,
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
            nodes: Vec::new(),
            free: Vec::new(),
            table: HashTable::new(),
            hasher: RandomState::default(),
            oldest: NIL,
            newest: NIL,
            dirty_order: RefCell::new(None),
            doorkeeper: vec![0; (budget_bytes / 32).next_power_of_two().clamp(1024, 1 << 24) / 64],
            doorkeeper_misses: 0,
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

    fn find(&self, key: &[u8]) -> Option<u32> {
        let nodes = &self.nodes;
        self.table.find(self.hasher.hash_one(key), |&i| nodes[i as usize].key == key).copied()
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = (self.nodes[i as usize].prev, self.nodes[i as usize].next);
        match prev {
            NIL => self.oldest = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.newest = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn link_newest(&mut self, i: u32) {
        let node = &mut self.nodes[i as usize];
        node.prev = self.newest;
        node.next = NIL;
        match self.newest {
            NIL => self.oldest = i,
            n => self.nodes[n as usize].next = i,
        }
        self.newest = i;
    }

    fn touch(&mut self, i: u32) {
        if self.newest != i {
            self.unlink(i);
            self.link_newest(i);
        }
    }

    /// Keeps the ordered index of dirty keys, when there is one, in step with `key`'s state.
    fn set_dirty_order(&mut self, key: &Bytes, dirty: bool) {
        if let Some(order) = self.dirty_order.get_mut() {
            if dirty {
                order.insert(key.clone());
            } else {
                order.remove(key);
            }
        }
    }

    /// `Some(value)` on a hit (`Some(None)`: the key is deleted).
    pub(crate) fn get(&mut self, key: &[u8]) -> Option<Option<Bytes>> {
        match self.find(key) {
            Some(i) => {
                self.n_hits += 1;
                self.touch(i);
                Some(self.nodes[i as usize].value.clone())
            }
            None => {
                self.n_misses += 1;
                None
            }
        }
    }

    fn insert(&mut self, key: Bytes, value: Option<Bytes>, dirty: bool, evicted: &mut Vec<Write>) {
        let size = size_of(&key, &value);
        match self.find(&key) {
            Some(i) => {
                let node = &mut self.nodes[i as usize];
                let old_size = size_of(&node.key, &node.value);
                let was_dirty = node.dirty;
                node.value = value;
                // A clean read never hides an unwritten update.
                node.dirty = dirty || was_dirty;
                self.used_bytes = self.used_bytes - old_size + size;
                if dirty && !was_dirty {
                    self.set_dirty_order(&key, true);
                }
                self.touch(i);
            }
            None => {
                if dirty {
                    self.set_dirty_order(&key, true);
                }
                let hash = self.hasher.hash_one(&key[..]);
                let node = Node { key, value, dirty, prev: NIL, next: NIL };
                let i = match self.free.pop() {
                    Some(i) => {
                        self.nodes[i as usize] = node;
                        i
                    }
                    None => {
                        self.nodes.push(node);
                        u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 cache entries")
                    }
                };
                let (nodes, hasher) = (&self.nodes, &self.hasher);
                self.table.insert_unique(hash, i, |&j| hasher.hash_one(&nodes[j as usize].key[..]));
                self.link_newest(i);
                self.used_bytes += size;
            }
        }
        if self.used_bytes > self.budget_bytes {
            self.evict(evicted);
        }
    }

    /// Caches a write; dirty entries pushed out by it are appended to `evicted`.
    pub(crate) fn put(&mut self, key: Bytes, value: Option<Bytes>, evicted: &mut Vec<Write>) {
        self.insert(key, value, true, evicted);
    }

    /// Offers a value read from below: it is cached when the key missed recently before.
    pub(crate) fn put_clean(&mut self, key: &[u8], value: Option<Bytes>, evicted: &mut Vec<Write>) {
        if self.seen_before(key) {
            self.insert(Bytes::copy_from_slice(key), value, false, evicted);
        }
    }

    /// Whether the doorkeeper remembers a recent miss of `key`; remembers this one.
    fn seen_before(&mut self, key: &[u8]) -> bool {
        let n_bits = self.doorkeeper.len() * 64;
        let hash = self.hasher.hash_one(key);
        let probes = [hash as usize % n_bits, (hash >> 32) as usize % n_bits];
        let seen = probes.iter().all(|&b| self.doorkeeper[b / 64] & (1 << (b % 64)) != 0);
        if !seen {
            if self.doorkeeper_misses >= n_bits / 4 {
                self.doorkeeper.fill(0);
                self.doorkeeper_misses = 0;
            }
            for b in probes {
                self.doorkeeper[b / 64] |= 1 << (b % 64);
            }
            self.doorkeeper_misses += 1;
        }
        seen
    }

    /// Evicts least recently used entries until the cache is within its budget, then on while
    /// that leaves at least `budget - budget / 64` in use (see the module docs).
    fn evict(&mut self, evicted: &mut Vec<Write>) {
        let low_bytes = self.budget_bytes - self.budget_bytes / 64;
        while self.oldest != NIL {
            let i = self.oldest;
            let node = &self.nodes[i as usize];
            let size = size_of(&node.key, &node.value);
            if self.used_bytes <= self.budget_bytes && self.used_bytes - size < low_bytes {
                break;
            }
            self.unlink(i);
            let hash = self.hasher.hash_one(&self.nodes[i as usize].key[..]);
            if let Ok(slot) = self.table.find_entry(hash, |&j| j == i) {
                slot.remove();
            }
            let node = &mut self.nodes[i as usize];
            let (key, value, dirty) = (std::mem::take(&mut node.key), node.value.take(), node.dirty);
            node.dirty = false; // a free slot is never dirty, so `take_dirty` may walk the slab
            self.free.push(i);
            self.used_bytes -= size;
            if dirty {
                self.set_dirty_order(&key, false);
                evicted.push((key, value));
            }
        }
    }

    /// Every dirty entry, in key order; all entries become clean.
    pub(crate) fn take_dirty(&mut self) -> Vec<Write> {
        let mut out = Vec::new();
        for node in self.nodes.iter_mut() {
            if node.dirty {
                node.dirty = false;
                out.push((node.key.clone(), node.value.clone()));
            }
        }
        if let Some(order) = self.dirty_order.get_mut() {
            order.clear();
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Dirty entries in `range`, in key order.
    pub(crate) fn range(&self, range: &ScanRange) -> impl Iterator<Item = (Bytes, Option<Bytes>)> {
        let mut out = Vec::new();
        if !range.is_empty() {
            let mut order = self.dirty_order.borrow_mut();
            let order = order.get_or_insert_with(|| {
                self.nodes.iter().filter(|n| n.dirty).map(|n| n.key.clone()).collect::<BTreeSet<Bytes>>()
            });
            for key in order.range::<[u8], _>(range.as_slices()) {
                let i = self.find(key).expect("an ordered dirty key is cached");
                out.push((key.clone(), self.nodes[i as usize].value.clone()));
            }
        }
        out.into_iter()
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

    #[test]
    fn scans_see_dirty_entries_in_key_order_before_and_after_the_index_exists() {
        let mut cache = RecordCache::new(1 << 20);
        let mut evicted = Vec::new();
        cache.put(Bytes::from("b"), Some(Bytes::from("1")), &mut evicted);
        cache.put_clean(b"a", Some(Bytes::from("0")), &mut evicted);
        cache.put_clean(b"a", Some(Bytes::from("0")), &mut evicted);
        cache.put(Bytes::from("c"), None, &mut evicted);
        let keys = |c: &RecordCache| c.range(&ScanRange::all()).map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(&cache), ["b", "c"]);
        // Kept in step once built: a clean entry turning dirty, a new one, a flush.
        cache.put(Bytes::from("a"), Some(Bytes::from("2")), &mut evicted);
        cache.put(Bytes::from("ab"), Some(Bytes::from("3")), &mut evicted);
        assert_eq!(keys(&cache), ["a", "ab", "b", "c"]);
        assert_eq!(cache.range(&ScanRange::inclusive("ab", "b")).count(), 2);
        cache.take_dirty();
        assert!(keys(&cache).is_empty());
        assert_eq!(cache.get(b"c"), Some(None));
        assert!(evicted.is_empty());
    }

    #[test]
    fn a_clean_read_does_not_hide_an_unwritten_update() {
        let mut cache = RecordCache::new(1 << 20);
        let mut evicted = Vec::new();
        cache.put(Bytes::from("k"), Some(Bytes::from("new")), &mut evicted);
        cache.put_clean(b"k", Some(Bytes::from("new")), &mut evicted);
        assert_eq!(cache.take_dirty(), vec![(Bytes::from("k"), Some(Bytes::from("new")))]);
    }

    #[test]
    fn a_read_is_cached_when_the_key_missed_recently_before() {
        let mut cache = RecordCache::new(1 << 20);
        let mut evicted = Vec::new();
        for i in 0..100u32 {
            cache.put_clean(format!("once{i}").as_bytes(), Some(Bytes::from("v")), &mut evicted);
        }
        assert_eq!(cache.used_bytes(), 0, "keys read once are not cached");
        cache.put_clean(b"hot", Some(Bytes::from("v")), &mut evicted);
        assert_eq!(cache.get(b"hot"), None);
        cache.put_clean(b"hot", Some(Bytes::from("v")), &mut evicted);
        assert_eq!(cache.get(b"hot"), Some(Some(Bytes::from("v"))));
        assert_eq!(cache.hits_and_misses(), (1, 1));
        // The doorkeeper forgets: after many other misses, a second read of keys read once long
        // before caches (almost: its bits can collide) none of them.
        for i in 0..10_000u32 {
            cache.put_clean(format!("other{i}").as_bytes(), Some(Bytes::from("v")), &mut evicted);
        }
        let before = cache.used_bytes();
        for i in 0..100u32 {
            cache.put_clean(format!("once{i}").as_bytes(), Some(Bytes::from("v")), &mut evicted);
        }
        let per_entry = size_of(b"once00", &Some(Bytes::from_static(b"v")));
        assert!(cache.used_bytes() - before < 20 * per_entry, "most were forgotten");
    }

    #[test]
    fn slots_are_reused_and_use_order_survives_many_evictions() {
        let per_entry = size_of(b"k000", &Some(Bytes::from_static(b"v")));
        let mut cache = RecordCache::new(per_entry * 64);
        let mut evicted = Vec::new();
        for i in 0..1000u32 {
            cache.put(Bytes::from(format!("k{:03}", i % 1000)), Some(Bytes::from("v")), &mut evicted);
            // Keep k000 hot: it is never evicted.
            assert_eq!(cache.get(b"k000"), Some(Some(Bytes::from("v"))));
        }
        assert!(cache.nodes.len() <= 65, "slab grew to {}", cache.nodes.len());
        assert!(!evicted.iter().any(|(k, _)| &k[..] == b"k000"));
        let mut written: Vec<Bytes> = evicted.into_iter().map(|(k, _)| k).collect();
        written.extend(cache.take_dirty().into_iter().map(|(k, _)| k));
        written.sort();
        written.dedup();
        assert_eq!(written.len(), 1000, "every key reached the store exactly once or stayed");
    }
}
