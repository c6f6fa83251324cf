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

mod plan;
mod write;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::Client;

use self::write::{Table, WriteError};
use super::connection::Connection;
use crate::builtin::validation;
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, ConfigValue, Importance, Props, Validator};
use crate::connector::{Connector, SinkConnector, SinkTask, SinkTaskContext};
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
        validation(props, "connection.url", |c| Settings::new(c).map(drop))
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
