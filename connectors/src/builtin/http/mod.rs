//! The HTTP connectors: a webhook source that turns requests into records and answers each one
//! only once its records are in the log, and a sink that sends records to an HTTP endpoint in
//! JSON batches and lets the worker commit only the offsets of what the endpoint accepted.
//!
//! # The source: a webhook
//!
//! The task serves `POST` (and `PUT`) on `http.path` at `http.listener`. A request's body is one
//! record, or with `http.split.lines` one record per non-empty line. The value's schema follows
//! the request's `Content-Type`: a text type (`text/*`, `application/json`, `*+json`) gives an
//! optional STRING, which must be UTF-8 (a 400 otherwise), anything else optional BYTES. STRING
//! rather than BYTES for text so that `StringConverter` writes the body as it came and
//! `JsonConverter` writes it as a JSON string (not base64), and so that transforms and SQL see
//! text; the cost is that `ByteArrayConverter` refuses text bodies, so it suits only webhooks that
//! never send text. The request's `Content-Type` and `X-*` headers become record headers, named as
//! HTTP/2 writes them (lower case: `content-type`, `x-request-id`), with string values;
//! `key.header` names a header whose value becomes the key.
//!
//! **A request is answered once its records are durable**: `200 {"records": n}` only after the
//! log acknowledged them, so a caller that got a 200 can forget the event. The server hands
//! each request's records, with a [`SourceAck`](crate::record::SourceAck) on the last one, to
//! the task through a channel bounded by `http.max.in.flight`; `poll` takes what has arrived; the
//! worker fires the ack once the batch holding the record is written (records are written in
//! order, so the last record speaks for the request). A write that fails is answered 500 with the
//! error; a request whose records the task never got to write (it stopped or failed) is answered
//! 503, and may or may not have been written: callers retry, so delivery is at least once.
//!
//! What is refused, and how: a wrong or missing bearer token (`http.auth.token`) 401; more than
//! `http.max.requests.per.second` 429 with `Retry-After`; more than `http.max.in.flight` requests
//! waiting for their answer 503 with `Retry-After`; a body over `http.max.body.bytes` 413, with
//! nothing written. Memory is bounded by `http.max.in.flight` x `http.max.body.bytes`. While the
//! connector is paused nothing is polled, so requests wait (and then get 503 once the queue is
//! full).
//!
//! Each record's source partition is `{"webhook": "<http.listener>"}` and its offset `{"seq": n}`,
//! counting the records the connector took (on from the stored count after a restart). The
//! offsets are informational: an HTTP caller cannot be asked to send again, so there is nothing to
//! resume from; durability comes from answering only once the records are written.
//!
//! One task, one listener: `tasks.max` is taken as 1. Port 0 takes any free port, which the task
//! logs (and [`HttpSourceTask::local_addr`] gives); a restarted task gets a new one.
//!
//! # The sink: batches to an endpoint
//!
//! Each task sends its records to `http.url`, with `http.method`. With `batch.json.as.array`
//! (the default) a request is a JSON array of up to `batch.max.records` values of one partition,
//! each value as `JsonConverter` without schemas writes it (structs and maps as objects, strings
//! as strings, bytes as base64, null as null); without it, one request per record, its body the
//! value's bytes (a string's UTF-8, bytes as they are, anything else as JSON; a null value an
//! empty body). A partition's requests go one at a time, in order, so that a retried batch never
//! lands after a later one; `max.in.flight.requests` bounds the requests under way across
//! partitions.
//!
//! `put` buffers and starts requests: a partition with no request under way sends what it has at
//! once, so its batches fill up to `batch.max.records` only while the endpoint is busy with the
//! one before (low latency when idle, large requests under load). `flush` (and so the worker's
//! `pre_commit`) waits until every request for the records put so far has succeeded, so the
//! offsets the worker commits cover only delivered records. Connection errors, timeouts (`http.timeout.ms`), 429 and 5xx are retried
//! up to `max.retries` times with exponential backoff (`retry.backoff.ms` doubling up to
//! `retry.backoff.max.ms`, or longer when the answer's `Retry-After` says so, up to that cap);
//! any other answer that is not 2xx, or running out of retries, fails the task, naming the status
//! and the start of the answer's body. After a restart the records from the last committed offset
//! are sent again: at least once.
//!
//! # No TLS yet
//!
//! Both speak plain `http://` only: an `https://` listener or URL is refused with a config error.
//! Put a TLS-terminating proxy in front of the source, or beside the sink, meanwhile.

mod sink;
mod source;

pub use self::sink::{HttpSink, HttpSinkTask};
pub use self::source::{HttpSource, HttpSourceTask};

/// Why an `https://` address is refused.
const NO_TLS: &str = "https:// is not supported yet: the HTTP connectors have no TLS in this version; use http:// \
                      (behind or beside a TLS-terminating proxy)";
