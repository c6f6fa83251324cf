//! PostgreSQL's binary `COPY` format, written from Connect values.
//!
//! A stream is a header (`PGCOPY\n\377\r\n\0`, then two zero 32-bit integers: flags and the
//! length of a header extension), then one tuple per row and a trailer (a 16-bit -1). A tuple is
//! a 16-bit field count, then per field a 32-bit length (-1 for NULL) and that many bytes of the
//! type's binary form. Every integer is big-endian. Each type's binary form is what its `send`
//! function writes: see [`PgType`] for the ones the sink writes.

use bytes::{BufMut, BytesMut};

use crate::converter::{Converter, JsonConverter};
use crate::data::{logical, Schema, Type, Value};

/// Days from 1970-01-01 (Connect's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i64 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS * 86_400_000_000;

/// The type a Connect field is written as: the column type the sink creates for it, and the
/// binary form it sends in `COPY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PgType {
    /// `boolean`: one byte, 0 or 1.
    Bool,
    /// `smallint` (Connect's INT8 and INT16: PostgreSQL has no one-byte integer).
    Int2,
    /// `integer`.
    Int4,
    /// `bigint`.
    Int8,
    /// `real`: IEEE 754 bits.
    Float4,
    /// `double precision`.
    Float8,
    /// `text`: UTF-8 bytes.
    Text,
    /// `bytea`: the bytes.
    Bytea,
    /// `numeric` (Connect's Decimal): digit count, weight, sign and display scale (16 bits
    /// each), then base-10000 digits of 16 bits, most significant first.
    Numeric,
    /// `date` (Connect's Date): 32-bit days since 2000-01-01.
    Date,
    /// `time` (Connect's Time): 64-bit microseconds since midnight.
    Time,
    /// `timestamp` (Connect's Timestamp), sent as `timestamptz`: 64-bit microseconds since
    /// 2000-01-01 UTC, so the session's time zone (`db.timezone`) decides the wall clock a
    /// `timestamp` column keeps.
    Timestamp,
    /// `jsonb` (Connect's arrays, maps and structs, as schemaless JSON): a version byte (1), then
    /// the JSON text.
    Jsonb,
}

impl PgType {
    /// The type values of `schema` are written as.
    pub(crate) fn of(schema: &Schema) -> PgType {
        match schema.name.as_deref() {
            Some(logical::DECIMAL) => return PgType::Numeric,
            Some(logical::DATE) => return PgType::Date,
            Some(logical::TIME) => return PgType::Time,
            Some(logical::TIMESTAMP) => return PgType::Timestamp,
            _ => {}
        }
        match schema.ty {
            Type::Int8 | Type::Int16 => PgType::Int2,
            Type::Int32 => PgType::Int4,
            Type::Int64 => PgType::Int8,
            Type::Float32 => PgType::Float4,
            Type::Float64 => PgType::Float8,
            Type::Boolean => PgType::Bool,
            Type::String => PgType::Text,
            Type::Bytes => PgType::Bytea,
            Type::Array | Type::Map | Type::Struct => PgType::Jsonb,
        }
    }

    /// The column type a created table gets.
    pub(crate) fn column_sql(self) -> &'static str {
        match self {
            PgType::Bool => "boolean",
            PgType::Int2 => "smallint",
            PgType::Int4 => "integer",
            PgType::Int8 => "bigint",
            PgType::Float4 => "real",
            PgType::Float8 => "double precision",
            PgType::Text => "text",
            PgType::Bytea => "bytea",
            PgType::Numeric => "numeric",
            PgType::Date => "date",
            PgType::Time => "time",
            PgType::Timestamp => "timestamp",
            PgType::Jsonb => "jsonb",
        }
    }

    /// The type a staging table's column has (the form `COPY` sends).
    pub(crate) fn stage_sql(self) -> &'static str {
        match self {
            PgType::Timestamp => "timestamptz",
            other => other.column_sql(),
        }
    }
}

/// Rows in the binary `COPY` format, built in one buffer.
#[derive(Debug)]
pub(crate) struct CopyRows {
    buf: BytesMut,
    n_rows: usize,
}

impl CopyRows {
    pub(crate) fn new() -> CopyRows {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.put_slice(b"PGCOPY\n\xff\r\n\0");
        buf.put_i32(0);
        buf.put_i32(0);
        CopyRows { buf, n_rows: 0 }
    }

    /// Where the next row starts: to [`CopyRows::undo`] a row that failed half-way.
    pub(crate) fn mark(&self) -> usize {
        self.buf.len()
    }

    /// What was written since `mark`.
    pub(crate) fn since(&self, mark: usize) -> &[u8] {
        &self.buf[mark..]
    }

    /// Drops what was written since `mark`.
    pub(crate) fn undo(&mut self, mark: usize) {
        self.buf.truncate(mark);
    }

    /// Starts a row of `n_fields` fields.
    pub(crate) fn row(&mut self, n_fields: usize) {
        self.buf.put_i16(n_fields as i16);
        self.n_rows += 1;
    }

    /// A row was undone.
    pub(crate) fn unrow(&mut self) {
        self.n_rows -= 1;
    }

    /// How many rows were written.
    pub(crate) fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Writes text.
    pub(crate) fn text(&mut self, text: &str) -> Result<(), String> {
        if text.contains('\0') {
            return Err("PostgreSQL text cannot hold a NUL character (\\u0000)".into());
        }
        self.bytes(text.as_bytes());
        Ok(())
    }

    /// Writes raw bytes as one field.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.buf.put_i32(bytes.len() as i32);
        self.buf.put_slice(bytes);
    }

    pub(crate) fn int4(&mut self, v: i32) {
        self.buf.put_i32(4);
        self.buf.put_i32(v);
    }

    pub(crate) fn int8(&mut self, v: i64) {
        self.buf.put_i32(8);
        self.buf.put_i64(v);
    }

    /// Writes `value` as `ty`; a value of another kind is an error saying what it is.
    pub(crate) fn value(&mut self, ty: PgType, schema: &Schema, value: &Value) -> Result<(), String> {
        let b = &mut self.buf;
        match (ty, value) {
            (_, Value::Null) => b.put_i32(-1),
            (PgType::Bool, Value::Boolean(v)) => {
                b.put_i32(1);
                b.put_u8(u8::from(*v));
            }
            (PgType::Int2, Value::Int8(v)) => {
                b.put_i32(2);
                b.put_i16(i16::from(*v));
            }
            (PgType::Int2, Value::Int16(v)) => {
                b.put_i32(2);
                b.put_i16(*v);
            }
            (PgType::Int4, Value::Int32(v)) => self.int4(*v),
            (PgType::Int8, Value::Int64(v)) => self.int8(*v),
            (PgType::Float4, Value::Float32(v)) => {
                b.put_i32(4);
                b.put_f32(*v);
            }
            (PgType::Float8, Value::Float64(v)) => {
                b.put_i32(8);
                b.put_f64(*v);
            }
            (PgType::Text, Value::String(v)) => self.text(v)?,
            (PgType::Bytea, Value::Bytes(v)) => self.bytes(v),
            (PgType::Numeric, Value::Bytes(unscaled)) => {
                let scale = schema.parameters.get(logical::DECIMAL_SCALE).and_then(|s| s.parse().ok()).unwrap_or(0);
                numeric(b, unscaled, scale);
            }
            (PgType::Date, Value::Int32(days)) => self.int4((i64::from(*days) - PG_EPOCH_DAYS) as i32),
            (PgType::Time, Value::Int32(ms)) => self.int8(i64::from(*ms) * 1000),
            (PgType::Timestamp, Value::Int64(ms)) => self.int8(ms.saturating_mul(1000) - PG_EPOCH_MICROS),
            (PgType::Jsonb, v) => {
                let json = JsonConverter::with_schemas(false)
                    .encode("", None, v)
                    .map_err(|e| format!("not writable as JSON: {e}"))?
                    .unwrap_or_default();
                b.put_i32(json.len() as i32 + 1);
                b.put_u8(1);
                b.put_slice(&json);
            }
            (ty, v) => return Err(format!("a {} value where the schema says {}", v.kind(), ty.column_sql())),
        }
        Ok(())
    }

    /// The stream, with its trailer.
    pub(crate) fn finish(mut self) -> bytes::Bytes {
        self.buf.put_i16(-1);
        self.buf.freeze()
    }
}

/// Writes a decimal, given as Connect keeps it (the unscaled value in big-endian two's
/// complement, and a scale), in `numeric`'s binary form.
fn numeric(b: &mut BytesMut, unscaled: &[u8], scale: i32) {
    let negative = unscaled.first().is_some_and(|&x| x & 0x80 != 0);
    let mut magnitude: Vec<u8> = unscaled.to_vec();
    if negative {
        negate(&mut magnitude);
    }
    let mut digits = decimal_digits(&magnitude);
    // Align the decimal point on a base-10000 boundary.
    let (frac_digits, dscale) = if scale >= 0 {
        let pad = (4 - scale % 4) % 4;
        digits.extend(std::iter::repeat_n(0, pad as usize));
        ((scale + pad) as usize, scale as u16)
    } else {
        digits.extend(std::iter::repeat_n(0, (-scale) as usize));
        (0, 0)
    };
    let int_digits = digits.len().saturating_sub(frac_digits);
    let lead = (4 - int_digits % 4) % 4;
    let mut all = vec![0u8; lead + frac_digits.saturating_sub(digits.len())];
    all.extend(digits);
    let mut groups: Vec<i16> = all.chunks(4).map(|c| c.iter().fold(0i16, |acc, &d| acc * 10 + i16::from(d))).collect();
    let mut weight = ((lead + int_digits) / 4) as i16 - 1;
    // Leading zero groups lower the weight; trailing ones need not be sent.
    let first = groups.iter().position(|&g| g != 0);
    let Some(first) = first else {
        b.put_i32(8);
        b.put_i16(0);
        b.put_i16(0);
        b.put_u16(0);
        b.put_u16(dscale);
        return;
    };
    groups.drain(..first);
    weight -= first as i16;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    b.put_i32(8 + 2 * groups.len() as i32);
    b.put_i16(groups.len() as i16);
    b.put_i16(weight);
    b.put_u16(if negative { 0x4000 } else { 0 });
    b.put_u16(dscale);
    for g in groups {
        b.put_i16(g);
    }
}

/// Negates a big-endian two's complement integer in place (inverts it and adds one): a
/// negative number's magnitude from it, or the other way round.
pub(super) fn negate(bytes: &mut [u8]) {
    for x in bytes.iter_mut() {
        *x = !*x;
    }
    for x in bytes.iter_mut().rev() {
        let (v, carry) = x.overflowing_add(1);
        *x = v;
        if !carry {
            break;
        }
    }
}

/// The decimal digits of a big-endian unsigned integer, most significant first (none for 0).
fn decimal_digits(magnitude: &[u8]) -> Vec<u8> {
    let mut n: Vec<u8> = magnitude.iter().copied().skip_while(|&x| x == 0).collect();
    let mut digits = Vec::new();
    while !n.is_empty() {
        let mut rem = 0u32;
        for x in &mut n {
            let cur = (rem << 8) | u32::from(*x);
            *x = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(rem as u8);
        let zeros = n.iter().take_while(|&&x| x == 0).count();
        n.drain(..zeros);
    }
    digits.reverse();
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numeric fields of a decimal: (ndigits, weight, sign, dscale, digits).
    fn numeric_of(unscaled: i128, scale: i32) -> (i16, i16, u16, u16, Vec<i16>) {
        let bytes = unscaled.to_be_bytes();
        let mut b = BytesMut::new();
        numeric(&mut b, &bytes, scale);
        let mut r = &b[..];
        use bytes::Buf;
        let len = r.get_i32();
        assert_eq!(len as usize, r.len());
        let (n, w, s, d) = (r.get_i16(), r.get_i16(), r.get_u16(), r.get_u16());
        let digits = (0..n).map(|_| r.get_i16()).collect();
        (n, w, s, d, digits)
    }

    #[test]
    fn decimals_in_numerics_binary_form() {
        // 12345.678 = 1 2345 . 6780, weight 1.
        assert_eq!(numeric_of(12_345_678, 3), (3, 1, 0, 3, vec![1, 2345, 6780]));
        assert_eq!(numeric_of(-12_345_678, 3), (3, 1, 0x4000, 3, vec![1, 2345, 6780]));
        // 0.0001 = weight -1.
        assert_eq!(numeric_of(1, 4), (1, -1, 0, 4, vec![1]));
        // 0.00001 = 0.0000 1000: weight -2.
        assert_eq!(numeric_of(1, 5), (1, -2, 0, 5, vec![1000]));
        assert_eq!(numeric_of(0, 2), (0, 0, 0, 2, vec![]));
        // 10000 = one group of 1 at weight 1; trailing zero groups are not sent.
        assert_eq!(numeric_of(10_000, 0), (1, 1, 0, 0, vec![1]));
        // A negative scale multiplies: 12 * 10^3.
        assert_eq!(numeric_of(12, -3), (2, 1, 0, 0, vec![1, 2000]));
        assert_eq!(numeric_of(i128::MIN, 0).1, 9);
    }
}
