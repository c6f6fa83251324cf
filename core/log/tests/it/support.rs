//! Helpers shared by the tests.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use freshet_log::batch::{BatchBuilder, Batches};
use freshet_log::config::{Durability, LogConfig};
use freshet_log::Log;

/// A log config for tests: background maintenance effectively off (tests call it explicitly).
pub(crate) fn config(durability: Durability) -> LogConfig {
    LogConfig { durability, maintenance_interval: std::time::Duration::from_secs(3600), ..LogConfig::default() }
}

pub(crate) async fn open(dir: &Path) -> Log {
    Log::open(dir, config(Durability::Fsync)).await.expect("open log")
}

pub(crate) fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A batch of `values` with keys `k<value>` unless `keys` is given.
pub(crate) fn batch(records: &[(Option<&str>, Option<&str>, i64)]) -> BytesMut {
    let mut b = BatchBuilder::default();
    for (k, v, ts) in records {
        b.push(k.map(str::as_bytes), v.map(str::as_bytes), &[], *ts);
    }
    BytesMut::from(&b.finish()[..])
}

/// A batch of `n` records whose values are `prefix-i`.
pub(crate) fn values_batch(prefix: &str, n: usize, ts: i64) -> BytesMut {
    let mut b = BatchBuilder::default();
    for i in 0..n {
        b.push(None, Some(format!("{prefix}-{i}").as_bytes()), &[], ts);
    }
    BytesMut::from(&b.finish()[..])
}

/// Every `(offset, key, value)` of a partition, reading from the log start.
pub(crate) async fn read_all(log: &Log, topic: &str, partition: u32) -> Vec<(i64, Option<Bytes>, Option<Bytes>)> {
    let p = log.partition(topic, partition).unwrap();
    let (start, _, _) = p.offsets();
    let mut out = Vec::new();
    let mut position = start;
    loop {
        let fetched = log.read(topic, partition, position, 64 << 10).await.unwrap();
        if fetched.batches.is_empty() {
            break;
        }
        for batch in Batches::new(&fetched.batches) {
            let batch = batch.unwrap();
            batch.check_crc().unwrap();
            batch
                .for_each_record(|r| {
                    if r.offset >= position {
                        out.push((r.offset, r.key.map(Bytes::copy_from_slice), r.value.map(Bytes::copy_from_slice)));
                    }
                    Ok(())
                })
                .unwrap();
            position = batch.next_offset();
        }
    }
    out
}

pub(crate) fn text(b: &Option<Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The seed of a randomised test: `FRESHET_TEST_SEED` when set (to explore other cases or replay a
/// failure), the test's fixed default otherwise. Printed, so a failure's output names it.
pub(crate) fn seed(default: u64) -> u64 {
    let seed = std::env::var("FRESHET_TEST_SEED")
        .ok()
        .and_then(|s| s.strip_prefix("0x").map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok()))
        .unwrap_or(default);
    eprintln!("seed {seed:#x} (set FRESHET_TEST_SEED to replay)");
    seed
}
