//! Settings of a streams application: `StreamsConfig` and the policies it names.

use super::*;

/// What happens to a record that fails.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// Stop the application with the error (the default).
    #[default]
    Fail,
    /// Log it, count it as skipped, and go on.
    LogAndContinue,
    /// Write the record as it was read, with `freshet.error`, `freshet.source.topic`,
    /// `freshet.source.partition` and `freshet.source.offset` headers, to this topic, and go on.
    DeadLetter(String),
}

/// What a crash may do to the records an application produces (Kafka Streams'
/// `processing.guarantee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Every record is processed at least once: after a crash, records processed since the last
    /// commit are processed again (their output may appear twice; no committed update is lost).
    #[default]
    AtLeastOnce,
    /// Every record's effects (output, store updates, input offsets) are committed atomically, as
    /// Kafka Streams' `exactly_once_v2`: each stream thread writes its output and its stores'
    /// changelogs through one transactional producer and commits its input offsets in the same
    /// transaction, one transaction per commit interval. Consumers of the output (and restores)
    /// read at `read_committed`: after a crash, nothing of an uncommitted transaction is seen,
    /// and the records it had processed are processed again from the committed offsets.
    ExactlyOnce,
}

/// Where a record's timestamp comes from.
#[derive(Clone, Default)]
pub enum TimestampExtractor {
    /// The record's own timestamp (the default).
    #[default]
    RecordTimestamp,
    /// Computed from the record, e.g. from a field of its value.
    Custom(Arc<dyn Fn(&ConsumerRecord) -> i64 + Send + Sync>),
}

impl TimestampExtractor {
    /// The timestamp of `r`.
    pub fn extract(&self, r: &ConsumerRecord) -> i64 {
        match self {
            TimestampExtractor::RecordTimestamp => r.timestamp,
            TimestampExtractor::Custom(f) => f(r),
        }
    }
}

impl std::fmt::Debug for TimestampExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimestampExtractor::RecordTimestamp => f.write_str("RecordTimestamp"),
            TimestampExtractor::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// Settings of a streams application.
#[derive(Clone)]
pub struct StreamsConfig {
    /// Names the application: its consumer group, the prefix of its internal topics, its
    /// directory under `state_dir`.
    pub application_id: String,
    /// Stream threads (tasks are spread over them).
    pub num_stream_threads: usize,
    /// At-least-once (the default) or exactly-once.
    pub processing_guarantee: ProcessingGuarantee,
    /// How often progress is committed (Kafka Streams' default: 30 s).
    pub commit_interval: Duration,
    /// Where tasks keep their stores.
    pub state_dir: PathBuf,
    /// Where stores live: RocksDB (sharing one memory budget) or memory.
    pub backend: Backend,
    /// The record-cache budget of each cached store, in bytes.
    pub cache_bytes_per_store: usize,
    /// How long a poll waits for records when there is nothing to process.
    pub poll_wait: Duration,
    /// What happens to a record that does not decode, when its source says to fail (the
    /// source's own `OnDecodeError::Skip` or `DeadLetter` take precedence).
    pub on_deserialization_error: ErrorPolicy,
    /// What happens to a record whose processing fails.
    pub on_processing_error: ErrorPolicy,
    /// What happens to an output record the log refuses.
    pub on_production_error: ErrorPolicy,
    /// Where record timestamps come from.
    pub timestamp_extractor: TimestampExtractor,
    /// Told about every store restore.
    pub restore_listener: Option<Arc<dyn RestoreListener>>,
    /// Warm copies of each task's stores kept by other instances, so that a task that moves
    /// restores only the changelog's tail (Kafka Streams' `num.standby.replicas`; default 0).
    /// They need a persistent backend (RocksDB) and their own state directory per instance.
    pub num_standby_replicas: usize,
    /// Wall-clock time: task contexts and wall-clock punctuation read it (Kafka Streams' `Time`).
    /// The system clock by default; a test or simulation hands in one it controls.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StreamsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsConfig")
            .field("application_id", &self.application_id)
            .field("num_stream_threads", &self.num_stream_threads)
            .field("processing_guarantee", &self.processing_guarantee)
            .field("commit_interval", &self.commit_interval)
            .field("state_dir", &self.state_dir)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl StreamsConfig {
    /// Kafka Streams' defaults: one thread, a 30 s commit interval, state under the system's temp
    /// directory, RocksDB (when built with it) with a 512 MiB budget, 10 MiB of cache per store,
    /// failing on errors.
    pub fn new(application_id: &str) -> Result<Self> {
        Ok(StreamsConfig {
            application_id: application_id.to_string(),
            num_stream_threads: 1,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            commit_interval: Duration::from_secs(30),
            state_dir: std::env::temp_dir().join("freshet-streams"),
            backend: Backend::best_available(512 << 20)?,
            cache_bytes_per_store: 10 << 20,
            poll_wait: Duration::from_millis(100),
            on_deserialization_error: ErrorPolicy::Fail,
            on_processing_error: ErrorPolicy::Fail,
            on_production_error: ErrorPolicy::Fail,
            timestamp_extractor: TimestampExtractor::RecordTimestamp,
            restore_listener: None,
            num_standby_replicas: 0,
            clock: Arc::new(SystemClock),
        })
    }

    pub(super) fn check(&self) -> Result<()> {
        let id = &self.application_id;
        let valid = !id.is_empty()
            && id.len() <= 200
            && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(Error::Config(format!(
                "application.id {id:?}: 1 to 200 of [a-zA-Z0-9._-] (it names topics and directories)"
            )));
        }
        if self.num_stream_threads == 0 {
            return Err(Error::Config("num.stream.threads must be at least 1".into()));
        }
        if self.commit_interval.is_zero() {
            return Err(Error::Config("commit.interval must be over 0".into()));
        }
        Ok(())
    }
}
