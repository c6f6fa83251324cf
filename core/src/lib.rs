//! Freshet's log.
//!
//! Role: the storage engine (topics, partitions, segments, indexes, retention, compaction,
//! durability), the record-batch format, and the substrate traits that everything above talks to
//! the log through, with the embedded implementation and (feature `remote`) the one over librdkafka.
//!
//! Boundary: `freshet-core` knows nothing of state stores, topologies, SQL or connectors. Blocking
//! file work runs on dedicated threads or tokio's blocking pool, never on an async worker.

pub mod batch;
pub mod broker;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod log;

pub use error::{Error, Result};
pub mod compression;
pub mod group;
mod legacy;
pub mod partitioner;
#[cfg(feature = "remote")]
pub mod remote;
pub mod substrate;
pub mod transactions;
