//! The embedded [`Consumer`]: positions, fetches of stored batches, group membership and
//! committed offsets.

use super::*;

use freshet_coord::code;
use freshet_log::ReadLimit;

/// How often a poll waiting for data looks at its group again.
const GROUP_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The embedded [`Consumer`].
#[derive(Debug)]
pub struct EmbeddedConsumer {
    pub(super) log: Log,
    pub(super) groups: GroupOffsets,
    pub(super) config: ConsumerConfig,
    pub(super) positions: BTreeMap<TopicPartition, i64>,
    pub(super) coordinator: Coordinator,
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
    pub(super) topics: Vec<String>,
    /// The id the coordinator gave (empty before the first join).
    pub(super) member_id: String,
    pub(super) generation: i32,
    /// Whether the member must (re)join before it reads again.
    pub(super) needs_join: bool,
    /// Partitions reported revoked, given up at the next poll (then the member rejoins).
    pub(super) revoking: Vec<TopicPartition>,
    /// The join and sync under way.
    pub(super) joining: Option<tokio::task::JoinHandle<std::result::Result<Joined, NotJoined>>>,
    /// The member id and generation its keep-alive task heartbeats with.
    pub(super) identity: Identity,
    /// As the group's leader, the partition counts its assignment was computed from.
    pub(super) leader_counts: Option<Vec<(String, Option<u32>)>>,
    /// The runtime it subscribed on: its join and leave run there.
    pub(super) runtime: tokio::runtime::Handle,
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        self.leave();
    }
}

impl EmbeddedConsumer {
    /// Leaves the group, if in one (in the background: a drop cannot wait).
    fn leave(&mut self) {
        if let Some(m) = self.membership.take() {
            if let Some(joining) = &m.joining {
                joining.abort();
            }
            leave_soon(&self.coordinator, &m.runtime, m.group, m.member_id);
        }
    }

    /// Follows the group: completes a revocation the last poll reported; takes the assignment of a
    /// completed join (positions from the committed offsets, or where `auto_offset_reset` says);
    /// heartbeats, and when the group rebalances reports every partition revoked (and stops
    /// there: the member rejoins once they are given up, at the next poll).
    pub(super) async fn follow_group(&mut self) -> Result<()> {
        let Some(m) = self.membership.as_mut() else { return Ok(()) };
        if !m.revoking.is_empty() {
            for tp in std::mem::take(&mut m.revoking) {
                self.positions.remove(&tp);
                self.paused.remove(&tp);
            }
        }
        if m.joining.as_ref().is_some_and(|j| j.is_finished()) {
            let joined = m.joining.take().expect("checked").await;
            match joined {
                Ok(Ok(joined)) => {
                    m.member_id = joined.member_id;
                    m.generation = joined.generation;
                    m.needs_join = false;
                    m.leader_counts = joined.leader_counts;
                    *m.identity.lock().expect("member identity lock") = Some((m.member_id.clone(), m.generation));
                    let group = m.group.clone();
                    let assigned = joined.assignment;
                    let committed = self.groups.fetch(&group, Some(&assigned));
                    let mut positions = BTreeMap::new();
                    for tp in &assigned {
                        let position = match committed.get(tp) {
                            Some(c) => c.offset,
                            None => self.reset_position(tp).await?,
                        };
                        positions.insert(tp.clone(), position);
                    }
                    self.positions = positions;
                    self.paused.retain(|tp| self.positions.contains_key(tp));
                    self.changes.push(GroupChange::Assigned(assigned));
                    return Ok(());
                }
                Ok(Err(not)) => {
                    tracing::debug!(group = %m.group, code = not.code, "join refused; joining again");
                    m.member_id = if not.code == code::UNKNOWN_MEMBER_ID { String::new() } else { not.member_id };
                    if not.code == code::GROUP_MAX_SIZE_REACHED {
                        self.membership = None;
                        return Err(Error::Internal("the consumer group has group.max.size members already".into()));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "a group join task failed; joining again"),
            }
        }
        if m.joining.is_some() {
            return Ok(());
        }
        if !m.needs_join {
            let metadata_changed = m.leader_counts.as_ref().is_some_and(|counts| {
                let topics: Vec<String> = counts.iter().map(|(t, _)| t.clone()).collect();
                topic_counts(&self.log, &topics) != *counts
            });
            let heartbeat = if metadata_changed {
                // A subscribed topic appeared or grew: the leader rejoins, which makes the
                // coordinator rebalance the group.
                tracing::debug!(group = %m.group, "subscribed topics changed; the leader rejoins");
                code::REBALANCE_IN_PROGRESS
            } else {
                self.coordinator.heartbeat(&m.group, m.generation, &m.member_id, None).await
            };
            match heartbeat {
                code::NONE => return Ok(()),
                error => {
                    tracing::debug!(group = %m.group, error, "the group rebalances; rejoining");
                    if error == code::UNKNOWN_MEMBER_ID {
                        m.member_id.clear();
                    }
                    m.needs_join = true;
                    *m.identity.lock().expect("member identity lock") = None;
                    let held: Vec<TopicPartition> = self.positions.keys().cloned().collect();
                    if !held.is_empty() {
                        // Eager: everything is given up before the member rejoins.
                        m.revoking.clone_from(&held);
                        self.changes.push(GroupChange::Revoked(held));
                        return Ok(());
                    }
                }
            }
        }
        let client_id = self.config.client_id.clone().unwrap_or_else(|| "freshet".into());
        m.joining = Some(m.runtime.spawn(join_and_sync(
            self.coordinator.clone(),
            self.log.clone(),
            m.group.clone(),
            m.member_id.clone(),
            m.topics.clone(),
            client_id,
        )));
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
        self.leave();
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
        self.changes.clear();
        loop {
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
                // As a Kafka broker answers a fetch: only the first partition with data may go over
                // the limits, by one batch, so that a batch larger than them is not stuck.
                let max = self.config.max_partition_fetch_bytes.min(budget);
                let limit = if out.is_empty() { ReadLimit::AtLeastOne(max) } else { ReadLimit::Strict(max) };
                let isolation = self.config.isolation;
                let fetched = match self.log.read_isolated(&tp.topic, tp.partition, position, limit, isolation).await {
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
            // Wait for data, looking at the group again every so often (a rebalance, a join that
            // completed).
            let group_check = tokio::time::Instant::now() + GROUP_CHECK_INTERVAL;
            let woken = tokio::time::timeout_at(deadline.min(group_check), data.changed());
            match woken.await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) if tokio::time::Instant::now() >= deadline => return Ok(out),
                Err(_) => continue,
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
        self.leave();
        self.positions.clear();
        self.changes.clear();
        let identity = Identity::default();
        keep_alive(self.coordinator.clone(), group.clone(), &identity);
        // The first poll joins.
        self.membership = Some(Membership {
            group,
            topics,
            member_id: String::new(),
            generation: -1,
            needs_join: true,
            revoking: Vec::new(),
            joining: None,
            identity,
            leader_counts: None,
            runtime: tokio::runtime::Handle::current(),
        });
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
