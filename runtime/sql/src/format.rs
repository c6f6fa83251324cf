//! How a topic's record values are encoded, one format per topic table: JSON objects, CSV lines,
//! Avro records, or raw text. Ad-hoc scans, continuous queries' sources and the outputs queries
//! write all go through the same format, so a value reads the same way everywhere.
//!
//! - **JSON**: one object per value; its fields are the columns (by name).
//! - **CSV**: one line per value, its fields the declared columns in order, no header line; an
//!   empty field is null; timestamps as text (`2024-05-01T12:00:00`), as SQL casts it.
//! - **Avro**: one record per value in Avro's binary encoding, written with the table's Avro
//!   schema: the one declared (`schema = '{"type": "record", ...}'`, which also gives the columns
//!   when none are declared) or, without one, the record of the declared columns, each nullable
//!   (`["null", type]`), in order. With `framing = 'confluent'`, each value starts with the
//!   Confluent wire format's magic byte 0 and 4-byte schema id, which is checked and skipped (the
//!   declared schema must be the writer's).
//! - **raw**: the value as text in one column, `value`.

use std::sync::Arc;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::UnionSchema;
use apache_avro::types::Value as AvroValue;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema as AvroSchema;
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::{DataFusionError, ScalarValue};

use super::value::{null_of, write_json};

/// How a topic's record values are encoded.
#[derive(Debug, Clone)]
pub enum Format {
    /// One JSON object per value; its fields are the table's columns.
    Json,
    /// One CSV line per value: the columns in order, no header.
    Csv,
    /// One Avro record per value, in Avro's binary encoding.
    Avro(Arc<Avro>),
    /// The value as text, in one column `value`.
    Raw,
}

impl Format {
    /// The format's name, as declared.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Avro(_) => "avro",
            Format::Raw => "raw",
        }
    }

    /// The format `name` with its options: the Avro schema's JSON and the framing (Avro only).
    /// `declared` are the declared columns (an Avro schema is derived from them when none is
    /// given); returns the format and the value's columns.
    pub(crate) fn declare(
        name: &str,
        avro_schema: Option<&str>,
        framing: Option<&str>,
        declared: &[Field],
    ) -> datafusion::common::Result<(Format, Vec<Field>)> {
        let plan = |m: String| DataFusionError::Plan(m);
        let name = name.to_ascii_lowercase();
        if name != "avro" && (avro_schema.is_some() || framing.is_some()) {
            return Err(plan(format!("'schema' and 'framing' are options of the 'avro' format, not of '{name}'")));
        }
        match name.as_str() {
            "json" => Ok((Format::Json, declared.to_vec())),
            "csv" if declared.is_empty() => {
                Err(plan("a 'csv' topic table needs its columns declared: CSV values carry no field names".into()))
            }
            "csv" => Ok((Format::Csv, declared.to_vec())),
            "raw" if !declared.is_empty() => {
                Err(plan("a 'raw' topic table has one column, value (text): declare no columns".into()))
            }
            "raw" => Ok((Format::Raw, vec![Field::new("value", DataType::Utf8, true)])),
            "avro" => {
                let confluent = match framing.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("none") => false,
                    Some("confluent") => true,
                    Some(other) => {
                        return Err(plan(format!("framing '{other}' is not known (known: 'none', 'confluent')")))
                    }
                };
                let avro = match avro_schema {
                    Some(text) => Avro::parse(text, confluent)?,
                    None if declared.is_empty() => {
                        return Err(plan(
                            "an 'avro' topic table needs its columns or its Avro schema (schema = '{...}')".into(),
                        ))
                    }
                    None => Avro::derive(declared, confluent)?,
                };
                let columns = if declared.is_empty() { avro.columns()? } else { declared.to_vec() };
                // Declared columns must be fields of the schema (by name).
                for c in &columns {
                    if avro.field(c.name()).is_none() {
                        return Err(plan(format!("column {} is not a field of the Avro schema", c.name())));
                    }
                }
                Ok((Format::Avro(Arc::new(avro)), columns))
            }
            other => Err(plan(format!(
                "format '{other}' is not supported for topics (supported: 'json', 'csv', 'avro', 'raw')"
            ))),
        }
    }

    /// The options that declare this format again (`format = ...`, and Avro's schema/framing),
    /// as `WITH` options.
    pub(crate) fn with_options(&self) -> String {
        match self {
            Format::Avro(a) => {
                let framing = if a.confluent { ", framing = 'confluent'" } else { "" };
                format!("format = 'avro', schema = '{}'{framing}", a.text.replace('\'', "''"))
            }
            other => format!("format = '{}'", other.name()),
        }
    }
}

/// An Avro record schema, values written with it.
pub struct Avro {
    codec: Codec,
    /// The schema's JSON.
    text: String,
    /// Each value starts with the Confluent wire format's header (magic byte 0, schema id).
    confluent: bool,
}

/// The schema with its reader and writer, built once: building one resolves the schema's names,
/// which would otherwise be done again for every value.
#[ouroboros::self_referencing]
struct Codec {
    schema: AvroSchema,
    #[borrows(schema)]
    #[covariant]
    reader: GenericDatumReader<'this>,
    #[borrows(schema)]
    #[covariant]
    writer: GenericDatumWriter<'this>,
}

impl std::fmt::Debug for Avro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Avro").field("schema", &self.text).field("confluent", &self.confluent).finish()
    }
}

const CONFLUENT_HEADER: usize = 5;

impl Avro {
    fn parse(text: &str, confluent: bool) -> datafusion::common::Result<Avro> {
        let schema = AvroSchema::parse_str(text)
            .map_err(|e| DataFusionError::Plan(format!("the Avro schema does not parse: {e}")))?;
        if !matches!(schema, AvroSchema::Record(_)) {
            return Err(DataFusionError::Plan("the Avro schema of a topic's values must be a record".into()));
        }
        let codec = Codec::try_new(
            schema,
            |schema| GenericDatumReader::builder(schema).build(),
            |schema| GenericDatumWriter::builder(schema).build(),
        )
        .map_err(|e| DataFusionError::Plan(format!("the Avro schema does not resolve: {e}")))?;
        Ok(Avro { codec, text: text.to_string(), confluent })
    }

    /// The record of `columns`, each nullable, in order.
    fn derive(columns: &[Field], confluent: bool) -> datafusion::common::Result<Avro> {
        let fields = columns
            .iter()
            .map(|c| {
                let t = avro_type_of(c.data_type()).ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "column {} has type {}, which has no Avro type here: declare the Avro schema",
                        c.name(),
                        c.data_type()
                    ))
                })?;
                Ok(serde_json::json!({"name": c.name(), "type": ["null", t], "default": null}))
            })
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let text = serde_json::json!({"type": "record", "name": "row", "fields": fields}).to_string();
        Avro::parse(&text, confluent)
    }

    fn fields(&self) -> &[apache_avro::schema::RecordField] {
        match self.codec.borrow_schema() {
            AvroSchema::Record(r) => &r.fields,
            _ => &[],
        }
    }

    fn field(&self, name: &str) -> Option<&apache_avro::schema::RecordField> {
        self.fields().iter().find(|f| f.name == name)
    }

    /// The columns of the record's fields.
    fn columns(&self) -> datafusion::common::Result<Vec<Field>> {
        self.fields()
            .iter()
            .map(|f| {
                let t = arrow_type_of(&f.schema).ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "field {} of the Avro schema has a type SQL over topics does not read yet ({:?})",
                        f.name, f.schema
                    ))
                })?;
                Ok(Field::new(&f.name, t, true))
            })
            .collect()
    }

    /// The fields of the record `data` holds, in the schema's order.
    pub(crate) fn decode(&self, data: &[u8]) -> Result<Vec<(String, AvroValue)>, String> {
        let mut body = data;
        if self.confluent {
            if data.len() < CONFLUENT_HEADER || data[0] != 0 {
                return Err("the value does not start with the Confluent wire format's header (magic byte 0)".into());
            }
            body = &data[CONFLUENT_HEADER..];
        }
        let value = self
            .codec
            .borrow_reader()
            .read_value(&mut body)
            .map_err(|e| format!("the value is not an Avro record of the schema: {e}"))?;
        if !body.is_empty() {
            return Err(format!(
                "the value holds {} bytes after the Avro record (written with another schema?)",
                body.len()
            ));
        }
        match value {
            AvroValue::Record(fields) => Ok(fields),
            other => Err(format!("the value is not an Avro record: {other:?}")),
        }
    }

    /// The Avro record of `values` (by column name; columns the schema lacks are left out, fields
    /// without a column are null).
    pub(crate) fn encode(&self, values: &[(&str, &ScalarValue)]) -> Result<Vec<u8>, String> {
        let fields = self
            .fields()
            .iter()
            .map(|f| {
                let v = values.iter().find(|(n, _)| *n == f.name).map(|(_, v)| *v);
                let v = v.unwrap_or(&ScalarValue::Null);
                to_avro(v, &f.schema).map(|a| (f.name.clone(), a)).map_err(|e| format!("column {}: {e}", f.name))
            })
            .collect::<Result<Vec<_>, String>>()?;
        self.codec.borrow_writer().write_value_to_vec(AvroValue::Record(fields)).map_err(|e| e.to_string())
    }
}

/// The Avro type (JSON) of a column type.
fn avro_type_of(t: &DataType) -> Option<serde_json::Value> {
    use serde_json::json;
    Some(match t {
        DataType::Boolean => json!("boolean"),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => json!("int"),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => json!("long"),
        DataType::Float32 => json!("float"),
        DataType::Float64 => json!("double"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => json!("string"),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => json!("bytes"),
        DataType::Date32 => json!({"type": "int", "logicalType": "date"}),
        DataType::Timestamp(TimeUnit::Second | TimeUnit::Millisecond, _) => {
            json!({"type": "long", "logicalType": "timestamp-millis"})
        }
        DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _) => {
            json!({"type": "long", "logicalType": "timestamp-micros"})
        }
        _ => return None,
    })
}

/// The column type of an Avro type (a union with null: its other branch).
fn arrow_type_of(s: &AvroSchema) -> Option<DataType> {
    Some(match s {
        AvroSchema::Null => DataType::Null,
        AvroSchema::Boolean => DataType::Boolean,
        AvroSchema::Int => DataType::Int32,
        AvroSchema::Long => DataType::Int64,
        AvroSchema::Float => DataType::Float32,
        AvroSchema::Double => DataType::Float64,
        AvroSchema::String | AvroSchema::Enum(_) | AvroSchema::Uuid(_) => DataType::Utf8,
        AvroSchema::Bytes | AvroSchema::Fixed(_) => DataType::Binary,
        AvroSchema::Date => DataType::Date32,
        AvroSchema::TimestampMillis | AvroSchema::LocalTimestampMillis => {
            DataType::Timestamp(TimeUnit::Millisecond, None)
        }
        AvroSchema::TimestampMicros | AvroSchema::LocalTimestampMicros => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        AvroSchema::Union(u) => match non_null(u) {
            Some((_, s)) => return arrow_type_of(s),
            None => return None,
        },
        _ => return None,
    })
}

/// The one branch of a union other than null, with its position, if the union is `[null, T]`.
fn non_null(u: &UnionSchema) -> Option<(usize, &AvroSchema)> {
    let others: Vec<(usize, &AvroSchema)> =
        u.variants().iter().enumerate().filter(|(_, s)| !matches!(s, AvroSchema::Null)).collect();
    match others.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// An Avro value as a column of type `t`.
pub(crate) fn from_avro(v: &AvroValue, t: &DataType) -> Result<ScalarValue, String> {
    let s = match v {
        AvroValue::Null => return Ok(null_of(t)),
        AvroValue::Union(_, inner) => return from_avro(inner, t),
        AvroValue::Boolean(b) => ScalarValue::Boolean(Some(*b)),
        AvroValue::Int(i) => ScalarValue::Int32(Some(*i)),
        AvroValue::Long(i) => ScalarValue::Int64(Some(*i)),
        AvroValue::Float(f) => ScalarValue::Float32(Some(*f)),
        AvroValue::Double(f) => ScalarValue::Float64(Some(*f)),
        AvroValue::String(s) | AvroValue::Enum(_, s) => ScalarValue::Utf8(Some(s.clone())),
        AvroValue::Uuid(u) => ScalarValue::Utf8(Some(u.to_string())),
        AvroValue::Bytes(b) | AvroValue::Fixed(_, b) => ScalarValue::Binary(Some(b.clone())),
        AvroValue::Date(d) => ScalarValue::Date32(Some(*d)),
        AvroValue::TimestampMillis(ms) | AvroValue::LocalTimestampMillis(ms) => {
            ScalarValue::TimestampMillisecond(Some(*ms), None)
        }
        AvroValue::TimestampMicros(us) | AvroValue::LocalTimestampMicros(us) => {
            ScalarValue::TimestampMicrosecond(Some(*us), None)
        }
        other => return Err(format!("an Avro {other:?} is not read into a column yet")),
    };
    if &s.data_type() == t {
        return Ok(s);
    }
    s.cast_to(t).map_err(|_| format!("{s} is not a {t}"))
}

/// A value as Avro of schema `s`.
fn to_avro(v: &ScalarValue, s: &AvroSchema) -> Result<AvroValue, String> {
    if let AvroSchema::Union(u) = s {
        let null = u.variants().iter().position(|s| matches!(s, AvroSchema::Null));
        if v.is_null() {
            return match null {
                Some(i) => Ok(AvroValue::Union(i as u32, Box::new(AvroValue::Null))),
                None => Err("null for a field that cannot be null".into()),
            };
        }
        let (i, inner) = non_null(u).ok_or("a union of more than null and one type is not written yet")?;
        return Ok(AvroValue::Union(i as u32, Box::new(to_avro(v, inner)?)));
    }
    if v.is_null() {
        return match s {
            AvroSchema::Null => Ok(AvroValue::Null),
            _ => Err("null for a field that cannot be null".into()),
        };
    }
    let cast = |t: DataType| v.cast_to(&t).map_err(|_| format!("{v} is not a {t}"));
    Ok(match s {
        AvroSchema::Boolean => match cast(DataType::Boolean)? {
            ScalarValue::Boolean(Some(b)) => AvroValue::Boolean(b),
            _ => unreachable!("cast to boolean"),
        },
        AvroSchema::Int => match cast(DataType::Int32)? {
            ScalarValue::Int32(Some(i)) => AvroValue::Int(i),
            _ => unreachable!("cast to int"),
        },
        AvroSchema::Long => match cast(DataType::Int64)? {
            ScalarValue::Int64(Some(i)) => AvroValue::Long(i),
            _ => unreachable!("cast to long"),
        },
        AvroSchema::Float => match cast(DataType::Float32)? {
            ScalarValue::Float32(Some(f)) => AvroValue::Float(f),
            _ => unreachable!("cast to float"),
        },
        AvroSchema::Double => match cast(DataType::Float64)? {
            ScalarValue::Float64(Some(f)) => AvroValue::Double(f),
            _ => unreachable!("cast to double"),
        },
        AvroSchema::String => AvroValue::String(text(v)),
        AvroSchema::Date => match cast(DataType::Date32)? {
            ScalarValue::Date32(Some(d)) => AvroValue::Date(d),
            _ => unreachable!("cast to date"),
        },
        AvroSchema::TimestampMillis => match cast(DataType::Timestamp(TimeUnit::Millisecond, None))? {
            ScalarValue::TimestampMillisecond(Some(ms), _) => AvroValue::TimestampMillis(ms),
            _ => unreachable!("cast to timestamp"),
        },
        AvroSchema::TimestampMicros => match cast(DataType::Timestamp(TimeUnit::Microsecond, None))? {
            ScalarValue::TimestampMicrosecond(Some(us), _) => AvroValue::TimestampMicros(us),
            _ => unreachable!("cast to timestamp"),
        },
        AvroSchema::Bytes => match v {
            ScalarValue::Binary(Some(b)) | ScalarValue::LargeBinary(Some(b)) | ScalarValue::BinaryView(Some(b)) => {
                AvroValue::Bytes(b.clone())
            }
            other => AvroValue::Bytes(text(other).into_bytes()),
        },
        other => return Err(format!("Avro type {other:?} is not written yet")),
    })
}

/// A value as text (text as it is): raw values, Avro strings.
pub(crate) fn text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}

/// The fields of one CSV line.
pub(crate) fn csv_fields(data: &[u8]) -> Result<Vec<String>, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(data);
    let mut record = csv::StringRecord::new();
    if !reader.read_record(&mut record).map_err(|e| format!("the value is not a CSV line: {e}"))? {
        return Ok(Vec::new());
    }
    let fields = record.iter().map(str::to_string).collect();
    if reader.read_record(&mut record).map_err(|e| format!("the value is not a CSV line: {e}"))? {
        return Err("the value holds more than one CSV line".into());
    }
    Ok(fields)
}

/// A CSV field as a column of type `t`: empty is null, text as it is, the rest as SQL casts text.
pub(crate) fn from_csv(field: &str, t: &DataType) -> Result<ScalarValue, String> {
    if field.is_empty() {
        return Ok(null_of(t));
    }
    match t {
        DataType::Utf8 => Ok(ScalarValue::Utf8(Some(field.to_string()))),
        DataType::Utf8View => Ok(ScalarValue::Utf8View(Some(field.to_string()))),
        DataType::LargeUtf8 => Ok(ScalarValue::LargeUtf8(Some(field.to_string()))),
        t => ScalarValue::try_from_string(field.to_string(), t).map_err(|_| format!("{field:?} is not a {t}")),
    }
}

/// A CSV line of `values`: nulls empty, timestamps as text, the rest as JSON writes them.
pub(crate) fn csv_line(values: &[&ScalarValue]) -> Result<Vec<u8>, String> {
    let fields: Vec<String> = values
        .iter()
        .map(|v| match v {
            v if v.is_null() => String::new(),
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
            v @ (ScalarValue::TimestampSecond(..)
            | ScalarValue::TimestampMillisecond(..)
            | ScalarValue::TimestampMicrosecond(..)
            | ScalarValue::TimestampNanosecond(..)
            | ScalarValue::Date32(_)) => v.to_string(),
            v => {
                let mut out = String::new();
                write_json(&mut out, v);
                out
            }
        })
        .collect();
    let mut writer =
        csv::WriterBuilder::new().has_headers(false).terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    writer.write_record(&fields).map_err(|e| e.to_string())?;
    let mut line = writer.into_inner().map_err(|e| e.to_string())?;
    line.pop();
    Ok(line)
}
