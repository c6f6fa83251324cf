//! Rows of a continuous query: a record's columns as DataFusion `ScalarValue`s, and the serdes
//! that carry them through topics and stores.
//!
//! Three encodings, one per place a row goes:
//! - a topic's values are in its table's format ([`ValueSerde`]: JSON objects, CSV lines, Avro
//!   records, raw text); JSON decoding goes straight from the bytes into the declared columns,
//!   without an intermediate JSON tree, and a value that does not fit names the column and what
//!   it held;
//! - keys are JSON too ([`KeySerde`]): one column as its bare JSON value (`42`, `"ann"`), several
//!   as an array, so a table's topic and a query's output partition alike by key and any
//!   Kafka client reads them; a key that is not JSON reads as text into a text column;
//! - repartition topics and stores hold the compact binary [`RowSerde`] (types come from the
//!   plan, so only tags and payloads are written).

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use freshet_dsl::Serde;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize as _;

use super::expr::Eval;
use super::format::{self, Avro, Format};
use super::value::{from_json, null_of, write_json, Row};

/// A topic's values in the table's format (see [`super::format`]): JSON objects whose fields are
/// the columns (missing fields are nulls, other fields are ignored), CSV lines, Avro records or
/// raw text. Decoding fills the columns the row reads at their positions in a row of the row
/// schema's width (the other positions, metadata columns, stay null for the source to fill).
#[derive(Clone)]
pub(crate) struct ValueSerde {
    format: Format,
    /// (name, type, position in the row) of each column of the value the row holds.
    columns: Arc<Vec<(String, DataType, usize)>>,
    /// Per column of the value in order (a CSV line's fields), its entry in `columns`.
    fields: Arc<Vec<Option<usize>>>,
    /// Per entry of `columns`, its JSON field name, quoted and escaped, with its colon (written
    /// once here rather than for every record).
    json_names: Arc<Vec<String>>,
    /// The row every decode starts from: typed nulls.
    nulls: Arc<Row>,
    /// What decides, as soon as its columns are read, whether the rest of a JSON value is read.
    early: Option<Arc<EarlyFilter>>,
}

/// The filters over a source's rows (one per scan of the source), applied while a JSON value is
/// decoded: each filter's conjuncts are tried as soon as the columns they read are in, and once
/// every filter has a false one, the value is read no further. Its row (the columns read so far,
/// nulls elsewhere) goes on, and the same filters drop it downstream. Where a field comes twice
/// in a value, the first decides here (a full decode keeps the last).
#[derive(Clone)]
pub(crate) struct EarlyFilter {
    /// (its filter, the columns it reads as bits of `bits`, the conjunct).
    conjuncts: Vec<(usize, u64, Eval)>,
    /// Per row position, its bit in the conjuncts' masks, if one reads it.
    bits: Vec<Option<u8>>,
    /// Every filter's bit.
    all: u64,
}

impl EarlyFilter {
    /// Over rows `width` wide: per filter, its conjuncts with the row positions each reads.
    /// `None` when there is nothing to try, or more than 64 filters, conjuncts or columns.
    pub(crate) fn new(width: usize, filters: Vec<Vec<(Eval, Vec<usize>)>>) -> Option<Self> {
        let mut bits = vec![None; width];
        let mut next = 0u8;
        let mut conjuncts = Vec::new();
        if filters.is_empty() || filters.len() > 64 {
            return None;
        }
        for (f, parts) in filters.into_iter().enumerate() {
            for (eval, reads) in parts {
                let mut mask = 0u64;
                for r in reads {
                    let bit = match *bits.get(r)? {
                        Some(b) => b,
                        None if next < 64 => {
                            bits[r] = Some(next);
                            next += 1;
                            next - 1
                        }
                        None => return None,
                    };
                    mask |= 1 << bit;
                }
                conjuncts.push((f, mask, eval));
            }
        }
        let n = conjuncts.iter().map(|(f, _, _)| f + 1).max()?;
        (conjuncts.len() <= 64).then_some(EarlyFilter { conjuncts, bits, all: (u64::MAX >> (64 - n)) })
    }
}

/// How far the early filter got with one value.
struct Early<'a> {
    filter: &'a EarlyFilter,
    /// The columns read so far (bits).
    have: u64,
    /// The conjuncts tried.
    tried: u64,
    /// The filters with a false conjunct.
    failed: u64,
}

impl Early<'_> {
    /// After position `slot` was read: whether no filter can keep the row any more.
    fn read(&mut self, slot: usize, row: &Row) -> bool {
        let Some(Some(bit)) = self.filter.bits.get(slot) else { return false };
        self.have |= 1 << bit;
        for (i, (f, mask, eval)) in self.filter.conjuncts.iter().enumerate() {
            if self.tried & (1 << i) != 0 || self.failed & (1 << f) != 0 || mask & self.have != *mask {
                continue;
            }
            self.tried |= 1 << i;
            // An error in the filter is left for the full row to meet downstream.
            if matches!(eval.holds(row), Ok(false)) {
                self.failed |= 1 << f;
            }
        }
        self.failed == self.filter.all
    }
}

impl ValueSerde {
    /// Values in `format` with `value` columns, decoded into rows of `schema` (value columns
    /// `schema` lacks are not read).
    pub(crate) fn new(format: &Format, value: &Schema, schema: &SchemaRef) -> Self {
        let nulls: Row = schema.fields().iter().map(|f| null_of(f.data_type())).collect();
        let mut columns = Vec::new();
        let mut fields = Vec::new();
        for f in value.fields() {
            match schema.index_of(f.name()) {
                Ok(i) => {
                    fields.push(Some(columns.len()));
                    columns.push((f.name().clone(), f.data_type().clone(), i));
                }
                Err(_) => fields.push(None),
            }
        }
        // A str always serializes.
        let json_names = columns
            .iter()
            .map(|(name, _, _)| format!("{}:", serde_json::to_string(name).unwrap_or_default()))
            .collect();
        ValueSerde {
            format: format.clone(),
            columns: Arc::new(columns),
            fields: Arc::new(fields),
            json_names: Arc::new(json_names),
            nulls: Arc::new(nulls),
            early: None,
        }
    }

    /// Applies `filter` while JSON values are decoded (other formats decode whole).
    pub(crate) fn with_early_filter(mut self, filter: EarlyFilter) -> Self {
        self.early = Some(Arc::new(filter));
        self
    }

    /// Encoding only: rows of `schema` as values in `format`.
    pub(crate) fn output(format: &Format, schema: &SchemaRef) -> Self {
        ValueSerde::new(format, schema, schema)
    }

    fn slot(&self, name: &[u8]) -> Option<&(String, DataType, usize)> {
        self.columns.iter().find(|(n, _, _)| n.as_bytes() == name)
    }

    /// Encodes the row's values as a JSON object.
    pub(crate) fn encode(&self, row: &Row) -> String {
        let mut out = String::with_capacity(16 * self.columns.len() + 2);
        out.push('{');
        for (i, ((_, _, slot), name)) in self.columns.iter().zip(self.json_names.iter()).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(name);
            write_json(&mut out, row.get(*slot).unwrap_or(&ScalarValue::Null));
        }
        out.push('}');
        out
    }

    fn value_of<'a>(&self, row: &'a Row, slot: usize) -> &'a ScalarValue {
        row.get(slot).unwrap_or(&ScalarValue::Null)
    }

    fn decode_json(&self, data: &[u8]) -> Result<Row, String> {
        let mut de = serde_json::Deserializer::from_slice(data);
        let mut dropped = None;
        let row = match (RowSeed { serde: self, dropped: &mut dropped }).deserialize(&mut de) {
            Ok(row) => row,
            // The early filter stopped reading: the row it saw goes on to be dropped.
            Err(_) if dropped.is_some() => return Ok(dropped.take().expect("a row")),
            Err(e) => return Err(format!("value is not a JSON object of the declared columns: {e}")),
        };
        de.end().map_err(|e| format!("value has trailing data: {e}"))?;
        Ok(row)
    }

    fn decode_csv(&self, data: &[u8]) -> Result<Row, String> {
        // An empty line is one empty field.
        let fields = if data.is_empty() { vec![String::new()] } else { format::csv_fields(data)? };
        if fields.len() != self.fields.len() {
            return Err(format!(
                "the CSV line has {} fields where the table has {} columns",
                fields.len(),
                self.fields.len()
            ));
        }
        let mut row: Row = self.nulls.as_ref().clone();
        for (field, c) in fields.iter().zip(self.fields.iter()) {
            if let Some((name, t, slot)) = c.map(|c| &self.columns[c]) {
                row[*slot] = format::from_csv(field, t).map_err(|e| format!("column {name}: {e}"))?;
            }
        }
        Ok(row)
    }

    fn decode_avro(&self, avro: &Avro, data: &[u8]) -> Result<Row, String> {
        let mut row: Row = self.nulls.as_ref().clone();
        for (name, v) in avro.decode(data)? {
            if let Some((name, t, slot)) = self.slot(name.as_bytes()) {
                row[*slot] = format::from_avro(&v, t).map_err(|e| format!("column {name}: {e}"))?;
            }
        }
        Ok(row)
    }
}

impl Serde<Row> for ValueSerde {
    fn serialize(&self, row: &Row) -> Result<Option<Bytes>, String> {
        let value = match &self.format {
            Format::Json => self.encode(row).into_bytes(),
            Format::Csv => {
                format::csv_line(&self.columns.iter().map(|(_, _, s)| self.value_of(row, *s)).collect::<Vec<_>>())?
            }
            Format::Avro(avro) => avro.encode(
                &self.columns.iter().map(|(n, _, s)| (n.as_str(), self.value_of(row, *s))).collect::<Vec<_>>(),
            )?,
            Format::Raw => match self.columns.first().map(|(_, _, s)| self.value_of(row, *s)) {
                Some(v) if !v.is_null() => format::text(v).into_bytes(),
                _ => return Ok(None),
            },
        };
        Ok(Some(Bytes::from(value)))
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<Row, String> {
        let Some(data) = data else {
            return Err(format!("a null value where a {} value was expected", self.format.name()));
        };
        match &self.format {
            Format::Json => self.decode_json(data),
            Format::Csv => self.decode_csv(data),
            Format::Avro(avro) => self.decode_avro(avro, data),
            Format::Raw => {
                let mut row: Row = self.nulls.as_ref().clone();
                if let Some((_, t, slot)) = self.columns.first() {
                    row[*slot] = text_of(String::from_utf8_lossy(data).into_owned(), t);
                }
                Ok(row)
            }
        }
    }
    fn name(&self) -> String {
        match self.format {
            Format::Json => "JsonRow".into(),
            Format::Csv => "CsvRow".into(),
            Format::Avro(_) => "AvroRow".into(),
            Format::Raw => "RawRow".into(),
        }
    }
}

struct RowSeed<'a> {
    serde: &'a ValueSerde,
    /// Where the early filter leaves the row of a value it stopped reading.
    dropped: &'a mut Option<Row>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Row;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Row, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Row;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        let mut row: Row = self.serde.nulls.as_ref().clone();
        let mut early = self.serde.early.as_deref().map(|filter| Early { filter, have: 0, tried: 0, failed: 0 });
        while let Some(slot) = map.next_key_seed(FieldSeed(self.serde))? {
            match slot {
                Some((name, t, i)) => {
                    row[*i] = map.next_value_seed(ColumnSeed(name, t))?;
                    if early.as_mut().is_some_and(|e| e.read(*i, &row)) {
                        *self.dropped = Some(row);
                        return Err(serde::de::Error::custom("no filter keeps the value"));
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(row)
    }
}

/// One field's JSON value, read straight into the column (name, type) (no JSON tree in between
/// for scalars; conversions other than the direct ones are [`from_json`]'s).
struct ColumnSeed<'a>(&'a str, &'a DataType);

impl<'de> DeserializeSeed<'de> for ColumnSeed<'_> {
    type Value = ScalarValue;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<ScalarValue, D::Error> {
        d.deserialize_any(self)
    }
}

impl ColumnSeed<'_> {
    fn convert<E: serde::de::Error>(&self, v: serde_json::Value) -> Result<ScalarValue, E> {
        from_json(&v, self.1).map_err(|e| E::custom(format!("column {}: {e}", self.0)))
    }
}

impl<'de> Visitor<'de> for ColumnSeed<'_> {
    type Value = ScalarValue;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a JSON value for a {} column", self.1)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<ScalarValue, E> {
        Ok(null_of(self.1))
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<ScalarValue, E> {
        Ok(null_of(self.1))
    }
    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<ScalarValue, E> {
        match self.1 {
            DataType::Boolean => Ok(ScalarValue::Boolean(Some(b))),
            _ => self.convert(serde_json::Value::Bool(b)),
        }
    }
    fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<ScalarValue, E> {
        integer(i128::from(i), self.1).map_or_else(|| self.convert(serde_json::Value::from(i)), Ok)
    }
    fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<ScalarValue, E> {
        integer(i128::from(u), self.1).map_or_else(|| self.convert(serde_json::Value::from(u)), Ok)
    }
    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<ScalarValue, E> {
        match self.1 {
            DataType::Float64 => Ok(ScalarValue::Float64(Some(f))),
            _ => self.convert(serde_json::Value::from(f)),
        }
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ScalarValue, E> {
        self.visit_string(s.to_owned())
    }
    fn visit_string<E: serde::de::Error>(self, s: String) -> Result<ScalarValue, E> {
        match self.1 {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => Ok(text_of(s, self.1)),
            _ => self.convert(serde_json::Value::String(s)),
        }
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<ScalarValue, A::Error> {
        let v = serde_json::Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        self.convert(v)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ScalarValue, A::Error> {
        let v = serde_json::Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        self.convert(v)
    }
}

/// A JSON integer as a column of integer or float type `t`, when it fits (the rest, and what
/// does not fit, go through [`from_json`], which says what is wrong).
fn integer(i: i128, t: &DataType) -> Option<ScalarValue> {
    use ScalarValue as S;
    match t {
        DataType::Int64 => i64::try_from(i).ok().map(|v| S::Int64(Some(v))),
        DataType::Int32 => i32::try_from(i).ok().map(|v| S::Int32(Some(v))),
        DataType::Int16 => i16::try_from(i).ok().map(|v| S::Int16(Some(v))),
        DataType::Int8 => i8::try_from(i).ok().map(|v| S::Int8(Some(v))),
        DataType::UInt64 => u64::try_from(i).ok().map(|v| S::UInt64(Some(v))),
        DataType::UInt32 => u32::try_from(i).ok().map(|v| S::UInt32(Some(v))),
        DataType::UInt16 => u16::try_from(i).ok().map(|v| S::UInt16(Some(v))),
        DataType::UInt8 => u8::try_from(i).ok().map(|v| S::UInt8(Some(v))),
        DataType::Float64 => Some(S::Float64(Some(i as f64))),
        _ => None,
    }
}

/// A field name, looked up without copying it.
struct FieldSeed<'a>(&'a ValueSerde);

impl<'de, 'a> DeserializeSeed<'de> for FieldSeed<'a> {
    type Value = Option<&'a (String, DataType, usize)>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        // As bytes: a name is only compared with the columns', so it need not be checked for
        // UTF-8 first (a name that is not UTF-8 matches no column).
        d.deserialize_bytes(self)
    }
}

impl<'de, 'a> Visitor<'de> for FieldSeed<'a> {
    type Value = Option<&'a (String, DataType, usize)>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.slot(v.as_bytes()))
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(self.0.slot(v))
    }
}

/// Keys: one text column as UTF-8 (as Kafka's string serializer writes it), one other column as
/// its JSON value (`42`), several as a JSON array.
#[derive(Clone)]
pub(crate) struct KeySerde {
    types: Arc<Vec<DataType>>,
}

impl KeySerde {
    pub(crate) fn new(types: Vec<DataType>) -> Self {
        KeySerde { types: Arc::new(types) }
    }
}

/// The text of a key: one text value as it is, one other value as JSON, several as a JSON array.
pub(crate) fn key_json(key: &[ScalarValue]) -> String {
    let mut out = String::new();
    if let [one] = key {
        match one {
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
                out.push_str(s)
            }
            _ => write_json(&mut out, one),
        }
    } else {
        out.push('[');
        for (i, v) in key.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json(&mut out, v);
        }
        out.push(']');
    }
    out
}

impl Serde<Row> for KeySerde {
    fn serialize(&self, key: &Row) -> Result<Option<Bytes>, String> {
        Ok(Some(Bytes::from(key_json(key))))
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<Row, String> {
        let Some(data) = data else { return Ok(self.types.iter().map(null_of).collect()) };
        if let [t] = self.types.as_slice() {
            if is_text(t) {
                return Ok(vec![text_of(String::from_utf8_lossy(data).into_owned(), t)]);
            }
        }
        // Straight into the columns' types, as values are.
        let mut de = serde_json::Deserializer::from_slice(data);
        let parsed = match self.types.as_slice() {
            [t] => ColumnSeed("key", t).deserialize(&mut de).map(|v| vec![v]),
            types => KeySeed(types).deserialize(&mut de),
        };
        parsed.and_then(|row| de.end().map(|()| row)).map_err(|e| {
            format!(
                "key {:?} is not the JSON of {} column(s) ({}): {e}",
                String::from_utf8_lossy(data),
                self.types.len(),
                self.types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
            )
        })
    }
    fn name(&self) -> String {
        "JsonKey".into()
    }
}

/// A key of several columns: a JSON array, each value read straight into its column's type.
struct KeySeed<'a>(&'a [DataType]);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Row;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Row, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Row;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a JSON array of {} values", self.0.len())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Row, A::Error> {
        let mut row = Vec::with_capacity(self.0.len());
        for (i, t) in self.0.iter().enumerate() {
            match seq.next_element_seed(ColumnSeed("key", t))? {
                Some(v) => row.push(v),
                None => return Err(serde::de::Error::invalid_length(i, &self)),
            }
        }
        if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            return Err(serde::de::Error::invalid_length(self.0.len() + 1, &self));
        }
        Ok(row)
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
}

fn text_of(s: String, t: &DataType) -> ScalarValue {
    match t {
        DataType::Utf8View => ScalarValue::Utf8View(Some(s)),
        DataType::LargeUtf8 => ScalarValue::LargeUtf8(Some(s)),
        _ => ScalarValue::Utf8(Some(s)),
    }
}

/// Rows in repartition topics and stores: per value a tag byte, then its payload.
#[derive(Clone)]
pub(crate) struct RowSerde {
    types: Arc<Vec<DataType>>,
}

impl RowSerde {
    pub(crate) fn new(types: Vec<DataType>) -> Self {
        RowSerde { types: Arc::new(types) }
    }
}

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 4;
const TEXT: u8 = 5;

impl Serde<Row> for RowSerde {
    fn serialize(&self, row: &Row) -> Result<Option<Bytes>, String> {
        let mut out = Vec::with_capacity(row.len() * 9);
        for v in row {
            if v.is_null() {
                out.push(NULL);
                continue;
            }
            match v {
                ScalarValue::Boolean(Some(b)) => out.push(if *b { TRUE } else { FALSE }),
                ScalarValue::Float64(Some(f)) => {
                    out.push(FLOAT);
                    out.extend_from_slice(&f.to_be_bytes());
                }
                ScalarValue::Float32(Some(f)) => {
                    out.push(FLOAT);
                    out.extend_from_slice(&f64::from(*f).to_be_bytes());
                }
                ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
                    out.push(TEXT);
                    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
                v => {
                    let i = integer_of(v).ok_or_else(|| format!("a {} value cannot be stored", v.data_type()))?;
                    out.push(INT);
                    out.extend_from_slice(&i.to_be_bytes());
                }
            }
        }
        Ok(Some(Bytes::from(out)))
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<Row, String> {
        let mut data = data.ok_or("a null where a row was expected")?;
        let mut row = Vec::with_capacity(self.types.len());
        let short = || "a stored row is cut short".to_string();
        for t in self.types.iter() {
            let (&tag, rest) = data.split_first().ok_or_else(short)?;
            data = rest;
            let take8 = |data: &mut &[u8]| -> Result<[u8; 8], String> {
                let (b, rest) = data.split_at_checked(8).ok_or_else(short)?;
                *data = rest;
                Ok(b.try_into().expect("8 bytes"))
            };
            let v = match tag {
                NULL => null_of(t),
                FALSE | TRUE => ScalarValue::Boolean(Some(tag == TRUE)),
                INT => integer_as(i64::from_be_bytes(take8(&mut data)?), t),
                FLOAT => ScalarValue::Float64(Some(f64::from_be_bytes(take8(&mut data)?)))
                    .cast_to(t)
                    .map_err(|e| e.to_string())?,
                TEXT => {
                    let (n, rest) = data.split_at_checked(4).ok_or_else(short)?;
                    let n = u32::from_be_bytes(n.try_into().expect("4 bytes")) as usize;
                    let (s, rest) = rest.split_at_checked(n).ok_or_else(short)?;
                    data = rest;
                    let s = String::from_utf8(s.to_vec()).map_err(|e| e.to_string())?;
                    text_of(s, t)
                }
                other => return Err(format!("a stored row has an unknown tag {other}")),
            };
            row.push(v);
        }
        Ok(row)
    }
    fn name(&self) -> String {
        "Row".into()
    }
}

/// The integer inside an integer-like value (integers, timestamps, dates).
fn integer_of(v: &ScalarValue) -> Option<i64> {
    Some(match v {
        ScalarValue::Int8(Some(i)) => i64::from(*i),
        ScalarValue::Int16(Some(i)) => i64::from(*i),
        ScalarValue::Int32(Some(i)) => i64::from(*i),
        ScalarValue::Int64(Some(i)) => *i,
        ScalarValue::UInt8(Some(i)) => i64::from(*i),
        ScalarValue::UInt16(Some(i)) => i64::from(*i),
        ScalarValue::UInt32(Some(i)) => i64::from(*i),
        ScalarValue::UInt64(Some(i)) => *i as i64,
        ScalarValue::TimestampSecond(Some(i), _)
        | ScalarValue::TimestampMillisecond(Some(i), _)
        | ScalarValue::TimestampMicrosecond(Some(i), _)
        | ScalarValue::TimestampNanosecond(Some(i), _) => *i,
        ScalarValue::Date32(Some(d)) => i64::from(*d),
        _ => return None,
    })
}

/// An integer stored for a column of type `t`.
fn integer_as(i: i64, t: &DataType) -> ScalarValue {
    match t {
        DataType::Int8 => ScalarValue::Int8(Some(i as i8)),
        DataType::Int16 => ScalarValue::Int16(Some(i as i16)),
        DataType::Int32 => ScalarValue::Int32(Some(i as i32)),
        DataType::UInt8 => ScalarValue::UInt8(Some(i as u8)),
        DataType::UInt16 => ScalarValue::UInt16(Some(i as u16)),
        DataType::UInt32 => ScalarValue::UInt32(Some(i as u32)),
        DataType::UInt64 => ScalarValue::UInt64(Some(i as u64)),
        DataType::Timestamp(TimeUnit::Second, tz) => ScalarValue::TimestampSecond(Some(i), tz.clone()),
        DataType::Timestamp(TimeUnit::Millisecond, tz) => ScalarValue::TimestampMillisecond(Some(i), tz.clone()),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => ScalarValue::TimestampMicrosecond(Some(i), tz.clone()),
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => ScalarValue::TimestampNanosecond(Some(i), tz.clone()),
        DataType::Date32 => ScalarValue::Date32(Some(i as i32)),
        _ => ScalarValue::Int64(Some(i)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};

    /// A value no filter keeps is read only as far as the filter's columns; its row holds them.
    #[test]
    fn the_early_filter_stops_reading_values_no_filter_keeps() {
        use datafusion::logical_expr::Operator;
        let schema = Arc::new(Schema::new(vec![
            Field::new("kind", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]));
        let is_one =
            Eval::Binary(Box::new(Eval::Column(0)), Operator::Eq, Box::new(Eval::Literal(ScalarValue::Int64(Some(1)))));
        let filter = EarlyFilter::new(2, vec![vec![(is_one, vec![0])]]).unwrap();
        let serde = ValueSerde::new(&Format::Json, &schema, &schema).with_early_filter(filter);
        let row = |json: &str| serde.deserialize(Some(json.as_bytes()));
        let kept = vec![ScalarValue::Int64(Some(1)), ScalarValue::Utf8(Some("x".into()))];
        assert_eq!(row(r#"{"kind": 1, "v": "x"}"#), Ok(kept.clone()));
        assert_eq!(row(r#"{"v": "x", "kind": 1}"#), Ok(kept));
        let dropped = Ok(vec![ScalarValue::Int64(Some(2)), ScalarValue::Utf8(None)]);
        assert_eq!(row(r#"{"kind": 2, "v": "x"}"#), dropped);
        // The rest of a dropped value is not read, bad or not.
        assert_eq!(row(r#"{"kind": 2, "v": 7, oops"#), dropped);
        // A kept value is read whole, and its errors are errors.
        assert!(row(r#"{"kind": 1, "v": 7, oops"#).is_err());
        // A null in the filter's column: no filter keeps it.
        assert_eq!(row(r#"{"kind": null, "v": "x"}"#), Ok(vec![ScalarValue::Int64(None), ScalarValue::Utf8(None)]));
    }

    /// Each filter's conjuncts are tried as their columns come in: once every filter has a false
    /// one, the rest of the value is not read, even where other conjuncts' columns never come.
    #[test]
    fn the_early_filter_tries_conjuncts_as_their_columns_come() {
        use datafusion::logical_expr::Operator;
        let schema = Arc::new(Schema::new(vec![
            Field::new("kind", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let eq = |i: usize, v: ScalarValue| {
            (Eval::Binary(Box::new(Eval::Column(i)), Operator::Eq, Box::new(Eval::Literal(v))), vec![i])
        };
        let int = |n: i64| ScalarValue::Int64(Some(n));
        let text = |t: &str| ScalarValue::Utf8(Some(t.into()));
        // kind = 1 AND n = 5; or kind = 2 AND v = 'y'.
        let filters = vec![vec![eq(0, int(1)), eq(2, int(5))], vec![eq(0, int(2)), eq(1, text("y"))]];
        let filter = EarlyFilter::new(3, filters).unwrap();
        let serde = ValueSerde::new(&Format::Json, &schema, &schema).with_early_filter(filter);
        let row = |json: &str| serde.deserialize(Some(json.as_bytes()));
        let null = || ScalarValue::Int64(None);
        // Kind 3: neither filter keeps it, though n never comes.
        assert_eq!(row(r#"{"kind": 3, "v": "y", oops"#), Ok(vec![int(3), ScalarValue::Utf8(None), null()]));
        // Kind 2 with v 'x': the second filter fails on v.
        assert_eq!(row(r#"{"kind": 2, "v": "x", oops"#), Ok(vec![int(2), text("x"), null()]));
        // Kind 2 with v 'y': kept, read whole.
        assert_eq!(row(r#"{"kind": 2, "n": 1, "v": "y"}"#), Ok(vec![int(2), text("y"), int(1)]));
        // Kind 1 with n 4, then bad: the first filter fails on n, the second on kind.
        assert_eq!(row(r#"{"n": 4, "kind": 1, oops"#), Ok(vec![int(1), ScalarValue::Utf8(None), int(4)]));
    }

    #[test]
    fn values_decode_into_their_columns_and_encode_back() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("_offset", DataType::Int64, true),
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
        ]));
        let value = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
        ]);
        let serde = ValueSerde::new(&Format::Json, &value, &schema);
        let row = serde.deserialize(Some(br#"{"price": 2, "other": [1, {"a": 2}], "id": 7, "name": "a\"b"}"#)).unwrap();
        assert_eq!(
            row,
            vec![
                ScalarValue::Int64(None),
                ScalarValue::Int64(Some(7)),
                ScalarValue::Utf8(Some("a\"b".into())),
                ScalarValue::Float64(Some(2.0))
            ]
        );
        let err = serde.deserialize(Some(br#"{"id": "seven"}"#)).unwrap_err();
        assert!(err.contains("column id") && err.contains("seven"), "{err}");
        assert!(serde.deserialize(Some(b"[1]")).is_err());
        let out = ValueSerde::output(&Format::Json, &Arc::new(value));
        assert_eq!(out.encode(&row[1..].to_vec()), r#"{"id":7,"name":"a\"b","price":2.0}"#);
    }

    /// JSON integers go into narrower integer columns when they fit, and say so when not.
    #[test]
    fn json_integers_fit_their_columns_or_name_the_column() {
        let value = Schema::new(vec![
            Field::new("i", DataType::Int32, true),
            Field::new("s", DataType::Int16, true),
            Field::new("u", DataType::UInt8, true),
            Field::new("f", DataType::Float64, true),
        ]);
        let serde = ValueSerde::new(&Format::Json, &value, &Arc::new(value.clone()));
        let row = serde.deserialize(Some(br#"{"i": -7, "s": 300, "u": 255, "f": 3}"#)).unwrap();
        let expected = [
            ScalarValue::Int32(Some(-7)),
            ScalarValue::Int16(Some(300)),
            ScalarValue::UInt8(Some(255)),
            ScalarValue::Float64(Some(3.0)),
        ];
        assert_eq!(row, expected);
        for bad in [r#"{"i": 2147483648}"#, r#"{"s": -40000}"#, r#"{"u": 256}"#, r#"{"u": -1}"#] {
            let err = serde.deserialize(Some(bad.as_bytes())).unwrap_err();
            assert!(err.contains("is not a"), "{bad}: {err}");
        }
    }

    #[test]
    fn json_fields_convert_to_their_column_types_or_name_the_column() {
        let at = DataType::Timestamp(TimeUnit::Millisecond, None);
        let fields = [
            ("i", DataType::Int32),
            ("u", DataType::UInt64),
            ("f", DataType::Float32),
            ("b", DataType::Boolean),
            ("t", at.clone()),
            ("s", DataType::Utf8View),
            ("n", DataType::Int64),
        ];
        let value = Schema::new(fields.iter().map(|(n, t)| Field::new(*n, t.clone(), true)).collect::<Vec<_>>());
        let serde = ValueSerde::new(&Format::Json, &value, &Arc::new(value.clone()));
        let row = serde
            .deserialize(Some(
                br#"{"i": "12", "u": 18446744073709551615, "f": 1.5, "b": true, "t": 1700000000000, "s": "\u00e9", "n": null}"#,
            ))
            .unwrap();
        assert_eq!(
            row,
            vec![
                ScalarValue::Int32(Some(12)),
                ScalarValue::UInt64(Some(u64::MAX)),
                ScalarValue::Float32(Some(1.5)),
                ScalarValue::Boolean(Some(true)),
                ScalarValue::TimestampMillisecond(Some(1_700_000_000_000), None),
                ScalarValue::Utf8View(Some("é".into())),
                ScalarValue::Int64(None),
            ]
        );
        for (json, column, what) in [
            (&br#"{"i": 3000000000}"#[..], "column i", "3000000000"),
            (br#"{"b": 1}"#, "column b", "1"),
            (br#"{"n": 1.5}"#, "column n", "1.5"),
            (br#"{"n": {"a": [1]}}"#, "column n", r#"{"a":[1]}"#),
            (br#"{"s": [1, 2]}"#, "column s", "[1,2]"),
        ] {
            let err = serde.deserialize(Some(json)).unwrap_err();
            assert!(err.contains(column) && err.contains(what), "{err}");
        }
        assert!(serde.deserialize(Some(br#"{"n": 1"#)).is_err());
        // Field names are matched after their escapes are read; a name that is not UTF-8 is
        // just another unknown field.
        let row = serde.deserialize(Some(b"{\"\\u0069\": 7, \"\xff\": 1, \"n\": 2}")).unwrap();
        assert_eq!((&row[0], &row[6]), (&ScalarValue::Int32(Some(7)), &ScalarValue::Int64(Some(2))));
    }

    /// The value columns `id BIGINT, name VARCHAR, at TIMESTAMP, price DOUBLE`; rows read all
    /// but `at`.
    fn csv_avro_schemas() -> (Schema, SchemaRef) {
        let at = DataType::Timestamp(TimeUnit::Millisecond, None);
        let value = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("at", at, true),
            Field::new("price", DataType::Float64, true),
        ]);
        let row = Arc::new(Schema::new(vec![
            Field::new("_offset", DataType::Int64, true),
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
        ]));
        (value, row)
    }

    #[test]
    fn csv_values_are_lines_of_the_columns_in_order() {
        let (value, row_schema) = csv_avro_schemas();
        let serde = ValueSerde::new(&Format::Csv, &value, &row_schema);
        let row = serde.deserialize(Some(b"7,\"a, \"\"b\"\"\",2024-05-01T12:00:00,2.5")).unwrap();
        let expected = vec![
            ScalarValue::Int64(None),
            ScalarValue::Int64(Some(7)),
            ScalarValue::Utf8(Some("a, \"b\"".into())),
            ScalarValue::Float64(Some(2.5)),
        ];
        assert_eq!(row, expected);
        // Empty fields are nulls.
        let nulls = serde.deserialize(Some(b"8,,,")).unwrap();
        assert_eq!(nulls[1..], [ScalarValue::Int64(Some(8)), ScalarValue::Utf8(None), ScalarValue::Float64(None)]);
        let err = serde.deserialize(Some(b"7,a,2024-05-01T12:00:00")).unwrap_err();
        assert!(err.contains("3 fields") && err.contains("4 columns"), "{err}");
        let err = serde.deserialize(Some(b"seven,a,,1")).unwrap_err();
        assert!(err.contains("column id") && err.contains("seven"), "{err}");
        // Written back: the line of the columns, quoted where needed; read again, the same row.
        let out = ValueSerde::output(&Format::Csv, &row_schema);
        let line = out.serialize(&expected).unwrap().unwrap();
        assert_eq!(&line[..], b",7,\"a, \"\"b\"\"\",2.5");
        assert_eq!(ValueSerde::new(&Format::Csv, &row_schema, &row_schema).deserialize(Some(&line)).unwrap(), expected);
    }

    #[test]
    fn avro_values_are_records_of_the_schema() {
        let (value, row_schema) = csv_avro_schemas();
        let fields: Vec<Field> = value.fields().iter().map(|f| f.as_ref().clone()).collect();
        // The schema derived from the declared columns: each field nullable, in order.
        let (format, columns) = Format::declare("avro", None, None, &fields).unwrap();
        assert_eq!(columns, fields);
        let Format::Avro(avro) = &format else { panic!("avro") };
        let bytes = avro
            .encode(&[
                ("id", &ScalarValue::Int64(Some(7))),
                ("name", &ScalarValue::Utf8(Some("ann".into()))),
                ("at", &ScalarValue::TimestampMillisecond(Some(1_714_564_800_000), None)),
            ])
            .unwrap();
        // Avro binary: union branch 1 then zig-zag 7; branch 1, length 3, "ann"; branch 1, the
        // time; branch 0 (null) for price.
        assert_eq!(&bytes[..7], &[2, 14, 2, 6, b'a', b'n', b'n']);
        assert_eq!(bytes.last(), Some(&0));
        let serde = ValueSerde::new(&format, &value, &row_schema);
        let row = serde.deserialize(Some(&bytes)).unwrap();
        assert_eq!(
            row,
            vec![
                ScalarValue::Int64(None),
                ScalarValue::Int64(Some(7)),
                ScalarValue::Utf8(Some("ann".into())),
                ScalarValue::Float64(None),
            ]
        );
        let err = serde.deserialize(Some(&[8])).unwrap_err();
        assert!(err.contains("Avro record"), "{err}");
        let err = serde.deserialize(Some(&[bytes.as_slice(), &[1, 2]].concat())).unwrap_err();
        assert!(err.contains("2 bytes after"), "{err}");

        // A declared writer schema gives the columns; Confluent framing is checked and skipped.
        let schema = r#"{"type": "record", "name": "order", "fields": [
            {"name": "id", "type": "long"}, {"name": "kind", "type": {"type": "enum", "name": "k", "symbols": ["A", "B"]}},
            {"name": "price", "type": ["null", "double"]}]}"#;
        let (format, columns) = Format::declare("avro", Some(schema), Some("confluent"), &[]).unwrap();
        let names: Vec<(&str, &DataType)> = columns.iter().map(|f| (f.name().as_str(), f.data_type())).collect();
        assert_eq!(names, [("id", &DataType::Int64), ("kind", &DataType::Utf8), ("price", &DataType::Float64)]);
        let columns = Arc::new(Schema::new(columns));
        let serde = ValueSerde::new(&format, &columns, &columns);
        // Magic byte, schema id 1, then id 3, symbol 1 (B), price branch 1 and 0.5.
        let mut framed = vec![0, 0, 0, 0, 1, 6, 2, 2];
        framed.extend(0.5f64.to_le_bytes());
        let row = serde.deserialize(Some(&framed)).unwrap();
        let expected =
            vec![ScalarValue::Int64(Some(3)), ScalarValue::Utf8(Some("B".into())), ScalarValue::Float64(Some(0.5))];
        assert_eq!(row, expected);
        let err = serde.deserialize(Some(&framed[5..])).unwrap_err();
        assert!(err.contains("magic byte"), "{err}");
        assert!(Format::declare("avro", Some(r#"{"type": "long"}"#), None, &[])
            .unwrap_err()
            .to_string()
            .contains("record"));
        assert!(Format::declare("avro", Some("{"), None, &[]).unwrap_err().to_string().contains("does not parse"));
        assert!(Format::declare("csv", None, None, &[]).unwrap_err().to_string().contains("declared"));
    }

    #[test]
    fn keys_are_json_and_rows_round_trip() {
        let key = KeySerde::new(vec![DataType::Int64]);
        assert_eq!(key.deserialize(Some(b"42")).unwrap(), vec![ScalarValue::Int64(Some(42))]);
        assert_eq!(key.serialize(&vec![ScalarValue::Int64(Some(42))]).unwrap().unwrap(), Bytes::from("42"));
        let text = KeySerde::new(vec![DataType::Utf8]);
        assert_eq!(text.deserialize(Some(b"user-1")).unwrap(), vec![ScalarValue::Utf8(Some("user-1".into()))]);
        assert!(key.deserialize(Some(b"user-1")).is_err());
        // Several columns: a JSON array, each value in its column's type.
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let pair = KeySerde::new(vec![DataType::Int64, DataType::Utf8, ts]);
        let row = vec![
            ScalarValue::Int64(Some(7)),
            ScalarValue::Utf8(Some("a\"b".into())),
            ScalarValue::TimestampMillisecond(Some(1_700_000_000_000), None),
        ];
        let bytes = pair.serialize(&row).unwrap().unwrap();
        assert_eq!(pair.deserialize(Some(&bytes)).unwrap(), row);
        let short = pair.deserialize(Some(b"[7, \"x\"]")).unwrap_err();
        assert!(short.contains("3 column(s)") && short.contains("invalid length"), "{short}");
        assert!(pair.deserialize(Some(b"[7, \"x\", 1, 2]")).is_err());
        assert!(pair.deserialize(Some(b"[\"seven\", \"x\", 1]")).unwrap_err().contains("seven"));
        let types = vec![DataType::Int32, DataType::Utf8, DataType::Float64, DataType::Boolean, DataType::Int64];
        let serde = RowSerde::new(types);
        let row = vec![
            ScalarValue::Int32(Some(-3)),
            ScalarValue::Utf8(Some("x".into())),
            ScalarValue::Float64(Some(1.5)),
            ScalarValue::Boolean(None),
            ScalarValue::Int64(Some(i64::MAX)),
        ];
        let bytes = serde.serialize(&row).unwrap().unwrap();
        assert_eq!(serde.deserialize(Some(&bytes)).unwrap(), row);
        assert!(serde.deserialize(Some(&bytes[..bytes.len() - 1])).is_err());
    }
}
