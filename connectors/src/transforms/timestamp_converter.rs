//! `TimestampConverter$Key` and `TimestampConverter$Value`: converts a timestamp (the whole key
//! or value, or one top-level `field`) between a string of `format` (Java `SimpleDateFormat`, in
//! UTC), a Unix number of `unix.precision`, and Connect's `Date`, `Time` and `Timestamp`
//! (`target.type`).
//!
//! With a schema, the input kind comes from it; without, an `int64` is a Unix time and a string
//! is parsed with `format`. Without a schema there is no `Date`, `Time` or `Timestamp` value:
//! those targets give milliseconds since the epoch as an `int64` (what Kafka's `java.util.Date`
//! holds), midnight for a date and the time of day on 1970-01-01 for a time.

use std::sync::Arc;

use super::date_format::{JavaDateFormat, MILLIS_PER_DAY};
use super::operand::{
    build_struct, field_value, map_get, map_put, parse, raw_string, require_map, require_struct_or_null,
    struct_with_basics, SchemaCache, Side,
};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance, Validator};
use crate::data::{logical, Schema, SchemaRef, Struct, Type, Value};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// `TimestampConverter$Key`.
pub(crate) const KEY: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.TimestampConverter$Key",
    aliases: &["TimestampConverter$Key"],
    config_def,
    make: make_key,
};

/// `TimestampConverter$Value`.
pub(crate) const VALUE: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.TimestampConverter$Value",
    aliases: &["TimestampConverter$Value"],
    config_def,
    make: make_value,
};

const FIELD: &str = "field";
const TARGET_TYPE: &str = "target.type";
const FORMAT: &str = "format";
const UNIX_PRECISION: &str = "unix.precision";
const REPLACE_NULL_WITH_DEFAULT: &str = "replace.null.with.default";
const PURPOSE: &str = "converting timestamp formats";
const TARGET_TYPES: [&str; 5] = ["string", "unix", "Date", "Time", "Timestamp"];
const PRECISIONS: [&str; 4] = ["nanoseconds", "microseconds", "milliseconds", "seconds"];

fn config_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::optional(
            FIELD,
            ConfigType::String,
            Some(""),
            Importance::High,
            "The field containing the timestamp, or empty if the entire value is a timestamp",
        ))
        .define(
            ConfigKey::required(
                TARGET_TYPE,
                ConfigType::String,
                Importance::High,
                "The desired timestamp representation: string, unix, Date, Time, or Timestamp",
            )
            .validated(Validator::one_of(&TARGET_TYPES)),
        )
        .define(ConfigKey::optional(
            FORMAT,
            ConfigType::String,
            Some(""),
            Importance::Medium,
            "A SimpleDateFormat-compatible format for the timestamp. Used to generate the output when type=string or \
             used to parse the input if the input is a string.",
        ))
        .define(
            ConfigKey::optional(
                UNIX_PRECISION,
                ConfigType::String,
                Some("milliseconds"),
                Importance::Low,
                "The desired Unix precision for the timestamp: seconds, milliseconds, microseconds, or nanoseconds. \
                 Used to generate the output when type=unix or used to parse the input if the input is a Long.Note: \
                 This SMT will cause precision loss during conversions from, and to, values with sub-millisecond \
                 components.",
            )
            .validated(Validator::one_of(&PRECISIONS)),
        )
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
    TimestampConverter::new(config, Side::Key).map(|t| Box::new(t) as Box<dyn Transformation>)
}

fn make_value(config: &Config) -> Result<Box<dyn Transformation>> {
    TimestampConverter::new(config, Side::Value).map(|t| Box::new(t) as Box<dyn Transformation>)
}

/// A representation of a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Text of `format`.
    String,
    /// A number of `unix.precision` units since the epoch (`int64`).
    Unix,
    /// Connect's `Date` (`int32` days).
    Date,
    /// Connect's `Time` (`int32` milliseconds of the day).
    Time,
    /// Connect's `Timestamp` (`int64` milliseconds).
    Timestamp,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Unix => "unix",
            Kind::Date => "Date",
            Kind::Time => "Time",
            Kind::Timestamp => "Timestamp",
        }
    }

    /// The kind a schema holds (Kafka's `timestampTypeFromSchema`).
    fn of_schema(schema: &Schema) -> Result<Kind> {
        Ok(match (schema.name.as_deref(), schema.ty) {
            (Some(logical::TIMESTAMP), _) => Kind::Timestamp,
            (Some(logical::DATE), _) => Kind::Date,
            (Some(logical::TIME), _) => Kind::Time,
            (_, Type::String) => Kind::String,
            (_, Type::Int64) => Kind::Unix,
            _ => {
                return Err(ConnectError::data(format!(
                    "Schema {} does not correspond to a known timestamp type format",
                    describe(schema)
                )))
            }
        })
    }

    /// The kind a schemaless value is (Kafka's `inferTimestampType`).
    fn of_value(value: &Value) -> Result<Kind> {
        match value {
            Value::Int64(_) => Ok(Kind::Unix),
            Value::String(_) => Ok(Kind::String),
            other => Err(ConnectError::data(format!(
                "TimestampConverter does not support {} objects as timestamps",
                other.kind()
            ))),
        }
    }

    /// The schema of this kind.
    fn schema(self, optional: bool) -> SchemaRef {
        let schema = match self {
            Kind::String => Schema::of(Type::String),
            Kind::Unix => Schema::of(Type::Int64),
            Kind::Date => Schema::date(),
            Kind::Time => Schema::time(),
            Kind::Timestamp => Schema::timestamp(),
        };
        Arc::new(if optional { schema.into_optional() } else { schema })
    }
}

fn describe(schema: &Schema) -> String {
    match &schema.name {
        Some(name) => format!("Schema{{{name}:{}}}", schema.ty),
        None => format!("Schema{{{}}}", schema.ty),
    }
}

/// The unit of Unix times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    Seconds,
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

#[derive(Debug)]
struct TimestampConverter {
    side: Side,
    field: String,
    target: Kind,
    format: Option<JavaDateFormat>,
    precision: Precision,
    replace_null_with_default: bool,
    schemas: SchemaCache,
}

impl TimestampConverter {
    fn new(config: &Config, side: Side) -> Result<TimestampConverter> {
        let config = parse(&config_def(), config)?;
        // Kafka's `ValidString` is case-sensitive.
        let target_name = raw_string(&config, TARGET_TYPE).unwrap_or_default();
        let target = [Kind::String, Kind::Unix, Kind::Date, Kind::Time, Kind::Timestamp]
            .into_iter()
            .find(|k| k.name() == target_name)
            .ok_or_else(|| {
                ConnectError::config(
                    TARGET_TYPE,
                    &target_name,
                    format!("String must be one of: {}", TARGET_TYPES.join(", ")),
                )
            })?;
        let precision_name = raw_string(&config, UNIX_PRECISION).unwrap_or_default();
        let precision = match precision_name.as_str() {
            "seconds" => Precision::Seconds,
            "milliseconds" => Precision::Milliseconds,
            "microseconds" => Precision::Microseconds,
            "nanoseconds" => Precision::Nanoseconds,
            _ => {
                return Err(ConnectError::config(
                    UNIX_PRECISION,
                    precision_name,
                    format!("String must be one of: {}", PRECISIONS.join(", ")),
                ))
            }
        };
        let pattern = raw_string(&config, FORMAT).unwrap_or_default();
        let format = if pattern.is_empty() {
            if target == Kind::String {
                return Err(ConnectError::config(
                    FORMAT,
                    "",
                    "TimestampConverter requires format option to be specified when using string timestamps",
                ));
            }
            None
        } else {
            Some(JavaDateFormat::new(&pattern).map_err(|e| {
                ConnectError::config(
                    FORMAT,
                    &pattern,
                    format!("TimestampConverter requires a SimpleDateFormat-compatible pattern for string timestamps: {pattern} ({e})"),
                )
            })?)
        };
        Ok(TimestampConverter {
            side,
            field: raw_string(&config, FIELD).unwrap_or_default(),
            target,
            format,
            precision,
            replace_null_with_default: config.boolean(REPLACE_NULL_WITH_DEFAULT, true)?,
            schemas: SchemaCache::default(),
        })
    }

    /// `value` of `kind` (inferred when `None`) converted to the target; `schemaless` gives
    /// milliseconds for the logical targets.
    fn convert(&self, value: &Value, kind: Option<Kind>, schemaless: bool) -> Result<Value> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        let kind = match kind {
            Some(kind) => kind,
            None => Kind::of_value(value)?,
        };
        let epoch_ms = self.to_epoch_ms(value, kind)?;
        Ok(match self.target {
            Kind::String => Value::String(self.format.as_ref().expect("a string target has a format").format(epoch_ms)),
            Kind::Unix => Value::Int64(match self.precision {
                Precision::Seconds => epoch_ms / 1000,
                Precision::Milliseconds => epoch_ms,
                Precision::Microseconds => epoch_ms.saturating_mul(1000),
                Precision::Nanoseconds => epoch_ms.saturating_mul(1_000_000),
            }),
            Kind::Date if schemaless => {
                Value::Int64(epoch_ms.div_euclid(MILLIS_PER_DAY).saturating_mul(MILLIS_PER_DAY))
            }
            Kind::Date => {
                let days = epoch_ms.div_euclid(MILLIS_PER_DAY);
                Value::Int32(
                    i32::try_from(days)
                        .map_err(|_| ConnectError::data(format!("Date {days} days from the epoch is out of range")))?,
                )
            }
            Kind::Time if schemaless => Value::Int64(epoch_ms.rem_euclid(MILLIS_PER_DAY)),
            Kind::Time => Value::Int32(epoch_ms.rem_euclid(MILLIS_PER_DAY) as i32),
            Kind::Timestamp => Value::Int64(epoch_ms),
        })
    }

    /// Milliseconds since the epoch of `value`, a timestamp of `kind` (Kafka's `toRaw`).
    fn to_epoch_ms(&self, value: &Value, kind: Kind) -> Result<i64> {
        match (kind, value) {
            (Kind::String, Value::String(text)) => {
                let Some(format) = &self.format else {
                    return Err(ConnectError::data(format!(
                        "Could not parse timestamp: value ({text}) is a string and no format is configured"
                    )));
                };
                format.parse(text).ok_or_else(|| {
                    ConnectError::data(format!(
                        "Could not parse timestamp: value ({text}) does not match pattern ({})",
                        format.pattern()
                    ))
                })
            }
            (Kind::String, other) => {
                Err(ConnectError::data(format!("Expected string timestamp to be a String, but found {}", other.kind())))
            }
            (Kind::Unix, Value::Int64(v)) => Ok(match self.precision {
                Precision::Seconds => v.saturating_mul(1000),
                Precision::Milliseconds => *v,
                Precision::Microseconds => v / 1000,
                Precision::Nanoseconds => v / 1_000_000,
            }),
            (Kind::Unix, other) => {
                Err(ConnectError::data(format!("Expected Unix timestamp to be a Long, but found {}", other.kind())))
            }
            (Kind::Date, Value::Int32(days)) => Ok(i64::from(*days) * MILLIS_PER_DAY),
            (Kind::Time, Value::Int32(ms)) => Ok(i64::from(*ms)),
            (Kind::Timestamp, Value::Int64(ms)) => Ok(*ms),
            (kind, other) => Err(ConnectError::data(format!(
                "Expected {} to be a java.util.Date, but found {}",
                kind.name(),
                other.kind()
            ))),
        }
    }

    fn convert_struct(&self, value: &Struct, updated_schema: &SchemaRef) -> Result<Struct> {
        let mut values = Vec::with_capacity(value.schema.fields.len());
        for field in &value.schema.fields {
            let original = field_value(value, field, self.replace_null_with_default);
            values.push(if field.name == self.field {
                self.convert(&original, Some(Kind::of_schema(&field.schema)?), false)?
            } else {
                original
            });
        }
        build_struct(updated_schema, values)
    }

    fn build_schema(&self, schema: &Schema) -> Result<Schema> {
        let fields = schema
            .fields
            .iter()
            .map(|f| {
                let field_schema =
                    if f.name == self.field { self.target.schema(f.schema.optional) } else { f.schema.clone() };
                (f.name.clone(), field_schema)
            })
            .collect();
        let mut updated = struct_with_basics(schema, fields)?;
        updated.optional = schema.optional;
        if let Some(Value::Struct(default)) = &schema.default {
            // The default is converted on a schema without the default itself.
            let without_default = Arc::new(updated.clone());
            updated.default = Some(Value::Struct(self.convert_struct(default, &without_default)?));
        }
        Ok(updated)
    }
}

impl Transformation for TimestampConverter {
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        let value = self.side.value(&record);
        let Some(schema) = self.side.schema(&record).cloned() else {
            let updated = if value.is_null() || self.field.is_empty() {
                self.convert(value, None, true)?
            } else {
                let entries = require_map(value, PURPOSE)?;
                let mut updated = entries.to_vec();
                let converted = self.convert(map_get(entries, &self.field).unwrap_or(&Value::Null), None, true)?;
                map_put(&mut updated, &self.field, converted);
                Value::Map(updated)
            };
            return Ok(Some(self.side.replace(record, None, updated)));
        };
        if self.field.is_empty() {
            let updated_schema = self.target.schema(schema.optional);
            let updated = self.convert(value, Some(Kind::of_schema(&schema)?), false)?;
            return Ok(Some(self.side.replace(record, Some(updated_schema), updated)));
        }
        let value = require_struct_or_null(value, PURPOSE)?;
        let updated_schema = self.schemas.get_or_build(&schema, |schema| self.build_schema(schema))?;
        let updated = match value {
            Some(value) => Value::Struct(self.convert_struct(value, &updated_schema)?),
            None => Value::Null,
        };
        Ok(Some(self.side.replace(record, Some(updated_schema), updated)))
    }
}
