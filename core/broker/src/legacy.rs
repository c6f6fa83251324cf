//! Produce versions 0 to 2 and the message sets they carry (message format v0 and v1, before
//! record batches), which the broker still serves: clients that predate record batches use them,
//! and older librdkafka only compresses with gzip, Snappy or LZ4 when a broker advertises
//! Produce from version 0.
//!
//! A message set is converted into one record batch v2 (keys, values and timestamps kept; a
//! compressed message set's inner messages are unpacked and the batch is compressed again with
//! the same codec), so the log holds one format. Every message's CRC is checked first; a message
//! set that does not parse is refused whole.
//!
//! Layouts (all big-endian): request v0-2 `acks i16, timeout_ms i32, [topic string,
//! [partition i32, message_set bytes]]`; response `[topic string, [partition i32, error_code
//! i16, base_offset i64, (v2) log_append_time i64]], (v1+) throttle_time_ms i32`. A message:
//! `offset i64, size i32, crc u32, magic i8, attributes i8, (v1) timestamp i64, key bytes,
//! value bytes`, the CRC (CRC-32, IEEE) covering magic to the end.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use freshet_log::batch::{BatchBuilder, Compression};

/// A partition of a Produce v0-2 request: its records as a batch v2, or why they were refused.
pub(crate) type PartitionData = (i32, Result<Bytes, String>);

/// A decoded Produce request of version 0 to 2.
#[derive(Debug)]
pub(crate) struct LegacyProduce {
    pub(crate) acks: i16,
    /// How long `acks=-1` may wait for the in-sync replicas.
    pub(crate) timeout_ms: i32,
    /// Each topic's partitions.
    pub(crate) topics: Vec<(String, Vec<PartitionData>)>,
}

fn need(buf: &Bytes, n: usize, what: &str) -> Result<(), String> {
    if buf.remaining() < n {
        return Err(format!("the request ends inside {what}"));
    }
    Ok(())
}

fn string(buf: &mut Bytes) -> Result<String, String> {
    need(buf, 2, "a string length")?;
    let len = buf.get_i16();
    let len = usize::try_from(len).map_err(|_| "a null topic name".to_string())?;
    need(buf, len, "a string")?;
    String::from_utf8(buf.split_to(len).to_vec()).map_err(|_| "a topic name that is not UTF-8".to_string())
}

fn array_len(buf: &mut Bytes, min_element: usize) -> Result<usize, String> {
    need(buf, 4, "an array length")?;
    let n = buf.get_i32();
    let n = usize::try_from(n).unwrap_or(0);
    // Bounded by the bytes left before anything is allocated.
    if n.saturating_mul(min_element) > buf.remaining() {
        return Err(format!("an array of {n} elements in {} bytes", buf.remaining()));
    }
    Ok(n)
}

/// Decodes a Produce request body of version 0, 1 or 2.
pub(crate) fn decode_produce(mut buf: Bytes, now_ms: i64) -> Result<LegacyProduce, String> {
    need(&buf, 6, "acks and timeout")?;
    let acks = buf.get_i16();
    let timeout_ms = buf.get_i32();
    let n_topics = array_len(&mut buf, 6)?;
    let mut topics = Vec::with_capacity(n_topics);
    for _ in 0..n_topics {
        let name = string(&mut buf)?;
        let n_partitions = array_len(&mut buf, 8)?;
        let mut partitions = Vec::with_capacity(n_partitions);
        for _ in 0..n_partitions {
            need(&buf, 8, "a partition")?;
            let partition = buf.get_i32();
            let size = buf.get_i32();
            let size = usize::try_from(size).map_err(|_| "a null message set".to_string())?;
            need(&buf, size, "a message set")?;
            let set = buf.split_to(size);
            partitions.push((partition, message_set_to_batch(&set, now_ms)));
        }
        topics.push((name, partitions));
    }
    Ok(LegacyProduce { acks, timeout_ms, topics })
}

/// One partition's answer.
#[derive(Debug)]
pub(crate) struct PartitionResult {
    pub(crate) partition: i32,
    pub(crate) error_code: i16,
    pub(crate) base_offset: i64,
    pub(crate) log_append_time: i64,
}

/// Encodes a Produce response body of version 0, 1 or 2.
pub(crate) fn encode_produce_response(out: &mut BytesMut, version: i16, topics: &[(String, Vec<PartitionResult>)]) {
    out.put_i32(topics.len() as i32);
    for (name, partitions) in topics {
        out.put_i16(name.len() as i16);
        out.put_slice(name.as_bytes());
        out.put_i32(partitions.len() as i32);
        for p in partitions {
            out.put_i32(p.partition);
            out.put_i16(p.error_code);
            out.put_i64(p.base_offset);
            if version >= 2 {
                out.put_i64(p.log_append_time);
            }
        }
    }
    if version >= 1 {
        out.put_i32(0);
    }
}

/// A message of format v0 or v1.
struct Message {
    magic: i8,
    attributes: i8,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
}

fn nullable_bytes(buf: &mut Bytes, what: &str) -> Result<Option<Bytes>, String> {
    need(buf, 4, what)?;
    let len = buf.get_i32();
    if len < 0 {
        return Ok(None);
    }
    need(buf, len as usize, what)?;
    Ok(Some(buf.split_to(len as usize)))
}

/// The messages of a message set, in order. A trailing partial message (which a client does not
/// send, but a truncated request may carry) is an error.
fn messages(set: &Bytes) -> Result<Vec<Message>, String> {
    let mut buf = set.clone();
    let mut out = Vec::new();
    while buf.has_remaining() {
        need(&buf, 12, "a message's offset and size")?;
        let _offset = buf.get_i64();
        let size = buf.get_i32();
        let size = usize::try_from(size).ok().filter(|s| *s >= 14).ok_or(format!("a message size of {size}"))?;
        need(&buf, size, "a message")?;
        let mut m = buf.split_to(size);
        let crc = m.get_u32();
        let computed = crc32fast::hash(&m);
        if crc != computed {
            return Err(format!("a message with CRC {crc:#010x} whose bytes give {computed:#010x}"));
        }
        let magic = m.get_i8();
        if !(0..=1).contains(&magic) {
            return Err(format!("a message of magic {magic} in a message set"));
        }
        let attributes = m.get_i8();
        let timestamp = if magic == 1 {
            need(&m, 8, "a message timestamp")?;
            m.get_i64()
        } else {
            -1
        };
        let key = nullable_bytes(&mut m, "a message key")?;
        let value = nullable_bytes(&mut m, "a message value")?;
        out.push(Message { magic, attributes, timestamp, key, value });
    }
    Ok(out)
}

fn codec(attributes: i8) -> Result<Compression, String> {
    Ok(match attributes & 0x07 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        other => return Err(format!("compression codec {other} in a message of format v0/v1")),
    })
}

/// A message set as one record batch v2, compressed with the codec its producer used.
pub(crate) fn message_set_to_batch(set: &Bytes, now_ms: i64) -> Result<Bytes, String> {
    let outer = messages(set)?;
    let mut builder = BatchBuilder::with_capacity(set.len() + 64);
    let mut batch_codec = Compression::None;
    for m in outer {
        let c = codec(m.attributes)?;
        // Format v1 timestamps: CreateTime as sent; LogAppendTime (attribute bit 3) and v0's
        // missing ones become the broker's time.
        let time =
            |t: i64, attributes: i8, magic: i8| if magic == 0 || attributes & 0x08 != 0 || t < 0 { now_ms } else { t };
        if c == Compression::None {
            builder.push(m.key.as_deref(), m.value.as_deref(), &[], time(m.timestamp, m.attributes, m.magic));
            continue;
        }
        batch_codec = c;
        let wrapped = m.value.ok_or("a compressed message without a value")?;
        let inner =
            freshet_log::compression::decompress(c, &wrapped).map_err(|e| format!("a {c:?} message set: {e}"))?;
        for i in messages(&Bytes::from(inner))? {
            if i.attributes & 0x07 != 0 {
                return Err("a compressed message inside a compressed message".into());
            }
            // Inner messages of a v1 wrapper with LogAppendTime take the broker's time too.
            let t = time(if m.attributes & 0x08 != 0 { -1 } else { i.timestamp }, m.attributes, i.magic.min(m.magic));
            builder.push(i.key.as_deref(), i.value.as_deref(), &[], t);
        }
    }
    if builder.is_empty() {
        return Err("an empty message set".into());
    }
    builder.finish_compressed(batch_codec).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshet_log::batch::Batches;

    fn message(magic: i8, attributes: i8, timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Vec<u8> {
        let mut body = vec![magic as u8, attributes as u8];
        if magic == 1 {
            body.extend_from_slice(&timestamp.to_be_bytes());
        }
        for field in [key, value] {
            match field {
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    body.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    body.extend_from_slice(b);
                }
            }
        }
        let mut m = crc32fast::hash(&body).to_be_bytes().to_vec();
        m.extend_from_slice(&body);
        let mut out = 0i64.to_be_bytes().to_vec();
        out.extend_from_slice(&(m.len() as i32).to_be_bytes());
        out.extend_from_slice(&m);
        out
    }

    type Fields = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

    fn records(batch: &Bytes) -> Vec<Fields> {
        let view = Batches::new(batch).next().unwrap().unwrap();
        view.check_crc().unwrap();
        let section = Bytes::from(view.decompressed_records().unwrap());
        view.records_in(&section)
            .map(|r| {
                let r = r.unwrap();
                (r.key.map(<[u8]>::to_vec), r.value.map(<[u8]>::to_vec), r.timestamp)
            })
            .collect()
    }

    #[test]
    fn plain_and_gzip_message_sets_become_batches_with_their_records() {
        let mut set = message(1, 0, 1000, Some(b"k1"), Some(b"v1"));
        set.extend(message(1, 0, 1001, None, None));
        set.extend(message(0, 0, -1, Some(b"k3"), Some(b"v3")));
        let batch = message_set_to_batch(&Bytes::from(set.clone()), 5000).unwrap();
        assert_eq!(
            records(&batch),
            vec![
                (Some(b"k1".to_vec()), Some(b"v1".to_vec()), 1000),
                (None, None, 1001),
                (Some(b"k3".to_vec()), Some(b"v3".to_vec()), 5000)
            ]
        );
        let gz = freshet_log::compression::compress(Compression::Gzip, &set).unwrap();
        let wrapper = message(1, 1, 1001, None, Some(&gz));
        let batch = message_set_to_batch(&Bytes::from(wrapper), 5000).unwrap();
        let view = Batches::new(&batch).next().unwrap().unwrap();
        assert_eq!(view.compression().unwrap(), Compression::Gzip);
        assert_eq!(records(&batch).len(), 3);
    }

    #[test]
    fn damaged_message_sets_are_refused_with_the_reason() {
        let mut set = message(1, 0, 1000, Some(b"k"), Some(b"v"));
        let last = set.len() - 1;
        set[last] ^= 1;
        assert!(message_set_to_batch(&Bytes::from(set.clone()), 0).unwrap_err().contains("CRC"));
        set.truncate(20);
        assert!(message_set_to_batch(&Bytes::from(set), 0).unwrap_err().contains("ends inside a message"));
        let bad_codec = message(1, 5, 0, None, Some(b"x"));
        assert!(message_set_to_batch(&Bytes::from(bad_codec), 0).unwrap_err().contains("codec 5"));
        assert!(decode_produce(Bytes::from_static(&[0, 1, 0, 0, 0, 10, 0x7f, 0xff, 0xff, 0xff]), 0)
            .unwrap_err()
            .contains("an array of"));
    }
}
