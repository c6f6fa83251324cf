//! Retention by time and size, and explicit deletion of records.

use freshet_log::OffsetSpec;

use crate::support::{self, configs, read_all, values_batch};

const DAY_MS: i64 = 86_400_000;

#[tokio::test]
async fn retention_by_bytes_deletes_whole_oldest_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic(
        "t",
        1,
        configs(&[("segment.bytes", "1000"), ("retention.bytes", "3000"), ("retention.ms", "-1")]),
    )
    .await
    .unwrap();
    for i in 0..100 {
        log.append("t", 0, values_batch(&format!("v{i}"), 2, 1000)).await.unwrap();
    }
    let before = log.describe_partitions("t").unwrap()[0].clone();
    log.run_maintenance(i64::MAX / 2).await.unwrap();
    let after = log.describe_partitions("t").unwrap()[0].clone();
    assert!(after.size_bytes <= 3000 + 1000, "size {} after retention", after.size_bytes);
    assert!(after.size_bytes >= 3000 - 1000, "retention deleted too much: {} bytes left", after.size_bytes);
    assert!(after.n_segments < before.n_segments);
    assert_eq!(after.log_end_offset, before.log_end_offset, "retention never touches the end");
    let records = read_all(&log, "t", 0).await;
    assert_eq!(records.first().unwrap().0, after.log_start_offset, "reading starts at the new log start offset");
    assert_eq!(records.last().unwrap().0, 199);
    let e = log.read("t", 0, 0, 100).await.unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    assert_eq!(log.list_offset("t", 0, OffsetSpec::Earliest).await.unwrap().unwrap().0, after.log_start_offset);
}

#[tokio::test]
async fn retention_by_time_deletes_expired_segments_including_an_expired_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, configs(&[("segment.bytes", "1000"), ("retention.ms", &DAY_MS.to_string())]))
        .await
        .unwrap();
    let now = 100 * DAY_MS;
    // Old records (three days old), then fresh ones.
    for i in 0..30 {
        log.append("t", 0, values_batch(&format!("old{i}"), 2, now - 3 * DAY_MS)).await.unwrap();
    }
    for i in 0..30 {
        log.append("t", 0, values_batch(&format!("new{i}"), 2, now - 1000)).await.unwrap();
    }
    log.run_maintenance(now).await.unwrap();
    let records = read_all(&log, "t", 0).await;
    assert!(records.iter().all(|(_, _, v)| !v.as_ref().unwrap().starts_with(b"old") || records.len() < 120));
    let first_new = records.iter().position(|(_, _, v)| v.as_ref().unwrap().starts_with(b"new")).unwrap();
    assert!(first_new < 20, "at most one partly-old segment remains, found {first_new} old records");
    assert_eq!(records.last().unwrap().0, 119);

    // Everything expired: the active segment is rolled, then deleted.
    log.run_maintenance(now + 10 * DAY_MS).await.unwrap();
    log.append("t", 0, values_batch("x", 1, now + 10 * DAY_MS)).await.unwrap();
    log.run_maintenance(now + 10 * DAY_MS).await.unwrap();
    let records = read_all(&log, "t", 0).await;
    assert_eq!(records.iter().map(|r| r.0).collect::<Vec<_>>(), vec![120], "only the fresh record is left");
    // Offsets keep counting after retention emptied the log.
    assert_eq!(log.append("t", 0, values_batch("y", 1, now + 10 * DAY_MS)).await.unwrap().base_offset, 121);
}

#[tokio::test]
async fn delete_records_moves_the_log_start_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, configs(&[("segment.bytes", "500")])).await.unwrap();
    for i in 0..50 {
        log.append("t", 0, values_batch(&format!("v{i}"), 2, 1000)).await.unwrap();
    }
    assert_eq!(log.delete_records("t", 0, 37).await.unwrap(), 37);
    let e = log.delete_records("t", 0, 1000).await.unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    let records = read_all(&log, "t", 0).await;
    assert_eq!(records.first().unwrap().0, 37, "the batch holding 36 and 37 is returned, but 36 is not visible");
    assert!(log.describe_partitions("t").unwrap()[0].n_segments < 15);
    drop(log); // no clean close: the checkpoint alone must carry the log start offset
    let log = support::open(dir.path()).await;
    assert_eq!(log.list_offset("t", 0, OffsetSpec::Earliest).await.unwrap().unwrap().0, 37);
    assert_eq!(read_all(&log, "t", 0).await.len(), 100 - 37);
    assert_eq!(log.delete_records("t", 0, -1).await.unwrap(), 100, "-1 deletes up to the high watermark");
    assert!(read_all(&log, "t", 0).await.is_empty());
}
