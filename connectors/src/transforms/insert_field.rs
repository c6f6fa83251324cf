//! `InsertField$Key` and `InsertField$Value`: adds fields from the record's metadata (topic,
//! partition, timestamp) or a static string to a struct or schemaless map. A field name ending
//! in `!` is a required field of the new schema, one ending in `?` (the default) optional.
//!
//! `offset.field`: Kafka fills it with a sink record's offset and fails on source records.
//! Transforms here see a [`ConnectRecord`], which carries no offset, so the field is added to the
//! schema (always optional, since it cannot be filled) and left null, and is not added to
//! schemaless maps.

use std::sync::Arc;

use super::operand::{
    build_struct, field_value, map_put, parse, require_map, require_struct, struct_with_basics, SchemaCache, Side,
};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance};
use crate::data::{Schema, SchemaRef, Type, Value};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// `InsertField$Key`.
pub(crate) const KEY: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.InsertField$Key",
    aliases: &["InsertField$Key"],
    config_def,
    make: make_key,
};

/// `InsertField$Value`.
pub(crate) const VALUE: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.InsertField$Value",
    aliases: &["InsertField$Value"],
    config_def,
    make: make_value,
};

const TOPIC_FIELD: &str = "topic.field";
const PARTITION_FIELD: &str = "partition.field";
const OFFSET_FIELD: &str = "offset.field";
const TIMESTAMP_FIELD: &str = "timestamp.field";
const STATIC_FIELD: &str = "static.field";
const STATIC_VALUE: &str = "static.value";
const REPLACE_NULL_WITH_DEFAULT: &str = "replace.null.with.default";
const PURPOSE: &str = "field insertion";
const OPTIONALITY_DOC: &str =
    "Suffix with <code>!</code> to make this a required field, or <code>?</code> to keep it optional (the default).";

fn config_def() -> ConfigDef {
    let field = |name: &str, doc: &str| {
        ConfigKey::optional(name, ConfigType::String, None, Importance::Medium, format!("{doc} {OPTIONALITY_DOC}"))
    };
    ConfigDef::new()
        .define(field(TOPIC_FIELD, "Field name for Kafka topic."))
        .define(field(PARTITION_FIELD, "Field name for Kafka partition."))
        .define(field(OFFSET_FIELD, "Field name for Kafka offset - only applicable to sink connectors.<br/>"))
        .define(field(TIMESTAMP_FIELD, "Field name for record timestamp."))
        .define(field(STATIC_FIELD, "Field name for static data field."))
        .define(ConfigKey::optional(
            STATIC_VALUE,
            ConfigType::String,
            None,
            Importance::Medium,
            "Static field value, if field name configured.",
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
    InsertField::new(config, Side::Key).map(|t| Box::new(t) as Box<dyn Transformation>)
}

fn make_value(config: &Config) -> Result<Box<dyn Transformation>> {
    InsertField::new(config, Side::Value).map(|t| Box::new(t) as Box<dyn Transformation>)
}

/// A field to insert: its name and whether it is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InsertionSpec {
    name: String,
    optional: bool,
}

impl InsertionSpec {
    fn parse(spec: Option<&str>) -> Option<InsertionSpec> {
        let spec = spec?;
        Some(if let Some(name) = spec.strip_suffix('?') {
            InsertionSpec { name: name.to_string(), optional: true }
        } else if let Some(name) = spec.strip_suffix('!') {
            InsertionSpec { name: name.to_string(), optional: false }
        } else {
            InsertionSpec { name: spec.to_string(), optional: true }
        })
    }

    fn schema(&self, ty: Type) -> SchemaRef {
        let schema = if self.optional { Schema::of(ty).into_optional() } else { Schema::of(ty) };
        Arc::new(schema)
    }
}

#[derive(Debug)]
struct InsertField {
    side: Side,
    topic: Option<InsertionSpec>,
    partition: Option<InsertionSpec>,
    offset: Option<InsertionSpec>,
    timestamp: Option<InsertionSpec>,
    static_field: Option<(InsertionSpec, String)>,
    replace_null_with_default: bool,
    schemas: SchemaCache,
}

impl InsertField {
    fn new(config: &Config, side: Side) -> Result<InsertField> {
        let config = parse(&config_def(), config)?;
        let spec = |key| InsertionSpec::parse(config.props().get(key).map(|v| v.trim()));
        let (topic, partition, offset, timestamp) =
            (spec(TOPIC_FIELD), spec(PARTITION_FIELD), spec(OFFSET_FIELD), spec(TIMESTAMP_FIELD));
        let static_field = spec(STATIC_FIELD);
        if [&topic, &partition, &offset, &timestamp, &static_field].iter().all(|s| s.is_none()) {
            return Err(ConnectError::config("type", "", "No field insertion configured"));
        }
        let static_field = match static_field {
            None => None,
            Some(field) => match config.props().get(STATIC_VALUE) {
                Some(value) => Some((field, value.trim().to_string())),
                None => {
                    return Err(ConnectError::config(
                        STATIC_VALUE,
                        "",
                        format!("No value specified for static field: {}", field.name),
                    ))
                }
            },
        };
        Ok(InsertField {
            side,
            topic,
            partition,
            offset,
            timestamp,
            static_field,
            replace_null_with_default: config.boolean(REPLACE_NULL_WITH_DEFAULT, true)?,
            schemas: SchemaCache::default(),
        })
    }

    /// The fields to insert for `record`, in Kafka's order, with their values (`None`: the
    /// metadata is absent and the field is left out, or null in a struct).
    fn insertions(&self, record: &ConnectRecord) -> Vec<(&InsertionSpec, Option<Value>)> {
        let mut out = Vec::new();
        if let Some(spec) = &self.topic {
            out.push((spec, Some(Value::String(record.topic.clone()))));
        }
        if let Some(spec) = &self.partition {
            out.push((spec, record.kafka_partition.map(|p| Value::Int32(p as i32))));
        }
        if let Some(spec) = &self.offset {
            out.push((spec, None));
        }
        if let Some(spec) = &self.timestamp {
            out.push((spec, record.timestamp.map(Value::Int64)));
        }
        if let Some((spec, value)) = &self.static_field {
            out.push((spec, Some(Value::String(value.clone()))));
        }
        out
    }

    fn build_schema(&self, schema: &Schema) -> Result<Schema> {
        let mut fields: Vec<(String, SchemaRef)> =
            schema.fields.iter().map(|f| (f.name.clone(), f.schema.clone())).collect();
        if let Some(spec) = &self.topic {
            fields.push((spec.name.clone(), spec.schema(Type::String)));
        }
        if let Some(spec) = &self.partition {
            fields.push((spec.name.clone(), spec.schema(Type::Int32)));
        }
        if let Some(spec) = &self.offset {
            fields.push((spec.name.clone(), Schema::optional_primitive(Type::Int64)));
        }
        if let Some(spec) = &self.timestamp {
            let timestamp = Schema::timestamp();
            let timestamp = if spec.optional { timestamp.into_optional() } else { timestamp };
            fields.push((spec.name.clone(), Arc::new(timestamp)));
        }
        if let Some((spec, _)) = &self.static_field {
            fields.push((spec.name.clone(), spec.schema(Type::String)));
        }
        struct_with_basics(schema, fields)
    }
}

impl Transformation for InsertField {
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        let value = self.side.value(&record);
        if value.is_null() {
            return Ok(Some(record));
        }
        let Some(_) = self.side.schema(&record) else {
            let mut updated = require_map(value, PURPOSE)?.to_vec();
            for (spec, value) in self.insertions(&record) {
                if let Some(value) = value {
                    map_put(&mut updated, &spec.name, value);
                }
            }
            return Ok(Some(self.side.replace(record, None, Value::Map(updated))));
        };
        let value = require_struct(value, PURPOSE)?;
        let updated_schema = self.schemas.get_or_build(&value.schema, |schema| self.build_schema(schema))?;
        let mut values: Vec<Value> = vec![Value::Null; updated_schema.fields.len()];
        for field in &value.schema.fields {
            if let Some(target) = updated_schema.field(&field.name) {
                values[target.index] = field_value(value, field, self.replace_null_with_default);
            }
        }
        for (spec, inserted) in self.insertions(&record) {
            if let (Some(target), Some(inserted)) = (updated_schema.field(&spec.name), inserted) {
                values[target.index] = inserted;
            }
        }
        let updated = build_struct(&updated_schema, values)?;
        Ok(Some(self.side.replace(record, Some(updated_schema), Value::Struct(updated))))
    }
}
