//! A source task's loop: poll, transform and convert, write to the log, and store the records'
//! source offsets only once the log has acknowledged them. Writing a batch overlaps with polling
//! the next, so the source and the log work at once while the order of records is kept.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use freshet_core::{ProducerRecord, RecordMetadata};
use tokio::time::Instant;

use super::errors::{ErrorPolicy, Failed};
use super::offsets::ensure_topic;
use super::task::{Conversion, State, TargetState, TaskRun};
use crate::connector::{SourceTask, SourceTaskContext};
use crate::error::{ConnectError, Result};
use crate::record::{SourceAck, SourceMap, SourceRecord};

type Send = Pin<Box<dyn Future<Output = Result<Vec<RecordMetadata>>> + std::marker::Send>>;

/// The source offsets records carry, in order.
pub(super) type Offsets = Vec<(SourceMap, SourceMap)>;

/// Source offsets not yet stored: the latest per partition.
pub(super) type Pending = BTreeMap<String, (SourceMap, SourceMap)>;

/// Runs a source task until its connector is stopped; an error fails it.
pub(crate) async fn run(run: TaskRun, mut task: Box<dyn SourceTask>) -> Result<()> {
    let conversion = Conversion::new(&run.worker_config, &run.connector_config)?;
    let policy = ErrorPolicy::new(&run)?;
    // An exactly-once task fences the one before it (a zombie) before it reads its offsets, so
    // that nothing the zombie could still commit is read past.
    let exactly_once = match super::exactly_once::Transactions::of(&run)? {
        Some(transactions) => Some((transactions.producer(&run).await?, transactions)),
        None => None,
    };
    run.offsets.refresh().await?;
    let context = {
        let (offsets, connector) = (run.offsets.clone(), run.connector.clone());
        SourceTaskContext::new(move |partition| offsets.get(&connector, partition))
    };
    task.start(&run.task_config, context).await?;
    run.shared.set(State::Running);
    match exactly_once {
        Some((producer, transactions)) => {
            super::exactly_once::run(run, task, conversion, policy, producer, transactions).await
        }
        None => run_at_least_once(run, task, conversion, policy).await,
    }
}

/// The at-least-once loop: a batch's write overlaps the next poll, offsets are stored every
/// `offset.flush.interval.ms`.
async fn run_at_least_once(
    mut run: TaskRun,
    mut task: Box<dyn SourceTask>,
    conversion: Conversion,
    policy: ErrorPolicy,
) -> Result<()> {
    let producer = run.substrate.producer()?;
    let interval = run.flush_interval();
    let mut pending = Pending::new();
    let mut last_flush = Instant::now();
    let mut known_topics = HashSet::new();
    // The batch being written and the offsets it carries.
    let mut in_flight: Option<(Send, Offsets, usize)> = None;
    let result: Result<()> = async {
        loop {
            match run.target() {
                TargetState::Started => {}
                TargetState::Stopped => break,
                TargetState::Paused => {
                    finish(&mut in_flight, &mut pending, &run).await?;
                    commit(&run, &mut *task, &mut pending).await?;
                    last_flush = Instant::now();
                    run.shared.set(State::Paused);
                    while run.target() == TargetState::Paused {
                        if run.target.changed().await.is_err() {
                            break;
                        }
                    }
                    if run.target() == TargetState::Started {
                        run.shared.set(State::Running);
                    }
                    continue;
                }
            }
            let polled = match in_flight.take() {
                None => task.poll().await,
                Some((send, offsets, n)) => {
                    let (sent, polled) = tokio::join!(send, task.poll());
                    sent?;
                    acknowledged(&run, &mut pending, offsets, n);
                    polled
                }
            };
            let polled = match polled {
                Ok(polled) => polled,
                // As Kafka's worker: a poll that may pass is simply tried again.
                Err(e) if e.is_retriable() => {
                    tracing::warn!(connector = run.connector, task = run.id, error = %e, "a poll failed; polling again");
                    tokio::time::sleep(policy.backoff(1)).await;
                    Vec::new()
                }
                Err(e) => return Err(e),
            };
            if !polled.is_empty() {
                run.shared.metrics.records_read.fetch_add(polled.len() as u64, Ordering::Relaxed);
                let (records, offsets, acks) = convert(&conversion, &policy, &run, polled).await?;
                ensure_topics(&run, &records, &mut known_topics).await?;
                let n = records.len();
                let producer = producer.clone();
                let send: Send = Box::pin(async move {
                    let sent = if records.is_empty() {
                        Ok(Vec::new())
                    } else {
                        producer.send(records).await.map_err(ConnectError::from)
                    };
                    // Whoever waits on these records (a webhook's caller) learns they are in the
                    // log, or that they are not; the batches before were acknowledged first.
                    match &sent {
                        Ok(_) => acks.iter().for_each(SourceAck::succeed),
                        Err(e) => acks.iter().for_each(|ack| ack.fail(e)),
                    }
                    sent
                });
                in_flight = Some((send, offsets, n));
            }
            if last_flush.elapsed() >= interval {
                finish(&mut in_flight, &mut pending, &run).await?;
                commit(&run, &mut *task, &mut pending).await?;
                last_flush = Instant::now();
            }
        }
        finish(&mut in_flight, &mut pending, &run).await?;
        commit(&run, &mut *task, &mut pending).await
    }
    .await;
    let stopped = task.stop().await;
    result.and(stopped)
}

/// Polled records as records for the log, the offsets they carry and their acks (kept also for
/// records a transform dropped or that failed and were tolerated, as Kafka keeps them: the source
/// has moved past them).
pub(super) async fn convert(
    conversion: &Conversion,
    policy: &ErrorPolicy,
    run: &TaskRun,
    polled: Vec<SourceRecord>,
) -> Result<(Vec<ProducerRecord>, Offsets, Vec<SourceAck>)> {
    let mut records = Vec::with_capacity(polled.len());
    let mut offsets = Vec::new();
    let mut acks = Vec::new();
    let keep = policy.keeps_failed_records();
    for r in polled {
        let original = keep.then(|| r.clone());
        let SourceRecord { source_partition, source_offset, record, ack } = r;
        acks.extend(ack);
        match conversion.for_log(record) {
            Ok(Some(record)) => records.push(record),
            Ok(None) => {
                run.shared.metrics.records_filtered.fetch_add(1, Ordering::Relaxed);
            }
            Err(failure) => policy.tolerate(run, failure, original.as_ref().map(Failed::Polled)).await?,
        }
        if let (Some(p), Some(o)) = (source_partition, source_offset) {
            offsets.push((p, o));
        }
    }
    Ok((records, offsets, acks))
}

/// Creates the topics of `records` that do not exist yet (one partition), as a broker's
/// auto-creation would; `known` remembers those seen.
pub(super) async fn ensure_topics(
    run: &TaskRun,
    records: &[ProducerRecord],
    known: &mut HashSet<String>,
) -> Result<()> {
    for r in records {
        if !known.contains(&r.topic) {
            ensure_topic(&*run.substrate, &r.topic, 1, &[]).await?;
            known.insert(r.topic.clone());
        }
    }
    Ok(())
}

/// Waits for the batch being written, then takes its offsets as pending.
async fn finish(in_flight: &mut Option<(Send, Offsets, usize)>, pending: &mut Pending, run: &TaskRun) -> Result<()> {
    if let Some((send, offsets, n)) = in_flight.take() {
        send.await?;
        acknowledged(run, pending, offsets, n);
    }
    Ok(())
}

fn acknowledged(run: &TaskRun, pending: &mut Pending, offsets: Offsets, n: usize) {
    run.shared.metrics.records_written.fetch_add(n as u64, Ordering::Relaxed);
    run.shared.metrics.uncommitted_records.fetch_add(n as u64, Ordering::Relaxed);
    keep_latest(pending, offsets);
}

/// Takes a batch's offsets as pending: per source partition, the latest. A run of records from
/// one partition (a file's lines) costs one map entry, not one per record.
pub(super) fn keep_latest(pending: &mut Pending, offsets: Offsets) {
    let mut offsets = offsets.into_iter().peekable();
    while let Some((p, o)) = offsets.next() {
        if offsets.peek().is_some_and(|(next, _)| *next == p) {
            continue;
        }
        let key = serde_json::to_string(&p).expect("JSON serializes");
        pending.insert(key, (p, o));
    }
}

/// Stores the pending offsets, then tells the task. A failure to store them is logged and they
/// stay pending for the next attempt, as Kafka's worker goes on after a failed offset commit.
async fn commit(run: &TaskRun, task: &mut dyn SourceTask, pending: &mut Pending) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let offsets: Vec<(SourceMap, Option<SourceMap>)> =
        pending.values().map(|(p, o)| (p.clone(), Some(o.clone()))).collect();
    let metrics = &run.shared.metrics;
    if let Err(e) = run.offsets.write(&run.connector, offsets).await {
        metrics.offset_commit_failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(connector = run.connector, task = run.id, error = %e, "storing source offsets failed; trying again later");
        return Ok(());
    }
    pending.clear();
    metrics.offset_commits.fetch_add(1, Ordering::Relaxed);
    metrics.uncommitted_records.store(0, Ordering::Relaxed);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    metrics.last_commit_ms.store(now, Ordering::Relaxed);
    task.commit().await
}
