//! Kafka Connect's transforms and predicates, case by case: each case is a connector's
//! `transforms.*`/`predicates.*` config (a `.properties` text) and an input record, and the
//! snapshot holds the record that comes out of the chain (or that it was dropped, or the error).
//! One snapshot per transform family.
//!
//! Notation of the snapshots: values carry their type (`7i32`, `1.5f64`, `"text"`, `b64:AQI=`),
//! structs show every field (`Struct{a=1i32, b=null}`), schemas show optional with `?` and their
//! name, version, parameters and default in parentheses (`connect.` stands for
//! `org.apache.kafka.connect.data.`).

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use freshet_connectors::config::parse_properties;
use freshet_connectors::data::{Header, Schema, SchemaRef, Struct, Type, Value};
use freshet_connectors::transforms::TransformChain;
use freshet_connectors::{Config, ConnectRecord};

/// One case: a name, the connector's config, the record given to the chain.
struct Case {
    name: &'static str,
    config: String,
    input: ConnectRecord,
}

/// A case whose chain is one transform `t` of class `class`, with `keys` under its prefix.
fn one(name: &'static str, class: &str, keys: &str, input: ConnectRecord) -> Case {
    let mut config = format!("transforms=t\ntransforms.t.type={class}\n");
    for line in keys.lines().map(str::trim).filter(|l| !l.is_empty()) {
        writeln!(config, "transforms.t.{line}").unwrap();
    }
    Case { name, config, input }
}

/// A case with the whole config given.
fn full(name: &'static str, config: &str, input: ConnectRecord) -> Case {
    let config = config.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| format!("{l}\n")).collect();
    Case { name, config, input }
}

/// Runs every case and renders them.
fn check(cases: Vec<Case>) -> String {
    let mut out = String::new();
    for case in cases {
        writeln!(out, "=== {}", case.name).unwrap();
        out.push_str(&case.config);
        writeln!(out, "--- in\n{}", render_record(&case.input)).unwrap();
        let config = Config::from_props(parse_properties(&case.config));
        let result = match TransformChain::from_config(&config) {
            Err(e) => format!("config error: {e}"),
            Ok(chain) => match chain.apply(case.input) {
                Ok(Some(record)) => render_record(&record),
                Ok(None) => "dropped".to_string(),
                Err(e) => format!("error: {e}"),
            },
        };
        writeln!(out, "--- out\n{result}\n").unwrap();
    }
    out
}

fn render_record(r: &ConnectRecord) -> String {
    let mut out = String::new();
    writeln!(out, "topic: {}", r.topic).unwrap();
    writeln!(out, "partition: {}", r.kafka_partition.map_or("none".to_string(), |p| p.to_string())).unwrap();
    writeln!(out, "key: {} = {}", render_schema(r.key_schema.as_ref()), render_value(&r.key)).unwrap();
    writeln!(out, "value: {} = {}", render_schema(r.value_schema.as_ref()), render_value(&r.value)).unwrap();
    writeln!(out, "timestamp: {}", r.timestamp.map_or("none".to_string(), |t| t.to_string())).unwrap();
    let headers: Vec<String> = r
        .headers
        .iter()
        .map(|h| format!("{}: {} = {}", h.key, render_schema(h.schema.as_ref()), render_value(&h.value)))
        .collect();
    write!(out, "headers: [{}]", headers.join(", ")).unwrap();
    out
}

fn render_schema(schema: Option<&SchemaRef>) -> String {
    match schema {
        None => "schemaless".to_string(),
        Some(s) => schema_text(s),
    }
}

fn schema_text(s: &Schema) -> String {
    let mut text = match s.ty {
        Type::Struct => {
            let fields: Vec<String> =
                s.fields.iter().map(|f| format!("{}: {}", f.name, schema_text(&f.schema))).collect();
            format!("struct{{{}}}", fields.join(", "))
        }
        Type::Array => format!("array<{}>", s.value_schema.as_deref().map_or("?".into(), schema_text)),
        Type::Map => format!(
            "map<{}, {}>",
            s.key_schema.as_deref().map_or("?".into(), schema_text),
            s.value_schema.as_deref().map_or("?".into(), schema_text)
        ),
        ty => ty.json_name().to_string(),
    };
    if s.optional {
        text.push('?');
    }
    let mut attributes = Vec::new();
    if let Some(name) = &s.name {
        attributes.push(format!("name={}", name.replace("org.apache.kafka.connect.data.", "connect.")));
    }
    if let Some(version) = s.version {
        attributes.push(format!("v{version}"));
    }
    if let Some(doc) = &s.doc {
        attributes.push(format!("doc={doc:?}"));
    }
    for (k, v) in &s.parameters {
        attributes.push(format!("{k}={v}"));
    }
    if let Some(default) = &s.default {
        attributes.push(format!("default={}", render_value(default)));
    }
    if !attributes.is_empty() {
        write!(text, " ({})", attributes.join(", ")).unwrap();
    }
    text
}

fn render_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Int8(v) => format!("{v}i8"),
        Value::Int16(v) => format!("{v}i16"),
        Value::Int32(v) => format!("{v}i32"),
        Value::Int64(v) => format!("{v}i64"),
        Value::Float32(v) => format!("{v:?}f32"),
        Value::Float64(v) => format!("{v:?}f64"),
        Value::Boolean(v) => v.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Bytes(_) => format!("b64:{v}"),
        Value::Array(items) => format!("[{}]", items.iter().map(render_value).collect::<Vec<_>>().join(", ")),
        Value::Map(entries) => {
            let entries: Vec<String> =
                entries.iter().map(|(k, v)| format!("{}: {}", render_value(k), render_value(v))).collect();
            format!("{{{}}}", entries.join(", "))
        }
        Value::Struct(s) => {
            let fields: Vec<String> =
                s.schema.fields.iter().zip(&s.values).map(|(f, v)| format!("{}={}", f.name, render_value(v))).collect();
            format!("Struct{{{}}}", fields.join(", "))
        }
    }
}

// Building records.

fn prim(ty: Type) -> SchemaRef {
    Schema::primitive(ty)
}

fn opt(ty: Type) -> SchemaRef {
    Schema::optional_primitive(ty)
}

fn with_default(schema: Schema, default: Value) -> SchemaRef {
    Arc::new(Schema { default: Some(default), ..schema })
}

fn struct_schema(fields: &[(&str, SchemaRef)]) -> Schema {
    Schema::structure(fields.iter().map(|(n, s)| (n.to_string(), s.clone())))
}

fn struct_value(schema: &SchemaRef, values: Vec<Value>) -> Value {
    Value::Struct(Struct { schema: schema.clone(), values })
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::string_map(entries.into_iter().map(|(k, v)| (k.to_string(), v)))
}

fn text(s: &str) -> Value {
    Value::String(s.to_string())
}

/// A record of topic `orders`, partition 3, timestamp 2024-02-29T13:05:09.007Z, with `value`.
fn record(value_schema: Option<SchemaRef>, value: Value) -> ConnectRecord {
    ConnectRecord {
        kafka_partition: Some(3),
        timestamp: Some(LEAP_DAY),
        ..ConnectRecord::new("orders", value_schema, value)
    }
}

const LEAP_DAY: i64 = 1_709_211_909_007;

/// An order: `{id: int64, customer: string, amount: float64, note: string? = "none"}`.
fn order_schema() -> SchemaRef {
    Arc::new(
        struct_schema(&[
            ("id", prim(Type::Int64)),
            ("customer", prim(Type::String)),
            ("amount", prim(Type::Float64)),
            ("note", with_default(Schema::of(Type::String).into_optional(), text("none"))),
        ])
        .named("com.example.Order"),
    )
}

fn order(note: Value) -> ConnectRecord {
    let schema = order_schema();
    let value = struct_value(&schema, vec![Value::Int64(42), text("ada"), Value::Float64(19.99), note]);
    record(Some(schema), value)
}

fn schemaless_order() -> ConnectRecord {
    record(None, map(vec![("id", Value::Int64(42)), ("customer", text("ada")), ("amount", Value::Float64(19.99))]))
}

fn decimal(unscaled: &[u8], scale: i32) -> (SchemaRef, Value) {
    (Arc::new(Schema::decimal(scale)), Value::Bytes(Bytes::copy_from_slice(unscaled)))
}

#[test]
fn cast() {
    let (decimal_schema, amount) = decimal(&[0x30, 0x39], 2); // 123.45
    let typed_schema = Arc::new(struct_schema(&[
        ("id", prim(Type::Int64)),
        ("score", prim(Type::Float64)),
        ("flag", prim(Type::Boolean)),
        ("count", with_default(Schema::of(Type::Int64).into_optional(), Value::Int64(7))),
        ("amount", decimal_schema),
        ("day", Arc::new(Schema::date())),
        ("at", Arc::new(Schema::timestamp())),
        ("raw", prim(Type::Bytes)),
    ]));
    let typed = |count: Value| {
        record(
            Some(typed_schema.clone()),
            struct_value(
                &typed_schema,
                vec![
                    Value::Int64(300),
                    Value::Float64(1e10),
                    Value::Boolean(true),
                    count,
                    amount.clone(),
                    Value::Int32(19_782),
                    Value::Int64(LEAP_DAY),
                    Value::Bytes(Bytes::from_static(&[1, 2, 3])),
                ],
            ),
        )
    };
    let nested_schema = Arc::new(struct_schema(&[("inner", Arc::new(struct_schema(&[("a", prim(Type::Int32))])))]));
    let inner = nested_schema.fields[0].schema.clone();
    let nested = record(
        Some(nested_schema.clone()),
        struct_value(&nested_schema, vec![struct_value(&inner, vec![Value::Int32(1)])]),
    );
    let cases = vec![
        one(
            "schemaful fields: narrowing, booleans, decimals, logical types and bytes as text",
            "Cast$Value",
            "spec=id:int8,score:int32,flag:string,count:int32,amount:float64,day:string,at:string,raw:string",
            typed(Value::Null),
        ),
        one(
            "replace.null.with.default=false keeps the null",
            "org.apache.kafka.connect.transforms.Cast$Value",
            "spec=count:string\nreplace.null.with.default=false",
            typed(Value::Null),
        ),
        one("decimal to int64 truncates", "Cast$Value", "spec=amount:int64", typed(Value::Int64(1))),
        one("whole schemaless key", "Cast$Key", "spec=int8", record(None, text("v")).with_key(None, Value::Int64(300))),
        one(
            "whole schemaful key, named schema kept",
            "Cast$Key",
            "spec=string",
            record(None, text("v"))
                .with_key(Some(Arc::new(Schema::of(Type::Int32).named("com.example.Id"))), Value::Int32(9)),
        ),
        one("string parsed as int32", "Cast$Value", "spec=int32", record(Some(prim(Type::String)), text("42"))),
        one(
            "schemaless map: a missing field becomes null",
            "Cast$Value",
            "spec=id:string,amount:int32,missing:int8",
            schemaless_order(),
        ),
        one("null value passes", "Cast$Value", "spec=int8", record(Some(opt(Type::Int64)), Value::Null)),
        one(
            "poison: text that is not a number",
            "Cast$Value",
            "spec=int32",
            record(Some(prim(Type::String)), text("4.5")),
        ),
        one("poison: casting a struct", "Cast$Value", "spec=inner:int32", nested),
        one(
            "poison: bytes to a number",
            "Cast$Value",
            "spec=int32",
            record(None, Value::Bytes(Bytes::from_static(b"x"))),
        ),
        one("poison: a schemaless value that is not a map", "Cast$Value", "spec=a:int32", record(None, text("x"))),
        one("bad config: bytes is not an output type", "Cast$Value", "spec=a:bytes", schemaless_order()),
        one("bad config: unknown type", "Cast$Value", "spec=a:float", schemaless_order()),
        one("bad config: whole and field casts", "Cast$Value", "spec=int8,a:int16", schemaless_order()),
        one("bad config: empty spec", "Cast$Value", "spec=", schemaless_order()),
        one("bad config: missing spec", "Cast$Value", "", schemaless_order()),
    ];
    insta::assert_snapshot!("cast", check(cases));
}

#[test]
fn headers() {
    let with_headers = || {
        let mut r = schemaless_order();
        for (key, value) in [("trace", "a"), ("keep", "b"), ("trace", "c"), ("span", "d")] {
            r.headers.push(Header { key: key.into(), schema: Some(prim(Type::String)), value: text(value) });
        }
        r
    };
    let cases = vec![
        one("DropHeaders removes every header of the keys", "DropHeaders", "headers=trace, span", with_headers()),
        one("bad config: empty list", "org.apache.kafka.connect.transforms.DropHeaders", "headers=", with_headers()),
        one("InsertHeader: a string", "InsertHeader", "header=source\nvalue.literal=orders db", with_headers()),
        one("InsertHeader: an int8", "InsertHeader", "header=n\nvalue.literal=42", schemaless_order()),
        one("InsertHeader: an int32", "InsertHeader", "header=n\nvalue.literal=-100000", schemaless_order()),
        one("InsertHeader: a float", "InsertHeader", "header=n\nvalue.literal=2.5", schemaless_order()),
        one("InsertHeader: a boolean", "InsertHeader", "header=b\nvalue.literal=true", schemaless_order()),
        one("InsertHeader: a date", "InsertHeader", "header=d\nvalue.literal=2024-02-29", schemaless_order()),
        one(
            "InsertHeader: a timestamp",
            "InsertHeader",
            "header=d\nvalue.literal=2024-02-29T13:05:09.007Z",
            schemaless_order(),
        ),
        one("InsertHeader: null", "InsertHeader", "header=n\nvalue.literal=null", schemaless_order()),
        one("bad config: no header name", "InsertHeader", "value.literal=x", schemaless_order()),
    ];
    insta::assert_snapshot!("headers", check(cases));
}

#[test]
fn extract_field() {
    let address =
        Arc::new(struct_schema(&[("city", prim(Type::String)), ("zip.code", opt(Type::String))]).into_optional());
    let customer_schema = Arc::new(struct_schema(&[("name", prim(Type::String)), ("address", address.clone())]));
    let customer = |address_value: Value| {
        record(Some(customer_schema.clone()), struct_value(&customer_schema, vec![text("ada"), address_value]))
    };
    let lyon = struct_value(&address, vec![text("Lyon"), text("69001")]);
    let nested_map = record(None, map(vec![("customer", map(vec![("address", map(vec![("city", text("Lyon"))]))]))]));
    let cases = vec![
        one("schemaful value", "ExtractField$Value", "field=customer", order(Value::Null)),
        one("the field's default", "ExtractField$Value", "field=note", order(Value::Null)),
        one(
            "replace.null.with.default=false",
            "ExtractField$Value",
            "field=note\nreplace.null.with.default=false",
            order(Value::Null),
        ),
        one("schemaless value", "ExtractField$Value", "field=amount", schemaless_order()),
        one("schemaless: a missing field is null", "ExtractField$Value", "field=nope", schemaless_order()),
        one("schemaful: a missing field is an error", "ExtractField$Value", "field=nope", order(Value::Null)),
        one(
            "key",
            "ExtractField$Key",
            "field=id",
            record(None, Value::Null).with_key(None, map(vec![("id", Value::Int32(7))])),
        ),
        one(
            "a null value keeps the field's schema",
            "ExtractField$Value",
            "field=customer",
            record(Some(order_schema()), Value::Null),
        ),
        one("V1 reads dots as part of the name", "ExtractField$Value", "field=address.city", customer(lyon.clone())),
        one(
            "V2 nested struct",
            "ExtractField$Value",
            "field=address.city\nfield.syntax.version=V2",
            customer(lyon.clone()),
        ),
        one("V2 backticks", "ExtractField$Value", "field=address.`zip.code`\nfield.syntax.version=v2", customer(lyon)),
        one(
            "V2 under a null struct",
            "ExtractField$Value",
            "field=address.city\nfield.syntax.version=V2",
            customer(Value::Null),
        ),
        one("V2 nested map", "ExtractField$Value", "field=customer.address.city\nfield.syntax.version=V2", nested_map),
        one("poison: not a map", "ExtractField$Value", "field=a", record(None, Value::Int64(1))),
        one(
            "bad config: unknown syntax version",
            "ExtractField$Value",
            "field=a\nfield.syntax.version=V3",
            schemaless_order(),
        ),
        one(
            "bad config: open backtick",
            "ExtractField$Value",
            "field=`a.b\nfield.syntax.version=V2",
            schemaless_order(),
        ),
    ];
    insta::assert_snapshot!("extract_field", check(cases));
}

#[test]
fn predicates_and_filter() {
    let tombstone = || record(Some(opt(Type::String)), Value::Null);
    let with_header = || {
        let mut r = schemaless_order();
        r.headers.push(Header { key: "drop-me".into(), schema: None, value: Value::Null });
        r
    };
    let filter_if = |predicate: &str, negate: &str| {
        format!(
            "transforms=drop\ntransforms.drop.type=Filter\ntransforms.drop.predicate=p\n{negate}\npredicates=p\n{predicate}"
        )
    };
    let tombstones = "predicates.p.type=org.apache.kafka.connect.transforms.predicates.RecordIsTombstone";
    let topics = "predicates.p.type=TopicNameMatches\npredicates.p.pattern=ord.*";
    let header = "predicates.p.type=HasHeaderKey\npredicates.p.name=drop-me";
    let cases = vec![
        one("Filter alone drops everything", "org.apache.kafka.connect.transforms.Filter", "", schemaless_order()),
        full("RecordIsTombstone: a tombstone is dropped", &filter_if(tombstones, ""), tombstone()),
        full("RecordIsTombstone: a record passes", &filter_if(tombstones, ""), schemaless_order()),
        full("negated: a tombstone passes", &filter_if(tombstones, "transforms.drop.negate=true"), tombstone()),
        full("negated: a record is dropped", &filter_if(tombstones, "transforms.drop.negate=true"), schemaless_order()),
        full("TopicNameMatches matches the whole topic", &filter_if(topics, ""), schemaless_order()),
        full(
            "TopicNameMatches: a prefix is not a match",
            &filter_if("predicates.p.type=TopicNameMatches\npredicates.p.pattern=ord", ""),
            schemaless_order(),
        ),
        full("HasHeaderKey: present", &filter_if(header, ""), with_header()),
        full("HasHeaderKey: absent", &filter_if(header, ""), schemaless_order()),
        full(
            "bad config: predicate alias not listed",
            "transforms=drop\ntransforms.drop.type=Filter\ntransforms.drop.predicate=q\npredicates=p\n\
             predicates.p.type=RecordIsTombstone",
            schemaless_order(),
        ),
        full(
            "bad config: negate without predicate",
            "transforms=drop\ntransforms.drop.type=Filter\ntransforms.drop.negate=true",
            schemaless_order(),
        ),
        full(
            "bad config: negate is not a boolean",
            &filter_if(tombstones, "transforms.drop.negate=yes"),
            schemaless_order(),
        ),
        full("bad config: missing type", "transforms=drop", schemaless_order()),
        full("bad config: unknown class", "transforms=drop\ntransforms.drop.type=com.example.Nope", schemaless_order()),
        full(
            "bad config: a predicate as a transform",
            "transforms=drop\ntransforms.drop.type=RecordIsTombstone",
            schemaless_order(),
        ),
        full("bad config: duplicate alias", "transforms=drop,drop\ntransforms.drop.type=Filter", schemaless_order()),
        full(
            "bad config: an unused predicate is checked too",
            "predicates=p\npredicates.p.type=TopicNameMatches",
            schemaless_order(),
        ),
        full(
            "bad config: empty pattern",
            "predicates=p\npredicates.p.type=TopicNameMatches\npredicates.p.pattern=",
            schemaless_order(),
        ),
        full(
            "bad config: invalid pattern",
            "predicates=p\npredicates.p.type=TopicNameMatches\npredicates.p.pattern=(ord",
            schemaless_order(),
        ),
    ];
    insta::assert_snapshot!("predicates_and_filter", check(cases));
}

#[test]
fn flatten() {
    let point = Arc::new(struct_schema(&[("x", prim(Type::Int32)), ("y", prim(Type::Int32))]));
    let default_point = struct_value(&point, vec![Value::Int32(0), Value::Int32(0)]);
    let optional_point = Arc::new(Schema { default: Some(default_point), ..Schema::clone(&point).into_optional() });
    let shape_schema = Arc::new(
        struct_schema(&[
            ("name", prim(Type::String)),
            ("origin", point.clone()),
            ("end", optional_point.clone()),
            ("tags", Arc::new(Schema::array(prim(Type::String)))),
        ])
        .named("com.example.Shape"),
    );
    let shape = |end: Value| {
        let origin = struct_value(&point, vec![Value::Int32(1), Value::Int32(2)]);
        let tags = Value::Array(vec![text("a")]);
        record(Some(shape_schema.clone()), struct_value(&shape_schema, vec![text("line"), origin, end, tags]))
    };
    let end = struct_value(&optional_point, vec![Value::Int32(3), Value::Int32(4)]);
    let with_map = Arc::new(struct_schema(&[("m", Arc::new(Schema::map(prim(Type::String), prim(Type::Int32))))]));
    let nested = map(vec![
        ("a", map(vec![("b", Value::Int64(1)), ("c", map(vec![("d", text("x"))]))])),
        ("list", Value::Array(vec![map(vec![("e", Value::Int64(2))])])),
        ("n", Value::Null),
    ]);
    let cases = vec![
        one("schemaful: nested structs, optional parents, defaults, arrays kept", "Flatten$Value", "", shape(end)),
        one("schemaful: a null optional struct", "Flatten$Value", "delimiter=_", shape(Value::Null)),
        one("schemaless with a delimiter", "Flatten$Value", "delimiter=_", record(None, nested.clone())),
        one("key", "Flatten$Key", "", record(None, Value::Null).with_key(None, nested)),
        one(
            "poison: a map in a schemaful value",
            "Flatten$Value",
            "",
            record(Some(with_map.clone()), struct_value(&with_map, vec![Value::Map(vec![])])),
        ),
        one("poison: not a map", "Flatten$Value", "", record(None, text("x"))),
    ];
    insta::assert_snapshot!("flatten", check(cases));
}

#[test]
fn header_from() {
    let cases = vec![
        one(
            "copy, schemaful",
            "HeaderFrom$Value",
            "fields=id,note\nheaders=order-id,note\noperation=copy",
            order(Value::Null),
        ),
        one(
            "move, schemaful",
            "HeaderFrom$Value",
            "fields=id,customer\nheaders=order-id,who\noperation=move",
            order(text("rush")),
        ),
        one(
            "move, schemaless, a missing field gives a null header",
            "HeaderFrom$Value",
            "fields=customer,nope\nheaders=who,nope\noperation=move",
            schemaless_order(),
        ),
        one(
            "key",
            "HeaderFrom$Key",
            "fields=id\nheaders=id\noperation=copy",
            record(None, Value::Null).with_key(None, map(vec![("id", Value::Int32(7))])),
        ),
        one(
            "poison: a missing schemaful field",
            "HeaderFrom$Value",
            "fields=nope\nheaders=h\noperation=copy",
            order(Value::Null),
        ),
        one(
            "poison: a tombstone",
            "HeaderFrom$Value",
            "fields=a\nheaders=h\noperation=copy",
            record(None, Value::Null),
        ),
        one(
            "bad config: counts differ",
            "HeaderFrom$Value",
            "fields=a,b\nheaders=h\noperation=copy",
            schemaless_order(),
        ),
        one(
            "bad config: operation is case-sensitive",
            "HeaderFrom$Value",
            "fields=a\nheaders=h\noperation=Move",
            schemaless_order(),
        ),
    ];
    insta::assert_snapshot!("header_from", check(cases));
}

#[test]
fn hoist_field() {
    let cases = vec![
        one("schemaful value", "HoistField$Value", "field=payload", record(Some(prim(Type::Int64)), Value::Int64(5))),
        one("schemaless value", "HoistField$Value", "field=payload", schemaless_order()),
        one(
            "key",
            "HoistField$Key",
            "field=id",
            record(None, Value::Null).with_key(Some(prim(Type::String)), text("k1")),
        ),
        one("a null schemaless value is wrapped too", "HoistField$Value", "field=payload", record(None, Value::Null)),
        one(
            "poison: null for a required schema",
            "HoistField$Value",
            "field=payload",
            record(Some(prim(Type::Int64)), Value::Null),
        ),
    ];
    insta::assert_snapshot!("hoist_field", check(cases));
}

#[test]
fn insert_field() {
    let all = "topic.field=topic!\npartition.field=partition\noffset.field=offset\ntimestamp.field=ts?\n\
               static.field=source\nstatic.value=orders-db";
    let mut unstamped = schemaless_order();
    unstamped.kafka_partition = None;
    unstamped.timestamp = None;
    let cases = vec![
        one("schemaful: every field", "InsertField$Value", all, order(Value::Null)),
        one("schemaless: every field but the offset", "InsertField$Value", all, schemaless_order()),
        one("schemaless: no partition nor timestamp", "InsertField$Value", all, unstamped),
        one(
            "key",
            "InsertField$Key",
            "topic.field=topic",
            record(None, Value::Null).with_key(None, map(vec![("id", Value::Int32(7))])),
        ),
        one("a null value passes", "InsertField$Value", "topic.field=topic", record(Some(order_schema()), Value::Null)),
        one("poison: a field that exists", "InsertField$Value", "topic.field=customer", order(Value::Null)),
        one("poison: not a map", "InsertField$Value", "topic.field=topic", record(None, Value::Int64(1))),
        one("bad config: nothing to insert", "InsertField$Value", "", schemaless_order()),
        one("bad config: static field without value", "InsertField$Value", "static.field=source", schemaless_order()),
    ];
    insta::assert_snapshot!("insert_field", check(cases));
}

#[test]
fn mask_field() {
    let (decimal_schema, amount) = decimal(&[0x30, 0x39], 2);
    let schema = Arc::new(struct_schema(&[
        ("i8", prim(Type::Int8)),
        ("i32", prim(Type::Int32)),
        ("f64", prim(Type::Float64)),
        ("flag", prim(Type::Boolean)),
        ("name", prim(Type::String)),
        ("tags", Arc::new(Schema::array(prim(Type::String)))),
        ("amount", decimal_schema),
        ("at", Arc::new(Schema::timestamp())),
        ("none", opt(Type::String)),
        ("kept", prim(Type::String)),
    ]));
    let typed = record(
        Some(schema.clone()),
        struct_value(
            &schema,
            vec![
                Value::Int8(5),
                Value::Int32(123_456),
                Value::Float64(2.5),
                Value::Boolean(true),
                text("ada"),
                Value::Array(vec![text("vip")]),
                amount,
                Value::Int64(LEAP_DAY),
                Value::Null,
                text("visible"),
            ],
        ),
    );
    let cases = vec![
        one(
            "empty values of each type",
            "MaskField$Value",
            "fields=i8,i32,f64,flag,name,tags,amount,at,none",
            typed.clone(),
        ),
        one("a numeric replacement", "MaskField$Value", "fields=i8,i32,f64,amount\nreplacement=12.00", typed.clone()),
        one("a string replacement", "MaskField$Value", "fields=name\nreplacement=****", typed.clone()),
        one("schemaless", "MaskField$Value", "fields=customer,amount,nope", schemaless_order()),
        one("poison: a replacement for a boolean", "MaskField$Value", "fields=flag\nreplacement=x", typed.clone()),
        one("poison: a replacement that is not a number", "MaskField$Value", "fields=i32\nreplacement=abc", typed),
        one(
            "poison: bytes",
            "MaskField$Value",
            "fields=b",
            record(None, map(vec![("b", Value::Bytes(Bytes::from_static(b"x")))])),
        ),
        one("bad config: empty replacement", "MaskField$Value", "fields=a\nreplacement=", schemaless_order()),
        one("bad config: no fields", "MaskField$Key", "fields=", schemaless_order()),
    ];
    insta::assert_snapshot!("mask_field", check(cases));
}

#[test]
fn regex_router() {
    let topic = |name: &str| ConnectRecord { topic: name.into(), ..schemaless_order() };
    let cases = vec![
        one("$1 then text", "RegexRouter", "regex=(.*)-raw\nreplacement=$1-clean", topic("orders-raw")),
        one("$1 followed by letters", "RegexRouter", "regex=(.*)-raw\nreplacement=$1abc", topic("orders-raw")),
        one("$10 with one group is $1 then 0", "RegexRouter", "regex=(.*)-raw\nreplacement=$10", topic("orders-raw")),
        one("named group", "RegexRouter", "regex=(?<base>[a-z]+)\\\\.v\\\\d+\nreplacement=${base}", topic("orders.v2")),
        one("escaped dollar", "RegexRouter", "regex=(.*)\nreplacement=\\\\$1-$1", topic("orders")),
        one("no match: unchanged", "RegexRouter", "regex=(.*)-raw\nreplacement=$1", topic("orders-cooked")),
        one("a partial match is no match", "RegexRouter", "regex=raw\nreplacement=x", topic("orders-raw")),
        one("bad config: invalid regex", "RegexRouter", "regex=(.*\nreplacement=$1", topic("orders")),
        one("bad config: missing group", "RegexRouter", "regex=(.*)\nreplacement=$2", topic("orders")),
        one("bad config: dangling $", "RegexRouter", "regex=(.*)\nreplacement=$1$", topic("orders")),
    ];
    insta::assert_snapshot!("regex_router", check(cases));
}

#[test]
fn replace_field() {
    let cases = vec![
        one(
            "exclude and rename",
            "ReplaceField$Value",
            "exclude=amount\nrenames=id:order_id,note:comment",
            order(Value::Null),
        ),
        one(
            "include (exclude wins)",
            "ReplaceField$Value",
            "include=id,customer\nexclude=customer",
            order(text("rush")),
        ),
        one(
            "replace.null.with.default=false",
            "ReplaceField$Value",
            "include=note\nreplace.null.with.default=false",
            order(Value::Null),
        ),
        one("schemaless", "ReplaceField$Value", "exclude=amount\nrenames=customer:who", schemaless_order()),
        one(
            "old names: blacklist and whitelist",
            "ReplaceField$Value",
            "whitelist=id,amount\nblacklist=amount",
            schemaless_order(),
        ),
        one(
            "key",
            "ReplaceField$Key",
            "renames=id:key_id",
            record(None, Value::Null).with_key(None, map(vec![("id", Value::Int32(7))])),
        ),
        one("a null value passes", "ReplaceField$Value", "exclude=a", record(Some(order_schema()), Value::Null)),
        one("poison: a rename onto an existing field", "ReplaceField$Value", "renames=id:customer", order(Value::Null)),
        one("bad config: a rename without a colon", "ReplaceField$Value", "renames=id", schemaless_order()),
    ];
    insta::assert_snapshot!("replace_field", check(cases));
}

#[test]
fn set_schema_metadata() {
    let cases = vec![
        one(
            "name and version of a struct",
            "SetSchemaMetadata$Value",
            "schema.name=com.example.Order2\nschema.version=3",
            order(Value::Null),
        ),
        one("version only", "SetSchemaMetadata$Value", "schema.version=2", order(Value::Null)),
        one(
            "key of a primitive",
            "SetSchemaMetadata$Key",
            "schema.name=com.example.Key",
            record(None, Value::Null).with_key(Some(prim(Type::Int32)), Value::Int32(1)),
        ),
        one("schemaless null passes", "SetSchemaMetadata$Value", "schema.name=x", record(None, Value::Null)),
        one("poison: schemaless", "SetSchemaMetadata$Value", "schema.name=x", schemaless_order()),
        one("bad config: neither", "SetSchemaMetadata$Value", "", schemaless_order()),
        one("bad config: version not a number", "SetSchemaMetadata$Value", "schema.version=two", schemaless_order()),
    ];
    insta::assert_snapshot!("set_schema_metadata", check(cases));
}

#[test]
fn timestamp_converter() {
    let event_schema = Arc::new(struct_schema(&[
        ("id", prim(Type::Int64)),
        ("at", prim(Type::String)),
        ("seen", Arc::new(Schema::timestamp().into_optional())),
    ]));
    let event = |at: &str| {
        record(
            Some(event_schema.clone()),
            struct_value(&event_schema, vec![Value::Int64(1), text(at), Value::Int64(LEAP_DAY)]),
        )
    };
    let iso = "format=yyyy-MM-dd'T'HH:mm:ss.SSSXXX";
    let cases = vec![
        one(
            "schemaful field: string to Timestamp",
            "TimestampConverter$Value",
            &format!("field=at\ntarget.type=Timestamp\n{iso}"),
            event("2024-02-29T14:05:09.007+01:00"),
        ),
        one(
            "schemaful field: Timestamp to string",
            "TimestampConverter$Value",
            "field=seen\ntarget.type=string\nformat=EEE, d MMM yyyy hh:mm:ss a z",
            event("x"),
        ),
        one(
            "schemaful field: Timestamp to Date",
            "TimestampConverter$Value",
            "field=seen\ntarget.type=Date",
            event("x"),
        ),
        one(
            "schemaful field: Timestamp to Time",
            "TimestampConverter$Value",
            "field=seen\ntarget.type=Time",
            event("x"),
        ),
        one(
            "schemaful field: Timestamp to unix seconds",
            "TimestampConverter$Value",
            "field=seen\ntarget.type=unix\nunix.precision=seconds",
            event("x"),
        ),
        one(
            "whole value: Date to Timestamp",
            "TimestampConverter$Value",
            "target.type=Timestamp",
            record(Some(Arc::new(Schema::date())), Value::Int32(19_782)),
        ),
        one(
            "whole key: unix microseconds to string",
            "TimestampConverter$Key",
            "target.type=string\nformat=yyyyMMddHHmmssSSS\nunix.precision=microseconds",
            record(None, Value::Null).with_key(Some(prim(Type::Int64)), Value::Int64(LEAP_DAY * 1000 + 999)),
        ),
        one(
            "schemaless field: string to unix",
            "TimestampConverter$Value",
            "field=at\ntarget.type=unix\nformat=yyyy-MM-dd",
            record(None, map(vec![("at", text("2024-02-29")), ("n", Value::Int64(1))])),
        ),
        one(
            "schemaless whole value: unix to Date (midnight in milliseconds)",
            "TimestampConverter$Value",
            "target.type=Date",
            record(None, Value::Int64(LEAP_DAY)),
        ),
        one(
            "lenient parse: February 30th",
            "TimestampConverter$Value",
            "target.type=Date\nformat=yyyy-MM-dd",
            record(Some(prim(Type::String)), text("2023-02-30")),
        ),
        one(
            "null value",
            "TimestampConverter$Value",
            "target.type=unix",
            record(Some(Arc::new(Schema::timestamp().into_optional())), Value::Null),
        ),
        one(
            "poison: text that does not match the format",
            "TimestampConverter$Value",
            &format!("field=at\ntarget.type=Timestamp\n{iso}"),
            event("yesterday"),
        ),
        one(
            "poison: a schema that is no timestamp",
            "TimestampConverter$Value",
            "target.type=unix",
            record(Some(prim(Type::Int32)), Value::Int32(1)),
        ),
        one(
            "poison: a schemaless boolean",
            "TimestampConverter$Value",
            "target.type=unix",
            record(None, Value::Boolean(true)),
        ),
        one("bad config: string without format", "TimestampConverter$Value", "target.type=string", schemaless_order()),
        one(
            "bad config: target type is case-sensitive",
            "TimestampConverter$Value",
            "target.type=date",
            schemaless_order(),
        ),
        one(
            "bad config: unknown precision",
            "TimestampConverter$Value",
            "target.type=unix\nunix.precision=minutes",
            schemaless_order(),
        ),
        one(
            "bad config: bad pattern",
            "TimestampConverter$Value",
            "target.type=string\nformat=yyyy-bb",
            schemaless_order(),
        ),
    ];
    insta::assert_snapshot!("timestamp_converter", check(cases));
}

#[test]
fn timestamp_router() {
    let mut unstamped = schemaless_order();
    unstamped.timestamp = None;
    let cases = vec![
        one("defaults", "TimestampRouter", "", schemaless_order()),
        one(
            "custom formats",
            "org.apache.kafka.connect.transforms.TimestampRouter",
            "topic.format=${timestamp}/${topic}/${topic}\ntimestamp.format=yyyy-MM-dd'T'HH",
            schemaless_order(),
        ),
        one("poison: no timestamp", "TimestampRouter", "", unstamped),
        one("bad config: bad pattern", "TimestampRouter", "timestamp.format='yyyy", schemaless_order()),
    ];
    insta::assert_snapshot!("timestamp_router", check(cases));
}

#[test]
fn value_to_key() {
    let cases = vec![
        one("schemaful", "ValueToKey", "fields=customer,note", order(Value::Null)),
        one("schemaless, a missing field is null", "ValueToKey", "fields=id,nope", schemaless_order()),
        one("poison: a missing schemaful field", "ValueToKey", "fields=nope", order(Value::Null)),
        one("poison: a schemaless tombstone", "ValueToKey", "fields=id", record(None, Value::Null)),
        one("bad config: no fields", "ValueToKey", "fields=", schemaless_order()),
    ];
    insta::assert_snapshot!("value_to_key", check(cases));
}

#[test]
fn chains() {
    let config = "transforms=key,route,drop,never
        transforms.key.type=ValueToKey
        transforms.key.fields=id
        transforms.route.type=RegexRouter
        transforms.route.regex=(.*)
        transforms.route.replacement=$1-keyed
        transforms.drop.type=Filter
        transforms.drop.predicate=big
        transforms.never.type=InsertHeader
        transforms.never.header=h
        transforms.never.value.literal=v
        predicates=big
        predicates.big.type=TopicNameMatches
        predicates.big.pattern=.*-big-keyed";
    let cases = vec![
        full("steps run in order", config, schemaless_order()),
        full(
            "the chain stops at the step that drops",
            config,
            ConnectRecord { topic: "orders-big".into(), ..schemaless_order() },
        ),
        full("a poison record names its step", config, record(None, text("not a map"))),
        full("no transforms: unchanged", "", schemaless_order()),
    ];
    insta::assert_snapshot!("chains", check(cases));
}

#[test]
fn validation() {
    let props = parse_properties(
        "transforms=cast,route,drop,drop,ins
         transforms.cast.type=Cast$Value
         transforms.cast.spec=a:bytes
         transforms.route.type=RegexRouter
         transforms.route.regex=(.*
         transforms.route.replacement=$1
         transforms.drop.type=com.example.Nope
         transforms.drop.negate=true
         transforms.ins.type=InsertField$Value
         transforms.ins.predicate=missing
         predicates=tomb,topic
         predicates.tomb.type=RecordIsTombstone
         predicates.topic.type=TopicNameMatches",
    );
    let mut out = String::new();
    for value in TransformChain::validate(&props) {
        writeln!(out, "{} = {:?}", value.name, value.value).unwrap();
        for error in value.errors {
            writeln!(out, "  error: {error}").unwrap();
        }
    }
    insta::assert_snapshot!("validation", out);
}

/// Every transform, given records whose schemas and values disagree or are otherwise odd,
/// gives a record or a data error, never a panic.
#[test]
fn odd_records_are_errors_not_panics() {
    let configs: &[(&str, &str)] = &[
        ("Cast$Key", "spec=a:int8"),
        ("Cast$Value", "spec=string"),
        ("DropHeaders", "headers=a"),
        ("ExtractField$Key", "field=a"),
        ("ExtractField$Value", "field=a.a\nfield.syntax.version=V2"),
        ("Filter", ""),
        ("Flatten$Key", ""),
        ("Flatten$Value", ""),
        ("HeaderFrom$Key", "fields=a\nheaders=h\noperation=move"),
        ("HeaderFrom$Value", "fields=a\nheaders=h\noperation=copy"),
        ("HoistField$Key", "field=a"),
        ("HoistField$Value", "field=a"),
        ("InsertField$Key", "topic.field=t\ntimestamp.field=ts"),
        ("InsertField$Value", "partition.field=p!\noffset.field=o"),
        ("InsertHeader", "header=h\nvalue.literal=1"),
        ("MaskField$Key", "fields=a"),
        ("MaskField$Value", "fields=a\nreplacement=7"),
        ("RegexRouter", "regex=(.*)\nreplacement=$1x"),
        ("ReplaceField$Key", "renames=a:b"),
        ("ReplaceField$Value", "exclude=b"),
        ("SetSchemaMetadata$Key", "schema.name=n"),
        ("SetSchemaMetadata$Value", "schema.version=2"),
        ("TimestampConverter$Key", "field=a\ntarget.type=string\nformat=yyyy"),
        ("TimestampConverter$Value", "target.type=Date"),
        ("TimestampRouter", ""),
        ("ValueToKey", "fields=a"),
    ];
    let declared = Arc::new(struct_schema(&[("a", prim(Type::Int32))]));
    let other = Arc::new(struct_schema(&[("a", prim(Type::String)), ("b", prim(Type::Int8))]));
    let nested = Arc::new(struct_schema(&[("a", Arc::new(struct_schema(&[("a", prim(Type::Int32))])))]));
    let odd: Vec<(Option<SchemaRef>, Value)> = vec![
        (Some(declared.clone()), struct_value(&other, vec![text("x"), Value::Int8(1)])),
        (Some(declared.clone()), struct_value(&declared, vec![])),
        (Some(declared.clone()), Value::Null),
        (Some(declared.clone()), Value::Int64(1)),
        (Some(prim(Type::Int64)), text("x")),
        (Some(Arc::new(Schema::decimal(2))), Value::Bytes(Bytes::new())),
        (Some(Arc::new(Schema::date())), Value::Int64(i64::MIN)),
        (Some(nested.clone()), struct_value(&nested, vec![Value::Int32(1)])),
        (None, Value::Map(vec![(Value::Int32(1), text("x")), (text("a"), Value::Int64(i64::MIN))])),
        (None, map(vec![("a", map(vec![("a", Value::Bytes(Bytes::from_static(b"\xff")))]))])),
        (None, Value::Bytes(Bytes::from_static(b"\xff\xfe"))),
        (None, Value::Int64(i64::MIN)),
        (None, text("é")),
        (None, Value::Null),
    ];
    for (class, keys) in configs {
        let config = Config::from_props(parse_properties(&one("", class, keys, schemaless_order()).config));
        let chain = TransformChain::from_config(&config).unwrap_or_else(|e| panic!("{class}: {e}"));
        for (schema, value) in &odd {
            let mut input =
                ConnectRecord::new("é-topic", schema.clone(), value.clone()).with_key(schema.clone(), value.clone());
            input.timestamp = Some(i64::MIN);
            match chain.apply(input) {
                Ok(_) | Err(freshet_connectors::ConnectError::Data(_)) => {}
                Err(other) => panic!("{class} on {value:?}: not a data error: {other}"),
            }
        }
    }
}
