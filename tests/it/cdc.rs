//! Change capture in a real `freshet connect standalone` process on a Freshet broker, killed with
//! SIGKILL while PostgreSQL is being written: after a restart, the topic's latest event per key
//! equals the table (nothing the database committed is lost, though some events may come twice,
//! as with Debezium), and every transaction's events are there.

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use freshet_connectors::testing::Postgres;
use serde_json::{json, Value as Json};

use crate::peer::{connect_standalone, BrokerProcess};

fn worker(dir: &std::path::Path, log_name: &str) -> Child {
    connect_standalone(&[dir.join("worker.properties"), dir.join("cdc.properties")], &dir.join(log_name))
}

/// Every record of the topic as (key, value) JSON, `Null` for a tombstone.
fn topic_events(broker: &str, topic: &str) -> Vec<(Json, Json)> {
    let out = Command::new("kcat")
        .args(["-C", "-b", broker, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n"])
        .output()
        .expect("kcat is installed (./dev test installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Unknown topic") {
        return Vec::new();
    }
    assert!(out.status.success(), "{err}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap_or((l, ""));
            (serde_json::from_str(k).unwrap(), if v.is_empty() { Json::Null } else { serde_json::from_str(v).unwrap() })
        })
        .collect()
}

#[test]
fn change_capture_killed_mid_stream_loses_no_committed_change() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pg = rt.block_on(Postgres::start(false)).unwrap();
    rt.block_on(pg.database("shop"));
    let client = rt.block_on(pg.connect("shop")).unwrap();
    rt.block_on(client.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL, label text);
         INSERT INTO items SELECT i, 0, 'snapshot' FROM generate_series(0, 199) i;",
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("broker"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        dir.path().join("worker.properties"),
        format!(
            "bootstrap.servers={}\nkey.converter=org.apache.kafka.connect.json.JsonConverter\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\nkey.converter.schemas.enable=false\n\
             value.converter.schemas.enable=false\noffset.flush.interval.ms=300\nlisteners=http://127.0.0.1:{port}\n",
            broker.addr
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cdc.properties"),
        format!(
            "name=cdc\nconnector.class=io.debezium.connector.postgresql.PostgresConnector\n\
             database.hostname=127.0.0.1\ndatabase.port={}\ndatabase.user=freshet\ndatabase.dbname=shop\n\
             topic.prefix=shop\ntable.include.list=public.items\nslot.name=killed\n",
            pg.port()
        ),
    )
    .unwrap();
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();

    // A writer: 1,500 transactions of an update, an insert or a delete, and sometimes two.
    let writer = rt.spawn(async move {
        for t in 0..1500i32 {
            let id = (t * 37) % 300;
            let sql = match t % 5 {
                0 => format!("DELETE FROM items WHERE id = {id}"),
                1 | 2 => format!(
                    "INSERT INTO items VALUES ({id}, {t}, 'i{t}') ON CONFLICT (id) DO UPDATE SET n = {t}, label = 'u{t}'"
                ),
                3 => format!("UPDATE items SET n = {t} WHERE id = {id}"),
                _ => format!(
                    "BEGIN; UPDATE items SET n = {t} WHERE id = {id}; UPDATE items SET label = 'b{t}' WHERE id = {}; COMMIT",
                    (id + 1) % 300
                ),
            };
            client.batch_execute(&sql).await.unwrap();
            if t % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        client
    });

    // Killed once changes are in the topic.
    let mut first = worker(dir.path(), "first.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    while topic_events(&broker.addr, "shop.public.items").len() <= 400 {
        assert!(Instant::now() < deadline, "no changes were captured:\n{}", log("first.log"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill").args(["-9", &first.id().to_string()]).status();
    first.wait().unwrap();
    let client = rt.block_on(writer).unwrap();
    let mut second = worker(dir.path(), "second.log");

    // The table as it ended.
    let table: BTreeMap<i64, (i64, String)> = rt
        .block_on(client.query("SELECT id, n, label FROM items", &[]))
        .unwrap()
        .iter()
        .map(|r| (i64::from(r.get::<_, i32>(0)), (i64::from(r.get::<_, i32>(1)), r.get(2))))
        .collect();
    let latest = |events: &[(Json, Json)]| {
        let mut rows: BTreeMap<i64, (i64, String)> = BTreeMap::new();
        for (key, value) in events {
            let id = key["id"].as_i64().unwrap();
            match value["after"].as_object() {
                Some(after) => {
                    rows.insert(id, (after["n"].as_i64().unwrap(), after["label"].as_str().unwrap().to_string()));
                }
                None => {
                    rows.remove(&id);
                }
            }
        }
        rows
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let events = loop {
        let events = topic_events(&broker.addr, "shop.public.items");
        if latest(&events) == table {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "the topic's latest per key never equalled the table ({} events):\n{}",
            events.len(),
            log("second.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let ops: BTreeMap<&str, usize> = events.iter().fold(BTreeMap::new(), |mut m, (_, v)| {
        *m.entry(v["op"].as_str().unwrap_or("tombstone")).or_default() += 1;
        m
    });
    assert!(ops.get("r").copied().unwrap_or(0) >= 200, "the snapshot: {ops:?}");
    // Every committed change at least once: 1,500 transactions, some of two changes, a delete of
    // a missing row changing nothing.
    assert!(ops.get("u").copied().unwrap_or(0) + ops.get("c").copied().unwrap_or(0) >= 900, "{ops:?}");
    assert_eq!(json!(ops.get("d")), json!(ops.get("tombstone")), "a tombstone after each delete");
    let _ = Command::new("kill").arg(second.id().to_string()).status();
    second.wait().unwrap();
    broker.stop();
}
