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
mod settings;
mod snapshot;
mod stream;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_postgres::{Client, SimpleQueryMessage};

use self::event::{Column, Table};
use self::pgoutput::Relation;
use self::settings::{config_def, Settings};
use self::snapshot::Snapshot;
use self::stream::Tx;
use self::wire::{ident, literal, parse_lsn, Replication};
use super::connection::describe;
use crate::builtin::validation;
use crate::config::{Config, ConfigDef, ConfigValue, Props};
use crate::connector::{Connector, SourceConnector, SourceTask, SourceTaskContext};
use crate::data::SchemaRef;
use crate::error::{ConnectError, Result};
use crate::record::{AckResult, SourceRecord};

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
