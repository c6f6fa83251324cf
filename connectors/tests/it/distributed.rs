//! Distributed workers in one process, on one embedded log (so one group coordinator): the group
//! shares connectors and tasks, any worker answers for any connector, a worker's leaving hands its
//! work to the others, configs and statuses are in the internal topics with Kafka Connect's keys,
//! and a change asked during a rebalance is refused with 409.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use freshet_core::{ConsumerConfig, JoinGroup, OffsetSpec, Substrate, TopicPartition};
use serde_json::{json, Value as Json};

use crate::support::{lines, log, settled, wait_for, wait_for_lines, GroupWorker};

/// The workers a status names, connector and tasks.
fn workers_of(status: &Json) -> BTreeSet<String> {
    std::iter::once(&status["connector"])
        .chain(status["tasks"].as_array().into_iter().flatten())
        .map(|s| s["worker_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn running(status: &Json, tasks: usize) -> bool {
    status["connector"]["state"] == "RUNNING"
        && status["tasks"].as_array().is_some_and(|t| t.len() == tasks && t.iter().all(|t| t["state"] == "RUNNING"))
}

/// The keys of a topic's records, in order.
async fn keys(substrate: &dyn Substrate, topic: &str) -> Vec<String> {
    let admin = substrate.admin().unwrap();
    let (_, partitions) = admin.describe_topic(topic).await.unwrap();
    let mut out = Vec::new();
    for p in partitions {
        let tp = TopicPartition::new(topic, p.partition);
        let end = admin.list_offset(&tp, OffsetSpec::Latest).await.unwrap().map_or(0, |(o, _)| o);
        let mut consumer = substrate.consumer(ConsumerConfig::default()).unwrap();
        consumer.assign(vec![tp.clone()]).await.unwrap();
        consumer.seek(&tp, OffsetSpec::Earliest).await.unwrap();
        while consumer.position(&tp).unwrap_or(0) < end {
            for batch in consumer.poll(Duration::from_millis(200)).await.unwrap() {
                for r in batch.records().unwrap() {
                    out.push(String::from_utf8(r.key.unwrap().to_vec()).unwrap());
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_work_and_one_takes_all_over_when_the_other_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let substrate: Arc<dyn Substrate> = Arc::new(log(dir.path()).await);
    let a = GroupWorker::start(substrate.clone(), &[]).await;
    let b = GroupWorker::start(substrate.clone(), &[]).await;
    a.stable().await;
    b.stable().await;
    let (input, output) = (dir.path().join("in.txt"), dir.path().join("out.txt"));
    std::fs::write(&input, "one\ntwo\n").unwrap();
    // Connectors are created through either worker.
    let source = json!({"name": "source", "config": {"connector.class": "FileStreamSource",
        "file": input.to_str().unwrap(), "topic": "lines"}});
    let sink = json!({"name": "sink", "config": {"connector.class": "FileStreamSink",
        "file": output.to_str().unwrap(), "topics": "lines"}});
    let idle =
        json!({"name": "idle", "config": {"connector.class": "BlackholeSink", "topics": "lines", "tasks.max": "4"}});
    assert_eq!(settled(&a.rest, "POST", "/connectors", Some(source)).await.0, 201);
    assert_eq!(settled(&b.rest, "POST", "/connectors", Some(sink)).await.0, 201);
    assert_eq!(settled(&a.rest, "POST", "/connectors", Some(idle)).await.0, 201);
    let (status, body) = settled(
        &b.rest,
        "POST",
        "/connectors",
        Some(json!({"name": "idle", "config": {
        "connector.class": "BlackholeSink", "topics": "lines"}})),
    )
    .await;
    assert_eq!((status, body["message"].as_str()), (409, Some("Connector idle already exists")));
    assert_eq!(wait_for_lines(&output, 2).await, ["one", "two"]);
    // Every worker answers for every connector, and the work is spread over both.
    let mut used = BTreeSet::new();
    for (name, tasks) in [("source", 1), ("sink", 1), ("idle", 4)] {
        for m in [&a, &b] {
            let status = wait_for(&m.rest, &format!("/connectors/{name}/status"), |s| running(s, tasks)).await;
            used.extend(workers_of(&status));
        }
    }
    assert_eq!(used, BTreeSet::from([a.worker.id().to_string(), b.worker.id().to_string()]), "work on both workers");
    let (_, listed) = b.rest.call("GET", "/connectors", None).await;
    assert_eq!(listed, json!(["idle", "sink", "source"]));
    let (_, tasks) = b.rest.call("GET", "/connectors/idle/tasks", None).await;
    assert_eq!(tasks.as_array().unwrap().len(), 4);
    // Pausing through one worker pauses the tasks wherever they run.
    assert_eq!(settled(&b.rest, "PUT", "/connectors/idle/pause", None).await.0, 202);
    wait_for(&a.rest, "/connectors/idle/status", |s| {
        s["tasks"].as_array().is_some_and(|t| t.len() == 4 && t.iter().all(|t| t["state"] == "PAUSED"))
    })
    .await;
    assert_eq!(settled(&a.rest, "PUT", "/connectors/idle/resume", None).await.0, 202);
    wait_for(&b.rest, "/connectors/idle/status", |s| running(s, 4)).await;
    // B leaves: A runs everything, and the pipeline goes on.
    let gone = b.worker.id().to_string();
    b.shutdown().await;
    for (name, tasks) in [("source", 1), ("sink", 1), ("idle", 4)] {
        let status = wait_for(&a.rest, &format!("/connectors/{name}/status"), |s| {
            running(s, tasks) && !workers_of(s).contains(&gone)
        })
        .await;
        assert_eq!(workers_of(&status), BTreeSet::from([a.worker.id().to_string()]));
    }
    std::fs::write(&input, "one\ntwo\nthree\n").unwrap();
    let got = wait_for_lines(&output, 3).await;
    assert_eq!(got.last().map(String::as_str), Some("three"), "{got:?}");
    // Stopping a connector takes its tasks away, as Kafka Connect does.
    assert_eq!(settled(&a.rest, "PUT", "/connectors/idle/stop", None).await.0, 204);
    wait_for(&a.rest, "/connectors/idle/status", |s| s["connector"]["state"] == "STOPPED").await;
    let (_, tasks) = a.rest.call("GET", "/connectors/idle/tasks", None).await;
    assert_eq!(tasks, json!([]));
    assert_eq!(settled(&a.rest, "DELETE", "/connectors/idle", None).await.0, 204);
    assert_eq!(a.rest.call("GET", "/connectors/idle", None).await.0, 404);
    // The internal topics hold Kafka Connect's records.
    let configs = keys(&*substrate, "connect-configs").await;
    for key in ["connector-source", "task-source-0", "commit-source", "target-state-idle", "connector-sink"] {
        assert!(configs.contains(&key.to_string()), "{key} in {configs:?}");
    }
    let statuses = keys(&*substrate, "connect-status").await;
    for key in ["status-connector-source", "status-task-source-0", "status-task-idle-3"] {
        assert!(statuses.contains(&key.to_string()), "{key} in {statuses:?}");
    }
    a.shutdown().await;
    // A new worker reads it all back from the topics and runs the pipeline on.
    let c = GroupWorker::start(substrate.clone(), &[]).await;
    wait_for(&c.rest, "/connectors/source/status", |s| running(s, 1)).await;
    std::fs::write(&input, "one\ntwo\nthree\nfour\n").unwrap();
    let got = wait_for_lines(&output, 4).await;
    assert_eq!(got.last().map(String::as_str), Some("four"), "{got:?}");
    assert!(lines(&output).iter().filter(|l| *l == "four").count() == 1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_asked_while_the_group_rebalances_is_refused_with_409() {
    let dir = tempfile::tempdir().unwrap();
    let substrate: Arc<dyn Substrate> = Arc::new(log(dir.path()).await);
    let a = GroupWorker::start(substrate.clone(), &[]).await;
    a.stable().await;
    let membership = substrate.membership().unwrap();
    // A member that joins once and then goes silent: the next rebalance waits for it to rejoin
    // until its rebalance timeout (3 s) passes.
    let silent = JoinGroup {
        group: "cluster".into(),
        member_id: String::new(),
        protocol_type: "connect".into(),
        protocols: vec![("freshet-1".into(), Bytes::from(json!({"url": "http://silent", "running": []}).to_string()))],
        session_timeout: Duration::from_secs(60),
        rebalance_timeout: Duration::from_secs(3),
    };
    let joined = membership.join(&silent).await.unwrap();
    assert!(!joined.is_leader(), "the worker that was there first leads");
    membership.sync("cluster", &joined, "connect", Vec::new()).await.unwrap();
    a.stable().await;
    // Another joins: the worker rejoins and waits for the silent one.
    let late = JoinGroup { member_id: String::new(), ..silent.clone() };
    let third = tokio::spawn({
        let membership = membership.clone();
        async move {
            let joined = membership.join(&late).await.unwrap();
            membership.sync("cluster", &joined, "connect", Vec::new()).await.unwrap();
            membership.leave("cluster", &joined.member_id).await.unwrap();
        }
    });
    let config =
        |i: usize| json!({"name": format!("idle-{i}"), "config": {"connector.class": "BlackholeSink", "topics": "t"}});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    let refused = loop {
        i += 1;
        let (status, body) = a.rest.call("POST", "/connectors", Some(config(i))).await;
        if status == 409 {
            break body;
        }
        // Until the worker hears of the rebalance, changes go through.
        assert_eq!(status, 201, "{body}");
        assert!(tokio::time::Instant::now() < deadline, "no rebalance seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused["message"], "Request cannot be completed because a rebalance is expected");
    assert_eq!(a.rest.call("GET", &format!("/connectors/idle-{i}"), None).await.0, 404);
    // Once the silent member is dropped, the change goes through.
    third.await.unwrap();
    a.stable().await;
    let (status, body) = a.rest.call("POST", "/connectors", Some(config(i))).await;
    assert_eq!(status, 201, "{body}");
    a.shutdown().await;
}
