//! Errors of the runtime and the test driver.

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting or an argument is not acceptable; the message says which and why.
    #[error("invalid configuration: {0}")]
    Config(String),
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
