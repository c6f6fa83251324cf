//! Records as connectors, converters and transforms see them.

use std::collections::BTreeMap;

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
