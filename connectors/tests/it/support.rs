//! What the worker tests share: an embedded log, a worker serving its REST API, a real HTTP
//! client, and waiting for files to fill.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use freshet_connectors::config::Props;
use freshet_connectors::{DistributedWorker, Plugins, Worker};
use freshet_core::config::LogConfig;
use freshet_core::{
    ConsumerConfig, ConsumerRecord, Embedded, NewTopic, OffsetSpec, ProducerRecord, Substrate, TopicPartition,
};
use serde_json::Value as Json;

/// An embedded log in a temporary directory.
pub(crate) async fn log(dir: &Path) -> Embedded {
    Embedded::open(dir.join("log"), LogConfig::default()).await.unwrap()
}

/// A worker on `substrate` and its REST API on a free port.
pub(crate) struct Running {
    pub(crate) worker: Worker,
    pub(crate) rest: Rest,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub(crate) async fn start(substrate: Arc<dyn Substrate>, props: &[(&str, &str)]) -> Running {
        let mut worker_props: Props = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        worker_props.entry("offset.flush.interval.ms".into()).or_insert_with(|| "200".into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let worker = Worker::start(substrate, &worker_props, Plugins::builtin(), addr.to_string()).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server =
            tokio::spawn(freshet_connectors::rest::serve(listener, std::sync::Arc::new(worker.clone()), async move {
                let _ = rx.await;
            }));
        Running { worker, rest: Rest::new(format!("http://{addr}")), stop: Some(tx), server: Some(server) }
    }

    /// Stops the connectors (storing their offsets) and the REST server.
    pub(crate) async fn shutdown(mut self) {
        self.worker.shutdown().await;
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap().unwrap();
    }
}

/// A real HTTP client on the worker's REST API.
pub(crate) struct Rest {
    base: String,
    agent: ureq::Agent,
}

impl Rest {
    pub(crate) fn new(base: String) -> Rest {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Rest { base, agent }
    }

    /// Sends `method path` with a JSON body (or none) and gives the status and the JSON answer
    /// (`Null` for an empty body).
    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Json>) -> (u16, Json) {
        self.raw(method, path, body.map(|b| b.to_string())).await
    }

    /// As `call`, with a body sent as given.
    pub(crate) async fn raw(&self, method: &str, path: &str, body: Option<String>) -> (u16, Json) {
        let (agent, url, method) = (self.agent.clone(), format!("{}{path}", self.base), method.to_string());
        tokio::task::spawn_blocking(move || {
            let result = match (method.as_str(), body) {
                ("GET", _) => agent.get(&url).call(),
                ("DELETE", _) => agent.delete(&url).call(),
                ("POST", Some(b)) => agent.post(&url).header("Content-Type", "application/json").send(b),
                ("POST", None) => agent.post(&url).send_empty(),
                ("PUT", Some(b)) => agent.put(&url).header("Content-Type", "application/json").send(b),
                ("PUT", None) => agent.put(&url).send_empty(),
                ("PATCH", Some(b)) => agent.patch(&url).header("Content-Type", "application/json").send(b),
                (m, _) => panic!("no such method in these tests: {m}"),
            };
            let mut response = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap();
            let json =
                if text.is_empty() { Json::Null } else { serde_json::from_str(&text).unwrap_or(Json::String(text)) };
            (status, json)
        })
        .await
        .unwrap()
    }
}

/// The lines of a file (none when it does not exist).
pub(crate) fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|t| t.lines().map(str::to_string).collect()).unwrap_or_default()
}

/// Waits until `path` has at least `n` lines; its lines.
pub(crate) async fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = lines(path);
        if got.len() >= n {
            return got;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} has {} lines, waiting for {n}", path.display(), got.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `check` holds of the REST answer to `GET path`.
pub(crate) async fn wait_for(rest: &Rest, path: &str, check: impl Fn(&Json) -> bool) -> Json {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = rest.call("GET", path, None).await;
        if check(&body) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "GET {path} is still {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Appends lines to a file.
pub(crate) fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for line in lines {
        writeln!(f, "{line}").unwrap();
    }
    f.sync_all().unwrap();
}

/// A distributed worker and its REST API on a free port.
pub(crate) struct GroupWorker {
    pub(crate) worker: DistributedWorker,
    pub(crate) rest: Rest,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl GroupWorker {
    pub(crate) async fn start(substrate: Arc<dyn Substrate>, extra: &[(&str, &str)]) -> GroupWorker {
        let mut props: Props = [
            ("group.id", "cluster"),
            ("session.timeout.ms", "3000"),
            ("heartbeat.interval.ms", "100"),
            ("rebalance.timeout.ms", "3000"),
            ("scheduled.rebalance.max.delay.ms", "0"),
            ("offset.flush.interval.ms", "100"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        props.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let worker = DistributedWorker::start(substrate, &props, Plugins::builtin(), addr.to_string()).await.unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(freshet_connectors::rest::serve(listener, Arc::new(worker.clone()), async move {
            let _ = rx.await;
        }));
        GroupWorker { worker, rest: Rest::new(format!("http://{addr}")), stop, server }
    }

    pub(crate) async fn stable(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.worker.rebalancing() {
            assert!(tokio::time::Instant::now() < deadline, "worker {} never joined its group", self.worker.id());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn shutdown(self) {
        self.worker.shutdown().await;
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
    }
}

/// `method path` on `rest`, asked again while the worker answers that the group rebalances.
pub(crate) async fn settled(rest: &Rest, method: &str, path: &str, body: Option<Json>) -> (u16, Json) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answer) = rest.call(method, path, body.clone()).await;
        let rebalancing =
            status == 409 && answer["message"] == "Request cannot be completed because a rebalance is expected";
        if !rebalancing || tokio::time::Instant::now() > deadline {
            return (status, answer);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every record of partition 0 of `topic`, once there are at least `n`.
pub(crate) async fn read(substrate: &dyn Substrate, topic: &str, n: usize) -> Vec<ConsumerRecord> {
    let mut consumer = substrate.consumer(ConsumerConfig::default()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while substrate.admin().unwrap().describe_topic(topic).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "{topic} was never created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tp = TopicPartition::new(topic, 0);
    consumer.assign(vec![tp.clone()]).await.unwrap();
    consumer.seek(&tp, OffsetSpec::Earliest).await.unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        assert!(tokio::time::Instant::now() < deadline, "{topic} has {} of {n} records", out.len());
        for batch in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            out.extend(batch.records().unwrap());
        }
    }
    out
}

/// Creates `name`, of one partition.
pub(crate) async fn topic(substrate: &dyn Substrate, name: &str) {
    topic_of(substrate, name, 1).await
}

/// Creates `name` with `partitions`.
pub(crate) async fn topic_of(substrate: &dyn Substrate, name: &str, partitions: u32) {
    let admin = substrate.admin().unwrap();
    admin.create_topic(NewTopic { name: name.into(), n_partitions: partitions, ..Default::default() }).await.unwrap();
}

/// Sends `records`, acknowledged.
pub(crate) async fn send(substrate: &dyn Substrate, records: Vec<ProducerRecord>) {
    substrate.producer().unwrap().send(records).await.unwrap();
}

/// A record of `topic` with a text key and value (`None`: a tombstone).
pub(crate) fn record(topic: &str, key: Option<String>, value: Option<String>) -> ProducerRecord {
    let mut r = ProducerRecord::new(topic, key, "");
    r.value = value.map(Into::into);
    r
}

/// Creates connector `name` with `config` through the REST API.
pub(crate) async fn create(running: &Running, name: &str, config: Json) {
    let (status, body) = running.rest.call("PUT", &format!("/connectors/{name}/config"), Some(config)).await;
    assert_eq!(status, 201, "{body}");
}

/// Waits until the connector's committed offset of partition 0 reaches `end`.
pub(crate) async fn wait_committed(running: &Running, name: &str, end: i64) {
    wait_offsets(running, name, &[(0, end)]).await
}

/// Waits until the connector's committed offset of each (partition, offset) reaches it.
pub(crate) async fn wait_offsets(running: &Running, name: &str, ends: &[(u32, i64)]) {
    wait_for(&running.rest, &format!("/connectors/{name}/offsets"), |o| {
        ends.iter().all(|(p, end)| {
            o["offsets"].as_array().is_some_and(|a| {
                a.iter().any(|x| x["partition"]["kafka_partition"] == *p && x["offset"]["kafka_offset"] == *end)
            })
        })
    })
    .await;
}

/// `base` with the keys of `extra` added.
pub(crate) fn with(mut base: Json, extra: Json) -> Json {
    base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    base
}

/// The text of a record's header `key`.
pub(crate) fn header<'a>(record: &'a ConsumerRecord, key: &str) -> &'a str {
    let h = record.headers.iter().find(|h| h.key == key).unwrap_or_else(|| panic!("no header {key}"));
    std::str::from_utf8(h.value.as_deref().unwrap()).unwrap()
}
