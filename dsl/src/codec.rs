//! How the DSL's stateful operators put typed keys and values into byte stores and internal
//! topics: the user's serdes, a timestamp beside every stored value (as Kafka Streams'
//! timestamped stores keep it), and the encoding of a table change on a repartition topic.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::serde::Serde;

/// A table update: the value after and before it (`None`: absent or deleted). Tables forward
/// changes so that downstream aggregations can subtract the old value and add the new one.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<V> {
    /// The value now.
    pub new: Option<V>,
    /// The value before.
    pub old: Option<V>,
}

/// Encodes a key or value with `serde` for store `store`.
pub(crate) fn encode<T: 'static>(
    serde: &Arc<dyn Serde<T>>,
    value: &T,
    what: &'static str,
    store: &str,
) -> Result<Option<Bytes>> {
    serde.serialize(value).map_err(|detail| Error::Serialize {
        what,
        topic: format!("(state store {store})"),
        serde: serde.name(),
        detail,
    })
}

/// Decodes a key or value read back from store `store`.
pub(crate) fn decode<T: 'static>(serde: &Arc<dyn Serde<T>>, data: &[u8], what: &'static str, store: &str) -> Result<T> {
    serde.deserialize(Some(data)).map_err(|detail| {
        Error::Process(format!("cannot decode a {what} of state store {store} with {}: {detail}", serde.name()))
    })
}

/// A stored value: its timestamp (8 bytes, big-endian) then its bytes.
pub(crate) fn stamp(timestamp: i64, value: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + value.len());
    out.put_i64(timestamp);
    out.put_slice(value);
    out.freeze()
}

/// The timestamp and bytes of a stored value.
pub(crate) fn unstamp<'a>(stored: &'a [u8], store: &str) -> Result<(i64, &'a [u8])> {
    if stored.len() < 8 {
        return Err(Error::Process(format!("a value of state store {store} is shorter than its timestamp")));
    }
    let (ts, value) = stored.split_at(8);
    Ok((i64::from_be_bytes(ts.try_into().expect("8 bytes")), value))
}

/// A typed value with its timestamp from a stored one.
pub(crate) fn decode_stamped<T: 'static>(serde: &Arc<dyn Serde<T>>, stored: &[u8], store: &str) -> Result<(T, i64)> {
    let (ts, bytes) = unstamp(stored, store)?;
    Ok((decode(serde, bytes, "value", store)?, ts))
}

/// A typed value encoded with its timestamp; `None` when the serde writes it as null (then the
/// entry is deleted, as a null value deletes in Kafka Streams).
pub(crate) fn encode_stamped<T: 'static>(
    serde: &Arc<dyn Serde<T>>,
    value: &T,
    timestamp: i64,
    store: &str,
) -> Result<Option<Bytes>> {
    Ok(encode(serde, value, "value", store)?.map(|b| stamp(timestamp, &b)))
}

/// `Option<T>` through a serde of `T`: `None` is null.
pub(crate) struct OptionSerde<T>(pub(crate) Arc<dyn Serde<T>>);

impl<T: 'static> Serde<Option<T>> for OptionSerde<T> {
    fn serialize(&self, value: &Option<T>) -> Result<Option<Bytes>, String> {
        match value {
            Some(v) => self.0.serialize(v),
            None => Ok(None),
        }
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<Option<T>, String> {
        data.map(|d| self.0.deserialize(Some(d))).transpose()
    }
    fn name(&self) -> String {
        format!("Option<{}>", self.0.name())
    }
}

/// A [`Change`] on a repartition topic: a flags byte (1: old present, 2: new present), the old
/// value's length (4 bytes, big-endian) and bytes when present, then the new value's bytes.
pub(crate) struct ChangeSerde<T>(pub(crate) Arc<dyn Serde<T>>);

impl<T: 'static> Serde<Change<T>> for ChangeSerde<T> {
    fn serialize(&self, change: &Change<T>) -> Result<Option<Bytes>, String> {
        let old = change.old.as_ref().map(|v| self.0.serialize(v)).transpose()?.flatten();
        let new = change.new.as_ref().map(|v| self.0.serialize(v)).transpose()?.flatten();
        let mut out = BytesMut::new();
        out.put_u8(u8::from(old.is_some()) | (u8::from(new.is_some()) << 1));
        if let Some(old) = old {
            let len = u32::try_from(old.len()).map_err(|_| "an old value over 4 GiB".to_string())?;
            out.put_u32(len);
            out.put_slice(&old);
        }
        if let Some(new) = new {
            out.put_slice(&new);
        }
        Ok(Some(out.freeze()))
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<Change<T>, String> {
        let data = data.ok_or("a null where a table change was expected")?;
        let (&flags, mut rest) = data.split_first().ok_or("an empty table change")?;
        if flags > 3 {
            return Err(format!("a table change with unknown flags {flags:#x}"));
        }
        let old = if flags & 1 != 0 {
            if rest.len() < 4 {
                return Err("a table change cut short in its old value's length".into());
            }
            let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            let body = rest.get(4..4 + len).ok_or("a table change cut short in its old value")?;
            rest = &rest[4 + len..];
            Some(self.0.deserialize(Some(body))?)
        } else {
            None
        };
        let new = if flags & 2 != 0 {
            Some(self.0.deserialize(Some(rest))?)
        } else if !rest.is_empty() {
            return Err("a table change with bytes after its values".into());
        } else {
            None
        };
        Ok(Change { new, old })
    }
    fn name(&self) -> String {
        format!("Change<{}>", self.0.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serde::StringSerde;

    #[test]
    fn changes_round_trip_and_bad_bytes_are_named() {
        let serde = ChangeSerde::<String>(Arc::new(StringSerde));
        for change in [
            Change { new: Some("new".to_string()), old: Some("old".to_string()) },
            Change { new: Some(String::new()), old: None },
            Change { new: None, old: Some("gone".to_string()) },
            Change { new: None, old: None },
        ] {
            let bytes = serde.serialize(&change).unwrap();
            assert_eq!(serde.deserialize(bytes.as_deref()).unwrap(), change);
        }
        assert!(serde.deserialize(Some(&[1, 0, 0])).unwrap_err().contains("cut short"));
        assert!(serde.deserialize(Some(&[9])).unwrap_err().contains("unknown flags"));
        assert!(serde.deserialize(Some(&[0, 1])).unwrap_err().contains("after its values"));
        assert!(serde.deserialize(None).is_err());
    }

    #[test]
    fn stamped_values_keep_their_timestamp() {
        let stored = stamp(-5, b"abc");
        assert_eq!(unstamp(&stored, "s").unwrap(), (-5, &b"abc"[..]));
        assert!(unstamp(b"short", "s").is_err());
    }
}
