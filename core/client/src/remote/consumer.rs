//! The [`Consumer`] over librdkafka's consumer: group membership through its rebalance
//! callbacks, positions, pauses, commits, and records copied into record batches.

use super::*;

/// What librdkafka's callbacks tell a [`RemoteConsumer`].
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// High watermarks from the latest statistics.
    pub(super) high_watermarks: HashMap<(String, i32), i64>,
    /// Partitions the group assigned (subscribe mode), and a count of assignments seen.
    pub(super) assigned: Vec<TopicPartition>,
    pub(super) generation: u64,
    /// Partitions the group revoked, still held until the consumer's next poll gives them up.
    pub(super) revoking: Option<Vec<TopicPartition>>,
    /// What happened to the assignment since the poll began.
    pub(super) changes: Vec<GroupChange>,
    /// The consumer is closing: a revocation completes at once.
    pub(super) closing: bool,
}

/// librdkafka callbacks of a consumer.
pub(super) struct MemberContext {
    pub(super) shared: Arc<Mutex<Shared>>,
}

impl ClientContext for MemberContext {
    fn stats(&self, statistics: Statistics) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.hi_offset >= 0 {
                    shared.high_watermarks.insert((topic.clone(), partition), p.hi_offset);
                }
            }
        }
    }
}

pub(super) fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .filter_map(|e| Some(TopicPartition::new(e.topic(), u32::try_from(e.partition()).ok()?)))
        .collect()
}

impl ConsumerContext for MemberContext {
    /// Takes an assignment at once; leaves a revocation pending (librdkafka waits for the
    /// unassign before rejoining the group) until the consumer's next poll, so the caller can
    /// commit the revoked partitions first, as a Kafka consumer does in `onPartitionsRevoked`.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let partitions = partitions_of(tpl);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(error) = consumer.assign(tpl) {
                    tracing::warn!(%error, "taking the group's assignment failed");
                }
                tracing::info!(partitions = partitions.len(), "the group assigned partitions");
                shared.assigned.clone_from(&partitions);
                shared.generation += 1;
                shared.changes.push(GroupChange::Assigned(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS if !shared.closing => {
                shared.assigned.clear();
                shared.generation += 1;
                shared.revoking = Some(partitions.clone());
                shared.changes.push(GroupChange::Revoked(partitions));
            }
            _ => {
                if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    tracing::warn!(error = ?err, "rebalance failed");
                }
                if let Err(error) = consumer.unassign() {
                    tracing::warn!(%error, "giving up partitions failed");
                }
                shared.assigned.clear();
                shared.generation += 1;
                shared.changes.push(GroupChange::Revoked(partitions));
            }
        }
    }
}

/// The [`Consumer`] over librdkafka.
pub struct RemoteConsumer {
    pub(super) inner: Arc<BaseConsumer<MemberContext>>,
    pub(super) config: ConsumerConfig,
    pub(super) shared: Arc<Mutex<Shared>>,
    /// The next offset to hand over, per assigned partition (after `subscribe`: per partition
    /// read from since the last assignment).
    pub(super) positions: BTreeMap<TopicPartition, i64>,
    /// Positions were moved by a seek: assign again before the next poll.
    pub(super) reassign: bool,
    pub(super) subscribed: bool,
    /// After `subscribe`: the count of assignments the positions follow.
    pub(super) generation_held: u64,
    /// After `subscribe`: partitions sought since the last poll.
    pub(super) seeks: std::collections::BTreeSet<TopicPartition>,
    /// Partitions whose end the last poll reached (librdkafka's partition EOF events).
    pub(super) at_end: std::collections::BTreeSet<TopicPartition>,
}

impl std::fmt::Debug for RemoteConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConsumer")
            .field("group", &self.config.group_id)
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

impl RemoteConsumer {
    /// The partitions the group assigned to this member, and the count of assignments seen.
    pub(super) fn group_assignment(&self) -> (Vec<TopicPartition>, u64) {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        (shared.assigned.clone(), shared.generation)
    }

    /// After a rebalance, the positions of the partitions assigned now: the group's committed
    /// offsets, or where `auto_offset_reset` says (where librdkafka starts fetching them too).
    /// Completes a revocation the last poll reported first (librdkafka then rejoins the group).
    /// Partitions that records were already handed over from since their assignment keep their
    /// positions.
    pub(super) async fn follow_group(&mut self) -> Result<()> {
        let revoked = self.shared.lock().unwrap_or_else(|e| e.into_inner()).revoking.take();
        if let Some(revoked) = revoked {
            for tp in &revoked {
                self.positions.remove(tp);
            }
            let consumer = self.inner.clone();
            blocking(move || consumer.unassign()).await?.map_err(|e| client_error("giving up partitions", e))?;
        }
        let (assigned, generation) = self.group_assignment();
        if generation == self.generation_held {
            return Ok(());
        }
        let mut positions = BTreeMap::new();
        let mut unknown = Vec::new();
        for tp in assigned {
            match self.positions.get(&tp) {
                Some(p) => {
                    positions.insert(tp, *p);
                }
                None => unknown.push(tp),
            }
        }
        positions.extend(self.start_positions(unknown).await?);
        self.positions = positions;
        self.generation_held = generation;
        Ok(())
    }

    pub(super) fn assign_positions(&self) -> Result<()> {
        let mut tpl = TopicPartitionList::with_capacity(self.positions.len());
        for (tp, position) in &self.positions {
            tpl.add_partition_offset(&tp.topic, partition_i32(tp.partition)?, Offset::Offset(*position))
                .map_err(|e| client_error("assigning partitions", e))?;
        }
        self.inner.assign(&tpl).map_err(|e| client_error("assigning partitions", e))
    }

    pub(super) async fn watermarks(&self, tp: &TopicPartition) -> Result<(i64, i64)> {
        watermarks(self.inner.clone(), tp).await
    }

    /// Where each partition starts: the group's committed offset, or where `auto_offset_reset`
    /// says.
    pub(super) async fn start_positions(
        &self,
        partitions: Vec<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let committed = Consumer::committed(self, &partitions).await?;
        let mut positions = BTreeMap::new();
        for tp in partitions {
            let position = match committed.get(&tp) {
                Some(c) => c.offset,
                None => self.reset_position(&tp).await?,
            };
            positions.insert(tp, position);
        }
        Ok(positions)
    }

    pub(super) async fn reset_position(&self, tp: &TopicPartition) -> Result<i64> {
        let (low, high) = self.watermarks(tp).await?;
        match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => Ok(low),
            AutoOffsetReset::Latest => Ok(high),
            AutoOffsetReset::None => Err(Error::InvalidConfig {
                key: "auto.offset.reset".into(),
                value: "none".into(),
                reason: format!("{tp} has no committed offset and the consumer may not pick one"),
            }),
        }
    }
}

/// How long a request failing with a transient error (see [`super::transient`]) is retried
/// (the Java client's `default.api.timeout.ms`).
const TRANSIENT_RETRY: Duration = Duration::from_secs(60);

/// How long one attempt of an offsets lookup waits: a leader that died keeps librdkafka waiting
/// for its connection until the attempt times out, when the metadata is refreshed and the next
/// attempt asks the new leader.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn watermarks<C: ConsumerContext + 'static>(
    consumer: Arc<BaseConsumer<C>>,
    tp: &TopicPartition,
) -> Result<(i64, i64)> {
    let (topic, partition) = (tp.topic.clone(), partition_i32(tp.partition)?);
    // A client whose metadata predates the topic (or its newest partitions) does not know the
    // partition yet, and a cluster may not have elected its leader yet (a topic just created on
    // Kafka): it refreshes its metadata and asks again, for a while.
    let started = tokio::time::Instant::now();
    loop {
        let (c, t) = (consumer.clone(), topic.clone());
        let result = blocking(move || c.fetch_watermarks(&t, partition, ATTEMPT_TIMEOUT)).await?;
        match result {
            Ok(w) => return Ok(w),
            Err(e) => match e.rdkafka_error_code() {
                Some(code)
                    if (matches!(
                        code,
                        RDKafkaErrorCode::UnknownPartition
                            | RDKafkaErrorCode::UnknownTopic
                            // A broker not yet told it leads the partition.
                            | RDKafkaErrorCode::UnknownTopicOrPartition
                    ) && started.elapsed() < Duration::from_secs(5))
                        || (super::transient(code) && started.elapsed() < TRANSIENT_RETRY) =>
                {
                    let (c, t) = (consumer.clone(), topic.clone());
                    let _ = blocking(move || c.fetch_metadata(Some(&t), ATTEMPT_TIMEOUT).map(|_| ())).await?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(code) => return Err(topic_error("reading the offsets of", &tp.topic, code, None)),
                None => return Err(Error::Remote(format!("reading the offsets of {tp}: {e}"))),
            },
        }
    }
}

pub(super) async fn committed<C: ConsumerContext + 'static>(
    consumer: Arc<BaseConsumer<C>>,
    partitions: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for tp in partitions {
        tpl.add_partition(&tp.topic, partition_i32(tp.partition)?);
    }
    // A group coordinator that is moving or still loading its offsets (a cluster just started)
    // is asked again, for a while.
    let started = tokio::time::Instant::now();
    let tpl = loop {
        let (c, asked) = (consumer.clone(), tpl.clone());
        match blocking(move || c.committed_offsets(asked, REQUEST_TIMEOUT)).await? {
            Ok(tpl) => break tpl,
            Err(e) if e.rdkafka_error_code().is_some_and(super::transient) && started.elapsed() < TRANSIENT_RETRY => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(client_error("reading committed offsets", e)),
        }
    };
    let mut out = BTreeMap::new();
    for e in tpl.elements() {
        if let (Offset::Offset(offset), Ok(partition)) = (e.offset(), u32::try_from(e.partition())) {
            let mut committed = OffsetAndMetadata::new(offset);
            committed.metadata = e.metadata().to_string();
            out.insert(TopicPartition::new(e.topic(), partition), committed);
        }
    }
    Ok(out)
}

/// Messages of one partition copied out of librdkafka, as record batches.
pub(super) struct PartitionRun {
    pub(super) batches: Vec<Bytes>,
    pub(super) builder: Option<(BatchBuilder, i64)>,
    pub(super) next_offset: i64,
    pub(super) first_offset: i64,
}

impl PartitionRun {
    pub(super) fn finish_batch(&mut self) {
        if let Some((builder, base_offset)) = self.builder.take() {
            let mut batch = bytes::BytesMut::from(builder.finish());
            assign_in_place(&mut batch, base_offset, -1, None);
            self.batches.push(batch.freeze());
        }
    }
}

#[async_trait]
impl Consumer for RemoteConsumer {
    async fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        self.at_end.clear();
        if self.subscribed {
            self.inner.unsubscribe();
            self.subscribed = false;
        }
        self.positions = self.start_positions(partitions).await?;
        self.assign_positions()?;
        self.reassign = false;
        Ok(())
    }

    async fn seek(&mut self, tp: &TopicPartition, to: OffsetSpec) -> Result<()> {
        self.at_end.remove(tp);
        if !self.positions.contains_key(tp) {
            return Err(Error::Internal(format!("{tp} is not assigned to this consumer")));
        }
        let offset = match to {
            OffsetSpec::Earliest => self.watermarks(tp).await?.0,
            // A consumer's own isolation decides what its end is.
            OffsetSpec::Latest | OffsetSpec::LastStable => self.watermarks(tp).await?.1,
            OffsetSpec::Timestamp(ts) => match offset_for_time(self.inner.clone(), tp, ts).await? {
                Some(offset) => offset,
                None => self.watermarks(tp).await?.1,
            },
            // Kafka's MAX_TIMESTAMP: -3 as the timestamp asked for.
            OffsetSpec::MaxTimestamp => match offset_for_time(self.inner.clone(), tp, -3).await? {
                Some(offset) => offset,
                None => self.watermarks(tp).await?.1,
            },
        };
        self.seek_to_offset(tp, offset)
    }

    fn seek_to_offset(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        self.at_end.remove(tp);
        match self.positions.get_mut(tp) {
            Some(p) => {
                *p = offset;
                self.reassign = true;
                if self.subscribed {
                    self.seeks.insert(tp.clone());
                }
                Ok(())
            }
            None => Err(Error::Internal(format!("{tp} is not assigned to this consumer"))),
        }
    }

    fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.positions.get(tp).copied()
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedBatches>> {
        if self.reassign && !self.subscribed {
            self.assign_positions()?;
            self.reassign = false;
        }
        if self.subscribed {
            self.shared.lock().unwrap_or_else(|e| e.into_inner()).changes.clear();
            self.follow_group().await?;
            // The group's assignment stays librdkafka's: a seek moves its fetch position.
            let seeks: Vec<(TopicPartition, i64)> = std::mem::take(&mut self.seeks)
                .into_iter()
                .filter_map(|tp| self.positions.get(&tp).map(|p| (tp, *p)))
                .collect();
            if !seeks.is_empty() {
                let consumer = self.inner.clone();
                blocking(move || -> Result<()> {
                    for (tp, offset) in seeks {
                        consumer
                            .seek(&tp.topic, partition_i32(tp.partition)?, Offset::Offset(offset), REQUEST_TIMEOUT)
                            .map_err(|e| client_error(&format!("seeking {tp}"), e))?;
                    }
                    Ok(())
                })
                .await??;
            }
        }
        let consumer = self.inner.clone();
        let budget = self.config.fetch_max_bytes;
        let positions = self.positions.clone();
        let subscribed = self.subscribed;
        let shared = self.shared.clone();
        let runs = blocking(move || -> Result<(BTreeMap<TopicPartition, PartitionRun>, HashMap<i32, bool>)> {
            let mut runs: BTreeMap<TopicPartition, PartitionRun> = BTreeMap::new();
            // Per partition number (librdkafka's end event names no topic): whether its end was
            // the last thing seen of it.
            let mut eofs: HashMap<i32, bool> = HashMap::new();
            let (mut n_bytes, mut n_records) = (0u64, 0usize);
            let mut wait = max_wait;
            while n_bytes < budget && n_records < MAX_POLL_RECORDS {
                let polled = consumer.poll(wait);
                // A revocation returns at once, so the caller commits before the group moves on.
                if subscribed && shared.lock().unwrap_or_else(|e| e.into_inner()).revoking.is_some() {
                    wait = Duration::ZERO;
                    if polled.is_none() {
                        break;
                    }
                }
                let message = match polled {
                    None => break,
                    Some(Ok(m)) => m,
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        eofs.insert(partition, true);
                        continue;
                    }
                    // The member went too long without polling: the group has moved on without
                    // it (reported as a revocation); this poll rejoins.
                    Some(Err(e)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::PollExceeded) => {
                        tracing::warn!(error = %e, "this consumer was too slow to poll; rejoining its group");
                        continue;
                    }
                    // A subscribed topic that does not exist (yet): as Kafka's consumer (and the
                    // embedded one), the member waits for it rather than failing.
                    Some(Err(e))
                        if subscribed
                            && matches!(
                                e.rdkafka_error_code(),
                                Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic)
                            ) =>
                    {
                        tracing::debug!(error = %e, "a subscribed topic does not exist yet");
                        continue;
                    }
                    // A broker going away (a leader killed, a restart) or a partition's leader
                    // moving: librdkafka reconnects and fetches from the new leader, and as with
                    // Kafka's own consumer, polling goes on.
                    Some(Err(e))
                        if e.rdkafka_error_code().is_some_and(|c| {
                            matches!(c, RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
                                || super::transient(c)
                        }) =>
                    {
                        tracing::info!(error = %e, "a broker is unreachable or a leader moved; fetching goes on");
                        continue;
                    }
                    Some(Err(e)) => return Err(client_error("fetching", e)),
                };
                wait = Duration::ZERO;
                eofs.insert(message.partition(), false);
                let Ok(partition) = u32::try_from(message.partition()) else { continue };
                let tp = TopicPartition::new(message.topic(), partition);
                let offset = message.offset();
                let expected = match positions.get(&tp) {
                    Some(p) => *p,
                    // Assigned by a rebalance during this poll: from where the group says.
                    None if subscribed => i64::MIN,
                    // A message fetched before the partition was unassigned.
                    None => continue,
                };
                if offset < expected {
                    continue;
                }
                let run = runs.entry(tp).or_insert_with(|| PartitionRun {
                    batches: Vec::new(),
                    builder: None,
                    next_offset: offset,
                    first_offset: if expected == i64::MIN { offset } else { expected },
                });
                // A gap (compaction, transaction markers) or a large batch starts a new batch.
                if offset != run.next_offset || run.builder.as_ref().is_some_and(|(b, _)| b.size() >= 1 << 20) {
                    run.finish_batch();
                }
                let headers: Vec<Header> = message
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| Header { key: h.key.to_string(), value: h.value.map(Bytes::copy_from_slice) })
                            .collect()
                    })
                    .unwrap_or_default();
                let timestamp = message.timestamp().to_millis().unwrap_or(-1);
                let (builder, _) = run.builder.get_or_insert_with(|| (BatchBuilder::with_capacity(16 << 10), offset));
                builder.push(message.key(), message.payload(), &headers, timestamp);
                run.next_offset = offset + 1;
                n_bytes += (message.key().map_or(0, <[u8]>::len) + message.payload().map_or(0, <[u8]>::len)) as u64;
                n_records += 1;
            }
            for run in runs.values_mut() {
                run.finish_batch();
            }
            Ok((runs, eofs))
        })
        .await??;
        let (runs, eofs) = runs;
        for tp in runs.keys() {
            self.at_end.remove(tp);
        }
        for (partition, at_end) in eofs {
            // Only where the partition number names one partition of the assignment.
            let mut matching = self.positions.keys().filter(|tp| i64::from(tp.partition) == i64::from(partition));
            if let (Some(tp), None, true) = (matching.next(), matching.next(), at_end) {
                self.at_end.insert(tp.clone());
            }
        }
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(runs.len());
        for (tp, run) in runs {
            self.positions.insert(tp.clone(), run.next_offset);
            let bytes = if run.batches.len() == 1 {
                run.batches.into_iter().next().unwrap_or_default()
            } else {
                Bytes::from(run.batches.concat())
            };
            let key = (tp.topic.clone(), partition_i32(tp.partition)?);
            let high_watermark = shared.high_watermarks.get(&key).copied().unwrap_or(-1).max(run.next_offset);
            out.push(ConsumedBatches { tp, bytes, from_offset: run.first_offset, high_watermark });
        }
        Ok(out)
    }

    async fn commit(&mut self, offsets: BTreeMap<TopicPartition, OffsetAndMetadata>) -> Result<()> {
        if self.config.group_id.is_none() {
            return Err(no_group("commit offsets"));
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for (tp, committed) in &offsets {
            tpl.add_partition_offset(&tp.topic, partition_i32(tp.partition)?, Offset::Offset(committed.offset))
                .map_err(|e| client_error("committing", e))?;
            if !committed.metadata.is_empty() {
                if let Some(mut e) = tpl.find_partition(&tp.topic, partition_i32(tp.partition)?) {
                    e.set_metadata(committed.metadata.clone());
                }
            }
        }
        let consumer = self.inner.clone();
        blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await?.map_err(|e| match e.rdkafka_error_code() {
            Some(
                code @ (RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::FencedInstanceId),
            ) => Error::Rebalanced(code.to_string()),
            _ => client_error("committing", e),
        })
    }

    async fn commit_positions(&mut self) -> Result<()> {
        let offsets = self.positions.iter().map(|(tp, p)| (tp.clone(), OffsetAndMetadata::new(*p))).collect();
        self.commit(offsets).await
    }

    async fn committed(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
        match &self.config.group_id {
            Some(_) if !partitions.is_empty() => committed(self.inner.clone(), partitions).await,
            _ => Ok(BTreeMap::new()),
        }
    }

    async fn subscribe(&mut self, topics: Vec<String>) -> Result<()> {
        self.at_end.clear();
        if self.config.group_id.is_none() {
            return Err(no_group("subscribe"));
        }
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.inner.subscribe(&topics).map_err(|e| client_error("subscribing", e))?;
        self.subscribed = true;
        self.positions.clear();
        self.generation_held = self.group_assignment().1;
        Ok(())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    fn take_group_changes(&mut self) -> Vec<GroupChange> {
        std::mem::take(&mut self.shared.lock().unwrap_or_else(|e| e.into_inner()).changes)
    }

    // librdkafka's assignment is the reference here (a partition the group just assigned has no
    // position until the next poll); it ignores partitions outside it.
    fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.inner.pause(&tpl_of(partitions)?).map_err(|e| client_error("pausing partitions", e))
    }

    fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.inner.resume(&tpl_of(partitions)?).map_err(|e| client_error("resuming partitions", e))
    }

    fn reached_end(&self, tp: &TopicPartition) -> bool {
        self.at_end.contains(tp)
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        let group_id = self.config.group_id.clone()?;
        let native = self.inner.group_metadata()?;
        Some(GroupMetadata { group_id, native: Some(Arc::new(native)) })
    }
}

pub(super) fn tpl_of(partitions: &[TopicPartition]) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for tp in partitions {
        tpl.add_partition(&tp.topic, partition_i32(tp.partition)?);
    }
    Ok(tpl)
}

impl Drop for RemoteConsumer {
    fn drop(&mut self) {
        // librdkafka revokes the assignment while closing: it must not wait for a next poll.
        let pending = {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            shared.closing = true;
            shared.revoking.take()
        };
        if pending.is_some() {
            if let Err(error) = self.inner.unassign() {
                tracing::debug!(%error, "giving up partitions while closing");
            }
        }
    }
}
