//! Joins: a stream with a table, two streams within a time bound read from `ON`, and windows' final results.

use super::*;

impl Compiler<'_> {
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

    pub(super) fn join(&mut self, j: &datafusion::logical_expr::Join) -> Result<Flow> {
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
