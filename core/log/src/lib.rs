//! Freshet's storage engine: the bottom layer.
//!
//! Role: the record format (Kafka RecordBatch v2 in [`batch`], with [`compression`] and Kafka's
//! [`partitioner`]; the broker converts older message formats at its edge, so the log holds one), and
//! the engine that keeps it on disk: [`Log`] holds topics of partitions of segments with their
//! indexes, appends with group commit, reads, retention, compaction, and each partition's
//! transaction index ([`txn`]). The bytes on disk are documented in [`format`].
//!
//! Boundary: no networking and no clients. Blocking file work runs on dedicated threads or tokio's
//! blocking pool, never on an async worker. Time comes from the [`clock::Clock`] the log is opened
//! with.

pub mod batch;
pub mod clock;
pub mod compression;
pub mod config;
pub mod error;
mod log;
pub mod partitioner;

pub use error::{Error, Result};
pub use log::{
    failpoint, format, txn, validate_topic_name, AbortedFilter, AbortedTxn, AppendInfo, CleanStats, Fetched, Isolation,
    Log, LogSlice, LogStats, Marker, OffsetSpec, Partition, PartitionDescription, ProducerInfo, ReadLimit, ReadResult,
    RecoveryReport, TopicDescription,
};
