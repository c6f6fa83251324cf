//! What the coordinator tests share: a log in a directory, batches of values.

use std::path::Path;

use bytes::BytesMut;
use freshet_log::batch::BatchBuilder;
use freshet_log::config::{Durability, LogConfig};
use freshet_log::Log;

/// A log with background maintenance effectively off (tests call it explicitly).
pub(crate) async fn open(dir: &Path) -> Log {
    let config = LogConfig {
        durability: Durability::Fsync,
        maintenance_interval: std::time::Duration::from_secs(3600),
        ..LogConfig::default()
    };
    Log::open(dir, config).await.expect("open log")
}

/// A batch of `n` records whose values are `prefix-i`.
pub(crate) fn values_batch(prefix: &str, n: usize, ts: i64) -> BytesMut {
    let mut b = BatchBuilder::default();
    for i in 0..n {
        b.push(None, Some(format!("{prefix}-{i}").as_bytes()), &[], ts);
    }
    BytesMut::from(&b.finish()[..])
}
