//! Values as Kafka Connect writes and reads them as text: Java's `Float.toString` and
//! `Double.toString`, `BigDecimal` (Connect's `Decimal` logical type) and its text, and
//! `Values.parseString`, which `InsertHeader` uses to type its literal.
//!
//! Decimals are kept as an `i128` unscaled value: 38 digits, more than any decimal column a
//! connector meets; a longer one is refused rather than rounded.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::date_format::{JavaDateFormat, MILLIS_PER_DAY};
use crate::data::{Schema, SchemaRef, Type, Value};
use crate::error::{ConnectError, Result};

/// A double as Java's `Double.toString` prints it: plain between 10^-3 and 10^7 with at least
/// one fraction digit (`100.0`), computerized scientific notation otherwise (`1.0E10`).
pub(crate) fn java_double(v: f64) -> String {
    java_floating(v, format!("{v}"), format!("{v:e}"))
}

/// A float as Java's `Float.toString` prints it (the shortest digits of the `f32`).
pub(crate) fn java_float(v: f32) -> String {
    java_floating(f64::from(v), format!("{v}"), format!("{v:e}"))
}

fn java_floating(v: f64, plain: String, scientific: String) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let magnitude = v.abs();
    if magnitude == 0.0 || (1e-3..1e7).contains(&magnitude) {
        return if plain.contains('.') { plain } else { format!("{plain}.0") };
    }
    let (mantissa, exponent) = scientific.split_once('e').expect("Rust's {:e} has an exponent");
    let mantissa = if mantissa.contains('.') { mantissa.to_string() } else { format!("{mantissa}.0") };
    format!("{mantissa}E{exponent}")
}

/// A decimal number: `unscaled × 10^-scale` (Java's `BigDecimal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decimal {
    /// The unscaled value.
    pub(crate) unscaled: i128,
    /// Digits after the point (negative: zeros before it).
    pub(crate) scale: i32,
}

impl Decimal {
    /// A decimal of Connect's `Decimal` logical type: big-endian two's-complement bytes.
    pub(crate) fn from_bytes(bytes: &[u8], scale: i32) -> Result<Decimal> {
        if bytes.is_empty() {
            return Err(ConnectError::data("Zero length BigInteger in a Decimal"));
        }
        if bytes.len() > 16 {
            return Err(ConnectError::data(format!(
                "Decimal of {} bytes is longer than the 16 supported",
                bytes.len()
            )));
        }
        let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0x00 };
        let mut full = [fill; 16];
        full[16 - bytes.len()..].copy_from_slice(bytes);
        Ok(Decimal { unscaled: i128::from_be_bytes(full), scale })
    }

    /// The unscaled value as Java's `BigInteger.toByteArray` gives it: the fewest bytes that
    /// keep the sign.
    pub(crate) fn to_bytes(self) -> Bytes {
        let all = self.unscaled.to_be_bytes();
        let mut start = 0;
        while start < 15 {
            let (byte, next) = (all[start], all[start + 1]);
            let redundant = (byte == 0x00 && next & 0x80 == 0) || (byte == 0xff && next & 0x80 != 0);
            if !redundant {
                break;
            }
            start += 1;
        }
        Bytes::copy_from_slice(&all[start..])
    }

    /// Parses Java's `new BigDecimal(String)` syntax: a sign, digits with an optional point, an
    /// optional exponent. `None` when it is not a number or does not fit.
    pub(crate) fn parse(text: &str) -> Option<Decimal> {
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        };
        let (negative, digits) = match mantissa.as_bytes().first()? {
            b'-' => (true, &mantissa[1..]),
            b'+' => (false, &mantissa[1..]),
            _ => (false, mantissa),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        if !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut unscaled: i128 = 0;
        for b in whole.bytes().chain(fraction.bytes()) {
            unscaled = unscaled.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        let exponent: i64 = match exponent {
            None => 0,
            Some(e) if e.is_empty() || e == "+" || e == "-" => return None,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                e.parse().ok()?
            }
        };
        let scale = i32::try_from(i64::try_from(fraction.len()).ok()?.checked_sub(exponent)?).ok()?;
        Some(Decimal { unscaled: if negative { -unscaled } else { unscaled }, scale })
    }

    /// The integer value when there is no fraction (Java's `setScale(0, CEILING)` equal to
    /// `setScale(0, FLOOR)`), when it fits.
    pub(crate) fn exact_integer(self) -> Option<i128> {
        if self.scale <= 0 {
            let factor = 10_i128.checked_pow(u32::try_from(-i64::from(self.scale)).ok()?)?;
            return self.unscaled.checked_mul(factor);
        }
        match 10_i128.checked_pow(self.scale as u32) {
            Some(factor) if self.unscaled % factor == 0 => Some(self.unscaled / factor),
            Some(_) => None,
            // More digits after the point than an i128 holds: only zero is whole.
            None => (self.unscaled == 0).then_some(0),
        }
    }

    /// Java's `BigDecimal.longValue`: the fraction discarded, then the low 64 bits.
    pub(crate) fn long_value(self) -> i64 {
        let truncated = if self.scale <= 0 {
            let factor = 10_i128.wrapping_pow((-i64::from(self.scale)).min(u32::MAX.into()) as u32);
            self.unscaled.wrapping_mul(factor)
        } else {
            match 10_i128.checked_pow(self.scale as u32) {
                Some(factor) => self.unscaled / factor,
                None => 0,
            }
        };
        truncated as i64
    }

    /// Java's `BigDecimal.doubleValue` (the nearest double).
    pub(crate) fn double_value(self) -> f64 {
        format!("{}e{}", self.unscaled, -i64::from(self.scale)).parse().unwrap_or(f64::NAN)
    }

    /// The same number with `scale` digits after the point, when that is exact.
    pub(crate) fn rescale(self, scale: i32) -> Option<Decimal> {
        let diff = i64::from(scale) - i64::from(self.scale);
        let unscaled = if diff >= 0 {
            self.unscaled.checked_mul(10_i128.checked_pow(u32::try_from(diff).ok()?)?)?
        } else {
            let factor = 10_i128.checked_pow(u32::try_from(-diff).ok()?)?;
            if self.unscaled % factor != 0 {
                return None;
            }
            self.unscaled / factor
        };
        Some(Decimal { unscaled, scale })
    }
}

/// Java's `BigDecimal.toString`: plain notation when the scale is not negative and the
/// adjusted exponent is at least -6, scientific (`1.23E+5`) otherwise.
impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.unscaled.unsigned_abs().to_string();
        let sign = if self.unscaled < 0 { "-" } else { "" };
        let scale = i64::from(self.scale);
        let adjusted = -scale + (digits.len() as i64 - 1);
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        if scale > 0 && adjusted >= -6 {
            let scale = scale as usize;
            return if digits.len() > scale {
                let (whole, fraction) = digits.split_at(digits.len() - scale);
                write!(f, "{sign}{whole}.{fraction}")
            } else {
                write!(f, "{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
            };
        }
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let exponent_sign = if adjusted >= 0 { "+" } else { "" };
        write!(f, "{sign}{first}{point}E{exponent_sign}{adjusted}")
    }
}

/// The ISO 8601 formats of Connect's `Values`.
pub(crate) const ISO_DATE: &str = "yyyy-MM-dd";
/// The ISO 8601 time format of Connect's `Values`.
pub(crate) const ISO_TIME: &str = "HH:mm:ss.SSS'Z'";
/// The ISO 8601 timestamp format of Connect's `Values`.
pub(crate) const ISO_TIMESTAMP: &str = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'";

/// Text of an instant as Connect's `Values.dateFormatFor` chooses its format (by the instant,
/// not the schema): a time of day before the end of the first day, a date at midnight, a
/// timestamp otherwise. In UTC (Kafka uses the worker's zone).
pub(crate) fn iso_text(epoch_ms: i64) -> String {
    let pattern = if epoch_ms < MILLIS_PER_DAY {
        ISO_TIME
    } else if epoch_ms % MILLIS_PER_DAY == 0 {
        ISO_DATE
    } else {
        ISO_TIMESTAMP
    };
    JavaDateFormat::new(pattern).expect("the ISO patterns compile").format(epoch_ms)
}

/// A string typed as Connect's `Values.parseString` types it: `null`, booleans, the smallest
/// integer type that holds a number, `float`/`double` for other numbers (a `Decimal` past
/// those), ISO 8601 dates, times and timestamps, and a string for anything else.
///
/// Kafka also parses `[...]` arrays and `{...}` maps; those stay strings here. As in Kafka,
/// only the first token (up to one of `: , [ ] { } "`) is looked at for a number, so `12:30`
/// is the `int8` 12.
pub(crate) fn parse_literal(text: &str) -> (Option<SchemaRef>, Value) {
    if text.is_empty() {
        return (Some(Schema::primitive(Type::String)), Value::String(String::new()));
    }
    let tokens = tokenize(text);
    if tokens.len() == 1 {
        match tokens[0].trim() {
            "null" => return (None, Value::Null),
            "true" => return (Some(Schema::primitive(Type::Boolean)), Value::Boolean(true)),
            "false" => return (Some(Schema::primitive(Type::Boolean)), Value::Boolean(false)),
            _ => {}
        }
    }
    let string = || (Some(Schema::primitive(Type::String)), Value::String(text.to_string()));
    let first = tokens[0];
    if first.trim().is_empty() {
        return (Some(Schema::primitive(Type::String)), Value::String(first.to_string()));
    }
    let token = first.trim();
    let lead = token.chars().next().expect("a non-blank token");
    if lead.is_ascii_digit() {
        // A time or timestamp is split at its colons: try the token and the four after it.
        if tokens.len() >= 5 {
            let joined = format!("{token}{}", tokens[1..5].concat());
            if let Some(temporal) = parse_temporal(&joined) {
                return temporal;
            }
        }
        if let Some(temporal) = parse_temporal(token) {
            return temporal;
        }
    }
    if lead.is_ascii_digit() || lead == '+' || lead == '-' {
        if let Some(number) = parse_number(token) {
            return number;
        }
    }
    string()
}

/// `Values.Parser`'s tokens: runs of text, and each unescaped delimiter alone.
fn tokenize(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            '\\' => escaped = !escaped,
            ':' | ',' | '{' | '}' | '[' | ']' | '"' if !escaped => {
                if start < i {
                    tokens.push(&text[start..i]);
                }
                tokens.push(&text[i..i + 1]);
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    if start < text.len() {
        tokens.push(&text[start..]);
    }
    tokens
}

fn parse_temporal(token: &str) -> Option<(Option<SchemaRef>, Value)> {
    let token = token.replace("\\:", ":");
    let (schema, pattern) = match token.chars().count() {
        13 => (Schema::time(), ISO_TIME),
        24 => (Schema::timestamp(), ISO_TIMESTAMP),
        10 => (Schema::date(), ISO_DATE),
        _ => return None,
    };
    let (epoch_ms, _) = JavaDateFormat::new(pattern).expect("the ISO patterns compile").parse_prefix(&token)?;
    let value = match pattern {
        ISO_TIMESTAMP => Value::Int64(epoch_ms),
        ISO_DATE => Value::Int32(i32::try_from(epoch_ms.div_euclid(MILLIS_PER_DAY)).ok()?),
        _ => Value::Int32(i32::try_from(epoch_ms).ok()?),
    };
    Some((Some(Arc::new(schema)), value))
}

fn parse_number(token: &str) -> Option<(Option<SchemaRef>, Value)> {
    let decimal = Decimal::parse(token)?;
    if let Some(integer) = decimal.exact_integer().and_then(|i| i64::try_from(i).ok()) {
        let (ty, value) = if let Ok(v) = i8::try_from(integer) {
            (Type::Int8, Value::Int8(v))
        } else if let Ok(v) = i16::try_from(integer) {
            (Type::Int16, Value::Int16(v))
        } else if let Ok(v) = i32::try_from(integer) {
            (Type::Int32, Value::Int32(v))
        } else {
            (Type::Int64, Value::Int64(integer))
        };
        return Some((Some(Schema::primitive(ty)), value));
    }
    let double = decimal.double_value();
    let float = double as f32;
    if decimal.scale != 0 && float.is_finite() {
        let float: f32 = token.parse().unwrap_or(float);
        return Some((Some(Schema::primitive(Type::Float32)), Value::Float32(float)));
    }
    if decimal.scale != 0 && double.is_finite() {
        return Some((Some(Schema::primitive(Type::Float64)), Value::Float64(double)));
    }
    Some((Some(Arc::new(Schema::decimal(decimal.scale))), Value::Bytes(decimal.to_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floating_text_is_javas() {
        assert_eq!(java_double(1.0), "1.0");
        assert_eq!(java_double(-0.0), "-0.0");
        assert_eq!(java_double(123.456), "123.456");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(1.5e-4), "1.5E-4");
        assert_eq!(java_double(0.001), "0.001");
        assert_eq!(java_float(0.1), "0.1");
        assert_eq!(java_float(3.4e38), "3.4E38");
        assert_eq!(java_double(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn decimals_round_trip_bytes_and_text() {
        for (unscaled, scale, text) in [
            (12345, 2, "123.45"),
            (-5, 3, "-0.005"),
            (1, 8, "1E-8"),
            (123, -2, "1.23E+4"),
            (0, 0, "0"),
            (-129, 0, "-129"),
        ] {
            let d = Decimal { unscaled, scale };
            assert_eq!(d.to_string(), text);
            assert_eq!(Decimal::from_bytes(&d.to_bytes(), scale).unwrap(), d);
        }
        assert_eq!(Decimal { unscaled: -129, scale: 0 }.to_bytes().as_ref(), [0xff, 0x7f]);
        assert_eq!(Decimal { unscaled: 128, scale: 0 }.to_bytes().as_ref(), [0x00, 0x80]);
        assert_eq!(Decimal::parse("1.50"), Some(Decimal { unscaled: 150, scale: 2 }));
        assert_eq!(Decimal::parse("-1e3"), Some(Decimal { unscaled: -1, scale: -3 }));
        assert_eq!(Decimal::parse(".5"), Some(Decimal { unscaled: 5, scale: 1 }));
        assert_eq!(Decimal::parse("1.2.3"), None);
        assert_eq!(Decimal::parse("e5"), None);
        assert_eq!(Decimal::parse("1e-9223372036854775808"), None);
        assert_eq!(Decimal::parse("123456789012345678901234567890123456789012"), None);
        assert_eq!(Decimal { unscaled: -1999, scale: 3 }.long_value(), -1);
        assert_eq!(Decimal { unscaled: 150, scale: 2 }.rescale(1), Some(Decimal { unscaled: 15, scale: 1 }));
        assert_eq!(Decimal { unscaled: 155, scale: 2 }.rescale(1), None);
    }

    #[test]
    fn literals_are_typed_as_connect_types_them() {
        let ty = |text: &str| {
            let (schema, value) = parse_literal(text);
            (schema.map(|s| (s.ty, s.name.clone())), value)
        };
        assert_eq!(ty("42"), (Some((Type::Int8, None)), Value::Int8(42)));
        assert_eq!(ty("1000"), (Some((Type::Int16, None)), Value::Int16(1000)));
        assert_eq!(ty("1.0"), (Some((Type::Int8, None)), Value::Int8(1)));
        assert_eq!(ty("-3000000000"), (Some((Type::Int64, None)), Value::Int64(-3_000_000_000)));
        assert_eq!(ty("1.5"), (Some((Type::Float32, None)), Value::Float32(1.5)));
        assert_eq!(ty("true"), (Some((Type::Boolean, None)), Value::Boolean(true)));
        assert_eq!(ty("null"), (None, Value::Null));
        assert_eq!(ty("hello, world"), (Some((Type::String, None)), Value::String("hello, world".into())));
        assert_eq!(ty("10 apples"), (Some((Type::String, None)), Value::String("10 apples".into())));
        assert_eq!(
            ty("2024-02-29"),
            (Some((Type::Int32, Some(crate::data::logical::DATE.into()))), Value::Int32(19782))
        );
        assert_eq!(
            ty("2024-02-29T12:00:00.000Z"),
            (Some((Type::Int64, Some(crate::data::logical::TIMESTAMP.into()))), Value::Int64(1_709_208_000_000))
        );
        assert_eq!(
            ty("00:00:01.500Z"),
            (Some((Type::Int32, Some(crate::data::logical::TIME.into()))), Value::Int32(1500))
        );
        assert_eq!(ty("12:30"), (Some((Type::Int8, None)), Value::Int8(12)));
    }
}
