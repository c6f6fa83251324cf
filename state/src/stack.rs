//! The layers of one store: record cache, changelog, backend.

use bytes::Bytes;
use freshet_core::TopicPartition;

use crate::bytes::{overlay, BytesStore, KvIter, ScanRange, Write};
use crate::cache::RecordCache;
use crate::changelog::{restore, ChangeLogger, RestoreProgress};
use crate::error::Result;

/// One store's layers, top to bottom: an optional [`RecordCache`], an optional [`ChangeLogger`]
/// and the backend store. Reads look top-down; writes flow down at eviction and commit.
#[derive(Debug)]
pub(crate) struct StoreStack {
    pub(crate) name: String,
    cache: Option<RecordCache>,
    log: Option<ChangeLogger>,
    inner: Box<dyn BytesStore>,
    report_evicted: bool,
    evicted: Vec<Write>,
    scratch: Vec<Write>,
}

impl StoreStack {
    pub(crate) fn new(
        name: &str,
        inner: Box<dyn BytesStore>,
        log: Option<ChangeLogger>,
        cache_bytes: Option<usize>,
        report_evicted: bool,
    ) -> Self {
        StoreStack {
            name: name.to_string(),
            cache: cache_bytes.map(RecordCache::new),
            log,
            inner,
            report_evicted,
            evicted: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub(crate) fn inner(&self) -> &dyn BytesStore {
        &*self.inner
    }

    pub(crate) fn cache_stats(&self) -> Option<(usize, u64, u64)> {
        self.cache.as_ref().map(|c| {
            let (h, m) = c.hits_and_misses();
            (c.used_bytes(), h, m)
        })
    }

    /// Writes `writes` below the cache, leaving the vector empty (its capacity is reused).
    fn write_down(&mut self, writes: &mut Vec<Write>) -> Result<()> {
        match (&mut self.log, writes.len()) {
            (_, 0) => Ok(()),
            (Some(log), _) => log.record(std::mem::take(writes), &mut *self.inner),
            (None, 1) => match writes.pop().expect("one") {
                (k, Some(v)) => self.inner.put(k, v),
                (k, None) => self.inner.delete(k),
            },
            (None, _) => self.inner.write(std::mem::take(writes)),
        }
    }

    /// Lets the cache evict into the reused scratch vector, then writes the evicted entries down.
    fn with_evictions(&mut self, f: impl FnOnce(&mut RecordCache, &mut Vec<Write>)) -> Result<()> {
        let mut evicted = std::mem::take(&mut self.scratch);
        if let Some(cache) = &mut self.cache {
            f(cache, &mut evicted);
        }
        self.report(&evicted);
        let result = self.write_down(&mut evicted);
        self.scratch = evicted;
        result
    }

    /// Remembers what the cache wrote down, when the caller asked for it.
    fn report(&mut self, writes: &[Write]) {
        if self.report_evicted {
            self.evicted.extend(writes.iter().cloned());
        }
    }

    pub(crate) fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>> {
        if let Some(cache) = &mut self.cache {
            if let Some(v) = cache.get(key) {
                return Ok(v);
            }
        }
        let value = match self.log.as_ref().and_then(|l| l.pending(key)) {
            Some(v) => v,
            None => self.inner.get(key)?,
        };
        if self.cache.is_some() {
            let cached = value.clone();
            self.with_evictions(|cache, evicted| cache.put_clean(key, cached, evicted))?;
        }
        Ok(value)
    }

    /// Writes `value` (`None` deletes).
    pub(crate) fn put(&mut self, key: Bytes, value: Option<Bytes>) -> Result<()> {
        if self.cache.is_some() {
            return self.with_evictions(|cache, evicted| cache.put(key, value, evicted));
        }
        match (&mut self.log, value) {
            (Some(log), value) => log.record_one(key, value, &mut *self.inner),
            (None, Some(v)) => self.inner.put(key, v),
            (None, None) => self.inner.delete(key),
        }
    }

    pub(crate) fn put_all(&mut self, mut writes: Vec<Write>) -> Result<()> {
        if self.cache.is_some() {
            for (k, v) in writes {
                self.put(k, v)?;
            }
            return Ok(());
        }
        self.write_down(&mut writes)
    }

    pub(crate) fn scan(&self, range: &ScanRange) -> Result<KvIter<'_>> {
        let mut iter = self.inner.scan(range)?;
        if let Some(log) = &self.log {
            iter = overlay(log.pending_range(range), iter);
        }
        if let Some(cache) = &self.cache {
            iter = overlay(cache.range(range), iter);
        }
        Ok(iter)
    }

    pub(crate) fn approximate_len(&self) -> Result<u64> {
        self.inner.approximate_len()
    }

    /// Writes every dirty cache entry down; they are reported as evicted.
    pub(crate) fn flush_cache(&mut self) -> Result<()> {
        if let Some(cache) = &mut self.cache {
            let mut dirty = cache.take_dirty();
            self.report(&dirty);
            self.write_down(&mut dirty)?;
        }
        Ok(())
    }

    /// Cache flush, changelog flush, backend flush. Returns the changelog offset the store now
    /// holds everything before, for the checkpoint.
    pub(crate) fn commit(&mut self) -> Result<Option<(TopicPartition, i64)>> {
        self.flush_cache()?;
        if let Some(log) = &mut self.log {
            log.flush(&mut *self.inner)?;
        }
        self.inner.flush()?;
        Ok(self.log.as_ref().and_then(|l| l.next_offset().map(|o| (l.topic_partition().clone(), o))))
    }

    /// Applies what the changelog gained since this store last wrote or restored (a standby
    /// copy following its active task): from the changelog position to the changelog's current
    /// end. For a store nothing else writes to; `None` when there was nothing to apply.
    pub(crate) fn catch_up(&mut self) -> Result<Option<RestoreProgress>> {
        let Some(log) = &mut self.log else { return Ok(None) };
        let tp = log.topic_partition().clone();
        let changelogs = log.changelogs().clone();
        let (log_start, end) = changelogs.bounds(&self.name, &tp)?;
        let from = match log.next_offset() {
            Some(from) if from >= log_start && from <= end => from,
            // The changelog lost what the store had not applied yet (retention, deleted
            // records): rebuilt from what is left, as a restore would.
            _ => {
                self.inner.clear()?;
                log_start
            }
        };
        if from == end {
            return Ok(None);
        }
        let progress = restore(&self.name, &changelogs, &tp, from, end, &mut *self.inner, None)?;
        log.set_next_offset(end);
        Ok(Some(progress))
    }

    pub(crate) fn take_evicted(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.evicted)
    }
}
