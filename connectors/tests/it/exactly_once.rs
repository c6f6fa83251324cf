//! Exactly-once sources: records and their offsets committed together, and a second task with
//! the same transactional id fencing the first (a zombie), so the log's committed records hold
//! every line once.

use std::sync::Arc;
use std::time::Duration;

use freshet_core::{ConsumerConfig, Isolation, OffsetSpec, Substrate, TopicPartition};
use serde_json::json;

use crate::support::*;

/// The committed values of partition 0 of `topic`, read to its end.
async fn committed_values(substrate: &dyn Substrate, topic: &str) -> Vec<String> {
    let mut consumer = substrate
        .consumer(ConsumerConfig { isolation: Isolation::ReadCommitted, ..ConsumerConfig::default() })
        .unwrap();
    let tp = TopicPartition::new(topic, 0);
    consumer.assign(vec![tp.clone()]).await.unwrap();
    consumer.seek(&tp, OffsetSpec::Earliest).await.unwrap();
    let mut out = Vec::new();
    for _ in 0..20 {
        for batch in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            out.extend(
                batch.records().unwrap().into_iter().map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap()),
            );
        }
        if consumer.reached_end(&tp) {
            break;
        }
    }
    out
}

fn numbered(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("event {i}")).collect()
}

const WORKER: &[(&str, &str)] = &[
    ("exactly.once.source.support", "enabled"),
    ("group.id", "eos"),
    ("key.converter", "StringConverter"),
    ("value.converter", "StringConverter"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_offsets_commit_together_and_a_zombie_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    append(&input, numbered(0, 100));
    let log = log(dir.path()).await;
    let substrate: Arc<dyn Substrate> = Arc::new(log.clone());
    let config = json!({"connector.class": "FileStreamSource", "file": input.to_str().unwrap(), "topic": "events",
        "batch.size": "10", "errors.task.restart.max": "0"});

    let first = Running::start(substrate.clone(), WORKER).await;
    assert_eq!(first.rest.call("PUT", "/connectors/src/config", Some(config.clone())).await.0, 201);
    let size = std::fs::metadata(&input).unwrap().len();
    wait_for(&first.rest, "/connectors/src/offsets", |o| o["offsets"][0]["offset"]["position"] == json!(size)).await;
    assert_eq!(committed_values(&*substrate, "events").await, numbered(0, 100));

    // A second worker starts the same connector (as after a network partition): its task takes
    // the transactional id, which fences the first task; that one fails at its next transaction.
    let second = Running::start(substrate.clone(), WORKER).await;
    assert_eq!(second.rest.call("PUT", "/connectors/src/config", Some(config)).await.0, 201);
    wait_for(&second.rest, "/connectors/src/status", |s| s["tasks"][0]["state"] == "RUNNING").await;
    append(&input, numbered(100, 200));
    let status = wait_for(&first.rest, "/connectors/src/status", |s| s["tasks"][0]["state"] == "FAILED").await;
    let trace = status["tasks"][0]["trace"].as_str().unwrap();
    assert!(trace.contains("fenced") && trace.contains("eos-src-0"), "{trace}");
    let size = std::fs::metadata(&input).unwrap().len();
    wait_for(&second.rest, "/connectors/src/offsets", |o| o["offsets"][0]["offset"]["position"] == json!(size)).await;
    assert_eq!(committed_values(&*substrate, "events").await, numbered(0, 200), "every line once");

    first.shutdown().await;
    second.shutdown().await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_requiring_exactly_once_fails_on_a_worker_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    append(&input, numbered(0, 3));
    let log = log(dir.path()).await;
    let running = Running::start(Arc::new(log.clone()), &[]).await;
    let config = json!({"connector.class": "FileStreamSource", "file": input.to_str().unwrap(), "topic": "t",
        "exactly.once.support": "required", "errors.task.restart.max": "0"});
    assert_eq!(running.rest.call("PUT", "/connectors/src/config", Some(config)).await.0, 201);
    let status = wait_for(&running.rest, "/connectors/src/status", |s| s["tasks"][0]["state"] == "FAILED").await;
    assert!(status["tasks"][0]["trace"].as_str().unwrap().contains("exactly.once.source.support"), "{status}");
    running.shutdown().await;
    log.close().await.unwrap();
}
