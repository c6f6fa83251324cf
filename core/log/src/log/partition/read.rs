//! Reads: batches from an offset up to the high watermark (or the last stable offset at
//! `read_committed`, with the aborted transactions below it), and offsets by timestamp.

use super::*;

impl Partition {
    /// Reads from `offset`: the whole batch containing it and what follows, within `limit`. Only records below the high watermark are returned, and with
    /// `Isolation::ReadCommitted` only those below the last stable offset.
    pub fn read(&self, offset: i64, limit: ReadLimit, isolation: Isolation) -> Result<ReadResult> {
        self.read_to(offset, limit, isolation, false)
    }

    /// Like [`Partition::read`], up to the log end rather than the high watermark when
    /// `to_log_end`: what a follower replicates.
    pub(crate) fn read_to(
        &self,
        offset: i64,
        limit: ReadLimit,
        isolation: Isolation,
        to_log_end: bool,
    ) -> Result<ReadResult> {
        let interval = self.config().index_interval_bytes;
        let mut state = self.lock();
        let (start, hw, leo) = (state.log_start_offset, state.high_watermark, state.log_end_offset());
        state.producers.txns.trim(start);
        let lso = state.producers.txns.last_stable_offset(hw);
        let aborted = match isolation {
            Isolation::ReadCommitted => state.producers.txns.aborted_between(offset, lso),
            Isolation::ReadUncommitted => Vec::new(),
        };
        let result = |slice| ReadResult {
            slice,
            high_watermark: hw,
            last_stable_offset: lso,
            aborted: aborted.clone(),
            log_start_offset: start,
            log_end_offset: leo,
        };
        if offset < start || offset > leo {
            return Err(self.out_of_range(offset, start, leo));
        }
        let end = match isolation {
            Isolation::ReadCommitted if lso < hw => {
                // The last stable offset is where an open transaction's first batch starts.
                let base = state.segments.range(..=lso).next_back().map_or(start, |(b, _)| *b);
                state.segments.get_mut(&base).expect("listed").verify_indexes(interval)?;
                let segment = &state.segments[&base];
                match segment.find(lso, state.visible_limit(segment))? {
                    Some(header) => Position { segment_base: base, position: header.position },
                    None => state.hw_position,
                }
            }
            _ if to_log_end => {
                let active = state.active();
                Position { segment_base: active.base_offset, position: active.size }
            }
            _ => state.hw_position,
        };
        let upper = match isolation {
            _ if to_log_end => leo,
            Isolation::ReadCommitted => lso,
            Isolation::ReadUncommitted => hw,
        };
        if offset >= upper {
            return Ok(result(None));
        }
        let floor = state.segments.range(..=offset).next_back().map_or(start, |(b, _)| *b);
        let bases: Vec<i64> = state.segments.range(floor..).map(|(b, _)| *b).collect();
        for base in bases {
            if base > end.segment_base {
                break;
            }
            state.segments.get_mut(&base).expect("listed").verify_indexes(interval)?;
            let segment = &state.segments[&base];
            // Compaction can leave a segment empty; later ones still hold data.
            let visible = State::limit_below(segment, end);
            if let Some(header) = segment.find(offset, visible)? {
                let available = visible - header.position;
                let len = match limit {
                    ReadLimit::AtLeastOne(max) => header.size.max(max.min(available)),
                    ReadLimit::Strict(max) if header.size <= max => max.min(available),
                    ReadLimit::Strict(_) => return Ok(result(None)),
                };
                return Ok(result(Some(LogSlice {
                    file: segment.file.clone(),
                    path: segment.path.clone(),
                    position: header.position,
                    len,
                    first_batch_bytes: header.size,
                })));
            }
        }
        Ok(result(None))
    }

    pub(super) fn out_of_range(&self, offset: i64, log_start_offset: i64, log_end_offset: i64) -> Error {
        Error::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.index,
            offset,
            log_start_offset,
            log_end_offset,
        }
    }

    /// The first offset whose record timestamp is at or after `timestamp`, with that timestamp;
    /// `None` when every visible record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        let interval = self.config().index_interval_bytes;
        let mut state = self.lock();
        let start = state.log_start_offset;
        let bases: Vec<i64> = state.segments.keys().copied().collect();
        for base in bases {
            if base > state.hw_position.segment_base {
                break;
            }
            if state.segments[&base].max_timestamp >= timestamp {
                state.segments.get_mut(&base).expect("listed").verify_indexes(interval)?;
            }
            let segment = &state.segments[&base];
            // Compaction can leave a segment empty; later ones still hold data.
            let limit = state.visible_limit(segment);
            if segment.max_timestamp < timestamp && segment.size == limit {
                continue;
            }
            let mut position = segment.scan_start_for_timestamp(timestamp, limit)?;
            while let Some(header) = segment.read_header(position, limit)? {
                position += header.size;
                if header.max_timestamp < timestamp || header.last_offset < start {
                    continue;
                }
                let mut buf = vec![0u8; header.size as usize];
                segment.file.read_exact_at(&mut buf, header.position).at(&segment.path)?;
                let view = BatchView::parse(&buf)?;
                let mut found = None;
                view.for_each_record(|record| {
                    if found.is_none() && record.timestamp >= timestamp && record.offset >= start {
                        found = Some((record.offset, record.timestamp));
                    }
                    Ok(())
                })?;
                if found.is_some() {
                    return Ok(found);
                }
                // Only records below the log start offset matched: keep looking.
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (the first of them when several share it), with
    /// that timestamp, as Kafka's ListOffsets answers MAX_TIMESTAMP; `None` when no record is
    /// visible.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<(i64, i64)>> {
        let state = self.lock();
        let start = state.log_start_offset;
        // Segments by their largest timestamp, largest first; the earlier segment first on a tie.
        let mut bases: Vec<(i64, i64)> = state
            .segments
            .iter()
            .filter(|(base, _)| **base <= state.hw_position.segment_base)
            .map(|(base, s)| (s.max_timestamp, *base))
            .collect();
        bases.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        // A segment's largest timestamp can belong to records not yet visible, or below the log
        // start: the best visible record of each segment is compared until none can beat it.
        let mut best: Option<(i64, i64)> = None;
        for (segment_max, base) in bases {
            if best.is_some_and(|(_, t)| t >= segment_max) {
                break;
            }
            let segment = &state.segments[&base];
            let limit = state.visible_limit(segment);
            let mut position = 0;
            while let Some(header) = segment.read_header(position, limit)? {
                position += header.size;
                if header.last_offset < start || best.is_some_and(|(_, t)| t >= header.max_timestamp) {
                    continue;
                }
                let mut buf = vec![0u8; header.size as usize];
                segment.file.read_exact_at(&mut buf, header.position).at(&segment.path)?;
                let view = BatchView::parse(&buf)?;
                if view.is_control() {
                    continue;
                }
                view.for_each_record(|record| {
                    if record.offset >= start && best.is_none_or(|(_, t)| record.timestamp > t) {
                        best = Some((record.offset, record.timestamp));
                    }
                    Ok(())
                })?;
            }
        }
        Ok(best)
    }
}
