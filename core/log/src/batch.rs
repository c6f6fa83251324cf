//! Kafka RecordBatch v2: parsing, validation, offset assignment, encoding and record iteration.
//!
//! The log stores batches exactly as producers sent them; this module only reads them and patches
//! the fields the log owns (base offset, partition leader epoch, and for `LogAppendTime` topics the
//! timestamp type and max timestamp, after which the CRC is recomputed). Records inside a batch are
//! never re-encoded on the append path. [`BatchBuilder`] encodes new batches for Freshet's own
//! producers and for compaction, which rewrites a batch with a subset of its records.
//!
//! # Layout (all integers big-endian)
//!
//! | bytes  | field                   | notes                                              |
//! |--------|-------------------------|----------------------------------------------------|
//! | 0..8   | base offset (i64)       | assigned by the log                                 |
//! | 8..12  | batch length (i32)      | bytes after this field                              |
//! | 12..16 | partition leader epoch  | assigned by the log                                 |
//! | 16     | magic (i8)              | always 2                                            |
//! | 17..21 | CRC-32C (u32)           | over bytes 21..end                                  |
//! | 21..23 | attributes (i16)        | bits 0-2 compression, 3 timestamp type, 4 transactional, 5 control, 6 delete horizon |
//! | 23..27 | last offset delta (i32) |                                                     |
//! | 27..35 | base timestamp (i64)    |                                                     |
//! | 35..43 | max timestamp (i64)     |                                                     |
//! | 43..51 | producer id (i64)       | -1 when not idempotent                              |
//! | 51..53 | producer epoch (i16)    |                                                     |
//! | 53..57 | base sequence (i32)     |                                                     |
//! | 57..61 | record count (i32)      |                                                     |
//! | 61..   | records                 | compressed as a whole when bits 0-2 are not 0       |
//!
//! A record is: length (varint), attributes (i8), timestamp delta (varlong), offset delta (varint),
//! key length (varint, -1 for null) and key, value length (varint, -1 for null) and value, header
//! count (varint) and for each header a key length (varint) and UTF-8 key, a value length (varint,
//! -1 for null) and value. Varints are zigzag-encoded as in protobuf.

use bytes::{BufMut, Bytes, BytesMut};

pub use crate::compression::Compression;
use crate::compression::COMPRESSION_MASK;
use crate::error::{Error, Result};

/// Size of the fixed batch header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before the batch-length field ends: what a reader needs to know a batch's size.
pub const LENGTH_PREFIX_BYTES: usize = 12;
/// The only supported magic value.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// How a batch's timestamps were set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the log when the batch was appended.
    LogAppendTime,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The total size of the batch whose first [`LENGTH_PREFIX_BYTES`] bytes are `prefix`, or an error
/// when the length field cannot be a v2 batch.
pub fn batch_size_from_prefix(prefix: &[u8]) -> Result<usize> {
    debug_assert!(prefix.len() >= LENGTH_PREFIX_BYTES);
    let length = be_i32(prefix, BATCH_LENGTH);
    if length < (BATCH_HEADER_BYTES - LENGTH_PREFIX_BYTES) as i32 {
        return Err(Error::InvalidBatch(format!(
            "batch length field is {length}, smaller than the {} bytes of a v2 header",
            BATCH_HEADER_BYTES - LENGTH_PREFIX_BYTES
        )));
    }
    Ok(LENGTH_PREFIX_BYTES + length as usize)
}

/// A read-only view of one record batch (header plus records).
#[derive(Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
}

impl std::fmt::Debug for BatchView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchView")
            .field("base_offset", &self.base_offset())
            .field("last_offset", &self.last_offset())
            .field("n_records", &self.record_count())
            .field("size", &self.bytes.len())
            .finish()
    }
}

impl<'a> BatchView<'a> {
    /// Views the first batch in `bytes`, checking only that the header and the declared length fit.
    /// Use [`BatchView::validate`] before trusting the contents.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(Error::InvalidBatch(format!(
                "{} bytes is shorter than the {BATCH_HEADER_BYTES}-byte batch header",
                bytes.len()
            )));
        }
        let size = batch_size_from_prefix(bytes)?;
        if size > bytes.len() {
            return Err(Error::InvalidBatch(format!(
                "batch length field says {size} bytes but only {} are present",
                bytes.len()
            )));
        }
        Ok(BatchView { bytes: &bytes[..size] })
    }

    /// The batch's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
    /// The offset of the first record.
    pub fn base_offset(&self) -> i64 {
        be_i64(self.bytes, BASE_OFFSET)
    }
    /// `last_offset_delta` from the header.
    pub fn last_offset_delta(&self) -> i32 {
        be_i32(self.bytes, LAST_OFFSET_DELTA)
    }
    /// The offset of the last record (as the header says, also after compaction removed records).
    pub fn last_offset(&self) -> i64 {
        self.base_offset() + i64::from(self.last_offset_delta())
    }
    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    /// The leader epoch stamped by the log.
    pub fn partition_leader_epoch(&self) -> i32 {
        be_i32(self.bytes, LEADER_EPOCH)
    }
    /// The magic byte.
    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC] as i8
    }
    /// The stored CRC-32C.
    pub fn stored_crc(&self) -> u32 {
        be_u32(self.bytes, CRC)
    }
    /// The CRC-32C computed over the bytes it covers.
    pub fn computed_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[ATTRIBUTES..])
    }
    /// The attributes field.
    pub fn attributes(&self) -> i16 {
        be_i16(self.bytes, ATTRIBUTES)
    }
    /// The compression codec (an error for codec numbers Kafka does not define).
    pub fn compression(&self) -> Result<Compression> {
        Compression::from_attributes(self.attributes())
    }
    /// How the timestamps were set.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_BIT != 0
    }
    /// Whether the batch is a control batch (transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_BIT != 0
    }
    /// The first timestamp (record timestamps are deltas from it).
    pub fn base_timestamp(&self) -> i64 {
        be_i64(self.bytes, BASE_TIMESTAMP)
    }
    /// The largest timestamp in the batch (the append time for `LogAppendTime`).
    pub fn max_timestamp(&self) -> i64 {
        be_i64(self.bytes, MAX_TIMESTAMP)
    }
    /// The idempotent producer id, -1 if none.
    pub fn producer_id(&self) -> i64 {
        be_i64(self.bytes, PRODUCER_ID)
    }
    /// The producer epoch.
    pub fn producer_epoch(&self) -> i16 {
        be_i16(self.bytes, PRODUCER_EPOCH)
    }
    /// The sequence number of the first record.
    pub fn base_sequence(&self) -> i32 {
        be_i32(self.bytes, BASE_SEQUENCE)
    }
    /// The number of records the header declares.
    pub fn record_count(&self) -> i32 {
        be_i32(self.bytes, RECORD_COUNT)
    }
    /// The records section (compressed if the batch is).
    pub fn records_bytes(&self) -> &'a [u8] {
        &self.bytes[BATCH_HEADER_BYTES..]
    }

    /// Checks the CRC only: the check a reader of stored data makes.
    pub fn check_crc(&self) -> Result<()> {
        let (stored, computed) = (self.stored_crc(), self.computed_crc());
        if stored != computed {
            return Err(Error::InvalidBatch(format!(
                "CRC-32C mismatch: header says {stored:#010x}, contents give {computed:#010x}"
            )));
        }
        Ok(())
    }

    /// Full validation of a batch arriving from a producer: magic, CRC, counts and, for uncompressed
    /// batches, every record's framing and offset delta.
    pub fn validate(&self) -> Result<()> {
        if self.magic() != MAGIC_V2 {
            return Err(Error::InvalidBatch(format!(
                "magic byte is {}, only record batch v2 (magic 2) is supported",
                self.magic()
            )));
        }
        self.check_crc()?;
        let compression = self.compression()?;
        let count = self.record_count();
        if count <= 0 {
            return Err(Error::InvalidBatch(format!("record count is {count}, a batch needs at least one record")));
        }
        if self.last_offset_delta() != count - 1 {
            return Err(Error::InvalidBatch(format!(
                "last offset delta is {} but the batch declares {count} records",
                self.last_offset_delta()
            )));
        }
        if compression == Compression::None {
            check_records(self.records_bytes(), count)?;
        } else {
            check_records(&self.decompressed_records()?, count)?;
        }
        Ok(())
    }

    /// Iterates the records of an uncompressed batch; for a compressed one, use
    /// [`BatchView::decompressed_records`] and [`BatchView::records_in`], or
    /// [`BatchView::for_each_record`].
    pub fn records(&self) -> Result<RecordIter<'a>> {
        match self.compression()? {
            Compression::None => Ok(self.records_in(self.records_bytes())),
            other => Err(Error::Decode(format!(
                "batch at offset {} is compressed with {other:?}; decompress it first",
                self.base_offset()
            ))),
        }
    }

    /// The records section, decompressed (bounded by `compression::MAX_DECOMPRESSED_BYTES`).
    pub fn decompressed_records(&self) -> Result<Vec<u8>> {
        crate::compression::decompress(self.compression()?, self.records_bytes())
    }

    /// Iterates records in `section`: this batch's records section, decompressed if need be.
    pub fn records_in<'b>(&self, section: &'b [u8]) -> RecordIter<'b> {
        RecordIter {
            rest: section,
            base_offset: self.base_offset(),
            base_timestamp: self.base_timestamp(),
            log_append_time: match self.timestamp_type() {
                TimestampType::LogAppendTime => Some(self.max_timestamp()),
                TimestampType::CreateTime => None,
            },
            remaining: self.record_count().max(0) as usize,
        }
    }

    /// Calls `f` for every record, decompressing first when the batch is compressed.
    pub fn for_each_record(&self, mut f: impl FnMut(RecordView<'_>) -> Result<()>) -> Result<()> {
        if self.compression()? == Compression::None {
            for record in self.records()? {
                f(record?)?;
            }
        } else {
            let section = self.decompressed_records()?;
            for record in self.records_in(&section) {
                f(record?)?;
            }
        }
        Ok(())
    }
}

/// Walks the records of an uncompressed batch checking their framing (every length adds up) and
/// that offset deltas run 0, 1, 2, ... The append path's hot loop: it builds nothing.
fn check_records(records: &[u8], count: i32) -> Result<()> {
    let mut c = Cursor { bytes: records, at: 0 };
    let mut n = 0i32;
    while c.at < records.len() {
        let length = c.varint()?;
        let start = c.at;
        let end = start + length.max(0) as usize;
        if length < 0 || end > records.len() {
            return Err(Error::InvalidBatch(format!("record length {length} runs past the end of the batch")));
        }
        let mut r = Cursor { bytes: &records[..end], at: start };
        r.byte()?;
        r.varlong()?;
        let offset_delta = r.varint()?;
        if offset_delta != n {
            return Err(Error::InvalidBatch(format!("record {n} has offset delta {offset_delta}, expected {n}")));
        }
        r.skip_field()?;
        r.skip_field()?;
        let n_headers = r.varint()?;
        if n_headers < 0 {
            return Err(Error::InvalidBatch(format!("record has a negative header count {n_headers}")));
        }
        for _ in 0..n_headers {
            r.skip_field()?;
            r.skip_field()?;
        }
        if r.at != end {
            return Err(Error::InvalidBatch(format!(
                "record declares {length} bytes but its fields take {}",
                r.at - start
            )));
        }
        c.at = end;
        n += 1;
    }
    if n != count {
        return Err(Error::InvalidBatch(format!("batch declares {count} records but holds {n}")));
    }
    Ok(())
}

/// Patches the fields the log owns into a validated batch: base offset and leader epoch, and for
/// `LogAppendTime` topics the timestamp type and max timestamp (recomputing the CRC).
pub fn assign_in_place(batch: &mut [u8], base_offset: i64, leader_epoch: i32, log_append_time: Option<i64>) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
    if let Some(now_ms) = log_append_time {
        let attributes = be_i16(batch, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
        batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
        let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
        batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// The batch re-encoded with `codec`, as a broker does for a topic whose `compression.type`
/// names a codec: the same header (offsets, producer fields, timestamps, record count) and the
/// same records, compressed anew, with the attributes, length and CRC to match.
pub fn recompress(view: &BatchView<'_>, codec: Compression) -> Result<BytesMut> {
    let records = view.decompressed_records()?;
    let compressed = crate::compression::compress(codec, &records)?;
    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + compressed.len());
    out.extend_from_slice(&view.as_bytes()[..BATCH_HEADER_BYTES]);
    out.extend_from_slice(&compressed);
    let length = i32::try_from(out.len() - LENGTH_PREFIX_BYTES)
        .map_err(|_| Error::InvalidBatch(format!("a batch of {} bytes once compressed with {codec:?}", out.len())))?;
    out[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    let attributes = (view.attributes() & !COMPRESSION_MASK) | codec.attribute_bits();
    out[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES..]);
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// One header of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value, `None` for null.
    pub value: Option<Bytes>,
}

/// A record borrowed from a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Absolute offset.
    pub offset: i64,
    /// Offset delta inside the batch.
    pub offset_delta: i32,
    /// Absolute timestamp (the batch's append time for `LogAppendTime`).
    pub timestamp: i64,
    /// Key, `None` for null.
    pub key: Option<&'a [u8]>,
    /// Value, `None` for null (a tombstone on compacted topics).
    pub value: Option<&'a [u8]>,
    headers_bytes: &'a [u8],
    n_headers: usize,
}

impl<'a> RecordView<'a> {
    /// Decodes the headers.
    pub fn headers(&self) -> Result<Vec<Header>> {
        let mut cursor = Cursor { bytes: self.headers_bytes, at: 0 };
        let mut headers = Vec::with_capacity(self.n_headers);
        for _ in 0..self.n_headers {
            let key = cursor.bytes_field()?.ok_or_else(|| Error::Decode("header key is null".into()))?;
            let key = std::str::from_utf8(key).map_err(|_| Error::Decode("header key is not UTF-8".into()))?.to_owned();
            let value = cursor.bytes_field()?.map(Bytes::copy_from_slice);
            headers.push(Header { key, value });
        }
        Ok(headers)
    }
}

/// Iterator over the records of an uncompressed batch.
#[derive(Debug)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
    remaining: usize,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.remaining == 0 {
            self.rest = &[];
            return Some(Err(Error::InvalidBatch("bytes follow the last declared record".into())));
        }
        self.remaining -= 1;
        let result = self.decode_next();
        if result.is_err() {
            self.rest = &[];
        }
        Some(result)
    }
}

impl<'a> RecordIter<'a> {
    fn decode_next(&mut self) -> Result<RecordView<'a>> {
        let mut outer = Cursor { bytes: self.rest, at: 0 };
        let length = outer.varint()?;
        if length < 0 || outer.at + length as usize > self.rest.len() {
            return Err(Error::InvalidBatch(format!("record length {length} runs past the end of the batch")));
        }
        let end = outer.at + length as usize;
        let mut c = Cursor { bytes: &self.rest[..end], at: outer.at };
        let _attributes = c.byte()?;
        let timestamp_delta = c.varlong()?;
        let offset_delta = c.varint()?;
        let key = c.bytes_field()?;
        let value = c.bytes_field()?;
        let n_headers = c.varint()?;
        if n_headers < 0 {
            return Err(Error::InvalidBatch(format!("record has a negative header count {n_headers}")));
        }
        let headers_start = c.at;
        for _ in 0..n_headers {
            c.bytes_field()?;
            c.bytes_field()?;
        }
        if c.at != end {
            return Err(Error::InvalidBatch(format!(
                "record declares {length} bytes but its fields take {}",
                c.at - (end - length as usize)
            )));
        }
        let headers_bytes = &self.rest[headers_start..end];
        self.rest = &self.rest[end..];
        Ok(RecordView {
            offset: self.base_offset + i64::from(offset_delta),
            offset_delta,
            timestamp: self.log_append_time.unwrap_or(self.base_timestamp.wrapping_add(timestamp_delta)),
            key,
            value,
            headers_bytes,
            n_headers: n_headers as usize,
        })
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self.bytes.get(self.at).ok_or_else(|| Error::InvalidBatch("record is truncated".into()))?;
        self.at += 1;
        Ok(b)
    }
    #[inline]
    fn varlong(&mut self) -> Result<i64> {
        // Most varints in a record (lengths, small deltas) take one byte.
        if let Some(&b) = self.bytes.get(self.at) {
            if b < 0x80 {
                self.at += 1;
                let raw = u64::from(b);
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        self.varlong_slow()
    }
    #[cold]
    fn varlong_slow(&mut self) -> Result<i64> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(Error::InvalidBatch("varint is longer than 10 bytes".into()));
            }
            raw |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(Error::InvalidBatch("varint is longer than 10 bytes".into()))
    }
    #[inline]
    fn varint(&mut self) -> Result<i32> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| Error::InvalidBatch(format!("varint {v} does not fit in 32 bits")))
    }
    /// Skips a length-prefixed field (-1 for null).
    #[inline]
    fn skip_field(&mut self) -> Result<()> {
        let len = self.varint()?;
        if len > 0 {
            let end = self.at + len as usize;
            if end > self.bytes.len() {
                return Err(Error::InvalidBatch(format!("field of {len} bytes runs past the end of its record")));
            }
            self.at = end;
        }
        Ok(())
    }
    #[inline]
    fn bytes_field(&mut self) -> Result<Option<&'a [u8]>> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        let end = self.at + len as usize;
        if end > self.bytes.len() {
            return Err(Error::InvalidBatch(format!("field of {len} bytes runs past the end of its record")));
        }
        let field = &self.bytes[self.at..end];
        self.at = end;
        Ok(Some(field))
    }
}

fn put_varlong(buf: &mut BytesMut, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        buf.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    buf.put_u8(raw as u8);
}

fn put_bytes_field(buf: &mut BytesMut, field: Option<&[u8]>) {
    match field {
        None => put_varlong(buf, -1),
        Some(b) => {
            put_varlong(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

fn varlong_len(v: i64) -> usize {
    let raw = ((v << 1) ^ (v >> 63)) as u64;
    (64 - raw.max(1).leading_zeros() as usize).div_ceil(7)
}

/// An owned record to produce.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Key, `None` for null.
    pub key: Option<Bytes>,
    /// Value, `None` for null.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Timestamp in milliseconds since the epoch.
    pub timestamp: i64,
}

impl Record {
    /// A record with a key and a value.
    pub fn new(key: Option<impl Into<Bytes>>, value: Option<impl Into<Bytes>>, timestamp: i64) -> Self {
        Record { key: key.map(Into::into), value: value.map(Into::into), headers: Vec::new(), timestamp }
    }
}

/// Builds an uncompressed record batch v2.
///
/// Records are encoded straight into one buffer; [`BatchBuilder::finish`] writes the header and
/// CRC. The base offset is left at 0 for the log to assign.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    n_records: i32,
    last_offset_delta: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    attributes: i16,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(4096)
    }
}

impl BatchBuilder {
    /// A builder whose buffer starts with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(bytes.max(BATCH_HEADER_BYTES));
        buf.resize(BATCH_HEADER_BYTES, 0);
        BatchBuilder {
            buf,
            base_timestamp: None,
            max_timestamp: -1,
            n_records: 0,
            last_offset_delta: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes: 0,
        }
    }

    /// Sets the idempotent producer fields.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch as part of a transaction (set `producer` too).
    pub fn transactional(mut self) -> Self {
        self.attributes |= TRANSACTIONAL_BIT;
        self
    }

    /// Marks the batch as a transactional control batch (a transaction marker).
    pub fn control(mut self) -> Self {
        self.attributes |= TRANSACTIONAL_BIT | CONTROL_BIT;
        self
    }

    /// Copies the producer, timestamp-type and transactional fields of `batch` (compaction keeps
    /// them when it rewrites a batch).
    pub fn like(batch: &BatchView<'_>) -> Self {
        let mut builder = Self::with_capacity(batch.size()).producer(
            batch.producer_id(),
            batch.producer_epoch(),
            batch.base_sequence(),
        );
        builder.attributes = batch.attributes() & !COMPRESSION_MASK;
        builder.base_timestamp = Some(batch.base_timestamp());
        builder
    }

    /// Number of records added.
    pub fn len(&self) -> usize {
        self.n_records as usize
    }
    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.n_records == 0
    }
    /// Bytes the batch will take.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Appends a record with the next offset delta.
    pub fn push(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header], timestamp: i64) {
        let delta = self.last_offset_delta + 1;
        self.push_with_delta(delta, key, value, headers, timestamp);
    }

    /// Appends an existing record (compaction keeps the offset delta and timestamp).
    pub fn push_view(&mut self, record: &RecordView<'_>) -> Result<()> {
        let headers = record.headers()?;
        self.push_with_delta(record.offset_delta, record.key, record.value, &headers, record.timestamp);
        Ok(())
    }

    fn push_with_delta(
        &mut self,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
        timestamp: i64,
    ) {
        let base_timestamp = *self.base_timestamp.get_or_insert(timestamp);
        let timestamp_delta = timestamp - base_timestamp;
        let field_len = |f: Option<&[u8]>| f.map_or(varlong_len(-1), |b| varlong_len(b.len() as i64) + b.len());
        let mut body_len = 1
            + varlong_len(timestamp_delta)
            + varlong_len(i64::from(offset_delta))
            + field_len(key)
            + field_len(value)
            + varlong_len(headers.len() as i64);
        for h in headers {
            body_len += field_len(Some(h.key.as_bytes())) + field_len(h.value.as_deref());
        }
        self.buf.reserve(body_len + 5);
        put_varlong(&mut self.buf, body_len as i64);
        self.buf.put_u8(0);
        put_varlong(&mut self.buf, timestamp_delta);
        put_varlong(&mut self.buf, i64::from(offset_delta));
        put_bytes_field(&mut self.buf, key);
        put_bytes_field(&mut self.buf, value);
        put_varlong(&mut self.buf, headers.len() as i64);
        for h in headers {
            put_bytes_field(&mut self.buf, Some(h.key.as_bytes()));
            put_bytes_field(&mut self.buf, h.value.as_deref());
        }
        self.n_records += 1;
        self.last_offset_delta = offset_delta;
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    /// Sets `last_offset_delta` explicitly (compaction keeps the original batch's value so offsets
    /// stay where they were).
    pub fn set_last_offset_delta(&mut self, delta: i32) {
        assert!(delta >= self.last_offset_delta, "last offset delta cannot go below a record's delta");
        self.last_offset_delta = delta;
    }

    /// Compresses the records with `codec`, then writes the header and CRC.
    pub fn finish_compressed(mut self, codec: Compression) -> Result<Bytes> {
        if codec != Compression::None {
            let compressed = crate::compression::compress(codec, &self.buf[BATCH_HEADER_BYTES..])?;
            self.buf.truncate(BATCH_HEADER_BYTES);
            self.buf.extend_from_slice(&compressed);
            self.attributes = (self.attributes & !COMPRESSION_MASK) | codec.attribute_bits();
        }
        Ok(self.finish())
    }

    /// Writes the header and CRC and returns the batch bytes.
    pub fn finish(mut self) -> Bytes {
        let b = &mut self.buf[..];
        let length = (b.len() - LENGTH_PREFIX_BYTES) as i32;
        b[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&0i64.to_be_bytes());
        b[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
        b[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
        b[MAGIC] = MAGIC_V2 as u8;
        b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&self.attributes.to_be_bytes());
        b[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&self.last_offset_delta.to_be_bytes());
        let base_timestamp = self.base_timestamp.unwrap_or(-1);
        b[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&base_timestamp.to_be_bytes());
        b[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&self.max_timestamp.to_be_bytes());
        b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&self.producer_id.to_be_bytes());
        b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&self.producer_epoch.to_be_bytes());
        b[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&self.base_sequence.to_be_bytes());
        b[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&self.n_records.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        self.buf.freeze()
    }
}

/// Iterates the batches in a byte range read from the log. A trailing partial batch (which a
/// network read may return) ends the iteration without an error.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    rest: &'a [u8],
}

impl<'a> Batches<'a> {
    /// Batches of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Batches { rest: bytes }
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<BatchView<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < LENGTH_PREFIX_BYTES {
            return None;
        }
        let size = match batch_size_from_prefix(self.rest) {
            Ok(size) => size,
            Err(e) => {
                self.rest = &[];
                return Some(Err(e));
            }
        };
        if size > self.rest.len() {
            return None;
        }
        let (batch, rest) = self.rest.split_at(size);
        self.rest = rest;
        Some(BatchView::parse(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varlong_len_matches_encoding() {
        for v in [0i64, 1, -1, 63, 64, -64, -65, 8191, 1 << 40, i64::MAX, i64::MIN] {
            let mut buf = BytesMut::new();
            put_varlong(&mut buf, v);
            assert_eq!(buf.len(), varlong_len(v), "value {v}");
            let mut c = Cursor { bytes: &buf, at: 0 };
            assert_eq!(c.varlong().unwrap(), v);
        }
    }

    #[test]
    fn compressed_batches_validate_and_decode_with_every_codec() {
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let mut b = BatchBuilder::default();
            for i in 0..100 {
                b.push(Some(format!("k{i}").as_bytes()), Some(&[b'x'; 200]), &[], 1000 + i);
            }
            let bytes = b.finish_compressed(codec).unwrap();
            let view = BatchView::parse(&bytes).unwrap();
            assert_eq!(view.compression().unwrap(), codec);
            assert!(view.size() < 100 * 200, "{codec:?} batch is not compressed");
            view.validate().unwrap();
            let mut keys = Vec::new();
            view.for_each_record(|r| {
                keys.push(String::from_utf8(r.key.unwrap().to_vec()).unwrap());
                Ok(())
            })
            .unwrap();
            assert_eq!(keys.len(), 100);
            assert_eq!(keys[99], "k99");
            // A record count that disagrees with the compressed contents is caught.
            let mut wrong = BytesMut::from(&bytes[..]);
            wrong[57..61].copy_from_slice(&101i32.to_be_bytes());
            wrong[23..27].copy_from_slice(&100i32.to_be_bytes());
            let crc = crc32c::crc32c(&wrong[ATTRIBUTES..]);
            wrong[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
            let e = BatchView::parse(&wrong).unwrap().validate().unwrap_err();
            assert!(e.to_string().contains("declares 101 records but holds 100"), "{codec:?}: {e}");
        }
    }

    #[test]
    fn built_batch_validates_and_round_trips() {
        let mut b = BatchBuilder::default();
        let headers = vec![Header { key: "h".into(), value: Some(Bytes::from_static(b"v")) }];
        b.push(Some(b"k1"), Some(b"v1"), &headers, 1000);
        b.push(None, None, &[], 990);
        b.push(Some(b""), Some(b"v3"), &[], 1010);
        let bytes = b.finish();
        let view = BatchView::parse(&bytes).unwrap();
        view.validate().unwrap();
        assert_eq!(view.record_count(), 3);
        assert_eq!(view.max_timestamp(), 1010);
        let records: Vec<_> = view.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(records[0].key, Some(&b"k1"[..]));
        assert_eq!(records[0].headers().unwrap(), headers);
        assert_eq!(records[1].key, None);
        assert_eq!(records[1].value, None);
        assert_eq!(records[1].timestamp, 990);
        assert_eq!(records[2].offset, 2);
        assert_eq!(records[2].key, Some(&b""[..]));
    }
}
