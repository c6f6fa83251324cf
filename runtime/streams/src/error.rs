//! Errors of the runtime and the test driver.

use std::path::PathBuf;
use std::time::Duration;

use freshet_dsl::TaskId;

use crate::app::StreamsState;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting or an argument is not acceptable; the message says which and why.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An operation the application's state does not allow (starting it twice, say).
    #[error("{operation} on an application in state {state:?}")]
    InvalidState {
        /// What was asked.
        operation: &'static str,
        /// The state the application was in.
        state: StreamsState,
    },
    /// The application stopped on an error: the first one a thread met.
    #[error("the application failed: {0}")]
    Failed(String),
    /// The application did not reach the state waited for in time.
    #[error("not running after {waited:?} (state {state:?})")]
    Timeout {
        /// How long was waited.
        waited: Duration,
        /// The state it was in then.
        state: StreamsState,
    },
    /// A source topic of the topology does not exist.
    #[error("source topic {0} does not exist; create it first")]
    MissingSourceTopic(String),
    /// An internal topic left by an earlier run has another partition count than the topology
    /// needs now.
    #[error(
        "internal topic {topic} has {found} partitions where the topology needs {needed}; delete it (or reset \
         the application) to start over"
    )]
    InternalTopicPartitions {
        /// The topic.
        topic: String,
        /// Its partitions.
        found: u32,
        /// The partitions the topology needs.
        needed: u32,
    },
    /// A task's state directory stayed locked by someone else.
    #[error(
        "task {task}: its directory {} stayed locked for {waited:?} (is another process using this state \
         directory?)",
        path.display()
    )]
    TaskLocked {
        /// The task.
        task: TaskId,
        /// Its directory.
        path: PathBuf,
        /// How long it was waited for.
        waited: Duration,
    },
    /// A record failed in a task and the error policy says to fail.
    #[error("task {task} failed on {topic}-{partition} offset {offset}: {reason}")]
    Processing {
        /// The task.
        task: TaskId,
        /// The record's topic.
        topic: String,
        /// Its partition.
        partition: u32,
        /// Its offset.
        offset: i64,
        /// What went wrong.
        reason: String,
    },
    /// Output the log refused, and the production error policy says to fail.
    #[error("cannot write {what}: {source}")]
    Output {
        /// What could not be written.
        what: String,
        /// The log's error.
        #[source]
        source: freshet_core::Error,
    },
    /// The substrate could not make a client the application needs.
    #[error("{substrate}: {source}")]
    Substrate {
        /// Which substrate ("the cluster at host:port").
        substrate: String,
        /// Its error.
        #[source]
        source: freshet_core::Error,
    },
    /// A thread of the application could not start.
    #[error("cannot start {thread}: {source}")]
    ThreadStart {
        /// The thread's job.
        thread: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A thread of the application panicked (a bug: the panic's message is in the log).
    #[error("{0} panicked")]
    ThreadPanicked(String),
    /// A topology failed while processing.
    #[error(transparent)]
    Topology(#[from] freshet_dsl::Error),
    /// A state store failed.
    #[error(transparent)]
    State(#[from] freshet_state::Error),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] freshet_core::Error),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
