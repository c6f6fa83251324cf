//! `ReplaceField$Key` and `ReplaceField$Value`: keeps (`include`), drops (`exclude`, which wins)
//! and renames (`renames=old:new,...`) top-level fields of a struct or schemaless map. The old
//! names `whitelist` and `blacklist` are still read, as Kafka 3 reads them, when the new ones
//! are not given.

use std::collections::HashMap;

use super::operand::{
    build_struct, field_value_by_name, parse, raw_string, require_map, require_struct, struct_with_basics, SchemaCache,
    Side,
};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance, Props};
use crate::data::Value;
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// `ReplaceField$Key`.
pub(crate) const KEY: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.ReplaceField$Key",
    aliases: &["ReplaceField$Key"],
    config_def,
    make: make_key,
};

/// `ReplaceField$Value`.
pub(crate) const VALUE: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.ReplaceField$Value",
    aliases: &["ReplaceField$Value"],
    config_def,
    make: make_value,
};

const EXCLUDE: &str = "exclude";
const INCLUDE: &str = "include";
const RENAMES: &str = "renames";
const BLACKLIST: &str = "blacklist";
const WHITELIST: &str = "whitelist";
const REPLACE_NULL_WITH_DEFAULT: &str = "replace.null.with.default";
const PURPOSE: &str = "field replacement";

fn config_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::optional(
            EXCLUDE,
            ConfigType::List,
            Some(""),
            Importance::Medium,
            "Fields to exclude. This takes precedence over the fields to include.",
        ))
        .define(ConfigKey::optional(
            INCLUDE,
            ConfigType::List,
            Some(""),
            Importance::Medium,
            "Fields to include. If specified, only these fields will be used.",
        ))
        .define(ConfigKey::optional(RENAMES, ConfigType::List, Some(""), Importance::Medium, "Field rename mappings."))
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
    ReplaceField::new(config, Side::Key).map(|t| Box::new(t) as Box<dyn Transformation>)
}

fn make_value(config: &Config) -> Result<Box<dyn Transformation>> {
    ReplaceField::new(config, Side::Value).map(|t| Box::new(t) as Box<dyn Transformation>)
}

#[derive(Debug)]
struct ReplaceField {
    side: Side,
    exclude: Vec<String>,
    include: Vec<String>,
    renames: HashMap<String, String>,
    reverse_renames: HashMap<String, String>,
    replace_null_with_default: bool,
    schemas: SchemaCache,
}

impl ReplaceField {
    fn new(config: &Config, side: Side) -> Result<ReplaceField> {
        // The deprecated names stand in for the new ones when only they are given.
        let mut props: Props = config.props().clone();
        for (new, old) in [(INCLUDE, WHITELIST), (EXCLUDE, BLACKLIST)] {
            if !props.contains_key(new) {
                if let Some(value) = props.get(old).cloned() {
                    tracing::warn!(deprecated = old, replacement = new, "deprecated ReplaceField config used");
                    props.insert(new.to_string(), value);
                }
            }
        }
        let config = parse(&config_def(), &Config::from_props(props))?;
        let renames = parse_renames(&config.list(RENAMES)).map_err(|reason| {
            ConnectError::config(RENAMES, raw_string(&config, RENAMES).unwrap_or_default(), reason)
        })?;
        let reverse_renames = renames.iter().map(|(old, new)| (new.clone(), old.clone())).collect();
        Ok(ReplaceField {
            side,
            exclude: config.list(EXCLUDE),
            include: config.list(INCLUDE),
            renames,
            reverse_renames,
            replace_null_with_default: config.boolean(REPLACE_NULL_WITH_DEFAULT, true)?,
            schemas: SchemaCache::default(),
        })
    }

    fn keeps(&self, name: &str) -> bool {
        !self.exclude.iter().any(|e| e == name) && (self.include.is_empty() || self.include.iter().any(|i| i == name))
    }

    fn renamed<'a>(&'a self, name: &'a str) -> &'a str {
        self.renames.get(name).map_or(name, String::as_str)
    }
}

/// `old:new` pairs (Kafka's `parseRenameMappings`; a later pair for a name wins).
fn parse_renames(mappings: &[String]) -> std::result::Result<HashMap<String, String>, String> {
    let mut renames = HashMap::new();
    for mapping in mappings {
        // Java's `String.split` drops trailing empty parts.
        let mut parts: Vec<&str> = mapping.split(':').collect();
        while parts.last() == Some(&"") {
            parts.pop();
        }
        let [old, new] = parts[..] else {
            return Err(format!("Invalid rename mapping: {mapping}"));
        };
        renames.insert(old.to_string(), new.to_string());
    }
    Ok(renames)
}

impl Transformation for ReplaceField {
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        let value = self.side.value(&record);
        if value.is_null() {
            return Ok(Some(record));
        }
        let Some(_) = self.side.schema(&record) else {
            let mut updated: Vec<(Value, Value)> = Vec::new();
            for (key, value) in require_map(value, PURPOSE)? {
                let Some(name) = key.as_str() else {
                    updated.push((key.clone(), value.clone()));
                    continue;
                };
                if self.keeps(name) {
                    super::operand::map_put(&mut updated, self.renamed(name), value.clone());
                }
            }
            return Ok(Some(self.side.replace(record, None, Value::Map(updated))));
        };
        let value = require_struct(value, PURPOSE)?;
        let updated_schema = self.schemas.get_or_build(&value.schema, |schema| {
            let kept = schema.fields.iter().filter(|f| self.keeps(&f.name));
            struct_with_basics(schema, kept.map(|f| (self.renamed(&f.name).to_string(), f.schema.clone())).collect())
        })?;
        let values = updated_schema
            .fields
            .iter()
            .map(|f| {
                let original = self.reverse_renames.get(&f.name).unwrap_or(&f.name);
                field_value_by_name(value, original, self.replace_null_with_default).unwrap_or(Value::Null)
            })
            .collect();
        let updated = build_struct(&updated_schema, values)?;
        Ok(Some(self.side.replace(record, Some(updated_schema), Value::Struct(updated))))
    }
}
