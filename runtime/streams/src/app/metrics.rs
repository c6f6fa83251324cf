//! What the threads count, and the snapshot `StreamsApp::metrics` gives.

use super::*;

/// Counters the threads keep.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) records_in: AtomicU64,
    pub(super) records_out: AtomicU64,
    pub(super) records_skipped: AtomicU64,
    pub(super) dropped_records: AtomicU64,
    pub(super) late_records: AtomicU64,
    pub(super) process_ns: AtomicU64,
    pub(super) commits: AtomicU64,
    pub(super) commit_ns: AtomicU64,
}

/// What the application has done so far, for a user to read.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Records read from source topics.
    pub records_in: u64,
    /// Records written to sink topics.
    pub records_out: u64,
    /// Records read per second since start.
    pub records_in_per_sec: f64,
    /// Records written per second since start.
    pub records_out_per_sec: f64,
    /// Records an error policy skipped or dead-lettered.
    pub records_skipped: u64,
    /// Records operators dropped (not decodable with `OnDecodeError::Skip`, null keys, ...).
    pub dropped_records: u64,
    /// Records windowed operators dropped as late.
    pub late_records: u64,
    /// Mean processing time of a record, source to sinks.
    pub process_latency: Duration,
    /// Commits done.
    pub commits: u64,
    /// Mean time of a commit.
    pub commit_latency: Duration,
    /// Records not yet read, per source partition (at the last poll).
    pub lag: BTreeMap<TopicPartition, i64>,
    /// What each store's restore did.
    pub restores: Vec<RestoreProgress>,
}
