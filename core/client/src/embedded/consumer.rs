//! The embedded [`Consumer`]: positions, fetches of stored batches, group membership and
//! committed offsets.

use super::*;

/// The embedded [`Consumer`].
#[derive(Debug)]
pub struct EmbeddedConsumer {
    pub(super) log: Log,
    pub(super) groups: GroupOffsets,
    pub(super) config: ConsumerConfig,
    pub(super) positions: BTreeMap<TopicPartition, i64>,
    pub(super) members: Arc<LocalMembers>,
    /// After `subscribe`: the consumer's place in its group.
    pub(super) membership: Option<Membership>,
    /// What the last poll saw happen to the assignment.
    pub(super) changes: Vec<GroupChange>,
    /// Assigned partitions not fetched for now.
    pub(super) paused: std::collections::HashSet<TopicPartition>,
}

/// A subscribed embedded consumer's place in its group.
#[derive(Debug)]
pub(super) struct Membership {
    pub(super) group: String,
    pub(super) member: u64,
    /// The generation whose assignment the member holds or is taking.
    pub(super) generation: u64,
    /// Partitions reported revoked, given up at the next poll.
    pub(super) revoking: Vec<TopicPartition>,
    /// The generation's assignment, until every partition of it is free to take.
    pub(super) taking: Option<Vec<TopicPartition>>,
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        if let Some(m) = self.membership.take() {
            self.members.leave(&m.group, m.member);
        }
    }
}

impl EmbeddedConsumer {
    /// Follows the group: completes a revocation the last poll reported; at a new generation,
    /// reports the partitions this member loses as revoked (and stops there), then takes its
    /// new assignment once no one else holds any of it. Partitions kept keep their position;
    /// new ones start at the committed offset or where `auto_offset_reset` says.
    pub(super) async fn follow_group(&mut self) -> Result<()> {
        let Some(m) = self.membership.as_mut() else { return Ok(()) };
        if !m.revoking.is_empty() {
            let revoked = std::mem::take(&mut m.revoking);
            for tp in &revoked {
                self.positions.remove(tp);
                self.paused.remove(tp);
            }
            self.members.release(&m.group, m.member, &revoked);
        }
        if self.members.generation(&m.group) != m.generation {
            let (generation, mut assignments) = self.members.assignments(&m.group, &self.log);
            let assigned = assignments.remove(&m.member).unwrap_or_default();
            let lost: Vec<TopicPartition> =
                self.positions.keys().filter(|tp| !assigned.contains(tp)).cloned().collect();
            m.generation = generation;
            m.taking = Some(assigned);
            if !lost.is_empty() {
                m.revoking.clone_from(&lost);
                self.changes.push(GroupChange::Revoked(lost));
                return Ok(());
            }
        }
        let Some(assigned) = &m.taking else { return Ok(()) };
        if !self.members.try_take(&m.group, m.member, m.generation, assigned) {
            return Ok(());
        }
        let assigned = m.taking.take().unwrap_or_default();
        let group = m.group.clone();
        let committed = self.groups.fetch(&group, Some(&assigned));
        let mut positions = BTreeMap::new();
        for tp in &assigned {
            let position = match (self.positions.get(tp), committed.get(tp)) {
                (Some(p), _) => *p,
                (None, Some(c)) => c.offset,
                (None, None) => self.reset_position(tp).await?,
            };
            positions.insert(tp.clone(), position);
        }
        self.positions = positions;
        self.paused.retain(|tp| self.positions.contains_key(tp));
        self.changes.push(GroupChange::Assigned(assigned));
        Ok(())
    }

    /// Whether a revocation was reported and waits for the next poll.
    pub(super) fn revoking(&self) -> bool {
        self.membership.as_ref().is_some_and(|m| !m.revoking.is_empty())
    }

    pub(super) async fn reset_position(&self, tp: &TopicPartition) -> Result<i64> {
        let spec = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => OffsetSpec::Earliest,
            AutoOffsetReset::Latest => OffsetSpec::Latest,
            AutoOffsetReset::None => {
                return Err(Error::InvalidConfig {
                    key: "auto.offset.reset".into(),
                    value: "none".into(),
                    reason: format!("{tp} has no committed offset and the consumer may not pick one"),
                })
            }
        };
        Ok(self.log.list_offset(&tp.topic, tp.partition, spec).await?.map_or(0, |o| o.0))
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        if let Some(m) = self.membership.take() {
            self.members.leave(&m.group, m.member);
        }
        let committed = match &self.config.group_id {
            Some(group) => self.groups.fetch(group, Some(&partitions)),
            None => BTreeMap::new(),
        };
        let mut positions = BTreeMap::new();
        for tp in partitions {
            self.log.partition(&tp.topic, tp.partition)?;
            let position = match committed.get(&tp) {
                Some(c) => c.offset,
                None => self.reset_position(&tp).await?,
            };
            positions.insert(tp, position);
        }
        self.positions = positions;
        self.paused.retain(|tp| self.positions.contains_key(tp));
        Ok(())
    }

    async fn seek(&mut self, tp: &TopicPartition, to: OffsetSpec) -> Result<()> {
        if !self.positions.contains_key(tp) {
            return Err(Error::Internal(format!("{tp} is not assigned to this consumer")));
        }
        let offset = match self.log.list_offset(&tp.topic, tp.partition, to).await? {
            Some((offset, _)) => offset,
            None => self.log.list_offset(&tp.topic, tp.partition, OffsetSpec::Latest).await?.map_or(0, |o| o.0),
        };
        self.positions.insert(tp.clone(), offset);
        Ok(())
    }

    fn seek_to_offset(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        match self.positions.get_mut(tp) {
            Some(p) => {
                *p = offset;
                Ok(())
            }
            None => Err(Error::Internal(format!("{tp} is not assigned to this consumer"))),
        }
    }

    fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.positions.get(tp).copied()
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedBatches>> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut data = self.log.watch_data();
        let mut members = self.members.changed.subscribe();
        self.changes.clear();
        loop {
            members.borrow_and_update();
            self.follow_group().await?;
            if self.revoking() {
                return Ok(Vec::new());
            }
            data.borrow_and_update();
            let mut out = Vec::new();
            let mut budget = self.config.fetch_max_bytes;
            let tps: Vec<(TopicPartition, i64)> = self
                .positions
                .iter()
                .filter(|(t, _)| !self.paused.contains(*t))
                .map(|(t, p)| (t.clone(), *p))
                .collect();
            for (tp, position) in tps {
                if budget == 0 {
                    break;
                }
                let max = self.config.max_partition_fetch_bytes.min(budget);
                let isolation = self.config.isolation;
                let fetched = match self.log.read_isolated(&tp.topic, tp.partition, position, max, isolation).await {
                    Ok(f) => f,
                    Err(Error::OffsetOutOfRange { .. }) => {
                        // Retention removed what we were about to read, or the position is past the
                        // end (the topic was re-created): start again where auto.offset.reset says,
                        // as a Kafka consumer does.
                        let reset = self.reset_position(&tp).await?;
                        tracing::info!(%tp, from = position, to = reset, "position out of range; reset");
                        self.positions.insert(tp.clone(), reset);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if fetched.batches.is_empty() {
                    continue;
                }
                budget = budget.saturating_sub(fetched.batches.len() as u64);
                let mut consumed = ConsumedBatches {
                    tp: tp.clone(),
                    bytes: fetched.batches,
                    from_offset: position,
                    high_watermark: fetched.high_watermark,
                };
                self.positions.insert(tp, consumed.next_offset());
                if !fetched.aborted.is_empty() {
                    // Aborted transactions' batches are left out (their offsets are passed over).
                    consumed.bytes = without_aborted(&consumed.bytes, fetched.aborted)?;
                    if consumed.bytes.is_empty() {
                        continue;
                    }
                }
                out.push(consumed);
            }
            if !out.is_empty() {
                return Ok(out);
            }
            let woken = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    changed = data.changed() => changed.map_err(|_| Error::Closed),
                    _ = members.changed() => Ok(()),
                }
            });
            match woken.await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(out),
            }
        }
    }

    async fn commit(&mut self, offsets: BTreeMap<TopicPartition, OffsetAndMetadata>) -> Result<()> {
        let group = self.config.group_id.as_deref().ok_or_else(|| no_group("commit offsets"))?;
        self.groups.commit(group, &offsets).await
    }

    async fn commit_positions(&mut self) -> Result<()> {
        let offsets = self.positions.iter().map(|(tp, p)| (tp.clone(), OffsetAndMetadata::new(*p))).collect();
        self.commit(offsets).await
    }

    async fn committed(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
        Ok(match &self.config.group_id {
            Some(group) => self.groups.fetch(group, Some(partitions)),
            None => BTreeMap::new(),
        })
    }

    async fn subscribe(&mut self, topics: Vec<String>) -> Result<()> {
        let group = self.config.group_id.clone().ok_or_else(|| no_group("subscribe"))?;
        if let Some(m) = self.membership.take() {
            self.members.leave(&m.group, m.member);
        }
        self.positions.clear();
        self.changes.clear();
        let member = self.members.next_member.fetch_add(1, Ordering::Relaxed);
        let client_id = self.config.client_id.clone().unwrap_or_else(|| "freshet".into());
        self.members.join(&group, member, topics, client_id);
        // Generation 0 is never current: the first poll takes the assignment.
        self.membership = Some(Membership { group, member, generation: 0, revoking: Vec::new(), taking: None });
        Ok(())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    fn take_group_changes(&mut self) -> Vec<GroupChange> {
        std::mem::take(&mut self.changes)
    }

    fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            if !self.positions.contains_key(tp) {
                return Err(Error::Internal(format!("{tp} is not assigned to this consumer")));
            }
        }
        self.paused.extend(partitions.iter().cloned());
        Ok(())
    }

    fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.paused.remove(tp);
        }
        Ok(())
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        self.config.group_id.clone().map(|group_id| GroupMetadata { group_id, native: None })
    }
}

/// The batches of `bytes` that a `read_committed` consumer sees, given the read's aborted
/// transactions.
pub(super) fn without_aborted(bytes: &Bytes, aborted: Vec<freshet_log::AbortedTxn>) -> Result<Bytes> {
    let mut filter = AbortedFilter::new(aborted);
    let mut kept = bytes::BytesMut::with_capacity(bytes.len());
    for batch in Batches::new(bytes) {
        let batch = batch?;
        if filter.keep(&batch) {
            kept.extend_from_slice(batch.as_bytes());
        }
    }
    Ok(kept.freeze())
}
