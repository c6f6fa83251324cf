//! Compaction keeps the latest record per key, keeps offsets, expires tombstones, and survives a
//! crash at each step of installing its output.

use std::collections::BTreeMap;

use freshet_log::failpoint;
use freshet_log::Log;

use crate::support::{self, batch, configs, read_all, text};

type Model = Vec<(i64, String, Option<String>)>;

fn compact_configs() -> BTreeMap<String, String> {
    configs(&[
        ("cleanup.policy", "compact"),
        ("segment.bytes", "600"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "1000"),
        ("index.interval.bytes", "100"),
    ])
}

/// Writes `n_rounds` rounds over 10 keys, with a tombstone for k3 in the middle; returns the model.
async fn fill(log: &Log, n_rounds: usize) -> Model {
    let mut model = Model::new();
    for round in 0..n_rounds {
        for k in 0..10 {
            let key = format!("k{k}");
            let value = if k == 3 && round == n_rounds / 2 { None } else { Some(format!("r{round}")) };
            let info = log.append("c", 0, batch(&[(Some(&key), value.as_deref(), 1000 + round as i64)])).await.unwrap();
            model.push((info.base_offset, key, value));
        }
    }
    model
}

/// What the log holds must be a subsequence of the model that keeps the latest record of every
/// key (tombstones too, unless `tombstones_may_go`).
fn check_against_model(
    actual: &[(i64, Option<bytes::Bytes>, Option<bytes::Bytes>)],
    model: &Model,
    tombstones_may_go: bool,
) {
    let by_offset: BTreeMap<i64, &(i64, String, Option<String>)> = model.iter().map(|r| (r.0, r)).collect();
    let mut last = -1;
    for (offset, key, value) in actual {
        assert!(*offset > last, "offsets must increase: {offset} after {last}");
        last = *offset;
        let expected = by_offset.get(offset).unwrap_or_else(|| panic!("offset {offset} is not one that was written"));
        assert_eq!(text(key).as_deref(), Some(expected.1.as_str()), "key at {offset}");
        assert_eq!(text(value), expected.2, "value at {offset}");
    }
    let mut latest: BTreeMap<&str, &(i64, String, Option<String>)> = BTreeMap::new();
    for r in model {
        latest.insert(&r.1, r);
    }
    for (key, r) in latest {
        let present = actual.iter().any(|a| a.0 == r.0);
        if r.2.is_none() && tombstones_may_go {
            continue;
        }
        assert!(
            present,
            "the latest record of {key} (offset {}) is missing from {:?}",
            r.0,
            actual.iter().map(|a| a.0).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn compaction_keeps_the_latest_record_of_each_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("c", 1, compact_configs()).await.unwrap();
    let model = fill(&log, 30).await;
    let before = log.describe_partitions("c").unwrap()[0].clone();
    let results = log.run_maintenance(2000).await.unwrap();
    let stats = results.iter().find(|r| r.0 == "c").and_then(|r| r.2.clone()).expect("a compaction pass ran");
    assert!(stats.n_records_removed > 100, "{stats:?}");
    let after = log.describe_partitions("c").unwrap()[0].clone();
    assert!(after.size_bytes < before.size_bytes / 2, "{} -> {} bytes", before.size_bytes, after.size_bytes);
    assert_eq!(after.log_end_offset, 300);
    let actual = read_all(&log, "c", 0).await;
    check_against_model(&actual, &model, false);
    // The tombstone for k3 survives the first pass; later k3 values supersede it anyway.
    // A second pass long after delete.retention.ms changes nothing that matters, and offsets
    // continue where they were.
    log.run_maintenance(10_000_000).await.unwrap();
    check_against_model(&read_all(&log, "c", 0).await, &model, true);
    assert_eq!(log.append("c", 0, batch(&[(Some("k1"), Some("new"), 5000)])).await.unwrap().base_offset, 300);
    let mut model = model;
    model.push((300, "k1".into(), Some("new".into())));
    log.close().await.unwrap();
    drop(log);
    let log = support::open(dir.path()).await;
    check_against_model(&read_all(&log, "c", 0).await, &model, true);
}

#[tokio::test]
async fn tombstones_are_removed_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("c", 1, compact_configs()).await.unwrap();
    let mut model = Model::new();
    for round in 0..10 {
        for k in 0..10 {
            let key = format!("k{k}");
            // k3 ends deleted.
            let value = if k == 3 && round == 9 { None } else { Some(format!("r{round}")) };
            let info = log.append("c", 0, batch(&[(Some(&key), value.as_deref(), 1000)])).await.unwrap();
            model.push((info.base_offset, key, value));
        }
    }
    // Push the tombstone out of the active segment.
    for i in 0..30 {
        let info = log.append("c", 0, batch(&[(Some("filler"), Some(&format!("f{i}")), 1000)])).await.unwrap();
        model.push((info.base_offset, "filler".into(), Some(format!("f{i}"))));
    }
    log.run_maintenance(1500).await.unwrap();
    let actual = read_all(&log, "c", 0).await;
    assert!(
        actual.iter().any(|r| text(&r.1).as_deref() == Some("k3") && r.2.is_none()),
        "tombstone kept within delete.retention.ms"
    );
    // A later pass, after delete.retention.ms, drops it; with k3's older values gone, k3 is gone.
    for i in 30..60 {
        let info = log.append("c", 0, batch(&[(Some("filler"), Some(&format!("f{i}")), 1000)])).await.unwrap();
        model.push((info.base_offset, "filler".into(), Some(format!("f{i}"))));
    }
    log.run_maintenance(1_000_000).await.unwrap();
    let actual = read_all(&log, "c", 0).await;
    assert!(actual.iter().all(|r| text(&r.1).as_deref() != Some("k3")), "k3 should be gone: {actual:?}");
    check_against_model(&actual, &model, true);
}

#[tokio::test]
async fn a_crash_at_any_step_of_installing_compacted_output_loses_nothing() {
    for point in ["cleaner.before_swap", "cleaner.after_swap", "cleaner.mid_install", "cleaner.before_index"] {
        let dir = tempfile::tempdir().unwrap();
        let log = support::open(dir.path()).await;
        log.create_topic("c", 1, compact_configs()).await.unwrap();
        let model = fill(&log, 30).await;
        let pdir = log.partition("c", 0).unwrap().dir().to_owned();
        failpoint::arm(point, &pdir);
        let error = log.run_maintenance(2000).await.unwrap_err();
        assert!(error.to_string().contains(point), "{error}");
        drop(log); // the process "dies" here
        let log = support::open(dir.path()).await;
        let report = log.recovery_reports().into_iter().find(|r| r.topic == "c").unwrap();
        match point {
            "cleaner.before_swap" => assert_eq!(report.n_cleaned_discarded, 1, "{report:?}"),
            // The rewritten segment is in place but has no index yet: it is rebuilt, gaps and all.
            "cleaner.before_index" => assert!(report.n_indexes_rebuilt >= 1, "{report:?}"),
            _ => assert_eq!(report.n_swaps_completed, 1, "{report:?}"),
        }
        let actual = read_all(&log, "c", 0).await;
        check_against_model(&actual, &model, false);
        assert!(std::fs::read_dir(&pdir).unwrap().all(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            !name.ends_with(".cleaned") && !name.ends_with(".swap")
        }));
        // Compaction resumes and finishes.
        log.run_maintenance(2000).await.unwrap();
        check_against_model(&read_all(&log, "c", 0).await, &model, false);
        assert_eq!(
            log.append("c", 0, batch(&[(Some("k"), Some("v"), 1)])).await.unwrap().base_offset,
            300,
            "at {point}"
        );
    }
}

#[tokio::test]
async fn compressed_batches_are_compacted_and_keep_their_codec() {
    use freshet_log::batch::{BatchBuilder, BatchView, Batches, Compression};
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("c", 1, compact_configs()).await.unwrap();
    let codecs = [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd, Compression::None];
    let mut model = Model::new();
    for round in 0..20 {
        let mut b = BatchBuilder::default();
        let mut rows = Vec::new();
        for k in 0..5 {
            let (key, value) = (format!("k{}", (round + k) % 8), format!("r{round}-{k}"));
            b.push(Some(key.as_bytes()), Some(value.as_bytes()), &[], 1000);
            rows.push((key, Some(value)));
        }
        let codec = codecs[round % codecs.len()];
        let info = log.append("c", 0, bytes::BytesMut::from(&b.finish_compressed(codec).unwrap()[..])).await.unwrap();
        for (i, (key, value)) in rows.into_iter().enumerate() {
            model.push((info.base_offset + i as i64, key, value));
        }
    }
    log.run_maintenance(2000).await.unwrap();
    let actual = read_all(&log, "c", 0).await;
    let mut codecs_seen = std::collections::BTreeSet::new();
    let mut offset = 0;
    loop {
        let fetched = log.read("c", 0, offset, 1 << 20).await.unwrap();
        if fetched.batches.is_empty() {
            break;
        }
        for batch in Batches::new(&fetched.batches) {
            let batch: BatchView<'_> = batch.unwrap();
            codecs_seen.insert(format!("{:?}", batch.compression().unwrap()));
            offset = batch.next_offset();
        }
    }
    assert!(actual.len() < model.len(), "nothing was compacted");
    check_against_model(&actual, &model, false);
    assert!(codecs_seen.len() > 2, "rewritten batches keep their codecs: {codecs_seen:?}");
}

#[tokio::test]
async fn max_compaction_lag_forces_a_pass_below_the_dirty_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("c", 1, compact_configs()).await.unwrap();
    let mut model = fill(&log, 30).await;
    log.run_maintenance(2000).await.unwrap();
    // Now some of the log is clean: a ratio of 1.0 can no longer be reached.
    log.alter_topic_config("c", [("min.cleanable.dirty.ratio".to_string(), Some("1.0".to_string()))].into())
        .await
        .unwrap();
    for round in 30..40 {
        for k in 0..10 {
            let key = format!("k{k}");
            let info =
                log.append("c", 0, batch(&[(Some(&key), Some(&format!("r{round}")), 1000 + round)])).await.unwrap();
            model.push((info.base_offset, key, Some(format!("r{round}"))));
        }
    }
    let results = log.run_maintenance(2000).await.unwrap();
    assert!(results.iter().all(|r| r.2.is_none()), "{results:?}");
    log.alter_topic_config("c", [("max.compaction.lag.ms".to_string(), Some("5000".to_string()))].into())
        .await
        .unwrap();
    let results = log.run_maintenance(2000).await.unwrap();
    assert!(results.iter().all(|r| r.2.is_none()), "records are not old enough yet: {results:?}");
    let results = log.run_maintenance(10_000).await.unwrap();
    assert!(results.iter().any(|r| r.0 == "c" && r.2.is_some()), "{results:?}");
    check_against_model(&read_all(&log, "c", 0).await, &model, false);
}

#[tokio::test]
async fn a_rewritten_segment_with_gaps_survives_a_crash_before_its_index_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("c", 1, compact_configs()).await.unwrap();
    // The first segment keeps "a" and "b" with superseded records between them: a gap.
    let mut model = Model::new();
    for key in ["a", "k0", "k1", "k2", "b"] {
        let info = log.append("c", 0, batch(&[(Some(key), Some("first"), 1000)])).await.unwrap();
        model.push((info.base_offset, key.to_string(), Some("first".to_string())));
    }
    model.extend(fill(&log, 30).await);
    let pdir = log.partition("c", 0).unwrap().dir().to_owned();
    failpoint::arm("cleaner.before_index", &pdir);
    let error = log.run_maintenance(2000).await.unwrap_err();
    assert!(error.to_string().contains("cleaner.before_index"), "{error}");
    drop(log);
    let log = support::open(dir.path()).await;
    let actual = read_all(&log, "c", 0).await;
    check_against_model(&actual, &model, false);
    let keys: Vec<_> = actual.iter().map(|r| text(&r.1).unwrap()).collect();
    assert!(keys.contains(&"a".to_string()) && keys.contains(&"b".to_string()), "{keys:?}");
}
