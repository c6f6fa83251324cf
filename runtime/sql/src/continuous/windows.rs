//! Window functions in `GROUP BY`: `tumble`, `hop` and `session`, and reading their durations.

use super::*;

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

pub(super) fn function_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::ScalarFunction(f) => Some(f.func.name()),
        Expr::Alias(a) => function_name(&a.expr),
        _ => None,
    }
}

pub(super) fn is_window(e: &Expr) -> bool {
    matches!(function_name(e), Some("tumble" | "hop" | "session"))
}

/// A duration from an interval literal.
pub(super) fn duration_of(e: &Expr, what: &str) -> Result<Duration> {
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
pub(super) enum Windows {
    Time(TimeWindows),
    Session(SessionWindows),
}

/// The expression under an alias (`e AS name`), or the expression itself.
pub(super) fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}

pub(super) fn windows_of(e: &Expr) -> Result<Windows> {
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
