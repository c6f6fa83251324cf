//! `Flatten$Key` and `Flatten$Value`: nested structs (or schemaless maps) become one level, each
//! field named by its path joined with `delimiter` (default `.`): `{a: {b: 1}}` becomes
//! `{a.b: 1}`. Arrays are kept as they are; a map inside a schemaful value is refused, as Kafka
//! refuses it.
//!
//! A field under an optional struct becomes optional, and takes the parent's default for it
//! when it has none of its own.

use std::sync::Arc;

use super::operand::{parse, raw_string, require_map, require_struct_or_null, struct_with_basics, SchemaCache, Side};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance};
use crate::data::{Schema, SchemaRef, Struct, Type, Value};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// `Flatten$Key`.
pub(crate) const KEY: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.Flatten$Key",
    aliases: &["Flatten$Key"],
    config_def,
    make: make_key,
};

/// `Flatten$Value`.
pub(crate) const VALUE: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.Flatten$Value",
    aliases: &["Flatten$Value"],
    config_def,
    make: make_value,
};

const DELIMITER: &str = "delimiter";
const PURPOSE: &str = "flattening";

fn config_def() -> ConfigDef {
    ConfigDef::new().define(ConfigKey::optional(
        DELIMITER,
        ConfigType::String,
        Some("."),
        Importance::Medium,
        "Delimiter to insert between field names from the input record when generating field names for the output \
         record",
    ))
}

fn make_key(config: &Config) -> Result<Box<dyn Transformation>> {
    Flatten::new(config, Side::Key).map(|t| Box::new(t) as Box<dyn Transformation>)
}

fn make_value(config: &Config) -> Result<Box<dyn Transformation>> {
    Flatten::new(config, Side::Value).map(|t| Box::new(t) as Box<dyn Transformation>)
}

#[derive(Debug)]
struct Flatten {
    side: Side,
    delimiter: String,
    schemas: SchemaCache,
}

impl Flatten {
    fn new(config: &Config, side: Side) -> Result<Flatten> {
        let config = parse(&config_def(), config)?;
        Ok(Flatten {
            side,
            delimiter: raw_string(&config, DELIMITER).unwrap_or_default(),
            schemas: SchemaCache::default(),
        })
    }

    fn name(&self, prefix: &str, name: &str) -> String {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}{}{name}", self.delimiter)
        }
    }

    fn flatten_map(&self, entries: &[(Value, Value)], prefix: &str, out: &mut Vec<(Value, Value)>) -> Result<()> {
        for (key, value) in entries {
            let Some(key) = key.as_str() else {
                return Err(ConnectError::data(format!(
                    "Flatten transformation requires string keys in maps without schemas, found a {} key",
                    key.kind()
                )));
            };
            let name = self.name(prefix, key);
            match value {
                Value::Map(nested) => self.flatten_map(nested, &name, out)?,
                Value::Struct(_) => {
                    return Err(ConnectError::data(format!(
                        "Flatten transformation does not support STRUCT for record without schemas (for field {name})."
                    )));
                }
                other => out.push((Value::String(name), other.clone())),
            }
        }
        Ok(())
    }

    /// The flattened fields of `schema`: optional under an optional ancestor, with the default
    /// the ancestors give when the field has none.
    fn flatten_schema(
        &self,
        schema: &Schema,
        prefix: &str,
        optional: bool,
        default_from_parent: Option<&Struct>,
        out: &mut Vec<(String, SchemaRef)>,
    ) -> Result<()> {
        for (i, field) in schema.fields.iter().enumerate() {
            let name = self.name(prefix, &field.name);
            let optional = optional || field.schema.optional;
            let default = match (&field.schema.default, default_from_parent) {
                (Some(own), _) => Some(own.clone()),
                (None, Some(parent)) => parent_default(parent, i),
                (None, None) => None,
            };
            match field.schema.ty {
                Type::Struct => {
                    let nested_default = match &default {
                        Some(Value::Struct(s)) => Some(s),
                        _ => None,
                    };
                    self.flatten_schema(&field.schema, &name, optional, nested_default, out)?;
                }
                Type::Map => {
                    return Err(ConnectError::data(format!(
                        "Flatten transformation does not support MAP for record with schemas (for field {name})."
                    )));
                }
                _ => {
                    let mut flat = Schema {
                        name: field.schema.name.clone(),
                        version: field.schema.version,
                        doc: field.schema.doc.clone(),
                        parameters: field.schema.parameters.clone(),
                        value_schema: field.schema.value_schema.clone(),
                        ..Schema::of(field.schema.ty)
                    };
                    flat.optional = optional;
                    flat.default = default;
                    out.push((name, Arc::new(flat)));
                }
            }
        }
        Ok(())
    }

    fn flatten_struct(&self, value: &Struct, out: &mut Vec<Value>) {
        for (i, field) in value.schema.fields.iter().enumerate() {
            let own = value.values.get(i).unwrap_or(&Value::Null);
            match (field.schema.ty, own) {
                (Type::Struct, Value::Struct(nested)) => self.flatten_struct(nested, out),
                // A null struct leaves its flattened fields null (their schemas carry any default),
                // as Kafka reads nested structs without their defaults.
                (Type::Struct, _) => out.extend(std::iter::repeat_n(Value::Null, count_leaves(&field.schema))),
                (_, Value::Null) => out.push(field.schema.default.clone().unwrap_or(Value::Null)),
                (_, own) => out.push(own.clone()),
            }
        }
    }
}

/// A parent default's value of its field `index` (null counts as none).
fn parent_default(parent: &Struct, index: usize) -> Option<Value> {
    let value = parent.values.get(index)?;
    match (value, &parent.schema.fields.get(index)?.schema.default) {
        (Value::Null, Some(default)) => Some(default.clone()),
        (Value::Null, None) => None,
        (value, _) => Some(value.clone()),
    }
}

/// How many flattened fields a struct schema gives.
fn count_leaves(schema: &Schema) -> usize {
    schema.fields.iter().map(|f| if f.schema.ty == Type::Struct { count_leaves(&f.schema) } else { 1 }).sum()
}

impl Transformation for Flatten {
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        let value = self.side.value(&record);
        if value.is_null() {
            return Ok(Some(record));
        }
        let Some(schema) = self.side.schema(&record).cloned() else {
            let mut flat = Vec::new();
            self.flatten_map(require_map(value, PURPOSE)?, "", &mut flat)?;
            return Ok(Some(self.side.replace(record, None, Value::Map(flat))));
        };
        let value = require_struct_or_null(value, PURPOSE)?;
        let updated_schema = self.schemas.get_or_build(&schema, |schema| {
            let mut fields = Vec::new();
            let default = match &schema.default {
                Some(Value::Struct(s)) => Some(s),
                _ => None,
            };
            self.flatten_schema(schema, "", schema.optional, default, &mut fields)?;
            struct_with_basics(schema, fields)
        })?;
        let Some(value) = value else {
            return Ok(Some(self.side.replace(record, Some(updated_schema), Value::Null)));
        };
        let mut values = Vec::with_capacity(updated_schema.fields.len());
        self.flatten_struct(value, &mut values);
        let flat = super::operand::build_struct(&updated_schema, values)?;
        Ok(Some(self.side.replace(record, Some(updated_schema), Value::Struct(flat))))
    }
}
