//! Records as connectors, converters and transforms see them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::data::{Header, SchemaRef, Value};

/// A source partition or offset: a JSON object of primitives (Kafka Connect's
/// `Map<String, ?>`), stored as JSON in the offsets topic, as Kafka's worker stores it.
pub type SourceMap = serde_json::Map<String, serde_json::Value>;

/// A record in Connect's data model: what transforms and predicates take and give.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRecord {
    /// Topic.
    pub topic: String,
    /// Partition, when chosen (`None` lets the producer's partitioner choose).
    pub kafka_partition: Option<u32>,
    /// The key's schema (`None` when schemaless).
    pub key_schema: Option<SchemaRef>,
    /// Key.
    pub key: Value,
    /// The value's schema (`None` when schemaless).
    pub value_schema: Option<SchemaRef>,
    /// Value (`Null`: a tombstone).
    pub value: Value,
    /// Timestamp in ms (`None`: the producer stamps it).
    pub timestamp: Option<i64>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

impl ConnectRecord {
    /// A record with a value and nothing else.
    pub fn new(topic: impl Into<String>, value_schema: Option<SchemaRef>, value: Value) -> Self {
        ConnectRecord {
            topic: topic.into(),
            kafka_partition: None,
            key_schema: None,
            key: Value::Null,
            value_schema,
            value,
            timestamp: None,
            headers: Vec::new(),
        }
    }

    /// This record with a key.
    pub fn with_key(self, key_schema: Option<SchemaRef>, key: Value) -> Self {
        ConnectRecord { key_schema, key, ..self }
    }

    /// The last header with this key.
    pub fn header(&self, key: &str) -> Option<&Header> {
        self.headers.iter().rev().find(|h| h.key == key)
    }
}

/// A record a source task produced: the record, and where in the source it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// Which part of the source (a file, a table, ...); `None` when the source has no offsets.
    pub source_partition: Option<SourceMap>,
    /// How far into that part this record is; stored once the record is acknowledged.
    pub source_offset: Option<SourceMap>,
    /// The record.
    pub record: ConnectRecord,
    /// Fired by the worker once the record is written to the log, or its write failed: for a
    /// source whose caller waits for an answer (the HTTP source's webhook). Most sources have
    /// none, and learn what is durable from [`SourceTask::commit`](crate::SourceTask::commit).
    pub ack: Option<SourceAck>,
}

/// What a [`SourceAck`]'s waiting side receives: `Ok` once the record is in the log, the error
/// when writing it failed.
pub type AckResult = std::result::Result<(), String>;

/// Tells whoever waits on a source record that the worker wrote it to the log, or failed to.
///
/// The worker fires a record's ack once: `Ok` when the log acknowledged the batch holding the
/// record, and also when a transform dropped the record or a tolerated failure skipped it (the
/// source has moved past it, as its offset has); `Err` with the error when writing the batch
/// failed. An ack the worker never fires, because the task failed or stopped first, is dropped,
/// and the waiting side sees its channel closed: the record may or may not have been written.
///
/// The worker writes a task's records in order and acknowledges a batch only after the one before
/// it, so an ack on the last of several records speaks for all of them; the HTTP source puts one
/// on the last record of each request.
///
/// Records derive `Clone` and `PartialEq`, so an ack must too, though it is not data: clones
/// share one sender (the first to fire answers, later fires do nothing), and any two acks
/// compare equal, so records equal in what they carry are equal whatever acks they hold.
#[derive(Clone)]
pub struct SourceAck {
    sender: Arc<Mutex<Option<oneshot::Sender<AckResult>>>>,
}

impl SourceAck {
    /// An ack and the receiver its result arrives on.
    pub fn new() -> (SourceAck, oneshot::Receiver<AckResult>) {
        let (sender, receiver) = oneshot::channel();
        (SourceAck { sender: Arc::new(Mutex::new(Some(sender))) }, receiver)
    }

    /// The record is in the log.
    pub fn succeed(&self) {
        self.fire(Ok(()));
    }

    /// Writing the record failed with `error`.
    pub fn fail(&self, error: impl fmt::Display) {
        self.fire(Err(error.to_string()));
    }

    /// Whether it was fired already (by this ack or a clone).
    pub fn is_fired(&self) -> bool {
        self.sender.lock().expect("ack lock").is_none()
    }

    fn fire(&self, result: AckResult) {
        if let Some(sender) = self.sender.lock().expect("ack lock").take() {
            // The waiting side may have gone (an HTTP caller that hung up): nothing to tell.
            let _ = sender.send(result);
        }
    }
}

impl fmt::Debug for SourceAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_fired() { "SourceAck(fired)" } else { "SourceAck(pending)" })
    }
}

/// Acks are not data: any two are equal (see [`SourceAck`]).
impl PartialEq for SourceAck {
    fn eq(&self, _other: &SourceAck) -> bool {
        true
    }
}

/// A record a sink task is given: the record and where in the log it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// The record (after the connector's transforms; `topic` may differ from where it was read).
    pub record: ConnectRecord,
    /// The topic it was read from.
    pub original_topic: String,
    /// The partition it was read from.
    pub original_partition: u32,
    /// Its offset there.
    pub kafka_offset: i64,
}

/// The worker's view of offsets a sink commits: next offset to read per topic partition.
pub type SinkOffsets = BTreeMap<freshet_core::TopicPartition, i64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_answers_once_and_its_clones_share_it() {
        let (ack, mut receiver) = SourceAck::new();
        let clone = ack.clone();
        assert!(!ack.is_fired());
        assert_eq!(format!("{ack:?}"), "SourceAck(pending)");
        clone.fail("the log is gone");
        ack.succeed();
        assert!(ack.is_fired() && clone.is_fired());
        assert_eq!(receiver.try_recv().unwrap(), Err("the log is gone".to_string()), "the first fire answers");
        assert_eq!(format!("{ack:?}"), "SourceAck(fired)");
    }

    #[test]
    fn an_ack_dropped_unfired_closes_its_channel() {
        let (ack, mut receiver) = SourceAck::new();
        let record = SourceRecord {
            source_partition: None,
            source_offset: None,
            record: ConnectRecord::new("t", None, Value::Null),
            ack: Some(ack),
        };
        let copy = record.clone();
        assert_eq!(copy, SourceRecord { ack: Some(SourceAck::new().0), ..record.clone() }, "acks are not data");
        drop((record, copy));
        assert_eq!(receiver.try_recv(), Err(oneshot::error::TryRecvError::Closed));
    }
}
