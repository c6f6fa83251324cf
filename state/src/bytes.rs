//! The byte-level store every typed store is built on, and the merge of write overlays over it.
//!
//! A [`BytesStore`] is an ordered map from byte keys to byte values: RocksDB
//! (`RocksStore`), an ordered in-memory map ([`crate::memory::MemoryStore`]) or a
//! set of time segments of either ([`crate::segments::Segments`]). Layers that hold writes back (the
//! record cache, the changelog's unacknowledged writes) keep them in ordered maps of
//! `key -> Option<value>` (`None` deletes) and lay them over the store below with [`overlay`], so a
//! scan sees every write, in key order, whichever layer it is in.

use std::ops::Bound;

use bytes::Bytes;

use crate::error::{Error, Result};

/// One write: a value to put, or `None` to delete the key.
pub type Write = (Bytes, Option<Bytes>);

/// An iterator over `(key, value)` in ascending key order.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<(Bytes, Bytes)>> + 'a>;

/// The keys a scan covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRange {
    /// Lower bound.
    pub from: Bound<Bytes>,
    /// Upper bound.
    pub to: Bound<Bytes>,
    /// For time-segmented stores: only segments that may hold times in `[min, max]` need be read.
    /// A hint: entries outside it may still come back, and callers filter.
    pub time: Option<(i64, i64)>,
}

impl ScanRange {
    /// Every key.
    pub fn all() -> Self {
        ScanRange { from: Bound::Unbounded, to: Bound::Unbounded, time: None }
    }

    /// Keys in `[from, to]`.
    pub fn inclusive(from: impl Into<Bytes>, to: impl Into<Bytes>) -> Self {
        ScanRange { from: Bound::Included(from.into()), to: Bound::Included(to.into()), time: None }
    }

    /// Keys that start with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        let to = match prefix_successor(prefix) {
            Some(next) => Bound::Excluded(next),
            None => Bound::Unbounded,
        };
        ScanRange { from: Bound::Included(Bytes::copy_from_slice(prefix)), to, time: None }
    }

    /// Whether `key` is inside the bounds.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above = match &self.from {
            Bound::Included(f) => key >= &f[..],
            Bound::Excluded(f) => key > &f[..],
            Bound::Unbounded => true,
        };
        let below = match &self.to {
            Bound::Included(t) => key <= &t[..],
            Bound::Excluded(t) => key < &t[..],
            Bound::Unbounded => true,
        };
        above && below
    }

    /// Whether the bounds hold no key at all (a reversed range).
    pub fn is_empty(&self) -> bool {
        match (&self.from, &self.to) {
            (Bound::Included(f), Bound::Included(t)) => f > t,
            (Bound::Included(f), Bound::Excluded(t))
            | (Bound::Excluded(f), Bound::Included(t))
            | (Bound::Excluded(f), Bound::Excluded(t)) => f >= t,
            _ => false,
        }
    }

    /// The bounds as borrowed slices, for `BTreeMap::range`.
    pub(crate) fn as_slices(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (bound_slice(&self.from), bound_slice(&self.to))
    }
}

fn bound_slice(b: &Bound<Bytes>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(&k[..]),
        Bound::Excluded(k) => Bound::Excluded(&k[..]),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The smallest key greater than every key starting with `prefix`; `None` when there is none
/// (the prefix is empty or all `0xff`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Bytes> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < 0xff {
            next.push(last + 1);
            return Some(next.into());
        }
    }
    None
}

/// Changelog records to replay in a restore: fetched record batches, as stored, of which the
/// records with offsets in `[from, to)` apply (control batches never do).
///
/// Kept as the fetched bytes so a backend that sorts a restore (RocksDB) decodes them where it
/// copies them, with no allocation per record on the way.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The record batches.
    pub bytes: Bytes,
    /// The first offset to apply.
    pub from: i64,
    /// The offset to stop before.
    pub to: i64,
}

impl Replay {
    /// Calls `f(key, value)` for every record to apply, in order (`None` value: a delete). A
    /// record without a key is an error: changelog records always have one.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], Option<&[u8]>)) -> Result<()> {
        let decode = |e: freshet_core::Error| Error::Decode { what: "changelog batch", detail: e.to_string() };
        for batch in freshet_core::batch::Batches::new(&self.bytes) {
            let batch = batch.map_err(decode)?;
            if batch.is_control() || batch.next_offset() <= self.from || batch.base_offset() >= self.to {
                continue;
            }
            let mut missing_key = None;
            batch
                .for_each_record(|r| {
                    if r.offset >= self.from && r.offset < self.to {
                        match r.key {
                            Some(key) => f(key, r.value),
                            None => missing_key = missing_key.or(Some(r.offset)),
                        }
                    }
                    Ok(())
                })
                .map_err(decode)?;
            if let Some(offset) = missing_key {
                return Err(Error::Decode {
                    what: "changelog record",
                    detail: format!("record at offset {offset} has no key"),
                });
            }
        }
        Ok(())
    }

    /// The records to apply and their key and value bytes, checking each decodes.
    pub fn count(&self) -> Result<(u64, u64)> {
        let (mut n_records, mut n_bytes) = (0u64, 0u64);
        self.for_each(|k, v| {
            n_records += 1;
            n_bytes += (k.len() + v.map_or(0, <[u8]>::len)) as u64;
        })?;
        Ok((n_records, n_bytes))
    }

    /// The records to apply as writes (copied out of the batches).
    pub fn writes(&self) -> Result<Vec<Write>> {
        let mut writes = Vec::new();
        self.for_each(|k, v| writes.push((Bytes::copy_from_slice(k), v.map(Bytes::copy_from_slice))))?;
        Ok(writes)
    }
}

/// An ordered map from byte keys to byte values.
///
/// Calls block (RocksDB does I/O): call them from a thread that may block, never from an async task.
pub trait BytesStore: Send + std::fmt::Debug {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;
    /// Puts one value.
    fn put(&mut self, key: Bytes, value: Bytes) -> Result<()>;
    /// Deletes one key.
    fn delete(&mut self, key: Bytes) -> Result<()>;
    /// Applies writes in order, atomically where the backend can.
    fn write(&mut self, writes: Vec<Write>) -> Result<()>;
    /// Entries in `range`, in ascending key order.
    fn scan(&self, range: &ScanRange) -> Result<KvIter<'_>>;
    /// An estimate of the number of keys (RocksDB's estimate counts overwritten keys until they
    /// are compacted away).
    fn approximate_len(&self) -> Result<u64>;
    /// Makes every write so far durable in the store's own files (for RocksDB: memtables to SST
    /// files). A checkpoint that names this store may be written only after this returns.
    fn flush(&mut self) -> Result<()>;
    /// Removes every entry (used before a restore from the beginning of the changelog).
    fn clear(&mut self) -> Result<()>;
    /// Whether the store keeps its data across a restart (RocksDB) or starts empty (memory).
    fn persistent(&self) -> bool;
    /// Applies records replayed from the changelog in a restore, in changelog order. A backend
    /// may hold them back until [`BytesStore::finish_restore`].
    fn restore(&mut self, replay: Replay) -> Result<()> {
        self.write(replay.writes()?)
    }
    /// Ends a restore: everything given to [`BytesStore::restore`] is in the store afterwards.
    fn finish_restore(&mut self) -> Result<()> {
        Ok(())
    }
    /// For time-segmented stores, the newest time written.
    fn observed_time(&self) -> Option<i64> {
        None
    }
    /// Waits until the backend's background work (RocksDB flushes and compactions) is done.
    fn wait_for_background_work(&self) -> Result<()> {
        Ok(())
    }
}

/// Lays `upper` (writes held back, `None` deleting) over `lower`: keys in both come from `upper`.
/// Both must be in ascending key order.
pub fn overlay<'a, U>(upper: U, lower: KvIter<'a>) -> KvIter<'a>
where
    U: Iterator<Item = (Bytes, Option<Bytes>)> + 'a,
{
    Box::new(Overlay { upper: upper.peekable(), lower: lower.peekable() })
}

struct Overlay<'a, U: Iterator<Item = (Bytes, Option<Bytes>)>> {
    upper: std::iter::Peekable<U>,
    lower: std::iter::Peekable<KvIter<'a>>,
}

impl<U: Iterator<Item = (Bytes, Option<Bytes>)>> Iterator for Overlay<'_, U> {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_upper = match (self.upper.peek(), self.lower.peek()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(_), Some(Err(_))) => false,
                (Some((uk, _)), Some(Ok((lk, _)))) => match uk.cmp(lk) {
                    std::cmp::Ordering::Less => true,
                    std::cmp::Ordering::Greater => false,
                    std::cmp::Ordering::Equal => {
                        self.lower.next();
                        true
                    }
                },
            };
            if take_upper {
                let (k, v) = self.upper.next().expect("peeked");
                match v {
                    Some(v) => return Some(Ok((k, v))),
                    None => continue,
                }
            }
            return self.lower.next();
        }
    }
}

/// Merges several iterators in ascending key order into one (for segments, whose key spaces do
/// not overlap in practice; on an equal key the earlier iterator's entry comes first).
pub fn merge_sorted<'a>(mut sources: Vec<KvIter<'a>>) -> KvIter<'a> {
    match sources.len() {
        0 => Box::new(std::iter::empty()),
        1 => sources.pop().expect("one"),
        _ => Box::new(Merge { sources: sources.into_iter().map(Iterator::peekable).collect() }),
    }
}

struct Merge<'a> {
    sources: Vec<std::iter::Peekable<KvIter<'a>>>,
}

impl Iterator for Merge<'_> {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<(usize, Bytes)> = None;
        for i in 0..self.sources.len() {
            match self.sources[i].peek() {
                None => {}
                Some(Err(_)) => return self.sources[i].next(),
                Some(Ok((k, _))) if best.as_ref().is_none_or(|(_, bk)| k < bk) => best = Some((i, k.clone())),
                Some(Ok(_)) => {}
            }
        }
        best.and_then(|(b, _)| self.sources[b].next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower(entries: &[(&'static str, &'static str)]) -> KvIter<'static> {
        Box::new(entries.iter().map(|(k, v)| Ok((Bytes::from(*k), Bytes::from(*v)))).collect::<Vec<_>>().into_iter())
    }

    #[test]
    fn overlay_puts_deletes_and_order() {
        let upper = vec![
            (Bytes::from("a"), Some(Bytes::from("A2"))),
            (Bytes::from("b"), None),
            (Bytes::from("d"), Some(Bytes::from("D"))),
        ];
        let merged: Vec<_> =
            overlay(upper.into_iter(), lower(&[("a", "A1"), ("b", "B"), ("c", "C")])).map(|r| r.unwrap()).collect();
        let keys: Vec<_> = merged.iter().map(|(k, v)| format!("{}={}", k.escape_ascii(), v.escape_ascii())).collect();
        assert_eq!(keys, ["a=A2", "c=C", "d=D"]);
    }

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_successor(b"ab"), Some(Bytes::from("ac")));
        assert_eq!(prefix_successor(b"a\xff"), Some(Bytes::from("b")));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        let r = ScanRange::prefix(b"ab");
        assert!(r.contains(b"ab") && r.contains(b"ab\xff\xff") && !r.contains(b"ac") && !r.contains(b"aa"));
    }

    #[test]
    fn merge_keeps_order() {
        let merged: Vec<_> = merge_sorted(vec![lower(&[("a", "1"), ("d", "1")]), lower(&[("b", "2"), ("c", "2")])])
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(merged, ["a", "b", "c", "d"]);
    }
}
