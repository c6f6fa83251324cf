//! The JDBC sink, for PostgreSQL: records written as rows, with the config keys of Kafka
//! Connect's widely used JDBC sink (`io.confluent.connect.jdbc.JdbcSinkConnector`), so its
//! configs carry over.
//!
//! A record's value is a struct with a schema; each field is a column. `pk.mode` says where the
//! primary key comes from (`none`, `kafka`: the record's topic, partition and offset,
//! `record_key`: the key, a primitive or a struct, `record_value`: fields of the value) and
//! `insert.mode` how rows are written (`insert`, `upsert`, `update`). With `delete.enabled` a
//! tombstone (a null value) deletes the row its key names.
//!
//! # How a batch is written
//!
//! Each `put` (what one poll of the log gave, a MiB at most) is written in one transaction,
//! committed before `put` returns, so the worker commits the records' offsets only after their
//! rows are durable. Within it, the records of each table are taken in runs of one schema, in
//! order; a run's rows go by binary `COPY` into a temporary staging table, `batch.size` rows at a
//! time, and from there into the table with one statement (`INSERT ... SELECT`, `INSERT ... ON
//! CONFLICT DO UPDATE`, or `UPDATE ... FROM`); deletes likewise by `DELETE ... USING`. A run keeps
//! only the last record of each key, so a batch writes the latest value per key once (an upsert
//! may not touch a row twice in one statement).
//!
//! Upserts and deletes are idempotent: after a crash the worker gives the uncommitted records
//! again and the table ends as the topic's latest value per key.
//!
//! # Records that do not fit
//!
//! A record whose field has no column (with `auto.evolve` off), whose value the column's type
//! cannot hold (text into an integer, a number out of range, a null into a NOT NULL column), or
//! that has no key where the key is the primary key, is reported to the worker (Kafka's
//! `ErrantRecordReporter`) with a message naming the table and the column: with
//! `errors.tolerance=all` it goes to the dead-letter topic and the rest are written; otherwise the
//! task fails with that message. When PostgreSQL itself refuses a batch's data (a constraint, a
//! value it cannot parse), the batch is rewritten row by row, each under a savepoint, and the
//! rows it refuses are reported with its message.
//!
//! # Types
//!
//! Connect's types become `smallint` (INT8, INT16), `integer`, `bigint`, `real`, `double
//! precision`, `boolean`, `text`, `bytea`, `numeric` (Decimal), `date`, `time` and `timestamp`
//! (in `db.timezone`, UTC by default), as the JDBC sink's PostgreSQL dialect maps them. Arrays,
//! maps and nested structs, which that sink refuses, become `jsonb`. A text field may also fill
//! a column of a type PostgreSQL parses from text (`uuid`, an enum, `date`, `timestamp`, `json`),
//! but not a number, boolean or `bytea` column.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::SinkExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::connection::{describe, validation, Connection};
use super::copy::{CopyRows, PgType};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, ConfigValue, Importance, Props, Validator};
use crate::connector::{Connector, SinkConnector, SinkTask, SinkTaskContext};
use crate::data::{Schema, SchemaRef, Type, Value};
use crate::error::{ConnectError, Result};
use crate::record::SinkRecord;

/// The connector's keys: the JDBC sink's.
fn config_def() -> ConfigDef {
    use ConfigType::*;
    use Importance::*;
    let connection = |k: ConfigKey| k.in_group("Connection");
    let writes = |k: ConfigKey| k.in_group("Writes");
    let mapping = |k: ConfigKey| k.in_group("Data Mapping");
    let ddl = |k: ConfigKey| k.in_group("DDL Support");
    let retries = |k: ConfigKey| k.in_group("Retries");
    ConfigDef::new()
        .define(connection(ConfigKey::required(
            "connection.url",
            String,
            High,
            "The database: jdbc:postgresql://host:port/database (parameters user, password, currentSchema, \
             ApplicationName, connectTimeout, sslmode=disable) or postgresql://user:password@host:port/database.",
        )))
        .define(connection(ConfigKey::optional("connection.user", String, None, High, "The user to connect as.")))
        .define(connection(ConfigKey::optional("connection.password", Password, None, High, "The user's password.")))
        .define(connection(
            ConfigKey::optional(
                "connection.attempts",
                Int,
                Some("3"),
                Low,
                "How many times a connection is tried before the write fails.",
            )
            .validated(Validator::AtLeast(1.0)),
        ))
        .define(connection(
            ConfigKey::optional("connection.backoff.ms", Long, Some("10000"), Low, "The wait between attempts, in ms.")
                .validated(Validator::AtLeast(0.0)),
        ))
        .define(connection(ConfigKey::optional(
            "dialect.name",
            String,
            Some(""),
            Low,
            "The database dialect: empty or PostgreSqlDatabaseDialect (PostgreSQL is the only one).",
        )))
        .define(writes(
            ConfigKey::optional(
                "insert.mode",
                String,
                Some("insert"),
                High,
                "insert: INSERT rows; upsert: insert, or update the row with the same primary key; update: UPDATE \
                 the row with the same primary key.",
            )
            .validated(Validator::one_of(&["insert", "upsert", "update"])),
        ))
        .define(writes(
            ConfigKey::optional(
                "batch.size",
                Int,
                Some("3000"),
                Medium,
                "The most rows one COPY into the staging table, and one statement from it, takes.",
            )
            .validated(Validator::AtLeast(1.0)),
        ))
        .define(writes(ConfigKey::optional(
            "delete.enabled",
            Boolean,
            Some("false"),
            Medium,
            "Whether a tombstone (a null value) deletes the row of its key; needs pk.mode=record_key. Off: \
             tombstones are skipped.",
        )))
        .define(mapping(ConfigKey::optional(
            "table.name.format",
            String,
            Some("${topic}"),
            Medium,
            "The table a topic's records go to; ${topic} is the topic. schema.table names a schema.",
        )))
        .define(mapping(
            ConfigKey::optional(
                "pk.mode",
                String,
                Some("none"),
                High,
                "Where the primary key comes from: none; kafka (the record's topic, partition and offset); \
                 record_key (the key, a primitive or a struct); record_value (fields of the value).",
            )
            .validated(Validator::one_of(&["none", "kafka", "record_key", "record_value"])),
        ))
        .define(mapping(ConfigKey::optional(
            "pk.fields",
            List,
            Some(""),
            Medium,
            "The primary key's columns. kafka: three names (default __connect_topic,__connect_partition,\
             __connect_offset); record_key: the key struct's fields (default all), or the one column of a primitive \
             key (default __connect_key); record_value: the value's fields (default all).",
        )))
        .define(mapping(ConfigKey::optional(
            "fields.whitelist",
            List,
            Some(""),
            Medium,
            "The value's fields written as columns (default all).",
        )))
        .define(mapping(ConfigKey::optional(
            "db.timezone",
            String,
            Some("UTC"),
            Medium,
            "The time zone a timestamp column's wall-clock time is in.",
        )))
        .define(ddl(ConfigKey::optional(
            "auto.create",
            Boolean,
            Some("false"),
            Medium,
            "Whether a missing table is created from the record's schema (CREATE TABLE).",
        )))
        .define(ddl(ConfigKey::optional(
            "auto.evolve",
            Boolean,
            Some("false"),
            Medium,
            "Whether a field the table lacks is added as a column (ALTER TABLE ... ADD); only optional fields and \
             fields with a default can be.",
        )))
        .define(ddl(ConfigKey::optional(
            "quote.sql.identifiers",
            String,
            Some("always"),
            Medium,
            "always: table and column names are quoted (kept as written); never: left to PostgreSQL's folding.",
        )
        .validated(Validator::one_of(&["always", "never"]))))
        .define(ddl(ConfigKey::optional(
            "table.types",
            List,
            Some("TABLE"),
            Low,
            "Accepted for configs written for the JDBC sink; Freshet writes to tables (and views PostgreSQL lets it \
             write).",
        )))
        .define(retries(
            ConfigKey::optional(
                "max.retries",
                Int,
                Some("10"),
                Medium,
                "How many times a batch that failed for a reason that may pass (a lost connection, a deadlock) is \
                 written again before the task fails.",
            )
            .validated(Validator::AtLeast(0.0)),
        ))
        .define(retries(
            ConfigKey::optional("retry.backoff.ms", Long, Some("3000"), Medium, "The wait between retries, in ms.")
                .validated(Validator::AtLeast(0.0)),
        ))
}

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InsertMode {
    Insert,
    Upsert,
    Update,
}

/// Where the primary key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PkMode {
    None,
    Kafka,
    RecordKey,
    RecordValue,
}

/// The connector's config, checked.
#[derive(Debug, Clone)]
struct Settings {
    connection: Connection,
    table_format: String,
    insert_mode: InsertMode,
    pk_mode: PkMode,
    pk_fields: Vec<String>,
    fields: Vec<String>,
    delete_enabled: bool,
    auto_create: bool,
    auto_evolve: bool,
    quote: bool,
    batch_size: usize,
    max_retries: u32,
    retry_backoff: Duration,
}

impl Settings {
    fn new(config: &Config) -> Result<Settings> {
        let pick = |key: &str, default: &str| config.get(key).unwrap_or(default).trim().to_ascii_lowercase();
        let insert_mode = match pick("insert.mode", "insert").as_str() {
            "insert" => InsertMode::Insert,
            "upsert" => InsertMode::Upsert,
            "update" => InsertMode::Update,
            other => return Err(ConnectError::config("insert.mode", other, "must be insert, upsert or update")),
        };
        let pk_mode = match pick("pk.mode", "none").as_str() {
            "none" => PkMode::None,
            "kafka" => PkMode::Kafka,
            "record_key" => PkMode::RecordKey,
            "record_value" => PkMode::RecordValue,
            other => {
                return Err(ConnectError::config("pk.mode", other, "must be none, kafka, record_key or record_value"))
            }
        };
        let pk_fields = config.list("pk.fields");
        if insert_mode != InsertMode::Insert && pk_mode == PkMode::None {
            return Err(ConnectError::config(
                "pk.mode",
                "none",
                format!("insert.mode={} needs a primary key: set pk.mode", pick("insert.mode", "")),
            ));
        }
        let delete_enabled = config.boolean("delete.enabled", false)?;
        if delete_enabled && pk_mode != PkMode::RecordKey {
            return Err(ConnectError::config(
                "delete.enabled",
                "true",
                "deletes find rows by the record's key: set pk.mode=record_key",
            ));
        }
        if pk_mode == PkMode::Kafka && !pk_fields.is_empty() && pk_fields.len() != 3 {
            return Err(ConnectError::config(
                "pk.fields",
                pk_fields.join(","),
                "pk.mode=kafka takes three column names (topic, partition, offset)",
            ));
        }
        match config.get("dialect.name").map(str::trim) {
            None | Some("") | Some("PostgreSqlDatabaseDialect") => {}
            Some(other) => {
                return Err(ConnectError::config(
                    "dialect.name",
                    other,
                    "Freshet's JDBC sink writes to PostgreSQL only (PostgreSqlDatabaseDialect)",
                ))
            }
        }
        let time_zone = config.get("db.timezone").unwrap_or("UTC");
        Ok(Settings {
            connection: Connection::from_config(config, time_zone)?,
            table_format: config.get("table.name.format").unwrap_or("${topic}").to_string(),
            insert_mode,
            pk_mode,
            pk_fields,
            fields: config.list("fields.whitelist"),
            delete_enabled,
            auto_create: config.boolean("auto.create", false)?,
            auto_evolve: config.boolean("auto.evolve", false)?,
            quote: pick("quote.sql.identifiers", "always") != "never",
            batch_size: config.number_or("batch.size", 3000usize)?.max(1),
            max_retries: config.number_or("max.retries", 10u32)?,
            retry_backoff: Duration::from_millis(config.number_or("retry.backoff.ms", 3000u64)?),
        })
    }

    /// An identifier as SQL writes it.
    fn ident(&self, name: &str) -> String {
        if self.quote {
            format!("\"{}\"", name.replace('"', "\"\""))
        } else {
            name.to_string()
        }
    }

    /// The table a record of `topic` goes to, as SQL names it.
    fn table(&self, topic: &str) -> std::result::Result<String, String> {
        let name = self.table_format.replace("${topic}", topic);
        let parts: Vec<&str> = name.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 2 {
            return Err(format!(
                "table.name.format gives {name:?} for topic {topic:?}; a PostgreSQL table is named table or \
                 schema.table (rename the topic with a RegexRouter transform, or set table.name.format)"
            ));
        }
        Ok(parts.iter().map(|p| self.ident(p)).collect::<Vec<_>>().join("."))
    }
}

/// The JDBC sink connector.
#[derive(Debug, Default)]
pub struct JdbcSink {
    props: Props,
}

#[async_trait]
impl Connector for JdbcSink {
    fn config_def(&self) -> ConfigDef {
        config_def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValue> {
        validation(props, |c| Settings::new(c).map(drop))
    }

    async fn start(&mut self, config: &Config) -> Result<()> {
        self.props = config.originals().clone();
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Props>> {
        // Tasks share the topics' partitions through the consumer group.
        Ok(vec![self.props.clone(); max_tasks.max(1)])
    }
}

impl SinkConnector for JdbcSink {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::<JdbcSinkTask>::default()
    }
}

/// The JDBC sink's task.
///
/// A batch is written by a tokio task of its own while the worker reads and converts the next
/// one: `put` waits for the batch before (so one is under way at a time, and a failure of it
/// fails this put), hands the new one over and returns; `flush`, which comes before the worker
/// commits offsets, waits for it. So the offsets committed are of rows committed, and the log's
/// reading and PostgreSQL's writing overlap.
#[derive(Debug, Default)]
pub struct JdbcSinkTask {
    settings: Option<Settings>,
    /// The connection and what is known of the tables; away while a write has it.
    db: Option<Db>,
    writing: Option<tokio::task::JoinHandle<(Db, Result<()>)>>,
    context: SinkTaskContext,
}

impl JdbcSinkTask {
    /// Waits for the write under way, if any; its result.
    async fn written(&mut self) -> Result<()> {
        let Some(writing) = self.writing.take() else { return Ok(()) };
        let (db, result) = writing.await.map_err(|e| ConnectError::Task(format!("the batch writer failed: {e}")))?;
        self.db = Some(db);
        result
    }
}

#[async_trait]
impl SinkTask for JdbcSinkTask {
    fn initialize(&mut self, context: SinkTaskContext) {
        self.context = context;
    }

    async fn start(&mut self, config: &Config) -> Result<()> {
        let settings = Settings::new(config)?;
        let client = settings.connection.connect().await?;
        self.db = Some(Db { client: Some(client), tables: HashMap::new(), n_stages: 0 });
        self.settings = Some(settings);
        Ok(())
    }

    async fn put(&mut self, records: &[SinkRecord]) -> Result<()> {
        let settings = self.settings.clone().ok_or_else(|| ConnectError::Task("put before start".into()))?;
        self.written().await?;
        if records.is_empty() {
            return Ok(());
        }
        let mut db = self.db.take().expect("back from the last write");
        let context = self.context.clone();
        let records = records.to_vec();
        self.writing = Some(tokio::spawn(async move {
            let result = db.put(&settings, &context, &records).await;
            (db, result)
        }));
        Ok(())
    }

    async fn flush(&mut self, _offsets: &crate::record::SinkOffsets) -> Result<()> {
        self.written().await
    }

    async fn stop(&mut self) -> Result<()> {
        self.written().await
    }
}

/// The sink's connection, and what it knows of the tables it writes.
#[derive(Debug, Default)]
struct Db {
    client: Option<Client>,
    /// By SQL name; forgotten when a write fails.
    tables: HashMap<String, Table>,
    /// Names the staging tables.
    n_stages: u64,
}

impl Db {
    /// Writes a batch, trying again `max.retries` times when that may help, then reports the
    /// records that did not fit.
    async fn put(&mut self, settings: &Settings, context: &SinkTaskContext, records: &[SinkRecord]) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.write(settings, records).await {
                Ok(mut rejected) => {
                    // Reported in the order the records came.
                    rejected.sort_by_key(|(idx, _)| *idx);
                    for (idx, why) in rejected {
                        context.report(&records[idx], ConnectError::Data(why)).await?;
                    }
                    return Ok(());
                }
                Err(WriteError::Retry(why)) => {
                    self.client = None;
                    self.tables.clear();
                    attempt += 1;
                    if attempt > settings.max_retries {
                        return Err(ConnectError::Task(format!(
                            "writing to {} failed {attempt} times (max.retries={}): {why}",
                            settings.connection.target(),
                            settings.max_retries
                        )));
                    }
                    tracing::warn!(
                        target = settings.connection.target(),
                        attempt,
                        error = why,
                        "writing a batch failed; trying again"
                    );
                    tokio::time::sleep(settings.retry_backoff).await;
                }
                Err(WriteError::Fatal(why)) => {
                    self.tables.clear();
                    return Err(ConnectError::Task(why));
                }
            }
        }
    }
}

/// Why a write failed.
#[derive(Debug)]
enum WriteError {
    /// It may pass: the connection was lost, a deadlock, the server is short of something.
    Retry(String),
    /// It will not pass by trying again: the task fails.
    Fatal(String),
}

/// A statement's failure, sorted by what it means for the records.
#[derive(Debug)]
enum StatementError {
    /// The rows' data: rewrite row by row, report the rows refused.
    Data(String),
    /// Not the data's fault.
    Write(WriteError),
}

impl From<WriteError> for StatementError {
    fn from(e: WriteError) -> Self {
        StatementError::Write(e)
    }
}

/// Sorts a PostgreSQL error by SQLSTATE: data exceptions (class 22), integrity violations (23)
/// and a column whose type the data cannot take (42804) are the rows' data; a lost connection,
/// a serialization failure or deadlock (40), lack of resources (53) or a server shutting down
/// (57P) may pass; anything else is fatal.
fn classify(e: &tokio_postgres::Error, what: &str) -> StatementError {
    let message = format!("{what}: {}", describe(e));
    let Some(db) = e.as_db_error() else {
        return StatementError::Write(WriteError::Retry(message));
    };
    let code = db.code().code();
    if code.starts_with("22") || code.starts_with("23") || *db.code() == SqlState::DATATYPE_MISMATCH {
        StatementError::Data(message)
    } else if code.starts_with("08") || code.starts_with("40") || code.starts_with("53") || code.starts_with("57P") {
        StatementError::Write(WriteError::Retry(message))
    } else {
        StatementError::Write(WriteError::Fatal(message))
    }
}

/// A statement's failure as a write's: data errors outside a row's write are fatal too.
fn fail(e: &tokio_postgres::Error, what: &str) -> WriteError {
    match classify(e, what) {
        StatementError::Data(m) => WriteError::Fatal(m),
        StatementError::Write(w) => w,
    }
}

/// What the sink knows of a table: its columns.
#[derive(Debug, Clone)]
struct Table {
    columns: HashMap<String, TableColumn>,
}

#[derive(Debug, Clone)]
struct TableColumn {
    /// As PostgreSQL writes it (`character varying(20)`, `integer`).
    type_sql: String,
    family: Family,
    /// `pg_type.typname`.
    type_name: String,
    not_null: bool,
}

/// Kinds of column type, for what a field of each [`PgType`] may fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Number,
    Text,
    Bool,
    Bytes,
    Time,
    Json,
    Other,
}

impl Family {
    fn of(type_name: &str) -> Family {
        match type_name {
            "int2" | "int4" | "int8" | "float4" | "float8" | "numeric" => Family::Number,
            "text" | "varchar" | "bpchar" | "name" | "citext" => Family::Text,
            "bool" => Family::Bool,
            "bytea" => Family::Bytes,
            "date" | "time" | "timetz" | "timestamp" | "timestamptz" => Family::Time,
            "json" | "jsonb" => Family::Json,
            _ => Family::Other,
        }
    }
}

/// How a staged field reaches its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    /// As it is (PostgreSQL's assignment casts: `integer` into `bigint`, anything into `text`).
    Assign,
    /// Cast to the column's type (text into `uuid`, `jsonb` into `json`).
    Cast,
    /// It cannot.
    Mismatch,
}

fn fit(ty: PgType, family: Family) -> Fit {
    use Family as F;
    match (ty, family) {
        (_, F::Text) if !matches!(ty, PgType::Bytea | PgType::Jsonb) => Fit::Assign,
        // Text parsed as the column's type: a uuid, an enum's label, an ISO date. Not as a number,
        // a boolean or bytes: a text field where the table has one of those is a schema mistake,
        // reported once per record rather than as whatever PostgreSQL fails to parse.
        (PgType::Text, F::Time | F::Json | F::Other) => Fit::Cast,
        (PgType::Bool, F::Bool) | (PgType::Bytea, F::Bytes) => Fit::Assign,
        (PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Float4 | PgType::Float8 | PgType::Numeric, F::Number) => {
            Fit::Assign
        }
        (PgType::Date | PgType::Time | PgType::Timestamp, F::Time) => Fit::Assign,
        (PgType::Jsonb, F::Json | F::Text | F::Other) => Fit::Cast,
        (_, F::Other) => Fit::Cast,
        _ => Fit::Mismatch,
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Topic,
    Partition,
    Offset,
    /// A primitive key.
    Key,
    /// A field of a struct key.
    KeyField(usize),
    /// A field of the value.
    ValueField(usize),
}

/// A column a run writes.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    source: Source,
    ty: PgType,
    schema: SchemaRef,
    pk: bool,
}

impl Column {
    fn value<'r>(&self, record: &'r SinkRecord) -> Option<&'r Value> {
        let field = |v: &'r Value, i: usize| match v {
            Value::Struct(s) => s.values.get(i),
            _ => None,
        };
        match self.source {
            Source::Key => Some(&record.record.key),
            Source::KeyField(i) => field(&record.record.key, i),
            Source::ValueField(i) => field(&record.record.value, i),
            Source::Topic | Source::Partition | Source::Offset => None,
        }
    }

    /// Writes the record's value of this column.
    fn write(&self, rows: &mut CopyRows, record: &SinkRecord) -> std::result::Result<(), String> {
        match self.source {
            Source::Topic => rows.text(&record.original_topic)?,
            Source::Partition => rows.int4(record.original_partition as i32),
            Source::Offset => rows.int8(record.kafka_offset),
            _ => {
                let value = self.value(record).unwrap_or(&Value::Null);
                if self.pk && value.is_null() {
                    return Err(format!("the record has no value for the primary key column {:?}", self.name));
                }
                rows.value(self.ty, &self.schema, value).map_err(|e| format!("column {:?}: {e}", self.name))?
            }
        }
        Ok(())
    }
}

/// Records of one table and one schema, in order.
#[derive(Debug)]
struct Run {
    table: String,
    key_schema: Option<SchemaRef>,
    value_schema: Option<SchemaRef>,
    columns: Vec<Column>,
    /// Indexes into the records; a tombstone is a delete.
    records: Vec<usize>,
}

/// The schema of a record's key or value: given, or a struct's own.
fn schema_of(schema: &Option<SchemaRef>, value: &Value) -> Option<SchemaRef> {
    match (schema, value) {
        (Some(s), _) => Some(s.clone()),
        (None, Value::Struct(s)) => Some(s.schema.clone()),
        (None, v) => v.infer_schema().filter(|s| s.ty.is_primitive()),
    }
}

fn same(a: &Option<SchemaRef>, b: &Option<SchemaRef>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

/// The fields of a key's or value's struct that `pk.fields` names (all, without it), each with
/// its column name.
fn pk_fields<'s>(
    settings: &'s Settings,
    schema: &'s Schema,
    what: &str,
) -> std::result::Result<Vec<(&'s str, &'s crate::data::Field)>, String> {
    let wanted: Vec<&str> = if settings.pk_fields.is_empty() {
        schema.fields.iter().map(|f| f.name.as_str()).collect()
    } else {
        settings.pk_fields.iter().map(String::as_str).collect()
    };
    wanted
        .into_iter()
        .map(|name| {
            let f = schema.field(name).ok_or_else(|| {
                let have: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
                format!("pk.fields names {name:?}, which the {what}'s struct lacks (it has {})", have.join(", "))
            })?;
            Ok((name, f))
        })
        .collect()
}

/// A run's columns, from its key's and value's schemas (`value_schema` is `None` for a run of
/// deletes).
fn columns(
    settings: &Settings,
    key_schema: Option<&SchemaRef>,
    value_schema: Option<&SchemaRef>,
) -> std::result::Result<Vec<Column>, String> {
    let mut columns = Vec::new();
    let pk = |name: &str, source, schema: SchemaRef| Column {
        name: name.to_string(),
        source,
        ty: PgType::of(&schema),
        schema,
        pk: true,
    };
    match settings.pk_mode {
        PkMode::None => {}
        PkMode::Kafka => {
            let names = if settings.pk_fields.len() == 3 {
                settings.pk_fields.clone()
            } else {
                vec!["__connect_topic".into(), "__connect_partition".into(), "__connect_offset".into()]
            };
            columns.push(pk(&names[0], Source::Topic, Schema::primitive(Type::String)));
            columns.push(pk(&names[1], Source::Partition, Schema::primitive(Type::Int32)));
            columns.push(pk(&names[2], Source::Offset, Schema::primitive(Type::Int64)));
        }
        PkMode::RecordKey => {
            let key = key_schema.ok_or("pk.mode=record_key, but the record has no key")?;
            if key.ty == Type::Struct {
                for (name, f) in pk_fields(settings, key, "key")? {
                    columns.push(pk(name, Source::KeyField(f.index), f.schema.clone()));
                }
            } else if key.ty.is_primitive() {
                if settings.pk_fields.len() > 1 {
                    return Err(format!(
                        "pk.fields names {} columns, but the key is a single {}",
                        settings.pk_fields.len(),
                        key.ty
                    ));
                }
                let name = settings.pk_fields.first().map_or("__connect_key", String::as_str);
                columns.push(pk(name, Source::Key, key.clone()));
            } else {
                return Err(format!("pk.mode=record_key needs a primitive or struct key; the key is a {}", key.ty));
            }
        }
        PkMode::RecordValue => {
            let value = value_schema.ok_or("pk.mode=record_value, but the record has no value")?;
            for (name, f) in pk_fields(settings, value, "value")? {
                columns.push(pk(name, Source::ValueField(f.index), f.schema.clone()));
            }
        }
    }
    if let Some(value) = value_schema {
        for f in &value.fields {
            if !settings.fields.is_empty() && !settings.fields.contains(&f.name) {
                continue;
            }
            if columns.iter().any(|c| c.name == f.name) {
                continue;
            }
            columns.push(Column {
                name: f.name.clone(),
                source: Source::ValueField(f.index),
                ty: PgType::of(&f.schema),
                schema: f.schema.clone(),
                pk: false,
            });
        }
    }
    Ok(columns)
}

/// Sorts the records into runs; records that cannot be written at all are rejected.
fn plan(settings: &Settings, records: &[SinkRecord]) -> (Vec<Run>, Vec<(usize, String)>) {
    let mut runs: Vec<Run> = Vec::new();
    let mut rejected = Vec::new();
    // The last run of each table.
    let mut last: HashMap<String, usize> = HashMap::new();
    for (idx, r) in records.iter().enumerate() {
        let tombstone = r.record.value.is_null();
        if tombstone && !settings.delete_enabled {
            continue;
        }
        let table = match settings.table(&r.record.topic) {
            Ok(t) => t,
            Err(why) => {
                rejected.push((idx, why));
                continue;
            }
        };
        let key_schema = schema_of(&r.record.key_schema, &r.record.key);
        let value_schema = if tombstone { None } else { schema_of(&r.record.value_schema, &r.record.value) };
        if !tombstone && value_schema.as_ref().is_none_or(|s| s.ty != Type::Struct) {
            rejected.push((
                idx,
                format!(
                    "the JDBC sink writes records whose value is a struct with a schema; this value is a {} {}(use \
                         a converter that gives schemas, such as JsonConverter with schemas.enable=true)",
                    r.record.value.kind(),
                    if value_schema.is_none() { "without a schema " } else { "" }
                ),
            ));
            continue;
        }
        // A record joins its table's last run when its schemas are that run's (a tombstone: its
        // key's); a run of deletes does not take values.
        let joins = last.get(&table).copied().filter(|&i| {
            let run = &runs[i];
            same(&run.key_schema, &key_schema)
                && (tombstone || (run.value_schema.is_some() && same(&run.value_schema, &value_schema)))
        });
        if let Some(i) = joins {
            runs[i].records.push(idx);
            continue;
        }
        match columns(settings, key_schema.as_ref(), value_schema.as_ref()) {
            Ok(columns) => {
                last.insert(table.clone(), runs.len());
                runs.push(Run { table, key_schema, value_schema, columns, records: vec![idx] });
            }
            Err(why) => rejected.push((idx, why)),
        }
    }
    (runs, rejected)
}

impl Db {
    /// Writes the records in one transaction; the records that did not fit, with why.
    async fn write(
        &mut self,
        settings: &Settings,
        records: &[SinkRecord],
    ) -> std::result::Result<Vec<(usize, String)>, WriteError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.client = Some(settings.connection.connect().await.map_err(|e| match e {
                ConnectError::Retriable(m) => WriteError::Retry(m),
                other => WriteError::Fatal(other.to_string()),
            })?);
        }
        let (runs, mut rejected) = plan(settings, records);
        if runs.is_empty() {
            return Ok(rejected);
        }
        let client = self.client.as_ref().expect("connected above");
        client.batch_execute("BEGIN").await.map_err(|e| fail(&e, "BEGIN"))?;
        let mut writer = Writer { settings, client, tables: &mut self.tables, n_stages: &mut self.n_stages };
        let mut result = Ok(());
        for run in &runs {
            result = writer.run(run, records, &mut rejected).await;
            if result.is_err() {
                break;
            }
        }
        if let Err(e) = result {
            let _ = client.batch_execute("ROLLBACK").await;
            self.tables.clear();
            return Err(e);
        }
        if let Err(e) = client.batch_execute("COMMIT").await {
            self.tables.clear();
            return Err(fail(&e, "COMMIT"));
        }
        Ok(rejected)
    }
}

/// Writes runs within a transaction.
struct Writer<'a> {
    settings: &'a Settings,
    client: &'a Client,
    tables: &'a mut HashMap<String, Table>,
    n_stages: &'a mut u64,
}

/// A row to write: a record, and whether it deletes.
#[derive(Debug, Clone, Copy)]
struct Row {
    idx: usize,
    delete: bool,
}

impl Writer<'_> {
    /// Writes one run: makes or evolves the table, checks each record against it, keeps the last
    /// record per key, and writes the rest; a batch PostgreSQL refuses for its data is rewritten
    /// row by row.
    async fn run(
        &mut self,
        run: &Run,
        records: &[SinkRecord],
        rejected: &mut Vec<(usize, String)>,
    ) -> std::result::Result<(), WriteError> {
        let deletes_only = run.value_schema.is_none();
        let Some(table) = self.table(run, deletes_only).await? else {
            // Deletes from a table that does not exist: nothing to delete.
            return Ok(());
        };
        // What each column may take, or why a record with a value for it does not fit.
        let mut casts = Vec::with_capacity(run.columns.len());
        let mut unfit: Vec<Option<String>> = Vec::with_capacity(run.columns.len());
        for c in &run.columns {
            match table.columns.get(&c.name) {
                None => {
                    casts.push(Fit::Assign);
                    unfit.push(Some(format!(
                        "table {} has no column {:?} for the record's field {:?} (set auto.evolve=true to add it)",
                        run.table, c.name, c.name
                    )));
                }
                Some(tc) => {
                    let f = fit(c.ty, tc.family);
                    casts.push(f);
                    unfit.push((f == Fit::Mismatch).then(|| {
                        format!(
                            "column {:?} of table {} is {}, which cannot hold the record's {} field",
                            c.name, run.table, tc.type_sql, c.schema.ty
                        )
                    }));
                }
            }
        }
        // Check each record and keep the last of each key.
        let has_pk = run.columns.iter().any(|c| c.pk);
        let mut rows: Vec<Option<Row>> = Vec::with_capacity(run.records.len());
        let mut by_key: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut key = CopyRows::new();
        'records: for &idx in &run.records {
            let r = &records[idx];
            let delete = r.record.value.is_null();
            for (c, why) in run.columns.iter().zip(&unfit) {
                if delete && !c.pk {
                    continue;
                }
                let value = c.value(r);
                if let (Some(why), Some(v)) = (why, value) {
                    if !v.is_null() || c.pk {
                        rejected.push((idx, why.clone()));
                        continue 'records;
                    }
                }
                if let (Some(tc), Some(v)) = (table.columns.get(&c.name), value) {
                    if let Err(why) = check(&run.table, c, tc, v) {
                        rejected.push((idx, why));
                        continue 'records;
                    }
                }
            }
            if has_pk {
                let mark = key.mark();
                for c in run.columns.iter().filter(|c| c.pk) {
                    if let Err(why) = c.write(&mut key, r) {
                        rejected.push((idx, format!("table {}: {why}", run.table)));
                        key.undo(mark);
                        continue 'records;
                    }
                }
                let k = key_bytes(&key, mark);
                key.undo(mark);
                if let Some(before) = by_key.insert(k, rows.len()) {
                    rows[before] = None;
                }
            }
            rows.push(Some(Row { idx, delete }));
        }
        let rows: Vec<Row> = rows.into_iter().flatten().collect();
        for chunk in rows.chunks(self.settings.batch_size) {
            self.exec("SAVEPOINT freshet_batch").await?;
            match self.write_rows(run, &casts, chunk, records).await {
                Ok(refused) => rejected.extend(refused),
                Err(StatementError::Write(e)) => return Err(e),
                Err(StatementError::Data(_)) => {
                    // Find the rows PostgreSQL refuses, one at a time.
                    self.exec("ROLLBACK TO SAVEPOINT freshet_batch").await?;
                    for row in chunk {
                        self.exec("SAVEPOINT freshet_row").await?;
                        match self.write_rows(run, &casts, std::slice::from_ref(row), records).await {
                            Ok(refused) => rejected.extend(refused),
                            Err(StatementError::Write(e)) => return Err(e),
                            Err(StatementError::Data(why)) => {
                                self.exec("ROLLBACK TO SAVEPOINT freshet_row").await?;
                                let why = self.name_the_column(run, &casts, &records[row.idx], why).await?;
                                rejected.push((row.idx, why));
                            }
                        }
                        self.exec("RELEASE SAVEPOINT freshet_row").await?;
                    }
                }
            }
            self.exec("RELEASE SAVEPOINT freshet_batch").await?;
        }
        Ok(())
    }

    /// PostgreSQL's refusal of a row, with the column named when it is a text field that the
    /// column's type could not parse (PostgreSQL's message names the type and the value only):
    /// each such field is cast again alone, under a savepoint, to find it.
    async fn name_the_column(
        &self,
        run: &Run,
        casts: &[Fit],
        record: &SinkRecord,
        why: String,
    ) -> std::result::Result<String, WriteError> {
        let Some(table) = self.tables.get(&run.table) else { return Ok(why) };
        for (c, fit) in run.columns.iter().zip(casts) {
            let (Fit::Cast, Some(Value::String(text)), Some(tc)) = (fit, c.value(record), table.columns.get(&c.name))
            else {
                continue;
            };
            self.exec("SAVEPOINT freshet_probe").await?;
            let probe = format!("SELECT $1::text::{}", tc.type_sql);
            let refused = self.client.query(probe.as_str(), &[text]).await.is_err();
            self.exec(if refused { "ROLLBACK TO SAVEPOINT freshet_probe" } else { "RELEASE SAVEPOINT freshet_probe" })
                .await?;
            if refused {
                return Ok(format!("column {:?} of table {} is {}: {why}", c.name, run.table, tc.type_sql));
            }
        }
        Ok(why)
    }

    /// Runs a statement whose failure fails the write.
    async fn exec(&self, sql: &str) -> std::result::Result<(), WriteError> {
        self.client.batch_execute(sql).await.map_err(|e| fail(&e, sql))
    }

    /// The table a run writes to, made or evolved as the config allows; `None` when it does not
    /// exist and only deletes were asked of it.
    async fn table(&mut self, run: &Run, deletes_only: bool) -> std::result::Result<Option<Table>, WriteError> {
        let mut table = match self.tables.get(&run.table) {
            Some(t) => Some(t.clone()),
            None => describe_table(self.client, &run.table).await?,
        };
        if table.is_none() {
            if deletes_only {
                return Ok(None);
            }
            if !self.settings.auto_create {
                return Err(WriteError::Fatal(format!(
                    "table {} does not exist, and auto.create is false (create it, or set auto.create=true)",
                    run.table
                )));
            }
            let s = self.settings;
            let mut defs: Vec<String> = run
                .columns
                .iter()
                .map(|c| {
                    let not_null = if c.pk || !c.schema.optional { " NOT NULL" } else { "" };
                    format!("{} {}{not_null}{}", s.ident(&c.name), c.ty.column_sql(), default_sql(&c.schema))
                })
                .collect();
            let pk: Vec<String> = run.columns.iter().filter(|c| c.pk).map(|c| s.ident(&c.name)).collect();
            if !pk.is_empty() {
                defs.push(format!("PRIMARY KEY ({})", pk.join(", ")));
            }
            let sql = format!("CREATE TABLE IF NOT EXISTS {} ({})", run.table, defs.join(", "));
            tracing::info!(table = run.table, "creating the table (auto.create)");
            self.exec(&sql).await?;
            table = describe_table(self.client, &run.table).await?;
        }
        let mut table = table.ok_or_else(|| WriteError::Fatal(format!("table {} vanished", run.table)))?;
        if self.settings.auto_evolve && !deletes_only {
            let missing: Vec<&Column> = run.columns.iter().filter(|c| !table.columns.contains_key(&c.name)).collect();
            let mut added = false;
            for c in missing {
                if c.pk || (!c.schema.optional && c.schema.default.is_none()) {
                    // Left for the records to be reported: a required field without a default cannot be
                    // added to a table that may have rows already (as the JDBC sink refuses it too).
                    continue;
                }
                let sql = format!(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}{}",
                    run.table,
                    self.settings.ident(&c.name),
                    c.ty.column_sql(),
                    default_sql(&c.schema)
                );
                tracing::info!(table = run.table, column = c.name, "adding a column (auto.evolve)");
                self.exec(&sql).await?;
                added = true;
            }
            if added {
                table = describe_table(self.client, &run.table)
                    .await?
                    .ok_or_else(|| WriteError::Fatal(format!("table {} vanished", run.table)))?;
            }
        }
        self.tables.insert(run.table.clone(), table.clone());
        Ok(Some(table))
    }

    /// Writes rows through staging tables; records whose values do not encode are refused.
    async fn write_rows(
        &mut self,
        run: &Run,
        casts: &[Fit],
        rows: &[Row],
        records: &[SinkRecord],
    ) -> std::result::Result<Vec<(usize, String)>, StatementError> {
        let s = self.settings;
        let mut refused = Vec::new();
        let upserts: Vec<Row> = rows.iter().filter(|r| !r.delete).copied().collect();
        let deletes: Vec<Row> = rows.iter().filter(|r| r.delete).copied().collect();
        if !upserts.is_empty() {
            let columns: Vec<(usize, &Column)> = run
                .columns
                .iter()
                .enumerate()
                .filter(|(i, c)| {
                    self.tables.get(&run.table).is_some_and(|t| t.columns.contains_key(&c.name))
                        && casts[*i] != Fit::Mismatch
                })
                .collect();
            let stage = self.stage(&columns).await?;
            let n = self.copy(&stage, &columns, &upserts, records, &run.table, &mut refused).await?;
            if n > 0 {
                let names: Vec<String> = columns.iter().map(|(_, c)| s.ident(&c.name)).collect();
                let exprs: Vec<String> = columns.iter().map(|(i, c)| self.expr("s", run, c, casts[*i])).collect();
                let sql = match s.insert_mode {
                    InsertMode::Insert => format!(
                        "INSERT INTO {} ({}) SELECT {} FROM {stage} s",
                        run.table,
                        names.join(", "),
                        exprs.join(", ")
                    ),
                    InsertMode::Upsert => {
                        let pk: Vec<&String> =
                            columns.iter().zip(&names).filter(|((_, c), _)| c.pk).map(|(_, n)| n).collect();
                        let set: Vec<String> = columns
                            .iter()
                            .zip(&names)
                            .filter(|((_, c), _)| !c.pk)
                            .map(|(_, n)| format!("{n} = EXCLUDED.{n}"))
                            .collect();
                        let action = if set.is_empty() {
                            "NOTHING".to_string()
                        } else {
                            format!("UPDATE SET {}", set.join(", "))
                        };
                        format!(
                            "INSERT INTO {} AS t ({}) SELECT {} FROM {stage} s ON CONFLICT ({}) DO {action}",
                            run.table,
                            names.join(", "),
                            exprs.join(", "),
                            pk.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
                        )
                    }
                    InsertMode::Update => {
                        let set: Vec<String> = columns
                            .iter()
                            .zip(&names)
                            .zip(&exprs)
                            .filter(|(((_, c), _), _)| !c.pk)
                            .map(|((_, n), e)| format!("{n} = {e}"))
                            .collect();
                        if set.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "UPDATE {} AS t SET {} FROM {stage} s WHERE {}",
                                run.table,
                                set.join(", "),
                                self.pk_match(run, &columns, casts)
                            )
                        }
                    }
                };
                if !sql.is_empty() {
                    self.client
                        .batch_execute(&sql)
                        .await
                        .map_err(|e| classify(&e, &format!("writing to {}", run.table)))?;
                }
            }
            self.exec(&format!("DROP TABLE {stage}")).await?;
        }
        if !deletes.is_empty() {
            let columns: Vec<(usize, &Column)> = run.columns.iter().enumerate().filter(|(_, c)| c.pk).collect();
            let stage = self.stage(&columns).await?;
            let n = self.copy(&stage, &columns, &deletes, records, &run.table, &mut refused).await?;
            if n > 0 {
                let sql = format!(
                    "DELETE FROM {} AS t USING {stage} s WHERE {}",
                    run.table,
                    self.pk_match(run, &columns, casts)
                );
                self.client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| classify(&e, &format!("deleting from {}", run.table)))?;
            }
            self.exec(&format!("DROP TABLE {stage}")).await?;
        }
        Ok(refused)
    }

    /// A staging table for these columns, dropped at commit.
    async fn stage(&mut self, columns: &[(usize, &Column)]) -> std::result::Result<String, StatementError> {
        *self.n_stages += 1;
        let stage = format!("freshet_stage_{}", self.n_stages);
        let defs: Vec<String> =
            columns.iter().map(|(_, c)| format!("{} {}", self.settings.ident(&c.name), c.ty.stage_sql())).collect();
        let sql = format!("CREATE TEMPORARY TABLE {stage} ({}) ON COMMIT DROP", defs.join(", "));
        self.exec(&sql).await?;
        Ok(stage)
    }

    /// Copies the rows' columns into `stage`; rows whose values do not encode are refused. How
    /// many rows were copied.
    async fn copy(
        &self,
        stage: &str,
        columns: &[(usize, &Column)],
        rows: &[Row],
        records: &[SinkRecord],
        table: &str,
        refused: &mut Vec<(usize, String)>,
    ) -> std::result::Result<usize, StatementError> {
        let mut copy = CopyRows::new();
        'rows: for row in rows {
            let mark = copy.mark();
            copy.row(columns.len());
            for (_, c) in columns {
                if let Err(why) = c.write(&mut copy, &records[row.idx]) {
                    copy.undo(mark);
                    copy.unrow();
                    refused.push((row.idx, format!("table {table}: {why}")));
                    continue 'rows;
                }
            }
        }
        let n = copy.n_rows();
        if n == 0 {
            return Ok(0);
        }
        let names: Vec<String> = columns.iter().map(|(_, c)| self.settings.ident(&c.name)).collect();
        let sql = format!("COPY {stage} ({}) FROM STDIN (FORMAT binary)", names.join(", "));
        let what = format!("copying rows for {table}");
        let sink = self.client.copy_in::<str, bytes::Bytes>(sql.as_str()).await.map_err(|e| classify(&e, &what))?;
        futures::pin_mut!(sink);
        sink.send(copy.finish()).await.map_err(|e| classify(&e, &what))?;
        sink.finish().await.map_err(|e| classify(&e, &what))?;
        Ok(n)
    }

    /// A staged column as the table's column takes it.
    fn expr(&self, alias: &str, run: &Run, c: &Column, fit: Fit) -> String {
        let name = format!("{alias}.{}", self.settings.ident(&c.name));
        match (fit, self.tables.get(&run.table).and_then(|t| t.columns.get(&c.name))) {
            (Fit::Cast, Some(tc)) => format!("{name}::{}", tc.type_sql),
            _ => name,
        }
    }

    /// `t.pk = s.pk AND ...`.
    fn pk_match(&self, run: &Run, columns: &[(usize, &Column)], casts: &[Fit]) -> String {
        columns
            .iter()
            .filter(|(_, c)| c.pk)
            .map(|(i, c)| format!("t.{} = {}", self.settings.ident(&c.name), self.expr("s", run, c, casts[*i])))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// Whether a record's value fits a column beyond its type: a null into NOT NULL, an integer out of
/// the column's range.
fn check(table: &str, c: &Column, tc: &TableColumn, value: &Value) -> std::result::Result<(), String> {
    if value.is_null() {
        if tc.not_null || c.pk {
            return Err(format!(
                "column {:?} of table {table} is NOT NULL, but the record's {:?} is null",
                c.name, c.name
            ));
        }
        return Ok(());
    }
    let (min, max) = match tc.type_name.as_str() {
        "int2" => (i64::from(i16::MIN), i64::from(i16::MAX)),
        "int4" => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => return Ok(()),
    };
    let v = match value {
        Value::Int8(v) => i64::from(*v),
        Value::Int16(v) => i64::from(*v),
        Value::Int32(v) => i64::from(*v),
        Value::Int64(v) => *v,
        _ => return Ok(()),
    };
    {
        if v < min || v > max {
            return Err(format!("column {:?} of table {table} is {}, which cannot hold {v}", c.name, tc.type_sql));
        }
    }
    Ok(())
}

/// The bytes of the key just written after `mark` (the encoded primary key columns).
fn key_bytes(key: &CopyRows, mark: usize) -> Vec<u8> {
    key.since(mark).to_vec()
}

/// ` DEFAULT <literal>` for a schema's default, where it is a number, a boolean or text.
fn default_sql(schema: &Schema) -> String {
    match &schema.default {
        Some(Value::Int8(v)) => format!(" DEFAULT {v}"),
        Some(Value::Int16(v)) => format!(" DEFAULT {v}"),
        Some(Value::Int32(v)) if schema.name.is_none() => format!(" DEFAULT {v}"),
        Some(Value::Int64(v)) if schema.name.is_none() => format!(" DEFAULT {v}"),
        Some(Value::Float32(v)) if v.is_finite() => format!(" DEFAULT {v}"),
        Some(Value::Float64(v)) if v.is_finite() => format!(" DEFAULT {v}"),
        Some(Value::Boolean(v)) => format!(" DEFAULT {v}"),
        Some(Value::String(v)) if !v.contains('\0') => format!(" DEFAULT '{}'", v.replace('\'', "''")),
        _ => String::new(),
    }
}

/// A table's columns, or `None` when there is no such table.
async fn describe_table(client: &Client, table: &str) -> std::result::Result<Option<Table>, WriteError> {
    const SQL: &str = "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, a.attnotnull \
                       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                       WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped";
    let rows = client.query(SQL, &[&table]).await.map_err(|e| fail(&e, &format!("reading the columns of {table}")))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let columns = rows
        .iter()
        .map(|row| {
            let type_name: String = row.get(2);
            (
                row.get::<_, String>(0),
                TableColumn { type_sql: row.get(1), family: Family::of(&type_name), type_name, not_null: row.get(3) },
            )
        })
        .collect();
    Ok(Some(Table { columns }))
}
