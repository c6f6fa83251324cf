//! Byte layouts of window and session store keys (see `state/FORMAT.md`).
//!
//! A user key is written escaped (`0x00` becomes `0x00 0xff`) and ended by `0x00 0x00`, so no
//! encoded key is a prefix of another and byte order of the encoding is byte order of the user
//! key. Times follow as 8 bytes big-endian with the sign bit flipped, so they sort numerically.
//!
//! * window: `key‖start` or, for stores that keep duplicates, `key‖start‖seq` (`seq` u32 BE);
//! * session: `key‖end‖start`, so the sessions of a key sort by end time.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};

/// Appends the escaped, terminated form of `key`.
pub fn put_escaped(out: &mut BytesMut, key: &[u8]) {
    out.reserve(key.len() + 2);
    let mut rest = key;
    while let Some(i) = rest.iter().position(|&b| b == 0) {
        out.put_slice(&rest[..=i]);
        out.put_u8(0xff);
        rest = &rest[i + 1..];
    }
    out.put_slice(rest);
    out.put_slice(&[0, 0]);
}

/// Splits an escaped key off the front of `bytes`: `(user key, rest)`.
pub fn split_escaped(bytes: &[u8]) -> Result<(Vec<u8>, &[u8])> {
    let mut key = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    // From zero byte to zero byte: runs between them are copied whole.
    while let Some(i) = rest.iter().position(|&b| b == 0) {
        key.extend_from_slice(&rest[..i]);
        match rest.get(i + 1) {
            Some(0) => return Ok((key, &rest[i + 2..])),
            Some(0xff) => {
                key.push(0);
                rest = &rest[i + 2..];
            }
            _ => break,
        }
    }
    Err(Error::Decode { what: "store key", detail: "escaped key without its terminator".into() })
}

/// A time as 8 order-preserving bytes.
pub fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// Reads a time written by [`time_bytes`].
pub fn read_time(bytes: &[u8]) -> Result<i64> {
    let raw: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::Decode { what: "store key time", detail: format!("{} bytes, not 8", bytes.len()) })?;
    Ok((u64::from_be_bytes(raw) ^ (1 << 63)) as i64)
}

/// How a time-segmented store finds the time of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySchema {
    /// `key‖start[‖seq]`: the segment time is the window start.
    Window {
        /// Whether keys end in a sequence number (stores that keep duplicates).
        with_seq: bool,
    },
    /// `key‖end‖start`: the segment time is the session end.
    Session,
}

impl KeySchema {
    /// The time that places `key` in a segment.
    pub fn time_of(&self, key: &[u8]) -> Result<i64> {
        let (from_end, what) = match self {
            KeySchema::Window { with_seq: false } => (8, "window key"),
            KeySchema::Window { with_seq: true } => (12, "window key"),
            KeySchema::Session => (16, "session key"),
        };
        if key.len() < from_end + 2 {
            return Err(Error::Decode { what, detail: format!("{} bytes is too short", key.len()) });
        }
        let at = key.len() - from_end;
        read_time(&key[at..at + 8])
    }
}

/// `key‖start[‖seq]`.
pub fn window_key(key: &[u8], start: i64, seq: Option<u32>) -> Bytes {
    let mut out = BytesMut::with_capacity(key.len() + 14);
    put_escaped(&mut out, key);
    out.put_slice(&time_bytes(start));
    if let Some(seq) = seq {
        out.put_u32(seq);
    }
    out.freeze()
}

/// Splits a window key into `(user key, start)`.
pub fn split_window_key(bytes: &[u8], with_seq: bool) -> Result<(Vec<u8>, i64)> {
    let (key, rest) = split_escaped(bytes)?;
    let want = if with_seq { 12 } else { 8 };
    if rest.len() != want {
        return Err(Error::Decode {
            what: "window key",
            detail: format!("{} bytes after the key, not {want}", rest.len()),
        });
    }
    Ok((key, read_time(&rest[..8])?))
}

/// `key‖end‖start`.
pub fn session_key(key: &[u8], start: i64, end: i64) -> Bytes {
    let mut out = BytesMut::with_capacity(key.len() + 18);
    put_escaped(&mut out, key);
    out.put_slice(&time_bytes(end));
    out.put_slice(&time_bytes(start));
    out.freeze()
}

/// Splits a session key into `(user key, start, end)`.
pub fn split_session_key(bytes: &[u8]) -> Result<(Vec<u8>, i64, i64)> {
    let (key, rest) = split_escaped(bytes)?;
    if rest.len() != 16 {
        return Err(Error::Decode {
            what: "session key",
            detail: format!("{} bytes after the key, not 16", rest.len()),
        });
    }
    Ok((key, read_time(&rest[8..])?, read_time(&rest[..8])?))
}

/// The escaped form of `key` alone: the prefix every window or session key of it starts with.
pub fn key_prefix(key: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(key.len() + 2);
    put_escaped(&mut out, key);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_order_is_key_order_and_round_trips() {
        let keys: [&[u8]; 7] = [b"", b"\x00", b"\x00\x00", b"\x00\x01", b"a", b"a\x00", b"ab"];
        let encoded: Vec<Bytes> = keys.iter().map(|k| window_key(k, i64::MAX, None)).collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]), "{encoded:?}");
        for (k, e) in keys.iter().zip(&encoded) {
            assert_eq!(split_window_key(e, false).unwrap(), (k.to_vec(), i64::MAX));
        }
        let s = session_key(b"k\x00", -3, 9);
        assert_eq!(split_session_key(&s).unwrap(), (b"k\x00".to_vec(), -3, 9));
        assert_eq!(KeySchema::Session.time_of(&s).unwrap(), 9);
        assert!(split_escaped(b"abc").is_err());
        assert!(split_escaped(b"a\x00\x07").is_err());
    }
}
