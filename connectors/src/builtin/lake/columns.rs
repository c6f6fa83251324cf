//! Records as Arrow columns: Connect schemas mapped to Arrow's types, values gathered column by
//! column into record batches, and schemaless values read by a declared schema.
//!
//! A struct value's fields are the columns; any other value is one column, `value`. Connect's
//! types map as Parquet's logical types expect: INT8..INT64, FLOAT32/64, BOOLEAN, STRING (UTF-8),
//! BYTES (binary), Decimal (decimal, precision from `connect.decimal.precision` or 38), Date,
//! Time (ms) and Timestamp (ms, UTC); arrays as lists, maps as maps, structs as groups.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, Int8Array, ListArray, MapArray, StringArray, StructArray, Time32MillisecondArray,
    TimestampMillisecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields, Schema as ArrowSchema, SchemaRef as ArrowSchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::data::{logical, Schema, SchemaRef, Struct, Type, Value};
use crate::error::{ConnectError, Result};

/// The column of a value that is not a struct.
pub(super) const VALUE_COLUMN: &str = "value";

/// The precision of a decimal whose schema does not give one: the most a 128-bit decimal holds.
const DECIMAL_PRECISION: u8 = 38;

/// The Arrow schema of records whose values have `schema`.
pub(super) fn arrow_schema(schema: &Schema) -> Result<ArrowSchemaRef> {
    let fields: Vec<Field> = match schema.ty {
        Type::Struct => schema.fields.iter().map(|f| field(&f.name, &f.schema)).collect::<Result<_>>()?,
        _ => vec![field(VALUE_COLUMN, schema)?],
    };
    Ok(Arc::new(ArrowSchema::new(fields)))
}

fn field(name: &str, schema: &Schema) -> Result<Field> {
    Ok(Field::new(name, data_type(schema)?, nullable(schema)))
}

/// A null of a field with a default is written as the default: its column is not nullable.
fn nullable(schema: &Schema) -> bool {
    schema.optional && schema.default.is_none()
}

fn data_type(schema: &Schema) -> Result<DataType> {
    let name = schema.name.as_deref();
    Ok(match schema.ty {
        Type::Int8 => DataType::Int8,
        Type::Int16 => DataType::Int16,
        Type::Int32 if name == Some(logical::DATE) => DataType::Date32,
        Type::Int32 if name == Some(logical::TIME) => DataType::Time32(TimeUnit::Millisecond),
        Type::Int32 => DataType::Int32,
        Type::Int64 if name == Some(logical::TIMESTAMP) => {
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        }
        Type::Int64 => DataType::Int64,
        Type::Float32 => DataType::Float32,
        Type::Float64 => DataType::Float64,
        Type::Boolean => DataType::Boolean,
        Type::String => DataType::Utf8,
        Type::Bytes if name == Some(logical::DECIMAL) => {
            let scale: i8 = schema
                .parameters
                .get(logical::DECIMAL_SCALE)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ConnectError::data("a Decimal schema without a scale"))?;
            let precision = schema
                .parameters
                .get("connect.decimal.precision")
                .and_then(|p| p.parse().ok())
                .filter(|p| (1..=DECIMAL_PRECISION).contains(p))
                .unwrap_or(DECIMAL_PRECISION);
            if i16::from(scale) > i16::from(precision) {
                return Err(ConnectError::data(format!("a Decimal of scale {scale} above its precision {precision}")));
            }
            DataType::Decimal128(precision, scale)
        }
        Type::Bytes => DataType::Binary,
        Type::Array => {
            let items =
                schema.value_schema.as_ref().ok_or_else(|| ConnectError::data("an array schema without items"))?;
            DataType::List(Arc::new(field("element", items)?))
        }
        Type::Map => {
            let (Some(k), Some(v)) = (&schema.key_schema, &schema.value_schema) else {
                return Err(ConnectError::data("a map schema without key or value schema"));
            };
            let mut key = field("key", k)?;
            // Parquet's map keys are never null.
            key.set_nullable(false);
            let entries = Field::new("key_value", DataType::Struct(Fields::from(vec![key, field("value", v)?])), false);
            DataType::Map(Arc::new(entries), false)
        }
        Type::Struct => {
            DataType::Struct(schema.fields.iter().map(|f| field(&f.name, &f.schema)).collect::<Result<Fields>>()?)
        }
    })
}

/// The record batch of `values`, all of `schema`, whose Arrow schema is `arrow`.
pub(super) fn batch(arrow: &ArrowSchemaRef, schema: &Schema, values: &[&Value]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = match schema.ty {
        Type::Struct => {
            let mut columns = Vec::with_capacity(schema.fields.len());
            for (i, f) in schema.fields.iter().enumerate() {
                let column: Vec<&Value> = values
                    .iter()
                    .map(|v| match v {
                        Value::Struct(s) => s.values.get(i).ok_or_else(|| short_struct(&f.name)),
                        other => Err(mismatch(schema, other)),
                    })
                    .collect::<Result<_>>()?;
                columns.push(array(&f.schema, arrow.field(i).data_type(), &column).map_err(|e| within(&f.name, e))?);
            }
            columns
        }
        _ => vec![array(schema, arrow.field(0).data_type(), values)?],
    };
    RecordBatch::try_new(arrow.clone(), columns).map_err(|e| ConnectError::data(format!("a record batch: {e}")))
}

fn short_struct(name: &str) -> ConnectError {
    ConnectError::data(format!("a struct without field {name:?}"))
}

fn mismatch(schema: &Schema, value: &Value) -> ConnectError {
    ConnectError::data(format!("{} where the schema says {}", value.kind(), schema.ty))
}

fn within(name: &str, e: ConnectError) -> ConnectError {
    ConnectError::data(format!("column {name:?}: {e}"))
}

/// The value a field holds: its default for a null, where it has one.
fn resolved<'a>(schema: &'a Schema, value: &'a Value) -> &'a Value {
    match (value, &schema.default) {
        (Value::Null, Some(default)) => default,
        _ => value,
    }
}

/// Gathers one Arrow array of `values`, each of `schema`, as `dtype`.
fn array(schema: &Schema, dtype: &DataType, values: &[&Value]) -> Result<ArrayRef> {
    macro_rules! primitive {
        ($array:ty, $variant:ident) => {{
            let column: $array = values
                .iter()
                .map(|v| match resolved(schema, v) {
                    Value::$variant(x) => Ok(Some(x.clone())),
                    Value::Null if schema.optional => Ok(None),
                    other => Err(mismatch(schema, other)),
                })
                .collect::<Result<_>>()?;
            Arc::new(column) as ArrayRef
        }};
    }
    Ok(match dtype {
        DataType::Int8 => primitive!(Int8Array, Int8),
        DataType::Int16 => primitive!(Int16Array, Int16),
        DataType::Int32 => primitive!(Int32Array, Int32),
        DataType::Date32 => primitive!(Date32Array, Int32),
        DataType::Time32(_) => primitive!(Time32MillisecondArray, Int32),
        DataType::Int64 => primitive!(Int64Array, Int64),
        DataType::Timestamp(..) => {
            let column: TimestampMillisecondArray = values
                .iter()
                .map(|v| match resolved(schema, v) {
                    Value::Int64(x) => Ok(Some(*x)),
                    Value::Null if schema.optional => Ok(None),
                    other => Err(mismatch(schema, other)),
                })
                .collect::<Result<_>>()?;
            Arc::new(column.with_timezone("UTC"))
        }
        DataType::Float32 => primitive!(Float32Array, Float32),
        DataType::Float64 => primitive!(Float64Array, Float64),
        DataType::Boolean => primitive!(BooleanArray, Boolean),
        DataType::Utf8 => {
            let column: StringArray = values
                .iter()
                .map(|v| match resolved(schema, v) {
                    Value::String(x) => Ok(Some(x.as_str())),
                    Value::Null if schema.optional => Ok(None),
                    other => Err(mismatch(schema, other)),
                })
                .collect::<Result<_>>()?;
            Arc::new(column)
        }
        DataType::Binary => {
            let column: BinaryArray = values
                .iter()
                .map(|v| match resolved(schema, v) {
                    Value::Bytes(x) => Ok(Some(x.as_ref())),
                    Value::Null if schema.optional => Ok(None),
                    other => Err(mismatch(schema, other)),
                })
                .collect::<Result<_>>()?;
            Arc::new(column)
        }
        DataType::Decimal128(precision, scale) => {
            let limit = 10i128.checked_pow(u32::from(*precision)).unwrap_or(i128::MAX);
            let column: Decimal128Array = values
                .iter()
                .map(|v| match resolved(schema, v) {
                    Value::Bytes(b) => {
                        let unscaled = unscaled(b)?;
                        match unscaled.checked_abs().is_some_and(|a| a < limit) {
                            true => Ok(Some(unscaled)),
                            false => Err(ConnectError::data(format!(
                                "a decimal of more than {precision} digits (unscaled {unscaled})"
                            ))),
                        }
                    }
                    Value::Null if schema.optional => Ok(None),
                    other => Err(mismatch(schema, other)),
                })
                .collect::<Result<_>>()?;
            Arc::new(
                column
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(|e| ConnectError::data(format!("a decimal column: {e}")))?,
            )
        }
        DataType::List(item_field) => {
            let items_schema =
                schema.value_schema.as_ref().ok_or_else(|| ConnectError::data("an array schema without items"))?;
            let mut lengths = Vec::with_capacity(values.len());
            let mut items = Vec::new();
            let mut valid = Vec::with_capacity(values.len());
            for v in values {
                match resolved(schema, v) {
                    Value::Array(a) => {
                        lengths.push(a.len());
                        items.extend(a.iter());
                        valid.push(true);
                    }
                    Value::Null if schema.optional => {
                        lengths.push(0);
                        valid.push(false);
                    }
                    other => return Err(mismatch(schema, other)),
                }
            }
            let child = array(items_schema, item_field.data_type(), &items)?;
            Arc::new(
                ListArray::try_new(item_field.clone(), OffsetBuffer::from_lengths(lengths), child, nulls(&valid))
                    .map_err(|e| ConnectError::data(format!("a list column: {e}")))?,
            )
        }
        DataType::Map(entries_field, sorted) => {
            let (Some(key_schema), Some(value_schema)) = (&schema.key_schema, &schema.value_schema) else {
                return Err(ConnectError::data("a map schema without key or value schema"));
            };
            let DataType::Struct(entry_fields) = entries_field.data_type() else {
                return Err(ConnectError::data("a map column without entries"));
            };
            let mut lengths = Vec::with_capacity(values.len());
            let (mut keys, mut vals) = (Vec::new(), Vec::new());
            let mut valid = Vec::with_capacity(values.len());
            for v in values {
                match resolved(schema, v) {
                    Value::Map(entries) => {
                        lengths.push(entries.len());
                        for (k, v) in entries {
                            if k.is_null() {
                                return Err(ConnectError::data("a map with a null key"));
                            }
                            keys.push(k);
                            vals.push(v);
                        }
                        valid.push(true);
                    }
                    Value::Null if schema.optional => {
                        lengths.push(0);
                        valid.push(false);
                    }
                    other => return Err(mismatch(schema, other)),
                }
            }
            let key_array = array(key_schema, entry_fields[0].data_type(), &keys)?;
            let value_array = array(value_schema, entry_fields[1].data_type(), &vals)?;
            let entries = StructArray::try_new(entry_fields.clone(), vec![key_array, value_array], None)
                .map_err(|e| ConnectError::data(format!("a map column's entries: {e}")))?;
            Arc::new(
                MapArray::try_new(
                    entries_field.clone(),
                    OffsetBuffer::from_lengths(lengths),
                    entries,
                    nulls(&valid),
                    *sorted,
                )
                .map_err(|e| ConnectError::data(format!("a map column: {e}")))?,
            )
        }
        DataType::Struct(fields) => {
            let mut valid = Vec::with_capacity(values.len());
            let mut structs: Vec<Option<&Struct>> = Vec::with_capacity(values.len());
            for v in values {
                match resolved(schema, v) {
                    Value::Struct(s) => {
                        structs.push(Some(s));
                        valid.push(true);
                    }
                    Value::Null if schema.optional => {
                        structs.push(None);
                        valid.push(false);
                    }
                    other => return Err(mismatch(schema, other)),
                }
            }
            let mut children = Vec::with_capacity(fields.len());
            for (i, f) in schema.fields.iter().enumerate() {
                // A null struct's fields are written as nulls (or defaults) under its null.
                let null = Value::Null;
                let column: Vec<&Value> = structs
                    .iter()
                    .map(|s| match s {
                        Some(s) => s.values.get(i).ok_or_else(|| short_struct(&f.name)),
                        None => Ok(&null),
                    })
                    .collect::<Result<_>>()?;
                let mut child_schema = (*f.schema).clone();
                if valid.iter().any(|v| !v) {
                    // Under a null parent a required field is null too.
                    child_schema.optional = true;
                }
                children.push(array(&child_schema, fields[i].data_type(), &column).map_err(|e| within(&f.name, e))?);
            }
            Arc::new(
                StructArray::try_new(fields.clone(), children, nulls(&valid))
                    .map_err(|e| ConnectError::data(format!("a struct column: {e}")))?,
            )
        }
        other => return Err(ConnectError::data(format!("no column of {other} is written"))),
    })
}

fn nulls(valid: &[bool]) -> Option<NullBuffer> {
    valid.iter().any(|v| !v).then(|| NullBuffer::from(valid.to_vec()))
}

/// A decimal's unscaled value from Connect's bytes (big-endian two's complement).
fn unscaled(bytes: &[u8]) -> Result<i128> {
    if bytes.len() > 16 {
        return Err(ConnectError::data(format!("a decimal of {} bytes; at most 16 fit 38 digits", bytes.len())));
    }
    if bytes.is_empty() {
        return Ok(0);
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xFF } else { 0 };
    let mut wide = [fill; 16];
    wide[16 - bytes.len()..].copy_from_slice(bytes);
    Ok(i128::from_be_bytes(wide))
}

/// A schemaless value (a map with string keys, as `schemas.enable=false` reads JSON) as a value
/// of the declared `schema`: fields by name, numbers narrowed where they fit, absent optional
/// fields null. Keys the schema lacks are left out.
pub(super) fn conform(schema: &SchemaRef, value: &Value) -> Result<Value> {
    conform_at(schema, value, "")
}

fn conform_at(schema: &SchemaRef, value: &Value, path: &str) -> Result<Value> {
    let here = || if path.is_empty() { "the value".to_string() } else { format!("field {path:?}") };
    let refuse = |what: &str| {
        ConnectError::data(format!("{} is {what}, where parquet.schema says {}", here(), describe(schema)))
    };
    let narrow = |x: i64| -> Result<Value> {
        let out_of_range = || ConnectError::data(format!("{} is {x}, out of range for {}", here(), describe(schema)));
        Ok(match schema.ty {
            Type::Int8 => Value::Int8(i8::try_from(x).map_err(|_| out_of_range())?),
            Type::Int16 => Value::Int16(i16::try_from(x).map_err(|_| out_of_range())?),
            Type::Int32 => Value::Int32(i32::try_from(x).map_err(|_| out_of_range())?),
            Type::Int64 => Value::Int64(x),
            Type::Float32 => Value::Float32(x as f32),
            Type::Float64 => Value::Float64(x as f64),
            _ => return Err(refuse("a number")),
        })
    };
    Ok(match value {
        Value::Null if schema.optional || schema.default.is_some() => Value::Null,
        Value::Null => return Err(ConnectError::data(format!("{} is missing or null, and not optional", here()))),
        Value::Int8(x) => narrow(i64::from(*x))?,
        Value::Int16(x) => narrow(i64::from(*x))?,
        Value::Int32(x) => narrow(i64::from(*x))?,
        Value::Int64(x) => narrow(*x)?,
        Value::Float32(x) => match schema.ty {
            Type::Float32 => Value::Float32(*x),
            Type::Float64 => Value::Float64(f64::from(*x)),
            _ => return Err(refuse("a fractional number")),
        },
        Value::Float64(x) => match schema.ty {
            Type::Float32 => Value::Float32(*x as f32),
            Type::Float64 => Value::Float64(*x),
            _ => return Err(refuse("a fractional number")),
        },
        Value::Boolean(b) if schema.ty == Type::Boolean => Value::Boolean(*b),
        Value::String(s) if schema.ty == Type::String => Value::String(s.clone()),
        Value::Bytes(b) if schema.ty == Type::Bytes => Value::Bytes(b.clone()),
        Value::Array(items) if schema.ty == Type::Array => {
            let item =
                schema.value_schema.as_ref().ok_or_else(|| ConnectError::data("an array schema without items"))?;
            Value::Array(items.iter().map(|i| conform_at(item, i, path)).collect::<Result<_>>()?)
        }
        Value::Map(entries) if schema.ty == Type::Struct => {
            let mut s = Struct::new(schema.clone());
            for f in &schema.fields {
                let inner = if path.is_empty() { f.name.clone() } else { format!("{path}.{}", f.name) };
                let v = entries.iter().find(|(k, _)| k.as_str() == Some(f.name.as_str())).map(|(_, v)| v);
                s.values[f.index] = conform_at(&f.schema, v.unwrap_or(&Value::Null), &inner)?;
            }
            Value::Struct(s)
        }
        Value::Map(entries) if schema.ty == Type::Map => {
            let (Some(k), Some(v)) = (&schema.key_schema, &schema.value_schema) else {
                return Err(ConnectError::data("a map schema without key or value schema"));
            };
            Value::Map(
                entries
                    .iter()
                    .map(|(key, value)| Ok((conform_at(k, key, path)?, conform_at(v, value, path)?)))
                    .collect::<Result<_>>()?,
            )
        }
        Value::Struct(s) if *s.schema == **schema => value.clone(),
        other => return Err(refuse(other.kind())),
    })
}

fn describe(schema: &Schema) -> String {
    match &schema.name {
        Some(name) => format!("{} ({name})", schema.ty),
        None => schema.ty.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;
    use bytes::Bytes;

    fn person() -> SchemaRef {
        let address =
            Arc::new(Schema::structure([("city".to_string(), Schema::primitive(Type::String))]).into_optional());
        Arc::new(Schema::structure([
            ("id".to_string(), Schema::primitive(Type::Int32)),
            ("name".to_string(), Schema::optional_primitive(Type::String)),
            ("price".to_string(), Arc::new(Schema::decimal(2))),
            ("born".to_string(), Arc::new(Schema::date())),
            ("seen".to_string(), Arc::new(Schema::timestamp())),
            ("tags".to_string(), Arc::new(Schema::array(Schema::primitive(Type::String)))),
            (
                "scores".to_string(),
                Arc::new(Schema::map(Schema::primitive(Type::String), Schema::primitive(Type::Int64))),
            ),
            ("address".to_string(), address),
        ]))
    }

    #[test]
    fn structs_become_columns_of_parquets_types() {
        let schema = person();
        let arrow = arrow_schema(&schema).unwrap();
        let types: Vec<String> = arrow.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect();
        insta::assert_snapshot!(types.join("\n"));
        let mut s = Struct::new(schema.clone());
        s.put("id", Value::Int32(7)).unwrap();
        s.put("price", Value::Bytes(Bytes::from_static(&[0xFF, 0x38]))).unwrap(); // -200: -2.00
        s.put("born", Value::Int32(20_000)).unwrap();
        s.put("seen", Value::Int64(1_700_000_000_000)).unwrap();
        s.put("tags", Value::Array(vec![Value::String("a".into()), Value::String("b".into())])).unwrap();
        s.put("scores", Value::Map(vec![(Value::String("x".into()), Value::Int64(1))])).unwrap();
        let value = Value::Struct(s);
        let batch = batch(&arrow, &schema, &[&value, &value]).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let price = batch.column(2).as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(price.value_as_string(0), "-2.00");
        assert_eq!(batch.column(7).null_count(), 2);
    }

    #[test]
    fn schemaless_values_are_read_by_the_declared_schema_naming_what_does_not_fit() {
        let schema = person();
        let fits = Value::string_map([
            ("id".to_string(), Value::Int64(3)),
            ("name".to_string(), Value::String("ann".into())),
            ("extra".to_string(), Value::Boolean(true)),
        ]);
        // The decimal, date and others are required: absent, refused by name.
        let e = conform(&schema, &fits).unwrap_err().to_string();
        assert!(e.contains("\"price\""), "{e}");
        let small = Arc::new(Schema::structure([
            ("id".to_string(), Schema::primitive(Type::Int8)),
            ("name".to_string(), Schema::optional_primitive(Type::String)),
        ]));
        let Value::Struct(s) = conform(&small, &fits).unwrap() else { panic!() };
        assert_eq!(s.values, vec![Value::Int8(3), Value::String("ann".into())]);
        let big = Value::string_map([("id".to_string(), Value::Int64(300))]);
        assert!(conform(&small, &big).unwrap_err().to_string().contains("out of range"));
        let text = Value::string_map([("id".to_string(), Value::String("x".into()))]);
        assert!(conform(&small, &text)
            .unwrap_err()
            .to_string()
            .contains("field \"id\" is STRING, where parquet.schema says INT8"));
    }
}
