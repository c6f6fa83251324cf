//! The one error type of `freshet-state`.

use std::path::PathBuf;

/// A result whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a state store.
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
    /// RocksDB reported an error.
    #[error("RocksDB error in store \"{store}\" ({path}): {source}")]
    RocksDb {
        /// The store.
        store: String,
        /// The store's directory.
        path: PathBuf,
        /// RocksDB's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A checkpoint file fails its checks.
    #[error("corrupt checkpoint file {path}: {detail}; delete it to restore the task's stores from their changelogs")]
    CorruptCheckpoint {
        /// The file.
        path: PathBuf,
        /// What check failed.
        detail: String,
    },
    /// Another process (or another task handle in this one) holds a task's state directory.
    #[error("state directory {path} is locked by another process or another open task; stop it or use another state directory")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// A store's changelog topic does not exist.
    #[error("changelog topic \"{topic}\" of store \"{store}\" does not exist; create it or let the store create it")]
    ChangelogMissing {
        /// The store.
        store: String,
        /// The topic.
        topic: String,
    },
    /// A store's changelog topic has a partition count that does not match the task layout.
    #[error(
        "changelog topic \"{topic}\" of store \"{store}\" has {actual} partitions, but the store needs {expected} \
         (one per input partition); recreate the topic or reset the application"
    )]
    ChangelogPartitions {
        /// The store.
        store: String,
        /// The topic.
        topic: String,
        /// Partitions the store needs.
        expected: u32,
        /// Partitions the topic has.
        actual: u32,
    },
    /// Bytes read from a store or changelog could not be decoded.
    #[error("cannot decode {what}: {detail}")]
    Decode {
        /// What was being decoded (a key, a value, a changelog record).
        what: &'static str,
        /// Why it failed.
        detail: String,
    },
    /// A configuration value is not acceptable.
    #[error("invalid state store config {key}={value}: {reason}")]
    InvalidConfig {
        /// The setting.
        key: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The log or substrate failed (writing or reading a changelog).
    #[error("changelog of store \"{store}\": {source}")]
    Changelog {
        /// The store.
        store: String,
        /// The log's error.
        #[source]
        source: freshet_core::Error,
    },
    /// The substrate could not make the clients changelogs need.
    #[error("the log the changelogs are in: {0}")]
    Substrate(#[source] freshet_core::Error),
    /// The store was closed.
    #[error("store \"{0}\" is closed")]
    Closed(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
