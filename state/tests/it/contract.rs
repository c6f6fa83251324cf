//! The contract every backend and every layering (changelog on/off, cache on/off) must keep.

use std::collections::BTreeMap;

use bytes::Bytes;
use freshet_state::{StoreOptions, TaskState, WindowOptions, Windowed};

use crate::support::{backends, layerings, seed, slow, Env};

fn each_variant(mut test: impl FnMut(&str, &freshet_state::Backend, StoreOptions)) {
    for (name, backend) in backends() {
        for options in layerings() {
            test(name, &backend, options);
        }
    }
}

#[test]
fn kv_point_operations() {
    each_variant(|backend_name, backend, options| {
        let env = Env::new();
        let mut task = env.task(backend);
        task.add_kv_store::<String, i64>("counts", options).unwrap();
        let ctx = format!("{backend_name} {options:?}");
        let s = task.kv_store::<String, i64>("counts").unwrap();
        assert_eq!(s.get(&"a".into()).unwrap(), None, "{ctx}");
        s.put(&"a".into(), &1).unwrap();
        s.put(&"a".into(), &2).unwrap();
        assert_eq!(s.get(&"a".into()).unwrap(), Some(2), "{ctx}");
        assert_eq!(s.put_if_absent(&"a".into(), &9).unwrap(), Some(2), "{ctx}");
        assert_eq!(s.put_if_absent(&"b".into(), &3).unwrap(), None, "{ctx}");
        let (c, d) = ("c".to_string(), "d".to_string());
        s.put_all([(&c, &4), (&d, &5)]).unwrap();
        task.commit().unwrap();
        let s = task.kv_store::<String, i64>("counts").unwrap();
        assert_eq!(s.delete(&"c".into()).unwrap(), Some(4), "{ctx}");
        assert_eq!(s.delete(&"zz".into()).unwrap(), None, "{ctx}");
        assert_eq!(s.get(&"c".into()).unwrap(), None, "{ctx}");
        let all: Vec<(String, i64)> = s.all().unwrap().map(Result::unwrap).collect();
        assert_eq!(all, [("a".into(), 2), ("b".into(), 3), ("d".into(), 5)], "{ctx}");
        task.commit().unwrap();
        let s = task.kv_store::<String, i64>("counts").unwrap();
        let n = s.approximate_num_entries().unwrap();
        if backend_name == "memory" {
            assert_eq!(n, 3, "{ctx}");
        } else {
            assert!((1..=10).contains(&n), "{ctx}: estimate {n}");
        }
        assert_eq!(s.get(&"d".into()).unwrap(), Some(5), "{ctx}");
        task.close().unwrap();
    });
}

#[test]
fn kv_scans_come_back_in_key_order() {
    each_variant(|backend_name, backend, options| {
        let ctx = format!("{backend_name} {options:?}");
        let env = Env::new();
        let mut task = env.task(backend);
        task.add_kv_store::<i64, String>("by-number", options).unwrap();
        task.add_kv_store::<String, String>("by-name", options).unwrap();
        let s = task.kv_store::<i64, String>("by-number").unwrap();
        for k in [3i64, -7, 0, 12, -1, 5, i64::MIN, i64::MAX] {
            s.put(&k, &format!("v{k}")).unwrap();
        }
        // Half on disk, half in the upper layers: the scan merges them.
        task.commit().unwrap();
        let s = task.kv_store::<i64, String>("by-number").unwrap();
        for k in [4i64, -3, 100] {
            s.put(&k, &format!("v{k}")).unwrap();
        }
        s.delete(&5).unwrap();
        let keys = |it: freshet_state::TypedIter<'_, (i64, String)>| it.map(|r| r.unwrap().0).collect::<Vec<_>>();
        assert_eq!(keys(s.range(&-3, &4).unwrap()), [-3, -1, 0, 3, 4], "{ctx}");
        assert_eq!(keys(s.range(&4, &-3).unwrap()), Vec::<i64>::new(), "{ctx}: a reversed range is empty");
        assert_eq!(keys(s.range_from(&12).unwrap()), [12, 100, i64::MAX], "{ctx}");
        assert_eq!(keys(s.all().unwrap()), [i64::MIN, -7, -3, -1, 0, 3, 4, 12, 100, i64::MAX], "{ctx}");

        let s = task.kv_store::<String, String>("by-name").unwrap();
        for k in ["b", "ab", "a", "abc", "a\0", "ac", "ab\u{e9}"] {
            s.put(&k.to_string(), &"x".to_string()).unwrap();
        }
        let names = |it: freshet_state::TypedIter<'_, (String, String)>| it.map(|r| r.unwrap().0).collect::<Vec<_>>();
        assert_eq!(names(s.prefix_scan(&"ab".into()).unwrap()), ["ab", "abc", "ab\u{e9}"], "{ctx}");
        assert_eq!(names(s.all().unwrap()), ["a", "a\0", "ab", "abc", "ab\u{e9}", "ac", "b"], "{ctx}");
        task.close().unwrap();
    });
}

/// Random operations against a `BTreeMap` model, with commits and a restart at the end.
#[test]
fn kv_matches_a_model() {
    let seed = seed();
    let n_ops = if slow() { 20_000 } else { 2_000 };
    each_variant(|backend_name, backend, options| {
        let ctx = format!("{backend_name} {options:?} seed {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        let env = Env::new();
        let mut config = env.task_config(backend);
        // A small cache and small changelog batches, so writes move between layers all the time.
        config.cache_bytes_per_store = 2_000;
        config.changelog_batch_bytes = 500;
        let mut task = TaskState::open(config.clone()).unwrap();
        task.add_kv_store::<u32, Vec<u8>>("model", options).unwrap();
        let mut model: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for _ in 0..n_ops {
            let s = task.kv_store::<u32, Vec<u8>>("model").unwrap();
            let key = rng.u32(0..200);
            match rng.u8(0..100) {
                0..=49 => {
                    let value: Vec<u8> = (0..rng.usize(0..40)).map(|_| rng.u8(..)).collect();
                    s.put(&key, &value).unwrap();
                    model.insert(key, value);
                }
                50..=64 => {
                    assert_eq!(s.delete(&key).unwrap(), model.remove(&key), "{ctx}");
                }
                65..=84 => assert_eq!(s.get(&key).unwrap(), model.get(&key).cloned(), "{ctx}"),
                85..=96 => {
                    let to = key + rng.u32(0..50);
                    let got: Vec<(u32, Vec<u8>)> = s.range(&key, &to).unwrap().map(Result::unwrap).collect();
                    let want: Vec<(u32, Vec<u8>)> = model.range(key..=to).map(|(k, v)| (*k, v.clone())).collect();
                    assert_eq!(got, want, "{ctx}: range {key}..={to}");
                }
                _ => task.commit().unwrap(),
            }
        }
        task.close().unwrap();
        let mut task = TaskState::open(config).unwrap();
        task.add_kv_store::<u32, Vec<u8>>("model", options).unwrap();
        let s = task.kv_store::<u32, Vec<u8>>("model").unwrap();
        let got: BTreeMap<u32, Vec<u8>> = s.all().unwrap().map(Result::unwrap).collect();
        if options.logging || backend.persistent() {
            assert_eq!(got, model, "{ctx}: after a restart");
        } else {
            assert!(got.is_empty(), "{ctx}: an in-memory store without changelog starts empty");
        }
        if options.logging {
            let topic = freshet_state::changelog_topic("app", "model");
            let implied = env.changelog_state(&topic);
            let model_bytes: BTreeMap<Bytes, Bytes> = model
                .iter()
                .map(|(k, v)| (Bytes::copy_from_slice(&k.to_be_bytes()), Bytes::copy_from_slice(v)))
                .collect();
            assert_eq!(implied, model_bytes, "{ctx}: the changelog implies the store's state");
        }
        task.close().unwrap();
    });
}

fn window_options(retain_duplicates: bool) -> WindowOptions {
    WindowOptions { retention_ms: 120_000, window_size_ms: 10_000, retain_duplicates }
}

#[test]
fn window_fetches_are_ordered_and_bounded() {
    each_variant(|backend_name, backend, options| {
        let ctx = format!("{backend_name} {options:?}");
        let env = Env::new();
        let mut task = env.task(backend);
        task.add_window_store::<String, u64>("w", window_options(false), options).unwrap();
        let s = task.window_store::<String, u64>("w").unwrap();
        for (k, t, v) in
            [("b", 20_000, 1), ("a", 10_000, 2), ("a\0", 0, 3), ("a", 0, 4), ("ab", 10_000, 5), ("a", 30_000, 6)]
        {
            s.put(&k.to_string(), Some(&v), t).unwrap();
        }
        s.put(&"a".into(), Some(&7), 10_000).unwrap(); // replaces
        task.commit().unwrap();
        let s = task.window_store::<String, u64>("w").unwrap();
        s.put(&"a".into(), Some(&8), 20_000).unwrap();
        s.put(&"b".into(), None, 20_000).unwrap(); // deletes
        assert_eq!(s.fetch(&"a".into(), 10_000).unwrap(), Some(7), "{ctx}");
        assert_eq!(s.fetch(&"b".into(), 20_000).unwrap(), None, "{ctx}");
        let a: Vec<(i64, u64)> = s.fetch_range(&"a".into(), 0, 25_000).unwrap().map(Result::unwrap).collect();
        assert_eq!(a, [(0, 4), (10_000, 7), (20_000, 8)], "{ctx}");
        let all: Vec<(String, i64, i64, u64)> =
            s.fetch_all(0, 20_000).unwrap().map(|r| r.map(|(w, v)| (w.key, w.start, w.end, v)).unwrap()).collect();
        let want: Vec<(String, i64, i64, u64)> = vec![
            ("a".into(), 0, 10_000, 4),
            ("a".into(), 10_000, 20_000, 7),
            ("a".into(), 20_000, 30_000, 8),
            ("a\0".into(), 0, 10_000, 3),
            ("ab".into(), 10_000, 20_000, 5),
        ];
        assert_eq!(all, want, "{ctx}: by key, then window start");
        let range: Vec<(String, i64)> = s
            .fetch_key_range(&"a\0".into(), &"ab".into(), 0, 40_000)
            .unwrap()
            .map(|r| r.map(|(w, _)| (w.key, w.start)).unwrap())
            .collect();
        assert_eq!(range, [("a\0".to_string(), 0), ("ab".to_string(), 10_000)], "{ctx}");
        task.close().unwrap();
    });
}

#[test]
fn window_retention_drops_old_windows_and_segments() {
    each_variant(|backend_name, backend, options| {
        let ctx = format!("{backend_name} {options:?}");
        let env = Env::new();
        let mut task = env.task(backend);
        task.add_window_store::<String, u64>("w", window_options(false), options).unwrap();
        let s = task.window_store::<String, u64>("w").unwrap();
        // Segments are 60 s (half the 120 s retention).
        for t in (0..=240_000).step_by(30_000) {
            s.put(&"k".into(), Some(&(t as u64)), t).unwrap();
        }
        // Stream time is 240 s: windows starting before 120.001 s are gone.
        let starts: Vec<i64> = s.fetch_range(&"k".into(), 0, i64::MAX).unwrap().map(|r| r.unwrap().0).collect();
        assert_eq!(starts, [150_000, 180_000, 210_000, 240_000], "{ctx}");
        assert_eq!(s.fetch(&"k".into(), 90_000).unwrap(), None, "{ctx}");
        s.put(&"k".into(), Some(&1), 60_000).unwrap(); // too old: dropped
        assert_eq!(s.fetch(&"k".into(), 60_000).unwrap(), None, "{ctx}");
        task.commit().unwrap();
        if backend.persistent() {
            let mut segments: Vec<String> = std::fs::read_dir(task.dir().join("rocksdb/w"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            segments.sort();
            // Segment [60 s, 120 s) ends before 120.001 s and is dropped whole; [120 s, 180 s) stays.
            assert_eq!(segments, ["w.120000", "w.180000", "w.240000"], "{ctx}");
        }
        task.close().unwrap();
    });
}

#[test]
fn window_store_keeps_duplicates_when_asked() {
    each_variant(|backend_name, backend, options| {
        let ctx = format!("{backend_name} {options:?}");
        let env = Env::new();
        let mut task = env.task(backend);
        task.add_window_store::<String, u64>("join", window_options(true), options).unwrap();
        let s = task.window_store::<String, u64>("join").unwrap();
        for v in [3, 1, 2] {
            s.put(&"k".into(), Some(&v), 1_000).unwrap();
        }
        s.put(&"k".into(), None, 1_000).unwrap(); // ignored with duplicates
        let got: Vec<u64> = s.fetch_range(&"k".into(), 0, 2_000).unwrap().map(|r| r.unwrap().1).collect();
        assert_eq!(got, [3, 1, 2], "{ctx}: in put order");
        task.close().unwrap();
    });
}

#[test]
fn sessions_are_found_by_overlap_and_merged() {
    each_variant(|backend_name, backend, options| {
        let ctx = format!("{backend_name} {options:?}");
        let env = Env::new();
        let mut task = env.task(backend);
        task.add_session_store::<String, u64>("sessions", 600_000, options).unwrap();
        let s = task.session_store::<String, u64>("sessions").unwrap();
        let gap = 10;
        // Session windowing of events (count per session), as a session aggregation does it.
        for t in [0i64, 5, 30, 18, 24] {
            s.merge(&"u".into(), t, t, gap, 1, |a, b| a + b).unwrap();
            let found: Vec<(Windowed<String>, u64)> =
                s.find_sessions(&"u".into(), t, t).unwrap().map(Result::unwrap).collect();
            assert_eq!(found.len(), 1, "{ctx}: one session covers {t}");
        }
        let sessions: Vec<(i64, i64, u64)> =
            s.fetch(&"u".into()).unwrap().map(|r| r.map(|(w, v)| (w.start, w.end, v)).unwrap()).collect();
        // 0 and 5 merge; 30 and 18 stay apart (12 > gap) until 24 bridges them.
        assert_eq!(sessions, [(0, 5, 2), (18, 30, 3)], "{ctx}");

        let s = task.session_store::<String, u64>("sessions").unwrap();
        let w = |key: &str, start, end| Windowed { key: key.to_string(), start, end };
        s.put(&w("v", 100, 200), &1).unwrap();
        s.put(&w("v", 300, 400), &2).unwrap();
        s.put(&w("v\0", 150, 160), &3).unwrap();
        s.put(&w("w", 150, 160), &4).unwrap();
        task.commit().unwrap();
        let s = task.session_store::<String, u64>("sessions").unwrap();
        let ends = |it: freshet_state::TypedIter<'_, (Windowed<String>, u64)>| {
            it.map(|r| r.map(|(w, v)| (w.key, w.end, v)).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(
            ends(s.find_sessions(&"v".into(), 150, 350).unwrap()),
            [("v".into(), 200, 1), ("v".into(), 400, 2)],
            "{ctx}"
        );
        assert_eq!(ends(s.find_sessions(&"v".into(), 201, 299).unwrap()), vec![], "{ctx}: in the gap");
        assert_eq!(
            ends(s.find_sessions(&"v".into(), 0, 100).unwrap()),
            [("v".into(), 200, 1)],
            "{ctx}: touching the start"
        );
        assert_eq!(
            ends(s.find_sessions_range(&"v".into(), &"w".into(), 155, 155).unwrap()),
            [("v".into(), 200, 1), ("v\0".into(), 160, 3), ("w".into(), 160, 4)],
            "{ctx}"
        );
        assert_eq!(
            ends(s.sessions_ending(160, 200).unwrap()),
            [("v".into(), 200, 1), ("v\0".into(), 160, 3), ("w".into(), 160, 4)],
            "{ctx}: every key's sessions ending in the range"
        );
        assert_eq!(ends(s.sessions_ending(161, 199).unwrap()), vec![], "{ctx}");
        assert_eq!(s.fetch_session(&"v".into(), 300, 400).unwrap(), Some(2), "{ctx}");
        s.remove(&w("v", 300, 400)).unwrap();
        assert_eq!(s.fetch_session(&"v".into(), 300, 400).unwrap(), None, "{ctx}");
        // Stream time moves to 2_000_000: sessions ending before 1_400_001 expire.
        s.put(&w("x", 1_999_000, 2_000_000), &9).unwrap();
        assert_eq!(ends(s.fetch(&"v".into()).unwrap()), vec![], "{ctx}: expired");
        assert_eq!(ends(s.fetch(&"x".into()).unwrap()), [("x".into(), 2_000_000, 9)], "{ctx}");
        task.close().unwrap();
    });
}

#[test]
fn cache_collapses_updates_and_reports_what_it_writes_down() {
    for (backend_name, backend) in backends() {
        let env = Env::new();
        let mut config = env.task_config(&backend);
        config.cache_bytes_per_store = 10_000;
        let mut task = TaskState::open(config).unwrap();
        task.add_kv_store::<String, u64>("cached", StoreOptions { report_evicted: true, ..StoreOptions::default() })
            .unwrap();
        task.add_kv_store::<String, u64>("uncached", StoreOptions::new(true, false)).unwrap();
        for name in ["cached", "uncached"] {
            let s = task.kv_store::<String, u64>(name).unwrap();
            for i in 0..1_000u64 {
                s.put(&"hot".into(), &i).unwrap();
            }
        }
        // 200 distinct keys of ~100 bytes each overflow the 10 kB budget: the oldest leave the cache.
        let s = task.kv_store::<String, u64>("cached").unwrap();
        for i in 0..200u64 {
            s.put(&format!("cold-{i:03}"), &i).unwrap();
        }
        let evicted = s.take_evicted().unwrap();
        assert!(!evicted.is_empty(), "{backend_name}: the cache is over budget");
        assert_eq!(evicted[0].key, "hot", "{backend_name}: least recently used leaves first");
        assert_eq!(evicted[0].value, Some(999), "{backend_name}: with its latest value only");
        let (used, _, _) = s.cache_stats().unwrap();
        assert!(used <= 10_000, "{backend_name}: cache uses {used} bytes of its 10000");
        task.commit().unwrap();
        let s = task.kv_store::<String, u64>("cached").unwrap();
        let flushed = s.take_evicted().unwrap();
        let evicted_keys: Vec<&str> = evicted.iter().map(|e| e.key.as_str()).collect();
        assert!(flushed.iter().all(|e| !evicted_keys.contains(&e.key.as_str())), "{backend_name}");
        assert_eq!(evicted.len() + flushed.len(), 201, "{backend_name}: every key written down once");

        let cached = env.changelog(&freshet_state::changelog_topic("app", "cached"));
        let uncached = env.changelog(&freshet_state::changelog_topic("app", "uncached"));
        assert_eq!(cached.iter().filter(|(k, _)| &k[..] == b"hot").count(), 1, "{backend_name}");
        assert_eq!(uncached.len(), 1_000, "{backend_name}: without a cache every update is logged");
        task.close().unwrap();
    }
}

/// A commit can flush far more than one changelog batch holds (a large cache): it goes out in
/// batches under the topic's `max.message.bytes`.
#[test]
fn a_large_cache_flush_is_logged_in_batches() {
    let env = Env::new();
    let mut config = env.task_config(&freshet_state::Backend::InMemory);
    config.cache_bytes_per_store = 32 << 20;
    let mut task = TaskState::open(config).unwrap();
    task.add_kv_store::<u64, Vec<u8>>("big", StoreOptions::default()).unwrap();
    let s = task.kv_store::<u64, Vec<u8>>("big").unwrap();
    for i in 0..50_000u64 {
        s.put(&i, &vec![7u8; 100]).unwrap();
    }
    task.commit().unwrap();
    let logged = env.changelog(&freshet_state::changelog_topic("app", "big"));
    assert_eq!(logged.len(), 50_000);
    task.close().unwrap();
}
