//! SQL over topics with DataFusion: ad-hoc queries, and continuous queries compiled onto the
//! streams runtime (`CREATE STREAM ... AS SELECT`).
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
//! what is read. Declarations are kept in the compacted topic `__freshet_sql_catalog` (the
//! statement, by table name), so every session on the same log or cluster sees them; `DROP TABLE`
//! removes one. `CREATE STREAM|SOURCE|TABLE name (columns) WITH (topic = ..., format = ...,
//! key = ...)` declares the same way (a `TABLE` is keyed by its record key). `CREATE VIEW name AS
//! SELECT ...` is kept there too: a query over a view is planned from the view's query.
//!
//! `CREATE STREAM|TABLE name AS SELECT ... [EMIT CHANGES|FINAL]` creates a continuous query:
//! planned by DataFusion, compiled onto a topology, recorded with the declarations, and run by
//! hosting sessions ([`SqlSession::hosting`]) as a streams application. `SHOW QUERIES`,
//! `EXPLAIN CREATE ...`, `EXPLAIN QUERY name` (the task graph) and `DROP QUERY name` manage them.

mod continuous;
mod expr;
mod format;
mod row;
mod statement;
mod table;
mod value;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::common::{Location, Span};
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::sqlparser::parser::ParserError;
use freshet_core::{Admin, ConsumerConfig, NewTopic, Producer, ProducerRecord, Substrate, TopicPartition};

pub use continuous::{Compiled, Emit, OutputKind};
pub use format::Format;
pub use table::{TableKind, TopicTable, TopicTableFactory, METADATA_COLUMNS};
pub use value::Row;

use datafusion::common::tree_node::TreeNode;

use self::statement::{CreateAs, Statement};
use freshet_runtime::{ErrorPolicy, StreamsApp, StreamsConfig};

/// The topic holding the declarations and continuous queries (internal, as `__consumer_offsets`).
pub const CATALOG_TOPIC: &str = "__freshet_sql_catalog";

/// An error of a SQL statement: what was wrong, with its position in the statement when the
/// parser knows it.
#[derive(Debug)]
pub enum SqlError {
    /// DataFusion refused or failed the statement.
    DataFusion(DataFusionError),
    /// The log refused an operation.
    Log(freshet_core::Error),
}

impl SqlError {
    /// Where in the statement the error is, when the parser or planner knows: the line, and the
    /// first and last column on it (from 1).
    pub fn position(&self) -> Option<(u64, u64, u64)> {
        let SqlError::DataFusion(e) = self else { return None };
        if let Some(span) = e.diagnostic().and_then(|d| d.span) {
            // The end is the column after the part.
            let last = match span.end.line == span.start.line {
                true => span.end.column.saturating_sub(1).max(span.start.column),
                false => span.start.column,
            };
            return (span.start.line > 0).then_some((span.start.line, span.start.column, last));
        }
        // The parser says where in its message: "... at Line: 1, Column: 5".
        let DataFusionError::SQL(parser, _) = root(e) else { return None };
        let (ParserError::ParserError(m) | ParserError::TokenizerError(m)) = parser.as_ref() else { return None };
        let (line, column) = m.rsplit_once(" at Line: ")?.1.split_once(", Column: ")?;
        let (line, column) = (line.parse().ok()?, column.trim().parse().ok()?);
        (line > 0).then_some((line, column, column))
    }

    /// The error of `query`, a part of `statement`, placed in `statement`.
    fn within(self, statement: &str, query: &str) -> SqlError {
        let (Some((line, first, last)), Some(at)) = (self.position(), statement.rfind(query)) else { return self };
        let SqlError::DataFusion(e) = self else { return self };
        let before = &statement[..at];
        let lines = before.matches('\n').count() as u64;
        let columns = before.rsplit('\n').next().unwrap_or("").chars().count() as u64;
        let shift = if line == 1 { columns } else { 0 };
        let start = Location { line: line + lines, column: first + shift };
        let end = Location { line: line + lines, column: last + shift + 1 };
        let placed = datafusion::common::Diagnostic::new_error(e.message(), Some(Span::new(start, end)));
        SqlError::DataFusion(DataFusionError::Diagnostic(Box::new(placed), Box::new(e)))
    }
}

/// The error under DataFusion's wrappers (its diagnostics and contexts).
fn root(mut e: &DataFusionError) -> &DataFusionError {
    while let DataFusionError::Diagnostic(_, inner) | DataFusionError::Context(_, inner) = e {
        e = inner;
    }
    e
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlError::DataFusion(e) => {
                match root(e) {
                    // The parser's own words, with the line and column.
                    DataFusionError::SQL(parser, _) => match parser.as_ref() {
                        ParserError::ParserError(m) | ParserError::TokenizerError(m) => {
                            // Its position is said below, in the whole statement.
                            let m = match (m.rfind(" at Line: "), self.position()) {
                                (Some(at), Some(_)) => &m[..at],
                                _ => m.as_str(),
                            };
                            write!(f, "{m}")?;
                        }
                        other => write!(f, "{other}")?,
                    },
                    _ => write!(f, "{}", e.strip_backtrace())?,
                }
                match self.position() {
                    Some((line, column, _)) => write!(f, " (at line {line}, column {column})"),
                    None => Ok(()),
                }
            }
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

/// A SQL session over a substrate: its tables are the declared topics; its continuous queries
/// run in this process when the session hosts them ([`SqlSession::hosting`]).
pub struct SqlSession {
    ctx: SessionContext,
    producer: Arc<dyn Producer>,
    admin: Arc<dyn Admin>,
    substrate: Arc<dyn Substrate>,
    host: Option<Host>,
    queries: Mutex<BTreeMap<String, Query>>,
    /// The statement applied per name (what the catalog says, as far as this session knows).
    applied: Mutex<BTreeMap<String, String>>,
    /// Where this session has read the catalog to.
    position: Mutex<i64>,
    /// Refreshes run one at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// Where connector statements go.
    connectors: Option<Arc<dyn ConnectorAdmin>>,
}

/// Where `CREATE SOURCE|SINK CONNECTOR`, `SHOW CONNECTORS`, `DESCRIBE CONNECTOR` and `DROP
/// CONNECTOR` go: a connect worker (ksqlDB sends them to `ksql.connect.url`). Errors are the
/// worker's words, shown as they are.
#[async_trait::async_trait]
pub trait ConnectorAdmin: Send + Sync + std::fmt::Debug {
    /// Creates a connector of `kind` (`source` or `sink`) from `config`; an error when the
    /// worker refuses it or its class is of the other kind.
    async fn create(&self, name: &str, kind: &str, config: BTreeMap<String, String>) -> Result<(), String>;
    /// Every connector: name, type, class, state.
    async fn list(&self) -> Result<Vec<[String; 4]>, String>;
    /// A connector's status and config as (property, value) rows; an error when unknown.
    async fn describe(&self, name: &str) -> Result<Vec<(String, String)>, String>;
    /// Deletes a connector: `false` when there was none.
    async fn delete(&self, name: &str) -> Result<bool, String>;
}

/// Where hosted queries run.
struct Host {
    substrate: Arc<dyn Substrate>,
    runtime: tokio::runtime::Handle,
    state_dir: PathBuf,
}

/// A continuous query: `CREATE STREAM|TABLE name AS ...`, named after its output.
struct Query {
    statement: String,
    kind: OutputKind,
    compiled: Compiled,
    /// The tables and views its statement names (the ones it is planned from again on restart).
    relations: BTreeSet<String>,
    /// Running here (hosting sessions only).
    app: Option<StreamsApp>,
}

impl std::fmt::Debug for SqlSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSession").field("hosting", &self.host.is_some()).finish_non_exhaustive()
    }
}

/// The application id a continuous query runs under (its consumer group and the prefix of its
/// internal topics).
pub fn query_application_id(name: &str) -> String {
    format!("freshet-sql-{name}")
}

fn plan_error(message: impl Into<String>) -> SqlError {
    SqlError::DataFusion(DataFusionError::Plan(message.into()))
}

/// One column of text rows.
fn text_batch(columns: &[&str], rows: Vec<Vec<String>>) -> Result<Vec<RecordBatch>, SqlError> {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let schema =
        Arc::new(Schema::new(columns.iter().map(|c| Field::new(*c, DataType::Utf8, false)).collect::<Vec<_>>()));
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| Arc::new(StringArray::from(rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>())) as ArrayRef)
        .collect();
    Ok(vec![RecordBatch::try_new(schema, arrays).map_err(|e| DataFusionError::ArrowError(Box::new(e), None))?])
}

/// The SQL type DataFusion reads back as `t`.
fn sql_type(t: &datafusion::arrow::datatypes::DataType) -> String {
    use datafusion::arrow::datatypes::{DataType as D, TimeUnit};
    match t {
        D::Boolean => "BOOLEAN".into(),
        D::Int8 | D::Int16 | D::UInt8 => "SMALLINT".into(),
        D::Int32 | D::UInt16 => "INT".into(),
        D::Int64 | D::UInt32 | D::UInt64 => "BIGINT".into(),
        D::Float32 => "FLOAT".into(),
        D::Float64 => "DOUBLE".into(),
        D::Timestamp(TimeUnit::Second, _) => "TIMESTAMP(0)".into(),
        D::Timestamp(TimeUnit::Millisecond, _) => "TIMESTAMP(3)".into(),
        D::Timestamp(TimeUnit::Microsecond, _) => "TIMESTAMP(6)".into(),
        D::Timestamp(TimeUnit::Nanosecond, _) => "TIMESTAMP(9)".into(),
        D::Date32 => "DATE".into(),
        _ => "VARCHAR".into(),
    }
}

impl SqlSession {
    /// A session on `substrate`, with every table declared so far. Continuous queries can be
    /// created, described and dropped; they run in sessions that host them.
    pub async fn new(substrate: impl Substrate + 'static) -> Result<Self, SqlError> {
        Self::open(Arc::new(substrate), None).await
    }

    /// A session that also runs the continuous queries (those declared so far, and those it
    /// creates) as streams applications on `runtime`, their stores under `state_dir`. Queries
    /// keep their progress (committed offsets, changelogs) in the log, so a query stopped with
    /// its process goes on where it was when a hosting session opens again.
    pub async fn hosting(
        substrate: impl Substrate + 'static,
        runtime: tokio::runtime::Handle,
        state_dir: &std::path::Path,
    ) -> Result<Self, SqlError> {
        let substrate: Arc<dyn Substrate> = Arc::new(substrate);
        let host = Host { substrate: substrate.clone(), runtime, state_dir: state_dir.to_path_buf() };
        Self::open(substrate, Some(host)).await
    }

    async fn open(substrate: Arc<dyn Substrate>, host: Option<Host>) -> Result<Self, SqlError> {
        let admin = substrate.admin()?;
        let factory = TopicTableFactory { admin: admin.clone(), substrate: substrate.clone() };
        // Spans let the planner's errors say where in the statement they are.
        let mut config = datafusion::prelude::SessionConfig::new();
        config.options_mut().sql_parser.collect_spans = true;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_table_factory("TOPIC".into(), Arc::new(factory))
            .build();
        let ctx = SessionContext::new_with_state(state);
        for f in continuous::window_functions() {
            ctx.register_udf(f);
        }
        let session = SqlSession {
            ctx,
            producer: substrate.producer()?,
            admin,
            substrate,
            host,
            queries: Mutex::new(BTreeMap::new()),
            applied: Mutex::new(BTreeMap::new()),
            position: Mutex::new(0),
            refreshing: tokio::sync::Mutex::new(()),
            connectors: None,
        };
        session.ensure_catalog().await?;
        session.refresh().await?;
        Ok(session)
    }

    /// This session with connector statements sent to `connectors`.
    pub fn with_connectors(mut self, connectors: Arc<dyn ConnectorAdmin>) -> Self {
        self.connectors = Some(connectors);
        self
    }

    fn connector_admin(&self) -> Result<&Arc<dyn ConnectorAdmin>, SqlError> {
        self.connectors.as_ref().ok_or_else(|| {
            plan_error("connector statements go to a connect worker, and this session has none (freshet sql --connect-url URL)")
        })
    }

    async fn connector_statement(&self, statement: Statement) -> Result<Vec<RecordBatch>, SqlError> {
        let admin = self.connector_admin()?;
        match statement {
            Statement::CreateConnector { name, source, if_not_exists, config } => {
                if if_not_exists && admin.list().await.map_err(plan_error)?.iter().any(|c| c[0] == name) {
                    return Ok(Vec::new());
                }
                let config: BTreeMap<String, String> = config.into_iter().collect();
                if !config.contains_key("connector.class") {
                    return Err(plan_error("CREATE CONNECTOR: WITH needs 'connector.class'"));
                }
                admin.create(&name, if source { "source" } else { "sink" }, config).await.map_err(plan_error)?;
                Ok(Vec::new())
            }
            Statement::ShowConnectors => {
                let rows = admin.list().await.map_err(plan_error)?.into_iter().map(Vec::from).collect();
                text_batch(&["connector", "type", "class", "state"], rows)
            }
            Statement::DescribeConnector(name) => {
                let rows =
                    admin.describe(&name).await.map_err(plan_error)?.into_iter().map(|(k, v)| vec![k, v]).collect();
                text_batch(&["property", "value"], rows)
            }
            Statement::DropConnector { name, if_exists } => {
                if !admin.delete(&name).await.map_err(plan_error)? && !if_exists {
                    return Err(plan_error(format!("no connector named {name}")));
                }
                Ok(Vec::new())
            }
            _ => Err(plan_error("not a connector statement")),
        }
    }

    async fn ensure_catalog(&self) -> Result<(), SqlError> {
        if self.admin.describe_topic(CATALOG_TOPIC).await.is_err() {
            let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
            match self.admin.create_topic(NewTopic { name: CATALOG_TOPIC.into(), n_partitions: 1, configs }).await {
                Ok(()) | Err(freshet_core::Error::TopicExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The declarations written from `from` on: the last statement (`None`: removed) per name,
    /// in the order written, so a query comes after the streams it reads; and where they end.
    async fn read_catalog(&self, from: i64) -> Result<(Vec<(String, Option<String>)>, i64), SqlError> {
        let tp = TopicPartition::new(CATALOG_TOPIC, 0);
        let end = self.admin.list_offset(&tp, freshet_core::OffsetSpec::Latest).await?.map_or(0, |o| o.0);
        if end <= from {
            return Ok((Vec::new(), from));
        }
        let mut declared: BTreeMap<String, (usize, Option<String>)> = BTreeMap::new();
        let mut seen = 0;
        let mut consumer = self.substrate.consumer(ConsumerConfig::default())?;
        consumer.assign(vec![tp.clone()]).await?;
        consumer.seek_to_offset(&tp, from)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while consumer.position(&tp).unwrap_or(end) < end && std::time::Instant::now() < deadline {
            for b in consumer.poll(Duration::from_millis(200)).await? {
                for r in b.records()? {
                    let Some(key) = r.key else { continue };
                    let name = String::from_utf8_lossy(&key).into_owned();
                    let statement = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
                    declared.insert(name, (seen, statement));
                    seen += 1;
                }
            }
        }
        let end = consumer.position(&tp).unwrap_or(end);
        let mut ordered: Vec<(String, (usize, Option<String>))> = declared.into_iter().collect();
        ordered.sort_by_key(|(_, (at, _))| *at);
        Ok((ordered.into_iter().map(|(name, (_, statement))| (name, statement)).collect(), end))
    }

    /// Applies what other sessions declared, created or dropped since this one last looked (a
    /// hosting session starts and stops queries accordingly); returns how many names changed.
    /// Hosts call it periodically (the `freshet` command every second).
    pub async fn refresh(&self) -> Result<usize, SqlError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let from = *self.position.lock().expect("position lock");
        let (changes, end) = self.read_catalog(from).await?;
        let mut changed = 0;
        for (name, statement) in changes {
            if self.applied.lock().expect("applied lock").get(&name) == statement.as_ref() {
                continue;
            }
            changed += 1;
            self.forget(&name).await;
            if let Some(statement) = &statement {
                if let Err(error) = self.apply(statement, false).await {
                    tracing::warn!(name = %name, %error, "a declared table or query could not be created; skipped");
                }
            }
            let mut applied = self.applied.lock().expect("applied lock");
            match statement {
                Some(s) => applied.insert(name, s),
                None => applied.remove(&name),
            };
        }
        *self.position.lock().expect("position lock") = end;
        Ok(changed)
    }

    /// Stops and forgets what this session knows under `name` (without recording anything).
    async fn forget(&self, name: &str) {
        let query = self.queries.lock().expect("queries lock").remove(name);
        if let Some(app) = query.and_then(|q| q.app) {
            match tokio::task::spawn_blocking(move || app.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(query = %name, error = %e, "stopping a dropped query"),
                Err(e) => tracing::warn!(query = %name, error = %e, "stopping a dropped query"),
            }
        }
        let _ = self.ctx.deregister_table(name);
    }

    /// Runs every statement of `sql` (separated by `;`) in order and returns the last one's rows.
    pub async fn execute(&self, sql: &str) -> Result<Vec<RecordBatch>, SqlError> {
        let mut last = Vec::new();
        // Each statement runs (and is recorded) as it was written.
        for statement in split_statements(sql) {
            last = self.apply(statement, true).await?;
        }
        Ok(last)
    }

    /// Records `statement` (`None`: removes) as the declaration of `name`.
    async fn record(&self, name: &str, statement: Option<&str>) -> Result<(), SqlError> {
        let record = ProducerRecord {
            topic: CATALOG_TOPIC.into(),
            partition: Some(0),
            key: Some(Bytes::from(name.to_string())),
            value: statement.map(|s| Bytes::from(s.to_string())),
            ..Default::default()
        };
        self.producer.send(vec![record]).await?;
        let mut applied = self.applied.lock().expect("applied lock");
        match statement {
            Some(s) => applied.insert(name.to_string(), s.to_string()),
            None => applied.remove(name),
        };
        Ok(())
    }

    /// Runs one statement; when `record`, a table or query it creates or drops is recorded in
    /// the declarations topic.
    async fn apply(&self, statement: &str, record: bool) -> Result<Vec<RecordBatch>, SqlError> {
        let freshet = statement::parse(statement).map_err(plan_error)?;
        match freshet {
            Some(Statement::CreateAs(c)) => {
                self.create_query(statement, &c, record).await.map_err(|e| e.within(statement, &c.query))?;
                Ok(Vec::new())
            }
            Some(Statement::Declare { name, external }) => {
                self.ctx.sql(&external).await?.collect().await?;
                if record {
                    self.record(&name, Some(statement)).await?;
                }
                Ok(Vec::new())
            }
            Some(Statement::ShowQueries) => self.show_queries(),
            Some(
                c @ (Statement::CreateConnector { .. }
                | Statement::ShowConnectors
                | Statement::DescribeConnector(_)
                | Statement::DropConnector { .. }),
            ) => self.connector_statement(c).await,
            Some(Statement::Explain(inner)) => {
                let Statement::CreateAs(c) = *inner else {
                    return Err(plan_error("EXPLAIN of this statement is not supported"));
                };
                let compiled = self.compile(&c).await.map_err(|e| e.within(statement, &c.query))?;
                explain(&compiled)
            }
            Some(Statement::ExplainQuery(name)) => {
                let queries = self.queries.lock().expect("queries lock");
                let q = queries.get(&name).ok_or_else(|| plan_error(format!("no query named {name}")))?;
                explain(&q.compiled)
            }
            Some(Statement::DropQuery(name)) => {
                self.drop_query(&name, record).await?;
                Ok(Vec::new())
            }
            Some(Statement::Drop { name, if_exists }) => {
                self.drop_relation(&name, if_exists, record).await?;
                Ok(Vec::new())
            }
            None => {
                let plan = self.ctx.state().create_logical_plan(statement).await?;
                let declared = match &plan {
                    LogicalPlan::Ddl(DdlStatement::CreateExternalTable(c)) => Some((c.name.table().to_string(), true)),
                    LogicalPlan::Ddl(DdlStatement::CreateView(c)) => Some((c.name.table().to_string(), true)),
                    LogicalPlan::Ddl(DdlStatement::DropTable(d)) => {
                        self.check_droppable(d.name.table()).await?;
                        Some((d.name.table().to_string(), false))
                    }
                    LogicalPlan::Ddl(DdlStatement::DropView(d)) => {
                        self.check_droppable(d.name.table()).await?;
                        Some((d.name.table().to_string(), false))
                    }
                    _ => None,
                };
                let rows = self.ctx.execute_logical_plan(plan).await?.collect().await?;
                if let (Some((name, created)), true) = (declared, record) {
                    self.record(&name, created.then_some(statement)).await?;
                }
                Ok(rows)
            }
        }
    }

    /// Plans and compiles a continuous query.
    async fn compile(&self, c: &CreateAs) -> Result<Compiled, SqlError> {
        let CreateAs { kind, name, query, emit, with } = c;
        let (kind, emit) = (*kind, *emit);
        let mut output = continuous::Output::default();
        for (option, value) in with {
            match option.as_str() {
                "format" | "value_format" => output.format = value.to_ascii_lowercase(),
                "partitions" => {
                    let n = value.parse().ok().filter(|n| *n > 0);
                    output.partitions = Some(n.ok_or_else(|| {
                        plan_error(format!("partitions = {value}: the output's partitions are a number above 0"))
                    })?);
                }
                "join_grace_ms" => {
                    let ms = value.parse().ok();
                    output.join_grace = Some(std::time::Duration::from_millis(ms.ok_or_else(|| {
                        plan_error(format!(
                            "join_grace_ms = {value}: a join's grace is a whole number of milliseconds, 0 or more"
                        ))
                    })?));
                }
                other => {
                    return Err(plan_error(format!(
                        "option {other} is not known for a query (known: format, partitions, join_grace_ms)"
                    )))
                }
            }
        }
        let state = self.ctx.state();
        let plan = state.create_logical_plan(query).await?;
        if !matches!(
            plan,
            LogicalPlan::Projection(_)
                | LogicalPlan::Aggregate(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::Union(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Distinct(_)
                | LogicalPlan::Join(_)
                | LogicalPlan::SubqueryAlias(_)
                | LogicalPlan::TableScan(_)
                | LogicalPlan::Window(_)
        ) {
            return Err(plan_error(format!("CREATE {} {name} AS needs a SELECT", kind_name(kind))));
        }
        let plan = state.optimize(&plan)?;
        let mut partitions = BTreeMap::new();
        for t in plan_topics(&plan) {
            if let Ok((d, _)) = self.admin.describe_topic(&t).await {
                partitions.insert(t, d.n_partitions);
            }
        }
        Ok(continuous::compile(&plan, &state, name, kind, emit, partitions, &output)?)
    }

    async fn create_query(&self, statement: &str, c: &CreateAs, record: bool) -> Result<(), SqlError> {
        let (kind, name) = (c.kind, c.name.as_str());
        if self.queries.lock().expect("queries lock").contains_key(name) {
            return Err(plan_error(format!("query {name} exists: DROP QUERY {name} first")));
        }
        if record && self.ctx.table_exist(name)? {
            return Err(plan_error(format!("{name} exists: choose another name, or DROP it first")));
        }
        let compiled = self.compile(c).await?;
        let relations = self.relations(&c.query)?;
        // The output topic: partitioned like the widest input; a table's is compacted.
        if self.admin.describe_topic(name).await.is_err() {
            let mut configs = BTreeMap::new();
            if kind == OutputKind::Table {
                configs.insert("cleanup.policy".to_string(), "compact".to_string());
            }
            let topic = NewTopic { name: name.to_string(), n_partitions: compiled.partitions, configs };
            match self.admin.create_topic(topic).await {
                Ok(()) | Err(freshet_core::Error::TopicExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The output, declared so other queries read it.
        let mut table = TopicTable::new(
            name,
            compiled.format.clone(),
            compiled.schema.clone(),
            self.admin.clone(),
            self.substrate.clone(),
        )?;
        if let (OutputKind::Table, Some(key)) = (kind, &compiled.key) {
            table = table.with_kind(TableKind::Table { key: key.clone() })?;
        }
        self.ctx.deregister_table(name)?;
        self.ctx.register_table(name, Arc::new(table))?;
        if record {
            self.record(name, Some(statement)).await?;
        }
        let app = match &self.host {
            Some(host) => Some(start(host, name, &compiled).await?),
            None => None,
        };
        let q = Query { statement: statement.to_string(), kind, compiled, relations, app };
        self.queries.lock().expect("queries lock").insert(name.to_string(), q);
        Ok(())
    }

    fn show_queries(&self) -> Result<Vec<RecordBatch>, SqlError> {
        let queries = self.queries.lock().expect("queries lock");
        let rows = queries
            .iter()
            .map(|(name, q)| {
                let state = match &q.app {
                    None => "not hosted here".to_string(),
                    Some(app) => match app.error() {
                        Some(e) => format!("{:?}: {e}", app.state()),
                        None => format!("{:?}", app.state()),
                    },
                };
                let sources = q.compiled.sources.iter().cloned().collect::<Vec<_>>().join(", ");
                // Since it started here: records read and written, skipped by the error policy,
                // dropped (values that do not decode, null keys) and late for their window.
                let counts = match &q.app {
                    None => Default::default(),
                    Some(app) => {
                        let m = app.metrics();
                        [m.records_in, m.records_out, m.records_skipped, m.dropped_records, m.late_records]
                            .map(|n| n.to_string())
                    }
                };
                let mut row = vec![name.clone(), kind_name(q.kind).to_string(), sources, name.clone(), state];
                row.extend(counts);
                row.push(q.statement.clone());
                row
            })
            .collect();
        let columns =
            ["query", "kind", "reads", "writes", "state", "read", "written", "skipped", "dropped", "late", "statement"];
        text_batch(&columns, rows)
    }

    async fn drop_query(&self, name: &str, record: bool) -> Result<(), SqlError> {
        let q = self.queries.lock().expect("queries lock").remove(name);
        let Some(q) = q else { return Err(plan_error(format!("no query named {name}"))) };
        if let Some(app) = q.app {
            let closed = tokio::task::spawn_blocking(move || app.close()).await;
            closed
                .map_err(|e| plan_error(e.to_string()))?
                .map_err(|e| plan_error(format!("stopping query {name}: {e}")))?;
        }
        if record {
            // The output stays declared, as a plain declaration of its topic.
            let columns: Vec<String> = q
                .compiled
                .schema
                .fields()
                .iter()
                .map(|f| format!("\"{}\" {}", f.name(), sql_type(f.data_type())))
                .collect();
            let key = match (q.kind, &q.compiled.key) {
                (OutputKind::Table, Some(k)) => format!(", key = '{k}'"),
                _ => String::new(),
            };
            let declaration = format!(
                "CREATE {} {name} ({}) WITH (topic = '{name}', {}{key})",
                kind_name(q.kind),
                columns.join(", "),
                q.compiled.format.with_options()
            );
            self.record(name, Some(&declaration)).await?;
        }
        Ok(())
    }

    /// The tables and views a query names.
    fn relations(&self, query: &str) -> Result<BTreeSet<String>, SqlError> {
        let state = self.ctx.state();
        let statement = state.sql_to_statement(query, &state.config().options().sql_parser.dialect)?;
        Ok(state.resolve_table_references(&statement)?.iter().map(|t| t.table().to_string()).collect())
    }

    /// Refuses to drop a table or view a query reads or writes.
    async fn check_droppable(&self, name: &str) -> Result<(), SqlError> {
        let provider = self.ctx.table_provider(name).await.ok();
        let topic = provider.and_then(|t| t.downcast_ref::<TopicTable>().map(|t| t.topic().to_string()));
        let queries = self.queries.lock().expect("queries lock");
        if queries.contains_key(name) {
            return Err(plan_error(format!("query {name} writes {name}: DROP QUERY {name} first")));
        }
        let naming: Vec<&str> =
            queries.iter().filter(|(_, q)| q.relations.contains(name)).map(|(n, _)| n.as_str()).collect();
        if !naming.is_empty() {
            return Err(plan_error(format!(
                "{name} is read by running queries ({}): drop them first",
                naming.join(", ")
            )));
        }
        if let Some(topic) = topic {
            let readers: Vec<&String> =
                queries.iter().filter(|(_, q)| q.compiled.sources.contains(&topic)).map(|(n, _)| n).collect();
            if !readers.is_empty() {
                return Err(plan_error(format!(
                    "{name} is read by running queries ({}): drop them first",
                    readers.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        Ok(())
    }

    async fn drop_relation(&self, name: &str, if_exists: bool, record: bool) -> Result<(), SqlError> {
        if !self.ctx.table_exist(name)? {
            return if if_exists { Ok(()) } else { Err(plan_error(format!("no stream or table named {name}"))) };
        }
        self.check_droppable(name).await?;
        self.ctx.deregister_table(name)?;
        if record {
            self.record(name, None).await?;
        }
        Ok(())
    }

    /// Stops the continuous queries this session runs (they resume when a hosting session
    /// opens again). Blocks (it waits for each query's last commit): call it from a thread that
    /// may block, not from an async task.
    pub fn close(&self) -> Result<(), SqlError> {
        let apps: Vec<(String, StreamsApp)> = {
            let mut queries = self.queries.lock().expect("queries lock");
            queries.iter_mut().filter_map(|(n, q)| q.app.take().map(|a| (n.clone(), a))).collect()
        };
        let mut first = None;
        for (name, app) in apps {
            if let Err(e) = app.close() {
                first.get_or_insert(plan_error(format!("stopping query {name}: {e}")));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The topology a query runs, and the topic it writes.
    pub fn query_topology(&self, name: &str) -> Option<freshet_dsl::Topology> {
        self.queries.lock().expect("queries lock").get(name).map(|q| q.compiled.topology.clone())
    }

    /// Compiles a continuous query (`CREATE STREAM|TABLE name AS ...`) without running or
    /// recording it: the topology it would run.
    pub async fn plan_query(&self, statement: &str) -> Result<Compiled, SqlError> {
        match statement::parse(statement).map_err(plan_error)? {
            Some(Statement::CreateAs(c)) => self.compile(&c).await,
            _ => Err(plan_error("not a continuous query (CREATE STREAM|TABLE name AS SELECT ...)")),
        }
    }

    /// The DataFusion context, to register functions or tables of one's own.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }
}

/// Starts a query as a streams application (on a blocking thread: starting waits on the log).
async fn start(host: &Host, name: &str, compiled: &Compiled) -> Result<StreamsApp, SqlError> {
    let mut config = StreamsConfig::new(&query_application_id(name)).map_err(|e| plan_error(e.to_string()))?;
    config.state_dir = host.state_dir.clone();
    config.on_processing_error = ErrorPolicy::LogAndContinue;
    config.on_deserialization_error = ErrorPolicy::LogAndContinue;
    config.commit_interval = Duration::from_millis(500);
    let (topology, substrate, runtime) = (compiled.topology.clone(), host.substrate.clone(), host.runtime.clone());
    let started = tokio::task::spawn_blocking(move || {
        let mut app = StreamsApp::new(topology, substrate, config, runtime)?;
        app.start()?;
        Ok::<_, freshet_runtime::Error>(app)
    });
    let app = started.await.map_err(|e| plan_error(format!("query {name}: {e}")))?;
    app.map_err(|e| plan_error(format!("query {name}: {e}")))
}

impl Drop for SqlSession {
    fn drop(&mut self) {
        let hosted = self.queries.lock().map(|q| q.values().any(|q| q.app.is_some())).unwrap_or(false);
        if !hosted {
            return;
        }
        let closed = match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.close()),
            Err(_) => self.close(),
        };
        if let Err(e) = closed {
            tracing::warn!(error = %e, "stopping the session's queries");
        }
    }
}

fn kind_name(kind: OutputKind) -> &'static str {
    match kind {
        OutputKind::Stream => "STREAM",
        OutputKind::Table => "TABLE",
    }
}

/// The topics a plan scans.
fn plan_topics(plan: &LogicalPlan) -> Vec<String> {
    let mut out = Vec::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if let Ok(p) = datafusion::datasource::source_as_provider(&scan.source) {
                if let Some(t) = p.downcast_ref::<TopicTable>() {
                    out.push(t.topic().to_string());
                }
            }
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    out
}

/// EXPLAIN of a continuous query: its topology, as `describe()` prints it.
fn explain(compiled: &Compiled) -> Result<Vec<RecordBatch>, SqlError> {
    let text = compiled.topology.describe();
    text_batch(&["topology"], text.lines().map(|l| vec![l.to_string()]).collect())
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
