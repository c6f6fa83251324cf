//! Retention and DeleteRecords: the log start offset moved forward, whole segments below it deleted.

use super::*;

impl Partition {
    /// Advances the log start offset (Kafka's DeleteRecords); `offset` may not pass the high
    /// watermark. Segments wholly below it are deleted. Returns the new log start offset.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let new_start = {
            let mut state = self.lock();
            let (start, hw, leo) = (state.log_start_offset, state.high_watermark, state.log_end_offset());
            let target = if offset < 0 { hw } else { offset };
            if target > hw {
                return Err(self.out_of_range(offset, start, leo));
            }
            state.log_start_offset = start.max(target);
            state.cleaner_offset = state.cleaner_offset.max(state.log_start_offset);
            state.log_start_offset
        };
        self.write_checkpoint()?;
        self.delete_segments_below_start()?;
        Ok(new_start)
    }

    /// Deletes synced segments that hold nothing at or above the log start offset.
    pub(crate) fn delete_segments_below_start(&self) -> Result<usize> {
        let doomed: Vec<i64> = {
            let mut state = self.lock();
            let bases: Vec<i64> = state.segments.keys().copied().collect();
            let mut doomed = Vec::new();
            for pair in bases.windows(2) {
                let (base, next) = (pair[0], pair[1]);
                if next <= state.log_start_offset && next <= state.recovery_point {
                    doomed.push(base);
                }
            }
            for base in &doomed {
                state.segments.remove(base);
            }
            doomed
        };
        for base in &doomed {
            Segment::delete_files(&self.dir, *base)?;
        }
        if !doomed.is_empty() {
            tracing::debug!(topic = %self.topic, partition = self.index, n = doomed.len(), "deleted segments");
        }
        Ok(doomed.len())
    }

    /// Applies `retention.ms` and `retention.bytes`: moves the log start offset past whole segments
    /// that are too old or beyond the size limit, and deletes them. Returns the segments deleted.
    pub(crate) fn apply_retention(&self, now: i64) -> Result<usize> {
        let config = self.config();
        if !config.cleanup_policy.delete {
            return Ok(0);
        }
        let expired = |segment: &Segment| {
            config.retention_ms.is_some_and(|ms| segment.size > 0 && segment.max_timestamp < now.saturating_sub(ms))
        };
        // An active segment that has expired as a whole is rolled so it can go too.
        let active_expired = expired(self.lock().active());
        if active_expired && self.lock().segments.values().all(expired) {
            self.roll_if_not_empty()?;
            return Ok(0);
        }
        let new_start = {
            let state = self.lock();
            let mut total = state.size();
            let mut new_start = state.log_start_offset;
            let bases: Vec<i64> = state.segments.keys().copied().collect();
            for pair in bases.windows(2) {
                let (base, next) = (pair[0], pair[1]);
                if next > state.recovery_point {
                    break;
                }
                let segment = &state.segments[&base];
                let over_size = config.retention_bytes.is_some_and(|max| total - segment.size >= max);
                if !(expired(segment) || over_size) {
                    break;
                }
                total -= segment.size;
                new_start = new_start.max(next);
            }
            new_start
        };
        if new_start == self.lock().log_start_offset {
            return Ok(0);
        }
        {
            let mut state = self.lock();
            state.log_start_offset = state.log_start_offset.max(new_start);
            state.cleaner_offset = state.cleaner_offset.max(state.log_start_offset);
        }
        self.write_checkpoint()?;
        self.delete_segments_below_start()
    }
}
