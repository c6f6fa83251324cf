//! The Datagen source on a worker and the embedded log: `iterations` honoured across a restart
//! through the stored offsets, JSON envelopes with the bid schema, and two tasks that split the
//! sequence one task generates.

use std::sync::Arc;
use std::time::Duration;

use freshet_core::{ConsumerConfig, OffsetSpec, Substrate, TopicPartition};
use serde_json::{json, Value as Json};

use crate::support::*;

/// The end offset of `topic`'s partition 0 (0 before the topic exists).
async fn end_offset(substrate: &dyn Substrate, topic: &str) -> i64 {
    let admin = substrate.admin().unwrap();
    let tp = TopicPartition::new(topic, 0);
    admin.list_offset(&tp, OffsetSpec::Latest).await.ok().flatten().map_or(0, |(offset, _)| offset)
}

/// Waits until `topic` has at least `n` records.
async fn wait_for_records(substrate: &dyn Substrate, topic: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let end = end_offset(substrate, topic).await;
        if end >= n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{topic} has {end} records, waiting for {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A record as JSON: its key's and value's envelopes and its time.
struct Read {
    key: Json,
    value: Json,
    timestamp: i64,
}

/// Every record of `topic`'s partition 0.
async fn read_all(substrate: &dyn Substrate, topic: &str) -> Vec<Read> {
    let end = end_offset(substrate, topic).await;
    let mut consumer = substrate.consumer(ConsumerConfig::default()).unwrap();
    consumer.assign(vec![TopicPartition::new(topic, 0)]).await.unwrap();
    let mut out = Vec::new();
    while (out.len() as i64) < end {
        for batch in consumer.poll(Duration::from_millis(200)).await.unwrap() {
            for r in batch.records().unwrap() {
                let json = |bytes: Option<bytes::Bytes>| serde_json::from_slice(&bytes.unwrap()).unwrap();
                out.push(Read { key: json(r.key), value: json(r.value), timestamp: r.timestamp });
            }
        }
    }
    out
}

/// The connector's offsets, once every task's position adds up to `total`.
async fn offsets_at(rest: &Rest, name: &str, total: u64) -> Vec<Json> {
    let body = wait_for(rest, &format!("/connectors/{name}/offsets"), |o| {
        let positions = o["offsets"].as_array().into_iter().flatten().map(|p| p["offset"]["position"].as_u64());
        positions.sum::<Option<u64>>() == Some(total)
    })
    .await;
    let mut offsets = body["offsets"].as_array().unwrap().clone();
    offsets.sort_by_key(|o| o["partition"]["task"].as_u64());
    offsets
}

async fn put_config(rest: &Rest, name: &str, config: Json) {
    let (status, body) = rest.call("PUT", &format!("/connectors/{name}/config"), Some(config)).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagen_writes_its_iterations_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path()).await;
    let substrate: Arc<dyn Substrate> = Arc::new(log.clone());
    let config = json!({"connector.class": "datagen", "kafka.topic": "bids", "quickstart": "bids", "iterations": 500});

    let running = Running::start(substrate.clone(), &[]).await;
    put_config(&running.rest, "bids", config.clone()).await;
    wait_for_records(&*substrate, "bids", 500).await;
    let offsets = offsets_at(&running.rest, "bids", 500).await;
    assert_eq!(offsets.len(), 1, "{offsets:?}");
    assert_eq!(offsets[0]["partition"], json!({"task": 0}));
    assert_eq!(offsets[0]["offset"]["tasks"], 1);
    let records = read_all(&*substrate, "bids").await;
    assert_eq!(records.len(), 500);

    // JsonConverter's envelopes: the bid schema, a string key (the auction), the bid's time.
    let schema = &records[0].value["schema"];
    assert_eq!(
        (schema["type"].as_str(), schema["name"].as_str()),
        (Some("struct"), Some("freshet.datagen.nexmark.Bid"))
    );
    let fields: Vec<(&str, &str)> = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["field"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        [
            ("auction", "int64"),
            ("bidder", "int64"),
            ("price", "int64"),
            ("channel", "string"),
            ("url", "string"),
            ("date_time", "int64"),
            ("extra", "string")
        ]
    );
    assert_eq!(schema["fields"][5]["name"], "org.apache.kafka.connect.data.Timestamp");
    let mut seen = std::collections::HashSet::new();
    for r in &records {
        assert_eq!(r.value["schema"], *schema, "every record has the bid schema");
        let bid = &r.value["payload"];
        assert_eq!(r.key["schema"]["type"], "string");
        assert_eq!(r.key["payload"].as_str(), Some(bid["auction"].to_string().as_str()));
        assert_eq!(Some(r.timestamp), bid["date_time"].as_i64(), "the record's time is the bid's");
        assert!(bid["price"].as_i64().unwrap() > 0 && !bid["channel"].as_str().unwrap().is_empty(), "{bid}");
        assert!(seen.insert(bid.to_string()), "a bid twice: {bid}");
    }
    running.shutdown().await;

    // A new worker on the same log, the same connector: its offsets say the 500 are written.
    let running = Running::start(substrate.clone(), &[]).await;
    put_config(&running.rest, "bids", config).await;
    wait_for(&running.rest, "/connectors/bids/status", |s| s["tasks"][0]["state"] == "RUNNING").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(end_offset(&*substrate, "bids").await, 500, "no records past iterations after a restart");
    let status = running.rest.call("GET", "/connectors/bids/status", None).await.1;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    assert_eq!(offsets_at(&running.rest, "bids", 500).await, offsets);
    running.shutdown().await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_split_the_sequence_one_task_generates() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path()).await;
    let substrate: Arc<dyn Substrate> = Arc::new(log.clone());
    let running = Running::start(substrate.clone(), &[]).await;
    for (name, tasks) in [("one", 1), ("two", 2)] {
        let config = json!({"connector.class": "freshet.connect.DatagenSourceConnector", "topic": name,
            "quickstart": "bids", "iterations": 500, "tasks.max": tasks});
        put_config(&running.rest, name, config).await;
    }

    // The bids of each, with their times counted from the connector's timeline start: the two
    // connectors started at different times, but their sequences are the same.
    let mut bids = Vec::new();
    for name in ["one", "two"] {
        wait_for_records(&*substrate, name, 500).await;
        let offsets = offsets_at(&running.rest, name, 500).await;
        let base = offsets[0]["offset"]["base_time_ms"].as_i64().unwrap();
        let mut payloads: Vec<String> = read_all(&*substrate, name)
            .await
            .into_iter()
            .map(|r| {
                let mut bid = r.value["payload"].clone();
                bid["date_time"] = json!(bid["date_time"].as_i64().unwrap() - base);
                bid.to_string()
            })
            .collect();
        payloads.sort();
        bids.push((payloads, offsets));
    }
    let (one, two) = (&bids[0], &bids[1]);
    assert_eq!(one.0.len(), 500);
    let mut unique = two.0.clone();
    unique.dedup();
    assert_eq!(unique.len(), 500, "two tasks write no event twice");
    assert!(one.0 == two.0, "two tasks write the events one task does");
    let split: Vec<(Json, Json, Json)> = two
        .1
        .iter()
        .map(|o| (o["partition"]["task"].clone(), o["offset"]["position"].clone(), o["offset"]["tasks"].clone()))
        .collect();
    assert_eq!(split, [(json!(0), json!(250), json!(2)), (json!(1), json!(250), json!(2))]);
    assert_eq!(two.1[0]["offset"]["base_time_ms"], two.1[1]["offset"]["base_time_ms"], "one timeline");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(end_offset(&*substrate, "two").await, 500, "the tasks stop at their shares");
    running.shutdown().await;
    log.close().await.unwrap();
}
