//! Converters: between a record's key, value and header bytes in the log and Connect's data model
//! (Kafka Connect's `Converter` and `HeaderConverter`), chosen by a worker's or a connector's
//! `key.converter`, `value.converter` and `header.converter`, configured by the keys under those
//! prefixes (`value.converter.schemas.enable=false`).

pub(crate) mod json;
mod simple;

use std::fmt::Debug;

use bytes::Bytes;

pub use self::json::JsonConverter;
pub use self::simple::{ByteArrayConverter, NumberConverter, SimpleHeaderConverter, StringConverter};
use crate::config::{Config, ConfigDef};
use crate::data::{SchemaRef, Value};
use crate::error::{ConnectError, Result};

/// Turns log bytes into Connect data and back, for a key or a value.
pub trait Converter: Send + Sync + Debug {
    /// Connect data to bytes (`None`: a null key or a tombstone).
    fn encode(&self, topic: &str, schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>>;
    /// Bytes (`None`: null) to Connect data.
    fn decode(&self, topic: &str, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)>;
}

/// Turns header values into bytes and back.
pub trait HeaderConverter: Send + Sync + Debug {
    /// A header's value to bytes.
    fn encode(&self, topic: &str, key: &str, schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>>;
    /// A header's bytes to Connect data.
    fn decode(&self, topic: &str, key: &str, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)>;
}

/// How a plugin makes a header converter.
pub type MakeHeaderConverter = fn(&Config) -> Result<Box<dyn HeaderConverter>>;

/// A converter as the plugin registry knows it.
#[derive(Debug, Clone, Copy)]
pub struct ConverterPlugin {
    /// Kafka's class name (`org.apache.kafka.connect.json.JsonConverter`).
    pub class: &'static str,
    /// Other names a config may use (`JsonConverter`).
    pub aliases: &'static [&'static str],
    /// Its keys.
    pub config_def: fn() -> ConfigDef,
    /// Makes one for keys (`true`) or values from its configs (the keys under
    /// `key.converter.`/`value.converter.`).
    pub make: fn(&Config, bool) -> Result<Box<dyn Converter>>,
    /// Makes one as a header converter, for those that are both.
    pub make_header: Option<MakeHeaderConverter>,
}

impl ConverterPlugin {
    /// Whether `name` is this plugin's class or one of its aliases.
    pub fn is_named(&self, name: &str) -> bool {
        self.class == name || self.aliases.contains(&name)
    }
}

/// The built-in converters.
pub fn converters() -> Vec<ConverterPlugin> {
    let mut out = vec![
        ConverterPlugin {
            class: "org.apache.kafka.connect.json.JsonConverter",
            aliases: &["JsonConverter", "Json"],
            config_def: json::config_def,
            make: |config, is_key| Ok(Box::new(JsonConverter::new(config, is_key)?)),
            make_header: Some(|config| Ok(Box::new(JsonConverter::new(config, false)?))),
        },
        ConverterPlugin {
            class: "org.apache.kafka.connect.storage.StringConverter",
            aliases: &["StringConverter", "String"],
            config_def: simple::string_config_def,
            make: |config, _| Ok(Box::new(StringConverter::new(config)?)),
            make_header: Some(|config| Ok(Box::new(StringConverter::new(config)?))),
        },
        ConverterPlugin {
            class: "org.apache.kafka.connect.converters.ByteArrayConverter",
            aliases: &["ByteArrayConverter", "ByteArray"],
            config_def: ConfigDef::new,
            make: |_, _| Ok(Box::new(ByteArrayConverter)),
            make_header: Some(|_| Ok(Box::new(ByteArrayConverter))),
        },
        ConverterPlugin {
            class: "org.apache.kafka.connect.storage.SimpleHeaderConverter",
            aliases: &["SimpleHeaderConverter", "Simple"],
            config_def: ConfigDef::new,
            make: |_, _| Ok(Box::new(SimpleHeaderConverter)),
            make_header: Some(|_| Ok(Box::new(SimpleHeaderConverter))),
        },
    ];
    out.extend(simple::NUMBER_CONVERTERS.iter().map(|(class, aliases, _)| ConverterPlugin {
        class,
        aliases,
        config_def: ConfigDef::new,
        make: |config, _| Ok(Box::new(NumberConverter::named(config)?)),
        make_header: Some(|config| Ok(Box::new(NumberConverter::named(config)?))),
    }));
    out
}

/// The built-in converter called `name` (its class or an alias).
pub fn converter_plugin(name: &str) -> Option<ConverterPlugin> {
    converters().into_iter().find(|p| p.is_named(name))
}

/// Makes the converter a config names under `prefix` (`key.converter`): its plugin from the
/// prefix's value, its configs from the keys under `prefix.`.
pub fn make_converter(config: &Config, prefix: &str, is_key: bool) -> Result<Box<dyn Converter>> {
    let (plugin, sub) = plugin_for(config, prefix)?;
    (plugin.make)(&sub, is_key)
}

/// Makes the header converter a config names under `prefix` (`header.converter`).
pub fn make_header_converter(config: &Config, prefix: &str) -> Result<Box<dyn HeaderConverter>> {
    let (plugin, sub) = plugin_for(config, prefix)?;
    let make = plugin
        .make_header
        .ok_or_else(|| ConnectError::config(prefix, plugin.class, "this converter cannot convert headers"))?;
    make(&sub)
}

fn plugin_for(config: &Config, prefix: &str) -> Result<(ConverterPlugin, Config)> {
    let name = config.string(prefix)?;
    let plugin = converter_plugin(name).ok_or_else(|| {
        let known: Vec<&str> = converters().iter().map(|p| p.class).collect();
        ConnectError::config(prefix, name, format!("no such converter; known: {}", known.join(", ")))
    })?;
    // The plugin's name, for the number converters, which share one implementation.
    let mut sub = config.with_prefix(&format!("{prefix}."));
    sub.insert(PLUGIN_CLASS.into(), plugin.class.into());
    let sub = (plugin.config_def)().parse(&sub)?;
    Ok((plugin, sub))
}

/// Where a converter's configs say which plugin it was made as.
const PLUGIN_CLASS: &str = "freshet.plugin.class";

#[cfg(test)]
mod tests;
