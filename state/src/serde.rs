//! How typed keys and values become bytes.
//!
//! [`StateSerde`] is implemented for the common types with encodings that keep order: integers are
//! big-endian with the sign bit flipped, so a range scan over `i64` keys comes back in numeric
//! order, and strings are their UTF-8 bytes, whose order is code-point order. [`Json`] wraps any
//! serde type (its order is the order of the JSON text).

use bytes::Bytes;

use crate::error::{Error, Result};

/// A type a store can hold as key or value.
pub trait StateSerde: Sized + Send + 'static {
    /// Encodes the value.
    fn to_bytes(&self) -> Bytes;
    /// Decodes bytes written by [`StateSerde::to_bytes`].
    fn from_bytes(bytes: &[u8]) -> Result<Self>;
    /// Decodes bytes the caller owns (a type that can keep them need not copy).
    fn from_owned(bytes: Bytes) -> Result<Self> {
        Self::from_bytes(&bytes)
    }
}

impl StateSerde for Bytes {
    fn to_bytes(&self) -> Bytes {
        self.clone()
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(Bytes::copy_from_slice(bytes))
    }
    fn from_owned(bytes: Bytes) -> Result<Self> {
        Ok(bytes)
    }
}

impl StateSerde for Vec<u8> {
    fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(bytes.to_vec())
    }
}

impl StateSerde for String {
    fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        String::from_utf8(bytes.to_vec()).map_err(|e| Error::Decode { what: "string", detail: e.to_string() })
    }
}

impl StateSerde for () {
    fn to_bytes(&self) -> Bytes {
        Bytes::new()
    }
    fn from_bytes(_: &[u8]) -> Result<Self> {
        Ok(())
    }
}

fn fixed<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N]> {
    bytes.try_into().map_err(|_| Error::Decode { what, detail: format!("expected {N} bytes, found {}", bytes.len()) })
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl StateSerde for $t {
            fn to_bytes(&self) -> Bytes {
                Bytes::copy_from_slice(&self.to_be_bytes())
            }
            fn from_bytes(bytes: &[u8]) -> Result<Self> {
                Ok(<$t>::from_be_bytes(fixed(bytes, stringify!($t))?))
            }
        }
    )*};
}
unsigned!(u32, u64);

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        impl StateSerde for $t {
            fn to_bytes(&self) -> Bytes {
                Bytes::copy_from_slice(&((*self as $u) ^ (1 << (<$u>::BITS - 1))).to_be_bytes())
            }
            fn from_bytes(bytes: &[u8]) -> Result<Self> {
                Ok((<$u>::from_be_bytes(fixed(bytes, stringify!($t))?) ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}
signed!(i32 => u32, i64 => u64);

impl StateSerde for f64 {
    fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(&self.to_be_bytes())
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(f64::from_be_bytes(fixed(bytes, "f64")?))
    }
}

/// A serde type stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Json<T>(pub T);

impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> StateSerde for Json<T> {
    fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.0).expect("a serde value serialises to JSON"))
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map(Json).map_err(|e| Error::Decode { what: "JSON value", detail: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_order_is_numeric_order() {
        let values = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        let encoded: Vec<Bytes> = values.iter().map(StateSerde::to_bytes).collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]));
        for (v, e) in values.iter().zip(&encoded) {
            assert_eq!(i64::from_bytes(e).unwrap(), *v);
        }
        assert!(i64::from_bytes(b"abc").unwrap_err().to_string().contains("expected 8 bytes, found 3"));
    }
}
