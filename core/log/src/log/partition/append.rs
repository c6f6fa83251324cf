//! A partition's appends: the queue a blocking drain empties in order, each group of batches
//! validated, checked against producer state, given offsets and written with as few writes as
//! possible, and the segment rolled where its limits call for it.

use super::*;

impl Partition {
    /// Queues an append; returns `true` when the caller must start a drain (see [`Self::drain`]).
    pub(crate) fn enqueue(&self, item: PendingAppend) -> bool {
        let mut queue = self.queue.lock().expect("queue lock");
        queue.items.push_back(item);
        if queue.draining {
            false
        } else {
            queue.draining = true;
            true
        }
    }

    /// Appends everything queued, in queue order, until the queue is empty. Runs on a blocking
    /// thread; only one drain runs per partition at a time, which keeps appends in order.
    ///
    /// `on_write` runs after every write of up to `WRITE_GROUP_BYTES`, with no lock held, so the
    /// flusher can start syncing the first megabyte while the next one is being written.
    pub(crate) fn drain(&self, on_write: impl Fn()) {
        loop {
            let items: Vec<PendingAppend> = {
                let mut queue = self.queue.lock().expect("queue lock");
                if queue.items.is_empty() {
                    queue.draining = false;
                    return;
                }
                let mut bytes = 0u64;
                let mut n = 0;
                while n < queue.items.len() && bytes < WRITE_GROUP_BYTES {
                    bytes += queue.items[n].batch.len() as u64;
                    n += 1;
                }
                queue.items.drain(..n).collect()
            };
            if self.append_group(items) {
                on_write();
            }
        }
    }

    /// Assigns offsets to a group of (already validated) batches and writes them with as few writes
    /// as possible, rolling the segment where needed. Each reply carries the batch's own result.
    fn append_group(&self, items: Vec<PendingAppend>) -> bool {
        let config = self.config();
        let now = self.clock.now_ms();
        let mut state = self.lock();
        if state.closed.is_some() || state.failed.is_some() || state.follower {
            for item in items {
                let error = match (&state.failed, state.closed) {
                    (None, None) => Error::NotLeader { topic: self.topic.clone(), partition: self.index },
                    (Some(failure), _) => Error::StorageFailed(format!(
                        "partition {}-{} is offline after a failed fsync ({failure}); reopen the log to recover it",
                        self.topic, self.index
                    )),
                    (None, Some(Closed::Deleted)) => Error::UnknownTopic(self.topic.clone()),
                    (None, _) => Error::Closed,
                };
                let _ = item.reply.send(Err(error));
            }
            return false;
        }
        let mut group: Vec<(PendingAppend, AppendInfo)> = Vec::new();
        let mut group_bytes = 0u64;
        let mut group_records = 0i64;
        let mut wrote = false;
        let mut failed = false;
        let mut duplicates = Vec::new();
        for mut item in items {
            if failed {
                // Checked against producer state that included what failed to be written.
                let _ = item.reply.send(Err(Error::Internal("an append before this one failed; retry it".into())));
                continue;
            }
            // Validated before it was queued (`Partition::validate`); parse only.
            let view = match BatchView::parse(&item.batch) {
                Ok(view) => view,
                Err(e) => {
                    let _ = item.reply.send(Err(e));
                    continue;
                }
            };
            // Producer state decides first: a retry of a stored batch is answered with its
            // offsets (once the writes before it are done), a gap or a fenced epoch is refused.
            let mut facts = match BatchFacts::of(&view, state.log_end_offset() + group_records) {
                Ok(facts) => facts,
                Err(e) => {
                    let _ = item.reply.send(Err(e));
                    continue;
                }
            };
            match state.producers.check(&facts) {
                Ok(Checked::Append) => {}
                Ok(Checked::Duplicate { base_offset, last_offset }) => {
                    let info = AppendInfo {
                        base_offset,
                        last_offset,
                        log_append_time: None,
                        log_start_offset: state.log_start_offset,
                        leader_epoch: state.current_epoch(),
                    };
                    duplicates.push((item, info));
                    continue;
                }
                Err(e) => {
                    let _ = item.reply.send(Err(e));
                    continue;
                }
            }
            let n = i64::from(view.last_offset_delta());
            // As in Kafka, `segment.ms` compares record time: this batch's against the first batch's.
            let batch_time = match config.timestamp_type {
                TimestampType::LogAppendTime => now,
                TimestampType::CreateTime => view.max_timestamp(),
            };
            let size = item.batch.len() as u64;
            if state.needs_roll(group_bytes, group_records, size, n, batch_time, &config) {
                // What is gathered belongs in the old segment. (`drain` already hands over at most
                // about WRITE_GROUP_BYTES at a time, so no other split is needed here.)
                match self.write_group(&mut state, std::mem::take(&mut group), &config) {
                    Some(w) => wrote |= w,
                    None => {
                        failed = true;
                        let _ =
                            item.reply.send(Err(Error::Internal("an append before this one failed; retry it".into())));
                        continue;
                    }
                }
                group_bytes = 0;
                group_records = 0;
                let new_base = state.log_end_offset();
                if let Err(e) = self.roll(&mut state, new_base, &config) {
                    let _ = item.reply.send(Err(e));
                    continue;
                }
            }
            let base_offset = state.log_end_offset() + group_records;
            let log_append_time = (config.timestamp_type == TimestampType::LogAppendTime).then_some(now);
            batch::assign_in_place(&mut item.batch, base_offset, state.current_epoch(), log_append_time);
            // Applied before the write so that a retry later in this group is recognized; a failed
            // write reloads the state from what is on disk.
            facts.base_offset = base_offset;
            facts.last_offset = base_offset + n;
            state.producers.apply(&facts, self.max_producers);
            group_bytes += size;
            group_records += n + 1;
            let info = AppendInfo {
                base_offset,
                last_offset: base_offset + n,
                log_append_time,
                log_start_offset: state.log_start_offset,
                leader_epoch: state.current_epoch(),
            };
            group.push((item, info));
        }
        match self.write_group(&mut state, group, &config) {
            Some(w) => wrote |= w,
            None => failed = true,
        }
        for (item, info) in duplicates {
            let reply = if failed {
                Err(Error::Internal("an append before this retried batch failed; retry it".into()))
            } else {
                Ok(info)
            };
            let _ = item.reply.send(reply);
        }
        wrote
    }

    /// Checks a batch before it is queued for append (size, framing, CRC, counts and, on
    /// compacted topics, keys) and, when the topic's `compression.type` names a codec other than the
    /// batch's, compresses it anew with that codec, as Kafka's broker does (control batches stay
    /// as they are); the batch as stored must fit `max.message.bytes` too. Pure CPU work, done
    /// by the caller so that the preparation of one batch overlaps the write of the previous ones.
    pub(crate) fn prepare(&self, batch: BytesMut) -> Result<BytesMut> {
        let config = self.config();
        self.validate_with(&batch, &config)?;
        let Some(codec) = config.compression else { return Ok(batch) };
        let view = BatchView::parse(&batch)?;
        if view.is_control() || view.compression()? == codec {
            return Ok(batch);
        }
        let recompressed = batch::recompress(&view, codec)?;
        if recompressed.len() > config.max_message_bytes {
            return Err(Error::BatchTooLarge {
                topic: self.topic.clone(),
                size: recompressed.len(),
                max: config.max_message_bytes,
            });
        }
        Ok(recompressed)
    }

    fn validate_with(&self, batch: &[u8], config: &TopicConfig) -> Result<()> {
        if batch.len() > config.max_message_bytes {
            return Err(Error::BatchTooLarge {
                topic: self.topic.clone(),
                size: batch.len(),
                max: config.max_message_bytes,
            });
        }
        let view = BatchView::parse(batch)?;
        if view.size() != batch.len() {
            return Err(Error::InvalidBatch(format!(
                "batch length field says {} bytes but {} were given; append one batch at a time",
                view.size(),
                batch.len()
            )));
        }
        view.validate()?;
        if view.is_control() {
            if view.producer_id() < 0 {
                return Err(Error::InvalidBatch("a control batch without a producer id".into()));
            }
            Marker::of(&view)?;
        } else if view.is_transactional() && view.producer_id() < 0 {
            return Err(Error::InvalidBatch("a transactional batch without a producer id".into()));
        }
        if config.cleanup_policy.compact && !view.is_control() {
            // Every keyless record is named, so a client can fail exactly those.
            let mut keyless = Vec::new();
            let mut index = 0i32;
            view.for_each_record(|record| {
                if record.key.is_none() {
                    keyless.push((index, "Compacted topic cannot accept message without key.".to_string()));
                }
                index += 1;
                Ok(())
            })?;
            if !keyless.is_empty() {
                return Err(Error::InvalidRecords {
                    message: format!(
                        "{} of {index} records have no key, and topic \"{}\" is compacted (cleanup.policy includes \
                         compact): every record needs a key",
                        keyless.len(),
                        self.topic
                    ),
                    records: keyless,
                });
            }
        }
        Ok(())
    }

    /// Writes a group of batches whose offsets are assigned: `Some(whether anything was written)`,
    /// `None` when the write failed (every batch of the group is answered with the error).
    fn write_group(
        &self,
        state: &mut State,
        group: Vec<(PendingAppend, AppendInfo)>,
        config: &TopicConfig,
    ) -> Option<bool> {
        if group.is_empty() {
            return Some(false);
        }
        let buffers: Vec<&[u8]> = group.iter().map(|(item, _)| &item.batch[..]).collect();
        let ranges: Vec<(i64, i64)> = group.iter().map(|(_, info)| (info.base_offset, info.last_offset)).collect();
        let result = self.write_batches(state, &buffers, &ranges, config);
        drop(buffers);
        match result {
            Ok(()) => {
                for (item, info) in group {
                    let _ = item.reply.send(Ok(info));
                }
                Some(true)
            }
            Err(e) => {
                let message = e.to_string();
                for (item, _) in group {
                    let _ =
                        item.reply.send(Err(Error::Internal(format!("append failed, nothing was written: {message}"))));
                }
                None
            }
        }
    }

    /// Writes batches whose offsets are assigned (`ranges`: each one's base and last offset) with
    /// one write, and moves the log end and, as far as durability and the other replicas allow,
    /// the high watermark. A failed write leaves nothing behind and reloads producer state (the
    /// batches were applied to it before the write).
    pub(super) fn write_batches(
        &self,
        state: &mut State,
        buffers: &[&[u8]],
        ranges: &[(i64, i64)],
        config: &TopicConfig,
    ) -> Result<()> {
        if buffers.is_empty() {
            return Ok(());
        }
        // Offsets are contiguous: each batch starts where the one before it (or the log) ends. A
        // gap or an overlap here would be served to every reader and follower as it is.
        let mut next = state.log_end_offset();
        for &(base, last) in ranges {
            assert_eq!(
                base, next,
                "partition {}-{}: a batch was given base offset {base} where the log ends at {next}",
                self.topic, self.index
            );
            assert!(last >= base, "a batch whose last offset is below its base");
            next = last + 1;
        }
        match state.active_mut().append(buffers, config.index_interval_bytes) {
            Ok(()) => {
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
                self.counters.batches_appended.fetch_add(buffers.len() as u64, Ordering::Relaxed);
                let bytes: usize = buffers.iter().map(|b| b.len()).sum();
                self.counters.bytes_appended.fetch_add(bytes as u64, Ordering::Relaxed);
                let leo = state.log_end_offset();
                assert_eq!(leo, next, "partition {}-{}: the log end after an append", self.topic, self.index);
                let active = state.active();
                let end = Position { segment_base: active.base_offset, position: active.size };
                // Without fsync acknowledgements, what is written is visible at once (as far as
                // the other in-sync replicas allow); the durable offset still moves only with
                // syncs (the interval flusher's, or a roll's).
                state.unflushed_since.get_or_insert_with(std::time::Instant::now);
                self.log_end_tx.send_replace(leo);
                if self.durability() != Durability::Fsync {
                    self.raise_high_watermark(state, leo, end);
                }
                tracing::debug!(topic = %self.topic, partition = self.index, n_batches = buffers.len(), leo, "appended");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "append failed");
                if let Err(error) = self.load_producer_state(state) {
                    tracing::error!(topic = %self.topic, partition = self.index, %error, "producer state could not be reloaded; the partition stops taking appends");
                    state.failed = Some(format!("producer state could not be reloaded after a failed append: {error}"));
                }
                Err(e)
            }
        }
    }

    pub(super) fn roll(&self, state: &mut State, new_base: i64, config: &TopicConfig) -> Result<()> {
        let segment = Segment::create(&self.dir, new_base)?;
        let old_base = state.active().base_offset;
        state.active_mut().seal(config.index_interval_bytes)?;
        state.segments.insert(new_base, segment);
        state.pending_seal.push(old_base);
        let snapshot = state.producers.encode(new_base);
        state.pending_snapshots.push((new_base, snapshot));
        state.dir_dirty = true;
        tracing::debug!(topic = %self.topic, partition = self.index, new_base, "rolled segment");
        Ok(())
    }

    /// Rolls the active segment if it holds data, so that retention can delete it.
    pub(crate) fn roll_if_not_empty(&self) -> Result<()> {
        let config = self.config();
        let mut state = self.lock();
        if state.active().size > 0 {
            let leo = state.log_end_offset();
            self.roll(&mut state, leo, &config)?;
        }
        Ok(())
    }
}
