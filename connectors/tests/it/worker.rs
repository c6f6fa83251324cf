//! The worker running the built-in connectors on the embedded log: a file -> topic -> file
//! pipeline, offsets stored and resumed after a restart, pause and resume, offsets changed while
//! stopped, and two workers sharing a sink's partitions.

use std::sync::Arc;
use std::time::Duration;

use freshet_core::{NewTopic, Substrate};
use serde_json::json;

use crate::support::*;

fn numbered(from: usize, to: usize) -> impl Iterator<Item = String> {
    (from..to).map(|i| format!("line {i:05} of the input"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_pipeline_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.txt"), dir.path().join("out.txt"));
    append(&input, numbered(0, 1000));
    let log = log(dir.path()).await;
    let substrate: Arc<dyn Substrate> = Arc::new(log.clone());

    let running = Running::start(substrate.clone(), &[]).await;
    let source = json!({"name": "file-source", "config": {
        "connector.class": "FileStreamSource", "file": input.to_str().unwrap(), "topic": "lines"}});
    let (status, created) = running.rest.call("POST", "/connectors", Some(source)).await;
    assert_eq!(status, 201, "{created}");
    let sink = json!({"connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "file": output.to_str().unwrap(), "topics": "lines"});
    let (status, body) = running.rest.call("PUT", "/connectors/file-sink/config", Some(sink)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(wait_for_lines(&output, 1000).await, numbered(0, 1000).collect::<Vec<_>>());

    append(&input, numbered(1000, 1500));
    assert_eq!(wait_for_lines(&output, 1500).await.len(), 1500);
    let size = std::fs::metadata(&input).unwrap().len();
    // Kafka Connect's offsets: the file's name -> the byte position after the last line.
    let offsets = wait_for(&running.rest, "/connectors/file-source/offsets", |o| {
        o["offsets"][0]["offset"]["position"] == json!(size)
    })
    .await;
    assert_eq!(offsets["offsets"][0]["partition"], json!({"filename": input.to_str().unwrap()}));
    running.shutdown().await;

    // A new worker on the same log goes on from the stored offsets: no line twice, none lost.
    append(&input, numbered(1500, 1600));
    let running = Running::start(substrate.clone(), &[]).await;
    for (name, config) in [
        (
            "file-source",
            json!({"connector.class": "FileStreamSource", "file": input.to_str().unwrap(), "topic": "lines"}),
        ),
        (
            "file-sink",
            json!({"connector.class": "FileStreamSink", "file": output.to_str().unwrap(), "topics": "lines"}),
        ),
    ] {
        let (status, body) = running.rest.call("PUT", &format!("/connectors/{name}/config"), Some(config)).await;
        assert_eq!(status, 201, "{body}");
    }
    let out = wait_for_lines(&output, 1600).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lines(&output), numbered(0, 1600).collect::<Vec<_>>(), "every line once, in order");
    assert_eq!(out.len(), 1600);

    // The sink's offsets are its consumer group's.
    let sink_offsets = wait_for(&running.rest, "/connectors/file-sink/offsets", |o| {
        o["offsets"][0]["offset"]["kafka_offset"] == json!(1600)
    })
    .await;
    assert_eq!(sink_offsets["offsets"][0]["partition"], json!({"kafka_topic": "lines", "kafka_partition": 0}));
    running.shutdown().await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stop_and_offsets_changed_while_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.txt"), dir.path().join("out.txt"));
    append(&input, numbered(0, 10));
    let log = log(dir.path()).await;
    let running = Running::start(Arc::new(log.clone()), &[]).await;
    let rest = &running.rest;
    let source = json!({"connector.class": "FileStreamSource", "file": input.to_str().unwrap(), "topic": "t",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter"});
    let sink = json!({"connector.class": "FileStreamSink", "file": output.to_str().unwrap(), "topics": "t",
        "value.converter": "StringConverter"});
    assert_eq!(rest.call("PUT", "/connectors/src/config", Some(source)).await.0, 201);
    assert_eq!(rest.call("PUT", "/connectors/snk/config", Some(sink)).await.0, 201);
    wait_for_lines(&output, 10).await;

    // Paused: nothing moves; resumed: it goes on.
    assert_eq!(rest.call("PUT", "/connectors/src/pause", None).await.0, 202);
    wait_for(rest, "/connectors/src/status", |s| s["tasks"][0]["state"] == "PAUSED").await;
    assert_eq!(rest.call("GET", "/connectors/src/status", None).await.1["connector"]["state"], "PAUSED");
    append(&input, numbered(10, 20));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(lines(&output).len(), 10, "a paused source reads nothing");
    assert_eq!(rest.call("PUT", "/connectors/src/resume", None).await.0, 202);
    wait_for_lines(&output, 20).await;
    wait_for(rest, "/connectors/src/status", |s| s["tasks"][0]["state"] == "RUNNING").await;

    // Offsets change only while stopped.
    let patch = json!({"offsets": [{"partition": {"filename": input.to_str().unwrap()}, "offset": {"position": 0}}]});
    let (status, body) = rest.call("PATCH", "/connectors/src/offsets", Some(patch.clone())).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("STOPPED"), "{body}");
    assert_eq!(rest.call("PUT", "/connectors/src/stop", None).await.0, 204);
    let status = rest.call("GET", "/connectors/src/status", None).await.1;
    assert_eq!(status["connector"]["state"], "STOPPED");
    assert_eq!(status["tasks"], json!([]));
    let bad = json!({"offsets": [{"partition": {"filename": input.to_str().unwrap()}, "offset": {"position": -3}}]});
    let (status, body) = rest.call("PATCH", "/connectors/src/offsets", Some(bad)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("position"), "{body}");
    let (status, body) = rest.call("PATCH", "/connectors/src/offsets", Some(patch)).await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (200, "The offsets for this connector have been altered successfully")
    );
    let offsets = rest.call("GET", "/connectors/src/offsets", None).await.1;
    assert_eq!(offsets["offsets"][0]["offset"], json!({"position": 0}));

    // Resumed from position 0: the file is read again.
    assert_eq!(rest.call("PUT", "/connectors/src/resume", None).await.0, 202);
    let out = wait_for_lines(&output, 40).await;
    assert_eq!(out[20..40], numbered(0, 20).collect::<Vec<_>>()[..]);

    // A sink's offsets too: back to 5, the records from 5 on are written again.
    assert_eq!(rest.call("PUT", "/connectors/snk/stop", None).await.0, 204);
    let patch =
        json!({"offsets": [{"partition": {"kafka_topic": "t", "kafka_partition": 0}, "offset": {"kafka_offset": 35}}]});
    let (status, body) = rest.call("PATCH", "/connectors/snk/offsets", Some(patch)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rest.call("GET", "/connectors/snk/offsets", None).await.1["offsets"][0]["offset"]["kafka_offset"], 35);
    assert_eq!(rest.call("PUT", "/connectors/snk/resume", None).await.0, 202);
    let out = wait_for_lines(&output, 45).await;
    assert_eq!(out[40..45], numbered(15, 20).collect::<Vec<_>>()[..]);

    // Reset: the sink's group is deleted and it starts from the beginning.
    assert_eq!(rest.call("PUT", "/connectors/snk/stop", None).await.0, 204);
    let (status, body) = rest.call("DELETE", "/connectors/snk/offsets", None).await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (200, "The offsets for this connector have been reset successfully")
    );
    assert_eq!(rest.call("GET", "/connectors/snk/offsets", None).await.1, json!({"offsets": []}));
    assert_eq!(rest.call("PUT", "/connectors/snk/resume", None).await.0, 202);
    wait_for_lines(&output, 85).await;

    assert_eq!(rest.call("DELETE", "/connectors/src", None).await.0, 204);
    assert_eq!(rest.call("GET", "/connectors/src", None).await.0, 404);
    running.shutdown().await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_sinks_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path()).await;
    let substrate: Arc<dyn Substrate> = Arc::new(log.clone());
    substrate
        .admin()
        .unwrap()
        .create_topic(NewTopic { name: "events".into(), n_partitions: 4, ..Default::default() })
        .await
        .unwrap();
    let producer = substrate.producer().unwrap();
    let send = |from: usize, to: usize| {
        let producer = producer.clone();
        async move {
            let records = (from..to)
                .map(|i| freshet_core::ProducerRecord::new("events", Some(format!("k{i}")), format!("v{i}")))
                .collect();
            producer.send(records).await.unwrap();
        }
    };
    send(0, 400).await;
    let a = Running::start(
        substrate.clone(),
        &[("value.converter", "StringConverter"), ("key.converter", "StringConverter")],
    )
    .await;
    let b = Running::start(
        substrate.clone(),
        &[("value.converter", "StringConverter"), ("key.converter", "StringConverter")],
    )
    .await;
    let (out_a, out_b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    for (running, out) in [(&a, &out_a), (&b, &out_b)] {
        let config = json!({"connector.class": "FileStreamSink", "file": out.to_str().unwrap(), "topics": "events"});
        assert_eq!(running.rest.call("PUT", "/connectors/shared/config", Some(config)).await.0, 201);
    }
    // The group connect-shared deals the four partitions over both workers' tasks.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let members = substrate.admin().unwrap().group_members("connect-shared").await.unwrap();
        let split =
            members.as_ref().is_some_and(|m| m.members.len() == 2 && m.members.iter().all(|x| x.assignment.len() == 2));
        if split {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the group did not split: {members:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send(400, 800).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut all: Vec<String> = lines(&out_a).into_iter().chain(lines(&out_b)).collect();
        all.sort();
        all.dedup();
        if all.len() == 800 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} of 800 values arrived", all.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!lines(&out_a).is_empty() && !lines(&out_b).is_empty(), "both workers wrote some");

    // One worker leaves; the other takes its partitions and everything after arrives.
    a.shutdown().await;
    send(800, 1000).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut all: Vec<String> = lines(&out_a).into_iter().chain(lines(&out_b)).collect();
        all.sort();
        all.dedup();
        if all.len() == 1000 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} of 1000 values arrived after a worker left", all.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.shutdown().await;
    log.close().await.unwrap();
}
