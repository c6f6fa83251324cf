//! A sink task's loop: a member of the consumer group `connect-<connector>` reads the topics,
//! converts and transforms each record and puts it to the task; offsets are committed only for
//! what the task's `pre_commit` says is durable, at each flush interval, before partitions are
//! revoked in a rebalance, and when the task stops.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use freshet_core::{
    AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, GroupChange, OffsetAndMetadata, TopicPartition,
};
use tokio::time::Instant;

use super::errors::{ErrorPolicy, Failed, Failure, Stage};
use super::task::{Conversion, State, TargetState, TaskRun};
use crate::connector::{ErrantRecordReporter, SinkTask, SinkTaskContext};
use crate::error::{ConnectError, Result};
use crate::record::{SinkOffsets, SinkRecord};

/// How long a poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(200);
/// The most a poll returns, in bytes.
const POLL_BYTES: u64 = 1 << 20;
/// How often `topics.regex` is matched against the topics again.
const TOPICS_REFRESH: Duration = Duration::from_secs(5);

/// The consumer group of a sink connector, as Kafka Connect names it.
pub fn group_id(connector: &str) -> String {
    format!("connect-{connector}")
}

/// Runs a sink task until its connector is stopped; an error fails it.
pub(crate) async fn run(run: TaskRun, mut task: Box<dyn SinkTask>) -> Result<()> {
    let conversion = Conversion::new(&run.worker_config, &run.connector_config)?;
    let policy = Arc::new(ErrorPolicy::new(&run)?);
    let reporter = Arc::new(Reporter {
        run: run.clone(),
        policy: policy.clone(),
        stored: policy.keeps_failed_records().then(Mutex::default),
    });
    let mut consumer = run.substrate.consumer(ConsumerConfig {
        group_id: Some(group_id(&run.connector)),
        auto_offset_reset: AutoOffsetReset::Earliest,
        client_id: Some(format!("connector-consumer-{}-{}", run.connector, run.id)),
        // A poll (what one put is given) holds at most a MiB of records, so a sink's memory stays
        // bounded however far behind it is (Kafka's max.poll.records plays this part).
        max_partition_fetch_bytes: POLL_BYTES,
        fetch_max_bytes: POLL_BYTES,
        ..ConsumerConfig::default()
    })?;
    let topics = Topics::new(&run.connector_config)?;
    let mut subscribed = topics.resolve(&run).await?;
    consumer.subscribe(subscribed.clone()).await?;
    task.initialize(SinkTaskContext::new(reporter.clone()));
    task.start(&run.task_config).await?;
    run.shared.set(State::Running);
    let mut sink = Sink { consumer, current: SinkOffsets::new(), committed: SinkOffsets::new(), paused: false };
    let interval = run.flush_interval();
    let mut last_flush = Instant::now();
    let mut last_topics = Instant::now();
    let result: Result<()> = async {
        loop {
            match run.target() {
                TargetState::Stopped => break,
                TargetState::Paused if !sink.paused => {
                    sink.consumer.pause(&sink.consumer.assignment())?;
                    sink.paused = true;
                    run.shared.set(State::Paused);
                }
                TargetState::Started if sink.paused => {
                    sink.consumer.resume(&sink.consumer.assignment())?;
                    sink.paused = false;
                    run.shared.set(State::Running);
                }
                _ => {}
            }
            let batches = sink.consumer.poll(POLL_WAIT).await?;
            for change in sink.consumer.take_group_changes() {
                match change {
                    GroupChange::Revoked(partitions) => {
                        sink.commit(&run, &reporter, &mut *task, Some(&partitions)).await?;
                        task.close(&partitions).await?;
                        for tp in &partitions {
                            sink.current.remove(tp);
                            sink.committed.remove(tp);
                        }
                        reporter.forget(&partitions);
                    }
                    GroupChange::Assigned(partitions) => {
                        if sink.paused {
                            sink.consumer.pause(&partitions)?;
                        }
                        let new: Vec<TopicPartition> =
                            partitions.into_iter().filter(|tp| !sink.current.contains_key(tp)).collect();
                        task.open(&new).await?;
                    }
                }
            }
            let mut records = Vec::new();
            let mut seen = Vec::new();
            for batch in &batches {
                let mut read = 0;
                for record in batch.records()? {
                    read += 1;
                    match conversion.read_from_log(&batch.tp.topic, batch.tp.partition, &record) {
                        Ok(Some(r)) => {
                            reporter.keep(&batch.tp, &record);
                            records.push(SinkRecord {
                                record: r,
                                original_topic: batch.tp.topic.clone(),
                                original_partition: batch.tp.partition,
                                kafka_offset: record.offset,
                            })
                        }
                        Ok(None) => {
                            run.shared.metrics.records_filtered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(failure) => {
                            let failed = Failed::Consumed {
                                topic: &batch.tp.topic,
                                partition: batch.tp.partition,
                                record: &record,
                            };
                            policy.tolerate(&run, failure, Some(failed)).await?;
                        }
                    }
                }
                run.shared.metrics.records_read.fetch_add(read, Ordering::Relaxed);
                run.shared.metrics.uncommitted_records.fetch_add(read, Ordering::Relaxed);
                seen.push(batch.tp.clone());
            }
            if !records.is_empty() {
                put(&run, &policy, &mut *task, &records).await?;
                run.shared.metrics.records_written.fetch_add(records.len() as u64, Ordering::Relaxed);
            }
            for tp in seen {
                if let Some(position) = sink.consumer.position(&tp) {
                    sink.current.insert(tp, position);
                }
            }
            if last_flush.elapsed() >= interval {
                sink.commit(&run, &reporter, &mut *task, None).await?;
                last_flush = Instant::now();
            }
            if topics.regex.is_some() && last_topics.elapsed() >= TOPICS_REFRESH {
                last_topics = Instant::now();
                let now = topics.resolve(&run).await?;
                if now != subscribed {
                    sink.commit(&run, &reporter, &mut *task, None).await?;
                    sink.consumer.subscribe(now.clone()).await?;
                    subscribed = now;
                }
            }
        }
        sink.commit(&run, &reporter, &mut *task, None).await?;
        let assigned = sink.consumer.assignment();
        task.close(&assigned).await
    }
    .await;
    let stopped = task.stop().await;
    result.and(stopped)
}

/// Gives records to the task; a failure that may pass (Connect's `RetriableException`) has the
/// same records given again after a backoff, as Kafka's worker redelivers them, until the
/// connector is stopped.
async fn put(run: &TaskRun, policy: &ErrorPolicy, task: &mut dyn SinkTask, records: &[SinkRecord]) -> Result<()> {
    let mut attempt = 0;
    loop {
        match task.put(records).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retriable() && run.target() != TargetState::Stopped => {
                attempt += 1;
                let wait = policy.backoff(attempt);
                tracing::warn!(connector = run.connector, task = run.id, error = %e, ?wait, "put failed; giving the records again");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The consumer and the offsets of what was put.
struct Sink {
    consumer: Box<dyn Consumer>,
    /// The next offset after what was put to the task, per partition.
    current: SinkOffsets,
    /// What was last committed.
    committed: SinkOffsets,
    paused: bool,
}

impl Sink {
    /// Asks the task what is durable of what was put (of `only` these partitions, or all) and
    /// commits that for the group.
    async fn commit(
        &mut self,
        run: &TaskRun,
        reporter: &Reporter,
        task: &mut dyn SinkTask,
        only: Option<&[TopicPartition]>,
    ) -> Result<()> {
        let offered: SinkOffsets = self
            .current
            .iter()
            .filter(|(tp, _)| only.is_none_or(|o| o.contains(tp)))
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        if offered.is_empty() {
            return Ok(());
        }
        let durable = task.pre_commit(offered.clone()).await?;
        let to_commit: BTreeMap<TopicPartition, OffsetAndMetadata> = durable
            .into_iter()
            .filter(|(tp, o)| offered.contains_key(tp) && self.committed.get(tp) != Some(o))
            .map(|(tp, o)| (tp, OffsetAndMetadata::new(o)))
            .collect();
        if to_commit.is_empty() {
            return Ok(());
        }
        let metrics = &run.shared.metrics;
        if let Err(e) = self.consumer.commit(to_commit.clone()).await {
            // As Kafka's worker: logged, and tried again at the next commit.
            metrics.offset_commit_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(connector = run.connector, task = run.id, error = %e, "committing sink offsets failed");
            return Ok(());
        }
        for (tp, o) in to_commit {
            self.committed.insert(tp, o.offset);
        }
        reporter.committed(&self.committed);
        task.committed(&self.committed);
        metrics.offset_commits.fetch_add(1, Ordering::Relaxed);
        metrics.uncommitted_records.store(0, Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        metrics.last_commit_ms.store(now, Ordering::Relaxed);
        Ok(())
    }
}

/// The worker's side of a task's [`ErrantRecordReporter`]: the connector's error policy, and the
/// records put but not yet committed as the log stored them, while a dead-letter topic or the
/// error log may need them.
struct Reporter {
    run: TaskRun,
    policy: Arc<ErrorPolicy>,
    /// By partition and offset; `None` when failed records go nowhere. Copied out of the fetched
    /// buffers, so a kept record does not hold a whole fetch in memory.
    stored: Option<Mutex<BTreeMap<TopicPartition, BTreeMap<i64, ConsumerRecord>>>>,
}

impl Reporter {
    fn keep(&self, tp: &TopicPartition, record: &ConsumerRecord) {
        let Some(stored) = &self.stored else { return };
        let copy = |b: &Option<bytes::Bytes>| b.as_deref().map(bytes::Bytes::copy_from_slice);
        let record = ConsumerRecord { key: copy(&record.key), value: copy(&record.value), ..record.clone() };
        let mut stored = stored.lock().expect("reporter lock");
        stored.entry(tp.clone()).or_default().insert(record.offset, record);
    }

    /// Offsets were committed: records below them will not be reported.
    fn committed(&self, committed: &SinkOffsets) {
        let Some(stored) = &self.stored else { return };
        let mut stored = stored.lock().expect("reporter lock");
        for (tp, offset) in committed {
            if let Some(records) = stored.get_mut(tp) {
                *records = records.split_off(offset);
            }
        }
    }

    /// Partitions were revoked.
    fn forget(&self, partitions: &[TopicPartition]) {
        let Some(stored) = &self.stored else { return };
        let mut stored = stored.lock().expect("reporter lock");
        for tp in partitions {
            stored.remove(tp);
        }
    }
}

#[async_trait]
impl ErrantRecordReporter for Reporter {
    async fn report(&self, record: &SinkRecord, error: ConnectError) -> Result<()> {
        let failure = Failure { stage: Stage::TaskPut, error };
        let tp = TopicPartition::new(record.original_topic.clone(), record.original_partition);
        let stored = self
            .stored
            .as_ref()
            .and_then(|s| s.lock().expect("reporter lock").get(&tp).and_then(|r| r.get(&record.kafka_offset)).cloned());
        let failed = match &stored {
            Some(stored) => Failed::Consumed { topic: &tp.topic, partition: tp.partition, record: stored },
            None => Failed::Given(record),
        };
        self.policy.tolerate(&self.run, failure, Some(failed)).await
    }
}

/// The topics a sink reads: a list, or those matching a regex.
struct Topics {
    list: Vec<String>,
    regex: Option<regex::Regex>,
}

impl Topics {
    fn new(config: &crate::config::Config) -> Result<Self> {
        let regex = match config.get("topics.regex") {
            Some(r) => Some(
                regex::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| ConnectError::config("topics.regex", r, e.to_string()))?,
            ),
            None => None,
        };
        Ok(Topics { list: config.list("topics"), regex })
    }

    async fn resolve(&self, run: &TaskRun) -> Result<Vec<String>> {
        let Some(regex) = &self.regex else { return Ok(self.list.clone()) };
        let mut topics: Vec<String> = run
            .substrate
            .admin()?
            .list_topics()
            .await?
            .into_iter()
            .map(|t| t.name)
            .filter(|name| regex.is_match(name))
            .collect();
        topics.sort();
        Ok(topics)
    }
}
