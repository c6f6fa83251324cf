//! `HeaderFrom$Key` and `HeaderFrom$Value`: copies or moves fields of the key or value into
//! headers (`fields=id,ts`, `headers=record-id,record-ts`, `operation=copy` or `move`). A
//! header takes its field's schema; a missing schemaless field gives a null header, and a
//! missing schemaful field is an error.

use super::operand::{
    build_struct, field_value, map_get, non_empty_list, parse, raw_string, require_map, require_struct,
    struct_with_basics, SchemaCache, Side,
};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance, Validator};
use crate::data::{Header, Value};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// `HeaderFrom$Key`.
pub(crate) const KEY: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.HeaderFrom$Key",
    aliases: &["HeaderFrom$Key"],
    config_def,
    make: make_key,
};

/// `HeaderFrom$Value`.
pub(crate) const VALUE: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.HeaderFrom$Value",
    aliases: &["HeaderFrom$Value"],
    config_def,
    make: make_value,
};

const FIELDS: &str = "fields";
const HEADERS: &str = "headers";
const OPERATION: &str = "operation";
const REPLACE_NULL_WITH_DEFAULT: &str = "replace.null.with.default";

fn config_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::required(
            FIELDS,
            ConfigType::List,
            Importance::High,
            "Field names in the record whose values are to be copied or moved to headers.",
        ))
        .define(ConfigKey::required(
            HEADERS,
            ConfigType::List,
            Importance::High,
            "Header names, in the same order as the field names listed in the fields configuration property.",
        ))
        .define(
            ConfigKey::required(
                OPERATION,
                ConfigType::String,
                Importance::High,
                "Either <code>move</code> if the fields are to be moved to the headers (removed from the key/value), \
                 or <code>copy</code> if the fields are to be copied to the headers (retained in the key/value).",
            )
            .validated(Validator::one_of(&["move", "copy"])),
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
    HeaderFrom::new(config, Side::Key).map(|t| Box::new(t) as Box<dyn Transformation>)
}

fn make_value(config: &Config) -> Result<Box<dyn Transformation>> {
    HeaderFrom::new(config, Side::Value).map(|t| Box::new(t) as Box<dyn Transformation>)
}

#[derive(Debug)]
struct HeaderFrom {
    side: Side,
    fields: Vec<String>,
    headers: Vec<String>,
    /// `move` (the fields leave the key or value) rather than `copy`.
    moving: bool,
    replace_null_with_default: bool,
    schemas: SchemaCache,
}

impl HeaderFrom {
    fn new(config: &Config, side: Side) -> Result<HeaderFrom> {
        let config = parse(&config_def(), config)?;
        let fields = non_empty_list(&config, FIELDS)?;
        let headers = non_empty_list(&config, HEADERS)?;
        if fields.len() != headers.len() {
            return Err(ConnectError::config(
                HEADERS,
                raw_string(&config, HEADERS).unwrap_or_default(),
                format!("'{FIELDS}' config must have the same number of elements as '{HEADERS}' config."),
            ));
        }
        // Kafka's `ValidString` is case-sensitive.
        let operation = raw_string(&config, OPERATION).unwrap_or_default();
        let moving = match operation.as_str() {
            "move" => true,
            "copy" => false,
            _ => return Err(ConnectError::config(OPERATION, operation, "String must be one of: move, copy")),
        };
        Ok(HeaderFrom {
            side,
            fields,
            headers,
            moving,
            replace_null_with_default: config.boolean(REPLACE_NULL_WITH_DEFAULT, true)?,
            schemas: SchemaCache::default(),
        })
    }

    fn purpose(&self) -> &'static str {
        if self.moving {
            "header move"
        } else {
            "header copy"
        }
    }
}

impl Transformation for HeaderFrom {
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        let value = self.side.value(&record);
        let mut headers = record.headers.clone();
        let Some(schema) = self.side.schema(&record).cloned() else {
            let entries = require_map(value, self.purpose())?;
            for (field, header) in self.fields.iter().zip(&self.headers) {
                let value = map_get(entries, field).cloned().unwrap_or(Value::Null);
                headers.push(Header { key: header.clone(), schema: None, value });
            }
            let updated = if self.moving {
                let kept =
                    entries.iter().filter(|(k, _)| !k.as_str().is_some_and(|k| self.fields.iter().any(|f| f == k)));
                Value::Map(kept.cloned().collect())
            } else {
                value.clone()
            };
            let mut record = self.side.replace(record, None, updated);
            record.headers = headers;
            return Ok(Some(record));
        };
        let value = require_struct(value, self.purpose())?;
        for (field, header) in self.fields.iter().zip(&self.headers) {
            let Some(schema_field) = schema.field(field) else {
                return Err(ConnectError::data(format!(
                    "Field {field} to copy to header {header} is not in the schema"
                )));
            };
            let value = value
                .schema
                .field(field)
                .map_or(Value::Null, |f| field_value(value, f, self.replace_null_with_default));
            headers.push(Header { key: header.clone(), schema: Some(schema_field.schema.clone()), value });
        }
        let (updated_schema, updated) = if self.moving {
            let moved = self.schemas.get_or_build(&schema, |schema| {
                let kept = schema.fields.iter().filter(|f| !self.fields.contains(&f.name));
                struct_with_basics(schema, kept.map(|f| (f.name.clone(), f.schema.clone())).collect())
            })?;
            let values = moved
                .fields
                .iter()
                .map(|f| {
                    value
                        .schema
                        .field(&f.name)
                        .map_or(Value::Null, |own| field_value(value, own, self.replace_null_with_default))
                })
                .collect();
            let updated = build_struct(&moved, values)?;
            (moved, Value::Struct(updated))
        } else {
            (schema, Value::Struct(value.clone()))
        };
        let mut record = self.side.replace(record, Some(updated_schema), updated);
        record.headers = headers;
        Ok(Some(record))
    }
}
