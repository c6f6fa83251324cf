//! Kafka Connect's simple converters: `StringConverter`, `ByteArrayConverter`, the number
//! converters (`IntegerConverter`, `LongConverter`, ... : fixed-width big-endian, as Kafka's
//! serializers write them) and `SimpleHeaderConverter`, the default for headers.

use bytes::Bytes;

use super::{Converter, HeaderConverter, PLUGIN_CLASS};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance};
use crate::data::{Schema, SchemaRef, Type, Value};
use crate::error::{ConnectError, Result};

/// The string converter's keys.
pub(super) fn string_config_def() -> ConfigDef {
    ConfigDef::new().define(ConfigKey::optional(
        "converter.encoding",
        ConfigType::String,
        Some("UTF-8"),
        Importance::High,
        "The name of the character encoding (only UTF-8).",
    ))
}

/// Values as their text, read back as optional strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringConverter;

impl StringConverter {
    /// A converter from its configs: only UTF-8 is known.
    pub fn new(config: &Config) -> Result<Self> {
        match config.get("converter.encoding") {
            None => Ok(StringConverter),
            Some(e) if e.eq_ignore_ascii_case("UTF-8") || e.eq_ignore_ascii_case("UTF8") => Ok(StringConverter),
            Some(e) => Err(ConnectError::config("converter.encoding", e, "only UTF-8 is supported")),
        }
    }

    fn write(value: &Value) -> Option<Bytes> {
        match value {
            Value::Null => None,
            Value::String(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
            other => Some(Bytes::from(other.to_string())),
        }
    }

    fn read(bytes: Option<&[u8]>) -> (Option<SchemaRef>, Value) {
        let value = match bytes {
            None => Value::Null,
            Some(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        };
        (Some(Schema::optional_primitive(Type::String)), value)
    }
}

impl Converter for StringConverter {
    fn encode(&self, _topic: &str, _schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>> {
        Ok(Self::write(value))
    }

    fn decode(&self, _topic: &str, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)> {
        Ok(Self::read(bytes))
    }
}

impl HeaderConverter for StringConverter {
    fn encode(&self, _topic: &str, _key: &str, _schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>> {
        Ok(Self::write(value))
    }

    fn decode(&self, _topic: &str, _key: &str, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)> {
        Ok(Self::read(bytes))
    }
}

/// Bytes passed through as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteArrayConverter;

impl ByteArrayConverter {
    fn write(schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>> {
        if let Some(s) = schema.filter(|s| s.ty != Type::Bytes) {
            return Err(ConnectError::data(format!("Invalid schema type for ByteArrayConverter: {}", s.ty)));
        }
        match value {
            Value::Null => Ok(None),
            Value::Bytes(b) => Ok(Some(b.clone())),
            other => Err(ConnectError::data(format!(
                "ByteArrayConverter is not compatible with objects of type {}",
                other.kind()
            ))),
        }
    }

    fn read(bytes: Option<&[u8]>) -> (Option<SchemaRef>, Value) {
        let value = bytes.map_or(Value::Null, |b| Value::Bytes(Bytes::copy_from_slice(b)));
        (Some(Schema::optional_primitive(Type::Bytes)), value)
    }
}

impl Converter for ByteArrayConverter {
    fn encode(&self, _topic: &str, schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>> {
        Self::write(schema, value)
    }

    fn decode(&self, _topic: &str, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)> {
        Ok(Self::read(bytes))
    }
}

impl HeaderConverter for ByteArrayConverter {
    fn encode(&self, _topic: &str, _key: &str, schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>> {
        Self::write(schema, value)
    }

    fn decode(&self, _topic: &str, _key: &str, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)> {
        Ok(Self::read(bytes))
    }
}

/// The number converters: Kafka's class, its aliases, and the type it converts.
pub(super) const NUMBER_CONVERTERS: [(&str, &[&str], Type); 6] = [
    ("org.apache.kafka.connect.converters.ShortConverter", &["ShortConverter", "Short"], Type::Int16),
    ("org.apache.kafka.connect.converters.IntegerConverter", &["IntegerConverter", "Integer"], Type::Int32),
    ("org.apache.kafka.connect.converters.LongConverter", &["LongConverter", "Long"], Type::Int64),
    ("org.apache.kafka.connect.converters.FloatConverter", &["FloatConverter", "Float"], Type::Float32),
    ("org.apache.kafka.connect.converters.DoubleConverter", &["DoubleConverter", "Double"], Type::Float64),
    ("org.apache.kafka.connect.converters.BooleanConverter", &["BooleanConverter", "Boolean"], Type::Boolean),
];

/// One number (or boolean) as its fixed-width big-endian bytes.
#[derive(Debug, Clone, Copy)]
pub struct NumberConverter {
    ty: Type,
}

impl NumberConverter {
    /// The converter for `ty` (one of INT16, INT32, INT64, FLOAT32, FLOAT64, BOOLEAN).
    pub fn new(ty: Type) -> Result<Self> {
        if NUMBER_CONVERTERS.iter().any(|(_, _, t)| *t == ty) {
            Ok(NumberConverter { ty })
        } else {
            Err(ConnectError::config("converter", ty.connect_name(), "no number converter for this type"))
        }
    }

    /// The converter the registry made this plugin as.
    pub(super) fn named(config: &Config) -> Result<Self> {
        let class = config.string(PLUGIN_CLASS)?;
        let (_, _, ty) = NUMBER_CONVERTERS
            .iter()
            .find(|(c, _, _)| *c == class)
            .ok_or_else(|| ConnectError::config("converter", class, "not a number converter"))?;
        NumberConverter::new(*ty)
    }

    fn write(&self, value: &Value) -> Result<Option<Bytes>> {
        let bytes: Vec<u8> = match (self.ty, value) {
            (_, Value::Null) => return Ok(None),
            (Type::Int16, Value::Int16(v)) => v.to_be_bytes().into(),
            (Type::Int32, Value::Int32(v)) => v.to_be_bytes().into(),
            (Type::Int64, Value::Int64(v)) => v.to_be_bytes().into(),
            (Type::Float32, Value::Float32(v)) => v.to_be_bytes().into(),
            (Type::Float64, Value::Float64(v)) => v.to_be_bytes().into(),
            (Type::Boolean, Value::Boolean(v)) => vec![u8::from(*v)],
            (ty, other) => {
                return Err(ConnectError::data(format!(
                    "Failed to serialize to {ty} (was {}): the {} converter takes only {ty} values",
                    other.kind(),
                    ty.json_name()
                )))
            }
        };
        Ok(Some(Bytes::from(bytes)))
    }

    fn read(&self, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)> {
        let schema = Some(Schema::optional_primitive(self.ty));
        let Some(b) = bytes else { return Ok((schema, Value::Null)) };
        let width = match self.ty {
            Type::Int16 => 2,
            Type::Int32 | Type::Float32 => 4,
            Type::Int64 | Type::Float64 => 8,
            _ => 1,
        };
        let array = |b: &[u8]| -> Result<[u8; 8]> {
            if b.len() != width {
                return Err(ConnectError::data(format!(
                    "Failed to deserialize {}: size of data received is {}, not {width}",
                    self.ty,
                    b.len()
                )));
            }
            let mut out = [0; 8];
            out[..width].copy_from_slice(b);
            Ok(out)
        };
        let a = array(b)?;
        let value = match self.ty {
            Type::Int16 => Value::Int16(i16::from_be_bytes([a[0], a[1]])),
            Type::Int32 => Value::Int32(i32::from_be_bytes([a[0], a[1], a[2], a[3]])),
            Type::Int64 => Value::Int64(i64::from_be_bytes(a)),
            Type::Float32 => Value::Float32(f32::from_be_bytes([a[0], a[1], a[2], a[3]])),
            Type::Float64 => Value::Float64(f64::from_be_bytes(a)),
            _ => Value::Boolean(a[0] != 0),
        };
        Ok((schema, value))
    }
}

impl Converter for NumberConverter {
    fn encode(&self, _topic: &str, _schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>> {
        self.write(value)
    }

    fn decode(&self, _topic: &str, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)> {
        self.read(bytes)
    }
}

impl HeaderConverter for NumberConverter {
    fn encode(&self, _topic: &str, _key: &str, _schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>> {
        self.write(value)
    }

    fn decode(&self, _topic: &str, _key: &str, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)> {
        self.read(bytes)
    }
}

/// Header values as text, read back with their type inferred (Connect's `Values.parseString`):
/// `true`/`false` as booleans, integers as the smallest integer type holding them, other numbers
/// as FLOAT64, JSON arrays and objects as arrays and maps, anything else as a string.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimpleHeaderConverter;

impl SimpleHeaderConverter {
    fn write(value: &Value) -> Option<Bytes> {
        match value {
            Value::Null => None,
            Value::String(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
            Value::Array(_) | Value::Map(_) | Value::Struct(_) => {
                super::JsonConverter::with_schemas(false).write(None, value).ok().flatten()
            }
            other => Some(Bytes::from(other.to_string())),
        }
    }

    fn read(bytes: Option<&[u8]>) -> (Option<SchemaRef>, Value) {
        let Some(b) = bytes else { return (None, Value::Null) };
        let text = String::from_utf8_lossy(b);
        let value = parse_string(&text);
        (value.infer_schema(), value)
    }
}

/// A string's value with its type inferred.
pub(crate) fn parse_string(text: &str) -> Value {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("true") || trimmed.eq_ignore_ascii_case("false") {
        return Value::Boolean(trimmed.eq_ignore_ascii_case("true"));
    }
    if let Ok(i) = trimmed.parse::<i64>() {
        return if let Ok(v) = i8::try_from(i) {
            Value::Int8(v)
        } else if let Ok(v) = i16::try_from(i) {
            Value::Int16(v)
        } else if let Ok(v) = i32::try_from(i) {
            Value::Int32(v)
        } else {
            Value::Int64(i)
        };
    }
    if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) {
        if let Ok(f) = trimmed.parse::<f64>() {
            return Value::Float64(f);
        }
    }
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(trimmed) {
            return super::json::read_schemaless(&json);
        }
    }
    Value::String(text.to_string())
}

impl HeaderConverter for SimpleHeaderConverter {
    fn encode(&self, _topic: &str, _key: &str, _schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>> {
        Ok(Self::write(value))
    }

    fn decode(&self, _topic: &str, _key: &str, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)> {
        Ok(Self::read(bytes))
    }
}

impl Converter for SimpleHeaderConverter {
    fn encode(&self, _topic: &str, _schema: Option<&SchemaRef>, value: &Value) -> Result<Option<Bytes>> {
        Ok(Self::write(value))
    }

    fn decode(&self, _topic: &str, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value)> {
        Ok(Self::read(bytes))
    }
}
