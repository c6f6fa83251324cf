//! Change data capture from PostgreSQL, with the config keys, topics, keys, envelopes and offsets
//! of Debezium's PostgreSQL connector (`io.debezium.connector.postgresql.PostgresConnector`), so
//! its configs and consumers carry over.
//!
//! # How it reads
//!
//! The task makes sure of the publication (`publication.name`, made `FOR ALL TABLES` or for the
//! captured tables, as `publication.autocreate.mode` says) and of the logical replication slot
//! (`slot.name`, plugin `pgoutput`). With `snapshot.mode=initial` and no offsets yet, it creates
//! the slot exporting its snapshot, reads every captured table in that snapshot (a repeatable read
//! transaction, by cursor) as `op: r` events, then streams from the slot: pgoutput's inserts,
//! updates and deletes as `c`, `u` and `d` events (a delete followed by a tombstone), a
//! transaction's events together in commit order. Events go to `<topic.prefix>.<schema>.<table>`,
//! keyed by the primary key.
//!
//! # Nothing acknowledged is lost
//!
//! The slot's confirmed position is where PostgreSQL resumes and what it may forget. It is
//! advanced (a standby status update) only to the end of transactions whose events the log has
//! acknowledged: each poll's last event carries an ack, fired when the worker's send of the poll
//! succeeds. After a crash the slot sends again what was not acknowledged; transactions at or
//! below the stored offset (`lsn_commit`, with `last_in_tx`) are skipped, so a restart repeats at
//! most what was acknowledged but not yet stored (at least once, as Debezium).

mod event;
mod pgoutput;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use regex::Regex;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_postgres::{Client, SimpleQueryMessage};

use self::event::{Column, Origin, Table, Text};
use self::pgoutput::{Cell, Logical, Relation, Stream};
use self::wire::{ident, literal, parse_lsn, Replication, Target};
use super::connection::{describe, Connection};
use crate::builtin::validation;
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, ConfigValue, Importance, Props, Validator};
use crate::connector::{Connector, SourceConnector, SourceTask, SourceTaskContext};
use crate::data::{SchemaRef, Struct, Value};
use crate::error::{ConnectError, Result};
use crate::record::{AckResult, ConnectRecord, SourceAck, SourceMap, SourceRecord};

/// Rows a snapshot poll fetches.
const SNAPSHOT_FETCH: usize = 2048;

/// The connector's keys: Debezium's.
fn config_def() -> ConfigDef {
    use ConfigType::*;
    use Importance::*;
    ConfigDef::new()
        .define(ConfigKey::required("database.hostname", String, High, "The PostgreSQL server's host."))
        .define(ConfigKey::optional("database.port", Int, Some("5432"), High, "The server's port."))
        .define(ConfigKey::required("database.user", String, High, "The user: with REPLICATION, or a superuser."))
        .define(ConfigKey::optional("database.password", Password, None, High, "The user's password."))
        .define(ConfigKey::required("database.dbname", String, High, "The database to capture."))
        .define(ConfigKey::optional(
            "database.sslmode",
            String,
            Some("disable"),
            Low,
            "disable (connections are not encrypted yet).",
        ))
        .define(ConfigKey::required(
            "topic.prefix",
            String,
            High,
            "The logical server name: events go to <prefix>.<schema>.<table>, and offsets are kept under it.",
        ))
        .define(ConfigKey::optional(
            "table.include.list",
            List,
            Some(""),
            High,
            "Regular expressions of schema.table to capture (all when empty).",
        ))
        .define(ConfigKey::optional(
            "table.exclude.list",
            List,
            Some(""),
            Medium,
            "Regular expressions of schema.table not to capture.",
        ))
        .define(ConfigKey::optional(
            "schema.include.list",
            List,
            Some(""),
            Medium,
            "Regular expressions of schemas to capture.",
        ))
        .define(ConfigKey::optional(
            "schema.exclude.list",
            List,
            Some(""),
            Medium,
            "Regular expressions of schemas not to capture.",
        ))
        .define(
            ConfigKey::optional(
                "plugin.name",
                String,
                Some("pgoutput"),
                High,
                "The logical decoding plugin: pgoutput.",
            )
            .validated(Validator::one_of(&["pgoutput"])),
        )
        .define(ConfigKey::optional("slot.name", String, Some("debezium"), High, "The replication slot."))
        .define(ConfigKey::optional(
            "slot.drop.on.stop",
            Boolean,
            Some("false"),
            Low,
            "Whether the slot is dropped when the task stops (what it has not sent is then lost).",
        ))
        .define(ConfigKey::optional("publication.name", String, Some("dbz_publication"), High, "The publication."))
        .define(
            ConfigKey::optional(
                "publication.autocreate.mode",
                String,
                Some("all_tables"),
                Medium,
                "all_tables: a missing publication is made FOR ALL TABLES; filtered: for the captured tables; \
                 disabled: it must exist.",
            )
            .validated(Validator::one_of(&["all_tables", "filtered", "disabled"])),
        )
        .define(
            ConfigKey::optional(
                "snapshot.mode",
                String,
                Some("initial"),
                High,
                "initial: the tables' rows first when there are no offsets; initial_only: that, then stop; always: \
                 at every start; when_needed: when there are no offsets or the slot is gone; never / no_data: \
                 changes only.",
            )
            .validated(Validator::one_of(&[
                "initial",
                "initial_only",
                "always",
                "when_needed",
                "never",
                "no_data",
            ])),
        )
        .define(ConfigKey::optional(
            "tombstones.on.delete",
            Boolean,
            Some("true"),
            Medium,
            "Whether a delete event is followed by a tombstone (a null value) for its key.",
        ))
        .define(
            ConfigKey::optional(
                "max.batch.size",
                Int,
                Some("2048"),
                Medium,
                "The most events a poll gives (whole transactions, so a larger one goes whole).",
            )
            .validated(Validator::AtLeast(1.0)),
        )
        .define(
            ConfigKey::optional(
                "status.update.interval.ms",
                Long,
                Some("10000"),
                Low,
                "How often the server hears where the slot may be confirmed, besides its keepalives.",
            )
            .validated(Validator::AtLeast(1.0)),
        )
}

/// What to capture, from the config.
#[derive(Debug, Clone)]
struct Settings {
    target: Target,
    prefix: String,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    schemas_in: Vec<Regex>,
    schemas_out: Vec<Regex>,
    slot: String,
    drop_slot: bool,
    publication: String,
    autocreate: String,
    snapshot_mode: String,
    tombstones: bool,
    max_batch: usize,
    status_every: Duration,
}

fn patterns(config: &Config, key: &str) -> Result<Vec<Regex>> {
    config
        .list(key)
        .iter()
        .map(|p| Regex::new(&format!("^(?:{p})$")).map_err(|e| ConnectError::config(key, p, e.to_string())))
        .collect()
}

impl Settings {
    fn new(config: &Config) -> Result<Settings> {
        let nonempty = |key: &str| -> Result<std::string::String> {
            let v = config.string(key)?.trim();
            if v.is_empty() {
                return Err(ConnectError::config(key, v, "must not be empty"));
            }
            Ok(v.to_string())
        };
        match config.get("database.sslmode").unwrap_or("disable") {
            "disable" | "prefer" | "allow" => {}
            other => {
                return Err(ConnectError::config(
                    "database.sslmode",
                    other,
                    "Freshet connects to PostgreSQL without TLS yet: disable",
                ))
            }
        }
        let prefix = nonempty("topic.prefix")?;
        if !prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(ConnectError::config(
                "topic.prefix",
                &prefix,
                "a topic name's characters: letters, digits, '.', '_' and '-'",
            ));
        }
        let plugin = config.get("plugin.name").unwrap_or("pgoutput");
        if plugin != "pgoutput" {
            return Err(ConnectError::config(
                "plugin.name",
                plugin,
                "Freshet reads PostgreSQL's built-in pgoutput plugin only",
            ));
        }
        Ok(Settings {
            target: Target {
                host: nonempty("database.hostname")?,
                port: config.number_or("database.port", 5432u16)?,
                user: nonempty("database.user")?,
                password: config.get("database.password").map(String::from),
                dbname: nonempty("database.dbname")?,
            },
            prefix,
            include: patterns(config, "table.include.list")?,
            exclude: patterns(config, "table.exclude.list")?,
            schemas_in: patterns(config, "schema.include.list")?,
            schemas_out: patterns(config, "schema.exclude.list")?,
            slot: config.get("slot.name").unwrap_or("debezium").to_string(),
            drop_slot: config.boolean("slot.drop.on.stop", false)?,
            publication: config.get("publication.name").unwrap_or("dbz_publication").to_string(),
            autocreate: config.get("publication.autocreate.mode").unwrap_or("all_tables").to_string(),
            snapshot_mode: config.get("snapshot.mode").unwrap_or("initial").to_string(),
            tombstones: config.boolean("tombstones.on.delete", true)?,
            max_batch: config.number_or("max.batch.size", 2048usize)?.max(1),
            status_every: Duration::from_millis(config.number_or("status.update.interval.ms", 10_000u64)?.max(1)),
        })
    }

    /// Whether `schema.table` is captured.
    fn captures(&self, schema: &str, table: &str) -> bool {
        let full = format!("{schema}.{table}");
        let any = |list: &[Regex], text: &str| list.iter().any(|r| r.is_match(text));
        (self.schemas_in.is_empty() || any(&self.schemas_in, schema))
            && !any(&self.schemas_out, schema)
            && (self.include.is_empty() || any(&self.include, &full))
            && !any(&self.exclude, &full)
    }

    fn partition(&self) -> SourceMap {
        let mut p = SourceMap::new();
        p.insert("server".into(), json!(self.prefix));
        p
    }

    fn pg(&self) -> Connection {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&self.target.host)
            .port(self.target.port)
            .user(&self.target.user)
            .dbname(&self.target.dbname)
            .application_name("freshet-cdc")
            .options("-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3");
        if let Some(password) = &self.target.password {
            pg.password(password);
        }
        let target = format!("postgresql://{}:{}/{}", self.target.host, self.target.port, self.target.dbname);
        Connection::to(pg, target)
    }
}

/// The change-capture connector.
#[derive(Debug, Default)]
pub struct PostgresCdcSource {
    props: Props,
}

#[async_trait]
impl Connector for PostgresCdcSource {
    fn config_def(&self) -> ConfigDef {
        config_def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValue> {
        validation(props, "database.hostname", |c| Settings::new(c).map(drop))
    }

    async fn start(&mut self, config: &Config) -> Result<()> {
        Settings::new(config)?;
        self.props = config.originals().clone();
        Ok(())
    }

    fn task_configs(&self, _max_tasks: usize) -> Result<Vec<Props>> {
        // One slot, one reader: as Debezium's, a single task.
        Ok(vec![self.props.clone()])
    }
}

impl SourceConnector for PostgresCdcSource {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::<PostgresCdcTask>::default()
    }
}

/// Where a task is.
#[derive(Debug, Default)]
enum Phase {
    #[default]
    Starting,
    /// Reading the tables in the slot's exported snapshot.
    Snapshot(Box<Snapshot>),
    /// Streaming the slot.
    Streaming,
    /// `initial_only` finished its snapshot: nothing more.
    Done,
}

#[derive(Debug)]
struct Snapshot {
    /// Tables still to read (the first is being read, by cursor `freshet_snapshot` when open).
    tables: VecDeque<Arc<Table>>,
    cursor_open: bool,
    consistent: u64,
    /// The last event read, held back until it is known whether it is the snapshot's last.
    held: Option<SourceRecord>,
}

/// A transaction being read from the stream.
#[derive(Debug)]
struct Tx {
    xid: u32,
    commit_micros: i64,
    records: Vec<(SourceRecord, u64)>,
}

/// The change-capture task.
#[derive(Debug, Default)]
pub struct PostgresCdcTask {
    settings: Option<Settings>,
    client: Option<Client>,
    repl: Option<Replication>,
    phase: Phase,
    source_schema: Option<SchemaRef>,
    /// Captured tables by the stream's relation id (`None`: a table not captured).
    relations: HashMap<u32, Option<Arc<Table>>>,
    /// Transactions whose commit LSN is at or below this were written before a restart.
    resume_after: u64,
    tx: Option<Tx>,
    /// Ends of transactions given to the worker, in order, each with the ack of the poll that
    /// carried its last event (`None`: a transaction with nothing to write).
    unacked: VecDeque<(u64, Option<oneshot::Receiver<AckResult>>)>,
    /// Where the slot may be confirmed: the end of the last transaction acknowledged.
    flushed: u64,
    last_status: Option<Instant>,
    last_commit_lsn: u64,
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn wire_error(what: &str, e: wire::WireError) -> ConnectError {
    ConnectError::Task(format!("{what}: {e}"))
}

impl PostgresCdcTask {
    fn settings(&self) -> &Settings {
        self.settings.as_ref().expect("started")
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("started")
    }

    async fn sql(&self, what: &str, sql: &str) -> Result<Vec<tokio_postgres::SimpleQueryRow>> {
        let messages = self
            .client()
            .simple_query(sql)
            .await
            .map_err(|e| ConnectError::Task(format!("{what}: {}", describe(&e))))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .collect())
    }

    /// The captured tables, with their columns.
    async fn captured_tables(&self) -> Result<Vec<Arc<Table>>> {
        let rows = self
            .sql(
                "listing the tables",
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', \
                 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2",
            )
            .await?;
        let mut tables = Vec::new();
        for row in rows {
            let (schema, name) = (row.get(0).unwrap_or_default(), row.get(1).unwrap_or_default());
            if self.settings().captures(schema, name) {
                tables.push(Arc::new(self.table(schema, name, None).await?));
            }
        }
        Ok(tables)
    }

    /// A table's schemas: its columns from the catalog (their nullability and primary key), in
    /// the order and with the types `relation` gives when the stream described it.
    async fn table(&self, schema: &str, name: &str, relation: Option<&Relation>) -> Result<Table> {
        let sql = format!(
            "SELECT a.attname, a.atttypid::int8, a.atttypmod, NOT a.attnotnull, \
             coalesce(a.attnum = ANY(i.indkey), false) FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
             WHERE n.nspname = {} AND c.relname = {} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            literal(schema),
            literal(name)
        );
        let rows = self.sql(&format!("describing {schema}.{name}"), &sql).await?;
        let catalog: Vec<Column> = rows
            .iter()
            .map(|r| Column {
                name: r.get(0).unwrap_or_default().to_string(),
                type_oid: r.get(1).and_then(|t| t.parse().ok()).unwrap_or(25),
                type_mod: r.get(2).and_then(|t| t.parse().ok()).unwrap_or(-1),
                optional: r.get(3) == Some("t"),
                key: r.get(4) == Some("t"),
            })
            .collect();
        let columns = match relation {
            None => catalog,
            Some(rel) => rel
                .columns
                .iter()
                .map(|c| {
                    let known = catalog.iter().find(|k| k.name == c.name);
                    Column {
                        name: c.name.clone(),
                        type_oid: c.type_oid,
                        type_mod: c.type_mod,
                        optional: known.is_none_or(|k| k.optional),
                        key: known.map_or(c.key, |k| k.key),
                    }
                })
                .collect(),
        };
        let source = self.source_schema.clone().expect("started");
        let s = self.settings();
        Ok(Table::new((&s.prefix, &s.target.dbname), schema, name, columns, source))
    }

    /// Makes the publication when it is missing, as `publication.autocreate.mode` says.
    async fn ensure_publication(&self) -> Result<()> {
        let s = self.settings();
        let exists = self
            .sql(
                "finding the publication",
                &format!("SELECT 1 FROM pg_publication WHERE pubname = {}", literal(&s.publication)),
            )
            .await?;
        if !exists.is_empty() {
            return Ok(());
        }
        let sql = match s.autocreate.as_str() {
            "disabled" => {
                return Err(ConnectError::Task(format!(
                    "publication {:?} does not exist and publication.autocreate.mode=disabled",
                    s.publication
                )))
            }
            "filtered" => {
                let tables = self.captured_tables().await?;
                if tables.is_empty() {
                    return Err(ConnectError::Task("no table matches table.include.list to publish".into()));
                }
                let names: Vec<String> =
                    tables.iter().map(|t| format!("{}.{}", ident(&t.schema), ident(&t.name))).collect();
                format!("CREATE PUBLICATION {} FOR TABLE {}", ident(&s.publication), names.join(", "))
            }
            _ => format!("CREATE PUBLICATION {} FOR ALL TABLES", ident(&s.publication)),
        };
        self.sql("making the publication", &sql).await?;
        Ok(())
    }

    /// The slot's confirmed position, when it exists.
    async fn slot(&self) -> Result<Option<u64>> {
        let rows = self
            .sql(
                "finding the replication slot",
                &format!(
                    "SELECT confirmed_flush_lsn::text, plugin FROM pg_replication_slots WHERE slot_name = {} AND \
                     database = current_database()",
                    literal(&self.settings().slot)
                ),
            )
            .await?;
        let Some(row) = rows.first() else { return Ok(None) };
        if row.get(1) != Some("pgoutput") {
            return Err(ConnectError::Task(format!(
                "replication slot {:?} decodes with {:?}, not pgoutput",
                self.settings().slot,
                row.get(1)
            )));
        }
        Ok(Some(row.get(0).and_then(parse_lsn).unwrap_or(0)))
    }

    /// Starts streaming the slot from its confirmed position.
    async fn stream(&mut self) -> Result<()> {
        let (slot, publication) = (self.settings().slot.clone(), self.settings().publication.clone());
        let repl = self.repl.as_mut().expect("connected");
        repl.start(&slot, 0, &publication).await.map_err(|e| wire_error("starting replication", e))?;
        self.phase = Phase::Streaming;
        Ok(())
    }

    /// The next snapshot events.
    async fn snapshot_poll(&mut self) -> Result<Vec<SourceRecord>> {
        let Phase::Snapshot(snap) = &mut self.phase else { unreachable!() };
        let Some(table) = snap.tables.front().cloned() else {
            // Done: the held event is the last, and the stream follows.
            let mut out = Vec::new();
            if let Some(mut last) = snap.held.take() {
                if let Some(offset) = last.source_offset.as_mut() {
                    offset.insert("last_snapshot_record".into(), json!(true));
                }
                set_snapshot_marker(&mut last, "last");
                out.push(last);
            }
            self.sql("ending the snapshot", "COMMIT").await?;
            tracing::info!(server = self.settings().prefix, "snapshot done; streaming changes");
            if self.settings().snapshot_mode == "initial_only" {
                self.phase = Phase::Done;
            } else {
                self.stream().await?;
            }
            return Ok(out);
        };
        let consistent = snap.consistent;
        if !snap.cursor_open {
            let columns: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
            let sql = format!(
                "DECLARE freshet_snapshot NO SCROLL CURSOR FOR SELECT {} FROM {}.{}",
                columns.join(", "),
                ident(&table.schema),
                ident(&table.name)
            );
            let Phase::Snapshot(snap) = &mut self.phase else { unreachable!() };
            snap.cursor_open = true;
            self.sql(&format!("reading {}.{}", table.schema, table.name), &sql).await?;
        }
        let rows = self
            .sql(
                &format!("reading {}.{}", table.schema, table.name),
                &format!("FETCH {SNAPSHOT_FETCH} FROM freshet_snapshot"),
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        let origin =
            Origin { ts_micros: now_micros(), snapshot: "true", tx_id: None, lsn: Some(consistent), sequence: None };
        let s = self.settings();
        for row in &rows {
            let cells: Vec<Text> = (0..table.columns.len())
                .map(|i| row.get(i).map_or(Text::Null, |t| Text::Value(Bytes::copy_from_slice(t.as_bytes()))))
                .collect();
            let after = table.row(&cells);
            let key = table.key(&after);
            let value = table.envelope("r", None, Some(after), &origin, now_micros());
            let mut offset = SourceMap::new();
            offset.insert("snapshot".into(), json!(true));
            offset.insert("last_snapshot_record".into(), json!(false));
            offset.insert("lsn".into(), json!(consistent));
            offset.insert("ts_usec".into(), json!(origin.ts_micros));
            out.push(SourceRecord {
                source_partition: Some(s.partition()),
                source_offset: Some(offset),
                record: ConnectRecord {
                    topic: table.topic.clone(),
                    kafka_partition: None,
                    key_schema: table.key_schema(),
                    key,
                    value_schema: Some(table.envelope_schema()),
                    value,
                    timestamp: None,
                    headers: Vec::new(),
                },
                ack: None,
            });
        }
        let Phase::Snapshot(snap) = &mut self.phase else { unreachable!() };
        if rows.len() < SNAPSHOT_FETCH {
            snap.tables.pop_front();
            snap.cursor_open = false;
            self.sql("closing the snapshot cursor", "CLOSE freshet_snapshot").await?;
        }
        let Phase::Snapshot(snap) = &mut self.phase else { unreachable!() };
        // Hold the last back: the snapshot's last event says so in its offset.
        if let Some(last) = out.pop() {
            if let Some(held) = snap.held.replace(last) {
                out.insert(0, held);
            }
        }
        Ok(out)
    }

    /// Reads the stream for up to `wait`: whole transactions, at most about `max.batch.size`
    /// events.
    async fn stream_poll(&mut self, wait: Duration) -> Result<Vec<SourceRecord>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out: Vec<SourceRecord> = Vec::new();
        let mut end_of_last_tx = None;
        loop {
            self.confirm_acknowledged();
            if self.last_status.is_none_or(|t| t.elapsed() >= self.settings().status_every) {
                self.send_status().await?;
            }
            if out.len() >= self.settings().max_batch {
                break;
            }
            let repl = self.repl.as_mut().expect("connected");
            let message = match tokio::time::timeout_at(deadline, repl.next()).await {
                Err(_) => break,
                // A broken stream fails the task: the worker restarts it, and the new task goes on
                // from the slot with a new connection.
                Ok(Err(e)) => return Err(ConnectError::Task(format!("reading the replication stream: {e}"))),
                Ok(Ok(None)) => return Err(ConnectError::Task("the server ended the replication stream".into())),
                Ok(Ok(Some(m))) => m,
            };
            let stream =
                pgoutput::parse(message).map_err(|e| ConnectError::Task(format!("the replication stream: {}", e.0)))?;
            match stream {
                Stream::Keepalive { wal_end, reply } => {
                    // Nothing in flight and nothing being read: the slot may move past WAL
                    // that held nothing for us.
                    if self.unacked.is_empty()
                        && self.tx.is_none()
                        && out.is_empty()
                        && wal_end > self.flushed
                        && self.flushed > 0
                    {
                        self.flushed = wal_end;
                    }
                    if reply {
                        self.send_status().await?;
                    }
                }
                Stream::Wal { start, message } => {
                    if let Some(end) = self.apply(start, message).await? {
                        let tx_records = end.1;
                        if tx_records.is_empty() {
                            if out.is_empty() {
                                self.unacked.push_back((end.0, None));
                            } else {
                                end_of_last_tx = Some(end.0);
                            }
                        } else {
                            out.extend(tx_records);
                            end_of_last_tx = Some(end.0);
                        }
                        if tokio::time::Instant::now() >= deadline {
                            break;
                        }
                    }
                }
            }
        }
        if let Some(end) = end_of_last_tx {
            let (ack, receiver) = SourceAck::new();
            match out.last_mut() {
                Some(last) => {
                    last.ack = Some(ack);
                    self.unacked.push_back((end, Some(receiver)));
                }
                None => self.unacked.push_back((end, None)),
            }
        }
        Ok(out)
    }

    /// Takes a pgoutput message; at a commit, the transaction's end and its events.
    async fn apply(&mut self, lsn: u64, message: Logical) -> Result<Option<(u64, Vec<SourceRecord>)>> {
        match message {
            Logical::Begin { xid, commit_micros, .. } => {
                self.tx = Some(Tx { xid, commit_micros, records: Vec::new() });
            }
            Logical::Relation(rel) => {
                let captured = self.settings().captures(&rel.schema, &rel.name);
                let table = match captured {
                    true => Some(Arc::new(self.table(&rel.schema, &rel.name, Some(&rel)).await?)),
                    false => None,
                };
                self.relations.insert(rel.id, table);
            }
            Logical::Insert { relation, new } => self.change(lsn, relation, "c", None, false, Some(new))?,
            Logical::Update { relation, old, key_only, new } => {
                self.change(lsn, relation, "u", old, key_only, Some(new))?
            }
            Logical::Delete { relation, old, key_only } => {
                self.change(lsn, relation, "d", Some(old), key_only, None)?
            }
            Logical::Truncate | Logical::Other => {}
            Logical::Commit { commit_lsn, end_lsn, .. } => {
                let Some(tx) = self.tx.take() else { return Ok(None) };
                let skip = commit_lsn <= self.resume_after;
                let n = tx.records.len();
                let prev_commit = self.last_commit_lsn;
                self.last_commit_lsn = commit_lsn;
                if skip {
                    return Ok(Some((end_lsn, Vec::new())));
                }
                let records = tx
                    .records
                    .into_iter()
                    .enumerate()
                    .map(|(i, (mut r, event_lsn))| {
                        let mut offset = SourceMap::new();
                        offset.insert("lsn".into(), json!(event_lsn));
                        offset.insert("lsn_proc".into(), json!(event_lsn));
                        offset.insert("lsn_commit".into(), json!(commit_lsn));
                        offset.insert("txId".into(), json!(tx.xid));
                        offset.insert("ts_usec".into(), json!(tx.commit_micros + wire::PG_EPOCH_MICROS));
                        offset.insert("last_in_tx".into(), json!(i + 1 == n));
                        r.source_offset = Some(offset);
                        set_sequence(&mut r, prev_commit, event_lsn);
                        r
                    })
                    .collect();
                return Ok(Some((end_lsn, records)));
            }
        }
        Ok(None)
    }

    /// An insert, update or delete of a relation as an event (and a tombstone after a delete).
    fn change(
        &mut self,
        lsn: u64,
        relation: u32,
        op: &str,
        old: Option<Vec<Cell>>,
        key_only: bool,
        new: Option<Vec<Cell>>,
    ) -> Result<()> {
        let table = match self.relations.get(&relation) {
            Some(Some(t)) => t.clone(),
            Some(None) => return Ok(()),
            None => {
                return Err(ConnectError::Task(format!("the stream changed relation {relation} before describing it")))
            }
        };
        let s = self.settings.as_ref().expect("started");
        let Some(tx) = self.tx.as_mut() else {
            return Err(ConnectError::Task("the stream sent a change outside a transaction".into()));
        };
        let cells = |t: Vec<Cell>| -> Vec<Text> {
            t.into_iter()
                .map(|c| match c {
                    Cell::Null => Text::Null,
                    Cell::Unchanged => Text::Unchanged,
                    Cell::Text(b) => Text::Value(b),
                })
                .collect()
        };
        // A key-only old row (REPLICA IDENTITY DEFAULT) is the key's columns, the rest null.
        let before = old.map(|o| table.row(&cells(o)));
        let after = new.map(|n| table.row(&cells(n)));
        let origin = Origin {
            ts_micros: tx.commit_micros + wire::PG_EPOCH_MICROS,
            snapshot: "false",
            tx_id: Some(i64::from(tx.xid)),
            lsn: Some(lsn),
            sequence: None,
        };
        let record = |key: &Value, value_schema: Option<SchemaRef>, value| SourceRecord {
            source_partition: Some(s.partition()),
            source_offset: None,
            record: ConnectRecord {
                topic: table.topic.clone(),
                kafka_partition: None,
                key_schema: table.key_schema(),
                key: key.clone(),
                value_schema,
                value,
                timestamp: None,
                headers: Vec::new(),
            },
            ack: None,
        };
        let mut emit = |op: &str, before: Option<Struct>, after: Option<Struct>| {
            let key = table.key(after.as_ref().or(before.as_ref()).expect("a row"));
            let value = table.envelope(op, before, after, &origin, now_micros());
            tx.records.push((record(&key, Some(table.envelope_schema()), value), lsn));
            if op == "d" && s.tombstones {
                tx.records.push((record(&key, None, Value::Null), lsn));
            }
        };
        match (op, before, after) {
            // An update of the key: a delete of the old key (and its tombstone), then a create
            // of the new, as Debezium writes it.
            ("u", Some(b), Some(a)) if table.key(&b) != table.key(&a) => {
                emit("d", Some(b), None);
                emit("c", None, Some(a));
            }
            // Debezium gives no before for an update without REPLICA IDENTITY FULL.
            ("u", before, after) => emit("u", if key_only { None } else { before }, after),
            (op, before, after) => emit(op, before, after),
        }
        Ok(())
    }

    /// Moves `flushed` past the transactions whose events the log acknowledged.
    fn confirm_acknowledged(&mut self) {
        while let Some((end, ack)) = self.unacked.front_mut() {
            let done = match ack {
                None => true,
                Some(receiver) => matches!(receiver.try_recv(), Ok(Ok(()))),
            };
            if !done {
                break;
            }
            self.flushed = self.flushed.max(*end);
            self.unacked.pop_front();
        }
    }

    async fn send_status(&mut self) -> Result<()> {
        self.last_status = Some(Instant::now());
        if self.flushed == 0 {
            return Ok(());
        }
        let flushed = self.flushed;
        if let Some(repl) = self.repl.as_mut() {
            repl.status(flushed)
                .await
                .map_err(|e| ConnectError::Task(format!("telling the server the slot's position: {e}")))?;
        }
        Ok(())
    }
}

/// Debezium's snapshot marker in an event's `source` block.
fn set_snapshot_marker(record: &mut SourceRecord, marker: &'static str) {
    if let Value::Struct(envelope) = &mut record.record.value {
        if let Some(Value::Struct(source)) = envelope.values.get_mut(2) {
            if let Some(slot) = source.values.get_mut(4) {
                *slot = Value::String(marker.into());
            }
        }
    }
}

/// Debezium's `sequence` (`["<last commit LSN>","<this LSN>"]`) in an event's `source` block.
fn set_sequence(record: &mut SourceRecord, last_commit: u64, lsn: u64) {
    if let Value::Struct(envelope) = &mut record.record.value {
        if let Some(Value::Struct(source)) = envelope.values.get_mut(2) {
            if let Some(slot) = source.values.get_mut(6) {
                *slot = Value::String(format!("[\"{last_commit}\",\"{lsn}\"]"));
            }
        }
    }
}

#[async_trait]
impl SourceTask for PostgresCdcTask {
    async fn start(&mut self, config: &Config, context: SourceTaskContext) -> Result<()> {
        let settings = Settings::new(config)?;
        self.client = Some(settings.pg().connect().await?);
        self.source_schema = Some(event::source_schema());
        let offset = context.offset(&settings.partition());
        self.settings = Some(settings);
        self.ensure_publication().await?;
        let slot = self.slot().await?;
        let s = self.settings().clone();
        let snapshot_done = offset.as_ref().is_some_and(|o| {
            o.get("snapshot") != Some(&json!(true)) || o.get("last_snapshot_record") == Some(&json!(true))
        });
        let snapshot = match s.snapshot_mode.as_str() {
            "always" => true,
            "initial" | "initial_only" => !snapshot_done,
            "when_needed" => !snapshot_done || slot.is_none(),
            _ => false,
        };
        if let Some(o) = offset.as_ref().filter(|_| !snapshot) {
            let commit = o.get("lsn_commit").and_then(|v| v.as_u64()).unwrap_or(0);
            let whole = o.get("last_in_tx").and_then(|v| v.as_bool()).unwrap_or(true);
            self.resume_after = if whole { commit } else { commit.saturating_sub(1) };
        }
        let mut repl =
            Replication::connect(&s.target).await.map_err(|e| wire_error("connecting for replication", e))?;
        if s.snapshot_mode == "initial_only" && snapshot_done {
            self.phase = Phase::Done;
            self.repl = Some(repl);
            return Ok(());
        }
        if snapshot {
            if slot.is_some() {
                tracing::info!(slot = s.slot, "dropping the replication slot to take a new snapshot");
                repl.query(&format!("DROP_REPLICATION_SLOT {} WAIT", ident(&s.slot)))
                    .await
                    .map_err(|e| wire_error("dropping the replication slot", e))?;
            }
            let rows = repl
                .query(&format!("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT", ident(&s.slot)))
                .await
                .map_err(|e| wire_error("creating the replication slot", e))?;
            let row = rows.first().ok_or_else(|| ConnectError::Task("CREATE_REPLICATION_SLOT gave no row".into()))?;
            let consistent = row.get(1).cloned().flatten().as_deref().and_then(parse_lsn).unwrap_or(0);
            let name = row.get(2).cloned().flatten().unwrap_or_default();
            self.flushed = consistent;
            self.sql("starting the snapshot", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
            self.sql("taking the slot's snapshot", &format!("SET TRANSACTION SNAPSHOT {}", literal(&name))).await?;
            let tables = self.captured_tables().await?.into_iter().collect();
            tracing::info!(server = s.prefix, lsn = %wire::format_lsn(consistent), "snapshot of the captured tables");
            self.phase = Phase::Snapshot(Box::new(Snapshot { tables, cursor_open: false, consistent, held: None }));
            self.repl = Some(repl);
            return Ok(());
        }
        match slot {
            Some(confirmed) => self.flushed = confirmed,
            None => {
                let rows = repl
                    .query(&format!("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput NOEXPORT_SNAPSHOT", ident(&s.slot)))
                    .await
                    .map_err(|e| wire_error("creating the replication slot", e))?;
                if offset.is_some() {
                    tracing::warn!(
                        slot = s.slot,
                        "the replication slot was gone: changes made while it was are not captured"
                    );
                }
                self.flushed =
                    rows.first().and_then(|r| r.get(1).cloned().flatten()).as_deref().and_then(parse_lsn).unwrap_or(0);
            }
        }
        self.repl = Some(repl);
        self.stream().await
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        match self.phase {
            Phase::Snapshot(_) => self.snapshot_poll().await,
            Phase::Streaming => self.stream_poll(Duration::from_millis(500)).await,
            Phase::Done | Phase::Starting => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(Vec::new())
            }
        }
    }

    async fn commit(&mut self) -> Result<()> {
        self.confirm_acknowledged();
        if matches!(self.phase, Phase::Streaming) {
            self.send_status().await?;
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        let drop_slot = self.settings.as_ref().is_some_and(|s| s.drop_slot);
        self.repl = None;
        if drop_slot {
            let slot = self.settings().slot.clone();
            self.sql("dropping the replication slot", &format!("SELECT pg_drop_replication_slot({})", literal(&slot)))
                .await?;
        }
        Ok(())
    }
}
