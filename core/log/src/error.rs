//! The one error type of `freshet-core`.

use std::path::PathBuf;

/// A result whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the log and the substrate.
///
/// Variants that describe bad input from outside (a batch, a config, a name) say what was wrong and
/// carry the offending value, so the message can be shown to a user as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A record batch handed to the log is not valid; nothing was written.
    #[error("invalid record batch: {0}")]
    InvalidBatch(String),
    /// Records of a batch the topic does not accept, such as records without a key on a compacted
    /// topic; nothing of the batch was written (Kafka's INVALID_RECORD, with its record errors).
    #[error("{message}")]
    InvalidRecords {
        /// What was wrong, for the whole batch.
        message: String,
        /// Each refused record: its index in the batch and why.
        records: Vec<(i32, String)>,
    },
    /// A batch is larger than the topic allows; nothing was written.
    #[error("record batch of {size} bytes exceeds max.message.bytes = {max} of topic \"{topic}\"")]
    BatchTooLarge {
        /// The topic appended to.
        topic: String,
        /// The batch size in bytes.
        size: usize,
        /// The topic's `max.message.bytes`.
        max: usize,
    },
    /// Data read back from disk fails its checks.
    #[error("corrupt data in {path} at byte {position}: {detail}")]
    Corrupt {
        /// The segment or index file.
        path: PathBuf,
        /// Byte position inside the file.
        position: u64,
        /// What check failed.
        detail: String,
    },
    /// The in-sync replicas of a partition did not all reach an offset in time: the write is
    /// in the leader's log, but not yet safe from the leader's loss (Kafka's REQUEST_TIMED_OUT).
    #[error("the in-sync replicas of {topic}-{partition} did not all reach offset {offset} within {waited_ms} ms")]
    NotReplicated {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset waited for.
        offset: i64,
        /// How long it waited.
        waited_ms: u64,
    },
    /// The partition's copy here is a follower's: only its leader appends (Kafka's
    /// NOT_LEADER_OR_FOLLOWER).
    #[error("this copy of {topic}-{partition} is a follower's: append to its leader")]
    NotLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// The topic does not exist.
    #[error("unknown topic \"{0}\"")]
    UnknownTopic(String),
    /// The topic exists, the partition does not.
    #[error("topic \"{topic}\" has {n_partitions} partitions, but partition {partition} was requested")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// How many partitions the topic has.
        n_partitions: u32,
        /// The partition asked for.
        partition: u32,
    },
    /// An idempotent producer's batch does not follow its latest stored sequence; nothing was
    /// written (Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// An idempotent producer's batch repeats one older than those remembered, so its original
    /// offsets cannot be told; nothing was written (Kafka's DUPLICATE_SEQUENCE_NUMBER).
    #[error("duplicate sequence: {0}")]
    DuplicateSequence(String),
    /// An idempotent producer's batch carries an epoch older than one stored (Kafka's
    /// INVALID_PRODUCER_EPOCH); nothing was written.
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// A topic of that name exists already.
    #[error("topic \"{0}\" already exists")]
    TopicExists(String),
    /// A topic name breaks the naming rules.
    #[error("invalid topic name \"{name}\": {reason}")]
    InvalidTopicName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A configuration key or value is not acceptable.
    #[error("invalid config {key}={value:?}: {reason}")]
    InvalidConfig {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The requested offset is outside the log's range.
    #[error(
        "offset {offset} is out of range for {topic}-{partition}: the log holds [{log_start_offset}, {log_end_offset})"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset asked for.
        offset: i64,
        /// The first offset the log holds.
        log_start_offset: i64,
        /// The offset the next append gets.
        log_end_offset: i64,
    },
    /// A record could not be decoded.
    #[error("cannot decode record: {0}")]
    Decode(String),
    /// A commit was refused because the group rebalanced since the member's last join: the
    /// partitions may now be another member's. Poll again (to rejoin) and commit what is read next.
    #[error("commit refused: the consumer group rebalanced ({0})")]
    Rebalanced(String),
    /// A producer was fenced: another producer took over its transactional id (or its transaction
    /// ran past its timeout). Nothing it sends is accepted any more; its transaction is aborted.
    #[error("producer fenced: {0}")]
    ProducerFenced(String),
    /// A transaction operation that does not fit the transaction's state (its message says which).
    #[error("transaction refused: {0}")]
    Transaction(String),
    /// The storage under a partition failed (an fsync that failed): the partition takes no more
    /// appends until the log is reopened, and what the failed sync covered may or may not
    /// survive a crash. Kafka's KAFKA_STORAGE_ERROR.
    #[error("storage failed: {0}")]
    StorageFailed(String),
    /// The log did not answer in time: a leader or coordinator moving, a broker unreachable.
    /// Asking again may succeed; inside a transaction, the transaction must abort.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A Kafka-protocol cluster (the remote substrate) refused or failed an operation.
    #[error("{0}")]
    Remote(String),
    /// The log (or the substrate) has been shut down.
    #[error("the log is shut down")]
    Closed,
    /// A broken internal invariant that is not the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// Adds the path to an `std::io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::io(path, source))
    }
}
