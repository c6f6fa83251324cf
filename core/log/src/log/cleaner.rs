//! Compaction for `cleanup.policy=compact`: keep the latest record of every key.
//!
//! A pass works on the synced segments only (never the active one, never data that is still
//! waiting for its fsync), so it runs beside appends and reads without blocking them:
//!
//! 1. The *dirty* segments are those at or after the cleaner offset (the first offset no pass has
//!    seen). Their keys are read into a map of key -> latest offset, within
//!    `cleaner_dedupe_buffer_bytes`; a pass that runs out of room stops at a segment boundary.
//! 2. Every synced segment up to the end of that dirty range is rewritten, in groups no larger than
//!    `segment.bytes`, keeping a record when no later record has its key. Offsets never change:
//!    rewritten batches keep their base offset and `last_offset_delta`, and records keep their
//!    offset deltas. A batch that loses no record is copied byte for byte.
//! 3. Tombstones (null values) that a previous pass already kept, in batches older than
//!    `delete.retention.ms`, are dropped, so consumers had that long to see the delete.
//!
//! Crash safety follows one commit point. Output is written to `<base>.log.cleaned` and synced;
//! renaming it to `<base>.<end>.swap` (then syncing the directory) commits it. The replaced segments
//! are deleted and the swap file is renamed over `<base>.log`. On open, `.cleaned` files are
//! deleted and `.swap` files are completed (see `Partition::open`), so a crash at any point leaves
//! either the old segments or the new one, never a mix. The swap file's name carries the range of
//! offsets it replaces (`<base>.<end>.swap`), so recovery needs nothing else, even when every record
//! of the range was compacted away and the file is empty.
//!
//! Compressed batches are decompressed to read their keys, and a rewritten one is compressed again
//! with its own codec. Transactional and control batches are kept as they are (transactions come
//! with the broker).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::checkpoint::sync_dir;
use super::partition::{Partition, SealedSegment};
use super::segment;
use crate::batch::{self, BatchBuilder, Compression};
use crate::error::{IoContext, Result};

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Segments rewritten.
    pub n_segments_rewritten: usize,
    /// Bytes of the segments before.
    pub bytes_before: u64,
    /// Bytes of the rewritten segments.
    pub bytes_after: u64,
    /// Records removed (older versions and expired tombstones).
    pub n_records_removed: u64,
    /// The new cleaner offset.
    pub cleaner_offset: i64,
}

/// Runs one pass over `partition` if it is compacted and dirty enough. `None`: nothing to do.
///
/// `stop` is checked between groups: a pass cut short by shutdown leaves the log as it was for the
/// groups it did not reach (and the cleaner offset where it was), and the next pass redoes them.
pub(crate) fn clean(
    partition: &Partition,
    now: i64,
    buffer_bytes: usize,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Option<CleanStats>> {
    let config = partition.config();
    if !config.cleanup_policy.compact {
        return Ok(None);
    }
    let sealed = partition.sealed_segments();
    if sealed.is_empty() {
        return Ok(None);
    }
    let (cleaner_offset, log_start_offset) = {
        let state = partition.lock();
        (state.cleaner_offset, state.log_start_offset)
    };
    let lag_limit = now.saturating_sub(config.min_compaction_lag_ms);
    let first_dirty = sealed.iter().position(|s| s.next_offset > cleaner_offset);
    let Some(first_dirty) = first_dirty else { return Ok(None) };
    let mut dirty_end_idx = first_dirty;
    while dirty_end_idx < sealed.len() && sealed[dirty_end_idx].max_timestamp <= lag_limit {
        dirty_end_idx += 1;
    }
    if dirty_end_idx == first_dirty {
        return Ok(None);
    }
    let total: u64 = sealed.iter().map(|s| s.size).sum();
    let dirty: u64 = sealed[first_dirty..dirty_end_idx].iter().map(|s| s.size).sum();
    // `max.compaction.lag.ms`: a dirty segment that old is compacted whatever the dirty share.
    let overdue = sealed[first_dirty..dirty_end_idx]
        .iter()
        .any(|s| s.max_timestamp < now.saturating_sub(config.max_compaction_lag_ms));
    if total == 0 || dirty == 0 || ((dirty as f64) < config.min_cleanable_dirty_ratio * total as f64 && !overdue) {
        return Ok(None);
    }

    // 1. Latest offset of every key in the dirty range.
    let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut map_bytes = 0usize;
    let mut scanned_end = first_dirty;
    for segment in &sealed[first_dirty..dirty_end_idx] {
        if scanned_end > first_dirty && map_bytes > buffer_bytes {
            break;
        }
        segment.for_each_batch(|view| {
            if view.is_control() {
                return Ok(());
            }
            view.for_each_record(|record| {
                if let Some(key) = record.key {
                    match latest.get_mut(key) {
                        Some(offset) => *offset = record.offset,
                        None => {
                            map_bytes += key.len() + 48;
                            latest.insert(key.to_vec(), record.offset);
                        }
                    }
                }
                Ok(())
            })
        })?;
        scanned_end += 1;
    }
    let dirty_end_offset = sealed[scanned_end - 1].next_offset;

    // 2. Rewrite every synced segment up to the end of the scanned dirty range, in groups.
    let mut stats = CleanStats { cleaner_offset: dirty_end_offset, ..Default::default() };
    let delete_horizon = now.saturating_sub(config.delete_retention_ms);
    let mut groups: Vec<Vec<SealedSegment>> = Vec::new();
    for segment in sealed[..scanned_end].iter().cloned() {
        let fits = groups.last().is_some_and(|g: &Vec<SealedSegment>| {
            let size: u64 = g.iter().map(|s| s.size).sum::<u64>() + segment.size;
            size <= config.segment_bytes && segment.next_offset - g[0].base_offset < i64::from(u32::MAX)
        });
        if fits {
            groups.last_mut().expect("non-empty").push(segment);
        } else {
            groups.push(vec![segment]);
        }
    }
    for group in groups {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(None);
        }
        let base = group[0].base_offset;
        let dir = partition.dir().to_owned();
        let cleaned_path = PathBuf::from(format!("{}.cleaned", segment::log_path(&dir, base).display()));
        let end = group.last().expect("non-empty group").next_offset;
        let swap_path = segment::swap_path(&dir, base, end);
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(&cleaned_path).at(&cleaned_path)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut changed = false;
        for segment in &group {
            stats.bytes_before += segment.size;
            segment.for_each_batch(|view| {
                if view.last_offset() < log_start_offset {
                    changed = true;
                    stats.n_records_removed += view.record_count().max(0) as u64;
                    return Ok(());
                }
                let opaque = view.is_control() || view.is_transactional();
                if opaque {
                    out.write_all(view.as_bytes()).at(&cleaned_path)?;
                    stats.bytes_after += view.size() as u64;
                    return Ok(());
                }
                let keep = |record: &batch::RecordView<'_>| -> bool {
                    let Some(key) = record.key else { return true };
                    if latest.get(key).is_some_and(|&l| record.offset < l) {
                        return false;
                    }
                    let expired_tombstone = record.value.is_none()
                        && record.offset < cleaner_offset
                        && view.max_timestamp() < delete_horizon;
                    !expired_tombstone
                };
                let codec = view.compression()?;
                let section = match codec {
                    Compression::None => std::borrow::Cow::Borrowed(view.records_bytes()),
                    _ => std::borrow::Cow::Owned(view.decompressed_records()?),
                };
                let records: Vec<_> = view.records_in(&section).collect::<Result<_>>()?;
                let n_keep = records.iter().filter(|r| keep(r)).count();
                if n_keep == records.len() {
                    out.write_all(view.as_bytes()).at(&cleaned_path)?;
                    stats.bytes_after += view.size() as u64;
                    return Ok(());
                }
                changed = true;
                stats.n_records_removed += (records.len() - n_keep) as u64;
                if n_keep == 0 {
                    return Ok(());
                }
                let mut builder = BatchBuilder::like(&view);
                for record in records.iter().filter(|r| keep(r)) {
                    builder.push_view(record)?;
                }
                builder.set_last_offset_delta(view.last_offset_delta());
                let mut rebuilt = bytes::BytesMut::from(builder.finish_compressed(codec)?);
                batch::assign_in_place(&mut rebuilt, view.base_offset(), view.partition_leader_epoch(), None);
                out.write_all(&rebuilt).at(&cleaned_path)?;
                stats.bytes_after += rebuilt.len() as u64;
                Ok(())
            })?;
        }
        let file = out.into_inner().map_err(|e| crate::error::Error::io(&cleaned_path, e.into_error()))?;
        if !changed && group.len() == 1 {
            drop(file);
            std::fs::remove_file(&cleaned_path).at(&cleaned_path)?;
            continue;
        }
        file.sync_all().at(&cleaned_path)?;
        drop(file);
        super::failpoint::check("cleaner.before_swap", &dir)?;
        std::fs::rename(&cleaned_path, &swap_path).at(&swap_path)?;
        sync_dir(&dir)?;
        super::failpoint::check("cleaner.after_swap", &dir)?;
        let bases: Vec<i64> = group.iter().map(|s| s.base_offset).collect();
        if !partition.install_compacted(&bases, &swap_path, &config)? {
            tracing::debug!(partition = ?partition, "segments changed during compaction; pass abandoned");
            return Ok(None);
        }
        stats.n_segments_rewritten += group.len();
    }
    partition.set_cleaner_offset(dirty_end_offset)?;
    tracing::debug!(partition = ?partition, ?stats, "compacted");
    Ok(Some(stats))
}
