//! The in-memory backend: an ordered map, empty at every start, rebuilt from the changelog.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::bytes::{BytesStore, KvIter, ScanRange, Write};
use crate::error::Result;

/// A [`BytesStore`] in an ordered map.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: BTreeMap<Bytes, Bytes>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }
}

impl BytesStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: Bytes, value: Bytes) -> Result<()> {
        self.map.insert(key, value);
        Ok(())
    }

    fn delete(&mut self, key: Bytes) -> Result<()> {
        self.map.remove(&key);
        Ok(())
    }

    fn write(&mut self, writes: Vec<Write>) -> Result<()> {
        for (k, v) in writes {
            match v {
                Some(v) => self.map.insert(k, v),
                None => self.map.remove(&k),
            };
        }
        Ok(())
    }

    fn scan(&self, range: &ScanRange) -> Result<KvIter<'_>> {
        if range.is_empty() {
            return Ok(Box::new(std::iter::empty()));
        }
        Ok(Box::new(self.map.range::<[u8], _>(range.as_slices()).map(|(k, v)| Ok((k.clone(), v.clone())))))
    }

    fn approximate_len(&self) -> Result<u64> {
        Ok(self.map.len() as u64)
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn clear(&mut self) -> Result<()> {
        self.map.clear();
        Ok(())
    }

    fn persistent(&self) -> bool {
        false
    }
}
