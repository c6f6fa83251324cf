//! Time segments: how window and session stores drop expired data cheaply.
//!
//! Keys are placed in segments of `segment_interval_ms` by the time their [`KeySchema`] reads from
//! them (window start, session end). Each segment is its own store (its own RocksDB instance, in
//! directory `<store>.<segment start ms>`). Once the newest time seen has moved more than the
//! retention past a segment's end, the whole segment is dropped: a directory removal rather than a
//! delete per key. Writes older than the retention are dropped on arrival, as Kafka Streams does.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;

use crate::backend::Backend;
use crate::bytes::{merge_sorted, BytesStore, KvIter, ScanRange, Write};
use crate::error::{Error, Result};
use crate::keys::KeySchema;

/// A [`BytesStore`] made of time segments.
#[derive(Debug)]
pub struct Segments {
    name: String,
    dir: PathBuf,
    backend: Backend,
    schema: KeySchema,
    retention_ms: i64,
    interval_ms: i64,
    segments: BTreeMap<i64, Box<dyn BytesStore>>,
    observed_ms: i64,
    n_dropped_writes: u64,
}

impl Segments {
    /// Opens the segments of store `name` under `dir`, keeping `retention_ms` of time.
    pub fn open(
        name: &str,
        dir: impl Into<PathBuf>,
        backend: Backend,
        schema: KeySchema,
        retention_ms: i64,
        interval_ms: i64,
    ) -> Result<Self> {
        let dir = dir.into();
        if retention_ms <= 0 || interval_ms <= 0 {
            return Err(Error::InvalidConfig {
                key: "retention.ms",
                value: format!("retention {retention_ms}, segment interval {interval_ms}"),
                reason: "window and session stores need a positive retention and segment interval".into(),
            });
        }
        let mut segments = BTreeMap::new();
        let mut observed_ms = i64::MIN;
        if backend.persistent() && dir.exists() {
            let prefix = format!("{name}.");
            for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                let file_name = entry.file_name();
                let Some(start) =
                    file_name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|s| s.parse::<i64>().ok())
                else {
                    continue;
                };
                let id = start.div_euclid(interval_ms);
                segments.insert(id, backend.open(name, &entry.path())?);
                observed_ms = observed_ms.max(start);
            }
        }
        Ok(Segments {
            name: name.to_string(),
            dir,
            backend,
            schema,
            retention_ms,
            interval_ms,
            segments,
            observed_ms,
            n_dropped_writes: 0,
        })
    }

    /// The segment interval Kafka Streams would pick: half the retention, at least a minute.
    pub fn default_interval_ms(retention_ms: i64) -> i64 {
        (retention_ms / 2).max(60_000)
    }

    /// The newest time written so far (a lower bound after a restart: the newest segment's start).
    pub fn observed_ms(&self) -> i64 {
        self.observed_ms
    }

    /// The oldest time still kept.
    pub fn min_live_ms(&self) -> i64 {
        self.observed_ms.saturating_sub(self.retention_ms).saturating_add(1)
    }

    /// Writes dropped because they were older than the retention.
    pub fn n_dropped_writes(&self) -> u64 {
        self.n_dropped_writes
    }

    fn segment_path(&self, id: i64) -> PathBuf {
        self.dir.join(format!("{}.{}", self.name, id * self.interval_ms))
    }

    fn segment_mut(&mut self, id: i64) -> Result<&mut Box<dyn BytesStore>> {
        if !self.segments.contains_key(&id) {
            let store = self.backend.open(&self.name, &self.segment_path(id))?;
            self.segments.insert(id, store);
        }
        Ok(self.segments.get_mut(&id).expect("inserted"))
    }

    /// Moves observed time to `t` and drops segments wholly older than the retention.
    fn observe(&mut self, t: i64) -> Result<()> {
        if t <= self.observed_ms {
            return Ok(());
        }
        self.observed_ms = t;
        let min_live = self.min_live_ms();
        let expired: Vec<i64> =
            self.segments.keys().copied().take_while(|id| (id + 1) * self.interval_ms - 1 < min_live).collect();
        for id in expired {
            let store = self.segments.remove(&id).expect("listed");
            let path = self.segment_path(id);
            tracing::debug!(store = %self.name, segment_start_ms = id * self.interval_ms, "dropping expired segment");
            self.backend.destroy(&self.name, &path, store)?;
        }
        Ok(())
    }

    /// Segment id for `key`, or `None` when the key is older than the retention.
    fn place(&mut self, key: &[u8]) -> Result<Option<i64>> {
        let t = self.schema.time_of(key)?;
        self.observe(t)?;
        if t < self.min_live_ms() {
            self.n_dropped_writes += 1;
            return Ok(None);
        }
        Ok(Some(t.div_euclid(self.interval_ms)))
    }
}

impl BytesStore for Segments {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let id = self.schema.time_of(key)?.div_euclid(self.interval_ms);
        match self.segments.get(&id) {
            Some(s) => s.get(key),
            None => Ok(None),
        }
    }

    fn put(&mut self, key: Bytes, value: Bytes) -> Result<()> {
        match self.place(&key)? {
            Some(id) => self.segment_mut(id)?.put(key, value),
            None => Ok(()),
        }
    }

    fn delete(&mut self, key: Bytes) -> Result<()> {
        let id = self.schema.time_of(&key)?.div_euclid(self.interval_ms);
        match self.segments.get_mut(&id) {
            Some(s) => s.delete(key),
            None => Ok(()),
        }
    }

    fn write(&mut self, writes: Vec<Write>) -> Result<()> {
        let mut by_segment: BTreeMap<i64, Vec<Write>> = BTreeMap::new();
        for (k, v) in writes {
            if v.is_none() {
                let id = self.schema.time_of(&k)?.div_euclid(self.interval_ms);
                by_segment.entry(id).or_default().push((k, v));
            } else if let Some(id) = self.place(&k)? {
                by_segment.entry(id).or_default().push((k, v));
            }
        }
        // A later write of the batch can have moved time on and expired an earlier one's segment.
        let min_live = self.min_live_ms();
        for (id, writes) in by_segment {
            if (id + 1).saturating_mul(self.interval_ms) - 1 < min_live {
                continue;
            }
            self.segment_mut(id)?.write(writes)?;
        }
        Ok(())
    }

    fn scan(&self, range: &ScanRange) -> Result<KvIter<'_>> {
        let ids: Vec<&Box<dyn BytesStore>> = match range.time {
            Some((min, max)) if min <= max => self
                .segments
                .range(min.div_euclid(self.interval_ms)..=max.div_euclid(self.interval_ms))
                .map(|(_, s)| s)
                .collect(),
            Some(_) => Vec::new(),
            None => self.segments.values().collect(),
        };
        let mut iters = Vec::with_capacity(ids.len());
        for s in ids {
            iters.push(s.scan(range)?);
        }
        Ok(merge_sorted(iters))
    }

    fn approximate_len(&self) -> Result<u64> {
        let mut n = 0;
        for s in self.segments.values() {
            n += s.approximate_len()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> Result<()> {
        for s in self.segments.values_mut() {
            s.flush()?;
        }
        Ok(())
    }

    fn clear(&mut self) -> Result<()> {
        for (id, store) in std::mem::take(&mut self.segments) {
            let path = self.segment_path(id);
            self.backend.destroy(&self.name, &path, store)?;
        }
        self.observed_ms = i64::MIN;
        Ok(())
    }

    fn persistent(&self) -> bool {
        self.backend.persistent()
    }

    fn observed_time(&self) -> Option<i64> {
        Some(self.observed_ms)
    }
}
