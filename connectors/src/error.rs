//! The one error of the connector framework.

/// A result whose error is [`ConnectError`].
pub type Result<T, E = ConnectError> = std::result::Result<T, E>;

/// What went wrong in a connector, a converter, a transform or the worker.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A config value is missing or wrong: names the key.
    #[error("invalid value {value:?} for configuration {key}: {reason}")]
    Config {
        /// The key.
        key: String,
        /// The value given (empty when missing).
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// Data that cannot be converted or transformed (Connect's `DataException`): a poison record.
    #[error("{0}")]
    Data(String),
    /// A failure that may pass if the operation is tried again (Connect's `RetriableException`).
    #[error("{0} (retriable)")]
    Retriable(String),
    /// A connector or task failed.
    #[error("{0}")]
    Task(String),
    /// The log refused or failed an operation.
    #[error(transparent)]
    Log(#[from] freshet_core::Error),
    /// A file or socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl ConnectError {
    /// A config error.
    pub fn config(key: impl Into<String>, value: impl Into<String>, reason: impl Into<String>) -> Self {
        ConnectError::Config { key: key.into(), value: value.into(), reason: reason.into() }
    }

    /// A data error.
    pub fn data(message: impl Into<String>) -> Self {
        ConnectError::Data(message.into())
    }

    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ConnectError::Io { what: what.into(), source }
    }

    /// Whether trying again may succeed: retriable errors and the log's own transient ones.
    pub fn is_retriable(&self) -> bool {
        match self {
            ConnectError::Retriable(_) => true,
            ConnectError::Log(e) => matches!(
                e,
                freshet_core::Error::Io { .. } | freshet_core::Error::Remote(_) | freshet_core::Error::Rebalanced(_)
            ),
            _ => false,
        }
    }
}
