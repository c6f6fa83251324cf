//! Kafka Connect's data model: schemas and the values they describe.
//!
//! A [`Schema`] is one of Connect's twelve types (the eight primitives, bytes, arrays, maps and
//! structs), optional or not, with an optional name, version, doc, default and parameters. Named
//! schemas give the logical types (`Decimal`, `Date`, `Time`, `Timestamp`), whose values are kept
//! as their underlying primitive (an unscaled big-endian integer, days, milliseconds of the day,
//! milliseconds since the epoch), as Connect's converters put them on the wire. A [`Value`] is the
//! data; without a schema ("schemaless", as `schemas.enable=false` gives) maps have string keys and
//! numbers are `Int64` or `Float64`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;

use crate::error::{ConnectError, Result};

/// A shared schema.
pub type SchemaRef = Arc<Schema>;

/// Connect's schema types, with the names its JSON schemas use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Type {
    /// 8-bit signed integer.
    Int8,
    /// 16-bit signed integer.
    Int16,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// Boolean.
    Boolean,
    /// UTF-8 string.
    String,
    /// Bytes.
    Bytes,
    /// An array of values of one schema.
    Array,
    /// A map from values of one schema to values of another.
    Map,
    /// Named fields, each with its schema.
    Struct,
}

impl Type {
    /// Every type, in Connect's order.
    pub const ALL: [Type; 12] = [
        Type::Int8,
        Type::Int16,
        Type::Int32,
        Type::Int64,
        Type::Float32,
        Type::Float64,
        Type::Boolean,
        Type::String,
        Type::Bytes,
        Type::Array,
        Type::Map,
        Type::Struct,
    ];

    /// The name Connect's JSON schemas and configs use (`int32`, `float`, `double`, ...).
    pub fn json_name(self) -> &'static str {
        match self {
            Type::Int8 => "int8",
            Type::Int16 => "int16",
            Type::Int32 => "int32",
            Type::Int64 => "int64",
            Type::Float32 => "float",
            Type::Float64 => "double",
            Type::Boolean => "boolean",
            Type::String => "string",
            Type::Bytes => "bytes",
            Type::Array => "array",
            Type::Map => "map",
            Type::Struct => "struct",
        }
    }

    /// The type a JSON schema's `type` names.
    pub fn from_json_name(name: &str) -> Option<Type> {
        Type::ALL.into_iter().find(|t| t.json_name() == name)
    }

    /// Connect's own name (`INT32`, `FLOAT64`, ...), as `Cast` and error messages use.
    pub fn connect_name(self) -> &'static str {
        match self {
            Type::Int8 => "INT8",
            Type::Int16 => "INT16",
            Type::Int32 => "INT32",
            Type::Int64 => "INT64",
            Type::Float32 => "FLOAT32",
            Type::Float64 => "FLOAT64",
            Type::Boolean => "BOOLEAN",
            Type::String => "STRING",
            Type::Bytes => "BYTES",
            Type::Array => "ARRAY",
            Type::Map => "MAP",
            Type::Struct => "STRUCT",
        }
    }

    /// Whether values of the type are single primitives (not arrays, maps or structs).
    pub fn is_primitive(self) -> bool {
        !matches!(self, Type::Array | Type::Map | Type::Struct)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.connect_name())
    }
}

/// The names of Connect's logical types.
pub mod logical {
    /// Arbitrary-precision decimal: bytes of the unscaled two's-complement big-endian integer,
    /// with the scale in the `scale` parameter.
    pub const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
    /// The `scale` parameter of a decimal.
    pub const DECIMAL_SCALE: &str = "scale";
    /// A date: int32 days since the epoch.
    pub const DATE: &str = "org.apache.kafka.connect.data.Date";
    /// A time of day: int32 milliseconds since midnight.
    pub const TIME: &str = "org.apache.kafka.connect.data.Time";
    /// An instant: int64 milliseconds since the epoch.
    pub const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
}

/// A field of a struct schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Its name.
    pub name: String,
    /// Its position in the struct.
    pub index: usize,
    /// Its schema.
    pub schema: SchemaRef,
}

/// A schema: a type and what qualifies it.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// The type.
    pub ty: Type,
    /// Whether the value may be null.
    pub optional: bool,
    /// Name (logical types and named structs).
    pub name: Option<String>,
    /// Version.
    pub version: Option<i32>,
    /// Documentation.
    pub doc: Option<String>,
    /// Default value.
    pub default: Option<Value>,
    /// Parameters (a decimal's scale, ...).
    pub parameters: BTreeMap<String, String>,
    /// A struct's fields.
    pub fields: Vec<Field>,
    /// A map's key schema.
    pub key_schema: Option<SchemaRef>,
    /// An array's element schema, a map's value schema.
    pub value_schema: Option<SchemaRef>,
}

impl Schema {
    /// A schema of `ty` with nothing else set.
    pub fn of(ty: Type) -> Schema {
        Schema {
            ty,
            optional: false,
            name: None,
            version: None,
            doc: None,
            default: None,
            parameters: BTreeMap::new(),
            fields: Vec::new(),
            key_schema: None,
            value_schema: None,
        }
    }

    /// A required primitive schema, shared.
    pub fn primitive(ty: Type) -> SchemaRef {
        Arc::new(Schema::of(ty))
    }

    /// An optional primitive schema, shared (Connect's `OPTIONAL_STRING_SCHEMA` and the like).
    pub fn optional_primitive(ty: Type) -> SchemaRef {
        Arc::new(Schema { optional: true, ..Schema::of(ty) })
    }

    /// An array of `items`.
    pub fn array(items: SchemaRef) -> Schema {
        Schema { value_schema: Some(items), ..Schema::of(Type::Array) }
    }

    /// A map from `keys` to `values`.
    pub fn map(keys: SchemaRef, values: SchemaRef) -> Schema {
        Schema { key_schema: Some(keys), value_schema: Some(values), ..Schema::of(Type::Map) }
    }

    /// A struct of `fields` (name, schema), in order.
    pub fn structure(fields: impl IntoIterator<Item = (String, SchemaRef)>) -> Schema {
        let fields =
            fields.into_iter().enumerate().map(|(index, (name, schema))| Field { name, index, schema }).collect();
        Schema { fields, ..Schema::of(Type::Struct) }
    }

    /// This schema made optional.
    pub fn into_optional(self) -> Schema {
        Schema { optional: true, ..self }
    }

    /// This schema with a name.
    pub fn named(self, name: impl Into<String>) -> Schema {
        Schema { name: Some(name.into()), ..self }
    }

    /// A struct schema's field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Connect's decimal of `scale`.
    pub fn decimal(scale: i32) -> Schema {
        let mut schema = Schema::of(Type::Bytes).named(logical::DECIMAL);
        schema.version = Some(1);
        schema.parameters.insert(logical::DECIMAL_SCALE.into(), scale.to_string());
        schema
    }

    /// Connect's date.
    pub fn date() -> Schema {
        Schema { version: Some(1), ..Schema::of(Type::Int32).named(logical::DATE) }
    }

    /// Connect's time of day.
    pub fn time() -> Schema {
        Schema { version: Some(1), ..Schema::of(Type::Int32).named(logical::TIME) }
    }

    /// Connect's timestamp.
    pub fn timestamp() -> Schema {
        Schema { version: Some(1), ..Schema::of(Type::Int64).named(logical::TIMESTAMP) }
    }

    /// Whether the schema is the logical type `name`.
    pub fn is_logical(&self, name: &str) -> bool {
        self.name.as_deref() == Some(name)
    }

    /// Checks that `value` fits this schema (Connect's `ConnectSchema.validateValue`): its type,
    /// null only when optional (or with a default), and, for containers, every element.
    pub fn validate(&self, value: &Value) -> Result<()> {
        self.validate_at(value, "")
    }

    fn validate_at(&self, value: &Value, path: &str) -> Result<()> {
        let here = || if path.is_empty() { String::from("the value") } else { format!("field {path:?}") };
        match value {
            Value::Null if self.optional || self.default.is_some() => Ok(()),
            Value::Null => Err(ConnectError::data(format!("{} is null but its schema is not optional", here()))),
            _ if value.type_of() != Some(self.ty) => {
                Err(ConnectError::data(format!("{} is {} but its schema is {}", here(), value.kind(), self.ty)))
            }
            Value::Array(items) => {
                let item_schema =
                    self.value_schema.as_ref().ok_or_else(|| ConnectError::data("array schema without items"))?;
                items.iter().try_for_each(|item| item_schema.validate_at(item, path))
            }
            Value::Map(entries) => {
                let (Some(k), Some(v)) = (&self.key_schema, &self.value_schema) else {
                    return Err(ConnectError::data("map schema without key or value schema"));
                };
                entries.iter().try_for_each(|(key, value)| {
                    k.validate_at(key, path)?;
                    v.validate_at(value, path)
                })
            }
            Value::Struct(s) => {
                if *s.schema != *self {
                    return Err(ConnectError::data(format!("{} is a struct of another schema", here())));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A value of Connect's data model.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Null (a tombstone as a record's value).
    Null,
    /// INT8.
    Int8(i8),
    /// INT16.
    Int16(i16),
    /// INT32 (and the logical Date and Time).
    Int32(i32),
    /// INT64 (and the logical Timestamp).
    Int64(i64),
    /// FLOAT32.
    Float32(f32),
    /// FLOAT64.
    Float64(f64),
    /// BOOLEAN.
    Boolean(bool),
    /// STRING.
    String(String),
    /// BYTES (and the logical Decimal).
    Bytes(Bytes),
    /// ARRAY.
    Array(Vec<Value>),
    /// MAP, in insertion order; schemaless maps have string keys.
    Map(Vec<(Value, Value)>),
    /// STRUCT.
    Struct(Struct),
}

impl Value {
    /// The type of a non-null value.
    pub fn type_of(&self) -> Option<Type> {
        Some(match self {
            Value::Null => return None,
            Value::Int8(_) => Type::Int8,
            Value::Int16(_) => Type::Int16,
            Value::Int32(_) => Type::Int32,
            Value::Int64(_) => Type::Int64,
            Value::Float32(_) => Type::Float32,
            Value::Float64(_) => Type::Float64,
            Value::Boolean(_) => Type::Boolean,
            Value::String(_) => Type::String,
            Value::Bytes(_) => Type::Bytes,
            Value::Array(_) => Type::Array,
            Value::Map(_) => Type::Map,
            Value::Struct(_) => Type::Struct,
        })
    }

    /// What the value is, for messages (`INT32`, `null`, ...).
    pub fn kind(&self) -> &'static str {
        self.type_of().map_or("null", Type::connect_name)
    }

    /// Whether this is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string of a `String`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A schemaless map's entry under a string key.
    pub fn map_get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The integer of an integer value, widened.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int8(v) => Some(v.into()),
            Value::Int16(v) => Some(v.into()),
            Value::Int32(v) => Some(v.into()),
            Value::Int64(v) => Some(v),
            _ => None,
        }
    }

    /// A schemaless map of string keys.
    pub fn string_map(entries: impl IntoIterator<Item = (String, Value)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (Value::String(k), v)).collect())
    }

    /// The schema Connect infers for a schemaless value (`Values.inferSchema`): primitives get
    /// their type, and arrays and maps whose elements agree get one; `None` when it cannot tell.
    pub fn infer_schema(&self) -> Option<SchemaRef> {
        match self {
            Value::Null => None,
            Value::Struct(s) => Some(s.schema.clone()),
            Value::Array(items) => {
                let first = items.first()?.infer_schema()?;
                items
                    .iter()
                    .skip(1)
                    .all(|i| i.infer_schema().as_ref() == Some(&first))
                    .then(|| Arc::new(Schema::array(first)))
            }
            Value::Map(entries) => {
                let (k, v) = entries.first()?;
                let (ks, vs) = (k.infer_schema()?, v.infer_schema()?);
                let agree = entries
                    .iter()
                    .all(|(k, v)| k.infer_schema().as_ref() == Some(&ks) && v.infer_schema().as_ref() == Some(&vs));
                agree.then(|| Arc::new(Schema::map(ks, vs)))
            }
            other => Some(Schema::primitive(other.type_of()?)),
        }
    }
}

/// Text as Java's `toString` gives it for Connect's values (what `StringConverter` and the
/// FileStream sink write): primitives as themselves, lists as `[a, b]`, maps as `{k=v, k2=v2}`,
/// structs as `Struct{a=1,b=x}`; bytes as base64 (Java would print an array's identity).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Int8(v) => write!(f, "{v}"),
            Value::Int16(v) => write!(f, "{v}"),
            Value::Int32(v) => write!(f, "{v}"),
            Value::Int64(v) => write!(f, "{v}"),
            Value::Float32(v) => write!(f, "{}", java_float(f64::from(*v))),
            Value::Float64(v) => write!(f, "{}", java_float(*v)),
            Value::Boolean(v) => write!(f, "{v}"),
            Value::String(s) => f.write_str(s),
            Value::Bytes(b) => f.write_str(&base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}={v}")?;
                }
                f.write_str("}")
            }
            Value::Struct(s) => write!(f, "{s}"),
        }
    }
}

/// A float as Java prints a double: integral values keep a `.0`.
fn java_float(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e7 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// A struct value: its schema and one value per field.
#[derive(Debug, Clone, PartialEq)]
pub struct Struct {
    /// The struct's schema (of type `Struct`).
    pub schema: SchemaRef,
    /// One value per field, in field order.
    pub values: Vec<Value>,
}

impl Struct {
    /// An empty struct of `schema`: every field null.
    pub fn new(schema: SchemaRef) -> Struct {
        let values = vec![Value::Null; schema.fields.len()];
        Struct { schema, values }
    }

    /// Sets a field by name, checking the value against the field's schema.
    pub fn put(&mut self, field: &str, value: Value) -> Result<&mut Struct> {
        let f =
            self.schema.field(field).ok_or_else(|| ConnectError::data(format!("{field} is not a valid field name")))?;
        f.schema.validate(&value)?;
        self.values[f.index] = value;
        Ok(self)
    }

    /// A field's value by name (`None` for a field the schema lacks).
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.schema.field(field).map(|f| &self.values[f.index])
    }

    /// Checks every required field is set (Connect's `Struct.validate`).
    pub fn validate(&self) -> Result<()> {
        for (field, value) in self.schema.fields.iter().zip(&self.values) {
            field.schema.validate(value).map_err(|e| ConnectError::data(format!("field {}: {e}", field.name)))?;
        }
        Ok(())
    }
}

impl fmt::Display for Struct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Struct{")?;
        let mut first = true;
        for (field, value) in self.schema.fields.iter().zip(&self.values) {
            if value.is_null() {
                continue;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{}={value}", field.name)?;
        }
        f.write_str("}")
    }
}

/// A header of a Connect record: a key and a value with its schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Key.
    pub key: String,
    /// The value's schema, if known.
    pub schema: Option<SchemaRef>,
    /// Value.
    pub value: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_check_their_fields() {
        let schema = Arc::new(Schema::structure([
            ("id".to_string(), Schema::primitive(Type::Int32)),
            ("name".to_string(), Schema::optional_primitive(Type::String)),
        ]));
        let mut s = Struct::new(schema);
        assert!(s.validate().is_err(), "a required field is unset");
        s.put("id", Value::Int32(7)).unwrap();
        s.validate().unwrap();
        let err = s.put("id", Value::String("x".into())).unwrap_err();
        assert!(err.to_string().contains("STRING but its schema is INT32"), "{err}");
        assert!(s.put("nope", Value::Null).is_err());
        assert_eq!(s.to_string(), "Struct{id=7}");
    }

    #[test]
    fn schemaless_values_infer_schemas() {
        assert_eq!(Value::Int64(1).infer_schema().unwrap().ty, Type::Int64);
        let arr = Value::Array(vec![Value::Int64(1), Value::Int64(2)]);
        assert_eq!(arr.infer_schema().unwrap().ty, Type::Array);
        let mixed = Value::Array(vec![Value::Int64(1), Value::String("a".into())]);
        assert!(mixed.infer_schema().is_none());
        assert_eq!(Value::Float64(2.0).to_string(), "2.0");
    }
}
