//! Continuous queries: a `SELECT` planned by DataFusion, compiled into the [`Topology`] the
//! runtime executes (the same graph the Rust DSL builds).
//!
//! DataFusion's SQL front end and optimizer produce a logical plan; each node becomes DSL
//! operators over [`Row`]s:
//!
//! | plan node | topology |
//! |---|---|
//! | scan of a declared stream | a source (JSON values decoded straight into rows; metadata columns filled) |
//! | `WHERE`, `HAVING`, `SELECT` expressions | one processor each ([`super::expr`]) |
//! | `GROUP BY` | a re-keyed stream, grouped (repartition topic), aggregated in a store; windows from `tumble`, `hop` or `session` in the `GROUP BY` |
//! | join of a stream with a declared table | a stream-table join on the table's key |
//! | join of two streams | a windowed stream-stream join; the window from the time bound in `ON` |
//! | `GROUP BY` of windows' final results by their window | a window aggregate following those windows |
//! | join of windows' final results | a stream-stream join bounded by their window columns |
//! | semi join (an inner join the optimizer narrowed to one side) | the inner join, then that side's columns |
//! | `UNION ALL` | a merge |
//!
//! Rows are events, an aggregate's updates (a changelog: nothing downstream may aggregate, join
//! or merge them), or, with `EMIT FINAL`, windows' final results: one row per window, a stream,
//! which a second stage takes at its window's time (see [`FinalWindow`]). Anything else
//! (`ORDER BY`, `LIMIT`, `DISTINCT`, `OVER`, subqueries, other aggregates or join kinds) is
//! refused when the query is planned, naming the part.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{DFSchemaRef, DataFusionError, Result, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, ColumnarValue, Expr, ExprSchemable, JoinType, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, TableScan, Volatility,
};
use freshet_dsl::{
    Consumed, EmitStrategy, Grouped, JoinWindows, KStream, Materialized, OnDecodeError, Processor, ProcessorContext,
    Produced, Record, SessionWindows, StreamJoined, StreamsBuilder, TimeWindows, Topology,
};

use super::expr::{self, Eval};
use super::format::Format;
use super::row::{self, KeySerde, RowSerde, ValueSerde};
use super::table::{TableKind, TopicTable};
use super::value::{self, null_of, Row};

mod aggregate;
mod join;
mod steps;
mod windows;

use steps::*;
pub(crate) use windows::window_functions;
use windows::*;

/// `CREATE STREAM` (every result, appended) or `CREATE TABLE` (an aggregate's latest value per
/// key, in a compacted topic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// Results appended to a topic.
    Stream,
    /// Latest value per key, in a compacted topic.
    Table,
}

/// When a windowed aggregation emits (`EMIT CHANGES`, the default, or `EMIT FINAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Emit {
    /// Every update.
    #[default]
    Changes,
    /// Each window's result once, when it closes.
    Final,
}

/// A continuous query compiled for the runtime.
pub struct Compiled {
    /// The topology it runs.
    pub topology: Topology,
    /// The topics it reads.
    pub sources: BTreeSet<String>,
    /// The output's columns.
    pub schema: SchemaRef,
    /// The output's key columns (a table's group columns), when they are output columns.
    pub key: Option<String>,
    /// Partitions of the output topic (those of its widest source, unless the query says).
    pub partitions: u32,
    /// The format of the output's values.
    pub format: Format,
}

/// What a query's `WITH (...)` says of its output.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    /// The values' format (`json`, `csv`, `avro`).
    pub(crate) format: String,
    /// The output topic's partitions.
    pub(crate) partitions: Option<u32>,
    /// How late a record may come to a join of two streams and still join (Kafka Streams'
    /// `JoinWindows` grace): out of order within it, records join; a left or full join's
    /// unmatched record waits for it before it is written with nulls.
    pub(crate) join_grace: Option<Duration>,
}

impl Default for Output {
    fn default() -> Self {
        Output { format: "json".into(), partitions: None, join_grace: None }
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled").field("sources", &self.sources).field("schema", &self.schema).finish_non_exhaustive()
    }
}

fn unsupported(what: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::NotImplemented(format!("{what} is not supported in a continuous query"))
}

fn plan_err(what: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(what.into())
}

// ---------------------------------------------------------------------------------------------
// The compiler.

/// A compiled plan node: a stream of rows of `schema`. A windowed aggregate's rows carry the
/// window's start and end after the schema's columns.
#[derive(Clone)]
struct Flow {
    stream: KStream<Row, Row>,
    schema: DFSchemaRef,
    /// Positions of window start and end in the rows, when they come from a windowed aggregate.
    window: Option<(usize, usize)>,
    /// Whether rows are an aggregate's results (what CREATE TABLE needs).
    aggregated: bool,
    /// Whether a row replaces the last one of its key (an aggregate's updates: a changelog)
    /// rather than adding one (a stream of events, or windows' final results).
    updates: bool,
    /// When rows are the final results of fixed-size windows, where their windows are.
    final_window: Option<FinalWindow>,
    /// The output key's column, when one output column is the whole key.
    key: Option<String>,
}

impl Flow {
    /// A stream of events (not an aggregate's results).
    fn events(stream: KStream<Row, Row>, schema: DFSchemaRef) -> Flow {
        Flow { stream, schema, window: None, aggregated: false, updates: false, final_window: None, key: None }
    }
}

/// Rows that are the final results of fixed-size windows (`EMIT FINAL` over `tumble` or `hop`).
/// Each window's rows come once, when it closes, so they are a stream: a later stage may
/// aggregate them by window or join them on their window. They enter that stage at their
/// window's time, its end less 1 ms (the last instant it covers).
#[derive(Debug, Clone)]
struct FinalWindow {
    /// Columns (positions in the rows) holding the window's start.
    starts: Vec<usize>,
    /// Columns holding the window's end.
    ends: Vec<usize>,
    size_ms: i64,
    advance_ms: i64,
    /// How far the stream time may be past a row's window time when the row arrives: the window's
    /// grace, plus one window's size for the results of other partitions, which close their
    /// windows on their own records' time and may come later. What a later stage waits for.
    delay_ms: i64,
}

impl FinalWindow {
    /// The window time of a row, as (column, offset from its value).
    fn time_column(&self) -> Option<(usize, i64)> {
        match (self.ends.first(), self.starts.first()) {
            (Some(&end), _) => Some((end, -1)),
            (None, Some(&start)) => Some((start, self.size_ms - 1)),
            (None, None) => None,
        }
    }

    /// Keeps the window's columns that `keep` maps to new positions; none left, no window.
    fn remap(&self, keep: impl Fn(usize) -> Vec<usize>) -> Option<FinalWindow> {
        let starts: Vec<usize> = self.starts.iter().flat_map(|&i| keep(i)).collect();
        let ends: Vec<usize> = self.ends.iter().flat_map(|&i| keep(i)).collect();
        (!starts.is_empty() || !ends.is_empty()).then(|| FinalWindow { starts, ends, ..self.clone() })
    }
}

struct Compiler<'a> {
    state: &'a SessionState,
    builder: StreamsBuilder,
    emit: Emit,
    /// Per source topic: the columns read (positions in the table's schema).
    reads: BTreeMap<String, BTreeSet<usize>>,
    /// Per source topic: the filters over its scans, which its decoder applies early.
    filters: ScanFilters,
    /// Per source topic: its stream of full-width rows, once built.
    sources: BTreeMap<String, KStream<Row, Row>>,
    partitions: u32,
    admin_partitions: BTreeMap<String, u32>,
    /// Row steps so far (they are named by number).
    steps: usize,
    /// Aggregates compiled so far, by plan.
    compiled: Vec<(LogicalPlan, Flow)>,
    /// Whether some aggregate is windowed (what EMIT FINAL applies to; other aggregates of the
    /// query emit their updates).
    windowed: bool,
    /// The grace of joins of two streams, from the query's options.
    join_grace: Duration,
}

fn topic_table(scan: &TableScan) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
    let provider = source_as_provider(&scan.source)?;
    if provider.downcast_ref::<TopicTable>().is_none() {
        return Err(plan_err(format!(
            "{} is not a topic: continuous queries read streams and tables declared over topics",
            scan.table_name
        )));
    }
    Ok(provider)
}

fn as_topic(provider: &Arc<dyn datafusion::catalog::TableProvider>) -> &TopicTable {
    provider.downcast_ref::<TopicTable>().expect("checked by topic_table")
}

/// A step between a table's scan and a join: a filter or a projection, with the schema it reads.
enum TableStep {
    Filter(Expr, DFSchemaRef),
    Project(Vec<Expr>, DFSchemaRef),
}

/// The scan under aliases, filters and projections, if the node is one, with those steps from
/// the scan up.
fn scan_of(plan: &LogicalPlan) -> Option<(&TableScan, Vec<TableStep>)> {
    match plan {
        LogicalPlan::TableScan(s) => {
            let filters = s.filters.iter().map(|f| TableStep::Filter(f.clone(), s.projected_schema.clone())).collect();
            Some((s, filters))
        }
        LogicalPlan::SubqueryAlias(a) => scan_of(&a.input),
        LogicalPlan::Filter(f) => {
            let (scan, mut steps) = scan_of(&f.input)?;
            steps.push(TableStep::Filter(f.predicate.clone(), f.input.schema().clone()));
            Some((scan, steps))
        }
        LogicalPlan::Projection(p) => {
            let (scan, mut steps) = scan_of(&p.input)?;
            steps.push(TableStep::Project(p.expr.clone(), p.input.schema().clone()));
            Some((scan, steps))
        }
        _ => None,
    }
}

/// Per JSON topic: the filters right over its scans (each with the scan's name, which qualifies
/// its columns), or `None` when some scan keeps every value or filters on more than the value's
/// columns.
type ScanFilters = BTreeMap<String, Option<Vec<(Expr, datafusion::common::TableReference)>>>;

fn collect_filters(plan: &LogicalPlan, out: &mut ScanFilters) {
    // A scan, its name in the filter's columns, and the filter right over it. Filters pushed
    // into the scan (on metadata columns) are left out: the early filter may keep more than the
    // scans do, never less.
    let found = match plan {
        LogicalPlan::Filter(f) => match f.input.as_ref() {
            LogicalPlan::TableScan(s) => Some((s, s.table_name.clone(), Some(&f.predicate))),
            LogicalPlan::SubqueryAlias(a) => match a.input.as_ref() {
                LogicalPlan::TableScan(s) => Some((s, a.alias.clone(), Some(&f.predicate))),
                _ => None,
            },
            _ => None,
        },
        LogicalPlan::TableScan(s) => Some((s, s.table_name.clone(), None)),
        _ => None,
    };
    let Some((scan, name, predicate)) = found else {
        for input in plan.inputs() {
            collect_filters(input, out);
        }
        return;
    };
    let Ok(provider) = topic_table(scan) else { return };
    let table = as_topic(&provider);
    let value = table.value_schema();
    let usable = |p: &Expr| p.column_refs().iter().all(|c| value.index_of(&c.name).is_ok());
    let entry = out.entry(table.topic().to_string()).or_insert_with(|| Some(Vec::new()));
    match (predicate, entry) {
        (Some(p), Some(list)) if matches!(table.format(), Format::Json) && usable(p) => list.push((p.clone(), name)),
        (_, entry) => *entry = None,
    }
}

/// The early filter of a source (see [`row::EarlyFilter`]) and the predicate that keeps what
/// any of its scans' filters keeps, over the source's rows (of `schema`); `None` where some scan
/// keeps every row, a filter is volatile, or the filters do not compile over the source's rows
/// (the filters downstream are what decide, either way).
fn early_filter(
    filters: Option<&Option<Vec<(Expr, datafusion::common::TableReference)>>>,
    schema: &SchemaRef,
    state: &SessionState,
) -> Option<(row::EarlyFilter, Eval)> {
    use datafusion::logical_expr::utils::split_conjunction;
    let mut predicate: Option<Eval> = None;
    let mut parts = Vec::new();
    for (e, name) in filters?.as_ref()? {
        // A volatile filter (random()) could decide differently here and downstream.
        if e.is_volatile() {
            return None;
        }
        let columns = datafusion::common::DFSchema::try_from_qualified_schema(name.clone(), schema).ok()?;
        let compile = |e: &Expr| expr::compile(e, &columns, None, state).ok();
        let mut conjuncts = Vec::new();
        for c in split_conjunction(e) {
            let reads = c.column_refs().iter().map(|r| schema.index_of(&r.name).ok()).collect::<Option<Vec<_>>>()?;
            conjuncts.push((compile(c)?, reads));
        }
        parts.push(conjuncts);
        let p = compile(e)?;
        predicate = Some(match predicate {
            None => p,
            Some(q) => Eval::Binary(Box::new(q), Operator::Or, Box::new(p)),
        });
    }
    Some((row::EarlyFilter::new(schema.fields().len(), parts)?, predicate?))
}

fn collect_reads(plan: &LogicalPlan, reads: &mut BTreeMap<String, BTreeSet<usize>>) -> Result<()> {
    if let LogicalPlan::TableScan(scan) = plan {
        let provider = topic_table(scan)?;
        let table = as_topic(&provider);
        let all = table.schema_ref().fields().len();
        let cols = reads.entry(table.topic().to_string()).or_default();
        match &scan.projection {
            Some(p) => cols.extend(p.iter().copied()),
            None => cols.extend(0..all),
        }
        // Filters pushed into the scan read their columns too.
        for f in &scan.filters {
            for c in f.column_refs() {
                if let Ok(i) = table.schema_ref().index_of(&c.name) {
                    cols.insert(i);
                }
            }
        }
    }
    for input in plan.inputs() {
        collect_reads(input, reads)?;
    }
    Ok(())
}

impl Compiler<'_> {
    /// A row step named `<kind>-<n>` (the n-th step of the query).
    fn step(&mut self, stream: &KStream<Row, Row>, s: Step, what: &str, kind: &str) -> KStream<Row, Row> {
        self.steps += 1;
        step(stream, s, what, &format!("SQL-{kind}-{}", self.steps))
    }

    /// Drops the window's start and end that a windowed aggregate's rows carry after their
    /// columns, so the rows are the schema's.
    fn narrow(&mut self, flow: Flow) -> Flow {
        if flow.window.is_none() {
            return flow;
        }
        let n = flow.schema.fields().len();
        let exprs = (0..n).map(Eval::Column).collect();
        let stream = self.step(&flow.stream, Step::Project(Arc::new(exprs)), "the schema's columns", "COLUMNS");
        let final_window = flow.final_window.as_ref().and_then(|w| w.remap(|i| if i < n { vec![i] } else { vec![] }));
        Flow { stream, window: None, final_window, ..flow }
    }

    /// Final windows' results at their window's time (end less 1 ms), as a later stage takes
    /// them; other rows as they are.
    fn windowed_time(&mut self, flow: Flow) -> Result<Flow> {
        let Some((at, offset)) = flow.final_window.as_ref().and_then(FinalWindow::time_column) else {
            return Ok(flow);
        };
        let stream = self.step(&flow.stream, Step::Time(at, offset), "the window's time", "WINDOWTIME");
        Ok(Flow { stream, ..flow })
    }

    fn compile(&mut self, plan: &LogicalPlan) -> Result<Flow> {
        // A subquery that comes twice (a query over an aggregate and over its maximum, say) is
        // computed once, its results going to both.
        if let LogicalPlan::Aggregate(_) = plan {
            if let Some((_, flow)) = self.compiled.iter().find(|(p, _)| p == plan) {
                return Ok(flow.clone());
            }
            let flow = self.compile_node(plan)?;
            self.compiled.push((plan.clone(), flow.clone()));
            return Ok(flow);
        }
        self.compile_node(plan)
    }

    fn compile_node(&mut self, plan: &LogicalPlan) -> Result<Flow> {
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(scan),
            LogicalPlan::SubqueryAlias(a) => {
                let flow = self.compile(&a.input)?;
                Ok(Flow { schema: a.schema.clone(), ..flow })
            }
            LogicalPlan::Filter(f) => {
                let flow = self.compile(&f.input)?;
                let predicate = self.expr(&f.predicate, &flow)?;
                let stream = self.step(
                    &flow.stream,
                    Step::Filter(Arc::new(predicate)),
                    &format!("WHERE {}", f.predicate),
                    "WHERE",
                );
                Ok(Flow { stream, ..flow })
            }
            LogicalPlan::Projection(p) => {
                let flow = self.compile(&p.input)?;
                let exprs = p.expr.iter().map(|e| self.expr(e, &flow)).collect::<Result<Vec<_>>>()?;
                // The output key stays a column if the projection keeps it under a name.
                let key = flow.key.as_ref().and_then(|k| {
                    p.expr.iter().find_map(|e| match e {
                        Expr::Column(c) if &c.name == k => Some(c.name.clone()),
                        Expr::Alias(a) if matches!(a.expr.as_ref(), Expr::Column(c) if &c.name == k) => {
                            Some(a.name.clone())
                        }
                        _ => None,
                    })
                });
                // The final windows' start and end stay known where the projection keeps them.
                let final_window = flow.final_window.as_ref().and_then(|w| {
                    w.remap(|i| {
                        let at = |e: &Expr| match unalias(e) {
                            Expr::Column(c) => flow.schema.index_of_column(c).ok(),
                            e => match (function_name(e), flow.window) {
                                (Some("window_start"), Some((start, _))) => Some(start),
                                (Some("window_end"), Some((_, end))) => Some(end),
                                _ => None,
                            },
                        };
                        p.expr.iter().enumerate().filter(|(_, e)| at(e) == Some(i)).map(|(o, _)| o).collect()
                    })
                });
                let what = format!("SELECT {}", p.expr.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "));
                let stream = self.step(&flow.stream, Step::Project(Arc::new(exprs)), &what, "SELECT");
                Ok(Flow { stream, schema: p.schema.clone(), window: None, final_window, key, ..flow })
            }
            LogicalPlan::Aggregate(a) => self.aggregate(a),
            LogicalPlan::Join(j) => self.join(j),
            LogicalPlan::Union(u) => {
                let flows = u.inputs.iter().map(|i| self.compile(i)).collect::<Result<Vec<_>>>()?;
                if flows.iter().any(|f| f.updates) {
                    return Err(unsupported(
                        "a UNION of aggregates' updates (changelogs; windows' final results, EMIT FINAL, can be merged)",
                    ));
                }
                let mut flows: Vec<Flow> = flows.into_iter().map(|f| self.narrow(f)).collect();
                let first = flows.remove(0);
                let stream = flows.iter().fold(first.stream.clone(), |s, f| s.merge(&f.stream));
                Ok(Flow::events(stream, u.schema.clone()))
            }
            LogicalPlan::Sort(_) => Err(unsupported("ORDER BY (results are emitted as they happen)")),
            LogicalPlan::Limit(_) => Err(unsupported("LIMIT")),
            LogicalPlan::Distinct(_) => Err(unsupported("DISTINCT (use GROUP BY)")),
            LogicalPlan::Window(_) => Err(unsupported("a window function (OVER)")),
            LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => {
                Err(unsupported("a query without a stream to read (FROM a declared stream or table is needed)"))
            }
            LogicalPlan::Subquery(_) => Err(unsupported("a subquery")),
            other => Err(unsupported(format!("this kind of plan ({})", other.display()))),
        }
    }

    fn expr(&self, e: &Expr, flow: &Flow) -> Result<Eval> {
        expr::compile(e, &flow.schema, flow.window, self.state)
    }

    fn source(&mut self, table: &TopicTable) -> Result<KStream<Row, Row>> {
        let topic = table.topic().to_string();
        if let Some(s) = self.sources.get(&topic) {
            return Ok(s.clone());
        }
        let reads = self.reads.get(&topic).cloned().unwrap_or_default();
        // Source rows hold the columns some scan of the topic reads, in the table's order.
        let schema = &Arc::new(table.schema_ref().project(&reads.iter().copied().collect::<Vec<_>>())?);
        let value_columns: Vec<(String, DataType)> = table
            .value_schema()
            .fields()
            .iter()
            .filter(|f| schema.index_of(f.name()).is_ok())
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        for (name, t) in &value_columns {
            if !value::supported(t) {
                return Err(plan_err(format!(
                    "column {name} of {topic} has type {t}, which continuous queries do not carry yet"
                )));
            }
        }
        let mut values = ValueSerde::new(&table.format(), table.value_schema(), schema);
        let early = early_filter(self.filters.get(&topic), schema, self.state);
        if let Some((filter, _)) = &early {
            values = values.with_early_filter(filter.clone());
        }
        let consumed =
            Consumed::with(RawKey, values).on_decode_error(OnDecodeError::Skip).named(&format!("SOURCE-{topic}"));
        let mut stream = self.builder.stream(&topic, consumed);
        // Values no scan keeps (read only as far as the filters' columns) stop here, before
        // each scan's columns are taken and its own filter applied (one scan's filter comes
        // next anyway).
        let scans = self.filters.get(&topic).and_then(|f| f.as_ref()).map_or(0, Vec::len);
        if let Some((_, predicate)) = early.filter(|_| scans > 1) {
            stream = self.step(&stream, Step::Filter(Arc::new(predicate)), "some scan's filter", "SOURCEWHERE");
        }
        if schema.index_of("_headers").is_ok() {
            return Err(unsupported(
                "reading _headers (records keep their headers from input to output; with SELECT *, list the columns \
                 instead)",
            ));
        }
        let metadata = &super::table::METADATA_COLUMNS;
        let slots = [0, 1, 2, 3].map(|i| schema.index_of(metadata[i]).ok());
        if slots.iter().any(Option::is_some) {
            stream = self.step(&stream, Step::Metadata(slots), "metadata columns", "METADATA");
        }
        if let Some(n) = self.admin_partitions.get(&topic) {
            self.partitions = self.partitions.max(*n);
        }
        self.sources.insert(topic, stream.clone());
        Ok(stream)
    }

    fn scan(&mut self, scan: &TableScan) -> Result<Flow> {
        if scan.fetch.is_some() {
            return Err(unsupported("LIMIT"));
        }
        let provider = topic_table(scan)?;
        let table = as_topic(&provider);
        if let TableKind::Table { .. } = table.kind() {
            return Err(unsupported(format!(
                "reading table {} other than as the right side of a join with a stream",
                scan.table_name
            )));
        }
        let mut stream = self.source(table)?;
        let full = table.schema_ref();
        // The scan's columns, from the full row.
        let projection: Vec<usize> = scan.projection.clone().unwrap_or_else(|| (0..full.fields().len()).collect());
        let read: Vec<usize> = self.reads.get(table.topic()).map(|r| r.iter().copied().collect()).unwrap_or_default();
        if projection != read {
            let exprs = projection
                .iter()
                .map(|i| {
                    read.iter().position(|r| r == i).map(Eval::Column).ok_or_else(|| plan_err("a scan column not read"))
                })
                .collect::<Result<Vec<_>>>()?;
            stream = self.step(&stream, Step::Project(Arc::new(exprs)), "columns read", "COLUMNS");
        }
        let flow = Flow::events(stream, scan.projected_schema.clone());
        let filters = scan.filters.iter().cloned().reduce(|a, b| a.and(b));
        match filters {
            Some(f) => {
                let predicate = self.expr(&f, &flow)?;
                let stream = self.step(&flow.stream, Step::Filter(Arc::new(predicate)), &format!("WHERE {f}"), "WHERE");
                Ok(Flow { stream, ..flow })
            }
            None => Ok(flow),
        }
    }
}

/// The output's columns and key.
pub(crate) fn output_schema(plan: &LogicalPlan) -> Result<SchemaRef> {
    let fields: Vec<Field> =
        plan.schema().fields().iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect();
    let mut seen = BTreeSet::new();
    for f in &fields {
        if !seen.insert(f.name().clone()) {
            return Err(plan_err(format!(
                "two output columns are named {}: give them distinct names with AS",
                f.name()
            )));
        }
        if super::table::METADATA_COLUMNS.contains(&f.name().as_str()) {
            return Err(plan_err(format!(
                "output column {0} has the name of a metadata column: select it under another name ({0} AS ...), or \
                 list the columns instead of *",
                f.name()
            )));
        }
        if !value::supported(f.data_type()) {
            return Err(plan_err(format!(
                "output column {} has type {}, which continuous queries do not carry yet",
                f.name(),
                f.data_type()
            )));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Compiles the optimized plan of a continuous query writing `output` into a topology.
pub(crate) fn compile(
    plan: &LogicalPlan,
    state: &SessionState,
    output: &str,
    kind: OutputKind,
    emit: Emit,
    partitions: BTreeMap<String, u32>,
    out: &Output,
) -> Result<Compiled> {
    let schema = output_schema(plan)?;
    if out.format == "raw" {
        return Err(unsupported("a 'raw' output (query outputs are 'json', 'csv' or 'avro')"));
    }
    let fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let (format, _) = Format::declare(&out.format, None, None, &fields)?;
    let mut reads = BTreeMap::new();
    collect_reads(plan, &mut reads)?;
    if reads.contains_key(output) {
        return Err(plan_err(format!("a continuous query cannot read the topic it writes ({output})")));
    }
    let mut filters = ScanFilters::new();
    collect_filters(plan, &mut filters);
    let mut compiler = Compiler {
        state,
        builder: StreamsBuilder::new(),
        emit,
        reads,
        filters,
        sources: BTreeMap::new(),
        partitions: 1,
        admin_partitions: partitions,
        steps: 0,
        compiled: Vec::new(),
        windowed: false,
        join_grace: out.join_grace.unwrap_or_default(),
    };
    let flow = compiler.compile(plan)?;
    if emit == Emit::Final && !compiler.windowed {
        return Err(plan_err("EMIT FINAL needs a windowed GROUP BY (tumble, hop or session)"));
    }
    if kind == OutputKind::Table && !flow.aggregated {
        return Err(plan_err(
            "CREATE TABLE ... AS SELECT needs a GROUP BY (its rows are the latest per key); use CREATE STREAM for a stream of rows",
        ));
    }
    let values = ValueSerde::output(&format, &schema);
    flow.stream.to(output, Produced::with(RawKey, values).named(&format!("SINK-{output}")));
    let topology = compiler.builder.build().map_err(|e| plan_err(e.to_string()))?;
    Ok(Compiled {
        topology,
        sources: compiler.sources.keys().cloned().collect(),
        schema,
        key: flow.key,
        partitions: out.partitions.unwrap_or(compiler.partitions),
        format,
    })
}
