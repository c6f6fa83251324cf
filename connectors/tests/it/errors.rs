//! Error handling: a poison record skipped to the dead-letter topic with Kafka's context headers
//! while the pipeline goes on, for a sink and for a source; without tolerance the task fails and
//! says where; a failed task restarted with backoff.

use std::sync::Arc;

use freshet_core::{ConsumerRecord, ProducerRecord, Substrate};
use serde_json::json;

use crate::support::*;

fn header<'a>(record: &'a ConsumerRecord, key: &str) -> Option<&'a str> {
    let h = record.headers.iter().find(|h| h.key == key)?;
    std::str::from_utf8(h.value.as_deref()?).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_goes_to_the_dead_letter_topic_and_the_sink_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path()).await;
    let substrate: Arc<dyn Substrate> = Arc::new(log.clone());
    let producer = substrate.producer().unwrap();
    let values = [r#"{"n":1}"#, r#"{"n":2}"#, "not json {", r#"{"n":4}"#];
    let records = values.iter().map(|v| ProducerRecord::new("in", Some("k"), *v)).collect();
    substrate
        .admin()
        .unwrap()
        .create_topic(freshet_core::NewTopic { name: "in".into(), n_partitions: 1, ..Default::default() })
        .await
        .unwrap();
    producer.send(records).await.unwrap();

    let running = Running::start(substrate.clone(), &[]).await;
    let output = dir.path().join("out.txt");
    let config = json!({"connector.class": "FileStreamSink", "file": output.to_str().unwrap(), "topics": "in",
        "key.converter": "StringConverter",
        "value.converter": "JsonConverter", "value.converter.schemas.enable": "false",
        "errors.tolerance": "all", "errors.log.enable": "true", "errors.log.include.messages": "true",
        "errors.deadletterqueue.topic.name": "dlq", "errors.deadletterqueue.context.headers.enable": "true"});
    assert_eq!(running.rest.call("PUT", "/connectors/sink/config", Some(config)).await.0, 201);
    assert_eq!(wait_for_lines(&output, 3).await, ["{n=1}", "{n=2}", "{n=4}"]);

    let dlq = read(&*substrate, "dlq", 1).await;
    let poison = &dlq[0];
    assert_eq!(poison.value.as_deref(), Some(&b"not json {"[..]), "the record as it was read");
    assert_eq!(poison.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(header(poison, "__connect.errors.topic"), Some("in"));
    assert_eq!(header(poison, "__connect.errors.partition"), Some("0"));
    assert_eq!(header(poison, "__connect.errors.offset"), Some("2"));
    assert_eq!(header(poison, "__connect.errors.connector.name"), Some("sink"));
    assert_eq!(header(poison, "__connect.errors.task.id"), Some("0"));
    assert_eq!(header(poison, "__connect.errors.stage"), Some("VALUE_CONVERTER"));
    assert_eq!(
        header(poison, "__connect.errors.exception.class.name"),
        Some("org.apache.kafka.connect.errors.DataException")
    );
    assert!(
        header(poison, "__connect.errors.exception.message").unwrap().contains("serialization error"),
        "{poison:?}"
    );

    // The pipeline goes on; the counters say what happened.
    producer.send(vec![ProducerRecord::new("in", Some("k"), r#"{"n":5}"#)]).await.unwrap();
    assert_eq!(wait_for_lines(&output, 4).await[3], "{n=5}");
    let status = wait_for(&running.rest, "/connectors/sink/status", |s| {
        s["tasks"][0]["metrics"]["deadletterqueue-produce-requests"] == 1
    })
    .await;
    let metrics = &status["tasks"][0]["metrics"];
    assert_eq!(
        (metrics["total-record-errors"].clone(), metrics["total-records-skipped"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(status["tasks"][0]["state"], "RUNNING");

    // Without tolerance, the same record fails the task, which says where.
    let output2 = dir.path().join("out2.txt");
    let strict = json!({"connector.class": "FileStreamSink", "file": output2.to_str().unwrap(), "topics": "in",
        "key.converter": "StringConverter", "value.converter": "JsonConverter", "value.converter.schemas.enable": "false", "errors.task.restart.max": "0"});
    assert_eq!(running.rest.call("PUT", "/connectors/strict/config", Some(strict)).await.0, 201);
    let status = wait_for(&running.rest, "/connectors/strict/status", |s| s["tasks"][0]["state"] == "FAILED").await;
    let trace = status["tasks"][0]["trace"].as_str().unwrap();
    assert!(trace.contains("VALUE_CONVERTER") && trace.contains("in-0 offset 2"), "{trace}");
    running.shutdown().await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_record_a_transform_cannot_handle_goes_to_the_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    append(&input, ["1", "2", "x", "4"].map(String::from));
    let log = log(dir.path()).await;
    let substrate: Arc<dyn Substrate> = Arc::new(log.clone());
    let running = Running::start(substrate.clone(), &[]).await;
    let config = json!({"connector.class": "FileStreamSource", "file": input.to_str().unwrap(), "topic": "numbers",
        "transforms": "cast", "transforms.cast.type": "org.apache.kafka.connect.transforms.Cast$Value",
        "transforms.cast.spec": "int32", "value.converter": "JsonConverter", "value.converter.schemas.enable": "false",
        "errors.tolerance": "all", "errors.deadletterqueue.topic.name": "source-dlq",
        "errors.deadletterqueue.context.headers.enable": "true"});
    assert_eq!(running.rest.call("PUT", "/connectors/numbers/config", Some(config)).await.0, 201);
    let written = read(&*substrate, "numbers", 3).await;
    let values: Vec<&[u8]> = written.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(values, [&b"1"[..], b"2", b"4"]);
    let dlq = read(&*substrate, "source-dlq", 1).await;
    let failed = &dlq[0];
    assert_eq!(failed.value.as_deref(), Some(&br#"{"schema":{"type":"string","optional":false},"payload":"x"}"#[..]));
    assert_eq!(header(failed, "__connect.errors.stage"), Some("TRANSFORMATION"));
    assert_eq!(header(failed, "__connect.errors.topic"), Some("numbers"));
    assert_eq!(
        header(failed, "__connect.errors.source.partition"),
        Some(&*json!({"filename": input.to_str().unwrap()}).to_string())
    );
    assert_eq!(header(failed, "__connect.errors.source.offset"), Some(r#"{"position":6}"#));
    // The source's offsets moved past the failed record.
    wait_for(&running.rest, "/connectors/numbers/offsets", |o| o["offsets"][0]["offset"]["position"] == 8).await;
    running.shutdown().await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_restarted_with_backoff_then_left_failed() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path()).await;
    let running = Running::start(Arc::new(log.clone()), &[]).await;
    // A directory is not a file to append to: the task fails each time it starts.
    let config = json!({"connector.class": "FileStreamSink", "file": dir.path().to_str().unwrap(), "topics": "t",
        "errors.task.restart.max": "2", "errors.task.restart.backoff.max.ms": "200"});
    assert_eq!(running.rest.call("PUT", "/connectors/flaky/config", Some(config)).await.0, 201);
    let status = wait_for(&running.rest, "/connectors/flaky/status", |s| {
        s["tasks"][0]["state"] == "FAILED" && s["tasks"][0]["metrics"]["restarts"] == 2
    })
    .await;
    assert!(status["tasks"][0]["trace"].as_str().unwrap().contains(dir.path().to_str().unwrap()), "{status}");
    running.shutdown().await;
    log.close().await.unwrap();
}
