//! Coverage-guided fuzzing of the broker's request path: each input is one request frame (no
//! length prefix), decoded and handled as a connection's would be, against a log in a temporary
//! directory with one topic. Any panic (or allocation the sanitizer refuses) is a finding.
//!
//! `cargo install cargo-fuzz`, then from `core/`: `cargo fuzz run -s none request -- -max_total_time=300`
//! (`-s none`: no sanitizer, which a stable toolchain builds).

#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use freshet_broker::{BrokerConfig, FrameHarness};
use freshet_log::config::{Durability, LogConfig};
use freshet_coord::group::GroupOffsets;
use freshet_log::Log;

struct Target {
    runtime: tokio::runtime::Runtime,
    harness: FrameHarness,
    _dir: tempfile::TempDir,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // No fsync: the target looks for panics, not durability.
        let config = LogConfig { durability: Durability::OsCache, ..LogConfig::default() };
        let dir = tempfile::tempdir().unwrap();
        let harness = runtime.block_on(async {
            let log = Log::open(dir.path(), config).await.unwrap();
            log.create_topic("t", 2, Default::default()).await.unwrap();
            let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
            let config = BrokerConfig { auto_create_topics: false, ..BrokerConfig::default() };
            FrameHarness::new(log, offsets, config)
        });
        Target { runtime, harness, _dir: dir }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let target = target();
    // A fetch may long-poll for as long as the frame asks: stop waiting after a moment.
    let handled = target.harness.handle(Bytes::copy_from_slice(data));
    let _ =
        target.runtime.block_on(async { tokio::time::timeout(std::time::Duration::from_millis(20), handled).await });
});
