//! `HoistField$Key` and `HoistField$Value`: wraps the key or value in a struct (or, without a
//! schema, a map) of one field (`field=payload`), the whole value becoming that field, nulls
//! included.

use std::sync::Arc;

use super::operand::{build_struct, parse, raw_string, SchemaCache, Side};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance};
use crate::data::{Schema, Value};
use crate::error::Result;
use crate::record::ConnectRecord;

/// `HoistField$Key`.
pub(crate) const KEY: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.HoistField$Key",
    aliases: &["HoistField$Key"],
    config_def,
    make: make_key,
};

/// `HoistField$Value`.
pub(crate) const VALUE: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.HoistField$Value",
    aliases: &["HoistField$Value"],
    config_def,
    make: make_value,
};

const FIELD: &str = "field";

fn config_def() -> ConfigDef {
    ConfigDef::new().define(ConfigKey::required(
        FIELD,
        ConfigType::String,
        Importance::Medium,
        "Field name for the single field that will be created in the resulting Struct or Map.",
    ))
}

fn make_key(config: &Config) -> Result<Box<dyn Transformation>> {
    HoistField::new(config, Side::Key).map(|t| Box::new(t) as Box<dyn Transformation>)
}

fn make_value(config: &Config) -> Result<Box<dyn Transformation>> {
    HoistField::new(config, Side::Value).map(|t| Box::new(t) as Box<dyn Transformation>)
}

#[derive(Debug)]
struct HoistField {
    side: Side,
    field: String,
    schemas: SchemaCache,
}

impl HoistField {
    fn new(config: &Config, side: Side) -> Result<HoistField> {
        let config = parse(&config_def(), config)?;
        Ok(HoistField { side, field: raw_string(&config, FIELD).unwrap_or_default(), schemas: SchemaCache::default() })
    }
}

impl Transformation for HoistField {
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        let value = self.side.value(&record).clone();
        let Some(schema) = self.side.schema(&record).cloned() else {
            let hoisted = Value::string_map([(self.field.clone(), value)]);
            return Ok(Some(self.side.replace(record, None, hoisted)));
        };
        let updated_schema = self
            .schemas
            .get_or_build(&schema, |_| Ok(Schema::structure([(self.field.clone(), Arc::clone(&schema))])))?;
        let hoisted = build_struct(&updated_schema, vec![value])?;
        Ok(Some(self.side.replace(record, Some(updated_schema), Value::Struct(hoisted))))
    }
}
