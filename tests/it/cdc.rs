//! Change capture in a real `freshet connect standalone` process on a Freshet broker, killed with
//! SIGKILL while PostgreSQL is being written: after a restart, the topic's latest event per key
//! equals the table (nothing the database committed is lost, though some events may come twice,
//! as with Debezium), and every transaction's events are there; with the broker stopped, the
//! slot is not confirmed past what the log has. Debezium's own connector beside Freshet's writes
//! the same events.

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
             topic.prefix=shop\ntable.include.list=public.items\nslot.name=killed\nstatus.update.interval.ms=500\n",
            pg.port()
        ),
    )
    .unwrap();
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();

    // The snapshot first, then a writer, and the worker killed once changes are in the topic.
    let mut first = worker(dir.path(), "first.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    while topic_events(&broker.addr, "shop.public.items").len() < 200 {
        assert!(Instant::now() < deadline, "no snapshot:\n{}", log("first.log"));
        std::thread::sleep(Duration::from_millis(50));
    }
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
    // Every committed change at least once: 1,500 transactions, some of two changes, a delete or
    // an update of a missing row changing nothing. 40 rows are made (ids 200-299 of the upserts)
    // and 40 deleted (ids below 200 that are multiples of 5).
    let count = |op: &str| ops.get(op).copied().unwrap_or(0);
    assert!(count("u") + count("c") >= 900 && count("c") >= 40 && count("d") >= 40, "{ops:?}");
    assert_eq!(json!(ops.get("d")), json!(ops.get("tombstone")), "a tombstone after each delete");

    // The slot runs no further than the log acknowledged: with the broker stopped (SIGSTOP),
    // changes are read but not written, and the slot stays before them; resumed, it moves on.
    let lsn = |sql: &str| -> i64 { rt.block_on(client.query_one(sql, &[])).unwrap().get(0) };
    let confirmed = "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::int8 FROM pg_replication_slots \
                     WHERE slot_name = 'killed'";
    // WAL that holds nothing captured (a checkpoint, a snapshot of running transactions) may be
    // confirmed at any time; the held transaction must still be decoded after a restart, so the
    // slot stays at or before its commit record (PostgreSQL skips a transaction committed before
    // the slot's confirmed position).
    rt.block_on(client.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")).unwrap();
    let before = lsn("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8");
    let _ = Command::new("kill").args(["-STOP", &broker.pid().to_string()]).status();
    rt.block_on(
        client.batch_execute("BEGIN; INSERT INTO items SELECT i, -1, 'held' FROM generate_series(1000, 1019) i"),
    )
    .unwrap();
    let xid: String = rt.block_on(client.query_one("SELECT pg_current_xact_id()::text", &[])).unwrap().get(0);
    rt.block_on(client.batch_execute("COMMIT")).unwrap();
    // The server here does not wait for the flush at a commit (nor do the slot's readers).
    let after = lsn("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8");
    while lsn("SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::int8") < after {
        std::thread::sleep(Duration::from_millis(20));
    }
    let commit = lsn(&format!(
        "SELECT (start_lsn - '0/0'::pg_lsn)::int8 FROM pg_get_wal_records_info('0/0'::pg_lsn + {before}, \
         '0/0'::pg_lsn + {after}) WHERE resource_manager = 'Transaction' AND record_type LIKE 'COMMIT%' AND xid::text = '{xid}'"
    ));
    // Longer than the status updates' interval (500 ms here) several times over.
    std::thread::sleep(Duration::from_secs(3));
    let held = lsn(confirmed);
    let _ = Command::new("kill").args(["-CONT", &broker.pid().to_string()]).status();
    assert!(held <= commit, "the slot was confirmed at {held}, past the commit at {commit}, before the log had it");
    let deadline = Instant::now() + Duration::from_secs(120);
    while lsn(confirmed) <= commit || topic_events(&broker.addr, "shop.public.items").len() < events.len() + 20 {
        assert!(Instant::now() < deadline, "the slot did not move on after the broker resumed:\n{}", log("second.log"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill").arg(second.id().to_string()).status();
    second.wait().unwrap();
    broker.stop();
}

/// Debezium's own PostgreSQL connector (3.6.1, in Kafka Connect 4.3.1) and Freshet's, side by side
/// on the same database and broker: the same snapshot and changes give the same `op`, `before`
/// and `after`, and the same keys.
#[test]
fn debeziums_connector_and_freshets_write_the_same_events() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pg = rt.block_on(Postgres::start(false)).unwrap();
    rt.block_on(pg.database("peer"));
    let client = rt.block_on(pg.connect("peer")).unwrap();
    rt.block_on(client.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, name text, qty int NOT NULL, price numeric(10,2), \
           at timestamptz, day date, seen timestamp, tag uuid, doc jsonb, flag boolean, ratio float8, big bigint);
         INSERT INTO orders VALUES
           (1, 'a', 1, 1.50, '2026-12-04 10:00:00+00', '2026-12-04', '2026-12-04 10:00:00.25',
            '6f1c1b0e-3c55-4d2e-9a55-7f2b9b1c0a01', '{\"k\": [1, 2]}', true, 0.5, 9000000000),
           (2, 'b', 2, NULL, '2026-12-04 10:00:00.123456+00', NULL, NULL, NULL, NULL, false, NULL, NULL),
           (3, NULL, 3, -2.25, NULL, '1969-12-31', NULL, NULL, '[]', NULL, -1e10, -1);",
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f);
    let broker = BrokerProcess::start(&path("broker"));
    let worker = |port: u16, extra: &str| {
        format!(
            "bootstrap.servers={}\nkey.converter=org.apache.kafka.connect.json.JsonConverter\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\nkey.converter.schemas.enable=false\n\
             value.converter.schemas.enable=false\noffset.flush.interval.ms=500\nlisteners=http://127.0.0.1:{port}\n\
             {extra}",
            broker.addr
        )
    };
    let connector = |prefix: &str| {
        format!(
            "name={prefix}\nconnector.class=io.debezium.connector.postgresql.PostgresConnector\ntasks.max=1\n\
             database.hostname=127.0.0.1\ndatabase.port={}\ndatabase.user=freshet\ndatabase.password=unused\n\
             database.dbname=peer\ntopic.prefix={prefix}\ntable.include.list=public.orders\nplugin.name=pgoutput\n\
             slot.name={prefix}\npublication.name={prefix}_pub\n",
            pg.port()
        )
    };
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        path("kafka-worker.properties"),
        worker(
            free(),
            &format!(
                "offset.storage.file.filename={}\nplugin.path={}\nplugin.discovery=only_scan\n",
                path("kafka-offsets").display(),
                crate::peer::debezium_plugins().display()
            ),
        ),
    )
    .unwrap();
    std::fs::write(path("dbz.properties"), connector("dbz")).unwrap();
    std::fs::write(path("freshet-worker.properties"), worker(free(), "")).unwrap();
    std::fs::write(path("fsh.properties"), connector("fsh")).unwrap();
    let mut kafka_connect = Command::new("java")
        .arg(crate::peer::log4j_config())
        .args(["-cp", &crate::peer::connect_classpath(), "org.apache.kafka.connect.cli.ConnectStandalone"])
        .args([path("kafka-worker.properties"), path("dbz.properties")])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(path("kafka-connect.log")).unwrap())
        .spawn()
        .unwrap();
    let mut freshet =
        connect_standalone(&[path("freshet-worker.properties"), path("fsh.properties")], &path("freshet.log"));
    let log = |name: &str| std::fs::read_to_string(path(name)).unwrap_or_default();
    let wait = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (d, f) =
                (topic_events(&broker.addr, "dbz.public.orders"), topic_events(&broker.addr, "fsh.public.orders"));
            if d.len() >= n && f.len() >= n {
                return (d, f);
            }
            assert!(
                Instant::now() < deadline,
                "Debezium wrote {} and Freshet {} of {n} events:\n{}\n{}",
                d.len(),
                f.len(),
                log("kafka-connect.log"),
                log("freshet.log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait(3);
    rt.block_on(client.batch_execute(
        "INSERT INTO orders (id, name, qty, price, at) VALUES (4, 'd', 4, 99999999.99, '2030-01-01 00:00:00.5+05:30');
         BEGIN; UPDATE orders SET qty = 10, doc = '{\"x\": null}' WHERE id = 1; DELETE FROM orders WHERE id = 2; COMMIT;
         UPDATE orders SET id = 30 WHERE id = 3;
         ALTER TABLE orders ADD COLUMN extra text;
         INSERT INTO orders (id, qty, extra) VALUES (5, 5, 'new column');",
    ))
    .unwrap();
    // 3 reads; an insert; an update, a delete and its tombstone; a key change (a delete, its
    // tombstone and an insert, as Debezium writes it); an insert with the new column.
    let (dbz, fsh) = wait(11);
    let _ = Command::new("kill").arg(freshet.id().to_string()).status();
    crate::peer::terminate(&mut kafka_connect, Duration::from_secs(30));
    freshet.wait().unwrap();
    broker.stop();
    let shape = |events: &[(Json, Json)]| -> Vec<Json> {
        events
            .iter()
            .map(|(k, v)| {
                json!({"key": k, "op": v["op"], "before": v["before"], "after": v["after"],
                                 "table": v["source"]["table"], "db": v["source"]["db"]})
            })
            .collect()
    };
    let (dbz, fsh) = (shape(&dbz), shape(&fsh));
    for (i, (d, f)) in dbz.iter().zip(&fsh).enumerate() {
        assert_eq!(f, d, "event {i}: Freshet's (left) and Debezium's (right)");
    }
    assert_eq!(fsh.len(), dbz.len());
}
