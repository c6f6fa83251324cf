//! What the worker keeps of each running task: its state as the status API shows it, its
//! counters, and the converters and transforms between its records and the log.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use freshet_core::{ProducerRecord, Substrate};
use tokio::sync::watch;

use super::errors::{Failure, Stage};
use super::offsets::OffsetStore;
use crate::config::{Config, Props};
use crate::converter::{make_converter, make_header_converter, Converter, HeaderConverter};
use crate::data::Header;
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;
use crate::transforms::TransformChain;

/// A connector's or a task's state, as Kafka Connect's status API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not running on any worker yet.
    Unassigned,
    /// Running.
    Running,
    /// Paused by a user.
    Paused,
    /// Failed; the trace says why.
    Failed,
    /// Being restarted.
    Restarting,
    /// Stopped by a user: no tasks.
    Stopped,
}

impl State {
    /// `RUNNING`, `FAILED`, ...
    pub fn name(self) -> &'static str {
        match self {
            State::Unassigned => "UNASSIGNED",
            State::Running => "RUNNING",
            State::Paused => "PAUSED",
            State::Failed => "FAILED",
            State::Restarting => "RESTARTING",
            State::Stopped => "STOPPED",
        }
    }
}

/// What a user asked a connector to be (Kafka's target state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Running.
    Started,
    /// Tasks kept but idle.
    Paused,
    /// Connector and tasks shut down; offsets may be changed.
    Stopped,
}

impl TargetState {
    /// From a REST `initial_state` (`RUNNING`, `PAUSED`, `STOPPED`).
    pub fn from_initial(name: &str) -> Option<TargetState> {
        match name.to_ascii_uppercase().as_str() {
            "RUNNING" => Some(TargetState::Started),
            "PAUSED" => Some(TargetState::Paused),
            "STOPPED" => Some(TargetState::Stopped),
            _ => None,
        }
    }
}

/// A task's counters, read by the status API and the worker's metrics.
#[derive(Debug, Default)]
pub struct TaskMetrics {
    /// Records a source task polled, or a sink task read from the log.
    pub records_read: AtomicU64,
    /// Records a source task wrote to the log (acknowledged), or a sink task was given.
    pub records_written: AtomicU64,
    /// Records a transform dropped.
    pub records_filtered: AtomicU64,
    /// Offset commits that succeeded.
    pub offset_commits: AtomicU64,
    /// Offset commits that failed.
    pub offset_commit_failures: AtomicU64,
    /// When offsets were last committed (ms since the epoch, 0: never).
    pub last_commit_ms: AtomicI64,
    /// Records read but whose offsets are not committed yet (the commit lag).
    pub uncommitted_records: AtomicU64,
    /// Failures of records (conversion, transforms), tolerated or not.
    pub errors: AtomicU64,
    /// Records skipped after a failure (`errors.tolerance=all`).
    pub records_skipped: AtomicU64,
    /// Records written to the dead-letter topic.
    pub dead_letter_records: AtomicU64,
    /// Times the task was restarted after failing.
    pub restarts: AtomicU64,
}

impl TaskMetrics {
    /// The counters as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "records-read": self.records_read.load(Ordering::Relaxed),
            "records-written": self.records_written.load(Ordering::Relaxed),
            "records-filtered": self.records_filtered.load(Ordering::Relaxed),
            "offset-commit-success": self.offset_commits.load(Ordering::Relaxed),
            "offset-commit-failure": self.offset_commit_failures.load(Ordering::Relaxed),
            "last-offset-commit-ms": self.last_commit_ms.load(Ordering::Relaxed),
            "uncommitted-records": self.uncommitted_records.load(Ordering::Relaxed),
            "total-record-errors": self.errors.load(Ordering::Relaxed),
            "total-records-skipped": self.records_skipped.load(Ordering::Relaxed),
            "deadletterqueue-produce-requests": self.dead_letter_records.load(Ordering::Relaxed),
            "restarts": self.restarts.load(Ordering::Relaxed),
        })
    }
}

/// A task's state and counters, shared by the task and the worker.
#[derive(Debug)]
pub(crate) struct TaskShared {
    state: Mutex<(State, Option<String>)>,
    pub(crate) metrics: TaskMetrics,
}

impl TaskShared {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(TaskShared { state: Mutex::new((State::Unassigned, None)), metrics: TaskMetrics::default() })
    }

    pub(crate) fn set(&self, state: State) {
        *self.state.lock().expect("task state lock") = (state, None);
    }

    /// Restarting after a failure: the trace of the failure stays to be read.
    pub(crate) fn restarting(&self, error: &ConnectError) {
        *self.state.lock().expect("task state lock") = (State::Restarting, Some(format!("{error}\n{error:?}")));
    }

    pub(crate) fn fail(&self, error: &ConnectError) {
        *self.state.lock().expect("task state lock") = (State::Failed, Some(format!("{error}\n{error:?}")));
    }

    /// The state and, when failed, the trace.
    pub(crate) fn get(&self) -> (State, Option<String>) {
        self.state.lock().expect("task state lock").clone()
    }
}

/// What a task loop needs from the worker.
#[derive(Debug, Clone)]
pub(crate) struct TaskRun {
    pub(crate) connector: String,
    pub(crate) id: u32,
    pub(crate) task_config: Config,
    pub(crate) connector_config: Config,
    pub(crate) worker_config: Config,
    pub(crate) substrate: Arc<dyn Substrate>,
    pub(crate) offsets: Arc<OffsetStore>,
    pub(crate) target: watch::Receiver<TargetState>,
    pub(crate) shared: Arc<TaskShared>,
}

impl TaskRun {
    /// How often offsets are committed.
    pub(crate) fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.worker_config.number_or("offset.flush.interval.ms", 60_000u64).unwrap_or(60_000))
    }

    /// The target state now.
    pub(crate) fn target(&self) -> TargetState {
        *self.target.borrow()
    }
}

/// A connector's converters and transforms: between its records and the log's.
#[derive(Debug)]
pub(crate) struct Conversion {
    key: Box<dyn Converter>,
    value: Box<dyn Converter>,
    header: Box<dyn HeaderConverter>,
    pub(crate) chain: TransformChain,
}

impl Conversion {
    /// The connector's converters (the worker's where it names none) and transform chain.
    pub(crate) fn new(worker: &Config, connector: &Config) -> Result<Self> {
        let pick = |prefix: &str| -> Config {
            // A connector naming its own converter takes its settings from the connector config;
            // otherwise the worker's converter and settings are used.
            let source = if connector.get(prefix).is_some() { connector } else { worker };
            let mut props: Props = source.with_prefix(&format!("{prefix}."));
            props = props.into_iter().map(|(k, v)| (format!("{prefix}.{k}"), v)).collect();
            if let Some(name) = source.get(prefix) {
                props.insert(prefix.to_string(), name.to_string());
            }
            Config::from_props(props)
        };
        Ok(Conversion {
            key: make_converter(&pick("key.converter"), "key.converter", true)?,
            value: make_converter(&pick("value.converter"), "value.converter", false)?,
            header: make_header_converter(&pick("header.converter"), "header.converter")?,
            chain: TransformChain::from_config(connector)?,
        })
    }

    /// A source record, transformed, as a record for the log (`None`: a transform dropped it).
    pub(crate) fn for_log(&self, record: ConnectRecord) -> Result<Option<ProducerRecord>, Failure> {
        let Some(r) = self.chain.apply(record).map_err(Failure::at(Stage::Transformation))? else { return Ok(None) };
        let key = self.key.encode(&r.topic, r.key_schema.as_ref(), &r.key).map_err(Failure::at(Stage::KeyConverter))?;
        let value = self
            .value
            .encode(&r.topic, r.value_schema.as_ref(), &r.value)
            .map_err(Failure::at(Stage::ValueConverter))?;
        let mut headers = Vec::with_capacity(r.headers.len());
        for h in &r.headers {
            let bytes = self
                .header
                .encode(&r.topic, &h.key, h.schema.as_ref(), &h.value)
                .map_err(Failure::at(Stage::HeaderConverter))?;
            headers.push(freshet_core::batch::Header { key: h.key.clone(), value: bytes });
        }
        Ok(Some(ProducerRecord {
            topic: r.topic,
            partition: r.kafka_partition,
            key,
            value,
            headers,
            timestamp: r.timestamp,
        }))
    }

    /// A record read from the log as a Connect record, transformed (`None`: dropped).
    pub(crate) fn read_from_log(
        &self,
        topic: &str,
        partition: u32,
        record: &freshet_core::ConsumerRecord,
    ) -> Result<Option<ConnectRecord>, Failure> {
        let (key_schema, key) =
            self.key.decode(topic, record.key.as_deref()).map_err(Failure::at(Stage::KeyConverter))?;
        let (value_schema, value) =
            self.value.decode(topic, record.value.as_deref()).map_err(Failure::at(Stage::ValueConverter))?;
        let mut headers = Vec::with_capacity(record.headers.len());
        for h in &record.headers {
            let key = h.key.clone();
            let (schema, value) =
                self.header.decode(topic, &key, h.value.as_deref()).map_err(Failure::at(Stage::HeaderConverter))?;
            headers.push(Header { key, schema, value });
        }
        let r = ConnectRecord {
            topic: topic.to_string(),
            kafka_partition: Some(partition),
            key_schema,
            key,
            value_schema,
            value,
            timestamp: Some(record.timestamp),
            headers,
        };
        self.chain.apply(r).map_err(Failure::at(Stage::Transformation))
    }
}
