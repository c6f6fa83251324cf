//! What every transform shares: the part of a record it works on (Kafka's `$Key` and `$Value`
//! subclasses, with their `operatingSchema`, `operatingValue` and `newRecord`), the checks of
//! Kafka's `Requirements` (`requireMap`, `requireStruct`, ...), the copying of a schema's basics
//! (`SchemaUtil`) and the small cache of rebuilt schemas Kafka keeps per transform.
//!
//! Error messages follow Kafka's, with Connect's type names (`STRING`, `null`) where Kafka
//! prints a Java class name.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::{Config, ConfigDef};
use crate::data::{Field, Schema, SchemaRef, Struct, Type, Value};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// The part of a record a `$Key` or `$Value` transform rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The key and its schema.
    Key,
    /// The value and its schema.
    Value,
}

impl Side {
    /// The operand's schema (`None`: schemaless).
    pub(crate) fn schema(self, record: &ConnectRecord) -> Option<&SchemaRef> {
        match self {
            Side::Key => record.key_schema.as_ref(),
            Side::Value => record.value_schema.as_ref(),
        }
    }

    /// The operand.
    pub(crate) fn value(self, record: &ConnectRecord) -> &Value {
        match self {
            Side::Key => &record.key,
            Side::Value => &record.value,
        }
    }

    /// The record with its operand replaced (Kafka's `newRecord`): topic, partition, the other
    /// side, timestamp and headers are kept.
    pub(crate) fn replace(self, mut record: ConnectRecord, schema: Option<SchemaRef>, value: Value) -> ConnectRecord {
        match self {
            Side::Key => {
                record.key_schema = schema;
                record.key = value;
            }
            Side::Value => {
                record.value_schema = schema;
                record.value = value;
            }
        }
        record
    }
}

/// A schemaless operand as a map (Kafka's `requireMap`).
pub(crate) fn require_map<'a>(value: &'a Value, purpose: &str) -> Result<&'a [(Value, Value)]> {
    match value {
        Value::Map(entries) => Ok(entries),
        other => Err(ConnectError::data(format!(
            "Only Map objects supported in absence of schema for [{purpose}], found: {}",
            other.kind()
        ))),
    }
}

/// A schemaless operand as a map, or `None` for null (Kafka's `requireMapOrNull`).
pub(crate) fn require_map_or_null<'a>(value: &'a Value, purpose: &str) -> Result<Option<&'a [(Value, Value)]>> {
    match value {
        Value::Null => Ok(None),
        other => require_map(other, purpose).map(Some),
    }
}

/// A schemaful operand as a struct (Kafka's `requireStruct`).
pub(crate) fn require_struct<'a>(value: &'a Value, purpose: &str) -> Result<&'a Struct> {
    match value {
        Value::Struct(s) => Ok(s),
        other => {
            Err(ConnectError::data(format!("Only Struct objects supported for [{purpose}], found: {}", other.kind())))
        }
    }
}

/// A schemaful operand as a struct, or `None` for null (Kafka's `requireStructOrNull`).
pub(crate) fn require_struct_or_null<'a>(value: &'a Value, purpose: &str) -> Result<Option<&'a Struct>> {
    match value {
        Value::Null => Ok(None),
        other => require_struct(other, purpose).map(Some),
    }
}

/// A schemaless map's entry under a string key.
pub(crate) fn map_get<'a>(entries: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
}

/// Sets a schemaless map's entry under a string key (Java's `Map.put`): replaced in place when
/// present, appended otherwise.
pub(crate) fn map_put(entries: &mut Vec<(Value, Value)>, key: &str, value: Value) {
    match entries.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
        Some((_, v)) => *v = value,
        None => entries.push((Value::String(key.to_string()), value)),
    }
}

/// A struct's value of `field`; a null replaced by the field's default when `with_default`
/// (Kafka's `Struct.get` against `getWithoutDefault`, chosen by `replace.null.with.default`).
pub(crate) fn field_value(value: &Struct, field: &Field, with_default: bool) -> Value {
    let own = value.values.get(field.index).cloned().unwrap_or(Value::Null);
    match (&own, &field.schema.default) {
        (Value::Null, Some(default)) if with_default => default.clone(),
        _ => own,
    }
}

/// A struct's value of the field named `name` (`None` when its schema has no such field).
pub(crate) fn field_value_by_name(value: &Struct, name: &str, with_default: bool) -> Option<Value> {
    value.schema.field(name).map(|f| field_value(value, f, with_default))
}

/// A struct of `schema` with `values` in field order, each checked against its field's schema as
/// Kafka's `Struct.put` does. The values may come from a struct whose own schema is not the
/// record's, so a count that does not match is the record's error.
pub(crate) fn build_struct(schema: &SchemaRef, values: Vec<Value>) -> Result<Struct> {
    if schema.fields.len() != values.len() {
        return Err(ConnectError::data(format!(
            "the struct has {} values but its schema has {} fields: the record's schema and its struct's differ",
            values.len(),
            schema.fields.len()
        )));
    }
    for (field, value) in schema.fields.iter().zip(&values) {
        field
            .schema
            .validate(value)
            .map_err(|e| ConnectError::data(format!("Invalid value for field \"{}\": {e}", field.name)))?;
    }
    Ok(Struct { schema: schema.clone(), values })
}

/// A new schema of `ty` with `source`'s name, version, doc and parameters (Kafka's
/// `SchemaUtil.copySchemaBasics(source, builder)`): not its optionality, default or fields.
pub(crate) fn copy_basics(source: &Schema, ty: Type) -> Schema {
    Schema {
        name: source.name.clone(),
        version: source.version,
        doc: source.doc.clone(),
        parameters: source.parameters.clone(),
        ..Schema::of(ty)
    }
}

/// A struct schema with `source`'s basics and `fields`, refusing a name given twice as Kafka's
/// `SchemaBuilder.field` does.
pub(crate) fn struct_with_basics(source: &Schema, fields: Vec<(String, SchemaRef)>) -> Result<Schema> {
    for (i, (name, _)) in fields.iter().enumerate() {
        if fields[..i].iter().any(|(other, _)| other == name) {
            return Err(ConnectError::data(format!("Cannot create field because of field name duplication {name}")));
        }
    }
    let mut schema = Schema::structure(fields);
    let basics = copy_basics(source, Type::Struct);
    schema.name = basics.name;
    schema.version = basics.version;
    schema.doc = basics.doc;
    schema.parameters = basics.parameters;
    Ok(schema)
}

/// Checks `config` against `def`, filling defaults in (what Kafka's `SimpleConfig` does in each
/// transform's `configure`).
pub(crate) fn parse(def: &ConfigDef, config: &Config) -> Result<Config> {
    def.parse(config.props())
}

/// A string value as Kafka's `ConfigDef` parses one: trimmed, and possibly empty (unlike
/// [`Config::get`], which takes an empty value for none).
pub(crate) fn raw_string(config: &Config, key: &str) -> Option<String> {
    config.props().get(key).map(|v| v.trim().to_string())
}

/// A list value that must not be empty (Kafka's `NonEmptyListValidator`).
pub(crate) fn non_empty_list(config: &Config, key: &str) -> Result<Vec<String>> {
    let list = config.list(key);
    if list.is_empty() {
        return Err(ConnectError::config(key, raw_string(config, key).unwrap_or_default(), "Empty list"));
    }
    Ok(list)
}

/// Rebuilt schemas by the schema they were built from, as Kafka's transforms keep them in an LRU
/// cache of 16: a stream of records of a few schemas gets the same `Arc` for each, so converters
/// downstream that cache by schema hit their caches too.
#[derive(Debug, Default)]
pub(crate) struct SchemaCache {
    entries: Mutex<VecDeque<(SchemaRef, SchemaRef)>>,
}

impl SchemaCache {
    /// Kafka's `LRUCache` size in its transforms.
    const CAPACITY: usize = 16;

    /// The schema built from `source`, built by `build` when not cached.
    pub(crate) fn get_or_build(
        &self,
        source: &SchemaRef,
        build: impl FnOnce(&Schema) -> Result<Schema>,
    ) -> Result<SchemaRef> {
        {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(i) = entries.iter().position(|(k, _)| Arc::ptr_eq(k, source) || **k == **source) {
                let entry = entries.remove(i).expect("position is in bounds");
                let built = entry.1.clone();
                entries.push_front(entry);
                return Ok(built);
            }
        }
        // Built outside the lock: two threads may both build one, and the later simply wins.
        let built = Arc::new(build(source)?);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.push_front((source.clone(), built.clone()));
        entries.truncate(Self::CAPACITY);
        Ok(built)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_gives_one_schema_for_equal_sources() {
        let cache = SchemaCache::default();
        let a = Schema::primitive(Type::Int32);
        let b = Schema::primitive(Type::Int32);
        let first = cache.get_or_build(&a, |_| Ok(Schema::of(Type::Int64))).unwrap();
        let second = cache.get_or_build(&b, |_| panic!("cached")).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        for i in 0..20 {
            let source = Arc::new(Schema { version: Some(i), ..Schema::of(Type::Int8) });
            cache.get_or_build(&source, |_| Ok(Schema::of(Type::Int64))).unwrap();
        }
        assert_eq!(cache.entries.lock().unwrap().len(), SchemaCache::CAPACITY);
    }

    #[test]
    fn defaults_replace_nulls_only_when_asked() {
        let mut with_default = Schema::of(Type::Int32).into_optional();
        with_default.default = Some(Value::Int32(7));
        let schema = Arc::new(Schema::structure([("a".to_string(), Arc::new(with_default))]));
        let s = Struct::new(schema);
        assert_eq!(field_value_by_name(&s, "a", true), Some(Value::Int32(7)));
        assert_eq!(field_value_by_name(&s, "a", false), Some(Value::Null));
        assert_eq!(field_value_by_name(&s, "b", true), None);
    }
}
