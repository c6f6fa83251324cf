//! The embedded substrate: producer, consumer with group offsets, admin.

use std::collections::BTreeMap;
use std::time::Duration;

use freshet_core::config::LogConfig;
use freshet_core::partitioner::partition_for_key;
use freshet_core::OffsetSpec;
use freshet_core::{
    Admin, AutoOffsetReset, Consumer, ConsumerConfig, Embedded, NewTopic, OffsetAndMetadata, Producer, ProducerRecord,
    TopicPartition,
};

async fn open(dir: &std::path::Path) -> Embedded {
    let config = LogConfig {
        offsets_topic_partitions: 3,
        // Maintenance (retention, compaction) is not what these tests look at.
        maintenance_interval: Duration::from_secs(3600),
        ..LogConfig::default()
    };
    Embedded::open(dir, config).await.unwrap()
}

/// The values of every record polled, as text.
fn values_of(batches: &[freshet_core::ConsumedBatches]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| b.records().unwrap())
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

fn group_config(group: &str) -> ConsumerConfig {
    ConsumerConfig { group_id: Some(group.into()), ..ConsumerConfig::default() }
}

#[tokio::test]
async fn keyed_records_land_where_kafka_would_put_them_and_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = open(dir.path()).await;
    let admin = embedded.admin();
    admin.create_topic(NewTopic { name: "orders".into(), n_partitions: 4, ..Default::default() }).await.unwrap();
    let producer = embedded.producer();
    let records: Vec<_> = (0..40)
        .map(|i| ProducerRecord::new("orders", Some(format!("customer-{}", i % 5)), format!("order-{i}")))
        .collect();
    let sent = producer.send(records.clone()).await.unwrap();
    for (record, meta) in records.iter().zip(&sent) {
        assert_eq!(meta.partition, partition_for_key(record.key.as_ref().unwrap(), 4));
    }
    // Per key, offsets increase in send order.
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for (record, meta) in records.iter().zip(&sent) {
        let key = String::from_utf8(record.key.clone().unwrap().to_vec()).unwrap();
        let previous = last.insert(key, meta.offset).unwrap_or(-1);
        assert!(meta.offset > previous);
    }
    let e = producer.send(vec![ProducerRecord { partition: Some(9), ..records[0].clone() }]).await.unwrap_err();
    assert_eq!(e.to_string(), "topic \"orders\" has 4 partitions, but partition 9 was requested");
}

#[tokio::test]
async fn a_consumer_resumes_from_its_group_offsets_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("events", 0);
    {
        let embedded = open(dir.path()).await;
        embedded
            .admin()
            .create_topic(NewTopic { name: "events".into(), n_partitions: 1, ..Default::default() })
            .await
            .unwrap();
        let producer = embedded.producer();
        producer
            .send((0..10).map(|i| ProducerRecord::new("events", None::<String>, format!("e{i}"))).collect())
            .await
            .unwrap();
        let mut consumer = embedded.consumer(group_config("g1"));
        consumer.assign(vec![tp.clone()]).await.unwrap();
        let batches = consumer.poll(Duration::from_secs(5)).await.unwrap();
        let values: Vec<_> = batches.iter().flat_map(|b| b.records().unwrap()).map(|r| r.value.unwrap()).collect();
        assert_eq!(values.len(), 10);
        assert_eq!(consumer.position(&tp), Some(10));
        // Commit only up to 6, with metadata.
        let offset = OffsetAndMetadata { metadata: "checkpoint-a".into(), ..OffsetAndMetadata::new(6) };
        consumer.commit([(tp.clone(), offset)].into()).await.unwrap();
        embedded.close().await.unwrap();
    }
    let embedded = open(dir.path()).await;
    let mut consumer = embedded.consumer(group_config("g1"));
    consumer.assign(vec![tp.clone()]).await.unwrap();
    assert_eq!(consumer.position(&tp), Some(6));
    let committed = consumer.committed(std::slice::from_ref(&tp)).await.unwrap();
    assert_eq!(committed[&tp].metadata, "checkpoint-a");
    let batches = consumer.poll(Duration::from_secs(5)).await.unwrap();
    let values = values_of(&batches);
    assert_eq!(values, vec!["e6", "e7", "e8", "e9"]);
    // Another group starts from the beginning; a group-less consumer cannot commit.
    let mut other = embedded.consumer(group_config("g2"));
    other.assign(vec![tp.clone()]).await.unwrap();
    assert_eq!(other.position(&tp), Some(0));
    let mut loner = embedded.consumer(ConsumerConfig::default());
    loner.assign(vec![tp.clone()]).await.unwrap();
    assert!(loner.commit_positions().await.unwrap_err().to_string().contains("no group"));
    let admin = embedded.admin();
    assert_eq!(admin.list_groups().await.unwrap(), vec!["g1".to_string()]);
    assert_eq!(admin.group_offsets("g1").await.unwrap()[&tp].offset, 6);
}

#[tokio::test]
async fn poll_waits_for_data_on_any_assigned_partition() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = open(dir.path()).await;
    embedded.admin().create_topic(NewTopic { name: "t".into(), n_partitions: 3, ..Default::default() }).await.unwrap();
    let mut consumer =
        embedded.consumer(ConsumerConfig { auto_offset_reset: AutoOffsetReset::Latest, ..Default::default() });
    consumer.assign((0..3).map(|p| TopicPartition::new("t", p)).collect()).await.unwrap();
    let producer = embedded.producer();
    let poller = tokio::spawn(async move {
        let batches = consumer.poll(Duration::from_secs(30)).await.unwrap();
        batches.into_iter().map(|b| (b.tp.partition, b.records().unwrap().len())).collect::<Vec<_>>()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!poller.is_finished());
    let mut record = ProducerRecord::new("t", None::<String>, "hello");
    record.partition = Some(2);
    producer.send(vec![record]).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), poller).await.unwrap().unwrap();
    assert_eq!(got, vec![(2, 1)]);
}

#[tokio::test]
async fn admin_describes_and_changes_topics() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = open(dir.path()).await;
    let admin = embedded.admin();
    let configs = [("retention.ms".to_string(), "60000".to_string())].into();
    admin.create_topic(NewTopic { name: "a".into(), n_partitions: 2, configs }).await.unwrap();
    let topics: Vec<String> =
        admin.list_topics().await.unwrap().into_iter().filter(|t| !t.internal).map(|t| t.name).collect();
    assert_eq!(topics, vec!["a"]);
    let (description, partitions) = admin.describe_topic("a").await.unwrap();
    assert_eq!((description.n_partitions, partitions.len()), (2, 2));
    admin.create_partitions("a", 3).await.unwrap();
    admin.alter_configs("a", [("retention.ms".to_string(), Some("1000".to_string()))].into()).await.unwrap();
    let entries = admin.describe_configs("a").await.unwrap();
    assert!(entries.iter().any(|e| e.name == "retention.ms" && e.value == "1000"));
    let tp = TopicPartition::new("a", 2);
    embedded
        .producer()
        .send(vec![ProducerRecord { partition: Some(2), ..ProducerRecord::new("a", None::<String>, "x") }])
        .await
        .unwrap();
    assert_eq!(admin.list_offset(&tp, OffsetSpec::Latest).await.unwrap(), Some((1, -1)));
    assert_eq!(admin.delete_records(&tp, 1).await.unwrap(), 1);
    let mut consumer = embedded.consumer(group_config("g"));
    consumer.assign(vec![tp.clone()]).await.unwrap();
    consumer.commit_positions().await.unwrap();
    admin.delete_topic("a").await.unwrap();
    assert!(admin.describe_topic("a").await.is_err());
    assert!(admin.group_offsets("g").await.unwrap().is_empty(), "a deleted topic's committed offsets go with it");
}

#[tokio::test]
async fn consumers_read_compressed_batches_as_records() {
    use freshet_core::batch::{BatchBuilder, Compression};
    let dir = tempfile::tempdir().unwrap();
    let embedded = open(dir.path()).await;
    embedded.admin().create_topic(NewTopic { name: "z".into(), n_partitions: 1, ..Default::default() }).await.unwrap();
    for (i, codec) in
        [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd].into_iter().enumerate()
    {
        let mut b = BatchBuilder::default();
        b.push(Some(b"key"), Some(format!("value-{i}").as_bytes()), &[], 1000);
        embedded.log().append("z", 0, bytes::BytesMut::from(&b.finish_compressed(codec).unwrap()[..])).await.unwrap();
    }
    let mut consumer = embedded.consumer(ConsumerConfig::default());
    let tp = TopicPartition::new("z", 0);
    consumer.assign(vec![tp.clone()]).await.unwrap();
    consumer.seek_to_offset(&tp, 2).unwrap();
    let batches = consumer.poll(Duration::from_secs(5)).await.unwrap();
    let values = values_of(&batches);
    assert_eq!(values, vec!["value-2", "value-3"]);
}

#[tokio::test]
async fn a_position_outside_the_log_is_reset_as_auto_offset_reset_says() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = open(dir.path()).await;
    embedded.admin().create_topic(NewTopic { name: "r".into(), n_partitions: 1, ..Default::default() }).await.unwrap();
    let producer = embedded.producer();
    producer.send((0..10).map(|i| ProducerRecord::new("r", None::<String>, format!("v{i}"))).collect()).await.unwrap();
    let tp = TopicPartition::new("r", 0);
    let mut consumer = embedded.consumer(ConsumerConfig::default());
    consumer.assign(vec![tp.clone()]).await.unwrap();
    // Past the end, and below the start after records were deleted: both restart at the log start.
    consumer.seek_to_offset(&tp, 500).unwrap();
    let mut first = None;
    while first.is_none() {
        let batches = consumer.poll(Duration::from_millis(200)).await.unwrap();
        first = batches.iter().flat_map(|b| b.records().unwrap()).map(|r| r.offset).next();
    }
    assert_eq!(first, Some(0), "a position past the end restarts at the log start");
    embedded.admin().delete_records(&tp, 4).await.unwrap();
    consumer.seek_to_offset(&tp, 1).unwrap();
    let mut offsets = Vec::new();
    while offsets.len() < 6 {
        let batches = consumer.poll(Duration::from_millis(200)).await.unwrap();
        offsets.extend(batches.iter().flat_map(|b| b.records().unwrap()).map(|r| r.offset));
        assert!(offsets.len() <= 6);
        if batches.is_empty() && consumer.position(&tp) == Some(10) {
            break;
        }
    }
    assert_eq!(offsets, (4..10).collect::<Vec<i64>>());
    assert_eq!(consumer.position(&tp), Some(10));
}

/// A send larger than `max.message.bytes` goes out as several batches, in the order given.
#[tokio::test]
async fn a_large_send_is_split_into_batches_that_keep_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = open(dir.path()).await;
    embedded
        .admin()
        .create_topic(NewTopic { name: "big".into(), n_partitions: 1, ..Default::default() })
        .await
        .unwrap();
    // 5000 records of 1 KiB: about 5 MB, five times the default max.message.bytes.
    let records: Vec<_> =
        (0..5_000).map(|i| ProducerRecord::new("big", None::<String>, format!("{i:05}{}", "x".repeat(1019)))).collect();
    let sent = embedded.producer().send(records).await.unwrap();
    let offsets: Vec<i64> = sent.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (0..5_000).collect::<Vec<i64>>());
    let fetched = embedded.log().read("big", 0, 0, u64::MAX).await.unwrap();
    let batches: Vec<_> = freshet_core::batch::Batches::new(&fetched.batches).map(Result::unwrap).collect();
    assert!(batches.len() >= 5, "{} batches", batches.len());
    assert!(batches.iter().all(|b| b.size() <= 1_048_588));
    let mut consumer = embedded.consumer(ConsumerConfig::default());
    let tp = TopicPartition::new("big", 0);
    consumer.assign(vec![tp.clone()]).await.unwrap();
    let mut values = Vec::new();
    while values.len() < 5_000 {
        values.extend(values_of(&consumer.poll(Duration::from_secs(1)).await.unwrap()));
    }
    assert!(values.iter().enumerate().all(|(i, v)| v.starts_with(&format!("{i:05}"))));
}

/// Sends only through `send`: exercises the default `send_to_partition`.
struct RecordsOnly(freshet_core::EmbeddedProducer);

#[async_trait::async_trait]
impl Producer for RecordsOnly {
    async fn send(&self, records: Vec<ProducerRecord>) -> freshet_core::Result<Vec<freshet_core::RecordMetadata>> {
        self.0.send(records).await
    }
}

/// Keyed records to one partition, through the embedded log's batch path and through the default
/// (records) path alike: in order, tombstones kept, offsets of the first and last returned, large
/// sends split under max.message.bytes, a bad partition refused.
#[tokio::test]
async fn send_to_partition_keeps_order_and_tombstones_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = open(dir.path()).await;
    embedded.admin().create_topic(NewTopic { name: "kv".into(), n_partitions: 2, ..Default::default() }).await.unwrap();
    let tp = TopicPartition::new("kv", 1);
    let records: Vec<(bytes::Bytes, Option<bytes::Bytes>)> = (0..3_000u32)
        .map(|i| {
            let value = (i % 7 != 0).then(|| bytes::Bytes::from(format!("{i:05}{}", "v".repeat(995))));
            (bytes::Bytes::from(format!("k{i}")), value)
        })
        .collect();
    let fast = embedded.producer();
    let slow = RecordsOnly(embedded.producer());
    assert_eq!(fast.send_to_partition(&tp, &records, 42).await.unwrap(), Some((0, 2_999)));
    assert_eq!(slow.send_to_partition(&tp, &records, 42).await.unwrap(), Some((3_000, 5_999)));
    assert_eq!(fast.send_to_partition(&tp, &[], 42).await.unwrap(), None);
    let fetched = embedded.log().read("kv", 1, 0, u64::MAX).await.unwrap();
    let batches: Vec<_> = freshet_core::batch::Batches::new(&fetched.batches).map(Result::unwrap).collect();
    assert!(batches.len() >= 6, "{} batches", batches.len());
    assert!(batches.iter().all(|b| b.size() <= 1_048_588));

    let mut consumer = embedded.consumer(ConsumerConfig::default());
    consumer.assign(vec![tp.clone()]).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 6_000 {
        for batches in consumer.poll(Duration::from_secs(1)).await.unwrap() {
            for r in batches.records().unwrap() {
                assert_eq!(r.timestamp, 42);
                seen.push((r.key.unwrap().to_vec(), r.value.map(|v| v.to_vec())));
            }
        }
    }
    for (i, (key, value)) in seen.iter().enumerate() {
        let (k, v) = &records[i % 3_000];
        assert_eq!((&key[..], value.as_deref()), (&k[..], v.as_deref()), "record {i}");
    }

    let bad = TopicPartition::new("kv", 2);
    let err = fast.send_to_partition(&bad, &records[..1], 42).await.unwrap_err();
    assert!(err.to_string().contains("partition"), "{err}");
    assert!(slow.send_to_partition(&bad, &records[..1], 42).await.is_err());
}

/// The substrate contract, the suite every implementation runs, on the embedded log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_log_keeps_the_substrate_contract() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = open(dir.path()).await;
    freshet_core::testing::all(&embedded, "contract").await;
    embedded.close().await.unwrap();
}

#[tokio::test]
async fn a_subscriber_gets_partitions_of_topics_created_or_grown_after_it_subscribed() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = open(dir.path()).await;
    let mut consumer = embedded.consumer(group_config("late"));
    consumer.subscribe(vec!["later".into()]).await.unwrap();
    assert!(values_of(&consumer.poll(Duration::from_millis(200)).await.unwrap()).is_empty());
    assert!(consumer.assignment().is_empty());

    // As a Kafka consumer's leader does when its metadata changes: the group deals the new
    // partitions out.
    let admin = embedded.admin();
    admin.create_topic(NewTopic { name: "later".into(), n_partitions: 1, ..Default::default() }).await.unwrap();
    embedded.producer().send(vec![ProducerRecord::new("later", None::<&str>, "first")]).await.unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the new topic was never assigned");
        seen = values_of(&consumer.poll(Duration::from_millis(100)).await.unwrap());
    }
    assert_eq!(seen, ["first"]);

    admin.create_partitions("later", 2).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while consumer.assignment().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the new partition was never assigned");
        consumer.poll(Duration::from_millis(100)).await.unwrap();
    }
    embedded.close().await.unwrap();
}
