//! The JDBC source, for PostgreSQL: rows read by query, for databases where change capture is
//! not allowed, with the config keys of Kafka Connect's JDBC source
//! (`io.confluent.connect.jdbc.JdbcSourceConnector`).
//!
//! `mode` says how new rows are found: `bulk` reads every row at each poll; `incrementing` reads
//! rows whose `incrementing.column.name` is above the last seen (new rows, not updates);
//! `timestamp` rows whose `timestamp.column.name` (the first non-null of several) is after the
//! last seen and before now minus `timestamp.delay.interval.ms` (new and updated rows);
//! `timestamp+incrementing` both, ordered by timestamp then id, so rows sharing a timestamp are
//! neither lost nor read twice. The tables are `table.whitelist` (or all the database's tables
//! but `table.blacklist`), shared among `tasks.max` tasks, each to `topic.prefix` + its name;
//! or one `query`, to `topic.prefix`.
//!
//! Each round of a table is one read-only transaction with a cursor, fetched `batch.max.rows` at
//! a time, so a large table is read a batch per poll, in the query's order. A record's source
//! offset is the JDBC source's: partition `{"protocol": "1", "table": "<db>.<schema>.<table>"}`
//! (or `{"query": "query"}`), offset `{"incrementing": id}` and/or `{"timestamp": ms,
//! "timestamp_nanos": ns}`, so a restarted task goes on after the last row the log acknowledged.
//!
//! Values are structs named after the table, one field per column: `smallint` INT16, `integer`
//! INT32, `bigint` INT64, `real` FLOAT32, `double precision` FLOAT64, `boolean`, text types
//! STRING, `bytea` BYTES, `numeric(p,s)` Decimal with scale s, `date` Date, `time` Time,
//! `timestamp` and `timestamptz` Timestamp (in `db.timezone`, UTC by default); anything else
//! (an unconstrained `numeric`, `uuid`, `json`, arrays, ...) as its text, STRING.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_postgres::Client;

use super::connection::{describe, Connection};
use super::copy::negate;
use crate::builtin::validation;
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, ConfigValue, Importance, Props, Validator};
use crate::connector::{Connector, SourceConnector, SourceTask, SourceTaskContext};
use crate::data::{Schema, SchemaRef, Struct, Type, Value};
use crate::error::{ConnectError, Result};
use crate::record::{ConnectRecord, SourceMap, SourceRecord};

/// The task config key listing a task's tables (`schema.table`, comma-separated).
const TASK_TABLES: &str = "tables";

fn config_def() -> ConfigDef {
    use ConfigType::*;
    use Importance::*;
    ConfigDef::new()
        .define(ConfigKey::required(
            "connection.url",
            String,
            High,
            "The database: jdbc:postgresql://host:port/database or postgresql://user:password@host:port/database.",
        ))
        .define(ConfigKey::optional("connection.user", String, None, High, "The user to connect as."))
        .define(ConfigKey::optional("connection.password", Password, None, High, "The user's password."))
        .define(
            ConfigKey::optional("connection.attempts", Int, Some("3"), Low, "Connection attempts.")
                .validated(Validator::AtLeast(1.0)),
        )
        .define(
            ConfigKey::optional("connection.backoff.ms", Long, Some("10000"), Low, "The wait between attempts, in ms.")
                .validated(Validator::AtLeast(0.0)),
        )
        .define(
            ConfigKey::required(
                "mode",
                String,
                High,
                "How new rows are found: bulk, incrementing, timestamp or timestamp+incrementing.",
            )
            .validated(Validator::one_of(&["bulk", "incrementing", "timestamp", "timestamp+incrementing"])),
        )
        .define(ConfigKey::optional(
            "incrementing.column.name",
            String,
            Some(""),
            Medium,
            "The strictly increasing column (incrementing modes); a table's serial or identity column without it.",
        ))
        .define(ConfigKey::optional(
            "timestamp.column.name",
            List,
            Some(""),
            Medium,
            "The columns of the time a row was last changed; the first non-null counts (timestamp modes).",
        ))
        .define(ConfigKey::optional(
            "timestamp.initial",
            Long,
            None,
            Low,
            "Where a timestamp mode starts without stored offsets, in ms since the epoch (-1: now); all rows without it.",
        ))
        .define(
            ConfigKey::optional(
                "timestamp.delay.interval.ms",
                Long,
                Some("0"),
                High,
                "How long after a row's time it is read, so transactions with earlier times can commit first.",
            )
            .validated(Validator::AtLeast(0.0)),
        )
        .define(ConfigKey::optional("validate.non.null", Boolean, Some("true"), Low, "Accepted; not acted on."))
        .define(ConfigKey::optional("query", String, Some(""), Medium, "A query to read instead of tables."))
        .define(ConfigKey::optional("table.whitelist", List, Some(""), Medium, "The tables to read (table or schema.table)."))
        .define(ConfigKey::optional("table.blacklist", List, Some(""), Medium, "Tables not to read."))
        .define(ConfigKey::optional("schema.pattern", String, None, Medium, "Only tables of schemas LIKE this."))
        .define(ConfigKey::optional("table.types", List, Some("TABLE"), Low, "TABLE and/or VIEW."))
        .define(ConfigKey::required(
            "topic.prefix",
            String,
            High,
            "The topics' prefix: a table's topic is the prefix and its name; a query's the prefix alone.",
        ))
        .define(
            ConfigKey::optional("poll.interval.ms", Int, Some("5000"), High, "How often a table is read, in ms.")
                .validated(Validator::AtLeast(1.0)),
        )
        .define(
            ConfigKey::optional("batch.max.rows", Int, Some("100"), Low, "The most rows a poll returns.")
                .validated(Validator::AtLeast(1.0)),
        )
        .define(ConfigKey::optional("db.timezone", String, Some("UTC"), Medium, "The time zone of timestamp columns."))
        .define(
            ConfigKey::optional("numeric.mapping", String, None, Low, "Accepted; numerics are Decimals by scale.")
                .validated(Validator::one_of(&["none", "precision_only", "best_fit", "best_fit_eager_double"])),
        )
        .define(ConfigKey::optional("dialect.name", String, Some(""), Low, "PostgreSqlDatabaseDialect or empty."))
}

/// How new rows are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bulk,
    Incrementing,
    Timestamp,
    TimestampIncrementing,
}

#[derive(Debug, Clone)]
struct Settings {
    connection: Connection,
    mode: Mode,
    incrementing: Option<String>,
    timestamps: Vec<String>,
    timestamp_initial: Option<i64>,
    delay_ms: i64,
    query: Option<String>,
    topic_prefix: String,
    poll_interval: Duration,
    batch_rows: usize,
}

impl Settings {
    fn new(config: &Config) -> Result<Settings> {
        let mode = match config.get("mode").unwrap_or("").trim() {
            "bulk" => Mode::Bulk,
            "incrementing" => Mode::Incrementing,
            "timestamp" => Mode::Timestamp,
            "timestamp+incrementing" => Mode::TimestampIncrementing,
            other => {
                return Err(ConnectError::config(
                    "mode",
                    other,
                    "must be bulk, incrementing, timestamp or timestamp+incrementing",
                ))
            }
        };
        let incrementing = config.get("incrementing.column.name").map(str::trim).filter(|s| !s.is_empty());
        let timestamps = config.list("timestamp.column.name");
        let query = config.get("query").map(str::trim).filter(|q| !q.is_empty()).map(str::to_string);
        // A table's own serial or identity column is found when none is named; a query's cannot be.
        if matches!(mode, Mode::Incrementing | Mode::TimestampIncrementing) && incrementing.is_none() && query.is_some()
        {
            return Err(ConnectError::config(
                "incrementing.column.name",
                "",
                "the incrementing modes over a query need the column that increases with each new row",
            ));
        }
        if matches!(mode, Mode::Timestamp | Mode::TimestampIncrementing) && timestamps.is_empty() {
            return Err(ConnectError::config(
                "timestamp.column.name",
                "",
                "the timestamp modes need the column of the time a row was last changed",
            ));
        }
        if query.is_some() && !config.list("table.whitelist").is_empty() {
            return Err(ConnectError::config(
                "query",
                query.clone().unwrap_or_default(),
                "give query or table.whitelist, not both",
            ));
        }
        let time_zone = config.get("db.timezone").unwrap_or("UTC");
        Ok(Settings {
            connection: Connection::from_config(config, time_zone)?,
            mode,
            incrementing: incrementing.map(str::to_string),
            timestamps,
            timestamp_initial: config.get("timestamp.initial").map(|v| v.trim().parse()).transpose().map_err(|_| {
                ConnectError::config("timestamp.initial", config.get("timestamp.initial").unwrap_or(""), "not a number")
            })?,
            delay_ms: config.number_or("timestamp.delay.interval.ms", 0i64)?,
            query,
            topic_prefix: config.string("topic.prefix")?.to_string(),
            poll_interval: Duration::from_millis(config.number_or("poll.interval.ms", 5000u64)?),
            batch_rows: config.number_or("batch.max.rows", 100usize)?.max(1),
        })
    }
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The JDBC source connector.
#[derive(Debug, Default)]
pub struct JdbcSource {
    props: Props,
    /// The tables to read, `schema.table`.
    tables: Vec<String>,
}

#[async_trait]
impl Connector for JdbcSource {
    fn config_def(&self) -> ConfigDef {
        config_def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValue> {
        validation(props, "connection.url", |c| Settings::new(c).map(drop))
    }

    async fn start(&mut self, config: &Config) -> Result<()> {
        self.props = config.originals().clone();
        let settings = Settings::new(config)?;
        if settings.query.is_some() {
            return Ok(());
        }
        let client = settings.connection.connect().await?;
        let views = config.list("table.types").iter().any(|t| t.eq_ignore_ascii_case("VIEW"));
        let schema_pattern = config.get("schema.pattern").unwrap_or("%").to_string();
        let rows = client
            .query(
                "SELECT table_schema, table_name, table_type FROM information_schema.tables \
                 WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_schema LIKE $1 \
                 ORDER BY table_schema, table_name",
                &[&schema_pattern],
            )
            .await
            .map_err(|e| {
                ConnectError::Task(format!("listing the tables of {}: {}", settings.connection.target(), describe(&e)))
            })?;
        let listed: Vec<(String, String)> = rows
            .iter()
            .filter(|r| r.get::<_, &str>(2) == "BASE TABLE" || (views && r.get::<_, &str>(2) == "VIEW"))
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let named = |list: &[String], schema: &str, table: &str| {
            list.iter().any(|n| n == table || *n == format!("{schema}.{table}"))
        };
        let (white, black) = (config.list("table.whitelist"), config.list("table.blacklist"));
        self.tables = listed
            .iter()
            .filter(|(s, t)| (white.is_empty() || named(&white, s, t)) && !named(&black, s, t))
            .map(|(s, t)| format!("{s}.{t}"))
            .collect();
        if let Some(missing) = white.iter().find(|w| !listed.iter().any(|(s, t)| *w == t || **w == format!("{s}.{t}")))
        {
            return Err(ConnectError::config(
                "table.whitelist",
                white.join(","),
                format!("{} has no table {missing:?}", settings.connection.target()),
            ));
        }
        if self.tables.is_empty() {
            return Err(ConnectError::Task(format!("{} has no tables to read", settings.connection.target())));
        }
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Props>> {
        if self.tables.is_empty() {
            return Ok(vec![self.props.clone()]);
        }
        let n = max_tasks.clamp(1, self.tables.len());
        Ok((0..n)
            .map(|i| {
                let mine: Vec<&str> = self.tables.iter().skip(i).step_by(n).map(String::as_str).collect();
                let mut props = self.props.clone();
                props.insert(TASK_TABLES.into(), mine.join(","));
                props
            })
            .collect())
    }
}

impl SourceConnector for JdbcSource {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::<JdbcSourceTask>::default()
    }
}

/// Where a table's reading is: the last row's position in the mode's order.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Position {
    incrementing: Option<i64>,
    /// Microseconds since the epoch.
    timestamp_us: Option<i64>,
}

impl Position {
    fn from_offset(offset: &SourceMap) -> Position {
        let ms = offset.get("timestamp").and_then(serde_json::Value::as_i64);
        let nanos = offset.get("timestamp_nanos").and_then(serde_json::Value::as_i64).unwrap_or(0);
        Position {
            incrementing: offset.get("incrementing").and_then(serde_json::Value::as_i64),
            // ms is the whole milliseconds; nanos the fraction of the second, in ns.
            timestamp_us: ms.map(|ms| ms.div_euclid(1000) * 1_000_000 + nanos / 1000),
        }
    }

    fn to_offset(self) -> SourceMap {
        let mut m = SourceMap::new();
        if let Some(i) = self.incrementing {
            m.insert("incrementing".into(), i.into());
        }
        if let Some(us) = self.timestamp_us {
            m.insert("timestamp".into(), us.div_euclid(1000).into());
            m.insert("timestamp_nanos".into(), (us.rem_euclid(1_000_000) * 1000).into());
        }
        m
    }
}

/// A column read: how it is selected, and its field.
#[derive(Debug, Clone)]
struct ReadColumn {
    select: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Bool,
    Text,
    Bytes,
    Decimal(i32),
    Date,
    Time,
    Timestamp,
}

/// One table (or the query) a task reads.
#[derive(Debug)]
struct Querier {
    /// `schema.table`, or `None` for the query.
    table: Option<(String, String)>,
    topic: String,
    partition: SourceMap,
    position: Position,
    /// The value schema and columns, found on first read.
    shape: Option<(SchemaRef, Vec<ReadColumn>)>,
    /// The incrementing column: named, or the table's serial or identity column (found on
    /// first read).
    incrementing: Option<String>,
    next_round: Instant,
}

/// The JDBC source's task.
#[derive(Debug, Default)]
pub struct JdbcSourceTask {
    settings: Option<Settings>,
    client: Option<Client>,
    database: String,
    queriers: Vec<Querier>,
    /// The querier whose round (transaction and cursor) is open.
    open: Option<usize>,
}

#[async_trait]
impl SourceTask for JdbcSourceTask {
    async fn start(&mut self, config: &Config, context: SourceTaskContext) -> Result<()> {
        let settings = Settings::new(config)?;
        let client = settings.connection.connect().await?;
        self.database = client
            .query_one("SELECT current_database()", &[])
            .await
            .map_err(|e| ConnectError::Task(describe(&e)))?
            .get(0);
        let now = Instant::now();
        let initial = match settings.timestamp_initial {
            Some(-1) => Some(now_us()),
            Some(ms) => Some(ms * 1000),
            None => None,
        };
        let mut add = |table: Option<(String, String)>, topic: String, partition: SourceMap| {
            let position = context
                .offset(&partition)
                .map(|o| Position::from_offset(&o))
                .unwrap_or(Position { incrementing: None, timestamp_us: initial });
            let incrementing = settings.incrementing.clone();
            self.queriers.push(Querier {
                table,
                topic,
                partition,
                position,
                shape: None,
                incrementing,
                next_round: now,
            });
        };
        if settings.query.is_some() {
            let mut partition = SourceMap::new();
            partition.insert("query".into(), "query".into());
            add(None, settings.topic_prefix.clone(), partition);
        } else {
            for t in config.list(TASK_TABLES) {
                let (schema, table) =
                    t.split_once('.').map_or(("public".to_string(), t.clone()), |(s, t)| (s.into(), t.into()));
                let mut partition = SourceMap::new();
                partition.insert("protocol".into(), "1".into());
                partition.insert("table".into(), format!("{}.{schema}.{table}", self.database).into());
                add(Some((schema, table.clone())), format!("{}{table}", settings.topic_prefix), partition);
            }
        }
        self.client = Some(client);
        self.settings = Some(settings);
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let settings = self.settings.clone().ok_or_else(|| ConnectError::Task("poll before start".into()))?;
        let i = match self.open {
            Some(i) => i,
            None => {
                let Some(i) = (0..self.queriers.len()).min_by_key(|&i| self.queriers[i].next_round) else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return Ok(Vec::new());
                };
                let wait = self.queriers[i].next_round.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
                    return Ok(Vec::new());
                }
                self.begin(&settings, i).await?;
                self.open = Some(i);
                i
            }
        };
        let client = self.client.as_ref().expect("started");
        let fetched = client
            .query(&format!("FETCH {} FROM freshet_rows", settings.batch_rows), &[])
            .await
            .map_err(|e| self.failed(&e, i));
        let rows = match fetched {
            Ok(rows) => rows,
            Err(e) => {
                self.abandon().await;
                return Err(e);
            }
        };
        let q = &mut self.queriers[i];
        let (schema, columns) = q.shape.clone().expect("shaped in begin");
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut value = Struct::new(schema.clone());
            for (n, c) in columns.iter().enumerate() {
                value.values[n] = read(row, n, c.kind);
            }
            // The position columns come after the row's.
            let extra = columns.len();
            match settings.mode {
                Mode::Bulk => {}
                Mode::Incrementing => q.position.incrementing = row.get::<_, Option<i64>>(extra),
                Mode::Timestamp => q.position.timestamp_us = row.get::<_, Option<i64>>(extra),
                Mode::TimestampIncrementing => {
                    q.position.timestamp_us = row.get::<_, Option<i64>>(extra);
                    q.position.incrementing = row.get::<_, Option<i64>>(extra + 1);
                }
            }
            let offset = (settings.mode != Mode::Bulk).then(|| q.position.to_offset());
            out.push(SourceRecord {
                source_partition: Some(q.partition.clone()),
                source_offset: offset,
                record: ConnectRecord::new(q.topic.clone(), Some(schema.clone()), Value::Struct(value)),
                ack: None,
            });
        }
        if rows.len() < settings.batch_rows {
            // The round is over: the next after the poll interval.
            q.next_round = Instant::now() + settings.poll_interval;
            let client = self.client.as_ref().expect("started");
            let _ = client.batch_execute("CLOSE freshet_rows; COMMIT").await;
            self.open = None;
        }
        Ok(out)
    }

    async fn stop(&mut self) -> Result<()> {
        self.abandon().await;
        self.client = None;
        Ok(())
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

impl JdbcSourceTask {
    /// Opens a round of querier `i`: a read-only transaction and a cursor over its new rows.
    async fn begin(&mut self, settings: &Settings, i: usize) -> Result<()> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(settings.connection.connect().await?);
        }
        let client = self.client.as_ref().expect("connected");
        let q = &self.queriers[i];
        let from = match (&q.table, &settings.query) {
            (Some((schema, table)), _) => format!("{}.{}", ident(schema), ident(table)),
            (None, Some(query)) => format!("({query}) AS q"),
            (None, None) => unreachable!("a querier reads a table or the query"),
        };
        if q.shape.is_none() {
            let shape = shape(client, &from, q.table.as_ref().map_or("query", |t| t.1.as_str()))
                .await
                .map_err(|e| self.failed(&e, i))?;
            self.queriers[i].shape = Some(shape);
            let q = &self.queriers[i];
            if q.incrementing.is_none() && matches!(settings.mode, Mode::Incrementing | Mode::TimestampIncrementing) {
                let found = serial_column(client, &from).await.map_err(|e| self.failed(&e, i))?;
                let column = found.ok_or_else(|| {
                    ConnectError::config(
                        "incrementing.column.name",
                        "",
                        format!("{from} has no serial or identity column to read new rows by: name one"),
                    )
                })?;
                self.queriers[i].incrementing = Some(column);
            }
        }
        let q = &self.queriers[i];
        let (_, columns) = q.shape.as_ref().expect("shaped");
        let mut select: Vec<String> = columns.iter().map(|c| c.select.clone()).collect();
        let time = {
            let cols: Vec<String> = settings.timestamps.iter().map(|c| ident(c)).collect();
            if cols.len() == 1 {
                cols[0].clone()
            } else {
                format!("COALESCE({})", cols.join(", "))
            }
        };
        // The position columns are named apart from the row's own, which ORDER BY may name.
        let time_us = format!("(EXTRACT(EPOCH FROM {time}) * 1000000)::int8 AS freshet_position_time");
        let inc = q.incrementing.as_deref().map(ident).unwrap_or_default();
        let upper = format!("(CURRENT_TIMESTAMP - {} * INTERVAL '1 millisecond')", settings.delay_ms);
        let after = |us: i64| format!("(TIMESTAMPTZ 'epoch' + {us} * INTERVAL '1 microsecond')");
        let (filter, order) = match settings.mode {
            Mode::Bulk => (String::new(), String::new()),
            Mode::Incrementing => {
                select.push(format!("{inc}::int8 AS freshet_position_id"));
                let filter = q.position.incrementing.map(|i| format!(" WHERE {inc} > {i}")).unwrap_or_default();
                (filter, format!(" ORDER BY {inc} ASC"))
            }
            Mode::Timestamp => {
                select.push(time_us.clone());
                let lower =
                    q.position.timestamp_us.map(|us| format!(" AND {time} > {}", after(us))).unwrap_or_default();
                (format!(" WHERE {time} < {upper}{lower}"), format!(" ORDER BY {time} ASC"))
            }
            Mode::TimestampIncrementing => {
                select.push(time_us.clone());
                select.push(format!("{inc}::int8 AS freshet_position_id"));
                let lower = match (q.position.timestamp_us, q.position.incrementing) {
                    (Some(us), Some(i)) => {
                        format!(" AND (({time} = {} AND {inc} > {i}) OR {time} > {})", after(us), after(us))
                    }
                    (Some(us), None) => format!(" AND {time} > {}", after(us)),
                    _ => String::new(),
                };
                (format!(" WHERE {time} < {upper}{lower}"), format!(" ORDER BY {time} ASC, {inc} ASC"))
            }
        };
        let sql = format!(
            "BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ; \
             DECLARE freshet_rows NO SCROLL CURSOR FOR SELECT {} FROM {from}{filter}{order}",
            select.join(", ")
        );
        if let Err(e) = client.batch_execute(&sql).await {
            let err = self.failed(&e, i);
            self.abandon().await;
            return Err(err);
        }
        Ok(())
    }

    /// An error of querier `i`'s read, retriable when the connection was lost.
    fn failed(&self, e: &tokio_postgres::Error, i: usize) -> ConnectError {
        let what = match &self.queriers[i].table {
            Some((s, t)) => format!("reading {s}.{t}"),
            None => "running the query".to_string(),
        };
        let message = format!("{what}: {}", describe(e));
        if e.as_db_error().is_none() || e.is_closed() {
            ConnectError::Retriable(message)
        } else {
            ConnectError::Task(message)
        }
    }

    /// Ends an open round without finishing it (its rows are read again next time).
    async fn abandon(&mut self) {
        if self.open.take().is_some() {
            if let Some(client) = &self.client {
                let _ = client.batch_execute("ROLLBACK").await;
            }
        }
    }
}

/// The one column of table `from` filled from a sequence (`serial`) or an identity, if it has
/// exactly one.
async fn serial_column(client: &Client, from: &str) -> std::result::Result<Option<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname FROM pg_attribute a \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
             AND (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%')",
            &[&from],
        )
        .await?;
    Ok(match rows.as_slice() {
        [one] => Some(one.get(0)),
        _ => None,
    })
}

/// The value schema of what `from` gives, and how each column is read.
async fn shape(
    client: &Client,
    from: &str,
    name: &str,
) -> std::result::Result<(SchemaRef, Vec<ReadColumn>), tokio_postgres::Error> {
    let statement = client.prepare(&format!("SELECT * FROM {from}")).await?;
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for c in statement.columns() {
        let id = ident(c.name());
        let nullable = match (c.table_oid(), c.column_id()) {
            (Some(oid), Some(col)) if oid != 0 => {
                let row = client
                    .query_opt("SELECT attnotnull FROM pg_attribute WHERE attrelid = $1 AND attnum = $2", &[&oid, &col])
                    .await?;
                row.is_none_or(|r| !r.get::<_, bool>(0))
            }
            _ => true,
        };
        let modifier = c.type_modifier();
        let (kind, select) = match c.type_().name() {
            "int2" => (Kind::Int16, id.clone()),
            "int4" => (Kind::Int32, id.clone()),
            "int8" => (Kind::Int64, id.clone()),
            "float4" => (Kind::Float32, id.clone()),
            "float8" => (Kind::Float64, id.clone()),
            "bool" => (Kind::Bool, id.clone()),
            "text" | "varchar" | "bpchar" | "name" => (Kind::Text, format!("{id}::text")),
            "bytea" => (Kind::Bytes, id.clone()),
            "numeric" if modifier >= 4 => (Kind::Decimal((modifier - 4) & 0xffff), format!("{id}::text")),
            "date" => (Kind::Date, format!("({id} - DATE '1970-01-01')::int4")),
            "time" => (Kind::Time, format!("(EXTRACT(EPOCH FROM {id}) * 1000)::int4")),
            "timestamp" | "timestamptz" => (Kind::Timestamp, format!("(EXTRACT(EPOCH FROM {id}) * 1000)::int8")),
            _ => (Kind::Text, format!("{id}::text")),
        };
        let schema = match kind {
            Kind::Int16 => Schema::of(Type::Int16),
            Kind::Int32 => Schema::of(Type::Int32),
            Kind::Int64 => Schema::of(Type::Int64),
            Kind::Float32 => Schema::of(Type::Float32),
            Kind::Float64 => Schema::of(Type::Float64),
            Kind::Bool => Schema::of(Type::Boolean),
            Kind::Text => Schema::of(Type::String),
            Kind::Bytes => Schema::of(Type::Bytes),
            Kind::Decimal(scale) => Schema::decimal(scale),
            Kind::Date => Schema::date(),
            Kind::Time => Schema::time(),
            Kind::Timestamp => Schema::timestamp(),
        };
        let schema = if nullable { schema.into_optional() } else { schema };
        fields.push((c.name().to_string(), Arc::new(schema)));
        columns.push(ReadColumn { select, kind });
    }
    Ok((Arc::new(Schema::structure(fields).named(name)), columns))
}

/// Column `n` of a row as its field's value.
fn read(row: &tokio_postgres::Row, n: usize, kind: Kind) -> Value {
    let v = match kind {
        Kind::Int16 => row.get::<_, Option<i16>>(n).map(Value::Int16),
        Kind::Int32 => row.get::<_, Option<i32>>(n).map(Value::Int32),
        Kind::Int64 => row.get::<_, Option<i64>>(n).map(Value::Int64),
        Kind::Float32 => row.get::<_, Option<f32>>(n).map(Value::Float32),
        Kind::Float64 => row.get::<_, Option<f64>>(n).map(Value::Float64),
        Kind::Bool => row.get::<_, Option<bool>>(n).map(Value::Boolean),
        Kind::Text => row.get::<_, Option<String>>(n).map(Value::String),
        Kind::Bytes => row.get::<_, Option<Vec<u8>>>(n).map(|b| Value::Bytes(b.into())),
        Kind::Decimal(scale) => row.get::<_, Option<&str>>(n).map(|t| Value::Bytes(unscaled(t, scale).into())),
        Kind::Date => row.get::<_, Option<i32>>(n).map(Value::Int32),
        Kind::Time => row.get::<_, Option<i32>>(n).map(Value::Int32),
        Kind::Timestamp => row.get::<_, Option<i64>>(n).map(Value::Int64),
    };
    v.unwrap_or(Value::Null)
}

/// A decimal's text (`-12.30`) as Connect keeps it: the unscaled value at `scale`, big-endian
/// two's complement, as few bytes as hold it.
fn unscaled(text: &str, scale: i32) -> Vec<u8> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let mut all: String = int.to_string();
    let scale = scale.max(0) as usize;
    all.extend(frac.chars().chain(std::iter::repeat('0')).take(scale));
    // Base-256 magnitude by repeated multiply-add.
    let mut mag: Vec<u8> = Vec::new();
    for d in all.bytes().filter(u8::is_ascii_digit) {
        let mut carry = u32::from(d - b'0');
        for byte in mag.iter_mut().rev() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.insert(0, carry as u8);
            carry >>= 8;
        }
    }
    if mag.is_empty() || mag[0] & 0x80 != 0 {
        mag.insert(0, 0);
    }
    if negative {
        negate(&mut mag);
    }
    mag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_to_unscaled_bytes() {
        assert_eq!(unscaled("12.34", 2), vec![0x04, 0xd2]);
        assert_eq!(unscaled("-1.5", 2), (-150i16).to_be_bytes().to_vec());
        assert_eq!(unscaled("0", 0), vec![0]);
        assert_eq!(unscaled("255", 0), vec![0, 255]);
        assert_eq!(unscaled("-128", 0), vec![0xff, 0x80]);
    }

    #[test]
    fn positions_round_trip_through_the_jdbc_sources_offsets() {
        let p = Position { incrementing: Some(42), timestamp_us: Some(1_700_000_000_123_456) };
        let o = p.to_offset();
        assert_eq!(o["timestamp"], 1_700_000_000_123i64);
        assert_eq!(o["timestamp_nanos"], 123_456_000i64);
        assert_eq!(Position::from_offset(&o), p);
    }
}
