//! Change capture from a real PostgreSQL (started by the tests, `wal_level=logical`), as
//! Debezium's connector writes it: a snapshot of existing rows (`op: r`), then inserts, updates and
//! deletes (`c`, `u`, `d` and a tombstone) in commit order, keyed by primary key, on
//! `<prefix>.<schema>.<table>`; a restarted worker resumes from the slot without repeating the
//! snapshot or losing what changed while it was down; the slot is confirmed only as far as the
//! log acknowledged.

use std::sync::Arc;

use freshet_connectors::testing::Postgres;
use freshet_core::Substrate;
use serde_json::{json, Value as Json};

use crate::support::*;

fn cdc_config(pg: &Postgres, db: &str, extra: Json) -> Json {
    let config = json!({"connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": "127.0.0.1", "database.port": pg.port().to_string(), "database.user": "freshet",
        "database.dbname": db, "topic.prefix": "shop", "table.include.list": "public.orders",
        "slot.name": format!("slot_{db}"), "publication.name": format!("pub_{db}"),
        "key.converter": "JsonConverter", "value.converter": "JsonConverter"});
    with(config, extra)
}

/// The JSON payloads (key, value) of `topic`'s first `n` records.
async fn events(substrate: &dyn Substrate, topic: &str, n: usize) -> Vec<(Json, Json)> {
    read(substrate, topic, n)
        .await
        .iter()
        .map(|r| {
            let parse = |b: &Option<bytes::Bytes>| {
                b.as_deref().map_or(Json::Null, |b| serde_json::from_slice::<Json>(b).unwrap()["payload"].clone())
            };
            (parse(&r.key), parse(&r.value))
        })
        .collect()
}

/// An event's op, key id, and the `before` and `after` rows' (id, name, qty).
fn summary(event: &(Json, Json)) -> (String, i64, Json, Json) {
    let (key, value) = event;
    let row = |r: &Json| if r.is_null() { Json::Null } else { json!([r["id"], r["name"], r["qty"]]) };
    if value.is_null() {
        return ("tombstone".into(), key["id"].as_i64().unwrap(), Json::Null, Json::Null);
    }
    (
        value["op"].as_str().unwrap().to_string(),
        key["id"].as_i64().unwrap(),
        row(&value["before"]),
        row(&value["after"]),
    )
}

async fn confirmed_flush(client: &tokio_postgres::Client, slot: &str) -> i64 {
    let row = client
        .query_one(
            "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::int8 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_then_changes_arrive_as_debezium_events_and_a_restart_resumes_from_the_slot() {
    let pg = Postgres::shared().await;
    pg.database("cdc_events").await;
    let client = pg.connect("cdc_events").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, name text, qty int NOT NULL, price numeric(10,2), \
             at timestamptz, day date);
             CREATE TABLE other (id int PRIMARY KEY);
             INSERT INTO orders VALUES (1, 'a', 1, 1.50, '2026-12-04 10:00:00+00', '2026-12-04'),
                 (2, 'b', 2, NULL, NULL, NULL), (3, 'c', 3, -2.25, NULL, NULL);
             INSERT INTO other VALUES (1);",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let substrate: Arc<dyn Substrate> = Arc::new(log(dir.path()).await);
    let running = Running::start(substrate.clone(), &[]).await;
    create(&running, "cdc", cdc_config(pg, "cdc_events", json!({}))).await;

    let snapshot = events(&*substrate, "shop.public.orders", 3).await;
    let ops: Vec<_> = snapshot.iter().map(summary).collect();
    assert_eq!(
        ops,
        [
            ("r".to_string(), 1, Json::Null, json!([1, "a", 1])),
            ("r".to_string(), 2, Json::Null, json!([2, "b", 2])),
            ("r".to_string(), 3, Json::Null, json!([3, "c", 3])),
        ]
    );
    let first = &snapshot[0].1;
    assert_eq!(first["source"]["connector"], "postgresql");
    assert_eq!(first["source"]["name"], "shop");
    assert_eq!(first["source"]["db"], "cdc_events");
    assert_eq!(
        (first["source"]["schema"].as_str(), first["source"]["table"].as_str()),
        (Some("public"), Some("orders"))
    );
    assert_eq!(first["after"]["at"], "2026-12-04T10:00:00.000000Z");
    assert_eq!(first["after"]["day"], 20_791);
    // numeric(10,2) as Connect's Decimal: base64 of the unscaled big-endian bytes (150).
    assert_eq!(first["after"]["price"], "AJY=");
    assert_eq!(snapshot[2].1["source"]["snapshot"], "last");

    // Changes, in two transactions; the other table's are not captured.
    client
        .batch_execute(
            "BEGIN; INSERT INTO orders VALUES (4, 'd', 4); UPDATE orders SET qty = 10 WHERE id = 1; COMMIT;
             BEGIN; DELETE FROM orders WHERE id = 2; INSERT INTO other VALUES (2); COMMIT;",
        )
        .await
        .unwrap();
    let all = events(&*substrate, "shop.public.orders", 7).await;
    let changes: Vec<_> = all[3..].iter().map(summary).collect();
    assert_eq!(
        changes,
        [
            ("c".to_string(), 4, Json::Null, json!([4, "d", 4])),
            ("u".to_string(), 1, Json::Null, json!([1, "a", 10])),
            // The old row of REPLICA IDENTITY DEFAULT: the key, and the required qty as 0.
            ("d".to_string(), 2, json!([2, null, 0]), Json::Null),
            ("tombstone".to_string(), 2, Json::Null, Json::Null),
        ]
    );
    let insert = &all[3].1;
    assert_eq!(insert["source"]["snapshot"], "false");
    assert!(insert["source"]["lsn"].as_i64().unwrap() > 0 && insert["source"]["txId"].as_i64().unwrap() > 0);
    assert!(insert["ts_ms"].as_i64().unwrap() >= insert["source"]["ts_ms"].as_i64().unwrap());

    // The slot is confirmed past the changes once the log has them (offsets commit every 200 ms).
    let delete_lsn = all[5].1["source"]["lsn"].as_i64().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while confirmed_flush(&client, "slot_cdc_events").await <= delete_lsn {
        assert!(tokio::time::Instant::now() < deadline, "the slot was never confirmed past the changes");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A restarted task goes on from the slot: no second snapshot.
    let (status, body) = running.rest.call("POST", "/connectors/cdc/tasks/0/restart", None).await;
    assert!(status < 300, "{body}");
    client.batch_execute("UPDATE orders SET qty = 11 WHERE id = 1").await.unwrap();
    let all = events(&*substrate, "shop.public.orders", 8).await;
    assert_eq!(summary(&all[7]), ("u".to_string(), 1, Json::Null, json!([1, "a", 11])));
    // The replication connection cut by the server: the task fails, is restarted, and goes on.
    client
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'freshet-cdc'",
        )
        .await
        .unwrap();
    client.batch_execute("UPDATE orders SET qty = 12 WHERE id = 1").await.unwrap();
    let all = events(&*substrate, "shop.public.orders", 9).await;
    assert_eq!(summary(&all[8]), ("u".to_string(), 1, Json::Null, json!([1, "a", 12])));
    running.shutdown().await;

    // Changed while the worker was down: read on restart, and no second snapshot.
    client
        .batch_execute("INSERT INTO orders VALUES (5, 'e', 5); UPDATE orders SET name = 'z' WHERE id = 3;")
        .await
        .unwrap();
    let running = Running::start(substrate.clone(), &[]).await;
    create(&running, "cdc", cdc_config(pg, "cdc_events", json!({}))).await;
    let all = events(&*substrate, "shop.public.orders", 11).await;
    let resumed: Vec<_> = all[9..].iter().map(summary).collect();
    assert_eq!(
        resumed,
        [("c".to_string(), 5, Json::Null, json!([5, "e", 5])), ("u".to_string(), 3, Json::Null, json!([3, "z", 3]))]
    );
    running.shutdown().await;
    let extra = read(&*substrate, "shop.public.orders", 11).await;
    assert_eq!(extra.len(), 11, "nothing repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_change_capture_cannot_follow_are_refused_naming_the_key() {
    let pg = Postgres::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let substrate: Arc<dyn Substrate> = Arc::new(log(dir.path()).await);
    let running = Running::start(substrate, &[]).await;
    for (extra, key, says) in [
        (json!({"plugin.name": "decoderbufs"}), "plugin.name", "pgoutput"),
        (json!({"snapshot.mode": "sometimes"}), "snapshot.mode", "sometimes"),
        (json!({"database.sslmode": "require"}), "database.sslmode", "without TLS"),
        (json!({"topic.prefix": "a b"}), "topic.prefix", "topic name"),
        (json!({"table.include.list": "public.(orders"}), "table.include.list", "public.(orders"),
    ] {
        let config = with(cdc_config(pg, "postgres", json!({})), extra);
        let (status, body) = running.rest.call("PUT", "/connectors/bad/config", Some(config)).await;
        assert_eq!(status, 400, "{key}: {body}");
        let text = body.to_string();
        assert!(text.contains(key) && text.contains(says), "{key}: {says}: {text}");
    }
    running.shutdown().await;
}
