//! The HTTP sink: records sent to an endpoint in JSON batches (see the module above).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use freshet_core::TopicPartition;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::{JoinError, JoinSet};

use super::NO_TLS;
use crate::config::{split_list, Config, ConfigDef, ConfigKey, ConfigType, ConfigValue, Importance, Props, Validator};
use crate::connector::{Connector, SinkConnector, SinkTask};
use crate::converter::{Converter, JsonConverter};
use crate::data::Value;
use crate::error::{ConnectError, Result};
use crate::record::{SinkOffsets, SinkRecord};

/// What the sink calls itself in requests.
const USER_AGENT: &str = concat!("freshet-http-sink/", env!("CARGO_PKG_VERSION"));

/// How much of an error answer's body a failure quotes, in characters.
const QUOTED_BODY_CHARS: usize = 500;

/// The most of an answer's body that is read (to quote it, and so the connection can be reused).
const ANSWER_BODY_BYTES_MAX: usize = 64 * 1024;

/// The connector's keys.
fn config_def() -> ConfigDef {
    use ConfigType::*;
    use Importance::*;
    ConfigDef::new()
        .define(ConfigKey::required(
            "http.url",
            String,
            High,
            "Where records are sent: http://host[:port]/path. https:// is not supported yet.",
        ))
        .define(
            ConfigKey::optional("http.method", String, Some("POST"), Medium, "The requests' method: POST or PUT.")
                .validated(Validator::one_of(&["POST", "PUT"])),
        )
        .define(
            ConfigKey::optional(
                "batch.max.records",
                Int,
                Some("500"),
                Medium,
                "The most records of one partition in a request (with batch.json.as.array).",
            )
            .validated(Validator::AtLeast(1.0)),
        )
        .define(ConfigKey::optional(
            "batch.json.as.array",
            Boolean,
            Some("true"),
            Medium,
            "true: a request is a JSON array of records' values; false: one request per record, its body the \
             value's bytes (a string's text, bytes as they are, anything else as JSON).",
        ))
        .define(ConfigKey::optional(
            "http.headers",
            List,
            Some(""),
            Low,
            "Headers every request carries, as Name:Value, comma-separated (values without commas).",
        ))
        .define(
            ConfigKey::optional(
                "max.retries",
                Int,
                Some("10"),
                Medium,
                "How many times a request that failed with a connection error, a timeout, 429 or 5xx is retried \
                 before the task fails.",
            )
            .validated(Validator::AtLeast(0.0)),
        )
        .define(
            ConfigKey::optional(
                "retry.backoff.ms",
                Long,
                Some("100"),
                Medium,
                "The wait before the first retry, in ms; it doubles at each retry.",
            )
            .validated(Validator::AtLeast(0.0)),
        )
        .define(
            ConfigKey::optional(
                "retry.backoff.max.ms",
                Long,
                Some("10000"),
                Low,
                "The longest wait between retries, in ms (also for an answer's Retry-After).",
            )
            .validated(Validator::AtLeast(0.0)),
        )
        .define(
            ConfigKey::optional(
                "http.timeout.ms",
                Long,
                Some("30000"),
                Medium,
                "How long a request may take, connecting and answering included, in ms; then it is retried.",
            )
            .validated(Validator::AtLeast(1.0)),
        )
        .define(
            ConfigKey::optional(
                "max.in.flight.requests",
                Int,
                Some("4"),
                Medium,
                "The most requests a task has under way at once (one per partition at a time, to keep each \
                 partition's order).",
            )
            .validated(Validator::AtLeast(1.0)),
        )
        .define(ConfigKey::optional(
            "http.auth.token",
            Password,
            None,
            High,
            "A token sent as 'Authorization: Bearer <token>'.",
        ))
}

/// The endpoint `http.url` names, or why it names none.
fn parse_url(value: &str) -> std::result::Result<Uri, String> {
    let uri: Uri = value.trim().parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => {}
        Some(s) if s.eq_ignore_ascii_case("https") => return Err(NO_TLS.into()),
        Some(s) => return Err(format!("the scheme {s}:// is not http://")),
        None => return Err("expected an absolute URL: http://host[:port]/path".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(uri)
}

/// The headers `http.headers` lists, or what is wrong with them.
fn parse_headers(value: &str) -> std::result::Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for entry in split_list(value) {
        let (name, value) = entry.split_once(':').ok_or_else(|| format!("{entry:?} is not Name:Value"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("{:?} is not an HTTP header name", name.trim()))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of {name} is not an HTTP header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// What is wrong with `props` beyond the keys' types.
fn problems(props: &Props) -> Vec<ConfigValue> {
    let problem = |key: &str, error: String| ConfigValue {
        name: key.into(),
        value: props.get(key).cloned(),
        errors: vec![error],
        password: false,
    };
    let mut out = Vec::new();
    if let Some(Err(e)) = props.get("http.url").map(|u| parse_url(u)) {
        out.push(problem("http.url", e));
    }
    if let Some(Err(e)) = props.get("http.headers").map(|h| parse_headers(h)) {
        out.push(problem("http.headers", e));
    }
    out
}

/// The HTTP sink connector.
#[derive(Debug, Default)]
pub struct HttpSink {
    props: Props,
}

#[async_trait]
impl Connector for HttpSink {
    fn config_def(&self) -> ConfigDef {
        config_def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValue> {
        problems(props)
    }

    async fn start(&mut self, config: &Config) -> Result<()> {
        self.props = config.originals().clone();
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Props>> {
        // Tasks share the topics' partitions through the consumer group.
        Ok(vec![self.props.clone(); max_tasks])
    }
}

impl SinkConnector for HttpSink {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(HttpSinkTask::default())
    }
}

/// How retries are spaced.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Retries {
    max: u32,
    backoff: Duration,
    backoff_max: Duration,
}

impl Retries {
    /// The wait before retry number `retry` (from 1): the backoff doubled at each retry, or what
    /// the endpoint asked for (`Retry-After`) when that is longer; never over the cap.
    fn wait(&self, retry: u32, asked: Option<Duration>) -> Duration {
        let doubled = self.backoff.saturating_mul(1 << retry.saturating_sub(1).min(20));
        doubled.max(asked.unwrap_or_default()).min(self.backoff_max)
    }
}

/// What one attempt at a request came to.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// A 2xx.
    Delivered(StatusCode),
    /// A failure that may pass: a connection error, a timeout, 429, 5xx; maybe with how long the
    /// endpoint asked to wait.
    Retry { reason: String, asked: Option<Duration> },
    /// Any other answer: retrying would not help.
    Refused(String),
}

/// What an answer means for the request.
fn outcome(method: &Method, uri: &Uri, status: StatusCode, body: &[u8], asked: Option<Duration>) -> Outcome {
    if status.is_success() {
        return Outcome::Delivered(status);
    }
    let quoted = quote(body);
    let what = if quoted.is_empty() {
        format!("{method} {uri} was answered {status}")
    } else {
        format!("{method} {uri} was answered {status}: {quoted}")
    };
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Outcome::Retry { reason: what, asked }
    } else {
        Outcome::Refused(format!(
            "{what} (a {} is not retried: fix the records or the endpoint, then restart the task)",
            status.as_u16()
        ))
    }
}

/// The start of an answer's body, for a message.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(QUOTED_BODY_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// An answer's `Retry-After`, when it gives seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(seconds))
}

/// An error with its causes, as hyper's say little on their own ("client error (Connect)").
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Records of one partition, ready to send.
#[derive(Debug)]
struct Batch {
    tp: TopicPartition,
    body: Bytes,
    content_type: Option<&'static str>,
    n_records: usize,
}

/// A JSON array being filled with one partition's values.
#[derive(Debug, Default)]
struct OpenBatch {
    body: Vec<u8>,
    n_records: usize,
}

impl OpenBatch {
    fn push(&mut self, json: &[u8]) {
        self.body.push(if self.n_records == 0 { b'[' } else { b',' });
        self.body.extend_from_slice(json);
        self.n_records += 1;
    }

    fn close(mut self, tp: TopicPartition) -> Batch {
        self.body.push(b']');
        Batch { tp, body: Bytes::from(self.body), content_type: Some("application/json"), n_records: self.n_records }
    }
}

/// The endpoint, the client, and how requests are made and retried.
#[derive(Debug)]
struct Delivery {
    uri: Uri,
    method: Method,
    /// What every request carries: the user agent, `http.headers`, the token.
    headers: HeaderMap,
    timeout: Duration,
    retries: Retries,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Delivery {
    fn new(config: &Config, max_in_flight: usize) -> Result<Delivery> {
        let url = config.string("http.url")?;
        let uri = parse_url(url).map_err(|e| ConnectError::config("http.url", url, e))?;
        let method = if config.string("http.method")?.eq_ignore_ascii_case("PUT") { Method::PUT } else { Method::POST };
        let mut headers = HeaderMap::new();
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        let listed = config.get("http.headers").unwrap_or("");
        let listed = parse_headers(listed).map_err(|e| ConnectError::config("http.headers", listed, e))?;
        for name in listed.keys() {
            headers.remove(name);
        }
        for (name, value) in &listed {
            headers.append(name.clone(), value.clone());
        }
        if let Some(token) = config.get("http.auth.token") {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ConnectError::config("http.auth.token", "[hidden]", "not usable in an HTTP header"))?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        let timeout = Duration::from_millis(config.number("http.timeout.ms")?);
        let retries = Retries {
            max: config.number("max.retries")?,
            backoff: Duration::from_millis(config.number("retry.backoff.ms")?),
            backoff_max: Duration::from_millis(config.number("retry.backoff.max.ms")?),
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(max_in_flight).build(connector);
        Ok(Delivery { uri, method, headers, timeout, retries, client })
    }

    /// Sends a batch until it is delivered, refused, or out of retries.
    async fn deliver(&self, batch: &Batch) -> Result<()> {
        let mut retries = 0;
        loop {
            let attempt = tokio::time::timeout(self.timeout, self.send(batch)).await.unwrap_or_else(|_| {
                let reason = format!("no answer within http.timeout.ms ({} ms)", self.timeout.as_millis());
                Outcome::Retry { reason, asked: None }
            });
            let (reason, asked) = match attempt {
                Outcome::Delivered(status) => {
                    tracing::debug!(partition = %batch.tp, n_records = batch.n_records, %status, "sent a batch");
                    return Ok(());
                }
                Outcome::Refused(message) => return Err(ConnectError::Task(message)),
                Outcome::Retry { reason, asked } => (reason, asked),
            };
            if retries >= self.retries.max {
                return Err(ConnectError::Task(format!(
                    "{} {} failed {} times, giving up (max.retries is {}); the last: {reason}",
                    self.method,
                    self.uri,
                    retries + 1,
                    self.retries.max
                )));
            }
            retries += 1;
            let wait = self.retries.wait(retries, asked);
            tracing::warn!(url = %self.uri, partition = %batch.tp, n_records = batch.n_records, retry = retries,
                ?wait, reason, "an HTTP sink request failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt.
    async fn send(&self, batch: &Batch) -> Outcome {
        let mut request = Request::new(Full::new(batch.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        if let Some(content_type) = batch.content_type {
            // Unless http.headers says otherwise.
            request.headers_mut().entry(header::CONTENT_TYPE).or_insert(HeaderValue::from_static(content_type));
        }
        let response = match self.client.request(request).await {
            Ok(response) => response,
            Err(e) => return Outcome::Retry { reason: format!("sending failed: {}", chain(&e)), asked: None },
        };
        let status = response.status();
        let asked = retry_after(response.headers());
        let body = match Limited::new(response.into_body(), ANSWER_BODY_BYTES_MAX).collect().await {
            Ok(collected) => collected.to_bytes(),
            // Too long or cut short: the status says what matters.
            Err(_) => Bytes::new(),
        };
        outcome(&self.method, &self.uri, status, &body, asked)
    }
}

/// The HTTP sink's task: buffers records in batches per partition and sends them, a partition's
/// one at a time.
#[derive(Debug)]
pub struct HttpSinkTask {
    delivery: Option<Arc<Delivery>>,
    renderer: JsonConverter,
    batch_max_records: usize,
    as_array: bool,
    max_in_flight: usize,
    /// Values put and not in a batch yet, per partition.
    open: BTreeMap<TopicPartition, OpenBatch>,
    /// Batches made and not sent yet, in the order made.
    queued: VecDeque<Batch>,
    /// Partitions with a request under way.
    busy: BTreeSet<TopicPartition>,
    requests: JoinSet<(TopicPartition, Result<()>)>,
}

impl Default for HttpSinkTask {
    fn default() -> Self {
        HttpSinkTask {
            delivery: None,
            renderer: JsonConverter::with_schemas(false),
            batch_max_records: 500,
            as_array: true,
            max_in_flight: 4,
            open: BTreeMap::new(),
            queued: VecDeque::new(),
            busy: BTreeSet::new(),
            requests: JoinSet::new(),
        }
    }
}

impl HttpSinkTask {
    /// Adds a record to its partition's batch.
    fn add(&mut self, record: &SinkRecord) -> Result<()> {
        let tp = TopicPartition::new(record.original_topic.clone(), record.original_partition);
        let r = &record.record;
        let json = || {
            self.renderer.encode(&r.topic, r.value_schema.as_ref(), &r.value).map_err(|e| {
                ConnectError::data(format!(
                    "the value of {tp} offset {} cannot be written as JSON: {e}",
                    record.kafka_offset
                ))
            })
        };
        if !self.as_array {
            let (body, content_type) = match &r.value {
                Value::Null => (Bytes::new(), None),
                Value::String(s) => (Bytes::copy_from_slice(s.as_bytes()), Some("text/plain; charset=utf-8")),
                Value::Bytes(b) => (b.clone(), Some("application/octet-stream")),
                _ => (json()?.unwrap_or_default(), Some("application/json")),
            };
            self.queued.push_back(Batch { tp, body, content_type, n_records: 1 });
            return Ok(());
        }
        let value = json()?;
        let open = self.open.entry(tp.clone()).or_default();
        open.push(value.as_deref().unwrap_or(b"null"));
        if open.n_records >= self.batch_max_records {
            let full = self.open.remove(&tp).expect("added above");
            self.queued.push_back(full.close(tp));
        }
        Ok(())
    }

    /// Closes the batch of each partition with nothing under way or waiting, so that it goes now
    /// rather than when full: a partition's batch grows only while the endpoint is busy with the
    /// one before, so records wait for a full batch only under load.
    fn send_idle(&mut self) {
        let idle: Vec<TopicPartition> = self
            .open
            .keys()
            .filter(|tp| !self.busy.contains(*tp) && !self.queued.iter().any(|b| &b.tp == *tp))
            .cloned()
            .collect();
        for tp in idle {
            let open = self.open.remove(&tp).expect("listed above");
            self.queued.push_back(open.close(tp));
        }
    }

    /// Starts requests for queued batches whose partitions have none under way, in the order
    /// the batches were made, up to `max.in.flight.requests`.
    fn pump(&mut self) {
        let Some(delivery) = self.delivery.clone() else { return };
        while self.requests.len() < self.max_in_flight {
            let Some(i) = self.queued.iter().position(|b| !self.busy.contains(&b.tp)) else { break };
            let batch = self.queued.remove(i).expect("found above");
            self.busy.insert(batch.tp.clone());
            let delivery = Arc::clone(&delivery);
            self.requests.spawn(async move {
                let result = delivery.deliver(&batch).await;
                (batch.tp, result)
            });
        }
    }

    /// Takes in a finished request: its partition is free again; its failure fails the task.
    fn finished(&mut self, joined: std::result::Result<(TopicPartition, Result<()>), JoinError>) -> Result<()> {
        let (tp, result) =
            joined.map_err(|e| ConnectError::Task(format!("an HTTP sink request did not finish: {e}")))?;
        self.busy.remove(&tp);
        result
    }
}

#[async_trait]
impl SinkTask for HttpSinkTask {
    async fn start(&mut self, config: &Config) -> Result<()> {
        if let Some(p) = problems(config.props()).into_iter().next() {
            let error = p.errors.into_iter().next().unwrap_or_default();
            return Err(ConnectError::config(p.name, p.value.unwrap_or_default(), error));
        }
        let config = config_def().parse(config.props())?;
        self.batch_max_records = config.number("batch.max.records")?;
        self.as_array = config.boolean("batch.json.as.array", true)?;
        self.max_in_flight = config.number("max.in.flight.requests")?;
        let delivery = Delivery::new(&config, self.max_in_flight)?;
        tracing::info!(url = %delivery.uri, method = %delivery.method, "the HTTP sink starts");
        self.delivery = Some(Arc::new(delivery));
        Ok(())
    }

    async fn put(&mut self, records: &[SinkRecord]) -> Result<()> {
        if self.delivery.is_none() {
            return Err(ConnectError::Task("the HTTP sink task was given records before it started".into()));
        }
        for record in records {
            self.add(record)?;
        }
        // A request that failed meanwhile fails the task now rather than at the next flush.
        while let Some(joined) = self.requests.try_join_next() {
            self.finished(joined)?;
        }
        self.send_idle();
        self.pump();
        // Buffer no more batches than may be under way: beyond that, put waits.
        while self.queued.len() > self.max_in_flight {
            let Some(joined) = self.requests.join_next().await else { break };
            self.finished(joined)?;
            self.pump();
        }
        Ok(())
    }

    async fn flush(&mut self, _offsets: &SinkOffsets) -> Result<()> {
        // Every partition's partial batch goes too: offsets are committed for all that was put.
        for (tp, open) in std::mem::take(&mut self.open) {
            self.queued.push_back(open.close(tp));
        }
        loop {
            self.pump();
            let Some(joined) = self.requests.join_next().await else { break };
            self.finished(joined)?;
        }
        // Nothing under way means every partition is free, so pump started whatever was queued.
        assert!(self.queued.is_empty() || self.delivery.is_none(), "a batch was left unsent after a flush");
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        // What was not delivered is not committed: it is sent again after a restart.
        self.requests.abort_all();
        self.queued.clear();
        self.open.clear();
        self.busy.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use serde_json::Value as Json;

    use super::*;
    use crate::data::{Schema, Struct, Type};
    use crate::record::ConnectRecord;

    #[test]
    fn only_plain_http_urls_are_taken() {
        fn check(url: &str, expected: std::result::Result<&str, &str>) {
            match (parse_url(url), expected) {
                (Ok(uri), Ok(shown)) => assert_eq!(uri.to_string(), shown, "{url}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "{url}: {e}"),
                (got, _) => panic!("{url}: {got:?}"),
            }
        }
        check("http://localhost:8080/ingest", Ok("http://localhost:8080/ingest"));
        check("http://example.com", Ok("http://example.com/"));
        check("https://example.com/ingest", Err("https:// is not supported yet"));
        check("ftp://example.com/", Err("ftp:// is not http://"));
        check("/ingest", Err("expected an absolute URL"));
        check("http://exa mple.com/", Err("not a URL"));
    }

    #[test]
    fn listed_headers_are_name_value_pairs() {
        let headers = parse_headers("X-Source: freshet, Content-Type:application/x-ndjson,X-Source:twice").unwrap();
        let got: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(got, [("x-source", "freshet"), ("x-source", "twice"), ("content-type", "application/x-ndjson")]);
        assert!(parse_headers("").unwrap().is_empty());
        assert_eq!(parse_headers("X-Source").unwrap_err(), "\"X-Source\" is not Name:Value");
        assert_eq!(parse_headers("Bad Name: v").unwrap_err(), "\"Bad Name\" is not an HTTP header name");
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let retries = Retries { max: 10, backoff: Duration::from_millis(100), backoff_max: Duration::from_secs(1) };
        let waits: Vec<u128> = (1..=6).map(|n| retries.wait(n, None).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(retries.wait(1, Some(Duration::from_millis(300))), Duration::from_millis(300), "as asked");
        assert_eq!(retries.wait(1, Some(Duration::from_secs(60))), Duration::from_secs(1), "never over the cap");
        assert_eq!(retries.wait(40, None), Duration::from_secs(1));
    }

    #[test]
    fn answers_are_delivered_retried_or_refused() {
        let (method, uri) = (Method::POST, Uri::from_static("http://sink:8080/in"));
        let check = |status: u16, body: &str, expected: Outcome| {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(outcome(&method, &uri, status, body.as_bytes(), None), expected, "{status}");
        };
        check(200, "", Outcome::Delivered(StatusCode::OK));
        check(204, "", Outcome::Delivered(StatusCode::NO_CONTENT));
        let retry = |reason: &str| Outcome::Retry { reason: reason.into(), asked: None };
        check(429, "slow down", retry("POST http://sink:8080/in was answered 429 Too Many Requests: slow down"));
        check(503, " ", retry("POST http://sink:8080/in was answered 503 Service Unavailable"));
        check(
            400,
            "field \"n\" is missing\n",
            Outcome::Refused(
                "POST http://sink:8080/in was answered 400 Bad Request: field \"n\" is missing (a 400 is not \
                 retried: fix the records or the endpoint, then restart the task)"
                    .into(),
            ),
        );
        let Outcome::Refused(moved) = outcome(&method, &uri, StatusCode::MOVED_PERMANENTLY, b"", None) else {
            panic!("a redirect is not followed")
        };
        assert!(moved.contains("301 Moved Permanently"), "{moved}");
        let long = "é".repeat(QUOTED_BODY_CHARS + 1);
        assert_eq!(quote(long.as_bytes()), format!("{}...", "é".repeat(QUOTED_BODY_CHARS)));
    }

    fn record(partition: u32, offset: i64, schema: Option<Arc<Schema>>, value: Value) -> SinkRecord {
        SinkRecord {
            record: ConnectRecord::new("events", schema, value),
            original_topic: "events".into(),
            original_partition: partition,
            kafka_offset: offset,
        }
    }

    fn values() -> Vec<SinkRecord> {
        let schema = Arc::new(Schema::structure([("n".to_string(), Schema::primitive(Type::Int32))]));
        let mut s = Struct::new(schema.clone());
        s.put("n", Value::Int32(1)).unwrap();
        vec![
            record(0, 0, Some(schema), Value::Struct(s)),
            record(0, 1, None, Value::String("text".into())),
            record(1, 0, None, Value::Bytes(Bytes::from_static(&[1, 2]))),
            record(0, 2, None, Value::Null),
            record(0, 3, None, Value::string_map([("ok".to_string(), Value::Boolean(true))])),
        ]
    }

    #[test]
    fn batches_are_json_arrays_of_one_partitions_values() {
        let mut task = HttpSinkTask { batch_max_records: 2, ..HttpSinkTask::default() };
        for r in &values() {
            task.add(r).unwrap();
        }
        for (tp, open) in std::mem::take(&mut task.open) {
            task.queued.push_back(open.close(tp));
        }
        let got: Vec<(String, &str, usize)> = task
            .queued
            .iter()
            .map(|b| (b.tp.to_string(), std::str::from_utf8(&b.body).unwrap(), b.n_records))
            .collect();
        assert_eq!(
            got,
            [
                ("events-0".to_string(), r#"[{"n":1},"text"]"#, 2),
                ("events-0".to_string(), r#"[null,{"ok":true}]"#, 2),
                ("events-1".to_string(), r#"["AQI="]"#, 1),
            ]
        );
        assert!(task.queued.iter().all(|b| b.content_type == Some("application/json")));
    }

    #[test]
    fn without_arrays_each_record_is_a_request_of_its_bytes() {
        let mut task = HttpSinkTask { as_array: false, ..HttpSinkTask::default() };
        for r in &values() {
            task.add(r).unwrap();
        }
        let got: Vec<(&[u8], Option<&str>)> = task.queued.iter().map(|b| (&b.body[..], b.content_type)).collect();
        assert_eq!(
            got,
            [
                (&br#"{"n":1}"#[..], Some("application/json")),
                (b"text", Some("text/plain; charset=utf-8")),
                (&[1, 2], Some("application/octet-stream")),
                (b"", None),
                (br#"{"ok":true}"#, Some("application/json")),
            ]
        );
    }

    /// What a test endpoint took: each request's path, headers and body.
    type Taken = Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>;

    /// An endpoint answering the statuses of `script` in turn (after their delays), then 200; it
    /// keeps the requests it answered 2xx, and counts them all.
    async fn endpoint(script: Vec<(u16, Duration)>) -> (SocketAddr, Taken, Arc<Mutex<usize>>) {
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (taken, attempts): (Taken, Arc<Mutex<usize>>) = Default::default();
        let (kept, counted) = (Arc::clone(&taken), Arc::clone(&attempts));
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (script, taken, attempts) = (script.clone(), kept.clone(), counted.clone());
            async move {
                *attempts.lock().unwrap() += 1;
                let (status, delay) = script.lock().unwrap().pop_front().unwrap_or((200, Duration::ZERO));
                tokio::time::sleep(delay).await;
                let (parts, body) = request.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                if (200..300).contains(&status) {
                    taken.lock().unwrap().push((parts.uri.path().to_string(), parts.headers, body));
                }
                (StatusCode::from_u16(status).unwrap(), format!("scripted {status}"))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (address, taken, attempts)
    }

    async fn started(props: &[(&str, &str)]) -> HttpSinkTask {
        let mut task = HttpSinkTask::default();
        let props: Props = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        task.start(&Config::from_props(props)).await.unwrap();
        task
    }

    fn strings(partition: u32, n: usize) -> Vec<SinkRecord> {
        (0..n).map(|i| record(partition, i as i64, None, Value::String(format!("p{partition}-{i}")))).collect()
    }

    #[tokio::test]
    async fn failed_requests_are_retried_and_flush_waits_for_every_partition_in_order() {
        let unavailable = (503, Duration::ZERO);
        let (address, taken, attempts) = endpoint(vec![unavailable, (429, Duration::ZERO), unavailable]).await;
        let url = format!("http://{address}/in");
        let mut task = started(&[
            ("http.url", &url),
            ("batch.max.records", "3"),
            ("retry.backoff.ms", "1"),
            ("http.headers", "X-Source: freshet"),
            ("http.auth.token", "t0ken"),
        ])
        .await;
        let (p0, p1) = (strings(0, 10), strings(1, 5));
        task.put(&p0[..4]).await.unwrap();
        task.put(&p1).await.unwrap();
        task.put(&p0[4..]).await.unwrap();
        task.flush(&SinkOffsets::new()).await.unwrap();

        let taken = taken.lock().unwrap();
        let mut delivered: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (path, headers, body) in taken.iter() {
            assert_eq!(path, "/in");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
            assert_eq!(headers[header::AUTHORIZATION], "Bearer t0ken");
            assert_eq!(headers["x-source"], "freshet");
            assert_eq!(headers[header::USER_AGENT], USER_AGENT);
            let values: Vec<String> = serde_json::from_slice(body).unwrap();
            let partition = values[0][..2].to_string();
            delivered.entry(partition).or_default().extend(values);
        }
        let expected = |records: &[SinkRecord]| -> Vec<String> {
            records.iter().map(|r| r.record.value.as_str().unwrap().to_string()).collect()
        };
        assert_eq!(delivered["p0"], expected(&p0), "every record once, in order");
        assert_eq!(delivered["p1"], expected(&p1));
        assert!(taken.iter().all(|(_, _, body)| serde_json::from_slice::<Vec<Json>>(body).unwrap().len() <= 3));
        assert_eq!(*attempts.lock().unwrap(), taken.len() + 3, "three failed attempts retried");
    }

    #[tokio::test]
    async fn a_4xx_fails_the_task_at_once_and_retries_run_out() {
        let (address, _, attempts) = endpoint(vec![(400, Duration::ZERO)]).await;
        let mut task = started(&[("http.url", &format!("http://{address}/in")), ("retry.backoff.ms", "1")]).await;
        task.put(&strings(0, 2)).await.unwrap();
        let error = task.flush(&SinkOffsets::new()).await.unwrap_err().to_string();
        assert!(error.contains("was answered 400 Bad Request: scripted 400"), "{error}");
        assert_eq!(*attempts.lock().unwrap(), 1, "not retried");

        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut task = started(&[
            ("http.url", &format!("http://{free}/in")),
            ("max.retries", "2"),
            ("retry.backoff.ms", "1"),
            ("batch.json.as.array", "false"),
        ])
        .await;
        task.put(&strings(0, 1)).await.unwrap();
        let error = task.flush(&SinkOffsets::new()).await.unwrap_err().to_string();
        assert!(error.contains("failed 3 times, giving up (max.retries is 2)"), "{error}");
        assert!(error.contains("sending failed"), "{error}");
    }

    #[tokio::test]
    async fn a_request_that_takes_too_long_is_retried() {
        let (address, taken, attempts) = endpoint(vec![(200, Duration::from_secs(5))]).await;
        let mut task = started(&[
            ("http.url", &format!("http://{address}/in")),
            ("http.timeout.ms", "100"),
            ("retry.backoff.ms", "1"),
            ("http.method", "PUT"),
        ])
        .await;
        task.put(&strings(0, 1)).await.unwrap();
        task.flush(&SinkOffsets::new()).await.unwrap();
        assert_eq!(*attempts.lock().unwrap(), 2);
        assert_eq!(taken.lock().unwrap().last().unwrap().2, Bytes::from_static(br#"["p0-0"]"#));
    }
}
