//! A topic as a DataFusion table: `TopicTable` scans its partitions concurrently, decodes record
//! values into Arrow in bulk (arrow-json's decoder over many records at once), and narrows what
//! it reads by the filters on `_partition`, `_offset` and `_timestamp` (a timestamp bound seeks
//! with the log's time index) and by a limit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, MapBuilder, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::reader::ReaderBuilder;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{BinaryExpr, CreateExternalTable, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::ExecutionPlan;
use freshet_core::OffsetSpec;
use freshet_core::{Admin, Consumer, ConsumerConfig, ConsumerRecord, Substrate, TopicPartition};

use super::format::Format;
use super::row::ValueSerde;

/// The columns every topic table starts with.
pub const METADATA_COLUMNS: [&str; 5] = ["_partition", "_offset", "_timestamp", "_key", "_headers"];

/// Whether a topic is read as a stream of events or as a table (the latest value per key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableKind {
    /// Every record is a row (the default).
    Stream,
    /// Each record replaces its key's row; the key column holds the record key.
    Table {
        /// The column that holds the record key.
        key: String,
    },
}

/// A topic read as a table.
pub struct TopicTable {
    topic: String,
    format: Format,
    kind: TableKind,
    /// The metadata columns, then the value's.
    schema: SchemaRef,
    decoding: Arc<Decoding>,
    admin: Arc<dyn Admin>,
    substrate: Arc<dyn Substrate>,
}

/// How a topic's records become rows.
#[derive(Debug)]
struct Decoding {
    topic: String,
    format: Format,
    /// The value's columns.
    value_schema: SchemaRef,
    /// The metadata columns, then the value's.
    schema: SchemaRef,
}

impl std::fmt::Debug for TopicTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicTable").field("topic", &self.topic).field("format", &self.format).finish_non_exhaustive()
    }
}

/// A builder of the `_headers` column: a map of header name to value bytes (a name may repeat,
/// as in a record).
fn headers_builder(capacity: usize) -> MapBuilder<StringBuilder, BinaryBuilder> {
    MapBuilder::with_capacity(None, StringBuilder::new(), BinaryBuilder::new(), capacity)
}

fn metadata_fields() -> Vec<Field> {
    vec![
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
        Field::new("_timestamp", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        Field::new("_key", DataType::Utf8, true),
        Field::new("_headers", datafusion::arrow::array::Array::data_type(&headers_builder(0).finish()).clone(), false),
    ]
}

/// The part of a partition a scan reads: `[start, end)`.
#[derive(Debug, Clone, Copy)]
struct Range {
    start: i64,
    end: i64,
}

/// Bounds found in the filters.
#[derive(Debug, Default)]
struct Bounds {
    partitions: Option<Vec<u32>>,
    min_offset: Option<i64>,
    max_offset: Option<i64>,
    min_timestamp: Option<i64>,
}

impl TopicTable {
    /// The table over `topic`, its values in `format` with `value_schema` columns.
    pub fn new(
        topic: &str,
        format: Format,
        value_schema: SchemaRef,
        admin: Arc<dyn Admin>,
        substrate: Arc<dyn Substrate>,
    ) -> datafusion::common::Result<Self> {
        let mut fields = metadata_fields();
        for f in value_schema.fields() {
            if METADATA_COLUMNS.contains(&f.name().as_str()) {
                return Err(DataFusionError::Plan(format!(
                    "column {} is one of the metadata columns every topic table has ({})",
                    f.name(),
                    METADATA_COLUMNS.join(", ")
                )));
            }
            fields.push(f.as_ref().clone().with_nullable(true));
        }
        let schema = Arc::new(Schema::new(fields));
        let decoding = Arc::new(Decoding {
            topic: topic.to_string(),
            format: format.clone(),
            value_schema,
            schema: schema.clone(),
        });
        Ok(TopicTable { topic: topic.to_string(), format, kind: TableKind::Stream, schema, decoding, admin, substrate })
    }

    /// The same table read as `kind` (a table's key column must be one of its columns).
    pub fn with_kind(mut self, kind: TableKind) -> datafusion::common::Result<Self> {
        if let TableKind::Table { key } = &kind {
            if self.decoding.value_schema.index_of(key).is_err() {
                return Err(DataFusionError::Plan(format!(
                    "the key column {key} of a table over topic {:?} is not one of its columns",
                    self.topic
                )));
            }
        }
        self.kind = kind;
        Ok(self)
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Stream or table.
    pub fn kind(&self) -> &TableKind {
        &self.kind
    }

    /// The value's columns (the table's columns after the metadata ones).
    pub fn value_schema(&self) -> &SchemaRef {
        &self.decoding.value_schema
    }

    /// The metadata columns, then the value's.
    pub fn schema_ref(&self) -> &SchemaRef {
        &self.schema
    }

    /// How values are encoded.
    pub fn format(&self) -> Format {
        self.format.clone()
    }

    /// What `filters` say about partitions, offsets and timestamps (only conjunctions of
    /// comparisons of a metadata column with a literal are looked at).
    fn bounds(filters: &[Expr]) -> Bounds {
        let mut b = Bounds::default();
        for filter in filters {
            match filter {
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                    let (column, op, value) = match (left.as_ref(), right.as_ref()) {
                        (Expr::Column(c), Expr::Literal(v, _)) => (c.name.as_str(), *op, v),
                        (Expr::Literal(v, _), Expr::Column(c)) => match op.swap() {
                            Some(op) => (c.name.as_str(), op, v),
                            None => continue,
                        },
                        _ => continue,
                    };
                    let Some(v) = literal_i64(value) else { continue };
                    match (column, op) {
                        ("_partition", Operator::Eq) => {
                            if let Ok(p) = u32::try_from(v) {
                                b.partitions = Some(vec![p]);
                            } else {
                                b.partitions = Some(Vec::new());
                            }
                        }
                        ("_offset", Operator::Eq) => {
                            b.min_offset = Some(b.min_offset.map_or(v, |m| m.max(v)));
                            b.max_offset = Some(b.max_offset.map_or(v, |m| m.min(v)));
                        }
                        ("_offset", Operator::GtEq) => b.min_offset = Some(b.min_offset.map_or(v, |m| m.max(v))),
                        ("_offset", Operator::Gt) => b.min_offset = Some(b.min_offset.map_or(v + 1, |m| m.max(v + 1))),
                        ("_offset", Operator::LtEq) => b.max_offset = Some(b.max_offset.map_or(v, |m| m.min(v))),
                        ("_offset", Operator::Lt) => b.max_offset = Some(b.max_offset.map_or(v - 1, |m| m.min(v - 1))),
                        ("_timestamp", Operator::GtEq | Operator::Eq) => {
                            b.min_timestamp = Some(b.min_timestamp.map_or(v, |m| m.max(v)))
                        }
                        ("_timestamp", Operator::Gt) => {
                            b.min_timestamp = Some(b.min_timestamp.map_or(v + 1, |m| m.max(v + 1)))
                        }
                        _ => {}
                    }
                }
                Expr::InList(list) if !list.negated => {
                    if let Expr::Column(c) = list.expr.as_ref() {
                        if c.name == "_partition" {
                            let ps: Option<Vec<u32>> = list
                                .list
                                .iter()
                                .map(|e| match e {
                                    Expr::Literal(v, _) => literal_i64(v).and_then(|v| u32::try_from(v).ok()),
                                    _ => None,
                                })
                                .collect();
                            if let Some(ps) = ps {
                                b.partitions = Some(ps);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        b
    }

    /// The offsets to read of each partition, from the filters' bounds and the log's offsets.
    async fn ranges(&self, bounds: &Bounds) -> freshet_core::Result<BTreeMap<u32, Range>> {
        let (description, _) = self.admin.describe_topic(&self.topic).await?;
        let partitions: Vec<u32> = match &bounds.partitions {
            Some(ps) => ps.iter().copied().filter(|p| *p < description.n_partitions).collect(),
            None => (0..description.n_partitions).collect(),
        };
        let mut ranges = BTreeMap::new();
        for p in partitions {
            let tp = TopicPartition::new(&self.topic, p);
            let earliest = self.admin.list_offset(&tp, OffsetSpec::Earliest).await?.map_or(0, |o| o.0);
            let latest = self.admin.list_offset(&tp, OffsetSpec::Latest).await?.map_or(0, |o| o.0);
            let mut start = earliest.max(bounds.min_offset.unwrap_or(0));
            if let Some(ts) = bounds.min_timestamp {
                // The time index: the first record at or after the timestamp.
                let by_time = self.admin.list_offset(&tp, OffsetSpec::Timestamp(ts)).await?.map_or(latest, |o| o.0);
                start = start.max(by_time);
            }
            let end = latest.min(bounds.max_offset.map_or(i64::MAX, |m| m.saturating_add(1)));
            if start < end {
                ranges.insert(p, Range { start, end });
            }
        }
        Ok(ranges)
    }
}

/// One partition's scan: a stream of decoded batches, read as it is consumed, so a scan holds
/// one fetch per partition at a time.
struct PartitionScan {
    decoding: Arc<Decoding>,
    substrate: Arc<dyn Substrate>,
    partition: u32,
    range: Range,
    limit: Option<usize>,
}

impl std::fmt::Debug for PartitionScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionScan")
            .field("topic", &self.decoding.topic)
            .field("partition", &self.partition)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// Where a partition's scan is.
struct ScanState {
    consumer: Option<Box<dyn Consumer>>,
    read: usize,
}

impl PartitionScan {
    /// The next decoded batch, `None` at the end of the range (or of the limit).
    async fn next(&self, state: &mut ScanState) -> datafusion::common::Result<Option<RecordBatch>> {
        let tp = TopicPartition::new(&self.decoding.topic, self.partition);
        let range = self.range;
        if state.consumer.is_none() {
            let config = ConsumerConfig { max_partition_fetch_bytes: 4 << 20, ..Default::default() };
            let mut consumer = self.substrate.consumer(config).map_err(external)?;
            consumer.assign(vec![tp.clone()]).await.map_err(external)?;
            consumer.seek_to_offset(&tp, range.start).map_err(external)?;
            state.consumer = Some(consumer);
        }
        let consumer = state.consumer.as_mut().expect("opened");
        let wanted = self.limit.unwrap_or(usize::MAX);
        let mut idle = 0;
        while consumer.position(&tp).unwrap_or(range.end) < range.end
            && !consumer.reached_end(&tp)
            && state.read < wanted
        {
            let polled = consumer.poll(Duration::from_millis(200)).await.map_err(external)?;
            if polled.is_empty() {
                idle += 1;
                if idle > 150 {
                    return Err(DataFusionError::Execution(format!(
                        "reading {tp}: nothing arrived for 30 s at offset {:?} (the end is {})",
                        consumer.position(&tp),
                        range.end
                    )));
                }
                continue;
            }
            let mut records: Vec<ConsumerRecord> = Vec::new();
            for b in polled {
                records.extend(
                    b.records()
                        .map_err(external)?
                        .into_iter()
                        .filter(|r| r.offset >= range.start && r.offset < range.end),
                );
            }
            records.truncate(wanted - state.read);
            if records.is_empty() {
                continue;
            }
            state.read += records.len();
            return self.decoding.decode(self.partition, &records).map(Some);
        }
        Ok(None)
    }
}

impl PartitionStream for PartitionScan {
    fn schema(&self) -> &SchemaRef {
        &self.decoding.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let scan = PartitionScan {
            decoding: self.decoding.clone(),
            substrate: self.substrate.clone(),
            partition: self.partition,
            range: self.range,
            limit: self.limit,
        };
        let state = ScanState { consumer: None, read: 0 };
        let stream = futures::stream::try_unfold((scan, state), |(scan, mut state)| async move {
            Ok(scan.next(&mut state).await?.map(|batch| (batch, (scan, state))))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.decoding.schema.clone(), stream))
    }
}

impl Decoding {
    /// Decodes records of one partition into a batch of the table's full schema.
    fn decode(&self, partition: u32, records: &[ConsumerRecord]) -> datafusion::common::Result<RecordBatch> {
        let mut partitions = Int32Builder::with_capacity(records.len());
        let mut offsets = Int64Builder::with_capacity(records.len());
        let mut timestamps = TimestampMillisecondBuilder::with_capacity(records.len());
        let mut keys = StringBuilder::with_capacity(records.len(), records.len() * 16);
        let mut headers = headers_builder(records.len());
        for r in records {
            partitions.append_value(partition as i32);
            offsets.append_value(r.offset);
            timestamps.append_value(r.timestamp);
            match &r.key {
                Some(k) => keys.append_value(String::from_utf8_lossy(k)),
                None => keys.append_null(),
            }
            for h in &r.headers {
                headers.keys().append_value(&h.key);
                match &h.value {
                    Some(v) => headers.values().append_value(v),
                    None => headers.values().append_null(),
                }
            }
            headers.append(true).map_err(|e| DataFusionError::ArrowError(Box::new(e), None))?;
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(partitions.finish()),
            Arc::new(offsets.finish()),
            Arc::new(timestamps.finish()),
            Arc::new(keys.finish()),
            Arc::new(headers.finish()),
        ];
        match self.format {
            Format::Raw => {
                let mut values = StringBuilder::with_capacity(records.len(), records.len() * 64);
                for r in records {
                    match &r.value {
                        Some(v) => values.append_value(String::from_utf8_lossy(v)),
                        None => values.append_null(),
                    }
                }
                columns.push(Arc::new(values.finish()));
            }
            Format::Json => match decode_json(&self.value_schema, records) {
                Ok(batch) => columns.extend(batch.columns().iter().cloned()),
                Err(bulk) => return Err(self.blame(partition, records, bulk, "a JSON object of", decode_json)),
            },
            Format::Csv => match decode_csv(&self.value_schema, records) {
                Ok(batch) => columns.extend(batch.columns().iter().cloned()),
                Err(bulk) => return Err(self.blame(partition, records, bulk, "a CSV line of", decode_csv)),
            },
            Format::Avro(_) => {
                // Avro datums are not self-delimiting: each is read with the schema, then the
                // rows become columns.
                let serde = ValueSerde::new(&self.format, &self.value_schema, &self.value_schema);
                let rows = records
                    .iter()
                    .map(|r| {
                        use freshet_dsl::Serde as _;
                        let value = r.value.as_deref();
                        let row = match value {
                            Some(v) => serde.deserialize(Some(v)),
                            None => Ok(self
                                .value_schema
                                .fields()
                                .iter()
                                .map(|f| crate::value::null_of(f.data_type()))
                                .collect()),
                        };
                        row.map_err(|e| {
                            DataFusionError::Execution(format!(
                                "topic {} partition {partition} offset {}: {e}",
                                self.topic, r.offset
                            ))
                        })
                    })
                    .collect::<datafusion::common::Result<Vec<_>>>()?;
                for (i, f) in self.value_schema.fields().iter().enumerate() {
                    let values = rows.iter().map(|r| r[i].clone());
                    columns.push(if rows.is_empty() {
                        datafusion::arrow::array::new_empty_array(f.data_type())
                    } else {
                        ScalarValue::iter_to_array(values)?
                    });
                }
            }
        }
        let options = RecordBatchOptions::new().with_row_count(Some(records.len()));
        Ok(RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?)
    }
}

impl Decoding {
    /// The error of a bulk decode that failed: the first record that fails alone, named.
    fn blame(
        &self,
        partition: u32,
        records: &[ConsumerRecord],
        bulk: String,
        what: &str,
        decode: fn(&SchemaRef, &[ConsumerRecord]) -> Result<RecordBatch, String>,
    ) -> DataFusionError {
        for r in records {
            if let Err(e) = decode(&self.value_schema, std::slice::from_ref(r)) {
                return DataFusionError::Execution(format!(
                    "topic {} partition {partition} offset {}: the value is not {what} this table's columns: {e}",
                    self.topic, r.offset
                ));
            }
        }
        DataFusionError::Execution(format!("topic {}: {bulk}", self.topic))
    }
}

/// Decodes the values of `records` (all at once, with arrow-csv's decoder: one line per value)
/// into `schema`'s columns; a missing value is a row of nulls.
fn decode_csv(schema: &SchemaRef, records: &[ConsumerRecord]) -> Result<RecordBatch, String> {
    let mut decoder = datafusion::arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(false)
        .with_batch_size(records.len().max(1))
        .build_decoder();
    // A line of empty fields (one quoted, as an empty line is no line).
    let nulls = format!("\"\"{}", ",".repeat(schema.fields().len().saturating_sub(1)));
    for r in records {
        let value: &[u8] = match &r.value {
            Some(v) if !v.is_empty() => v,
            _ => nulls.as_bytes(),
        };
        for part in [value, b"\n"] {
            let mut part = part;
            while !part.is_empty() {
                let consumed = decoder.decode(part).map_err(|e| e.to_string())?;
                if consumed == 0 {
                    return Err(format!("offset {}: the CSV decoder did not progress", r.offset));
                }
                part = &part[consumed..];
            }
        }
    }
    match decoder.flush().map_err(|e| e.to_string())? {
        Some(batch) if batch.num_rows() == records.len() => Ok(batch),
        Some(batch) => Err(format!(
            "{} rows decoded from {} records (a value holds a line break?)",
            batch.num_rows(),
            records.len()
        )),
        None => Err("no rows decoded".into()),
    }
}

/// Decodes the values of `records` (all at once) into `schema`'s columns; a missing value is a
/// row of nulls.
fn decode_json(schema: &SchemaRef, records: &[ConsumerRecord]) -> Result<RecordBatch, String> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(records.len().max(1))
        .build_decoder()
        .map_err(|e| e.to_string())?;
    for r in records {
        let value: &[u8] = match &r.value {
            Some(v) => v,
            None => b"{}",
        };
        let consumed = decoder.decode(value).map_err(|e| e.to_string())?;
        if consumed < value.len() {
            return Err(format!("offset {}: more than one JSON value", r.offset));
        }
        decoder.decode(b"\n").map_err(|e| e.to_string())?;
    }
    match decoder.flush().map_err(|e| e.to_string())? {
        Some(batch) if batch.num_rows() == records.len() => Ok(batch),
        Some(batch) => Err(format!("{} rows decoded from {} records", batch.num_rows(), records.len())),
        None => Err("no rows decoded".into()),
    }
}

fn external(e: freshet_core::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A literal as an integer: offsets and partitions as they are, timestamps in milliseconds.
fn literal_i64(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int64(Some(v)) => Some(*v),
        ScalarValue::UInt8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1000),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(v.div_euclid(1000)),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000_000)),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for TopicTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        // The filters narrow what is read; DataFusion still applies them to every row.
        Ok(filters
            .iter()
            .map(|f| {
                let columns = f.column_refs();
                if !columns.is_empty() && columns.iter().all(|c| METADATA_COLUMNS[..3].contains(&c.name.as_str())) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let bounds = Self::bounds(filters);
        let ranges = self.ranges(&bounds).await.map_err(external)?;
        // One DataFusion partition per topic partition: they are read concurrently.
        let partitions: Vec<Arc<dyn PartitionStream>> = ranges
            .into_iter()
            .map(|(partition, range)| {
                Arc::new(PartitionScan {
                    decoding: self.decoding.clone(),
                    substrate: self.substrate.clone(),
                    partition,
                    range,
                    limit,
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        if partitions.is_empty() {
            // Nothing to read: an empty plan (a streaming one needs a partition).
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(datafusion::physical_plan::empty::EmptyExec::new(schema)));
        }
        let exec = StreamingTableExec::try_new(self.schema.clone(), partitions, projection, [], false, limit)?;
        Ok(Arc::new(exec))
    }
}

/// Makes topic tables for `CREATE EXTERNAL TABLE ... STORED AS TOPIC LOCATION 'topic'`.
pub struct TopicTableFactory {
    pub(crate) admin: Arc<dyn Admin>,
    pub(crate) substrate: Arc<dyn Substrate>,
}

impl std::fmt::Debug for TopicTableFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicTableFactory").finish_non_exhaustive()
    }
}

/// How many records of a topic a table without declared columns samples to infer them.
const SCHEMA_SAMPLE: usize = 1000;

#[async_trait]
impl TableProviderFactory for TopicTableFactory {
    async fn create(
        &self,
        _state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        let topic = match cmd.locations.as_slice() {
            [topic] if !topic.is_empty() => topic.clone(),
            _ => return Err(DataFusionError::Plan("a topic table needs LOCATION 'topic name'".into())),
        };
        let mut format = "json".to_string();
        let (mut avro_schema, mut framing) = (None, None);
        let mut table = false;
        let mut key = None;
        for (option, value) in &cmd.options {
            match option.as_str() {
                "format" | "format.format" => format = value.clone(),
                "schema" | "format.schema" => avro_schema = Some(value.clone()),
                "framing" | "format.framing" => framing = Some(value.clone()),
                "kind" | "format.kind" => {
                    table = match value.to_ascii_lowercase().as_str() {
                        "stream" => false,
                        "table" => true,
                        other => {
                            return Err(DataFusionError::Plan(format!(
                                "kind '{other}' is not known (known: 'stream', 'table')"
                            )))
                        }
                    }
                }
                "key" | "format.key" => key = Some(value.clone()),
                other => {
                    return Err(DataFusionError::Plan(format!(
                        "option '{other}' is not known for topic tables (known: 'format', 'kind', 'key', 'schema', 'framing')"
                    )))
                }
            }
        }
        // A PRIMARY KEY column names the key too.
        for c in cmd.constraints.iter() {
            if let datafusion::common::Constraint::PrimaryKey(columns) = c {
                match columns.as_slice() {
                    [i] => key = Some(cmd.schema.field(*i).name().clone()),
                    _ => return Err(DataFusionError::Plan("a topic table's key is one column".into())),
                }
                table = true;
            }
        }
        let kind = match (table, key) {
            (false, None) => TableKind::Stream,
            (true, Some(key)) => TableKind::Table { key },
            (true, None) => {
                return Err(DataFusionError::Plan(
                    "a table over a topic needs its key column: a PRIMARY KEY column or 'key' 'column'".into(),
                ))
            }
            (false, Some(_)) => {
                return Err(DataFusionError::Plan(
                    "'key' is for tables ('kind' 'table'); a stream has no key column".into(),
                ))
            }
        };
        if let Err(e) = self.admin.describe_topic(&topic).await {
            return Err(DataFusionError::Plan(format!("topic {topic:?}: {e}")));
        }
        let declared: Vec<Field> = cmd.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let (format, columns) = Format::declare(&format, avro_schema.as_deref(), framing.as_deref(), &declared)?;
        let value_schema = match format {
            Format::Json if columns.is_empty() => self.infer(&topic).await?,
            _ => Arc::new(Schema::new(columns)),
        };
        let table = TopicTable::new(&topic, format, value_schema, self.admin.clone(), self.substrate.clone())?
            .with_kind(kind)?;
        Ok(Arc::new(table))
    }
}

impl TopicTableFactory {
    /// Infers the columns from a sample of the topic's JSON values.
    async fn infer(&self, topic: &str) -> datafusion::common::Result<SchemaRef> {
        let raw = TopicTable::new(
            topic,
            Format::Raw,
            Arc::new(Schema::new(vec![Field::new("value", DataType::Utf8, true)])),
            self.admin.clone(),
            self.substrate.clone(),
        )?;
        let ranges = raw.ranges(&Bounds::default()).await.map_err(external)?;
        let mut values: Vec<Bytes> = Vec::new();
        for (p, range) in ranges {
            let tp = TopicPartition::new(topic, p);
            let mut consumer = self.substrate.consumer(ConsumerConfig::default()).map_err(external)?;
            consumer.assign(vec![tp.clone()]).await.map_err(external)?;
            consumer.seek_to_offset(&tp, range.start).map_err(external)?;
            let per_partition = SCHEMA_SAMPLE / 4;
            let mut taken = 0;
            let mut idle = 0;
            while taken < per_partition && consumer.position(&tp).unwrap_or(range.end) < range.end && idle < 25 {
                let polled = consumer.poll(Duration::from_millis(200)).await.map_err(external)?;
                idle = if polled.is_empty() { idle + 1 } else { 0 };
                for b in polled {
                    for r in b.records().map_err(external)? {
                        if let Some(v) = r.value {
                            values.push(v);
                            taken += 1;
                        }
                    }
                }
            }
            if values.len() >= SCHEMA_SAMPLE {
                break;
            }
        }
        if values.is_empty() {
            return Err(DataFusionError::Plan(format!(
                "topic {topic:?} is empty: declare the table's columns, they cannot be inferred"
            )));
        }
        let parsed = values.iter().map(|v| {
            serde_json::from_slice::<serde_json::Value>(v)
                .map_err(|e| datafusion::arrow::error::ArrowError::JsonError(e.to_string()))
        });
        let schema = datafusion::arrow::json::reader::infer_json_schema_from_iterator(parsed)
            .map_err(|e| DataFusionError::Plan(format!("inferring the columns of topic {topic:?}: {e}")))?;
        Ok(Arc::new(schema))
    }
}
