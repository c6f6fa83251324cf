//! A partition's part in replication: batches appended exactly as the leader stored them (same
//! offsets, same bytes, same leader epochs), truncation to where a follower's log agrees with
//! its leader's, the leader epoch history asked where an epoch ended, and a high watermark that
//! goes no further than the other in-sync replicas allow.

use super::*;

/// Kafka's `UNDEFINED_EPOCH` and `UNDEFINED_EPOCH_OFFSET`.
const UNDEFINED: (i32, i64) = (-1, -1);

impl State {
    /// Where the batch starting at `offset` lies (`offset` is a batch boundary at or below the
    /// log end).
    pub(super) fn position_of(&self, offset: i64) -> Result<Position> {
        if offset >= self.log_end_offset() {
            let active = self.active();
            return Ok(Position { segment_base: active.base_offset, position: active.size });
        }
        let (base, segment) = self.segments.range(..=offset).next_back().expect("a segment at or below the offset");
        let position = segment.find(offset, segment.size)?.map_or(segment.size, |h| h.position);
        Ok(Position { segment_base: *base, position })
    }
}

impl Partition {
    /// Raises the high watermark towards `candidate` (at `position`), no further than the bound
    /// the other in-sync replicas set; never lowers it.
    pub(super) fn raise_high_watermark(&self, state: &mut State, candidate: i64, position: Position) {
        let target = state.hw_bound.map_or(candidate, |bound| bound.min(candidate));
        if target <= state.high_watermark {
            return;
        }
        // Readers see up to the high watermark: past the log end they would read bytes that are
        // not there.
        assert!(
            target <= state.log_end_offset(),
            "partition {}-{}: high watermark {target} past the log end {}",
            self.topic,
            self.index,
            state.log_end_offset()
        );
        let position = if target == candidate {
            position
        } else {
            match state.position_of(target) {
                Ok(p) => p,
                Err(error) => {
                    tracing::warn!(topic = %self.topic, partition = self.index, %error, "high watermark not moved");
                    return;
                }
            }
        };
        state.high_watermark = target;
        state.hw_position = position;
        self.high_watermark_tx.send_replace(target);
    }

    /// Makes this copy a follower's (it takes only its leader's batches, and appends are refused
    /// with [`Error::NotLeader`]) or a leader's. Atomic with appends: a batch is taken or refused
    /// wholly in one role.
    pub fn set_follower(&self, follower: bool) {
        self.lock().follower = follower;
    }

    /// Whether this copy is a follower's.
    pub fn is_follower(&self) -> bool {
        self.lock().follower
    }

    /// Whether this copy takes appends, under leader epoch `epoch` still.
    pub fn leads_in(&self, epoch: i32) -> bool {
        let state = self.lock();
        !state.follower && state.current_epoch() == epoch
    }

    /// Bounds the high watermark by what the other replicas hold: on a leader, the lowest log
    /// end among the other in-sync replicas (`None` when it is alone in sync); on a follower, its
    /// leader's high watermark, which may be below this copy's (`may_lower`). The high watermark
    /// is then as far as this copy's own durability and the bound allow. Returns it.
    pub fn bound_high_watermark(&self, bound: Option<i64>, may_lower: bool) -> Result<i64> {
        let mut state = self.lock();
        state.hw_bound = bound;
        let local = match self.durability() {
            Durability::Fsync => state.durable_offset,
            _ => state.log_end_offset(),
        };
        let target = bound.map_or(local, |b| b.min(local)).max(state.log_start_offset);
        // Called on every follower fetch: the position is looked up only when the mark moves.
        if target > state.high_watermark || (may_lower && target < state.high_watermark) {
            let position = state.position_of(target)?;
            state.high_watermark = target;
            state.hw_position = position;
            self.high_watermark_tx.send_replace(target);
        }
        Ok(state.high_watermark)
    }

    /// Appends batches as the leader stored them: each must start at this copy's log end; their
    /// offsets, bytes and leader epochs are kept (a batch of a newer epoch starts that epoch here
    /// too), and producer state and the transaction index follow them. Returns the new log end
    /// and whether the epoch history changed (the checkpoint must be written).
    pub(crate) fn append_replicated(&self, batches: &[u8]) -> Result<(i64, bool)> {
        let config = self.config();
        let mut state = self.lock();
        if let Some(failure) = &state.failed {
            return Err(Error::StorageFailed(format!(
                "partition {}-{} is offline after a failed fsync ({failure})",
                self.topic, self.index
            )));
        }
        if state.closed.is_some() {
            return Err(Error::Closed);
        }
        if !state.follower {
            return Err(Error::InvalidBatch(format!(
                "{}-{} is not a follower's copy: it takes no replicated batches",
                self.topic, self.index
            )));
        }
        let mut pending: Vec<&[u8]> = Vec::new();
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        let mut pending_bytes = 0u64;
        let mut next = state.log_end_offset();
        let mut epochs_changed = false;
        for view in Batches::new(batches) {
            let view = view?;
            view.check_crc()?;
            if view.base_offset() != next {
                return Err(Error::InvalidBatch(format!(
                    "a replicated batch of {}-{} starts at offset {} where this copy's log ends at {next}",
                    self.topic,
                    self.index,
                    view.base_offset()
                )));
            }
            let n = i64::from(view.last_offset_delta());
            let size = view.size() as u64;
            let pending_records = next - state.log_end_offset();
            if state.needs_roll(pending_bytes, pending_records, size, n, view.max_timestamp(), &config) {
                self.write_batches(&mut state, &pending, &ranges, &config)?;
                pending.clear();
                ranges.clear();
                pending_bytes = 0;
                self.roll(&mut state, next, &config)?;
            }
            let epoch = view.partition_leader_epoch();
            if epoch > state.current_epoch() || state.leader_epochs.is_empty() {
                state.leader_epochs.push((epoch, next));
                epochs_changed = true;
            }
            let facts = BatchFacts::of(&view, next)?;
            if facts.producer_id >= 0 {
                state.producers.apply(&facts, self.max_producers);
            }
            pending.push(view.as_bytes());
            ranges.push((next, view.last_offset()));
            pending_bytes += size;
            next = view.next_offset();
        }
        self.write_batches(&mut state, &pending, &ranges, &config)?;
        Ok((state.log_end_offset(), epochs_changed))
    }

    /// Cuts the log back to `offset` (a follower's log that diverged from its new leader's):
    /// every batch at or after it goes, and with them the epochs that started there, the
    /// producers' batches and the transactions they opened. Below the log start, the whole log
    /// goes and starts again at `offset`. Returns the new log end.
    pub(crate) fn truncate_to(&self, offset: i64) -> Result<i64> {
        let config = self.config();
        {
            let mut state = self.lock();
            if offset < state.log_start_offset {
                drop(state);
                self.restart_at(offset)?;
                return Ok(offset);
            }
            let leo = state.log_end_offset();
            if offset < leo {
                let keep = *state.segments.range(..=offset).next_back().expect("a segment below the log end").0;
                let doomed: Vec<i64> = state.segments.range(keep + 1..).map(|(b, _)| *b).collect();
                for base in &doomed {
                    state.segments.remove(base);
                    Segment::delete_files(&self.dir, *base)?;
                }
                let segment = state.segments.get_mut(&keep).expect("listed");
                let position = segment.find(offset, segment.size)?.map_or(segment.size, |h| h.position);
                segment.truncate(position, config.index_interval_bytes)?;
                state.pending_seal.retain(|b| *b < keep);
                state.dir_dirty = true;
                let new_leo = state.log_end_offset();
                state.pending_snapshots.retain(|(at, _)| *at <= new_leo);
                state.recovery_point = state.recovery_point.min(keep);
                state.durable_offset = state.durable_offset.min(new_leo);
                state.cleaner_offset = state.cleaner_offset.min(new_leo);
                if state.high_watermark > new_leo {
                    state.high_watermark = new_leo;
                    state.hw_position = state.position_of(new_leo)?;
                    self.high_watermark_tx.send_replace(new_leo);
                }
                self.durable_tx.send_replace(Durable { offset: state.durable_offset, failed: false });
                self.log_end_tx.send_replace(new_leo);
                self.load_producer_state(&mut state)?;
                tracing::info!(topic = %self.topic, partition = self.index, from = leo, to = new_leo, "truncated");
            }
            let end = state.log_end_offset();
            state.leader_epochs.retain(|&(_, start)| start < end);
        }
        self.write_checkpoint()?;
        Ok(self.lock().log_end_offset())
    }

    /// Drops the whole log and starts it again, empty, at `offset`: a follower whose log ends
    /// below its leader's log start.
    pub(crate) fn restart_at(&self, offset: i64) -> Result<()> {
        {
            let mut state = self.lock();
            let bases: Vec<i64> = state.segments.keys().copied().collect();
            state.segments.clear();
            for base in bases {
                Segment::delete_files(&self.dir, base)?;
            }
            state.segments.insert(offset, Segment::create(&self.dir, offset)?);
            state.log_start_offset = offset;
            state.high_watermark = offset;
            state.hw_position = Position { segment_base: offset, position: 0 };
            state.durable_offset = offset;
            state.recovery_point = offset;
            state.cleaner_offset = offset;
            state.leader_epochs.clear();
            state.pending_seal.clear();
            state.pending_snapshots.clear();
            state.dir_dirty = true;
            self.load_producer_state(&mut state)?;
            self.high_watermark_tx.send_replace(offset);
            self.log_end_tx.send_replace(offset);
            self.durable_tx.send_replace(Durable { offset, failed: false });
            tracing::info!(topic = %self.topic, partition = self.index, offset, "log restarted at the leader's log start");
        }
        sync_dir(&self.dir)?;
        self.write_checkpoint()
    }

    /// Where leader epoch `epoch` ended in this copy, as Kafka's OffsetsForLeaderEpoch answers:
    /// the current epoch ends at the log end; an older one where the next began, with the
    /// largest epoch at or below `epoch` that this copy has; `(-1, -1)` for an epoch above every
    /// known one.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let state = self.lock();
        let epochs = &state.leader_epochs;
        match epochs.last() {
            _ if epoch < 0 => UNDEFINED,
            Some(&(latest, _)) if latest == epoch => (epoch, state.log_end_offset()),
            None => UNDEFINED,
            Some(_) => match epochs.iter().find(|(e, _)| *e > epoch) {
                None => UNDEFINED,
                Some(&(_, next_start)) => match epochs.iter().rev().find(|(e, _)| *e <= epoch) {
                    Some(&(floor, _)) => (floor, next_start),
                    None => (epoch, next_start),
                },
            },
        }
    }

    /// The topic's `min.insync.replicas`.
    pub fn min_insync_replicas(&self) -> i64 {
        self.config().min_insync_replicas
    }

    /// The epoch of the last batch this copy holds (what a follower's fetch names as its last
    /// fetched epoch), or -1.
    pub fn latest_epoch(&self) -> i32 {
        self.lock().leader_epochs.last().map_or(-1, |e| e.0)
    }

    /// Where the latest leader epoch began in this copy's log (0 when it has none).
    pub fn latest_epoch_start(&self) -> i64 {
        self.lock().leader_epochs.last().map_or(0, |e| e.1)
    }

    /// The current leader epoch and the history of epochs with their start offsets.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        self.lock().leader_epochs.clone()
    }

    /// Starts a new leader epoch at the current log end offset (replication uses this).
    pub fn bump_leader_epoch(&self, epoch: i32) -> Result<()> {
        {
            let mut state = self.lock();
            if epoch <= state.current_epoch() {
                return Err(Error::Internal(format!(
                    "leader epoch {epoch} is not above the current epoch {}",
                    state.current_epoch()
                )));
            }
            let leo = state.log_end_offset();
            state.leader_epochs.push((epoch, leo));
            // Epochs and their start offsets only go forward: followers truncate by them.
            assert!(
                state.leader_epochs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "partition {}-{}: leader epochs out of order: {:?}",
                self.topic,
                self.index,
                state.leader_epochs
            );
        }
        self.write_checkpoint()
    }
}
