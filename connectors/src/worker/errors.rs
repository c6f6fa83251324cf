//! What a task does when a record fails, as Kafka Connect's error handling has it:
//! `errors.tolerance` (`none`: the task fails; `all`: the record is skipped), `errors.log.enable`
//! and `errors.log.include.messages`, `errors.retry.timeout` with backoff up to
//! `errors.retry.delay.max.ms` for failures that may pass, and a dead-letter topic
//! (`errors.deadletterqueue.topic.name`) with Kafka's `__connect.errors.*` context headers: for
//! sinks, the record as it was read; for sources too (Kafka has none), the record as polled.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use freshet_core::batch::Header;
use freshet_core::{ConsumerRecord, Producer, ProducerRecord};
use tokio::time::Instant;

use super::offsets::ensure_topic;
use super::task::TaskRun;
use crate::converter::JsonConverter;
use crate::error::{ConnectError, Result};
use crate::record::{ConnectRecord, SinkRecord, SourceRecord};

/// Where in a task's work a failure happened (Kafka's `Stage`, as the `stage` header names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The key converter.
    KeyConverter,
    /// The value converter.
    ValueConverter,
    /// The header converter.
    HeaderConverter,
    /// A transform or predicate.
    Transformation,
    /// A sink task's write, reported by the task (Kafka's `ErrantRecordReporter`).
    TaskPut,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
            Stage::HeaderConverter => "HEADER_CONVERTER",
            Stage::Transformation => "TRANSFORMATION",
            Stage::TaskPut => "TASK_PUT",
        }
    }
}

/// A failure at a stage.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) stage: Stage,
    pub(crate) error: ConnectError,
}

impl Failure {
    pub(crate) fn at(stage: Stage) -> impl FnOnce(ConnectError) -> Failure {
        move |error| Failure { stage, error }
    }
}

/// The record that failed.
#[derive(Debug)]
pub(crate) enum Failed<'a> {
    /// A record a sink read: topic, partition and the record as stored.
    Consumed { topic: &'a str, partition: u32, record: &'a ConsumerRecord },
    /// A record a source polled.
    Polled(&'a SourceRecord),
    /// A record a sink task was given and reported, when the record as stored was not kept.
    Given(&'a SinkRecord),
}

/// A task's error handling, from its connector's `errors.*` keys.
#[derive(Debug)]
pub(crate) struct ErrorPolicy {
    connector: String,
    task: u32,
    tolerate_all: bool,
    log: bool,
    log_messages: bool,
    /// `None`: retry forever; zero: no retries.
    retry_timeout: Option<Duration>,
    max_delay: Duration,
    dead_letter: Option<DeadLetter>,
}

struct DeadLetter {
    topic: String,
    context_headers: bool,
    producer: Arc<dyn Producer>,
    ready: tokio::sync::OnceCell<()>,
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl ErrorPolicy {
    pub(crate) fn new(run: &TaskRun) -> Result<Self> {
        let c = &run.connector_config;
        let retry_ms: i64 = c.number_or("errors.retry.timeout", 0)?;
        let topic = c.get("errors.deadletterqueue.topic.name").map(str::to_string);
        let dead_letter = match topic {
            Some(topic) => Some(DeadLetter {
                topic,
                context_headers: c.boolean("errors.deadletterqueue.context.headers.enable", false)?,
                producer: run.substrate.producer()?,
                ready: tokio::sync::OnceCell::new(),
            }),
            None => None,
        };
        Ok(ErrorPolicy {
            connector: run.connector.clone(),
            task: run.id,
            tolerate_all: c.get("errors.tolerance").is_some_and(|t| t.eq_ignore_ascii_case("all")),
            log: c.boolean("errors.log.enable", false)?,
            log_messages: c.boolean("errors.log.include.messages", false)?,
            retry_timeout: if retry_ms < 0 { None } else { Some(Duration::from_millis(retry_ms as u64)) },
            max_delay: Duration::from_millis(c.number_or("errors.retry.delay.max.ms", 60_000u64)?),
            dead_letter,
        })
    }

    /// Whether failed records are skipped (so a record must be kept to report it).
    pub(crate) fn keeps_failed_records(&self) -> bool {
        self.tolerate_all && (self.dead_letter.is_some() || self.log_messages)
    }

    /// How long to wait before attempt `attempt` (1, 2, ...): 300 ms doubling, at most
    /// `errors.retry.delay.max.ms`, as Kafka's retry operator waits.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let delay = Duration::from_millis(300).saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
        delay.min(self.max_delay)
    }

    /// Runs `op` until it succeeds, fails with an error that retrying will not cure, or
    /// `errors.retry.timeout` has passed.
    pub(crate) async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = self.retry_timeout.map(|t| Instant::now() + t);
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retriable() => {
                    attempt += 1;
                    let wait = self.backoff(attempt);
                    if deadline.is_some_and(|d| Instant::now() + wait > d) {
                        return Err(e);
                    }
                    tracing::warn!(connector = self.connector, task = self.task, error = %e, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A record failed: with `errors.tolerance=all` it is logged, sent to the dead-letter topic
    /// and skipped (`Ok`); otherwise the task fails with an error naming the stage and the record.
    pub(crate) async fn tolerate(&self, run: &TaskRun, failure: Failure, failed: Option<Failed<'_>>) -> Result<()> {
        let metrics = &run.shared.metrics;
        metrics.errors.fetch_add(1, Ordering::Relaxed);
        let where_ = failed.as_ref().map(describe).unwrap_or_default();
        if !self.tolerate_all {
            return Err(ConnectError::Task(format!(
                "Tolerance exceeded in error handler: {} failed{where_}: {}",
                failure.stage.name(),
                failure.error
            )));
        }
        if self.log {
            let record = match (&failed, self.log_messages) {
                (Some(f), true) => format!(" {}", message(f)),
                _ => String::new(),
            };
            tracing::error!(
                connector = self.connector,
                task = self.task,
                stage = failure.stage.name(),
                "a record failed{where_}{record}: {}",
                failure.error
            );
        }
        metrics.records_skipped.fetch_add(1, Ordering::Relaxed);
        if let (Some(dlq), Some(failed)) = (&self.dead_letter, failed) {
            let record = self.dead_letter_record(dlq, &failure, &failed);
            dlq.ready.get_or_try_init(|| async { ensure_topic(&*run.substrate, &dlq.topic, 1, &[]).await }).await?;
            let send = || async { dlq.producer.send(vec![record.clone()]).await.map_err(ConnectError::from) };
            self.retry(send).await.map_err(|e| {
                ConnectError::Task(format!("writing a failed record to the dead-letter topic {}: {e}", dlq.topic))
            })?;
            metrics.dead_letter_records.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn dead_letter_record(&self, dlq: &DeadLetter, failure: &Failure, failed: &Failed<'_>) -> ProducerRecord {
        let mut headers = Vec::new();
        let (key, value, timestamp) = match failed {
            Failed::Consumed { record, .. } => {
                headers.extend(record.headers.iter().cloned());
                (record.key.clone(), record.value.clone(), Some(record.timestamp))
            }
            Failed::Polled(source) => as_json(&source.record),
            Failed::Given(given) => as_json(&given.record),
        };
        if dlq.context_headers {
            let mut add = |k: &str, v: String| {
                headers.push(Header { key: format!("__connect.errors.{k}"), value: Some(v.into()) })
            };
            match failed {
                Failed::Consumed { topic, partition, record } => {
                    add("topic", topic.to_string());
                    add("partition", partition.to_string());
                    add("offset", record.offset.to_string());
                }
                Failed::Given(given) => {
                    add("topic", given.original_topic.clone());
                    add("partition", given.original_partition.to_string());
                    add("offset", given.kafka_offset.to_string());
                }
                Failed::Polled(source) => {
                    add("topic", source.record.topic.clone());
                    if let Some(p) = &source.source_partition {
                        add("source.partition", serde_json::Value::Object(p.clone()).to_string());
                    }
                    if let Some(o) = &source.source_offset {
                        add("source.offset", serde_json::Value::Object(o.clone()).to_string());
                    }
                }
            }
            add("connector.name", self.connector.clone());
            add("task.id", self.task.to_string());
            add("stage", failure.stage.name().to_string());
            add("class.name", stage_class(failure.stage).to_string());
            add("exception.class.name", error_class(&failure.error).to_string());
            add("exception.message", failure.error.to_string());
            add("exception.stacktrace", format!("{:?}", failure.error));
        }
        ProducerRecord { topic: dlq.topic.clone(), partition: None, key, value, headers, timestamp }
    }
}

/// A record as Connect's JSON with its schema writes it, as far as it converts: what a
/// dead-letter topic gets of a record whose stored form is not at hand.
fn as_json(r: &ConnectRecord) -> (Option<Bytes>, Option<Bytes>, Option<i64>) {
    let json = JsonConverter::with_schemas(true);
    let key = crate::converter::Converter::encode(&json, &r.topic, r.key_schema.as_ref(), &r.key)
        .unwrap_or_else(|_| Some(Bytes::from(r.key.to_string())));
    let value = crate::converter::Converter::encode(&json, &r.topic, r.value_schema.as_ref(), &r.value)
        .unwrap_or_else(|_| Some(Bytes::from(r.value.to_string())));
    (key, value, r.timestamp)
}

/// Where a failed record came from, for messages.
fn describe(failed: &Failed<'_>) -> String {
    match failed {
        Failed::Consumed { topic, partition, record } => format!(" at {topic}-{partition} offset {}", record.offset),
        Failed::Given(r) => format!(" at {}-{} offset {}", r.original_topic, r.original_partition, r.kafka_offset),
        Failed::Polled(r) => match &r.source_offset {
            Some(o) => {
                format!(" (a record for {} at source offset {})", r.record.topic, serde_json::Value::Object(o.clone()))
            }
            None => format!(" (a record for {})", r.record.topic),
        },
    }
}

/// The failed record itself, for `errors.log.include.messages`.
fn message(failed: &Failed<'_>) -> String {
    match failed {
        Failed::Consumed { record, .. } => format!(
            "key={:?} value={:?}",
            record.key.as_deref().map(String::from_utf8_lossy),
            record.value.as_deref().map(String::from_utf8_lossy)
        ),
        Failed::Polled(r) => format!("key={} value={}", r.record.key, r.record.value),
        Failed::Given(r) => format!("key={} value={}", r.record.key, r.record.value),
    }
}

/// What failed, as Kafka's `class.name` header names the converter or transform class.
fn stage_class(stage: Stage) -> &'static str {
    match stage {
        Stage::KeyConverter | Stage::ValueConverter => "freshet.connect.Converter",
        Stage::HeaderConverter => "freshet.connect.HeaderConverter",
        Stage::Transformation => "freshet.connect.Transformation",
        Stage::TaskPut => "freshet.connect.SinkTask",
    }
}

/// The kind of error, as Kafka's `exception.class.name` header names the exception class.
fn error_class(error: &ConnectError) -> &'static str {
    match error {
        ConnectError::Config { .. } => "org.apache.kafka.common.config.ConfigException",
        ConnectError::Data(_) => "org.apache.kafka.connect.errors.DataException",
        ConnectError::Retriable(_) => "org.apache.kafka.connect.errors.RetriableException",
        ConnectError::Task(_) | ConnectError::Io { .. } => "org.apache.kafka.connect.errors.ConnectException",
        ConnectError::Log(_) => "org.apache.kafka.common.KafkaException",
    }
}
