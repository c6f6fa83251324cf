//! The REST API through a real HTTP client: every endpoint's payload shape (snapshots, worker
//! addresses and paths redacted) and status, and its errors.

use std::sync::Arc;

use serde_json::{json, Value as Json};

use crate::support::*;

/// A payload with this run's worker address and temporary paths replaced, for snapshots.
fn redact(value: &Json, worker: &str, dir: &str) -> String {
    serde_json::to_string_pretty(value).unwrap().replace(worker, "WORKER").replace(dir, "DIR")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_as_kafka_connect_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let input = dir.path().join("in.txt");
    append(&input, ["a".to_string(), "b".to_string()]);
    let log = log(dir.path()).await;
    let running = Running::start(Arc::new(log.clone()), &[]).await;
    let (rest, id) = (&running.rest, running.worker.id().to_string());
    let shape = |v: &Json| redact(v, &id, &d);

    let (status, root) = rest.call("GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(root["version"].is_string() && root["kafka_cluster_id"].is_string(), "{root}");
    let (status, health) = rest.call("GET", "/health", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("healthy")));
    assert_eq!(rest.call("GET", "/connectors", None).await.1, json!([]));

    let create = json!({"name": "src", "config": {"connector.class": "FileStreamSource",
        "file": input.to_str().unwrap(), "topic": "t", "tasks.max": 1}});
    let (status, created) = rest.call("POST", "/connectors", Some(create.clone())).await;
    assert_eq!(status, 201);
    insta::assert_snapshot!("create", shape(&created));
    let (status, body) = rest.call("POST", "/connectors", Some(create)).await;
    assert_eq!((status, body), (409, json!({"error_code": 409, "message": "Connector src already exists"})));

    assert_eq!(rest.call("GET", "/connectors", None).await.1, json!(["src"]));
    let info = rest.call("GET", "/connectors/src", None).await.1;
    assert_eq!(info, created);
    assert_eq!(rest.call("GET", "/connectors/src/config", None).await.1, created["config"]);
    let status = wait_for(rest, "/connectors/src/status", |s| s["tasks"][0]["state"] == "RUNNING").await;
    let mut without_metrics = status.clone();
    without_metrics["tasks"][0].as_object_mut().unwrap().remove("metrics");
    insta::assert_snapshot!("status", shape(&without_metrics));
    assert!(status["tasks"][0]["metrics"]["records-read"].is_u64(), "{status}");
    let task = rest.call("GET", "/connectors/src/tasks/0/status", None).await.1;
    assert_eq!((task["id"].clone(), task["state"].clone()), (json!(0), json!("RUNNING")));
    let tasks = rest.call("GET", "/connectors/src/tasks", None).await.1;
    insta::assert_snapshot!("tasks", shape(&tasks));
    let expanded = rest.call("GET", "/connectors?expand=status&expand=info", None).await.1;
    assert_eq!(expanded["src"]["info"], created);
    assert_eq!(expanded["src"]["status"]["name"], "src");
    let offsets =
        wait_for(rest, "/connectors/src/offsets", |o| o["offsets"][0]["offset"]["position"] == json!(4)).await;
    insta::assert_snapshot!("offsets", shape(&offsets));

    // Config changes: PATCH merges, null removes; PUT replaces.
    let (status, patched) = rest.call("PATCH", "/connectors/src/config", Some(json!({"batch.size": "10"}))).await;
    assert_eq!((status, patched["config"]["batch.size"].as_str()), (200, Some("10")));
    let (status, patched) = rest.call("PATCH", "/connectors/src/config", Some(json!({"batch.size": null}))).await;
    assert_eq!(status, 200);
    assert!(patched["config"].get("batch.size").is_none(), "{patched}");
    let mut replaced = created["config"].clone();
    replaced["topic"] = json!("t2");
    let (status, body) = rest.call("PUT", "/connectors/src/config", Some(replaced)).await;
    assert_eq!((status, body["config"]["topic"].as_str()), (200, Some("t2")));

    // Restarts.
    assert_eq!(rest.call("POST", "/connectors/src/restart", None).await.0, 204);
    let (status, body) = rest.call("POST", "/connectors/src/restart?includeTasks=true&onlyFailed=false", None).await;
    assert_eq!((status, body["name"].as_str()), (202, Some("src")));
    assert_eq!(rest.call("POST", "/connectors/src/tasks/0/restart", None).await.0, 204);
    assert_eq!(rest.call("POST", "/connectors/src/tasks/7/restart", None).await.0, 404);

    // Plugins.
    let plugins = rest.call("GET", "/connector-plugins", None).await.1;
    let classes: Vec<&str> = plugins.as_array().unwrap().iter().map(|p| p["class"].as_str().unwrap()).collect();
    assert!(classes.contains(&"org.apache.kafka.connect.file.FileStreamSourceConnector"), "{plugins}");
    assert!(plugins.as_array().unwrap().iter().all(|p| p["type"] == "source" || p["type"] == "sink"));
    let all = rest.call("GET", "/connector-plugins?connectorsOnly=false", None).await.1;
    assert!(all.as_array().unwrap().iter().any(|p| p["type"] == "converter"), "{all}");
    let (status, keys) = rest.call("GET", "/connector-plugins/FileStreamSource/config", None).await;
    assert_eq!(status, 200);
    insta::assert_snapshot!("plugin_config", shape(&keys));

    // Validation names the key.
    let (status, report) = rest
        .call("PUT", "/connector-plugins/FileStreamSource/config/validate", Some(json!({"batch.size": "many"})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["name"], "org.apache.kafka.connect.file.FileStreamSourceConnector");
    let errors: Vec<(String, Json)> = report["configs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["value"]["errors"].as_array().unwrap().is_empty())
        .map(|c| (c["value"]["name"].as_str().unwrap().to_string(), c["value"]["errors"].clone()))
        .collect();
    assert_eq!(report["error_count"], json!(errors.iter().map(|(_, e)| e.as_array().unwrap().len()).sum::<usize>()));
    insta::assert_snapshot!("validate_errors", format!("{errors:#?}"));
    let (status, body) = rest
        .call(
            "PUT",
            "/connector-plugins/FileStreamSource/config/validate",
            Some(json!({"connector.class": "FileStreamSink"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Errors.
    let (status, body) = rest.call("GET", "/connectors/nope/status", None).await;
    assert_eq!((status, body), (404, json!({"error_code": 404, "message": "Connector nope not found"})));
    for (method, path) in [
        ("GET", "/connectors/nope"),
        ("GET", "/connectors/nope/config"),
        ("GET", "/connectors/nope/tasks"),
        ("GET", "/connectors/nope/offsets"),
        ("PUT", "/connectors/nope/pause"),
        ("PUT", "/connectors/nope/resume"),
        ("PUT", "/connectors/nope/stop"),
        ("POST", "/connectors/nope/restart"),
        ("DELETE", "/connectors/nope"),
        ("GET", "/connector-plugins/Nope/config"),
        ("GET", "/no/such/path"),
    ] {
        let (status, body) = rest.call(method, path, None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["error_code"], 404, "{method} {path}: {body}");
    }
    let (status, body) = rest
        .call("POST", "/connectors", Some(json!({"name": "bad", "config": {"connector.class": "FileStreamSource"}})))
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("\"topic\""), "the message names the missing key: {message}");
    let (status, body) = rest.raw("POST", "/connectors", Some("{not json".into())).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = rest
        .call("POST", "/connectors", Some(json!({"name": "x", "config": {"connector.class": "NoSuchConnector"}})))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("NoSuchConnector"), "{body}");
    let sink_without_topics = json!({"name": "s", "config": {"connector.class": "FileStreamSink"}});
    let (status, body) = rest.call("POST", "/connectors", Some(sink_without_topics)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("topics"), "{body}");
    assert_eq!(rest.call("GET", "/connectors", None).await.1, json!(["src"]), "failed requests changed nothing");

    // Created stopped, as initial_state asks.
    let stopped = json!({"name": "later", "initial_state": "STOPPED", "config": {"connector.class": "FileStreamSource",
        "file": input.to_str().unwrap(), "topic": "t"}});
    assert_eq!(rest.call("POST", "/connectors", Some(stopped)).await.0, 201);
    let status = rest.call("GET", "/connectors/later/status", None).await.1;
    assert_eq!((status["connector"]["state"].as_str(), status["tasks"].clone()), (Some("STOPPED"), json!([])));

    assert_eq!(rest.call("DELETE", "/connectors/src", None).await.0, 204);
    assert_eq!(rest.call("GET", "/connectors", None).await.1, json!(["later"]));
    running.shutdown().await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_connector_reports_why_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path()).await;
    let running = Running::start(Arc::new(log.clone()), &[]).await;
    let rest = &running.rest;
    // A directory is not a file to append to: the sink task fails at its start.
    let config = json!({"connector.class": "FileStreamSink", "file": dir.path().to_str().unwrap(), "topics": "t",
        "errors.task.restart.max": "0"});
    assert_eq!(rest.call("PUT", "/connectors/broken/config", Some(config)).await.0, 201);
    let status = wait_for(rest, "/connectors/broken/status", |s| s["tasks"][0]["state"] == "FAILED").await;
    let trace = status["tasks"][0]["trace"].as_str().unwrap();
    assert!(trace.contains(dir.path().to_str().unwrap()), "the trace names the file: {trace}");
    let (status, body) = rest.call("POST", "/connectors/broken/restart?includeTasks=true&onlyFailed=true", None).await;
    assert_eq!(status, 202, "{body}");
    wait_for(rest, "/connectors/broken/status", |s| s["tasks"][0]["state"] == "FAILED").await;
    running.shutdown().await;
    log.close().await.unwrap();
}
