//! The embedded log from Rust: create a topic, produce keyed records, consume them with a group,
//! and commit. Run with `cargo run --example embedded_log`.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use freshet::prelude::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = Embedded::open(dir.path(), LogConfig::default()).await?;
    log.admin().create_topic(NewTopic { name: "orders".into(), n_partitions: 3, ..Default::default() }).await?;

    let records =
        (0..9).map(|i| ProducerRecord::new("orders", Some(format!("customer-{}", i % 3)), format!("order {i}")));
    for sent in log.producer().send(records.collect()).await? {
        println!("sent to {}-{} at offset {}", sent.topic, sent.partition, sent.offset);
    }

    let mut consumer = log.consumer(ConsumerConfig { group_id: Some("billing".into()), ..Default::default() });
    consumer.assign((0..3).map(|p| TopicPartition::new("orders", p)).collect()).await?;
    for batches in consumer.poll(Duration::from_secs(1)).await? {
        for record in batches.records()? {
            let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
            let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned();
            println!("{} offset {}: {key} => {value}", batches.tp, record.offset);
        }
    }
    consumer.commit_positions().await?;
    log.close().await?;
    Ok(())
}
