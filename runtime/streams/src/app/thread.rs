//! A stream thread: its loop (poll, process in timestamp order, send, punctuate, commit), and the
//! tasks it runs.

use super::*;

/// Repartition topics a stream thread wrote records to that its consumer may not have seen yet:
/// records in the outbox, in the batch in flight, or acknowledged since the last poll.
#[derive(Default)]
pub(super) struct Unpolled {
    pub(super) outbox: HashSet<String>,
    pub(super) in_flight: HashSet<String>,
    pub(super) acknowledged: HashSet<String>,
}

impl Unpolled {
    pub(super) fn contains(&self, topic: &str) -> bool {
        self.outbox.contains(topic) || self.in_flight.contains(topic) || self.acknowledged.contains(topic)
    }
}

/// One task as a thread runs it.
pub(super) struct RunningTask {
    pub(super) id: TaskId,
    pub(super) graph: TaskGraph,
    pub(super) ctx: TaskContext,
    /// Records read and not yet processed, per (physical) input partition.
    pub(super) queues: BTreeMap<TopicPartition, VecDeque<ConsumerRecord>>,
    /// The (physical) input topics that are tables' topics: first among equal timestamps.
    pub(super) tables: BTreeSet<String>,
    /// The next offset to commit per input partition (after the last record processed).
    pub(super) processed: BTreeMap<TopicPartition, i64>,
    /// Records on the log past what was fetched, per input partition, at the last poll.
    pub(super) behind: BTreeMap<TopicPartition, i64>,
    /// Since when the task has waited for a partition to be fetched.
    pub(super) waiting_since: Option<Instant>,
    /// Dropped and late counts already added to the application's counters.
    pub(super) reported: (u64, u64),
    pub(super) span: tracing::Span,
}

/// A stream thread: a member of its application's group, running the tasks dealt to it.
pub(super) struct StreamThread {
    /// The thread's consumer's client id: `<application id>-<instance>-StreamThread-<n>`.
    pub(super) client_id: String,
    /// Each (physical) source topic's sub-topology and that sub-topology's partition count.
    pub(super) sources: Arc<HashMap<String, (usize, u32)>>,
    /// The sub-topologies writing each (physical) repartition topic.
    pub(super) writers: Arc<HashMap<String, Vec<usize>>>,
    /// Every task of the application: `(sub-topology, partition, partitions)`.
    pub(super) all_tasks: Arc<Vec<(usize, u32, u32)>>,
    pub(super) topology: Topology,
    pub(super) substrate: Plumbing,
    pub(super) globals: Option<Arc<Mutex<TaskState>>>,
    /// Whether the thread has had its first assignment.
    pub(super) ready: bool,
    /// Between a revocation and the end of its rebalance (and before the first assignment).
    pub(super) in_rebalance: bool,
    /// Tasks this thread keeps warm copies of: `(sub-topology, partition, partitions)`.
    pub(super) standbys: Vec<(usize, u32, u32)>,
    /// Whether the standbys follow the group's current assignment (else: try at the next commit).
    pub(super) standbys_placed: bool,
    /// The standby copies open now, by task id.
    pub(super) standby_states: BTreeMap<TaskId, TaskState>,
    pub(super) tasks: Vec<RunningTask>,
    /// Tasks whose partitions were revoked, kept open until the rebalance ends: closed if it
    /// does not give them back.
    pub(super) suspended: Vec<RunningTask>,
    /// Which task reads each (physical) input partition.
    pub(super) owner: HashMap<TopicPartition, usize>,
    pub(super) consumer: Box<dyn Consumer>,
    /// Where output goes: the substrate's producer, or (exactly-once) `txn`.
    pub(super) producer: Arc<dyn Producer>,
    /// Exactly-once: the thread's transactional producer, a transaction always open.
    pub(super) txn: Option<Arc<dyn TransactionalProducer>>,
    /// The changelogs this thread's tasks write (through `txn`, exactly-once).
    pub(super) changelogs: Changelogs,
    pub(super) runtime: Handle,
    pub(super) config: Arc<StreamsConfig>,
    pub(super) shared: Arc<Shared>,
    pub(super) names: Arc<Names>,
    pub(super) last_commit: Instant,
    /// Whether failed input records may go to a dead-letter topic (so each is kept until
    /// processed).
    pub(super) keeps_failed_records: bool,
    /// Output records not sent yet.
    pub(super) out: Vec<ProducerRecord>,
    /// Repartition topics this thread wrote records to that a poll may not have seen yet.
    pub(super) unpolled: Unpolled,
    /// Records polled while tasks were opening, for the tasks once open.
    pub(super) early: Vec<freshet_core::ConsumedBatches>,
    /// Group changes seen while stores were opening, for the next loop to handle before it
    /// polls.
    pub(super) deferred_changes: Vec<GroupChange>,
    /// A revocation was reported and completes at the next poll: no poll before the commit.
    pub(super) revocation_pending: bool,
    /// The batch of output in flight.
    pub(super) sending: Option<Sending>,
}

/// A batch of output records sent and not yet acknowledged.
pub(super) struct Sending {
    pub(super) handle: tokio::task::JoinHandle<freshet_core::Result<()>>,
    pub(super) n: u64,
    /// The records, when the production error policy may need them one by one.
    pub(super) kept: Option<Vec<ProducerRecord>>,
}

/// Output records gathered before a send: sent when this many are waiting, and at the end of
/// each loop.
pub(super) const SEND_BATCH: usize = 50_000;

/// How often a stream thread opening tasks polls its (paused) consumer to stay in its group.
pub(super) const KEEPALIVE_POLL: Duration = Duration::from_secs(1);

/// How long a task waits for a partition that has records on the log but none fetched yet
/// before it processes its other partitions regardless.
pub(super) const MAX_WAIT_FOR_PARTITION: Duration = Duration::from_secs(5);

impl StreamThread {
    pub(super) fn app(&self) -> &str {
        &self.config.application_id
    }

    pub(super) fn run(mut self) -> Result<()> {
        let result = self.run_loop();
        if self.shared.abandon.load(Ordering::SeqCst) {
            // Killed: no commit, no close; the stores, locks and group membership go as a dead
            // process's would.
            self.tasks.clear();
            self.suspended.clear();
            self.standby_states.clear();
            return result;
        }
        // A failing thread does not commit: its last records will be processed again.
        let closed = if result.is_ok() { self.commit() } else { Ok(()) };
        self.close_standbys();
        if self.txn.is_some() && (result.is_err() || closed.is_err()) {
            // Exactly-once: what the open transaction wrote must not stay in the stores.
            self.abort_and_lose_tasks("the stream thread failed");
            return result.and(closed);
        }
        let mut close_result = Ok(());
        for task in std::mem::take(&mut self.tasks).into_iter().chain(std::mem::take(&mut self.suspended)) {
            let r = self.close_task(task);
            if close_result.is_ok() {
                close_result = r;
            }
        }
        result.and(closed).and(close_result)
    }
}

impl StreamThread {
    pub(super) fn run_loop(&mut self) -> Result<()> {
        while !self.shared.shutdown.load(Ordering::SeqCst) {
            let buffered = self.tasks.iter().any(|t| t.queues.values().any(|q| !q.is_empty()));
            let wait = if buffered { Duration::ZERO } else { self.config.poll_wait };
            // Changes seen while stores opened come first, before any poll: a poll would
            // complete a revocation among them before this thread committed.
            let mut changes: VecDeque<GroupChange> = self.deferred_changes.drain(..).collect();
            let batches = if changes.is_empty() {
                self.revocation_pending = false;
                // What was acknowledged before this poll is on the log for it to see.
                self.unpolled.acknowledged.clear();
                let batches = block_on(&self.runtime, self.consumer.poll(wait))?;
                changes.extend(self.consumer.take_group_changes());
                batches
            } else {
                Vec::new()
            };
            while let Some(change) = changes.pop_front() {
                match change {
                    GroupChange::Revoked(partitions) => self.on_revoked(&partitions)?,
                    GroupChange::Assigned(partitions) => self.on_assigned(&partitions)?,
                }
                // Seen while tasks were opening: handled in order, after them.
                changes.extend(self.deferred_changes.drain(..));
            }
            let early = std::mem::take(&mut self.early);
            let batches = batches.into_iter().chain(early);
            let mut lag = Vec::new();
            for b in batches {
                let next = b.next_offset();
                lag.push((b.tp.clone(), (b.high_watermark - next).max(0)));
                let Some(&task) = self.owner.get(&b.tp) else { continue };
                let task = &mut self.tasks[task];
                task.behind.insert(b.tp.clone(), (b.high_watermark - next).max(0));
                b.records_into(task.queues.entry(b.tp.clone()).or_default())?;
            }
            if !lag.is_empty() {
                self.shared.lag.lock().unwrap_or_else(|e| e.into_inner()).extend(lag);
            }
            // A failed transaction (see `recover_transaction`) reopens the tasks: the loop
            // starts over.
            let mut i = 0;
            while i < self.tasks.len() {
                let mut step = self.process_task(i);
                if step.is_ok() && self.out.len() >= SEND_BATCH {
                    step = self.send(false);
                }
                if step.is_err() {
                    self.recover_transaction(step)?;
                    break;
                }
                i += 1;
            }
            let now = self.config.clock.now_ms();
            for i in 0..self.tasks.len() {
                let task = &mut self.tasks[i];
                task.ctx.wall_clock_ms = now;
                let _entered = task.span.clone().entered();
                task.graph.punctuate(PunctuationType::WallClockTime, now, &mut task.ctx)?;
                self.drain_output(i);
            }
            let sent = self.send(false);
            self.recover_transaction(sent)?;
            if self.last_commit.elapsed() >= self.config.commit_interval {
                self.commit_or_lose_tasks()?;
                self.place_standbys();
            }
        }
        Ok(())
    }

    /// Processes every buffered record of task `i`, each time from the partition whose next
    /// record is oldest.
    pub(super) fn process_task(&mut self, i: usize) -> Result<()> {
        let span = self.tasks[i].span.clone();
        let _entered = span.enter();
        // Timed per call, not per record (reading the clock costs as much as a simple operator).
        let started = Instant::now();
        let result = self.process_buffered(i);
        self.shared.counters.process_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result
    }

    /// Whether records of the repartition topic `topic` may still come from this thread: a task
    /// of a sub-topology writing it has records to process, or its input is behind the log, or
    /// records for it wait to be sent, or the same holds of a repartition topic that task reads
    /// (a chain of sub-topologies: a join of two aggregates' results waits for the input of
    /// each aggregate, not only for the aggregate).
    pub(super) fn upstream_busy(&self, topic: &str) -> bool {
        self.upstream_busy_from(topic, &mut Vec::new())
    }

    pub(super) fn upstream_busy_from<'a>(&'a self, topic: &'a str, seen: &mut Vec<&'a str>) -> bool {
        if seen.contains(&topic) {
            return false;
        }
        seen.push(topic);
        let Some(subs) = self.writers.get(topic) else { return false };
        if self.unpolled.contains(topic) {
            return true;
        }
        let writers = self.tasks.iter().filter(|t| subs.contains(&t.ctx.subtopology));
        for t in writers {
            if t.queues.values().any(|q| !q.is_empty()) || t.behind.values().any(|&lag| lag > 0) {
                return true;
            }
            if t.queues
                .keys()
                .any(|tp| self.writers.contains_key(&tp.topic) && self.upstream_busy_from(&tp.topic, seen))
            {
                return true;
            }
        }
        false
    }

    pub(super) fn process_buffered(&mut self, i: usize) -> Result<()> {
        loop {
            // A partition with nothing buffered but more to come: more on the log, or (a
            // repartition topic) records its writers in this thread have yet to produce. Its next
            // records may be older than the other partitions' buffered ones, so the task waits for
            // the next poll, for a while at most. Kafka Streams waits only for records on the log
            // (max.task.idle.ms = 0); waiting for this thread's own upstream tasks too keeps a join
            // from racing ahead of one side when both are repartitioned (replaying history, the
            // side with fewer records would otherwise reach the join late).
            let task = &self.tasks[i];
            let starved = task.queues.len() > 1
                && task.queues.iter().any(|(tp, q)| {
                    q.is_empty() && (task.behind.get(tp).is_some_and(|&lag| lag > 0) || self.upstream_busy(&tp.topic))
                });
            let extractor = &self.config.timestamp_extractor;
            let task = &mut self.tasks[i];
            if starved {
                let since = *task.waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() < MAX_WAIT_FOR_PARTITION {
                    return Ok(());
                }
            } else {
                task.waiting_since = None;
            }
            // The oldest record; of equal timestamps, a table's first (see
            // `TaskGraph::is_table_source`).
            let next = task
                .queues
                .iter()
                .filter_map(|(tp, q)| q.front().map(|r| (extractor.extract(r), tp)))
                .min_by_key(|(ts, tp)| (*ts, !task.tables.contains(&tp.topic)))
                .map(|(_, tp)| tp.clone());
            let Some(tp) = next else { return Ok(()) };
            let record = task.queues.get_mut(&tp).and_then(VecDeque::pop_front).expect("a record is there");
            self.process_record(i, &tp, record)?;
            if self.out.len() >= SEND_BATCH {
                self.send(false)?;
            }
        }
    }

    pub(super) fn process_record(&mut self, i: usize, tp: &TopicPartition, r: ConsumerRecord) -> Result<()> {
        let timestamp = self.config.timestamp_extractor.extract(&r);
        let task = &mut self.tasks[i];
        let offset = r.offset;
        let meta = RecordMeta { topic: self.names.logical(&tp.topic), partition: tp.partition, offset };
        // The record is kept (its bytes shared) only when a failure could send it to a dead-letter
        // topic.
        let (key, value, headers, kept) = if self.keeps_failed_records {
            (r.key.clone(), r.value.clone(), r.headers.clone(), Some(r))
        } else {
            (r.key, r.value, r.headers, None)
        };
        let result = task.graph.process(meta, key, value, timestamp, headers, &mut task.ctx);
        let result = result.and_then(|()| {
            let now = task.ctx.stream_time_ms;
            task.graph.punctuate(PunctuationType::StreamTime, now, &mut task.ctx)
        });
        match task.processed.get_mut(tp) {
            Some(next) => *next = offset + 1,
            None => {
                task.processed.insert(tp.clone(), offset + 1);
            }
        }
        let counters = &self.shared.counters;
        counters.records_in.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = result {
            let policy = match &error {
                freshet_dsl::Error::Deserialize { .. } => &self.config.on_deserialization_error,
                _ => &self.config.on_processing_error,
            };
            // The failed record's partial output is dropped with it.
            task.ctx.output.clear();
            let (topic, partition) = (&tp.topic, tp.partition);
            match policy {
                ErrorPolicy::Fail => {
                    return Err(Error::Processing {
                        task: task.id,
                        topic: topic.clone(),
                        partition,
                        offset,
                        reason: error.to_string(),
                    })
                }
                ErrorPolicy::LogAndContinue => {
                    tracing::warn!(task = %task.id, %topic, partition, offset, %error, "skipping a record that failed");
                }
                ErrorPolicy::DeadLetter(dlq) => {
                    tracing::warn!(task = %task.id, %topic, partition, offset, %error, dead_letter_topic = %dlq, "a record that failed goes to the dead-letter topic");
                    let r = kept.expect("records are kept when a policy dead-letters");
                    self.out.push(dead_letter(dlq, topic, partition, offset, &error.to_string(), r));
                }
            }
            counters.records_skipped.fetch_add(1, Ordering::Relaxed);
        }
        self.drain_output(i);
        Ok(())
    }

    /// Moves what task `i`'s sinks wrote to the outbox, under physical topic names.
    pub(super) fn drain_output(&mut self, i: usize) {
        let task = &mut self.tasks[i];
        for s in task.ctx.output.drain(..) {
            let topic = match self.names.physical.get(&s.topic) {
                Some(physical) => physical.clone(),
                None => s.topic,
            };
            if self.writers.contains_key(&topic) && !self.unpolled.outbox.contains(&topic) {
                self.unpolled.outbox.insert(topic.clone());
            }
            self.out.push(ProducerRecord {
                topic,
                partition: s.partition,
                key: s.key,
                value: s.value,
                headers: s.headers,
                timestamp: Some(s.timestamp),
            });
        }
        let (dropped, late) = (task.ctx.dropped_records, task.ctx.late_records);
        let counters = &self.shared.counters;
        counters.dropped_records.fetch_add(dropped - task.reported.0, Ordering::Relaxed);
        counters.late_records.fetch_add(late - task.reported.1, Ordering::Relaxed);
        task.reported = (dropped, late);
    }

    /// Moves the outbox on: reaps the batch in flight if it is acknowledged (or waits for it,
    /// with `wait`, or when the outbox is full), then sends what the outbox holds as the next
    /// batch; with `wait`, returns only once everything sent is acknowledged. One batch is in
    /// flight at a time, so records keep their order, and processing goes on meanwhile: the
    /// outbox fills while the batch before it is acknowledged, so batches grow with the log's
    /// latency instead of one wait per loop.
    pub(super) fn send(&mut self, wait: bool) -> Result<()> {
        let must_wait = wait || self.out.len() >= SEND_BATCH;
        if self.sending.as_ref().is_some_and(|s| must_wait || s.handle.is_finished()) {
            self.reap_sent()?;
        }
        if self.sending.is_none() && !self.out.is_empty() {
            // The next batch is likely as large: sized now, it grows without copying.
            let capacity = self.out.len().min(SEND_BATCH);
            let records = std::mem::replace(&mut self.out, Vec::with_capacity(capacity));
            self.unpolled.in_flight = std::mem::take(&mut self.unpolled.outbox);
            let n = records.len() as u64;
            // Records are kept for the error policy to handle one by one, unless it fails anyway.
            let kept = (self.config.on_production_error != ErrorPolicy::Fail).then(|| records.clone());
            let producer = self.producer.clone();
            let handle = self.runtime.spawn(async move { producer.send(records).await.map(|_| ()) });
            self.sending = Some(Sending { handle, n, kept });
        }
        if wait && self.sending.is_some() {
            self.reap_sent()?;
        }
        Ok(())
    }

    /// Waits for the batch in flight; a refused batch is retried record by record, and each
    /// refused record goes to the production error policy.
    pub(super) fn reap_sent(&mut self) -> Result<()> {
        let Some(Sending { handle, n, kept }) = self.sending.take() else { return Ok(()) };
        let sent = std::mem::take(&mut self.unpolled.in_flight);
        self.unpolled.acknowledged.extend(sent);
        let result = block_on(&self.runtime, handle)
            .unwrap_or_else(|e| Err(freshet_core::Error::Internal(format!("a send task failed: {e}"))));
        let error = match result {
            Ok(()) => {
                self.shared.counters.records_out.fetch_add(n, Ordering::Relaxed);
                return Ok(());
            }
            Err(error) => error,
        };
        let Some(records) = kept else {
            return Err(Error::Output { what: "the output of a task".into(), source: error });
        };
        tracing::warn!(%error, records = n, "a send failed; retrying record by record");
        for record in records {
            let topic = record.topic.clone();
            match block_on(&self.runtime, self.producer.send(vec![record.clone()])) {
                Ok(_) => {
                    self.shared.counters.records_out.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => match &self.config.on_production_error {
                    ErrorPolicy::Fail => {
                        return Err(Error::Output { what: format!("a record to {topic}"), source: error })
                    }
                    ErrorPolicy::LogAndContinue => {
                        tracing::warn!(%topic, %error, "skipping an output record the log refused");
                        self.shared.counters.records_skipped.fetch_add(1, Ordering::Relaxed);
                    }
                    ErrorPolicy::DeadLetter(dlq) => {
                        let mut headers = record.headers.clone();
                        headers
                            .push(Header { key: "freshet.error".into(), value: Some(Bytes::from(error.to_string())) });
                        headers.push(Header {
                            key: "freshet.target.topic".into(),
                            value: Some(Bytes::from(topic.clone())),
                        });
                        let letter = ProducerRecord { topic: dlq.clone(), partition: None, headers, ..record };
                        block_on(&self.runtime, self.producer.send(vec![letter]))?;
                        self.shared.counters.records_skipped.fetch_add(1, Ordering::Relaxed);
                    }
                },
            }
        }
        Ok(())
    }

    /// Sends the outbox and waits for every output record's acknowledgement, flushes every store
    /// (changelogs acknowledged, checkpoints written), then commits the input offsets.
    pub(super) fn commit(&mut self) -> Result<()> {
        let started = Instant::now();
        self.send(true)?;
        let mut offsets = BTreeMap::new();
        for task in &mut self.tasks {
            let _entered = task.span.clone().entered();
            if let Some(state) = task.ctx.state.as_mut() {
                state.commit()?;
            }
            for (tp, &offset) in &task.processed {
                offsets.insert(tp.clone(), OffsetAndMetadata::new(offset));
            }
        }
        match &self.txn {
            Some(txn) => {
                // The input offsets commit with the output and the changelog writes.
                if !offsets.is_empty() {
                    let group = self.consumer.group_metadata().ok_or_else(|| {
                        Error::Failed("exactly-once needs the stream thread's consumer in its group".into())
                    })?;
                    block_on(&self.runtime, txn.send_offsets(offsets, &group))?;
                }
                block_on(&self.runtime, txn.commit())?;
                txn.begin()?;
            }
            None if !offsets.is_empty() => block_on(&self.runtime, self.consumer.commit(offsets))?,
            None => {}
        }
        let counters = &self.shared.counters;
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters.commit_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.refresh_standbys();
        self.last_commit = Instant::now();
        Ok(())
    }
}

/// A failed input record for a dead-letter topic, with where it came from and why it failed.
pub(super) fn dead_letter(
    topic: &str,
    source: &str,
    partition: u32,
    offset: i64,
    error: &str,
    r: ConsumerRecord,
) -> ProducerRecord {
    let mut headers = r.headers;
    let mut add = |key: &str, value: String| headers.push(Header { key: key.into(), value: Some(Bytes::from(value)) });
    add("freshet.error", error.to_string());
    add("freshet.source.topic", source.to_string());
    add("freshet.source.partition", partition.to_string());
    add("freshet.source.offset", offset.to_string());
    ProducerRecord {
        topic: topic.to_string(),
        partition: None,
        key: r.key,
        value: r.value,
        headers,
        timestamp: Some(r.timestamp),
    }
}
