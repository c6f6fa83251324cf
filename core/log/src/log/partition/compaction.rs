//! What the compactor reads of a partition (its sealed segments, consistently) and how it
//! hands back a compacted replacement.

use super::*;

/// A synced segment as the compactor sees it.
#[derive(Debug, Clone)]
pub(crate) struct SealedSegment {
    pub(crate) base_offset: i64,
    pub(crate) next_offset: i64,
    pub(crate) file: Arc<File>,
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    pub(crate) max_timestamp: i64,
}

impl SealedSegment {
    /// Calls `f` for every batch, in order, reading through a buffer of one batch: memory stays
    /// bounded by `max.message.bytes`, whatever the segment size. Every batch's CRC is checked, so
    /// damaged data stops the caller instead of being copied on.
    pub(crate) fn for_each_batch(&self, mut f: impl FnMut(BatchView<'_>) -> Result<()>) -> Result<()> {
        use std::io::Read;
        // Positional reads: the file's cursor belongs to the appender.
        struct At<'a> {
            file: &'a File,
            position: u64,
            end: u64,
        }
        impl std::io::Read for At<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min((self.end - self.position) as usize);
                let n = self.file.read_at(&mut buf[..n], self.position)?;
                self.position += n as u64;
                Ok(n)
            }
        }
        let mut reader =
            std::io::BufReader::with_capacity(1 << 20, At { file: &self.file, position: 0, end: self.size });
        let mut buf = Vec::new();
        let mut position = 0u64;
        while position < self.size {
            let corrupt = |detail: String| Error::Corrupt { path: self.path.clone(), position, detail };
            buf.resize(batch::LENGTH_PREFIX_BYTES, 0);
            reader.read_exact(&mut buf).map_err(|e| corrupt(format!("cannot read a batch header: {e}")))?;
            let size = batch::batch_size_from_prefix(&buf).map_err(|e| corrupt(e.to_string()))?;
            buf.resize(size, 0);
            reader
                .read_exact(&mut buf[batch::LENGTH_PREFIX_BYTES..])
                .map_err(|e| corrupt(format!("cannot read a batch of {size} bytes: {e}")))?;
            let view = BatchView::parse(&buf).map_err(|e| corrupt(e.to_string()))?;
            view.check_crc().map_err(|e| corrupt(e.to_string()))?;
            f(view)?;
            position += size as u64;
        }
        Ok(())
    }
}

impl Partition {
    /// A consistent view of the segments below the recovery point (synced, never written again),
    /// for the compactor.
    pub(crate) fn sealed_segments(&self) -> Vec<SealedSegment> {
        let state = self.lock();
        let bases: Vec<i64> = state.segments.keys().copied().collect();
        let mut sealed = Vec::new();
        for pair in bases.windows(2) {
            let (base, next) = (pair[0], pair[1]);
            // Only below the recovery point the checkpoint holds: recovery trusts segments from
            // there on to be contiguous, which a rewritten segment is not.
            if next > state.persisted_recovery_point {
                break;
            }
            let s = &state.segments[&base];
            sealed.push(SealedSegment {
                base_offset: base,
                next_offset: next,
                file: s.file.clone(),
                path: s.path.clone(),
                size: s.size,
                max_timestamp: s.max_timestamp,
            });
        }
        sealed
    }

    /// Replaces the segments with bases `replaced` (contiguous, all below the recovery point) with
    /// the compacted `swap` file. Returns false (and removes the swap) when the segments changed
    /// meanwhile.
    pub(crate) fn install_compacted(&self, replaced: &[i64], swap: &Path, config: &TopicConfig) -> Result<bool> {
        let mut state = self.lock();
        let first = replaced[0];
        if replaced.iter().any(|b| !state.segments.contains_key(b)) {
            drop(state);
            remove_if_exists(swap)?;
            return Ok(false);
        }
        let next_after = state.segments.range(first + 1..).map(|(b, _)| *b).find(|b| !replaced.contains(b));
        for base in replaced {
            state.segments.remove(base);
        }
        for base in &replaced[1..] {
            Segment::delete_files(&self.dir, *base)?;
        }
        crate::failpoint::check("cleaner.mid_install", &self.dir)?;
        remove_if_exists(&segment::index_path(&self.dir, first))?;
        remove_if_exists(&segment::time_index_path(&self.dir, first))?;
        std::fs::rename(swap, segment::log_path(&self.dir, first)).at(swap)?;
        crate::failpoint::check("cleaner.before_index", &self.dir)?;
        let next = next_after.unwrap_or(i64::MAX);
        let (mut segment, _) = Segment::open_recover(&self.dir, first, false, config.index_interval_bytes, false)?;
        segment.next_offset = next;
        segment.indexes.sync()?;
        sync_dir(&self.dir)?;
        state.segments.insert(first, segment);
        Ok(true)
    }

    pub(crate) fn set_cleaner_offset(&self, offset: i64) -> Result<()> {
        {
            let mut state = self.lock();
            state.cleaner_offset = state.cleaner_offset.max(offset);
        }
        self.write_checkpoint()
    }
}
