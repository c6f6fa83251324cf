//! The JDBC sink against a real PostgreSQL (started by the tests, see `freshet_connectors::testing`):
//! upserts, updates and tombstone deletes leave the topic's latest value per key; tables made
//! and evolved from the records' schemas; a record that does not fit goes to the dead-letter
//! topic naming the column; insert and update modes; configs refused with the key named.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use freshet_connectors::testing::Postgres;
use freshet_core::{ProducerRecord, Substrate};
use serde_json::{json, Value as Json};

use crate::support::*;

/// Connect's JSON schema of the orders' values: id, name, qty, price (Decimal, scale 2), at
/// (Timestamp), and `extra` fields given.
fn order_schema(extra: &[Json]) -> Json {
    let mut fields = vec![
        json!({"field": "id", "type": "int32", "optional": false}),
        json!({"field": "name", "type": "string", "optional": true}),
        json!({"field": "qty", "type": "int64", "optional": true}),
        json!({"field": "price", "type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
               "parameters": {"scale": "2"}}),
        json!({"field": "at", "type": "int64", "optional": true, "name": "org.apache.kafka.connect.data.Timestamp"}),
    ];
    fields.extend(extra.iter().cloned());
    json!({"type": "struct", "name": "order", "optional": false, "fields": fields})
}

/// What each test starts from: a new database, a client of it, and an embedded log.
struct Fixture {
    url: String,
    client: tokio_postgres::Client,
    substrate: Arc<dyn Substrate>,
    _dir: tempfile::TempDir,
}

async fn fixture(db: &str) -> Fixture {
    let pg = Postgres::shared().await;
    let url = pg.database(db).await;
    let client = pg.connect(db).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let substrate: Arc<dyn Substrate> = Arc::new(log(dir.path()).await);
    Fixture { url, client, substrate, _dir: dir }
}

fn key(id: i32) -> String {
    json!({"schema": {"type": "struct", "name": "order_key", "optional": false,
            "fields": [{"field": "id", "type": "int32", "optional": false}]},
           "payload": {"id": id}})
    .to_string()
}

/// A decimal's unscaled value as Connect's JSON carries it (base64 of big-endian bytes).
fn decimal(unscaled: i64) -> String {
    let bytes = unscaled.to_be_bytes();
    let skip = bytes.iter().position(|&b| b != 0).unwrap_or(7).min(7);
    // Keep a sign bit of zero for positive values.
    let skip = if bytes[skip] & 0x80 != 0 { skip.saturating_sub(1) } else { skip };
    base64::engine::general_purpose::STANDARD.encode(&bytes[skip..])
}

fn order(id: i32, name: &str, qty: i64) -> String {
    json!({"schema": order_schema(&[]),
           "payload": {"id": id, "name": name, "qty": qty, "price": decimal(qty * 100 + 99), "at": 1_700_000_000_000i64 + i64::from(id)}})
    .to_string()
}

/// The rows of a query, each as its columns' text.
async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let text = format!(
        "SELECT ARRAY(SELECT value FROM json_each_text(to_json(q)) WITH ORDINALITY ORDER BY ordinality) FROM ({sql}) q"
    );
    client
        .query(&text, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| row.get::<_, Vec<Option<String>>>(0))
        .collect()
}

fn sink_config(url: &str, topics: &str, extra: Json) -> Json {
    let config = json!({"connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector", "topics": topics,
        "connection.url": url, "key.converter": "JsonConverter", "value.converter": "JsonConverter"});
    with(config, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_and_tombstones_leave_the_latest_value_per_key_in_an_auto_created_table() {
    let Fixture { url, client, substrate, _dir } = fixture("upserts").await;
    topic(&*substrate, "orders").await;
    // 200 orders, then 300 updates spread over them, then 40 deletes: all in one topic, so a poll
    // holds several versions of a key.
    let mut model: BTreeMap<i32, (String, i64)> = BTreeMap::new();
    let mut records = Vec::new();
    for i in 0..200 {
        records.push(record("orders", Some(key(i)), Some(order(i, &format!("o{i}"), 1))));
        model.insert(i, (format!("o{i}"), 1));
    }
    for n in 0..300 {
        let i = (n * 7) % 200;
        let qty = 2 + n as i64;
        records.push(record("orders", Some(key(i)), Some(order(i, &format!("o{i}-v{n}"), qty))));
        model.insert(i, (format!("o{i}-v{n}"), qty));
    }
    for i in (0..200).step_by(5) {
        records.push(record("orders", Some(key(i)), None));
        model.remove(&i);
    }
    // Deleted and written again: the row is back.
    records.push(record("orders", Some(key(10)), Some(order(10, "back", 5))));
    model.insert(10, ("back".into(), 5));
    let n_records = records.len() as i64;
    send(&*substrate, records).await;

    let running = Running::start(substrate.clone(), &[]).await;
    let config = sink_config(
        &url,
        "orders",
        json!({"insert.mode": "upsert", "pk.mode": "record_key",
        "delete.enabled": "true", "auto.create": "true", "batch.size": "64"}),
    );
    create(&running, "pg-orders", config).await;
    wait_committed(&running, "pg-orders", n_records).await;

    // `at` is checked by PostgreSQL's own arithmetic on the instant the record carried.
    let got = rows(
        &client,
        "SELECT id, name, qty, price::text, at = TIMESTAMP 'epoch' + (1700000000000 + id) * INTERVAL '1 millisecond' \
         FROM orders ORDER BY id",
    )
    .await;
    let want: Vec<Vec<Option<String>>> = model
        .iter()
        .map(|(id, (name, qty))| {
            vec![
                Some(id.to_string()),
                Some(name.clone()),
                Some(qty.to_string()),
                Some(format!("{qty}.99")),
                Some("true".to_string()),
            ]
        })
        .collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    // The table as auto.create made it: Connect's types mapped as the JDBC sink maps them, the key
    // as the primary key, required fields NOT NULL.
    let columns = rows(
        &client,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
         WHERE table_name = 'orders' ORDER BY ordinal_position",
    )
    .await;
    let columns: Vec<String> =
        columns.iter().map(|c| c.iter().flatten().cloned().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(
        columns,
        ["id integer NO", "name text YES", "qty bigint YES", "price numeric YES", "at timestamp without time zone YES"]
    );
    let pk = rows(
        &client,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = 'orders'::regclass AND i.indisprimary",
    )
    .await;
    assert_eq!(pk, [[Some("id".to_string())]]);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_field_evolves_the_table_and_records_that_do_not_fit_go_to_the_dead_letter_topic() {
    let Fixture { url, client, substrate, _dir } = fixture("evolve").await;
    // A table of the user's, with a column narrower than the records' and a check of its own.
    client
        .batch_execute(
            "CREATE TABLE orders (id integer PRIMARY KEY, name text, qty smallint CHECK (qty >= 0), \
             price numeric(12,2), at timestamp, ref uuid)",
        )
        .await
        .unwrap();
    topic(&*substrate, "orders").await;
    let note = json!({"field": "note", "type": "string", "optional": true});
    let with_note = |id: i32, note_text: &str| {
        json!({"schema": order_schema(std::slice::from_ref(&note)),
               "payload": {"id": id, "name": "n", "qty": 1, "note": note_text}})
        .to_string()
    };
    // The user's typo: qty as text.
    let qty_as_text = json!({"schema": {"type": "struct", "optional": false, "fields": [
            {"field": "id", "type": "int32", "optional": false}, {"field": "qty", "type": "string", "optional": true}]},
        "payload": {"id": 7, "qty": "seven"}})
    .to_string();
    // A text field for a uuid column: parsed by PostgreSQL.
    let with_ref = |id: i32, reference: &str| {
        json!({"schema": {"type": "struct", "optional": false, "fields": [
                {"field": "id", "type": "int32", "optional": false}, {"field": "ref", "type": "string", "optional": true}]},
            "payload": {"id": id, "ref": reference}})
        .to_string()
    };
    let records = vec![
        record("orders", Some(key(1)), Some(order(1, "a", 1))),
        // 2: a field the table lacks: auto.evolve adds it.
        record("orders", Some(key(2)), Some(with_note(2, "hello"))),
        // 3: too big for smallint: does not fit, named.
        record("orders", Some(key(3)), Some(order(3, "c", 70_000))),
        // 4: PostgreSQL's own check refuses it.
        record("orders", Some(key(4)), Some(order(4, "d", -1))),
        // 5: no key.
        record("orders", None, Some(order(5, "e", 1))),
        // 6: text for an integer column: fits nowhere.
        record("orders", Some(key(7)), Some(qty_as_text)),
        record("orders", Some(key(8)), Some(order(8, "h", 8))),
        record("orders", Some(key(9)), Some(with_ref(9, "6f1c1b0e-3c55-4d2e-9a55-7f2b9b1c0a01"))),
        // 8: not a uuid: PostgreSQL refuses it, and the column is named.
        record("orders", Some(key(10)), Some(with_ref(10, "not-a-uuid"))),
    ];
    send(&*substrate, records).await;

    let running = Running::start(substrate.clone(), &[]).await;
    let config = sink_config(
        &url,
        "orders",
        json!({"insert.mode": "upsert", "pk.mode": "record_key",
        "auto.evolve": "true", "errors.tolerance": "all", "errors.deadletterqueue.topic.name": "orders-dlq",
        "errors.deadletterqueue.context.headers.enable": "true"}),
    );
    create(&running, "pg", config).await;
    wait_committed(&running, "pg", 9).await;

    let got = rows(&client, "SELECT id, name, qty, note, ref FROM orders ORDER BY id").await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        got,
        [
            vec![s("1"), s("a"), s("1"), None, None],
            vec![s("2"), s("n"), s("1"), s("hello"), None],
            vec![s("8"), s("h"), s("8"), None, None],
            vec![s("9"), None, None, None, s("6f1c1b0e-3c55-4d2e-9a55-7f2b9b1c0a01")],
        ]
    );

    let dead = read(&*substrate, "orders-dlq", 5).await;
    let offsets: Vec<&str> = dead.iter().map(|r| header(r, "__connect.errors.offset")).collect();
    assert_eq!(offsets, ["2", "3", "4", "5", "8"]);
    let messages: Vec<&str> = dead.iter().map(|r| header(r, "__connect.errors.exception.message")).collect();
    assert!(messages[0].contains(r#"column "qty""#) && messages[0].contains("cannot hold 70000"), "{}", messages[0]);
    assert!(messages[1].contains("orders_qty_check"), "{}", messages[1]);
    assert!(messages[2].contains("no key"), "{}", messages[2]);
    assert!(messages[3].contains(r#"column "qty""#) && messages[3].contains("smallint"), "{}", messages[3]);
    assert!(messages[4].contains(r#"column "ref""#) && messages[4].contains("not-a-uuid"), "{}", messages[4]);
    // The dead-letter topic has each record as it was stored, and where it came from.
    assert_eq!(dead[0].value.as_deref(), Some(order(3, "c", 70_000).as_bytes()));
    assert!(dead.iter().all(|r| header(r, "__connect.errors.stage") == "TASK_PUT"));
    let (_, status) = running.rest.call("GET", "/connectors/pg/status", None).await;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_mode_keyed_by_kafka_coordinates_and_update_mode() {
    let Fixture { url, client, substrate, _dir } = fixture("modes").await;
    client.batch_execute("CREATE TABLE stock (id integer PRIMARY KEY, name text, qty bigint)").await.unwrap();
    client.batch_execute("INSERT INTO stock VALUES (1, 'one', 0), (2, 'two', 0)").await.unwrap();
    topic(&*substrate, "events").await;
    topic(&*substrate, "stock").await;
    let events: Vec<ProducerRecord> =
        (0..10).map(|i| record("events", None, Some(order(i % 3, &format!("e{i}"), i64::from(i))))).collect();
    send(&*substrate, events).await;
    // Updates of rows 1, 2 and 3; there is no row 3, and update mode makes none.
    let updates: Vec<ProducerRecord> = [1, 2, 3, 1]
        .iter()
        .enumerate()
        .map(|(n, &i)| record("stock", Some(key(i)), Some(order(i, "upd", n as i64))))
        .collect();
    send(&*substrate, updates).await;

    let running = Running::start(substrate.clone(), &[]).await;
    let events = sink_config(
        &url,
        "events",
        json!({"pk.mode": "kafka", "auto.create": "true",
        "table.name.format": "public.audit_${topic}", "fields.whitelist": "id,name"}),
    );
    create(&running, "audit", events).await;
    let stock = sink_config(
        &url,
        "stock",
        json!({"insert.mode": "update", "pk.mode": "record_value",
        "pk.fields": "id", "fields.whitelist": "id,name,qty"}),
    );
    create(&running, "stock", stock).await;
    wait_committed(&running, "audit", 10).await;
    wait_committed(&running, "stock", 4).await;

    // Every event once, keyed by where it was in the log, with only the listed fields.
    let audit = rows(
        &client,
        "SELECT __connect_topic, __connect_partition, __connect_offset, id, name FROM audit_events ORDER BY 3",
    )
    .await;
    assert_eq!(audit.len(), 10);
    for (i, row) in audit.iter().enumerate() {
        let want = ["events", "0", &i.to_string(), &(i % 3).to_string(), &format!("e{i}")].map(|s| Some(s.to_string()));
        assert_eq!(row, &want.to_vec());
    }
    let stock = rows(&client, "SELECT id, name, qty FROM stock ORDER BY id").await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(stock, [vec![s("1"), s("upd"), s("3")], vec![s("2"), s("upd"), s("1")]]);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_are_refused_naming_the_key_and_a_missing_table_fails_the_task_naming_it() {
    let Fixture { url, substrate, _dir, .. } = fixture("refusals").await;
    topic(&*substrate, "t").await;
    let running = Running::start(substrate.clone(), &[]).await;

    let refused = |config: Json, key: &'static str, says: &'static str| {
        let rest = &running.rest;
        async move {
            let (status, body) = rest.call("PUT", "/connectors/bad/config", Some(config)).await;
            assert_eq!(status, 400, "{body}");
            let text = body.to_string();
            assert!(text.contains(key) && text.contains(says), "{key}: {says}: {text}");
        }
    };
    refused(sink_config("jdbc:mysql://h/db", "t", json!({})), "connection.url", "PostgreSQL only").await;
    refused(sink_config(&url, "t", json!({"insert.mode": "upsert"})), "pk.mode", "needs a primary key").await;
    refused(
        sink_config(&url, "t", json!({"delete.enabled": "true", "pk.mode": "record_value"})),
        "delete.enabled",
        "record_key",
    )
    .await;
    refused(sink_config(&url, "t", json!({"insert.mode": "merge"})), "insert.mode", "insert, upsert, update").await;

    send(&*substrate, vec![record("t", Some(key(1)), Some(order(1, "a", 1)))]).await;
    // Failed for good at once (no restarts with backoff, which Freshet's worker tries by default).
    let config = sink_config(&url, "t", json!({"errors.task.restart.max": "0"}));
    create(&running, "pg", config).await;
    let status = wait_for(&running.rest, "/connectors/pg/status", |s| s["tasks"][0]["state"] == "FAILED").await;
    let trace = status["tasks"][0]["trace"].as_str().unwrap();
    assert!(trace.contains(r#"table "t" does not exist, and auto.create is false"#), "{trace}");
    running.shutdown().await;
}

/// The values of the JSON records of `topic` (schemaless), once there are `n`.
async fn values(substrate: &dyn Substrate, topic: &str, n: usize) -> Vec<Json> {
    read(substrate, topic, n)
        .await
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
        .collect()
}

fn source_config(url: &str, extra: Json) -> Json {
    let config = json!({"connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector",
        "connection.url": url, "poll.interval.ms": "100", "batch.max.rows": "100",
        "value.converter": "JsonConverter", "value.converter.schemas.enable": "false"});
    with(config, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_source_reads_new_rows_by_id_and_goes_on_after_a_restart() {
    let Fixture { url, client, substrate, _dir } = fixture("incrementing").await;
    client
        .batch_execute(
            "CREATE TABLE items (id serial PRIMARY KEY, name varchar(20) NOT NULL, price numeric(10,2), \
             added date, at timestamp, tag uuid); \
             INSERT INTO items (name, price, added, at, tag) SELECT 'item-' || i, i * 1.5, DATE '2026-01-01' + i, \
             TIMESTAMP '2026-01-01 00:00:00' + i * INTERVAL '1 second', NULL FROM generate_series(1, 250) i; \
             UPDATE items SET price = NULL, tag = '6f1c1b0e-3c55-4d2e-9a55-7f2b9b1c0a01' WHERE id = 7",
        )
        .await
        .unwrap();
    let config = source_config(
        &url,
        // No incrementing.column.name: the table's serial column is found.
        json!({"mode": "incrementing", "table.whitelist": "items", "topic.prefix": "pg-"}),
    );
    let running = Running::start(substrate.clone(), &[]).await;
    create(&running, "items", config.clone()).await;
    wait_for(&running.rest, "/connectors/items/status", |s| s["tasks"][0]["state"] == "RUNNING").await;
    let got = values(&*substrate, "pg-items", 250).await;
    let ids: Vec<i64> = got.iter().map(|v| v["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (1..=250).collect::<Vec<_>>(), "every row once, in order");
    // Types as the JDBC source maps them (schemaless JSON shows Decimal as base64 bytes, Date as
    // days, Timestamp as ms).
    assert_eq!(got[0]["name"], "item-1");
    assert_eq!(got[0]["price"], decimal(150));
    assert_eq!(got[0]["added"], 20_454 + 1);
    assert_eq!(got[0]["at"], 1_767_225_601_000i64);
    assert_eq!(got[6]["price"], Json::Null);
    assert_eq!(got[6]["tag"], "6f1c1b0e-3c55-4d2e-9a55-7f2b9b1c0a01");
    let offsets =
        wait_for(&running.rest, "/connectors/items/offsets", |o| o["offsets"][0]["offset"]["incrementing"] == 250)
            .await;
    assert_eq!(offsets["offsets"][0]["partition"], json!({"protocol": "1", "table": "incrementing.public.items"}));

    // New rows come; after a restart, reading goes on from the stored offset.
    client.batch_execute("INSERT INTO items (name) SELECT 'late-' || i FROM generate_series(1, 30) i").await.unwrap();
    values(&*substrate, "pg-items", 280).await;
    running.shutdown().await;
    client.batch_execute("INSERT INTO items (name) SELECT 'later-' || i FROM generate_series(1, 20) i").await.unwrap();
    // A standalone worker keeps connector configs in memory, as Kafka's: given again.
    let running = Running::start(substrate.clone(), &[]).await;
    create(&running, "items", config).await;
    let got = values(&*substrate, "pg-items", 300).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = values(&*substrate, "pg-items", 300).await;
    let ids: Vec<i64> = all.iter().map(|v| v["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (1..=300).collect::<Vec<_>>(), "no row twice after the restart");
    assert_eq!(got[299]["name"], "later-20");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_source_reads_updates_by_timestamp_and_id_and_a_query() {
    let Fixture { url, client, substrate, _dir } = fixture("timestamps").await;
    // 150 rows sharing three timestamps: a batch (100 rows) ends inside a timestamp, and the rest
    // of its rows must still come.
    client
        .batch_execute(
            "CREATE TABLE accounts (id integer PRIMARY KEY, balance bigint, updated timestamptz NOT NULL); \
             INSERT INTO accounts SELECT i, 0, TIMESTAMPTZ '2026-01-01 00:00:00+00' + (i % 3) * INTERVAL '1 hour' \
             FROM generate_series(1, 150) i",
        )
        .await
        .unwrap();
    let running = Running::start(substrate.clone(), &[]).await;
    let config = source_config(
        &url,
        json!({"mode": "timestamp+incrementing", "incrementing.column.name": "id",
        "timestamp.column.name": "updated", "table.whitelist": "public.accounts", "topic.prefix": "db-"}),
    );
    create(&running, "accounts", config).await;
    wait_for(&running.rest, "/connectors/accounts/status", |s| s["tasks"][0]["state"] == "RUNNING").await;
    let query = source_config(
        &url,
        json!({"mode": "incrementing", "incrementing.column.name": "id",
        "query": "SELECT id, balance * 2 AS doubled FROM accounts WHERE id % 50 = 0", "topic.prefix": "fifties"}),
    );
    create(&running, "fifties", query).await;

    let got = values(&*substrate, "db-accounts", 150).await;
    let mut ids: Vec<i64> = got.iter().map(|v| v["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (1..=150).collect::<Vec<_>>(), "every row once, those sharing a timestamp too");
    let fifties = values(&*substrate, "fifties", 3).await;
    assert_eq!(
        fifties,
        [json!({"id": 50, "doubled": 0}), json!({"id": 100, "doubled": 0}), json!({"id": 150, "doubled": 0})]
    );

    // An update moves a row's timestamp: it comes again, with its new balance.
    client
        .batch_execute("UPDATE accounts SET balance = 99, updated = now() - INTERVAL '1 second' WHERE id = 42")
        .await
        .unwrap();
    let got = values(&*substrate, "db-accounts", 151).await;
    assert_eq!((got[150]["id"].as_i64(), got[150]["balance"].as_i64()), (Some(42), Some(99)));
    running.shutdown().await;
}
