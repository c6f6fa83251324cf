//! One segment: a `.log` file of record batches, its sparse offset index and its time index.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{batch_size_from_prefix, BatchView, BATCH_HEADER_BYTES, LENGTH_PREFIX_BYTES};
use crate::error::{Error, IoContext, Result};

/// Bytes of one offset index entry: relative offset (u32) and position (u32).
pub(crate) const OFFSET_ENTRY_BYTES: u64 = 8;
/// Bytes of one time index entry: timestamp (i64) and relative offset (u32).
pub(crate) const TIME_ENTRY_BYTES: u64 = 12;

/// File name stem of the segment starting at `base_offset`: twenty digits, so names sort by offset.
pub(crate) fn stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

pub(crate) fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.log", stem(base_offset)))
}
/// A committed compaction output replacing the segments with bases in `[base, end)`.
pub(crate) fn swap_path(dir: &Path, base_offset: i64, end_offset: i64) -> PathBuf {
    dir.join(format!("{}.{}.swap", stem(base_offset), stem(end_offset)))
}

/// The `(base, end)` of a swap file name.
pub(crate) fn parse_swap_name(name: &str) -> Option<(i64, i64)> {
    let (base, end) = name.strip_suffix(".swap")?.split_once('.')?;
    (base.len() == 20 && end.len() == 20).then(|| Some((base.parse().ok()?, end.parse().ok()?))).flatten()
}

pub(crate) fn index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.index", stem(base_offset)))
}
pub(crate) fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.timeindex", stem(base_offset)))
}

/// The header fields of a batch that reading and recovery need, read with one `pread`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchHeader {
    pub(crate) position: u64,
    pub(crate) size: u64,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
    /// The batch attributes (compression, timestamp type, transactional and control bits).
    pub(crate) attributes: i16,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
}

impl BatchHeader {
    /// Whether the batch belongs to a transaction (data or marker).
    pub(crate) fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Whether the batch is a control batch (a transaction marker).
    pub(crate) fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// An offset index entry: the batch starting at `position` has base offset `base + relative`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

/// A time index entry: every record at an offset below `base + relative_offset` has a timestamp at
/// most `max_timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) max_timestamp: i64,
    pub(crate) relative_offset: u32,
}

/// A segment's indexes. The active segment keeps its entries in memory and its files open; a sealed
/// segment keeps neither: a look-up opens the files, binary-searches them and closes them, so memory
/// and file descriptors do not grow with the number of segments (only the `.log` stays open).
#[derive(Debug)]
pub(crate) struct Indexes {
    files: Option<IndexFiles>,
    offset_path: PathBuf,
    time_path: PathBuf,
    n_offset_entries: u64,
    n_time_entries: u64,
    memory: Option<(Vec<OffsetEntry>, Vec<TimeEntry>)>,
    /// Whether every entry has been checked (or written by this process).
    verified: bool,
}

#[derive(Debug)]
struct IndexFiles {
    offset: File,
    time: File,
}

enum Handles<'a> {
    Borrowed(&'a IndexFiles),
    Owned(IndexFiles),
}

/// Read access to a segment's index entries, from memory or from the files.
pub(crate) struct IndexReader<'a> {
    indexes: &'a Indexes,
    handles: Option<Handles<'a>>,
}

impl IndexReader<'_> {
    fn files(&self) -> &IndexFiles {
        match self.handles.as_ref().expect("a reader without memory has files") {
            Handles::Borrowed(f) => f,
            Handles::Owned(f) => f,
        }
    }

    fn offset_entry(&self, i: u64) -> Result<OffsetEntry> {
        if let Some((entries, _)) = &self.indexes.memory {
            return Ok(entries[i as usize]);
        }
        let mut buf = [0u8; OFFSET_ENTRY_BYTES as usize];
        self.files().offset.read_exact_at(&mut buf, i * OFFSET_ENTRY_BYTES).at(&self.indexes.offset_path)?;
        Ok(OffsetEntry {
            relative_offset: u32::from_be_bytes(buf[0..4].try_into().expect("4")),
            position: u32::from_be_bytes(buf[4..8].try_into().expect("4")),
        })
    }

    fn time_entry(&self, i: u64) -> Result<TimeEntry> {
        if let Some((_, entries)) = &self.indexes.memory {
            return Ok(entries[i as usize]);
        }
        let mut buf = [0u8; TIME_ENTRY_BYTES as usize];
        self.files().time.read_exact_at(&mut buf, i * TIME_ENTRY_BYTES).at(&self.indexes.time_path)?;
        Ok(TimeEntry {
            max_timestamp: i64::from_be_bytes(buf[0..8].try_into().expect("8")),
            relative_offset: u32::from_be_bytes(buf[8..12].try_into().expect("4")),
        })
    }

    /// The last entry whose relative offset is at most `relative`.
    fn floor_by_offset(&self, relative: u32) -> Result<Option<OffsetEntry>> {
        let (mut lo, mut hi) = (0u64, self.indexes.n_offset_entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.offset_entry(mid)?.relative_offset <= relative {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            Ok(None)
        } else {
            self.offset_entry(lo - 1).map(Some)
        }
    }

    /// The last time entry whose max timestamp is below `timestamp`.
    fn last_below_timestamp(&self, timestamp: i64) -> Result<Option<TimeEntry>> {
        let (mut lo, mut hi) = (0u64, self.indexes.n_time_entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.time_entry(mid)?.max_timestamp < timestamp {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            Ok(None)
        } else {
            self.time_entry(lo - 1).map(Some)
        }
    }

    fn last_time_entry(&self) -> Result<Option<TimeEntry>> {
        match self.indexes.n_time_entries {
            0 => Ok(None),
            n => self.time_entry(n - 1).map(Some),
        }
    }

    fn last_offset_entry(&self) -> Result<Option<OffsetEntry>> {
        match self.indexes.n_offset_entries {
            0 => Ok(None),
            n => self.offset_entry(n - 1).map(Some),
        }
    }
}

fn open_index_file(path: &Path, truncate: bool) -> Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(truncate).open(path).at(path)
}

impl Indexes {
    fn open(dir: &Path, base_offset: i64, truncate: bool) -> Result<Self> {
        let offset_path = index_path(dir, base_offset);
        let time_path = time_index_path(dir, base_offset);
        let offset = open_index_file(&offset_path, truncate)?;
        let time = open_index_file(&time_path, truncate)?;
        let n_offset_entries = offset.metadata().at(&offset_path)?.len() / OFFSET_ENTRY_BYTES;
        let n_time_entries = time.metadata().at(&time_path)?.len() / TIME_ENTRY_BYTES;
        Ok(Indexes {
            files: Some(IndexFiles { offset, time }),
            offset_path,
            time_path,
            n_offset_entries,
            n_time_entries,
            memory: None,
            verified: truncate,
        })
    }

    /// Starts both indexes afresh (recovery rebuilds them).
    fn reset(&mut self) -> Result<()> {
        self.files = Some(IndexFiles {
            offset: open_index_file(&self.offset_path, true)?,
            time: open_index_file(&self.time_path, true)?,
        });
        self.n_offset_entries = 0;
        self.n_time_entries = 0;
        self.memory = Some((Vec::new(), Vec::new()));
        Ok(())
    }

    /// Drops the entries held in memory and closes the files: the segment is sealed.
    fn close(&mut self) {
        self.memory = None;
        self.files = None;
    }

    pub(crate) fn reader(&self) -> Result<IndexReader<'_>> {
        let handles = match (&self.memory, &self.files) {
            (Some(_), _) => None,
            (None, Some(files)) => Some(Handles::Borrowed(files)),
            (None, None) => Some(Handles::Owned(IndexFiles {
                offset: File::open(&self.offset_path).at(&self.offset_path)?,
                time: File::open(&self.time_path).at(&self.time_path)?,
            })),
        };
        Ok(IndexReader { indexes: self, handles })
    }

    fn load_into_memory(&mut self) -> Result<()> {
        if self.memory.is_some() {
            return Ok(());
        }
        let reader = self.reader()?;
        let offsets = (0..self.n_offset_entries).map(|i| reader.offset_entry(i)).collect::<Result<Vec<_>>>()?;
        let times = (0..self.n_time_entries).map(|i| reader.time_entry(i)).collect::<Result<Vec<_>>>()?;
        self.memory = Some((offsets, times));
        Ok(())
    }

    fn writable(&mut self) -> Result<&IndexFiles> {
        if self.files.is_none() {
            self.files = Some(IndexFiles {
                offset: open_index_file(&self.offset_path, false)?,
                time: open_index_file(&self.time_path, false)?,
            });
        }
        Ok(self.files.as_ref().expect("just opened"))
    }

    fn push_offset(&mut self, entry: OffsetEntry) -> Result<()> {
        let mut buf = [0u8; 8];
        buf[0..4].copy_from_slice(&entry.relative_offset.to_be_bytes());
        buf[4..8].copy_from_slice(&entry.position.to_be_bytes());
        let at = self.n_offset_entries * OFFSET_ENTRY_BYTES;
        self.writable()?.offset.write_all_at(&buf, at).at(&self.offset_path)?;
        self.n_offset_entries += 1;
        if let Some((entries, _)) = &mut self.memory {
            entries.push(entry);
        }
        Ok(())
    }

    fn push_time(&mut self, entry: TimeEntry) -> Result<()> {
        let mut buf = [0u8; 12];
        buf[0..8].copy_from_slice(&entry.max_timestamp.to_be_bytes());
        buf[8..12].copy_from_slice(&entry.relative_offset.to_be_bytes());
        let at = self.n_time_entries * TIME_ENTRY_BYTES;
        self.writable()?.time.write_all_at(&buf, at).at(&self.time_path)?;
        self.n_time_entries += 1;
        if let Some((_, entries)) = &mut self.memory {
            entries.push(entry);
        }
        Ok(())
    }

    /// Syncs both index files (opening them if the segment is sealed).
    pub(crate) fn sync(&self) -> Result<()> {
        let (offset, time) = self.files()?;
        offset.sync_data().at(&self.offset_path)?;
        time.sync_data().at(&self.time_path)
    }

    /// Handles to both files, for a sync outside the partition lock.
    pub(crate) fn files(&self) -> Result<(File, File)> {
        match &self.files {
            Some(f) => Ok((f.offset.try_clone().at(&self.offset_path)?, f.time.try_clone().at(&self.time_path)?)),
            None => Ok((
                File::open(&self.offset_path).at(&self.offset_path)?,
                File::open(&self.time_path).at(&self.time_path)?,
            )),
        }
    }

    fn offset_index_bytes(&self) -> u64 {
        self.n_offset_entries * OFFSET_ENTRY_BYTES
    }

    fn last_time_entry(&self) -> Result<Option<TimeEntry>> {
        self.reader()?.last_time_entry()
    }

    fn last_offset_entry(&self) -> Result<Option<OffsetEntry>> {
        self.reader()?.last_offset_entry()
    }
}

/// What opening a segment found and did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SegmentRecovery {
    pub(crate) bytes_truncated: u64,
    pub(crate) indexes_rebuilt: bool,
    pub(crate) valid: bool,
}

/// One segment of a partition.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<File>,
    /// Bytes of whole, valid batches.
    pub(crate) size: u64,
    /// The offset after the last batch (`base_offset` when empty).
    pub(crate) next_offset: i64,
    /// Largest timestamp of any batch (-1 when empty or unknown).
    pub(crate) max_timestamp: i64,
    /// The largest timestamp of the segment's first batch: `segment.ms` counts from it.
    pub(crate) rolling_timestamp: Option<i64>,
    pub(crate) indexes: Indexes,
    bytes_since_index: u64,
    indexes_damaged: bool,
    /// Whether batches follow each other without gaps (never compacted): recovery then also
    /// rejects a batch whose base offset is not the previous batch's next offset, which catches
    /// damage to the base offset field (the CRC does not cover it).
    pub(crate) contiguous: bool,
    /// Largest timestamp of the batches before the last time index entry check point.
    max_timestamp_indexed: i64,
}

impl Segment {
    /// Creates an empty segment.
    pub(crate) fn create(dir: &Path, base_offset: i64) -> Result<Self> {
        let path = log_path(dir, base_offset);
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path).at(&path)?;
        let mut indexes = Indexes::open(dir, base_offset, true)?;
        indexes.load_into_memory()?;
        Ok(Segment {
            base_offset,
            path,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            rolling_timestamp: None,
            indexes,
            bytes_since_index: 0,
            indexes_damaged: false,
            contiguous: true,
            max_timestamp_indexed: -1,
        })
    }

    /// Opens an existing segment's files, bookkeeping not yet filled in: `size` is the file
    /// length and `next_offset` the base. `truncate_indexes` starts the indexes afresh.
    fn open_existing(dir: &Path, base_offset: i64, truncate_indexes: bool, contiguous: bool) -> Result<Self> {
        let path = log_path(dir, base_offset);
        let file = OpenOptions::new().read(true).write(true).open(&path).at(&path)?;
        let size = file.metadata().at(&path)?.len();
        let indexes = Indexes::open(dir, base_offset, truncate_indexes)?;
        Ok(Segment {
            base_offset,
            path,
            file: Arc::new(file),
            size,
            next_offset: base_offset,
            max_timestamp: -1,
            rolling_timestamp: None,
            indexes,
            bytes_since_index: 0,
            indexes_damaged: false,
            contiguous,
            max_timestamp_indexed: -1,
        })
    }

    /// Opens a sealed segment that is known to have been synced: trusts its indexes when they pass a
    /// cheap sanity check, and rebuilds them otherwise. `next_offset` is the next segment's base.
    pub(crate) fn open_sealed(
        dir: &Path,
        base_offset: i64,
        next_offset: i64,
        interval_bytes: u64,
        contiguous: bool,
    ) -> Result<(Self, SegmentRecovery)> {
        let mut segment = Self::open_existing(dir, base_offset, false, contiguous)?;
        let len = segment.size;
        segment.next_offset = next_offset;
        if segment.indexes_look_sane(len, true)? {
            if let Some(last) = segment.indexes.last_time_entry()? {
                segment.max_timestamp = last.max_timestamp;
                segment.max_timestamp_indexed = last.max_timestamp;
            }
            segment.indexes.close();
            return Ok((segment, SegmentRecovery { valid: true, ..Default::default() }));
        }
        let recovery = segment.recover(false, interval_bytes)?;
        Ok((segment, recovery))
    }

    /// Opens the active segment after a clean shutdown: indexes are trusted, and only the bytes after
    /// the last index entry are scanned to find the end offset and largest timestamp.
    pub(crate) fn open_active_clean(
        dir: &Path,
        base_offset: i64,
        interval_bytes: u64,
        contiguous: bool,
    ) -> Result<(Self, SegmentRecovery)> {
        let mut segment = Self::open_existing(dir, base_offset, false, contiguous)?;
        let len = segment.size;
        if !segment.indexes_look_sane(len, false)? {
            let recovery = segment.recover(true, interval_bytes)?;
            return Ok((segment, recovery));
        }
        let start = segment.indexes.last_offset_entry()?.map_or(0, |e| u64::from(e.position));
        let mut position = start;
        let mut max_ts = segment.indexes.last_time_entry()?.map_or(-1, |e| e.max_timestamp);
        segment.max_timestamp_indexed = max_ts;
        while position < len {
            match segment.read_header(position, len)? {
                Some(header) => {
                    max_ts = max_ts.max(header.max_timestamp);
                    segment.next_offset = header.last_offset + 1;
                    position += header.size;
                }
                None => break,
            }
        }
        if position != len {
            // A clean shutdown never leaves a partial batch; do a full recovery instead.
            let recovery = segment.recover(true, interval_bytes)?;
            return Ok((segment, recovery));
        }
        segment.bytes_since_index = len - start;
        segment.max_timestamp = max_ts;
        segment.rolling_timestamp = segment.first_batch_timestamp()?;
        segment.indexes.load_into_memory()?;
        Ok((segment, SegmentRecovery { valid: true, ..Default::default() }))
    }

    /// Opens a segment that may have a torn or corrupt tail: every batch is checked (length, magic,
    /// CRC), the file is truncated after the last valid one, and the indexes are rebuilt.
    pub(crate) fn open_recover(
        dir: &Path,
        base_offset: i64,
        active: bool,
        interval_bytes: u64,
        contiguous: bool,
    ) -> Result<(Self, SegmentRecovery)> {
        let mut segment = Self::open_existing(dir, base_offset, true, contiguous)?;
        let recovery = segment.recover(active, interval_bytes)?;
        Ok((segment, recovery))
    }

    fn indexes_look_sane(&self, log_len: u64, sealed: bool) -> Result<bool> {
        let offset_len = std::fs::metadata(&self.indexes.offset_path).at(&self.indexes.offset_path)?.len();
        let time_len = std::fs::metadata(&self.indexes.time_path).at(&self.indexes.time_path)?.len();
        if offset_len % OFFSET_ENTRY_BYTES != 0 || time_len % TIME_ENTRY_BYTES != 0 {
            return Ok(false);
        }
        if sealed && log_len > 0 && time_len == 0 {
            // A sealed segment always ends with a time entry; an empty time index means it was lost.
            return Ok(false);
        }
        if let Some(last) = self.indexes.last_offset_entry()? {
            if u64::from(last.position) >= log_len.max(1) {
                return Ok(false);
            }
            // The entry must point at a batch whose base offset it names.
            match self.read_header(u64::from(last.position), log_len) {
                Ok(Some(h)) if h.base_offset == self.base_offset + i64::from(last.relative_offset) => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Rescans the whole file, truncating at the first invalid batch and rebuilding the indexes.
    fn recover(&mut self, active: bool, interval_bytes: u64) -> Result<SegmentRecovery> {
        let len = self.file.metadata().at(&self.path)?.len();
        self.indexes.reset()?;
        self.size = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.max_timestamp_indexed = -1;
        self.bytes_since_index = 0;
        let mut position = 0u64;
        let mut buf = Vec::new();
        while position < len {
            let Some(header) = self.read_header(position, len).ok().flatten() else { break };
            let out_of_order = if self.contiguous {
                header.base_offset != self.next_offset
            } else {
                header.base_offset < self.next_offset
            };
            if out_of_order
                || header.last_offset < header.base_offset
                || header.last_offset - self.base_offset > i64::from(u32::MAX)
            {
                break;
            }
            buf.resize(header.size as usize, 0);
            if self.file.read_exact_at(&mut buf, position).is_err() {
                break;
            }
            let view = BatchView::parse(&buf).expect("header was checked");
            if view.magic() != crate::batch::MAGIC_V2 || view.check_crc().is_err() {
                break;
            }
            self.index_batch(position, &header, interval_bytes);
            position += header.size;
        }
        let truncated = len - position;
        if truncated > 0 {
            self.file.set_len(position).at(&self.path)?;
        }
        self.rolling_timestamp = self.first_batch_timestamp()?;
        if !active {
            self.seal(interval_bytes)?;
        }
        Ok(SegmentRecovery { bytes_truncated: truncated, indexes_rebuilt: true, valid: truncated == 0 })
    }

    fn first_batch_timestamp(&self) -> Result<Option<i64>> {
        if self.size == 0 {
            return Ok(None);
        }
        Ok(self.read_header(0, self.size)?.map(|h| h.max_timestamp))
    }

    /// Reads the header of the batch at `position`, or `None` when the bytes up to `limit` do not
    /// hold a whole batch.
    pub(crate) fn read_header(&self, position: u64, limit: u64) -> Result<Option<BatchHeader>> {
        if position + BATCH_HEADER_BYTES as u64 > limit {
            return Ok(None);
        }
        let mut buf = [0u8; BATCH_HEADER_BYTES];
        self.file.read_exact_at(&mut buf, position).at(&self.path)?;
        let size = match batch_size_from_prefix(&buf[..LENGTH_PREFIX_BYTES]) {
            Ok(size) => size as u64,
            Err(e) => {
                return Err(Error::Corrupt { path: self.path.clone(), position, detail: e.to_string() });
            }
        };
        if position + size > limit {
            return Ok(None);
        }
        let base_offset = i64::from_be_bytes(buf[0..8].try_into().expect("8"));
        let last_delta = i32::from_be_bytes(buf[23..27].try_into().expect("4"));
        let max_timestamp = i64::from_be_bytes(buf[35..43].try_into().expect("8"));
        let attributes = i16::from_be_bytes(buf[21..23].try_into().expect("2"));
        Ok(Some(BatchHeader {
            position,
            size,
            base_offset,
            last_offset: base_offset + i64::from(last_delta),
            max_timestamp,
            attributes,
            producer_id: i64::from_be_bytes(buf[43..51].try_into().expect("8")),
            producer_epoch: i16::from_be_bytes(buf[51..53].try_into().expect("2")),
            base_sequence: i32::from_be_bytes(buf[53..57].try_into().expect("4")),
        }))
    }

    /// Reads the whole batch a header describes.
    pub(crate) fn read_batch(&self, header: &BatchHeader) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; header.size as usize];
        self.file.read_exact_at(&mut buf, header.position).at(&self.path)?;
        Ok(buf)
    }

    /// Records a batch written at `position` in the indexes and in the segment's bookkeeping. An
    /// index write that fails is logged and the indexes are rebuilt when the segment is sealed: the
    /// batch itself is written and must be accounted for.
    pub(crate) fn index_batch(&mut self, position: u64, header: &BatchHeader, interval_bytes: u64) {
        // The first batch needs no entry: a look-up that finds none starts at position 0.
        let due = self.size > 0 && self.bytes_since_index >= interval_bytes;
        if due && !self.indexes_damaged {
            let relative_offset = (header.base_offset - self.base_offset) as u32;
            let mut result = self.indexes.push_offset(OffsetEntry { relative_offset, position: position as u32 });
            if result.is_ok() && self.max_timestamp > self.max_timestamp_indexed {
                result = self.indexes.push_time(TimeEntry { max_timestamp: self.max_timestamp, relative_offset });
                self.max_timestamp_indexed = self.max_timestamp;
            }
            if let Err(error) = result {
                tracing::warn!(segment = %self.path.display(), %error, "index write failed; the index will be rebuilt");
                self.indexes_damaged = true;
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.size;
        self.size = position + header.size;
        self.next_offset = header.last_offset + 1;
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        if self.rolling_timestamp.is_none() {
            self.rolling_timestamp = Some(header.max_timestamp);
        }
    }

    /// Writes the final time index entry, which records the segment's largest timestamp, and drops
    /// the in-memory index copy. The caller syncs the files.
    pub(crate) fn seal(&mut self, interval_bytes: u64) -> Result<()> {
        if self.indexes_damaged {
            self.indexes_damaged = false;
            self.recover(true, interval_bytes)?;
        }
        if self.size > 0 {
            let relative_offset = (self.next_offset - self.base_offset) as u32;
            let last = self.indexes.last_time_entry()?;
            if last.is_none_or(|e| e.relative_offset != relative_offset) {
                self.indexes.push_time(TimeEntry { max_timestamp: self.max_timestamp, relative_offset })?;
            }
        }
        self.indexes.close();
        Ok(())
    }

    /// Checks every index entry the first time a sealed segment's indexes are used (open only
    /// checks the last entry, to stay fast with many segments); rebuilds them when a check fails.
    pub(crate) fn verify_indexes(&mut self, interval_bytes: u64) -> Result<()> {
        if self.indexes.verified {
            return Ok(());
        }
        if !self.indexes_are_consistent()? {
            tracing::warn!(segment = %self.path.display(), "damaged index; rebuilding it from the log");
            let next_offset = self.next_offset;
            self.recover(false, interval_bytes)?;
            self.indexes.sync()?;
            self.next_offset = self.next_offset.max(next_offset);
        }
        self.indexes.verified = true;
        Ok(())
    }

    fn indexes_are_consistent(&self) -> Result<bool> {
        let end_relative = (self.next_offset - self.base_offset).min(i64::from(u32::MAX));
        let reader = self.indexes.reader()?;
        let mut previous: Option<OffsetEntry> = None;
        for i in 0..self.indexes.n_offset_entries {
            let e = reader.offset_entry(i)?;
            let increasing = previous.is_none_or(|p| e.relative_offset > p.relative_offset && e.position > p.position);
            if !increasing || u64::from(e.position) >= self.size || i64::from(e.relative_offset) >= end_relative {
                return Ok(false);
            }
            previous = Some(e);
        }
        let mut previous: Option<TimeEntry> = None;
        for i in 0..self.indexes.n_time_entries {
            let e = reader.time_entry(i)?;
            let increasing =
                previous.is_none_or(|p| e.max_timestamp >= p.max_timestamp && e.relative_offset > p.relative_offset);
            if !increasing || i64::from(e.relative_offset) > end_relative || e.max_timestamp > self.max_timestamp {
                return Ok(false);
            }
            previous = Some(e);
        }
        Ok(true)
    }

    /// Whether the offset index has room for one more entry under `segment.index.bytes`.
    pub(crate) fn index_full(&self, segment_index_bytes: u64) -> bool {
        self.indexes.offset_index_bytes() + OFFSET_ENTRY_BYTES > segment_index_bytes
    }

    /// Appends already validated batches (one `write` for all of them) and indexes them. On a write
    /// error the file is cut back to its previous size, so a failed append leaves nothing behind.
    pub(crate) fn append(&mut self, batches: &[&[u8]], interval_bytes: u64) -> Result<()> {
        let start = self.size;
        let total: usize = batches.iter().map(|b| b.len()).sum();
        if let Err(e) = write_all_vectored_at(&self.file, batches, start) {
            let _ = self.file.set_len(start);
            return Err(Error::io(&self.path, e));
        }
        let mut position = start;
        for batch in batches {
            let view = BatchView::parse(batch).expect("validated");
            let header = BatchHeader {
                position,
                size: batch.len() as u64,
                base_offset: view.base_offset(),
                last_offset: view.last_offset(),
                max_timestamp: view.max_timestamp(),
                attributes: view.attributes(),
                producer_id: view.producer_id(),
                producer_epoch: view.producer_epoch(),
                base_sequence: view.base_sequence(),
            };
            self.index_batch(position, &header, interval_bytes);
            position += header.size;
        }
        debug_assert_eq!(self.size, start + total as u64);
        Ok(())
    }

    /// Finds the position of the batch that contains `offset`, or the first batch after it; `None`
    /// when no batch below `limit` ends at or after `offset`.
    pub(crate) fn find(&self, offset: i64, limit: u64) -> Result<Option<BatchHeader>> {
        let relative = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let mut position = 0;
        if let Some(entry) = self.indexes.reader()?.floor_by_offset(relative)? {
            // Trust the entry only if it points at a batch with the offset it names; otherwise scan
            // from the start of the segment.
            let expected = self.base_offset + i64::from(entry.relative_offset);
            match self.read_header(u64::from(entry.position), limit) {
                Ok(Some(h)) if h.base_offset == expected => position = u64::from(entry.position),
                _ => tracing::warn!(segment = %self.path.display(), "offset index entry does not match the log"),
            }
        }
        while position < limit {
            let header = self.read_header(position, limit)?;
            let Some(header) = header else { return Ok(None) };
            if header.last_offset >= offset {
                return Ok(Some(header));
            }
            position += header.size;
        }
        Ok(None)
    }

    /// Where to start scanning for the first record with a timestamp at or after `timestamp`.
    pub(crate) fn scan_start_for_timestamp(&self, timestamp: i64, limit: u64) -> Result<u64> {
        let Some(entry) = self.indexes.reader()?.last_below_timestamp(timestamp)? else { return Ok(0) };
        let offset = self.base_offset + i64::from(entry.relative_offset);
        Ok(self.find(offset, limit)?.map_or(limit, |h| h.position))
    }

    /// Cuts the segment back to `position` (a batch boundary), rebuilds its indexes and syncs
    /// both: a replica's truncation. The segment is writable (active) afterwards.
    pub(crate) fn truncate(&mut self, position: u64, interval_bytes: u64) -> Result<()> {
        self.file.set_len(position.min(self.size)).at(&self.path)?;
        self.recover(true, interval_bytes)?;
        self.sync()?;
        self.indexes.sync()
    }

    /// Syncs the log file's data.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync_data().at(&self.path)
    }

    /// Deletes the segment's files.
    pub(crate) fn delete_files(dir: &Path, base_offset: i64) -> Result<()> {
        for path in [log_path(dir, base_offset), index_path(dir, base_offset), time_index_path(dir, base_offset)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Ok(())
    }
}

/// Writes every buffer at `position` with as few `pwritev`-like calls as the platform allows.
fn write_all_vectored_at(file: &File, buffers: &[&[u8]], position: u64) -> std::io::Result<()> {
    // std has no positional vectored write; the segment file is written only here and only at its
    // end, so seek once and use the cursor.
    use std::io::{IoSlice, Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::Start(position))?;
    let mut index = 0;
    let mut skip = 0usize;
    while index < buffers.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(IoSlice::new(&buffers[index][skip..]))
            .chain(buffers[index + 1..].iter().take(1023).map(|b| IoSlice::new(b)))
            .collect();
        let mut written = f.write_vectored(&slices)?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while index < buffers.len() && written > 0 {
            let remaining = buffers[index].len() - skip;
            if written >= remaining {
                written -= remaining;
                index += 1;
                skip = 0;
            } else {
                skip += written;
                written = 0;
            }
        }
    }
    Ok(())
}
