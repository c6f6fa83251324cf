//! `DropHeaders` (`headers=a,b`: removes every header with one of those keys) and
//! `InsertHeader` (`header=source`, `value.literal=orders-db`: adds a header to every record, its
//! literal typed as Connect's `Values.parseString` types it, so `42` is an `int8` header).

use super::literal::parse_literal;
use super::operand::{non_empty_list, parse, raw_string};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance};
use crate::data::{Header, SchemaRef, Value};
use crate::error::Result;
use crate::record::ConnectRecord;

/// `DropHeaders`.
pub(crate) const DROP_HEADERS: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.DropHeaders",
    aliases: &["DropHeaders"],
    config_def: drop_headers_def,
    make: make_drop_headers,
};

/// `InsertHeader`.
pub(crate) const INSERT_HEADER: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.InsertHeader",
    aliases: &["InsertHeader"],
    config_def: insert_header_def,
    make: make_insert_header,
};

const HEADERS: &str = "headers";
const HEADER: &str = "header";
const VALUE_LITERAL: &str = "value.literal";

fn drop_headers_def() -> ConfigDef {
    ConfigDef::new().define(ConfigKey::required(
        HEADERS,
        ConfigType::List,
        Importance::High,
        "The name of the headers to be removed.",
    ))
}

fn make_drop_headers(config: &Config) -> Result<Box<dyn Transformation>> {
    let config = parse(&drop_headers_def(), config)?;
    Ok(Box::new(DropHeaders { headers: non_empty_list(&config, HEADERS)? }))
}

#[derive(Debug)]
struct DropHeaders {
    headers: Vec<String>,
}

impl Transformation for DropHeaders {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        record.headers.retain(|h| !self.headers.contains(&h.key));
        Ok(Some(record))
    }
}

fn insert_header_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::required(HEADER, ConfigType::String, Importance::High, "The name of the header."))
        .define(ConfigKey::required(
            VALUE_LITERAL,
            ConfigType::String,
            Importance::High,
            "The literal value that is to be set as the header value on all records.",
        ))
}

fn make_insert_header(config: &Config) -> Result<Box<dyn Transformation>> {
    let config = parse(&insert_header_def(), config)?;
    let (schema, value) = parse_literal(&raw_string(&config, VALUE_LITERAL).unwrap_or_default());
    Ok(Box::new(InsertHeader { header: raw_string(&config, HEADER).unwrap_or_default(), schema, value }))
}

#[derive(Debug)]
struct InsertHeader {
    header: String,
    schema: Option<SchemaRef>,
    value: Value,
}

impl Transformation for InsertHeader {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        record.headers.push(Header {
            key: self.header.clone(),
            schema: self.schema.clone(),
            value: self.value.clone(),
        });
        Ok(Some(record))
    }
}
