//! `ValueToKey`: replaces the key with a struct (or schemaless map) of some of the value's
//! fields (`fields=customer_id,order_id`). A field missing from a schemaful value is an error; a
//! schemaless one is null in the key.

use std::sync::Arc;

use super::operand::{
    build_struct, field_value_by_name, map_get, map_put, non_empty_list, parse, require_map, require_struct,
    SchemaCache,
};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance};
use crate::data::{Schema, Value};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// `ValueToKey`.
pub(crate) const VALUE_TO_KEY: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.ValueToKey",
    aliases: &["ValueToKey"],
    config_def,
    make,
};

const FIELDS: &str = "fields";
const REPLACE_NULL_WITH_DEFAULT: &str = "replace.null.with.default";
const PURPOSE: &str = "copying fields from value to key";

fn config_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::required(
            FIELDS,
            ConfigType::List,
            Importance::High,
            "Field names on the record value to extract as the record key.",
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

fn make(config: &Config) -> Result<Box<dyn Transformation>> {
    let config = parse(&config_def(), config)?;
    Ok(Box::new(ValueToKey {
        fields: non_empty_list(&config, FIELDS)?,
        replace_null_with_default: config.boolean(REPLACE_NULL_WITH_DEFAULT, true)?,
        schemas: SchemaCache::default(),
    }))
}

#[derive(Debug)]
struct ValueToKey {
    fields: Vec<String>,
    replace_null_with_default: bool,
    schemas: SchemaCache,
}

impl Transformation for ValueToKey {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        if record.value_schema.is_none() {
            let entries = require_map(&record.value, PURPOSE)?;
            let mut key = Vec::with_capacity(self.fields.len());
            for field in &self.fields {
                map_put(&mut key, field, map_get(entries, field).cloned().unwrap_or(Value::Null));
            }
            record.key = Value::Map(key);
            record.key_schema = None;
            return Ok(Some(record));
        }
        let value = require_struct(&record.value, PURPOSE)?;
        let key_schema = self.schemas.get_or_build(&value.schema, |schema| {
            let mut fields = Vec::with_capacity(self.fields.len());
            for name in &self.fields {
                let field =
                    schema.field(name).ok_or_else(|| ConnectError::data(format!("Field does not exist: {name}")))?;
                if fields.iter().any(|(other, _)| other == name) {
                    return Err(ConnectError::data(format!(
                        "Cannot create field because of field name duplication {name}"
                    )));
                }
                fields.push((name.clone(), Arc::clone(&field.schema)));
            }
            Ok(Schema::structure(fields))
        })?;
        let values = self
            .fields
            .iter()
            .map(|f| field_value_by_name(value, f, self.replace_null_with_default).unwrap_or(Value::Null))
            .collect();
        let key = build_struct(&key_schema, values)?;
        // Kafka sets the value's schema to the struct's own.
        record.value_schema = Some(value.schema.clone());
        record.key = Value::Struct(key);
        record.key_schema = Some(key_schema);
        Ok(Some(record))
    }
}
