//! Kafka Connect's `JsonConverter`: with `schemas.enable=true` (the default) each key or value is
//! an envelope `{"schema": ..., "payload": ...}` carrying its schema in Connect's JSON schema
//! form; with `false`, plain JSON whose schema is inferred on reading (integers as INT64, other
//! numbers as FLOAT64, objects as maps). Written text keeps struct fields in schema order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value as Json;

use super::{Converter, HeaderConverter};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance, Validator};
use crate::data::{logical, Schema, SchemaRef, Struct, Type, Value};
use crate::error::{ConnectError, Result};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The JSON converter's keys.
pub(super) fn config_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::optional(
            "schemas.enable",
            ConfigType::Boolean,
            Some("true"),
            Importance::High,
            "Include schemas within each of the serialized values and keys.",
        ))
        .define(ConfigKey::optional(
            "schemas.cache.size",
            ConfigType::Int,
            Some("1000"),
            Importance::High,
            "The maximum number of schemas that can be cached in this converter instance.",
        ))
        .define(
            ConfigKey::optional(
                "decimal.format",
                ConfigType::String,
                Some("BASE64"),
                Importance::Low,
                "How decimals are written: BASE64 (their unscaled bytes) or NUMERIC (a JSON number).",
            )
            .validated(Validator::one_of(&["BASE64", "NUMERIC"])),
        )
        .define(ConfigKey::optional(
            "replace.null.with.default",
            ConfigType::Boolean,
            Some("true"),
            Importance::Low,
            "Whether a null field with a default value is written as the default.",
        ))
}

/// The JSON converter.
#[derive(Debug, Clone)]
pub struct JsonConverter {
    schemas: bool,
    decimal_numeric: bool,
    replace_null_with_default: bool,
}

impl JsonConverter {
    /// A converter from its configs.
    pub fn new(config: &Config, _is_key: bool) -> Result<Self> {
        Ok(JsonConverter {
            schemas: config.boolean("schemas.enable", true)?,
            decimal_numeric: config.get("decimal.format").is_some_and(|f| f.eq_ignore_ascii_case("NUMERIC")),
            replace_null_with_default: config.boolean("replace.null.with.default", true)?,
        })
    }

    /// A converter with or without schema envelopes and the other settings at their defaults.
    pub fn with_schemas(schemas: bool) -> Self {
        JsonConverter { schemas, decimal_numeric: false, replace_null_with_default: true }
    }

    pub(super) fn write(&self, schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>> {
        if schema.is_none() && value.is_null() {
            return Ok(None);
        }
        let mut out = String::new();
        if self.schemas {
            out.push_str("{\"schema\":");
            match schema {
                Some(s) => write_schema(&mut out, s),
                None => out.push_str("null"),
            }
            out.push_str(",\"payload\":");
            self.write_value(&mut out, schema.map(|s| &**s), value)?;
            out.push('}');
        } else {
            self.write_value(&mut out, schema.map(|s| &**s), value)?;
        }
        Ok(Some(Bytes::from(out)))
    }

    fn write_value(&self, out: &mut String, schema: Option<&Schema>, value: &Value) -> Result<()> {
        if value.is_null() {
            return match schema {
                None => {
                    out.push_str("null");
                    Ok(())
                }
                Some(Schema { default: Some(default), .. }) if self.replace_null_with_default => {
                    self.write_value(out, schema, &default.clone())
                }
                Some(s) if s.optional || s.default.is_some() => {
                    out.push_str("null");
                    Ok(())
                }
                Some(_) => Err(ConnectError::data(
                    "Conversion error: null value for field that is required and has no default value",
                )),
            };
        }
        if let Some(s) = schema {
            if value.type_of() != Some(s.ty) {
                return Err(ConnectError::data(format!("Invalid type for {}: {} is not {}", s.ty, value.kind(), s.ty)));
            }
            if s.is_logical(logical::DECIMAL) && self.decimal_numeric {
                if let Value::Bytes(b) = value {
                    out.push_str(&decimal_text(b, decimal_scale(s)?));
                    return Ok(());
                }
            }
        }
        match value {
            Value::Null => out.push_str("null"),
            Value::Int8(v) => write_display(out, v),
            Value::Int16(v) => write_display(out, v),
            Value::Int32(v) => write_display(out, v),
            Value::Int64(v) => write_display(out, v),
            Value::Float32(v) => write_float(out, f64::from(*v)),
            Value::Float64(v) => write_float(out, *v),
            Value::Boolean(v) => write_display(out, v),
            Value::String(s) => write_string(out, s),
            Value::Bytes(b) => write_string(out, &BASE64.encode(b)),
            Value::Array(items) => {
                let item_schema = schema.and_then(|s| s.value_schema.as_deref());
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.write_value(out, item_schema, item)?;
                }
                out.push(']');
            }
            Value::Map(entries) => {
                let (ks, vs) = match schema {
                    Some(s) => (s.key_schema.as_deref(), s.value_schema.as_deref()),
                    None => (None, None),
                };
                let object = match ks {
                    Some(k) => k.ty == Type::String,
                    None => entries.iter().all(|(k, _)| k.as_str().is_some()),
                };
                if object {
                    out.push('{');
                    for (i, (k, v)) in entries.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let key =
                            k.as_str().ok_or_else(|| ConnectError::data("a map with string keys has a null key"))?;
                        write_string(out, key);
                        out.push(':');
                        self.write_value(out, vs, v)?;
                    }
                    out.push('}');
                } else {
                    // Maps with keys other than strings are arrays of [key, value] pairs.
                    out.push('[');
                    for (i, (k, v)) in entries.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push('[');
                        self.write_value(out, ks, k)?;
                        out.push(',');
                        self.write_value(out, vs, v)?;
                        out.push(']');
                    }
                    out.push(']');
                }
            }
            Value::Struct(st) => {
                if let Some(s) = schema {
                    if *st.schema != *s {
                        return Err(ConnectError::data("Mismatching schema."));
                    }
                }
                out.push('{');
                for (i, (field, v)) in st.schema.fields.iter().zip(&st.values).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, &field.name);
                    out.push(':');
                    self.write_value(out, Some(&field.schema), v)
                        .map_err(|e| ConnectError::data(format!("field {}: {e}", field.name)))?;
                }
                out.push('}');
            }
        }
        Ok(())
    }

    fn read(&self, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)> {
        let Some(bytes) = bytes else { return Ok((None, Value::Null)) };
        let json: Json = serde_json::from_slice(bytes).map_err(|e| {
            ConnectError::data(format!(
                "Converting byte[] to Kafka Connect data failed due to serialization error: {e}"
            ))
        })?;
        if !self.schemas {
            return Ok((None, read_schemaless(&json)));
        }
        let envelope = match &json {
            Json::Object(o) if o.len() == 2 && o.contains_key("schema") && o.contains_key("payload") => o,
            _ => {
                return Err(ConnectError::data(
                    "JsonConverter with schemas.enable requires \"schema\" and \"payload\" fields and may not \
                     contain additional fields. If you are trying to deserialize plain JSON data, set \
                     schemas.enable=false in your converter configuration.",
                ))
            }
        };
        match &envelope["schema"] {
            Json::Null => Ok((None, read_schemaless(&envelope["payload"]))),
            schema => {
                let schema = Arc::new(parse_schema(schema)?);
                let value = read_value(&schema, &envelope["payload"])?;
                Ok((Some(schema), value))
            }
        }
    }
}

impl Converter for JsonConverter {
    fn encode(&self, _topic: &str, schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>> {
        self.write(schema, value)
    }

    fn decode(&self, _topic: &str, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)> {
        self.read(bytes)
    }
}

impl HeaderConverter for JsonConverter {
    fn encode(&self, _topic: &str, _key: &str, schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>> {
        self.write(schema, value)
    }

    fn decode(&self, _topic: &str, _key: &str, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)> {
        self.read(bytes)
    }
}

fn write_display(out: &mut String, v: impl std::fmt::Display) {
    let _ = write!(out, "{v}");
}

fn write_float(out: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{v:?}");
    } else {
        // JSON has no NaN or infinity; Jackson writes them as strings.
        write_string(out, &v.to_string());
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

/// Writes a schema in Connect's JSON schema form, keys in Kafka's order.
pub(crate) fn write_schema(out: &mut String, schema: &Schema) {
    write_schema_as(out, schema, None);
}

fn write_schema_as(out: &mut String, schema: &Schema, field: Option<&str>) {
    out.push_str("{\"type\":\"");
    out.push_str(schema.ty.json_name());
    out.push('"');
    match schema.ty {
        Type::Struct => {
            out.push_str(",\"fields\":[");
            for (i, f) in schema.fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema_as(out, &f.schema, Some(&f.name));
            }
            out.push(']');
        }
        Type::Array => {
            if let Some(items) = &schema.value_schema {
                out.push_str(",\"items\":");
                write_schema(out, items);
            }
        }
        Type::Map => {
            if let (Some(k), Some(v)) = (&schema.key_schema, &schema.value_schema) {
                out.push_str(",\"keys\":");
                write_schema(out, k);
                out.push_str(",\"values\":");
                write_schema(out, v);
            }
        }
        _ => {}
    }
    let _ = write!(out, ",\"optional\":{}", schema.optional);
    if let Some(name) = &schema.name {
        out.push_str(",\"name\":");
        write_string(out, name);
    }
    if let Some(version) = schema.version {
        let _ = write!(out, ",\"version\":{version}");
    }
    if let Some(doc) = &schema.doc {
        out.push_str(",\"doc\":");
        write_string(out, doc);
    }
    if !schema.parameters.is_empty() {
        out.push_str(",\"parameters\":{");
        for (i, (k, v)) in schema.parameters.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_string(out, k);
            out.push(':');
            write_string(out, v);
        }
        out.push('}');
    }
    if let Some(default) = &schema.default {
        out.push_str(",\"default\":");
        let converter = JsonConverter::with_schemas(false);
        if converter
            .write_value(out, Some(&Schema { default: None, optional: true, ..schema.clone() }), default)
            .is_err()
        {
            out.push_str("null");
        }
    }
    if let Some(field) = field {
        out.push_str(",\"field\":");
        write_string(out, field);
    }
    out.push('}');
}

/// Reads a schema in Connect's JSON schema form.
pub(crate) fn parse_schema(json: &Json) -> Result<Schema> {
    let bad = |what: &str| ConnectError::data(format!("Invalid JSON schema: {what}"));
    let object = json.as_object().ok_or_else(|| bad("a schema must be an object"))?;
    let type_name = object
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| ConnectError::data("Schema must contain 'type' field"))?;
    let ty = Type::from_json_name(type_name).ok_or_else(|| bad(&format!("unknown schema type {type_name:?}")))?;
    let mut schema = Schema::of(ty);
    match ty {
        Type::Struct => {
            let fields = object
                .get("fields")
                .and_then(Json::as_array)
                .ok_or_else(|| bad("struct schema's fields must be an array"))?;
            let mut parsed = Vec::new();
            for f in fields {
                let name = f
                    .get("field")
                    .and_then(Json::as_str)
                    .ok_or_else(|| bad("struct schema's field name not specified properly"))?;
                parsed.push((name.to_string(), Arc::new(parse_schema(f)?)));
            }
            schema = Schema::structure(parsed);
        }
        Type::Array => {
            let items = object.get("items").ok_or_else(|| bad("array schema did not specify the items type"))?;
            schema = Schema::array(Arc::new(parse_schema(items)?));
        }
        Type::Map => {
            let keys = object.get("keys").ok_or_else(|| bad("map schema did not specify the key type"))?;
            let values = object.get("values").ok_or_else(|| bad("map schema did not specify the value type"))?;
            schema = Schema::map(Arc::new(parse_schema(keys)?), Arc::new(parse_schema(values)?));
        }
        _ => {}
    }
    schema.optional = object.get("optional").and_then(Json::as_bool).unwrap_or(false);
    schema.name = object.get("name").and_then(Json::as_str).map(str::to_string);
    schema.version = object.get("version").and_then(Json::as_i64).and_then(|v| i32::try_from(v).ok());
    schema.doc = object.get("doc").and_then(Json::as_str).map(str::to_string);
    if let Some(params) = object.get("parameters") {
        let params = params.as_object().ok_or_else(|| bad("schema parameters must be an object"))?;
        schema.parameters = params
            .iter()
            .map(|(k, v)| {
                Ok((k.clone(), v.as_str().ok_or_else(|| bad("schema parameters must be strings"))?.to_string()))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
    }
    if let Some(default) = object.get("default").filter(|d| !d.is_null()) {
        let plain = Schema { default: None, optional: true, ..schema.clone() };
        schema.default = Some(read_value(&plain, default)?);
    }
    Ok(schema)
}

/// Reads plain JSON with no schema: integers as INT64, other numbers as FLOAT64, objects as maps.
pub(crate) fn read_schemaless(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int64(i),
            None => Value::Float64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(read_schemaless).collect()),
        Json::Object(o) => Value::string_map(o.iter().map(|(k, v)| (k.clone(), read_schemaless(v)))),
    }
}

/// Reads JSON as a value of `schema`.
pub(crate) fn read_value(schema: &Schema, json: &Json) -> Result<Value> {
    if json.is_null() {
        if let Some(default) = &schema.default {
            return Ok(default.clone());
        }
        if schema.optional {
            return Ok(Value::Null);
        }
        return Err(ConnectError::data(format!("Invalid null value for required {} field", schema.ty)));
    }
    let mismatch = || ConnectError::data(format!("Invalid JSON for {} field: {json}", schema.ty));
    let int = || json.as_i64().ok_or_else(mismatch);
    Ok(match schema.ty {
        Type::Int8 => Value::Int8(i8::try_from(int()?).map_err(|_| mismatch())?),
        Type::Int16 => Value::Int16(i16::try_from(int()?).map_err(|_| mismatch())?),
        Type::Int32 => Value::Int32(i32::try_from(int()?).map_err(|_| mismatch())?),
        Type::Int64 => Value::Int64(int()?),
        Type::Float32 => Value::Float32(json.as_f64().ok_or_else(mismatch)? as f32),
        Type::Float64 => Value::Float64(json.as_f64().ok_or_else(mismatch)?),
        Type::Boolean => Value::Boolean(json.as_bool().ok_or_else(mismatch)?),
        Type::String => Value::String(json.as_str().ok_or_else(mismatch)?.to_string()),
        Type::Bytes if schema.is_logical(logical::DECIMAL) && json.is_number() => {
            Value::Bytes(decimal_bytes(&json.to_string(), decimal_scale(schema)?)?)
        }
        Type::Bytes => {
            let text = json.as_str().ok_or_else(mismatch)?;
            Value::Bytes(Bytes::from(
                BASE64.decode(text).map_err(|e| ConnectError::data(format!("Invalid bytes field: {e}")))?,
            ))
        }
        Type::Array => {
            let items =
                schema.value_schema.as_deref().ok_or_else(|| ConnectError::data("array schema without items"))?;
            let array = json.as_array().ok_or_else(mismatch)?;
            Value::Array(array.iter().map(|j| read_value(items, j)).collect::<Result<_>>()?)
        }
        Type::Map => {
            let (Some(ks), Some(vs)) = (schema.key_schema.as_deref(), schema.value_schema.as_deref()) else {
                return Err(ConnectError::data("map schema without key or value schema"));
            };
            if ks.ty == Type::String {
                let object = json.as_object().ok_or_else(mismatch)?;
                Value::Map(
                    object
                        .iter()
                        .map(|(k, v)| Ok((Value::String(k.clone()), read_value(vs, v)?)))
                        .collect::<Result<_>>()?,
                )
            } else {
                let pairs = json.as_array().ok_or_else(mismatch)?;
                Value::Map(
                    pairs
                        .iter()
                        .map(|pair| match pair.as_array().map(Vec::as_slice) {
                            Some([k, v]) => Ok((read_value(ks, k)?, read_value(vs, v)?)),
                            _ => Err(ConnectError::data("Found invalid map entry instead of array tuple")),
                        })
                        .collect::<Result<_>>()?,
                )
            }
        }
        Type::Struct => {
            let object =
                json.as_object().ok_or_else(|| ConnectError::data("Structs should be encoded as JSON objects"))?;
            let schema = Arc::new(schema.clone());
            let mut st = Struct::new(schema.clone());
            for field in &schema.fields {
                let v = read_value(&field.schema, object.get(&field.name).unwrap_or(&Json::Null))
                    .map_err(|e| ConnectError::data(format!("field {}: {e}", field.name)))?;
                st.values[field.index] = v;
            }
            Value::Struct(st)
        }
    })
}

fn decimal_scale(schema: &Schema) -> Result<u32> {
    schema
        .parameters
        .get(logical::DECIMAL_SCALE)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ConnectError::data("Invalid Decimal schema: scale parameter not found."))
}

/// A decimal's unscaled big-endian two's-complement bytes as text with `scale` digits after
/// the point. Up to 16 bytes (i128).
fn decimal_text(bytes: &[u8], scale: u32) -> String {
    if bytes.is_empty() || bytes.len() > 16 {
        return "0".into();
    }
    let negative = bytes[0] & 0x80 != 0;
    let mut buf = if negative { [0xff; 16] } else { [0; 16] };
    buf[16 - bytes.len()..].copy_from_slice(bytes);
    let unscaled = i128::from_be_bytes(buf);
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let text = if scale == 0 {
        digits
    } else if digits.len() > scale {
        format!("{}.{}", &digits[..digits.len() - scale], &digits[digits.len() - scale..])
    } else {
        format!("0.{}{}", "0".repeat(scale - digits.len()), digits)
    };
    if negative {
        format!("-{text}")
    } else {
        text
    }
}

/// A decimal number's text as unscaled bytes at `scale` (the minimal two's-complement form).
fn decimal_bytes(text: &str, scale: u32) -> Result<Bytes> {
    let bad = || ConnectError::data(format!("Invalid decimal {text}"));
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let mut frac = frac.to_string();
    if frac.len() > scale as usize {
        return Err(ConnectError::data(format!("Decimal {text} has more digits than its scale {scale}")));
    }
    frac.extend(std::iter::repeat_n('0', scale as usize - frac.len()));
    let unscaled: i128 = format!("{int}{frac}").parse().map_err(|_| bad())?;
    let unscaled = if negative { -unscaled } else { unscaled };
    let full = unscaled.to_be_bytes();
    let sign = if unscaled < 0 { 0xff } else { 0 };
    let mut start = 0;
    while start < 15 && full[start] == sign && (full[start + 1] & 0x80 == sign & 0x80) {
        start += 1;
    }
    Ok(Bytes::copy_from_slice(&full[start..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_round_trip_as_numbers() {
        for (text, scale) in [("12.34", 2), ("-0.05", 2), ("100", 0), ("-128", 0), ("0.000", 3)] {
            let bytes = decimal_bytes(text, scale).unwrap();
            let back = decimal_text(&bytes, scale);
            let expected = if text == "0.000" { "0.000" } else { text };
            assert_eq!(back, expected);
        }
        assert_eq!(&decimal_bytes("-128", 0).unwrap()[..], [0x80]);
        assert_eq!(&decimal_bytes("128", 0).unwrap()[..], [0x00, 0x80]);
    }
}
