//! The webhook source: an HTTP server whose requests become records (see the module above).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::NO_TLS;
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, ConfigValue, Importance, Props, Validator};
use crate::connector::{Connector, SourceConnector, SourceTask, SourceTaskContext};
use crate::data::{Header, Schema, SchemaRef, Type, Value};
use crate::error::{ConnectError, Result};
use crate::record::{AckResult, ConnectRecord, SourceAck, SourceMap, SourceRecord};

/// How long a poll waits for a request when none is waiting.
const POLL_WAIT: Duration = Duration::from_millis(200);

/// How long a stopping task waits for the server to finish its connections before cutting them.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// The connector's keys.
fn config_def() -> ConfigDef {
    use ConfigType::*;
    use Importance::*;
    ConfigDef::new()
        .define(ConfigKey::required("topic", String, High, "The topic to write the requests' records to."))
        .define(ConfigKey::optional(
            "http.listener",
            String,
            Some("http://0.0.0.0:8080"),
            High,
            "Where the task listens: http://host:port (no host: every interface; port 0: any free port, which the \
             task logs). https:// is not supported yet.",
        ))
        .define(ConfigKey::optional(
            "http.path",
            String,
            Some("/"),
            Medium,
            "The path requests are sent to (a trailing / does not matter); other paths get 404.",
        ))
        .define(
            ConfigKey::optional(
                "http.max.body.bytes",
                Int,
                Some("1048576"),
                Medium,
                "The largest body taken, in bytes; a larger one gets 413 and nothing is written.",
            )
            .validated(Validator::AtLeast(1.0)),
        )
        .define(
            ConfigKey::optional(
                "http.max.requests.per.second",
                Double,
                Some("0"),
                Medium,
                "The requests taken per second (bursts of up to a second's worth); more get 429 with Retry-After. \
                 0: no limit.",
            )
            .validated(Validator::AtLeast(0.0)),
        )
        .define(
            ConfigKey::optional(
                "http.max.in.flight",
                Int,
                Some("100"),
                Medium,
                "The requests taken and not yet answered (their records waiting to be written) at most; more get \
                 503 with Retry-After.",
            )
            .validated(Validator::AtLeast(1.0)),
        )
        .define(ConfigKey::optional(
            "key.header",
            String,
            None,
            Medium,
            "A request header whose value becomes the records' key (a string; null when the request lacks it). \
             None: no key.",
        ))
        .define(ConfigKey::optional(
            "http.split.lines",
            Boolean,
            Some("false"),
            Medium,
            "false: a request's body is one record; true: each non-empty line of it is one (\\n or \\r\\n ends a \
             line).",
        ))
        .define(ConfigKey::optional(
            "http.auth.token",
            Password,
            None,
            High,
            "A token requests must carry as 'Authorization: Bearer <token>' (401 otherwise). None: no check.",
        ))
}

/// The address `http.listener` names, as `host:port` for binding, or why it names none.
fn listener_address(listener: &str) -> std::result::Result<String, String> {
    let rest = match listener.trim().split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => return Err(NO_TLS.into()),
        Some((scheme, _)) => return Err(format!("the scheme {scheme}:// is not http://")),
        None => return Err("expected http://host:port".into()),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err("a listener has no path: set http.path for it".into());
    }
    let (host, port) = rest.rsplit_once(':').ok_or("expected a port: http://host:port")?;
    let port: u16 = port.parse().map_err(|_| format!("{port:?} is not a port number"))?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok(format!("{host}:{port}"))
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
    if let Some(listener) = props.get("http.listener") {
        if let Err(e) = listener_address(listener) {
            out.push(problem("http.listener", e));
        }
    }
    if let Some(path) = props.get("http.path").map(|p| p.trim()).filter(|p| !p.starts_with('/')) {
        out.push(problem("http.path", format!("{path:?} does not start with /")));
    }
    if let Some(name) = props.get("key.header").map(|h| h.trim()).filter(|h| !h.is_empty()) {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            out.push(problem("key.header", format!("{name:?} is not an HTTP header name")));
        }
    }
    out
}

/// The HTTP source connector (`webhook`).
#[derive(Debug, Default)]
pub struct HttpSource {
    props: Props,
}

#[async_trait]
impl Connector for HttpSource {
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

    fn task_configs(&self, _max_tasks: usize) -> Result<Vec<Props>> {
        // One listener, one task: a second would find its port taken.
        Ok(vec![self.props.clone()])
    }
}

impl SourceConnector for HttpSource {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(HttpSourceTask::default())
    }

    fn alter_offsets(&self, _config: &Props, offsets: &[(SourceMap, Option<SourceMap>)]) -> Result<bool> {
        for (partition, offset) in offsets {
            if !partition.get("webhook").is_some_and(|w| w.is_string()) {
                return Err(ConnectError::data(format!(
                    "An HTTP source partition is {{\"webhook\": \"<http.listener>\"}}, not {}",
                    serde_json::Value::Object(partition.clone())
                )));
            }
            if offset.as_ref().is_some_and(|o| o.get("seq").and_then(|s| s.as_u64()).is_none()) {
                return Err(ConnectError::data(
                    "The value for the 'seq' key in the offset is expected to be a non-negative Long value",
                ));
            }
        }
        Ok(true)
    }
}

/// A request's records on their way to the task, and the ack that answers the request.
#[derive(Debug)]
struct Pending {
    records: Vec<ConnectRecord>,
    ack: SourceAck,
}

/// What the server's handler shares.
#[derive(Debug)]
struct Shared {
    topic: String,
    path: String,
    max_body_bytes: usize,
    split_lines: bool,
    key_header: Option<HeaderName>,
    token: Option<String>,
    rate: Option<Mutex<TokenBucket>>,
    /// One permit per request taken and not yet answered.
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    requests: mpsc::Sender<Pending>,
}

/// The running server: where it listens, and how to stop it.
#[derive(Debug)]
struct Server {
    address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    join: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Stops taking connections, lets the open ones finish (their requests answered 503 once the
    /// task's queue is gone) for a while, then cuts them; the port is free when this returns.
    async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if tokio::time::timeout(SHUTDOWN_WAIT, &mut self.join).await.is_err() {
            self.join.abort();
            let _ = (&mut self.join).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A task dropped without being stopped must not keep its port.
        self.join.abort();
    }
}

/// The HTTP source's task: the server, and the queue of requests it hands over.
#[derive(Debug, Default)]
pub struct HttpSourceTask {
    partition: SourceMap,
    /// The `seq` of the next record.
    next_seq: u64,
    requests: Option<mpsc::Receiver<Pending>>,
    server: Option<Server>,
}

impl HttpSourceTask {
    /// Where the task's server listens, once started: the port `http.listener` names, or the one
    /// it was given for port 0.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|s| s.address)
    }

    /// Adds a request's records to `out`, counted, the request's ack on the last.
    fn take(&mut self, pending: Pending, out: &mut Vec<SourceRecord>) {
        let Pending { records, ack } = pending;
        let (n, mut ack) = (records.len(), Some(ack));
        for (i, record) in records.into_iter().enumerate() {
            let ack = if i + 1 == n { ack.take() } else { None };
            out.push(SourceRecord { source_partition: None, source_offset: None, record, ack });
        }
        self.next_seq += n as u64;
    }
}

#[async_trait]
impl SourceTask for HttpSourceTask {
    async fn start(&mut self, config: &Config, context: SourceTaskContext) -> Result<()> {
        if let Some(p) = problems(config.props()).into_iter().next() {
            let error = p.errors.into_iter().next().unwrap_or_default();
            return Err(ConnectError::config(p.name, p.value.unwrap_or_default(), error));
        }
        let config = config_def().parse(config.props())?;
        let listener = config.string("http.listener")?.to_string();
        let address = listener_address(&listener).map_err(|e| ConnectError::config("http.listener", &listener, e))?;
        let max_in_flight = config.number::<usize>("http.max.in.flight")?;
        let per_second = config.number::<f64>("http.max.requests.per.second")?;
        let (requests, receiver) = mpsc::channel(max_in_flight);
        let shared = Arc::new(Shared {
            topic: config.string("topic")?.to_string(),
            path: config.string("http.path")?.to_string(),
            max_body_bytes: config.number("http.max.body.bytes")?,
            split_lines: config.boolean("http.split.lines", false)?,
            // Checked by `problems` above.
            key_header: config.get("key.header").and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            token: config.get("http.auth.token").map(str::to_string),
            rate: (per_second > 0.0).then(|| Mutex::new(TokenBucket::new(per_second, Instant::now()))),
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            requests,
        });

        self.partition = SourceMap::new();
        self.partition.insert("webhook".into(), listener.clone().into());
        if let Some(stored) = context.offset(&self.partition) {
            // Informational, but counting on from where it was reads better than starting over.
            self.next_seq = stored.get("seq").and_then(|s| s.as_u64()).map_or(0, |s| s + 1);
        }

        let socket = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| ConnectError::io(format!("listening on {address} (http.listener {listener})"), e))?;
        let local = socket.local_addr().map_err(|e| ConnectError::io(format!("the address of {address}"), e))?;
        let (path, topic) = (shared.path.clone(), shared.topic.clone());
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let serve = axum::serve(socket, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        let join = tokio::spawn(async move { serve.await });
        tracing::info!(address = %local, path, topic, "the HTTP source listens");
        self.requests = Some(receiver);
        self.server = Some(Server { address: local, shutdown: Some(shutdown), join });
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let requests = self
            .requests
            .as_mut()
            .ok_or_else(|| ConnectError::Task("the HTTP source task was polled before it started".into()))?;
        let first = match tokio::time::timeout(POLL_WAIT, requests.recv()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(Some(first)) => first,
            Ok(None) => {
                let address = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
                return Err(ConnectError::Task(format!("the HTTP source's server on {address} stopped")));
            }
        };
        // Everything waiting goes in one batch: at most http.max.in.flight requests.
        let mut waiting = vec![first];
        while let Ok(pending) = requests.try_recv() {
            waiting.push(pending);
        }
        let mut records = Vec::with_capacity(waiting.iter().map(|p| p.records.len()).sum());
        for pending in waiting {
            self.take(pending, &mut records);
        }
        tracing::debug!(n_records = records.len(), "the HTTP source hands over requests");
        // The worker keeps only the last offset of a batch, so only the last record carries one.
        if let Some(last) = records.last_mut() {
            let mut offset = SourceMap::new();
            offset.insert("seq".into(), (self.next_seq - 1).into());
            last.source_partition = Some(self.partition.clone());
            last.source_offset = Some(offset);
        }
        Ok(records)
    }

    async fn stop(&mut self) -> Result<()> {
        // Requests still queued are answered 503 as their acks are dropped with the queue.
        if let Some(mut requests) = self.requests.take() {
            requests.close();
            while requests.try_recv().is_ok() {}
        }
        if let Some(mut server) = self.server.take() {
            server.stop().await;
            tracing::info!(address = %server.address, "the HTTP source stopped listening");
        }
        Ok(())
    }
}

/// A request, answered: records written (200), or why not.
async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path();
    if path.trim_end_matches('/') != shared.path.trim_end_matches('/') {
        return refuse(StatusCode::NOT_FOUND, format!("nothing at {path}: this webhook is at {}", shared.path));
    }
    if !matches!(*request.method(), Method::POST | Method::PUT) {
        let message = format!("{} is not taken: POST or PUT a body", request.method());
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST, PUT")], error_body(message)).into_response();
    }
    if let Some(token) = &shared.token {
        if !bearer_matches(request.headers(), token) {
            let message = "a missing or wrong token: send 'Authorization: Bearer <token>'";
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], error_body(message))
                .into_response();
        }
    }
    if let Some(rate) = &shared.rate {
        if let Err(wait) = rate.lock().expect("rate lock").take(Instant::now()) {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            let message = "too many requests: over http.max.requests.per.second";
            return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, seconds.to_string())], error_body(message))
                .into_response();
        }
    }
    // Held until the request is answered: bounds the requests (and bodies) held at once.
    let Ok(_permit) = Arc::clone(&shared.in_flight).try_acquire_owned() else {
        let message =
            format!("{} requests are waiting to be written already (http.max.in.flight)", shared.max_in_flight);
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], error_body(message)).into_response();
    };
    let (parts, body) = request.into_parts();
    let too_large = || {
        let message = format!("the body is larger than http.max.body.bytes ({} bytes)", shared.max_body_bytes);
        refuse(StatusCode::PAYLOAD_TOO_LARGE, message)
    };
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > shared.max_body_bytes as u64) {
        return too_large();
    }
    let body = match Limited::new(body, shared.max_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("reading the body failed: {e}")),
    };
    let records = match records_of(&shared, &parts.headers, body, now_ms()) {
        Ok(records) => records,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    let n = records.len();
    if n == 0 {
        return answer(StatusCode::OK, serde_json::json!({"records": 0}));
    }
    let (ack, written) = SourceAck::new();
    if shared.requests.try_send(Pending { records, ack }).is_err() {
        // Full only when callers that hung up left their records queued; closed when stopping.
        return unavailable("the connector's task is stopping or behind: send again");
    }
    respond(n, written.await)
}

/// The answer to a request of `n` records once the worker fired their ack (or dropped it).
fn respond(n: usize, written: std::result::Result<AckResult, oneshot::error::RecvError>) -> Response {
    match written {
        Ok(Ok(())) => answer(StatusCode::OK, serde_json::json!({"records": n})),
        Ok(Err(e)) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("writing the records to the log failed: {e}")),
        Err(_) => unavailable(
            "the connector's task stopped before the records were known to be written (they may have been): send \
             again",
        ),
    }
}

fn error_body(message: impl Into<String>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"error": message.into()}))
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, error_body(message)).into_response()
}

fn unavailable(message: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], error_body(message)).into_response()
}

/// Whether the request carries `Authorization: Bearer <token>`.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) else { return false };
    let Some((scheme, credentials)) = given.split_at_checked(7) else { return false };
    scheme.eq_ignore_ascii_case(b"bearer ") && constant_time_eq(credentials.trim_ascii(), token.as_bytes())
}

/// Equality that takes as long whichever byte differs, so a caller cannot find the token a byte at
/// a time from how long refusals take.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a `Content-Type` is text: the body is then a STRING.
fn is_text(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    media.starts_with("text/") || media == "application/json" || media.ends_with("+json")
}

/// A request's records: its body (or each non-empty line of it) as values, with the request's key
/// and headers; an error message for a 400.
fn records_of(
    shared: &Shared,
    headers: &HeaderMap,
    body: Bytes,
    now_ms: i64,
) -> std::result::Result<Vec<ConnectRecord>, String> {
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let text = content_type.as_deref().is_some_and(is_text);
    if text && std::str::from_utf8(&body).is_err() {
        return Err(format!("the body is declared text ({}) but is not UTF-8", content_type.unwrap_or_default()));
    }
    let pieces: Vec<Bytes> = if shared.split_lines {
        lines(&body)
    } else if body.is_empty() {
        Vec::new()
    } else {
        vec![body]
    };
    if pieces.is_empty() {
        return Ok(Vec::new());
    }
    let value_schema: SchemaRef = Schema::optional_primitive(if text { Type::String } else { Type::Bytes });
    let string = Schema::primitive(Type::String);
    let key = shared.key_header.as_ref().map(|name| match headers.get(name) {
        Some(v) => Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        None => Value::Null,
    });
    let record_headers: Vec<Header> = headers
        .iter()
        .filter(|(name, _)| *name == header::CONTENT_TYPE || name.as_str().starts_with("x-"))
        .map(|(name, value)| Header {
            key: name.as_str().to_string(),
            schema: Some(string.clone()),
            value: Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        })
        .collect();
    Ok(pieces
        .into_iter()
        .map(|piece| {
            let value = if text {
                // Checked above: the whole body is UTF-8, and lines split at \n keep it so.
                Value::String(String::from_utf8_lossy(&piece).into_owned())
            } else {
                Value::Bytes(piece)
            };
            let mut record = ConnectRecord::new(shared.topic.clone(), Some(value_schema.clone()), value);
            if let Some(key) = &key {
                record = record.with_key(Some(Schema::optional_primitive(Type::String)), key.clone());
            }
            record.timestamp = Some(now_ms);
            record.headers = record_headers.clone();
            record
        })
        .collect())
}

/// The non-empty lines of a body, `\n` or `\r\n` ended.
fn lines(body: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    for end in (0..body.len()).filter(|&i| body[i] == b'\n').chain([body.len()]) {
        let line_end = if end > start && body[end - 1] == b'\r' { end - 1 } else { end };
        if line_end > start {
            out.push(body.slice(start..line_end));
        }
        start = end + 1;
    }
    out
}

/// Milliseconds since the epoch.
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// `http.max.requests.per.second`: tokens refill at the rate, up to a second's worth (at least
/// one), and each request takes one. Pure: given the time, so tests need not sleep.
#[derive(Debug)]
struct TokenBucket {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(per_second: f64, now: Instant) -> TokenBucket {
        let capacity = per_second.max(1.0);
        TokenBucket { per_second, capacity, tokens: capacity, last: now }
    }

    /// Takes a token at `now`; when there is none, how long until there is one.
    fn take(&mut self, now: Instant) -> std::result::Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    #[test]
    fn listeners_name_an_address_to_bind() {
        fn check(listener: &str, expected: std::result::Result<&str, &str>) {
            let got = listener_address(listener);
            match expected {
                Ok(address) => assert_eq!(got.as_deref(), Ok(address), "{listener}"),
                Err(part) => assert!(got.as_ref().is_err_and(|e| e.contains(part)), "{listener}: {got:?}"),
            }
        }
        check("http://0.0.0.0:8080", Ok("0.0.0.0:8080"));
        check(" http://:0 ", Ok("0.0.0.0:0"));
        check("http://localhost:9000/", Ok("localhost:9000"));
        check("HTTP://[::1]:80", Ok("[::1]:80"));
        check("https://0.0.0.0:8443", Err("https:// is not supported yet"));
        check("ftp://host:21", Err("ftp:// is not http://"));
        check("0.0.0.0:8080", Err("expected http://host:port"));
        check("http://host", Err("expected a port"));
        check("http://host:web", Err("\"web\" is not a port number"));
        check("http://host:8080/hooks", Err("set http.path"));
    }

    #[test]
    fn text_content_types_give_strings() {
        for (content_type, text) in [
            ("text/plain", true),
            ("text/csv; charset=utf-8", true),
            ("application/json", true),
            ("Application/JSON; charset=UTF-8", true),
            ("application/cloudevents+json", true),
            ("application/octet-stream", false),
            ("application/x-protobuf", false),
            ("", false),
        ] {
            assert_eq!(is_text(content_type), text, "{content_type}");
        }
    }

    #[test]
    fn a_body_splits_into_its_non_empty_lines() {
        fn check(body: &'static str, expected: &[&str]) {
            let got: Vec<Bytes> = lines(&Bytes::from_static(body.as_bytes()));
            assert_eq!(
                got,
                expected.iter().map(|l| Bytes::copy_from_slice(l.as_bytes())).collect::<Vec<_>>(),
                "{body:?}"
            );
        }
        check("a\nb", &["a", "b"]);
        check("a\r\n\r\nb\n", &["a", "b"]);
        check("one", &["one"]);
        check("", &[]);
        check("\n\r\n\n", &[]);
        check(" \n", &[" "]);
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let with = |value: &str| HeaderMap::from_iter([(header::AUTHORIZATION, value.parse().unwrap())]);
        assert!(bearer_matches(&with("Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(&with("bearer  s3cret "), "s3cret"));
        assert!(!bearer_matches(&with("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(&with("Bearer s3cretx"), "s3cret"));
        assert!(!bearer_matches(&with("Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(&with("Bearer"), "s3cret"));
        assert!(!bearer_matches(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn the_rate_limit_refills_at_its_rate() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut bucket = TokenBucket::new(2.0, t0);
        assert_eq!(bucket.take(t0), Ok(()));
        assert_eq!(bucket.take(t0), Ok(()), "a second's worth at once");
        assert_eq!(bucket.take(t0), Err(Duration::from_millis(500)));
        assert_eq!(bucket.take(ms(250)), Err(Duration::from_millis(250)));
        assert_eq!(bucket.take(ms(500)), Ok(()));
        assert_eq!(bucket.take(ms(10_000)), Ok(()));
        assert_eq!(bucket.take(ms(10_000)), Ok(()));
        assert!(bucket.take(ms(10_000)).is_err(), "no more than a second's worth saved up");
        let mut slow = TokenBucket::new(0.5, t0);
        assert_eq!(slow.take(t0), Ok(()), "at least one request");
        assert_eq!(slow.take(t0), Err(Duration::from_secs(2)));
    }

    fn shared(configure: impl FnOnce(&mut Shared)) -> (Arc<Shared>, mpsc::Receiver<Pending>) {
        let (requests, receiver) = mpsc::channel(4);
        let mut shared = Shared {
            topic: "hooks".into(),
            path: "/hooks".into(),
            max_body_bytes: 16,
            split_lines: false,
            key_header: None,
            token: None,
            rate: None,
            in_flight: Arc::new(Semaphore::new(4)),
            max_in_flight: 4,
            requests,
        };
        configure(&mut shared);
        (Arc::new(shared), receiver)
    }

    fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &'static [u8]) -> Request {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::from(body)).unwrap()
    }

    /// The status, `Retry-After` and JSON body of an answer.
    async fn answered(response: Response) -> (u16, Option<String>, serde_json::Value) {
        let status = response.status().as_u16();
        let retry_after = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, retry_after, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn refused_requests_write_nothing() {
        let json = [("content-type", "application/json")];
        let (open, mut queue) = shared(|_| {});
        let (status, _, body) =
            answered(handle(State(open.clone()), request("POST", "/other", &json, b"{}")).await).await;
        assert_eq!((status, body["error"].as_str().unwrap()), (404, "nothing at /other: this webhook is at /hooks"));
        let response = handle(State(open.clone()), request("GET", "/hooks", &[], b"")).await;
        assert_eq!(response.headers()[header::ALLOW], "POST, PUT");
        assert_eq!(answered(response).await.0, 405);
        // Too large, whether the request says so up front or not.
        let (status, _, body) =
            answered(handle(State(open.clone()), request("POST", "/hooks/", &json, b"{\"n\": 1234567890123}")).await)
                .await;
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (413, "the body is larger than http.max.body.bytes (16 bytes)")
        );
        let declared = [("content-type", "text/plain"), ("content-length", "17")];
        let (status, ..) = answered(handle(State(open.clone()), request("PUT", "/hooks", &declared, b"")).await).await;
        assert_eq!(status, 413);
        let latin1 = [("content-type", "text/plain; charset=iso-8859-1")];
        let (status, _, body) =
            answered(handle(State(open.clone()), request("POST", "/hooks", &latin1, b"caf\xe9")).await).await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("not UTF-8"), "{body}");
        let (status, _, body) =
            answered(handle(State(open.clone()), request("POST", "/hooks", &json, b"")).await).await;
        assert_eq!((status, body), (200, serde_json::json!({"records": 0})), "an empty body writes nothing");

        let (guarded, mut guarded_queue) = shared(|s| s.token = Some("s3cret".into()));
        for headers in [vec![], vec![("authorization", "Bearer nope")]] {
            let response = handle(State(guarded.clone()), request("POST", "/hooks", &headers, b"x")).await;
            assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
            assert_eq!(answered(response).await.0, 401);
        }
        let (limited, mut limited_queue) = shared(|s| s.rate = Some(Mutex::new(TokenBucket::new(1.0, Instant::now()))));
        let (full, mut full_queue) = shared(|s| s.in_flight = Arc::new(Semaphore::new(0)));
        let (status, retry_after, body) =
            answered(handle(State(full), request("POST", "/hooks", &json, b"{}")).await).await;
        assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
        assert!(body["error"].as_str().unwrap().contains("http.max.in.flight"), "{body}");
        let (status, retry_after, _) =
            answered(handle(State(limited.clone()), request("POST", "/hooks", &json, b"")).await).await;
        assert_eq!((status, retry_after), (200, None));
        let (status, retry_after, _) =
            answered(handle(State(limited), request("POST", "/hooks", &json, b"{}")).await).await;
        assert_eq!((status, retry_after.as_deref()), (429, Some("1")));

        for queue in [&mut queue, &mut guarded_queue, &mut limited_queue, &mut full_queue] {
            assert!(queue.try_recv().is_err(), "a refused request wrote nothing");
        }
    }

    #[tokio::test]
    async fn a_request_is_answered_once_the_worker_fires_its_ack() {
        let (shared, mut queue) = shared(|s| {
            s.key_header = Some(HeaderName::from_static("x-key"));
            s.split_lines = true;
            s.max_body_bytes = 1024;
        });
        let headers = [
            ("content-type", "application/json"),
            ("x-key", "k1"),
            ("X-Request-Id", "r1"),
            ("authorization", "Bearer never copied"),
        ];
        let call = |body: &'static [u8]| {
            tokio::spawn(handle(State(shared.clone()), request("POST", "/hooks", &headers, body)))
        };

        let answer = call(b"{\"n\":1}\n{\"n\":2}\n");
        let pending = queue.recv().await.unwrap();
        let values: Vec<&Value> = pending.records.iter().map(|r| &r.value).collect();
        assert_eq!(values, [&Value::String("{\"n\":1}".into()), &Value::String("{\"n\":2}".into())]);
        let record = &pending.records[0];
        assert_eq!((record.topic.as_str(), &record.key), ("hooks", &Value::String("k1".into())));
        assert_eq!(record.value_schema.as_ref().map(|s| (s.ty, s.optional)), Some((Type::String, true)));
        let headers: Vec<(&str, &Value)> = record.headers.iter().map(|h| (h.key.as_str(), &h.value)).collect();
        assert_eq!(
            headers,
            [
                ("content-type", &Value::String("application/json".into())),
                ("x-key", &Value::String("k1".into())),
                ("x-request-id", &Value::String("r1".into())),
            ]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!answer.is_finished(), "not answered before the records are written");
        pending.ack.succeed();
        let (status, _, body) = answered(answer.await.unwrap()).await;
        assert_eq!((status, body), (200, serde_json::json!({"records": 2})));

        let answer = call(b"x");
        queue.recv().await.unwrap().ack.fail("the log is full");
        let (status, _, body) = answered(answer.await.unwrap()).await;
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (500, "writing the records to the log failed: the log is full")
        );

        let answer = call(b"y");
        drop(queue.recv().await.unwrap());
        let (status, retry_after, body) = answered(answer.await.unwrap()).await;
        assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
        assert!(body["error"].as_str().unwrap().contains("send again"), "{body}");
    }

    /// Posts `body` from a blocking client: the status and the body of the answer.
    fn post(url: String, content_type: &'static str, body: &'static str) -> JoinHandle<(u16, String)> {
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let mut response = agent.post(&url).header("content-type", content_type).send(body).unwrap();
            (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_task_serves_polls_and_stops() {
        let props = Props::from_iter(
            [
                ("topic", "hooks"),
                ("http.listener", "http://127.0.0.1:0"),
                ("http.path", "/in"),
                ("http.split.lines", "true"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let stored = |_: &SourceMap| Some(SourceMap::from_iter([("seq".to_string(), 41.into())]));
        let mut task = HttpSourceTask::default();
        task.start(&Config::from_props(props), SourceTaskContext::new(stored)).await.unwrap();
        let url = format!("http://{}/in", task.local_addr().unwrap());
        assert!(task.poll().await.unwrap().is_empty(), "nothing yet");

        let answer = post(url.clone(), "text/plain", "a\nb\n");
        let mut records = Vec::new();
        while records.is_empty() {
            records = task.poll().await.unwrap();
        }
        let values: Vec<&Value> = records.iter().map(|r| &r.record.value).collect();
        assert_eq!(values, [&Value::String("a".into()), &Value::String("b".into())]);
        assert_eq!(records.iter().map(|r| r.ack.is_some()).collect::<Vec<_>>(), [false, true], "one ack, on the last");
        let listener = serde_json::json!({"webhook": "http://127.0.0.1:0"});
        assert_eq!(records[1].source_partition.clone().map(serde_json::Value::Object), Some(listener));
        assert_eq!(
            records[1].source_offset.clone().map(serde_json::Value::Object),
            Some(serde_json::json!({"seq": 43}))
        );
        records[1].ack.as_ref().unwrap().succeed();
        assert_eq!(answer.await.unwrap(), (200, r#"{"records":2}"#.to_string()));

        // Stopping answers what is queued with 503 and frees the port.
        let queued = post(url.clone(), "text/plain", "c");
        while task.requests.as_ref().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let address = task.local_addr().unwrap();
        task.stop().await.unwrap();
        assert_eq!(queued.await.unwrap().0, 503);
        tokio::net::TcpListener::bind(address).await.expect("the port is free again");
    }
}
