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
// Window functions: markers in GROUP BY, and the window bounds above a windowed aggregate.

/// `tumble(size [, grace])`, `hop(slide, size [, grace])`, `session(gap [, grace])` in a GROUP BY,
/// and `window_start()`, `window_end()` above it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct WindowFunction {
    name: &'static str,
    signature: Signature,
}

/// The window functions, to register in a session.
pub(crate) fn window_functions() -> Vec<ScalarUDF> {
    ["tumble", "hop", "session", "window_start", "window_end"]
        .into_iter()
        .map(|name| {
            let signature = if name.starts_with("window_") {
                Signature::nullary(Volatility::Volatile)
            } else {
                Signature::variadic_any(Volatility::Volatile)
            };
            ScalarUDF::new_from_impl(WindowFunction { name, signature })
        })
        .collect()
}

impl ScalarUDFImpl for WindowFunction {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Millisecond, None))
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(plan_err(match self.name {
            "window_start" | "window_end" => {
                format!("{}() has a value only in a continuous query (CREATE STREAM/TABLE ... AS) with a windowed GROUP BY", self.name)
            }
            name => format!("{name}() defines the windows of a continuous query's GROUP BY (CREATE STREAM/TABLE ... AS); it has no value by itself"),
        }))
    }
}

fn function_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::ScalarFunction(f) => Some(f.func.name()),
        Expr::Alias(a) => function_name(&a.expr),
        _ => None,
    }
}

fn is_window(e: &Expr) -> bool {
    matches!(function_name(e), Some("tumble" | "hop" | "session"))
}

/// A duration from an interval literal.
fn duration_of(e: &Expr, what: &str) -> Result<Duration> {
    let bad = || plan_err(format!("{what} must be an interval literal such as INTERVAL '10' SECOND, not {e}"));
    let Expr::Literal(v, _) = e else { return Err(bad()) };
    let ms = match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => {
            i64::from(i.days) * 86_400_000 + i.nanoseconds / 1_000_000
        }
        ScalarValue::IntervalDayTime(Some(i)) => i64::from(i.days) * 86_400_000 + i64::from(i.milliseconds),
        ScalarValue::DurationMillisecond(Some(ms)) => *ms,
        ScalarValue::DurationSecond(Some(s)) => s * 1000,
        _ => return Err(bad()),
    };
    u64::try_from(ms).map(Duration::from_millis).map_err(|_| bad())
}

/// A window in a GROUP BY.
#[derive(Debug, Clone, Copy)]
enum Windows {
    Time(TimeWindows),
    Session(SessionWindows),
}

/// The expression under an alias (`e AS name`), or the expression itself.
fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}

fn windows_of(e: &Expr) -> Result<Windows> {
    let e = unalias(e);
    let Expr::ScalarFunction(f) = e else { return Err(plan_err(format!("{e} is not a window"))) };
    let args = &f.args;
    let name = f.func.name();
    let grace = |i: usize| args.get(i).map(|a| duration_of(a, "a window's grace")).transpose();
    match (name, args.len()) {
        ("tumble", 1 | 2) => {
            let size = duration_of(&args[0], "tumble's size")?;
            Ok(Windows::Time(TimeWindows::of_size_and_grace(size, grace(1)?.unwrap_or_default())))
        }
        ("hop", 2 | 3) => {
            let slide = duration_of(&args[0], "hop's slide")?;
            let size = duration_of(&args[1], "hop's size")?;
            if slide > size || slide.is_zero() {
                return Err(plan_err(format!(
                    "hop's slide ({slide:?}) must be positive and at most its size ({size:?})"
                )));
            }
            Ok(Windows::Time(TimeWindows::of_size_and_grace(size, grace(2)?.unwrap_or_default()).advance_by(slide)))
        }
        ("session", 1 | 2) => {
            let gap = duration_of(&args[0], "session's gap")?;
            Ok(Windows::Session(SessionWindows::of_inactivity_gap_and_grace(gap, grace(1)?.unwrap_or_default())))
        }
        _ => Err(plan_err(format!(
            "{e}: windows are tumble(size [, grace]), hop(slide, size [, grace]) or session(gap [, grace])"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Row processors.

/// What a row step does.
#[derive(Clone)]
enum Step {
    /// Keeps rows for which the predicate holds.
    Filter(Arc<Eval>),
    /// New rows from expressions.
    Project(Arc<Vec<Eval>>),
    /// Fills the metadata columns at these positions (partition, offset, timestamp, key).
    Metadata([Option<usize>; 4]),
    /// Sets the record's time to a timestamp column's value plus an offset in ms.
    Time(usize, i64),
}

struct RowStep {
    step: Step,
    /// What the step is, for errors.
    what: Arc<str>,
}

fn process_error(what: &str, e: DataFusionError) -> freshet_dsl::Error {
    freshet_dsl::Error::Process(format!("{what}: {}", e.strip_backtrace()))
}

impl Processor<Row, Row, Row, Row> for RowStep {
    fn process(
        &mut self,
        record: Record<Row, Row>,
        ctx: &mut ProcessorContext<'_, Row, Row>,
    ) -> freshet_dsl::Result<()> {
        match &self.step {
            Step::Filter(predicate) => {
                if predicate.holds(&record.value).map_err(|e| process_error(&self.what, e))? {
                    ctx.forward(record)?;
                }
                Ok(())
            }
            Step::Project(exprs) => {
                let row = exprs.iter().map(|e| e.eval(&record.value)).collect::<Result<Row>>();
                let row = row.map_err(|e| process_error(&self.what, e))?;
                ctx.forward(record.with_value(row))
            }
            Step::Metadata(slots) => {
                let mut record = record;
                let meta = ctx.record_meta().cloned();
                let values = [
                    meta.as_ref().map(|m| ScalarValue::Int32(Some(m.partition as i32))),
                    meta.as_ref().map(|m| ScalarValue::Int64(Some(m.offset))),
                    Some(ScalarValue::TimestampMillisecond(Some(record.timestamp), None)),
                    Some(match record.key.first() {
                        Some(ScalarValue::Binary(Some(b))) => {
                            ScalarValue::Utf8(Some(String::from_utf8_lossy(b).into_owned()))
                        }
                        _ => ScalarValue::Utf8(None),
                    }),
                ];
                for (slot, value) in slots.iter().zip(values) {
                    if let (Some(i), Some(v)) = (slot, value) {
                        record.value[*i] = v;
                    }
                }
                ctx.forward(record)
            }
            Step::Time(at, offset) => match record.value.get(*at) {
                Some(ScalarValue::TimestampMillisecond(Some(t), _)) => {
                    let timestamp = t.saturating_add(*offset);
                    ctx.forward(Record { timestamp, ..record })
                }
                other => Err(freshet_dsl::Error::Process(format!(
                    "{}: column {at} holds {other:?}, not a window's bound",
                    self.what
                ))),
            },
        }
    }
}

fn step(stream: &KStream<Row, Row>, step: Step, what: &str, name: &str) -> KStream<Row, Row> {
    let what: Arc<str> = Arc::from(what);
    stream.process(move || RowStep { step: step.clone(), what: what.clone() }).named(name)
}

/// Record keys of a topic: the bytes as they are (a one-value row), so a query that does not
/// re-key writes its input's keys unchanged.
#[derive(Clone, Copy)]
struct RawKey;

impl freshet_dsl::Serde<Row> for RawKey {
    fn serialize(&self, key: &Row) -> std::result::Result<Option<bytes::Bytes>, String> {
        match key.as_slice() {
            [ScalarValue::Binary(b)] => Ok(b.clone().map(bytes::Bytes::from)),
            key => Ok(Some(bytes::Bytes::from(row::key_json(key)))),
        }
    }
    fn deserialize(&self, data: Option<&[u8]>) -> std::result::Result<Row, String> {
        Ok(vec![ScalarValue::Binary(data.map(<[u8]>::to_vec))])
    }
    fn name(&self) -> String {
        "Key".into()
    }
}

// ---------------------------------------------------------------------------------------------
// Aggregates.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggKind {
    CountStar,
    Count,
    Sum,
    Min,
    Max,
    Avg,
    /// `first_value`: the group's first value in the order records came (as read: offset order
    /// within a partition).
    First,
    /// `last_value`: the group's latest value in the order records came (ksqlDB's
    /// `LATEST_BY_OFFSET`).
    Last,
}

#[derive(Clone)]
struct Agg {
    kind: AggKind,
    arg: Option<Eval>,
    filter: Option<Eval>,
    /// Where its state starts in the accumulator row.
    at: usize,
    /// The result's type.
    out: DataType,
    /// `IGNORE NULLS` (first and last value): a null is not a value.
    ignore_nulls: bool,
}

/// The accumulator row's layout: count (Int64); sum, min, max (the result type); avg (sum Float64,
/// count Int64); first and last value (the value, and whether one was taken: a taken null is a
/// value unless `IGNORE NULLS`).
fn state_types(aggs: &[Agg]) -> Vec<DataType> {
    let mut types = Vec::new();
    for a in aggs {
        match a.kind {
            AggKind::CountStar | AggKind::Count => types.push(DataType::Int64),
            AggKind::Sum | AggKind::Min | AggKind::Max => types.push(a.out.clone()),
            AggKind::Avg => types.extend([DataType::Float64, DataType::Int64]),
            AggKind::First | AggKind::Last => types.extend([a.out.clone(), DataType::Boolean]),
        }
    }
    types
}

fn add_values(a: &ScalarValue, b: &ScalarValue) -> ScalarValue {
    if a.is_null() {
        return b.clone();
    }
    if b.is_null() {
        return a.clone();
    }
    match (a, b) {
        (ScalarValue::Int64(Some(x)), ScalarValue::Int64(Some(y))) => ScalarValue::Int64(Some(x.wrapping_add(*y))),
        (ScalarValue::Float64(Some(x)), ScalarValue::Float64(Some(y))) => ScalarValue::Float64(Some(x + y)),
        _ => a.add(b).unwrap_or_else(|_| a.clone()),
    }
}

fn extreme(a: &ScalarValue, b: &ScalarValue, max: bool) -> ScalarValue {
    if a.is_null() {
        return b.clone();
    }
    if b.is_null() {
        return a.clone();
    }
    match a.partial_cmp(b) {
        Some(std::cmp::Ordering::Less) if max => b.clone(),
        Some(std::cmp::Ordering::Greater) if !max => b.clone(),
        _ => a.clone(),
    }
}

/// Adds a row to an accumulator (evaluation errors leave the aggregate as it was, counted as nulls
/// would be; the row's other aggregates still count it).
fn accumulate(aggs: &[Agg], row: &Row, mut acc: Row) -> Row {
    for a in aggs {
        if let Some(f) = &a.filter {
            if !f.holds(row).unwrap_or(false) {
                continue;
            }
        }
        let v = match &a.arg {
            Some(e) => e.eval(row).unwrap_or(ScalarValue::Null),
            None => ScalarValue::Null,
        };
        let i = a.at;
        match a.kind {
            AggKind::CountStar => acc[i] = add_values(&acc[i], &ScalarValue::Int64(Some(1))),
            AggKind::Count if !v.is_null() => acc[i] = add_values(&acc[i], &ScalarValue::Int64(Some(1))),
            AggKind::Count => {}
            AggKind::Sum => acc[i] = add_values(&acc[i], &v.cast_to(&a.out).unwrap_or(ScalarValue::Null)),
            AggKind::Min => acc[i] = extreme(&acc[i], &v, false),
            AggKind::Max => acc[i] = extreme(&acc[i], &v, true),
            AggKind::Avg if !v.is_null() => {
                acc[i] = add_values(&acc[i], &v.cast_to(&DataType::Float64).unwrap_or(ScalarValue::Null));
                acc[i + 1] = add_values(&acc[i + 1], &ScalarValue::Int64(Some(1)));
            }
            AggKind::Avg => {}
            AggKind::First | AggKind::Last if a.ignore_nulls && v.is_null() => {}
            AggKind::First if taken(&acc[i + 1]) => {}
            AggKind::First | AggKind::Last => {
                acc[i] = v.cast_to(&a.out).unwrap_or_else(|_| null_of(&a.out));
                acc[i + 1] = ScalarValue::Boolean(Some(true));
            }
        }
    }
    acc
}

/// Whether a first or last value's flag says a value was taken.
fn taken(flag: &ScalarValue) -> bool {
    matches!(flag, ScalarValue::Boolean(Some(true)))
}

/// Two accumulators of sessions that merged.
fn merge(aggs: &[Agg], a: Row, b: Row) -> Row {
    let mut out = a;
    for g in aggs {
        let i = g.at;
        match g.kind {
            AggKind::CountStar | AggKind::Count | AggKind::Sum => out[i] = add_values(&out[i], &b[i]),
            AggKind::Min => out[i] = extreme(&out[i], &b[i], false),
            AggKind::Max => out[i] = extreme(&out[i], &b[i], true),
            AggKind::Avg => {
                out[i] = add_values(&out[i], &b[i]);
                out[i + 1] = add_values(&out[i + 1], &b[i + 1]);
            }
            // `a` is the earlier session.
            AggKind::First if taken(&out[i + 1]) => {}
            AggKind::Last if !taken(&b[i + 1]) => {}
            AggKind::First | AggKind::Last => {
                out[i] = b[i].clone();
                out[i + 1] = b[i + 1].clone();
            }
        }
    }
    out
}

/// The aggregates' values from an accumulator.
fn finish(aggs: &[Agg], acc: &Row) -> Vec<ScalarValue> {
    aggs.iter()
        .map(|a| match a.kind {
            AggKind::CountStar | AggKind::Count => {
                if acc[a.at].is_null() {
                    ScalarValue::Int64(Some(0))
                } else {
                    acc[a.at].clone()
                }
            }
            AggKind::Sum | AggKind::Min | AggKind::Max | AggKind::First | AggKind::Last => acc[a.at].clone(),
            AggKind::Avg => match (&acc[a.at], &acc[a.at + 1]) {
                (ScalarValue::Float64(Some(s)), ScalarValue::Int64(Some(n))) if *n > 0 => {
                    ScalarValue::Float64(Some(s / *n as f64)).cast_to(&a.out).unwrap_or(ScalarValue::Null)
                }
                _ => null_of(&a.out),
            },
        })
        .collect()
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

    fn aggregate(&mut self, a: &Aggregate) -> Result<Flow> {
        let flow = self.compile(&a.input)?;
        if flow.updates {
            // Its input is a changelog (each update replaces the last), not a stream of events.
            return Err(unsupported(
                "an aggregate over another aggregate's updates (a changelog), what DISTINCT aggregates and nested \
                 GROUP BYs need (over windows' final results, EMIT FINAL, it is supported)",
            ));
        }
        let flow = self.narrow(flow);
        if a.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
            return Err(unsupported("GROUPING SETS, CUBE or ROLLUP"));
        }
        let windows: Vec<&Expr> = a.group_expr.iter().filter(|e| is_window(e)).collect();
        if windows.len() > 1 {
            return Err(plan_err("a GROUP BY has at most one window (tumble, hop or session)"));
        }
        let windows = windows.first().map(|w| windows_of(w)).transpose()?;
        // Grouped by the window of windows' final results (a group column is their start or
        // end): each group gathers one window's results, and is final once results of later
        // windows come. A window of the advance's size holds exactly one window's time (end less
        // 1 ms), and accepts results as late as the input's delay.
        let window_column = |e: &Expr| match unalias(e) {
            Expr::Column(c) => flow.schema.index_of_column(c).ok(),
            _ => None,
        };
        let follows = flow.final_window.clone().and_then(|w| {
            let starts = (0..a.group_expr.len())
                .filter(|&g| window_column(&a.group_expr[g]).is_some_and(|i| w.starts.contains(&i)))
                .collect::<Vec<_>>();
            let ends = (0..a.group_expr.len())
                .filter(|&g| window_column(&a.group_expr[g]).is_some_and(|i| w.ends.contains(&i)))
                .collect::<Vec<_>>();
            (!starts.is_empty() || !ends.is_empty()).then(|| FinalWindow {
                starts,
                ends,
                delay_ms: w.delay_ms.saturating_mul(2).saturating_add(1),
                ..w
            })
        });
        let (flow, windows) = match (&follows, windows) {
            (Some(_), Some(_)) => {
                return Err(unsupported(
                    "a window in a GROUP BY of windows' final results by their window (they are grouped by theirs)",
                ))
            }
            (Some(w), None) => {
                let input = flow.final_window.clone().expect("followed");
                let flow = self.windowed_time(flow)?;
                let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
                let own = TimeWindows::of_size_and_grace(ms(w.advance_ms), ms(input.delay_ms));
                (flow, Some(Windows::Time(own)))
            }
            (None, windows) => (flow, windows),
        };
        let inherited = follows.is_some();
        let keys: Vec<(usize, Eval, DataType)> = a
            .group_expr
            .iter()
            .enumerate()
            .filter(|(_, e)| !is_window(e))
            .map(|(i, e)| {
                let t = a.schema.field(i).data_type().clone();
                Ok((i, self.expr(e, &flow)?, t))
            })
            .collect::<Result<_>>()?;
        let mut aggs = Vec::new();
        let mut at = 0;
        for (j, e) in a.aggr_expr.iter().enumerate() {
            let e = unalias(e);
            let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
                return Err(unsupported(format!("aggregate expression {e}")));
            };
            if params.distinct {
                return Err(unsupported(format!("{e} (DISTINCT aggregates)")));
            }
            if !params.order_by.is_empty() {
                return Err(unsupported(format!("{e} (ordered aggregates)")));
            }
            let out = a.schema.field(a.group_expr.len() + j).data_type().clone();
            let name = func.name().to_ascii_lowercase();
            let star =
                params.args.is_empty() || matches!(params.args.as_slice(), [Expr::Literal(v, _)] if !v.is_null());
            let kind = match name.as_str() {
                "count" if star => AggKind::CountStar,
                "count" => AggKind::Count,
                "sum" => AggKind::Sum,
                "min" => AggKind::Min,
                "max" => AggKind::Max,
                "avg" | "mean" => AggKind::Avg,
                "first_value" => AggKind::First,
                "last_value" => AggKind::Last,
                other => {
                    return Err(unsupported(format!(
                        "aggregate function {other} (supported: count, sum, min, max, avg, first_value, last_value)"
                    )))
                }
            };
            let arg = match (kind, params.args.as_slice()) {
                (AggKind::CountStar, _) => None,
                (_, [arg]) => Some(self.expr(arg, &flow)?),
                _ => return Err(unsupported(format!("{e} with {} arguments", params.args.len()))),
            };
            let filter = params.filter.as_ref().map(|f| self.expr(f, &flow)).transpose()?;
            let ignore_nulls =
                params.null_treatment == Some(datafusion::logical_expr::expr::NullTreatment::IgnoreNulls);
            let agg = Agg { kind, arg, filter, at, out, ignore_nulls };
            at += if matches!(kind, AggKind::Avg | AggKind::First | AggKind::Last) { 2 } else { 1 };
            aggs.push(agg);
        }
        let aggs = Arc::new(aggs);
        let state_types = state_types(&aggs);
        let key_types: Vec<DataType> = keys.iter().map(|(_, _, t)| t.clone()).collect();
        let key_evals: Arc<Vec<Eval>> = Arc::new(keys.iter().map(|(_, e, _)| e.clone()).collect());
        let input_types: Vec<DataType> = flow.schema.fields().iter().map(|f| f.data_type().clone()).collect();

        // Rows re-keyed by their group (a key that fails to evaluate makes a null key column).
        let evals = key_evals.clone();
        let keyed = flow.stream.select_key(move |_, v: &Row| {
            evals.iter().map(|e| e.eval(v).unwrap_or(ScalarValue::Null)).collect::<Row>()
        });
        let grouped = keyed.group_by_key(Grouped::with(KeySerde::new(key_types.clone()), RowSerde::new(input_types)));
        let init_types = state_types.clone();
        let init = move || init_types.iter().map(null_of).collect::<Row>();
        let (ag1, ag2) = (aggs.clone(), aggs.clone());
        let add = move |_: &Row, v: &Row, acc: Row| accumulate(&ag1, v, acc);
        let acc_serde = RowSerde::new(state_types.clone());
        let width = a.schema.fields().len();
        let window_position = a.group_expr.iter().position(is_window);
        // The window's bounds are columns of the rows, unless the groups follow their input's.
        let bounds = !inherited;
        let group_positions: Vec<usize> = keys.iter().map(|(i, _, _)| *i).collect();
        let n_groups = a.group_expr.len();
        // Output rows: the group columns (the window's as its start), the aggregates, then the
        // window's start and end.
        let assemble = move |key: &Row, acc: &Row, window: Option<(i64, i64)>| -> Row {
            let mut out = vec![ScalarValue::Null; width];
            for (k, &i) in group_positions.iter().enumerate() {
                out[i] = key[k].clone();
            }
            if let (Some(i), Some((start, _))) = (window_position, window) {
                out[i] = ScalarValue::TimestampMillisecond(Some(start), None);
            }
            for (j, v) in finish(&ag2, acc).into_iter().enumerate() {
                out[n_groups + j] = v;
            }
            if let (Some((start, end)), true) = (window, bounds) {
                out.push(ScalarValue::TimestampMillisecond(Some(start), None));
                out.push(ScalarValue::TimestampMillisecond(Some(end), None));
            }
            out
        };
        let emit = match self.emit {
            Emit::Changes => EmitStrategy::OnWindowUpdate,
            Emit::Final => EmitStrategy::OnWindowClose,
        };
        self.windowed |= windows.is_some();
        let stream: KStream<Row, Row> = match windows {
            None => grouped
                .aggregate(init, add, acc_serde, Materialized::new())
                .to_stream()
                .flat_map(move |k: &Row, v: &Option<Row>| v.as_ref().map(|acc| (k.clone(), assemble(k, acc, None)))),
            Some(w) => {
                let table = match w {
                    Windows::Time(t) => {
                        grouped.windowed_by(t).emit_strategy(emit).aggregate(init, add, acc_serde, Materialized::new())
                    }
                    Windows::Session(s) => {
                        let ag3 = aggs.clone();
                        grouped.windowed_by_session(s).emit_strategy(emit).aggregate(
                            init,
                            add,
                            move |_: &Row, x: Row, y: Row| merge(&ag3, x, y),
                            acc_serde,
                            Materialized::new(),
                        )
                    }
                };
                table.to_stream().flat_map(move |k: &freshet_dsl::Windowed<Row>, v: &Option<Row>| {
                    v.as_ref().map(|acc| {
                        let mut key = k.key.clone();
                        if bounds {
                            key.push(ScalarValue::TimestampMillisecond(Some(k.start), None));
                        }
                        (key, assemble(&k.key, acc, Some((k.start, k.end))))
                    })
                })
            }
        };
        let window = windows.filter(|_| bounds).map(|_| (width, width + 1));
        // One group column (and no window) is the whole key.
        let key = match (keys.as_slice(), windows) {
            ([(i, _, _)], None) => Some(a.schema.field(*i).name().clone()),
            _ => None,
        };
        let final_results = self.emit == Emit::Final && windows.is_some();
        let final_window = match (windows, final_results) {
            (_, false) => None,
            _ if inherited => follows,
            (Some(Windows::Time(t)), true) => {
                let ms = |d: Duration| d.as_millis() as i64;
                Some(FinalWindow {
                    starts: window_position.into_iter().chain([width]).collect(),
                    ends: vec![width + 1],
                    size_ms: ms(t.size()),
                    advance_ms: ms(t.advance()),
                    delay_ms: ms(t.grace()) + ms(t.size()),
                })
            }
            // Sessions' final results are a stream too, but of windows of no fixed size.
            _ => None,
        };
        Ok(Flow {
            stream,
            schema: a.schema.clone(),
            window,
            aggregated: true,
            updates: !final_results,
            final_window,
            key,
        })
    }

    /// A side of a join: a stream of events or of windows' final results (at their window's
    /// time), not a changelog.
    fn join_input(&mut self, plan: &LogicalPlan) -> Result<Flow> {
        let flow = self.compile(plan)?;
        if flow.updates {
            return Err(unsupported(
                "a join of an aggregate's updates (a changelog, not a stream; windows' final results, EMIT FINAL, \
                 can be joined)",
            ));
        }
        let flow = self.narrow(flow);
        self.windowed_time(flow)
    }

    fn join(&mut self, j: &datafusion::logical_expr::Join) -> Result<Flow> {
        use datafusion::logical_expr::utils::split_conjunction;
        let (ls, rs) = (j.left.schema().clone(), j.right.schema().clone());
        let only = |e: &Expr, s: &DFSchemaRef| e.column_refs().iter().all(|c| s.has_column(c));
        // Equalities between the two sides are the join key; the rest is a residual condition.
        let mut pairs: Vec<(Expr, Expr)> = j.on.clone();
        let mut residual: Vec<Expr> = Vec::new();
        if let Some(filter) = &j.filter {
            for c in split_conjunction(filter) {
                match c {
                    Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right })
                        if only(left, &ls)
                            && only(right, &rs)
                            && !left.column_refs().is_empty()
                            && !right.column_refs().is_empty() =>
                    {
                        pairs.push((left.as_ref().clone(), right.as_ref().clone()))
                    }
                    Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right })
                        if only(left, &rs)
                            && only(right, &ls)
                            && !left.column_refs().is_empty()
                            && !right.column_refs().is_empty() =>
                    {
                        pairs.push((right.as_ref().clone(), left.as_ref().clone()))
                    }
                    other => residual.push(other.clone()),
                }
            }
        }
        if pairs.is_empty() {
            return Err(unsupported(format!(
                "a join without an equality between its two sides ({})",
                j.filter.as_ref().map_or("no condition".to_string(), |f| f.to_string())
            )));
        }
        // A semi join keeps one side's rows that have a partner. The optimizer makes one of an
        // inner join whose other side is unique on the join key and unused above it (a
        // windows' maximum, say): that is the inner join, with one side's columns.
        let unique = |schema: &DFSchemaRef, keys: Vec<&Expr>| {
            let at: Vec<usize> = keys
                .into_iter()
                .filter_map(|e| match unalias(e) {
                    Expr::Column(c) => schema.maybe_index_of_column(c),
                    _ => None,
                })
                .collect();
            schema.functional_dependencies().iter().any(|d| {
                d.mode == datafusion::common::Dependency::Single
                    // Null keys join nothing here, so a nullable key is unique as well.
                    && (!d.nullable || j.null_equality == datafusion::common::NullEquality::NullEqualsNothing)
                    && d.source_indices.iter().all(|i| at.contains(i))
            })
        };
        let semi = match j.join_type {
            JoinType::LeftSemi | JoinType::RightSemi => {
                let (other, keys) = match j.join_type {
                    JoinType::LeftSemi => (&rs, j.on.iter().map(|(_, r)| r).collect::<Vec<_>>()),
                    _ => (&ls, j.on.iter().map(|(l, _)| l).collect()),
                };
                if !unique(other, keys) {
                    return Err(unsupported(format!(
                        "a {} join (EXISTS or IN with a subquery) where a row may have more than one partner",
                        j.join_type
                    )));
                }
                Some(j.join_type)
            }
            _ => None,
        };
        let outer = match j.join_type {
            JoinType::Inner | JoinType::LeftSemi | JoinType::RightSemi => None,
            JoinType::Left => Some(JoinType::Left),
            JoinType::Full => Some(JoinType::Full),
            other => {
                return Err(unsupported(format!("a {other} join (supported: inner, left, and full between streams)")))
            }
        };
        type TableSide = (Arc<dyn datafusion::catalog::TableProvider>, DFSchemaRef, Vec<TableStep>);
        let table_of = |plan: &LogicalPlan| -> Option<TableSide> {
            let (scan, steps) = scan_of(plan)?;
            let provider = topic_table(scan).ok()?;
            let schema = scan.projected_schema.clone();
            matches!(as_topic(&provider).kind(), TableKind::Table { .. }).then_some((provider, schema, steps))
        };
        if table_of(&j.left).is_some() {
            return Err(unsupported("a table on the left of a join (put the stream first: stream JOIN table)"));
        }
        let left = self.join_input(&j.left)?;
        let left_types: Vec<DataType> = ls.fields().iter().map(|f| f.data_type().clone()).collect();
        let right_types: Vec<DataType> = rs.fields().iter().map(|f| f.data_type().clone()).collect();
        let right_nulls: Row = right_types.iter().map(null_of).collect();
        let stream = match table_of(&j.right) {
            Some((provider, scanned, steps)) => {
                let table = as_topic(&provider);
                let TableKind::Table { key } = table.kind().clone() else { unreachable!("a table") };
                if outer == Some(JoinType::Full) {
                    return Err(unsupported("a full join of a stream with a table"));
                }
                let key_type = table.value_schema().field_with_name(&key)?.data_type().clone();
                let [(left_key, right_key)] = pairs.as_slice() else {
                    return Err(unsupported(format!(
                        "a stream-table join on more than the table's key ({key}); put other conditions in WHERE"
                    )));
                };
                if !matches!(right_key, Expr::Column(c) if c.name == key) {
                    return Err(unsupported(format!(
                        "a stream-table join on {right_key}: a table joins on its key column, {key}"
                    )));
                }
                if outer.is_some() && !residual.is_empty() {
                    return Err(unsupported("a left join with conditions other than the key in ON"));
                }
                // The table: rows of its scan, then the filters and projections between the
                // scan and the join.
                let arrow = Arc::new(scanned.as_arrow().clone());
                let values = ValueSerde::new(&table.format(), table.value_schema(), &arrow);
                let consumed = Consumed::with(KeySerde::new(vec![key_type.clone()]), values)
                    .on_decode_error(OnDecodeError::Skip)
                    .named(&format!("SOURCE-{}", table.topic()));
                let mut ktable = self.builder.table(table.topic(), consumed, Materialized::new());
                self.partitions = self.partitions.max(self.admin_partitions.get(table.topic()).copied().unwrap_or(1));
                for step in steps {
                    match step {
                        TableStep::Filter(f, schema) => {
                            let predicate = expr::compile(&f, &schema, None, self.state)?;
                            ktable = ktable.filter(move |_, v: &Row| predicate.holds(v).unwrap_or(false));
                        }
                        TableStep::Project(exprs, schema) => {
                            let evals = exprs
                                .iter()
                                .map(|e| expr::compile(e, &schema, None, self.state))
                                .collect::<Result<Vec<_>>>()?;
                            ktable = ktable.map_values(move |v: &Row| {
                                evals.iter().map(|e| e.eval(v).unwrap_or(ScalarValue::Null)).collect::<Row>()
                            });
                        }
                    }
                }
                let key_slot = rs.as_arrow().index_of(&key).ok();
                let key_eval = Arc::new(self.expr(left_key, &left)?);
                let ke = key_eval.clone();
                let kt = key_type.clone();
                let keyed = left.stream.select_key(move |_, v: &Row| {
                    vec![ke.eval(v).and_then(|k| k.cast_to(&kt)).unwrap_or_else(|_| null_of(&kt))]
                });
                let joined = move |l: &Row, r: Option<&Row>| -> Row {
                    let mut out = l.clone();
                    match r {
                        Some(r) => {
                            let mut r = r.clone();
                            if let Some(i) = key_slot {
                                r[i] = key_eval.eval(l).and_then(|k| k.cast_to(&key_type)).unwrap_or(ScalarValue::Null);
                            }
                            out.extend(r);
                        }
                        None => out.extend(right_nulls.iter().cloned()),
                    }
                    out
                };
                let serde = RowSerde::new(left_types);
                match outer {
                    None => keyed.join_table(&ktable, move |l: &Row, r: &Row| joined(l, Some(r)), serde),
                    Some(_) => keyed.left_join_table(&ktable, joined, serde),
                }
            }
            None => {
                let right = self.join_input(&j.right)?;
                let times = Times { ls: &ls, rs: &rs, lw: left.final_window.as_ref(), rw: right.final_window.as_ref() };
                let bound = time_bound(&pairs, &mut residual, &times)?;
                if outer.is_some() && (!bound.exact || !residual.is_empty()) {
                    return Err(unsupported(
                        "a left or full join of streams with conditions in ON other than equalities and a time bound \
                         of the form a._timestamp BETWEEN b._timestamp - INTERVAL ... AND b._timestamp + INTERVAL ...",
                    ));
                }
                let key_types: Vec<DataType> =
                    pairs.iter().map(|(l, _)| l.get_type(&ls)).collect::<Result<Vec<_>>>()?;
                let lkeys = pairs.iter().map(|(l, _)| self.expr(l, &left)).collect::<Result<Vec<_>>>()?;
                let rkeys = pairs.iter().map(|(_, r)| self.expr(r, &right)).collect::<Result<Vec<_>>>()?;
                let rekey = |evals: Vec<Eval>, types: Vec<DataType>| {
                    move |_: &Row, v: &Row| -> Row {
                        evals
                            .iter()
                            .zip(&types)
                            .map(|(e, t)| e.eval(v).and_then(|k| k.cast_to(t)).unwrap_or_else(|_| null_of(t)))
                            .collect()
                    }
                };
                let lk = left.stream.select_key(rekey(lkeys, key_types.clone()));
                let rk = right.stream.select_key(rekey(rkeys, key_types.clone()));
                // Windows' final results come as late as their delay: the join waits that long
                // (or the query's join grace, if longer).
                let delays = [&left, &right].map(|f| f.final_window.as_ref().map_or(0, |w| w.delay_ms));
                let delay = Duration::from_millis(delays.into_iter().max().unwrap_or(0).max(0) as u64);
                let grace = delay.max(self.join_grace);
                let windows = JoinWindows::of_time_difference_and_grace(Duration::ZERO, grace)
                    .before(Duration::from_millis(bound.before))
                    .after(Duration::from_millis(bound.after));
                let joined = StreamJoined::with(
                    KeySerde::new(key_types),
                    RowSerde::new(left_types.clone()),
                    RowSerde::new(right_types),
                );
                let left_nulls: Row = left_types.iter().map(null_of).collect();
                let concat = move |l: Option<&Row>, r: Option<&Row>| -> Row {
                    let mut out = l.cloned().unwrap_or_else(|| left_nulls.clone());
                    out.extend(r.cloned().unwrap_or_else(|| right_nulls.clone()));
                    out
                };
                match outer {
                    None => lk.join(&rk, move |l: &Row, r: &Row| concat(Some(l), Some(r)), windows, joined),
                    Some(JoinType::Left) => {
                        lk.left_join(&rk, move |l: &Row, r: Option<&Row>| concat(Some(l), r), windows, joined)
                    }
                    Some(_) => lk.outer_join(&rk, concat, windows, joined),
                }
            }
        };
        // Rows of both sides' columns, then (a semi join) of one side's.
        let both = match semi {
            Some(_) => Arc::new(ls.join(&rs)?),
            None => j.schema.clone(),
        };
        let mut flow = Flow::events(stream, both);
        if let Some(f) = residual.into_iter().reduce(|a, b| a.and(b)) {
            let predicate = self.expr(&f, &flow)?;
            flow.stream = self.step(&flow.stream, Step::Filter(Arc::new(predicate)), &format!("ON {f}"), "ON");
        }
        if let Some(kind) = semi {
            let (n, m) = (ls.fields().len(), rs.fields().len());
            let kept: Vec<Eval> = match kind {
                JoinType::LeftSemi => (0..n).map(Eval::Column).collect(),
                _ => (n..n + m).map(Eval::Column).collect(),
            };
            let stream = self.step(&flow.stream, Step::Project(Arc::new(kept)), "one side's columns", "SEMI");
            flow = Flow::events(stream, j.schema.clone());
        }
        Ok(flow)
    }
}

/// The time bound of a join of two streams: how far before and after a left record a right one
/// may be, and whether the window says exactly what the query's bound says (else the bound's
/// conditions stay as a filter after the join).
struct TimeBound {
    before: u64,
    after: u64,
    exact: bool,
}

/// What stands for the record times of a join's two sides: their `_timestamp` columns, and the
/// window bounds of windows' final results (a window's start is its time less the size plus 1
/// ms, its end its time plus 1 ms).
struct Times<'a> {
    ls: &'a DFSchemaRef,
    rs: &'a DFSchemaRef,
    lw: Option<&'a FinalWindow>,
    rw: Option<&'a FinalWindow>,
}

/// Which side's record time an expression is (left: true), plus a constant offset in ms.
fn timestamp_offset(e: &Expr, times: &Times<'_>) -> Option<(bool, i64)> {
    match e {
        Expr::Column(c) => {
            [(true, times.ls, times.lw), (false, times.rs, times.rw)].into_iter().find_map(|(left, s, w)| {
                if c.name == "_timestamp" && s.has_column(c) {
                    return Some((left, 0));
                }
                let (w, i) = (w?, s.index_of_column(c).ok()?);
                if w.starts.contains(&i) {
                    Some((left, 1 - w.size_ms))
                } else if w.ends.contains(&i) {
                    Some((left, 1))
                } else {
                    None
                }
            })
        }
        Expr::Cast(c) => timestamp_offset(&c.expr, times),
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::Plus | Operator::Minus), right }) => {
            let (side, base) = timestamp_offset(left, times)?;
            let d = duration_of(right, "").ok()?.as_millis() as i64;
            Some((side, if *op == Operator::Plus { base + d } else { base - d }))
        }
        _ => None,
    }
}

/// Finds the time bound of a stream-stream join: `date_bin` equalities or equal window bounds
/// among the key pairs, or comparisons (`BETWEEN`, `<=`, `>=`, `<`, `>`) of the two sides' record
/// times in the residual conditions. Those stay in the residual, so the join means exactly what
/// the query says.
fn time_bound(pairs: &[(Expr, Expr)], residual: &mut [Expr], times: &Times<'_>) -> Result<TimeBound> {
    // lo <= right - left <= hi
    let (mut lo, mut hi): (Option<i64>, Option<i64>) = (None, None);
    let mut exact = true;
    for (l, r) in pairs {
        if let (Some("date_bin"), Some("date_bin")) = (function_name(l), function_name(r)) {
            if let (Expr::ScalarFunction(fl), Expr::ScalarFunction(fr)) = (l, r) {
                if fl.args.first() == fr.args.first() {
                    if let Some(width) = fl.args.first().and_then(|a| duration_of(a, "").ok()) {
                        let w = width.as_millis() as i64 - 1;
                        lo = Some(lo.map_or(-w, |x| x.max(-w)));
                        hi = Some(hi.map_or(w, |x| x.min(w)));
                    }
                }
            }
        }
    }
    let mut apply = |a: &Expr, op: Operator, b: &Expr| -> bool {
        let (Some((sa, oa)), Some((sb, ob))) = (timestamp_offset(a, times), timestamp_offset(b, times)) else {
            return false;
        };
        if sa == sb {
            return false;
        }
        // Normalise to `right - left  op  c`.
        let (op, c) = if sa { (op.swap().unwrap_or(op), oa - ob) } else { (op, ob - oa) };
        match op {
            Operator::Eq => {
                lo = Some(lo.map_or(c, |x| x.max(c)));
                hi = Some(hi.map_or(c, |x| x.min(c)));
            }
            Operator::GtEq => lo = Some(lo.map_or(c, |x| x.max(c))),
            Operator::Gt => lo = Some(lo.map_or(c + 1, |x| x.max(c + 1))),
            Operator::LtEq => hi = Some(hi.map_or(c, |x| x.min(c))),
            Operator::Lt => hi = Some(hi.map_or(c - 1, |x| x.min(c - 1))),
            _ => return false,
        }
        if matches!(op, Operator::Gt | Operator::Lt) {
            exact = false;
        }
        true
    };
    for (l, r) in pairs {
        apply(l, Operator::Eq, r);
    }
    for e in residual.iter() {
        match e {
            Expr::Between(b) if !b.negated => {
                apply(&b.expr, Operator::GtEq, &b.low);
                apply(&b.expr, Operator::LtEq, &b.high);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                apply(left, *op, right);
            }
            _ => {}
        }
    }
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Err(plan_err(
            "a join of two streams needs a time bound in ON: a._timestamp BETWEEN b._timestamp - INTERVAL ... AND \
             b._timestamp + INTERVAL ..., or date_bin(INTERVAL ..., a._timestamp) = date_bin(INTERVAL ..., b._timestamp), \
             or equal window bounds of windows' final results (EMIT FINAL)",
        ));
    };
    if lo > hi {
        return Err(plan_err(format!("the join's time bound is empty ({lo} ms to {hi} ms)")));
    }
    exact &= lo <= 0 && hi >= 0;
    Ok(TimeBound { before: (-lo).max(0) as u64, after: hi.max(0) as u64, exact })
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
