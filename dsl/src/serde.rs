//! Serdes: how keys and values of a topic become Rust values and back.
//!
//! A serde is chosen per edge of the topology (each source, sink and repartition topic), as in
//! Kafka Streams. The built-ins write what Kafka's own serializers write, so topics are readable
//! by any Kafka client: strings as UTF-8, integers and floats big-endian, bytes as they are, JSON
//! through `serde_json`. Each built-in encodes one type, so a topology's types follow from its
//! serdes. A null (a record without key, a tombstone) decodes only into an `Option`:
//! `Serdes::string()` reads `String` (null is an error), `Serdes::string().nullable()` reads
//! `Option<String>` (null is `None`).

use std::marker::PhantomData;

use bytes::Bytes;

/// Encodes and decodes values of `T` (`None` bytes: null).
pub trait Serde<T>: Send + Sync + 'static {
    /// The bytes of `value` (`None`: null).
    fn serialize(&self, value: &T) -> Result<Option<Bytes>, String>;
    /// The value in `data` (`None`: null); the error says what was wrong with the bytes.
    fn deserialize(&self, data: Option<&[u8]>) -> Result<T, String>;
    /// A short name for topology descriptions, e.g. `String`.
    fn name(&self) -> String;
}

fn null(what: &str) -> String {
    format!("null where {what} was expected (use a nullable serde, `.nullable()`, to accept nulls)")
}

/// Implements `Serde<$t>` for a serde given how it encodes a `$t`.
macro_rules! serde_for {
    ($serde:ty, $t:ty, $name:expr, $what:expr, |$v:ident| $encode:expr, |$d:ident| $decode:expr) => {
        impl Serde<$t> for $serde {
            fn serialize(&self, $v: &$t) -> Result<Option<Bytes>, String> {
                Ok(Some($encode))
            }
            fn deserialize(&self, data: Option<&[u8]>) -> Result<$t, String> {
                let $d = data.ok_or_else(|| null($what))?;
                $decode
            }
            fn name(&self) -> String {
                $name.to_string()
            }
        }
    };
}

/// UTF-8 strings (Kafka's `StringSerializer`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

serde_for!(StringSerde, String, "String", "a string", |v| Bytes::copy_from_slice(v.as_bytes()), |d| {
    String::from_utf8(d.to_vec()).map_err(|e| format!("not UTF-8: {e}"))
});

/// Bytes as they are (Kafka's `BytesSerializer`).
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

serde_for!(BytesSerde, Bytes, "Bytes", "bytes", |v| v.clone(), |d| Ok(Bytes::copy_from_slice(d)));

/// Fixed-width big-endian numbers of type `T` (Kafka's `IntegerSerializer`, `LongSerializer`,
/// ...): `i16`, `i32`, `i64`, `u32`, `u64`, `f32` or `f64`.
pub struct NumberSerde<T>(PhantomData<fn() -> T>);

impl<T> NumberSerde<T> {
    /// A serde for numbers of type `T`.
    pub fn new() -> Self {
        NumberSerde(PhantomData)
    }
}

impl<T> Default for NumberSerde<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for NumberSerde<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for NumberSerde<T> {}

impl<T> std::fmt::Debug for NumberSerde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NumberSerde<{}>", std::any::type_name::<T>())
    }
}

macro_rules! number_serde {
    ($t:ty, $name:expr) => {
        serde_for!(
            NumberSerde<$t>,
            $t,
            $name,
            concat!("a ", $name),
            |v| Bytes::copy_from_slice(&v.to_be_bytes()),
            |d| {
                let bytes: [u8; std::mem::size_of::<$t>()] = d.try_into().map_err(|_| {
                    format!("{} bytes where a {} of {} bytes was expected", d.len(), $name, std::mem::size_of::<$t>())
                })?;
                Ok(<$t>::from_be_bytes(bytes))
            }
        );
    };
}

number_serde!(i16, "i16");
number_serde!(i32, "i32");
number_serde!(i64, "i64");
number_serde!(u32, "u32");
number_serde!(u64, "u64");
number_serde!(f32, "f32");
number_serde!(f64, "f64");

/// Nothing: always null (Kafka's `VoidSerializer`), for keyless streams that do not read keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitSerde;

impl Serde<()> for UnitSerde {
    fn serialize(&self, _: &()) -> Result<Option<Bytes>, String> {
        Ok(None)
    }
    fn deserialize(&self, _: Option<&[u8]>) -> Result<(), String> {
        Ok(())
    }
    fn name(&self) -> String {
        "()".to_string()
    }
}

/// JSON through `serde_json` for any `T: Serialize + DeserializeOwned`.
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> JsonSerde<T> {
    /// A JSON serde for `T`.
    pub fn new() -> Self {
        JsonSerde(PhantomData)
    }
}

impl<T> Default for JsonSerde<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for JsonSerde<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for JsonSerde<T> {}

impl<T> std::fmt::Debug for JsonSerde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonSerde<{}>", std::any::type_name::<T>())
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

impl<T: serde::Serialize + serde::de::DeserializeOwned + 'static> Serde<T> for JsonSerde<T> {
    fn serialize(&self, value: &T) -> Result<Option<Bytes>, String> {
        serde_json::to_vec(value).map(|v| Some(Bytes::from(v))).map_err(|e| format!("cannot write JSON: {e}"))
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<T, String> {
        let data = data.ok_or_else(|| null("JSON"))?;
        serde_json::from_slice(data).map_err(|e| format!("not JSON for {}: {e}", short_type_name::<T>()))
    }
    fn name(&self) -> String {
        format!("Json<{}>", short_type_name::<T>())
    }
}

/// A serde of `Option<T>` from a serde of `T`: `None` is a null (a record without a key, a
/// tombstone), never encoded by the inner serde (so JSON's `None` is a null, not the text `null`).
/// Made by each built-in's `nullable()`; wrap a serde of your own as `Nullable(serde)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nullable<S>(pub S);

impl<T, S: Serde<T>> Serde<Option<T>> for Nullable<S> {
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

macro_rules! nullable {
    ($($serde:ident $(<$t:ident>)?),*) => {$(
        impl$(<$t>)? $serde$(<$t>)? {
            /// The same encoding for `Option`s, a null being `None`: `Serdes::string().nullable()`
            /// reads the keys of a topic whose records may have none.
            pub fn nullable(self) -> Nullable<Self> {
                Nullable(self)
            }
        }
    )*};
}

nullable!(StringSerde, BytesSerde, NumberSerde<T>, JsonSerde<T>);

/// The built-in serdes by name, as Kafka's `Serdes`. Each encodes one type, so
/// `Consumed::with(Serdes::string(), Serdes::i64())` needs no type annotations; `.nullable()`
/// makes any of them accept nulls as `None`.
#[derive(Debug)]
pub struct Serdes;

impl Serdes {
    /// UTF-8 strings.
    pub fn string() -> StringSerde {
        StringSerde
    }
    /// Bytes as they are.
    pub fn bytes() -> BytesSerde {
        BytesSerde
    }
    /// Big-endian `i16` (Kafka's `Serdes.Short()`).
    pub fn i16() -> NumberSerde<i16> {
        NumberSerde::new()
    }
    /// Big-endian `i32` (Kafka's `Serdes.Integer()`).
    pub fn i32() -> NumberSerde<i32> {
        NumberSerde::new()
    }
    /// Big-endian `i64` (Kafka's `Serdes.Long()`).
    pub fn i64() -> NumberSerde<i64> {
        NumberSerde::new()
    }
    /// Big-endian `u32`.
    pub fn u32() -> NumberSerde<u32> {
        NumberSerde::new()
    }
    /// Big-endian `u64`.
    pub fn u64() -> NumberSerde<u64> {
        NumberSerde::new()
    }
    /// Big-endian IEEE 754 `f32` (Kafka's `Serdes.Float()`).
    pub fn f32() -> NumberSerde<f32> {
        NumberSerde::new()
    }
    /// Big-endian IEEE 754 `f64` (Kafka's `Serdes.Double()`).
    pub fn f64() -> NumberSerde<f64> {
        NumberSerde::new()
    }
    /// Always null.
    pub fn unit() -> UnitSerde {
        UnitSerde
    }
    /// JSON for `T`.
    pub fn json<T>() -> JsonSerde<T> {
        JsonSerde::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_write_what_kafka_writes_and_refuse_bad_bytes_clearly() {
        assert_eq!(Serdes::i32().serialize(&258).unwrap(), Some(Bytes::from_static(&[0, 0, 1, 2])));
        assert_eq!(Serdes::i64().deserialize(Some(&[0, 0, 0, 0, 0, 0, 0, 7])).unwrap(), 7);
        let err = Serdes::i64().deserialize(Some(&[1, 2, 3])).unwrap_err();
        assert_eq!(err, "3 bytes where a i64 of 8 bytes was expected");
        assert!(Serdes::string().deserialize(None).unwrap_err().contains("null"));
        assert_eq!(Serdes::string().nullable().deserialize(None).unwrap(), None);
        assert_eq!(Serdes::string().nullable().serialize(&None).unwrap(), None);
        assert_eq!(Serdes::string().nullable().name(), "Option<String>");
        assert!(Serdes::string().deserialize(Some(&[0xff])).unwrap_err().contains("UTF-8"));
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct View {
            page: String,
        }
        let json = Serdes::json::<View>();
        let bytes = json.serialize(&View { page: "home".into() }).unwrap().unwrap();
        assert_eq!(&bytes[..], br#"{"page":"home"}"#);
        assert!(json.deserialize(Some(b"{")).unwrap_err().starts_with("not JSON for View"));
        assert_eq!(json.nullable().deserialize(None).unwrap(), None, "null is a tombstone");
        assert_eq!(json.nullable().serialize(&None).unwrap(), None);
        assert!(json.deserialize(None).unwrap_err().contains("null where JSON was expected"));
    }
}
