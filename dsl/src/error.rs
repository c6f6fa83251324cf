//! Errors of topology building and processing.

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The topology is not valid; the message names the operator.
    #[error("invalid topology: {0}")]
    Topology(String),
    /// A record could not be decoded with the serde of its topic.
    #[error(
        "cannot deserialize the {what} of the record at {topic}-{partition} offset {offset} with {serde}: {detail}"
    )]
    Deserialize {
        /// `key` or `value`.
        what: &'static str,
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: u32,
        /// Offset.
        offset: i64,
        /// The serde's name.
        serde: String,
        /// What was wrong with the bytes.
        detail: String,
    },
    /// A value could not be encoded for a sink topic.
    #[error("cannot serialize the {what} of a record for topic {topic} with {serde}: {detail}")]
    Serialize {
        /// `key` or `value`.
        what: &'static str,
        /// Sink topic.
        topic: String,
        /// The serde's name.
        serde: String,
        /// Why.
        detail: String,
    },
    /// A state store call failed.
    #[error(transparent)]
    State(#[from] freshet_state::Error),
    /// A processor failed.
    #[error("processing failed: {0}")]
    Process(String),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
