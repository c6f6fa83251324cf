//! Helpers shared by the tests: an embedded log, and tasks over it in every store variant.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use freshet_core::config::{Durability, LogConfig};
use freshet_core::{Consumer as _, Embedded, TopicPartition};
use freshet_state::{Backend, Changelogs, StoreOptions, TaskConfig, TaskState};

/// A temporary directory with an embedded log (in `log/`) and a runtime for its futures.
pub(crate) struct Env {
    pub(crate) dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) log: Embedded,
}

pub(crate) fn log_config() -> LogConfig {
    LogConfig {
        durability: Durability::Fsync,
        maintenance_interval: Duration::from_secs(3600),
        offsets_topic_partitions: 1,
        ..LogConfig::default()
    }
}

impl Env {
    pub(crate) fn new() -> Env {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut env = Env::at(temp.path());
        env._temp = Some(temp);
        env
    }

    /// An environment in `dir`, which outlives it.
    pub(crate) fn at(dir: &Path) -> Env {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let log = runtime.block_on(Embedded::open(dir.join("log"), log_config())).expect("open log");
        Env { dir: dir.to_path_buf(), _temp: None, runtime, log }
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub(crate) fn changelogs(&self) -> Changelogs {
        Changelogs::new(self.log.clone(), self.runtime.handle().clone()).expect("changelogs in the embedded log")
    }

    pub(crate) fn task_config(&self, backend: &Backend) -> TaskConfig {
        TaskConfig::new(self.state_dir(), "app", "0_0", 0, 1, backend.clone(), Some(self.changelogs()))
    }

    pub(crate) fn task(&self, backend: &Backend) -> TaskState {
        TaskState::open(self.task_config(backend)).expect("open task")
    }

    /// Every record of a changelog partition, in offset order: `(key, value)`.
    pub(crate) fn changelog(&self, topic: &str) -> Vec<(Bytes, Option<Bytes>)> {
        let mut consumer = self.log.consumer(Default::default());
        let tp = TopicPartition::new(topic, 0);
        self.runtime.block_on(async {
            let end = self.log.log().partition(topic, 0).expect("changelog").offsets().2;
            consumer.assign(vec![tp.clone()]).await.expect("assign");
            consumer.seek_to_offset(&tp, 0).expect("seek");
            let mut out = Vec::new();
            while consumer.position(&tp).unwrap_or(0) < end {
                for batches in consumer.poll(Duration::from_secs(1)).await.expect("poll") {
                    for r in batches.records().expect("records") {
                        out.push((r.key.expect("changelog records have keys"), r.value));
                    }
                }
            }
            out
        })
    }

    /// The state a changelog implies: the last value of every key.
    pub(crate) fn changelog_state(&self, topic: &str) -> BTreeMap<Bytes, Bytes> {
        let mut state = BTreeMap::new();
        for (k, v) in self.changelog(topic) {
            match v {
                Some(v) => state.insert(k, v),
                None => state.remove(&k),
            };
        }
        state
    }

    pub(crate) fn close(self) {
        self.runtime.block_on(self.log.close()).expect("close log");
    }
}

/// The backends every contract test runs against.
pub(crate) fn backends() -> Vec<(&'static str, Backend)> {
    vec![("rocksdb", Backend::rocksdb(64 << 20).expect("rocksdb memory")), ("memory", Backend::InMemory)]
}

/// Every combination of changelog and cache.
pub(crate) fn layerings() -> Vec<StoreOptions> {
    let mut out = Vec::new();
    for logging in [false, true] {
        for caching in [false, true] {
            out.push(StoreOptions { logging, caching, report_evicted: true });
        }
    }
    out
}

pub(crate) fn seed() -> u64 {
    let seed =
        std::env::var("FRESHET_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("FRESHET_TEST_SEED={seed}");
    seed
}

pub(crate) fn slow() -> bool {
    std::env::var_os("FRESHET_SLOW_TESTS").is_some()
}
