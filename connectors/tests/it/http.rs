//! The HTTP connectors on a worker and the embedded log: a webhook whose 200 means the records
//! are in the topic, with its refusals (401, 413, 429) writing nothing; and a sink that delivers
//! a topic to an endpoint once and in order through failed requests, commits offsets only for
//! what was delivered, and fails its task on a 400.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use freshet_core::{ConsumerConfig, ConsumerRecord, NewTopic, OffsetSpec, ProducerRecord, Substrate, TopicPartition};
use serde_json::{json, Value as Json};

use crate::support::*;

/// A port that was free a moment ago: the test must know the webhook's address in advance (the
/// task logs the port it gets for port 0, which a test cannot read).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something listens on `port`.
pub(crate) async fn wait_listening(port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    retry_after: Option<String>,
    body: String,
}

/// Posts `body` with `headers` to `url`.
pub(crate) async fn post(url: String, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Answer {
    let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let body = body.into();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut request = agent.post(&url);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let mut response = request.send(&body[..]).unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        Answer { status: response.status().as_u16(), retry_after, body: response.body_mut().read_to_string().unwrap() }
    })
    .await
    .unwrap()
}

/// Every record of partition 0 of `topic` written so far: read up to its end offset now, without
/// waiting for more.
pub(crate) async fn records_now(substrate: &dyn Substrate, topic: &str) -> Vec<ConsumerRecord> {
    let tp = TopicPartition::new(topic, 0);
    let end = substrate.admin().unwrap().list_offset(&tp, OffsetSpec::Latest).await.ok().flatten().map_or(0, |e| e.0);
    let mut consumer = substrate.consumer(ConsumerConfig::default()).unwrap();
    consumer.assign(vec![tp.clone()]).await.unwrap();
    consumer.seek(&tp, OffsetSpec::Earliest).await.unwrap();
    let mut out = Vec::new();
    while (out.len() as i64) < end {
        for batch in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            out.extend(batch.records().unwrap());
        }
    }
    out
}

fn text(bytes: &Option<bytes::Bytes>) -> &str {
    std::str::from_utf8(bytes.as_deref().unwrap_or_default()).unwrap()
}

fn headers_of(record: &ConsumerRecord) -> Vec<(&str, &str)> {
    record.headers.iter().map(|h| (h.key.as_str(), text(&h.value))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answers_once_its_records_are_in_the_topic() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path()).await;
    let substrate: Arc<dyn Substrate> = Arc::new(log.clone());
    let running = Running::start(substrate.clone(), &[]).await;
    let port = free_port();
    let config = json!({"connector.class": "webhook", "topic": "hooks",
        "http.listener": format!("http://127.0.0.1:{port}"), "http.path": "/events", "key.header": "X-Key",
        "http.auth.token": "s3cret", "http.max.body.bytes": "1024",
        "key.converter": "StringConverter", "value.converter": "StringConverter"});
    let (status, body) = running.rest.call("PUT", "/connectors/webhook/config", Some(config)).await;
    assert_eq!(status, 201, "{body}");
    wait_listening(port).await;
    let url = format!("http://127.0.0.1:{port}/events");
    let auth = ("Authorization", "Bearer s3cret");

    let answer = post(
        url.clone(),
        &[auth, ("Content-Type", "application/json"), ("X-Key", "k1"), ("X-Request-Id", "r1")],
        r#"{"n":1}"#,
    )
    .await;
    assert_eq!((answer.status, answer.body.as_str()), (200, r#"{"records":1}"#));
    // The 200 comes after the record is in the topic: read it right away, without waiting. (This
    // needs the worker to fire SourceRecord acks once a batch is written.)
    let written = records_now(&*substrate, "hooks").await;
    assert_eq!(written.len(), 1, "the record is durable when the request is answered");
    assert_eq!((text(&written[0].key), text(&written[0].value)), ("k1", r#"{"n":1}"#));
    assert_eq!(
        headers_of(&written[0]),
        [("content-type", "application/json"), ("x-key", "k1"), ("x-request-id", "r1")]
    );

    // Not text: BYTES, which StringConverter writes as base64.
    let answer =
        post(url.clone(), &[auth, ("Content-Type", "application/octet-stream")], vec![0u8, 159, 146, 150]).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // Refused requests write nothing.
    let answer = post(url.clone(), &[("Content-Type", "text/plain")], "no token").await;
    assert_eq!(answer.status, 401, "{answer:?}");
    let answer = post(url.clone(), &[("Authorization", "Bearer guess"), ("Content-Type", "text/plain")], "x").await;
    assert_eq!(answer.status, 401, "{answer:?}");
    let answer = post(url.clone(), &[auth, ("Content-Type", "text/plain")], "x".repeat(2000)).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("http.max.body.bytes (1024 bytes)"), "{answer:?}");
    let answer = post(format!("http://127.0.0.1:{port}/elsewhere"), &[auth], "x").await;
    assert_eq!(answer.status, 404, "{answer:?}");
    let answer = post(url.clone(), &[auth, ("Content-Type", "text/plain")], "after").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let written = records_now(&*substrate, "hooks").await;
    let values: Vec<&str> = written.iter().map(|r| text(&r.value)).collect();
    assert_eq!(values, [r#"{"n":1}"#, "AJ+Slg==", "after"], "the refused requests wrote nothing");
    assert_eq!(text(&written[2].key), "", "no X-Key: a null key");

    // Lines, and a rate limit.
    let port_lines = free_port();
    let config = json!({"connector.class": "freshet.connect.HttpSourceConnector", "topic": "lines",
        "http.listener": format!("http://127.0.0.1:{port_lines}"), "http.split.lines": "true",
        "http.max.requests.per.second": "1", "value.converter": "StringConverter"});
    let (status, body) = running.rest.call("PUT", "/connectors/lines/config", Some(config)).await;
    assert_eq!(status, 201, "{body}");
    wait_listening(port_lines).await;
    let lines_url = format!("http://127.0.0.1:{port_lines}/");
    let answer = post(lines_url.clone(), &[("Content-Type", "text/plain")], "a\n\nb\r\nc\n").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, r#"{"records":3}"#));
    let answer = post(lines_url, &[("Content-Type", "text/plain")], "d").await;
    assert_eq!((answer.status, answer.retry_after.as_deref()), (429, Some("1")), "{answer:?}");
    let written = records_now(&*substrate, "lines").await;
    assert_eq!(written.iter().map(|r| text(&r.value)).collect::<Vec<_>>(), ["a", "b", "c"]);

    // Offsets count the records taken; they are informational.
    let offsets =
        wait_for(&running.rest, "/connectors/webhook/offsets", |o| o["offsets"][0]["offset"]["seq"] == 2).await;
    assert_eq!(offsets["offsets"][0]["partition"], json!({"webhook": format!("http://127.0.0.1:{port}")}));

    // Deleted, the connector lets go of its port.
    assert_eq!(running.rest.call("DELETE", "/connectors/webhook", None).await.0, 204);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpListener::bind(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "port {port} is still taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await;
    log.close().await.unwrap();
}

/// What the test endpoint took: each accepted batch's values of `i`.
#[derive(Debug, Default)]
pub(crate) struct Endpoint {
    requests: usize,
    pub(crate) batches: Vec<Vec<i64>>,
}

/// An endpoint: `/ingest` answers its first two requests 503, then takes JSON arrays of
/// `{"i": n}`; `/reject` answers 400.
pub(crate) async fn endpoint() -> (std::net::SocketAddr, Arc<Mutex<Endpoint>>) {
    use axum::http::StatusCode;
    let state = Arc::new(Mutex::new(Endpoint::default()));
    let kept = state.clone();
    let app = axum::Router::new()
        .route(
            "/ingest",
            axum::routing::post(move |body: axum::body::Bytes| {
                let state = kept.clone();
                async move {
                    let mut state = state.lock().unwrap();
                    state.requests += 1;
                    if state.requests <= 2 {
                        return (StatusCode::SERVICE_UNAVAILABLE, "warming up".to_string());
                    }
                    let values: Vec<Json> = serde_json::from_slice(&body).unwrap();
                    state.batches.push(values.iter().map(|v| v["i"].as_i64().unwrap()).collect());
                    (StatusCode::OK, "ok".to_string())
                }
            }),
        )
        .route(
            "/reject",
            axum::routing::post(|| async { (StatusCode::BAD_REQUEST, "schema mismatch: field i is not a string") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_delivers_a_topic_once_in_order_through_failed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path()).await;
    let substrate: Arc<dyn Substrate> = Arc::new(log.clone());
    let admin = substrate.admin().unwrap();
    admin.create_topic(NewTopic { name: "out".into(), n_partitions: 1, ..Default::default() }).await.unwrap();
    let records = (0..1200).map(|i| ProducerRecord::new("out", Some(format!("k{i}")), format!(r#"{{"i":{i}}}"#)));
    substrate.producer().unwrap().send(records.collect()).await.unwrap();
    let (address, endpoint) = endpoint().await;
    let running = Running::start(substrate.clone(), &[]).await;

    let config = json!({"connector.class": "http", "topics": "out", "http.url": format!("http://{address}/ingest"),
        "batch.max.records": "500", "retry.backoff.ms": "10",
        "key.converter": "StringConverter", "value.converter": "JsonConverter",
        "value.converter.schemas.enable": "false"});
    let (status, body) = running.rest.call("PUT", "/connectors/http-out/config", Some(config)).await;
    assert_eq!(status, 201, "{body}");
    // The committed offsets cover only what the endpoint took, so reaching the end means all of it
    // was delivered.
    wait_for(&running.rest, "/connectors/http-out/offsets", |o| o["offsets"][0]["offset"]["kafka_offset"] == 1200)
        .await;
    {
        let endpoint = endpoint.lock().unwrap();
        let delivered: Vec<i64> = endpoint.batches.iter().flatten().copied().collect();
        assert_eq!(delivered, (0..1200).collect::<Vec<_>>(), "every record once, in order");
        assert!(endpoint.batches.iter().all(|b| b.len() <= 500), "{:?}", endpoint.batches.iter().map(Vec::len));
        assert_eq!(endpoint.requests, endpoint.batches.len() + 2, "the two 503s were retried");
    }

    let config = json!({"connector.class": "HttpSink", "topics": "out", "http.url": format!("http://{address}/reject"),
        "errors.task.restart.max": "0", "key.converter": "StringConverter", "value.converter": "JsonConverter",
        "value.converter.schemas.enable": "false"});
    let (status, body) = running.rest.call("PUT", "/connectors/http-reject/config", Some(config)).await;
    assert_eq!(status, 201, "{body}");
    let status =
        wait_for(&running.rest, "/connectors/http-reject/status", |s| s["tasks"][0]["state"] == "FAILED").await;
    let trace = status["tasks"][0]["trace"].as_str().unwrap();
    assert!(trace.contains("400 Bad Request: schema mismatch: field i is not a string"), "{trace}");
    let (_, offsets) = running.rest.call("GET", "/connectors/http-reject/offsets", None).await;
    assert_eq!(offsets, json!({"offsets": []}), "nothing delivered, nothing committed");

    // https:// is refused up front.
    let config = json!({"connector.class": "http", "topics": "out", "http.url": "https://example.com/in"});
    let (status, body) = running.rest.call("PUT", "/connectors/http-tls/config", Some(config)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("https:// is not supported yet"), "{body}");
    running.shutdown().await;
    log.close().await.unwrap();
}
