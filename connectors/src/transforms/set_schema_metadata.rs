//! `SetSchemaMetadata$Key` and `SetSchemaMetadata$Value`: sets the name (`schema.name`), the
//! version (`schema.version`) or both of the key's or value's schema; a struct is rebuilt on
//! the renamed schema. A schemaless key or value that is not null is an error.

use std::sync::Arc;

use super::operand::{build_struct, field_value, parse, raw_string, Side};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance};
use crate::data::{Schema, Type, Value};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// `SetSchemaMetadata$Key`.
pub(crate) const KEY: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.SetSchemaMetadata$Key",
    aliases: &["SetSchemaMetadata$Key"],
    config_def,
    make: make_key,
};

/// `SetSchemaMetadata$Value`.
pub(crate) const VALUE: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.SetSchemaMetadata$Value",
    aliases: &["SetSchemaMetadata$Value"],
    config_def,
    make: make_value,
};

const SCHEMA_NAME: &str = "schema.name";
const SCHEMA_VERSION: &str = "schema.version";
const REPLACE_NULL_WITH_DEFAULT: &str = "replace.null.with.default";

fn config_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::optional(SCHEMA_NAME, ConfigType::String, None, Importance::High, "Schema name to set."))
        .define(ConfigKey::optional(SCHEMA_VERSION, ConfigType::Int, None, Importance::High, "Schema version to set."))
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
    SetSchemaMetadata::new(config, Side::Key).map(|t| Box::new(t) as Box<dyn Transformation>)
}

fn make_value(config: &Config) -> Result<Box<dyn Transformation>> {
    SetSchemaMetadata::new(config, Side::Value).map(|t| Box::new(t) as Box<dyn Transformation>)
}

#[derive(Debug)]
struct SetSchemaMetadata {
    side: Side,
    name: Option<String>,
    version: Option<i32>,
    replace_null_with_default: bool,
}

impl SetSchemaMetadata {
    fn new(config: &Config, side: Side) -> Result<SetSchemaMetadata> {
        let config = parse(&config_def(), config)?;
        let name = raw_string(&config, SCHEMA_NAME);
        let version = match config.get(SCHEMA_VERSION) {
            None => None,
            Some(_) => Some(config.number::<i32>(SCHEMA_VERSION)?),
        };
        if name.is_none() && version.is_none() {
            return Err(ConnectError::config("type", "", "Neither schema name nor version configured"));
        }
        Ok(SetSchemaMetadata {
            side,
            name,
            version,
            replace_null_with_default: config.boolean(REPLACE_NULL_WITH_DEFAULT, true)?,
        })
    }
}

impl Transformation for SetSchemaMetadata {
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        let value = self.side.value(&record);
        let Some(schema) = self.side.schema(&record) else {
            if value.is_null() {
                return Ok(Some(record));
            }
            return Err(ConnectError::data("Schema required for [updating schema metadata]"));
        };
        let is_map = schema.ty == Type::Map;
        let updated_schema = Arc::new(Schema {
            name: self.name.clone().or_else(|| schema.name.clone()),
            version: self.version.or(schema.version),
            key_schema: if is_map { schema.key_schema.clone() } else { None },
            value_schema: if is_map || schema.ty == Type::Array { schema.value_schema.clone() } else { None },
            ..Schema::clone(schema)
        });
        // Only a struct refers to its schema; other values are kept as they are.
        let updated = match value {
            Value::Struct(s) => {
                let values =
                    s.schema.fields.iter().map(|f| field_value(s, f, self.replace_null_with_default)).collect();
                Value::Struct(build_struct(&updated_schema, values)?)
            }
            other => other.clone(),
        };
        Ok(Some(self.side.replace(record, Some(updated_schema), updated)))
    }
}
