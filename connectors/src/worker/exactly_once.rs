//! Exactly-once sources (Kafka's KIP-618), with `exactly.once.source.support=enabled` in the
//! worker: a task writes its records and their source offsets (to the offsets topic) in one
//! transaction, so after a crash the log holds either both or neither, and the task resumes from
//! offsets that match exactly what the log kept. Its transactional id,
//! `<group.id>-<connector>-<task>`, outlives the process: a task started with the same id fences
//! the one before (a zombie), whose next transaction fails and is aborted.
//!
//! `transaction.boundary=poll` (the default) commits after every poll that returned records;
//! `interval` every `transaction.boundary.interval.ms` (default: `offset.flush.interval.ms`).
//! `connector` (transactions the connector defines) is refused.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use freshet_core::TransactionalProducer;
use tokio::time::Instant;

use super::errors::ErrorPolicy;
use super::source::{convert, ensure_topics, keep_latest, Pending};
use super::task::{Conversion, State, TargetState, TaskRun};
use crate::connector::SourceTask;
use crate::error::{ConnectError, Result};
use crate::record::{SourceAck, SourceMap};

/// How long a transaction may stay open before the log aborts it.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// A task's transaction settings.
#[derive(Debug)]
pub(crate) struct Transactions {
    transactional_id: String,
    /// `None`: a transaction per poll.
    interval: Option<Duration>,
}

impl Transactions {
    /// The settings when the worker runs exactly-once sources, `None` otherwise; an error for a
    /// connector that requires it from a worker that does not, or for a boundary not supported.
    pub(crate) fn of(run: &TaskRun) -> Result<Option<Transactions>> {
        let worker = &run.worker_config;
        let enabled = worker.get("exactly.once.source.support").is_some_and(|v| v.eq_ignore_ascii_case("enabled"));
        let connector = &run.connector_config;
        if !enabled {
            if connector.get("exactly.once.support").is_some_and(|v| v.eq_ignore_ascii_case("required")) {
                return Err(ConnectError::config(
                    "exactly.once.support",
                    "required",
                    "the worker does not run exactly-once sources (exactly.once.source.support=enabled)",
                ));
            }
            return Ok(None);
        }
        let interval = match connector.get("transaction.boundary").unwrap_or("poll").to_ascii_lowercase().as_str() {
            "poll" => None,
            "interval" => {
                let default = run.flush_interval().as_millis() as u64;
                Some(Duration::from_millis(connector.number_or("transaction.boundary.interval.ms", default)?))
            }
            other => {
                return Err(ConnectError::config(
                    "transaction.boundary",
                    other,
                    "connector-defined transactions are not supported: poll or interval",
                ))
            }
        };
        let group = worker.get("group.id").unwrap_or("connect-cluster");
        Ok(Some(Transactions { transactional_id: format!("{group}-{}-{}", run.connector, run.id), interval }))
    }

    /// The task's transactional producer; making it fences the task that had the id before.
    pub(crate) async fn producer(&self, run: &TaskRun) -> Result<Arc<dyn TransactionalProducer>> {
        Ok(run.substrate.transactional_producer(&self.transactional_id, TRANSACTION_TIMEOUT).await?)
    }
}

/// The exactly-once loop: poll, begin a transaction if none is open, write the records, and at
/// the boundary write the offsets in the same transaction and commit it.
pub(super) async fn run(
    mut run: TaskRun,
    mut task: Box<dyn SourceTask>,
    conversion: Conversion,
    policy: ErrorPolicy,
    producer: Arc<dyn TransactionalProducer>,
    transactions: Transactions,
) -> Result<()> {
    let mut open = Open::default();
    let mut known_topics = HashSet::new();
    let result: Result<()> = async {
        loop {
            match run.target() {
                TargetState::Started => {}
                TargetState::Stopped => break,
                TargetState::Paused => {
                    open.commit(&run, &*producer, &mut *task).await?;
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
            let polled = match task.poll().await {
                Ok(polled) => polled,
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
                if !open.begun {
                    producer.begin()?;
                    open.begun = true;
                    open.since = Instant::now();
                }
                let n = records.len() as u64;
                if !records.is_empty() {
                    producer.send(records).await.map_err(|e| fenced(e, &transactions))?;
                }
                open.records += n;
                open.acks.extend(acks);
                keep_latest(&mut open.offsets, offsets);
            }
            let due = match transactions.interval {
                None => true,
                Some(interval) => open.since.elapsed() >= interval,
            };
            if open.begun && due {
                open.commit(&run, &*producer, &mut *task).await.map_err(|e| fenced_connect(e, &transactions))?;
            }
        }
        open.commit(&run, &*producer, &mut *task).await
    }
    .await;
    if open.begun {
        // Stopped or failed with a transaction open: nothing of it is kept.
        let _ = producer.abort().await;
    }
    let stopped = task.stop().await;
    result.and(stopped)
}

/// The transaction open now: whether one is, and what it holds.
#[derive(Debug)]
struct Open {
    begun: bool,
    since: Instant,
    records: u64,
    offsets: Pending,
    acks: Vec<SourceAck>,
}

impl Default for Open {
    fn default() -> Self {
        Open { begun: false, since: Instant::now(), records: 0, offsets: Pending::new(), acks: Vec::new() }
    }
}

impl Open {
    /// Writes the offsets into the transaction and commits it; then the records' waiters are
    /// told and the task too.
    async fn commit(
        &mut self,
        run: &TaskRun,
        producer: &dyn TransactionalProducer,
        task: &mut dyn SourceTask,
    ) -> Result<()> {
        if !self.begun {
            return Ok(());
        }
        let offsets: Vec<(SourceMap, Option<SourceMap>)> =
            std::mem::take(&mut self.offsets).into_values().map(|(p, o)| (p, Some(o))).collect();
        let records = run.offsets.records(&run.connector, &offsets)?;
        if !records.is_empty() {
            producer.send(records).await?;
        }
        let committed = producer.commit().await;
        let acks = std::mem::take(&mut self.acks);
        let n = std::mem::take(&mut self.records);
        self.begun = false;
        let metrics = &run.shared.metrics;
        if let Err(e) = committed {
            metrics.offset_commit_failures.fetch_add(1, Ordering::Relaxed);
            let e = ConnectError::from(e);
            acks.iter().for_each(|a| a.fail(&e));
            return Err(e);
        }
        run.offsets.remember(&run.connector, offsets);
        acks.iter().for_each(SourceAck::succeed);
        metrics.records_written.fetch_add(n, Ordering::Relaxed);
        metrics.offset_commits.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        metrics.last_commit_ms.store(now, Ordering::Relaxed);
        task.commit().await
    }
}

/// A fenced producer's error, saying what fenced it.
fn fenced(e: freshet_core::Error, transactions: &Transactions) -> ConnectError {
    fenced_connect(ConnectError::from(e), transactions)
}

fn fenced_connect(e: ConnectError, transactions: &Transactions) -> ConnectError {
    match e {
        ConnectError::Log(freshet_core::Error::ProducerFenced(reason)) => ConnectError::Task(format!(
            "this task was fenced: another task started with the transactional id {} ({reason})",
            transactions.transactional_id
        )),
        other => other,
    }
}
