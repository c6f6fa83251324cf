//! SQL over topics with DataFusion: ad-hoc queries.
//!
//! A topic is a table once declared:
//!
//! ```sql
//! CREATE EXTERNAL TABLE orders (id BIGINT, amount DOUBLE) STORED AS TOPIC LOCATION 'orders'
//!     OPTIONS ('format' 'json');
//! ```
//!
//! Without columns, they are inferred from a sample of the topic's JSON values; `'format' 'raw'`
//! reads each value as text (one column, `value`). Every topic table starts with the metadata
//! columns `_partition`, `_offset`, `_timestamp` and `_key`; filters on the first three narrow
//! what is read. Declarations are kept in the compacted topic `_freshet_sql_tables` (the
//! statement, by table name), so every session on the same log or cluster sees them; `DROP TABLE`
//! removes one.

mod table;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use freshet_core::substrate::{Admin, ConsumerConfig, NewTopic, Producer, ProducerRecord, TopicPartition};

pub use table::{Format, NewConsumer, TopicTable, TopicTableFactory, METADATA_COLUMNS};

use crate::Substrate;

/// The topic holding the tables' declarations.
pub const TABLES_TOPIC: &str = "_freshet_sql_tables";

/// An error of a SQL statement: what was wrong, with its position in the statement when the
/// parser knows it.
#[derive(Debug)]
pub enum SqlError {
    /// DataFusion refused or failed the statement.
    DataFusion(DataFusionError),
    /// The log refused an operation.
    Log(freshet_core::Error),
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The parser's own words, with the line and column.
            SqlError::DataFusion(DataFusionError::SQL(parser, _)) => write!(f, "{parser}"),
            SqlError::DataFusion(e) => write!(f, "{}", e.strip_backtrace()),
            SqlError::Log(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SqlError {}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        SqlError::DataFusion(e)
    }
}

impl From<freshet_core::Error> for SqlError {
    fn from(e: freshet_core::Error) -> Self {
        SqlError::Log(e)
    }
}

/// A SQL session over a substrate: its tables are the declared topics.
pub struct SqlSession {
    ctx: SessionContext,
    producer: Arc<dyn Producer>,
    admin: Arc<dyn Admin>,
}

impl std::fmt::Debug for SqlSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSession").finish_non_exhaustive()
    }
}

impl SqlSession {
    /// A session on `substrate`, with every table declared so far.
    pub async fn new(substrate: &Substrate) -> Result<Self, SqlError> {
        let factory =
            TopicTableFactory { admin: substrate.admin.clone(), new_consumer: substrate.new_consumer.clone() };
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_table_factory("TOPIC".into(), Arc::new(factory))
            .build();
        let session = SqlSession {
            ctx: SessionContext::new_with_state(state),
            producer: substrate.producer.clone(),
            admin: substrate.admin.clone(),
        };
        for (name, statement) in session.declarations(substrate).await? {
            if let Err(error) = session.run(&statement).await {
                tracing::warn!(table = %name, %error, "a declared table could not be created again; skipped");
            }
        }
        Ok(session)
    }

    /// The declarations stored so far: the last statement per table name.
    async fn declarations(&self, substrate: &Substrate) -> Result<BTreeMap<String, String>, SqlError> {
        let admin = &self.admin;
        if admin.describe_topic(TABLES_TOPIC).await.is_err() {
            let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
            match admin.create_topic(NewTopic { name: TABLES_TOPIC.into(), n_partitions: 1, configs }).await {
                Ok(()) | Err(freshet_core::Error::TopicExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let tp = TopicPartition::new(TABLES_TOPIC, 0);
        let end = admin.list_offset(&tp, freshet_core::log::OffsetSpec::Latest).await?.map_or(0, |o| o.0);
        let mut declared = BTreeMap::new();
        if end == 0 {
            return Ok(declared);
        }
        let mut consumer = (substrate.new_consumer)(ConsumerConfig::default());
        consumer.assign(vec![tp.clone()]).await?;
        consumer.seek(&tp, freshet_core::log::OffsetSpec::Earliest).await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while consumer.position(&tp).unwrap_or(end) < end && std::time::Instant::now() < deadline {
            for b in consumer.poll(Duration::from_millis(200)).await? {
                for r in b.records()? {
                    let Some(key) = r.key else { continue };
                    let name = String::from_utf8_lossy(&key).into_owned();
                    match r.value {
                        Some(v) => declared.insert(name, String::from_utf8_lossy(&v).into_owned()),
                        None => declared.remove(&name),
                    };
                }
            }
        }
        Ok(declared)
    }

    /// Runs every statement of `sql` (separated by `;`) in order and returns the last one's rows.
    pub async fn execute(&self, sql: &str) -> Result<Vec<RecordBatch>, SqlError> {
        let mut last = Vec::new();
        // Each statement runs (and is recorded) as it was written.
        for statement in split_statements(sql) {
            last = self.run_declaring(statement).await?;
        }
        Ok(last)
    }

    /// Runs one statement; a table it creates or drops is recorded in the declarations topic.
    async fn run_declaring(&self, statement: &str) -> Result<Vec<RecordBatch>, SqlError> {
        let plan = self.ctx.state().create_logical_plan(statement).await?;
        let declared = match &plan {
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(c)) => Some((c.name.table().to_string(), true)),
            LogicalPlan::Ddl(DdlStatement::DropTable(d)) => Some((d.name.table().to_string(), false)),
            _ => None,
        };
        let rows = self.ctx.execute_logical_plan(plan).await?.collect().await?;
        if let Some((name, created)) = declared {
            let record = ProducerRecord {
                topic: TABLES_TOPIC.into(),
                partition: Some(0),
                key: Some(Bytes::from(name)),
                value: created.then(|| Bytes::from(statement.to_string())),
                ..Default::default()
            };
            self.producer.send(vec![record]).await?;
        }
        Ok(rows)
    }

    /// Runs one statement as it is, without recording it.
    async fn run(&self, statement: &str) -> Result<Vec<RecordBatch>, SqlError> {
        Ok(self.ctx.sql(statement).await?.collect().await?)
    }

    /// The DataFusion context, to register functions or tables of one's own.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }
}

/// The statements of `sql`, split at the semicolons outside quotes and comments; empty ones
/// left out.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let (mut out, mut start, mut i) = (Vec::new(), 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b';' => {
                out.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&sql[start.min(sql.len())..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.lines().all(|l| l.trim_start().starts_with("--") || l.trim().is_empty()))
        .collect()
}

/// How query results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned table with a header.
    Table,
    /// One JSON object per row.
    Json,
    /// CSV with a header.
    Csv,
}

/// Renders `batches` as `format`.
pub fn render(batches: &[RecordBatch], format: OutputFormat) -> Result<String, SqlError> {
    use datafusion::arrow::error::ArrowError;
    let arrow = |e: ArrowError| SqlError::DataFusion(DataFusionError::ArrowError(Box::new(e), None));
    match format {
        OutputFormat::Table => {
            Ok(datafusion::arrow::util::pretty::pretty_format_batches(batches).map_err(arrow)?.to_string())
        }
        OutputFormat::Json => {
            let mut out = Vec::new();
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
            for b in batches {
                writer.write(b).map_err(arrow)?;
            }
            writer.finish().map_err(arrow)?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
                for b in batches {
                    writer.write(b).map_err(arrow)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}
