//! Bad input and misuse get clear errors that name what was wrong, and change nothing else.

use freshet_core::{Admin as _, NewTopic};
use freshet_state::checkpoint::CHECKPOINT_FILE;
use freshet_state::{Backend, Error, StoreOptions, TaskState};

use crate::support::Env;

#[test]
fn a_corrupt_checkpoint_is_named() {
    let env = Env::new();
    let backend = Backend::rocksdb(16 << 20).unwrap();
    let mut task = env.task(&backend);
    task.add_kv_store::<String, String>("kv", StoreOptions::default()).unwrap();
    task.kv_store::<String, String>("kv").unwrap().put(&"k".into(), &"v".into()).unwrap();
    let path = task.dir().join(CHECKPOINT_FILE);
    task.close().unwrap();
    let good = std::fs::read_to_string(&path).unwrap();
    assert!(good.starts_with("freshet-checkpoint 1\napp-kv-changelog 0 1\ncrc32c "), "{good}");
    for (damage, expect) in [
        (good.replace("changelog 0 1", "changelog 0 7"), "CRC-32C is"),
        (good.replace("crc32c", "crc"), "no crc32c line"),
        ("garbage".to_string(), "no crc32c line"),
    ] {
        std::fs::write(&path, &damage).unwrap();
        let err = TaskState::open(env.task_config(&backend)).unwrap_err();
        assert!(matches!(err, Error::CorruptCheckpoint { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()) && text.contains(expect), "{text}");
        assert!(text.contains("delete it to restore"), "{text}");
    }
    // Deleting it, as the message says, restores the store from its changelog.
    std::fs::remove_file(&path).unwrap();
    let mut task = env.task(&backend);
    task.add_kv_store::<String, String>("kv", StoreOptions::default()).unwrap();
    assert_eq!(task.kv_store::<String, String>("kv").unwrap().get(&"k".into()).unwrap(), Some("v".into()));
    task.close().unwrap();
}

#[test]
fn a_task_directory_has_one_owner() {
    let env = Env::new();
    let task = env.task(&Backend::InMemory);
    let err = TaskState::open(env.task_config(&Backend::InMemory)).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("is locked by another process"), "{err}");
    drop(task);
    // Released with the task.
    TaskState::open(env.task_config(&Backend::InMemory)).unwrap().close().unwrap();
}

#[test]
fn changelog_topics_must_exist_with_the_right_partitions() {
    let env = Env::new();
    let mut config = env.task_config(&Backend::InMemory);
    config.create_changelogs = false;
    let mut task = TaskState::open(config.clone()).unwrap();
    let err = task.add_kv_store::<String, String>("kv", StoreOptions::default()).unwrap_err();
    assert!(matches!(err, Error::ChangelogMissing { .. }), "{err}");
    assert!(err.to_string().contains("\"app-kv-changelog\" of store \"kv\" does not exist"), "{err}");

    let admin = env.log.admin();
    env.runtime
        .block_on(admin.create_topic(NewTopic {
            name: "app-wide-changelog".into(),
            n_partitions: 3,
            configs: Default::default(),
        }))
        .unwrap();
    let err = task.add_kv_store::<String, String>("wide", StoreOptions::default()).unwrap_err();
    assert!(matches!(err, Error::ChangelogPartitions { expected: 1, actual: 3, .. }), "{err}");
    assert!(err.to_string().contains("has 3 partitions, but the store needs 1"), "{err}");
    // Nothing was registered by the failures; a store without changelog still works.
    task.add_kv_store::<String, String>("kv", StoreOptions::new(false, true)).unwrap();
    task.close().unwrap();

    // Created with the configs a key-value changelog needs.
    let mut task = env.task(&Backend::InMemory);
    task.add_kv_store::<String, String>("fresh", StoreOptions::default()).unwrap();
    let configs = env.runtime.block_on(admin.describe_configs("app-fresh-changelog")).unwrap();
    let policy = configs.iter().find(|c| c.name == "cleanup.policy").unwrap();
    assert_eq!(policy.value, "compact");
    task.close().unwrap();
}

#[test]
fn bad_configs_and_names_are_refused() {
    let err = Backend::rocksdb(1 << 20).unwrap_err();
    assert!(err.to_string().contains("at least 8 MiB"), "{err}");
    let env = Env::new();
    let mut task = env.task(&Backend::InMemory);
    for bad in ["", "a/b", "..", "white space"] {
        let err = task.add_kv_store::<String, String>(bad, StoreOptions::default()).unwrap_err();
        assert!(err.to_string().contains("store names are"), "{bad:?}: {err}");
    }
    task.add_kv_store::<String, String>("kv", StoreOptions::default()).unwrap();
    let err = task.add_kv_store::<String, String>("kv", StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("already has a store"), "{err}");
    let err = task.kv_store::<String, u64>("kv").unwrap_err();
    assert!(err.to_string().contains("not a key-value store of these key and value types"), "{err}");
    let err = task.window_store::<String, String>("nope").unwrap_err();
    assert!(err.to_string().contains("no store of that name"), "{err}");
    task.close().unwrap();
}

#[test]
fn undecodable_values_are_errors_not_panics() {
    let env = Env::new();
    let backend = Backend::rocksdb(16 << 20).unwrap();
    let options = StoreOptions::new(false, false);
    let mut task = env.task(&backend);
    task.add_kv_store::<String, String>("kv", options).unwrap();
    task.kv_store::<String, String>("kv").unwrap().put(&"k".into(), &"not a number".into()).unwrap();
    task.close().unwrap();
    // Reopened by code that expects numbers.
    let mut task = env.task(&backend);
    task.add_kv_store::<String, u64>("kv", options).unwrap();
    let s = task.kv_store::<String, u64>("kv").unwrap();
    let err = s.get(&"k".into()).unwrap_err();
    assert!(err.to_string().contains("cannot decode u64: expected 8 bytes, found 12"), "{err}");
    let err = s.all().unwrap().next().unwrap().unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");
    task.close().unwrap();
}
