//! The contract every built-in connector keeps, run over each on the embedded log. A source:
//! what it is fed reaches the topic; paused, nothing moves; resumed, it goes on; stopped with its
//! worker and started on another, it resumes from its offsets, every record once. A sink: the
//! topic reaches it; paused, nothing arrives; resumed, it goes on; restarted, it resumes from its
//! group's offsets, every record once; two workers running it share the topic's partitions. Both:
//! in a group of two distributed workers, when the worker running the task leaves, the other
//! takes it over and goes on from the stored offsets, every record once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use freshet_core::{NewTopic, ProducerRecord, Substrate};
use serde_json::{json, Value as Json};

use crate::http::{endpoint, free_port, post, records_now, wait_listening, Endpoint};
use crate::support::*;

/// Two distributed workers of one group on `substrate`, and the index of the one that runs
/// `connector`'s task 0 once it is RUNNING.
async fn group_running(
    substrate: &Arc<dyn Substrate>,
    extra: &[(&str, &str)],
    connector: &str,
    config: Json,
) -> (Vec<GroupWorker>, usize) {
    let group =
        vec![GroupWorker::start(substrate.clone(), extra).await, GroupWorker::start(substrate.clone(), extra).await];
    let path = format!("/connectors/{connector}/config");
    assert_eq!(settled(&group[0].rest, "PUT", &path, Some(config)).await.0, 201);
    let status =
        wait_for(&group[1].rest, &format!("/connectors/{connector}/status"), |s| s["tasks"][0]["state"] == "RUNNING")
            .await;
    let owner =
        group.iter().position(|w| status["tasks"][0]["worker_id"] == w.worker.id()).expect("one of the two runs it");
    (group, owner)
}

/// The worker running the task leaves; waits until the other runs it.
async fn hand_over(mut group: Vec<GroupWorker>, owner: usize, connector: &str) -> GroupWorker {
    group.remove(owner).shutdown().await;
    let other = group.pop().unwrap();
    let id = other.worker.id().to_string();
    wait_for(&other.rest, &format!("/connectors/{connector}/status"), |s| {
        s["tasks"][0]["state"] == "RUNNING" && s["tasks"][0]["worker_id"] == id.as_str()
    })
    .await;
    other
}

const CONVERTERS: &[(&str, &str)] = &[("key.converter", "StringConverter"), ("value.converter", "StringConverter")];

fn event(i: usize) -> String {
    format!("event {i:04}")
}

/// A built-in source and how to feed it.
#[derive(Debug, Clone, Copy)]
enum Source {
    File,
    Webhook,
}

impl Source {
    fn config(self, dir: &std::path::Path, port: u16) -> Json {
        match self {
            Source::File => json!({"connector.class": "FileStreamSource",
                "file": dir.join("in.txt").to_str().unwrap(), "topic": "events"}),
            Source::Webhook => json!({"connector.class": "HttpSource",
                "http.listener": format!("http://127.0.0.1:{port}"), "topic": "events", "http.split.lines": "true"}),
        }
    }

    /// Gives it events `from..to`: appended lines, or one POST (answered once they are written).
    async fn feed(self, dir: &std::path::Path, port: u16, from: usize, to: usize) {
        let lines: Vec<String> = (from..to).map(event).collect();
        match self {
            Source::File => append(&dir.join("in.txt"), lines),
            Source::Webhook => {
                let answer =
                    post(format!("http://127.0.0.1:{port}/"), &[("Content-Type", "text/plain")], lines.join("\n"))
                        .await;
                assert_eq!(answer.status, 200, "{answer:?}");
            }
        }
    }

    async fn started(self, port: u16) {
        if let Source::Webhook = self {
            wait_listening(port).await;
        }
    }
}

/// The values of topic `events` once it has `n` records (all of them then).
async fn events(substrate: &dyn Substrate, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let exists = substrate.admin().unwrap().describe_topic("events").await.is_ok();
        let records = if exists { records_now(substrate, "events").await } else { Vec::new() };
        if records.len() >= n {
            return records.iter().map(|r| String::from_utf8(r.value.as_deref().unwrap().to_vec()).unwrap()).collect();
        }
        assert!(tokio::time::Instant::now() < deadline, "events has {} of {n} records", records.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn source_contract(source: Source) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = log(dir.path()).await;
    let substrate: Arc<dyn Substrate> = Arc::new(log.clone());
    let config = source.config(dir.path(), port);

    let a = Running::start(substrate.clone(), CONVERTERS).await;
    assert_eq!(a.rest.call("PUT", "/connectors/src/config", Some(config.clone())).await.0, 201);
    source.started(port).await;
    source.feed(dir.path(), port, 0, 100).await;
    assert_eq!(events(&*substrate, 100).await, (0..100).map(event).collect::<Vec<_>>(), "{source:?}: fed, written");

    // Paused: what it is fed waits; resumed, it goes on.
    assert_eq!(a.rest.call("PUT", "/connectors/src/pause", None).await.0, 202);
    wait_for(&a.rest, "/connectors/src/status", |s| s["tasks"][0]["state"] == "PAUSED").await;
    let feeding = {
        let path = dir.path().to_path_buf();
        tokio::spawn(async move { source.feed(&path, port, 100, 150).await })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(records_now(&*substrate, "events").await.len(), 100, "{source:?}: a paused source writes nothing");
    assert_eq!(a.rest.call("PUT", "/connectors/src/resume", None).await.0, 202);
    feeding.await.unwrap();
    events(&*substrate, 150).await;
    a.shutdown().await;

    // Another worker on the same log goes on from the stored offsets.
    let b = Running::start(substrate.clone(), CONVERTERS).await;
    assert_eq!(b.rest.call("PUT", "/connectors/src/config", Some(config.clone())).await.0, 201);
    source.started(port).await;
    source.feed(dir.path(), port, 150, 200).await;
    events(&*substrate, 200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        events(&*substrate, 200).await,
        (0..200).map(event).collect::<Vec<_>>(),
        "{source:?}: every record once"
    );
    b.shutdown().await;

    // In a group of two distributed workers: the one running the task leaves, the other goes on.
    let (group, owner) = group_running(&substrate, CONVERTERS, "src", config).await;
    source.started(port).await;
    source.feed(dir.path(), port, 200, 250).await;
    events(&*substrate, 250).await;
    let other = hand_over(group, owner, "src").await;
    source.started(port).await;
    source.feed(dir.path(), port, 250, 300).await;
    events(&*substrate, 300).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        events(&*substrate, 300).await,
        (0..300).map(event).collect::<Vec<_>>(),
        "{source:?}: every record once across the hand-over"
    );
    other.shutdown().await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filestream_source_keeps_the_source_contract() {
    source_contract(Source::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_source_keeps_the_source_contract() {
    source_contract(Source::Webhook).await;
}

/// A built-in sink and how to see what it delivered.
#[derive(Debug, Clone)]
enum Sink {
    File(std::path::PathBuf),
    Blackhole,
    Stdout,
    Http(std::net::SocketAddr, Arc<Mutex<Endpoint>>),
}

impl Sink {
    fn config(&self, worker: usize) -> Json {
        match self {
            Sink::File(dir) => json!({"connector.class": "FileStreamSink", "topics": "in",
                "file": dir.join(format!("out-{worker}.txt")).to_str().unwrap()}),
            Sink::Blackhole => json!({"connector.class": "BlackholeSink", "topics": "in"}),
            Sink::Stdout => json!({"connector.class": "StdoutSink", "topics": "in"}),
            Sink::Http(address, _) => json!({"connector.class": "HttpSink", "topics": "in",
                "http.url": format!("http://{address}/ingest"), "retry.backoff.ms": "10"}),
        }
    }

    /// What arrived, as the values' numbers (`None` for a sink that keeps nothing to look at).
    fn delivered(&self) -> Option<Vec<i64>> {
        match self {
            Sink::File(dir) => Some(
                (0..4)
                    .flat_map(|w| lines(&dir.join(format!("out-{w}.txt"))))
                    .map(|l| l.trim_start_matches("{i=").trim_end_matches('}').parse().unwrap())
                    .collect(),
            ),
            Sink::Blackhole | Sink::Stdout => None,
            Sink::Http(_, endpoint) => Some(endpoint.lock().unwrap().batches.iter().flatten().copied().collect()),
        }
    }
}

/// Waits until the sink's group committed offsets summing to `n`, and for a sink that keeps
/// what it got, until it has `n` values; then checks each arrived once.
async fn delivered(sink: &Sink, substrate: &dyn Substrate, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let committed: i64 =
            substrate.admin().unwrap().group_offsets("connect-snk").await.unwrap().values().map(|o| o.offset).sum();
        let got = sink.delivered();
        if committed == n && got.as_ref().is_none_or(|g| g.len() as i64 == n) {
            if let Some(got) = got {
                let unique: BTreeSet<i64> = got.iter().copied().collect();
                assert_eq!(unique, (0..n).collect::<BTreeSet<_>>(), "{sink:?}: every record once");
            }
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sink:?}: committed {committed}, delivered {:?} of {n}",
            got.map(|g| g.len())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sink_contract(sink: Sink) {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path()).await;
    let substrate: Arc<dyn Substrate> = Arc::new(log.clone());
    substrate
        .admin()
        .unwrap()
        .create_topic(NewTopic { name: "in".into(), n_partitions: 2, ..Default::default() })
        .await
        .unwrap();
    let producer = substrate.producer().unwrap();
    let send = |from: i64, to: i64| {
        let producer = producer.clone();
        async move {
            let records = (from..to)
                .map(|i| ProducerRecord::new("in", Some(format!("k{i}")), format!(r#"{{"i":{i}}}"#)))
                .collect();
            producer.send(records).await.unwrap();
        }
    };
    let worker = [
        ("key.converter", "StringConverter"),
        ("value.converter", "JsonConverter"),
        ("value.converter.schemas.enable", "false"),
    ];

    send(0, 100).await;
    let a = Running::start(substrate.clone(), &worker).await;
    assert_eq!(a.rest.call("PUT", "/connectors/snk/config", Some(sink.config(0))).await.0, 201);
    delivered(&sink, &*substrate, 100).await;

    // Paused: nothing arrives; resumed, it goes on.
    assert_eq!(a.rest.call("PUT", "/connectors/snk/pause", None).await.0, 202);
    wait_for(&a.rest, "/connectors/snk/status", |s| s["tasks"][0]["state"] == "PAUSED").await;
    send(100, 150).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sink.delivered().map(|d| d.len()).unwrap_or(100), 100, "{sink:?}: a paused sink takes nothing");
    assert_eq!(a.rest.call("PUT", "/connectors/snk/resume", None).await.0, 202);
    delivered(&sink, &*substrate, 150).await;
    a.shutdown().await;

    // Restarted on another worker: it resumes from the group's offsets.
    send(150, 200).await;
    let b = Running::start(substrate.clone(), &worker).await;
    assert_eq!(b.rest.call("PUT", "/connectors/snk/config", Some(sink.config(1))).await.0, 201);
    delivered(&sink, &*substrate, 200).await;

    // A second worker runs it too: the two share the partitions.
    let c = Running::start(substrate.clone(), &worker).await;
    assert_eq!(c.rest.call("PUT", "/connectors/snk/config", Some(sink.config(2))).await.0, 201);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let members = substrate.admin().unwrap().group_members("connect-snk").await.unwrap();
        if members.as_ref().is_some_and(|m| m.members.len() == 2 && m.members.iter().all(|x| x.assignment.len() == 1)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{sink:?}: the group did not split: {members:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(200, 300).await;
    delivered(&sink, &*substrate, 300).await;
    b.shutdown().await;
    c.shutdown().await;

    // In a group of two distributed workers: the one running the task leaves, the other goes on.
    let (group, owner) = group_running(&substrate, &worker, "snk", sink.config(3)).await;
    send(300, 350).await;
    delivered(&sink, &*substrate, 350).await;
    let other = hand_over(group, owner, "snk").await;
    send(350, 400).await;
    delivered(&sink, &*substrate, 400).await;
    other.shutdown().await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filestream_sink_keeps_the_sink_contract() {
    let dir = tempfile::tempdir().unwrap();
    sink_contract(Sink::File(dir.path().to_path_buf())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blackhole_sink_keeps_the_sink_contract() {
    sink_contract(Sink::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdout_sink_keeps_the_sink_contract() {
    sink_contract(Sink::Stdout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_sink_keeps_the_sink_contract() {
    let (address, state) = endpoint().await;
    sink_contract(Sink::Http(address, state)).await;
}
