//! `ExtractField$Key` and `ExtractField$Value`: replaces the key or value with one of its fields
//! (`field=id`; with `field.syntax.version=V2`, a nested one: `field=customer.address.city`).
//!
//! As in Kafka, a missing field is null without a schema, and an error with one; a null key or
//! value stays null (with the field's schema when there is one).

use super::field_path::{syntax_version_key, FieldPath};
use super::operand::{parse, raw_string, require_map_or_null, require_struct_or_null, Side};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// `ExtractField$Key`.
pub(crate) const KEY: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.ExtractField$Key",
    aliases: &["ExtractField$Key"],
    config_def,
    make: make_key,
};

/// `ExtractField$Value`.
pub(crate) const VALUE: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.ExtractField$Value",
    aliases: &["ExtractField$Value"],
    config_def,
    make: make_value,
};

const FIELD: &str = "field";
const REPLACE_NULL_WITH_DEFAULT: &str = "replace.null.with.default";
const PURPOSE: &str = "field extraction";

fn config_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::required(FIELD, ConfigType::String, Importance::Medium, "Field name to extract."))
        .define(ConfigKey::optional(
            REPLACE_NULL_WITH_DEFAULT,
            ConfigType::Boolean,
            Some("true"),
            Importance::Medium,
            "Whether to replace fields that have a default value and that are null to the default value. When set to \
             true, the default value is used, otherwise null is used.",
        ))
        .define(syntax_version_key())
}

fn make_key(config: &Config) -> Result<Box<dyn Transformation>> {
    ExtractField::new(config, Side::Key).map(|t| Box::new(t) as Box<dyn Transformation>)
}

fn make_value(config: &Config) -> Result<Box<dyn Transformation>> {
    ExtractField::new(config, Side::Value).map(|t| Box::new(t) as Box<dyn Transformation>)
}

#[derive(Debug)]
struct ExtractField {
    side: Side,
    original: String,
    path: FieldPath,
    replace_null_with_default: bool,
}

impl ExtractField {
    fn new(config: &Config, side: Side) -> Result<ExtractField> {
        let config = parse(&config_def(), config)?;
        let original = raw_string(&config, FIELD).unwrap_or_default();
        Ok(ExtractField {
            side,
            path: FieldPath::from_config(&original, &config)?,
            original,
            replace_null_with_default: config.boolean(REPLACE_NULL_WITH_DEFAULT, true)?,
        })
    }
}

impl Transformation for ExtractField {
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        let value = self.side.value(&record);
        let Some(schema) = self.side.schema(&record) else {
            let extracted = match require_map_or_null(value, PURPOSE)? {
                Some(entries) => self.path.value_from_map(entries)?,
                None => crate::data::Value::Null,
            };
            return Ok(Some(self.side.replace(record, None, extracted)));
        };
        let value = require_struct_or_null(value, PURPOSE)?;
        let field = self
            .path
            .field_from(schema)?
            .ok_or_else(|| ConnectError::data(format!("Unknown field: {}", self.original)))?;
        let field_schema = field.schema.clone();
        let extracted = match value {
            Some(value) => self.path.value_from_struct(value, self.replace_null_with_default)?,
            None => crate::data::Value::Null,
        };
        Ok(Some(self.side.replace(record, Some(field_schema), extracted)))
    }
}
