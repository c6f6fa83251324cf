//! `Cast$Key` and `Cast$Value`: casts fields of a struct or map, or the whole key or value, to
//! another primitive type (`spec=age:int32,score:float64` or `spec=string`).
//!
//! Numbers narrow as Java's casts do (an `int64` wraps into an `int8`, a `float64` saturates into
//! an `int32`), strings parse as Java's `Integer.parseInt` and `Double.parseDouble`, bytes only
//! become strings (base64), and `Date`/`Time`/`Timestamp` become ISO 8601 text. One difference
//! from Kafka: a whole-value cast of a logical type (`Timestamp` to `int64`) drops the logical
//! name, where Kafka copies it onto a schema of the wrong type that converters then refuse.

use base64::Engine as _;

use super::date_format::MILLIS_PER_DAY;
use super::literal::{iso_text, java_double, java_float, Decimal};
use super::operand::{
    build_struct, copy_basics, field_value, map_get, map_put, parse, require_map, require_struct, struct_with_basics,
    SchemaCache, Side,
};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance};
use crate::data::{logical, Schema, SchemaRef, Type, Value};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// `Cast$Key`.
pub(crate) const KEY: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.Cast$Key",
    aliases: &["Cast$Key"],
    config_def,
    make: make_key,
};

/// `Cast$Value`.
pub(crate) const VALUE: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.Cast$Value",
    aliases: &["Cast$Value"],
    config_def,
    make: make_value,
};

const SPEC: &str = "spec";
const REPLACE_NULL_WITH_DEFAULT: &str = "replace.null.with.default";
const PURPOSE: &str = "cast types";
const INPUT_TYPES: &str = "[INT8, INT16, INT32, INT64, FLOAT32, FLOAT64, BOOLEAN, STRING, BYTES]";
const OUTPUT_TYPES: &str = "[INT8, INT16, INT32, INT64, FLOAT32, FLOAT64, BOOLEAN, STRING]";

fn config_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::required(
            SPEC,
            ConfigType::List,
            Importance::High,
            "List of fields and the type to cast them to of the form field1:type,field2:type to cast fields of Maps or \
             Structs. A single type to cast the entire value. Valid types are int8, int16, int32, int64, float32, \
             float64, boolean, and string. Note that binary fields can only be cast to string.",
        ))
        .define(ConfigKey::optional(
            REPLACE_NULL_WITH_DEFAULT,
            ConfigType::Boolean,
            Some("true"),
            Importance::Medium,
            "Whether to replace fields that have a default value and that are null to the default value. When set to \
             true, the default value is used, otherwise null is used.",
        ))
}

fn make_key(config: &Config) -> Result<Box<dyn Transformation>> {
    Cast::new(config, Side::Key).map(|t| Box::new(t) as Box<dyn Transformation>)
}

fn make_value(config: &Config) -> Result<Box<dyn Transformation>> {
    Cast::new(config, Side::Value).map(|t| Box::new(t) as Box<dyn Transformation>)
}

/// What to cast.
#[derive(Debug, Clone, PartialEq)]
enum Casts {
    /// The whole key or value to one type.
    Whole(Type),
    /// Fields by name, in the order given.
    Fields(Vec<(String, Type)>),
}

#[derive(Debug)]
struct Cast {
    side: Side,
    casts: Casts,
    replace_null_with_default: bool,
    schemas: SchemaCache,
}

impl Cast {
    fn new(config: &Config, side: Side) -> Result<Cast> {
        let config = parse(&config_def(), config)?;
        let raw = config.get(SPEC).unwrap_or("").to_string();
        let casts = parse_spec(&config.list(SPEC)).map_err(|reason| ConnectError::config(SPEC, raw, reason))?;
        Ok(Cast {
            side,
            casts,
            replace_null_with_default: config.boolean(REPLACE_NULL_WITH_DEFAULT, true)?,
            schemas: SchemaCache::default(),
        })
    }

    fn target_of(&self, field: &str) -> Option<Type> {
        match &self.casts {
            Casts::Whole(_) => None,
            Casts::Fields(fields) => fields.iter().find(|(name, _)| name == field).map(|(_, ty)| *ty),
        }
    }

    fn apply_schemaless(&self, record: ConnectRecord) -> Result<ConnectRecord> {
        let value = self.side.value(&record);
        let updated = match &self.casts {
            Casts::Whole(ty) => cast_value(None, value, *ty)?,
            Casts::Fields(fields) => {
                let entries = require_map(value, PURPOSE)?;
                let mut updated = entries.to_vec();
                for (name, ty) in fields {
                    let cast = cast_value(None, map_get(entries, name).unwrap_or(&Value::Null), *ty)?;
                    map_put(&mut updated, name, cast);
                }
                Value::Map(updated)
            }
        };
        Ok(self.side.replace(record, None, updated))
    }

    fn apply_with_schema(&self, record: ConnectRecord, schema: SchemaRef) -> Result<ConnectRecord> {
        let updated_schema = self.schemas.get_or_build(&schema, |s| self.build_schema(s))?;
        let value = self.side.value(&record);
        let updated = match &self.casts {
            Casts::Whole(ty) => cast_value(Some(&schema), value, *ty)?,
            Casts::Fields(_) => {
                let value = require_struct(value, PURPOSE)?;
                let mut values = Vec::with_capacity(value.schema.fields.len());
                for field in &value.schema.fields {
                    let original = field_value(value, field, self.replace_null_with_default);
                    values.push(match self.target_of(&field.name) {
                        Some(ty) => cast_value(Some(&field.schema), &original, ty)?,
                        None => original,
                    });
                }
                Value::Struct(build_struct(&updated_schema, values)?)
            }
        };
        Ok(self.side.replace(record, Some(updated_schema), updated))
    }

    fn build_schema(&self, schema: &Schema) -> Result<Schema> {
        let mut updated = match &self.casts {
            Casts::Whole(ty) if is_logical(schema) => Schema::of(*ty),
            Casts::Whole(ty) => copy_basics(schema, *ty),
            Casts::Fields(_) => {
                let mut fields = Vec::with_capacity(schema.fields.len());
                for field in &schema.fields {
                    let field_schema = match self.target_of(&field.name) {
                        Some(ty) => {
                            let mut cast = Schema::of(ty);
                            cast.optional = field.schema.optional;
                            if let Some(default) = &field.schema.default {
                                cast.default = Some(cast_value(Some(&field.schema), default, ty)?);
                            }
                            SchemaRef::new(cast)
                        }
                        None => field.schema.clone(),
                    };
                    fields.push((field.name.clone(), field_schema));
                }
                struct_with_basics(schema, fields)?
            }
        };
        updated.optional = schema.optional;
        if let Some(default) = &schema.default {
            updated.default = Some(cast_value(Some(schema), default, updated.ty)?);
        }
        Ok(updated)
    }
}

impl Transformation for Cast {
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        if self.side.value(&record).is_null() {
            return Ok(Some(record));
        }
        match self.side.schema(&record).cloned() {
            None => self.apply_schemaless(record).map(Some),
            Some(schema) => self.apply_with_schema(record, schema).map(Some),
        }
    }
}

fn is_logical(schema: &Schema) -> bool {
    [logical::DECIMAL, logical::DATE, logical::TIME, logical::TIMESTAMP].iter().any(|name| schema.is_logical(name))
}

/// Parses `spec` as Kafka's `Cast.parseFieldTypes` does.
fn parse_spec(mappings: &[String]) -> std::result::Result<Casts, String> {
    if mappings.is_empty() {
        return Err("Must specify at least one field to cast.".into());
    }
    let mut fields: Vec<(String, Type)> = Vec::new();
    let mut whole = None;
    for mapping in mappings {
        // Java's `String.split` drops trailing empty parts.
        let mut parts: Vec<&str> = mapping.split(':').collect();
        while parts.last() == Some(&"") {
            parts.pop();
        }
        match parts[..] {
            [ty] => whole = Some(output_type(ty)?),
            [name, ty] => {
                let ty = output_type(ty)?;
                let name = name.trim().to_string();
                fields.retain(|(other, _)| *other != name);
                fields.push((name, ty));
            }
            _ => return Err(format!("Invalid rename mapping: {mapping}")),
        }
    }
    match whole {
        Some(_) if mappings.len() > 1 => Err("Cast transformations that specify a type to cast the entire value to \
                                              may only specify a single cast in their spec"
            .into()),
        Some(ty) => Ok(Casts::Whole(ty)),
        None => Ok(Casts::Fields(fields)),
    }
}

fn output_type(name: &str) -> std::result::Result<Type, String> {
    let name = name.trim();
    let upper = name.to_ascii_uppercase();
    let ty = Type::ALL
        .into_iter()
        .find(|t| t.connect_name() == upper)
        .ok_or_else(|| format!("Invalid type found in casting spec: {name}"))?;
    if !ty.is_primitive() || ty == Type::Bytes {
        return Err(format!(
            "Cast transformation does not support casting to {ty}; supported types are {OUTPUT_TYPES}"
        ));
    }
    Ok(ty)
}

/// A value as Java sees it when casting: its boxed class.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    Integer(i64),
    Float32(f32),
    Float64(f64),
    Boolean(bool),
    Text(&'a str),
    Bytes(&'a [u8]),
    Decimal(Decimal),
    /// A `Date`, `Time` or `Timestamp` (milliseconds since the epoch), when cast to a string.
    Instant(i64),
}

/// Casts `value` (of `schema`, or schemaless) to `target` (Kafka's `castValueToType`).
fn cast_value(schema: Option<&Schema>, value: &Value, target: Type) -> Result<Value> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let ty = schema.map_or_else(|| value.type_of().expect("not null"), |s| s.ty);
    if !ty.is_primitive() {
        return Err(ConnectError::data(format!(
            "Cast transformation does not support casting from {ty}; supported types are {INPUT_TYPES}"
        )));
    }
    let source = source_of(schema, value, target)?;
    let out_of_range = || ConnectError::data(format!("Value ({value}) was out of range for requested data type"));
    let unexpected = || ConnectError::data(format!("Unexpected type in Cast transformation: {}", value.kind()));
    let integer = |source: Source<'_>| -> Result<i64> {
        Ok(match source {
            Source::Integer(v) => v,
            Source::Float32(v) => v as i64,
            Source::Float64(v) => v as i64,
            Source::Boolean(v) => i64::from(v),
            Source::Decimal(d) => d.long_value(),
            Source::Text(_) | Source::Bytes(_) | Source::Instant(_) => return Err(unexpected()),
        })
    };
    // Java narrows a float to `int`, `short` and `byte` through `int` (saturating there).
    let narrow = |source: Source<'_>| -> Result<i64> {
        match source {
            Source::Float32(v) => Ok(i64::from(v as i32)),
            Source::Float64(v) => Ok(i64::from(v as i32)),
            other => integer(other),
        }
    };
    let double = |source: Source<'_>| -> Result<f64> {
        Ok(match source {
            Source::Integer(v) => v as f64,
            Source::Float32(v) => f64::from(v),
            Source::Float64(v) => v,
            Source::Boolean(v) => f64::from(u8::from(v)),
            Source::Decimal(d) => d.double_value(),
            Source::Text(_) | Source::Bytes(_) | Source::Instant(_) => return Err(unexpected()),
        })
    };
    Ok(match (target, source) {
        (Type::Int8, Source::Text(s)) => Value::Int8(s.parse().map_err(|_| out_of_range())?),
        (Type::Int16, Source::Text(s)) => Value::Int16(s.parse().map_err(|_| out_of_range())?),
        (Type::Int32, Source::Text(s)) => Value::Int32(s.parse().map_err(|_| out_of_range())?),
        (Type::Int64, Source::Text(s)) => Value::Int64(s.parse().map_err(|_| out_of_range())?),
        (Type::Float32, Source::Text(s)) => Value::Float32(java_parse_double(s).ok_or_else(out_of_range)? as f32),
        (Type::Float64, Source::Text(s)) => Value::Float64(java_parse_double(s).ok_or_else(out_of_range)?),
        (Type::Boolean, Source::Text(s)) => Value::Boolean(s.eq_ignore_ascii_case("true")),
        (Type::Int8, source) => Value::Int8(narrow(source)? as i8),
        (Type::Int16, source) => Value::Int16(narrow(source)? as i16),
        (Type::Int32, source) => Value::Int32(narrow(source)? as i32),
        (Type::Int64, source) => Value::Int64(integer(source)?),
        (Type::Float32, Source::Float32(v)) => Value::Float32(v),
        (Type::Float32, Source::Integer(v)) => Value::Float32(v as f32),
        (Type::Float32, source) => Value::Float32(double(source)? as f32),
        (Type::Float64, source) => Value::Float64(double(source)?),
        (Type::Boolean, Source::Boolean(v)) => Value::Boolean(v),
        (Type::Boolean, source) => Value::Boolean(integer(source)? != 0),
        (Type::String, source) => Value::String(match source {
            Source::Integer(v) => v.to_string(),
            Source::Float32(v) => java_float(v),
            Source::Float64(v) => java_double(v),
            Source::Boolean(v) => v.to_string(),
            Source::Text(s) => s.to_string(),
            Source::Bytes(b) => base64::engine::general_purpose::STANDARD.encode(b),
            Source::Decimal(d) => d.to_string(),
            Source::Instant(ms) => iso_text(ms),
        }),
        (other, _) => return Err(ConnectError::data(format!("{other} is not supported in the Cast transformation."))),
    })
}

/// The Java object a value of `schema` is: decimals as `BigDecimal`, and dates, times and
/// timestamps as `java.util.Date` when they become text (their underlying number otherwise).
fn source_of<'a>(schema: Option<&Schema>, value: &'a Value, target: Type) -> Result<Source<'a>> {
    let logical = schema.and_then(|s| s.name.as_deref());
    Ok(match (logical, value) {
        (Some(logical::DECIMAL), Value::Bytes(b)) => {
            let scale = schema.and_then(|s| s.parameters.get(logical::DECIMAL_SCALE)).and_then(|s| s.parse().ok());
            let scale =
                scale.ok_or_else(|| ConnectError::data("Invalid Decimal schema: scale parameter not found."))?;
            Source::Decimal(Decimal::from_bytes(b, scale)?)
        }
        (Some(logical::DATE), Value::Int32(days)) if target == Type::String => {
            Source::Instant(i64::from(*days) * MILLIS_PER_DAY)
        }
        (Some(logical::TIME), Value::Int32(ms)) if target == Type::String => Source::Instant(i64::from(*ms)),
        (Some(logical::TIMESTAMP), Value::Int64(ms)) if target == Type::String => Source::Instant(*ms),
        (_, Value::Int8(v)) => Source::Integer((*v).into()),
        (_, Value::Int16(v)) => Source::Integer((*v).into()),
        (_, Value::Int32(v)) => Source::Integer((*v).into()),
        (_, Value::Int64(v)) => Source::Integer(*v),
        (_, Value::Float32(v)) => Source::Float32(*v),
        (_, Value::Float64(v)) => Source::Float64(*v),
        (_, Value::Boolean(v)) => Source::Boolean(*v),
        (_, Value::String(s)) => Source::Text(s),
        (_, Value::Bytes(b)) => Source::Bytes(b),
        (_, other) => {
            return Err(ConnectError::data(format!("Unexpected type in Cast transformation: {}", other.kind())));
        }
    })
}

/// Java's `Double.parseDouble`: surrounding blanks, a sign, `NaN`, `Infinity`, a decimal with
/// an exponent, and an `f` or `d` suffix (hexadecimal floats are not read).
pub(crate) fn java_parse_double(text: &str) -> Option<f64> {
    let text = text.trim_matches(|c: char| c <= ' ');
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = match body {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        _ => {
            let body = body.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(body);
            let (mantissa, exponent) = match body.find(['e', 'E']) {
                Some(i) => (&body[..i], Some(&body[i + 1..])),
                None => (body, None),
            };
            let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
            let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
            let exponent_ok = exponent.is_none_or(|e| {
                let e = e.strip_prefix(['+', '-']).unwrap_or(e);
                !e.is_empty() && digits(e)
            });
            if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) || !exponent_ok {
                return None;
            }
            body.parse().ok()?
        }
    };
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_as_kafka_parses_them() {
        assert_eq!(parse_spec(&["int8".into()]), Ok(Casts::Whole(Type::Int8)));
        assert_eq!(
            parse_spec(&["a:int32".into(), "b : FLOAT64".into()]),
            Ok(Casts::Fields(vec![("a".into(), Type::Int32), ("b".into(), Type::Float64)]))
        );
        assert_eq!(parse_spec(&[]).unwrap_err(), "Must specify at least one field to cast.");
        assert_eq!(parse_spec(&["a:float".into()]).unwrap_err(), "Invalid type found in casting spec: float");
        assert!(parse_spec(&["bytes".into()])
            .unwrap_err()
            .starts_with("Cast transformation does not support casting to BYTES"));
        assert!(parse_spec(&["int8".into(), "a:int16".into()]).unwrap_err().contains("only specify a single cast"));
        assert_eq!(parse_spec(&["a:b:c".into()]).unwrap_err(), "Invalid rename mapping: a:b:c");
    }

    #[test]
    fn casts_narrow_as_java_does() {
        let cast = |v: Value, ty| cast_value(None, &v, ty).unwrap();
        assert_eq!(cast(Value::Int64(300), Type::Int8), Value::Int8(44));
        assert_eq!(cast(Value::Float64(1e20), Type::Int32), Value::Int32(i32::MAX));
        assert_eq!(cast(Value::Float64(1e10), Type::Int8), Value::Int8(-1));
        assert_eq!(cast(Value::Float64(0.5), Type::Boolean), Value::Boolean(false));
        assert_eq!(cast(Value::String("TRUE".into()), Type::Boolean), Value::Boolean(true));
        assert_eq!(cast(Value::String("yes".into()), Type::Boolean), Value::Boolean(false));
        assert_eq!(cast(Value::String(" 2.5d ".into()), Type::Float64), Value::Float64(2.5));
        assert_eq!(cast(Value::Float32(0.1), Type::String), Value::String("0.1".into()));
        assert_eq!(cast(Value::Float64(1e21), Type::String), Value::String("1.0E21".into()));
        let err = cast_value(None, &Value::String("1.5".into()), Type::Int32).unwrap_err();
        assert_eq!(err.to_string(), "Value (1.5) was out of range for requested data type");
        let err = cast_value(None, &Value::Bytes(bytes::Bytes::from_static(b"x")), Type::Int32).unwrap_err();
        assert_eq!(err.to_string(), "Unexpected type in Cast transformation: BYTES");
        assert_eq!(java_parse_double("inf"), None);
        assert_eq!(java_parse_double("-Infinity"), Some(f64::NEG_INFINITY));
    }
}
