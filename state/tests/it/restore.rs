//! Restores: after a clean stop, without a checkpoint, and after a crash at any moment, a store
//! comes back holding exactly the state its changelog implies, with no committed update lost.
//!
//! The crashing writer is this test binary itself, started again with `FRESHET_STATE_WRITER` set:
//! the test `state_writer_process` does nothing in a normal run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use freshet_state::checkpoint::CHECKPOINT_FILE;
use freshet_state::{
    changelog_topic, Backend, RestoreListener, RestoreProgress, StoreOptions, TaskState, WindowOptions,
};

use crate::support::{backends, seed, slow, Env};

fn fill(task: &mut TaskState, n: u32) {
    let s = task.kv_store::<u32, String>("kv").unwrap();
    for i in 0..n {
        s.put(&(i % 1_000), &format!("value-{i}")).unwrap();
    }
}

fn contents(task: &mut TaskState) -> BTreeMap<u32, String> {
    task.kv_store::<u32, String>("kv").unwrap().all().unwrap().map(Result::unwrap).collect()
}

#[test]
fn a_clean_restart_restores_only_what_the_checkpoint_lacks() {
    for (name, backend) in backends() {
        let env = Env::new();
        let mut task = env.task(&backend);
        task.add_kv_store::<u32, String>("kv", StoreOptions::default()).unwrap();
        fill(&mut task, 5_000);
        let before = contents(&mut task);
        task.close().unwrap();

        let mut task = env.task(&backend);
        task.add_kv_store::<u32, String>("kv", StoreOptions::default()).unwrap();
        let restored = task.restores()[0].clone();
        assert_eq!(contents(&mut task), before, "{name}");
        if backend.persistent() {
            assert_eq!(restored.n_records, 0, "{name}: the checkpoint covers the whole changelog");
        } else {
            assert_eq!(restored.start_offset, 0, "{name}: memory restores from the beginning");
            assert_eq!(restored.n_records, 1_000, "{name}: the cache collapsed 5000 updates to 1000");
        }
        task.close().unwrap();
    }
}

#[test]
fn without_a_checkpoint_a_store_is_rebuilt_from_the_beginning() {
    let env = Env::new();
    let backend = Backend::rocksdb(64 << 20).unwrap();
    let mut task = env.task(&backend);
    task.add_kv_store::<u32, String>("kv", StoreOptions::default()).unwrap();
    fill(&mut task, 2_000);
    let before = contents(&mut task);
    let dir = task.dir().to_path_buf();
    task.close().unwrap();
    std::fs::remove_file(dir.join(CHECKPOINT_FILE)).unwrap();
    // A store written to without its changelog knowing: it must not survive the rebuild.
    {
        let mut task = env.task(&backend);
        task.add_kv_store::<u32, String>("kv", StoreOptions::new(false, false)).unwrap();
        task.kv_store::<u32, String>("kv").unwrap().put(&999_999, &"stray".into()).unwrap();
        task.close().unwrap();
        std::fs::remove_file(dir.join(CHECKPOINT_FILE)).unwrap();
    }
    let mut task = env.task(&backend);
    task.add_kv_store::<u32, String>("kv", StoreOptions::default()).unwrap();
    assert_eq!(task.restores()[0].n_records, 1_000);
    assert_eq!(contents(&mut task), before);
    task.close().unwrap();
}

/// Writes `n` changes (`key(i)`, deleted when `delete(i)`) to a logged store, drops its checkpoint
/// and restores it through SST files of `chunk_bytes`: every key must end with its last write.
fn bulk_restore_matches_the_last_writes<K: freshet_state::StateSerde + Ord + Clone + std::fmt::Debug>(
    n: u32,
    chunk_bytes: usize,
    key: impl Fn(u32) -> K,
    delete: impl Fn(u32) -> bool,
) {
    let env = Env::new();
    let small_chunks =
        Backend::RocksDb(freshet_state::RocksMemory::new(16 << 20).unwrap().with_restore_chunk_bytes(chunk_bytes));
    let mut task = env.task(&small_chunks);
    task.add_kv_store::<K, String>("kv", StoreOptions::new(true, false)).unwrap();
    let mut model = BTreeMap::new();
    let s = task.kv_store::<K, String>("kv").unwrap();
    for i in 0..n {
        let k = key(i);
        if delete(i) {
            s.delete(&k).unwrap();
            model.remove(&k);
        } else {
            s.put(&k, &format!("v{i}")).unwrap();
            model.insert(k, format!("v{i}"));
        }
    }
    let dir = task.dir().to_path_buf();
    task.close().unwrap();
    std::fs::remove_file(dir.join(CHECKPOINT_FILE)).unwrap();
    let mut task = env.task(&small_chunks);
    task.add_kv_store::<K, String>("kv", StoreOptions::default()).unwrap();
    assert_eq!(task.restores()[0].n_records, u64::from(n));
    let s = task.kv_store::<K, String>("kv").unwrap();
    let restored: Vec<(K, String)> = s.all().unwrap().map(Result::unwrap).collect();
    assert_eq!(restored, model.into_iter().collect::<Vec<_>>());
    task.close().unwrap();
}

/// A restore large enough to go through sorted SST files, several of them, with overwrites and
/// deletes spread across chunks: the last write of each key must win.
#[test]
fn a_bulk_restore_through_sst_files_keeps_the_changelog_order() {
    bulk_restore_matches_the_last_writes(40_000, 256 << 10, |i| (i * 7_919) % 5_000, |i| i % 11 == 0);
}

/// The same with string keys that share long prefixes (the restore sorts by an 8-byte prefix
/// first), keys that are prefixes of others and keys with zero bytes.
#[test]
fn a_bulk_restore_orders_keys_that_share_long_prefixes() {
    let key = |i: u32| match i % 4 {
        0 => format!("customer-{:05}", (i * 7_919) % 3_000),
        1 => format!("customer-{}", (i * 31) % 300),
        2 => "a\0".repeat((i % 5) as usize),
        _ => format!("a\0b{}", i % 7),
    };
    bulk_restore_matches_the_last_writes(20_000, 64 << 10, key, |i| i % 13 == 0);
}

/// Damaged RocksDB files of a changelogged store are deleted and the store rebuilt from its
/// changelog; a store without changelog reports the damage instead.
#[test]
fn a_damaged_rocksdb_store_is_rebuilt_from_its_changelog() {
    let env = Env::new();
    let backend = Backend::rocksdb(16 << 20).unwrap();
    let mut task = env.task(&backend);
    task.add_kv_store::<u32, String>("kv", StoreOptions::default()).unwrap();
    task.add_kv_store::<u32, String>("local", StoreOptions::new(false, false)).unwrap();
    fill(&mut task, 3_000);
    task.kv_store::<u32, String>("local").unwrap().put(&1, &"one".into()).unwrap();
    let before = contents(&mut task);
    let dir = task.dir().to_path_buf();
    task.close().unwrap();
    for store in ["kv", "local"] {
        std::fs::write(dir.join("rocksdb").join(store).join("CURRENT"), b"MANIFEST-999999\n").unwrap();
    }
    let mut task = env.task(&backend);
    task.add_kv_store::<u32, String>("kv", StoreOptions::default()).unwrap();
    assert_eq!(task.restores()[0].start_offset, 0, "rebuilt from the start");
    assert_eq!(contents(&mut task), before);
    let err = task.add_kv_store::<u32, String>("local", StoreOptions::new(false, false)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("RocksDB error in store \"local\"") && text.contains("rocksdb/local"), "{text}");
    task.close().unwrap();
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(&'static str, RestoreProgress)>>);

impl RestoreListener for Recorder {
    fn on_start(&self, p: &RestoreProgress) {
        self.0.lock().unwrap().push(("start", p.clone()));
    }
    fn on_progress(&self, p: &RestoreProgress) {
        self.0.lock().unwrap().push(("progress", p.clone()));
    }
    fn on_end(&self, p: &RestoreProgress) {
        self.0.lock().unwrap().push(("end", p.clone()));
    }
}

#[test]
fn restore_reports_progress_to_a_listener() {
    let env = Env::new();
    let mut task = env.task(&Backend::InMemory);
    task.add_kv_store::<u32, String>("kv", StoreOptions::new(true, false)).unwrap();
    fill(&mut task, 20_000);
    task.close().unwrap();

    let recorder = Arc::new(Recorder::default());
    let mut config = env.task_config(&Backend::InMemory);
    config.restore_listener = Some(recorder.clone());
    let mut task = TaskState::open(config).unwrap();
    task.add_kv_store::<u32, String>("kv", StoreOptions::default()).unwrap();
    let events = recorder.0.lock().unwrap().clone();
    assert_eq!(events.first().map(|e| e.0), Some("start"));
    let (kind, end) = events.last().unwrap();
    assert_eq!(*kind, "end");
    assert_eq!((end.start_offset, end.end_offset, end.position), (0, 20_000, 20_000));
    assert_eq!(end.n_records, 20_000);
    assert_eq!(end.remaining_offsets(), 0);
    assert_eq!(end.fraction_done(), 1.0);
    assert!(end.n_bytes > 20_000 * 10 && end.records_per_sec() > 0.0);
    assert_eq!(end.changelog.topic, changelog_topic("app", "kv"));
    assert_eq!(contents(&mut task).len(), 1_000);
    task.close().unwrap();
}

#[test]
fn window_and_session_stores_restore_too() {
    for (name, backend) in backends() {
        let env = Env::new();
        let window = WindowOptions { retention_ms: 3_600_000, window_size_ms: 60_000, retain_duplicates: false };
        let mut task = env.task(&backend);
        task.add_window_store::<String, u64>("w", window, StoreOptions::default()).unwrap();
        task.add_session_store::<String, u64>("s", 3_600_000, StoreOptions::default()).unwrap();
        for i in 0..300i64 {
            let key = format!("k{}", i % 7);
            task.window_store::<String, u64>("w").unwrap().put(&key, Some(&(i as u64)), (i / 10) * 60_000).unwrap();
            task.session_store::<String, u64>("s")
                .unwrap()
                .merge(&key, i * 1_000, i * 1_000, 5_000, 1, |a, b| a + b)
                .unwrap();
        }
        let windows = |task: &mut TaskState| {
            task.window_store::<String, u64>("w").unwrap().all().unwrap().map(Result::unwrap).collect::<Vec<_>>()
        };
        let sessions = |task: &mut TaskState| {
            let s = task.session_store::<String, u64>("s").unwrap();
            s.find_sessions_range(&"k".into(), &"k9".into(), i64::MIN, i64::MAX)
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        };
        let (w_before, s_before) = (windows(&mut task), sessions(&mut task));
        assert_eq!(w_before.len(), 210, "{name}: 30 windows x 7 keys");
        assert_eq!(s_before.iter().map(|(_, n)| n).sum::<u64>(), 300, "{name}");
        task.close().unwrap();
        let mut task = env.task(&backend);
        task.add_window_store::<String, u64>("w", window, StoreOptions::default()).unwrap();
        task.add_session_store::<String, u64>("s", 3_600_000, StoreOptions::default()).unwrap();
        assert_eq!(windows(&mut task), w_before, "{name}");
        assert_eq!(sessions(&mut task), s_before, "{name}");
        task.close().unwrap();
    }
}

const WRITER_ENV: &str = "FRESHET_STATE_WRITER";
const N_KEYS: u64 = 500;

/// The writer: puts `i` under key `i % 500` for i = 0, 1, ..., commits every 1000 puts and prints
/// `committed <i>` after each commit. With `FRESHET_STATE_WRITER_ABORT` it flushes its stores
/// without a checkpoint after 3500 puts, writes on, and aborts.
#[test]
#[allow(clippy::print_stdout)] // the parent reads the commits from stdout
fn state_writer_process() {
    let Some(dir) = std::env::var_os(WRITER_ENV) else { return };
    let abort = std::env::var_os("FRESHET_STATE_WRITER_ABORT").is_some();
    let env = Env::at(Path::new(&dir));
    let backend = Backend::rocksdb(32 << 20).unwrap();
    let mut config = env.task_config(&backend);
    config.cache_bytes_per_store = 4_000;
    config.changelog_batch_bytes = 1_000;
    let mut task = TaskState::open(config).unwrap();
    task.add_kv_store::<u64, u64>("counts", StoreOptions::default()).unwrap();
    let start =
        task.kv_store::<u64, u64>("counts").unwrap().all().unwrap().map(|r| r.unwrap().1 + 1).max().unwrap_or(0);
    for i in start.. {
        task.kv_store::<u64, u64>("counts").unwrap().put(&(i % N_KEYS), &i).unwrap();
        if (i + 1) % 1_000 == 0 {
            task.commit().unwrap();
            println!("committed {i}");
        }
        if abort && i == start + 3_500 {
            task.flush_without_checkpoint().unwrap();
        }
        if abort && i == start + 3_700 {
            std::process::abort();
        }
    }
}

fn run_writer(dir: &Path, abort: bool, kill_after: Duration) -> Option<u64> {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(exe);
    command
        .args(["--exact", "restore::state_writer_process", "--nocapture", "--test-threads", "1"])
        .env(WRITER_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if abort {
        command.env("FRESHET_STATE_WRITER_ABORT", "1");
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(i) = line.strip_prefix("committed ") {
                let _ = tx.send(i.parse::<u64>().unwrap());
            }
        }
    });
    let mut last = None;
    if abort {
        child.wait().unwrap();
    } else {
        // Wait for a first commit, then kill at a random moment.
        last = Some(rx.recv_timeout(Duration::from_secs(120)).expect("the writer commits"));
        std::thread::sleep(kill_after);
        child.kill().unwrap();
        child.wait().unwrap();
    }
    reader.join().unwrap();
    while let Ok(i) = rx.try_recv() {
        last = Some(i);
    }
    last
}

fn check_after_crash(dir: &Path, last_committed: Option<u64>, ctx: &str) {
    let env = Env::at(dir);
    let backend = Backend::rocksdb(32 << 20).unwrap();
    let mut task = TaskState::open(env.task_config(&backend)).unwrap();
    task.add_kv_store::<u64, u64>("counts", StoreOptions::default()).unwrap();
    let got: BTreeMap<u64, u64> =
        task.kv_store::<u64, u64>("counts").unwrap().all().unwrap().map(Result::unwrap).collect();
    let implied: BTreeMap<Bytes, Bytes> = env.changelog_state(&changelog_topic("app", "counts"));
    let got_bytes: BTreeMap<Bytes, Bytes> = got
        .iter()
        .map(|(k, v)| (Bytes::copy_from_slice(&k.to_be_bytes()), Bytes::copy_from_slice(&v.to_be_bytes())))
        .collect();
    assert_eq!(got_bytes, implied, "{ctx}: the restored store is what the changelog implies");
    if let Some(last) = last_committed {
        for k in 0..N_KEYS.min(last + 1) {
            let committed = last - (last + N_KEYS - k) % N_KEYS;
            let value = got.get(&k).copied();
            assert!(value >= Some(committed), "{ctx}: key {k} has {value:?}, but {committed} was committed");
        }
    }
    task.close().unwrap();
    env.close();
}

#[test]
fn a_crash_between_store_writes_and_the_checkpoint_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let last = run_writer(dir.path(), true, Duration::ZERO);
    assert_eq!(last, Some(2_999), "the writer committed 3 times before it aborted");
    check_after_crash(dir.path(), last, "abort after an uncheckpointed flush");
}

#[test]
fn a_writer_killed_at_random_moments_loses_nothing_committed() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut last_committed = None;
    for round in 0..if slow() { 12 } else { 3 } {
        let kill_after = Duration::from_millis(rng.u64(0..400));
        let last = run_writer(dir.path(), false, kill_after);
        last_committed = last.max(last_committed);
        check_after_crash(dir.path(), last_committed, &format!("seed {seed} round {round} kill after {kill_after:?}"));
    }
}

#[test]
fn a_standby_copy_follows_its_changelog_without_reopening() {
    let env = Env::new();
    let backend = Backend::rocksdb(64 << 20).unwrap();
    let mut active = env.task(&backend);
    active.add_kv_store::<u32, String>("kv", StoreOptions::default()).unwrap();
    fill(&mut active, 500);
    active.commit().unwrap();
    // The standby copy, in another state directory (as on another machine).
    let mut config = env.task_config(&backend);
    config.state_dir = env.dir.join("standby");
    let mut standby = TaskState::open(config.clone()).unwrap();
    standby.add_kv_store::<u32, String>("kv", StoreOptions::default()).unwrap();
    assert_eq!(standby.restores()[0].n_records, 500);
    assert_eq!(standby.catch_up().unwrap(), 0, "nothing new");
    // The active task goes on; the copy applies exactly what the changelog gained.
    let s = active.kv_store::<u32, String>("kv").unwrap();
    for i in 0..100u32 {
        s.put(&(i * 7), &format!("later-{i}")).unwrap();
    }
    active.commit().unwrap();
    assert_eq!(standby.catch_up().unwrap(), 100);
    assert_eq!(contents(&mut standby), contents(&mut active));
    // Its checkpoint moved with it: reopened, it restores nothing.
    standby.close().unwrap();
    let mut reopened = TaskState::open(config).unwrap();
    reopened.add_kv_store::<u32, String>("kv", StoreOptions::default()).unwrap();
    assert_eq!(reopened.restores()[0].n_records, 0);
    assert_eq!(contents(&mut reopened), contents(&mut active));
    reopened.close().unwrap();
    active.close().unwrap();
}
