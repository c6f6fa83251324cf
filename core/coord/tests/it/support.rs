//! What the coordinator tests share: a log in a directory (on a manual clock or not), batches of
//! values.

use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use freshet_log::batch::BatchBuilder;
use freshet_log::clock::ManualClock;
use freshet_log::config::{Durability, LogConfig};
use freshet_log::Log;

/// A log config with background maintenance effectively off (tests call it explicitly).
pub(crate) fn config() -> LogConfig {
    LogConfig {
        durability: Durability::Fsync,
        maintenance_interval: std::time::Duration::from_secs(3600),
        ..LogConfig::default()
    }
}

/// A log with [`config`].
pub(crate) async fn open(dir: &Path) -> Log {
    Log::open(dir, config()).await.expect("open log")
}

/// [`config`] on a manual clock reading 1,000,000 ms, and the clock.
pub(crate) fn manual_clock_config() -> (LogConfig, Arc<ManualClock>) {
    let clock = ManualClock::new(1_000_000);
    (LogConfig { clock: clock.clone(), ..config() }, clock)
}

/// A batch of `n` records whose values are `prefix-i`.
pub(crate) fn values_batch(prefix: &str, n: usize, ts: i64) -> BytesMut {
    let mut b = BatchBuilder::default();
    for i in 0..n {
        b.push(None, Some(format!("{prefix}-{i}").as_bytes()), &[], ts);
    }
    BytesMut::from(&b.finish()[..])
}
