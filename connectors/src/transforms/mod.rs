//! Single message transforms and predicates, as Kafka Connect has them: a connector's
//! `transforms` chain rewrites (or drops) each record between the converter and the log, each
//! step optionally guarded by a predicate (`transforms.<name>.predicate`, `negate`).
//!
//! The sixteen transforms and three predicates of Apache Kafka are here under Kafka's class
//! names and config keys, with Kafka's semantics for both schemaful values (structs, whose new
//! schemas are built once per input schema and cached) and schemaless ones (maps with string
//! keys). Where Freshet differs, the transform's module says so. [`TransformChain`] builds a
//! connector's chain from its config.
//!
//! | Transform | Does |
//! |---|---|
//! | `Cast$Key`, `Cast$Value` | casts fields, or the whole key or value, to another primitive type |
//! | `DropHeaders` | removes headers by key |
//! | `ExtractField$Key`, `ExtractField$Value` | replaces a struct or map with one of its fields |
//! | `Filter` | drops records (with a predicate: those that match) |
//! | `Flatten$Key`, `Flatten$Value` | flattens nested structs or maps into one level |
//! | `HeaderFrom$Key`, `HeaderFrom$Value` | copies or moves fields into headers |
//! | `HoistField$Key`, `HoistField$Value` | wraps the key or value in a struct or map of one field |
//! | `InsertField$Key`, `InsertField$Value` | adds the topic, partition, timestamp or a static value as a field |
//! | `InsertHeader` | adds a header with a literal value |
//! | `MaskField$Key`, `MaskField$Value` | replaces fields with an empty value or a replacement |
//! | `RegexRouter` | renames topics by a regular expression |
//! | `ReplaceField$Key`, `ReplaceField$Value` | keeps, drops and renames fields |
//! | `SetSchemaMetadata$Key`, `SetSchemaMetadata$Value` | sets a schema's name or version |
//! | `TimestampConverter$Key`, `TimestampConverter$Value` | converts timestamps between strings, Unix numbers and logical types |
//! | `TimestampRouter` | renames topics by the record's timestamp |
//! | `ValueToKey` | makes the key from fields of the value |
//!
//! Predicates: `TopicNameMatches`, `HasHeaderKey`, `RecordIsTombstone`.

use std::fmt::Debug;

mod cast;
mod chain;
mod date_format;
mod extract_field;
mod field_path;
mod filter;
mod flatten;
mod header_from;
mod headers;
mod hoist_field;
mod insert_field;
mod literal;
mod mask_field;
mod operand;
mod predicates;
mod regex_router;
mod replace_field;
mod set_schema_metadata;
mod timestamp_converter;
mod timestamp_router;
mod value_to_key;

pub use chain::{predicate_plugin, transform_plugin, TransformChain};

use crate::config::{Config, ConfigDef};
use crate::error::Result;
use crate::record::ConnectRecord;

/// A transform of one record: the record rewritten, or `None` to drop it.
pub trait Transformation: Send + Sync + Debug {
    /// Transforms `record`. An error is a poison record (Connect's `DataException`).
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>>;
}

/// A condition on a record that guards a transform.
pub trait Predicate: Send + Sync + Debug {
    /// Whether `record` matches.
    fn test(&self, record: &ConnectRecord) -> bool;
}

/// A transform as the plugin registry knows it.
#[derive(Debug, Clone, Copy)]
pub struct TransformPlugin {
    /// Kafka's class name (`org.apache.kafka.connect.transforms.Cast$Value`).
    pub class: &'static str,
    /// Other names a config may use (`Cast$Value`).
    pub aliases: &'static [&'static str],
    /// Its keys.
    pub config_def: fn() -> ConfigDef,
    /// Makes one from its configs (the keys under `transforms.<name>.`, `type` removed).
    pub make: fn(&Config) -> Result<Box<dyn Transformation>>,
}

/// A predicate as the plugin registry knows it.
#[derive(Debug, Clone, Copy)]
pub struct PredicatePlugin {
    /// Kafka's class name (`org.apache.kafka.connect.transforms.predicates.TopicNameMatches`).
    pub class: &'static str,
    /// Other names a config may use (`TopicNameMatches`).
    pub aliases: &'static [&'static str],
    /// Its keys.
    pub config_def: fn() -> ConfigDef,
    /// Makes one from its configs (the keys under `predicates.<name>.`, `type` removed).
    pub make: fn(&Config) -> Result<Box<dyn Predicate>>,
}

/// The built-in transforms.
pub fn transforms() -> Vec<TransformPlugin> {
    vec![
        cast::KEY,
        cast::VALUE,
        headers::DROP_HEADERS,
        extract_field::KEY,
        extract_field::VALUE,
        filter::FILTER,
        flatten::KEY,
        flatten::VALUE,
        header_from::KEY,
        header_from::VALUE,
        hoist_field::KEY,
        hoist_field::VALUE,
        insert_field::KEY,
        insert_field::VALUE,
        headers::INSERT_HEADER,
        mask_field::KEY,
        mask_field::VALUE,
        regex_router::REGEX_ROUTER,
        replace_field::KEY,
        replace_field::VALUE,
        set_schema_metadata::KEY,
        set_schema_metadata::VALUE,
        timestamp_converter::KEY,
        timestamp_converter::VALUE,
        timestamp_router::TIMESTAMP_ROUTER,
        value_to_key::VALUE_TO_KEY,
    ]
}

/// The built-in predicates.
pub fn predicates() -> Vec<PredicatePlugin> {
    vec![predicates::TOPIC_NAME_MATCHES, predicates::HAS_HEADER_KEY, predicates::RECORD_IS_TOMBSTONE]
}
