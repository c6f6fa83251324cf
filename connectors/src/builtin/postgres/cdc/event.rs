//! Change events in Debezium's shape: per table a key struct (`<prefix>.<schema>.<table>.Key`, the
//! primary key's columns), a row struct (`...Value`) and the envelope (`...Envelope`: `before`,
//! `after`, `source`, `transaction`, `op`, `ts_ms`, `ts_us`, `ts_ns`), with PostgreSQL's text
//! values mapped to Connect's types as Debezium's defaults map them (`decimal.handling.mode=precise`,
//! `time.precision.mode=adaptive`).

use std::sync::Arc;

use bytes::Bytes;

use crate::builtin::civil::{civil, days_from_civil};
use crate::data::{Schema, SchemaRef, Struct, Type, Value};

/// The version the `source` block names.
pub(super) const VERSION: &str = concat!("freshet-", env!("CARGO_PKG_VERSION"));
/// What Debezium writes for a TOASTed value an update did not carry.
const UNAVAILABLE: &str = "__debezium_unavailable_value";

/// A column: its name, type and whether it may be null or is part of the key.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) type_oid: u32,
    pub(super) type_mod: i32,
    pub(super) optional: bool,
    pub(super) key: bool,
}

/// A captured table's schemas.
#[derive(Debug)]
pub(super) struct Table {
    /// The logical server name (`topic.prefix`) and database, as `source` names them.
    server: String,
    db: String,
    pub(super) schema: String,
    pub(super) name: String,
    pub(super) columns: Vec<Column>,
    pub(super) topic: String,
    key_schema: Option<SchemaRef>,
    row_schema: SchemaRef,
    envelope: SchemaRef,
    source: SchemaRef,
}

/// A row's values as PostgreSQL's text (`None`: null; `Unchanged`: a TOASTed value left out).
#[derive(Debug, Clone)]
pub(super) enum Text {
    Null,
    Unchanged,
    Value(Bytes),
}

/// Where an event comes from: the `source` block's varying part.
#[derive(Debug, Clone, Default)]
pub(super) struct Origin {
    pub(super) ts_micros: i64,
    /// `true`, `last` or `false` (Debezium's snapshot marker).
    pub(super) snapshot: &'static str,
    pub(super) tx_id: Option<i64>,
    pub(super) lsn: Option<u64>,
    /// `[last commit LSN, this LSN]` as Debezium's `sequence`.
    pub(super) sequence: Option<String>,
}

fn named(ty: Type, name: &str, optional: bool) -> Schema {
    let mut s = Schema::of(ty).named(name);
    s.version = Some(1);
    s.optional = optional;
    s
}

fn field(ty: Type, optional: bool) -> SchemaRef {
    if optional {
        Schema::optional_primitive(ty)
    } else {
        Schema::primitive(ty)
    }
}

/// The `source` block's schema (`io.debezium.connector.postgresql.Source`).
pub(super) fn source_schema() -> SchemaRef {
    let enum_snapshot = {
        let mut s = named(Type::String, "io.debezium.data.Enum", true);
        s.parameters.insert(
            "allowed".into(),
            "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental".into(),
        );
        s.default = Some(Value::String("false".into()));
        Arc::new(s)
    };
    Arc::new(
        Schema::structure([
            ("version".to_string(), field(Type::String, false)),
            ("connector".to_string(), field(Type::String, false)),
            ("name".to_string(), field(Type::String, false)),
            ("ts_ms".to_string(), field(Type::Int64, false)),
            ("snapshot".to_string(), enum_snapshot),
            ("db".to_string(), field(Type::String, false)),
            ("sequence".to_string(), field(Type::String, true)),
            ("ts_us".to_string(), field(Type::Int64, true)),
            ("ts_ns".to_string(), field(Type::Int64, true)),
            ("schema".to_string(), field(Type::String, false)),
            ("table".to_string(), field(Type::String, false)),
            ("txId".to_string(), field(Type::Int64, true)),
            ("lsn".to_string(), field(Type::Int64, true)),
            ("xmin".to_string(), field(Type::Int64, true)),
        ])
        .named("io.debezium.connector.postgresql.Source"),
    )
}

fn transaction_schema() -> SchemaRef {
    Arc::new(
        Schema::structure([
            ("id".to_string(), field(Type::String, false)),
            ("total_order".to_string(), field(Type::Int64, false)),
            ("data_collection_order".to_string(), field(Type::Int64, false)),
        ])
        .named("event.block")
        .into_optional(),
    )
}

/// A column's Connect schema, as Debezium maps its PostgreSQL type.
fn column_schema(c: &Column) -> SchemaRef {
    let o = c.optional;
    Arc::new(match c.type_oid {
        16 => Schema { optional: o, ..Schema::of(Type::Boolean) },
        21 => Schema { optional: o, ..Schema::of(Type::Int16) },
        23 => Schema { optional: o, ..Schema::of(Type::Int32) },
        20 | 26 => Schema { optional: o, ..Schema::of(Type::Int64) },
        700 => Schema { optional: o, ..Schema::of(Type::Float32) },
        701 => Schema { optional: o, ..Schema::of(Type::Float64) },
        1700 => match numeric_scale(c.type_mod) {
            Some(scale) => {
                let mut s = Schema::decimal(scale);
                s.parameters.insert("connect.decimal.precision".into(), ((c.type_mod - 4) >> 16).to_string());
                Schema { optional: o, ..s }
            }
            None => {
                let s = Schema::structure([
                    ("scale".to_string(), field(Type::Int32, false)),
                    ("value".to_string(), field(Type::Bytes, false)),
                ]);
                Schema { optional: o, version: Some(1), ..s.named("io.debezium.data.VariableScaleDecimal") }
            }
        },
        17 => Schema { optional: o, ..Schema::of(Type::Bytes) },
        1082 => named(Type::Int32, "io.debezium.time.Date", o),
        1083 => named(Type::Int64, "io.debezium.time.MicroTime", o),
        1114 => named(Type::Int64, "io.debezium.time.MicroTimestamp", o),
        1184 => named(Type::String, "io.debezium.time.ZonedTimestamp", o),
        2950 => named(Type::String, "io.debezium.data.Uuid", o),
        114 | 3802 => named(Type::String, "io.debezium.data.Json", o),
        _ => Schema { optional: o, ..Schema::of(Type::String) },
    })
}

/// The scale a `numeric(p, s)` type modifier gives; `None` for a numeric without one.
fn numeric_scale(type_mod: i32) -> Option<i32> {
    (type_mod >= 4).then(|| (type_mod - 4) & 0xFFFF)
}

impl Table {
    /// The schemas of `schema.name` of database `db` with `columns`, its events going to
    /// `<prefix>.<schema>.<name>`.
    pub(super) fn new(
        (prefix, db): (&str, &str),
        schema: &str,
        name: &str,
        columns: Vec<Column>,
        source: SchemaRef,
    ) -> Table {
        let topic = format!("{prefix}.{schema}.{name}");
        let row_fields: Vec<(String, SchemaRef)> = columns.iter().map(|c| (c.name.clone(), column_schema(c))).collect();
        let key_fields: Vec<(String, SchemaRef)> = columns
            .iter()
            .filter(|c| c.key)
            .map(|c| (c.name.clone(), column_schema(&Column { optional: false, ..c.clone() })))
            .collect();
        let key_schema =
            (!key_fields.is_empty()).then(|| Arc::new(Schema::structure(key_fields).named(format!("{topic}.Key"))));
        let row_schema = Arc::new(Schema::structure(row_fields).named(format!("{topic}.Value")).into_optional());
        let envelope = Arc::new(
            Schema::structure([
                ("before".to_string(), row_schema.clone()),
                ("after".to_string(), row_schema.clone()),
                ("source".to_string(), source.clone()),
                ("transaction".to_string(), transaction_schema()),
                ("op".to_string(), field(Type::String, false)),
                ("ts_ms".to_string(), field(Type::Int64, true)),
                ("ts_us".to_string(), field(Type::Int64, true)),
                ("ts_ns".to_string(), field(Type::Int64, true)),
            ])
            .named(format!("{topic}.Envelope")),
        );
        Table {
            server: prefix.to_string(),
            db: db.to_string(),
            schema: schema.to_string(),
            name: name.to_string(),
            columns,
            topic,
            key_schema,
            row_schema,
            envelope,
            source,
        }
    }

    pub(super) fn key_schema(&self) -> Option<SchemaRef> {
        self.key_schema.clone()
    }

    pub(super) fn envelope_schema(&self) -> SchemaRef {
        self.envelope.clone()
    }

    /// A row from its columns' text (in column order); values that do not read are null, with a
    /// warning naming the column.
    pub(super) fn row(&self, cells: &[Text]) -> Struct {
        let values = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| match cells.get(i).unwrap_or(&Text::Null) {
                // A key-only old row (REPLICA IDENTITY DEFAULT) has nulls for the other columns:
                // a required one is written as its type's zero, as Debezium does.
                Text::Null if !c.optional => zero(&self.row_schema.fields[i].schema),
                Text::Null => Value::Null,
                Text::Unchanged => match c.type_oid {
                    17 => Value::Bytes(Bytes::from_static(UNAVAILABLE.as_bytes())),
                    25 | 1043 | 1042 | 114 | 3802 => Value::String(UNAVAILABLE.into()),
                    _ => Value::Null,
                },
                Text::Value(bytes) => {
                    let text = String::from_utf8_lossy(bytes);
                    value(c, &text).unwrap_or_else(|e| {
                        tracing::warn!(table = %self.topic, column = %c.name, error = %e, "a value written as null");
                        Value::Null
                    })
                }
            })
            .collect();
        Struct { schema: self.row_schema.clone(), values }
    }

    /// The key of a row (its primary key's columns); `Null` for a table without one.
    pub(super) fn key(&self, row: &Struct) -> Value {
        let Some(schema) = &self.key_schema else { return Value::Null };
        let values = self.columns.iter().zip(&row.values).filter(|(c, _)| c.key).map(|(_, v)| v.clone()).collect();
        Value::Struct(Struct { schema: schema.clone(), values })
    }

    /// The envelope of a change.
    pub(super) fn envelope(
        &self,
        op: &str,
        before: Option<Struct>,
        after: Option<Struct>,
        origin: &Origin,
        now_micros: i64,
    ) -> Value {
        let ts_ms = origin.ts_micros.div_euclid(1000);
        let source = Struct {
            schema: self.source.clone(),
            values: vec![
                Value::String(VERSION.into()),
                Value::String("postgresql".into()),
                Value::String(self.server.clone()),
                Value::Int64(ts_ms),
                Value::String(origin.snapshot.into()),
                Value::String(self.db.clone()),
                origin.sequence.clone().map_or(Value::Null, Value::String),
                Value::Int64(origin.ts_micros),
                Value::Int64(origin.ts_micros * 1000),
                Value::String(self.schema.clone()),
                Value::String(self.name.clone()),
                origin.tx_id.map_or(Value::Null, Value::Int64),
                origin.lsn.map_or(Value::Null, |l| Value::Int64(l as i64)),
                Value::Null,
            ],
        };
        Value::Struct(Struct {
            schema: self.envelope.clone(),
            values: vec![
                before.map_or(Value::Null, Value::Struct),
                after.map_or(Value::Null, Value::Struct),
                Value::Struct(source),
                Value::Null,
                Value::String(op.into()),
                Value::Int64(now_micros.div_euclid(1000)),
                Value::Int64(now_micros),
                Value::Int64(now_micros * 1000),
            ],
        })
    }
}

/// The zero of a required column's schema.
fn zero(schema: &Schema) -> Value {
    match schema.ty {
        Type::Int8 => Value::Int8(0),
        Type::Int16 => Value::Int16(0),
        Type::Int32 => Value::Int32(0),
        Type::Int64 => Value::Int64(0),
        Type::Float32 => Value::Float32(0.0),
        Type::Float64 => Value::Float64(0.0),
        Type::Boolean => Value::Boolean(false),
        Type::String => Value::String(String::new()),
        Type::Bytes => Value::Bytes(Bytes::from_static(&[0])),
        Type::Struct => Value::Struct(Struct {
            schema: Arc::new(schema.clone()),
            values: schema.fields.iter().map(|f| zero(&f.schema)).collect(),
        }),
        Type::Array => Value::Array(Vec::new()),
        Type::Map => Value::Map(Vec::new()),
    }
}

/// A column's value from PostgreSQL's text, as its schema has it.
fn value(c: &Column, text: &str) -> std::result::Result<Value, String> {
    let bad = || format!("{text:?} is not a value of type {}", c.type_oid);
    Ok(match c.type_oid {
        16 => Value::Boolean(text == "t" || text == "true"),
        21 => Value::Int16(text.parse().map_err(|_| bad())?),
        23 => Value::Int32(text.parse().map_err(|_| bad())?),
        20 | 26 => Value::Int64(text.parse().map_err(|_| bad())?),
        700 => Value::Float32(float(text).ok_or_else(bad)? as f32),
        701 => Value::Float64(float(text).ok_or_else(bad)?),
        1700 => match numeric_scale(c.type_mod) {
            Some(scale) => Value::Bytes(Bytes::from(decimal_bytes(unscaled(text, scale).ok_or_else(bad)?))),
            None => {
                let scale = text.split_once('.').map_or(0, |(_, f)| f.len() as i32);
                let v = unscaled(text, scale).ok_or_else(bad)?;
                let schema = column_schema(c);
                Value::Struct(Struct {
                    schema,
                    values: vec![Value::Int32(scale), Value::Bytes(Bytes::from(decimal_bytes(v)))],
                })
            }
        },
        17 => Value::Bytes(Bytes::from(hex(text).ok_or_else(bad)?)),
        1082 => Value::Int32(date(text).ok_or_else(bad)? as i32),
        1083 => Value::Int64(time_micros(text).ok_or_else(bad)?),
        1114 => Value::Int64(timestamp_micros(text).ok_or_else(bad)?.0),
        1184 => {
            let (micros, offset) = timestamp_micros(text).ok_or_else(bad)?;
            // Padded to the column's fractional digits (6 unless declared), as Debezium does.
            let digits = if (0..=6).contains(&c.type_mod) { c.type_mod as usize } else { 6 };
            Value::String(zoned(micros - offset, digits))
        }
        _ => Value::String(text.to_string()),
    })
}

fn float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

/// A decimal's text as an unscaled integer at `scale`.
fn unscaled(text: &str, scale: i32) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.len() > scale as usize {
        return None;
    }
    let mut v: i128 = 0;
    for d in whole.bytes().chain(fraction.bytes()).chain(std::iter::repeat_n(b'0', scale as usize - fraction.len())) {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i128::from(d - b'0'))?;
    }
    Some(if negative { -v } else { v })
}

/// An integer as Connect's Decimal bytes: big-endian two's complement, as short as it goes.
fn decimal_bytes(v: i128) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

fn hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("\\x")?;
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok()).collect()
}

/// Days from 1970-01-01 of an ISO date (`2026-12-04`).
fn date(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let (y, m, d) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    Some(days_from_civil(y, m, d))
}

/// Microseconds of a time of day (`10:00:00.123456`).
fn time_micros(text: &str) -> Option<i64> {
    let (hms, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut parts = hms.splitn(3, ':');
    let (h, m, s): (i64, i64, i64) =
        (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    let mut micros = 0i64;
    for (i, d) in fraction.bytes().take(6).enumerate() {
        micros += i64::from(d.checked_sub(b'0').filter(|d| *d <= 9)?) * 10i64.pow(5 - i as u32);
    }
    Some(((h * 60 + m) * 60 + s) * 1_000_000 + micros)
}

/// Microseconds since the epoch of an ISO timestamp (`2026-12-04 10:00:00.5`, with an offset
/// such as `+00` or `+05:30` for `timestamptz`), and the offset in microseconds.
fn timestamp_micros(text: &str) -> Option<(i64, i64)> {
    let (day, rest) = text.split_once(' ')?;
    let days = date(day)?;
    let split = rest.find(['+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(split);
    let offset = if zone.is_empty() {
        0
    } else {
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let mut parts = zone[1..].split(':');
        let h: i64 = parts.next()?.parse().ok()?;
        let m: i64 = parts.next().map_or(Some(0), |m| m.parse().ok())?;
        sign * (h * 3600 + m * 60) * 1_000_000
    };
    Some((days * 86_400_000_000 + time_micros(clock)?, offset))
}

/// A UTC instant as ISO-8601 with `digits` of its fraction (`2026-12-04T10:00:00.123456Z`), as
/// Debezium's ZonedTimestamp writes it.
fn zoned(micros: i64, digits: usize) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let of_day = micros.rem_euclid(86_400_000_000);
    let (y, m, d) = civil(days);
    let (secs, frac) = (of_day / 1_000_000, of_day % 1_000_000);
    let mut out = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if digits > 0 {
        out.push('.');
        out.push_str(&format!("{frac:06}")[..digits]);
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(type_oid: u32, type_mod: i32) -> Column {
        Column { name: "c".into(), type_oid, type_mod, optional: true, key: false }
    }

    #[test]
    fn postgresql_text_becomes_debeziums_values() {
        assert_eq!(value(&col(23, -1), "42").unwrap(), Value::Int32(42));
        assert_eq!(value(&col(16, -1), "t").unwrap(), Value::Boolean(true));
        // numeric(10,2): Decimal of scale 2.
        let typmod = (10 << 16) + 2 + 4;
        assert_eq!(value(&col(1700, typmod), "-2.5").unwrap(), Value::Bytes(Bytes::from(vec![0xFF, 0x06])));
        assert_eq!(value(&col(1082, -1), "2026-12-04").unwrap(), Value::Int32(20_791));
        assert_eq!(value(&col(1114, -1), "1970-01-02 00:00:01.5").unwrap(), Value::Int64(86_401_500_000));
        assert_eq!(
            value(&col(1184, -1), "2026-12-04 12:30:00.25+02").unwrap(),
            Value::String("2026-12-04T10:30:00.250000Z".into())
        );
        assert_eq!(value(&col(1083, -1), "01:00:00").unwrap(), Value::Int64(3_600_000_000));
        assert_eq!(value(&col(17, -1), "\\x0aff").unwrap(), Value::Bytes(Bytes::from(vec![0x0a, 0xff])));
        assert_eq!(value(&col(25, -1), "hi").unwrap(), Value::String("hi".into()));
        assert!(value(&col(23, -1), "x").is_err());
        assert_eq!(decimal_bytes(128), vec![0x00, 0x80]);
        assert_eq!(decimal_bytes(-129), vec![0xFF, 0x7F]);
    }
}
