//! Appends, reads, offsets and timestamps through the embedded log.

use std::time::Duration;

use freshet_log::batch::{BatchView, Batches, TimestampType};
use freshet_log::OffsetSpec;

use crate::support::{self, batch, configs, read_all, text, values_batch};

#[tokio::test]
async fn appends_get_consecutive_offsets_and_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("events", 2, Default::default()).await.unwrap();
    let first = log.append("events", 0, values_batch("a", 3, 1000)).await.unwrap();
    let second = log.append("events", 0, values_batch("b", 2, 1001)).await.unwrap();
    assert_eq!((first.base_offset, first.last_offset), (0, 2));
    assert_eq!((second.base_offset, second.last_offset), (3, 4));
    let records = read_all(&log, "events", 0).await;
    let values: Vec<_> = records.iter().map(|(o, _, v)| (*o, text(v).unwrap())).collect();
    assert_eq!(
        values,
        vec![(0, "a-0".into()), (1, "a-1".into()), (2, "a-2".into()), (3, "b-0".into()), (4, "b-1".into())]
    );
    assert!(read_all(&log, "events", 1).await.is_empty());
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_read_starts_with_the_whole_batch_holding_the_offset_and_returns_at_least_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, Default::default()).await.unwrap();
    for i in 0..10 {
        log.append("t", 0, values_batch(&format!("b{i}"), 10, 1000)).await.unwrap();
    }
    // Offset 25 is inside the third batch (20..=29).
    let fetched = log.read("t", 0, 25, 1).await.unwrap();
    let batches: Vec<_> = Batches::new(&fetched.batches).map(Result::unwrap).collect();
    assert_eq!(batches.len(), 1, "a budget of one byte still returns one whole batch");
    assert_eq!((batches[0].base_offset(), batches[0].last_offset()), (20, 29));
    let one_batch = batches[0].size() as u64;
    let fetched = log.read("t", 0, 25, one_batch * 3 + 10).await.unwrap();
    let bases: Vec<_> = Batches::new(&fetched.batches).map(|b| b.unwrap().base_offset()).collect();
    assert_eq!(bases, vec![20, 30, 40], "whole batches within the budget, never a partial one");
    assert_eq!(fetched.high_watermark, 100);
    // At the end: nothing yet. Past the end: out of range.
    assert!(log.read("t", 0, 100, 1 << 20).await.unwrap().batches.is_empty());
    let err = log.read("t", 0, 101, 1 << 20).await.unwrap_err();
    assert_eq!(err.to_string(), "offset 101 is out of range for t-0: the log holds [0, 100)");
}

#[tokio::test]
async fn segments_roll_by_size_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, configs(&[("segment.bytes", "1000"), ("index.interval.bytes", "200")])).await.unwrap();
    for i in 0..100 {
        log.append("t", 0, values_batch(&format!("v{i}"), 3, 1000 + i)).await.unwrap();
    }
    let parts = log.describe_partitions("t").unwrap();
    assert!(parts[0].n_segments > 5, "expected many segments, got {}", parts[0].n_segments);
    let records = read_all(&log, "t", 0).await;
    assert_eq!(records.len(), 300);
    assert!(records.iter().enumerate().all(|(i, (o, _, _))| *o == i as i64));
    // Random access lands on the right batch in every segment.
    for offset in [0, 1, 149, 150, 151, 298, 299] {
        let fetched = log.read("t", 0, offset, 1).await.unwrap();
        let b = BatchView::parse(&fetched.batches).unwrap();
        assert!(b.base_offset() <= offset && offset <= b.last_offset(), "offset {offset} in {b:?}");
    }
    // And after a clean reopen, the indexes are trusted and still right.
    log.close().await.unwrap();
    drop(log);
    let log = support::open(dir.path()).await;
    assert!(log.recovery_reports().iter().all(|r| !r.repaired()), "{:?}", log.recovery_reports());
    assert_eq!(read_all(&log, "t", 0).await.len(), 300);
    let next = log.append("t", 0, values_batch("after", 1, 5000)).await.unwrap();
    assert_eq!(next.base_offset, 300);
}

#[tokio::test]
async fn list_offsets_earliest_latest_and_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, configs(&[("segment.bytes", "1000"), ("index.interval.bytes", "100")])).await.unwrap();
    for i in 0..50i64 {
        // Timestamps 1000, 1010, ... with records inside a batch 1 ms apart.
        log.append("t", 0, batch(&[(None, Some("x"), 1000 + i * 10), (None, Some("y"), 1001 + i * 10)])).await.unwrap();
    }
    assert_eq!(log.list_offset("t", 0, OffsetSpec::Earliest).await.unwrap(), Some((0, -1)));
    assert_eq!(log.list_offset("t", 0, OffsetSpec::Latest).await.unwrap(), Some((100, -1)));
    let check = |t: i64, expected: Option<(i64, i64)>| {
        let log = log.clone();
        async move {
            assert_eq!(log.list_offset("t", 0, OffsetSpec::Timestamp(t)).await.unwrap(), expected, "timestamp {t}")
        }
    };
    check(0, Some((0, 1000))).await;
    check(1000, Some((0, 1000))).await;
    check(1001, Some((1, 1001))).await;
    check(1002, Some((2, 1010))).await;
    check(1245, Some((50, 1250))).await;
    check(1491, Some((99, 1491))).await;
    check(1492, None).await;
}

#[tokio::test]
async fn list_offsets_max_timestamp_finds_the_first_record_with_the_largest_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, configs(&[("segment.bytes", "1000")])).await.unwrap();
    assert_eq!(log.list_offset("t", 0, OffsetSpec::MaxTimestamp).await.unwrap(), None, "an empty partition");
    // Batch i holds offsets 2i and 2i+1 at time 1000 + i, except that the largest time, 9000,
    // is first at offset 41 (batch 20's second record) and again at 60 and 61 (batch 30).
    for i in 0..80i64 {
        let (a, b) = match i {
            20 => (5000, 9000),
            30 => (9000, 9000),
            _ => (1000 + i, 1000 + i),
        };
        log.append("t", 0, batch(&[(None, Some("x"), a), (None, Some("y"), b)])).await.unwrap();
    }
    assert!(log.describe_partitions("t").unwrap()[0].n_segments > 2);
    assert_eq!(log.list_offset("t", 0, OffsetSpec::MaxTimestamp).await.unwrap(), Some((41, 9000)));
    // Records below the log start are not found.
    log.delete_records("t", 0, 45).await.unwrap();
    assert_eq!(log.list_offset("t", 0, OffsetSpec::MaxTimestamp).await.unwrap(), Some((60, 9000)));
    log.delete_records("t", 0, 62).await.unwrap();
    assert_eq!(log.list_offset("t", 0, OffsetSpec::MaxTimestamp).await.unwrap(), Some((158, 1079)));
}

#[tokio::test]
async fn log_append_time_topics_stamp_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, configs(&[("message.timestamp.type", "LogAppendTime")])).await.unwrap();
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let info = log.append("t", 0, values_batch("v", 2, 5)).await.unwrap();
    let stamped = info.log_append_time.expect("append time");
    assert!(stamped >= before);
    let fetched = log.read("t", 0, 0, 1 << 20).await.unwrap();
    let b = BatchView::parse(&fetched.batches).unwrap();
    b.validate().unwrap();
    assert_eq!(b.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(b.max_timestamp(), stamped);
    assert!(b.records().unwrap().all(|r| r.unwrap().timestamp == stamped));
}

#[tokio::test]
async fn fetch_waits_for_data_and_wakes_when_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, Default::default()).await.unwrap();
    let reader = {
        let log = log.clone();
        tokio::spawn(async move { log.fetch("t", 0, 0, 1 << 20, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!reader.is_finished(), "fetch returned before any data existed");
    log.append("t", 0, values_batch("v", 1, 1)).await.unwrap();
    let fetched = tokio::time::timeout(Duration::from_secs(10), reader).await.expect("woken").unwrap().unwrap();
    assert_eq!(Batches::new(&fetched.batches).count(), 1);
    // With no data, it gives up after max_wait.
    let empty = log.fetch("t", 0, 1, 1 << 20, Duration::from_millis(20)).await.unwrap();
    assert!(empty.batches.is_empty());
}

#[tokio::test]
async fn topics_are_created_described_altered_grown_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("a", 3, configs(&[("retention.ms", "1000")])).await.unwrap();
    let d = log.describe_topic("a").unwrap();
    assert_eq!((d.n_partitions, d.overrides.get("retention.ms").map(String::as_str)), (3, Some("1000")));
    let entries = log.describe_configs("a").unwrap();
    let retention = entries.iter().find(|e| e.name == "retention.ms").unwrap();
    assert_eq!((retention.value.as_str(), retention.is_default), ("1000", false));
    log.alter_topic_config(
        "a",
        [("retention.ms".to_string(), None), ("segment.bytes".to_string(), Some("4096".to_string()))].into(),
    )
    .await
    .unwrap();
    let entries = log.describe_configs("a").unwrap();
    assert!(entries.iter().any(|e| e.name == "retention.ms" && e.is_default && e.value == "604800000"));
    assert!(entries.iter().any(|e| e.name == "segment.bytes" && !e.is_default && e.value == "4096"));
    log.create_partitions("a", 5).await.unwrap();
    log.append("a", 4, values_batch("v", 1, 1)).await.unwrap();
    let err = log.create_partitions("a", 2).await.unwrap_err();
    assert!(err.to_string().contains("already has 5 partitions"), "{err}");
    log.close().await.unwrap();
    drop(log);

    let log = support::open(dir.path()).await;
    assert_eq!(log.describe_topic("a").unwrap().n_partitions, 5);
    assert_eq!(read_all(&log, "a", 4).await.len(), 1);
    log.delete_topic("a").await.unwrap();
    assert!(log.list_topics().is_empty());
    assert_eq!(log.describe_topic("a").unwrap_err().to_string(), "unknown topic \"a\"");
    log.create_topic("a", 1, Default::default()).await.unwrap();
    assert!(read_all(&log, "a", 0).await.is_empty(), "a re-created topic starts empty");
}

#[tokio::test]
async fn defaults_set_while_open_apply_at_once_to_topics_without_their_own_value() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("plain", 1, Default::default()).await.unwrap();
    log.create_topic("own", 1, configs(&[("retention.ms", "1000")])).await.unwrap();
    let value = |topic: &str, key: &str| {
        log.describe_configs(topic).unwrap().into_iter().find(|e| e.name == key).map(|e| (e.value, e.is_default))
    };
    log.set_dynamic_topic_defaults(configs(&[("retention.ms", "3600000"), ("cleanup.policy", "compact")]))
        .await
        .unwrap();
    assert_eq!(value("plain", "retention.ms"), Some(("3600000".into(), true)));
    assert_eq!(value("plain", "cleanup.policy"), Some(("compact".into(), true)));
    assert_eq!(value("own", "retention.ms"), Some(("1000".into(), false)), "its own value stays");
    log.create_topic("later", 1, Default::default()).await.unwrap();
    assert_eq!(value("later", "retention.ms"), Some(("3600000".into(), true)));
    // A bad value is refused and nothing changes.
    let err = log.set_dynamic_topic_defaults(configs(&[("segment.bytes", "12")])).await.unwrap_err();
    assert!(err.to_string().contains("segment.bytes"), "{err}");
    assert_eq!(value("plain", "retention.ms"), Some(("3600000".into(), true)));
    // Removed: Kafka's default again.
    log.set_dynamic_topic_defaults(Default::default()).await.unwrap();
    assert_eq!(value("plain", "retention.ms"), Some(("604800000".into(), true)));
    assert_eq!(value("plain", "cleanup.policy"), Some(("delete".into(), true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_appenders_are_all_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 2, configs(&[("segment.bytes", "20000")])).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for appender in 0..8u32 {
        let log = log.clone();
        tasks.spawn(async move {
            let mut in_flight = tokio::task::JoinSet::new();
            for i in 0..400 {
                let log = log.clone();
                let batch = values_batch(&format!("a{appender}-{i}"), 1 + i % 3, 1);
                in_flight.spawn(async move { log.append("t", appender % 2, batch).await.unwrap() });
                if in_flight.len() > 16 {
                    in_flight.join_next().await.unwrap().unwrap();
                }
            }
            while in_flight.join_next().await.is_some() {}
        });
    }
    // A lost wake-up between appenders and flushers would hang here.
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await
    .expect("every append is acknowledged");
    let n: usize = (0..2).map(|p| log.partition("t", p).unwrap().offsets().2 as usize).sum();
    assert_eq!(n, 8 * (0..400).map(|i| 1 + i % 3).sum::<usize>());
    // Group commit: with this many appends in flight, one fsync covers many batches.
    let stats = log.stats();
    assert_eq!(stats.batches_appended, 8 * 400);
    assert!(stats.fsyncs * 2 < stats.batches_appended, "no group commit: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_appends_from_one_caller_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, Default::default()).await.unwrap();
    // Appends take their place in the partition's queue when first polled, as a connection's
    // requests would: poll each once, in order, then wait for all of them.
    let mut appends: Vec<_> =
        (0..200).map(|i| Box::pin(log.append("t", 0, values_batch(&format!("p{i}"), 2, 1)))).collect();
    let mut first_poll = Vec::new();
    for append in &mut appends {
        // Rarely, the writer and the flusher finish one before its first poll returns.
        first_poll.push(match futures::poll!(append.as_mut()) {
            std::task::Poll::Ready(info) => Some(info),
            std::task::Poll::Pending => None,
        });
    }
    for (i, (append, ready)) in appends.into_iter().zip(first_poll).enumerate() {
        let info = match ready {
            Some(info) => info,
            None => append.await,
        };
        assert_eq!(info.unwrap().base_offset, 2 * i as i64, "append {i} overtook another");
    }
}

#[tokio::test]
async fn every_durability_mode_acknowledges_appends_and_keeps_them_across_a_restart() {
    use freshet_log::config::Durability;
    for durability in [Durability::Fsync, Durability::Interval { flush_interval_ms: 20 }, Durability::OsCache] {
        let dir = tempfile::tempdir().unwrap();
        let open = || freshet_log::Log::open(dir.path(), support::config(durability));
        let log = open().await.unwrap();
        log.create_topic("t", 1, configs(&[("segment.bytes", "2000")])).await.unwrap();
        for i in 0..50 {
            log.append("t", 0, values_batch(&format!("v{i}"), 2, 1)).await.unwrap();
        }
        // Acknowledged appends are visible at once, whatever the mode.
        assert_eq!(log.partition("t", 0).unwrap().offsets(), (0, 100, 100), "{durability:?}");
        let partition = log.partition("t", 0).unwrap();
        match durability {
            Durability::Fsync => assert_eq!(partition.durable_offset(), 100, "acknowledged means synced"),
            Durability::Interval { .. } => {
                // The interval flusher syncs without being asked.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while partition.durable_offset() < 100 {
                    assert!(std::time::Instant::now() < deadline, "the interval flusher never synced");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Durability::OsCache => {}
        }
        drop(log); // no clean close
        let log = open().await.unwrap();
        assert_eq!(read_all(&log, "t", 0).await.len(), 100, "{durability:?}");
    }
}

#[tokio::test]
async fn a_partition_directory_left_by_an_interrupted_grow_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, Default::default()).await.unwrap();
    log.close().await.unwrap();
    drop(log);
    // As if `create_partitions` had made partition 1's files and died before updating topic.json.
    let orphan = dir.path().join("topics/t/1");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join(format!("{:020}.log", 0)), b"leftover").unwrap();
    let log = support::open(dir.path()).await;
    assert_eq!(log.describe_topic("t").unwrap().n_partitions, 1);
    log.create_partitions("t", 2).await.unwrap();
    assert_eq!(log.append("t", 1, values_batch("v", 1, 1)).await.unwrap().base_offset, 0);
    assert_eq!(read_all(&log, "t", 1).await.len(), 1);
}

/// A topic whose `compression.type` names a codec stores every batch with it, as Kafka's broker
/// does: the same records, offsets and producer fields, compressed anew; `producer` keeps each
/// batch as it came; an unknown codec is refused, naming the choices.
#[tokio::test]
async fn a_topic_compression_type_recompresses_batches_on_append() {
    use freshet_log::batch::{BatchBuilder, Compression};
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("z", 1, configs(&[("compression.type", "zstd")])).await.unwrap();
    log.create_topic("plain", 1, configs(&[("compression.type", "uncompressed")])).await.unwrap();
    log.create_topic("as-produced", 1, Default::default()).await.unwrap();
    let produced = |codec: Compression, seq: i32| {
        let mut b = BatchBuilder::default().producer(7, 0, seq);
        for i in 0..20 {
            b.push(
                Some(format!("k{i}").as_bytes()),
                Some(format!("value {i} {}", "x".repeat(50)).as_bytes()),
                &[],
                1_000 + i,
            );
        }
        bytes::BytesMut::from(&b.finish_compressed(codec).unwrap()[..])
    };
    for (topic, sent, stored) in [
        ("z", Compression::Gzip, Compression::Zstd),
        ("z", Compression::None, Compression::Zstd),
        ("plain", Compression::Lz4, Compression::None),
        ("as-produced", Compression::Snappy, Compression::Snappy),
    ] {
        let end = log.partition(topic, 0).unwrap().offsets().2;
        let seq = end as i32;
        let info = log.append(topic, 0, produced(sent, seq)).await.unwrap();
        assert_eq!((info.base_offset, info.last_offset), (end, end + 19), "{topic}");
        let fetched = log.read(topic, 0, end, 1 << 20).await.unwrap();
        let batch = Batches::new(&fetched.batches).next().unwrap().unwrap();
        batch.check_crc().unwrap();
        assert_eq!(batch.compression().unwrap(), stored, "{topic}: sent {sent:?}");
        assert_eq!((batch.producer_id(), batch.base_sequence(), batch.record_count()), (7, seq, 20), "{topic}");
        let mut values = Vec::new();
        batch
            .for_each_record(|r| {
                values.push(String::from_utf8_lossy(r.value.unwrap()).into_owned());
                Ok(())
            })
            .unwrap();
        assert_eq!(values[19], format!("value 19 {}", "x".repeat(50)), "{topic}");
    }
    // A retry of a recompressed idempotent batch is still recognized as one.
    let retried = log.append("z", 0, produced(Compression::Gzip, 0)).await.unwrap();
    assert_eq!(retried.base_offset, 0);
    let err = log.create_topic("bad", 1, configs(&[("compression.type", "brotli")])).await.unwrap_err();
    assert!(err.to_string().contains("producer, uncompressed, gzip, snappy, lz4 or zstd"), "{err}");
    log.close().await.unwrap();
}

/// A topic's `flush.messages` and `flush.ms` fsync its partitions on a log that does not
/// acknowledge after fsync: `flush.messages=1` acknowledges each append only once it is synced
/// (and readers see it then), `flush.messages=N` syncs once N records wait, `flush.ms` once a
/// record has waited that long. Topics without them keep the log's durability.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_flush_settings_fsync_on_a_page_cache_log() {
    use freshet_log::config::Durability;
    let dir = tempfile::tempdir().unwrap();
    let log = freshet_log::Log::open(dir.path(), support::config(Durability::OsCache)).await.unwrap();
    log.create_topic("every", 1, configs(&[("flush.messages", "1")])).await.unwrap();
    log.create_topic("tens", 1, configs(&[("flush.messages", "10")])).await.unwrap();
    log.create_topic("timed", 1, configs(&[("flush.ms", "200")])).await.unwrap();
    log.create_topic("cached", 1, Default::default()).await.unwrap();
    let durable = |topic: &str| log.partition(topic, 0).unwrap().durable_offset();
    for i in 0..3 {
        let info = log.append("every", 0, values_batch("e", 2, 1_000)).await.unwrap();
        assert_eq!(info.last_offset, 2 * i + 1);
        assert_eq!(durable("every"), 2 * i + 2, "acknowledged after its fsync");
        assert_eq!(log.partition("every", 0).unwrap().offsets().1, 2 * i + 2, "readers see it once synced");
    }
    log.append("tens", 0, values_batch("t", 4, 1_000)).await.unwrap();
    log.append("timed", 0, values_batch("m", 1, 1_000)).await.unwrap();
    log.append("cached", 0, values_batch("c", 20, 1_000)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!((durable("tens"), durable("timed"), durable("cached")), (0, 0, 0), "nothing calls for a sync yet");
    log.append("tens", 0, values_batch("t", 6, 1_000)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while (durable("tens"), durable("timed")) != (10, 1) {
        assert!(tokio::time::Instant::now() < deadline, "tens {} timed {}", durable("tens"), durable("timed"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(durable("cached"), 0, "the log's own durability: synced when segments roll or it closes");
    // A bad value is refused, naming the key.
    let err = log.create_topic("bad", 1, configs(&[("flush.messages", "0")])).await.unwrap_err();
    assert!(err.to_string().contains("flush.messages"), "{err}");
    log.close().await.unwrap();
}
