//! Expressions of a continuous query, evaluated one row at a time.
//!
//! DataFusion plans and type-checks an expression (its types are coerced by then); here it
//! becomes an [`Eval`] tree over a row's `ScalarValue`s. Columns, literals, arithmetic,
//! comparisons, boolean logic, null tests, casts, `BETWEEN` and `IN` lists are evaluated
//! directly; a scalar function (built-in or user-defined) is called through DataFusion with
//! scalar arguments; anything else (`CASE`, `LIKE`, ...) runs DataFusion's own physical
//! expression over a one-row batch of the columns it reads. So every expression DataFusion
//! accepts means here what it means in an ad-hoc query.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{
    expr::ScalarFunction, BinaryExpr, ColumnarValue, Expr, ExprSchemable, Operator, ScalarFunctionArgs, ScalarUDF,
};
use datafusion::physical_expr::PhysicalExpr;

use super::value::Row;

/// A compiled expression.
#[derive(Debug, Clone)]
pub(crate) enum Eval {
    Column(usize),
    Literal(ScalarValue),
    Binary(Box<Eval>, Operator, Box<Eval>),
    Not(Box<Eval>),
    IsNull(Box<Eval>, bool),
    Negative(Box<Eval>),
    Cast(Box<Eval>, DataType, bool),
    Between { expr: Box<Eval>, low: Box<Eval>, high: Box<Eval>, negated: bool },
    InList { expr: Box<Eval>, list: Vec<Eval>, negated: bool },
    Function(Box<Function>),
    Physical(Box<Physical>),
}

#[derive(Debug, Clone)]
pub(crate) struct Function {
    udf: Arc<ScalarUDF>,
    args: Vec<Eval>,
    arg_fields: Vec<FieldRef>,
    return_field: FieldRef,
    config: Arc<ConfigOptions>,
}

#[derive(Debug, Clone)]
pub(crate) struct Physical {
    expr: Arc<dyn PhysicalExpr>,
    /// The input columns it reads, in the order of `schema`.
    columns: Vec<usize>,
    schema: Arc<Schema>,
}

/// Compiles `expr` over rows of `schema`; `window`: where the rows carry their window's start
/// and end (what `window_start()` and `window_end()` read), if they come from a windowed
/// aggregate.
pub(crate) fn compile(
    expr: &Expr,
    schema: &DFSchema,
    window: Option<(usize, usize)>,
    state: &SessionState,
) -> Result<Eval> {
    let c = |e: &Expr| compile(e, schema, window, state).map(Box::new);
    let all = |es: &[Expr]| es.iter().map(|e| compile(e, schema, window, state)).collect::<Result<Vec<_>>>();
    Ok(match expr {
        Expr::Alias(a) => return compile(&a.expr, schema, window, state),
        Expr::ScalarFunction(ScalarFunction { func, .. })
            if matches!(func.name(), "window_start" | "window_end" | "tumble" | "hop" | "session") =>
        {
            let name = func.name();
            match (name, window) {
                ("window_start", Some((start, _))) => Eval::Column(start),
                ("window_end", Some((_, end))) => Eval::Column(end),
                ("window_start" | "window_end", None) => {
                    return Err(DataFusionError::Plan(format!(
                        "{name}() needs a windowed GROUP BY (tumble, hop or session) below it"
                    )))
                }
                _ => {
                    return Err(DataFusionError::Plan(format!(
                        "{name}() belongs in the GROUP BY of a continuous query"
                    )))
                }
            }
        }
        Expr::Column(col) => Eval::Column(schema.index_of_column(col)?),
        Expr::Literal(v, _) => Eval::Literal(v.clone()),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if fast_operator(*op) => {
            Eval::Binary(c(left)?, *op, c(right)?)
        }
        Expr::Not(e) => Eval::Not(c(e)?),
        Expr::IsNull(e) => Eval::IsNull(c(e)?, false),
        Expr::IsNotNull(e) => Eval::IsNull(c(e)?, true),
        Expr::Negative(e) => Eval::Negative(c(e)?),
        Expr::Cast(cast) => Eval::Cast(c(&cast.expr)?, cast.field.data_type().clone(), false),
        Expr::TryCast(cast) => Eval::Cast(c(&cast.expr)?, cast.field.data_type().clone(), true),
        Expr::Between(b) => Eval::Between { expr: c(&b.expr)?, low: c(&b.low)?, high: c(&b.high)?, negated: b.negated },
        Expr::InList(l) => Eval::InList { expr: c(&l.expr)?, list: all(&l.list)?, negated: l.negated },
        Expr::ScalarFunction(ScalarFunction { func, args }) => {
            let arg_fields = args.iter().map(|a| a.to_field(schema).map(|(_, f)| f)).collect::<Result<Vec<_>>>()?;
            let (_, return_field) = expr.to_field(schema)?;
            Eval::Function(Box::new(Function {
                udf: func.clone(),
                args: all(args)?,
                arg_fields,
                return_field,
                config: Arc::new(state.config_options().as_ref().clone()),
            }))
        }
        Expr::AggregateFunction(_) | Expr::WindowFunction(_) => {
            return Err(DataFusionError::Plan(format!("{expr} cannot be evaluated per row")))
        }
        Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_) | Expr::SetComparison(_) => {
            return Err(DataFusionError::NotImplemented(format!(
                "subqueries are not supported in continuous queries: {expr}"
            )))
        }
        other => {
            // DataFusion's physical expression, over the columns it reads.
            let mut refs: Vec<usize> =
                other.column_refs().into_iter().map(|c| schema.index_of_column(c)).collect::<Result<_>>()?;
            refs.sort_unstable();
            refs.dedup();
            let fields: Vec<_> = refs
                .iter()
                .map(|&i| {
                    let (q, f) = schema.qualified_field(i);
                    (q.cloned(), f.clone())
                })
                .collect();
            let projected = DFSchema::new_with_metadata(fields, Default::default())?;
            let physical = state.create_physical_expr(other.clone(), &projected)?;
            Eval::Physical(Box::new(Physical {
                expr: physical,
                columns: refs,
                schema: Arc::new(projected.as_arrow().clone()),
            }))
        }
    })
}

fn fast_operator(op: Operator) -> bool {
    use Operator::*;
    matches!(
        op,
        Eq | NotEq
            | Lt
            | LtEq
            | Gt
            | GtEq
            | Plus
            | Minus
            | Multiply
            | Divide
            | Modulo
            | And
            | Or
            | IsDistinctFrom
            | IsNotDistinctFrom
    )
}

fn boolean(v: Option<bool>) -> ScalarValue {
    ScalarValue::Boolean(v)
}

fn truth(v: &ScalarValue) -> Option<bool> {
    match v {
        ScalarValue::Boolean(b) => *b,
        _ => None,
    }
}

impl Eval {
    /// The value of this expression for `row`.
    pub(crate) fn eval(&self, row: &Row) -> Result<ScalarValue> {
        Ok(match self {
            Eval::Column(i) => row[*i].clone(),
            Eval::Literal(v) => v.clone(),
            Eval::Binary(l, op, r) => {
                // Boolean logic short-circuits as SQL's three-valued logic allows.
                if *op == Operator::And {
                    let a = truth(&l.eval(row)?);
                    if a == Some(false) {
                        return Ok(boolean(Some(false)));
                    }
                    let b = truth(&r.eval(row)?);
                    return Ok(boolean(match (a, b) {
                        (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    }));
                }
                if *op == Operator::Or {
                    let a = truth(&l.eval(row)?);
                    if a == Some(true) {
                        return Ok(boolean(Some(true)));
                    }
                    let b = truth(&r.eval(row)?);
                    return Ok(boolean(match (a, b) {
                        (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    }));
                }
                // Columns and literals are compared where they are, not copied.
                match (l.peek(row), r.peek(row)) {
                    (Some(a), Some(b)) => binary(a, *op, b)?,
                    _ => binary(&l.eval(row)?, *op, &r.eval(row)?)?,
                }
            }
            Eval::Not(e) => boolean(truth(&e.eval(row)?).map(|b| !b)),
            Eval::IsNull(e, negated) => boolean(Some(e.eval(row)?.is_null() != *negated)),
            Eval::Negative(e) => e.eval(row)?.arithmetic_negate()?,
            Eval::Cast(e, t, lenient) => {
                let v = e.eval(row)?;
                if let Some(v) = widen(&v, t) {
                    return Ok(v);
                }
                match v.cast_to(t) {
                    Ok(v) => v,
                    Err(_) if *lenient => ScalarValue::try_from(t)?,
                    Err(e) => return Err(e),
                }
            }
            Eval::Between { expr, low, high, negated } => {
                let v = expr.eval(row)?;
                let ge = binary(&v, Operator::GtEq, &low.eval(row)?)?;
                let le = binary(&v, Operator::LtEq, &high.eval(row)?)?;
                let inside = match (truth(&ge), truth(&le)) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                boolean(inside.map(|b| b != *negated))
            }
            Eval::InList { expr, list, negated } => {
                let v = expr.eval(row)?;
                if v.is_null() {
                    return Ok(boolean(None));
                }
                let mut saw_null = false;
                for e in list {
                    let item = e.eval(row)?;
                    if item.is_null() {
                        saw_null = true;
                    } else if item == v {
                        return Ok(boolean(Some(!*negated)));
                    }
                }
                boolean(if saw_null { None } else { Some(*negated) })
            }
            Eval::Function(f) => {
                let args = f.args.iter().map(|a| a.eval(row).map(ColumnarValue::Scalar)).collect::<Result<Vec<_>>>()?;
                let out = f.udf.invoke_with_args(ScalarFunctionArgs {
                    args,
                    arg_fields: f.arg_fields.clone(),
                    number_rows: 1,
                    return_field: f.return_field.clone(),
                    config_options: f.config.clone(),
                })?;
                scalar_of(out)?
            }
            Eval::Physical(p) => {
                let columns = p.columns.iter().map(|&i| row[i].to_array_of_size(1)).collect::<Result<Vec<_>>>()?;
                let batch = if columns.is_empty() {
                    RecordBatch::try_new_with_options(
                        p.schema.clone(),
                        columns,
                        &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(1)),
                    )?
                } else {
                    RecordBatch::try_new(p.schema.clone(), columns)?
                };
                scalar_of(p.expr.evaluate(&batch)?)?
            }
        })
    }

    /// Whether this predicate holds for `row` (null: it does not).
    /// A column's or literal's value, where it is.
    fn peek<'a>(&'a self, row: &'a Row) -> Option<&'a ScalarValue> {
        match self {
            Eval::Column(i) => row.get(*i),
            Eval::Literal(v) => Some(v),
            _ => None,
        }
    }

    pub(crate) fn holds(&self, row: &Row) -> Result<bool> {
        Ok(truth(&self.eval(row)?) == Some(true))
    }
}

fn scalar_of(v: ColumnarValue) -> Result<ScalarValue> {
    match v {
        ColumnarValue::Scalar(s) => Ok(s),
        ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0),
    }
}

/// `l op r` for two values of the types DataFusion coerced them to.
/// A value of an integer type narrower than 64 bits, as i64 (`Some(None)`: its null).
fn narrow_int(v: &ScalarValue) -> Option<Option<i64>> {
    use ScalarValue as S;
    match v {
        S::Int32(x) => Some(x.map(i64::from)),
        S::Int16(x) => Some(x.map(i64::from)),
        S::Int8(x) => Some(x.map(i64::from)),
        S::UInt32(x) => Some(x.map(i64::from)),
        S::UInt16(x) => Some(x.map(i64::from)),
        S::UInt8(x) => Some(x.map(i64::from)),
        _ => None,
    }
}

/// The casts that cannot fail or lose more than a float's rounding (integers and floats to a wider
/// or floating type), done on the value; `None` for the rest, which go through Arrow's casts
/// (they build one-element arrays, which costs more than the arithmetic around them).
fn widen(v: &ScalarValue, t: &DataType) -> Option<ScalarValue> {
    use ScalarValue as S;
    if let Some(x) = narrow_int(v) {
        return match t {
            DataType::Int64 => Some(S::Int64(x)),
            DataType::Float64 => Some(S::Float64(x.map(|x| x as f64))),
            _ => None,
        };
    }
    match v {
        S::Int64(x) if *t == DataType::Float64 => Some(S::Float64(x.map(|x| x as f64))),
        S::Float32(x) if *t == DataType::Float64 => Some(S::Float64(x.map(f64::from))),
        _ if v.data_type() == *t => Some(v.clone()),
        _ => None,
    }
}

fn binary(l: &ScalarValue, op: Operator, r: &ScalarValue) -> Result<ScalarValue> {
    use Operator::*;
    match op {
        IsDistinctFrom | IsNotDistinctFrom => {
            let same = (l.is_null() && r.is_null()) || (!l.is_null() && !r.is_null() && l == r);
            return Ok(boolean(Some(same == (op == IsNotDistinctFrom))));
        }
        _ if l.is_null() || r.is_null() => {
            return Ok(match op {
                Eq | NotEq | Lt | LtEq | Gt | GtEq => boolean(None),
                _ => {
                    let t = if l.is_null() { r.data_type() } else { l.data_type() };
                    ScalarValue::try_from(&t)?
                }
            })
        }
        _ => {}
    }
    match (l, r) {
        (ScalarValue::Int64(Some(a)), ScalarValue::Int64(Some(b))) => {
            let (a, b) = (*a, *b);
            let overflow = || DataFusionError::Execution(format!("arithmetic overflow: {a} {op} {b}"));
            let int = |v: Option<i64>| v.map(|v| ScalarValue::Int64(Some(v))).ok_or_else(overflow);
            return match op {
                Plus => int(a.checked_add(b)),
                Minus => int(a.checked_sub(b)),
                Multiply => int(a.checked_mul(b)),
                Divide | Modulo if b == 0 => {
                    Err(DataFusionError::ArrowError(Box::new(datafusion::arrow::error::ArrowError::DivideByZero), None))
                }
                Divide => int(a.checked_div(b)),
                Modulo => int(a.checked_rem(b)),
                _ => Ok(compare(a.cmp(&b), op)),
            };
        }
        (ScalarValue::Float64(Some(a)), ScalarValue::Float64(Some(b))) => {
            let (a, b) = (*a, *b);
            let float = |v: f64| ScalarValue::Float64(Some(v));
            return Ok(match op {
                Plus => float(a + b),
                Minus => float(a - b),
                Multiply => float(a * b),
                Divide => float(a / b),
                Modulo => float(a % b),
                _ => compare(a.total_cmp(&b), op),
            });
        }
        // Comparisons of other integers of one type, as i64 (arithmetic keeps their type below).
        _ if matches!(op, Eq | NotEq | Lt | LtEq | Gt | GtEq) => {
            if let (Some(Some(a)), Some(Some(b))) = (narrow_int(l), narrow_int(r)) {
                if std::mem::discriminant(l) == std::mem::discriminant(r) {
                    return Ok(compare(a.cmp(&b), op));
                }
            }
        }
        _ => {}
    }
    match op {
        Plus => l.add_checked(r),
        Minus => l.sub_checked(r),
        Multiply => l.mul_checked(r),
        Divide => l.div(r),
        Modulo => l.rem(r),
        Eq | NotEq | Lt | LtEq | Gt | GtEq => match l.partial_cmp(r) {
            Some(ord) => Ok(compare(ord, op)),
            None => Err(DataFusionError::Execution(format!("cannot compare {l:?} with {r:?}"))),
        },
        _ => Err(DataFusionError::Internal(format!("operator {op} reached the row evaluator"))),
    }
}

fn compare(ord: std::cmp::Ordering, op: Operator) -> ScalarValue {
    use std::cmp::Ordering::*;
    use Operator::*;
    boolean(Some(match op {
        Eq => ord == Equal,
        NotEq => ord != Equal,
        Lt => ord == Less,
        LtEq => ord != Greater,
        Gt => ord == Greater,
        GtEq => ord != Less,
        _ => unreachable!("compare called with {op}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The casts done on the value give what Arrow's casts give.
    #[test]
    fn widening_casts_agree_with_arrow() {
        use ScalarValue as S;
        let values = [
            S::Int64(Some(-7)),
            S::Int64(Some(i64::MAX)),
            S::Int64(None),
            S::Int32(Some(i32::MIN)),
            S::Int16(Some(300)),
            S::Int8(Some(-1)),
            S::UInt32(Some(u32::MAX)),
            S::UInt16(Some(9)),
            S::UInt8(None),
            S::Float32(Some(0.1)),
            S::Float64(Some(2.5)),
            S::Utf8(Some("x".into())),
        ];
        let types = [DataType::Int64, DataType::Float64, DataType::Int32, DataType::Utf8];
        let mut done = 0;
        for v in &values {
            for t in &types {
                if let Some(fast) = widen(v, t) {
                    assert_eq!(fast, v.cast_to(t).unwrap(), "{v:?} as {t}");
                    done += 1;
                }
            }
        }
        assert!(done >= 20, "the fast path took {done} casts");
    }

    /// Comparisons of narrower integers give what comparing the values does.
    #[test]
    fn narrow_integer_comparisons_agree_with_the_values() {
        use ScalarValue as S;
        let pairs = [
            (S::Int32(Some(-3)), S::Int32(Some(2))),
            (S::Int32(Some(2)), S::Int32(Some(2))),
            (S::UInt8(Some(255)), S::UInt8(Some(1))),
            (S::Int16(Some(-1)), S::Int16(Some(-1))),
        ];
        for (l, r) in &pairs {
            for op in [Operator::Eq, Operator::NotEq, Operator::Lt, Operator::LtEq, Operator::Gt, Operator::GtEq] {
                let want = compare(l.partial_cmp(r).unwrap(), op);
                assert_eq!(binary(l, op, r).unwrap(), want, "{l:?} {op} {r:?}");
                let e = Eval::Binary(Box::new(Eval::Column(0)), op, Box::new(Eval::Literal(r.clone())));
                assert_eq!(e.eval(&vec![l.clone()]).unwrap(), want, "{l:?} {op} {r:?}");
            }
        }
        // Arithmetic keeps its type.
        assert_eq!(binary(&S::Int32(Some(2)), Operator::Plus, &S::Int32(Some(3))).unwrap(), S::Int32(Some(5)));
    }
}
