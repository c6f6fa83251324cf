//! What a batch's records become: runs of one table and one schema, in order, and the columns
//! each run writes (the primary key's, as `pk.mode` says, and the value's fields).

use std::collections::HashMap;
use std::sync::Arc;

use super::{PkMode, Settings};
use crate::builtin::postgres::copy::{CopyRows, PgType};
use crate::data::{Schema, SchemaRef, Type, Value};
use crate::record::SinkRecord;

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Topic,
    Partition,
    Offset,
    /// A primitive key.
    Key,
    /// A field of a struct key.
    KeyField(usize),
    /// A field of the value.
    ValueField(usize),
}

/// A column a run writes.
#[derive(Debug, Clone)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) source: Source,
    pub(super) ty: PgType,
    pub(super) schema: SchemaRef,
    pub(super) pk: bool,
}

impl Column {
    pub(super) fn value<'r>(&self, record: &'r SinkRecord) -> Option<&'r Value> {
        let field = |v: &'r Value, i: usize| match v {
            Value::Struct(s) => s.values.get(i),
            _ => None,
        };
        match self.source {
            Source::Key => Some(&record.record.key),
            Source::KeyField(i) => field(&record.record.key, i),
            Source::ValueField(i) => field(&record.record.value, i),
            Source::Topic | Source::Partition | Source::Offset => None,
        }
    }

    /// Writes the record's value of this column.
    pub(super) fn write(&self, rows: &mut CopyRows, record: &SinkRecord) -> std::result::Result<(), String> {
        match self.source {
            Source::Topic => rows.text(&record.original_topic)?,
            Source::Partition => rows.int4(record.original_partition as i32),
            Source::Offset => rows.int8(record.kafka_offset),
            _ => {
                let value = self.value(record).unwrap_or(&Value::Null);
                if self.pk && value.is_null() {
                    return Err(format!("the record has no value for the primary key column {:?}", self.name));
                }
                rows.value(self.ty, &self.schema, value).map_err(|e| format!("column {:?}: {e}", self.name))?
            }
        }
        Ok(())
    }
}

/// Records of one table and one schema, in order.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) table: String,
    pub(super) key_schema: Option<SchemaRef>,
    pub(super) value_schema: Option<SchemaRef>,
    pub(super) columns: Vec<Column>,
    /// Indexes into the records; a tombstone is a delete.
    pub(super) records: Vec<usize>,
}

/// The schema of a record's key or value: given, or a struct's own.
fn schema_of(schema: &Option<SchemaRef>, value: &Value) -> Option<SchemaRef> {
    match (schema, value) {
        (Some(s), _) => Some(s.clone()),
        (None, Value::Struct(s)) => Some(s.schema.clone()),
        (None, v) => v.infer_schema().filter(|s| s.ty.is_primitive()),
    }
}

fn same(a: &Option<SchemaRef>, b: &Option<SchemaRef>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

/// The fields of a key's or value's struct that `pk.fields` names (all, without it), each with
/// its column name.
fn pk_fields<'s>(
    settings: &'s Settings,
    schema: &'s Schema,
    what: &str,
) -> std::result::Result<Vec<(&'s str, &'s crate::data::Field)>, String> {
    let wanted: Vec<&str> = if settings.pk_fields.is_empty() {
        schema.fields.iter().map(|f| f.name.as_str()).collect()
    } else {
        settings.pk_fields.iter().map(String::as_str).collect()
    };
    wanted
        .into_iter()
        .map(|name| {
            let f = schema.field(name).ok_or_else(|| {
                let have: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
                format!("pk.fields names {name:?}, which the {what}'s struct lacks (it has {})", have.join(", "))
            })?;
            Ok((name, f))
        })
        .collect()
}

/// A run's columns, from its key's and value's schemas (`value_schema` is `None` for a run of
/// deletes).
fn columns(
    settings: &Settings,
    key_schema: Option<&SchemaRef>,
    value_schema: Option<&SchemaRef>,
) -> std::result::Result<Vec<Column>, String> {
    let mut columns = Vec::new();
    let pk = |name: &str, source, schema: SchemaRef| Column {
        name: name.to_string(),
        source,
        ty: PgType::of(&schema),
        schema,
        pk: true,
    };
    match settings.pk_mode {
        PkMode::None => {}
        PkMode::Kafka => {
            let names = if settings.pk_fields.len() == 3 {
                settings.pk_fields.clone()
            } else {
                vec!["__connect_topic".into(), "__connect_partition".into(), "__connect_offset".into()]
            };
            columns.push(pk(&names[0], Source::Topic, Schema::primitive(Type::String)));
            columns.push(pk(&names[1], Source::Partition, Schema::primitive(Type::Int32)));
            columns.push(pk(&names[2], Source::Offset, Schema::primitive(Type::Int64)));
        }
        PkMode::RecordKey => {
            let key = key_schema.ok_or("pk.mode=record_key, but the record has no key")?;
            if key.ty == Type::Struct {
                for (name, f) in pk_fields(settings, key, "key")? {
                    columns.push(pk(name, Source::KeyField(f.index), f.schema.clone()));
                }
            } else if key.ty.is_primitive() {
                if settings.pk_fields.len() > 1 {
                    return Err(format!(
                        "pk.fields names {} columns, but the key is a single {}",
                        settings.pk_fields.len(),
                        key.ty
                    ));
                }
                let name = settings.pk_fields.first().map_or("__connect_key", String::as_str);
                columns.push(pk(name, Source::Key, key.clone()));
            } else {
                return Err(format!("pk.mode=record_key needs a primitive or struct key; the key is a {}", key.ty));
            }
        }
        PkMode::RecordValue => {
            let value = value_schema.ok_or("pk.mode=record_value, but the record has no value")?;
            for (name, f) in pk_fields(settings, value, "value")? {
                columns.push(pk(name, Source::ValueField(f.index), f.schema.clone()));
            }
        }
    }
    if let Some(value) = value_schema {
        for f in &value.fields {
            if !settings.fields.is_empty() && !settings.fields.contains(&f.name) {
                continue;
            }
            if columns.iter().any(|c| c.name == f.name) {
                continue;
            }
            columns.push(Column {
                name: f.name.clone(),
                source: Source::ValueField(f.index),
                ty: PgType::of(&f.schema),
                schema: f.schema.clone(),
                pk: false,
            });
        }
    }
    Ok(columns)
}

/// Sorts the records into runs; records that cannot be written at all are rejected.
pub(super) fn plan(settings: &Settings, records: &[SinkRecord]) -> (Vec<Run>, Vec<(usize, String)>) {
    let mut runs: Vec<Run> = Vec::new();
    let mut rejected = Vec::new();
    // The last run of each table.
    let mut last: HashMap<String, usize> = HashMap::new();
    for (idx, r) in records.iter().enumerate() {
        let tombstone = r.record.value.is_null();
        if tombstone && !settings.delete_enabled {
            continue;
        }
        let table = match settings.table(&r.record.topic) {
            Ok(t) => t,
            Err(why) => {
                rejected.push((idx, why));
                continue;
            }
        };
        let key_schema = schema_of(&r.record.key_schema, &r.record.key);
        let value_schema = if tombstone { None } else { schema_of(&r.record.value_schema, &r.record.value) };
        if !tombstone && value_schema.as_ref().is_none_or(|s| s.ty != Type::Struct) {
            rejected.push((
                idx,
                format!(
                    "the JDBC sink writes records whose value is a struct with a schema; this value is a {} {}(use \
                         a converter that gives schemas, such as JsonConverter with schemas.enable=true)",
                    r.record.value.kind(),
                    if value_schema.is_none() { "without a schema " } else { "" }
                ),
            ));
            continue;
        }
        // A record joins its table's last run when its schemas are that run's (a tombstone: its
        // key's); a run of deletes does not take values.
        let joins = last.get(&table).copied().filter(|&i| {
            let run = &runs[i];
            same(&run.key_schema, &key_schema)
                && (tombstone || (run.value_schema.is_some() && same(&run.value_schema, &value_schema)))
        });
        if let Some(i) = joins {
            runs[i].records.push(idx);
            continue;
        }
        match columns(settings, key_schema.as_ref(), value_schema.as_ref()) {
            Ok(columns) => {
                last.insert(table.clone(), runs.len());
                runs.push(Run { table, key_schema, value_schema, columns, records: vec![idx] });
            }
            Err(why) => rejected.push((idx, why)),
        }
    }
    (runs, rejected)
}
