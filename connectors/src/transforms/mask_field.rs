//! `MaskField$Key` and `MaskField$Value`: replaces fields (`fields=ssn,salary`) with the empty
//! value of their type (0, false, "", an empty array or map, the epoch for a date or time), or
//! with `replacement` converted to the field's number or string type. Kafka cannot mask bytes
//! nor structs, nor use a replacement for booleans, dates or containers; neither can Freshet.

use super::literal::Decimal;
use super::operand::{
    build_struct, field_value, map_get, map_put, non_empty_list, parse, require_map, require_struct, Side,
};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance, Validator};
use crate::data::{logical, Schema, Value};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// `MaskField$Key`.
pub(crate) const KEY: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.MaskField$Key",
    aliases: &["MaskField$Key"],
    config_def,
    make: make_key,
};

/// `MaskField$Value`.
pub(crate) const VALUE: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.MaskField$Value",
    aliases: &["MaskField$Value"],
    config_def,
    make: make_value,
};

const FIELDS: &str = "fields";
const REPLACEMENT: &str = "replacement";
const REPLACE_NULL_WITH_DEFAULT: &str = "replace.null.with.default";
const PURPOSE: &str = "mask fields";

fn config_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::required(FIELDS, ConfigType::List, Importance::High, "Names of fields to mask."))
        .define(
            ConfigKey::optional(
                REPLACEMENT,
                ConfigType::String,
                None,
                Importance::Low,
                "Custom value replacement, that will be applied to all 'fields' values (numeric or non-empty string \
                 values only).",
            )
            .validated(Validator::NonEmpty),
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
    MaskField::new(config, Side::Key).map(|t| Box::new(t) as Box<dyn Transformation>)
}

fn make_value(config: &Config) -> Result<Box<dyn Transformation>> {
    MaskField::new(config, Side::Value).map(|t| Box::new(t) as Box<dyn Transformation>)
}

#[derive(Debug)]
struct MaskField {
    side: Side,
    fields: Vec<String>,
    replacement: Option<String>,
    replace_null_with_default: bool,
}

impl MaskField {
    fn new(config: &Config, side: Side) -> Result<MaskField> {
        let config = parse(&config_def(), config)?;
        Ok(MaskField {
            side,
            fields: non_empty_list(&config, FIELDS)?,
            replacement: config.get(REPLACEMENT).map(str::to_string),
            replace_null_with_default: config.boolean(REPLACE_NULL_WITH_DEFAULT, true)?,
        })
    }

    /// `value` masked; `schema` is the field's, when there is one.
    fn masked(&self, value: &Value, schema: Option<&Schema>) -> Result<Value> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        let logical = schema.and_then(|s| s.name.as_deref());
        let decimal_scale = || -> Result<i32> {
            schema
                .and_then(|s| s.parameters.get(logical::DECIMAL_SCALE))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ConnectError::data("Invalid Decimal schema: scale parameter not found."))
        };
        let Some(replacement) = &self.replacement else {
            return Ok(match (logical, value) {
                (Some(logical::DECIMAL), Value::Bytes(_)) => {
                    Value::Bytes(Decimal { unscaled: 0, scale: decimal_scale()? }.to_bytes())
                }
                (_, Value::Boolean(_)) => Value::Boolean(false),
                (_, Value::Int8(_)) => Value::Int8(0),
                (_, Value::Int16(_)) => Value::Int16(0),
                (_, Value::Int32(_)) => Value::Int32(0),
                (_, Value::Int64(_)) => Value::Int64(0),
                (_, Value::Float32(_)) => Value::Float32(0.0),
                (_, Value::Float64(_)) => Value::Float64(0.0),
                (_, Value::String(_)) => Value::String(String::new()),
                (_, Value::Array(_)) => Value::Array(Vec::new()),
                (_, Value::Map(_)) => Value::Map(Vec::new()),
                (_, other) => return Err(ConnectError::data(format!("Cannot mask value of type: {}", other.kind()))),
            });
        };
        let as_number = || {
            Decimal::parse(replacement)
                .ok_or_else(|| ConnectError::data(format!("Unable to convert {replacement} (STRING) to a number")))
        };
        Ok(match (logical, value) {
            (Some(logical::DECIMAL), Value::Bytes(_)) => {
                let scale = decimal_scale()?;
                let decimal = as_number()?.rescale(scale).ok_or_else(|| {
                    ConnectError::data(format!("Replacement {replacement} does not fit a Decimal of scale {scale}"))
                })?;
                Value::Bytes(decimal.to_bytes())
            }
            (Some(name @ (logical::DATE | logical::TIME | logical::TIMESTAMP)), _) => {
                let short = name.rsplit('.').next().unwrap_or(name);
                return Err(ConnectError::data(format!("Cannot mask value of type {short} with custom replacement.")));
            }
            (_, Value::Int8(_)) => Value::Int8(as_number()?.long_value() as i8),
            (_, Value::Int16(_)) => Value::Int16(as_number()?.long_value() as i16),
            (_, Value::Int32(_)) => Value::Int32(as_number()?.long_value() as i32),
            (_, Value::Int64(_)) => Value::Int64(as_number()?.long_value()),
            (_, Value::Float32(_)) => Value::Float32(as_number()?.double_value() as f32),
            (_, Value::Float64(_)) => Value::Float64(as_number()?.double_value()),
            (_, Value::String(_)) => Value::String(replacement.clone()),
            (_, other) => {
                return Err(ConnectError::data(format!(
                    "Cannot mask value of type {} with custom replacement.",
                    other.kind()
                )))
            }
        })
    }
}

impl Transformation for MaskField {
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        let value = self.side.value(&record);
        let Some(schema) = self.side.schema(&record).cloned() else {
            let entries = require_map(value, PURPOSE)?;
            let mut updated = entries.to_vec();
            for field in &self.fields {
                let masked = self.masked(map_get(entries, field).unwrap_or(&Value::Null), None)?;
                map_put(&mut updated, field, masked);
            }
            return Ok(Some(self.side.replace(record, None, Value::Map(updated))));
        };
        let value = require_struct(value, PURPOSE)?;
        let mut values = Vec::with_capacity(value.schema.fields.len());
        for field in &value.schema.fields {
            let original = field_value(value, field, self.replace_null_with_default);
            values.push(if self.fields.contains(&field.name) {
                self.masked(&original, Some(&field.schema))?
            } else {
                original
            });
        }
        let updated = build_struct(&value.schema, values)?;
        Ok(Some(self.side.replace(record, Some(schema), Value::Struct(updated))))
    }
}
