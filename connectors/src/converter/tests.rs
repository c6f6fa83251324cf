use std::sync::Arc;

use super::*;
use crate::config::Props;
use crate::data::{Schema, Struct, Type};

fn make(props: &[(&str, &str)], is_key: bool) -> Box<dyn Converter> {
    let props: Props = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    make_converter(&Config::from_props(props), "value.converter", is_key).unwrap()
}

fn text(b: Option<Bytes>) -> String {
    String::from_utf8(b.unwrap().to_vec()).unwrap()
}

#[test]
fn json_envelopes_are_kafkas() {
    let json = make(&[("value.converter", "org.apache.kafka.connect.json.JsonConverter")], false);
    let string = Schema::primitive(Type::String);
    let out = json.encode("t", Some(&string), &Value::String("hello".into())).unwrap();
    assert_eq!(text(out), r#"{"schema":{"type":"string","optional":false},"payload":"hello"}"#);

    let schema = Arc::new(
        Schema::structure([
            ("id".to_string(), Schema::primitive(Type::Int32)),
            ("tags".to_string(), Arc::new(Schema::array(Schema::primitive(Type::String)).into_optional())),
            ("at".to_string(), Arc::new(Schema::timestamp())),
        ])
        .named("row"),
    );
    let mut row = Struct::new(schema.clone());
    row.put("id", Value::Int32(7)).unwrap();
    row.put("tags", Value::Array(vec![Value::String("a".into())])).unwrap();
    row.put("at", Value::Int64(1_700_000_000_000)).unwrap();
    let bytes = json.encode("t", Some(&schema), &Value::Struct(row.clone())).unwrap();
    assert_eq!(
        text(bytes.clone()),
        r#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"},{"type":"array","items":{"type":"string","optional":false},"optional":true,"field":"tags"},{"type":"int64","optional":false,"name":"org.apache.kafka.connect.data.Timestamp","version":1,"field":"at"}],"optional":false,"name":"row"},"payload":{"id":7,"tags":["a"],"at":1700000000000}}"#
    );
    let (back_schema, back) = json.decode("t", bytes.as_deref()).unwrap();
    assert_eq!(back_schema.as_deref(), Some(&*schema));
    assert_eq!(back, Value::Struct(row));
    assert_eq!(json.encode("t", None, &Value::Null).unwrap(), None, "a tombstone stays null");
}

#[test]
fn json_without_schemas_infers_types() {
    let json = make(&[("value.converter", "JsonConverter"), ("value.converter.schemas.enable", "false")], false);
    let (schema, value) = json.decode("t", Some(br#"{"a":1,"b":[true,2.5],"c":null}"#)).unwrap();
    assert!(schema.is_none());
    assert_eq!(value.map_get("a"), Some(&Value::Int64(1)));
    assert_eq!(value.map_get("b"), Some(&Value::Array(vec![Value::Boolean(true), Value::Float64(2.5)])));
    assert_eq!(text(json.encode("t", None, &value).unwrap()), r#"{"a":1,"b":[true,2.5],"c":null}"#);
}

#[test]
fn json_errors_say_what_is_wrong() {
    let json = make(&[("value.converter", "JsonConverter")], false);
    let err = json.decode("t", Some(br#"{"a":1}"#)).unwrap_err().to_string();
    assert!(err.contains("schemas.enable=false"), "{err}");
    let err = json.decode("t", Some(b"{not json")).unwrap_err().to_string();
    assert!(err.contains("serialization error"), "{err}");
    let int = Schema::primitive(Type::Int32);
    let err = json.encode("t", Some(&int), &Value::Null).unwrap_err().to_string();
    assert!(err.contains("required"), "{err}");
    let err = json.decode("t", Some(br#"{"schema":{"type":"int8"},"payload":300}"#)).unwrap_err().to_string();
    assert!(err.contains("INT8"), "{err}");
}

#[test]
fn strings_bytes_and_numbers() {
    let string = make(&[("value.converter", "org.apache.kafka.connect.storage.StringConverter")], false);
    assert_eq!(text(string.encode("t", None, &Value::Int32(5)).unwrap()), "5");
    let (schema, value) = string.decode("t", Some(b"line")).unwrap();
    assert_eq!(schema.unwrap().ty, Type::String);
    assert_eq!(value, Value::String("line".into()));

    let bytes = make(&[("value.converter", "ByteArrayConverter")], false);
    let err = bytes.encode("t", None, &Value::Int32(1)).unwrap_err().to_string();
    assert!(err.contains("not compatible"), "{err}");

    let long = make(&[("value.converter", "org.apache.kafka.connect.converters.LongConverter")], false);
    let b = long.encode("t", None, &Value::Int64(258)).unwrap().unwrap();
    assert_eq!(&b[..], &[0, 0, 0, 0, 0, 0, 1, 2]);
    assert_eq!(long.decode("t", Some(&b)).unwrap().1, Value::Int64(258));
    assert!(long.decode("t", Some(b"abc")).is_err());

    let props = Props::from([("value.converter".to_string(), "Nope".to_string())]);
    let err = make_converter(&Config::from_props(props), "value.converter", false).unwrap_err().to_string();
    assert!(err.contains("value.converter") && err.contains("Nope"), "{err}");
}

#[test]
fn headers_infer_their_types() {
    let h = make_header_converter(
        &Config::from_props(Props::from([("header.converter".to_string(), "SimpleHeaderConverter".to_string())])),
        "header.converter",
    )
    .unwrap();
    assert_eq!(h.decode("t", "k", Some(b"42")).unwrap().1, Value::Int8(42));
    assert_eq!(h.decode("t", "k", Some(b"true")).unwrap().1, Value::Boolean(true));
    assert_eq!(h.decode("t", "k", Some(b"hi there")).unwrap().1, Value::String("hi there".into()));
    assert_eq!(text(h.encode("t", "k", None, &Value::Int64(9)).unwrap()), "9");
}
