//! A row's values: the column types continuous queries carry, their nulls, and JSON text of a
//! value. Rows, their formats (`format`), expressions over them (`expr`) and their serdes (`row`)
//! all build on this.

use std::fmt::Write as _;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;

/// A row: one value per column of the plan node it comes from.
pub type Row = Vec<ScalarValue>;

/// Whether continuous queries can carry a column of type `t` (checked when a query is planned).
pub(crate) fn supported(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Null
            | DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Timestamp(_, _)
            | DataType::Date32
    )
}

/// A null of type `t`.
pub(crate) fn null_of(t: &DataType) -> ScalarValue {
    ScalarValue::try_from(t).unwrap_or(ScalarValue::Null)
}

/// The value of a JSON scalar as a column of type `t`.
pub(crate) fn from_json(v: &serde_json::Value, t: &DataType) -> Result<ScalarValue, String> {
    use serde_json::Value as J;
    let bad = || format!("{v} is not a {t}");
    let s = match (v, t) {
        (J::Null, t) => return Ok(null_of(t)),
        (J::Bool(b), DataType::Boolean) => ScalarValue::Boolean(Some(*b)),
        (J::Number(n), DataType::Float64 | DataType::Float32) => {
            ScalarValue::Float64(Some(n.as_f64().ok_or_else(bad)?)).cast_to(t).map_err(|_| bad())?
        }
        (J::Number(n), DataType::Timestamp(unit, tz)) => {
            let v = n.as_i64().ok_or_else(bad)?;
            match unit {
                TimeUnit::Second => ScalarValue::TimestampSecond(Some(v), tz.clone()),
                TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(Some(v), tz.clone()),
                TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(v), tz.clone()),
                TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(Some(v), tz.clone()),
            }
        }
        (J::Number(n), t) if t.is_integer() => {
            let v = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => ScalarValue::Int64(Some(i)),
                (None, Some(u)) => ScalarValue::UInt64(Some(u)),
                _ => return Err(bad()),
            };
            v.cast_to(t).map_err(|_| bad())?
        }
        (J::String(s), DataType::Utf8) => ScalarValue::Utf8(Some(s.clone())),
        (J::String(s), DataType::Utf8View) => ScalarValue::Utf8View(Some(s.clone())),
        (J::String(s), DataType::LargeUtf8) => ScalarValue::LargeUtf8(Some(s.clone())),
        // Text for other types (a timestamp, a date, a number in quotes) is cast as SQL casts it.
        (J::String(s), t) => ScalarValue::try_from_string(s.clone(), t).map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    Ok(s)
}

/// Writes `v` as JSON (timestamps as milliseconds since the epoch, dates as text).
pub(crate) fn write_json(out: &mut String, v: &ScalarValue) {
    let text = |out: &mut String, s: &str| {
        // A str always serializes.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    };
    if v.is_null() {
        out.push_str("null");
        return;
    }
    match v {
        ScalarValue::Boolean(Some(b)) => out.push_str(if *b { "true" } else { "false" }),
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => text(out, s),
        ScalarValue::Float64(Some(f)) => write_float(out, *f),
        ScalarValue::Float32(Some(f)) => write_float(out, f64::from(*f)),
        ScalarValue::TimestampMillisecond(Some(ms), _) => out.push_str(itoa::Buffer::new().format(*ms)),
        ScalarValue::TimestampSecond(Some(s), _) => {
            let _ = write!(out, "{}", s.saturating_mul(1000));
        }
        ScalarValue::TimestampMicrosecond(Some(us), _) => {
            let _ = write!(out, "{}", us / 1000);
        }
        ScalarValue::TimestampNanosecond(Some(ns), _) => {
            let _ = write!(out, "{}", ns / 1_000_000);
        }
        ScalarValue::Int64(Some(i)) => out.push_str(itoa::Buffer::new().format(*i)),
        ScalarValue::Int32(Some(i)) => out.push_str(itoa::Buffer::new().format(*i)),
        v if v.data_type().is_integer() => {
            let _ = write!(out, "{v}");
        }
        v => text(out, &v.to_string()),
    }
}

fn write_float(out: &mut String, f: f64) {
    if f.is_finite() {
        // Shortest round-trip digits (`2.0`, `0.1`, `1e16`), as serde_json writes them.
        out.push_str(ryu::Buffer::new().format_finite(f));
    } else {
        out.push_str("null");
    }
}
