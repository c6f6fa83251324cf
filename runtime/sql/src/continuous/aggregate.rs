//! `GROUP BY`: the aggregate functions over rows (state, accumulate, merge, finish) and their compilation into a grouped, windowed or not, aggregation.

use super::*;

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

impl Compiler<'_> {
    pub(super) fn aggregate(&mut self, a: &Aggregate) -> Result<Flow> {
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
}
